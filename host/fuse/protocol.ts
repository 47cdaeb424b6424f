/**
 * The FUSE wire protocol as Linux's `include/uapi/linux/fuse.h` defines it: protocol 7.37 (Linux 6.1).
 *
 * Only numbers live here: opcodes, flag bits, and the byte offsets of every fixed-size struct the host decodes or
 * encodes with a DataView (little endian, the guest's byte order on every virtio-fs platform we support). Structs
 * the core encodes itself (fuse_attr_out, fuse_entry_out, fuse_dirent, fuse_direntplus) are listed for their sizes.
 *
 * Offsets are written as `{ field: byteOffset, ..., SIZE: bytes }`.
 */

/** The protocol we speak. The kernel and we settle on min(kernel minor, ours). */
export const FUSE_KERNEL_VERSION = 7;
/** 7.37 added FUSE_TMPFILE (Linux 6.1). */
export const FUSE_KERNEL_MINOR_VERSION = 37;
/** Node id of the root directory. */
export const FUSE_ROOT_ID = 1;

// ---- opcodes (enum fuse_opcode) ----------------------------------------------------------------------------------
export const FUSE_LOOKUP = 1;
export const FUSE_FORGET = 2; // no reply
export const FUSE_GETATTR = 3;
export const FUSE_SETATTR = 4;
export const FUSE_READLINK = 5;
export const FUSE_SYMLINK = 6;
export const FUSE_MKNOD = 8;
export const FUSE_MKDIR = 9;
export const FUSE_UNLINK = 10;
export const FUSE_RMDIR = 11;
export const FUSE_RENAME = 12;
export const FUSE_LINK = 13;
export const FUSE_OPEN = 14;
export const FUSE_READ = 15;
export const FUSE_WRITE = 16;
export const FUSE_STATFS = 17;
export const FUSE_RELEASE = 18;
export const FUSE_FSYNC = 20;
export const FUSE_SETXATTR = 21;
export const FUSE_GETXATTR = 22;
export const FUSE_LISTXATTR = 23;
export const FUSE_REMOVEXATTR = 24;
export const FUSE_FLUSH = 25;
export const FUSE_INIT = 26;
export const FUSE_OPENDIR = 27;
export const FUSE_READDIR = 28;
export const FUSE_RELEASEDIR = 29;
export const FUSE_FSYNCDIR = 30;
export const FUSE_GETLK = 31; // only with FUSE_POSIX_LOCKS (FuseServerOptions.posixLocks); else locks stay in the guest
export const FUSE_SETLK = 32;
export const FUSE_SETLKW = 33;
export const FUSE_ACCESS = 34;
export const FUSE_CREATE = 35;
export const FUSE_INTERRUPT = 36; // no reply from us (requests complete synchronously)
export const FUSE_BMAP = 37; // not handled (block devices only)
export const FUSE_DESTROY = 38;
export const FUSE_IOCTL = 39; // ENOTTY
export const FUSE_POLL = 40; // ENOSYS (the kernel then assumes always ready)
export const FUSE_NOTIFY_REPLY = 41; // not handled (we never send notifications)
export const FUSE_BATCH_FORGET = 42; // no reply
export const FUSE_FALLOCATE = 43;
export const FUSE_READDIRPLUS = 44;
export const FUSE_RENAME2 = 45;
export const FUSE_LSEEK = 46;
export const FUSE_COPY_FILE_RANGE = 47;
export const FUSE_SETUPMAPPING = 48; // DAX: only with a window (host/dax), else ENOSYS
export const FUSE_REMOVEMAPPING = 49; // DAX: only with a window
export const FUSE_SYNCFS = 50;
export const FUSE_TMPFILE = 51; // args and reply as CREATE
export const CUSE_INIT = 4096; // never valid on virtio-fs

// ---- INIT flags (fuse_init_in.flags / fuse_init_out.flags; bits 32..63 travel in flags2) ---------------------------
export const FUSE_ASYNC_READ = 1 << 0;
export const FUSE_POSIX_LOCKS = 1 << 1;
export const FUSE_FILE_OPS = 1 << 2;
export const FUSE_ATOMIC_O_TRUNC = 1 << 3;
export const FUSE_EXPORT_SUPPORT = 1 << 4;
export const FUSE_BIG_WRITES = 1 << 5;
export const FUSE_DONT_MASK = 1 << 6;
export const FUSE_SPLICE_WRITE = 1 << 7;
export const FUSE_SPLICE_MOVE = 1 << 8;
export const FUSE_SPLICE_READ = 1 << 9;
export const FUSE_FLOCK_LOCKS = 1 << 10;
export const FUSE_HAS_IOCTL_DIR = 1 << 11;
export const FUSE_AUTO_INVAL_DATA = 1 << 12;
export const FUSE_DO_READDIRPLUS = 1 << 13;
export const FUSE_READDIRPLUS_AUTO = 1 << 14;
export const FUSE_ASYNC_DIO = 1 << 15;
export const FUSE_WRITEBACK_CACHE = 1 << 16;
export const FUSE_NO_OPEN_SUPPORT = 1 << 17;
export const FUSE_PARALLEL_DIROPS = 1 << 18;
export const FUSE_HANDLE_KILLPRIV = 1 << 19;
export const FUSE_POSIX_ACL = 1 << 20;
export const FUSE_ABORT_ERROR = 1 << 21;
export const FUSE_MAX_PAGES = 1 << 22;
export const FUSE_CACHE_SYMLINKS = 1 << 23;
export const FUSE_NO_OPENDIR_SUPPORT = 1 << 24;
export const FUSE_EXPLICIT_INVAL_DATA = 1 << 25;
export const FUSE_MAP_ALIGNMENT = 1 << 26;
export const FUSE_SUBMOUNTS = 1 << 27;
export const FUSE_HANDLE_KILLPRIV_V2 = 1 << 28;
export const FUSE_SETXATTR_EXT = 1 << 29;
/** fuse_init_in carries flags2 (and the reply may too). */
export const FUSE_INIT_EXT = 1 << 30;
export const FUSE_INIT_RESERVED = 0x8000_0000; // 1 << 31 as an unsigned value
/** flags2 bit 0 (1 << 32 overall): security context on create-like requests. Not negotiated. */
export const FUSE2_SECURITY_CTX = 1 << 0;
/** flags2 bit 1 (1 << 33 overall): per-inode DAX (FUSE_ATTR_DAX per file); negotiated with --inode-dax. */
export const FUSE2_HAS_INODE_DAX = 1 << 1;

/** Kernel limit on fuse_init_out.max_pages in Linux 6.1 (FUSE_MAX_MAX_PAGES). */
export const FUSE_MAX_MAX_PAGES = 256;

// ---- fuse_open_out.open_flags ---------------------------------------------------------------------------------------
export const FOPEN_DIRECT_IO = 1 << 0;
export const FOPEN_KEEP_CACHE = 1 << 1;
export const FOPEN_NONSEEKABLE = 1 << 2;
export const FOPEN_CACHE_DIR = 1 << 3;
export const FOPEN_STREAM = 1 << 4;
export const FOPEN_NOFLUSH = 1 << 5;
export const FOPEN_PARALLEL_DIRECT_WRITES = 1 << 6;

// ---- fuse_setattr_in.valid ------------------------------------------------------------------------------------------
export const FATTR_MODE = 1 << 0;
export const FATTR_UID = 1 << 1;
export const FATTR_GID = 1 << 2;
export const FATTR_SIZE = 1 << 3;
export const FATTR_ATIME = 1 << 4;
export const FATTR_MTIME = 1 << 5;
export const FATTR_FH = 1 << 6;
export const FATTR_ATIME_NOW = 1 << 7;
export const FATTR_MTIME_NOW = 1 << 8;
export const FATTR_LOCKOWNER = 1 << 9;
export const FATTR_CTIME = 1 << 10;
export const FATTR_KILL_SUIDGID = 1 << 11;

// ---- other request flags --------------------------------------------------------------------------------------------
/** fuse_getattr_in.getattr_flags: `fh` is valid. */
export const FUSE_GETATTR_FH = 1 << 0;
/** fuse_release_in.release_flags */
export const FUSE_RELEASE_FLUSH = 1 << 0;
export const FUSE_RELEASE_FLOCK_UNLOCK = 1 << 1;
/** fuse_write_in.write_flags */
export const FUSE_WRITE_CACHE = 1 << 0;
export const FUSE_WRITE_LOCKOWNER = 1 << 1;
export const FUSE_WRITE_KILL_SUIDGID = 1 << 2;
/** fuse_read_in.read_flags */
export const FUSE_READ_LOCKOWNER = 1 << 1;
/** fuse_fsync_in.fsync_flags */
export const FUSE_FSYNC_FDATASYNC = 1 << 0;
/** fuse_open_in.open_flags / fuse_create_in.open_flags */
export const FUSE_OPEN_KILL_SUIDGID = 1 << 0;
/** fuse_rename2_in.flags: the renameat2(2) values (include/uapi/linux/fs.h). */
export const RENAME_NOREPLACE = 1 << 0;
export const RENAME_EXCHANGE = 1 << 1;
export const RENAME_WHITEOUT = 1 << 2;

// ---- headers ---------------------------------------------------------------------------------------------------------
/** struct fuse_in_header (parsed by the core). */
export const IN_HEADER = { len: 0, opcode: 4, unique: 8, nodeid: 16, uid: 24, gid: 28, pid: 32, padding: 36, SIZE: 40 } as const;
/** struct fuse_out_header (written by the core's replySend). */
export const OUT_HEADER = { len: 0, error: 4, unique: 8, SIZE: 16 } as const;

/** A reply that is only a fuse_out_header (an error, or a parked request's answer) at the start of `v`; its length. */
export function encodeOutHeader(v: DataView, error: number, unique: bigint): number {
  v.setUint32(OUT_HEADER.len, OUT_HEADER.SIZE, true);
  v.setInt32(OUT_HEADER.error, error, true);
  v.setBigUint64(OUT_HEADER.unique, unique, true);
  return OUT_HEADER.SIZE;
}

// ---- request argument structs (offsets from the start of the args, i.e. after fuse_in_header) --------------------
export const INIT_IN = { major: 0, minor: 4, maxReadahead: 8, flags: 12, flags2: 16, unused: 20, SIZE: 64, COMPAT_SIZE: 16 } as const;
export const FORGET_IN = { nlookup: 0, SIZE: 8 } as const;
export const BATCH_FORGET_IN = { count: 0, dummy: 4, SIZE: 8 } as const;
export const FORGET_ONE = { nodeid: 0, nlookup: 8, SIZE: 16 } as const;
export const GETATTR_IN = { getattrFlags: 0, dummy: 4, fh: 8, SIZE: 16 } as const;
export const SETATTR_IN = {
  valid: 0, padding: 4, fh: 8, size: 16, lockOwner: 24, atime: 32, mtime: 40, ctime: 48,
  atimensec: 56, mtimensec: 60, ctimensec: 64, mode: 68, unused4: 72, uid: 76, gid: 80, unused5: 84, SIZE: 88,
} as const;
/** Followed by the NUL-terminated name. Kernels before 7.12 sent only the first 8 bytes. */
export const MKNOD_IN = { mode: 0, rdev: 4, umask: 8, padding: 12, SIZE: 16, COMPAT_SIZE: 8 } as const;
/** Followed by the NUL-terminated name. */
export const MKDIR_IN = { mode: 0, umask: 4, SIZE: 8 } as const;
/** Followed by the old name and the new name, each NUL-terminated. */
export const RENAME_IN = { newdir: 0, SIZE: 8 } as const;
export const RENAME2_IN = { newdir: 0, flags: 8, padding: 12, SIZE: 16 } as const;
/** Followed by the new name. */
export const LINK_IN = { oldnodeid: 0, SIZE: 8 } as const;
export const OPEN_IN = { flags: 0, openFlags: 4, SIZE: 8 } as const;
/** Followed by the NUL-terminated name. */
export const CREATE_IN = { flags: 0, mode: 4, umask: 8, openFlags: 12, SIZE: 16 } as const;
export const RELEASE_IN = { fh: 0, flags: 8, releaseFlags: 12, lockOwner: 16, SIZE: 24 } as const;
export const FLUSH_IN = { fh: 0, unused: 8, padding: 12, lockOwner: 16, SIZE: 24 } as const;
/** Also used by READDIR and READDIRPLUS. */
export const READ_IN = { fh: 0, offset: 8, size: 16, readFlags: 20, lockOwner: 24, flags: 32, padding: 36, SIZE: 40 } as const;
/** The payload follows in guest memory (the core copies only these 40 bytes). */
export const WRITE_IN = { fh: 0, offset: 8, size: 16, writeFlags: 20, lockOwner: 24, flags: 32, padding: 36, SIZE: 40 } as const;
export const FSYNC_IN = { fh: 0, fsyncFlags: 8, padding: 12, SIZE: 16 } as const;
export const ACCESS_IN = { mask: 0, padding: 4, SIZE: 8 } as const;
export const INTERRUPT_IN = { unique: 0, SIZE: 8 } as const;
/** SETXATTR: followed by the NUL-terminated name, then `size` value bytes. With FUSE_SETXATTR_EXT negotiated
 *  (FuseServerOptions.posixAcl) the struct is EXT_SIZE bytes (setxattr_flags, padding); without it only these 8. */
export const SETXATTR_IN = { size: 0, flags: 4, setxattrFlags: 8, padding: 12, SIZE: 8, EXT_SIZE: 16 } as const;
/** fuse_setxattr_in.setxattr_flags: the caller may not keep S_ISGID when setting an access ACL. */
export const FUSE_SETXATTR_ACL_KILL_SGID = 1 << 0;
/** GETXATTR (followed by the name) and LISTXATTR. */
export const GETXATTR_IN = { size: 0, padding: 4, SIZE: 8 } as const;
export const FALLOCATE_IN = { fh: 0, offset: 8, length: 16, mode: 24, padding: 28, SIZE: 32 } as const;
export const LSEEK_IN = { fh: 0, offset: 8, whence: 16, padding: 20, SIZE: 24 } as const;
export const COPY_FILE_RANGE_IN = {
  fhIn: 0, offIn: 8, nodeidOut: 16, fhOut: 24, offOut: 32, len: 40, flags: 48, SIZE: 56,
} as const;
export const SYNCFS_IN = { padding: 0, SIZE: 8 } as const;
/** fuse_setupmapping_in: fh (2^64-1: none), file offset, length, FUSE_SETUPMAPPING_FLAG_*, window offset. */
export const SETUPMAPPING_IN = { fh: 0, foffset: 8, len: 16, flags: 24, moffset: 32, SIZE: 40 } as const;
/** fuse_removemapping_in { u32 count }, followed directly (offset 4, no padding) by count fuse_removemapping_one. */
export const REMOVEMAPPING_IN = { count: 0, SIZE: 4 } as const;
export const REMOVEMAPPING_ONE = { moffset: 0, len: 8, SIZE: 16 } as const;
/** GETLK/SETLK/SETLKW: fuse_lk_in, with struct fuse_file_lock { start, end (inclusive), type, pid } at 16. */
export const LK_IN = { fh: 0, owner: 8, start: 16, end: 24, type: 32, pid: 36, lkFlags: 40, padding: 44, SIZE: 48 } as const;
/** fuse_lk_in.lk_flags: a BSD flock (only with FUSE_FLOCK_LOCKS: FuseServerOptions.flockLocks). */
export const FUSE_LK_FLOCK = 1 << 0;
/** The end of a lock that runs to the end of the file (the kernel's OFFSET_MAX). */
export const OFFSET_MAX = 0x7fff_ffff_ffff_ffffn;

// ---- reply structs (offsets from the start of the reply body, i.e. after fuse_out_header) -------------------------
export const INIT_OUT = {
  major: 0, minor: 4, maxReadahead: 8, flags: 12, maxBackground: 16, congestionThreshold: 18, maxWrite: 20,
  timeGran: 24, maxPages: 28, mapAlignment: 30, flags2: 32, unused: 36, SIZE: 64,
  /** Reply size a kernel with minor < 5 expects. */
  COMPAT_SIZE: 8,
  /** Reply size a kernel with 5 <= minor < 23 expects. */
  COMPAT_22_SIZE: 24,
} as const;
export const OPEN_OUT = { fh: 0, openFlags: 8, padding: 12, SIZE: 16 } as const;
export const WRITE_OUT = { size: 0, padding: 4, SIZE: 8 } as const;
/** GETXATTR/LISTXATTR with size 0: the size the value (list) needs. */
export const GETXATTR_OUT = { size: 0, padding: 4, SIZE: 8 } as const;
export const LSEEK_OUT = { offset: 0, SIZE: 8 } as const;
/** GETLK: fuse_lk_out { struct fuse_file_lock lk }. */
export const LK_OUT = { start: 0, end: 8, type: 16, pid: 20, SIZE: 24 } as const;
/** struct fuse_statfs_out { struct fuse_kstatfs st; } */
export const STATFS_OUT = {
  blocks: 0, bfree: 8, bavail: 16, files: 24, ffree: 32, bsize: 40, namelen: 44, frsize: 48, padding: 52,
  spare: 56, SIZE: 80,
} as const;
/** struct fuse_attr_out (encoded by the core). */
export const ATTR_OUT_SIZE = 104;
/** struct fuse_entry_out (encoded by the core). */
export const ENTRY_OUT_SIZE = 128;
/** fuse_attr.flags inside fuse_entry_out (attr at 40, flags at 84 in fuse_attr): the core writes 0 there. */
export const ENTRY_OUT_ATTR_FLAGS = 124;
/** fuse_attr.flags: the directory is a mount point on the host; with FUSE_SUBMOUNTS the guest mounts it as its
 *  own superblock (own st_dev, no inode-number clashes with the parent filesystem). */
export const FUSE_ATTR_SUBMOUNT = 1 << 0;
/** fuse_attr.flags: with FUSE_HAS_INODE_DAX the guest (mounted -o dax=inode) uses the DAX window for this file. */
export const FUSE_ATTR_DAX = 1 << 1;
/** fuse_attr.flags inside fuse_attr_out (attr at 16, flags at 84 in fuse_attr): the core writes 0 there. */
export const ATTR_OUT_ATTR_FLAGS = 100;
/** struct fuse_dirent header before the name; records are padded to 8 bytes. */
export const DIRENT = { ino: 0, off: 8, namelen: 16, type: 20, name: 24 } as const;
/** struct fuse_direntplus: fuse_entry_out then fuse_dirent. */
export const DIRENTPLUS = { entryOut: 0, dirent: 128, name: 152 } as const;

/** Opcode names, for logs. */
export const OPCODE_NAMES: Readonly<Record<number, string>> = {
  1: 'LOOKUP', 2: 'FORGET', 3: 'GETATTR', 4: 'SETATTR', 5: 'READLINK', 6: 'SYMLINK', 8: 'MKNOD', 9: 'MKDIR',
  10: 'UNLINK', 11: 'RMDIR', 12: 'RENAME', 13: 'LINK', 14: 'OPEN', 15: 'READ', 16: 'WRITE', 17: 'STATFS',
  18: 'RELEASE', 20: 'FSYNC', 21: 'SETXATTR', 22: 'GETXATTR', 23: 'LISTXATTR', 24: 'REMOVEXATTR', 25: 'FLUSH',
  26: 'INIT', 27: 'OPENDIR', 28: 'READDIR', 29: 'RELEASEDIR', 30: 'FSYNCDIR', 31: 'GETLK', 32: 'SETLK',
  33: 'SETLKW', 34: 'ACCESS', 35: 'CREATE', 36: 'INTERRUPT', 37: 'BMAP', 38: 'DESTROY', 39: 'IOCTL', 40: 'POLL',
  41: 'NOTIFY_REPLY', 42: 'BATCH_FORGET', 43: 'FALLOCATE', 44: 'READDIRPLUS', 45: 'RENAME2', 46: 'LSEEK',
  47: 'COPY_FILE_RANGE', 48: 'SETUPMAPPING', 49: 'REMOVEMAPPING', 50: 'SYNCFS', 51: 'TMPFILE', 4096: 'CUSE_INIT',
};

// FUSE wire format as Linux 6.1 speaks it (include/uapi/linux/fuse.h, protocol 7.36), and the encoders that turn
// a Linux `struct statx` / `struct linux_dirent64` into FUSE replies. Pure byte shuffling in linear memory.

// ---- opcodes (enum fuse_opcode) ------------------------------------------------------------------------------
export const FUSE_LOOKUP: u32 = 1;
export const FUSE_FORGET: u32 = 2;
export const FUSE_GETATTR: u32 = 3;
export const FUSE_SETATTR: u32 = 4;
export const FUSE_READLINK: u32 = 5;
export const FUSE_SYMLINK: u32 = 6;
export const FUSE_MKNOD: u32 = 8;
export const FUSE_MKDIR: u32 = 9;
export const FUSE_UNLINK: u32 = 10;
export const FUSE_RMDIR: u32 = 11;
export const FUSE_RENAME: u32 = 12;
export const FUSE_LINK: u32 = 13;
export const FUSE_OPEN: u32 = 14;
export const FUSE_READ: u32 = 15;
export const FUSE_WRITE: u32 = 16;
export const FUSE_STATFS: u32 = 17;
export const FUSE_RELEASE: u32 = 18;
export const FUSE_FSYNC: u32 = 20;
export const FUSE_SETXATTR: u32 = 21;
export const FUSE_GETXATTR: u32 = 22;
export const FUSE_LISTXATTR: u32 = 23;
export const FUSE_REMOVEXATTR: u32 = 24;
export const FUSE_FLUSH: u32 = 25;
export const FUSE_INIT: u32 = 26;
export const FUSE_OPENDIR: u32 = 27;
export const FUSE_READDIR: u32 = 28;
export const FUSE_RELEASEDIR: u32 = 29;
export const FUSE_FSYNCDIR: u32 = 30;
export const FUSE_GETLK: u32 = 31;
export const FUSE_SETLK: u32 = 32;
export const FUSE_SETLKW: u32 = 33;
export const FUSE_ACCESS: u32 = 34;
export const FUSE_CREATE: u32 = 35;
export const FUSE_INTERRUPT: u32 = 36;
export const FUSE_BMAP: u32 = 37;
export const FUSE_DESTROY: u32 = 38;
export const FUSE_IOCTL: u32 = 39;
export const FUSE_POLL: u32 = 40;
export const FUSE_NOTIFY_REPLY: u32 = 41;
export const FUSE_BATCH_FORGET: u32 = 42;
export const FUSE_FALLOCATE: u32 = 43;
export const FUSE_READDIRPLUS: u32 = 44;
export const FUSE_RENAME2: u32 = 45;
export const FUSE_LSEEK: u32 = 46;
export const FUSE_COPY_FILE_RANGE: u32 = 47;
export const FUSE_SETUPMAPPING: u32 = 48;
export const FUSE_REMOVEMAPPING: u32 = 49;
export const FUSE_SYNCFS: u32 = 50;
export const FUSE_TMPFILE: u32 = 51;
const FUSE_MAX_OPCODE: u32 = 51;

// ---- fuse_in_header (40 bytes) / fuse_out_header (16 bytes) ---------------------------------------------------
//
//   fuse_in_header                                               fuse_out_header
//   0      4        8        16       24    28    32    36  40   0      4       8        16
//   +------+--------+--------+--------+-----+-----+-----+---+    +------+-------+--------+
//   | len  | opcode | unique | nodeid | uid | gid | pid |pad|    | len  | error | unique |
//   +------+--------+--------+--------+-----+-----+-----+---+    +------+-------+--------+
//     u32    u32      u64      u64     u32   u32   u32  u32       u32    i32     u64
export const IN_LEN: u32 = 0;
export const IN_OPCODE: u32 = 4;
export const IN_UNIQUE: u32 = 8;
export const IN_NODEID: u32 = 16;
export const IN_UID: u32 = 24;
export const IN_GID: u32 = 28;
export const IN_PID: u32 = 32;
export const IN_PADDING: u32 = 36;
export const FUSE_IN_HEADER_SIZE: u32 = 40;
export const OUT_LEN: u32 = 0;
export const OUT_ERROR: u32 = 4;
export const OUT_UNIQUE: u32 = 8;
export const FUSE_OUT_HEADER_SIZE: u32 = 16;

// ---- per-opcode minimum argument size: the fixed `fuse_*_in` struct, 0 where args are only names/none ----------
// Sizes as the 6.1 kernel sends them; the INIT and SETXATTR minimums are the older compat sizes.
const FUSE_FORGET_IN_SIZE: u8 = 8; // nlookup
const FUSE_GETATTR_IN_SIZE: u8 = 16; // getattr_flags, dummy, fh
const FUSE_SETATTR_IN_SIZE: u8 = 88;
const FUSE_MKNOD_IN_SIZE: u8 = 16; // mode, rdev, umask, padding
const FUSE_MKDIR_IN_SIZE: u8 = 8; // mode, umask
const FUSE_RENAME_IN_SIZE: u8 = 8; // newdir
const FUSE_LINK_IN_SIZE: u8 = 8; // oldnodeid
const FUSE_OPEN_IN_SIZE: u8 = 8; // flags, open_flags
export const FUSE_READ_IN_SIZE: u8 = 40; // fh, offset, size, read_flags, lock_owner, flags, padding
export const FUSE_WRITE_IN_SIZE: u8 = 40; // fh, offset, size, write_flags, lock_owner, flags, padding
const FUSE_RELEASE_IN_SIZE: u8 = 24; // fh, flags, release_flags, lock_owner
const FUSE_FSYNC_IN_SIZE: u8 = 16; // fh, fsync_flags, padding
const FUSE_COMPAT_SETXATTR_IN_SIZE: u8 = 8; // size, flags (16 with FUSE_SETXATTR_EXT)
const FUSE_GETXATTR_IN_SIZE: u8 = 8; // size, padding
const FUSE_FLUSH_IN_SIZE: u8 = 24; // fh, unused, padding, lock_owner
const FUSE_COMPAT_INIT_IN_SIZE: u8 = 16; // major, minor, max_readahead, flags (64 since 7.36)
const FUSE_LK_IN_SIZE: u8 = 48; // fh, owner, fuse_file_lock{start,end,type,pid}, lk_flags, padding
const FUSE_ACCESS_IN_SIZE: u8 = 8; // mask, padding
const FUSE_CREATE_IN_SIZE: u8 = 16; // flags, mode, umask, open_flags
const FUSE_INTERRUPT_IN_SIZE: u8 = 8; // unique
const FUSE_BMAP_IN_SIZE: u8 = 16; // block, blocksize, padding
const FUSE_IOCTL_IN_SIZE: u8 = 32; // fh, flags, cmd, arg, in_size, out_size
const FUSE_POLL_IN_SIZE: u8 = 24; // fh, kh, flags, events
const FUSE_BATCH_FORGET_IN_SIZE: u8 = 8; // count, dummy (then count x fuse_forget_one)
const FUSE_FALLOCATE_IN_SIZE: u8 = 32; // fh, offset, length, mode, padding
const FUSE_RENAME2_IN_SIZE: u8 = 16; // newdir, flags, padding
const FUSE_LSEEK_IN_SIZE: u8 = 24; // fh, offset, whence, padding
const FUSE_COPY_FILE_RANGE_IN_SIZE: u8 = 56; // fh_in, off_in, nodeid_out, fh_out, off_out, len, flags
const FUSE_SETUPMAPPING_IN_SIZE: u8 = 40; // fh, foffset, len, flags, moffset
const FUSE_SYNCFS_IN_SIZE: u8 = 8; // padding

const FUSE_REMOVEMAPPING_IN_SIZE: u8 = 4; // count, then count x fuse_removemapping_one

const MIN_ARGS: usize = memory.data<u8>([
  0, // 0 (none)
  0, // LOOKUP: name
  FUSE_FORGET_IN_SIZE, // FORGET
  FUSE_GETATTR_IN_SIZE, // GETATTR
  FUSE_SETATTR_IN_SIZE, // SETATTR
  0, // READLINK
  0, // SYMLINK: names
  0, // 7 (unused)
  FUSE_MKNOD_IN_SIZE, // MKNOD
  FUSE_MKDIR_IN_SIZE, // MKDIR
  0, // UNLINK
  0, // RMDIR
  FUSE_RENAME_IN_SIZE, // RENAME
  FUSE_LINK_IN_SIZE, // LINK
  FUSE_OPEN_IN_SIZE, // OPEN
  FUSE_READ_IN_SIZE, // READ
  FUSE_WRITE_IN_SIZE, // WRITE
  0, // STATFS
  FUSE_RELEASE_IN_SIZE, // RELEASE
  0, // 19 (unused)
  FUSE_FSYNC_IN_SIZE, // FSYNC
  FUSE_COMPAT_SETXATTR_IN_SIZE, // SETXATTR
  FUSE_GETXATTR_IN_SIZE, // GETXATTR
  FUSE_GETXATTR_IN_SIZE, // LISTXATTR
  0, // REMOVEXATTR
  FUSE_FLUSH_IN_SIZE, // FLUSH
  FUSE_COMPAT_INIT_IN_SIZE, // INIT
  FUSE_OPEN_IN_SIZE, // OPENDIR
  FUSE_READ_IN_SIZE, // READDIR
  FUSE_RELEASE_IN_SIZE, // RELEASEDIR
  FUSE_FSYNC_IN_SIZE, // FSYNCDIR
  FUSE_LK_IN_SIZE, // GETLK
  FUSE_LK_IN_SIZE, // SETLK
  FUSE_LK_IN_SIZE, // SETLKW
  FUSE_ACCESS_IN_SIZE, // ACCESS
  FUSE_CREATE_IN_SIZE, // CREATE
  FUSE_INTERRUPT_IN_SIZE, // INTERRUPT
  FUSE_BMAP_IN_SIZE, // BMAP
  0, // DESTROY
  FUSE_IOCTL_IN_SIZE, // IOCTL
  FUSE_POLL_IN_SIZE, // POLL
  0, // NOTIFY_REPLY
  FUSE_BATCH_FORGET_IN_SIZE, // BATCH_FORGET
  FUSE_FALLOCATE_IN_SIZE, // FALLOCATE
  FUSE_READ_IN_SIZE, // READDIRPLUS
  FUSE_RENAME2_IN_SIZE, // RENAME2
  FUSE_LSEEK_IN_SIZE, // LSEEK
  FUSE_COPY_FILE_RANGE_IN_SIZE, // COPY_FILE_RANGE
  FUSE_SETUPMAPPING_IN_SIZE, // SETUPMAPPING
  FUSE_REMOVEMAPPING_IN_SIZE, // REMOVEMAPPING
  FUSE_SYNCFS_IN_SIZE, // SYNCFS
  FUSE_CREATE_IN_SIZE, // TMPFILE
]);

/** Minimum argument bytes (after fuse_in_header) for an opcode; 0 for unknown opcodes (the host answers ENOSYS). */
export function minArgs(opcode: u32): u32 {
  if (opcode > FUSE_MAX_OPCODE) return 0;
  return <u32>load<u8>(MIN_ARGS + <usize>opcode);
}

// ---- struct statx (input; 256 bytes) ---------------------------------------------------------------------------
//
//   0         4           8              16      20    24    28     30   32     40     48       56
//   +---------+-----------+--------------+-------+-----+-----+------+----+------+------+--------+-----------+
//   | mask    | blksize   | attributes   | nlink | uid | gid | mode |pad | ino  | size | blocks | attr_mask |
//   +---------+-----------+--------------+-------+-----+-----+------+----+------+------+--------+-----------+
//   64 atime {i64 sec, u32 nsec, pad}  80 btime  96 ctime  112 mtime
//   128 rdev_major  132 rdev_minor  136 dev_major  140 dev_minor  144 mnt_id ...  (256 total)
export const STATX_SIZE: u32 = 256;
const STX_BLKSIZE: u32 = 4;
const STX_NLINK: u32 = 16;
const STX_UID: u32 = 20;
const STX_GID: u32 = 24;
const STX_MODE: u32 = 28;
const STX_INO: u32 = 32;
const STX_SIZE: u32 = 40;
const STX_BLOCKS: u32 = 48;
const STX_ATIME: u32 = 64;
const STX_CTIME: u32 = 96;
const STX_MTIME: u32 = 112;
const STX_RDEV_MAJOR: u32 = 128;
const STX_RDEV_MINOR: u32 = 132;
const TS_SEC: u32 = 0;
const TS_NSEC: u32 = 8;

// ---- struct fuse_attr (output; 88 bytes) -----------------------------------------------------------------------
//
//   0     8      16       24      32      40      48        52        56        60     64      68    72    76
//   +-----+------+--------+-------+-------+-------+---------+---------+---------+------+-------+-----+-----+------+
//   | ino | size | blocks | atime | mtime | ctime | atimens | mtimens | ctimens | mode | nlink | uid | gid | rdev |
//   +-----+------+--------+-------+-------+-------+---------+---------+---------+------+-------+-----+-----+------+
//   80 blksize  84 flags  88
const ATTR_INO: u32 = 0;
const ATTR_SIZE: u32 = 8;
const ATTR_BLOCKS: u32 = 16;
const ATTR_ATIME: u32 = 24;
const ATTR_MTIME: u32 = 32;
const ATTR_CTIME: u32 = 40;
const ATTR_ATIMENSEC: u32 = 48;
const ATTR_MTIMENSEC: u32 = 52;
const ATTR_CTIMENSEC: u32 = 56;
const ATTR_MODE: u32 = 60;
const ATTR_NLINK: u32 = 64;
const ATTR_UID: u32 = 68;
const ATTR_GID: u32 = 72;
const ATTR_RDEV: u32 = 76;
const ATTR_BLKSIZE: u32 = 80;
const ATTR_FLAGS: u32 = 84;
export const FUSE_ATTR_SIZE: u32 = 88;

// fuse_attr_out: attr_valid u64 @0, attr_valid_nsec u32 @8, dummy u32 @12, attr @16  => 104
const ATTR_OUT_VALID: u32 = 0;
const ATTR_OUT_VALID_NSEC: u32 = 8;
const ATTR_OUT_DUMMY: u32 = 12;
const ATTR_OUT_ATTR: u32 = 16;
export const FUSE_ATTR_OUT_SIZE: u32 = 104;

// fuse_entry_out: nodeid @0, generation @8, entry_valid @16, attr_valid @24, entry_valid_nsec @32,
//                 attr_valid_nsec @36, attr @40  => 128
const ENTRY_NODEID: u32 = 0;
const ENTRY_GENERATION: u32 = 8;
const ENTRY_VALID: u32 = 16;
const ENTRY_ATTR_VALID: u32 = 24;
const ENTRY_VALID_NSEC: u32 = 32;
const ENTRY_ATTR_VALID_NSEC: u32 = 36;
const ENTRY_ATTR: u32 = 40;
export const FUSE_ENTRY_OUT_SIZE: u32 = 128;

// fuse_dirent: ino u64 @0, off u64 @8, namelen u32 @16, type u32 @20, name @24; records padded to 8 bytes
// (FUSE_DIRENT_ALIGN). fuse_direntplus: fuse_entry_out (128) then fuse_dirent.
const DIRENT_INO: u32 = 0;
const DIRENT_OFF: u32 = 8;
const DIRENT_NAMELEN: u32 = 16;
const DIRENT_TYPE: u32 = 20;
export const FUSE_NAME_OFFSET: u32 = 24;
export const FUSE_NAME_OFFSET_DIRENTPLUS: u32 = 152;

// linux_dirent64 (input): d_ino u64 @0, d_off i64 @8, d_reclen u16 @16, d_type u8 @18, d_name @19 (NUL-terminated)
const LD_INO: u32 = 0;
const LD_OFF: u32 = 8;
const LD_RECLEN: u32 = 16;
const LD_TYPE: u32 = 18;
const LD_NAME: u32 = 19;

// Struct sizes pinned to the spec: each is the offset of its last field plus that field's size. A mismatch is
// a compile error (the branch is folded at compile time).
if (ATTR_FLAGS + 4 != FUSE_ATTR_SIZE || FUSE_ATTR_SIZE != 88) ERROR("fuse_attr must be 88 bytes");
if (ATTR_OUT_ATTR + FUSE_ATTR_SIZE != FUSE_ATTR_OUT_SIZE || FUSE_ATTR_OUT_SIZE != 104)
  ERROR("fuse_attr_out must be 104 bytes");
if (ENTRY_ATTR + FUSE_ATTR_SIZE != FUSE_ENTRY_OUT_SIZE || FUSE_ENTRY_OUT_SIZE != 128)
  ERROR("fuse_entry_out must be 128 bytes");
if (DIRENT_TYPE + 4 != FUSE_NAME_OFFSET || FUSE_NAME_OFFSET != 24) ERROR("fuse_dirent header must be 24 bytes");
if (FUSE_ENTRY_OUT_SIZE + FUSE_NAME_OFFSET != FUSE_NAME_OFFSET_DIRENTPLUS) ERROR("fuse_direntplus header");
if (IN_PADDING + 4 != FUSE_IN_HEADER_SIZE || FUSE_IN_HEADER_SIZE != 40) ERROR("fuse_in_header must be 40 bytes");
if (OUT_UNIQUE + 8 != FUSE_OUT_HEADER_SIZE || FUSE_OUT_HEADER_SIZE != 16) ERROR("fuse_out_header must be 16 bytes");
if (STX_RDEV_MAJOR != 128 || STX_MTIME + 16 != STX_RDEV_MAJOR) ERROR("struct statx layout");

@inline function align8(n: u32): u32 {
  return (n + 7) & ~7;
}

// ---- encoders ---------------------------------------------------------------------------------------------------

/** Linux new_encode_dev(): the 32-bit dev_t FUSE carries (fs/fuse decodes it with new_decode_dev). */
export function newEncodeDev(major: u32, minor: u32): u32 {
  return (minor & 0xff) | (major << 8) | ((minor & ~0xff) << 12);
}

// A timeout in seconds (f64) as FUSE's {u64 sec, u32 nsec}; negative/NaN -> 0, huge -> saturated.
let timeoutSec: u64 = 0;
let timeoutNsec: u32 = 0;
function splitTimeout(t: f64): void {
  if (!(t > 0)) {
    timeoutSec = 0;
    timeoutNsec = 0;
    return;
  }
  if (t >= 1.8e19) {
    timeoutSec = u64.MAX_VALUE;
    timeoutNsec = 999999999;
    return;
  }
  const s = Math.floor(t);
  timeoutSec = <u64>s;
  let ns = <u32>((t - s) * 1e9);
  if (ns > 999999999) ns = 999999999;
  timeoutNsec = ns;
}

/** An f64 id from the host (< 2^53, never negative) as u64; anything else becomes 0. */
export function f64ToU64(v: f64): u64 {
  if (!(v >= 0) || v >= 1.8446744073709552e19) return 0;
  return <u64>v;
}

/** fuse_attr (88 bytes) at dst from a struct statx at stx. */
export function encodeAttr(dst: usize, stx: usize): void {
  store<u64>(dst, load<u64>(stx, STX_INO), ATTR_INO);
  store<u64>(dst, load<u64>(stx, STX_SIZE), ATTR_SIZE);
  store<u64>(dst, load<u64>(stx, STX_BLOCKS), ATTR_BLOCKS);
  store<u64>(dst, load<u64>(stx, STX_ATIME + TS_SEC), ATTR_ATIME);
  store<u64>(dst, load<u64>(stx, STX_MTIME + TS_SEC), ATTR_MTIME);
  store<u64>(dst, load<u64>(stx, STX_CTIME + TS_SEC), ATTR_CTIME);
  store<u32>(dst, load<u32>(stx, STX_ATIME + TS_NSEC), ATTR_ATIMENSEC);
  store<u32>(dst, load<u32>(stx, STX_MTIME + TS_NSEC), ATTR_MTIMENSEC);
  store<u32>(dst, load<u32>(stx, STX_CTIME + TS_NSEC), ATTR_CTIMENSEC);
  store<u32>(dst, <u32>load<u16>(stx, STX_MODE), ATTR_MODE);
  store<u32>(dst, load<u32>(stx, STX_NLINK), ATTR_NLINK);
  store<u32>(dst, load<u32>(stx, STX_UID), ATTR_UID);
  store<u32>(dst, load<u32>(stx, STX_GID), ATTR_GID);
  store<u32>(dst, newEncodeDev(load<u32>(stx, STX_RDEV_MAJOR), load<u32>(stx, STX_RDEV_MINOR)), ATTR_RDEV);
  store<u32>(dst, load<u32>(stx, STX_BLKSIZE), ATTR_BLKSIZE);
  store<u32>(dst, 0, ATTR_FLAGS);
}

/** fuse_attr_out (104 bytes). */
export function encodeAttrOut(dst: usize, attrTimeout: f64, stx: usize): u32 {
  splitTimeout(attrTimeout);
  store<u64>(dst, timeoutSec, ATTR_OUT_VALID);
  store<u32>(dst, timeoutNsec, ATTR_OUT_VALID_NSEC);
  store<u32>(dst, 0, ATTR_OUT_DUMMY);
  encodeAttr(dst + ATTR_OUT_ATTR, stx);
  return FUSE_ATTR_OUT_SIZE;
}

/** fuse_entry_out (128 bytes). nodeid 0 is a negative entry: the attributes are zeroed. */
export function encodeEntryOut(
  dst: usize, nodeid: f64, generation: f64, entryTimeout: f64, attrTimeout: f64, stx: usize,
): u32 {
  const id = f64ToU64(nodeid);
  store<u64>(dst, id, ENTRY_NODEID);
  store<u64>(dst, f64ToU64(generation), ENTRY_GENERATION);
  splitTimeout(entryTimeout);
  store<u64>(dst, timeoutSec, ENTRY_VALID);
  store<u32>(dst, timeoutNsec, ENTRY_VALID_NSEC);
  splitTimeout(attrTimeout);
  store<u64>(dst, timeoutSec, ENTRY_ATTR_VALID);
  store<u32>(dst, timeoutNsec, ENTRY_ATTR_VALID_NSEC);
  if (id == 0) memory.fill(dst + ENTRY_ATTR, 0, FUSE_ATTR_SIZE);
  else encodeAttr(dst + ENTRY_ATTR, stx);
  return FUSE_ENTRY_OUT_SIZE;
}

// ---- dirents ----------------------------------------------------------------------------------------------------

export const DIRENT_BUF_SIZE: u32 = 64 * 1024;
export const DIRENT_BUF: usize = memory.data(<i32>DIRENT_BUF_SIZE, 8);

let direntEnd: u32 = 0; // bytes of valid getdents64 output
let direntPos: u32 = 0; // offset of the next record
let direntCur: u32 = 0; // offset of the current record
let direntNameLength: u32 = 0;
let direntHasCurrent = false;

export function direntsBegin(len: u32): void {
  direntEnd = len < DIRENT_BUF_SIZE ? len : DIRENT_BUF_SIZE;
  direntPos = 0;
  direntCur = 0;
  direntNameLength = 0;
  direntHasCurrent = false;
}

/** 1: a record is current; 0: end; -1: corrupt record (bad d_reclen or unterminated name) — iteration stops. */
export function direntNext(): i32 {
  direntHasCurrent = false;
  if (direntPos >= direntEnd) return 0;
  const rec = DIRENT_BUF + <usize>direntPos;
  const room = direntEnd - direntPos;
  if (room < LD_NAME + 1) {
    direntPos = direntEnd;
    return -1;
  }
  const reclen = <u32>load<u16>(rec, LD_RECLEN);
  if (reclen < LD_NAME + 1 || reclen > room) {
    direntPos = direntEnd;
    return -1;
  }
  let n: u32 = 0;
  const maxName = reclen - LD_NAME;
  while (n < maxName && load<u8>(rec + LD_NAME + <usize>n) != 0) n++;
  if (n == maxName) {
    direntPos = direntEnd;
    return -1;
  }
  direntCur = direntPos;
  direntNameLength = n;
  direntPos += reclen;
  direntHasCurrent = true;
  return 1;
}

export function direntIno(): f64 {
  return <f64>load<u64>(DIRENT_BUF + <usize>direntCur, LD_INO);
}

export function direntType(): u32 {
  return <u32>load<u8>(DIRENT_BUF + <usize>direntCur, LD_TYPE);
}

export function direntNamePtr(): usize {
  return DIRENT_BUF + <usize>direntCur + LD_NAME;
}

export function direntNameLen(): u32 {
  return direntNameLength;
}

/** Size of the current record as a fuse_dirent. */
export function direntSize(): u32 {
  return align8(FUSE_NAME_OFFSET + direntNameLength);
}

/** Size of the current record as a fuse_direntplus. */
export function direntPlusSize(): u32 {
  return align8(FUSE_NAME_OFFSET_DIRENTPLUS + direntNameLength);
}

/** fuse_dirent body (ino, off = the record's own 64-bit d_off, namelen, type, name, zero padding) at dst. */
function writeDirent(dst: usize): void {
  const rec = DIRENT_BUF + <usize>direntCur;
  store<u64>(dst, load<u64>(rec, LD_INO), DIRENT_INO);
  store<u64>(dst, load<u64>(rec, LD_OFF), DIRENT_OFF);
  store<u32>(dst, direntNameLength, DIRENT_NAMELEN);
  store<u32>(dst, <u32>load<u8>(rec, LD_TYPE), DIRENT_TYPE);
  memory.copy(dst + FUSE_NAME_OFFSET, rec + LD_NAME, direntNameLength);
  const end = FUSE_NAME_OFFSET + direntNameLength;
  const padded = align8(end);
  if (padded > end) memory.fill(dst + end, 0, padded - end);
}

/**
 * Appends the current record as a fuse_dirent at base+dstOffset if dstOffset + size <= cap (cap: the absolute
 * limit, e.g. fuse_read_in.size, itself at most limit). Returns the bytes written, 0 if it does not fit or no
 * record is current.
 */
export function direntEmitAt(base: usize, limit: u32, dstOffset: u32, cap: u32): u32 {
  if (!direntHasCurrent) return 0;
  const size = direntSize();
  const end = <u64>dstOffset + <u64>size;
  if (end > <u64>cap || end > <u64>limit) return 0;
  writeDirent(base + <usize>dstOffset);
  return size;
}

/** As direntEmitAt, for fuse_direntplus: the entry_out (nodeid 0 = zeroed entry, as for "." and "..") first. */
export function direntPlusEmitAt(
  base: usize, limit: u32, dstOffset: u32, cap: u32,
  nodeid: f64, generation: f64, entryTimeout: f64, attrTimeout: f64, stx: usize,
): u32 {
  if (!direntHasCurrent) return 0;
  const size = direntPlusSize();
  const end = <u64>dstOffset + <u64>size;
  if (end > <u64>cap || end > <u64>limit) return 0;
  const dst = base + <usize>dstOffset;
  if (f64ToU64(nodeid) == 0) memory.fill(dst, 0, FUSE_ENTRY_OUT_SIZE);
  else encodeEntryOut(dst, nodeid, generation, entryTimeout, attrTimeout, stx);
  writeDirent(dst + FUSE_ENTRY_OUT_SIZE);
  return size;
}

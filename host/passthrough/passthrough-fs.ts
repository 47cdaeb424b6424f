/**
 * PassthroughFs: shares one host directory with the guest.
 *
 * Safety rules (the guest is untrusted):
 * - Every operation is relative to an fd: `*at` calls on the O_PATH fds the InodeStore holds, the fd itself with
 *   AT_EMPTY_PATH, or `/proc/self/fd/N` (an fd-relative name under an O_PATH fd of /proc/self/fd) where a syscall
 *   has no fd form (chmod, utimes, truncate and open of an O_PATH inode, link). No path string is ever joined.
 * - Names from the guest are one component: empty names and names containing `/` or NUL are refused with EINVAL;
 *   `.` and `..` are refused (EPERM) for everything but LOOKUP, and LOOKUP of `..` at the root is the root.
 * - Symlinks are never followed on the host: lookups open with O_NOFOLLOW, creation with O_NOFOLLOW|O_EXCL, stat
 *   with AT_SYMLINK_NOFOLLOW, and a symlink node cannot be opened or used as a directory.
 * - Special files (CVE-2020-35517 class): MKNOD of a char/block device is EPERM unless `allowMknodDevices` (the
 *   overlayfs whiteout, char 0:0, excepted), and OPEN/CREATE of anything but a regular file is refused (ENXIO), so
 *   the daemon never opens a host device or blocks on a FIFO. test/escape.test.ts checks each of these rules.
 *
 * Credentials (credentials.ts): the guest kernel checks permissions itself (virtio-fs mounts with
 * default_permissions, and it knows the caller's supplementary groups, which FUSE 7.37 does not send us). So the
 * daemon switches its fsuid/fsgid to the caller's only where the caller's identity decides the outcome: creating a
 * node (MKNOD, MKDIR, SYMLINK, CREATE of a new file, TMPFILE): the host kernel then gives the node its owner and
 * group (a setgid parent's group included) and applies its own setgid stripping. Everything else runs with the
 * daemon's identity, so a guest user's access through a supplementary group is not refused on the host.
 * - CVE-2022-0358 class: the daemon keeps its own supplementary groups (setgroups is process-wide), so the host
 *   kernel could let a caller keep S_ISGID on a file created in a setgid directory whose group only the daemon is
 *   in. New non-directories therefore lose S_ISGID here first when the parent is setgid, the caller is not root and
 *   its gid is not the parent's group.
 * - Killpriv (FUSE_HANDLE_KILLPRIV_V2): FUSE_WRITE_KILL_SUIDGID, FATTR_KILL_SUIDGID with a size change and
 *   FUSE_OPEN_KILL_SUIDGID with O_TRUNC clear setuid, and setgid when group-executable, as the kernel does for an
 *   unprivileged writer; chown by the daemon clears them by itself; security.capability goes on write, truncate
 *   and chown by the host kernel.
 */
import { byteString, native } from '../native-loader.js';
import { nameOf, putName } from '../fuse/names.js';
import { ConfigError, SystemError } from '../errors.js';
import { readFileSync } from 'node:fs';
import { log } from '../log.js';
import type {
  AttrTarget, Context, CreateResult, DataSource, DataTarget, DirTarget, Entry, FileSystem, OpenResult, SetAttr,
  StatFs,
} from '../fuse/filesystem.js';
import type { ByteTarget, FileLock } from '../fuse/filesystem.js';
import {
  FUSE_ATTR_SUBMOUNT, FUSE_OPEN_KILL_SUIDGID, FUSE_ROOT_ID, FUSE_SETXATTR_ACL_KILL_SGID, FUSE_WRITE_KILL_SUIDGID, OFFSET_MAX, RENAME_EXCHANGE, RENAME_NOREPLACE,
  RENAME_WHITEOUT,
} from '../fuse/protocol.js';
import { FsCredentials } from './credentials.js';
import { FORBIDDEN, type IdMap } from './id-map.js';
import type { XattrMap } from './xattr-map.js';
import { HandleTable, type Handle } from './handle-table.js';
import { BlockingIo } from './blocking-io.js';
import { InodeStore, inodeKey, type Inode, type InodeFileHandles } from './inode-store.js';

const C = native.constants;
const E = C.errno;

export interface PassthroughOptions {
  /** The shared directory. */
  root: string;
  /**
   * Threads for data I/O that may block (--thread-pool-size; host/passthrough/blocking-io.ts). 0 (default): every
   * call runs on the caller's thread; a read, write, fsync, fallocate or copy_file_range that sleeps holds up the
   * whole queue. N > 0: they return Promises when they would block, and close() stops the threads.
   */
  threadPoolSize?: number;
  /** Pass O_DIRECT from the guest through to the host (default false: dropped, as page-cache I/O always works). */
  allowDirectIo?: boolean;
  /**
   * Pass O_NOATIME from the guest through to the host (the Rust virtiofsd's --preserve-noatime). Default false:
   * dropped, since the host refuses it (EPERM) to a caller who neither owns the file nor has CAP_FOWNER.
   */
  preserveNoatime?: boolean;
  /**
   * Create new nodes with the caller's fsuid/fsgid (default: when the daemon runs as root, which it must to
   * switch).
   */
  switchCredentials?: boolean;
  /** chown new nodes to the caller after creating them (default false; an alternative to switchCredentials). */
  chownNew?: boolean;
  /** Serve the xattr operations (virtiofsd's --xattr). Default false: they answer ENOSYS, as virtiofsd does,
   *  and the guest kernel stops asking (its callers get EOPNOTSUPP). */
  xattr?: boolean;
  /**
   * The server negotiates FUSE_WRITEBACK_CACHE: the kernel then reads through write-only handles (to fill partial
   * pages) and does O_APPEND itself, so files open O_WRONLY as O_RDWR and without O_APPEND.
   */
  writeback?: boolean;
  /** --translate-uid / --translate-gid (id-map.ts). Default: ids pass unchanged. */
  uidMap?: IdMap;
  gidMap?: IdMap;
  /** --xattrmap (xattr-map.ts): guest names <-> host names. Needs `xattr`. */
  xattrMap?: XattrMap;
  /**
   * --posix-acl: the server negotiates FUSE_POSIX_ACL and FUSE_DONT_MASK, so new nodes get the request's umask
   * here, except under a directory with a default ACL (which then decides the mode). Needs `xattr`.
   */
  posixAcl?: boolean;
  /**
   * How the inode table reaches host inodes (virtiofsd's --inode-file-handles): `never` (default) an O_PATH fd per
   * inode the guest holds; `prefer` a file handle where the filesystem has them (no fd per inode); `mandatory`
   * handles or an error. Handles need CAP_DAC_READ_SEARCH. See inode-store.ts.
   */
  inodeFileHandles?: InodeFileHandles;
  /** Mark directories that are mount points on the host (another st_dev than their parent's, or a mount root)
   *  FUSE_ATTR_SUBMOUNT in LOOKUP and READDIRPLUS entries (the server must negotiate FUSE_SUBMOUNTS). */
  announceSubmounts?: boolean;
  /**
   * Let MKNOD create character and block devices (default false: EPERM, as virtiofsd after CVE-2020-35517).
   * Even then the daemon never opens a device (OPEN/CREATE of anything but a regular file is refused).
   */
  allowMknodDevices?: boolean;
}

const STAT_FLAGS = C.AT_EMPTY_PATH | C.AT_SYMLINK_NOFOLLOW;
const R_OK = 4;
const W_OK = 2;
const X_OK = 1;

/** 0, -EINVAL (empty, `/`, NUL) or -EPERM (`.`/`..` when not allowed). */
export function checkName(name: string, allowDots: boolean): number {
  if (name.length === 0 || name.includes('/') || name.includes('\0')) return -E.EINVAL;
  if (!allowDots && (name === '.' || name === '..')) return -E.EPERM;
  return 0;
}

export class PassthroughFs implements FileSystem {
  readonly inodes: InodeStore;
  readonly handles = new HandleTable();
  /** O_PATH fd of /proc/self/fd: `openat(procFd, String(fd), ...)` reopens an O_PATH fd. */
  private readonly procFd: number;
  private readonly chownNew: boolean;
  private readonly openKeep: number;
  private readonly writeback: boolean;
  private readonly xattr: boolean;
  private readonly announceSubmounts: boolean;
  private readonly allowMknodDevices: boolean;
  private readonly xattrMap: XattrMap | undefined;
  private readonly posixAcl: boolean;
  /** LISTXATTR of the host names, before mapping (XATTR_LIST_MAX). */
  private xattrList: Uint8Array | null = null;
  readonly creds: FsCredentials;
  /** The process umask, read once: creations it narrows get a chmod to the exact mode. */
  private readonly umask: number;
  private readonly statfsOut = new Float64Array(8);
  /**
   * POSIX locks: node id -> guest lock owner -> an fd opened for that owner alone. The host lock is an OFD lock on
   * it, so each guest owner is its own lock holder (a lock per guest fh would merge processes sharing an open
   * file, and a classic POSIX lock on the daemon's fds would merge every owner into the daemon process). FLUSH by
   * the owner closes the fd, which drops its locks, as close(2) drops a process's locks.
   */
  private readonly lockFds = new Map<number, Map<bigint, number>>();
  private readonly lockArg = new BigInt64Array(5);
  private closed = false;
  /** The thread pool for blocking data I/O, or null (threadPoolSize 0). */
  private readonly blocking: BlockingIo | null;

  constructor(options: PassthroughOptions) {
    const rootFd = native.openat(C.AT_FDCWD, byteString(options.root), C.O_PATH | C.O_DIRECTORY | C.O_CLOEXEC, 0);
    if (rootFd < 0) throw new SystemError('openat', -rootFd, native.strerror(-rootFd), options.root);
    const probe = new ArrayBuffer(256);
    const dv = new DataView(probe);
    const r = native.statx(rootFd, '', STAT_FLAGS, C.STATX_BASIC_STATS, probe, 0);
    if (r < 0) {
      native.close(rootFd);
      throw new SystemError('statx', -r, native.strerror(-r), options.root);
    }
    const key = inodeKey(dv.getUint32(136, true), dv.getUint32(140, true), dv.getBigUint64(32, true));
    this.inodes = new InodeStore(rootFd, key, dv.getUint16(28, true) & C.S_IFMT,
      { fileHandles: options.inodeFileHandles ?? 'never' });
    this.procFd = native.openat(C.AT_FDCWD, '/proc/self/fd', C.O_PATH | C.O_DIRECTORY | C.O_CLOEXEC, 0);
    if (this.procFd < 0) {
      this.inodes.close();
      throw new SystemError('openat', -this.procFd, native.strerror(-this.procFd), '/proc/self/fd');
    }
    this.creds = new FsCredentials(options.switchCredentials ?? (process.geteuid?.() === 0), options.uidMap,
      options.gidMap);
    this.chownNew = options.chownNew ?? false;
    this.xattr = options.xattr ?? false;
    this.announceSubmounts = options.announceSubmounts ?? false;
    this.allowMknodDevices = options.allowMknodDevices ?? false;
    this.xattrMap = options.xattrMap;
    this.posixAcl = options.posixAcl ?? false;
    if ((this.xattrMap !== undefined || this.posixAcl) && !this.xattr) {
      this.close();
      throw new ConfigError('xattrMap and posixAcl need xattr');
    }
    this.writeback = options.writeback ?? false;
    this.openKeep = C.O_ACCMODE | C.O_APPEND | C.O_TRUNC | C.O_DSYNC | C.O_SYNC |
      (options.allowDirectIo ? C.O_DIRECT : 0) | (options.preserveNoatime ? C.O_NOATIME : 0);
    // The guest kernel applied the caller's umask already (we do not negotiate DONT_MASK), so ours must not
    // narrow the mode again. The process umask is left alone (it also guards the daemon's socket); new nodes
    // whose mode it narrowed get a chmod.
    this.umask = processUmask();
    try {
      this.blocking = (options.threadPoolSize ?? 0) > 0 ? new BlockingIo(options.threadPoolSize!) : null;
    } catch (e) {
      this.close();
      throw e;
    }
  }

  /** Closes every fd (nodes, handles, the root, /proc/self/fd). Idempotent; the filesystem is unusable after. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.blocking?.close(); // answers what is in flight and lets go of its handles first
    this.dropLocks();
    this.handles.clear();
    this.inodes.close();
    native.close(this.procFd);
  }

  // ---- helpers ----------------------------------------------------------------------------------------------------

  private statInto(fd: number, attr: AttrTarget): number {
    if (fd < 0) return fd; // a handle that no longer opens (Inode.fd)
    const r = native.statx(fd, '', STAT_FLAGS, C.STATX_BASIC_STATS, attr.buffer, attr.offset);
    if (r < 0) return r;
    this.creds.attrToGuest(attr); // every attr the guest sees passes here
    return 0;
  }

  /** Registers one lookup of the inode behind `fd` (an O_PATH fd we own), writing its attributes into `attr`. */
  private acquireFd(fd: number, attr: AttrTarget): Entry | number {
    const r = this.statInto(fd, attr);
    if (r < 0) {
      native.close(fd);
      return r;
    }
    const key = inodeKey(attr.devMajor, attr.devMinor, attr.ino);
    const inode = this.inodes.acquire(fd, key, attr.mode & C.S_IFMT);
    if (typeof inode === 'number') return inode; // mandatory file handles and none for this inode
    return { nodeId: inode.nodeId, generation: inode.generation };
  }

  /**
   * FUSE_ATTR_SUBMOUNT when `announceSubmounts` and the entry whose statx is in `attr` is a directory on another
   * mount than `parent`: another st_dev (a mount, or a btrfs subvolume), or a mount root (a bind mount of the same
   * filesystem). Never for the root itself or a `..` that climbs out of a submount.
   */
  private submountFlags(parent: Inode, attr: AttrTarget): number {
    if (!this.announceSubmounts || (attr.mode & C.S_IFMT) !== C.S_IFDIR) return 0;
    const dev = `${attr.devMajor}:${attr.devMinor}`;
    const mountRoot = (attr.view.getUint32(attr.offset + 8, true) & C.STATX_ATTR_MOUNT_ROOT) !== 0;
    return dev !== parent.dev || mountRoot ? FUSE_ATTR_SUBMOUNT : 0;
  }

  /**
   * Looks up `name` (one component, not `.`/`..`) under the directory fd `dirFd`. With an fd per inode, a statx
   * by name first: an inode we already hold (its O_PATH fd pins it, so (st_dev, st_ino) cannot have been reused)
   * costs that one syscall instead of openat + statx + close. A new one is opened and judged by its fd's own
   * statx, whatever the name points at by then.
   */
  private lookupChild(dirFd: number, name: string, attr: AttrTarget): Entry | number {
    if (this.inodes.fileHandles === 'never') {
      const r = native.statx(dirFd, name, C.AT_SYMLINK_NOFOLLOW | C.AT_NO_AUTOMOUNT, C.STATX_BASIC_STATS,
        attr.buffer, attr.offset);
      if (r < 0) return r;
      const known = this.inodes.getByKey(inodeKey(attr.devMajor, attr.devMinor, attr.ino));
      if (known !== undefined) {
        this.creds.attrToGuest(attr);
        this.inodes.ref(known);
        return { nodeId: known.nodeId, generation: known.generation };
      }
    }
    const fd = native.openat(dirFd, name, C.O_PATH | C.O_NOFOLLOW | C.O_CLOEXEC, 0);
    if (fd < 0) return fd;
    return this.acquireFd(fd, attr);
  }

  /**
   * Where MKNOD/MKDIR/CREATE make `name`: the caller's host credentials (EPERM for a forbidden guest id), the name
   * checked, the parent directory. In that order, so the errno precedence is the same for every creating op.
   */
  private newEntryIn(guestCtx: Context, parent: number, name: string): { ctx: Context; dir: Inode } | number {
    const ctx = this.creds.toHost(guestCtx);
    if (typeof ctx === 'number') return ctx;
    const bad = checkName(name, false);
    if (bad < 0) return bad;
    const dir = this.dir(parent);
    if (typeof dir === 'number') return dir;
    return { ctx, dir };
  }

  private dir(nodeId: number): Inode | number {
    const inode = this.inodes.get(nodeId);
    if (inode === undefined) return -E.ENOENT;
    if (inode.type !== C.S_IFDIR) return -E.ENOTDIR;
    const fd = inode.fd; // with file handles: opened now, stays open for this operation
    return fd < 0 ? fd : inode;
  }

  private reopen(inode: Inode, flags: number): number {
    const fd = inode.fd;
    if (fd < 0) return fd;
    return native.openat(this.procFd, String(fd), flags | C.O_CLOEXEC, 0);
  }

  /** After creating `name` under `parent`: owner = caller (chownNew), permission bits the umask removed put back. */
  private fixNew(ctx: Context, parent: Inode, name: string, mode: number, attr: AttrTarget): void {
    if (this.chownNew && !this.creds.isDaemon(ctx)) {
      // A setgid parent gives its group to new nodes: keep that.
      let gid = ctx.gid;
      if (this.statInto(parent.fd, attr) === 0 && (attr.mode & C.S_ISGID) !== 0) gid = -1;
      const r = native.fchownat(parent.fd, name, ctx.uid, gid, C.AT_SYMLINK_NOFOLLOW);
      if (r < 0) log.debug(`passthrough: chown of new node failed: ${native.strerror(-r)}`);
    }
    // (With posixAcl the umask in force was the request's, or none under a default ACL: nothing to undo.)
    if (!this.posixAcl && this.umask !== 0 && (mode & this.umask & 0o777) !== 0 && (mode & C.S_IFMT) !== C.S_IFLNK) {
      const fd = native.openat(parent.fd, name, C.O_PATH | C.O_NOFOLLOW | C.O_CLOEXEC, 0);
      if (fd >= 0) {
        // Only the permission bits: setuid/setgid/sticky stay as the kernel left them (an inherited or stripped
        // S_ISGID included).
        if (native.statx(fd, '', STAT_FLAGS, C.STATX_BASIC_STATS, probe.buffer, 0) === 0) {
          const cur = probe.getUint16(28, true) & 0o7777;
          native.fchmodat(this.procFd, String(fd), (cur & ~0o777) | (mode & 0o777));
        }
        native.close(fd);
      }
    }
  }

  /**
   * Runs a creating syscall as the caller (host ids), under the umask the new node must get. With posixAcl the
   * kernel negotiated FUSE_DONT_MASK and left the umask to us: the request's, or none under a directory with a
   * default ACL (the ACL then decides the mode, as the kernel's posix_acl_create does). umask(2) is process-wide,
   * but all filesystem work runs on this thread and it is restored before returning. Without posixAcl the guest
   * applied the umask and fixNew undoes ours.
   */
  private creating(ctx: Context, dir: Inode, reqUmask: number, fn: () => number): number {
    if (!this.posixAcl) return this.creds.asCaller(ctx, fn);
    const old = native.umask(this.hasDefaultAcl(dir) ? 0 : reqUmask & 0o777);
    try {
      return this.creds.asCaller(ctx, fn);
    } finally {
      native.umask(old);
    }
  }

  private hasDefaultAcl(dir: Inode): boolean {
    return this.inProcFd(dir, (p) => native.getxattr(p, 'system.posix_acl_default', probe.buffer, 0, 0)) > 0;
  }

  /**
   * The mode a new non-directory may have under `parent`: without S_ISGID when the parent is setgid and the caller
   * is neither root nor of the parent's group (see the CVE-2022-0358 note above). Directories keep theirs (they
   * inherit S_ISGID from the parent anyway).
   */
  private createMode(ctx: Context, parent: Inode, mode: number): number {
    if ((mode & C.S_ISGID) === 0 || (mode & C.S_IFMT) === C.S_IFDIR || ctx.uid === 0) return mode;
    if (native.statx(parent.fd, '', STAT_FLAGS, C.STATX_BASIC_STATS, probe.buffer, 0) < 0) return mode & ~C.S_ISGID;
    const parentMode = probe.getUint16(28, true);
    const parentGid = probe.getUint32(24, true);
    return (parentMode & C.S_ISGID) !== 0 && parentGid !== ctx.gid ? mode & ~C.S_ISGID : mode;
  }

  /**
   * Clears setuid, and setgid if group-executable or the writer is outside the file's group, on a regular file
   * (killpriv; Linux's setattr_should_drop_sgid). `writerGid` is the caller's host gid: its supplementary groups
   * are unknown here, so a member only through one of them loses a non-executable setgid too (the safe side).
   * 0 or -errno.
   */
  private killSuidgid(fd: number, writerGid: number): number {
    const r = native.statx(fd, '', STAT_FLAGS, C.STATX_BASIC_STATS, probe.buffer, 0);
    if (r < 0) return r;
    const mode = probe.getUint16(28, true);
    const fileGid = probe.getUint32(24, true);
    if ((mode & C.S_IFMT) !== C.S_IFREG) return 0;
    let kill = mode & C.S_ISUID;
    if ((mode & C.S_ISGID) !== 0 && ((mode & C.S_IXGRP) !== 0 || writerGid !== fileGid)) kill |= C.S_ISGID;
    if (kill === 0) return 0;
    return native.fchmodat(this.procFd, String(fd), mode & 0o7777 & ~kill);
  }

  private fileHandle(nodeId: number, fh: number): Handle | number {
    return this.handles.lookup(fh, nodeId, false) ?? -E.EBADF;
  }

  // ---- FileSystem ---------------------------------------------------------------------------------------------------

  destroy(): void {
    this.dropLocks();
    this.handles.clear();
    this.inodes.clear();
  }

  lookup(_ctx: Context, parent: number, name: string, attr: AttrTarget): Entry | number {
    const bad = checkName(name, true);
    if (bad < 0) return bad;
    const dir = this.dir(parent);
    if (typeof dir === 'number') return dir;
    if (name === '.' || (name === '..' && dir === this.inodes.root)) {
      const r = this.statInto(dir.fd, attr);
      if (r < 0) return r;
      this.inodes.ref(dir);
      return { nodeId: dir.nodeId, generation: dir.generation };
    }
    if (name === '..') {
      const fd = native.openat(dir.fd, '..', C.O_PATH | C.O_DIRECTORY | C.O_CLOEXEC, 0);
      if (fd < 0) return fd;
      return this.acquireFd(fd, attr); // the root's key maps back to node 1
    }
    const entry = this.lookupChild(dir.fd, name, attr);
    if (typeof entry !== 'number') entry.attrFlags = this.submountFlags(dir, attr);
    return entry;
  }

  forget(nodeId: number, nlookup: number): void {
    this.inodes.forget(nodeId, nlookup);
    if (this.lockFds.size > 0 && this.inodes.get(nodeId) === undefined) this.dropLocks(nodeId);
  }

  getattr(_ctx: Context, nodeId: number, _fh: number | undefined, attr: AttrTarget): number {
    const inode = this.inodes.get(nodeId);
    if (inode === undefined) return -E.ENOENT;
    return this.statInto(inode.fd, attr);
  }

  setattr(ctx: Context, nodeId: number, set: SetAttr, attr: AttrTarget): number {
    const inode = this.inodes.get(nodeId);
    if (inode === undefined) return -E.ENOENT;
    let h: Handle | undefined;
    if (set.fh !== undefined) {
      h = this.handles.lookup(set.fh, nodeId, false);
      if (h === undefined) return -E.EBADF;
    }
    const isLink = inode.type === C.S_IFLNK;
    let r = 0;
    if (set.mode !== undefined) {
      if (isLink) return -E.EOPNOTSUPP;
      r = h !== undefined ? native.fchmod(h.fd, set.mode & 0o7777)
        : native.fchmodat(this.procFd, String(inode.fd), set.mode & 0o7777);
      if (r < 0) return r;
    }
    if (set.uid !== undefined || set.gid !== undefined) {
      const uid = set.uid === undefined ? -1 : this.creds.uidToHost(set.uid);
      const gid = set.gid === undefined ? -1 : this.creds.gidToHost(set.gid);
      // FORBIDDEN is -1, which is also fchownat's "unchanged": test only the ids the guest actually sent.
      if ((set.uid !== undefined && uid === FORBIDDEN) || (set.gid !== undefined && gid === FORBIDDEN)) return -E.EPERM;
      r = native.fchownat(inode.fd, '', uid, gid, C.AT_EMPTY_PATH | C.AT_SYMLINK_NOFOLLOW);
      if (r < 0) return r;
    }
    if (set.size !== undefined) {
      if (inode.type === C.S_IFDIR) return -E.EISDIR;
      if (inode.type !== C.S_IFREG) return -E.EINVAL;
      if (set.killSuidgid) {
        r = this.killSuidgid(inode.fd, this.creds.gidToHost(ctx.gid));
        if (r < 0) return r;
      }
      if (h !== undefined) {
        r = native.ftruncate(h.fd, set.size);
      } else {
        const fd = this.reopen(inode, C.O_WRONLY);
        if (fd < 0) return fd;
        r = native.ftruncate(fd, set.size);
        native.close(fd);
      }
      if (r < 0) return r;
    }
    if (set.atime !== undefined || set.mtime !== undefined) {
      const [as, an] = timeArg(set.atime);
      const [ms, mn] = timeArg(set.mtime);
      // Through /proc/self/fd/N with flags 0: the magic link is the inode itself (a symlink included).
      const fd = h !== undefined ? h.fd : inode.fd;
      r = native.utimensat(this.procFd, String(fd), as, an, ms, mn, 0);
      if (r < 0) return r;
    }
    return this.statInto(inode.fd, attr);
  }

  readlink(_ctx: Context, nodeId: number): string | number {
    const inode = this.inodes.get(nodeId);
    if (inode === undefined) return -E.ENOENT;
    if (inode.type !== C.S_IFLNK) return -E.EINVAL;
    return native.readlinkat(inode.fd, '');
  }

  symlink(guestCtx: Context, parent: number, name: string, target: string, attr: AttrTarget): Entry | number {
    const ctx = this.creds.toHost(guestCtx);
    if (typeof ctx === 'number') return ctx;
    const bad = checkName(name, false);
    if (bad < 0) return bad;
    if (target.length === 0 || target.includes('\0')) return -E.EINVAL;
    const dir = this.dir(parent);
    if (typeof dir === 'number') return dir;
    const r = this.creds.asCaller(ctx, () => native.symlinkat(target, dir.fd, name));
    if (r < 0) return r;
    this.fixNew(ctx, dir, name, C.S_IFLNK | 0o777, attr);
    return this.lookupChild(dir.fd, name, attr);
  }

  mknod(guestCtx: Context, parent: number, name: string, mode: number, rdev: number, umask: number,
        attr: AttrTarget): Entry | number {
    const at = this.newEntryIn(guestCtx, parent, name);
    if (typeof at === 'number') return at;
    const { ctx, dir } = at;
    const type = mode & C.S_IFMT;
    if (type === C.S_IFDIR || type === C.S_IFLNK) return -E.EINVAL;
    // A device node made by the guest would be a host device node (CVE-2020-35517 class): refused unless allowed.
    // Char 0:0 is an overlayfs whiteout, which names no device (opening it is ENXIO) and guest overlayfs needs it.
    const device = type === C.S_IFCHR || type === C.S_IFBLK;
    if (device && !this.allowMknodDevices && !(type === C.S_IFCHR && rdev === 0)) return -E.EPERM;
    const m = this.createMode(ctx, dir, mode);
    const r = this.creating(ctx, dir, umask,
      () => native.mknodat(dir.fd, name, m, device ? rdev : 0));
    if (r < 0) return r;
    this.fixNew(ctx, dir, name, m, attr);
    return this.lookupChild(dir.fd, name, attr);
  }

  mkdir(guestCtx: Context, parent: number, name: string, mode: number, umask: number,
        attr: AttrTarget): Entry | number {
    const at = this.newEntryIn(guestCtx, parent, name);
    if (typeof at === 'number') return at;
    const { ctx, dir } = at;
    const r = this.creating(ctx, dir, umask, () => native.mkdirat(dir.fd, name, mode & 0o7777));
    if (r < 0) return r;
    this.fixNew(ctx, dir, name, C.S_IFDIR | (mode & 0o7777), attr);
    return this.lookupChild(dir.fd, name, attr);
  }

  unlink(_ctx: Context, parent: number, name: string): number {
    const bad = checkName(name, false);
    if (bad < 0) return bad;
    const dir = this.dir(parent);
    if (typeof dir === 'number') return dir;
    return native.unlinkat(dir.fd, name, 0);
  }

  rmdir(_ctx: Context, parent: number, name: string): number {
    const bad = checkName(name, false);
    if (bad < 0) return bad;
    const dir = this.dir(parent);
    if (typeof dir === 'number') return dir;
    return native.unlinkat(dir.fd, name, C.AT_REMOVEDIR);
  }

  rename(_ctx: Context, parent: number, name: string, newParent: number, newName: string, flags: number): number {
    const bad = checkName(name, false) || checkName(newName, false);
    if (bad < 0) return bad;
    if ((flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE | RENAME_WHITEOUT)) !== 0) return -E.EINVAL;
    const hostFlags = (flags & RENAME_NOREPLACE ? C.RENAME_NOREPLACE : 0) |
      (flags & RENAME_EXCHANGE ? C.RENAME_EXCHANGE : 0) | (flags & RENAME_WHITEOUT ? C.RENAME_WHITEOUT : 0);
    const from = this.dir(parent);
    if (typeof from === 'number') return from;
    const to = this.dir(newParent);
    if (typeof to === 'number') return to;
    return native.renameat2(from.fd, name, to.fd, newName, hostFlags);
  }

  link(_ctx: Context, nodeId: number, newParent: number, newName: string, attr: AttrTarget): Entry | number {
    const bad = checkName(newName, false);
    if (bad < 0) return bad;
    const inode = this.inodes.get(nodeId);
    if (inode === undefined) return -E.ENOENT;
    if (inode.type === C.S_IFDIR) return -E.EPERM;
    const dir = this.dir(newParent);
    if (typeof dir === 'number') return dir;
    // linkat(AT_EMPTY_PATH) needs CAP_DAC_READ_SEARCH; the /proc/self/fd link works for any owner.
    const r = native.linkat(this.procFd, String(inode.fd), dir.fd, newName, C.AT_SYMLINK_FOLLOW);
    if (r < 0) return r;
    return this.lookupChild(dir.fd, newName, attr);
  }

  /** Open flags from the guest, made safe: access mode, O_APPEND, O_TRUNC, O_(D)SYNC (+O_DIRECT, O_NOATIME if allowed);
   *  O_CREAT/O_EXCL/O_NOFOLLOW/O_PATH/O_NONBLOCK and the rest are dropped. */
  private openFlags(flags: number): number {
    let f = flags & this.openKeep;
    if (this.writeback) {
      f &= ~C.O_APPEND;
      if ((f & C.O_ACCMODE) === C.O_WRONLY) f = (f & ~C.O_ACCMODE) | C.O_RDWR;
    }
    return f | C.O_CLOEXEC;
  }

  open(ctx: Context, nodeId: number, flags: number, openFlags = 0): OpenResult | number {
    const inode = this.inodes.get(nodeId);
    if (inode === undefined) return -E.ENOENT;
    if (inode.type === C.S_IFDIR) return -E.EISDIR;
    if (inode.type === C.S_IFLNK) return -E.ELOOP;
    if (inode.type !== C.S_IFREG) return -E.ENXIO; // fifos and devices are the guest's own business
    if ((flags & C.O_TRUNC) !== 0 && (openFlags & FUSE_OPEN_KILL_SUIDGID) !== 0) {
      const k = this.killSuidgid(inode.fd, this.creds.gidToHost(ctx.gid));
      if (k < 0) return k;
    }
    const fd = this.reopen(inode, this.openFlags(flags));
    if (fd < 0) return fd;
    return { fh: this.handles.add(nodeId, fd, false).fh };
  }

  /**
   * DAX (host/dax/dax-device.ts): a new fd on the node's regular file with exactly O_RDWR (`write`) or O_RDONLY,
   * for the frontend to map into the window. With `fh`, that open handle's access mode bounds it (-EACCES).
   */
  openForMapping(nodeId: number, fh: number | undefined, write: boolean): number {
    const inode = this.inodes.get(nodeId);
    if (inode === undefined) return -E.ENOENT;
    if (inode.type !== C.S_IFREG) return -E.EINVAL;
    if (fh !== undefined) {
      const h = this.handles.lookup(fh, nodeId, false);
      if (h === undefined) return -E.EBADF;
      const mode = native.fcntlGetfl(h.fd);
      if (mode < 0) return mode;
      const acc = mode & C.O_ACCMODE;
      if (write ? acc === C.O_RDONLY : acc === C.O_WRONLY) return -E.EACCES;
    }
    return this.reopen(inode, write ? C.O_RDWR : C.O_RDONLY);
  }

  create(guestCtx: Context, parent: number, name: string, mode: number, flags: number, umask: number,
         attr: AttrTarget, openFlags = 0): CreateResult | number {
    const at = this.newEntryIn(guestCtx, parent, name);
    if (typeof at === 'number') return at;
    const { ctx, dir } = at;
    const base = this.openFlags(flags);
    // Create exclusively first, as the caller, so we know whether the file is new (and it gets the caller's owner).
    const m = this.createMode(ctx, dir, C.S_IFREG | (mode & 0o7777));
    const fd = this.creating(ctx, dir, umask,
      () => native.openat(dir.fd, name, base | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW, m & 0o7777));
    if ((flags & C.O_EXCL) === 0 && (fd === -E.EEXIST || (fd === -E.EACCES && this.exists(dir, name)))) {
      // (EACCES as the caller for an existing name: a search permission through a group the host does not know
      // the caller is in; the guest kernel has checked the open already.)
      // It exists: look it up without following anything, refuse what is not a regular file (opening a fifo
      // would block the daemon), and open it through the O_PATH fd.
      const entry = this.lookupChild(dir.fd, name, attr);
      if (typeof entry === 'number') return entry;
      const inode = this.inodes.get(entry.nodeId)!;
      const type = inode.type;
      if (type === C.S_IFREG && (base & C.O_TRUNC) !== 0 && (openFlags & FUSE_OPEN_KILL_SUIDGID) !== 0) {
        const k = this.killSuidgid(inode.fd, ctx.gid);
        if (k < 0) {
          this.inodes.forget(entry.nodeId, 1);
          return k;
        }
      }
      const ofd = type === C.S_IFREG ? this.reopen(inode, base) : -1;
      if (ofd < 0) {
        this.inodes.forget(entry.nodeId, 1);
        return type === C.S_IFREG ? ofd : type === C.S_IFDIR ? -E.EISDIR : type === C.S_IFLNK ? -E.ELOOP : -E.ENXIO;
      }
      const h = this.handles.add(entry.nodeId, ofd, false);
      return { nodeId: entry.nodeId, generation: entry.generation, fh: h.fh };
    }
    if (fd < 0) return fd;
    this.fixNew(ctx, dir, name, m, attr);
    return this.openedNew(fd, attr);
  }

  private exists(dir: Inode, name: string): boolean {
    const fd = native.openat(dir.fd, name, C.O_PATH | C.O_NOFOLLOW | C.O_CLOEXEC, 0);
    if (fd < 0) return false;
    native.close(fd);
    return true;
  }

  /** A new file open as `fd` (ours): its node (+1 lookup) and a handle on `fd`. */
  private openedNew(fd: number, attr: AttrTarget): CreateResult | number {
    const pathFd = native.openat(this.procFd, String(fd), C.O_PATH | C.O_CLOEXEC, 0);
    if (pathFd < 0) {
      native.close(fd);
      return pathFd;
    }
    const entry = this.acquireFd(pathFd, attr);
    if (typeof entry === 'number') {
      native.close(fd);
      return entry;
    }
    const h = this.handles.add(entry.nodeId, fd, false);
    return { nodeId: entry.nodeId, generation: entry.generation, fh: h.fh };
  }

  read(_ctx: Context, nodeId: number, fh: number, offset: number, target: DataTarget): number | Promise<number> {
    const h = this.fileHandle(nodeId, fh);
    if (typeof h === 'number') return h;
    return this.blocking !== null ? this.blocking.read(h, target, offset) : target.fromFd(h.fd, offset);
  }

  write(ctx: Context, nodeId: number, fh: number, offset: number, source: DataSource,
        writeFlags: number): number | Promise<number> {
    const h = this.fileHandle(nodeId, fh);
    if (typeof h === 'number') return h;
    if ((writeFlags & FUSE_WRITE_KILL_SUIDGID) !== 0) {
      const k = this.killSuidgid(h.fd, this.creds.gidToHost(ctx.gid));
      if (k < 0) return k;
    }
    return this.blocking !== null ? this.blocking.write(h, source, offset) : source.toFd(h.fd, offset);
  }

  flush(_ctx: Context, nodeId: number, fh: number, lockOwner: bigint): number {
    const h = this.fileHandle(nodeId, fh);
    if (typeof h === 'number') return h;
    // close(2) by a lock owner releases its POSIX locks on the file.
    const owners = this.lockFds.get(nodeId);
    const lfd = owners?.get(lockOwner);
    if (lfd !== undefined) {
      native.close(lfd);
      owners!.delete(lockOwner);
      if (owners!.size === 0) this.lockFds.delete(nodeId);
    }
    // close(dup(fd)) makes the host filesystem see a close (network filesystems flush there).
    const d = native.dup(h.fd);
    if (d < 0) return d;
    return native.close(d);
  }

  release(_ctx: Context, _nodeId: number, fh: number, _flags: number, _releaseFlags: number): number {
    this.handles.remove(fh);
    return 0;
  }

  fsync(_ctx: Context, nodeId: number, fh: number, datasync: boolean): number | Promise<number> {
    const h = this.fileHandle(nodeId, fh);
    if (typeof h === 'number') return h;
    if (this.blocking !== null) return this.blocking.fsync(h, datasync);
    return datasync ? native.fdatasync(h.fd) : native.fsync(h.fd);
  }

  opendir(_ctx: Context, nodeId: number, _flags: number): OpenResult | number {
    const dir = this.dir(nodeId);
    if (typeof dir === 'number') return dir;
    const fd = native.openat(dir.fd, '.', C.O_RDONLY | C.O_DIRECTORY | C.O_CLOEXEC, 0);
    if (fd < 0) return fd;
    return { fh: this.handles.add(nodeId, fd, true).fh };
  }

  readdir(_ctx: Context, nodeId: number, fh: number, cookie: bigint, target: DirTarget): number {
    return this.readDirectory(nodeId, fh, cookie, target, false);
  }

  readdirplus(_ctx: Context, nodeId: number, fh: number, cookie: bigint, target: DirTarget): number {
    return this.readDirectory(nodeId, fh, cookie, target, true);
  }

  private readDirectory(nodeId: number, fh: number, cookie: bigint, target: DirTarget, plus: boolean): number {
    const h = this.handles.lookup(fh, nodeId, true);
    if (h === undefined) return -E.EBADF;
    if (h.dirPos !== cookie) {
      const pos = native.lseek(h.fd, cookie, C.SEEK_SET);
      if (pos < 0n) return Number(pos);
      h.dirPos = cookie;
    }
    let full = false;
    while (!full) {
      const n = target.fill(h.fd);
      if (n < 0) {
        h.dirPos = null;
        return target.used > 0 ? 0 : n; // what was appended is still valid
      }
      if (n === 0) break; // end of directory; the position stays
      let step: number;
      while ((step = target.next()) === 1) {
        if (!plus) {
          if (!target.emit()) { full = true; break; }
          continue;
        }
        if (target.isDotOrDotDot()) {
          if (!target.emitPlus(0, 0)) { full = true; break; }
          continue;
        }
        if (!target.fitsPlus()) { full = true; break; }
        const name = target.name();
        const entry = this.lookupChild(h.fd, name, target.attr);
        if (typeof entry === 'number') {
          // Gone since getdents: a plain entry; the guest looks it up itself.
          if (!target.emitPlus(0, 0)) { full = true; break; }
          continue;
        }
        if (entry.nodeId === FUSE_ROOT_ID) {
          // The kernel refuses node 1 inside a directory listing (a bind mount of the root into itself).
          this.inodes.forget(entry.nodeId, 1);
          if (!target.emitPlus(0, 0)) { full = true; break; }
          continue;
        }
        const parentInode = this.inodes.get(nodeId);
        const flags = parentInode === undefined ? 0 : this.submountFlags(parentInode, target.attr);
        if (!target.emitPlus(entry.nodeId, entry.generation, flags)) {
          this.inodes.forget(entry.nodeId, 1);
          full = true;
          break;
        }
      }
      if (step === -1) {
        log.warn('passthrough: corrupt getdents64 buffer');
        h.dirPos = null;
        return target.used > 0 ? 0 : -E.EIO;
      }
    }
    // A fully used batch leaves the fd exactly after the last record we sent; a partly used one does not.
    h.dirPos = full ? null : (target.lastCookie() ?? h.dirPos);
    return 0;
  }

  releasedir(_ctx: Context, _nodeId: number, fh: number): number {
    this.handles.remove(fh);
    return 0;
  }

  fsyncdir(_ctx: Context, nodeId: number, fh: number, datasync: boolean): number | Promise<number> {
    const h = this.handles.lookup(fh, nodeId, true);
    if (h === undefined) return -E.EBADF;
    if (this.blocking !== null) return this.blocking.fsync(h, datasync);
    return datasync ? native.fdatasync(h.fd) : native.fsync(h.fd);
  }

  statfs(_ctx: Context, nodeId: number): StatFs | number {
    const inode = this.inodes.get(nodeId) ?? this.inodes.get(FUSE_ROOT_ID)!;
    const o = this.statfsOut;
    const r = native.fstatvfs(inode.fd, o);
    if (r < 0) return r;
    return { bsize: o[0], frsize: o[1], blocks: o[2], bfree: o[3], bavail: o[4], files: o[5], ffree: o[6], namelen: o[7] };
  }

  access(guestCtx: Context, nodeId: number, mask: number): number {
    const ctx = this.creds.toHost(guestCtx);
    if (typeof ctx === 'number') return ctx;
    const inode = this.inodes.get(nodeId);
    if (inode === undefined) return -E.ENOENT;
    // Check on a private buffer: the attr scratch belongs to the reply being built.
    const probe = accessProbe;
    const r = native.statx(inode.fd, '', STAT_FLAGS, C.STATX_BASIC_STATS, probe.buffer, 0);
    if (r < 0) return r;
    const mode = probe.getUint16(28, true);
    const want = mask & (R_OK | W_OK | X_OK);
    if (want === 0) return 0;
    if (ctx.uid === 0) {
      // root: everything, except executing a file nobody may execute.
      if ((want & X_OK) !== 0 && (mode & C.S_IFMT) !== C.S_IFDIR && (mode & 0o111) === 0) return -E.EACCES;
      return 0;
    }
    const bits = ctx.uid === probe.getUint32(20, true) ? (mode >> 6) & 7
      : ctx.gid === probe.getUint32(24, true) ? (mode >> 3) & 7 : mode & 7;
    return (want & ~bits) !== 0 ? -E.EACCES : 0;
  }

  tmpfile(guestCtx: Context, parent: number, mode: number, flags: number, umask: number,
          attr: AttrTarget): CreateResult | number {
    const ctx = this.creds.toHost(guestCtx);
    if (typeof ctx === 'number') return ctx;
    const dir = this.dir(parent);
    if (typeof dir === 'number') return dir;
    const m = this.createMode(ctx, dir, C.S_IFREG | (mode & 0o7777));
    const base = this.openFlags(flags) & ~C.O_TRUNC;
    const fd = this.creating(ctx, dir, umask, () => native.openat(dir.fd, '.', base | C.O_TMPFILE, m & 0o7777));
    if (fd < 0) return fd;
    if (!this.posixAcl && this.umask !== 0 && (m & this.umask & 0o777) !== 0) native.fchmod(fd, m & 0o7777);
    return this.openedNew(fd, attr);
  }

  // ---- extended attributes: path calls on the inode's /proc/self/fd entry (the inode itself, never a guest
  // symlink's target). The entry is named relative to procFd, opened at start-up: after a sandbox pivot there is
  // no /proc in the new root, and an absolute "/proc/self/fd/N" would resolve to whatever the guest put there.

  /** Runs a path-based xattr syscall on the inode with the process cwd briefly at procFd; restores the cwd. */
  private viaProcFd(nodeId: number, call: (name: string) => number): number {
    if (!this.xattr) return -E.ENOSYS;
    const inode = this.inodes.get(nodeId);
    if (inode === undefined) return -E.ENOENT;
    return this.inProcFd(inode, call);
  }

  private inProcFd(inode: Inode, call: (name: string) => number): number {
    const cwd = native.openat(C.AT_FDCWD, '.', C.O_PATH | C.O_DIRECTORY | C.O_CLOEXEC, 0);
    if (cwd < 0) return cwd;
    let r = native.fchdir(this.procFd);
    if (r === 0) {
      r = call(String(inode.fd));
      native.fchdir(cwd);
    }
    native.close(cwd);
    return r;
  }

  /** The host's name for a guest's xattr name (xattrMap), or -errno when the map refuses it. */
  private hostXattrName(name: string): string | number {
    if (!this.xattr) return -E.ENOSYS;
    return this.xattrMap === undefined ? name : this.xattrMap.toHost(name);
  }

  getxattr(_ctx: Context, nodeId: number, name: string, out: ByteTarget): number {
    const host = this.hostXattrName(name);
    if (typeof host === 'number') return host;
    return this.viaProcFd(nodeId, (p) => native.getxattr(p, host, out.buffer, out.offset, out.size));
  }

  listxattr(_ctx: Context, nodeId: number, out: ByteTarget): number {
    const map = this.xattrMap;
    if (map === undefined) return this.viaProcFd(nodeId, (p) => native.listxattr(p, out.buffer, out.offset, out.size));
    // The host's list in full, then the guest's names of those the map shows, with listxattr's size rules.
    const list = this.xattrList ??= new Uint8Array(XATTR_LIST_MAX);
    const n = this.viaProcFd(nodeId, (p) => native.listxattr(p, list, 0, list.length));
    if (n < 0) return n;
    const dst = new Uint8Array(out.buffer, out.offset, out.size);
    let len = 0;
    for (let start = 0, i = 0; i < n; i++) {
      if (list[i] !== 0) continue;
      const guest = map.toGuest(nameOf(list, start, i));
      start = i + 1;
      if (guest === null) continue;
      if (out.size !== 0) {
        if (len + guest.length + 1 > out.size) return -E.ERANGE;
        putName(guest, dst.subarray(len));
        dst[len + guest.length] = 0;
      }
      len += guest.length + 1;
    }
    return len;
  }

  setxattr(_ctx: Context, nodeId: number, name: string, value: Uint8Array, flags: number,
           setxattrFlags = 0): number {
    const host = this.hostXattrName(name);
    if (typeof host === 'number') return host;
    const r = this.viaProcFd(nodeId, (p) => native.setxattr(p, host, value, 0, value.length, flags));
    if (r < 0 || (setxattrFlags & FUSE_SETXATTR_ACL_KILL_SGID) === 0 || name !== 'system.posix_acl_access') return r;
    // The guest kernel found the caller neither in the file's group nor privileged: an access ACL set by it clears
    // S_ISGID (the kernel's posix_acl_update_mode). The daemon set it, so the host kernel kept the bit.
    const inode = this.inodes.get(nodeId);
    if (inode === undefined) return r;
    if (native.statx(inode.fd, '', STAT_FLAGS, C.STATX_BASIC_STATS, probe.buffer, 0) < 0) return r;
    const mode = probe.getUint16(28, true);
    if ((mode & C.S_ISGID) === 0) return r;
    return native.fchmodat(this.procFd, String(inode.fd), mode & 0o7777 & ~C.S_ISGID);
  }

  removexattr(_ctx: Context, nodeId: number, name: string): number {
    const host = this.hostXattrName(name);
    if (typeof host === 'number') return host;
    return this.viaProcFd(nodeId, (p) => native.removexattr(p, host));
  }

  // ---- whole-file operations -------------------------------------------------------------------------------------

  fallocate(_ctx: Context, nodeId: number, fh: number, offset: number, length: number,
            mode: number): number | Promise<number> {
    const h = this.fileHandle(nodeId, fh);
    if (typeof h === 'number') return h;
    if (this.blocking !== null) return this.blocking.fallocate(h, mode, offset, length);
    return native.fallocate(h.fd, mode, offset, length);
  }

  lseek(_ctx: Context, nodeId: number, fh: number, offset: bigint, whence: number): bigint | number {
    const h = this.fileHandle(nodeId, fh);
    if (typeof h === 'number') return h;
    if (whence !== C.SEEK_SET && whence !== C.SEEK_CUR && whence !== C.SEEK_END && whence !== C.SEEK_DATA &&
      whence !== C.SEEK_HOLE) return -E.EINVAL;
    const r = native.lseek(h.fd, offset, whence);
    return r < 0n ? Number(r) : r;
  }

  copyFileRange(_ctx: Context, nodeIn: number, fhIn: number, offIn: number, nodeOut: number, fhOut: number,
                offOut: number, length: number, flags: number): number | Promise<number> {
    const hin = this.fileHandle(nodeIn, fhIn);
    if (typeof hin === 'number') return hin;
    const hout = this.fileHandle(nodeOut, fhOut);
    if (typeof hout === 'number') return hout;
    if (this.blocking !== null && flags === 0) return this.blocking.copyFileRange(hin, offIn, hout, offOut, length);
    return native.copyFileRange(hin.fd, offIn, hout.fd, offOut, length, flags);
  }

  syncfs(_ctx: Context, _nodeId: number): number {
    // syncfs needs a real open file (not O_PATH): the shared directory's filesystem.
    const fd = native.openat(this.inodes.root.fd, '.', C.O_RDONLY | C.O_DIRECTORY | C.O_CLOEXEC, 0);
    if (fd < 0) return fd;
    const r = native.syncfs(fd);
    native.close(fd);
    return r;
  }

  // ---- POSIX record locks (OFD locks on one fd per guest lock owner) ----------------------------------------------

  private dropLocks(nodeId?: number): void {
    for (const [node, owners] of this.lockFds) {
      if (nodeId !== undefined && node !== nodeId) continue;
      for (const fd of owners.values()) native.close(fd);
      this.lockFds.delete(node);
    }
  }

  /** The owner's lock fd on the node (opened on first use), or -errno. */
  private ownerFd(inode: Inode, owner: bigint, create: boolean): number {
    let owners = this.lockFds.get(inode.nodeId);
    const known = owners?.get(owner);
    if (known !== undefined) return known;
    if (!create) return -E.ENOENT;
    // Read and write locks need an fd open for reading or writing: the widest access the host allows.
    let fd = this.reopen(inode, C.O_RDWR);
    if (fd === -E.EACCES || fd === -E.EROFS || fd === -E.ETXTBSY) fd = this.reopen(inode, C.O_RDONLY);
    if (fd === -E.EACCES) fd = this.reopen(inode, C.O_WRONLY);
    if (fd < 0) return fd;
    if (owners === undefined) {
      owners = new Map();
      this.lockFds.set(inode.nodeId, owners);
    }
    owners.set(owner, fd);
    return fd;
  }

  /** FileLock -> struct flock in this.lockArg. */
  private toFlock(lock: FileLock): void {
    const f = this.lockArg;
    f[0] = BigInt(lock.type);
    f[1] = BigInt(C.SEEK_SET);
    f[2] = lock.start;
    f[3] = lock.end === OFFSET_MAX ? 0n : lock.end - lock.start + 1n; // l_len 0: to the end of the file
    f[4] = 0n;
  }

  getlk(_ctx: Context, nodeId: number, fh: number, owner: bigint, lock: FileLock): FileLock | number {
    const h = this.fileHandle(nodeId, fh);
    if (typeof h === 'number') return h;
    const inode = this.inodes.get(nodeId);
    if (inode === undefined) return -E.ENOENT;
    // The owner's own fd: its own locks never conflict with it.
    const fd = this.ownerFd(inode, owner, true);
    if (fd < 0) return fd;
    this.toFlock(lock);
    const r = native.fcntlLock(fd, C.F_OFD_GETLK, this.lockArg);
    if (r < 0) return r;
    const f = this.lockArg;
    const type = Number(f[0]);
    if (type === C.F_UNLCK) return { ...lock, type };
    // The holder's pid is a host pid (or -1 for an OFD lock): meaningless to the guest.
    return { start: f[2], end: f[3] === 0n ? OFFSET_MAX : f[2] + f[3] - 1n, type, pid: 0 };
  }

  setlk(_ctx: Context, nodeId: number, fh: number, owner: bigint, lock: FileLock, _sleep: boolean): number {
    const h = this.fileHandle(nodeId, fh);
    if (typeof h === 'number') return h;
    const inode = this.inodes.get(nodeId);
    if (inode === undefined) return -E.ENOENT;
    const unlock = lock.type === C.F_UNLCK;
    const fd = this.ownerFd(inode, owner, !unlock);
    if (fd < 0) return unlock ? 0 : fd; // nothing held: nothing to release
    this.toFlock(lock);
    // Never F_OFD_SETLKW: requests are served one at a time on this thread, so waiting would stop the daemon
    // (and the holder's unlock could never be served). A conflict is EAGAIN even for SETLKW (`sleep`): the server
    // parks that request and tries again until the lock is free.
    const r = native.fcntlLock(fd, C.F_OFD_SETLK, this.lockArg);
    return r === -E.EACCES ? -E.EAGAIN : r;
  }

  /**
   * BSD flock (SETLK/SETLKW with FUSE_LK_FLOCK): flock(2) on the handle's own fd. A guest open is one host open
   * file description, which is exactly what a flock lock belongs to: processes sharing the guest file share the
   * lock, and RELEASE (closing the fd) drops it. Never blocks: a conflicting SETLKW answers EOPNOTSUPP, as for
   * POSIX locks (requests are served one at a time on this thread).
   */
  flock(_ctx: Context, nodeId: number, fh: number, _owner: bigint, type: number, _sleep: boolean): number {
    const h = this.fileHandle(nodeId, fh);
    if (typeof h === 'number') return h;
    const op = type === C.F_UNLCK ? C.LOCK_UN : type === C.F_RDLCK ? C.LOCK_SH : type === C.F_WRLCK ? C.LOCK_EX : -1;
    if (op < 0) return -E.EINVAL;
    // LOCK_NB always, as for setlk: the server parks a SETLKW that meets a conflict.
    return native.flock(h.fd, op | C.LOCK_NB);
  }
}

const accessProbe = new DataView(new ArrayBuffer(256));
/** Largest listxattr list the kernel produces (XATTR_LIST_MAX). */
const XATTR_LIST_MAX = 65536;
/** statx scratch for checks that must not touch the reply's attr scratch. */
const probe = new DataView(new ArrayBuffer(256));

function timeArg(t: SetAttr['atime']): [number, number] {
  if (t === undefined) return [0, C.UTIME_OMIT];
  if (t === 'now') return [0, C.UTIME_NOW];
  return [t.sec, t.nsec];
}

/** The umask from /proc/self/status (no side effect, unlike process.umask()). */
function processUmask(): number {
  try {
    const m = /^Umask:\s*([0-7]+)/m.exec(readFileSync('/proc/self/status', 'utf8'));
    if (m) return parseInt(m[1], 8);
  } catch {
    // fall through
  }
  return process.umask();
}

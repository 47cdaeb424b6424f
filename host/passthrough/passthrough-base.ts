/**
 * PassthroughBase: what every PassthroughFs operation shares: the inode and handle tables, the O_PATH fd of
 * /proc/self/fd, the credentials and the options, and the steps more than one family of operations takes (stat into
 * the reply, look up a child, reopen an inode, finish a new node, clear setuid/setgid). The families of operations
 * are subclasses of it, stacked in passthrough-fs.ts, which also states the safety rules they all keep.
 */
import { byteString, native } from '../native-loader.js';
import type { CloserHandle } from '../native.js';
import { ConfigError, SystemError } from '../errors.js';
import { readFileSync } from 'node:fs';
import { log } from '../log.js';
import { AttrTarget, type Context, type DirTarget, type Entry } from '../fuse/filesystem.js';
import { FUSE_ATTR_SUBMOUNT } from '../fuse/protocol.js';
import { FsCredentials } from './credentials.js';
import type { IdMap } from './id-map.js';
import type { XattrMap } from './xattr-map.js';
import { HandleTable, type Handle } from './handle-table.js';
import { BlockingIo } from './blocking-io.js';
import { SHARED_NOWAIT, type SharedFiles } from './shared-files.js';
import { InodeStore, devNumber, type Inode, type InodeFileHandles } from './inode-store.js';

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

export const STAT_FLAGS = C.AT_EMPTY_PATH | C.AT_SYMLINK_NOFOLLOW;
/** statx of a name that may be an inode we hold (lookupChild): no automount is triggered by asking. */
const PROBE_FLAGS = C.AT_SYMLINK_NOFOLLOW | C.AT_NO_AUTOMOUNT;

/** statx scratch for checks that must not touch the reply's attr scratch. */
export const probe = new DataView(new ArrayBuffer(256));

/** 0, -EINVAL (empty, `/`, NUL) or -EPERM (`.`/`..` when not allowed). */
export function checkName(name: string, allowDots: boolean): number {
  if (name.length === 0 || name.includes('/') || name.includes('\0')) return -E.EINVAL;
  if (!allowDots && (name === '.' || name === '..')) return -E.EPERM;
  return 0;
}

export abstract class PassthroughBase {
  readonly inodes: InodeStore;
  readonly handles = new HandleTable();
  /** O_PATH fd of /proc/self/fd: `openat(procFd, String(fd), ...)` reopens an O_PATH fd. */
  protected readonly procFd: number;
  private readonly chownNew: boolean;
  private readonly openKeep: number;
  private readonly writeback: boolean;
  protected readonly xattr: boolean;
  private readonly announceSubmounts: boolean;
  protected readonly allowMknodDevices: boolean;
  protected readonly xattrMap: XattrMap | undefined;
  protected readonly posixAcl: boolean;
  readonly creds: FsCredentials;
  /** The process umask, read once: creations it narrows get a chmod to the exact mode. */
  protected readonly umask: number;
  /**
   * POSIX locks: node id -> guest lock owner -> an fd opened for that owner alone. The host lock is an OFD lock on
   * it, so each guest owner is its own lock holder (a lock per guest fh would merge processes sharing an open
   * file, and a classic POSIX lock on the daemon's fds would merge every owner into the daemon process). FLUSH by
   * the owner closes the fd, which drops its locks, as close(2) drops a process's locks.
   */
  protected readonly lockFds = new Map<number, Map<bigint, number>>();
  private closed = false;
  /** See lookupListed: the share of recently listed entries whose inode was held already. */
  private listedHeld = 1;
  /** Forgotten nodes' fds and the thread that closes those that may block (InodeStore's closeLater), or null:
   *  they close inline. */
  private readonly forgotten: ForgottenFds | null;
  /** The thread pool for blocking data I/O, or null (threadPoolSize 0). */
  protected readonly blocking: BlockingIo | null;

  constructor(options: PassthroughOptions) {
    const rootFd = native.openat(C.AT_FDCWD, byteString(options.root), C.O_PATH | C.O_DIRECTORY | C.O_CLOEXEC, 0);
    if (rootFd < 0) throw new SystemError('openat', -rootFd, native.strerror(-rootFd), options.root);
    const rootAttr = AttrTarget.standalone();
    const r = native.statx(rootFd, '', STAT_FLAGS, C.STATX_BASIC_STATS, rootAttr.buffer, rootAttr.offset);
    if (r < 0) {
      native.close(rootFd);
      throw new SystemError('statx', -r, native.strerror(-r), options.root);
    }
    const closer = native.closerCreate();
    if (typeof closer === 'number') {
      log.warn(`passthrough: no closer thread (${native.strerror(-closer)}); forgotten nodes' fds close inline`);
    }
    this.forgotten = typeof closer === 'number' ? null : new ForgottenFds(closer);
    try {
      this.inodes = new InodeStore(rootFd, rootAttr, {
        fileHandles: options.inodeFileHandles ?? 'never',
        closeLater: this.forgotten?.add,
      });
    } catch (e) {
      if (this.forgotten !== null) native.closerClose(this.forgotten.closer);
      throw e;
    }
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

  /**
   * Gives back the memory the inode and handle tables kept from their largest size (they keep it while busy, so a
   * guest listing a big directory again does not regrow them): for an owner that knows the filesystem is idle.
   */
  compactTables(): void {
    this.inodes.compact();
    this.handles.compact();
  }

  /** Returns once every forgotten node's fd is closed (for a caller that counts its open fds). */
  waitForCloses(): void {
    if (this.forgotten === null || this.closed) return;
    this.forgotten.flush();
    native.closerFlush(this.forgotten.closer);
  }

  /** [fds handed to the closer thread so far, of them closed]; [0, 0] without one. */
  closerCounts(): [number, number] {
    return this.forgotten === null ? [0, 0] : native.closerStats(this.forgotten.closer);
  }

  /** Closes every fd (nodes, handles, the root, /proc/self/fd). Idempotent; the filesystem is unusable after. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.blocking?.close(); // answers what is in flight and lets go of its handles first
    this.dropLocks();
    this.handles.clear();
    this.inodes.close();
    if (this.forgotten !== null) {
      this.forgotten.flush();
      native.closerClose(this.forgotten.closer); // closes what the inode table handed it
    }
    native.close(this.procFd);
  }

  // ---- steps shared by the families of operations --------------------------------------------------------------

  protected statInto(fd: number, attr: AttrTarget): number {
    if (fd < 0) return fd; // a handle that no longer opens (Inode.fd)
    const r = native.statx(fd, '', STAT_FLAGS, C.STATX_BASIC_STATS, attr.buffer, attr.offset);
    if (r < 0) return r;
    this.creds.attrToGuest(attr); // every attr the guest sees passes here
    return 0;
  }

  /** Registers one lookup of the inode behind `fd` (an O_PATH fd we own), writing its attributes into `attr`. */
  protected acquireFd(fd: number, attr: AttrTarget): Entry | number {
    const r = this.statInto(fd, attr);
    if (r < 0) {
      native.close(fd);
      return r;
    }
    return this.acquireStatted(fd, attr);
  }

  /** acquireFd once `attr` holds the fd's statx, as the guest sees it. */
  private acquireStatted(fd: number, attr: AttrTarget): Entry | number {
    const inode = this.inodes.acquire(fd, attr);
    if (typeof inode === 'number') return inode; // mandatory file handles and none for this inode
    return { nodeId: inode.nodeId, generation: inode.generation };
  }

  /**
   * FUSE_ATTR_SUBMOUNT when `announceSubmounts` and the entry whose statx is in `attr` is a directory on another
   * mount than `parent` (an inode, or its node id): another st_dev (a mount, or a btrfs subvolume), or a mount
   * root (a bind mount of the same filesystem). Never for the root itself or a `..` that climbs out of a submount.
   */
  protected submountFlags(parent: Inode | number, attr: AttrTarget): number {
    if (!this.announceSubmounts || (attr.mode & C.S_IFMT) !== C.S_IFDIR) return 0;
    if (typeof parent === 'number') { // a node id: looked up only now (a READDIRPLUS entry of a directory)
      const inode = this.inodes.get(parent);
      if (inode === undefined) return 0;
      parent = inode;
    }
    const mountRoot = (attr.view.getUint32(attr.offset + 8, true) & C.STATX_ATTR_MOUNT_ROOT) !== 0;
    return devNumber(attr) !== parent.dev || mountRoot ? FUSE_ATTR_SUBMOUNT : 0;
  }

  /**
   * Looks up `name` (one component, not `.`/`..`) under the directory fd `dirFd`. With an fd per inode, a statx
   * by name first: an inode we already hold (its O_PATH fd pins it, so (st_dev, st_ino) cannot have been reused)
   * costs that one syscall instead of openat + statx + close. A new one is opened and judged by its fd's own
   * statx, whatever the name points at by then.
   */
  protected lookupChild(dirFd: number, name: string, attr: AttrTarget): Entry | number {
    if (this.inodes.fileHandles === 'never') {
      const r = native.statx(dirFd, name, PROBE_FLAGS, C.STATX_BASIC_STATS, attr.buffer, attr.offset);
      if (r < 0) return r;
      const known = this.heldEntry(attr);
      if (known !== null) return known;
    }
    const fd = native.openat(dirFd, name, C.O_PATH | C.O_NOFOLLOW | C.O_CLOEXEC, 0);
    if (fd < 0) return fd;
    return this.acquireFd(fd, attr);
  }

  /** The inode whose statx (by name) is in `attr`, if we hold it: one lookup more, and its attributes as the
   *  guest sees them. */
  private heldEntry(attr: AttrTarget): Entry | null {
    const known = this.inodes.getByKey(this.inodes.keyOf(attr));
    if (known === undefined) return null;
    this.creds.attrToGuest(attr);
    this.inodes.ref(known);
    return { nodeId: known.nodeId, generation: known.generation };
  }

  /**
   * lookupChild for the entry a READDIRPLUS lists now (`target`'s current record, its attributes into
   * `target.attr`), with the name passed as bytes (a listing makes no string per entry) and openat + statx in one
   * native call. A listing meets either inodes the guest holds already (`ls -l` again) or, mostly, new ones (a
   * first listing). Asking by name first costs one statx for a held inode and one syscall more than opening
   * first for a new one, so it pays while more than a third are held: `listedHeld` is that share over the last
   * entries (a moving average; opening first still tells whether the inode was held).
   */
  protected lookupListed(dirFd: number, target: DirTarget): Entry | number {
    const attr = target.attr;
    const mem = target.nameMemory();
    const at = target.nameOffset();
    const len = target.nameLength();
    const before = this.inodes.size;
    let r: Entry | number | null = null;
    if (this.listedHeld > 1 / 3 && this.inodes.fileHandles === 'never') {
      const s = native.statxName(dirFd, mem, at, len, PROBE_FLAGS, C.STATX_BASIC_STATS, attr.buffer, attr.offset);
      if (s < 0) return s;
      r = this.heldEntry(attr);
    }
    if (r === null) {
      const fd = native.openStatxName(dirFd, mem, at, len, C.O_PATH | C.O_NOFOLLOW, STAT_FLAGS,
        C.STATX_BASIC_STATS, attr.buffer, attr.offset);
      if (fd < 0) return fd;
      this.creds.attrToGuest(attr); // as statInto does for every attr the guest sees
      r = this.acquireStatted(fd, attr);
    }
    if (typeof r !== 'number') this.listedHeld += ((this.inodes.size === before ? 1 : 0) - this.listedHeld) / 8;
    return r;
  }

  /**
   * Where MKNOD/MKDIR/CREATE make `name`: the caller's host credentials (EPERM for a forbidden guest id), the name
   * checked, the parent directory. In that order, so the errno precedence is the same for every creating op.
   */
  protected newEntryIn(guestCtx: Context, parent: number, name: string): { ctx: Context; dir: Inode } | number {
    const ctx = this.creds.toHost(guestCtx);
    if (typeof ctx === 'number') return ctx;
    const bad = checkName(name, false);
    if (bad < 0) return bad;
    const dir = this.dir(parent);
    if (typeof dir === 'number') return dir;
    return { ctx, dir };
  }

  protected dir(nodeId: number): Inode | number {
    const inode = this.inodes.get(nodeId);
    if (inode === undefined) return -E.ENOENT;
    if (inode.type !== C.S_IFDIR) return -E.ENOTDIR;
    const fd = inode.fd; // with file handles: opened now, stays open for this operation
    return fd < 0 ? fd : inode;
  }

  protected reopen(inode: Inode, flags: number): number {
    const fd = inode.fd;
    if (fd < 0) return fd;
    return native.openat(this.procFd, String(fd), flags | C.O_CLOEXEC, 0);
  }

  /** After creating `name` under `parent`: owner = caller (chownNew), permission bits the umask removed put back. */
  protected fixNew(ctx: Context, parent: Inode, name: string, mode: number, attr: AttrTarget): void {
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
  protected creating(ctx: Context, dir: Inode, reqUmask: number, fn: () => number): number {
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
  protected createMode(ctx: Context, parent: Inode, mode: number): number {
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
  protected killSuidgid(fd: number, writerGid: number): number {
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

  /**
   * Queue threads (host/virtio/queue-thread.ts) serve READ and WRITE of the files opened from now on straight
   * from their fds; with a thread pool they try RWF_NOWAIT and hand what would block back to this thread.
   */
  shareFiles(shared: SharedFiles): void {
    shared.setFlag(SHARED_NOWAIT, this.blocking !== null);
    this.handles.shareWith(shared);
  }

  protected fileHandle(nodeId: number, fh: number): Handle | number {
    return this.handles.lookup(fh, nodeId, false) ?? -E.EBADF;
  }

  /** Open flags from the guest, made safe: access mode, O_APPEND, O_TRUNC, O_(D)SYNC (+O_DIRECT, O_NOATIME if allowed);
   *  O_CREAT/O_EXCL/O_NOFOLLOW/O_PATH/O_NONBLOCK and the rest are dropped. */
  protected openFlags(flags: number): number {
    let f = flags & this.openKeep;
    if (this.writeback) {
      f &= ~C.O_APPEND;
      if ((f & C.O_ACCMODE) === C.O_WRONLY) f = (f & ~C.O_ACCMODE) | C.O_RDWR;
    }
    return f | C.O_CLOEXEC;
  }

  protected inProcFd(inode: Inode, call: (name: string) => number): number {
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

  /** Closes the lock fds of node `nodeId` (all nodes without it): their OFD locks go with them. */
  protected dropLocks(nodeId?: number): void {
    for (const [node, owners] of this.lockFds) {
      if (nodeId !== undefined && node !== nodeId) continue;
      for (const fd of owners.values()) native.close(fd);
      this.lockFds.delete(node);
    }
  }
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

/** A batch of at least this many forgotten fds goes to the closer whole, for one wake-up (a BATCH_FORGET). */
const CLOSER_BATCH = 8;

/**
 * InodeStore's closeLater over the native closer. The fds a callback forgets are dealt with in a microtask, after
 * its replies. A batch of CLOSER_BATCH or more (the forgets after a listing) goes to the closer thread whole: one
 * wake-up, and the closes run on another core. Fewer are looked at one by one (a statx): an unlinked inode with
 * blocks goes to the closer, since its last close evicts it and frees them, which may wait for the disk; the rest
 * close here, because waking a sleeping thread costs more than such a close. (A statx per fd of a big batch cost
 * more than the batch saved: standalone READDIRPLUS of 10,000 entries, daemon CPU up 15-30% in 2 pairs.)
 */
class ForgottenFds {
  private pending: number[] = [];
  private readonly attr = AttrTarget.standalone();

  constructor(readonly closer: CloserHandle) {}

  /** InodeStore's closeLater. */
  readonly add = (fd: number): void => {
    if (this.pending.length === 0) queueMicrotask(this.flush);
    this.pending.push(fd);
  };

  /** Closes or hands over what is pending (the microtask; also before waiting for the closer). */
  readonly flush = (): void => {
    const fds = this.pending;
    if (fds.length === 0) return;
    this.pending = [];
    let handed = false;
    const batch = fds.length >= CLOSER_BATCH;
    for (const fd of fds) {
      if (batch || this.mayEvictSlowly(fd)) {
        native.closerAdd(this.closer, fd);
        handed = true;
      } else {
        native.close(fd);
      }
    }
    if (handed) native.closerWake(this.closer);
  };

  /** Whether the inode behind `fd` is unlinked and has blocks: its last close evicts it and frees them. */
  private mayEvictSlowly(fd: number): boolean {
    const a = this.attr;
    return native.statx(fd, '', STAT_FLAGS, C.STATX_BASIC_STATS, a.buffer, a.offset) === 0 && a.nlink === 0 &&
      a.blocks !== 0;
  }
}

/**
 * The lock operations of PassthroughFs (--posix-lock, --flock): GETLK, SETLK/SETLKW as OFD locks on one fd per guest
 * lock owner (PassthroughBase.lockFds says why), and BSD flock on the handle's own fd.
 */
import { native } from '../native-loader.js';
import type { Context, FileLock } from '../fuse/filesystem.js';
import { OFFSET_MAX } from '../fuse/protocol.js';
import type { Inode } from './inode-store.js';
import { XattrOps } from './xattr-ops.js';

const C = native.constants;
const E = C.errno;

export abstract class LockOps extends XattrOps {
  private readonly lockArg = new BigInt64Array(5);

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
   * lock, and RELEASE (closing the fd) drops it. Never blocks (requests are served one at a time on this thread):
   * a conflicting SETLKW answers EAGAIN, and the server parks it and tries again, as for POSIX locks.
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

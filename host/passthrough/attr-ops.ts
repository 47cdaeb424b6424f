/**
 * The attribute operations of PassthroughFs: GETATTR, SETATTR, STATFS, ACCESS, READLINK.
 */
import { native } from '../native-loader.js';
import type { AttrTarget, Context, SetAttr, StatFs } from '../fuse/filesystem.js';
import { FUSE_ROOT_ID } from '../fuse/protocol.js';
import { FORBIDDEN } from './id-map.js';
import type { Handle } from './handle-table.js';
import type { Inode } from './inode-store.js';
import { EntryOps } from './entry-ops.js';
import { STAT_FLAGS } from './passthrough-base.js';

const C = native.constants;
const E = C.errno;
const R_OK = 4;
const W_OK = 2;
const X_OK = 1;

export abstract class AttrOps extends EntryOps {
  private readonly statfsOut = new Float64Array(8);

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
    // In the order chmod, chown, truncate, utimes; the first failure ends the request.
    let r = this.setMode(inode, h, set);
    if (r < 0) return r;
    r = this.setOwner(inode, set);
    if (r < 0) return r;
    r = this.setSize(ctx, inode, h, set);
    if (r < 0) return r;
    r = this.setTimes(inode, h, set);
    if (r < 0) return r;
    return this.statInto(inode.fd, attr);
  }

  /** SETATTR's mode (FATTR_MODE): through the handle when the guest gave one. 0 or -errno. */
  private setMode(inode: Inode, h: Handle | undefined, set: SetAttr): number {
    if (set.mode === undefined) return 0;
    if (inode.type === C.S_IFLNK) return -E.EOPNOTSUPP;
    return h !== undefined ? native.fchmod(h.fd, set.mode & 0o7777)
      : native.fchmodat(this.procFd, String(inode.fd), set.mode & 0o7777);
  }

  /** SETATTR's owner and group (FATTR_UID, FATTR_GID), translated to host ids. 0 or -errno. */
  private setOwner(inode: Inode, set: SetAttr): number {
    if (set.uid === undefined && set.gid === undefined) return 0;
    const uid = set.uid === undefined ? -1 : this.creds.uidToHost(set.uid);
    const gid = set.gid === undefined ? -1 : this.creds.gidToHost(set.gid);
    // FORBIDDEN is -1, which is also fchownat's "unchanged": test only the ids the guest actually sent.
    if ((set.uid !== undefined && uid === FORBIDDEN) || (set.gid !== undefined && gid === FORBIDDEN)) return -E.EPERM;
    return native.fchownat(inode.fd, '', uid, gid, C.AT_EMPTY_PATH | C.AT_SYMLINK_NOFOLLOW);
  }

  /** SETATTR's size (FATTR_SIZE) of a regular file, after killpriv when asked; through the handle or a reopen. */
  private setSize(ctx: Context, inode: Inode, h: Handle | undefined, set: SetAttr): number {
    if (set.size === undefined) return 0;
    if (inode.type === C.S_IFDIR) return -E.EISDIR;
    if (inode.type !== C.S_IFREG) return -E.EINVAL;
    if (set.killSuidgid) {
      const r = this.killSuidgid(inode.fd, this.creds.gidToHost(ctx.gid));
      if (r < 0) return r;
    }
    if (h !== undefined) return native.ftruncate(h.fd, set.size);
    const fd = this.reopen(inode, C.O_WRONLY);
    if (fd < 0) return fd;
    const r = native.ftruncate(fd, set.size);
    native.close(fd);
    return r;
  }

  /** SETATTR's atime and mtime (FATTR_ATIME(_NOW), FATTR_MTIME(_NOW)). 0 or -errno. */
  private setTimes(inode: Inode, h: Handle | undefined, set: SetAttr): number {
    if (set.atime === undefined && set.mtime === undefined) return 0;
    const [as, an] = timeArg(set.atime);
    const [ms, mn] = timeArg(set.mtime);
    // Through /proc/self/fd/N with flags 0: the magic link is the inode itself (a symlink included).
    const fd = h !== undefined ? h.fd : inode.fd;
    return native.utimensat(this.procFd, String(fd), as, an, ms, mn, 0);
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

  readlink(_ctx: Context, nodeId: number): string | number {
    const inode = this.inodes.get(nodeId);
    if (inode === undefined) return -E.ENOENT;
    if (inode.type !== C.S_IFLNK) return -E.EINVAL;
    return native.readlinkat(inode.fd, '');
  }
}

const accessProbe = new DataView(new ArrayBuffer(256));

function timeArg(t: SetAttr['atime']): [number, number] {
  if (t === undefined) return [0, C.UTIME_OMIT];
  if (t === 'now') return [0, C.UTIME_NOW];
  return [t.sec, t.nsec];
}

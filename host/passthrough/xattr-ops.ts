/**
 * The extended attribute operations of PassthroughFs (--xattr): GETXATTR, LISTXATTR, SETXATTR, REMOVEXATTR, with
 * names mapped by --xattrmap (xattr-map.ts).
 *
 * They are path calls on the inode's /proc/self/fd entry (the inode itself, never a guest symlink's target). The
 * entry is named relative to procFd, opened at start-up: after a sandbox pivot there is no /proc in the new root, and
 * an absolute "/proc/self/fd/N" would resolve to whatever the guest put there.
 */
import { native } from '../native-loader.js';
import { nameOf, putName } from '../fuse/names.js';
import type { ByteTarget, Context } from '../fuse/filesystem.js';
import { FUSE_SETXATTR_ACL_KILL_SGID } from '../fuse/protocol.js';
import { DirOps } from './dir-ops.js';
import { STAT_FLAGS, probe } from './passthrough-base.js';

const C = native.constants;
const E = C.errno;
/** Largest listxattr list the kernel produces (XATTR_LIST_MAX). */
const XATTR_LIST_MAX = 65536;

export abstract class XattrOps extends DirOps {
  /** LISTXATTR of the host names, before mapping (XATTR_LIST_MAX). */
  private xattrList: Uint8Array | null = null;

  /** Runs a path-based xattr syscall on the inode with the process cwd briefly at procFd; restores the cwd. */
  private viaProcFd(nodeId: number, call: (name: string) => number): number {
    if (!this.xattr) return -E.ENOSYS;
    const inode = this.inodes.get(nodeId);
    if (inode === undefined) return -E.ENOENT;
    return this.inProcFd(inode, call);
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
}

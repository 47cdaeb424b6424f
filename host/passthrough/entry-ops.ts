/**
 * The entry operations of PassthroughFs: names in directories. LOOKUP and FORGET (the lookup count), the ones that
 * make a node (MKNOD, MKDIR, SYMLINK, LINK, CREATE, TMPFILE) and the ones that remove or move a name (UNLINK, RMDIR,
 * RENAME).
 */
import { native } from '../native-loader.js';
import type { AttrTarget, Context, CreateResult, Entry } from '../fuse/filesystem.js';
import { FUSE_OPEN_KILL_SUIDGID, RENAME_EXCHANGE, RENAME_NOREPLACE, RENAME_WHITEOUT } from '../fuse/protocol.js';
import type { Inode } from './inode-store.js';
import { PassthroughBase, checkName } from './passthrough-base.js';

const C = native.constants;
const E = C.errno;

export abstract class EntryOps extends PassthroughBase {
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
}

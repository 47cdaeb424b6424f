/**
 * The data operations of PassthroughFs: a regular file's open handle and I/O through it. OPEN (and the DAX
 * frontend's openForMapping), READ, WRITE, FLUSH, RELEASE, FSYNC, FALLOCATE, LSEEK, COPY_FILE_RANGE, SYNCFS.
 */
import { native } from '../native-loader.js';
import type { Context, DataSource, DataTarget, OpenResult } from '../fuse/filesystem.js';
import { FUSE_OPEN_KILL_SUIDGID, FUSE_WRITE_KILL_SUIDGID } from '../fuse/protocol.js';
import { AttrOps } from './attr-ops.js';

const C = native.constants;
const E = C.errno;

export abstract class DataOps extends AttrOps {
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
}

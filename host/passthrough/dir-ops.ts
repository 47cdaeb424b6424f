/**
 * The directory operations of PassthroughFs: OPENDIR, READDIR, READDIRPLUS (a lookup per entry), RELEASEDIR,
 * FSYNCDIR.
 */
import { native } from '../native-loader.js';
import type { Context, DirTarget, OpenResult } from '../fuse/filesystem.js';
import { FUSE_ROOT_ID } from '../fuse/protocol.js';
import { log } from '../log.js';
import { DataOps } from './data-ops.js';
import type { Handle } from './handle-table.js';

const C = native.constants;
const E = C.errno;

export abstract class DirOps extends DataOps {
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
    const r = seekDirectory(h, cookie);
    if (r < 0) return r;
    let full = false;
    while (!full) {
      const n = target.fill(h.fd);
      if (n < 0) return batchFailed(h, target, n);
      if (n === 0) break; // end of directory; the position stays
      const batch = this.emitBatch(nodeId, h.fd, target, plus);
      if (batch === BATCH_CORRUPT) {
        log.warn('passthrough: corrupt getdents64 buffer');
        return batchFailed(h, target, -E.EIO);
      }
      full = batch === REPLY_FULL;
    }
    // A fully used batch leaves the fd exactly after the last record we sent; a partly used one does not.
    h.dirPos = full ? null : (target.lastCookie() ?? h.dirPos);
    return 0;
  }

  /** Emits the records of the getdents64 batch in `target` until it ends or the reply is full. */
  private emitBatch(nodeId: number, dirFd: number, target: DirTarget, plus: boolean): number {
    let step: number;
    while ((step = target.next()) === 1) {
      if (!(plus ? this.emitPlusEntry(nodeId, dirFd, target) : target.emit())) return REPLY_FULL;
    }
    return step === -1 ? BATCH_CORRUPT : BATCH_DONE;
  }

  /**
   * One READDIRPLUS entry: with its node (one lookup) and attributes, or plain (node 0) for `.`, `..`, a name gone
   * since getdents and the root met again. False when it does not fit (no lookup is left behind then).
   */
  private emitPlusEntry(nodeId: number, dirFd: number, target: DirTarget): boolean {
    if (target.isDotOrDotDot()) return target.emitPlus(0, 0);
    if (!target.fitsPlus()) return false;
    const entry = this.lookupListed(dirFd, target);
    // Gone since getdents: a plain entry; the guest looks it up itself.
    if (typeof entry === 'number') return target.emitPlus(0, 0);
    if (entry.nodeId === FUSE_ROOT_ID) {
      // The kernel refuses node 1 inside a directory listing (a bind mount of the root into itself).
      this.inodes.forget(entry.nodeId, 1);
      return target.emitPlus(0, 0);
    }
    const flags = this.submountFlags(nodeId, target.attr);
    if (target.emitPlus(entry.nodeId, entry.generation, flags)) return true;
    this.inodes.forget(entry.nodeId, 1);
    return false;
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
}

/** What DirOps.emitBatch stopped at. */
const BATCH_DONE = 0;
const REPLY_FULL = 1;
const BATCH_CORRUPT = -1;

/** Puts the directory fd at `cookie` unless it is there already (the next batch of a sequential listing). */
function seekDirectory(h: Handle, cookie: bigint): number {
  if (h.dirPos === cookie) return 0;
  const pos = native.lseek(h.fd, cookie, C.SEEK_SET);
  if (pos < 0n) return Number(pos);
  h.dirPos = cookie;
  return 0;
}

/** A batch that could not be read: the fd's position is unknown now; what was appended is still valid. */
function batchFailed(h: Handle, target: DirTarget, errno: number): number {
  h.dirPos = null;
  return target.used > 0 ? 0 : errno;
}

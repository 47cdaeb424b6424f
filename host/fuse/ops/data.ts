/**
 * Data ops: an open file's contents. OPEN, READ, WRITE, FLUSH, RELEASE, FSYNC, FALLOCATE, LSEEK, COPY_FILE_RANGE,
 * and IOCTL (answered ENOTTY). READ and WRITE data move between the file and guest memory without passing through
 * these handlers (OpContext.readTarget / writeSource); a size change is passed on to the DAX window.
 */
import { native } from '../../native-loader.js';
import * as P from '../protocol.js';
import {
  fsyncDecoder, need, noArgs, readDecoder, u32, u64Big, u64Number, type ArgBytes, type FsyncArgs, type ReadArgs,
} from './args.js';
import { daxSizeChanged, openOut, replyView, statusReply, undoOpen } from './replies.js';
import { op, type OpRow, type OpContext } from './op.js';

const C = native.constants;
const E = C.errno;

interface FallocateArgs { fh: number; offset: number; length: number; mode: number }
interface LseekArgs { fh: number; offset: bigint; whence: number }
interface CopyArgs { fhIn: number; offIn: number; nodeOut: number; fhOut: number; offOut: number; len: number; flags: number }

export interface WriteArgs { fh: number; offset: number; size: number; writeFlags: number }

/** fuse_write_in (WRITE; also a queue thread's, host/virtio/queue-thread-worker.ts). */
export function writeDecoder(a: ArgBytes): WriteArgs | number {
  const bad = need(a, P.WRITE_IN.SIZE);
  if (bad < 0) return bad;
  const size = u32(a, P.WRITE_IN.size);
  // The payload must really be there (fuse_in_header.len covers it).
  if (size > a.len - P.WRITE_IN.SIZE) return -E.EINVAL;
  return { fh: u64Number(a, P.WRITE_IN.fh), offset: u64Number(a, P.WRITE_IN.offset), size,
    writeFlags: u32(a, P.WRITE_IN.writeFlags) };
}

/** Largest COPY_FILE_RANGE we do in one request: the reply's size field is a u32 (kept page-aligned). */
const COPY_MAX = 0xffff_f000;

/**
 * fuse_write_out { size, padding } at `at`: the reply body of WRITE and COPY_FILE_RANGE (also written by a queue
 * thread's WRITE, host/virtio/queue-thread-worker.ts). Returns its length.
 */
export function encodeWriteOut(v: DataView, at: number, written: number): number {
  v.setUint32(at + P.WRITE_OUT.size, written, true);
  v.setUint32(at + P.WRITE_OUT.padding, 0, true);
  return P.WRITE_OUT.SIZE;
}

function writeOutReply(s: OpContext, written: number): number {
  return encodeWriteOut(replyView(s), s.core.replyPtr, written);
}

export const dataOps: readonly OpRow[] = [
  [P.FUSE_OPEN, op<{ flags: number; openFlags: number }>({
    name: 'OPEN', method: 'open', undo: (s, _d, req) => undoOpen(s, req, 0, false),
    modifies: (d) => (d.flags & C.O_ACCMODE) !== C.O_RDONLY || (d.flags & C.O_TRUNC) !== 0,
    decode: (a) => (a.len < P.OPEN_IN.SIZE ? -E.EINVAL
      : { flags: u32(a, P.OPEN_IN.flags), openFlags: u32(a, P.OPEN_IN.openFlags) }),
    handle: (s, d, req) => {
      const r = s.fs.open!(req.ctx, req.nodeId, d.flags, d.openFlags);
      if (typeof r === 'number') return r;
      const n = openOut(s, 0, r.fh, (r.openFlags ?? 0) | s.fileOpenFlags);
      return (d.flags & C.O_TRUNC) !== 0 ? daxSizeChanged(s, req.nodeId, n) : n; // FUSE_ATOMIC_O_TRUNC
    },
  })],

  [P.FUSE_READ, op<ReadArgs>({
    name: 'READ', method: 'read', decode: readDecoder,
    handle: (s, d, req) => {
      const r = s.fs.read!(req.ctx, req.nodeId, d.fh, d.offset, s.readTarget(d.size));
      if (r < 0) return r;
      s.payloadLen = Math.min(r, d.size);
      return 0;
    },
  })],

  [P.FUSE_WRITE, op<WriteArgs>({
    name: 'WRITE', method: 'write', modifies: true, decode: writeDecoder,
    handle: (s, d, req) => {
      // The guest agreed to max_write at INIT; a larger WRITE is refused rather than carried out.
      if (d.size > s.maxWrite) return -E.EINVAL;
      const r = s.fs.write!(req.ctx, req.nodeId, d.fh, d.offset, s.writeSource(d.size), d.writeFlags);
      return r < 0 ? r : daxSizeChanged(s, req.nodeId, writeOutReply(s, r));
    },
  })],

  [P.FUSE_FLUSH, op<{ fh: number; lockOwner: bigint }>({
    name: 'FLUSH', method: 'flush',
    decode: (a) => (a.len < P.FLUSH_IN.SIZE ? -E.EINVAL : { fh: u64Number(a, P.FLUSH_IN.fh), lockOwner: u64Big(a, P.FLUSH_IN.lockOwner) }),
    handle: (s, d, req) => statusReply(s.fs.flush!(req.ctx, req.nodeId, d.fh, d.lockOwner)),
  })],

  [P.FUSE_RELEASE, op<{ fh: number; flags: number; releaseFlags: number }>({
    name: 'RELEASE', method: 'release',
    decode: (a) => (a.len < P.RELEASE_IN.SIZE ? -E.EINVAL
      : { fh: u64Number(a, P.RELEASE_IN.fh), flags: u32(a, P.RELEASE_IN.flags), releaseFlags: u32(a, P.RELEASE_IN.releaseFlags) }),
    handle: (s, d, req) => statusReply(s.fs.release!(req.ctx, req.nodeId, d.fh, d.flags, d.releaseFlags)),
  })],

  [P.FUSE_FSYNC, op<FsyncArgs>({
    name: 'FSYNC', method: 'fsync', decode: fsyncDecoder,
    handle: (s, d, req) => statusReply(s.fs.fsync!(req.ctx, req.nodeId, d.fh, d.datasync)),
  })],

  [P.FUSE_FALLOCATE, op<FallocateArgs>({
    name: 'FALLOCATE', method: 'fallocate', modifies: true,
    decode: (a) => {
      const bad = need(a, P.FALLOCATE_IN.SIZE);
      if (bad < 0) return bad;
      return { fh: u64Number(a, P.FALLOCATE_IN.fh), offset: u64Number(a, P.FALLOCATE_IN.offset),
        length: u64Number(a, P.FALLOCATE_IN.length), mode: u32(a, P.FALLOCATE_IN.mode) };
    },
    handle: (s, d, req) =>
      daxSizeChanged(s, req.nodeId, statusReply(s.fs.fallocate!(req.ctx, req.nodeId, d.fh, d.offset, d.length, d.mode))),
  })],

  [P.FUSE_LSEEK, op<LseekArgs>({
    name: 'LSEEK', method: 'lseek',
    decode: (a) => {
      const bad = need(a, P.LSEEK_IN.SIZE);
      if (bad < 0) return bad;
      return { fh: u64Number(a, P.LSEEK_IN.fh), offset: u64Big(a, P.LSEEK_IN.offset), whence: u32(a, P.LSEEK_IN.whence) };
    },
    handle: (s, d, req) => {
      const r = s.fs.lseek!(req.ctx, req.nodeId, d.fh, d.offset, d.whence);
      if (typeof r === 'number') return r < 0 ? r : -E.EIO;
      replyView(s).setBigUint64(s.core.replyPtr + P.LSEEK_OUT.offset, r, true);
      return P.LSEEK_OUT.SIZE;
    },
  })],

  [P.FUSE_COPY_FILE_RANGE, op<CopyArgs>({
    name: 'COPY_FILE_RANGE', method: 'copyFileRange', modifies: true,
    decode: (a) => {
      const bad = need(a, P.COPY_FILE_RANGE_IN.SIZE);
      if (bad < 0) return bad;
      const X = P.COPY_FILE_RANGE_IN;
      const flags = u64Big(a, X.flags);
      if (flags > 0xffff_ffffn) return -E.EINVAL;
      return { fhIn: u64Number(a, X.fhIn), offIn: u64Number(a, X.offIn), nodeOut: u64Number(a, X.nodeidOut), fhOut: u64Number(a, X.fhOut),
        offOut: u64Number(a, X.offOut), len: Math.min(u64Number(a, X.len), COPY_MAX), flags: Number(flags) };
    },
    handle: (s, d, req) => {
      const r = s.fs.copyFileRange!(req.ctx, req.nodeId, d.fhIn, d.offIn, d.nodeOut, d.fhOut, d.offOut, d.len, d.flags);
      return r < 0 ? r : daxSizeChanged(s, d.nodeOut, writeOutReply(s, r));
    },
  })],

  [P.FUSE_IOCTL, op<null>({
    // No ioctl is passed through to the host (they carry pointers and host-specific semantics).
    name: 'IOCTL', decode: noArgs, handle: () => -E.ENOTTY,
  })],
];

/**
 * Directory ops: an open directory's listing. OPENDIR, READDIR, READDIRPLUS (each entry but "." and ".." also a
 * lookup, taken back by `undo` when the reply is not delivered), RELEASEDIR, FSYNCDIR. The entries are packed by
 * the core through OpContext.dirTarget.
 */
import { native } from '../../native-loader.js';
import * as P from '../protocol.js';
import { fsyncDecoder, need, u32, u64Big, u64Number, type FsyncArgs } from './args.js';
import { openOut, replyView, statusReply, undoEntry, undoOpen } from './replies.js';
import { op, type Args, type OpRow, type OpContext } from './op.js';

const E = native.constants.errno;

interface FhArgs { fh: number }
interface DirReadArgs { fh: number; cookie: bigint; size: number }

/** fuse_read_in of READDIR and READDIRPLUS: the offset is the cookie of the last entry read, all 64 bits. */
function dirReadDecoder(a: Args): DirReadArgs | number {
  const bad = need(a, P.READ_IN.SIZE);
  if (bad < 0) return bad;
  return { fh: u64Number(a, P.READ_IN.fh), cookie: u64Big(a, P.READ_IN.offset), size: u32(a, P.READ_IN.size) };
}

function fhDecoder(a: Args): FhArgs | number {
  const bad = need(a, 8);
  return bad < 0 ? bad : { fh: u64Number(a, 0) };
}

function readdirHandler(plus: boolean) {
  return (s: OpContext, d: DirReadArgs, req: Args): number => {
    const target = s.dirTarget(d.size, plus);
    const r = plus ? s.fs.readdirplus!(req.ctx, req.nodeId, d.fh, d.cookie, target)
      : s.fs.readdir!(req.ctx, req.nodeId, d.fh, d.cookie, target);
    return r < 0 ? r : target.used;
  };
}

/** READDIRPLUS not delivered: every fuse_direntplus in the first `bodyLen` bytes gave a lookup. */
function undoDirentPlus(s: OpContext, bodyLen: number): void {
  const v = replyView(s);
  const base = s.core.replyPtr;
  for (let o = 0; o + P.DIRENTPLUS.name <= bodyLen;) {
    undoEntry(s, o);
    const namelen = v.getUint32(base + o + P.DIRENTPLUS.dirent + P.DIRENT.namelen, true);
    o += (P.DIRENTPLUS.name + namelen + 7) & ~7;
  }
}

export const directoryOps: readonly OpRow[] = [
  [P.FUSE_OPENDIR, op<number>({
    name: 'OPENDIR', method: 'opendir', undo: (s, _d, req) => undoOpen(s, req, 0, true),
    decode: (a) => (a.len < P.OPEN_IN.SIZE ? -E.EINVAL : u32(a, P.OPEN_IN.flags)),
    handle: (s, flags, req) => {
      const r = s.fs.opendir!(req.ctx, req.nodeId, flags);
      if (typeof r === 'number') return r;
      return openOut(s, 0, r.fh, (r.openFlags ?? 0) | s.dirOpenFlags);
    },
  })],

  [P.FUSE_READDIR, op<DirReadArgs>({
    name: 'READDIR', method: 'readdir', decode: dirReadDecoder, handle: readdirHandler(false),
  })],
  [P.FUSE_READDIRPLUS, op<DirReadArgs>({
    name: 'READDIRPLUS', method: 'readdirplus', decode: dirReadDecoder, handle: readdirHandler(true),
    undo: (s, _d, _req, bodyLen) => undoDirentPlus(s, bodyLen),
  })],

  [P.FUSE_RELEASEDIR, op<FhArgs>({
    name: 'RELEASEDIR', method: 'releasedir', decode: fhDecoder,
    handle: (s, d, req) => statusReply(s.fs.releasedir!(req.ctx, req.nodeId, d.fh)),
  })],

  [P.FUSE_FSYNCDIR, op<FsyncArgs>({
    name: 'FSYNCDIR', method: 'fsyncdir', decode: fsyncDecoder,
    handle: (s, d, req) => statusReply(s.fs.fsyncdir!(req.ctx, req.nodeId, d.fh, d.datasync)),
  })],
];

/**
 * Attribute ops: a node's own properties. GETATTR, SETATTR, ACCESS, READLINK (a symlink's target), and STATFS (the
 * filesystem's counts, asked through a node).
 */
import { native } from '../../native-loader.js';
import type { SetAttr, StatFs } from '../filesystem.js';
import * as P from '../protocol.js';
import { REPLY_MAX } from '../../core.js';
import { putName } from '../names.js';
import { need, noArgs, u32, u64Number } from './args.js';
import { daxAttrFlag, daxSizeChanged, replyView, statusReply } from './replies.js';
import { op, type OpRow, type OpContext } from './op.js';

const E = native.constants.errno;

/** fuse_attr_out from the statx scratch. */
function attrReply(s: OpContext, r: number): number {
  if (r < 0) return r;
  const n = s.core.encodeAttrOut(s.core.replyPtr, s.attrTimeout, s.core.statxPtr);
  const dax = daxAttrFlag(s); // so a guest sees a file's DAX state change (fuse_dax_dontcache)
  if (dax !== 0) replyView(s).setUint32(s.core.replyPtr + P.ATTR_OUT_ATTR_FLAGS, dax, true);
  return n;
}

function writeStatfs(v: DataView, o: number, st: StatFs): void {
  const S = P.STATFS_OUT;
  new Uint8Array(v.buffer, o, S.SIZE).fill(0);
  v.setBigUint64(o + S.blocks, BigInt(st.blocks), true);
  v.setBigUint64(o + S.bfree, BigInt(st.bfree), true);
  v.setBigUint64(o + S.bavail, BigInt(st.bavail), true);
  v.setBigUint64(o + S.files, BigInt(st.files), true);
  v.setBigUint64(o + S.ffree, BigInt(st.ffree), true);
  v.setUint32(o + S.bsize, st.bsize, true);
  v.setUint32(o + S.namelen, st.namelen, true);
  v.setUint32(o + S.frsize, st.frsize, true);
}

export const attributeOps: readonly OpRow[] = [
  [P.FUSE_GETATTR, op<{ fh: number | undefined }>({
    name: 'GETATTR', method: 'getattr',
    decode: (a) => {
      if (a.len < P.GETATTR_IN.SIZE) return { fh: undefined }; // before 7.9 there were no args
      return { fh: (u32(a, P.GETATTR_IN.getattrFlags) & P.FUSE_GETATTR_FH) !== 0 ? u64Number(a, P.GETATTR_IN.fh) : undefined };
    },
    handle: (s, d, req) => attrReply(s, s.fs.getattr!(req.ctx, req.nodeId, d.fh, s.attr)),
  })],

  [P.FUSE_SETATTR, op<SetAttr>({
    name: 'SETATTR', method: 'setattr', modifies: true,
    decode: (a) => {
      const bad = need(a, P.SETATTR_IN.SIZE);
      if (bad < 0) return bad;
      const S = P.SETATTR_IN;
      const valid = u32(a, S.valid);
      const set: SetAttr = { valid };
      if (valid & P.FATTR_FH) set.fh = u64Number(a, S.fh);
      if (valid & P.FATTR_MODE) set.mode = u32(a, S.mode);
      if (valid & P.FATTR_UID) set.uid = u32(a, S.uid);
      if (valid & P.FATTR_GID) set.gid = u32(a, S.gid);
      if (valid & P.FATTR_SIZE) set.size = u64Number(a, S.size);
      if (valid & P.FATTR_ATIME_NOW) set.atime = 'now';
      else if (valid & P.FATTR_ATIME) set.atime = { sec: Number(a.view.getBigInt64(a.base + S.atime, true)), nsec: u32(a, S.atimensec) };
      if (valid & P.FATTR_MTIME_NOW) set.mtime = 'now';
      else if (valid & P.FATTR_MTIME) set.mtime = { sec: Number(a.view.getBigInt64(a.base + S.mtime, true)), nsec: u32(a, S.mtimensec) };
      if (valid & P.FATTR_KILL_SUIDGID) set.killSuidgid = true;
      const nsecBad = (t: SetAttr['atime']): boolean => t !== undefined && t !== 'now' && t.nsec > 999_999_999;
      if (nsecBad(set.atime) || nsecBad(set.mtime)) return -E.EINVAL;
      return set;
    },
    handle: (s, d, req) => {
      const r = attrReply(s, s.fs.setattr!(req.ctx, req.nodeId, d, s.attr));
      return d.size !== undefined ? daxSizeChanged(s, req.nodeId, r) : r;
    },
  })],

  [P.FUSE_ACCESS, op<number>({
    name: 'ACCESS', method: 'access',
    decode: (a) => (a.len < P.ACCESS_IN.SIZE ? -E.EINVAL : u32(a, P.ACCESS_IN.mask)),
    handle: (s, mask, req) => statusReply(s.fs.access!(req.ctx, req.nodeId, mask)),
  })],

  [P.FUSE_READLINK, op<null>({
    name: 'READLINK', method: 'readlink', decode: noArgs,
    handle: (s, _d, req) => {
      const r = s.fs.readlink!(req.ctx, req.nodeId);
      if (typeof r === 'number') return r;
      const c = s.core;
      if (r.length > REPLY_MAX) return -E.ENAMETOOLONG;
      return putName(r, new Uint8Array(c.memoryBuffer(), c.replyPtr, r.length));
    },
  })],

  [P.FUSE_STATFS, op<null>({
    name: 'STATFS', method: 'statfs', decode: noArgs,
    handle: (s, _d, req) => {
      const r = s.fs.statfs!(req.ctx, req.nodeId);
      if (typeof r === 'number') return r;
      writeStatfs(replyView(s), s.core.replyPtr, r);
      return P.STATFS_OUT.SIZE;
    },
  })],
];

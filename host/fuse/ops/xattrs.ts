/**
 * Extended attribute ops: GETXATTR, LISTXATTR, SETXATTR (both fuse_setxattr_in forms), REMOVEXATTR. Values and
 * lists are written straight into the reply scratch (OpContext.byteTarget).
 */
import { native } from '../../native-loader.js';
import * as P from '../protocol.js';
import { nameOf } from '../names.js';
import { cstrings, nameDecoder, need, u32, type NameArgs } from './args.js';
import { replyView, statusReply } from './replies.js';
import { op, type OpRow, type OpContext } from './op.js';

const E = native.constants.errno;

interface XattrGetArgs { size: number; name: string }
interface XattrSetArgs { name: string; value: Uint8Array; flags: number; setxattrFlags: number }

/** GETXATTR/LISTXATTR: `size` 0 -> fuse_getxattr_out with the needed size; else the bytes themselves. */
function xattrReply(s: OpContext, asked: number, r: number): number {
  if (r < 0) return r;
  if (asked === 0) {
    const v = replyView(s);
    v.setUint32(s.core.replyPtr + P.GETXATTR_OUT.size, r, true);
    v.setUint32(s.core.replyPtr + P.GETXATTR_OUT.padding, 0, true);
    return P.GETXATTR_OUT.SIZE;
  }
  return r > asked ? -E.ERANGE : r;
}

export const xattrOps: readonly OpRow[] = [
  [P.FUSE_GETXATTR, op<XattrGetArgs>({
    name: 'GETXATTR', method: 'getxattr',
    decode: (a) => {
      const bad = need(a, P.GETXATTR_IN.SIZE);
      if (bad < 0) return bad;
      const n = cstrings(a, P.GETXATTR_IN.SIZE, 1);
      return typeof n === 'number' ? n : { size: u32(a, P.GETXATTR_IN.size), name: n[0] };
    },
    handle: (s, d, req) => xattrReply(s, d.size, s.fs.getxattr!(req.ctx, req.nodeId, d.name, s.byteTarget(d.size))),
  })],

  [P.FUSE_LISTXATTR, op<number>({
    name: 'LISTXATTR', method: 'listxattr',
    decode: (a) => (a.len < P.GETXATTR_IN.SIZE ? -E.EINVAL : u32(a, P.GETXATTR_IN.size)),
    handle: (s, size, req) => xattrReply(s, size, s.fs.listxattr!(req.ctx, req.nodeId, s.byteTarget(size))),
  })],

  [P.FUSE_SETXATTR, op<XattrSetArgs>({
    name: 'SETXATTR', method: 'setxattr', modifies: true,
    decode: (a, s) => {
      // The 16-byte form (setxattr_flags) once FUSE_SETXATTR_EXT is negotiated, else the 8-byte one.
      const ext = (s.negotiatedFlags & P.FUSE_SETXATTR_EXT) !== 0;
      const head = ext ? P.SETXATTR_IN.EXT_SIZE : P.SETXATTR_IN.SIZE;
      const bad = need(a, head);
      if (bad < 0) return bad;
      const bytes = new Uint8Array(a.view.buffer, a.base, a.len);
      const nul = bytes.indexOf(0, head);
      if (nul < 0) return -E.EINVAL;
      const name = nameOf(bytes, head, nul);
      const size = u32(a, P.SETXATTR_IN.size);
      if (size > a.len - (nul + 1)) return -E.EINVAL; // the value must really be there
      return { name, value: bytes.subarray(nul + 1, nul + 1 + size), flags: u32(a, P.SETXATTR_IN.flags),
        setxattrFlags: ext ? u32(a, P.SETXATTR_IN.setxattrFlags) : 0 };
    },
    handle: (s, d, req) =>
      statusReply(s.fs.setxattr!(req.ctx, req.nodeId, d.name, d.value, d.flags, d.setxattrFlags)),
  })],

  [P.FUSE_REMOVEXATTR, op<NameArgs>({
    name: 'REMOVEXATTR', method: 'removexattr', modifies: true, decode: nameDecoder,
    handle: (s, d, req) => statusReply(s.fs.removexattr!(req.ctx, req.nodeId, d.name)),
  })],
];

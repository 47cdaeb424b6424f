/**
 * DAX ops: SETUPMAPPING and REMOVEMAPPING, served by the session's DAX window (host/dax/dax-device.ts). Without a
 * window the kernel never sends them (no DAX device); a guest that does anyway gets ENOSYS.
 */
import { native } from '../../native-loader.js';
import * as P from '../protocol.js';
import { FUSE_REMOVEMAPPING_MAX_ENTRY, daxOf } from '../../dax/dax-device.js';
import { need, u32, u64Big } from './args.js';
import { op, type OpRow, type OpContext } from './op.js';

const E = native.constants.errno;

/**
 * A DAX answer: a number now, or a promise the frontend's ack resolves. The request is parked until then
 * (OpContext.defer, woken when the promise settles); where the transport cannot park, EOPNOTSUPP before anything
 * is sent.
 */
function daxAnswer(s: OpContext, start: () => number | Promise<number>): number {
  if (!s.canDefer()) return -E.EOPNOTSUPP;
  const r = start();
  if (typeof r === 'number') return r;
  let settled: number | null = null;
  const unique = s.core.reqUnique();
  r.then((v) => { settled = v; }, () => { settled = -E.EIO; }).finally(() => s.wake?.(unique));
  return s.defer(() => settled ?? -E.EAGAIN);
}

export const daxOps: readonly OpRow[] = [
  [P.FUSE_SETUPMAPPING, op<{ fh: bigint; foffset: bigint; len: bigint; flags: bigint; moffset: bigint }>({
    name: 'SETUPMAPPING',
    decode: (a, s) => {
      if (daxOf(s) === undefined) return -E.ENOSYS;
      const bad = need(a, P.SETUPMAPPING_IN.SIZE);
      if (bad < 0) return bad;
      const M = P.SETUPMAPPING_IN;
      return { fh: u64Big(a, M.fh), foffset: u64Big(a, M.foffset), len: u64Big(a, M.len), flags: u64Big(a, M.flags),
        moffset: u64Big(a, M.moffset) };
    },
    handle: (s, d, req) => {
      const dax = daxOf(s)!;
      return daxAnswer(s, () => dax.setupMapping(req.nodeId, d.fh, d.foffset, d.len, d.flags, d.moffset, s.readonly));
    },
  })],

  [P.FUSE_REMOVEMAPPING, op<Array<{ moffset: bigint; len: bigint }>>({
    name: 'REMOVEMAPPING',
    decode: (a, s) => {
      if (daxOf(s) === undefined) return -E.ENOSYS;
      const bad = need(a, P.REMOVEMAPPING_IN.SIZE);
      if (bad < 0) return bad;
      const count = u32(a, P.REMOVEMAPPING_IN.count);
      // Bounded like the kernel's own batches, and the entries must really be there.
      if (count === 0 || count > FUSE_REMOVEMAPPING_MAX_ENTRY ||
          a.len < P.REMOVEMAPPING_IN.SIZE + count * P.REMOVEMAPPING_ONE.SIZE) return -E.EINVAL;
      const out: Array<{ moffset: bigint; len: bigint }> = [];
      for (let i = 0; i < count; i++) {
        const at = P.REMOVEMAPPING_IN.SIZE + i * P.REMOVEMAPPING_ONE.SIZE;
        out.push({ moffset: u64Big(a, at + P.REMOVEMAPPING_ONE.moffset), len: u64Big(a, at + P.REMOVEMAPPING_ONE.len) });
      }
      return out;
    },
    handle: (s, d) => {
      const dax = daxOf(s)!;
      return daxAnswer(s, () => dax.removeMapping(d));
    },
  })],
];

/**
 * Lock ops: GETLK, SETLK, SETLKW. They arrive only when FUSE_POSIX_LOCKS was negotiated (FuseServerOptions.posixLocks),
 * and SETLK/SETLKW with FUSE_LK_FLOCK (a BSD flock, served by FileSystem.flock) only with FUSE_FLOCK_LOCKS
 * (flockLocks).
 */
import { native } from '../../native-loader.js';
import type { FileLock } from '../filesystem.js';
import * as P from '../protocol.js';
import { need, u32, u64Big, u64Number } from './args.js';
import { replyView, statusReply } from './replies.js';
import { op, type Args, type OpRow, type OpContext } from './op.js';

const C = native.constants;
const E = C.errno;

interface LkArgs { fh: number; owner: bigint; lock: FileLock; flock: boolean }

function lkDecoder(a: Args, s: OpContext): LkArgs | number {
  const bad = need(a, P.LK_IN.SIZE);
  if (bad < 0) return bad;
  const flock = (u32(a, P.LK_IN.lkFlags) & P.FUSE_LK_FLOCK) !== 0;
  // Not offered: the guest keeps that kind of lock itself.
  if ((s.wantFlags & (flock ? P.FUSE_FLOCK_LOCKS : P.FUSE_POSIX_LOCKS)) === 0) return -E.ENOSYS;
  const lock: FileLock = { start: u64Big(a, P.LK_IN.start), end: u64Big(a, P.LK_IN.end), type: u32(a, P.LK_IN.type),
    pid: u32(a, P.LK_IN.pid) };
  if (lock.type !== C.F_RDLCK && lock.type !== C.F_WRLCK && lock.type !== C.F_UNLCK) return -E.EINVAL;
  if (lock.start > P.OFFSET_MAX || lock.end > P.OFFSET_MAX || lock.end < lock.start) return -E.EINVAL;
  return { fh: u64Number(a, P.LK_IN.fh), owner: u64Big(a, P.LK_IN.owner), lock, flock };
}

/**
 * SETLK/SETLKW: a POSIX lock through setlk, a BSD flock (FUSE_LK_FLOCK) through flock, always without waiting.
 * SETLKW that meets a conflict is parked (OpContext.defer): the server tries again until the lock is free, the guest
 * interrupts it (EINTR) or the queue goes away; where the transport cannot park, EOPNOTSUPP as before.
 */
function setlkReply(s: OpContext, d: LkArgs, req: Args, sleep: boolean): number {
  const fs = s.fs;
  if (d.flock && fs.flock === undefined) return -E.ENOSYS;
  const attempt = d.flock ? () => fs.flock!(req.ctx, req.nodeId, d.fh, d.owner, d.lock.type, sleep)
    : () => fs.setlk!(req.ctx, req.nodeId, d.fh, d.owner, d.lock, sleep);
  const r = attempt();
  if (r === -E.EAGAIN && sleep) return s.canDefer() ? s.defer(attempt) : -E.EOPNOTSUPP;
  return statusReply(r);
}

export const lockOps: readonly OpRow[] = [
  [P.FUSE_GETLK, op<LkArgs>({
    name: 'GETLK', method: 'getlk', decode: lkDecoder,
    handle: (s, d, req) => {
      if (d.flock) return -E.EINVAL; // the kernel never asks for flock conflicts
      const r = s.fs.getlk!(req.ctx, req.nodeId, d.fh, d.owner, d.lock);
      if (typeof r === 'number') return r < 0 ? r : -E.EIO;
      const v = replyView(s);
      const o = s.core.replyPtr;
      v.setBigUint64(o + P.LK_OUT.start, r.start, true);
      v.setBigUint64(o + P.LK_OUT.end, r.end, true);
      v.setUint32(o + P.LK_OUT.type, r.type, true);
      v.setUint32(o + P.LK_OUT.pid, r.pid >>> 0, true);
      return P.LK_OUT.SIZE;
    },
  })],

  [P.FUSE_SETLK, op<LkArgs>({
    name: 'SETLK', method: 'setlk', decode: lkDecoder,
    handle: (s, d, req) => setlkReply(s, d, req, false),
  })],

  [P.FUSE_SETLKW, op<LkArgs>({
    name: 'SETLKW', method: 'setlk', decode: lkDecoder,
    handle: (s, d, req) => setlkReply(s, d, req, true),
  })],
];

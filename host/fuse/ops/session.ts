/**
 * OpContext ops: INIT (version and feature negotiation), DESTROY, INTERRUPT, and SYNCFS (the filesystem as a whole).
 */
import { native } from '../../native-loader.js';
import * as P from '../protocol.js';
import { DAX_MAP_ALIGNMENT_LOG2, daxOf } from '../../dax/dax-device.js';
import { need, noArgs, u32, u64Big } from './args.js';
import { replyView, statusReply } from './replies.js';
import { NO_REPLY, op, type OpRow, type OpContext } from './op.js';

const E = native.constants.errno;

interface Init { major: number; minor: number; maxReadahead: number; flags: number; flags2: number }

function handleInit(s: OpContext, d: Init): number {
  const v = replyView(s);
  const o = s.core.replyPtr;
  new Uint8Array(v.buffer, o, P.INIT_OUT.SIZE).fill(0);
  if (d.major < P.FUSE_KERNEL_VERSION) return -E.EPROTO;
  v.setUint32(o + P.INIT_OUT.major, P.FUSE_KERNEL_VERSION, true);
  v.setUint32(o + P.INIT_OUT.minor, P.FUSE_KERNEL_MINOR_VERSION, true);
  // A newer major: state ours and wait for the kernel to retry with it.
  if (d.major > P.FUSE_KERNEL_VERSION) return P.INIT_OUT.COMPAT_SIZE;

  const minor = Math.min(d.minor, P.FUSE_KERNEL_MINOR_VERSION);
  const kernelFlags = (d.flags >>> 0) + ((d.flags & P.FUSE_INIT_EXT) !== 0 ? (d.flags2 >>> 0) * 2 ** 32 : 0);
  if (s.fs.init) {
    const r = s.fs.init({ major: d.major, minor, kernelFlags });
    if (r < 0) return r;
  }
  let flags = (s.wantFlags & d.flags) >>> 0;
  const dax = daxOf(s);
  let flags2 = 0;
  if (dax !== undefined) {
    dax.reset(); // a new session: the guest has no mapping
    flags = (flags | (d.flags & P.FUSE_MAP_ALIGNMENT)) >>> 0;
    dax.inodeDaxNegotiated = dax.inodeDax.kind !== 'never' && (d.flags2 & P.FUSE2_HAS_INODE_DAX) !== 0;
    if (dax.inodeDaxNegotiated) {
      flags = (flags | P.FUSE_INIT_EXT) >>> 0;
      flags2 = P.FUSE2_HAS_INODE_DAX;
    }
  }
  s.minor = minor;
  s.negotiatedFlags = flags;
  s.initialized = true;
  v.setUint32(o + P.INIT_OUT.minor, minor, true);
  v.setUint32(o + P.INIT_OUT.maxReadahead, d.maxReadahead, true);
  v.setUint32(o + P.INIT_OUT.flags, flags, true);
  v.setUint16(o + P.INIT_OUT.maxBackground, 0, true); // 0: the kernel keeps its defaults
  v.setUint16(o + P.INIT_OUT.congestionThreshold, 0, true);
  v.setUint32(o + P.INIT_OUT.maxWrite, s.maxWrite, true);
  v.setUint32(o + P.INIT_OUT.timeGran, 1, true); // nanosecond timestamps
  v.setUint16(o + P.INIT_OUT.maxPages, (flags & P.FUSE_MAX_PAGES) !== 0 ? s.maxPages : 0, true);
  // DAX: the window's offsets and lengths are multiples of the host page; flags2 only for per-inode DAX.
  if ((flags & P.FUSE_MAP_ALIGNMENT) !== 0) v.setUint16(o + P.INIT_OUT.mapAlignment, DAX_MAP_ALIGNMENT_LOG2, true);
  v.setUint32(o + P.INIT_OUT.flags2, flags2, true);
  if (minor < 5) return P.INIT_OUT.COMPAT_SIZE;
  if (minor < 23) return P.INIT_OUT.COMPAT_22_SIZE;
  return P.INIT_OUT.SIZE;
}

export const sessionOps: readonly OpRow[] = [
  [P.FUSE_INIT, op<Init>({
    name: 'INIT',
    decode: (a) => {
      const bad = need(a, P.INIT_IN.COMPAT_SIZE);
      if (bad < 0) return bad;
      const flags = u32(a, P.INIT_IN.flags);
      return {
        major: u32(a, P.INIT_IN.major), minor: u32(a, P.INIT_IN.minor),
        maxReadahead: u32(a, P.INIT_IN.maxReadahead), flags,
        flags2: a.len >= P.INIT_IN.flags2 + 4 && (flags & P.FUSE_INIT_EXT) !== 0 ? u32(a, P.INIT_IN.flags2) : 0,
      };
    },
    handle: handleInit,
  })],

  [P.FUSE_DESTROY, op<null>({
    name: 'DESTROY',
    decode: noArgs,
    handle: (s) => {
      s.dropParked(-1);
      daxOf(s)?.reset();
      s.fs.destroy?.();
      s.initialized = false;
      return 0;
    },
  })],

  [P.FUSE_INTERRUPT, op<bigint>({
    // Requests complete synchronously except a parked SETLKW; for any other target the answer went out already.
    name: 'INTERRUPT', noReply: true,
    decode: (a) => (a.len < P.INTERRUPT_IN.SIZE ? -E.EINVAL : u64Big(a, P.INTERRUPT_IN.unique)),
    handle: (s, unique) => {
      s.interrupt(unique);
      return NO_REPLY;
    },
  })],

  [P.FUSE_SYNCFS, op<null>({
    name: 'SYNCFS', method: 'syncfs', decode: noArgs,
    handle: (s, _d, req) => statusReply(s.fs.syncfs!(req.ctx, req.nodeId)),
  })],
];

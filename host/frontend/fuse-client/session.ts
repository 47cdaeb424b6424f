/** FuseClient's session ops: INIT (fuse_init_in out, fuse_init_out back). */
import * as P from '../../fuse/protocol.js';
import type { FuseTransport, ReplyDecoder } from './transport.js';

export interface InitReply {
  major: number; minor: number; maxReadahead: number; flags: number; maxBackground: number;
  congestionThreshold: number; maxWrite: number; timeGran: number; maxPages: number;
  /** log2 of the DAX mapping alignment (with FUSE_MAP_ALIGNMENT), and the flags2 word (with FUSE_INIT_EXT). */
  mapAlignment: number; flags2: number;
}

export interface InitOptions { flags?: number; flags2?: number; maxReadahead?: number; minor?: number }

/** fuse_init_out (as long as the backend's minor makes it); the client keeps it and lowers maxPayload to max_write. */
const initReply: ReplyDecoder = (t, _g, b, bodyLen) => {
  const v = t.dv;
  const r: InitReply = {
    major: v.getUint32(b + P.INIT_OUT.major, true), minor: v.getUint32(b + P.INIT_OUT.minor, true),
    maxReadahead: v.getUint32(b + P.INIT_OUT.maxReadahead, true), flags: v.getUint32(b + P.INIT_OUT.flags, true),
    maxBackground: v.getUint16(b + P.INIT_OUT.maxBackground, true),
    congestionThreshold: v.getUint16(b + P.INIT_OUT.congestionThreshold, true),
    maxWrite: v.getUint32(b + P.INIT_OUT.maxWrite, true), timeGran: v.getUint32(b + P.INIT_OUT.timeGran, true),
    maxPages: bodyLen >= P.INIT_OUT.maxPages + 2 ? v.getUint16(b + P.INIT_OUT.maxPages, true) : 0,
    mapAlignment: bodyLen >= P.INIT_OUT.mapAlignment + 2 ? v.getUint16(b + P.INIT_OUT.mapAlignment, true) : 0,
    flags2: bodyLen >= P.INIT_OUT.flags2 + 4 ? v.getUint32(b + P.INIT_OUT.flags2, true) : 0,
  };
  t.initReply = r;
  if (r.maxWrite > 0 && r.maxWrite < t.maxPayload) t.maxPayload = r.maxWrite;
  return r;
};

export function init(t: FuseTransport, opts: InitOptions, q?: number): Promise<InitReply> {
  const g = t.slot(q);
  if (g < 0) return t.retry(() => init(t, opts, q));
  const a = t.argsAt(g);
  t.u8.fill(0, a, a + P.INIT_IN.SIZE);
  const v = t.dv;
  v.setUint32(a + P.INIT_IN.major, P.FUSE_KERNEL_VERSION, true);
  v.setUint32(a + P.INIT_IN.minor, opts.minor ?? P.FUSE_KERNEL_MINOR_VERSION, true);
  v.setUint32(a + P.INIT_IN.maxReadahead, opts.maxReadahead ?? 128 * 1024, true);
  v.setUint32(a + P.INIT_IN.flags, opts.flags ?? (P.FUSE_ASYNC_READ | P.FUSE_BIG_WRITES | P.FUSE_DO_READDIRPLUS |
    P.FUSE_PARALLEL_DIROPS | P.FUSE_MAX_PAGES | P.FUSE_EXPORT_SUPPORT), true);
  if (opts.flags2 !== undefined) v.setUint32(a + P.INIT_IN.flags2, opts.flags2, true);
  return t.send(g, P.FUSE_INIT, 0, P.INIT_IN.SIZE, initReply);
}

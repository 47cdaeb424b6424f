/**
 * A userspace virtio-fs *driver*: FUSE requests over vhost-user, the way the Linux guest sends them, with a typed
 * promise API. Used by tests and benchmarks to drive any vhost-user-fs backend (ours, the C virtiofsd) without a
 * VM.
 *
 * Layered on `VhostUserFrontend` (control plane) and the ring layout of `VirtqueueDriver`; the data path (filling
 * descriptors, publishing the avail ring, reaping the used ring) is done here with fixed descriptor chains so a
 * request allocates nothing but its promise and its decoded result.
 *
 * Guest memory (one memfd, guest-physical address 0):
 *
 *   0                     hiprio ring (queue 0), then one ring per request queue (each 4 KiB aligned)
 *   slotsGpa              per request slot: [ in area: fuse_in_header + args (IN_AREA) | write data (maxPayload) ]
 *                                           [ out area: fuse_out_header + reply (OUT_AREA + maxPayload)      ]
 *
 * Each slot owns four descriptors of its queue, pre-addressed at connect time; head = 4 * slot:
 *
 *   head+0  in area     readable   header + args (WRITE: the 40-byte header alone)
 *   head+1  in area+40  readable   fuse_write_in               (WRITE only)
 *   head+2  data area   readable   the write payload            (WRITE only)
 *   head+3  out area    writable   fuse_out_header + reply
 *
 * WRITE is split header / write_in / payload like Linux does it, which is also the shape the C virtiofsd's
 * zero-copy write path expects. FORGET and BATCH_FORGET go on the hiprio queue with no writable part.
 *
 * Many requests are in flight per queue (`depth`); `unique` ids are per client, completions are matched by the
 * used element's id (the head) and checked against the reply's `unique`.
 */

import { native } from '../native-loader.js';
import { VirtiofsdError } from '../errors.js';
import { FdPoller } from '../vhost-user/fd-poller.js';
import { VIRTIO_RING_F_EVENT_IDX, bit } from '../vhost-user/protocol.js';
import * as P from '../fuse/protocol.js';
import { GuestMemory, VhostUserFrontend } from './vhost-user-frontend.js';
import { VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE, VIRTQ_USED_F_NO_NOTIFY, VirtqueueDriver, needEvent } from './virtqueue-driver.js';

/** A FUSE request answered with an error (`errno` positive, e.g. 2 for ENOENT), or one that never completed. */
export class FuseError extends VirtiofsdError {
  readonly errno: number;
  readonly opcode: number;
  constructor(code: string, opcode: number, errno: number, message?: string) {
    const op = P.OPCODE_NAMES[opcode] ?? `opcode ${opcode}`;
    super(code, message ?? `${op}: ${errnoName(errno)} (errno ${errno})`);
    this.errno = errno;
    this.opcode = opcode;
  }
}

let errnoNames: Map<number, string> | undefined;
function errnoName(e: number): string {
  if (errnoNames === undefined) {
    errnoNames = new Map();
    for (const [k, v] of Object.entries(native.constants.errno)) if (!errnoNames.has(v)) errnoNames.set(v, k);
  }
  return errnoNames.get(e) ?? `errno ${e}`;
}

// ---- reply types ---------------------------------------------------------------------------------------------------

/** struct fuse_attr (inside fuse_attr_out at +16 and fuse_entry_out at +40); times in seconds + nanoseconds. */
export interface FuseAttr {
  ino: number; size: number; blocks: number;
  atime: number; mtime: number; ctime: number; atimensec: number; mtimensec: number; ctimensec: number;
  mode: number; nlink: number; uid: number; gid: number; rdev: number; blksize: number;
  /** fuse_attr.flags: FUSE_ATTR_SUBMOUNT, FUSE_ATTR_DAX. */
  flags: number;
}
export interface AttrReply { attrValid: number; attr: FuseAttr }
export interface EntryReply { nodeid: number; generation: number; entryValid: number; attrValid: number; attr: FuseAttr }
export interface OpenReply { fh: number; openFlags: number }
export interface CreateReply { entry: EntryReply; fh: number; openFlags: number }
export interface InitReply {
  major: number; minor: number; maxReadahead: number; flags: number; maxBackground: number;
  congestionThreshold: number; maxWrite: number; timeGran: number; maxPages: number;
  /** log2 of the DAX mapping alignment (with FUSE_MAP_ALIGNMENT), and the flags2 word (with FUSE_INIT_EXT). */
  mapAlignment: number; flags2: number;
}
export interface StatfsReply {
  blocks: number; bfree: number; bavail: number; files: number; ffree: number; bsize: number; namelen: number;
  frsize: number;
}
/** `off` is the directory cookie to continue from: a full 64-bit value (ext4 hashes), hence a bigint. */
export interface Dirent { ino: number; off: bigint; type: number; name: string }
export interface DirentPlus extends Dirent { entry: EntryReply }
export interface SetattrIn {
  mode?: number; uid?: number; gid?: number; size?: number; fh?: number;
  /** seconds (fractions become nanoseconds) */
  atime?: number; mtime?: number;
}

/**
 * fuse_attr offsets. host/fuse/protocol.ts lists fuse_attr_out / fuse_entry_out only by size (the core encodes
 * them); the host side never decodes them, so the field offsets live here.
 */
const ATTR = {
  ino: 0, size: 8, blocks: 16, atime: 24, mtime: 32, ctime: 40, atimensec: 48, mtimensec: 52, ctimensec: 56,
  mode: 60, nlink: 64, uid: 68, gid: 72, rdev: 76, blksize: 80, flags: 84, SIZE: 88,
} as const;
const ATTR_OUT = { attrValid: 0, attrValidNsec: 8, attr: 16 } as const;
const ENTRY_OUT = { nodeid: 0, generation: 8, entryValid: 16, attrValid: 24, attr: 40 } as const;

// ---- layout ---------------------------------------------------------------------------------------------------------

/** Header + args area of a slot (names are at most 255 bytes; rename carries two). */
const IN_AREA = 4096;
/** Reply area besides the payload (largest fixed reply: create = entry_out + open_out = 144). */
const OUT_AREA = 4096;
const DESC_PER_SLOT = 4;
const RING_ALIGN = 4096;
const HIPRIO = 0;

const K_VOID = 0, K_ENTRY = 1, K_ATTR = 2, K_OPEN = 3, K_CREATE = 4, K_WRITE = 5, K_READ = 6, K_INIT = 7,
  K_STATFS = 8, K_DIRENTS = 9, K_DIRENTSPLUS = 10, K_NOREPLY = 11, K_READ_INTO = 12;

export interface FuseClientOptions {
  /** Request queues to use (virtqueues 1..n). Default 1. The backend must offer them. */
  queues?: number;
  /** Requests in flight per request queue. Default 64. */
  depth?: number;
  /** Largest READ/WRITE/READDIR payload. Default 128 KiB; lowered to the backend's max_write by init(). */
  maxPayload?: number;
  /** A request not completed after this long is rejected (code ERR_FUSE_TIMEOUT). Default 10000 ms. */
  timeoutMs?: number;
  /** Negotiate VIRTIO_RING_F_EVENT_IDX when offered (as Linux does). Default true. */
  eventIdx?: boolean;
  /** Protocol features to ask for (intersected with the offer). Default MQ | REPLY_ACK (VhostUserFrontend's). */
  protocolFeatures?: bigint;
}

type Resolve = (v: any) => void;
type Reject = (e: Error) => void;

/** One virtqueue as the driver sees it. */
class RequestQueue {
  availIdx = 0;
  decidedIdx = 0;
  lastUsed = 0;
  kickScheduled = false;
  callFd = -1;
  callToken = 0;
  /** Free slot numbers (local to the queue), a stack. */
  readonly free: Int32Array;
  freeTop: number;
  readonly waiters: Array<() => void> = [];
  readonly flush: () => void;
  constructor(readonly vq: number, readonly num: number, readonly depth: number, readonly base: number,
    readonly descOff: number, readonly availOff: number, readonly usedOff: number, flush: (q: RequestQueue) => void) {
    this.free = new Int32Array(depth);
    for (let i = 0; i < depth; i++) this.free[i] = depth - 1 - i;
    this.freeTop = depth;
    this.flush = () => flush(this);
  }
}

export class FuseClient {
  /** Set by init(). */
  initReply: InitReply | null = null;
  /** Requests sent / completed since connect. */
  sent = 0;
  completed = 0;

  readonly queues: number;
  readonly depth: number;
  maxPayload: number;

  private readonly fe: VhostUserFrontend;
  private readonly poller: FdPoller;
  private readonly mem: GuestMemory;
  private readonly eventIdx: boolean;
  private readonly timeoutMs: number;
  private readonly qs: RequestQueue[] = []; // index 0 = hiprio
  private dv: DataView;
  private u8: Uint8Array;
  private u16: Uint16Array;
  private rr = 0;
  private nextUnique = 1;
  private closed = false;
  private watchdog: NodeJS.Timeout | undefined;

  // per slot (global index)
  private readonly inOff: Int32Array;
  private readonly outOff: Int32Array;
  private readonly outCap: Int32Array;
  private readonly kinds: Uint8Array;
  private readonly opcodes: Uint16Array;
  private readonly uniques: Float64Array;
  private readonly started: Float64Array;
  /** 0 free, 1 in flight, 2 timed out (the device still owns the buffers). */
  private readonly state: Uint8Array;
  private readonly resolvers: (Resolve | null)[];
  private readonly rejecters: (Reject | null)[];
  private readonly dsts: (Uint8Array | null)[];
  private readonly encoder = new TextEncoder();
  private readonly decoder = new TextDecoder();

  private constructor(fe: VhostUserFrontend, poller: FdPoller, mem: GuestMemory, opts: Required<FuseClientOptions>,
    eventIdx: boolean) {
    this.fe = fe;
    this.poller = poller;
    this.mem = mem;
    this.queues = opts.queues;
    this.depth = opts.depth;
    this.maxPayload = opts.maxPayload;
    this.timeoutMs = opts.timeoutMs;
    this.eventIdx = eventIdx;
    this.u8 = mem.bytes();
    this.dv = mem.view();
    this.u16 = new Uint16Array(mem.memory.buffer, 0, mem.size >>> 1);
    const slots = FuseClient.hiprioDepth + opts.queues * opts.depth;
    this.inOff = new Int32Array(slots);
    this.outOff = new Int32Array(slots);
    this.outCap = new Int32Array(slots);
    this.kinds = new Uint8Array(slots);
    this.opcodes = new Uint16Array(slots);
    this.uniques = new Float64Array(slots);
    this.started = new Float64Array(slots);
    this.state = new Uint8Array(slots);
    this.resolvers = new Array(slots).fill(null);
    this.rejecters = new Array(slots).fill(null);
    this.dsts = new Array(slots).fill(null);
  }

  private static readonly hiprioDepth = 16;

  /**
   * Connects to a vhost-user-fs backend, negotiates, shares guest memory and starts the hiprio queue and
   * `queues` request queues. Call init() next.
   */
  static async connect(socketPath: string, options: FuseClientOptions = {}): Promise<FuseClient> {
    const opts: Required<FuseClientOptions> = {
      queues: options.queues ?? 1, depth: options.depth ?? 64, maxPayload: options.maxPayload ?? 128 * 1024,
      timeoutMs: options.timeoutMs ?? 10000, eventIdx: options.eventIdx ?? true,
      protocolFeatures: options.protocolFeatures ?? -1n,
    };
    if (!(opts.queues >= 1 && opts.queues <= 63)) throw new RangeError(`queues must be 1..63, got ${opts.queues}`);
    if (!(opts.depth >= 1 && opts.depth <= 1024)) throw new RangeError(`depth must be 1..1024, got ${opts.depth}`);
    opts.maxPayload = Math.ceil(opts.maxPayload / 4096) * 4096;
    const poller = new FdPoller();
    let fe: VhostUserFrontend | undefined;
    let mem: GuestMemory | undefined;
    try {
      fe = await VhostUserFrontend.connect(socketPath, { poller, timeoutMs: Math.min(opts.timeoutMs, 10000) });
      const offered = await fe.getFeatures();
      let want = offered;
      if (!opts.eventIdx) want &= ~bit(VIRTIO_RING_F_EVENT_IDX);
      const acked = await fe.negotiate({ features: want,
        ...(opts.protocolFeatures >= 0n ? { protocolFeatures: opts.protocolFeatures } : {}) });
      const eventIdx = (acked & bit(VIRTIO_RING_F_EVENT_IDX)) !== 0n;
      if (opts.queues > 1) {
        const n = await fe.getQueueNum();
        if (n < opts.queues + 1) {
          throw new FuseError('ERR_FUSE_QUEUES', 0, 22, `backend offers ${n} virtqueues, ${opts.queues + 1} needed`);
        }
      }

      // Layout: rings first, then slots.
      const hiNum = nextPow2(FuseClient.hiprioDepth * DESC_PER_SLOT);
      const reqNum = nextPow2(opts.depth * DESC_PER_SLOT);
      const ringBytes = (num: number) => align(VirtqueueDriver.layout(num, 0n, 1).size, RING_ALIGN);
      let off = 0;
      const ringAt: number[] = [];
      ringAt.push(off);
      off += ringBytes(hiNum);
      for (let i = 0; i < opts.queues; i++) {
        ringAt.push(off);
        off += ringBytes(reqNum);
      }
      const hiSlot = IN_AREA; // FORGET only: no data, no reply
      const reqSlot = IN_AREA + opts.maxPayload + OUT_AREA + opts.maxPayload;
      const slotsAt = off;
      off += FuseClient.hiprioDepth * hiSlot + opts.queues * opts.depth * reqSlot;
      mem = GuestMemory.create(off, { name: 'fuse-client-guest-ram' });
      await fe.setMemTable([mem.region]);

      const client = new FuseClient(fe, poller, mem, opts, eventIdx);
      let g = 0;
      let slotOff = slotsAt;
      for (let vq = 0; vq <= opts.queues; vq++) {
        const num = vq === HIPRIO ? hiNum : reqNum;
        const depth = vq === HIPRIO ? FuseClient.hiprioDepth : opts.depth;
        const drv = await fe.setupDriverVring(vq, mem, { num, ringGpa: BigInt(ringAt[vq]!), indirectMax: 1 });
        const l = drv.layout;
        const q = new RequestQueue(vq, num, depth, g, Number(l.descGpa), Number(l.availGpa), Number(l.usedGpa),
          (x) => client.flushKick(x));
        for (let s = 0; s < depth; s++, g++) {
          const inGpa = slotOff;
          client.inOff[g] = inGpa;
          if (vq === HIPRIO) {
            client.outOff[g] = 0;
            client.outCap[g] = 0;
            slotOff += hiSlot;
            client.writeDesc(q, s * DESC_PER_SLOT, inGpa, 0, 0, 0);
          } else {
            const dataGpa = inGpa + IN_AREA;
            const outGpa = dataGpa + opts.maxPayload;
            client.outOff[g] = outGpa;
            client.outCap[g] = OUT_AREA + opts.maxPayload;
            slotOff += reqSlot;
            const h = s * DESC_PER_SLOT;
            client.writeDesc(q, h, inGpa, 0, 0, 0);
            client.writeDesc(q, h + 1, inGpa + P.IN_HEADER.SIZE, P.WRITE_IN.SIZE, VIRTQ_DESC_F_NEXT, h + 2);
            client.writeDesc(q, h + 2, dataGpa, 0, VIRTQ_DESC_F_NEXT, h + 3);
            client.writeDesc(q, h + 3, outGpa, OUT_AREA + opts.maxPayload, VIRTQ_DESC_F_WRITE, 0);
          }
        }
        client.qs.push(q);
        // Our own call eventfd, polled here, replaces the one setupVring registered (no promise per call).
        const c = native.constants;
        const callFd = native.eventfd(0, c.EFD_NONBLOCK);
        if (callFd < 0) throw new FuseError('ERR_FUSE_SETUP', 0, -callFd, `eventfd: ${native.strerror(-callFd)}`);
        q.callFd = callFd;
        q.callToken = poller.add(callFd, c.EPOLLIN, () => client.onCall(q));
        await fe.setVringCall(vq, callFd);
      }
      client.watchdog = setInterval(() => client.checkTimeouts(), Math.max(50, Math.min(1000, opts.timeoutMs / 4)));
      client.watchdog.unref();
      return client;
    } catch (err) {
      fe?.close();
      mem?.close();
      poller.close();
      throw err;
    }
  }

  /** The vhost-user control connection (the DAX window attaches its backend channel through it). */
  get frontend(): VhostUserFrontend {
    return this.fe;
  }

  /**
   * Any request whose reply is a bare status (SETUPMAPPING, REMOVEMAPPING, ...): `args` are copied after the
   * fuse_in_header (at most 4056 bytes). Resolves on error 0.
   */
  request(opcode: number, nodeid: number, args: Uint8Array, q?: number): Promise<void> {
    const g = this.slot(q);
    if (g < 0) return this.retry(() => this.request(opcode, nodeid, args, q));
    if (args.length > IN_AREA - P.IN_HEADER.SIZE) {
      this.release1(g);
      return Promise.reject(new RangeError(`request args of ${args.length} bytes do not fit the slot`));
    }
    this.u8.set(args, this.inOff[g]! + P.IN_HEADER.SIZE);
    return this.send(g, opcode, nodeid, args.length, K_VOID);
  }

  /** Whether VIRTIO_RING_F_EVENT_IDX is in use. */
  get usesEventIdx(): boolean {
    return this.eventIdx;
  }

  /** Requests currently in flight (all queues). */
  get inFlight(): number {
    return this.sent - this.completed;
  }

  // ---- FUSE operations ------------------------------------------------------------------------------------------
  // `q` (optional, last): request queue 0..queues-1; default round-robin.

  /** FUSE_INIT. Must be the first request. Lowers maxPayload to the backend's max_write. */
  init(opts: { flags?: number; flags2?: number; maxReadahead?: number; minor?: number } = {}, q?: number): Promise<InitReply> {
    const g = this.slot(q);
    if (g < 0) return this.retry(() => this.init(opts, q));
    const a = this.inOff[g]! + P.IN_HEADER.SIZE;
    this.u8.fill(0, a, a + P.INIT_IN.SIZE);
    const v = this.dv;
    v.setUint32(a + P.INIT_IN.major, P.FUSE_KERNEL_VERSION, true);
    v.setUint32(a + P.INIT_IN.minor, opts.minor ?? P.FUSE_KERNEL_MINOR_VERSION, true);
    v.setUint32(a + P.INIT_IN.maxReadahead, opts.maxReadahead ?? 128 * 1024, true);
    v.setUint32(a + P.INIT_IN.flags, opts.flags ?? (P.FUSE_ASYNC_READ | P.FUSE_BIG_WRITES | P.FUSE_DO_READDIRPLUS |
      P.FUSE_PARALLEL_DIROPS | P.FUSE_MAX_PAGES | P.FUSE_EXPORT_SUPPORT), true);
    if (opts.flags2 !== undefined) v.setUint32(a + P.INIT_IN.flags2, opts.flags2, true);
    return this.send(g, P.FUSE_INIT, 0, P.INIT_IN.SIZE, K_INIT);
  }

  lookup(parent: number, name: string, q?: number): Promise<EntryReply> {
    const g = this.slot(q);
    if (g < 0) return this.retry(() => this.lookup(parent, name, q));
    const n = this.putName(g, 0, name);
    return this.send(g, P.FUSE_LOOKUP, parent, n, K_ENTRY);
  }

  /** FUSE_FORGET on the hiprio queue (no reply; resolves when the backend returned the buffer). */
  forget(nodeid: number, nlookup: number): Promise<void> {
    const g = this.hiprioSlot();
    if (g < 0) return this.retryOn(HIPRIO, () => this.forget(nodeid, nlookup));
    const a = this.inOff[g]! + P.IN_HEADER.SIZE;
    this.putU64(a + P.FORGET_IN.nlookup, nlookup);
    return this.send(g, P.FUSE_FORGET, nodeid, P.FORGET_IN.SIZE, K_NOREPLY);
  }

  /** FUSE_BATCH_FORGET on the hiprio queue; split into messages of at most ~250 entries. */
  async batchForget(items: ReadonlyArray<{ nodeid: number; nlookup: number }>): Promise<void> {
    const per = Math.floor((IN_AREA - P.IN_HEADER.SIZE - P.BATCH_FORGET_IN.SIZE) / P.FORGET_ONE.SIZE);
    const all: Promise<void>[] = [];
    for (let i = 0; i < items.length; i += per) {
      const chunk = items.slice(i, i + per);
      all.push(this.batchForgetOne(chunk));
    }
    await Promise.all(all);
  }

  private batchForgetOne(items: ReadonlyArray<{ nodeid: number; nlookup: number }>): Promise<void> {
    const g = this.hiprioSlot();
    if (g < 0) return this.retryOn(HIPRIO, () => this.batchForgetOne(items));
    const a = this.inOff[g]! + P.IN_HEADER.SIZE;
    this.dv.setUint32(a + P.BATCH_FORGET_IN.count, items.length, true);
    this.dv.setUint32(a + P.BATCH_FORGET_IN.dummy, 0, true);
    let o = a + P.BATCH_FORGET_IN.SIZE;
    for (const it of items) {
      this.putU64(o + P.FORGET_ONE.nodeid, it.nodeid);
      this.putU64(o + P.FORGET_ONE.nlookup, it.nlookup);
      o += P.FORGET_ONE.SIZE;
    }
    return this.send(g, P.FUSE_BATCH_FORGET, 0, o - a, K_NOREPLY);
  }

  getattr(nodeid: number, fh?: number, q?: number): Promise<AttrReply> {
    const g = this.slot(q);
    if (g < 0) return this.retry(() => this.getattr(nodeid, fh, q));
    const a = this.inOff[g]! + P.IN_HEADER.SIZE;
    this.dv.setUint32(a + P.GETATTR_IN.getattrFlags, fh === undefined ? 0 : P.FUSE_GETATTR_FH, true);
    this.dv.setUint32(a + P.GETATTR_IN.dummy, 0, true);
    this.putU64(a + P.GETATTR_IN.fh, fh ?? 0);
    return this.send(g, P.FUSE_GETATTR, nodeid, P.GETATTR_IN.SIZE, K_ATTR);
  }

  setattr(nodeid: number, s: SetattrIn, q?: number): Promise<AttrReply> {
    const g = this.slot(q);
    if (g < 0) return this.retry(() => this.setattr(nodeid, s, q));
    const a = this.inOff[g]! + P.IN_HEADER.SIZE;
    this.u8.fill(0, a, a + P.SETATTR_IN.SIZE);
    const v = this.dv;
    let valid = 0;
    if (s.mode !== undefined) { valid |= P.FATTR_MODE; v.setUint32(a + P.SETATTR_IN.mode, s.mode, true); }
    if (s.uid !== undefined) { valid |= P.FATTR_UID; v.setUint32(a + P.SETATTR_IN.uid, s.uid, true); }
    if (s.gid !== undefined) { valid |= P.FATTR_GID; v.setUint32(a + P.SETATTR_IN.gid, s.gid, true); }
    if (s.size !== undefined) { valid |= P.FATTR_SIZE; this.putU64(a + P.SETATTR_IN.size, s.size); }
    if (s.fh !== undefined) { valid |= P.FATTR_FH; this.putU64(a + P.SETATTR_IN.fh, s.fh); }
    if (s.atime !== undefined) {
      valid |= P.FATTR_ATIME;
      this.putU64(a + P.SETATTR_IN.atime, Math.floor(s.atime));
      v.setUint32(a + P.SETATTR_IN.atimensec, Math.round((s.atime % 1) * 1e9), true);
    }
    if (s.mtime !== undefined) {
      valid |= P.FATTR_MTIME;
      this.putU64(a + P.SETATTR_IN.mtime, Math.floor(s.mtime));
      v.setUint32(a + P.SETATTR_IN.mtimensec, Math.round((s.mtime % 1) * 1e9), true);
    }
    v.setUint32(a + P.SETATTR_IN.valid, valid, true);
    return this.send(g, P.FUSE_SETATTR, nodeid, P.SETATTR_IN.SIZE, K_ATTR);
  }

  /** FUSE_OPEN (flags: O_RDONLY/O_WRONLY/O_RDWR plus O_TRUNC etc.). */
  open(nodeid: number, flags: number, q?: number): Promise<OpenReply> {
    return this.openLike(P.FUSE_OPEN, nodeid, flags, q);
  }

  opendir(nodeid: number, q?: number): Promise<OpenReply> {
    return this.openLike(P.FUSE_OPENDIR, nodeid, 0, q);
  }

  private openLike(op: number, nodeid: number, flags: number, q?: number): Promise<OpenReply> {
    const g = this.slot(q);
    if (g < 0) return this.retry(() => this.openLike(op, nodeid, flags, q));
    const a = this.inOff[g]! + P.IN_HEADER.SIZE;
    this.dv.setUint32(a + P.OPEN_IN.flags, flags, true);
    this.dv.setUint32(a + P.OPEN_IN.openFlags, 0, true);
    return this.send(g, op, nodeid, P.OPEN_IN.SIZE, K_OPEN);
  }

  /** FUSE_READ; resolves with a copy of the bytes read (short at end of file). */
  read(nodeid: number, fh: number, offset: number, size: number, q?: number): Promise<Uint8Array> {
    const g = this.slot(q);
    if (g < 0) return this.retry(() => this.read(nodeid, fh, offset, size, q));
    return this.sendRead(g, P.FUSE_READ, nodeid, fh, offset, size, K_READ);
  }

  /**
   * FUSE_READ into `dst` (from its start); resolves with the byte count. `dst` null: the data stays in guest
   * memory (what a guest page cache would do) and only the count is returned.
   */
  readInto(nodeid: number, fh: number, offset: number, size: number, dst: Uint8Array | null, q?: number): Promise<number> {
    const g = this.slot(q);
    if (g < 0) return this.retry(() => this.readInto(nodeid, fh, offset, size, dst, q));
    this.dsts[g] = dst;
    return this.sendRead(g, P.FUSE_READ, nodeid, fh, offset, size, K_READ_INTO);
  }

  /**
   * FUSE_WRITE; resolves with the count the backend wrote. `data` a number: that many bytes of whatever the slot's
   * data buffer holds (benchmarks: no copy into guest memory).
   */
  write(nodeid: number, fh: number, offset: number, data: Uint8Array | number, q?: number): Promise<number> {
    const g = this.slot(q);
    if (g < 0) return this.retry(() => this.write(nodeid, fh, offset, data, q));
    const size = typeof data === 'number' ? data : data.length;
    if (size > this.maxPayload) {
      this.release1(g);
      return Promise.reject(new RangeError(`write of ${size} bytes over maxPayload ${this.maxPayload}`));
    }
    const a = this.inOff[g]! + P.IN_HEADER.SIZE;
    const v = this.dv;
    this.putU64(a + P.WRITE_IN.fh, fh);
    this.putU64(a + P.WRITE_IN.offset, offset);
    v.setUint32(a + P.WRITE_IN.size, size, true);
    v.setUint32(a + P.WRITE_IN.writeFlags, 0, true);
    this.putU64(a + P.WRITE_IN.lockOwner, 0);
    v.setUint32(a + P.WRITE_IN.flags, 0, true);
    v.setUint32(a + P.WRITE_IN.padding, 0, true);
    if (typeof data !== 'number') this.u8.set(data, this.inOff[g]! + IN_AREA);
    return this.send(g, P.FUSE_WRITE, nodeid, P.WRITE_IN.SIZE + size, K_WRITE, size);
  }

  flush(nodeid: number, fh: number, q?: number): Promise<void> {
    const g = this.slot(q);
    if (g < 0) return this.retry(() => this.flush(nodeid, fh, q));
    const a = this.inOff[g]! + P.IN_HEADER.SIZE;
    this.u8.fill(0, a, a + P.FLUSH_IN.SIZE);
    this.putU64(a + P.FLUSH_IN.fh, fh);
    return this.send(g, P.FUSE_FLUSH, nodeid, P.FLUSH_IN.SIZE, K_VOID);
  }

  release(nodeid: number, fh: number, flags = 0, q?: number): Promise<void> {
    return this.releaseLike(P.FUSE_RELEASE, nodeid, fh, flags, q);
  }

  releasedir(nodeid: number, fh: number, q?: number): Promise<void> {
    return this.releaseLike(P.FUSE_RELEASEDIR, nodeid, fh, 0, q);
  }

  private releaseLike(op: number, nodeid: number, fh: number, flags: number, q?: number): Promise<void> {
    const g = this.slot(q);
    if (g < 0) return this.retry(() => this.releaseLike(op, nodeid, fh, flags, q));
    const a = this.inOff[g]! + P.IN_HEADER.SIZE;
    this.u8.fill(0, a, a + P.RELEASE_IN.SIZE);
    this.putU64(a + P.RELEASE_IN.fh, fh);
    this.dv.setUint32(a + P.RELEASE_IN.flags, flags, true);
    return this.send(g, op, nodeid, P.RELEASE_IN.SIZE, K_VOID);
  }

  fsync(nodeid: number, fh: number, datasync = false, q?: number): Promise<void> {
    const g = this.slot(q);
    if (g < 0) return this.retry(() => this.fsync(nodeid, fh, datasync, q));
    const a = this.inOff[g]! + P.IN_HEADER.SIZE;
    this.u8.fill(0, a, a + P.FSYNC_IN.SIZE);
    this.putU64(a + P.FSYNC_IN.fh, fh);
    this.dv.setUint32(a + P.FSYNC_IN.fsyncFlags, datasync ? P.FUSE_FSYNC_FDATASYNC : 0, true);
    return this.send(g, P.FUSE_FSYNC, nodeid, P.FSYNC_IN.SIZE, K_VOID);
  }

  /** FUSE_CREATE (flags: open flags, O_CREAT implied by the opcode but passed as given). */
  create(parent: number, name: string, flags: number, mode: number, q?: number): Promise<CreateReply> {
    const g = this.slot(q);
    if (g < 0) return this.retry(() => this.create(parent, name, flags, mode, q));
    const a = this.inOff[g]! + P.IN_HEADER.SIZE;
    const v = this.dv;
    v.setUint32(a + P.CREATE_IN.flags, flags, true);
    v.setUint32(a + P.CREATE_IN.mode, mode, true);
    v.setUint32(a + P.CREATE_IN.umask, 0, true);
    v.setUint32(a + P.CREATE_IN.openFlags, 0, true);
    const n = this.putName(g, P.CREATE_IN.SIZE, name);
    return this.send(g, P.FUSE_CREATE, parent, P.CREATE_IN.SIZE + n, K_CREATE);
  }

  mkdir(parent: number, name: string, mode: number, q?: number): Promise<EntryReply> {
    const g = this.slot(q);
    if (g < 0) return this.retry(() => this.mkdir(parent, name, mode, q));
    const a = this.inOff[g]! + P.IN_HEADER.SIZE;
    this.dv.setUint32(a + P.MKDIR_IN.mode, mode, true);
    this.dv.setUint32(a + P.MKDIR_IN.umask, 0, true);
    const n = this.putName(g, P.MKDIR_IN.SIZE, name);
    return this.send(g, P.FUSE_MKDIR, parent, P.MKDIR_IN.SIZE + n, K_ENTRY);
  }

  unlink(parent: number, name: string, q?: number): Promise<void> {
    return this.nameOnly(P.FUSE_UNLINK, parent, name, q);
  }

  rmdir(parent: number, name: string, q?: number): Promise<void> {
    return this.nameOnly(P.FUSE_RMDIR, parent, name, q);
  }

  private nameOnly(op: number, parent: number, name: string, q?: number): Promise<void> {
    const g = this.slot(q);
    if (g < 0) return this.retry(() => this.nameOnly(op, parent, name, q));
    const n = this.putName(g, 0, name);
    return this.send(g, op, parent, n, K_VOID);
  }

  /** FUSE_RENAME (flags 0) or FUSE_RENAME2 (RENAME_NOREPLACE / RENAME_EXCHANGE). */
  rename(parent: number, name: string, newParent: number, newName: string, flags = 0, q?: number): Promise<void> {
    const g = this.slot(q);
    if (g < 0) return this.retry(() => this.rename(parent, name, newParent, newName, flags, q));
    const a = this.inOff[g]! + P.IN_HEADER.SIZE;
    let fixed: number;
    let op: number;
    if (flags === 0) {
      op = P.FUSE_RENAME;
      fixed = P.RENAME_IN.SIZE;
      this.putU64(a + P.RENAME_IN.newdir, newParent);
    } else {
      op = P.FUSE_RENAME2;
      fixed = P.RENAME2_IN.SIZE;
      this.putU64(a + P.RENAME2_IN.newdir, newParent);
      this.dv.setUint32(a + P.RENAME2_IN.flags, flags, true);
      this.dv.setUint32(a + P.RENAME2_IN.padding, 0, true);
    }
    const n1 = this.putName(g, fixed, name);
    const n2 = this.putName(g, fixed + n1, newName);
    return this.send(g, op, parent, fixed + n1 + n2, K_VOID);
  }

  /** FUSE_READDIR of at most `size` bytes from `offset` (0, or a previous entry's `off`). */
  readdir(nodeid: number, fh: number, offset: number | bigint, size = 4096, q?: number): Promise<Dirent[]> {
    const g = this.slot(q);
    if (g < 0) return this.retry(() => this.readdir(nodeid, fh, offset, size, q));
    return this.sendRead(g, P.FUSE_READDIR, nodeid, fh, offset, size, K_DIRENTS);
  }

  /** FUSE_READDIRPLUS; every entry but "." and ".." counts as a lookup (forget them). */
  readdirplus(nodeid: number, fh: number, offset: number | bigint, size = 4096, q?: number): Promise<DirentPlus[]> {
    const g = this.slot(q);
    if (g < 0) return this.retry(() => this.readdirplus(nodeid, fh, offset, size, q));
    return this.sendRead(g, P.FUSE_READDIRPLUS, nodeid, fh, offset, size, K_DIRENTSPLUS);
  }

  statfs(nodeid = P.FUSE_ROOT_ID, q?: number): Promise<StatfsReply> {
    const g = this.slot(q);
    if (g < 0) return this.retry(() => this.statfs(nodeid, q));
    return this.send(g, P.FUSE_STATFS, nodeid, 0, K_STATFS);
  }

  /**
   * Rejects what is in flight, disconnects (the backend sees the frontend leave) and frees guest memory.
   * Idempotent.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.watchdog);
    this.failAll('ERR_FUSE_CLOSED', 'client closed');
    for (const q of this.qs) {
      this.poller.remove(q.callToken);
      if (q.callFd >= 0) native.close(q.callFd);
      q.callFd = -1;
    }
    this.fe.close();
    this.poller.close();
    this.mem.close();
  }

  // ---- the data path --------------------------------------------------------------------------------------------

  /** Takes a free slot on queue q (or the next queue round-robin); -1 if it has none (then retry()). */
  private pickedQueue = 1;
  private slot(q: number | undefined): number {
    if (this.closed) return -1;
    let vq: number;
    if (q === undefined) {
      vq = 1 + this.rr;
      this.rr = this.rr + 1 === this.queues ? 0 : this.rr + 1;
    } else {
      if (!(q >= 0 && q < this.queues)) throw new RangeError(`request queue ${q} not in 0..${this.queues - 1}`);
      vq = 1 + q;
    }
    this.pickedQueue = vq;
    return this.take(this.qs[vq]!);
  }

  private hiprioSlot(): number {
    if (this.closed) return -1;
    this.pickedQueue = HIPRIO;
    return this.take(this.qs[HIPRIO]!);
  }

  private take(q: RequestQueue): number {
    if (q.freeTop === 0) return -1;
    return q.base + q.free[--q.freeTop]!;
  }

  /** Waits for a free slot on the queue slot() just tried, then runs again. */
  private retry<T>(again: () => Promise<T>): Promise<T> {
    return this.retryOn(this.pickedQueue, again);
  }

  private retryOn<T>(vq: number, again: () => Promise<T>): Promise<T> {
    if (this.closed) return Promise.reject(new FuseError('ERR_FUSE_CLOSED', 0, 107, 'client closed'));
    return new Promise<void>((resolve) => this.qs[vq]!.waiters.push(resolve)).then(again);
  }

  /** Returns an unused slot (a request that failed before being sent). */
  private release1(g: number): void {
    const q = this.queueOf(g);
    q.free[q.freeTop++] = g - q.base;
    const w = q.waiters.shift();
    if (w !== undefined) w();
  }

  private queueOf(g: number): RequestQueue {
    if (g < FuseClient.hiprioDepth) return this.qs[HIPRIO]!;
    return this.qs[1 + Math.floor((g - FuseClient.hiprioDepth) / this.depth)]!;
  }

  private sendRead(g: number, op: number, nodeid: number, fh: number, offset: number | bigint, size: number,
    kind: number): Promise<any> {
    if (size > this.maxPayload) size = this.maxPayload;
    const a = this.inOff[g]! + P.IN_HEADER.SIZE;
    const v = this.dv;
    this.putU64(a + P.READ_IN.fh, fh);
    if (typeof offset === 'bigint') v.setBigUint64(a + P.READ_IN.offset, offset, true);
    else this.putU64(a + P.READ_IN.offset, offset);
    v.setUint32(a + P.READ_IN.size, size, true);
    v.setUint32(a + P.READ_IN.readFlags, 0, true);
    this.putU64(a + P.READ_IN.lockOwner, 0);
    v.setUint32(a + P.READ_IN.flags, 0, true);
    v.setUint32(a + P.READ_IN.padding, 0, true);
    return this.send(g, op, nodeid, P.READ_IN.SIZE, kind, -1, P.OUT_HEADER.SIZE + size);
  }

  /**
   * Writes fuse_in_header, the descriptor chain, publishes the head in the avail ring and schedules the kick
   * decision (once per microtask turn, so a burst of requests costs one kick).
   */
  private send(g: number, opcode: number, nodeid: number, argsLen: number, kind: number, writeLen = -1,
    replyLen = OUT_AREA): Promise<any> {
    const q = this.queueOf(g);
    const local = g - q.base;
    const h = local * DESC_PER_SLOT;
    const v = this.dv;
    const inOff = this.inOff[g]!;
    const unique = this.nextUnique++;
    v.setUint32(inOff + P.IN_HEADER.len, P.IN_HEADER.SIZE + argsLen, true);
    v.setUint32(inOff + P.IN_HEADER.opcode, opcode, true);
    this.putU64(inOff + P.IN_HEADER.unique, unique);
    this.putU64(inOff + P.IN_HEADER.nodeid, nodeid);
    v.setUint32(inOff + P.IN_HEADER.uid, 0, true);
    v.setUint32(inOff + P.IN_HEADER.gid, 0, true);
    v.setUint32(inOff + P.IN_HEADER.pid, 0, true);
    v.setUint32(inOff + P.IN_HEADER.padding, 0, true);
    // Descriptor 0: len, flags, next (addresses were written at connect).
    const d0 = q.descOff + 16 * h;
    // The writable part is sized like Linux sizes it (header + what was asked): the C virtiofsd preadv()s READ
    // data into the whole writable buffer, whatever the request's size.
    if (kind !== K_NOREPLY) v.setUint32(d0 + 16 * 3 + 8, replyLen, true);
    if (kind === K_NOREPLY) {
      v.setUint32(d0 + 8, P.IN_HEADER.SIZE + argsLen, true);
      v.setUint16(d0 + 12, 0, true);
    } else if (writeLen >= 0) {
      v.setUint32(d0 + 8, P.IN_HEADER.SIZE, true);
      v.setUint16(d0 + 12, VIRTQ_DESC_F_NEXT, true);
      v.setUint16(d0 + 14, h + 1, true);
      v.setUint32(d0 + 16 * 2 + 8, writeLen, true);
      if (writeLen === 0) v.setUint16(d0 + 16 + 14, h + 3, true); // skip the empty payload descriptor
      else v.setUint16(d0 + 16 + 14, h + 2, true);
    } else {
      v.setUint32(d0 + 8, P.IN_HEADER.SIZE + argsLen, true);
      v.setUint16(d0 + 12, VIRTQ_DESC_F_NEXT, true);
      v.setUint16(d0 + 14, h + 3, true);
    }
    this.kinds[g] = kind;
    this.opcodes[g] = opcode;
    this.uniques[g] = unique;
    this.started[g] = performance.now();
    this.state[g] = 1;
    this.sent++;
    const p = new Promise<any>((resolve, reject) => {
      this.resolvers[g] = resolve;
      this.rejecters[g] = reject;
    });
    // avail ring entry, then the release-write of avail.idx (virtio 1.2 §2.7.13: the idx store after the ring store).
    v.setUint16(q.availOff + 4 + 2 * (q.availIdx & (q.num - 1)), h, true);
    q.availIdx = (q.availIdx + 1) & 0xffff;
    Atomics.store(this.u16, (q.availOff + 2) >>> 1, q.availIdx);
    if (!q.kickScheduled) {
      q.kickScheduled = true;
      queueMicrotask(q.flush);
    }
    return p;
  }

  /** Kick decision for what was published since the last one (virtio 1.2 §2.7.10, Linux virtqueue_kick_prepare). */
  private flushKick(q: RequestQueue): void {
    q.kickScheduled = false;
    if (this.closed || q.decidedIdx === q.availIdx) return;
    const old = q.decidedIdx;
    q.decidedIdx = q.availIdx;
    // The avail.idx store above was seq-cst; this seq-cst load orders the read of the device's suppression state.
    let kick: boolean;
    if (this.eventIdx) {
      const availEvent = Atomics.load(this.u16, (q.usedOff + 4 + 8 * q.num) >>> 1);
      kick = needEvent(availEvent, q.availIdx, old);
    } else {
      kick = (Atomics.load(this.u16, q.usedOff >>> 1) & VIRTQ_USED_F_NO_NOTIFY) === 0;
    }
    if (kick) {
      try {
        this.fe.kick(q.vq);
      } catch {
        // The connection is gone: the watchdog fails what is in flight.
      }
    }
  }

  private onCall(q: RequestQueue): void {
    if (this.closed) return;
    native.eventfdRead(q.callFd);
    this.drain(q);
    this.poller.rearm(q.callToken);
  }

  /** Reaps the used ring; with EVENT_IDX re-arms used_event and looks again (Linux virtqueue_enable_cb). */
  private drain(q: RequestQueue): void {
    const usedIdxAt = (q.usedOff + 2) >>> 1;
    for (;;) {
      const usedIdx = Atomics.load(this.u16, usedIdxAt); // acquire-read of used.idx
      while (q.lastUsed !== usedIdx) {
        const e = q.usedOff + 4 + 8 * (q.lastUsed & (q.num - 1));
        const id = this.dv.getUint32(e, true);
        const len = this.dv.getUint32(e + 4, true);
        q.lastUsed = (q.lastUsed + 1) & 0xffff;
        this.complete(q, id, len);
      }
      if (this.eventIdx) Atomics.store(this.u16, (q.availOff + 4 + 2 * q.num) >>> 1, q.lastUsed);
      if (Atomics.load(this.u16, usedIdxAt) === q.lastUsed) return;
    }
  }

  private complete(q: RequestQueue, id: number, usedLen: number): void {
    const local = id / DESC_PER_SLOT;
    if (id % DESC_PER_SLOT !== 0 || local >= q.depth) return; // not one of ours: ignore
    const g = q.base + local;
    const st = this.state[g];
    if (st === 0) return; // duplicate: ignore
    this.state[g] = 0;
    if (st === 1) {
      this.completed++;
      const resolve = this.resolvers[g]!;
      const reject = this.rejecters[g]!;
      this.resolvers[g] = null;
      this.rejecters[g] = null;
      let value: unknown;
      let error: Error | null = null;
      try {
        value = this.decode(g, usedLen);
      } catch (e) {
        error = e as Error;
      }
      this.dsts[g] = null;
      if (error !== null) reject(error);
      else resolve(value);
    }
    q.free[q.freeTop++] = local;
    const w = q.waiters.shift();
    if (w !== undefined) w();
  }

  /** Decodes the reply in slot g, or throws the FuseError it carries. */
  private decode(g: number, usedLen: number): unknown {
    const kind = this.kinds[g]!;
    const op = this.opcodes[g]!;
    if (kind === K_NOREPLY) return undefined;
    const v = this.dv;
    const o = this.outOff[g]!;
    if (usedLen < P.OUT_HEADER.SIZE) throw new FuseError('ERR_FUSE_BAD_REPLY', op, 5, `${P.OPCODE_NAMES[op]}: used length ${usedLen}`);
    const len = v.getUint32(o + P.OUT_HEADER.len, true);
    const err = v.getInt32(o + P.OUT_HEADER.error, true);
    const unique = this.getU64(o + P.OUT_HEADER.unique);
    if (unique !== this.uniques[g]) {
      throw new FuseError('ERR_FUSE_BAD_REPLY', op, 5, `${P.OPCODE_NAMES[op]}: reply unique ${unique}, sent ${this.uniques[g]}`);
    }
    if (err !== 0) throw new FuseError('ERR_FUSE', op, -err);
    const b = o + P.OUT_HEADER.SIZE;
    const bodyLen = Math.min(len, usedLen, this.outCap[g]!) - P.OUT_HEADER.SIZE;
    switch (kind) {
      case K_VOID: return undefined;
      case K_ATTR: return { attrValid: this.getU64(b + ATTR_OUT.attrValid), attr: this.attr(b + ATTR_OUT.attr) };
      case K_ENTRY: return this.entry(b);
      case K_OPEN: return { fh: this.getU64(b + P.OPEN_OUT.fh), openFlags: v.getUint32(b + P.OPEN_OUT.openFlags, true) };
      case K_CREATE: {
        const e = b + P.ENTRY_OUT_SIZE;
        return { entry: this.entry(b), fh: this.getU64(e + P.OPEN_OUT.fh), openFlags: v.getUint32(e + P.OPEN_OUT.openFlags, true) };
      }
      case K_WRITE: return v.getUint32(b + P.WRITE_OUT.size, true);
      case K_READ: return this.u8.slice(b, b + bodyLen);
      case K_READ_INTO: {
        const dst = this.dsts[g];
        if (dst === null || dst === undefined) return bodyLen;
        const n = Math.min(bodyLen, dst.length);
        dst.set(this.u8.subarray(b, b + n));
        return n;
      }
      case K_INIT: {
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
        this.initReply = r;
        if (r.maxWrite > 0 && r.maxWrite < this.maxPayload) this.maxPayload = r.maxWrite;
        return r;
      }
      case K_STATFS: return {
        blocks: this.getU64(b + P.STATFS_OUT.blocks), bfree: this.getU64(b + P.STATFS_OUT.bfree),
        bavail: this.getU64(b + P.STATFS_OUT.bavail), files: this.getU64(b + P.STATFS_OUT.files),
        ffree: this.getU64(b + P.STATFS_OUT.ffree), bsize: v.getUint32(b + P.STATFS_OUT.bsize, true),
        namelen: v.getUint32(b + P.STATFS_OUT.namelen, true), frsize: v.getUint32(b + P.STATFS_OUT.frsize, true),
      };
      case K_DIRENTS:
      case K_DIRENTSPLUS: return this.dirents(b, bodyLen, kind === K_DIRENTSPLUS);
      default: throw new FuseError('ERR_FUSE_BAD_REPLY', op, 5, `unknown reply kind ${kind}`);
    }
  }

  private dirents(b: number, len: number, plus: boolean): Dirent[] | DirentPlus[] {
    const out: any[] = [];
    let o = b;
    const end = b + len;
    const head = plus ? P.DIRENTPLUS.dirent : 0;
    for (;;) {
      const rec = o + head;
      if (rec + P.DIRENT.name > end) break;
      const namelen = this.dv.getUint32(rec + P.DIRENT.namelen, true);
      const size = align(head + P.DIRENT.name + namelen, 8);
      if (namelen === 0 || o + size > end) break;
      const d: any = {
        ino: this.getU64(rec + P.DIRENT.ino), off: this.dv.getBigUint64(rec + P.DIRENT.off, true),
        type: this.dv.getUint32(rec + P.DIRENT.type, true),
        name: this.decoder.decode(this.u8.subarray(rec + P.DIRENT.name, rec + P.DIRENT.name + namelen)),
      };
      if (plus) d.entry = this.entry(o + P.DIRENTPLUS.entryOut);
      out.push(d);
      o += size;
    }
    return out;
  }

  private entry(b: number): EntryReply {
    return {
      nodeid: this.getU64(b + ENTRY_OUT.nodeid), generation: this.getU64(b + ENTRY_OUT.generation),
      entryValid: this.getU64(b + ENTRY_OUT.entryValid), attrValid: this.getU64(b + ENTRY_OUT.attrValid),
      attr: this.attr(b + ENTRY_OUT.attr),
    };
  }

  private attr(a: number): FuseAttr {
    const v = this.dv;
    return {
      ino: this.getU64(a + ATTR.ino), size: this.getU64(a + ATTR.size), blocks: this.getU64(a + ATTR.blocks),
      atime: this.getU64(a + ATTR.atime), mtime: this.getU64(a + ATTR.mtime), ctime: this.getU64(a + ATTR.ctime),
      atimensec: v.getUint32(a + ATTR.atimensec, true), mtimensec: v.getUint32(a + ATTR.mtimensec, true),
      ctimensec: v.getUint32(a + ATTR.ctimensec, true), mode: v.getUint32(a + ATTR.mode, true),
      nlink: v.getUint32(a + ATTR.nlink, true), uid: v.getUint32(a + ATTR.uid, true), gid: v.getUint32(a + ATTR.gid, true),
      rdev: v.getUint32(a + ATTR.rdev, true), blksize: v.getUint32(a + ATTR.blksize, true),
      flags: v.getUint32(a + ATTR.flags, true),
    };
  }

  private checkTimeouts(): void {
    if (this.closed) return;
    if (this.fe.isClosed) {
      this.failAll('ERR_FUSE_DISCONNECTED', 'backend disconnected');
      return;
    }
    const now = performance.now();
    for (let g = 0; g < this.state.length; g++) {
      if (this.state[g] === 1 && now - this.started[g]! > this.timeoutMs) {
        const op = this.opcodes[g]!;
        this.state[g] = 2; // the device still owns the buffers: the slot comes back only if it completes
        this.completed++;
        const reject = this.rejecters[g]!;
        this.resolvers[g] = null;
        this.rejecters[g] = null;
        reject(new FuseError('ERR_FUSE_TIMEOUT', op, 110, `${P.OPCODE_NAMES[op]}: no reply within ${this.timeoutMs} ms`));
      }
    }
  }

  private failAll(code: string, why: string): void {
    for (let g = 0; g < this.state.length; g++) {
      if (this.state[g] !== 1) continue;
      const op = this.opcodes[g]!;
      this.state[g] = 2;
      this.completed++;
      const reject = this.rejecters[g]!;
      this.resolvers[g] = null;
      this.rejecters[g] = null;
      reject(new FuseError(code, op, 107, `${P.OPCODE_NAMES[op]}: ${why}`));
    }
    for (const q of this.qs) for (const w of q.waiters.splice(0)) w(); // they find the client closed and reject
  }

  // ---- guest memory helpers -------------------------------------------------------------------------------------

  private writeDesc(q: RequestQueue, i: number, gpa: number, len: number, flags: number, next: number): void {
    const o = q.descOff + 16 * i;
    this.putU64(o, gpa);
    this.dv.setUint32(o + 8, len, true);
    this.dv.setUint16(o + 12, flags, true);
    this.dv.setUint16(o + 14, next, true);
  }

  /** Writes name + NUL at args offset `at` of slot g; returns the bytes written. */
  private putName(g: number, at: number, name: string): number {
    const start = this.inOff[g]! + P.IN_HEADER.SIZE + at;
    const limit = this.inOff[g]! + IN_AREA - 1;
    const r = this.encoder.encodeInto(name, this.u8.subarray(start, limit));
    if (r.read! < name.length) {
      this.release1(g);
      throw new RangeError(`name too long: ${name.length} characters`);
    }
    this.u8[start + r.written!] = 0;
    return r.written! + 1;
  }

  /** u64 little-endian from a number < 2^53 (no BigInt). */
  private putU64(o: number, x: number): void {
    this.dv.setUint32(o, x >>> 0, true);
    this.dv.setUint32(o + 4, Math.floor(x / 0x1_0000_0000) >>> 0, true);
  }

  /** u64 as a number (exact below 2^53). */
  private getU64(o: number): number {
    return this.dv.getUint32(o, true) + this.dv.getUint32(o + 4, true) * 0x1_0000_0000;
  }
}

function nextPow2(n: number): number {
  let p = 1;
  while (p < n) p <<= 1;
  return p;
}

function align(v: number, a: number): number {
  return Math.ceil(v / a) * a;
}

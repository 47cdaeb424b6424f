/**
 * The transport under FuseClient (../fuse-client.ts): request slots in shared guest memory, the virtqueues that
 * carry them, and the promise each request resolves with. The FUSE operations themselves (their args and reply
 * decoders) are in the op family files beside this one; they build on the surface marked "for the op families".
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

import { native } from '../../native-loader.js';
import { VirtiofsdError } from '../../errors.js';
import { FdPoller } from '../../vhost-user/fd-poller.js';
import { VIRTIO_RING_F_EVENT_IDX, bit } from '../../vhost-user/protocol.js';
import * as P from '../../fuse/protocol.js';
import { GuestMemory, VhostUserFrontend } from '../vhost-user-frontend.js';
import { VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE, VIRTQ_USED_F_NO_NOTIFY, VirtqueueDriver, needEvent } from '../virtqueue-driver.js';
import type { InitReply } from './session.js';

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

// ---- layout ---------------------------------------------------------------------------------------------------------

/** Header + args area of a slot (names are at most 255 bytes; rename carries two). */
export const IN_AREA = 4096;
/** Reply area besides the payload (largest fixed reply: create = entry_out + open_out = 144). */
const OUT_AREA = 4096;
const DESC_PER_SLOT = 4;
const RING_ALIGN = 4096;
/** The hiprio virtqueue (FORGET, BATCH_FORGET). */
export const HIPRIO = 0;

/**
 * What turns a request's reply body (at guest offset `b`, `bodyLen` bytes, after a fuse_out_header with error 0)
 * into its result. One per reply shape, defined once at module level by the op families: a request stores a
 * reference to it, nothing is allocated.
 */
export type ReplyDecoder = (t: FuseTransport, g: number, b: number, bodyLen: number) => unknown;
/** A header-only reply: resolves with undefined. */
export const voidReply: ReplyDecoder = () => undefined;
/** No reply at all (FORGET, BATCH_FORGET: no writable descriptor); resolves when the device returns the buffers. */
export const noReply: ReplyDecoder = () => undefined;

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

/** What connect() hands the constructor. */
export interface TransportParts {
  fe: VhostUserFrontend;
  poller: FdPoller;
  mem: GuestMemory;
  opts: Required<FuseClientOptions>;
  eventIdx: boolean;
}

export class FuseTransport {
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
  private u16: Uint16Array;
  private rr = 0;
  private nextUnique = 1;
  private closed = false;
  private watchdog: NodeJS.Timeout | undefined;

  // per slot (global index)
  private readonly inOff: Int32Array;
  private readonly outOff: Int32Array;
  private readonly outCap: Int32Array;
  private readonly replies: ReplyDecoder[];
  private readonly opcodes: Uint16Array;
  private readonly uniques: Float64Array;
  private readonly started: Float64Array;
  /** 0 free, 1 in flight, 2 timed out (the device still owns the buffers). */
  private readonly state: Uint8Array;
  private readonly resolvers: (Resolve | null)[];
  private readonly rejecters: (Reject | null)[];
  private readonly encoder = new TextEncoder();

  // ---- for the op families (fuse-client/*.ts): guest memory views and per-slot state ----------------------------
  /** Views over guest memory. */
  readonly dv: DataView;
  readonly u8: Uint8Array;
  /** READ into a caller's buffer: the destination of slot g's data. */
  readonly dsts: (Uint8Array | null)[];
  readonly textDecoder = new TextDecoder();

  protected constructor({ fe, poller, mem, opts, eventIdx }: TransportParts) {
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
    const slots = FuseTransport.hiprioDepth + opts.queues * opts.depth;
    this.inOff = new Int32Array(slots);
    this.outOff = new Int32Array(slots);
    this.outCap = new Int32Array(slots);
    this.replies = new Array(slots).fill(voidReply);
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
   * `queues` request queues; `make` builds the client over them (FuseClient.connect).
   */
  protected static async open<C extends FuseTransport>(socketPath: string, options: FuseClientOptions,
    make: (parts: TransportParts) => C): Promise<C> {
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
      const hiNum = nextPow2(FuseTransport.hiprioDepth * DESC_PER_SLOT);
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
      off += FuseTransport.hiprioDepth * hiSlot + opts.queues * opts.depth * reqSlot;
      mem = GuestMemory.create(off, { name: 'fuse-client-guest-ram' });
      await fe.setMemTable([mem.region]);

      const made = make({ fe, poller, mem, opts, eventIdx });
      const client: FuseTransport = made;
      let g = 0;
      let slotOff = slotsAt;
      for (let vq = 0; vq <= opts.queues; vq++) {
        const num = vq === HIPRIO ? hiNum : reqNum;
        const depth = vq === HIPRIO ? FuseTransport.hiprioDepth : opts.depth;
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
      return made;
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
    this.u8.set(args, this.argsAt(g));
    return this.send(g, opcode, nodeid, args.length, voidReply);
  }

  /** Whether VIRTIO_RING_F_EVENT_IDX is in use. */
  get usesEventIdx(): boolean {
    return this.eventIdx;
  }

  /** Requests currently in flight (all queues). */
  get inFlight(): number {
    return this.sent - this.completed;
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

  // ---- the data path (slot, retry, release1, send: for the op families too) -------------------------------------
  // An op takes a slot (slot() or hiprioSlot(); -1: retry() once one is free), writes its args at argsAt(g) (and
  // WRITE data at dataAt(g)), then send()s it with the ReplyDecoder of its reply; a request that fails before
  // being sent gives its slot back with release1().

  /** The request virtqueue slot() or hiprioSlot() last tried (where retry() waits). */
  private pickedQueue = 1;

  /** Takes a free slot on queue q (or the next queue round-robin); -1 if it has none (then retry()). */
  slot(q: number | undefined): number {
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

  hiprioSlot(): number {
    if (this.closed) return -1;
    this.pickedQueue = HIPRIO;
    return this.take(this.qs[HIPRIO]!);
  }

  private take(q: RequestQueue): number {
    if (q.freeTop === 0) return -1;
    return q.base + q.free[--q.freeTop]!;
  }

  /** Waits for a free slot on the queue slot() just tried, then runs again. */
  retry<T>(again: () => Promise<T>): Promise<T> {
    return this.retryOn(this.pickedQueue, again);
  }

  retryOn<T>(vq: number, again: () => Promise<T>): Promise<T> {
    if (this.closed) return Promise.reject(new FuseError('ERR_FUSE_CLOSED', 0, 107, 'client closed'));
    return new Promise<void>((resolve) => this.qs[vq]!.waiters.push(resolve)).then(again);
  }

  /** Returns an unused slot (a request that failed before being sent). */
  release1(g: number): void {
    const q = this.queueOf(g);
    q.free[q.freeTop++] = g - q.base;
    const w = q.waiters.shift();
    if (w !== undefined) w();
  }

  private queueOf(g: number): RequestQueue {
    if (g < FuseTransport.hiprioDepth) return this.qs[HIPRIO]!;
    return this.qs[1 + Math.floor((g - FuseTransport.hiprioDepth) / this.depth)]!;
  }

  /**
   * Writes fuse_in_header, the descriptor chain, publishes the head in the avail ring and schedules the kick
   * decision (once per microtask turn, so a burst of requests costs one kick).
   */
  send(g: number, opcode: number, nodeid: number, argsLen: number, reply: ReplyDecoder, writeLen = -1,
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
    if (reply !== noReply) v.setUint32(d0 + 16 * 3 + 8, replyLen, true);
    if (reply === noReply) {
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
    this.replies[g] = reply;
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
    const reply = this.replies[g]!;
    const op = this.opcodes[g]!;
    if (reply === noReply) return undefined;
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
    const bodyLen = Math.min(len, usedLen, this.outCap[g]!) - P.OUT_HEADER.SIZE;
    return reply(this, g, o + P.OUT_HEADER.SIZE, bodyLen);
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

  // ---- guest memory helpers (argsAt, dataAt, putName, putU64, getU64: for the op families too) ------------------

  /** Guest offset of slot g's args (after its fuse_in_header). */
  argsAt(g: number): number {
    return this.inOff[g]! + P.IN_HEADER.SIZE;
  }

  /** Guest offset of slot g's WRITE data (the payload descriptor's buffer). */
  dataAt(g: number): number {
    return this.inOff[g]! + IN_AREA;
  }

  private writeDesc(q: RequestQueue, i: number, gpa: number, len: number, flags: number, next: number): void {
    const o = q.descOff + 16 * i;
    this.putU64(o, gpa);
    this.dv.setUint32(o + 8, len, true);
    this.dv.setUint16(o + 12, flags, true);
    this.dv.setUint16(o + 14, next, true);
  }

  /** Writes name + NUL at args offset `at` of slot g; returns the bytes written. */
  putName(g: number, at: number, name: string): number {
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
  putU64(o: number, x: number): void {
    this.dv.setUint32(o, x >>> 0, true);
    this.dv.setUint32(o + 4, Math.floor(x / 0x1_0000_0000) >>> 0, true);
  }

  /** u64 as a number (exact below 2^53). */
  getU64(o: number): number {
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

/**
 * The worker thread of one request queue (started by host/virtio/queue-thread.ts, which describes the whole).
 * Here: a core instance of its own, a poller on this thread's event loop, a LocalQueue serving the ring, and
 * ThreadRequestServer, which serves READ and WRITE of the main thread's shared open files in place and hands every
 * other request to the main thread.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { native } from '../native-loader.js';
import { setLogLevel, setLogger } from '../log.js';
import { Core, FUSE_OUT_HEADER_SIZE } from '../core.js';
import { FdPoller } from '../vhost-user/fd-poller.js';
import * as P from '../fuse/protocol.js';
import { encodeWriteOut, writeDecoder } from '../fuse/ops/data.js';
import { readDecoder, type ArgBytes } from '../fuse/ops/args.js';
import { SHARED_LIVE, SHARED_NOWAIT, SHARED_WRITES, SharedFiles } from '../passthrough/shared-files.js';
import { withoutNowait } from '../passthrough/blocking-io.js';
import { LocalQueue } from './local-queue.js';
import type { ParkedRequest, ReplyParking, RequestServer } from './queue-processor.js';
import {
  CTL_DONE, CTL_HALTED, CTL_RESULT, CTL_SERVED_HERE, SERVED_ON_THREAD, STAT_KEYS, type FromThread, type QueueThreadInit,
  type ToThread,
} from './queue-thread.js';
import { SharedOpCounters } from '../fuse/op-stats.js';

const E = native.constants.errno;
/** Files whose filesystem refused RWF_NOWAIT, remembered per fh (bounded: cleared when it grows past this). */
const NOWAIT_MEMO_MAX = 1024;

const port = parentPort!;
const init = workerData as QueueThreadInit;
const post = (m: FromThread, transfer?: ArrayBuffer[]): void => port.postMessage(m, transfer);

/**
 * Serves the requests this thread's queue pops: READ and WRITE of a published open file here, straight between
 * the file and guest memory; anything else (and those when the file is not published, the session is not up,
 * a WRITE must drop set-id bits, or RWF_NOWAIT says the call would block and the main thread has a pool for it)
 * is forwarded as bytes, its chain parked until the reply comes back.
 */
class ThreadRequestServer implements RequestServer {
  private parking: ReplyParking | null = null;
  /** Bumped when the ring is reset or stops: replies to chains parked before belong to a ring that is gone. */
  private epoch = 0;
  private readonly nowaitMemo = new Map<number, 'inline' | 'pool'>();

  constructor(private readonly core: Core, private readonly queue: number, private readonly files: SharedFiles | null,
    private readonly maxWrite: number, private readonly control: Int32Array,
    private readonly opCounters: SharedOpCounters) {}

  attachParking(_queue: number, parking: ReplyParking): void {
    this.parking = parking;
  }

  dropParked(): void {
    this.epoch++;
  }

  serveCurrent(): void {
    const op = this.core.reqOpcode();
    if ((op === P.FUSE_READ || op === P.FUSE_WRITE) && this.files !== null && this.files.flag(SHARED_LIVE)) {
      const start = performance.now();
      const r = op === P.FUSE_READ ? this.readHere() : this.writeHere();
      if (r !== null) {
        Atomics.add(this.control, CTL_SERVED_HERE, 1);
        this.opCounters.record(op, r < 0, performance.now() - start);
        return;
      }
    }
    this.forward(op);
  }

  /** The reply to a forwarded request: its chain current again, the reply written, the call if due. */
  replied(m: Extract<ToThread, { t: 'reply' }>): void {
    if (m.epoch !== this.epoch || this.parking === null) return;
    const p: ParkedRequest = { queue: this.queue, head: m.head, unique: m.unique };
    if (this.parking.resume!(p, m.opcode) !== 1) return; // the chain is gone or malformed now (returned empty)
    const c = this.core;
    const body = m.bytes.byteLength - FUSE_OUT_HEADER_SIZE;
    if (body > 0) c.bytes().set(new Uint8Array(m.bytes, FUSE_OUT_HEADER_SIZE), c.replyPtr);
    c.replySend(new DataView(m.bytes).getInt32(P.OUT_HEADER.error, true), Math.max(body, 0), 0);
    this.parking.delivered!(p);
  }

  private forward(op: number): void {
    const c = this.core;
    const n = c.requestCopy(c.linearInPtr, c.linearBufSize);
    if (n === 0) {
      c.replySend(-E.EIO, 0, 0); // no window slot for a WRITE's payload: as a reply that could not be placed
      return;
    }
    const bytes = c.memoryBuffer().slice(c.linearInPtr, c.linearInPtr + n);
    // FORGET, BATCH_FORGET, INTERRUPT: the chain goes back now (nothing is written into it).
    const noReply = op === P.FUSE_FORGET || op === P.FUSE_BATCH_FORGET || op === P.FUSE_INTERRUPT ||
      this.parking === null;
    let head = 0;
    let unique = 0n;
    if (noReply) {
      c.replyNone();
    } else {
      const p = this.parking!.park();
      head = p.head;
      unique = p.unique;
    }
    post({ t: 'req', queue: this.queue, head, unique, epoch: this.epoch, opcode: op, noReply, bytes }, [bytes]);
  }

  /** fuse_read_in at the args: the result answered here (bytes or -errno), or null for the main thread. */
  private readHere(): number | null {
    const c = this.core;
    const d = readDecoder(this.argBytes());
    if (typeof d === 'number') return null; // malformed: the main thread answers it
    const fd = this.files!.acquire(d.fh, c.reqNodeId());
    if (fd < 0) return null;
    try {
      const n = d.size === 0 ? 0 : c.payloadReadIov(FUSE_OUT_HEADER_SIZE, d.size);
      const r = n > 0 ? this.transfer(d.fh, fd, n, d.offset, d.size, false) : 0;
      if (r === null) return null;
      c.replySend(r < 0 ? r : 0, 0, r < 0 ? 0 : Math.min(r, d.size));
      return r;
    } finally {
      this.files!.release(d.fh);
    }
  }

  /** fuse_write_in at the args, the payload in the chain: as readHere. */
  private writeHere(): number | null {
    const c = this.core;
    const files = this.files!;
    if (!files.flag(SHARED_WRITES)) return null;
    const d = writeDecoder(this.argBytes());
    // Malformed, larger than max_write (refused there), or set-id bits to drop: the main thread's.
    if (typeof d === 'number' || d.size > this.maxWrite || (d.writeFlags & P.FUSE_WRITE_KILL_SUIDGID) !== 0) {
      return null;
    }
    const fd = files.acquire(d.fh, c.reqNodeId());
    if (fd < 0) return null;
    try {
      const n = d.size === 0 ? 0 : c.payloadWriteIov(P.WRITE_IN.SIZE, d.size);
      const r = n > 0 ? this.transfer(d.fh, fd, n, d.offset, d.size, true) : 0;
      if (r === null) return null;
      if (r < 0) c.replySend(r, 0, 0);
      else c.replySend(0, encodeWriteOut(c.view(), c.replyPtr, r), 0);
      return r;
    } finally {
      files.release(d.fh);
    }
  }

  /** The current request's args where the decoders read them. */
  private argBytes(): ArgBytes {
    const c = this.core;
    return { view: c.view(), base: c.argsPtr, len: c.reqArgsLen() };
  }

  /**
   * preadv (or pwritev) over the `n` iovecs the core built, here: bytes or -errno; null when the main thread should
   * take the request instead (RWF_NOWAIT says it would block, or its filesystem refuses NOWAIT and is not local;
   * a READ that came back short, EOF or not, is for the main thread to tell).
   */
  private transfer(fh: number, fd: number, n: number, offset: number, size: number, write: boolean): number | null {
    const mem = this.core.memoryBuffer();
    const iov = this.core.iovPtr;
    if (this.nowait(fh)) {
      const r = write ? native.pwritevNowait(fd, mem, iov, n, offset) : native.preadvNowait(fd, mem, iov, n, offset);
      if (r === -E.EAGAIN || (!write && r >= 0 && r < size)) return null;
      if (r !== -E.EOPNOTSUPP) return r;
    }
    if (this.fallback(fh, fd) === 'pool') return null;
    return write ? native.pwritev(fd, mem, iov, n, offset) : native.preadv(fd, mem, iov, n, offset);
  }

  /** Whether to try RWF_NOWAIT first: with the main thread's pool, and unless the file's filesystem refused it. */
  private nowait(fh: number): boolean {
    return this.files!.flag(SHARED_NOWAIT) && !this.nowaitMemo.has(fh);
  }

  /**
   * Without a pool, every call runs here (this thread is the queue's own: a call that blocks holds up only its
   * queue). With one, a file whose filesystem refuses RWF_NOWAIT runs here when it is local, and goes to the pool
   * otherwise (the rule of host/passthrough/blocking-io.ts).
   */
  private fallback(fh: number, fd: number): 'inline' | 'pool' {
    if (!this.files!.flag(SHARED_NOWAIT)) return 'inline';
    let w = this.nowaitMemo.get(fh);
    if (w === undefined) {
      if (this.nowaitMemo.size >= NOWAIT_MEMO_MAX) this.nowaitMemo.clear();
      this.nowaitMemo.set(fh, w = withoutNowait(fd));
    }
    return w;
  }
}

async function main(): Promise<void> {
  setLogLevel(init.logLevel);
  setLogger((level, text) => post({ t: 'log', level, text }));
  const control = new Int32Array(init.control);
  const statValues = new Float64Array(init.stats);
  const core = await Core.create(init.wasmPath !== undefined ? { wasmPath: init.wasmPath } : {});
  const poller = new FdPoller();
  const files = init.sharedFiles !== null ? new SharedFiles(init.sharedFiles) : null;
  const server = new ThreadRequestServer(core, init.queue, files, init.maxWrite, control,
    new SharedOpCounters(init.opCounters, SERVED_ON_THREAD));
  let engine: LocalQueue;
  const mirror = (): void => {
    const s = engine.stats;
    for (let i = 0; i < STAT_KEYS.length; i++) statValues[i] = s[STAT_KEYS[i]!];
    Atomics.store(control, CTL_HALTED, engine.halted ? 1 : 0);
  };
  engine = new LocalQueue(core, server, init.queue, poller, {
    batch: init.batch, pollUs: init.pollUs, batchWindowUs: init.batchWindowUs, afterRun: mirror,
  });
  const calls: Record<string, (...a: never[]) => number | void> = {
    mapGuestRegions: (regions: Parameters<Core['mapGuestRegions']>[0]) => core.mapGuestRegions(regions),
    unmapGuestRegions: () => core.unmapGuestRegions(),
    ringReset: () => engine.ringReset(),
    ringSetNum: (num: number) => engine.ringSetNum(num),
    ringSetAddr: (d: bigint, u: bigint, a: bigint) => engine.ringSetAddr(d, u, a),
    ringSetBase: (b: number) => engine.ringSetBase(b),
    ringGetBase: () => engine.ringGetBase(),
    ringSetFeatures: (e: boolean, i: boolean) => engine.ringSetFeatures(e, i),
    setKick: (fd: number) => engine.setKick(fd),
    setCall: (fd: number) => engine.setCall(fd),
    setErr: (fd: number) => engine.setErr(fd),
    setRunnable: (on: boolean) => engine.setRunnable(on),
    reset: () => engine.reset(),
    stopped: () => engine.stopped(),
    close: () => engine.close(),
  };
  port.on('message', (m: ToThread) => {
    if (m.t === 'reply') {
      server.replied(m);
      mirror();
      return;
    }
    let result = 0;
    try {
      const r = calls[m.op]!(...(m.args as never[]));
      if (typeof r === 'number') result = r;
    } catch (err) {
      post({ t: 'log', level: 'warn', text: `${m.op}: ${(err as Error).message}` });
      result = -E.EINVAL;
    }
    mirror();
    Atomics.store(control, CTL_RESULT, result);
    Atomics.store(control, CTL_DONE, m.seq);
    Atomics.notify(control, CTL_DONE);
  });
  post({ t: 'ready' });
}

main().catch((err: unknown) => post({ t: 'failed', message: (err as Error)?.stack ?? String(err) }));

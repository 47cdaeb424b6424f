/**
 * Request queues served in parallel (--queue-threads): each request queue on a worker thread of its own
 * (queue-thread-worker.ts), with its own core instance that maps the guest's memory itself, its own kick and call
 * eventfds and its own serving loop (a LocalQueue there). The hiprio queue, the vhost-user socket and everything
 * that touches the inode table stay on the main thread.
 *
 *   guest --kick--> thread q: pop, READ/WRITE of a shared open file: preadv/pwritev into guest memory, reply
 *                             anything else: park the chain, post the request's bytes ------------+
 *   main thread: ForwardedRequests  linearPop -> FuseServer.serveCurrent -> reply bytes ----------+
 *                thread q: resume the parked chain, write the reply, used ring, call  <-----------+
 *
 * The main thread serves a forwarded request exactly as it serves /dev/fuse (the core's linear requests), so every
 * FileSystem works on threads unchanged; a PassthroughFs also shares its open files (host/passthrough/
 * shared-files.ts), so the data path never leaves the thread.
 *
 * Control: the vhost-user backend calls a QueueThread as it calls a LocalQueue (QueueEngine), synchronously: a
 * message to the thread, then Atomics.wait on a shared word until the thread has done it between two runs of its
 * queue (a thread stuck in a syscall on a hung filesystem holds the caller until it returns, as the C virtiofsd's
 * queue threads do). The thread's counters are mirrored into shared memory after each run; the READs and WRITEs
 * it serves itself are recorded there too (SharedOpCounters), in the server's per-operation stats.
 */
import { Worker } from 'node:worker_threads';
import { log, logLevel, type LogLevel } from '../log.js';
import { LINEAR_QUEUE, POP_REQUEST, type Core, type GuestRegion } from '../core.js';
import type { FuseServer } from '../fuse/server.js';
import * as P from '../fuse/protocol.js';
import { SharedOpCounters } from '../fuse/op-stats.js';
import { SHARED_LIVE, type SharedFiles } from '../passthrough/shared-files.js';
import type { QueueThreadEngine } from '../vhost-user/backend.js';
import type { ParkedRequest, QueueStats, ReplyParking } from './queue-processor.js';

/** Control words (Int32Array over a SharedArrayBuffer). */
export const CTL_DONE = 0; // sequence number of the last call the thread finished
export const CTL_RESULT = 1; // its result
export const CTL_HALTED = 2; // the queue halted (ring broken)
export const CTL_SERVED_HERE = 3; // READ/WRITE served on the thread (mod 2^32)
export const CTL_WORDS = 4;
/** QueueStats in the order they are mirrored (Float64Array over a SharedArrayBuffer). */
export const STAT_KEYS: readonly (keyof QueueStats)[] = ['served', 'badChains', 'badMessages', 'serverExceptions',
  'notifications', 'kicks', 'pollHits', 'pollMisses', 'pollSkips', 'windowHits', 'windowServed', 'windowMisses'];
/** The operations a thread serves itself (its SharedOpCounters rows). */
export const SERVED_ON_THREAD: readonly number[] = [P.FUSE_READ, P.FUSE_WRITE];
/** How long a control call waits for the thread before it is reported (and waited for again). */
const CALL_REPORT_MS = 5000;

/** What the worker is started with (workerData). */
export interface QueueThreadInit {
  queue: number;
  control: SharedArrayBuffer;
  stats: SharedArrayBuffer;
  /** SharedOpCounters of SERVED_ON_THREAD. */
  opCounters: SharedArrayBuffer;
  sharedFiles: SharedArrayBuffer | null;
  maxWrite: number;
  batch?: number;
  pollUs?: number;
  batchWindowUs?: number;
  wasmPath?: string;
  logLevel: LogLevel;
}

/** Thread -> main: a request to serve here, or a log line, or started. */
export type FromThread =
  | { t: 'ready' }
  | { t: 'failed'; message: string }
  | { t: 'log'; level: Exclude<LogLevel, 'off'>; text: string }
  | ForwardedRequest;

/** A request of queue `queue` (its chain parked under `head` in the thread), as /dev/fuse bytes. */
export interface ForwardedRequest {
  t: 'req';
  queue: number;
  head: number;
  unique: bigint;
  /** The thread's epoch when it parked the chain: a reply of an older epoch belongs to a ring that is gone. */
  epoch: number;
  opcode: number;
  /** FORGET, BATCH_FORGET, INTERRUPT: the thread has returned the chain already. */
  noReply: boolean;
  bytes: ArrayBuffer;
}

/** Main -> thread: a control call, or the reply to a forwarded request (out header + body). */
export type ToThread =
  | { t: 'call'; seq: number; op: string; args: unknown[] }
  | { t: 'reply'; head: number; unique: bigint; epoch: number; opcode: number; bytes: ArrayBuffer };

export interface QueueThreadOptions {
  queue: number;
  /** Requests per run, polling window and batch window, as for a LocalQueue. */
  batch?: number;
  pollUs?: number;
  batchWindowUs?: number;
  /** The FUSE server's max_write (a larger WRITE is handed to the main thread, which refuses it). */
  maxWrite: number;
  /** Tests: another build of the core. */
  wasmPath?: string;
}

export class QueueThread implements QueueThreadEngine {
  private readonly control: Int32Array;
  private readonly statValues: Float64Array;
  private seq = 0;
  private exited = false;
  private terminating = false;

  private constructor(private readonly worker: Worker, readonly queue: number, control: SharedArrayBuffer,
    stats: SharedArrayBuffer) {
    this.control = new Int32Array(control);
    this.statValues = new Float64Array(stats);
  }

  /** Starts the thread of request queue `options.queue`; resolves once its core and poller are up. */
  static start(options: QueueThreadOptions, forwarded: ForwardedRequests): Promise<QueueThread> {
    const control = new SharedArrayBuffer(CTL_WORDS * 4);
    const stats = new SharedArrayBuffer(STAT_KEYS.length * 8);
    const opCounters = SharedOpCounters.create(SERVED_ON_THREAD);
    const init: QueueThreadInit = {
      queue: options.queue, control, stats, opCounters: opCounters.buffer,
      sharedFiles: forwarded.sharedFiles?.buffer ?? null,
      maxWrite: options.maxWrite, batch: options.batch, pollUs: options.pollUs, batchWindowUs: options.batchWindowUs,
      wasmPath: options.wasmPath, logLevel: logLevel(),
    };
    const worker = new Worker(new URL('./queue-thread-worker.js', import.meta.url), { workerData: init });
    const thread = new QueueThread(worker, options.queue, control, stats);
    forwarded.add(thread, opCounters);
    return new Promise((resolve, reject) => {
      worker.on('message', (m: FromThread) => {
        if (m.t === 'req') forwarded.serve(thread, m);
        else if (m.t === 'log') log[m.level](`queue thread ${options.queue}: ${m.text}`);
        else if (m.t === 'ready') {
          // From now on the daemon's own handles decide when the process ends (while starting, the thread is what
          // keeps the event loop of a runtime like Deno turning).
          worker.unref();
          resolve(thread);
        }
        else reject(new Error(`queue thread ${options.queue}: ${m.message}`));
      });
      worker.on('error', (err) => {
        log.error(`queue thread ${options.queue} failed:`, err);
        reject(err);
      });
      worker.on('exit', (code) => {
        thread.exited = true;
        if (!thread.terminating) log.error(`queue thread ${options.queue} exited (${code})`);
        reject(new Error(`queue thread ${options.queue} exited (${code}) before it started`));
      });
    });
  }

  /** Ends the thread (the daemon stops). */
  async terminate(): Promise<void> {
    this.terminating = true;
    if (!this.exited) await this.worker.terminate();
  }

  /** READ and WRITE requests the thread served itself (its other requests came to the main thread). */
  get servedHere(): number {
    return Atomics.load(this.control, CTL_SERVED_HERE) >>> 0;
  }

  get stats(): QueueStats & { servedOnThread: number } {
    const s = { servedOnThread: this.servedHere } as QueueStats & { servedOnThread: number };
    STAT_KEYS.forEach((k, i) => { s[k] = this.statValues[i]!; });
    return s;
  }

  get halted(): boolean {
    return Atomics.load(this.control, CTL_HALTED) !== 0;
  }

  mapGuestRegions(regions: GuestRegion[]): void {
    if (this.call('mapGuestRegions', regions) < 0) {
      throw new Error(`queue thread ${this.queue} could not map the memory table (its log line says why)`);
    }
  }

  unmapGuestRegions(): void { this.call('unmapGuestRegions'); }
  ringReset(): void { this.call('ringReset'); }
  ringSetNum(num: number): number { return this.call('ringSetNum', num); }
  ringSetAddr(desc: bigint, used: bigint, avail: bigint): number { return this.call('ringSetAddr', desc, used, avail); }
  ringSetBase(lastAvailIdx: number): void { this.call('ringSetBase', lastAvailIdx); }
  ringGetBase(): number { return this.call('ringGetBase'); }
  ringSetFeatures(eventIdx: boolean, indirect: boolean): void { this.call('ringSetFeatures', eventIdx, indirect); }

  setKick(fd: number): void {
    const r = this.call('setKick', fd);
    if (r < 0) throw new Error(`queue thread ${this.queue}: kick fd ${fd} cannot be polled (${r})`);
  }

  setCall(fd: number): void { this.call('setCall', fd); }
  setErr(fd: number): void { this.call('setErr', fd); }
  setRunnable(on: boolean): void { this.call('setRunnable', on); }
  reset(): void { this.call('reset'); }
  stopped(): void { this.call('stopped'); }
  /** The connection is done with the queue: the thread stays, for the next one. */
  close(): void { this.call('close'); }

  /** The reply to a forwarded request. */
  reply(m: Extract<ToThread, { t: 'reply' }>): void {
    if (!this.exited) this.worker.postMessage(m, [m.bytes]);
  }

  /** Runs `op` on the thread between two runs of its queue and waits for its result. */
  private call(op: string, ...args: unknown[]): number {
    if (this.exited) return -5; // EIO: the thread is gone (its exit was logged)
    const seq = ++this.seq;
    this.worker.postMessage({ t: 'call', seq, op, args } satisfies ToThread);
    let done: number;
    while ((done = Atomics.load(this.control, CTL_DONE)) !== seq) {
      if (Atomics.wait(this.control, CTL_DONE, done, CALL_REPORT_MS) === 'timed-out') {
        log.warn(`queue thread ${this.queue}: ${op} waits for the thread (in a syscall for ${CALL_REPORT_MS} ms?)`);
      }
    }
    return Atomics.load(this.control, CTL_RESULT);
  }
}

/** A forwarded request parked on the main thread (a SETLKW waiting, a pooled FSYNC...). */
interface ForwardedParked extends ParkedRequest {
  readonly epoch: number;
  readonly opcode: number;
}

/**
 * The main thread's side of forwarding: serves the threads' requests with linearPop on the main core (the same
 * FuseServer as every other request) and posts each reply back to the thread it came from. It is the server's
 * parking for linear requests: a request that goes asynchronous here is answered to its thread later.
 */
export class ForwardedRequests implements ReplyParking {
  private readonly threads = new Map<number, QueueThread>();
  private current: ForwardedRequest | null = null;
  private parkedCurrent = false;
  private readonly header = new DataView(new ArrayBuffer(P.OUT_HEADER.SIZE));

  /** @param sharedFiles the FileSystem's open files, when it shares them with the threads. */
  constructor(private readonly core: Core, private readonly server: FuseServer,
    readonly sharedFiles: SharedFiles | null) {
    server.attachParking(LINEAR_QUEUE, this);
  }

  /** A thread to answer, and the counters of what it serves itself (in the server's stats from now on). */
  add(thread: QueueThread, opCounters: SharedOpCounters): void {
    this.threads.set(thread.queue, thread);
    this.server.stats.include(opCounters);
  }

  /** Serves one forwarded request now and sends its reply (unless it was parked or needs none). */
  serve(from: QueueThread, m: ForwardedRequest): void {
    const c = this.core;
    const n = m.bytes.byteLength;
    let r = -1;
    if (n <= c.linearBufSize) {
      c.bytes().set(new Uint8Array(m.bytes), c.linearInPtr);
      r = c.linearPop(c.linearInPtr, n, c.linearOutPtr, c.linearBufSize);
    }
    this.current = m;
    this.parkedCurrent = false;
    if (r === POP_REQUEST) this.server.serveCurrent();
    this.current = null;
    // INIT and DESTROY come this way: the threads serve READ and WRITE only while a session is up.
    this.sharedFiles?.setFlag(SHARED_LIVE, this.server.initialized);
    if (m.noReply || this.parkedCurrent) return;
    const len = c.linearReplyLen();
    if (len >= P.OUT_HEADER.SIZE) this.send(from, m, c.memoryBuffer().slice(c.linearOutPtr, c.linearOutPtr + len));
    else this.send(from, m, this.headerOnly(m.unique, -5)); // EIO: the main core refused the bytes
  }

  /** ReplyParking: the current forwarded request stays unanswered; its thread keeps its chain parked. */
  park(): ParkedRequest {
    const m = this.current!;
    this.core.requestPark();
    this.parkedCurrent = true;
    const p: ForwardedParked = { queue: m.queue, head: m.head, unique: m.unique, epoch: m.epoch, opcode: m.opcode };
    return p;
  }

  answer(p: ParkedRequest, error: number): void {
    const t = this.threads.get(p.queue);
    if (t !== undefined) this.send(t, p as ForwardedParked, this.headerOnly(p.unique, error));
  }

  resume(p: ParkedRequest, opcode: number): number {
    const c = this.core;
    return c.linearResume(c.linearOutPtr, c.linearBufSize, p.unique, opcode);
  }

  delivered(p: ParkedRequest): void {
    const c = this.core;
    const t = this.threads.get(p.queue);
    const len = c.linearReplyLen();
    if (t === undefined || len < P.OUT_HEADER.SIZE) return;
    this.send(t, p as ForwardedParked, c.memoryBuffer().slice(c.linearOutPtr, c.linearOutPtr + len));
  }

  /** The reply to a request as its thread parked it (a forwarded request, or one parked here since). */
  private send(t: QueueThread, r: Pick<ForwardedRequest, 'head' | 'unique' | 'epoch' | 'opcode'>,
    bytes: ArrayBuffer): void {
    t.reply({ t: 'reply', head: r.head, unique: r.unique, epoch: r.epoch, opcode: r.opcode, bytes });
  }

  private headerOnly(unique: bigint, error: number): ArrayBuffer {
    P.encodeOutHeader(this.header, error, unique);
    return this.header.buffer.slice(0);
  }
}

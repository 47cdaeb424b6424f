/**
 * A virtqueue served on the thread that owns the core: its ring configured in that core, its kick eventfd on
 * that thread's poller, its QueueProcessor run on a kick, on a batch window's timer, or again on the next turn of
 * the event loop when a run asks for more. The vhost-user backend (host/vhost-user/backend.ts) drives one per
 * queue through the QueueEngine interface, which a queue thread (host/virtio/queue-thread.ts) implements too:
 * inside the thread, a LocalQueue over the thread's own core is what its messages drive.
 */
import { native } from '../native-loader.js';
import { log } from '../log.js';
import type { FdPoller } from '../vhost-user/fd-poller.js';
import {
  QueueProcessor, type QueueCore, type QueueProcessorOptions, type QueueStats, type RequestServer,
} from './queue-processor.js';

/** The core's per-queue ring state (host/core.ts `Core` has it). */
export interface RingCore extends QueueCore {
  queueReset(q: number): void;
  queueSetNum(q: number, num: number): number;
  queueSetAddr(q: number, descUva: bigint, usedUva: bigint, availUva: bigint): number;
  queueSetBase(q: number, lastAvailIdx: number): void;
  queueGetBase(q: number): number;
  queueSetFeatures(q: number, eventIdx: boolean, indirect: boolean): void;
}

/** What the vhost-user backend asks of a queue, wherever it is served. The fds are lent, never closed here. */
export interface QueueEngine {
  readonly stats: QueueStats;
  readonly halted: boolean;
  ringReset(): void;
  /** 0 or -errno (a size the core refuses). */
  ringSetNum(num: number): number;
  /** 0 or -errno (addresses outside guest memory). */
  ringSetAddr(desc: bigint, used: bigint, avail: bigint): number;
  ringSetBase(lastAvailIdx: number): void;
  ringGetBase(): number;
  ringSetFeatures(eventIdx: boolean, indirect: boolean): void;
  /** Watches `fd` for kicks instead of the previous one (-1: none). Throws when it cannot be watched. */
  setKick(fd: number): void;
  setCall(fd: number): void;
  setErr(fd: number): void;
  /** Started, enabled, with rings and memory: requests are served while on; turning on looks at the ring once. */
  setRunnable(on: boolean): void;
  /** The ring was reconfigured (a new kick): forget the halt and what was parked on the old ring. */
  reset(): void;
  /** The ring stopped (GET_VRING_BASE, RESET_DEVICE, disconnect). */
  stopped(): void;
  /** The connection is done with the queue: kicks unwatched, timer freed (a new connection sets it up again). */
  close(): void;
}

export interface LocalQueueOptions extends Omit<QueueProcessorOptions, 'armWindow'> {
  /** After each run of the processor (a queue thread mirrors its counters from here). */
  afterRun?: () => void;
}

export class LocalQueue implements QueueEngine {
  readonly processor: QueueProcessor;
  private kickToken = 0;
  private runnable = false;
  /** A continuation run is queued with setImmediate. */
  private scheduled = false;
  /** The timerfd that ends batch windows (made at the first window; -2: none could be), and its token. */
  private windowTimer = -1;
  private windowToken = 0;
  private readonly afterRun: (() => void) | undefined;

  constructor(private readonly core: RingCore, server: RequestServer, readonly queue: number,
    private readonly poller: FdPoller, options: LocalQueueOptions = {}) {
    this.processor = new QueueProcessor(core, server, queue, { ...options, armWindow: (us) => this.armWindow(us) });
    this.afterRun = options.afterRun;
    core.queueReset(queue);
  }

  get stats(): QueueStats {
    return this.processor.stats;
  }

  get halted(): boolean {
    return this.processor.halted;
  }

  ringReset(): void { this.core.queueReset(this.queue); }
  ringSetNum(num: number): number { return this.core.queueSetNum(this.queue, num); }
  ringSetAddr(desc: bigint, used: bigint, avail: bigint): number {
    return this.core.queueSetAddr(this.queue, desc, used, avail);
  }
  ringSetBase(lastAvailIdx: number): void { this.core.queueSetBase(this.queue, lastAvailIdx); }
  ringGetBase(): number { return this.core.queueGetBase(this.queue); }
  ringSetFeatures(eventIdx: boolean, indirect: boolean): void {
    this.core.queueSetFeatures(this.queue, eventIdx, indirect);
  }

  setKick(fd: number): void {
    if (this.kickToken !== 0) this.poller.remove(this.kickToken);
    this.kickToken = 0;
    if (fd < 0) return;
    native.setNonblocking(fd, true); // a kick handler must never block the thread, whatever fd we were sent
    this.kickToken = this.poller.addEventfd(fd, () => this.onKick());
  }

  setCall(fd: number): void { this.processor.callFd = fd; }
  setErr(fd: number): void { this.processor.errFd = fd; }

  setRunnable(on: boolean): void {
    this.runnable = on;
    if (on) this.schedule();
  }

  reset(): void { this.processor.reset(); }

  stopped(): void {
    this.processor.stopped();
    if (this.windowTimer >= 0) native.timerfdArm(this.windowTimer, 0);
  }

  close(): void {
    this.runnable = false;
    this.setKick(-1);
    if (this.windowTimer >= 0) {
      this.poller.remove(this.windowToken);
      native.close(this.windowTimer);
    }
    this.windowTimer = -1;
  }

  private onKick(): void {
    // A window its burst ended needs no timer any more (a late one would only cost a wake-up).
    if (this.processor.kicked() && this.windowTimer >= 0) native.timerfdArm(this.windowTimer, 0);
    this.run(); // the poller drains and re-arms where its backend needs it (addEventfd)
  }

  /**
   * The processor waits for a deep driver's next burst with kicks off: the queue runs again when the window's timer
   * fires. Without a timer (it could not be made) the window ends at once.
   */
  private armWindow(us: number): void {
    if (this.windowTimer === -1) {
      const fd = native.timerfdCreate();
      if (fd >= 0) {
        this.windowTimer = fd;
        this.windowToken = this.poller.addEventfd(fd, () => this.onWindowEnd());
      } else {
        this.windowTimer = -2; // not asked again: each window of this queue ends at once
        log.warn(`queue ${this.queue}: no timer for batch windows: ${native.strerror(-fd)}`);
      }
    }
    if (this.windowTimer < 0 || native.timerfdArm(this.windowTimer, us) < 0) {
      this.processor.windowEnded();
      this.schedule();
    }
  }

  private onWindowEnd(): void {
    this.processor.windowEnded();
    this.run();
  }

  private run(): void {
    if (!this.runnable) return;
    let more: boolean;
    try {
      more = this.processor.run();
    } catch (err) {
      // The core trapped (internal corruption, never guest input): stop this queue, keep the daemon.
      this.processor.halted = true;
      log.error(`queue ${this.queue} halted after an internal error:`, err);
      return;
    }
    this.afterRun?.();
    if (more) this.schedule();
  }

  /** Runs the queue on the next turn of the event loop (after the current control message is finished). */
  private schedule(): void {
    if (this.scheduled || !this.runnable) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.run();
    });
  }
}

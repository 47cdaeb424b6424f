/**
 * Drains one virtqueue through the core on a kick:
 *
 * ```
 * kick -> loop core.queuePop(q):  1 -> server.serveCurrent()   (the server completes the request)
 *                                -1 -> bad chain   (core returned it with len 0)   count, rate-limited warn
 *                                -2 -> bad message (core already replied -EINVAL)  count, rate-limited debug
 *                                -3 -> ring broken: halt, log error, signal the err eventfd
 *                                 0 -> empty: stop (the core published avail_event: the next buffer kicks)
 *      after each completion (1, -1, -2): if core.queueNeedsNotify(q): eventfdWrite(callFd, 1)
 * ```
 *
 * The call decision follows every completion, not the end of the batch: the driver re-arms (EVENT_IDX used_event)
 * once it has taken what it was told about, so it hears of the next completion at once and refills the ring while
 * the rest of the batch is served, instead of waiting for the whole batch and leaving this side idle while it
 * refills. A driver that has not re-armed costs one Wasm call per request and no syscall. (GETATTR at depth 16
 * through the standalone frontend: 150k -> 200k requests/s.)
 *
 * With `pollUs` > 0 (adaptive polling) a drained ring is watched for up to pollUs µs before the processor goes
 * back to waiting for a kick, with kicks off meanwhile (the core leaves avail_event behind, or sets
 * VIRTQ_USED_F_NO_NOTIFY): a request that arrives within the window costs no kick, no wake-up and no eventfd
 * syscall on either side. Pops are preceded by `queueAvailPending` so an empty pop never re-arms kicks by itself;
 * when the window passes empty, kicks go on again and the ring is looked at once more (a buffer made available
 * just before would otherwise wait for a kick that never comes).
 *
 * Windows that keep passing empty stop paying for themselves: while fewer than a quarter of the recent ones
 * found a request (an average over about 8), a drained batch waits for a kick as without polling, and one in 16
 * still polls to notice a driver that has become faster (a guest's deep queue after its synchronous I/O).
 *
 * Coalescing (EVENT_IDX): the call for a completion the driver waits on is held back until half of the driver's
 * depth is done and unseen, so a deep driver takes several completions per interrupt while the other half keeps it
 * busy. The depth is the most chains the driver had outstanding past its used_event, over the last 256 to 512
 * requests; a driver of depth 3 or less is told at once. What is held is released when the ring is found empty
 * (without polling or a batch window), when a window of either kind passes empty, when a hold is twice the window
 * old, and when kicks go on again or the ring stops: a driver that has nothing left to submit is kept waiting for
 * it at most one window. (virtio-net's VIRTIO_NET_F_NOTF_COAL is the same idea with driver-set limits. The 6.1
 * guest under TCG, fio libaio QD16, --poll-us=50: 0.46-0.57 -> 0.20-0.23 calls per request.)
 *
 * Batch windows (`batchWindowUs`, with a timer the owner arms: `armWindow`): a deep driver's requests come in
 * bursts (it gets several completions per interrupt, above, and resubmits as many), and under TCG each kick costs
 * the guest an exit. So once the ring of a driver with 4 or more requests in flight is drained, the processor
 * sleeps (run() returns false; no CPU is spent, unlike polling) with kicks off until half the driver's depth has
 * come (EVENT_IDX avail_event that far ahead, `queueKickAfter`: one kick for the whole burst) or the timer ends
 * the window; the burst is served in one wake-up. A driver quicker than the window (the standalone frontend)
 * then does not wait for the timer. A window that passes empty releases what is held and turns
 * kicks on again. Windows back off as polling windows do; one after which the driver kept the ring filling for
 * twice its depth counts as unpaid (that driver is as fast as we are: it was waiting for our window). A driver of
 * depth 3 or less never gets one (its next request usually waits for our reply).
 *
 * Fairness: one run() serves at most `batch` requests and spins at most once; when the spin found work, run()
 * asks to be called again (returns true) instead of spinning again, so the caller yields to the event loop
 * (other queues, the vhost-user socket, timers) between windows. The loop is held for at most pollUs per run.
 *
 * The loop allocates nothing: numbers in, numbers out. Processing is synchronous; the core holds one current
 * request at a time.
 */

import { native } from '../native-loader.js';
import { log } from '../log.js';
import { POP_BAD_CHAIN, POP_BAD_MESSAGE, POP_EMPTY, POP_REQUEST, POP_RING_BROKEN } from '../core.js';

/** A request the server answers later (a SETLKW waiting for its lock): what it takes to answer it. */
export interface ParkedRequest {
  readonly queue: number;
  readonly head: number;
  readonly unique: bigint;
}

/**
 * How a transport lets the server answer a request after serveCurrent returned: `park` detaches the current
 * request (it stays unanswered), `answer` sends it a header-only reply later, from outside serveCurrent.
 */
export interface ReplyParking {
  park(): ParkedRequest;
  answer(p: ParkedRequest, error: number): void;
  /**
   * Makes a parked request current again for a full reply (body and payload through the usual encoders and
   * replySend), from outside serveCurrent: 1, -EBUSY (another request is current), or -EINVAL (gone).
   */
  resume?(p: ParkedRequest, opcode: number): number;
  /** After a resumed request was completed: deliver the reply (the call eventfd, or a write to /dev/fuse). */
  delivered?(p: ParkedRequest): void;
}

/** What the processor needs from the FUSE server (tests pass a stub). */
export interface RequestServer {
  /** Handles the request the core just popped and completes it (replySend or replyNone). Must not throw. */
  serveCurrent(): void;
  /** Offers parking for requests of `queue` (servers that never defer a reply leave it out). */
  attachParking?(queue: number, parking: ReplyParking): void;
  /** The queue stopped or was reset: its parked requests belong to a ring that is gone; forget them unanswered. */
  dropParked?(queue: number): void;
}

/** What the processor needs from the core (`host/core.ts` `Core` satisfies it). */
export interface QueueCore {
  queuePop(q: number): number;
  queueNeedsNotify(q: number): boolean;
  /** Polling only: available chains not popped yet, without re-arming kicks. */
  queueAvailPending?(q: number): number;
  /** Polling only: kicks off, or on again (then: chains pending after re-arming). */
  queueSetKicks?(q: number, on: boolean): number;
  /** Batch windows: kicks off until n more chains are available, then one (EVENT_IDX); the chains pending now. */
  queueKickAfter?(q: number, n: number): number;
  /** Coalescing only: the driver's lag behind its used_event, in chains made available or used elements pushed. */
  queueDriverLag?(q: number, used: boolean): number;
  replySend(error: number, bodyLen: number, payloadLen: number): number;
  reqUnique?(): bigint;
  requestPark?(): number;
  queueReplyParked?(q: number, head: number, unique: bigint, error: number): number;
  requestResume?(q: number, head: number, unique: bigint, opcode: number): number;
}

export interface QueueStats {
  /** Requests handed to the server. */
  served: number;
  /** Chains the core rejected (returned with used len 0). */
  badChains: number;
  /** Requests the core answered -EINVAL itself. */
  badMessages: number;
  /** Exceptions thrown by the server (bugs); each request was completed with -EIO. */
  serverExceptions: number;
  /** Call eventfd writes. */
  notifications: number;
  /** Kicks that woke the processor (the backend counts them; several kicks between two wake-ups count once). */
  kicks: number;
  /** Polling windows that saw a request arrive (each saved a kick and a wake-up). */
  pollHits: number;
  /** Polling windows that passed empty (kicks went on again). */
  pollMisses: number;
  /** Drained batches that did not poll because recent windows had mostly passed empty (see POLL_HIT_FLOOR). */
  pollSkips: number;
  /** Batch windows whose timer found requests waiting (each served a burst with no kick). */
  windowHits: number;
  /** Requests those windows served when their timer fired (the bursts' sizes, summed). */
  windowServed: number;
  /** Batch windows that passed empty (kicks went on again). */
  windowMisses: number;
}

export interface QueueProcessorOptions {
  /** Requests per run() before yielding to the event loop (other queues, the control socket). Default 256. */
  batch?: number;
  /** Adaptive polling window in µs after a drained batch (0: off, wait for kicks). Default 0. */
  pollUs?: number;
  /** Batch window in µs for a deep driver's drained ring (0: off). Used only with `armWindow`. Default 0. */
  batchWindowUs?: number;
  /**
   * Arms the owner's timer for a batch window: when it fires, the owner calls `windowEnded()` and then `run()`.
   * Without it there are no batch windows.
   */
  armWindow?: (us: number) => void;
}

const WARN_INTERVAL_MS = 1000;
/**
 * A polling window pays when a request arrives inside it. While less than this share of recent windows did, a
 * drained batch waits for a kick instead (a guest whose next request comes long after our reply: synchronous I/O
 * under TCG, where the spinning would only take a core from the vCPU thread).
 */
const POLL_HIT_FLOOR = 0.25;
/** Weight of the newest window in that share (an exponential moving average over about 8 windows). */
const POLL_SHARE_WEIGHT = 1 / 8;
/** Backed off, one drained batch in this many still polls, so a driver that speeds up is noticed. */
const POLL_PROBE_EVERY = 16;
/** Looks at avail.idx between two clock readings while polling. */
const SPIN_PEEKS = 32;
/** native.clockUs() wraps at 2^30 µs. */
const CLOCK_US_MASK = 0x3fffffff;
const EIO = 5;
/** Depth samples (one per pop) per epoch: the estimate forgets a deeper past after one to two epochs. */
const DEPTH_EPOCH = 256;
/** The batch window of the CLI and the daemon unless told otherwise (µs). */
export const DEFAULT_BATCH_WINDOW_US = 50;
/** A driver with at least this many requests in flight is deep: its calls are coalesced, its bursts windowed. */
const DEEP_DRIVER = 4;

/** Whether windows of one kind pay: the share of recent ones that did, and the probe while backed off. */
class WindowPayoff {
  /** Starts at 1: windows are tried first. */
  private share = 1;
  /** Drained batches without a window while backed off. */
  private sinceProbe = 0;

  record(paid: boolean): void {
    this.share += ((paid ? 1 : 0) - this.share) * POLL_SHARE_WEIGHT;
  }

  /** While windows pay, or one drained batch in POLL_PROBE_EVERY when backed off. */
  due(): boolean {
    if (this.share >= POLL_HIT_FLOOR) return true;
    if (++this.sinceProbe < POLL_PROBE_EVERY) return false;
    this.sinceProbe = 0;
    return true;
  }
}

export class QueueProcessor implements ReplyParking {
  /** Call eventfd (-1: none; the frontend polls). Not owned: the backend closes it. */
  callFd = -1;
  /** Error eventfd (-1: none). Not owned. */
  errFd = -1;
  /** Set on POP_RING_BROKEN; cleared by reset(). While halted, run() does nothing. */
  halted = false;
  readonly stats: QueueStats = {
    served: 0, badChains: 0, badMessages: 0, serverExceptions: 0, notifications: 0, kicks: 0,
    pollHits: 0, pollMisses: 0, pollSkips: 0, windowHits: 0, windowServed: 0, windowMisses: 0,
  };

  private readonly batch: number;
  /** Polling window in µs; 0 = off. */
  private readonly pollUs: number;
  /** Kicks are off because this processor is polling (must go on again before it stops watching). */
  private kicksOff = false;
  /** Whether polling windows find requests. */
  private readonly pollPayoff = new WindowPayoff();
  private lastWarn = 0;
  /** Batch window length in µs; 0 = no windows. */
  private readonly windowUs: number;
  private readonly armWindow: ((us: number) => void) | undefined;
  /** Whether run() looks at the ring without popping (polling or windows): else an empty pop re-arms kicks. */
  private readonly peeking: boolean;
  /** A batch window is armed (kicks off until it ends). */
  private windowOpen = false;
  /** The window's timer fired: the next run() tells whether it paid. */
  private windowDone = false;
  /** Whether batch windows gather bursts. */
  private readonly windowPayoff = new WindowPayoff();
  /** Coalescing calls: the core reports the driver's lag (always 0 without EVENT_IDX: nothing is held then). */
  private readonly coalesce: boolean;
  /** A completion's notification is held back since this clockUs() reading (-1: none held). */
  private heldSince = -1;
  /** The driver's depth: the most chains it had outstanding in the last two epochs of DEPTH_EPOCH samples. */
  private depthPeak = 0;
  private depthPrevPeak = 0;
  private depthSamples = 0;
  private suppressed = 0;

  constructor(
    private readonly core: QueueCore,
    private readonly server: RequestServer,
    readonly queue: number,
    options: QueueProcessorOptions = {},
  ) {
    this.batch = options.batch ?? 256;
    const pollUs = options.pollUs ?? 0;
    if (!Number.isFinite(pollUs) || pollUs < 0) throw new RangeError(`pollUs must be >= 0, got ${pollUs}`);
    const canPoll = core.queueAvailPending !== undefined && core.queueSetKicks !== undefined;
    this.pollUs = canPoll ? Math.min(Math.round(pollUs), CLOCK_US_MASK >> 1) : 0;
    this.coalesce = core.queueDriverLag !== undefined;
    const windowUs = options.batchWindowUs ?? 0;
    if (!Number.isFinite(windowUs) || windowUs < 0) throw new RangeError(`batchWindowUs must be >= 0, got ${windowUs}`);
    const canWindow = canPoll && this.coalesce && options.armWindow !== undefined;
    this.windowUs = canWindow ? Math.min(Math.round(windowUs), CLOCK_US_MASK >> 1) : 0;
    this.armWindow = this.windowUs > 0 ? options.armWindow : undefined;
    this.peeking = this.pollUs > 0 || this.windowUs > 0;
    if (core.requestPark !== undefined && core.queueReplyParked !== undefined && core.reqUnique !== undefined) {
      server.attachParking?.(queue, this);
    }
  }

  /** Clears the halt (after the ring was reconfigured) and forgets parked requests. Stats are kept. */
  reset(): void {
    this.halted = false;
    this.kicksOff = false; // a reconfigured ring starts with kicks on (the driver initialises its rings)
    this.heldSince = -1; // and owes its driver nothing
    this.windowOpen = this.windowDone = false;
    this.depthPeak = this.depthPrevPeak = this.depthSamples = 0;
    this.server.dropParked?.(this.queue);
  }

  /**
   * The ring stopped (GET_VRING_BASE, disconnect): requests parked on it will never be answered through it, and
   * a poll in progress ends with kicks on again, so the ring is not left silent for whoever drives it next.
   */
  stopped(): void {
    this.releaseHeld();
    this.kicksOn();
    this.windowOpen = this.windowDone = false;
    this.server.dropParked?.(this.queue);
  }

  /** The owner's timer for the batch window fired; the owner calls run() next. */
  windowEnded(): void {
    if (!this.windowOpen) return; // a window a kick or a reset already ended
    this.windowOpen = false;
    this.windowDone = true;
  }

  /**
   * A kick woke the queue: an open batch window ends here (its burst came whole, queueKickAfter). True when one
   * did, so the owner can disarm its timer.
   */
  kicked(): boolean {
    this.stats.kicks++;
    if (!this.windowOpen) return false;
    this.windowEnded();
    return true;
  }

  /** ReplyParking: detaches the request the core is serving (called from inside serveCurrent). */
  park(): ParkedRequest {
    const unique = this.core.reqUnique!();
    const head = this.core.requestPark!();
    return { queue: this.queue, head, unique };
  }

  /** ReplyParking: the parked request's header-only reply, into its chain again, then the call if one is due. */
  answer(p: ParkedRequest, error: number): void {
    if (this.halted || p.head < 0) return;
    const r = this.core.queueReplyParked!(p.queue, p.head, p.unique, error);
    if (r === -16 /* EBUSY */) throw new Error('queueReplyParked inside serveCurrent');
    this.notifyIfDue();
  }

  /** ReplyParking: the parked request current again (its chain re-walked), for a full reply. */
  resume(p: ParkedRequest, opcode: number): number {
    if (this.halted || p.head < 0 || this.core.requestResume === undefined) return -22; // EINVAL
    const r = this.core.requestResume(p.queue, p.head, p.unique, opcode);
    if (r !== 1 && r !== -16 /* EBUSY */) this.notifyIfDue(); // a malformed chain went back with len 0
    return r;
  }

  /** ReplyParking: the resumed request's used element was pushed; signal the call if due. */
  delivered(): void {
    this.notifyIfDue();
  }

  /** Signals the call eventfd when the driver wants to hear about the used elements pushed since the last time. */
  private notifyIfDue(): void {
    if (this.callFd >= 0 && this.core.queueNeedsNotify(this.queue)) {
      native.eventfdWrite(this.callFd, 1);
      this.stats.notifications++;
    }
  }

  /**
   * Processes available requests. Returns true when the caller should run it again soon (the batch was used up,
   * or a polling window found work: either way more may be waiting and kicks may be off), false when the ring
   * is empty with kicks on, when a batch window was armed (the owner's timer runs it again), or halted.
   */
  run(): boolean {
    if (this.halted) return false;
    const q = this.queue;
    const core = this.core;
    let budget = this.batch;
    if (!this.peeking) {
      if (this.drain(budget, -1) === 0 && !this.halted) return true; // more to serve: what is held can wait
      this.releaseHeld(); // the ring is empty: the driver waits for what we hold
      return false;
    }
    let windowEnded = this.windowDone;
    this.windowDone = false;
    let windowed = false; // a window passed empty in this run: no new one before kicks were on
    let spun = false;
    for (;;) {
      const before = budget;
      budget = this.drain(budget, core.queueAvailPending!(q));
      if (this.halted) return false; // kicks stay as they are: the ring is dead until reset
      if (windowEnded) {
        windowEnded = false;
        const hit = budget < before;
        // A window pays when it gathers a burst. A driver that kept the ring filling for twice its depth while we
        // served is as fast as we are: a kick costs it little, and it was waiting for our window (windows back off
        // as if empty, though this one found work).
        this.windowPayoff.record(hit && before - budget <= 2 * this.driverDepth());
        if (hit) {
          this.stats.windowHits++;
          this.stats.windowServed += before - budget;
        } else {
          this.stats.windowMisses++;
          windowed = true;
          if (this.armKicks() === 0) return false; // releases what is held: the driver waits for it
          continue;
        }
      }
      if (budget === 0 || spun) return true;
      if (!windowed && this.batchWindowDue()) {
        // One kick when the burst is whole (half the depth: what a coalesced call lets the driver resubmit), so a
        // driver quicker than the window does not wait for its timer; the timer ends a smaller burst.
        const burst = Math.max(1, this.driverDepth() >> 1);
        if (core.queueKickAfter !== undefined) {
          this.kicksOff = true;
          if (core.queueKickAfter(q, burst) >= burst) continue; // already here: serve it now
        } else if (!this.kicksOff) {
          core.queueSetKicks!(q, false);
          this.kicksOff = true;
        }
        // A hold as old as two windows goes out now (the burst being waited for may be smaller than half).
        this.releaseHeldOlderThan(this.windowUs * 2);
        this.windowOpen = true;
        this.armWindow!(this.windowUs);
        return false;
      }
      if (this.pollUs === 0) {
        // As without peeking: kicks on (avail_event at the ring's position), one more look.
        if (this.armKicks() === 0) return false;
        continue;
      }
      if (!this.pollPayoff.due()) {
        this.stats.pollSkips++;
        // As without polling: kicks on (avail_event at the ring's position, which peeking never published), one
        // more look.
        if (this.armKicks() === 0) return false;
        continue;
      }
      if (!this.kicksOff) {
        core.queueSetKicks!(q, false);
        this.kicksOff = true;
      }
      spun = true;
      const hit = this.spin();
      this.pollPayoff.record(hit);
      if (hit) { this.stats.pollHits++; continue; }
      this.stats.pollMisses++;
      if (this.kicksOn() === 0) return false;
    }
  }

  /**
   * Whether a drained ring gets a batch window: only a deep driver's, and while windows pay (or as the periodic
   * probe when backed off).
   */
  private batchWindowDue(): boolean {
    return this.windowUs > 0 && this.driverDepth() >= DEEP_DRIVER && this.windowPayoff.due();
  }

  /**
   * Pops and serves up to `budget` chains. `known` >= 0: that many are known to be available (polling: pops stop
   * at a peek of 0 instead of letting an empty pop re-arm kicks); -1: pop until empty. Returns what is left of
   * the budget; `halted` says whether the queue halted.
   */
  private drain(budget: number, known: number): number {
    const q = this.queue;
    const core = this.core;
    for (;;) {
      if (budget === 0) break;
      if (known === 0) {
        known = core.queueAvailPending!(q);
        if (known === 0) break;
      }
      budget--;
      if (known > 0) known--;
      if (this.coalesce) this.sampleDepth();
      const r = core.queuePop(q);
      if (r === POP_REQUEST) {
        this.serveOne();
      } else if (r === POP_BAD_CHAIN) {
        this.stats.badChains++;
        this.rateLimited('warn', 'malformed descriptor chain (returned with len 0)');
      } else if (r === POP_BAD_MESSAGE) {
        this.stats.badMessages++;
        this.rateLimited('debug', 'malformed FUSE request (answered -EINVAL)');
      } else {
        if (r !== POP_EMPTY) this.halt(r);
        break;
      }
      // After every completion (see the top of the file), unless coalescing holds it back.
      if (!this.coalesce || this.dueNow()) this.notifyIfDue();
    }
    return budget;
  }

  /** Stops serving the queue after `queuePop` said its ring is broken (or answered what it never answers). */
  private halt(r: number): void {
    const q = this.queue;
    this.halted = true;
    if (r === POP_RING_BROKEN) {
      log.error(`queue ${q}: ring broken (avail index moved by more than the queue size); queue halted until reset`);
      if (this.errFd >= 0) native.eventfdWrite(this.errFd, 1);
    } else {
      log.error(`queue ${q}: unexpected queuePop result ${r}; queue halted`);
    }
  }

  /**
   * Watches avail.idx for up to the polling window; true as soon as a chain is available. The clock (native
   * clockUs: a small integer, so the loop allocates nothing) is read once per SPIN_PEEKS looks (a look is one
   * Wasm call, tens of ns).
   */
  private spin(): boolean {
    const q = this.queue;
    const core = this.core;
    const start = native.clockUs();
    do {
      for (let i = 0; i < SPIN_PEEKS; i++) if (core.queueAvailPending!(q) > 0) return true;
      this.releaseHeldOlderThan(this.pollUs * 2);
    } while (((native.clockUs() - start) & CLOCK_US_MASK) < this.pollUs);
    this.releaseHeld(); // a window passed with nothing new: the driver is waiting for what we hold
    return false;
  }

  /** Ends kick suppression; returns the chains available after re-arming (0 when kicks were not off). */
  private kicksOn(): number {
    return this.kicksOff ? this.armKicks() : 0;
  }

  /** Kicks on, whatever they were, with avail_event at the ring's position; returns the chains available. */
  private armKicks(): number {
    this.releaseHeld();
    this.kicksOff = false;
    this.windowOpen = false; // kicks wake us from now on: a window's timer that still fires finds nothing owed
    return this.core.queueSetKicks!(this.queue, true);
  }

  /** The driver's depth: the most chains it had outstanding in the last one to two epochs of samples. */
  private driverDepth(): number {
    return Math.max(this.depthPeak, this.depthPrevPeak);
  }

  /** One sample of the driver's depth: the chains it made available since it last looked at the used ring. */
  private sampleDepth(): void {
    const outstanding = this.core.queueDriverLag!(this.queue, false);
    if (outstanding > this.depthPeak) this.depthPeak = outstanding;
    if (++this.depthSamples === DEPTH_EPOCH) {
      this.depthSamples = 0;
      this.depthPrevPeak = this.depthPeak;
      this.depthPeak = 0;
    }
  }

  /**
   * Whether the completion just pushed is told now: once the driver has half its depth done and unseen, the
   * other half is what keeps it busy meanwhile. Else the notification is held (released when the ring is found
   * empty without a window, by a window passing empty, by twice the window's age, or by kicks going on again).
   */
  private dueNow(): boolean {
    const depth = this.driverDepth();
    const half = depth >> 1;
    if (depth < DEEP_DRIVER || this.core.queueDriverLag!(this.queue, true) >= half) {
      this.heldSince = -1;
      return true;
    }
    if (this.heldSince < 0) this.heldSince = native.clockUs();
    return false;
  }

  /** releaseHeld once the hold is at least `us` µs old. */
  private releaseHeldOlderThan(us: number): void {
    if (this.heldSince >= 0 && ((native.clockUs() - this.heldSince) & CLOCK_US_MASK) >= us) this.releaseHeld();
  }

  /** Tells the driver what was held back, if it is waiting for it. */
  private releaseHeld(): void {
    if (this.heldSince < 0) return;
    this.heldSince = -1;
    this.notifyIfDue();
  }

  private serveOne(): void {
    try {
      this.server.serveCurrent();
      this.stats.served++;
    } catch (err) {
      // serveCurrent never throws by contract; if it does it is a bug. Keep the daemon up and complete the
      // request: the core refuses replySend when no request is current (already completed before the throw).
      this.stats.serverExceptions++;
      log.error(`queue ${this.queue}: request server threw; answering -EIO:`, err);
      try {
        this.core.replySend(-EIO, 0, 0);
      } catch (err2) {
        log.error(`queue ${this.queue}: replySend after exception failed:`, err2);
      }
    }
  }

  private rateLimited(level: 'warn' | 'debug', what: string): void {
    const now = Date.now();
    if (now - this.lastWarn < WARN_INTERVAL_MS) { this.suppressed++; return; }
    const extra = this.suppressed > 0 ? ` (${this.suppressed} more since last report)` : '';
    this.lastWarn = now;
    this.suppressed = 0;
    log[level](`queue ${this.queue}: ${what}${extra}; totals: bad chains ${this.stats.badChains}, bad messages ${this.stats.badMessages}`);
  }
}

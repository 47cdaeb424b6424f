/**
 * FuseServer: answers the request the core has just popped, through the opcode table (dispatch.ts), and
 * completes it with `core.replySend` or `core.replyNone`. Never throws: a throw from a handler is a bug, logged
 * and answered with EIO.
 *
 * Zero-copy paths: attributes go from `native.statx` into the core's statx scratch and are encoded by the core;
 * READ data goes from the file into guest memory by one preadv over the reply's writable segments; WRITE data
 * goes from guest memory to the file by one pwritev; directory names go from getdents64 into the reply by the core.
 */
// The module's binding, not the global: Node's global `performance` is a lazy getter, run on every access.
import { performance } from 'node:perf_hooks';
import { native } from '../native-loader.js';
import { log } from '../log.js';
import { ConfigError } from '../errors.js';
import {
  AttrTarget, BufferData, type ByteTarget, type Context, type DataSource, type DataTarget, type DirTarget, type Entry,
  type FileSystem,
} from './filesystem.js';
import { DEFER, NO_REPLY, OPS, attrFlagsAllowed, type Args, type FuseCore, type Op, type OpContext } from './dispatch.js';
import { FsGuard, PENDING, type SettledFileSystem } from './fs-guard.js';
import { OpStats } from './op-stats.js';
import type { ParkedRequest, ReplyParking } from '../virtio/queue-processor.js';
import * as P from './protocol.js';
import { u64At } from './ops/args.js';
import { nameOf, putName } from './names.js';
import { DIRENT_BUF_SIZE, LINEAR_QUEUE, REPLY_MAX } from '../core.js';

const E = native.constants.errno;

export type CacheMode = 'never' | 'auto' | 'always' | 'metadata';

export interface FuseServerOptions {
  /**
   * Guest caching, as virtiofsd's --cache: `never` (timeouts 0, FOPEN_DIRECT_IO), `auto` (1 s timeouts, the page
   * cache is dropped on open), `always` (long timeouts, FOPEN_KEEP_CACHE on files and directories, FOPEN_CACHE_DIR),
   * `metadata` (the Rust virtiofsd's: long timeouts and cached directory listings as `always`, but FOPEN_DIRECT_IO
   * on files, so file data is never cached).
   */
  cache: CacheMode;
  /**
   * Negotiate FUSE_WRITEBACK_CACHE (default false: every write reaches the host before write(2) returns). The
   * FileSystem must be ready for it (PassthroughFs: `writeback: true` too).
   */
  writeback?: boolean;
  /**
   * Negotiate FUSE_HANDLE_KILLPRIV_V2: the guest then leaves clearing setuid/setgid to us (write, truncate, open
   * O_TRUNC carry a KILL_SUIDGID flag; chown must clear them). The FileSystem must honour those flags
   * (PassthroughFs does). Default false: the guest kernel clears them itself with SETATTR for cached I/O; a
   * direct-I/O write (cache=never) still carries FUSE_WRITE_KILL_SUIDGID from an unprivileged writer whatever was
   * negotiated, and nothing else clears the bits for it.
   */
  killprivV2?: boolean;
  /**
   * Negotiate FUSE_POSIX_LOCKS (when the FileSystem has getlk and setlk): fcntl locks of the guest then reach the
   * host, where other guests and host processes see them. Default false: the guest kernel keeps its locks itself,
   * correct among the guest's own processes only.
   */
  posixLocks?: boolean;
  /**
   * Negotiate FUSE_FLOCK_LOCKS (when the FileSystem has flock): BSD flock(2) locks of the guest reach the host.
   * Default false: the guest kernel keeps them itself.
   */
  flockLocks?: boolean;
  /**
   * Negotiate FUSE_POSIX_ACL (the guest enforces POSIX ACLs it reads through GETXATTR), FUSE_DONT_MASK (the umask
   * travels in the request and the FileSystem applies it, unless a default ACL decides) and FUSE_SETXATTR_EXT
   * (FUSE_SETXATTR_ACL_KILL_SGID). The FileSystem must serve xattrs and apply the umask (PassthroughFs: xattr and
   * posixAcl). Default false.
   */
  posixAcl?: boolean;
  /** Largest READ/WRITE in pages (FUSE_MAX_PAGES), 1..256; default 256 (1 MiB with 4 KiB pages). */
  maxPages?: number;
  /**
   * A read-only share (virtiofsd's --readonly): every request that would change the filesystem (OPEN for writing
   * or truncating, CREATE, MKDIR, SETATTR, WRITE, SETXATTR, ...) is answered EROFS without reaching it.
   */
  readonly?: boolean;
  /** Override the cache mode's entry/attr timeouts (seconds). */
  timeout?: number;
  /** Negotiate READDIRPLUS when the FileSystem has it (default true; C virtiofsd's `-o no_readdirplus` turns it off). */
  readdirplus?: boolean;
  /**
   * Negotiate FUSE_SUBMOUNTS (virtiofsd's --announce-submounts): entries the FileSystem marks FUSE_ATTR_SUBMOUNT
   * (PassthroughFs with `announceSubmounts`) become separate mounts in the guest. Default false.
   */
  announceSubmounts?: boolean;
  /**
   * The INIT state, shared by every FuseServer serving the same guest over the same FileSystem (one server per
   * core when queues are spread over several cores: INIT arrives on one queue, requests on all). Default: own.
   */
  session?: FuseSessionState;
  /** Where per-operation counters go (shared like `session`). Default: own. */
  stats?: OpStats;
}

/** Whether the guest has INITed, and the minor it speaks. */
export class FuseSessionState {
  initialized = false;
  minor = 0;
  /** The INIT flags both sides agreed on. */
  flags = 0;
}

/** A parked request whose answer waits for `retry` to stop saying -EAGAIN (a SETLKW on a held lock). */
interface Waiter {
  readonly parked: ParkedRequest;
  readonly parking: ReplyParking;
  readonly retry: () => number;
  delayMs: number;
  timer: NodeJS.Timeout | null;
  interrupted: boolean;
}

/**
 * A request whose FileSystem method returned a Promise: parked until it settles, then answered in full by running
 * its handler again (replay) over the settled value. The sinks it was given are its own from parking on.
 */
interface AsyncRequest {
  readonly unique: bigint;
  readonly opcode: number;
  readonly op: Op<unknown>;
  readonly args: unknown;
  readonly nodeId: number;
  readonly ctx: Context;
  readonly method: string;
  readonly parked: ParkedRequest;
  readonly parking: ReplyParking;
  readonly start: number;
  /** The open handle the method works on (RELEASE of it waits), if any. */
  readonly fh: number | undefined;
  /** Sequence number of an entry-handing request (FORGETs after it wait), else 0. */
  readonly entrySeq: number;
  readonly attr: AttrTarget;
  readonly read: CoreDataTarget | null;
  readonly dir: CoreDirTarget | null;
  readonly bytes: CoreByteTarget | null;
  /**
   * Answered -EINTR already, or dropped (queue reset: undo, disconnect/DESTROY: discard): a late result is taken
   * back (undo, interrupted) or ignored (discard).
   */
  gone: 'no' | 'undo' | 'discard' | 'interrupted';
}

/** A FORGET kept until the entry replies pending when it arrived went out. */
interface HeldForget {
  readonly nodeId: number;
  readonly nlookup: number;
  /** Entry requests with a sequence number up to this one must have settled first. */
  readonly barrier: number;
}

/** Sinks handed out during the current request (detached if it goes asynchronous). */
const HANDED_READ = 1;
const HANDED_WRITE = 2;
const HANDED_DIR = 4;
const HANDED_BYTES = 8;

/** First and longest pause between two attempts of a parked request. */
const RETRY_FIRST_MS = 1;
const RETRY_MAX_MS = 50;

/** Seconds for cache=always (virtiofsd uses a day). */
const ALWAYS_TIMEOUT = 86400;
/** Guest page size the limits are stated in (x86-64 and most arm64 guests). */
const GUEST_PAGE = 4096;

export class FuseServer implements OpContext {
  /** The core's statx scratch, as an AttrTarget (replaced when a pending request takes the old one along). */
  attr: AttrTarget;
  /** The FileSystem the handlers call: `filesystem` behind the guard (async results, result checks). */
  readonly fs: SettledFileSystem;
  /**
   * The dispatch table by opcode, and whether each is served (its FileSystem method exists on `fs`, or it needs
   * none; else ENOSYS): indexed arrays, since a Map and a Set lookup per request cost more than the array loads.
   */
  private readonly opAt: Array<Op<unknown> | undefined>;
  private readonly servedAt: Uint8Array;
  /** Per-operation counters and latency histograms. */
  readonly stats: OpStats;
  readonly entryTimeout: number;
  readonly attrTimeout: number;
  readonly fileOpenFlags: number;
  readonly dirOpenFlags: number;
  readonly wantFlags: number;
  readonly maxWrite: number;
  readonly maxPages: number;
  payloadLen = 0;
  readonly readonly: boolean;
  readonly session: FuseSessionState;

  private readSink: CoreDataTarget;
  private writeSrc: CoreDataSource;
  private dirSink: CoreDirTarget;
  private byteSink: CoreByteTarget;
  private readonly guard: FsGuard;
  /** HANDED_* bits of the current request. */
  private handed = 0;
  /** The request being answered after its Promise settled (its sinks are flushed into the reply), or null. */
  private replayOf: AsyncRequest | null = null;
  /** Opcode of the request being served (for reports). */
  private currentOpcode = 0;
  /** Requests whose Promise is pending, by unique. */
  private readonly asyncRequests = new Map<bigint, AsyncRequest>();
  /** Pending entry-handing requests by sequence number (insertion order = ascending). */
  private readonly entryPending = new Set<number>();
  private entrySeq = 0;
  private readonly heldForgets: HeldForget[] = [];
  /** Open handles with pending requests: how many, and who waits for them to go idle. */
  private readonly busyHandles = new Map<number, { count: number; idle: Array<() => void> }>();
  /** "opcode:problem" pairs already logged. */
  private readonly reported = new Set<string>();
  /** Per queue (LINEAR_QUEUE for /dev/fuse): how its transport parks a request. */
  private readonly parkings = new Map<number, ReplyParking>();
  /** Parked requests by unique (what FUSE_INTERRUPT names). */
  private readonly waiters = new Map<bigint, Waiter>();

  /** @param filesystem what is served; its methods may return Promises (see FileSystem). */
  constructor(readonly filesystem: FileSystem, readonly core: FuseCore, options: FuseServerOptions) {
    const fs = filesystem;
    const { cache } = options;
    if (cache !== 'never' && cache !== 'auto' && cache !== 'always' && cache !== 'metadata') throw new ConfigError(`unknown cache mode ${cache}`);
    const maxPages = options.maxPages ?? P.FUSE_MAX_MAX_PAGES;
    if (!Number.isInteger(maxPages) || maxPages < 1 || maxPages > P.FUSE_MAX_MAX_PAGES) {
      throw new ConfigError(`maxPages must be 1..${P.FUSE_MAX_MAX_PAGES}`);
    }
    const timeout = options.timeout ?? (cache === 'never' ? 0 : cache === 'auto' ? 1 : ALWAYS_TIMEOUT);
    this.entryTimeout = timeout;
    this.attrTimeout = timeout;
    this.fileOpenFlags = cache === 'never' || cache === 'metadata' ? P.FOPEN_DIRECT_IO
      : cache === 'always' ? P.FOPEN_KEEP_CACHE : 0;
    // The kernel drops a directory's cached listing on open unless KEEP_CACHE comes with CACHE_DIR.
    this.dirOpenFlags = cache === 'always' || cache === 'metadata' ? P.FOPEN_CACHE_DIR | P.FOPEN_KEEP_CACHE : 0;
    this.maxPages = maxPages;
    // WRITE payloads stay in guest memory (only fuse_write_in is copied), READ data lands there directly; the
    // limit is the kernel's page count, not our scratch sizes.
    this.maxWrite = maxPages * GUEST_PAGE;

    // ASYNC_DIO: without it the kernel serves an asynchronous O_DIRECT read or write (libaio, io_uring) as a
    // synchronous one, so a guest's queue depth never reaches us (fio libaio QD16 ran at QD1).
    let want = P.FUSE_ASYNC_READ | P.FUSE_ASYNC_DIO | P.FUSE_BIG_WRITES | P.FUSE_PARALLEL_DIROPS | P.FUSE_MAX_PAGES;
    if (fs.open !== undefined || fs.create !== undefined) want |= P.FUSE_ATOMIC_O_TRUNC;
    if (fs.readdirplus !== undefined && options.readdirplus !== false) want |= P.FUSE_DO_READDIRPLUS | P.FUSE_READDIRPLUS_AUTO;
    this.readonly = options.readonly ?? false;
    if (options.killprivV2) want |= P.FUSE_HANDLE_KILLPRIV_V2;
    if (options.posixLocks && fs.getlk !== undefined && fs.setlk !== undefined) want |= P.FUSE_POSIX_LOCKS;
    if (options.flockLocks && fs.flock !== undefined) want |= P.FUSE_FLOCK_LOCKS;
    if (options.posixAcl && fs.getxattr !== undefined && fs.setxattr !== undefined) {
      want |= P.FUSE_POSIX_ACL | P.FUSE_DONT_MASK | P.FUSE_SETXATTR_EXT;
    }
    if (options.writeback && !this.readonly) want |= P.FUSE_WRITEBACK_CACHE;
    if (options.announceSubmounts) want |= P.FUSE_SUBMOUNTS;
    this.wantFlags = want;

    this.session = options.session ?? new FuseSessionState();
    this.stats = options.stats ?? new OpStats();
    this.attr = new AttrTarget(() => core.memoryBuffer(), core.statxPtr);
    this.readSink = new CoreDataTarget(core);
    this.writeSrc = new CoreDataSource(core);
    this.dirSink = new CoreDirTarget(this);
    this.byteSink = new CoreByteTarget(core);
    this.guard = new FsGuard(filesystem, {
      report: (method, problem, err) => this.report(this.currentOpcode, method, problem, err),
      forgetNow: (nodeId, nlookup) => this.forgetNow(nodeId, nlookup),
      handleIdle: (fh) => this.handleIdle(fh),
    });
    this.fs = this.guard.fs;
    const size = Math.max(...OPS.keys()) + 1;
    this.opAt = Array.from({ length: size }, (_, opcode) => OPS.get(opcode));
    this.servedAt = new Uint8Array(size);
    for (const [opcode, op] of OPS) {
      if (op.method === undefined || this.fs[op.method] !== undefined) this.servedAt[opcode] = 1;
    }
  }

  get initialized(): boolean {
    return this.session.initialized;
  }
  set initialized(v: boolean) {
    this.session.initialized = v;
  }
  get minor(): number {
    return this.session.minor;
  }
  set minor(v: number) {
    this.session.minor = v;
  }
  get negotiatedFlags(): number {
    return this.session.flags;
  }
  set negotiatedFlags(v: number) {
    this.session.flags = v;
  }

  /**
   * The guest is gone (frontend disconnected) without DESTROY: forget everything it held, as DESTROY does, and
   * answer EIO until the next INIT.
   */
  endSession(): void {
    this.dropParked(-1);
    if (!this.session.initialized) return;
    this.session.initialized = false;
    this.fs.destroy?.(); // guarded: a throw or a rejection is logged
  }

  attachParking(queue: number, parking: ReplyParking): void {
    this.parkings.set(queue, parking);
  }

  canDefer(): boolean {
    return this.parkings.has(this.core.reqQueue()) && !this.waiters.has(this.core.reqUnique());
  }

  /** Parks the current request at once (it stops being current); serveCurrent then sends nothing for it. */
  defer(retry: () => number): number {
    this.parkCurrent(retry);
    return DEFER;
  }

  interrupt(unique: bigint): void {
    const a = this.asyncRequests.get(unique);
    // A request that changes nothing can stop waiting (its late result is taken back); one that changes the
    // filesystem is answered with what really happened.
    if (a !== undefined && a.op.modifies === undefined) {
      setImmediate(() => {
        if (this.asyncRequests.get(unique) !== a) return;
        this.asyncRequests.delete(unique);
        a.gone = 'interrupted';
        this.answerHeader(a, -E.EINTR);
        this.stats.record(a.opcode, true, performance.now() - a.start, true);
      });
      return;
    }
    const w = this.waiters.get(unique);
    if (w === undefined) return;
    // Answered from a timer: inside serveCurrent (this INTERRUPT is the current request) no other can be.
    w.interrupted = true;
    this.schedule(w, 0);
  }

  /** The parked request `unique` can likely be answered now (its result arrived): retry it at once. */
  wake(unique: bigint): void {
    const w = this.waiters.get(unique);
    if (w === undefined) return;
    if (w.timer !== null) clearTimeout(w.timer);
    w.timer = null;
    setImmediate(() => this.attempt(w)); // not a timer: setTimeout(0) waits at least 1 ms
  }

  /**
   * Forgets parked requests of `queue` (-1: all, the session ends) without answering them. The late results of
   * asynchronous ones are taken back (lookup counts, handles) while the session goes on; when it ends, `destroy`
   * resets everything instead.
   */
  dropParked(queue: number): void {
    for (const [unique, w] of this.waiters) {
      if (queue !== -1 && w.parked.queue !== queue) continue;
      if (w.timer !== null) clearTimeout(w.timer);
      this.waiters.delete(unique);
    }
    for (const [unique, a] of this.asyncRequests) {
      if (queue !== -1 && a.parked.queue !== queue) continue;
      this.asyncRequests.delete(unique);
      a.gone = queue === -1 ? 'discard' : 'undo';
    }
    if (queue === -1) this.heldForgets.length = 0; // destroy() drops every count
  }

  /** Parked requests waiting: SETLKW retries and pending Promises (introspection for tests and logs). */
  get parkedCount(): number {
    return this.waiters.size + this.asyncRequests.size;
  }

  /** Requests whose FileSystem Promise is pending. */
  get pendingCount(): number {
    return this.asyncRequests.size;
  }

  // ---- asynchronous requests ------------------------------------------------------------------------------------

  /** Logs a FileSystem failure once per opcode and kind of problem. */
  private report(opcode: number, method: string, problem: string, err?: unknown): void {
    const kind = problem.startsWith('returned') ? 'returned' : problem;
    const key = `${opcode}:${method}:${kind}`;
    if (this.reported.has(key)) return;
    this.reported.add(key);
    const name = P.OPCODE_NAMES[opcode] ?? (opcode === 0 ? 'outside a request' : String(opcode));
    const what = `fuse ${name}: FileSystem.${method} ${problem}; answered EIO (logged once)`;
    if (err !== undefined) log.error(what, err);
    else log.error(what);
  }

  private forgetNow(nodeId: number, nlookup: number): boolean {
    if (this.entryPending.size === 0 && this.heldForgets.length === 0) return true;
    this.heldForgets.push({ nodeId, nlookup, barrier: this.entrySeq });
    return false;
  }

  /** Delivers the held FORGETs whose barrier passed, in arrival order. */
  private releaseForgets(): void {
    const first = this.entryPending.values().next();
    const oldest = first.done ? Infinity : first.value;
    while (this.heldForgets.length > 0 && this.heldForgets[0].barrier < oldest) {
      const f = this.heldForgets.shift()!;
      try {
        this.guard.target.forget?.(f.nodeId, f.nlookup);
      } catch (e) {
        this.report(P.FUSE_FORGET, 'forget', 'threw', e);
      }
    }
  }

  private handleIdle(fh: number): PromiseLike<void> | null {
    const busy = this.busyHandles.get(fh);
    if (busy === undefined) return null;
    return new Promise<void>((resolve) => busy.idle.push(resolve));
  }

  /**
   * The current request's method returned a Promise (the guard threw PENDING): park the request with its own
   * sinks, and answer it when the Promise settles.
   */
  private goAsync(op: Op<unknown>, args: unknown, req: Args, opcode: number, start: number): void {
    const core = this.core;
    const guard = this.guard;
    const promise = guard.pending!;
    const method = guard.pendingMethod;
    guard.pending = null;
    const parking = this.parkings.get(core.reqQueue());
    if (parking === undefined || parking.resume === undefined) {
      promise.then(undefined, () => undefined);
      this.report(opcode, method, 'returned a Promise where the transport cannot answer later');
      core.replySend(-E.EIO, 0, 0);
      return;
    }
    // Detach what the method may still write to, while the request is current (placed data is read back).
    const attr = this.attr;
    attr.detach();
    this.attr = new AttrTarget(() => core.memoryBuffer(), core.statxPtr);
    let read: CoreDataTarget | null = null;
    let dir: CoreDirTarget | null = null;
    let bytes: CoreByteTarget | null = null;
    if ((this.handed & HANDED_READ) !== 0) {
      read = this.readSink;
      read.detach();
      this.readSink = new CoreDataTarget(core);
    }
    if ((this.handed & HANDED_WRITE) !== 0) {
      this.writeSrc.detach();
      this.writeSrc = new CoreDataSource(core);
    }
    if ((this.handed & HANDED_DIR) !== 0) {
      dir = this.dirSink;
      dir.detach(attr);
      this.dirSink = new CoreDirTarget(this);
    }
    if ((this.handed & HANDED_BYTES) !== 0) {
      bytes = this.byteSink;
      bytes.detach();
      this.byteSink = new CoreByteTarget(core);
    }
    const unique = core.reqUnique();
    const fh = guard.pendingFh;
    const entrySeq = FsGuard.isEntryMethod(method) ? ++this.entrySeq : 0;
    const parked = parking.park();
    const a: AsyncRequest = {
      unique, opcode, op, args, nodeId: req.nodeId, ctx: req.ctx, method, parked, parking, start, fh, entrySeq,
      attr, read, dir, bytes, gone: 'no',
    };
    this.asyncRequests.set(unique, a);
    if (entrySeq !== 0) this.entryPending.add(entrySeq);
    if (fh !== undefined) {
      const busy = this.busyHandles.get(fh);
      if (busy === undefined) this.busyHandles.set(fh, { count: 1, idle: [] });
      else busy.count++;
    }
    this.stats.began(opcode);
    // Promise.resolve: a foreign thenable's callbacks run from a job, never inside serveCurrent.
    Promise.resolve(promise).then((v) => this.settle(a, v, false), (e: unknown) => this.settle(a, e, true));
  }

  /** The Promise of `a` settled: answer it (or take its result back when it is gone), then let waiters go. */
  private settle(a: AsyncRequest, value: unknown, rejected: boolean): void {
    try {
      if (rejected) this.report(a.opcode, a.method, 'rejected', value);
      const v = rejected ? -E.EIO : this.guardSettled(a, value);
      if (this.asyncRequests.get(a.unique) !== a) {
        if (a.gone === 'no') a.gone = 'undo'; // its unique was reused by a new request: ours is unanswerable
        if (a.gone !== 'discard' && this.session.initialized) this.takeBack(a, v);
        if (a.gone !== 'interrupted') this.stats.dropped(a.opcode);
      } else {
        this.asyncRequests.delete(a.unique);
        this.answer(a, v);
      }
    } catch (e) {
      log.error(`fuse ${P.OPCODE_NAMES[a.opcode] ?? a.opcode}: answering a settled request failed`, e);
    } finally {
      this.currentOpcode = 0;
      this.afterSettle(a);
    }
  }

  private guardSettled(a: AsyncRequest, v: unknown): unknown {
    this.currentOpcode = a.opcode;
    return this.guard.settled(a.method, v);
  }

  private afterSettle(a: AsyncRequest): void {
    if (a.entrySeq !== 0) {
      this.entryPending.delete(a.entrySeq);
      this.releaseForgets();
    }
    if (a.fh !== undefined) {
      const busy = this.busyHandles.get(a.fh);
      if (busy !== undefined && --busy.count === 0) {
        this.busyHandles.delete(a.fh);
        for (const go of busy.idle) go();
      }
    }
  }

  /** Makes `a` current again and runs its handler over the settled value `v`: the usual encoders and replySend. */
  private answer(a: AsyncRequest, v: unknown): void {
    const core = this.core;
    if (typeof v === 'number' && v < 0 && a.op.noReply !== true) {
      this.answerHeader(a, v);
      this.stats.record(a.opcode, true, performance.now() - a.start, true);
      return;
    }
    const r0 = a.parking.resume!(a.parked, a.opcode);
    if (r0 === -E.EBUSY) {
      // A request is current (a caller stepping the core by hand): try again once it is done.
      this.asyncRequests.set(a.unique, a);
      setImmediate(() => {
        if (this.asyncRequests.get(a.unique) !== a) return;
        this.asyncRequests.delete(a.unique);
        this.answer(a, v);
      });
      return;
    }
    if (r0 !== 1) {
      // The queue or the chain is gone: nobody will read the reply.
      if (this.session.initialized) this.takeBack(a, v);
      this.stats.dropped(a.opcode);
      return;
    }
    const req = this.resumedArgs(a);
    const r = this.replay(a, v, req);
    if (r === DEFER) return; // parked again (a SETLKW that must wait, or a second Promise)
    this.complete(a.op, a.args, req, a.opcode, r);
    this.stats.record(a.opcode, r < 0, performance.now() - a.start, true);
    a.parking.delivered?.(a.parked);
  }

  /** A header-only answer {16, error, unique} (errors, EINTR). */
  private answerHeader(a: AsyncRequest, error: number): void {
    try {
      a.parking.answer(a.parked, error);
    } catch (e) {
      log.error('fuse: answering a parked request failed', e);
    }
  }

  private resumedArgs(a: AsyncRequest): Args {
    return { view: this.view(), base: this.core.argsPtr, len: 0, nodeId: a.nodeId, ctx: a.ctx };
  }

  /**
   * Runs a's handler with the guard answering its method call with `v` and the sinks flushed from a's own.
   * Returns the handler's result, or DEFER when it parked the request again.
   */
  private replay(a: AsyncRequest, v: unknown, req: Args): number {
    const core = this.core;
    const guard = this.guard;
    new Uint8Array(core.memoryBuffer(), core.statxPtr, STATX_SIZE).set(a.attr.bytes());
    this.replayOf = a;
    this.handed = 0;
    this.payloadLen = 0;
    this.currentOpcode = a.opcode;
    guard.replaying = true;
    guard.replayValue = v;
    guard.serving = true;
    try {
      return a.op.handle(this, a.args, req);
    } catch (e) {
      if (e === PENDING) {
        guard.serving = false;
        this.goAsync(a.op, a.args, req, a.opcode, a.start);
        return DEFER;
      }
      log.error(`fuse ${a.op.name}: handler threw`, e);
      return -E.EIO;
    } finally {
      guard.serving = false;
      guard.replaying = false;
      guard.replayValue = undefined;
      this.replayOf = null;
      this.currentOpcode = 0;
    }
  }

  /**
   * A dropped request's result arrived: encode it as if answering (no request is current, nothing is sent) and
   * undo what it gave (the lookup count of an entry, an open handle).
   */
  private takeBack(a: AsyncRequest, v: unknown): void {
    if (a.op.undo === undefined || (typeof v === 'number' && v < 0)) return;
    const req = this.resumedArgs(a);
    const r = this.replay(a, v, req);
    if (r >= 0) a.op.undo(this, a.args, req, r);
  }

  private parkCurrent(retry: () => number): void {
    const parking = this.parkings.get(this.core.reqQueue())!;
    const parked = parking.park();
    const w: Waiter = { parked, parking, retry, delayMs: RETRY_FIRST_MS, timer: null, interrupted: false };
    this.waiters.set(parked.unique, w);
    this.schedule(w, RETRY_FIRST_MS);
  }

  private schedule(w: Waiter, ms: number): void {
    if (w.timer !== null) clearTimeout(w.timer);
    w.timer = setTimeout(() => this.attempt(w), ms);
    w.timer.unref(); // a waiting lock does not keep a daemon that is shutting down alive
  }

  private attempt(w: Waiter): void {
    w.timer = null;
    if (this.waiters.get(w.parked.unique) !== w) return;
    let r: number;
    try {
      r = w.interrupted ? -E.EINTR : w.retry();
    } catch (e) {
      log.error('fuse: parked request retry threw', e);
      r = -E.EIO;
    }
    if (typeof r === 'object' && r !== null) {
      // An asynchronous setlk/flock: decide when it settled (a rejection was reported by the guard).
      Promise.resolve(r as PromiseLike<unknown>).then(
        (v) => this.decide(w, this.guard.settled('setlk', v) as number), () => this.decide(w, -E.EIO));
      return;
    }
    this.decide(w, r);
  }

  private decide(w: Waiter, r: number): void {
    if (this.waiters.get(w.parked.unique) !== w) return;
    if (r === -E.EAGAIN && w.interrupted) r = -E.EINTR;
    if (r === -E.EAGAIN) {
      w.delayMs = Math.min(w.delayMs * 2, RETRY_MAX_MS);
      this.schedule(w, w.delayMs);
      return;
    }
    this.waiters.delete(w.parked.unique);
    try {
      w.parking.answer(w.parked, r > 0 ? 0 : r);
    } catch (e) {
      log.error('fuse: answering a parked request failed', e);
    }
  }

  /** A DataView over the core memory (the core's own, renewed when the memory grew). */
  view(): DataView {
    return this.core.view();
  }

  readTarget(size: number): DataTarget {
    this.handed |= HANDED_READ;
    const sink = this.readSink;
    sink.size = size;
    sink.placed = 0;
    // Answering a pending READ: what the filesystem delivered into its own buffer goes to the guest now.
    const own = this.replayOf?.read;
    if (own) sink.fromBytes(own.detachedBytes());
    return sink;
  }

  writeSource(size: number): DataSource {
    this.handed |= HANDED_WRITE;
    this.writeSrc.size = size;
    return this.writeSrc;
  }

  dirTarget(size: number, plus: boolean): DirTarget {
    this.handed |= HANDED_DIR;
    this.dirSink.reset(Math.min(size, REPLY_MAX), plus);
    const own = this.replayOf?.dir;
    if (own) own.replayInto(this.dirSink);
    return this.dirSink;
  }

  byteTarget(size: number): ByteTarget {
    this.handed |= HANDED_BYTES;
    this.byteSink.size = Math.min(size, REPLY_MAX);
    const own = this.replayOf?.bytes;
    if (own) own.copyInto(this.byteSink);
    return this.byteSink;
  }

  /** Handles the request the core just popped (queuePop returned 1) and completes it. Never throws. */
  serveCurrent(): void {
    const core = this.core;
    const start = performance.now();
    let opcode = 0;
    let noReply = false;
    try {
      const v = this.view();
      const h = core.inHeaderPtr;
      opcode = v.getUint32(h + P.IN_HEADER.opcode, true);
      this.currentOpcode = opcode;
      const op = opcode < this.opAt.length ? this.opAt[opcode] : undefined;
      noReply = op?.noReply === true;
      this.payloadLen = 0;
      this.handed = 0;
      const req: Args = {
        view: v, base: core.argsPtr, len: v.getUint32(h + P.IN_HEADER.len, true) - P.IN_HEADER.SIZE,
        nodeId: u64At(v, h + P.IN_HEADER.nodeid),
        ctx: {
          uid: v.getUint32(h + P.IN_HEADER.uid, true), gid: v.getUint32(h + P.IN_HEADER.gid, true),
          pid: v.getUint32(h + P.IN_HEADER.pid, true),
        },
      };
      let r: number;
      let args: unknown = null;
      if (!this.initialized && opcode !== P.FUSE_INIT) r = -E.EIO;
      else if (op === undefined || this.servedAt[opcode] !== 1) r = -E.ENOSYS;
      else {
        args = op.decode(req, this);
        // decode answers a negative errno for malformed args; anything else (even a number) is the args.
        if (typeof args === 'number' && args < 0) r = args;
        else if (this.readonly && op.modifies !== undefined &&
          (op.modifies === true || (typeof op.modifies === 'function' && op.modifies(args)))) r = -E.EROFS;
        else {
          this.guard.serving = true;
          try {
            r = op.handle(this, args, req);
          } catch (e) {
            if (e !== PENDING) throw e;
            this.guard.serving = false;
            this.goAsync(op, args, req, opcode, start);
            return;
          } finally {
            this.guard.serving = false;
          }
        }
      }
      if (log.enabled('trace')) {
        log.trace(`fuse ${op?.name ?? opcode} node=${req.nodeId} -> ${r === NO_REPLY ? 'no reply' : r}`);
      }
      if (noReply) {
        core.replyNone();
        this.stats.record(opcode, false, performance.now() - start, false);
        return;
      }
      if (r === DEFER) return; // parked by defer(): answered later
      r = this.complete(op, args, req, opcode, r);
      this.stats.record(opcode, r < 0, performance.now() - start, false);
    } catch (e) {
      log.error(`fuse ${P.OPCODE_NAMES[opcode] ?? opcode}: handler threw`, e);
      this.stats.record(opcode, true, performance.now() - start, false);
      try {
        if (noReply) core.replyNone();
        else core.replySend(-E.EIO, 0, 0);
      } catch (e2) {
        log.error('fuse: could not complete the request', e2);
      }
    } finally {
      this.currentOpcode = 0; // reports from outside a request (destroy at session end) name none
    }
  }

  /**
   * Sends the handler's result `r` (body length or -errno) for the current request; takes back what an
   * undeliverable reply gave. Returns the result sent.
   */
  private complete(op: Op<unknown> | undefined, args: unknown, req: Args, opcode: number, r: number): number {
    const core = this.core;
    if (op?.noReply === true) {
      core.replyNone();
      return 0;
    }
    if (!Number.isInteger(r) || r < -4095) {
      // Not an errno (a FileSystem bug): never let it reach the guest as something else.
      log.error(`fuse ${op?.name ?? opcode}: bad result ${r}`);
      r = -E.EIO;
    }
    const sent = r < 0 ? core.replySend(r, 0, 0) : core.replySend(0, r, this.payloadLen);
    if (sent < 0) {
      log.debug(`fuse ${op?.name ?? opcode}: reply did not fit the guest's buffers (${sent})`);
      if (r >= 0 && op?.undo !== undefined) op.undo(this, args, req, r);
    }
    return r;
  }
}

/** Size of a struct statx. */
const STATX_SIZE = 256;

/**
 * READ: file data straight into the reply's writable guest segments after the 16-byte out header. Detached (the
 * request went asynchronous), into a private buffer, copied to the guest when the request is answered.
 */
class CoreDataTarget implements DataTarget {
  size = 0;
  /** Bytes delivered so far this request. */
  placed = 0;
  private own: BufferData | null = null;
  private keptInGuest = false;
  constructor(private readonly core: FuseCore) {}

  fromFd(fd: number, position: number): number {
    if (this.own !== null) return this.placedNow(this.own.fromFd(fd, position));
    const c = this.core;
    const n = c.payloadReadIov(P.OUT_HEADER.SIZE, this.size);
    if (n <= 0) return 0;
    return this.placedNow(native.preadv(fd, c.memoryBuffer(), c.iovPtr, n, position));
  }

  /** Not counted as placed: a request that goes asynchronous after it is answered from its own buffer. */
  fromFdNowait(fd: number, position: number): number {
    if (this.own !== null) return -E.EAGAIN;
    const c = this.core;
    const n = c.payloadReadIov(P.OUT_HEADER.SIZE, this.size);
    if (n <= 0) return 0;
    return native.preadvNowait(fd, c.memoryBuffer(), c.iovPtr, n, position);
  }

  /**
   * Through the reply scratch (a READ has no body: it is free): the core copies it into the guest's buffers,
   * whichever way it reaches guest memory (flat or windowed).
   */
  fromBytes(bytes: Uint8Array): number {
    if (this.own !== null) return this.placedNow(this.own.fromBytes(bytes));
    const c = this.core;
    const n = Math.min(this.size, bytes.length, REPLY_MAX);
    if (n === 0) return 0;
    new Uint8Array(c.memoryBuffer(), c.replyPtr, n).set(bytes.subarray(0, n));
    return this.placedNow(c.payloadScatter(c.replyPtr, P.OUT_HEADER.SIZE, n));
  }

  private placedNow(n: number): number {
    if (n > this.placed) this.placed = n;
    return n;
  }

  /**
   * From now on into a private buffer (the request is still current). Data delivered already stays where it is
   * for a virtqueue request (the chain's buffers remain the device's until it is answered); for a /dev/fuse
   * request it is copied out of the out buffer, which the next request reuses.
   */
  detach(): void {
    const own = new BufferData(this.size);
    const c = this.core;
    const linearOut = (c as { linearOutPtr?: number }).linearOutPtr;
    if (this.placed > 0) {
      if (c.reqQueue() === LINEAR_QUEUE && linearOut !== undefined) {
        own.bytes.set(new Uint8Array(c.memoryBuffer(), linearOut + P.OUT_HEADER.SIZE, this.placed));
      } else {
        this.keptInGuest = true;
      }
    }
    this.own = own;
  }

  /** What a detached target holds (nothing when the data stayed in the guest's buffers). */
  detachedBytes(): Uint8Array {
    return this.own === null || this.keptInGuest ? new Uint8Array(0) : this.own.bytes.subarray(0, this.placed);
  }
}

/**
 * WRITE: the payload straight from the request's readable guest segments after fuse_write_in. Detached, a copy
 * taken while the request was current.
 */
class CoreDataSource implements DataSource {
  size = 0;
  private own: BufferData | null = null;
  constructor(private readonly core: FuseCore) {}

  detach(): void {
    this.own = new BufferData(this.size, this.toBytes());
  }

  toFd(fd: number, position: number): number {
    if (this.own !== null) return this.own.toFd(fd, position);
    const c = this.core;
    const n = c.payloadWriteIov(P.WRITE_IN.SIZE, this.size);
    if (n <= 0) return 0;
    return native.pwritev(fd, c.memoryBuffer(), c.iovPtr, n, position);
  }

  toFdNowait(fd: number, position: number): number {
    if (this.own !== null) return -E.EAGAIN;
    const c = this.core;
    const n = c.payloadWriteIov(P.WRITE_IN.SIZE, this.size);
    if (n <= 0) return 0;
    return native.pwritevNowait(fd, c.memoryBuffer(), c.iovPtr, n, position);
  }

  /** Through the reply scratch (a WRITE's body, write_out, is encoded only after the filesystem returned). */
  toBytes(): Uint8Array {
    if (this.own !== null) return this.own.toBytes();
    const c = this.core;
    const n = Math.min(this.size, REPLY_MAX);
    if (n === 0) return new Uint8Array(0);
    const got = c.payloadGather(c.replyPtr, P.WRITE_IN.SIZE, n);
    return new Uint8Array(c.memoryBuffer(), c.replyPtr, got).slice();
  }
}


/** A directory entry appended to a detached DirTarget, replayed into the reply when the request is answered. */
interface DirRecord {
  readonly ino: number;
  readonly cookie: bigint;
  readonly type: number;
  readonly name: string;
  readonly entry: Entry | undefined;
  /** READDIRPLUS: the entry's statx, copied when it was appended. */
  readonly attr: Uint8Array | null;
}

/** getdents64 records walked in JS (a detached DirTarget; the live one walks them in the core). */
class RawDirents {
  readonly buf = new ArrayBuffer(DIRENT_BUF_SIZE);
  readonly view = new DataView(this.buf);
  private end = 0;
  private pos = 0;
  cur = -1;
  private curEnd = 0;

  begin(n: number): void {
    this.end = n;
    this.pos = 0;
    this.cur = -1;
  }

  next(): number {
    if (this.pos >= this.end) return 0;
    if (this.end - this.pos < 20) return -1;
    const reclen = this.view.getUint16(this.pos + 16, true);
    if (reclen < 20 || this.pos + reclen > this.end) return -1;
    this.cur = this.pos;
    this.curEnd = this.pos + reclen;
    this.pos += reclen;
    return 1;
  }

  /** Bytes of the current name: up to its NUL, or to the record's end. */
  nameLength(): number {
    const start = this.cur + 19;
    let i = start;
    while (i < this.curEnd && this.view.getUint8(i) !== 0) i++;
    return i - start;
  }

  get ino(): number { return Number(this.view.getBigUint64(this.cur, true)); }
  get off(): bigint { return this.view.getBigUint64(this.cur + 8, true); }
  get type(): number { return this.view.getUint8(this.cur + 18); }
}

/** Size of a fuse_dirent (plus: fuse_direntplus) record with a name of `nameLen` bytes. */
function direntRecordSize(plus: boolean, nameLen: number): number {
  return ((plus ? P.DIRENTPLUS.dirent : 0) + P.DIRENT.name + nameLen + 7) & ~7;
}

/**
 * READDIR/READDIRPLUS into the core's reply scratch. One per server, reset per request. Detached (the request went
 * asynchronous), it keeps what was appended so far and records what is appended later, to be replayed into the
 * live target when the request is answered.
 */
class CoreDirTarget implements DirTarget {
  size = 0;
  plus = false;
  used = 0;
  /** Offset in the reply of the last appended fuse_dirent (its `off` is at +8), or -1. */
  lastDirent = -1;
  private detached: {
    prefix: Uint8Array; prefixCookie: bigint | null; records: DirRecord[]; attr: AttrTarget; raw: RawDirents | null;
  } | null = null;

  constructor(private readonly s: FuseServer) {}

  get attr(): AttrTarget {
    return this.detached?.attr ?? this.s.attr;
  }

  reset(size: number, plus: boolean): void {
    this.size = size;
    this.plus = plus;
    this.used = 0;
    this.lastDirent = -1;
  }

  /** From now on, record (the request went asynchronous; `attr` is its own AttrTarget). */
  detach(attr: AttrTarget): void {
    const c = this.s.core;
    this.detached = {
      prefix: new Uint8Array(c.memoryBuffer(), c.replyPtr, this.used).slice(), prefixCookie: this.lastCookie(),
      records: [], attr, raw: null,
    };
  }

  /** Writes what a detached target holds into `live` (just reset for the same request). */
  replayInto(live: CoreDirTarget): void {
    const d = this.detached;
    if (d === null) return;
    const c = this.s.core;
    new Uint8Array(c.memoryBuffer(), c.replyPtr, d.prefix.length).set(d.prefix);
    live.used = d.prefix.length;
    live.lastDirent = -1;
    if (d.prefixCookie !== null) {
      // Find the last record of the prefix again (its offset is what lastCookie reads).
      let o = 0;
      while (o < d.prefix.length) {
        const dirent = o + (this.plus ? P.DIRENTPLUS.dirent : 0);
        live.lastDirent = dirent;
        o += direntRecordSize(this.plus, this.s.view().getUint32(c.replyPtr + dirent + P.DIRENT.namelen, true));
      }
    }
    for (const r of d.records) {
      if (r.attr !== null) new Uint8Array(c.memoryBuffer(), c.statxPtr, STATX_SIZE).set(r.attr);
      live.add(r.ino, r.cookie, r.type, r.name, r.entry);
    }
  }

  fill(fd: number): number {
    // Raw records are smaller than fuse_direntplus ones: read about what can be sent, so a batch is mostly used.
    const want = this.plus ? this.size >>> 2 : this.size;
    const len = Math.min(DIRENT_BUF_SIZE, Math.max(1024, want));
    const d = this.detached;
    if (d !== null) {
      d.raw ??= new RawDirents();
      const n = native.getdents64(fd, d.raw.buf, 0, len);
      if (n > 0) d.raw.begin(n);
      return n;
    }
    const c = this.s.core;
    const n = native.getdents64(fd, c.memoryBuffer(), c.direntBufPtr, len);
    if (n > 0) c.direntsBegin(n);
    return n;
  }

  next(): number {
    const d = this.detached;
    if (d !== null) return d.raw === null ? 0 : d.raw.next();
    return this.s.core.direntNext();
  }

  private nameBytes(): Uint8Array {
    return new Uint8Array(this.nameMemory(), this.nameOffset(), this.nameLength());
  }

  name(): string {
    const b = this.nameBytes();
    return nameOf(b, 0, b.length);
  }

  nameMemory(): ArrayBuffer {
    const d = this.detached;
    return d !== null ? d.raw!.buf : this.s.core.memoryBuffer();
  }

  nameOffset(): number {
    const d = this.detached;
    return d !== null ? d.raw!.cur + 19 : this.s.core.direntNamePtr();
  }

  nameLength(): number {
    const d = this.detached;
    return d !== null ? d.raw!.nameLength() : this.s.core.direntNameLen();
  }

  isDotOrDotDot(): boolean {
    const len = this.nameLength();
    if (len !== 1 && len !== 2) return false;
    const d = this.detached;
    const v = d !== null ? d.raw!.view : this.s.view();
    const at = this.nameOffset();
    return v.getUint8(at) === 0x2e && (len === 1 || v.getUint8(at + 1) === 0x2e);
  }

  emit(): boolean {
    const d = this.detached;
    if (d !== null) return this.add(d.raw!.ino, d.raw!.off, d.raw!.type, this.name());
    const w = this.s.core.direntEmit(this.used, this.size);
    if (w === 0) return false;
    this.lastDirent = this.used;
    this.used += w;
    return true;
  }

  fitsPlus(): boolean {
    if (this.detached !== null) return this.used + direntRecordSize(true, this.nameLength()) <= this.size;
    return this.used + this.s.core.direntPlusSize() <= this.size;
  }

  emitPlus(nodeId: number, generation: number, attrFlags = 0): boolean {
    const d = this.detached;
    if (d !== null) {
      return this.add(d.raw!.ino, d.raw!.off, d.raw!.type, this.name(),
        nodeId === 0 ? undefined : { nodeId, generation, attrFlags });
    }
    const s = this.s;
    const c = s.core;
    const w = c.direntPlusEmit(this.used, this.size, nodeId, generation, nodeId === 0 ? 0 : s.entryTimeout,
      nodeId === 0 ? 0 : s.attrTimeout, c.statxPtr);
    if (w === 0) return false;
    const flags = nodeId === 0 ? 0 : attrFlagsAllowed(s, attrFlags);
    if (flags !== 0) s.view().setUint32(c.replyPtr + this.used + P.ENTRY_OUT_ATTR_FLAGS, flags, true);
    this.lastDirent = this.used + P.DIRENTPLUS.dirent;
    this.used += w;
    return true;
  }

  lastCookie(): bigint | null {
    const d = this.detached;
    if (d !== null) return d.records.length > 0 ? d.records[d.records.length - 1].cookie : d.prefixCookie;
    if (this.lastDirent < 0) return null;
    return this.s.view().getBigUint64(this.s.core.replyPtr + this.lastDirent + P.DIRENT.off, true);
  }

  add(ino: number, cookie: bigint, type: number, name: string, entry?: Entry): boolean {
    const s = this.s;
    const c = s.core;
    const nameLen = name.length;
    const head = this.plus ? P.DIRENTPLUS.dirent : 0;
    const rec = direntRecordSize(this.plus, nameLen);
    if (this.used + rec > this.size) return false;
    const d = this.detached;
    if (d !== null) {
      d.records.push({ ino, cookie, type, name, entry, attr: this.plus && entry !== undefined ? d.attr.bytes().slice() : null });
      this.used += rec;
      return true;
    }
    const v = s.view();
    const o = c.replyPtr + this.used;
    new Uint8Array(v.buffer, o, rec).fill(0);
    if (this.plus && entry !== undefined) {
      c.encodeEntryOut(o, entry.nodeId, entry.generation, entry.entryTimeout ?? s.entryTimeout,
        entry.attrTimeout ?? s.attrTimeout, c.statxPtr);
      const flags = attrFlagsAllowed(s, entry.attrFlags);
      if (flags !== 0) v.setUint32(o + P.ENTRY_OUT_ATTR_FLAGS, flags, true);
    }
    const dd = o + head;
    v.setBigUint64(dd + P.DIRENT.ino, BigInt(ino), true);
    v.setBigUint64(dd + P.DIRENT.off, cookie, true);
    v.setUint32(dd + P.DIRENT.namelen, nameLen, true);
    v.setUint32(dd + P.DIRENT.type, type, true);
    putName(name, new Uint8Array(v.buffer, dd + P.DIRENT.name, nameLen));
    this.lastDirent = this.used + head;
    this.used += rec;
    return true;
  }
}

/**
 * GETXATTR/LISTXATTR values: the reply scratch; detached (the request went asynchronous), a private buffer copied
 * into the reply when the request is answered.
 */
class CoreByteTarget implements ByteTarget {
  size = 0;
  private own: ArrayBuffer | null = null;
  constructor(private readonly core: FuseCore) {}

  get buffer(): ArrayBuffer {
    return this.own ?? this.core.memoryBuffer();
  }

  get offset(): number {
    return this.own === null ? this.core.replyPtr : 0;
  }

  detach(): void {
    const own = new ArrayBuffer(Math.max(1, this.size));
    new Uint8Array(own).set(new Uint8Array(this.core.memoryBuffer(), this.core.replyPtr, this.size));
    this.own = own;
  }

  copyInto(live: CoreByteTarget): void {
    if (this.own === null) return;
    new Uint8Array(this.core.memoryBuffer(), this.core.replyPtr, live.size).set(new Uint8Array(this.own, 0, Math.min(live.size, this.size)));
  }
}

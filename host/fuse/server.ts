/**
 * FuseServer: answers the request the core has just popped, through the opcode table (dispatch.ts), and
 * completes it with `core.replySend` or `core.replyNone`. Never throws: a throw from a handler is a bug, logged
 * and answered with EIO.
 *
 * Zero-copy paths: attributes go from `native.statx` into the core's statx scratch and are encoded by the core;
 * READ data goes from the file into guest memory by one preadv over the reply's writable segments; WRITE data
 * goes from guest memory to the file by one pwritev; directory names go from getdents64 into the reply by the core.
 */
import { native } from '../native-loader.js';
import { log } from '../log.js';
import { ConfigError } from '../errors.js';
import { AttrTarget, type DataSource, type DataTarget, type DirTarget, type Entry, type FileSystem } from './filesystem.js';
import { DEFER, NO_REPLY, OPS, attrFlagsAllowed, type Args, type FuseCore, type Session } from './dispatch.js';
import type { ParkedRequest, ReplyParking } from '../virtio/queue-processor.js';
import * as P from './protocol.js';
import { nameOf, putName } from './names.js';
import { DIRENT_BUF_SIZE, REPLY_MAX } from '../core.js';

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

/** First and longest pause between two attempts of a parked request. */
const RETRY_FIRST_MS = 1;
const RETRY_MAX_MS = 50;

/** Seconds for cache=always (virtiofsd uses a day). */
const ALWAYS_TIMEOUT = 86400;
/** Guest page size the limits are stated in (x86-64 and most arm64 guests). */
const GUEST_PAGE = 4096;

export class FuseServer implements Session {
  readonly attr: AttrTarget;
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

  private readonly readSink: CoreDataTarget;
  private readonly writeSrc: CoreDataSource;
  private readonly dirSink: CoreDirTarget;
  private dv: DataView | null = null;
  /** Per queue (LINEAR_QUEUE for /dev/fuse): how its transport parks a request. */
  private readonly parkings = new Map<number, ReplyParking>();
  /** Parked requests by unique (what FUSE_INTERRUPT names). */
  private readonly waiters = new Map<bigint, Waiter>();

  constructor(readonly fs: FileSystem, readonly core: FuseCore, options: FuseServerOptions) {
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

    let want = P.FUSE_ASYNC_READ | P.FUSE_BIG_WRITES | P.FUSE_PARALLEL_DIROPS | P.FUSE_MAX_PAGES;
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
    this.attr = new AttrTarget(() => core.memory.buffer, core.statxPtr);
    this.readSink = new CoreDataTarget(core);
    this.writeSrc = new CoreDataSource(core);
    this.dirSink = new CoreDirTarget(this);
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
    try {
      this.fs.destroy?.();
    } catch (e) {
      log.error('fuse: destroy threw', e);
    }
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

  /** Forgets parked requests of `queue` (-1: all) without answering them. */
  dropParked(queue: number): void {
    for (const [unique, w] of this.waiters) {
      if (queue !== -1 && w.parked.queue !== queue) continue;
      if (w.timer !== null) clearTimeout(w.timer);
      this.waiters.delete(unique);
    }
  }

  /** Parked requests waiting (introspection for tests and logs). */
  get parkedCount(): number {
    return this.waiters.size;
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

  /** A DataView over the core memory, renewed when the memory grew. */
  view(): DataView {
    const buf = this.core.memory.buffer;
    if (this.dv === null || this.dv.buffer !== buf) this.dv = new DataView(buf);
    return this.dv;
  }

  readTarget(size: number): DataTarget {
    this.readSink.size = size;
    return this.readSink;
  }

  writeSource(size: number): DataSource {
    this.writeSrc.size = size;
    return this.writeSrc;
  }

  dirTarget(size: number, plus: boolean): DirTarget {
    this.dirSink.reset(Math.min(size, REPLY_MAX), plus);
    return this.dirSink;
  }

  /** Handles the request the core just popped (queuePop returned 1) and completes it. Never throws. */
  serveCurrent(): void {
    const core = this.core;
    let opcode = 0;
    let noReply = false;
    try {
      opcode = core.reqOpcode();
      const op = OPS.get(opcode);
      noReply = op?.noReply === true;
      this.payloadLen = 0;
      const req: Args = {
        view: this.view(), base: core.argsPtr, len: core.reqArgsLen(), nodeId: core.reqNodeId(),
        ctx: { uid: core.reqUid(), gid: core.reqGid(), pid: core.reqPid() },
      };
      let r: number;
      let args: unknown = null;
      if (!this.initialized && opcode !== P.FUSE_INIT) r = -E.EIO;
      else if (op === undefined) r = -E.ENOSYS;
      else if (op.method !== undefined && this.fs[op.method] === undefined) r = -E.ENOSYS;
      else {
        args = op.decode(req, this);
        // decode answers a negative errno for malformed args; anything else (even a number) is the args.
        if (typeof args === 'number' && args < 0) r = args;
        else if (this.readonly && op.modifies !== undefined &&
          (op.modifies === true || (typeof op.modifies === 'function' && op.modifies(args)))) r = -E.EROFS;
        else r = op.handle(this, args, req);
      }
      if (log.enabled('trace')) {
        log.trace(`fuse ${op?.name ?? opcode} node=${req.nodeId} -> ${r === NO_REPLY ? 'no reply' : r}`);
      }
      if (noReply) {
        core.replyNone();
        return;
      }
      if (r === DEFER) return; // parked by defer(): answered later
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
    } catch (e) {
      log.error(`fuse ${P.OPCODE_NAMES[opcode] ?? opcode}: handler threw`, e);
      try {
        if (noReply) core.replyNone();
        else core.replySend(-E.EIO, 0, 0);
      } catch (e2) {
        log.error('fuse: could not complete the request', e2);
      }
    }
  }
}

/** READ: file data straight into the reply's writable guest segments after the 16-byte out header. */
class CoreDataTarget implements DataTarget {
  size = 0;
  constructor(private readonly core: FuseCore) {}

  fromFd(fd: number, position: number): number {
    const c = this.core;
    const n = c.payloadReadIov(P.OUT_HEADER.SIZE, this.size);
    if (n <= 0) return 0;
    return native.preadv(fd, c.memory.buffer, c.iovPtr, n, position);
  }

  /**
   * Through the reply scratch (a READ has no body: it is free): the core copies it into the guest's buffers,
   * whichever way it reaches guest memory (flat or windowed).
   */
  fromBytes(bytes: Uint8Array): number {
    const c = this.core;
    const n = Math.min(this.size, bytes.length, REPLY_MAX);
    if (n === 0) return 0;
    new Uint8Array(c.memory.buffer, c.replyPtr, n).set(bytes.subarray(0, n));
    return c.payloadScatter(c.replyPtr, P.OUT_HEADER.SIZE, n);
  }
}

/** WRITE: the payload straight from the request's readable guest segments after fuse_write_in. */
class CoreDataSource implements DataSource {
  size = 0;
  constructor(private readonly core: FuseCore) {}

  toFd(fd: number, position: number): number {
    const c = this.core;
    const n = c.payloadWriteIov(P.WRITE_IN.SIZE, this.size);
    if (n <= 0) return 0;
    return native.pwritev(fd, c.memory.buffer, c.iovPtr, n, position);
  }

  /** Through the reply scratch (a WRITE's body, write_out, is encoded only after the filesystem returned). */
  toBytes(): Uint8Array {
    const c = this.core;
    const n = Math.min(this.size, REPLY_MAX);
    if (n === 0) return new Uint8Array(0);
    const got = c.payloadGather(c.replyPtr, P.WRITE_IN.SIZE, n);
    return new Uint8Array(c.memory.buffer, c.replyPtr, got).slice();
  }
}

/** READDIR/READDIRPLUS into the core's reply scratch. One per server, reset per request. */
class CoreDirTarget implements DirTarget {
  size = 0;
  plus = false;
  used = 0;
  /** Offset in the reply of the last appended fuse_dirent (its `off` is at +8), or -1. */
  private lastDirent = -1;

  constructor(private readonly s: FuseServer) {}

  get attr(): AttrTarget {
    return this.s.attr;
  }

  reset(size: number, plus: boolean): void {
    this.size = size;
    this.plus = plus;
    this.used = 0;
    this.lastDirent = -1;
  }

  fill(fd: number): number {
    const c = this.s.core;
    // Raw records are smaller than fuse_direntplus ones: read about what can be sent, so a batch is mostly used.
    const want = this.plus ? this.size >>> 2 : this.size;
    const len = Math.min(DIRENT_BUF_SIZE, Math.max(1024, want));
    const n = native.getdents64(fd, c.memory.buffer, c.direntBufPtr, len);
    if (n > 0) c.direntsBegin(n);
    return n;
  }

  next(): number {
    return this.s.core.direntNext();
  }

  private nameBytes(): Uint8Array {
    const c = this.s.core;
    return new Uint8Array(c.memory.buffer, c.direntNamePtr(), c.direntNameLen());
  }

  name(): string {
    const c = this.s.core;
    const at = c.direntNamePtr();
    return nameOf(new Uint8Array(c.memory.buffer), at, at + c.direntNameLen());
  }

  isDotOrDotDot(): boolean {
    const c = this.s.core;
    const len = c.direntNameLen();
    if (len !== 1 && len !== 2) return false;
    const b = this.nameBytes();
    return b[0] === 0x2e && (len === 1 || b[1] === 0x2e);
  }

  emit(): boolean {
    const w = this.s.core.direntEmit(this.used, this.size);
    if (w === 0) return false;
    this.lastDirent = this.used;
    this.used += w;
    return true;
  }

  fitsPlus(): boolean {
    return this.used + this.s.core.direntPlusSize() <= this.size;
  }

  emitPlus(nodeId: number, generation: number, attrFlags = 0): boolean {
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
    if (this.lastDirent < 0) return null;
    return this.s.view().getBigUint64(this.s.core.replyPtr + this.lastDirent + P.DIRENT.off, true);
  }

  add(ino: number, cookie: bigint, type: number, name: string, entry?: Entry): boolean {
    const s = this.s;
    const c = s.core;
    const nameLen = name.length;
    const head = this.plus ? P.DIRENTPLUS.dirent : 0;
    const rec = (head + P.DIRENT.name + nameLen + 7) & ~7;
    if (this.used + rec > this.size) return false;
    const v = s.view();
    const o = c.replyPtr + this.used;
    new Uint8Array(v.buffer, o, rec).fill(0);
    if (this.plus && entry !== undefined) {
      c.encodeEntryOut(o, entry.nodeId, entry.generation, entry.entryTimeout ?? s.entryTimeout,
        entry.attrTimeout ?? s.attrTimeout, c.statxPtr);
    }
    const d = o + head;
    v.setBigUint64(d + P.DIRENT.ino, BigInt(ino), true);
    v.setBigUint64(d + P.DIRENT.off, cookie, true);
    v.setUint32(d + P.DIRENT.namelen, nameLen, true);
    v.setUint32(d + P.DIRENT.type, type, true);
    putName(name, new Uint8Array(v.buffer, d + P.DIRENT.name, nameLen));
    this.lastDirent = this.used + head;
    this.used += rec;
    return true;
  }
}

/**
 * The shape of one dispatch table entry (`Op`) and what its code sees: the request's args (`Args`), the server's
 * per-session state and sinks (`OpContext`) and the core's request/reply surface (`FuseCore`). The op families
 * (entries.ts, attributes.ts, data.ts, ...) build their entries from these; host/fuse/dispatch.ts assembles them and
 * host/fuse/server.ts runs them.
 *
 * An entry's `decode` turns the args (in the core's ARGS scratch) into plain values or -errno; `handle` calls the
 * FileSystem and writes the reply body into the core's REPLY scratch, returning its length, a negative errno,
 * NO_REPLY or DEFER.
 */
import type { AttrTarget, ByteTarget, Context, DataSource, DataTarget, DirTarget, FileSystem } from '../filesystem.js';
import type { SettledFileSystem } from '../fs-guard.js';

/** A handler's "do not reply" result (FORGET, BATCH_FORGET, INTERRUPT). Not an errno. */
export const NO_REPLY = -0x7fff_ffff;
/** A handler's "answer later" result (OpContext.defer parked the request). Not an errno. */
export const DEFER = -0x10001;

/** The core surface the dispatch code needs (host/core.ts provides it). */
export interface FuseCore {
  /** A DataView over the current memory buffer. */
  view(): DataView;
  /** The current memory buffer (cached: `memory.buffer` is a runtime call). */
  memoryBuffer(): ArrayBuffer;
  readonly argsPtr: number;
  readonly replyPtr: number;
  readonly iovPtr: number;
  readonly statxPtr: number;
  readonly direntBufPtr: number;
  /** The popped request's fuse_in_header (protocol.ts IN_HEADER offsets). */
  readonly inHeaderPtr: number;
  reqQueue(): number;
  reqUnique(): bigint;
  replySend(error: number, bodyLen: number, payloadLen: number): number;
  replyNone(): void;
  payloadReadIov(skip: number, maxBytes: number): number;
  payloadWriteIov(skip: number, maxBytes: number): number;
  payloadScatter(src: number, skip: number, len: number): number;
  payloadGather(dst: number, skip: number, len: number): number;
  encodeAttrOut(dst: number, attrTimeout: number, statx: number): number;
  encodeEntryOut(dst: number, nodeid: number, generation: number, entryTimeout: number, attrTimeout: number,
                 statx: number): number;
  direntsBegin(len: number): void;
  direntNext(): number;
  direntNamePtr(): number;
  direntNameLen(): number;
  direntPlusSize(): number;
  direntEmit(dstOffset: number, cap: number): number;
  direntPlusEmit(dstOffset: number, cap: number, nodeid: number, generation: number, entryTimeout: number,
                 attrTimeout: number, statx: number): number;
}

/** What handlers see of the server: the filesystem, the core, the negotiated state and the per-request sinks. */
export interface OpContext {
  /** The served FileSystem behind the server's guard (results settled and checked; see fs-guard.ts). */
  readonly fs: SettledFileSystem;
  readonly core: FuseCore;
  /** The core's statx scratch. */
  readonly attr: AttrTarget;
  /** Cache policy (seconds / FOPEN_* bits). */
  readonly entryTimeout: number;
  readonly attrTimeout: number;
  readonly fileOpenFlags: number;
  readonly dirOpenFlags: number;
  /** Set by INIT, cleared by DESTROY. */
  initialized: boolean;
  /** Negotiated minor version. */
  minor: number;
  /** Bytes of READ data already placed in guest memory after the (empty) body. */
  payloadLen: number;
  /** INIT: which flags we offer and the limits we state. */
  readonly wantFlags: number;
  /** Set by INIT: the flags both sides agreed on (wantFlags & the kernel's). */
  negotiatedFlags: number;
  readonly maxWrite: number;
  readonly maxPages: number;
  /** Answer EROFS to every request that would change the filesystem. */
  readonly readonly: boolean;
  readTarget(size: number): DataTarget;
  writeSource(size: number): DataSource;
  dirTarget(size: number, plus: boolean): DirTarget;
  /** GETXATTR/LISTXATTR: where the value goes (the reply scratch, at most REPLY_MAX bytes). */
  byteTarget(size: number): ByteTarget;
  /** Whether the current request can be parked (its transport answers later). */
  canDefer(): boolean;
  /**
   * Parks the current request until `retry` answers something other than -EAGAIN (that becomes its header-only
   * reply), or it is interrupted (-EINTR). Returns the DEFER marker the handler passes on.
   */
  defer(retry: () => number): number;
  /** A parked request whose result is ready: retry it now rather than at its next backoff step. */
  wake?(unique: bigint): void;
  /** FUSE_INTERRUPT of `unique`: a parked request is answered -EINTR; others completed long ago. */
  interrupt(unique: bigint): void;
  /** DESTROY: parked requests are forgotten. */
  dropParked(queue: number): void;
}

/** The current request's args: a DataView and where they are. */
export interface Args {
  readonly view: DataView;
  /** Absolute offset of the args in the view. */
  readonly base: number;
  readonly len: number;
  readonly nodeId: number;
  readonly ctx: Context;
}

export interface Op<A = unknown> {
  readonly name: string;
  /** The FileSystem method this opcode needs; when missing, the answer is ENOSYS (no decode). */
  readonly method?: keyof FileSystem;
  /** No reply at all (FORGET, BATCH_FORGET, INTERRUPT): errors are dropped too. */
  readonly noReply?: boolean;
  /**
   * The request changes the filesystem (answered EROFS on a read-only share before the method is called); a
   * function decides from the decoded args (OPEN for writing or truncating).
   */
  readonly modifies?: boolean | ((args: A) => boolean);
  /** The args as plain values, or a negative errno when they are malformed (a numeric A is always >= 0). */
  decode(a: Args, s: OpContext): A | number;
  handle(s: OpContext, a: A, req: Args): number;
  /**
   * The reply of length `bodyLen` could not be delivered (the guest's buffers were too small): take back what it
   * gave the guest (lookup counts, open handles), since the kernel will never FORGET/RELEASE it.
   */
  undo?(s: OpContext, a: A, req: Args, bodyLen: number): void;
}

/** A table entry from a typed one (the table holds them side by side whatever their args). */
export function op<A>(o: Op<A>): Op<unknown> {
  return o as Op<unknown>;
}

/** One row of the dispatch table: an opcode and its entry. Each op family exports its rows. */
export type OpRow = readonly [opcode: number, op: Op<unknown>];

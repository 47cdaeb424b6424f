/**
 * The FUSE opcode table: one `{ name, method, decode, handle }` per opcode we answer. `decode` turns the args
 * (in the core's ARGS scratch) into plain values or -errno; `handle` calls the FileSystem and writes the reply body
 * into the core's REPLY scratch, returning its length, a negative errno, or NO_REPLY. The server (server.ts) owns
 * the loop around it: lookup, the INIT gate, ENOSYS for what is missing, replySend/replyNone, and catching throws.
 *
 * GETLK/SETLK/SETLKW arrive only when FUSE_POSIX_LOCKS was negotiated (FuseServerOptions.posixLocks), and SETLK/
 * SETLKW with FUSE_LK_FLOCK (a BSD flock, served by FileSystem.flock) only with FUSE_FLOCK_LOCKS (flockLocks).
 *
 * Opcodes not in the table are answered ENOSYS, which the kernel remembers (it stops sending them and falls back to
 * local behaviour): POLL (the kernel then treats files as always ready), BMAP (block devices
 * only), NOTIFY_REPLY (we never send a retrieve notification), CUSE_INIT; SETUPMAPPING/REMOVEMAPPING without a
 * DAX window (host/dax/dax-device.ts; with one they are answered once the frontend mapped). IOCTL is answered ENOTTY
 * (no ioctl is passed through).
 */
import { native } from '../native-loader.js';
import type {
  ByteTarget, Context, CreateResult, DataSource, DataTarget, DirTarget, Entry, FileLock, FileSystem, SetAttr, StatFs,
} from './filesystem.js';
import { AttrTarget } from './filesystem.js';
import type { SettledFileSystem } from './fs-guard.js';
import * as P from './protocol.js';
import { REPLY_MAX } from '../core.js';
import { nameOf, putName } from './names.js';
import { DAX_MAP_ALIGNMENT_LOG2, FUSE_REMOVEMAPPING_MAX_ENTRY, daxOf } from '../dax/dax-device.js';

const C = native.constants;
const E = C.errno;

/** A handler's "do not reply" result (FORGET, BATCH_FORGET, INTERRUPT). Not an errno. */
export const NO_REPLY = -0x7fff_ffff;
/** A handler's "answer later" result (Session.defer parked the request). Not an errno. */
export const DEFER = -0x10001;

/** The core surface the dispatch code needs (host/core.ts provides it). */
export interface FuseCore {
  readonly memory: WebAssembly.Memory;
  /** A DataView over the current memory buffer. */
  view(): DataView;
  readonly argsPtr: number;
  readonly replyPtr: number;
  readonly iovPtr: number;
  readonly statxPtr: number;
  readonly direntBufPtr: number;
  reqOpcode(): number;
  reqNodeId(): number;
  reqUid(): number;
  reqGid(): number;
  reqPid(): number;
  reqArgsLen(): number;
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
export interface Session {
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
  decode(a: Args, s: Session): A | number;
  handle(s: Session, a: A, req: Args): number;
  /**
   * The reply of length `bodyLen` could not be delivered (the guest's buffers were too small): take back what it
   * gave the guest (lookup counts, open handles), since the kernel will never FORGET/RELEASE it.
   */
  undo?(s: Session, a: A, req: Args, bodyLen: number): void;
}

// ---- decoding helpers ---------------------------------------------------------------------------------------------

const u32 = (a: Args, off: number): number => a.view.getUint32(a.base + off, true);
/** A u64 as a number (file handles, node ids, offsets, sizes: all below 2^53 in practice; larger -> imprecise). */
const u64 = (a: Args, off: number): number => Number(a.view.getBigUint64(a.base + off, true));
const big = (a: Args, off: number): bigint => a.view.getBigUint64(a.base + off, true);

/** `count` NUL-terminated names (byte strings, names.ts) starting at args offset `off`; -EINVAL if unterminated. */
function cstrings(a: Args, off: number, count: number): string[] | number {
  const bytes = new Uint8Array(a.view.buffer, a.base, a.len);
  const out: string[] = [];
  let pos = off;
  for (let i = 0; i < count; i++) {
    if (pos > a.len) return -E.EINVAL;
    const nul = bytes.indexOf(0, pos);
    if (nul < 0) return -E.EINVAL;
    out.push(nameOf(bytes, pos, nul));
    pos = nul + 1;
  }
  return out;
}

function need(a: Args, size: number): number {
  return a.len < size ? -E.EINVAL : 0;
}

// ---- reply helpers -------------------------------------------------------------------------------------------------

function replyView(s: Session): DataView {
  return s.core.view();
}

/** fuse_write_out { size, padding }: the reply of WRITE and COPY_FILE_RANGE. Returns its length. */
function writeOutReply(s: Session, written: number): number {
  const v = replyView(s);
  v.setUint32(s.core.replyPtr + P.WRITE_OUT.size, written, true);
  v.setUint32(s.core.replyPtr + P.WRITE_OUT.padding, 0, true);
  return P.WRITE_OUT.SIZE;
}

function entryReply(s: Session, r: Entry | number): number {
  if (typeof r === 'number') return r;
  const c = s.core;
  const n = c.encodeEntryOut(c.replyPtr, r.nodeId, r.generation, r.entryTimeout ?? s.entryTimeout,
    r.attrTimeout ?? s.attrTimeout, c.statxPtr);
  // The core writes fuse_attr.flags as 0; FUSE_ATTR_SUBMOUNT comes from the filesystem.
  const flags = attrFlagsAllowed(s, r.attrFlags);
  if (flags !== 0) replyView(s).setUint32(c.replyPtr + P.ENTRY_OUT_ATTR_FLAGS, flags, true);
  return n;
}

/** FUSE_ATTR_DAX when the --inode-dax policy picks the file in the statx scratch (only with FUSE_HAS_INODE_DAX). */
function daxAttrFlag(s: Session): number {
  const dax = daxOf(s);
  if (dax === undefined || !dax.inodeDaxNegotiated) return 0;
  const v = replyView(s);
  const mode = v.getUint16(s.core.statxPtr + 28, true); // struct statx: stx_mode
  const size = Number(v.getBigUint64(s.core.statxPtr + 40, true)); // stx_size
  return dax.wantsDax(mode, size) ? P.FUSE_ATTR_DAX : 0;
}

/** After a request that may have changed a file's size (SETATTR size, WRITE, FALLOCATE, COPY_FILE_RANGE, OPEN with
 *  O_TRUNC): the DAX window follows (a no-op without mappings of that file). */
function daxSizeChanged(s: Session, nodeId: number, r: number): number {
  if (r >= 0) daxOf(s)?.sizeChanged(nodeId);
  return r;
}

/**
 * A DAX answer: a number now, or a promise the frontend's ack resolves. The request is parked until then
 * (Session.defer, woken when the promise settles); where the transport cannot park, EOPNOTSUPP before anything
 * is sent.
 */
function daxAnswer(s: Session, start: () => number | Promise<number>): number {
  if (!s.canDefer()) return -E.EOPNOTSUPP;
  const r = start();
  if (typeof r === 'number') return r;
  let settled: number | null = null;
  const unique = s.core.reqUnique();
  r.then((v) => { settled = v; }, () => { settled = -E.EIO; }).finally(() => s.wake?.(unique));
  return s.defer(() => settled ?? -E.EAGAIN);
}

/**
 * The fuse_attr.flags of an entry whose attributes are in the statx scratch: the bits of `wanted` that INIT allows
 * (FUSE_ATTR_SUBMOUNT only with FUSE_SUBMOUNTS), plus FUSE_ATTR_DAX when the --inode-dax policy picks the file.
 */
export function attrFlagsAllowed(s: Session, wanted: number | undefined): number {
  const submount = wanted && (s.negotiatedFlags & P.FUSE_SUBMOUNTS) !== 0 ? wanted & P.FUSE_ATTR_SUBMOUNT : 0;
  return submount | daxAttrFlag(s);
}

function attrReply(s: Session, r: number): number {
  if (r < 0) return r;
  const n = s.core.encodeAttrOut(s.core.replyPtr, s.attrTimeout, s.core.statxPtr);
  const dax = daxAttrFlag(s); // so a guest sees a file's DAX state change (fuse_dax_dontcache)
  if (dax !== 0) replyView(s).setUint32(s.core.replyPtr + P.ATTR_OUT_ATTR_FLAGS, dax, true);
  return n;
}

function openOut(s: Session, at: number, fh: number, flags: number): number {
  const v = replyView(s);
  const o = s.core.replyPtr + at;
  v.setBigUint64(o + P.OPEN_OUT.fh, BigInt(fh), true);
  v.setUint32(o + P.OPEN_OUT.openFlags, flags >>> 0, true);
  v.setUint32(o + P.OPEN_OUT.padding, 0, true);
  return P.OPEN_OUT.SIZE;
}

function statusReply(r: number): number {
  return r < 0 ? r : 0;
}

// ---- undoing an undelivered reply ------------------------------------------------------------------------------

function undoEntry(s: Session, at = 0): void {
  const nodeId = Number(replyView(s).getBigUint64(s.core.replyPtr + at, true));
  if (nodeId !== 0) s.fs.forget?.(nodeId, 1);
}

function undoOpen(s: Session, req: Args, at: number, dir: boolean): void {
  const fh = Number(replyView(s).getBigUint64(s.core.replyPtr + at + P.OPEN_OUT.fh, true));
  if (dir) s.fs.releasedir?.(req.ctx, req.nodeId, fh);
  else s.fs.release?.(req.ctx, req.nodeId, fh, 0, 0);
}

function undoDirentPlus(s: Session, bodyLen: number): void {
  const v = replyView(s);
  const base = s.core.replyPtr;
  for (let o = 0; o + P.DIRENTPLUS.name <= bodyLen;) {
    undoEntry(s, o);
    const namelen = v.getUint32(base + o + P.DIRENTPLUS.dirent + P.DIRENT.namelen, true);
    o += (P.DIRENTPLUS.name + namelen + 7) & ~7;
  }
}

/** CREATE/TMPFILE: the new node's release goes out first, then its lookup is dropped. */
function undoCreate(s: Session, _d: unknown, req: Args): void {
  const nodeId = Number(replyView(s).getBigUint64(s.core.replyPtr, true));
  undoOpen(s, { ...req, nodeId }, P.ENTRY_OUT_SIZE, false);
  undoEntry(s);
}

function createReply(s: Session, r: CreateResult | number): number {
  const n = entryReply(s, r);
  if (typeof r === 'number' || n < 0) return n;
  return n + openOut(s, n, r.fh, (r.openFlags ?? 0) | s.fileOpenFlags);
}

// ---- decoded argument shapes -----------------------------------------------------------------------------------------

interface NameArgs { name: string }
interface FhArgs { fh: number }
interface Init { major: number; minor: number; maxReadahead: number; flags: number; flags2: number }
interface MknodArgs { mode: number; rdev: number; umask: number; name: string }
interface MkdirArgs { mode: number; umask: number; name: string }
interface RenameArgs { newDir: number; flags: number; name: string; newName: string }
interface ReadArgs { fh: number; offset: number; cookie: bigint; size: number; flags: number }
interface CreateArgs { flags: number; mode: number; umask: number; openFlags: number; name: string }
interface XattrGetArgs { size: number; name: string }
interface XattrSetArgs { name: string; value: Uint8Array; flags: number; setxattrFlags: number }
interface FallocateArgs { fh: number; offset: number; length: number; mode: number }
interface LkArgs { fh: number; owner: bigint; lock: FileLock; flock: boolean }
interface LseekArgs { fh: number; offset: bigint; whence: number }
interface CopyArgs { fhIn: number; offIn: number; nodeOut: number; fhOut: number; offOut: number; len: number; flags: number }

/** Largest COPY_FILE_RANGE we do in one request: the reply's size field is a u32 (kept page-aligned). */
const COPY_MAX = 0xffff_f000;

/** GETXATTR/LISTXATTR: `size` 0 -> fuse_getxattr_out with the needed size; else the bytes themselves. */
function xattrReply(s: Session, asked: number, r: number): number {
  if (r < 0) return r;
  if (asked === 0) {
    const v = replyView(s);
    v.setUint32(s.core.replyPtr + P.GETXATTR_OUT.size, r, true);
    v.setUint32(s.core.replyPtr + P.GETXATTR_OUT.padding, 0, true);
    return P.GETXATTR_OUT.SIZE;
  }
  return r > asked ? -E.ERANGE : r;
}

function lkDecoder(a: Args, s: Session): LkArgs | number {
  const bad = need(a, P.LK_IN.SIZE);
  if (bad < 0) return bad;
  const flock = (u32(a, P.LK_IN.lkFlags) & P.FUSE_LK_FLOCK) !== 0;
  // Not offered: the guest keeps that kind of lock itself.
  if ((s.wantFlags & (flock ? P.FUSE_FLOCK_LOCKS : P.FUSE_POSIX_LOCKS)) === 0) return -E.ENOSYS;
  const lock: FileLock = { start: big(a, P.LK_IN.start), end: big(a, P.LK_IN.end), type: u32(a, P.LK_IN.type),
    pid: u32(a, P.LK_IN.pid) };
  if (lock.type !== C.F_RDLCK && lock.type !== C.F_WRLCK && lock.type !== C.F_UNLCK) return -E.EINVAL;
  if (lock.start > P.OFFSET_MAX || lock.end > P.OFFSET_MAX || lock.end < lock.start) return -E.EINVAL;
  return { fh: u64(a, P.LK_IN.fh), owner: big(a, P.LK_IN.owner), lock, flock };
}

/**
 * SETLK/SETLKW: a POSIX lock through setlk, a BSD flock (FUSE_LK_FLOCK) through flock, always without waiting.
 * SETLKW that meets a conflict is parked (Session.defer): the server tries again until the lock is free, the guest
 * interrupts it (EINTR) or the queue goes away; where the transport cannot park, EOPNOTSUPP as before.
 */
function setlkReply(s: Session, d: LkArgs, req: Args, sleep: boolean): number {
  const fs = s.fs;
  if (d.flock && fs.flock === undefined) return -E.ENOSYS;
  const attempt = d.flock ? () => fs.flock!(req.ctx, req.nodeId, d.fh, d.owner, d.lock.type, sleep)
    : () => fs.setlk!(req.ctx, req.nodeId, d.fh, d.owner, d.lock, sleep);
  const r = attempt();
  if (r === -E.EAGAIN && sleep) return s.canDefer() ? s.defer(attempt) : -E.EOPNOTSUPP;
  return statusReply(r);
}

function replyBytes(s: Session, size: number): ByteTarget {
  return s.byteTarget(size);
}

const noArgs = (): null => null;

function nameDecoder(a: Args): NameArgs | number {
  const n = cstrings(a, 0, 1);
  return typeof n === 'number' ? n : { name: n[0] };
}

function readDecoder(a: Args): ReadArgs | number {
  const bad = need(a, P.READ_IN.SIZE);
  if (bad < 0) return bad;
  return {
    fh: u64(a, P.READ_IN.fh), offset: u64(a, P.READ_IN.offset), cookie: big(a, P.READ_IN.offset),
    size: u32(a, P.READ_IN.size), flags: u32(a, P.READ_IN.flags),
  };
}

function fhDecoder(a: Args): FhArgs | number {
  const bad = need(a, 8);
  return bad < 0 ? bad : { fh: u64(a, 0) };
}

function renameDecoder(a: Args, headerSize: number, withFlags: boolean): RenameArgs | number {
  const bad = need(a, headerSize);
  if (bad < 0) return bad;
  const names = cstrings(a, headerSize, 2);
  if (typeof names === 'number') return names;
  return { newDir: u64(a, 0), flags: withFlags ? u32(a, P.RENAME2_IN.flags) : 0, name: names[0], newName: names[1] };
}

function readdirHandler(plus: boolean) {
  return (s: Session, d: ReadArgs, req: Args): number => {
    const target = s.dirTarget(d.size, plus);
    const r = plus ? s.fs.readdirplus!(req.ctx, req.nodeId, d.fh, d.cookie, target)
      : s.fs.readdir!(req.ctx, req.nodeId, d.fh, d.cookie, target);
    return r < 0 ? r : target.used;
  };
}

// ---- INIT ---------------------------------------------------------------------------------------------------------

function handleInit(s: Session, d: Init): number {
  const v = replyView(s);
  const o = s.core.replyPtr;
  new Uint8Array(v.buffer, o, P.INIT_OUT.SIZE).fill(0);
  if (d.major < P.FUSE_KERNEL_VERSION) return -E.EPROTO;
  v.setUint32(o + P.INIT_OUT.major, P.FUSE_KERNEL_VERSION, true);
  v.setUint32(o + P.INIT_OUT.minor, P.FUSE_KERNEL_MINOR_VERSION, true);
  // A newer major: state ours and wait for the kernel to retry with it.
  if (d.major > P.FUSE_KERNEL_VERSION) return P.INIT_OUT.COMPAT_SIZE;

  const minor = Math.min(d.minor, P.FUSE_KERNEL_MINOR_VERSION);
  const kernelFlags = (d.flags >>> 0) + ((d.flags & P.FUSE_INIT_EXT) !== 0 ? (d.flags2 >>> 0) * 2 ** 32 : 0);
  if (s.fs.init) {
    const r = s.fs.init({ major: d.major, minor, kernelFlags });
    if (r < 0) return r;
  }
  let flags = (s.wantFlags & d.flags) >>> 0;
  const dax = daxOf(s);
  let flags2 = 0;
  if (dax !== undefined) {
    dax.reset(); // a new session: the guest has no mapping
    flags = (flags | (d.flags & P.FUSE_MAP_ALIGNMENT)) >>> 0;
    dax.inodeDaxNegotiated = dax.inodeDax.kind !== 'never' && (d.flags2 & P.FUSE2_HAS_INODE_DAX) !== 0;
    if (dax.inodeDaxNegotiated) {
      flags = (flags | P.FUSE_INIT_EXT) >>> 0;
      flags2 = P.FUSE2_HAS_INODE_DAX;
    }
  }
  s.minor = minor;
  s.negotiatedFlags = flags;
  s.initialized = true;
  v.setUint32(o + P.INIT_OUT.minor, minor, true);
  v.setUint32(o + P.INIT_OUT.maxReadahead, d.maxReadahead, true);
  v.setUint32(o + P.INIT_OUT.flags, flags, true);
  v.setUint16(o + P.INIT_OUT.maxBackground, 0, true); // 0: the kernel keeps its defaults
  v.setUint16(o + P.INIT_OUT.congestionThreshold, 0, true);
  v.setUint32(o + P.INIT_OUT.maxWrite, s.maxWrite, true);
  v.setUint32(o + P.INIT_OUT.timeGran, 1, true); // nanosecond timestamps
  v.setUint16(o + P.INIT_OUT.maxPages, (flags & P.FUSE_MAX_PAGES) !== 0 ? s.maxPages : 0, true);
  // DAX: the window's offsets and lengths are multiples of the host page; flags2 only for per-inode DAX.
  if ((flags & P.FUSE_MAP_ALIGNMENT) !== 0) v.setUint16(o + P.INIT_OUT.mapAlignment, DAX_MAP_ALIGNMENT_LOG2, true);
  v.setUint32(o + P.INIT_OUT.flags2, flags2, true);
  if (minor < 5) return P.INIT_OUT.COMPAT_SIZE;
  if (minor < 23) return P.INIT_OUT.COMPAT_22_SIZE;
  return P.INIT_OUT.SIZE;
}

// ---- the table ------------------------------------------------------------------------------------------------------

function op<A>(o: Op<A>): Op<unknown> {
  return o as Op<unknown>;
}

const table: Array<[number, Op<unknown>]> = [
  [P.FUSE_INIT, op<Init>({
    name: 'INIT',
    decode: (a) => {
      const bad = need(a, P.INIT_IN.COMPAT_SIZE);
      if (bad < 0) return bad;
      const flags = u32(a, P.INIT_IN.flags);
      return {
        major: u32(a, P.INIT_IN.major), minor: u32(a, P.INIT_IN.minor),
        maxReadahead: u32(a, P.INIT_IN.maxReadahead), flags,
        flags2: a.len >= P.INIT_IN.flags2 + 4 && (flags & P.FUSE_INIT_EXT) !== 0 ? u32(a, P.INIT_IN.flags2) : 0,
      };
    },
    handle: handleInit,
  })],

  [P.FUSE_DESTROY, op<null>({
    name: 'DESTROY',
    decode: noArgs,
    handle: (s) => {
      s.dropParked(-1);
      daxOf(s)?.reset();
      s.fs.destroy?.();
      s.initialized = false;
      return 0;
    },
  })],

  [P.FUSE_LOOKUP, op<NameArgs>({
    name: 'LOOKUP', method: 'lookup', undo: (s) => undoEntry(s), decode: nameDecoder,
    handle: (s, d, req) => entryReply(s, s.fs.lookup!(req.ctx, req.nodeId, d.name, s.attr)),
  })],

  [P.FUSE_FORGET, op<number>({
    name: 'FORGET', method: 'forget', noReply: true,
    decode: (a) => (a.len < P.FORGET_IN.SIZE ? -E.EINVAL : u64(a, P.FORGET_IN.nlookup)),
    handle: (s, nlookup, req) => {
      s.fs.forget!(req.nodeId, nlookup);
      return NO_REPLY;
    },
  })],

  [P.FUSE_BATCH_FORGET, op<number>({
    name: 'BATCH_FORGET', method: 'forget', noReply: true,
    decode: (a) => {
      if (a.len < P.BATCH_FORGET_IN.SIZE) return -E.EINVAL;
      // Only as many entries as are really there.
      const room = Math.floor((a.len - P.BATCH_FORGET_IN.SIZE) / P.FORGET_ONE.SIZE);
      return Math.min(u32(a, P.BATCH_FORGET_IN.count), room);
    },
    handle: (s, count, req) => {
      for (let i = 0; i < count; i++) {
        const at = P.BATCH_FORGET_IN.SIZE + i * P.FORGET_ONE.SIZE;
        s.fs.forget!(u64(req, at + P.FORGET_ONE.nodeid), u64(req, at + P.FORGET_ONE.nlookup));
      }
      return NO_REPLY;
    },
  })],

  [P.FUSE_INTERRUPT, op<bigint>({
    // Requests complete synchronously except a parked SETLKW; for any other target the answer went out already.
    name: 'INTERRUPT', noReply: true,
    decode: (a) => (a.len < P.INTERRUPT_IN.SIZE ? -E.EINVAL : big(a, P.INTERRUPT_IN.unique)),
    handle: (s, unique) => {
      s.interrupt(unique);
      return NO_REPLY;
    },
  })],

  [P.FUSE_GETATTR, op<{ fh: number | undefined }>({
    name: 'GETATTR', method: 'getattr',
    decode: (a) => {
      if (a.len < P.GETATTR_IN.SIZE) return { fh: undefined }; // before 7.9 there were no args
      return { fh: (u32(a, P.GETATTR_IN.getattrFlags) & P.FUSE_GETATTR_FH) !== 0 ? u64(a, P.GETATTR_IN.fh) : undefined };
    },
    handle: (s, d, req) => attrReply(s, s.fs.getattr!(req.ctx, req.nodeId, d.fh, s.attr)),
  })],

  [P.FUSE_SETATTR, op<SetAttr>({
    name: 'SETATTR', method: 'setattr', modifies: true,
    decode: (a) => {
      const bad = need(a, P.SETATTR_IN.SIZE);
      if (bad < 0) return bad;
      const S = P.SETATTR_IN;
      const valid = u32(a, S.valid);
      const set: SetAttr = { valid };
      if (valid & P.FATTR_FH) set.fh = u64(a, S.fh);
      if (valid & P.FATTR_MODE) set.mode = u32(a, S.mode);
      if (valid & P.FATTR_UID) set.uid = u32(a, S.uid);
      if (valid & P.FATTR_GID) set.gid = u32(a, S.gid);
      if (valid & P.FATTR_SIZE) set.size = u64(a, S.size);
      if (valid & P.FATTR_ATIME_NOW) set.atime = 'now';
      else if (valid & P.FATTR_ATIME) set.atime = { sec: Number(a.view.getBigInt64(a.base + S.atime, true)), nsec: u32(a, S.atimensec) };
      if (valid & P.FATTR_MTIME_NOW) set.mtime = 'now';
      else if (valid & P.FATTR_MTIME) set.mtime = { sec: Number(a.view.getBigInt64(a.base + S.mtime, true)), nsec: u32(a, S.mtimensec) };
      if (valid & P.FATTR_KILL_SUIDGID) set.killSuidgid = true;
      const nsecBad = (t: SetAttr['atime']): boolean => t !== undefined && t !== 'now' && t.nsec > 999_999_999;
      if (nsecBad(set.atime) || nsecBad(set.mtime)) return -E.EINVAL;
      return set;
    },
    handle: (s, d, req) => {
      const r = attrReply(s, s.fs.setattr!(req.ctx, req.nodeId, d, s.attr));
      return d.size !== undefined ? daxSizeChanged(s, req.nodeId, r) : r;
    },
  })],

  [P.FUSE_READLINK, op<null>({
    name: 'READLINK', method: 'readlink', decode: noArgs,
    handle: (s, _d, req) => {
      const r = s.fs.readlink!(req.ctx, req.nodeId);
      if (typeof r === 'number') return r;
      const c = s.core;
      if (r.length > REPLY_MAX) return -E.ENAMETOOLONG;
      return putName(r, new Uint8Array(c.memory.buffer, c.replyPtr, r.length));
    },
  })],

  [P.FUSE_SYMLINK, op<{ name: string; target: string }>({
    name: 'SYMLINK', method: 'symlink', modifies: true, undo: (s) => undoEntry(s),
    decode: (a) => {
      const n = cstrings(a, 0, 2); // the new entry's name, then the link target
      return typeof n === 'number' ? n : { name: n[0], target: n[1] };
    },
    handle: (s, d, req) => entryReply(s, s.fs.symlink!(req.ctx, req.nodeId, d.name, d.target, s.attr)),
  })],

  [P.FUSE_MKNOD, op<MknodArgs>({
    name: 'MKNOD', method: 'mknod', modifies: true, undo: (s) => undoEntry(s),
    decode: (a, s) => {
      const head = s.minor >= 12 ? P.MKNOD_IN.SIZE : P.MKNOD_IN.COMPAT_SIZE;
      const bad = need(a, head);
      if (bad < 0) return bad;
      const n = cstrings(a, head, 1);
      if (typeof n === 'number') return n;
      return { mode: u32(a, P.MKNOD_IN.mode), rdev: u32(a, P.MKNOD_IN.rdev),
        umask: head === P.MKNOD_IN.SIZE ? u32(a, P.MKNOD_IN.umask) : 0, name: n[0] };
    },
    handle: (s, d, req) => entryReply(s, s.fs.mknod!(req.ctx, req.nodeId, d.name, d.mode, d.rdev, d.umask, s.attr)),
  })],

  [P.FUSE_MKDIR, op<MkdirArgs>({
    name: 'MKDIR', method: 'mkdir', modifies: true, undo: (s) => undoEntry(s),
    decode: (a) => {
      const bad = need(a, P.MKDIR_IN.SIZE);
      if (bad < 0) return bad;
      const n = cstrings(a, P.MKDIR_IN.SIZE, 1);
      if (typeof n === 'number') return n;
      return { mode: u32(a, P.MKDIR_IN.mode), umask: u32(a, P.MKDIR_IN.umask), name: n[0] };
    },
    handle: (s, d, req) => entryReply(s, s.fs.mkdir!(req.ctx, req.nodeId, d.name, d.mode, d.umask, s.attr)),
  })],

  [P.FUSE_UNLINK, op<NameArgs>({
    name: 'UNLINK', method: 'unlink', modifies: true, decode: nameDecoder,
    handle: (s, d, req) => statusReply(s.fs.unlink!(req.ctx, req.nodeId, d.name)),
  })],

  [P.FUSE_RMDIR, op<NameArgs>({
    name: 'RMDIR', method: 'rmdir', modifies: true, decode: nameDecoder,
    handle: (s, d, req) => statusReply(s.fs.rmdir!(req.ctx, req.nodeId, d.name)),
  })],

  [P.FUSE_RENAME, op<RenameArgs>({
    name: 'RENAME', method: 'rename', modifies: true, decode: (a) => renameDecoder(a, P.RENAME_IN.SIZE, false),
    handle: (s, d, req) => statusReply(s.fs.rename!(req.ctx, req.nodeId, d.name, d.newDir, d.newName, 0)),
  })],

  [P.FUSE_RENAME2, op<RenameArgs>({
    name: 'RENAME2', method: 'rename', modifies: true, decode: (a) => renameDecoder(a, P.RENAME2_IN.SIZE, true),
    handle: (s, d, req) => statusReply(s.fs.rename!(req.ctx, req.nodeId, d.name, d.newDir, d.newName, d.flags)),
  })],

  [P.FUSE_LINK, op<{ oldNode: number; name: string }>({
    name: 'LINK', method: 'link', modifies: true, undo: (s) => undoEntry(s),
    decode: (a) => {
      const bad = need(a, P.LINK_IN.SIZE);
      if (bad < 0) return bad;
      const n = cstrings(a, P.LINK_IN.SIZE, 1);
      return typeof n === 'number' ? n : { oldNode: u64(a, P.LINK_IN.oldnodeid), name: n[0] };
    },
    // The request's node is the new parent.
    handle: (s, d, req) => entryReply(s, s.fs.link!(req.ctx, d.oldNode, req.nodeId, d.name, s.attr)),
  })],

  [P.FUSE_OPEN, op<{ flags: number; openFlags: number }>({
    name: 'OPEN', method: 'open', undo: (s, _d, req) => undoOpen(s, req, 0, false),
    modifies: (d) => (d.flags & C.O_ACCMODE) !== C.O_RDONLY || (d.flags & C.O_TRUNC) !== 0,
    decode: (a) => (a.len < P.OPEN_IN.SIZE ? -E.EINVAL
      : { flags: u32(a, P.OPEN_IN.flags), openFlags: u32(a, P.OPEN_IN.openFlags) }),
    handle: (s, d, req) => {
      const r = s.fs.open!(req.ctx, req.nodeId, d.flags, d.openFlags);
      if (typeof r === 'number') return r;
      const n = openOut(s, 0, r.fh, (r.openFlags ?? 0) | s.fileOpenFlags);
      return (d.flags & C.O_TRUNC) !== 0 ? daxSizeChanged(s, req.nodeId, n) : n; // FUSE_ATOMIC_O_TRUNC
    },
  })],

  [P.FUSE_CREATE, op<CreateArgs>({
    name: 'CREATE', method: 'create', modifies: true,
    undo: undoCreate,
    decode: (a) => {
      const bad = need(a, P.CREATE_IN.SIZE);
      if (bad < 0) return bad;
      const n = cstrings(a, P.CREATE_IN.SIZE, 1);
      if (typeof n === 'number') return n;
      return { flags: u32(a, P.CREATE_IN.flags), mode: u32(a, P.CREATE_IN.mode), umask: u32(a, P.CREATE_IN.umask),
        openFlags: u32(a, P.CREATE_IN.openFlags), name: n[0] };
    },
    handle: (s, d, req) => createReply(s,
      s.fs.create!(req.ctx, req.nodeId, d.name, d.mode, d.flags, d.umask, s.attr, d.openFlags)),
  })],

  [P.FUSE_TMPFILE, op<CreateArgs>({
    // fuse_create_in, then a name the kernel makes up (ignored): the file has none.
    name: 'TMPFILE', method: 'tmpfile', modifies: true, undo: undoCreate,
    decode: (a) => {
      const bad = need(a, P.CREATE_IN.SIZE);
      if (bad < 0) return bad;
      return { flags: u32(a, P.CREATE_IN.flags), mode: u32(a, P.CREATE_IN.mode), umask: u32(a, P.CREATE_IN.umask),
        openFlags: u32(a, P.CREATE_IN.openFlags), name: '' };
    },
    handle: (s, d, req) => createReply(s, s.fs.tmpfile!(req.ctx, req.nodeId, d.mode, d.flags, d.umask, s.attr)),
  })],

  [P.FUSE_READ, op<ReadArgs>({
    name: 'READ', method: 'read', decode: readDecoder,
    handle: (s, d, req) => {
      const r = s.fs.read!(req.ctx, req.nodeId, d.fh, d.offset, s.readTarget(d.size));
      if (r < 0) return r;
      s.payloadLen = Math.min(r, d.size);
      return 0;
    },
  })],

  [P.FUSE_WRITE, op<{ fh: number; offset: number; size: number; writeFlags: number }>({
    name: 'WRITE', method: 'write', modifies: true,
    decode: (a) => {
      const bad = need(a, P.WRITE_IN.SIZE);
      if (bad < 0) return bad;
      const size = u32(a, P.WRITE_IN.size);
      // The payload must really be there (fuse_in_header.len covers it).
      if (size > a.len - P.WRITE_IN.SIZE) return -E.EINVAL;
      return { fh: u64(a, P.WRITE_IN.fh), offset: u64(a, P.WRITE_IN.offset), size,
        writeFlags: u32(a, P.WRITE_IN.writeFlags) };
    },
    handle: (s, d, req) => {
      // The guest agreed to max_write at INIT; a larger WRITE is refused rather than carried out.
      if (d.size > s.maxWrite) return -E.EINVAL;
      const r = s.fs.write!(req.ctx, req.nodeId, d.fh, d.offset, s.writeSource(d.size), d.writeFlags);
      return r < 0 ? r : daxSizeChanged(s, req.nodeId, writeOutReply(s, r));
    },
  })],

  [P.FUSE_STATFS, op<null>({
    name: 'STATFS', method: 'statfs', decode: noArgs,
    handle: (s, _d, req) => {
      const r = s.fs.statfs!(req.ctx, req.nodeId);
      if (typeof r === 'number') return r;
      writeStatfs(replyView(s), s.core.replyPtr, r);
      return P.STATFS_OUT.SIZE;
    },
  })],

  [P.FUSE_RELEASE, op<{ fh: number; flags: number; releaseFlags: number }>({
    name: 'RELEASE', method: 'release',
    decode: (a) => (a.len < P.RELEASE_IN.SIZE ? -E.EINVAL
      : { fh: u64(a, P.RELEASE_IN.fh), flags: u32(a, P.RELEASE_IN.flags), releaseFlags: u32(a, P.RELEASE_IN.releaseFlags) }),
    handle: (s, d, req) => statusReply(s.fs.release!(req.ctx, req.nodeId, d.fh, d.flags, d.releaseFlags)),
  })],

  [P.FUSE_FLUSH, op<{ fh: number; lockOwner: bigint }>({
    name: 'FLUSH', method: 'flush',
    decode: (a) => (a.len < P.FLUSH_IN.SIZE ? -E.EINVAL : { fh: u64(a, P.FLUSH_IN.fh), lockOwner: big(a, P.FLUSH_IN.lockOwner) }),
    handle: (s, d, req) => statusReply(s.fs.flush!(req.ctx, req.nodeId, d.fh, d.lockOwner)),
  })],

  [P.FUSE_FSYNC, op<{ fh: number; datasync: boolean }>({
    name: 'FSYNC', method: 'fsync',
    decode: (a) => (a.len < P.FSYNC_IN.SIZE ? -E.EINVAL
      : { fh: u64(a, P.FSYNC_IN.fh), datasync: (u32(a, P.FSYNC_IN.fsyncFlags) & P.FUSE_FSYNC_FDATASYNC) !== 0 }),
    handle: (s, d, req) => statusReply(s.fs.fsync!(req.ctx, req.nodeId, d.fh, d.datasync)),
  })],

  [P.FUSE_OPENDIR, op<number>({
    name: 'OPENDIR', method: 'opendir', undo: (s, _d, req) => undoOpen(s, req, 0, true),
    decode: (a) => (a.len < P.OPEN_IN.SIZE ? -E.EINVAL : u32(a, P.OPEN_IN.flags)),
    handle: (s, flags, req) => {
      const r = s.fs.opendir!(req.ctx, req.nodeId, flags);
      if (typeof r === 'number') return r;
      return openOut(s, 0, r.fh, (r.openFlags ?? 0) | s.dirOpenFlags);
    },
  })],

  [P.FUSE_READDIR, op<ReadArgs>({ name: 'READDIR', method: 'readdir', decode: readDecoder, handle: readdirHandler(false) })],
  [P.FUSE_READDIRPLUS, op<ReadArgs>({
    name: 'READDIRPLUS', method: 'readdirplus', decode: readDecoder, handle: readdirHandler(true),
    undo: (s, _d, _req, bodyLen) => undoDirentPlus(s, bodyLen),
  })],

  [P.FUSE_RELEASEDIR, op<FhArgs>({
    name: 'RELEASEDIR', method: 'releasedir', decode: fhDecoder,
    handle: (s, d, req) => statusReply(s.fs.releasedir!(req.ctx, req.nodeId, d.fh)),
  })],

  [P.FUSE_FSYNCDIR, op<{ fh: number; datasync: boolean }>({
    name: 'FSYNCDIR', method: 'fsyncdir',
    decode: (a) => (a.len < P.FSYNC_IN.SIZE ? -E.EINVAL
      : { fh: u64(a, P.FSYNC_IN.fh), datasync: (u32(a, P.FSYNC_IN.fsyncFlags) & P.FUSE_FSYNC_FDATASYNC) !== 0 }),
    handle: (s, d, req) => statusReply(s.fs.fsyncdir!(req.ctx, req.nodeId, d.fh, d.datasync)),
  })],

  [P.FUSE_GETXATTR, op<XattrGetArgs>({
    name: 'GETXATTR', method: 'getxattr',
    decode: (a) => {
      const bad = need(a, P.GETXATTR_IN.SIZE);
      if (bad < 0) return bad;
      const n = cstrings(a, P.GETXATTR_IN.SIZE, 1);
      return typeof n === 'number' ? n : { size: u32(a, P.GETXATTR_IN.size), name: n[0] };
    },
    handle: (s, d, req) => xattrReply(s, d.size, s.fs.getxattr!(req.ctx, req.nodeId, d.name, replyBytes(s, d.size))),
  })],

  [P.FUSE_LISTXATTR, op<number>({
    name: 'LISTXATTR', method: 'listxattr',
    decode: (a) => (a.len < P.GETXATTR_IN.SIZE ? -E.EINVAL : u32(a, P.GETXATTR_IN.size)),
    handle: (s, size, req) => xattrReply(s, size, s.fs.listxattr!(req.ctx, req.nodeId, replyBytes(s, size))),
  })],

  [P.FUSE_SETXATTR, op<XattrSetArgs>({
    name: 'SETXATTR', method: 'setxattr', modifies: true,
    decode: (a, s) => {
      // The 16-byte form (setxattr_flags) once FUSE_SETXATTR_EXT is negotiated, else the 8-byte one.
      const ext = (s.negotiatedFlags & P.FUSE_SETXATTR_EXT) !== 0;
      const head = ext ? P.SETXATTR_IN.EXT_SIZE : P.SETXATTR_IN.SIZE;
      const bad = need(a, head);
      if (bad < 0) return bad;
      const bytes = new Uint8Array(a.view.buffer, a.base, a.len);
      const nul = bytes.indexOf(0, head);
      if (nul < 0) return -E.EINVAL;
      const name = nameOf(bytes, head, nul);
      const size = u32(a, P.SETXATTR_IN.size);
      if (size > a.len - (nul + 1)) return -E.EINVAL; // the value must really be there
      return { name, value: bytes.subarray(nul + 1, nul + 1 + size), flags: u32(a, P.SETXATTR_IN.flags),
        setxattrFlags: ext ? u32(a, P.SETXATTR_IN.setxattrFlags) : 0 };
    },
    handle: (s, d, req) =>
      statusReply(s.fs.setxattr!(req.ctx, req.nodeId, d.name, d.value, d.flags, d.setxattrFlags)),
  })],

  [P.FUSE_REMOVEXATTR, op<NameArgs>({
    name: 'REMOVEXATTR', method: 'removexattr', modifies: true, decode: nameDecoder,
    handle: (s, d, req) => statusReply(s.fs.removexattr!(req.ctx, req.nodeId, d.name)),
  })],

  [P.FUSE_FALLOCATE, op<FallocateArgs>({
    name: 'FALLOCATE', method: 'fallocate', modifies: true,
    decode: (a) => {
      const bad = need(a, P.FALLOCATE_IN.SIZE);
      if (bad < 0) return bad;
      return { fh: u64(a, P.FALLOCATE_IN.fh), offset: u64(a, P.FALLOCATE_IN.offset),
        length: u64(a, P.FALLOCATE_IN.length), mode: u32(a, P.FALLOCATE_IN.mode) };
    },
    handle: (s, d, req) =>
      daxSizeChanged(s, req.nodeId, statusReply(s.fs.fallocate!(req.ctx, req.nodeId, d.fh, d.offset, d.length, d.mode))),
  })],

  [P.FUSE_LSEEK, op<LseekArgs>({
    name: 'LSEEK', method: 'lseek',
    decode: (a) => {
      const bad = need(a, P.LSEEK_IN.SIZE);
      if (bad < 0) return bad;
      return { fh: u64(a, P.LSEEK_IN.fh), offset: big(a, P.LSEEK_IN.offset), whence: u32(a, P.LSEEK_IN.whence) };
    },
    handle: (s, d, req) => {
      const r = s.fs.lseek!(req.ctx, req.nodeId, d.fh, d.offset, d.whence);
      if (typeof r === 'number') return r < 0 ? r : -E.EIO;
      replyView(s).setBigUint64(s.core.replyPtr + P.LSEEK_OUT.offset, r, true);
      return P.LSEEK_OUT.SIZE;
    },
  })],

  [P.FUSE_COPY_FILE_RANGE, op<CopyArgs>({
    name: 'COPY_FILE_RANGE', method: 'copyFileRange', modifies: true,
    decode: (a) => {
      const bad = need(a, P.COPY_FILE_RANGE_IN.SIZE);
      if (bad < 0) return bad;
      const X = P.COPY_FILE_RANGE_IN;
      const flags = big(a, X.flags);
      if (flags > 0xffff_ffffn) return -E.EINVAL;
      return { fhIn: u64(a, X.fhIn), offIn: u64(a, X.offIn), nodeOut: u64(a, X.nodeidOut), fhOut: u64(a, X.fhOut),
        offOut: u64(a, X.offOut), len: Math.min(u64(a, X.len), COPY_MAX), flags: Number(flags) };
    },
    handle: (s, d, req) => {
      const r = s.fs.copyFileRange!(req.ctx, req.nodeId, d.fhIn, d.offIn, d.nodeOut, d.fhOut, d.offOut, d.len, d.flags);
      return r < 0 ? r : daxSizeChanged(s, d.nodeOut, writeOutReply(s, r));
    },
  })],

  [P.FUSE_GETLK, op<LkArgs>({
    name: 'GETLK', method: 'getlk', decode: lkDecoder,
    handle: (s, d, req) => {
      if (d.flock) return -E.EINVAL; // the kernel never asks for flock conflicts
      const r = s.fs.getlk!(req.ctx, req.nodeId, d.fh, d.owner, d.lock);
      if (typeof r === 'number') return r < 0 ? r : -E.EIO;
      const v = replyView(s);
      const o = s.core.replyPtr;
      v.setBigUint64(o + P.LK_OUT.start, r.start, true);
      v.setBigUint64(o + P.LK_OUT.end, r.end, true);
      v.setUint32(o + P.LK_OUT.type, r.type, true);
      v.setUint32(o + P.LK_OUT.pid, r.pid >>> 0, true);
      return P.LK_OUT.SIZE;
    },
  })],

  [P.FUSE_SETLK, op<LkArgs>({
    name: 'SETLK', method: 'setlk', decode: lkDecoder,
    handle: (s, d, req) => setlkReply(s, d, req, false),
  })],

  [P.FUSE_SETLKW, op<LkArgs>({
    name: 'SETLKW', method: 'setlk', decode: lkDecoder,
    handle: (s, d, req) => setlkReply(s, d, req, true),
  })],

  [P.FUSE_SYNCFS, op<null>({
    name: 'SYNCFS', method: 'syncfs', decode: noArgs,
    handle: (s, _d, req) => statusReply(s.fs.syncfs!(req.ctx, req.nodeId)),
  })],

  [P.FUSE_IOCTL, op<null>({
    // No ioctl is passed through to the host (they carry pointers and host-specific semantics).
    name: 'IOCTL', decode: noArgs, handle: () => -E.ENOTTY,
  })],

  [P.FUSE_SETUPMAPPING, op<{ fh: bigint; foffset: bigint; len: bigint; flags: bigint; moffset: bigint }>({
    // Without a window the kernel never sends it (no DAX device); a guest that does anyway gets ENOSYS.
    name: 'SETUPMAPPING',
    decode: (a, s) => {
      if (daxOf(s) === undefined) return -E.ENOSYS;
      const bad = need(a, P.SETUPMAPPING_IN.SIZE);
      if (bad < 0) return bad;
      const M = P.SETUPMAPPING_IN;
      return { fh: big(a, M.fh), foffset: big(a, M.foffset), len: big(a, M.len), flags: big(a, M.flags),
        moffset: big(a, M.moffset) };
    },
    handle: (s, d, req) => {
      const dax = daxOf(s)!;
      return daxAnswer(s, () => dax.setupMapping(req.nodeId, d.fh, d.foffset, d.len, d.flags, d.moffset, s.readonly));
    },
  })],

  [P.FUSE_REMOVEMAPPING, op<Array<{ moffset: bigint; len: bigint }>>({
    name: 'REMOVEMAPPING',
    decode: (a, s) => {
      if (daxOf(s) === undefined) return -E.ENOSYS;
      const bad = need(a, P.REMOVEMAPPING_IN.SIZE);
      if (bad < 0) return bad;
      const count = u32(a, P.REMOVEMAPPING_IN.count);
      // Bounded like the kernel's own batches, and the entries must really be there.
      if (count === 0 || count > FUSE_REMOVEMAPPING_MAX_ENTRY ||
          a.len < P.REMOVEMAPPING_IN.SIZE + count * P.REMOVEMAPPING_ONE.SIZE) return -E.EINVAL;
      const out: Array<{ moffset: bigint; len: bigint }> = [];
      for (let i = 0; i < count; i++) {
        const at = P.REMOVEMAPPING_IN.SIZE + i * P.REMOVEMAPPING_ONE.SIZE;
        out.push({ moffset: big(a, at + P.REMOVEMAPPING_ONE.moffset), len: big(a, at + P.REMOVEMAPPING_ONE.len) });
      }
      return out;
    },
    handle: (s, d) => {
      const dax = daxOf(s)!;
      return daxAnswer(s, () => dax.removeMapping(d));
    },
  })],

  [P.FUSE_ACCESS, op<number>({
    name: 'ACCESS', method: 'access',
    decode: (a) => (a.len < P.ACCESS_IN.SIZE ? -E.EINVAL : u32(a, P.ACCESS_IN.mask)),
    handle: (s, mask, req) => statusReply(s.fs.access!(req.ctx, req.nodeId, mask)),
  })],
];

function writeStatfs(v: DataView, o: number, st: StatFs): void {
  const S = P.STATFS_OUT;
  new Uint8Array(v.buffer, o, S.SIZE).fill(0);
  v.setBigUint64(o + S.blocks, BigInt(st.blocks), true);
  v.setBigUint64(o + S.bfree, BigInt(st.bfree), true);
  v.setBigUint64(o + S.bavail, BigInt(st.bavail), true);
  v.setBigUint64(o + S.files, BigInt(st.files), true);
  v.setBigUint64(o + S.ffree, BigInt(st.ffree), true);
  v.setUint32(o + S.bsize, st.bsize, true);
  v.setUint32(o + S.namelen, st.namelen, true);
  v.setUint32(o + S.frsize, st.frsize, true);
}

/** The dispatch table, indexed by opcode. */
export const OPS: ReadonlyMap<number, Op<unknown>> = new Map(table);

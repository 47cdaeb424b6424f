/**
 * Core: one instance of the AssemblyScript core (build/core.wasm), typed 1:1 over its exports (DESIGN.md
 * "Core ABI"), plus the mapping of guest RAM into its linear memory.
 *
 * Each queue worker owns one Core. The core is synchronous and holds one current request at a time.
 *
 * Linear memory layout:
 *
 *   0                 static data (scratch: ARGS, REPLY, DIRENT_BUF, STATX, IOV, LINEAR_IN/OUT, ring/region tables)
 *   initial size      ---------------------------------------------------------------------------
 *                     guest area: one 64 KiB-aligned slot per vhost-user region, each mmap'ed over with the
 *                     region's fd (MAP_SHARED|MAP_FIXED); reused on a new memory table
 *                     test regions (addTestRegion): plain grown pages
 *   < 4 GiB
 */
import { readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { init, WASI } from '@wasmer/wasi';
import { SystemError, VirtiofsdError } from './errors.js';
import type { Native } from './native.js';

/** Raw exports of build/core.wasm (i64 as bigint, bool as 0/1). */
export interface CoreExports {
  memory: WebAssembly.Memory;
  memReset(): void;
  memAddRegion(gpa: bigint, uva: bigint, size: bigint, linearOffset: number): number;
  memTranslate(gpa: bigint, len: number): number;
  queueReset(q: number): void;
  queueSetNum(q: number, num: number): number;
  queueSetAddr(q: number, descUva: bigint, usedUva: bigint, availUva: bigint): number;
  queueSetBase(q: number, lastAvailIdx: number): void;
  queueGetBase(q: number): number;
  queueSetFeatures(q: number, eventIdx: number, indirect: number): void;
  queuePop(q: number): number;
  queueNeedsNotify(q: number): number;
  linearPop(inPtr: number, inLen: number, outPtr: number, outCap: number): number;
  linearReplyLen(): number;
  linearInPtr(): number;
  linearOutPtr(): number;
  linearBufSize(): number;
  reqQueue(): number;
  reqHead(): number;
  reqOpcode(): number;
  reqUnique(): bigint;
  reqNodeId(): number;
  reqUid(): number;
  reqGid(): number;
  reqPid(): number;
  reqLen(): number;
  reqArgsLen(): number;
  reqReadable(): number;
  reqWritable(): number;
  argsPtr(): number;
  replyPtr(): number;
  iovPtr(): number;
  statxPtr(): number;
  direntBufPtr(): number;
  payloadReadIov(skip: number, maxBytes: number): number;
  payloadWriteIov(skip: number, maxBytes: number): number;
  replySend(error: number, bodyLen: number, payloadLen: number): number;
  replyNone(): void;
  requestPark(): number;
  queueReplyParked(q: number, head: number, unique: bigint, error: number): number;
  encodeAttrOut(dst: number, attrTimeout: number, statx: number): number;
  encodeEntryOut(dst: number, nodeid: number, generation: number, entryTimeout: number, attrTimeout: number,
    statx: number): number;
  direntsBegin(len: number): void;
  direntNext(): number;
  direntIno(): number;
  direntType(): number;
  direntNamePtr(): number;
  direntNameLen(): number;
  direntSize(): number;
  direntPlusSize(): number;
  direntEmit(dstOffset: number, cap: number): number;
  direntPlusEmit(dstOffset: number, cap: number, nodeid: number, generation: number, entryTimeout: number,
    attrTimeout: number, statx: number): number;
  // The DAX window's range allocator (assembly/dax-ranges.ts; wrapped by host/dax/dax-ranges.ts).
  daxInit(nRanges: number): number;
  daxRangeCount(): number;
  daxFreeCount(): number;
  daxBusyCount(): number;
  daxLookup(node: number, fileIdx: number): number;
  daxMap(node: number, fileIdx: number, writable: number): number;
  daxUnmap(range: number): number;
  daxReclaimVictim(): number;
  daxNeedsReclaim(): number;
  daxSetWritable(range: number): number;
  daxIsWritable(range: number): number;
  daxNode(range: number): number;
  daxFileIdx(range: number): number;
  daxPin(range: number): number;
  daxUnpin(range: number): number;
  daxNextOfNode(node: number, after: number): number;
}

/** queuePop results. */
export const POP_REQUEST = 1;
export const POP_EMPTY = 0;
export const POP_BAD_CHAIN = -1;
export const POP_BAD_MESSAGE = -2;
export const POP_RING_BROKEN = -3;

export const MAX_QUEUES = 64;
/** reqQueue() of a request from linearPop (no virtqueue). */
export const LINEAR_QUEUE = 0xffff_ffff;
export const ARGS_MAX = 72 * 1024;
export const REPLY_MAX = 1024 * 1024 + 4096;
export const DIRENT_BUF_SIZE = 64 * 1024;
export const STATX_SIZE = 256;
/** Entries one payload*Iov call produces at most (UIO_MAXIOV). */
export const IOV_MAX = 1024;
export const FUSE_IN_HEADER_SIZE = 40;
export const FUSE_OUT_HEADER_SIZE = 16;
export const FUSE_ATTR_OUT_SIZE = 104;
export const FUSE_ENTRY_OUT_SIZE = 128;

const WASM_PAGE = 65536;
/** wasm32: linear memory can never exceed 4 GiB. */
const MAX_PAGES = 65536;

/** One vhost-user memory region to map (VHOST_USER_SET_MEM_TABLE / ADD_MEM_REG). */
export interface GuestRegion {
  /** guest physical address */
  gpa: bigint;
  size: bigint;
  /** frontend (QEMU) virtual address: ring addresses arrive in this space */
  uva: bigint;
  /** offset of the region inside fd */
  mmapOffset: bigint;
  fd: number;
}

export interface CoreOptions {
  /** Path of the .wasm; default build/core.wasm under the package root. */
  wasmPath?: string;
  /** The native addon; default: ./native-loader.js if the addon is built (needed only by mapGuestRegions). */
  native?: Native;
}

interface MappedSlot {
  offset: number;
  length: number;
}

function packageRoot(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  // Compiled: dist/host/core.js (root two up). Run from source: host/core.ts (root one up).
  const twoUp = resolve(here, '..', '..');
  if (existsSync(resolve(twoUp, 'package.json')) && existsSync(resolve(twoUp, 'asconfig.json'))) return twoUp;
  return resolve(here, '..');
}

let wasiReady: Promise<void> | undefined;

/** The addon via ./native-loader.js, or undefined when it is not built (then only test regions are usable). */
async function tryLoadNative(): Promise<Native | undefined> {
  try {
    return (await import('./native-loader.js')).native;
  } catch {
    return undefined;
  }
}
const moduleCache = new Map<string, Promise<WebAssembly.Module>>();

export class Core {
  readonly memory: WebAssembly.Memory;
  /** Scratch addresses in linear memory (fixed for the life of the instance). */
  readonly argsPtr: number;
  readonly replyPtr: number;
  readonly statxPtr: number;
  readonly direntBufPtr: number;
  readonly iovPtr: number;
  /** The /dev/fuse transport's request and reply buffers (linearBufSize bytes each). */
  readonly linearInPtr: number;
  readonly linearOutPtr: number;
  readonly linearBufSize: number;

  private readonly e: CoreExports;
  private readonly wasi: WASI | undefined;
  private native: Native | undefined;
  private buffer: ArrayBuffer;
  private dataView: DataView;
  private u8: Uint8Array;
  /** Start and capacity of the area reserved for mmap'ed guest regions (0 until first mapped). */
  private guestBase = 0;
  private guestCapacity = 0;
  private mapped: MappedSlot[] = [];

  private constructor(instance: WebAssembly.Instance, wasi: WASI | undefined, native: Native | undefined) {
    this.e = instance.exports as unknown as CoreExports;
    this.wasi = wasi;
    this.native = native;
    this.memory = this.e.memory;
    this.buffer = this.memory.buffer;
    this.dataView = new DataView(this.buffer);
    this.u8 = new Uint8Array(this.buffer);
    this.argsPtr = this.e.argsPtr();
    this.replyPtr = this.e.replyPtr();
    this.statxPtr = this.e.statxPtr();
    this.direntBufPtr = this.e.direntBufPtr();
    this.iovPtr = this.e.iovPtr();
    this.linearInPtr = this.e.linearInPtr();
    this.linearOutPtr = this.e.linearOutPtr();
    this.linearBufSize = this.e.linearBufSize() >>> 0;
  }

  /** Compiles (once per path) and instantiates the core with WASI imports for its stderr. */
  static async create(options: CoreOptions = {}): Promise<Core> {
    const path = options.wasmPath ?? resolve(packageRoot(), 'build', 'core.wasm');
    let modulePromise = moduleCache.get(path);
    if (modulePromise === undefined) {
      modulePromise = readFile(path).then((bytes) => WebAssembly.compile(bytes));
      moduleCache.set(path, modulePromise);
      modulePromise.catch(() => moduleCache.delete(path));
    }
    let mod: WebAssembly.Module;
    try {
      mod = await modulePromise;
    } catch (err) {
      throw new VirtiofsdError('ERR_CORE_LOAD',
        `cannot load the core ${path} (run \`npm run build:wasm\`): ${(err as Error).message}`, { cause: err });
    }
    // The release build may import nothing (its abort is unreachable); WASI is only wired when it is imported.
    const needsWasi = WebAssembly.Module.imports(mod).some((i) => i.module.startsWith('wasi'));
    let wasi: WASI | undefined;
    let imports: WebAssembly.Imports = {};
    if (needsWasi) {
      wasiReady ??= init().then(() => undefined);
      await wasiReady;
      wasi = new WASI({ args: [], env: {} });
      imports = wasi.getImports(mod) as WebAssembly.Imports;
    }
    const instance = await WebAssembly.instantiate(mod, imports);
    if (wasi !== undefined) wasi.instantiate(instance, {});
    return new Core(instance, wasi, options.native ?? (await tryLoadNative()));
  }

  // ---- memory views -------------------------------------------------------------------------------------------

  private refresh(): void {
    if (this.memory.buffer !== this.buffer) {
      this.buffer = this.memory.buffer;
      this.dataView = new DataView(this.buffer);
      this.u8 = new Uint8Array(this.buffer);
    }
  }

  /** A DataView over the whole linear memory (a new one after memory grew). */
  view(): DataView {
    if (this.memory.buffer !== this.buffer) this.refresh();
    return this.dataView;
  }

  /** A Uint8Array over the whole linear memory (a new one after memory grew). */
  bytes(): Uint8Array {
    if (this.memory.buffer !== this.buffer) this.refresh();
    return this.u8;
  }

  /** What the core wrote to stderr (abort messages). */
  stderr(): string {
    try {
      return this.wasi?.getStderrString() ?? '';
    } catch {
      return '';
    }
  }

  /** The raw exports, for modules layered on the core that wrap their own part (host/dax/dax-ranges.ts). */
  get rawExports(): CoreExports {
    return this.e;
  }

  private trap(err: unknown): never {
    if (err instanceof WebAssembly.RuntimeError) {
      const text = this.stderr().trim();
      throw new VirtiofsdError('ERR_CORE_TRAP', `core trapped: ${err.message}${text ? `: ${text}` : ''}`,
        { cause: err });
    }
    throw err;
  }

  // ---- guest memory table -------------------------------------------------------------------------------------

  memReset(): void {
    try { this.e.memReset(); } catch (err) { this.trap(err); }
  }

  /** 0 or -EINVAL. */
  memAddRegion(gpa: bigint, uva: bigint, size: bigint, linearOffset: number): number {
    try { return this.e.memAddRegion(gpa, uva, size, linearOffset); } catch (err) { this.trap(err); }
  }

  /** Linear offset of [gpa, gpa+len) if wholly in one region, else -1. */
  memTranslate(gpa: bigint, len: number): number {
    try { return this.e.memTranslate(gpa, len); } catch (err) { this.trap(err); }
  }

  /** Grows linear memory by `bytes` (rounded up to 64 KiB); returns the offset of the new area. */
  private grow(bytes: number): number {
    const pages = Math.ceil(bytes / WASM_PAGE);
    const before = this.memory.buffer.byteLength / WASM_PAGE;
    if (before + pages > MAX_PAGES) {
      throw new VirtiofsdError('ERR_GUEST_MEMORY',
        `guest RAM does not fit in the core's 4 GiB address space (${before + pages} pages > ${MAX_PAGES})`);
    }
    try {
      this.memory.grow(pages);
    } catch (err) {
      throw new VirtiofsdError('ERR_GUEST_MEMORY', `cannot grow core memory by ${pages} pages: ${err}`,
        { cause: err });
    }
    this.refresh();
    return before * WASM_PAGE;
  }

  private nativeOrThrow(): Native {
    if (this.native === undefined) {
      throw new VirtiofsdError('ERR_NATIVE_MISSING',
        'the native addon is needed to map guest memory: run `npm run build:native`');
    }
    return this.native;
  }

  /**
   * Maps a vhost-user memory table: unmaps the previous regions, maps each region's fd into a 64 KiB-aligned
   * slot of the guest area (grown on first use, reused afterwards), and registers the table with the core.
   * On failure nothing stays registered (the core's table is empty) and a SystemError/VirtiofsdError is thrown.
   */
  mapGuestRegions(regions: GuestRegion[]): void {
    const native = this.nativeOrThrow();
    const page = native.constants.PAGE_SIZE;
    const plan: { slot: number; length: number; fileOffset: number; delta: number; region: GuestRegion }[] = [];
    let total = 0;
    for (const region of regions) {
      if (region.size <= 0n || region.mmapOffset < 0n) {
        throw new VirtiofsdError('ERR_GUEST_MEMORY', `invalid memory region (size ${region.size})`);
      }
      const fileOffset = Number(region.mmapOffset - (region.mmapOffset % BigInt(page)));
      const delta = Number(region.mmapOffset) - fileOffset;
      const length = Math.ceil((delta + Number(region.size)) / page) * page;
      const slotLength = Math.ceil(length / WASM_PAGE) * WASM_PAGE;
      plan.push({ slot: total, length, fileOffset, delta, region });
      total += slotLength;
    }
    this.unmapGuestRegions();
    if (total > this.guestCapacity) {
      const end = this.memory.buffer.byteLength;
      if (this.guestCapacity > 0 && this.guestBase + this.guestCapacity === end) {
        this.grow(total - this.guestCapacity);
      } else {
        this.guestBase = this.grow(total);
      }
      this.guestCapacity = total;
    }
    for (const p of plan) {
      const offset = this.guestBase + p.slot;
      const r = native.mmapInto(this.memory.buffer, offset, p.length, native.constants.PROT_READ |
        native.constants.PROT_WRITE, p.region.fd, p.fileOffset);
      if (r < 0) {
        this.unmapGuestRegions();
        throw new SystemError('mmap', -r, native.strerror(-r));
      }
      this.mapped.push({ offset, length: p.length });
    }
    for (const p of plan) {
      const rc = this.memAddRegion(p.region.gpa, p.region.uva, p.region.size, this.guestBase + p.slot + p.delta);
      if (rc < 0) {
        this.unmapGuestRegions();
        throw new VirtiofsdError('ERR_GUEST_MEMORY',
          `memory region gpa 0x${p.region.gpa.toString(16)} size 0x${p.region.size.toString(16)} rejected ` +
          `(overlap or overflow)`);
      }
    }
  }

  /** Unmaps every mapped region (the pages become anonymous zero pages) and empties the core's table. */
  unmapGuestRegions(): void {
    this.memReset();
    if (this.mapped.length === 0) return;
    const native = this.nativeOrThrow();
    let failure: SystemError | undefined;
    for (const m of this.mapped) {
      const r = native.unmapFrom(this.memory.buffer, m.offset, m.length);
      if (r < 0 && failure === undefined) failure = new SystemError('mmap', -r, native.strerror(-r));
    }
    this.mapped = [];
    if (failure !== undefined) throw failure;
  }

  /**
   * Grows memory by `size` (rounded to 64 KiB) and registers it as a plain region at gpa/uva (no mmap): guest
   * RAM for tests and benchmarks. Returns the region's linear offset.
   */
  addTestRegion(gpa: bigint, uva: bigint, size: number): number {
    const offset = this.grow(size);
    const rc = this.memAddRegion(gpa, uva, BigInt(size), offset);
    if (rc < 0) throw new VirtiofsdError('ERR_GUEST_MEMORY', `test region gpa 0x${gpa.toString(16)} rejected`);
    return offset;
  }

  // ---- queues -------------------------------------------------------------------------------------------------

  queueReset(q: number): void {
    try { this.e.queueReset(q); } catch (err) { this.trap(err); }
  }

  /** 0 or -EINVAL (not a power of two in 1..32768). */
  queueSetNum(q: number, num: number): number {
    try { return this.e.queueSetNum(q, num); } catch (err) { this.trap(err); }
  }

  /** 0 or -EFAULT (a ring not wholly inside one region, or misaligned). */
  queueSetAddr(q: number, descUva: bigint, usedUva: bigint, availUva: bigint): number {
    try { return this.e.queueSetAddr(q, descUva, usedUva, availUva); } catch (err) { this.trap(err); }
  }

  queueSetBase(q: number, lastAvailIdx: number): void {
    try { this.e.queueSetBase(q, lastAvailIdx); } catch (err) { this.trap(err); }
  }

  queueGetBase(q: number): number {
    try { return this.e.queueGetBase(q); } catch (err) { this.trap(err); }
  }

  queueSetFeatures(q: number, eventIdx: boolean, indirect: boolean): void {
    try { this.e.queueSetFeatures(q, eventIdx ? 1 : 0, indirect ? 1 : 0); } catch (err) { this.trap(err); }
  }

  /** POP_REQUEST, POP_EMPTY, POP_BAD_CHAIN, POP_BAD_MESSAGE or POP_RING_BROKEN. */
  queuePop(q: number): number {
    try { return this.e.queuePop(q); } catch (err) { this.trap(err); }
  }

  queueNeedsNotify(q: number): boolean {
    try { return this.e.queueNeedsNotify(q) !== 0; } catch (err) { this.trap(err); }
  }

  // ---- linear requests (/dev/fuse) ---------------------------------------------------------------------------

  /**
   * Makes the bytes at [inPtr, inPtr+inLen) the current request, answered into [outPtr, outPtr+outCap): one
   * readable and one writable segment. POP_REQUEST, POP_BAD_MESSAGE (an -EINVAL reply is at outPtr, see
   * linearReplyLen) or POP_BAD_CHAIN (a range outside linear memory, or overlapping).
   */
  linearPop(inPtr: number, inLen: number, outPtr: number, outCap: number): number {
    try { return this.e.linearPop(inPtr, inLen, outPtr, outCap); } catch (err) { this.trap(err); }
  }

  /** Bytes of the last linear request's reply at its outPtr (0: nothing to write, e.g. FORGET). */
  linearReplyLen(): number { return this.e.linearReplyLen() >>> 0; }

  // ---- the current request ------------------------------------------------------------------------------------

  reqQueue(): number { return this.e.reqQueue() >>> 0; }
  /** The chain's head descriptor index (logs, tests). */
  reqHead(): number { return this.e.reqHead() >>> 0; }
  reqOpcode(): number { return this.e.reqOpcode() >>> 0; }
  /** fuse_in_header.unique (logs, tests; the core puts it in the reply itself). */
  reqUnique(): bigint { return BigInt.asUintN(64, this.e.reqUnique()); }
  reqNodeId(): number { return this.e.reqNodeId(); }
  reqUid(): number { return this.e.reqUid() >>> 0; }
  reqGid(): number { return this.e.reqGid() >>> 0; }
  reqPid(): number { return this.e.reqPid() >>> 0; }
  reqLen(): number { return this.e.reqLen() >>> 0; }
  /** fuse_in_header.len - 40 (for WRITE it includes the payload; only fuse_write_in is in ARGS). */
  reqArgsLen(): number { return this.e.reqArgsLen() >>> 0; }
  reqReadable(): number { return this.e.reqReadable() >>> 0; }
  reqWritable(): number { return this.e.reqWritable() >>> 0; }

  /** iovecs at iovPtr over the writable segments after `skip` bytes; returns the count (<= IOV_MAX). */
  payloadReadIov(skip: number, maxBytes: number): number {
    try { return this.e.payloadReadIov(skip, maxBytes); } catch (err) { this.trap(err); }
  }

  /** iovecs at iovPtr over the readable segments, skip counted from the start of the args. */
  payloadWriteIov(skip: number, maxBytes: number): number {
    try { return this.e.payloadWriteIov(skip, maxBytes); } catch (err) { this.trap(err); }
  }

  /** 0, -ERANGE (did not fit; -EIO sent instead if possible) or -EINVAL (no current request). */
  replySend(error: number, bodyLen: number, payloadLen: number): number {
    try { return this.e.replySend(error, bodyLen, payloadLen); } catch (err) { this.trap(err); }
  }

  replyNone(): void {
    try { this.e.replyNone(); } catch (err) { this.trap(err); }
  }

  /**
   * Parks the current request (it stays unanswered and stops being current): its head, 0 for a linear request,
   * or -EINVAL when none is current. Answer it later with queueReplyParked (virtqueue) or a /dev/fuse write.
   */
  requestPark(): number {
    try { return this.e.requestPark(); } catch (err) { this.trap(err); }
  }

  /** A header-only reply to a parked request; the chain is re-walked first. 0, -EBUSY, -EINVAL or -ERANGE. */
  queueReplyParked(q: number, head: number, unique: bigint, error: number): number {
    try { return this.e.queueReplyParked(q, head, BigInt.asIntN(64, unique), error); } catch (err) { this.trap(err); }
  }

  // ---- codec --------------------------------------------------------------------------------------------------

  /** fuse_attr_out (104 bytes) at dst from the struct statx at `statx`. */
  encodeAttrOut(dst: number, attrTimeout: number, statx: number): number {
    try { return this.e.encodeAttrOut(dst, attrTimeout, statx); } catch (err) { this.trap(err); }
  }

  /** fuse_entry_out (128 bytes); nodeid 0 = negative entry (attributes zeroed). */
  encodeEntryOut(dst: number, nodeid: number, generation: number, entryTimeout: number, attrTimeout: number,
    statx: number): number {
    try {
      return this.e.encodeEntryOut(dst, nodeid, generation, entryTimeout, attrTimeout, statx);
    } catch (err) { this.trap(err); }
  }

  /** Starts iterating `len` bytes of getdents64 output at direntBufPtr. */
  direntsBegin(len: number): void { this.e.direntsBegin(len); }
  /** 1 = a record is current, 0 = end, -1 = corrupt. */
  direntNext(): number {
    try { return this.e.direntNext(); } catch (err) { this.trap(err); }
  }
  direntIno(): number { return this.e.direntIno(); }
  direntType(): number { return this.e.direntType(); }
  direntNamePtr(): number { return this.e.direntNamePtr(); }
  direntNameLen(): number { return this.e.direntNameLen(); }
  /** The current record's size as a fuse_dirent. */
  direntSize(): number { return this.e.direntSize(); }
  /** The current record's size as a fuse_direntplus. */
  direntPlusSize(): number { return this.e.direntPlusSize(); }

  /** The current record's name as a Buffer (copied). */
  direntName(): Buffer {
    const ptr = this.e.direntNamePtr();
    return Buffer.from(this.bytes().subarray(ptr, ptr + this.e.direntNameLen()));
  }

  /**
   * Appends the current record as a fuse_dirent at replyPtr+dstOffset if dstOffset + size <= cap (`cap` is the
   * absolute limit, e.g. fuse_read_in.size). Returns the bytes written, 0 if it does not fit.
   */
  direntEmit(dstOffset: number, cap: number): number {
    try { return this.e.direntEmit(dstOffset, cap); } catch (err) { this.trap(err); }
  }

  /** As direntEmit, as a fuse_direntplus (nodeid 0: zeroed entry_out, as for "." and ".."). */
  direntPlusEmit(dstOffset: number, cap: number, nodeid: number, generation: number, entryTimeout: number,
    attrTimeout: number, statx: number): number {
    try {
      return this.e.direntPlusEmit(dstOffset, cap, nodeid, generation, entryTimeout, attrTimeout, statx);
    } catch (err) { this.trap(err); }
  }
}

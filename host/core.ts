/**
 * Core: one instance of the AssemblyScript core (dist/core.wasm), typed 1:1 over its exports (DESIGN.md
 * "Core ABI"), plus the mapping of guest RAM into its linear memory.
 *
 * A daemon has one Core, shared by all its queues (and the /dev/fuse transport), all served on the JS thread; the
 * core is synchronous and holds one current request at a time. (One core per queue thread is designed, not built:
 * DESIGN.md "Parallel queue threads".)
 *
 * Linear memory layout:
 *
 *   0                 static data (scratch: ARGS, REPLY, DIRENT_BUF, STATX, IOV, LINEAR_IN/OUT, ring/region tables,
 *                     the window's chunk table)
 *   initial size      ---------------------------------------------------------------------------
 *                     guest area, reused on a new memory table. Flat mode: one 64 KiB-aligned place per vhost-user
 *                     region, each mmap'ed over with the region's fd (MAP_SHARED|MAP_FIXED). Windowed mode (guest
 *                     RAM does not fit): the window, `slots` x 4 MiB, chunks mapped into it on the core's demand
 *                     (the `host.mapChunk` import); each region is also mapped whole elsewhere in the process
 *                     (mmapShared) for the payload iovecs.
 *                     test regions (addTestRegion): plain grown pages (windowSlots: a memfd mapped over them)
 *   < 4 GiB
 */
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { SystemError, VirtiofsdError } from './errors.js';
import type { Native } from './native.js';
import { packageRoot } from './package-root.js';

/** Raw exports of dist/core.wasm (i64 as bigint, bool as 0/1). */
export interface CoreExports {
  memory: WebAssembly.Memory;
  abortMessagePtr(): number;
  abortMessageLength(): number;
  memReset(): void;
  memSetLinearBase(base: bigint): void;
  memAddRegion(gpa: bigint, uva: bigint, size: bigint, linearOffset: number): number;
  memSetWindow(base: number, slots: number): number;
  memAddRegionWindowed(gpa: bigint, uva: bigint, size: bigint, host: bigint, delta: number): number;
  memWindowSlotsMapped(): number;
  memTranslate(gpa: bigint, len: number): number;
  queueReset(q: number): void;
  queueSetNum(q: number, num: number): number;
  queueSetAddr(q: number, descUva: bigint, usedUva: bigint, availUva: bigint): number;
  queueSetBase(q: number, lastAvailIdx: number): void;
  queueGetBase(q: number): number;
  queueSetFeatures(q: number, eventIdx: number, indirect: number): void;
  queuePop(q: number): number;
  queueNeedsNotify(q: number): number;
  queueAvailPending(q: number): number;
  queueSetKicks(q: number, on: number): number;
  queueKickAfter(q: number, n: number): number;
  queueDriverLag(q: number, used: number): number;
  linearPop(inPtr: number, inLen: number, outPtr: number, outCap: number): number;
  requestCopy(dst: number, cap: number): number;
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
  inHeaderPtr(): number;
  replyPtr(): number;
  iovPtr(): number;
  statxPtr(): number;
  direntBufPtr(): number;
  payloadReadIov(skip: number, maxBytes: number): number;
  payloadWriteIov(skip: number, maxBytes: number): number;
  payloadScatter(src: number, skip: number, len: number): number;
  payloadGather(dst: number, skip: number, len: number): number;
  replySend(error: number, bodyLen: number, payloadLen: number): number;
  replyNone(): void;
  requestPark(): number;
  queueReplyParked(q: number, head: number, unique: bigint, error: number): number;
  requestResume(q: number, head: number, unique: bigint, opcode: number): number;
  linearResume(outPtr: number, outCap: number, unique: bigint, opcode: number): number;
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
/** The window (assembly/guest-memory.ts): guest RAM in 2 MiB chunks, a slot holds two. */
export const CHUNK_SIZE = 2 * 1024 * 1024;
export const SLOT_SIZE = 2 * CHUNK_SIZE;
/** Window slots when guest RAM does not fit (1 GiB of linear memory; 256 x 2 MiB chunks hit without a miss). */
export const DEFAULT_WINDOW_SLOTS = 256;
/** The fewest slots a window is made with when linear memory is short (rings of a queue pin at most 3). */
const MIN_WINDOW_SLOTS = 8;
/** Guest RAM the window's chunk table covers (2^19 chunks). */
export const MAX_WINDOWED_RAM = 2 ** 19 * CHUNK_SIZE;

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
  /** Path of the .wasm; default dist/core.wasm under the package root. */
  wasmPath?: string;
  /** The native addon; default: ./native-loader.js if the addon is built (needed only by mapGuestRegions). */
  native?: Native;
  /**
   * Always windowed, with this many 4 MiB slots (tests: a tiny window exercises eviction, pinning and the
   * no-slot paths). Default: windowed only when guest RAM does not fit, with DEFAULT_WINDOW_SLOTS.
   */
  windowSlots?: number;
}

interface MappedSlot {
  offset: number;
  length: number;
}

/** A region of the core's table as the host placed it (index = the core's region index). */
interface PlacedRegion {
  /** Windowed: the fd and the page-aligned file offset chunk 0 starts at (mapChunk); -1 flat. */
  fd: number;
  fileOffset: number;
  /** Windowed mmapShared mapping to munmap (0n: none, e.g. a test region's view). */
  mapping: bigint;
  mappingLength: number;
}

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
  /** The popped request's fuse_in_header (IN_HEADER offsets): serveCurrent reads it through view(). */
  readonly inHeaderPtr: number;
  readonly replyPtr: number;
  readonly statxPtr: number;
  readonly direntBufPtr: number;
  readonly iovPtr: number;
  /** The /dev/fuse transport's request and reply buffers (linearBufSize bytes each). */
  readonly linearInPtr: number;
  readonly linearOutPtr: number;
  readonly linearBufSize: number;

  private readonly e: CoreExports;
  private native: Native | undefined;
  private buffer: ArrayBuffer;
  private dataView: DataView;
  private u8: Uint8Array;
  /** Start and capacity of the area reserved for mmap'ed guest regions (0 until first mapped). */
  private guestBase = 0;
  private guestCapacity = 0;
  private mapped: MappedSlot[] = [];
  /** Process address of linear memory's byte 0 (0n without the addon); see grow() for when it changes. */
  private base: bigint;
  private readonly forcedSlots: number | undefined;
  private placed: PlacedRegion[] = [];
  /** addTestRegion's regions, for reAddTestRegions. */
  private testRegions: { gpa: bigint; uva: bigint; size: number; offset: number; fd: number }[] = [];
  /** Slots of the current window (0: flat mode). */
  private windowSlots = 0;
  /** Chunks the core asked the host to map (tests, logs). */
  windowMisses = 0;

  private constructor(instance: WebAssembly.Instance, native: Native | undefined,
    forcedSlots: number | undefined) {
    this.e = instance.exports as unknown as CoreExports;
    this.native = native;
    this.forcedSlots = forcedSlots;
    this.memory = this.e.memory;
    this.buffer = this.memory.buffer;
    this.dataView = new DataView(this.buffer);
    this.u8 = new Uint8Array(this.buffer);
    this.argsPtr = this.e.argsPtr();
    this.inHeaderPtr = this.e.inHeaderPtr();
    this.replyPtr = this.e.replyPtr();
    this.statxPtr = this.e.statxPtr();
    this.direntBufPtr = this.e.direntBufPtr();
    this.iovPtr = this.e.iovPtr();
    this.linearInPtr = this.e.linearInPtr();
    this.linearOutPtr = this.e.linearOutPtr();
    this.linearBufSize = this.e.linearBufSize() >>> 0;
    this.base = native !== undefined ? BigInt(native.addressOf(this.memory.buffer)) : 0n;
    this.e.memSetLinearBase(this.base);
  }

  /** Process address of linear memory's byte 0 (0n without the addon): iovec bases are this plus an offset. */
  get linearBase(): bigint {
    return this.base;
  }

  /** Compiles (once per path) and instantiates the core; its only imports are the host's (hostImports). */
  static async create(options: CoreOptions = {}): Promise<Core> {
    const path = options.wasmPath ?? resolve(packageRoot(), 'dist', 'core.wasm');
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
    let core: Core | undefined;
    const instance = await WebAssembly.instantiate(mod, { host: Core.hostImports(() => core) });
    const slots = options.windowSlots;
    if (slots !== undefined && !(Number.isInteger(slots) && slots >= 1 && slots <= 1024)) {
      throw new VirtiofsdError('ERR_GUEST_MEMORY', `windowSlots must be 1..1024 (${slots})`);
    }
    const native = options.native ?? (await tryLoadNative());
    if (native !== undefined && typeof native.mmapShared !== 'function') {
      // Its preadv/pwritev would read this core's struct iovecs as the old {u32, u32} pairs: refuse, never guess.
      throw new VirtiofsdError('ERR_NATIVE_MISSING',
        'the native addon is older than the core (no mmapShared, old iovec format): run `npm run build:native`');
    }
    core = new Core(instance, native, slots);
    return core;
  }

  /**
   * The core's `host` imports: `mapChunk(region, chunk, slot, length)` maps a chunk of a windowed region into a
   * window slot on the core's demand. Called from inside the core: never throws (-errno instead).
   */
  static hostImports(core: () => Core | undefined):
    { mapChunk: (r: number, c: number, s: number, l: number) => number } {
    return {
      mapChunk: (region, chunk, slot, length) => {
        try {
          return core()?.mapChunk(region, chunk >>> 0, slot >>> 0, length >>> 0) ?? -22;
        } catch {
          return -5;
        }
      },
    };
  }

  // ---- memory views -------------------------------------------------------------------------------------------

  private refresh(): void {
    if (this.memory.buffer !== this.buffer) {
      this.buffer = this.memory.buffer;
      this.dataView = new DataView(this.buffer);
      this.u8 = new Uint8Array(this.buffer);
    }
  }

  /**
   * A DataView over the whole linear memory (a new one after memory grew). Growing detaches the old buffer, so
   * its length, read inline, tells; `memory.buffer` is a call into the runtime on every request.
   */
  view(): DataView {
    if (this.buffer.byteLength === 0) this.refresh();
    return this.dataView;
  }

  /** `memory.buffer` as last seen (renewed after memory grew), without the runtime call `memory.buffer` makes. */
  memoryBuffer(): ArrayBuffer {
    if (this.buffer.byteLength === 0) this.refresh();
    return this.buffer;
  }

  /** A Uint8Array over the whole linear memory (a new one after memory grew). */
  bytes(): Uint8Array {
    if (this.buffer.byteLength === 0) this.refresh();
    return this.u8;
  }

  /** The core's last abort message (empty before any abort). */
  abortMessage(): string {
    const at = this.e.abortMessagePtr();
    return String.fromCharCode(...this.bytes().subarray(at, at + this.e.abortMessageLength()));
  }

  /** The raw exports, for modules layered on the core that wrap their own part (host/dax/dax-ranges.ts). */
  get rawExports(): CoreExports {
    return this.e;
  }

  private trap(err: unknown): never {
    if (err instanceof WebAssembly.RuntimeError) {
      const text = this.abortMessage();
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

  /**
   * Linear offset of [gpa, gpa+len) if wholly in one region (windowed: a window pointer, valid until the next
   * translation), else -1.
   */
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
    // V8 reserves a wasm32 memory's whole 4 GiB up front, and so does JavaScriptCore (Bun) for its first few
    // memories; a later one there is reallocated on growth (moved, bytes copied). The core's base follows; what
    // was registered at the old base is the caller's to register again (addTestRegion), and nothing may be
    // mmap'ed into the memory while it grows (mapGuestRegions unmaps first; addTestRegion detachTestMappings).
    if (this.native !== undefined) {
      const base = BigInt(this.native.addressOf(this.memory.buffer));
      if (base !== this.base) {
        this.base = base;
        this.e.memSetLinearBase(base);
      }
    }
    return before * WASM_PAGE;
  }

  /** Bytes the guest area can have at most (what it has, or can grow to at the end of linear memory). */
  private guestRoom(): number {
    const end = this.memory.buffer.byteLength;
    const free = MAX_PAGES * WASM_PAGE - end;
    if (this.guestCapacity > 0 && this.guestBase + this.guestCapacity === end) return this.guestCapacity + free;
    return Math.max(this.guestCapacity, free);
  }

  /** Makes the guest area at least `total` bytes (grown at the end of linear memory, or anew). */
  private reserveGuestArea(total: number): void {
    if (total <= this.guestCapacity) return;
    const end = this.memory.buffer.byteLength;
    if (this.guestCapacity > 0 && this.guestBase + this.guestCapacity === end) {
      this.grow(total - this.guestCapacity);
    } else {
      this.guestBase = this.grow(total);
    }
    this.guestCapacity = total;
  }

  private nativeOrThrow(): Native {
    if (this.native === undefined) {
      throw new VirtiofsdError('ERR_NATIVE_MISSING',
        'the native addon is needed to map guest memory: run `npm run build:native`');
    }
    return this.native;
  }

  /** Whether the current table is windowed (guest RAM reached through the window) and with how many slots. */
  get window(): { slots: number; mapped: number } | undefined {
    if (this.windowSlots === 0) return undefined;
    return { slots: this.windowSlots, mapped: this.e.memWindowSlotsMapped() };
  }

  /**
   * Maps a vhost-user memory table: unmaps the previous regions, then maps the new ones flat (each region's fd
   * over a 64 KiB-aligned place of the guest area, grown on first use, reused afterwards) when they fit in the
   * core's 4 GiB, else windowed (each region mapped whole in the process, the core reaching it through the
   * window), and registers the table with the core. On failure nothing stays registered (the core's table is
   * empty) and a SystemError/VirtiofsdError is thrown.
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
    if (this.forcedSlots !== undefined || total > this.guestRoom()) {
      this.mapWindowed(plan);
      return;
    }
    this.reserveGuestArea(total);
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
      const linear = this.guestBase + p.slot + p.delta;
      const rc = this.memAddRegion(p.region.gpa, p.region.uva, p.region.size, linear);
      if (rc < 0) {
        this.unmapGuestRegions();
        throw new VirtiofsdError('ERR_GUEST_MEMORY',
          `memory region gpa 0x${p.region.gpa.toString(16)} size 0x${p.region.size.toString(16)} rejected ` +
          `(overlap or overflow)`);
      }
      this.placed.push({ fd: -1, fileOffset: 0, mapping: 0n, mappingLength: 0 });
    }
  }

  /** Sets the core up for a windowed table: the window in the guest area (grown if need be). */
  private beginWindow(): void {
    const want = this.forcedSlots ?? DEFAULT_WINDOW_SLOTS;
    const fit = Math.floor(this.guestRoom() / SLOT_SIZE);
    const slots = Math.min(want, fit);
    if (slots < Math.min(want, MIN_WINDOW_SLOTS)) {
      throw new VirtiofsdError('ERR_GUEST_MEMORY',
        `no room in the core's linear memory for a window onto guest RAM (${fit} slots)`);
    }
    this.reserveGuestArea(slots * SLOT_SIZE);
    const rc = this.e.memSetWindow(this.guestBase, slots);
    if (rc < 0) throw new VirtiofsdError('ERR_GUEST_MEMORY', `window rejected by the core (${rc})`);
    this.windowSlots = slots;
  }

  private mapWindowed(plan: { length: number; fileOffset: number; delta: number; region: GuestRegion }[]): void {
    const native = this.nativeOrThrow();
    // The core's chunk table: each region takes ceil((delta + size) / CHUNK_SIZE) of its 2^19 entries.
    let chunks = 0n;
    for (const p of plan) chunks += (BigInt(p.delta) + p.region.size + BigInt(CHUNK_SIZE - 1)) / BigInt(CHUNK_SIZE);
    if (chunks * BigInt(CHUNK_SIZE) > BigInt(MAX_WINDOWED_RAM)) {
      throw new VirtiofsdError('ERR_GUEST_MEMORY',
        `guest RAM of ${chunks} chunks of 2 MiB is more than the ${MAX_WINDOWED_RAM} bytes the core can address`);
    }
    this.beginWindow();
    for (const p of plan) {
      const addr = native.mmapShared(p.region.fd, p.length, p.fileOffset);
      if (addr < 0n) {
        this.unmapGuestRegions();
        throw new SystemError('mmap', Number(-addr), native.strerror(Number(-addr)));
      }
      const host = addr + BigInt(p.delta);
      this.placed.push({ fd: p.region.fd, fileOffset: p.fileOffset, mapping: addr, mappingLength: p.length });
      const rc = this.e.memAddRegionWindowed(p.region.gpa, p.region.uva, p.region.size, host, p.delta);
      if (rc < 0) {
        this.unmapGuestRegions();
        throw new VirtiofsdError('ERR_GUEST_MEMORY',
          `memory region gpa 0x${p.region.gpa.toString(16)} size 0x${p.region.size.toString(16)} rejected ` +
          `(${rc === -7 ? 'the window\'s chunk table is full' : 'overlap or overflow'})`);
      }
    }
  }

  /** The `host.mapChunk` import: chunk `chunk` of windowed region `region` at linear offset `slot`. */
  private mapChunk(region: number, chunk: number, slot: number, length: number): number {
    const r = this.placed[region];
    const native = this.native;
    if (r === undefined || r.fd < 0 || native === undefined) return -22;
    const page = native.constants.PAGE_SIZE;
    this.windowMisses++;
    const c = native.constants;
    return native.mmapInto(this.memory.buffer, slot, Math.ceil(length / page) * page, c.PROT_READ | c.PROT_WRITE,
      r.fd, r.fileOffset + chunk * CHUNK_SIZE);
  }

  /**
   * Unmaps every mapped region (flat: the pages become anonymous zero pages; windowed: the whole-region mappings
   * go and the window is emptied) and empties the core's table.
   */
  unmapGuestRegions(): void {
    this.memReset();
    const placed = this.placed;
    const windowBytes = this.windowSlots * SLOT_SIZE;
    this.placed = [];
    this.windowSlots = 0;
    if (this.mapped.length === 0 && placed.every((r) => r.mapping === 0n) && windowBytes === 0) return;
    const native = this.nativeOrThrow();
    let failure: SystemError | undefined;
    const fail = (r: number): void => {
      if (r < 0 && failure === undefined) failure = new SystemError('mmap', -r, native.strerror(-r));
    };
    for (const m of this.mapped) fail(native.unmapFrom(this.memory.buffer, m.offset, m.length));
    this.mapped = [];
    for (const r of placed) if (r.mapping !== 0n) fail(native.munmap(r.mapping, r.mappingLength));
    // The window's slots still map chunks of the old fds: zero pages instead (the old memfds can be freed).
    if (windowBytes > 0) fail(native.unmapFrom(this.memory.buffer, this.guestBase, windowBytes));
    if (failure !== undefined) throw failure;
  }

  /**
   * Grows memory by `size` (rounded to 64 KiB) and registers it as a region at gpa/uva: guest RAM for tests and
   * benchmarks. Returns the region's linear offset (where JS reads and writes it). Flat: plain pages. With
   * `windowSlots`: a memfd mapped over those pages (the test's view), registered windowed, so the core reaches
   * it only through its window.
   */
  addTestRegion(gpa: bigint, uva: bigint, size: number): number {
    // Windowed: the window first, so the test regions' views stay one contiguous span after it.
    if (this.forcedSlots !== undefined && this.placed.length === 0) {
      this.memReset();
      this.beginWindow();
    }
    // Growing may move linear memory (grow()): no view or window slot stays mapped into the old place.
    const views = this.testRegions.filter((t) => t.fd >= 0);
    if (views.length > 0) {
      this.unmapGuestRegions();
      for (const t of views) this.unmapTestView(t);
    }
    const base = this.linearBase;
    const offset = this.grow(size);
    let fd = -1;
    if (this.forcedSlots !== undefined) {
      const native = this.nativeOrThrow();
      fd = native.memfdCreate('core-test-region', 0);
      if (fd < 0) throw new SystemError('memfd_create', -fd, native.strerror(-fd));
      const rc = native.ftruncate(fd, Math.ceil(size / WASM_PAGE) * WASM_PAGE);
      if (rc < 0) {
        native.close(fd);
        throw new SystemError('ftruncate', -rc, native.strerror(-rc));
      }
      // The fd stays open for mapChunk (until the process ends).
    }
    const region = { gpa, uva, size, offset, fd };
    this.testRegions.push(region);
    if (views.length > 0 || this.linearBase !== base) {
      for (const t of this.testRegions) if (t.fd >= 0) this.mapTestView(t);
      this.reAddTestRegions();
    } else {
      if (fd >= 0) this.mapTestView(region);
      this.registerTestRegion(region);
    }
    return offset;
  }

  /** Zero pages over a test view again (mapTestView undone), so its memfd is mapped nowhere in linear memory. */
  private unmapTestView(t: { size: number; offset: number }): void {
    const native = this.nativeOrThrow();
    const rc = native.unmapFrom(this.memory.buffer, t.offset, Math.ceil(t.size / WASM_PAGE) * WASM_PAGE);
    if (rc < 0) throw new SystemError('mmap', -rc, native.strerror(-rc));
  }

  /** Maps a windowed test region's memfd over its pages of linear memory: the test's view of it. */
  private mapTestView(t: { size: number; offset: number; fd: number }): void {
    const native = this.nativeOrThrow();
    const c = native.constants;
    const rc = native.mmapInto(this.memory.buffer, t.offset, Math.ceil(t.size / WASM_PAGE) * WASM_PAGE,
      c.PROT_READ | c.PROT_WRITE, t.fd, 0);
    if (rc < 0) throw new SystemError('mmap', -rc, native.strerror(-rc));
  }

  /** Registers a test region with the core (windowed when forced, else flat). */
  private registerTestRegion(t: { gpa: bigint; uva: bigint; size: number; offset: number; fd: number }): void {
    const host = this.linearBase + BigInt(t.offset);
    const rc = t.fd < 0 ? this.memAddRegion(t.gpa, t.uva, BigInt(t.size), t.offset)
      : this.e.memAddRegionWindowed(t.gpa, t.uva, BigInt(t.size), host, 0);
    if (rc < 0) throw new VirtiofsdError('ERR_GUEST_MEMORY', `test region gpa 0x${t.gpa.toString(16)} rejected`);
    this.placed.push({ fd: t.fd, fileOffset: 0, mapping: 0n, mappingLength: 0 });
  }

  /**
   * Unmaps what addTestRegion and the window mapped into linear memory and closes the test regions' memfds; the
   * core has no regions afterwards. A test calls it before dropping a windowed core: the runtime frees a dropped
   * core's memory and reuses it (Bun: a later Buffer landed on those pages), and a memfd still mapped there, the
   * same chunk in a slot and in the view, would alias that memory.
   */
  dropTestRegions(): void {
    let failure: unknown;
    try {
      this.unmapGuestRegions(); // the window's slots (a trapped core's memReset may throw: the views still go)
    } catch (err) {
      failure = err;
    }
    const views = this.testRegions.filter((t) => t.fd >= 0);
    this.testRegions = [];
    for (const t of views) {
      try {
        this.unmapTestView(t);
      } catch (err) {
        failure ??= err;
      } finally {
        this.native!.close(t.fd); // a view exists only with the addon
      }
    }
    if (failure !== undefined) throw failure;
  }

  /** A fresh memory table of the same test regions (as a new SET_MEM_TABLE would give): tests, fuzzing. */
  reAddTestRegions(): void {
    this.unmapGuestRegions();
    if (this.forcedSlots !== undefined) this.beginWindow();
    for (const t of this.testRegions) this.registerTestRegion(t);
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

  /** Chains available but not popped yet, without publishing avail_event (what a polling loop watches). */
  queueAvailPending(q: number): number {
    try { return this.e.queueAvailPending(q); } catch (err) { this.trap(err); }
  }

  /** EVENT_IDX: kicks off until n more chains are available, then one; returns the chains pending now. */
  queueKickAfter(q: number, n: number): number {
    try { return this.e.queueKickAfter(q, n); } catch (err) { this.trap(err); }
  }

  /** Kicks off while polling, or on again: then the chains pending after re-enabling (look once more). */
  queueSetKicks(q: number, on: boolean): number {
    try { return this.e.queueSetKicks(q, on ? 1 : 0); } catch (err) { this.trap(err); }
  }

  /** EVENT_IDX: chains made available (used false) or used elements pushed (true) since the driver's used_event. */
  queueDriverLag(q: number, used: boolean): number {
    try { return this.e.queueDriverLag(q, used ? 1 : 0); } catch (err) { this.trap(err); }
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

  /**
   * The current request as /dev/fuse bytes (fuse_in_header, args, a WRITE's payload) at dst: its length, or 0 (no
   * request current, cap short, no window slot). A queue thread forwards these to the main thread.
   */
  requestCopy(dst: number, cap: number): number {
    try { return this.e.requestCopy(dst, cap) >>> 0; } catch (err) { this.trap(err); }
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

  /**
   * struct iovecs {u64 base, u64 len} (process addresses) at iovPtr over the writable segments after `skip`
   * bytes; returns the count (<= IOV_MAX).
   */
  payloadReadIov(skip: number, maxBytes: number): number {
    try { return this.e.payloadReadIov(skip, maxBytes); } catch (err) { this.trap(err); }
  }

  /** iovecs at iovPtr over the readable segments, skip counted from the start of the args. */
  payloadWriteIov(skip: number, maxBytes: number): number {
    try { return this.e.payloadWriteIov(skip, maxBytes); } catch (err) { this.trap(err); }
  }

  /** READ answered from bytes: len bytes at linear src into the writable segments after skip. Bytes or 0. */
  payloadScatter(src: number, skip: number, len: number): number {
    try { return this.e.payloadScatter(src, skip, len) >>> 0; } catch (err) { this.trap(err); }
  }

  /** WRITE taken as bytes: len payload bytes (skip counted from the args' start) to linear dst. Bytes or 0. */
  payloadGather(dst: number, skip: number, len: number): number {
    try { return this.e.payloadGather(dst, skip, len) >>> 0; } catch (err) { this.trap(err); }
  }

  /**
   * 0, -ERANGE (did not fit; -EIO sent instead if possible), -EFAULT (windowed, no window slot: returned empty)
   * or -EINVAL (no current request).
   */
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

  /**
   * Makes a parked request current again for a full reply (usual encoders, payloadReadIov, replySend): 1, -EBUSY
   * while another request is current, -EINVAL when its queue/head is gone or its chain is malformed now.
   */
  requestResume(q: number, head: number, unique: bigint, opcode: number): number {
    try { return this.e.requestResume(q, head, BigInt.asIntN(64, unique), opcode); } catch (err) { this.trap(err); }
  }

  /** The same for a parked /dev/fuse request: answered into [outPtr, outPtr+outCap) (linearReplyLen bytes). */
  linearResume(outPtr: number, outCap: number, unique: bigint, opcode: number): number {
    try { return this.e.linearResume(outPtr, outCap, BigInt.asIntN(64, unique), opcode); } catch (err) { this.trap(err); }
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

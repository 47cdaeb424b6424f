// Guest memory table: guest-physical (gpa) and frontend-virtual (uva) ranges, where the host mapped each of them
// in its own address space (`host`, for the iovecs preadv/pwritev take), and how the core itself reaches them.
//
// Two modes, chosen by the host per memory table (DESIGN.md "Guest memory inside the core"):
//
//   flat      every region is mmapped over grown pages of linear memory (all of guest RAM + the core < 4 GiB).
//             A region is reached at `linOff + rel`; a chain's segments hold linear offsets (SEG_LINEAR).
//   windowed  guest RAM does not fit in 4 GiB. The core reaches it through a window of WINDOW slots: guest RAM is
//             cut into 2 MiB chunks (counted from each region's page-aligned file offset) and a slot is 4 MiB of
//             linear memory holding chunk c and c+1 (as far as the region goes), mapped on a miss by the host's
//             `mapChunk` import. So any range of <= CHUNK_SIZE bytes that starts in chunk c is contiguous in c's
//             slot. A chain's segments hold guest-physical addresses and their region, translated at use.
//
//   windowed linear memory:
//     windowBase                 + SLOT_SIZE                  + 2 * SLOT_SIZE
//     +--------------------------+----------------------------+----  ...  ----+
//     | slot 0: chunk c | c + 1  | slot 1: chunk d | d + 1    |               |   slotCount slots
//     +--------------------------+----------------------------+----  ...  ----+
//   CHUNK_SLOT[region chunkBase + chunk] = slot + 1 (0: not mapped); SLOT_CHUNK[slot] = global chunk + 1.
//
// A window pointer stays valid until the next translation, except in a slot with a pin (the rings of a queue
// are pinned while they are mapped). Every user below reads or writes through a pointer before it translates
// again; rings are pinned by split-queue.ts.
//
// Every guest address the core dereferences goes through a translation first, so a hostile address can only
// ever yield "not mapped", never a trap.
//
// Region record (REGION_STRIDE = 48 bytes, MAX_REGIONS records in REGIONS):
//
//   0        8        16       24       32       36       40         44       48
//   +--------+--------+--------+--------+--------+--------+----------+--------+
//   |  gpa   |  uva   |  size  |  host  | linOff | delta  | chunkBase| (pad)  |
//   +--------+--------+--------+--------+--------+--------+----------+--------+
//     u64      u64      u64      u64      u32      u32      u32
//   host: the process address of gpa. linOff: flat mode only. delta: (windowed) the region's offset inside its
//   first page, so chunk k covers bytes [k * CHUNK_SIZE - delta, ...) of the region.
//
// A buffer that straddles two regions whose guest-physical ranges touch is *split*: the chain walker asks again
// for the rest. Rings and indirect tables must lie wholly inside one region (`translateGpa`/`translateUva`).

export const MAX_REGIONS: u32 = 64;
const REGION_STRIDE: u32 = 48;
const R_GPA: u32 = 0;
const R_UVA: u32 = 8;
const R_SIZE: u32 = 16;
const R_HOST: u32 = 24;
const R_LIN: u32 = 32;
const R_DELTA: u32 = 36;
const R_CHUNK_BASE: u32 = 40;

const REGIONS: usize = memory.data(<i32>(MAX_REGIONS * REGION_STRIDE), 8);
let regionCount: u32 = 0;

/** Bumped on every table change, so queues know to translate their ring addresses again. */
export let memGeneration: u32 = 1;

/** Sentinel for "no linear offset" (translations return i64; a valid offset is 0..2^32-1). */
export const NOT_MAPPED: i64 = -1;

// The last region hit, tried first (requests cluster in one region).
let lastHit: u32 = 0;

/** Where linear memory starts in the process (the host tells once): iovecs of linear ranges are based on it. */
export let linearBase: u64 = 0;

// ---- the window (windowed mode) ---------------------------------------------------------------------------------
export const CHUNK_SHIFT: u32 = 21;
export const CHUNK_SIZE: u32 = 1 << CHUNK_SHIFT; // 2 MiB
const CHUNK_MASK: u64 = <u64>CHUNK_SIZE - 1;
export const SLOT_SHIFT: u32 = CHUNK_SHIFT + 1;
export const SLOT_SIZE: u32 = 1 << SLOT_SHIFT; // 4 MiB: chunk c and c + 1
/** 4 GiB of linear memory / SLOT_SIZE. */
export const MAX_SLOTS: u32 = 1024;
/** Chunks of all windowed regions together: 2^19 x 2 MiB = 1 TiB of guest RAM. */
export const MAX_CHUNKS: u32 = 1 << 19;

export let windowed = false;
let windowBase: usize = 0;
let slotCount: u32 = 0;
let chunkCount: u32 = 0;
let clockHand: u32 = 0;
/** Bumped by memReset: pins taken before it are gone (split-queue.ts compares it before unpinning). */
export let pinEpoch: u32 = 1;

// u16 per chunk: slot + 1, 0 = not in the window. MAX_SLOTS fits a u16.
const CHUNK_SLOT: usize = memory.data(<i32>(MAX_CHUNKS * 2), 8);
// Per slot: the global chunk it holds + 1 (0: empty), its pin count, its clock reference bit.
const SLOT_CHUNK: usize = memory.data(<i32>(MAX_SLOTS * 4), 8);
const SLOT_PINS: usize = memory.data(<i32>(MAX_SLOTS * 2), 8);
const SLOT_REF: usize = memory.data(<i32>MAX_SLOTS, 8);

/**
 * The host maps `length` bytes of region `region`'s fd from (page-aligned file offset of the region) +
 * chunk * CHUNK_SIZE at linear offset `slot` (MAP_SHARED|MAP_FIXED). 0, or -errno (the slot stays unusable).
 */
@external("host", "mapChunk")
declare function hostMapChunk(region: u32, chunk: u32, slot: usize, length: u32): i32;

@inline function regionPtr(i: u32): usize {
  return REGIONS + <usize>(i * REGION_STRIDE);
}

export function memSetLinearBase(base: u64): void {
  linearBase = base;
}

export function memReset(): void {
  regionCount = 0;
  lastHit = 0;
  memGeneration++;
  if (chunkCount != 0) memory.fill(CHUNK_SLOT, 0, <usize>chunkCount << 1);
  if (slotCount != 0) {
    memory.fill(SLOT_CHUNK, 0, <usize>slotCount << 2);
    memory.fill(SLOT_PINS, 0, <usize>slotCount << 1);
    memory.fill(SLOT_REF, 0, <usize>slotCount);
  }
  chunkCount = 0;
  clockHand = 0;
  pinEpoch++;
  windowed = false;
  slotCount = 0;
  windowBase = 0;
}

/**
 * After memReset, before the regions of a windowed table: the window is `slots` slots from linear offset `base`
 * (64 KiB-aligned: slots keep page alignment; inside linear memory; 1..MAX_SLOTS slots). 0 or -EINVAL.
 */
export function memSetWindow(base: u32, slots: u32): i32 {
  if (regionCount != 0 || slots == 0 || slots > MAX_SLOTS || (base & 0xffff) != 0) return -22;
  if (<u64>base + (<u64>slots << SLOT_SHIFT) > (<u64>memory.size() << 16)) return -22;
  windowBase = <usize>base;
  slotCount = slots;
  windowed = true;
  memGeneration++;
  return 0;
}

/** Overflow, emptiness, overlap and table-room checks common to both modes. */
function regionAcceptable(gpa: u64, uva: u64, size: u64): bool {
  if (size == 0 || regionCount >= MAX_REGIONS) return false;
  if (gpa + size < gpa || uva + size < uva) return false;
  for (let i: u32 = 0; i < regionCount; i++) {
    const r = regionPtr(i);
    const g = load<u64>(r, R_GPA);
    const u = load<u64>(r, R_UVA);
    const s = load<u64>(r, R_SIZE);
    if (gpa < g + s && g < gpa + size) return false;
    if (uva < u + s && u < uva + size) return false;
  }
  return true;
}

function storeRegion(gpa: u64, uva: u64, size: u64, host: u64, linearOffset: u32, delta: u32, chunkBase: u32): void {
  const r = regionPtr(regionCount);
  store<u64>(r, gpa, R_GPA);
  store<u64>(r, uva, R_UVA);
  store<u64>(r, size, R_SIZE);
  store<u64>(r, host, R_HOST);
  store<u32>(r, linearOffset, R_LIN);
  store<u32>(r, delta, R_DELTA);
  store<u32>(r, chunkBase, R_CHUNK_BASE);
  regionCount++;
  memGeneration++;
}

/** Flat mode: 0, or -EINVAL for an empty, overflowing, overlapping or out-of-linear-memory region, a full table. */
export function memAddRegion(gpa: u64, uva: u64, size: u64, linearOffset: u32): i32 {
  if (windowed || !regionAcceptable(gpa, uva, size)) return -22;
  if (<u64>linearOffset + size > (<u64>memory.size() << 16)) return -22;
  storeRegion(gpa, uva, size, linearBase + <u64>linearOffset, linearOffset, 0, 0);
  return 0;
}

/**
 * Windowed mode: a region the host mapped whole at process address `host` (gpa's byte), `delta` bytes into its
 * first page. 0, -EINVAL (as memAddRegion, or not windowed, delta >= CHUNK_SIZE), -E2BIG (more than MAX_CHUNKS
 * chunks in all).
 */
export function memAddRegionWindowed(gpa: u64, uva: u64, size: u64, host: u64, delta: u32): i32 {
  if (!windowed || delta >= CHUNK_SIZE || !regionAcceptable(gpa, uva, size) || host + size < host) return -22;
  const span = <u64>delta + size;
  const chunks = (span + CHUNK_MASK) >> CHUNK_SHIFT;
  if (chunks > <u64>(MAX_CHUNKS - chunkCount)) return -7;
  storeRegion(gpa, uva, size, host, 0, delta, chunkCount);
  chunkCount += <u32>chunks;
  return 0;
}

/** Index of the region containing addr (field R_GPA or R_UVA), or -1. */
function findRegion(addr: u64, field: u32): i32 {
  if (lastHit < regionCount) {
    const r = regionPtr(lastHit);
    if (addr - load<u64>(r + field) < load<u64>(r, R_SIZE)) return <i32>lastHit;
  }
  for (let i: u32 = 0; i < regionCount; i++) {
    const r = regionPtr(i);
    // Unsigned wrap makes `addr < start` fail the comparison too.
    if (addr - load<u64>(r + field) < load<u64>(r, R_SIZE)) {
      lastHit = i;
      return <i32>i;
    }
  }
  return -1;
}

// ---- the window -------------------------------------------------------------------------------------------------

/**
 * A slot for global chunk g (clock over unpinned slots, second chance for recently used ones), its old chunk
 * forgotten; -1 when every slot is pinned.
 */
function takeSlot(): i32 {
  for (let step: u32 = 0; step < (slotCount << 1); step++) {
    const s = clockHand;
    clockHand = clockHand + 1 == slotCount ? 0 : clockHand + 1;
    if (load<u16>(SLOT_PINS + (<usize>s << 1)) != 0) continue;
    if (load<u8>(SLOT_REF + <usize>s) != 0 && step < slotCount) {
      store<u8>(SLOT_REF + <usize>s, 0);
      continue;
    }
    const old = load<u32>(SLOT_CHUNK + (<usize>s << 2));
    // safe because: SLOT_CHUNK only ever holds a chunk index < chunkCount (+1), and memReset clears both tables
    if (old != 0) store<u16>(CHUNK_SLOT + (<usize>(old - 1) << 1), 0);
    store<u32>(SLOT_CHUNK + (<usize>s << 2), 0);
    return <i32>s;
  }
  return -1;
}

/**
 * Window pointer of byte `rel` of region i, counted from the region's page-aligned start (delta + offset in
 * the region): valid up to the end of the chunk after rel's chunk or the region's end, until the next
 * translation (unless pinned). 0 when no slot can be had or the host could not map it.
 */
function windowPtr(i: u32, rel: u64): usize {
  const chunk = <u32>(rel >> CHUNK_SHIFT);
  const g = load<u32>(regionPtr(i), R_CHUNK_BASE) + chunk;
  // safe because: rel < delta + size, so g < chunkBase + chunks(region) <= chunkCount <= MAX_CHUNKS
  let s1 = <u32>load<u16>(CHUNK_SLOT + (<usize>g << 1));
  if (s1 == 0) {
    const s = takeSlot();
    if (s < 0) return 0;
    const slot = windowBase + (<usize>s << SLOT_SHIFT);
    const r = regionPtr(i);
    const span = <u64>load<u32>(r, R_DELTA) + load<u64>(r, R_SIZE);
    const from = <u64>chunk << CHUNK_SHIFT;
    const left = span - from;
    const len = left < <u64>SLOT_SIZE ? <u32>left : SLOT_SIZE;
    if (hostMapChunk(i, chunk, slot, len) != 0) return 0;
    s1 = <u32>s + 1;
    store<u16>(CHUNK_SLOT + (<usize>g << 1), <u16>s1);
    store<u32>(SLOT_CHUNK + (<usize>s << 2), g + 1);
  }
  store<u8>(SLOT_REF + <usize>(s1 - 1), 1);
  return windowBase + (<usize>(s1 - 1) << SLOT_SHIFT) + <usize>(rel & CHUNK_MASK);
}

/** Pins the slot under window pointer p (a ring): it is never taken for another chunk until unpinned. */
export function pinWindow(p: usize): void {
  const s = (p - windowBase) >> SLOT_SHIFT;
  const a = SLOT_PINS + (s << 1);
  store<u16>(a, load<u16>(a) + 1);
}

export function unpinWindow(p: usize): void {
  const s = (p - windowBase) >> SLOT_SHIFT;
  const a = SLOT_PINS + (s << 1);
  const n = load<u16>(a);
  if (n != 0) store<u16>(a, n - 1);
}

// ---- translations -----------------------------------------------------------------------------------------------

function translateWhole(addr: u64, len: u64, field: u32): i64 {
  if (addr + len < addr) return NOT_MAPPED;
  const i = findRegion(addr, field);
  if (i < 0) return NOT_MAPPED;
  const r = regionPtr(<u32>i);
  const rel = addr - load<u64>(r + field);
  if (len > load<u64>(r, R_SIZE) - rel) return NOT_MAPPED;
  if (!windowed) return <i64>(<u64>load<u32>(r, R_LIN) + rel);
  // Contiguous in the window only up to one chunk's size (rings and indirect tables are at most 1 MiB).
  if (len > <u64>CHUNK_SIZE) return NOT_MAPPED;
  const p = windowPtr(<u32>i, rel + <u64>load<u32>(r, R_DELTA));
  return p == 0 ? NOT_MAPPED : <i64>p;
}

/**
 * Linear offset of [gpa, gpa+len) if it lies wholly inside one region, else NOT_MAPPED. Windowed: a window
 * pointer (len <= CHUNK_SIZE), valid until the next translation unless pinned.
 */
export function translateGpa(gpa: u64, len: u64): i64 {
  return translateWhole(gpa, len, R_GPA);
}

/** As translateGpa for a frontend virtual address. */
export function translateUva(uva: u64, len: u64): i64 {
  return translateWhole(uva, len, R_UVA);
}

// ---- segments ---------------------------------------------------------------------------------------------------
//
// A chain's segment (SEG_SIZE = 16 bytes; split-queue.ts keeps MAX_SEGS of them):
//
//   0            8        12       16
//   +------------+--------+--------+
//   |    addr    |  len   | region |   region SEG_LINEAR: addr is a linear offset (flat guest RAM, /dev/fuse
//   +------------+--------+--------+   buffers); else addr is a guest-physical address inside region `region`
//       u64         u32      u32
export const SEG_SIZE: u32 = 16;
export const SEG_LINEAR: u32 = 0xffffffff;

// Results of the last `segmentSpan`.
export let spanLen: u32 = 0;
export let spanAddr: u64 = 0;
export let spanRegion: u32 = 0;

/**
 * Where [gpa, gpa+len) starts: false if gpa is in no region; else spanAddr/spanRegion as a segment stores them
 * and spanLen = the bytes of the range inside that region. The caller has checked gpa + len does not overflow.
 */
export function segmentSpan(gpa: u64, len: u32): bool {
  const i = findRegion(gpa, R_GPA);
  if (i < 0) return false;
  const r = regionPtr(<u32>i);
  const rel = gpa - load<u64>(r, R_GPA);
  const room = load<u64>(r, R_SIZE) - rel;
  spanLen = <u64>len < room ? len : <u32>room;
  if (windowed) {
    spanAddr = gpa;
    spanRegion = <u32>i;
  } else {
    spanAddr = <u64>load<u32>(r, R_LIN) + rel;
    spanRegion = SEG_LINEAR;
  }
  return true;
}

/** Process address of byte `skip` of segment s (for iovecs). */
export function segmentHost(s: usize, skip: u32): u64 {
  const region = load<u32>(s, 12);
  const addr = load<u64>(s) + <u64>skip;
  if (region == SEG_LINEAR) return linearBase + addr;
  const r = regionPtr(region);
  return load<u64>(r, R_HOST) + (addr - load<u64>(r, R_GPA));
}

/**
 * Copies n bytes between linear memory at `lin` and segment s from byte `skip` (toSegment: lin -> segment).
 * Windowed segments go through the window piece by piece, a piece never past the chunk after its first byte's.
 * false when the window had no slot (nothing sensible was copied).
 */
export function segmentCopy(s: usize, skip: u32, lin: usize, n: u32, toSegment: bool): bool {
  const region = load<u32>(s, 12);
  if (region == SEG_LINEAR) {
    const p = <usize>load<u64>(s) + <usize>skip;
    if (toSegment) memory.copy(p, lin, n);
    else memory.copy(lin, p, n);
    return true;
  }
  const r = regionPtr(region);
  let rel = load<u64>(s) + <u64>skip - load<u64>(r, R_GPA) + <u64>load<u32>(r, R_DELTA);
  let left = n;
  while (left != 0) {
    const p = windowPtr(region, rel);
    if (p == 0) return false;
    const room = (<u64>SLOT_SIZE) - (rel & CHUNK_MASK);
    const piece = <u64>left < room ? left : <u32>room;
    if (toSegment) memory.copy(p, lin, piece);
    else memory.copy(lin, p, piece);
    lin += piece;
    rel += <u64>piece;
    left -= piece;
  }
  return true;
}

/** Window slots in use and the chunk count (tests, logs). */
export function windowSlotsMapped(): u32 {
  let n: u32 = 0;
  for (let s: u32 = 0; s < slotCount; s++) if (load<u32>(SLOT_CHUNK + (<usize>s << 2)) != 0) n++;
  return n;
}

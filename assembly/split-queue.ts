// Split virtqueues, device side (virtio 1.2 §2.7 "Split Virtqueues").
//
// Ring layout in guest memory for a queue of `num` entries (num a power of two, 1..32768):
//
//   Descriptor table (§2.7.5), 16 * num bytes, 16-aligned:
//     0        8        12       14       16
//     +--------+--------+--------+--------+
//     |  addr  |  len   | flags  |  next  |   x num      flags: VIRTQ_DESC_F_NEXT 1, _WRITE 2, _INDIRECT 4
//     +--------+--------+--------+--------+
//       u64      u32      u16      u16
//
//   Available ring (§2.7.6), driver -> device, 6 + 2 * num bytes, 2-aligned:
//     0       2       4                4+2*num       6+2*num
//     +-------+-------+----------------+-------------+
//     | flags |  idx  | ring[num] u16  | used_event  |   flags: VIRTQ_AVAIL_F_NO_INTERRUPT 1
//     +-------+-------+----------------+-------------+         used_event only with VIRTIO_RING_F_EVENT_IDX
//
//   Used ring (§2.7.8), device -> driver, 6 + 8 * num bytes, 4-aligned:
//     0       2       4                          4+8*num        6+8*num
//     +-------+-------+--------------------------+--------------+
//     | flags |  idx  | ring[num] {u32 id,u32 len}| avail_event |
//     +-------+-------+--------------------------+--------------+
//
// Indices (avail.idx, used.idx, our last_avail/next_used) are free-running u16 counters; a slot is idx & (num-1).
//
// A descriptor chain is walked as a cursor (table, index, hops) into the SEGS table (segments as drawn in
// guest-memory.ts: a linear offset in flat mode, a guest-physical address + region windowed): readable segments
// first, then writable ones. The walk itself translates nothing but an indirect table, so in windowed mode the
// table pointer stays valid through it (guest-memory.ts: one live window pointer, rings pinned).
// The chain is hostile: every rule below ends the walk as a bad chain (POP_BAD_CHAIN), never a trap.
//   - a `next` or head index outside its table; more descriptors than the table holds (loops included): `num`
//     in the main table, the table's length inside an indirect table. (The spec caps a whole chain at the queue
//     size, §2.7.5.3.1, but Linux's virtio_ring builds indirect tables longer than a small queue — virtio-fs
//     READs of 256 pages on a 128-entry queue — so, like rust-vmm, the limit restarts at the table length.)
//   - an address range that overflows u64 or is not (wholly, after splitting at region borders) guest RAM
//   - more than 2^32 - 1 bytes in either direction, more than MAX_SEGS segments
//   - a readable descriptor after a writable one (§2.7.4.2)
//   - INDIRECT without VIRTIO_F_INDIRECT_DESC, INDIRECT together with NEXT, INDIRECT inside an indirect table,
//     an indirect table length of 0, not a multiple of 16 or over 65536 entries (`next` is a u16), a table that
//     is not wholly in one region
// The WRITE flag of a descriptor that refers to an indirect table is ignored (§2.7.5.3.2).

import {
  memGeneration, translateUva, translateGpa, segmentSpan, spanLen, spanAddr, spanRegion, NOT_MAPPED, SEG_SIZE,
  SEG_LINEAR, windowed, pinEpoch, pinWindow, unpinWindow,
} from './guest-memory';

export const MAX_QUEUES: u32 = 64;
export const MAX_QUEUE_SIZE: u32 = 32768;

export const VIRTQ_DESC_F_NEXT: u16 = 1;
export const VIRTQ_DESC_F_WRITE: u16 = 2;
export const VIRTQ_DESC_F_INDIRECT: u16 = 4;
export const VIRTQ_AVAIL_F_NO_INTERRUPT: u16 = 1;

const DESC_SIZE: u32 = 16;
const MAX_INDIRECT_ENTRIES: u32 = 65536;
const D_ADDR: u32 = 0;
const D_LEN: u32 = 8;
const D_FLAGS: u32 = 12;
const D_NEXT: u32 = 14;
const RING_FLAGS: u32 = 0;
const RING_IDX: u32 = 2;
const RING_ENTRIES: u32 = 4;
const USED_ELEM_SIZE: u32 = 8;

export const POP_REQUEST: i32 = 1;
export const POP_EMPTY: i32 = 0;
export const POP_BAD_CHAIN: i32 = -1;
export const POP_BAD_MESSAGE: i32 = -2;
export const POP_RING_BROKEN: i32 = -3;

// ---- per-queue state: QUEUES[MAX_QUEUES], QUEUE_STRIDE bytes each ----------------------------------------------
//
//   0     4      8      12      16     20         24         28          32        40        48        56    60   64
//   +-----+------+------+-------+------+----------+----------+-----------+---------+---------+---------+-----+----+
//   | num | flags| desc | avail | used | lastAvail| nextUsed | signalled | descUva | usedUva |availUva | gen |pinE|
//   +-----+------+------+-------+------+----------+----------+-----------+---------+---------+---------+-----+----+
//     u32   u32    linear offsets (u32)  u16 in u32 (free-running)          u64       u64       u64      u32   u32
//   pinE: the window's pinEpoch when desc/avail/used were pinned (QF_PINNED; windowed mode)
const QUEUE_STRIDE: u32 = 64;
const Q_NUM: u32 = 0;
const Q_FLAGS: u32 = 4;
const Q_DESC: u32 = 8;
const Q_AVAIL: u32 = 12;
const Q_USED: u32 = 16;
const Q_LAST_AVAIL: u32 = 20;
const Q_NEXT_USED: u32 = 24;
const Q_SIGNALLED: u32 = 28;
const Q_DESC_UVA: u32 = 32;
const Q_USED_UVA: u32 = 40;
const Q_AVAIL_UVA: u32 = 48;
const Q_GEN: u32 = 56;
const Q_PIN_EPOCH: u32 = 60;

const QF_ADDR: u32 = 1; // ring addresses given
const QF_EVENT_IDX: u32 = 2; // VIRTIO_RING_F_EVENT_IDX negotiated
const QF_INDIRECT: u32 = 4; // VIRTIO_F_INDIRECT_DESC negotiated
const QF_BROKEN: u32 = 8; // avail.idx misbehaved: halted until queueReset
const QF_SYNCED: u32 = 16; // next_used was read from used.idx since the last (re)configuration
const QF_MAPPED: u32 = 32; // desc/avail/used linear offsets valid for Q_GEN
const QF_SIGNAL_STALE: u32 = 64; // so many used entries since the last decision that u16 compares are moot
const QF_PINNED: u32 = 128; // desc/avail/used window slots pinned (windowed mode), for Q_PIN_EPOCH

const QUEUES: usize = memory.data(<i32>(MAX_QUEUES * QUEUE_STRIDE), 8);

@inline function qp(q: u32): usize {
  return QUEUES + <usize>(q * QUEUE_STRIDE);
}

// ---- the current chain ------------------------------------------------------------------------------------------
export const MAX_SEGS: u32 = 4096;
/** Segments (guest-memory.ts) x MAX_SEGS: readable ones [0, segReadable), then writable ones. */
export const SEGS: usize = memory.data(<i32>(MAX_SEGS * SEG_SIZE), 8);
export let segReadable: u32 = 0;
export let segWritable: u32 = 0;
export let bytesReadable: u32 = 0;
export let bytesWritable: u32 = 0;
export let chainQueue: u32 = 0;
export let chainHead: u32 = 0;

// ---- memory-ordering points (the only places the core orders its accesses to shared rings) ----------------------
//
// Wasm's `atomic.fence` is rejected by the Binaryen that ships with asc 0.28 ("fence cannot be unordered"), so
// the points are built from sequentially consistent atomic loads/stores (V8: x86 mov/xchg, arm64 ldar/stlr) and
// a locked read-modify-write on a private word as the full fence. Atomic accesses need natural alignment, which
// mapRings checks for the avail (2) and used (4) rings.

const FENCE_WORD: usize = memory.data(8, 8);

/** A full (StoreLoad) barrier. */
@inline function fullFence(): void {
  atomic.add<u32>(FENCE_WORD, 0);
}

/**
 * Acquire-read of avail.idx: the ring entries and descriptors it covers are read after it.
 * virtio 1.2 §2.7.13.3 "Updating idx" (the driver's write barrier before idx pairs with this read barrier).
 */
function availIdxAcquire(avail: usize): u32 {
  return <u32>atomic.load<u16>(avail, RING_IDX);
}

/**
 * Release-write of used.idx: the used element (and the bytes written into the buffers) become visible first.
 * virtio 1.2 §2.7.8 "The Virtqueue Used Ring" / §2.7.14 "Receiving Used Buffers From The Device".
 */
function usedIdxRelease(used: usize, idx: u32): void {
  atomic.store<u16>(used, <u16>idx, RING_IDX);
}

/** The driver's used_event (EVENT_IDX), after the avail ring's `num` entries. No fence of its own. */
function usedEventOf(avail: usize, num: u32): u32 {
  return <u32>atomic.load<u16>(avail + RING_ENTRIES + <usize>(num << 1));
}

/**
 * Full fence between publishing used.idx and reading the driver's suppression state, then that state:
 * used_event (EVENT_IDX) or avail.flags. virtio 1.2 §2.7.7 "Used Buffer Notification Suppression".
 */
function readSuppressionAfterFence(avail: usize, num: u32, eventIdx: bool): u32 {
  fullFence();
  if (eventIdx) return usedEventOf(avail, num);
  return <u32>atomic.load<u16>(avail, RING_FLAGS);
}

/**
 * Publishes avail_event, then a full fence, so a buffer the driver adds while we decide to sleep is either seen
 * by our next avail.idx read or the driver sees avail_event and kicks.
 * virtio 1.2 §2.7.10 "Available Buffer Notification Suppression".
 */
function publishAvailEvent(used: usize, num: u32, idx: u32): void {
  atomic.store<u16>(used + RING_ENTRIES + <usize>(num * USED_ELEM_SIZE), <u16>idx);
  fullFence();
}

// ---- configuration ----------------------------------------------------------------------------------------------

/** Gives back the window slots a queue's rings pinned (if they were pinned in the current window). */
function unpinRings(p: usize): void {
  const flags = load<u32>(p, Q_FLAGS);
  if ((flags & QF_PINNED) == 0) return;
  store<u32>(p, flags & ~QF_PINNED, Q_FLAGS);
  if (load<u32>(p, Q_PIN_EPOCH) != pinEpoch) return; // memReset dropped every pin already
  unpinWindow(<usize>load<u32>(p, Q_DESC));
  unpinWindow(<usize>load<u32>(p, Q_AVAIL));
  unpinWindow(<usize>load<u32>(p, Q_USED));
}

export function queueReset(q: u32): void {
  if (q >= MAX_QUEUES) return;
  unpinRings(qp(q));
  memory.fill(qp(q), 0, QUEUE_STRIDE);
}

/** num must be a power of two in 1..32768, else -EINVAL. */
export function queueSetNum(q: u32, num: u32): i32 {
  if (q >= MAX_QUEUES || num == 0 || num > MAX_QUEUE_SIZE || (num & (num - 1)) != 0) return -22;
  const p = qp(q);
  unpinRings(p);
  store<u32>(p, num, Q_NUM);
  store<u32>(p, load<u32>(p, Q_FLAGS) & ~(QF_MAPPED | QF_SYNCED), Q_FLAGS);
  return 0;
}

/**
 * Translates the three ring addresses for the current memory table; false if a ring is not wholly mapped.
 * Windowed: each ring's slot is pinned as soon as it is translated (the next translation could otherwise take
 * it), and stays pinned until the queue is reconfigured, reset or the table changes.
 */
function mapRings(p: usize): bool {
  const flags = load<u32>(p, Q_FLAGS);
  const num = load<u32>(p, Q_NUM);
  if ((flags & QF_ADDR) == 0 || num == 0) return false;
  if ((flags & QF_MAPPED) != 0 && load<u32>(p, Q_GEN) == memGeneration) return true;
  unpinRings(p);
  const desc = translateUva(load<u64>(p, Q_DESC_UVA), <u64>(num * DESC_SIZE));
  if (windowed && desc != NOT_MAPPED) pinWindow(<usize>desc);
  const avail = translateUva(load<u64>(p, Q_AVAIL_UVA), <u64>(6 + 2 * num));
  if (windowed && avail != NOT_MAPPED) pinWindow(<usize>avail);
  const used = translateUva(load<u64>(p, Q_USED_UVA), <u64>(6 + USED_ELEM_SIZE * num));
  if (windowed && used != NOT_MAPPED) pinWindow(<usize>used);
  // Alignment (§2.7): desc 16, avail 2, used 4. avail/used are accessed atomically, which traps if misaligned.
  // (Window slots are SLOT_SIZE-aligned and keep the guest's offset within a chunk, so alignment carries over.)
  if (desc == NOT_MAPPED || avail == NOT_MAPPED || used == NOT_MAPPED || (desc & 15) != 0 || (avail & 1) != 0
    || (used & 3) != 0) {
    if (windowed) {
      if (desc != NOT_MAPPED) unpinWindow(<usize>desc);
      if (avail != NOT_MAPPED) unpinWindow(<usize>avail);
      if (used != NOT_MAPPED) unpinWindow(<usize>used);
    }
    store<u32>(p, flags & ~QF_MAPPED, Q_FLAGS);
    return false;
  }
  store<u32>(p, <u32>desc, Q_DESC);
  store<u32>(p, <u32>avail, Q_AVAIL);
  store<u32>(p, <u32>used, Q_USED);
  store<u32>(p, memGeneration, Q_GEN);
  let mapped = (load<u32>(p, Q_FLAGS) & ~QF_PINNED) | QF_MAPPED;
  if (windowed) {
    mapped |= QF_PINNED;
    store<u32>(p, pinEpoch, Q_PIN_EPOCH);
  }
  store<u32>(p, mapped, Q_FLAGS);
  return true;
}

/** Ring addresses in frontend virtual addresses; -EFAULT if num is known and a ring is not inside one region. */
export function queueSetAddr(q: u32, descUva: u64, usedUva: u64, availUva: u64): i32 {
  if (q >= MAX_QUEUES) return -22;
  const p = qp(q);
  unpinRings(p);
  store<u64>(p, descUva, Q_DESC_UVA);
  store<u64>(p, usedUva, Q_USED_UVA);
  store<u64>(p, availUva, Q_AVAIL_UVA);
  store<u32>(p, (load<u32>(p, Q_FLAGS) | QF_ADDR) & ~(QF_MAPPED | QF_SYNCED), Q_FLAGS);
  if (load<u32>(p, Q_NUM) != 0 && !mapRings(p)) return -14;
  return 0;
}

/** The next avail index to consume. The used index is (re)read from used.idx at the next pop. */
export function queueSetBase(q: u32, lastAvailIdx: u32): void {
  if (q >= MAX_QUEUES) return;
  const p = qp(q);
  store<u32>(p, lastAvailIdx & 0xffff, Q_LAST_AVAIL);
  store<u32>(p, load<u32>(p, Q_FLAGS) & ~QF_SYNCED, Q_FLAGS);
}

export function queueGetBase(q: u32): u32 {
  if (q >= MAX_QUEUES) return 0;
  return load<u32>(qp(q), Q_LAST_AVAIL);
}

export function queueSetFeatures(q: u32, eventIdx: bool, indirect: bool): void {
  if (q >= MAX_QUEUES) return;
  const p = qp(q);
  let flags = load<u32>(p, Q_FLAGS) & ~(QF_EVENT_IDX | QF_INDIRECT);
  if (eventIdx) flags |= QF_EVENT_IDX;
  if (indirect) flags |= QF_INDIRECT;
  store<u32>(p, flags, Q_FLAGS);
}

/** Makes the rings usable: mapped for the current memory table and next_used taken from used.idx once. */
function ready(p: usize): bool {
  if (!mapRings(p)) return false;
  const flags = load<u32>(p, Q_FLAGS);
  if ((flags & QF_SYNCED) == 0) {
    const used = <usize>load<u32>(p, Q_USED);
    const idx = <u32>load<u16>(used, RING_IDX);
    store<u32>(p, idx, Q_NEXT_USED);
    store<u32>(p, idx, Q_SIGNALLED);
    store<u32>(p, (flags | QF_SYNCED) & ~QF_SIGNAL_STALE, Q_FLAGS);
  }
  return true;
}

// ---- the chain walk --------------------------------------------------------------------------------------------

/**
 * Appends [gpa, gpa+len) as one or more segments (split at region borders) at index segReadable + segWritable,
 * counting them as writable or readable (readable segments always precede writable ones).
 */
function addSegments(gpa: u64, len: u32, writable: bool): bool {
  if (gpa + <u64>len < gpa) return false;
  let addr = gpa;
  let left = len;
  while (left != 0) {
    if (!segmentSpan(addr, left)) return false;
    const n = segReadable + segWritable;
    if (n >= MAX_SEGS) return false;
    const s = SEGS + <usize>(n * SEG_SIZE);
    store<u64>(s, spanAddr);
    store<u32>(s, spanLen, 8);
    store<u32>(s, spanRegion, 12);
    if (writable) segWritable++;
    else segReadable++;
    addr += <u64>spanLen;
    left -= spanLen;
  }
  return true;
}

/** Walks the chain at `head` of queue record p into SEGS. */
function walkChain(p: usize, head: u32): bool {
  const num = load<u32>(p, Q_NUM);
  const indirectOk = (load<u32>(p, Q_FLAGS) & QF_INDIRECT) != 0;
  let table = <usize>load<u32>(p, Q_DESC);
  let tableLen = num;
  let idx = head;
  let hops: u32 = 0;
  let inIndirect = false;
  let sawWritable = false;
  let totalR: u64 = 0;
  let totalW: u64 = 0;
  segReadable = 0;
  segWritable = 0;
  bytesReadable = 0;
  bytesWritable = 0;
  while (true) {
    if (idx >= tableLen) return false;
    if (++hops > tableLen) return false;
    const d = table + <usize>(idx * DESC_SIZE);
    const addr = load<u64>(d, D_ADDR);
    const len = load<u32>(d, D_LEN);
    const flags = load<u16>(d, D_FLAGS);
    const next = <u32>load<u16>(d, D_NEXT);
    if ((flags & VIRTQ_DESC_F_INDIRECT) != 0) {
      if (!indirectOk || inIndirect || (flags & VIRTQ_DESC_F_NEXT) != 0) return false;
      if (len == 0 || (len & (DESC_SIZE - 1)) != 0 || len > MAX_INDIRECT_ENTRIES * DESC_SIZE) return false;
      const t = translateGpa(addr, <u64>len);
      if (t == NOT_MAPPED) return false;
      table = <usize>t;
      tableLen = len / DESC_SIZE;
      idx = 0;
      hops = 0;
      inIndirect = true;
      continue;
    }
    if ((flags & VIRTQ_DESC_F_WRITE) != 0) {
      sawWritable = true;
      totalW += <u64>len;
      if (totalW > <u64>u32.MAX_VALUE) return false;
      if (!addSegments(addr, len, true)) return false;
    } else {
      if (sawWritable) return false;
      totalR += <u64>len;
      if (totalR > <u64>u32.MAX_VALUE) return false;
      if (!addSegments(addr, len, false)) return false;
    }
    if ((flags & VIRTQ_DESC_F_NEXT) == 0) break;
    idx = next;
  }
  bytesReadable = <u32>totalR;
  bytesWritable = <u32>totalW;
  return true;
}

// ---- a linear request (the /dev/fuse transport) -----------------------------------------------------------------

/**
 * Makes [inPtr, inPtr+inLen) the one readable segment and [outPtr, outPtr+outCap) the one writable segment of the
 * current chain, as if a driver had queued them: request.ts then reads and answers it through the same
 * gather/scatter and iovec code. The host owns both ranges (no guest input here), but they are still checked:
 * inside linear memory, no u32 overflow, not overlapping. false leaves the chain empty.
 */
export function linearChain(inPtr: u32, inLen: u32, outPtr: u32, outCap: u32): bool {
  segReadable = 0;
  segWritable = 0;
  bytesReadable = 0;
  bytesWritable = 0;
  chainQueue = 0;
  chainHead = 0;
  const memEnd = <u64>memory.size() << 16;
  const inEnd = <u64>inPtr + <u64>inLen;
  const outEnd = <u64>outPtr + <u64>outCap;
  if (inEnd > memEnd || outEnd > memEnd) return false;
  if (inLen != 0 && outCap != 0 && <u64>inPtr < outEnd && <u64>outPtr < inEnd) return false;
  if (inLen != 0) {
    store<u64>(SEGS, <u64>inPtr);
    store<u32>(SEGS, inLen, 8);
    store<u32>(SEGS, SEG_LINEAR, 12);
    segReadable = 1;
  }
  if (outCap != 0) {
    const s = SEGS + <usize>(segReadable * SEG_SIZE);
    store<u64>(s, <u64>outPtr);
    store<u32>(s, outCap, 8);
    store<u32>(s, SEG_LINEAR, 12);
    segWritable = 1;
  }
  bytesReadable = inLen;
  bytesWritable = outCap;
  return true;
}

// ---- used ring --------------------------------------------------------------------------------------------------

/** Puts {id: head, len} in the used ring of queue q and publishes it (release-write of used.idx). */
export function pushUsed(q: u32, head: u32, len: u32): void {
  const p = qp(q);
  // The host may have reset or remapped the queue between pop and reply; then the chain is simply dropped.
  if ((load<u32>(p, Q_FLAGS) & QF_MAPPED) == 0 || load<u32>(p, Q_GEN) != memGeneration) return;
  const num = load<u32>(p, Q_NUM);
  const used = <usize>load<u32>(p, Q_USED);
  const nextUsed = load<u32>(p, Q_NEXT_USED);
  const e = used + RING_ENTRIES + <usize>((nextUsed & (num - 1)) * USED_ELEM_SIZE);
  store<u32>(e, head);
  store<u32>(e, len, 4);
  const idx = (nextUsed + 1) & 0xffff;
  store<u32>(p, idx, Q_NEXT_USED);
  // Half the index space used without a notify decision: the u16 window test would lie, so notify next time.
  if (((idx - load<u32>(p, Q_SIGNALLED)) & 0xffff) >= 0x8000) {
    store<u32>(p, load<u32>(p, Q_FLAGS) | QF_SIGNAL_STALE, Q_FLAGS);
  }
  usedIdxRelease(used, idx);
}

// ---- pop --------------------------------------------------------------------------------------------------------

/**
 * Takes the next available chain of queue q into SEGS.
 * POP_REQUEST (chainHead/chainQueue set), POP_EMPTY, POP_BAD_CHAIN (already returned with used len 0, or, for a
 * head index >= num, skipped without a used element since it names no descriptor), POP_RING_BROKEN.
 */
/**
 * Walks the chain at `head` of queue q again, for a request the host parked (requestPark) and now completes: the
 * chain is still the device's, and walking it afresh re-checks it against today's memory table. 1: SEGS hold it;
 * 0: the queue is not ready or `head` is out of range (nothing to return); -1: the chain is malformed now (it was
 * returned with used len 0).
 */
export function rewalkChain(q: u32, head: u32): i32 {
  if (q >= MAX_QUEUES) return 0;
  const p = qp(q);
  if ((load<u32>(p, Q_FLAGS) & QF_BROKEN) != 0 || !ready(p)) return 0;
  if (head >= load<u32>(p, Q_NUM)) return 0;
  return walkOrReturn(p, q, head) ? 1 : -1;
}

/** Walks the chain at `head` into SEGS; a malformed one is returned with used len 0 and SEGS left empty. */
function walkOrReturn(p: usize, q: u32, head: u32): bool {
  chainQueue = q;
  chainHead = head;
  if (walkChain(p, head)) return true;
  segReadable = 0;
  segWritable = 0;
  bytesReadable = 0;
  bytesWritable = 0;
  pushUsed(q, head, 0);
  return false;
}

export function popChain(q: u32): i32 {
  if (q >= MAX_QUEUES) return POP_EMPTY;
  const p = qp(q);
  if ((load<u32>(p, Q_FLAGS) & QF_BROKEN) != 0) return POP_RING_BROKEN;
  if (!ready(p)) return POP_EMPTY;
  const num = load<u32>(p, Q_NUM);
  const avail = <usize>load<u32>(p, Q_AVAIL);
  const lastAvail = load<u32>(p, Q_LAST_AVAIL);
  let availIdx = availIdxAcquire(avail);
  let pending = (availIdx - lastAvail) & 0xffff;
  if (pending > num) {
    store<u32>(p, load<u32>(p, Q_FLAGS) | QF_BROKEN, Q_FLAGS);
    return POP_RING_BROKEN;
  }
  if (pending == 0) {
    if ((load<u32>(p, Q_FLAGS) & QF_EVENT_IDX) == 0) return POP_EMPTY;
    // Ask for a kick when the driver makes lastAvail available, then look once more (§2.7.10).
    publishAvailEvent(<usize>load<u32>(p, Q_USED), num, lastAvail);
    availIdx = availIdxAcquire(avail);
    pending = (availIdx - lastAvail) & 0xffff;
    if (pending == 0) return POP_EMPTY;
    if (pending > num) {
      store<u32>(p, load<u32>(p, Q_FLAGS) | QF_BROKEN, Q_FLAGS);
      return POP_RING_BROKEN;
    }
  }
  const head = <u32>load<u16>(avail + RING_ENTRIES + <usize>((lastAvail & (num - 1)) << 1));
  store<u32>(p, (lastAvail + 1) & 0xffff, Q_LAST_AVAIL);
  if (head >= num) {
    chainQueue = q;
    chainHead = head;
    segReadable = 0;
    segWritable = 0;
    return POP_BAD_CHAIN;
  }
  return walkOrReturn(p, q, head) ? POP_REQUEST : POP_BAD_CHAIN;
}

/**
 * Whether the driver wants a used-buffer notification now. Decides once per batch: it compares against the used
 * index at the previous decision. EVENT_IDX: vring_need_event(used_event, new, old) (§2.7.7.2); otherwise
 * notify unless VIRTQ_AVAIL_F_NO_INTERRUPT, and never when nothing was used since the last decision.
 */
export function queueNeedsNotify(q: u32): bool {
  if (q >= MAX_QUEUES) return false;
  const p = qp(q);
  if (!ready(p)) return false;
  const num = load<u32>(p, Q_NUM);
  const avail = <usize>load<u32>(p, Q_AVAIL);
  const flags = load<u32>(p, Q_FLAGS);
  const eventIdx = (flags & QF_EVENT_IDX) != 0;
  const newIdx = load<u32>(p, Q_NEXT_USED);
  const oldIdx = load<u32>(p, Q_SIGNALLED);
  store<u32>(p, newIdx, Q_SIGNALLED);
  if ((flags & QF_SIGNAL_STALE) != 0) {
    store<u32>(p, flags & ~QF_SIGNAL_STALE, Q_FLAGS);
    return true;
  }
  if (newIdx == oldIdx) return false;
  const suppression = readSuppressionAfterFence(avail, num, eventIdx);
  if (eventIdx) return ((newIdx - suppression - 1) & 0xffff) < ((newIdx - oldIdx) & 0xffff);
  return (suppression & VIRTQ_AVAIL_F_NO_INTERRUPT) == 0;
}

// ---- polling (the host watches avail.idx for a while instead of waiting for a kick) ---------------------------

const VIRTQ_USED_F_NO_NOTIFY: u16 = 1;

/**
 * Chains the driver made available that were not popped yet, without touching the notification state (unlike
 * popChain, which publishes avail_event when it finds the ring empty). 0 when the queue is not ready. A broken
 * ring, or an avail.idx that moved by more than `num`, counts as pending (1, or `num`): the caller pops, and
 * popChain reports POP_RING_BROKEN.
 */
export function queueAvailPending(q: u32): u32 {
  if (q >= MAX_QUEUES) return 0;
  const p = qp(q);
  if ((load<u32>(p, Q_FLAGS) & QF_BROKEN) != 0) return 1;
  if (!ready(p)) return 0;
  const num = load<u32>(p, Q_NUM);
  const pending = (availIdxAcquire(<usize>load<u32>(p, Q_AVAIL)) - load<u32>(p, Q_LAST_AVAIL)) & 0xffff;
  return pending > num ? num : pending;
}

/**
 * How far the driver is behind, measured from the used_event it last published (EVENT_IDX only): `used` false,
 * the chains it made available since (avail.idx - used_event); true, the used elements pushed since
 * (next used - used_event). 0 without EVENT_IDX, when the queue is not ready, or when the distance is more than the
 * ring holds: used_event then does not describe a position the driver is waiting at (Linux writes 0 there while
 * its callbacks are off). The host's notification coalescing (queue-processor.ts) decides from these.
 */
export function queueDriverLag(q: u32, used: bool): u32 {
  if (q >= MAX_QUEUES) return 0;
  const p = qp(q);
  if ((load<u32>(p, Q_FLAGS) & (QF_BROKEN | QF_EVENT_IDX)) != QF_EVENT_IDX || !ready(p)) return 0;
  const num = load<u32>(p, Q_NUM);
  const avail = <usize>load<u32>(p, Q_AVAIL);
  // No fence: an estimate for the host's policy; queueNeedsNotify still decides each call with one.
  const usedEvent = usedEventOf(avail, num);
  const from = used ? load<u32>(p, Q_NEXT_USED) : availIdxAcquire(avail);
  const lag = (from - usedEvent) & 0xffff;
  return lag > num ? 0 : lag;
}

/**
 * EVENT_IDX only: asks the driver for one kick once `n` (>= 1) more chains are available than were consumed:
 * avail_event = last_avail + n - 1, then a full fence (virtio 1.2, 2.7.10: the driver notifies when avail.idx
 * moves past avail_event). A batch window ends at its burst's last chain instead of at its timer. Returns the
 * chains pending after the fence (serve now when they are already n); 0 without EVENT_IDX or on a dead ring.
 */
export function queueKickAfter(q: u32, n: u32): u32 {
  if (q >= MAX_QUEUES || n == 0) return 0;
  const p = qp(q);
  if ((load<u32>(p, Q_FLAGS) & QF_BROKEN) != 0 || !ready(p)) return 0;
  if ((load<u32>(p, Q_FLAGS) & QF_EVENT_IDX) == 0) return 0;
  publishAvailEvent(<usize>load<u32>(p, Q_USED), load<u32>(p, Q_NUM), load<u32>(p, Q_LAST_AVAIL) + n - 1);
  return queueAvailPending(q);
}

/**
 * Turns available-buffer notifications (kicks) of queue q off or on while the host polls (§2.7.10).
 * Off: with EVENT_IDX nothing is written — avail_event stays where the last empty pop left it, behind the
 * driver's index, so the driver does not kick; without it VIRTQ_USED_F_NO_NOTIFY is set in used.flags.
 * On: avail_event = last_avail (EVENT_IDX) or the flag cleared, then a full fence; returns the chains pending
 * after that, so a buffer made available while kicks were off is not left waiting for a kick that never comes.
 */
export function queueSetKicks(q: u32, on: bool): u32 {
  if (q >= MAX_QUEUES) return 0;
  const p = qp(q);
  if ((load<u32>(p, Q_FLAGS) & QF_BROKEN) != 0 || !ready(p)) return 0;
  const num = load<u32>(p, Q_NUM);
  const used = <usize>load<u32>(p, Q_USED);
  if ((load<u32>(p, Q_FLAGS) & QF_EVENT_IDX) != 0) {
    if (!on) return 0;
    publishAvailEvent(used, num, load<u32>(p, Q_LAST_AVAIL));
  } else {
    const flags = atomic.load<u16>(used, RING_FLAGS);
    atomic.store<u16>(used, on ? flags & ~VIRTQ_USED_F_NO_NOTIFY : flags | VIRTQ_USED_F_NO_NOTIFY, RING_FLAGS);
    if (!on) return 0;
    fullFence();
  }
  return queueAvailPending(q);
}

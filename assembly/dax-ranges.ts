// The DAX window's range allocator, as the guest driver keeps it (Linux fs/fuse/dax.c): the window is cut into
// N ranges of FUSE_DAX_SZ = 2 MiB; a range is either free or busy, holding one 2 MiB-aligned piece of one file.
// Range i lives at window offset i << FUSE_DAX_SHIFT. No I/O here: the host sends FUSE_SETUPMAPPING /
// FUSE_REMOVEMAPPING and asks this module which range to use, which to reclaim, and what is mapped where.
//
// Range record (RANGE_STRIDE = 32 bytes, MAX_RANGES records in RANGES):
//
//   0          8          16     20     24        28      30     32
//   +----------+----------+------+------+---------+-------+------+
//   |   node   | fileIdx  | prev | next | hashNxt | flags | pins |
//   +----------+----------+------+------+---------+-------+------+
//       u64        u64      u32    u32     u32      u16     u16
//
//   node, fileIdx   the key: FUSE node id and file offset >> FUSE_DAX_SHIFT (valid while BUSY)
//   prev, next      the list the range is on: the free list (FIFO) or the busy list (LRU: head = least recently
//                   used, tail = most recently used); NIL ends a list
//   hashNxt         next record in the same bucket of the (node, fileIdx) hash (busy ranges only)
//   flags           F_BUSY, F_WRITABLE (the mapping was set up with FUSE_SETUPMAPPING_FLAG_WRITE)
//   pins            users that must not see the range reclaimed (a mapped view being read)
//
// The "interval map" from (node, file range) to window offset: ranges are fixed-size and aligned, so an interval
// of one file is a set of keys (node, fileIdx) and an exact-key hash table is the whole map (the guest's interval
// tree degenerates the same way). Reclaim follows the driver: when free ranges fall below
// FUSE_DAX_RECLAIM_THRESHOLD percent of the window (at least one), the host frees up to FUSE_DAX_RECLAIM_CHUNK
// least recently used, unpinned ranges.

export const FUSE_DAX_SHIFT: u32 = 21;
export const FUSE_DAX_RECLAIM_CHUNK: u32 = 10;
export const FUSE_DAX_RECLAIM_THRESHOLD: u32 = 20;
/** 8192 x 2 MiB = a 16 GiB window at most. */
export const MAX_RANGES: u32 = 8192;
/** fileIdx bound: the file offset (fileIdx << 21) must fit in a signed 64-bit loff_t. */
const MAX_FILE_IDX: u64 = (<u64>1 << 42) - 1;

const RANGE_STRIDE: u32 = 32;
const O_NODE: u32 = 0;
const O_IDX: u32 = 8;
const O_PREV: u32 = 16;
const O_NEXT: u32 = 20;
const O_HASH: u32 = 24;
const O_FLAGS: u32 = 28;
const O_PINS: u32 = 30;
const F_BUSY: u16 = 1;
const F_WRITABLE: u16 = 2;
const NIL: u32 = 0xffff_ffff;
const BUCKETS: u32 = 2 * MAX_RANGES; // power of two

const EINVAL: i32 = 22;
const EEXIST: i32 = 17;
const ENOSPC: i32 = 28;
const EBUSY: i32 = 16;

const RANGES: usize = memory.data(<i32>(MAX_RANGES * RANGE_STRIDE), 8);
const TABLE: usize = memory.data(<i32>(BUCKETS * 4), 4);

let nRanges: u32 = 0;
let freeHead: u32 = NIL;
let freeTail: u32 = NIL;
let freeCount: u32 = 0;
let busyHead: u32 = NIL;
let busyTail: u32 = NIL;
let busyCount: u32 = 0;

// @ts-ignore: decorator
@inline function rec(i: u32): usize {
  return RANGES + <usize>i * RANGE_STRIDE;
}

// @ts-ignore: decorator
@inline function flagsOf(i: u32): u16 {
  return load<u16>(rec(i), O_FLAGS);
}

function bucketOf(node: u64, idx: u64): usize {
  let h = node * 0x9E3779B97F4A7C15 ^ (idx + 0x632BE59BD9B4E019) * 0xC2B2AE3D27D4EB4F;
  h ^= h >> 29;
  return TABLE + <usize>(<u32>h & (BUCKETS - 1)) * 4;
}

// ---- the two lists ------------------------------------------------------------------------------------------------

function unlink(i: u32, busy: bool): void {
  const p = load<u32>(rec(i), O_PREV);
  const n = load<u32>(rec(i), O_NEXT);
  if (p !== NIL) store<u32>(rec(p), n, O_NEXT);
  else if (busy) busyHead = n;
  else freeHead = n;
  if (n !== NIL) store<u32>(rec(n), p, O_PREV);
  else if (busy) busyTail = p;
  else freeTail = p;
  if (busy) busyCount--;
  else freeCount--;
}

function append(i: u32, busy: bool): void {
  const tail = busy ? busyTail : freeTail;
  store<u32>(rec(i), tail, O_PREV);
  store<u32>(rec(i), NIL, O_NEXT);
  if (tail !== NIL) store<u32>(rec(tail), i, O_NEXT);
  else if (busy) busyHead = i;
  else freeHead = i;
  if (busy) {
    busyTail = i;
    busyCount++;
  } else {
    freeTail = i;
    freeCount++;
  }
}

// ---- the (node, fileIdx) map --------------------------------------------------------------------------------------

function find(node: u64, idx: u64): u32 {
  let i = load<u32>(bucketOf(node, idx));
  while (i !== NIL) {
    if (load<u64>(rec(i), O_NODE) === node && load<u64>(rec(i), O_IDX) === idx) return i;
    i = load<u32>(rec(i), O_HASH);
  }
  return NIL;
}

function hashRemove(i: u32): void {
  const b = bucketOf(load<u64>(rec(i), O_NODE), load<u64>(rec(i), O_IDX));
  let at = b;
  let j = load<u32>(b);
  while (j !== NIL) {
    if (j === i) {
      store<u32>(at, load<u32>(rec(i), O_HASH));
      return;
    }
    at = rec(j) + O_HASH;
    j = load<u32>(at);
  }
  // A busy range missing from its bucket: internal corruption, never guest input.
  unreachable();
}

// ---- the ABI (assembly/index.ts re-exports these) ------------------------------------------------------------------

/** Forgets every mapping and makes `n` ranges free, in window order. 0, or -EINVAL for n = 0 or n > MAX_RANGES. */
export function daxInit(n: u32): i32 {
  if (n === 0 || n > MAX_RANGES) return -EINVAL;
  nRanges = n;
  freeHead = freeTail = busyHead = busyTail = NIL;
  freeCount = busyCount = 0;
  memory.fill(TABLE, 0xff, <usize>BUCKETS * 4);
  for (let i: u32 = 0; i < n; i++) {
    store<u64>(rec(i), 0, O_NODE);
    store<u64>(rec(i), 0, O_IDX);
    store<u32>(rec(i), NIL, O_HASH);
    store<u16>(rec(i), 0, O_FLAGS);
    store<u16>(rec(i), 0, O_PINS);
    append(i, false);
  }
  return 0;
}

export function daxRangeCount(): u32 {
  return nRanges;
}

export function daxFreeCount(): u32 {
  return freeCount;
}

export function daxBusyCount(): u32 {
  return busyCount;
}

/** The range holding (node, fileIdx), made most recently used; -1 when none does. */
export function daxLookup(node: u64, fileIdx: u64): i32 {
  const i = find(node, fileIdx);
  if (i === NIL) return -1;
  unlink(i, true);
  append(i, true);
  return <i32>i;
}

/**
 * Takes the first free range for (node, fileIdx) and makes it busy (most recently used). The host then sends
 * FUSE_SETUPMAPPING for it and calls daxUnmap if that fails. -ENOSPC: no free range (reclaim first);
 * -EEXIST: the key is already mapped; -EINVAL: fileIdx too large.
 */
export function daxMap(node: u64, fileIdx: u64, writable: bool): i32 {
  if (fileIdx > MAX_FILE_IDX) return -EINVAL;
  if (find(node, fileIdx) !== NIL) return -EEXIST;
  const i = freeHead;
  if (i === NIL) return -ENOSPC;
  unlink(i, false);
  store<u64>(rec(i), node, O_NODE);
  store<u64>(rec(i), fileIdx, O_IDX);
  store<u16>(rec(i), F_BUSY | (writable ? F_WRITABLE : 0), O_FLAGS);
  store<u16>(rec(i), 0, O_PINS);
  const b = bucketOf(node, fileIdx);
  store<u32>(rec(i), load<u32>(b), O_HASH);
  store<u32>(b, i);
  append(i, true);
  return <i32>i;
}

/** Returns a busy range to the free list (after FUSE_REMOVEMAPPING). 0; -EINVAL not busy; -EBUSY pinned. */
export function daxUnmap(i: u32): i32 {
  if (i >= nRanges || (flagsOf(i) & F_BUSY) === 0) return -EINVAL;
  if (load<u16>(rec(i), O_PINS) !== 0) return -EBUSY;
  hashRemove(i);
  unlink(i, true);
  store<u16>(rec(i), 0, O_FLAGS);
  store<u32>(rec(i), NIL, O_HASH);
  append(i, false);
  return 0;
}

/** The least recently used busy range nobody pinned, or -1. */
export function daxReclaimVictim(): i32 {
  let i = busyHead;
  while (i !== NIL) {
    if (load<u16>(rec(i), O_PINS) === 0) return <i32>i;
    i = load<u32>(rec(i), O_NEXT);
  }
  return -1;
}

/** Free ranges are below FUSE_DAX_RECLAIM_THRESHOLD percent of the window (at least one must stay free). */
export function daxNeedsReclaim(): bool {
  let threshold = nRanges * FUSE_DAX_RECLAIM_THRESHOLD / 100;
  if (threshold < 1) threshold = 1;
  return freeCount < threshold;
}

/** Marks a busy range writable (its mapping was upgraded). 0 or -EINVAL. */
export function daxSetWritable(i: u32): i32 {
  if (i >= nRanges || (flagsOf(i) & F_BUSY) === 0) return -EINVAL;
  store<u16>(rec(i), flagsOf(i) | F_WRITABLE, O_FLAGS);
  return 0;
}

/** 1 writable, 0 read-only, -EINVAL not busy. */
export function daxIsWritable(i: u32): i32 {
  if (i >= nRanges || (flagsOf(i) & F_BUSY) === 0) return -EINVAL;
  return (flagsOf(i) & F_WRITABLE) !== 0 ? 1 : 0;
}

/** Node id of a busy range (0 when not busy). */
export function daxNode(i: u32): u64 {
  if (i >= nRanges || (flagsOf(i) & F_BUSY) === 0) return 0;
  return load<u64>(rec(i), O_NODE);
}

/** File index of a busy range (-1 when not busy). */
export function daxFileIdx(i: u32): i64 {
  if (i >= nRanges || (flagsOf(i) & F_BUSY) === 0) return -1;
  return <i64>load<u64>(rec(i), O_IDX);
}

/** Pins a busy range against reclaim (nested). The new pin count, or -EINVAL. */
export function daxPin(i: u32): i32 {
  if (i >= nRanges || (flagsOf(i) & F_BUSY) === 0) return -EINVAL;
  const p = load<u16>(rec(i), O_PINS);
  if (p === 0xffff) return -EBUSY;
  store<u16>(rec(i), p + 1, O_PINS);
  return <i32>(p + 1);
}

export function daxUnpin(i: u32): i32 {
  if (i >= nRanges || (flagsOf(i) & F_BUSY) === 0) return -EINVAL;
  const p = load<u16>(rec(i), O_PINS);
  if (p === 0) return -EINVAL;
  store<u16>(rec(i), p - 1, O_PINS);
  return <i32>(p - 1);
}

/**
 * The next busy range of `node` with index > `after` (-1 to start), in window order, or -1: walks every range
 * of a file for truncation and FORGET without a per-node list.
 */
export function daxNextOfNode(node: u64, after: i32): i32 {
  for (let i: u32 = <u32>(after + 1); i < nRanges; i++) {
    if ((flagsOf(i) & F_BUSY) !== 0 && load<u64>(rec(i), O_NODE) === node) return <i32>i;
  }
  return -1;
}

// Guest memory table: guest-physical (gpa) and frontend-virtual (uva) ranges and where the host mapped each of
// them inside this module's linear memory.
//
// The host grows linear memory and mmaps each vhost-user region over the new pages (see DESIGN.md "Guest memory
// inside the core"); it then registers the region here. Every guest address the core dereferences goes through
// `translateGpa`/`translateUva` first, so a hostile address can only ever yield "not mapped", never a trap.
//
// Region record (REGION_STRIDE = 32 bytes, MAX_REGIONS records in REGIONS):
//
//   0        8        16       24       28       32
//   +--------+--------+--------+--------+--------+
//   |  gpa   |  uva   |  size  | linOff | (pad)  |
//   +--------+--------+--------+--------+--------+
//     u64      u64      u64      u32
//
// A buffer that straddles two regions whose guest-physical ranges touch is *split*: `gpaSpan` returns the part
// inside the first region and the chain walker asks again for the rest. Rings and indirect tables must lie
// wholly inside one region (`translateGpa`/`translateUva` with the whole length).

export const MAX_REGIONS: u32 = 64;
const REGION_STRIDE: u32 = 32;
const R_GPA: u32 = 0;
const R_UVA: u32 = 8;
const R_SIZE: u32 = 16;
const R_LIN: u32 = 24;

const REGIONS: usize = memory.data(<i32>(MAX_REGIONS * REGION_STRIDE), 8);
let regionCount: u32 = 0;

/** Bumped on every table change, so queues know to translate their ring addresses again. */
export let memGeneration: u32 = 1;

/** Sentinel for "no linear offset" (translations return i64; a valid offset is 0..2^32-1). */
export const NOT_MAPPED: i64 = -1;

// Result of the last `gpaSpan`: how many bytes of the asked range lie in the region that holds its start.
export let spanLen: u32 = 0;

// The last region hit, tried first (requests cluster in one region).
let lastHit: u32 = 0;

@inline function regionPtr(i: u32): usize {
  return REGIONS + <usize>(i * REGION_STRIDE);
}

export function memReset(): void {
  regionCount = 0;
  lastHit = 0;
  memGeneration++;
}

/** 0, or -EINVAL for an empty, overflowing, overlapping or out-of-linear-memory region, or a full table. */
export function memAddRegion(gpa: u64, uva: u64, size: u64, linearOffset: u32): i32 {
  if (size == 0 || regionCount >= MAX_REGIONS) return -22;
  if (gpa + size < gpa || uva + size < uva) return -22;
  const linEnd = <u64>linearOffset + size;
  if (linEnd > (<u64>memory.size() << 16)) return -22;
  for (let i: u32 = 0; i < regionCount; i++) {
    const r = regionPtr(i);
    const g = load<u64>(r, R_GPA);
    const u = load<u64>(r, R_UVA);
    const s = load<u64>(r, R_SIZE);
    if (gpa < g + s && g < gpa + size) return -22;
    if (uva < u + s && u < uva + size) return -22;
  }
  const r = regionPtr(regionCount);
  store<u64>(r, gpa, R_GPA);
  store<u64>(r, uva, R_UVA);
  store<u64>(r, size, R_SIZE);
  store<u32>(r, linearOffset, R_LIN);
  regionCount++;
  memGeneration++;
  return 0;
}

/** Index of the region containing gpa (field at `base` is gpa or uva), or -1. */
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

function translateWhole(addr: u64, len: u64, field: u32): i64 {
  if (addr + len < addr) return NOT_MAPPED;
  const i = findRegion(addr, field);
  if (i < 0) return NOT_MAPPED;
  const r = regionPtr(<u32>i);
  const rel = addr - load<u64>(r + field);
  if (len > load<u64>(r, R_SIZE) - rel) return NOT_MAPPED;
  return <i64>(<u64>load<u32>(r, R_LIN) + rel);
}

/** Linear offset of [gpa, gpa+len) if it lies wholly inside one region, else NOT_MAPPED. */
export function translateGpa(gpa: u64, len: u64): i64 {
  return translateWhole(gpa, len, R_GPA);
}

/** Linear offset of [uva, uva+len) (frontend virtual address) if wholly inside one region, else NOT_MAPPED. */
export function translateUva(uva: u64, len: u64): i64 {
  return translateWhole(uva, len, R_UVA);
}

/**
 * Linear offset of gpa and, in `spanLen`, how many of the `len` bytes from there are inside its region
 * (min(len, region end - gpa)); NOT_MAPPED if gpa is in no region. The caller loops for the remainder.
 * The caller has already checked gpa + len does not overflow.
 */
export function gpaSpan(gpa: u64, len: u32): i64 {
  const i = findRegion(gpa, R_GPA);
  if (i < 0) return NOT_MAPPED;
  const r = regionPtr(<u32>i);
  const rel = gpa - load<u64>(r, R_GPA);
  const room = load<u64>(r, R_SIZE) - rel;
  spanLen = <u64>len < room ? len : <u32>room;
  return <i64>(<u64>load<u32>(r, R_LIN) + rel);
}

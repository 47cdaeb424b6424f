/**
 * The fuzz targets. Each runs one case from a seed (so a finding replays alone) and throws a `Finding` when an
 * invariant breaks:
 *
 *   ring    random descriptor tables (addresses in/out of regions, straddling regions, overflowing; lengths 0 to
 *           2^32-1; every flag combination; random next pointers; indirect tables with random contents), random
 *           ring placement, avail indices and heads
 *   codec   well-formed rings carrying random and truncated FUSE requests of every opcode (host/fuse/protocol.ts),
 *           lying fuse_in_header.len, random node ids, requests cut at random places, tiny reply buffers
 *   dirent  random getdents64 buffers through direntNext/direntEmit/direntPlusEmit, plus encodeAttrOut/
 *           encodeEntryOut of random statx and timeouts
 *   vhost-user  the vhost-user message handler over a socketpair, with real memfds and eventfds
 *           (vhost-user-target.ts; asynchronous, so it has its own runner)
 */
import { daxRangesCase } from './dax-ranges-target.js';
import { OPCODE_NAMES } from '../../host/fuse/protocol.js';
import {
  FuzzRig, QueueUnderTest, Finding, goodRequest, GPA_A, GPA_B, GPA_C, REGION_SPECS, UVA_DELTA,
} from './harness.js';
import { Space, minArgs, ARGS_MAX, REPLY_MAX, VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE }
  from './model.js';
import { Prng, caseSeed } from './prng.js';
import { CrashMarker, runVhostUser, replayVhostUser } from './vhost-user-target.js';

export type CoreTargetName = 'ring' | 'codec' | 'dirent' | 'dax-ranges';
export type TargetName = CoreTargetName | 'vhost-user';
/** The targets on the Wasm core alone (synchronous, one FuzzRig). */
export const CORE_TARGETS: CoreTargetName[] = ['ring', 'codec', 'dirent', 'dax-ranges'];
export const TARGETS: TargetName[] = [...CORE_TARGETS, 'vhost-user'];

export const OPCODES = Object.keys(OPCODE_NAMES).map(Number);

const SIZE_A = REGION_SPECS[0].size;
const SIZE_B = REGION_SPECS[2].size;
const SIZE_C = REGION_SPECS[1].size;

interface Desc { addr: bigint; len: number; flags: number; next: number }

function writeDesc(sp: Space, lin: number, d: Desc): void {
  sp.view.setBigUint64(lin - sp.base, BigInt.asUintN(64, d.addr), true);
  sp.setU32(lin + 8, d.len);
  sp.setU16(lin + 12, d.flags);
  sp.setU16(lin + 14, d.next);
}

/** A FUSE request: header + args (random bytes), header fields as given. */
function fuseRequest(rng: Prng, opcode: number, argsLen: number, headerLen?: number): Uint8Array {
  const b = new Uint8Array(40 + argsLen);
  const v = new DataView(b.buffer);
  rng.fill(b.subarray(40));
  v.setUint32(0, headerLen ?? b.length, true);
  v.setUint32(4, opcode >>> 0, true);
  v.setBigUint64(8, rng.u64(), true);
  v.setBigUint64(16, rng.chance(0.5) ? BigInt(rng.below(1000)) : rng.u64(), true);
  v.setUint32(24, rng.u32(), true);
  v.setUint32(28, rng.u32(), true);
  v.setUint32(32, rng.u32(), true);
  v.setUint32(36, rng.u32(), true);
  return b;
}

/** A random guest address: inside a region, at a border, outside, or overflowing. */
function randomAddr(rng: Prng, len: number): bigint {
  switch (rng.below(10)) {
    case 0: return GPA_A + BigInt(SIZE_A) - BigInt(rng.range(0, 64)); // straddles A|B (adjacent)
    case 1: return GPA_B + BigInt(SIZE_B) - BigInt(rng.range(0, 64)); // runs off the end of B
    case 2: return GPA_C + BigInt(rng.below(SIZE_C));
    case 3: return rng.u64();
    case 4: return (1n << 64n) - BigInt(rng.range(1, 64)); // overflows
    case 5: return GPA_A - BigInt(rng.range(1, 64));
    case 6: return BigInt(rng.below(0x10000));
    default: {
      const size = SIZE_A + SIZE_B;
      const off = rng.below(Math.max(1, size - Math.min(len, size)));
      return GPA_A + BigInt(off);
    }
  }
}

function randomFlags(rng: Prng): number {
  const choices = [0, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE,
    VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_WRITE, 7];
  return rng.chance(0.9) ? rng.pick(choices) : rng.u32() & 0xffff;
}

function randomDesc(rng: Prng, tableLen: number, i: number): Desc {
  const len = rng.length(256);
  const flags = randomFlags(rng);
  let addr = randomAddr(rng, len);
  let dlen = len;
  if (flags & VIRTQ_DESC_F_INDIRECT && rng.chance(0.5)) dlen = 16 * rng.range(0, 8) + (rng.chance(0.2) ? rng.range(1, 15) : 0);
  const next = rng.chance(0.7) ? (i + 1 + rng.below(3)) % Math.max(1, tableLen) : (rng.chance(0.5) ? rng.below(tableLen + 2) : rng.u32() & 0xffff);
  return { addr, len: dlen, flags, next };
}

/** Bump allocator of buffers in A/B (they may straddle the A|B border). */
class Buffers {
  private at: bigint;
  constructor(start: bigint, private readonly end: bigint) { this.at = start; }
  alloc(rng: Prng, len: number): bigint | undefined {
    const gpa = this.at + BigInt(rng.below(16));
    if (gpa + BigInt(len) > this.end) return undefined;
    this.at = gpa + BigInt(len) + BigInt(rng.below(24));
    return gpa;
  }
}

// ---- ring --------------------------------------------------------------------------------------------------------

export function ringCase(rig: FuzzRig, seed: number): void {
  const rng = new Prng(seed);
  rig.reset();
  const sp = rig.liveSpace();
  const num = rng.chance(0.05) ? 1024 : rng.pick([1, 2, 4, 8, 8, 16, 16, 32, 64, 128, 256]);
  const eventIdx = rng.chance(0.5);
  const indirect = rng.chance(0.6);
  // ring placement: the legacy packing at a random 4 KiB page of A or B, sometimes broken
  const ringSize = 16 * num + 6 + 2 * num + 4096 + 6 + 8 * num;
  const page = BigInt(rng.below(Math.floor((SIZE_A + SIZE_B - ringSize - 4096) / 4096))) * 4096n;
  let descGpa = GPA_A + page;
  let availGpa = descGpa + BigInt(16 * num);
  let usedGpa = (availGpa + BigInt(6 + 2 * num) + 4095n) & ~4095n;
  switch (rng.below(20)) {
    case 0: descGpa += BigInt(rng.range(1, 15)); break;
    case 1: availGpa += 1n; break;
    case 2: usedGpa += BigInt(rng.range(1, 3)); break;
    case 3: usedGpa = GPA_B + BigInt(SIZE_B - 8 * num); break; // runs off the end of B
    case 4: descGpa = rng.u64(); break;
    case 5: availGpa = usedGpa; break; // overlapping rings
    case 6: usedGpa = GPA_A + BigInt(SIZE_A) - 4n * BigInt(rng.range(0, num)); break; // straddles A|B
    default: break;
  }
  const lastAvail = rng.chance(0.5) ? 0 : rng.u32() & 0xffff;
  const lin = (g: bigint, len: number) => sp.translate(g, BigInt(len));
  const usedLin = lin(usedGpa, 6 + 8 * num);
  const availLin = lin(availGpa, 6 + 2 * num);
  const descLin = lin(descGpa, 16 * num);
  if (usedLin >= 0) sp.setU16(usedLin + 2, rng.chance(0.5) ? lastAvail : rng.u32());

  const bufs = new Buffers(usedGpa + BigInt(8 * num + 16), GPA_A + BigInt(SIZE_A + SIZE_B));
  const heads: number[] = [];
  if (descLin >= 0) {
    for (let i = 0; i < num; i++) writeDesc(sp, descLin + 16 * i, randomDesc(rng, num, i));
    // plausible chains over the random table: a FUSE request then reply buffers, possibly indirect
    const chains = rng.below(num + 1);
    const used = new Set<number>();
    for (let k = 0; k < chains; k++) {
      const head = rng.below(num);
      if (used.has(head)) continue;
      const nr = rng.range(rng.chance(0.1) ? 0 : 1, 3);
      const nw = rng.range(0, 3);
      const opcode = rng.pick([1, 2, 3, 15, 16, 26, 28, 42, rng.u32()]);
      const reqLen = rng.chance(0.3) ? rng.range(0, 60) : 40 + minArgs(opcode) + rng.below(64);
      const req = fuseRequest(rng, opcode, Math.max(0, reqLen - 40));
      const pieces: Desc[] = [];
      let at = 0;
      for (let r = 0; r < nr; r++) {
        const n = r === nr - 1 ? req.length - at : rng.below(req.length - at + 1);
        const gpa = bufs.alloc(rng, n);
        if (gpa === undefined) break;
        const l = sp.translate(gpa, BigInt(n));
        if (l >= 0) sp.set(l, req.subarray(at, at + n));
        else {
          const spans = sp.spans(gpa, n);
          let o = at;
          for (const s of spans ?? []) { sp.set(s.lin, req.subarray(o, o + s.len)); o += s.len; }
        }
        pieces.push({ addr: gpa, len: n, flags: 0, next: 0 });
        at += n;
      }
      for (let w = 0; w < nw; w++) {
        const n = rng.pick([0, 8, 16, 17, 64, 200, rng.below(5000)]);
        const gpa = bufs.alloc(rng, n);
        if (gpa === undefined) break;
        pieces.push({ addr: gpa, len: n, flags: VIRTQ_DESC_F_WRITE, next: 0 });
      }
      if (pieces.length === 0) continue;
      if (indirect && rng.chance(0.3)) {
        const tgpa = bufs.alloc(rng, 16 * pieces.length + 16);
        if (tgpa === undefined) continue;
        const t = (tgpa + 15n) & ~15n;
        const tl = sp.translate(t, BigInt(16 * pieces.length));
        if (tl < 0) continue;
        pieces.forEach((p, i) => writeDesc(sp, tl + 16 * i, {
          ...p, flags: p.flags | (i + 1 < pieces.length ? VIRTQ_DESC_F_NEXT : 0), next: i + 1,
        }));
        writeDesc(sp, descLin + 16 * head, { addr: t, len: 16 * pieces.length, flags: VIRTQ_DESC_F_INDIRECT, next: 0 });
        used.add(head);
      } else {
        const ids = [head];
        for (let i = 1; i < pieces.length; i++) {
          const id = rng.below(num);
          if (used.has(id) || ids.includes(id)) break;
          ids.push(id);
        }
        ids.forEach((id, i) => {
          const p = pieces[i];
          writeDesc(sp, descLin + 16 * id, {
            ...p, flags: p.flags | (i + 1 < ids.length ? VIRTQ_DESC_F_NEXT : 0), next: i + 1 < ids.length ? ids[i + 1] : rng.u32() & 0xffff,
          });
          used.add(id);
        });
      }
      heads.push(head);
      // a random corruption on top, sometimes
      if (rng.chance(0.15)) {
        const d = descLin + 16 * rng.below(num);
        sp.bytes[d - sp.base + rng.below(16)] = rng.u32();
      }
    }
  }
  if (descLin >= 0) {
    // indirect tables with random contents, referenced from random main-table slots
    const tables = rng.below(4);
    for (let k = 0; k < tables; k++) {
      const m = rng.chance(0.1) ? rng.range(64, 2048) : rng.range(1, 32);
      const g = bufs.alloc(rng, 16 * m + 16);
      if (g === undefined) break;
      const t = rng.chance(0.9) ? (g + 15n) & ~15n : g + 1n;
      const tl = sp.translate(t, BigInt(16 * m));
      if (tl < 0) continue;
      for (let i = 0; i < m; i++) writeDesc(sp, tl + 16 * i, randomDesc(rng, m, i));
      const refs = rng.range(1, 3);
      for (let r = 0; r < refs; r++) {
        const head = rng.below(num);
        const len = rng.chance(0.8) ? 16 * m : rng.pick([0, 16 * m + 16, 16 * m - 8, rng.u32()]);
        writeDesc(sp, descLin + 16 * head, {
          addr: t, len, flags: VIRTQ_DESC_F_INDIRECT | (rng.chance(0.2) ? VIRTQ_DESC_F_WRITE : 0)
            | (rng.chance(0.05) ? VIRTQ_DESC_F_NEXT : 0), next: rng.below(num),
        });
        heads.push(head);
      }
    }
  }
  if (availLin >= 0) {
    const pending = rng.chance(0.05) ? num + rng.range(1, 100) : rng.range(0, num);
    for (let i = 0; i < Math.min(pending, num); i++) {
      const head = heads.length && rng.chance(0.7) ? rng.pick(heads) : (rng.chance(0.9) ? rng.below(num) : rng.u32() & 0xffff);
      sp.setU16(availLin + 4 + 2 * ((lastAvail + i) & (num - 1)), head);
    }
    sp.setU16(availLin + 2, lastAvail + pending);
    sp.setU16(availLin, rng.below(4));
    sp.setU16(availLin + 4 + 2 * num, rng.u32());
  }
  const qt = new QueueUnderTest(rig, {
    num, eventIdx, indirect, lastAvail,
    descUva: descGpa + UVA_DELTA, availUva: availGpa + UVA_DELTA, usedUva: usedGpa + UVA_DELTA,
  });
  qt.drain(rng);
  if (rng.chance(0.3)) qt.needsNotify();
  // a second batch on the same ring if it still works: more heads made available
  if (!qt.model.broken && qt.model.mapped && availLin >= 0 && rng.chance(0.3)) {
    const more = rng.range(1, num);
    const idx = sp.u16(availLin + 2);
    for (let i = 0; i < more; i++) sp.setU16(availLin + 4 + 2 * ((idx + i) & (num - 1)), rng.below(num));
    sp.setU16(availLin + 2, idx + more);
    qt.resync();
    qt.drain(rng);
  }
  goodRequest(rig, BigInt(seed));
}

// ---- codec -------------------------------------------------------------------------------------------------------

export function codecCase(rig: FuzzRig, seed: number): void {
  const rng = new Prng(seed);
  rig.reset();
  const sp = rig.liveSpace();
  const num = 16;
  const ring = GPA_C; // desc 256, avail +256, used +4096
  const descLin = rig.linOf(ring);
  const availLin = descLin + 256;
  const indirect = rng.chance(0.5);
  const bufs = new Buffers(GPA_A + 0x100n, GPA_A + BigInt(SIZE_A + SIZE_B));
  const count = rng.range(1, num);
  let nextDesc = 0;
  let avail = 0;
  let indirectAt = ring + 0x2000n;
  let hugeTable = false;
  for (let k = 0; k < count; k++) {
    // the request
    const opcode = rng.chance(0.85) ? rng.pick(OPCODES) : rng.pick([0, 7, 19, 52, 4095, rng.u32()]);
    const min = minArgs(opcode);
    let argsLen: number;
    switch (rng.below(8)) {
      case 0: argsLen = Math.max(0, min - rng.range(1, 8)); break; // truncated
      case 1: argsLen = min; break;
      case 2: argsLen = ARGS_MAX + rng.range(-2, 2); break;
      case 3: argsLen = opcode === 16 ? 40 + rng.range(0, 20000) : min + rng.range(0, 300); break;
      default: argsLen = min + rng.below(80);
    }
    argsLen = Math.max(0, argsLen);
    let headerLen: number | undefined;
    switch (rng.below(10)) {
      case 0: headerLen = rng.range(0, 40); break;
      case 1: headerLen = 40 + argsLen + rng.range(1, 64); break;
      case 2: headerLen = rng.u32(); break;
      case 3: headerLen = 40 + Math.floor(argsLen / 2); break; // shorter than the buffer: allowed
      default: headerLen = undefined;
    }
    let req = fuseRequest(rng, opcode, argsLen, headerLen);
    if (rng.chance(0.05)) req = req.subarray(0, rng.below(40)); // not even a header
    // readable pieces
    const pieces: Desc[] = [];
    const nr = rng.chance(0.5) ? 1 : rng.range(1, 6);
    let at = 0;
    for (let r = 0; r < nr; r++) {
      const n = r === nr - 1 ? req.length - at : rng.below(req.length - at + 1);
      const gpa = bufs.alloc(rng, n);
      if (gpa === undefined) break;
      for (const s of sp.spans(gpa, n) ?? []) {
        sp.set(s.lin, req.subarray(at, at + s.len));
        at += s.len;
      }
      pieces.push({ addr: gpa, len: n, flags: 0, next: 0 });
    }
    if (at < req.length) break; // out of buffer space
    const nw = rng.below(4);
    for (let w = 0; w < nw; w++) {
      const n = rng.pick([0, 1, 15, 16, 17, 24, 120, 4096, rng.below(9000)]);
      const gpa = bufs.alloc(rng, n);
      if (gpa === undefined) break;
      pieces.push({ addr: gpa, len: n, flags: VIRTQ_DESC_F_WRITE, next: 0 });
    }
    if (indirect && rng.chance(0.04)) {
      // many tiny segments: past IOV_MAX (1024) iovecs, sometimes past MAX_SEGS (4096) segments
      const many = rng.pick([1000, 1030, 2000, 4090, 4097, 4200]);
      const w = rng.range(0, many);
      pieces.length = Math.min(pieces.length, 2);
      for (let i = pieces.length; i < many; i++) {
        const n = rng.range(1, 3);
        const gpa = bufs.alloc(rng, n);
        if (gpa === undefined) break;
        pieces.push({ addr: gpa, len: n, flags: i >= w ? VIRTQ_DESC_F_WRITE : 0, next: 0 });
      }
      // readable after writable would be a bad chain; keep the order mostly right
      if (rng.chance(0.9)) pieces.sort((a, b) => (a.flags & VIRTQ_DESC_F_WRITE) - (b.flags & VIRTQ_DESC_F_WRITE));
      hugeTable = true;
    }
    if (pieces.length === 0) continue;
    let head: number;
    if (hugeTable || (indirect && rng.chance(0.5))) {
      hugeTable = false;
      indirectAt = (indirectAt + 15n) & ~15n;
      let table = indirectAt;
      if (indirectAt + BigInt(16 * pieces.length) > ring + BigInt(SIZE_C)) {
        const t = bufs.alloc(rng, 16 * pieces.length + 16);
        if (t === undefined) break;
        table = (t + 15n) & ~15n;
      } else {
        indirectAt += BigInt(16 * pieces.length + 16);
      }
      const tl = sp.translate(table, BigInt(16 * pieces.length));
      if (tl < 0 || nextDesc >= num) break; // straddles A|B: not one linear range to write
      pieces.forEach((p, i) => writeDesc(sp, tl + 16 * i, {
        ...p, flags: p.flags | (i + 1 < pieces.length ? VIRTQ_DESC_F_NEXT : 0), next: i + 1,
      }));
      head = nextDesc++;
      writeDesc(sp, descLin + 16 * head, { addr: table, len: 16 * pieces.length, flags: VIRTQ_DESC_F_INDIRECT, next: 0 });
    } else {
      if (nextDesc + pieces.length > num) break;
      head = nextDesc;
      pieces.forEach((p, i) => writeDesc(sp, descLin + 16 * (nextDesc + i), {
        ...p, flags: p.flags | (i + 1 < pieces.length ? VIRTQ_DESC_F_NEXT : 0), next: nextDesc + i + 1,
      }));
      nextDesc += pieces.length;
    }
    sp.setU16(availLin + 4 + 2 * avail, head);
    avail++;
  }
  sp.setU16(availLin + 2, avail);
  const qt = new QueueUnderTest(rig, {
    num, eventIdx: rng.chance(0.5), indirect, lastAvail: 0,
    descUva: ring + UVA_DELTA, availUva: ring + 256n + UVA_DELTA, usedUva: ring + 4096n + UVA_DELTA,
  });
  qt.drain(rng);
  goodRequest(rig, BigInt(seed) ^ 0xfeedn);
}

// ---- dirent ------------------------------------------------------------------------------------------------------

interface DirentRecord { ino: bigint; off: bigint; type: number; name: Uint8Array }

/** A getdents64 buffer: valid linux_dirent64 records, with random corruptions. */
function direntBuffer(rng: Prng): { buf: Uint8Array; len: number } {
  const buf = new Uint8Array(rng.chance(0.05) ? 64 * 1024 + 64 : rng.range(0, 8192));
  const v = new DataView(buf.buffer);
  let at = 0;
  while (at + 24 <= buf.length && rng.chance(0.97)) {
    const nameLen = rng.chance(0.05) ? rng.range(200, 300) : rng.range(1, 40);
    let reclen = (19 + nameLen + 1 + 7) & ~7;
    if (at + reclen > buf.length) break;
    v.setBigUint64(at, rng.u64(), true);
    v.setBigUint64(at + 8, rng.u64(), true);
    buf[at + 18] = rng.u32();
    for (let i = 0; i < nameLen; i++) buf[at + 19 + i] = rng.range(1, 255);
    buf[at + 19 + nameLen] = 0;
    if (rng.chance(0.05)) {
      switch (rng.below(5)) {
        case 0: reclen = 0; break;
        case 1: reclen = rng.range(1, 20); break;
        case 2: reclen = rng.u32() & 0xffff; break;
        case 3: buf[at + 19 + nameLen] = 0x41; break; // unterminated name
        default: reclen = 20;
      }
    }
    v.setUint16(at + 16, reclen, true);
    at += Math.max(reclen, 8);
  }
  let len = at;
  switch (rng.below(8)) {
    case 0: len = rng.below(at + 1); break; // cut mid-record
    case 1: len = rng.u32(); break;
    case 2: len = buf.length; break;
    default: break;
  }
  return { buf, len };
}

/** The model of direntNext over buf[0, min(len, 64 KiB)). */
function direntModel(raw: Uint8Array, len: number): { records: DirentRecord[]; corrupt: boolean } {
  const buf = new Uint8Array(64 * 1024); // the core's DIRENT_BUF: the input, zero after it
  buf.set(raw.subarray(0, buf.length));
  const end = Math.min(len >>> 0, buf.length);
  const v = new DataView(buf.buffer);
  const records: DirentRecord[] = [];
  let pos = 0;
  const byte = (i: number) => (i < buf.length ? buf[i] : 0);
  while (pos < end) {
    const room = end - pos;
    if (room < 20) return { records, corrupt: true };
    const reclen = byte(pos + 16) | (byte(pos + 17) << 8);
    if (reclen < 20 || reclen > room) return { records, corrupt: true };
    let n = 0;
    while (n < reclen - 19 && byte(pos + 19 + n) !== 0) n++;
    if (n === reclen - 19) return { records, corrupt: true };
    records.push({
      ino: v.getBigUint64(pos, true),
      off: v.getBigUint64(pos + 8, true),
      type: byte(pos + 18),
      name: buf.slice(pos + 19, pos + 19 + n),
    });
    pos += reclen;
  }
  return { records, corrupt: false };
}

const align8 = (n: number) => (n + 7) & ~7;

function direntBytes(r: DirentRecord): Uint8Array {
  const size = align8(24 + r.name.length);
  const b = new Uint8Array(size);
  const v = new DataView(b.buffer);
  v.setBigUint64(0, r.ino, true);
  v.setBigUint64(8, r.off, true);
  v.setUint32(16, r.name.length, true);
  v.setUint32(20, r.type, true);
  b.set(r.name, 24);
  return b;
}

/** splitTimeout of fuse-codec, from DESIGN ("timeouts as {u64 sec, u32 nsec}"): <= 0/NaN -> 0, saturating. */
function timeoutModel(t: number): [bigint, number] {
  if (!(t > 0)) return [0n, 0];
  if (t >= 1.8e19) return [(1n << 64n) - 1n, 999999999];
  const s = Math.floor(t);
  let ns = Math.trunc((t - s) * 1e9);
  if (ns > 999999999) ns = 999999999;
  return [BigInt(s), ns];
}

function idModel(v: number): bigint {
  if (!(v >= 0) || v >= 1.8446744073709552e19) return 0n;
  return BigInt(Math.trunc(v));
}

function newEncodeDev(major: number, minor: number): number {
  return ((minor & 0xff) | (major << 8) | ((minor & ~0xff) << 12)) >>> 0;
}

function attrModel(stx: DataView): Uint8Array {
  const b = new Uint8Array(88);
  const v = new DataView(b.buffer);
  v.setBigUint64(0, stx.getBigUint64(32, true), true);
  v.setBigUint64(8, stx.getBigUint64(40, true), true);
  v.setBigUint64(16, stx.getBigUint64(48, true), true);
  v.setBigUint64(24, stx.getBigUint64(64, true), true);
  v.setBigUint64(32, stx.getBigUint64(112, true), true);
  v.setBigUint64(40, stx.getBigUint64(96, true), true);
  v.setUint32(48, stx.getUint32(72, true), true);
  v.setUint32(52, stx.getUint32(120, true), true);
  v.setUint32(56, stx.getUint32(104, true), true);
  v.setUint32(60, stx.getUint16(28, true), true);
  v.setUint32(64, stx.getUint32(16, true), true);
  v.setUint32(68, stx.getUint32(20, true), true);
  v.setUint32(72, stx.getUint32(24, true), true);
  v.setUint32(76, newEncodeDev(stx.getUint32(128, true), stx.getUint32(132, true)), true);
  v.setUint32(80, stx.getUint32(4, true), true);
  return b;
}

function entryModel(nodeid: number, gen: number, et: number, at: number, stx: DataView): Uint8Array {
  const b = new Uint8Array(128);
  const v = new DataView(b.buffer);
  const id = idModel(nodeid);
  v.setBigUint64(0, id, true);
  v.setBigUint64(8, idModel(gen), true);
  const [es, en] = timeoutModel(et);
  const [as, an] = timeoutModel(at);
  v.setBigUint64(16, es, true);
  v.setBigUint64(24, as, true);
  v.setUint32(32, en, true);
  v.setUint32(36, an, true);
  if (id !== 0n) b.set(attrModel(stx), 40);
  return b;
}

function randomTimeout(rng: Prng): number {
  return rng.pick([0, -1, NaN, Infinity, -Infinity, 1, 0.5, 1e-10, 1.8e19, 1.9e19, 2 ** 64, 2 ** 53 + 0.5,
    rng.u32() / 1000, rng.u32() * 1e9]);
}

function randomId(rng: Prng): number {
  return rng.pick([0, 1, -1, NaN, Infinity, 2 ** 53, 2 ** 64, 1.9e19, 0.5, rng.u32(), rng.u32() * 2 ** 21]);
}

export function direntCase(rig: FuzzRig, seed: number): void {
  const rng = new Prng(seed);
  const c = rig.core;
  const bytes = () => c.bytes();
  const { buf, len } = direntBuffer(rng);
  const dbuf = 64 * 1024;
  bytes().fill(0, c.direntBufPtr, c.direntBufPtr + dbuf);
  bytes().set(buf.subarray(0, dbuf), c.direntBufPtr);
  const model = direntModel(buf.subarray(0, dbuf), len);
  // statx: random
  const stx = rng.bytes(256);
  bytes().set(stx, c.statxPtr);
  const stxView = new DataView(stx.buffer);
  // canary over the reply area we look at
  const CANARY = 0xa5;
  const windowEnd = 128 * 1024;
  bytes().fill(CANARY, c.replyPtr, c.replyPtr + windowEnd);
  const nearEnd = REPLY_MAX - 2048;
  bytes().fill(CANARY, c.replyPtr + nearEnd, c.replyPtr + REPLY_MAX);
  const written: [number, number][] = [];

  rig.call('direntsBegin', () => c.direntsBegin(len));
  if (rng.chance(0.1) && c.direntEmit(0, 4096) !== 0) throw new Finding('dirent', 'direntEmit without a current record');
  let dst = rng.chance(0.2) ? nearEnd + rng.below(1024) : rng.below(64);
  for (let i = 0; ; i++) {
    const r = rig.call('direntNext', () => c.direntNext());
    if (![1, 0, -1].includes(r)) throw new Finding('result-code', `direntNext returned ${r}`);
    const want = i < model.records.length ? 1 : (model.corrupt && i === model.records.length ? -1 : 0);
    if (r !== want) throw new Finding('dirent', `record ${i}: direntNext = ${r}, model ${want} (len ${len})`);
    if (r !== 1) {
      if (c.direntNext() !== 0) throw new Finding('dirent', 'direntNext after the end is not 0');
      if (c.direntEmit(0, 4096) !== 0) throw new Finding('dirent', 'direntEmit after the end wrote');
      break;
    }
    const rec = model.records[i];
    if (c.direntNameLen() !== rec.name.length || !Buffer.from(c.direntName()).equals(Buffer.from(rec.name))
      || c.direntType() !== rec.type || c.direntIno() !== Number(rec.ino)) {
      throw new Finding('dirent', `record ${i}: fields differ from the model`);
    }
    const plus = rng.chance(0.4);
    const size = plus ? align8(152 + rec.name.length) : align8(24 + rec.name.length);
    const gotSize = plus ? c.direntPlusSize() : c.direntSize();
    if (gotSize !== size) throw new Finding('dirent', `record ${i}: size ${gotSize}, model ${size}`);
    let cap: number;
    switch (rng.below(6)) {
      case 0: cap = dst + size; break;
      case 1: cap = dst + size - 1; break;
      case 2: cap = 0xffffffff; break;
      case 3: cap = REPLY_MAX + rng.range(-8, 8); break;
      default: cap = dst + rng.below(2 * size + 1);
    }
    if (rng.chance(0.05)) dst = 0xffffffff - rng.below(300); // overflowing dstOffset + size
    const fits = dst + size <= Math.min(cap, REPLY_MAX);
    const nodeid = randomId(rng);
    const gen = randomId(rng);
    const et = randomTimeout(rng);
    const at = randomTimeout(rng);
    const n = plus
      ? rig.call('direntPlusEmit', () => c.direntPlusEmit(dst >>> 0, cap >>> 0, nodeid, gen, et, at, c.statxPtr))
      : rig.call('direntEmit', () => c.direntEmit(dst >>> 0, cap >>> 0));
    if (n !== (fits ? size : 0)) {
      throw new Finding('dirent', `record ${i}: emit(${dst}, ${cap}) = ${n}, model ${fits ? size : 0}`);
    }
    if (fits) {
      const wantBytes = new Uint8Array(size);
      if (plus) {
        if (idModel(nodeid) !== 0n) wantBytes.set(entryModel(nodeid, gen, et, at, stxView));
        wantBytes.set(direntBytes(rec), 128);
      } else {
        wantBytes.set(direntBytes(rec));
      }
      const got = bytes().subarray(c.replyPtr + dst, c.replyPtr + dst + size);
      if (!Buffer.from(got).equals(Buffer.from(wantBytes))) {
        const k = got.findIndex((b, j) => b !== wantBytes[j]);
        throw new Finding('dirent', `record ${i}: ${plus ? 'fuse_direntplus' : 'fuse_dirent'} differs from the ` +
          `model at byte ${k} (nodeid ${nodeid}, gen ${gen}, timeouts ${et}/${at})`);
      }
      written.push([dst, dst + size]);
      dst += size;
    }
    if (dst > REPLY_MAX) dst = rng.below(64);
  }
  // nothing written outside the emitted records (inside the canary windows)
  for (const [a, b] of [[0, windowEnd], [nearEnd, REPLY_MAX]]) {
    const area = bytes().subarray(c.replyPtr + a, c.replyPtr + b);
    const want = new Uint8Array(b - a).fill(CANARY);
    for (const [x, y] of written) {
      const lo = Math.max(x, a);
      const hi = Math.min(y, b);
      if (lo < hi) want.set(area.subarray(lo - a, hi - a), lo - a);
    }
    if (!Buffer.from(area).equals(Buffer.from(want))) {
      const o = area.findIndex((v, j) => v !== want[j]);
      throw new Finding('memory', `dirent emit wrote REPLY+${a + o} outside every emitted record`);
    }
  }
  // encodeAttrOut / encodeEntryOut of the random statx
  const dstA = c.replyPtr + rng.below(1024);
  const t = randomTimeout(rng);
  if (rig.call('encodeAttrOut', () => c.encodeAttrOut(dstA, t, c.statxPtr)) !== 104) {
    throw new Finding('result', 'encodeAttrOut did not return 104');
  }
  const wantA = new Uint8Array(104);
  const [ts, tn] = timeoutModel(t);
  new DataView(wantA.buffer).setBigUint64(0, ts, true);
  new DataView(wantA.buffer).setUint32(8, tn, true);
  wantA.set(attrModel(stxView), 16);
  if (!Buffer.from(bytes().subarray(dstA, dstA + 104)).equals(Buffer.from(wantA))) {
    throw new Finding('codec', `encodeAttrOut differs from the model (timeout ${t})`);
  }
  const nodeid = randomId(rng);
  const gen = randomId(rng);
  const et = randomTimeout(rng);
  if (rig.call('encodeEntryOut', () => c.encodeEntryOut(dstA, nodeid, gen, et, t, c.statxPtr)) !== 128) {
    throw new Finding('result', 'encodeEntryOut did not return 128');
  }
  if (!Buffer.from(bytes().subarray(dstA, dstA + 128)).equals(Buffer.from(entryModel(nodeid, gen, et, t, stxView)))) {
    throw new Finding('codec', `encodeEntryOut differs from the model (nodeid ${nodeid}, gen ${gen}, ${et}/${t})`);
  }
}

export const RUN: Record<CoreTargetName, (rig: FuzzRig, seed: number) => void> = {
  ring: ringCase,
  codec: codecCase,
  dirent: direntCase,
  'dax-ranges': (rig, seed) => daxRangesCase(rig.core, seed),
};

// ---- running a target ---------------------------------------------------------------------------------------------

export interface FindingRecord {
  target: TargetName;
  /** the case's own seed: `--target T --case-seed S` replays it alone */
  caseSeed: number;
  runSeed: number;
  index: number;
  invariant: string;
  message: string;
  detail?: unknown;
}

export interface TargetStats { target: TargetName; executions: number; ms: number; findings: FindingRecord[] }

/**
 * Runs cases of `target` with seeds caseSeed(runSeed, i) until `budgetMs` passed or `maxCases` ran. A finding
 * is recorded and the rig rebuilt (its state may be anything after a trap); the run goes on.
 */
export async function runTarget(target: TargetName, runSeed: number, budgetMs: number, maxCases = Infinity,
  wasmPath?: string, maxFindings = 10, marker?: CrashMarker): Promise<TargetStats> {
  if (target === 'vhost-user') {
    const r = await runVhostUser(runSeed, budgetMs, maxCases, maxFindings, marker);
    return { target, executions: r.executions, ms: r.ms,
      findings: r.findings.map((f) => ({ target, runSeed, ...f })) };
  }
  let rig = await FuzzRig.create(wasmPath);
  const findings: FindingRecord[] = [];
  const started = Date.now();
  let i = 0;
  for (; i < maxCases && Date.now() - started < budgetMs && findings.length < maxFindings; i++) {
    const seed = caseSeed(runSeed, i);
    try {
      RUN[target](rig, seed);
    } catch (err) {
      const f = err instanceof Finding ? err : new Finding('harness', (err as Error).stack ?? String(err));
      findings.push({ target, caseSeed: seed, runSeed, index: i, invariant: f.invariant, message: f.message,
        detail: f.detail });
      FuzzRig.dropAll();
      rig = await FuzzRig.create(wasmPath);
    }
  }
  FuzzRig.dropAll();
  return { target, executions: i, ms: Date.now() - started, findings };
}

/** Replays one case; throws its Finding if it still breaks. */
export async function replayCase(target: TargetName, seed: number, wasmPath?: string): Promise<void> {
  if (target === 'vhost-user') return replayVhostUser(seed);
  const rig = await FuzzRig.create(wasmPath);
  try {
    RUN[target](rig, seed);
  } finally {
    FuzzRig.dropAll();
  }
}

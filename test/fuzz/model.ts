/**
 * A reference model of what the core must do to guest memory, written from DESIGN.md ("Core ABI", "Core ABI
 * details") and the virtio 1.2 / fuse.h rules, independently of assembly/: the descriptor-chain walk, the
 * fuse_in_header checks, the reply scatter and the used ring. The fuzz harness runs the model on a copy of guest
 * memory next to the core and compares results and every byte of guest memory afterwards.
 *
 * The model works on a `Space`: a byte array standing for a contiguous stretch of the core's linear memory that
 * holds every guest region (so model offsets are linear offsets minus `base`).
 */

export const FUSE_IN_HEADER_SIZE = 40;
export const FUSE_OUT_HEADER_SIZE = 16;
export const ARGS_MAX = 72 * 1024;
export const REPLY_MAX = 1024 * 1024 + 4096;
export const IOV_MAX = 1024;
export const MAX_SEGS = 4096;
export const FUSE_WRITE = 16;
export const VIRTQ_DESC_F_NEXT = 1;
export const VIRTQ_DESC_F_WRITE = 2;
export const VIRTQ_DESC_F_INDIRECT = 4;
const EINVAL = 22;
const EIO = 5;
const ERANGE = 34;

/**
 * Minimum argument bytes per opcode: the size of the fixed `fuse_*_in` struct of include/uapi/linux/fuse.h
 * (compat sizes for INIT and SETXATTR), 0 for name-only/no-arg and unknown opcodes.
 */
export const MIN_ARGS: Readonly<Record<number, number>> = {
  1: 0, 2: 8, 3: 16, 4: 88, 5: 0, 6: 0, 8: 16, 9: 8, 10: 0, 11: 0, 12: 8, 13: 8, 14: 8, 15: 40, 16: 40, 17: 0,
  18: 24, 20: 16, 21: 8, 22: 8, 23: 8, 24: 0, 25: 24, 26: 16, 27: 8, 28: 40, 29: 24, 30: 16, 31: 48, 32: 48,
  33: 48, 34: 8, 35: 16, 36: 8, 37: 16, 38: 0, 39: 32, 40: 24, 41: 0, 42: 8, 43: 32, 44: 40, 45: 16, 46: 24,
  47: 56, 48: 40, 49: 4, 50: 8, 51: 16,
};
export const minArgs = (opcode: number) => MIN_ARGS[opcode] ?? 0;

export interface RegionModel {
  gpa: bigint;
  uva: bigint;
  size: number;
  /** linear offset */
  lin: number;
}

export interface Seg {
  lin: number;
  len: number;
}

export const U64 = (1n << 64n) - 1n;

/** Guest memory as the model sees it. */
export class Space {
  readonly view: DataView;
  constructor(readonly bytes: Uint8Array, readonly base: number, readonly regions: RegionModel[]) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  u8(lin: number): number { return this.bytes[lin - this.base]; }
  u16(lin: number): number { return this.view.getUint16(lin - this.base, true); }
  u32(lin: number): number { return this.view.getUint32(lin - this.base, true); }
  u64(lin: number): bigint { return this.view.getBigUint64(lin - this.base, true); }
  setU16(lin: number, v: number): void { this.view.setUint16(lin - this.base, v & 0xffff, true); }
  setU32(lin: number, v: number): void { this.view.setUint32(lin - this.base, v >>> 0, true); }
  set(lin: number, data: Uint8Array): void { this.bytes.set(data, lin - this.base); }
  slice(lin: number, len: number): Uint8Array { return this.bytes.slice(lin - this.base, lin - this.base + len); }

  private find(addr: bigint, field: 'gpa' | 'uva'): RegionModel | undefined {
    for (const r of this.regions) if (addr >= r[field] && addr - r[field] < BigInt(r.size)) return r;
    return undefined;
  }

  /** Linear offset of [addr, addr+len) wholly inside one region, or -1. */
  translate(addr: bigint, len: bigint, field: 'gpa' | 'uva' = 'gpa'): number {
    if (addr + len > U64) return -1;
    const r = this.find(addr, field);
    if (r === undefined) return -1;
    const rel = addr - r[field];
    if (len > BigInt(r.size) - rel) return -1;
    return r.lin + Number(rel);
  }

  /** [gpa, gpa+len) split at region borders, or undefined if a byte is in no region. */
  spans(gpa: bigint, len: number): Seg[] | undefined {
    const out: Seg[] = [];
    let addr = gpa;
    let left = len;
    while (left > 0) {
      const r = this.find(addr, 'gpa');
      if (r === undefined) return undefined;
      const rel = addr - r.gpa;
      const room = r.size - Number(rel);
      const n = Math.min(left, room);
      out.push({ lin: r.lin + Number(rel), len: n });
      addr += BigInt(n);
      left -= n;
    }
    return out;
  }
}

export interface Chain {
  readable: Seg[];
  writable: Seg[];
  bytesR: number;
  bytesW: number;
}

/** The descriptor-chain walk (split ring, §2.7.5) with the rules of DESIGN.md; undefined = a bad chain. */
export function walkChain(sp: Space, descLin: number, num: number, head: number, indirectOk: boolean):
  Chain | undefined {
  let table = descLin;
  let tableLen = num;
  let idx = head;
  let hops = 0;
  let inIndirect = false;
  let sawW = false;
  let totalR = 0;
  let totalW = 0;
  const readable: Seg[] = [];
  const writable: Seg[] = [];
  for (;;) {
    if (idx >= tableLen) return undefined;
    if (++hops > tableLen) return undefined;
    const d = table + idx * 16;
    const addr = sp.u64(d);
    const len = sp.u32(d + 8);
    const flags = sp.u16(d + 12);
    const next = sp.u16(d + 14);
    if (flags & VIRTQ_DESC_F_INDIRECT) {
      if (!indirectOk || inIndirect || (flags & VIRTQ_DESC_F_NEXT)) return undefined;
      if (len === 0 || len % 16 !== 0 || len > 65536 * 16) return undefined;
      const t = sp.translate(addr, BigInt(len));
      if (t < 0) return undefined;
      table = t;
      tableLen = len / 16;
      idx = 0;
      hops = 0;
      inIndirect = true;
      continue;
    }
    const w = (flags & VIRTQ_DESC_F_WRITE) !== 0;
    if (w) {
      sawW = true;
      totalW += len;
      if (totalW > 0xffffffff) return undefined;
    } else {
      if (sawW) return undefined;
      totalR += len;
      if (totalR > 0xffffffff) return undefined;
    }
    if (addr + BigInt(len) > U64) return undefined;
    const s = sp.spans(addr, len);
    if (s === undefined) return undefined;
    if (readable.length + writable.length + s.length > MAX_SEGS) return undefined;
    (w ? writable : readable).push(...s);
    if (!(flags & VIRTQ_DESC_F_NEXT)) break;
    idx = next;
  }
  return { readable, writable, bytesR: totalR, bytesW: totalW };
}

/** Bytes [off, off+len) of a segment list. */
export function gatherSegs(sp: Space, segs: Seg[], off: number, len: number): Uint8Array {
  const out = new Uint8Array(len);
  let skip = off;
  let at = 0;
  for (const s of segs) {
    if (at >= len) break;
    if (skip >= s.len) {
      skip -= s.len;
      continue;
    }
    const n = Math.min(s.len - skip, len - at);
    out.set(sp.slice(s.lin + skip, n), at);
    at += n;
    skip = 0;
  }
  return out;
}

export function scatterSegs(sp: Space, segs: Seg[], data: Uint8Array): void {
  let at = 0;
  for (const s of segs) {
    if (at >= data.length) break;
    const n = Math.min(s.len, data.length - at);
    sp.set(s.lin, data.subarray(at, at + n));
    at += n;
  }
}

/** iovecs over segs after `skip` bytes, at most maxBytes, at most IOV_MAX entries (payload*Iov). */
export function iovModel(segs: Seg[], skip: number, maxBytes: number): Seg[] {
  const out: Seg[] = [];
  let left = maxBytes;
  for (const s of segs) {
    if (left === 0 || out.length >= IOV_MAX) break;
    if (skip >= s.len) {
      skip -= s.len;
      continue;
    }
    const len = Math.min(s.len - skip, left);
    out.push({ lin: s.lin + skip, len });
    left -= len;
    skip = 0;
  }
  return out;
}

export interface QueueModelConfig {
  num: number;
  eventIdx: boolean;
  indirect: boolean;
  descUva: bigint;
  availUva: bigint;
  usedUva: bigint;
  lastAvail: number;
}

export interface PopExpect {
  rc: number;
  /** used element pushed by the pop itself (bad chain / bad message) */
  used?: { id: number; len: number };
  /** the head of a request still current when pop was called: returned with used len 0 first */
  returned?: number;
  head?: number;
  chain?: Chain;
  opcode?: number;
  unique?: bigint;
  nodeid?: bigint;
  uid?: number;
  gid?: number;
  pid?: number;
  len?: number;
  argsLen?: number;
  args?: Uint8Array;
}

/** The queue and the current request, as the model tracks them. */
export class QueueModel {
  mapped: boolean;
  desc = -1;
  avail = -1;
  used = -1;
  broken = false;
  synced = false;
  nextUsed = 0;
  lastAvail: number;
  current: PopExpect | undefined;
  /** heads that were made available (avail ring slots consumed by pops) and not yet returned */
  outstanding = new Map<number, number>();

  constructor(readonly cfg: QueueModelConfig, sp: Space) {
    this.lastAvail = cfg.lastAvail & 0xffff;
    const n = cfg.num;
    const desc = sp.translate(cfg.descUva, BigInt(16 * n), 'uva');
    const avail = sp.translate(cfg.availUva, BigInt(6 + 2 * n), 'uva');
    const used = sp.translate(cfg.usedUva, BigInt(6 + 8 * n), 'uva');
    this.mapped = desc >= 0 && avail >= 0 && used >= 0 && desc % 16 === 0 && avail % 2 === 0 && used % 4 === 0;
    if (this.mapped) {
      this.desc = desc;
      this.avail = avail;
      this.used = used;
    }
  }

  private pushUsed(sp: Space, id: number, len: number): void {
    const e = this.used + 4 + (this.nextUsed & (this.cfg.num - 1)) * 8;
    sp.setU32(e, id);
    sp.setU32(e + 4, len);
    this.nextUsed = (this.nextUsed + 1) & 0xffff;
    sp.setU16(this.used + 2, this.nextUsed);
  }

  /** queuePop on the model memory `sp` (mutated as the core must mutate guest memory). */
  pop(sp: Space): PopExpect {
    let returned: number | undefined;
    if (this.current !== undefined) {
      returned = this.current.head!;
      this.current = undefined;
      this.pushUsed(sp, returned, 0);
    }
    const r = this.popChain(sp);
    if (returned !== undefined) r.returned = returned;
    return r;
  }

  private popChain(sp: Space): PopExpect {
    if (this.broken) return { rc: -3 };
    if (!this.mapped) return { rc: 0 };
    const num = this.cfg.num;
    if (!this.synced) {
      this.nextUsed = sp.u16(this.used + 2);
      this.synced = true;
    }
    let availIdx = sp.u16(this.avail + 2);
    let pending = (availIdx - this.lastAvail) & 0xffff;
    if (pending > num) {
      this.broken = true;
      return { rc: -3 };
    }
    if (pending === 0) {
      if (!this.cfg.eventIdx) return { rc: 0 };
      sp.setU16(this.used + 4 + 8 * num, this.lastAvail);
      availIdx = sp.u16(this.avail + 2);
      pending = (availIdx - this.lastAvail) & 0xffff;
      if (pending === 0) return { rc: 0 };
      if (pending > num) {
        this.broken = true;
        return { rc: -3 };
      }
    }
    const head = sp.u16(this.avail + 4 + 2 * (this.lastAvail & (num - 1)));
    this.lastAvail = (this.lastAvail + 1) & 0xffff;
    if (head >= num) return { rc: -1, head };
    this.outstanding.set(head, (this.outstanding.get(head) ?? 0) + 1);
    const chain = walkChain(sp, this.desc, num, head, this.cfg.indirect);
    if (chain === undefined) {
      this.pushUsed(sp, head, 0);
      return { rc: -1, head, used: { id: head, len: 0 } };
    }
    if (chain.bytesR < FUSE_IN_HEADER_SIZE) {
      this.pushUsed(sp, head, 0);
      return { rc: -2, head, chain, used: { id: head, len: 0 } };
    }
    const hdr = gatherSegs(sp, chain.readable, 0, FUSE_IN_HEADER_SIZE);
    const hv = new DataView(hdr.buffer);
    const len = hv.getUint32(0, true);
    const opcode = hv.getUint32(4, true);
    const unique = hv.getBigUint64(8, true);
    const reject = (): PopExpect => {
      if (chain.bytesW >= FUSE_OUT_HEADER_SIZE) {
        const out = outHeader(FUSE_OUT_HEADER_SIZE, -EINVAL, unique);
        scatterSegs(sp, chain.writable, out);
        this.pushUsed(sp, head, FUSE_OUT_HEADER_SIZE);
        return { rc: -2, head, chain, used: { id: head, len: FUSE_OUT_HEADER_SIZE }, unique };
      }
      this.pushUsed(sp, head, 0);
      return { rc: -2, head, chain, used: { id: head, len: 0 }, unique };
    };
    if (len < FUSE_IN_HEADER_SIZE || len > chain.bytesR) return reject();
    const argsLen = len - FUSE_IN_HEADER_SIZE;
    if (argsLen < minArgs(opcode)) return reject();
    let copy = argsLen;
    if (opcode === FUSE_WRITE) copy = 40;
    else if (argsLen > ARGS_MAX) return reject();
    const r: PopExpect = {
      rc: 1, head, chain, opcode, unique, len, argsLen,
      nodeid: hv.getBigUint64(16, true), uid: hv.getUint32(24, true), gid: hv.getUint32(28, true),
      pid: hv.getUint32(32, true), args: gatherSegs(sp, chain.readable, FUSE_IN_HEADER_SIZE, copy),
    };
    this.current = r;
    return r;
  }

  /** replySend: returns the expected rc and mutates sp. `body` is REPLY[0, bodyLen) (or less if bodyLen lies). */
  replySend(sp: Space, error: number, bodyLen: number, payloadLen: number, body: () => Uint8Array): number {
    const cur = this.current;
    if (cur === undefined) return -EINVAL;
    this.current = undefined;
    const chain = cur.chain!;
    const total = FUSE_OUT_HEADER_SIZE + bodyLen + payloadLen;
    if (bodyLen > REPLY_MAX || total > chain.bytesW) {
      if (chain.bytesW >= FUSE_OUT_HEADER_SIZE) {
        scatterSegs(sp, chain.writable, outHeader(FUSE_OUT_HEADER_SIZE, -EIO, cur.unique!));
        this.pushUsed(sp, cur.head!, FUSE_OUT_HEADER_SIZE);
      } else {
        this.pushUsed(sp, cur.head!, 0);
      }
      return -ERANGE;
    }
    const data = new Uint8Array(FUSE_OUT_HEADER_SIZE + bodyLen);
    data.set(outHeader(total, error, cur.unique!));
    data.set(body(), FUSE_OUT_HEADER_SIZE);
    scatterSegs(sp, chain.writable, data);
    this.pushUsed(sp, cur.head!, total);
    return 0;
  }

  replyNone(sp: Space): void {
    const cur = this.current;
    if (cur === undefined) return;
    this.current = undefined;
    this.pushUsed(sp, cur.head!, 0);
  }
}

export function outHeader(len: number, error: number, unique: bigint): Uint8Array {
  const b = new Uint8Array(16);
  const v = new DataView(b.buffer);
  v.setUint32(0, len >>> 0, true);
  v.setInt32(4, error | 0, true);
  v.setBigUint64(8, unique, true);
  return b;
}

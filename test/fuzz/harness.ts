/**
 * The fuzz harness: a Core over synthetic guest memory (three test regions, two of them adjacent in guest-physical
 * space but not in linear memory, so buffers straddling them are split), the reference model (model.ts) run next
 * to it, and the invariants checked on every core call:
 *
 *   - no Wasm trap (the core must never trap on guest input)
 *   - the result is one of the documented codes, and the one the model expects
 *   - every iovec the core emits lies inside a registered region's linear range (and inside the chain's
 *     writable/readable segments, as the model computes them)
 *   - the used ring only gets heads that were made available (and each at most once per availability)
 *   - guest memory after the call equals the model's: the core writes nothing outside the writable descriptors
 *     of the current chain, the used ring and avail_event (every byte of every region is compared)
 *   - after each case a well-formed request is still served correctly (the `goodRequest` check)
 */
import { Core } from '../../host/core.js';
import {
  Space, QueueModel, QueueModelConfig, RegionModel, Seg, PopExpect, iovModel, gatherSegs, outHeader, IOV_MAX,
  REPLY_MAX, FUSE_OUT_HEADER_SIZE,
} from './model.js';
import type { Prng } from './prng.js';

/** An invariant broke. `invariant` is a stable name; `detail` is JSON-able. */
export class Finding extends Error {
  constructor(readonly invariant: string, message: string, readonly detail?: unknown) {
    super(`${invariant}: ${message}`);
  }
}

export const UVA_DELTA = 0x7f00_0000_0000n;
/** Region A and B touch in guest-physical space; C sits between them in linear memory. */
export const REGION_SPECS = [
  { name: 'A', gpa: 0x4000_0000n, size: 256 * 1024 },
  { name: 'C', gpa: 0x9000_0000n, size: 64 * 1024 },
  { name: 'B', gpa: 0x4004_0000n, size: 256 * 1024 },
] as const;
export const GPA_A = REGION_SPECS[0].gpa;
export const GPA_C = REGION_SPECS[1].gpa;
export const GPA_B = REGION_SPECS[2].gpa;

const POP_CODES = new Set([1, 0, -1, -2, -3]);

/** What the cases reached (printed by `npm run fuzz -- --stats`): a fuzzer that never reaches a path tests nothing. */
export const coverage: Record<string, number> = {};
export function hit(key: string): void {
  coverage[key] = (coverage[key] ?? 0) + 1;
}

/** Rigs not yet dropped (FuzzRig.dropAll). */
const liveRigs: FuzzRig[] = [];

export class FuzzRig {
  readonly regions: RegionModel[];
  readonly base: number;
  readonly span: number;
  /** Queue used for fuzzed rings; the good-request check uses the same queue after a reset. */
  readonly q = 0;

  private constructor(readonly core: Core, regions: RegionModel[]) {
    this.regions = regions;
    this.base = Math.min(...regions.map((r) => r.lin));
    this.span = Math.max(...regions.map((r) => r.lin + r.size)) - this.base;
  }

  /** CORE_WINDOW_SLOTS=N: guest RAM through a window of N slots (test/fuzz-windowed.test.ts). */
  static async create(wasmPath?: string): Promise<FuzzRig> {
    const slots = process.env.CORE_WINDOW_SLOTS;
    const core = await Core.create({ wasmPath, windowSlots: slots ? Number(slots) : undefined });
    const regions = REGION_SPECS.map((s) => ({
      gpa: s.gpa, uva: s.gpa + UVA_DELTA, size: s.size, lin: core.addTestRegion(s.gpa, s.gpa + UVA_DELTA, s.size),
    }));
    const rig = new FuzzRig(core, regions);
    liveRigs.push(rig);
    return rig;
  }

  /**
   * Unmaps what every rig made so far mapped into its core's memory (windowed: memfds), before the rigs are
   * dropped: see Core.dropTestRegions. Tests call it after each test, runs after each case that replaced a rig.
   */
  static dropAll(): void {
    for (const rig of liveRigs.splice(0)) rig.core.dropTestRegions();
  }

  /** The guest regions' linear span as a live view. */
  live(): Uint8Array {
    return this.core.bytes().subarray(this.base, this.base + this.span);
  }

  /** A model Space over a copy of guest memory now. */
  snapshot(): Space {
    return new Space(this.live().slice(), this.base, this.regions);
  }

  /** A model Space over live guest memory (for writing test input). */
  liveSpace(): Space {
    return new Space(this.live(), this.base, this.regions);
  }

  linOf(gpa: bigint): number {
    for (const r of this.regions) if (gpa >= r.gpa && gpa < r.gpa + BigInt(r.size)) return r.lin + Number(gpa - r.gpa);
    throw new RangeError(`gpa 0x${gpa.toString(16)} not in a test region`);
  }

  /** A clean slate: guest memory zeroed, the memory table re-registered, the queue reset. */
  reset(): void {
    this.live().fill(0);
    this.core.reAddTestRegions();
    for (let q = 0; q < 2; q++) this.core.queueReset(q);
  }

  /** Calls the core, turning a trap into a finding. */
  call<T>(what: string, fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      throw new Finding('no-trap', `${what} threw: ${(err as Error).message}`);
    }
  }

  /** Compares live guest memory with the model's, byte for byte. */
  compareMemory(expected: Space, what: string): void {
    const live = Buffer.from(this.live().buffer, this.live().byteOffset, this.span);
    const exp = Buffer.from(expected.bytes.buffer, expected.bytes.byteOffset, this.span);
    if (live.equals(exp)) return;
    let first = -1;
    let last = -1;
    let count = 0;
    for (let i = 0; i < this.span; i++) {
      if (live[i] !== exp[i]) {
        if (first < 0) first = i;
        last = i;
        count++;
      }
    }
    const at = this.base + first;
    throw new Finding('memory', `${what}: guest memory differs from the model at ${count} bytes, linear ` +
      `${at}..${this.base + last} (${this.describe(at)}); core wrote ${[...live.subarray(first, first + 8)]} ` +
      `model ${[...exp.subarray(first, first + 8)]}`);
  }

  describe(lin: number): string {
    for (let i = 0; i < this.regions.length; i++) {
      const r = this.regions[i];
      if (lin >= r.lin && lin < r.lin + r.size) {
        return `region ${REGION_SPECS[i].name} gpa 0x${(r.gpa + BigInt(lin - r.lin)).toString(16)}`;
      }
    }
    return 'outside the regions';
  }

  /** Every iovec at iovPtr (struct iovec, process addresses) inside one region's linear range. */
  checkIovInRegions(n: number, what: string): Seg[] {
    const v = this.core.view();
    const out: Seg[] = [];
    for (let i = 0; i < n; i++) {
      const host = v.getBigUint64(this.core.iovPtr + 16 * i, true);
      const len = Number(v.getBigUint64(this.core.iovPtr + 16 * i + 8, true));
      const lin = Number(host - this.core.linearBase);
      if (!this.regions.some((r) => lin >= r.lin && lin + len <= r.lin + r.size)) {
        throw new Finding('iov-in-region', `${what}: iovec ${i} {0x${host.toString(16)}, ${len}} is not inside a guest region`);
      }
      out.push({ lin, len });
    }
    return out;
  }
}

// ---- one queue under fuzz ---------------------------------------------------------------------------------------

/** Drives queue rig.q of the core and the model side by side. */
export class QueueUnderTest {
  readonly model: QueueModel;
  usedSeen = 0;
  /** The model's guest memory; equal to live guest memory after every checked call. */
  private shadow: Space;

  constructor(readonly rig: FuzzRig, readonly cfg: QueueModelConfig) {
    const c = rig.core;
    const q = rig.q;
    c.queueReset(q);
    const rcNum = rig.call('queueSetNum', () => c.queueSetNum(q, cfg.num));
    if (rcNum !== 0) throw new Error(`bad num ${cfg.num} in a generated config`);
    rig.call('queueSetFeatures', () => c.queueSetFeatures(q, cfg.eventIdx, cfg.indirect));
    this.shadow = rig.snapshot();
    this.model = new QueueModel(cfg, this.shadow);
    const rc = rig.call('queueSetAddr', () => c.queueSetAddr(q, cfg.descUva, cfg.usedUva, cfg.availUva));
    const want = this.model.mapped ? 0 : -14;
    if (rc !== want) throw new Finding('result', `queueSetAddr = ${rc}, model ${want}`, cfg);
    rig.call('queueSetBase', () => c.queueSetBase(q, cfg.lastAvail));
  }

  /** Takes live guest memory as the model's again (after the test itself wrote guest memory). */
  resync(): void {
    this.shadow = this.rig.snapshot();
  }

  /** queuePop checked against the model. Returns the model's expectation. */
  pop(): PopExpect {
    const { rig, model } = this;
    const c = rig.core;
    const sp = this.shadow;
    const exp = model.pop(sp);
    const rc = rig.call('queuePop', () => c.queuePop(rig.q));
    if (!POP_CODES.has(rc)) throw new Finding('result-code', `queuePop returned ${rc}`);
    if (rc !== exp.rc) {
      throw new Finding('result', `queuePop = ${rc}, model ${exp.rc} (head ${exp.head})`);
    }
    rig.compareMemory(sp, `queuePop (rc ${rc})`);
    hit(`pop ${rc}${exp.used ? ` used.len ${exp.used.len}` : ''}`);
    if (exp.returned !== undefined) hit('pop returned the current request');
    if (rc === 1) hit(`opcode ${exp.opcode! >>> 0 <= 51 ? exp.opcode : 'other'}`);
    if (exp.returned !== undefined) this.checkUsed({ id: exp.returned, len: 0 });
    if (exp.used) this.checkUsed(exp.used);
    if (rc === 1) this.checkRequest(exp);
    if (c.queueGetBase(rig.q) !== model.lastAvail) {
      throw new Finding('result', `queueGetBase = ${c.queueGetBase(rig.q)}, model ${model.lastAvail}`);
    }
    return exp;
  }

  private checkUsed(el: { id: number; len: number }): void {
    const n = this.model.outstanding.get(el.id) ?? 0;
    if (n <= 0) throw new Finding('used-heads', `used element for head ${el.id}, which is not outstanding`);
    if (n === 1) this.model.outstanding.delete(el.id);
    else this.model.outstanding.set(el.id, n - 1);
    this.usedSeen++;
  }

  private checkRequest(exp: PopExpect): void {
    const c = this.rig.core;
    // Finding codec-2415650901 (host/core.ts; test/fuzz/regressions.test.ts): the u32/u64 getters hand JS the raw wasm i32/i64,
    // so values >= 2^31 (2^63) arrive negative. The core itself is right; normalise here and test it there.
    const u = (v: number) => v >>> 0;
    const got = {
      head: u(c.reqHead()), opcode: u(c.reqOpcode()), unique: BigInt.asUintN(64, c.reqUnique()),
      nodeid: c.reqNodeId(), uid: u(c.reqUid()), gid: u(c.reqGid()), pid: u(c.reqPid()), len: u(c.reqLen()),
      argsLen: u(c.reqArgsLen()), readable: u(c.reqReadable()), writable: u(c.reqWritable()), queue: u(c.reqQueue()),
    };
    const want = {
      head: exp.head, opcode: exp.opcode, unique: exp.unique, nodeid: Number(exp.nodeid), uid: exp.uid,
      gid: exp.gid, pid: exp.pid, len: exp.len, argsLen: exp.argsLen, readable: exp.chain!.bytesR,
      writable: exp.chain!.bytesW, queue: this.rig.q,
    };
    for (const k of Object.keys(want) as (keyof typeof want)[]) {
      if (got[k] !== want[k]) {
        throw new Finding('request-fields', `${k} = ${got[k]}, model ${want[k]}`);
      }
    }
    const args = exp.args!;
    const core = c.bytes().subarray(c.argsPtr, c.argsPtr + args.length);
    if (!Buffer.from(core).equals(Buffer.from(args))) {
      throw new Finding('request-args', `ARGS differ from the request's bytes (${args.length} bytes)`);
    }
  }

  /** payloadReadIov / payloadWriteIov checked against the model and the regions. */
  iov(kind: 'read' | 'write', skip: number, maxBytes: number): void {
    const { rig, model } = this;
    const c = rig.core;
    const sp = this.shadow;
    const n = rig.call(`payload${kind}Iov`, () =>
      kind === 'read' ? c.payloadReadIov(skip, maxBytes) : c.payloadWriteIov(skip, maxBytes));
    if (!(Number.isInteger(n) && n >= 0 && n <= IOV_MAX)) throw new Finding('result-code', `iov count ${n}`);
    rig.compareMemory(sp, `payload${kind}Iov`);
    const got = rig.checkIovInRegions(n, `payload${kind}Iov(${skip}, ${maxBytes})`);
    hit(`payload${kind === 'read' ? 'Read' : 'Write'}Iov ${n === 0 ? '0' : n === 1 ? '1' : n === IOV_MAX ? 'max' : 'n'}`);
    const cur = model.current;
    let want: Seg[] = [];
    if (cur !== undefined) {
      const chain = cur.chain!;
      if (kind === 'read') want = iovModel(chain.writable, skip, maxBytes);
      else if (skip < cur.argsLen!) want = iovModel(chain.readable, 40 + skip, Math.min(maxBytes, cur.argsLen! - skip));
    }
    if (got.length !== want.length || got.some((g, i) => g.lin !== want[i].lin || g.len !== want[i].len)) {
      throw new Finding('iov', `payload${kind}Iov(${skip}, ${maxBytes}): core ${JSON.stringify(got.slice(0, 4))}` +
        ` (${got.length}) model ${JSON.stringify(want.slice(0, 4))} (${want.length})`);
    }
  }

  /** replySend with REPLY[0, min(bodyLen, 64 KiB)) filled from rng. */
  replySend(rng: Prng, error: number, bodyLen: number, payloadLen: number): number {
    const { rig, model } = this;
    const c = rig.core;
    const fillLen = Math.min(bodyLen, 64 * 1024, REPLY_MAX);
    c.bytes().set(rng.bytes(fillLen), c.replyPtr);
    const sp = this.shadow;
    const cur = model.current;
    const want = model.replySend(sp, error, bodyLen, payloadLen,
      () => c.bytes().slice(c.replyPtr, c.replyPtr + bodyLen));
    const rc = rig.call('replySend', () => c.replySend(error, bodyLen, payloadLen));
    if (![0, -34, -22].includes(rc)) throw new Finding('result-code', `replySend returned ${rc}`);
    if (rc !== want) throw new Finding('result', `replySend(${error}, ${bodyLen}, ${payloadLen}) = ${rc}, model ${want}`);
    rig.compareMemory(sp, `replySend(${error}, ${bodyLen}, ${payloadLen})`);
    hit(`replySend ${rc}`);
    if (cur !== undefined) this.checkUsed({ id: cur.head!, len: 0 });
    return rc;
  }

  replyNone(): void {
    const { rig, model } = this;
    const sp = this.shadow;
    const cur = model.current;
    model.replyNone(sp);
    rig.call('replyNone', () => rig.core.replyNone());
    rig.compareMemory(sp, 'replyNone');
    if (cur !== undefined) this.checkUsed({ id: cur.head!, len: 0 });
  }

  needsNotify(): void {
    const sp = this.shadow;
    const r = this.rig.call('queueNeedsNotify', () => this.rig.core.queueNeedsNotify(this.rig.q));
    if (typeof r !== 'boolean') throw new Finding('result-code', `queueNeedsNotify returned ${r}`);
    this.rig.compareMemory(sp, 'queueNeedsNotify');
  }

  /** Random host behaviour for the current request, then a completion. */
  serveRandomly(rng: Prng, exp: PopExpect): void {
    const chain = exp.chain!;
    const steps = rng.below(3);
    for (let i = 0; i < steps; i++) {
      const kind = rng.chance(0.5) ? 'read' : 'write';
      const skip = rng.chance(0.5) ? (kind === 'read' ? 16 : 40) : rng.length(kind === 'read' ? chain.bytesW : exp.argsLen!);
      this.iov(kind, skip, rng.chance(0.3) ? 0xffffffff : rng.length(chain.bytesW));
    }
    if (rng.chance(0.05)) return; // no completion: the next pop must return it with used len 0 (DESIGN)
    if (rng.chance(0.1)) {
      this.replyNone();
      return;
    }
    const room = Math.max(0, chain.bytesW - FUSE_OUT_HEADER_SIZE);
    let body: number;
    let payload = 0;
    switch (rng.below(6)) {
      case 0: body = 0; break;
      case 1: body = Math.min(room, rng.range(0, 256)); break;
      case 2: body = room; payload = 0; break;
      case 3: body = rng.range(0, room); payload = room - body; break;
      case 4: body = room + rng.range(1, 8); break; // does not fit
      default: body = rng.length(room); payload = rng.chance(0.3) ? rng.length(room) : 0;
    }
    if (body > REPLY_MAX + 8) body = rng.chance(0.5) ? REPLY_MAX + 1 : body; // lying body lengths too
    const error = rng.chance(0.7) ? 0 : -rng.range(1, 140);
    this.replySend(rng, error, body, payload);
    if (rng.chance(0.2)) this.needsNotify();
  }

  /**
   * Pops until empty or broken, serving each request. A chain whose writable buffer overlaps the avail ring
   * can refill the ring through our own replies (legal for a hostile guest), so this stops after 4 * num + 8 pops.
   */
  drain(rng: Prng): void {
    for (let i = 0; i < 4 * this.cfg.num + 8; i++) {
      const exp = this.pop();
      if (exp.rc === 0 || exp.rc === -3) return;
      if (exp.rc === 1) this.serveRandomly(rng, exp);
    }
  }
}

// ---- the "next good request" ------------------------------------------------------------------------------------

/**
 * After a case: reset queue q (as the host does after a broken ring), put a ring at a fixed place in region C,
 * submit one GETATTR split over two readable and two writable descriptors and check the core serves it exactly.
 */
export function goodRequest(rig: FuzzRig, unique: bigint): void {
  const c = rig.core;
  const q = rig.q;
  const num = 8;
  const ring = GPA_C + 0x8000n; // desc 128, avail @+128 (22), used @+256 (70); buffers from +0x9000
  const lin = rig.linOf(ring);
  c.bytes().fill(0, lin, lin + 0x2000);
  const sp = rig.liveSpace();
  const descLin = lin;
  const availLin = lin + 128;
  const usedLin = lin + 256;
  const buf = GPA_C + 0x9000n;
  const req = new Uint8Array(56);
  const rv = new DataView(req.buffer);
  rv.setUint32(0, 56, true);
  rv.setUint32(4, 3, true); // GETATTR
  rv.setBigUint64(8, unique, true);
  rv.setBigUint64(16, 1n, true);
  rv.setUint32(24, 1000, true);
  req[40 + 8] = 0x5a;
  sp.set(rig.linOf(buf), req.subarray(0, 23));
  sp.set(rig.linOf(buf + 0x100n), req.subarray(23));
  const descs: [bigint, number, number, number][] = [
    [buf, 23, 1, 1], [buf + 0x100n, 33, 1, 2], [buf + 0x200n, 7, 3, 3], [buf + 0x300n, 100, 2, 0],
  ];
  descs.forEach(([a, l, f, n], i) => {
    const d = descLin + 16 * i;
    sp.view.setBigUint64(d - sp.base, a, true);
    sp.setU32(d + 8, l);
    sp.setU16(d + 12, f);
    sp.setU16(d + 14, n);
  });
  sp.setU16(availLin + 4, 0);
  sp.setU16(availLin + 2, 1);
  c.queueReset(q);
  if (c.queueSetNum(q, num) !== 0) throw new Finding('good-request', 'queueSetNum failed');
  const uva = (lin2: number) => ring + BigInt(lin2 - lin) + UVA_DELTA;
  if (c.queueSetAddr(q, uva(descLin), uva(usedLin), uva(availLin)) !== 0) {
    throw new Finding('good-request', 'queueSetAddr failed');
  }
  c.queueSetBase(q, 0);
  const rc = rig.call('queuePop (good request)', () => c.queuePop(q));
  if (rc !== 1) throw new Finding('good-request', `the next good request popped ${rc}`);
  if (c.reqOpcode() !== 3 || c.reqUnique() !== unique || c.reqArgsLen() !== 16 || c.reqWritable() !== 107
    || c.view().getUint8(c.argsPtr + 8) !== 0x5a) {
    throw new Finding('good-request', `the next good request was misread (opcode ${c.reqOpcode()}, unique ` +
      `${c.reqUnique()}, args ${c.reqArgsLen()}, writable ${c.reqWritable()})`);
  }
  c.bytes().fill(0xc3, c.replyPtr, c.replyPtr + 20);
  const sent = rig.call('replySend (good request)', () => c.replySend(0, 20, 0));
  if (sent !== 0) throw new Finding('good-request', `replySend = ${sent}`);
  const usedIdx = sp.u16(usedLin + 2);
  const id = sp.u32(usedLin + 4);
  const len = sp.u32(usedLin + 8);
  const out = gatherSegs(sp, [{ lin: rig.linOf(buf + 0x200n), len: 7 }, { lin: rig.linOf(buf + 0x300n), len: 100 }], 0, 36);
  const want = new Uint8Array(36);
  want.set(outHeader(36, 0, unique));
  want.fill(0xc3, 16);
  if (usedIdx !== 1 || id !== 0 || len !== 36 || !Buffer.from(out).equals(Buffer.from(want))) {
    throw new Finding('good-request', `the next good request was answered wrongly (used.idx ${usedIdx}, ` +
      `{${id}, ${len}})`);
  }
  c.queueReset(q);
}

export { Space };

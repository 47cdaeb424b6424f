/**
 * Fuzz target `dax-ranges`: random operation sequences on the core's DAX range allocator (assembly/dax-ranges.ts)
 * against a plain-array model of the same rules (the driver's free list, LRU busy list, reclaim threshold, the
 * (node, file index) map, pins, upgrade to writable). Every result must equal the model's, keys include hostile
 * values (negative, fractional, NaN, past 2^53, file indices past the loff_t limit), and free + busy must always
 * be the window. A trap is a finding (the harness catches it as such).
 */
import { DaxRanges, DAX_MAX_RANGES } from '../../host/dax/dax-ranges.js';
import type { Core } from '../../host/core.js';
import { Finding, hit } from './harness.js';
import { Prng } from './prng.js';

const EINVAL = -22, EEXIST = -17, ENOSPC = -28, EBUSY = -16;
const MAX_FILE_IDX = 2 ** 42 - 1;
const MAX_KEY = Number.MAX_SAFE_INTEGER;

interface Rec { node: number; idx: number; writable: boolean; pins: number; busy: boolean }

/** The allocator's rules, written as plainly as possible. */
export class DaxRangesModel {
  n = 0;
  free: number[] = [];
  busy: number[] = []; // least recently used first
  recs: Rec[] = [];

  private key(x: number): number | null {
    return x >= 0 && x <= MAX_KEY ? Math.trunc(x) : null;
  }

  private find(node: number, idx: number): number {
    return this.busy.find((i) => this.recs[i]!.node === node && this.recs[i]!.idx === idx) ?? -1;
  }

  private valid(i: number): boolean {
    const u = i >>> 0;
    return u < this.n && this.recs[u]!.busy;
  }

  init(n: number): number {
    if (n === 0 || n > DAX_MAX_RANGES) return EINVAL;
    this.n = n;
    this.free = [...Array(n).keys()];
    this.busy = [];
    this.recs = Array.from({ length: n }, () => ({ node: 0, idx: 0, writable: false, pins: 0, busy: false }));
    return 0;
  }

  lookup(node: number, idx: number): number {
    const k = this.key(node), f = this.key(idx);
    if (k === null || f === null) return -1;
    const i = this.find(k, f);
    if (i < 0) return -1;
    this.busy.splice(this.busy.indexOf(i), 1);
    this.busy.push(i);
    return i;
  }

  map(node: number, idx: number, writable: boolean): number {
    const k = this.key(node), f = this.key(idx);
    if (k === null || f === null || f > MAX_FILE_IDX) return EINVAL;
    if (this.find(k, f) >= 0) return EEXIST;
    const i = this.free.shift();
    if (i === undefined) return ENOSPC;
    this.recs[i] = { node: k, idx: f, writable, pins: 0, busy: true };
    this.busy.push(i);
    return i;
  }

  unmap(i: number): number {
    if (!this.valid(i)) return EINVAL;
    const r = this.recs[i >>> 0]!;
    if (r.pins !== 0) return EBUSY;
    r.busy = false;
    r.writable = false;
    this.busy.splice(this.busy.indexOf(i >>> 0), 1);
    this.free.push(i >>> 0);
    return 0;
  }

  reclaimVictim(): number {
    return this.busy.find((i) => this.recs[i]!.pins === 0) ?? -1;
  }

  needsReclaim(): boolean {
    return this.free.length < Math.max(Math.floor(this.n * 20 / 100), 1);
  }

  setWritable(i: number): number {
    if (!this.valid(i)) return EINVAL;
    this.recs[i >>> 0]!.writable = true;
    return 0;
  }

  isWritable(i: number): number {
    return this.valid(i) ? (this.recs[i >>> 0]!.writable ? 1 : 0) : EINVAL;
  }

  node(i: number): number {
    return this.valid(i) ? this.recs[i >>> 0]!.node : 0;
  }

  fileIdx(i: number): number {
    return this.valid(i) ? this.recs[i >>> 0]!.idx : -1;
  }

  pin(i: number): number {
    if (!this.valid(i)) return EINVAL;
    const r = this.recs[i >>> 0]!;
    if (r.pins === 0xffff) return EBUSY;
    return ++r.pins;
  }

  unpin(i: number): number {
    if (!this.valid(i)) return EINVAL;
    const r = this.recs[i >>> 0]!;
    if (r.pins === 0) return EINVAL;
    return --r.pins;
  }

  rangesOf(node: number): number[] {
    const k = this.key(node);
    if (k === null) return [];
    const out: number[] = [];
    for (let i = 0; i < this.n; i++) if (this.recs[i]!.busy && this.recs[i]!.node === k) out.push(i);
    return out;
  }
}

function pickKey(p: Prng, small: number): number {
  switch (p.below(16)) {
    case 0: return -1;
    case 1: return 1.5 + p.below(4);
    case 2: return NaN;
    case 3: return 2 ** 53 + 2;
    case 4: return MAX_FILE_IDX + p.below(3);
    case 5: return p.u32() * 4096;
    default: return p.below(small);
  }
}

function pickRange(p: Prng, n: number): number {
  switch (p.below(10)) {
    case 0: return -1;
    case 1: return n + p.below(3);
    case 2: return 0x7fff_ffff;
    default: return p.below(Math.max(n, 1));
  }
}

/** One case: a window of 1..64 ranges (sometimes an invalid size) and up to 300 operations. */
export function daxRangesCase(core: Core, seed: number): void {
  const p = new Prng(seed);
  const ranges = new DaxRanges(core);
  const model = new DaxRangesModel();
  const sizes = [0, DAX_MAX_RANGES + 1, 1, 2, 5, 10, 64, 1 + p.below(64)];
  const n = sizes[p.below(sizes.length)]!;
  const want = model.init(n);
  const got = ranges.init(n);
  if (got !== want) throw new Finding('dax-result', `init(${n}) = ${got}, model ${want}`);
  if (want < 0) {
    hit('dax:init-refused');
    if (ranges.init(4) !== 0 || model.init(4) !== 0) throw new Finding('dax-result', 'init(4) after a refused init');
  }
  const nodes = 1 + p.below(6);
  const idxs = 1 + p.below(12);
  const ops = 50 + p.below(250);
  for (let k = 0; k < ops; k++) {
    const op = p.below(13);
    let name: string;
    let a: number;
    let b: number;
    switch (op) {
      case 0: case 1: {
        const node = pickKey(p, nodes), idx = pickKey(p, idxs);
        name = `lookup(${node}, ${idx})`; a = ranges.lookup(node, idx); b = model.lookup(node, idx);
        if (a >= 0) hit('dax:lookup-hit');
        break;
      }
      case 2: case 3: case 4: {
        const node = pickKey(p, nodes), idx = pickKey(p, idxs), w = p.below(2) === 1;
        name = `map(${node}, ${idx}, ${w})`; a = ranges.map(node, idx, w); b = model.map(node, idx, w);
        hit(a >= 0 ? 'dax:map' : `dax:map${a}`);
        break;
      }
      case 5: case 6: {
        const i = p.below(3) === 0 ? ranges.reclaimVictim() : pickRange(p, model.n);
        name = `unmap(${i})`; a = ranges.unmap(i); b = model.unmap(i);
        hit(a === 0 ? 'dax:unmap' : `dax:unmap${a}`);
        break;
      }
      case 7:
        name = 'reclaimVictim()'; a = ranges.reclaimVictim(); b = model.reclaimVictim();
        break;
      case 8: {
        const i = pickRange(p, model.n);
        const w = p.below(2) === 0;
        name = w ? `setWritable(${i})` : `isWritable(${i})`;
        a = w ? ranges.setWritable(i) : ranges.isWritable(i);
        b = w ? model.setWritable(i) : model.isWritable(i);
        break;
      }
      case 9: {
        const i = pickRange(p, model.n);
        name = `pin(${i})`; a = ranges.pin(i); b = model.pin(i);
        if (a > 0) hit('dax:pinned');
        break;
      }
      case 10: {
        const i = pickRange(p, model.n);
        name = `unpin(${i})`; a = ranges.unpin(i); b = model.unpin(i);
        break;
      }
      case 11: {
        const i = pickRange(p, model.n);
        name = `node/fileIdx(${i})`;
        a = ranges.node(i) * 2 ** 20 + ranges.fileIdx(i); b = model.node(i) * 2 ** 20 + model.fileIdx(i);
        break;
      }
      default: {
        const node = pickKey(p, nodes);
        name = `rangesOf(${node})`;
        const x = ranges.rangesOf(node).join(','), y = model.rangesOf(node).join(',');
        if (x !== y) throw new Finding('dax-result', `${name} = [${x}], model [${y}]`, { seed, k });
        a = b = 0;
      }
    }
    if (!Object.is(a, b)) throw new Finding('dax-result', `${name} = ${a}, model ${b}`, { seed, k });
    if (ranges.needsReclaim() !== model.needsReclaim()) throw new Finding('dax-result', `needsReclaim after ${name}`, { seed, k });
    if (ranges.freeCount !== model.free.length || ranges.busyCount !== model.busy.length ||
        ranges.freeCount + ranges.busyCount !== model.n) {
      throw new Finding('dax-count', `after ${name}: free ${ranges.freeCount}/${model.free.length} busy ` +
        `${ranges.busyCount}/${model.busy.length} of ${model.n}`, { seed, k });
    }
  }
}

/**
 * Per-operation counters and latency histograms of a FuseServer: how many requests of each opcode were answered,
 * how many with an error, how many went asynchronous, and how long they took (from the server taking the request
 * to its reply), in power-of-two microsecond buckets. Recording costs two `performance.now()` reads and a few
 * array writes per request; nothing is allocated after an opcode's first request.
 *
 * Requests served on another thread (a queue thread's own READ and WRITE, host/virtio/queue-thread.ts) are recorded
 * there into SharedOpCounters, which the server's OpStats includes in its snapshots.
 */
import { OPCODE_NAMES } from './protocol.js';

/** Buckets: index b counts latencies in [2^(b-1), 2^b) microseconds (b = 0: under 1 us); the last is open-ended. */
export const LATENCY_BUCKETS = 28;

/** One opcode's figures. */
export interface OperationStats {
  /** The opcode's name (LOOKUP, READ, ...). */
  readonly name: string;
  readonly opcode: number;
  /** Requests answered (or, for FORGET/INTERRUPT, taken) so far. */
  readonly count: number;
  /** Of them, answered with an error. */
  readonly errors: number;
  /** Of them, answered after the filesystem's Promise settled. */
  readonly async: number;
  /** Requests of this opcode pending now. */
  readonly pending: number;
  /** Sum of latencies in microseconds (mean = totalUs / count). */
  readonly totalUs: number;
  /** Largest latency seen, in microseconds. */
  readonly maxUs: number;
  /** Histogram: `latency[b]` requests took [2^(b-1), 2^b) us (b = 0: under 1 us). */
  readonly latency: readonly number[];
}

class Counter {
  count = 0;
  errors = 0;
  async = 0;
  pending = 0;
  totalUs = 0;
  maxUs = 0;
  readonly latency = new Array<number>(LATENCY_BUCKETS).fill(0);
}

/** The upper bound, in microseconds, of latency bucket b (for printing). */
export function bucketLimitUs(b: number): number {
  return 2 ** b;
}

export class OpStats {
  private readonly byOpcode = new Map<number, Counter>();
  private readonly shared: SharedOpCounters[] = [];

  private counter(opcode: number): Counter {
    let c = this.byOpcode.get(opcode);
    if (c === undefined) {
      c = new Counter();
      this.byOpcode.set(opcode, c);
    }
    return c;
  }

  /** A request of `opcode` answered after `ms` milliseconds. */
  record(opcode: number, error: boolean, ms: number, async: boolean): void {
    const c = this.counter(opcode);
    c.count++;
    if (error) c.errors++;
    if (async) {
      c.async++;
      c.pending--;
    }
    const us = ms * 1000;
    c.totalUs += us;
    if (us > c.maxUs) c.maxUs = us;
    c.latency[bucketOf(us)]++;
  }

  /** Counts recorded on another thread, added to every snapshot from now on. */
  include(shared: SharedOpCounters): void {
    this.shared.push(shared);
  }

  /** A request of `opcode` went asynchronous (recorded when it is answered or dropped). */
  began(opcode: number): void {
    this.counter(opcode).pending++;
  }

  /** A pending request of `opcode` was dropped unanswered (disconnect, reset, DESTROY). */
  dropped(opcode: number): void {
    this.counter(opcode).pending--;
  }

  /** A snapshot, one entry per opcode seen, by opcode. */
  snapshot(): OperationStats[] {
    const all = new Map<number, Counter>();
    const into = (opcode: number): Counter => {
      let c = all.get(opcode);
      if (c === undefined) all.set(opcode, c = new Counter());
      return c;
    };
    for (const [opcode, c] of this.byOpcode) {
      const t = into(opcode);
      t.count = c.count;
      t.errors = c.errors;
      t.async = c.async;
      t.pending = c.pending;
      t.totalUs = c.totalUs;
      t.maxUs = c.maxUs;
      for (let b = 0; b < LATENCY_BUCKETS; b++) t.latency[b] = c.latency[b]!;
    }
    for (const shared of this.shared) {
      shared.forEachRow((opcode, row) => {
        const t = into(opcode);
        t.count += row[ROW_COUNT]!;
        t.errors += row[ROW_ERRORS]!;
        t.totalUs += row[ROW_TOTAL_US]!;
        t.maxUs = Math.max(t.maxUs, row[ROW_MAX_US]!);
        for (let b = 0; b < LATENCY_BUCKETS; b++) t.latency[b] += row[ROW_LATENCY + b]!;
      });
    }
    return [...all.entries()].sort((a, b) => a[0] - b[0]).map(([opcode, c]) => ({
      name: OPCODE_NAMES[opcode] ?? `OPCODE_${opcode}`, opcode, count: c.count, errors: c.errors, async: c.async,
      pending: c.pending, totalUs: Math.round(c.totalUs), maxUs: Math.round(c.maxUs), latency: [...c.latency],
    }));
  }
}

function bucketOf(us: number): number {
  return us < 1 ? 0 : Math.min(LATENCY_BUCKETS - 1, 32 - Math.clz32(us));
}

/** A SharedOpCounters row: count, errors, total and largest latency (us), then the histogram. */
const ROW_COUNT = 0;
const ROW_ERRORS = 1;
const ROW_TOTAL_US = 2;
const ROW_MAX_US = 3;
const ROW_LATENCY = 4;
const ROW_SIZE = ROW_LATENCY + LATENCY_BUCKETS;

/**
 * The figures of a fixed set of opcodes in a SharedArrayBuffer: one thread records (synchronous requests only),
 * another reads them for snapshots. Reads are not atomic with the writes: a snapshot taken during a record may
 * see a request in one field before another, as the figures of a live daemon are anyway.
 */
export class SharedOpCounters {
  private readonly values: Float64Array;

  /** `buffer` from `SharedOpCounters.create(opcodes).buffer`, with the same opcodes, on the other thread. */
  constructor(readonly buffer: SharedArrayBuffer, private readonly opcodes: readonly number[]) {
    this.values = new Float64Array(buffer);
    if (this.values.length !== opcodes.length * ROW_SIZE) throw new RangeError('SharedOpCounters: buffer size');
  }

  static create(opcodes: readonly number[]): SharedOpCounters {
    return new SharedOpCounters(new SharedArrayBuffer(opcodes.length * ROW_SIZE * 8), opcodes);
  }

  /** A request of `opcode` (one of the set) answered after `ms` milliseconds. */
  record(opcode: number, error: boolean, ms: number): void {
    const at = this.opcodes.indexOf(opcode) * ROW_SIZE;
    if (at < 0) return;
    const v = this.values;
    const us = ms * 1000;
    v[at + ROW_COUNT]++;
    if (error) v[at + ROW_ERRORS]++;
    v[at + ROW_TOTAL_US] += us;
    if (us > v[at + ROW_MAX_US]!) v[at + ROW_MAX_US] = us;
    v[at + ROW_LATENCY + bucketOf(us)]++;
  }

  /** Each opcode with at least one request, and its row. */
  forEachRow(fn: (opcode: number, row: Float64Array) => void): void {
    this.opcodes.forEach((opcode, i) => {
      const row = this.values.subarray(i * ROW_SIZE, (i + 1) * ROW_SIZE);
      if (row[ROW_COUNT]! > 0) fn(opcode, row);
    });
  }
}

/** A table of the figures, one line per opcode: count, errors, async, mean/p50/p99/max latency. */
export function formatStats(stats: readonly OperationStats[]): string {
  const lines = [`${'op'.padEnd(16)} ${'count'.padStart(9)} ${'errors'.padStart(8)} ${'async'.padStart(7)} ` +
    `${'pending'.padStart(7)} ${'mean'.padStart(9)} ${'p50<'.padStart(9)} ${'p99<'.padStart(9)} ${'max'.padStart(9)}`];
  for (const s of stats) {
    lines.push(`${s.name.padEnd(16)} ${String(s.count).padStart(9)} ${String(s.errors).padStart(8)} ` +
      `${String(s.async).padStart(7)} ${String(s.pending).padStart(7)} ` +
      `${fmtUs(s.count > 0 ? s.totalUs / s.count : 0).padStart(9)} ${fmtUs(percentileUs(s, 0.5)).padStart(9)} ` +
      `${fmtUs(percentileUs(s, 0.99)).padStart(9)} ${fmtUs(s.maxUs).padStart(9)}`);
  }
  return lines.join('\n');
}

/** The upper bound of the histogram bucket holding quantile q (0..1), in microseconds. */
export function percentileUs(s: OperationStats, q: number): number {
  const total = s.latency.reduce((a, b) => a + b, 0);
  if (total === 0) return 0;
  let seen = 0;
  for (let b = 0; b < s.latency.length; b++) {
    seen += s.latency[b];
    if (seen >= q * total) return bucketLimitUs(b);
  }
  return bucketLimitUs(s.latency.length - 1);
}

function fmtUs(us: number): string {
  if (us >= 1e6) return `${(us / 1e6).toFixed(2)}s`;
  if (us >= 1e3) return `${(us / 1e3).toFixed(2)}ms`;
  return `${Math.round(us)}us`;
}

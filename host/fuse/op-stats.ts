/**
 * Per-operation counters and latency histograms of a FuseServer: how many requests of each opcode were answered,
 * how many with an error, how many went asynchronous, and how long they took (from the server taking the request
 * to its reply), in power-of-two microsecond buckets. Recording costs two `performance.now()` reads and a few
 * array writes per request; nothing is allocated after an opcode's first request.
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
    const b = us < 1 ? 0 : Math.min(LATENCY_BUCKETS - 1, 32 - Math.clz32(us));
    c.latency[b]++;
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
    return [...this.byOpcode.entries()].sort((a, b) => a[0] - b[0]).map(([opcode, c]) => ({
      name: OPCODE_NAMES[opcode] ?? `OPCODE_${opcode}`, opcode, count: c.count, errors: c.errors, async: c.async,
      pending: c.pending, totalUs: Math.round(c.totalUs), maxUs: Math.round(c.maxUs), latency: [...c.latency],
    }));
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

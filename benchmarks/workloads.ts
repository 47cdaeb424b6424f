/**
 * The workloads: each runs `depth` async workers issuing one kind of operation through a FuseClient for a fixed
 * time, and records every operation's latency.
 */
import type { FuseClient } from '../host/frontend/fuse-client.js';
import { FUSE_ROOT_ID } from '../host/fuse/protocol.js';
import { native } from '../host/native-loader.js';

export const DATA_FILE = 'data.bin';
export const BIG_DIR = 'dir10k';
export const BIG_DIR_ENTRIES = 10000;
export const STAT_FILE = 'stat.txt';

export interface Workload {
  name: string;
  kind: 'meta' | 'data';
  depth: number;
  /** Bytes moved per op (data rows). */
  bytesPerOp: number;
  /** For the floor column: which io floor (data rows). */
  floor?: string;
  setup(fc: FuseClient, fileSize: number): Promise<WorkloadCtx>;
}

export interface WorkloadCtx {
  /** One operation; `w` is the worker index, `i` that worker's op counter. */
  op(w: number, i: number): Promise<unknown>;
  teardown(): Promise<void>;
}

export interface RunResult { ops: number; secs: number; lat: Float64Array; requests: number }

const c = native.constants;

/** xorshift32 per worker (deterministic offsets). */
function rng(seed: number): () => number {
  let s = seed | 1;
  return () => {
    s ^= s << 13; s ^= s >>> 17; s ^= s << 5;
    return s >>> 0;
  };
}

async function openData(fc: FuseClient): Promise<{ nodeid: number; fh: number; done: () => Promise<void> }> {
  const e = await fc.lookup(FUSE_ROOT_ID, DATA_FILE);
  const o = await fc.open(e.nodeid, c.O_RDWR);
  return {
    nodeid: e.nodeid, fh: o.fh,
    done: async () => {
      await fc.release(e.nodeid, o.fh);
      await fc.forget(e.nodeid, 1);
    },
  };
}

function randomIo(write: boolean, bs: number, depth: number): Workload {
  return {
    name: `${write ? 'write' : 'read'} 4 KiB random, depth ${depth}`, kind: 'data', depth, bytesPerOp: bs,
    floor: `${write ? 'pwrite' : 'pread'} 4 KiB rand`,
    async setup(fc, fileSize) {
      const f = await openData(fc);
      const blocks = Math.floor(fileSize / bs);
      const rs = Array.from({ length: depth }, (_, w) => rng(0x1234567 + w * 7919));
      return {
        op: (w) => {
          const pos = (rs[w]!() % blocks) * bs;
          return write ? fc.write(f.nodeid, f.fh, pos, bs) : fc.readInto(f.nodeid, f.fh, pos, bs, null);
        },
        teardown: f.done,
      };
    },
  };
}

function seqIo(write: boolean, bs: number, depth: number): Workload {
  return {
    name: `${write ? 'write' : 'read'} 128 KiB sequential, depth ${depth}`, kind: 'data', depth, bytesPerOp: bs,
    floor: `${write ? 'pwrite' : 'pread'} 128 KiB seq`,
    async setup(fc, fileSize) {
      const f = await openData(fc);
      const blocks = Math.floor(fileSize / bs);
      let next = 0;
      return {
        op: () => {
          const pos = next * bs;
          next = next + 1 === blocks ? 0 : next + 1;
          return write ? fc.write(f.nodeid, f.fh, pos, bs) : fc.readInto(f.nodeid, f.fh, pos, bs, null);
        },
        teardown: f.done,
      };
    },
  };
}

function getattr(depth: number): Workload {
  return {
    name: `GETATTR, depth ${depth}`, kind: 'meta', depth, bytesPerOp: 0,
    async setup(fc) {
      const e = await fc.lookup(FUSE_ROOT_ID, STAT_FILE);
      return { op: () => fc.getattr(e.nodeid), teardown: () => fc.forget(e.nodeid, 1) };
    },
  };
}

function lookup(depth: number): Workload {
  return {
    name: `LOOKUP, depth ${depth}`, kind: 'meta', depth, bytesPerOp: 0,
    async setup(fc) {
      let n = 0;
      let node = 0;
      return {
        op: async () => {
          const e = await fc.lookup(FUSE_ROOT_ID, STAT_FILE);
          node = e.nodeid;
          n++;
        },
        teardown: async () => { if (n > 0) await fc.forget(node, n); },
      };
    },
  };
}

/** CREATE + RELEASE + UNLINK (the kernel's lookup count from CREATE is dropped with a FORGET on hiprio). */
function createUnlink(): Workload {
  return {
    name: 'CREATE+RELEASE+UNLINK, depth 1', kind: 'meta', depth: 1, bytesPerOp: 0,
    async setup(fc) {
      const forgets: Promise<void>[] = [];
      return {
        op: async (_w, i) => {
          const name = `f${i}`;
          const cr = await fc.create(FUSE_ROOT_ID, name, c.O_RDWR | c.O_CREAT | c.O_EXCL, 0o644);
          await fc.release(cr.entry.nodeid, cr.fh);
          await fc.unlink(FUSE_ROOT_ID, name);
          forgets.push(fc.forget(cr.entry.nodeid, 1));
          if (forgets.length >= 256) await Promise.all(forgets.splice(0));
        },
        teardown: async () => { await Promise.all(forgets); },
      };
    },
  };
}

/** OPENDIR, READDIRPLUS (64 KiB buffers) to the end, RELEASEDIR, BATCH_FORGET of what it looked up. */
function readdirplusBig(): Workload {
  return {
    name: `READDIRPLUS ${BIG_DIR_ENTRIES} entries (64 KiB bufs)`, kind: 'meta', depth: 1, bytesPerOp: 0,
    async setup(fc) {
      const d = await fc.lookup(FUSE_ROOT_ID, BIG_DIR);
      return {
        op: async () => {
          const od = await fc.opendir(d.nodeid);
          let off = 0n;
          let count = 0;
          const forgets: { nodeid: number; nlookup: number }[] = [];
          for (;;) {
            const ents = await fc.readdirplus(d.nodeid, od.fh, off, 64 * 1024);
            if (ents.length === 0) break;
            for (const e of ents) {
              if (e.entry.nodeid !== 0 && e.name !== '.' && e.name !== '..') forgets.push({ nodeid: e.entry.nodeid, nlookup: 1 });
              off = e.off;
              count++;
            }
          }
          await fc.releasedir(d.nodeid, od.fh);
          await fc.batchForget(forgets);
          if (count < BIG_DIR_ENTRIES) throw new Error(`READDIRPLUS listed ${count} entries`);
        },
        teardown: () => fc.forget(d.nodeid, 1),
      };
    },
  };
}

export function workloads(): Workload[] {
  return [
    getattr(1), getattr(16), lookup(1), lookup(16), createUnlink(), readdirplusBig(),
    randomIo(false, 4096, 1), randomIo(false, 4096, 16), randomIo(true, 4096, 1), randomIo(true, 4096, 16),
    seqIo(false, 128 * 1024, 4), seqIo(true, 128 * 1024, 4),
  ];
}

/** Runs `ctx.op` from `depth` workers for durationMs (after warmupMs unrecorded), at least minOps ops in total. */
export async function runFor(fc: FuseClient, w: Workload, ctx: WorkloadCtx, warmupMs: number, durationMs: number,
  minOps: number): Promise<RunResult> {
  const lat = new Float64Array(1 << 21);
  let n = 0;
  let recording = false;
  let stop = false;
  let ops = 0;
  const counters = new Array<number>(w.depth).fill(0);
  const worker = async (wi: number): Promise<void> => {
    while (!stop) {
      const t0 = performance.now();
      await ctx.op(wi, counters[wi]!++);
      if (recording) {
        ops++;
        if (n < lat.length) lat[n++] = performance.now() - t0;
      }
    }
  };
  const start = performance.now();
  const all = Array.from({ length: w.depth }, (_, i) => worker(i));
  let t0 = start;
  let sent0 = fc.sent;
  const ticker = (async () => {
    await new Promise((r) => setTimeout(r, warmupMs));
    recording = true;
    t0 = performance.now();
    sent0 = fc.sent;
    for (;;) {
      await new Promise((r) => setTimeout(r, 10));
      if (performance.now() - t0 >= durationMs && ops >= minOps) break;
      if (performance.now() - t0 >= durationMs * 20) break;
    }
    recording = false;
    stop = true;
  })();
  await ticker;
  const t1 = performance.now();
  const requests = fc.sent - sent0;
  await Promise.all(all);
  return { ops, secs: (t1 - t0) / 1000, lat: lat.subarray(0, n), requests };
}

/**
 * GETATTR latency while host requests block (issue 9: "GETATTR p99 while 8 requests of 50 ms are in flight stays
 * under 1 ms"). Each backend shares a directory whose file `slow` answers every READ after 50 ms
 * (test/util/slow-share.ts: a FUSE mount this process serves); 8 readers keep 8 READs of it in flight all the
 * time while one more caller sends GETATTRs one after another and times each. Rows: ours with
 * --thread-pool-size=8, ours with 0 (everything on the main thread), the C virtiofsd with --thread-pool-size=64
 * and with its default (0 in QEMU 7.2's, as ours). Debian's QEMU 7.2 virtiofsd with a pool dies of SIGSYS here
 * (its pool thread calls sched_getaffinity, syscall 204, outside its seccomp list; seen in the audit log): that row
 * then says "failed".
 *
 *   node dist/benchmarks/blocking.js [--runs=3] [--seconds=2] [--delay-ms=50] [--pool=8]
 *
 * Needs root and /dev/fuse. The slow share and the measuring client run in this one process: its own event
 * loop adds to every latency (the same for every row). Figures on a shared machine are indicative only.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FuseClient } from '../host/frontend/fuse-client.js';
import { FUSE_ROOT_ID } from '../host/fuse/protocol.js';
import { C_VIRTIOFSD, startC, startOurs, type Backend } from './backends.js';
import { mountSlowShare, SLOW_SIZE, type SlowShare } from '../test/util/slow-share.js';
import { missingDevFuse } from '../test/util/prereq.js';

function arg(name: string, dflt: number): number {
  const a = process.argv.find((x) => x.startsWith(`--${name}=`));
  return a === undefined ? dflt : Number(a.slice(name.length + 3));
}

const RUNS = arg('runs', 3);
const SECONDS = arg('seconds', 2);
const DELAY_MS = arg('delay-ms', 50);
const POOL = arg('pool', 8);
const READERS = 8;

interface Sample { p50: number; p99: number; max: number; getattrs: number; reads: number }

function quantile(sorted: number[], q: number): number {
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

async function measure(b: Backend, share: SlowShare): Promise<Sample> {
  let fc: FuseClient | undefined;
  for (let t0 = Date.now(); fc === undefined; ) {
    try {
      fc = await FuseClient.connect(b.socket, { depth: 64, timeoutMs: 60_000 });
    } catch (e) {
      if (Date.now() - t0 > 5000) throw e;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  try {
    await fc.init();
    const node = (await fc.lookup(FUSE_ROOT_ID, 'slow')).nodeid;
    const fh = (await fc.open(node, 0)).fh;
    let stop = false;
    let reads = 0;
    const seen0 = share.fs.seen;
    const reader = async (k: number): Promise<void> => {
      for (let i = 0; !stop; i++) {
        await fc!.read(node, fh, ((k * 64 + i) * 4096) % SLOW_SIZE, 4096);
        reads++;
      }
    };
    const readers = Array.from({ length: READERS }, (_, k) => reader(k));
    for (const r of readers) r.catch(() => undefined); // a backend that dies fails the GETATTR loop below
    // Start measuring once the READs are held in the host (or, without a pool, the first one is).
    while (share.fs.seen === seen0) await new Promise((r) => setImmediate(r));
    const lat: number[] = [];
    const end = performance.now() + SECONDS * 1000;
    while (performance.now() < end) {
      const s = performance.now();
      await fc.getattr(FUSE_ROOT_ID);
      lat.push(performance.now() - s);
    }
    stop = true;
    await Promise.all(readers);
    lat.sort((x, y) => x - y);
    return { p50: quantile(lat, 0.5), p99: quantile(lat, 0.99), max: lat[lat.length - 1]!, getattrs: lat.length, reads };
  } finally {
    fc.close();
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function main(): Promise<void> {
  const why = missingDevFuse();
  if (why !== undefined) {
    console.log(`blocking bench skipped: ${why}`);
    return;
  }
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'vfsd-bench-blocking-'));
  const share = await mountSlowShare();
  share.fs.delayMs = DELAY_MS;
  const rows: Array<{ label: string; start: () => Promise<Backend> }> = [
    { label: `ours --thread-pool-size=${POOL}`, start: () => startOurs(work, share.dir, [`--thread-pool-size=${POOL}`], undefined, 'pool') },
    { label: 'ours --thread-pool-size=0', start: () => startOurs(work, share.dir, ['--thread-pool-size=0'], undefined, 'nopool') },
  ];
  if (fs.existsSync(C_VIRTIOFSD)) {
    rows.push({ label: 'C --thread-pool-size=64', start: () => startC(work, share.dir, ['--thread-pool-size=64']) });
    rows.push({ label: 'C default (pool 0)', start: () => startC(work, share.dir) });
  }
  else console.log(`C virtiofsd row skipped: ${C_VIRTIOFSD} missing`);
  try {
    console.log(`GETATTR latency (ms) at depth 1 while ${READERS} READs of ${DELAY_MS} ms are in flight; ` +
      `median of ${RUNS} runs of ${SECONDS} s`);
    console.log('backend                          p50 ms    p99 ms    max ms  getattrs/run  reads/run');
    for (const row of rows) {
      const samples: Sample[] = [];
      let failed = '';
      for (let i = 0; i < RUNS && failed === ''; i++) {
        const b = await row.start();
        try {
          samples.push(await measure(b, share));
        } catch (e) {
          failed = (e as Error).message;
        } finally {
          await b.stop();
        }
      }
      if (failed !== '') {
        console.log(`${row.label.padEnd(30)} failed: ${failed}`);
        continue;
      }
      const m = (f: (s: Sample) => number) => median(samples.map(f));
      console.log(`${row.label.padEnd(30)} ${m((s) => s.p50).toFixed(3).padStart(8)}  ${m((s) => s.p99).toFixed(3).padStart(8)}  ` +
        `${m((s) => s.max).toFixed(1).padStart(8)}  ${String(m((s) => s.getattrs)).padStart(12)}  ${String(m((s) => s.reads)).padStart(9)}`);
    }
  } finally {
    await share.close();
    fs.rmSync(work, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});

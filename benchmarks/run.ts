/**
 * `npm run bench [-- --quick]`: our daemon beside the C virtiofsd, both driven by the userspace virtio-fs
 * frontend (host/frontend/fuse-client.ts), each a separate process on its own socket, all sharing one directory
 * (one at a time is measured; see `populate` for why one). Per repetition both backends are started fresh and
 * every workload runs on both, alternating which goes first; the table shows medians over repetitions. The
 * machine's floors (page-cache pread/pwrite, eventfd round trips to another process) are measured in the
 * same run.
 *
 * DAX rows (ours only, benchmarks/dax.ts) follow in their own table; --dax-only runs just them.
 *
 * Options: --quick (small file, short runs), --reps=N, --duration=MS, --no-save, --out=DIR (default
 * benchmarks/results; the full run saves <date>.json/.md/.svg there, --quick saves nothing unless --save),
 * --poll-us=N (default 50): ours runs a second time with --poll-us=N, its rows beside the defaults (0: no such
 * rows). --thread-pool-size=N (default 8): the same for the blocking-I/O pool (0: no such rows); GETATTR latency
 * with blocking READs in flight is benchmarks/blocking.ts. --queue-threads: ours runs once more with that option
 * (the frontend's one request queue served by a thread of its own; off by default). Every row names the options
 * that produced it; the command lines are printed with the table.
 * --runtimes=node,bun,deno (default node): every variant of ours runs under each listed runtime (Bun and Deno
 * from the devDependencies), in the same repetitions, beside the same C samples; its rows say which runtime.
 *
 * Besides ops/s: daemon CPU seconds per million requests (/proc/PID/stat), CPU while connected but idle, private
 * memory (smaps_rollup Private_Clean + Private_Dirty) of ours, the C virtiofsd and a bare node process, and our GCs
 * (--trace-gc; the mark-compacts are the major ones): per workload, and over a million requests after a warm-up
 * (benchmarks/gc-soak.ts; --quick: 200,000).
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { FuseClient } from '../host/frontend/fuse-client.js';
import {
  C_VIRTIOFSD, RUNTIMES, isMinorGc, startC, startOurs, type Backend, type GcEvent, type RuntimeName,
} from './backends.js';
import { privateMemoryKb } from '../host/stats.js';
import { eventfdRoundTrip, ioFloor, type IoFloor, type RttFloor } from './floors.js';
import { markdownTable, median, svgChart, textTable, type Row, type Side } from './report.js';
import { BIG_DIR, BIG_DIR_ENTRIES, DATA_FILE, STAT_FILE, runFor, workloads, type Workload } from './workloads.js';
import { daxBench, daxTable, type DaxRow } from './dax.js';
import { gcSoak, gcSoakLine, type GcSoak } from './gc-soak.js';

const argv = process.argv.slice(2);
const flag = (name: string): boolean => argv.includes(`--${name}`);
const opt = (name: string): string | undefined => argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);

const quick = flag('quick');
const daxOnly = flag('dax-only');
const cfg = {
  quick,
  reps: Number(opt('reps') ?? (quick ? 3 : 5)),
  durationMs: Number(opt('duration') ?? (quick ? 300 : 2000)),
  warmupMs: quick ? 100 : 300,
  minOps: quick ? 3 : 5,
  fileSize: (quick ? 32 : 256) * 1024 * 1024,
  clientDepth: 64,
  queues: 1,
  pollUs: Number(opt('poll-us') ?? 50),
  threadPoolSize: Number(opt('thread-pool-size') ?? 8),
  queueThreads: flag('queue-threads'),
};
const runtimes = (opt('runtimes') ?? 'node').split(',').map((r) => r.trim()).filter(Boolean) as RuntimeName[];
for (const r of runtimes) {
  if (!RUNTIMES.includes(r)) throw new Error(`--runtimes: '${r}' is not one of ${RUNTIMES.join(', ')}`);
}
if (runtimes.length === 0 || new Set(runtimes).size !== runtimes.length) throw new Error('--runtimes: a list without repeats');
/**
 * The variants of ours: the defaults, and with --poll-us when asked for; each under every runtime of --runtimes
 * (a label names a runtime other than Node).
 */
const OURS_VARIANTS: { label: string; extra: string[]; runtime: RuntimeName }[] = runtimes.flatMap((runtime) => {
  const tag = runtime === 'node' ? '' : ` (${runtime})`;
  return [
    { label: `ours${tag}`, extra: [], runtime },
    ...(cfg.pollUs > 0 ? [{ label: `ours --poll-us=${cfg.pollUs}${tag}`, extra: [`--poll-us=${cfg.pollUs}`], runtime }] : []),
    ...(cfg.threadPoolSize > 0 ? [{ label: `ours --thread-pool-size=${cfg.threadPoolSize}${tag}`,
      extra: [`--thread-pool-size=${cfg.threadPoolSize}`], runtime }] : []),
    ...(cfg.queueThreads ? [{ label: `ours --queue-threads${tag}`, extra: ['--queue-threads'], runtime }] : []),
  ];
});
const save = quick ? flag('save') : !flag('no-save');
const outDir = opt('out') ?? fileURLToPath(new URL('../../benchmarks/results/', import.meta.url));

/** How long the daemons are watched while connected and idle. */
const IDLE_MS = 2000;
const log = (...a: unknown[]): void => console.error('[bench]', ...a);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * The shared directory every backend serves. One for all: the page cache keeps a file written in 1 MiB chunks as
 * large folios, and on Linux 6.18's ext4 a 4 KiB pwrite into such a folio takes 8-15 µs against 4 µs for a file
 * written in 4 KiB pages (measured with plain pwrite, no daemon), and the folio sizes a populate gets vary with
 * memory: two backends on files of their own measured the luck of their files' folios as much as themselves
 * (write 4 KiB at depth 16: one run ours 44k/s beside C's 84k/s at 23 and 12 µs of CPU per request).
 */
function populate(dir: string): void {
  const chunk = Buffer.alloc(1 << 20);
  for (let i = 0; i < chunk.length; i++) chunk[i] = (i * 131 + 7) & 0xff;
  const fd = fs.openSync(path.join(dir, DATA_FILE), 'w');
  for (let off = 0; off < cfg.fileSize; off += chunk.length) fs.writeSync(fd, chunk, 0, chunk.length, off);
  fs.fsyncSync(fd); // no writeback of the set-up data during the measurements
  fs.closeSync(fd);
  fs.writeFileSync(path.join(dir, STAT_FILE), 'stat me\n');
  const big = path.join(dir, BIG_DIR);
  fs.mkdirSync(big);
  for (let i = 0; i < BIG_DIR_ENTRIES; i++) fs.closeSync(fs.openSync(path.join(big, `entry-${String(i).padStart(5, '0')}`), 'w'));
}

/**
 * Writes back the data file's dirty pages and waits for them, before every measurement: a write row must not
 * be measured while the pages the backend before it dirtied are being written back.
 */
function flushData(dir: string): void {
  const fd = fs.openSync(path.join(dir, DATA_FILE), 'r+');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

interface Sample {
  opsPerSec: number; mbPerSec: number; p50Us: number; p99Us: number; rssKb: number; requests: number; ops: number;
  reqPerSec: number; gc: GcEvent[]; gcPrevAfterMb: number;
  /** Daemon CPU seconds per million requests over the whole run (warm-up included, on both sides). */
  cpuPerMReq: number;
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!;
}

async function connect(b: Backend): Promise<FuseClient> {
  const fc = await FuseClient.connect(b.socket, { queues: cfg.queues, depth: cfg.clientDepth, timeoutMs: 30000 });
  await fc.init();
  return fc;
}

async function measure(b: Backend, fc: FuseClient, w: Workload): Promise<Sample> {
  const ctx = await w.setup(fc, cfg.fileSize);
  const gc0 = b.gc.length;
  const cpu0 = b.cpuSeconds();
  const sent0 = fc.sent;
  const r = await runFor(fc, w, ctx, cfg.warmupMs, cfg.durationMs, cfg.minOps);
  const cpuPerMReq = ((b.cpuSeconds() - cpu0) / Math.max(1, fc.sent - sent0)) * 1e6;
  await sleep(20); // trace-gc lines of the window reach us through a pipe
  const gc = b.gc.slice(gc0);
  const rssKb = b.rssKb();
  await ctx.teardown();
  const sorted = r.lat.slice().sort();
  return {
    opsPerSec: r.ops / r.secs, mbPerSec: (r.ops * w.bytesPerOp) / r.secs / 1e6,
    p50Us: percentile(sorted, 0.5) * 1000, p99Us: percentile(sorted, 0.99) * 1000, rssKb, requests: r.requests,
    ops: r.ops, reqPerSec: r.requests / r.secs, gc, gcPrevAfterMb: gc0 > 0 ? b.gc[gc0 - 1]!.afterMb : 0, cpuPerMReq,
  };
}

function machine(dir: string): Record<string, string> {
  const cpuinfo = fs.readFileSync('/proc/cpuinfo', 'utf8');
  const model = /model name\s*:\s*(.*)/.exec(cpuinfo)?.[1] ?? 'unknown';
  const mhz = /cpu MHz\s*:\s*(.*)/.exec(cpuinfo)?.[1];
  const v = spawnSync(C_VIRTIOFSD, ['-V'], { encoding: 'utf8' }).stdout.split('\n')[0] ?? '';
  const fsType = spawnSync('stat', ['-f', '-c', '%T', dir], { encoding: 'utf8' }).stdout.trim();
  return {
    cpu: `${model}${mhz ? ` (${Number(mhz).toFixed(0)} MHz)` : ''}`,
    cores: String(os.cpus().length),
    memory: `${(os.totalmem() / 2 ** 30).toFixed(1)} GiB`,
    kernel: `${os.type()} ${os.release()}`,
    node: process.version,
    cVirtiofsd: v.trim(),
    sharedDirFs: fsType,
  };
}

async function main(): Promise<void> {
  if (!fs.existsSync(C_VIRTIOFSD)) throw new Error(`${C_VIRTIOFSD} is not installed: the comparison needs it`);
  const t0 = Date.now();
  const loadBefore = os.loadavg()[0]!;
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'vfsd-bench-'));
  const dir = path.join(work, 'share');
  const list = workloads();
  const labels = [...OURS_VARIANTS.map((v) => v.label), 'C'];
  const samples = new Map<string, Map<string, Sample[]>>(list.map((w) => [w.name, new Map(labels.map((l) => [l, []]))]));
  /** Per backend label: CPU % while connected and idle, private KiB at the end of a repetition. */
  const idleCpu = new Map<string, number[]>(labels.map((l) => [l, []]));
  const privKb = new Map<string, number[]>(labels.map((l) => [l, []]));
  const commands = new Map<string, string>();
  let bareNodeKb = -1;
  let floors: IoFloor[] = [];
  let rtt: RttFloor;
  let rttLoop: RttFloor;
  let daxRows: DaxRow[] = [];
  let soak: GcSoak | null = null;
  try {
    log(`config: ${JSON.stringify(cfg)}; work dir ${work}`);
    fs.mkdirSync(dir);
    populate(dir);
    spawnSync('sync');
    log(`populated in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    const fd = Math.min(1000, Math.max(300, cfg.durationMs));
    const f = path.join(dir, DATA_FILE);
    floors = [
      ioFloor(f, cfg.fileSize, 4096, 'rand', false, fd), ioFloor(f, cfg.fileSize, 128 * 1024, 'seq', false, fd),
      ioFloor(f, cfg.fileSize, 4096, 'rand', true, fd), ioFloor(f, cfg.fileSize, 128 * 1024, 'seq', true, fd),
    ];
    rtt = await eventfdRoundTrip(fd);
    rttLoop = await eventfdRoundTrip(fd, 'loop');
    log(`floors: ${floors.map((x) => `${x.name} ${x.mbPerSec.toFixed(0)} MB/s`).join(', ')}; eventfd RTT ` +
      `${rtt.usPerRoundTrip.toFixed(1)} µs, through a Node loop ${rttLoop.usPerRoundTrip.toFixed(1)} µs`);
    bareNodeKb = await bareNodePrivateKb();

    for (let rep = 0; rep < (daxOnly ? 0 : cfg.reps); rep++) {
      const started: Array<[string, Backend]> = [];
      const pairs: Array<[string, Backend, FuseClient]> = [];
      try {
        for (const v of OURS_VARIANTS) {
          started.push([v.label, await startOurs(work, dir, v.extra, undefined, v.label, v.runtime)]);
        }
        started.push(['C', await startC(work, dir)]);
        for (const [l, b] of started) {
          commands.set(l, b.command);
          pairs.push([l, b, await connect(b)]);
        }
        if (rep % 2 === 1) pairs.reverse();
        for (const w of list) {
          for (const [l, b, fc] of pairs) {
            flushData(dir);
            samples.get(w.name)!.get(l)!.push(await measure(b, fc, w));
          }
          const last = (l: string): string => `${samples.get(w.name)!.get(l)!.at(-1)!.opsPerSec.toFixed(0)}/s`;
          log(`rep ${rep + 1}/${cfg.reps} ${w.name}: ${labels.map((l) => `${l} ${last(l)}`).join(', ')}`);
        }
        // Connected, no request coming: what each daemon burns (a polling daemon must stop spinning).
        const cpu0 = pairs.map(([, b]) => b.cpuSeconds());
        await sleep(IDLE_MS);
        pairs.forEach(([l, b], i) => {
          idleCpu.get(l)!.push(((b.cpuSeconds() - cpu0[i]!) / (IDLE_MS / 1000)) * 100);
          privKb.get(l)!.push(b.privateKb());
        });
      } finally {
        for (const [, , fc] of pairs) fc.close();
        for (const [, b] of started) await b.stop();
      }
    }
    if (!daxOnly) soak = await gcSoak(work, dir, quick ? 200_000 : 1_000_000, cfg.fileSize, log);
    daxRows = await daxBench(work, dir, cfg, floors, log);
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }

  const floorRate = 1e6 / rtt.usPerRoundTrip;
  const floorOf = (name?: string): IoFloor | undefined => floors.find((x) => x.name.startsWith(name ?? '\0'));
  const side = (w: Workload, ss: Sample[], isOurs: boolean): Side => {
    const mb = median(ss.map((s) => s.mbPerSec));
    const fl = floorOf(w.floor);
    const s: Side = {
      opsPerSec: median(ss.map((x) => x.opsPerSec)), mbPerSec: mb,
      p50Us: median(ss.map((x) => x.p50Us)), p99Us: median(ss.map((x) => x.p99Us)),
      floorFraction: w.kind === 'data' && fl ? mb / fl.mbPerSec : median(ss.map((x) => x.reqPerSec)) / floorRate,
      rssMb: median(ss.map((x) => x.rssKb)) / 1024,
      requestsPerOp: ss.reduce((a, x) => a + x.requests, 0) / Math.max(1, ss.reduce((a, x) => a + x.ops, 0)),
      cpuPerMReq: median(ss.map((x) => x.cpuPerMReq)),
    };
    if (isOurs) {
      let alloc = 0;
      let scav = 0;
      let mc = 0;
      let pause = 0;
      for (const x of ss) {
        let prev = x.gcPrevAfterMb;
        for (const e of x.gc) {
          if (prev > 0) alloc += Math.max(0, e.beforeMb - prev);
          prev = e.afterMb;
          pause += e.pauseMs;
          if (isMinorGc(e)) scav++;
          else mc++;
        }
      }
      const reqs = ss.reduce((a, x) => a + x.requests, 0);
      s.scavenges = scav / ss.length;
      s.markCompacts = mc / ss.length;
      s.gcPauseMs = pause / ss.length;
      s.allocBytesPerRequest = reqs > 0 ? (alloc * 1024 * 1024) / reqs : 0;
    }
    return s;
  };
  // Each variant of ours beside the same C samples; a row's name carries the options beyond the common ones.
  const rows: Row[] = OURS_VARIANTS.flatMap((v) => list.map((w) => {
    const s = samples.get(w.name)!;
    const opts = [...v.extra, ...(v.runtime === 'node' ? [] : [`under ${v.runtime}`])];
    const name = opts.length > 0 ? `${w.name} [${opts.join(' ')}]` : w.name;
    return { name, kind: w.kind, ours: side(w, s.get(v.label)!, true), c: side(w, s.get('C')!, false) };
  }));
  const fmtKb = (kb: number): string => (kb < 0 ? '?' : `${(kb / 1024).toFixed(1)} MiB`);
  const processLines = [
    ...labels.map((l) => `${l}: \`${commands.get(l) ?? '?'}\`; idle (connected, no requests) CPU ` +
      `${median(idleCpu.get(l)!).toFixed(2)}%; private memory ${fmtKb(median(privKb.get(l)!))}`),
    `bare node (\`node -e "setInterval(() => {}, 1e6)"\`): private memory ${fmtKb(bareNodeKb)}`,
  ];
  const soakLine = soak === null ? 'not measured' : gcSoakLine(soak);

  const table = textTable(rows);
  const mach = machine(os.tmpdir());
  // Other processes compete for the same cores: say how busy the machine was.
  mach.load = `load average (1 min) ${loadBefore.toFixed(2)} at start, ${os.loadavg()[0]!.toFixed(2)} at end`;
  const floorLines = [
    ...floors.map((x) => `${x.name}: ${Math.round(x.opsPerSec).toLocaleString('en-US')} ops/s, ${x.mbPerSec.toFixed(0)} MB/s`),
    `eventfd round trip (two processes in epoll_wait): ${rtt.usPerRoundTrip.toFixed(1)} µs mean, p50 ${rtt.p50Us.toFixed(1)} µs, p99 ${rtt.p99Us.toFixed(1)} µs => ${Math.round(floorRate).toLocaleString('en-US')} round trips/s; answering process's CPU ${rtt.peerCpuUs.toFixed(1)} µs per round trip`,
    `eventfd round trip, the answering process woken through its Node event loop (as our daemon is by a kick): ` +
      `${rttLoop.usPerRoundTrip.toFixed(1)} µs mean, p50 ${rttLoop.p50Us.toFixed(1)} µs, p99 ${rttLoop.p99Us.toFixed(1)} µs; ` +
      `answering process's CPU ${rttLoop.peerCpuUs.toFixed(1)} µs per round trip`,
  ];
  console.log(`\nvirtiofsd-ts vs C virtiofsd (${quick ? 'quick' : 'full'} run: ${cfg.reps} repetitions x ${cfg.durationMs} ms, file ${cfg.fileSize >> 20} MiB, medians)\n`);
  if (!daxOnly) {
    console.log(table);
    console.log('\nprocesses (rows named [opts] ran ours with those options added):\n  ' + processLines.join('\n  '));
    console.log(`\nmajor GCs on the request path: ${soakLine}`);
  }
  console.log(`\n${daxTable(daxRows)}`);
  console.log('\nfloors:\n  ' + floorLines.join('\n  '));
  console.log(`\n${mach.cpu}, ${mach.cores} cores, ${mach.memory}, ${mach.kernel}, node ${mach.node}; total ${((Date.now() - t0) / 1000).toFixed(0)} s`);

  if (save && !daxOnly) {
    fs.mkdirSync(outDir, { recursive: true });
    const date = new Date().toISOString().slice(0, 10);
    const base = path.join(outDir, `${date}${quick ? '-quick' : ''}`);
    const processes = Object.fromEntries(labels.map((l) => [l, {
      command: commands.get(l), idleCpuPercent: median(idleCpu.get(l)!), privateKb: median(privKb.get(l)!),
    }]));
    const result = {
      date: new Date().toISOString(), machine: mach, config: cfg, floors, eventfdRoundTrip: rtt, eventfdRoundTripLoop: rttLoop, rows, processes, bareNodeKb,
      dax: daxRows, gcSoak: soak,
    };
    fs.writeFileSync(`${base}.json`, JSON.stringify(result, null, 2) + '\n');
    fs.writeFileSync(`${base}.svg`, svgChart(rows, `virtiofsd-ts vs C virtiofsd — ops/s (${date})`));
    const md = markdown(date, mach, rows, floorLines, processLines, soakLine, path.basename(`${base}.svg`));
    fs.writeFileSync(`${base}.md`, md);
    log(`wrote ${base}.{json,svg,md}`);
  }
}

/** Private memory of a node process that does nothing (what ours costs beyond the runtime). */
async function bareNodePrivateKb(): Promise<number> {
  const { spawn } = await import('node:child_process');
  const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1e6)'], { stdio: 'ignore' });
  await sleep(500);
  const kb = privateMemoryKb(child.pid!);
  child.kill('SIGKILL');
  return kb;
}

function markdown(date: string, mach: Record<string, string>, rows: Row[], floorLines: string[], processLines: string[],
  soakLine: string, svg: string): string {
  return `# Benchmark ${date}: virtiofsd-ts beside the C virtiofsd

Produced by \`npm run bench\` (benchmarks/run.ts). Both backends are separate processes on their own socket, serving
the same temp directory (one measured at a time; its data file is flushed before each measurement), driven by
the userspace virtio-fs frontend \`host/frontend/fuse-client.ts\` (one request queue, EVENT_IDX, fixed descriptor
chains). The command lines are under "Processes"; rows named \`[--poll-us=N]\` ran ours with that option added
(adaptive polling), beside the same C samples.
C: \`${mach.cVirtiofsd}\` (default thread pool: none, the queue thread serves requests). Per repetition every
backend is started fresh and each workload runs on each, alternating the order. ${cfg.reps} repetitions x ${cfg.durationMs} ms (after ${cfg.warmupMs} ms warm-up); the table shows
medians. Data file ${cfg.fileSize >> 20} MiB, in the page cache.

## Machine

| | |
| --- | --- |
| CPU | ${mach.cpu} |
| cores | ${mach.cores} |
| memory | ${mach.memory} |
| kernel | ${mach.kernel} |
| Node.js | ${mach.node} |
| shared dirs on | ${mach.sharedDirFs} |
| C virtiofsd | ${mach.cVirtiofsd} |
| during the run | ${mach.load} |

## Results

${markdownTable(rows)}

![ops/s, ours vs C](${svg})

Columns: ops/s and MB/s are medians over repetitions; p50/p99 are per-operation latencies (an operation is one
request, except CREATE+RELEASE+UNLINK = 3 requests + a FORGET, and a READDIRPLUS listing = OPENDIR + the
READDIRPLUS calls + RELEASEDIR + BATCH_FORGETs). "floor": data rows, MB/s over page-cache pread/pwrite of the same
block size and pattern; metadata rows, requests/s over the eventfd round-trip rate below (one request needs at
least a kick and a call). GC/run: scavenges / mark-compacts in our daemon during one run of the workload (from
\`--trace-gc\`); B/req: bytes our daemon allocated on the JS heap per request, estimated from the heap sizes the
GC lines report (sum of growth between collections / requests; a workload without a collection shows 0). RSS:
VmRSS of each daemon at the end of the workload. CPU s/1M req: daemon CPU seconds (all threads, /proc/PID/stat,
10 ms ticks) over the workload's run, warm-up included, per million requests.

## Processes

${processLines.map((l) => `- ${l}`).join('\n')}

The machine is shared: figures are noisy; compare rows of one run, not runs.

## Major GCs on the request path

${soakLine} (benchmarks/gc-soak.ts: a fresh daemon, its \`--trace-gc\` lines counted while it serves).

## Floors (same run)

${floorLines.map((l) => `- ${l}`).join('\n')}

## What our request path allocates

The B/req column is measured (JS heap growth between collections in the daemon, per request). Where it comes from
(read from the code): every request builds an \`Args\` object and a \`ctx\` object in \`FuseServer.serveCurrent\`
(host/fuse/server.ts), and its opcode's \`decode\` returns a fresh args object (host/fuse/ops/*.ts). Names
(LOOKUP, CREATE, UNLINK...) become JS strings, and LOOKUP/CREATE/READDIRPLUS return entry objects from the
passthrough filesystem; a READDIRPLUS listing adds an inode-table entry (an \`Inode\` object) per new directory
entry, hence the large per-request figure for 64 KiB listings (the entries' names go to the kernel as bytes, no
string each). READ/WRITE data never
passes through the JS heap (preadv/pwritev straight into guest memory), so data rows allocate only the
per-request objects. The Wasm core allocates nothing per request. A workload that triggered no collection in its
window shows 0 B/req (the estimate only sees heap growth up to the last collection), not a proof of zero.
`;
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});

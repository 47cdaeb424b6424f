/**
 * Soak: the daemon (`dist/host/cli.js`, a child process) under a steady mixed load for a while, sampling its RSS
 * and open fds. Several request queues, many requests in flight, every common opcode, through FuseClient.
 *
 *   npm run soak -- [--seconds N] [--queues Q] [--depth D] [--workers W] [--interval S] [--sandbox MODE]
 *                   [--heap-mib M]   (the daemon's V8 old-space cap: live-object leaks then fail loudly)
 *                   [--live-heap]    (a full GC before each heap sample: heapUsed is then the live heap)
 *                   [--malloc-arena-max N] [--node-flags "--max-semi-space-size=1 ..."]   (the daemon's)
 *
 * Each row splits the daemon's RSS (/proc/PID/status: anon = V8 heap + malloc + stacks; shmem = the guest RAM
 * pages it touched) and its V8 heap (process.memoryUsage() and the new/old spaces, reported from inside the
 * daemon by a probe loaded with --import; -1 when a sandbox hides the probe's file).
 *
 * Why RSS rises during a run (measured 2026-12-01, see the final line's breakdown): the guest RAM pages the daemon
 * touches (shmem, bounded by the client's guest RAM, ~16 MiB), the core's Wasm scratch pages touched the first
 * time (bounded by `external`), and V8 sizing its heap to the allocation rate: the young generation grows from
 * 1 to 8-16 MiB semi-spaces and the old generation holds garbage until the next major GC. Not a leak: with
 * --live-heap the heap after a full GC stays flat (7.5 -> 8.0 MiB over 90 s), a 240 s run plateaus, other
 * anonymous memory does not move with MALLOC_ARENA_MAX=2, and --heap-mib 20 (which also shrinks the
 * semi-spaces) keeps RSS flat.
 *
 * Defaults: 120 s, 4 queues, 32 in flight per queue, 64 workers, a sample every 5 s, --sandbox=none (the numbers
 * are the daemon's own process; with namespace the helper's child is measured). Prints a table and a verdict: fds
 * flat (within the band the workers' own open files and lookups explain, and back to the start value at the end)
 * and RSS growth after the warm-up (the first quarter of the run, while V8 sizes its heap) under 32 MiB; the RSS
 * slope over the second half is printed too. Exit code 1 when either fails. Not part of `npm test`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { FuseClient, FuseError } from '../host/frontend/fuse-client.js';
import { FUSE_ROOT_ID } from '../host/fuse/protocol.js';
import { native } from '../host/native-loader.js';

const c = native.constants;
const CLI = fileURLToPath(new URL('../host/cli.js', import.meta.url));

const { values: a } = parseArgs({
  options: {
    seconds: { type: 'string', default: '120' },
    queues: { type: 'string', default: '4' },
    depth: { type: 'string', default: '32' },
    workers: { type: 'string', default: '64' },
    interval: { type: 'string', default: '5' },
    sandbox: { type: 'string', default: 'none' },
    'heap-mib': { type: 'string' },
    'malloc-arena-max': { type: 'string' },
    'node-flags': { type: 'string', default: '' },
    'live-heap': { type: 'boolean', default: false },
  },
});
const SECONDS = Number(a.seconds);
const QUEUES = Number(a.queues);
const DEPTH = Number(a.depth);
const WORKERS = Number(a.workers);
const INTERVAL = Number(a.interval);
const RSS_BOUND_MIB = 32;
const LIVE_HEAP_BOUND_MIB = 4;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Loaded into the daemon with --import: every second it writes process.memoryUsage() and V8's old-space and
 * code-space sizes to $SOAK_PROBE_FILE (only the daemon's own heap can say which part of RSS is JS objects).
 */
const PROBE = `import { writeFileSync } from 'node:fs';
import v8 from 'node:v8';
const file = process.env.SOAK_PROBE_FILE;
if (file) {
  const tick = () => {
    if (typeof globalThis.gc === 'function') globalThis.gc(); // --live-heap: heapUsed is then what is alive
    const m = process.memoryUsage();
    const spaces = Object.fromEntries(v8.getHeapSpaceStatistics().map((s) => [s.space_name, s.space_size]));
    try { writeFileSync(file, JSON.stringify({ ...m, spaces })); } catch {}
  };
  tick();
  setInterval(tick, 1000).unref();
}`;

interface Usage {
  fds: number;
  /** VmRSS and its parts from /proc/PID/status: anonymous (heap, malloc, stacks), file, shmem (guest RAM). */
  rssKiB: number;
  anonKiB: number;
  fileKiB: number;
  shmemKiB: number;
  threads: number;
  /** From the probe in the daemon (MiB); -1 when it could not report (a sandbox that hides the file). */
  heapUsed: number;
  heapTotal: number;
  /** heapTotal's young generation (semi-spaces) and old generation (old + code + large object spaces). */
  newSpace: number;
  oldSpace: number;
  external: number;
  arrayBuffers: number;
}

function usage(pid: number, probeFile: string): Usage {
  const fds = fs.readdirSync(`/proc/${pid}/fd`).length;
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (key: string): number => Number(new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? -1);
  let p = { heapUsed: -1, heapTotal: -1, newSpace: -1, oldSpace: -1, external: -1, arrayBuffers: -1 };
  try {
    const j = JSON.parse(fs.readFileSync(probeFile, 'utf8')) as typeof p & { spaces: Record<string, number> };
    const mib = (n: number): number => n / 1048576;
    const sp = (k: string): number => j.spaces[k] ?? 0;
    p = { heapUsed: mib(j.heapUsed), heapTotal: mib(j.heapTotal), newSpace: mib(sp('new_space')),
      oldSpace: mib(sp('old_space') + sp('code_space') + sp('large_object_space') + sp('code_large_object_space')),
      external: mib(j.external), arrayBuffers: mib(j.arrayBuffers) };
  } catch { /* not written yet */ }
  return { fds, rssKiB: kib('VmRSS'), anonKiB: kib('RssAnon'), fileKiB: kib('RssFile'), shmemKiB: kib('RssShmem'),
    threads: kib('Threads'), ...p };
}

async function startDaemon(dir: string, socket: string, probeFile: string): Promise<{ child: ChildProcess; pid: number }> {
  const heap = a['heap-mib'] !== undefined ? [`--max-old-space-size=${Number(a['heap-mib'])}`] : [];
  const flags = a['node-flags']!.split(/\s+/).filter((f) => f !== '');
  if (a['live-heap']) flags.push('--expose-gc');
  const env: NodeJS.ProcessEnv = { ...process.env, SOAK_PROBE_FILE: probeFile };
  if (a['malloc-arena-max'] !== undefined) env.MALLOC_ARENA_MAX = a['malloc-arena-max'];
  const child = spawn(process.execPath, [...heap, ...flags, `--import=data:text/javascript,${encodeURIComponent(PROBE)}`, CLI, `--socket-path=${socket}`, `--shared-dir=${dir}`, '--cache=never',
    '--log-level=error', `--num-request-queues=${QUEUES}`, `--sandbox=${a.sandbox}`], { stdio: ['ignore', 'inherit', 'inherit'], env });
  const t0 = Date.now();
  while (!fs.existsSync(socket)) {
    if (child.exitCode !== null || Date.now() - t0 > 10000) throw new Error('daemon did not start');
    await sleep(20);
  }
  let pid = child.pid!;
  if (a.sandbox === 'namespace') {
    pid = Number(fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/)[0]);
  }
  return { child, pid };
}

interface Counters { ops: number; errors: Map<string, number> }

/** One worker: its own file, a loop of mixed operations until `deadline`. */
async function worker(fc: FuseClient, id: number, deadline: number, n: Counters): Promise<void> {
  const data = randomBytes(64 * 1024);
  const name = `w${id}`;
  const dir = await fc.mkdir(FUSE_ROOT_ID, `${name}.d`, 0o755).catch(() => fc.lookup(FUSE_ROOT_ID, `${name}.d`));
  let round = 0;
  while (Date.now() < deadline) {
    round++;
    try {
      const cr = await fc.create(dir.nodeid, `f${round % 8}`, c.O_RDWR | c.O_TRUNC, 0o644);
      const size = 4096 * (1 + (round % 16));
      await Promise.all([
        fc.write(cr.entry.nodeid, cr.fh, 0, data.subarray(0, size)),
        fc.getattr(dir.nodeid),
        fc.lookup(FUSE_ROOT_ID, `${name}.d`).then((e) => fc.forget(e.nodeid, 1)),
      ]);
      const back = await fc.read(cr.entry.nodeid, cr.fh, 0, size);
      if (back.length !== size) throw new Error(`short read ${back.length}/${size}`);
      if (round % 4 === 0) await fc.fsync(cr.entry.nodeid, cr.fh, true);
      await fc.flush(cr.entry.nodeid, cr.fh);
      await fc.release(cr.entry.nodeid, cr.fh);
      if (round % 3 === 0) await fc.rename(dir.nodeid, `f${round % 8}`, dir.nodeid, `g${round % 8}`);
      if (round % 5 === 0) {
        const od = await fc.opendir(dir.nodeid);
        await fc.readdirplus(dir.nodeid, od.fh, 0).then((es) => {
          const forget = es.filter((e) => e.entry.nodeid !== 0 && e.name !== '.' && e.name !== '..');
          return forget.length ? fc.batchForget(forget.map((e) => ({ nodeid: e.entry.nodeid, nlookup: 1 }))) : undefined;
        });
        await fc.releasedir(dir.nodeid, od.fh);
      }
      if (round % 7 === 0) await fc.unlink(dir.nodeid, `g${round % 8}`).catch(() => undefined);
      await fc.forget(cr.entry.nodeid, 1);
      n.ops += 8;
    } catch (e) {
      const key = e instanceof FuseError ? e.message : (e as Error).message;
      n.errors.set(key, (n.errors.get(key) ?? 0) + 1);
    }
  }
}

async function main(): Promise<number> {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'soak-'));
  const dir = path.join(tmp, 'share');
  fs.mkdirSync(dir);
  const socket = path.join(tmp, 'soak.sock');
  const probeFile = path.join(tmp, 'probe.json');
  const { child, pid } = await startDaemon(dir, socket, probeFile);
  daemon = child;
  // The socket file appears at bind(), a moment before listen(): ECONNREFUSED until then.
  let fc: FuseClient | undefined;
  for (let tries = 0; fc === undefined; tries++) {
    try {
      fc = await FuseClient.connect(socket, { queues: QUEUES, depth: DEPTH, maxPayload: 64 * 1024, timeoutMs: 30000 });
    } catch (e) {
      if (tries >= 100) throw e;
      await sleep(50);
    }
  }
  await fc.init();
  console.log(`soak: ${SECONDS} s, ${QUEUES} request queues x ${DEPTH} in flight, ${WORKERS} workers, daemon pid ${pid}`
    + ` (--sandbox=${a.sandbox}${a['heap-mib'] ? `, --max-old-space-size=${a['heap-mib']}` : ''}`
    + `${a['malloc-arena-max'] ? `, MALLOC_ARENA_MAX=${a['malloc-arena-max']}` : ''}${a['node-flags'] ? `, ${a['node-flags']}` : ''})`);
  const n: Counters = { ops: 0, errors: new Map() };
  const t0 = Date.now();
  const deadline = t0 + SECONDS * 1000;
  const work = Promise.all(Array.from({ length: WORKERS }, (_, i) => worker(fc, i, deadline, n)));
  const rows: Array<Usage & { t: number; ops: number; inFlight: number }> = [];
  // RSS = anon (V8 heap + malloc + stacks) + file (code) + shmem (the guest RAM memfd pages the daemon touched).
  const cols: Array<[string, number]> = [['t (s)', 6], ['fds', 5], ['RSS', 7], ['anon', 7], ['shmem', 7], ['heapUsed', 9],
    ['heapTotal', 9], ['new', 6], ['old', 6], ['external', 9], ['arrayBuf', 9], ['thr', 4], ['ops/s', 7], ['in flight', 9]];
  console.log(`${cols.map(([h, w]) => h.padStart(w)).join(' ')}   (MiB)`);
  let lastOps = 0;
  let lastT = t0;
  let done = false;
  void work.then(() => { done = true; });
  const mibK = (k: number): string => (k / 1024).toFixed(1);
  while (!done) {
    await Promise.race([sleep(INTERVAL * 1000), work]);
    const now = Date.now();
    const u = usage(pid, probeFile);
    const row = { ...u, t: (now - t0) / 1000, ops: n.ops, inFlight: fc.inFlight };
    rows.push(row);
    const cells = [row.t.toFixed(0), String(row.fds), mibK(row.rssKiB), mibK(row.anonKiB), mibK(row.shmemKiB),
      row.heapUsed.toFixed(1), row.heapTotal.toFixed(1), row.newSpace.toFixed(1), row.oldSpace.toFixed(1), row.external.toFixed(1), row.arrayBuffers.toFixed(1),
      String(row.threads), String(Math.round((n.ops - lastOps) / ((now - lastT) / 1000))), String(row.inFlight)];
    console.log(cells.map((c2, i) => c2.padStart(cols[i]![1])).join(' '));
    lastOps = n.ops;
    lastT = now;
  }
  await sleep(200);
  const end = usage(pid, probeFile);
  fc.close();
  child.kill('SIGTERM');
  fs.rmSync(tmp, { recursive: true, force: true });

  const first = rows[0]!;
  const warm = rows.find((r) => r.t >= SECONDS / 4) ?? first;
  const mid = rows.find((r) => r.t >= SECONDS / 2) ?? first;
  const last = rows[rows.length - 1]!;
  const slope = last.t > mid.t ? ((last.rssKiB - mid.rssKiB) / 1024) / ((last.t - mid.t) / 60) : 0;
  const peakRss = Math.max(...rows.filter((r) => r.t >= warm.t).map((r) => r.rssKiB));
  const fdRange = [Math.min(...rows.map((r) => r.fds)), Math.max(...rows.map((r) => r.fds))];
  // Workers hold at most one open file, one open dir and a few lookups each: the fd count moves inside that band.
  const fdBand = WORKERS * 4;
  const fdsFlat = fdRange[1]! - fdRange[0]! <= fdBand && end.fds <= first.fds + fdBand;
  const rssGrowthMiB = (peakRss - warm.rssKiB) / 1024;
  const rssFlat = rssGrowthMiB < RSS_BOUND_MIB;
  // Where the growth after warm-up went: V8's reserved heap, guest RAM pages, everything else anonymous.
  const d = (f: (r: Usage) => number): string => { const x = f(last) - f(warm); return `${x >= 0 ? '+' : ''}${x.toFixed(1)}`; };
  const growthLine = `RSS ${d((r) => r.rssKiB / 1024)} MiB from ${warm.t.toFixed(0)} s to ${last.t.toFixed(0)} s = V8 heap ` +
    `reserved (heapTotal) ${d((r) => r.heapTotal)} (new space ${d((r) => r.newSpace)}, old ${d((r) => r.oldSpace)}) + guest RAM ` +
    `pages (shmem) ${d((r) => r.shmemKiB / 1024)} + other anonymous (malloc, stacks) ${d((r) => r.anonKiB / 1024 - r.heapTotal)}` +
    ` + file ${d((r) => r.fileKiB / 1024)}; heapUsed ${d((r) => r.heapUsed)}`;
  console.log(`\n${n.ops} operations; errors: ${n.errors.size ? JSON.stringify(Object.fromEntries(n.errors)) : 'none'}`);
  console.log(`fds: ${fdRange[0]}..${fdRange[1]} during the run, ${end.fds} at the end (band ${fdBand}): ${fdsFlat ? 'flat' : 'GREW'}`);
  console.log(`RSS: ${(first.rssKiB / 1024).toFixed(1)} MiB at the first sample, ${(warm.rssKiB / 1024).toFixed(1)} MiB after`
    + ` warm-up (${warm.t.toFixed(0)} s), peak after it ${(peakRss / 1024).toFixed(1)} MiB (+${rssGrowthMiB.toFixed(1)} MiB,`
    + ` bound ${RSS_BOUND_MIB}): ${rssFlat ? 'flat' : 'GREW'}; second-half slope ${slope.toFixed(1)} MiB/min`);
  if (last.heapTotal >= 0) console.log(growthLine);
  // With --live-heap every heapUsed is measured right after a full GC: objects kept alive show up there.
  let liveFlat = true;
  if (a['live-heap'] && last.heapUsed >= 0) {
    const liveGrowth = last.heapUsed - warm.heapUsed;
    liveFlat = liveGrowth < LIVE_HEAP_BOUND_MIB;
    console.log(`live heap (after a full GC): ${warm.heapUsed.toFixed(1)} MiB after warm-up, ${last.heapUsed.toFixed(1)} MiB ` +
      `at the end (bound +${LIVE_HEAP_BOUND_MIB}): ${liveFlat ? 'flat' : 'GREW'}`);
  }
  return fdsFlat && rssFlat && liveFlat && n.errors.size === 0 ? 0 : 1;
}

/** The daemon, killed when main fails (else its process handle keeps this one alive). */
let daemon: ChildProcess | undefined;

main().then((code) => { process.exitCode = code; }, (e) => {
  console.error(e);
  daemon?.kill('SIGTERM');
  process.exitCode = 1;
});

/**
 * Soak: the daemon (`dist/host/cli.js`, a child process) under a steady mixed load for a while, sampling its RSS
 * and open fds. Several request queues, many requests in flight, every common opcode, through FuseClient.
 *
 *   npm run soak -- [--seconds N] [--queues Q] [--depth D] [--workers W] [--interval S] [--sandbox MODE]
 *                   [--heap-mib M]   (the daemon's V8 old-space cap: live-object leaks then fail loudly)
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
  },
});
const SECONDS = Number(a.seconds);
const QUEUES = Number(a.queues);
const DEPTH = Number(a.depth);
const WORKERS = Number(a.workers);
const INTERVAL = Number(a.interval);
const RSS_BOUND_MIB = 32;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function usage(pid: number): { fds: number; rssKiB: number } {
  const fds = fs.readdirSync(`/proc/${pid}/fd`).length;
  const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return { fds, rssKiB: m ? Number(m[1]) : -1 };
}

async function startDaemon(dir: string, socket: string): Promise<{ child: ChildProcess; pid: number }> {
  const heap = a['heap-mib'] !== undefined ? [`--max-old-space-size=${Number(a['heap-mib'])}`] : [];
  const child = spawn(process.execPath, [...heap, CLI, `--socket-path=${socket}`, `--shared-dir=${dir}`, '--cache=never',
    '--log-level=error', `--num-request-queues=${QUEUES}`, `--sandbox=${a.sandbox}`], { stdio: ['ignore', 'inherit', 'inherit'] });
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
  const { child, pid } = await startDaemon(dir, socket);
  const fc = await FuseClient.connect(socket, { queues: QUEUES, depth: DEPTH, maxPayload: 64 * 1024, timeoutMs: 30000 });
  await fc.init();
  console.log(`soak: ${SECONDS} s, ${QUEUES} request queues x ${DEPTH} in flight, ${WORKERS} workers, daemon pid ${pid}`
    + ` (--sandbox=${a.sandbox})`);
  const n: Counters = { ops: 0, errors: new Map() };
  const t0 = Date.now();
  const deadline = t0 + SECONDS * 1000;
  const work = Promise.all(Array.from({ length: WORKERS }, (_, i) => worker(fc, i, deadline, n)));
  const rows: Array<{ t: number; fds: number; rssKiB: number; ops: number; inFlight: number }> = [];
  const header = `${'t (s)'.padStart(6)} ${'fds'.padStart(5)} ${'RSS (MiB)'.padStart(10)} ${'ops/s'.padStart(8)} ${'in flight'.padStart(10)}`;
  console.log(header);
  let lastOps = 0;
  let lastT = t0;
  let done = false;
  void work.then(() => { done = true; });
  while (!done) {
    await Promise.race([sleep(INTERVAL * 1000), work]);
    const now = Date.now();
    const u = usage(pid);
    const row = { t: (now - t0) / 1000, fds: u.fds, rssKiB: u.rssKiB, ops: n.ops, inFlight: fc.inFlight };
    rows.push(row);
    console.log(`${row.t.toFixed(0).padStart(6)} ${String(row.fds).padStart(5)} ${(row.rssKiB / 1024).toFixed(1).padStart(10)} `
      + `${Math.round((n.ops - lastOps) / ((now - lastT) / 1000)).toString().padStart(8)} ${String(row.inFlight).padStart(10)}`);
    lastOps = n.ops;
    lastT = now;
  }
  await sleep(200);
  const end = usage(pid);
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
  console.log(`\n${n.ops} operations; errors: ${n.errors.size ? JSON.stringify(Object.fromEntries(n.errors)) : 'none'}`);
  console.log(`fds: ${fdRange[0]}..${fdRange[1]} during the run, ${end.fds} at the end (band ${fdBand}): ${fdsFlat ? 'flat' : 'GREW'}`);
  console.log(`RSS: ${(first.rssKiB / 1024).toFixed(1)} MiB at the first sample, ${(warm.rssKiB / 1024).toFixed(1)} MiB after`
    + ` warm-up (${warm.t.toFixed(0)} s), peak after it ${(peakRss / 1024).toFixed(1)} MiB (+${rssGrowthMiB.toFixed(1)} MiB,`
    + ` bound ${RSS_BOUND_MIB}): ${rssFlat ? 'flat' : 'GREW'}; second-half slope ${slope.toFixed(1)} MiB/min`);
  return fdsFlat && rssFlat && n.errors.size === 0 ? 0 : 1;
}

main().then((code) => { process.exitCode = code; }, (e) => { console.error(e); process.exitCode = 1; });

/**
 * `node dist/benchmarks/syscalls.js [--cli=PATH] [--poll-us=N] [--duration=MS]`: system calls per request of our
 * daemon and of the C virtiofsd, counted by `strace -c -f -p PID` (apt-get install strace) while a workload of
 * the standalone benchmark runs through the userspace frontend. Counts, not times, are the point: strace slows
 * every call down, so the request rates it shows are not the daemons' own.
 *
 * --cli: another build's dist/host/cli.js (e.g. main's, for a before/after comparison); --poll-us: passed to ours.
 */
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FuseClient } from '../host/frontend/fuse-client.js';
import { startC, startOurs, type Backend } from './backends.js';
import { DATA_FILE, STAT_FILE, runFor, workloads } from './workloads.js';

const argv = process.argv.slice(2);
const opt = (name: string): string | undefined => argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
const cli = opt('cli');
const pollUs = Number(opt('poll-us') ?? 0);
const durationMs = Number(opt('duration') ?? 1500);
const WANTED = ['GETATTR, depth 1', 'GETATTR, depth 16', 'read 4 KiB random, depth 16'];
const FILE_SIZE = 16 << 20;

interface Count { syscall: string; calls: number }

/** The rows of `strace -c` output: calls per syscall, and the total. */
function parseStraceSummary(text: string): { total: number; rows: Count[] } {
  const rows: Count[] = [];
  let total = 0;
  for (const line of text.split('\n')) {
    const m = /^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$/.exec(line);
    if (!m) continue;
    if (m[2] === 'total') total = Number(m[1]);
    else rows.push({ syscall: m[2]!, calls: Number(m[1]) });
  }
  rows.sort((a, b) => b.calls - a.calls);
  return { total, rows };
}

async function traced(b: Backend, fc: FuseClient, name: string): Promise<string> {
  const w = workloads().find((x) => x.name === name)!;
  const ctx = await w.setup(fc, FILE_SIZE);
  await runFor(fc, w, ctx, 100, 200, 1); // warm
  const out = path.join(os.tmpdir(), `vfsd-strace-${process.pid}-${b.name}.txt`);
  const st = spawn('strace', ['-c', '-f', '-p', String(b.pid), '-o', out], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  st.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
  await new Promise((r) => setTimeout(r, 500)); // attached to every thread
  const sent0 = fc.sent;
  const r = await runFor(fc, w, ctx, 0, durationMs, 1);
  await new Promise((res) => setTimeout(res, 50)); // the last replies' calls
  const requests = fc.sent - sent0;
  const exited = new Promise((res) => st.once('exit', res));
  st.kill('SIGINT');
  await exited;
  await ctx.teardown();
  const { total, rows } = parseStraceSummary(fs.readFileSync(out, 'utf8'));
  fs.rmSync(out, { force: true });
  if (total === 0) throw new Error(`strace counted nothing: ${err}`);
  const per = (n: number): string => (n / requests).toFixed(2);
  const top = rows.slice(0, 8).map((x) => `${x.syscall} ${per(x.calls)}`).join(', ');
  void r;
  return `${b.name.padEnd(4)} ${name.padEnd(28)} ${requests.toString().padStart(7)} requests  ${per(total).padStart(6)} syscalls/request  (${top})`;
}

async function main(): Promise<void> {
  if (spawnSync('strace', ['-V']).status !== 0) throw new Error('strace is not installed (apt-get install strace)');
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'vfsd-syscalls-'));
  const lines: string[] = [];
  try {
    for (const side of ['ours', 'C'] as const) {
      const dir = path.join(work, side);
      fs.mkdirSync(dir);
      fs.writeFileSync(path.join(dir, DATA_FILE), Buffer.alloc(FILE_SIZE, 7));
      fs.writeFileSync(path.join(dir, STAT_FILE), 'stat me\n');
      const b = side === 'ours'
        ? await startOurs(work, dir, pollUs > 0 ? [`--poll-us=${pollUs}`] : [], cli ?? undefined)
        : await startC(work, dir);
      lines.push(`${side}: ${b.command}`);
      const fc = await FuseClient.connect(b.socket, { queues: 1, depth: 64, timeoutMs: 30000 });
      try {
        await fc.init();
        for (const name of WANTED) {
          const line = await traced(b, fc, name);
          console.error(line);
          lines.push(line);
        }
      } finally {
        fc.close();
        await b.stop();
      }
    }
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
  console.log(lines.join('\n'));
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});

/**
 * The two backends as child processes, each on its own socket and shared dir:
 * - ours: `node --trace-gc dist/host/cli.js --cache=never --sandbox=chroot` (GC events are read from its stdout);
 * - C: `/usr/lib/qemu/virtiofsd -o cache=none -o sandbox=chroot -o readdirplus` (it exits when its frontend leaves,
 *   so a backend lives for one connection).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

export const C_VIRTIOFSD = '/usr/lib/qemu/virtiofsd';
const CLI = fileURLToPath(new URL('../host/cli.js', import.meta.url));

export interface GcEvent { kind: string; beforeMb: number; afterMb: number; pauseMs: number }

export interface Backend {
  readonly name: 'ours' | 'C';
  readonly socket: string;
  readonly dir: string;
  readonly pid: number;
  /** GC events seen so far (ours only). */
  readonly gc: GcEvent[];
  /** VmRSS in KiB, from /proc/PID/status (0 once gone). */
  rssKb(): number;
  stop(): Promise<void>;
}

const GC_LINE = /: (Scavenge|Mark-Compact|Mark-sweep|Minor Mark-Compact|Minor Mark-Sweep)[^\d]*([\d.]+) \(([\d.]+)\) -> ([\d.]+) \(([\d.]+)\) MB, ([\d.]+)/;

function rss(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

async function waitFor(cond: () => boolean, ms: number): Promise<boolean> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) return false;
    await new Promise((r) => setTimeout(r, 5));
  }
  return true;
}

async function launch(name: 'ours' | 'C', socket: string, dir: string, cmd: string, args: string[]): Promise<Backend> {
  try { fs.unlinkSync(socket); } catch { /* none */ }
  const child: ChildProcess = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const gc: GcEvent[] = [];
  let err = '';
  let partial = '';
  child.stdout!.on('data', (d: Buffer) => {
    const lines = (partial + d.toString()).split('\n');
    partial = lines.pop()!;
    for (const l of lines) {
      const m = GC_LINE.exec(l);
      if (m) gc.push({ kind: m[1]!, beforeMb: Number(m[2]), afterMb: Number(m[4]), pauseMs: Number(m[6]) });
    }
  });
  child.stderr!.on('data', (d: Buffer) => { err = (err + d.toString()).slice(-4000); });
  const ok = await waitFor(() => fs.existsSync(socket) || child.exitCode !== null, 10000);
  if (!ok || child.exitCode !== null) {
    child.kill('SIGKILL');
    throw new Error(`${name} backend did not start: ${err}`);
  }
  const pid = child.pid!;
  return {
    name, socket, dir, pid, gc,
    rssKb: () => rss(pid),
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      // virtiofsd leaves by itself after the disconnect; ours waits for the next frontend.
      if (name === 'ours' || !(await waitFor(() => child.exitCode !== null, 500))) child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(t);
    },
  };
}

export function startOurs(workDir: string, dir: string, extraArgs: string[] = []): Promise<Backend> {
  const socket = path.join(workDir, 'ours.sock');
  return launch('ours', socket, dir, process.execPath,
    ['--trace-gc', CLI, `--socket-path=${socket}`, `--shared-dir=${dir}`, '--cache=never', '--log-level=error',
      // Like the C side's sandbox=chroot; it also keeps the daemon in this pid (namespace mode re-executes).
      '--sandbox=chroot', ...extraArgs]);
}

export function startC(workDir: string, dir: string): Promise<Backend> {
  const socket = path.join(workDir, 'c.sock');
  return launch('C', socket, dir, C_VIRTIOFSD,
    [`--socket-path=${socket}`, '-o', `source=${dir}`, '-o', 'cache=none', '-o', 'sandbox=chroot', '-o', 'readdirplus',
      '-o', 'log_level=err']);
}

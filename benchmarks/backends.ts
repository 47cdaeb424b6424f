/**
 * The two backends as child processes, each on its own socket and shared dir:
 * - ours: `node --trace-gc dist/host/cli.js --cache=never --sandbox=chroot` (GC events are read from its stdout),
 *   or under Bun (`bun dist/host/cli.js ...`) or Deno (`deno run -A --v8-flags=--trace-gc dist/host/cli.js ...`);
 * - C: `/usr/lib/qemu/virtiofsd -o cache=none -o sandbox=chroot -o readdirplus` (it exits when its frontend leaves,
 *   so a backend lives for one connection).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { privateMemoryKb } from '../host/stats.js';

export const C_VIRTIOFSD = '/usr/lib/qemu/virtiofsd';
const CLI = fileURLToPath(new URL('../host/cli.js', import.meta.url));
/** The checkout the CLI is in, cut from the printed command lines. */
const CLI_ROOT = `${path.resolve(path.dirname(CLI), '..', '..')}/`;

export interface GcEvent { kind: string; beforeMb: number; afterMb: number; pauseMs: number }

/** A young-generation collection (scavenge, minor mark-compact/sweep); the others are major. */
export function isMinorGc(e: GcEvent): boolean {
  return e.kind.startsWith('Scavenge') || e.kind.startsWith('Minor');
}

export interface Backend {
  readonly name: 'ours' | 'C';
  readonly socket: string;
  readonly dir: string;
  readonly pid: number;
  /** GC events seen so far (ours only). */
  readonly gc: GcEvent[];
  /** VmRSS in KiB, from /proc/PID/status (0 once gone). */
  rssKb(): number;
  /** Private_Clean + Private_Dirty in KiB, from /proc/PID/smaps_rollup (-1 once gone). */
  privateKb(): number;
  /** User + system CPU seconds so far, all threads (/proc/PID/stat). */
  cpuSeconds(): number;
  /** The command line that started it (for the report: which options produced a row). */
  readonly command: string;
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

/** User + system CPU seconds of a process (all its threads), from /proc/PID/stat at 100 ticks a second. */
export function cpuSeconds(pid: number): number {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / 100; // utime, stime (fields 14 and 15)
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
    privateKb: () => privateMemoryKb(pid),
    cpuSeconds: () => cpuSeconds(pid),
    command: [cmd === process.execPath ? 'node' : cmd, ...args].join(' ')
      .replace(/ (--socket-path|--shared-dir)=\S+| -o source=\S+/g, '').replace(CLI_ROOT, ''),
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

/** Our daemon's options in every benchmark; `extra` (e.g. --poll-us=50) come after them. */
export const OURS_ARGS = ['--cache=never', '--log-level=error',
  // Like the C side's sandbox=chroot; it also keeps the daemon in this pid (namespace mode re-executes).
  '--sandbox=chroot'];
export const C_ARGS = ['-o', 'cache=none', '-o', 'sandbox=chroot', '-o', 'readdirplus', '-o', 'log_level=err'];

/** `extra`: options after OURS_ARGS; `cli`: another build's dist/host/cli.js (a before/after comparison). */
export type RuntimeName = 'node' | 'bun' | 'deno';
export const RUNTIMES: readonly RuntimeName[] = ['node', 'bun', 'deno'];

/**
 * The command that runs a script in `runtime`, with V8's GC trace where there is one: Node itself when it runs
 * us, else `node` on PATH; Bun (JavaScriptCore: no GC trace) and Deno (`deno run -A`) from the devDependencies
 * (node_modules/.bin), else from PATH.
 */
function runtimeCommand(runtime: RuntimeName): string[] {
  if (runtime === 'node') {
    const self = typeof process.versions.bun !== 'string' && typeof process.versions.deno !== 'string';
    return [self ? process.execPath : 'node', '--trace-gc'];
  }
  const local = path.join(CLI_ROOT, 'node_modules', '.bin', runtime);
  const bin = fs.existsSync(local) ? local : runtime;
  return runtime === 'deno' ? [bin, 'run', '-A', '--v8-flags=--trace-gc'] : [bin];
}

export function startOurs(workDir: string, dir: string, extra: string[] = [], cli = CLI, label = 'ours',
  runtime: RuntimeName = 'node'): Promise<Backend> {
  const socket = path.join(workDir, `${label.replace(/[^\w.-]/g, '_')}.sock`);
  const [cmd, ...flags] = runtimeCommand(runtime);
  return launch('ours', socket, dir, cmd!,
    [...flags, cli, `--socket-path=${socket}`, `--shared-dir=${dir}`, ...OURS_ARGS, ...extra]);
}

export function startC(workDir: string, dir: string, extra: string[] = []): Promise<Backend> {
  const socket = path.join(workDir, 'c.sock');
  return launch('C', socket, dir, C_VIRTIOFSD, [`--socket-path=${socket}`, '-o', `source=${dir}`, ...C_ARGS, ...extra]);
}

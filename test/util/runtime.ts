/**
 * Child processes in the runtime that runs the test (Node, Bun or Deno; see test/run.js --runtime): a test that
 * starts the CLI or a helper script starts it in the same runtime, with the same flags (Deno's permissions), so
 * the suite under Bun tests the daemon under Bun.
 */
import type { ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { runtimeInvocation, runtimeName } from '../../host/runtime.js';
import { skipLine } from './prereq.js';

export { runtimeName };

// Deno makes a socketpair for its signal driver at the first signal listener or child process, and keeps it. Made
// here, when a test file starts, so that fd counts a test compares do not see it appear in between.
if (runtimeName === 'deno') {
  const noop = (): void => {};
  process.on('SIGWINCH', noop);
  process.off('SIGWINCH', noop);
}

/** The runtime and its flags, ready to take a script path and its arguments: `[node]`, `[bun]`, `[deno, run, -A]`. */
export const RUNTIME: readonly string[] = runtimeInvocation().command;

/** [command, args] that run `script` with `args` in this runtime, for spawn/spawnSync. */
export function runtimeArgs(script: string, args: readonly string[] = []): [string, string[]] {
  return [RUNTIME[0]!, [...RUNTIME.slice(1), script, ...args]];
}

/**
 * [command, args] that evaluate an ES module's source text in this runtime (`node --input-type=module -e`,
 * `bun -e`, `deno eval`, which grants every permission). The source imports by absolute path or `node:` name.
 */
export function evalArgs(source: string): [string, string[]] {
  switch (runtimeName) {
    case 'node': return [process.execPath, ['--input-type=module', '-e', source]];
    case 'bun': return [process.execPath, ['-e', source]];
    case 'deno': return [process.execPath, ['eval', source]];
  }
}

/** Flags that load `module` before the script (`--import` on Node, `--preload` on Bun and Deno). */
export function preloadFlags(module: string): string[] {
  return runtimeName === 'node' ? ['--import', module] : ['--preload', module];
}

/**
 * Sends `signal` to a child by its pid. Deno's ChildProcess.kill() reports the signal it sent as the exit status
 * whatever the child then did, so a daemon's clean exit 0 on SIGTERM would read as killed.
 */
export function signalChild(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(child.pid, signal);
  } catch {
    // already gone
  }
}

/**
 * SIGTERM to a child (signalChild), resolved once it has exited; at once when it already had (waiting for an
 * 'exit' that came before would never end, and the test runner would stop with "exiting early" instead of
 * reporting the test's failure).
 */
export function terminateChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  signalChild(child, 'SIGTERM');
  return exited;
}

type TestFn = (name: string, fn: () => void | Promise<void>) => void;

const DIST_TEST = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/**
 * `test`, except under a runtime named in `unsupported`, where the test only prints the skip marker of
 * test/util/prereq.ts with the reason (test/run.js counts it as a skip and lists it). Not a missing prerequisite:
 * CI=true does not turn it into a failure. Only for what the runtime lacks; README.md's runtime table lists each.
 */
export function unlessRuntime(test: TestFn, unsupported: Partial<Record<typeof runtimeName, string>>): TestFn {
  const reason = unsupported[runtimeName];
  if (reason === undefined) return test;
  const file = path.relative(DIST_TEST, path.resolve(process.argv[1] ?? 'unknown'));
  return (name) => test(name, () => {
    console.log(skipLine(file, name, `${runtimeName}: ${reason}`));
  });
}

/** `pid` and its descendants, from /proc (those that exit meanwhile are left out). */
export function processTree(pid: number): number[] {
  const out = [pid];
  let tasks: string[] = [];
  try {
    tasks = fs.readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const tid of tasks) {
    let children = '';
    try {
      children = fs.readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8');
    } catch {
      continue;
    }
    for (const child of children.split(' ').filter(Boolean)) out.push(...processTree(Number(child)));
  }
  return out;
}

/**
 * A process of `pid`'s tree that runs this runtime's executable in a mount namespace other than this process's: the
 * daemon inside the CLI's namespace sandbox, started in this runtime. undefined when there is none.
 */
export function sandboxedRuntimeProcess(pid: number): number | undefined {
  const self = fs.statSync(process.execPath);
  const ourMnt = fs.readlinkSync('/proc/self/ns/mnt');
  return processTree(pid).find((p) => {
    try {
      const exe = fs.statSync(`/proc/${p}/exe`);
      return exe.ino === self.ino && exe.dev === self.dev && fs.readlinkSync(`/proc/${p}/ns/mnt`) !== ourMnt;
    } catch {
      return false;
    }
  });
}

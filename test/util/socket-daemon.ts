/**
 * Our daemon as a child process on a vhost-user socket, for tests: `<runtime> [runtimeFlags] dist/host/cli.js
 * --socket-path=S --shared-dir=D [args]` in the test's runtime (test/util/runtime.ts), waited on until S exists
 * (the daemon listens before it creates it).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import { FuseClient, FuseError, type FuseClientOptions } from '../../host/frontend/fuse-client.js';
import { native } from '../../host/native-loader.js';
import { RUNTIME } from './runtime.js';
import { CLI } from './dev-fuse-mount.js';
import { sleep } from './wait.js';

export interface SocketDaemon {
  child: ChildProcess;
  socket: string;
  dir: string;
  /** Everything the daemon wrote to stderr so far. */
  stderr(): string;
}

export interface SocketDaemonOptions {
  /** More CLI options (log level, sandbox, cache, ...). */
  args?: string[];
  /** Options for the runtime itself, before the script (see preloadFlags). */
  runtimeFlags?: string[];
  cwd?: string;
  /** How long the socket may take to appear (default 30 s: an outer limit for a loaded machine). */
  timeoutMs?: number;
}


/** Starts the daemon sharing `dir` on `socket`; SIGKILLs it and throws (with its stderr) if the socket never comes. */
export async function spawnSocketDaemon(dir: string, socket: string, o: SocketDaemonOptions = {}): Promise<SocketDaemon> {
  let err = '';
  const child = spawn(RUNTIME[0]!, [...RUNTIME.slice(1), ...(o.runtimeFlags ?? []), CLI, `--socket-path=${socket}`, `--shared-dir=${dir}`,
    ...(o.args ?? [])], { stdio: ['ignore', 'ignore', 'pipe'], cwd: o.cwd });
  child.stderr!.on('data', (b: Buffer) => { err += b.toString(); });
  const t0 = Date.now();
  while (!fs.existsSync(socket)) {
    if (child.exitCode !== null || child.signalCode !== null || Date.now() - t0 > (o.timeoutMs ?? 30_000)) {
      const ended = child.signalCode !== null ? ` (killed by ${child.signalCode})` : '';
      child.kill('SIGKILL');
      throw new Error(`daemon (${(o.args ?? []).join(' ')}) did not start${ended}: ${err}`);
    }
    await sleep(20);
  }
  return { child, socket, dir, stderr: () => err };
}

const ECONNREFUSED = native.constants.errno.ECONNREFUSED!;

/**
 * `connect()`, retried for up to 5 s while the socket exists but refuses: a daemon binds and then listens (the C
 * virtiofsd sets up in between), and on a loaded machine a connect can fall between the two.
 */
export async function retryWhileRefused<T>(connect: () => Promise<T>): Promise<T> {
  for (let t0 = Date.now(); ; await sleep(20)) {
    try {
      return await connect();
    } catch (e) {
      if ((e as { errno?: number }).errno !== ECONNREFUSED || Date.now() - t0 > 5000) throw e;
    }
  }
}

/** FuseClient.connect through retryWhileRefused. */
export function connectWhenListening(socket: string, options: FuseClientOptions): Promise<FuseClient> {
  return retryWhileRefused(() => FuseClient.connect(socket, options));
}

/** The errno a FUSE request failed with (FuseError), 0 when it succeeded; other errors are rethrown. */
export async function errnoOf(p: Promise<unknown>): Promise<number> {
  try {
    await p;
  } catch (e) {
    if (e instanceof FuseError) return e.errno;
    throw e;
  }
  return 0;
}

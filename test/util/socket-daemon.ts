/**
 * Our daemon as a child process on a vhost-user socket, for tests: `node [nodeFlags] dist/host/cli.js
 * --socket-path=S --shared-dir=D [args]`, waited on until S exists (the daemon listens before it creates it).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import { FuseError } from '../../host/frontend/fuse-client.js';
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
  /** Options for node itself, before the script. */
  nodeFlags?: string[];
  cwd?: string;
  /** How long the socket may take to appear (default 30 s: an outer limit for a loaded machine). */
  timeoutMs?: number;
}


/** Starts the daemon sharing `dir` on `socket`; SIGKILLs it and throws (with its stderr) if the socket never comes. */
export async function spawnSocketDaemon(dir: string, socket: string, o: SocketDaemonOptions = {}): Promise<SocketDaemon> {
  let err = '';
  const child = spawn(process.execPath, [...(o.nodeFlags ?? []), CLI, `--socket-path=${socket}`, `--shared-dir=${dir}`,
    ...(o.args ?? [])], { stdio: ['ignore', 'ignore', 'pipe'], cwd: o.cwd });
  child.stderr!.on('data', (b: Buffer) => { err += b.toString(); });
  const t0 = Date.now();
  while (!fs.existsSync(socket)) {
    if (child.exitCode !== null || Date.now() - t0 > (o.timeoutMs ?? 30_000)) {
      child.kill('SIGKILL');
      throw new Error(`daemon (${(o.args ?? []).join(' ')}) did not start: ${err}`);
    }
    await sleep(20);
  }
  return { child, socket, dir, stderr: () => err };
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

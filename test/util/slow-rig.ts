/**
 * A daemon (the CLI, a child process) sharing a slow directory (test/util/slow-share.ts), a FUSE client connected
 * to it, and the request patterns the tests that hold host READs share (test/blocking-io.test.ts,
 * test/queue-threads.test.ts). Verdicts built on these are event orders, never durations.
 */
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { FuseClient } from '../../host/frontend/fuse-client.js';
import { FUSE_ROOT_ID } from '../../host/fuse/protocol.js';
import { connectWhenListening, spawnSocketDaemon, type SocketDaemon } from './socket-daemon.js';
import { mountSlowShare, slowContent, type SlowShare } from './slow-share.js';
import { terminateChild } from './runtime.js';

export const READS = 8;
export const GETATTRS = 24;
export const CHUNK = 4096;
const O_RDONLY = 0;

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vfsd-slow-rig-'));
let seq = 0;

export interface SlowRig {
  share: SlowShare;
  daemon: SocketDaemon;
  fc: FuseClient;
  close(): Promise<void>;
}

/** The daemon with `args` over a fresh slow share, and a client of `queues` request queues, initialized. */
export async function slowRig(args: string[], queues = 1): Promise<SlowRig> {
  const share = await mountSlowShare();
  const socket = path.join(tmp, `d${seq++}.sock`);
  let daemon: SocketDaemon | undefined;
  try {
    daemon = await spawnSocketDaemon(share.dir, socket, { args: [...args, '--cache=never', '--log-level=warn'] });
    const fc = await connectWhenListening(socket, { depth: 64, queues, timeoutMs: 60_000 });
    await fc.init();
    const d = daemon;
    return {
      share, daemon: d, fc,
      async close() {
        share.open();
        fc.close();
        await terminateChild(d.child);
        await share.close();
      },
    };
  } catch (e) {
    if (daemon !== undefined) daemon.child.kill('SIGKILL');
    await share.close();
    throw e;
  }
}

/** A fresh directory under the rigs' temporary directory. */
export function rigTmpDir(prefix: string): string {
  return fs.mkdtempSync(path.join(tmp, prefix));
}

/** A socket path under the rigs' temporary directory. */
export function rigSocketPath(): string {
  return path.join(tmp, `d${seq++}.sock`);
}

export function removeRigTmp(): void {
  fs.rmSync(tmp, { recursive: true, force: true });
}

/** LOOKUP and OPEN of `slow` (on request queue q, default the client's choice). */
export async function openSlow(fc: FuseClient, q?: number): Promise<{ node: number; fh: number }> {
  const node = (await fc.lookup(FUSE_ROOT_ID, 'slow', q)).nodeid;
  return { node, fh: (await fc.open(node, O_RDONLY, q)).fh };
}

/** Observed at once: a test that failed early closes the client, which rejects what is still in flight. */
export function observed<T>(ps: Promise<T>[]): Promise<T>[] {
  for (const p of ps) p.catch(() => undefined);
  return ps;
}

/** READs of 4 KiB at offsets i * 8 KiB (i < READS), checked against the file when they complete. */
export function startReads(fc: FuseClient, node: number, fh: number, done: { reads: number },
  q?: number): Promise<void>[] {
  const want = slowContent();
  return observed(Array.from({ length: READS }, (_, i) => fc.read(node, fh, i * 2 * CHUNK, CHUNK, q).then((got) => {
    done.reads++;
    assert.equal(got, want.subarray(i * 2 * CHUNK, i * 2 * CHUNK + CHUNK), `READ ${i} data`);
  })));
}

/** GETATTRs of the root and LOOKUPs of `fast`, counted as they complete. */
export function startMetadata(fc: FuseClient, done: { meta: number }, q?: number): Promise<void>[] {
  return observed(Array.from({ length: GETATTRS }, (_, i) =>
    (i % 2 === 0 ? fc.getattr(FUSE_ROOT_ID, undefined, q) : fc.lookup(FUSE_ROOT_ID, 'fast', q))
      .then(() => { done.meta++; })));
}

/** The process and its descendants (the CLI may run the daemon in a child of its own). */
function processTree(pid: number): number[] {
  const kids = fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean)
    .map(Number);
  return [pid, ...kids.flatMap(processTree)];
}

/** What the fds of the daemon's processes point at. */
export function fdLinks(pid: number): string[] {
  return processTree(pid).flatMap((p) => fs.readdirSync(`/proc/${p}/fd`).map((fd) => {
    try {
      return fs.readlinkSync(`/proc/${p}/fd/${fd}`);
    } catch {
      return '?'; // closed meanwhile
    }
  }));
}

/** How many fds the daemon holds on the share's `slow` (its inode's O_PATH fd, open handles). */
export function fdsOnSlow(pid: number, share: SlowShare): number {
  // Sandboxed, the daemon sees the share as its root.
  const names = new Set([path.join(share.dir, 'slow'), '/slow']);
  return fdLinks(pid).filter((l) => names.has(l)).length;
}

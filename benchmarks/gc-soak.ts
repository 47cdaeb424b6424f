/**
 * Major GCs on the request path: our daemon (defaults, a fresh process) serves a million requests after a
 * warm-up, and the collections its `--trace-gc` reports meanwhile are counted. A mark-compact stops the daemon for
 * milliseconds while requests wait, so the goal is none; scavenges (the young generation, sub-millisecond to 2 ms)
 * are counted beside. Part of `npm run bench`, after the repetitions.
 *
 * The load cycles through GETATTR, LOOKUP and 4 KiB random READ and WRITE at depth 16, CREATE+RELEASE+UNLINK and
 * 10,000-entry READDIRPLUS listings (the one that leaves the most garbage in the old generation: an inode-table
 * entry per name until its BATCH_FORGET) in slices of SLICE_MS, with no pause between slices: the CLI's idle GC
 * (a second after the last request) is not on the request path and must not fall inside the window.
 */
import { FuseClient } from '../host/frontend/fuse-client.js';
import { isMinorGc, startOurs } from './backends.js';
import { runFor, workloads, type Workload } from './workloads.js';

export interface GcSoak {
  /** Requests sent inside the counted window. */
  requests: number;
  seconds: number;
  markCompacts: number;
  scavenges: number;
  /** Longest pause of any collection in the window (ms). */
  longestPauseMs: number;
  /** The workloads the window cycled through, and the daemon's command line. */
  workloads: string[];
  command: string;
}

const SLICE_MS = 250;
/** The window ends after this long even short of its requests (a very slow machine). */
const MAX_WINDOW_MS = 60_000;
const SOAK_WORKLOADS = [
  'GETATTR, depth 16', 'LOOKUP, depth 16', 'read 4 KiB random, depth 16', 'write 4 KiB random, depth 16',
  'CREATE+RELEASE+UNLINK, depth 1', 'READDIRPLUS 10000 entries (64 KiB bufs)',
];

export async function gcSoak(work: string, dir: string, requests: number, fileSize: number,
  log: (...a: unknown[]) => void): Promise<GcSoak> {
  const all = workloads();
  const list: Workload[] = SOAK_WORKLOADS.map((n) => all.find((w) => w.name === n)!);
  const b = await startOurs(work, dir, [], undefined, 'ours (GC soak)');
  try {
    const fc = await FuseClient.connect(b.socket, { queues: 1, depth: 64, timeoutMs: 30000 });
    try {
      await fc.init();
      const ctxs = await Promise.all(list.map((w) => w.setup(fc, fileSize)));
      // Warm-up: every workload once, as a repetition of the bench does (start-up compilation and the first
      // old-space growth are start-up debt, not the request path).
      for (const [i, w] of list.entries()) await runFor(fc, w, ctxs[i]!, 0, 1000, 1);
      const gc0 = b.gc.length;
      const sent0 = fc.sent;
      const t0 = performance.now();
      for (let i = 0; fc.sent - sent0 < requests && performance.now() - t0 < MAX_WINDOW_MS; i++) {
        await runFor(fc, list[i % list.length]!, ctxs[i % list.length]!, 0, SLICE_MS, 1);
      }
      const seconds = (performance.now() - t0) / 1000;
      const sent = fc.sent - sent0;
      await new Promise((r) => setTimeout(r, 50)); // the window's trace-gc lines come through a pipe
      const gc = b.gc.slice(gc0);
      for (const ctx of ctxs) await ctx.teardown();
      const soak: GcSoak = {
        requests: sent, seconds, markCompacts: gc.filter((e) => !isMinorGc(e)).length,
        scavenges: gc.filter(isMinorGc).length, longestPauseMs: Math.max(0, ...gc.map((e) => e.pauseMs)),
        workloads: SOAK_WORKLOADS, command: b.command,
      };
      log(`GC soak: ${sent} requests in ${seconds.toFixed(1)} s: ${soak.markCompacts} mark-compacts, ` +
        `${soak.scavenges} scavenges, longest pause ${soak.longestPauseMs.toFixed(1)} ms`);
      return soak;
    } finally {
      fc.close();
    }
  } finally {
    await b.stop();
  }
}

/** The report's line for a soak. */
export function gcSoakLine(s: GcSoak): string {
  return `${s.markCompacts} mark-compacts (major GCs) over ${s.requests.toLocaleString('en-US')} requests ` +
    `(${s.seconds.toFixed(1)} s of ${s.workloads.join('; ')}, in turn, after a warm-up; ours with the defaults: ` +
    `\`${s.command}\`); ${s.scavenges} scavenges, the longest pause ${s.longestPauseMs.toFixed(1)} ms`;
}

/**
 * The CLI daemon's memory policy (the process is ours; an embedding host keeps its own settings):
 *
 * - V8's young generation stays near its initial size (it grows once, to 2 MiB) instead of doubling under load up
 *   to 2 x 16 MiB on 64-bit.
 *   The request path's garbage dies young, so a small young generation costs more scavenges of a few live
 *   objects each, and the daemon's private memory stays near its idle size (GETATTR at depth 16: 31 -> 26 MiB
 *   after 600k requests, throughput within run-to-run noise).
 * - Once the daemon has gone idle after serving (no request for a second), the heap is collected in full and the
 *   malloc arenas are trimmed (also once after start-up). Garbage that outlived the young generation (a big
 *   READDIRPLUS listing's names and entries) would otherwise hold old-space pages until V8's next major GC, and
 *   the engine's helper threads (compilers, GC) leave megabytes free in malloc arenas, which glibc does not give
 *   back by itself. A full GC of the daemon's heap takes a few ms, spent while nothing is waiting. Before it, the
 *   inode and handle tables shrink to what they hold (they keep the size of a big listing while serving).
 *
 * The young-generation limit and the idle GC are for Node only (Bun's engine has no such flags; Deno's V8 flags
 * are its own business); trimming is glibc's and applies under every runtime.
 */
import * as v8 from 'node:v8';
import * as vm from 'node:vm';
import { native } from './native-loader.js';
import { runtimeName } from './runtime.js';

/** How long without a served request counts as idle. */
const IDLE_CHECK_MS = 1000;

/** Keeps V8's young generation near its initial size (the growth factor is read each time V8 would grow it). */
export function limitYoungGeneration(): void {
  if (runtimeName !== 'node') return;
  v8.setFlagsFromString('--semi-space-growth-factor=1');
}

/**
 * V8's full GC, compacting (Node: `--expose-gc` set now applies to a new context), or null elsewhere. A plain full
 * GC frees objects but keeps most pages they lived on; compacting moves the survivors together so the emptied pages
 * go back. Compaction is turned on only for this GC: a major GC while serving stays as short as V8 makes it.
 */
function fullGc(): (() => void) | null {
  if (runtimeName !== 'node') return null;
  v8.setFlagsFromString('--expose-gc');
  const gc: unknown = vm.runInNewContext('gc');
  if (typeof gc !== 'function') return null;
  return () => {
    v8.setFlagsFromString('--compact-on-every-full-gc');
    try {
      (gc as () => void)();
    } finally {
      v8.setFlagsFromString('--no-compact-on-every-full-gc');
    }
  };
}

/**
 * Trims malloc arenas now; then, each time `served()` stops moving for IDLE_CHECK_MS after it moved, calls `compact`
 * (the filesystem's tables give back what a big listing grew them to), collects the heap in full and trims again.
 * Returns the function that stops it. The timer does not keep the process alive.
 */
export function shrinkWhenIdle(served: () => number, compact?: () => void): () => void {
  const gc = fullGc();
  native.mallocTrim();
  let last = served();
  let trimmed = true;
  const timer = setInterval(() => {
    const now = served();
    if (now !== last) {
      last = now;
      trimmed = false;
    } else if (!trimmed) {
      compact?.();
      gc?.();
      native.mallocTrim();
      trimmed = true;
    }
  }, IDLE_CHECK_MS);
  timer.unref();
  return () => clearInterval(timer);
}

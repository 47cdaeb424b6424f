/**
 * The daemon's statistics channel: on SIGUSR2 the CLI daemon writes one line to stderr,
 *
 * ```
 * virtiofsd-ts stats {"queues":[{"queue":1,"served":...}],"gc":{"major":..},"cpu":{...},"privateKb":..}
 * ```
 *
 * what benchmarks and e2e tests read to see which queues served requests, what polling did, how many garbage
 * collections (major ones stop the request path for milliseconds) happened since start, the CPU seconds used and
 * the private memory. Counting GCs is a PerformanceObserver on 'gc' entries: it costs something only when a GC
 * happens, never per request.
 */

import { readFileSync } from 'node:fs';
import { PerformanceObserver, constants as perf } from 'node:perf_hooks';
import type { VhostUserListener } from './vhost-user/listener.js';
import type { QueueStats } from './virtio/queue-processor.js';

export const STATS_LINE_PREFIX = 'virtiofsd-ts stats ';

export interface GcCounts {
  major: number;
  minor: number;
  incremental: number;
  weakcb: number;
  /** Summed duration of all of them, ms. */
  pauseMs: number;
}

export interface DaemonStats {
  /**
   * Per-queue counters of the current connection (none while no frontend is connected); a queue served on a thread
   * of its own (--queue-threads) also says how many READ/WRITE requests that thread served itself.
   */
  queues: (QueueStats & { queue: number; servedOnThread?: number })[];
  gc: GcCounts;
  /** process.cpuUsage() since start, seconds. */
  cpu: { user: number; system: number };
  /** Private_Clean + Private_Dirty of /proc/self/smaps_rollup, KiB (-1 where unreadable). */
  privateKb: number;
}

/** Counts GCs by kind from now on. */
export class GcCounter {
  readonly counts: GcCounts = { major: 0, minor: 0, incremental: 0, weakcb: 0, pauseMs: 0 };
  private readonly observer: PerformanceObserver;

  constructor() {
    this.observer = new PerformanceObserver((list) => {
      for (const e of list.getEntries()) {
        const kind = (e as unknown as { detail?: { kind?: number } }).detail?.kind;
        if (kind === perf.NODE_PERFORMANCE_GC_MAJOR) this.counts.major++;
        else if (kind === perf.NODE_PERFORMANCE_GC_MINOR) this.counts.minor++;
        else if (kind === perf.NODE_PERFORMANCE_GC_INCREMENTAL) this.counts.incremental++;
        else if (kind === perf.NODE_PERFORMANCE_GC_WEAKCB) this.counts.weakcb++;
        this.counts.pauseMs += e.duration;
      }
    });
    this.observer.observe({ entryTypes: ['gc'] });
  }

  stop(): void {
    this.observer.disconnect();
  }
}

/** Private_Clean + Private_Dirty of a process in KiB, or -1 when its smaps_rollup cannot be read. */
export function privateMemoryKb(pid: number | 'self' = 'self'): number {
  try {
    const text = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
    let kb = 0;
    for (const m of text.matchAll(/^Private_(?:Clean|Dirty):\s+(\d+) kB$/gm)) kb += Number(m[1]);
    return kb;
  } catch {
    return -1;
  }
}

export function daemonStats(listener: VhostUserListener | null, gc: GcCounter): DaemonStats {
  const queues: DaemonStats['queues'] = [];
  const backend = listener?.backend ?? null;
  if (backend !== null) {
    for (let q = 0; q < backend.numQueues; q++) {
      const s = backend.queueStats(q);
      if (s !== undefined) queues.push({ queue: q, ...s });
    }
  }
  const cpu = process.cpuUsage();
  return {
    queues, gc: { ...gc.counts }, cpu: { user: cpu.user / 1e6, system: cpu.system / 1e6 }, privateKb: privateMemoryKb(),
  };
}

/** SIGUSR2 writes daemonStats as one line on stderr. Returns the uninstaller. */
export function installStatsSignal(listener: VhostUserListener | null): () => void {
  const gc = new GcCounter();
  const onSignal = (): void => {
    process.stderr.write(`${STATS_LINE_PREFIX}${JSON.stringify(daemonStats(listener, gc))}\n`);
  };
  process.on('SIGUSR2', onSignal);
  return () => {
    process.off('SIGUSR2', onSignal);
    gc.stop();
  };
}

/** The last stats line in a daemon's stderr text, parsed; undefined when there is none. */
export function parseStatsLine(stderr: string): DaemonStats | undefined {
  const at = stderr.lastIndexOf(STATS_LINE_PREFIX);
  if (at < 0) return undefined;
  const end = stderr.indexOf('\n', at);
  try {
    return JSON.parse(stderr.slice(at + STATS_LINE_PREFIX.length, end < 0 ? undefined : end)) as DaemonStats;
  } catch {
    return undefined;
  }
}

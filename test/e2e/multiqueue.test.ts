/**
 * End-to-end, several request queues: a guest with 2 vCPUs mounts a share whose device has 2 request queues
 * (`-global vhost-user-fs-pci.num-request-queues=2`, ours with --num-request-queues=2). Linux 6.12's virtio_fs
 * sends each request on the queue mapped to the CPU that issued it, so a writer pinned to each CPU (busybox
 * taskset) puts load on both queues; Linux 6.1 uses the first request queue only. Each guest then runs the usual
 * workload (test/e2e/workload.sh; its posix-check step is the other e2e test's business and is not judged here).
 *
 * What is checked: the pinned writers' files on the host (names, contents, sizes), the workload's own checks,
 * and which queues served requests, from the daemon's stats line (SIGUSR2, host/stats.ts) sent while the guest
 * is still connected: 6.12 must have served on queue 1 and queue 2, 6.1 on queue 1 only. The 6.12 guest runs
 * once more with --poll-us=50 (polling on two queues at once is the case where a spinning queue could starve
 * the other), and once with --queue-threads and 6 GiB of RAM: each request queue on a thread of its own, whose
 * core maps the guest's RAM through its own window; there both threads must also have served READ or WRITE
 * requests themselves (`servedOnThread` in the stats line), and the others through the main thread.
 *
 * The 6.12 guest lives in .cache/guest-6.12 (scripts/fetch-guest-kernel.sh with GUEST_KERNEL_SERIES=6.12 fetches
 * it on first use); the 6.1 guest is the default .cache/guest. In CI a missing prerequisite fails; elsewhere it is
 * a counted skip.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parseStatsLine, type DaemonStats } from '../../host/stats.js';
import {
  GUEST_DIR, ROOT, type GuestImage, type GuestResult, checkGuestReport, checkWorkloadOnHost, defaultWorkload,
  describeRun, ensureGuestImage, missingGuestTools, startBackend, startGuest, tailLines, workloadNeedsRoot,
} from './guest.js';

const IN_CI = !!process.env.CI;
const ONLY = process.env.E2E_ONLY;
const GUEST_612_DIR = process.env.E2E_GUEST_612_DIR ?? path.join(ROOT, '.cache', 'guest-6.12');
const FILES_PER_CPU = 150;
const BIG_BLOCKS = 32; // x 64 KiB per CPU

/**
 * Runs first in the guest, before the usual workload: one writer pinned to each CPU, each creating and reading
 * back FILES_PER_CPU small files and writing one 2 MiB file; then the usual workload (written beside it).
 */
const PINNED_WRITERS = `#!/bin/sh
MNT="\${1:-/mnt}"
mkdir -p "$MNT/mq"
echo "E2E-INFO cpus $(grep -c ^processor /proc/cpuinfo)"
pids=""
for cpu in 0 1; do
  taskset $((1 << cpu)) sh -c '
    i=0
    while [ $i -lt ${FILES_PER_CPU} ]; do
      echo "cpu $1 file $i" > "$2/mq/c$1-$i" || exit 1
      [ "$(cat "$2/mq/c$1-$i")" = "cpu $1 file $i" ] || exit 2
      i=$((i + 1))
    done
    dd if=/dev/zero of="$2/mq/big$1" bs=65536 count=${BIG_BLOCKS} 2>/dev/null || exit 3
  ' sh $cpu "$MNT" &
  pids="$pids $!"
done
status=""
for p in $pids; do wait $p; status="$status $?"; done
if [ "$status" = " 0 0" ]; then echo "E2E-RESULT pinned-writers ok"; else echo "E2E-RESULT pinned-writers fail exit statuses$status"; fi
sh "$MNT/.e2e/default-workload.sh" "$MNT"
`;

interface Guest { label: string; dir: string; fetchEnv: Record<string, string>; wantQueues: number[] }
/** How the daemon serves the queues in one boot. */
interface Mode { pollUs: number; threads: boolean }
/** RAM of a --queue-threads guest: more than a core's 4 GiB, so each thread's core maps it windowed. */
const THREADS_MEM_MIB = 6144;

const GUESTS: Guest[] = [
  { label: 'Linux 6.12', dir: GUEST_612_DIR, fetchEnv: { GUEST_KERNEL_SERIES: '6.12' }, wantQueues: [1, 2] },
  { label: 'Linux 6.1', dir: GUEST_DIR, fetchEnv: {}, wantQueues: [1] },
];

const missing = missingGuestTools();
const images = new Map<string, GuestImage | string>();
function imageFor(g: Guest): GuestImage | string {
  if (!images.has(g.dir)) {
    try {
      images.set(g.dir, missing.length ? `missing: ${missing.join(', ')}` : ensureGuestImage(g.dir, g.fetchEnv));
    } catch (e) {
      images.set(g.dir, (e as Error).message);
    }
  }
  return images.get(g.dir)!;
}

/**
 * The guest kernel's crash line when it crashed before its init printed anything: init prints the kernel version
 * first and loads the virtiofs module after, so the driver had not met the device, and no request had been sent.
 */
function kernelCrashBeforeInit(r: GuestResult): string | undefined {
  if (r.results.length > 0 || Object.keys(r.info).length > 0 || r.done) return undefined;
  return /^.*\b(Oops: .*|Kernel panic - .*|BUG: .*)$/m.exec(r.console)?.[1]?.trim();
}

function checkPinnedFiles(sharedDir: string): string[] {
  const problems: string[] = [];
  for (const cpu of [0, 1]) {
    for (let i = 0; i < FILES_PER_CPU; i++) {
      const f = path.join(sharedDir, 'mq', `c${cpu}-${i}`);
      let text: string;
      try {
        text = fs.readFileSync(f, 'utf8');
      } catch {
        problems.push(`mq/c${cpu}-${i}: missing`);
        continue;
      }
      if (text !== `cpu ${cpu} file ${i}\n`) problems.push(`mq/c${cpu}-${i}: content ${JSON.stringify(text)}`);
    }
    const big = path.join(sharedDir, 'mq', `big${cpu}`);
    const size = fs.existsSync(big) ? fs.statSync(big).size : -1;
    if (size !== BIG_BLOCKS * 65536) problems.push(`mq/big${cpu}: size ${size}, want ${BIG_BLOCKS * 65536}`);
  }
  return problems;
}

async function run(g: Guest, mode: Mode): Promise<void> {
  const { pollUs, threads } = mode;
  const image = imageFor(g);
  if (typeof image === 'string') {
    assert.unreachable(`guest image: ${image}`);
    return;
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vfs-e2e-mq-'));
  const sharedDir = path.join(dir, 'share');
  const socketPath = path.join(dir, 'vhost-user-fs.sock');
  fs.mkdirSync(path.join(sharedDir, '.e2e'), { recursive: true });
  fs.writeFileSync(path.join(sharedDir, '.e2e', 'default-workload.sh'), defaultWorkload(), { mode: 0o755 });
  const backend = await startBackend('ours', {
    sharedDir, socketPath, cache: 'auto', logLevel: 'warn',
    extraArgs: ['--num-request-queues=2', `--poll-us=${pollUs}`, '--allow-mknod-devices',
      ...(threads ? ['--queue-threads'] : [])],
  });
  let stats: DaemonStats | undefined;
  try {
    let asked = false;
    const boot = (): Promise<GuestResult> => startGuest({
      socketPath, sharedDir, image, workload: PINNED_WRITERS, timeoutMs: 240_000, idleTimeoutMs: 60_000, backend,
      ...(threads ? { memMiB: THREADS_MEM_MIB } : {}),
      qemuArgs: ['-smp', '2', '-global', 'vhost-user-fs-pci.num-request-queues=2'],
      onLine: (line) => {
        // The writers are done and the guest is still connected (the usual workload follows): ask for stats.
        if (!asked && line.startsWith('E2E-RESULT pinned-writers ')) {
          asked = true;
          backend.child.kill('SIGUSR2');
        }
      },
    }).result;
    let r = await boot();
    const crash = kernelCrashBeforeInit(r);
    if (crash !== undefined) {
      // Seen once in CI: the 6.12 kernel's int3-based code patching, on 2 vCPUs under TCG, trapped in
      // sched_clock_cpu 1.5 s into the boot. That says nothing of the daemon: boot once more, and fail if it
      // happens again.
      console.log(`e2e: ${g.label}, poll-us=${pollUs}: the guest kernel crashed before its init ran (${crash}); ` +
        'booting again');
      r = await boot();
    }
    stats = parseStatsLine(backend.stderr());
    const report = { ...r, results: r.results.filter((s) => s.name !== 'posix-check') };
    const problems = [
      ...checkGuestReport(report, ['pinned-writers', 'modules', 'mount', 'setup', 'small-files', 'big-file', 'parallel', 'workload-exit']),
      ...checkPinnedFiles(sharedDir), ...checkWorkloadOnHost(sharedDir, r),
    ];
    if (r.info.cpus !== '2') problems.push(`guest saw ${r.info.cpus ?? '?'} CPUs, want 2`);
    if (stats === undefined) {
      problems.push(`no stats line from the daemon after SIGUSR2:\n${tailLines(backend.stderr(), 10)}`);
    } else {
      const of = (q: number) => stats!.queues.find((s) => s.queue === q);
      const served = (q: number) => of(q)?.served ?? 0;
      console.log(`e2e: ${g.label}, ${describeMode(mode)}: requests served per queue: ` +
        stats.queues.map((s) => `q${s.queue} ${s.served}${pollUs > 0 ? ` (poll hits ${s.pollHits}, misses ${s.pollMisses})` : ''}` +
          (s.servedOnThread !== undefined ? ` (READ/WRITE on its thread ${s.servedOnThread})` : '')).join(', ') +
        `; daemon GCs major ${stats.gc.major}, minor ${stats.gc.minor}`);
      for (const q of [1, 2]) {
        const want = g.wantQueues.includes(q);
        if (want && served(q) === 0) problems.push(`queue ${q} served no request`);
        if (!want && served(q) !== 0) problems.push(`queue ${q} served ${served(q)} requests; this guest should not use it`);
        const onThread = of(q)?.servedOnThread;
        if (threads && want && !(onThread! > 0)) problems.push(`queue ${q}'s thread served no READ or WRITE itself (${onThread})`);
        if (!threads && onThread !== undefined) problems.push(`queue ${q} reports a thread without --queue-threads`);
      }
    }
    // A dead share makes every file missing: the first lines say enough.
    const shown = problems.length > 25 ? [...problems.slice(0, 25), `(${problems.length - 25} more)`] : problems;
    assert.ok(problems.length === 0, describeRun(r, backend, shown));
  } finally {
    await backend.stop();
    if (process.env.E2E_KEEP === '1') console.log(`e2e: kept ${dir}`);
    else fs.rmSync(dir, { recursive: true, force: true });
  }
}

function describeMode(m: Mode): string {
  return [m.pollUs > 0 ? `--poll-us=${m.pollUs}` : '', m.threads ? `--queue-threads, ${THREADS_MEM_MIB / 1024} GiB` : '']
    .filter((x) => x !== '').join(', ') || 'defaults';
}

for (const g of GUESTS) {
  // Polling and threads on two queues at once are the cases worth a guest boot; the 6.1 guest runs with the defaults.
  const modes: Mode[] = g.wantQueues.length === 2
    ? [{ pollUs: 0, threads: false }, { pollUs: 50, threads: false }, { pollUs: 0, threads: true }]
    : [{ pollUs: 0, threads: false }];
  for (const mode of modes) {
    const extra = describeMode(mode);
    const name = `ours, ${g.label}, 2 vCPUs, 2 request queues${extra !== 'defaults' ? `, ${extra}` : ''}: ` +
      `${g.wantQueues.length === 2 ? 'both queues serve' : 'the first queue serves'} and the workload passes`;
    if (ONLY && !name.includes(ONLY)) continue;
    const image = IN_CI ? undefined : workloadNeedsRoot() ?? imageFor(g);
    if (typeof image === 'string') {
      console.log(`e2e: skipping "${name}": ${image}`);
      test.skip(name, () => {});
      continue;
    }
    test(name, () => run(g, mode));
  }
}

test.run();

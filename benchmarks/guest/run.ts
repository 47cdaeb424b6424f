/**
 * `npm run bench:guest [-- options]`: one Linux guest under QEMU (TCG) runs the same workload on each
 * backend for the same host directory, one after another:
 *   ours  `node dist/host/cli.js --cache=auto`          vhost-user-fs, mounted `-t virtiofs`
 *   ours-poll  the same with --poll-us=N               (adaptive polling; see --poll-us below)
 *   ours-threads  the same with --queue-threads       (each request queue on a thread of its own; not by default)
 *   c     QEMU's C virtiofsd `-o cache=auto`            vhost-user-fs, mounted `-t virtiofs`
 *   9p    QEMU's own virtio-9p (`-virtfs local,...`)    mounted `-t 9p -o trans=virtio,version=9p2000.L,msize=...`
 * The workload (benchmarks/guest/workload.sh, in the bench initramfs built by build-initramfs.sh): fio
 * (sequential 128 KiB and random 4 KiB read/write with psync, random 4 KiB read with libaio at depth 16;
 * O_DIRECT, time-bounded, on one test file), then busybox-sh metadata phases on small files and the
 * untar + removal of a source tree. The guest prints `BENCH ...` lines on its console; this parses them
 * and prints one table (workload x backend, ratios ours/C and ours/9p), and saves it as
 * benchmarks/results/guest-<date>.json and .md with a description of the machine.
 *
 * Options: --runtime=S (per fio job, default 10), --size=MiB (fio file, 64), --files=N (small files,
 * 2000), --passes=N (readdir passes, 10), --backends=ours,c,9p, --jobs=<fio jobs, comma list>,
 * --smp=N (guest vCPUs, default 1: with 2 vCPUs on a 2-core host, TCG's vCPU threads starve QEMU's
 * 9p worker and the daemons), --mem=MiB (1024), --msize=N (9p, 512000: the virtio transport's maximum
 * in Linux 6.1), --9p-cache=MODE (9p `cache=`; default the kernel's, none), --quick (runtime 3, 32 MiB,
 * 500 files: a smoke run, saves nothing unless --save), --no-save, --out=DIR, --poll-us=N (default 50: the
 * backend `ours-poll` is ours with --poll-us=N, in its own column beside the defaults; 0 leaves it out),
 * --kernel=6.12 (the Debian 6.12 backport guest, .cache/guest-6.12, whose virtio_fs uses several request queues;
 * default the 6.1 e2e guest; a run with another kernel, --smp or --queues than the default is saved as
 * guest-<date>[-6.12][-<N>cpu][-<N>q].*, apart from the default run's), --queues=N (request queues of ours'
 * device, `num-request-queues`; the C virtiofsd of QEMU 7.2 serves one, so its runs keep 1), --numjobs=N (fio
 * threads per job; with --smp and --queues > 1 they spread over the queues), --reps=N (default 1: each backend
 * boots N times, the order reversed every other repetition; the table shows per-row medians, the JSON every
 * run), --ours-args="..." (more options for both of ours' backends, space-separated, e.g. "--batch-window-us=0"
 * for a before/after comparison).
 */
import { STATS_LINE_PREFIX, parseStatsLine } from '../../host/stats.js';
import { median } from '../report.js';
import { guestSvgChart } from './chart.js';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  ACCEL, QEMU, ROOT, ensureGuestImage, findCVirtiofsd, fmtStatus, missingGuestTools,
  startBackend, startGuest, tailLines, which, type BackendHandle, type GuestImage, type GuestResult,
} from '../../test/e2e/guest.js';

// ---------------------------------------------------------------------------------------------------
// Options

const argv = process.argv.slice(2);
const flag = (name: string): boolean => argv.includes(`--${name}`);
const opt = (name: string): string | undefined => argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
const num = (name: string, dflt: number): number => {
  const v = opt(name);
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new Error(`bench:guest: --${name}=${v} is not a non-negative integer`);
  return n;
};

const quick = flag('quick');
const cfg = {
  runtimeS: num('runtime', quick ? 3 : 10),
  sizeMiB: num('size', quick ? 32 : 64),
  files: num('files', quick ? 500 : 2000),
  passes: num('passes', 10),
  smp: num('smp', 1),
  memMiB: num('mem', 1024),
  msize: num('msize', 512000),
  ninepCache: opt('9p-cache') ?? '',
  jobs: opt('jobs') ?? 'seq-read,seq-write,rand-read,rand-write,rand-read-aio',
  pollUs: num('poll-us', 50),
  kernel: opt('kernel') ?? '6.1',
  queues: num('queues', 1),
  numjobs: num('numjobs', 1),
  oursArgs: (opt('ours-args') ?? '').split(' ').filter(Boolean),
  reps: num('reps', 1),
};
if (cfg.kernel !== '6.1' && cfg.kernel !== '6.12') throw new Error(`bench:guest: --kernel=${cfg.kernel}: 6.1 or 6.12`);
if (cfg.queues < 1 || cfg.numjobs < 1 || cfg.reps < 1) throw new Error('bench:guest: --queues, --numjobs and --reps start at 1');
type Kind = 'ours' | 'ours-poll' | 'ours-threads' | 'c' | '9p';
const ALL_KINDS: Kind[] = ['ours', 'ours-poll', 'ours-threads', 'c', '9p'];
const DEFAULT_KINDS = ALL_KINDS.filter((k) => k !== 'ours-threads' && (k !== 'ours-poll' || cfg.pollUs > 0));
const kinds = (opt('backends') ?? DEFAULT_KINDS.join(',')).split(',').map((k) => {
  if (!ALL_KINDS.includes(k as Kind)) throw new Error(`bench:guest: unknown backend '${k}' (${ALL_KINDS.join(', ')})`);
  if (k === 'ours-poll' && cfg.pollUs === 0) throw new Error('bench:guest: ours-poll needs --poll-us > 0');
  return k as Kind;
});
/** Our daemon, in any of its configurations. */
function isOurs(k: Kind): boolean {
  return k === 'ours' || k === 'ours-poll' || k === 'ours-threads';
}
const save = quick ? flag('save') : !flag('no-save');
const outDir = opt('out') ?? path.join(ROOT, 'benchmarks', 'results');

const HERE = path.join(ROOT, 'benchmarks', 'guest');
const BUILD_SCRIPT = path.join(HERE, 'build-initramfs.sh');
const WORKLOAD = path.join(HERE, 'workload.sh');
/** The guest kernel: the e2e one (6.1), or the 6.12 backport fetched beside it (scripts/fetch-guest-kernel.sh). */
const GUEST_612_DIR = path.join(ROOT, '.cache', 'guest-6.12');
const BENCH_GUEST_DIR = process.env.BENCH_GUEST_DIR ??
  path.join(ROOT, '.cache', cfg.kernel === '6.12' ? 'guest-bench-6.12' : 'guest-bench');
const BENCH_INITRD = path.join(BENCH_GUEST_DIR, 'initramfs-bench.img');
const TAG = 'bench';
/** How long a guest may take to unmount and power off after its workload ended; it takes seconds. */
const UNMOUNT_DEADLINE_MS = 90_000;

const log = (...a: unknown[]): void => console.error('[bench:guest]', ...a);

// ---------------------------------------------------------------------------------------------------
// Workloads: what the guest reports and how the table shows it

interface Metric {
  id: string;
  label: string;
  unit: 'MB/s' | 'IOPS' | 's';
  /** true: a higher value is better (throughput); false: lower is better (seconds). */
  higherBetter: boolean;
}

const FIO_METRICS: Record<string, Metric> = {
  'seq-read': { id: 'seq-read', label: 'seq read 128 KiB, psync', unit: 'MB/s', higherBetter: true },
  'seq-write': { id: 'seq-write', label: 'seq write 128 KiB, psync', unit: 'MB/s', higherBetter: true },
  'rand-read': { id: 'rand-read', label: 'rand read 4 KiB, psync', unit: 'IOPS', higherBetter: true },
  'rand-write': { id: 'rand-write', label: 'rand write 4 KiB, psync', unit: 'IOPS', higherBetter: true },
  'rand-read-aio': { id: 'rand-read-aio', label: 'rand read 4 KiB, libaio QD16', unit: 'IOPS', higherBetter: true },
};
const META_LABELS: Record<string, (n: number) => string> = {
  create: (n) => `create ${n} small files`,
  stat: (n) => `stat ${n} files (cold)`,
  readdir: (n) => `readdir ${n} entries (${cfg.passes} passes)`,
  'ls-l': (n) => `ls -l of ${n} files (cold)`,
  unlink: (n) => `unlink ${n} files`,
  untar: (n) => `untar source tree (${n} entries)`,
  'rm-tree': (n) => `rm -rf of that tree (${n} entries)`,
};
const META_ORDER = ['create', 'stat', 'readdir', 'ls-l', 'unlink', 'untar', 'rm-tree'];

interface FioResult {
  job: string;
  dir: 'read' | 'write';
  bs: number;
  ioKiB: number;
  runtimeMs: number;
  iops: number;
  mbPerSec: number;
  clatMeanUs: number;
  latMeanUs: number;
}

interface MetaResult {
  phase: string;
  n: number;
  seconds: number;
}

interface BackendRun {
  kind: Kind;
  ok: boolean;
  problems: string[];
  fio: FioResult[];
  meta: MetaResult[];
  info: Record<string, string>;
  bootMs?: number;
  workloadMs?: number;
  /** CPU seconds (user + system) the daemon process used over the run; ours and C only (9p runs inside QEMU). */
  daemonCpuS?: number;
  /** CPU seconds QEMU used (all its threads; with 9p this includes the 9p server), sampled up to its exit. */
  qemuCpuS?: number;
  mountLine?: string;
  command: string[];
  /** Ours only: what each phase cost in the request queues' kicks and call notifications (queueCounters). */
  queueCounters?: PhaseCounters[];
}

/** Requests served, kicks that woke a queue and call notifications, summed over the request queues, in one phase. */
interface PhaseCounters {
  phase: string;
  requests: number;
  kicks: number;
  calls: number;
  /** Polling windows (ours-poll): those that found a request, passed empty, or were skipped (backed off). */
  pollHits: number;
  pollMisses: number;
  pollSkips: number;
}

/** Each counter and the QueueStats field it sums. */
const COUNTERS = {
  requests: 'served', kicks: 'kicks', calls: 'notifications', pollHits: 'pollHits', pollMisses: 'pollMisses',
  pollSkips: 'pollSkips',
} as const;
const COUNTER_NAMES = Object.keys(COUNTERS) as (keyof typeof COUNTERS)[];

/** The phase a console line ends (`BENCH fio <job>`, `BENCH meta <phase>`; 'start': the workload starts), or null. */
function phaseEnded(line: string): string | null {
  if (line.startsWith('BENCH-INFO params')) return 'start';
  const m = /^BENCH (?:fio (\S+) (?:read|write)|meta (\S+)) /.exec(line);
  return m === null ? null : (m[1] ?? m[2]!);
}

/**
 * Per-phase counters from the stats lines ours wrote (one per SIGUSR2, sent as each phase ended): the difference
 * between consecutive lines, request queues only. Empty when a line is missing (the pairing would be off).
 */
function phaseCounters(stderr: string, phases: string[]): PhaseCounters[] {
  const lines = stderr.split('\n').filter((l) => l.startsWith(STATS_LINE_PREFIX)).map((l) => parseStatsLine(l)!);
  if (lines.length !== phases.length) return [];
  const sum = (i: number, k: (typeof COUNTERS)[keyof typeof COUNTERS]): number =>
    lines[i]!.queues.filter((q) => q.queue >= 1).reduce((t, q) => t + q[k], 0);
  const out: PhaseCounters[] = [];
  for (let i = 1; i < lines.length; i++) {
    const c = { phase: phases[i]! } as PhaseCounters;
    for (const name of COUNTER_NAMES) c[name] = sum(i, COUNTERS[name]) - sum(i - 1, COUNTERS[name]);
    out.push(c);
  }
  return out;
}

/** Parses the guest's console: `BENCH fio ...`, `BENCH meta ...`, `BENCH-INFO ...`. */
function parseConsole(text: string): Pick<BackendRun, 'fio' | 'meta' | 'info'> & { logs: string[] } {
  const fio: FioResult[] = [];
  const meta: MetaResult[] = [];
  const info: Record<string, string> = {};
  const logs: string[] = [];
  for (const line of text.split('\n')) {
    let m = /^BENCH fio (\S+) (read|write) (.*)$/.exec(line);
    if (m) {
      const kv = Object.fromEntries(m[3].trim().split(/\s+/).map((p) => p.split('=') as [string, string]));
      const bs = Number(kv.bs);
      const ioKiB = Number(kv.io_kib);
      const runtimeMs = Number(kv.runtime_ms);
      // From the byte count rather than fio's rounded fields.
      const bytes = ioKiB * 1024;
      fio.push({
        job: m[1], dir: m[2] as 'read' | 'write', bs, ioKiB, runtimeMs,
        iops: bytes / bs / (runtimeMs / 1000),
        mbPerSec: bytes / 1e6 / (runtimeMs / 1000),
        clatMeanUs: Number(kv.clat_us), latMeanUs: Number(kv.lat_us),
      });
      continue;
    }
    m = /^BENCH meta (\S+) n=(\d+) cs=(-?\d+)$/.exec(line);
    if (m) {
      meta.push({ phase: m[1], n: Number(m[2]), seconds: Number(m[3]) / 100 });
      continue;
    }
    m = /^BENCH-INFO (\S+) ?(.*)$/.exec(line);
    if (m) {
      info[m[1]] = m[2].trim();
      continue;
    }
    if (line.startsWith('BENCH-LOG ')) logs.push(line.slice(10));
  }
  return { fio, meta, info, logs };
}

// ---------------------------------------------------------------------------------------------------
// Preparation

function mtime(file: string): number {
  try {
    return fs.statSync(file).mtimeMs;
  } catch {
    return -1;
  }
}

/** (Re)builds the bench initramfs when it is missing or older than its inputs. */
function ensureBenchImage(base: GuestImage): GuestImage {
  const t = mtime(BENCH_INITRD);
  if (t < 0 || t < mtime(BUILD_SCRIPT) || t < mtime(WORKLOAD) || t < mtime(base.initrd)) {
    log('building the bench initramfs (benchmarks/guest/build-initramfs.sh)');
    const guestDir = path.dirname(base.initrd);
    const r = spawnSync('bash', [BUILD_SCRIPT], { encoding: 'utf8', env: { ...process.env, BENCH_GUEST_DIR, GUEST_DIR: guestDir }, stdio: ['ignore', 'pipe', 'pipe'] });
    if (r.status !== 0) throw new Error(`bench:guest: build-initramfs.sh failed (status ${r.status}):\n${r.stdout}${r.stderr}`);
    log(r.stdout.trim().split('\n').pop());
  }
  return { ...base, initrd: BENCH_INITRD };
}

interface SourceTree {
  tarball: string;
  from: string;
  files: number;
  bytes: number;
}

/** A tarball of real source files: the kernel's UAPI headers when installed, else AssemblyScript's own package. */
function makeSourceTarball(dir: string): SourceTree {
  const candidates: [string, string][] = [
    ['/usr/include', 'linux'],
    [path.join(ROOT, 'node_modules'), 'assemblyscript'],
  ];
  for (const [parent, name] of candidates) {
    const from = path.join(parent, name);
    if (!fs.existsSync(from)) continue;
    const tarball = path.join(dir, 'src.tar');
    const r = spawnSync('tar', ['cf', tarball, '-C', parent, name], { encoding: 'utf8' });
    if (r.status !== 0) continue;
    let files = 0;
    let bytes = 0;
    const walk = (d: string): void => {
      for (const e of fs.readdirSync(d, { withFileTypes: true })) {
        const p = path.join(d, e.name);
        if (e.isDirectory()) walk(p);
        else if (e.isFile()) {
          files++;
          bytes += fs.statSync(p).size;
        }
      }
    };
    walk(from);
    return { tarball, from, files, bytes };
  }
  throw new Error('bench:guest: no source tree to tar (neither /usr/include/linux nor node_modules/assemblyscript)');
}

/**
 * CPU seconds (user + system) of a process and its descendants, or undefined once it has exited. The C
 * virtiofsd does its work in a child it forks into a sandbox; a reaped child's time is in its parent's
 * cutime/cstime, a live one's is read from the child itself.
 */
function treeCpuSeconds(pid: number): number | undefined {
  let stat: string;
  try {
    stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // Fields after "(comm) ": [0] is field 3 (state); utime, stime, cutime, cstime are fields 14..17.
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
  let children: number[] = [];
  try {
    for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
      const list = fs.readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim();
      if (list) children = children.concat(list.split(/\s+/).map(Number));
    }
  } catch {
    // exited meanwhile, or no children file (kernels without CONFIG_PROC_CHILDREN)
  }
  let total = ticks / 100;
  for (const child of children) total += treeCpuSeconds(child) ?? 0;
  return total;
}

// ---------------------------------------------------------------------------------------------------
// One backend

async function runBackend(kind: Kind, image: GuestImage, src: SourceTree, work: string): Promise<BackendRun> {
  const share = path.join(work, `share-${kind}`);
  fs.rmSync(share, { recursive: true, force: true }); // a repetition starts from an empty share, as the first run
  fs.mkdirSync(share, { recursive: true });
  fs.copyFileSync(src.tarball, path.join(share, 'bench-src.tar'));
  const socketPath = path.join(work, `${kind}.sock`);
  let backend: BackendHandle | undefined;
  const append = [
    `bench_fs=${kind === '9p' ? '9p' : 'virtiofs'}`,
    `bench_runtime=${cfg.runtimeS}`, `bench_size=${cfg.sizeMiB}`, `bench_files=${cfg.files}`,
    `bench_passes=${cfg.passes}`, `bench_jobs=${cfg.jobs}`, `bench_msize=${cfg.msize}`, `bench_numjobs=${cfg.numjobs}`,
    ...(cfg.ninepCache ? [`bench_9p_cache=${cfg.ninepCache}`] : []),
  ].join(' ');
  const qemuArgs = ['-smp', String(cfg.smp)];
  const oursKind = isOurs(kind);
  if (oursKind && cfg.queues > 1) qemuArgs.push('-global', `vhost-user-fs-pci.num-request-queues=${cfg.queues}`);
  let command: string[];
  if (kind === '9p') {
    const virtfs = `local,path=${share},mount_tag=${TAG},security_model=passthrough,id=fs1`;
    qemuArgs.push('-virtfs', virtfs);
    command = [QEMU, '-virtfs', virtfs];
  } else {
    backend = await startBackend(oursKind ? 'ours' : 'c', {
      socketPath, sharedDir: share, cache: 'auto', logLevel: oursKind ? 'warn' : undefined,
      extraArgs: [
        ...(kind === 'ours-poll' ? [`--poll-us=${cfg.pollUs}`] : []),
        ...(kind === 'ours-threads' ? ['--queue-threads'] : []),
        ...(oursKind && cfg.queues > 1 ? [`--num-request-queues=${cfg.queues}`] : []),
        ...(oursKind ? cfg.oursArgs : []),
      ],
    });
    command = backend.command;
  }
  // Bounds: boot, the file layout, fio jobs and the metadata phases (9p's untar takes minutes with 2 vCPUs).
  const jobs = cfg.jobs.split(',').filter(Boolean).length;
  const timeoutMs = (120 + jobs * (cfg.runtimeS + 15) + Math.ceil(cfg.files / 10) + 300) * 1000;
  const t0 = Date.now();
  const phases: string[] = [];
  // The workload's figures are in once it has exited; a guest whose unmount then hangs (the C virtiofsd's did:
  // `task umount blocked for more than 600 seconds`) would hold the bench until the total timeout, since the
  // hung-task reports keep the console from going idle.
  let unmountTimer: NodeJS.Timeout | undefined;
  let unmountHung = false;
  const run = startGuest({
    socketPath: kind === '9p' ? '' : socketPath,
    tag: TAG,
    memMiB: cfg.memMiB,
    image,
    backend,
    timeoutMs,
    idleTimeoutMs: 240_000,
    qemuArgs,
    append,
    onLine: (line) => {
      if (/^(BENCH |E2E-RESULT \S+ fail)/.test(line)) log(`${kind}: ${line}`);
      if (line.startsWith('E2E-RESULT workload-exit ') && unmountTimer === undefined) {
        unmountTimer = setTimeout(() => {
          unmountHung = true;
          if (run.pid !== undefined) process.kill(run.pid, 'SIGKILL');
        }, UNMOUNT_DEADLINE_MS);
      }
      const phase = oursKind && backend !== undefined ? phaseEnded(line) : null;
      // A job with reads and writes prints two lines: one snapshot.
      if (phase !== null && phases.at(-1) !== phase && backend!.running()) {
        phases.push(phase);
        process.kill(backend!.pid, 'SIGUSR2');
      }
    },
  });
  // CPU time of the daemon and of QEMU, sampled until each exits (the C virtiofsd exits with the guest).
  let daemonCpuS: number | undefined;
  let qemuCpuS: number | undefined;
  const sample = (pid: number | undefined): number | undefined =>
    pid !== undefined && pid > 0 ? treeCpuSeconds(pid) : undefined;
  const poll = setInterval(() => {
    daemonCpuS = sample(backend?.pid) ?? daemonCpuS;
    qemuCpuS = sample(run.pid) ?? qemuCpuS;
  }, 250);
  let g: GuestResult;
  try {
    g = await run.result;
    daemonCpuS = sample(backend?.pid) ?? daemonCpuS;
  } finally {
    clearInterval(poll);
    clearTimeout(unmountTimer);
    await backend?.stop();
  }
  log(`${kind}: guest ${g.done ? 'finished' : 'did not finish'} in ${((Date.now() - t0) / 1000).toFixed(1)} s`);

  const parsed = parseConsole(g.console);
  const problems: string[] = [];
  if (g.timedOut) problems.push(`QEMU killed by the harness (${g.timeoutReason})`);
  if (unmountHung && !g.done) {
    problems.push(`QEMU killed by the harness: no unmount ${UNMOUNT_DEADLINE_MS / 1000} s after the workload ended`);
  }
  if (!g.done) problems.push(`no E2E-DONE (qemu ${fmtStatus(g.exit)})`);
  for (const r of g.results) if (!r.ok) problems.push(`${r.name}: ${r.detail}`);
  if (parsed.logs.length) problems.push(`fio said:\n    ${parsed.logs.join('\n    ')}`);
  if (problems.length) {
    problems.push(`--- console (tail) ---\n${tailLines(g.console, 25)}`);
    if (g.stderr.trim()) problems.push(`--- qemu stderr ---\n${tailLines(g.stderr, 10)}`);
    if (backend) problems.push(`--- ${kind} stderr (tail) ---\n${tailLines(backend.stderr(), 20)}`);
  }
  fs.rmSync(share, { recursive: true, force: true });
  const queueCounters = oursKind && backend !== undefined ? phaseCounters(backend.stderr(), phases) : undefined;
  return {
    queueCounters,
    kind,
    ok: problems.length === 0,
    problems,
    fio: parsed.fio,
    meta: parsed.meta,
    info: { ...g.info, ...parsed.info },
    bootMs: g.bootMs,
    workloadMs: g.workloadMs,
    daemonCpuS,
    qemuCpuS,
    mountLine: g.info['mount-line'],
    command,
  };
}

// ---------------------------------------------------------------------------------------------------
// The report

interface Row {
  metric: Metric;
  values: Partial<Record<Kind, number>>;
  /** Extra per-backend detail for the JSON (mean completion latency in µs for fio rows). */
  latencyUs?: Partial<Record<Kind, number>>;
}

function buildRows(runs: BackendRun[]): Row[] {
  const rows: Row[] = [];
  for (const job of cfg.jobs.split(',').filter(Boolean)) {
    const metric = FIO_METRICS[job];
    if (!metric) continue;
    const row: Row = { metric, values: {}, latencyUs: {} };
    for (const r of runs) {
      const f = r.fio.find((x) => x.job === job);
      if (!f) continue;
      row.values[r.kind] = metric.unit === 'MB/s' ? f.mbPerSec : f.iops;
      row.latencyUs![r.kind] = f.clatMeanUs;
    }
    rows.push(row);
  }
  for (const phase of META_ORDER) {
    const n = runs.map((r) => r.meta.find((m) => m.phase === phase)?.n).find((x) => x !== undefined);
    if (n === undefined) continue;
    const row: Row = { metric: { id: phase, label: META_LABELS[phase](n), unit: 's', higherBetter: false }, values: {} };
    for (const r of runs) {
      const m = r.meta.find((x) => x.phase === phase);
      if (m) row.values[r.kind] = m.seconds;
    }
    rows.push(row);
  }
  return rows;
}

function fmtValue(v: number | undefined, unit: Metric['unit']): string {
  if (v === undefined || !Number.isFinite(v)) return '—';
  if (unit === 's') return v.toFixed(2);
  if (unit === 'MB/s') return v >= 100 ? v.toFixed(0) : v.toFixed(1);
  return v.toFixed(0);
}

function ratio(a: number | undefined, b: number | undefined): number | undefined {
  return a === undefined || b === undefined || b === 0 ? undefined : a / b;
}

function fmtRatio(v: number | undefined): string {
  return v === undefined ? '—' : `${v.toFixed(2)}×`;
}

const KIND_NAMES: Record<Kind, string> = {
  ours: 'ours', 'ours-poll': `ours --poll-us=${cfg.pollUs}`, 'ours-threads': 'ours --queue-threads', c: 'C virtiofsd',
  '9p': 'virtio-9p',
};

function tableCells(rows: Row[]): string[][] {
  const header = ['workload', 'unit', ...kinds.map((k) => KIND_NAMES[k])];
  const withC = kinds.includes('ours') && kinds.includes('c');
  const with9p = kinds.includes('ours') && kinds.includes('9p');
  const pollWithC = kinds.includes('ours-poll') && kinds.includes('c');
  const threadsWithC = kinds.includes('ours-threads') && kinds.includes('c');
  if (withC) header.push('ours/C');
  if (pollWithC) header.push(`${KIND_NAMES['ours-poll']}/C`);
  if (threadsWithC) header.push(`${KIND_NAMES['ours-threads']}/C`);
  if (with9p) header.push('ours/9p');
  const out = [header];
  for (const row of rows) {
    const unit = `${row.metric.unit} ${row.metric.higherBetter ? '↑' : '↓'}`;
    const cells = [row.metric.label, unit, ...kinds.map((k) => fmtValue(row.values[k], row.metric.unit))];
    if (withC) cells.push(fmtRatio(ratio(row.values.ours, row.values.c)));
    if (pollWithC) cells.push(fmtRatio(ratio(row.values['ours-poll'], row.values.c)));
    if (threadsWithC) cells.push(fmtRatio(ratio(row.values['ours-threads'], row.values.c)));
    if (with9p) cells.push(fmtRatio(ratio(row.values.ours, row.values['9p'])));
    out.push(cells);
  }
  return out;
}

function textTable(cells: string[][]): string {
  const widths = cells[0].map((_, i) => Math.max(...cells.map((r) => [...r[i]].length)));
  const line = (r: string[]) => r.map((c, i) => (i < 2 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  return [line(cells[0]), widths.map((w) => '-'.repeat(w)).join('  '), ...cells.slice(1).map(line)].join('\n');
}

/** `left` leading columns are left-aligned, the rest (numbers) right-aligned. */
function markdownTable(cells: string[][], left = 2): string {
  const row = (r: string[]) => `| ${r.join(' | ')} |`;
  const sep = `|${cells[0].map((_, i) => (i < left ? ' --- ' : ' ---: ')).join('|')}|`;
  return [row(cells[0]), sep, ...cells.slice(1).map(row)].join('\n');
}

/** Per phase and backend of ours: kicks and call notifications per request (the guest pays for each). */
function countersCells(runs: BackendRun[]): string[][] | null {
  const ours = runs.filter((r) => r.queueCounters !== undefined && r.queueCounters.length > 0);
  if (ours.length === 0) return null;
  const per = (n: number, d: number): string => (d === 0 ? '—' : (n / d).toFixed(2));
  const polls = (r: BackendRun): boolean => r.kind === 'ours-poll';
  const header = ['phase', ...ours.flatMap((r) => [`${KIND_NAMES[r.kind]} requests`, 'kicks/request', 'calls/request',
    ...(polls(r) ? ['windows hit/missed/skipped per request'] : [])])];
  const rows = ours[0]!.queueCounters!.map((c0) => [c0.phase, ...ours.flatMap((r) => {
    const c = r.queueCounters!.find((x) => x.phase === c0.phase);
    const windows = polls(r) ? [c === undefined ? '—'
      : `${per(c.pollHits, c.requests)} / ${per(c.pollMisses, c.requests)} / ${per(c.pollSkips, c.requests)}`] : [];
    return c === undefined ? ['—', '—', '—', ...windows]
      : [String(c.requests), per(c.kicks, c.requests), per(c.calls, c.requests), ...windows];
  })]);
  return [header, ...rows];
}

function countersSection(runs: BackendRun[]): string[] {
  const cells = countersCells(runs);
  if (cells === null) return [];
  return [
    '## Kicks and calls per request (ours)',
    '',
    'Summed over the request queues, per phase, from the daemon\'s stats line (SIGUSR2 as each phase ends; the C',
    'virtiofsd has no such counters). A kick is a guest notification that woke a queue (several between two wake-ups',
    'count once); a call is an interrupt the daemon raised. Each costs the guest an exit (kick) or an interrupt (call).',
    '',
    markdownTable(cells, 1),
    '',
  ];
}

function runSummary(r: BackendRun): string {
  const s = (ms: number | undefined) => (ms === undefined ? '?' : (ms / 1000).toFixed(1));
  const cpu = [
    r.daemonCpuS === undefined ? '' : `daemon CPU ${r.daemonCpuS.toFixed(1)} s`,
    r.qemuCpuS === undefined ? '' : `QEMU CPU ${r.qemuCpuS.toFixed(1)} s`,
  ].filter(Boolean);
  return [`boot ${s(r.bootMs)} s`, `workload ${s(r.workloadMs)} s`, ...cpu].join(', ');
}

function firstLine(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return `${r.stdout ?? ''}${r.stderr ?? ''}`.trim().split('\n')[0] ?? '';
}

function machine(image: GuestImage, loadStart: number[]) {
  const cpuinfo = fs.readFileSync('/proc/cpuinfo', 'utf8');
  const model = /^model name\s*:\s*(.*)$/m.exec(cpuinfo)?.[1]?.trim() ?? 'unknown';
  const cVirtiofsd = findCVirtiofsd();
  const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
  return {
    cpu: model,
    cores: os.cpus().length,
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    hostKernel: `${os.type()} ${os.release()}`,
    qemu: firstLine(QEMU, ['--version']),
    accel: ACCEL,
    guestKernel: image.kernelVersion,
    guestVcpus: cfg.smp,
    guestMemMiB: cfg.memMiB,
    node: process.version,
    ours: `virtiofsd-ts ${pkg.version}`,
    /** 1/5/15-minute load averages when the run started and ended: other work on the machine skews results. */
    loadAvg: { start: loadStart.map((x) => Math.round(x * 100) / 100), end: os.loadavg().map((x) => Math.round(x * 100) / 100) },
    cVirtiofsd: cVirtiofsd ? `${cVirtiofsd} (${firstLine(cVirtiofsd, ['--version']) || 'version unknown'})` : 'not found',
  };
}

// ---------------------------------------------------------------------------------------------------

/** One backend's runs as one: every number the median over the runs that have it (a single run: itself). */
function medianRun(rs: BackendRun[]): BackendRun {
  if (rs.length === 1) return rs[0]!;
  const of = (pick: (r: BackendRun) => number | undefined): number | undefined => {
    const xs = rs.map(pick).filter((x): x is number => x !== undefined);
    return xs.length === 0 ? undefined : median(xs);
  };
  const fio: FioResult[] = [];
  for (const job of new Set(rs.flatMap((r) => r.fio.map((f) => f.job)))) {
    const fr = rs.map((r) => r.fio.find((f) => f.job === job)).filter((f): f is FioResult => f !== undefined);
    const m = (k: 'ioKiB' | 'runtimeMs' | 'iops' | 'mbPerSec' | 'clatMeanUs' | 'latMeanUs'): number => median(fr.map((f) => f[k]));
    fio.push({ ...fr[0]!, ioKiB: m('ioKiB'), runtimeMs: m('runtimeMs'), iops: m('iops'), mbPerSec: m('mbPerSec'),
      clatMeanUs: m('clatMeanUs'), latMeanUs: m('latMeanUs') });
  }
  const meta: MetaResult[] = [];
  for (const phase of new Set(rs.flatMap((r) => r.meta.map((x) => x.phase)))) {
    const ms = rs.map((r) => r.meta.find((x) => x.phase === phase)).filter((x): x is MetaResult => x !== undefined);
    meta.push({ ...ms[0]!, seconds: median(ms.map((x) => x.seconds)) });
  }
  let queueCounters: PhaseCounters[] | undefined;
  if (rs[0]!.queueCounters !== undefined) {
    queueCounters = [];
    for (const phase of new Set(rs.flatMap((r) => (r.queueCounters ?? []).map((c) => c.phase)))) {
      const cs = rs.map((r) => r.queueCounters?.find((c) => c.phase === phase)).filter((c): c is PhaseCounters => c !== undefined);
      const c = { phase } as PhaseCounters;
      for (const name of COUNTER_NAMES) c[name] = median(cs.map((x) => x[name]));
      queueCounters.push(c);
    }
  }
  return {
    ...rs[0]!, queueCounters, ok: rs.every((r) => r.ok), problems: rs.flatMap((r) => r.problems), fio, meta,
    bootMs: of((r) => r.bootMs), workloadMs: of((r) => r.workloadMs), daemonCpuS: of((r) => r.daemonCpuS),
    qemuCpuS: of((r) => r.qemuCpuS),
  };
}

async function main(): Promise<number> {
  const missing = missingGuestTools();
  if (!which('tar')) missing.push('tar');
  if (kinds.includes('c') && !findCVirtiofsd()) missing.push('the C virtiofsd (apt-get install qemu-system-common)');
  if (missing.length) {
    log(`missing: ${missing.join(', ')}`);
    return 2;
  }
  const started = new Date();
  const loadStart = os.loadavg();
  const image = ensureBenchImage(cfg.kernel === '6.12'
    ? ensureGuestImage(GUEST_612_DIR, { GUEST_KERNEL_SERIES: '6.12' }) : ensureGuestImage());
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'vfsd-bench-guest-'));
  /** Every run, in order; `runs` has one per backend: the runs themselves, or their medians (--reps). */
  const allRuns: BackendRun[] = [];
  const runs: BackendRun[] = [];
  let src: SourceTree;
  try {
    src = makeSourceTarball(work);
    log(`config: ${JSON.stringify(cfg)}; backends ${kinds.join(', ')}; source tree ${src.from} (${src.files} files)`);
    for (let rep = 0; rep < cfg.reps; rep++) {
      for (const kind of rep % 2 === 0 ? kinds : [...kinds].reverse()) {
        log(`${kind}: booting${cfg.reps > 1 ? ` (repetition ${rep + 1}/${cfg.reps})` : ''}`);
        allRuns.push(await runBackend(kind, image, src, work));
      }
    }
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
  for (const kind of kinds) runs.push(medianRun(allRuns.filter((r) => r.kind === kind)));

  const rows = buildRows(runs);
  const cells = tableCells(rows);
  const mach = machine(image, loadStart);
  const elapsedS = Math.round((Date.now() - started.getTime()) / 1000);
  const fioVersion = runs.find((r) => r.info.fio)?.info.fio ?? 'unknown';
  const ninepMount = runs.find((r) => r.kind === '9p')?.mountLine;

  console.log(textTable(cells));
  console.log('\n↑ higher is better, ↓ lower is better; ratios are ours divided by the other (time ratios > 1 mean ours is slower).');
  for (const r of runs) {
    console.log(`${KIND_NAMES[r.kind]}: ${runSummary(r)}${r.ok ? '' : ' — PROBLEMS:'}`);
    for (const p of r.problems) console.log(`  ${p}`);
  }
  const counters = countersCells(runs);
  if (counters !== null) console.log(`\nkicks and calls per request (ours):\n${textTable(counters)}`);
  console.log(`total ${elapsedS} s`);

  if (save) {
    const date = started.toISOString().slice(0, 10);
    fs.mkdirSync(outDir, { recursive: true });
    // A run of another shape than the default one (6.12 guest, several vCPUs or queues) is named apart, so it
    // does not overwrite the day's default run.
    const shape = [cfg.kernel === '6.1' ? '' : cfg.kernel, cfg.smp > 1 ? `${cfg.smp}cpu` : '',
      cfg.queues > 1 ? `${cfg.queues}q` : ''].filter((x) => x !== '').join('-');
    const resultName = `guest-${date}${shape === '' ? '' : `-${shape}`}`;
    const json = {
      date: started.toISOString(),
      elapsedS,
      config: { ...cfg, backends: kinds, sourceTree: { from: src.from, files: src.files, bytes: src.bytes }, fio: fioVersion },
      machine: mach,
      repetitions: cfg.reps > 1 ? allRuns.map((r) => ({ kind: r.kind, ok: r.ok, fio: r.fio, meta: r.meta })) : undefined,
      backends: runs.map((r) => ({
        kind: r.kind, ok: r.ok, problems: r.problems, command: r.command, mount: r.mountLine,
        bootMs: r.bootMs, workloadMs: r.workloadMs, daemonCpuS: r.daemonCpuS, qemuCpuS: r.qemuCpuS, fio: r.fio, meta: r.meta,
        queueCounters: r.queueCounters,
      })),
      table: rows.map((row) => ({
        id: row.metric.id, label: row.metric.label, unit: row.metric.unit, higherBetter: row.metric.higherBetter,
        values: row.values, clatMeanUs: row.latencyUs,
        oursOverC: ratio(row.values.ours, row.values.c), oursOver9p: ratio(row.values.ours, row.values['9p']),
        oursPollOverC: ratio(row.values['ours-poll'], row.values.c),
        oursThreadsOverC: ratio(row.values['ours-threads'], row.values.c),
      })),
    };
    const jsonFile = path.join(outDir, `${resultName}.json`);
    fs.writeFileSync(jsonFile, `${JSON.stringify(json, null, 2)}\n`);
    const latRows = rows.filter((r) => r.latencyUs && Object.keys(r.latencyUs).length);
    const md = [
      `# Guest benchmark, ${date}`,
      '',
      'One Linux guest under QEMU runs the same workload on a share served by each backend in turn: our daemon (with its',
      `defaults, and as \`${KIND_NAMES['ours-poll']}\` with that option added${kinds.includes('ours-poll') ? '' : ' — not in this run'}` +
        `${kinds.includes('ours-threads') ? `, and as \`${KIND_NAMES['ours-threads']}\`` : ''}), the C virtiofsd`,
      '(all vhost-user-fs, `cache=auto`, mounted `-t virtiofs`) and QEMU\'s built-in virtio-9p. Produced by',
      '`npm run bench:guest` (benchmarks/guest/); each backend gets a fresh shared directory on the same host filesystem.',
      '',
      markdownTable(cells),
      '',
      '↑ higher is better, ↓ lower is better. Ratios are ours divided by the other; for times (s) a ratio above 1 means ours is slower.',
      cfg.reps > 1
        ? `Medians of ${cfg.reps} runs per backend (each run a fresh boot; the backends alternate, the order reversed every other`
          + ' repetition); every run is in the JSON. Under TCG on a small machine, single fio runs differ by tens of percent.'
        : 'One run per backend, one backend after the other: under TCG on a small shared machine, repeated runs of the fio rows',
      ...(cfg.reps > 1 ? [] : ['differ by tens of percent (more than the gaps between the virtio-fs backends in places); the metadata rows are steadier.']),
      '',
      '## Workload',
      '',
      `- fio ${fioVersion}, one job at a time, \`--direct=1\` (every request reaches the backend; all three drop O_DIRECT on`,
      `  the host, so the host page cache serves them alike), \`--runtime=${cfg.runtimeS} --time_based\` on one ${cfg.sizeMiB} MiB file`,
      `  written with dd first; psync at queue depth 1 unless noted; ${cfg.numjobs} fio thread(s) per job; request queues:`,
      `  ours ${cfg.queues}, the C virtiofsd 1 (QEMU 7.2's serves one); ${cfg.smp} vCPU(s).`,
      `- Metadata in busybox sh (builtins, no fork per file), guest caches dropped before each phase: create = \`echo i > f\``,
      `  for ${cfg.files} files; stat = \`[ -e f ]\` per file; readdir = glob of the directory, ${cfg.passes} passes; \`ls -l\`; unlink = \`rm dir/f*\`.`,
      `- untar: \`tar xf\` (busybox) of a tarball of \`${src.from}\` (${src.files} files, ${(src.bytes / 1e6).toFixed(1)} MB) read from the share,`,
      '  then `sync`; then `rm -rf` of the extracted tree. Times from the guest\'s /proc/uptime (10 ms resolution).',
      `- 9p mount: \`${ninepMount ?? `trans=virtio,version=9p2000.L,msize=${cfg.msize}`}\`${cfg.ninepCache ? '' : ' (the kernel\'s default cache mode, none)'}; QEMU: \`-virtfs local,path=DIR,mount_tag=${TAG},security_model=passthrough,id=fs1\`.`,
      '',
      '## Mean completion latency (fio clat, µs)',
      '',
      markdownTable([
        ['workload', ...kinds.map((k) => KIND_NAMES[k])],
        ...latRows.map((r) => [r.metric.label, ...kinds.map((k) => (r.latencyUs![k] === undefined ? '—' : r.latencyUs![k]!.toFixed(0)))]),
      ], 1),
      '',
      ...countersSection(runs),
      '## Runs',
      '',
      ...runs.map((r) => `- ${KIND_NAMES[r.kind]}: \`${r.command.map((a) => (path.isAbsolute(a) && a.startsWith(ROOT) ? path.relative(ROOT, a) : a).split(work).join('$WORK')).join(' ')}\` — ${runSummary(r)}${r.ok ? '' : `; problems: ${r.problems.slice(0, 3).join('; ').replace(/\n/g, ' ')}`}`),
      '',
      '## Machine',
      '',
      `- CPU: ${mach.cpu}, ${mach.cores} cores; memory ${mach.memoryGiB} GiB; host kernel ${mach.hostKernel}`,
      `- ${mach.qemu}; accelerator ${mach.accel.toUpperCase()}; guest: Debian kernel ${mach.guestKernel}, ${mach.guestVcpus} vCPU, ${mach.guestMemMiB} MiB (memory-backend-memfd, share=on)`,
      `- Node.js ${mach.node}; ${mach.ours}; C virtiofsd ${mach.cVirtiofsd}`,
      `- load average (1/5/15 min) at start ${mach.loadAvg.start.join(' / ')}, at end ${mach.loadAvg.end.join(' / ')}; ${cfg.reps > 1 ? `${cfg.reps} runs per backend, medians` : 'one run per backend, no repetitions'}`,
      `- whole run: ${elapsedS} s`,
      '',
    ].join('\n');
    const svgFile = path.join(outDir, `${resultName}.svg`);
    fs.writeFileSync(svgFile, guestSvgChart(json.table, kinds, `Guest benchmark ${date}: ours vs C virtiofsd vs virtio-9p`));
    const mdFile = path.join(outDir, `${resultName}.md`);
    fs.writeFileSync(mdFile, md);
    log(`saved ${path.relative(ROOT, mdFile)} and ${path.relative(ROOT, jsonFile)}`);
  }
  return runs.every((r) => r.ok) ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    log(err instanceof Error ? (err.stack ?? err.message) : String(err));
    process.exit(2);
  },
);

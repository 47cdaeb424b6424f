/**
 * Real-guest end-to-end harness: a Linux guest under QEMU (TCG) mounts a virtio-fs share served by a
 * vhost-user-fs backend — ours (`dist/host/cli.js`) or the C virtiofsd as a reference — runs a workload
 * script, and reports on its serial console. The host parses the console and re-checks the shared
 * directory itself after the guest has powered off.
 *
 * Guest image: `.cache/guest/` (scripts/fetch-guest-kernel.sh, scripts/build-initramfs.sh). The guest's
 * /init runs `<share>/.e2e/workload.sh`, which `startGuest` writes before boot, and prints
 *   E2E-RESULT <step> ok|fail <detail>     one per step
 *   E2E-INFO <key> <value>                 facts for the host
 *   E2E-DONE                               the workload finished and the share is unmounted
 * Every QEMU run has a hard timeout that SIGKILLs it; nothing here can hang a test.
 *
 * Environment knobs: E2E_GUEST_DIR (image directory), E2E_QEMU (QEMU binary), E2E_ACCEL (default tcg),
 * E2E_BIOS (firmware path, or `seabios` for QEMU's default), E2E_BZIMAGE=1 (boot vmlinuz, not vmlinux),
 * E2E_C_VIRTIOFSD (the reference daemon's path).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { RUNTIME, processTree, signalChild } from '../util/runtime.js';
import { sleep } from '../util/wait.js';
import { missingRoot } from '../util/prereq.js';

// ---------------------------------------------------------------------------------------------------
// Locations and prerequisites

function findRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = path.join(dir, 'package.json');
    if (fs.existsSync(pkg)) {
      try {
        if (JSON.parse(fs.readFileSync(pkg, 'utf8')).name === 'virtiofsd-ts') return dir;
      } catch {
        // not ours; keep walking
      }
    }
    const up = path.dirname(dir);
    if (up === dir) throw new Error('e2e: cannot find the virtiofsd-ts package root');
    dir = up;
  }
}

export const ROOT = findRoot();
export const GUEST_DIR = process.env.E2E_GUEST_DIR ?? path.join(ROOT, '.cache', 'guest');
export const QEMU = process.env.E2E_QEMU ?? 'qemu-system-x86_64';
/** Accelerator for QEMU; TCG by default (KVM is not usable on the project's machines). */
export const ACCEL = process.env.E2E_ACCEL ?? 'tcg';
export const OUR_CLI = path.join(ROOT, 'dist', 'host', 'cli.js');
export const WORKLOAD_SCRIPT = path.join(ROOT, 'test', 'e2e', 'workload.sh');
const FETCH_SCRIPT = path.join(ROOT, 'scripts', 'fetch-guest-kernel.sh');
const BUILD_SCRIPT = path.join(ROOT, 'scripts', 'build-initramfs.sh');

/** The C virtiofsd: `$E2E_C_VIRTIOFSD`, else Debian's qemu-system-common path, else the standalone package's. */
export function findCVirtiofsd(): string | undefined {
  const candidates = [process.env.E2E_C_VIRTIOFSD, '/usr/lib/qemu/virtiofsd', '/usr/libexec/virtiofsd'];
  return candidates.find((c): c is string => !!c && isExecutable(c));
}

function isExecutable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

export function which(cmd: string): string | undefined {
  if (cmd.includes('/')) return isExecutable(cmd) ? cmd : undefined;
  for (const dir of (process.env.PATH ?? '').split(':')) {
    if (dir && isExecutable(path.join(dir, cmd))) return path.join(dir, cmd);
  }
  return undefined;
}

export interface GuestImage {
  /** vmlinux (ELF, booted through PVH) when fetch-guest-kernel.sh could extract it, else the bzImage. */
  kernel: string;
  initrd: string;
  kernelVersion: string;
  /** qboot (a minimal firmware, ~2 s faster than SeaBIOS under TCG) when installed; `E2E_BIOS=seabios` opts out. */
  bios?: string;
}

const QBOOT = '/usr/share/qemu/qboot.rom';

function imagePaths(dir: string): GuestImage {
  const versionFile = path.join(dir, 'kernel-version');
  const vmlinux = path.join(dir, 'vmlinux');
  const biosEnv = process.env.E2E_BIOS;
  const bios = biosEnv === 'seabios' ? undefined : (biosEnv ?? (fs.existsSync(QBOOT) ? QBOOT : undefined));
  return {
    kernel: fs.existsSync(vmlinux) && process.env.E2E_BZIMAGE !== '1' ? vmlinux : path.join(dir, 'vmlinuz'),
    bios,
    initrd: path.join(dir, 'initramfs.cpio.gz'),
    kernelVersion: fs.existsSync(versionFile) ? fs.readFileSync(versionFile, 'utf8').trim() : '',
  };
}

function mtime(file: string): number {
  try {
    return fs.statSync(file).mtimeMs;
  } catch {
    return -1;
  }
}

function runScript(script: string, dir: string, env: Record<string, string>): void {
  const r = spawnSync('bash', [script], { encoding: 'utf8', env: { ...process.env, ...env, GUEST_DIR: dir } });
  if (r.status !== 0) {
    const out = `${r.stdout ?? ''}${r.stderr ?? ''}`.trim();
    throw new Error(`e2e: ${path.relative(ROOT, script)} failed (status ${r.status}):\n${out}`);
  }
}

/**
 * Makes sure the guest kernel and initramfs exist: fetches the kernel (apt-get download; needs the Debian
 * archive) when it is missing, and (re)builds the initramfs when it is missing or older than its build
 * script or the kernel. Throws with the script's output when either step fails. `dir` and `fetchEnv` select
 * another guest (e.g. `.cache/guest-6.12` with GUEST_KERNEL_SERIES=6.12, see fetch-guest-kernel.sh).
 */
export function ensureGuestImage(dir = GUEST_DIR, fetchEnv: Record<string, string> = {}): GuestImage {
  let image = imagePaths(dir);
  if (!fs.existsSync(path.join(dir, 'vmlinuz')) || !fs.existsSync(path.join(dir, 'modules.order'))) {
    runScript(FETCH_SCRIPT, dir, fetchEnv);
  }
  const initrdTime = mtime(image.initrd);
  if (initrdTime < mtime(BUILD_SCRIPT) || initrdTime < mtime(path.join(dir, 'modules.order'))) {
    runScript(BUILD_SCRIPT, dir, fetchEnv);
  }
  image = imagePaths(dir);
  for (const f of [image.kernel, image.initrd]) {
    if (!fs.existsSync(f)) throw new Error(`e2e: ${f} missing after building the guest image`);
  }
  return image;
}

/** What is missing to run a real guest at all (QEMU, busybox-static, cpio); empty when everything is there. */
export function missingGuestTools(): string[] {
  const missing: string[] = [];
  if (!which(QEMU)) missing.push(`${QEMU} (apt-get install qemu-system-x86)`);
  if (!fs.existsSync(imagePaths(GUEST_DIR).initrd)) {
    // Only needed to build the initramfs.
    if (!isExecutable('/bin/busybox') && !which('busybox')) missing.push('busybox (apt-get install busybox-static)');
    if (!which('cpio')) missing.push('cpio (apt-get install cpio)');
  }
  return missing;
}

/**
 * The guest image, or why an e2e test cannot boot it: tools missing (QEMU, the image's inputs, and `extraMissing`
 * the caller found), or the fetch/build of the image failed. Callers turn a reason into a counted skip (prereq.ts).
 */
export function guestImageOrReason(extraMissing: string[] = []): GuestImage | string {
  const missing = [...missingGuestTools(), ...extraMissing];
  if (missing.length) return `missing: ${missing.join(', ')}`;
  try {
    return ensureGuestImage();
  } catch (e) {
    return (e as Error).message;
  }
}

/**
 * Why the guest workload cannot pass against a daemon run by this user, or undefined: it chowns files and checks
 * owners and modes as the guest's root, which a daemon without root's capabilities answers EPERM.
 */
export function workloadNeedsRoot(): string | undefined {
  const why = missingRoot();
  return why === undefined ? undefined : `${why}: the guest workload chowns files, which the daemon can only serve as root`;
}

// ---------------------------------------------------------------------------------------------------
// Children: every process started here is SIGKILLed if the test process exits first.

const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of live) {
    try {
      child.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
});

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

function track(child: ChildProcess): Promise<ExitStatus> {
  live.add(child);
  return new Promise((resolve) => {
    let settled = false;
    const settle = (status: ExitStatus) => {
      if (settled) return;
      settled = true;
      live.delete(child);
      resolve(status);
    };
    child.on('exit', (code, signal) => settle({ code, signal }));
    child.on('error', () => settle({ code: child.exitCode ?? -1, signal: null }));
  });
}


/** Keeps the last `max` characters of a stream. */
class Tail {
  private text = '';
  constructor(private readonly max = 256 * 1024) {}
  push(chunk: string): void {
    this.text += chunk;
    if (this.text.length > this.max) this.text = this.text.slice(this.text.length - this.max);
  }
  toString(): string {
    return this.text;
  }
}

// ---------------------------------------------------------------------------------------------------
// Backends

/** `example`: a command given in BackendOptions.command (test/e2e/example-daemon.ts serving an example). */
export type BackendKind = 'ours' | 'c' | 'example';
export type CacheMode = 'auto' | 'always' | 'never';

export interface BackendOptions {
  socketPath: string;
  sharedDir: string;
  cache?: CacheMode;
  /** Passed to ours as `--log-level=`; ignored for the C daemon. */
  logLevel?: string;
  extraArgs?: string[];
  /** How long to wait for the socket to appear. */
  readyTimeoutMs?: number;
  /** kind `example`: the whole command line (it must listen on socketPath). */
  command?: string[];
  /**
   * Ours only: the command that starts the daemon, instead of `node dist/host/cli.js` (e.g. an installed package's
   * `node_modules/.bin/virtiofsd-ts`); the usual arguments follow it.
   */
  daemonCommand?: string[];
}

export interface BackendHandle {
  kind: BackendKind;
  command: string[];
  child: ChildProcess;
  pid: number;
  /** Resolves when the process has exited. */
  exited: Promise<ExitStatus>;
  /** The exit status once it has exited, else undefined. */
  exitStatus(): ExitStatus | undefined;
  running(): boolean;
  stdout(): string;
  stderr(): string;
  /** Sends `signal` (default SIGTERM); SIGKILLs after `graceMs` (default 5000). Resolves with the exit status. */
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<ExitStatus & { forced: boolean }>;
}

function backendCommand(kind: BackendKind, o: BackendOptions): string[] {
  const cache = o.cache ?? 'auto';
  if (kind === 'example') {
    if (!o.command) throw new Error('e2e: an example backend needs its command');
    return o.command;
  }
  if (kind === 'ours') {
    return [
      ...(o.daemonCommand ?? [...RUNTIME, OUR_CLI]),
      `--socket-path=${o.socketPath}`,
      `--shared-dir=${o.sharedDir}`,
      `--cache=${cache}`,
      ...(o.logLevel ? [`--log-level=${o.logLevel}`] : []),
      ...(o.extraArgs ?? []),
    ];
  }
  const bin = findCVirtiofsd();
  if (!bin) throw new Error('e2e: no C virtiofsd found (apt-get install qemu-system-common, or set E2E_C_VIRTIOFSD)');
  const help = spawnSync(bin, ['--help'], { encoding: 'utf8' });
  if (`${help.stdout}${help.stderr}`.includes('--shared-dir')) {
    // The Rust virtiofsd (Debian 13's `virtiofsd` package) under the same role.
    return [bin, `--socket-path=${o.socketPath}`, `--shared-dir=${o.sharedDir}`, `--cache=${cache}`, ...(o.extraArgs ?? [])];
  }
  const cCache = cache === 'never' ? 'none' : cache;
  return [bin, `--socket-path=${o.socketPath}`, '-o', `source=${o.sharedDir}`, '-o', `cache=${cCache}`, ...(o.extraArgs ?? [])];
}

function isSocket(file: string): boolean {
  try {
    return fs.statSync(file).isSocket();
  } catch {
    return false;
  }
}

/**
 * Starts a backend serving `sharedDir` on `socketPath` and waits until the socket exists. Throws (with
 * the backend's stderr) when it exits first or the socket does not appear in time.
 */
export async function startBackend(kind: BackendKind, o: BackendOptions): Promise<BackendHandle> {
  if (kind === 'ours' && !o.daemonCommand && !fs.existsSync(OUR_CLI)) {
    throw new Error(`e2e: ${path.relative(ROOT, OUR_CLI)} missing (npm run build)`);
  }
  fs.rmSync(o.socketPath, { force: true });
  const command = backendCommand(kind, o);
  const child = spawn(command[0], command.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  const out = new Tail();
  const err = new Tail();
  child.stdout!.setEncoding('utf8').on('data', (d: string) => out.push(d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => err.push(d));
  let status: ExitStatus | undefined;
  const exited = track(child).then((s) => (status = s));

  const handle: BackendHandle = {
    kind,
    command,
    child,
    pid: child.pid ?? -1,
    exited,
    exitStatus: () => status,
    running: () => status === undefined,
    stdout: () => out.toString(),
    stderr: () => err.toString(),
    async stop(signal: NodeJS.Signals = 'SIGTERM', graceMs = 5000) {
      if (status) return { ...status, forced: false };
      signalChild(child, signal);
      const timer = sleep(graceMs).then(() => 'timeout' as const);
      if ((await Promise.race([exited, timer])) !== 'timeout') return { ...status!, forced: false };
      child.kill('SIGKILL');
      return { ...(await exited), forced: true };
    },
  };

  const deadline = Date.now() + (o.readyTimeoutMs ?? 15000);
  while (!isSocket(o.socketPath)) {
    if (status) {
      throw new Error(`e2e: ${kind} backend exited before listening (${fmtStatus(status)}):\n${tailLines(err.toString(), 40)}`);
    }
    if (Date.now() > deadline) {
      await handle.stop('SIGKILL');
      throw new Error(`e2e: ${kind} backend did not create ${o.socketPath} in time:\n${tailLines(err.toString(), 40)}`);
    }
    await sleep(50);
  }
  return handle;
}

/**
 * CPU seconds (user + system, from /proc at Linux's 100 Hz clock ticks) used by a live process and its descendants
 * (the daemon may run as a child of a sandbox helper).
 */
export function processCpuSeconds(pid: number): number {
  let total = 0;
  for (const p of processTree(pid)) {
    let stat: string;
    try {
      stat = fs.readFileSync(`/proc/${p}/stat`, 'utf8');
    } catch {
      continue; // exited meanwhile
    }
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    total += (Number(fields[11]) + Number(fields[12])) / 100;
  }
  return total;
}

export function fmtStatus(s: ExitStatus): string {
  return s.signal ? `signal ${s.signal}` : `code ${s.code}`;
}

// ---------------------------------------------------------------------------------------------------
// Guests

export interface GuestOptions {
  /** The vhost-user-fs backend's socket; '' attaches no virtio-fs device (e.g. a `-virtfs` share in qemuArgs). */
  socketPath: string;
  /** The virtio-fs tag (default `e2e`). */
  tag?: string;
  memMiB?: number;
  /** QEMU's RAM arguments instead of `-m memMiB` backed by one memfd (e.g. several backends, a pc-dimm). */
  memoryArgs?: string[];
  /** Hard limit for the whole QEMU run; QEMU is SIGKILLed at this point (default 180 s). */
  timeoutMs?: number;
  /** QEMU is SIGKILLed when the console is silent this long (default 60 s): a guest stuck on a dead share. */
  idleTimeoutMs?: number;
  /** The backend serving the share: when it exits, QEMU is SIGKILLed 2 s later (the guest would hang). */
  backend?: BackendHandle;
  /** Script text for the guest to run; written to `<sharedDir>/.e2e/workload.sh` (needs sharedDir). */
  workload?: string;
  sharedDir?: string;
  image?: GuestImage;
  /** Called with every console line (without CR). */
  onLine?: (line: string) => void;
  /** Extra QEMU arguments, after the harness's own (e.g. `-smp 2`, `-virtfs ...`). */
  qemuArgs?: string[];
  /** Extra words for the kernel command line. */
  append?: string;
  /** Run QEMU as this user and group (no supplementary groups), as a VM manager runs a non-root QEMU. */
  runAs?: { uid: number; gid: number };
}

export interface StepResult {
  name: string;
  ok: boolean;
  detail: string;
}

export interface GuestResult {
  exit: ExitStatus;
  /** QEMU was killed by the harness: the hard or idle timeout fired, or the backend exited under it. */
  timedOut: boolean;
  /** Why `timedOut`: `total`, `idle` (silent console) or `backend-exit`. */
  timeoutReason?: 'total' | 'idle' | 'backend-exit';
  /** `kill()` was called. */
  killed: boolean;
  /** The guest printed E2E-DONE (the workload ran to its end and the share was unmounted). */
  done: boolean;
  console: string;
  /** QEMU's own stderr. */
  stderr: string;
  results: StepResult[];
  info: Record<string, string>;
  durationMs: number;
  /** From QEMU's start to the guest's `mount` result line. */
  bootMs?: number;
  /** From the `mount` line to E2E-DONE. */
  workloadMs?: number;
}

export interface GuestRun {
  child: ChildProcess;
  pid: number;
  /** Resolves with the first console line matching `re`; rejects when QEMU exits first or after timeoutMs. */
  waitForLine(re: RegExp, timeoutMs?: number): Promise<string>;
  /** SIGKILLs QEMU (the guest vanishes without a word to the backend). */
  kill(): void;
  result: Promise<GuestResult>;
}

// eslint-disable-next-line no-control-regex
const ANSI = /\x1b\[[0-9;?]*[A-Za-z]|\x1bc/g;

/** Reads the default workload (test/e2e/workload.sh). */
export function defaultWorkload(): string {
  return fs.readFileSync(WORKLOAD_SCRIPT, 'utf8');
}

/** Boots the guest against the backend listening on `socketPath`; see GuestRun. */
export function startGuest(o: GuestOptions): GuestRun {
  const image = o.image ?? ensureGuestImage();
  const tag = o.tag ?? 'e2e';
  const mem = o.memMiB ?? 512;
  const timeoutMs = o.timeoutMs ?? 180_000;
  const idleTimeoutMs = o.idleTimeoutMs ?? 60_000;
  if (o.workload !== undefined) {
    if (!o.sharedDir) throw new Error('e2e: a workload needs sharedDir to be written into');
    const dir = path.join(o.sharedDir, '.e2e');
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'workload.sh'), o.workload, { mode: 0o755 });
  }
  const args = [
    ...(image.bios ? ['-bios', image.bios] : []),
    '-accel', ACCEL,
    ...(o.memoryArgs ?? ['-m', `${mem}`, '-object', `memory-backend-memfd,id=mem,size=${mem}M,share=on`,
      '-numa', 'node,memdev=mem']),
    ...(o.socketPath ? ['-chardev', `socket,id=char0,path=${o.socketPath}`, '-device', `vhost-user-fs-pci,chardev=char0,tag=${tag}`] : []),
    '-kernel', image.kernel,
    '-initrd', image.initrd,
    '-append', `console=ttyS0 quiet panic=-1 e2e_tag=${tag}${o.append ? ` ${o.append}` : ''}`,
    // No NIC, VGA or monitor: the serial port on stdio is the only output.
    '-nodefaults', '-display', 'none', '-serial', 'stdio',
    '-no-reboot',
    ...(o.qemuArgs ?? []),
  ];
  const started = Date.now();
  const child = spawn(QEMU, args, { stdio: ['ignore', 'pipe', 'pipe'], ...(o.runAs ?? {}) });
  const exited = track(child);
  const consoleText = new Tail(1024 * 1024);
  const stderr = new Tail();
  const lines: string[] = [];
  const waiters: { re: RegExp; resolve: (l: string) => void }[] = [];
  let partial = '';
  let timeoutReason: GuestResult['timeoutReason'];
  let killed = false;
  let bootAt: number | undefined;
  let doneAt: number | undefined;

  const onLine = (raw: string) => {
    const line = raw.replace(ANSI, '').replace(/\r/g, '');
    lines.push(line);
    if (bootAt === undefined && /^E2E-RESULT mount /.test(line)) bootAt = Date.now();
    if (line === 'E2E-DONE') doneAt = Date.now();
    o.onLine?.(line);
    for (let i = waiters.length - 1; i >= 0; i--) {
      if (waiters[i].re.test(line)) waiters.splice(i, 1)[0].resolve(line);
    }
  };
  const harnessKill = (reason: NonNullable<GuestResult['timeoutReason']>) => {
    if (timeoutReason || exitStatus) return;
    timeoutReason = reason;
    child.kill('SIGKILL');
  };
  let exitStatus: ExitStatus | undefined;
  void exited.then((s) => (exitStatus = s));
  let idleTimer = setTimeout(() => harnessKill('idle'), idleTimeoutMs);
  child.stdout!.setEncoding('utf8').on('data', (d: string) => {
    clearTimeout(idleTimer);
    idleTimer = setTimeout(() => harnessKill('idle'), idleTimeoutMs);
    consoleText.push(d);
    partial += d;
    let nl: number;
    while ((nl = partial.indexOf('\n')) >= 0) {
      onLine(partial.slice(0, nl));
      partial = partial.slice(nl + 1);
    }
  });
  child.stderr!.setEncoding('utf8').on('data', (d: string) => stderr.push(d));
  const timer = setTimeout(() => harnessKill('total'), timeoutMs);
  let backendTimer: NodeJS.Timeout | undefined;
  void o.backend?.exited.then(() => {
    if (!exitStatus) backendTimer = setTimeout(() => harnessKill('backend-exit'), 2000);
  });

  const result = exited.then((exit): GuestResult => {
    clearTimeout(timer);
    clearTimeout(idleTimer);
    clearTimeout(backendTimer);
    if (partial) onLine(partial);
    const results: StepResult[] = [];
    const info: Record<string, string> = {};
    for (const line of lines) {
      let m = /^E2E-RESULT (\S+) (ok|fail) ?(.*)$/.exec(line);
      if (m) results.push({ name: m[1], ok: m[2] === 'ok', detail: m[3].trim() });
      m = /^E2E-INFO (\S+) ?(.*)$/.exec(line);
      if (m) info[m[1]] = m[2].trim();
    }
    return {
      exit,
      timedOut: timeoutReason !== undefined,
      timeoutReason,
      killed,
      done: doneAt !== undefined,
      console: consoleText.toString().replace(ANSI, '').replace(/\r/g, ''),
      stderr: stderr.toString(),
      results,
      info,
      durationMs: Date.now() - started,
      bootMs: bootAt === undefined ? undefined : bootAt - started,
      workloadMs: bootAt === undefined || doneAt === undefined ? undefined : doneAt - bootAt,
    };
  });

  return {
    child,
    pid: child.pid ?? -1,
    kill() {
      killed = true;
      child.kill('SIGKILL');
    },
    waitForLine(re: RegExp, waitMs = timeoutMs) {
      const seen = lines.find((l) => re.test(l));
      if (seen !== undefined) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`e2e: no console line matching ${re} within ${waitMs} ms`)), waitMs);
        const waiter = {
          re,
          resolve: (l: string) => {
            clearTimeout(t);
            resolve(l);
          },
        };
        waiters.push(waiter);
        void exited.then(() => {
          const i = waiters.indexOf(waiter);
          if (i < 0) return;
          waiters.splice(i, 1);
          clearTimeout(t);
          reject(new Error(`e2e: QEMU exited before a console line matching ${re}`));
        });
      });
    },
    result,
  };
}

/** Boots the guest, runs its workload, and resolves when QEMU has exited (or been killed at the timeout). */
export function bootGuest(o: GuestOptions): Promise<GuestResult> {
  return startGuest(o).result;
}

export function tailLines(text: string, n: number): string {
  const lines = text.split('\n');
  return lines.slice(Math.max(0, lines.length - n)).join('\n');
}

/** A failure report for assertion messages: what went wrong, then the console and the backend's stderr. */
export function describeRun(g: GuestResult, backend?: BackendHandle, problems: string[] = []): string {
  const parts = [
    problems.length ? `problems:\n  ${problems.join('\n  ')}` : '',
    `qemu: ${fmtStatus(g.exit)}${g.timedOut ? ` (killed by the harness: ${g.timeoutReason})` : ''}${g.done ? '' : ' (no E2E-DONE)'} after ${g.durationMs} ms`,
    `--- guest console (tail) ---\n${tailLines(g.console, 60)}`,
    g.stderr.trim() ? `--- qemu stderr ---\n${tailLines(g.stderr, 20)}` : '',
    backend ? `--- ${backend.kind} backend stderr (tail) ---\n${tailLines(backend.stderr(), 40)}` : '',
  ];
  return parts.filter(Boolean).join('\n');
}

// ---------------------------------------------------------------------------------------------------
// The default workload's checks (test/e2e/workload.sh)

/** Every step workload.sh reports, in order; the guest must report each one as ok. */
export const WORKLOAD_STEPS = [
  'modules', 'mount', 'setup', 'small-files', 'big-file', 'mkdir-p', 'rename', 'symlink', 'hardlink', 'chmod',
  'chown', 'utimes', 'truncate', 'mkfifo', 'rmdir', 'rm-rf', 'unlink', 'append', 'parallel', 'names', 'df', 'ls-la',
  'workload-exit',
] as const;

/**
 * The guest's console prefix for posix-check's lines. workload.sh also reports a step `posix-check`
 * (not in WORKLOAD_STEPS: its lines are judged by the test, which knows which failures are expected).
 */
export const POSIX_CHECK_PREFIX = 'E2E-POSIX ';

/** The content workload.sh gives small file `i`. */
export function smallFileContent(i: number): string {
  const line = `small file ${String(i).padStart(3, '0')}\n`;
  return line.repeat((i % 17) + 1);
}

/** Problems with the guest's own report: missing or failed steps, missing E2E-DONE. */
export function checkGuestReport(g: GuestResult, steps: readonly string[] = WORKLOAD_STEPS): string[] {
  const problems: string[] = [];
  if (g.timeoutReason === 'backend-exit') problems.push('the backend exited while the guest was running');
  else if (g.timedOut) problems.push(`the guest timed out (${g.timeoutReason === 'idle' ? 'console silent' : 'total time'})`);
  for (const name of steps) {
    const r = g.results.find((x) => x.name === name);
    if (!r) problems.push(`step ${name}: not reported`);
    else if (!r.ok) problems.push(`step ${name}: failed: ${r.detail}`);
  }
  for (const r of g.results) {
    if (!r.ok && !steps.includes(r.name)) problems.push(`step ${r.name}: failed: ${r.detail}`);
  }
  if (!g.done) problems.push('no E2E-DONE (the guest did not finish cleanly)');
  return problems;
}

function sha256File(file: string): string {
  const h = createHash('sha256');
  const fd = fs.openSync(file, 'r');
  try {
    const buf = Buffer.allocUnsafe(1 << 20);
    let n: number;
    while ((n = fs.readSync(fd, buf, 0, buf.length, null)) > 0) h.update(buf.subarray(0, n));
  } finally {
    fs.closeSync(fd);
  }
  return h.digest('hex');
}

/**
 * Re-checks, directly on the shared directory, what workload.sh did: bytes, modes, owners, times, link
 * counts, file types, and that removed things are gone. Returns the problems (empty = all good).
 */
export function checkWorkloadOnHost(sharedDir: string, g: GuestResult): string[] {
  const w = path.join(sharedDir, 'w');
  const problems: string[] = [];
  const p = (rel: string) => path.join(w, rel);
  const lst = (rel: string): fs.Stats | undefined => {
    try {
      return fs.lstatSync(p(rel));
    } catch {
      problems.push(`${rel}: missing`);
      return undefined;
    }
  };
  const content = (rel: string, want: string) => {
    const st = lst(rel);
    if (!st) return;
    if (!st.isFile()) return void problems.push(`${rel}: not a regular file`);
    const got = fs.readFileSync(p(rel), 'utf8');
    if (got !== want) problems.push(`${rel}: content ${JSON.stringify(got.slice(0, 80))} want ${JSON.stringify(want.slice(0, 80))}`);
  };
  const gone = (rel: string) => {
    if (fs.existsSync(p(rel)) || isSymlink(p(rel))) problems.push(`${rel}: still exists`);
  };
  const mode = (rel: string, want: number) => {
    const st = lst(rel);
    if (st && (st.mode & 0o7777) !== want) problems.push(`${rel}: mode ${(st.mode & 0o7777).toString(8)} want ${want.toString(8)}`);
  };

  // small files
  for (let i = 0; i < 200; i++) content(`s/f${String(i).padStart(3, '0')}`, smallFileContent(i));
  const entries = fs.existsSync(p('s')) ? fs.readdirSync(p('s')).length : 0;
  if (entries !== 200) problems.push(`s: ${entries} entries want 200`);

  // big file
  const big = lst('big');
  if (big) {
    if (big.size !== 32 * 1024 * 1024) problems.push(`big: size ${big.size} want ${32 * 1024 * 1024}`);
    const hostHash = sha256File(p('big'));
    const guestHash = g.info['big-sha256'];
    if (!guestHash) problems.push('big: the guest reported no sha256');
    else if (hostHash !== guestHash) problems.push(`big: host sha256 ${hostHash} != guest ${guestHash}`);
  }

  // mkdir -p, renames
  for (const d of ['a', 'a/b', 'a/b/c', 'dmv2', 'm2', 'rd2']) {
    const st = lst(d);
    if (st && !st.isDirectory()) problems.push(`${d}: not a directory`);
  }
  content('a/b/c/x', 'moved\n');
  content('r2', 'one\n');
  content('rd', 'src\n');
  content('dmv2/f', 'inside\n');
  for (const rel of ['r1', 'rs', 'dmv1', 'x']) gone(rel);

  // symlinks
  for (const [rel, target] of [['sl', 's/f007'], ['dangling', '/nonexistent/target']]) {
    const st = lst(rel);
    if (!st) continue;
    if (!st.isSymbolicLink()) problems.push(`${rel}: not a symlink`);
    else if (fs.readlinkSync(p(rel)) !== target) problems.push(`${rel}: -> ${fs.readlinkSync(p(rel))} want ${target}`);
  }

  // hard links
  const h1 = lst('h1');
  const h2 = lst('h2');
  if (h1 && h2) {
    if (h1.nlink !== 2 || h2.nlink !== 2) problems.push(`h1/h2: nlink ${h1.nlink}/${h2.nlink} want 2/2`);
    if (h1.ino !== h2.ino) problems.push(`h1/h2: different inodes ${h1.ino}/${h2.ino}`);
  }
  content('h1', 'hl\nmore\n');

  // chmod, chown
  mode('m1', 0o754);
  mode('m2', 0o700);
  const o1 = lst('o1');
  if (o1 && (o1.uid !== 1234 || o1.gid !== 5678)) problems.push(`o1: owner ${o1.uid}:${o1.gid} want 1234:5678`);

  // times
  for (const [rel, want] of [['t1', 1577934245], ['t2', 981173106]] as const) {
    const st = lst(rel);
    if (st && Math.floor(st.mtimeMs / 1000) !== want) problems.push(`${rel}: mtime ${Math.floor(st.mtimeMs / 1000)} want ${want}`);
  }
  const t1 = lst('t1');
  if (t1 && Math.floor(t1.atimeMs / 1000) !== 1577934245) problems.push(`t1: atime ${Math.floor(t1.atimeMs / 1000)} want 1577934245`);

  // truncate
  content('tr1', '0123456789');
  const tr2 = lst('tr2');
  if (tr2) {
    const bytes = fs.readFileSync(p('tr2'));
    if (bytes.length !== 65536) problems.push(`tr2: size ${bytes.length} want 65536`);
    else if (bytes.subarray(0, 4).toString() !== 'head' || bytes.subarray(4).some((b) => b !== 0)) {
      problems.push('tr2: want "head" then zeros');
    }
  }

  // fifo, rmdir, rm -rf, unlink, append
  const ff = lst('ff');
  if (ff && !ff.isFIFO()) problems.push('ff: not a fifo');
  gone('rd1');
  if (!fs.existsSync(p('rd2/keep'))) problems.push('rd2/keep: missing');
  gone('tree');
  gone('u1');
  content('ap', 'a\nb\n');

  // parallel writers, unusual names
  const parHash = g.info['par-sha256'];
  if (!parHash) problems.push('par: the guest reported no sha256');
  for (let j = 1; j <= 4; j++) {
    const st = lst(`par/p${j}`);
    if (st && parHash && sha256File(p(`par/p${j}`)) !== parHash) problems.push(`par/p${j}: sha256 differs from the guest's source`);
  }
  content('with space', 'spaced\n');
  content('caf\u00e9-\u2603', 'utf8\n');
  content('0'.repeat(255), 'long\n');
  return problems;
}

function isSymlink(file: string): boolean {
  try {
    return fs.lstatSync(file).isSymbolicLink();
  } catch {
    return false;
  }
}

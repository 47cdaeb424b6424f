/**
 * The npm package as a user gets it. A clean copy of this checkout's sources (what git tracks, plus new files not
 * ignored) is packed with `npm pack`, whose prepack/prepare scripts build the wasm core, the JS and the prebuilt
 * addons; the tarball is installed into a scratch project with no compiler on PATH; then the installed CLI and the
 * installed library each serve a real guest (QEMU, as in guest.test.ts), and a consumer's TypeScript compiles
 * against the installed types with skipLibCheck off.
 *
 * The arm64 prebuilt is checked twice: statically (an aarch64 ELF importing only N-API and glibc), and by loading
 * it into Debian's arm64 node under qemu-user and using it (fd passing, a memfd mapped into wasm memory, the core).
 *
 * Prerequisites: the aarch64 cross compiler (apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross) for the
 * arm64 prebuilt that `npm pack` builds; QEMU and the guest image for the two guest runs; qemu-user
 * (apt-get install qemu-user-static) and the Debian archive for the arm64 run. In CI (`CI` set) a missing one
 * FAILS; elsewhere the tests that need it are skipped with the reason printed.
 */
import { spawnSync, type SpawnSyncOptions } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  type GuestImage,
  ROOT,
  bootGuest,
  checkGuestReport,
  checkWorkloadOnHost,
  defaultWorkload,
  describeRun,
  guestImageOrReason,
  startBackend,
  tailLines,
  which,
} from './guest.js';
import { RUNTIME } from '../util/runtime.js';
import { skipIf } from '../util/prereq.js';

const KEEP = process.env.E2E_KEEP === '1';
const PACKAGE = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { name: string; version: string };
const NAPI_VERSION = /NAPI_VERSION=(\d+)/.exec(fs.readFileSync(path.join(ROOT, 'binding.gyp'), 'utf8'))![1];
const PREBUILT_TARGETS = ['linux-x64', 'linux-arm64'];
const PREBUILT_FILES = [`virtiofsd_native.napi${NAPI_VERSION}.node`, 'virtiofsd-ts-sandbox'];
/** What a C build needs; none of it may be on the PATH the package is installed with. */
const BUILD_TOOLS = ['cc', 'gcc', 'g++', 'c++', 'make', 'python3', 'python'];

const packMissing = which('aarch64-linux-gnu-gcc') && fs.existsSync('/usr/aarch64-linux-gnu/include/stdio.h')
  ? undefined : 'no aarch64 cross compiler (apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross)';
/** qemu-user, to run the arm64 prebuilt in Debian's arm64 node (scripts/fetch-arm64-node.sh). */
const QEMU_AARCH64 = which('qemu-aarch64-static') ?? which('qemu-aarch64');
const ARM64_NODE_DIR = process.env.ARM64_NODE_DIR ?? path.join(ROOT, '.cache', 'arm64-node');
const imageOrReason = guestImageOrReason();
const image: GuestImage | undefined = typeof imageOrReason === 'string' ? undefined : imageOrReason;
const guestMissing: string | undefined = typeof imageOrReason === 'string' ? imageOrReason : undefined;

/** Registers a test that needs the packed and installed package (and, with `guest`, QEMU). */
function packageTest(name: string, fn: () => void | Promise<void>, needs: { guest?: boolean; qemuUser?: boolean } = {}): void {
  const reason = packMissing ?? (needs.guest ? guestMissing : undefined) ??
    (needs.qemuUser && !QEMU_AARCH64 ? 'no qemu-user (apt-get install qemu-user-static)' : undefined);
  test(name, async () => {
    if (skipIf(reason)) return; // a counted skip, a failure in CI (test/util/prereq.ts)
    await fn();
  });
}

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'vfs-package-'));
/** The clean source copy that is packed. */
const stage = path.join(work, 'stage');
/** The scratch project the tarball is installed into. */
const app = path.join(work, 'app');
/** The only directory on the install's PATH: node, npm and sh, no compiler. */
const bin = path.join(work, 'bin');
const installed = path.join(app, 'node_modules', PACKAGE.name);
const installedCli = path.join(app, 'node_modules', '.bin', PACKAGE.name);

/** The environment without npm's per-script variables (an outer `npm test` sets them; they name its package). */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_/i.test(k)));
  return { ...env, ...extra };
}

/** Runs a command to completion; its stdout and stderr together, or its stdout alone with `stdoutOnly`. */
function run(command: string, args: string[], options: SpawnSyncOptions & { what: string; stdoutOnly?: boolean }): string {
  const r = spawnSync(command, args, { encoding: 'utf8', timeout: 600_000, ...options });
  const out = `${r.stdout ?? ''}${r.stderr ?? ''}`;
  if (r.status !== 0) throw new Error(`${options.what} failed (${r.error?.message ?? `exit ${r.status}`}):\n${tailLines(out, 60)}`);
  return options.stdoutOnly ? String(r.stdout) : out;
}

interface PackResult {
  filename: string;
  size: number;
  unpackedSize: number;
  entryCount: number;
  files: { path: string; size: number }[];
}
let packed: PackResult | undefined;
let installLog = '';
/** The source files copied into the stage (relative paths). */
const sources: string[] = [];

/** Packs the sources as `npm pack` does from a fresh clone, and installs the tarball with no compiler on PATH. */
function packAndInstall(): void {
  // The sources: what git tracks plus new files it does not ignore (no dist/, build/, prebuilds/).
  const list = run('git', ['ls-files', '--cached', '--others', '--exclude-standard', '-z'], { cwd: ROOT, what: 'git ls-files', stdoutOnly: true });
  for (const rel of list.split('\0').filter(Boolean)) {
    const from = path.join(ROOT, rel);
    if (!fs.existsSync(from) || !fs.lstatSync(from).isFile()) continue; // deleted in the work tree, or a symlink
    fs.mkdirSync(path.dirname(path.join(stage, rel)), { recursive: true });
    fs.copyFileSync(from, path.join(stage, rel));
    sources.push(rel);
  }
  fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(stage, 'node_modules'));
  const packOut = run('npm', ['pack', '--json', '--pack-destination', work], { cwd: stage, env: cleanEnv(), what: 'npm pack', stdoutOnly: true });
  // Script output comes first; the JSON report is the rest, from a line that is just `[`.
  const json = packOut.startsWith('[\n') ? packOut : packOut.slice(packOut.lastIndexOf('\n[\n') + 1);
  packed = (JSON.parse(json) as PackResult[])[0];
  console.log(`package: ${packed.filename}: ${packed.entryCount} files, ${(packed.size / 1024).toFixed(1)} kB ` +
    `(unpacked ${(packed.unpackedSize / 1024).toFixed(1)} kB)`);

  fs.mkdirSync(bin);
  for (const tool of ['node', 'npm', 'sh']) fs.symlinkSync(which(tool)!, path.join(bin, tool));
  fs.mkdirSync(app);
  fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
  installLog = run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', '--foreground-scripts',
    path.join(work, packed.filename)], { cwd: app, env: cleanEnv({ PATH: bin }), what: 'npm install (no compiler on PATH)' });
}

let setupError: Error | undefined;
if (!packMissing) {
  try {
    packAndInstall();
  } catch (e) {
    setupError = e as Error;
  }
}
function needInstalled(): void {
  if (setupError) throw setupError;
}

test.after(() => {
  if (KEEP) console.log(`package: kept ${work}`);
  else fs.rmSync(work, { recursive: true, force: true });
});

packageTest('pack: the tarball holds the core, the JS, the types and both prebuilt addons; no tests or benchmarks', () => {
  needInstalled();
  const files = packed!.files.map((f) => f.path);
  const want = ['package.json', 'dist/core.wasm', 'dist/host/index.js', 'dist/host/index.d.ts', 'dist/host/native.d.ts',
    'dist/host/cli.js', 'dist/host/native-loader.js', 'binding.gyp', 'bindings/addon.c', 'scripts/install.mjs',
    ...PREBUILT_TARGETS.flatMap((t) => PREBUILT_FILES.map((f) => `prebuilds/${t}/${f}`))];
  // share/: data files for VM managers (e.g. QEMU's vhost-user device descriptions), whatever the sources hold.
  want.push(...sources.filter((f) => f.startsWith('share/')));
  for (const f of want) assert.ok(files.includes(f), `${f} missing from the tarball`);
  const unwanted = files.filter((f) => /^(dist\/)?(test|benchmarks)\/|\.map$|^assembly\/|^build\//.test(f));
  assert.equal(unwanted, [], 'tests, benchmarks, sources maps or build output in the tarball');
  assert.ok(packed!.files.find((f) => f.path === 'dist/core.wasm')!.size > 1000, 'dist/core.wasm is empty');
});

packageTest('install: with no compiler on PATH the prebuilt addon is used and nothing is built', () => {
  needInstalled();
  // The PATH really has no compiler, make or python.
  const probe = spawnSync('sh', ['-c', `for t in ${BUILD_TOOLS.join(' ')}; do command -v "$t"; done; command -v node`],
    { encoding: 'utf8', env: cleanEnv({ PATH: bin }) });
  assert.equal(probe.stdout.trim().split('\n'), [path.join(bin, 'node')], 'a build tool is on the install PATH');
  assert.ok(installLog.includes(`virtiofsd-ts: the native addon ${path.join(installed, 'prebuilds', `linux-${process.arch}`)}`),
    `the install did not use the prebuilt addon:\n${installLog}`);
  assert.not.ok(fs.existsSync(path.join(installed, 'build')), 'the install built something (build/ exists)');
  assert.ok(fs.existsSync(path.join(installed, 'dist', 'core.wasm')));

  // Without the prebuilt for this platform the install script builds from source, which this PATH cannot.
  const shipped = path.join(installed, 'prebuilds', `linux-${process.arch}`);
  const aside = path.join(work, 'prebuilt-aside');
  fs.renameSync(shipped, aside);
  try {
    const r = spawnSync('npm', ['rebuild', '--foreground-scripts', PACKAGE.name], { cwd: app, encoding: 'utf8', env: cleanEnv({ PATH: bin }) });
    const out = `${r.stdout}${r.stderr}`;
    assert.is.not(r.status, 0, `npm rebuild without a prebuilt or a compiler succeeded:\n${out}`);
    assert.ok(out.includes('virtiofsd-ts: building the native addon from source'), out);
    assert.ok(out.includes('it needs a C compiler, make and python3'), out);
  } finally {
    fs.rmSync(path.join(installed, 'build'), { recursive: true, force: true });
    fs.renameSync(aside, shipped);
  }
});

packageTest('arm64 prebuilt: aarch64 ELF files whose undefined symbols are N-API and glibc only', () => {
  needInstalled();
  const dir = path.join(installed, 'prebuilds', 'linux-arm64');
  for (const file of PREBUILT_FILES) {
    const full = path.join(dir, file);
    const header = run('readelf', ['-h', full], { what: `readelf -h ${file}` });
    assert.match(header, /Machine:\s+AArch64/, `${file}: ${header}`);
    const needed = [...run('readelf', ['-d', full], { what: 'readelf -d' }).matchAll(/\(NEEDED\).*\[(.+)\]/g)].map((m) => m[1]);
    assert.equal(needed, ['libc.so.6'], `${file} needs ${needed.join(', ')}`);
    const symbols = run('readelf', ['--dyn-syms', '-W', full], { what: 'readelf --dyn-syms' }).split('\n')
      .map((line) => line.trim().split(/\s+/))
      // Num: Value Size Type Bind Vis Ndx Name
      .filter((f) => f.length >= 8 && f[6] === 'UND' && f[7] !== undefined)
      .map((f) => ({ bind: f[4], name: f[7] }));
    assert.ok(symbols.length > 10, `${file}: no undefined symbols read`);
    // Strong references: N-API (resolved by node) or versioned glibc ones; weak ones are the C runtime's hooks.
    const foreign = symbols.filter((s) => s.bind !== 'WEAK' && !/^napi_\w+$/.test(s.name) && !/@GLIBC_[\d.]+( \(\d+\))?$/.test(s.name));
    assert.equal(foreign, [], `${file}: undefined symbols outside N-API and glibc`);
    if (file.endsWith('.node')) assert.ok(symbols.some((s) => s.name === 'napi_define_properties'), 'no N-API imports');
  }
});

/** Run by Debian's arm64 node under qemu-user, in the scratch project: the installed package on arm64. */
const ARM64_CHECK = `import { Core } from 'virtiofsd-ts';
const { native, addonPath } = await import(new URL('./node_modules/virtiofsd-ts/dist/host/native-loader.js', import.meta.url).href);
const C = native.constants;
const failed = [];
const check = (what, ok) => { if (!ok) failed.push(what); };
// An eventfd crosses a socketpair as SCM_RIGHTS; a write to the received fd shows on the original.
const pair = new Int32Array(2);
check('socketpair', native.socketpair(pair) === 0);
const efd = native.eventfd(0, 0);
check('sendmsg', native.sendmsg(pair[0], Buffer.from('arm64'), 0, 5, [efd]) === 5);
const got = Buffer.alloc(16);
const fds = new Int32Array(4);
check('recvmsg', native.recvmsg(pair[1], got, 0, got.length, fds, false) === 5 && got.toString('utf8', 0, 5) === 'arm64');
check('fd passed', fds[0] >= 0 && native.eventfdWrite(fds[0], 7) === 0 && native.eventfdRead(efd) === 7);
// A memfd mapped into a WebAssembly.Memory, as guest RAM is: bytes written to the file appear in the memory.
const page = 65536;
const mem = new WebAssembly.Memory({ initial: 4 });
const mfd = native.memfdCreate('arm64-check', 0);
check('memfd', mfd >= 0 && native.ftruncate(mfd, page) === 0);
check('pwrite', native.pwrite(mfd, Buffer.from('guest ram'), 0) === 9);
check('mmapInto', native.mmapInto(mem.buffer, page, page, C.PROT_READ | C.PROT_WRITE, mfd, 0) >= 0);
check('mapped bytes', Buffer.from(mem.buffer, page, 9).toString() === 'guest ram');
check('strerror', native.strerror(C.errno.ENOENT) === 'No such file or directory');
const core = await Core.create();
check('core', core.linearBufSize > 0);
console.log(JSON.stringify({ arch: process.arch, node: process.version, addonPath, failed }));
`;

packageTest('arm64 prebuilt: loads in an arm64 node under qemu-user; fd passing, guest-memory mapping and the core work', () => {
  needInstalled();
  const qemu = QEMU_AARCH64!;
  run('bash', [path.join(ROOT, 'scripts', 'fetch-arm64-node.sh')], { env: { ...process.env, ARM64_NODE_DIR }, what: 'scripts/fetch-arm64-node.sh' });
  const sysroot = path.join(ARM64_NODE_DIR, 'root');
  const script = path.join(app, 'arm64-check.mjs');
  fs.writeFileSync(script, ARM64_CHECK);
  const out = run(qemu, ['-L', sysroot, path.join(sysroot, 'usr', 'bin', 'node'), script],
    { cwd: app, what: 'arm64 node under qemu-user', stdoutOnly: true, timeout: 300_000 });
  const result = JSON.parse(out.trim().split('\n').pop()!) as { arch: string; node: string; addonPath: string; failed: string[] };
  console.log(`package: arm64: node ${result.node} under ${path.basename(qemu)} loaded ${path.relative(app, result.addonPath)}`);
  assert.is(result.arch, 'arm64');
  assert.is(result.addonPath, path.join(installed, 'prebuilds', 'linux-arm64', PREBUILT_FILES[0]));
  assert.equal(result.failed, [], 'checks failed on arm64');
  // The helper runs too: without arguments it prints its usage and exits 125.
  const helper = spawnSync(qemu, ['-L', sysroot, path.join(installed, 'prebuilds', 'linux-arm64', PREBUILT_FILES[1])], { encoding: 'utf8' });
  assert.is(helper.status, 125, helper.stderr);
  assert.match(helper.stderr, /^usage: virtiofsd-ts-sandbox /);
}, { qemuUser: true });

packageTest('installed CLI: --version and --help', () => {
  needInstalled();
  const version = run(installedCli, ['--version'], { what: 'virtiofsd-ts --version' }).trim();
  assert.ok(version.includes(PACKAGE.version), version);
  const help = run(installedCli, ['--help'], { what: 'virtiofsd-ts --help' });
  for (const opt of ['--socket-path', '--shared-dir', '--cache']) assert.ok(help.includes(opt), help);
});

/** A share and socket path in the work directory. */
function guestEnv(label: string): { sharedDir: string; socketPath: string } {
  const dir = fs.mkdtempSync(path.join(work, `${label}-`));
  const env = { sharedDir: path.join(dir, 'share'), socketPath: path.join(dir, 'vhost-user-fs.sock') };
  fs.mkdirSync(env.sharedDir);
  return env;
}

packageTest('installed CLI serves a guest: the e2e workload passes and the share checks out', async () => {
  needInstalled();
  const env = guestEnv('cli');
  // As root the CLI starts in the namespace sandbox, so the shipped sandbox helper runs too.
  const backend = await startBackend('ours', {
    ...env, cache: 'auto', logLevel: 'warn', daemonCommand: [installedCli], extraArgs: ['--allow-mknod-devices', '--posix-lock', '--flock'],
  });
  try {
    const g = await bootGuest({ ...env, image, workload: defaultWorkload(), timeoutMs: 180_000, idleTimeoutMs: 45_000, backend });
    // The conformance checker is guest.test.ts's business; without its binary in the share, its step reports a failure.
    const report = { ...g, results: g.results.filter((r) => r.name !== 'posix-check') };
    const problems = [...checkGuestReport(report), ...checkWorkloadOnHost(env.sharedDir, g)];
    assert.ok(problems.length === 0, describeRun(g, backend, problems));
  } finally {
    const stopped = await backend.stop();
    assert.not.ok(stopped.forced, `the installed CLI ignored SIGTERM\n${tailLines(backend.stderr(), 20)}`);
  }
}, { guest: true });

/** A program of the consumer's: serves with the installed library, takes the harness's CLI-style arguments. */
const SERVE_SCRIPT = `import { parseArgs } from 'node:util';
import { VirtiofsDaemon } from 'virtiofsd-ts';

const { values } = parseArgs({ strict: false, options: {
  'socket-path': { type: 'string' }, 'shared-dir': { type: 'string' }, cache: { type: 'string' } } });
const daemon = await VirtiofsDaemon.start({
  socketPath: values['socket-path'], sharedDir: values['shared-dir'], cache: values.cache, logLevel: 'warn' });
process.on('SIGTERM', () => daemon.close().then(() => process.exit(0)));
`;

const LIBRARY_WORKLOAD = `#!/bin/sh
if [ "$(cat /mnt/from-host)" = from-host ]; then echo "E2E-RESULT read ok"; else echo "E2E-RESULT read fail"; fi
echo from-guest > /mnt/from-guest && sync && echo "E2E-RESULT write ok" || echo "E2E-RESULT write fail"
`;

packageTest('installed library: `import { VirtiofsDaemon } from \'virtiofsd-ts\'` serves a guest', async () => {
  needInstalled();
  const env = guestEnv('lib');
  fs.writeFileSync(path.join(env.sharedDir, 'from-host'), 'from-host\n');
  const script = path.join(app, 'serve.mjs');
  fs.writeFileSync(script, SERVE_SCRIPT);
  const backend = await startBackend('ours', { ...env, cache: 'auto', daemonCommand: [...RUNTIME, script] });
  try {
    const g = await bootGuest({ ...env, image, workload: LIBRARY_WORKLOAD, timeoutMs: 120_000, idleTimeoutMs: 45_000, backend });
    const problems = checkGuestReport(g, ['modules', 'mount', 'read', 'write', 'workload-exit']);
    const written = fs.existsSync(path.join(env.sharedDir, 'from-guest')) ? fs.readFileSync(path.join(env.sharedDir, 'from-guest'), 'utf8') : '';
    if (written !== 'from-guest\n') problems.push(`from-guest on the host: ${JSON.stringify(written)}`);
    assert.ok(problems.length === 0, describeRun(g, backend, problems));
  } finally {
    const stopped = await backend.stop();
    assert.not.ok(stopped.forced, `the library daemon ignored SIGTERM\n${tailLines(backend.stderr(), 20)}`);
  }
}, { guest: true });

/** A consumer's TypeScript, using the public API's types. */
const CONSUMER_TS = `import { VirtiofsDaemon, PassthroughFs, VirtiofsdError, type DaemonOptions, type FileSystem } from 'virtiofsd-ts';
import pkg from 'virtiofsd-ts/package.json' with { type: 'json' };

const options: DaemonOptions = { socketPath: '/tmp/x.sock', sharedDir: '/srv', cache: 'never' };
export async function serve(): Promise<VirtiofsDaemon> {
  return VirtiofsDaemon.start(options);
}
export const fsClass: typeof PassthroughFs = PassthroughFs;
export const custom: FileSystem = {};
export const isOurs = (e: unknown): boolean => e instanceof VirtiofsdError;
export const version: string = pkg.version;
`;

function tsc(dir: string): { status: number | null; out: string } {
  const r = spawnSync(process.execPath, [path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', dir],
    { encoding: 'utf8', timeout: 120_000 });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

packageTest('installed types: a consumer compiles with skipLibCheck false (and fails without dist/host/native.d.ts)', () => {
  needInstalled();
  const dir = path.join(app, 'consumer-ts');
  fs.mkdirSync(dir);
  fs.writeFileSync(path.join(dir, 'consumer.ts'), CONSUMER_TS);
  fs.writeFileSync(path.join(dir, 'tsconfig.json'), JSON.stringify({
    compilerOptions: {
      target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, noEmit: true,
      skipLibCheck: false, resolveJsonModule: true, types: ['node'], typeRoots: [path.join(ROOT, 'node_modules', '@types')],
    },
    files: ['consumer.ts'],
  }));
  const ok = tsc(dir);
  assert.is(ok.status, 0, `tsc against the installed package failed:\n${ok.out}`);

  // The check can fail: the public .d.ts import ./native.js, so without the shipped native.d.ts tsc refuses them.
  const nativeTypes = path.join(installed, 'dist', 'host', 'native.d.ts');
  const aside = path.join(work, 'native.d.ts');
  fs.renameSync(nativeTypes, aside);
  try {
    const broken = tsc(dir);
    assert.is.not(broken.status, 0, 'tsc passed without native.d.ts');
    assert.match(broken.out, /native\.js/);
  } finally {
    fs.renameSync(aside, nativeTypes);
  }
});

test.run();

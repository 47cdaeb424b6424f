/**
 * --sandbox=namespace|chroot|none, --modcaps, --seccomp: the CLI as a child process, driven through FuseClient (a vhost-user frontend
 * speaking FUSE). For each mode: the daemon serves requests; `..` from the root and a symlink to /etc lead nowhere
 * outside the share; and, seen from the host, the daemon's root directory (/proc/PID/root) holds exactly the share
 * (namespace, chroot) and its mount, pid and net namespaces differ from ours (namespace). SIGTERM still stops it
 * cleanly through the sandbox helper. Capabilities: every thread of the daemon (read from /proc/PID/task/*) holds
 * exactly the set the mode needs, in its effective, permitted and bounding sets. Seccomp: the daemon serves the
 * whole workload under `kill` (also mounted through /dev/fuse), every thread is filtered, and a syscall outside
 * the list kills it (kill) or is logged (log). The out-of-list syscall comes from a module the test preloads with
 * the runtime's preload flag (`--import`, `--preload`; the daemon has no such path). Needs root (a counted skip
 * otherwise, a failure under CI).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { FuseClient } from '../host/frontend/fuse-client.js';
import { FUSE_ROOT_ID } from '../host/fuse/protocol.js';
import { native } from '../host/native-loader.js';
import { parseCommandLine } from '../host/cli.js';
import { connectWhenListening, errnoOf, spawnSocketDaemon } from './util/socket-daemon.js';
import { preloadFlags, runtimeArgs, runtimeName, signalChild } from './util/runtime.js';
import { capabilitiesOf, capabilityNames, capabilitySet } from '../host/sandbox.js';
import { requireDevFuse, requireRoot } from './util/prereq.js';
import { sleep, waitFor } from './util/wait.js';

const c = native.constants;
const E = c.errno;
const S_IFMT = 0o170000, S_IFDIR = 0o040000, S_IFLNK = 0o120000;
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const CLI = path.join(ROOT, 'dist', 'host', 'cli.js');
const HELPER = path.join(ROOT, 'build', 'Release', 'virtiofsd-ts-sandbox');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sandbox-test-'));
let seq = 0;


interface Daemon { child: ChildProcess; pid: number; socket: string; dir: string; stderr: () => string }

async function start(mode: string, extra: string[] = [], runtimeFlags: string[] = []): Promise<Daemon> {
  const n = seq++;
  const dir = fs.mkdtempSync(path.join(tmp, `share-${mode}-`));
  fs.writeFileSync(path.join(dir, 'hello.txt'), 'hello from the share\n');
  fs.mkdirSync(path.join(dir, 'sub'));
  fs.symlinkSync('/etc', path.join(dir, 'etc-link'));
  fs.symlinkSync('../../../../../../etc/passwd', path.join(dir, 'sub', 'up-link'));
  // (cwd: a SIGSYS from the seccomp tests may dump core where the daemon runs; tmp goes at the end.)
  const { child, socket, stderr } = await spawnSocketDaemon(dir, path.join(tmp, `s${n}.sock`),
    { args: ['--log-level=warn', `--sandbox=${mode}`, ...extra], runtimeFlags, cwd: tmp, timeoutMs: 20000 });
  let pid = child.pid!;
  if (mode === 'namespace') {
    // The spawned process became the helper (execve); the daemon is its only child, PID 1 of the new namespaces.
    assert.is(fs.readlinkSync(`/proc/${pid}/exe`), HELPER, 'the CLI re-executed itself as the sandbox helper');
    const kids = fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean);
    assert.is(kids.length, 1, 'one child');
    pid = Number(kids[0]);
    assert.match(fs.readFileSync(`/proc/${pid}/status`, 'utf8'), /^NSpid:\s+\d+\s+1$/m);
  }
  return { child, pid, socket, dir, stderr };
}

async function stop(d: Daemon): Promise<{ code: number | null; signal: string | null }> {
  const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) => {
    if (d.child.exitCode !== null || d.child.signalCode !== null) resolve({ code: d.child.exitCode, signal: d.child.signalCode });
    else d.child.once('exit', (code, signal) => resolve({ code, signal }));
  });
  signalChild(d.child, 'SIGTERM');
  const t = setTimeout(() => d.child.kill('SIGKILL'), 15000);
  const r = await exited;
  clearTimeout(t);
  return r;
}

/** What a FUSE client can reach from the root: it must stay inside the share. */
async function checkServesAndStaysInside(d: Daemon): Promise<void> {
  const fc = await connectWhenListening(d.socket, { depth: 8 });
  try {
    await fc.init();
    const rootAttr = (await fc.getattr(FUSE_ROOT_ID)).attr;
    // Normal service.
    const hello = await fc.lookup(FUSE_ROOT_ID, 'hello.txt');
    const o = await fc.open(hello.nodeid, c.O_RDONLY);
    assert.is(new TextDecoder().decode(await fc.read(hello.nodeid, o.fh, 0, 4096)), 'hello from the share\n');
    await fc.release(hello.nodeid, o.fh);
    const cr = await fc.create(FUSE_ROOT_ID, 'new.txt', c.O_RDWR, 0o644);
    assert.is(await fc.write(cr.entry.nodeid, cr.fh, 0, new TextEncoder().encode('written in the sandbox')), 22);
    await fc.release(cr.entry.nodeid, cr.fh);
    assert.is(fs.readFileSync(path.join(d.dir, 'new.txt'), 'utf8'), 'written in the sandbox');
    // `..` of the root is the root.
    const up = await fc.lookup(FUSE_ROOT_ID, '..');
    assert.is(up.attr.ino, rootAttr.ino, '.. of the root is the root');
    const names = (await fc.readdir(FUSE_ROOT_ID, (await fc.opendir(FUSE_ROOT_ID)).fh, 0)).map((e) => e.name).sort();
    assert.equal(names, ['.', '..', 'etc-link', 'hello.txt', 'new.txt', 'sub']);
    // Symlinks are nodes, never followed by the daemon: nothing of /etc is reachable through them.
    const link = await fc.lookup(FUSE_ROOT_ID, 'etc-link');
    assert.is(link.attr.mode & S_IFMT, S_IFLNK);
    const e = await errnoOf(fc.lookup(link.nodeid, 'passwd'));
    assert.ok(e === E.ENOTDIR || e === E.ENOENT || e === E.EBADF, `LOOKUP under a symlink to /etc: errno ${e}`);
    const sub = await fc.lookup(FUSE_ROOT_ID, 'sub');
    assert.is(sub.attr.mode & S_IFMT, S_IFDIR);
    const subUp = await fc.lookup(sub.nodeid, '..');
    assert.is(subUp.attr.ino, rootAttr.ino, 'sub/.. is the root');
    assert.is(await errnoOf(fc.lookup(FUSE_ROOT_ID, 'etc')), E.ENOENT, 'no /etc at the root');
  } finally {
    fc.close();
  }
}

function ns(pid: number | 'self', kind: string): string {
  return fs.readlinkSync(`/proc/${pid}/ns/${kind}`);
}

interface ThreadState { tid: string; caps: ReturnType<typeof capabilitiesOf>; seccomp: string; filters: string;
  noNewPrivs: string }

/** Every thread of a process, as the kernel sees it. */
function threads(pid: number): ThreadState[] {
  return fs.readdirSync(`/proc/${pid}/task`).map((tid) => {
    const st = fs.readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8');
    const field = (k: string): string => new RegExp(`^${k}:\\s*(\\S+)$`, 'm').exec(st)?.[1] ?? '';
    return { tid, caps: capabilitiesOf(st), seccomp: field('Seccomp'), filters: field('Seccomp_filters'),
      noNewPrivs: field('NoNewPrivs') };
  });
}

/** Every thread holds exactly `want` (effective = permitted = bounding), nothing inheritable or ambient. */
function assertThreadCaps(pid: number, want: bigint): void {
  const ts = threads(pid);
  // Node has the main thread, V8's platform workers, libuv's pool (started lazily) and our poller by now.
  assert.ok(ts.length >= 5, `only ${ts.length} threads`);
  for (const t of ts) {
    const where = `thread ${t.tid} of ${pid}`;
    assert.equal(capabilityNames(t.caps.CapEff), capabilityNames(want), `${where}: effective`);
    assert.is(t.caps.CapPrm, want, `${where}: permitted`);
    assert.is(t.caps.CapBnd, want, `${where}: bounding`);
    assert.is(t.caps.CapInh, 0n, `${where}: inheritable`);
    assert.is(t.caps.CapAmb, 0n, `${where}: ambient`);
  }
}

function assertThreadsFiltered(pid: number): void {
  const ts = threads(pid);
  assert.ok(ts.length >= 5, `only ${ts.length} threads`);
  for (const t of ts) {
    assert.is(t.seccomp, '2', `thread ${t.tid}: seccomp filter mode`);
    assert.is(t.filters, '1', `thread ${t.tid}: one filter`);
    assert.is(t.noNewPrivs, '1', `thread ${t.tid}: no_new_privs`);
  }
}

const DEFAULT_CAPS = capabilitySet({ sandbox: 'none', mountpoint: false });

test('options: --sandbox and --seccomp parse; bad values are refused', () => {
  const base = ['--socket-path=/tmp/x.sock', '--shared-dir=/tmp'];
  for (const m of ['namespace', 'chroot', 'none']) {
    const o = parseCommandLine([...base, `--sandbox=${m}`]);
    assert.ok(typeof o === 'object' && o.sandbox === m);
  }
  const d = parseCommandLine(base);
  assert.ok(typeof d === 'object' && d.sandbox === undefined, 'default decided at start (root: namespace)');
  assert.throws(() => parseCommandLine([...base, '--sandbox=jail']), /--sandbox/);
  for (const m of ['none', 'kill', 'log', 'trap']) {
    const o = parseCommandLine([...base, `--seccomp=${m}`]);
    assert.ok(typeof o === 'object' && o.seccomp === m);
  }
  assert.throws(() => parseCommandLine([...base, '--seccomp=allow']), /--seccomp must be one of/);
  const o = parseCommandLine([...base, '--modcaps=+sys_admin:-MKNOD:-cap_chown']);
  assert.ok(typeof o === 'object' && o.modcaps === '+sys_admin:-MKNOD:-cap_chown');
  for (const bad of ['sys_admin', '+nosuch', '+chown::-mknod', '', '+constructor', '-__proto__']) {
    assert.throws(() => parseCommandLine([...base, `--modcaps=${bad}`]), /--modcaps/, bad);
  }
});

test('capability sets: virtiofsd\'s default, what each set-up step needs, --modcaps on top', () => {
  const names = (o: Parameters<typeof capabilitySet>[0]): string[] => capabilityNames(capabilitySet(o));
  const base = ['chown', 'dac_override', 'fowner', 'fsetid', 'setgid', 'setuid', 'mknod', 'setfcap'];
  assert.equal(names({ sandbox: 'none', mountpoint: false }), base);
  assert.equal(names({ sandbox: 'namespace', mountpoint: false }), base, 'the helper does the mounts');
  assert.equal(names({ sandbox: 'chroot', mountpoint: false }), [...base.slice(0, 6), 'sys_chroot', ...base.slice(6)]);
  assert.equal(names({ sandbox: 'none', mountpoint: true }), [...base.slice(0, 6), 'sys_admin', ...base.slice(6)]);
  assert.equal(names({ sandbox: 'none', mountpoint: false, fileHandles: true }),
    ['chown', 'dac_override', 'dac_read_search', ...base.slice(2)]);
  assert.equal(names({ sandbox: 'none', mountpoint: false, modcaps: '-mknod:-setfcap:+sys_nice' }),
    [...base.slice(0, 6), 'sys_nice']);
});

test('--sandbox=namespace: serves, pivot_root into the share, own mount/pid/net namespaces, SIGTERM works', async () => {
  if (!requireRoot()) return;
  const d = await start('namespace');
  try {
    await checkServesAndStaysInside(d);
    for (const kind of ['mnt', 'pid', 'net']) assert.is.not(ns(d.pid, kind), ns('self', kind), `${kind} namespace differs`);
    // Every thread starts from the narrowed bounding set; the helper outside keeps its own (it did the mounts).
    assertThreadCaps(d.pid, DEFAULT_CAPS);
    const helperCaps = capabilitiesOf(fs.readFileSync(`/proc/${d.child.pid}/status`, 'utf8'));
    assert.ok(capabilityNames(helperCaps.CapEff).includes('sys_admin'), 'the helper keeps CAP_SYS_ADMIN');
    assert.not.ok(fs.readdirSync(`/proc/${d.child.pid}/fd`).length > 4, 'the helper closed its request channel');
    // Its root directory holds exactly the share: the host's / is not reachable by any path.
    assert.equal(fs.readdirSync(`/proc/${d.pid}/root`).sort(), fs.readdirSync(d.dir).sort());
    assert.ok(!fs.existsSync(`/proc/${d.pid}/root/etc/passwd`));
    assert.ok(!fs.existsSync(`/proc/${d.pid}/root/proc`), 'no /proc either (the daemon keeps an fd of its own)');
    // Its /proc shows no host process: every fd link it holds points inside its namespaces.
    const mounts = fs.readFileSync(`/proc/${d.pid}/mounts`, 'utf8').trim().split('\n');
    assert.is(mounts.filter((l) => l.split(' ')[1] === '/').length, 1, `one mount at /: ${mounts.join(' | ')}`);
    assert.is(mounts.length, 1, `only the share is mounted: ${mounts.join(' | ')}`);
  } catch (e) {
    console.error(d.stderr());
    throw e;
  } finally {
    const r = await stop(d);
    assert.equal(r, { code: 0, signal: null }, 'SIGTERM to the helper reaches the daemon; clean exit 0');
  }
});

test('--sandbox=namespace: a SIGTERM while the daemon starts stops it (none is lost to its PID 1)', async () => {
  if (!requireRoot()) return;
  // The signal goes to the helper as soon as the daemon (PID 1 of the namespace) exists: it is still starting
  // node then and has no handler of its own, which a PID 1 needs, or the kernel drops the signal.
  for (let round = 0; round < 3; round++) {
    const dir = fs.mkdtempSync(path.join(tmp, 'early-'));
    let err = '';
    const [cmd, args] = runtimeArgs(CLI, [`--socket-path=${path.join(tmp, `early${round}.sock`)}`, `--shared-dir=${dir}`,
      '--sandbox=namespace', '--log-level=info']);
    const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], cwd: tmp });
    child.stderr!.on('data', (b: Buffer) => { err += b.toString(); });
    const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) =>
      child.once('exit', (code, signal) => resolve({ code, signal })));
    const forked = (): boolean => {
      try {
        return fs.readlinkSync(`/proc/${child.pid}/exe`) === HELPER
          && fs.readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8').trim() !== '';
      } catch {
        return false; // between exec and fork, or gone
      }
    };
    await waitFor(() => child.exitCode !== null || forked(), 'the helper forked the daemon', 20000, 1);
    signalChild(child, 'SIGTERM');
    const killer = setTimeout(() => child.kill('SIGKILL'), 15000);
    const r = await exited;
    clearTimeout(killer);
    assert.equal(r, { code: 0, signal: null }, `round ${round}: the daemon stopped on SIGTERM, exit 0: ${err}`);
  }
});

test('--sandbox=chroot: serves, the root is the share', async () => {
  if (!requireRoot()) return;
  const d = await start('chroot');
  try {
    await checkServesAndStaysInside(d);
    assert.is(fs.readlinkSync(`/proc/${d.pid}/root`), fs.realpathSync(d.dir));
    assert.is(ns(d.pid, 'mnt'), ns('self', 'mnt'), 'chroot creates no namespace');
    assertThreadCaps(d.pid, capabilitySet({ sandbox: 'chroot', mountpoint: false }));
  } catch (e) {
    console.error(d.stderr());
    throw e;
  } finally {
    assert.equal(await stop(d), { code: 0, signal: null });
  }
});

test('--sandbox=none: serves (still no escape through FUSE), the root stays /', async () => {
  const d = await start('none');
  try {
    await checkServesAndStaysInside(d);
    assert.is(fs.readlinkSync(`/proc/${d.pid}/root`), '/');
  } finally {
    assert.equal(await stop(d), { code: 0, signal: null });
  }
});

test('--sandbox=none as root: every thread still runs with only the default capability set', async () => {
  if (!requireRoot()) return; // without root there is nothing to drop
  const d = await start('none');
  try {
    assertThreadCaps(d.pid, DEFAULT_CAPS);
  } finally {
    assert.equal(await stop(d), { code: 0, signal: null });
  }
});

test('--modcaps: the daemon runs with the adjusted set, and a dropped capability is one the guest cannot use', async () => {
  if (!requireRoot()) return;
  const plain = await start('none');
  const d = await start('none', ['--modcaps=-chown:+sys_nice']);
  try {
    assertThreadCaps(d.pid, capabilitySet({ sandbox: 'none', mountpoint: false, modcaps: '-chown:+sys_nice' }));
    // Giving a file away takes CAP_CHOWN: with it the SETATTR succeeds, without it the guest gets EPERM.
    for (const [daemon, want] of [[plain, 0], [d, E.EPERM]] as const) {
      const fc = await connectWhenListening(daemon.socket, { depth: 4 });
      try {
        await fc.init();
        const hello = await fc.lookup(FUSE_ROOT_ID, 'hello.txt');
        assert.is(await errnoOf(fc.setattr(hello.nodeid, { uid: 4242, gid: 4242 })), want, daemon.dir);
      } finally {
        fc.close();
      }
    }
    assert.is(fs.statSync(path.join(plain.dir, 'hello.txt')).uid, 4242);
    assert.is(fs.statSync(path.join(d.dir, 'hello.txt')).uid, 0);
  } catch (e) {
    console.error(d.stderr(), plain.stderr());
    throw e;
  } finally {
    assert.equal(await stop(d), { code: 0, signal: null });
    assert.equal(await stop(plain), { code: 0, signal: null });
  }
});

test('--seccomp=kill: the whole workload runs under the filter, on every thread, in the namespace sandbox', async () => {
  if (!requireRoot()) return;
  const d = await start('namespace', ['--seccomp=kill']);
  try {
    await checkServesAndStaysInside(d);
    assertThreadsFiltered(d.pid);
    assertThreadCaps(d.pid, DEFAULT_CAPS);
    // A second frontend after the first one left (accept4, a new session).
    const fc = await connectWhenListening(d.socket, { depth: 4 });
    try {
      await fc.init();
      const f = await fc.lookup(FUSE_ROOT_ID, 'new.txt');
      const o = await fc.open(f.nodeid, c.O_RDONLY);
      assert.is(new TextDecoder().decode(await fc.read(f.nodeid, o.fh, 0, 100)), 'written in the sandbox');
      await fc.release(f.nodeid, o.fh);
    } finally {
      fc.close();
    }
    assertThreadsFiltered(d.pid);
  } catch (e) {
    console.error(d.stderr());
    throw e;
  } finally {
    assert.equal(await stop(d), { code: 0, signal: null }, 'SIGTERM and a clean exit pass the filter');
  }
});

/** A test-only module to preload (preloadFlags): on SIGUSR2 it makes a syscall the allow-list lacks (getpriority). */
function outOfListPreload(): string {
  const file = path.join(tmp, 'out-of-list.mjs');
  fs.writeFileSync(file, "import * as os from 'node:os';\n"
    + "process.on('SIGUSR2', () => { os.getPriority(0); process.stderr.write('getpriority returned\\n'); });\n");
  return file;
}

test('--seccomp=kill|trap: a syscall outside the list ends the daemon with SIGSYS', async () => {
  if (!requireRoot()) return;
  for (const mode of ['kill', 'trap']) {
    if (mode === 'trap' && runtimeName === 'bun') {
      // Bun catches SIGSYS itself (the syscall would fail and the daemon go on): the CLI refuses trap there.
      const r = spawnSync(...runtimeArgs(CLI, [`--socket-path=${path.join(tmp, 'trap.sock')}`, `--shared-dir=${tmp}`,
        '--sandbox=none', '--seccomp=trap']), { encoding: 'utf8', timeout: 20000 });
      assert.is(r.status, 1, r.stderr);
      assert.match(r.stderr, /--seccomp=trap: Bun catches SIGSYS itself/);
      continue;
    }
    const d = await start('none', [`--seccomp=${mode}`], preloadFlags(outOfListPreload()));
    await checkServesAndStaysInside(d);
    assertThreadsFiltered(d.pid);
    const exited = new Promise<string | null>((resolve) => d.child.once('exit', (_c, sig) => resolve(sig)));
    process.kill(d.pid, 'SIGUSR2');
    const t = setTimeout(() => d.child.kill('SIGKILL'), 15000);
    assert.is(await exited, 'SIGSYS', `--seccomp=${mode}: ${d.stderr()}`);
    clearTimeout(t);
    assert.not.match(d.stderr(), /getpriority returned/);
  }
});

test('--seccomp=log: a syscall outside the list goes through and lands in the kernel log', async () => {
  if (!requireRoot()) return;
  const d = await start('none', ['--seccomp=log'], preloadFlags(outOfListPreload()));
  try {
    // Once a request has been served the daemon is set up, filter included (it is installed before start returns).
    await checkServesAndStaysInside(d);
    assertThreadsFiltered(d.pid);
    process.kill(d.pid, 'SIGUSR2');
    await waitFor(() => /getpriority returned/.test(d.stderr()), 'the out-of-list syscall\'s line on stderr');
    // SECCOMP_RET_LOG: "audit: type=1326 ... pid=PID ... syscall=NR ... code=0x7ffc0000" (when dmesg is readable).
    const nr = native.seccompArch() === 'x86_64' ? 140 : 141;
    let klog = '';
    try {
      klog = execFileSync('dmesg', { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    } catch {
      console.log('sandbox.test: dmesg unavailable, the kernel log is not checked');
    }
    if (klog) assert.match(klog, new RegExp(`type=1326 .*pid=${d.pid} .*syscall=${nr} .*code=0x7ffc0000`));
  } catch (e) {
    console.error(d.stderr());
    throw e;
  } finally {
    assert.equal(await stop(d), { code: 0, signal: null });
  }
});

test('--mountpoint with --seccomp=kill: file operations through the kernel mount, then a clean unmount', async () => {
  if (!requireDevFuse()) return;
  const dir = fs.mkdtempSync(path.join(tmp, 'share-mp-'));
  const mp = fs.mkdtempSync(path.join(tmp, 'mnt-'));
  const mounted = (): boolean => fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n')
    .some((l) => l.split(' ')[4] === mp);
  let err = '';
  const child = spawn(...runtimeArgs(CLI, [`--shared-dir=${dir}`, `--mountpoint=${mp}`, '--log-level=warn',
    '--seccomp=kill']), { stdio: ['ignore', 'ignore', 'pipe'] });
  child.stderr!.on('data', (b: Buffer) => { err += b.toString(); });
  const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })));
  try {
    await waitFor(() => mounted() || child.exitCode !== null, 'the mount', 20000);
    if (!mounted()) throw new Error(`did not mount: ${err}`);
    // The mount shows before the daemon has installed the filter (right after mount(2) returns): wait for it.
    await waitFor(() => threads(child.pid!)[0]!.seccomp === '2', 'the seccomp filter on the daemon\'s main thread');
    assertThreadsFiltered(child.pid!);
    assertThreadCaps(child.pid!, capabilitySet({ sandbox: 'none', mountpoint: true }));
    // The usual things a user does, each one a FUSE request served under the filter.
    fs.mkdirSync(path.join(mp, 'd'));
    fs.writeFileSync(path.join(mp, 'd', 'f'), 'x'.repeat(300000));
    assert.is(fs.readFileSync(path.join(mp, 'd', 'f'), 'utf8').length, 300000);
    fs.appendFileSync(path.join(mp, 'd', 'f'), 'tail');
    fs.truncateSync(path.join(mp, 'd', 'f'), 10);
    fs.chmodSync(path.join(mp, 'd', 'f'), 0o600);
    fs.chownSync(path.join(mp, 'd', 'f'), 1234, 1234);
    fs.utimesSync(path.join(mp, 'd', 'f'), 1000, 2000);
    fs.symlinkSync('f', path.join(mp, 'd', 'l'));
    assert.is(fs.readlinkSync(path.join(mp, 'd', 'l')), 'f');
    fs.linkSync(path.join(mp, 'd', 'f'), path.join(mp, 'd', 'h'));
    fs.renameSync(path.join(mp, 'd', 'h'), path.join(mp, 'h2'));
    assert.equal(fs.readdirSync(path.join(mp, 'd')).sort(), ['f', 'l']);
    execFileSync('mknod', [path.join(mp, 'fifo'), 'p']);
    const st = fs.statSync(path.join(dir, 'd', 'f'));
    assert.is(st.size, 10);
    assert.is(st.uid, 1234);
    assert.is(st.mode & 0o777, 0o600);
    fs.unlinkSync(path.join(mp, 'h2'));
    fs.rmSync(path.join(mp, 'd'), { recursive: true });
    fs.statfsSync(mp);
    assert.is(child.exitCode, null, 'still running');
  } catch (e) {
    console.error(err);
    throw e;
  } finally {
    signalChild(child, 'SIGTERM');
    const t = setTimeout(() => child.kill('SIGKILL'), 15000);
    const r = await exited;
    clearTimeout(t);
    assert.equal(r, { code: 0, signal: null }, `clean exit (umount2 is allowed in this mode): ${err}`);
    assert.not.ok(mounted(), 'unmounted');
  }
});

test('a missing shared directory under --sandbox=namespace fails with a message and a non-zero exit', async () => {
  if (!requireRoot()) return;
  const child = spawn(...runtimeArgs(CLI, [`--socket-path=${path.join(tmp, 'x.sock')}`,
    `--shared-dir=${path.join(tmp, 'missing')}`, '--sandbox=namespace']), { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (b: Buffer) => { err += b.toString(); });
  const code = await new Promise<number | null>((resolve) => child.once('exit', (c2) => resolve(c2)));
  assert.is(code, 1);
  assert.match(err, /shared-dir/);
});

test.after(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

test.run();

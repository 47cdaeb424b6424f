/**
 * --sandbox=namespace|chroot|none: the CLI as a child process, driven through FuseClient (a vhost-user frontend
 * speaking FUSE). For each mode: the daemon serves requests; `..` from the root and a symlink to /etc lead nowhere
 * outside the share; and, seen from the host, the daemon's root directory (/proc/PID/root) holds exactly the share
 * (namespace, chroot) and its mount, pid and net namespaces differ from ours (namespace). SIGTERM still stops it
 * cleanly through the sandbox helper. Needs root (skipped otherwise).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { FuseClient, FuseError } from '../host/frontend/fuse-client.js';
import { FUSE_ROOT_ID } from '../host/fuse/protocol.js';
import { native } from '../host/native-loader.js';
import { parseCommandLine } from '../host/cli.js';

const c = native.constants;
const E = c.errno;
const S_IFMT = 0o170000, S_IFDIR = 0o040000, S_IFLNK = 0o120000;
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const CLI = path.join(ROOT, 'dist', 'host', 'cli.js');
const HELPER = path.join(ROOT, 'build', 'Release', 'virtiofsd-ts-sandbox');
const isRoot = native.geteuid() === 0;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sandbox-test-'));
let seq = 0;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function errnoOf(p: Promise<unknown>): Promise<number> {
  try {
    await p;
  } catch (e) {
    if (e instanceof FuseError) return e.errno;
    throw e;
  }
  return 0;
}

interface Daemon { child: ChildProcess; pid: number; socket: string; dir: string; stderr: () => string }

async function start(mode: string): Promise<Daemon> {
  const n = seq++;
  const dir = fs.mkdtempSync(path.join(tmp, `share-${mode}-`));
  fs.writeFileSync(path.join(dir, 'hello.txt'), 'hello from the share\n');
  fs.mkdirSync(path.join(dir, 'sub'));
  fs.symlinkSync('/etc', path.join(dir, 'etc-link'));
  fs.symlinkSync('../../../../../../etc/passwd', path.join(dir, 'sub', 'up-link'));
  const socket = path.join(tmp, `s${n}.sock`);
  let err = '';
  const child = spawn(process.execPath, [CLI, `--socket-path=${socket}`, `--shared-dir=${dir}`, '--log-level=warn',
    `--sandbox=${mode}`], { stdio: ['ignore', 'ignore', 'pipe'] });
  child.stderr!.on('data', (b: Buffer) => { err += b.toString(); });
  const t0 = Date.now();
  while (!fs.existsSync(socket)) {
    if (child.exitCode !== null || Date.now() - t0 > 10000) {
      child.kill('SIGKILL');
      throw new Error(`daemon (--sandbox=${mode}) did not start: ${err}`);
    }
    await sleep(20);
  }
  let pid = child.pid!;
  if (mode === 'namespace') {
    // The spawned process became the helper (execve); the daemon is its only child, PID 1 of the new namespaces.
    assert.is(fs.readlinkSync(`/proc/${pid}/exe`), HELPER, 'the CLI re-executed itself as the sandbox helper');
    const kids = fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean);
    assert.is(kids.length, 1, 'one child');
    pid = Number(kids[0]);
    assert.match(fs.readFileSync(`/proc/${pid}/status`, 'utf8'), /^NSpid:\s+\d+\s+1$/m);
  }
  return { child, pid, socket, dir, stderr: () => err };
}

async function stop(d: Daemon): Promise<{ code: number | null; signal: string | null }> {
  const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) => {
    if (d.child.exitCode !== null || d.child.signalCode !== null) resolve({ code: d.child.exitCode, signal: d.child.signalCode });
    else d.child.once('exit', (code, signal) => resolve({ code, signal }));
  });
  d.child.kill('SIGTERM');
  const t = setTimeout(() => d.child.kill('SIGKILL'), 5000);
  const r = await exited;
  clearTimeout(t);
  return r;
}

/** What a FUSE client can reach from the root: it must stay inside the share. */
async function checkServesAndStaysInside(d: Daemon): Promise<void> {
  const fc = await FuseClient.connect(d.socket, { depth: 8 });
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

test('options: --sandbox and --seccomp parse; bad values are refused', () => {
  const base = ['--socket-path=/tmp/x.sock', '--shared-dir=/tmp'];
  for (const m of ['namespace', 'chroot', 'none']) {
    const o = parseCommandLine([...base, `--sandbox=${m}`]);
    assert.ok(typeof o === 'object' && o.sandbox === m);
  }
  const d = parseCommandLine(base);
  assert.ok(typeof d === 'object' && d.sandbox === undefined, 'default decided at start (root: namespace)');
  assert.throws(() => parseCommandLine([...base, '--sandbox=jail']), /--sandbox/);
  assert.ok(typeof parseCommandLine([...base, '--seccomp=none']) === 'object');
  assert.throws(() => parseCommandLine([...base, '--seccomp=kill']), /only 'none'/);
});

test('--sandbox=namespace: serves, pivot_root into the share, own mount/pid/net namespaces, SIGTERM works', async () => {
  if (!isRoot) return;
  const d = await start('namespace');
  try {
    await checkServesAndStaysInside(d);
    for (const kind of ['mnt', 'pid', 'net']) assert.is.not(ns(d.pid, kind), ns('self', kind), `${kind} namespace differs`);
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

test('--sandbox=chroot: serves, the root is the share', async () => {
  if (!isRoot) return;
  const d = await start('chroot');
  try {
    await checkServesAndStaysInside(d);
    assert.is(fs.readlinkSync(`/proc/${d.pid}/root`), fs.realpathSync(d.dir));
    assert.is(ns(d.pid, 'mnt'), ns('self', 'mnt'), 'chroot creates no namespace');
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

test('a missing shared directory under --sandbox=namespace fails with a message and a non-zero exit', async () => {
  if (!isRoot) return;
  const child = spawn(process.execPath, [CLI, `--socket-path=${path.join(tmp, 'x.sock')}`,
    `--shared-dir=${path.join(tmp, 'missing')}`, '--sandbox=namespace'], { stdio: ['ignore', 'ignore', 'pipe'] });
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

/**
 * The /dev/fuse transport end to end on this host: `virtiofsd-ts --shared-dir=D --mountpoint=M` as a child
 * process, then plain node:fs on M (the host kernel's FUSE client), checked against D. Then the ways a session
 * ends: SIGTERM (clean unmount, exit 0), SIGTERM with a file still open (lazy unmount), an unmount from outside
 * (the kernel ends the session: the daemon exits 0), SIGKILL (a dead mount, cleaned up here with umount -l).
 *
 * Needs root and /dev/fuse (a counted skip otherwise, a failure under CI=true). Each test mounts its own daemon;
 * every mount made here is detached in test.after, even on failure.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CLI, type MountedDaemon, detach, isMounted, mountDaemon } from './util/dev-fuse-mount.js';
import { requireDevFuse } from './util/prereq.js';

const tmp = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'dev-fuse-test-')));
fs.chmodSync(tmp, 0o755); // other users (the default_permissions test) must reach the mountpoints
const mountpoints: string[] = [];
const children: ChildProcess[] = [];
let seq = 0;

function detachAll(): void {
  for (const mp of mountpoints) detach(mp);
}

type Daemon = MountedDaemon;

/** Starts the CLI on a fresh D and M (test/util/dev-fuse-mount.ts) and waits for the mount to appear. */
async function start(extra: string[] = []): Promise<Daemon> {
  const n = seq++;
  const dir = path.join(tmp, `share${n}`);
  const mp = path.join(tmp, `mnt${n}`);
  fs.mkdirSync(dir);
  fs.mkdirSync(mp);
  mountpoints.push(mp);
  const daemon = await mountDaemon(dir, mp, extra);
  children.push(daemon.child);
  return daemon;
}

async function exitWithin(d: Daemon, ms: number): Promise<number | null> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((resolve) => { timer = setTimeout(() => resolve('timeout'), ms); });
  const r = await Promise.race([d.exit, timeout]);
  clearTimeout(timer);
  if (r === 'timeout') throw new Error(`daemon did not exit within ${ms} ms:\n${d.stderr()}`);
  return r;
}

function code(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    return (e as NodeJS.ErrnoException).code ?? String(e);
  }
  return 'ok';
}

test.after(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  detachAll();
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** Runs `body` against a daemon of its own (every test here stands alone), stopped afterwards even on failure. */
async function withDaemon(body: (d: Daemon) => Promise<void> | void): Promise<void> {
  const d = await start();
  try {
    await body(d);
  } finally {
    await d.stop();
  }
}

test('mounts: fuse.virtiofsd-ts with allow_other and default_permissions; the share is visible', async () => {
  if (!requireDevFuse()) return;
  await withDaemon(async (d) => {
    fs.writeFileSync(path.join(d.dir, 'before.txt'), 'was here before the mount');
    const line = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').find((l) => l.includes(` ${d.mp} `))!;
    assert.match(line, / - fuse\.virtiofsd-ts virtiofsd-ts /);
    assert.match(line, /default_permissions/);
    assert.match(line, /allow_other/);
    assert.match(line, /nosuid,nodev/);
    assert.is(fs.readFileSync(path.join(d.mp, 'before.txt'), 'utf8'), 'was here before the mount');
    assert.ok(fs.statSync(d.mp).isDirectory());
  });
});

test('files: create, write, read back, append, truncate, a 3 MiB file in big writes; the same bytes in D', async () => {
  if (!requireDevFuse()) return;
  await withDaemon(async (d) => {
    const m = (p: string) => path.join(d.mp, p);
    const s = (p: string) => path.join(d.dir, p);
    fs.writeFileSync(m('a.txt'), 'hello');
    fs.appendFileSync(m('a.txt'), ', world');
    assert.is(fs.readFileSync(m('a.txt'), 'utf8'), 'hello, world');
    assert.is(fs.readFileSync(s('a.txt'), 'utf8'), 'hello, world');
    const big = Buffer.alloc(3 * 1024 * 1024 + 123);
    for (let i = 0; i < big.length; i++) big[i] = (i * 131 + (i >> 12)) & 0xff;
    fs.writeFileSync(m('big.bin'), big);
    assert.ok(fs.readFileSync(s('big.bin')).equals(big), 'host file has the bytes');
    assert.ok(fs.readFileSync(m('big.bin')).equals(big), 'read back through the mount');
    const fd = fs.openSync(m('big.bin'), 'r');
    const part = Buffer.alloc(5000);
    assert.is(fs.readSync(fd, part, 0, 5000, 1024 * 1024 - 7), 5000);
    fs.closeSync(fd);
    assert.ok(part.equals(big.subarray(1024 * 1024 - 7, 1024 * 1024 - 7 + 5000)), 'pread at an offset');
    fs.truncateSync(m('a.txt'), 5);
    assert.is(fs.readFileSync(s('a.txt'), 'utf8'), 'hello');
    assert.is(fs.statSync(m('a.txt')).size, 5);
    fs.truncateSync(m('a.txt'), 10000);
    assert.is(fs.statSync(s('a.txt')).size, 10000);
  });
});

test('directories, rename, symlinks, hard links', async () => {
  if (!requireDevFuse()) return;
  await withDaemon(async (d) => {
    const m = (p: string) => path.join(d.mp, p);
    const s = (p: string) => path.join(d.dir, p);
    fs.mkdirSync(m('dir/sub'), { recursive: true });
    for (let i = 0; i < 300; i++) fs.writeFileSync(m(`dir/f${i}`), String(i));
    const names = fs.readdirSync(m('dir')).sort();
    assert.is(names.length, 301);
    assert.equal(names, fs.readdirSync(s('dir')).sort());
    const typed = fs.readdirSync(m('dir'), { withFileTypes: true });
    assert.ok(typed.find((e) => e.name === 'sub')!.isDirectory());
    assert.ok(typed.find((e) => e.name === 'f7')!.isFile());

    fs.renameSync(m('dir/f1'), m('dir/sub/moved'));
    assert.is(fs.readFileSync(s('dir/sub/moved'), 'utf8'), '1');
    assert.is(code(() => fs.statSync(s('dir/f1'))), 'ENOENT');
    fs.renameSync(m('dir/f2'), m('dir/f3')); // over an existing file
    assert.is(fs.readFileSync(m('dir/f3'), 'utf8'), '2');

    fs.symlinkSync('sub/moved', m('dir/link'));
    assert.is(fs.readlinkSync(m('dir/link')), 'sub/moved');
    assert.is(fs.readlinkSync(s('dir/link')), 'sub/moved');
    assert.ok(fs.lstatSync(m('dir/link')).isSymbolicLink());
    assert.is(fs.readFileSync(m('dir/link'), 'utf8'), '1', 'followed by the kernel');

    fs.linkSync(m('dir/f4'), m('dir/hard'));
    assert.is(fs.statSync(m('dir/f4')).nlink, 2);
    assert.is(fs.statSync(m('dir/hard')).nlink, 2);
    assert.is(fs.statSync(s('dir/f4')).nlink, 2);
    assert.is(fs.statSync(m('dir/f4')).ino, fs.statSync(m('dir/hard')).ino, 'one inode');
    fs.unlinkSync(m('dir/hard'));
    assert.is(fs.statSync(m('dir/f4')).nlink, 1);
    assert.is(fs.statSync(m('dir')).nlink, 3, 'dir: ., its entry, sub/..');
  });
});

test('attributes: chmod, chown, utimes with nanoseconds, seen the same in D', async () => {
  if (!requireDevFuse()) return;
  await withDaemon(async (d) => {
    const p = path.join(d.mp, 'attr');
    const h = path.join(d.dir, 'attr');
    fs.writeFileSync(p, 'x');
    fs.chmodSync(p, 0o640);
    assert.is(fs.statSync(p).mode & 0o7777, 0o640);
    assert.is(fs.statSync(h).mode & 0o7777, 0o640);
    fs.chownSync(p, 1234, 5678);
    assert.equal([fs.statSync(p).uid, fs.statSync(p).gid], [1234, 5678]);
    assert.equal([fs.statSync(h).uid, fs.statSync(h).gid], [1234, 5678]);
    execFileSync('touch', ['-m', '-d', '@1600000000.123456789', p]);
    execFileSync('touch', ['-a', '-d', '@1500000000.987654321', p]);
    for (const f of [p, h]) {
      const st = fs.statSync(f, { bigint: true });
      assert.is(st.mtimeNs, 1600000000123456789n, `mtime of ${f}`);
      assert.is(st.atimeNs, 1500000000987654321n, `atime of ${f}`);
    }
    fs.utimesSync(p, 1000.25, 2000.5);
    assert.is(fs.statSync(h, { bigint: true }).mtimeNs, 2000500000000n);
  });
});

test('errors: ENOENT, EEXIST, ENOTEMPTY, ENOTDIR, EISDIR', async () => {
  if (!requireDevFuse()) return;
  await withDaemon(async (d) => {
    const m = (p: string) => path.join(d.mp, p);
    fs.mkdirSync(m('e/full'), { recursive: true });
    fs.writeFileSync(m('e/full/x'), '');
    fs.writeFileSync(m('e/file'), '');
    assert.is(code(() => fs.statSync(m('e/missing'))), 'ENOENT');
    assert.is(code(() => fs.readFileSync(m('e/missing'))), 'ENOENT');
    assert.is(code(() => fs.mkdirSync(m('e/full'))), 'EEXIST');
    assert.is(code(() => fs.writeFileSync(m('e/file'), '', { flag: 'wx' })), 'EEXIST');
    assert.is(code(() => fs.rmdirSync(m('e/full'))), 'ENOTEMPTY');
    assert.is(code(() => fs.readdirSync(m('e/file'))), 'ENOTDIR');
    assert.is(code(() => fs.mkdirSync(m('e/file/sub'))), 'ENOTDIR');
    assert.is(code(() => fs.writeFileSync(m('e/full'), 'x')), 'EISDIR');
    assert.is(code(() => fs.unlinkSync(m('e/full'))), 'EISDIR');
    fs.unlinkSync(m('e/full/x'));
    fs.rmdirSync(m('e/full'));
    fs.unlinkSync(m('e/file'));
    assert.equal(fs.readdirSync(path.join(d.dir, 'e')), []);
  });
});

test('default_permissions: another user is refused by the kernel; its creations carry its uid', async () => {
  if (!requireDevFuse()) return;
  await withDaemon(async (d) => {
    const p = path.join(d.mp, 'private');
    fs.writeFileSync(p, 'secret');
    fs.chmodSync(p, 0o600);
    fs.mkdirSync(path.join(d.mp, 'pub'));
    fs.chmodSync(path.join(d.mp, 'pub'), 0o777);
    const script = `const fs = require('fs');
      const r = (f) => { try { f(); return 'ok'; } catch (e) { return e.code; } };
      console.log(JSON.stringify([r(() => fs.readFileSync(${JSON.stringify(p)})),
        r(() => fs.writeFileSync(${JSON.stringify(path.join(d.mp, 'pub', 'mine'))}, 'x'))]));`;
    const r = spawnSync(process.execPath, ['-e', script], { uid: 65534, gid: 65534, encoding: 'utf8', timeout: 10000 });
    assert.equal(JSON.parse(r.stdout), ['EACCES', 'ok'], r.stderr);
    const st = fs.statSync(path.join(d.dir, 'pub', 'mine'));
    assert.equal([st.uid, st.gid], [65534, 65534]);
  });
});

test('SIGTERM: the mount is gone and the daemon exits 0', async () => {
  if (!requireDevFuse()) return;
  const d = await start();
  fs.writeFileSync(path.join(d.dir, 'big.bin'), Buffer.alloc(100_000, 7));
  fs.writeFileSync(path.join(d.mp, 'a.txt'), 'hello');
  fs.unlinkSync(path.join(d.mp, 'a.txt'));
  d.child.kill('SIGTERM');
  assert.is(await exitWithin(d, 10000), 0, d.stderr());
  assert.not.ok(isMounted(d.mp), 'unmounted');
  assert.is(d.stderr(), '', 'nothing logged at warn or above');
  assert.ok(fs.existsSync(path.join(d.dir, 'big.bin')), 'the share itself is untouched');
  assert.not.ok(fs.existsSync(path.join(d.dir, 'a.txt')));
});

test('SIGINT with a file still open on the mount: detached lazily, exit 0; the open fd then fails', async () => {
  if (!requireDevFuse()) return;
  const b = await start();
  fs.writeFileSync(path.join(b.mp, 'f'), 'data');
  const fd = fs.openSync(path.join(b.mp, 'f'), 'r');
  try {
    b.child.kill('SIGINT');
    assert.is(await exitWithin(b, 10000), 0, b.stderr());
    assert.not.ok(isMounted(b.mp), 'detached from the tree');
    assert.ok(['ENOTCONN', 'ECONNABORTED', 'EIO'].includes(code(() => fs.readSync(fd, Buffer.alloc(4), 0, 4, 0))));
  } finally {
    code(() => fs.closeSync(fd)); // FLUSH cannot reach anyone: ENOTCONN
  }
});

test('unmounted from outside: the kernel ends the session and the daemon exits 0', async () => {
  if (!requireDevFuse()) return;
  const b = await start();
  assert.is(fs.readdirSync(b.mp).length, 0);
  execFileSync('umount', [b.mp]);
  assert.is(await exitWithin(b, 10000), 0, b.stderr());
  assert.not.ok(isMounted(b.mp));
});

test('SIGKILL leaves a dead mount (ENOTCONN); umount -l cleans it up', async () => {
  if (!requireDevFuse()) return;
  const b = await start();
  fs.writeFileSync(path.join(b.mp, 'f'), 'x');
  b.child.kill('SIGKILL');
  await exitWithin(b, 10000);
  assert.ok(isMounted(b.mp), 'nobody unmounted it');
  assert.is(code(() => fs.statSync(b.mp)), 'ENOTCONN');
  execFileSync('umount', ['-l', b.mp]);
  assert.not.ok(isMounted(b.mp));
  assert.is(fs.readFileSync(path.join(b.dir, 'f'), 'utf8'), 'x');
});

test('the CLI refuses a mountpoint inside the share, and --socket-path with --mountpoint', async () => {
  // Refused before /dev/fuse is opened: needs neither root nor the device.
  const dir = path.join(tmp, 'refuse');
  fs.mkdirSync(path.join(dir, 'inner'), { recursive: true });
  let r = spawnSync(process.execPath, [CLI, `--shared-dir=${dir}`, `--mountpoint=${path.join(dir, 'inner')}`],
    { encoding: 'utf8', timeout: 10000 });
  assert.is(r.status, 1);
  assert.match(r.stderr, /must not be inside --shared-dir/);
  r = spawnSync(process.execPath, [CLI, `--shared-dir=${dir}`, `--mountpoint=${tmp}`, '--socket-path=/tmp/x.sock'],
    { encoding: 'utf8', timeout: 10000 });
  assert.is(r.status, 2);
  assert.match(r.stderr, /exclusive/);
  r = spawnSync(process.execPath, [CLI, `--shared-dir=${dir}`, `--mountpoint=${path.join(tmp, 'nope')}`],
    { encoding: 'utf8', timeout: 10000 });
  assert.is(r.status, 1);
  assert.match(r.stderr, /--mountpoint .*ENOENT/);
  assert.not.ok(isMounted(path.join(dir, 'inner')));
});

test.run();

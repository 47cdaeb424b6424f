/**
 * PassthroughFs on a temporary directory: lookup counts and fd lifetime, name and symlink safety, and the
 * semantics of the operations a guest's coreutils use.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { native } from '../host/native-loader.js';
import { countOpenFds } from './util/fds.js';
import { setLogLevel } from '../host/log.js';
import { AttrTarget, BufferData, BufferDirTarget, STATX, type Entry } from '../host/fuse/filesystem.js';
import { PassthroughFs } from '../host/passthrough/passthrough-fs.js';
import { RENAME_EXCHANGE, RENAME_NOREPLACE } from '../host/fuse/protocol.js';
import { requireDevFuse, requireRoot } from './util/prereq.js';
import { startRecordingMount } from './util/recording-mount.js';
import { timesNs } from './util/stat-ns.js';

setLogLevel('error');

const C = native.constants;
const E = C.errno;
const ctx = { uid: process.getuid!(), gid: process.getgid!(), pid: process.pid };

let dir = '';
let pfs: PassthroughFs;
let attr: AttrTarget;

function setup(): void {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vfs-pt-'));
  pfs = new PassthroughFs({ root: dir });
  attr = AttrTarget.standalone();
}

function teardown(): void {
  pfs.close();
  fs.rmSync(dir, { recursive: true, force: true });
}

function entry(r: Entry | number, what = 'entry'): Entry {
  if (typeof r === 'number') throw new Error(`${what}: ${r} (${native.strerror(-r)})`);
  return r;
}

function num<T>(r: T | number, what = 'result'): T {
  if (typeof r === 'number') throw new Error(`${what}: ${r} (${native.strerror(-r)})`);
  return r;
}

const type = (a: AttrTarget): number => a.mode & C.S_IFMT;

test.before.each(setup);
test.after.each(teardown);

test('keyOf: one key per (st_dev, st_ino), a Number below 2^43 on the first 1024 filesystems, a string beyond', () => {
  const a = AttrTarget.standalone();
  const v = a.view;
  const keyOf = (major: number, minor: number, ino: bigint): number | string => {
    v.setUint32(STATX.devMajor, major, true);
    v.setUint32(STATX.devMinor, minor, true);
    v.setBigUint64(STATX.ino, ino, true);
    return pfs.inodes.keyOf(a);
  };
  const inos = [0n, 2n, 0xffff_ffffn, 0x1_0000_0005n, 2n ** 43n - 1n, 2n ** 43n, 2n ** 53n - 1n, 2n ** 53n,
    2n ** 53n + 1n, 2n ** 64n - 1n];
  // The shared directory's filesystem came first; then these, then enough to use up the Number range of devices.
  const devs: [number, number][] = [[259, 3], [259, 4], [8, 1], [0, 259]];
  for (let i = 0; devs.length < 1100; i++) devs.push([4095, i]);
  const seen = new Map<number | string, string>();
  for (const [major, minor] of devs) {
    for (const ino of inos) {
      const what = `${major}:${minor}:${ino}`;
      const key = keyOf(major, minor, ino);
      assert.is(keyOf(major, minor, ino), key, `${what}: the same key again`);
      assert.not.ok(seen.has(key), `${what}: a key of its own (${key} was ${seen.get(key)})`);
      seen.set(key, what);
      if (ino < 2n ** 43n && minor < 1000) assert.type(key, 'number', what);
      if (ino >= 2n ** 43n) assert.type(key, 'string', what);
    }
  }
  assert.type(keyOf(4095, 1099, 1n), 'string', 'the devices past the first 1024 get strings');
});

test('lookup counts: one node per inode, FORGET to zero closes the O_PATH fd', () => {
  fs.writeFileSync(path.join(dir, 'a'), 'x');
  const before = countOpenFds();
  const e1 = entry(pfs.lookup(ctx, 1, 'a', attr));
  assert.is(countOpenFds(), before + 1);
  const e2 = entry(pfs.lookup(ctx, 1, 'a', attr));
  assert.is(e2.nodeId, e1.nodeId, 'the same inode keeps its node id');
  assert.is.not(e1.nodeId, 1);
  assert.is(countOpenFds(), before + 1, 'a second lookup does not keep a second fd');
  assert.is(pfs.inodes.get(e1.nodeId)!.lookups, 2);
  pfs.forget(e1.nodeId, 1);
  assert.is(countOpenFds(), before + 1);
  assert.is(pfs.getattr(ctx, e1.nodeId, undefined, attr), 0);
  pfs.forget(e1.nodeId, 1);
  pfs.waitForCloses();
  assert.is(countOpenFds(), before, 'fd closed at zero');
  assert.is(pfs.getattr(ctx, e1.nodeId, undefined, attr), -E.ENOENT);
  const e3 = entry(pfs.lookup(ctx, 1, 'a', attr));
  assert.is.not(e3.nodeId, e1.nodeId, 'node ids are not reused');
  pfs.forget(e3.nodeId, 1);
  pfs.forget(1, 100);
  assert.is(pfs.getattr(ctx, 1, undefined, attr), 0, 'the root is never forgotten');
});

test('lookup of missing name is ENOENT; attributes are those of the host inode', () => {
  assert.is(pfs.lookup(ctx, 1, 'nope', attr), -E.ENOENT);
  fs.writeFileSync(path.join(dir, 'f'), 'hello');
  entry(pfs.lookup(ctx, 1, 'f', attr));
  const st = fs.lstatSync(path.join(dir, 'f'), { bigint: true });
  assert.is(attr.ino, st.ino);
  assert.is(attr.size, 5);
  assert.is(type(attr), C.S_IFREG);
});

test('`.` and `..`: `..` of the root is the root, `..` of a subdirectory its parent', () => {
  fs.mkdirSync(path.join(dir, 'sub'));
  const up = entry(pfs.lookup(ctx, 1, '..', attr));
  assert.is(up.nodeId, 1);
  const root = fs.statSync(dir, { bigint: true });
  assert.is(attr.ino, root.ino, 'root attributes, not those of the parent of the shared dir');
  const dot = entry(pfs.lookup(ctx, 1, '.', attr));
  assert.is(dot.nodeId, 1);
  const sub = entry(pfs.lookup(ctx, 1, 'sub', attr));
  const subUp = entry(pfs.lookup(ctx, sub.nodeId, '..', attr));
  assert.is(subUp.nodeId, 1);
  const subDot = entry(pfs.lookup(ctx, sub.nodeId, '.', attr));
  assert.is(subDot.nodeId, sub.nodeId);
  assert.is(pfs.inodes.get(sub.nodeId)!.lookups, 2);
});

test('names with `/`, empty names and `.`/`..` for create-like operations are refused', () => {
  fs.mkdirSync(path.join(dir, 'sub'));
  fs.writeFileSync(path.join(dir, 'sub', 'f'), '');
  assert.is(pfs.lookup(ctx, 1, 'sub/f', attr), -E.EINVAL);
  assert.is(pfs.lookup(ctx, 1, '../etc', attr), -E.EINVAL);
  assert.is(pfs.lookup(ctx, 1, '', attr), -E.EINVAL);
  assert.is(pfs.mkdir(ctx, 1, '..', 0o755, 0, attr), -E.EPERM);
  assert.is(pfs.mkdir(ctx, 1, 'a/b', 0o755, 0, attr), -E.EINVAL);
  assert.is(pfs.create(ctx, 1, '.', 0o644, C.O_CREAT | C.O_RDWR, 0, attr), -E.EPERM);
  assert.is(pfs.unlink(ctx, 1, 'sub/f'), -E.EINVAL);
  assert.is(pfs.rmdir(ctx, 1, '..'), -E.EPERM);
  assert.is(pfs.symlink(ctx, 1, '', '/etc', attr), -E.EINVAL);
  assert.is(pfs.rename(ctx, 1, 'sub', 1, '../x', 0), -E.EINVAL);
  assert.ok(fs.existsSync(path.join(dir, 'sub', 'f')));
});

test('a symlink pointing to /etc is never followed on the host', () => {
  fs.symlinkSync('/etc', path.join(dir, 'esc'));
  fs.symlinkSync('/etc/hostname', path.join(dir, 'escf'));
  const esc = entry(pfs.lookup(ctx, 1, 'esc', attr));
  assert.is(type(attr), C.S_IFLNK, 'the node is the link itself');
  assert.is(pfs.readlink(ctx, esc.nodeId), '/etc');
  assert.is(pfs.lookup(ctx, esc.nodeId, 'passwd', attr), -E.ENOTDIR, 'no lookup through the link');
  assert.is(pfs.opendir(ctx, esc.nodeId, C.O_RDONLY), -E.ENOTDIR);
  assert.is(pfs.mkdir(ctx, esc.nodeId, 'x', 0o755, 0, attr), -E.ENOTDIR);
  const escf = entry(pfs.lookup(ctx, 1, 'escf', attr));
  assert.is(pfs.open(ctx, escf.nodeId, C.O_RDONLY), -E.ELOOP, 'no open through the link');
  assert.is(pfs.setattr(ctx, escf.nodeId, { valid: 0, size: 0 }, attr), -E.EINVAL, 'no truncate through the link');
  assert.is(pfs.setattr(ctx, escf.nodeId, { valid: 0, mode: 0o777 }, attr), -E.EOPNOTSUPP, 'no chmod through it');
  // CREATE on a dangling link into another directory must not create the target.
  const outside = fs.mkdtempSync(path.join(os.tmpdir(), 'vfs-outside-'));
  try {
    fs.symlinkSync(path.join(outside, 'victim'), path.join(dir, 'dangling'));
    const r = pfs.create(ctx, 1, 'dangling', 0o644, C.O_CREAT | C.O_WRONLY, 0, attr);
    assert.ok(typeof r === 'number' && r < 0, 'create through a dangling link fails');
    assert.not.ok(fs.existsSync(path.join(outside, 'victim')), 'nothing created outside the share');
    // READDIRPLUS lists the link as a link.
    const d = num(pfs.opendir(ctx, 1, C.O_RDONLY));
    const t = new BufferDirTarget(4096, true, attr);
    assert.is(pfs.readdirplus(ctx, 1, d.fh, 0n, t), 0);
    const names = t.entries().map((e) => e.name).sort();
    assert.equal(names, ['.', '..', 'dangling', 'esc', 'escf']);
    pfs.releasedir(ctx, 1, d.fh);
  } finally {
    fs.rmSync(outside, { recursive: true, force: true });
  }
});

test('symlink creates a link whose target is stored verbatim', () => {
  const l = entry(pfs.symlink(ctx, 1, 'l', '../../outside', attr));
  assert.is(type(attr), C.S_IFLNK);
  assert.is(fs.readlinkSync(path.join(dir, 'l')), '../../outside');
  assert.is(pfs.readlink(ctx, l.nodeId), '../../outside');
  assert.is(pfs.symlink(ctx, 1, 'l', 'x', attr), -E.EEXIST);
});

test('rename and rename2 flags (NOREPLACE, EXCHANGE, unknown bits)', () => {
  fs.writeFileSync(path.join(dir, 'a'), 'A');
  fs.writeFileSync(path.join(dir, 'b'), 'B');
  fs.mkdirSync(path.join(dir, 'd'));
  const d = entry(pfs.lookup(ctx, 1, 'd', attr));
  assert.is(pfs.rename(ctx, 1, 'a', 1, 'b', RENAME_NOREPLACE), -E.EEXIST);
  assert.is(pfs.rename(ctx, 1, 'a', 1, 'b', RENAME_EXCHANGE), 0);
  assert.is(fs.readFileSync(path.join(dir, 'a'), 'utf8'), 'B');
  assert.is(fs.readFileSync(path.join(dir, 'b'), 'utf8'), 'A');
  assert.is(pfs.rename(ctx, 1, 'a', 1, 'c', 1 << 5), -E.EINVAL);
  assert.is(pfs.rename(ctx, 1, 'a', d.nodeId, 'moved', 0), 0, 'across directories');
  assert.is(fs.readFileSync(path.join(dir, 'd', 'moved'), 'utf8'), 'B');
  assert.is(pfs.rename(ctx, 1, 'b', d.nodeId, 'moved', 0), 0, 'replaces by default');
  assert.is(fs.readFileSync(path.join(dir, 'd', 'moved'), 'utf8'), 'A');
  assert.is(pfs.rename(ctx, 1, 'gone', 1, 'x', 0), -E.ENOENT);
});

test('link: same node id, link count 2; unlink keeps the node until forgotten', () => {
  fs.writeFileSync(path.join(dir, 'f'), 'data');
  const f = entry(pfs.lookup(ctx, 1, 'f', attr));
  const g = entry(pfs.link(ctx, f.nodeId, 1, 'g', attr));
  assert.is(g.nodeId, f.nodeId);
  assert.is(attr.nlink, 2);
  assert.is(pfs.inodes.get(f.nodeId)!.lookups, 2);
  assert.is(pfs.unlink(ctx, 1, 'f'), 0);
  assert.is(pfs.getattr(ctx, f.nodeId, undefined, attr), 0);
  assert.is(attr.nlink, 1);
  assert.is(pfs.unlink(ctx, 1, 'g'), 0);
  assert.is(pfs.getattr(ctx, f.nodeId, undefined, attr), 0, 'an unlinked node still answers while looked up');
  assert.is(attr.nlink, 0);
  fs.mkdirSync(path.join(dir, 'dd'));
  const dd = entry(pfs.lookup(ctx, 1, 'dd', attr));
  assert.is(pfs.link(ctx, dd.nodeId, 1, 'dd2', attr), -E.EPERM, 'no directory hard links');
});

test('mknod: a fifo is created, and OPEN of it is refused without blocking', () => {
  const n = entry(pfs.mknod(ctx, 1, 'fifo', C.S_IFIFO | 0o640, 0, 0, attr));
  assert.is(type(attr), C.S_IFIFO);
  assert.is(attr.mode & 0o7777, 0o640, 'mode exact (umask already applied by the guest)');
  assert.ok(fs.lstatSync(path.join(dir, 'fifo')).isFIFO());
  assert.is(pfs.open(ctx, n.nodeId, C.O_WRONLY), -E.ENXIO);
  const r = entry(pfs.mknod(ctx, 1, 'plain', C.S_IFREG | 0o600, 0, 0, attr));
  assert.is(type(attr), C.S_IFREG);
  assert.ok(r.nodeId > 1);
  assert.is(pfs.mknod(ctx, 1, 'dir', C.S_IFDIR | 0o755, 0, 0, attr), -E.EINVAL);
});

test('setattr: truncate, times with nanoseconds, NOW, mode, and through an open handle', () => {
  fs.writeFileSync(path.join(dir, 'f'), '0123456789');
  const f = entry(pfs.lookup(ctx, 1, 'f', attr));
  assert.is(pfs.setattr(ctx, f.nodeId, { valid: 0, size: 3 }, attr), 0);
  assert.is(attr.size, 3);
  assert.is(fs.readFileSync(path.join(dir, 'f'), 'utf8'), '012');
  const times = { atime: { sec: 1_000_000_000, nsec: 123_456_789 }, mtime: { sec: 1_500_000_000, nsec: 987_654_321 } };
  assert.is(pfs.setattr(ctx, f.nodeId, { valid: 0, ...times }, attr), 0);
  assert.equal(attr.time('atime'), times.atime);
  assert.equal(attr.time('mtime'), times.mtime);
  const st = timesNs(path.join(dir, 'f'));
  assert.is(st.mtimeNs, 1_500_000_000_987_654_321n);
  assert.is(st.atimeNs, 1_000_000_000_123_456_789n);
  const before = Math.floor(Date.now() / 1000) - 2;
  assert.is(pfs.setattr(ctx, f.nodeId, { valid: 0, mtime: 'now' }, attr), 0);
  assert.ok(attr.time('mtime').sec >= before, 'mtime now');
  assert.equal(attr.time('atime'), times.atime, 'atime untouched (UTIME_OMIT)');
  assert.is(pfs.setattr(ctx, f.nodeId, { valid: 0, mode: 0o4711 }, attr), 0);
  assert.is(attr.mode & 0o7777, 0o4711);
  // Through a handle: ftruncate on the open fd.
  const o = num(pfs.open(ctx, f.nodeId, C.O_RDWR));
  assert.is(pfs.setattr(ctx, f.nodeId, { valid: 0, fh: o.fh, size: 100 }, attr), 0);
  assert.is(fs.statSync(path.join(dir, 'f')).size, 100);
  assert.is(pfs.setattr(ctx, f.nodeId, { valid: 0, fh: 9999, size: 1 }, attr), -E.EBADF);
  pfs.release(ctx, f.nodeId, o.fh, 0, 0);
  fs.mkdirSync(path.join(dir, 'd'));
  const d = entry(pfs.lookup(ctx, 1, 'd', attr));
  assert.is(pfs.setattr(ctx, d.nodeId, { valid: 0, size: 0 }, attr), -E.EISDIR);
});

test('setattr uid/gid (chown) when running as root', () => {
  if (!requireRoot()) return;
  fs.writeFileSync(path.join(dir, 'f'), '');
  fs.symlinkSync('/etc/passwd', path.join(dir, 'l'));
  const f = entry(pfs.lookup(ctx, 1, 'f', attr));
  assert.is(pfs.setattr(ctx, f.nodeId, { valid: 0, uid: 1234, gid: 5678 }, attr), 0);
  assert.is(attr.uid, 1234);
  assert.is(attr.gid, 5678);
  const l = entry(pfs.lookup(ctx, 1, 'l', attr));
  const passwd = fs.statSync('/etc/passwd');
  assert.is(pfs.setattr(ctx, l.nodeId, { valid: 0, uid: 4321 }, attr), 0);
  assert.is(attr.uid, 4321, 'lchown of the link');
  assert.is(fs.statSync('/etc/passwd').uid, passwd.uid, 'the target outside is untouched');
});

test('as root, new nodes belong to the caller (a setgid directory keeps its group)', () => {
  if (!requireRoot()) return;
  const caller = { uid: 1234, gid: 5678, pid: 1 };
  fs.chmodSync(dir, 0o777); // (mkdtemp makes it 0700: the caller could not create anything there)
  entry(pfs.mkdir(caller, 1, 'd', 0o755, 0, attr));
  assert.is(attr.uid, 1234);
  assert.is(attr.gid, 5678);
  entry(pfs.symlink(caller, 1, 'l', 'target', attr));
  assert.is(fs.lstatSync(path.join(dir, 'l')).uid, 1234);
  fs.mkdirSync(path.join(dir, 'sg'));
  fs.chownSync(path.join(dir, 'sg'), 0, 999);
  fs.chmodSync(path.join(dir, 'sg'), 0o2777);
  const sg = entry(pfs.lookup(ctx, 1, 'sg', attr));
  const c = num(pfs.create(caller, sg.nodeId, 'f', 0o644, C.O_CREAT | C.O_WRONLY, 0, attr));
  assert.is(attr.uid, 1234);
  assert.is(attr.gid, 999, 'group inherited from the setgid directory');
  pfs.release(caller, c.nodeId, c.fh, 0, 0);
  // An existing file opened by CREATE (no O_EXCL) is not chowned.
  fs.writeFileSync(path.join(dir, 'mine'), '');
  const o = num(pfs.create(caller, 1, 'mine', 0o644, C.O_CREAT | C.O_WRONLY, 0, attr));
  assert.is(attr.uid, 0);
  pfs.release(caller, o.nodeId, o.fh, 0, 0);
});

test('forgotten fds: a batch and an unlinked file\'s with blocks go to the closer thread, the rest close here', async () => {
  const handed = (): number => pfs.closerCounts()[0];
  const fds = countOpenFds();
  fs.writeFileSync(path.join(dir, 'kept'), 'x');
  const kept = entry(pfs.lookup(ctx, 1, 'kept', attr));
  let h = handed();
  pfs.forget(kept.nodeId, 1);
  await Promise.resolve(); // the fds a callback forgets are dealt with in a microtask, after its replies
  assert.is(handed(), h, 'a linked inode: closed here (its close evicts nothing)');
  assert.is(countOpenFds(), fds);
  fs.writeFileSync(path.join(dir, 'gone'), 'y'.repeat(100_000));
  const gone = entry(pfs.lookup(ctx, 1, 'gone', attr));
  fs.unlinkSync(path.join(dir, 'gone'));
  h = handed();
  pfs.forget(gone.nodeId, 1);
  await Promise.resolve();
  assert.is(handed(), h + 1, 'unlinked, with blocks: its last close evicts it, on the closer thread');
  fs.writeFileSync(path.join(dir, 'empty'), '');
  const empty = entry(pfs.lookup(ctx, 1, 'empty', attr));
  fs.unlinkSync(path.join(dir, 'empty'));
  h = handed();
  pfs.forget(empty.nodeId, 1);
  await Promise.resolve();
  assert.is(handed(), h, 'unlinked without blocks: closed here');
  const many = [];
  for (let i = 0; i < 10; i++) {
    fs.writeFileSync(path.join(dir, `m${i}`), '');
    many.push(entry(pfs.lookup(ctx, 1, `m${i}`, attr)).nodeId);
  }
  h = handed();
  for (const id of many) pfs.forget(id, 1);
  await Promise.resolve();
  assert.is(handed(), h + 10, 'a batch goes whole, for one wake-up');
  pfs.waitForCloses();
  assert.is(countOpenFds(), fds);
});

test('create + write + read round trip, O_TRUNC and O_APPEND, release closes the fd', () => {
  const fds = countOpenFds();
  const c = num(pfs.create(ctx, 1, 'new', 0o640, C.O_CREAT | C.O_EXCL | C.O_RDWR, 0, attr));
  assert.is(type(attr), C.S_IFREG);
  assert.is(attr.mode & 0o777, 0o640);
  const payload = new TextEncoder().encode('hello, guest');
  assert.is(pfs.write(ctx, c.nodeId, c.fh, 0, new BufferData(payload.length, payload), 0), payload.length);
  const rd = new BufferData(64);
  assert.is(pfs.read(ctx, c.nodeId, c.fh, 7, rd), 5);
  assert.is(new TextDecoder().decode(rd.bytes.subarray(0, 5)), 'guest');
  assert.is(pfs.read(ctx, c.nodeId, 4242, 0, rd), -E.EBADF, 'unknown fh');
  assert.is(pfs.create(ctx, 1, 'new', 0o644, C.O_CREAT | C.O_EXCL | C.O_RDWR, 0, attr), -E.EEXIST);
  // CREATE without O_EXCL of an existing file opens it (and O_TRUNC truncates).
  const again = num(pfs.create(ctx, 1, 'new', 0o644, C.O_CREAT | C.O_RDWR | C.O_TRUNC, 0, attr));
  assert.is(again.nodeId, c.nodeId);
  assert.is(fs.statSync(path.join(dir, 'new')).size, 0);
  assert.is(pfs.flush(ctx, c.nodeId, c.fh, 0n), 0);
  assert.is(pfs.fsync(ctx, c.nodeId, c.fh, true), 0);
  pfs.release(ctx, c.nodeId, c.fh, 0, 0);
  pfs.release(ctx, c.nodeId, again.fh, 0, 0);
  fs.writeFileSync(path.join(dir, 'new'), 'abc');
  const ap = num(pfs.open(ctx, c.nodeId, C.O_WRONLY | C.O_APPEND | C.O_NOFOLLOW | C.O_CREAT));
  const more = new TextEncoder().encode('def');
  assert.is(pfs.write(ctx, c.nodeId, ap.fh, 0, new BufferData(3, more), 0), 3);
  assert.is(fs.readFileSync(path.join(dir, 'new'), 'utf8'), 'abcdef', 'O_APPEND honoured');
  pfs.release(ctx, c.nodeId, ap.fh, 0, 0);
  pfs.forget(c.nodeId, 2);
  pfs.waitForCloses();
  assert.is(countOpenFds(), fds, 'no fd left behind');
});

test('new nodes get exactly the mode the guest asked for, whatever the daemon umask', () => {
  const old = process.umask(0o077);
  try {
    const fresh = new PassthroughFs({ root: dir });
    try {
      entry(fresh.mkdir(ctx, 1, 'd', 0o777, 0, attr));
      assert.is(fs.statSync(path.join(dir, 'd')).mode & 0o7777, 0o777);
      const c = num(fresh.create(ctx, 1, 'f', 0o666, C.O_CREAT | C.O_WRONLY, 0, attr));
      assert.is(fs.statSync(path.join(dir, 'f')).mode & 0o7777, 0o666);
      fresh.release(ctx, c.nodeId, c.fh, 0, 0);
      entry(fresh.mknod(ctx, 1, 'p', C.S_IFIFO | 0o666, 0, 0, attr));
      assert.is(fs.statSync(path.join(dir, 'p')).mode & 0o7777, 0o666);
    } finally {
      fresh.close();
    }
  } finally {
    process.umask(old);
  }
});

test('writeback mode: write-only opens become read-write, O_APPEND is left to the kernel', () => {
  const wb = new PassthroughFs({ root: dir, writeback: true });
  try {
    fs.writeFileSync(path.join(dir, 'f'), 'abc');
    const f = entry(wb.lookup(ctx, 1, 'f', attr));
    const o = num(wb.open(ctx, f.nodeId, C.O_WRONLY | C.O_APPEND));
    const rd = new BufferData(3);
    assert.is(wb.read(ctx, f.nodeId, o.fh, 0, rd), 3, 'the kernel may read through a write-only handle');
    assert.is(wb.write(ctx, f.nodeId, o.fh, 0, new BufferData(1, new Uint8Array([0x58])), 0), 1);
    assert.is(fs.readFileSync(path.join(dir, 'f'), 'utf8'), 'Xbc', 'writes land at the offset the kernel chose');
    wb.release(ctx, f.nodeId, o.fh, 0, 0);
  } finally {
    wb.close();
  }
  const f2 = entry(pfs.lookup(ctx, 1, 'f', attr));
  const o2 = num(pfs.open(ctx, f2.nodeId, C.O_WRONLY));
  assert.is(pfs.read(ctx, f2.nodeId, o2.fh, 0, new BufferData(3)), -E.EBADF, 'without writeback: write-only stays so');
  pfs.release(ctx, f2.nodeId, o2.fh, 0, 0);
});

test('mkdir, rmdir, unlink, statfs, access', () => {
  const d = entry(pfs.mkdir(ctx, 1, 'd', 0o750, 0, attr));
  assert.is(type(attr), C.S_IFDIR);
  assert.is(attr.mode & 0o777, 0o750);
  assert.is(attr.nlink, 2);
  fs.writeFileSync(path.join(dir, 'd', 'f'), '');
  assert.is(pfs.rmdir(ctx, 1, 'd'), -E.ENOTEMPTY);
  assert.is(pfs.unlink(ctx, 1, 'd'), -E.EISDIR);
  assert.is(pfs.unlink(ctx, d.nodeId, 'f'), 0);
  assert.is(pfs.rmdir(ctx, 1, 'd'), 0);
  assert.not.ok(fs.existsSync(path.join(dir, 'd')));
  const st = num(pfs.statfs(ctx, 1));
  assert.ok(st.bsize > 0 && st.blocks > 0 && st.namelen >= 255);
  fs.writeFileSync(path.join(dir, 'ro'), '');
  fs.chmodSync(path.join(dir, 'ro'), 0o444);
  const ro = entry(pfs.lookup(ctx, 1, 'ro', attr));
  const other = { uid: 4242, gid: 4242, pid: 1 };
  assert.is(pfs.access(other, ro.nodeId, 4), 0);
  assert.is(pfs.access(other, ro.nodeId, 2), -E.EACCES);
  assert.is(pfs.access({ uid: 0, gid: 0, pid: 1 }, ro.nodeId, 1), -E.EACCES, 'root cannot execute a non-executable');
});

test('readdir: every entry once, continuing from cookies with a small reply buffer', () => {
  const names: string[] = [];
  for (let i = 0; i < 60; i++) {
    names.push(`file-with-a-longish-name-${i}`);
    fs.writeFileSync(path.join(dir, names[i]), '');
  }
  const d = num(pfs.opendir(ctx, 1, C.O_RDONLY));
  const seen: string[] = [];
  let cookie = 0n;
  for (let rounds = 0; rounds < 100; rounds++) {
    const t = new BufferDirTarget(512, false);
    assert.is(pfs.readdir(ctx, 1, d.fh, cookie, t), 0);
    const es = t.entries();
    if (es.length === 0) break;
    seen.push(...es.map((e) => e.name));
    cookie = es[es.length - 1].cookie;
  }
  assert.equal(seen.slice().sort(), ['.', '..', ...names].sort());
  // From the start again (a rewinddir): the handle seeks back.
  const t = new BufferDirTarget(64 * 1024, false);
  assert.is(pfs.readdir(ctx, 1, d.fh, 0n, t), 0);
  assert.is(t.entries().length, 62);
  assert.is(pfs.readdir(ctx, 1, 12345, 0n, t), -E.EBADF);
  pfs.releasedir(ctx, 1, d.fh);
});

test('readdirplus: a lookup count only for entries that were sent, none for . and ..', () => {
  for (let i = 0; i < 20; i++) fs.writeFileSync(path.join(dir, `f${i}`), 'x'.repeat(i));
  const base = pfs.inodes.size;
  const fds = countOpenFds();
  const d = num(pfs.opendir(ctx, 1, C.O_RDONLY));
  const t = new BufferDirTarget(1000, true, attr);
  assert.is(pfs.readdirplus(ctx, 1, d.fh, 0n, t), 0);
  const es = t.entries();
  assert.ok(es.length > 0 && es.length < 22, `only some fit (${es.length})`);
  const withNode = es.filter((e) => e.nodeId !== 0);
  for (const e of es) {
    if (e.name === '.' || e.name === '..') assert.is(e.nodeId, 0);
    else assert.ok(e.nodeId > 1);
  }
  assert.is(pfs.inodes.size, base + withNode.length, 'one node per entry sent, none for entries that did not fit');
  for (const e of withNode) assert.is(pfs.inodes.get(e.nodeId)!.lookups, 1);
  // The rest, from the last cookie.
  let cookie = es[es.length - 1].cookie;
  const all = es.map((e) => e.name);
  for (;;) {
    const t2 = new BufferDirTarget(1000, true, attr);
    assert.is(pfs.readdirplus(ctx, 1, d.fh, cookie, t2), 0);
    const more = t2.entries();
    if (more.length === 0) break;
    all.push(...more.map((e) => e.name));
    for (const e of more) if (e.nodeId) withNode.push(e);
    cookie = more[more.length - 1].cookie;
  }
  assert.is(all.length, 22);
  assert.is(new Set(all).size, 22);
  for (const e of withNode) pfs.forget(e.nodeId, 1);
  pfs.releasedir(ctx, 1, d.fh);
  assert.is(pfs.inodes.size, base);
  pfs.waitForCloses();
  assert.is(countOpenFds(), fds);
});

test('readdirplus: a fresh listing, then the same names held, then new again: one node and one count per sight', async () => {
  // 60 new names make the listing open first (few are held); listing them again while held makes it ask by name
  // first again; a third set of new names after that. Each path must give the same nodes, counts and fds.
  const listAll = (): number[] => {
    const d = num(pfs.opendir(ctx, 1, C.O_RDONLY));
    const out: number[] = [];
    let cookie = 0n;
    for (;;) {
      const t = new BufferDirTarget(4096, true, attr);
      assert.is(pfs.readdirplus(ctx, 1, d.fh, cookie, t), 0);
      const es = t.entries();
      if (es.length === 0) break;
      for (const e of es) if (e.nodeId !== 0) out.push(e.nodeId);
      cookie = es[es.length - 1].cookie;
    }
    pfs.releasedir(ctx, 1, d.fh);
    return out;
  };
  const base = pfs.inodes.size;
  const fds = countOpenFds();
  for (let i = 0; i < 60; i++) fs.writeFileSync(path.join(dir, `a${i}`), '');
  const first = listAll();
  assert.is(first.length, 60);
  assert.is(pfs.inodes.size, base + 60);
  const second = listAll();
  assert.equal(second.slice().sort(), first.slice().sort(), 'the same nodes, held');
  for (const id of first) assert.is(pfs.inodes.get(id)!.lookups, 2);
  for (let i = 0; i < 60; i++) fs.writeFileSync(path.join(dir, `b${i}`), '');
  const third = listAll();
  assert.is(third.length, 120);
  assert.is(pfs.inodes.size, base + 120);
  for (const id of [...third, ...second, ...first]) pfs.forget(id, 1);
  assert.is(pfs.inodes.size, base);
  await Promise.resolve(); // with file handles, fds the cache evicted are closed in a microtask (inode-store.ts)
  pfs.waitForCloses(); // ... by the closer thread
  assert.is(countOpenFds(), fds, 'every fd opened or probed for was closed or kept by a node that is gone now');
});

test('destroy drops every node and handle except the root', () => {
  const fds = countOpenFds();
  fs.writeFileSync(path.join(dir, 'a'), '');
  const a = entry(pfs.lookup(ctx, 1, 'a', attr));
  num(pfs.open(ctx, a.nodeId, C.O_RDONLY));
  num(pfs.opendir(ctx, 1, C.O_RDONLY));
  assert.is(countOpenFds(), fds + 3);
  pfs.destroy();
  assert.is(countOpenFds(), fds);
  assert.is(pfs.getattr(ctx, 1, undefined, attr), 0);
  assert.is(pfs.getattr(ctx, a.nodeId, undefined, attr), -E.ENOENT);
});

// The oracle: the share lives on a recording FUSE filesystem (test/util/recording-fs.ts) in another process, so a
// real fsync(2)/fdatasync(2)/close(2) by PassthroughFs arrives there as FUSE_FSYNC/FSYNCDIR/FLUSH and is recorded.
test('fsync, fdatasync, fsyncdir and flush reach the host filesystem, after the data', async () => {
  if (!requireDevFuse()) return;
  const rec = await startRecordingMount();
  const share = fs.mkdtempSync(path.join(rec.mountpoint, 'pt-'));
  const rel = path.basename(share);
  const p = new PassthroughFs({ root: share });
  const of = (op: string, file: string) => rec.records().filter((r) => r.op === op && r.path === file);
  try {
    const a = AttrTarget.standalone();
    const c = num(p.create(ctx, 1, 'f', 0o644, C.O_CREAT | C.O_EXCL | C.O_RDWR, 0, a));
    const payload = new TextEncoder().encode('durable bytes');
    assert.is(p.write(ctx, c.nodeId, c.fh, 0, new BufferData(payload.length, payload), 0), payload.length);
    const f = path.join(rel, 'f');
    assert.equal(of('fsync', f), [], 'nothing synced yet');
    assert.is(p.fsync(ctx, c.nodeId, c.fh, false), 0);
    assert.is(p.fsync(ctx, c.nodeId, c.fh, true), 0);
    assert.equal(of('fsync', f).map((r) => [r.datasync, r.result, r.size]), [[false, 0, payload.length], [true, 0, payload.length]],
      'an fsync then an fdatasync, each after the write');
    const flushes = of('flush', f).length;
    assert.is(p.flush(ctx, c.nodeId, c.fh, 0n), 0);
    assert.is(of('flush', f).length, flushes + 1, 'FLUSH is a close(2) the host filesystem sees');
    const d = num(p.opendir(ctx, 1, 0));
    assert.is(p.fsyncdir(ctx, 1, d.fh, true), 0);
    assert.equal(of('fsyncdir', rel).map((r) => [r.datasync, r.result]), [[true, 0]], 'FSYNCDIR syncs the directory');
    p.releasedir(ctx, 1, d.fh);
    p.release(ctx, c.nodeId, c.fh, 0, 0);
  } finally {
    p.close();
    await rec.stop();
  }
});

test.run();

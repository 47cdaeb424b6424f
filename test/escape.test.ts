/**
 * Escapes stay impossible: PassthroughFs driven as a hostile guest would drive it, checked on the host.
 *
 * The share is `<tmp>/share`; `<tmp>/outside` (a sibling, with a file `secret`) stands for the rest of the host.
 * - Guest-made symlinks out of the share are never followed by the daemon: LOOKUP through them, OPEN, CREATE
 *   (with and without O_EXCL, O_TRUNC), MKDIR/MKNOD/SYMLINK under them, SETATTR (mode/owner/times/size),
 *   SETXATTR/GETXATTR, LINK of them: nothing outside changes, and what does change is the link itself.
 * - `..` at the root is the root; `.`/`..` and names with `/` or NUL are refused where they must be.
 * - RENAME/LINK name nodes by id only: no name can reach outside, unknown ids are ENOENT.
 * - A rename-versus-lookup race (another process moving a deep directory up and down while `..` is looked up from
 *   inside it) never yields a node outside the share, with fds and with file handles.
 * - Device nodes: MKNOD of char/block devices is EPERM unless allowed (FIFOs, sockets, whiteouts stay allowed), and
 *   the daemon never opens a special file (OPEN/CREATE of one is refused, a FIFO never blocks it).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { native } from '../host/native-loader.js';
import { countOpenFds } from './util/fds.js';
import { evalArgs } from './util/runtime.js';
import { setLogLevel } from '../host/log.js';
import { AttrTarget, type CreateResult, type Entry } from '../host/fuse/filesystem.js';
import { PassthroughFs } from '../host/passthrough/passthrough-fs.js';
import type { InodeFileHandles } from '../host/passthrough/inode-store.js';
import { RENAME_EXCHANGE } from '../host/fuse/protocol.js';
import { requireRoot } from './util/prereq.js';

setLogLevel('error');

const C = native.constants;
const E = C.errno;
const ctx = { uid: process.getuid!(), gid: process.getgid!(), pid: process.pid };

let tmp = '';
let share = '';
let outside = '';
let secret = '';
let pfs: PassthroughFs;
let attr: AttrTarget;

function setup(options: Partial<ConstructorParameters<typeof PassthroughFs>[0]> = {}): void {
  tmp = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'vfs-escape-')));
  share = path.join(tmp, 'share');
  outside = path.join(tmp, 'outside');
  secret = path.join(outside, 'secret');
  fs.mkdirSync(share);
  fs.mkdirSync(outside);
  fs.writeFileSync(secret, 'host secret');
  pfs = new PassthroughFs({ root: share, xattr: true, ...options });
  attr = AttrTarget.standalone();
}

test.after.each(() => {
  pfs?.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

function entry(r: Entry | number, what = 'entry'): Entry {
  if (typeof r === 'number') throw new Error(`${what}: ${r} (${native.strerror(-r)})`);
  return r;
}

/** What a host-side observer sees of the outside tree: contents, modes, owners, mtimes, names, xattrs (not atimes:
 *  reading them here moves those). */
function outsideState(): string {
  const parts: string[] = [];
  for (const p of [outside, secret]) {
    const s = fs.lstatSync(p);
    parts.push(`${p} ${s.mode} ${s.uid}:${s.gid} ${s.size} ${s.nlink} ${s.mtimeMs} ${s.ctimeMs}`);
  }
  parts.push(fs.readdirSync(outside).sort().join(','));
  parts.push(fs.readFileSync(secret, 'utf8'));
  const buf = new Uint8Array(64);
  parts.push(`xattr ${native.getxattr(outside, 'trusted.escape', buf, 0, 64)} ${native.getxattr(secret,
    'trusted.escape', buf, 0, 64)}`);
  return parts.join('\n');
}

// ---- symlinks out of the share --------------------------------------------------------------------------------

test('a guest symlink to a host directory outside is never followed', () => {
  setup();
  const before = outsideState();
  for (const target of [outside, path.relative(share, outside), '/etc']) {
    const name = `l${target.length}`;
    const l = entry(pfs.symlink(ctx, 1, name, target, attr), 'symlink');
    assert.is(attr.mode & C.S_IFMT, C.S_IFLNK, 'the node is the link itself');
    // LOOKUP of the link gives the link, not the directory it names.
    const again = entry(pfs.lookup(ctx, 1, name, attr));
    assert.is(again.nodeId, l.nodeId);
    assert.is(attr.mode & C.S_IFMT, C.S_IFLNK);
    assert.is(pfs.readlink(ctx, l.nodeId), target);
    // Used as a directory: refused before any name is resolved under it.
    assert.is(pfs.lookup(ctx, l.nodeId, 'secret', attr), -E.ENOTDIR);
    assert.is(pfs.lookup(ctx, l.nodeId, 'passwd', attr), -E.ENOTDIR);
    assert.is(pfs.mkdir(ctx, l.nodeId, 'made', 0o755, 0, attr), -E.ENOTDIR);
    assert.is(pfs.create(ctx, l.nodeId, 'made', 0o644, C.O_CREAT | C.O_RDWR, 0, attr), -E.ENOTDIR);
    assert.is(pfs.mknod(ctx, l.nodeId, 'fifo', C.S_IFIFO | 0o644, 0, 0, attr), -E.ENOTDIR);
    assert.is(pfs.symlink(ctx, l.nodeId, 'x', '/', attr), -E.ENOTDIR);
    assert.is(pfs.unlink(ctx, l.nodeId, 'secret'), -E.ENOTDIR);
    assert.is(pfs.rename(ctx, l.nodeId, 'secret', 1, 'stolen', 0), -E.ENOTDIR);
    assert.is(pfs.opendir(ctx, l.nodeId, 0), -E.ENOTDIR);
    assert.is(pfs.open(ctx, l.nodeId, C.O_RDONLY), -E.ELOOP);
    // SETATTR reaches the link only: mode is refused (symlinks have none), size is invalid, owner and times
    // change the link.
    assert.is(pfs.setattr(ctx, l.nodeId, { valid: 0, mode: 0o777 }, attr), -E.EOPNOTSUPP);
    assert.is(pfs.setattr(ctx, l.nodeId, { valid: 0, size: 0 }, attr), -E.EINVAL);
    assert.is(pfs.setattr(ctx, l.nodeId, { valid: 0, atime: { sec: 1000, nsec: 0 }, mtime: { sec: 2000, nsec: 0 } }, attr), 0);
    assert.is(fs.lstatSync(path.join(share, name)).mtimeMs, 2_000_000);
    // Extended attributes: on the link itself (user.* is not allowed on symlinks at all).
    const value = new TextEncoder().encode('escaped');
    assert.is(pfs.setxattr(ctx, l.nodeId, 'user.escape', value, 0), -E.EPERM);
    assert.is(outsideState(), before, `nothing outside changed (target ${target})`);
  }
});

test('as root: an owner change and trusted.* xattrs on a guest symlink land on the link, not on what it names', () => {
  if (!requireRoot()) return; // chown to another uid and trusted.* need CAP_CHOWN / CAP_SYS_ADMIN
  setup();
  const before = outsideState();
  const value = new TextEncoder().encode('escaped');
  for (const target of [outside, path.relative(share, outside), '/etc']) {
    const name = `l${target.length}`;
    const l = entry(pfs.symlink(ctx, 1, name, target, attr), 'symlink');
    assert.is(pfs.setattr(ctx, l.nodeId, { valid: 0, uid: 4321, gid: 4321 }, attr), 0);
    assert.is(fs.lstatSync(path.join(share, name)).uid, 4321);
    assert.is(pfs.setxattr(ctx, l.nodeId, 'trusted.escape', value, 0), 0);
    const out = { buffer: new ArrayBuffer(64), offset: 0, size: 64 };
    assert.is(pfs.getxattr(ctx, l.nodeId, 'trusted.escape', out), value.length, 'the link has it');
    assert.is(outsideState(), before, `nothing outside changed (target ${target})`);
  }
});

test('a guest symlink to a host file outside: OPEN, CREATE, O_TRUNC and LINK do not reach it', () => {
  setup();
  const before = outsideState();
  const l = entry(pfs.symlink(ctx, 1, 'ls', secret, attr));
  assert.is(pfs.open(ctx, l.nodeId, C.O_RDWR | C.O_TRUNC), -E.ELOOP);
  assert.is(pfs.open(ctx, l.nodeId, C.O_RDONLY), -E.ELOOP);
  // CREATE of the link's name: exclusive fails, non-exclusive refuses the symlink (it is not followed).
  assert.is(pfs.create(ctx, 1, 'ls', 0o644, C.O_CREAT | C.O_EXCL | C.O_RDWR, 0, attr), -E.EEXIST);
  assert.is(pfs.create(ctx, 1, 'ls', 0o644, C.O_CREAT | C.O_RDWR | C.O_TRUNC, 0, attr), -E.ELOOP);
  // A hard link of the symlink is a link to the symlink inode (the same node), never to the file it names.
  const h = entry(pfs.link(ctx, l.nodeId, 1, 'hard', attr));
  assert.is(h.nodeId, l.nodeId);
  assert.ok(fs.lstatSync(path.join(share, 'hard')).isSymbolicLink());
  assert.is.not(fs.lstatSync(path.join(share, 'hard')).ino, fs.statSync(secret).ino);
  assert.is(fs.statSync(secret).nlink, 1, 'the outside file got no new link');
  // A relative one that climbs: the same.
  const rel = entry(pfs.symlink(ctx, 1, 'rel', '../outside/secret', attr));
  assert.is(pfs.open(ctx, rel.nodeId, C.O_WRONLY | C.O_TRUNC), -E.ELOOP);
  assert.is(outsideState(), before);
});

// ---- names ---------------------------------------------------------------------------------------------------

test('`..` at the root is the root; `.`/`..`, `/` and NUL in names are refused', () => {
  setup();
  const rootIno = fs.statSync(share).ino;
  const up = entry(pfs.lookup(ctx, 1, '..', attr));
  assert.is(up.nodeId, 1, '`..` of the root is the root');
  assert.is(Number(attr.ino), rootIno);
  assert.is(entry(pfs.lookup(ctx, 1, '.', attr)).nodeId, 1);
  fs.mkdirSync(path.join(share, 'sub'));
  const sub = entry(pfs.lookup(ctx, 1, 'sub', attr));
  assert.is(entry(pfs.lookup(ctx, sub.nodeId, '..', attr)).nodeId, 1, '`..` of a child of the root');
  for (const name of ['../outside', '../outside/secret', 'sub/..', '/etc', 'a/b']) {
    assert.is(pfs.lookup(ctx, 1, name, attr), -E.EINVAL, `LOOKUP ${name}`);
    assert.is(pfs.mkdir(ctx, 1, name, 0o755, 0, attr), -E.EINVAL, `MKDIR ${name}`);
    assert.is(pfs.create(ctx, 1, name, 0o644, C.O_CREAT | C.O_RDWR, 0, attr), -E.EINVAL, `CREATE ${name}`);
    assert.is(pfs.symlink(ctx, 1, name, 'x', attr), -E.EINVAL, `SYMLINK ${name}`);
    assert.is(pfs.unlink(ctx, 1, name), -E.EINVAL, `UNLINK ${name}`);
  }
  assert.is(pfs.lookup(ctx, 1, 'a\0b', attr), -E.EINVAL);
  assert.is(pfs.lookup(ctx, 1, '', attr), -E.EINVAL);
  for (const name of ['.', '..']) {
    assert.is(pfs.mkdir(ctx, 1, name, 0o755, 0, attr), -E.EPERM, `MKDIR ${name}`);
    assert.is(pfs.create(ctx, 1, name, 0o644, C.O_CREAT | C.O_RDWR, 0, attr), -E.EPERM);
    assert.is(pfs.mknod(ctx, 1, name, C.S_IFIFO | 0o644, 0, 0, attr), -E.EPERM);
    assert.is(pfs.symlink(ctx, 1, name, 'x', attr), -E.EPERM);
    assert.is(pfs.unlink(ctx, sub.nodeId, name), -E.EPERM);
    assert.is(pfs.rmdir(ctx, sub.nodeId, name), -E.EPERM, `RMDIR ${name}`);
    assert.is(pfs.rename(ctx, sub.nodeId, name, 1, 'x', 0), -E.EPERM, `RENAME from ${name}`);
    assert.is(pfs.rename(ctx, 1, 'sub', sub.nodeId, name, 0), -E.EPERM, `RENAME to ${name}`);
  }
  assert.ok(fs.existsSync(path.join(share, 'sub')));
  assert.equal(fs.readdirSync(tmp).sort(), ['outside', 'share']);
});

test('RENAME and LINK name nodes by id only: nothing outside can be named', () => {
  setup();
  const before = outsideState();
  fs.writeFileSync(path.join(share, 'f'), 'inside');
  const f = entry(pfs.lookup(ctx, 1, 'f', attr));
  const out = entry(pfs.symlink(ctx, 1, 'out', outside, attr));
  // Into or out of the outside directory through names: refused.
  assert.is(pfs.rename(ctx, 1, 'f', 1, '../outside/f', 0), -E.EINVAL);
  assert.is(pfs.rename(ctx, 1, '../outside/secret', 1, 'stolen', 0), -E.EINVAL);
  assert.is(pfs.link(ctx, f.nodeId, 1, '../outside/f', attr), -E.EINVAL);
  // Through the symlink node: not a directory.
  assert.is(pfs.rename(ctx, 1, 'f', out.nodeId, 'f', 0), -E.ENOTDIR);
  assert.is(pfs.rename(ctx, out.nodeId, 'secret', 1, 'stolen', 0), -E.ENOTDIR);
  assert.is(pfs.link(ctx, f.nodeId, out.nodeId, 'f', attr), -E.ENOTDIR);
  // Renaming/exchanging the symlink moves the link, inside the share.
  fs.mkdirSync(path.join(share, 'd'));
  const d = entry(pfs.lookup(ctx, 1, 'd', attr));
  assert.is(pfs.rename(ctx, 1, 'out', d.nodeId, 'out2', 0), 0);
  assert.ok(fs.lstatSync(path.join(share, 'd', 'out2')).isSymbolicLink());
  assert.is(pfs.rename(ctx, d.nodeId, 'out2', 1, 'f', RENAME_EXCHANGE), 0);
  assert.ok(fs.lstatSync(path.join(share, 'f')).isSymbolicLink());
  // Unknown node ids (the only other way to name something) are ENOENT; a directory cannot be hard-linked.
  for (const bogus of [0, 999_999, 2 ** 40]) {
    assert.is(pfs.rename(ctx, bogus, 'secret', 1, 'x', 0), -E.ENOENT);
    assert.is(pfs.rename(ctx, 1, 'd', bogus, 'x', 0), -E.ENOENT);
    assert.is(pfs.link(ctx, bogus, 1, 'x', attr), -E.ENOENT);
  }
  assert.is(pfs.link(ctx, 1, d.nodeId, 'root', attr), -E.EPERM, 'the root cannot be linked anywhere');
  assert.is(pfs.link(ctx, d.nodeId, 1, 'd2', attr), -E.EPERM);
  assert.is(outsideState(), before);
  assert.equal(fs.readdirSync(tmp).sort(), ['outside', 'share']);
});

// ---- rename versus lookup ---------------------------------------------------------------------------------------

/** (dev, ino) of every directory from the share's parent up to `/`, and the outside tree. */
function forbidden(): Set<string> {
  const out = new Set<string>();
  const add = (p: string): void => {
    const s = fs.statSync(p, { bigint: true });
    out.add(`${s.dev}:${s.ino}`);
  };
  for (let p = path.dirname(share); ; p = path.dirname(p)) {
    add(p);
    if (p === '/') break;
  }
  add(outside);
  add(secret);
  return out;
}

/** glibc's makedev(): st_dev as node:fs reports it. */
function hostDev(major: number, minor: number): bigint {
  const M = BigInt(major);
  const m = BigInt(minor);
  return (m & 0xffn) | ((M & 0xfffn) << 8n) | ((m & ~0xffn) << 12n) | ((M & ~0xfffn) << 32n);
}

/**
 * Walks `..` from a deep directory while another process moves it up and down, until `minWalks` walks are done
 * and the walker has seen the directory move under it `minFlips` times (the walk length changes with its place),
 * or the outer time budget runs out (then the counts are what they are and the caller's check fails).
 */
async function raceOnce(mode: InodeFileHandles, minWalks: number, minFlips: number, budgetMs = 60_000):
  Promise<{ walks: number; steps: number; flips: number }> {
  setup({ inodeFileHandles: mode });
  const deny = forbidden();
  fs.mkdirSync(path.join(share, 'a', 'b', 'c', 'd', 'e'), { recursive: true });
  let node = 1;
  for (const name of ['a', 'b', 'c', 'd', 'e']) node = entry(pfs.lookup(ctx, node, name, attr)).nodeId;
  const deep = node;
  // Another process moves `d` (holding `e`) up to the root and back down, as fast as it can.
  const mover = spawn(...evalArgs(`
    import * as fs from 'node:fs';
    const low = ${JSON.stringify(path.join(share, 'a', 'b', 'c', 'd'))};
    const high = ${JSON.stringify(path.join(share, 'd'))};
    for (;;) { fs.renameSync(low, high); fs.renameSync(high, low); }
  `), { stdio: ['ignore', 'ignore', 'inherit'] });
  const exited = new Promise<NodeJS.Signals | null>((r) => mover.on('exit', (_c, sig) => r(sig)));
  const giveUp = Date.now() + budgetMs; // outer limit only: the verdict is on the counts
  let walks = 0;
  let steps = 0;
  let flips = 0;
  let lastLength = -1;
  const seen = (what: string): void => {
    const st = `${hostDev(attr.devMajor, attr.devMinor)}:${attr.ino}`;
    assert.not.ok(deny.has(st), `${what}: a node outside the share (${st})`);
  };
  while ((walks < minWalks || flips < minFlips) && Date.now() < giveUp) {
    let cur = deep;
    const taken: number[] = [];
    let length = 0;
    for (let i = 0; i < 12; i++) {
      const r = pfs.lookup(ctx, cur, '..', attr);
      if (typeof r === 'number') break; // a directory being moved can be briefly gone: fine, never outside
      taken.push(r.nodeId);
      steps++;
      length++;
      seen(`walk ${walks} step ${i}`);
      const inode = pfs.inodes.get(r.nodeId)!;
      const where = fs.readlinkSync(`/proc/self/fd/${inode.fd}`);
      assert.ok(where === share || where.startsWith(share + '/'), `node ${r.nodeId} is at ${where}`);
      if (r.nodeId === 1) {
        // And once more from the root: it stays there.
        const again = entry(pfs.lookup(ctx, 1, '..', attr));
        taken.push(again.nodeId);
        seen('`..` of the root');
        assert.is(again.nodeId, 1);
        break;
      }
      cur = r.nodeId;
    }
    for (const id of taken) pfs.forget(id, 1);
    if (lastLength >= 0 && length !== lastLength) flips++;
    lastLength = length;
    walks++;
  }
  assert.is(mover.exitCode, null, 'the mover was still moving the directory when the walks ended');
  mover.kill('SIGTERM');
  assert.is(await exited, 'SIGTERM');
  pfs.close();
  fs.rmSync(tmp, { recursive: true, force: true });
  return { walks, steps, flips };
}

test('rename versus `..` lookups: never a node outside the share (fds and file handles)', async () => {
  for (const mode of ['never', 'prefer'] as const) {
    const r = await raceOnce(mode, 300, 50);
    assert.ok(r.walks >= 300 && r.flips >= 50,
      `${mode}: the walker ran 300 walks and saw the directory move 50 times (${r.walks} walks, ${r.flips} moves seen, ${r.steps} steps)`);
  }
  setup(); // for test.after
});

// ---- device nodes and special files ------------------------------------------------------------------------------

const makedev = (major: number, minor: number): number => (minor & 0xff) | (major << 8) | ((minor & ~0xff) << 12);

test('MKNOD: char/block devices refused by default; FIFOs and sockets allowed', () => {
  setup();
  const nullDev = makedev(1, 3);
  assert.is(pfs.mknod(ctx, 1, 'null', C.S_IFCHR | 0o666, nullDev, 0, attr), -E.EPERM);
  assert.is(pfs.mknod(ctx, 1, 'disk', C.S_IFBLK | 0o600, makedev(8, 0), 0, attr), -E.EPERM);
  assert.not.ok(fs.existsSync(path.join(share, 'null')));
  assert.not.ok(fs.existsSync(path.join(share, 'disk')));
  entry(pfs.mknod(ctx, 1, 'fifo', C.S_IFIFO | 0o644, 0, 0, attr), 'fifo');
  assert.ok(fs.lstatSync(path.join(share, 'fifo')).isFIFO());
  entry(pfs.mknod(ctx, 1, 'sock', C.S_IFSOCK | 0o644, 0, 0, attr), 'socket');
  assert.ok(fs.lstatSync(path.join(share, 'sock')).isSocket());
});

test('MKNOD as root: a whiteout (char 0:0) is allowed, and with --allow-mknod-devices a device, never opened', () => {
  if (!requireRoot()) return; // device nodes need CAP_MKNOD
  setup();
  const nullDev = makedev(1, 3);
  entry(pfs.mknod(ctx, 1, 'wh', C.S_IFCHR | 0o000, 0, 0, attr), 'whiteout (char 0:0)');
  assert.ok(fs.lstatSync(path.join(share, 'wh')).isCharacterDevice());
  pfs.close();
  pfs = new PassthroughFs({ root: share, allowMknodDevices: true });
  const n = entry(pfs.mknod(ctx, 1, 'null', C.S_IFCHR | 0o666, nullDev, 0, attr), 'allowed char device');
  assert.is(attr.rdevMajor, 1);
  assert.is(attr.rdevMinor, 3);
  // Even allowed, the daemon never opens it.
  assert.is(pfs.open(ctx, n.nodeId, C.O_RDWR), -E.ENXIO);
});

/** OPEN, CREATE and truncate of each special file in the share's root answer without the daemon opening it. */
function assertNeverOpened(names: string[]): void {
  const fds = countOpenFds();
  for (const name of names) {
    const e = entry(pfs.lookup(ctx, 1, name, attr), name);
    for (const flags of [C.O_RDONLY, C.O_WRONLY, C.O_RDWR, C.O_WRONLY | C.O_TRUNC]) {
      assert.is(pfs.open(ctx, e.nodeId, flags), -E.ENXIO, `OPEN ${name} ${flags}`);
    }
    const c = pfs.create(ctx, 1, name, 0o644, C.O_CREAT | C.O_WRONLY | C.O_TRUNC, 0, attr) as CreateResult | number;
    assert.is(c, -E.ENXIO, `CREATE of an existing ${name}`);
    assert.is(pfs.setattr(ctx, e.nodeId, { valid: 0, size: 0 }, attr), -E.EINVAL, `truncate ${name}`);
    assert.is(pfs.getattr(ctx, e.nodeId, undefined, attr), 0, 'its attributes are fine');
    pfs.forget(e.nodeId, 1);
  }
  pfs.waitForCloses();
  assert.is(countOpenFds(), fds, 'no fd of a special file was kept');
}

test('the daemon never opens a special file: FIFOs, sockets', () => {
  setup();
  const fifo = path.join(share, 'fifo');
  native.mknodat(C.AT_FDCWD, fifo, C.S_IFIFO | 0o666, 0);
  assert.is(native.mknodat(C.AT_FDCWD, path.join(share, 'sock'), C.S_IFSOCK | 0o666, 0), 0);
  // The FIFO held open for reading and writing on the host (O_RDWR never blocks on Linux): if the daemon did open
  // it, the open would succeed at once and the test fail, rather than hang.
  const reader = fs.openSync(fifo, fs.constants.O_RDWR);
  try {
    assertNeverOpened(['fifo', 'sock']);
  } finally {
    fs.closeSync(reader);
  }
});

test('as root: the daemon never opens a device node', () => {
  if (!requireRoot()) return; // device nodes need CAP_MKNOD
  setup();
  assert.is(native.mknodat(C.AT_FDCWD, path.join(share, 'zero'), C.S_IFCHR | 0o666, makedev(1, 5)), 0);
  assertNeverOpened(['zero']);
});

test.run();

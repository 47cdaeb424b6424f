/**
 * Credentials: new nodes are created with the caller's fsuid/fsgid (only on the serving thread, only for the
 * request), the setgid-directory privilege bug class of CVE-2022-0358 is closed, and the daemon's own identity is
 * back after every request. Needs root (a counted skip otherwise); the caller is uid 1234 / gid 5678.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { native } from '../host/native-loader.js';
import { setLogLevel } from '../host/log.js';
import { AttrTarget } from '../host/fuse/filesystem.js';
import { PassthroughFs } from '../host/passthrough/passthrough-fs.js';
import * as P from '../host/fuse/protocol.js';
import { C, E, KERNEL_FLAGS, FuseGuest, cstr, entryOut, initIn, struct } from './util/fuse-guest.js';
import { requireRoot } from './util/prereq.js';

setLogLevel((process.env.LOG_LEVEL as 'off') ?? 'off');

const UID = 1234;
const GID = 5678;
const caller = { uid: UID, gid: GID };

let dir = '';
let pfs: PassthroughFs;
let rig: FuseGuest;

async function setup(): Promise<void> {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vfs-cred-'));
  fs.chmodSync(dir, 0o777);
  pfs = new PassthroughFs({ root: dir });
  rig = await FuseGuest.create(pfs, { cache: 'auto' });
  assert.is(rig.request(P.FUSE_INIT, 0, initIn(37, KERNEL_FLAGS)).error, 0);
}

test.after.each(() => {
  pfs?.close();
  pfs = undefined as unknown as PassthroughFs;
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
  dir = '';
});

/** The fs uid/gid of the calling (JS) thread, from /proc/thread-self/status (4th field of Uid:/Gid:). */
function threadFsIds(): [number, number] {
  const status = fs.readFileSync('/proc/thread-self/status', 'utf8');
  const field = (k: string): number => Number(new RegExp(`^${k}:\\s+\\d+\\s+\\d+\\s+\\d+\\s+(\\d+)`, 'm').exec(status)![1]);
  return [field('Uid'), field('Gid')];
}

function create(parent: number, name: string, mode: number, who = caller) {
  return rig.request(P.FUSE_CREATE, parent, struct(P.CREATE_IN.SIZE, (v) => {
    v.setUint32(P.CREATE_IN.flags, C.O_CREAT | C.O_EXCL | C.O_WRONLY, true);
    v.setUint32(P.CREATE_IN.mode, C.S_IFREG | mode, true);
  }, cstr(name)), who);
}

function mknod(parent: number, name: string, mode: number, who = caller) {
  return rig.request(P.FUSE_MKNOD, parent, struct(P.MKNOD_IN.SIZE, (v) => v.setUint32(0, mode, true), cstr(name)), who);
}

function mkdir(parent: number, name: string, mode: number, who = caller) {
  return rig.request(P.FUSE_MKDIR, parent, struct(P.MKDIR_IN.SIZE, (v) => v.setUint32(0, mode, true), cstr(name)), who);
}

function lookup(name: string): number {
  return entryOut(rig.request(P.FUSE_LOOKUP, 1, cstr(name)).view).nodeId;
}

test('setfsuid changes only the calling thread: libuv pool threads keep the daemon\'s identity', async () => {
  if (!requireRoot()) return;
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vfs-cred-'));
  fs.chmodSync(dir, 0o777);
  assert.is(native.setfsgid(GID), 0);
  assert.is(native.setfsuid(UID), 0);
  try {
    assert.equal(threadFsIds(), [UID, GID]);
    // This thread: a new file gets the caller's owner.
    const fd = native.openat(C.AT_FDCWD, path.join(dir, 'main'), C.O_CREAT | C.O_WRONLY, 0o644);
    assert.ok(fd >= 0);
    native.close(fd);
    // A pool thread (async fs) runs while we are switched: still root.
    await fs.promises.writeFile(path.join(dir, 'pool'), 'x');
  } finally {
    native.setfsuid(0);
    native.setfsgid(0);
  }
  assert.equal(threadFsIds(), [0, 0]);
  const main = fs.statSync(path.join(dir, 'main'));
  const pool = fs.statSync(path.join(dir, 'pool'));
  assert.equal([main.uid, main.gid], [UID, GID]);
  assert.equal([pool.uid, pool.gid], [0, 0]);
});

test('new nodes of every kind belong to the caller; the daemon is itself again after each request', async () => {
  if (!requireRoot()) return;
  await setup();
  assert.is(create(1, 'f', 0o644).error, 0);
  assert.equal(threadFsIds(), [0, 0], 'restored after CREATE');
  assert.is(mkdir(1, 'd', 0o755).error, 0);
  assert.is(mknod(1, 'p', C.S_IFIFO | 0o600).error, 0);
  assert.is(rig.request(P.FUSE_SYMLINK, 1, cstr('l', 'f'), caller).error, 0);
  const tmp = rig.request(P.FUSE_TMPFILE, 1, struct(P.CREATE_IN.SIZE, (v) => {
    v.setUint32(P.CREATE_IN.flags, C.O_RDWR, true);
    v.setUint32(P.CREATE_IN.mode, C.S_IFREG | 0o600, true);
  }, cstr('/')), caller);
  assert.is(tmp.error, 0);
  const a = AttrTarget.standalone();
  assert.is(pfs.getattr({ ...caller, pid: 1 }, entryOut(tmp.view).nodeId, undefined, a), 0);
  assert.equal([a.uid, a.gid], [UID, GID], 'the tmpfile too');
  for (const n of ['f', 'd', 'p', 'l']) {
    const st = fs.lstatSync(path.join(dir, n));
    assert.equal([st.uid, st.gid], [UID, GID], n);
  }
  assert.equal(threadFsIds(), [0, 0]);
  // Guest root creates as root (no switch at all).
  assert.is(create(1, 'r', 0o644, { uid: 0, gid: 0 }).error, 0);
  assert.is(fs.statSync(path.join(dir, 'r')).uid, 0);
});

test('the host refuses what the caller may not do, and other requests are not narrowed by the switch', async () => {
  if (!requireRoot()) return;
  await setup();
  fs.mkdirSync(path.join(dir, 'private'), 0o700); // root's
  const priv = lookup('private');
  assert.is(create(priv, 'x', 0o644).error, -E.EACCES, 'creating in root\'s 0700 directory as uid 1234');
  assert.is(fs.existsSync(path.join(dir, 'private', 'x')), false);
  // An existing file in a directory the host thinks the caller cannot search (the guest decided access through a
  // group the host does not know about): CREATE without O_EXCL opens it instead of failing.
  fs.writeFileSync(path.join(dir, 'private', 'shared'), 'x');
  const open = rig.request(P.FUSE_CREATE, priv, struct(P.CREATE_IN.SIZE, (v) => {
    v.setUint32(P.CREATE_IN.flags, C.O_CREAT | C.O_RDONLY, true);
    v.setUint32(P.CREATE_IN.mode, C.S_IFREG | 0o644, true);
  }, cstr('shared')), caller);
  assert.is(open.error, 0);
  // GETATTR/OPEN run as the daemon: the guest kernel has done the permission check.
  assert.is(rig.request(P.FUSE_GETATTR, priv, new Uint8Array(16), caller).error, 0);
});

test('CVE-2022-0358 class: no setgid file of a group the caller is not in, even one the daemon is in', async () => {
  if (!requireRoot()) return;
  await setup();
  // The daemon's supplementary groups stay while it creates as the caller. Give this process group 0 as one (as
  // root usually has), so the host kernel alone would let the caller keep S_ISGID below.
  const groups = process.getgroups!();
  process.setgroups!([0]);
  try {
    cveCase();
  } finally {
    process.setgroups!(groups.filter((g) => g !== process.getgid!()));
  }
});

function cveCase(): void {
  // A setgid directory of group 0: the daemon (root) is a member, the caller (gid 5678) is not.
  const sg = path.join(dir, 'sg');
  fs.mkdirSync(sg);
  fs.chownSync(sg, 0, 0);
  fs.chmodSync(sg, 0o2777);
  const sgNode = lookup('sg');
  assert.is(create(sgNode, 'evil', 0o2755).error, 0);
  let st = fs.statSync(path.join(sg, 'evil'));
  assert.is(st.gid, 0, 'the group comes from the setgid directory');
  assert.is(st.mode & C.S_ISGID, 0, 'but the file is not setgid');
  assert.is(mknod(sgNode, 'evil2', C.S_IFREG | 0o2755).error, 0);
  assert.is(fs.statSync(path.join(sg, 'evil2')).mode & C.S_ISGID, 0, 'MKNOD too');
  // A group that neither is in: the host kernel strips it as well.
  fs.chownSync(sg, 0, 999);
  assert.is(create(sgNode, 'other', 0o2755).error, 0);
  st = fs.statSync(path.join(sg, 'other'));
  assert.equal([st.gid, st.mode & C.S_ISGID], [999, 0]);
  // The legitimate cases keep the bit: a caller of the directory's group, and root.
  fs.chownSync(sg, 0, GID);
  assert.is(create(sgNode, 'member', 0o2755).error, 0);
  assert.is(fs.statSync(path.join(sg, 'member')).mode & 0o7777, 0o2755);
  assert.is(create(sgNode, 'root', 0o2755, { uid: 0, gid: 0 }).error, 0);
  assert.is(fs.statSync(path.join(sg, 'root')).mode & 0o7777, 0o2755);
  // Directories inherit S_ISGID from a setgid parent, whoever creates them.
  assert.is(mkdir(sgNode, 'sub', 0o755).error, 0);
  assert.is(fs.statSync(path.join(sg, 'sub')).mode & C.S_ISGID, C.S_ISGID);
}

test('a non-root caller\'s WRITE with FUSE_WRITE_KILL_SUIDGID clears setuid although the daemon is privileged', async () => {
  if (!requireRoot()) return;
  await setup();
  // Killpriv with the flag (the guest asks when the writer lacks CAP_FSETID): cleared even though the daemon
  // itself is privileged.
  fs.writeFileSync(path.join(dir, 'su'), 'x');
  fs.chmodSync(path.join(dir, 'su'), 0o4777);
  const node = lookup('su');
  const o = rig.request(P.FUSE_OPEN, node, struct(P.OPEN_IN.SIZE, (v) => v.setUint32(0, C.O_WRONLY, true)), caller);
  const fh = o.view.getBigUint64(0, true);
  const w = rig.request(P.FUSE_WRITE, node, struct(P.WRITE_IN.SIZE, (v) => {
    v.setBigUint64(P.WRITE_IN.fh, fh, true);
    v.setUint32(P.WRITE_IN.size, 1, true);
    v.setUint32(P.WRITE_IN.writeFlags, P.FUSE_WRITE_KILL_SUIDGID, true);
  }), { payload: [new Uint8Array([65])], ...caller });
  assert.is(w.error, 0);
  assert.is(fs.statSync(path.join(dir, 'su')).mode & 0o7777, 0o777);
});

test.run();

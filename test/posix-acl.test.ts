/**
 * --posix-acl through the FUSE server: FUSE_POSIX_ACL, FUSE_DONT_MASK and FUSE_SETXATTR_EXT are negotiated; new
 * nodes get the request's umask, or the parent's default ACL instead; system.posix_acl_access round-trips byte for
 * byte; FUSE_SETXATTR_ACL_KILL_SGID clears S_ISGID. ACL values are built by hand (linux/posix_acl_xattr.h).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { setLogLevel } from '../host/log.js';
import { native } from '../host/native-loader.js';
import { PassthroughFs } from '../host/passthrough/passthrough-fs.js';
import * as P from '../host/fuse/protocol.js';
import { C, E, KERNEL_FLAGS, FuseGuest, cstr, enc, entryOut, initIn, struct } from './util/fuse-guest.js';

setLogLevel('off');

// posix_acl_xattr.h: a u32 version (2), then { u16 e_tag, u16 e_perm, u32 e_id } sorted by tag, then id.
const ACL_USER_OBJ = 0x01;
const ACL_USER = 0x02;
const ACL_GROUP_OBJ = 0x04;
const ACL_MASK = 0x10;
const ACL_OTHER = 0x20;
const ACL_UNDEFINED_ID = 0xffff_ffff;

function acl(entries: Array<[tag: number, perm: number, id?: number]>): Uint8Array {
  const out = new Uint8Array(4 + 8 * entries.length);
  const v = new DataView(out.buffer);
  v.setUint32(0, 2, true);
  entries.forEach(([tag, perm, id], i) => {
    v.setUint16(4 + 8 * i, tag, true);
    v.setUint16(6 + 8 * i, perm, true);
    v.setUint32(8 + 8 * i, id ?? ACL_UNDEFINED_ID, true);
  });
  return out;
}

let dir = '';
let pfs: PassthroughFs | undefined;
let rig: FuseGuest;

async function setup(): Promise<number> {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vfs-acl-'));
  pfs = new PassthroughFs({ root: dir, xattr: true, posixAcl: true });
  rig = await FuseGuest.create(pfs, { cache: 'auto', posixAcl: true });
  const init = rig.request(P.FUSE_INIT, 0, initIn(37, KERNEL_FLAGS | P.FUSE_SETXATTR_EXT));
  assert.is(init.error, 0);
  return init.view.getUint32(P.INIT_OUT.flags, true);
}

test.after.each(() => {
  pfs?.close();
  pfs = undefined;
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
  dir = '';
});

function create(parent: number, name: string, mode: number, umask: number): number {
  const r = rig.request(P.FUSE_CREATE, parent, struct(P.CREATE_IN.SIZE, (v) => {
    v.setUint32(P.CREATE_IN.flags, C.O_CREAT | C.O_EXCL | C.O_WRONLY, true);
    v.setUint32(P.CREATE_IN.mode, C.S_IFREG | mode, true);
    v.setUint32(P.CREATE_IN.umask, umask, true);
  }, cstr(name)));
  assert.is(r.error, 0, `create ${name}`);
  return entryOut(r.view).nodeId;
}

function mkdir(parent: number, name: string, mode: number, umask: number): number {
  const r = rig.request(P.FUSE_MKDIR, parent, struct(P.MKDIR_IN.SIZE, (v) => {
    v.setUint32(P.MKDIR_IN.mode, mode, true);
    v.setUint32(P.MKDIR_IN.umask, umask, true);
  }, cstr(name)));
  assert.is(r.error, 0, `mkdir ${name}`);
  return entryOut(r.view).nodeId;
}

/** SETXATTR in the FUSE_SETXATTR_EXT form. */
function setxattr(node: number, name: string, value: Uint8Array, setxattrFlags = 0): number {
  return rig.request(P.FUSE_SETXATTR, node, struct(P.SETXATTR_IN.EXT_SIZE, (v) => {
    v.setUint32(P.SETXATTR_IN.size, value.length, true);
    v.setUint32(P.SETXATTR_IN.setxattrFlags, setxattrFlags, true);
  }, new Uint8Array([...enc.encode(`${name}\0`), ...value]))).error;
}

function getxattr(node: number, name: string): Uint8Array | number {
  const r = rig.request(P.FUSE_GETXATTR, node, struct(P.GETXATTR_IN.SIZE, (v) => {
    v.setUint32(P.GETXATTR_IN.size, 4096, true);
  }, cstr(name)));
  return r.error < 0 ? r.error : r.body;
}

const modeOf = (name: string): number => fs.statSync(path.join(dir, name)).mode & 0o7777;

test('negotiated flags; the request\'s umask applies on the host, whatever the daemon\'s own', async () => {
  const flags = await setup();
  for (const f of [P.FUSE_POSIX_ACL, P.FUSE_DONT_MASK, P.FUSE_SETXATTR_EXT]) assert.ok((flags & f) !== 0, `flag ${f}`);
  const old = process.umask(0o077); // the daemon's umask must not matter
  try {
    create(1, 'u0', 0o666, 0);
    create(1, 'u27', 0o666, 0o027);
    mkdir(1, 'd2', 0o777, 0o002);
  } finally {
    process.umask(old);
  }
  assert.is(modeOf('u0'), 0o666);
  assert.is(modeOf('u27'), 0o640);
  assert.is(modeOf('d2'), 0o775);
  assert.is(process.umask(), old, 'the process umask is back');
});

test('a default ACL decides new nodes\' modes (the umask is ignored) and is inherited by subdirectories', async () => {
  await setup();
  const d = mkdir(1, 'd', 0o777, 0o022);
  // default: user::rwx group::r-x other::--- (minimal; no mask needed)
  const def = acl([[ACL_USER_OBJ, 7], [ACL_GROUP_OBJ, 5], [ACL_OTHER, 0]]);
  assert.is(setxattr(d, 'system.posix_acl_default', def), 0);
  const got = getxattr(d, 'system.posix_acl_default');
  assert.equal(got, def, 'default ACL round-trips');
  create(d, 'f', 0o666, 0o022);
  assert.is(modeOf('d/f'), 0o640, 'mode & ACL, not mode & ~umask (0644)');
  mkdir(d, 'sub', 0o777, 0o077);
  assert.is(modeOf('d/sub'), 0o750, 'not 0700');
  const sub = rig.request(P.FUSE_LOOKUP, d, cstr('sub'));
  assert.equal(getxattr(entryOut(sub.view).nodeId, 'system.posix_acl_default'), def, 'inherited default ACL');
});

test('system.posix_acl_access round-trips; the mask becomes the group bits; ACL_KILL_SGID clears S_ISGID', async () => {
  await setup();
  const f = create(1, 'f', 0o640, 0);
  // user::rw- user:1234:r-- group::r-- mask::r-x other::---
  const access = acl([[ACL_USER_OBJ, 6], [ACL_USER, 4, 1234], [ACL_GROUP_OBJ, 4], [ACL_MASK, 5], [ACL_OTHER, 0]]);
  assert.is(setxattr(f, 'system.posix_acl_access', access), 0);
  assert.equal(getxattr(f, 'system.posix_acl_access'), access);
  assert.is(modeOf('f'), 0o650, 'group bits = the mask');
  const hostBuf = new Uint8Array(64);
  assert.is(native.getxattr(path.join(dir, 'f'), 'system.posix_acl_access', hostBuf, 0, 64), access.length);

  // setgid + group-executable file: the flag clears S_ISGID, its absence keeps it.
  fs.chmodSync(path.join(dir, 'f'), 0o2750);
  assert.is(setxattr(f, 'system.posix_acl_access', access), 0);
  assert.is(modeOf('f') & C.S_ISGID, C.S_ISGID, 'kept without the flag');
  assert.is(setxattr(f, 'system.posix_acl_access', access, P.FUSE_SETXATTR_ACL_KILL_SGID), 0);
  assert.is(modeOf('f') & C.S_ISGID, 0, 'cleared with FUSE_SETXATTR_ACL_KILL_SGID');
  assert.is(setxattr(f, 'system.posix_acl_access', new Uint8Array([1, 2, 3])), -E.EINVAL, 'malformed ACL');
});

test('--posix-acl without --xattr is refused', () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vfs-acl-'));
  assert.throws(() => new PassthroughFs({ root: dir, posixAcl: true }), /need xattr/);
});

test.run();

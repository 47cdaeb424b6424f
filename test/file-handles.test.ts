/**
 * --inode-file-handles (PassthroughFs over file handles instead of an fd per inode) and --announce-submounts.
 *
 * - The existing PassthroughFs suites (passthrough, fuse-ops, fuse-server, credentials) run again in child
 *   processes with the default switched to `prefer` / `mandatory` in a copy of the compiled package: every behaviour
 *   they check holds with handles.
 * - The fd count does not grow with the number of nodes the guest holds (prefer) but does with fds (never).
 * - A file deleted and re-created with the same inode number is a new node; the old one answers ESTALE.
 * - `mandatory` on a filesystem without handles (procfs) fails at start-up, or at LOOKUP for a submount.
 * - Submounts (tmpfs and procfs mounted inside the share; needs root) are marked FUSE_ATTR_SUBMOUNT in LOOKUP and
 *   READDIRPLUS replies when announced, and FUSE_SUBMOUNTS is offered at INIT.
 */
import { test } from 'uvu';
import { requireRoot, skipIf } from './util/prereq.js';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { native } from '../host/native-loader.js';
import { countOpenFds } from './util/fds.js';
import { setLogLevel } from '../host/log.js';
import { AttrTarget, BufferDirTarget, type Entry } from '../host/fuse/filesystem.js';
import { PassthroughFs } from '../host/passthrough/passthrough-fs.js';
import type { InodeFileHandles } from '../host/passthrough/inode-store.js';
import { SystemError } from '../host/errors.js';
import * as P from '../host/fuse/protocol.js';
import { runtimeArgs } from './util/runtime.js';
import { FuseGuest, cstr, entryOut, initIn, KERNEL_FLAGS, readIn } from './util/fuse-guest.js';

setLogLevel('error');

const C = native.constants;
const E = C.errno;
const ctx = { uid: process.getuid!(), gid: process.getgid!(), pid: process.pid };
const HERE = path.dirname(fileURLToPath(import.meta.url));

let dir = '';
let pfs: PassthroughFs | undefined;
const mounted: string[] = [];

function entry(r: Entry | number, what = 'entry'): Entry {
  if (typeof r === 'number') throw new Error(`${what}: ${r} (${native.strerror(-r)})`);
  return r;
}

function fresh(mode: InodeFileHandles, extra: Partial<ConstructorParameters<typeof PassthroughFs>[0]> = {}):
  PassthroughFs {
  pfs = new PassthroughFs({ root: dir, inodeFileHandles: mode, ...extra });
  return pfs;
}

/** Lets the store close the fds it evicted during the last operation (it does so from a microtask). */
const settle = (): Promise<void> => new Promise((r) => setImmediate(r));

function mount(type: string, at: string): boolean {
  fs.mkdirSync(at, { recursive: true });
  const r = native.mount(type, at, type, 0, '');
  if (r < 0) return false;
  mounted.push(at);
  return true;
}

test.before.each(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vfs-fh-'));
});

test.after.each(() => {
  pfs?.close();
  pfs = undefined;
  while (mounted.length > 0) native.umount2(mounted.pop()!, C.MNT_DETACH);
  fs.rmSync(dir, { recursive: true, force: true });
});

// ---- the existing suites, with handles ------------------------------------------------------------------------

/**
 * A copy of the compiled package (dist/, with build/ and node_modules/ linked) in which PassthroughFs takes its
 * default from VFS_TEST_INODE_FILE_HANDLES; returns the copy's dist/test. A copy on disk rather than a module-load
 * hook, so the suites run in any runtime (Bun and Deno have no node:module hooks).
 */
function copyWithHandlesDefault(tmp: string): string {
  const root = path.resolve(HERE, '..', '..');
  const copy = path.join(tmp, 'package');
  fs.cpSync(path.join(root, 'dist'), path.join(copy, 'dist'), { recursive: true });
  for (const file of ['package.json', 'asconfig.json']) {
    if (fs.existsSync(path.join(root, file))) fs.copyFileSync(path.join(root, file), path.join(copy, file));
  }
  for (const link of ['build', 'node_modules']) fs.symlinkSync(path.join(root, link), path.join(copy, link));
  const file = path.join(copy, 'dist', 'host', 'passthrough', 'passthrough-base.js');
  const src = fs.readFileSync(file, 'utf8');
  const from = "fileHandles: options.inodeFileHandles ?? 'never'";
  if (!src.includes(from)) throw new Error('file-handles: the default is no longer where this test looks');
  fs.writeFileSync(file, src.replace(from, 'fileHandles: options.inodeFileHandles ?? process.env.VFS_TEST_INODE_FILE_HANDLES'));
  return path.join(copy, 'dist', 'test');
}

const SUITES: Array<[string, InodeFileHandles]> = [
  ['passthrough', 'prefer'], ['fuse-ops', 'prefer'], ['fuse-server', 'prefer'], ['credentials', 'prefer'],
  ['passthrough', 'mandatory'], ['fuse-ops', 'mandatory'],
];

test('the PassthroughFs suites pass with --inode-file-handles=prefer and mandatory', () => {
  if (!requireRoot()) return; // open_by_handle_at(2) needs CAP_DAC_READ_SEARCH
  const tests = copyWithHandlesDefault(dir);
  for (const [suite, mode] of SUITES) {
    const r = spawnSync(...runtimeArgs(path.join(tests, `${suite}.test.js`)), {
      env: { ...process.env, VFS_TEST_INODE_FILE_HANDLES: mode }, encoding: 'utf8', timeout: 60_000,
    });
    const out = `${r.stdout}\n${r.stderr}`;
    const total = /Total:\s+(\d+)/.exec(out);
    const passed = /Passed:\s+(\d+)/.exec(out);
    assert.ok(total && passed, `${suite} (${mode}) printed no totals:\n${out.slice(-3000)}`);
    assert.ok(Number(total![1]) >= 5, `${suite} ran its tests`);
    assert.is(Number(passed![1]), Number(total![1]), `${suite} with ${mode} handles:\n${out.slice(-3000)}`);
    assert.is(r.status, 0, `${suite} (${mode}) exit status`);
  }
});

test('bindings: nameToHandleAt (by name and AT_EMPTY_PATH) and openByHandleAt', () => {
  if (!requireRoot()) return; // open_by_handle_at(2) needs CAP_DAC_READ_SEARCH
  fs.writeFileSync(path.join(dir, 'f'), 'x');
  const dirFd = native.openat(C.AT_FDCWD, dir, C.O_PATH | C.O_DIRECTORY, 0);
  const mountFd = native.openat(C.AT_FDCWD, dir, C.O_RDONLY | C.O_DIRECTORY, 0);
  const a = new Uint8Array(8 + C.MAX_HANDLE_SZ);
  const b = new Uint8Array(8 + C.MAX_HANDLE_SZ + 16);
  try {
    const byName = native.nameToHandleAt(dirFd, 'f', 0, a, 0);
    assert.ok(byName >= 0, `mount id ${byName}`);
    const len = new DataView(a.buffer).getUint32(0, true);
    assert.ok(len > 0 && len <= C.MAX_HANDLE_SZ);
    const fd = native.openat(dirFd, 'f', C.O_PATH | C.O_NOFOLLOW, 0);
    assert.is(native.nameToHandleAt(fd, '', C.AT_EMPTY_PATH, b, 16), byName, 'same mount id at an offset');
    assert.equal(b.subarray(16, 16 + 8 + len), a.subarray(0, 8 + len), 'same handle by name and by fd');
    native.close(fd);
    const opened = native.openByHandleAt(mountFd, b, 16, C.O_RDONLY);
    assert.ok(opened >= 0);
    assert.is(native.pread(opened, new Uint8Array(4), 0), 1, 'the file itself');
    native.close(opened);
    assert.is(native.openByHandleAt(dirFd, a, 0, C.O_PATH), -E.EBADF, 'an O_PATH mount fd is refused');
    assert.is(native.nameToHandleAt(dirFd, 'f', 0, a, 1), -E.EFAULT, 'no room for the largest handle');
    new DataView(a.buffer).setUint32(0, C.MAX_HANDLE_SZ + 1, true);
    assert.is(native.openByHandleAt(mountFd, a, 0, C.O_PATH), -E.EINVAL, 'handle_bytes above MAX_HANDLE_SZ');
    assert.is(native.nameToHandleAt(C.AT_FDCWD, '/proc/self/status', 0, a, 0), -E.EOPNOTSUPP, 'procfs');
    assert.is(native.nameToHandleAt(dirFd, 'missing', 0, a, 0), -E.ENOENT);
  } finally {
    native.close(dirFd);
    native.close(mountFd);
  }
});

test('handle mode really holds handles; mandatory on a filesystem without them fails at start-up', () => {
  if (!requireRoot()) return; // open_by_handle_at(2) needs CAP_DAC_READ_SEARCH
  fs.writeFileSync(path.join(dir, 'f'), 'x');
  const attr = AttrTarget.standalone();
  for (const mode of ['prefer', 'mandatory'] as const) {
    const p = fresh(mode);
    const e = entry(p.lookup(ctx, 1, 'f', attr));
    const inode = p.inodes.get(e.nodeId)!;
    assert.ok(inode.byHandle, `${mode}: a node of ext4/tmpfs is held by handle`);
    assert.ok(String(inode.key).startsWith('h:'), 'keyed by mount id + handle');
    assert.ok(String(p.inodes.root.key).startsWith('h:'), 'the root too, so `..` maps back to node 1');
    p.close();
    pfs = undefined;
  }
  const never = fresh('never');
  assert.not.ok(never.inodes.get(entry(never.lookup(ctx, 1, 'f', attr)).nodeId)!.byHandle);
  never.close();
  pfs = undefined;

  // procfs has no export operations: name_to_handle_at is EOPNOTSUPP.
  const fds = countOpenFds();
  try {
    new PassthroughFs({ root: '/proc/self', inodeFileHandles: 'mandatory' });
    assert.unreachable('mandatory on procfs must fail');
  } catch (e) {
    assert.instance(e, SystemError);
    assert.is((e as SystemError).errno, E.EOPNOTSUPP);
    assert.match((e as Error).message, /inode-file-handles=mandatory/);
  }
  assert.is(countOpenFds(), fds, 'nothing leaks from the failed start-up');
  // prefer falls back to fds there, and works.
  const proc = new PassthroughFs({ root: '/proc/self', inodeFileHandles: 'prefer' });
  try {
    const s = entry(proc.lookup(ctx, 1, 'status', attr));
    assert.not.ok(proc.inodes.get(s.nodeId)!.byHandle);
    assert.is(attr.mode & C.S_IFMT, C.S_IFREG);
  } finally {
    proc.close();
  }
});

test('fd count: grows with held nodes with fds (never), stays bounded with handles (prefer)', async () => {
  if (!requireRoot()) return; // open_by_handle_at(2) needs CAP_DAC_READ_SEARCH
  const N = 300;
  for (let i = 0; i < N; i++) fs.writeFileSync(path.join(dir, `f${i}`), String(i));
  const attr = AttrTarget.standalone();
  const growth: Record<string, number> = {};
  for (const mode of ['never', 'prefer'] as const) {
    const p = fresh(mode);
    await settle();
    const before = countOpenFds();
    const ids: number[] = [];
    for (let i = 0; i < N; i++) ids.push(entry(p.lookup(ctx, 1, `f${i}`, attr)).nodeId);
    // Every node still works: attributes and data through an fd opened by handle on demand.
    for (let i = 0; i < N; i += 7) {
      assert.is(p.getattr(ctx, ids[i], undefined, attr), 0);
      assert.is(attr.size, String(i).length);
    }
    const o = p.open(ctx, ids[5], C.O_RDONLY);
    assert.type(o, 'object');
    p.release(ctx, ids[5], (o as { fh: number }).fh, 0, 0);
    await settle();
    p.waitForCloses();
    growth[mode] = countOpenFds() - before;
    if (mode === 'prefer') assert.ok(p.inodes.cachedFds <= 64, 'the cache is bounded');
    for (const id of ids) p.forget(id, 1);
    await settle();
    p.waitForCloses();
    assert.is(countOpenFds(), before, `${mode}: FORGET gives every fd back`);
    p.close();
    pfs = undefined;
  }
  assert.ok(growth.never >= N, `never: one fd per held node (grew ${growth.never})`);
  assert.ok(growth.prefer <= 64, `prefer: bounded by the fd cache (grew ${growth.prefer})`);
});

test('a deleted file re-created with the same inode number is a new node (prefer)', async () => {
  const attr = AttrTarget.standalone();
  const p = fresh('prefer');
  fs.writeFileSync(path.join(dir, 'old'), 'old contents');
  const old = entry(p.lookup(ctx, 1, 'old', attr));
  const oldIno = attr.ino;
  // Push the old node's fd out of the cache so nothing pins its inode, as when the guest holds many nodes.
  for (let i = 0; i < 80; i++) {
    fs.writeFileSync(path.join(dir, `pad${i}`), '');
    entry(p.lookup(ctx, 1, `pad${i}`, attr));
  }
  await settle();
  assert.is(p.unlink(ctx, 1, 'old'), 0);
  // ext4 hands a freed inode number out again at once; try a few times.
  let reused = '';
  for (let i = 0; i < 50 && reused === ''; i++) {
    const name = `new${i}`;
    fs.writeFileSync(path.join(dir, name), 'new contents!');
    if (BigInt(fs.statSync(path.join(dir, name), { bigint: true }).ino) === oldIno) reused = name;
  }
  if (skipIf(reused === '' ? `inode number ${oldIno} was not reused on ${dir}'s filesystem` : undefined)) return;
  const now = entry(p.lookup(ctx, 1, reused, attr));
  assert.is(attr.ino, oldIno, 'same inode number');
  assert.is.not(now.nodeId, old.nodeId, 'but not the old node');
  assert.is(p.getattr(ctx, old.nodeId, undefined, attr), -E.ESTALE, 'the old node is stale, not the new file');
  assert.is(p.open(ctx, old.nodeId, C.O_RDONLY), -E.ESTALE);
  assert.is(p.getattr(ctx, now.nodeId, undefined, attr), 0);
  assert.is(attr.size, 'new contents!'.length);
});

test('submounts: mandatory refuses a procfs submount; prefer falls back; announced as FUSE_ATTR_SUBMOUNT', async () => {
  if (!requireRoot()) return;
  const tmpfsAt = path.join(dir, 'tmpfs');
  const procAt = path.join(dir, 'proc');
  fs.mkdirSync(path.join(dir, 'plain'));
  if (skipIf(!mount('tmpfs', tmpfsAt) || !mount('proc', procAt) ? 'mount(2) of tmpfs/proc refused' : undefined)) return;
  fs.mkdirSync(path.join(tmpfsAt, 'inner'));
  const attr = AttrTarget.standalone();

  const m = fresh('mandatory');
  const t = entry(m.lookup(ctx, 1, 'tmpfs', attr));
  assert.ok(m.inodes.get(t.nodeId)!.byHandle, 'tmpfs has handles');
  const inner = entry(m.lookup(ctx, t.nodeId, 'inner', attr));
  assert.ok(m.inodes.get(inner.nodeId)!.byHandle);
  assert.is(m.lookup(ctx, 1, 'proc', attr), -E.EOPNOTSUPP, 'mandatory: no handle, no node');
  assert.is(t.attrFlags ?? 0, 0, 'not announced unless asked');
  m.close();
  pfs = undefined;

  const p = fresh('prefer', { announceSubmounts: true });
  const pt = entry(p.lookup(ctx, 1, 'tmpfs', attr));
  assert.is(pt.attrFlags, P.FUSE_ATTR_SUBMOUNT, 'a mount point inside the share');
  const pp = entry(p.lookup(ctx, 1, 'proc', attr));
  assert.not.ok(p.inodes.get(pp.nodeId)!.byHandle, 'prefer: procfs falls back to an fd');
  assert.is(pp.attrFlags, P.FUSE_ATTR_SUBMOUNT);
  assert.is(entry(p.lookup(ctx, 1, 'plain', attr)).attrFlags, 0, 'an ordinary directory');
  assert.is(entry(p.lookup(ctx, pt.nodeId, 'inner', attr)).attrFlags, 0, 'a directory inside the submount');
  const up = entry(p.lookup(ctx, pt.nodeId, '..', attr));
  assert.is(up.nodeId, 1, '`..` of the submount root is the share root');
  assert.is(up.attrFlags ?? 0, 0);
  // READDIRPLUS marks the same entries.
  const o = p.opendir(ctx, 1, 0) as { fh: number };
  const target = new BufferDirTarget(8192, true);
  assert.is(p.readdirplus(ctx, 1, o.fh, 0n, target), 0);
  const flags = Object.fromEntries(target.entries().map((x) => [x.name, x.attrFlags]));
  assert.is(flags.tmpfs, P.FUSE_ATTR_SUBMOUNT);
  assert.is(flags.proc, P.FUSE_ATTR_SUBMOUNT);
  assert.is(flags.plain, 0);
  p.releasedir(ctx, 1, o.fh);
  p.close();
  pfs = undefined;

  // Through the server: FUSE_SUBMOUNTS offered, and fuse_attr.flags in the LOOKUP reply; never to a kernel that
  // did not agree to FUSE_SUBMOUNTS.
  for (const [on, kernelFlags] of [[false, KERNEL_FLAGS], [true, KERNEL_FLAGS],
    [true, KERNEL_FLAGS & ~P.FUSE_SUBMOUNTS]] as const) {
    const announce = on && (kernelFlags & P.FUSE_SUBMOUNTS) !== 0;
    const fsx = fresh('never', { announceSubmounts: on });
    const rig = await FuseGuest.create(fsx, { cache: 'auto', announceSubmounts: on });
    const init = rig.request(P.FUSE_INIT, 0, initIn(36, kernelFlags));
    assert.is(init.error, 0);
    const offered = (init.view.getUint32(P.INIT_OUT.flags, true) & P.FUSE_SUBMOUNTS) !== 0;
    assert.is(offered, announce, 'FUSE_SUBMOUNTS negotiated only when announced (and the kernel has it)');
    const r = rig.request(P.FUSE_LOOKUP, 1, cstr('tmpfs'));
    assert.is(r.error, 0);
    assert.ok(entryOut(r.view).nodeId > 1);
    assert.is(r.view.getUint32(P.ENTRY_OUT_ATTR_FLAGS, true), announce ? P.FUSE_ATTR_SUBMOUNT : 0);
    const plain = rig.request(P.FUSE_LOOKUP, 1, cstr('plain'));
    assert.is(plain.view.getUint32(P.ENTRY_OUT_ATTR_FLAGS, true), 0);
    const od = rig.request(P.FUSE_OPENDIR, 1, new Uint8Array(8));
    const fh = Number(od.view.getBigUint64(0, true));
    const rd = rig.request(P.FUSE_READDIRPLUS, 1, readIn(fh, 0n, 4096), { reply: [16 + 4096] });
    assert.is(rd.error, 0);
    let seen = 0;
    for (let o = 0; o < rd.body.length;) {
      const namelen = rd.view.getUint32(o + 128 + 16, true);
      const name = new TextDecoder().decode(rd.body.subarray(o + 152, o + 152 + namelen));
      const f = rd.view.getUint32(o + P.ENTRY_OUT_ATTR_FLAGS, true);
      if (name === 'tmpfs' || name === 'proc') {
        seen++;
        assert.is(f, announce ? P.FUSE_ATTR_SUBMOUNT : 0, `READDIRPLUS ${name}`);
      } else {
        assert.is(f, 0, `READDIRPLUS ${name}`);
      }
      o += (152 + namelen + 7) & ~7;
    }
    assert.is(seen, 2);
    fsx.close();
    pfs = undefined;
  }
});

test.run();

/**
 * The FUSE operations beyond the core set, through the real core and FuseServer over a PassthroughFs: xattrs (size
 * probes, ERANGE, never through a guest symlink), FALLOCATE, LSEEK (SEEK_DATA/SEEK_HOLE), COPY_FILE_RANGE,
 * SYNCFS, TMPFILE, a read-only share, and the killpriv (FUSE_HANDLE_KILLPRIV_V2) flags.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { native } from '../host/native-loader.js';
import { countOpenFds } from './util/fds.js';
import { setLogLevel } from '../host/log.js';
import type { FuseServerOptions } from '../host/fuse/server.js';
import { PassthroughFs, type PassthroughOptions } from '../host/passthrough/passthrough-fs.js';
import * as P from '../host/fuse/protocol.js';
import { C, E, FuseGuest, cstr, entryOut, initIn, lkIn, readIn, struct, KERNEL_FLAGS } from './util/fuse-guest.js';
import { parseCommandLine } from '../host/cli.js';
import { unlessRuntime } from './util/runtime.js';
import { applyNofileLimit } from '../host/daemon.js';
import { requireDevFuse, requireRoot } from './util/prereq.js';
import { startRecordingMount } from './util/recording-mount.js';

setLogLevel((process.env.LOG_LEVEL as 'off') ?? 'off');

let dir = '';
let pfs: PassthroughFs;
let rig: FuseGuest;

async function setup(options: FuseServerOptions = { cache: 'auto' }, pt: Partial<PassthroughOptions> = {}): Promise<void> {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vfs-ops-'));
  fs.writeFileSync(path.join(dir, 'hello'), 'hello world\n');
  pfs = new PassthroughFs({ root: dir, ...pt });
  rig = await FuseGuest.create(pfs, options);
  const r = rig.request(P.FUSE_INIT, 0, initIn(37, KERNEL_FLAGS));
  assert.is(r.error, 0);
}

test.after.each(() => {
  pfs?.close();
  pfs = undefined as unknown as PassthroughFs;
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

const dec = new TextDecoder();

function lookup(name: string, parent = 1): number {
  const r = rig.request(P.FUSE_LOOKUP, parent, cstr(name));
  assert.is(r.error, 0, `lookup ${name}`);
  return entryOut(r.view).nodeId;
}

function open(node: number, flags: number, openFlags = 0): { error: number; fh: number } {
  const r = rig.request(P.FUSE_OPEN, node, struct(P.OPEN_IN.SIZE, (v) => {
    v.setUint32(P.OPEN_IN.flags, flags, true);
    v.setUint32(P.OPEN_IN.openFlags, openFlags, true);
  }));
  return { error: r.error, fh: r.error === 0 ? Number(r.view.getBigUint64(P.OPEN_OUT.fh, true)) : 0 };
}

function create(name: string, mode = 0o644, flags = C.O_CREAT | C.O_RDWR): { node: number; fh: number; error: number } {
  const r = rig.request(P.FUSE_CREATE, 1, struct(P.CREATE_IN.SIZE, (v) => {
    v.setUint32(P.CREATE_IN.flags, flags, true);
    v.setUint32(P.CREATE_IN.mode, C.S_IFREG | mode, true);
  }, cstr(name)));
  if (r.error !== 0) return { node: 0, fh: 0, error: r.error };
  return { node: entryOut(r.view).nodeId, fh: Number(r.view.getBigUint64(P.ENTRY_OUT_SIZE + P.OPEN_OUT.fh, true)), error: 0 };
}

function write(node: number, fh: number, offset: bigint, data: Uint8Array, writeFlags = 0): number {
  const r = rig.request(P.FUSE_WRITE, node, struct(P.WRITE_IN.SIZE, (v) => {
    v.setBigUint64(P.WRITE_IN.fh, BigInt(fh), true);
    v.setBigUint64(P.WRITE_IN.offset, offset, true);
    v.setUint32(P.WRITE_IN.size, data.length, true);
    v.setUint32(P.WRITE_IN.writeFlags, writeFlags, true);
  }), { payload: [data] });
  return r.error !== 0 ? r.error : r.view.getUint32(0, true);
}

// ---- xattrs -------------------------------------------------------------------------------------------------------

function setxattr(node: number, name: string, value: string, flags = 0): number {
  const v = new TextEncoder().encode(value);
  const body = new Uint8Array([...cstr(name), ...v]);
  return rig.request(P.FUSE_SETXATTR, node, struct(P.SETXATTR_IN.SIZE, (dv) => {
    dv.setUint32(P.SETXATTR_IN.size, v.length, true);
    dv.setUint32(P.SETXATTR_IN.flags, flags, true);
  }, body)).error;
}

function getxattr(node: number, name: string, size: number) {
  return rig.request(P.FUSE_GETXATTR, node, struct(P.GETXATTR_IN.SIZE, (v) => v.setUint32(0, size, true), cstr(name)));
}

function listxattr(node: number, size: number) {
  return rig.request(P.FUSE_LISTXATTR, node, struct(P.GETXATTR_IN.SIZE, (v) => v.setUint32(0, size, true)));
}

test('xattrs with --xattr: set, size probe, exact read, ERANGE, list, remove, create/replace flags', async () => {
  await setup({ cache: 'auto' }, { xattr: true });
  const node = lookup('hello');
  assert.is(setxattr(node, 'user.color', 'blue-green'), 0);
  // Visible on the host, on the file itself.
  const hostBuf = new Uint8Array(64);
  const n = native.getxattr(path.join(dir, 'hello'), 'user.color', hostBuf, 0, 64);
  assert.is(dec.decode(hostBuf.subarray(0, n)), 'blue-green');

  const probe = getxattr(node, 'user.color', 0);
  assert.is(probe.error, 0);
  assert.is(probe.body.length, P.GETXATTR_OUT.SIZE, 'size 0: a fuse_getxattr_out');
  assert.is(probe.view.getUint32(P.GETXATTR_OUT.size, true), 10);
  const exact = getxattr(node, 'user.color', 10);
  assert.is(exact.error, 0);
  assert.is(dec.decode(exact.body), 'blue-green');
  assert.is(dec.decode(getxattr(node, 'user.color', 4096).body), 'blue-green', 'a larger buffer gets the value');
  assert.is(getxattr(node, 'user.color', 4).error, -E.ERANGE);
  assert.is(getxattr(node, 'user.absent', 100).error, -E.ENODATA);

  assert.is(setxattr(node, 'user.second', ''), 0, 'an empty value');
  const lp = listxattr(node, 0);
  const want = 'user.color\0user.second\0'.length;
  assert.is(lp.view.getUint32(0, true), want);
  const list = listxattr(node, want);
  assert.is(list.error, 0);
  assert.equal(dec.decode(list.body).split('\0').filter(Boolean).sort(), ['user.color', 'user.second']);
  assert.is(listxattr(node, 5).error, -E.ERANGE);

  assert.is(setxattr(node, 'user.color', 'red', C.XATTR_CREATE), -E.EEXIST);
  assert.is(setxattr(node, 'user.nothere', 'x', C.XATTR_REPLACE), -E.ENODATA);
  assert.is(setxattr(node, 'user.color', 'red', C.XATTR_REPLACE), 0);
  assert.is(dec.decode(getxattr(node, 'user.color', 100).body), 'red');
  assert.is(rig.request(P.FUSE_REMOVEXATTR, node, cstr('user.color')).error, 0);
  assert.is(getxattr(node, 'user.color', 100).error, -E.ENODATA);
  assert.is(rig.request(P.FUSE_REMOVEXATTR, node, cstr('user.color')).error, -E.ENODATA);
  // Directories have xattrs too (the root here).
  assert.is(setxattr(1, 'user.d', 'dir'), 0);
  assert.is(dec.decode(getxattr(1, 'user.d', 16).body), 'dir');
});

test('xattrs act on a symlink node itself, never on what it points to', async () => {
  if (!requireRoot()) return; // trusted.* xattrs need CAP_SYS_ADMIN
  await setup({ cache: 'auto' }, { xattr: true });
  const target = lookup('hello');
  assert.is(setxattr(target, 'user.secret', 'inside'), 0);
  fs.symlinkSync('hello', path.join(dir, 'link'));
  const link = lookup('link');
  assert.is(getxattr(link, 'user.secret', 100).error, -E.ENODATA, 'the target\'s value is not read through the link');
  assert.is(listxattr(link, 0).view.getUint32(0, true), 0, 'the link lists no user xattrs');
  // user.* is refused on symlinks by the host kernel, as on a local filesystem; the target is untouched.
  assert.is(setxattr(link, 'user.secret', 'changed'), -E.EPERM);
  assert.is(dec.decode(getxattr(target, 'user.secret', 100).body), 'inside');
  // trusted.* (root) lands on the link inode itself.
  assert.is(setxattr(link, 'trusted.mark', 'on-link'), 0);
  assert.is(getxattr(target, 'trusted.mark', 100).error, -E.ENODATA);
  assert.is(dec.decode(getxattr(link, 'trusted.mark', 100).body), 'on-link');
});

test('malformed SETXATTR (value shorter than its size, unterminated name) is EINVAL', async () => {
  await setup({ cache: 'auto' }, { xattr: true });
  const node = lookup('hello');
  const short = struct(P.SETXATTR_IN.SIZE, (v) => v.setUint32(0, 100, true), cstr('user.x'));
  assert.is(rig.request(P.FUSE_SETXATTR, node, short).error, -E.EINVAL);
  const unterminated = struct(P.SETXATTR_IN.SIZE, () => {}, new TextEncoder().encode('user.x'));
  assert.is(rig.request(P.FUSE_SETXATTR, node, unterminated).error, -E.EINVAL);
  assert.is(getxattr(node, 'user.x', 0).error, -E.ENODATA, 'nothing was set');
});

// ---- data operations --------------------------------------------------------------------------------------------

function fallocate(node: number, fh: number, offset: bigint, length: bigint, mode: number): number {
  return rig.request(P.FUSE_FALLOCATE, node, struct(P.FALLOCATE_IN.SIZE, (v) => {
    v.setBigUint64(P.FALLOCATE_IN.fh, BigInt(fh), true);
    v.setBigUint64(P.FALLOCATE_IN.offset, offset, true);
    v.setBigUint64(P.FALLOCATE_IN.length, length, true);
    v.setUint32(P.FALLOCATE_IN.mode, mode, true);
  })).error;
}

function lseek(node: number, fh: number, offset: bigint, whence: number): bigint | number {
  const r = rig.request(P.FUSE_LSEEK, node, struct(P.LSEEK_IN.SIZE, (v) => {
    v.setBigUint64(P.LSEEK_IN.fh, BigInt(fh), true);
    v.setBigUint64(P.LSEEK_IN.offset, offset, true);
    v.setUint32(P.LSEEK_IN.whence, whence, true);
  }));
  return r.error !== 0 ? r.error : r.view.getBigUint64(P.LSEEK_OUT.offset, true);
}

test('FALLOCATE: allocate, punch a hole, and the host\'s EOPNOTSUPP passes through unchanged', async () => {
  await setup();
  const f = create('big');
  assert.is(fallocate(f.node, f.fh, 0n, 1n << 20n, 0), 0);
  const st = fs.statSync(path.join(dir, 'big'));
  assert.is(st.size, 1 << 20, 'the file grew');
  assert.ok(st.blocks * 512 >= 1 << 20, 'blocks are allocated');
  assert.is(fallocate(f.node, f.fh, 0n, 512n * 1024n, C.FALLOC_FL_PUNCH_HOLE | C.FALLOC_FL_KEEP_SIZE), 0);
  const after = fs.statSync(path.join(dir, 'big'));
  assert.is(after.size, 1 << 20, 'KEEP_SIZE');
  assert.ok(after.blocks < st.blocks, 'the hole freed blocks');
  assert.is(fallocate(f.node, f.fh, 0n, 4096n, C.FALLOC_FL_PUNCH_HOLE), -E.EOPNOTSUPP, 'PUNCH_HOLE without KEEP_SIZE');
  assert.is(fallocate(f.node, f.fh + 99, 0n, 4096n, 0), -E.EBADF);
});

test('LSEEK: SEEK_DATA and SEEK_HOLE find the data of a sparse file; ENXIO past the end', async () => {
  await setup();
  const f = create('sparse');
  const MiB = 1n << 20n;
  assert.is(write(f.node, f.fh, MiB, new Uint8Array(4096).fill(7)), 4096);
  assert.is(lseek(f.node, f.fh, 0n, C.SEEK_DATA), MiB, 'the first data is at 1 MiB');
  assert.is(lseek(f.node, f.fh, 0n, C.SEEK_HOLE), 0n, 'the file starts with a hole');
  assert.is(lseek(f.node, f.fh, MiB, C.SEEK_HOLE), MiB + 4096n, 'the data ends at EOF');
  assert.is(lseek(f.node, f.fh, MiB + 8192n, C.SEEK_DATA), -E.ENXIO);
  assert.is(lseek(f.node, f.fh, 0n, 77), -E.EINVAL);
  assert.is(lseek(f.node, f.fh + 5, 0n, C.SEEK_DATA), -E.EBADF);
});

test('COPY_FILE_RANGE copies between two open files at the given offsets', async () => {
  await setup();
  const src = open(lookup('hello'), C.O_RDONLY);
  const srcNode = lookup('hello');
  const dst = create('copy');
  const req = (fhIn: number, nodeOut: number, len: bigint) => rig.request(P.FUSE_COPY_FILE_RANGE, srcNode,
    struct(P.COPY_FILE_RANGE_IN.SIZE, (v) => {
      v.setBigUint64(P.COPY_FILE_RANGE_IN.fhIn, BigInt(fhIn), true);
      v.setBigUint64(P.COPY_FILE_RANGE_IN.offIn, 6n, true);
      v.setBigUint64(P.COPY_FILE_RANGE_IN.nodeidOut, BigInt(nodeOut), true);
      v.setBigUint64(P.COPY_FILE_RANGE_IN.fhOut, BigInt(dst.fh), true);
      v.setBigUint64(P.COPY_FILE_RANGE_IN.offOut, 2n, true);
      v.setBigUint64(P.COPY_FILE_RANGE_IN.len, len, true);
    }));
  const r = req(src.fh, dst.node, 5n);
  assert.is(r.error, 0);
  assert.is(r.body.length, P.WRITE_OUT.SIZE);
  assert.is(r.view.getUint32(P.WRITE_OUT.size, true), 5);
  assert.equal([...fs.readFileSync(path.join(dir, 'copy'))], [0, 0, ...Buffer.from('world')]);
  // A huge length copies what there is (and never overflows the u32 reply).
  const all = req(src.fh, dst.node, 1n << 40n);
  assert.is(all.view.getUint32(0, true), 6, 'up to EOF of the source');
  assert.is(req(src.fh, srcNode, 5n).error, -E.EBADF, 'the output handle must belong to the output node');
});

unlessRuntime(test, { deno: 'Deno\'s node:fs decodes Buffer paths as UTF-8, so the test cannot make or see non-UTF-8 names on the host' })('names are bytes: names and symlink targets that are not UTF-8 pass through unchanged, both ways', async () => {
  await setup({ cache: 'auto' }, { xattr: true });
  const raw = (...b: number[]): Uint8Array => Uint8Array.from([...b, 0]);
  const ff = Buffer.from([0x66, 0xff]); // "f" + a byte no UTF-8 text contains
  const fe = Buffer.from([0x66, 0xfe]);
  // MKDIR and CREATE with raw names: two names a UTF-8 decoder would both turn into "f\ufffd" stay two.
  const mk = rig.request(P.FUSE_MKDIR, 1, struct(P.MKDIR_IN.SIZE, (v) => v.setUint32(P.MKDIR_IN.mode, 0o755, true),
    raw(...ff)));
  assert.is(mk.error, 0);
  const cr = rig.request(P.FUSE_CREATE, 1, struct(P.CREATE_IN.SIZE, (v) => {
    v.setUint32(P.CREATE_IN.flags, C.O_CREAT | C.O_RDWR, true);
    v.setUint32(P.CREATE_IN.mode, C.S_IFREG | 0o644, true);
  }, raw(...fe)));
  assert.is(cr.error, 0);
  const host = (fs.readdirSync(dir, { encoding: 'buffer' }) as Buffer[]).map((b) => b.toString('hex')).sort();
  assert.ok(host.includes(ff.toString('hex')) && host.includes(fe.toString('hex')), `host names ${host}`);
  assert.ok(fs.statSync(Buffer.concat([Buffer.from(dir + '/'), ff])).isDirectory());
  // A host file with a Latin-1 name, and a symlink with a non-UTF-8 target, made on the host.
  const latin = Buffer.from('caf\xe9', 'latin1');
  fs.writeFileSync(Buffer.concat([Buffer.from(dir + '/'), latin]), 'x');
  const tgt = Buffer.from([0x2e, 0x2f, 0x80, 0x81]);
  fs.symlinkSync(tgt, Buffer.concat([Buffer.from(dir + '/'), Buffer.from('ln')]));
  // LOOKUP by the exact bytes finds them; the wrong bytes do not.
  assert.is(rig.request(P.FUSE_LOOKUP, 1, raw(...latin)).error, 0);
  assert.is(rig.request(P.FUSE_LOOKUP, 1, cstr('café')).error, -E.ENOENT, 'UTF-8 "café" is another name');
  const ln = entryOut(rig.request(P.FUSE_LOOKUP, 1, cstr('ln')).view).nodeId;
  const rl = rig.request(P.FUSE_READLINK, ln, new Uint8Array(0));
  assert.is(rl.error, 0);
  assert.equal([...rl.body], [...tgt], 'READLINK gives the target\'s bytes');
  // SYMLINK with a raw target: the host link holds those bytes.
  const sl = rig.request(P.FUSE_SYMLINK, 1, Uint8Array.from([...raw(0x73), ...raw(0xc3, 0x28)]));
  assert.is(sl.error, 0);
  assert.is((fs.readlinkSync(path.join(dir, 's'), { encoding: 'buffer' }) as Buffer).toString('hex'), 'c328');
  // READDIRPLUS lists every name with its exact bytes, each looked up.
  const o = rig.request(P.FUSE_OPENDIR, 1, struct(P.OPEN_IN.SIZE, () => {}));
  assert.is(o.error, 0);
  const fh = Number(o.view.getBigUint64(P.OPEN_OUT.fh, true));
  const r = rig.request(P.FUSE_READDIRPLUS, 1, readIn(fh, 0n, 8192), { reply: [16 + 8192] });
  assert.is(r.error, 0);
  const names: string[] = [];
  const v = new DataView(r.body.buffer, r.body.byteOffset, r.body.byteLength);
  for (let at = 0; at < r.body.length;) {
    const len = v.getUint32(at + 128 + 16, true);
    if (v.getBigUint64(at, true) !== 0n) names.push(Buffer.from(r.body.subarray(at + 152, at + 152 + len)).toString('hex'));
    at += (152 + len + 7) & ~7;
  }
  for (const n of [ff, fe, latin]) assert.ok(names.includes(n.toString('hex')), `READDIRPLUS lists ${n.toString('hex')}`);
  // xattr names are bytes too.
  const xname = Uint8Array.from([...Buffer.from('user.\xb5', 'latin1'), 0]);
  const sx = rig.request(P.FUSE_SETXATTR, 1, struct(P.SETXATTR_IN.SIZE, (w) => w.setUint32(P.SETXATTR_IN.size, 1, true),
    Uint8Array.from([...xname, 0x31])));
  assert.is(sx.error, 0);
  const list = rig.request(P.FUSE_LISTXATTR, 1, struct(P.GETXATTR_IN.SIZE, (w) => w.setUint32(P.GETXATTR_IN.size, 256, true)));
  assert.ok(Buffer.from(list.body).includes(Buffer.from(xname)), 'LISTXATTR gives the name\'s bytes');
});

// The oracle: the share lives on a recording FUSE filesystem (test/util/recording-fs.ts), where the host fsync the
// server does for a guest's FSYNC arrives as FUSE_FSYNC and is recorded with the file's contents at that moment.
test('FSYNC, FDATASYNC and FSYNCDIR from the guest reach the host filesystem, after the data', async () => {
  if (!requireDevFuse()) return;
  const rec = await startRecordingMount();
  try {
    dir = fs.mkdtempSync(path.join(rec.mountpoint, 'ops-'));
    const rel = path.basename(dir);
    fs.writeFileSync(path.join(dir, 'hello'), 'hello world\n');
    pfs = new PassthroughFs({ root: dir });
    rig = await FuseGuest.create(pfs, { cache: 'auto' });
    assert.is(rig.request(P.FUSE_INIT, 0, initIn(37, KERNEL_FLAGS)).error, 0);
    const node = lookup('hello');
    const o = open(node, C.O_RDWR);
    assert.is(o.error, 0);
    const w = rig.request(P.FUSE_WRITE, node, struct(P.WRITE_IN.SIZE, (v) => {
      v.setBigUint64(P.WRITE_IN.fh, BigInt(o.fh), true);
      v.setUint32(P.WRITE_IN.size, 5, true);
    }), { payload: [new TextEncoder().encode('HELLO')] });
    assert.is(w.error, 0);
    const fsyncIn = (fh: number, flags: number) => struct(P.FSYNC_IN.SIZE, (v) => {
      v.setBigUint64(P.FSYNC_IN.fh, BigInt(fh), true);
      v.setUint32(P.FSYNC_IN.fsyncFlags, flags, true);
    });
    const syncs = () => rec.records().filter((r) => r.op === 'fsync' && r.path === path.join(rel, 'hello'));
    assert.equal(syncs(), []);
    assert.is(rig.request(P.FUSE_FSYNC, node, fsyncIn(o.fh, 0)).error, 0);
    assert.is(rig.request(P.FUSE_FSYNC, node, fsyncIn(o.fh, P.FUSE_FSYNC_FDATASYNC)).error, 0);
    assert.equal(syncs().map((r) => [r.datasync, r.result, r.size]), [[false, 0, 12], [true, 0, 12]]);
    assert.equal(fs.readFileSync(path.join(rec.backing, rel, 'hello'), 'utf8'), 'HELLO world\n');
    const od = rig.request(P.FUSE_OPENDIR, 1, struct(P.OPEN_IN.SIZE, () => {}));
    assert.is(od.error, 0);
    const dfh = Number(od.view.getBigUint64(P.OPEN_OUT.fh, true));
    assert.is(rig.request(P.FUSE_FSYNCDIR, 1, fsyncIn(dfh, 0)).error, 0);
    assert.equal(rec.records().filter((r) => r.op === 'fsyncdir' && r.path === rel).map((r) => r.result), [0]);
  } finally {
    pfs?.close();
    pfs = undefined as unknown as PassthroughFs;
    dir = '';
    await rec.stop();
  }
});

test('SYNCFS and FSYNC succeed; IOCTL is ENOTTY', async () => {
  await setup();
  assert.is(rig.request(P.FUSE_SYNCFS, 1, new Uint8Array(P.SYNCFS_IN.SIZE)).error, 0);
  assert.is(rig.request(P.FUSE_IOCTL, lookup('hello'), new Uint8Array(32)).error, -E.ENOTTY);
});

test('TMPFILE: an unnamed file that can be written and read, with a node and a handle', async () => {
  await setup({ cache: 'never' });
  const before = fs.readdirSync(dir).sort();
  const r = rig.request(P.FUSE_TMPFILE, 1, struct(P.CREATE_IN.SIZE, (v) => {
    v.setUint32(P.CREATE_IN.flags, C.O_RDWR, true);
    v.setUint32(P.CREATE_IN.mode, C.S_IFREG | 0o600, true);
  }, cstr('/')));
  assert.is(r.error, 0);
  assert.is(r.body.length, P.ENTRY_OUT_SIZE + P.OPEN_OUT.SIZE);
  const e = entryOut(r.view);
  assert.is(e.mode & C.S_IFMT, C.S_IFREG);
  assert.is(e.mode & 0o7777, 0o600);
  const fh = Number(r.view.getBigUint64(P.ENTRY_OUT_SIZE, true));
  assert.is(write(e.nodeId, fh, 0n, new TextEncoder().encode('ephemeral')), 9);
  const rd = rig.request(P.FUSE_READ, e.nodeId, readIn(fh, 0n, 100));
  assert.is(dec.decode(rd.body), 'ephemeral');
  assert.equal(fs.readdirSync(dir).sort(), before, 'no name appeared in the directory');
  // Linking it in (as `linkat` does in the guest) gives it a name.
  const ln = rig.request(P.FUSE_LINK, 1, struct(8, (v) => v.setBigUint64(0, BigInt(e.nodeId), true), cstr('kept')));
  assert.is(ln.error, 0);
  assert.is(fs.readFileSync(path.join(dir, 'kept'), 'utf8'), 'ephemeral');
  const wrongMode = rig.request(P.FUSE_TMPFILE, 1, struct(P.CREATE_IN.SIZE, (v) => {
    v.setUint32(P.CREATE_IN.flags, C.O_RDONLY, true);
    v.setUint32(P.CREATE_IN.mode, C.S_IFREG | 0o600, true);
  }, cstr('/')));
  assert.is(wrongMode.error, -E.EINVAL, 'O_TMPFILE needs write access, as on the host');
});

// ---- POSIX locks ---------------------------------------------------------------------------------------------------

function lk(opcode: number, node: number, fh: number, owner: bigint, type: number, start: bigint, end: bigint,
            lkFlags = 0) {
  return rig.request(opcode, node, lkIn(fh, owner, type, start, end, lkFlags));
}

function flush(node: number, fh: number, owner: bigint): number {
  return rig.request(P.FUSE_FLUSH, node, struct(P.FLUSH_IN.SIZE, (v) => {
    v.setBigUint64(P.FLUSH_IN.fh, BigInt(fh), true);
    v.setBigUint64(P.FLUSH_IN.lockOwner, owner, true);
  })).error;
}

/** What a host process sees: F_OFD_GETLK on its own fd. [type, start, len]. */
function hostSees(file: string, type: number, start: bigint, len: bigint): [number, bigint, bigint] {
  const fd = native.openat(C.AT_FDCWD, file, C.O_RDWR, 0);
  const fl = new BigInt64Array([BigInt(type), BigInt(C.SEEK_SET), start, len, 0n]);
  assert.is(native.fcntlLock(fd, C.F_OFD_GETLK, fl), 0);
  native.close(fd);
  return [Number(fl[0]), fl[2], fl[3]];
}

test('POSIX locks (posixLocks): per lock owner, visible on the host, released by the owner\'s FLUSH', async () => {
  await setup({ cache: 'auto', posixLocks: true });
  const ini = rig.request(P.FUSE_INIT, 0, initIn(37, KERNEL_FLAGS));
  assert.is(ini.view.getUint32(P.INIT_OUT.flags, true) & P.FUSE_POSIX_LOCKS, P.FUSE_POSIX_LOCKS);
  const fds = countOpenFds();
  const node = lookup('hello');
  const { fh } = open(node, C.O_RDWR);
  const A = 0xa11ce0001n;
  const B = 0xb0b0002n;
  const file = path.join(dir, 'hello');
  // Owner A write-locks bytes 0..99; owner B (even through the same fh, as after fork) conflicts.
  assert.is(lk(P.FUSE_SETLK, node, fh, A, C.F_WRLCK, 0n, 99n).error, 0);
  assert.is(lk(P.FUSE_SETLK, node, fh, B, C.F_WRLCK, 50n, 60n).error, -E.EAGAIN);
  assert.is(lk(P.FUSE_SETLK, node, fh, B, C.F_RDLCK, 100n, P.OFFSET_MAX).error, 0, 'no overlap: granted');
  const g = lk(P.FUSE_GETLK, node, fh, B, C.F_WRLCK, 50n, 60n);
  assert.is(g.error, 0);
  assert.is(g.body.length, P.LK_OUT.SIZE);
  assert.equal([g.view.getUint32(P.LK_OUT.type, true), g.view.getBigUint64(P.LK_OUT.start, true),
    g.view.getBigUint64(P.LK_OUT.end, true)], [C.F_WRLCK, 0n, 99n], 'GETLK names A\'s lock');
  const own = lk(P.FUSE_GETLK, node, fh, A, C.F_WRLCK, 0n, 10n);
  assert.is(own.view.getUint32(P.LK_OUT.type, true), C.F_UNLCK, 'an owner never conflicts with itself');
  // A host process sees both locks.
  assert.equal(hostSees(file, C.F_WRLCK, 0n, 10n), [C.F_WRLCK, 0n, 100n]);
  assert.equal(hostSees(file, C.F_WRLCK, 200n, 1n), [C.F_RDLCK, 100n, 0n], 'B\'s read lock runs to EOF');
  // SETLKW never blocks the daemon: a conflict is refused, a free range is granted.
  assert.is(lk(P.FUSE_SETLKW, node, fh, B, C.F_WRLCK, 0n, 0n).error, -E.EOPNOTSUPP);
  assert.is(lk(P.FUSE_SETLKW, node, fh, B, C.F_WRLCK, 100n, 199n).error, 0, 'B upgrades its own range');
  // Unlock part of A's range, then A's close (FLUSH with its owner) drops the rest.
  assert.is(lk(P.FUSE_SETLK, node, fh, A, C.F_UNLCK, 0n, 49n).error, 0);
  assert.is(lk(P.FUSE_SETLK, node, fh, B, C.F_WRLCK, 0n, 49n).error, 0);
  assert.is(lk(P.FUSE_SETLK, node, fh, B, C.F_WRLCK, 50n, 60n).error, -E.EAGAIN);
  assert.is(flush(node, fh, A), 0);
  assert.is(lk(P.FUSE_SETLK, node, fh, B, C.F_WRLCK, 50n, 60n).error, 0, 'A\'s locks went with its close');
  assert.is(lk(P.FUSE_SETLK, node, fh, 0xc0ffeen, C.F_UNLCK, 0n, 9n).error, 0, 'unlock without locks');
  assert.is(flush(node, fh, B), 0);
  assert.equal(hostSees(file, C.F_WRLCK, 0n, 0n)[0], C.F_UNLCK, 'nothing left on the host');
  rig.request(P.FUSE_RELEASE, node, struct(P.RELEASE_IN.SIZE, (v) => v.setBigUint64(0, BigInt(fh), true)));
  rig.request(P.FUSE_FORGET, node, struct(8, (v) => v.setBigUint64(0, 1n, true)));
  await Promise.resolve(); // with file handles, fds the cache evicted are closed in a microtask (inode-store.ts)
  pfs.waitForCloses();
  assert.is(countOpenFds(), fds, 'no lock fd left behind');
});

test('POSIX locks: malformed ranges, BSD flock and foreign handles are refused; not negotiated by default', async () => {
  await setup({ cache: 'auto', posixLocks: true });
  const node = lookup('hello');
  const { fh } = open(node, C.O_RDWR);
  assert.is(lk(P.FUSE_SETLK, node, fh, 1n, C.F_WRLCK, 10n, 5n).error, -E.EINVAL, 'end before start');
  assert.is(lk(P.FUSE_SETLK, node, fh, 1n, 9, 0n, 5n).error, -E.EINVAL, 'unknown type');
  assert.is(lk(P.FUSE_SETLK, node, fh, 1n, C.F_WRLCK, 0n, P.OFFSET_MAX + 1n).error, -E.EINVAL);
  assert.is(lk(P.FUSE_SETLK, node, fh, 1n, C.F_WRLCK, 0n, 0n, P.FUSE_LK_FLOCK).error, -E.ENOSYS);
  assert.is(lk(P.FUSE_SETLK, node, fh + 1000, 1n, C.F_WRLCK, 0n, 0n).error, -E.EBADF);
  pfs.close();
  fs.rmSync(dir, { recursive: true, force: true });
  await setup();
  const ini = rig.request(P.FUSE_INIT, 0, initIn(37, KERNEL_FLAGS));
  assert.is(ini.view.getUint32(P.INIT_OUT.flags, true) & P.FUSE_POSIX_LOCKS, 0, 'locks stay in the guest');
});

// ---- read-only share ----------------------------------------------------------------------------------------------

test('a read-only share answers EROFS to every change and still serves reads', async () => {
  await setup({ cache: 'auto', readonly: true }, { xattr: true });
  const node = lookup('hello');
  const ro = open(node, C.O_RDONLY);
  assert.is(ro.error, 0);
  assert.is(dec.decode(rig.request(P.FUSE_READ, node, readIn(ro.fh, 0n, 5)).body), 'hello');
  assert.is(open(node, C.O_WRONLY).error, -E.EROFS);
  assert.is(open(node, C.O_RDWR).error, -E.EROFS);
  assert.is(open(node, C.O_RDONLY | C.O_TRUNC).error, -E.EROFS);
  assert.is(create('new').error, -E.EROFS);
  assert.is(write(node, ro.fh, 0n, new Uint8Array(3)), -E.EROFS);
  const setSize = struct(P.SETATTR_IN.SIZE, (v) => v.setUint32(P.SETATTR_IN.valid, P.FATTR_SIZE, true));
  assert.is(rig.request(P.FUSE_SETATTR, node, setSize).error, -E.EROFS);
  assert.is(rig.request(P.FUSE_MKDIR, 1, struct(P.MKDIR_IN.SIZE, (v) => v.setUint32(0, 0o755, true), cstr('d'))).error, -E.EROFS);
  assert.is(rig.request(P.FUSE_UNLINK, 1, cstr('hello')).error, -E.EROFS);
  assert.is(rig.request(P.FUSE_SYMLINK, 1, cstr('l', 'hello')).error, -E.EROFS);
  assert.is(rig.request(P.FUSE_RENAME, 1, struct(8, (v) => v.setBigUint64(0, 1n, true), cstr('hello', 'x'))).error, -E.EROFS);
  assert.is(setxattr(node, 'user.x', 'y'), -E.EROFS);
  assert.is(rig.request(P.FUSE_REMOVEXATTR, node, cstr('user.x')).error, -E.EROFS);
  assert.is(fallocate(node, ro.fh, 0n, 10n, 0), -E.EROFS);
  assert.is(rig.request(P.FUSE_TMPFILE, 1, struct(P.CREATE_IN.SIZE, (v) => v.setUint32(0, C.O_RDWR, true), cstr('/'))).error, -E.EROFS);
  assert.is(getxattr(node, 'user.x', 0).error, -E.ENODATA, 'reading xattrs is fine');
  assert.equal(fs.readdirSync(dir), ['hello']);
  assert.is(fs.readFileSync(path.join(dir, 'hello'), 'utf8'), 'hello world\n');
});

// ---- killpriv ---------------------------------------------------------------------------------------------------------

test('HANDLE_KILLPRIV_V2: negotiated on request; WRITE/SETATTR size/OPEN O_TRUNC with the kill flag clear setuid/setgid', async () => {
  if (!requireRoot()) return; // a privileged writer keeps setuid/setgid; the daemon writes as root
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vfs-ops-'));
  pfs = new PassthroughFs({ root: dir });
  rig = await FuseGuest.create(pfs, { cache: 'auto', killprivV2: true });
  const ini = rig.request(P.FUSE_INIT, 0, initIn(37, KERNEL_FLAGS | P.FUSE_HANDLE_KILLPRIV_V2));
  assert.is(ini.view.getUint32(P.INIT_OUT.flags, true) & P.FUSE_HANDLE_KILLPRIV_V2, P.FUSE_HANDLE_KILLPRIV_V2);
  const modeOf = (n: string): number => fs.statSync(path.join(dir, n)).mode & 0o7777;
  const mk = (n: string, mode: number): number => {
    fs.writeFileSync(path.join(dir, n), 'data');
    fs.chmodSync(path.join(dir, n), mode);
    return lookup(n);
  };
  // WRITE: without the flag (a privileged writer in the guest) the bits stay; with it they go.
  const a = mk('a', 0o6755);
  const ha = open(a, C.O_RDWR);
  assert.is(write(a, ha.fh, 0n, new Uint8Array([1])), 1);
  assert.is(modeOf('a'), 0o6755, 'no flag: kept');
  assert.is(write(a, ha.fh, 0n, new Uint8Array([1]), P.FUSE_WRITE_KILL_SUIDGID), 1);
  assert.is(modeOf('a'), 0o755, 'setuid and (group-executable) setgid cleared');
  // setgid without group execute is not a privilege (mandatory-locking marker): kept, as the kernel does.
  const b = mk('b', 0o2745);
  const hb = open(b, C.O_RDWR);
  assert.is(write(b, hb.fh, 0n, new Uint8Array([1]), P.FUSE_WRITE_KILL_SUIDGID), 1);
  assert.is(modeOf('b'), 0o2745);
  // SETATTR size with FATTR_KILL_SUIDGID.
  const c = mk('c', 0o4755);
  const trunc = (kill: boolean) => struct(P.SETATTR_IN.SIZE, (v) => {
    v.setUint32(P.SETATTR_IN.valid, P.FATTR_SIZE | (kill ? P.FATTR_KILL_SUIDGID : 0), true);
    v.setBigUint64(P.SETATTR_IN.size, 1n, true);
  });
  assert.is(rig.request(P.FUSE_SETATTR, c, trunc(false)).error, 0);
  assert.is(modeOf('c'), 0o4755);
  const sc = rig.request(P.FUSE_SETATTR, c, trunc(true));
  assert.is(sc.error, 0);
  assert.is(modeOf('c'), 0o755);
  assert.is(sc.view.getUint32(16 + 60, true) & 0o7777, 0o755, 'the reply carries the new mode');
  // OPEN with O_TRUNC and FUSE_OPEN_KILL_SUIDGID.
  const d = mk('d', 0o4755);
  const hd = open(d, C.O_WRONLY | C.O_TRUNC, P.FUSE_OPEN_KILL_SUIDGID);
  assert.is(hd.error, 0);
  assert.is(modeOf('d'), 0o755);
  assert.is(fs.statSync(path.join(dir, 'd')).size, 0);
  // chown clears setuid on the host by itself (FATTR_UID with killpriv v2 expects that).
  const e = mk('e', 0o4755);
  const chown = struct(P.SETATTR_IN.SIZE, (v) => {
    v.setUint32(P.SETATTR_IN.valid, P.FATTR_UID, true);
    v.setUint32(P.SETATTR_IN.uid, 1234, true);
  });
  assert.is(rig.request(P.FUSE_SETATTR, e, chown).error, 0);
  assert.is(modeOf('e') & C.S_ISUID, 0);
});

test('without killprivV2 the flag is not offered', async () => {
  await setup();
  const r = rig.request(P.FUSE_INIT, 0, initIn(37, KERNEL_FLAGS | P.FUSE_HANDLE_KILLPRIV_V2));
  assert.is(r.view.getUint32(P.INIT_OUT.flags, true) & P.FUSE_HANDLE_KILLPRIV_V2, 0);
});

// ---- the options that switch these on ------------------------------------------------------------------------------

test('command line: --xattr, --writeback, --allow-direct-io, --readonly, --rlimit-nofile', () => {
  const base = ['--socket-path=/tmp/s', '--shared-dir=/tmp'];
  const d = parseCommandLine(base);
  assert.ok(typeof d === 'object');
  if (typeof d !== 'object') return;
  assert.equal([d.xattr, d.writeback, d.allowDirectIo, d.readonly, d.rlimitNofile], [false, false, false, false, undefined]);
  const all = parseCommandLine([...base, '--xattr', '--writeback', '--allow-direct-io', '--readonly', '--rlimit-nofile=4096']);
  if (typeof all !== 'object') throw new Error('options');
  assert.equal([all.xattr, all.writeback, all.allowDirectIo, all.readonly, all.rlimitNofile], [true, true, true, true, 4096]);
  assert.throws(() => parseCommandLine([...base, '--rlimit-nofile=lots']), /rlimit-nofile/);
  assert.throws(() => parseCommandLine([...base, '--rlimit-nofile=-1']), /rlimit-nofile/);
});

test('open-file limit: 0 leaves it, N sets it, the default raises it as far as allowed', () => {
  const lim = new Float64Array(2);
  native.getrlimitNofile(lim);
  const [soft, hard] = lim;
  try {
    assert.is(native.setrlimitNofile(256, hard), 0);
    assert.is(applyNofileLimit(0), 256, '0: unchanged');
    const target = Math.min(1_000_000, Number(fs.readFileSync('/proc/sys/fs/nr_open', 'utf8')));
    const raised = applyNofileLimit(undefined);
    assert.ok(raised === target || (raised === hard && hard < target), `raised to ${raised}`);
    assert.is(native.setrlimitNofile(256, hard), 0);
    assert.is(applyNofileLimit(Math.min(hard, 4096)), Math.min(hard, 4096), 'N (not above the hard limit)');
    native.getrlimitNofile(lim);
    assert.equal([...lim], [Math.min(hard, 4096), Math.min(hard, 4096)]);
  } finally {
    native.setrlimitNofile(soft, hard);
  }
});

test.run();

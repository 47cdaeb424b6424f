/**
 * FuseServer end to end through the real core: requests are written by the mock guest driver into synthetic
 * guest memory (a test region of the core's linear memory), popped by the core, served by FuseServer over a
 * PassthroughFs on a temp dir, and the replies are read back from the guest buffers.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { countOpenFds } from './util/fds.js';
import { setLogLevel } from '../host/log.js';
import type { FileSystem } from '../host/fuse/filesystem.js';
import { PassthroughFs } from '../host/passthrough/passthrough-fs.js';
import * as P from '../host/fuse/protocol.js';
import type { FuseServerOptions } from '../host/fuse/server.js';
import {
  C, E, KERNEL_FLAGS, FuseGuest, cstr, enc, entryOut, initIn, parseDirentPlus, readIn, struct, type Reply,
} from './util/fuse-guest.js';

setLogLevel((process.env.LOG_LEVEL as 'off') ?? 'off');

// ---- the protocol constants against the C declarations ------------------------------------------------------------

/** Lays out C fields (natural alignment, as the uapi structs are declared) and returns name -> offset + SIZE. */
function cLayout(fields: Array<[string, 2 | 4 | 8, number?]>): Record<string, number> {
  const out: Record<string, number> = {};
  let at = 0;
  for (const [name, size, count] of fields) {
    at = Math.ceil(at / size) * size;
    out[name] = at;
    at += size * (count ?? 1);
  }
  out.SIZE = Math.ceil(at / 8) * 8;
  return out;
}

function sameLayout(name: string, ours: Record<string, number>, c: Record<string, number>): void {
  for (const [k, v] of Object.entries(c)) assert.is(ours[k], v, `${name}.${k}`);
}

test('protocol.ts offsets and sizes match the fuse.h struct declarations', () => {
  const u16 = 2, u32 = 4, u64 = 8;
  sameLayout('fuse_in_header', P.IN_HEADER, cLayout([['len', u32], ['opcode', u32], ['unique', u64], ['nodeid', u64],
    ['uid', u32], ['gid', u32], ['pid', u32], ['padding', u32]]));
  sameLayout('fuse_init_in', P.INIT_IN, cLayout([['major', u32], ['minor', u32], ['maxReadahead', u32], ['flags', u32],
    ['flags2', u32], ['unused', u32, 11]]));
  sameLayout('fuse_init_out', P.INIT_OUT, cLayout([['major', u32], ['minor', u32], ['maxReadahead', u32],
    ['flags', u32], ['maxBackground', u16], ['congestionThreshold', u16], ['maxWrite', u32], ['timeGran', u32],
    ['maxPages', u16], ['mapAlignment', u16], ['flags2', u32], ['unused', u32, 7]]));
  sameLayout('fuse_setattr_in', P.SETATTR_IN, cLayout([['valid', u32], ['padding', u32], ['fh', u64], ['size', u64],
    ['lockOwner', u64], ['atime', u64], ['mtime', u64], ['ctime', u64], ['atimensec', u32], ['mtimensec', u32],
    ['ctimensec', u32], ['mode', u32], ['unused4', u32], ['uid', u32], ['gid', u32], ['unused5', u32]]));
  sameLayout('fuse_getattr_in', P.GETATTR_IN, cLayout([['getattrFlags', u32], ['dummy', u32], ['fh', u64]]));
  sameLayout('fuse_mknod_in', P.MKNOD_IN, cLayout([['mode', u32], ['rdev', u32], ['umask', u32], ['padding', u32]]));
  sameLayout('fuse_mkdir_in', P.MKDIR_IN, cLayout([['mode', u32], ['umask', u32]]));
  sameLayout('fuse_rename_in', P.RENAME_IN, cLayout([['newdir', u64]]));
  sameLayout('fuse_rename2_in', P.RENAME2_IN, cLayout([['newdir', u64], ['flags', u32], ['padding', u32]]));
  sameLayout('fuse_link_in', P.LINK_IN, cLayout([['oldnodeid', u64]]));
  sameLayout('fuse_open_in', P.OPEN_IN, cLayout([['flags', u32], ['openFlags', u32]]));
  sameLayout('fuse_create_in', P.CREATE_IN, cLayout([['flags', u32], ['mode', u32], ['umask', u32], ['openFlags', u32]]));
  sameLayout('fuse_open_out', P.OPEN_OUT, cLayout([['fh', u64], ['openFlags', u32], ['padding', u32]]));
  sameLayout('fuse_release_in', P.RELEASE_IN, cLayout([['fh', u64], ['flags', u32], ['releaseFlags', u32],
    ['lockOwner', u64]]));
  sameLayout('fuse_flush_in', P.FLUSH_IN, cLayout([['fh', u64], ['unused', u32], ['padding', u32], ['lockOwner', u64]]));
  const rw = (flagsName: string) => cLayout([['fh', u64], ['offset', u64], ['size', u32], [flagsName, u32],
    ['lockOwner', u64], ['flags', u32], ['padding', u32]]);
  sameLayout('fuse_read_in', P.READ_IN, rw('readFlags'));
  sameLayout('fuse_write_in', P.WRITE_IN, rw('writeFlags'));
  sameLayout('fuse_write_out', P.WRITE_OUT, cLayout([['size', u32], ['padding', u32]]));
  sameLayout('fuse_fsync_in', P.FSYNC_IN, cLayout([['fh', u64], ['fsyncFlags', u32], ['padding', u32]]));
  sameLayout('fuse_access_in', P.ACCESS_IN, cLayout([['mask', u32], ['padding', u32]]));
  sameLayout('fuse_forget_in', P.FORGET_IN, cLayout([['nlookup', u64]]));
  sameLayout('fuse_batch_forget_in', P.BATCH_FORGET_IN, cLayout([['count', u32], ['dummy', u32]]));
  sameLayout('fuse_forget_one', P.FORGET_ONE, cLayout([['nodeid', u64], ['nlookup', u64]]));
  sameLayout('fuse_statfs_out', P.STATFS_OUT, cLayout([['blocks', u64], ['bfree', u64], ['bavail', u64], ['files', u64],
    ['ffree', u64], ['bsize', u32], ['namelen', u32], ['frsize', u32], ['padding', u32], ['spare', u32, 6]]));
  sameLayout('fuse_setxattr_in (compat)', P.SETXATTR_IN, cLayout([['size', u32], ['flags', u32]]));
  sameLayout('fuse_getxattr_in', P.GETXATTR_IN, cLayout([['size', u32], ['padding', u32]]));
  sameLayout('fuse_getxattr_out', P.GETXATTR_OUT, cLayout([['size', u32], ['padding', u32]]));
  sameLayout('fuse_fallocate_in', P.FALLOCATE_IN, cLayout([['fh', u64], ['offset', u64], ['length', u64],
    ['mode', u32], ['padding', u32]]));
  sameLayout('fuse_lseek_in', P.LSEEK_IN, cLayout([['fh', u64], ['offset', u64], ['whence', u32], ['padding', u32]]));
  sameLayout('fuse_lseek_out', P.LSEEK_OUT, cLayout([['offset', u64]]));
  sameLayout('fuse_copy_file_range_in', P.COPY_FILE_RANGE_IN, cLayout([['fhIn', u64], ['offIn', u64],
    ['nodeidOut', u64], ['fhOut', u64], ['offOut', u64], ['len', u64], ['flags', u64]]));
  sameLayout('fuse_syncfs_in', P.SYNCFS_IN, cLayout([['padding', u64]]));
  // Numbers the kernel defines (fuse.h): a sample of each family.
  assert.is(P.FUSE_INIT, 26);
  assert.is(P.FUSE_READDIRPLUS, 44);
  assert.is(P.FUSE_RENAME2, 45);
  assert.is(P.FUSE_TMPFILE, 51);
  assert.is(P.FUSE_MAX_PAGES, 0x400000);
  assert.is(P.FUSE_INIT_EXT, 0x40000000);
  assert.is(P.FATTR_KILL_SUIDGID, 0x800);
  assert.is(P.FOPEN_CACHE_DIR, 8);
  assert.is(P.ATTR_OUT_SIZE, 16 + 88);
  assert.is(P.ENTRY_OUT_SIZE, 40 + 88);
});

// ---- fixtures ---------------------------------------------------------------------------------------------------

let dir = '';
let pfs: PassthroughFs;
let rig: FuseGuest;

async function setup(options: FuseServerOptions = { cache: 'auto' }): Promise<void> {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vfs-srv-'));
  fs.writeFileSync(path.join(dir, 'hello'), 'hello world\n');
  pfs = new PassthroughFs({ root: dir });
  rig = await FuseGuest.create(pfs, options);
}

function init(minor = 36, flags = KERNEL_FLAGS): Reply {
  return rig.request(P.FUSE_INIT, 0, initIn(minor, flags));
}

test.after.each(() => {
  pfs?.close();
  pfs = undefined as unknown as PassthroughFs;
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

// ---- tests ------------------------------------------------------------------------------------------------------

test('a request before INIT is answered EIO', async () => {
  await setup();
  const r = rig.request(P.FUSE_LOOKUP, 1, cstr('hello'));
  assert.is(r.error, -E.EIO);
  assert.is(r.usedLen, 16);
});

test('INIT negotiates only what we implement, with the limits of the zero-copy path', async () => {
  await setup();
  const r = init(36);
  assert.is(r.error, 0);
  assert.is(r.body.length, P.INIT_OUT.SIZE);
  const v = r.view;
  assert.is(v.getUint32(P.INIT_OUT.major, true), 7);
  assert.is(v.getUint32(P.INIT_OUT.minor, true), 36, 'the kernel minor when it is older than ours');
  const flags = v.getUint32(P.INIT_OUT.flags, true);
  const want = P.FUSE_ASYNC_READ | P.FUSE_ASYNC_DIO | P.FUSE_ATOMIC_O_TRUNC | P.FUSE_BIG_WRITES |
    P.FUSE_DO_READDIRPLUS | P.FUSE_READDIRPLUS_AUTO | P.FUSE_PARALLEL_DIROPS | P.FUSE_MAX_PAGES;
  assert.is(flags, want, `flags 0x${flags.toString(16)}`);
  assert.is(flags & P.FUSE_WRITEBACK_CACHE, 0, 'no writeback cache by default');
  assert.is(flags & P.FUSE_POSIX_LOCKS, 0, 'no remote locks');
  assert.is(v.getUint32(P.INIT_OUT.maxReadahead, true), 128 * 1024);
  assert.is(v.getUint32(P.INIT_OUT.maxWrite, true), 1024 * 1024);
  assert.is(v.getUint16(P.INIT_OUT.maxPages, true), 256);
  assert.is(v.getUint32(P.INIT_OUT.timeGran, true), 1);
  assert.is(v.getUint32(P.INIT_OUT.flags2, true), 0);
  // Now requests are served.
  assert.is(rig.request(P.FUSE_GETATTR, 1, new Uint8Array(16)).error, 0);
});

test('INIT from an old kernel gets the reply size its minor expects; a newer minor gets ours', async () => {
  await setup();
  const old = init(22, P.FUSE_ASYNC_READ);
  assert.is(old.error, 0);
  assert.is(old.body.length, P.INIT_OUT.COMPAT_22_SIZE);
  assert.is(old.view.getUint32(P.INIT_OUT.flags, true), P.FUSE_ASYNC_READ);
  const newer = init(99);
  assert.is(newer.view.getUint32(P.INIT_OUT.minor, true), P.FUSE_KERNEL_MINOR_VERSION);
  assert.is(newer.body.length, 64);
});

test('LOOKUP returns an entry with the host attributes; ENOENT for a missing name', async () => {
  await setup();
  init();
  const r = rig.request(P.FUSE_LOOKUP, 1, cstr('hello'));
  assert.is(r.error, 0);
  assert.is(r.body.length, P.ENTRY_OUT_SIZE);
  const e = entryOut(r.view);
  assert.ok(e.nodeId > 1);
  assert.is(e.size, 12);
  assert.is(e.mode & C.S_IFMT, C.S_IFREG);
  assert.is(e.ino, fs.statSync(path.join(dir, 'hello'), { bigint: true }).ino);
  assert.is(e.entryValid, 1, 'cache=auto: 1 s');
  assert.is(rig.request(P.FUSE_LOOKUP, 1, cstr('missing')).error, -E.ENOENT);
  assert.is(rig.request(P.FUSE_LOOKUP, 1, cstr('a/b')).error, -E.EINVAL);
  assert.is(rig.request(P.FUSE_LOOKUP, 1, enc.encode('unterminated')).error, -E.EINVAL);
  // FORGET: no reply, and the count goes down.
  assert.is(pfs.inodes.get(e.nodeId)!.lookups, 1);
  const f = rig.request(P.FUSE_FORGET, e.nodeId, struct(8, (v) => v.setBigUint64(0, 1n, true)));
  assert.is(f.usedLen, 0, 'FORGET has no reply');
  assert.is(pfs.inodes.get(e.nodeId), undefined);
});

test('BATCH_FORGET and INTERRUPT complete without a reply', async () => {
  await setup();
  init();
  fs.writeFileSync(path.join(dir, 'b'), '');
  const a = entryOut(rig.request(P.FUSE_LOOKUP, 1, cstr('hello')).view).nodeId;
  const b = entryOut(rig.request(P.FUSE_LOOKUP, 1, cstr('b')).view).nodeId;
  rig.request(P.FUSE_LOOKUP, 1, cstr('b'));
  const batch = struct(8 + 32, (v) => {
    v.setUint32(0, 3, true); // claims 3, carries 2: only 2 are used
    v.setBigUint64(8, BigInt(a), true);
    v.setBigUint64(16, 1n, true);
    v.setBigUint64(24, BigInt(b), true);
    v.setBigUint64(32, 1n, true);
  });
  assert.is(rig.request(P.FUSE_BATCH_FORGET, 0, batch).usedLen, 0);
  assert.is(pfs.inodes.get(a), undefined);
  assert.is(pfs.inodes.get(b)!.lookups, 1);
  assert.is(rig.request(P.FUSE_INTERRUPT, 0, struct(8, (v) => v.setBigUint64(0, 5n, true))).usedLen, 0);
});

test('GETATTR and SETATTR (truncate + mtime with nanoseconds)', async () => {
  await setup();
  init();
  const g = rig.request(P.FUSE_GETATTR, 1, new Uint8Array(16));
  assert.is(g.error, 0);
  assert.is(g.body.length, P.ATTR_OUT_SIZE);
  assert.is(g.view.getUint32(16 + 60, true) & C.S_IFMT, C.S_IFDIR);
  const node = entryOut(rig.request(P.FUSE_LOOKUP, 1, cstr('hello')).view).nodeId;
  const set = struct(P.SETATTR_IN.SIZE, (v) => {
    v.setUint32(P.SETATTR_IN.valid, P.FATTR_SIZE | P.FATTR_MTIME, true);
    v.setBigUint64(P.SETATTR_IN.size, 5n, true);
    v.setBigUint64(P.SETATTR_IN.mtime, 1_234_567_890n, true);
    v.setUint32(P.SETATTR_IN.mtimensec, 555_000_001, true);
  });
  const s = rig.request(P.FUSE_SETATTR, node, set);
  assert.is(s.error, 0);
  const attr = 16; // fuse_attr inside fuse_attr_out
  assert.is(Number(s.view.getBigUint64(attr + 8, true)), 5, 'size in the reply');
  assert.is(Number(s.view.getBigUint64(attr + 32, true)), 1_234_567_890, 'mtime');
  assert.is(s.view.getUint32(attr + 52, true), 555_000_001, 'mtimensec');
  assert.is(fs.readFileSync(path.join(dir, 'hello'), 'utf8'), 'hello');
});

test('CREATE, WRITE and READ move data between guest memory and the file (scattered buffers)', async () => {
  await setup({ cache: 'never' });
  init();
  const create = struct(P.CREATE_IN.SIZE, (v) => {
    v.setUint32(P.CREATE_IN.flags, C.O_CREAT | C.O_RDWR, true);
    v.setUint32(P.CREATE_IN.mode, C.S_IFREG | 0o644, true);
    v.setUint32(P.CREATE_IN.umask, 0o022, true);
  }, cstr('data.bin'));
  const c = rig.request(P.FUSE_CREATE, 1, create);
  assert.is(c.error, 0);
  assert.is(c.body.length, P.ENTRY_OUT_SIZE + P.OPEN_OUT.SIZE);
  const e = entryOut(c.view);
  assert.is(e.entryValid, 0, 'cache=never: no entry caching');
  const fh = Number(c.view.getBigUint64(P.ENTRY_OUT_SIZE + P.OPEN_OUT.fh, true));
  const openFlags = c.view.getUint32(P.ENTRY_OUT_SIZE + P.OPEN_OUT.openFlags, true);
  assert.is(openFlags & P.FOPEN_DIRECT_IO, P.FOPEN_DIRECT_IO, 'cache=never: direct I/O');

  const data = new Uint8Array(300_000);
  for (let i = 0; i < data.length; i++) data[i] = (i * 7 + (i >> 9)) & 0xff;
  const chunks = [data.subarray(0, 4096), data.subarray(4096, 200_000), data.subarray(200_000)];
  const write = struct(P.WRITE_IN.SIZE, (v) => {
    v.setBigUint64(P.WRITE_IN.fh, BigInt(fh), true);
    v.setBigUint64(P.WRITE_IN.offset, 100n, true);
    v.setUint32(P.WRITE_IN.size, data.length, true);
  });
  const w = rig.request(P.FUSE_WRITE, e.nodeId, write, { payload: chunks });
  assert.is(w.error, 0);
  assert.is(w.body.length, P.WRITE_OUT.SIZE);
  assert.is(w.view.getUint32(P.WRITE_OUT.size, true), data.length);
  const onDisk = fs.readFileSync(path.join(dir, 'data.bin'));
  assert.is(onDisk.length, 100 + data.length);
  assert.ok(Buffer.from(data).equals(onDisk.subarray(100)), 'the file holds the guest payload');

  // READ into a 16-byte header buffer followed by three data buffers.
  const r = rig.request(P.FUSE_READ, e.nodeId, readIn(fh, 100n, data.length), { reply: [16, 5000, 100_000, 200_000] });
  assert.is(r.error, 0);
  assert.is(r.usedLen, 16 + data.length);
  assert.ok(Buffer.from(r.body).equals(Buffer.from(data)), 'guest buffers hold the file data');
  // A short read at EOF.
  const tail = rig.request(P.FUSE_READ, e.nodeId, readIn(fh, BigInt(100 + data.length - 10), 4096), { reply: [8192] });
  assert.is(tail.usedLen, 16 + 10);
  assert.is(rig.request(P.FUSE_READ, e.nodeId, readIn(fh + 100, 0n, 10)).error, -E.EBADF);
  const rel = struct(P.RELEASE_IN.SIZE, (v) => v.setBigUint64(P.RELEASE_IN.fh, BigInt(fh), true));
  assert.is(rig.request(P.FUSE_RELEASE, e.nodeId, rel).error, 0);
  assert.is(pfs.handles.size, 0);
});

test('a max_write WRITE and READ as Linux sends them: one page per descriptor, through an indirect table', async () => {
  await setup();
  const ini = init();
  const maxWrite = ini.view.getUint32(P.INIT_OUT.maxWrite, true);
  const create = struct(P.CREATE_IN.SIZE, (v) => {
    v.setUint32(P.CREATE_IN.flags, C.O_CREAT | C.O_RDWR, true);
    v.setUint32(P.CREATE_IN.mode, C.S_IFREG | 0o644, true);
  }, cstr('big'));
  const c = rig.request(P.FUSE_CREATE, 1, create);
  const node = entryOut(c.view).nodeId;
  const fh = Number(c.view.getBigUint64(P.ENTRY_OUT_SIZE, true));
  const data = new Uint8Array(maxWrite);
  for (let i = 0; i < data.length; i++) data[i] = (i * 31 + 7) & 0xff;
  const pages: Uint8Array[] = [];
  for (let o = 0; o < data.length; o += 4096) pages.push(data.subarray(o, o + 4096));
  const write = struct(P.WRITE_IN.SIZE, (v) => {
    v.setBigUint64(P.WRITE_IN.fh, BigInt(fh), true);
    v.setUint32(P.WRITE_IN.size, data.length, true);
  });
  const w = rig.request(P.FUSE_WRITE, node, write, { payload: pages, reply: [16, 8], indirect: true });
  assert.is(w.error, 0);
  assert.is(w.view.getUint32(0, true), data.length);
  assert.ok(Buffer.from(data).equals(fs.readFileSync(path.join(dir, 'big'))));
  const r = rig.request(P.FUSE_READ, node, readIn(fh, 0n, data.length), { reply: [16, ...pages.map(() => 4096)], indirect: true });
  assert.is(r.usedLen, 16 + data.length);
  assert.ok(Buffer.from(r.body).equals(Buffer.from(data)));
});

test('WRITE whose size exceeds the payload sent is refused', async () => {
  await setup();
  init();
  const write = struct(P.WRITE_IN.SIZE, (v) => v.setUint32(P.WRITE_IN.size, 1000, true));
  const w = rig.request(P.FUSE_WRITE, 1, write, { payload: [new Uint8Array(10)] });
  assert.is(w.error, -E.EINVAL);
});

test('OPENDIR + READDIRPLUS lists entries with node ids (none for . and ..)', async () => {
  await setup({ cache: 'always' });
  init();
  fs.mkdirSync(path.join(dir, 'sub'));
  fs.symlinkSync('/etc', path.join(dir, 'link'));
  const od = rig.request(P.FUSE_OPENDIR, 1, new Uint8Array(8));
  assert.is(od.error, 0);
  const fh = Number(od.view.getBigUint64(0, true));
  assert.is(od.view.getUint32(8, true), P.FOPEN_CACHE_DIR | P.FOPEN_KEEP_CACHE, 'cache=always: listings cached');
  const r = rig.request(P.FUSE_READDIRPLUS, 1, readIn(fh, 0n, 4096), { reply: [16 + 4096] });
  assert.is(r.error, 0);
  const es = parseDirentPlus(r.body);
  assert.equal(es.map((x) => x.name).sort(), ['.', '..', 'hello', 'link', 'sub']);
  for (const x of es) {
    if (x.name === '.' || x.name === '..') assert.is(x.nodeId, 0);
    else {
      assert.ok(x.nodeId > 1);
      assert.is(pfs.inodes.get(x.nodeId)!.lookups, 1);
    }
  }
  const hello = es.find((x) => x.name === 'hello')!;
  assert.is(hello.ino, fs.statSync(path.join(dir, 'hello'), { bigint: true }).ino);
  // Continuing from the last cookie: end of directory.
  const more = rig.request(P.FUSE_READDIRPLUS, 1, readIn(fh, es[es.length - 1].off, 4096), { reply: [16 + 4096] });
  assert.is(more.error, 0);
  assert.is(more.body.length, 0);
  // Plain READDIR from the start.
  const plain = rig.request(P.FUSE_READDIR, 1, readIn(fh, 0n, 4096), { reply: [16 + 4096] });
  assert.is(plain.error, 0);
  assert.ok(plain.body.length >= 5 * 24);
  assert.is(rig.request(P.FUSE_RELEASEDIR, 1, struct(P.RELEASE_IN.SIZE, (v) => v.setBigUint64(0, BigInt(fh), true))).error, 0);
});

test('MKDIR, SYMLINK, READLINK, LINK, RENAME2, UNLINK, RMDIR, MKNOD fifo, STATFS through the server', async () => {
  await setup();
  init();
  const mk = rig.request(P.FUSE_MKDIR, 1, struct(P.MKDIR_IN.SIZE, (v) => v.setUint32(0, 0o755, true), cstr('d')));
  assert.is(mk.error, 0);
  const d = entryOut(mk.view);
  assert.is(d.mode & C.S_IFMT, C.S_IFDIR);
  const sl = rig.request(P.FUSE_SYMLINK, d.nodeId, cstr('l', '/etc/passwd'));
  assert.is(sl.error, 0);
  const l = entryOut(sl.view);
  const rl = rig.request(P.FUSE_READLINK, l.nodeId, new Uint8Array(0));
  assert.is(new TextDecoder().decode(rl.body), '/etc/passwd');
  const hello = entryOut(rig.request(P.FUSE_LOOKUP, 1, cstr('hello')).view);
  const ln = rig.request(P.FUSE_LINK, d.nodeId, struct(8, (v) => v.setBigUint64(0, BigInt(hello.nodeId), true), cstr('h2')));
  assert.is(ln.error, 0);
  assert.is(entryOut(ln.view).nodeId, hello.nodeId);
  const rn = (flags: number, from: string, to: string): number => rig.request(P.FUSE_RENAME2, 1, struct(16, (v) => {
    v.setBigUint64(0, BigInt(d.nodeId), true);
    v.setUint32(8, flags, true);
  }, cstr(from, to))).error;
  assert.is(rn(P.RENAME_NOREPLACE, 'hello', 'h2'), -E.EEXIST);
  assert.is(rn(0, 'hello', 'h3'), 0);
  assert.ok(fs.existsSync(path.join(dir, 'd', 'h3')));
  const old = rig.request(P.FUSE_RENAME, d.nodeId, struct(8, (v) => v.setBigUint64(0, 1n, true), cstr('h3', 'back')));
  assert.is(old.error, 0);
  assert.ok(fs.existsSync(path.join(dir, 'back')));
  const fifo = rig.request(P.FUSE_MKNOD, 1, struct(P.MKNOD_IN.SIZE, (v) => v.setUint32(0, C.S_IFIFO | 0o600, true), cstr('p')));
  assert.is(fifo.error, 0);
  assert.ok(fs.lstatSync(path.join(dir, 'p')).isFIFO());
  assert.is(rig.request(P.FUSE_RMDIR, 1, cstr('d')).error, -E.ENOTEMPTY);
  assert.is(rig.request(P.FUSE_UNLINK, d.nodeId, cstr('l')).error, 0);
  assert.is(rig.request(P.FUSE_UNLINK, d.nodeId, cstr('h2')).error, 0);
  assert.is(rig.request(P.FUSE_RMDIR, 1, cstr('d')).error, 0);
  const st = rig.request(P.FUSE_STATFS, 1, new Uint8Array(0));
  assert.is(st.error, 0);
  assert.is(st.body.length, P.STATFS_OUT.SIZE);
  assert.ok(st.view.getUint32(P.STATFS_OUT.bsize, true) > 0);
  assert.ok(st.view.getUint32(P.STATFS_OUT.namelen, true) >= 255);
});

test('endSession (frontend gone) forgets the guest\'s nodes and requires a new INIT', async () => {
  await setup();
  init();
  const fds = countOpenFds();
  const e = entryOut(rig.request(P.FUSE_LOOKUP, 1, cstr('hello')).view);
  assert.ok(pfs.inodes.get(e.nodeId));
  rig.server.endSession();
  assert.is(pfs.inodes.get(e.nodeId), undefined);
  assert.is(countOpenFds(), fds);
  assert.is(rig.request(P.FUSE_GETATTR, 1, new Uint8Array(16)).error, -E.EIO);
  assert.is(init().error, 0);
  assert.is(rig.request(P.FUSE_GETATTR, 1, new Uint8Array(16)).error, 0);
});

test('hostile arguments: bad nanoseconds, a directory handle used for READ, unknown nodes and handles', async () => {
  await setup();
  init();
  const node = entryOut(rig.request(P.FUSE_LOOKUP, 1, cstr('hello')).view).nodeId;
  const badTime = struct(P.SETATTR_IN.SIZE, (v) => {
    v.setUint32(P.SETATTR_IN.valid, P.FATTR_MTIME, true);
    v.setUint32(P.SETATTR_IN.mtimensec, 1_000_000_000, true);
  });
  assert.is(rig.request(P.FUSE_SETATTR, node, badTime).error, -E.EINVAL);
  const od = rig.request(P.FUSE_OPENDIR, 1, new Uint8Array(8));
  const dirFh = Number(od.view.getBigUint64(0, true));
  assert.is(rig.request(P.FUSE_READ, 1, readIn(dirFh, 0n, 100)).error, -E.EBADF, 'a directory handle is not a file');
  assert.is(rig.request(P.FUSE_READDIR, node, readIn(dirFh, 0n, 4096)).error, -E.EBADF, 'not this node\'s handle');
  assert.is(rig.request(P.FUSE_GETATTR, 987654, new Uint8Array(16)).error, -E.ENOENT);
  assert.is(rig.request(P.FUSE_FORGET, 987654, struct(8, (v) => v.setBigUint64(0, 1n, true))).usedLen, 0);
  assert.is(rig.request(P.FUSE_MKDIR, node, struct(8, () => {}, cstr('x'))).error, -E.ENOTDIR);
  assert.is(rig.request(P.FUSE_GETATTR, 1, new Uint8Array(16)).error, 0, 'still serving');
});

test('unknown and unimplemented opcodes are answered ENOSYS (IOCTL: ENOTTY); xattrs are ENOSYS unless enabled', async () => {
  await setup();
  init();
  for (const opcode of [999, 4095, 4097, 70000]) { // inside the opcode table's range (unused), and past it
    assert.is(rig.request(opcode, 1, new Uint8Array(8)).error, -E.ENOSYS, String(opcode));
  }
  assert.is(rig.request(P.FUSE_GETXATTR, 1, struct(8, () => {}, cstr('user.x'))).error, -E.ENOSYS);
  assert.is(rig.request(P.FUSE_LISTXATTR, 1, new Uint8Array(8)).error, -E.ENOSYS);
  for (const opcode of [P.FUSE_GETLK, P.FUSE_SETLK, P.FUSE_SETLKW, P.FUSE_POLL, P.FUSE_BMAP, P.FUSE_SETUPMAPPING,
    P.FUSE_REMOVEMAPPING, P.CUSE_INIT]) {
    assert.is(rig.request(opcode, 1, new Uint8Array(64)).error, -E.ENOSYS, P.OPCODE_NAMES[opcode]);
  }
  assert.is(rig.request(P.FUSE_IOCTL, 1, new Uint8Array(32)).error, -E.ENOTTY);
});

test('a FileSystem without methods: ENOSYS per operation, no READDIRPLUS negotiated; a throw becomes EIO', async () => {
  dir = '';
  const thrower: FileSystem = {
    getattr: () => {
      throw new Error('bug');
    },
  };
  rig = await FuseGuest.create(thrower, { cache: 'auto' });
  const r = init();
  assert.is(r.error, 0);
  const flags = r.view.getUint32(P.INIT_OUT.flags, true);
  assert.is(flags & P.FUSE_DO_READDIRPLUS, 0);
  assert.is(flags & P.FUSE_ATOMIC_O_TRUNC, 0);
  assert.is(rig.request(P.FUSE_LOOKUP, 1, cstr('x')).error, -E.ENOSYS);
  assert.is(rig.request(P.FUSE_GETATTR, 1, new Uint8Array(16)).error, -E.EIO);
  assert.is(rig.request(P.FUSE_FORGET, 1, new Uint8Array(8)).usedLen, 0, 'no reply even when unimplemented');
  // The server keeps serving after a throw.
  assert.is(rig.request(P.FUSE_DESTROY, 1, new Uint8Array(0)).error, 0);
  assert.is(rig.request(P.FUSE_LOOKUP, 1, cstr('x')).error, -E.EIO, 'after DESTROY: EIO until INIT');
});

test('a reply that does not fit the guest buffer becomes an EIO header', async () => {
  await setup();
  init();
  const fds = countOpenFds();
  const nodes = pfs.inodes.size;
  const r = rig.request(P.FUSE_LOOKUP, 1, cstr('hello'), { reply: [64] });
  assert.is(r.error, -E.EIO);
  assert.is(pfs.inodes.size, nodes, 'the lookup the guest never saw is taken back');
  const create = struct(P.CREATE_IN.SIZE, (v) => {
    v.setUint32(P.CREATE_IN.flags, C.O_CREAT | C.O_RDWR, true);
    v.setUint32(P.CREATE_IN.mode, C.S_IFREG | 0o644, true);
  }, cstr('c'));
  assert.is(rig.request(P.FUSE_CREATE, 1, create, { reply: [16 + 128] }).error, -E.EIO);
  assert.is(pfs.handles.size, 0, 'the handle the guest never saw is released');
  assert.is(pfs.inodes.size, nodes);
  const od = rig.request(P.FUSE_OPENDIR, 1, new Uint8Array(8));
  const fh = Number(od.view.getBigUint64(0, true));
  const rdp = rig.request(P.FUSE_READDIRPLUS, 1, readIn(fh, 0n, 4096), { reply: [16, 100] });
  assert.is(rdp.error, -E.EIO);
  assert.is(pfs.inodes.size, nodes, 'READDIRPLUS entries the guest never saw are forgotten');
  rig.request(P.FUSE_RELEASEDIR, 1, struct(P.RELEASE_IN.SIZE, (v) => v.setBigUint64(0, BigInt(fh), true)));
  pfs.waitForCloses();
  assert.is(countOpenFds(), fds);
});

test.run();

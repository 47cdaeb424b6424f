/**
 * FuseClient (host/frontend/fuse-client.ts): the same FUSE scenario against our daemon and against the C
 * virtiofsd (/usr/lib/qemu/virtiofsd), each on its own socket and temp shared dir. What the host directory shows
 * is checked with node:fs, so a client that "agrees with itself" cannot pass.
 */
import { suite, test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FuseClient, FuseError } from '../host/frontend/fuse-client.js';
import { VirtiofsDaemon } from '../host/daemon.js';
import { FUSE_ROOT_ID } from '../host/fuse/protocol.js';
import { native } from '../host/native-loader.js';
import { setLogLevel } from '../host/log.js';
import { missingBinary, missingRoot, skipIf } from './util/prereq.js';
import { sleep, until } from './util/wait.js';

setLogLevel((process.env.LOG_LEVEL as 'error') ?? 'error');

const C_VIRTIOFSD = '/usr/lib/qemu/virtiofsd';
const ENOENT = 2;
const S_IFMT = 0o170000, S_IFDIR = 0o040000, S_IFREG = 0o100000;
const c = native.constants;

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'fuse-client-test-'));
// Also when a suite fails early: no temp dir is left behind.
process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));


/** uvu has no async rejects: returns the rejection (fails the test if p resolves). */
async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    return e as Error;
  }
  assert.unreachable('expected a rejection');
  throw new Error('unreachable');
}

interface Backend {
  socket: string;
  dir: string;
  stop(): Promise<void>;
}

async function startOurs(name: string): Promise<Backend> {
  const dir = fs.mkdtempSync(path.join(tmp, `${name}-share-`));
  const socket = path.join(tmp, `${name}.sock`);
  const d = await VirtiofsDaemon.start({ socketPath: socket, sharedDir: dir, cache: 'never', numRequestQueues: 2,
    logLevel: 'error' });
  return { socket, dir, stop: () => d.close() };
}

async function startC(name: string): Promise<Backend> {
  const dir = fs.mkdtempSync(path.join(tmp, `${name}-share-`));
  const socket = path.join(tmp, `${name}.sock`);
  let err = '';
  const child: ChildProcess = spawn(C_VIRTIOFSD, [`--socket-path=${socket}`, '-o', `source=${dir}`, '-o', 'cache=none',
    '-o', 'sandbox=chroot', '-o', 'readdirplus'], { stdio: ['ignore', 'ignore', 'pipe'] });
  child.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
  const ok = await until(() => fs.existsSync(socket) || child.exitCode !== null, 5000);
  if (!ok || child.exitCode !== null) {
    child.kill('SIGKILL');
    throw new Error(`virtiofsd did not start: ${err}`);
  }
  return {
    socket, dir,
    // virtiofsd exits once its frontend disconnected; make sure of it.
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        if (!(await until(() => child.exitCode !== null, 1000))) child.kill('SIGTERM');
        await Promise.race([exited, sleep(2000)]);
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      }
    },
  };
}

function scenario(label: string, start: (name: string) => Promise<Backend>, queues: number): void {
  const t = suite<{ be?: Backend; fc?: FuseClient; init?: Awaited<ReturnType<FuseClient['init']>> }>(label, {});
  let n = 0;

  // Every test gets its own backend, share and initialized client: none depends on another having run. (Setup
  // runs in before.each, whose exceptions uvu reports as the test's failure; a plain before hook's it drops.)
  t.before.each(async (ctx) => {
    ctx.be = await start(`${label.replace(/\W+/g, '-')}-${n++}`);
    ctx.fc = await FuseClient.connect(ctx.be.socket, { queues, depth: 64, timeoutMs: 5000 });
    ctx.init = await ctx.fc.init();
  });

  t.after.each(async (ctx) => {
    ctx.fc?.close();
    await ctx.be?.stop();
    ctx.fc = ctx.be = ctx.init = undefined;
  });

  t('init negotiates protocol 7.x and a max_write', async ({ fc, init }) => {
    const r = init!;
    assert.is(r.major, 7);
    assert.ok(r.minor >= 27, `minor ${r.minor}`);
    assert.ok(r.maxWrite >= 4096, `max_write ${r.maxWrite}`);
    assert.ok(fc!.maxPayload <= Math.max(r.maxWrite, 4096));
  });

  t('getattr of the root is a directory', async ({ fc }) => {
    const a = await fc!.getattr(FUSE_ROOT_ID);
    assert.is(a.attr.mode & S_IFMT, S_IFDIR);
  });

  t('create, write, read back, getattr size; the host file has the bytes', async ({ fc, be }) => {
    const cr = await fc!.create(FUSE_ROOT_ID, 'data.bin', c.O_RDWR | c.O_CREAT, 0o644);
    assert.is(cr.entry.attr.mode & S_IFMT, S_IFREG);
    assert.ok(cr.entry.nodeid > 0);
    const payload = new Uint8Array(10000);
    for (let i = 0; i < payload.length; i++) payload[i] = (i * 7 + 3) & 0xff;
    assert.is(await fc!.write(cr.entry.nodeid, cr.fh, 0, payload), payload.length);
    assert.is(await fc!.write(cr.entry.nodeid, cr.fh, 20000, payload.subarray(0, 100)), 100);
    const back = await fc!.read(cr.entry.nodeid, cr.fh, 0, 10000);
    assert.equal(back, payload);
    const dst = new Uint8Array(50);
    assert.is(await fc!.readInto(cr.entry.nodeid, cr.fh, 9990, 50, dst), 50, 'short read only at EOF: 10 + hole');
    assert.equal(dst.subarray(0, 10), payload.subarray(9990));
    assert.is(dst[10], 0, 'hole reads as zeroes');
    const eof = await fc!.read(cr.entry.nodeid, cr.fh, 20100, 4096);
    assert.is(eof.length, 0, 'read at EOF is empty');
    const a = await fc!.getattr(cr.entry.nodeid);
    assert.is(a.attr.size, 20100);
    await fc!.fsync(cr.entry.nodeid, cr.fh);
    await fc!.flush(cr.entry.nodeid, cr.fh);
    await fc!.release(cr.entry.nodeid, cr.fh);
    const host = fs.readFileSync(path.join(be!.dir, 'data.bin'));
    assert.is(host.length, 20100);
    assert.equal(new Uint8Array(host.subarray(0, 10000)), payload);
    // setattr truncates; the host sees it.
    const s = await fc!.setattr(cr.entry.nodeid, { size: 4096, mode: 0o600 });
    assert.is(s.attr.size, 4096);
    assert.is(s.attr.mode & 0o7777, 0o600);
    assert.is(fs.statSync(path.join(be!.dir, 'data.bin')).size, 4096);
    // open again read-only, read, release
    const o = await fc!.open(cr.entry.nodeid, c.O_RDONLY);
    assert.equal(await fc!.read(cr.entry.nodeid, o.fh, 0, 16), payload.subarray(0, 16));
    await fc!.release(cr.entry.nodeid, o.fh);
    await fc!.forget(cr.entry.nodeid, 1);
  });

  t('mkdir, readdirplus lists the entries with their attributes', async ({ fc, be }) => {
    const d = await fc!.mkdir(FUSE_ROOT_ID, 'dir', 0o755);
    assert.is(d.attr.mode & S_IFMT, S_IFDIR);
    assert.ok(fs.statSync(path.join(be!.dir, 'dir')).isDirectory());
    const names = ['a', 'bb', 'ccc', 'é-utf8', 'x'.repeat(200)];
    for (const n of names) {
      const cr = await fc!.create(d.nodeid, n, c.O_WRONLY | c.O_CREAT, 0o644);
      await fc!.write(cr.entry.nodeid, cr.fh, 0, new TextEncoder().encode(n));
      await fc!.release(cr.entry.nodeid, cr.fh);
      await fc!.forget(cr.entry.nodeid, 1);
    }
    const od = await fc!.opendir(d.nodeid);
    const seen = new Map<string, number>();
    const forgets: { nodeid: number; nlookup: number }[] = [];
    let off = 0n;
    for (let round = 0; round < 100; round++) {
      const ents = await fc!.readdirplus(d.nodeid, od.fh, off, 512); // small buffer: several rounds
      if (ents.length === 0) break;
      for (const e of ents) {
        seen.set(e.name, e.entry.attr.size);
        if (e.name !== '.' && e.name !== '..' && e.entry.nodeid !== 0) forgets.push({ nodeid: e.entry.nodeid, nlookup: 1 });
        off = e.off;
      }
    }
    await fc!.releasedir(d.nodeid, od.fh);
    for (const n of names) assert.is(seen.get(n), new TextEncoder().encode(n).length, `entry ${n}`);
    assert.is([...seen.keys()].filter((n) => n !== '.' && n !== '..').length, names.length);
    await fc!.batchForget(forgets);
    // plain readdir agrees
    const od2 = await fc!.opendir(d.nodeid);
    const plain = await fc!.readdir(d.nodeid, od2.fh, 0, 64 * 1024);
    await fc!.releasedir(d.nodeid, od2.fh);
    assert.equal(plain.map((e) => e.name).filter((n) => n !== '.' && n !== '..').sort(), [...names].sort());
  });

  t('rename moves the entry; the old name is gone', async ({ fc, be }) => {
    fs.mkdirSync(path.join(be!.dir, 'dir'));
    fs.writeFileSync(path.join(be!.dir, 'dir', 'a'), 'a');
    const dir = await fc!.lookup(FUSE_ROOT_ID, 'dir');
    const a = await fc!.lookup(dir.nodeid, 'a');
    await fc!.rename(dir.nodeid, 'a', FUSE_ROOT_ID, 'a-moved');
    await fc!.forget(a.nodeid, 1);
    assert.ok(fs.existsSync(path.join(be!.dir, 'a-moved')));
    assert.not.ok(fs.existsSync(path.join(be!.dir, 'dir', 'a')));
    const e = await rejection(fc!.lookup(dir.nodeid, 'a'));
    assert.instance(e, FuseError);
    assert.is((e as FuseError).errno, ENOENT);
    const moved = await fc!.lookup(FUSE_ROOT_ID, 'a-moved');
    assert.is(moved.attr.size, 1);
    await fc!.forget(moved.nodeid, 1);
    await fc!.forget(dir.nodeid, 1);
  });

  // Like the kernel, look an entry up before unlinking it (the C virtiofsd answers EIO for an unknown one).
  t('unlink, then lookup fails with ENOENT; rmdir of a non-empty dir fails', async ({ fc, be }) => {
    fs.writeFileSync(path.join(be!.dir, 'a-moved'), 'a');
    fs.mkdirSync(path.join(be!.dir, 'dir'));
    for (const name of ['bb', 'ccc']) fs.writeFileSync(path.join(be!.dir, 'dir', name), name);
    const victim = await fc!.lookup(FUSE_ROOT_ID, 'a-moved');
    await fc!.unlink(FUSE_ROOT_ID, 'a-moved');
    await fc!.forget(victim.nodeid, 1);
    assert.not.ok(fs.existsSync(path.join(be!.dir, 'a-moved')));
    const e = await rejection(fc!.lookup(FUSE_ROOT_ID, 'a-moved'));
    assert.instance(e, FuseError);
    assert.is((e as FuseError).errno, ENOENT);
    assert.is((e as FuseError).code, 'ERR_FUSE');
    assert.match(e.message, /LOOKUP: ENOENT/);
    const dir = await fc!.lookup(FUSE_ROOT_ID, 'dir');
    const e2 = await rejection(fc!.rmdir(FUSE_ROOT_ID, 'dir'));
    assert.is((e2 as FuseError).errno, c.errno.ENOTEMPTY);
    for (const n of fs.readdirSync(path.join(be!.dir, 'dir'))) {
      const e = await fc!.lookup(dir.nodeid, n);
      await fc!.unlink(dir.nodeid, n);
      await fc!.forget(e.nodeid, 1);
    }
    await fc!.rmdir(FUSE_ROOT_ID, 'dir');
    await fc!.forget(dir.nodeid, 1);
    assert.not.ok(fs.existsSync(path.join(be!.dir, 'dir')));
  });

  t('statfs reports the host filesystem', async ({ fc, be }) => {
    const s = await fc!.statfs();
    const h = fs.statfsSync(be!.dir);
    assert.ok(s.bsize > 0);
    assert.is(s.blocks, h.blocks);
    assert.ok(s.namelen >= 255);
  });

  t('64 requests in flight at once on one queue, then 300 through 64 slots', async ({ fc, be }) => {
    fs.writeFileSync(path.join(be!.dir, 'many.txt'), 'x'.repeat(123));
    const before = fc!.inFlight;
    const ps: Promise<{ attr: { size: number }; nodeid: number }>[] = [];
    for (let i = 0; i < 64; i++) ps.push(fc!.lookup(FUSE_ROOT_ID, 'many.txt', 0));
    assert.is(fc!.inFlight - before, 64, 'all 64 submitted before any completes');
    const rs = await Promise.all(ps);
    assert.ok(rs.every((r) => r.attr.size === 123 && r.nodeid === rs[0]!.nodeid));
    await fc!.forget(rs[0]!.nodeid, 64);
    // More than the slots: the rest wait for free ones; mixed opcodes, completions matched by id.
    const mixed: Promise<unknown>[] = [];
    for (let i = 0; i < 300; i++) {
      mixed.push(i % 3 === 0 ? fc!.getattr(FUSE_ROOT_ID)
        : i % 3 === 1 ? fc!.statfs() : fc!.lookup(FUSE_ROOT_ID, 'nope').catch((e: FuseError) => e.errno));
    }
    const out = await Promise.all(mixed);
    for (let i = 0; i < 300; i++) {
      if (i % 3 === 0) assert.is(((out[i] as { attr: { mode: number } }).attr.mode & S_IFMT), S_IFDIR);
      else if (i % 3 === 1) assert.ok((out[i] as { bsize: number }).bsize > 0);
      else assert.is(out[i], ENOENT);
    }
    assert.is(fc!.inFlight, 0);
  });

  if (queues > 1) {
    t('requests on an explicit second queue and round-robin across queues', async ({ fc }) => {
      const a = await fc!.getattr(FUSE_ROOT_ID, undefined, 1);
      assert.is(a.attr.mode & S_IFMT, S_IFDIR);
      const ps = [];
      for (let i = 0; i < 128; i++) ps.push(fc!.getattr(FUSE_ROOT_ID));
      assert.is((await Promise.all(ps)).length, 128);
    });
  }

  t('a wrong queue index is a RangeError', async ({ fc }) => {
    let threw = false;
    try {
      await fc!.getattr(FUSE_ROOT_ID, undefined, queues);
    } catch (e) {
      threw = e instanceof RangeError;
    }
    assert.ok(threw);
  });

  t.run();
}

scenario('ours', startOurs, 2);

// The C virtiofsd needs root (it drops supplementary groups and chroots into the share).
const cMissing = [missingBinary(C_VIRTIOFSD), missingRoot()].filter((r) => r !== undefined);
if (cMissing.length === 0) {
  scenario('C virtiofsd', startC, 1);
} else {
  test('the scenario against the C virtiofsd', () => {
    skipIf(...cMissing);
  });
}

test('close rejects what is in flight and disconnects', async () => {
  const be = await startOurs('close');
  const fc = await FuseClient.connect(be.socket, { depth: 4 });
  await fc.init();
  const ps = [];
  for (let i = 0; i < 10; i++) ps.push(fc.getattr(FUSE_ROOT_ID).then(() => 'ok', (e: FuseError) => e.code));
  fc.close();
  const codes = await Promise.all(ps);
  assert.ok(codes.every((x) => x === 'ERR_FUSE_CLOSED'), codes.join());
  await be.stop();
});

test.after(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

test.run();

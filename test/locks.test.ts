/**
 * Locks through the FUSE server: FUSE_POSIX_LOCKS (--posix-lock) and FUSE_FLOCK_LOCKS (--flock) are offered only
 * when asked for; POSIX locks are per guest lock owner (OFD locks), flock locks per guest open file; both are real
 * host locks that host processes see. A conflicting SETLKW never blocks the daemon: on a transport that can park
 * a request (a virtqueue, /dev/fuse) it waits parked until the lock is free or the guest interrupts it; where
 * nothing can park it (the bare rig) it answers EOPNOTSUPP.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { setLogLevel } from '../host/log.js';
import { native } from '../host/native-loader.js';
import { PassthroughFs } from '../host/passthrough/passthrough-fs.js';
import type { FuseServerOptions } from '../host/fuse/server.js';
import { parseCommandLine } from '../host/cli.js';
import * as P from '../host/fuse/protocol.js';
import { C, E, KERNEL_FLAGS, Rig, cstr, entryOut, initIn, lkIn, struct } from './fuse-rig.js';
import { QueueProcessor } from '../host/virtio/queue-processor.js';
import { spawn } from 'node:child_process';
import { devFuseUsable, mountDaemon } from './util/dev-fuse-mount.js';
import { VIRTQ_DESC_F_WRITE } from '../host/frontend/virtqueue-driver.js';

setLogLevel('off');

let dir = '';
let pfs: PassthroughFs | undefined;
let rig: Rig;
const hostFds: number[] = [];

async function setup(options: Partial<FuseServerOptions>): Promise<number> {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vfs-locks-'));
  fs.writeFileSync(path.join(dir, 'f'), 'data');
  pfs = new PassthroughFs({ root: dir });
  rig = await Rig.create(pfs, { cache: 'auto', ...options });
  const init = rig.request(P.FUSE_INIT, 0, initIn(37, KERNEL_FLAGS));
  assert.is(init.error, 0);
  return init.view.getUint32(P.INIT_OUT.flags, true);
}

test.after.each(() => {
  for (const fd of hostFds.splice(0)) fs.closeSync(fd);
  pfs?.close();
  pfs = undefined;
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
  dir = '';
});

function lookupF(): number {
  const r = rig.request(P.FUSE_LOOKUP, 1, cstr('f'));
  assert.is(r.error, 0);
  return entryOut(r.view).nodeId;
}

function open(node: number): number {
  const r = rig.request(P.FUSE_OPEN, node, struct(P.OPEN_IN.SIZE, (v) => v.setUint32(P.OPEN_IN.flags, C.O_RDWR, true)));
  assert.is(r.error, 0);
  return Number(r.view.getBigUint64(P.OPEN_OUT.fh, true));
}

function lk(opcode: number, node: number, fh: number, owner: bigint, type: number, flock: boolean,
            start = 0n, end = P.OFFSET_MAX) {
  return rig.request(opcode, node, lkOf(fh, owner, type, flock, start, end));
}

/** fuse_lk_in of a POSIX lock, or of a flock (FUSE_LK_FLOCK). */
const lkOf = (fh: number, owner: bigint, type: number, flock: boolean, start = 0n, end = P.OFFSET_MAX): Uint8Array =>
  lkIn(fh, owner, type, start, end, flock ? P.FUSE_LK_FLOCK : 0);

/** A host process's view: a non-blocking flock on its own open file. 0 or -EWOULDBLOCK. */
function hostFlock(): number {
  const fd = fs.openSync(path.join(dir, 'f'), 'r');
  hostFds.push(fd);
  return native.flock(fd, C.LOCK_EX | C.LOCK_NB);
}

/** A host OFD write lock attempt on bytes [start, start+len). 0 or -EAGAIN. */
function hostOfdLock(start: bigint, len: bigint): number {
  const fd = fs.openSync(path.join(dir, 'f'), 'r+');
  hostFds.push(fd);
  return native.fcntlLock(fd, C.F_OFD_SETLK, BigInt64Array.from([BigInt(C.F_WRLCK), BigInt(C.SEEK_SET), start, len, 0n]));
}

test('not asked for: neither lock flag is offered, and lock requests answer ENOSYS', async () => {
  const flags = await setup({});
  assert.is(flags & (P.FUSE_POSIX_LOCKS | P.FUSE_FLOCK_LOCKS), 0);
  const node = lookupF();
  const fh = open(node);
  assert.is(lk(P.FUSE_SETLK, node, fh, 1n, C.F_WRLCK, true).error, -E.ENOSYS);
  assert.is(lk(P.FUSE_SETLK, node, fh, 1n, C.F_WRLCK, false).error, -E.ENOSYS);
});

test('flock: offered with flockLocks; one lock per guest open file, seen by the host, dropped on RELEASE', async () => {
  const flags = await setup({ flockLocks: true });
  assert.ok((flags & P.FUSE_FLOCK_LOCKS) !== 0);
  assert.is(flags & P.FUSE_POSIX_LOCKS, 0, 'POSIX locks only when asked for');
  const node = lookupF();
  const fh1 = open(node);
  const fh2 = open(node);
  assert.is(lk(P.FUSE_SETLK, node, fh1, 11n, C.F_WRLCK, true).error, 0);
  assert.is(lk(P.FUSE_SETLK, node, fh1, 11n, C.F_WRLCK, true).error, 0, 're-locking one\'s own file is fine');
  assert.is(lk(P.FUSE_SETLK, node, fh2, 12n, C.F_WRLCK, true).error, -E.EAGAIN, 'another open file conflicts');
  assert.is(lk(P.FUSE_SETLK, node, fh2, 12n, C.F_RDLCK, true).error, -E.EAGAIN);
  assert.is(lk(P.FUSE_SETLKW, node, fh2, 12n, C.F_WRLCK, true).error, -E.EOPNOTSUPP, 'a blocking wait is refused');
  assert.is(hostFlock(), -E.EWOULDBLOCK, 'a host process sees the guest\'s lock');
  assert.is(lk(P.FUSE_GETLK, node, fh1, 11n, C.F_WRLCK, true).error, -E.EINVAL);

  // Downgrade to shared: another guest file may share it, the host still cannot take it exclusively.
  assert.is(lk(P.FUSE_SETLK, node, fh1, 11n, C.F_RDLCK, true).error, 0);
  assert.is(lk(P.FUSE_SETLK, node, fh2, 12n, C.F_RDLCK, true).error, 0);
  assert.is(hostFlock(), -E.EWOULDBLOCK);
  assert.is(lk(P.FUSE_SETLK, node, fh1, 11n, C.F_UNLCK, true).error, 0);
  // RELEASE of the other file drops its lock: the host gets the file.
  const rel = rig.request(P.FUSE_RELEASE, node, struct(P.RELEASE_IN.SIZE, (v) => {
    v.setBigUint64(P.RELEASE_IN.fh, BigInt(fh2), true);
    v.setUint32(P.RELEASE_IN.releaseFlags, P.FUSE_RELEASE_FLOCK_UNLOCK, true);
    v.setBigUint64(P.RELEASE_IN.lockOwner, 12n, true);
  }));
  assert.is(rel.error, 0);
  assert.is(hostFlock(), 0);
  assert.is(lk(P.FUSE_SETLK, node, fh1, 11n, C.F_RDLCK, true).error, -E.EAGAIN, 'now the host holds it');
});

test('POSIX locks: per owner, byte ranges, GETLK reports the conflict, FLUSH releases, SETLKW never blocks', async () => {
  const flags = await setup({ posixLocks: true });
  assert.ok((flags & P.FUSE_POSIX_LOCKS) !== 0);
  assert.is(flags & P.FUSE_FLOCK_LOCKS, 0);
  const node = lookupF();
  const fh = open(node);
  // Two owners (two guest processes) through the same open file.
  assert.is(lk(P.FUSE_SETLK, node, fh, 1n, C.F_WRLCK, false, 0n, 99n).error, 0);
  assert.is(lk(P.FUSE_SETLK, node, fh, 2n, C.F_WRLCK, false, 100n, 199n).error, 0, 'disjoint ranges');
  assert.is(lk(P.FUSE_SETLK, node, fh, 2n, C.F_RDLCK, false, 50n, 50n).error, -E.EAGAIN);
  const before = Date.now();
  assert.is(lk(P.FUSE_SETLKW, node, fh, 2n, C.F_WRLCK, false, 50n, 60n).error, -E.EOPNOTSUPP);
  assert.ok(Date.now() - before < 1000, 'answered at once');
  const g = lk(P.FUSE_GETLK, node, fh, 2n, C.F_WRLCK, false, 10n, 20n);
  assert.is(g.error, 0);
  assert.is(g.view.getUint32(P.LK_OUT.type, true), C.F_WRLCK);
  assert.is(g.view.getBigUint64(P.LK_OUT.start, true), 0n);
  assert.is(g.view.getBigUint64(P.LK_OUT.end, true), 99n);
  assert.is(hostOfdLock(0n, 10n), -E.EAGAIN, 'a host process sees the guest\'s lock');
  assert.is(hostOfdLock(300n, 10n), 0, 'but not outside it');
  // FLUSH by owner 1 (its close) releases its locks.
  const fl = rig.request(P.FUSE_FLUSH, node, struct(P.FLUSH_IN.SIZE, (v) => {
    v.setBigUint64(P.FLUSH_IN.fh, BigInt(fh), true);
    v.setBigUint64(P.FLUSH_IN.lockOwner, 1n, true);
  }));
  assert.is(fl.error, 0);
  assert.is(lk(P.FUSE_SETLK, node, fh, 2n, C.F_WRLCK, false, 0n, 99n).error, 0);
  const free = lk(P.FUSE_GETLK, node, fh, 1n, C.F_WRLCK, false, 250n, 260n);
  assert.is(free.view.getUint32(P.LK_OUT.type, true), C.F_UNLCK);
});

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

for (const flock of [false, true]) {
  const kind = flock ? 'flock' : 'POSIX lock';
  test(`${kind} SETLKW on a virtqueue waits: parked while held, answered when free; INTERRUPT -> EINTR; reset forgets`,
    async () => {
      await setup(flock ? { flockLocks: true } : { posixLocks: true });
      const proc = new QueueProcessor(rig.core, rig.server, 0); // offers parking for queue 0
      const node = lookupF();
      const fh1 = open(node);
      const fh2 = open(node);
      const fh3 = open(node);
      assert.is(lk(P.FUSE_SETLK, node, fh1, 1n, C.F_WRLCK, flock).error, 0);

      const w = rig.submit(P.FUSE_SETLKW, node, lkOf(fh2, 2n, C.F_WRLCK, flock));
      assert.is(rig.driver.pollUsed().length, 0, 'no answer while the lock is held');
      assert.is(rig.server.parkedCount, 1);
      await sleep(40);
      assert.is(rig.driver.pollUsed().length, 0, 'still waiting');
      assert.is(lk(P.FUSE_SETLK, node, fh1, 1n, C.F_UNLCK, flock).error, 0, 'other requests are served meanwhile');
      await sleep(120);
      const used = rig.driver.pollUsed();
      assert.is(used.length, 1, 'answered once the lock was free');
      assert.is(used[0].id, w.head);
      assert.is(used[0].len, 16);
      assert.equal(rig.outHeader(w.reply), { len: 16, error: 0, unique: w.unique });
      assert.is(flock ? hostFlock() : hostOfdLock(0n, 10n), flock ? -E.EWOULDBLOCK : -E.EAGAIN, 'the waiter holds it');

      const x = rig.submit(P.FUSE_SETLKW, node, lkOf(fh3, 3n, C.F_WRLCK, flock));
      assert.is(rig.server.parkedCount, 1);
      const intr = rig.request(P.FUSE_INTERRUPT, 0, struct(P.INTERRUPT_IN.SIZE,
        (v) => v.setBigUint64(P.INTERRUPT_IN.unique, x.unique, true)));
      assert.is(intr.usedLen, 0, 'INTERRUPT itself has no answer');
      await sleep(30);
      const u2 = rig.driver.pollUsed();
      assert.is(u2.length, 1);
      assert.is(u2[0].id, x.head);
      assert.is(rig.outHeader(x.reply).error, -E.EINTR);
      assert.is(rig.server.parkedCount, 0);

      rig.submit(P.FUSE_SETLKW, node, lkOf(fh3, 3n, C.F_WRLCK, flock));
      assert.is(rig.server.parkedCount, 1);
      proc.reset(); // the queue was reset: its ring is gone
      assert.is(rig.server.parkedCount, 0);
      assert.is(lk(P.FUSE_SETLK, node, fh2, 2n, C.F_UNLCK, flock).error, 0);
      await sleep(80);
      assert.is(rig.driver.pollUsed().length, 0, 'nothing is written for a forgotten request');
    });
}

test('a parked request whose descriptors the guest rewrote gets its chain back unused, nothing written', async () => {
  await setup({ posixLocks: true });
  new QueueProcessor(rig.core, rig.server, 0);
  const node = lookupF();
  const fh = open(node);
  assert.is(lk(P.FUSE_SETLK, node, fh, 1n, C.F_WRLCK, false).error, 0);
  const w = rig.submit(P.FUSE_SETLKW, node, lkOf(fh, 2n, C.F_WRLCK, false));
  assert.is(rig.server.parkedCount, 1);
  // The head now claims a writable buffer far outside guest memory.
  rig.driver.writeDesc(w.head, { addr: 0x7fff_0000_0000n, len: 4096, flags: VIRTQ_DESC_F_WRITE, next: 0 });
  assert.is(lk(P.FUSE_SETLK, node, fh, 1n, C.F_UNLCK, false).error, 0);
  await sleep(80);
  const used = rig.driver.pollUsed();
  assert.is(used.length, 1);
  assert.is(used[0].id, w.head);
  assert.is(used[0].len, 0);
  assert.ok(rig.bytes(w.reply.gpa, 16).every((b) => b === 0xee), 'the old reply buffer was not touched');
});

/** Runs `cmd args` to completion: exit code and seconds taken. */
function run(cmd: string, args: string[]): Promise<{ code: number | null; secs: number }> {
  const t0 = Date.now();
  return new Promise((resolve) => {
    const c = spawn(cmd, args, { stdio: 'ignore' });
    c.on('exit', (code) => resolve({ code, secs: (Date.now() - t0) / 1000 }));
  });
}

const PY_LOCKF = 'import fcntl, sys, time\nf = open(sys.argv[1], "r+")\nfcntl.lockf(f, fcntl.LOCK_EX)\ntime.sleep(float(sys.argv[2]))\n';
const python = ['/usr/bin/python3', '/usr/local/bin/python3'].find((p) => fs.existsSync(p)) ?? 'python3';

test('host kernel over /dev/fuse: blocking flock and fcntl locks wait for the holder; flock -w times out', async () => {
  if (!devFuseUsable) return;
  const share = fs.mkdtempSync(path.join(os.tmpdir(), 'vfs-locks-share-'));
  const mp = fs.mkdtempSync(path.join(os.tmpdir(), 'vfs-locks-mnt-'));
  fs.writeFileSync(path.join(share, 'f'), 'data');
  const d = await mountDaemon(share, mp, ['--posix-lock', '--flock']);
  try {
    const f = path.join(mp, 'f');
    // flock(1): the holder keeps the lock 1 s; the waiter blocks in the guest... here the host kernel's FUSE client.
    const holder = run('flock', ['-x', f, 'sleep', '1']);
    await sleep(250);
    const waiter = run('flock', ['-x', f, 'true']);
    const timedOut = await run('flock', ['-x', '-w', '0.2', f, 'true']);
    assert.is(timedOut.code, 1, 'flock -w gives up (SIGALRM -> FUSE_INTERRUPT -> EINTR)');
    const st = Date.now();
    fs.statSync(f);
    assert.ok(Date.now() - st < 500, 'the daemon serves other requests while a lock waits');
    const [h, w] = await Promise.all([holder, waiter]);
    assert.is(h.code, 0);
    assert.is(w.code, 0, 'the waiter got the lock');
    assert.ok(w.secs > 0.5, `the waiter waited for the holder (${w.secs} s)`);

    // fcntl (POSIX) locks through lockf(3).
    const ph = run(python, ['-c', PY_LOCKF, f, '1']);
    await sleep(400);
    const pw = await run(python, ['-c', PY_LOCKF, f, '0']);
    const phr = await ph;
    assert.is(phr.code, 0);
    assert.is(pw.code, 0);
    assert.ok(pw.secs > 0.4, `the fcntl waiter waited (${pw.secs} s)`);
  } finally {
    assert.is(await d.stop(), 0, d.stderr());
    fs.rmSync(share, { recursive: true, force: true });
    fs.rmSync(mp, { recursive: true, force: true });
  }
});

test('CLI: --posix-lock and --flock (off by default)', () => {
  const base = ['--socket-path=/tmp/vfs-cli-test.sock', '--shared-dir=/tmp'];
  const d = parseCommandLine([...base, '--posix-lock', '--flock']);
  const none = parseCommandLine(base);
  if (typeof d !== 'object' || typeof none !== 'object') throw new Error('options');
  assert.equal([d.posixLock, d.flock, none.posixLock, none.flock], [true, true, false, false]);
});

test.run();

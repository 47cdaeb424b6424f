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
import { C, E, KERNEL_FLAGS, FuseGuest, cstr, entryOut, initIn, lkIn, struct } from './util/fuse-guest.js';
import { QueueProcessor } from '../host/virtio/queue-processor.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { mountDaemon } from './util/dev-fuse-mount.js';
import { VIRTQ_DESC_F_WRITE } from '../host/frontend/virtqueue-driver.js';
import { missingBinary, requireDevFuse, skipIf } from './util/prereq.js';
import { waitFor, within } from './util/wait.js';

setLogLevel('off');

let dir = '';
let pfs: PassthroughFs | undefined;
let rig: FuseGuest;
const hostFds: number[] = [];
/** setlk/flock calls that reached the filesystem, by file handle: a parked SETLKW's retries are counted here. */
const lockCalls = new Map<number, number>();
const callsOn = (fh: number): number => lockCalls.get(fh) ?? 0;

/** `fs` with its setlk and flock counted in lockCalls (the waits below are for retries, not for durations). */
function countingLockCalls(fs: PassthroughFs): PassthroughFs {
  return new Proxy(fs, {
    get(target, key) {
      const v = Reflect.get(target, key, target);
      if (typeof v !== 'function') return v;
      if (key === 'setlk' || key === 'flock') {
        return (...a: unknown[]) => {
          lockCalls.set(a[2] as number, callsOn(a[2] as number) + 1); // (ctx, nodeId, fh, ...)
          return v.apply(target, a);
        };
      }
      return v.bind(target);
    },
  });
}

/** Waits for `n` used elements of the rig's queue (outer limit 10 s). */
async function usedElements(n: number): Promise<Array<{ id: number; len: number }>> {
  const used: Array<{ id: number; len: number }> = [];
  await waitFor(() => { used.push(...rig.driver.pollUsed()); return used.length >= n; }, `${n} used element(s)`);
  return used;
}

/** Waits until the parked request on `fh` has been retried `n` more times (each retry found the lock held). */
async function retries(fh: number, n: number): Promise<void> {
  const target = callsOn(fh) + n;
  await waitFor(() => callsOn(fh) >= target, `${n} retries of the parked request on fh ${fh}`);
}

async function setup(options: Partial<FuseServerOptions>): Promise<number> {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vfs-locks-'));
  fs.writeFileSync(path.join(dir, 'f'), 'data');
  pfs = new PassthroughFs({ root: dir });
  lockCalls.clear();
  rig = await FuseGuest.create(countingLockCalls(pfs), { cache: 'auto', ...options });
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
  // request() takes the answer synchronously: nothing waited.
  assert.is(lk(P.FUSE_SETLKW, node, fh, 2n, C.F_WRLCK, false, 50n, 60n).error, -E.EOPNOTSUPP);
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
      await retries(fh2, 2);
      assert.is(rig.driver.pollUsed().length, 0, 'still waiting after two retries');
      assert.is(lk(P.FUSE_SETLK, node, fh1, 1n, C.F_UNLCK, flock).error, 0, 'other requests are served meanwhile');
      const used = await usedElements(1);
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
      const u2 = await usedElements(1);
      assert.is(u2.length, 1);
      assert.is(u2[0].id, x.head);
      assert.is(rig.outHeader(x.reply).error, -E.EINTR);
      assert.is(rig.server.parkedCount, 0);

      rig.submit(P.FUSE_SETLKW, node, lkOf(fh3, 3n, C.F_WRLCK, flock));
      assert.is(rig.server.parkedCount, 1);
      proc.reset(); // the queue was reset: its ring is gone
      assert.is(rig.server.parkedCount, 0);
      const forgottenCalls = callsOn(fh3);
      assert.is(lk(P.FUSE_SETLK, node, fh2, 2n, C.F_UNLCK, flock).error, 0);
      // A forgotten request is not retried: a live parked request on another file gets retried past the longest
      // backoff step (1, 2, 4 ... 50 ms: eight retries), the forgotten one not once, and it never takes the lock.
      assert.is(lk(P.FUSE_SETLK, node, fh1, 1n, C.F_WRLCK, flock).error, 0, 'the lock is free: nobody took it');
      const y = rig.submit(P.FUSE_SETLKW, node, lkOf(fh2, 2n, C.F_WRLCK, flock));
      await retries(fh2, 8);
      assert.is(callsOn(fh3), forgottenCalls, 'the forgotten request was not retried');
      assert.is(rig.driver.pollUsed().length, 0, 'nothing is written for a forgotten request');
      assert.is(lk(P.FUSE_SETLK, node, fh1, 1n, C.F_UNLCK, flock).error, 0);
      const u3 = await usedElements(1);
      assert.equal(u3.map((u) => u.id), [y.head], 'only the live waiter is answered');
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
  const used = await usedElements(1);
  assert.is(used.length, 1);
  assert.is(used[0].id, w.head);
  assert.is(used[0].len, 0);
  assert.ok(rig.bytes(w.reply.gpa, 16).every((b) => b === 0xee), 'the old reply buffer was not touched');
});

/** A child process and its exit code. */
function run(cmd: string, args: string[]): { child: ChildProcess; exit: Promise<number | null> } {
  const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'ignore'] });
  return { child, exit: new Promise((resolve) => child.on('exit', (code) => resolve(code))) };
}

/** The system call `pid` is blocked in (x86-64 numbers from /proc/<pid>/syscall), -1 when running or gone. */
function blockedIn(pid: number): number {
  try {
    const f = fs.readFileSync(`/proc/${pid}/syscall`, 'utf8').split(' ');
    return f[0] === 'running' ? -1 : Number(f[0]);
  } catch {
    return -1;
  }
}
const SYS_FCNTL = 72;
const SYS_FLOCK = 73;

/** Resolves when `child` has written `text` to stdout. */
function printed(child: ChildProcess, text: string): Promise<void> {
  return new Promise((resolve) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => { out += d; if (out.includes(text)) resolve(); });
  });
}

// The holder takes the lock, says so, and keeps it until its stdin closes.
const HOLD = 'echo held; cat >/dev/null';
const PY_LOCKF = 'import fcntl, sys\nf = open(sys.argv[1], "r+")\nfcntl.lockf(f, fcntl.LOCK_EX)\nprint("held", flush=True)\nsys.stdin.read()\n';
const python = ['/usr/bin/python3', '/usr/local/bin/python3'].find((p) => fs.existsSync(p)) ?? 'python3';

test('host kernel over /dev/fuse: blocking flock and fcntl locks wait for the holder; flock -w times out', async () => {
  if (!requireDevFuse()) return;
  if (skipIf(missingBinary('/usr/bin/flock'), missingBinary(python))) return;
  const share = fs.mkdtempSync(path.join(os.tmpdir(), 'vfs-locks-share-'));
  const mp = fs.mkdtempSync(path.join(os.tmpdir(), 'vfs-locks-mnt-'));
  fs.writeFileSync(path.join(share, 'f'), 'data');
  const d = await mountDaemon(share, mp, ['--posix-lock', '--flock']);
  const spawned: ChildProcess[] = [];
  try {
    const f = path.join(mp, 'f');
    // flock(1): the holder keeps the lock until told; the waiter blocks in flock(2) in the host kernel's FUSE client.
    const holder = run('flock', ['-x', f, 'sh', '-c', HOLD]);
    spawned.push(holder.child);
    await within(printed(holder.child, 'held'), 10000, 'the flock holder');
    const timedOut = await within(run('flock', ['-x', '-w', '0.2', f, 'true']).exit, 10000, 'flock -w');
    assert.is(timedOut, 1, 'flock -w gives up (SIGALRM -> FUSE_INTERRUPT -> EINTR)');
    const waiter = run('flock', ['-x', f, 'true']);
    spawned.push(waiter.child);
    await waitFor(() => blockedIn(waiter.child.pid!) === SYS_FLOCK, 'the waiter blocked in flock(2)');
    await within(fs.promises.stat(f), 10000, 'a stat while a lock waits (the daemon serves other requests)');
    assert.is(waiter.child.exitCode, null, 'the waiter still waits while the holder holds the lock');
    assert.is(blockedIn(waiter.child.pid!), SYS_FLOCK);
    holder.child.stdin!.end();
    assert.is(await within(holder.exit, 10000, 'the holder'), 0);
    assert.is(await within(waiter.exit, 10000, 'the waiter'), 0, 'the waiter got the lock once it was free');

    // fcntl (POSIX) locks through lockf(3).
    const ph = run(python, ['-c', PY_LOCKF, f]);
    spawned.push(ph.child);
    await within(printed(ph.child, 'held'), 10000, 'the lockf holder');
    const pw = run(python, ['-c', PY_LOCKF, f]);
    spawned.push(pw.child);
    await waitFor(() => blockedIn(pw.child.pid!) === SYS_FCNTL, 'the lockf waiter blocked in fcntl(2)');
    assert.is(pw.child.exitCode, null, 'the lockf waiter waits');
    ph.child.stdin!.end();
    assert.is(await within(ph.exit, 10000, 'the lockf holder'), 0);
    await within(printed(pw.child, 'held'), 10000, 'the lockf waiter to get the lock');
    pw.child.stdin!.end();
    assert.is(await within(pw.exit, 10000, 'the lockf waiter'), 0);
  } finally {
    for (const c of spawned) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
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

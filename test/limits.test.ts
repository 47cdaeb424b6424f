/**
 * The guest is hostile: limits. Each case sends what a misbehaving guest driver could send through a real
 * vhost-user connection (FuseClient / VhostUserFrontend) and checks the reply and that the daemon keeps serving.
 *
 * - names over NAME_MAX (255 bytes): ENAMETOOLONG for LOOKUP, CREATE, MKDIR, and the target of RENAME;
 * - a WRITE whose size is over the negotiated max_write: an error reply (not an abort), nothing written;
 * - descriptor chains longer than the queue (a loop, a chain of num+1 distinct descriptors): the chain is returned
 *   with used length 0, the next request is served;
 * - a guest that never sends FORGET: every LOOKUP pins an O_PATH fd, so the inode table is bounded by
 *   RLIMIT_NOFILE; past it LOOKUP answers EMFILE/ENFILE, the daemon keeps serving, and FORGET frees room again.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FuseClient, FuseError } from '../host/frontend/fuse-client.js';
import { GuestMemory, VhostUserFrontend } from '../host/frontend/vhost-user-frontend.js';
import { VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE, type VirtqueueDriver } from '../host/frontend/virtqueue-driver.js';
import { VirtiofsDaemon } from '../host/daemon.js';
import { FUSE_ROOT_ID } from '../host/fuse/protocol.js';
import { native } from '../host/native-loader.js';
import { setLogLevel } from '../host/log.js';
import { type SocketDaemon, errnoOf, spawnSocketDaemon } from './util/socket-daemon.js';
import { waitFor } from './util/wait.js';
import { putFuseRequest } from './util/fuse-request.js';

setLogLevel('off');

const E = native.constants.errno;
const c = native.constants;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'limits-test-'));
let seq = 0;


async function inProcess(opts: { numRequestQueues?: number } = {}): Promise<{ dir: string; socket: string; d: VirtiofsDaemon }> {
  const n = seq++;
  const dir = fs.mkdtempSync(path.join(tmp, `share${n}-`));
  const socket = path.join(tmp, `d${n}.sock`);
  const d = await VirtiofsDaemon.start({ socketPath: socket, sharedDir: dir, cache: 'never', logLevel: 'off', ...opts });
  return { dir, socket, d };
}

test('names over NAME_MAX answer ENAMETOOLONG; 255 bytes work', async () => {
  const { dir, socket, d } = await inProcess();
  const fc = await FuseClient.connect(socket);
  try {
    await fc.init();
    const long = 'x'.repeat(256);
    const max = 'y'.repeat(255);
    assert.is(await errnoOf(fc.lookup(FUSE_ROOT_ID, long)), E.ENAMETOOLONG, 'LOOKUP 256');
    assert.is(await errnoOf(fc.create(FUSE_ROOT_ID, long, c.O_RDWR, 0o644)), E.ENAMETOOLONG, 'CREATE 256');
    assert.is(await errnoOf(fc.mkdir(FUSE_ROOT_ID, long, 0o755)), E.ENAMETOOLONG, 'MKDIR 256');
    // Multi-byte: 128 two-byte characters = 256 bytes.
    assert.is(await errnoOf(fc.lookup(FUSE_ROOT_ID, '\u00e9'.repeat(128))), E.ENAMETOOLONG, 'LOOKUP 256 UTF-8 bytes');
    const cr = await fc.create(FUSE_ROOT_ID, max, c.O_RDWR, 0o644);
    await fc.release(cr.entry.nodeid, cr.fh);
    assert.ok(fs.existsSync(path.join(dir, max)), '255-byte name created on the host');
    assert.is(await errnoOf(fc.rename(FUSE_ROOT_ID, max, FUSE_ROOT_ID, long)), E.ENAMETOOLONG, 'RENAME to 256');
    assert.ok(fs.existsSync(path.join(dir, max)), 'the file stayed');
    assert.equal(fs.readdirSync(dir), [max], 'nothing else appeared on the host');
    // Still serving.
    assert.is((await fc.getattr(FUSE_ROOT_ID)).attr.mode & 0o170000, 0o040000);
  } finally {
    fc.close();
    await d.close();
  }
});

/**
 * A WRITE over max_write (the kernel never sends one): crafted by lifting the client's own check. Returns the
 * errno (0 = accepted) for each size, after checking the daemon serves on and the host file is consistent.
 */
async function oversizedWrites(): Promise<{ maxWrite: number; results: Array<{ size: number; errno: number; written: number }> }> {
  const { dir, socket, d } = await inProcess();
  // Slots sized for 2 MiB + 64 KiB, so the crafted request really carries all its bytes.
  const big = (2 << 20) + 65536;
  const fc = await FuseClient.connect(socket, { maxPayload: big, depth: 4 });
  try {
    const maxWrite = (await fc.init()).maxWrite;
    assert.ok(maxWrite > 0 && maxWrite <= 1 << 20, `max_write ${maxWrite}`);
    const cr = await fc.create(FUSE_ROOT_ID, 'f', c.O_RDWR, 0o644);
    fc.maxPayload = big; // init() lowered it to max_write: lift the client-side check, as a hostile driver would
    const results = [];
    for (const size of [maxWrite + 4096, 2 * maxWrite, big]) {
      fs.truncateSync(path.join(dir, 'f'), 0);
      let errno = 0;
      let n = 0;
      try {
        n = await fc.write(cr.entry.nodeid, cr.fh, 0, size);
      } catch (e) {
        if (!(e instanceof FuseError)) throw e;
        errno = e.errno;
      }
      const written = fs.statSync(path.join(dir, 'f')).size;
      if (errno === 0) assert.is(written, n, 'an accepted write wrote what it reported');
      results.push({ size, errno, written });
    }
    // The daemon serves on: a write of exactly max_write works.
    fs.truncateSync(path.join(dir, 'f'), 0);
    assert.is(await fc.write(cr.entry.nodeid, cr.fh, 0, new Uint8Array(maxWrite).fill(7)), maxWrite);
    assert.is(fs.statSync(path.join(dir, 'f')).size, maxWrite);
    await fc.release(cr.entry.nodeid, cr.fh);
    assert.is(fc.inFlight, 0);
    return { maxWrite, results };
  } finally {
    fc.close();
    await d.close();
  }
}

test('a WRITE larger than the negotiated max_write neither aborts nor stalls the daemon', async () => {
  const { maxWrite, results } = await oversizedWrites();
  console.log(`  max_write ${maxWrite}: ${results.map((r) => `${r.size} B -> ${r.errno ? `errno ${r.errno}` : `wrote ${r.written}`}`).join(', ')}`);
});

test('a WRITE larger than the negotiated max_write answers EINVAL and writes nothing', async () => {
  const { results } = await oversizedWrites();
  for (const r of results) {
    assert.is(r.errno, E.EINVAL, `WRITE of ${r.size} bytes`);
    assert.is(r.written, 0, `WRITE of ${r.size} bytes wrote nothing`);
  }
});

// ---- raw descriptor chains ------------------------------------------------------------------------------------

const FUSE_GETATTR = 3;
const FUSE_INIT = 26;
const RING_GPA = 0x100000n;
const REQ_GPA = 0x200000n;
const OUT_GPA = 0x210000n;


async function collect(fe: VhostUserFrontend, drv: VirtqueueDriver, expect: number): Promise<Array<{ id: number; len: number }>> {
  drv.publish();
  fe.kick(1);
  const used: Array<{ id: number; len: number }> = [];
  const t0 = Date.now();
  while (used.length < expect) {
    await fe.waitCall(1, Math.max(1, 3000 - (Date.now() - t0)));
    used.push(...drv.pollUsed());
    drv.setUsedEvent(drv.lastUsed);
  }
  return used;
}

test('chains longer than the queue (a loop; num+1 descriptors through indices) cost one request each', async () => {
  const { socket, d } = await inProcess();
  const mem = GuestMemory.create(4 << 20);
  const fe = await VhostUserFrontend.connect(socket);
  try {
    await fe.negotiate();
    await fe.setMemTable([mem.region]);
    const num = 16;
    const drv = await fe.setupDriverVring(1, mem, { num, ringGpa: RING_GPA });
    const init = new Uint8Array(64);
    new DataView(init.buffer).setUint32(0, 7, true);
    new DataView(init.buffer).setUint32(4, 36, true);
    let len = putFuseRequest(mem, REQ_GPA, FUSE_INIT, 1n, 1n, init);
    drv.add([{ gpa: REQ_GPA, len }], [{ gpa: OUT_GPA, len: 4096 }]);
    assert.is((await collect(fe, drv, 1)).length, 1);

    // 1) a loop: descriptor 0 -> 1 -> 0 ... (readable), written by hand.
    len = putFuseRequest(mem, REQ_GPA, FUSE_GETATTR, 2n, 1n, new Uint8Array(16));
    drv.writeDesc(0, { addr: REQ_GPA, len: 8, flags: VIRTQ_DESC_F_NEXT, next: 1 });
    drv.writeDesc(1, { addr: REQ_GPA + 8n, len: 8, flags: VIRTQ_DESC_F_NEXT, next: 0 });
    drv.pushAvail(0);
    const loop = await collect(fe, drv, 1);
    assert.equal(loop, [{ id: 0, len: 0 }], 'a looping chain comes back with used length 0');
    // 2) every descriptor of the table in one chain, the last pointing back to the first: more hops than num.
    for (let i = 0; i < num; i++) {
      drv.writeDesc((i + 2) % num, { addr: REQ_GPA, len: 4, flags: VIRTQ_DESC_F_NEXT, next: (i + 3) % num });
    }
    drv.pushAvail(2);
    const long = await collect(fe, drv, 1);
    assert.equal(long, [{ id: 2, len: 0 }], 'a chain longer than the queue comes back with used length 0');
    assert.is(fe.isClosed, false, 'the connection survives');
    // 3) a good request afterwards is served.
    len = putFuseRequest(mem, REQ_GPA, FUSE_GETATTR, 3n, 1n, new Uint8Array(16));
    drv.writeDesc(5, { addr: REQ_GPA, len, flags: VIRTQ_DESC_F_NEXT, next: 6 });
    drv.writeDesc(6, { addr: OUT_GPA, len: 4096, flags: VIRTQ_DESC_F_WRITE, next: 0 });
    drv.pushAvail(5);
    const ok = await collect(fe, drv, 1);
    assert.is(ok[0]!.id, 5);
    const v = mem.view();
    const o = mem.gpaToOffset(OUT_GPA);
    assert.is(v.getInt32(o + 4, true), 0, 'GETATTR succeeds');
    assert.is(v.getBigUint64(o + 8, true), 3n);
    assert.ok(ok[0]!.len > 16);
  } finally {
    fe.close();
    mem.close();
    await d.close();
  }
});

// ---- a guest that never forgets -------------------------------------------------------------------------------

function fdCount(pid: number): number {
  return fs.readdirSync(`/proc/${pid}/fd`).length;
}

async function startChild(args: string[]): Promise<SocketDaemon> {
  const n = seq++;
  return spawnSocketDaemon(fs.mkdtempSync(path.join(tmp, `share${n}-`)), path.join(tmp, `c${n}.sock`),
    { args: ['--cache=never', '--log-level=error', '--sandbox=none', ...args] });
}

test('never FORGET: the inode table is bounded by RLIMIT_NOFILE; EMFILE replies, then the daemon serves on', async () => {
  const LIMIT = 160;
  const { child, socket, dir, stderr } = await startChild([`--rlimit-nofile=${LIMIT}`]);
  const FILES = 300;
  for (let i = 0; i < FILES; i++) fs.writeFileSync(path.join(dir, `f${i}`), '');
  const fc = await FuseClient.connect(socket, { depth: 8 });
  try {
    await fc.init();
    // fds the runtime opened before the limit was lowered may sit above it.
    const above = fs.readdirSync(`/proc/${child.pid}/fd`).filter((f) => Number(f) >= LIMIT).length;
    const found: number[] = [];
    const errors = new Map<number, number>();
    for (let i = 0; i < FILES; i++) {
      try {
        found.push((await fc.lookup(FUSE_ROOT_ID, `f${i}`)).nodeid);
      } catch (e) {
        if (!(e instanceof FuseError)) throw e;
        errors.set(e.errno, (errors.get(e.errno) ?? 0) + 1);
      }
    }
    const fds = fdCount(child.pid!);
    console.log(`  rlimit ${LIMIT}: ${found.length} lookups pinned, errors ${JSON.stringify(Object.fromEntries(errors))}, daemon fds ${fds}`);
    assert.ok(found.length > 50 && found.length < LIMIT, `pinned ${found.length}`);
    assert.ok(fds <= LIMIT + above, `fds ${fds} within the limit (+${above} opened before it was set)`);
    const keys = [...errors.keys()];
    assert.ok(keys.length > 0 && keys.every((k) => k === E.EMFILE || k === E.ENFILE), `only EMFILE/ENFILE: ${keys}`);
    // The daemon keeps serving requests that need no new fd.
    assert.is((await fc.getattr(FUSE_ROOT_ID)).attr.mode & 0o170000, 0o040000);
    assert.is((await fc.getattr(found[0]!)).attr.size, 0);
    // FORGET gives the fds back; lookups work again.
    await fc.batchForget(found.slice(0, 40).map((nodeid) => ({ nodeid, nlookup: 1 })));
    // BATCH_FORGET has no answer (and travels on the high-priority queue): wait for its effect.
    await waitFor(() => fdCount(child.pid!) <= fds - 30, 'the forgotten inodes to close their fds');
    const again = await fc.lookup(FUSE_ROOT_ID, `f${FILES - 1}`);
    assert.ok(again.nodeid > 0);
    assert.is(child.exitCode, null, 'still running');
  } catch (e) {
    console.error(stderr());
    throw e;
  } finally {
    fc.close();
    child.kill('SIGKILL');
  }
});

test.after(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

test.run();

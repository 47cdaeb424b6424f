/**
 * vhost-user control plane and queue processing: our frontend library against our listener + backend, and
 * against the C virtiofsd when it is installed.
 *
 * Part 1 uses a scripted core (`ScriptedCore`): it records what the backend asks of the core and answers
 * queuePop from a script, so the control plane and QueueProcessor are tested without the Wasm core.
 * Part 2 (when build/core.wasm and host/core.ts exist) runs real requests through the real core.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { native } from '../host/native-loader.js';
import { fdsOpenedSince, memfdsNamed, openFds } from './util/fds.js';
import { VhostUserListener } from '../host/vhost-user/listener.js';
import type { BackendCore, GuestRegion, VhostUserBackend } from '../host/vhost-user/backend.js';
import type { RequestServer } from '../host/virtio/queue-processor.js';
import { GuestMemory, VhostUserFrontend } from '../host/frontend/vhost-user-frontend.js';
import {
  FS_DEVICE_FEATURES, VHOST_USER_NEED_REPLY_MASK, VHOST_USER_VERSION, VhostUserProtocolFeature as PF,
  VhostUserRequest as R, bit, decodeU64,
} from '../host/vhost-user/protocol.js';
import { VhostUserError } from '../host/errors.js';
import type { VirtqueueDriver } from '../host/frontend/virtqueue-driver.js';
import { setLogLevel } from '../host/log.js';
import { Core } from '../host/core.js';
import { FuseServer } from '../host/fuse/server.js';
import { PassthroughFs } from '../host/passthrough/passthrough-fs.js';
import { missingBinary, missingRoot, skipIf } from './util/prereq.js';
import { sleep, until, waitFor } from './util/wait.js';
import { signalChild } from './util/runtime.js';
import { retryWhileRefused } from './util/socket-daemon.js';
import { putFuseRequest } from './util/fuse-request.js';

setLogLevel((process.env.LOG_LEVEL as 'error') ?? 'error');

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vu-test-'));
let sockCounter = 0;
const sockPath = (): string => path.join(tmp, `s${sockCounter++}.sock`);
const EIO = 5;

/** A core stand-in: records control-plane calls, answers queuePop from a per-queue script. */
class ScriptedCore implements BackendCore {
  regions: GuestRegion[] = [];
  mapCalls = 0;
  unmapCalls = 0;
  bases = new Map<number, number>();
  nums = new Map<number, number>();
  features = new Map<number, [boolean, boolean]>();
  pops = new Map<number, number[]>();
  replies: number[] = [];
  notify = true;
  pending = false;

  mapGuestRegions(r: GuestRegion[]): void {
    this.mapCalls++;
    this.regions = [];
    for (const x of r) { // each fd must be valid
      const d = native.dup(x.fd);
      if (d < 0) throw new Error('bad fd');
      native.close(d);
    }
    this.regions = r.map((x) => ({ ...x }));
  }
  unmapGuestRegions(): void { this.unmapCalls++; this.regions = []; }
  queueReset(q: number): void { this.bases.set(q, 0); this.nums.delete(q); }
  queueSetNum(q: number, n: number): number {
    if (n < 1 || n > 32768 || (n & (n - 1)) !== 0) return -22;
    this.nums.set(q, n);
    return 0;
  }
  queueSetAddr(): number { return this.regions.length > 0 ? 0 : -14; }
  queueSetBase(q: number, b: number): void { this.bases.set(q, b); }
  queueGetBase(q: number): number { return this.bases.get(q) ?? 0; }
  queueSetFeatures(q: number, e: boolean, i: boolean): void { this.features.set(q, [e, i]); }
  queuePop(q: number): number {
    const r = this.pops.get(q)?.shift() ?? 0;
    if (r === 1) { this.pending = true; this.bases.set(q, (this.queueGetBase(q) + 1) & 0xffff); }
    if (r === -1 || r === -2) this.bases.set(q, (this.queueGetBase(q) + 1) & 0xffff);
    return r;
  }
  queueNeedsNotify(): boolean { return this.notify; }
  replySend(error: number, _bodyLen = 0, _payloadLen = 0): number {
    if (!this.pending) return -22; // like the core: no current request
    this.pending = false;
    this.replies.push(error);
    return 0;
  }
}

/** Answers every request with -ENOSYS through the core; can be told to throw. */
class StubServer implements RequestServer {
  served = 0;
  throwNext = false;
  constructor(private readonly core: ScriptedCore) {}
  serveCurrent(): void {
    this.served++;
    if (this.throwNext) { this.throwNext = false; throw new Error('bug in server'); }
    this.core.replySend(-38, 0, 0);
  }
}

interface ScriptedListener { listener: VhostUserListener; core: ScriptedCore; server: StubServer; path: string }

function rig(opts: { exitOnDisconnect?: boolean; numRequestQueues?: number } = {}): ScriptedListener {
  const core = new ScriptedCore();
  const server = new StubServer(core);
  const p = sockPath();
  const listener = new VhostUserListener({ socketPath: p, core, server, ...opts });
  listener.listen();
  return { listener, core, server, path: p };
}

/** uvu has no async rejects: resolves when p rejects (and matches), fails the test otherwise. */
async function rejects(p: Promise<unknown>, match?: RegExp | ((e: Error) => boolean)): Promise<void> {
  try {
    await p;
  } catch (e) {
    if (match instanceof RegExp) assert.match((e as Error).message, match);
    else if (match) assert.ok(match(e as Error), `unexpected error: ${(e as Error).message}`);
    return;
  }
  assert.unreachable('expected a rejection');
}


/** A frontend with features negotiated, guest memory shared and queue 1 (and 0) running. */
async function session(r: ScriptedListener, mem: GuestMemory): Promise<VhostUserFrontend> {
  const fe = await VhostUserFrontend.connect(r.path, { timeoutMs: 2000 });
  await fe.negotiate();
  await fe.setMemTable([mem.region]);
  for (const q of [0, 1]) {
    const base = q * 0x4000;
    await fe.setupVring(q, mem, { num: 64, desc: base, avail: base + 0x1000, used: base + 0x2000 });
  }
  return fe;
}

/** The scripted core pops `pops` from queue q at the next kick; resolves once the backend signalled q's call fd. */
async function kickAndWait(fe: VhostUserFrontend, r: ScriptedListener, q: number, pops: number[]): Promise<void> {
  r.core.pops.set(q, pops);
  fe.kick(q);
  await fe.waitCall(q);
}

/** Ends a scripted session: the frontend, its guest memory, then the listener. */
function closeAll(r: { listener: VhostUserListener }, fe: VhostUserFrontend, mem: GuestMemory): void {
  fe.close();
  mem.close();
  r.listener.close();
}

// ---- part 1: control plane with the scripted core ------------------------------------------------------------

test('negotiation: features, protocol features, queue count, owner', async () => {
  const r = rig({ numRequestQueues: 3 });
  const fe = await VhostUserFrontend.connect(r.path);
  const acked = await fe.negotiate();
  assert.is(fe.backendFeatures, FS_DEVICE_FEATURES);
  assert.is(acked, FS_DEVICE_FEATURES);
  assert.is(fe.protocolFeatures, bit(PF.MQ) | bit(PF.REPLY_ACK));
  assert.is(await fe.getQueueNum(), 4, 'hiprio + 3 request queues');
  const be = r.listener.backend!;
  assert.ok(be, 'session active');
  assert.is(be.negotiatedFeatures, FS_DEVICE_FEATURES);
  assert.is(be.negotiatedProtocolFeatures, bit(PF.MQ) | bit(PF.REPLY_ACK));
  fe.close();
  r.listener.close();
});

test('SET_FEATURES with a feature not offered is refused (REPLY_ACK error)', async () => {
  const r = rig();
  const fe = await VhostUserFrontend.connect(r.path);
  await fe.setProtocolFeatures(bit(PF.REPLY_ACK));
  await rejects(fe.setFeatures(FS_DEVICE_FEATURES | bit(33)), (e: Error) => (e as VhostUserError).code === 'VU_ERR_NACK');
  await fe.setFeatures(FS_DEVICE_FEATURES); // still usable
  fe.close();
  r.listener.close();
});

test('memory table reaches the core; old region fds are closed on replacement', async () => {
  const r = rig();
  // Region fds are counted by the memfd they point at, which the runtime's own fds cannot upset.
  const mem = GuestMemory.create(1 << 20, { name: 'replaced-region-test' });
  const mem2 = GuestMemory.create(1 << 20, {
    guestAddr: 0x100000n, userAddr: 0x7f1000000000n, name: 'replaced-region-test',
  });
  const regionFds = (): number => memfdsNamed('replaced-region-test') - 2;
  const fe = await VhostUserFrontend.connect(r.path);
  await fe.negotiate();
  await fe.setMemTable([mem.region]);
  assert.is(r.core.regions.length, 1);
  assert.is(r.core.regions[0]!.size, BigInt(mem.size));
  assert.is(r.core.regions[0]!.uva, mem.userAddr);
  assert.is(regionFds(), 1, 'backend holds one region fd');
  await fe.setMemTable([mem.region, mem2.region]);
  assert.is(r.core.regions.length, 2);
  assert.is(regionFds(), 2);
  await fe.setMemTable([mem2.region]);
  assert.is(regionFds(), 1, 'replaced region fds closed');
  fe.close();
  await until(() => r.listener.backend === null);
  assert.is(regionFds(), 0, 'all closed at disconnect');
  assert.ok(r.core.unmapCalls >= 1, 'guest memory unmapped at disconnect');
  mem.close();
  mem2.close();
  r.listener.close();
});

test('ADD_MEM_REG / REM_MEM_REG / GET_MAX_MEM_SLOTS with CONFIGURE_MEM_SLOTS', async () => {
  const r = rig();
  const mem = GuestMemory.create(1 << 20);
  const mem2 = GuestMemory.create(1 << 20, { guestAddr: 0x100000n, userAddr: 0x7f1000000000n });
  const fe = await VhostUserFrontend.connect(r.path);
  await fe.negotiate({ protocolFeatures: bit(PF.REPLY_ACK) | bit(PF.CONFIGURE_MEM_SLOTS) });
  assert.ok((await fe.getMaxMemSlots()) >= 8);
  await fe.addMemReg(mem.region);
  await fe.addMemReg(mem2.region);
  assert.is(r.core.regions.length, 2);
  await fe.remMemReg(mem.region);
  assert.is(r.core.regions.length, 1);
  assert.is(r.core.regions[0]!.gpa, 0x100000n);
  await rejects(fe.remMemReg(mem.region), /failed in the backend/);
  fe.close();
  mem.close();
  mem2.close();
  r.listener.close();
});

test('kick -> queue processing -> call; GET_VRING_BASE stops the ring', async () => {
  const r = rig();
  const mem = GuestMemory.create(1 << 20);
  const fe = await session(r, mem);
  assert.equal(r.core.features.get(1), [true, true], 'EVENT_IDX and INDIRECT from negotiated features');
  const be = r.listener.backend!;
  assert.equal(be.vringState(1), { started: true, enabled: true, halted: false });
  await kickAndWait(fe, r, 1, [1, 1, 1]);
  assert.is(r.server.served, 3);
  assert.equal(r.core.replies, [-38, -38, -38]);
  assert.is(await fe.getVringBase(1), 3);
  assert.is(be.vringState(1)!.started, false, 'stopped by GET_VRING_BASE');
  // A kick after the stop is not processed. The kick was written before a control round trip whose answer comes
  // from the same poller: once the answer is here, the kick has been seen.
  r.core.pops.set(1, [1]);
  fe.kick(1);
  await fe.getFeatures();
  assert.is(r.server.served, 3);
  closeAll(r, fe, mem);
});

test('rings start disabled with PROTOCOL_FEATURES until SET_VRING_ENABLE', async () => {
  const r = rig();
  const mem = GuestMemory.create(1 << 20);
  const fe = await VhostUserFrontend.connect(r.path);
  await fe.negotiate();
  await fe.setMemTable([mem.region]);
  await fe.setupVring(1, mem, { num: 16, desc: 0, avail: 0x1000, used: 0x2000, enable: false });
  r.core.pops.set(1, [1]);
  fe.kick(1);
  await fe.getFeatures(); // a round trip after the kick: the backend has seen it
  assert.is(r.server.served, 0, 'disabled ring not processed');
  await fe.setVringEnable(1, true);
  await fe.waitCall(1);
  assert.is(r.server.served, 1, 'processed once enabled');
  closeAll(r, fe, mem);
});

test('without PROTOCOL_FEATURES rings are enabled at SET_FEATURES', async () => {
  const r = rig();
  const mem = GuestMemory.create(1 << 20);
  const fe = await VhostUserFrontend.connect(r.path);
  await fe.negotiate({ features: FS_DEVICE_FEATURES & ~bit(30) });
  assert.is(fe.protocolFeatures & bit(PF.REPLY_ACK), bit(PF.REPLY_ACK));
  await fe.setMemTable([mem.region]);
  await fe.setupVring(1, mem, { num: 16, desc: 0, avail: 0x1000, used: 0x2000 });
  await kickAndWait(fe, r, 1, [1, 1]);
  assert.is(r.server.served, 2);
  closeAll(r, fe, mem);
});

test('bad chains and bad messages cost one request each; the next is served', async () => {
  const r = rig();
  const mem = GuestMemory.create(1 << 20);
  const fe = await session(r, mem);
  await kickAndWait(fe, r, 1, [-1, 1, -2, 1]);
  const st = r.listener.backend!.queueStats(1)!;
  assert.is(st.badChains, 1);
  assert.is(st.badMessages, 1);
  assert.is(st.served, 2);
  assert.is(r.server.served, 2);
  // Waited for rather than read at once: the run SET_VRING_KICK schedules may serve a batch before its kick is
  // dispatched (under Bun's poller thread it can come after the first kick), so the call can precede the count.
  // A kick counted twice would step over the value waited for.
  await waitFor(() => st.kicks === 1, 'one kick counted for the four chains');
  await kickAndWait(fe, r, 1, [1]);
  await waitFor(() => st.kicks === 2, 'the second kick counted');
  closeAll(r, fe, mem);
});

test('a server exception completes the request with -EIO and the daemon keeps serving', async () => {
  const r = rig();
  const mem = GuestMemory.create(1 << 20);
  const fe = await session(r, mem);
  r.server.throwNext = true;
  await kickAndWait(fe, r, 1, [1, 1]);
  assert.equal(r.core.replies, [-EIO, -38]);
  assert.is(r.listener.backend!.queueStats(1)!.serverExceptions, 1);
  closeAll(r, fe, mem);
});

test('a broken ring halts the queue and signals the err eventfd', async () => {
  const r = rig();
  const mem = GuestMemory.create(1 << 20);
  const fe = await session(r, mem);
  const errFd = native.eventfd(0, native.constants.EFD_NONBLOCK);
  await fe.setVringErr(1, errFd);
  r.core.pops.set(1, [-3, 1]);
  fe.kick(1);
  assert.ok(await until(() => r.listener.backend!.vringState(1)!.halted));
  assert.ok(await until(() => native.eventfdRead(errFd) === 1), 'err eventfd signalled');
  fe.kick(1);
  await fe.getFeatures(); // a round trip after the kick: the backend has seen it
  assert.is(r.server.served, 0, 'halted queue not processed');
  // Restarting the ring (new kick fd) clears the halt.
  await fe.getVringBase(1);
  await fe.setupVring(1, mem, { num: 64, desc: 0x4000, avail: 0x5000, used: 0x6000 });
  fe.kick(1);
  await fe.waitCall(1);
  assert.is(r.server.served, 1);
  native.close(errFd);
  closeAll(r, fe, mem);
});

test('disconnect then a second frontend connects and works', async () => {
  const r = rig();
  const mem = GuestMemory.create(1 << 20);
  const events: string[] = [];
  r.listener.on('connect', () => events.push('connect'));
  r.listener.on('disconnect', (e) => events.push(e === null ? 'disconnect' : `disconnect:${e.message}`));
  const fe1 = await session(r, mem);
  fe1.close();
  const fe2 = await session(r, mem); // may connect before the listener noticed: it waits in the backlog
  r.core.pops.set(1, [1]);
  fe2.kick(1);
  await fe2.waitCall(1);
  assert.is(r.server.served, 1);
  assert.equal(events, ['connect', 'disconnect', 'connect']);
  assert.is(r.listener.connections, 2);
  fe2.close();
  mem.close();
  r.listener.close();
});

test('a second frontend waits while one is connected', async () => {
  const r = rig();
  const fe1 = await VhostUserFrontend.connect(r.path, { timeoutMs: 300 });
  await fe1.getFeatures();
  const fe2 = await VhostUserFrontend.connect(r.path, { timeoutMs: 5000 });
  const pending = fe2.getFeatures();
  await sleep(50);
  assert.is(r.listener.connections, 1, 'second not accepted yet');
  fe1.close();
  assert.is(await pending, FS_DEVICE_FEATURES, 'served after the first left');
  fe2.close();
  r.listener.close();
});

test('fd count stays flat over 50 connect/disconnect cycles', async () => {
  const r = rig();
  const mem = GuestMemory.create(1 << 20);
  // Warm-up (poller thread, lazily created fds).
  (await session(r, mem)).close();
  await until(() => r.listener.backend === null);
  const before = openFds();
  for (let i = 0; i < 50; i++) {
    const fe = await session(r, mem);
    const errFd = native.eventfd(0, 0);
    await fe.setVringErr(1, errFd);
    native.close(errFd);
    await kickAndWait(fe, r, 1, [1]);
    if (i % 2 === 0) await fe.getVringBase(1);
    fe.close();
  }
  assert.ok(await until(() => r.listener.backend === null));
  assert.equal(fdsOpenedSince(before), []);
  assert.is(r.listener.connections, 51);
  mem.close();
  r.listener.close();
});

test('malformed: bad payload size closes the connection; the next frontend is served', async () => {
  const r = rig();
  let errors = 0;
  r.listener.on('error', (e: VhostUserError) => { if (e.code === 'VU_ERR_INVALID_MESSAGE') errors++; });
  const fe = await VhostUserFrontend.connect(r.path, { timeoutMs: 1000 });
  await fe.sendRaw(R.SET_FEATURES, VHOST_USER_VERSION, new Uint8Array(4)); // u64 expected
  assert.ok(await fe.waitClosed(), 'connection closed');
  const fe2 = await VhostUserFrontend.connect(r.path);
  assert.is(await fe2.getFeatures(), FS_DEVICE_FEATURES);
  fe2.close();
  fe.close();
  assert.is(errors, 1);
  r.listener.close();
});

test('malformed: oversized size, bad version, reply flag -> closed', async () => {
  const r = rig();
  const cases: Array<[number, number, Uint8Array, number?]> = [
    [R.SET_FEATURES, VHOST_USER_VERSION, new Uint8Array(0), 1 << 20],
    [R.GET_FEATURES, 0x2, new Uint8Array(0)],
    [R.GET_FEATURES, VHOST_USER_VERSION | 0x4, new Uint8Array(0)],
    [R.SET_MEM_TABLE, VHOST_USER_VERSION, new Uint8Array(8 + 9 * 32)],
  ];
  for (const [req, flags, payload, size] of cases) {
    const fe = await VhostUserFrontend.connect(r.path, { timeoutMs: 1000 });
    await fe.sendRaw(req, flags, payload, [], { size });
    assert.ok(await fe.waitClosed(), `closed after request ${req} flags ${flags}`);
    fe.close();
  }
  const fe = await VhostUserFrontend.connect(r.path);
  assert.is(await fe.getFeatures(), FS_DEVICE_FEATURES);
  fe.close();
  r.listener.close();
});

test('malformed: unknown request -> error ack with need-reply, ignored without', async () => {
  const r = rig();
  const fe = await VhostUserFrontend.connect(r.path);
  await fe.negotiate();
  await fe.sendRaw(200, VHOST_USER_VERSION, new Uint8Array(16)); // ignored
  const ack = await fe.sendRaw(200, VHOST_USER_VERSION | VHOST_USER_NEED_REPLY_MASK, new Uint8Array(0), [], { expectReply: true });
  assert.ok(ack);
  assert.is.not(decodeU64(new DataView(ack!.payload.buffer)), 0n, 'non-zero status');
  // Also a known-but-unsupported one, with an fd: the fd is closed, the session continues.
  const before = openFds();
  const efd = native.eventfd(0, 0);
  const ack2 = await fe.sendRaw(R.SET_LOG_FD, VHOST_USER_VERSION | VHOST_USER_NEED_REPLY_MASK, new Uint8Array(0), [efd], { expectReply: true });
  assert.is.not(decodeU64(new DataView(ack2!.payload.buffer)), 0n);
  native.close(efd);
  assert.equal(fdsOpenedSince(before), [], 'fd attached to an unsupported message closed');
  assert.is(await fe.getQueueNum(), 2, 'still serving');
  fe.close();
  r.listener.close();
});

test('malformed: missing / extra fds and bad vring indices -> error acks, session continues', async () => {
  const r = rig();
  const mem = GuestMemory.create(1 << 20);
  const fe = await VhostUserFrontend.connect(r.path);
  await fe.negotiate();
  const nack = (e: Error): boolean => (e as VhostUserError).code === 'VU_ERR_NACK';
  // SET_MEM_TABLE with one region and no fd.
  const table = new Uint8Array(8 + 32);
  const dv = new DataView(table.buffer);
  dv.setUint32(0, 1, true);
  dv.setBigUint64(16, 1n << 20n, true);
  const a = await fe.sendRaw(R.SET_MEM_TABLE, VHOST_USER_VERSION | VHOST_USER_NEED_REPLY_MASK, table, [], { expectReply: true });
  assert.is.not(decodeU64(new DataView(a!.payload.buffer)), 0n, 'mem table without fd refused');
  // SET_VRING_KICK without the fd (and without the no-fd flag).
  const u = new Uint8Array(8);
  new DataView(u.buffer).setBigUint64(0, 1n, true);
  const b = await fe.sendRaw(R.SET_VRING_KICK, VHOST_USER_VERSION | VHOST_USER_NEED_REPLY_MASK, u, [], { expectReply: true });
  assert.is.not(decodeU64(new DataView(b!.payload.buffer)), 0n, 'kick without fd refused');
  // Queue index out of range, bad ring size.
  await rejects(fe.setVringNum(7, 64), nack);
  await rejects(fe.setVringNum(1, 100), nack);
  const efd = native.eventfd(0, 0);
  await rejects(fe.setVringCall(9, efd), nack);
  native.close(efd);
  // Ring addresses before any memory table.
  await rejects(fe.setVringAddr(1, { desc: 0n, used: 0n, avail: 0n }), nack);
  // And a good message afterwards.
  await fe.setMemTable([mem.region]);
  await fe.setupVring(1, mem, { num: 16, desc: 0, avail: 0x1000, used: 0x2000 });
  await kickAndWait(fe, r, 1, [1]);
  assert.is(r.server.served, 1);
  closeAll(r, fe, mem);
});

test('slow frontend: a message arriving byte by byte (fd with the first byte) is assembled; others are served meanwhile', async () => {
  const r = rig();
  const fd = native.unixConnect(r.path);
  assert.ok(fd >= 0);
  // SET_PROTOCOL_FEATURES(REPLY_ACK) first, in one piece, so the split message below gets an ack.
  const msg = (req: number, flags: number, payload: Uint8Array): Uint8Array => {
    const m = new Uint8Array(12 + payload.length);
    const v = new DataView(m.buffer);
    v.setUint32(0, req, true); v.setUint32(4, flags, true); v.setUint32(8, payload.length, true);
    m.set(payload, 12);
    return m;
  };
  const u64 = (x: bigint): Uint8Array => { const b = new Uint8Array(8); new DataView(b.buffer).setBigUint64(0, x, true); return b; };
  const m1 = msg(R.SET_PROTOCOL_FEATURES, VHOST_USER_VERSION, u64(bit(PF.REPLY_ACK)));
  assert.is(native.sendmsg(fd, m1, 0, m1.length, []), m1.length);
  const efd = native.eventfd(0, 0);
  const m2 = msg(R.SET_VRING_CALL, VHOST_USER_VERSION | VHOST_USER_NEED_REPLY_MASK, u64(1n));
  for (let i = 0; i < m2.length; i++) {
    assert.is(native.sendmsg(fd, m2, i, 1, i === 0 ? [efd] : []), 1);
    await sleep(1);
  }
  native.close(efd);
  const reply = new Uint8Array(20);
  const fdsOut = new Int32Array(1);
  // Not a blocking receive: the daemon runs on this same JS thread, and with the poller thread (Bun, Deno) its
  // last byte's event may still be on its way here.
  native.setNonblocking(fd, true);
  let got = -native.constants.errno.EAGAIN!;
  for (const t0 = Date.now(); got === -native.constants.errno.EAGAIN! && Date.now() - t0 < 5000; await sleep(5)) {
    got = native.recvmsg(fd, reply, 0, 20, fdsOut, false);
  }
  assert.is(got, 20);
  const v = new DataView(reply.buffer);
  assert.is(v.getUint32(0, true), R.SET_VRING_CALL);
  assert.is(v.getUint32(4, true), VHOST_USER_VERSION | 0x4);
  assert.is(v.getBigUint64(12, true), 0n, 'acked OK: the fd arrived with the first byte and was kept');
  native.close(fd);
  assert.ok(await until(() => r.listener.backend === null));
  r.listener.close();
});

test('malformed: more than 8 fds on one message closes the connection without leaking them', async () => {
  const r = rig();
  const fe0 = await VhostUserFrontend.connect(r.path);
  await fe0.getFeatures();
  fe0.close();
  await until(() => r.listener.backend === null);
  const before = openFds();
  const fe = await VhostUserFrontend.connect(r.path, { timeoutMs: 1000 });
  const fds = Array.from({ length: 12 }, () => native.eventfd(0, 0));
  await fe.sendRaw(R.SET_OWNER, VHOST_USER_VERSION, new Uint8Array(0), fds);
  for (const f of fds) native.close(f);
  assert.ok(await fe.waitClosed());
  fe.close();
  assert.ok(await until(() => r.listener.backend === null));
  assert.equal(fdsOpenedSince(before), []);
  r.listener.close();
});

test('SET_VRING_KICK / CALL with the no-fd flag are accepted', async () => {
  const r = rig();
  const fe = await VhostUserFrontend.connect(r.path);
  await fe.negotiate();
  await fe.setVringCall(1, null);
  await fe.setVringKick(1, null);
  assert.is(r.listener.backend!.vringState(1)!.started, true);
  // An fd together with the no-fd flag is refused.
  const efd = native.eventfd(0, 0);
  const ack = await fe.sendRaw(R.SET_VRING_CALL, VHOST_USER_VERSION | VHOST_USER_NEED_REPLY_MASK,
    new Uint8Array([1, 1, 0, 0, 0, 0, 0, 0]), [efd], { expectReply: true });
  native.close(efd);
  assert.is.not(decodeU64(new DataView(ack!.payload.buffer)), 0n);
  fe.close();
  r.listener.close();
});

test('random messages never crash the daemon; the next frontend is served; no fd leaks', async () => {
  const r = rig();
  (await VhostUserFrontend.connect(r.path)).close();
  await until(() => r.listener.backend === null);
  const before = openFds();
  let seed = 12345;
  const rnd = (n: number): number => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed % n; };
  for (let c = 0; c < 20; c++) {
    const fe = await VhostUserFrontend.connect(r.path, { timeoutMs: 200 });
    await fe.getFeatures();
    if (c % 2 === 0) await fe.setProtocolFeatures(bit(PF.REPLY_ACK) | bit(PF.MQ) | bit(PF.CONFIGURE_MEM_SLOTS));
    for (let i = 0; i < 30 && !fe.isClosed; i++) {
      const req = 1 + rnd(42);
      if (req === R.GET_FEATURES || req === R.GET_PROTOCOL_FEATURES) continue;
      const size = [0, 8, 40, 8 + 32 * rnd(3), rnd(64)][rnd(5)]!;
      const payload = new Uint8Array(size);
      for (let k = 0; k < size; k++) payload[k] = rnd(4) === 0 ? rnd(256) : 0;
      const fds = Array.from({ length: rnd(3) }, () => native.eventfd(0, 0));
      await fe.sendRaw(req, VHOST_USER_VERSION | (rnd(2) ? VHOST_USER_NEED_REPLY_MASK : 0), payload, fds).catch(() => null);
      for (const f of fds) native.close(f);
    }
    fe.close();
    await until(() => r.listener.backend === null);
  }
  const fe = await VhostUserFrontend.connect(r.path);
  assert.is(await fe.getFeatures(), FS_DEVICE_FEATURES);
  fe.close();
  assert.ok(await until(() => r.listener.backend === null));
  assert.equal(fdsOpenedSince(before), []);
  r.listener.close();
});

test('GET_QUEUE_NUM without MQ negotiated closes the session (it expects a reply we do not give)', async () => {
  const r = rig();
  const fe = await VhostUserFrontend.connect(r.path, { timeoutMs: 1000 });
  await fe.getFeatures();
  await fe.setProtocolFeatures(0n);
  await rejects(fe.getQueueNum());
  assert.ok(await fe.waitClosed());
  fe.close();
  r.listener.close();
});

test('listener: stale socket replaced, live socket is VU_ERR_ADDRESS_IN_USE, close removes the file', async () => {
  const p = sockPath();
  // A stale socket file: bound, then the fd closed without unlinking.
  const fd = native.unixListen(p, 1);
  assert.ok(fd >= 0);
  native.close(fd);
  assert.ok(fs.existsSync(p));
  const core = new ScriptedCore();
  const l1 = new VhostUserListener({ socketPath: p, core, server: new StubServer(core) });
  l1.listen();
  const l2 = new VhostUserListener({ socketPath: p, core, server: new StubServer(core) });
  assert.throws(() => l2.listen(), (e: Error) => (e as VhostUserError).code === 'VU_ERR_ADDRESS_IN_USE');
  l2.close();
  const fe = await VhostUserFrontend.connect(p);
  assert.is(await fe.getFeatures(), FS_DEVICE_FEATURES);
  fe.close();
  l1.close();
  assert.not.ok(fs.existsSync(p), 'socket file removed');
  // A regular file is never deleted.
  fs.writeFileSync(p, 'x');
  const l3 = new VhostUserListener({ socketPath: p, core, server: new StubServer(core) });
  assert.throws(() => l3.listen(), (e: Error) => (e as VhostUserError).code === 'VU_ERR_ADDRESS_IN_USE');
  l3.close();
  assert.ok(fs.existsSync(p));
  fs.unlinkSync(p);
});

test('listener: exitOnDisconnect closes after the first session', async () => {
  const r = rig({ exitOnDisconnect: true });
  let closed = false;
  r.listener.on('close', () => { closed = true; });
  const fe = await VhostUserFrontend.connect(r.path);
  await fe.getFeatures();
  fe.close();
  assert.ok(await until(() => closed));
  assert.not.ok(fs.existsSync(r.path));
});

test('RESET_DEVICE stops rings and forgets features; the device can be set up again', async () => {
  const r = rig();
  const mem = GuestMemory.create(1 << 20);
  const fe = await VhostUserFrontend.connect(r.path);
  await fe.negotiate({ protocolFeatures: bit(PF.REPLY_ACK) | bit(PF.RESET_DEVICE) });
  await fe.setMemTable([mem.region]);
  await fe.setupVring(1, mem, { num: 16, desc: 0, avail: 0x1000, used: 0x2000 });
  await fe.resetDevice();
  assert.equal(r.listener.backend!.vringState(1), { started: false, enabled: false, halted: false });
  assert.is(r.listener.backend!.negotiatedFeatures, 0n);
  await fe.setFeatures(FS_DEVICE_FEATURES);
  await fe.setupVring(1, mem, { num: 16, desc: 0, avail: 0x1000, used: 0x2000 });
  await kickAndWait(fe, r, 1, [1]);
  assert.is(r.server.served, 1);
  closeAll(r, fe, mem);
});


// ---- part 2: requests through the real core ------------------------------------------------------------------

const FUSE_GETATTR = 3;
const FUSE_INIT = 26;
const REQ_GPA = 0x200000n;
const OUT_GPA = 0x210000n;


function fuseInitArgs(): Uint8Array {
  const a = new Uint8Array(64);
  const v = new DataView(a.buffer);
  v.setUint32(0, 7, true); // major
  v.setUint32(4, 36, true); // minor
  v.setUint32(8, 0x20000, true); // max_readahead
  return a;
}

/** fuse_out_header at gpa. */
function fuseReply(mem: GuestMemory, gpa: bigint): { len: number; error: number; unique: bigint } {
  const v = mem.view();
  const o = mem.gpaToOffset(gpa);
  return { len: v.getUint32(o, true), error: v.getInt32(o + 4, true), unique: v.getBigUint64(o + 8, true) };
}

/** Publishes, kicks, waits for the call and collects the used elements (re-arming used_event like Linux does). */
async function roundTrip(fe: VhostUserFrontend, q: number, drv: VirtqueueDriver, expect: number): Promise<Array<{ id: number; len: number }>> {
  drv.publish();
  fe.kick(q);
  const used: Array<{ id: number; len: number }> = [];
  const t0 = Date.now();
  while (used.length < expect) {
    await fe.waitCall(q, Math.max(1, 3000 - (Date.now() - t0)));
    used.push(...drv.pollUsed());
    drv.setUsedEvent(drv.lastUsed);
  }
  return used;
}


/** Answers every request with a fixed error through the real core. */
class FixedErrorServer implements RequestServer {
  served = 0;
  constructor(private readonly core: { replySend(e: number, b: number, p: number): number }, private readonly error: number) {}
  serveCurrent(): void {
    this.served++;
    this.core.replySend(this.error, 0, 0);
  }
}

async function realRig(server?: (core: Core) => RequestServer): Promise<{
  listener: VhostUserListener; core: Core; path: string; server: RequestServer }> {
  const core = await Core.create();
  const srv = server ? server(core) : new FixedErrorServer(core, -38);
  const p = sockPath();
  const listener = new VhostUserListener({ socketPath: p, core, server: srv });
  listener.listen();
  return { listener, core, path: p, server: srv };
}

test('real core: a request round trip, GET_VRING_BASE reports the requests consumed', async () => {
  const r = await realRig();
  const mem = GuestMemory.create(4 << 20);
  const fe = await VhostUserFrontend.connect(r.path);
  await fe.negotiate();
  await fe.setMemTable([mem.region]);
  await fe.setupDriverVring(0, mem, { num: 64, ringGpa: 0n });
  const drv = await fe.setupDriverVring(1, mem, { num: 64, ringGpa: 0x100000n });
  const len = putFuseRequest(mem, REQ_GPA, FUSE_GETATTR, 0x1234n, 1n, new Uint8Array(16));
  const head = drv.add([{ gpa: REQ_GPA, len }], [{ gpa: OUT_GPA, len: 4096 }]);
  const used = await roundTrip(fe, 1, drv, 1);
  assert.equal(used, [{ id: head, len: 16 }]);
  assert.equal(fuseReply(mem, OUT_GPA), { len: 16, error: -38, unique: 0x1234n });
  // A second batch of three.
  for (let i = 0; i < 3; i++) {
    const g = REQ_GPA + BigInt(i * 0x100);
    putFuseRequest(mem, g, FUSE_GETATTR, BigInt(100 + i), 1n, new Uint8Array(16));
    drv.add([{ gpa: g, len: 56 }], [{ gpa: OUT_GPA + BigInt(i * 0x1000), len: 4096 }]);
  }
  const used2 = await roundTrip(fe, 1, drv, 3);
  assert.is(used2.length, 3);
  assert.is(fuseReply(mem, OUT_GPA + 0x2000n).unique, 102n);
  assert.is(await fe.getVringBase(1), 4);
  closeAll(r, fe, mem);
});

test('real core: a malformed descriptor chain costs one request; the next is served', async () => {
  const r = await realRig();
  const mem = GuestMemory.create(4 << 20);
  const fe = await VhostUserFrontend.connect(r.path);
  await fe.negotiate();
  await fe.setMemTable([mem.region]);
  const drv = await fe.setupDriverVring(1, mem, { num: 64, ringGpa: 0x100000n });
  const bad = drv.add([{ gpa: 0x40000000n, len: 56 }], [{ gpa: OUT_GPA, len: 4096 }]); // outside guest RAM
  const len = putFuseRequest(mem, REQ_GPA, FUSE_GETATTR, 7n, 1n, new Uint8Array(16));
  const good = drv.add([{ gpa: REQ_GPA, len }], [{ gpa: OUT_GPA + 0x1000n, len: 4096 }]);
  const used = await roundTrip(fe, 1, drv, 2);
  assert.equal(used, [{ id: bad, len: 0 }, { id: good, len: 16 }]);
  assert.equal(fuseReply(mem, OUT_GPA + 0x1000n), { len: 16, error: -38, unique: 7n });
  assert.is(r.listener.backend!.queueStats(1)!.badChains, 1);
  closeAll(r, fe, mem);
});

test('real core: reconnect maps the new guest memory; fds flat', async () => {
  const r = await realRig();
  const run = async (): Promise<void> => {
    const mem = GuestMemory.create(4 << 20);
    const fe = await VhostUserFrontend.connect(r.path);
    await fe.negotiate();
    await fe.setMemTable([mem.region]);
    const drv = await fe.setupDriverVring(1, mem, { num: 64, ringGpa: 0x100000n });
    const len = putFuseRequest(mem, REQ_GPA, FUSE_GETATTR, 9n, 1n, new Uint8Array(16));
    drv.add([{ gpa: REQ_GPA, len }], [{ gpa: OUT_GPA, len: 4096 }]);
    await roundTrip(fe, 1, drv, 1);
    assert.is(fuseReply(mem, OUT_GPA).unique, 9n);
    fe.close();
    mem.close();
    await until(() => r.listener.backend === null);
  };
  await run();
  const before = openFds();
  for (let i = 0; i < 10; i++) await run();
  assert.equal(fdsOpenedSince(before), []);
  r.listener.close();
});

test('real core: two request queues, memory added with ADD_MEM_REG in two regions', async () => {
  const core = await Core.create();
  const p = sockPath();
  const listener = new VhostUserListener({ socketPath: p, core, server: new FixedErrorServer(core, -38), numRequestQueues: 2 });
  listener.listen();
  const rings = GuestMemory.create(1 << 20, { guestAddr: 0n, userAddr: 0x7f0000000000n });
  const bufs = GuestMemory.create(1 << 20, { guestAddr: 0x40000000n, userAddr: 0x7f2000000000n });
  const fe = await VhostUserFrontend.connect(p);
  await fe.negotiate({ protocolFeatures: bit(PF.MQ) | bit(PF.REPLY_ACK) | bit(PF.CONFIGURE_MEM_SLOTS) });
  assert.is(await fe.getQueueNum(), 3);
  await fe.addMemReg(rings.region);
  await fe.addMemReg(bufs.region);
  const d1 = await fe.setupDriverVring(1, rings, { num: 32, ringGpa: 0x0n });
  const d2 = await fe.setupDriverVring(2, rings, { num: 32, ringGpa: 0x80000n });
  for (const [q, drv, unique] of [[1, d1, 11n], [2, d2, 22n]] as const) {
    const req = 0x40000000n + BigInt(q) * 0x10000n;
    const out = req + 0x1000n;
    const len = putFuseRequest(bufs, req, FUSE_GETATTR, unique, 1n, new Uint8Array(16));
    drv.add([{ gpa: req, len }], [{ gpa: out, len: 256 }]);
    await roundTrip(fe, q, drv, 1);
    assert.equal(fuseReply(bufs, out), { len: 16, error: -38, unique });
  }
  // Queue 3 does not exist.
  await rejects(fe.setVringNum(3, 32), (e) => (e as VhostUserError).code === 'VU_ERR_NACK');
  fe.close();
  rings.close();
  bufs.close();
  listener.close();
});

test('real core + FuseServer: FUSE_INIT and GETATTR of the root', async () => {
  const dir = fs.mkdtempSync(path.join(tmp, 'share-'));
  const pfs = new PassthroughFs({ root: dir } as ConstructorParameters<typeof PassthroughFs>[0]);
  const r = await realRig((core) => new FuseServer(pfs, core, { cache: 'never' }));
  const mem = GuestMemory.create(4 << 20);
  const fe = await VhostUserFrontend.connect(r.path);
  await fe.negotiate();
  await fe.setMemTable([mem.region]);
  await fe.setupDriverVring(0, mem, { num: 64, ringGpa: 0n });
  const drv = await fe.setupDriverVring(1, mem, { num: 64, ringGpa: 0x100000n });
  const ilen = putFuseRequest(mem, REQ_GPA, FUSE_INIT, 1n, 0n, fuseInitArgs());
  drv.add([{ gpa: REQ_GPA, len: ilen }], [{ gpa: OUT_GPA, len: 4096 }]);
  await roundTrip(fe, 1, drv, 1);
  const init = fuseReply(mem, OUT_GPA);
  assert.is(init.error, 0);
  assert.is(init.unique, 1n);
  assert.is(mem.view().getUint32(mem.gpaToOffset(OUT_GPA) + 16, true), 7, 'init_out.major');
  const glen = putFuseRequest(mem, REQ_GPA, FUSE_GETATTR, 2n, 1n, new Uint8Array(16));
  drv.add([{ gpa: REQ_GPA, len: glen }], [{ gpa: OUT_GPA + 0x1000n, len: 4096 }]);
  await roundTrip(fe, 1, drv, 1);
  assert.equal(fuseReply(mem, OUT_GPA + 0x1000n), { len: 16 + 104, error: 0, unique: 2n });
  // attr.mode of the root is a directory
  const mode = mem.view().getUint32(mem.gpaToOffset(OUT_GPA + 0x1000n) + 16 + 16 + 60, true);
  assert.is(mode & 0o170000, 0o040000);
  closeAll(r, fe, mem);
});

// ---- part 3: the frontend against the C virtiofsd ------------------------------------------------------------

const C_VIRTIOFSD = '/usr/lib/qemu/virtiofsd';

async function startCVirtiofsd(): Promise<{ child: ChildProcess; path: string; dir: string; stderr: () => string }> {
  const p = sockPath();
  const dir = fs.mkdtempSync(path.join(tmp, 'share-'));
  fs.writeFileSync(path.join(dir, 'hello.txt'), 'hello\n');
  let err = '';
  const child = spawn(C_VIRTIOFSD, [`--socket-path=${p}`, '-o', `source=${dir}`, '-o', 'cache=none', '-o', 'sandbox=chroot'],
    { stdio: ['ignore', 'ignore', 'pipe'] });
  child.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
  const ok = await until(() => fs.existsSync(p) || child.exitCode !== null, 5000);
  if (!ok || child.exitCode !== null) throw new Error(`virtiofsd did not start: ${err}`);
  return { child, path: p, dir, stderr: () => err };
}

test('C virtiofsd: negotiation, FUSE_INIT and GETATTR round trips', async () => {
  if (skipIf(missingBinary(C_VIRTIOFSD), missingRoot())) return; // it drops supplementary groups: root
  const d = await startCVirtiofsd();
  const mem = GuestMemory.create(4 << 20);
  try {
    const fe = await retryWhileRefused(() => VhostUserFrontend.connect(d.path));
    const acked = await fe.negotiate();
    assert.ok((fe.backendFeatures & bit(32)) !== 0n, 'VERSION_1 offered');
    assert.ok((acked & bit(30)) !== 0n, 'PROTOCOL_FEATURES');
    assert.ok(fe.replyAck, 'REPLY_ACK negotiated with libvhost-user');
    assert.ok((await fe.getQueueNum()) >= 2);
    await fe.setMemTable([mem.region]);
    await fe.setupDriverVring(0, mem, { num: 64, ringGpa: 0n });
    const drv = await fe.setupDriverVring(1, mem, { num: 64, ringGpa: 0x100000n });
    // FUSE_INIT round trip.
    const ilen = putFuseRequest(mem, REQ_GPA, FUSE_INIT, 1n, 0n, fuseInitArgs());
    drv.add([{ gpa: REQ_GPA, len: ilen }], [{ gpa: OUT_GPA, len: 4096 }]);
    await roundTrip(fe, 1, drv, 1);
    const init = fuseReply(mem, OUT_GPA);
    assert.is(init.error, 0, d.stderr());
    assert.is(init.unique, 1n);
    assert.is(mem.view().getUint32(mem.gpaToOffset(OUT_GPA) + 16, true), 7, 'init_out.major');
    // GETATTR of the root.
    const glen = putFuseRequest(mem, REQ_GPA, FUSE_GETATTR, 2n, 1n, new Uint8Array(16));
    drv.add([{ gpa: REQ_GPA, len: glen }], [{ gpa: OUT_GPA + 0x1000n, len: 4096 }]);
    await roundTrip(fe, 1, drv, 1);
    assert.equal(fuseReply(mem, OUT_GPA + 0x1000n), { len: 16 + 104, error: 0, unique: 2n });
    assert.is(await fe.getVringBase(1), 2);
    fe.close();
  } finally {
    mem.close();
    signalChild(d.child, 'SIGTERM');
  }
});

// ---- fuzz findings (test/fuzz/vhost-user-target.ts) -----------------------------------------------------------

// Finding vhost-user case-seed 2056059019 (run seed 1, 2026-12-01): a SET_MEM_TABLE region larger than its memfd
// (or with mmap_offset + size past the end) was acked and mapped; the first ring access in the part past EOF is
// SIGBUS, which killed the daemon (rings set up at 2 MiB of a 1 MiB memfd announced as 4 MiB).
test('finding vhost-user-2056059019: a region past the end of its memfd is refused; the old table keeps serving', async () => {
  const r = await realRig();
  // Its own memfd name: the fds the daemon holds are counted by what they point at (Deno closes fds of its own
  // in the background, which upset a count of all of them).
  const mem = GuestMemory.create(4 << 20, { name: 'refused-region-test' });
  const fe = await VhostUserFrontend.connect(r.path);
  await fe.negotiate({ protocolFeatures: bit(PF.MQ) | bit(PF.REPLY_ACK) | bit(PF.CONFIGURE_MEM_SLOTS) });
  await fe.setMemTable([mem.region]);
  const drv = await fe.setupDriverVring(1, mem, { num: 64, ringGpa: 0x100000n });
  const before = memfdsNamed('refused-region-test');
  const nack = (e: Error): boolean => (e as VhostUserError).code === 'VU_ERR_NACK';
  const size = BigInt(mem.size);
  await rejects(fe.setMemTable([{ ...mem.region, size: size + 4096n }]), nack);
  await rejects(fe.setMemTable([{ ...mem.region, size: size / 2n, mmapOffset: size / 2n + 4096n }]), nack);
  await rejects(fe.setMemTable([{ ...mem.region, mmapOffset: size }]), nack);
  await rejects(fe.addMemReg({ ...mem.region, guestAddr: 0x40000000n, userAddr: 0x7f4000000000n, size: 1n << 40n }), nack);
  assert.is(memfdsNamed('refused-region-test'), before, 'the refused regions\' fds were closed');
  // The table in place still serves requests.
  const len = putFuseRequest(mem, REQ_GPA, FUSE_GETATTR, 77n, 1n, new Uint8Array(16));
  drv.add([{ gpa: REQ_GPA, len }], [{ gpa: OUT_GPA, len: 4096 }]);
  await roundTrip(fe, 1, drv, 1);
  assert.equal(fuseReply(mem, OUT_GPA), { len: 16, error: -38, unique: 77n });
  // A region that ends exactly at the end of the file, at an offset, is fine.
  await fe.setMemTable([{ ...mem.region, size: size / 2n, mmapOffset: size / 2n }]);
  closeAll(r, fe, mem);
});

test.after(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

test.run();

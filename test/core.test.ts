/**
 * The Wasm core against synthetic guest memory (Core.addTestRegion) driven by the split-ring driver
 * (host/frontend/virtqueue-driver.ts): request parsing, gather/scatter, iovecs, used ring, notifications and
 * every malformed-chain case, each followed by a good request that must still be served.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  Core, POP_BAD_CHAIN, POP_BAD_MESSAGE, POP_EMPTY, POP_REQUEST, POP_RING_BROKEN, ARGS_MAX, REPLY_MAX,
} from '../host/core.js';
import { VirtqueueDriver, VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE }
  from '../host/frontend/virtqueue-driver.js';
import { VirtiofsdError } from '../host/errors.js';
import { fuseRequest } from './util/fuse-request.js';
import { iovecs } from './util/iovecs.js';
import { FUSE_FORGET, FUSE_GETATTR, FUSE_INIT, FUSE_LOOKUP, FUSE_READ, FUSE_WRITE } from '../host/fuse/protocol.js';

/**
 * The core under test: build/core.wasm, or another build (e.g. CORE_WASM=build/core.debug.wasm). CORE_WINDOW_SLOTS=N
 * runs every test with guest RAM reached through a window of N slots (test/core-windowed.test.ts).
 */
const windowSlots = process.env.CORE_WINDOW_SLOTS ? Number(process.env.CORE_WINDOW_SLOTS) : undefined;
/** Cores of the test running now: what they mapped into their memory goes before the next test. */
const live: Core[] = [];
function track(c: Core): Core {
  live.push(c);
  return c;
}
const createCore = async () => track(await Core.create({ wasmPath: process.env.CORE_WASM, windowSlots }));
test.after.each(() => {
  for (const c of live.splice(0)) c.dropTestRegions();
});

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const GPA = 0x4000_0000n;
const UVA = 0x7f00_0000_0000n;
const RAM = 4 * 1024 * 1024;
const BUF_BASE = 0x10_0000n; // buffers start 1 MiB into the region (rings below)

const EINVAL = 22;
const EIO = 5;
const ERANGE = 34;

/** A core with one test region, queue 0 configured, a driver and a bump allocator for buffers. */
class CoreQueue {
  next = GPA + BUF_BASE;
  constructor(readonly core: Core, readonly driver: VirtqueueDriver, readonly regionOffset: number) {}

  static async create(opts: { num?: number; eventIdx?: boolean; indirect?: boolean; initialIdx?: number } = {}) {
    const core = await createCore();
    const off = core.addTestRegion(GPA, UVA, RAM);
    const num = opts.num ?? 16;
    const driver = new VirtqueueDriver(
      { gpa: GPA, bytes: () => core.bytes().subarray(off, off + RAM) },
      { num, ringGpa: GPA, initialIdx: opts.initialIdx, eventIdx: opts.eventIdx },
    );
    const uva = (gpa: bigint) => gpa - GPA + UVA;
    assert.is(core.queueSetNum(0, num), 0);
    assert.is(core.queueSetAddr(0, uva(driver.layout.descGpa), uva(driver.layout.usedGpa),
      uva(driver.layout.availGpa)), 0);
    core.queueSetBase(0, opts.initialIdx ?? 0);
    core.queueSetFeatures(0, opts.eventIdx ?? false, opts.indirect ?? false);
    return new CoreQueue(core, driver, off);
  }

  /** Allocates guest bytes (8-aligned) and optionally fills them. */
  alloc(len: number, fill?: Uint8Array): bigint {
    const gpa = this.next;
    this.next += BigInt(Math.ceil((len + 1) / 8) * 8 + 8); // a gap so adjacent buffers never touch
    if (fill) this.write(gpa, fill);
    return gpa;
  }

  lin(gpa: bigint): number {
    return this.regionOffset + Number(gpa - GPA);
  }

  write(gpa: bigint, data: Uint8Array): void {
    this.core.bytes().set(data, this.lin(gpa));
  }

  read(gpa: bigint, len: number): Uint8Array {
    return this.core.bytes().slice(this.lin(gpa), this.lin(gpa) + len);
  }

  /** A request with `readable` split into pieces of the given sizes and writable buffers of the given sizes. */
  submit(request: Uint8Array, readSplit: number[], writeSizes: number[], indirect = false) {
    const readable: { gpa: bigint; len: number }[] = [];
    let at = 0;
    for (const n of readSplit) {
      readable.push({ gpa: this.alloc(n, request.subarray(at, at + n)), len: n });
      at += n;
    }
    assert.is(at, request.length, 'split covers the request');
    const writable = writeSizes.map((n) => ({ gpa: this.alloc(n), len: n }));
    const head = this.driver.add(readable, writable, { indirect });
    this.driver.publish();
    return { head, readable, writable };
  }

  /** Concatenation of the writable buffers' bytes. */
  gatherWritable(writable: { gpa: bigint; len: number }[]): Uint8Array {
    const total = writable.reduce((s, w) => s + w.len, 0);
    const out = new Uint8Array(total);
    let at = 0;
    for (const w of writable) {
      out.set(this.read(w.gpa, w.len), at);
      at += w.len;
    }
    return out;
  }
}


function getattrArgs(fh = 0n): Uint8Array {
  const b = new Uint8Array(16);
  new DataView(b.buffer).setBigUint64(8, fh, true);
  return b;
}

function outHeader(bytes: Uint8Array) {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return { len: v.getUint32(0, true), error: v.getInt32(4, true), unique: v.getBigUint64(8, true) };
}

function pattern(n: number, seed = 1): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed * 7) & 0xff;
  return b;
}

/** Submits a GETATTR, serves it with a 4-byte body, checks the used element. The "next good request". */
function serveGood(rig: CoreQueue, unique = 777n): void {
  const { head, writable } = rig.submit(fuseRequest(FUSE_GETATTR, unique, 1n, getattrArgs()), [56], [64]);
  assert.is(rig.core.queuePop(0), POP_REQUEST, 'the next good request is served');
  assert.is(rig.core.reqOpcode(), FUSE_GETATTR);
  rig.core.bytes().set([1, 2, 3, 4], rig.core.replyPtr);
  assert.is(rig.core.replySend(0, 4, 0), 0);
  const used = rig.driver.pollUsed();
  assert.equal(used, [{ id: head, len: 20 }]);
  const out = rig.gatherWritable(writable);
  assert.equal(outHeader(out), { len: 20, error: 0, unique });
  assert.equal([...out.subarray(16, 20)], [1, 2, 3, 4]);
}

// ---- basic requests ---------------------------------------------------------------------------------------------

test('empty ring pops nothing', async () => {
  const rig = await CoreQueue.create();
  assert.is(rig.core.queuePop(0), POP_EMPTY);
  assert.is(rig.core.queuePop(5), POP_EMPTY, 'an unconfigured queue is empty');
  assert.is(rig.core.queueNeedsNotify(0), false, 'nothing used, nothing to notify');
});

test('single readable + single writable descriptor: header fields, args, reply', async () => {
  const rig = await CoreQueue.create();
  const req = fuseRequest(FUSE_GETATTR, 0x1122334455667788n, 0x1_0000_0002n, getattrArgs(99n));
  const { head, writable } = rig.submit(req, [req.length], [16 + 104]);
  const c = rig.core;
  assert.is(c.queuePop(0), POP_REQUEST);
  assert.is(c.reqQueue(), 0);
  assert.is(c.reqHead(), head);
  assert.is(c.reqOpcode(), FUSE_GETATTR);
  assert.is(c.reqUnique(), 0x1122334455667788n);
  assert.is(c.reqNodeId(), 0x1_0000_0002);
  assert.is(c.reqUid(), 1000);
  assert.is(c.reqGid(), 100);
  assert.is(c.reqPid(), 4242);
  assert.is(c.reqLen(), 56);
  assert.is(c.reqArgsLen(), 16);
  assert.is(c.reqReadable(), 56);
  assert.is(c.reqWritable(), 120);
  assert.equal(new Uint8Array(c.memoryBuffer(), c.inHeaderPtr, 40), req.subarray(0, 40),
    'the fuse_in_header the server reads its fields from');
  assert.is(c.view().getBigUint64(c.argsPtr + 8, true), 99n, 'fuse_getattr_in.fh copied to ARGS');
  c.bytes().fill(0xab, c.replyPtr, c.replyPtr + 104);
  assert.is(c.replySend(0, 104, 0), 0);
  assert.equal(rig.driver.pollUsed(), [{ id: head, len: 120 }]);
  const out = rig.read(writable[0].gpa, 120);
  assert.equal(outHeader(out), { len: 120, error: 0, unique: 0x1122334455667788n });
  assert.ok(out.subarray(16).every((b) => b === 0xab));
  assert.is(c.queuePop(0), POP_EMPTY);
  assert.is(c.queueGetBase(0), 1);
});

test('error reply carries the negative errno and no body', async () => {
  const rig = await CoreQueue.create();
  const { writable } = rig.submit(fuseRequest(FUSE_LOOKUP, 5n, 1n, new TextEncoder().encode('nope\0')), [45], [144]);
  assert.is(rig.core.queuePop(0), POP_REQUEST);
  assert.is(rig.core.replySend(-2, 0, 0), 0);
  assert.equal(rig.driver.pollUsed()[0].len, 16);
  assert.equal(outHeader(rig.read(writable[0].gpa, 16)), { len: 16, error: -2, unique: 5n });
});

test('header and args gathered across several readable descriptors, reply scattered across writable ones', async () => {
  const rig = await CoreQueue.create();
  const name = new TextEncoder().encode('a-rather-long-file-name.txt\0');
  const req = fuseRequest(FUSE_LOOKUP, 42n, 7n, name);
  // the header itself is cut at 3 and 33 bytes, the name at an odd place
  const { head, writable } = rig.submit(req, [3, 30, 12, req.length - 45], [5, 11, 7, 200]);
  const c = rig.core;
  assert.is(c.queuePop(0), POP_REQUEST);
  assert.is(c.reqOpcode(), FUSE_LOOKUP);
  assert.is(c.reqNodeId(), 7);
  assert.is(c.reqArgsLen(), name.length);
  assert.equal([...c.bytes().subarray(c.argsPtr, c.argsPtr + name.length)], [...name]);
  const body = pattern(128);
  c.bytes().set(body, c.replyPtr);
  assert.is(c.replySend(0, 128, 0), 0);
  assert.equal(rig.driver.pollUsed(), [{ id: head, len: 144 }]);
  const out = rig.gatherWritable(writable);
  assert.equal(outHeader(out), { len: 144, error: 0, unique: 42n });
  assert.equal([...out.subarray(16, 144)], [...body]);
  assert.ok(out.subarray(144).every((b) => b === 0), 'nothing written past used.len');
});

test('indirect chain is served when VIRTIO_F_INDIRECT_DESC is negotiated', async () => {
  const rig = await CoreQueue.create({ indirect: true });
  const req = fuseRequest(FUSE_GETATTR, 9n, 3n, getattrArgs());
  const { head, writable } = rig.submit(req, [20, 36], [10, 100], true);
  assert.is(rig.driver.free, 15, 'an indirect chain takes one descriptor of the main table');
  assert.is(rig.core.queuePop(0), POP_REQUEST);
  assert.is(rig.core.reqOpcode(), FUSE_GETATTR);
  assert.is(rig.core.reqWritable(), 110);
  assert.is(rig.core.replySend(0, 8, 0), 0);
  assert.equal(rig.driver.pollUsed(), [{ id: head, len: 24 }]);
  assert.is(rig.driver.free, 16);
  assert.equal(outHeader(rig.gatherWritable(writable)), { len: 24, error: 0, unique: 9n });
});

test('indirect descriptor without the feature is a bad chain', async () => {
  const rig = await CoreQueue.create({ indirect: false });
  const { head } = rig.submit(fuseRequest(FUSE_GETATTR, 1n, 1n, getattrArgs()), [56], [64], true);
  assert.is(rig.core.queuePop(0), POP_BAD_CHAIN);
  assert.equal(rig.driver.pollUsed(), [{ id: head, len: 0 }]);
  serveGood(rig);
});

test('avail/used indices wrap past 65535', async () => {
  const rig = await CoreQueue.create({ num: 4, initialIdx: 65534 });
  // a batch of two that straddles the wrap: avail slots 65534 and 65535, used.idx goes 65534 -> 0
  const heads = [0, 1].map((i) => rig.submit(fuseRequest(FUSE_GETATTR, BigInt(i), 1n, getattrArgs()), [56], [16]).head);
  for (let i = 0; i < 2; i++) {
    assert.is(rig.core.queuePop(0), POP_REQUEST);
    assert.is(rig.core.reqUnique(), BigInt(i));
    assert.is(rig.core.replySend(0, 0, 0), 0);
  }
  assert.equal(rig.driver.pollUsed().map((e) => e.id), heads);
  assert.is(rig.driver.usedIdx(), 0);
  assert.is(rig.core.queueGetBase(0), 0);
  for (let i = 0; i < 10; i++) serveGood(rig, BigInt(1000 + i));
  assert.is(rig.driver.usedIdx(), 10);
  assert.is(rig.core.queueGetBase(0), 10);
});

test('queueSetBase resumes at a given index and the used index is taken from the ring', async () => {
  const rig = await CoreQueue.create({ num: 8, initialIdx: 300 });
  serveGood(rig);
  assert.is(rig.driver.usedIdx(), 301);
  assert.is(rig.core.queueGetBase(0), 301);
});

// ---- notifications ----------------------------------------------------------------------------------------------

test('without EVENT_IDX: notify after used entries unless VIRTQ_AVAIL_F_NO_INTERRUPT', async () => {
  const rig = await CoreQueue.create();
  serveGood(rig);
  assert.is(rig.core.queueNeedsNotify(0), true);
  assert.is(rig.core.queueNeedsNotify(0), false, 'nothing new since the last decision');
  rig.driver.setNoInterrupt(true);
  serveGood(rig);
  assert.is(rig.core.queueNeedsNotify(0), false, 'driver asked for no interrupts');
  rig.driver.setNoInterrupt(false);
  serveGood(rig);
  assert.is(rig.core.queueNeedsNotify(0), true);
});

test('EVENT_IDX: notify exactly when used.idx crosses used_event', async () => {
  const rig = await CoreQueue.create({ eventIdx: true });
  const c = rig.core;
  rig.driver.setUsedEvent(0); // interrupt when entry 0 is used (old=0 -> new=1 crosses 0)
  serveGood(rig);
  assert.is(c.queueNeedsNotify(0), true);
  rig.driver.setUsedEvent(3); // not until used.idx passes 3
  serveGood(rig); // used.idx = 2
  assert.is(c.queueNeedsNotify(0), false);
  serveGood(rig); // 3
  assert.is(c.queueNeedsNotify(0), false);
  serveGood(rig); // 4: crossed 3
  assert.is(c.queueNeedsNotify(0), true);
  // a batch of two that jumps over used_event also notifies
  rig.driver.setUsedEvent(4);
  serveGood(rig);
  serveGood(rig); // 6
  assert.is(c.queueNeedsNotify(0), true);
  // used_event far behind: no notification
  rig.driver.setUsedEvent(1);
  serveGood(rig);
  assert.is(c.queueNeedsNotify(0), false);
});

test('EVENT_IDX: an empty pop publishes avail_event = next avail index (kick suppression)', async () => {
  const rig = await CoreQueue.create({ eventIdx: true });
  serveGood(rig);
  serveGood(rig);
  assert.is(rig.core.queuePop(0), POP_EMPTY);
  assert.is(rig.driver.availEvent(), 2, 'device asks for a kick when avail index 2 is published');
  rig.submit(fuseRequest(FUSE_GETATTR, 1n, 1n, getattrArgs()), [56], [16]);
  assert.is(rig.driver.kickNeeded(), true, 'the driver kicks for the entry the device waits for');
  rig.submit(fuseRequest(FUSE_GETATTR, 2n, 1n, getattrArgs()), [56], [16]);
  assert.is(rig.driver.kickNeeded(), false, 'but not again while the device has not caught up');
});

test('EVENT_IDX: half the index space used without a decision forces a notification', async () => {
  const rig = await CoreQueue.create({ num: 2, eventIdx: true });
  rig.driver.setUsedEvent(0xffff); // just behind: a u16 window test alone would never fire
  const req = fuseRequest(FUSE_GETATTR, 1n, 1n, getattrArgs());
  const r = rig.alloc(56, req);
  const w = rig.alloc(16);
  for (let i = 0; i < 0x8000; i++) {
    rig.driver.add([{ gpa: r, len: 56 }], [{ gpa: w, len: 16 }]);
    rig.driver.publish();
    assert.is(rig.core.queuePop(0), POP_REQUEST);
    rig.core.replySend(0, 0, 0);
    rig.driver.pollUsed();
  }
  assert.is(rig.core.queueNeedsNotify(0), true);
  assert.is(rig.core.queueNeedsNotify(0), false);
});

// ---- malformed chains: each ends in POP_BAD_CHAIN with the chain returned, then a good request is served ----

/** Hand-builds a chain from raw descriptors (main table), publishes it and expects POP_BAD_CHAIN + used len 0. */
async function expectBadChain(name: string, build: (rig: CoreQueue) => number, opts: { indirect?: boolean; num?: number } = {}) {
  test(`bad chain: ${name}`, async () => {
    const rig = await CoreQueue.create({ indirect: opts.indirect ?? true, num: opts.num });
    const head = build(rig);
    rig.driver.pushAvail(head);
    rig.driver.publish();
    assert.is(rig.core.queuePop(0), POP_BAD_CHAIN);
    const used = rig.driver.pollUsed();
    assert.equal(used, [{ id: head, len: 0 }], 'the chain is returned with used len 0');
    // return the hand-built descriptors to a clean state: a fresh driver table for the follow-up request
    serveGoodAfterRaw(rig);
  });
}

/** After raw manipulation the driver's free list may be inconsistent; rebuild and keep indices. */
function serveGoodAfterRaw(rig: CoreQueue): void {
  rig.driver.reset(rig.driver.nextAvailIdx, rig.driver.usedIdx());
  serveGood(rig);
}

const hdr = () => fuseRequest(FUSE_GETATTR, 1n, 1n, getattrArgs());

expectBadChain('descriptor loop', (rig) => {
  const g = rig.alloc(56, hdr());
  const w = rig.alloc(64);
  rig.driver.writeDesc(0, { addr: g, len: 56, flags: VIRTQ_DESC_F_NEXT, next: 1 });
  rig.driver.writeDesc(1, { addr: w, len: 64, flags: VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, next: 0 });
  return 0;
});

expectBadChain('loop inside an indirect table', (rig) => {
  const t = rig.alloc(16 * 3);
  rig.driver.writeIndirect(t, [
    { addr: rig.alloc(56, hdr()), len: 56, flags: VIRTQ_DESC_F_NEXT, next: 1 },
    { addr: rig.alloc(16), len: 16, flags: VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, next: 2 },
    { addr: rig.alloc(16), len: 16, flags: VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, next: 1 },
  ]);
  rig.driver.writeDesc(0, { addr: t, len: 16 * 3, flags: VIRTQ_DESC_F_INDIRECT, next: 0 });
  return 0;
});

expectBadChain('indirect next index past the table', (rig) => {
  const t = rig.alloc(16 * 2);
  rig.driver.writeIndirect(t, [
    { addr: rig.alloc(56, hdr()), len: 56, flags: VIRTQ_DESC_F_NEXT, next: 1 },
    { addr: rig.alloc(16), len: 16, flags: VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, next: 2 },
  ]);
  rig.driver.writeDesc(0, { addr: t, len: 32, flags: VIRTQ_DESC_F_INDIRECT, next: 0 });
  return 0;
});

test('an indirect table longer than the queue is served (Linux does this for big READs)', async () => {
  const rig = await CoreQueue.create({ num: 4, indirect: true });
  // header + read_in, out header, then 40 one-page buffers: 42 descriptors on a 4-entry queue
  const req = fuseRequest(FUSE_READ, 5n, 2n, new Uint8Array(40));
  const pages = Array.from({ length: 40 }, () => ({ gpa: rig.alloc(4096), len: 4096 }));
  const out = { gpa: rig.alloc(16), len: 16 };
  const head = rig.driver.add([{ gpa: rig.alloc(80, req), len: 80 }], [out, ...pages], { indirect: true });
  rig.driver.publish();
  assert.is(rig.core.queuePop(0), POP_REQUEST);
  assert.is(rig.core.reqWritable(), 16 + 40 * 4096);
  assert.is(rig.core.payloadReadIov(16, 40 * 4096), 40);
  assert.is(rig.core.replySend(0, 0, 40 * 4096), 0);
  assert.equal(rig.driver.pollUsed(), [{ id: head, len: 16 + 40 * 4096 }]);
});

expectBadChain('next index out of the table', (rig) => {
  const g = rig.alloc(56, hdr());
  rig.driver.writeDesc(0, { addr: g, len: 56, flags: VIRTQ_DESC_F_NEXT, next: 16 });
  return 0;
});

expectBadChain('address outside guest RAM', (rig) => {
  rig.driver.writeDesc(0, { addr: GPA + BigInt(RAM), len: 56, flags: 0, next: 0 });
  return 0;
});

expectBadChain('buffer running past the end of RAM', (rig) => {
  rig.driver.writeDesc(0, { addr: GPA + BigInt(RAM) - 16n, len: 56, flags: 0, next: 0 });
  return 0;
});

expectBadChain('addr + len overflows u64', (rig) => {
  rig.driver.writeDesc(0, { addr: 0xffff_ffff_ffff_fff0n, len: 0x100, flags: 0, next: 0 });
  return 0;
});

expectBadChain('zero-length indirect table', (rig) => {
  rig.driver.writeDesc(0, { addr: rig.alloc(64), len: 0, flags: VIRTQ_DESC_F_INDIRECT, next: 0 });
  return 0;
});

expectBadChain('indirect table length not a multiple of 16', (rig) => {
  const t = rig.alloc(64);
  rig.driver.writeIndirect(t, [{ addr: rig.alloc(56, hdr()), len: 56, flags: 0, next: 0 }]);
  rig.driver.writeDesc(0, { addr: t, len: 24, flags: VIRTQ_DESC_F_INDIRECT, next: 0 });
  return 0;
});

expectBadChain('nested indirect', (rig) => {
  const inner = rig.alloc(16);
  rig.driver.writeIndirect(inner, [{ addr: rig.alloc(56, hdr()), len: 56, flags: 0, next: 0 }]);
  const outer = rig.alloc(16);
  rig.driver.writeIndirect(outer, [{ addr: inner, len: 16, flags: VIRTQ_DESC_F_INDIRECT, next: 0 }]);
  rig.driver.writeDesc(0, { addr: outer, len: 16, flags: VIRTQ_DESC_F_INDIRECT, next: 0 });
  return 0;
});

expectBadChain('INDIRECT together with NEXT', (rig) => {
  const t = rig.alloc(16);
  rig.driver.writeIndirect(t, [{ addr: rig.alloc(56, hdr()), len: 56, flags: 0, next: 0 }]);
  rig.driver.writeDesc(0, { addr: t, len: 16, flags: VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT, next: 1 });
  rig.driver.writeDesc(1, { addr: rig.alloc(64), len: 64, flags: VIRTQ_DESC_F_WRITE, next: 0 });
  return 0;
});

expectBadChain('indirect table outside guest RAM', (rig) => {
  rig.driver.writeDesc(0, { addr: GPA + BigInt(RAM) - 8n, len: 32, flags: VIRTQ_DESC_F_INDIRECT, next: 0 });
  return 0;
});

expectBadChain('readable descriptor after a writable one', (rig) => {
  rig.driver.writeDesc(0, { addr: rig.alloc(56, hdr()), len: 56, flags: VIRTQ_DESC_F_NEXT, next: 1 });
  rig.driver.writeDesc(1, { addr: rig.alloc(16), len: 16, flags: VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, next: 2 });
  rig.driver.writeDesc(2, { addr: rig.alloc(16), len: 16, flags: 0, next: 0 });
  return 0;
});

test('bad chain: head index >= num is skipped without a used element', async () => {
  const rig = await CoreQueue.create();
  const d = rig.driver;
  d.writeAvailRing(0, 16);
  d.setAvailIdx(1);
  assert.is(rig.core.queuePop(0), POP_BAD_CHAIN);
  assert.is(d.usedIdx(), 0, 'no used element: 16 names no descriptor');
  assert.is(rig.core.queueGetBase(0), 1, 'the slot is consumed');
  // the next chain, in avail slot 1, is served normally
  d.writeDesc(0, { addr: rig.alloc(56, hdr()), len: 56, flags: VIRTQ_DESC_F_NEXT, next: 1 });
  d.writeDesc(1, { addr: rig.alloc(64), len: 64, flags: VIRTQ_DESC_F_WRITE, next: 0 });
  d.writeAvailRing(1, 0);
  d.setAvailIdx(2);
  assert.is(rig.core.queuePop(0), POP_REQUEST);
  assert.is(rig.core.replySend(0, 0, 0), 0);
  assert.equal(d.readUsedElem(0), { id: 0, len: 16 });
  assert.is(d.usedIdx(), 1);
});

test('ring broken: avail.idx jumping more than num halts the queue until reset', async () => {
  const rig = await CoreQueue.create({ num: 8 });
  rig.driver.setAvailIdx(9);
  assert.is(rig.core.queuePop(0), POP_RING_BROKEN);
  assert.is(rig.core.queuePop(0), POP_RING_BROKEN, 'stays broken');
  // the frontend resets the queue (GET_VRING_BASE, then set up again)
  const base = rig.core.queueGetBase(0);
  rig.core.queueReset(0);
  rig.driver.reset(base);
  assert.is(rig.core.queueSetNum(0, 8), 0);
  assert.is(rig.core.queueSetAddr(0, rig.driver.layout.descGpa - GPA + UVA, rig.driver.layout.usedGpa - GPA + UVA,
    rig.driver.layout.availGpa - GPA + UVA), 0);
  rig.core.queueSetBase(0, base);
  serveGood(rig);
});

/** xorshift32: deterministic pseudo-random numbers for the randomized tables. */
function rng(seed: number) {
  let x = seed >>> 0 || 1;
  return (n: number) => {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    return x % n;
  };
}

test('randomized hostile descriptor tables never trap; each result is a documented code; the queue keeps working', async () => {
  const rig = await CoreQueue.create({ num: 8, indirect: true });
  const rand = rng(0x5eed);
  const d = rig.driver;
  const req = fuseRequest(FUSE_GETATTR, 1n, 1n, getattrArgs());
  const good = rig.alloc(56, req);
  const table = rig.alloc(16 * 64);
  const addrs = [good, good + 3n, GPA, GPA + BigInt(RAM) - 8n, GPA + BigInt(RAM), 0n, 0xffff_ffff_ffff_fff0n, table,
    GPA - 16n];
  const lens = [0, 1, 16, 40, 56, 64, 24, 4096, 0xffff_ffff, 0x8000_0000];
  const randDesc = () => ({
    addr: addrs[rand(addrs.length)], len: lens[rand(lens.length)], flags: rand(8), next: rand(3) === 0 ? rand(65536) : rand(10),
  });
  const seen = new Map<number, number>();
  for (let round = 0; round < 3000; round++) {
    for (let i = 0; i < 8; i++) d.writeDesc(i, randDesc());
    d.writeIndirect(table, Array.from({ length: 64 }, randDesc));
    const head = rand(10); // sometimes >= num
    d.pushAvail(head);
    d.publish();
    const rc = rig.core.queuePop(0);
    seen.set(rc, (seen.get(rc) ?? 0) + 1);
    assert.ok([POP_REQUEST, POP_BAD_CHAIN, POP_BAD_MESSAGE].includes(rc), `round ${round}: rc ${rc}`);
    if (rc === POP_REQUEST) {
      assert.ok(rig.core.reqLen() >= 40 && rig.core.reqLen() <= rig.core.reqReadable());
      rig.core.payloadReadIov(16, 1 << 20);
      rig.core.payloadWriteIov(0, 1 << 20);
      const r = rig.core.replySend(0, rand(200), 0);
      assert.ok(r === 0 || r === -ERANGE);
    }
    // one used element per chain, except for a head index >= num
    const used = d.pollUsed();
    assert.is(used.length, head >= 8 ? 0 : 1, `round ${round}: used elements`);
    if (used.length) {
      assert.is(used[0].id, head);
      assert.ok(used[0].len <= rig.core.reqWritable() || used[0].len === 0 || rc !== POP_REQUEST);
    }
  }
  assert.ok((seen.get(POP_BAD_CHAIN) ?? 0) > 100, 'the generator produces bad chains');
  assert.ok((seen.get(POP_BAD_MESSAGE) ?? 0) > 10, 'and chains that are valid but carry a bad message');
  assert.ok((seen.get(POP_REQUEST) ?? 0) > 0, 'and some valid requests');
  serveGoodAfterRaw(rig);
});

// ---- malformed messages ------------------------------------------------------------------------------------------

test('bad message: fewer readable bytes than a fuse_in_header -> used len 0', async () => {
  const rig = await CoreQueue.create();
  const { head } = rig.submit(hdr().subarray(0, 20), [20], [64]);
  assert.is(rig.core.queuePop(0), POP_BAD_MESSAGE);
  assert.equal(rig.driver.pollUsed(), [{ id: head, len: 0 }]);
  serveGood(rig);
});

for (const [name, mutate] of [
  ['in.len < 40', (v: DataView) => v.setUint32(0, 39, true)],
  ['in.len > readable bytes', (v: DataView) => v.setUint32(0, 57, true)],
  ['args shorter than fuse_getattr_in', (v: DataView) => v.setUint32(0, 48, true)],
] as const) {
  test(`bad message: ${name} -> -EINVAL reply with the request's unique`, async () => {
    const rig = await CoreQueue.create();
    const req = fuseRequest(FUSE_GETATTR, 0xabcdn, 1n, getattrArgs());
    mutate(new DataView(req.buffer));
    const { head, writable } = rig.submit(req, [56], [64]);
    assert.is(rig.core.queuePop(0), POP_BAD_MESSAGE);
    assert.equal(rig.driver.pollUsed(), [{ id: head, len: 16 }]);
    assert.equal(outHeader(rig.read(writable[0].gpa, 16)), { len: 16, error: -EINVAL, unique: 0xabcdn });
    serveGood(rig);
  });
}

test('bad message: args over ARGS_MAX', async () => {
  const rig = await CoreQueue.create();
  const req = fuseRequest(FUSE_LOOKUP, 3n, 1n, new Uint8Array(ARGS_MAX + 1).fill(0x61));
  const { writable } = rig.submit(req, [req.length], [16]);
  assert.is(rig.core.queuePop(0), POP_BAD_MESSAGE);
  assert.is(rig.driver.pollUsed()[0].len, 16);
  assert.is(outHeader(rig.read(writable[0].gpa, 16)).error, -EINVAL);
  serveGood(rig);
});

test('args of exactly ARGS_MAX are accepted', async () => {
  const rig = await CoreQueue.create();
  const args = pattern(ARGS_MAX);
  const req = fuseRequest(FUSE_LOOKUP, 3n, 1n, args);
  rig.submit(req, [4096, req.length - 4096], [16]);
  assert.is(rig.core.queuePop(0), POP_REQUEST);
  assert.is(rig.core.reqArgsLen(), ARGS_MAX);
  const c = rig.core;
  assert.ok(Buffer.from(c.bytes().subarray(c.argsPtr, c.argsPtr + ARGS_MAX)).equals(Buffer.from(args)));
  assert.is(c.replySend(-2, 0, 0), 0);
});

test('FORGET needs no writable buffer; replyNone returns the chain with len 0', async () => {
  const rig = await CoreQueue.create();
  const args = new Uint8Array(8);
  new DataView(args.buffer).setBigUint64(0, 3n, true);
  const { head } = rig.submit(fuseRequest(FUSE_FORGET, 8n, 5n, args), [48], []);
  assert.is(rig.core.queuePop(0), POP_REQUEST);
  assert.is(rig.core.reqOpcode(), FUSE_FORGET);
  assert.is(rig.core.reqWritable(), 0);
  rig.core.replyNone();
  assert.equal(rig.driver.pollUsed(), [{ id: head, len: 0 }]);
  assert.is(rig.core.replySend(0, 0, 0), -EINVAL, 'no request is current any more');
});

// ---- READ / WRITE payload iovecs ---------------------------------------------------------------------------------

test('READ: payloadReadIov spans several writable segments after the out header', async () => {
  const rig = await CoreQueue.create();
  const readIn = new Uint8Array(40);
  new DataView(readIn.buffer).setUint32(16, 10000, true);
  // the out header alone, then three pages, like the Linux guest lays out a READ
  const { head, writable } = rig.submit(fuseRequest(FUSE_READ, 11n, 4n, readIn), [80], [16, 4096, 4096, 4096]);
  const c = rig.core;
  assert.is(c.queuePop(0), POP_REQUEST);
  const n = c.payloadReadIov(16, 10000);
  assert.is(n, 3);
  const iov = iovecs(c, n);
  assert.equal(iov.map((e) => e.len), [4096, 4096, 10000 - 8192]);
  assert.equal(iov.map((e) => e.off), [rig.lin(writable[1].gpa), rig.lin(writable[2].gpa), rig.lin(writable[3].gpa)]);
  // what preadv would do
  const data = pattern(10000, 3);
  let at = 0;
  for (const e of iov) {
    c.bytes().set(data.subarray(at, at + e.len), e.off);
    at += e.len;
  }
  assert.is(c.replySend(0, 0, 10000), 0);
  assert.equal(rig.driver.pollUsed(), [{ id: head, len: 10016 }]);
  const out = rig.gatherWritable(writable);
  assert.equal(outHeader(out), { len: 10016, error: 0, unique: 11n });
  assert.ok(Buffer.from(out.subarray(16, 10016)).equals(Buffer.from(data)));
});

test('READ: skip inside a segment and a maxBytes shorter than the buffers', async () => {
  const rig = await CoreQueue.create();
  const { writable } = rig.submit(fuseRequest(FUSE_READ, 1n, 4n, new Uint8Array(40)), [80], [100, 50]);
  const c = rig.core;
  assert.is(c.queuePop(0), POP_REQUEST);
  const n = c.payloadReadIov(16, 120);
  assert.is(n, 2);
  const iov = iovecs(c, n);
  assert.is(iov[0].off, rig.lin(writable[0].gpa) + 16);
  assert.is(iov[0].len, 84);
  assert.is(iov[1].len, 36);
  assert.is(c.payloadReadIov(200, 10), 0, 'skip past the end: no iovecs');
  c.replyNone();
});

test('WRITE: only fuse_write_in is copied; payloadWriteIov covers the payload across segments', async () => {
  const rig = await CoreQueue.create();
  const payload = pattern(5000, 9);
  const writeIn = new Uint8Array(40);
  const wv = new DataView(writeIn.buffer);
  wv.setBigUint64(0, 77n, true); // fh
  wv.setBigUint64(8, 4096n, true); // offset
  wv.setUint32(16, payload.length, true); // size
  const args = new Uint8Array(40 + payload.length);
  args.set(writeIn);
  args.set(payload, 40);
  const req = fuseRequest(FUSE_WRITE, 12n, 4n, args);
  // header + write_in + first 100 payload bytes in one descriptor, the rest in two more
  const { head } = rig.submit(req, [180, 2000, req.length - 2180], [16 + 24]);
  const c = rig.core;
  assert.is(c.queuePop(0), POP_REQUEST);
  assert.is(c.reqOpcode(), FUSE_WRITE);
  assert.is(c.reqArgsLen(), 40 + payload.length);
  assert.is(c.view().getBigUint64(c.argsPtr, true), 77n);
  assert.is(c.view().getUint32(c.argsPtr + 16, true), payload.length);
  const n = c.payloadWriteIov(40, payload.length);
  assert.is(n, 3);
  const v = c.view();
  const got: number[] = [];
  for (const { off, len } of iovecs(c, n)) got.push(...c.bytes().subarray(off, off + len));
  assert.ok(Buffer.from(got).equals(Buffer.from(payload)), 'iovecs cover exactly the payload');
  assert.is(c.payloadWriteIov(40, 1 << 30), 3, 'never past fuse_in_header.len');
  v.setUint32(c.replyPtr, payload.length, true);
  assert.is(c.replySend(0, 8, 0), 0);
  assert.equal(rig.driver.pollUsed(), [{ id: head, len: 24 }]);
});

// ---- replySend bounds --------------------------------------------------------------------------------------------

test('replySend: -ERANGE when the writable space is too small, an -EIO header is sent instead', async () => {
  const rig = await CoreQueue.create();
  const { head, writable } = rig.submit(hdr(), [56], [30, 20]);
  assert.is(rig.core.queuePop(0), POP_REQUEST);
  assert.is(rig.core.replySend(0, 100, 0), -ERANGE);
  assert.equal(rig.driver.pollUsed(), [{ id: head, len: 16 }]);
  assert.equal(outHeader(rig.gatherWritable(writable)), { len: 16, error: -EIO, unique: 1n });
  serveGood(rig);
});

test('replySend: a body of REPLY_MAX (host/core.ts\'s copy of the core\'s limit) is sent; one byte more is -ERANGE', async () => {
  for (const [bodyLen, want] of [[REPLY_MAX, 0], [REPLY_MAX + 1, -ERANGE]]) {
    const rig = await CoreQueue.create();
    rig.submit(hdr(), [56], [16 + REPLY_MAX + 1]);
    assert.is(rig.core.queuePop(0), POP_REQUEST);
    assert.is(rig.core.replySend(0, bodyLen, 0), want, `body of ${bodyLen}`);
    assert.is(rig.driver.pollUsed()[0].len, want === 0 ? 16 + REPLY_MAX : 16);
  }
});

test('replySend: exactly fitting body succeeds; one byte more is -ERANGE; no room for a header -> len 0', async () => {
  const rig = await CoreQueue.create();
  rig.submit(hdr(), [56], [16, 34]);
  assert.is(rig.core.queuePop(0), POP_REQUEST);
  assert.is(rig.core.replySend(0, 34, 0), 0);
  assert.is(rig.driver.pollUsed()[0].len, 50);
  rig.submit(hdr(), [56], [16, 34]);
  assert.is(rig.core.queuePop(0), POP_REQUEST);
  assert.is(rig.core.replySend(0, 30, 5), -ERANGE);
  assert.is(rig.driver.pollUsed()[0].len, 16);
  const { head } = rig.submit(hdr(), [56], [8]);
  assert.is(rig.core.queuePop(0), POP_REQUEST);
  assert.is(rig.core.replySend(0, 0, 0), -ERANGE);
  assert.equal(rig.driver.pollUsed(), [{ id: head, len: 0 }]);
  serveGood(rig);
});

test('popping again without replying returns the previous chain (no leaked descriptors)', async () => {
  const rig = await CoreQueue.create();
  const a = rig.submit(hdr(), [56], [64]);
  assert.is(rig.core.queuePop(0), POP_REQUEST);
  assert.is(rig.core.queuePop(0), POP_EMPTY);
  assert.equal(rig.driver.pollUsed(), [{ id: a.head, len: 0 }]);
});

// ---- guest memory table --------------------------------------------------------------------------------------------

test('buffers straddling two adjacent regions are split into two segments', async () => {
  const core = await createCore();
  const size = 1 << 20;
  const offA = core.addTestRegion(GPA, UVA, size);
  core.addTestRegion(0x9000_0000n, UVA + 0x2000_0000n, 65536); // a spacer: A and B are apart in linear memory
  const offB = core.addTestRegion(GPA + BigInt(size), UVA + 0x1000_0000n, size);
  assert.ok(offB > offA + size, 'the regions are not adjacent in linear memory');
  const mem = {
    gpa: GPA,
    bytes: () => core.bytes().subarray(offA, offA + size),
  };
  const driver = new VirtqueueDriver(mem, { num: 8, ringGpa: GPA });
  assert.is(core.queueSetNum(0, 8), 0);
  assert.is(core.queueSetAddr(0, driver.layout.descGpa - GPA + UVA, driver.layout.usedGpa - GPA + UVA,
    driver.layout.availGpa - GPA + UVA), 0);
  const name = new TextEncoder().encode('straddle\0');
  const req = fuseRequest(FUSE_LOOKUP, 1n, 1n, name);
  // request starts 20 bytes before the end of region A
  const start = GPA + BigInt(size) - 20n;
  core.bytes().set(req.subarray(0, 20), offA + size - 20);
  core.bytes().set(req.subarray(20), offB);
  const wgpa = GPA + BigInt(size) - 8n; // writable: 8 bytes in A, the rest in B
  const head = driver.add([{ gpa: start, len: req.length }], [{ gpa: wgpa, len: 8 + 200 }]);
  driver.publish();
  assert.is(core.queuePop(0), POP_REQUEST);
  assert.is(core.reqOpcode(), FUSE_LOOKUP);
  assert.equal([...core.bytes().subarray(core.argsPtr, core.argsPtr + name.length)], [...name]);
  core.bytes().fill(0x5a, core.replyPtr, core.replyPtr + 10);
  assert.is(core.replySend(0, 10, 0), 0);
  assert.equal(driver.pollUsed(), [{ id: head, len: 26 }]);
  const out = new Uint8Array(26);
  out.set(core.bytes().subarray(offA + size - 8, offA + size), 0);
  out.set(core.bytes().subarray(offB, offB + 18), 8);
  assert.equal(outHeader(out), { len: 26, error: 0, unique: 1n });
  assert.ok(out.subarray(16).every((b) => b === 0x5a));
});

test('view(), bytes() and memoryBuffer() are renewed when linear memory grows', async () => {
  // A flat core even under CORE_WINDOW_SLOTS: growth and the views do not depend on the window.
  const c = track(await Core.create({ wasmPath: process.env.CORE_WASM }));
  const before = c.view();
  assert.is(c.memoryBuffer(), c.memory.buffer);
  c.addTestRegion(GPA, UVA, 8 << 20); // grows linear memory
  assert.is(before.buffer.byteLength, 0, 'growing detached the old buffer');
  assert.is(c.memoryBuffer(), c.memory.buffer);
  assert.is(c.view().buffer, c.memory.buffer);
  assert.is(c.bytes().buffer, c.memory.buffer);
});

test('a region added after the rings, in memory that moves as it grows: the kernel still reads the guest payload', async () => {
  // JavaScriptCore (Bun) reserves address space for its first few Wasm memories only; a later one is reallocated
  // when it grows. Enough live cores that, under Bun, the last ones grow by moving (Node: none moves).
  const { native } = await import('../host/native-loader.js');
  const { mkdtempSync, rmSync, openSync, closeSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const dir = mkdtempSync(resolve(tmpdir(), 'vfs-core-grow-'));
  const rigs: CoreQueue[] = [];
  try {
    for (let i = 0; i < 12; i++) {
      const rig = await CoreQueue.create();
      rigs.push(rig);
      const spacer = rig.core.addTestRegion(0x9000_0000n, UVA + 0x2000_0000n, 8 << 20); // grows after the rings
      assert.ok(spacer > rig.regionOffset);
      const payload = pattern(3000, i + 1);
      const writeIn = new Uint8Array(40);
      new DataView(writeIn.buffer).setUint32(16, payload.length, true);
      const req = fuseRequest(FUSE_WRITE, 2n, 1n, new Uint8Array([...writeIn, ...payload]));
      const { head } = rig.submit(req, [1000, req.length - 1000], [16 + 24]);
      assert.is(rig.core.queuePop(0), POP_REQUEST, `core ${i} pops`);
      const n = rig.core.payloadWriteIov(40, payload.length);
      const fd = openSync(resolve(dir, `out-${i}`), 'w+');
      try {
        assert.is(native.pwritev(fd, rig.core.memory.buffer, rig.core.iovPtr, n, 0), payload.length);
        const back = new Uint8Array(payload.length);
        assert.is(native.pread(fd, back, 0), payload.length);
        assert.ok(Buffer.from(back).equals(Buffer.from(payload)), `core ${i}: the file has the guest's payload`);
      } finally {
        closeSync(fd);
      }
      assert.is(rig.core.replySend(0, 0, 0), 0);
      assert.equal(rig.driver.pollUsed(), [{ id: head, len: 16 }]);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('memory table and queue setup validation', async () => {
  const core = await createCore();
  const off = core.addTestRegion(GPA, UVA, 1 << 20);
  assert.is(core.memAddRegion(GPA + 0x1000n, 0x1n, 0x1000n, off), -EINVAL, 'overlapping gpa');
  assert.is(core.memAddRegion(0n, UVA + 0x100n, 0x1000n, off), -EINVAL, 'overlapping uva');
  assert.is(core.memAddRegion(0xffff_ffff_ffff_f000n, 0n, 0x2000n, off), -EINVAL, 'gpa overflow');
  assert.is(core.memAddRegion(0n, 0n, 0n, off), -EINVAL, 'empty');
  assert.is(core.memAddRegion(0n, 0n, 0x1000n, core.memory.buffer.byteLength - 0x800), -EINVAL,
    'outside linear memory');
  core.bytes().set([1, 2, 3, 4], off + 0x10);
  const t = core.memTranslate(GPA + 0x10n, 16);
  assert.ok(t >= 0, 'translated');
  assert.equal([...core.bytes().subarray(t, t + 4)], [1, 2, 3, 4], 'to where the guest bytes are');
  if (windowSlots === undefined) assert.is(t, off + 0x10, 'flat: in the region\'s own linear range');
  assert.is(core.memTranslate(GPA + BigInt(1 << 20) - 8n, 16), -1);
  for (const bad of [0, 3, 12, 65536]) assert.is(core.queueSetNum(0, bad), -EINVAL, `num ${bad}`);
  assert.is(core.queueSetNum(64, 8), -EINVAL, 'queue index out of range');
  assert.is(core.queueSetNum(0, 32768), 0);
  assert.is(core.queueSetNum(0, 8), 0);
  assert.is(core.queueSetAddr(0, UVA + BigInt(1 << 20), UVA, UVA), -14, 'desc outside RAM: -EFAULT');
  assert.is(core.queueSetAddr(0, UVA, UVA + 0x1000n + 2n, UVA + 0x800n), -14, 'misaligned used ring: -EFAULT');
  assert.is(core.queueSetAddr(0, UVA, UVA + 0x1000n, UVA + 0x800n), 0);
});

test('a new memory table re-translates the rings (queue keeps working after memReset + re-add)', async () => {
  const rig = await CoreQueue.create();
  serveGood(rig);
  rig.core.memReset();
  assert.is(rig.core.queuePop(0), POP_EMPTY, 'no RAM: the rings are not reachable');
  rig.core.reAddTestRegions();
  serveGood(rig);
});

test('the core has no allocator: no __new/__alloc/rt function in the (named) debug build', async () => {
  const path = resolve(root, 'build', 'core.debug.wasm');
  assert.ok(existsSync(path), 'build/core.debug.wasm is built (npm run build runs build:wasm:debug)');
  const mod = await WebAssembly.compile(readFileSync(path));
  const names = WebAssembly.Module.customSections(mod, 'name');
  assert.is(names.length, 1, 'the debug build carries a name section');
  const text = Buffer.from(names[0]).toString('latin1');
  assert.ok(text.includes('assembly/request/queuePop'), 'function names are present (the check can see them)');
  for (const bad of ['__new', '__alloc', '__renew', '~lib/rt/stub/']) {
    assert.not.ok(text.includes(bad), `no ${bad} in the core`);
  }
});

test('a trap in the core becomes VirtiofsdError ERR_CORE_TRAP', async () => {
  const core = await createCore();
  try {
    core.encodeAttrOut(core.memory.buffer.byteLength - 8, 1, core.statxPtr);
    assert.unreachable('should have trapped');
  } catch (err) {
    assert.instance(err, VirtiofsdError);
    assert.is((err as VirtiofsdError).code, 'ERR_CORE_TRAP');
  }
  // the instance stays usable for stateless calls
  assert.is(core.encodeAttrOut(core.replyPtr, 1, core.statxPtr), 104);
});

test('internal corruption aborts into ERR_CORE_TRAP with the message', async () => {
  const rig = await CoreQueue.create();
  const { writable } = rig.submit(hdr(), [56], [64]);
  assert.is(rig.core.queuePop(0), POP_REQUEST);
  // Simulate corruption of the core's own segment table: find the writable segment {u64 addr, u32 64, u32 region}
  // in the static area (addr: the linear offset flat, the guest address windowed) and zero its length, so the
  // reply scatter runs out of segments.
  const v = rig.core.view();
  const want = windowSlots === undefined ? BigInt(rig.lin(writable[0].gpa)) : writable[0].gpa;
  let at = -1;
  for (let o = 0; o < rig.regionOffset; o += 8) {
    if (v.getBigUint64(o, true) === want && v.getUint32(o + 8, true) === 64) {
      at = o;
      break;
    }
  }
  assert.ok(at >= 0, 'found the segment record');
  v.setUint32(at + 8, 0, true);
  try {
    rig.core.replySend(0, 8, 0);
    assert.unreachable('should have aborted');
  } catch (err) {
    assert.instance(err, VirtiofsdError);
    assert.is((err as VirtiofsdError).code, 'ERR_CORE_TRAP');
    assert.match((err as Error).message, /core trapped: .*abort: scatter past the writable segments$/);
  }
});

// ---- real mmap of a memfd (needs the native addon) ----------------------------------------------------------------

test('mapGuestRegions: a memfd mapped into the core; pwrite to the memfd is seen by queuePop', async () => {
  const { native } = await import('../host/native-loader.js');
  const core = track(await Core.create({ native, wasmPath: process.env.CORE_WASM }));
  const size = 2 * 1024 * 1024;
  const fd = native.memfdCreate('guest-ram', 0);
  assert.ok(fd >= 0, `memfd_create: ${fd}`);
  try {
    assert.is(native.ftruncate(fd, size * 2), 0);
    // two regions from one memfd, the second at an mmap offset
    core.mapGuestRegions([
      { gpa: 0n, size: BigInt(size), uva: UVA, mmapOffset: 0n, fd },
      { gpa: 0x1_0000_0000n, size: BigInt(size), uva: UVA + BigInt(size), mmapOffset: BigInt(size), fd },
    ]);
    const num = 8;
    const layout = VirtqueueDriver.layout(num, 0x1_0000_0000n);
    // the driver writes through the memfd (like a guest on another mapping), not through the core's view
    const shadow = new Uint8Array(size);
    const drv = new VirtqueueDriver({ gpa: 0x1_0000_0000n, bytes: () => shadow }, { num, ringGpa: 0x1_0000_0000n });
    const req = fuseRequest(FUSE_INIT, 99n, 0n, new Uint8Array(64));
    const reqGpa = 0x1_0000_0000n + 0x10_0000n;
    const outGpa = reqGpa + 0x1000n;
    shadow.set(req, Number(reqGpa - 0x1_0000_0000n));
    const head = drv.add([{ gpa: reqGpa, len: req.length }], [{ gpa: outGpa, len: 16 + 80 }]);
    drv.publish();
    assert.is(native.pwrite(fd, shadow, size), size);
    const uva = (g: bigint) => g - 0x1_0000_0000n + UVA + BigInt(size);
    assert.is(core.queueSetNum(0, num), 0);
    assert.is(core.queueSetAddr(0, uva(layout.descGpa), uva(layout.usedGpa), uva(layout.availGpa)), 0);
    assert.is(core.queuePop(0), POP_REQUEST);
    assert.is(core.reqOpcode(), FUSE_INIT);
    assert.is(core.reqArgsLen(), 64);
    assert.is(core.replySend(-38, 0, 0), 0);
    // the reply is in the memfd
    const back = new Uint8Array(16);
    assert.is(native.pread(fd, back, size + Number(outGpa - 0x1_0000_0000n)), 16);
    assert.equal(outHeader(back), { len: 16, error: -38, unique: 99n });
    const usedElem = new Uint8Array(8);
    assert.is(native.pread(fd, usedElem, size + Number(layout.usedGpa - 0x1_0000_0000n) + 4), 8);
    assert.is(new DataView(usedElem.buffer).getUint32(0, true), head);
    // a new table reuses the guest area
    const before = core.memory.buffer.byteLength;
    core.mapGuestRegions([{ gpa: 0n, size: BigInt(size), uva: UVA, mmapOffset: 0n, fd }]);
    assert.is(core.memory.buffer.byteLength, before, 'no growth for a smaller table');
    core.unmapGuestRegions();
    assert.is(core.memTranslate(0n, 16), -1);
  } finally {
    native.close(fd);
  }
});

test.run();

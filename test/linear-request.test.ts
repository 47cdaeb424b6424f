/**
 * The core's linear request source (linearPop, the /dev/fuse transport): one readable segment (the bytes one
 * read(2) of /dev/fuse returned) and one writable segment (the reply buffer), the same header checks, args copy,
 * payload iovecs and replies as a descriptor chain — and no used ring: linearReplyLen says what to write(2).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  Core, LINEAR_QUEUE, POP_BAD_CHAIN, POP_BAD_MESSAGE, POP_EMPTY, POP_REQUEST, ARGS_MAX,
} from '../host/core.js';
import { VirtqueueDriver } from '../host/frontend/virtqueue-driver.js';
import { fuseRequest } from './util/fuse-request.js';
import { iovecs } from './util/iovecs.js';
import { FUSE_FORGET, FUSE_GETATTR, FUSE_INIT, FUSE_LOOKUP, FUSE_READ, FUSE_WRITE } from '../host/fuse/protocol.js';

const createCore = () => Core.create({ wasmPath: process.env.CORE_WASM });

const EINVAL = 22;
const EIO = 5;
const ERANGE = 34;
/** The kernel's rule for the read buffer: max(FUSE_MIN_READ_BUFFER, in header + fuse_write_in + max_write). */
const FUSE_MIN_READ_BUFFER = 8192;
const MAX_WRITE = 1024 * 1024;


function outHeader(c: Core, at: number) {
  const v = c.view();
  return { len: v.getUint32(at, true), error: v.getInt32(at + 4, true), unique: v.getBigUint64(at + 8, true) };
}

function pattern(n: number, seed = 1): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed * 7) & 0xff;
  return b;
}

/** Puts `req` in LINEAR_IN (as read(2) would) and pops it into LINEAR_OUT. */
function pop(c: Core, req: Uint8Array, outCap = c.linearBufSize): number {
  c.bytes().set(req, c.linearInPtr);
  return c.linearPop(c.linearInPtr, req.length, c.linearOutPtr, outCap);
}

test('the buffers: distinct, 16-aligned, large enough for the kernel\'s read rule and a 1 MiB READ reply', async () => {
  const c = await createCore();
  assert.ok(c.linearBufSize >= Math.max(FUSE_MIN_READ_BUFFER, 40 + 40 + MAX_WRITE));
  assert.ok(c.linearBufSize >= 16 + MAX_WRITE);
  assert.is(c.linearInPtr % 16, 0);
  assert.is(c.linearOutPtr % 16, 0);
  const [a, b] = [c.linearInPtr, c.linearOutPtr].sort((x, y) => x - y);
  assert.ok(a + c.linearBufSize <= b, 'no overlap');
  assert.ok(b + c.linearBufSize <= c.memory.buffer.byteLength, 'inside the static memory');
  for (const p of [c.argsPtr, c.replyPtr, c.iovPtr, c.statxPtr, c.direntBufPtr]) {
    assert.ok(p + 16 <= a || p >= a + c.linearBufSize, 'no overlap with the other scratch areas');
    assert.ok(p + 16 <= b || p >= b + c.linearBufSize, 'no overlap with the other scratch areas');
  }
});

test('GETATTR: header fields, args copied, reply header + body at outPtr, linearReplyLen', async () => {
  const c = await createCore();
  const args = new Uint8Array(16);
  new DataView(args.buffer).setBigUint64(8, 99n, true);
  const req = fuseRequest(FUSE_GETATTR, 0x1122334455667788n, 0x1_0000_0002n, args);
  assert.is(pop(c, req), POP_REQUEST);
  assert.is(c.reqQueue(), LINEAR_QUEUE);
  assert.is(c.reqOpcode(), FUSE_GETATTR);
  assert.is(c.reqUnique(), 0x1122334455667788n);
  assert.is(c.reqNodeId(), 0x1_0000_0002);
  assert.equal([c.reqUid(), c.reqGid(), c.reqPid()], [1000, 100, 4242]);
  assert.is(c.reqLen(), 56);
  assert.is(c.reqArgsLen(), 16);
  assert.is(c.reqReadable(), 56);
  assert.is(c.reqWritable(), c.linearBufSize);
  assert.is(c.view().getBigUint64(c.argsPtr + 8, true), 99n);
  assert.is(c.linearReplyLen(), 0, 'nothing to write before the reply');
  c.bytes().fill(0xab, c.replyPtr, c.replyPtr + 104);
  assert.is(c.replySend(0, 104, 0), 0);
  assert.is(c.linearReplyLen(), 120);
  assert.equal(outHeader(c, c.linearOutPtr), { len: 120, error: 0, unique: 0x1122334455667788n });
  assert.ok(c.bytes().subarray(c.linearOutPtr + 16, c.linearOutPtr + 120).every((x) => x === 0xab));
  assert.is(c.replySend(0, 0, 0), -EINVAL, 'no request is current any more');
  assert.is(c.linearReplyLen(), 120, 'unchanged by a refused replySend');
});

test('an error reply is a bare 16-byte header', async () => {
  const c = await createCore();
  assert.is(pop(c, fuseRequest(FUSE_LOOKUP, 5n, 1n, new TextEncoder().encode('nope\0'))), POP_REQUEST);
  assert.is(new TextDecoder().decode(c.bytes().subarray(c.argsPtr, c.argsPtr + 4)), 'nope');
  assert.is(c.replySend(-2, 0, 0), 0);
  assert.is(c.linearReplyLen(), 16);
  assert.equal(outHeader(c, c.linearOutPtr), { len: 16, error: -2, unique: 5n });
});

test('FORGET: replyNone leaves nothing to write', async () => {
  const c = await createCore();
  const args = new Uint8Array(8);
  new DataView(args.buffer).setBigUint64(0, 3n, true);
  assert.is(pop(c, fuseRequest(FUSE_GETATTR, 1n, 1n, new Uint8Array(16))), POP_REQUEST);
  assert.is(c.replySend(0, 0, 0), 0);
  assert.is(c.linearReplyLen(), 16);
  assert.is(pop(c, fuseRequest(FUSE_FORGET, 8n, 5n, args)), POP_REQUEST);
  assert.is(c.linearReplyLen(), 0, 'reset by the pop');
  c.replyNone();
  assert.is(c.linearReplyLen(), 0);
});

test('WRITE: the payload stays in the request buffer; payloadWriteIov points at it', async () => {
  const c = await createCore();
  const payload = pattern(MAX_WRITE, 9);
  const args = new Uint8Array(40 + payload.length);
  const wv = new DataView(args.buffer);
  wv.setBigUint64(0, 77n, true);
  wv.setBigUint64(8, 4096n, true);
  wv.setUint32(16, payload.length, true);
  args.set(payload, 40);
  const req = fuseRequest(FUSE_WRITE, 12n, 4n, args);
  assert.ok(req.length <= c.linearBufSize, 'a max_write WRITE fits the request buffer');
  assert.is(pop(c, req), POP_REQUEST);
  assert.is(c.reqArgsLen(), 40 + payload.length);
  assert.is(c.view().getBigUint64(c.argsPtr, true), 77n);
  const n = c.payloadWriteIov(40, payload.length);
  assert.is(n, 1);
  assert.equal(iovecs(c, n), [{ off: c.linearInPtr + 80, len: payload.length }]);
  assert.equal(iovecs(c, c.payloadWriteIov(40, 1 << 30)), [{ off: c.linearInPtr + 80, len: payload.length }],
    'never past fuse_in_header.len');
  c.view().setUint32(c.replyPtr, payload.length, true);
  assert.is(c.replySend(0, 8, 0), 0);
  assert.is(c.linearReplyLen(), 24);
  assert.is(c.view().getUint32(c.linearOutPtr + 16, true), payload.length);
});

test('READ: payloadReadIov is the out buffer after the header; replySend counts the payload', async () => {
  const c = await createCore();
  const readIn = new Uint8Array(40);
  new DataView(readIn.buffer).setUint32(16, MAX_WRITE, true);
  assert.is(pop(c, fuseRequest(FUSE_READ, 11n, 4n, readIn)), POP_REQUEST);
  const n = c.payloadReadIov(16, MAX_WRITE);
  assert.equal(iovecs(c, n), [{ off: c.linearOutPtr + 16, len: MAX_WRITE }]);
  const data = pattern(MAX_WRITE, 3);
  c.bytes().set(data, c.linearOutPtr + 16); // what preadv would do
  assert.is(c.replySend(0, 0, MAX_WRITE), 0);
  assert.is(c.linearReplyLen(), 16 + MAX_WRITE);
  assert.equal(outHeader(c, c.linearOutPtr), { len: 16 + MAX_WRITE, error: 0, unique: 11n });
  assert.ok(Buffer.from(c.bytes().subarray(c.linearOutPtr + 16, c.linearOutPtr + 16 + MAX_WRITE))
    .equals(Buffer.from(data)), 'the header did not overwrite the data');
});

test('a reply larger than outCap: -ERANGE and an -EIO header instead; no room for a header: nothing', async () => {
  const c = await createCore();
  assert.is(pop(c, fuseRequest(FUSE_GETATTR, 3n, 1n, new Uint8Array(16)), 64), POP_REQUEST);
  assert.is(c.replySend(0, 104, 0), -ERANGE);
  assert.is(c.linearReplyLen(), 16);
  assert.equal(outHeader(c, c.linearOutPtr), { len: 16, error: -EIO, unique: 3n });
  assert.is(pop(c, fuseRequest(FUSE_GETATTR, 4n, 1n, new Uint8Array(16)), 8), POP_REQUEST);
  assert.is(c.replySend(0, 0, 0), -ERANGE);
  assert.is(c.linearReplyLen(), 0);
});

test('malformed messages: the same checks as a chain, an -EINVAL reply when the header was readable', async () => {
  const c = await createCore();
  // shorter than a fuse_in_header: nothing to answer
  c.bytes().fill(0, c.linearInPtr, c.linearInPtr + 40);
  assert.is(c.linearPop(c.linearInPtr, 39, c.linearOutPtr, c.linearBufSize), POP_BAD_MESSAGE);
  assert.is(c.linearReplyLen(), 0);
  // header.len larger than what was read
  const req = fuseRequest(FUSE_GETATTR, 21n, 1n, new Uint8Array(16));
  new DataView(req.buffer).setUint32(0, 100, true);
  assert.is(pop(c, req), POP_BAD_MESSAGE);
  assert.is(c.linearReplyLen(), 16);
  assert.equal(outHeader(c, c.linearOutPtr), { len: 16, error: -EINVAL, unique: 21n });
  // args shorter than the opcode needs (INIT needs its fuse_init_in)
  assert.is(pop(c, fuseRequest(FUSE_INIT, 22n, 0n, new Uint8Array(4))), POP_BAD_MESSAGE);
  assert.equal(outHeader(c, c.linearOutPtr), { len: 16, error: -EINVAL, unique: 22n });
  // args over ARGS_MAX (not a WRITE)
  assert.is(pop(c, fuseRequest(FUSE_LOOKUP, 23n, 1n, new Uint8Array(ARGS_MAX + 1))), POP_BAD_MESSAGE);
  assert.equal(outHeader(c, c.linearOutPtr), { len: 16, error: -EINVAL, unique: 23n });
  // and the next good one is served
  assert.is(pop(c, fuseRequest(FUSE_GETATTR, 24n, 1n, new Uint8Array(16))), POP_REQUEST);
  assert.is(c.replySend(-2, 0, 0), 0);
  assert.equal(outHeader(c, c.linearOutPtr), { len: 16, error: -2, unique: 24n });
});

test('bad ranges: outside linear memory, u32 overflow, overlapping in/out -> POP_BAD_CHAIN, nothing current', async () => {
  const c = await createCore();
  const end = c.memory.buffer.byteLength;
  assert.is(c.linearPop(end - 10, 40, c.linearOutPtr, 64), POP_BAD_CHAIN);
  assert.is(c.linearPop(c.linearInPtr, 56, end - 8, 64), POP_BAD_CHAIN);
  assert.is(c.linearPop(0xffff_fff0, 0x20, c.linearOutPtr, 64), POP_BAD_CHAIN);
  assert.is(c.linearPop(c.linearInPtr, 200, c.linearInPtr + 100, 64), POP_BAD_CHAIN, 'overlap');
  assert.is(c.linearReplyLen(), 0);
  assert.is(c.replySend(0, 0, 0), -EINVAL, 'no request is current');
  // in and out may be anywhere else in linear memory (e.g. adjacent)
  const req = fuseRequest(FUSE_GETATTR, 31n, 1n, new Uint8Array(16));
  c.bytes().set(req, c.linearInPtr);
  assert.is(c.linearPop(c.linearInPtr, 56, c.linearInPtr + 56, 16), POP_REQUEST);
  assert.is(c.replySend(0, 0, 0), 0);
  assert.equal(outHeader(c, c.linearInPtr + 56), { len: 16, error: 0, unique: 31n });
});

test('popping again without replying drops the previous request silently', async () => {
  const c = await createCore();
  assert.is(pop(c, fuseRequest(FUSE_GETATTR, 41n, 1n, new Uint8Array(16))), POP_REQUEST);
  assert.is(pop(c, fuseRequest(FUSE_GETATTR, 42n, 1n, new Uint8Array(16))), POP_REQUEST);
  assert.is(c.reqUnique(), 42n);
  assert.is(c.replySend(0, 0, 0), 0);
  assert.equal(outHeader(c, c.linearOutPtr), { len: 16, error: 0, unique: 42n });
});

test('linear and virtqueue requests on one core: neither completes into the other', async () => {
  const c = await createCore();
  const GPA = 0x4000_0000n;
  const RAM = 1024 * 1024;
  const off = c.addTestRegion(GPA, GPA, RAM);
  const driver = new VirtqueueDriver({ gpa: GPA, bytes: () => c.bytes().subarray(off, off + RAM) },
    { num: 8, ringGpa: GPA });
  assert.is(c.queueSetNum(0, 8), 0);
  assert.is(c.queueSetAddr(0, driver.layout.descGpa, driver.layout.usedGpa, driver.layout.availGpa), 0);
  c.queueSetBase(0, 0);
  const reqGpa = GPA + 0x8_0000n;
  const outGpa = GPA + 0x9_0000n;
  const req = fuseRequest(FUSE_GETATTR, 51n, 1n, new Uint8Array(16));
  c.bytes().set(req, off + 0x8_0000);
  const head = driver.add([{ gpa: reqGpa, len: req.length }], [{ gpa: outGpa, len: 64 }]);
  driver.publish();
  assert.is(c.queuePop(0), POP_REQUEST);
  // a linear pop while the chain is current returns the chain empty (as queuePop would)
  assert.is(pop(c, fuseRequest(FUSE_GETATTR, 52n, 1n, new Uint8Array(16))), POP_REQUEST);
  assert.equal(driver.pollUsed(), [{ id: head, len: 0 }]);
  // queueReset(0) does not forget a linear request
  c.queueReset(0);
  assert.is(c.replySend(0, 0, 0), 0);
  assert.is(c.linearReplyLen(), 16);
  assert.equal(outHeader(c, c.linearOutPtr), { len: 16, error: 0, unique: 52n });
  assert.is(c.queuePop(0), POP_EMPTY);
});

test.run();

/**
 * The core's full replies to parked requests (requestResume, linearResume): a parked request becomes the current
 * one again after others were served, and is answered with body and payload by the usual payloadReadIov and
 * replySend; a chain the guest rewrote meanwhile goes back unused, never written through.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { LINEAR_QUEUE, POP_REQUEST } from '../host/core.js';
import { RIG_GPA as GPA, RIG_RAM as RAM, outHeader, queueRig } from './util/queue-rig.js';
import { fuseRequest } from './util/fuse-request.js';
import { FUSE_GETATTR, FUSE_READ } from '../host/fuse/protocol.js';

const EBUSY = 16;
const EINVAL = 22;
const rig = queueRig;

const readArgs = new Uint8Array(40); // fuse_read_in: the content does not matter to the core

test('a parked READ is answered later with its payload, after another request was served', async () => {
  const { core, driver, submit, read } = await rig();
  const slow = submit(fuseRequest(FUSE_READ, 41n, 5n, readArgs), [16, 100]);
  assert.is(core.queuePop(0), POP_REQUEST);
  const head = core.requestPark();
  assert.is(head, slow.head);
  const fast = submit(fuseRequest(FUSE_GETATTR, 42n, 6n, new Uint8Array(16)), [64]);
  assert.is(core.queuePop(0), POP_REQUEST);
  assert.is(core.requestResume(0, head, 41n, FUSE_READ), -EBUSY, 'not while another request is current');
  assert.is(core.replySend(0, 0, 0), 0);
  assert.equal(driver.pollUsed(), [{ id: fast.head, len: 16 }]);

  assert.is(core.requestResume(0, head, 41n, FUSE_READ), 1);
  assert.is(core.reqOpcode(), FUSE_READ);
  assert.is(core.reqUnique(), 41n);
  core.bytes().set(Array.from({ length: 60 }, (_, i) => i), core.replyPtr);
  assert.is(core.payloadScatter(core.replyPtr, 16, 60), 60, 'the payload goes into the resumed chain');
  assert.is(core.replySend(0, 0, 60), 0);
  assert.equal(driver.pollUsed(), [{ id: head, len: 76 }]);
  const out = new Uint8Array([...read(slow.writable[0].gpa, 16), ...read(slow.writable[1].gpa, 100)]);
  assert.equal(outHeader(out), { len: 76, error: 0, unique: 41n });
  assert.equal([...out.subarray(16, 76)], Array.from({ length: 60 }, (_, i) => i));
  assert.is(core.requestResume(0, 99, 1n, FUSE_READ), -EINVAL, 'a head outside the queue');
});

test('a chain rewritten while parked goes back with len 0 and nothing is written', async () => {
  const { core, driver, submit, read } = await rig();
  const slow = submit(fuseRequest(FUSE_READ, 7n, 5n, readArgs), [64]);
  assert.is(core.queuePop(0), POP_REQUEST);
  const head = core.requestPark();
  const before = read(slow.writable[0].gpa, 64);
  // The guest points the writable descriptor outside its memory meanwhile.
  driver.writeDesc(slow.head + 1, { addr: GPA + BigInt(RAM) + 4096n, len: 64, flags: 2, next: 0 });
  assert.is(core.requestResume(0, head, 7n, FUSE_READ), -EINVAL);
  assert.equal(driver.pollUsed(), [{ id: head, len: 0 }]);
  assert.equal(read(slow.writable[0].gpa, 64), before);
  assert.is(core.replySend(0, 0, 0), -EINVAL, 'nothing is current');
});

test('a parked linear (/dev/fuse) request is answered with a body into the out buffer', async () => {
  const { core } = await rig();
  const req = fuseRequest(FUSE_READ, 9n, 3n, readArgs);
  core.bytes().set(req, core.linearInPtr);
  assert.is(core.linearPop(core.linearInPtr, req.length, core.linearOutPtr, core.linearBufSize), POP_REQUEST);
  assert.is(core.requestPark(), 0);
  const other = fuseRequest(FUSE_GETATTR, 10n, 4n, new Uint8Array(16));
  core.bytes().set(other, core.linearInPtr);
  assert.is(core.linearPop(core.linearInPtr, other.length, core.linearOutPtr, core.linearBufSize), POP_REQUEST);
  assert.is(core.replySend(-2, 0, 0), 0);
  assert.is(core.linearReplyLen(), 16);
  assert.is(core.linearResume(core.linearOutPtr, core.linearBufSize, 9n, FUSE_READ), 1);
  assert.is(core.reqQueue(), LINEAR_QUEUE);
  assert.is(core.payloadReadIov(16, 5), 1);
  core.bytes().set([1, 2, 3, 4, 5], core.linearOutPtr + 16);
  assert.is(core.replySend(0, 0, 5), 0);
  assert.is(core.linearReplyLen(), 21);
  const out = core.bytes().slice(core.linearOutPtr, core.linearOutPtr + 21);
  assert.equal(outHeader(out), { len: 21, error: 0, unique: 9n });
  assert.equal([...out.subarray(16)], [1, 2, 3, 4, 5]);
});

test.run();

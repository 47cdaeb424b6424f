/**
 * Asynchronous FileSystem methods through the real server and queue processor over a synthetic virtqueue (no
 * socket): a pending LOOKUP is answered with its full entry into its own chain after a GETATTR was answered; a
 * queue reset while it is pending forgets it: its late entry is taken back (forget of one lookup) and nothing is
 * written to the buffers it had.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { FuseServer } from '../host/fuse/server.js';
import { QueueProcessor } from '../host/virtio/queue-processor.js';
import type { AttrTarget, Entry, FileSystem } from '../host/fuse/filesystem.js';
import { FUSE_GETATTR, FUSE_INIT, FUSE_LOOKUP } from '../host/fuse/protocol.js';
import { fuseRequest } from './util/fuse-request.js';
import { outHeader, queueRig } from './util/queue-rig.js';

const NODE = 5;

function initArgs(): Uint8Array {
  const b = new Uint8Array(64);
  const v = new DataView(b.buffer);
  v.setUint32(0, 7, true);
  v.setUint32(4, 31, true);
  return b;
}

/** A filesystem whose LOOKUP waits for `release()`; counts lookups it handed out and forgets it got. */
function gatedFs() {
  const gates: Array<() => void> = [];
  const state = { held: 0, forgets: [] as number[][] };
  const fill = (attr: AttrTarget) => attr.set({ ino: NODE, mode: 0o100644, nlink: 1, uid: 0, gid: 0, size: 3 });
  const fs: FileSystem = {
    lookup: (_c, _p, _n, attr) => new Promise<Entry>((resolve) => gates.push(() => {
      state.held++;
      fill(attr); // after the await: the request's own AttrTarget
      resolve({ nodeId: NODE, generation: 0 });
    })),
    forget: (node, n) => {
      state.forgets.push([node, n]);
      state.held -= n;
    },
    getattr: (_c, _n, _fh, attr) => {
      attr.set({ ino: 1, mode: 0o040755, nlink: 2, uid: 0, gid: 0, size: 0 });
      return 0;
    },
  };
  return { fs, state, release: () => gates.shift()!() };
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

async function setup() {
  const r = await queueRig();
  const g = gatedFs();
  const server = new FuseServer(g.fs, r.core, { cache: 'auto' });
  const qp = new QueueProcessor(r.core, server, 0);
  const init = r.submit(fuseRequest(FUSE_INIT, 1n, 0n, initArgs()), [16 + 80]);
  qp.run();
  assert.equal(r.driver.pollUsed().map((u) => u.id), [init.head]);
  return { ...r, ...g, server, qp };
}

const lookupArgs = new TextEncoder().encode('file\0');

test('a pending LOOKUP is answered with its entry after a later GETATTR', async () => {
  const s = await setup();
  const lookup = s.submit(fuseRequest(FUSE_LOOKUP, 2n, 1n, lookupArgs), [16, 128]);
  s.qp.run();
  assert.is(s.server.pendingCount, 1);
  const getattr = s.submit(fuseRequest(FUSE_GETATTR, 3n, 1n, new Uint8Array(16)), [16 + 104]);
  s.qp.run();
  assert.equal(s.driver.pollUsed(), [{ id: getattr.head, len: 120 }], 'GETATTR answered while LOOKUP is pending');
  s.release();
  await tick();
  assert.equal(s.driver.pollUsed(), [{ id: lookup.head, len: 144 }]);
  assert.equal(outHeader(s.read(lookup.writable[0].gpa, 16)), { len: 144, error: 0, unique: 2n });
  const body = new DataView(s.read(lookup.writable[1].gpa, 128).buffer);
  assert.is(Number(body.getBigUint64(0, true)), NODE, 'fuse_entry_out.nodeid');
  assert.is(Number(body.getBigUint64(40 + 8, true)), 3, 'fuse_attr.size, written after the await');
  assert.is(s.state.held, 1);
});

test('a queue reset forgets a pending LOOKUP: its entry is taken back, its buffers stay untouched', async () => {
  const s = await setup();
  const lookup = s.submit(fuseRequest(FUSE_LOOKUP, 2n, 1n, lookupArgs), [16, 128]);
  s.qp.run();
  assert.is(s.server.pendingCount, 1);
  s.core.queueReset(0);
  s.qp.reset();
  assert.is(s.server.pendingCount, 0);
  s.release();
  await tick();
  assert.equal(s.state.forgets, [[NODE, 1]], 'the late entry was taken back');
  assert.is(s.state.held, 0);
  assert.equal(s.driver.pollUsed(), [], 'no used element for the forgotten request');
  assert.ok(s.read(lookup.writable[0].gpa, 16).every((b) => b === 0), 'nothing written to its buffers');
  assert.ok(s.read(lookup.writable[1].gpa, 128).every((b) => b === 0));
});

test.run();

/**
 * --thread-pool-size: requests that block on the host do not stall the queue (host/passthrough/blocking-io.ts).
 *
 * The daemon (a child process, the CLI) shares a directory whose file `slow` blocks its readers until this test
 * releases them (test/util/slow-share.ts: a FUSE mount this process serves). Verdicts are event orders, never
 * durations: with a pool, 8 READs of `slow` are held in the host at once while GETATTRs and LOOKUPs on the same
 * queue complete; without one (thread-pool-size=0) the first READ holds the daemon's only thread and no GETATTR
 * completes until the last READ was released. Then: RELEASE of a handle with a pooled READ in flight, and a
 * frontend that disconnects with READs in flight (the held fd stays open until they finish, the daemon serves
 * the next frontend).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FUSE_ROOT_ID } from '../host/fuse/protocol.js';
import { missingDevFuse, skipIf } from './util/prereq.js';
import { connectWhenListening, spawnSocketDaemon } from './util/socket-daemon.js';
import { slowContent } from './util/slow-share.js';
import {
  CHUNK, GETATTRS, READS, fdLinks, fdsOnSlow, openSlow, removeRigTmp, rigSocketPath, rigTmpDir, slowRig,
  startMetadata, startReads,
} from './util/slow-rig.js';
import { waitFor } from './util/wait.js';
import { terminateChild } from './util/runtime.js';

const rig = (poolSize: number) => slowRig([`--thread-pool-size=${poolSize}`]);

test('pool on: 8 READs held in the host at once while GETATTR/LOOKUP on the same queue complete; data right', async () => {
  if (skipIf(missingDevFuse())) return;
  const r = await rig(8);
  try {
    const { node, fh } = await openSlow(r.fc);
    const done = { reads: 0, meta: 0 };
    const reads = startReads(r.fc, node, fh, done);
    await waitFor(() => r.share.fs.seen === READS, 'all 8 READs to be waiting in the host', 30_000);
    const meta = startMetadata(r.fc, done);
    await Promise.all(meta);
    assert.is(done.meta, GETATTRS);
    assert.is(done.reads, 0, 'no READ completed: all 8 are still held in the host');
    assert.is(r.share.fs.held.length, READS);
    r.share.releaseAll();
    await Promise.all(reads);
    assert.is(done.reads, READS);
  } finally {
    await r.close();
  }
});

test('pool off (thread-pool-size=0): the first held READ stalls the queue; no GETATTR completes before the last READ', async () => {
  if (skipIf(missingDevFuse())) return;
  const r = await rig(0);
  try {
    const { node, fh } = await openSlow(r.fc);
    const done = { reads: 0, meta: 0 };
    const reads = startReads(r.fc, node, fh, done);
    await waitFor(() => r.share.fs.seen === 1, 'the first READ to be waiting in the host', 30_000);
    const meta = startMetadata(r.fc, done);
    const metaBeforeLastRelease: number[] = [];
    // Each release lets the daemon reach the next READ, which blocks it again: the metadata requests behind them
    // in the ring cannot be served before the 8th is released.
    for (let i = 1; i < READS; i++) {
      r.share.releaseOne();
      await waitFor(() => r.share.fs.seen === i + 1, `READ ${i + 1} to reach the host`, 30_000);
      metaBeforeLastRelease.push(done.meta);
    }
    assert.equal(metaBeforeLastRelease, new Array(READS - 1).fill(0), 'no GETATTR/LOOKUP completed behind a held READ');
    assert.is(r.share.fs.held.length, 1, 'one READ at a time reaches the host');
    r.share.releaseOne();
    await Promise.all([...reads, ...meta]);
    assert.is(done.meta, GETATTRS);
  } finally {
    await r.close();
  }
});

test('RELEASE of a handle whose pooled READ is in flight waits for it; the READ gets its data', async () => {
  if (skipIf(missingDevFuse())) return;
  const r = await rig(4);
  try {
    const { node, fh } = await openSlow(r.fc);
    let readDone = false;
    let released = false;
    const want = slowContent();
    const read = r.fc.read(node, fh, 3 * CHUNK, CHUNK).then((got) => { readDone = true; return got; });
    await waitFor(() => r.share.fs.seen === 1, 'the READ to be waiting in the host', 30_000);
    const release = r.fc.release(node, fh).then(() => { released = true; });
    await r.fc.getattr(FUSE_ROOT_ID); // served after the RELEASE was seen
    assert.not.ok(released, 'RELEASE is not answered while the READ on its handle runs');
    assert.not.ok(readDone);
    r.share.releaseOne();
    assert.equal(await read, want.subarray(3 * CHUNK, 4 * CHUNK));
    await release;
    assert.ok(released);
  } finally {
    await r.close();
  }
});

test('disconnect with pooled READs in flight: their fd stays open until they finish; the next frontend is served', async () => {
  if (skipIf(missingDevFuse())) return;
  const r = await rig(8);
  try {
    const { node, fh } = await openSlow(r.fc);
    const pid = r.daemon.child.pid!;
    const inflight = startReads(r.fc, node, fh, { reads: 0 }).map((p) => p.then(() => 'answered', () => 'failed'));
    await waitFor(() => r.share.fs.seen === READS, 'all 8 READs to be waiting in the host', 30_000);
    assert.is(fdsOnSlow(pid, r.share), 2, `the node's fd and the open handle's (fds: ${fdLinks(pid).join(' ')})`);
    r.fc.close(); // the frontend goes away: the session ends, its handles are dropped
    assert.equal(new Set(await Promise.all(inflight)), new Set(['failed']), 'the client gave up on them');
    // A new frontend connects while the old READs still sleep in the host: the daemon serves it.
    const fc2 = await connectWhenListening(r.daemon.socket, { depth: 16, timeoutMs: 60_000 });
    try {
      await fc2.init();
      assert.is((await fc2.lookup(FUSE_ROOT_ID, 'fast')).attr.size, 4);
      assert.is(r.share.fs.held.length, READS, 'the old READs are still held');
      assert.is(fdsOnSlow(pid, r.share), 1, 'the session is gone, but the handle\'s fd is kept open for the jobs using it');
      r.share.releaseAll();
      await waitFor(() => fdsOnSlow(pid, r.share) === 0, 'the fd to be closed once the jobs finished', 30_000);
      // The new session reads the file (gates now answered as they come).
      const s = await openSlow(fc2);
      const got = fc2.read(s.node, s.fh, 0, CHUNK);
      await waitFor(() => r.share.fs.held.length === 1, 'the new READ to reach the host', 30_000);
      r.share.releaseAll();
      assert.equal(await got, slowContent().subarray(0, CHUNK));
      assert.is(r.daemon.child.exitCode, null, 'the daemon is still running');
    } finally {
      fc2.close();
    }
  } finally {
    await r.close();
  }
});

test('pool on, a plain directory: WRITEs (inline on a local filesystem), FSYNC and FDATASYNC (pooled), then READs see the data', async () => {
  const dir = rigTmpDir('plain-');
  const socket = rigSocketPath();
  const daemon = await spawnSocketDaemon(dir, socket, { args: ['--thread-pool-size=2', '--cache=never', '--log-level=warn'] });
  const fc = await connectWhenListening(socket, { depth: 16, timeoutMs: 60_000 });
  try {
    await fc.init();
    const c = await fc.create(FUSE_ROOT_ID, 'data', 0o2 /* O_RDWR */, 0o644);
    const node = c.entry.nodeid;
    const want = new Uint8Array(3 * 65536);
    for (let i = 0; i < want.length; i++) want[i] = (i * 13 + (i >> 16)) & 0xff;
    const n = await Promise.all([0, 1, 2].map((k) => fc.write(node, c.fh, k * 65536, want.subarray(k * 65536, (k + 1) * 65536))));
    assert.equal(n, [65536, 65536, 65536]);
    await fc.fsync(node, c.fh, false);
    await fc.fsync(node, c.fh, true);
    const got = await Promise.all([0, 1, 2].map((k) => fc.read(node, c.fh, k * 65536, 65536)));
    assert.equal(Buffer.concat(got), Buffer.from(want));
    assert.equal(new Uint8Array(fs.readFileSync(path.join(dir, 'data'))), want, 'on the host');
    await fc.release(node, c.fh);
  } finally {
    fc.close();
    await terminateChild(daemon.child);
  }
});

test.after(removeRigTmp);

test.run();

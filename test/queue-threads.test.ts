/**
 * --queue-threads: each request queue on a thread of its own (host/virtio/queue-thread.ts).
 *
 * The daemon (the CLI, a child process) shares the slow directory of test/util/slow-share.ts, whose `slow` holds
 * its readers until this test releases them; the client has 2 request queues. Verdicts are event orders: with
 * threads and no pool, a READ of `slow` on queue 1 holds queue 1's thread in its preadv while queue 2 serves
 * GETATTR, LOOKUP and READ; without threads the same READ holds the one thread, and queue 2 waits with it (the
 * protection removed). Then: RELEASE on queue 2 of the handle queue 1's thread is reading (its fd is closed
 * only after the read), requests the main thread answers later (pooled READs, FSYNC), a frontend that goes
 * away while they wait, and a plain directory's data written and read on both queues, with the stats line
 * saying READ and WRITE were served on the threads.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FUSE_ROOT_ID } from '../host/fuse/protocol.js';
import { parseStatsLine } from '../host/stats.js';
import { missingDevFuse, skipIf } from './util/prereq.js';
import { connectWhenListening, spawnSocketDaemon } from './util/socket-daemon.js';
import { slowContent } from './util/slow-share.js';
import {
  CHUNK, GETATTRS, READS, fdsOnSlow, observed, openSlow, removeRigTmp, rigSocketPath, rigTmpDir, slowRig, startMetadata,
  startReads,
} from './util/slow-rig.js';
import { waitFor } from './util/wait.js';
import { signalChild, terminateChild } from './util/runtime.js';

const THREADS = ['--queue-threads', '--num-request-queues=2'];
/** The client's request queues: index 0 is the device's queue 1. */
const Q1 = 0;
const Q2 = 1;

/** READ of `fast` (4 bytes) on queue q. */
async function readFast(fc: Awaited<ReturnType<typeof slowRig>>['fc'], q: number): Promise<string> {
  const node = (await fc.lookup(FUSE_ROOT_ID, 'fast', q)).nodeid;
  const { fh } = await fc.open(node, 0, q);
  const got = Buffer.from(await fc.read(node, fh, 0, 16, q)).toString();
  await fc.release(node, fh, 0, q);
  return got;
}

test('threads, no pool: a READ held on queue 1\'s thread; queue 2 serves GETATTR, LOOKUP and READ meanwhile',
  async () => {
  if (skipIf(missingDevFuse())) return;
  const r = await slowRig([...THREADS, '--thread-pool-size=0'], 2);
  try {
    const { node, fh } = await openSlow(r.fc, Q1);
    const done = { reads: 0, meta: 0 };
    const reads = startReads(r.fc, node, fh, done, Q1);
    await waitFor(() => r.share.fs.seen === 1, 'the first READ to be waiting in the host', 30_000);
    await Promise.all(startMetadata(r.fc, done, Q2));
    assert.is(done.meta, GETATTRS);
    assert.is(await readFast(r.fc, Q2), 'fast');
    assert.is(done.reads, 0, 'no READ of queue 1 completed: its thread is in the first');
    assert.is(r.share.fs.held.length, 1, 'one READ at a time reaches the host from queue 1\'s thread');
    r.share.open();
    await Promise.all(reads);
    assert.is(done.reads, READS);
  } finally {
    await r.close();
  }
});

test('no threads (protection removed): the same held READ on queue 1 stalls queue 2 as well', async () => {
  if (skipIf(missingDevFuse())) return;
  const r = await slowRig(['--num-request-queues=2', '--thread-pool-size=0'], 2);
  try {
    const { node, fh } = await openSlow(r.fc, Q1);
    const done = { reads: 0, meta: 0 };
    const reads = startReads(r.fc, node, fh, done, Q1);
    await waitFor(() => r.share.fs.seen === 1, 'the first READ to be waiting in the host', 30_000);
    const meta = startMetadata(r.fc, done, Q2);
    const metaBeforeLastRelease: number[] = [];
    for (let i = 1; i < READS; i++) {
      r.share.releaseOne();
      await waitFor(() => r.share.fs.seen === i + 1, `READ ${i + 1} to reach the host`, 30_000);
      metaBeforeLastRelease.push(done.meta);
    }
    assert.equal(metaBeforeLastRelease, new Array(READS - 1).fill(0), 'no request of queue 2 completed');
    r.share.releaseOne();
    await Promise.all([...reads, ...meta]);
    assert.is(done.meta, GETATTRS);
  } finally {
    await r.close();
  }
});

test('RELEASE on queue 2 of the handle queue 1\'s thread is reading: answered, the fd closed only after the READ',
  async () => {
  if (skipIf(missingDevFuse())) return;
  const r = await slowRig([...THREADS, '--thread-pool-size=0'], 2);
  try {
    const pid = r.daemon.child.pid!;
    const { node, fh } = await openSlow(r.fc, Q1);
    assert.is(fdsOnSlow(pid, r.share), 2, 'the node\'s fd and the open handle\'s');
    const [read] = observed([r.fc.read(node, fh, 5 * CHUNK, CHUNK, Q1)]);
    await waitFor(() => r.share.fs.seen === 1, 'the READ to be waiting in the host', 30_000);
    await r.fc.release(node, fh, 0, Q2);
    assert.is(fdsOnSlow(pid, r.share), 2, 'the handle\'s fd stays open while the thread is in a syscall on it');
    r.share.releaseOne();
    assert.equal(await read, slowContent().subarray(5 * CHUNK, 6 * CHUNK));
    await waitFor(() => fdsOnSlow(pid, r.share) === 1, 'the handle\'s fd to be closed once the READ returned', 30_000);
    assert.is(await readFast(r.fc, Q1), 'fast', 'queue 1 serves on');
  } finally {
    await r.close();
  }
});

test('threads with a pool: READs that would block go to the main thread\'s pool; 8 held while both queues serve',
  async () => {
  if (skipIf(missingDevFuse())) return;
  const r = await slowRig([...THREADS, '--thread-pool-size=8'], 2);
  try {
    const { node, fh } = await openSlow(r.fc, Q1);
    const done = { reads: 0, meta: 0 };
    const reads = startReads(r.fc, node, fh, done, Q1);
    await waitFor(() => r.share.fs.seen === READS, 'all 8 READs to be waiting in the host', 30_000);
    await Promise.all([...startMetadata(r.fc, done, Q1), ...startMetadata(r.fc, done, Q2)]);
    assert.is(done.meta, 2 * GETATTRS);
    assert.is(done.reads, 0);
    r.share.releaseAll();
    await Promise.all(reads);
    assert.is(done.reads, READS);
  } finally {
    await r.close();
  }
});

test('threads: a frontend gone while the main thread holds its queue\'s READs; the next frontend is served',
  async () => {
  if (skipIf(missingDevFuse())) return;
  const r = await slowRig([...THREADS, '--thread-pool-size=8'], 2);
  try {
    const pid = r.daemon.child.pid!;
    const { node, fh } = await openSlow(r.fc, Q2);
    const inflight = startReads(r.fc, node, fh, { reads: 0 }, Q2).map((p) => p.then(() => 'answered', () => 'failed'));
    await waitFor(() => r.share.fs.seen === READS, 'all 8 READs to be waiting in the host', 30_000);
    r.fc.close();
    assert.equal(new Set(await Promise.all(inflight)), new Set(['failed']), 'the client gave up on them');
    const fc2 = await connectWhenListening(r.daemon.socket, { depth: 16, queues: 2, timeoutMs: 60_000 });
    try {
      await fc2.init();
      r.share.releaseAll(); // their replies go to a ring that is gone: dropped
      await waitFor(() => fdsOnSlow(pid, r.share) === 0, 'the old session\'s fds to be closed', 30_000);
      for (const q of [Q1, Q2]) assert.is(await readFast(fc2, q), 'fast', `queue ${q + 1} serves the new frontend`);
      r.share.open();
      const s = await openSlow(fc2, Q2);
      assert.equal(await fc2.read(s.node, s.fh, 0, CHUNK, Q2), slowContent().subarray(0, CHUNK));
      assert.is(r.daemon.child.exitCode, null, 'the daemon is still running');
    } finally {
      fc2.close();
    }
  } finally {
    await r.close();
  }
});

for (const pool of [0, 2]) {
  test(`threads, pool ${pool}, a plain directory: WRITE, FSYNC, READ on both queues; READ/WRITE served on the threads`,
    async () => {
    const dir = rigTmpDir('plain-');
    const socket = rigSocketPath();
    const daemon = await spawnSocketDaemon(dir, socket, { args: [...THREADS, `--thread-pool-size=${pool}`,
      '--cache=never', '--log-level=warn'] });
    const fc = await connectWhenListening(socket, { depth: 16, queues: 2, timeoutMs: 60_000 });
    try {
      await fc.init();
      const want = new Uint8Array(4 * 65536);
      for (let i = 0; i < want.length; i++) want[i] = (i * 13 + (i >> 16)) & 0xff;
      for (const q of [Q1, Q2]) {
        const c = await fc.create(FUSE_ROOT_ID, `data${q}`, 0o2 /* O_RDWR */, 0o644, q);
        const node = c.entry.nodeid;
        const chunks = [0, 1, 2, 3];
        const n = await Promise.all(chunks.map((k) =>
          fc.write(node, c.fh, k * 65536, want.subarray(k * 65536, (k + 1) * 65536), q)));
        assert.equal(n, [65536, 65536, 65536, 65536]);
        await fc.fsync(node, c.fh, false, q);
        // Read back on the other queue: a handle opened through the main thread serves on either thread.
        const other = q === Q1 ? Q2 : Q1;
        const got = await Promise.all(chunks.map((k) => fc.read(node, c.fh, k * 65536, 65536, other)));
        assert.equal(Buffer.concat(got), Buffer.from(want));
        assert.is((await fc.getattr(node, undefined, other)).attr.size, want.length);
        await fc.release(node, c.fh, 0, q);
        assert.equal(new Uint8Array(fs.readFileSync(path.join(dir, `data${q}`))), want, 'on the host');
      }
      const before = daemon.stderr().length;
      signalChild(daemon.child, 'SIGUSR2');
      await waitFor(() => parseStatsLine(daemon.stderr().slice(before)) !== undefined, 'the stats line', 30_000);
      const stats = parseStatsLine(daemon.stderr().slice(before))!;
      for (const q of [1, 2]) {
        const s = stats.queues.find((x) => x.queue === q);
        // Per queue: 4 WRITEs and 4 READs of the file created on it or the other one.
        assert.ok((s?.servedOnThread ?? 0) >= 8, `queue ${q}: READ/WRITE on its thread: ${s?.servedOnThread}`);
        assert.ok((s?.served ?? 0) > (s?.servedOnThread ?? 0), `queue ${q}: the rest through the main thread`);
      }
      // The per-operation stats count the READs and WRITEs the threads served (8 of each, 4 per queue).
      const at = daemon.stderr().length;
      signalChild(daemon.child, 'SIGUSR1');
      const countOf = (name: string): number | undefined => {
        const row = new RegExp(`^${name} +(\\d+) `, 'm').exec(daemon.stderr().slice(at));
        return row === null ? undefined : Number(row[1]);
      };
      await waitFor(() => /^pending requests: /m.test(daemon.stderr().slice(at)), 'the operation stats', 30_000);
      assert.ok(countOf('READ')! >= 8 && countOf('WRITE')! >= 8, `READ ${countOf('READ')}, WRITE ${countOf('WRITE')}`);
    } finally {
      fc.close();
      await terminateChild(daemon.child);
    }
  });
}

test.after(removeRigTmp);

test.run();

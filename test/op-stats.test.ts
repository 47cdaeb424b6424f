/**
 * OpStats (host/fuse/op-stats.ts): what a server records, and what another thread records into SharedOpCounters
 * (a queue thread's own READ and WRITE), in one snapshot.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { OpStats, SharedOpCounters, percentileUs } from '../host/fuse/op-stats.js';
import * as P from '../host/fuse/protocol.js';

const byName = (stats: OpStats, name: string) => stats.snapshot().find((s) => s.name === name);

test('a snapshot adds the shared counters to the server\'s own, and leaves both as they were', () => {
  const stats = new OpStats();
  stats.record(P.FUSE_READ, false, 0.002, false); // 2 us
  stats.record(P.FUSE_GETATTR, false, 0.001, false);
  const writer = SharedOpCounters.create([P.FUSE_READ, P.FUSE_WRITE]);
  // The other thread's view of the same memory.
  const thread = new SharedOpCounters(writer.buffer, [P.FUSE_READ, P.FUSE_WRITE]);
  thread.record(P.FUSE_READ, false, 0.5); // 500 us
  thread.record(P.FUSE_READ, true, 0.004);
  thread.record(P.FUSE_WRITE, false, 0.003);
  thread.record(P.FUSE_GETATTR, false, 1); // not one of its opcodes: not recorded
  stats.include(writer);
  for (let i = 0; i < 2; i++) {
    const read = byName(stats, 'READ')!;
    assert.is(read.count, 3);
    assert.is(read.errors, 1);
    assert.is(read.totalUs, 506);
    assert.is(read.maxUs, 500);
    assert.is(read.latency.reduce((a, b) => a + b, 0), 3);
    assert.is(percentileUs(read, 1), 512);
    assert.is(byName(stats, 'WRITE')!.count, 1);
    assert.is(byName(stats, 'GETATTR')!.count, 1);
  }
  assert.equal(stats.snapshot().map((s) => s.name), ['GETATTR', 'READ', 'WRITE'], 'by opcode');
});

test('SharedOpCounters refuses a buffer of another size (the two threads disagree on the opcodes)', () => {
  const a = SharedOpCounters.create([P.FUSE_READ]);
  assert.throws(() => new SharedOpCounters(a.buffer, [P.FUSE_READ, P.FUSE_WRITE]), /buffer size/);
});

test.run();

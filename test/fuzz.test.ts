/**
 * The fuzz targets (test/fuzz/targets.ts) on a bounded budget for CI: each target runs a fixed number of cases
 * (CASES, times FUZZ_SCALE) from a run seed that is new on every run (FUZZ_SEED=S replays a run: the same seed
 * gives the same cases, whatever the machine's load), and none may find anything. The seed and the command that
 * replays the run are printed first. `npm run fuzz` runs them longer.
 *
 * Before that, the harness's own checks are shown to fire (a fuzzer whose invariants cannot fail finds nothing
 * and proves nothing): a byte changed behind the core's back, an iovec outside guest RAM, a wrong request field.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { FuzzRig, Finding, QueueUnderTest, goodRequest, GPA_C, UVA_DELTA } from './fuzz/harness.js';
import { CORE_TARGETS, runTarget, RUN } from './fuzz/targets.js';
import { caseSeed } from './fuzz/prng.js';
import { VhostUserRig, checkLeaks, goodSession, guestMappings, vhostUserCase } from './fuzz/vhost-user-target.js';
import { GuestMemory } from '../host/frontend/vhost-user-frontend.js';
import { native } from '../host/native-loader.js';
// (Imported for its start-up effect under Deno: the runtime's own lazily made fds exist before any count.)
import './util/runtime.js';
import { randomInt } from 'node:crypto';

/** Cases per target: a few seconds each on a 2-core machine. */
const CASES: Record<string, number> = { ring: 300, codec: 800, dirent: 8000, 'dax-ranges': 3000, 'vhost-user': 800 };
const SCALE = Number(process.env.FUZZ_SCALE ?? 1);
/** Only an outer limit: a target that has not run its cases by then fails, saying so. */
const OUTER_LIMIT_MS = 4 * 60_000;
const RUN_SEED = (process.env.FUZZ_SEED !== undefined ? Number(process.env.FUZZ_SEED) : randomInt(2 ** 31)) >>> 0;
const wasmPath = process.env.CORE_WASM;
console.log(`fuzz: run seed ${RUN_SEED}; replay this run: FUZZ_SEED=${RUN_SEED}${SCALE !== 1 ? ` FUZZ_SCALE=${SCALE}` : ''} `
  + 'node test/run.js fuzz.test');

function expectFinding(invariant: string, fn: () => void): void {
  try {
    fn();
  } catch (err) {
    assert.instance(err, Finding, (err as Error).message);
    assert.is((err as Finding).invariant, invariant, (err as Error).message);
    return;
  }
  assert.unreachable(`expected a ${invariant} finding`);
}

async function expectFindingAsync(invariant: string, fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (err) {
    assert.instance(err, Finding, (err as Error).message);
    assert.is((err as Finding).invariant, invariant, (err as Error).message);
    return;
  }
  assert.unreachable(`expected a ${invariant} finding`);
}

// A dropped windowed rig must not leave memfds mapped in memory the runtime reuses (Core.dropTestRegions).
test.after.each(() => FuzzRig.dropAll());

test('harness: a guest-memory change the model did not make is a finding', async () => {
  const rig = await FuzzRig.create(wasmPath);
  rig.reset();
  const qt = new QueueUnderTest(rig, {
    num: 8, eventIdx: false, indirect: false, lastAvail: 0,
    descUva: GPA_C + UVA_DELTA, availUva: GPA_C + 128n + UVA_DELTA, usedUva: GPA_C + 4096n + UVA_DELTA,
  });
  assert.is(qt.pop().rc, 0, 'empty ring');
  rig.live()[12345] ^= 1; // "the core" wrote a byte it should not have
  expectFinding('memory', () => qt.pop());
});

test('harness: an iovec outside every region is a finding', async () => {
  const rig = await FuzzRig.create(wasmPath);
  const v = rig.core.view();
  v.setBigUint64(rig.core.iovPtr, rig.core.linearBase + BigInt(rig.core.replyPtr), true); // core scratch, not RAM
  v.setBigUint64(rig.core.iovPtr + 8, 16n, true);
  expectFinding('iov-in-region', () => rig.checkIovInRegions(1, 'test'));
});

test('harness: the good-request check notices a core that lost its memory table', async () => {
  const rig = await FuzzRig.create(wasmPath);
  rig.reset();
  goodRequest(rig, 1n);
  rig.core.memReset();
  expectFinding('good-request', () => goodRequest(rig, 2n));
});

test('harness: a case replays identically from its seed', async () => {
  const a = await FuzzRig.create(wasmPath);
  const b = await FuzzRig.create(wasmPath);
  for (let i = 0; i < 20; i++) {
    const seed = caseSeed(RUN_SEED, i);
    RUN.ring(a, seed);
    RUN.ring(b, seed);
    assert.ok(Buffer.from(a.live()).equals(Buffer.from(b.live())), `case ${seed}: same guest memory afterwards`);
  }
});

test('vhost-user harness: a leaked fd and a leaked guest mapping are findings; a good session is served', async () => {
  const rig = await VhostUserRig.create();
  try {
    await goodSession(rig);
    await checkLeaks(rig); // the baseline
    assert.is(rig.goodSessions, 1);
    const fd = native.eventfd(0, 0);
    await expectFindingAsync('vhost-fd-leak', () => checkLeaks(rig));
    native.close(fd);
    await checkLeaks(rig);
    const before = guestMappings();
    const extra = GuestMemory.create(1 << 16, { name: 'vu-fuzz-extra' }); // a mapping of a vu-fuzz memfd
    assert.is(guestMappings(), before + 1);
    native.close(extra.fd); // keep the mapping, drop the fd: only the mapping differs from the baseline
    await expectFindingAsync('vhost-map-leak', () => checkLeaks(rig));
    native.unmapFrom(extra.memory.buffer, 0, extra.size);
    await checkLeaks(rig);
  } finally {
    rig.close();
  }
});

test('vhost-user harness: a case replays identically from its seed', async () => {
  const rig = await VhostUserRig.create();
  try {
    for (let i = 0; i < 10; i++) {
      const seed = caseSeed(RUN_SEED, i);
      const a = await vhostUserCase(rig, seed).then(() => 'ok', (e: Error) => e.message);
      const b = await vhostUserCase(rig, seed).then(() => 'ok', (e: Error) => e.message);
      assert.is(a, b, `case ${seed}`);
    }
  } finally {
    rig.close();
  }
});

for (const target of [...CORE_TARGETS, 'vhost-user' as const]) {
  const cases = Math.max(1, Math.round(CASES[target] * SCALE));
  test(`fuzz ${target}: ${cases} cases from the run seed, no finding`, async () => {
    const stats = await runTarget(target, RUN_SEED, OUTER_LIMIT_MS, cases, wasmPath);
    console.log(`  ${target}: ${stats.executions} cases in ${(stats.ms / 1000).toFixed(1)} s (run seed ${RUN_SEED})`);
    const first = stats.findings[0];
    assert.is(stats.findings.length, 0, first && `${first.message} — replay the case: npm run fuzz -- --target ${target} `
      + `--case-seed ${first.caseSeed}; the run: FUZZ_SEED=${RUN_SEED} node test/run.js fuzz.test`);
    assert.is(stats.executions, cases, `${target} ran all its cases within the outer limit of ${OUTER_LIMIT_MS / 1000} s`);
  });
}

test.run();

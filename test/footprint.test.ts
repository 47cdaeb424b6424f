/**
 * The CLI daemon's memory policy (host/footprint.ts), each part in a Node child process of its own (V8 flags are
 * process-wide): the young generation does not grow under allocation churn, and a daemon gone idle after serving
 * gets a full, compacting GC (and a malloc trim) without being asked.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { unlessRuntime } from './util/runtime.js';

const FOOTPRINT = fileURLToPath(new URL('../host/footprint.js', import.meta.url));
const nodeOnly = unlessRuntime(test, {
  bun: 'the young-generation limit and the idle GC are V8 flags, applied under Node only',
  deno: 'the young-generation limit and the idle GC are V8 flags, applied under Node only',
});

/** Runs `body` (an async function body, `f` = host/footprint.js) in a fresh `node`; returns its last stdout line. */
function inNode(body: string): string {
  const script = `const f = await import(${JSON.stringify(FOOTPRINT)});\n${body}`;
  const r = spawnSync('node', ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000 });
  assert.is(r.status, 0, `child failed: ${r.stderr}`);
  return r.stdout.trim().split('\n').at(-1)!;
}

/**
 * Allocation churn with survivors (a window of 50k live objects, as requests in flight and a listing being built
 * keep some alive across scavenges): what makes V8 grow new space. Prints new space's size after it.
 */
const CHURN = `
const v8 = await import('node:v8');
const live = new Array(50_000);
for (let i = 0; i < 3_000_000; i++) live[i % live.length] = { i, s: 'x' + (i & 1023) };
const ns = v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space');
console.log(String(ns.space_size), live.length);
`;

nodeOnly('limitYoungGeneration: new space stays near its initial size under churn (without it, it grows 32x)', () => {
  const initial = Number(inNode(`const v8 = await import('node:v8');
console.log(v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space').space_size);`));
  const limited = Number(inNode(`f.limitYoungGeneration();\n${CHURN}`).split(' ')[0]);
  const free = Number(inNode(CHURN).split(' ')[0]);
  // V8 may grow it once before it reads the flag again; unlimited, it doubles up to its 16 MiB semi-space cap.
  assert.ok(free > 4 * initial, `without the limit new space grows (the check can see growth): ${initial} -> ${free}`);
  assert.ok(limited <= 2 * initial, `with the limit it stays: ${initial} -> ${limited}`);
});

nodeOnly('shrinkWhenIdle: a daemon gone idle after serving gets its tables compacted and a full GC; a busy or never-served one does not', () => {
  const out = inNode(`
const { PerformanceObserver, constants } = await import('node:perf_hooks');
let majors = 0;
new PerformanceObserver((l) => { for (const e of l.getEntries()) if (e.detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR) majors++; })
  .observe({ entryTypes: ['gc'] });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
let served = 0;
let compactions = 0;
const stop = f.shrinkWhenIdle(() => served, () => { compactions++; });
await sleep(2500);
const neverServed = majors;
const compactedNeverServed = compactions;
const busy = setInterval(() => { served++; }, 50);
await sleep(2500);
const whileBusy = majors - neverServed;
clearInterval(busy);
await sleep(2500);
const afterIdle = majors - neverServed - whileBusy;
stop();
console.log(JSON.stringify({ neverServed, whileBusy, afterIdle, compactedNeverServed, compactions }));
`);
  const r = JSON.parse(out) as Record<string, number>;
  assert.equal(r, { neverServed: 0, whileBusy: 0, afterIdle: 1, compactedNeverServed: 0, compactions: 1 }, out);
});

/**
 * 400k small objects promoted to old space, then 19 in 20 of them dropped: survivors on every page. Prints old
 * space's committed and used KiB after `collect` (an expression run once the garbage exists).
 */
const fragmented = (collect: string): string => `
const v8 = await import('node:v8');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
let keep = [];
for (let i = 0; i < 400_000; i++) keep.push({ i, s: 'entry-' + i });
for (let j = 0; j < 3; j++) { let junk = []; for (let i = 0; i < 200_000; i++) junk.push({ i }); junk = null; await sleep(1); }
keep = keep.filter((_, i) => i % 20 === 0);
${collect};
const old = v8.getHeapSpaceStatistics().find((s) => s.space_name === 'old_space');
console.log(JSON.stringify({ committed: old.physical_space_size >> 10, used: old.space_used_size >> 10, kept: keep.length }));
`;

nodeOnly('shrinkWhenIdle compacts: old-space pages that garbage emptied go back (a plain full GC keeps them)', () => {
  type Old = { committed: number; used: number; kept: number };
  const plain = JSON.parse(inNode(fragmented(`v8.setFlagsFromString('--expose-gc');
(await import('node:vm')).runInNewContext('gc')()`))) as Old;
  const idle = JSON.parse(inNode(fragmented(`let served = 0; f.shrinkWhenIdle(() => served); served++;
await sleep(2500)`))) as Old;
  assert.is(idle.kept, 20_000);
  assert.ok(plain.committed > plain.used + 16 * 1024,
    `a plain full GC leaves the pages committed (the check can see it): ${JSON.stringify(plain)}`);
  assert.ok(idle.committed < idle.used + 4 * 1024, `the idle GC gives them back: ${JSON.stringify(idle)}`);
});

test.run();

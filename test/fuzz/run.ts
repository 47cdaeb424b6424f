/**
 * `npm run fuzz -- [--seconds N] [--seed S] [--target ring|codec|dirent|dax-ranges|vhost-user] [--case-seed S]`
 *
 * Runs each target (or one) for N seconds (default 60, split evenly) from run seed S (default: time-based,
 * printed), prints executions per target and every finding, and writes each finding as JSON to
 * test/fuzz/findings/<target>-<caseSeed>.json. `--case-seed` replays a single case of one target.
 * Exit code 1 if anything was found. CORE_WASM selects another build of the core (the core targets).
 *
 * The vhost-user target keeps the case it is running in findings/.vhost-user-running.<pid>: if a run died there
 * (a crash such as SIGBUS kills the process), the next run reports that case as a finding first.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TARGETS, TargetName, runTarget, replayCase } from './targets.js';
import { coverage } from './harness.js';
import { CrashMarker } from './vhost-user-target.js';

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const findingsDir = resolve(root, 'test', 'fuzz', 'findings');
const seconds = Number(arg('seconds') ?? 60);
const runSeed = Number(arg('seed') ?? (Date.now() & 0x7fffffff)) >>> 0;
const only = arg('target') as TargetName | undefined;
const wasmPath = process.env.CORE_WASM;
if (only !== undefined && !TARGETS.includes(only)) {
  console.error(`unknown target ${only} (${TARGETS.join(', ')})`);
  process.exit(2);
}

const replay = arg('case-seed');
if (replay !== undefined) {
  const target = only ?? 'ring';
  try {
    await replayCase(target, Number(replay) >>> 0, wasmPath);
    console.log(`${target} case ${replay}: no finding`);
  } catch (err) {
    console.log(`${target} case ${replay}: ${(err as Error).message}`);
    process.exitCode = 1;
  }
} else {
  const targets = only ? [only] : TARGETS;
  console.log(`fuzz: run seed ${runSeed}, ${seconds} s, targets ${targets.join(', ')}`);
  let total = 0;
  for (const died of CrashMarker.collect(findingsDir)) {
    const f = { target: 'vhost-user', ...died, invariant: 'crash', message: `crash: process ${died.pid} died in this case` };
    const file = resolve(findingsDir, `vhost-user-${died.caseSeed}.json`);
    writeFileSync(file, JSON.stringify(f, null, 2) + '\n');
    console.log(`  FINDING vhost-user case-seed ${died.caseSeed} (run seed ${died.runSeed} #${died.index}): process ` +
      `${died.pid} died in it\n    replay: npm run fuzz -- --target vhost-user --case-seed ${died.caseSeed}   (${file})`);
    total++;
  }
  const marker = new CrashMarker(findingsDir);
  process.once('SIGINT', () => { marker.clear(); process.exit(130); }); // interrupted, not crashed
  for (const t of targets) {
    const stats = await runTarget(t, runSeed, (seconds * 1000) / targets.length, Infinity, wasmPath, 10, marker);
    const rate = Math.round(stats.executions / (stats.ms / 1000));
    console.log(`${t.padEnd(10)} ${String(stats.executions).padStart(8)} execs in ${(stats.ms / 1000).toFixed(1)} s ` +
      `(${rate}/s), ${stats.findings.length} findings`);
    for (const f of stats.findings) {
      mkdirSync(findingsDir, { recursive: true });
      const file = resolve(findingsDir, `${f.target}-${f.caseSeed}.json`);
      writeFileSync(file, JSON.stringify(f, null, 2) + '\n');
      console.log(`  FINDING ${f.target} case-seed ${f.caseSeed} (run seed ${f.runSeed} #${f.index}): ${f.message}`);
      console.log(`    replay: npm run fuzz -- --target ${f.target} --case-seed ${f.caseSeed}   (${file})`);
    }
    total += stats.findings.length;
  }
  if (process.argv.includes('--stats')) {
    for (const k of Object.keys(coverage).sort()) console.log(`  ${k.padEnd(32)} ${coverage[k]}`);
  }
  process.exitCode = total ? 1 : 0;
}

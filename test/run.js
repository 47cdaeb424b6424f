#!/usr/bin/env node
// The suite runner: every compiled test file, each in its own runtime process, unit tests first
// (dist/test/**/*.test.js outside e2e/), then the end-to-end tests (dist/test/e2e/*.test.js).
//
//   node test/run.js [--runtime=node|bun|deno] [--runtime-dependent] [filter...]
//     --runtime   the runtime every test file runs in (default: the one running this script). bun and deno
//                 are the devDependencies' binaries (node_modules/.bin), else found on PATH; deno runs
//                 `deno run -A`. Tests that start the CLI or a script start it in the same runtime.
//     --runtime-dependent
//                 leaves out the files in RUNTIME_INDEPENDENT (e2e files whose subject does not change with the
//                 runtime, run once under Node by CI): each is printed with its reason and counted as one skip.
//     filter      only files whose path (relative to dist/test) contains a filter
//
// Each file's output is passed through as it comes. uvu ends a file with `Total: N`, `Passed: N`,
// `Skipped: N`; a file that exits non-zero or prints no totals counts one more failure. A test that
// could not run here (test/util/prereq.ts) returns early after printing `SKIP <file> › "<name>": <reason>`:
// uvu counted it as passed, so each such line moves one test from passed to skipped, and the summary
// lists every skip with its reason. The last line printed is always `N passed, M failed, K skipped`;
// the exit code is 1 when anything failed.
//
// Only compiled files with a TypeScript source (test/**/X.test.ts for dist/test/**/X.test.js) run: a
// stale file left in dist/ by a renamed or deleted test is reported and ignored.
//
// Environment: TEST_FILE_TIMEOUT_MS (per file; default 10 min, 20 min for e2e files) after which the
// file's whole process group (QEMU children included) is SIGKILLed and the file counts as failed. A file still
// running EXIT_GRACE_MS after it printed its totals is killed the same way and fails: something it started (a
// listener, a daemon, a timer) outlived its tests, as after an assertion that skipped a test's cleanup.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const TEST_DIR = path.join(ROOT, 'dist', 'test');
const E2E_DIR = path.join(TEST_DIR, 'e2e');

function findTests(dir) {
  if (!fs.existsSync(dir)) return [];
  const out = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...findTests(full));
    else if (entry.isFile() && entry.name.endsWith('.test.js')) out.push(full);
  }
  return out.sort();
}

const SRC_DIR = path.join(ROOT, 'test');
const found = findTests(TEST_DIR);
const hasSource = (f) => fs.existsSync(path.join(SRC_DIR, path.relative(TEST_DIR, f)).replace(/\.js$/, '.ts'));
const all = found.filter(hasSource);
for (const f of found.filter((x) => !hasSource(x))) {
  console.log(`test/run.js: ignoring ${path.relative(ROOT, f)}: no test/${path.relative(TEST_DIR, f).replace(/\.js$/, '.ts')} (stale build output)`);
}
const isE2e = (f) => f.startsWith(E2E_DIR + path.sep);
const ordered = [...all.filter((f) => !isE2e(f)), ...all.filter(isE2e)];
const args = process.argv.slice(2);
const runtimeArg = args.find((a) => a.startsWith('--runtime='))?.slice('--runtime='.length);
const runtimeDependentOnly = args.includes('--runtime-dependent');
const filters = args.filter((a) => !a.startsWith('--runtime=') && a !== '--runtime-dependent');

/**
 * End-to-end files whose subject is the same whatever runtime serves (paths under dist/test): CI runs them under
 * Node only, so that three runtimes fit its time budget. The guest e2e (e2e/guest.test: the CLI, as root in its
 * namespace sandbox, serving a guest; the C virtiofsd beside it) and the library examples serving a guest
 * (e2e/examples.test) run under every runtime.
 */
const RUNTIME_INDEPENDENT = {
  'e2e/package.test.js': 'npm pack, the install without a compiler and the arm64 prebuilt under qemu-user are the ' +
    'same whatever runtime runs the package (its two guest runs repeat e2e/guest.test\'s, which does run here)',
  'e2e/multiqueue.test.js': 'the kernel\'s mapping of CPUs to 2 request queues (6.12 and 6.1 guests): each queue ' +
    'worker is the code e2e/guest.test runs on one queue here',
  'e2e/launchers.test.js': 'libvirt\'s and Kata\'s argv, an inherited listening fd and syslog: option parsing and fd ' +
    'handling in our code; the re-exec into the namespace sandbox under this runtime is e2e/guest.test\'s',
};

/** The command (and flags) that runs one test file in `name`'s runtime. */
function runtimeCommand(name) {
  if (name === undefined) {
    return 'Deno' in globalThis ? [process.execPath, 'run', '-A'] : [process.execPath];
  }
  if (!['node', 'bun', 'deno'].includes(name)) {
    console.log(`test/run.js: --runtime=${name}: not node, bun or deno`);
    console.log('0 passed, 1 failed');
    process.exit(1);
  }
  if (name === 'node' && !('Deno' in globalThis) && typeof process.versions.bun !== 'string') return [process.execPath];
  const local = path.join(ROOT, 'node_modules', '.bin', name);
  const bin = fs.existsSync(local) ? local : name;
  return name === 'deno' ? [bin, 'run', '-A'] : [bin];
}
const RUNTIME = runtimeCommand(runtimeArg);
const RUNTIME_NAME = runtimeArg ?? ('Deno' in globalThis ? 'deno' : typeof process.versions.bun === 'string' ? 'bun' : 'node');
const selected = filters.length
  ? ordered.filter((f) => filters.some((flt) => path.relative(TEST_DIR, f).includes(flt)))
  : ordered;
const notRun = runtimeDependentOnly
  ? selected.filter((f) => Object.hasOwn(RUNTIME_INDEPENDENT, path.relative(TEST_DIR, f)))
  : [];
const files = selected.filter((f) => !notRun.includes(f));

// eslint-disable-next-line no-control-regex
const ANSI = /\x1b\[[0-9;]*m/g;

/** The last uvu totals in `text`, or undefined. */
function parseTotals(text) {
  const plain = text.replace(ANSI, '');
  const last = (re) => {
    const all = [...plain.matchAll(re)];
    return all.length ? Number(all[all.length - 1][1]) : undefined;
  };
  const total = last(/^\s*Total:\s+(\d+)\s*$/gm);
  const passed = last(/^\s*Passed:\s+(\d+)\s*$/gm);
  const skipped = last(/^\s*Skipped:\s+(\d+)\s*$/gm) ?? 0;
  if (total === undefined || passed === undefined) return undefined;
  return { total, passed, skipped };
}

/** The tests a file skipped at run time: `SKIP <file> › "<name>": <reason>` lines (test/util/prereq.ts). */
function parseSkips(text) {
  const plain = text.replace(ANSI, '');
  const byName = new Map();
  // uvu prints a test's mark (`• `) without a newline, so a marker may follow marks on its line.
  for (const m of plain.matchAll(/^(?:[•✘]\s+)*SKIP (\S+) › ("(?:[^"\\]|\\.)*"): (.*)$/gm)) byName.set(JSON.parse(m[2]), m[3]);
  return [...byName].map(([name, reason]) => ({ name, reason }));
}

let current; // the running child, for signal handling

/** How long a file may keep running after uvu printed its totals. */
const EXIT_GRACE_MS = 30_000;

function runFile(file) {
  const timeoutMs = Number(process.env.TEST_FILE_TIMEOUT_MS) || (isE2e(file) ? 20 : 10) * 60_000;
  return new Promise((resolve) => {
    const started = Date.now();
    // Its own process group, so a timeout can take down whatever it started (QEMU, daemons).
    const child = spawn(RUNTIME[0], [...RUNTIME.slice(1), file], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    current = child;
    let output = '';
    let lingered = false;
    let graceTimer;
    child.stdout.on('data', (d) => {
      output += d;
      process.stdout.write(d);
      if (graceTimer === undefined && String(d).includes('Total:') && parseTotals(output) !== undefined) {
        graceTimer = setTimeout(() => {
          lingered = true;
          killGroup(child);
        }, EXIT_GRACE_MS);
      }
    });
    child.stderr.on('data', (d) => {
      output += d;
      process.stderr.write(d);
    });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup(child);
    }, timeoutMs);
    const finish = (code, signal) => {
      clearTimeout(timer);
      clearTimeout(graceTimer);
      current = undefined;
      resolve({ file, code, signal, timedOut, lingered, output, ms: Date.now() - started });
    };
    child.on('error', (err) => {
      output += `\n${err.stack ?? err}\n`;
      finish(-1, null);
    });
    child.on('close', finish);
  });
}

function killGroup(child) {
  try {
    process.kill(-child.pid, 'SIGKILL');
  } catch {
    try {
      child.kill('SIGKILL');
    } catch {
      // gone
    }
  }
}

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    if (current) killGroup(current);
    process.stdout.write(`\ninterrupted (${sig})\n0 passed, 1 failed\n`);
    process.exit(1);
  });
}

let passed = 0;
let failed = 0;
let skipped = 0;
const rows = [];
const skipList = [];

for (const f of notRun) {
  const rel = path.relative(ROOT, f);
  const why = `not run under ${RUNTIME_NAME} (--runtime-dependent): ${RUNTIME_INDEPENDENT[path.relative(TEST_DIR, f)]}`;
  console.log(`test/run.js: ${rel}: ${why}`);
  skipped += 1;
  skipList.push(`${rel} (whole file): ${why}`);
  rows.push({ rel, p: 0, f: 0, s: 1, ms: 0, notes: ['not run'], notRun: true });
}

if (files.length === 0) {
  const why = filters.length ? `no test file matches ${filters.map((f) => JSON.stringify(f)).join(' or ')}` : `no test files under ${path.relative(ROOT, TEST_DIR)} (run the build first)`;
  console.log(`test/run.js: ${why}`);
  failed = 1;
} else {
  console.log(`test/run.js: running ${files.length} file(s) with ${RUNTIME.join(' ')}`);
  for (const file of files) {
    const rel = path.relative(ROOT, file);
    process.stdout.write(`\n=== ${rel}\n`);
    const r = await runFile(file);
    const totals = parseTotals(r.output);
    let p = 0;
    let f = 0;
    let s = 0;
    const notes = [];
    if (totals) {
      // uvu's Total counts only the tests that ran; its Skipped are test.skip() registrations.
      const runtimeSkips = parseSkips(r.output);
      p = Math.max(0, totals.passed - runtimeSkips.length);
      f = Math.max(0, totals.total - totals.passed);
      s = totals.skipped + runtimeSkips.length;
      for (const k of runtimeSkips) skipList.push(`${rel} › ${k.name}: ${k.reason}`);
    } else {
      notes.push('no totals');
    }
    if (r.timedOut) notes.push(`timed out after ${Math.round(r.ms / 1000)} s`);
    if (r.lingered) {
      notes.push(`still running ${EXIT_GRACE_MS / 1000} s after its totals: something it started outlived its tests`);
    }
    if (r.code !== 0) notes.push(r.signal ? `killed by ${r.signal}` : `exit code ${r.code}`);
    // A crash, a timeout, a file that would not exit or a non-zero exit with nothing failed in the totals is one
    // failure more.
    if ((r.code !== 0 || r.timedOut || r.lingered || !totals) && f === 0) f = 1;
    passed += p;
    failed += f;
    skipped += s;
    rows.push({ rel, p, f, s, ms: r.ms, notes });
  }
}

if (rows.length) {
  console.log('\n=== summary');
  const width = Math.max(...rows.map((r) => r.rel.length));
  for (const r of rows) {
    const status = r.f ? 'FAIL' : r.notRun ? 'skip' : 'ok  ';
    const extra = r.notes.length ? `  (${r.notes.join(', ')})` : '';
    console.log(
      `${status} ${r.rel.padEnd(width)}  ${String(r.p).padStart(4)} passed ${String(r.f).padStart(3)} failed ${String(r.s).padStart(3)} skipped  ${(r.ms / 1000).toFixed(1).padStart(6)} s${extra}`,
    );
  }
}
if (skipList.length) {
  console.log(`\n=== skipped at run time (${skipList.length})`);
  for (const line of skipList) console.log(`SKIPPED ${line}`);
}
console.log(`${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exitCode = failed ? 1 : 0;

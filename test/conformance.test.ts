/**
 * POSIX conformance on the host transport: test/conformance/posix-check.c (built static into .cache/)
 * runs first on a plain tmp directory — the baseline that proves the checker right on a local
 * filesystem — then on our /dev/fuse mount in cache=never, auto and always. Each mode fails listing the
 * checker's `not ok` lines. A last test shows the checker does report a failure it should: our default
 * policy refuses device nodes, so exactly `mknod/s_ifchr-as-root` must fail without --allow-mknod-devices.
 *
 * The conformance mounts pass --allow-mknod-devices: creating a device node as root is what POSIX
 * specifies; refusing it is our (documented) default policy, checked by the last test.
 *
 * Checks listed in OUR_KNOWN_GAPS (test/conformance/posix-check.ts; empty today) are printed on every run with
 * their reason instead of failing; one of them passing fails the test.
 *
 * Our mounts also serve locks on the host (--posix-lock --flock), so the checker's lock group exercises
 * blocking waits (parked SETLKW) and their interruption (FUSE_INTERRUPT).
 *
 * Needs root (the checker switches to uid 65534 for the permission checks) and /dev/fuse: a counted skip otherwise,
 * a failure under CI=true.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  OUR_KNOWN_GAPS, POSIX_CHECK_BINARY, ensurePosixCheck, knownGapLines, parsePosixCheck, reportProblems, sideBySide,
  type PosixCheckReport,
} from './conformance/posix-check.js';
import { detach, mountDaemon, type MountedDaemon } from './util/dev-fuse-mount.js';
import { requireDevFuse, requireRoot } from './util/prereq.js';

const RUN_TIMEOUT_MS = 60_000;
const tmp = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'conformance-test-')));
fs.chmodSync(tmp, 0o755); // uid 65534 must reach the scratch directories
const daemons: MountedDaemon[] = [];
const reports: { label: string; report?: PosixCheckReport }[] = [];
let seq = 0;

/** Runs posix-check on `dir`; resolves with its stdout (+ stderr), killing it after RUN_TIMEOUT_MS. */
function runChecker(dir: string): Promise<{ out: string; code: number | null; timedOut: boolean }> {
  const bin = ensurePosixCheck();
  return new Promise((resolve) => {
    const child = spawn(bin, [dir], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => { out += d; });
    child.stderr.setEncoding('utf8').on('data', (d: string) => { out += d; });
    let timedOut = false;
    const timer = setTimeout(() => { timedOut = true; child.kill('SIGKILL'); }, RUN_TIMEOUT_MS);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ out, code, timedOut });
    });
  });
}

function fresh(): { dir: string; mp: string } {
  const n = seq++;
  const dir = path.join(tmp, `share${n}`);
  const mp = path.join(tmp, `mnt${n}`);
  fs.mkdirSync(dir, { mode: 0o755 });
  fs.mkdirSync(mp, { mode: 0o755 });
  return { dir, mp };
}

/** Mounts ours, runs the checker on the mount, unmounts; returns the parsed report and the daemon's stderr. */
async function onOurMount(extra: string[]): Promise<{ report: PosixCheckReport; code: number | null; stderr: string }> {
  const { dir, mp } = fresh();
  const d = await mountDaemon(dir, mp, extra);
  daemons.push(d);
  try {
    const r = await runChecker(mp);
    const report = parsePosixCheck(r.out);
    if (r.timedOut) assert.unreachable(`posix-check did not finish in ${RUN_TIMEOUT_MS} ms:\n${r.out.slice(-3000)}\n${d.stderr()}`);
    return { report, code: r.code, stderr: d.stderr() };
  } finally {
    const code = await d.stop();
    assert.is(code, 0, `the daemon did not exit cleanly on SIGTERM:\n${d.stderr()}`);
  }
}

function summaryLine(label: string, r: PosixCheckReport): void {
  const s = r.summary;
  console.log(`conformance: ${label}: ${s ? `${s.passed} passed, ${s.failed} failed, ${s.skipped} skipped` : 'no summary'}`);
}

test.after(() => {
  for (const d of daemons) if (d.child.exitCode === null && d.child.signalCode === null) d.child.kill('SIGKILL');
  for (const d of daemons) detach(d.mp);
  if (reports.length > 1) {
    const file = path.join(path.dirname(POSIX_CHECK_BINARY), 'conformance-host.md');
    fs.writeFileSync(file, sideBySide(reports, 'posix-check on the host: local fs vs our /dev/fuse mount'));
  }
  fs.rmSync(tmp, { recursive: true, force: true });
});

test('baseline: posix-check passes on a plain host directory', async () => {
  if (!requireRoot()) return; // the checker switches to uid 65534 for its permission checks
  const base = path.join(tmp, 'baseline');
  fs.mkdirSync(base, { mode: 0o755 });
  const r = await runChecker(base);
  const report = parsePosixCheck(r.out);
  reports.push({ label: 'host fs (baseline)', report });
  summaryLine('host fs baseline', report);
  const problems = reportProblems(report);
  assert.ok(problems.length === 0 && r.code === 0, `baseline run (exit ${r.code}):\n${problems.join('\n')}`);
  assert.ok(report.checks.length >= 200, `only ${report.checks.length} checks ran`);
  assert.equal(fs.readdirSync(base), [], 'the checker removes its scratch directory');
});

for (const cache of ['never', 'auto', 'always'] as const) {
  test(`ours on /dev/fuse, cache=${cache}: posix-check passes`, async () => {
    if (!requireDevFuse()) return;
    // Locks reach the host (--posix-lock --flock): the lock group then exercises parked SETLKW and INTERRUPT.
    const { report, code, stderr } = await onOurMount([`--cache=${cache}`, '--allow-mknod-devices', '--posix-lock',
      '--flock']);
    reports.push({ label: `ours cache=${cache}`, report });
    summaryLine(`ours cache=${cache}`, report);
    for (const line of knownGapLines(report, OUR_KNOWN_GAPS)) console.log(`conformance:   ${line}`);
    const problems = reportProblems(report, OUR_KNOWN_GAPS);
    // Exit status 1 exactly when a check failed (here: only known gaps).
    const wantCode = report.summary?.failed ? 1 : 0;
    assert.ok(problems.length === 0 && code === wantCode, `cache=${cache} (exit ${code}):\n${problems.join('\n')}\n--- daemon stderr ---\n${stderr.slice(-2000)}`);
  });
}

test('the checker reports failures: our default policy refuses device nodes, and only that check fails', async () => {
  if (!requireDevFuse()) return;
  const { report, code } = await onOurMount(['--cache=auto']);
  const failed = report.checks.filter((c) => c.status === 'fail' && !(c.name in OUR_KNOWN_GAPS));
  assert.equal(failed.map((c) => c.name), ['mknod/s_ifchr-as-root']);
  assert.match(failed[0].detail, /expected success got EPERM$/);
  assert.equal(reportProblems(report, OUR_KNOWN_GAPS), [`not ok ${failed[0].n} mknod/s_ifchr-as-root: ${failed[0].detail}`]);
  assert.is(code, 1, 'exit status 1 when a check failed');
});

test.run();

/**
 * The POSIX conformance checker (test/conformance/posix-check.c) for the tests: build it (static, so the
 * e2e guest's libc-less initramfs can run it), parse its report, and put several runs side by side.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const POSIX_CHECK_SOURCE = path.join(ROOT, 'test', 'conformance', 'posix-check.c');
export const POSIX_CHECK_BINARY = path.join(ROOT, '.cache', 'posix-check');

function mtimeMs(file: string): number {
  try {
    return fs.statSync(file).mtimeMs;
  } catch {
    return -1;
  }
}

/**
 * Returns the path of the static posix-check binary, compiling it into .cache/ when it is missing or
 * older than its source. Throws with the compiler's output when `cc` fails (no compiler, no libc.a).
 */
export function ensurePosixCheck(): string {
  if (mtimeMs(POSIX_CHECK_BINARY) >= mtimeMs(POSIX_CHECK_SOURCE)) return POSIX_CHECK_BINARY;
  fs.mkdirSync(path.dirname(POSIX_CHECK_BINARY), { recursive: true });
  // Built under a private name and renamed: a concurrent test never runs a half-written binary.
  const tmp = `${POSIX_CHECK_BINARY}.${process.pid}.tmp`;
  const r = spawnSync('cc', ['-O2', '-Wall', '-static', '-o', tmp, POSIX_CHECK_SOURCE], { encoding: 'utf8' });
  if (r.status !== 0) {
    fs.rmSync(tmp, { force: true });
    throw new Error(`posix-check: cc failed (${r.error?.message ?? `status ${r.status}`}):\n${r.stdout ?? ''}${r.stderr ?? ''}`);
  }
  fs.renameSync(tmp, POSIX_CHECK_BINARY);
  return POSIX_CHECK_BINARY;
}

export interface CheckLine {
  n: number;
  /** `group/name`. */
  name: string;
  status: 'ok' | 'fail' | 'skip';
  /** The failure (`<call> expected X got Y`) or the reason for a skip. */
  detail: string;
}

export interface PosixCheckReport {
  checks: CheckLine[];
  /** From the summary line; undefined when the run did not reach it (crash, timeout). */
  summary?: { passed: number; failed: number; skipped: number };
}

/**
 * Parses posix-check output. `prefix` is stripped from each line first (the guest prints the lines
 * behind a marker so they stand out in its console); lines without it are ignored.
 */
export function parsePosixCheck(output: string, prefix = ''): PosixCheckReport {
  const checks: CheckLine[] = [];
  let summary: PosixCheckReport['summary'];
  for (const raw of output.split('\n')) {
    if (!raw.startsWith(prefix)) continue;
    const line = raw.slice(prefix.length).trimEnd();
    let m = /^ok (\d+) (\S+) # SKIP ?(.*)$/.exec(line);
    if (m) {
      checks.push({ n: Number(m[1]), name: m[2], status: 'skip', detail: m[3] });
      continue;
    }
    m = /^ok (\d+) (\S+)$/.exec(line);
    if (m) {
      checks.push({ n: Number(m[1]), name: m[2], status: 'ok', detail: '' });
      continue;
    }
    m = /^not ok (\d+) (\S+?):? (.*)$/.exec(line);
    if (m) {
      checks.push({ n: Number(m[1]), name: m[2], status: 'fail', detail: m[3] });
      continue;
    }
    m = /^posix-check: (\d+) passed, (\d+) failed, (\d+) skipped$/.exec(line);
    if (m) summary = { passed: Number(m[1]), failed: Number(m[2]), skipped: Number(m[3]) };
  }
  return { checks, summary };
}

/**
 * Checks our daemon is known to fail, with the reason: not bugs a small fix removes, but gaps in the design
 * that are reported on every run (never silently passed). A listed check that passes is itself a problem
 * (remove it from here), so this list cannot outlive the gap.
 */
export const OUR_KNOWN_GAPS: Readonly<Record<string, string>> = {
  // Empty: the last gaps (names and symlink targets that are not UTF-8) closed when names became bytes.
};

/**
 * Problems with a run that must be clean: failed checks (their lines) other than `knownGaps`, a known gap
 * that passed, a missing summary, or a summary that disagrees with the lines. Empty when the run passed.
 */
export function reportProblems(r: PosixCheckReport, knownGaps: Readonly<Record<string, string>> = {}): string[] {
  const problems = r.checks.filter((c) => c.status === 'fail' && !(c.name in knownGaps))
    .map((c) => `not ok ${c.n} ${c.name}: ${c.detail}`);
  for (const name of Object.keys(knownGaps)) {
    const c = r.checks.find((x) => x.name === name);
    if (c?.status === 'ok') problems.push(`known gap ${name} now passes: remove it from OUR_KNOWN_GAPS`);
  }
  if (!r.summary) {
    problems.push(`no summary line (the checker did not finish; last check seen: ${r.checks.at(-1)?.name ?? 'none'})`);
  } else {
    const count = (s: CheckLine['status']) => r.checks.filter((c) => c.status === s).length;
    if (r.summary.passed !== count('ok') || r.summary.failed !== count('fail') || r.summary.skipped !== count('skip')) {
      problems.push(`summary ${JSON.stringify(r.summary)} disagrees with the ${r.checks.length} check lines`);
    }
    if (r.checks.length === 0) problems.push('no checks ran');
  }
  return problems;
}

const group = (name: string): string => name.split('/')[0];

function cell(r: PosixCheckReport | undefined, g: string): string {
  if (!r) return 'not run';
  const cs = r.checks.filter((c) => group(c.name) === g);
  if (cs.length === 0) return r.summary ? '–' : 'not reached';
  const ok = cs.filter((c) => c.status === 'ok').length;
  const fail = cs.filter((c) => c.status === 'fail').length;
  const skip = cs.filter((c) => c.status === 'skip').length;
  return `${ok}/${cs.length}${fail ? ` **${fail} fail**` : ''}${skip ? ` (${skip} skip)` : ''}`;
}

/** The known gaps a run hit, as lines for a log: `known gap <name>: <detail> (<why>)`. */
export function knownGapLines(r: PosixCheckReport, knownGaps: Readonly<Record<string, string>>): string[] {
  return r.checks.filter((c) => c.status === 'fail' && c.name in knownGaps)
    .map((c) => `known gap ${c.name}: ${c.detail} (${knownGaps[c.name]})`);
}

/**
 * A Markdown table, one row per check group and one column per run, then every failure and skip by
 * name and detail. Runs missing (undefined) are shown as "not run".
 */
export function sideBySide(runs: { label: string; report?: PosixCheckReport }[], title: string): string {
  const groups: string[] = [];
  for (const { report } of runs) {
    for (const c of report?.checks ?? []) if (!groups.includes(group(c.name))) groups.push(group(c.name));
  }
  const out = [`# ${title}`, '', `| group | ${runs.map((r) => r.label).join(' | ')} |`, `|---|${runs.map(() => '---').join('|')}|`];
  for (const g of groups) out.push(`| ${g} | ${runs.map((r) => cell(r.report, g)).join(' | ')} |`);
  const total = (r?: PosixCheckReport): string => (r?.summary
    ? `${r.summary.passed} passed, ${r.summary.failed} failed, ${r.summary.skipped} skipped`
    : r ? `incomplete (${r.checks.length} lines)` : 'not run');
  out.push(`| **total** | ${runs.map((r) => total(r.report)).join(' | ')} |`, '');
  for (const { label, report } of runs) {
    const odd = report?.checks.filter((c) => c.status !== 'ok') ?? [];
    if (odd.length === 0) continue;
    out.push(`## ${label}: failures and skips`, '');
    for (const c of odd) out.push(`- ${c.status === 'fail' ? 'FAIL' : 'skip'} ${c.n} \`${c.name}\`: ${c.detail}`);
    out.push('');
  }
  return out.join('\n');
}

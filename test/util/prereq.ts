/**
 * What a test needs from the machine, and honest skips when it is missing.
 *
 *   test('mounts ...', async () => {
 *     if (!requireDevFuse()) return;
 *     ...
 *   });
 *
 * A require*() returns true when the prerequisite holds. Otherwise it records a skip and returns false (the test
 * returns at once): it prints one line `SKIP <file> › "<test name>": <reason>`, which test/run.js counts as a
 * skip rather than a pass and lists in its summary. With CI=true a missing prerequisite is no skip: require*()
 * throws, and the test fails with the reason. uvu has no skip inside a running test; a hook registered here on
 * the default suite tells us the name of the test that is running.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const DIST_TEST = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const IN_CI = !['', '0', 'false'].includes(process.env.CI ?? '');

let running = '';
test.before.each((ctx) => { running = String((ctx as { __test__?: string }).__test__ ?? ''); });
const skippedTests = new Set<string>();

/** The marker line test/run.js parses; `file` is relative to dist/test. */
export function skipLine(file: string, name: string, reason: string): string {
  return `SKIP ${file} › ${JSON.stringify(name)}: ${reason}`;
}

/**
 * Stops the running test when any reason is given: a counted, printed skip (returns true: the caller returns), or
 * under CI=true a failure. Returns false when there is no reason (the test goes on).
 */
export function skipIf(...reasons: Array<string | undefined>): boolean {
  const why = reasons.filter((r): r is string => !!r).join('; ');
  if (!why) return false;
  if (IN_CI) assert.unreachable(`prerequisite missing (CI=true fails instead of skipping): ${why}`);
  if (!skippedTests.has(running)) {
    skippedTests.add(running);
    const file = path.relative(DIST_TEST, path.resolve(process.argv[1] ?? 'unknown'));
    console.log(skipLine(file, running, why));
  }
  return true;
}

/** Why this process is not root, or undefined. */
export function missingRoot(): string | undefined {
  return process.getuid?.() === 0 ? undefined : `needs root (uid is ${process.getuid?.()})`;
}

/** FUSE's misc device: character major 10, minor 229. */
const FUSE_RDEV = (10 << 8) | 229;

/** Why /dev/fuse cannot be used for mounts here (not root, no device, another device in its place), or undefined. */
export function missingDevFuse(): string | undefined {
  const root = missingRoot();
  if (root) return root;
  let st: fs.Stats;
  try {
    st = fs.statSync('/dev/fuse');
  } catch (e) {
    return `needs /dev/fuse (${(e as NodeJS.ErrnoException).code})`;
  }
  if (!st.isCharacterDevice() || st.rdev !== FUSE_RDEV) return '/dev/fuse is not the FUSE device (char 10:229)';
  try {
    fs.closeSync(fs.openSync('/dev/fuse', 'r+'));
  } catch (e) {
    return `cannot open /dev/fuse (${(e as NodeJS.ErrnoException).code})`;
  }
  return undefined;
}

/** Why `file` cannot be executed here, or undefined. */
export function missingBinary(file: string): string | undefined {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return undefined;
  } catch (e) {
    return `needs ${file} (${(e as NodeJS.ErrnoException).code})`;
  }
}

export const requireRoot = (): boolean => !skipIf(missingRoot());
export const requireDevFuse = (): boolean => !skipIf(missingDevFuse());
export const requireBinary = (file: string): boolean => !skipIf(missingBinary(file));

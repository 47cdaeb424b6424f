/**
 * End-to-end: the two library examples served to a real Linux guest (QEMU, TCG) through the public `serve()`
 * (test/e2e/example-daemon.ts), each with a guest workload that checks content:
 * - memfs (examples/memfs.ts): seeded from a host directory; the guest writes, reads back after dropping its
 *   caches, makes directories and symlinks, renames, truncates, unlinks, and reads statfs;
 * - tarfs (examples/tarfs.ts): a ustar archive made here with tar(1); the guest reads files (md5 compared with
 *   the host's), a symlink and a listing, and shows that while one READ is held pending on the host, a `stat` of
 *   another file completes: the guest sees the pending marker before and after its stat, and the daemon reports
 *   the LOOKUP/GETATTR it answered while the READ waited.
 *
 * In CI (`CI` set) a missing QEMU, guest kernel or tar FAILS these tests; elsewhere they are skipped.
 */
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  ROOT, bootGuest, describeRun, guestImageOrReason, startBackend, which, type GuestImage,
} from './guest.js';
import { RUNTIME } from '../util/runtime.js';
import { skipIf } from '../util/prereq.js';

const LAUNCHER = path.join(ROOT, 'dist', 'test', 'e2e', 'example-daemon.js');

const imageOrReason = guestImageOrReason(which('tar') ? [] : ['tar']);
const image: GuestImage | undefined = typeof imageOrReason === 'string' ? undefined : imageOrReason;
const unavailable: string | undefined = typeof imageOrReason === 'string' ? imageOrReason : undefined;

/** An e2e test: a counted skip when its prerequisites are missing, a failure under CI=true (util/prereq.ts). */
function e2e(name: string, fn: () => Promise<void>): void {
  test(name, async () => {
    if (skipIf(unavailable)) return;
    await fn();
  });
}

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'e2e-examples-'));
process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));

/** Shell helpers every workload starts with. */
const PRELUDE = `#!/bin/sh
M="$1"
res() { if [ "$2" = 0 ]; then echo "E2E-RESULT $1 ok $3"; else echo "E2E-RESULT $1 fail $3"; fi; }
eq() { if [ "$2" = "$3" ]; then echo "E2E-RESULT $1 ok"; else echo "E2E-RESULT $1 fail got [$2] want [$3]"; fi; }
`;

const MEMFS_WORKLOAD = `${PRELUDE}
eq seeded "$(cat "$M/seeded.txt")" "seeded from the host"
echo "hello memfs" > "$M/a.txt"; res write $?
mkdir -p "$M/d1/d2"; res mkdir $?
echo nested > "$M/d1/d2/n.txt"
ln -s ../a.txt "$M/d1/link"; res symlink $?
mv "$M/d1/d2/n.txt" "$M/d1/moved.txt"; res rename $?
dd if=/dev/zero bs=1024 count=300 2>/dev/null | tr '\\000' 'x' > "$M/big"
truncate -s 1000 "$M/big"; res truncate $?
ln "$M/a.txt" "$M/hard.txt"; res hardlink $?
echo 3 > /proc/sys/vm/drop_caches
eq read-back "$(cat "$M/a.txt")" "hello memfs"
eq read-link "$(cat "$M/d1/link")" "hello memfs"
eq readlink "$(readlink "$M/d1/link")" "../a.txt"
eq moved "$(cat "$M/d1/moved.txt")" "nested"
eq moved-gone "$(ls "$M/d1/d2")" ""
eq big-size "$(stat -c %s "$M/big")" "1000"
eq big-content "$(head -c 5 "$M/big")" "xxxxx"
eq nlink "$(stat -c %h "$M/a.txt")" "2"
chmod 600 "$M/a.txt"; eq chmod "$(stat -c %a "$M/a.txt")" "600"
rm "$M/a.txt"; res unlink $?
eq hard-survives "$(cat "$M/hard.txt")" "hello memfs"
rmdir "$M/d1/d2"; res rmdir $?
eq listing "$(ls "$M/d1" | tr '\\n' ' ')" "link moved.txt "
df "$M" > /tmp/df.out; res statfs $?
eq statfs-size "$(stat -f -c %b "$M")" "262144"
`;

function tarWorkload(md5: string): string {
  return `${PRELUDE}
eq tar-read "$(cat "$M/hello.txt")" "hello from a tar archive"
eq tar-md5 "$(md5sum "$M/data/big.bin" | cut -d' ' -f1)" "${md5}"
eq tar-symlink "$(cat "$M/link")" "hello from a tar archive"
eq tar-listing "$(ls "$M/data" | tr '\\n' ' ')" "big.bin other.txt slow.bin "
cat "$M/data/slow.bin" > /tmp/slow.out &
P=$!
i=0
while [ ! -e "$M/.gate-pending" ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
[ -e "$M/.gate-pending" ]; res read-pending $?
S=$(stat -c %s "$M/data/other.txt")
if [ -e "$M/.gate-pending" ]; then echo "E2E-RESULT stat-while-read-pending ok size=$S"; else echo "E2E-RESULT stat-while-read-pending fail the read was no longer pending"; fi
eq stat-size "$S" "11"
[ -e "$M/.gate-open" ]
wait $P; res slow-read $?
eq slow-md5 "$(md5sum /tmp/slow.out | cut -d' ' -f1)" "$(md5sum "$M/data/big.bin" | cut -d' ' -f1)"
touch "$M/nope" 2>/dev/null; [ $? != 0 ]; res read-only $?
`;
}

async function runExample(name: string, args: string[], sharedDirForWorkload: string | null, workload: string | null,
  steps: string[]): Promise<{ stdout: string }> {
  const socketPath = path.join(tmp, `${name}.sock`);
  const backend = await startBackend('example', {
    socketPath, sharedDir: '', command: [...RUNTIME, LAUNCHER, `--socket-path=${socketPath}`, ...args],
  });
  try {
    const g = await bootGuest({
      socketPath, backend, image: image!, timeoutMs: 150_000, idleTimeoutMs: 60_000,
      ...(sharedDirForWorkload !== null && workload !== null ? { sharedDir: sharedDirForWorkload, workload } : {}),
    });
    const problems: string[] = [];
    for (const step of ['mount', ...steps]) {
      const r = g.results.find((x) => x.name === step);
      if (!r) problems.push(`step ${step}: missing`);
      else if (!r.ok) problems.push(`step ${step}: ${r.detail}`);
    }
    for (const r of g.results) if (!r.ok && !problems.some((p) => p.startsWith(`step ${r.name}:`))) problems.push(`step ${r.name}: ${r.detail}`);
    if (!g.done) problems.push('the guest did not finish its workload');
    if (problems.length) assert.unreachable(describeRun(g, backend, problems));
    return { stdout: backend.stdout() };
  } finally {
    await backend.stop();
  }
}

e2e('memfs example: a guest writes, renames, links, truncates, unlinks and reads back', async () => {
  const seed = path.join(tmp, 'memfs-seed');
  fs.mkdirSync(seed);
  fs.writeFileSync(path.join(seed, 'seeded.txt'), 'seeded from the host');
  // startGuest writes the workload into <seed>/.e2e before boot; the launcher reads the seed after that.
  const steps = ['seeded', 'write', 'mkdir', 'symlink', 'rename', 'truncate', 'hardlink', 'read-back', 'read-link',
    'readlink', 'moved', 'moved-gone', 'big-size', 'big-content', 'nlink', 'chmod', 'unlink', 'hard-survives', 'rmdir',
    'listing', 'statfs', 'statfs-size', 'workload-exit'];
  fs.mkdirSync(path.join(seed, '.e2e'));
  fs.writeFileSync(path.join(seed, '.e2e', 'workload.sh'), MEMFS_WORKLOAD, { mode: 0o755 });
  const { stdout } = await runExample('memfs', ['--example=memfs', `--seed=${seed}`, '--cache=auto'], null, null, steps);
  assert.match(stdout, /EVENT connect/);
});

e2e('tarfs example: async reads of a ustar archive; a stat completes while one READ is held pending', async () => {
  const src = path.join(tmp, 'tar-src');
  fs.mkdirSync(path.join(src, 'data'), { recursive: true });
  fs.mkdirSync(path.join(src, '.e2e'));
  fs.writeFileSync(path.join(src, 'hello.txt'), 'hello from a tar archive');
  const big = Buffer.alloc(3 * 1024 * 1024 + 123);
  for (let i = 0; i < big.length; i++) big[i] = (i * 2654435761) >>> 24;
  fs.writeFileSync(path.join(src, 'data', 'big.bin'), big);
  fs.writeFileSync(path.join(src, 'data', 'slow.bin'), big);
  fs.writeFileSync(path.join(src, 'data', 'other.txt'), 'other file\n');
  fs.symlinkSync('hello.txt', path.join(src, 'link'));
  const md5 = createHash('md5').update(big).digest('hex');
  fs.writeFileSync(path.join(src, '.e2e', 'workload.sh'), tarWorkload(md5), { mode: 0o755 });
  const archive = path.join(tmp, 'files.tar');
  const r = spawnSync('tar', ['--format=ustar', '-cf', archive, '-C', src, '.'], { encoding: 'utf8' });
  assert.is(r.status, 0, r.stderr);
  const steps = ['tar-read', 'tar-md5', 'tar-symlink', 'tar-listing', 'read-pending', 'stat-while-read-pending',
    'stat-size', 'slow-read', 'slow-md5', 'read-only', 'workload-exit'];
  const { stdout } = await runExample('tarfs', ['--example=tarfs', `--archive=${archive}`, '--gate=data/slow.bin',
    '--cache=never'], null, null, steps);
  // The daemon's own account: the gate was opened by the guest, with LOOKUP/GETATTR answered while it was closed.
  const m = /GATE open \(guest\) lookup=(\d+) getattr=(\d+)/.exec(stdout);
  assert.ok(m, `no "GATE open (guest)" line in the daemon's output:\n${stdout}`);
  console.log(`tarfs: ${m![0]}`);
  assert.ok(Number(m![2]) > 0, `GETATTR answered while the READ was pending: ${m![0]}`);
  assert.ok(Number(m![1]) > 0, `LOOKUP answered while the READ was pending: ${m![0]}`);
  assert.match(stdout, /GATE pending/);
});

test.run();

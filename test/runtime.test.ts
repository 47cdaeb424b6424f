/**
 * The runtime layer (host/runtime.ts and what depends on it), under whichever runtime runs the suite:
 * - a re-exec command keeps the runtime and its flags (Deno's `run` and permissions included);
 * - the CLI's sandbox re-exec (as root) runs the daemon in the same runtime with the same flags, and survives a
 *   sampling profiler's signals (node --cpu-prof);
 * - the poller refuses the libuv loop outside Node, and VIRTIOFSD_TS_POLLER=loop falls back to the thread there;
 * - the seccomp list has what the runtime needs after the filter (Deno: socketpair).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { runtimeName } from '../host/runtime.js';
import { seccompSyscallNumbers } from '../host/sandbox.js';
import { FdPoller } from '../host/vhost-user/fd-poller.js';
import { native } from '../host/native-loader.js';
import { CLI } from './util/dev-fuse-mount.js';
import { RUNTIME, unlessRuntime } from './util/runtime.js';
import { spawnSocketDaemon } from './util/socket-daemon.js';
import { requireRoot } from './util/prereq.js';
import { until } from './util/wait.js';

const RUNTIME_TS = fileURLToPath(new URL('../host/runtime.js', import.meta.url));
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'runtime-test-'));

/** A flag of this runtime's own that changes nothing here (a heap limit). */
const FLAG = { node: '--max-old-space-size=300', bun: '--smol', deno: '--v8-flags=--max-old-space-size=300' }[runtimeName];

test('ownCommand: the runtime by its path, its flags, the script as named, new arguments', () => {
  const script = path.join(tmp, 'own.mjs');
  fs.writeFileSync(script, `import { ownCommand } from ${JSON.stringify(RUNTIME_TS)};\n`
    + `console.log(JSON.stringify(ownCommand(['--new', 'arg'])));\n`);
  const r = spawnSync(RUNTIME[0]!, [...RUNTIME.slice(1), FLAG, 'own.mjs', '--old', 'x y'],
    { cwd: tmp, encoding: 'utf8', timeout: 30000 });
  assert.is(r.status, 0, r.stderr);
  const cmd = JSON.parse(r.stdout.trim()) as string[];
  assert.equal(cmd.slice(1), [...RUNTIME.slice(1), FLAG, 'own.mjs', '--new', 'arg']);
  assert.is(fs.realpathSync(cmd[0]!), fs.realpathSync(process.execPath), 'the runtime binary, by its path');
});

test('as root, the sandboxed daemon runs in this runtime with the same flags (namespace re-exec)', async () => {
  if (!requireRoot()) return; // the namespace sandbox needs root
  const dir = fs.mkdtempSync(path.join(tmp, 'share-'));
  const d = await spawnSocketDaemon(dir, path.join(tmp, 'ns.sock'),
    { args: ['--sandbox=namespace', '--seccomp=kill', '--log-level=warn'], runtimeFlags: [FLAG], timeoutMs: 20000 });
  try {
    const kids = fs.readFileSync(`/proc/${d.child.pid}/task/${d.child.pid}/children`, 'utf8').trim().split(/\s+/);
    assert.is(kids.length, 1, 'the helper has the daemon as its one child');
    const inner = Number(kids[0]);
    assert.is(fs.realpathSync(`/proc/${inner}/exe`), fs.realpathSync(process.execPath), 'the same runtime binary');
    const argv = fs.readFileSync(`/proc/${inner}/cmdline`, 'utf8').split('\0').slice(0, -1);
    assert.equal(argv.slice(1, RUNTIME.length + 2), [...RUNTIME.slice(1), FLAG, CLI], 'its flags, then the CLI');
    assert.is(d.child.exitCode, null, 'serving under --seccomp=kill');
  } finally {
    d.child.kill('SIGTERM');
    const stopped = await until(() => d.child.exitCode !== null || d.child.signalCode !== null, 5000, 20);
    if (!stopped) d.child.kill('SIGKILL'); // (its stderr pipe would keep this test process alive)
    assert.ok(stopped, 'the sandboxed daemon stopped on SIGTERM');
  }
});

unlessRuntime(test, {
  bun: '--cpu-prof is a Node flag', deno: '--cpu-prof is a Node flag',
})('as root, the re-exec survives node --cpu-prof (a SIGPROF pending at the exec used to kill the daemon)', async () => {
  if (!requireRoot()) return; // dropping capabilities re-executes only as root
  const dir = fs.mkdtempSync(path.join(tmp, 'share-'));
  // Three starts: the signal has to land inside an exec, which a short sampling interval (thousands of signals a
  // second from the profiler's thread) makes likely but not certain (without the fix, 5 of 6 starts here died).
  for (let run = 0; run < 3; run++) {
    const profiles = fs.mkdtempSync(path.join(tmp, 'profiles-'));
    const d = await spawnSocketDaemon(dir, path.join(tmp, 'prof.sock'), {
      args: ['--sandbox=none', '--log-level=warn'], runtimeFlags: ['--cpu-prof', `--cpu-prof-dir=${profiles}`,
        '--cpu-prof-interval=50'], timeoutMs: 20000,
    });
    d.child.kill('SIGTERM');
    await until(() => d.child.exitCode !== null || d.child.signalCode !== null, 5000, 20);
    assert.is(d.child.signalCode, null, `not killed by a signal: ${d.stderr()}`);
    assert.is(d.child.exitCode, 0, d.stderr());
    assert.ok(fs.readdirSync(profiles).some((f) => f.endsWith('.cpuprofile')), 'the profile was written at exit');
  }
});

test('poller: the libuv loop only on Node; VIRTIOFSD_TS_POLLER=loop elsewhere falls back to the thread', () => {
  if (runtimeName === 'node') {
    const p = new FdPoller('loop');
    assert.is(p.mode, 'loop');
    p.close();
    return;
  }
  assert.throws(() => new FdPoller('loop'), /needs Node's libuv loop/);
  const before = process.env.VIRTIOFSD_TS_POLLER;
  process.env.VIRTIOFSD_TS_POLLER = 'loop';
  try {
    const p = new FdPoller();
    assert.is(p.mode, 'thread');
    p.close();
  } finally {
    if (before === undefined) delete process.env.VIRTIOFSD_TS_POLLER;
    else process.env.VIRTIOFSD_TS_POLLER = before;
  }
});

test('seccomp: socketpair is allowed for Deno only', () => {
  const arch = native.seccompArch();
  const socketpair = arch === 'x86_64' ? 53 : 199;
  assert.ok(seccompSyscallNumbers(arch, false, 'deno').includes(socketpair));
  assert.not.ok(seccompSyscallNumbers(arch, false, 'node').includes(socketpair));
  assert.not.ok(seccompSyscallNumbers(arch, false, 'bun').includes(socketpair));
});

test.after(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

test.run();

/**
 * End-to-end: one guest boot, two virtio-fs devices, each served by our daemon started the way a VM manager starts
 * virtiofsd, through a listening socket the "manager" (this test) created and hands over as an inherited fd:
 *
 * - tag `e2e`, libvirt's argv (libvirt/libvirt src/qemu/qemu_virtiofs.c, qemuVirtioFSBuildCommandLine, the `-o`
 *   form libvirt uses as our --print-capabilities claims no `separate-options`): `--fd=N -o source=DIR,cache=always,
 *   xattr,flock,posix_lock --thread-pool-size=16`, the socket at an fd number that is not 3, as virCommandPassFD
 *   leaves it;
 * - tag `kata`, Kata's argv (kata-containers/kata-containers src/runtime/virtcontainers/virtiofsd.go, args, plus
 *   the default virtio_fs_extra_args): `--syslog --cache=metadata --shared-dir=DIR --fd=3 --thread-pool-size=1
 *   --announce-submounts`, run in a private mount namespace whose /dev/log is a receiver this test binds, so the
 *   syslog lines can be read back.
 *
 * - tag `grp`: a socket our daemon creates itself with `--socket-group=users`.
 *
 * QEMU runs as nobody in group `users`, as a VM manager runs a non-root QEMU: libvirt gives its socket to the QEMU
 * user (its DAC security driver labels the chardev), Kata chowns its socket to the owner of the socket's directory
 * (utils.ChownToParent), and the third socket is reachable only through --socket-group. The guest reads a host file
 * on each share, writes one, and lists the Kata share; the host then checks the files, the syslog datagrams, that
 * neither fd-served daemon removed the socket path it was handed, and that all stop cleanly on SIGTERM.
 * Prerequisites missing: a counted skip, a failure in CI.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { native } from '../../host/native-loader.js';
import { drainDatagrams } from '../util/datagrams.js';
import { RUNTIME, signalChild } from '../util/runtime.js';
import { skipIf } from '../util/prereq.js';
import {
  type BackendHandle, type ExitStatus, OUR_CLI, guestImageOrReason, fmtStatus, startGuest, tailLines,
  which,
} from './guest.js';

const guestReason = guestImageOrReason(which('unshare') ? [] : ['unshare (util-linux)']);
const unavailable: string | undefined = typeof guestReason === 'string' ? guestReason
  : native.geteuid() !== 0 ? 'needs root (mount namespace for /dev/log, the sandbox)' : undefined;

/** An e2e test: a counted skip when its prerequisites are missing, a failure under CI=true (util/prereq.ts). */
function e2e(name: string, fn: () => Promise<void>): void {
  test(name, async () => {
    if (skipIf(unavailable)) return;
    await fn();
  });
}

interface Daemon { child: ChildProcess; stderr: () => string; exited: Promise<ExitStatus>; status?: ExitStatus }

function spawnDaemon(command: string[], stdio: ('ignore' | 'pipe' | number)[]): Daemon {
  const child = spawn(command[0]!, command.slice(1), { stdio });
  let err = '';
  child.stderr!.setEncoding('utf8').on('data', (s: string) => { err = (err + s).slice(-200_000); });
  const d: Daemon = {
    child,
    stderr: () => err,
    exited: new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal }))),
  };
  void d.exited.then((s) => { d.status = s; });
  return d;
}

/** The harness kills QEMU when a backend exits under it; this wraps one of our daemons for that. */
function asBackend(d: Daemon): BackendHandle {
  return {
    kind: 'ours', command: [], child: d.child, pid: d.child.pid ?? -1, exited: d.exited,
    exitStatus: () => d.status, running: () => d.status === undefined, stdout: () => '', stderr: d.stderr,
    async stop() {
      signalChild(d.child, 'SIGTERM');
      return { ...(await d.exited), forced: false };
    },
  };
}

async function stop(d: Daemon, what: string): Promise<ExitStatus> {
  if (d.status) return d.status;
  signalChild(d.child, 'SIGTERM');
  const timer = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 10_000));
  const s = await Promise.race([d.exited, timer]);
  if (s === 'timeout') {
    d.child.kill('SIGKILL');
    assert.unreachable(`${what} did not stop on SIGTERM:\n${tailLines(d.stderr(), 20)}`);
  }
  return s as ExitStatus;
}


const WORKLOAD = `#!/bin/sh
# Run by the guest's /init as: sh workload.sh /mnt (the libvirt share is /mnt).
MNT="$1"
res() { if [ "$2" = "$3" ]; then echo "E2E-RESULT $1 ok"; else echo "E2E-RESULT $1 fail got '$2' want '$3'"; fi; }
res lv-read "$(cat "$MNT/from-host.txt")" "libvirt share"
echo "guest wrote this" > "$MNT/from-guest.txt"
res lv-write "$(cat "$MNT/from-guest.txt")" "guest wrote this"
mkdir -p /mnt2
if mount -t virtiofs kata /mnt2; then echo "E2E-RESULT kata-mount ok"; else echo "E2E-RESULT kata-mount fail"; fi
res kata-read "$(cat /mnt2/from-host.txt)" "kata share"
echo "kata guest" > /mnt2/from-guest.txt
res kata-write "$(cat /mnt2/from-guest.txt)" "kata guest"
res kata-ls "$(ls /mnt2 | sort | tr '\\n' ' ')" "from-guest.txt from-host.txt "
umount /mnt2
res kata-umount "$?" "0"
mkdir -p /mnt3
if mount -t virtiofs grp /mnt3; then echo "E2E-RESULT grp-mount ok"; else echo "E2E-RESULT grp-mount fail"; fi
res grp-read "$(cat /mnt3/from-host.txt)" "group share"
umount /mnt3
`;

const STEPS = ['mount', 'lv-read', 'lv-write', 'kata-mount', 'kata-read', 'kata-write', 'kata-ls',
  'kata-umount', 'grp-mount', 'grp-read', 'workload-exit'];

/** A gid from /etc/group. */
function groupGid(name: string): number | undefined {
  for (const line of fs.readFileSync('/etc/group', 'utf8').split('\n')) {
    const [n, , gid] = line.split(':');
    if (n === name) return Number(gid);
  }
  return undefined;
}

/** The non-root QEMU: nobody, in group users (or nogroup where there is no users group). */
const QEMU_UID = 65534;
const QEMU_GROUP = groupGid('users') !== undefined ? 'users' : 'nogroup';

e2e('launchers: a non-root QEMU on libvirt\'s and Kata\'s exact argv (inherited sockets) and on --socket-group', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'e2e-launchers-'));
  fs.chmodSync(dir, 0o755); // the QEMU user reaches the sockets in it
  const qemuGid = groupGid(QEMU_GROUP)!;
  const lvShare = path.join(dir, 'libvirt-share');
  const kataShare = path.join(dir, 'kata-share');
  const grpShare = path.join(dir, 'group-share');
  for (const d of [lvShare, kataShare, grpShare]) fs.mkdirSync(d);
  fs.writeFileSync(path.join(lvShare, 'from-host.txt'), 'libvirt share\n');
  fs.writeFileSync(path.join(kataShare, 'from-host.txt'), 'kata share\n');
  fs.writeFileSync(path.join(grpShare, 'from-host.txt'), 'group share\n');
  const lvSock = path.join(dir, 'fs0-fs.sock');
  // Kata's socket directory belongs to the VMM's user (the sandbox's run directory).
  const kataRun = path.join(dir, 'kata-run');
  fs.mkdirSync(kataRun, { mode: 0o750 });
  fs.chownSync(kataRun, QEMU_UID, qemuGid);
  const kataSock = path.join(kataRun, 'vhost-fs.sock');
  const grpSock = path.join(dir, 'grp.sock');
  const logSock = path.join(dir, 'dev-log.sock');

  // The managers create and listen on the sockets themselves (libvirt: qemuVirtioFSOpenChardev; Kata: getSocketFD).
  const lvListen = native.unixListen(lvSock, 4);
  const kataListen = native.unixListen(kataSock, 4);
  const logRx = native.unixDatagram(logSock, true);
  assert.ok(lvListen >= 0 && kataListen >= 0 && logRx >= 0, 'test sockets');
  fs.chownSync(lvSock, QEMU_UID, qemuGid); // libvirt: qemuSecuritySetChardevLabel (DAC: the qemu user and group)
  const parent = fs.statSync(kataRun);
  fs.chownSync(kataSock, parent.uid, parent.gid); // Kata: utils.ChownToParent(socketPath)

  // libvirt: the fd keeps whatever number it had (here 5: fds 3 and 4 are not passed).
  const lv = spawnDaemon([...RUNTIME, OUR_CLI, '--fd=5', '-o',
    `source=${lvShare},cache=always,xattr,flock,posix_lock`, '--thread-pool-size=16'],
  ['ignore', 'ignore', 'pipe', 'ignore', 'ignore', lvListen]);
  // Kata: cmd.ExtraFiles[0] is fd 3. A private mount namespace gives it a /dev whose log is our receiver.
  const setup = 'mount -t tmpfs -o mode=755 tmpfs /dev && mknod -m 666 /dev/null c 1 3 && ' +
    'mknod -m 666 /dev/urandom c 1 9 && ln -s "$0" /dev/log && exec "$@"';
  const kata = spawnDaemon(['unshare', '--mount', '--propagation', 'private', '--', 'sh', '-c', setup, logSock,
    ...RUNTIME, OUR_CLI, '--syslog', '--cache=metadata', `--shared-dir=${kataShare}`, '--fd=3',
    '--thread-pool-size=1', '--announce-submounts'],
  ['ignore', 'ignore', 'pipe', kataListen]);
  native.close(lvListen); // VIR_COMMAND_PASS_FD_CLOSE_PARENT; Kata's deferred socketFD.Close()
  native.close(kataListen);
  // The third daemon makes its own socket, for the group.
  const grp = spawnDaemon([...RUNTIME, OUR_CLI, `--socket-path=${grpSock}`, `--shared-dir=${grpShare}`,
    `--socket-group=${QEMU_GROUP}`], ['ignore', 'ignore', 'pipe']);
  const t0 = Date.now();
  while (!grp.stderr().includes('Waiting for vhost-user socket connection')) {
    if (grp.status || Date.now() - t0 > 20_000) assert.unreachable(`--socket-group daemon did not start:\n${grp.stderr()}`);
    await new Promise((r) => setTimeout(r, 50));
  }

  let problems: string[] = [];
  let consoleTail = '';
  try {
    const run = startGuest({
      socketPath: lvSock, sharedDir: lvShare, workload: WORKLOAD, backend: asBackend(lv),
      qemuArgs: ['-chardev', `socket,id=char1,path=${kataSock}`, '-device', 'vhost-user-fs-pci,chardev=char1,tag=kata',
        '-chardev', `socket,id=char2,path=${grpSock}`, '-device', 'vhost-user-fs-pci,chardev=char2,tag=grp'],
      runAs: { uid: QEMU_UID, gid: qemuGid },
      timeoutMs: 180_000, idleTimeoutMs: 60_000,
    });
    const g = await run.result;
    consoleTail = `${tailLines(g.console, 40)}\n--- qemu stderr ---\n${tailLines(g.stderr, 10)}`;
    for (const step of STEPS) {
      const r = g.results.find((x) => x.name === step);
      if (!r) problems.push(`step ${step}: not reported`);
      else if (!r.ok) problems.push(`step ${step}: ${r.detail}`);
    }
    if (!g.done) problems.push(`guest did not finish (qemu ${fmtStatus(g.exit)}${g.timedOut ? `, ${g.timeoutReason}` : ''})`);
  } finally {
    const lvExit = await stop(lv, 'libvirt-style daemon');
    const kataExit = await stop(kata, 'Kata-style daemon');
    const grpExit = await stop(grp, '--socket-group daemon');
    if (grpExit.code !== 0) problems.push(`--socket-group daemon exited ${fmtStatus(grpExit)}`);
    if (lvExit.code !== 0) problems.push(`libvirt-style daemon exited ${fmtStatus(lvExit)}`);
    if (kataExit.code !== 0) problems.push(`Kata-style daemon exited ${fmtStatus(kataExit)}`);
  }
  const report = () => `${problems.join('\n')}\n--- console ---\n${consoleTail}\n--- libvirt daemon stderr ---\n` +
    `${tailLines(lv.stderr(), 20)}\n--- kata daemon stderr ---\n${tailLines(kata.stderr(), 20)}\n` +
    `--- --socket-group daemon stderr ---\n${tailLines(grp.stderr(), 20)}`;

  const read = (f: string) => { try { return fs.readFileSync(f, 'utf8'); } catch (e) { return String(e); } };
  if (read(path.join(lvShare, 'from-guest.txt')) !== 'guest wrote this\n') problems.push('libvirt share: guest file missing');
  if (read(path.join(kataShare, 'from-guest.txt')) !== 'kata guest\n') problems.push('kata share: guest file missing');
  if (!fs.existsSync(lvSock)) problems.push('the libvirt socket path was removed by the daemon');
  if (!fs.existsSync(kataSock)) problems.push('the Kata socket path was removed by the daemon');
  // --syslog: the Kata daemon's lines reached the logger (it runs as PID 1 of the sandbox's pid namespace).
  const lines = drainDatagrams(logRx);
  native.close(logRx);
  if (!lines.some((l) => /^<30>\w{3} [ \d]\d \d\d:\d\d:\d\d virtiofsd-ts\[\d+\]: listening on fd 3, sharing /.test(l))) {
    problems.push(`no syslog line 'listening on fd 3' (got ${lines.length}: ${lines.slice(0, 5).join(' | ')})`);
  }
  if (/\[virtiofsd-ts (info|warn)\]/.test(kata.stderr())) problems.push('the Kata daemon also logged to stderr');
  problems = problems.filter(Boolean);
  assert.is(problems.length, 0, report());
  if (process.env.E2E_KEEP !== '1') fs.rmSync(dir, { recursive: true, force: true });
});

test.run();

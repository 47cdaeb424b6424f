/**
 * The command lines VM managers start virtiofsd with, exactly as their sources build them, parsed by our CLI; what
 * the settings new to them do to a FUSE session (cache=metadata, -o timeout/no_readdirplus/no_killpriv_v2,
 * --preserve-noatime); the `--print-capabilities` JSON read the way libvirt reads it; the shipped vhost-user descriptor; `--help` against
 * README's option tables; and, with the CLI as a child process: serving on an inherited listening socket (`--fd`,
 * close-on-exec once taken over, its path left alone), the socket's permissions (`--socket-group`, checked by
 * connecting as another uid), and `--syslog` (RFC 3164 datagrams on the logger's socket). The live parts need root
 * (skipped, counted, otherwise).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { FuseClient } from '../host/frontend/fuse-client.js';
import * as P from '../host/fuse/protocol.js';
import { FUSE_ROOT_ID } from '../host/fuse/protocol.js';
import { VirtiofsDaemon } from '../host/daemon.js';
import { native } from '../host/native-loader.js';
import { drainDatagrams } from './util/datagrams.js';
import { requireRoot } from './util/prereq.js';
import { sleep } from './util/wait.js';
import { COMPAT_SYNOPSES, OPTION_SYNOPSES, parseCommandLine, type CliOptions } from '../host/cli-options.js';
import { log, setLogLevel, syslogLine, useStderr, useSyslog } from '../host/log.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const CLI = path.join(ROOT, 'dist', 'host', 'cli.js');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'launchers-test-'));
fs.chmodSync(tmp, 0o755); // the other uid of the --socket-group test must reach the socket
const share = path.join(tmp, 'share');
fs.mkdirSync(share);
fs.writeFileSync(path.join(share, 'hello.txt'), 'hello\n');

function parsed(argv: string[], env: NodeJS.ProcessEnv = {}): CliOptions {
  const o = parseCommandLine(argv, env);
  if (typeof o === 'string') throw new Error(`expected options, got ${o}`);
  return o;
}

/** A test that needs root: a counted skip when not root, a failure under CI=true (util/prereq.ts). */
function rootTest(name: string, fn: () => Promise<void>): void {
  test(name, async () => {
    if (!requireRoot()) return;
    await fn();
  });
}

// ---- the launchers' command lines --------------------------------------------------------------------------

test('libvirt without separate-options: --fd, one -o list, --thread-pool-size, -d', () => {
  // libvirt/libvirt src/qemu/qemu_virtiofs.c, qemuVirtioFSBuildCommandLine (the `-o` branch): "--fd=%d", then "-o"
  // "source=<path>[,cache=<mode>][,sandbox=<mode>][,xattr|,no_xattr][,flock|,no_flock][,posix_lock|,no_posix_lock]",
  // "--thread-pool-size=%i", "-d" (virtiofsd_debug in qemu.conf). Commas in the path are doubled by libvirt.
  const o = parsed(['--fd=23', '-o', 'source=/var/lib/libvirt/shares/vm1,cache=always,sandbox=chroot,xattr,flock,posix_lock',
    '--thread-pool-size=16', '-d']);
  assert.is(o.listenFd, 23);
  assert.is(o.socketPath, undefined);
  assert.is(o.sharedDir, '/var/lib/libvirt/shares/vm1');
  assert.is(o.cache, 'always');
  assert.is(o.sandbox, 'chroot');
  assert.ok(o.xattr);
  assert.ok(o.flock);
  assert.ok(o.posixLock);
  assert.is(o.threadPoolSize, 16);
  assert.is(o.logLevel, 'debug');
  // A comma in the path, doubled by libvirt (virQEMUBuildBufferEscapeComma).
  assert.is(parsed(['--fd=23', '-o', 'source=/srv/a,,b,cache=auto']).sharedDir, '/srv/a,b');
  // cache=none is libvirt's name for never; the off switches.
  const off = parsed(['--fd=5', '-o', 'source=/srv/s,cache=none,no_xattr,no_flock,no_posix_lock']);
  assert.is(off.cache, 'never');
  assert.not.ok(off.xattr);
  assert.not.ok(off.flock);
  assert.not.ok(off.posixLock);
});

test('libvirt with separate-options: --fd, --shared-dir, --cache, --sandbox, --xattr, --rlimit-nofile, --log-level', () => {
  // libvirt/libvirt src/qemu/qemu_virtiofs.c, the QEMU_VHOST_USER_FS_FEATURE_SEPARATE_OPTIONS branch: values as
  // separate arguments ("--shared-dir", path, "--cache", "never"), "--thread-pool-size=%i", "--rlimit-nofile=%llu",
  // "--log-level", "debug".
  const o = parsed(['--fd=23', '--shared-dir', '/srv/vm1', '--cache', 'never', '--sandbox', 'chroot', '--xattr',
    '--thread-pool-size=4', '--rlimit-nofile=65536', '--log-level', 'debug']);
  assert.equal([o.listenFd, o.sharedDir, o.cache, o.sandbox, o.xattr, o.threadPoolSize, o.rlimitNofile, o.logLevel],
    [23, '/srv/vm1', 'never', 'chroot', true, 4, 65536, 'debug']);
});

test('libvirt unprivileged: --uid-map/--gid-map are refused with the reason, not ignored', () => {
  // libvirt/libvirt src/qemu/qemu_virtiofs.c: "--uid-map=:%u:%u:%u:" / "--gid-map=:%u:%u:%u:" when not privileged.
  assert.throws(() => parseCommandLine(['--fd=23', '--shared-dir', '/srv/vm1', '--uid-map=:0:1000:1:']),
    /--uid-map is not supported: .*user namespace/);
  assert.throws(() => parseCommandLine(['--fd=23', '--shared-dir', '/srv/vm1', '--gid-map=:0:1000:1:']),
    /--gid-map is not supported/);
});

test('Kata (Go runtime): --syslog --cache --shared-dir --fd=3 plus the default extra args', () => {
  // kata-containers/kata-containers src/runtime/virtcontainers/virtiofsd.go, (*virtiofsd).args: "--syslog",
  // "--cache=" + cache, "--shared-dir=" + source, "--fd=3" (the first of cmd.ExtraFiles), then
  // virtio_fs_extra_args: ["--thread-pool-size=1", "--announce-submounts"] (configuration-qemu.toml), older
  // configurations ["--thread-pool-size=1", "-o", "announce_submounts"]. Kata accepts cache never|metadata|always|auto.
  const dir = '/run/kata-containers/shared/sandboxes/0123abcd/shared';
  for (const cache of ['auto', 'always', 'never', 'metadata'] as const) {
    const o = parsed(['--syslog', `--cache=${cache}`, `--shared-dir=${dir}`, '--fd=3', '--thread-pool-size=1',
      '--announce-submounts']);
    assert.equal([o.syslog, o.cache, o.sharedDir, o.listenFd, o.threadPoolSize, o.announceSubmounts],
      [true, cache, dir, 3, 1, true]);
  }
  const old = parsed(['--syslog', '--cache=auto', `--shared-dir=${dir}`, '--fd=3', '--thread-pool-size=1', '-o',
    'announce_submounts', '--inode-file-handles=prefer']);
  assert.ok(old.announceSubmounts);
  assert.is(old.inodeFileHandles, 'prefer');
});

test('Kata (runtime-rs): separate values, --sandbox none --seccomp none, --inode-file-handles, --xattr', () => {
  // kata-containers/kata-containers src/runtime-rs/crates/resource/src/share_fs/share_virtio_fs_standalone.rs,
  // virtiofsd_args: "--socket-path", sock, "--shared-dir", dir, "--cache", cache, "--sandbox", "none", "--seccomp",
  // "none", "--inode-file-handles", mode, then virtio_fs_extra_args, then "--xattr" unless disable_guest_selinux.
  const o = parsed(['--socket-path', 'vhost-fs.sock', '--shared-dir', '/run/kata-containers/shared/sandboxes/x/ro',
    '--cache', 'always', '--sandbox', 'none', '--seccomp', 'none', '--inode-file-handles', 'never',
    '--thread-pool-size=1', '--announce-submounts', '--xattr']);
  assert.equal([o.socketPath, o.cache, o.sandbox, o.seccomp, o.inodeFileHandles, o.threadPoolSize, o.xattr],
    ['vhost-fs.sock', 'always', 'none', 'none', 'never', 1, true]);
});

test('Podman machine: separate values, --sandbox none, --seccomp=none, RUST_LOG=ERROR', () => {
  // containers/podman pkg/machine/qemu/virtiofsd.go, createVirtiofsCmd: "--sandbox", "none", "--socket-path",
  // path, "--shared-dir", "." (run in the directory), "--seccomp=none", with RUST_LOG=ERROR in the environment.
  const o = parsed(['--sandbox', 'none', '--socket-path', '/run/user/1000/podman/virtiofschar0', '--shared-dir', '.',
    '--seccomp=none'], { RUST_LOG: 'ERROR' });
  assert.equal([o.sandbox, o.socketPath, o.sharedDir, o.seccomp, o.logLevel],
    ['none', '/run/user/1000/podman/virtiofschar0', '.', 'none', 'error']);
  // --log-level wins over RUST_LOG only when RUST_LOG is unset, as env_logger: here RUST_LOG is a filter we do not
  // read, so the option decides.
  assert.is(parsed(['--socket-path=/s', '--shared-dir=.', '--log-level=warn'], { RUST_LOG: 'virtiofsd=trace' }).logLevel, 'warn');
});

test('cloud-hypervisor docs: the Rust daemon\'s line and the old C daemon\'s -o line', () => {
  // cloud-hypervisor/cloud-hypervisor docs/fs.md: `virtiofsd --log-level debug --socket-path=/tmp/virtiofs
  // --shared-dir=/tmp/shared_dir --cache=never`; its older revision: `virtiofsd -d -o vhost_user_socket=/tmp/virtiofs
  // -o source=/tmp/shared_dir -o cache=always`.
  const o = parsed(['--log-level', 'debug', '--socket-path=/tmp/virtiofs', '--shared-dir=/tmp/shared_dir', '--cache=never']);
  assert.equal([o.logLevel, o.socketPath, o.sharedDir, o.cache], ['debug', '/tmp/virtiofs', '/tmp/shared_dir', 'never']);
  const c = parsed(['-d', '-o', 'vhost_user_socket=/tmp/virtiofs', '-o', 'source=/tmp/shared_dir', '-o', 'cache=always']);
  assert.equal([c.logLevel, c.socketPath, c.sharedDir, c.cache], ['debug', '/tmp/virtiofs', '/tmp/shared_dir', 'always']);
});

test('the C virtiofsd\'s -o list maps onto our settings', () => {
  const o = parsed(['--socket-path=/s', '-o', 'source=/d', '-o', 'writeback,no_readdirplus,allow_direct_io,timeout=2.5',
    '-o', 'log_level=warn,killpriv_v2,posix_acl,xattrmap=:ok:all:::,modcaps=-mknod,norace,announce_submounts', '-f']);
  assert.equal([o.writeback, o.readdirplus, o.allowDirectIo, o.timeout, o.logLevel, o.killprivV2, o.posixAcl, o.xattr,
    o.xattrmap, o.modcaps, o.announceSubmounts], [true, false, true, 2.5, 'warn', true, true, true, ':ok:all:::', '-mknod', true]);
  assert.is(parsed(['--socket-path=/s', '-o', 'source=/d,no_killpriv_v2']).killprivV2, false);
  assert.is(parsed(['--socket-path=/s', '-osource=/d', '-o', 'loglevel=err']).logLevel, 'error');
  // Unknown keys, values where none belong and missing values are errors, as in virtiofsd.
  assert.throws(() => parseCommandLine(['--socket-path=/s', '-o', 'source=/d,max_idle_threads=4']), /unknown -o option 'max_idle_threads'/);
  assert.throws(() => parseCommandLine(['--socket-path=/s', '-o', 'source=/d,bogus']), /unknown -o option 'bogus'/);
  assert.throws(() => parseCommandLine(['--socket-path=/s', '-o', 'source=/d,xattr=1']), /takes no value/);
  assert.throws(() => parseCommandLine(['--socket-path=/s', '-o', 'source']), /needs a value/);
  assert.throws(() => parseCommandLine(['--socket-path=/s', '-o', 'source=/d,cache=sometimes']), /-o cache/);
  assert.throws(() => parseCommandLine(['--socket-path=/s', '-o', 'source=/d,timeout=1e30']), /-o timeout must be/);
  assert.throws(() => parseCommandLine(['--socket-path=/s', '-o', 'source=/d,timeout=-1']), /-o timeout must be/);
  assert.throws(() => parseCommandLine(['--socket-path=/s', '-o', 'source=/d,security_label']), /security_label is not supported/);
});

test('later options override earlier ones, in command-line order', () => {
  assert.is(parsed(['--socket-path=/s', '--shared-dir=/d', '-o', 'cache=none', '--cache=always']).cache, 'always');
  assert.is(parsed(['--socket-path=/s', '--shared-dir=/d', '--cache=always', '-o', 'cache=none']).cache, 'never');
  assert.is(parsed(['--socket-path=/s', '--shared-dir=/d', '--log-level=error', '-d']).logLevel, 'debug');
});

test('refusals and conflicts say what is wrong', () => {
  const base = ['--shared-dir=/d'];
  assert.throws(() => parseCommandLine([...base, '--fd=3', '--socket-path=/s']), /--socket-path and --fd are exclusive|--fd and --socket-path/);
  assert.throws(() => parseCommandLine([...base, '--fd=3', '--socket-group=kvm']), /--socket-group applies to/);
  assert.throws(() => parseCommandLine([...base, '--fd=x']), /--fd must be an integer/);
  assert.throws(() => parseCommandLine([...base, '--fd=3', '--security-label']), /--security-label is not supported/);
  assert.throws(() => parseCommandLine([...base, '--fd=3', '--cache=never', '--allow-mmap']), /--allow-mmap with --cache=never/);
  assert.throws(() => parseCommandLine([...base, '--fd=3', '--cache=metadata', '--allow-mmap']), /--allow-mmap with --cache=metadata/);
  assert.is(parsed([...base, '--fd=3', '--cache=auto', '--allow-mmap']).cache, 'auto');
  assert.throws(() => parseCommandLine([...base, '--fd=3', '--no-such-option']), /unknown option '--no-such-option'/);
  assert.throws(() => parseCommandLine([...base, '--fd=3', '--xattr=yes']), /takes no value/);
  assert.throws(() => parseCommandLine([...base, '--fd=3', 'stray']), /unexpected argument 'stray'/);
  assert.throws(() => parseCommandLine([...base, '--fd']), /needs a value/);
  assert.throws(() => parseCommandLine(['--fd=3']), /--shared-dir/);
  assert.throws(() => parseCommandLine(base), /--socket-path/);
  assert.equal(parseCommandLine(['--print-capabilities']), 'print-capabilities');
  assert.equal(parseCommandLine(['-V']), 'version');
  assert.equal(parseCommandLine(['--fd=3', '-h']), 'help');
  const o = parsed([...base, '--fd=3', '--preserve-noatime', '--no-readdirplus', '--no-killpriv-v2']);
  assert.equal([o.preserveNoatime, o.readdirplus, o.killprivV2], [true, false, false]);
});

// ---- what the new settings do to the FUSE session ----------------------------------------------------------

/** Runs `fn` against an in-process daemon started with the options the command line gives. */
async function withDaemon(argv: string[], fn: (fc: FuseClient, init: { flags: number }) => Promise<void>): Promise<void> {
  const socketPath = path.join(tmp, `lib-${Math.random().toString(36).slice(2)}.sock`);
  const { syslog: _syslog, ...opts } = parsed([`--socket-path=${socketPath}`, `--shared-dir=${share}`, '--sandbox=none', ...argv]);
  const d = await VirtiofsDaemon.start({ ...opts, logLevel: 'off' });
  const fc = await FuseClient.connect(socketPath);
  try {
    await fn(fc, await fc.init({ flags: P.FUSE_ASYNC_READ | P.FUSE_DO_READDIRPLUS | P.FUSE_HANDLE_KILLPRIV_V2 | P.FUSE_MAX_PAGES }));
  } finally {
    fc.close();
    await d.close();
  }
}

test('--cache=metadata: day-long entry/attr timeouts, cached directory listings, direct I/O on files', async () => {
  // The Rust virtiofsd's CachePolicy::Metadata: timeout 86400 s, DIRECT_IO on files, CACHE_DIR|KEEP_CACHE on dirs.
  await withDaemon(['--cache=metadata'], async (fc) => {
    const e = await fc.lookup(FUSE_ROOT_ID, 'hello.txt');
    assert.equal([e.entryValid, e.attrValid], [86400, 86400]);
    const f = await fc.open(e.nodeid, native.constants.O_RDONLY);
    assert.is(f.openFlags & (P.FOPEN_DIRECT_IO | P.FOPEN_KEEP_CACHE), P.FOPEN_DIRECT_IO);
    const dir = await fc.opendir(FUSE_ROOT_ID);
    assert.is(dir.openFlags & (P.FOPEN_CACHE_DIR | P.FOPEN_KEEP_CACHE | P.FOPEN_DIRECT_IO), P.FOPEN_CACHE_DIR | P.FOPEN_KEEP_CACHE);
  });
  await withDaemon(['--cache=auto'], async (fc) => {
    const e = await fc.lookup(FUSE_ROOT_ID, 'hello.txt');
    assert.is(e.entryValid, 1);
    assert.is((await fc.open(e.nodeid, native.constants.O_RDONLY)).openFlags & P.FOPEN_DIRECT_IO, 0);
  });
});

test('-o timeout=, no_readdirplus and no_killpriv_v2 reach the FUSE session', async () => {
  await withDaemon(['-o', 'timeout=7,no_readdirplus,no_killpriv_v2'], async (fc, init) => {
    assert.is((await fc.lookup(FUSE_ROOT_ID, 'hello.txt')).entryValid, 7);
    assert.is(init.flags & P.FUSE_DO_READDIRPLUS, 0, 'READDIRPLUS not negotiated');
    assert.is(init.flags & P.FUSE_HANDLE_KILLPRIV_V2, 0, 'KILLPRIV_V2 not negotiated');
  });
  await withDaemon([], async (_fc, init) => {
    assert.is.not(init.flags & P.FUSE_DO_READDIRPLUS, 0, 'READDIRPLUS by default');
    assert.is.not(init.flags & P.FUSE_HANDLE_KILLPRIV_V2, 0, 'KILLPRIV_V2 by default');
  });
});

/** This process's fds on `file`: fd number -> open-file flags (fdinfo, octal). */
function hostFds(file: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const name of fs.readdirSync('/proc/self/fd')) {
    try {
      if (fs.readlinkSync(`/proc/self/fd/${name}`) !== file) continue;
      out.set(name, parseInt(/^flags:\s+(\d+)/m.exec(fs.readFileSync(`/proc/self/fdinfo/${name}`, 'utf8'))![1]!, 8));
    } catch {
      // closed meanwhile
    }
  }
  return out;
}

test('--preserve-noatime passes the guest\'s O_NOATIME to the host open; by default it is dropped', async () => {
  const O_NOATIME = native.constants.O_NOATIME;
  const file = path.join(share, 'hello.txt');
  for (const [argv, want] of [[['--preserve-noatime'], O_NOATIME], [[], 0]] as const) {
    await withDaemon([...argv], async (fc) => {
      const e = await fc.lookup(FUSE_ROOT_ID, 'hello.txt');
      const before = hostFds(file);
      const f = await fc.open(e.nodeid, native.constants.O_RDONLY | O_NOATIME);
      const opened = [...hostFds(file)].filter(([fd]) => !before.has(fd)).map(([, flags]) => flags);
      assert.is(opened.length, 1, 'one host fd for the open');
      assert.is(opened[0]! & O_NOATIME, want, argv.join(' ') || 'default');
      await fc.release(e.nodeid, f.fh);
    });
  }
});

// ---- --print-capabilities, the descriptor, --help ---------------------------------------------------------

/** The vhost-user-fs features libvirt knows (src/qemu/qemu_vhost_user.h, qemuVhostUserFSFeature). */
const LIBVIRT_FS_FEATURES = ['migrate-precopy', 'separate-options'];

test('--print-capabilities is the JSON libvirt reads, claiming nothing we do not do', () => {
  const r = spawnSync(process.execPath, [CLI, '--print-capabilities'], { encoding: 'utf8' });
  assert.is(r.status, 0, r.stderr);
  // libvirt: virJSONValueFromString on the whole output, then the "features" array of strings.
  const doc = JSON.parse(r.stdout) as { type?: unknown; features?: unknown };
  assert.is(doc.type, 'fs');
  assert.ok(Array.isArray(doc.features), 'a features array (libvirt fails without one)');
  const features = doc.features as unknown[];
  for (const f of features) assert.ok(typeof f === 'string' && LIBVIRT_FS_FEATURES.includes(f), `feature ${String(f)}`);
  // No migration: the backend offers neither LOG_SHMFD nor device state.
  assert.not.ok(features.includes('migrate-precopy'));
});

test('the shipped vhost-user descriptor has the fields libvirt and QEMU\'s schema require', () => {
  const file = path.join(ROOT, 'share', 'qemu', 'vhost-user', '50-virtiofsd-ts.json');
  const doc = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
  // qemu docs/interop/vhost-user.json: VhostUserBackend { description, type, binary, [tags] }; libvirt reads type
  // and binary (qemu_vhost_user.c, qemuVhostUserParse).
  assert.is(doc.type, 'fs');
  assert.type(doc.description, 'string');
  assert.ok(typeof doc.binary === 'string' && path.isAbsolute(doc.binary), 'an absolute binary path');
  assert.is(path.basename(doc.binary as string), 'virtiofsd-ts');
  const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { bin: Record<string, string> };
  assert.ok(pkg.bin['virtiofsd-ts'] !== undefined, 'the descriptor names the command package.json installs');
});

test('README\'s option tables list exactly what --help lists, in the same order', () => {
  const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const section = (title: string): string => {
    const start = readme.indexOf(`\n## ${title}\n`);
    assert.ok(start >= 0, `README has a "## ${title}" section`);
    const end = readme.indexOf('\n## ', start + 1);
    return readme.slice(start, end < 0 ? undefined : end);
  };
  const firstColumn = (text: string, marker: string): string[] => {
    const at = text.indexOf(marker);
    assert.ok(at >= 0, `README has the table after "${marker}"`);
    const rows: string[] = [];
    for (const line of text.slice(at).split('\n').slice(1)) {
      if (!line.startsWith('|')) {
        if (rows.length > 0) break;
        continue;
      }
      const cell = line.split(/(?<!\\)\|/)[1]!.trim();
      if (cell === '---' || cell === 'option' || cell === 'key') continue;
      rows.push(cell.replace(/`/g, '').replace(/\\\|/g, '|'));
    }
    return rows;
  };
  const options = section('Options');
  assert.equal(firstColumn(options, '| option |'), [...OPTION_SYNOPSES]);
  assert.equal(firstColumn(options, '| key |'), [...COMPAT_SYNOPSES]);
  const help = spawnSync(process.execPath, [CLI, '--help'], { encoding: 'utf8' }).stdout;
  for (const s of [...OPTION_SYNOPSES, ...COMPAT_SYNOPSES]) assert.ok(help.includes(`  ${s}`), `--help lists ${s}`);
  assert.not.ok(/blocking\s+lock\s+that\s+conflicts\s+fails/.test(help), 'no claim that a blocking lock fails');
});

// ---- syslog -----------------------------------------------------------------------------------------------


test('log lines go to the syslog socket as RFC 3164 datagrams, facility daemon', () => {
  const sock = path.join(tmp, 'log.sock');
  const rx = native.unixDatagram(sock, true);
  assert.ok(rx >= 0, native.strerror(-rx));
  try {
    assert.is(useSyslog(sock, 'vfsd-test'), null);
    setLogLevel('info');
    log.info('first line');
    log.warn('second line');
    log.debug('below the threshold');
    log.error(new Error('boom'));
    useStderr();
    const got = drainDatagrams(rx);
    assert.is(got.length, 3, got.join('\n'));
    assert.match(got[0]!, new RegExp(`^<30>[A-Z][a-z]{2} [ 0-9]\\d \\d\\d:\\d\\d:\\d\\d vfsd-test\\[${process.pid}\\]: first line$`));
    assert.match(got[1]!, /^<28>.* vfsd-test\[\d+\]: second line$/);
    assert.match(got[2]!, /^<27>.* vfsd-test\[\d+\]: Error: boom/);
    assert.is(syslogLine(6, 'x', 'y', new Date(2026, 0, 5, 7, 8, 9)), `<30>Jan  5 07:08:09 x[${process.pid}]: y`);
  } finally {
    native.close(rx);
  }
  assert.match(useSyslog(path.join(tmp, 'nobody-listens.sock')) ?? '', /nobody-listens\.sock: /);
});

// ---- the CLI as a child process ----------------------------------------------------------------------------

interface Child { child: ChildProcess; stderr: () => string; exited: Promise<number | null> }

function startCli(args: string[], stdio: ('ignore' | 'pipe' | number)[] = ['ignore', 'ignore', 'pipe'],
  env: NodeJS.ProcessEnv = process.env): Child {
  let err = '';
  const child = spawn(process.execPath, [CLI, ...args], { stdio, env });
  child.stderr!.on('data', (b: Buffer) => { err += b.toString(); });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, stderr: () => err, exited };
}

async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`${what}: timed out`)), ms); });
  try {
    return await Promise.race([p, t]);
  } finally {
    clearTimeout(timer);
  }
}

/** The fd numbers of `pid` that refer to the socket with this inode, with their fdinfo flags. */
function socketFdsOf(pid: number, inode: bigint): { fd: number; flags: number }[] {
  const out: { fd: number; flags: number }[] = [];
  for (const name of fs.readdirSync(`/proc/${pid}/fd`)) {
    let target = '';
    try {
      target = fs.readlinkSync(`/proc/${pid}/fd/${name}`);
    } catch {
      continue;
    }
    if (target !== `socket:[${inode}]`) continue;
    const info = fs.readFileSync(`/proc/${pid}/fdinfo/${name}`, 'utf8');
    out.push({ fd: Number(name), flags: parseInt(/^flags:\s+(\d+)/m.exec(info)![1]!, 8) });
  }
  return out;
}

/** The daemon's own process (under the namespace sandbox it is the helper's child). */
function servingPid(pid: number): number {
  try {
    const kids = fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean);
    return kids.length > 0 ? servingPid(Number(kids[0])) : pid;
  } catch {
    return pid;
  }
}

async function serves(socketPath: string): Promise<void> {
  const fc = await FuseClient.connect(socketPath, { timeoutMs: 20000 });
  try {
    await fc.init();
    const e = await fc.lookup(FUSE_ROOT_ID, 'hello.txt');
    assert.is(e.attr.size, 6);
  } finally {
    fc.close();
  }
}

for (const sandbox of ['none', 'namespace'] as const) {
  rootTest(`--fd: serves on an inherited listening socket, taken over close-on-exec, path left (sandbox ${sandbox})`, async () => {
    const sockPath = path.join(tmp, `inherited-${sandbox}.sock`);
    const lfd = native.unixListen(sockPath, 4);
    assert.ok(lfd >= 0, native.strerror(-lfd));
    // The socket's own inode (sockfs; /proc/PID/fd links name it), not the inode of its file on disk.
    const stx = new Uint8Array(256);
    assert.is(native.statx(lfd, '', native.constants.AT_EMPTY_PATH, native.constants.STATX_BASIC_STATS, stx, 0), 0);
    const sockInode = new DataView(stx.buffer).getBigUint64(32, true);
    // As Kata hands it over: the socket is the child's fd 3 (exec.Cmd.ExtraFiles[0]).
    const d = startCli(['--syslog', '--cache=auto', `--shared-dir=${share}`, '--fd=3', '--thread-pool-size=1',
      `--sandbox=${sandbox}`], ['ignore', 'ignore', 'pipe', lfd]);
    native.close(lfd); // the launcher's copy goes (libvirt: VIR_COMMAND_PASS_FD_CLOSE_PARENT)
    try {
      await withTimeout(serves(sockPath), 30000, 'serving on the inherited socket');
      const pid = servingPid(d.child.pid!);
      const fds = socketFdsOf(pid, sockInode);
      assert.is(fds.length, 1, `one fd of the daemon on the listening socket: ${JSON.stringify(fds)}`);
      assert.is.not(fds[0]!.fd, 3, 'the inherited fd 3 is closed once taken over');
      assert.ok((fds[0]!.flags & 0o2000000) !== 0, 'O_CLOEXEC on the fd the daemon keeps');
      // A second frontend after the first left: the socket stays served.
      await withTimeout(serves(sockPath), 30000, 'second session');
    } finally {
      d.child.kill('SIGTERM');
      await withTimeout(d.exited, 10000, 'daemon exit');
    }
    assert.ok(fs.existsSync(sockPath), 'the launcher\'s socket path is not unlinked by the daemon');
    // No logger listens on /dev/log here unless the machine runs one: then the warning says so and lines go to stderr.
    if (!fs.existsSync('/dev/log')) assert.match(d.stderr(), /--syslog: no system logger/);
  });
}

rootTest('--fd: a socket that is not listening, or no socket at all, is refused at start', async () => {
  const pair = new Int32Array(2);
  assert.is(native.socketpair(pair), 0);
  const a = startCli([`--shared-dir=${share}`, '--fd=3', '--sandbox=none'], ['ignore', 'ignore', 'pipe', pair[0]!]);
  assert.is(await withTimeout(a.exited, 10000, 'exit'), 1);
  assert.match(a.stderr(), /--fd=3 is a socket that is not listening/);
  native.close(pair[0]!);
  native.close(pair[1]!);
  const nullFd = fs.openSync('/dev/null', 'r');
  const b = startCli([`--shared-dir=${share}`, '--fd=3', '--sandbox=none'], ['ignore', 'ignore', 'pipe', nullFd]);
  assert.is(await withTimeout(b.exited, 10000, 'exit'), 1);
  assert.match(b.stderr(), /--fd=3 is not a socket/);
  fs.closeSync(nullFd);
  const c = startCli([`--shared-dir=${share}`, '--fd=900', '--sandbox=none']);
  assert.is(await withTimeout(c.exited, 10000, 'exit'), 1);
  assert.match(c.stderr(), /--fd=900: Bad file descriptor/);
});

/**
 * Connects to `socketPath` as uid/gid (a child node, no supplementary groups) and asks GET_FEATURES; resolves
 * with 'ok <features hex>' or the error code (EACCES).
 */
function vhostUserAs(socketPath: string, uid: number, gid: number): Promise<string> {
  const script = `
    const net = require('node:net');
    const s = net.connect(process.argv[1]);
    s.on('error', (e) => { console.log(e.code); process.exit(0); });
    s.on('connect', () => {
      const h = Buffer.alloc(12); h.writeUInt32LE(1, 0); h.writeUInt32LE(1, 4); h.writeUInt32LE(0, 8);
      s.write(h);
    });
    let got = Buffer.alloc(0);
    s.on('data', (b) => {
      got = Buffer.concat([got, b]);
      if (got.length >= 20) { console.log('ok ' + got.readBigUInt64LE(12).toString(16)); process.exit(0); }
    });`;
  const r = spawnSync(process.execPath, ['-e', script, socketPath], { uid, gid, encoding: 'utf8', timeout: 15000 });
  return Promise.resolve(`${r.stdout.trim()}${r.status !== 0 ? ` (exit ${r.status}: ${r.stderr})` : ''}`);
}

function groupGid(name: string): number | undefined {
  for (const line of fs.readFileSync('/etc/group', 'utf8').split('\n')) {
    const [n, , gid] = line.split(':');
    if (n === name) return Number(gid);
  }
  return undefined;
}

rootTest('--socket-group: the socket is rwxrwx--- and the group\'s other uid connects; without it, owner only', async () => {
  const group = groupGid('users') !== undefined ? 'users' : 'nogroup';
  const gid = groupGid(group)!;
  const other = 65534; // nobody
  const run = async (args: string[], sockName: string) => {
    const sock = path.join(tmp, sockName);
    const d = startCli([`--socket-path=${sock}`, `--shared-dir=${share}`, '--sandbox=none', ...args]);
    const t0 = Date.now();
    while (!fs.existsSync(sock)) {
      if (d.child.exitCode !== null || Date.now() - t0 > 15000) throw new Error(`daemon did not start: ${d.stderr()}`);
      await sleep(20);
    }
    // As soon as the socket file exists (a launcher polling for it, as Podman does, connects now).
    const st = fs.statSync(sock);
    // Kata's runtime-rs starts the VM once this line is on stderr (share_virtio_fs_standalone.rs, run_virtiofsd).
    const t1 = Date.now();
    while (!d.stderr().includes('Waiting for vhost-user socket connection') && Date.now() - t1 < 10000) await sleep(20);
    assert.match(d.stderr(), /Waiting for vhost-user socket connection/);
    const asGroup = await vhostUserAs(sock, other, gid);
    const asOther = await vhostUserAs(sock, other, 65533);
    d.child.kill('SIGTERM');
    await withTimeout(d.exited, 10000, 'daemon exit');
    return { mode: st.mode & 0o777, gid: st.gid, uid: st.uid, asGroup, asOther };
  };
  const withGroup = await run([`--socket-group=${group}`], 'grp.sock');
  assert.is(withGroup.mode, 0o770);
  assert.is(withGroup.gid, gid);
  assert.match(withGroup.asGroup, /^ok [0-9a-f]+$/, 'a member of the group speaks vhost-user');
  assert.is(withGroup.asOther, 'EACCES', 'a uid outside the group cannot connect');
  const numeric = await run([`--socket-group=${gid}`], 'grp-num.sock');
  assert.is(numeric.gid, gid);
  const plain = await run([], 'plain.sock');
  assert.is(plain.mode, 0o700, 'owner only by default, as virtiofsd');
  assert.is(plain.uid, 0);
  assert.is(plain.asGroup, 'EACCES', 'without --socket-group the other uid cannot connect');
  const bad = startCli([`--socket-path=${path.join(tmp, 'bad.sock')}`, `--shared-dir=${share}`, '--sandbox=none',
    '--socket-group=no-such-group-here']);
  assert.is(await withTimeout(bad.exited, 10000, 'exit'), 1);
  assert.match(bad.stderr(), /--socket-group: no group 'no-such-group-here'/);
});

test.after(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

test.run();

#!/usr/bin/env node
/**
 * The `virtiofsd-ts` command. Option names follow the Rust virtiofsd for what we support, so a VMM's launch
 * line needs no translation.
 */
import { parseArgs } from 'node:util';
import { readFileSync, realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ConfigError, VirtiofsdError } from './errors.js';
import { isLogLevel, log, setLogLevel } from './log.js';
import { CACHE_MODES, type CacheMode, type DaemonOptions, VirtiofsDaemon } from './daemon.js';
import { SANDBOX_MODES, SECCOMP_MODES, type SandboxMode, type SeccompMode, capabilitiesToDrop, capabilitySet,
  defaultSandbox, insideNamespaceSandbox, parseModcaps, relaunch } from './sandbox.js';
import { socketInUse } from './vhost-user/listener.js';
import { IdMap } from './passthrough/id-map.js';
import { XattrMap } from './passthrough/xattr-map.js';
import { INODE_FILE_HANDLES, type InodeFileHandles } from './passthrough/inode-store.js';
import { native } from './native-loader.js';
import { DAX_PROTOCOLS, parseInodeDax, type DaxProtocol } from './dax/dax-device.js';

const USAGE = `Usage: virtiofsd-ts --socket-path=PATH --shared-dir=DIR [options]
       virtiofsd-ts --mountpoint=DIR2 --shared-dir=DIR [options]

A vhost-user-fs backend: serves DIR to a virtual machine whose VMM connects to PATH
(QEMU: -chardev socket,id=char0,path=PATH -device vhost-user-fs-pci,chardev=char0,tag=TAG),
or mounts DIR on this host at DIR2 through /dev/fuse (as root; unmounted on exit).

Options:
  --socket-path=PATH        vhost-user Unix socket to listen on (required unless --mountpoint)
  --mountpoint=DIR2         instead of serving a VM, mount the share at DIR2 on this host (/dev/fuse)
  --shared-dir=DIR          host directory to share (required)
  --cache=MODE              guest caching: never | auto | always (default: auto)
  --log-level=LEVEL         error | warn | info | debug | trace | off (default: info)
  --tag=TAG                 accepted for compatibility; QEMU sets the mount tag with -device ...,tag=TAG
  --num-request-queues=N    request queues offered to the frontend (default: 1, max: 63)
  --exit-on-disconnect      exit when the frontend disconnects instead of waiting for the next one
  --xattr                   serve extended attributes (getxattr/setxattr/listxattr/removexattr)
  --xattrmap=MAP            map xattr names between guest and host (needs --xattr), e.g.
                            ':prefix:all:trusted.:user.virtiofs.::ok:all:::' (rules: prefix|ok|bad|
                            unsupported, scopes client|server|all, ':map:KEY:PREPEND:'; see README)
  --posix-acl               enforce POSIX ACLs in the guest (FUSE_POSIX_ACL; needs --xattr); the
                            request's umask is applied here unless the directory has a default ACL
  --translate-uid=RULE      translate uids, repeatable: map:GUEST:HOST:COUNT, guest:GUEST:HOST:COUNT,
                            host:HOST:GUEST:COUNT, squash-guest:GUEST:HOST:COUNT,
                            squash-host:HOST:GUEST:COUNT, forbid-guest:GUEST:COUNT (EPERM); ids no rule
                            covers pass unchanged
  --translate-gid=RULE      the same for gids
  --posix-lock              serve the guest's POSIX (fcntl) locks on the host as OFD locks; a blocking
                            lock that conflicts fails with EOPNOTSUPP (default: locks stay in the guest)
  --flock                   serve the guest's flock(2) locks on the host (FUSE_FLOCK_LOCKS); same
                            blocking rule (default: locks stay in the guest)
  --writeback               let the guest cache writes (FUSE writeback cache)
  --allow-direct-io         honour O_DIRECT opens from the guest on the host
  --inode-file-handles=MODE hold inodes by file handle instead of an open fd each: never (the default) |
                            prefer (handles where the filesystem has them, else fds) | mandatory (fail
                            when a handle cannot be made). Needs CAP_DAC_READ_SEARCH, i.e. root (kept in
                            the sandbox when MODE is not never)
  --announce-submounts      tell the guest about host mount points inside DIR (FUSE_SUBMOUNTS), so it
                            mounts each as its own filesystem (own st_dev, no inode-number clashes)
  --allow-mknod-devices     let the guest create character/block device nodes (default: refused with
                            EPERM; they would be host device nodes). The daemon never opens one either way
  --readonly                refuse every change to the shared directory (EROFS)
  --dax-window=SIZE         offer a DAX cache window of SIZE bytes (multiple of 2M, e.g. 1G): the guest
                            maps file pages straight into it (mount -t virtiofs TAG /mnt -o dax)
  --dax-protocol=DIALECT    how mappings reach the VMM: shmem (SHMEM_MAP/UNMAP, upstream; the default) |
                            legacy (SLAVE_FS_MAP/UNMAP of the original virtio-fs QEMU, cache-size= SIZE)
  --inode-dax=POLICY        files the guest maps with -o dax=inode: never (default) | always |
                            size:N[k|m|g] (regular files of at least N bytes)
  --rlimit-nofile=N         set the open-file limit to N (0: leave it; default: raise it to
                            min(1000000, fs.nr_open), or to the hard limit when that is not allowed)
  --sandbox=MODE            confine the daemon to DIR: namespace (pivot_root in new mount/pid/net
                            namespaces) | chroot | none (default: namespace as root, else none)
  --seccomp=MODE            syscall allow-list once set up; other syscalls: kill (the daemon) | log
                            (kernel log) | trap (SIGSYS) | none (no filter; the default)
  --modcaps=LIST            adjust the capabilities kept as root, e.g. +sys_admin:-mknod (default: chown,
                            dac_override, fowner, fsetid, setgid, setuid, mknod, setfcap; dropped for
                            every thread before node starts)
  -h, --help                print this help and exit
  -V, --version             print the version and exit
`;

function packageVersion(): string {
  const pkgPath = fileURLToPath(new URL('../../package.json', import.meta.url));
  try {
    return (JSON.parse(readFileSync(pkgPath, 'utf8')) as { version: string }).version;
  } catch {
    return JSON.parse(readFileSync(fileURLToPath(new URL('../package.json', import.meta.url)), 'utf8')).version;
  }
}

/** Parses argv into daemon options; throws ConfigError with a message fit for the user. */
export function parseCommandLine(argv: string[]): DaemonOptions | 'help' | 'version' {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        'socket-path': { type: 'string' },
        sandbox: { type: 'string' },
        seccomp: { type: 'string' },
        modcaps: { type: 'string' },
        mountpoint: { type: 'string' },
        'shared-dir': { type: 'string' },
        cache: { type: 'string' },
        'log-level': { type: 'string' },
        tag: { type: 'string' },
        'num-request-queues': { type: 'string' },
        'exit-on-disconnect': { type: 'boolean' },
        xattr: { type: 'boolean' },
        xattrmap: { type: 'string' },
        'posix-acl': { type: 'boolean' },
        'translate-uid': { type: 'string', multiple: true },
        'translate-gid': { type: 'string', multiple: true },
        'posix-lock': { type: 'boolean' },
        flock: { type: 'boolean' },
        writeback: { type: 'boolean' },
        'allow-direct-io': { type: 'boolean' },
        'inode-file-handles': { type: 'string' },
        'announce-submounts': { type: 'boolean' },
        'allow-mknod-devices': { type: 'boolean' },
        readonly: { type: 'boolean' },
        'dax-window': { type: 'string' },
        'dax-protocol': { type: 'string' },
        'inode-dax': { type: 'string' },
        'rlimit-nofile': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean', short: 'V' },
      },
    });
  } catch (e) {
    throw new ConfigError((e as Error).message);
  }
  const v = parsed.values;
  if (v.help) return 'help';
  if (v.version) return 'version';
  if (!v['socket-path'] && !v.mountpoint) throw new ConfigError('--socket-path is required');
  if (v['socket-path'] && v.mountpoint) throw new ConfigError('--socket-path and --mountpoint are exclusive');
  if (!v['shared-dir']) throw new ConfigError('--shared-dir is required');
  if (v.sandbox !== undefined && !SANDBOX_MODES.includes(v.sandbox as SandboxMode)) {
    throw new ConfigError(`--sandbox must be one of ${SANDBOX_MODES.join(', ')} (got '${v.sandbox}')`);
  }
  if (v.seccomp !== undefined && !(SECCOMP_MODES as readonly string[]).includes(v.seccomp)) {
    throw new ConfigError(`--seccomp must be one of ${SECCOMP_MODES.join(', ')} (got '${v.seccomp}')`);
  }
  if (v.modcaps !== undefined) parseModcaps(v.modcaps);
  // Parsed here to report a bad rule before anything starts; the daemon parses them again.
  if (v.xattrmap !== undefined && !v.xattr) throw new ConfigError('--xattrmap needs --xattr');
  if (v['posix-acl'] && !v.xattr) throw new ConfigError('--posix-acl needs --xattr');
  if (v.xattrmap !== undefined) new XattrMap(v.xattrmap);
  const translateUid = v['translate-uid'] ?? [];
  const translateGid = v['translate-gid'] ?? [];
  try {
    new IdMap(translateUid);
  } catch (e) {
    throw new ConfigError(`--translate-uid: ${(e as Error).message}`);
  }
  try {
    new IdMap(translateGid);
  } catch (e) {
    throw new ConfigError(`--translate-gid: ${(e as Error).message}`);
  }
  const cache = (v.cache ?? 'auto') as CacheMode;
  if (!CACHE_MODES.includes(cache)) {
    throw new ConfigError(`--cache must be one of ${CACHE_MODES.join(', ')} (got '${v.cache}')`);
  }
  const inodeFileHandles = (v['inode-file-handles'] ?? 'never') as InodeFileHandles;
  if (!INODE_FILE_HANDLES.includes(inodeFileHandles)) {
    throw new ConfigError(`--inode-file-handles must be one of ${INODE_FILE_HANDLES.join(', ')} ` +
      `(got '${v['inode-file-handles']}')`);
  }
  const level = v['log-level'] ?? 'info';
  if (!isLogLevel(level)) throw new ConfigError(`--log-level: unknown level '${level}'`);
  let numRequestQueues = 1;
  if (v['num-request-queues'] !== undefined) {
    numRequestQueues = Number(v['num-request-queues']);
    if (!Number.isInteger(numRequestQueues) || numRequestQueues < 1 || numRequestQueues > 63) {
      throw new ConfigError('--num-request-queues must be an integer from 1 to 63');
    }
  }
  let rlimitNofile: number | undefined;
  if (v['rlimit-nofile'] !== undefined) {
    rlimitNofile = Number(v['rlimit-nofile']);
    if (!/^\d+$/.test(v['rlimit-nofile']) || !Number.isSafeInteger(rlimitNofile)) {
      throw new ConfigError('--rlimit-nofile must be a non-negative integer');
    }
  }
  const dax = parseDaxOptions(v['dax-window'], v['dax-protocol'], v['inode-dax'], v.mountpoint !== undefined);
  return {
    ...dax,
    ...(v.mountpoint ? { mountpoint: v.mountpoint } : { socketPath: v['socket-path'] }),
    sharedDir: v['shared-dir'],
    ...(v.sandbox !== undefined ? { sandbox: v.sandbox as SandboxMode } : {}),
    ...(v.seccomp !== undefined ? { seccomp: v.seccomp as SeccompMode } : {}),
    ...(v.modcaps !== undefined ? { modcaps: v.modcaps } : {}),
    cache,
    logLevel: level,
    tag: v.tag,
    numRequestQueues,
    exitOnDisconnect: v['exit-on-disconnect'] ?? false,
    xattr: v.xattr ?? false,
    ...(v.xattrmap !== undefined ? { xattrmap: v.xattrmap } : {}),
    posixAcl: v['posix-acl'] ?? false,
    translateUid,
    translateGid,
    posixLock: v['posix-lock'] ?? false,
    flock: v.flock ?? false,
    writeback: v.writeback ?? false,
    allowDirectIo: v['allow-direct-io'] ?? false,
    inodeFileHandles,
    announceSubmounts: v['announce-submounts'] ?? false,
    allowMknodDevices: v['allow-mknod-devices'] ?? false,
    readonly: v.readonly ?? false,
    rlimitNofile,
  };
}

/** --dax-window, --dax-protocol, --inode-dax. */
function parseDaxOptions(window: string | undefined, protocol: string | undefined, inodeDax: string | undefined,
  mountpoint: boolean): Pick<DaemonOptions, 'daxWindowSize' | 'daxProtocol' | 'inodeDax'> {
  if (window === undefined) {
    if (protocol !== undefined || inodeDax !== undefined) throw new ConfigError('--dax-protocol and --inode-dax need --dax-window');
    return {};
  }
  if (mountpoint) throw new ConfigError('--dax-window needs a VMM (--socket-path)');
  const m = /^(\d+)([kKmMgG]?)$/.exec(window);
  const size = m === null ? NaN : Number(m[1]) * { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[m[2]!.toLowerCase() as '' | 'k' | 'm' | 'g'];
  if (!Number.isSafeInteger(size) || size <= 0 || size % (2 * 1024 * 1024) !== 0 || size > 16 * 1024 ** 3) {
    throw new ConfigError('--dax-window must be a multiple of 2M, at most 16G');
  }
  if (protocol !== undefined && !(DAX_PROTOCOLS as readonly string[]).includes(protocol)) {
    throw new ConfigError(`--dax-protocol must be one of ${DAX_PROTOCOLS.join(', ')} (got '${protocol}')`);
  }
  const policy = parseInodeDax(inodeDax ?? 'never');
  if (policy === null) throw new ConfigError(`--inode-dax must be never, always or size:N (got '${inodeDax}')`);
  return { daxWindowSize: size, daxProtocol: (protocol ?? 'shmem') as DaxProtocol, inodeDax: policy };
}

export async function main(argv: string[]): Promise<number> {
  let opts;
  try {
    opts = parseCommandLine(argv);
  } catch (e) {
    process.stderr.write(`virtiofsd-ts: ${(e as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (opts === 'help') {
    process.stdout.write(USAGE);
    return 0;
  }
  if (opts === 'version') {
    process.stdout.write(`virtiofsd-ts ${packageVersion()}\n`);
    return 0;
  }
  setLogLevel(opts.logLevel ?? 'info');
  if (opts.mountpoint === undefined) opts.sandbox ??= defaultSandbox();
  // As root, the capability drop and the namespaces both happen in the single-threaded sandbox helper, before node
  // (and any of its threads) starts again: see host/sandbox.ts.
  // (With --mountpoint the daemon runs unsandboxed: its FUSE mount must be visible on the host.)
  const sandbox = opts.mountpoint === undefined ? opts.sandbox ?? 'none' : 'none';
  const namespaces = sandbox === 'namespace' && !insideNamespaceSandbox();
  const keepCaps = capabilitySet({ sandbox, mountpoint: opts.mountpoint !== undefined,
    fileHandles: (opts.inodeFileHandles ?? 'never') !== 'never',
    ...(opts.modcaps !== undefined ? { modcaps: opts.modcaps } : {}) });
  const dropCaps = capabilitiesToDrop(keepCaps);
  if (dropCaps && process.env.VIRTIOFSD_TS_SANDBOX !== undefined) {
    process.stderr.write('virtiofsd-ts: the sandbox helper ran but the capabilities are not narrowed\n');
    return 1;
  }
  if (opts.modcaps !== undefined && native.geteuid() !== 0) {
    process.stderr.write('virtiofsd-ts: --modcaps needs root (an unprivileged daemon has no capabilities)\n');
    return 2;
  }
  if (namespaces || dropCaps) {
    // Inside the sandbox's own network namespace the host's listening sockets are invisible: check here.
    if (namespaces && opts.socketPath !== undefined && socketInUse(opts.socketPath)) {
      process.stderr.write(`virtiofsd-ts: ${opts.socketPath} is in use: another process is listening on it\n`);
      return 1;
    }
    try {
      relaunch({ namespaces, ...(dropCaps ? { keepCaps } : {}) }); // returns only by throwing
    } catch (e) {
      process.stderr.write(`virtiofsd-ts: ${(e as Error).message}\n`);
      return 1;
    }
  }
  let daemon: VirtiofsDaemon;
  try {
    daemon = await VirtiofsDaemon.start(opts);
  } catch (e) {
    const msg = e instanceof VirtiofsdError ? e.message : String((e as Error)?.stack ?? e);
    process.stderr.write(`virtiofsd-ts: ${msg}\n`);
    return 1;
  }
  log.info(`${opts.mountpoint !== undefined ? `mounted at ${opts.mountpoint}` : `listening on ${opts.socketPath}`}, ` +
    `sharing ${opts.sharedDir} (cache=${opts.cache})`);
  const stop = (sig: string) => {
    log.info(`${sig}: shutting down`);
    void daemon.close();
  };
  process.once('SIGINT', () => stop('SIGINT'));
  process.once('SIGTERM', () => stop('SIGTERM'));
  await daemon.closed;
  return 0;
}

// Run when executed as the CLI (not when imported by tests).
function invokedAsMain(): boolean {
  if (!process.argv[1]) return false;
  try {
    return realpathSync(process.argv[1]) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}
if (invokedAsMain()) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (e) => {
      process.stderr.write(`virtiofsd-ts: fatal: ${(e as Error)?.stack ?? e}\n`);
      process.exit(1);
    },
  );
}

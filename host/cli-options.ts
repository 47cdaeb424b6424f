/**
 * The command line of `virtiofsd-ts`: one table of options (name, value, help text, what it sets), from which both
 * the parser and `--help` are made. Names follow the Rust virtiofsd, and the C virtiofsd's `-o` list is mapped onto
 * the same settings, so the launch lines of libvirt, Kata, Podman and cloud-hypervisor work unchanged (README,
 * "Launchers"). An option that virtiofsd has and we cannot honour is refused with the reason, never ignored, except
 * where virtiofsd itself ignores it.
 */
import { ConfigError } from './errors.js';
import { isLogLevel, type LogLevel } from './log.js';
import { CACHE_MODES, type CacheMode, type DaemonOptions } from './daemon.js';
import { SANDBOX_MODES, SECCOMP_MODES, type SandboxMode, type SeccompMode, parseModcaps } from './sandbox.js';
import { IdMap } from './passthrough/id-map.js';
import { XattrMap } from './passthrough/xattr-map.js';
import { INODE_FILE_HANDLES, type InodeFileHandles } from './passthrough/inode-store.js';
import { DAX_PROTOCOLS, parseInodeDax, type DaxProtocol } from './dax/dax-device.js';
import { DEFAULT_BATCH_WINDOW_US } from './virtio/queue-processor.js';

/** What the command line asks of the daemon, plus what only the CLI acts on. */
export interface CliOptions extends DaemonOptions {
  /** Log to the system logger (`--syslog`). */
  syslog: boolean;
}

export type CommandLine = CliOptions | 'help' | 'version' | 'print-capabilities';

/** The settings while the arguments are read, in order (a later option overrides an earlier one, as virtiofsd's). */
interface Draft {
  opts: Partial<CliOptions> & { translateUid: string[]; translateGid: string[] };
  action?: 'help' | 'version' | 'print-capabilities';
  socketPathFrom?: string;
  allowMmap: boolean;
}

interface OptionSpec {
  /** `--long`, `-s`, or both (`-h`, `--help`). */
  names: string[];
  /** The value's placeholder in help (`PATH`); absent for a flag. */
  arg?: string;
  help: string;
  apply(d: Draft, value: string): void;
}

function oneOf<T extends string>(option: string, value: string, allowed: readonly T[]): T {
  if (!(allowed as readonly string[]).includes(value)) {
    throw new ConfigError(`${option} must be one of ${allowed.join(', ')} (got '${value}')`);
  }
  return value as T;
}

function integer(option: string, value: string, min: number, max: number): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n < min || n > max) {
    throw new ConfigError(`${option} must be an integer from ${min} to ${max} (got '${value}')`);
  }
  return n;
}

/** --dax-window: bytes, with an optional k/m/g suffix; a multiple of the 2 MiB DAX range, at most 16 GiB. */
function daxWindowSize(value: string): number {
  const m = /^(\d+)([kKmMgG]?)$/.exec(value);
  const unit = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[(m?.[2] ?? '').toLowerCase() as '' | 'k' | 'm' | 'g'];
  const size = m === null ? NaN : Number(m[1]) * unit;
  if (!Number.isSafeInteger(size) || size <= 0 || size % (2 * 1024 * 1024) !== 0 || size > 16 * 1024 ** 3) {
    throw new ConfigError(`--dax-window must be a multiple of 2M, at most 16G (got '${value}')`);
  }
  return size;
}

function setSocketPath(d: Draft, option: string, value: string): void {
  d.opts.socketPath = value;
  d.socketPathFrom = option;
}

/** C virtiofsd's log_level names (and the Rust virtiofsd's -o loglevel=) onto ours. */
const C_LOG_LEVELS: Readonly<Record<string, LogLevel>> = { debug: 'debug', info: 'info', warn: 'warn', err: 'error' };

function refuse(option: string, why: string): never {
  throw new ConfigError(`${option} is not supported: ${why}`);
}

const USER_NAMESPACE_REFUSAL = 'it maps ids through a user namespace, which this daemon does not set up (run as ' +
  'root, or translate ids in the daemon with --translate-uid/--translate-gid)';
const SECURITY_LABEL_REFUSAL = 'FUSE_SECURITY_CTX (the guest\'s SELinux label on new files) is not negotiated';

/**
 * The C virtiofsd's `-o` keys (tools/virtiofsd/helper.c and passthrough_ll.c in QEMU up to 7.2) and the Rust
 * virtiofsd's compatibility additions (`loglevel=`, `cache=metadata`). A key not listed is an error, as in both.
 */
const COMPAT_OPTIONS: readonly OptionSpec[] = [
  { names: ['source'], arg: 'DIR', help: 'as --shared-dir', apply: (d, v) => { d.opts.sharedDir = v; } },
  { names: ['vhost_user_socket'], arg: 'PATH', help: 'as --socket-path', apply: (d, v) => setSocketPath(d, '-o vhost_user_socket', v) },
  {
    names: ['cache'], arg: 'none|auto|always|metadata', help: 'as --cache (none is never)',
    apply: (d, v) => {
      d.opts.cache = v === 'none' ? 'never' : oneOf<CacheMode>('-o cache', v, ['auto', 'always', 'metadata']);
    },
  },
  { names: ['timeout'], arg: 'SECONDS', help: 'entry and attribute timeout instead of the cache mode\'s',
    apply: (d, v) => {
      const t = Number(v);
      if (v.trim() === '' || !Number.isFinite(t) || t < 0 || t > 0xffffffff) {
        throw new ConfigError(`-o timeout must be a number of seconds from 0 to 4294967295 (got '${v}')`);
      }
      d.opts.timeout = t;
    } },
  { names: ['log_level', 'loglevel'], arg: 'debug|info|warn|err', help: 'as --log-level',
    apply: (d, v) => { d.opts.logLevel = C_LOG_LEVELS[oneOf('-o log_level', v, Object.keys(C_LOG_LEVELS))]; } },
  { names: ['debug'], help: 'as -d', apply: (d) => { d.opts.logLevel = 'debug'; } },
  { names: ['sandbox'], arg: 'namespace|chroot|none', help: 'as --sandbox',
    apply: (d, v) => { d.opts.sandbox = oneOf('-o sandbox', v, SANDBOX_MODES); } },
  { names: ['modcaps'], arg: 'LIST', help: 'as --modcaps', apply: (d, v) => { d.opts.modcaps = v; } },
  { names: ['xattrmap'], arg: 'MAP', help: 'as --xattrmap (turns xattr on)',
    apply: (d, v) => { d.opts.xattrmap = v; d.opts.xattr = true; } },
  { names: ['xattr'], help: 'as --xattr', apply: (d) => { d.opts.xattr = true; } },
  { names: ['no_xattr'], help: 'no extended attributes (the default)', apply: (d) => { d.opts.xattr = false; } },
  { names: ['posix_acl'], help: 'as --posix-acl (turns xattr on)', apply: (d) => { d.opts.posixAcl = true; d.opts.xattr = true; } },
  { names: ['no_posix_acl'], help: 'no POSIX ACLs (the default)', apply: (d) => { d.opts.posixAcl = false; } },
  { names: ['flock'], help: 'as --flock', apply: (d) => { d.opts.flock = true; } },
  { names: ['no_flock'], help: 'flock locks stay in the guest (the default)', apply: (d) => { d.opts.flock = false; } },
  { names: ['posix_lock'], help: 'as --posix-lock', apply: (d) => { d.opts.posixLock = true; } },
  { names: ['no_posix_lock'], help: 'POSIX locks stay in the guest (the default)', apply: (d) => { d.opts.posixLock = false; } },
  { names: ['writeback'], help: 'as --writeback', apply: (d) => { d.opts.writeback = true; } },
  { names: ['no_writeback'], help: 'no writeback cache (the default)', apply: (d) => { d.opts.writeback = false; } },
  { names: ['readdirplus'], help: 'negotiate READDIRPLUS (the default)', apply: (d) => { d.opts.readdirplus = true; } },
  { names: ['no_readdirplus'], help: 'as --no-readdirplus', apply: (d) => { d.opts.readdirplus = false; } },
  { names: ['allow_direct_io'], help: 'as --allow-direct-io', apply: (d) => { d.opts.allowDirectIo = true; } },
  { names: ['no_allow_direct_io'], help: 'drop O_DIRECT (the default)', apply: (d) => { d.opts.allowDirectIo = false; } },
  { names: ['announce_submounts'], help: 'as --announce-submounts', apply: (d) => { d.opts.announceSubmounts = true; } },
  { names: ['killpriv_v2'], help: 'as --killpriv-v2', apply: (d) => { d.opts.killprivV2 = true; } },
  { names: ['no_killpriv_v2'], help: 'as --no-killpriv-v2', apply: (d) => { d.opts.killprivV2 = false; } },
  { names: ['security_label'], help: 'refused, as --security-label', apply: () => refuse('-o security_label', SECURITY_LABEL_REFUSAL) },
  { names: ['no_security_label'], help: 'no security labels (the default)', apply: () => undefined },
  { names: ['norace'], help: 'accepted: it turns off a racy fallback of the C daemon that this daemon does not have',
    apply: () => undefined },
];

const COMPAT_BY_NAME = new Map(COMPAT_OPTIONS.flatMap((o) => o.names.map((n) => [n, o] as const)));

/**
 * Splits one `-o` argument into its items at single commas; a doubled comma stands for a comma in a value, which is
 * how libvirt escapes a path (virQEMUBuildBufferEscapeComma).
 */
function splitCompatList(list: string): string[] {
  const items: string[] = [];
  let item = '';
  for (let i = 0; i < list.length; i++) {
    if (list[i] !== ',') {
      item += list[i];
    } else if (list[i + 1] === ',') {
      item += ',';
      i++;
    } else {
      items.push(item);
      item = '';
    }
  }
  items.push(item);
  return items.filter((x) => x !== '');
}

/** Applies one `-o` argument: `key` or `key=value` items. */
function applyCompat(d: Draft, list: string): void {
  for (const item of splitCompatList(list)) {
    const eq = item.indexOf('=');
    const key = eq < 0 ? item : item.slice(0, eq);
    const spec = COMPAT_BY_NAME.get(key);
    if (spec === undefined) throw new ConfigError(`unknown -o option '${key}'`);
    if (spec.arg !== undefined && eq < 0) throw new ConfigError(`-o ${key} needs a value (${key}=${spec.arg})`);
    if (spec.arg === undefined && eq >= 0) throw new ConfigError(`-o ${key} takes no value`);
    spec.apply(d, eq < 0 ? '' : item.slice(eq + 1));
  }
}

const THREAD_POOL_HELP = 'threads for file I/O that may block (default 0: none, as the Rust virtiofsd; at most 64 ' +
  'are started). With N > 0 a READ that misses the page cache, a WRITE that would block, FSYNC, FALLOCATE and ' +
  'COPY_FILE_RANGE run on them while the queue keeps being served; cached reads stay on the main thread';

/** Every option, in the order --help lists them. */
export const OPTIONS: readonly OptionSpec[] = [
  { names: ['--socket-path'], arg: 'PATH', help: 'vhost-user Unix socket to listen on (one of --socket-path, --fd, ' +
    '--mountpoint is required). Created rwx------ (owner only), or rwxrwx--- with --socket-group',
  apply: (d, v) => setSocketPath(d, '--socket-path', v) },
  { names: ['--socket'], arg: 'PATH', help: 'the Rust virtiofsd\'s old name of --socket-path',
    apply: (d, v) => setSocketPath(d, '--socket', v) },
  { names: ['--fd'], arg: 'N', help: 'serve on the listening Unix socket inherited as fd N (libvirt, Kata) instead of ' +
    'creating one; the daemon never removes its path',
  apply: (d, v) => { d.opts.listenFd = integer('--fd', v, 0, 2 ** 31 - 1); } },
  { names: ['--socket-group'], arg: 'GROUP', help: 'let GROUP (name or gid) connect: the socket is created ' +
    'rwxrwx--- and given to GROUP (not with --fd)', apply: (d, v) => { d.opts.socketGroup = v; } },
  { names: ['--mountpoint'], arg: 'DIR2', help: 'instead of serving a VM, mount the share at DIR2 on this host ' +
    '(/dev/fuse, root only; unmounted on exit)', apply: (d, v) => { d.opts.mountpoint = v; } },
  { names: ['--shared-dir'], arg: 'DIR', help: 'host directory to share (required)', apply: (d, v) => { d.opts.sharedDir = v; } },
  { names: ['--cache'], arg: 'MODE', help: 'guest caching: never (no caching, direct I/O) | auto (1 s timeouts, data ' +
    'revalidated on open; the default) | always (day-long timeouts, data kept) | metadata (day-long timeouts, ' +
    'directory listings kept, file data never cached)',
  apply: (d, v) => { d.opts.cache = oneOf('--cache', v, CACHE_MODES); } },
  { names: ['--log-level'], arg: 'LEVEL', help: 'error | warn | info | debug | trace | off (default: info, or a ' +
    'plain level in RUST_LOG as the Rust virtiofsd)',
  apply: (d, v) => {
    if (!isLogLevel(v)) throw new ConfigError(`--log-level: unknown level '${v}'`);
    d.opts.logLevel = v;
  } },
  { names: ['--syslog'], help: 'log to the system logger (/dev/log, facility daemon) instead of stderr; when no ' +
    'logger listens, a warning and stderr, as virtiofsd', apply: (d) => { d.opts.syslog = true; } },
  { names: ['-d'], help: 'as --log-level=debug (the C virtiofsd\'s)', apply: (d) => { d.opts.logLevel = 'debug'; } },
  { names: ['-f'], help: 'run in the foreground: accepted, the daemon always does', apply: () => undefined },
  { names: ['--tag'], arg: 'TAG', help: 'accepted for compatibility; QEMU sets the mount tag with -device ...,tag=TAG',
    apply: (d, v) => { d.opts.tag = v; } },
  { names: ['--num-request-queues'], arg: 'N', help: 'request queues offered to the frontend (default: 1, max: 63)',
    apply: (d, v) => { d.opts.numRequestQueues = integer('--num-request-queues', v, 1, 63); } },
  { names: ['--queue-threads'], help: 'serve each request queue on a thread of its own (its ring and its ' +
    'READ/WRITE there; other requests on the main thread)', apply: (d) => { d.opts.queueThreads = true; } },
  { names: ['--thread-pool-size'], arg: 'N', help: THREAD_POOL_HELP,
    apply: (d, v) => { d.opts.threadPoolSize = integer('--thread-pool-size', v, 0, 65536); } },
  { names: ['--poll-us'], arg: 'N',
    help: 'adaptive polling: after a batch, watch each queue N µs for more requests with guest kicks off before ' +
      'waiting again (default: 0, off; costs CPU only while requests come)',
    apply: (d, v) => { d.opts.pollUs = integer('--poll-us', v, 0, 1_000_000); } },
  { names: ['--batch-window-us'], arg: 'N',
    help: 'once a queue with 4 or more requests in flight is drained, wait N µs (a timer, no CPU) for the ' +
      `guest's next burst with its kicks off (default: ${DEFAULT_BATCH_WINDOW_US}; 0: off)`,
    apply: (d, v) => { d.opts.batchWindowUs = integer('--batch-window-us', v, 0, 1_000_000); } },
  { names: ['--exit-on-disconnect'], help: 'exit when the frontend disconnects instead of waiting for the next one',
    apply: (d) => { d.opts.exitOnDisconnect = true; } },
  { names: ['--xattr'], help: 'serve extended attributes (getxattr/setxattr/listxattr/removexattr)',
    apply: (d) => { d.opts.xattr = true; } },
  { names: ['--xattrmap'], arg: 'MAP', help: 'map xattr names between guest and host (needs --xattr), e.g. ' +
    '\':prefix:all:trusted.:user.virtiofs.::ok:all:::\' (rules prefix|ok|bad|unsupported, scopes client|server|all, ' +
    '\':map:KEY:PREPEND:\'; see README)', apply: (d, v) => { d.opts.xattrmap = v; } },
  { names: ['--posix-acl'], help: 'enforce POSIX ACLs in the guest (FUSE_POSIX_ACL; needs --xattr); the request\'s ' +
    'umask is applied here unless the directory has a default ACL', apply: (d) => { d.opts.posixAcl = true; } },
  { names: ['--security-label'], help: `refused: ${SECURITY_LABEL_REFUSAL}`,
    apply: () => refuse('--security-label', SECURITY_LABEL_REFUSAL) },
  { names: ['--translate-uid'], arg: 'RULE', help: 'translate uids, repeatable: map:GUEST:HOST:COUNT, ' +
    'guest:GUEST:HOST:COUNT, host:HOST:GUEST:COUNT, squash-guest:GUEST:HOST:COUNT, squash-host:HOST:GUEST:COUNT, ' +
    'forbid-guest:GUEST:COUNT (EPERM); ids no rule covers pass unchanged', apply: (d, v) => { d.opts.translateUid.push(v); } },
  { names: ['--translate-gid'], arg: 'RULE', help: 'the same for gids', apply: (d, v) => { d.opts.translateGid.push(v); } },
  { names: ['--uid-map'], arg: ':NS:HOST:COUNT:', help: `refused: ${USER_NAMESPACE_REFUSAL}`,
    apply: () => refuse('--uid-map', USER_NAMESPACE_REFUSAL) },
  { names: ['--gid-map'], arg: ':NS:HOST:COUNT:', help: 'refused, as --uid-map',
    apply: () => refuse('--gid-map', USER_NAMESPACE_REFUSAL) },
  { names: ['--posix-lock'], help: 'serve the guest\'s POSIX (fcntl) locks on the host as OFD locks; a blocking ' +
    'lock that conflicts waits for it without holding up other requests (default: locks stay in the guest)',
  apply: (d) => { d.opts.posixLock = true; } },
  { names: ['--flock'], help: 'serve the guest\'s flock(2) locks on the host (FUSE_FLOCK_LOCKS); a blocking lock ' +
    'waits the same way (default: locks stay in the guest)', apply: (d) => { d.opts.flock = true; } },
  { names: ['--writeback'], help: 'let the guest cache writes (FUSE writeback cache)', apply: (d) => { d.opts.writeback = true; } },
  { names: ['--allow-direct-io'], help: 'honour O_DIRECT opens from the guest on the host',
    apply: (d) => { d.opts.allowDirectIo = true; } },
  { names: ['--allow-mmap'], help: 'the Rust virtiofsd\'s shared mmap under --cache=never|metadata ' +
    '(FUSE_DIRECT_IO_ALLOW_MMAP): refused with those modes, as that flag is not negotiated; with auto and always, ' +
    'where files are not opened for direct I/O, mmap works anyway and the option changes nothing (as in virtiofsd)',
  apply: (d) => { d.allowMmap = true; } },
  { names: ['--no-readdirplus'], help: 'do not negotiate READDIRPLUS (the guest then looks entries up one by one)',
    apply: (d) => { d.opts.readdirplus = false; } },
  { names: ['--preserve-noatime'], help: 'pass the guest\'s O_NOATIME on to the host (default: dropped, as the host ' +
    'refuses it with EPERM on files the daemon does not own when it lacks CAP_FOWNER)',
  apply: (d) => { d.opts.preserveNoatime = true; } },
  { names: ['--killpriv-v2'], help: 'negotiate FUSE_HANDLE_KILLPRIV_V2, the daemon clears setuid/setgid on write, ' +
    'truncate and chown (our default)', apply: (d) => { d.opts.killprivV2 = true; } },
  { names: ['--no-killpriv-v2'], help: 'do not negotiate it: the guest kernel clears those bits itself',
    apply: (d) => { d.opts.killprivV2 = false; } },
  { names: ['--inode-file-handles'], arg: 'MODE', help: 'hold inodes by file handle instead of an open fd each: ' +
    'never (the default) | prefer (handles where the filesystem has them, else fds) | mandatory (fail when a handle ' +
    'cannot be made). Needs CAP_DAC_READ_SEARCH, i.e. root (kept in the sandbox when MODE is not never)',
  apply: (d, v) => {
    d.opts.inodeFileHandles = oneOf<InodeFileHandles>('--inode-file-handles', v === 'fallback' ? 'prefer' : v, INODE_FILE_HANDLES);
  } },
  { names: ['--announce-submounts'], help: 'tell the guest about host mount points inside DIR (FUSE_SUBMOUNTS), so ' +
    'it mounts each as its own filesystem (own st_dev, no inode-number clashes)',
  apply: (d) => { d.opts.announceSubmounts = true; } },
  { names: ['--no-announce-submounts'], help: 'do not (our default)', apply: (d) => { d.opts.announceSubmounts = false; } },
  { names: ['--allow-mknod-devices'], help: 'let the guest create character/block device nodes (default: refused ' +
    'with EPERM; they would be host device nodes). The daemon never opens one either way',
  apply: (d) => { d.opts.allowMknodDevices = true; } },
  { names: ['--readonly'], help: 'refuse every change to the shared directory (EROFS)', apply: (d) => { d.opts.readonly = true; } },
  { names: ['--dax-window'], arg: 'SIZE', help: 'offer a DAX cache window of SIZE bytes (a multiple of 2M, at most ' +
    '16G, e.g. 1G): the guest maps file pages straight into it (mount -t virtiofs TAG /mnt -o dax)',
  apply: (d, v) => { d.opts.daxWindowSize = daxWindowSize(v); } },
  { names: ['--dax-protocol'], arg: 'shmem|legacy', help: 'how mappings reach the VMM: shmem (SHMEM_MAP/UNMAP, ' +
    'upstream; the default) | legacy (SLAVE_FS_MAP/UNMAP of the original virtio-fs QEMU, cache-size=SIZE)',
  apply: (d, v) => { d.opts.daxProtocol = oneOf<DaxProtocol>('--dax-protocol', v, DAX_PROTOCOLS); } },
  { names: ['--inode-dax'], arg: 'never|always|size:N', help: 'files a guest mounted -o dax=inode maps: never (the ' +
    'default) | always | size:N[k|m|g] (regular files of at least N bytes)',
  apply: (d, v) => {
    const policy = parseInodeDax(v);
    if (policy === null) throw new ConfigError(`--inode-dax must be never, always or size:N (got '${v}')`);
    d.opts.inodeDax = policy;
  } },
  { names: ['--rlimit-nofile'], arg: 'N', help: 'set the open-file limit to N (0: leave it; default: raise it to ' +
    'min(1000000, fs.nr_open), or to the hard limit when that is not allowed)',
  apply: (d, v) => { d.opts.rlimitNofile = integer('--rlimit-nofile', v, 0, Number.MAX_SAFE_INTEGER); } },
  { names: ['--sandbox'], arg: 'MODE', help: 'confine the daemon to DIR: namespace (pivot_root in new mount/pid/net ' +
    'namespaces) | chroot | none (default: namespace as root, else none)',
  apply: (d, v) => { d.opts.sandbox = oneOf<SandboxMode>('--sandbox', v, SANDBOX_MODES); } },
  { names: ['--seccomp'], arg: 'MODE', help: 'syscall allow-list once set up; other syscalls: kill (the daemon) | ' +
    'log (kernel log) | trap (SIGSYS) | none (no filter; the default)',
  apply: (d, v) => { d.opts.seccomp = oneOf<SeccompMode>('--seccomp', v, SECCOMP_MODES); } },
  { names: ['--modcaps'], arg: 'LIST', help: 'adjust the capabilities kept as root, e.g. +sys_admin:-mknod (default: ' +
    'chown, dac_override, fowner, fsetid, setgid, setuid, mknod, setfcap; dropped for every thread before node starts)',
  apply: (d, v) => { d.opts.modcaps = v; } },
  { names: ['-o'], arg: 'OPT[,OPT...]', help: 'the C virtiofsd\'s options, repeatable; the keys are listed below',
    apply: applyCompat },
  { names: ['--print-capabilities'], help: 'print the vhost-user backend capabilities as JSON (what libvirt reads) and exit',
    apply: (d) => { d.action ??= 'print-capabilities'; } },
  { names: ['-h', '--help'], help: 'print this help and exit', apply: (d) => { d.action = 'help'; } },
  { names: ['-V', '--version'], help: 'print the version and exit', apply: (d) => { d.action ??= 'version'; } },
];

const BY_NAME = new Map(OPTIONS.flatMap((o) => o.names.map((n) => [n, o] as const)));

/** An option's left column in --help (and in README's table): `--cache=MODE`, `-o OPT[,OPT...]`, `-h, --help`. */
export function synopsis(o: OptionSpec): string {
  return o.names.map((n) => (o.arg === undefined ? n : n.startsWith('--') ? `${n}=${o.arg}` : `${n} ${o.arg}`)).join(', ');
}

/** An `-o` key's left column: `cache=none|auto|always|metadata`, `xattr`. */
export function compatSynopsis(o: OptionSpec): string {
  return o.names.map((n) => (o.arg === undefined ? n : `${n}=${o.arg}`)).join(', ');
}

/** Every option's synopsis, in --help order (README's table lists the same, in the same order). */
export const OPTION_SYNOPSES: readonly string[] = OPTIONS.map(synopsis);
export const COMPAT_SYNOPSES: readonly string[] = COMPAT_OPTIONS.map(compatSynopsis);

const WIDTH = 116;

function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    if (line !== '' && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else {
      line = line === '' ? word : `${line} ${word}`;
    }
  }
  if (line !== '') lines.push(line);
  return lines;
}

function helpRows(rows: readonly (readonly [string, string])[], indent: string, column: number): string {
  let out = '';
  for (const [left, text] of rows) {
    const body = wrap(text, WIDTH - column);
    if (indent.length + left.length + 2 > column) out += `${indent}${left}\n`;
    else out += `${indent}${left.padEnd(column - indent.length)}${body.shift() ?? ''}\n`;
    for (const l of body) out += `${' '.repeat(column)}${l}\n`;
  }
  return out;
}

export function usage(): string {
  return `Usage: virtiofsd-ts --socket-path=PATH --shared-dir=DIR [options]
       virtiofsd-ts --fd=N --shared-dir=DIR [options]
       virtiofsd-ts --mountpoint=DIR2 --shared-dir=DIR [options]

A vhost-user-fs backend: serves DIR to a virtual machine whose VMM connects to PATH
(QEMU: -chardev socket,id=char0,path=PATH -device vhost-user-fs-pci,chardev=char0,tag=TAG),
or mounts DIR on this host at DIR2 through /dev/fuse (as root; unmounted on exit).

Options:
${helpRows(OPTIONS.map((o) => [synopsis(o), o.help] as const), '  ', 28)}
-o keys (comma-separated; unknown keys are errors):
${helpRows(COMPAT_OPTIONS.map((o) => [compatSynopsis(o), o.help] as const), '  ', 40)}`;
}

/** Splits argv into (option, value) pairs in order: `--name=V`, `--name V`, `-oV`, `-o V`, `-f`, `-fd`. */
function* tokens(argv: readonly string[]): Generator<[OptionSpec, string, string]> {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      const name = eq < 0 ? a : a.slice(0, eq);
      const spec = BY_NAME.get(name);
      if (spec === undefined) throw new ConfigError(`unknown option '${name}'`);
      if (spec.arg === undefined) {
        if (eq >= 0) throw new ConfigError(`option '${name}' takes no value`);
        yield [spec, name, ''];
      } else if (eq >= 0) {
        yield [spec, name, a.slice(eq + 1)];
      } else {
        if (i + 1 >= argv.length) throw new ConfigError(`option '${name}' needs a value (${name}=${spec.arg})`);
        yield [spec, name, argv[++i]!];
      }
    } else if (a.startsWith('-') && a.length > 1) {
      for (let j = 1; j < a.length; j++) {
        const name = `-${a[j]}`;
        const spec = BY_NAME.get(name);
        if (spec === undefined) throw new ConfigError(`unknown option '${name}'`);
        if (spec.arg === undefined) {
          yield [spec, name, ''];
          continue;
        }
        if (j + 1 < a.length) yield [spec, name, a.slice(j + 1)];
        else if (i + 1 < argv.length) yield [spec, name, argv[++i]!];
        else throw new ConfigError(`option '${name}' needs a value (${name} ${spec.arg})`);
        break;
      }
    } else {
      throw new ConfigError(`unexpected argument '${a}' (options take the form --name=value)`);
    }
  }
}

/** RUST_LOG as the Rust virtiofsd's env_logger reads it, when it is a plain level. */
function rustLogLevel(env: NodeJS.ProcessEnv): LogLevel | undefined {
  const v = env.RUST_LOG?.trim().toLowerCase();
  return v !== undefined && isLogLevel(v) ? v : undefined;
}

/** Parses argv into daemon options; throws ConfigError with a message fit for the user. */
export function parseCommandLine(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): CommandLine {
  const d = readArguments(argv);
  if (d.action !== undefined) return d.action;
  const sharedDir = checkTransport(d);
  const cache = cacheMode(d);
  if (d.opts.modcaps !== undefined) parseModcaps(d.opts.modcaps);
  checkCombinations(d.opts);
  checkRules(d.opts);
  return withDefaults(d.opts, sharedDir, cache, env);
}

/** Applies every option in argv, in order, to a fresh draft. */
function readArguments(argv: readonly string[]): Draft {
  const d: Draft = { opts: { translateUid: [], translateGid: [] }, allowMmap: false };
  for (const [spec, , value] of tokens(argv)) spec.apply(d, value);
  return d;
}

/** Exactly one way to reach the guest (socket, inherited fd, or a local mount), and a directory to share: returns it. */
function checkTransport(d: Draft): string {
  const o = d.opts;
  const transports = [o.socketPath !== undefined && d.socketPathFrom, o.listenFd !== undefined && '--fd',
    o.mountpoint !== undefined && '--mountpoint'].filter((t): t is string => typeof t === 'string');
  if (transports.length === 0) throw new ConfigError('--socket-path (or --fd, or --mountpoint) is required');
  if (transports.length > 1) throw new ConfigError(`${transports.join(' and ')} are exclusive`);
  if (o.sharedDir === undefined) throw new ConfigError('--shared-dir (or -o source=) is required');
  if (o.socketGroup !== undefined && o.socketPath === undefined) {
    throw new ConfigError('--socket-group applies to the socket the daemon creates (--socket-path)');
  }
  return o.sharedDir;
}

/** The cache mode in force (--allow-mmap is refused with the modes that open files for direct I/O). */
function cacheMode(d: Draft): CacheMode {
  const cache: CacheMode = d.opts.cache ?? 'auto';
  if (d.allowMmap && (cache === 'never' || cache === 'metadata')) {
    refuse(`--allow-mmap with --cache=${cache}`, 'FUSE_DIRECT_IO_ALLOW_MMAP is not negotiated, so the guest cannot ' +
      'mmap(MAP_SHARED) direct-I/O files; use --cache=auto or always');
  }
  return cache;
}

/** Options that need one another or exclude one another. */
function checkCombinations(o: Draft['opts']): void {
  if (o.daxWindowSize === undefined && (o.daxProtocol !== undefined || o.inodeDax !== undefined)) {
    throw new ConfigError('--dax-protocol and --inode-dax need --dax-window');
  }
  if (o.daxWindowSize !== undefined && o.mountpoint !== undefined) throw new ConfigError('--dax-window needs a VMM, not --mountpoint');
  if (o.xattrmap !== undefined && !o.xattr) throw new ConfigError('--xattrmap needs --xattr');
  if (o.posixAcl && !o.xattr) throw new ConfigError('--posix-acl needs --xattr');
}

/** Parses the xattr map and id translation rules to report a bad rule before anything starts; the daemon parses
 *  them again. */
function checkRules(o: Draft['opts']): void {
  if (o.xattrmap !== undefined) new XattrMap(o.xattrmap);
  for (const [option, rules] of [['--translate-uid', o.translateUid], ['--translate-gid', o.translateGid]] as const) {
    try {
      new IdMap(rules);
    } catch (e) {
      throw new ConfigError(`${option}: ${(e as Error).message}`);
    }
  }
}

/** The checked draft with every default filled in. */
function withDefaults(o: Draft['opts'], sharedDir: string, cache: CacheMode, env: NodeJS.ProcessEnv): CliOptions {
  return {
    ...o,
    sharedDir,
    cache,
    logLevel: o.logLevel ?? rustLogLevel(env) ?? 'info',
    numRequestQueues: o.numRequestQueues ?? 1,
    pollUs: o.pollUs ?? 0,
    batchWindowUs: o.batchWindowUs ?? DEFAULT_BATCH_WINDOW_US,
    exitOnDisconnect: o.exitOnDisconnect ?? false,
    xattr: o.xattr ?? false,
    posixAcl: o.posixAcl ?? false,
    posixLock: o.posixLock ?? false,
    flock: o.flock ?? false,
    writeback: o.writeback ?? false,
    allowDirectIo: o.allowDirectIo ?? false,
    inodeFileHandles: o.inodeFileHandles ?? 'never',
    announceSubmounts: o.announceSubmounts ?? false,
    allowMknodDevices: o.allowMknodDevices ?? false,
    readonly: o.readonly ?? false,
    syslog: o.syslog ?? false,
  };
}

/**
 * `--print-capabilities`: the vhost-user backend description libvirt reads (qemu_vhost_user.c,
 * qemuVhostUserFillFSCapabilities): `type` and the `features` it knows, `migrate-precopy` and `separate-options`.
 * Neither is claimed: no migration (no LOG_SHMFD or device state), and without `separate-options` libvirt passes
 * its `-o` form, which carries the lock settings (posix_lock, flock) we serve and its separate form refuses.
 */
export function capabilities(): { type: 'fs'; features: string[] } {
  return { type: 'fs', features: [] };
}

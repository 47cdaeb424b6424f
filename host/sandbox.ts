/**
 * The sandbox, as virtiofsd's `--sandbox`: after start-up the daemon's root directory is the shared directory, so
 * no path it resolves (a guest symlink, a `..`, a bug in the passthrough) reaches the rest of the host.
 *
 * - `namespace`: new mount, pid and network namespaces, a private /proc, then pivot_root into the shared directory
 *   and the old root detached. Node is multithreaded, and unshare(CLONE_NEWNS) refuses a multithreaded caller, so
 *   the CLI execve()s a tiny single-threaded C helper (`virtiofsd-ts-sandbox` next to the addon, from
 *   bindings/sandbox-helper.c) which unshares, forks the namespace's PID 1, makes the inherited mounts slaves,
 *   mounts /proc and execs the same CLI again. We did not use util-linux `unshare --fork`: it ignores SIGTERM, so a
 *   VMM stopping the daemon would have to SIGKILL it. The inner CLI sees `VIRTIOFSD_TS_SANDBOX=inner`.
 *   Inside, the shared directory is bind-mounted onto itself *before* the daemon opens it (so its root fd lies on
 *   the new mount); the daemon opens everything it needs (socket, wasm, addon, the shared directory,
 *   /proc/self/fd), and then the root is pivoted: `chdir(shared); pivot_root(".", "."); umount2(".", MNT_DETACH)`,
 *   and the daemon's `chdir("/")`.
 * - `chroot`: chroot(2) into the shared directory once everything is open (for containers that already set up
 *   namespaces and forbid creating new ones). The process still sees the host's pid and network namespaces and
 *   its /proc/self/fd fd belongs to the host's /proc.
 * - `none`: nothing (the default when not root, and for the library API: an embedder's process is not ours to move).
 *
 * In `namespace` mode the two mount operations (the bind mount, the pivot_root) are done by the helper on the
 * daemon's request (bindings/sandbox-helper.c): the helper shares the daemon's mount namespace and keeps its
 * capabilities, so the daemon needs no CAP_SYS_ADMIN, and the helper stops listening once it has pivoted.
 *
 * Capabilities (`--modcaps`, see capabilitySet) and the seccomp filter (`--seccomp`, see installSeccomp) are the
 * other two layers.
 */
import { readFileSync, realpathSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { ConfigError, SystemError } from './errors.js';
import { addonPath, native } from './native-loader.js';
import { ownCommand, runtimeDaemonEnv, runtimeName, type RuntimeName } from './runtime.js';

export type SandboxMode = 'namespace' | 'chroot' | 'none';
export const SANDBOX_MODES: readonly SandboxMode[] = ['namespace', 'chroot', 'none'];

const ENV = 'VIRTIOFSD_TS_SANDBOX';
/** The helper's request channel (namespace mode), an inherited fd number. */
const CHANNEL_ENV = 'VIRTIOFSD_TS_SANDBOX_FD';

/** virtiofsd's default: namespace when it can (root); here `none` otherwise (we do not set up user namespaces). */
export function defaultSandbox(): SandboxMode {
  return native.geteuid() === 0 ? 'namespace' : 'none';
}

/** Whether this process is the inner CLI started by the helper (PID 1 of its own namespaces). */
export function insideNamespaceSandbox(): boolean {
  return process.env[ENV] === 'inner' && process.pid === 1;
}

/** The helper binary, next to the addon (built together by node-gyp, or shipped together in prebuilds/). */
export function sandboxHelperPath(): string {
  const p = resolve(dirname(addonPath), 'virtiofsd-ts-sandbox');
  try {
    realpathSync(p);
    return p;
  } catch {
    throw new ConfigError(`sandbox: ${p} is missing (npm run build:native)`);
  }
}

/**
 * Replaces this process with the helper running this same command (the runtime, its flags, the script, the
 * arguments; see host/runtime.ts): inside new namespaces when `namespaces`, and with the capability bounding set
 * narrowed to `keepCaps` when given. Returns only on failure (throws).
 */
export function relaunch(opts: { namespaces: boolean; keepCaps?: bigint }): never {
  const helper = sandboxHelperPath();
  let command: string[];
  try {
    command = ownCommand(process.argv.slice(2));
  } catch (e) {
    throw new ConfigError(`sandbox: ${(e as Error).message}`);
  }
  const argv = [helper, ...(opts.namespaces ? ['--namespaces'] : []),
    ...(opts.keepCaps !== undefined ? [`--keep-caps=${opts.keepCaps.toString(16)}`] : []), '--', ...command];
  const env = Object.entries({ ...process.env, ...runtimeDaemonEnv(), [ENV]: opts.namespaces ? 'inner' : 'caps' })
    .filter(([k]) => k !== CHANNEL_ENV).map(([k, v]) => `${k}=${v ?? ''}`);
  const r = native.execve(helper, argv, env);
  throw new SystemError('execve', -r, `sandbox: ${native.strerror(-r)}`, helper);
}

/**
 * Namespace mode, once the CLI listens for SIGINT/SIGTERM: tells the helper to forward signals from now on. As the
 * namespace's PID 1 we would lose any signal that came before (bindings/sandbox-helper.c holds them until this).
 */
export function handleSignalsFromHelper(): void {
  askHelper('S', '');
}

/** One request to the helper (namespace mode); see bindings/sandbox-helper.c. */
function askHelper(op: 'B' | 'P' | 'S', dir: string): void {
  const fd = Number(process.env[CHANNEL_ENV]);
  if (!Number.isInteger(fd) || fd < 0) throw new ConfigError(`--sandbox=namespace: ${CHANNEL_ENV} is not set`);
  const r = native.sandboxRequest(fd, op.charCodeAt(0), dir);
  if (r < 0) {
    const syscall = { B: 'mount', P: 'pivot_root', S: 'sandbox helper' }[op];
    throw new SystemError(syscall, -r, `sandbox: ${native.strerror(-r)}`, dir);
  }
}

function check(r: number, syscall: string, what: string): void {
  if (r < 0) throw new SystemError(syscall, -r, `sandbox: ${native.strerror(-r)}`, what);
}

/**
 * Before the shared directory is opened. `namespace`: bind-mounts it onto itself (pivot_root needs a mount point,
 * and the daemon's root fd must lie on that mount, not on the host's). Refuses to touch mounts outside the
 * helper's namespaces. Returns the directory's real path. (The helper does the mount; see the file comment.)
 */
export function prepareSandbox(mode: SandboxMode, sharedDir: string): string {
  const dir = realpathSync(sharedDir);
  if (mode !== 'namespace') return dir;
  if (!insideNamespaceSandbox()) {
    throw new ConfigError('--sandbox=namespace needs the process to run under the sandbox helper (the CLI does this;'
      + ' library users: run the CLI, or use sandbox chroot/none)');
  }
  askHelper('B', dir);
  return dir;
}

/** After everything is open: the root becomes the shared directory (see the file comment). */
export function enterSandbox(mode: SandboxMode, sharedDir: string): void {
  if (mode === 'none') return;
  const dir = realpathSync(sharedDir);
  check(native.chdir(dir), 'chdir', dir);
  if (mode === 'namespace') {
    if (!insideNamespaceSandbox()) throw new ConfigError('--sandbox=namespace: not inside the sandbox helper');
    // The helper pivots (our root, the old root, moves with its own) and detaches the old root: nothing of the host
    // stays reachable by path (fds opened before keep working). Then it stops listening; our end goes too.
    askHelper('P', dir);
    native.close(Number(process.env[CHANNEL_ENV]));
    delete process.env[CHANNEL_ENV];
  } else {
    check(native.chroot('.'), 'chroot', dir);
  }
  check(native.chdir('/'), 'chdir', '/');
}

// ---- capabilities (--modcaps) ------------------------------------------------------------------------------

/** capabilities(7) numbers (linux/capability.h), by the lowercase name without `cap_` that virtiofsd's --modcaps uses. */
export const CAPABILITIES: Readonly<Record<string, number>> = {
  chown: 0, dac_override: 1, dac_read_search: 2, fowner: 3, fsetid: 4, kill: 5, setgid: 6, setuid: 7, setpcap: 8,
  linux_immutable: 9, net_bind_service: 10, net_broadcast: 11, net_admin: 12, net_raw: 13, ipc_lock: 14,
  ipc_owner: 15, sys_module: 16, sys_rawio: 17, sys_chroot: 18, sys_ptrace: 19, sys_pacct: 20, sys_admin: 21,
  sys_boot: 22, sys_nice: 23, sys_resource: 24, sys_time: 25, sys_tty_config: 26, mknod: 27, lease: 28,
  audit_write: 29, audit_control: 30, setfcap: 31, mac_override: 32, mac_admin: 33, syslog: 34, wake_alarm: 35,
  block_suspend: 36, audit_read: 37, perfmon: 38, bpf: 39, checkpoint_restore: 40,
};

/**
 * What the daemon keeps by default: the set virtiofsd keeps, for serving files of every owner as the guest asks.
 * chown/fowner/fsetid/setfcap: ownership, modes and file capabilities of files it does not own; dac_override:
 * opening them; setuid/setgid: taking the guest caller's fsuid/fsgid when creating; mknod: device nodes.
 * Not kept: dac_read_search (only for open_by_handle_at, added with file handles), sys_admin, sys_chroot (added
 * only for the set-up steps that need them), and everything else (ptrace, module loading, raw I/O, net admin...).
 */
export const DEFAULT_CAPABILITIES: readonly string[] =
  ['chown', 'dac_override', 'fowner', 'fsetid', 'setgid', 'setuid', 'mknod', 'setfcap'];

/** `--modcaps=+cap1:-cap2`, virtiofsd's syntax: a colon-separated list, each name after `+` (keep) or `-` (drop). */
export function parseModcaps(spec: string): { add: string[]; drop: string[] } {
  const add: string[] = [], drop: string[] = [];
  for (const item of spec.split(':')) {
    const m = /^([+-])(?:cap_)?([a-z_]+)$/i.exec(item.trim());
    const name = m?.[2]!.toLowerCase();
    if (!m || name === undefined || !Object.hasOwn(CAPABILITIES, name)) {
      throw new ConfigError(`--modcaps: '${item}' is not +name or -name of a capability (e.g. +sys_admin:-mknod)`);
    }
    (m[1] === '+' ? add : drop).push(name);
  }
  return { add, drop };
}

/**
 * The capabilities the daemon runs with, as a bit mask over CAPABILITIES: DEFAULT_CAPABILITIES, then what its
 * own set-up needs after node has started (chroot: sys_chroot for chroot(2); mountpoint: sys_admin to mount and,
 * at exit, unmount the FUSE file system; file handles: dac_read_search for open_by_handle_at), then `modcaps`.
 * namespace needs nothing extra: the helper does its mounts.
 */
export function capabilitySet(o: { sandbox: SandboxMode; mountpoint: boolean; fileHandles?: boolean;
  modcaps?: string }): bigint {
  const names = new Set(DEFAULT_CAPABILITIES);
  if (o.sandbox === 'chroot') names.add('sys_chroot');
  if (o.mountpoint) names.add('sys_admin');
  if (o.fileHandles) names.add('dac_read_search');
  if (o.modcaps !== undefined) {
    const m = parseModcaps(o.modcaps);
    for (const n of m.add) names.add(n);
    for (const n of m.drop) names.delete(n);
  }
  let mask = 0n;
  for (const n of names) mask |= 1n << BigInt(CAPABILITIES[n]!);
  return mask;
}

/** The names of the capabilities in a mask (for messages and tests). */
export function capabilityNames(mask: bigint): string[] {
  return Object.entries(CAPABILITIES).filter(([, bit]) => (mask >> BigInt(bit)) & 1n).map(([n]) => n);
}

/** This thread's capability sets from /proc/thread-self/status (hex masks): bounding, inheritable, ambient... */
export function capabilitiesOf(statusText: string): Record<'CapInh' | 'CapPrm' | 'CapEff' | 'CapBnd' | 'CapAmb', bigint> {
  const get = (k: string): bigint => {
    const m = new RegExp(`^${k}:\\s*([0-9a-f]+)$`, 'm').exec(statusText);
    return m ? BigInt(`0x${m[1]}`) : 0n;
  };
  return { CapInh: get('CapInh'), CapPrm: get('CapPrm'), CapEff: get('CapEff'), CapBnd: get('CapBnd'),
    CapAmb: get('CapAmb') };
}

/**
 * Whether the process still holds (or could regain at exec) a capability outside `keep`: then the CLI relaunches
 * through the helper, which narrows the sets before node starts. Only as root: an unprivileged process has none
 * to drop, and could not drop from the bounding set (that takes CAP_SETPCAP).
 */
export function capabilitiesToDrop(keep: bigint): boolean {
  if (native.geteuid() !== 0) return false;
  const c = capabilitiesOf(readFileSync('/proc/self/status', 'utf8'));
  return ((c.CapBnd | c.CapInh | c.CapAmb) & ~keep) !== 0n;
}

// ---- seccomp (--seccomp) -----------------------------------------------------------------------------------

/**
 * `--seccomp`, virtiofsd's names for what happens to a syscall outside the allow-list: `none` (no filter), `kill`
 * (SECCOMP_RET_KILL_PROCESS: the whole daemon dies, not one thread, which would leave node hung), `log` (allowed,
 * and logged by the kernel: audit type=1326 in dmesg, for building a list), `trap` (SIGSYS, which ends node with a
 * core dump naming the syscall).
 */
export type SeccompMode = 'none' | 'kill' | 'log' | 'trap';
export const SECCOMP_MODES: readonly SeccompMode[] = ['none', 'kill', 'log', 'trap'];

/**
 * What the daemon does once it serves, and what Node, V8, libuv and glibc do under it (GC and compiler threads:
 * mmap/mprotect/madvise/futex; pool threads; timers; signals). Built by running the daemon's tests under
 * `strace -f -c` and with `--seccomp=log` (see README). Deliberately absent: execve, fork-like use of clone aside,
 * mount/umount2 (but see MOUNTPOINT_SYSCALLS), pivot_root, chroot, unshare, setns, ptrace, process_vm_*, bpf,
 * perf_event_open, keyctl, kexec/module loading, io_uring (its requests would bypass this filter), socket/connect
 * (the listening socket exists before the filter; accept4 is enough for a new frontend).
 */
export const SECCOMP_ALLOWED: readonly string[] = [
  // files (the passthrough)
  'read', 'write', 'readv', 'writev', 'pread64', 'pwrite64', 'preadv', 'pwritev', 'preadv2', 'pwritev2', 'lseek',
  'close', 'close_range', 'dup', 'dup2', 'dup3', 'fcntl', 'flock', 'fsync', 'fdatasync', 'syncfs', 'sync_file_range',
  'fallocate', 'ftruncate', 'copy_file_range', 'sendfile', 'openat', 'openat2', 'open_by_handle_at',
  'name_to_handle_at', 'newfstatat', 'fstat', 'stat', 'lstat', 'statx', 'fstatfs', 'statfs', 'getdents64',
  'readlinkat', 'mkdirat', 'mknodat', 'symlinkat', 'linkat', 'unlinkat', 'renameat', 'renameat2', 'utimensat',
  'fchmod', 'fchmodat', 'fchmodat2', 'fchown', 'fchownat', 'fchdir', 'chdir', 'getcwd', 'umask',
  'getxattr', 'lgetxattr', 'fgetxattr', 'setxattr', 'lsetxattr', 'fsetxattr', 'listxattr', 'llistxattr',
  'flistxattr', 'removexattr', 'lremovexattr', 'fremovexattr', 'ioctl',
  // memory (V8's heap and GC, the guest memory maps)
  'mmap', 'munmap', 'mprotect', 'madvise', 'mremap', 'brk', 'msync', 'mlock', 'munlock', 'mincore', 'membarrier',
  'pkey_alloc', 'pkey_free', 'pkey_mprotect', 'get_mempolicy', 'set_mempolicy',
  // threads
  'futex', 'futex_waitv', 'set_robust_list', 'get_robust_list', 'rseq', 'clone', 'clone3', 'exit', 'exit_group',
  'set_tid_address', 'sched_yield', 'sched_getaffinity', 'sched_setaffinity', 'sched_getparam',
  'sched_getscheduler',
  // event loop, vhost-user socket, eventfds
  'epoll_create1', 'epoll_ctl', 'epoll_wait', 'epoll_pwait', 'epoll_pwait2', 'poll', 'ppoll', 'eventfd2', 'pipe2',
  'timerfd_create', 'timerfd_settime', 'accept', 'accept4', 'getsockname', 'getpeername', 'getsockopt',
  'setsockopt', 'shutdown', 'recvmsg', 'sendmsg', 'recvfrom', 'sendto',
  // signals
  'rt_sigaction', 'rt_sigprocmask', 'rt_sigreturn', 'rt_sigpending', 'rt_sigtimedwait', 'sigaltstack', 'tgkill',
  'restart_syscall',
  // credentials (per-thread fsuid/fsgid and capabilities of the passthrough)
  'getpid', 'gettid', 'getppid', 'getuid', 'geteuid', 'getgid', 'getegid', 'getgroups', 'getresuid', 'getresgid',
  'setfsuid', 'setfsgid', 'setresuid', 'setresgid', 'setuid', 'setgid', 'setgroups', 'capget', 'capset',
  // the rest of the runtime
  'prctl', 'arch_prctl', 'clock_gettime', 'clock_getres', 'clock_nanosleep', 'nanosleep', 'gettimeofday', 'time',
  'getrandom', 'uname', 'sysinfo', 'prlimit64', 'getrlimit', 'getrusage',
];

/** With --mountpoint the daemon unmounts its FUSE file system at exit. */
export const MOUNTPOINT_SYSCALLS: readonly string[] = ['umount2'];

/**
 * What a runtime other than Node does after the filter is in place (found with --seccomp=log and strace -f on a
 * served workload and a SIGTERM). Deno: socketpair, from the first signal listener (tokio's signal driver creates
 * its self-pipe lazily, and the CLI listens for SIGTERM once the daemon has started). Bun needs nothing more.
 * Deno's update check (a DNS lookup and an HTTPS request: socket, connect) is not allowed: the CLI turns it off
 * instead (see runtimeDaemonEnv).
 */
export const RUNTIME_SYSCALLS: Readonly<Record<RuntimeName, readonly string[]>> = {
  node: [], bun: [], deno: ['socketpair'],
};

/** Syscall numbers (asm/unistd_64.h; asm-generic/unistd.h for aarch64) of every name above. */
const SYSCALL_NUMBERS: Readonly<Record<string, Readonly<Record<string, number>>>> = {
  x86_64: {
    read: 0, write: 1, readv: 19, writev: 20, pread64: 17, pwrite64: 18, preadv: 295, pwritev: 296, preadv2: 327,
    pwritev2: 328, lseek: 8, close: 3, close_range: 436, dup: 32, dup2: 33, dup3: 292, fcntl: 72, flock: 73,
    fsync: 74, fdatasync: 75, syncfs: 306, sync_file_range: 277, fallocate: 285, ftruncate: 77, copy_file_range:
    326, sendfile: 40, openat: 257, openat2: 437, open_by_handle_at: 304, name_to_handle_at: 303, newfstatat: 262,
    fstat: 5, stat: 4, lstat: 6, statx: 332, fstatfs: 138, statfs: 137, getdents64: 217, readlinkat: 267, mkdirat:
    258, mknodat: 259, symlinkat: 266, linkat: 265, unlinkat: 263, renameat: 264, renameat2: 316, utimensat: 280,
    fchmod: 91, fchmodat: 268, fchown: 93, fchownat: 260, fchdir: 81, chdir: 80, getcwd: 79, umask: 95, getxattr:
    191, lgetxattr: 192, fgetxattr: 193, setxattr: 188, lsetxattr: 189, fsetxattr: 190, listxattr: 194,
    llistxattr: 195, flistxattr: 196, removexattr: 197, lremovexattr: 198, fremovexattr: 199, mmap: 9, munmap: 11,
    mprotect: 10, madvise: 28, mremap: 25, brk: 12, msync: 26, mlock: 149, munlock: 150, mincore: 27, membarrier:
    324, pkey_alloc: 330, pkey_free: 331, pkey_mprotect: 329, get_mempolicy: 239, set_mempolicy: 238, futex: 202,
    futex_waitv: 449, set_robust_list: 273, get_robust_list: 274, rseq: 334, clone: 56, clone3: 435, exit: 60,
    exit_group: 231, set_tid_address: 218, sched_yield: 24, sched_getaffinity: 204, sched_setaffinity: 203,
    sched_getparam: 143, sched_getscheduler: 145, epoll_create1: 291, epoll_ctl: 233, epoll_wait: 232,
    epoll_pwait: 281, epoll_pwait2: 441, poll: 7, ppoll: 271, eventfd2: 290, pipe2: 293, timerfd_create: 283,
    timerfd_settime: 286, socket: 41, accept: 43, accept4: 288, listen: 50, bind: 49, connect: 42, getsockname:
    51, getpeername: 52, getsockopt: 55, setsockopt: 54, shutdown: 48, recvmsg: 47, sendmsg: 46, recvfrom: 45,
    sendto: 44, socketpair: 53, rt_sigaction: 13, rt_sigprocmask: 14, rt_sigreturn: 15, rt_sigpending: 127,
    rt_sigtimedwait: 128, sigaltstack: 131, tgkill: 234, restart_syscall: 219, getpid: 39, gettid: 186, getppid:
    110, getuid: 102, geteuid: 107, getgid: 104, getegid: 108, getgroups: 115, getresuid: 118, getresgid: 120,
    setfsuid: 122, setfsgid: 123, setresuid: 117, setresgid: 119, setuid: 105, setgid: 106, setgroups: 116,
    capget: 125, capset: 126, prctl: 157, arch_prctl: 158, clock_gettime: 228, clock_getres: 229, clock_nanosleep:
    230, nanosleep: 35, gettimeofday: 96, time: 201, getrandom: 318, uname: 63, sysinfo: 99, prlimit64: 302,
    getrlimit: 97, getrusage: 98, ioctl: 16,
    fchmodat2: 452, umount2: 166,
  },
  aarch64: {
    read: 63, write: 64, readv: 65, writev: 66, pread64: 67, pwrite64: 68, preadv: 69, pwritev: 70, preadv2: 286,
    pwritev2: 287, lseek: 62, close: 57, close_range: 436, dup: 23, dup3: 24, fcntl: 25, flock: 32, fsync: 82,
    fdatasync: 83, syncfs: 267, sync_file_range: 84, fallocate: 47, ftruncate: 46, copy_file_range: 285, sendfile:
    71, openat: 56, openat2: 437, open_by_handle_at: 265, name_to_handle_at: 264, newfstatat: 79, fstat: 80,
    statx: 291, fstatfs: 44, statfs: 43, getdents64: 61, readlinkat: 78, mkdirat: 34, mknodat: 33, symlinkat: 36,
    linkat: 37, unlinkat: 35, renameat: 38, renameat2: 276, utimensat: 88, fchmod: 52, fchmodat: 53, fchown: 55,
    fchownat: 54, fchdir: 50, chdir: 49, getcwd: 17, umask: 166, getxattr: 8, lgetxattr: 9, fgetxattr: 10,
    setxattr: 5, lsetxattr: 6, fsetxattr: 7, listxattr: 11, llistxattr: 12, flistxattr: 13, removexattr: 14,
    lremovexattr: 15, fremovexattr: 16, mmap: 222, munmap: 215, mprotect: 226, madvise: 233, mremap: 216, brk:
    214, msync: 227, mlock: 228, munlock: 229, mincore: 232, membarrier: 283, pkey_alloc: 289, pkey_free: 290,
    pkey_mprotect: 288, get_mempolicy: 236, set_mempolicy: 237, futex: 98, futex_waitv: 449, set_robust_list: 99,
    get_robust_list: 100, rseq: 293, clone: 220, clone3: 435, exit: 93, exit_group: 94, set_tid_address: 96,
    sched_yield: 124, sched_getaffinity: 123, sched_setaffinity: 122, sched_getparam: 121, sched_getscheduler:
    120, epoll_create1: 20, epoll_ctl: 21, epoll_pwait: 22, epoll_pwait2: 441, ppoll: 73, eventfd2: 19, pipe2: 59,
    timerfd_create: 85, timerfd_settime: 86, socket: 198, accept: 202, accept4: 242, listen: 201, bind: 200,
    connect: 203, getsockname: 204, getpeername: 205, getsockopt: 209, setsockopt: 208, shutdown: 210, recvmsg:
    212, sendmsg: 211, recvfrom: 207, sendto: 206, socketpair: 199, rt_sigaction: 134, rt_sigprocmask: 135,
    rt_sigreturn: 139, rt_sigpending: 136, rt_sigtimedwait: 137, sigaltstack: 132, tgkill: 131, restart_syscall:
    128, getpid: 172, gettid: 178, getppid: 173, getuid: 174, geteuid: 175, getgid: 176, getegid: 177, getgroups:
    158, getresuid: 148, getresgid: 150, setfsuid: 151, setfsgid: 152, setresuid: 147, setresgid: 149, setuid:
    146, setgid: 144, setgroups: 159, capget: 90, capset: 91, prctl: 167, clock_gettime: 113, clock_getres: 114,
    clock_nanosleep: 115, nanosleep: 101, gettimeofday: 169, getrandom: 278, uname: 160, sysinfo: 179, prlimit64:
    261, getrlimit: 163, getrusage: 165, ioctl: 29,
    fchmodat2: 452, umount2: 39,
  },
};

/**
 * The allow-list as numbers for this machine's architecture and `runtime` (a name the architecture lacks is
 * skipped).
 */
export function seccompSyscallNumbers(arch: string, mountpoint: boolean, runtime: RuntimeName = runtimeName): Int32Array {
  const table = SYSCALL_NUMBERS[arch];
  if (table === undefined) throw new ConfigError(`--seccomp: no syscall table for the ${arch} architecture`);
  const names = [...SECCOMP_ALLOWED, ...(mountpoint ? MOUNTPOINT_SYSCALLS : []), ...RUNTIME_SYSCALLS[runtime]];
  return Int32Array.from(names.flatMap((n) => (table[n] === undefined ? [] : [table[n]!])));
}

/**
 * Installs the filter on every thread of the process (TSYNC). Call once the daemon is set up (socket listening,
 * sandbox entered, FUSE mounted): from here on it can only serve. `none` does nothing.
 */
export function installSeccomp(mode: SeccompMode, opts: { mountpoint: boolean }): void {
  if (mode === 'none') return;
  if (mode === 'trap' && runtimeName === 'bun') {
    // Bun handles SIGSYS itself: the trapped syscall would fail with an error and the daemon carry on.
    throw new ConfigError('--seccomp=trap: Bun catches SIGSYS itself, so a trapped syscall would not stop the daemon;'
      + ' use --seccomp=kill, or log to find what is missing');
  }
  const k = native.constants;
  const action = { kill: k.SECCOMP_RET_KILL_PROCESS, log: k.SECCOMP_RET_LOG, trap: k.SECCOMP_RET_TRAP }[mode];
  const r = native.seccompInstall(seccompSyscallNumbers(native.seccompArch(), opts.mountpoint), action);
  if (r < 0) throw new SystemError('seccomp', -r, `--seccomp=${mode}: ${native.strerror(-r)}`);
}

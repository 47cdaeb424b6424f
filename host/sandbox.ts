/**
 * The sandbox, as virtiofsd's `--sandbox`: after start-up the daemon's root directory is the shared directory, so
 * no path it resolves (a guest symlink, a `..`, a bug in the passthrough) reaches the rest of the host.
 *
 * - `namespace`: new mount, pid and network namespaces, a private /proc, then pivot_root into the shared directory
 *   and the old root detached. Node is multithreaded, and unshare(CLONE_NEWNS) refuses a multithreaded caller, so
 *   the CLI execve()s a tiny single-threaded C helper (`build/Release/virtiofsd-ts-sandbox`, from
 *   bindings/sandbox-helper.c) which unshares, forks the namespace's PID 1, makes the inherited mounts slaves,
 *   mounts /proc and execs the same CLI again. We did not use util-linux `unshare --fork`: it ignores SIGTERM, so a
 *   VMM stopping the daemon would have to SIGKILL it. The inner CLI sees `VIRTIOFSD_TS_SANDBOX=inner`.
 *   Inside, the daemon bind-mounts the shared directory onto itself *before* it opens it (so its root fd lies on
 *   the new mount), opens everything it needs (socket, wasm, addon, the shared directory, /proc/self/fd), and then
 *   pivot_roots: `chdir(shared); pivot_root(".", "."); umount2(".", MNT_DETACH); chdir("/")`.
 * - `chroot`: chroot(2) into the shared directory once everything is open (for containers that already set up
 *   namespaces and forbid creating new ones). The process still sees the host's pid and network namespaces and
 *   its /proc/self/fd fd belongs to the host's /proc.
 * - `none`: nothing (the default when not root, and for the library API: an embedder's process is not ours to move).
 */
import { realpathSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError, SystemError } from './errors.js';
import { native } from './native-loader.js';

export type SandboxMode = 'namespace' | 'chroot' | 'none';
export const SANDBOX_MODES: readonly SandboxMode[] = ['namespace', 'chroot', 'none'];

/**
 * `--seccomp`: only `none`. A correct allow-list has to cover every syscall of Node, V8, libuv and glibc across
 * versions (and the libuv io_uring paths); we have not built and verified one, so we offer none rather than a
 * filter that kills the daemon on the first unusual syscall or allows everything.
 */
export type SeccompMode = 'none';
export const SECCOMP_MODES: readonly SeccompMode[] = ['none'];

const ENV = 'VIRTIOFSD_TS_SANDBOX';

/** virtiofsd's default: namespace when it can (root); here `none` otherwise (we do not set up user namespaces). */
export function defaultSandbox(): SandboxMode {
  return native.geteuid() === 0 ? 'namespace' : 'none';
}

/** Whether this process is the inner CLI started by the helper (PID 1 of its own namespaces). */
export function insideNamespaceSandbox(): boolean {
  return process.env[ENV] === 'inner' && process.pid === 1;
}

/** The helper binary, next to the addon. */
export function sandboxHelperPath(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  // dist/host/ when compiled, host/ when run from source.
  for (const root of [resolve(here, '..', '..'), resolve(here, '..')]) {
    const p = resolve(root, 'build', 'Release', 'virtiofsd-ts-sandbox');
    try {
      realpathSync(p);
      return p;
    } catch {
      // try the next
    }
  }
  throw new ConfigError('--sandbox=namespace: build/Release/virtiofsd-ts-sandbox is missing (npm run build:native)');
}

/**
 * Replaces this process with the helper running this same command (node, its flags, the script, the arguments)
 * inside new namespaces. Returns only on failure (throws).
 */
export function reexecInNamespaces(): never {
  const helper = sandboxHelperPath();
  const script = process.argv[1];
  if (script === undefined) throw new ConfigError('--sandbox=namespace: cannot find the script to re-execute');
  const argv = [helper, process.execPath, ...process.execArgv, script, ...process.argv.slice(2)];
  const env = Object.entries({ ...process.env, [ENV]: 'inner' }).map(([k, v]) => `${k}=${v ?? ''}`);
  const r = native.execve(helper, argv, env);
  throw new SystemError('execve', -r, `--sandbox=namespace: ${native.strerror(-r)}`, helper);
}

function check(r: number, syscall: string, what: string): void {
  if (r < 0) throw new SystemError(syscall, -r, `sandbox: ${native.strerror(-r)}`, what);
}

/**
 * Before the shared directory is opened. `namespace`: bind-mounts it onto itself (pivot_root needs a mount point,
 * and the daemon's root fd must lie on that mount, not on the host's). Refuses to touch mounts outside the
 * helper's namespaces. Returns the directory's real path.
 */
export function prepareSandbox(mode: SandboxMode, sharedDir: string): string {
  const dir = realpathSync(sharedDir);
  if (mode !== 'namespace') return dir;
  if (!insideNamespaceSandbox()) {
    throw new ConfigError('--sandbox=namespace needs the process to run under the sandbox helper (the CLI does this;'
      + ' library users: run the CLI, or use sandbox chroot/none)');
  }
  const k = native.sandboxConstants();
  check(native.mount(dir, dir, '', k.MS_BIND | k.MS_REC, ''), 'mount', `${dir} (bind)`);
  return dir;
}

/** After everything is open: the root becomes the shared directory (see the file comment). */
export function enterSandbox(mode: SandboxMode, sharedDir: string): void {
  if (mode === 'none') return;
  const dir = realpathSync(sharedDir);
  check(native.chdir(dir), 'chdir', dir);
  if (mode === 'namespace') {
    if (!insideNamespaceSandbox()) throw new ConfigError('--sandbox=namespace: not inside the sandbox helper');
    // The old root is stacked on "." by pivot_root(".", "."), then detached: nothing of the host stays reachable
    // by path (fds opened before keep working).
    check(native.pivotRoot('.', '.'), 'pivot_root', dir);
    check(native.umount2('.', native.sandboxConstants().MNT_DETACH), 'umount2', '(old root)');
  } else {
    check(native.chroot('.'), 'chroot', dir);
  }
  check(native.chdir('/'), 'chdir', '/');
}

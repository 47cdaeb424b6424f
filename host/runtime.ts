/**
 * Which JavaScript runtime runs us (Node, Bun or Deno), and the command line that started this process, so a
 * re-exec (the sandbox helper, host/sandbox.ts) starts the same runtime with the same flags: Node's `--flags`,
 * Bun's, and Deno's `run` with its permission flags (`-A`, `--allow-read=...`), which Deno keeps out of
 * `process.execArgv` and which no API returns in full (`Deno.permissions` answers one query at a time).
 *
 * The kernel keeps the command line as started in /proc/self/cmdline. It is read through the addon: Deno grants
 * reading /proc/self only with --allow-all, and the addon runs in every runtime whatever its permissions.
 */
import { native } from './native-loader.js';

export type RuntimeName = 'node' | 'bun' | 'deno';

/** The runtime executing this process. */
export const runtimeName: RuntimeName = typeof process.versions.bun === 'string' ? 'bun'
  : typeof process.versions.deno === 'string' ? 'deno' : 'node';

/** Its version, e.g. `20.20.2`, `1.4.5`, `2.9.6`. */
export const runtimeVersion: string = process.versions[runtimeName] ?? process.version;

/**
 * Environment for a daemon process of this runtime, set on every re-exec. Deno checks for a newer Deno in the
 * background at start (a DNS lookup and an HTTPS request), which a daemon has no use for, which --seccomp refuses
 * (socket, connect) and which the namespace sandbox has no network for.
 */
export function runtimeDaemonEnv(): Record<string, string> {
  return runtimeName === 'deno' ? { DENO_NO_UPDATE_CHECK: '1' } : {};
}

/**
 * Whether the daemon must start this runtime again (through the sandbox helper) for runtimeDaemonEnv to apply
 * before `seccomp` is installed: Deno started without DENO_NO_UPDATE_CHECK.
 */
export function runtimeNeedsRelaunch(seccomp: string): boolean {
  return seccomp !== 'none' && Object.entries(runtimeDaemonEnv()).some(([k]) => process.env[k] === undefined);
}

/** The arguments in /proc/self/cmdline, or undefined when it cannot be read. */
function procCmdline(): string[] | undefined {
  const C = native.constants;
  const fd = native.openat(C.AT_FDCWD, '/proc/self/cmdline', C.O_RDONLY | C.O_CLOEXEC, 0);
  if (fd < 0) return undefined;
  try {
    const chunks: Buffer[] = [];
    for (let pos = 0; ;) {
      const buf = Buffer.alloc(65536);
      const n = native.pread(fd, buf, pos);
      if (n < 0) return undefined;
      if (n === 0) break;
      chunks.push(buf.subarray(0, n));
      pos += n;
    }
    const text = Buffer.concat(chunks).toString('utf8');
    return text.endsWith('\0') ? text.slice(0, -1).split('\0') : text.split('\0');
  } finally {
    native.close(fd);
  }
}

/**
 * This process's runtime as it was started, without the script and its arguments: the runtime by its absolute path,
 * then the runtime's own arguments (Node's and Bun's flags; Deno's `run` and permission flags). `script` is how the
 * command line named the script: a path, or Deno's `npm:` specifier (process.argv[1] holds the resolved file).
 */
export function runtimeInvocation(): { command: string[]; script: string } {
  const cmdline = procCmdline();
  // process.argv is [runtime, script, ...arguments]; the command line ends with the same arguments after the
  // script, and what precedes the script is the runtime's. A mismatch (something rewrote argv) falls back to what
  // the runtime reports, which is complete on Node and Bun.
  const tail = process.argv.length - 2;
  if (cmdline !== undefined && tail >= 0 && cmdline.length >= tail + 2
    && cmdline.slice(cmdline.length - tail).every((a, i) => a === process.argv[2 + i])) {
    const scriptAt = cmdline.length - tail - 1;
    return { command: [process.execPath, ...cmdline.slice(1, scriptAt)], script: cmdline[scriptAt]! };
  }
  const script = process.argv[1];
  if (script === undefined) throw new Error('cannot find the script this process runs');
  return { command: [process.execPath, ...process.execArgv], script };
}

/** The command that starts this script again as it was started, with `args` in place of its arguments. */
export function ownCommand(args: readonly string[]): string[] {
  const { command, script } = runtimeInvocation();
  return [...command, script, ...args];
}

/**
 * Our daemon on the host's /dev/fuse transport, for tests: `virtiofsd-ts --shared-dir=D --mountpoint=M`
 * as a child process, waited on until M is a fuse.virtiofsd-ts mount, and taken down again (SIGTERM,
 * then SIGKILL and a lazy unmount so no test leaves a mount behind).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { native } from '../../host/native-loader.js';
import { mountsAt } from '../../host/transport/dev-fuse.js';
import { sleep } from './wait.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const CLI = path.join(ROOT, 'dist', 'host', 'cli.js');

export interface MountedDaemon {
  child: ChildProcess;
  dir: string;
  mp: string;
  stderr(): string;
  /** Resolves with the exit code (null when killed by a signal). */
  exit: Promise<number | null>;
  /** SIGTERM; after `graceMs` SIGKILL; then detaches M if it is still mounted. Resolves with the exit code. */
  stop(graceMs?: number): Promise<number | null>;
}


export function isMounted(mp: string): boolean {
  return mountsAt(mp).some((m) => m.fstype === 'fuse.virtiofsd-ts');
}

/** Detaches every mount at `mp` (lazy unmount; a dead FUSE mount included). */
export function detach(mp: string): void {
  for (let i = 0; i < 4 && mountsAt(mp).length > 0; i++) native.umount2(mp, native.constants.MNT_DETACH);
}

/**
 * Starts the CLI serving `dir` at `mp` (both must exist) with `extra` arguments and waits (an outer limit only) up to
 * `timeoutMs` for the mount. Throws with the daemon's stderr when it exits first or never mounts.
 */
export async function mountDaemon(dir: string, mp: string, extra: string[] = [], timeoutMs = 30_000): Promise<MountedDaemon> {
  const child = spawn(process.execPath, [CLI, `--shared-dir=${dir}`, `--mountpoint=${mp}`, '--log-level=warn', ...extra],
    { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (d) => { err += d; });
  const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const d: MountedDaemon = {
    child, dir, mp, exit,
    stderr: () => err,
    async stop(graceMs = 5000) {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<'timeout'>((r) => { timer = setTimeout(() => r('timeout'), graceMs); });
      let code = await Promise.race([exit, timeout]);
      clearTimeout(timer);
      if (code === 'timeout') {
        child.kill('SIGKILL');
        code = await exit;
      }
      detach(mp);
      return code;
    },
  };
  const t0 = Date.now();
  while (!isMounted(mp)) {
    if (child.exitCode !== null || Date.now() - t0 > timeoutMs) {
      await d.stop(100);
      throw new Error(`daemon did not mount ${mp} (exit ${child.exitCode}):\n${err}`);
    }
    await sleep(20);
  }
  return d;
}

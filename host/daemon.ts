/**
 * VirtiofsDaemon: the library entry point. Composes the layers:
 *   VhostUserListener (socket, state machine) -> QueueProcessor -> FuseServer (dispatch table) -> PassthroughFs.
 * Embedders (hypervisor tooling in Node, Deno or Bun) use this; the CLI is a thin wrapper over it.
 */
import { readFileSync, statSync } from 'node:fs';
import { native } from './native-loader.js';
import { ConfigError } from './errors.js';
import { log, type LogLevel } from './log.js';
import { Core } from './core.js';
import { FuseServer, type CacheMode } from './fuse/server.js';
import { PassthroughFs } from './passthrough/passthrough-fs.js';
import { VhostUserListener } from './vhost-user/listener.js';

export type { CacheMode } from './fuse/server.js';
export const CACHE_MODES: readonly CacheMode[] = ['never', 'auto', 'always'];

export interface DaemonOptions {
  /** vhost-user Unix socket path to listen on. */
  socketPath: string;
  /** Host directory to share. */
  sharedDir: string;
  /** Guest caching policy (default `auto`). */
  cache?: CacheMode;
  logLevel?: LogLevel;
  /** Accepted for compatibility with virtiofsd; QEMU sets the mount tag itself. */
  tag?: string;
  /** Request queues offered besides the hiprio queue (default 1). */
  numRequestQueues?: number;
  /** Stop after the first frontend disconnects (virtiofsd's behaviour); default: wait for the next one. */
  exitOnDisconnect?: boolean;
  /** Serve extended attributes (virtiofsd's --xattr). Default false: the xattr requests answer ENOSYS. */
  xattr?: boolean;
  /** Negotiate the FUSE writeback cache (the guest caches writes). Default false. */
  writeback?: boolean;
  /** Pass O_DIRECT from the guest through to the host. Default false (dropped). */
  allowDirectIo?: boolean;
  /** Refuse every change to the shared directory with EROFS. Default false. */
  readonly?: boolean;
  /**
   * RLIMIT_NOFILE to set (soft and hard); 0 leaves the limit alone. Default (virtiofsd's): when the soft limit is
   * below min(1 000 000, fs.nr_open), raise it to that, or to the hard limit when raising the hard one is not
   * allowed; a higher limit is left as it is.
   */
  rlimitNofile?: number;
}

/** virtiofsd's default open-file limit (capped by fs.nr_open). */
const DEFAULT_NOFILE = 1_000_000;

/** Applies the open-file limit policy of `rlimitNofile` (see DaemonOptions). Returns the soft limit now in force. */
export function applyNofileLimit(rlimitNofile: number | undefined): number {
  const cur = new Float64Array(2);
  if (native.getrlimitNofile(cur) < 0) return -1;
  const [soft, hard] = cur;
  if (rlimitNofile === 0) return soft;
  if (rlimitNofile !== undefined) {
    const r = native.setrlimitNofile(rlimitNofile, rlimitNofile);
    if (r < 0) throw new ConfigError(`--rlimit-nofile ${rlimitNofile}: ${native.strerror(-r)}`);
    return rlimitNofile;
  }
  let target = DEFAULT_NOFILE;
  try {
    target = Math.min(target, Number(readFileSync('/proc/sys/fs/nr_open', 'utf8').trim()));
  } catch {
    // keep the default
  }
  if (soft === -1 || soft >= target) return soft;
  const newHard = hard === -1 || hard > target ? hard : target;
  if (native.setrlimitNofile(target, newHard) < 0 && hard !== soft) {
    // Not allowed to raise the hard limit: the soft one goes as far as it may.
    native.setrlimitNofile(hard, hard);
  }
  native.getrlimitNofile(cur);
  return cur[0];
}

export class VirtiofsDaemon {
  /** Resolves when the daemon has stopped (close(), or the frontend left with exitOnDisconnect). */
  readonly closed: Promise<void>;
  private constructor(
    readonly options: DaemonOptions,
    readonly core: Core,
    readonly fs: PassthroughFs,
    readonly server: FuseServer,
    readonly listener: VhostUserListener,
  ) {
    this.closed = new Promise((resolve) => listener.once('close', () => resolve()));
  }

  /** Validates the options, builds the layers and starts listening. Throws ConfigError / VhostUserError. */
  static async start(options: DaemonOptions): Promise<VirtiofsDaemon> {
    let st;
    try {
      st = statSync(options.sharedDir);
    } catch (e) {
      throw new ConfigError(`--shared-dir ${options.sharedDir}: ${(e as NodeJS.ErrnoException).code ?? e}`);
    }
    if (!st.isDirectory()) throw new ConfigError(`--shared-dir ${options.sharedDir}: not a directory`);

    const nofile = applyNofileLimit(options.rlimitNofile);
    log.debug(`open-file limit: ${nofile}`);

    const core = await Core.create();
    const fs = new PassthroughFs({
      root: options.sharedDir, xattr: options.xattr ?? false, writeback: options.writeback ?? false,
      allowDirectIo: options.allowDirectIo ?? false,
    });
    const server = new FuseServer(fs, core, {
      cache: options.cache ?? 'auto', writeback: options.writeback ?? false, readonly: options.readonly ?? false,
    });
    const listener = new VhostUserListener({
      socketPath: options.socketPath,
      core,
      server,
      numRequestQueues: options.numRequestQueues ?? 1,
      exitOnDisconnect: options.exitOnDisconnect ?? false,
    });
    const daemon = new VirtiofsDaemon(options, core, fs, server, listener);
    listener.on('connect', () => log.info('vhost-user: frontend connected'));
    // A new frontend is a new guest: it sends FUSE_INIT again and knows none of the old node ids.
    listener.on('disconnect', (reason: Error | null) => {
      log.info(`vhost-user: frontend disconnected${reason ? `: ${reason.message}` : ''}`);
      server.endSession();
    });
    listener.on('error', (err: Error) => log.warn(`vhost-user: ${err.message}`));
    try {
      listener.listen();
    } catch (e) {
      fs.close();
      throw e;
    }
    return daemon;
  }

  /** Stops listening, ends the session, closes every fd. Idempotent. */
  async close(): Promise<void> {
    this.listener.close();
    this.server.endSession();
    this.fs.close();
    await this.closed;
  }
}

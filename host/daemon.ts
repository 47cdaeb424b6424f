/**
 * VirtiofsDaemon: the library entry point. Composes the layers:
 *   VhostUserListener (socket, state machine) -> QueueProcessor -> FuseServer (dispatch table) -> PassthroughFs.
 * Embedders (hypervisor tooling in Node, Deno or Bun) use this; the CLI is a thin wrapper over it.
 */
import { statSync } from 'node:fs';
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

    const core = await Core.create();
    const fs = new PassthroughFs({ root: options.sharedDir });
    const server = new FuseServer(fs, core, { cache: options.cache ?? 'auto' });
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

/**
 * The library entry points. `FileSystemDaemon.start(fs, options)` (also `serve(fs, options)`) serves any
 * FileSystem; `VirtiofsDaemon.start(options)` is the passthrough of a host directory built on it. Layers:
 *   VhostUserListener (socket, state machine) -> QueueProcessor -> FuseServer (dispatch table) -> the FileSystem,
 * or, with `mountpoint`, DevFuseSession (/dev/fuse, a FUSE mount on the host) -> the same FuseServer and core codec.
 * Embedders (hypervisor tooling in Node, Deno or Bun) use this; the CLI is a thin wrapper over it.
 */
import { EventEmitter } from 'node:events';
import { readFileSync, statSync } from 'node:fs';
import { native } from './native-loader.js';
import { ConfigError } from './errors.js';
import { log, setLogLevel, setLogger, type LogLevel, type Logger } from './log.js';
import { Core } from './core.js';
import { FuseServer, type CacheMode, type FuseServerOptions } from './fuse/server.js';
import type { FileSystem } from './fuse/filesystem.js';
import { formatStats, type OperationStats } from './fuse/op-stats.js';
import { PassthroughFs } from './passthrough/passthrough-fs.js';
import { DaxDevice, attachDax, type DaxProtocol, type InodeDaxPolicy } from './dax/dax-device.js';
import { passthroughMappingFiles } from './dax/passthrough-files.js';
import { IdMap } from './passthrough/id-map.js';
import { XattrMap } from './passthrough/xattr-map.js';
import type { InodeFileHandles } from './passthrough/inode-store.js';
import { VhostUserListener } from './vhost-user/listener.js';
import { DEFAULT_BATCH_WINDOW_US } from './virtio/queue-processor.js';
import { ForwardedRequests, QueueThread } from './virtio/queue-thread.js';
import { SHARED_WRITES, SharedFiles } from './passthrough/shared-files.js';
import { type SandboxMode, type SeccompMode, enterSandbox, installSeccomp, prepareSandbox } from './sandbox.js';
import { DevFuseSession, devFuseMaxPages } from './transport/dev-fuse.js';

export type { CacheMode } from './fuse/server.js';
export const CACHE_MODES: readonly CacheMode[] = ['never', 'auto', 'always', 'metadata'];

/** How and where `FileSystemDaemon.start` serves a FileSystem. Exactly one of socketPath, listenFd, mountpoint. */
export interface ServeOptions {
  /** vhost-user Unix socket path to listen on (QEMU: `-chardev socket,path=...`). A stale socket file is replaced. */
  socketPath?: string;
  /**
   * A vhost-user socket already bound and listening, handed over by whoever started us (virtiofsd's --fd, as
   * libvirt and Kata pass it). The daemon takes it over (close-on-exec, nonblocking), closes it on close() and
   * never unlinks its path.
   */
  listenFd?: number;
  /** With socketPath: the group that may connect (socket `rwxrwx---`); default owner only (`rwx------`). */
  socketGroup?: string;
  /** Mount the FileSystem on this host directory through /dev/fuse instead of serving a VM (needs root). */
  mountpoint?: string;
  /**
   * Guest caching (default `auto`): `never` (no entry/attribute caching, direct I/O), `auto` (1 s timeouts, page
   * cache revalidated on open), `always` (long timeouts, page cache kept).
   */
  cache?: CacheMode;
  /** Entry and attribute timeouts in seconds, overriding the cache mode's. */
  timeout?: number;
  /** Answer EROFS to every request that would change the filesystem, without calling it. Default false. */
  readonly?: boolean;
  /** Negotiate the FUSE writeback cache (the guest caches writes and sends them later). Default false. */
  writeback?: boolean;
  /** Negotiate FUSE_POSIX_LOCKS (needs getlk and setlk). Default false: the guest keeps fcntl locks itself. */
  posixLocks?: boolean;
  /** Negotiate FUSE_FLOCK_LOCKS (needs flock). Default false: the guest keeps flock locks itself. */
  flockLocks?: boolean;
  /** Request queues offered to the guest besides the hiprio queue (vhost-user; default 1). */
  numRequestQueues?: number;
  /**
   * Serve each request queue on a thread of its own (host/virtio/queue-thread.ts): its ring, and READ/WRITE of a
   * filesystem that shares its open files (the passthrough), run there; other requests still reach the
   * FileSystem on the main thread. vhost-user only. Default false.
   */
  queueThreads?: boolean;
  /**
   * Adaptive polling: after a drained batch, watch the ring this many µs (kicks off) before waiting for a kick
   * again. 0 (default) = never poll. Costs CPU only while requests come; none when idle.
   */
  pollUs?: number;
  /**
   * Batch windows: once the ring of a driver with 4 or more requests in flight is drained, wait this many µs (a
   * timer: no CPU) for its next burst with kicks off. 0 = off. Default DEFAULT_BATCH_WINDOW_US.
   */
  batchWindowUs?: number;
  /** Stop after the first frontend disconnects (vhost-user). Default: wait for the next one. */
  exitOnDisconnect?: boolean;
  /** Log threshold, applied process-wide at start (`off`: nothing is printed). Default: unchanged (`info`). */
  logLevel?: LogLevel;
  /** Where log lines go (process-wide), instead of stderr. */
  logger?: Logger;
  /** /dev/fuse only: the root directory's mode shown before the first GETATTR (default 0o40755). */
  rootMode?: number;
  /** /dev/fuse only: fstype `fuse.<subtype>` and mount source (default `virtiofsd-ts`). */
  subtype?: string;
  /** /dev/fuse only: let other users than the daemon's use the mount (default true). */
  allowOther?: boolean;
}

/**
 * Events of a FileSystemDaemon:
 * - `connect` (): a vhost-user frontend (QEMU) connected;
 * - `disconnect` (reason: Error | null): it went away (null: cleanly); the session's state was dropped
 *   (`destroy` called) and the daemon waits for the next frontend unless `exitOnDisconnect`;
 * - `error` (err: Error): a session ended on a protocol or transport error (emitted only when listened for;
 *   otherwise logged);
 * - `close` (): the daemon stopped (close(), exitOnDisconnect, or the /dev/fuse mount went away).
 */
export interface FileSystemDaemonEvents {
  connect: [];
  disconnect: [reason: Error | null];
  error: [err: Error];
  close: [];
}

/** What start() builds; also how VirtiofsDaemon shares it. */
interface Parts<F extends FileSystem> {
  fs: F;
  core: Core;
  server: FuseServer;
  listener: VhostUserListener | null;
  devFuse: DevFuseSession | null;
  /** The request queues' threads (queueThreads), ended with the daemon. */
  threads: QueueThread[];
}

declare const layers: unique symbol;
/** Opaque: the layers a daemon is built from (not part of the API; subclasses pass it through). */
export interface DaemonLayers {
  readonly [layers]: true;
}

/** Extra steps of a specialised daemon (the passthrough's sandbox and seccomp, its own server options). */
interface StartHooks {
  server?: Partial<FuseServerOptions>;
  /** The DAX window (vhost-user only): attached to the FUSE server and handed the backend channel. */
  dax?: { device: DaxDevice; timeoutMs: number };
  sharedDir?: string;
  /** After the socket listens / the mount is up; a throw undoes the start. */
  ready?(): void;
  /** With queueThreads: the FileSystem shares its open files with the threads (PassthroughFs.shareFiles). */
  shareFiles?(shared: SharedFiles): void;
}

async function buildParts<F extends FileSystem>(fs: F, options: ServeOptions, hooks: StartHooks): Promise<Parts<F>> {
  if (options.logLevel !== undefined) setLogLevel(options.logLevel);
  if (options.logger !== undefined) setLogger(options.logger);
  const ways = [options.socketPath, options.listenFd, options.mountpoint].filter((w) => w !== undefined).length;
  if (ways !== 1) {
    throw new ConfigError(ways === 0 ? 'a socket path, a listening socket fd or a mountpoint is required'
      : 'give only one of socket path, socket fd and mountpoint (one FileSystem, one kind of client)');
  }
  if (options.listenFd !== undefined && (!Number.isInteger(options.listenFd) || options.listenFd < 0)) {
    throw new ConfigError(`listening fd ${options.listenFd}: not a file descriptor`);
  }
  const core = await Core.create();
  const server = new FuseServer(fs, core, {
    cache: options.cache ?? 'auto', readonly: options.readonly ?? false, writeback: options.writeback ?? false,
    posixLocks: options.posixLocks ?? false, flockLocks: options.flockLocks ?? false,
    ...(options.timeout !== undefined ? { timeout: options.timeout } : {}),
    ...(options.mountpoint !== undefined ? { maxPages: devFuseMaxPages() } : {}),
    ...hooks.server,
  });
  if (hooks.dax !== undefined && options.mountpoint === undefined) attachDax(server, hooks.dax.device);
  if (options.mountpoint !== undefined) {
    const session = DevFuseSession.mount(core, server, {
      mountpoint: options.mountpoint, readonly: options.readonly ?? false,
      ...(hooks.sharedDir !== undefined ? { sharedDir: hooks.sharedDir } : {}),
      ...(options.rootMode !== undefined ? { rootMode: options.rootMode } : {}),
      ...(options.subtype !== undefined ? { subtype: options.subtype, source: options.subtype } : {}),
      ...(options.allowOther !== undefined ? { allowOther: options.allowOther } : {}),
    });
    try {
      hooks.ready?.();
    } catch (e) {
      await session.close();
      throw e;
    }
    return { fs, core, server, listener: null, devFuse: session, threads: [] };
  }
  const threads = options.queueThreads === true
    ? await startQueueThreads(core, server, options, hooks) : [];
  const listener = new VhostUserListener({
    ...(options.listenFd !== undefined ? { listenFd: options.listenFd } : { socketPath: options.socketPath! }),
    ...(options.socketGroup !== undefined ? { socketGroup: options.socketGroup } : {}),
    core,
    server,
    numRequestQueues: options.numRequestQueues ?? 1,
    pollUs: options.pollUs ?? 0,
    batchWindowUs: options.batchWindowUs ?? DEFAULT_BATCH_WINDOW_US,
    exitOnDisconnect: options.exitOnDisconnect ?? false,
    ...(hooks.dax !== undefined ? { dax: hooks.dax.device, backendRequestTimeoutMs: hooks.dax.timeoutMs } : {}),
    ...(threads.length > 0 ? { queueThreads: threads } : {}),
  });
  listener.once('close', () => { for (const t of threads) void t.terminate(); });
  try {
    listener.listen();
    hooks.ready?.();
  } catch (e) {
    listener.close();
    throw e;
  }
  return { fs, core, server, listener, devFuse: null, threads };
}

/**
 * One thread per request queue, started before the sandbox is entered (each loads the core and its own module
 * from the package). A FileSystem that shares its open files gets READ/WRITE served on the threads.
 */
async function startQueueThreads(core: Core, server: FuseServer, options: ServeOptions,
  hooks: StartHooks): Promise<QueueThread[]> {
  let shared: SharedFiles | null = null;
  if (hooks.shareFiles !== undefined) {
    shared = new SharedFiles();
    // A DAX window must hear of a WRITE's size change, which the main thread's WRITE tells it.
    shared.setFlag(SHARED_WRITES, !(options.readonly ?? false) && hooks.dax === undefined);
    hooks.shareFiles(shared);
  }
  const forwarded = new ForwardedRequests(core, server, shared);
  const started = await Promise.allSettled(Array.from({ length: options.numRequestQueues ?? 1 }, (_, i) =>
    QueueThread.start({
      queue: i + 1, maxWrite: server.maxWrite, pollUs: options.pollUs ?? 0,
      batchWindowUs: options.batchWindowUs ?? DEFAULT_BATCH_WINDOW_US,
    }, forwarded)));
  const threads = started.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  const failed = started.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed !== undefined) {
    await Promise.all(threads.map((t) => t.terminate()));
    throw new ConfigError(`queue threads: ${(failed.reason as Error)?.message ?? failed.reason}`);
  }
  return threads;
}

/**
 * Serves a FileSystem over vhost-user (a socket path or a listening fd) or a /dev/fuse mount. The filesystem's
 * methods may return Promises (see FileSystem). Lifecycle: `start` resolves once listening (or mounted);
 * `close()` ends the session (the FileSystem's `destroy` is called) and stops; `closed` resolves when stopped.
 */
export class FileSystemDaemon<F extends FileSystem = FileSystem> extends EventEmitter<FileSystemDaemonEvents> {
  /** Resolves when the daemon has stopped (close(), exitOnDisconnect, or the /dev/fuse mount went away). */
  readonly closed: Promise<void>;
  /** The served FileSystem. */
  readonly fs: F;
  private readonly parts: Parts<F>;

  /** The vhost-user listener (null for a /dev/fuse mount); the CLI reads its queues for the SIGUSR2 stats line. */
  get listener(): VhostUserListener | null {
    return this.parts.listener;
  }
  private stopping: Promise<void> | null = null;

  protected constructor(built: DaemonLayers) {
    super();
    const parts = built as unknown as Parts<F>;
    this.parts = parts;
    this.fs = parts.fs;
    this.closed = parts.devFuse !== null ? parts.devFuse.closed
      : new Promise((resolve) => parts.listener!.once('close', () => resolve()));
    void this.closed.then(() => this.emit('close'));
    const server = parts.server;
    parts.listener?.on('connect', () => this.emit('connect'));
    // A new frontend is a new guest: it sends FUSE_INIT again and knows none of the old node ids.
    parts.listener?.on('disconnect', (reason: Error | null) => {
      if (reason) log.debug(`session ended: ${reason.message}`);
      server.endSession();
      this.emit('disconnect', reason);
    });
    parts.listener?.on('error', (err: Error) => {
      if (this.listenerCount('error') > 0) this.emit('error', err);
      else log.warn(`vhost-user: ${err.message}`);
    });
    parts.devFuse?.on('close', (reason: Error | null) => {
      if (reason !== null && this.listenerCount('error') > 0) this.emit('error', reason);
    });
  }

  /** Starts serving `fs` as `options` say. Throws ConfigError / VhostUserError / SystemError. */
  static async start<F extends FileSystem>(fs: F, options: ServeOptions): Promise<FileSystemDaemon<F>> {
    return new FileSystemDaemon<F>(await FileSystemDaemon.layers(fs, options, {}));
  }

  /** Builds the layers for a subclass's constructor. */
  protected static async layers<F extends FileSystem>(fs: F, options: ServeOptions,
    hooks: Omit<StartHooks, 'server'> & { server?: object }): Promise<DaemonLayers> {
    return await buildParts(fs, options, hooks as StartHooks) as unknown as DaemonLayers;
  }

  /** Per-operation counters and latency histograms, one entry per opcode seen. */
  stats(): OperationStats[] {
    return this.parts.server.stats.snapshot();
  }

  /** The stats as a printable table (the CLI prints it on SIGUSR1). */
  formatStats(): string {
    return `${formatStats(this.stats())}\npending requests: ${this.parts.server.pendingCount}`;
  }

  /** Requests whose FileSystem Promise is pending now. */
  get pendingRequests(): number {
    return this.parts.server.pendingCount;
  }

  /** Whether a vhost-user frontend is connected now. */
  get connected(): boolean {
    return this.parts.listener?.backend != null;
  }

  /** Stops listening (or unmounts), ends the session (`destroy`), closes every fd. Idempotent. */
  close(): Promise<void> {
    this.stopping ??= this.stop();
    return this.stopping;
  }

  protected async stop(): Promise<void> {
    this.parts.listener?.close();
    await this.parts.devFuse?.close();
    this.parts.server.endSession();
    await Promise.all(this.parts.threads.map((t) => t.terminate()));
    await this.closed;
  }
}

/** Serves `fs` (see FileSystemDaemon.start). */
export async function serve<F extends FileSystem>(fs: F, options: ServeOptions): Promise<FileSystemDaemon<F>> {
  return FileSystemDaemon.start(fs, options);
}

export interface DaemonOptions {
  /** vhost-user Unix socket path to listen on (required unless `mountpoint` or `listenFd` is given). */
  socketPath?: string;
  /**
   * Serve on this already listening Unix socket instead of binding `socketPath` (virtiofsd's --fd, as libvirt and
   * Kata pass it). The daemon takes the fd over (close-on-exec, nonblocking) and never unlinks its path.
   */
  listenFd?: number;
  /**
   * Group that may connect to `socketPath` (virtiofsd's --socket-group): the socket is made `rwxrwx---` and given
   * to this group (a name from /etc/group, or a numeric gid). Default: `rwx------`, owner only, as virtiofsd.
   */
  socketGroup?: string;
  /**
   * virtiofsd's --thread-pool-size: threads for data I/O that may block (READ/WRITE that would, FSYNC,
   * FALLOCATE, COPY_FILE_RANGE; host/passthrough/blocking-io.ts), at most 64. 0 (default, as the Rust
   * virtiofsd): none, everything runs on the main thread.
   */
  threadPoolSize?: number;
  /** Negotiate FUSE_HANDLE_KILLPRIV_V2 (default true; virtiofsd's --no-killpriv-v2 turns it off). */
  killprivV2?: boolean;
  /** Pass the guest's O_NOATIME on to the host (the Rust virtiofsd's --preserve-noatime). Default false. */
  preserveNoatime?: boolean;
  /** Entry/attr timeout in seconds instead of the cache mode's (C virtiofsd's `-o timeout=`). */
  timeout?: number;
  /** Negotiate READDIRPLUS (default true). */
  readdirplus?: boolean;
  /**
   * Serve the share as a FUSE mount on this host directory through /dev/fuse instead of to a VM (needs root).
   * Excludes `socketPath`.
   */
  mountpoint?: string;
  /** Host directory to share. */
  sharedDir: string;
  /** Guest caching policy (default `auto`). */
  cache?: CacheMode;
  /** Log threshold, applied process-wide at start (`off`: nothing is printed). */
  logLevel?: LogLevel;
  /** Where log lines go (process-wide), instead of stderr. */
  logger?: Logger;
  /** Accepted for compatibility with virtiofsd; QEMU sets the mount tag itself. */
  tag?: string;
  /** Request queues offered besides the hiprio queue (default 1). */
  numRequestQueues?: number;
  /** Serve each request queue on a thread of its own (see ServeOptions.queueThreads). Default false. */
  queueThreads?: boolean;
  /**
   * Adaptive polling: after a drained batch, watch the ring this many µs (kicks off) before waiting for a kick
   * again. 0 (default) = never poll. Costs CPU only while requests come; none when idle.
   */
  pollUs?: number;
  /**
   * Batch windows: once the ring of a driver with 4 or more requests in flight is drained, wait this many µs (a
   * timer: no CPU) for its next burst with kicks off. 0 = off. Default DEFAULT_BATCH_WINDOW_US.
   */
  batchWindowUs?: number;
  /** Stop after the first frontend disconnects (virtiofsd's behaviour); default: wait for the next one. */
  exitOnDisconnect?: boolean;
  /** Serve extended attributes (virtiofsd's --xattr). Default false: the xattr requests answer ENOSYS. */
  xattr?: boolean;
  /** Negotiate the FUSE writeback cache (the guest caches writes). Default false. */
  writeback?: boolean;
  /**
   * virtiofsd's --translate-uid / --translate-gid rules (host/passthrough/id-map.ts), e.g.
   * `squash-guest:0:1000:4294967295`. Default: none (ids pass unchanged).
   */
  translateUid?: string[];
  translateGid?: string[];
  /** virtiofsd's --xattrmap (host/passthrough/xattr-map.ts). Needs xattr. */
  xattrmap?: string;
  /** POSIX ACLs (virtiofsd's --posix-acl): FUSE_POSIX_ACL + FUSE_DONT_MASK. Needs xattr. Default false. */
  posixAcl?: boolean;
  /** Remote POSIX locks (C virtiofsd's -o posix_lock): fcntl locks reach the host as OFD locks. Default false. */
  posixLock?: boolean;
  /** Remote BSD flock locks (C virtiofsd's -o flock), through FUSE_FLOCK_LOCKS. Default false. */
  flock?: boolean;
  /** Pass O_DIRECT from the guest through to the host. Default false (dropped). */
  allowDirectIo?: boolean;
  /**
   * virtiofsd's --inode-file-handles: `never` (default, an O_PATH fd per inode the guest holds), `prefer` (file
   * handles where the filesystem has them, so held inodes cost no fd), `mandatory` (start-up fails if the shared
   * directory's filesystem has none). Handles need CAP_DAC_READ_SEARCH.
   */
  inodeFileHandles?: InodeFileHandles;
  /** Negotiate FUSE_SUBMOUNTS and mark host mount points inside the share (virtiofsd's --announce-submounts). */
  announceSubmounts?: boolean;
  /** Let the guest create character/block device nodes (default false: MKNOD of one is EPERM). */
  allowMknodDevices?: boolean;
  /** Refuse every change to the shared directory with EROFS. Default false. */
  readonly?: boolean;
  /**
   * RLIMIT_NOFILE to set (soft and hard); 0 leaves the limit alone. Default (virtiofsd's): when the soft limit is
   * below min(1 000 000, fs.nr_open), raise it to that, or to the hard limit when raising the hard one is not
   * allowed; a higher limit is left as it is.
   */
  rlimitNofile?: number;
  /**
   * Confine the process to the shared directory once it is set up (host/sandbox.ts). Default `none` here (an
   * embedder's process is not ours to move); the CLI defaults to `namespace` as root and re-executes itself under
   * the sandbox helper first, which `namespace` requires. vhost-user only (not with `mountpoint`).
   */
  sandbox?: SandboxMode;
  /**
   * Install a seccomp allow-list on every thread once the daemon is set up (host/sandbox.ts): what happens to
   * any other syscall. Default `none`. Cannot be undone for the life of the process.
   */
  seccomp?: SeccompMode;
  /**
   * `--modcaps=+cap:-cap` (virtiofsd's syntax), applied by the CLI through the sandbox helper before node starts
   * (capabilities are per thread; see host/sandbox.ts). Not applied by start().
   */
  modcaps?: string;
  /**
   * The DAX cache window in bytes (a multiple of 2 MiB; 0 or absent: no DAX). The guest maps file ranges into it
   * (`mount -t virtiofs TAG /mnt -o dax`); host/dax/dax-device.ts. vhost-user only.
   */
  daxWindowSize?: number;
  /** How map requests reach the frontend: `shmem` (SHMEM_MAP/UNMAP, upstream; default) or `legacy` (SLAVE_FS_MAP). */
  daxProtocol?: DaxProtocol;
  /** Which files get FUSE_ATTR_DAX for a guest mounted with -o dax=inode (default: never, no FUSE_HAS_INODE_DAX). */
  inodeDax?: InodeDaxPolicy;
  /** How long the VMM may take to answer a map request before the backend channel counts as broken (5000 ms). */
  daxRequestTimeoutMs?: number;
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

/** Serves a host directory (PassthroughFs) as virtiofsd does: a FileSystemDaemon over PassthroughFs. */
export class VirtiofsDaemon extends FileSystemDaemon<PassthroughFs> {
  private constructor(built: DaemonLayers, readonly options: DaemonOptions) {
    super(built);
  }

  /** Validates the options, builds the layers and starts listening. Throws ConfigError / VhostUserError. */
  static async start(options: DaemonOptions): Promise<VirtiofsDaemon>;
  /** @deprecated FileSystemDaemon.start serves any FileSystem; this signature is its. */
  static async start<F extends FileSystem>(fs: F, options: ServeOptions): Promise<FileSystemDaemon<F>>;
  static async start<F extends FileSystem>(a: DaemonOptions | F, b?: ServeOptions): Promise<VirtiofsDaemon | FileSystemDaemon<F>> {
    if (b !== undefined) return FileSystemDaemon.start(a as F, b);
    const options = a as DaemonOptions;
    if (options.logLevel !== undefined) setLogLevel(options.logLevel);
    if (options.logger !== undefined) setLogger(options.logger);
    let st;
    try {
      st = statSync(options.sharedDir);
    } catch (e) {
      throw new ConfigError(`--shared-dir ${options.sharedDir}: ${(e as NodeJS.ErrnoException).code ?? e}`);
    }
    if (!st.isDirectory()) throw new ConfigError(`--shared-dir ${options.sharedDir}: not a directory`);
    const ways = [options.socketPath, options.listenFd, options.mountpoint].filter((w) => w !== undefined).length;
    if (ways > 1) {
      throw new ConfigError('--socket-path, --fd and --mountpoint are exclusive (one share, one kind of client)');
    }
    if (ways === 0) throw new ConfigError('--socket-path (or --fd, or --mountpoint) is required');

    const nofile = applyNofileLimit(options.rlimitNofile);
    log.debug(`open-file limit: ${nofile}`);

    const sandbox = options.mountpoint === undefined ? options.sandbox ?? 'none' : 'none';
    prepareSandbox(sandbox, options.sharedDir);
    const fs = new PassthroughFs({
      root: options.sharedDir, xattr: options.xattr ?? false, writeback: options.writeback ?? false,
      uidMap: new IdMap(options.translateUid ?? []), gidMap: new IdMap(options.translateGid ?? []),
      ...(options.xattrmap !== undefined ? { xattrMap: new XattrMap(options.xattrmap) } : {}),
      posixAcl: options.posixAcl ?? false,
      allowDirectIo: options.allowDirectIo ?? false, preserveNoatime: options.preserveNoatime ?? false,
      inodeFileHandles: options.inodeFileHandles ?? 'never', announceSubmounts: options.announceSubmounts ?? false,
      allowMknodDevices: options.allowMknodDevices ?? false, threadPoolSize: options.threadPoolSize ?? 0,
    });
    let dax: DaxDevice | undefined;
    if ((options.daxWindowSize ?? 0) > 0 && options.mountpoint === undefined) {
      dax = new DaxDevice({ windowSize: BigInt(options.daxWindowSize!), protocol: options.daxProtocol ?? 'shmem',
        ...(options.inodeDax !== undefined ? { inodeDax: options.inodeDax } : {}) });
      dax.attachFiles(passthroughMappingFiles(fs));
    }
    let built: DaemonLayers;
    try {
      built = await FileSystemDaemon.layers(fs, {
        ...(options.socketPath !== undefined ? { socketPath: options.socketPath } : {}),
        ...(options.listenFd !== undefined ? { listenFd: options.listenFd } : {}),
        ...(options.socketGroup !== undefined ? { socketGroup: options.socketGroup } : {}),
        ...(options.mountpoint !== undefined ? { mountpoint: options.mountpoint } : {}),
        numRequestQueues: options.numRequestQueues ?? 1, exitOnDisconnect: options.exitOnDisconnect ?? false,
        pollUs: options.pollUs ?? 0, batchWindowUs: options.batchWindowUs ?? DEFAULT_BATCH_WINDOW_US,
        queueThreads: options.queueThreads ?? false,
      }, {
        sharedDir: options.sharedDir,
        shareFiles: (shared) => fs.shareFiles(shared),
        ...(dax !== undefined ? { dax: { device: dax, timeoutMs: options.daxRequestTimeoutMs ?? 5000 } } : {}),
        server: {
          cache: options.cache ?? 'auto', writeback: options.writeback ?? false, readonly: options.readonly ?? false,
          // Without it the guest cannot clear setuid/setgid on open(O_TRUNC) by an unprivileged caller (with
          // atomic_o_trunc the kernel drops its own mode change), and applies the pre-6.2 setgid rule on writes.
          killprivV2: options.killprivV2 ?? true,
          ...(options.timeout !== undefined ? { timeout: options.timeout } : {}),
          readdirplus: options.readdirplus ?? true,
          posixLocks: options.posixLock ?? false, flockLocks: options.flock ?? false,
          posixAcl: options.posixAcl ?? false, announceSubmounts: options.announceSubmounts ?? false,
        },
        ready: () => {
          if (options.mountpoint === undefined) enterSandbox(sandbox, options.sharedDir);
          installSeccomp(options.seccomp ?? 'none', { mountpoint: options.mountpoint !== undefined });
        },
      });
    } catch (e) {
      dax?.close();
      fs.close();
      throw e;
    }
    const daemon = new VirtiofsDaemon(built, options);
    daemon.dax = dax;
    return daemon;
  }

  /** The DAX window's device side (with `daxWindowSize`). */
  dax: DaxDevice | undefined;

  protected override async stop(): Promise<void> {
    await super.stop();
    this.dax?.close(); // its channel and zero-page memfd
    this.fs.close();
  }
}

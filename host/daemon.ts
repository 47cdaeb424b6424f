/**
 * VirtiofsDaemon: the library entry point. Composes the layers:
 *   VhostUserListener (socket, state machine) -> QueueProcessor -> FuseServer (dispatch table) -> PassthroughFs,
 * or, with `mountpoint`, DevFuseSession (/dev/fuse, a FUSE mount on the host) -> the same FuseServer and core codec.
 * Embedders (hypervisor tooling in Node, Deno or Bun) use this; the CLI is a thin wrapper over it.
 */
import { readFileSync, statSync } from 'node:fs';
import { native } from './native-loader.js';
import { ConfigError } from './errors.js';
import { log, type LogLevel } from './log.js';
import { Core } from './core.js';
import { FuseServer, type CacheMode } from './fuse/server.js';
import { DaxDevice, attachDax, daxOf, type DaxProtocol, type InodeDaxPolicy } from './dax/dax-device.js';
import { passthroughMappingFiles } from './dax/passthrough-files.js';
import { PassthroughFs } from './passthrough/passthrough-fs.js';
import { IdMap } from './passthrough/id-map.js';
import { XattrMap } from './passthrough/xattr-map.js';
import type { InodeFileHandles } from './passthrough/inode-store.js';
import { VhostUserListener } from './vhost-user/listener.js';
import { type SandboxMode, type SeccompMode, enterSandbox, installSeccomp, prepareSandbox } from './sandbox.js';
import { DevFuseSession, devFuseMaxPages } from './transport/dev-fuse.js';

export type { CacheMode } from './fuse/server.js';
export const CACHE_MODES: readonly CacheMode[] = ['never', 'auto', 'always', 'metadata'];

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
   * virtiofsd's --thread-pool-size (0: no pool). Accepted and kept; requests are not yet spread over a pool of
   * workers by it (see README, "Launchers").
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

export class VirtiofsDaemon {
  /** Resolves when the daemon has stopped (close(), or the frontend left with exitOnDisconnect). */
  readonly closed: Promise<void>;
  private constructor(
    readonly options: DaemonOptions,
    readonly core: Core,
    readonly fs: PassthroughFs,
    readonly server: FuseServer,
    readonly listener: VhostUserListener | null,
    readonly devFuse: DevFuseSession | null = null,
  ) {
    this.closed = devFuse !== null ? devFuse.closed
      : new Promise((resolve) => listener!.once('close', () => resolve()));
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
    if (options.mountpoint !== undefined && options.socketPath !== undefined) {
      throw new ConfigError('--socket-path and --mountpoint are exclusive (one share, one kind of client)');
    }
    if (options.mountpoint === undefined && options.socketPath === undefined && options.listenFd === undefined) {
      throw new ConfigError('--socket-path, --fd or --mountpoint is required');
    }
    if (options.listenFd !== undefined && (options.socketPath !== undefined || options.mountpoint !== undefined)) {
      throw new ConfigError('--fd excludes --socket-path and --mountpoint');
    }

    const nofile = applyNofileLimit(options.rlimitNofile);
    log.debug(`open-file limit: ${nofile}`);

    const sandbox = options.mountpoint === undefined ? options.sandbox ?? 'none' : 'none';
    prepareSandbox(sandbox, options.sharedDir);
    const core = await Core.create();
    const fs = new PassthroughFs({
      root: options.sharedDir, xattr: options.xattr ?? false, writeback: options.writeback ?? false,
      uidMap: new IdMap(options.translateUid ?? []), gidMap: new IdMap(options.translateGid ?? []),
      ...(options.xattrmap !== undefined ? { xattrMap: new XattrMap(options.xattrmap) } : {}),
      posixAcl: options.posixAcl ?? false,
      allowDirectIo: options.allowDirectIo ?? false, preserveNoatime: options.preserveNoatime ?? false,
      inodeFileHandles: options.inodeFileHandles ?? 'never', announceSubmounts: options.announceSubmounts ?? false,
      allowMknodDevices: options.allowMknodDevices ?? false,
    });
    const server = new FuseServer(fs, core, {
      cache: options.cache ?? 'auto', writeback: options.writeback ?? false, readonly: options.readonly ?? false,
      // Without it the guest cannot clear setuid/setgid on open(O_TRUNC) by an unprivileged caller (with
      // atomic_o_trunc the kernel drops its own mode change), and applies the pre-6.2 setgid rule on writes.
      killprivV2: options.killprivV2 ?? true,
      ...(options.timeout !== undefined ? { timeout: options.timeout } : {}),
      readdirplus: options.readdirplus ?? true,
      posixLocks: options.posixLock ?? false, flockLocks: options.flock ?? false, posixAcl: options.posixAcl ?? false,
      announceSubmounts: options.announceSubmounts ?? false,
      ...(options.mountpoint !== undefined ? { maxPages: devFuseMaxPages() } : {}),
    });
    if (options.mountpoint !== undefined) {
      let session: DevFuseSession;
      try {
        session = DevFuseSession.mount(core, server, {
          mountpoint: options.mountpoint, sharedDir: options.sharedDir, readonly: options.readonly ?? false,
        });
      } catch (e) {
        fs.close();
        throw e;
      }
      try {
        installSeccomp(options.seccomp ?? 'none', { mountpoint: true });
      } catch (e) {
        await session.close();
        fs.close();
        throw e;
      }
      return new VirtiofsDaemon(options, core, fs, server, null, session);
    }
    let dax: DaxDevice | undefined;
    if ((options.daxWindowSize ?? 0) > 0) {
      dax = new DaxDevice({ windowSize: BigInt(options.daxWindowSize!), protocol: options.daxProtocol ?? 'shmem',
        ...(options.inodeDax !== undefined ? { inodeDax: options.inodeDax } : {}) });
      dax.attachFiles(passthroughMappingFiles(fs));
      attachDax(server, dax);
    }
    const listener = new VhostUserListener({
      ...(options.listenFd !== undefined ? { listenFd: options.listenFd } : { socketPath: options.socketPath! }),
      ...(options.socketGroup !== undefined ? { socketGroup: options.socketGroup } : {}),
      core,
      server,
      ...(dax !== undefined ? { dax, backendRequestTimeoutMs: options.daxRequestTimeoutMs ?? 5000 } : {}),
      numRequestQueues: options.numRequestQueues ?? 1,
      exitOnDisconnect: options.exitOnDisconnect ?? false,
    });
    const daemon = new VirtiofsDaemon(options, core, fs, server, listener);
    // A new frontend is a new guest: it sends FUSE_INIT again and knows none of the old node ids.
    listener.on('disconnect', (reason: Error | null) => {
      if (reason) log.debug(`session ended: ${reason.message}`);
      server.endSession();
    });
    listener.on('error', (err: Error) => log.warn(`vhost-user: ${err.message}`));
    try {
      listener.listen();
      enterSandbox(sandbox, options.sharedDir);
      installSeccomp(options.seccomp ?? 'none', { mountpoint: false });
    } catch (e) {
      listener.close();
      fs.close();
      throw e;
    }
    return daemon;
  }

  /** Stops listening, ends the session, closes every fd. Idempotent. */
  async close(): Promise<void> {
    this.listener?.close();
    await this.devFuse?.close();
    this.server.endSession();
    daxOf(this.server)?.close(); // its channel and zero-page memfd
    this.fs.close();
    await this.closed;
  }
}

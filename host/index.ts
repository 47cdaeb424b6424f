/**
 * Library API of virtiofsd-ts.
 *
 * - `serve(fs, options)` / `FileSystemDaemon.start`: serve any `FileSystem` over a vhost-user socket (path or
 *   listening fd) or a /dev/fuse mount; methods may return Promises.
 * - `VirtiofsDaemon.start(options)`: share a host directory (the passthrough), as the CLI does.
 * - The `FileSystem` interface and what its methods receive and return.
 *
 * The frontend side (a vhost-user frontend, FUSE client and DAX driver for tests and benchmarks without a VM) is
 * its own entry point, `virtiofsd-ts/frontend` (host/frontend/index.ts).
 */
export {
  serve, FileSystemDaemon, VirtiofsDaemon, CACHE_MODES, type ServeOptions, type FileSystemDaemonEvents,
  type DaemonLayers, type DaemonOptions, type CacheMode,
} from './daemon.js';
export {
  AttrTarget, BufferData, BufferBytes, BufferDirTarget, STATX,
  type FileSystem, type MaybePromise, type Context, type Entry, type OpenResult, type CreateResult, type Timestamp,
  type SetAttr, type StatFs, type InitInfo, type Attr, type DataTarget, type DataSource, type DirTarget,
  type ByteTarget, type FileLock,
} from './fuse/filesystem.js';
export { Errno, FileType, DirentType, RenameFlags, OpenFlags } from './fuse/constants.js';
export { formatStats, LATENCY_BUCKETS, type OperationStats } from './fuse/op-stats.js';
export { PassthroughFs, type PassthroughOptions } from './passthrough/passthrough-fs.js';
export { VirtiofsdError, SystemError, VhostUserError, ConfigError } from './errors.js';
// The layers themselves, for embedders that compose their own daemon (and the packaging checks).
export { Core } from './core.js';
export { FuseServer } from './fuse/server.js';
export { VhostUserListener } from './vhost-user/listener.js';
export { DevFuseSession, type DevFuseOptions } from './transport/dev-fuse.js';
export { VhostUserBackend } from './vhost-user/backend.js';
export { DaxDevice, attachDax, type DaxProtocol, type InodeDaxPolicy } from './dax/dax-device.js';
export { setLogLevel, setLogger, LOG_LEVELS, type LogLevel, type Logger } from './log.js';

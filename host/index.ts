/** Library API of virtiofsd-ts. */
export { VirtiofsDaemon, CACHE_MODES, type DaemonOptions, type CacheMode } from './daemon.js';
export { Core } from './core.js';
export { FuseServer } from './fuse/server.js';
export type { FileSystem } from './fuse/filesystem.js';
export { PassthroughFs } from './passthrough/passthrough-fs.js';
export { VhostUserListener } from './vhost-user/listener.js';
export { DevFuseSession, type DevFuseOptions } from './transport/dev-fuse.js';
export { VhostUserBackend } from './vhost-user/backend.js';
export { VhostUserFrontend } from './frontend/vhost-user-frontend.js';
export { VirtqueueDriver } from './frontend/virtqueue-driver.js';
export { DaxDevice, attachDax, type DaxProtocol, type InodeDaxPolicy } from './dax/dax-device.js';
export { DaxWindow } from './frontend/dax-window.js';
export { DaxDriver } from './frontend/dax-driver.js';
export { VirtiofsdError, SystemError, VhostUserError, ConfigError } from './errors.js';
export { setLogLevel, type LogLevel } from './log.js';

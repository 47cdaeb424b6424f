/**
 * `virtiofsd-ts/frontend`: the other end of the device, for tests and benchmarks without a VM. A vhost-user
 * frontend (the role QEMU plays: memory table, vrings, kick/call fds), the guest driver's split rings, a FUSE
 * client with a promise API over them, and DAX (the VMM's cache window and the guest driver's reads and writes
 * through it). It drives any vhost-user-fs backend: ours, the C or the Rust virtiofsd. Not needed to serve a VM,
 * so it is a separate entry point from the daemon's API (`virtiofsd-ts`).
 */
export { VhostUserFrontend, type VhostUserFrontendOptions, type NegotiateOptions } from './vhost-user-frontend.js';
export { VirtqueueDriver, type VirtqueueDriverOptions } from './virtqueue-driver.js';
export { FuseClient, FuseError, type FuseClientOptions } from './fuse-client.js';
export { DaxWindow, type DaxWindowOptions, type DaxWindowProtocol } from './dax-window.js';
export { DaxDriver } from './dax-driver.js';

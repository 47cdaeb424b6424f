/**
 * A userspace virtio-fs *driver*: FUSE requests over vhost-user, the way the Linux guest sends them, with a typed
 * promise API. Used by tests and benchmarks to drive any vhost-user-fs backend (ours, the C virtiofsd) without a
 * VM.
 *
 * FuseClient is the API; each method is one FUSE request, built and decoded in its op family's file:
 *
 *   fuse-client/transport.ts    slots in guest memory, virtqueues, send/complete, timeouts (the class underneath)
 *   fuse-client/session.ts      init
 *   fuse-client/entries.ts      lookup forget batchForget create mkdir unlink rmdir rename
 *   fuse-client/attributes.ts   getattr setattr statfs
 *   fuse-client/data.ts         open read readInto write flush release fsync
 *   fuse-client/directories.ts  opendir readdir readdirplus releasedir
 *
 * Any other request goes through request() (a bare-status reply).
 */
import * as P from '../fuse/protocol.js';
import { FuseTransport, type FuseClientOptions } from './fuse-client/transport.js';
import * as sessionOps from './fuse-client/session.js';
import * as entryOps from './fuse-client/entries.js';
import * as attributeOps from './fuse-client/attributes.js';
import * as dataOps from './fuse-client/data.js';
import * as directoryOps from './fuse-client/directories.js';
import type { InitOptions, InitReply } from './fuse-client/session.js';
import type { CreateReply, EntryReply } from './fuse-client/entries.js';
import type { AttrReply, SetattrIn, StatfsReply } from './fuse-client/attributes.js';
import type { OpenReply } from './fuse-client/data.js';
import type { Dirent, DirentPlus } from './fuse-client/directories.js';

export { FuseError, type FuseClientOptions } from './fuse-client/transport.js';
export type { InitReply } from './fuse-client/session.js';
export type { CreateReply, EntryReply } from './fuse-client/entries.js';
export type { AttrReply, FuseAttr, SetattrIn, StatfsReply } from './fuse-client/attributes.js';
export type { OpenReply } from './fuse-client/data.js';
export type { Dirent, DirentPlus } from './fuse-client/directories.js';

export class FuseClient extends FuseTransport {
  /**
   * Connects to a vhost-user-fs backend, negotiates, shares guest memory and starts the hiprio queue and
   * `queues` request queues. Call init() next.
   */
  static connect(socketPath: string, options: FuseClientOptions = {}): Promise<FuseClient> {
    return FuseTransport.open(socketPath, options, (parts) => new FuseClient(parts));
  }

  // ---- FUSE operations ------------------------------------------------------------------------------------------
  // `q` (optional, last): request queue 0..queues-1; default round-robin.

  /** FUSE_INIT. Must be the first request. Lowers maxPayload to the backend's max_write. */
  init(opts: InitOptions = {}, q?: number): Promise<InitReply> {
    return sessionOps.init(this, opts, q);
  }

  lookup(parent: number, name: string, q?: number): Promise<EntryReply> {
    return entryOps.lookup(this, parent, name, q);
  }

  /** FUSE_FORGET on the hiprio queue (no reply; resolves when the backend returned the buffer). */
  forget(nodeid: number, nlookup: number): Promise<void> {
    return entryOps.forget(this, nodeid, nlookup);
  }

  /** FUSE_BATCH_FORGET on the hiprio queue; split into messages of at most ~250 entries. */
  batchForget(items: ReadonlyArray<{ nodeid: number; nlookup: number }>): Promise<void> {
    return entryOps.batchForget(this, items);
  }

  getattr(nodeid: number, fh?: number, q?: number): Promise<AttrReply> {
    return attributeOps.getattr(this, nodeid, fh, q);
  }

  setattr(nodeid: number, s: SetattrIn, q?: number): Promise<AttrReply> {
    return attributeOps.setattr(this, nodeid, s, q);
  }

  /** FUSE_OPEN (flags: O_RDONLY/O_WRONLY/O_RDWR plus O_TRUNC etc.). */
  open(nodeid: number, flags: number, q?: number): Promise<OpenReply> {
    return dataOps.open(this, nodeid, flags, q);
  }

  opendir(nodeid: number, q?: number): Promise<OpenReply> {
    return directoryOps.opendir(this, nodeid, q);
  }

  /** FUSE_READ; resolves with a copy of the bytes read (short at end of file). */
  read(nodeid: number, fh: number, offset: number, size: number, q?: number): Promise<Uint8Array> {
    return dataOps.read(this, nodeid, fh, offset, size, q);
  }

  /**
   * FUSE_READ into `dst` (from its start); resolves with the byte count. `dst` null: the data stays in guest
   * memory (what a guest page cache would do) and only the count is returned.
   */
  readInto(nodeid: number, fh: number, offset: number, size: number, dst: Uint8Array | null, q?: number): Promise<number> {
    return dataOps.readInto(this, nodeid, fh, offset, size, dst, q);
  }

  /**
   * FUSE_WRITE; resolves with the count the backend wrote. `data` a number: that many bytes of whatever the slot's
   * data buffer holds (benchmarks: no copy into guest memory).
   */
  write(nodeid: number, fh: number, offset: number, data: Uint8Array | number, q?: number): Promise<number> {
    return dataOps.write(this, nodeid, fh, offset, data, q);
  }

  flush(nodeid: number, fh: number, q?: number): Promise<void> {
    return dataOps.flush(this, nodeid, fh, q);
  }

  release(nodeid: number, fh: number, flags = 0, q?: number): Promise<void> {
    return dataOps.release(this, nodeid, fh, flags, q);
  }

  releasedir(nodeid: number, fh: number, q?: number): Promise<void> {
    return directoryOps.releasedir(this, nodeid, fh, q);
  }

  fsync(nodeid: number, fh: number, datasync = false, q?: number): Promise<void> {
    return dataOps.fsync(this, nodeid, fh, datasync, q);
  }

  /** FUSE_CREATE (flags: open flags, O_CREAT implied by the opcode but passed as given). */
  create(parent: number, name: string, flags: number, mode: number, q?: number): Promise<CreateReply> {
    return entryOps.create(this, parent, name, flags, mode, q);
  }

  mkdir(parent: number, name: string, mode: number, q?: number): Promise<EntryReply> {
    return entryOps.mkdir(this, parent, name, mode, q);
  }

  unlink(parent: number, name: string, q?: number): Promise<void> {
    return entryOps.unlink(this, parent, name, q);
  }

  rmdir(parent: number, name: string, q?: number): Promise<void> {
    return entryOps.rmdir(this, parent, name, q);
  }

  /** FUSE_RENAME (flags 0) or FUSE_RENAME2 (RENAME_NOREPLACE / RENAME_EXCHANGE). */
  rename(parent: number, name: string, newParent: number, newName: string, flags = 0, q?: number): Promise<void> {
    return entryOps.rename(this, parent, name, newParent, newName, flags, q);
  }

  /** FUSE_READDIR of at most `size` bytes from `offset` (0, or a previous entry's `off`). */
  readdir(nodeid: number, fh: number, offset: number | bigint, size = 4096, q?: number): Promise<Dirent[]> {
    return directoryOps.readdir(this, nodeid, fh, offset, size, q);
  }

  /** FUSE_READDIRPLUS; every entry but "." and ".." counts as a lookup (forget them). */
  readdirplus(nodeid: number, fh: number, offset: number | bigint, size = 4096, q?: number): Promise<DirentPlus[]> {
    return directoryOps.readdirplus(this, nodeid, fh, offset, size, q);
  }

  statfs(nodeid = P.FUSE_ROOT_ID, q?: number): Promise<StatfsReply> {
    return attributeOps.statfs(this, nodeid, q);
  }
}

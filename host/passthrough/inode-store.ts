/**
 * The inodes the guest knows: one entry per host inode, with the guest's lookup count. Node ids are our own
 * numbers: the root is FUSE_ROOT_ID (1), the rest count up from 2 and are never reused, so (node id, generation)
 * is unique for the life of the store and generation stays 0.
 *
 * How an entry reaches its host inode (`--inode-file-handles`, virtiofsd's semantics):
 * - `never`: the entry holds an O_PATH|O_NOFOLLOW fd for as long as the guest holds the node; it is keyed by
 *   (st_dev, st_ino), which cannot be reused while the fd pins the inode (see `keyOf`).
 * - `prefer`: the entry holds a file handle (name_to_handle_at) and the mount it belongs to, so the nodes the guest
 *   holds cost no fd each; an fd is opened by handle when an operation needs one. Inodes whose filesystem has no
 *   handles (procfs, sysfs, overlayfs without nfs_export…) fall back to an fd.
 * - `mandatory`: as prefer, but an inode without a handle is an error (at start-up for the shared directory).
 * A handle entry is keyed by (mount id, handle): the handle carries the inode's generation, so a file deleted and
 * re-created with the same inode number is a new node, not the old one.
 *
 * Handles come only from name_to_handle_at on fds we opened ourselves, never from the guest: open_by_handle_at
 * does not check that the inode lies under the shared directory, so a forged handle could name any inode of the
 * filesystem. open_by_handle_at needs CAP_DAC_READ_SEARCH (checked once per mount, at first use).
 *
 * Ops borrow fds through `Inode.fd` (one accessor: `fdOf`). Handle entries keep their fds in a bounded LRU cache;
 * an fd evicted from it is closed from a microtask, so an fd borrowed by the current (synchronous) operation stays
 * open until that operation has returned, however many other nodes it touches. (A forgotten node's fd is given
 * up at once: no operation uses a node after forgetting it. Either goes through `closeLater`, which PassthroughFs
 * points at its closer thread, since the last close of an unlinked inode may wait for the disk.)
 *
 * While a host inode is looked up it keeps the same node id (a second LOOKUP of the same file, or of a hard link
 * to it, finds the existing entry). FORGET decrements; at zero the entry goes with its fd or handle.
 */
import { native } from '../native-loader.js';
import { SystemError } from '../errors.js';
import { log } from '../log.js';
import { STATX, type AttrTarget } from '../fuse/filesystem.js';
import { NumberMap } from './number-map.js';

const C = native.constants;
const E = C.errno;

export type InodeFileHandles = 'never' | 'prefer' | 'mandatory';
export const INODE_FILE_HANDLES: readonly InodeFileHandles[] = ['never', 'prefer', 'mandatory'];

export interface InodeStoreOptions {
  /** Default 'never'. */
  fileHandles?: InodeFileHandles;
  /** Open fds kept for handle entries (LRU). Default 64. */
  fdCacheSize?: number;
  /**
   * Closes the fd of a node the guest forgot, or a cached fd evicted, off the JS thread (PassthroughFs: the
   * native closer). The last fd of an unlinked inode evicts it, which may wait for the disk. Default: close now.
   */
  closeLater?: (fd: number) => void;
}

/** struct file_handle: 8-byte header + up to MAX_HANDLE_SZ bytes. */
const HANDLE_BUF_SIZE = 8 + C.MAX_HANDLE_SZ;

/** A mount whose inodes we hold by handle: a directory on it opened O_RDONLY (open_by_handle_at refuses an
 *  O_PATH mount fd), and its st_dev to notice a mount id reused by another mount. */
interface MountRef {
  readonly mountId: number;
  readonly fd: number;
  readonly dev: number;
}

/**
 * An entry's key in the store: (st_dev, st_ino) as one Number while that is exact (the common case: no string is
 * built, hashed or kept per inode), else a string; `h:${mountId}:${handle hex}` for a handle entry. Numbers and
 * strings never compare equal, so the two forms cannot collide.
 */
export type InodeKey = number | string;

/** st_dev as one Number: Linux's major has 12 bits and its minor 20, so major * 2^32 + minor is exact. */
export function devNumber(attr: AttrTarget): number {
  return attr.devMajor * 0x1_0000_0000 + attr.devMinor;
}

/** Filesystems (st_dev values) whose inodes get Number keys; the rest get string keys. */
const NUMERIC_DEVS = 1024;
/** st_ino below this fits beside a device index in a Number key (1024 * 2^43 = 2^53). */
const NUMERIC_INO_LIMIT = 2 ** 43;

export class Inode {
  /** The guest's lookup count. The root is pinned and never goes. */
  lookups = 1;

  /** @internal Created by InodeStore only. */
  constructor(
    private readonly store: InodeStore,
    /** Our node id. */
    readonly nodeId: number,
    /** (st_dev, st_ino), or (mount id, handle) for a handle entry: see InodeKey. */
    readonly key: InodeKey,
    /** devNumber of the inode's filesystem. */
    readonly dev: number,
    /** S_IFMT bits of the inode (the type never changes). */
    readonly type: number,
    /** @internal The fd this entry owns (-1 for a handle entry). */
    readonly pathFd: number,
    /** @internal The raw struct file_handle (null for an fd entry). */
    readonly handle: Uint8Array | null,
    /** @internal The mount the handle is opened against (null for an fd entry). */
    readonly mount: MountRef | null,
  ) {}

  readonly generation = 0;

  /**
   * An O_PATH fd of the inode (root: O_PATH|O_DIRECTORY of the shared directory), valid until the current
   * operation returns; or -errno when a handle can no longer be opened (-ESTALE: the inode is gone). Never close
   * it.
   */
  get fd(): number {
    return this.store.fdOf(this);
  }

  /** Whether the entry holds a file handle rather than an fd. */
  get byHandle(): boolean {
    return this.handle !== null;
  }
}

export class InodeStore {
  private readonly byId = new NumberMap<Inode>();
  /** Entries with a Number key (every common case), and the rest (string keys: see InodeKey). */
  private readonly byNumberKey = new NumberMap<Inode>();
  private readonly byStringKey = new Map<string, Inode>();
  /** devNumber -> the index it has in Number keys (the first NUMERIC_DEVS filesystems met). */
  private readonly devIndex = new Map<number, number>();
  private nextId = 2;
  readonly root: Inode;
  readonly fileHandles: InodeFileHandles;
  private readonly fdCacheSize: number;
  /** Open fds of handle entries, least recently used first (Map order). */
  private readonly fdCache = new Map<Inode, number>();
  /** Fds evicted from the cache during the current operation: closed from a microtask. */
  private retired: number[] = [];
  private readonly mounts = new Map<number, MountRef>();
  private readonly handleBuf = new Uint8Array(HANDLE_BUF_SIZE);
  private readonly handleView = new DataView(this.handleBuf.buffer);
  /** prefer, and open_by_handle_at is not permitted (no CAP_DAC_READ_SEARCH): every inode gets an fd. */
  private handlesOff = false;
  /** The syscall behind the last handleOf failure (for the start-up error). */
  private handleSyscall = 'name_to_handle_at';
  private closed = false;
  private readonly closeLater: (fd: number) => void;

  /**
   * Takes ownership of `rootFd` (closed here if the constructor throws), whose statx is in `rootAttr`. With
   * `mandatory` file handles, throws a SystemError when the shared directory's filesystem has no usable handles.
   */
  constructor(rootFd: number, rootAttr: AttrTarget, options: InodeStoreOptions = {}) {
    this.fileHandles = options.fileHandles ?? 'never';
    this.fdCacheSize = Math.max(1, options.fdCacheSize ?? 64);
    this.closeLater = options.closeLater ?? ((fd) => { native.close(fd); });
    const dev = devNumber(rootAttr);
    const rootType = rootAttr.mode & C.S_IFMT;
    let key = this.keyOf(rootAttr);
    if (this.fileHandles !== 'never') {
      const h = this.handleOf(rootFd, dev, rootType);
      if (typeof h === 'number') {
        if (this.fileHandles === 'mandatory') {
          this.closeMounts();
          native.close(rootFd);
          throw new SystemError(this.handleSyscall, -h,
            `${native.strerror(-h)}: the shared directory's filesystem cannot be used with --inode-file-handles=mandatory` +
            ' (it needs file handle support and CAP_DAC_READ_SEARCH)');
        }
        log.info(`inode file handles: not usable for the shared directory (${native.strerror(-h)}); using fds`);
      } else {
        key = h.key;
      }
    }
    // The root keeps its fd in every mode (it is pinned anyway); its key is a handle key when handles work, so a
    // LOOKUP of `..` below it maps back to node 1.
    this.root = new Inode(this, 1, key, dev, rootType, rootFd, null, null);
    this.byId.set(1, this.root);
    this.setByKey(key, this.root);
  }

  get size(): number {
    return this.byId.size;
  }

  /** Open fds held for handle entries right now (the cache; retired fds not yet closed excluded). */
  get cachedFds(): number {
    return this.fdCache.size;
  }

  get(nodeId: number): Inode | undefined {
    return this.byId.get(nodeId);
  }

  getByKey(key: InodeKey): Inode | undefined {
    return typeof key === 'number' ? this.byNumberKey.get(key) : this.byStringKey.get(key);
  }

  private setByKey(key: InodeKey, inode: Inode): void {
    if (typeof key === 'number') this.byNumberKey.set(key, inode);
    else this.byStringKey.set(key, inode);
  }

  private deleteByKey(inode: Inode): void {
    if (this.getByKey(inode.key) !== inode) return;
    if (typeof inode.key === 'number') this.byNumberKey.delete(inode.key);
    else this.byStringKey.delete(inode.key);
  }

  /**
   * The (st_dev, st_ino) key of the statx in `attr`: the filesystem's index * 2^43 + st_ino while st_ino is below
   * 2^43 and the filesystem among the first 1024 met (every common case), else `${major}:${minor}:${ino}`. Equal
   * for the same inode, different for different ones, for the life of the store. The shared directory's
   * filesystem has index 0, so its keys are st_ino itself: while that is below 2^30, a small integer to V8 (not
   * allocated, hashed as it is).
   */
  keyOf(attr: AttrTarget): InodeKey {
    const v = attr.view;
    const o = attr.offset;
    const hi = v.getUint32(o + STATX.ino + 4, true);
    const dev = devNumber(attr);
    let index = this.devIndex.get(dev);
    if (index === undefined && this.devIndex.size < NUMERIC_DEVS) {
      index = this.devIndex.size;
      this.devIndex.set(dev, index);
    }
    if (index !== undefined && hi < NUMERIC_INO_LIMIT / 0x1_0000_0000) {
      return index * NUMERIC_INO_LIMIT + hi * 0x1_0000_0000 + v.getUint32(o + STATX.ino, true);
    }
    return `${attr.devMajor}:${attr.devMinor}:${v.getBigUint64(o + STATX.ino, true)}`;
  }

  /**
   * The O_PATH fd of `inode` for the current operation (see `Inode.fd`): its own fd, a cached one, or one opened
   * by handle now. -errno if the handle cannot be opened.
   */
  fdOf(inode: Inode): number {
    if (inode.handle === null) return inode.pathFd;
    const cached = this.fdCache.get(inode);
    if (cached !== undefined) {
      this.fdCache.delete(inode); // re-insert: most recently used
      this.fdCache.set(inode, cached);
      return cached;
    }
    if (this.closed) return -E.EBADF;
    const fd = native.openByHandleAt(inode.mount!.fd, inode.handle, 0, C.O_PATH);
    if (fd < 0) return fd;
    this.cacheFd(inode, fd);
    return fd;
  }

  /**
   * Records one lookup of the host inode behind `fd` (a freshly opened O_PATH fd we own), whose statx is in
   * `attr`. If the inode is already known the existing entry's count goes up; else a new entry is made. Either way
   * `fd` is taken over (closed, cached or kept). -errno when file handles are mandatory and the inode has none.
   */
  acquire(fd: number, attr: AttrTarget): Inode | number {
    const dev = devNumber(attr);
    const type = attr.mode & C.S_IFMT;
    if (this.fileHandles !== 'never' && !this.handlesOff) {
      const h = this.handleOf(fd, dev, type);
      if (typeof h !== 'number') {
        const known = this.byStringKey.get(h.key);
        if (known !== undefined) {
          if (known.handle !== null && !this.fdCache.has(known)) this.cacheFd(known, fd);
          else if (known.pathFd !== fd) native.close(fd);
          known.lookups += 1;
          return known;
        }
        const inode = new Inode(this, this.nextId++, h.key, dev, type, -1, h.handle, h.mount);
        this.byId.set(inode.nodeId, inode);
        this.byStringKey.set(h.key, inode);
        this.cacheFd(inode, fd); // the op that looked it up usually uses it next
        return inode;
      }
      if (this.fileHandles === 'mandatory') {
        native.close(fd);
        return h;
      }
    }
    const key = this.keyOf(attr);
    const known = this.getByKey(key);
    if (known !== undefined) {
      if (known.pathFd !== fd) native.close(fd);
      known.lookups += 1;
      return known;
    }
    const inode = new Inode(this, this.nextId++, key, dev, type, fd, null, null);
    this.byId.set(inode.nodeId, inode);
    this.setByKey(key, inode);
    return inode;
  }

  /** Adds one lookup to a known node (e.g. LOOKUP of `.`). */
  ref(inode: Inode): Inode {
    inode.lookups += 1;
    return inode;
  }

  /** Subtracts `n` lookups; at zero the node is forgotten with its fd or handle. The root never goes. */
  forget(nodeId: number, n: number): void {
    const inode = this.byId.get(nodeId);
    if (inode === undefined) return;
    inode.lookups = Math.max(0, inode.lookups - n);
    if (inode.lookups > 0 || inode === this.root) return;
    this.byId.delete(nodeId);
    this.deleteByKey(inode);
    // A forgotten node's fd is given up now: an operation never uses a node after forgetting it.
    if (inode.handle === null) {
      this.closeLater(inode.pathFd);
      return;
    }
    const cached = this.fdCache.get(inode);
    if (cached !== undefined) {
      this.fdCache.delete(inode);
      this.closeLater(cached);
    }
  }

  /** Gives back the memory the tables kept from their largest size (a big listing the guest has forgotten). */
  compact(): void {
    this.byId.compact();
    this.byNumberKey.compact();
  }

  /** Forgets every node except the root (DESTROY, or a new INIT after a reset). */
  clear(): void {
    this.byId.forEach((inode) => {
      if (inode !== this.root && inode.handle === null) native.close(inode.pathFd);
    });
    for (const fd of this.fdCache.values()) native.close(fd);
    this.fdCache.clear();
    this.closeRetired();
    this.byId.clear();
    this.byNumberKey.clear();
    this.byStringKey.clear();
    this.byId.set(1, this.root);
    this.setByKey(this.root.key, this.root);
    this.root.lookups = 1;
  }

  /** Closes everything, the root and the mount fds included. The store is unusable afterwards. */
  close(): void {
    if (this.closed) return;
    this.clear();
    this.closed = true;
    native.close(this.root.pathFd);
    this.closeMounts();
    this.byId.clear();
    this.byNumberKey.clear();
    this.byStringKey.clear();
  }

  // ---- file handles -------------------------------------------------------------------------------------------

  /** The handle of the inode behind `fd`, its key and its mount; or -errno (no handle can be used). */
  private handleOf(fd: number, dev: number, type: number):
    { key: string; handle: Uint8Array; mount: MountRef } | number {
    const buf = this.handleBuf;
    this.handleSyscall = 'name_to_handle_at';
    const mountId = native.nameToHandleAt(fd, '', C.AT_EMPTY_PATH, buf, 0);
    if (mountId < 0) return mountId;
    const len = 8 + this.handleView.getUint32(0, true);
    const handle = buf.slice(0, len);
    const mount = this.mountOf(mountId, fd, dev, type, handle);
    if (typeof mount === 'number') return mount;
    return { key: `h:${mountId}:${Buffer.from(handle.buffer, 0, len).toString('hex')}`, handle, mount };
  }

  /**
   * The mount `mountId` (st_dev `dev`), met through the inode behind `fd` whose handle is `handle`. The first
   * inode met on a mount must be a directory (a mount is entered through its root directory; a file bind-mounted
   * on a file is not, and gets -EOPNOTSUPP): it is opened O_RDONLY as the mount fd, and opening `handle` by it
   * checks once that open_by_handle_at works there (CAP_DAC_READ_SEARCH).
   */
  private mountOf(mountId: number, fd: number, dev: number, type: number, handle: Uint8Array): MountRef | number {
    const known = this.mounts.get(mountId);
    if (known !== undefined && known.dev === dev) return known;
    if (type !== C.S_IFDIR) return -E.EOPNOTSUPP;
    const mountFd = native.openat(fd, '.', C.O_RDONLY | C.O_DIRECTORY | C.O_CLOEXEC, 0);
    if (mountFd < 0) return mountFd;
    const probe = native.openByHandleAt(mountFd, handle, 0, C.O_PATH);
    if (probe < 0) {
      native.close(mountFd);
      this.handleSyscall = 'open_by_handle_at';
      if (probe === -E.EPERM && this.fileHandles === 'prefer' && !this.handlesOff) {
        // The capability is the process's: no mount will do better. Stop trying.
        this.handlesOff = true;
        log.warn('inode file handles: open_by_handle_at is not permitted (CAP_DAC_READ_SEARCH missing); using fds');
      }
      return probe;
    }
    native.close(probe);
    // A mount id reused by another mount: the old mount is gone, and so are its inodes (they now fail ESTALE or
    // EBADF, never reach the new mount's inodes).
    if (known !== undefined) native.close(known.fd);
    const mount: MountRef = { mountId, fd: mountFd, dev };
    this.mounts.set(mountId, mount);
    return mount;
  }

  private closeMounts(): void {
    for (const m of this.mounts.values()) native.close(m.fd);
    this.mounts.clear();
  }

  private cacheFd(inode: Inode, fd: number): void {
    this.fdCache.set(inode, fd);
    if (this.fdCache.size <= this.fdCacheSize) return;
    const [oldest, oldFd] = this.fdCache.entries().next().value as [Inode, number];
    this.fdCache.delete(oldest);
    this.retire(oldFd);
  }

  private retire(fd: number): void {
    if (this.retired.length === 0) queueMicrotask(() => this.closeRetired());
    this.retired.push(fd);
  }

  private closeRetired(): void {
    const fds = this.retired;
    if (fds.length === 0) return;
    this.retired = [];
    for (const fd of fds) this.closeLater(fd);
  }
}

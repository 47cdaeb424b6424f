/**
 * The inodes the guest knows: one entry per host inode (keyed by st_dev + st_ino), holding an O_PATH fd to it and
 * the guest's lookup count. Node ids are our own numbers: the root is FUSE_ROOT_ID (1), the rest count up from 2
 * and are never reused, so (node id, generation) is unique for the life of the store and generation stays 0.
 *
 * While a host inode is looked up it keeps the same node id (a second LOOKUP of the same file, or of a hard link
 * to it, finds the existing entry). FORGET decrements; at zero the O_PATH fd is closed and the entry goes.
 */
import { native } from '../native-loader.js';

export interface Inode {
  /** Our node id. */
  readonly nodeId: number;
  readonly generation: number;
  /** O_PATH|O_NOFOLLOW fd of the host inode (root: O_PATH|O_DIRECTORY of the shared directory). */
  readonly fd: number;
  /** `${devMajor}:${devMinor}:${ino}` */
  readonly key: string;
  /** S_IFMT bits of the inode (the type never changes). */
  readonly type: number;
  /** The guest's lookup count. The root is pinned and never goes. */
  lookups: number;
}

export function inodeKey(devMajor: number, devMinor: number, ino: bigint): string {
  return `${devMajor}:${devMinor}:${ino}`;
}

export class InodeStore {
  private readonly byId = new Map<number, Inode>();
  private readonly byKey = new Map<string, Inode>();
  private nextId = 2;
  readonly root: Inode;

  /** Takes ownership of `rootFd`. */
  constructor(rootFd: number, rootKey: string, rootType: number) {
    this.root = { nodeId: 1, generation: 0, fd: rootFd, key: rootKey, type: rootType, lookups: 1 };
    this.byId.set(1, this.root);
    this.byKey.set(rootKey, this.root);
  }

  get size(): number {
    return this.byId.size;
  }

  get(nodeId: number): Inode | undefined {
    return this.byId.get(nodeId);
  }

  getByKey(key: string): Inode | undefined {
    return this.byKey.get(key);
  }

  /**
   * Records one lookup of the host inode `key`, whose freshly opened O_PATH fd is `fd`. If the inode is already
   * known, `fd` is closed and the existing entry's count goes up; else a new entry takes ownership of `fd`.
   */
  acquire(fd: number, key: string, type: number): Inode {
    const known = this.byKey.get(key);
    if (known !== undefined) {
      if (known.fd !== fd) native.close(fd);
      known.lookups += 1;
      return known;
    }
    const inode: Inode = { nodeId: this.nextId++, generation: 0, fd, key, type, lookups: 1 };
    this.byId.set(inode.nodeId, inode);
    this.byKey.set(key, inode);
    return inode;
  }

  /** Adds one lookup to a known node (e.g. LOOKUP of `.`). */
  ref(inode: Inode): Inode {
    inode.lookups += 1;
    return inode;
  }

  /** Subtracts `n` lookups; at zero the fd is closed and the node forgotten. The root never goes. */
  forget(nodeId: number, n: number): void {
    const inode = this.byId.get(nodeId);
    if (inode === undefined) return;
    inode.lookups = Math.max(0, inode.lookups - n);
    if (inode.lookups > 0 || inode === this.root) return;
    this.byId.delete(nodeId);
    if (this.byKey.get(inode.key) === inode) this.byKey.delete(inode.key);
    native.close(inode.fd);
  }

  /** Forgets every node except the root (DESTROY, or a new INIT after a reset). */
  clear(): void {
    for (const inode of this.byId.values()) {
      if (inode === this.root) continue;
      native.close(inode.fd);
    }
    this.byId.clear();
    this.byKey.clear();
    this.byId.set(1, this.root);
    this.byKey.set(this.root.key, this.root);
    this.root.lookups = 1;
  }

  /** Closes everything, the root included. The store is unusable afterwards. */
  close(): void {
    this.clear();
    native.close(this.root.fd);
    this.byId.clear();
    this.byKey.clear();
  }
}

/**
 * Example: an in-memory filesystem served to a VM (or mounted on the host) with the virtiofsd-ts library.
 * Files, directories, symlinks, hard links, rename (with RENAME_NOREPLACE / RENAME_EXCHANGE), unlink, truncate,
 * chmod/chown/utimes and statfs; everything lives in this process and is gone when it exits.
 *
 *   node dist/examples/memfs.js --socket-path=/tmp/memfs.sock [--seed=DIR] [--cache=auto]
 *   node dist/examples/memfs.js --mountpoint=/mnt/memfs          (as root: a host FUSE mount)
 *
 * `--seed=DIR` copies a host directory tree into memory at start. Uses only the package's public API (a consumer
 * imports the same names from 'virtiofsd-ts').
 */
import { readdirSync, readFileSync, lstatSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { realpathSync } from 'node:fs';
import {
  serve, Errno, FileType, DirentType, RenameFlags, OpenFlags,
  type AttrTarget, type Context, type DataSource, type DataTarget, type DirTarget, type Entry, type FileSystem,
  type OpenResult, type SetAttr, type StatFs, type Timestamp, type CacheMode, type CreateResult,
} from '../host/index.js';

interface Node {
  readonly id: number;
  mode: number;
  uid: number;
  gid: number;
  nlink: number;
  /** Lookup count the guest holds (FORGET takes it back). */
  lookups: number;
  /** Open handles. */
  opens: number;
  atime: Timestamp;
  mtime: Timestamp;
  ctime: Timestamp;
  /** Regular file: its bytes (capacity may exceed size). */
  data: Uint8Array;
  size: number;
  /** Directory: name -> node id. */
  entries: Map<string, number> | null;
  /** Directory: its parent (the root's is itself). */
  parent: number;
  /** Symlink target. */
  target: string;
}

const ROOT = 1;
const BLOCK = 4096;
/** Capacity statfs reports (and writes are refused beyond): 1 GiB. */
const CAPACITY = 1 << 30;

function now(): Timestamp {
  const ms = Date.now();
  return { sec: Math.floor(ms / 1000), nsec: (ms % 1000) * 1e6 };
}

export class MemFs implements FileSystem {
  private readonly nodes = new Map<number, Node>();
  private nextId = ROOT + 1;
  private nextFh = 1;
  private readonly handles = new Map<number, number>(); // fh -> node id
  private used = 0;

  constructor(rootMode = 0o755, uid = 0, gid = 0) {
    this.nodes.set(ROOT, this.newNode(ROOT, FileType.S_IFDIR | rootMode, uid, gid, ROOT));
    this.nodes.get(ROOT)!.nlink = 2;
  }

  private newNode(id: number, mode: number, uid: number, gid: number, parent: number): Node {
    const t = now();
    const dir = (mode & FileType.S_IFMT) === FileType.S_IFDIR;
    return {
      id, mode, uid, gid, nlink: dir ? 2 : 1, lookups: 0, opens: 0, atime: t, mtime: t, ctime: t,
      data: new Uint8Array(0), size: 0, entries: dir ? new Map() : null, parent, target: '',
    };
  }

  private fill(n: Node, attr: AttrTarget): void {
    attr.set({
      ino: n.id, mode: n.mode, nlink: n.nlink, uid: n.uid, gid: n.gid,
      size: (n.mode & FileType.S_IFMT) === FileType.S_IFLNK ? n.target.length : n.size,
      blocks: Math.ceil(n.size / 512), atime: n.atime, mtime: n.mtime, ctime: n.ctime,
    });
  }

  private entry(n: Node, attr: AttrTarget): Entry {
    n.lookups++;
    this.fill(n, attr);
    return { nodeId: n.id, generation: 0 };
  }

  private dir(id: number): Node | number {
    const d = this.nodes.get(id);
    if (d === undefined) return -Errno.ENOENT;
    return d.entries === null ? -Errno.ENOTDIR : d;
  }

  /** Drops a node nobody can reach any more (no name, no lookup, no open handle). */
  private maybeFree(n: Node): void {
    if (n.id === ROOT || n.nlink > 0 || n.lookups > 0 || n.opens > 0) return;
    this.used -= n.data.length;
    this.nodes.delete(n.id);
  }

  /** Creates `name` in `parent` (shared by mknod, mkdir, symlink, create). */
  private make(ctx: Context, parent: number, name: string, mode: number): Node | number {
    const d = this.dir(parent);
    if (typeof d === 'number') return d;
    if (name.length > 255) return -Errno.ENAMETOOLONG;
    if (d.entries!.has(name)) return -Errno.EEXIST;
    const n = this.newNode(this.nextId++, mode, ctx.uid, ctx.gid, parent);
    // setgid directories hand their group down (and their setgid bit to subdirectories).
    if ((d.mode & 0o2000) !== 0) {
      n.gid = d.gid;
      if (n.entries !== null) n.mode |= 0o2000;
    }
    this.nodes.set(n.id, n);
    d.entries!.set(name, n.id);
    if (n.entries !== null) d.nlink++;
    d.mtime = d.ctime = now();
    return n;
  }

  init(): number {
    return 0;
  }

  destroy(): void {
    // Every lookup count is gone; nodes without names go with them.
    for (const n of [...this.nodes.values()]) {
      n.lookups = 0;
      n.opens = 0;
      this.maybeFree(n);
    }
    this.handles.clear();
  }

  lookup(_ctx: Context, parent: number, name: string, attr: AttrTarget): Entry | number {
    const d = this.dir(parent);
    if (typeof d === 'number') return d;
    const id = name === '.' ? d.id : name === '..' ? d.parent : d.entries!.get(name);
    if (id === undefined) return -Errno.ENOENT;
    return this.entry(this.nodes.get(id)!, attr);
  }

  forget(nodeId: number, nlookup: number): void {
    const n = this.nodes.get(nodeId);
    if (n === undefined) return;
    n.lookups = Math.max(0, n.lookups - nlookup);
    this.maybeFree(n);
  }

  getattr(_ctx: Context, nodeId: number, _fh: number | undefined, attr: AttrTarget): number {
    const n = this.nodes.get(nodeId);
    if (n === undefined) return -Errno.ENOENT;
    this.fill(n, attr);
    return 0;
  }

  setattr(ctx: Context, nodeId: number, set: SetAttr, attr: AttrTarget): number {
    const n = this.nodes.get(nodeId);
    if (n === undefined) return -Errno.ENOENT;
    const t = now();
    if (set.size !== undefined) {
      if (n.entries !== null) return -Errno.EISDIR;
      const r = this.resize(n, set.size);
      if (r < 0) return r;
      n.mtime = t;
    }
    if (set.mode !== undefined) n.mode = (n.mode & FileType.S_IFMT) | (set.mode & 0o7777);
    if (set.uid !== undefined) n.uid = set.uid;
    if (set.gid !== undefined) n.gid = set.gid;
    if ((set.uid !== undefined || set.gid !== undefined || set.killSuidgid) && ctx.uid !== 0) n.mode &= ~0o6000;
    if (set.atime !== undefined) n.atime = set.atime === 'now' ? t : set.atime;
    if (set.mtime !== undefined) n.mtime = set.mtime === 'now' ? t : set.mtime;
    n.ctime = t;
    this.fill(n, attr);
    return 0;
  }

  /** Sets a file's size, growing its buffer by doubling. */
  private resize(n: Node, size: number): number {
    if (size > n.data.length) {
      const cap = Math.max(size, Math.min(n.data.length * 2, size + (64 << 20)));
      if (this.used + cap - n.data.length > CAPACITY) return -Errno.ENOSPC;
      const grown = new Uint8Array(cap);
      grown.set(n.data.subarray(0, n.size));
      this.used += cap - n.data.length;
      n.data = grown;
    } else if (size < n.size) {
      n.data.fill(0, size, n.size); // a later extension reads zeros
    }
    n.size = size;
    return 0;
  }

  readlink(_ctx: Context, nodeId: number): string | number {
    const n = this.nodes.get(nodeId);
    if (n === undefined) return -Errno.ENOENT;
    return (n.mode & FileType.S_IFMT) === FileType.S_IFLNK ? n.target : -Errno.EINVAL;
  }

  symlink(ctx: Context, parent: number, name: string, target: string, attr: AttrTarget): Entry | number {
    const n = this.make(ctx, parent, name, FileType.S_IFLNK | 0o777);
    if (typeof n === 'number') return n;
    n.target = target;
    return this.entry(n, attr);
  }

  mknod(ctx: Context, parent: number, name: string, mode: number, _rdev: number, _umask: number,
    attr: AttrTarget): Entry | number {
    const type = mode & FileType.S_IFMT;
    if (type !== FileType.S_IFREG && type !== FileType.S_IFIFO && type !== FileType.S_IFSOCK) return -Errno.EPERM;
    const n = this.make(ctx, parent, name, mode);
    return typeof n === 'number' ? n : this.entry(n, attr);
  }

  mkdir(ctx: Context, parent: number, name: string, mode: number, _umask: number, attr: AttrTarget): Entry | number {
    const n = this.make(ctx, parent, name, FileType.S_IFDIR | (mode & 0o7777));
    return typeof n === 'number' ? n : this.entry(n, attr);
  }

  create(ctx: Context, parent: number, name: string, mode: number, flags: number, _umask: number,
    attr: AttrTarget): CreateResult | number {
    const d = this.dir(parent);
    if (typeof d === 'number') return d;
    const existing = d.entries!.get(name);
    let n: Node;
    if (existing !== undefined) {
      if ((flags & OpenFlags.O_EXCL) !== 0) return -Errno.EEXIST;
      n = this.nodes.get(existing)!;
      if (n.entries !== null) return -Errno.EISDIR;
      if ((flags & OpenFlags.O_TRUNC) !== 0) this.resize(n, 0);
    } else {
      const made = this.make(ctx, parent, name, FileType.S_IFREG | (mode & 0o7777));
      if (typeof made === 'number') return made;
      n = made;
    }
    const e = this.entry(n, attr);
    return { ...e, ...this.openNode(n) };
  }

  private openNode(n: Node): OpenResult {
    const fh = this.nextFh++;
    this.handles.set(fh, n.id);
    n.opens++;
    return { fh };
  }

  private remove(parent: number, name: string, dir: boolean): number {
    const d = this.dir(parent);
    if (typeof d === 'number') return d;
    const id = d.entries!.get(name);
    if (id === undefined) return -Errno.ENOENT;
    const n = this.nodes.get(id)!;
    if (dir && n.entries === null) return -Errno.ENOTDIR;
    if (!dir && n.entries !== null) return -Errno.EISDIR;
    if (dir && n.entries!.size > 0) return -Errno.ENOTEMPTY;
    d.entries!.delete(name);
    n.nlink = dir ? 0 : n.nlink - 1;
    if (dir) d.nlink--;
    d.mtime = d.ctime = n.ctime = now();
    this.maybeFree(n);
    return 0;
  }

  unlink(_ctx: Context, parent: number, name: string): number {
    return this.remove(parent, name, false);
  }

  rmdir(_ctx: Context, parent: number, name: string): number {
    return this.remove(parent, name, true);
  }

  rename(_ctx: Context, parent: number, name: string, newParent: number, newName: string, flags: number): number {
    if ((flags & ~(RenameFlags.RENAME_NOREPLACE | RenameFlags.RENAME_EXCHANGE)) !== 0) return -Errno.EINVAL;
    const from = this.dir(parent);
    const to = this.dir(newParent);
    if (typeof from === 'number') return from;
    if (typeof to === 'number') return to;
    const id = from.entries!.get(name);
    if (id === undefined) return -Errno.ENOENT;
    const n = this.nodes.get(id)!;
    // A directory cannot move below itself.
    for (let p = to.id; n.entries !== null; p = this.nodes.get(p)!.parent) {
      if (p === n.id) return -Errno.EINVAL;
      if (p === ROOT) break;
    }
    const victimId = to.entries!.get(newName);
    const t = now();
    if ((flags & RenameFlags.RENAME_EXCHANGE) !== 0) {
      if (victimId === undefined) return -Errno.ENOENT;
      const other = this.nodes.get(victimId)!;
      from.entries!.set(name, victimId);
      to.entries!.set(newName, id);
      if (n.entries !== null) n.parent = to.id;
      if (other.entries !== null) other.parent = from.id;
      if (n.entries !== null && other.entries === null) { from.nlink--; to.nlink++; }
      if (n.entries === null && other.entries !== null) { from.nlink++; to.nlink--; }
      from.mtime = to.mtime = from.ctime = to.ctime = n.ctime = other.ctime = t;
      return 0;
    }
    if (victimId === id) return 0;
    if (victimId !== undefined) {
      if ((flags & RenameFlags.RENAME_NOREPLACE) !== 0) return -Errno.EEXIST;
      const victim = this.nodes.get(victimId)!;
      if (victim.entries !== null && n.entries === null) return -Errno.EISDIR;
      if (victim.entries === null && n.entries !== null) return -Errno.ENOTDIR;
      const r = this.remove(to.id, newName, victim.entries !== null);
      if (r < 0) return r;
    }
    from.entries!.delete(name);
    to.entries!.set(newName, id);
    if (n.entries !== null) {
      n.parent = to.id;
      from.nlink--;
      to.nlink++;
    }
    from.mtime = to.mtime = from.ctime = to.ctime = n.ctime = t;
    return 0;
  }

  link(_ctx: Context, nodeId: number, newParent: number, newName: string, attr: AttrTarget): Entry | number {
    const n = this.nodes.get(nodeId);
    if (n === undefined) return -Errno.ENOENT;
    if (n.entries !== null) return -Errno.EPERM;
    const d = this.dir(newParent);
    if (typeof d === 'number') return d;
    if (d.entries!.has(newName)) return -Errno.EEXIST;
    d.entries!.set(newName, n.id);
    n.nlink++;
    n.ctime = d.mtime = d.ctime = now();
    return this.entry(n, attr);
  }

  open(_ctx: Context, nodeId: number, flags: number): OpenResult | number {
    const n = this.nodes.get(nodeId);
    if (n === undefined) return -Errno.ENOENT;
    if (n.entries !== null) return -Errno.EISDIR;
    if ((flags & OpenFlags.O_TRUNC) !== 0 && (flags & OpenFlags.O_ACCMODE) !== OpenFlags.O_RDONLY) {
      this.resize(n, 0);
      n.mtime = n.ctime = now();
    }
    return this.openNode(n);
  }

  read(_ctx: Context, nodeId: number, _fh: number, offset: number, target: DataTarget): number {
    const n = this.nodes.get(nodeId);
    if (n === undefined) return -Errno.ENOENT;
    if (offset >= n.size) return 0;
    return target.fromBytes(n.data.subarray(offset, Math.min(n.size, offset + target.size)));
  }

  write(_ctx: Context, nodeId: number, _fh: number, offset: number, source: DataSource): number {
    const n = this.nodes.get(nodeId);
    if (n === undefined) return -Errno.ENOENT;
    const bytes = source.toBytes();
    const end = offset + bytes.length;
    if (end > n.size) {
      const r = this.resize(n, end);
      if (r < 0) return r;
    }
    n.data.set(bytes, offset);
    n.mtime = n.ctime = now();
    return bytes.length;
  }

  flush(): number {
    return 0;
  }

  fsync(): number {
    return 0;
  }

  release(_ctx: Context, nodeId: number, fh: number): number {
    if (this.handles.delete(fh)) {
      const n = this.nodes.get(nodeId);
      if (n !== undefined) {
        n.opens--;
        this.maybeFree(n);
      }
    }
    return 0;
  }

  opendir(_ctx: Context, nodeId: number): OpenResult | number {
    const d = this.dir(nodeId);
    return typeof d === 'number' ? d : { fh: 0 };
  }

  /** Cookies: 1 = after `.`, 2 = after `..`, 2 + i = after the i-th name (in insertion order). */
  readdir(_ctx: Context, nodeId: number, _fh: number, cookie: bigint, target: DirTarget): number {
    const d = this.dir(nodeId);
    if (typeof d === 'number') return d;
    let at = Number(cookie);
    if (at === 0 && !target.add(d.id, 1n, DirentType.DT_DIR, '.')) return 0;
    if (at <= 1 && !target.add(d.parent, 2n, DirentType.DT_DIR, '..')) return 0;
    let i = 0;
    for (const [name, id] of d.entries!) {
      i++;
      if (2 + i <= at) continue;
      const n = this.nodes.get(id)!;
      if (!target.add(id, BigInt(2 + i), (n.mode & FileType.S_IFMT) >>> 12, name)) break;
      at = 2 + i;
    }
    return 0;
  }

  releasedir(): number {
    return 0;
  }

  statfs(): StatFs {
    let files = 0;
    for (const _ of this.nodes.keys()) files++;
    const blocks = CAPACITY / BLOCK;
    const free = Math.floor((CAPACITY - this.used) / BLOCK);
    return { blocks, bfree: free, bavail: free, files: files + 1_000_000, ffree: 1_000_000, bsize: BLOCK,
      namelen: 255, frsize: BLOCK };
  }

  /**
   * Copies the host directory `dir` into `parent` (names as byte strings, one char per byte), in name order
   * (Node's and Deno's readdir sort, Bun's gives the directory's order): listings are the same on every runtime.
   */
  seed(dir: string, parent = ROOT): void {
    const ctx = { uid: 0, gid: 0, pid: 0 };
    for (const name of readdirSync(dir).sort()) {
      const path = join(dir, name);
      const st = lstatSync(path);
      const bytes = Buffer.from(name).toString('latin1');
      if (st.isDirectory()) {
        const n = this.make(ctx, parent, bytes, FileType.S_IFDIR | (st.mode & 0o7777));
        if (typeof n !== 'number') this.seed(path, n.id);
      } else if (st.isSymbolicLink()) {
        const n = this.make(ctx, parent, bytes, FileType.S_IFLNK | 0o777);
        if (typeof n !== 'number') n.target = Buffer.from(readlinkSync(path)).toString('latin1');
      } else if (st.isFile()) {
        const n = this.make(ctx, parent, bytes, FileType.S_IFREG | (st.mode & 0o7777));
        if (typeof n !== 'number') {
          const content = readFileSync(path);
          this.resize(n, content.length);
          n.data.set(content);
        }
      }
    }
  }

  /** Nodes held (tests: everything forgotten and closed frees them). */
  get nodeCount(): number {
    return this.nodes.size;
  }
}

/** `--name=value` options of the example commands. */
export function exampleArgs(argv: string[]): Map<string, string> {
  const m = new Map<string, string>();
  for (const a of argv) {
    const eq = a.indexOf('=');
    if (!a.startsWith('--') || eq < 0) throw new Error(`unknown argument ${a} (expected --name=value)`);
    m.set(a.slice(2, eq), a.slice(eq + 1));
  }
  return m;
}

async function main(): Promise<void> {
  const args = exampleArgs(process.argv.slice(2));
  const memfs = new MemFs();
  if (args.has('seed')) memfs.seed(args.get('seed')!);
  const daemon = await serve(memfs, {
    ...(args.has('socket-path') ? { socketPath: args.get('socket-path')! } : {}),
    ...(args.has('fd') ? { listenFd: Number(args.get('fd')) } : {}),
    ...(args.has('mountpoint') ? { mountpoint: args.get('mountpoint')! } : {}),
    cache: (args.get('cache') ?? 'auto') as CacheMode,
    logLevel: 'warn',
  });
  daemon.on('connect', () => console.log('memfs: frontend connected'));
  daemon.on('disconnect', () => console.log('memfs: frontend disconnected'));
  process.on('SIGUSR1', () => console.log(daemon.formatStats()));
  process.once('SIGINT', () => void daemon.close());
  process.once('SIGTERM', () => void daemon.close());
  console.log('memfs: serving');
  await daemon.closed;
}

if (process.argv[1] !== undefined && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((e: unknown) => {
    console.error(`memfs: ${e instanceof Error ? e.message : String(e)}`);
    process.exit(1);
  });
}

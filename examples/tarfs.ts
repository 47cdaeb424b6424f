/**
 * Example: a read-only filesystem whose contents come from an asynchronous source, a tar archive read with
 * `fs.promises` (a minimal ustar reader below). The index is built once at start; every READ is an async
 * `FileHandle.read` of the archive, so a slow disk (or, with another source, a network) never blocks the daemon:
 * `read` returns a Promise and the daemon answers other requests meanwhile.
 *
 *   node dist/examples/tarfs.js --archive=files.tar --socket-path=/tmp/tarfs.sock
 *   node dist/examples/tarfs.js --archive=files.tar --mountpoint=/mnt/tar      (as root: a host FUSE mount)
 *
 * Supported members: regular files ('0', NUL), directories ('5'), symlinks ('2'), hard links ('1'); a ustar
 * `prefix` is joined to the name; pax ('x', 'g') and GNU long-name ('L', 'K') records are read and applied to
 * the next member's path / link target. Uses only the package's public API.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import {
  serve, Errno, FileType, DirentType,
  type AttrTarget, type Context, type DataTarget, type DirTarget, type Entry, type FileSystem, type OpenResult,
  type StatFs, type CacheMode,
} from '../host/index.js';
import { exampleArgs } from './memfs.js';

/** One member of the archive (or a directory only implied by a path). */
export interface TarEntry {
  readonly id: number;
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly size: number;
  readonly mtime: number;
  /** Where the member's data starts in the archive. */
  readonly offset: number;
  readonly target: string;
  /** Directory: name -> node id, in archive order. */
  readonly children: Map<string, number> | null;
  parent: number;
  nlink: number;
}

const BLOCK = 512;
const ROOT = 1;

/** A NUL-terminated field as a byte string (one char per byte: names are bytes). */
function field(h: Uint8Array, at: number, len: number): string {
  let end = at;
  while (end < at + len && h[end] !== 0) end++;
  return Buffer.from(h.subarray(at, end)).toString('latin1');
}

/** An octal number field (or GNU base-256 for large values). */
function octal(h: Uint8Array, at: number, len: number): number {
  if ((h[at] & 0x80) !== 0) {
    let v = 0;
    for (let i = at + 1; i < at + len; i++) v = v * 256 + h[i];
    return v;
  }
  const s = field(h, at, len).trim();
  return s === '' ? 0 : parseInt(s, 8);
}

/** The header checksum: the sum of its bytes with the checksum field read as spaces. */
function checksumOk(h: Uint8Array): boolean {
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : h[i];
  return sum === octal(h, 148, 8);
}

/** pax extended header records "LEN key=value\n" (the keys we use: path, linkpath). */
function paxRecords(data: Buffer): Map<string, string> {
  const out = new Map<string, string>();
  let pos = 0;
  while (pos < data.length) {
    const sp = data.indexOf(0x20, pos);
    if (sp < 0) break;
    const len = parseInt(data.subarray(pos, sp).toString('latin1'), 10);
    if (!(len > 0)) break;
    const rec = data.subarray(sp + 1, pos + len - 1);
    const eq = rec.indexOf(0x3d);
    if (eq > 0) out.set(rec.subarray(0, eq).toString('latin1'), rec.subarray(eq + 1).toString('latin1'));
    pos += len;
  }
  return out;
}

export class TarFs implements FileSystem {
  private readonly nodes = new Map<number, TarEntry>();
  private nextId = ROOT + 1;

  private constructor(private readonly archive: FileHandle, private readonly archiveSize: number) {
    this.nodes.set(ROOT, this.dirNode(ROOT, 0o755, 0, 0, 0));
  }

  /** Opens `path` and indexes its members (async reads of the headers). */
  static async open(path: string): Promise<TarFs> {
    const fh = await open(path, 'r');
    try {
      const st = await fh.stat();
      const tfs = new TarFs(fh, st.size);
      await tfs.index();
      return tfs;
    } catch (e) {
      await fh.close();
      throw e;
    }
  }

  private dirNode(id: number, mode: number, uid: number, gid: number, mtime: number): TarEntry {
    return { id, mode: FileType.S_IFDIR | (mode & 0o7777), uid, gid, size: 0, mtime, offset: 0, target: '',
      children: new Map(), parent: ROOT, nlink: 2 };
  }

  private async index(): Promise<void> {
    const h = new Uint8Array(BLOCK);
    let pos = 0;
    let longName: string | null = null;
    let longLink: string | null = null;
    const links: Array<[string, string]> = [];
    while (pos + BLOCK <= this.archiveSize) {
      await this.archive.read(h, 0, BLOCK, pos);
      if (h.every((b) => b === 0)) break; // end of archive
      if (!checksumOk(h)) throw new Error(`tarfs: bad header checksum at byte ${pos}`);
      const size = octal(h, 124, 12);
      const type = String.fromCharCode(h[156] || 0x30);
      const dataAt = pos + BLOCK;
      pos = dataAt + Math.ceil(size / BLOCK) * BLOCK;
      if (type === 'x' || type === 'L' || type === 'K') {
        const data = Buffer.alloc(size);
        await this.archive.read(data, 0, size, dataAt);
        if (type === 'x') {
          const rec = paxRecords(data);
          longName = rec.get('path') ?? longName;
          longLink = rec.get('linkpath') ?? longLink;
        } else if (type === 'L') {
          longName = field(data, 0, size);
        } else {
          longLink = field(data, 0, size);
        }
        continue;
      }
      if (type === 'g') continue; // global pax header: nothing we use
      const prefix = field(h, 345, 155);
      const name = longName ?? (prefix !== '' ? `${prefix}/${field(h, 0, 100)}` : field(h, 0, 100));
      const linkname = longLink ?? field(h, 157, 100);
      longName = longLink = null;
      const parts = name.split('/').filter((p) => p !== '' && p !== '.');
      if (parts.length === 0) continue;
      const mode = octal(h, 100, 8) & 0o7777;
      const uid = octal(h, 108, 8);
      const gid = octal(h, 116, 8);
      const mtime = octal(h, 136, 12);
      if (type === '1') {
        links.push([parts.join('/'), linkname]);
        continue;
      }
      const parent = this.mkdirs(parts.slice(0, -1), mtime);
      const leaf = parts[parts.length - 1];
      const existing = parent.children!.get(leaf);
      if (type === '5') {
        if (existing === undefined) {
          const d = this.dirNode(this.nextId++, mode, uid, gid, mtime);
          d.parent = parent.id;
          this.nodes.set(d.id, d);
          parent.children!.set(leaf, d.id);
          parent.nlink++;
        }
        continue;
      }
      const fileType = type === '2' ? FileType.S_IFLNK : type === '0' || type === '7' ? FileType.S_IFREG : 0;
      if (fileType === 0) continue; // devices, fifos: not served by this example
      const n: TarEntry = { id: this.nextId++, mode: fileType | (fileType === FileType.S_IFLNK ? 0o777 : mode), uid,
        gid, size: fileType === FileType.S_IFLNK ? linkname.length : size, mtime, offset: dataAt, target: linkname,
        children: null, parent: parent.id, nlink: 1 };
      this.nodes.set(n.id, n);
      parent.children!.set(leaf, n.id); // a later member of the same name wins, as tar extracts
    }
    for (const [path, target] of links) {
      const to = this.resolve(target);
      const parts = path.split('/');
      const parent = this.mkdirs(parts.slice(0, -1), 0);
      if (to !== undefined && to.children === null) {
        parent.children!.set(parts[parts.length - 1], to.id);
        to.nlink++;
      }
    }
  }

  /** The directory at `parts` below the root, created (as implied directories) where missing. */
  private mkdirs(parts: string[], mtime: number): TarEntry {
    let d = this.nodes.get(ROOT)!;
    for (const p of parts) {
      let id = d.children!.get(p);
      if (id === undefined || this.nodes.get(id)!.children === null) {
        const n = this.dirNode(this.nextId++, 0o755, 0, 0, mtime);
        n.parent = d.id;
        this.nodes.set(n.id, n);
        d.children!.set(p, n.id);
        d.nlink++;
        id = n.id;
      }
      d = this.nodes.get(id)!;
    }
    return d;
  }

  private resolve(path: string): TarEntry | undefined {
    let d: TarEntry | undefined = this.nodes.get(ROOT)!;
    for (const p of path.split('/').filter((x) => x !== '' && x !== '.')) {
      const id: number | undefined = d?.children?.get(p);
      d = id === undefined ? undefined : this.nodes.get(id);
    }
    return d;
  }

  private fill(n: TarEntry, attr: AttrTarget): void {
    const t = { sec: n.mtime, nsec: 0 };
    attr.set({ ino: n.id, mode: n.mode, nlink: n.nlink, uid: n.uid, gid: n.gid, size: n.size, atime: t, mtime: t,
      ctime: t });
  }

  // The archive never changes: node ids live as long as the process, so forget has nothing to free.

  lookup(_ctx: Context, parent: number, name: string, attr: AttrTarget): Entry | number {
    const d = this.nodes.get(parent);
    if (d === undefined) return -Errno.ENOENT;
    if (d.children === null) return -Errno.ENOTDIR;
    const id = name === '.' ? d.id : name === '..' ? d.parent : d.children.get(name);
    if (id === undefined) return -Errno.ENOENT;
    this.fill(this.nodes.get(id)!, attr);
    return { nodeId: id, generation: 0 };
  }

  getattr(_ctx: Context, nodeId: number, _fh: number | undefined, attr: AttrTarget): number {
    const n = this.nodes.get(nodeId);
    if (n === undefined) return -Errno.ENOENT;
    this.fill(n, attr);
    return 0;
  }

  readlink(_ctx: Context, nodeId: number): string | number {
    const n = this.nodes.get(nodeId);
    if (n === undefined) return -Errno.ENOENT;
    return (n.mode & FileType.S_IFMT) === FileType.S_IFLNK ? n.target : -Errno.EINVAL;
  }

  open(_ctx: Context, nodeId: number): OpenResult | number {
    const n = this.nodes.get(nodeId);
    if (n === undefined) return -Errno.ENOENT;
    return n.children !== null ? -Errno.EISDIR : { fh: nodeId };
  }

  /** The asynchronous part: the member's bytes come from an fs.promises read of the archive. */
  async read(_ctx: Context, nodeId: number, _fh: number, offset: number, target: DataTarget): Promise<number> {
    const n = this.nodes.get(nodeId);
    if (n === undefined) return -Errno.ENOENT;
    if (offset >= n.size) return 0;
    const want = Math.min(target.size, n.size - offset);
    const buf = Buffer.alloc(want);
    const { bytesRead } = await this.archive.read(buf, 0, want, n.offset + offset);
    return target.fromBytes(buf.subarray(0, bytesRead));
  }

  release(): number {
    return 0;
  }

  opendir(_ctx: Context, nodeId: number): OpenResult | number {
    const n = this.nodes.get(nodeId);
    if (n === undefined) return -Errno.ENOENT;
    return n.children === null ? -Errno.ENOTDIR : { fh: 0 };
  }

  readdir(_ctx: Context, nodeId: number, _fh: number, cookie: bigint, target: DirTarget): number {
    const d = this.nodes.get(nodeId);
    if (d === undefined || d.children === null) return -Errno.ENOTDIR;
    const at = Number(cookie);
    if (at === 0 && !target.add(d.id, 1n, DirentType.DT_DIR, '.')) return 0;
    if (at <= 1 && !target.add(d.parent, 2n, DirentType.DT_DIR, '..')) return 0;
    let i = 2;
    for (const [name, id] of d.children) {
      i++;
      if (i <= at) continue;
      if (!target.add(id, BigInt(i), (this.nodes.get(id)!.mode & FileType.S_IFMT) >>> 12, name)) break;
    }
    return 0;
  }

  releasedir(): number {
    return 0;
  }

  statfs(): StatFs {
    const blocks = Math.ceil(this.archiveSize / BLOCK);
    return { blocks, bfree: 0, bavail: 0, files: this.nodes.size, ffree: 0, bsize: BLOCK, namelen: 255, frsize: BLOCK };
  }

  /** Closes the archive. */
  async close(): Promise<void> {
    await this.archive.close();
  }
}

async function main(): Promise<void> {
  const args = exampleArgs(process.argv.slice(2));
  const archive = args.get('archive');
  if (archive === undefined) throw new Error('--archive=FILE.tar is required');
  const tarfs = await TarFs.open(archive);
  const daemon = await serve(tarfs, {
    ...(args.has('socket-path') ? { socketPath: args.get('socket-path')! } : {}),
    ...(args.has('fd') ? { listenFd: Number(args.get('fd')) } : {}),
    ...(args.has('mountpoint') ? { mountpoint: args.get('mountpoint')! } : {}),
    cache: (args.get('cache') ?? 'auto') as CacheMode,
    readonly: true,
    logLevel: 'warn',
  });
  process.on('SIGUSR1', () => console.log(daemon.formatStats()));
  process.once('SIGINT', () => void daemon.close());
  process.once('SIGTERM', () => void daemon.close());
  console.log(`tarfs: serving ${archive}`);
  await daemon.closed;
  await tarfs.close();
}

if (process.argv[1] !== undefined && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((e: unknown) => {
    console.error(`tarfs: ${e instanceof Error ? e.message : String(e)}`);
    process.exit(1);
  });
}

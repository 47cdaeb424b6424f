/**
 * The device side of the DAX window: FUSE_SETUPMAPPING / FUSE_REMOVEMAPPING from the guest become SHMEM_MAP /
 * SHMEM_UNMAP requests (or the legacy SLAVE_FS_MAP/UNMAP) to the frontend, which maps the file into the window.
 *
 * The device keeps its own map of the window (`mappings`, sorted by window offset) to check what a hostile guest
 * asks: range inside the window, alignment to the announced map_alignment, no overflow, no overlap except the
 * upgrade of the same mapping from read to write, REMOVEMAPPING only of what is mapped, exactly. It is host-side TS
 * rather than a second instance of the core's allocator: the device sees arbitrary aligned lengths (not the
 * guest's 2 MiB ranges), the window is one per device while cores are one per queue, and every change costs a
 * vhost-user round trip anyway.
 *
 * The vhost-user rules (QEMU's): a map over an existing mapping fails, an unmap must name one mapping exactly. So
 * an upgrade is an unmap then a map, and every guest mapping is remembered as the vhost-user pieces it was made of.
 *
 * Truncation: the window must never hold file pages past the end of the file that the device knows of, because
 * touching one is SIGBUS in the frontend (the VMM). When the guest shrinks a file (SETATTR size), every mapping of
 * it that reaches past the new end (rounded up to a page) is re-made as the part still inside the file plus
 * read-only zero pages from a device memfd for the rest; when a guest request grows the file again (SETATTR, WRITE,
 * FALLOCATE, COPY_FILE_RANGE), such mappings are re-made whole. The requests go out before the reply to the
 * request that changed the size. Past EOF at SETUPMAPPING time (the guest maps 2 MiB of a smaller file) the range
 * is mapped whole, as every virtio-fs implementation does: the guest never touches pages past i_size there.
 * Limit: a host process truncating a mapped file is not seen (DESIGN.md "DAX window").
 */
import { native } from '../native-loader.js';
import { log } from '../log.js';
import type { BackendChannel } from './backend-channel.js';
import {
  LEGACY_FS_FLAG_MAP_R, LEGACY_FS_FLAG_MAP_W, VHOST_USER_FLAG_MAP_RW, VhostUserBackendRequest as BR,
  VhostUserLegacyFsRequest as LR, encodeLegacyFsMsg, encodeMMap,
} from '../vhost-user/protocol.js';

const E = native.constants.errno;

export const FUSE_SETUPMAPPING_FLAG_WRITE = 1n << 0n;
export const FUSE_SETUPMAPPING_FLAG_READ = 1n << 1n;
/** fs/fuse/dax.c: FUSE_REMOVEMAPPING_MAX_ENTRY = PAGE_SIZE / sizeof(struct fuse_removemapping_one). */
export const FUSE_REMOVEMAPPING_MAX_ENTRY = 4096 / 16;
/** log2 of the alignment we announce in fuse_init_out.map_alignment (the host page). */
export const DAX_MAP_ALIGNMENT_LOG2 = 12;
const PAGE = 1n << BigInt(DAX_MAP_ALIGNMENT_LOG2);
const OFF_MAX = (1n << 63n) - 1n;

export type DaxProtocol = 'shmem' | 'legacy';
export const DAX_PROTOCOLS: readonly DaxProtocol[] = ['shmem', 'legacy'];

/** --inode-dax: which files the guest should access through the window when mounted with -o dax=inode. */
export type InodeDaxPolicy = { kind: 'never' } | { kind: 'always' } | { kind: 'size'; minBytes: number };

export function parseInodeDax(text: string): InodeDaxPolicy | null {
  if (text === 'never') return { kind: 'never' };
  if (text === 'always') return { kind: 'always' };
  const m = /^size:(\d+)([kKmMgG]?)$/.exec(text);
  if (m === null) return null;
  const mult = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[m[2]!.toLowerCase() as '' | 'k' | 'm' | 'g'];
  return { kind: 'size', minBytes: Number(m[1]) * mult };
}

/** The files behind node ids (PassthroughFs provides them: host/dax/passthrough-files.ts). */
export interface MappingFiles {
  /**
   * A new fd (the caller closes it) on the node's regular file, opened O_RDWR for a writable mapping, else
   * O_RDONLY. With `fh`, the guest's open handle bounds the access: write on a read-only handle is -EACCES, an fh
   * of another node -EBADF. Else -errno (-ENOENT unknown node, -EACCES/-EROFS not writable here).
   */
  openForMapping(node: number, fh: number | undefined, write: boolean): number;
  /** The node's file size in bytes, or -errno. */
  sizeOf(node: number): number;
}

export interface DaxDeviceOptions {
  /** Window size in bytes (a multiple of 2 MiB): GET_SHMEM_CONFIG reports it; requests beyond it are refused. */
  windowSize: bigint;
  protocol: DaxProtocol;
  inodeDax?: InodeDaxPolicy;
}

interface Piece { moffset: bigint; len: bigint }

interface Mapping {
  moffset: bigint;
  len: bigint;
  node: number;
  foffset: bigint;
  writable: boolean;
  /** The vhost-user mappings it is made of right now (one, or file part + zero tail after a shrink). */
  pieces: Piece[];
  /** Length of the file part when a zero tail follows (after a shrink), else len. */
  fileLen: bigint;
  /** The map/unmap requests in flight for it, settling when the VMM answered (null: none). Removing or upgrading
   *  it waits for them first. */
  busy: Promise<unknown> | null;
}

/** Counters for tests and logs. */
export interface DaxStats { setups: number; upgrades: number; removes: number; refits: number; failures: number }

export class DaxDevice {
  readonly windowSize: bigint;
  readonly protocol: DaxProtocol;
  readonly inodeDax: InodeDaxPolicy;
  /** Set by INIT: the guest agreed to FUSE_HAS_INODE_DAX (per-file FUSE_ATTR_DAX). */
  inodeDaxNegotiated = false;
  readonly stats: DaxStats = { setups: 0, upgrades: 0, removes: 0, refits: 0, failures: 0 };

  private channel: BackendChannel | null = null;
  private files: MappingFiles | null = null;
  /** Sorted by moffset, non-overlapping. */
  private mappings: Mapping[] = [];
  private zeroFd = -1;

  constructor(options: DaxDeviceOptions) {
    if (options.windowSize <= 0n || options.windowSize % (2n << 20n) !== 0n) {
      throw new RangeError('the DAX window size must be a positive multiple of 2 MiB');
    }
    this.windowSize = options.windowSize;
    this.protocol = options.protocol;
    this.inodeDax = options.inodeDax ?? { kind: 'never' };
    // Made now, before any seccomp filter: memfd_create is not on the serving allow-list.
    const zfd = this.zeroFile();
    if (zfd < 0) throw new RangeError(`the DAX zero file: ${native.strerror(-zfd)}`);
  }

  /** The filesystem whose files are mapped (set once by the daemon). */
  attachFiles(files: MappingFiles): void {
    this.files = files;
  }

  /** A new backend channel from the frontend (SET_BACKEND_REQ_FD); the old one and what it mapped are gone. */
  attachChannel(channel: BackendChannel | null): void {
    if (this.channel !== null && this.channel !== channel) this.channel.close();
    this.channel = channel;
    this.mappings = [];
  }

  get connected(): boolean {
    return this.channel !== null && !this.channel.closed;
  }

  /** Mappings the device believes are in the window (tests). */
  get mappingCount(): number {
    return this.mappings.length;
  }

  /**
   * A new FUSE session (INIT), DESTROY, device reset or disconnect: the guest forgot its mappings. Asks the frontend
   * to unmap them (when it can still hear) and forgets them.
   */
  reset(): void {
    const old = this.mappings;
    this.mappings = [];
    if (this.connected) for (const m of old) for (const p of m.pieces) void this.unmapPiece(p);
  }

  /** Drops the channel (frontend gone); mappings are forgotten with it. */
  close(): void {
    this.channel?.close();
    this.channel = null;
    this.mappings = [];
    if (this.zeroFd >= 0) native.close(this.zeroFd);
    this.zeroFd = -1;
  }

  /** FUSE_ATTR_DAX for a LOOKUP/CREATE entry of a file of `mode` and `size`. */
  wantsDax(mode: number, size: number): boolean {
    if (!this.inodeDaxNegotiated) return false;
    if ((mode & native.constants.S_IFMT) !== native.constants.S_IFREG) return false;
    switch (this.inodeDax.kind) {
      case 'never': return false;
      case 'always': return true;
      case 'size': return size >= this.inodeDax.minBytes;
    }
  }

  // ---- FUSE_SETUPMAPPING ------------------------------------------------------------------------------------

  /**
   * Checks, opens the file with exactly the access asked for, and asks the frontend to map it. A number is an
   * answer now (-errno; checks failed); a promise resolves to 0 or -errno once the frontend answered.
   * `fh` = 2^64-1 (what Linux sends) means "no handle": the device opens the node itself.
   */
  setupMapping(node: number, fh: bigint, foffset: bigint, len: bigint, flags: bigint, moffset: bigint,
    readonly: boolean): number | Promise<number> {
    if (this.files === null) return -E.ENOSYS;
    if (!this.connected) return -E.ENOTCONN;
    if ((flags & ~(FUSE_SETUPMAPPING_FLAG_READ | FUSE_SETUPMAPPING_FLAG_WRITE)) !== 0n || flags === 0n) return -E.EINVAL;
    const write = (flags & FUSE_SETUPMAPPING_FLAG_WRITE) !== 0n;
    if (write && readonly) return -E.EROFS;
    const bad = this.checkRange(moffset, len) ?? ((foffset % PAGE) !== 0n || foffset > OFF_MAX - len ? -E.EINVAL : null);
    if (bad !== null) return bad;
    const i = this.indexAt(moffset);
    const same = this.mappings[i];
    if (same !== undefined && same.moffset === moffset) {
      // The one allowed overlap: the same mapping again, to upgrade it from read to write (fs/fuse/dax.c).
      if (same.len !== len || same.node !== node || same.foffset !== foffset) return -E.EEXIST;
      if (same.busy !== null) {
        return same.busy.then(() => this.setupMapping(node, fh, foffset, len, flags, moffset, readonly));
      }
      if (!write || same.writable) return 0;
    } else if (this.overlaps(i, moffset, len)) {
      return -E.EEXIST;
    }
    const handle = fh === 0xffff_ffff_ffff_ffffn ? undefined : fh <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(fh) : -1;
    if (handle === -1) return -E.EBADF;
    const fd = this.files.openForMapping(node, handle, write);
    if (fd < 0) return fd;
    if (same !== undefined && same.moffset === moffset) return this.upgrade(same, fd);
    const m: Mapping = { moffset, len, node, foffset, writable: write, pieces: [], fileLen: len, busy: null };
    this.mappings.splice(i, 0, m);
    const piece = { moffset, len };
    const done = this.mapPiece(piece, fd, foffset, write);
    native.close(fd); // the frontend got its own copy with the message
    return this.track(m, done.then((r) => {
      if (r < 0) {
        this.stats.failures++;
        this.forget(m);
        return r;
      }
      m.pieces = [piece];
      this.stats.setups++;
      return 0;
    }));
  }

  /** Marks `m` busy until `p` settles. */
  private track<T>(m: Mapping, p: Promise<T>): Promise<T> {
    const settled = p.finally(() => {
      if (m.busy === settled) m.busy = null;
    });
    m.busy = settled;
    return settled;
  }

  private upgrade(m: Mapping, fd: number): Promise<number> {
    const unmaps = m.pieces.map((p) => this.unmapPiece(p));
    const maps = this.mapParts(m, fd, true, m.fileLen);
    native.close(fd);
    return this.track(m, this.upgraded(m, unmaps, maps));
  }

  private async upgraded(m: Mapping, unmaps: Promise<number>[], maps: Array<{ piece: Piece; done: Promise<number> }>): Promise<number> {
    const results = await Promise.all([...unmaps, ...maps.map((x) => x.done)]);
    const failed = results.find((r) => r < 0);
    if (failed !== undefined) {
      // The frontend's window state is no longer what we know: forget the mapping, the guest gets an error.
      this.stats.failures++;
      this.forget(m);
      return failed;
    }
    m.pieces = maps.map((x) => x.piece);
    m.writable = true;
    this.stats.upgrades++;
    return 0;
  }

  // ---- FUSE_REMOVEMAPPING -----------------------------------------------------------------------------------

  /**
   * Every entry must name one mapping exactly, else nothing is removed (-EINVAL). Mappings with requests in flight
   * (a map, an upgrade, a re-map after a size change) are removed once those settled.
   */
  removeMapping(entries: Array<{ moffset: bigint; len: bigint }>): number | Promise<number> {
    if (this.files === null) return -E.ENOSYS;
    if (!this.connected) return -E.ENOTCONN;
    const found: Mapping[] = [];
    for (const e of entries) {
      const m = this.mappings[this.indexAt(e.moffset)];
      if (m === undefined || m.moffset !== e.moffset || m.len !== e.len || found.includes(m)) return -E.EINVAL;
      found.push(m);
    }
    const inFlight = found.filter((m) => m.busy !== null).map((m) => m.busy!);
    if (inFlight.length > 0) return Promise.allSettled(inFlight).then(() => this.removeMapping(entries));
    const pending: Promise<number>[] = [];
    for (const m of found) {
      this.forget(m);
      for (const p of m.pieces) pending.push(this.unmapPiece(p));
    }
    this.stats.removes += found.length;
    return Promise.all(pending).then((rs) => rs.find((r) => r < 0) ?? 0);
  }

  // ---- size changes made by the guest -------------------------------------------------------------------------

  /** After a guest request that may have changed the node's size: re-makes its mappings around the new end. */
  sizeChanged(node: number): void {
    if (this.files === null || !this.connected) return;
    let size = -1;
    for (const m of this.mappings) {
      if (m.node !== node) continue;
      if (m.busy !== null) {
        void m.busy.then(() => this.sizeChanged(node)); // look again once its requests settled
        continue;
      }
      if (size < 0) {
        size = this.files.sizeOf(node);
        if (size < 0) return;
      }
      const end = (BigInt(size) + PAGE - 1n) / PAGE * PAGE;
      const fileLen = end <= m.foffset ? 0n : end - m.foffset >= m.len ? m.len : end - m.foffset;
      // Shrunk below the mapping's end, or grown back over a zero tail: re-make it.
      if (fileLen === m.fileLen) continue;
      if (fileLen < m.len || m.fileLen < m.len) void this.refit(m, fileLen);
    }
  }

  private async refit(m: Mapping, fileLen: bigint): Promise<void> {
    const fd = this.files!.openForMapping(m.node, undefined, m.writable);
    if (fd < 0) {
      log.warn(`dax: cannot reopen node ${m.node} to re-map it after a size change (${native.strerror(-fd)})`);
      return;
    }
    const unmaps = m.pieces.map((p) => this.unmapPiece(p));
    const maps = this.mapParts(m, fd, m.writable, fileLen);
    native.close(fd);
    const results = await this.track(m, Promise.all([...unmaps, ...maps.map((x) => x.done)]));
    m.pieces = maps.map((x) => x.piece);
    m.fileLen = fileLen;
    this.stats.refits++;
    if (results.some((r) => r < 0)) {
      this.stats.failures++;
      log.warn(`dax: re-mapping node ${m.node} at window offset 0x${m.moffset.toString(16)} failed`);
    }
  }

  /** The file part [0, fileLen) and, if shorter than the mapping, the zero tail (read-only). Sent at once. */
  private mapParts(m: Mapping, fd: number, write: boolean, fileLen: bigint): Array<{ piece: Piece; done: Promise<number> }> {
    const out: Array<{ piece: Piece; done: Promise<number> }> = [];
    if (fileLen > 0n) {
      const piece = { moffset: m.moffset, len: fileLen };
      out.push({ piece, done: this.mapPiece(piece, fd, m.foffset, write) });
    }
    if (fileLen < m.len) {
      const piece = { moffset: m.moffset + fileLen, len: m.len - fileLen };
      const zfd = this.zeroFile();
      out.push({ piece, done: zfd < 0 ? Promise.resolve(zfd) : this.mapPiece(piece, zfd, 0n, false) });
    }
    return out;
  }

  /** A sparse memfd as large as the window: the zero pages behind a shrunk file's tail. */
  private zeroFile(): number {
    if (this.zeroFd >= 0) return this.zeroFd;
    const fd = native.memfdCreate('virtiofsd-ts-dax-zero', 0);
    if (fd < 0) return fd;
    const rc = native.ftruncate(fd, Number(this.windowSize));
    if (rc < 0) {
      native.close(fd);
      return rc;
    }
    this.zeroFd = fd;
    return fd;
  }

  // ---- the window map ---------------------------------------------------------------------------------------

  private checkRange(moffset: bigint, len: bigint): number | null {
    if (len === 0n || moffset % PAGE !== 0n || len % PAGE !== 0n) return -E.EINVAL;
    if (moffset >= this.windowSize || len > this.windowSize - moffset) return -E.EINVAL;
    return null;
  }

  /** Index of the first mapping whose end is past `moffset` (where a mapping at moffset is or would go). */
  private indexAt(moffset: bigint): number {
    let lo = 0;
    let hi = this.mappings.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const m = this.mappings[mid]!;
      if (m.moffset + m.len <= moffset) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  private overlaps(i: number, moffset: bigint, len: bigint): boolean {
    const next = this.mappings[i];
    return next !== undefined && next.moffset < moffset + len;
  }

  private forget(m: Mapping): void {
    const i = this.mappings.indexOf(m);
    if (i >= 0) this.mappings.splice(i, 1);
  }

  // ---- the backend channel, in either dialect -----------------------------------------------------------------

  private mapPiece(p: Piece, fd: number, fdOffset: bigint, write: boolean): Promise<number> {
    const ch = this.channel;
    if (ch === null) return Promise.resolve(-E.ENOTCONN);
    if (this.protocol === 'shmem') {
      const buf = new Uint8Array(40);
      encodeMMap(new DataView(buf.buffer), 0, { shmid: 0, fdOffset, shmOffset: p.moffset, len: p.len,
        flags: write ? VHOST_USER_FLAG_MAP_RW : 0n });
      return ch.request(BR.SHMEM_MAP, buf, [fd]);
    }
    const buf = new Uint8Array(256);
    encodeLegacyFsMsg(new DataView(buf.buffer), 0, [{ fdOffset, cOffset: p.moffset, len: p.len,
      flags: LEGACY_FS_FLAG_MAP_R | (write ? LEGACY_FS_FLAG_MAP_W : 0n) }]);
    return ch.request(LR.SLAVE_FS_MAP, buf, [fd]);
  }

  private unmapPiece(p: Piece): Promise<number> {
    const ch = this.channel;
    if (ch === null) return Promise.resolve(-E.ENOTCONN);
    if (this.protocol === 'shmem') {
      const buf = new Uint8Array(40);
      encodeMMap(new DataView(buf.buffer), 0, { shmid: 0, fdOffset: 0n, shmOffset: p.moffset, len: p.len, flags: 0n });
      return ch.request(BR.SHMEM_UNMAP, buf);
    }
    const buf = new Uint8Array(256);
    encodeLegacyFsMsg(new DataView(buf.buffer), 0, [{ fdOffset: 0n, cOffset: p.moffset, len: p.len, flags: 0n }]);
    return ch.request(LR.SLAVE_FS_UNMAP, buf);
  }
}

// ---- how the FUSE dispatch finds the device of a session ----------------------------------------------------------

const devices = new WeakMap<object, DaxDevice>();

/** Makes `dax` the window of the FUSE session `session` (a FuseServer): SETUPMAPPING/REMOVEMAPPING then work. */
export function attachDax(session: object, dax: DaxDevice): void {
  devices.set(session, dax);
}

export function daxOf(session: object): DaxDevice | undefined {
  return devices.get(session);
}

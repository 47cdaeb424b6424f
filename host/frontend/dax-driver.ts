/**
 * The guest driver's half of DAX, as Linux's fs/fuse/dax.c does it, over our FuseClient and DaxWindow: file data
 * is read and written through 2 MiB ranges of the window that FUSE_SETUPMAPPING filled, with the core's range
 * allocator (host/dax/dax-ranges.ts) deciding which range holds what, which to upgrade from read to write and which
 * to reclaim (least recently used, FUSE_REMOVEMAPPING) when free ranges run below the driver's threshold.
 *
 * As the driver: reads stop at the file size the caller passes (i_size; pages past it are never touched), writes
 * that extend the file go through FUSE WRITE (fuse_dax_direct_write), SETUPMAPPING asks for READ, plus WRITE for a
 * write, with fh = -1; a read-only range a write needs is upgraded by a second SETUPMAPPING at the same offset.
 */
import { Core } from '../core.js';
import { VirtiofsdError } from '../errors.js';
import * as P from '../fuse/protocol.js';
import { DaxRanges, FUSE_DAX_RECLAIM_CHUNK, FUSE_DAX_SHIFT, FUSE_DAX_SZ } from '../dax/dax-ranges.js';
import { FUSE_SETUPMAPPING_FLAG_READ, FUSE_SETUPMAPPING_FLAG_WRITE } from '../dax/dax-device.js';
import type { FuseClient } from './fuse-client.js';
import type { DaxWindow } from './dax-window.js';

export interface DaxDriverStats {
  hits: number; misses: number; upgrades: number; reclaims: number; directWrites: number;
}

/** A pinned piece of a file inside the window (the mmap view); release() lets the range be reclaimed again. */
export interface DaxView {
  readonly bytes: Uint8Array;
  release(): void;
}

const NOFH = 0xffff_ffff_ffff_ffffn;

export class DaxDriver {
  readonly stats: DaxDriverStats = { hits: 0, misses: 0, upgrades: 0, reclaims: 0, directWrites: 0 };
  private readonly inflight = new Map<string, Promise<number>>();
  private reclaiming: Promise<void> | null = null;
  /** Ranges whose REMOVEMAPPING is in flight: still busy in the allocator (not reused), but no longer usable. */
  private readonly removing = new Map<number, Promise<unknown>>();
  private seenCompleted = -1;

  private constructor(readonly client: FuseClient, readonly window: DaxWindow, readonly ranges: DaxRanges) {}

  /** A driver over the whole window: window.size / 2 MiB ranges, all free. */
  static async create(client: FuseClient, window: DaxWindow, options: { wasmPath?: string } = {}): Promise<DaxDriver> {
    const core = await Core.create(options.wasmPath !== undefined ? { wasmPath: options.wasmPath } : {});
    const ranges = new DaxRanges(core);
    const n = Math.floor(window.size / FUSE_DAX_SZ);
    const rc = ranges.init(n);
    if (rc < 0) throw new RangeError(`a DAX window of ${n} ranges is not supported (${rc})`);
    return new DaxDriver(client, window, ranges);
  }

  /** Reads [offset, offset+size) of the file, stopping at `fileSize` (the caller's i_size). */
  async read(node: number, offset: number, size: number, fileSize: number, dst?: Uint8Array): Promise<Uint8Array> {
    const end = Math.min(offset + size, fileSize);
    const out = dst ?? new Uint8Array(Math.max(0, end - offset));
    let pos = offset;
    while (pos < end) {
      const idx = Math.floor(pos / FUSE_DAX_SZ);
      const r = this.hit(node, idx, false) ?? await this.rangeFor(node, idx, false);
      const inRange = pos - idx * FUSE_DAX_SZ;
      const n = Math.min(end - pos, FUSE_DAX_SZ - inRange);
      const at = r * FUSE_DAX_SZ + inRange;
      this.pumpIfReplied();
      out.set(new Uint8Array(this.window.buffer, at, n), pos - offset);
      pos += n;
    }
    this.kickReclaim();
    return out.subarray(0, Math.max(0, end - offset));
  }

  /**
   * Writes `data` at `offset`. Inside the file it goes through writable ranges of the window; a write reaching
   * past `fileSize` goes whole through FUSE WRITE with `fh` (the driver's extending write). Returns bytes written.
   */
  async write(node: number, fh: number, offset: number, data: Uint8Array, fileSize: number): Promise<number> {
    if (offset + data.length > fileSize) {
      this.stats.directWrites++;
      let done = 0;
      while (done < data.length) {
        const n = await this.client.write(node, fh, offset + done, data.subarray(done, done + this.client.maxPayload));
        if (n <= 0) break;
        done += n;
      }
      return done;
    }
    let pos = offset;
    const end = offset + data.length;
    while (pos < end) {
      const idx = Math.floor(pos / FUSE_DAX_SZ);
      const r = this.hit(node, idx, true) ?? await this.rangeFor(node, idx, true);
      const inRange = pos - idx * FUSE_DAX_SZ;
      const n = Math.min(end - pos, FUSE_DAX_SZ - inRange);
      this.pumpIfReplied();
      new Uint8Array(this.window.buffer, r * FUSE_DAX_SZ + inRange, n).set(data.subarray(pos - offset, pos - offset + n));
      pos += n;
    }
    this.kickReclaim();
    return data.length;
  }

  /**
   * A view of [offset, offset+length) of the file inside one 2 MiB range (an mmap of it), clamped to `fileSize`
   * rounded up to a page as mmap does; pinned against reclaim until release().
   */
  async view(node: number, offset: number, length: number, fileSize: number, write = false): Promise<DaxView> {
    const idx = Math.floor(offset / FUSE_DAX_SZ);
    const inRange = offset - idx * FUSE_DAX_SZ;
    const limit = Math.min(FUSE_DAX_SZ - inRange, Math.ceil(fileSize / 4096) * 4096 - offset);
    if (length > limit || length <= 0) {
      throw new VirtiofsdError('ERR_DAX_VIEW', `a view of ${length} bytes at ${offset} crosses a range or the end of the file`);
    }
    const r = await this.rangeFor(node, idx, write);
    this.ranges.pin(r);
    this.pumpIfReplied();
    let released = false;
    return {
      bytes: new Uint8Array(this.window.buffer, r * FUSE_DAX_SZ + inRange, length),
      release: () => {
        if (released) return;
        released = true;
        this.ranges.unpin(r);
      },
    };
  }

  /** Drops every range of a file (fuse_dax_inode_cleanup: the inode goes away). */
  async forgetNode(node: number): Promise<void> {
    const rs = this.ranges.rangesOf(node);
    if (rs.length > 0) await this.removeRanges(rs);
  }

  /** Frees ranges until the driver's threshold is met again (at most FUSE_DAX_RECLAIM_CHUNK per call). */
  async reclaim(): Promise<void> {
    const victims: number[] = [];
    while (victims.length < FUSE_DAX_RECLAIM_CHUNK) {
      const v = this.ranges.reclaimVictim();
      if (v < 0 || victims.includes(v) || this.removing.has(v)) break;
      victims.push(v);
      this.ranges.pin(v); // not picked twice below
      if (victims.length >= this.ranges.busyCount) break;
    }
    for (const v of victims) this.ranges.unpin(v);
    if (victims.length > 0) await this.removeRanges(victims);
  }

  // ---- ranges -----------------------------------------------------------------------------------------------

  /** The fast path: a usable range already holding (node, idx), found without a promise; else undefined. */
  private hit(node: number, idx: number, write: boolean): number | undefined {
    if (this.inflight.size > 0 || this.removing.size > 0) return undefined; // the careful path sorts those out
    const r = this.ranges.lookup(node, idx);
    if (r < 0 || (write && this.ranges.isWritable(r) !== 1)) return undefined;
    this.stats.hits++;
    return r;
  }

  /**
   * Window requests from the device (re-mapping after a size change) are sent before the reply of the request
   * that caused them: once a reply came in since the last look, handle what waits on the channel before touching
   * the window. Pure hits cost no syscall.
   */
  private pumpIfReplied(): void {
    if (this.client.completed === this.seenCompleted) return;
    this.seenCompleted = this.client.completed;
    this.window.pump();
  }

  /** The range holding (node, idx), set up (and upgraded to writable) if needed. */
  private async rangeFor(node: number, idx: number, write: boolean): Promise<number> {
    const key = `${node}:${idx}`;
    for (;;) {
      const pending = this.inflight.get(key);
      if (pending !== undefined) {
        await pending.catch(() => undefined);
        continue;
      }
      const r = this.ranges.lookup(node, idx);
      const gone = r >= 0 ? this.removing.get(r) : undefined;
      if (gone !== undefined) {
        await gone.catch(() => undefined);
        continue;
      }
      if (r >= 0 && (!write || this.ranges.isWritable(r) === 1)) {
        this.stats.hits++;
        return r;
      }
      const p = r >= 0 ? this.upgrade(node, idx, r) : this.setup(node, idx, write);
      this.inflight.set(key, p);
      try {
        return await p;
      } finally {
        this.inflight.delete(key);
      }
    }
  }

  private async setup(node: number, idx: number, write: boolean): Promise<number> {
    this.stats.misses++;
    let r = this.ranges.map(node, idx, write);
    while (r === -28 /* ENOSPC */) {
      await this.reclaimNow();
      r = this.ranges.map(node, idx, write);
    }
    if (r < 0) throw new VirtiofsdError('ERR_DAX_RANGE', `no range for node ${node} index ${idx} (${r})`);
    try {
      await this.setupMapping(node, idx, r, write);
    } catch (err) {
      this.ranges.unmap(r);
      throw err;
    }
    return r;
  }

  private async upgrade(node: number, idx: number, r: number): Promise<number> {
    this.stats.upgrades++;
    this.ranges.pin(r); // not reclaimed while its upgrade is in flight
    try {
      await this.setupMapping(node, idx, r, true);
    } finally {
      this.ranges.unpin(r);
    }
    this.ranges.setWritable(r);
    return r;
  }

  private setupMapping(node: number, idx: number, r: number, write: boolean): Promise<void> {
    const args = new Uint8Array(P.SETUPMAPPING_IN.SIZE);
    const v = new DataView(args.buffer);
    const M = P.SETUPMAPPING_IN;
    v.setBigUint64(M.fh, NOFH, true);
    v.setBigUint64(M.foffset, BigInt(idx) << BigInt(FUSE_DAX_SHIFT), true);
    v.setBigUint64(M.len, BigInt(FUSE_DAX_SZ), true);
    v.setBigUint64(M.flags, FUSE_SETUPMAPPING_FLAG_READ | (write ? FUSE_SETUPMAPPING_FLAG_WRITE : 0n), true);
    v.setBigUint64(M.moffset, BigInt(r) * BigInt(FUSE_DAX_SZ), true);
    return this.client.request(P.FUSE_SETUPMAPPING, node, args);
  }

  /** One REMOVEMAPPING per node for the given ranges (the driver batches per inode), then they are free. */
  private async removeRanges(rs: number[]): Promise<void> {
    const byNode = new Map<number, number[]>();
    for (const r of rs) {
      const n = this.ranges.node(r);
      byNode.set(n, [...(byNode.get(n) ?? []), r]);
    }
    for (const [node, list] of byNode) {
      const args = new Uint8Array(P.REMOVEMAPPING_IN.SIZE + list.length * P.REMOVEMAPPING_ONE.SIZE);
      const v = new DataView(args.buffer);
      v.setUint32(P.REMOVEMAPPING_IN.count, list.length, true);
      list.forEach((r, i) => {
        const at = P.REMOVEMAPPING_IN.SIZE + i * P.REMOVEMAPPING_ONE.SIZE;
        v.setBigUint64(at + P.REMOVEMAPPING_ONE.moffset, BigInt(r) * BigInt(FUSE_DAX_SZ), true);
        v.setBigUint64(at + P.REMOVEMAPPING_ONE.len, BigInt(FUSE_DAX_SZ), true);
      });
      const done = this.client.request(P.FUSE_REMOVEMAPPING, node, args);
      for (const r of list) this.removing.set(r, done);
      try {
        await done;
      } finally {
        // As the driver: the ranges are free again even when the device refused (dmap_removemapping_list warns).
        for (const r of list) {
          this.removing.delete(r);
          this.ranges.unmap(r);
        }
        this.stats.reclaims += list.length;
      }
    }
  }

  private async reclaimNow(): Promise<void> {
    if (this.reclaiming === null) this.reclaiming = this.reclaim().finally(() => { this.reclaiming = null; });
    await this.reclaiming;
    if (this.ranges.freeCount === 0 && this.ranges.reclaimVictim() < 0) {
      throw new VirtiofsdError('ERR_DAX_RANGE', 'every range of the window is pinned');
    }
  }

  /** The driver's background worker: below the threshold, free a chunk soon (not on this request's path). */
  private kickReclaim(): void {
    if (this.reclaiming !== null || !this.ranges.needsReclaim()) return;
    this.reclaiming = new Promise<void>((resolve) => setImmediate(resolve)).then(() => this.reclaim())
      .catch(() => undefined).finally(() => { this.reclaiming = null; });
  }
}

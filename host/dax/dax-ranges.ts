/**
 * DaxRanges: the typed face of the core's DAX range allocator (assembly/dax-ranges.ts) — which 2 MiB range of the
 * window holds which piece of which file, the free list, the LRU busy list and the reclaim threshold of Linux's
 * fs/fuse/dax.c. Used by the frontend in the guest driver's role (host/frontend/dax-window.ts). The core instance
 * is its own (Core.create()): the allocator's state lives in that instance's static data.
 */
import { VirtiofsdError } from '../errors.js';
import type { Core, CoreExports } from '../core.js';

export const FUSE_DAX_SHIFT = 21;
export const FUSE_DAX_SZ = 1 << FUSE_DAX_SHIFT;
export const FUSE_DAX_RECLAIM_CHUNK = 10;
export const DAX_MAX_RANGES = 8192;

export class DaxRanges {
  private readonly e: CoreExports;

  constructor(core: Core) {
    this.e = core.rawExports;
  }

  private call<T>(f: () => T): T {
    try {
      return f();
    } catch (err) {
      if (err instanceof WebAssembly.RuntimeError) {
        throw new VirtiofsdError('ERR_CORE_TRAP', `dax ranges: core trapped: ${err.message}`, { cause: err });
      }
      throw err;
    }
  }

  /** Forgets every mapping; n ranges of 2 MiB, all free. 0 or -EINVAL. */
  init(nRanges: number): number {
    return this.call(() => this.e.daxInit(nRanges));
  }

  get rangeCount(): number {
    return this.e.daxRangeCount() >>> 0;
  }
  get freeCount(): number {
    return this.e.daxFreeCount() >>> 0;
  }
  get busyCount(): number {
    return this.e.daxBusyCount() >>> 0;
  }

  /** The range holding (node, fileIdx) — made most recently used — or -1. */
  lookup(node: number, fileIdx: number): number {
    return this.call(() => this.e.daxLookup(node, fileIdx));
  }

  /** A free range made busy for (node, fileIdx): its index, -ENOSPC (reclaim first), -EEXIST or -EINVAL. */
  map(node: number, fileIdx: number, writable: boolean): number {
    return this.call(() => this.e.daxMap(node, fileIdx, writable ? 1 : 0));
  }

  /** Busy -> free. 0, -EINVAL (not busy) or -EBUSY (pinned). */
  unmap(range: number): number {
    return this.call(() => this.e.daxUnmap(range));
  }

  /** The least recently used unpinned busy range, or -1. */
  reclaimVictim(): number {
    return this.call(() => this.e.daxReclaimVictim());
  }

  /** Free ranges are below the driver's FUSE_DAX_RECLAIM_THRESHOLD (20 %, at least one). */
  needsReclaim(): boolean {
    return this.call(() => this.e.daxNeedsReclaim()) !== 0;
  }

  setWritable(range: number): number {
    return this.call(() => this.e.daxSetWritable(range));
  }

  /** 1, 0, or -EINVAL when the range is not busy. */
  isWritable(range: number): number {
    return this.call(() => this.e.daxIsWritable(range));
  }

  node(range: number): number {
    return this.call(() => this.e.daxNode(range));
  }

  fileIdx(range: number): number {
    return this.call(() => this.e.daxFileIdx(range));
  }

  pin(range: number): number {
    return this.call(() => this.e.daxPin(range));
  }

  unpin(range: number): number {
    return this.call(() => this.e.daxUnpin(range));
  }

  /** Busy ranges of `node` in window order. */
  rangesOf(node: number): number[] {
    const out: number[] = [];
    for (let r = this.e.daxNextOfNode(node, -1); r >= 0; r = this.e.daxNextOfNode(node, r)) out.push(r);
    return out;
  }
}

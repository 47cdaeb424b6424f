/**
 * Open files and directories of the guest: fh -> an fd opened for I/O. Handles are numbered from 1 and never
 * reused (so a stale fh from the guest can never reach another file).
 */
import { native } from '../native-loader.js';

export interface Handle {
  readonly fh: number;
  /** The node the handle was opened on. */
  readonly nodeId: number;
  readonly fd: number;
  readonly dir: boolean;
  /**
   * Directories: the cookie getdents64 will continue from (the fd's position), or null when unknown (a batch was
   * only partly used); a READDIR at another cookie seeks first.
   */
  dirPos: bigint | null;
}

export class HandleTable {
  private readonly handles = new Map<number, Handle>();
  private nextFh = 1;

  get size(): number {
    return this.handles.size;
  }

  /** Takes ownership of `fd`. */
  add(nodeId: number, fd: number, dir: boolean): Handle {
    const h: Handle = { fh: this.nextFh++, nodeId, fd, dir, dirPos: dir ? 0n : null };
    this.handles.set(h.fh, h);
    return h;
  }

  get(fh: number): Handle | undefined {
    return this.handles.get(fh);
  }

  /** A handle of the given kind belonging to `nodeId`, or undefined (a guest passing someone else's fh). */
  lookup(fh: number, nodeId: number, dir: boolean): Handle | undefined {
    const h = this.handles.get(fh);
    return h !== undefined && h.dir === dir && h.nodeId === nodeId ? h : undefined;
  }

  /** Removes and closes. Returns false for an unknown fh. */
  remove(fh: number): boolean {
    const h = this.handles.get(fh);
    if (h === undefined) return false;
    this.handles.delete(fh);
    native.close(h.fd);
    return true;
  }

  clear(): void {
    for (const h of this.handles.values()) native.close(h.fd);
    this.handles.clear();
  }
}

/**
 * Open files and directories of the guest: fh -> an fd opened for I/O. Handles are numbered from 1 and never
 * reused (so a stale fh from the guest can never reach another file).
 */
import { native } from '../native-loader.js';
import { NumberMap } from './number-map.js';
import type { SharedFiles } from './shared-files.js';

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
  /** Jobs on pool threads using `fd` (host/passthrough/blocking-io.ts): its close waits for them. */
  holds: number;
  /** Released (or cleared) while held: closed when the last hold goes. */
  closing: boolean;
}

export class HandleTable {
  private readonly handles = new NumberMap<Handle>();
  private nextFh = 1;
  /** Queue threads' view of the open files (published on add, withdrawn on remove), or null without threads. */
  private shared: SharedFiles | null = null;

  get size(): number {
    return this.handles.size;
  }

  /** From now on, file handles are published to queue threads (host/passthrough/shared-files.ts). */
  shareWith(shared: SharedFiles): void {
    this.shared = shared;
    this.handles.forEach((h) => { if (!h.dir) shared.publish(h.fh, h.nodeId, h.fd); });
  }

  /** Takes ownership of `fd`. */
  add(nodeId: number, fd: number, dir: boolean): Handle {
    const h: Handle = { fh: this.nextFh++, nodeId, fd, dir, dirPos: dir ? 0n : null, holds: 0, closing: false };
    this.handles.set(h.fh, h);
    if (!dir) this.shared?.publish(h.fh, nodeId, fd);
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
    this.closeWhenFree(h);
    return true;
  }

  /** Gives back the memory the table kept from its largest size. */
  compact(): void {
    this.handles.compact();
  }

  clear(): void {
    this.handles.forEach((h) => this.closeWhenFree(h));
    this.handles.clear();
  }

  /** Keeps `h.fd` open for a job running off the JS thread, even if the handle is released meanwhile. */
  static hold(h: Handle): void {
    h.holds++;
  }

  /** The job is done with `h.fd`: closes it if the handle was released meanwhile. */
  static unhold(h: Handle): void {
    if (--h.holds === 0 && h.closing) {
      h.closing = false;
      native.close(h.fd);
    }
  }

  /**
   * A removed handle's fd: closed now, by the last unhold, or once no queue thread is in a syscall on it (never
   * under a running job or a thread's preadv, never twice).
   */
  private closeWhenFree(h: Handle): void {
    const shared = this.shared;
    if (shared !== null && !h.dir && !shared.withdraw(h.fh)) {
      h.holds++; // the threads' use counts as one more hold
      shared.whenFree(h.fh, () => HandleTable.unhold(h));
    }
    if (h.holds > 0) h.closing = true;
    else native.close(h.fd);
  }
}

/**
 * Open files that queue threads may read and write without asking the main thread: fh -> (node id, fd) in a
 * SharedArrayBuffer. The main thread's HandleTable publishes a file handle when it opens one and withdraws it
 * at RELEASE; a queue thread (host/virtio/queue-thread-worker.ts) takes a slot for the length of one preadv or
 * pwritev. fds are process-wide, so the thread uses the very fd the main thread opened.
 *
 *   Int32Array:  [ HEADER_INTS | slot 0: fh, nodeId, fd, readers | slot 1 | ... ]   slot = fh & (SLOTS - 1)
 *
 * A slot holds one handle; a handle whose slot is taken, or whose fh or node id does not fit an int32, is not
 * published, and the thread forwards its requests to the main thread like any other (correct, one hop slower).
 *
 * Closing: the fd of a withdrawn handle must not be closed (and its number reused) while a thread is in a
 * syscall on it. The reader counts itself in `readers` before it reads fh and fd and checks fh again after;
 * `withdraw` clears fh and fd first and then reads `readers`. Atomics are sequentially consistent, so either the
 * reader sees the slot cleared, or the main thread sees the reader and closes the fd only once the count is 0
 * (`whenFree`). Nothing else is shared: the handle's other state stays on the main thread.
 */
const SLOTS = 4096;
const FIELDS = 4;
const FH = 0;
const NODE = 1;
const FD = 2;
const READERS = 3;
/** Header: the shared flags below. */
const HEADER_INTS = 4;
const FLAGS = 0;
/** The FUSE session is initialized (else the thread forwards, and the main thread answers EIO). */
export const SHARED_LIVE = 1;
/** WRITE may be served on the thread (not read-only, no DAX window to tell of a size change). */
export const SHARED_WRITES = 2;
/** The thread tries RWF_NOWAIT and forwards what would block (the main thread has a --thread-pool-size pool). */
export const SHARED_NOWAIT = 4;
const INT32_MAX = 0x7fff_ffff;
/** How often a withdrawn handle's close looks again for readers (they are in one preadv/pwritev). */
const FREE_POLL_MS = 1;

export class SharedFiles {
  readonly buffer: SharedArrayBuffer;
  private readonly a: Int32Array;
  /** Main thread: slots whose withdrawn handle waits for its readers (not reused until closed). */
  private readonly draining = new Set<number>();

  constructor(buffer?: SharedArrayBuffer) {
    this.buffer = buffer ?? new SharedArrayBuffer((HEADER_INTS + SLOTS * FIELDS) * 4);
    this.a = new Int32Array(this.buffer);
  }

  // ---- main thread --------------------------------------------------------------------------------------------

  setFlag(flag: number, on: boolean): void {
    if (on) Atomics.or(this.a, FLAGS, flag);
    else Atomics.and(this.a, FLAGS, ~flag);
  }

  /** Makes `fh` usable by the threads; false when it cannot be (the threads forward its requests). */
  publish(fh: number, nodeId: number, fd: number): boolean {
    if (fh <= 0 || fh > INT32_MAX || nodeId <= 0 || nodeId > INT32_MAX) return false;
    const slot = fh & (SLOTS - 1);
    const i = HEADER_INTS + slot * FIELDS;
    if (this.draining.has(slot) || Atomics.load(this.a, i + FH) !== 0) return false;
    Atomics.store(this.a, i + NODE, nodeId);
    Atomics.store(this.a, i + FD, fd);
    Atomics.store(this.a, i + FH, fh); // last: a reader that sees this fh sees its fd
    return true;
  }

  /**
   * Withdraws `fh` (no-op when it was not published). True when no thread is using it now, so its fd may be
   * closed at once; false: close it from `whenFree`.
   */
  withdraw(fh: number): boolean {
    if (fh <= 0 || fh > INT32_MAX) return true;
    const i = HEADER_INTS + (fh & (SLOTS - 1)) * FIELDS;
    if (Atomics.load(this.a, i + FH) !== fh) return true;
    Atomics.store(this.a, i + FH, 0);
    Atomics.store(this.a, i + FD, -1);
    return Atomics.load(this.a, i + READERS) === 0;
  }

  /** Runs `close` once no thread is in a syscall on the fd `fh` had (after a withdraw that returned false). */
  whenFree(fh: number, close: () => void): void {
    const slot = fh & (SLOTS - 1);
    this.draining.add(slot);
    const poll = (): void => {
      if (Atomics.load(this.a, HEADER_INTS + slot * FIELDS + READERS) !== 0) {
        setTimeout(poll, FREE_POLL_MS);
        return;
      }
      this.draining.delete(slot);
      close();
    };
    poll();
  }

  // ---- queue threads ------------------------------------------------------------------------------------------

  flag(flag: number): boolean {
    return (Atomics.load(this.a, FLAGS) & flag) !== 0;
  }

  /**
   * The fd of published handle `fh` of node `nodeId`, held until `release(fh)`; -1 when it is not published
   * here (or belongs to another node): forward the request, and do not call release.
   */
  acquire(fh: number, nodeId: number): number {
    if (fh <= 0 || fh > INT32_MAX) return -1;
    const i = HEADER_INTS + (fh & (SLOTS - 1)) * FIELDS;
    Atomics.add(this.a, i + READERS, 1);
    if (Atomics.load(this.a, i + FH) === fh) {
      const fd = Atomics.load(this.a, i + FD);
      const node = Atomics.load(this.a, i + NODE);
      // fh again: the fd read belongs to it if the handle was still published after the read.
      if (fd >= 0 && node === nodeId && Atomics.load(this.a, i + FH) === fh) return fd;
    }
    Atomics.sub(this.a, i + READERS, 1);
    return -1;
  }

  /** Done with the fd `acquire(fh)` gave. */
  release(fh: number): void {
    Atomics.sub(this.a, HEADER_INTS + (fh & (SLOTS - 1)) * FIELDS + READERS, 1);
  }
}

/**
 * BlockingIo: PassthroughFs's data I/O that may sleep, served on the native thread pool (bindings/io-pool.c) so
 * the request queue keeps moving while it waits (--thread-pool-size=N).
 *
 *   READ     preadv2(RWF_NOWAIT) inline, straight into the guest's buffers: a page-cache hit is answered at
 *            once, as without a pool. Only what would block (-EAGAIN, or a short read before EOF) goes to the
 *            pool, into a private buffer copied to the guest when the request is answered.
 *   WRITE    pwritev2(RWF_NOWAIT) inline from the guest's payload; the rest (-EAGAIN, -EOPNOTSUPP where the
 *            filesystem cannot tell, a short write) goes to the pool from a copy of the payload.
 *            Measured on Linux 6.18: ext4 answers NOWAIT reads but refuses buffered NOWAIT writes (-EOPNOTSUPP),
 *            tmpfs and FUSE refuse both. Where it is refused, a local filesystem (ext4, xfs, btrfs, tmpfs, ...)
 *            keeps the call inline, a pooled 4 KiB WRITE being several times slower; anything else (FUSE, NFS,
 *            CIFS, 9p, ...: what may wait on a remote) takes the pool. Decided once per handle.
 *   FSYNC, FDATASYNC, FSYNCDIR, FALLOCATE, COPY_FILE_RANGE: always on the pool.
 *
 * A pooled call returns a Promise: the FUSE server parks the request and answers it when the job is reaped (the
 * FileSystem async mechanism, host/fuse/server.ts). Completions come back through the pool's eventfd, watched by an
 * FdPoller (libuv on Node, the poller thread on Bun/Deno): no polling.
 *
 * Pool jobs never touch guest memory: they read into and write from buffers of their own. So SET_MEM_TABLE, a
 * ring reset or a disconnect while jobs run needs nothing from them (the server drops or takes back the parked
 * request; the job finishes into its own buffer). The handles a job uses are held (HandleTable.hold): a RELEASE,
 * or the session's end, while it runs closes the fd only when the job is done, never under it.
 */
import { native } from '../native-loader.js';
import type { IoPoolHandle } from '../native.js';
import { BufferData, type DataSource, type DataTarget } from '../fuse/filesystem.js';
import { FdPoller } from '../vhost-user/fd-poller.js';
import { SystemError } from '../errors.js';
import { log } from '../log.js';
import { HandleTable, type Handle } from './handle-table.js';

const C = native.constants;
const E = C.errno;

/** Most threads io-pool.c starts (a larger --thread-pool-size is clamped to it). */
export const MAX_POOL_THREADS = C.VFS_POOL_MAX_THREADS;

interface Job {
  /** Queues the job (0, or -errno; -EAGAIN: every native slot is busy, retried when one is reaped). */
  readonly submit: (pool: IoPoolHandle, tag: number) => number;
  /** Turns the job's result (bytes, 0 or -errno) into the method's. */
  readonly finish: (result: number) => number;
  readonly resolve: (r: number) => void;
  readonly holds: readonly Handle[];
}

export class BlockingIo {
  private pool: IoPoolHandle | null;
  private readonly poller: FdPoller;
  private readonly jobs = new Map<number, Job>();
  /** Tags of jobs waiting for a free native slot, in order. */
  private readonly backlog: number[] = [];
  private nextTag = 1;
  private readonly reaped = new Float64Array(64);
  private readonly statxBuf = new ArrayBuffer(256);
  /**
   * Handles whose filesystem refused RWF_NOWAIT (-EOPNOTSUPP: tmpfs reads, ext4 buffered writes, FUSE): not asked
   * again; their calls run inline (a local filesystem: page cache or memory) or on the pool (anything else).
   */
  private readonly noNowaitRead = new WeakMap<Handle, 'inline' | 'pool'>();
  private readonly noNowaitWrite = new WeakMap<Handle, 'inline' | 'pool'>();

  /** Starts `threads` pool threads (1..MAX_POOL_THREADS). Throws SystemError when they cannot be started. */
  constructor(readonly threads: number) {
    const pool = native.ioPoolCreate(Math.min(Math.max(threads, 1), MAX_POOL_THREADS));
    if (typeof pool === 'number') throw new SystemError('pthread_create', -pool, native.strerror(-pool), 'I/O thread pool');
    this.pool = pool;
    try {
      this.poller = new FdPoller();
      this.poller.addEventfd(native.ioPoolEventfd(pool), () => this.reap());
    } catch (e) {
      native.ioPoolClose(pool);
      throw e;
    }
  }

  /** Jobs submitted and not answered yet. */
  get pending(): number {
    return this.jobs.size;
  }

  read(h: Handle, target: DataTarget, position: number): number | Promise<number> {
    const size = target.size;
    if (target.fromFdNowait === undefined || size === 0) return target.fromFd(h.fd, position);
    let without = this.noNowaitRead.get(h);
    if (without === 'inline') return target.fromFd(h.fd, position);
    const r = without === 'pool' ? -E.EAGAIN : target.fromFdNowait(h.fd, position);
    if (r === size) return r;
    if (r >= 0 && this.endsAt(h.fd, position + r)) return r;
    if (r === -E.EOPNOTSUPP) {
      this.noNowaitRead.set(h, without = withoutNowait(h.fd));
      if (without === 'inline') return target.fromFd(h.fd, position);
    } else if (r < 0 && r !== -E.EAGAIN) {
      return r;
    }
    // What was placed inline is read again with the rest: the answer is written from the private buffer.
    const buf = new BufferData(size);
    return this.run([h], (pool, tag) =>
      native.ioPoolSubmit(pool, C.VFS_POOL_READ, h.fd, buf.memory, 0, 1, position, tag),
      (n) => (n <= 0 ? n : target.fromBytes(buf.bytes.subarray(0, n))));
  }

  write(h: Handle, source: DataSource, position: number): number | Promise<number> {
    const size = source.size;
    if (source.toFdNowait === undefined || size === 0) return source.toFd(h.fd, position);
    let without = this.noNowaitWrite.get(h);
    if (without === 'inline') return source.toFd(h.fd, position);
    const r = without === 'pool' ? -E.EAGAIN : source.toFdNowait(h.fd, position);
    if (r === size) return r;
    if (r === -E.EOPNOTSUPP) {
      this.noNowaitWrite.set(h, without = withoutNowait(h.fd));
      if (without === 'inline') return source.toFd(h.fd, position);
    } else if (r < 0 && r !== -E.EAGAIN) {
      return r;
    }
    const done = Math.max(r, 0);
    const buf = new BufferData(size - done, source.toBytes().subarray(done));
    return this.run([h], (pool, tag) =>
      native.ioPoolSubmit(pool, C.VFS_POOL_WRITE, h.fd, buf.memory, 0, 1, position + done, tag),
      (n) => (n < 0 ? (done > 0 ? done : n) : done + n));
  }

  fsync(h: Handle, datasync: boolean): Promise<number> {
    const op = datasync ? C.VFS_POOL_FDATASYNC : C.VFS_POOL_FSYNC;
    return this.run([h], (pool, tag) => native.ioPoolSubmitCall(pool, op, h.fd, 0, 0, 0, 0, tag), statusOf);
  }

  fallocate(h: Handle, mode: number, offset: number, length: number): Promise<number> {
    return this.run([h], (pool, tag) =>
      native.ioPoolSubmitCall(pool, C.VFS_POOL_FALLOCATE, h.fd, mode, offset, length, 0, tag), statusOf);
  }

  /** copy_file_range with flags 0 (the only value Linux accepts; others are refused inline). */
  copyFileRange(hin: Handle, offIn: number, hout: Handle, offOut: number, length: number): Promise<number> {
    return this.run([hin, hout], (pool, tag) =>
      native.ioPoolSubmitCall(pool, C.VFS_POOL_COPY_FILE_RANGE, hin.fd, offIn, hout.fd, offOut, length, tag), (n) => n);
  }

  /**
   * Stops the pool: running jobs finish (the threads are joined), queued ones are dropped; every unanswered job
   * is answered -EIO and lets go of its handles. Idempotent.
   */
  close(): void {
    const pool = this.pool;
    if (pool === null) return;
    this.pool = null;
    this.poller.close();
    native.ioPoolClose(pool);
    this.backlog.length = 0;
    for (const tag of [...this.jobs.keys()]) this.complete(tag, -E.EIO);
  }

  private run(holds: Handle[], submit: Job['submit'], finish: Job['finish']): Promise<number> {
    return new Promise<number>((resolve) => {
      const pool = this.pool;
      if (pool === null) {
        resolve(-E.EIO);
        return;
      }
      const tag = this.nextTag++;
      for (const h of holds) HandleTable.hold(h);
      this.jobs.set(tag, { submit, finish, resolve, holds });
      const rc = submit(pool, tag);
      if (rc === -E.EAGAIN) this.backlog.push(tag);
      else if (rc < 0) this.complete(tag, rc);
    });
  }

  /** The eventfd fired: answers every finished job, then queues what waited for a slot. */
  private reap(): void {
    const pool = this.pool;
    if (pool === null) return;
    const out = this.reaped;
    for (let n = native.ioPoolReap(pool, out); n > 0; n = native.ioPoolReap(pool, out)) {
      for (let i = 0; i < n; i++) this.complete(out[2 * i]!, out[2 * i + 1]!);
    }
    while (this.backlog.length > 0 && this.pool !== null) {
      const tag = this.backlog[0]!;
      const job = this.jobs.get(tag);
      const rc = job === undefined ? 0 : job.submit(this.pool, tag);
      if (rc === -E.EAGAIN) break;
      this.backlog.shift();
      if (rc < 0) this.complete(tag, rc);
    }
  }

  private complete(tag: number, result: number): void {
    const job = this.jobs.get(tag);
    if (job === undefined) return;
    this.jobs.delete(tag);
    for (const h of job.holds) HandleTable.unhold(h);
    let r: number;
    try {
      r = job.finish(result);
    } catch (e) {
      log.error('blocking I/O: answering a finished job failed', e);
      r = -E.EIO;
    }
    job.resolve(r);
  }

  /** Whether `position` is at or past the end of the file (a short inline read is then the whole answer). */
  private endsAt(fd: number, position: number): boolean {
    const r = native.statx(fd, '', C.AT_EMPTY_PATH, STATX_SIZE, this.statxBuf, 0);
    if (r < 0) return false; // the pool's read will tell
    return position >= Number(new DataView(this.statxBuf).getBigUint64(STATX_SIZE_OFFSET, true));
  }
}

/** statx mask bit for stx_size (linux/stat.h). */
const STATX_SIZE = 0x200;
/** struct statx: stx_size. */
const STATX_SIZE_OFFSET = 40;

/**
 * Filesystems whose page-cache reads and writes do not wait on anything remote (linux/magic.h): where they refuse
 * RWF_NOWAIT, data I/O stays inline (a pooled 4 KiB WRITE costs several times an inline one: a thread hand-off,
 * a copy, the eventfd); an fsync on them still goes to the pool. ext2/3/4, xfs, btrfs, f2fs, tmpfs, ramfs,
 * overlayfs (over these).
 */
const LOCAL_FS_MAGIC: ReadonlySet<number> = new Set([0xef53, 0x58465342, 0x9123683e, 0xf2f52010, 0x01021994,
  0x858458f6, 0x794c7630]);

/** What to do with data I/O on `fd` when its filesystem refuses RWF_NOWAIT. */
export function withoutNowait(fd: number): 'inline' | 'pool' {
  return LOCAL_FS_MAGIC.has(native.fstatfsType(fd)) ? 'inline' : 'pool';
}

/** fsync/fdatasync/fallocate: 0 or -errno. */
function statusOf(r: number): number {
  return r > 0 ? 0 : r;
}

/**
 * The native I/O thread pool (bindings/io-pool.c, driven by host/passthrough/blocking-io.ts): preadv/pwritev jobs
 * into a WebAssembly.Memory and fsync/fdatasync/fallocate/copy_file_range calls run on pool threads and come back
 * through the completion eventfd as (tag, result) pairs; preadvNowait reads what is cached without blocking.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { native } from '../host/native-loader.js';
import type { IoPoolHandle } from '../host/native.js';
import { FdPoller } from '../host/vhost-user/fd-poller.js';

const EAGAIN = native.constants.errno.EAGAIN ?? 11;
const EFAULT = native.constants.errno.EFAULT ?? 14;
const EINVAL = native.constants.errno.EINVAL ?? 22;
const EBADF = native.constants.errno.EBADF ?? 9;
const { VFS_POOL_READ: READ, VFS_POOL_WRITE: WRITE, VFS_POOL_FSYNC: FSYNC, VFS_POOL_FDATASYNC: FDATASYNC,
  VFS_POOL_FALLOCATE: FALLOCATE, VFS_POOL_COPY_FILE_RANGE: COPY_FILE_RANGE } = native.constants;

function pattern(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed * 7) & 0xff;
  return b;
}

function withFile(fn: (fd: number, file: string) => Promise<void>): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vfsd-iopool-'));
  const file = path.join(dir, 'data');
  fs.writeFileSync(file, pattern(1 << 20, 1));
  const fd = fs.openSync(file, 'r+');
  return fn(fd, file).finally(() => {
    fs.closeSync(fd);
    fs.rmSync(dir, { recursive: true, force: true });
  });
}

function createPool(threads: number): IoPoolHandle {
  const p = native.ioPoolCreate(threads);
  if (typeof p === 'number') throw new Error(`ioPoolCreate: ${native.strerror(-p)}`);
  return p;
}

/** Waits (through the poller, as the daemon would) until `count` completions were reaped. */
async function reapAll(pool: IoPoolHandle, count: number): Promise<Map<number, number>> {
  const results = new Map<number, number>();
  const out = new Float64Array(16);
  const poller = new FdPoller();
  try {
    await new Promise<void>((resolve) => {
      const drain = () => {
        for (let n = native.ioPoolReap(pool, out); n > 0; n = native.ioPoolReap(pool, out)) {
          for (let i = 0; i < n; i++) results.set(out[2 * i]!, out[2 * i + 1]!);
        }
        if (results.size >= count) resolve();
      };
      poller.addEventfd(native.ioPoolEventfd(pool), drain);
      drain(); // completions that came before the registration
    });
  } finally {
    poller.close();
  }
  return results;
}

/** Writes `struct iovec` entries { base, len } at `at` in mem for [offset, offset + len) ranges of mem itself. */
function iovTable(mem: WebAssembly.Memory, at: number, entries: [number, number][]): void {
  const v = new DataView(mem.buffer);
  const base = native.addressOf(mem.buffer);
  entries.forEach(([off, len], i) => {
    v.setBigUint64(at + 16 * i, BigInt(base + off), true);
    v.setBigUint64(at + 16 * i + 8, BigInt(len), true);
  });
}

test('reads on pool threads land in the memory at the iovecs; each job reports its tag and byte count', () =>
  withFile(async (fd) => {
    const pool = createPool(4);
    const mem = new WebAssembly.Memory({ initial: 64 }); // 4 MiB
    try {
      const jobs = 40;
      for (let j = 0; j < jobs; j++) {
        // Job j reads 8 KiB at file offset j * 16 KiB into two 4 KiB pieces at buffers j * 64 KiB (+ 8 KiB).
        const iovAt = 3 * 1024 * 1024 + 64 * j; // above every buffer; 8-aligned
        iovTable(mem, iovAt, [[j * 65536, 4096], [j * 65536 + 8192, 4096]]);
        assert.is(native.ioPoolSubmit(pool, READ, fd, mem.buffer, iovAt, 2, j * 16384, 1000 + j), 0);
      }
      const results = await reapAll(pool, jobs);
      const file = pattern(1 << 20, 1);
      const bytes = new Uint8Array(mem.buffer);
      for (let j = 0; j < jobs; j++) {
        assert.is(results.get(1000 + j), 8192, `job ${j}`);
        const want = file.subarray(j * 16384, j * 16384 + 8192);
        assert.equal(bytes.subarray(j * 65536, j * 65536 + 4096), want.subarray(0, 4096));
        assert.equal(bytes.subarray(j * 65536 + 8192, j * 65536 + 12288), want.subarray(4096));
      }
      assert.is(native.ioPoolPending(pool), 0, 'every slot is free again');
    } finally {
      native.ioPoolClose(pool);
    }
  }));

test('writes from the memory reach the file; errors come back as -errno per job', () =>
  withFile(async (fd, file) => {
    const pool = createPool(2);
    const mem = new WebAssembly.Memory({ initial: 1 });
    try {
      new Uint8Array(mem.buffer).set(pattern(4096, 9), 0);
      iovTable(mem, 8192, [[0, 4096]]);
      assert.is(native.ioPoolSubmit(pool, WRITE, fd, mem.buffer, 8192, 1, 100_000, 1), 0);
      assert.is(native.ioPoolSubmit(pool, READ, 1_000_000 /* not an fd */, mem.buffer, 8192, 1, 0, 2), 0);
      const v = new DataView(mem.buffer);
      v.setBigUint64(16384, 16n, true); // an unmapped address: the kernel's EFAULT comes back as the job's result
      v.setBigUint64(16392, 4096n, true);
      assert.is(native.ioPoolSubmit(pool, READ, fd, mem.buffer, 16384, 1, 0, 3), 0);
      const results = await reapAll(pool, 3);
      assert.is(results.get(1), 4096);
      assert.is(results.get(2), -EBADF);
      assert.is(results.get(3), -EFAULT);
      assert.equal(new Uint8Array(fs.readFileSync(file)).subarray(100_000, 104_096), pattern(4096, 9));
    } finally {
      native.ioPoolClose(pool);
    }
  }));

test('bad submissions are refused at once; a full pool answers -EAGAIN; a closed one -EBADF', () =>
  withFile(async (fd) => {
    const pool = createPool(1);
    const mem = new WebAssembly.Memory({ initial: 1 });
    try {
      assert.is(native.ioPoolSubmit(pool, READ, fd, mem.buffer, 65_536 - 8, 1, 0, 1), -EFAULT, 'table past the memory');
      assert.is(native.ioPoolSubmit(pool, READ, fd, mem.buffer, 4, 1, 0, 1), -EINVAL, 'misaligned table');
      assert.is(native.ioPoolSubmit(pool, READ, fd, mem.buffer, 0, 2000, 0, 1), -EINVAL, 'more than UIO_MAXIOV');
      assert.is(native.ioPoolSubmit(pool, FSYNC, fd, mem.buffer, 0, 0, 0, 1), -EINVAL, 'a call is not a memory job');
      assert.is(native.ioPoolPending(pool), 0, 'refused jobs hold no slot');
      iovTable(mem, 0, [[4096, 16]]);
      let accepted = 0;
      let rc = 0;
      while ((rc = native.ioPoolSubmit(pool, READ, fd, mem.buffer, 0, 1, 0, accepted)) === 0) accepted++;
      assert.is(rc, -EAGAIN);
      assert.is(accepted, 128, 'the slot count');
      const results = await reapAll(pool, accepted);
      assert.is(results.size, 128);
      assert.is(native.ioPoolSubmit(pool, READ, fd, mem.buffer, 0, 1, 0, 1), 0, 'reaping freed the slots');
    } finally {
      native.ioPoolClose(pool);
      native.ioPoolClose(pool);
    }
    assert.is(native.ioPoolSubmit(pool, READ, fd, mem.buffer, 0, 1, 0, 1), -EBADF);
    assert.is(native.ioPoolEventfd(pool), -EBADF);
    assert.is(native.ioPoolCreate(0), -EINVAL);
  }));

test('calls on pool threads: fsync, fdatasync, fallocate, copy_file_range; an unknown call is refused at once', () =>
  withFile(async (fd, file) => {
    const pool = createPool(2);
    const out = fs.openSync(`${file}.copy`, 'w+');
    try {
      assert.is(native.ioPoolSubmitCall(pool, FSYNC, fd, 0, 0, 0, 0, 1), 0);
      assert.is(native.ioPoolSubmitCall(pool, FDATASYNC, fd, 0, 0, 0, 0, 2), 0);
      // mode 0: the file grows to 2 MiB
      assert.is(native.ioPoolSubmitCall(pool, FALLOCATE, fd, 0, 0, 2 << 20, 0, 3), 0);
      assert.is(native.ioPoolSubmitCall(pool, COPY_FILE_RANGE, fd, 4096, out, 0, 8192, 4), 0); // 8 KiB from offset 4096
      assert.is(native.ioPoolSubmitCall(pool, 9, fd, 0, 0, 0, 0, 5), -EINVAL, 'unknown kind');
      assert.is(native.ioPoolSubmitCall(pool, WRITE, fd, 0, 0, 0, 0, 5), -EINVAL, 'a memory job is not a call');
      const results = await reapAll(pool, 4);
      assert.equal([1, 2, 3, 4].map((t) => results.get(t)), [0, 0, 0, 8192]);
      assert.is(fs.fstatSync(fd).size, 2 << 20);
      assert.equal(new Uint8Array(fs.readFileSync(`${file}.copy`)), pattern(1 << 20, 1).subarray(4096, 12288));
      assert.ok(native.fstatfsType(fd) > 0, 'the filesystem magic of the file');
      assert.is(native.fstatfsType(1_000_000), -EBADF);
    } finally {
      fs.closeSync(out);
      native.ioPoolClose(pool);
    }
  }));

test('preadvNowait reads cached data inline', () =>
  withFile(async (fd) => {
    const mem = new WebAssembly.Memory({ initial: 1 });
    iovTable(mem, 0, [[4096, 4096]]);
    const r = native.preadvNowait(fd, mem.buffer, 0, 1, 8192); // just written: in the page cache
    assert.ok(r === 4096 || r === -EAGAIN, `bytes or EAGAIN, got ${r}`);
    if (r === 4096) assert.equal(new Uint8Array(mem.buffer, 4096, 4096), pattern(1 << 20, 1).subarray(8192, 12288));
    assert.is(native.preadvNowait(fd, mem.buffer, 65_536 - 8, 1, 0), -EFAULT, 'table past the memory');
  }));

test.run();

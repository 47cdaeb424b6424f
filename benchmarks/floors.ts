/**
 * The machine's floors, measured in the same run as the backends:
 * - pread/pwrite from/to the page cache (native.pread into a reused buffer): what moving the bytes costs with no
 *   FUSE, no rings, no notification;
 * - an eventfd round trip between this thread and another process, both blocked in epoll_wait: what one request's
 *   notifications (kick + call) cost at the very least; and the same with the other process woken through its
 *   Node event loop, as our daemon is: the difference is what the runtime adds to every wake-up, before any
 *   request is served.
 */
import { fork } from 'node:child_process';
import { native } from '../host/native-loader.js';

export interface IoFloor { name: string; blockSize: number; opsPerSec: number; mbPerSec: number }

/** Random (4 KiB-aligned) or sequential pread/pwrite of `bs` bytes over the first `fileSize` bytes of path. */
export function ioFloor(path: string, fileSize: number, bs: number, pattern: 'rand' | 'seq', write: boolean,
  durationMs: number): IoFloor {
  const c = native.constants;
  const fd = native.openat(c.AT_FDCWD, path, write ? c.O_RDWR : c.O_RDONLY, 0);
  if (fd < 0) throw new Error(`open ${path}: ${native.strerror(-fd)}`);
  const buf = new Uint8Array(bs);
  const blocks = Math.floor(fileSize / bs);
  let seed = 0x9e3779b9;
  let ops = 0;
  let seq = 0;
  const t0 = performance.now();
  const end = t0 + durationMs;
  let now = t0;
  while (now < end) {
    for (let i = 0; i < 64; i++) {
      let pos: number;
      if (pattern === 'rand') {
        seed ^= seed << 13; seed ^= seed >>> 17; seed ^= seed << 5;
        pos = ((seed >>> 0) % blocks) * bs;
      } else {
        pos = seq * bs;
        seq = seq + 1 === blocks ? 0 : seq + 1;
      }
      const r = write ? native.pwrite(fd, buf, pos) : native.pread(fd, buf, pos);
      if (r !== bs) throw new Error(`${write ? 'pwrite' : 'pread'}: ${r}`);
      ops++;
    }
    now = performance.now();
  }
  native.close(fd);
  const secs = (now - t0) / 1000;
  return {
    name: `${write ? 'pwrite' : 'pread'} ${bs >= 1024 ? `${bs / 1024} KiB` : `${bs} B`} ${pattern}`,
    blockSize: bs, opsPerSec: ops / secs, mbPerSec: (ops * bs) / secs / 1e6,
  };
}

export interface RttFloor {
  roundTrips: number; usPerRoundTrip: number; p50Us: number; p99Us: number;
  /** CPU time of the answering process per round trip (its wait, wake-up, read and write). */
  peerCpuUs: number;
}

/**
 * Eventfd ping-pong between this thread, blocking in epoll_wait, and a child process that waits in epoll_wait
 * (`epoll`) or in its Node event loop (`loop`, eventfd-peer.ts).
 */
export async function eventfdRoundTrip(durationMs: number, peer: 'epoll' | 'loop' = 'epoll'): Promise<RttFloor> {
  const c = native.constants;
  const ping = native.eventfd(0, c.EFD_NONBLOCK);
  const pong = native.eventfd(0, c.EFD_NONBLOCK);
  const child = fork(new URL('./eventfd-peer.js', import.meta.url), [peer],
    { stdio: ['ignore', 'inherit', 'inherit', 'ipc', ping, pong] });
  await new Promise<void>((resolve, reject) => {
    child.once('message', () => resolve());
    child.once('error', reject);
  });
  const ep = native.epollCreate();
  native.epollCtl(ep, 1, pong, c.EPOLLIN, 1);
  const out = new Int32Array(2);
  const lat = new Float64Array(1 << 20);
  let n = 0;
  const t0 = performance.now();
  const end = t0 + durationMs;
  let now = t0;
  while (now < end && n < lat.length) {
    const s = now;
    native.eventfdWrite(ping, 1);
    if (native.epollWait(ep, out, 5000) <= 0) throw new Error('eventfd peer did not answer');
    native.eventfdRead(pong);
    now = performance.now();
    lat[n++] = now - s;
  }
  const peerCpu = new Promise<number>((r) => child.once('message', (v) => r(Number(v))));
  const exited = new Promise((r) => child.once('exit', r));
  native.eventfdWrite(ping, 2);
  const peerCpuUs = await peerCpu;
  await exited;
  native.close(ep);
  native.close(ping);
  native.close(pong);
  const sorted = lat.subarray(0, n).sort();
  return {
    roundTrips: n, usPerRoundTrip: ((now - t0) * 1000) / n,
    p50Us: sorted[Math.floor(n * 0.5)]! * 1000, p99Us: sorted[Math.floor(n * 0.99)]! * 1000,
    peerCpuUs: peerCpuUs / n,
  };
}

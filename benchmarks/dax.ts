/**
 * DAX rows of `npm run bench` (ours only: the C virtiofsd has no DAX window). Our daemon runs with a window of half
 * the data file, driven by the userspace frontend in both roles (host/frontend: FuseClient + DaxWindow as the VMM,
 * DaxDriver as the guest driver). Rows, each at depth 1, over the page-cache pread floor of the same pattern:
 *
 *   FUSE READ 4 KiB random          the same reads through FUSE READ (the path DAX replaces), for the ratio
 *   DAX read 4 KiB random, mapped   a working set of half the window, mapped during the warm-up: allocator hits
 *   DAX read 128 KiB seq, mapped    the same working set read in sequence
 *   DAX read 4 KiB random, 2x window  the whole file: misses, SETUPMAPPING and LRU reclaim (REMOVEMAPPING)
 *   FUSE WRITE / DAX write 4 KiB random, mapped: the same for writes (ranges upgraded to writable on first use)
 *   map + unmap 2 MiB               SETUPMAPPING (FUSE round trip, SHMEM_MAP round trip, mmap) then REMOVEMAPPING
 *                                   (the same with SHMEM_UNMAP); the log line gives SETUPMAPPING alone
 *
 * `npm run bench -- --dax-only` runs just these.
 */
import { FuseClient } from '../host/frontend/fuse-client.js';
import { DaxWindow } from '../host/frontend/dax-window.js';
import { DaxDriver } from '../host/frontend/dax-driver.js';
import * as P from '../host/fuse/protocol.js';
import { VhostUserProtocolFeature as PF, bit } from '../host/vhost-user/protocol.js';
import { native } from '../host/native-loader.js';
import { startOurs } from './backends.js';
import type { IoFloor } from './floors.js';
import { median } from './report.js';
import { DATA_FILE } from './workloads.js';

const MiB = 1024 * 1024;
const DAX_SZ = 2 * MiB;

export interface DaxRow { name: string; opsPerSec: number; mbPerSec: number; p50Us: number; p99Us: number; floor: string; floorFraction: number }
interface DaxSample { opsPerSec: number; mbPerSec: number; p50Us: number; p99Us: number }

/** Runs `op` for warmupMs, then durationMs (at least minOps); the clock is read per op (hits never yield). */
async function timed(op: (i: number) => Promise<unknown>, bytes: number, warmupMs: number, durationMs: number,
  minOps: number): Promise<DaxSample> {
  let i = 0;
  const w0 = performance.now();
  while (performance.now() - w0 < warmupMs) await op(i++);
  const lat: number[] = [];
  const t0 = performance.now();
  let now = t0;
  while (now - t0 < durationMs || lat.length < minOps) {
    const s = performance.now();
    await op(i++);
    now = performance.now();
    lat.push(now - s);
    if (lat.length % 4096 === 0) await new Promise((r) => setImmediate(r)); // let the event loop breathe
  }
  const secs = (now - t0) / 1000;
  lat.sort((a, b) => a - b);
  const pct = (p: number): number => lat[Math.min(lat.length - 1, Math.floor(lat.length * p))]! * 1000;
  return { opsPerSec: lat.length / secs, mbPerSec: (lat.length * bytes) / secs / 1e6, p50Us: pct(0.5), p99Us: pct(0.99) };
}

function xorshift(seed: number): () => number {
  let s = seed | 1;
  return () => {
    s ^= s << 13; s ^= s >>> 17; s ^= s << 5;
    return s >>> 0;
  };
}

export async function daxBench(work: string, dataDir: string, cfg: { fileSize: number; reps: number; durationMs: number;
  warmupMs: number; minOps: number }, floors: IoFloor[], log: (...a: unknown[]) => void): Promise<DaxRow[]> {
  const windowSize = Math.max(4 * DAX_SZ, Math.floor(cfg.fileSize / 2 / DAX_SZ) * DAX_SZ);
  const hot = windowSize / 2; // working set of the "mapped" rows: below the driver's reclaim threshold
  const names = ['FUSE READ 4 KiB random (same range)', 'DAX read 4 KiB random, mapped', 'DAX read 128 KiB seq, mapped',
    'DAX read 4 KiB random, 2x window (reclaim)', 'map + unmap 2 MiB (SETUPMAPPING + REMOVEMAPPING)',
    'FUSE WRITE 4 KiB random (same range)', 'DAX write 4 KiB random, mapped'];
  const samples: DaxSample[][] = names.map(() => []);
  for (let rep = 0; rep < cfg.reps; rep++) {
    const ours = await startOurs(work, dataDir, [`--dax-window=${windowSize}`]);
    let fc: FuseClient | undefined;
    let win: DaxWindow | undefined;
    try {
      fc = await FuseClient.connect(ours.socket, { depth: 4, timeoutMs: 30000,
        protocolFeatures: bit(PF.MQ) | bit(PF.REPLY_ACK) | bit(PF.BACKEND_REQ) | bit(PF.BACKEND_SEND_FD) | bit(PF.SHMEM) });
      win = await DaxWindow.attach(fc.frontend);
      await fc.init({ flags: P.FUSE_ASYNC_READ | P.FUSE_BIG_WRITES | P.FUSE_MAX_PAGES | P.FUSE_MAP_ALIGNMENT });
      const e = await fc.lookup(P.FUSE_ROOT_ID, DATA_FILE);
      const o = await fc.open(e.nodeid, native.constants.O_RDWR);
      const size = cfg.fileSize;
      const dst4k = new Uint8Array(4096);
      const dst128k = new Uint8Array(128 * 1024);

      // The mapping round trip first, on the last range of an empty window (the driver starts afterwards).
      const client = fc;
      const moff = BigInt(windowSize - DAX_SZ);
      const setup = new Uint8Array(P.SETUPMAPPING_IN.SIZE);
      const sv = new DataView(setup.buffer);
      sv.setBigUint64(P.SETUPMAPPING_IN.fh, 0xffff_ffff_ffff_ffffn, true);
      sv.setBigUint64(P.SETUPMAPPING_IN.len, BigInt(DAX_SZ), true);
      sv.setBigUint64(P.SETUPMAPPING_IN.flags, 2n, true);
      sv.setBigUint64(P.SETUPMAPPING_IN.moffset, moff, true);
      const remove = new Uint8Array(4 + 16);
      const rv = new DataView(remove.buffer);
      rv.setUint32(0, 1, true);
      rv.setBigUint64(4, moff, true);
      rv.setBigUint64(12, BigInt(DAX_SZ), true);
      let setupMs = 0;
      let setups = 0;
      const rt = await timed(async (i) => {
        sv.setBigUint64(P.SETUPMAPPING_IN.foffset, BigInt((i % Math.floor(size / DAX_SZ)) * DAX_SZ), true);
        const t = performance.now();
        await client.request(P.FUSE_SETUPMAPPING, e.nodeid, setup);
        setupMs += performance.now() - t;
        setups++;
        await client.request(P.FUSE_REMOVEMAPPING, e.nodeid, remove);
      }, 0, cfg.warmupMs, cfg.durationMs, cfg.minOps);
      samples[4]!.push({ ...rt, mbPerSec: 0 });
      log(`dax rep ${rep + 1}/${cfg.reps}: SETUPMAPPING alone ${(setupMs * 1000 / Math.max(1, setups)).toFixed(0)} µs mean ` +
        `over ${setups} (warm-up included)`);

      const driver = await DaxDriver.create(fc, win);
      let r = xorshift(0x1234);
      samples[0]!.push(await timed(() => client.readInto(e.nodeid, o.fh, (r() % (hot / 4096)) * 4096, 4096, dst4k),
        4096, cfg.warmupMs, cfg.durationMs, cfg.minOps));
      r = xorshift(0x1234);
      await driver.read(e.nodeid, 0, hot, size); // map the working set (the warm-up of the mapped rows)
      samples[1]!.push(await timed(() => driver.read(e.nodeid, (r() % (hot / 4096)) * 4096, 4096, size, dst4k),
        4096, cfg.warmupMs, cfg.durationMs, cfg.minOps));
      const blocks = hot / (128 * 1024);
      samples[2]!.push(await timed((i) => driver.read(e.nodeid, (i % blocks) * 128 * 1024, 128 * 1024, size, dst128k),
        128 * 1024, cfg.warmupMs, cfg.durationMs, cfg.minOps));
      const reclaimed0 = driver.stats.reclaims;
      samples[3]!.push(await timed(() => driver.read(e.nodeid, (r() % Math.floor(size / 4096)) * 4096, 4096, size, dst4k),
        4096, cfg.warmupMs, cfg.durationMs, cfg.minOps));
      const src4k = new Uint8Array(4096).fill(0x5a);
      r = xorshift(0x4321);
      samples[5]!.push(await timed(() => client.write(e.nodeid, o.fh, (r() % (hot / 4096)) * 4096, src4k),
        4096, cfg.warmupMs, cfg.durationMs, cfg.minOps));
      samples[6]!.push(await timed(() => driver.write(e.nodeid, o.fh, (r() % (hot / 4096)) * 4096, src4k, size),
        4096, cfg.warmupMs, cfg.durationMs, cfg.minOps));
      log(`dax rep ${rep + 1}/${cfg.reps}: hits ${driver.stats.hits}, misses ${driver.stats.misses}, ` +
        `reclaimed ${driver.stats.reclaims - reclaimed0} in the 2x row; window maps ${win.stats.maps}`);
    } finally {
      fc?.close();
      win?.close();
      await ours.stop();
    }
  }
  const floorOf = (prefix: string): IoFloor | undefined => floors.find((f) => f.name.startsWith(prefix));
  return names.map((name, i) => {
    const ss = samples[i]!;
    const fl = i === 2 ? floorOf('pread 128 KiB seq') : i === 4 ? undefined : i >= 5 ? floorOf('pwrite 4 KiB rand')
      : floorOf('pread 4 KiB rand');
    const mb = median(ss.map((s) => s.mbPerSec));
    return { name, opsPerSec: median(ss.map((s) => s.opsPerSec)), mbPerSec: mb, p50Us: median(ss.map((s) => s.p50Us)),
      p99Us: median(ss.map((s) => s.p99Us)), floor: fl?.name ?? '', floorFraction: fl ? mb / fl.mbPerSec : 0 };
  });
}

export function daxTable(rows: DaxRow[]): string {
  const head = ['DAX (ours only)', 'ops/s', 'MB/s', 'p50/p99 µs', 'floor', 'vs FUSE READ'];
  const fuse = rows[0]!.opsPerSec;
  const body = rows.map((r, i) => [r.name, Math.round(r.opsPerSec).toLocaleString('en-US'), r.mbPerSec ? r.mbPerSec.toFixed(0) : '',
    `${r.p50Us.toFixed(1)}/${r.p99Us.toFixed(1)}`, r.floor ? `${(r.floorFraction * 100).toFixed(0)}% of ${r.floor}` : '',
    i === 1 || i === 3 ? `${(r.opsPerSec / fuse).toFixed(1)}x` : i === 6 ? `${(r.opsPerSec / rows[5]!.opsPerSec).toFixed(1)}x (WRITE)` : '']);
  const all = [head, ...body];
  const w = head.map((_, i) => Math.max(...all.map((r) => r[i]!.length)));
  return all.map((r) => r.map((x, i) => (i === 0 ? x.padEnd(w[i]!) : x.padStart(w[i]!))).join('  ')).join('\n');
}

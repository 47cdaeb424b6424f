/**
 * Crash safety, against the daemon as a separate process (`dist/host/cli.js`):
 * - a guest's FSYNC/FDATASYNC reaches the host filesystem (seen there by a recording FUSE filesystem under the
 *   share) after all the data written before it, and the data is in the host file after a SIGKILL;
 * - frontends that die mid-request (requests in flight, a half-sent vhost-user message, no FUSE_INIT at all)
 *   leave nothing behind in the daemon: over 1000 connect/disconnect cycles its fd count and memory mappings stay
 *   flat and its RSS grows by less than 32 MiB.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FuseClient } from '../host/frontend/fuse-client.js';
import { FUSE_ROOT_ID } from '../host/fuse/protocol.js';
import { native } from '../host/native-loader.js';
import { type SocketDaemon, spawnSocketDaemon } from './util/socket-daemon.js';
import { requireDevFuse } from './util/prereq.js';
import { startRecordingMount } from './util/recording-mount.js';
import type { SyncRecord } from './util/recording-fs.js';
import { sleep } from './util/wait.js';

const c = native.constants;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'crash-test-'));
let seq = 0;

type Child = SocketDaemon;

async function startDaemon(args: string[] = []): Promise<Child> {
  const n = seq++;
  return spawnSocketDaemon(fs.mkdtempSync(path.join(tmp, `share${n}-`)), path.join(tmp, `d${n}.sock`),
    { args: ['--log-level=error', '--sandbox=none', ...args] });
}

function killed(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once('exit', () => resolve());
  });
}

/**
 * fds, mappings of guest memory (memfd-backed: what a frontend's SET_MEM_TABLE maps) and RSS (KiB) of a process.
 * All mappings are not compared: V8 maps and unmaps heap pages on its own schedule.
 */
function usage(pid: number): { fds: number; maps: number; rssKiB: number } {
  const fds = fs.readdirSync(`/proc/${pid}/fd`).length;
  const maps = fs.readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n').filter((l) => l.includes('/memfd:')).length;
  const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return { fds, maps, rssKiB: m ? Number(m[1]) : -1 };
}

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

// The oracle: the share lives on a recording filesystem (test/util/recording-fs.ts), so the daemon's fsync(2) of
// a share file reaches it as FUSE_FSYNC, recorded with what the file held at that moment. Without that, the bytes
// being in the file after SIGKILL proves nothing: the host page cache has them whether or not anyone synced.
test('FSYNC and FDATASYNC reach the host filesystem after every written byte; the bytes survive a SIGKILL', async () => {
  if (!requireDevFuse()) return;
  const rec = await startRecordingMount();
  try {
    for (const extra of [[], ['--writeback'], ['--cache=never']]) {
      const label = extra.join(' ') || 'defaults';
      const share = fs.mkdtempSync(path.join(rec.mountpoint, 'share-'));
      const d = await spawnSocketDaemon(share, path.join(tmp, `d${seq++}.sock`),
        { args: ['--log-level=error', '--sandbox=none', ...extra] });
      const fc = await FuseClient.connect(d.socket, { maxPayload: 128 * 1024, depth: 16 });
      const rel = path.join(path.basename(share), 'durable.bin');
      const syncsOf = (): SyncRecord[] => rec.records().filter((r) => r.op === 'fsync' && r.path === rel);
      try {
        await fc.init();
        const cr = await fc.create(FUSE_ROOT_ID, 'durable.bin', c.O_RDWR, 0o644);
        const data = randomBytes(1 << 20);
        const half = data.length / 2;
        const writeRange = async (from: number, to: number): Promise<void> => {
          const writes: Array<Promise<number>> = [];
          for (let off = from; off < to; off += fc.maxPayload) {
            writes.push(fc.write(cr.entry.nodeid, cr.fh, off, data.subarray(off, Math.min(off + fc.maxPayload, to))));
          }
          assert.is((await Promise.all(writes)).reduce((a, b) => a + b, 0), to - from);
        };
        await writeRange(0, half);
        assert.is(syncsOf().length, 0, `no sync before the guest asked (${label})`);
        await fc.fsync(cr.entry.nodeid, cr.fh, false);
        let syncs = syncsOf();
        assert.is(syncs.length, 1, `the FSYNC reached the filesystem under the share (${label})`);
        assert.equal(syncs[0], { op: 'fsync', path: rel, datasync: false, result: 0, size: half,
          sha256: sha256(data.subarray(0, half)) }, `an fsync, with the first half in the file (${label})`);
        await writeRange(half, data.length);
        await fc.fsync(cr.entry.nodeid, cr.fh, true);
        syncs = syncsOf();
        assert.is(syncs.length, 2, `the FDATASYNC reached the filesystem (${label})`);
        assert.equal(syncs[1], { op: 'fsync', path: rel, datasync: true, result: 0, size: data.length,
          sha256: sha256(data) }, `an fdatasync, with every byte in the file (${label})`);
        // No RELEASE, no FLUSH, no orderly shutdown.
        d.child.kill('SIGKILL');
        await killed(d.child);
        assert.is(d.child.signalCode, 'SIGKILL');
        const host = fs.readFileSync(path.join(rec.backing, rel));
        assert.is(host.length, data.length, `size after SIGKILL (${label})`);
        assert.ok(host.equals(data), `content after SIGKILL (${label})`);
      } catch (e) {
        console.error(d.stderr());
        throw e;
      } finally {
        fc.close();
        d.child.kill('SIGKILL');
        await killed(d.child);
      }
    }
  } finally {
    await rec.stop();
  }
});

/** One frontend that dies without any goodbye; `kind` picks how. */
async function dyingFrontend(socket: string, i: number): Promise<void> {
  const kind = i % 10;
  if (kind === 9) {
    // Half a vhost-user header, then gone.
    const fd = native.unixConnect(socket);
    assert.ok(fd >= 0, `connect: ${fd}`);
    native.sendmsg(fd, new Uint8Array([1, 0, 0, 0, 1, 0]), 0, 6, []);
    native.close(fd);
    return;
  }
  const fc = await FuseClient.connect(socket, { maxPayload: 4096, depth: 8, timeoutMs: 5000 });
  if (kind === 8) {
    fc.close(); // rings set up, guest memory mapped, no FUSE_INIT
    return;
  }
  await fc.init();
  // Leave things open: a lookup reference, an open file, an open directory, and requests still in flight.
  const name = `f${i % 50}`;
  const cr = await fc.create(FUSE_ROOT_ID, name, c.O_RDWR, 0o644);
  await fc.write(cr.entry.nodeid, cr.fh, 0, new Uint8Array(512).fill(i & 0xff));
  await fc.opendir(FUSE_ROOT_ID);
  const pending: Array<Promise<unknown>> = [];
  for (let k = 0; k < 6; k++) {
    pending.push(fc.lookup(FUSE_ROOT_ID, name), fc.getattr(cr.entry.nodeid), fc.read(cr.entry.nodeid, cr.fh, 0, 4096));
  }
  for (const p of pending) p.catch(() => undefined);
  if (kind % 2 === 0) await Promise.race([pending[0], sleep(5)]);
  fc.close();
}

test('1000 frontends dying mid-request leak no fds, mappings or memory in the daemon', async () => {
  const CYCLES = 1000;
  const WARMUP = 50;
  const d = await startDaemon(['--cache=never']);
  const pid = d.child.pid!;
  try {
    const settle = async (): Promise<{ fds: number; maps: number; rssKiB: number }> => {
      // The daemon notices each hang-up asynchronously: wait until its fd count stops moving.
      let last = usage(pid);
      for (let k = 0; k < 100; k++) {
        await sleep(20);
        const now = usage(pid);
        if (now.fds === last.fds && now.maps === last.maps) return now;
        last = now;
      }
      return last;
    };
    const t0 = Date.now();
    for (let i = 0; i < WARMUP; i++) await dyingFrontend(d.socket, i);
    const before = await settle();
    for (let i = WARMUP; i < CYCLES; i++) {
      await dyingFrontend(d.socket, i);
      if (i % 100 === 0) await sleep(1); // let the daemon's hang-up handling run
    }
    const after = await settle();
    const secs = ((Date.now() - t0) / 1000).toFixed(1);
    console.log(`  ${CYCLES} cycles in ${secs} s; daemon after ${WARMUP}: fds ${before.fds}, guest-RAM maps ${before.maps}, `
      + `RSS ${(before.rssKiB / 1024).toFixed(1)} MiB; after ${CYCLES}: fds ${after.fds}, guest-RAM maps ${after.maps}, `
      + `RSS ${(after.rssKiB / 1024).toFixed(1)} MiB (growth ${((after.rssKiB - before.rssKiB) / 1024).toFixed(1)} MiB)`);
    assert.is(d.child.exitCode, null, 'the daemon is still running');
    assert.is(after.fds, before.fds, 'fd count flat');
    assert.is(after.maps, before.maps, 'guest memory mappings flat');
    assert.ok(after.rssKiB - before.rssKiB < 32 * 1024, 'RSS growth under 32 MiB');
    // And it still serves a well-behaved frontend.
    const fc = await FuseClient.connect(d.socket, { maxPayload: 4096, depth: 4 });
    await fc.init();
    assert.ok(usage(pid).maps > 0, 'the metric sees a connected frontend\'s guest memory');
    const e = await fc.lookup(FUSE_ROOT_ID, 'f1');
    assert.is(e.attr.size, 512);
    fc.close();
  } catch (e) {
    console.error(d.stderr());
    throw e;
  } finally {
    d.child.kill('SIGKILL');
  }
});

test.after(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

test.run();

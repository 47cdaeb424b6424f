/**
 * Crash safety, against the daemon as a separate process (`dist/host/cli.js`):
 * - data a guest fsynced is in the host file when the daemon is SIGKILLed right after the FSYNC reply;
 * - frontends that die mid-request (requests in flight, a half-sent vhost-user message, no FUSE_INIT at all)
 *   leave nothing behind in the daemon: over 1000 connect/disconnect cycles its fd count and memory mappings stay
 *   flat and its RSS grows by less than 32 MiB.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FuseClient } from '../host/frontend/fuse-client.js';
import { FUSE_ROOT_ID } from '../host/fuse/protocol.js';
import { native } from '../host/native-loader.js';
import { type SocketDaemon, connectWhenListening, spawnSocketDaemon } from './util/socket-daemon.js';

const c = native.constants;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'crash-test-'));
let seq = 0;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

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

test('fsynced data is on the host disk when the daemon is SIGKILLed right after the FSYNC reply', async () => {
  for (const extra of [[], ['--writeback'], ['--cache=never']]) {
    const d = await startDaemon(extra);
    let fc: FuseClient | undefined;
    try {
      fc = await connectWhenListening(d.socket, { maxPayload: 128 * 1024, depth: 16 });
      await fc.init();
      const cr = await fc.create(FUSE_ROOT_ID, 'durable.bin', c.O_RDWR, 0o644);
      const data = randomBytes(1 << 20);
      const chunk = fc.maxPayload;
      const writes: Array<Promise<number>> = [];
      for (let off = 0; off < data.length; off += chunk) {
        writes.push(fc.write(cr.entry.nodeid, cr.fh, off, data.subarray(off, Math.min(off + chunk, data.length))));
      }
      const counts = await Promise.all(writes);
      assert.is(counts.reduce((a, b) => a + b, 0), data.length);
      await fc.fsync(cr.entry.nodeid, cr.fh);
      // No RELEASE, no FLUSH, no orderly shutdown.
      d.child.kill('SIGKILL');
      await killed(d.child);
      assert.is(d.child.signalCode, 'SIGKILL');
      const host = fs.readFileSync(path.join(d.dir, 'durable.bin'));
      assert.is(host.length, data.length, `size after SIGKILL (${extra.join(' ') || 'defaults'})`);
      assert.ok(host.equals(data), `content after SIGKILL (${extra.join(' ') || 'defaults'})`);
    } finally {
      fc?.close();
      d.child.kill('SIGKILL');
    }
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

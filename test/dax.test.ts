/**
 * The DAX window end to end, through our frontend (host/frontend: FuseClient + DaxWindow + DaxDriver) against the
 * daemon in this process: file pages mapped into the window are the host's bytes (node:fs checks them), a host-side
 * change shows through an existing mapping, a read-only range is upgraded for a write, a working set twice the
 * window is reclaimed, a file truncated under a mapping neither crashes the frontend (SIGBUS would kill this
 * process) nor gives undefined answers; and every hostile SETUPMAPPING/REMOVEMAPPING/backend-channel input of the
 * table in the report is answered with its error while the daemon serves on.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FuseClient } from '../host/frontend/fuse-client.js';
import { errnoOf } from './util/socket-daemon.js';
import { until } from './util/wait.js';
import { DaxWindow } from '../host/frontend/dax-window.js';
import { DaxDriver } from '../host/frontend/dax-driver.js';
import { VirtiofsDaemon } from '../host/daemon.js';
import * as P from '../host/fuse/protocol.js';
import { FUSE_DAX_SZ } from '../host/dax/dax-ranges.js';
import { VhostUserProtocolFeature as PF, VhostUserRequest as VR, bit, encodeHeader, VHOST_USER_REPLY_MASK,
  VHOST_USER_VERSION } from '../host/vhost-user/protocol.js';
import { VhostUserFrontend } from '../host/frontend/vhost-user-frontend.js';
import { native } from '../host/native-loader.js';
import { countOpenFds } from './util/fds.js';
import { setLogLevel } from '../host/log.js';

setLogLevel((process.env.LOG_LEVEL as 'error') ?? 'error');

const E = native.constants.errno;
const c = native.constants;
const MiB = 1024 * 1024;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dax-test-'));
process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));

export const DAX_PROTOCOL_FEATURES = bit(PF.MQ) | bit(PF.REPLY_ACK) | bit(PF.BACKEND_REQ) | bit(PF.BACKEND_SEND_FD) |
  bit(PF.SHMEM) | bit(PF.RESET_DEVICE);

interface Rig {
  dir: string;
  daemon: VirtiofsDaemon;
  client: FuseClient;
  window: DaxWindow;
  driver: DaxDriver;
  close(): Promise<void>;
}

let rigNo = 0;
async function rig(opts: { windowMiB?: number; readonly?: boolean; protocol?: 'shmem' | 'legacy'; timeoutMs?: number;
  inodeDax?: { kind: 'size'; minBytes: number }; init?: { flags: number; flags2?: number } } = {}): Promise<Rig> {
  const n = rigNo++;
  const dir = fs.mkdtempSync(path.join(tmp, `share${n}-`));
  const socket = path.join(tmp, `dax${n}.sock`);
  const windowSize = (opts.windowMiB ?? 8) * MiB;
  const daemon = await VirtiofsDaemon.start({ socketPath: socket, sharedDir: dir, cache: 'never', logLevel: 'error',
    daxWindowSize: windowSize, daxProtocol: opts.protocol ?? 'shmem', readonly: opts.readonly ?? false,
    daxRequestTimeoutMs: opts.timeoutMs ?? 1500, ...(opts.inodeDax !== undefined ? { inodeDax: opts.inodeDax } : {}) });
  const client = await FuseClient.connect(socket, { protocolFeatures: DAX_PROTOCOL_FEATURES, timeoutMs: 10000 });
  const window = await DaxWindow.attach(client.frontend, { protocol: opts.protocol ?? 'shmem', size: windowSize });
  await client.init(opts.init ?? { flags: P.FUSE_ASYNC_READ | P.FUSE_BIG_WRITES | P.FUSE_MAX_PAGES | P.FUSE_MAP_ALIGNMENT });
  const driver = await DaxDriver.create(client, window);
  return {
    dir, daemon, client, window, driver,
    close: async () => {
      client.close();
      window.close();
      await daemon.close();
    },
  };
}

function pattern(len: number, seed: number): Uint8Array {
  const b = new Uint8Array(len);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < len; i++) {
    x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}


function setupArgs(a: { fh?: bigint; foffset: bigint | number; len: bigint | number; flags: bigint; moffset: bigint | number }): Uint8Array {
  const b = new Uint8Array(P.SETUPMAPPING_IN.SIZE);
  const v = new DataView(b.buffer);
  v.setBigUint64(P.SETUPMAPPING_IN.fh, a.fh ?? 0xffff_ffff_ffff_ffffn, true);
  v.setBigUint64(P.SETUPMAPPING_IN.foffset, BigInt(a.foffset), true);
  v.setBigUint64(P.SETUPMAPPING_IN.len, BigInt.asUintN(64, BigInt(a.len)), true);
  v.setBigUint64(P.SETUPMAPPING_IN.flags, a.flags, true);
  v.setBigUint64(P.SETUPMAPPING_IN.moffset, BigInt.asUintN(64, BigInt(a.moffset)), true);
  return b;
}

function removeArgs(entries: Array<{ moffset: bigint | number; len: bigint | number }>, count = entries.length): Uint8Array {
  const b = new Uint8Array(4 + entries.length * 16);
  const v = new DataView(b.buffer);
  v.setUint32(0, count, true);
  entries.forEach((e, i) => {
    v.setBigUint64(4 + i * 16, BigInt(e.moffset), true);
    v.setBigUint64(4 + i * 16 + 8, BigInt(e.len), true);
  });
  return b;
}

const READ = 2n, WRITE = 1n;

// ---- the window: data, coherence, upgrade, reclaim, truncation -------------------------------------------------

const data = suite('dax: files through the window');

data('reads and writes through the window match the host bytes; host changes show through the mapping', async () => {
  const r = await rig();
  try {
    const bytes = pattern(3 * MiB + 123, 7);
    fs.writeFileSync(path.join(r.dir, 'f'), bytes);
    const e = await r.client.lookup(P.FUSE_ROOT_ID, 'f');
    const got = await r.driver.read(e.nodeid, 0, bytes.length, bytes.length);
    assert.ok(Buffer.from(got).equals(Buffer.from(bytes)), 'read through the window = host bytes');
    assert.is(r.window.stats.maps, 2, 'two 2 MiB ranges were mapped');
    assert.is(r.driver.stats.misses, 2);
    // A second read is served from the mapped ranges (no FUSE round trip).
    const sent = r.client.sent;
    const again = await r.driver.read(e.nodeid, MiB, 4096, bytes.length);
    assert.is(r.client.sent, sent, 'a hit sends no request');
    assert.ok(Buffer.from(again).equals(Buffer.from(bytes.subarray(MiB, MiB + 4096))));
    // A host process changes the file: the mapping shows it (MAP_SHARED of the same page cache).
    const fd = fs.openSync(path.join(r.dir, 'f'), 'r+');
    fs.writeSync(fd, Buffer.from('host-side change'), 0, 16, 2 * MiB + 5);
    fs.closeSync(fd);
    const seen = await r.driver.read(e.nodeid, 2 * MiB + 5, 16, bytes.length);
    assert.is(Buffer.from(seen).toString(), 'host-side change');

    // A write inside the file goes through a read range upgraded to write: unmap + map RW at the same offset.
    const o = await r.client.open(e.nodeid, c.O_RDWR);
    const mapsBefore = r.window.stats.maps;
    const n = await r.driver.write(e.nodeid, o.fh, 100, new TextEncoder().encode('written via DAX'), bytes.length);
    assert.is(n, 15);
    assert.is(r.driver.stats.upgrades, 1, 'the read-only range was upgraded');
    assert.is(r.window.stats.maps, mapsBefore + 1);
    const host = fs.readFileSync(path.join(r.dir, 'f'));
    assert.is(host.subarray(100, 115).toString(), 'written via DAX', 'the host sees the write');
    // An extending write goes through FUSE WRITE, as the guest driver does it.
    const tail = new TextEncoder().encode('appended');
    await r.driver.write(e.nodeid, o.fh, bytes.length, tail, bytes.length);
    assert.is(r.driver.stats.directWrites, 1);
    assert.is(fs.statSync(path.join(r.dir, 'f')).size, bytes.length + tail.length);
    const read2 = await r.driver.read(e.nodeid, bytes.length, tail.length, bytes.length + tail.length);
    assert.is(Buffer.from(read2).toString(), 'appended', 'the new end is visible through the window');
    await r.client.release(e.nodeid, o.fh);
  } finally {
    await r.close();
  }
});

data('a working set twice the window is reclaimed (LRU) and every byte still matches', async () => {
  const r = await rig({ windowMiB: 8 }); // 4 ranges
  try {
    const files: Array<{ node: number; bytes: Uint8Array }> = [];
    for (let i = 0; i < 4; i++) {
      const bytes = pattern(2 * MiB, 100 + i);
      fs.writeFileSync(path.join(r.dir, `w${i}`), bytes);
      files.push({ node: (await r.client.lookup(P.FUSE_ROOT_ID, `w${i}`)).nodeid, bytes });
    }
    // 8 MiB of files over a 8 MiB window... twice: 16 MiB working set over 4 ranges.
    for (let i = 4; i < 8; i++) {
      const bytes = pattern(2 * MiB, 100 + i);
      fs.writeFileSync(path.join(r.dir, `w${i}`), bytes);
      files.push({ node: (await r.client.lookup(P.FUSE_ROOT_ID, `w${i}`)).nodeid, bytes });
    }
    for (let round = 0; round < 2; round++) {
      for (const f of files) {
        const off = 4096 * ((round * 7 + f.node) % 500);
        const got = await r.driver.read(f.node, off, 8192, f.bytes.length);
        assert.ok(Buffer.from(got).equals(Buffer.from(f.bytes.subarray(off, off + 8192))), `node ${f.node} round ${round}`);
      }
    }
    assert.ok(r.driver.stats.reclaims >= 8, `ranges were reclaimed (${r.driver.stats.reclaims})`);
    assert.ok(r.driver.ranges.busyCount <= 4);
    assert.is(r.window.mapped.size, r.driver.ranges.busyCount, 'the window holds exactly the busy ranges');
  } finally {
    await r.close();
  }
});

data('a file truncated under a mapping: no SIGBUS, zero pages past the new end, defined reads', async () => {
  const r = await rig();
  try {
    const bytes = pattern(2 * MiB, 3);
    fs.writeFileSync(path.join(r.dir, 't'), bytes);
    const e = await r.client.lookup(P.FUSE_ROOT_ID, 't');
    const view = await r.driver.view(e.nodeid, 0, 2 * MiB, bytes.length);
    assert.is(view.bytes[MiB + 1], bytes[MiB + 1]);
    // The guest truncates to 5000 bytes: the device sends the re-mapping (file + zero tail) before its reply.
    await r.client.setattr(e.nodeid, { size: 5000 });
    await until(() => r.window.mapped.size === 2, 10000);
    r.window.pump();
    assert.is(r.window.mapped.size, 2, 'file part + zero tail');
    // Touching the old view past the new end would be SIGBUS with the plain mapping: now it reads zeros.
    assert.is(view.bytes[MiB + 1], 0, 'past the new end: a zero page, not SIGBUS');
    assert.is(view.bytes[4999], bytes[4999], 'inside the file: still the file');
    view.release();
    // The driver reads stop at the new size.
    const got = await r.driver.read(e.nodeid, 0, 2 * MiB, 5000);
    assert.is(got.length, 5000);
    assert.ok(Buffer.from(got).equals(Buffer.from(bytes.subarray(0, 5000))));
    // Growing it again (FUSE WRITE past the end) maps the whole range from the file again.
    const o = await r.client.open(e.nodeid, c.O_RDWR);
    await r.driver.write(e.nodeid, o.fh, MiB, new TextEncoder().encode('grown'), 5000);
    await until(() => { r.window.pump(); return r.window.mapped.size === 1; }, 10000);
    const grown = await r.driver.read(e.nodeid, MiB, 5, MiB + 5);
    assert.is(Buffer.from(grown).toString(), 'grown', 'the grown file shows through the same range');
    await r.client.release(e.nodeid, o.fh);
    // OPEN with O_TRUNC (FUSE_ATOMIC_O_TRUNC) truncates too: the whole range becomes file part 0 + zero tail.
    const dax = r.daemon.dax!;
    const refits = dax.stats.refits;
    const t = await r.client.open(e.nodeid, c.O_RDWR | c.O_TRUNC);
    assert.ok(await until(() => { r.window.pump(); return dax.stats.refits > refits; }, 10000), 're-made after O_TRUNC');
    r.window.pump();
    assert.is(r.window.mapped.get(0), 2 * MiB, 'one piece: all zero tail (the file is empty)');
    assert.is(new Uint8Array(r.window.buffer, 0, 4096)[100], 0, 'no SIGBUS on the emptied file\'s first page');
    await r.client.release(e.nodeid, t.fh);
  } finally {
    await r.close();
  }
});

data('legacy dialect (SLAVE_FS_MAP/UNMAP) behind --dax-protocol=legacy', async () => {
  const r = await rig({ protocol: 'legacy' });
  try {
    const bytes = pattern(MiB, 9);
    fs.writeFileSync(path.join(r.dir, 'l'), bytes);
    const e = await r.client.lookup(P.FUSE_ROOT_ID, 'l');
    const got = await r.driver.read(e.nodeid, 0, bytes.length, bytes.length);
    assert.ok(Buffer.from(got).equals(Buffer.from(bytes)));
    assert.is(r.window.stats.maps, 1);
    await r.driver.forgetNode(e.nodeid);
    assert.is(r.window.stats.unmaps, 1);
  } finally {
    await r.close();
  }
});


data.run();

// ---- hostile input ----------------------------------------------------------------------------------------------

const hostile = suite('dax: hostile SETUPMAPPING / REMOVEMAPPING / backend channel');

hostile('each bad request gets its error and the daemon serves on', async () => {
  const r = await rig({ windowMiB: 8 });
  try {
    fs.writeFileSync(path.join(r.dir, 'h'), pattern(4 * MiB, 1));
    fs.mkdirSync(path.join(r.dir, 'd'));
    const node = (await r.client.lookup(P.FUSE_ROOT_ID, 'h')).nodeid;
    const dirNode = (await r.client.lookup(P.FUSE_ROOT_ID, 'd')).nodeid;
    const ro = await r.client.open(node, c.O_RDONLY);
    const rq = (args: Uint8Array, n = node) => errnoOf(r.client.request(P.FUSE_SETUPMAPPING, n, args));
    const rm = (args: Uint8Array) => errnoOf(r.client.request(P.FUSE_REMOVEMAPPING, node, args));
    const W = 8n * BigInt(MiB);
    const table: Array<[string, Promise<number>, number]> = [];
    const row = (name: string, p: Promise<number>, want: number) => table.push([name, p, want]);
    // Serially: each row's outcome must not depend on another's.
    const results: Array<[string, number, number]> = [];
    const runRow = async (name: string, p: () => Promise<number>, want: number) => results.push([name, await p(), want]);
    void row;
    await runRow('out of window', () => rq(setupArgs({ foffset: 0, len: 2 * MiB, flags: READ, moffset: W })), E.EINVAL);
    await runRow('ends past the window', () => rq(setupArgs({ foffset: 0, len: 4 * MiB, flags: READ, moffset: W - 2n * BigInt(MiB) })), E.EINVAL);
    await runRow('moffset+len wraps 2^64', () => rq(setupArgs({ foffset: 0, len: -4096n, flags: READ, moffset: 8192 })), E.EINVAL);
    await runRow('foffset+len overflows', () => rq(setupArgs({ foffset: (1n << 63n) - 4096n, len: 2 * MiB, flags: READ, moffset: 0 })), E.EINVAL);
    await runRow('misaligned moffset', () => rq(setupArgs({ foffset: 0, len: 2 * MiB, flags: READ, moffset: 512 })), E.EINVAL);
    await runRow('misaligned foffset', () => rq(setupArgs({ foffset: 100, len: 2 * MiB, flags: READ, moffset: 0 })), E.EINVAL);
    await runRow('zero length', () => rq(setupArgs({ foffset: 0, len: 0, flags: READ, moffset: 0 })), E.EINVAL);
    await runRow('unknown flags', () => rq(setupArgs({ foffset: 0, len: 2 * MiB, flags: 4n, moffset: 0 })), E.EINVAL);
    await runRow('a directory', () => rq(setupArgs({ foffset: 0, len: 2 * MiB, flags: READ, moffset: 0 }), dirNode), E.EINVAL);
    await runRow('unknown node', () => rq(setupArgs({ foffset: 0, len: 2 * MiB, flags: READ, moffset: 0 }), 999999), E.ENOENT);
    await runRow('WRITE on a read-only handle', () => rq(setupArgs({ fh: BigInt(ro.fh), foffset: 0, len: 2 * MiB, flags: READ | WRITE, moffset: 0 })), E.EACCES);
    const wo = await r.client.open(node, c.O_WRONLY);
    await runRow('READ on a write-only handle', () => rq(setupArgs({ fh: BigInt(wo.fh), foffset: 0, len: 2 * MiB, flags: READ, moffset: 0 })), E.EACCES);
    fs.writeFileSync(path.join(r.dir, 'h2'), 'other');
    const other = (await r.client.lookup(P.FUSE_ROOT_ID, 'h2')).nodeid;
    await runRow('an fh of another file', () => rq(setupArgs({ fh: BigInt(wo.fh), foffset: 0, len: 2 * MiB, flags: READ, moffset: 0 }), other), E.EBADF);
    await r.client.release(node, wo.fh);
    await runRow('an fh that is no handle', () => rq(setupArgs({ fh: 12345n, foffset: 0, len: 2 * MiB, flags: READ, moffset: 0 })), E.EBADF);
    await runRow('args too short', () => rq(new Uint8Array(16)), E.EINVAL);
    await runRow('valid mapping', () => rq(setupArgs({ foffset: 0, len: 2 * MiB, flags: READ, moffset: 0 })), 0);
    await runRow('overlapping another mapping', () => rq(setupArgs({ foffset: 2 * MiB, len: 2 * MiB, flags: READ, moffset: MiB })), E.EEXIST);
    await runRow('same offset, other file range', () => rq(setupArgs({ foffset: 2 * MiB, len: 2 * MiB, flags: READ, moffset: 0 })), E.EEXIST);
    await runRow('REMOVEMAPPING of nothing mapped', () => rm(removeArgs([{ moffset: 4 * MiB, len: 2 * MiB }])), E.EINVAL);
    await runRow('REMOVEMAPPING with another length', () => rm(removeArgs([{ moffset: 0, len: MiB }])), E.EINVAL);
    await runRow('REMOVEMAPPING count 0', () => rm(removeArgs([], 0)), E.EINVAL);
    await runRow('REMOVEMAPPING huge count', () => rm(removeArgs([{ moffset: 0, len: 2 * MiB }], 0xffff_ffff)), E.EINVAL);
    await runRow('REMOVEMAPPING count past the entries', () => rm(removeArgs([{ moffset: 0, len: 2 * MiB }], 3)), E.EINVAL);
    await runRow('REMOVEMAPPING the same mapping twice', () => rm(removeArgs([{ moffset: 0, len: 2 * MiB }, { moffset: 0, len: 2 * MiB }])), E.EINVAL);
    await runRow('REMOVEMAPPING valid', () => rm(removeArgs([{ moffset: 0, len: 2 * MiB }])), 0);
    await runRow('REMOVEMAPPING again', () => rm(removeArgs([{ moffset: 0, len: 2 * MiB }])), E.EINVAL);
    for (const [name, got, want] of results) assert.is(got, want, `${name}: errno ${got}, expected ${want}`);
    assert.is(r.window.mapped.size, 0, 'nothing left mapped in the window');
    // The daemon serves on.
    const st = await r.client.statfs();
    assert.ok(st.blocks > 0);
    await r.client.release(node, ro.fh);
  } finally {
    await r.close();
  }
});

hostile('WRITE mapping on a read-only share is EROFS; READ works', async () => {
  const r = await rig({ readonly: true });
  try {
    fs.writeFileSync(path.join(r.dir, 'ro'), pattern(MiB, 2));
    const node = (await r.client.lookup(P.FUSE_ROOT_ID, 'ro')).nodeid;
    assert.is(await errnoOf(r.client.request(P.FUSE_SETUPMAPPING, node,
      setupArgs({ foffset: 0, len: 2 * MiB, flags: READ | WRITE, moffset: 0 }))), E.EROFS);
    assert.is(await errnoOf(r.client.request(P.FUSE_SETUPMAPPING, node,
      setupArgs({ foffset: 0, len: 2 * MiB, flags: READ, moffset: 0 }))), 0);
  } finally {
    await r.close();
  }
});

hostile('a VMM that refuses the map: EIO, nothing recorded, the next map works', async () => {
  const r = await rig();
  try {
    fs.writeFileSync(path.join(r.dir, 'n'), pattern(MiB, 6));
    const node = (await r.client.lookup(P.FUSE_ROOT_ID, 'n')).nodeid;
    const args = setupArgs({ foffset: 0, len: 2 * MiB, flags: READ, moffset: 0 });
    r.window.refuse = true;
    assert.is(await errnoOf(r.client.request(P.FUSE_SETUPMAPPING, node, args)), E.EIO);
    assert.is(r.daemon.dax!.mappingCount, 0);
    r.window.refuse = false;
    assert.is(await errnoOf(r.client.request(P.FUSE_SETUPMAPPING, node, args)), 0, 'the same range maps now');
    assert.is(r.window.mapped.size, 1);
  } finally {
    await r.close();
  }
});

hostile('a frontend that never answers the map request: an error reply, and the daemon serves on', async () => {
  const r = await rig();
  try {
    fs.writeFileSync(path.join(r.dir, 's'), pattern(MiB, 4));
    const node = (await r.client.lookup(P.FUSE_ROOT_ID, 's')).nodeid;
    r.window.silent = true;
    const pending = errnoOf(r.client.request(P.FUSE_SETUPMAPPING, node,
      setupArgs({ foffset: 0, len: 2 * MiB, flags: READ, moffset: 0 })));
    // Meanwhile other requests are served (the SETUPMAPPING is parked, not blocking the queue).
    const st = await r.client.statfs();
    assert.ok(st.blocks > 0, 'served while the map request waits');
    assert.is(await pending, E.ETIMEDOUT, 'timed out with an error');
    // The channel is closed after a timeout: DAX is off until the frontend gives a new one; the rest serves on.
    assert.is(await errnoOf(r.client.request(P.FUSE_SETUPMAPPING, node,
      setupArgs({ foffset: 0, len: 2 * MiB, flags: READ, moffset: 0 }))), E.ENOTCONN);
    assert.ok((await r.client.lookup(P.FUSE_ROOT_ID, 's')).nodeid > 0);
  } finally {
    await r.close();
  }
});

hostile('the backend channel: unasked GET_SHMEM_CONFIG, SET_BACKEND_REQ_FD without BACKEND_REQ, junk on the channel', async () => {
  const r = await rig();
  try {
    const socket = path.join(tmp, `dax${rigNo - 1}.sock`);
    // A second frontend may not connect while one is served: use the rig's own for the channel, a fresh daemon
    // for the negotiation cases.
    const dir = fs.mkdtempSync(path.join(tmp, 'neg-'));
    const sock2 = path.join(tmp, 'neg.sock');
    const d2 = await VirtiofsDaemon.start({ socketPath: sock2, sharedDir: dir, logLevel: 'error', daxWindowSize: 4 * MiB });
    try {
      const fe = await VhostUserFrontend.connect(sock2, { timeoutMs: 2000 });
      await fe.negotiate({ protocolFeatures: bit(PF.MQ) | bit(PF.REPLY_ACK) });
      const pair = new Int32Array(2);
      native.socketpair(pair);
      const nack = await fe.setBackendReqFd(pair[1]!).then(() => 'ok', (e: Error) => (e as { code?: string }).code);
      assert.is(nack, 'VU_ERR_NACK', 'SET_BACKEND_REQ_FD without BACKEND_REQ is refused');
      native.close(pair[0]!);
      native.close(pair[1]!);
      const cfg = await fe.getShmemConfig().then(() => 'answered', () => 'refused');
      assert.is(cfg, 'refused', 'GET_SHMEM_CONFIG without SHMEM ends the session (a reply body we may not give)');
      assert.ok(await fe.waitClosed(2000));
      fe.close();
      const fe2 = await VhostUserFrontend.connect(sock2, { timeoutMs: 2000 });
      await fe2.negotiate({ protocolFeatures: DAX_PROTOCOL_FEATURES });
      assert.equal(await fe2.getShmemConfig(), [BigInt(4 * MiB)], 'GET_SHMEM_CONFIG: one region, the window');
      fe2.close();
    } finally {
      await d2.close();
    }
    void socket;

    // Junk from the frontend on the backend channel: the channel closes, DAX answers ENOTCONN, the rest serves on.
    fs.writeFileSync(path.join(r.dir, 'j'), pattern(MiB, 5));
    const node = (await r.client.lookup(P.FUSE_ROOT_ID, 'j')).nodeid;
    const junk = new Uint8Array(20);
    encodeHeader(new DataView(junk.buffer), 0, 99, VHOST_USER_VERSION | VHOST_USER_REPLY_MASK, 8);
    native.sendmsg(r.window.fd, junk, 0, junk.length, []);
    assert.ok(await until(() => !r.daemon.dax!.connected, 10000), 'the device closed the channel');
    assert.is(await errnoOf(r.client.request(P.FUSE_SETUPMAPPING, node,
      setupArgs({ foffset: 0, len: 2 * MiB, flags: READ, moffset: 0 }))), E.ENOTCONN);
    assert.ok((await r.client.statfs()).blocks > 0, 'served on');
    void VR;
  } finally {
    await r.close();
  }
});

hostile('random SETUPMAPPING/REMOVEMAPPING sequences: the answers and the window match a model', async () => {
  const r = await rig({ windowMiB: 8 });
  try {
    fs.writeFileSync(path.join(r.dir, 'a'), pattern(8 * MiB, 11));
    fs.writeFileSync(path.join(r.dir, 'b'), pattern(8 * MiB, 12));
    const nodes = [(await r.client.lookup(P.FUSE_ROOT_ID, 'a')).nodeid, (await r.client.lookup(P.FUSE_ROOT_ID, 'b')).nodeid];
    interface M { moffset: number; len: number; node: number; foffset: number; writable: boolean }
    let model: M[] = [];
    let x = 0x2545f491;
    const rnd = (n: number): number => {
      x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
      return (x >>> 0) % n;
    };
    const pick = <T>(xs: T[]): T => xs[rnd(xs.length)]!;
    for (let step = 0; step < 120; step++) {
      if (rnd(3) > 0) {
        const moffset = pick([0, 2 * MiB, 4 * MiB, 6 * MiB, MiB, 8 * MiB, 4096, 100]);
        const len = pick([2 * MiB, 2 * MiB, 4 * MiB, 4096, 0, 10 * MiB]);
        const foffset = pick([0, 2 * MiB, 4096]);
        const flags = pick([READ, READ, READ | WRITE, WRITE, 0n, 8n]);
        const node = pick(nodes);
        let want: number;
        const same = model.find((m) => m.moffset === moffset);
        if ((flags & ~3n) !== 0n || flags === 0n || len === 0 || moffset % 4096 || len % 4096 || moffset + len > 8 * MiB) want = E.EINVAL;
        else if (same && (same.len !== len || same.node !== node || same.foffset !== foffset)) want = E.EEXIST;
        else if (same) {
          want = 0;
          if ((flags & WRITE) !== 0n) same.writable = true;
        } else if (model.some((m) => m.moffset < moffset + len && moffset < m.moffset + m.len)) want = E.EEXIST;
        else {
          want = 0;
          model.push({ moffset, len, node, foffset, writable: (flags & WRITE) !== 0n });
        }
        const got = await errnoOf(r.client.request(P.FUSE_SETUPMAPPING, node, setupArgs({ foffset, len, flags, moffset })));
        assert.is(got, want, `step ${step}: SETUPMAPPING ${moffset}+${len} f${foffset} flags ${flags} node ${node}`);
      } else {
        const n = 1 + rnd(2);
        const entries = Array.from({ length: n }, () => (model.length > 0 && rnd(4) > 0
          ? (({ moffset, len }) => ({ moffset, len }))(pick(model)) : { moffset: pick([0, 2 * MiB, 6 * MiB]), len: pick([2 * MiB, 4096]) }));
        const hit = entries.map((e) => model.find((m) => m.moffset === e.moffset && m.len === e.len));
        const dup = new Set(hit).size !== hit.length;
        const want = hit.some((h) => h === undefined) || dup ? E.EINVAL : 0;
        if (want === 0) model = model.filter((m) => !hit.includes(m));
        const got = await errnoOf(r.client.request(P.FUSE_REMOVEMAPPING, nodes[0]!, removeArgs(entries)));
        assert.is(got, want, `step ${step}: REMOVEMAPPING ${JSON.stringify(entries)}`);
      }
      r.window.pump();
      const pieces = [...r.window.mapped].sort((p, q) => p[0] - q[0]).map(([o, l]) => `${o}+${l}`).join(' ');
      const want = model.map((m) => [m.moffset, m.len] as const).sort((p, q) => p[0] - q[0]).map(([o, l]) => `${o}+${l}`).join(' ');
      assert.is(pieces, want, `step ${step}: the window holds what the model says`);
    }
    assert.ok((await r.client.statfs()).blocks > 0);
  } finally {
    await r.close();
  }
});

hostile.run();

// ---- negotiation and life cycle -------------------------------------------------------------------------------------

const life = suite('dax: INIT flags, per-inode DAX, reset and disconnect');

life('INIT: FUSE_MAP_ALIGNMENT with map_alignment 12; SETUPMAPPING without a window is ENOSYS', async () => {
  const r = await rig();
  try {
    const init = r.client.initReply!;
    assert.ok((init.flags & P.FUSE_MAP_ALIGNMENT) !== 0);
    assert.is(init.mapAlignment, 12);
    assert.is(init.flags2, 0, 'no per-inode DAX unless --inode-dax');
  } finally {
    await r.close();
  }
  const dir = fs.mkdtempSync(path.join(tmp, 'nodax-'));
  const sock = path.join(tmp, 'nodax.sock');
  const d = await VirtiofsDaemon.start({ socketPath: sock, sharedDir: dir, logLevel: 'error' });
  try {
    const client = await FuseClient.connect(sock);
    const init = await client.init({ flags: P.FUSE_ASYNC_READ | P.FUSE_MAP_ALIGNMENT });
    assert.is(init.flags & P.FUSE_MAP_ALIGNMENT, 0, 'no window, no alignment');
    fs.writeFileSync(path.join(dir, 'x'), 'x');
    const node = (await client.lookup(P.FUSE_ROOT_ID, 'x')).nodeid;
    assert.is(await errnoOf(client.request(P.FUSE_SETUPMAPPING, node,
      setupArgs({ foffset: 0, len: 2 * MiB, flags: READ, moffset: 0 }))), E.ENOSYS);
    client.close();
  } finally {
    await d.close();
  }
});

life('--inode-dax=size:1m: FUSE_HAS_INODE_DAX, and FUSE_ATTR_DAX on large regular files only', async () => {
  const r = await rig({ inodeDax: { kind: 'size', minBytes: MiB },
    init: { flags: P.FUSE_ASYNC_READ | P.FUSE_MAP_ALIGNMENT | P.FUSE_INIT_EXT, flags2: P.FUSE2_HAS_INODE_DAX } });
  try {
    assert.ok((r.client.initReply!.flags & P.FUSE_INIT_EXT) !== 0);
    assert.is(r.client.initReply!.flags2, P.FUSE2_HAS_INODE_DAX);
    fs.writeFileSync(path.join(r.dir, 'big'), pattern(2 * MiB, 1));
    fs.writeFileSync(path.join(r.dir, 'small'), 'small');
    fs.mkdirSync(path.join(r.dir, 'dir'));
    assert.is((await r.client.lookup(P.FUSE_ROOT_ID, 'big')).attr.flags & P.FUSE_ATTR_DAX, P.FUSE_ATTR_DAX);
    assert.is((await r.client.lookup(P.FUSE_ROOT_ID, 'small')).attr.flags & P.FUSE_ATTR_DAX, 0);
    assert.is((await r.client.lookup(P.FUSE_ROOT_ID, 'dir')).attr.flags & P.FUSE_ATTR_DAX, 0);
    const big = (await r.client.lookup(P.FUSE_ROOT_ID, 'big')).nodeid;
    assert.is((await r.client.getattr(big)).attr.flags & P.FUSE_ATTR_DAX, P.FUSE_ATTR_DAX, 'GETATTR too');
    const dh = await r.client.opendir(P.FUSE_ROOT_ID);
    const plus = await r.client.readdirplus(P.FUSE_ROOT_ID, dh.fh, 0, 65536);
    const flagOf = (name: string) => plus.find((d) => d.name === name)!.entry.attr.flags & P.FUSE_ATTR_DAX;
    assert.is(flagOf('big'), P.FUSE_ATTR_DAX, 'READDIRPLUS too');
    assert.is(flagOf('small'), 0);
    await r.client.releasedir(P.FUSE_ROOT_ID, dh.fh);
  } finally {
    await r.close();
  }
});

life('RESET_DEVICE unmaps every mapping; a disconnect forgets them', async () => {
  const r = await rig();
  try {
    fs.writeFileSync(path.join(r.dir, 'm'), pattern(4 * MiB, 8));
    const node = (await r.client.lookup(P.FUSE_ROOT_ID, 'm')).nodeid;
    await r.driver.read(node, 0, 4 * MiB, 4 * MiB);
    const dax = r.daemon.dax!;
    assert.is(dax.mappingCount, 2);
    assert.is(r.window.mapped.size, 2);
    await r.client.frontend.resetDevice();
    assert.is(dax.mappingCount, 0, 'the device forgot them');
    assert.ok(await until(() => { r.window.pump(); return r.window.mapped.size === 0; }, 10000), 'and the window is empty');
  } finally {
    await r.close();
  }
  const r2 = await rig();
  try {
    fs.writeFileSync(path.join(r2.dir, 'm'), pattern(MiB, 8));
    const node = (await r2.client.lookup(P.FUSE_ROOT_ID, 'm')).nodeid;
    await r2.driver.read(node, 0, MiB, MiB);
    const dax = r2.daemon.dax!;
    assert.is(dax.mappingCount, 1);
    r2.client.close();
    assert.ok(await until(() => !dax.connected && dax.mappingCount === 0, 10000), 'gone with the frontend');
  } finally {
    await r2.close();
  }
});

life('a DAX session leaves no fd behind once the frontend and the daemon are closed', async () => {
  const before = countOpenFds();
  const r = await rig();
  fs.writeFileSync(path.join(r.dir, 'fd'), pattern(3 * MiB, 9));
  const node = (await r.client.lookup(P.FUSE_ROOT_ID, 'fd')).nodeid;
  await r.driver.read(node, 0, 3 * MiB, 3 * MiB);
  await r.client.setattr(node, { size: 1000 });
  await r.close();
  assert.ok(await until(() => countOpenFds() <= before, 10000), `fds: ${countOpenFds()} after, ${before} before`);
});

life.run();

// ---- the command line ----------------------------------------------------------------------------------------------

const cli = suite('dax: --dax-window, --dax-protocol, --inode-dax');

cli('parsed into daemon options; bad values are ConfigErrors', async () => {
  const { parseCommandLine } = await import('../host/cli.js');
  const base = ['--socket-path=/tmp/x.sock', '--shared-dir=/tmp'];
  const on = parseCommandLine([...base, '--dax-window=1G', '--dax-protocol=legacy', '--inode-dax=size:64k']);
  assert.ok(typeof on === 'object');
  if (typeof on !== 'object') return;
  assert.is(on.daxWindowSize, 1024 * MiB);
  assert.is(on.daxProtocol, 'legacy');
  assert.equal(on.inodeDax, { kind: 'size', minBytes: 64 * 1024 });
  const off = parseCommandLine(base);
  assert.ok(typeof off === 'object' && off.daxWindowSize === undefined, 'no window unless asked');
  for (const bad of [['--dax-window=3M'], ['--dax-window=0'], ['--dax-window=32G'], ['--dax-window=1G', '--dax-protocol=qemu'],
    ['--dax-window=1G', '--inode-dax=big'], ['--inode-dax=always'], ['--dax-protocol=shmem']]) {
    assert.throws(() => parseCommandLine([...base, ...bad]), /dax/, bad.join(' '));
  }
  assert.throws(() => parseCommandLine(['--mountpoint=/mnt', '--shared-dir=/tmp', '--dax-window=2M']), /VMM/);
});

cli.run();

// ---- the bindings ----------------------------------------------------------------------------------------------------

const bindings = suite('dax: window bindings (windowReserve, mmapInto, windowUnmap, fcntlGetfl)');

bindings('a reserved window takes a file at a fixed offset and gives it back', () => {
  assert.is(native.windowReserve(0), -E.EINVAL);
  assert.is(native.windowReserve(4095), -E.EINVAL);
  const w = native.windowReserve(4 * MiB);
  assert.instance(w, ArrayBuffer);
  if (typeof w === 'number') return;
  assert.is(w.byteLength, 4 * MiB);
  const fd = native.memfdCreate('dax-binding-test', 0);
  native.ftruncate(fd, 2 * MiB);
  native.pwrite(fd, new TextEncoder().encode('hello window'), MiB);
  assert.is(native.mmapInto(w, 2 * MiB, 2 * MiB, c.PROT_READ | c.PROT_WRITE, fd, 0), 0);
  assert.is(Buffer.from(new Uint8Array(w, 3 * MiB, 12)).toString(), 'hello window', 'the file at window offset 2 MiB');
  new Uint8Array(w, 3 * MiB, 5).set(new TextEncoder().encode('HELLO'));
  const back = new Uint8Array(12);
  native.pread(fd, back, MiB);
  assert.is(Buffer.from(back).toString(), 'HELLO window', 'writes through the window reach the file');
  assert.is(native.windowUnmap(w, 2 * MiB, 2 * MiB), 0);
  assert.is(native.windowUnmap(w, 4 * MiB, 4096), -E.EFAULT, 'outside the window');
  assert.is(native.windowUnmap(w, 100, 4096), -E.EINVAL, 'unaligned');
  assert.is(native.fcntlGetfl(fd) & c.O_ACCMODE, c.O_RDWR);
  assert.ok(native.fcntlGetfl(-1) < 0);
  native.close(fd);
});

bindings.run();

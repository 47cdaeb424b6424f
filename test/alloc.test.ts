/**
 * "Allocation-free on the request path" (STYLE.md), proven: the same assembly/index.ts built with a real allocator
 * (`--runtime incremental`, `--use ASC_RTRACE=1`: asconfig.json target `rtrace` -> build/core.rtrace.wasm) reports
 * every allocation, resize, move and free through the `rtrace` imports. A batch of 1000 requests of several
 * opcodes — pop, args copy, READ/WRITE iovecs, replySend, replyNone, encodeAttrOut/encodeEntryOut, dirent
 * packing, bad chains and bad messages, notification decisions — must count zero.
 *
 * The counter itself is checked to see an allocation: the rtrace build exports the runtime (`__new`), and one
 * `__new` on a separate instance must count exactly one (otherwise this test could not fail).
 *
 * assemblyscript 0.28 does not ship its JS rtrace module (`#rtrace` points at a lib/rtrace that is not in the
 * package), so the hooks are implemented here; Core.create cannot pass extra imports, so the rtrace build is
 * instantiated here too, with the host import host/core.ts gives it.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { VirtqueueDriver } from '../host/frontend/virtqueue-driver.js';
import { fuseRequest } from './util/fuse-request.js';
import type { CoreExports } from '../host/core.js';
import { native } from '../host/native-loader.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
/** CORE_RTRACE_WASM: another rtrace build (e.g. one with a deliberate allocation, to see this test fail). */
const WASM = process.env.CORE_RTRACE_WASM ?? resolve(root, 'build', 'core.rtrace.wasm');

/** Builds the rtrace target when it is missing or older than any assembly/ source (CI runs only build:wasm). */
async function ensureBuilt(): Promise<void> {
  if (process.env.CORE_RTRACE_WASM) return;
  const srcDir = resolve(root, 'assembly');
  const newest = Math.max(...readdirSync(srcDir).map((f) => statSync(resolve(srcDir, f)).mtimeMs),
    statSync(resolve(root, 'asconfig.json')).mtimeMs);
  if (existsSync(WASM) && statSync(WASM).mtimeMs >= newest) return;
  const asc = (await import('assemblyscript/asc')).default;
  const cwd = process.cwd();
  process.chdir(root);
  try {
    let err = '';
    const r = await asc.main(['assembly/index.ts', '--target', 'rtrace'], {
      stderr: { write: (s: string | Uint8Array) => { err += String(s); return true; } } as never,
    });
    if (r.error) throw new Error(`asc --target rtrace failed: ${r.error.message}\n${err}`);
  } finally {
    process.chdir(cwd);
  }
}

interface Counts { init: number; alloc: number; resize: number; move: number; free: number; collect: number }

/** The rtrace build's exports: the core's own ABI plus the runtime's allocator entry. */
type RawCore = CoreExports & { __new(size: number, id: number): number };

type MapChunk = (region: number, chunk: number, slot: number, length: number) => number;

async function instantiate(mapChunk: MapChunk = () => -22): Promise<{ e: RawCore; counts: Counts; mod: WebAssembly.Module }> {
  await ensureBuilt();
  const mod = await WebAssembly.compile(readFileSync(WASM));
  const counts: Counts = { init: 0, alloc: 0, resize: 0, move: 0, free: 0, collect: 0 };
  const rtrace = {
    oninit: () => { counts.init++; },
    onalloc: () => { counts.alloc++; },
    onresize: () => { counts.resize++; },
    onmove: () => { counts.move++; },
    onfree: () => { counts.free++; },
    onvisit: () => 1,
    oncollect: () => { counts.collect++; },
    oninterrupt: () => {},
    onyield: () => {},
    // rtrace's store/load checks: pass the address through unchanged
    onstore: (ptr: number) => ptr,
    onload: (ptr: number) => ptr,
  };
  const instance = await WebAssembly.instantiate(mod, { rtrace, host: { mapChunk } });
  return { e: instance.exports as unknown as RawCore, counts, mod };
}

const GPA = 0x4000_0000n;
const RAM = 16 << 20;
const CHUNK = 2 << 20;
const SLOT = 2 * CHUNK;

/** A FUSE request with uid/gid/pid 0 (the core's allocation count does not depend on them). */
const request = (opcode: number, unique: bigint, nodeid: bigint, args: Uint8Array): Uint8Array =>
  fuseRequest(opcode, unique, nodeid, args, { uid: 0, gid: 0, pid: 0 });

function readIn(size: number): Uint8Array {
  const b = new Uint8Array(40);
  new DataView(b.buffer).setUint32(16, size, true);
  return b;
}

/** getdents64 output with `n` records. */
function dirents(n: number): Uint8Array {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const name = `entry-${i}`;
    const reclen = (19 + name.length + 1 + 7) & ~7;
    const r = new Uint8Array(reclen);
    const v = new DataView(r.buffer);
    v.setBigUint64(0, BigInt(1000 + i), true);
    v.setBigUint64(8, BigInt(i + 1), true);
    v.setUint16(16, reclen, true);
    r[18] = 8;
    r.set(new TextEncoder().encode(name), 19);
    out.push(...r);
  }
  return Uint8Array.from(out);
}

test('the rtrace build imports the allocator hooks and the counter sees an allocation', async () => {
  const { e, counts, mod } = await instantiate();
  const hooks = WebAssembly.Module.imports(mod).filter((i) => i.module === 'rtrace').map((i) => i.name);
  assert.ok(hooks.includes('onalloc'), `rtrace.onalloc is imported (${hooks.join(', ')})`);
  assert.is(counts.alloc, 0, 'nothing allocated at start-up');
  // The positive control: one allocation through the real allocator must be counted.
  const ptr = e.__new(64, 0);
  assert.ok(ptr > 0);
  assert.is(counts.alloc, 1, 'one __new = one onalloc');
  assert.is(counts.init, 1, 'the TLSF allocator initialised on first use');
});

/**
 * 1000 requests of several opcodes, their buffers moving over six 2 MiB chunks. Windowed: guest RAM is a memfd the
 * core reaches through a window of 2 slots (one pinned by the rings), so chunks are mapped and evicted all along.
 */
async function batch(windowed: boolean): Promise<void> {
  let fd = -1;
  let memory: WebAssembly.Memory | undefined;
  const C = native.constants;
  let misses = 0;
  const { e, counts } = await instantiate((_region, chunk, slot, length) =>
    ++misses && native.mmapInto(memory!.buffer, slot, Math.ceil(length / 4096) * 4096, C.PROT_READ | C.PROT_WRITE, fd, chunk * CHUNK));
  memory = e.memory;
  let lin: number;
  if (!windowed) {
    // guest RAM: grown pages registered as one region (as Core.addTestRegion does)
    lin = e.memory.grow(RAM / 65536) * 65536;
    assert.is(e.memAddRegion(GPA, GPA, BigInt(RAM), lin), 0);
  } else {
    const window = e.memory.grow(2 * SLOT / 65536) * 65536;
    lin = e.memory.grow(RAM / 65536) * 65536;
    fd = native.memfdCreate('alloc-test-ram', 0);
    assert.is(native.ftruncate(fd, RAM), 0);
    assert.is(native.mmapInto(e.memory.buffer, lin, RAM, C.PROT_READ | C.PROT_WRITE, fd, 0), 0);
    const base = BigInt(native.addressOf(e.memory.buffer));
    e.memSetLinearBase(base);
    e.memReset();
    assert.is(e.memSetWindow(window, 2), 0);
    assert.is(e.memAddRegionWindowed(GPA, GPA, BigInt(RAM), base + BigInt(lin), 0), 0);
  }
  const startCounts = { ...counts };
  const bytes = () => new Uint8Array(e.memory.buffer);
  const num = 64;
  const driver = new VirtqueueDriver({ gpa: GPA, bytes: () => bytes().subarray(lin, lin + RAM) },
    { num, ringGpa: GPA, eventIdx: true });
  assert.is(e.queueSetNum(0, num), 0);
  assert.is(e.queueSetAddr(0, driver.layout.descGpa, driver.layout.usedGpa, driver.layout.availGpa), 0);
  e.queueSetBase(0, 0);
  e.queueSetFeatures(0, 1, 1);
  const bufBase = GPA + 0x8_0000n;
  const put = (gpa: bigint, data: Uint8Array) => bytes().set(data, lin + Number(gpa - GPA));
  const statx = e.statxPtr();
  bytes().fill(7, statx, statx + 256);
  const listing = dirents(40);
  bytes().set(listing, e.direntBufPtr());

  const kinds = ['getattr', 'lookup', 'read', 'write', 'readdir', 'readdirplus', 'forget', 'badmsg', 'badchain', 'init'];
  let served = 0;
  for (let i = 0; i < 1000; i++) {
    const kind = kinds[i % kinds.length];
    const unique = BigInt(i + 1);
    const inGpa = bufBase + BigInt((i % 6) * CHUNK);
    const outGpa = bufBase + BigInt(((i + 3) % 6) * CHUNK) + 0x1_0000n;
    let req: Uint8Array;
    let readable = [{ gpa: inGpa, len: 0 }];
    let writable = [{ gpa: outGpa, len: 4096 }, { gpa: outGpa + 0x2000n, len: 8192 }];
    switch (kind) {
      case 'getattr': req = request(3, unique, 1n, new Uint8Array(16)); break;
      case 'lookup': req = request(1, unique, 1n, new TextEncoder().encode('name\0')); break;
      case 'read': req = request(15, unique, 2n, readIn(6000)); break;
      case 'write': {
        req = request(16, unique, 2n, new Uint8Array(40 + 3000));
        new DataView(req.buffer).setUint32(40 + 16, 3000, true);
        break;
      }
      case 'readdir': case 'readdirplus': req = request(kind === 'readdir' ? 28 : 44, unique, 1n, readIn(4096)); break;
      case 'forget': req = request(2, unique, 5n, new Uint8Array(8)); break;
      case 'badmsg': req = request(3, unique, 1n, new Uint8Array(4)); break; // args shorter than getattr_in
      case 'badchain': req = request(3, unique, 1n, new Uint8Array(16)); break;
      default: req = request(26, unique, 0n, new Uint8Array(64));
    }
    put(inGpa, req);
    readable = [{ gpa: inGpa, len: Math.min(req.length, 1000) }, { gpa: inGpa + 1000n, len: Math.max(0, req.length - 1000) }]
      .filter((r) => r.len > 0);
    if (req.length > 1000) put(inGpa + 1000n, req.subarray(1000));
    if (kind === 'badchain') writable = [{ gpa: 0xdead_0000_0000n, len: 16 }]; // not guest RAM
    driver.add(readable, writable, { indirect: i % 3 === 0 });
    driver.publish();
    const rc = e.queuePop(0);
    if (kind === 'badchain') {
      assert.is(rc, -1);
    } else if (kind === 'badmsg') {
      assert.is(rc, -2);
    } else {
      assert.is(rc, 1, `${kind} pops`);
      const reply = e.replyPtr();
      switch (kind) {
        case 'getattr': assert.is(e.replySend(0, e.encodeAttrOut(reply, 1.5, statx), 0), 0); break;
        case 'lookup': assert.is(e.replySend(0, e.encodeEntryOut(reply, 7, 1, 1, 1, statx), 0), 0); break;
        case 'read': {
          const n = e.payloadReadIov(16, 6000);
          assert.ok(n >= 1);
          assert.is(e.replySend(0, 0, 6000), 0);
          break;
        }
        case 'write': {
          assert.ok(e.payloadWriteIov(40, 3000) >= 1);
          new DataView(e.memory.buffer).setUint32(reply, 3000, true);
          assert.is(e.replySend(0, 8, 0), 0);
          break;
        }
        case 'readdir': case 'readdirplus': {
          e.direntsBegin(listing.length);
          let at = 0;
          while (e.direntNext() === 1) {
            const n = kind === 'readdir' ? e.direntEmit(at, 4096) : e.direntPlusEmit(at, 4096, 9, 1, 1, 1, statx);
            if (n === 0) break;
            at += n;
          }
          assert.ok(at > 0);
          assert.is(e.replySend(0, at, 0), 0);
          break;
        }
        case 'forget': e.replyNone(); break;
        default: assert.is(e.replySend(0, 64, 0), 0);
      }
      served++;
    }
    e.queueNeedsNotify(0);
    assert.is(driver.pollUsed().length, 1);
  }
  assert.is(served, 800);
  assert.equal(counts, startCounts, 'no allocation, resize, move, free or collection during the batch');
  assert.is(counts.alloc, 0);
  if (windowed) {
    assert.is(e.memWindowSlotsMapped(), 2, 'the window was in use');
    assert.ok(misses > 500, `chunks were mapped and evicted along the batch (${misses} misses)`);
    native.close(fd);
  }
}

test('1000 requests of several opcodes allocate nothing (flat guest RAM)', () => batch(false));

test('1000 requests of several opcodes allocate nothing (windowed guest RAM, 2 slots)', () => batch(true));

test('the DAX range allocator: 20000 map/lookup/reclaim/unmap/pin operations allocate nothing', async () => {
  const { e, counts } = await instantiate();
  const before = { ...counts };
  assert.is(e.daxInit(64), 0);
  let x = 12345;
  for (let i = 0; i < 20000; i++) {
    x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
    const node = 1 + ((x >>> 0) % 7);
    const idx = (x >>> 8) % 40;
    let r = e.daxLookup(node, idx);
    if (r < 0) {
      r = e.daxMap(node, idx, i & 1);
      if (r === -28) {
        const v = e.daxReclaimVictim();
        if (v >= 0) e.daxUnmap(v);
        r = e.daxMap(node, idx, 0);
      }
    }
    if (r >= 0 && (x & 3) === 0) e.daxSetWritable(r);
    if (r >= 0 && (x & 7) === 1) { e.daxPin(r); e.daxUnpin(r); }
    if (e.daxNeedsReclaim() !== 0 && (x & 15) === 2) e.daxNextOfNode(node, -1);
  }
  assert.is(e.daxBusyCount() + e.daxFreeCount(), 64);
  assert.equal(counts, before, 'no allocator call');
});

test('500 linear (/dev/fuse) requests allocate nothing', async () => {
  const { e, counts } = await instantiate();
  const startCounts = { ...counts };
  const bytes = () => new Uint8Array(e.memory.buffer);
  const [inPtr, outPtr, size] = [e.linearInPtr(), e.linearOutPtr(), e.linearBufSize()];
  const kinds = ['getattr', 'read', 'write', 'forget', 'badmsg'];
  for (let i = 0; i < 500; i++) {
    const kind = kinds[i % kinds.length];
    const unique = BigInt(i + 1);
    let req: Uint8Array;
    switch (kind) {
      case 'read': req = request(15, unique, 2n, readIn(6000)); break;
      case 'write': {
        req = request(16, unique, 2n, new Uint8Array(40 + 3000));
        new DataView(req.buffer).setUint32(40 + 16, 3000, true);
        break;
      }
      case 'forget': req = request(2, unique, 5n, new Uint8Array(8)); break;
      case 'badmsg': req = request(3, unique, 1n, new Uint8Array(4)); break;
      default: req = request(3, unique, 1n, new Uint8Array(16));
    }
    bytes().set(req, inPtr);
    const rc = e.linearPop(inPtr, req.length, outPtr, size);
    if (kind === 'badmsg') {
      assert.is(rc, -2);
      assert.is(e.linearReplyLen(), 16);
      continue;
    }
    assert.is(rc, 1, `${kind} pops`);
    switch (kind) {
      case 'read': assert.ok(e.payloadReadIov(16, 6000) === 1); assert.is(e.replySend(0, 0, 6000), 0); break;
      case 'write': assert.ok(e.payloadWriteIov(40, 3000) === 1); assert.is(e.replySend(0, 8, 0), 0); break;
      case 'forget': e.replyNone(); break;
      default: assert.is(e.replySend(0, e.encodeAttrOut(e.replyPtr(), 1.5, e.statxPtr()), 0), 0);
    }
    assert.is(e.linearReplyLen(), { read: 6016, write: 24, forget: 0, getattr: 120 }[kind]);
  }
  assert.equal(counts, startCounts, 'no allocation, resize, move, free or collection during the batch');
});

test.run();

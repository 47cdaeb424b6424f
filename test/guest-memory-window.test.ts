/**
 * Guest RAM larger than the core's 4 GiB: a memory table of 1 TiB described with sparse memfds (boot RAM below
 * 4 GiB, RAM above 4 GiB, a DIMM at a high guest-physical address with a file offset that is not chunk-aligned),
 * served by the real core (windowed), FuseServer and PassthroughFs. Request headers, indirect tables, rings and
 * READ/WRITE payloads lie far above 4 GiB; every byte is checked against the host file and against the memfds
 * (read back with pread). The same runs with a window of 2 slots (eviction, ring pinning), and a window of 1 slot
 * shows the "no slot" paths end as bad chains / empty replies, never a trap.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { native } from '../host/native-loader.js';
import { Core, POP_BAD_CHAIN, POP_BAD_MESSAGE, POP_REQUEST, type GuestRegion } from '../host/core.js';
import { VIRTQ_DESC_F_INDIRECT, VirtqueueDriver, type GuestBuffer } from '../host/frontend/virtqueue-driver.js';
import { FuseServer } from '../host/fuse/server.js';
import { PassthroughFs } from '../host/passthrough/passthrough-fs.js';
import type { DataSource, DataTarget, FileSystem } from '../host/fuse/filesystem.js';
import * as P from '../host/fuse/protocol.js';
import { fuseRequest } from './util/fuse-request.js';
import { KERNEL_FLAGS, cstr, initIn, readIn, struct } from './util/fuse-guest.js';

const C = native.constants;
const KiB = 1024;
const MiB = 1024 * 1024;
const GiB = 2n ** 30n;
const CHUNK = 2n * BigInt(MiB);
const UVA_DELTA = 0x7000_0000_0000n;

/** Guest RAM as sparse memfds (ftruncate costs nothing until a page is touched), reached with pread/pwrite. */
class SparseGuest {
  private constructor(readonly regions: GuestRegion[]) {}

  static create(specs: { gpa: bigint; size: bigint; mmapOffset: bigint }[]): SparseGuest {
    return new SparseGuest(specs.map((s) => {
      const fd = native.memfdCreate('sparse-guest-ram', 0);
      assert.ok(fd >= 0, 'memfd_create');
      assert.is(native.ftruncate(fd, Number(s.mmapOffset + s.size)), 0);
      return { gpa: s.gpa, size: s.size, uva: s.gpa + UVA_DELTA, mmapOffset: s.mmapOffset, fd };
    }));
  }

  /** The memfd and file position of [gpa, gpa+len), which must lie in one region. */
  locate(gpa: bigint, len: number): { fd: number; pos: number } {
    for (const r of this.regions) {
      if (gpa >= r.gpa && gpa + BigInt(len) <= r.gpa + r.size) return { fd: r.fd, pos: Number(r.mmapOffset + gpa - r.gpa) };
    }
    throw new RangeError(`0x${gpa.toString(16)}+${len} is not inside one region`);
  }

  write(gpa: bigint, data: Uint8Array): void {
    const { fd, pos } = this.locate(gpa, data.length);
    assert.is(native.pwrite(fd, data, pos), data.length);
  }

  read(gpa: bigint, len: number): Uint8Array {
    const { fd, pos } = this.locate(gpa, len);
    const out = new Uint8Array(len);
    assert.is(native.pread(fd, out, pos), len);
    return out;
  }

  /** A JS view of [gpa, gpa+size) (page-aligned file position): where the mock driver writes its rings. */
  view(gpa: bigint, size: number): { gpa: bigint; bytes(): Uint8Array } {
    const { fd, pos } = this.locate(gpa, size);
    const memory = new WebAssembly.Memory({ initial: size / 65536, maximum: size / 65536 });
    assert.is(native.mmapInto(memory.buffer, 0, size, C.PROT_READ | C.PROT_WRITE, fd, pos), 0);
    return { gpa, bytes: () => new Uint8Array(memory.buffer) };
  }

  close(): void {
    for (const r of this.regions) native.close(r.fd);
  }
}

/** 1 TiB of chunks in all: 3 GiB at 0 (512 bytes into its fd), 1013 GiB - 2 MiB from 4 GiB, an 8 GiB DIMM at 2 TiB whose data starts 2 MiB + 4 KiB into its fd. */
const LOW = { gpa: 0n, size: 3n * GiB, mmapOffset: 512n }; // not even page-aligned in its fd
const HIGH = { gpa: 4n * GiB, size: 1013n * GiB - CHUNK, mmapOffset: 0n }; // LOW's 512 bytes cost a chunk
const DIMM = { gpa: 2048n * GiB, size: 8n * GiB, mmapOffset: CHUNK + 4096n };
const RING_GPA = DIMM.gpa + 7n * GiB; // rings and indirect tables in the DIMM

function pattern(len: number, seed: number): Uint8Array {
  const out = new Uint8Array(len);
  let x = seed * 2654435761 >>> 0;
  for (let i = 0; i < len; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

interface Served { usedLen: number; error: number; body: Uint8Array; writable: GuestBuffer[] }

/** One guest (sparse 1 TiB) + the real core + FuseServer over PassthroughFs on a temporary directory. */
class BigGuestRig {
  readonly driver: VirtqueueDriver;
  private unique = 1n;

  private constructor(readonly guest: SparseGuest, readonly core: Core, readonly server: FuseServer, readonly dir: string) {
    this.driver = new VirtqueueDriver(guest.view(RING_GPA, 4 * MiB), { num: 64, ringGpa: RING_GPA, indirectMax: 16 });
    const l = this.driver.layout;
    assert.is(core.queueSetNum(0, 64), 0);
    assert.is(core.queueSetAddr(0, l.descGpa + UVA_DELTA, l.usedGpa + UVA_DELTA, l.availGpa + UVA_DELTA), 0);
    core.queueSetBase(0, 0);
    core.queueSetFeatures(0, true, true);
  }

  static async create(windowSlots?: number, fsOf?: (dir: string) => FileSystem,
    specs = [LOW, HIGH, DIMM]): Promise<BigGuestRig> {
    const guest = SparseGuest.create(specs);
    const core = await Core.create({ windowSlots });
    core.mapGuestRegions(guest.regions);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vfs-bigguest-'));
    const server = new FuseServer(fsOf?.(dir) ?? new PassthroughFs({ root: dir }), core, { cache: 'auto' });
    return new BigGuestRig(guest, core, server, dir);
  }

  /**
   * One request: header + args written at `at` (optionally split in two descriptors at `splitAt`), payload buffers
   * written where given, reply buffers where given. The reply is read back from the memfds.
   */
  serve(opcode: number, nodeId: number, args: Uint8Array, o: {
    at: bigint; splitAt?: number; payload?: { gpa: bigint; data: Uint8Array }[]; reply: GuestBuffer[]; indirect?: boolean;
  }): Served {
    const payloadLen = (o.payload ?? []).reduce((n, p) => n + p.data.length, 0);
    const req = fuseRequest(opcode, this.unique, BigInt(nodeId), args);
    new DataView(req.buffer).setUint32(0, req.length + payloadLen, true);
    this.guest.write(o.at, req);
    const readable: GuestBuffer[] = o.splitAt === undefined ? [{ gpa: o.at, len: req.length }]
      : [{ gpa: o.at, len: o.splitAt }, { gpa: o.at + BigInt(o.splitAt), len: req.length - o.splitAt }];
    for (const p of o.payload ?? []) {
      this.guest.write(p.gpa, p.data);
      readable.push({ gpa: p.gpa, len: p.data.length });
    }
    for (const w of o.reply) this.guest.write(w.gpa, new Uint8Array(w.len).fill(0xee));
    const head = this.driver.add(readable, o.reply, { indirect: o.indirect });
    this.driver.publish();
    assert.is(this.core.queuePop(0), POP_REQUEST, 'the core pops the request');
    this.server.serveCurrent();
    const used = this.driver.pollUsed();
    assert.equal(used.map((u) => u.id), [head]);
    const flat = new Uint8Array(o.reply.reduce((n, w) => n + w.len, 0));
    let at = 0;
    for (const w of o.reply) {
      flat.set(this.guest.read(w.gpa, w.len), at);
      at += w.len;
    }
    const v = new DataView(flat.buffer);
    assert.is(v.getUint32(0, true), used[0].len, 'out header len = used len');
    assert.is(v.getBigUint64(8, true), this.unique, 'unique echoed');
    this.unique++;
    return { usedLen: used[0].len, error: v.getInt32(4, true), body: flat.slice(16, used[0].len), writable: o.reply };
  }

  close(): void {
    this.core.unmapGuestRegions();
    this.guest.close();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

const FILE_SIZE = 3 * MiB;

/** INIT, LOOKUP + OPEN of a 3 MiB host file, then READs and WRITEs with every buffer far above 4 GiB. */
async function bigGuestScenario(windowSlots?: number): Promise<void> {
  const rig = await BigGuestRig.create(windowSlots);
  try {
    assert.ok(rig.core.window !== undefined, 'a 1 TiB table is windowed');
    if (windowSlots !== undefined) assert.is(rig.core.window!.slots, windowSlots);
    const content = pattern(FILE_SIZE, 1);
    fs.writeFileSync(path.join(rig.dir, 'data.bin'), content);
    const hdr = (n: number) => [{ gpa: HIGH.gpa + 1000n * GiB + BigInt(n) * CHUNK * 3n + 64n, len: 4096 }];

    // INIT: header in low RAM, reply in the DIMM.
    let r = rig.serve(P.FUSE_INIT, 0, initIn(38, KERNEL_FLAGS), { at: LOW.gpa + GiB, reply: [{ gpa: DIMM.gpa + 4096n, len: 4096 }] });
    assert.is(r.error, 0, 'INIT');

    // LOOKUP: the header straddles a 2 MiB chunk border at ~700 GiB, in two descriptors.
    const lookupAt = HIGH.gpa + 700n * GiB + CHUNK - 20n;
    r = rig.serve(P.FUSE_LOOKUP, 1, cstr('data.bin'), { at: lookupAt, splitAt: 30, reply: hdr(0) });
    assert.is(r.error, 0, 'LOOKUP');
    const nodeId = Number(new DataView(r.body.buffer).getBigUint64(0, true));
    r = rig.serve(P.FUSE_OPEN, nodeId, struct(P.OPEN_IN.SIZE, (v) => v.setUint32(P.OPEN_IN.flags, C.O_RDWR, true)),
      { at: HIGH.gpa + 5n * GiB, reply: hdr(1) });
    assert.is(r.error, 0, 'OPEN');
    const fh = Number(new DataView(r.body.buffer).getBigUint64(P.OPEN_OUT.fh, true));

    // READ 1 MiB from 4 KiB on: the out header alone at ~900 GiB, then 512 KiB at the top of RAM above 4 GiB,
    // 256 KiB straddling a chunk border in the DIMM, 256 KiB in low RAM; the chain through an indirect table.
    const readBufs: GuestBuffer[] = [
      { gpa: HIGH.gpa + 900n * GiB + 8n, len: 16 },
      { gpa: HIGH.gpa + HIGH.size - 512n * 1024n, len: 512 * KiB },
      { gpa: DIMM.gpa + 3n * GiB + CHUNK - 4096n, len: 256 * KiB },
      { gpa: LOW.gpa + 2n * GiB, len: 256 * KiB },
    ];
    r = rig.serve(P.FUSE_READ, nodeId, readIn(fh, 4096n, MiB), { at: HIGH.gpa + 512n * GiB, reply: readBufs, indirect: true });
    assert.is(r.error, 0, 'READ');
    assert.is(r.usedLen, 16 + MiB);
    assert.ok(Buffer.from(r.body).equals(Buffer.from(content.subarray(4096, 4096 + MiB))),
      'READ data in guest memory = the host file');

    // WRITE 600 KiB at 1 MiB: header + write_in at ~1 TiB - 8 GiB, payload in the DIMM and in high RAM.
    const payload = pattern(600 * KiB, 2);
    const writeIn = struct(P.WRITE_IN.SIZE, (v) => {
      v.setBigUint64(P.WRITE_IN.fh, BigInt(fh), true);
      v.setBigUint64(P.WRITE_IN.offset, BigInt(MiB), true);
      v.setUint32(P.WRITE_IN.size, payload.length, true);
    });
    r = rig.serve(P.FUSE_WRITE, nodeId, writeIn, {
      at: HIGH.gpa + HIGH.size - 8n * GiB, reply: hdr(2),
      payload: [
        { gpa: DIMM.gpa + DIMM.size - 200n * 1024n, data: payload.subarray(0, 200 * KiB) },
        { gpa: HIGH.gpa + 333n * GiB + CHUNK - 1000n, data: payload.subarray(200 * KiB) },
      ],
    });
    assert.is(r.error, 0, 'WRITE');
    assert.is(new DataView(r.body.buffer).getUint32(0, true), payload.length, 'write_out.size');
    const onHost = fs.readFileSync(path.join(rig.dir, 'data.bin'));
    const want = Buffer.from(content);
    Buffer.from(payload).copy(want, MiB);
    assert.ok(onHost.equals(want), 'the host file has the payload from guest memory above 4 GiB, nothing else changed');

    // Read the written range back into one 600 KiB buffer at the very top of the DIMM.
    const back: GuestBuffer[] = [{ gpa: LOW.gpa + 4096n, len: 16 }, { gpa: DIMM.gpa + DIMM.size - 600n * 1024n, len: 600 * KiB }];
    r = rig.serve(P.FUSE_READ, nodeId, readIn(fh, BigInt(MiB), payload.length), { at: HIGH.gpa + 64n * GiB, reply: back });
    assert.ok(Buffer.from(r.body).equals(Buffer.from(payload)), 'READ back = WRITE');
    assert.ok(Buffer.from(rig.guest.read(back[1].gpa, payload.length)).equals(Buffer.from(payload)),
      'the DIMM memfd holds the data at the right file offset');
    if (windowSlots !== undefined && windowSlots <= 2) assert.ok(rig.core.windowMisses > 10, `evictions (${rig.core.windowMisses} misses)`);
  } finally {
    rig.close();
  }
}

test('a 1 TiB memory table of sparse memfds: headers, rings and READ/WRITE data above 4 GiB (default window)', () =>
  bigGuestScenario());

test('the same through a window of 2 slots: chunks evicted all the time, the pinned rings stay', () => bigGuestScenario(2));

test('window of 1 slot held by the rings: requests elsewhere end as bad message / bad chain / empty reply, no trap', async () => {
  const rig = await BigGuestRig.create(1);
  try {
    const ringChunkGpa = RING_GPA + 2n * BigInt(MiB) - 64n * 1024n; // inside the ring's slot (chunk c or c+1)
    // A request whose header and reply lie in the ring's slot is served.
    let r = rig.serve(P.FUSE_INIT, 0, initIn(38, KERNEL_FLAGS), { at: ringChunkGpa, reply: [{ gpa: ringChunkGpa + 4096n, len: 4096 }] });
    assert.is(r.error, 0, 'INIT through the one slot');
    // Header elsewhere: no slot to read it -> POP_BAD_MESSAGE, returned with used len 0.
    const far = HIGH.gpa + 10n * GiB;
    rig.guest.write(far, fuseRequest(P.FUSE_GETATTR, 99n, 1n, new Uint8Array(16)));
    let head = rig.driver.add([{ gpa: far, len: 56 }], [{ gpa: ringChunkGpa + 8192n, len: 256 }]);
    rig.driver.publish();
    assert.is(rig.core.queuePop(0), POP_BAD_MESSAGE);
    assert.equal(rig.driver.pollUsed(), [{ id: head, len: 0 }]);
    // An indirect table elsewhere -> POP_BAD_CHAIN.
    rig.guest.write(far + 4096n, fuseRequest(P.FUSE_GETATTR, 100n, 1n, new Uint8Array(16)));
    const table = new Uint8Array(32);
    const tv = new DataView(table.buffer);
    tv.setBigUint64(0, far + 4096n, true); tv.setUint32(8, 56, true); tv.setUint16(12, 1, true); tv.setUint16(14, 1, true);
    tv.setBigUint64(16, ringChunkGpa + 8192n, true); tv.setUint32(24, 256, true); tv.setUint16(28, 2, true);
    rig.guest.write(far + 65536n, table);
    head = rig.driver.takeFree();
    rig.driver.writeDesc(head, { addr: far + 65536n, len: 32, flags: VIRTQ_DESC_F_INDIRECT, next: 0 });
    rig.driver.pushAvail(head);
    rig.driver.publish();
    assert.is(rig.core.queuePop(0), POP_BAD_CHAIN);
    assert.equal(rig.driver.pollUsed(), [{ id: head, len: 0 }]);
    // Header in the slot, reply elsewhere: served, but the reply cannot be written -> empty used element.
    rig.guest.write(ringChunkGpa + 16384n, fuseRequest(P.FUSE_GETATTR, 101n, 1n, new Uint8Array(16)));
    head = rig.driver.add([{ gpa: ringChunkGpa + 16384n, len: 56 }], [{ gpa: far + 2n * GiB, len: 256 }]);
    rig.driver.publish();
    assert.is(rig.core.queuePop(0), POP_REQUEST);
    rig.server.serveCurrent();
    assert.equal(rig.driver.pollUsed(), [{ id: head, len: 0 }]);
    // And the queue still serves what fits.
    r = rig.serve(P.FUSE_GETATTR, 1, new Uint8Array(16), { at: ringChunkGpa + 20480n, reply: [{ gpa: ringChunkGpa + 24576n, len: 256 }] });
    assert.is(r.error, 0, 'GETATTR after the failures');
  } finally {
    rig.close();
  }
});

test('memory tables switch between windowed and flat; a new table drops the old mappings', async () => {
  const rig = await BigGuestRig.create();
  try {
    assert.ok(rig.core.window !== undefined);
    const small = SparseGuest.create([{ gpa: 0n, size: 64n * BigInt(MiB), mmapOffset: 0n }]);
    try {
      rig.core.mapGuestRegions(small.regions);
      assert.is(rig.core.window, undefined, 'a 64 MiB table is flat');
      assert.ok(rig.core.memTranslate(0x1000n, 16) >= 0);
      assert.is(rig.core.memTranslate(HIGH.gpa, 16), -1, 'the old table is gone');
      rig.core.mapGuestRegions(rig.guest.regions);
      assert.ok(rig.core.window !== undefined, 'windowed again');
      const t = rig.core.memTranslate(RING_GPA, 16);
      assert.ok(t >= 0, 'the DIMM is reachable through the window');
      rig.guest.write(RING_GPA + 0x100n, Uint8Array.of(1, 2, 3));
      assert.equal([...rig.core.bytes().subarray(t + 0x100, t + 0x103)], [1, 2, 3], 'same bytes as the memfd');
    } finally {
      small.close();
    }
  } finally {
    rig.close();
  }
});

/** A filesystem without fds: one file kept in a Buffer, READ by fromBytes, WRITE by toBytes. */
class BytesFs implements FileSystem {
  data = Buffer.from(pattern(256 * KiB, 7));
  read(_ctx: unknown, _node: number, _fh: number, offset: number, target: DataTarget): number {
    return target.fromBytes(this.data.subarray(offset, offset + target.size));
  }
  write(_ctx: unknown, _node: number, _fh: number, offset: number, source: DataSource): number {
    const bytes = source.toBytes();
    Buffer.from(bytes).copy(this.data, offset);
    return bytes.length;
  }
}

for (const mode of ['windowed', 'flat'] as const) {
  test(`a filesystem without fds (fromBytes/toBytes) goes through the core (${mode})`, async () => {
    let bytesFs: BytesFs | undefined;
    // flat: 1 GiB of the DIMM around the rings (the same addresses, a table that fits in 4 GiB)
    const lo = RING_GPA - GiB / 2n;
    const specs = mode === 'flat' ? [{ gpa: lo, size: GiB, mmapOffset: DIMM.mmapOffset + lo - DIMM.gpa }] : undefined;
    const rig = await BigGuestRig.create(mode === 'windowed' ? 2 : undefined, () => (bytesFs = new BytesFs()), specs);
    try {
      assert.is(rig.core.window === undefined, mode === 'flat');
      const at = (n: number) => RING_GPA - 256n * BigInt(MiB) + BigInt(n) * CHUNK * 5n + 100n; // in both tables
      rig.serve(P.FUSE_INIT, 0, initIn(38, KERNEL_FLAGS), { at: at(0), reply: [{ gpa: at(1), len: 4096 }] });
      // READ 100 KiB from 1000 into two buffers, one straddling a chunk border.
      const reply = [{ gpa: at(2), len: 16 }, { gpa: at(3) + CHUNK - 100n - 4000n, len: 60 * KiB },
        { gpa: at(4), len: 40 * KiB }];
      let r = rig.serve(P.FUSE_READ, 2, readIn(1, 1000n, 100 * KiB), { at: at(5), reply });
      assert.is(r.error, 0);
      assert.ok(Buffer.from(r.body).equals(bytesFs!.data.subarray(1000, 1000 + 100 * KiB)), 'READ = the bytes');
      const payload = pattern(70 * KiB, 8);
      const writeIn = struct(P.WRITE_IN.SIZE, (v) => {
        v.setBigUint64(P.WRITE_IN.offset, 5000n, true);
        v.setUint32(P.WRITE_IN.size, payload.length, true);
      });
      r = rig.serve(P.FUSE_WRITE, 2, writeIn, { at: at(6), reply: [{ gpa: at(7), len: 64 }],
        payload: [{ gpa: at(8) + CHUNK - 3000n, data: payload.subarray(0, 30 * KiB) }, { gpa: at(9), data: payload.subarray(30 * KiB) }] });
      assert.is(r.error, 0);
      assert.ok(bytesFs!.data.subarray(5000, 5000 + payload.length).equals(Buffer.from(payload)), 'WRITE = the payload');
    } finally {
      rig.close();
    }
  });
}

test('a table over the 1 TiB the window can address is refused with a clear error', async () => {
  const guest = SparseGuest.create([LOW, HIGH, DIMM, { gpa: 4096n * GiB, size: 4096n, mmapOffset: 0n }]);
  try {
    const core = await Core.create();
    assert.throws(() => core.mapGuestRegions(guest.regions), /chunks of 2 MiB is more than the \d+ bytes the core can address/);
    assert.is(core.memTranslate(0n, 16), -1, 'nothing stays registered');
  } finally {
    guest.close();
  }
});

test.run();

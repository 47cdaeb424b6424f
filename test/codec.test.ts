/**
 * The core's FUSE codec against byte vectors: requests as the Linux 6.1 guest lays them out (include/uapi/linux/
 * fuse.h, protocol 7.36), struct statx -> fuse_attr / fuse_attr_out / fuse_entry_out, linux_dirent64 ->
 * fuse_dirent / fuse_direntplus.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Core, POP_BAD_MESSAGE, POP_REQUEST, FUSE_ATTR_OUT_SIZE, FUSE_ENTRY_OUT_SIZE } from '../host/core.js';
import { VirtqueueDriver } from '../host/frontend/virtqueue-driver.js';

/** The core under test: build/core.wasm, or another build (e.g. CORE_WASM=build/core.debug.wasm). */
const createCore = () => Core.create({ wasmPath: process.env.CORE_WASM });

const GPA = 0x8000_0000n;
const RAM = 1 << 20;

/** Writes `bytes` as a little-endian byte vector from a list of [offset, size, value] fields. */
function bytesOf(size: number, fields: [number, 1 | 2 | 4 | 8, number | bigint][]): Uint8Array {
  const b = new Uint8Array(size);
  const v = new DataView(b.buffer);
  for (const [off, n, val] of fields) {
    if (n === 1) v.setUint8(off, Number(val));
    else if (n === 2) v.setUint16(off, Number(val), true);
    else if (n === 4) v.setUint32(off, Number(val) >>> 0, true);
    else v.setBigUint64(off, BigInt.asUintN(64, BigInt(val)), true);
  }
  return b;
}

/** Pops one request made of `request` (readable) + a 4 KiB writable buffer through a fresh core. */
async function popOne(request: Uint8Array) {
  const core = await createCore();
  const off = core.addTestRegion(GPA, GPA, RAM);
  const drv = new VirtqueueDriver({ gpa: GPA, bytes: () => core.bytes().subarray(off, off + RAM) },
    { num: 8, ringGpa: GPA });
  core.queueSetNum(0, 8);
  core.queueSetAddr(0, drv.layout.descGpa, drv.layout.usedGpa, drv.layout.availGpa);
  const reqGpa = GPA + 0x8000n;
  core.bytes().set(request, off + 0x8000);
  drv.add([{ gpa: reqGpa, len: request.length }], [{ gpa: GPA + 0x10000n, len: 4096 }]);
  drv.publish();
  const rc = core.queuePop(0);
  return { core, rc, args: () => core.bytes().slice(core.argsPtr, core.argsPtr + core.reqArgsLen()) };
}

// ---- requests as Linux 6.1 sends them ----------------------------------------------------------------------------

// FUSE_INIT from fuse_send_init(): fuse_in_header{len=104, opcode=26, unique=2, nodeid=0, uid=0, gid=0, pid=0}
// + fuse_init_in{major=7, minor=36, max_readahead=0x20000, flags=0x73fffffb, flags2=0, unused[11]=0}
const FUSE_INIT_6_1 = bytesOf(104, [
  [0, 4, 104], [4, 4, 26], [8, 8, 2n], [16, 8, 0n], [24, 4, 0], [28, 4, 0], [32, 4, 0],
  [40, 4, 7], [44, 4, 36], [48, 4, 0x20000], [52, 4, 0x73fffffb], [56, 4, 0],
]);

test('FUSE_INIT as Linux 6.1 sends it: 64-byte fuse_init_in copied verbatim', async () => {
  const { core, rc, args } = await popOne(FUSE_INIT_6_1);
  assert.is(rc, POP_REQUEST);
  assert.is(core.reqOpcode(), 26);
  assert.is(core.reqUnique(), 2n);
  assert.is(core.reqNodeId(), 0);
  assert.is(core.reqLen(), 104);
  assert.is(core.reqArgsLen(), 64);
  assert.equal([...args()], [...FUSE_INIT_6_1.subarray(40)]);
  const v = new DataView(args().buffer);
  assert.is(v.getUint32(0, true), 7);
  assert.is(v.getUint32(4, true), 36);
  assert.is(v.getUint32(12, true), 0x73fffffb);
});

test('FUSE_INIT with the pre-7.36 16-byte fuse_init_in is accepted; 8 bytes is a bad message', async () => {
  const short = FUSE_INIT_6_1.slice(0, 56);
  new DataView(short.buffer).setUint32(0, 56, true);
  assert.is((await popOne(short)).rc, POP_REQUEST);
  const tooShort = FUSE_INIT_6_1.slice(0, 48);
  new DataView(tooShort.buffer).setUint32(0, 48, true);
  assert.is((await popOne(tooShort)).rc, POP_BAD_MESSAGE);
});

test('FUSE_LOOKUP: the NUL-terminated name is the args', async () => {
  const name = new TextEncoder().encode('hello.txt\0');
  const req = new Uint8Array(40 + name.length);
  req.set(bytesOf(40, [[0, 4, 40 + name.length], [4, 4, 1], [8, 8, 0x10n], [16, 8, 1n], [24, 4, 1000],
    [28, 4, 1000], [32, 4, 321]]));
  req.set(name, 40);
  const { core, rc, args } = await popOne(req);
  assert.is(rc, POP_REQUEST);
  assert.is(core.reqOpcode(), 1);
  assert.is(core.reqNodeId(), 1);
  assert.is(core.reqPid(), 321);
  assert.equal([...args()], [...name]);
});

test('per-opcode minimum arg sizes (fixed structs) are enforced', async () => {
  // [opcode, minimum]: SETATTR 88, READ 40, WRITE 40, RELEASE 24, GETLK 48, COPY_FILE_RANGE 56, RENAME2 16
  for (const [opcode, min] of [[4, 88], [15, 40], [16, 40], [18, 24], [31, 48], [47, 56], [45, 16], [3, 16]]) {
    const ok = new Uint8Array(40 + min);
    ok.set(bytesOf(40, [[0, 4, 40 + min], [4, 4, opcode], [8, 8, 1n]]));
    assert.is((await popOne(ok)).rc, POP_REQUEST, `opcode ${opcode} with ${min} bytes`);
    const short = new Uint8Array(40 + min - 1);
    short.set(bytesOf(40, [[0, 4, 40 + min - 1], [4, 4, opcode], [8, 8, 1n]]));
    assert.is((await popOne(short)).rc, POP_BAD_MESSAGE, `opcode ${opcode} with ${min - 1} bytes`);
  }
  // unknown opcodes pass through (the server answers ENOSYS)
  const unknown = bytesOf(40, [[0, 4, 40], [4, 4, 4000], [8, 8, 1n]]);
  assert.is((await popOne(unknown)).rc, POP_REQUEST);
});

// ---- statx -> fuse_attr ------------------------------------------------------------------------------------------

/** A struct statx with every field distinct. */
const STATX = bytesOf(256, [
  [0, 4, 0x7ff], [4, 4, 4096], [8, 8, 0n], [16, 4, 3], [20, 4, 1001], [24, 4, 1002], [28, 2, 0o100644],
  [32, 8, 0x1234_5678_9abc_def0n], [40, 8, 123456789012n], [48, 8, 241136n],
  [64, 8, 1_700_000_001n], [72, 4, 111], // atime
  [80, 8, 1_600_000_000n], [88, 4, 999], // btime (not in fuse_attr)
  [96, 8, 1_700_000_003n], [104, 4, 333], // ctime
  [112, 8, 1_700_000_002n], [120, 4, 222], // mtime
  [128, 4, 259], [132, 4, 0x12345], // rdev major/minor
  [136, 4, 8], [140, 4, 1], // dev
]);

function attrFields(b: Uint8Array, at: number) {
  const v = new DataView(b.buffer, b.byteOffset + at);
  return {
    ino: v.getBigUint64(0, true), size: v.getBigUint64(8, true), blocks: v.getBigUint64(16, true),
    atime: v.getBigUint64(24, true), mtime: v.getBigUint64(32, true), ctime: v.getBigUint64(40, true),
    atimensec: v.getUint32(48, true), mtimensec: v.getUint32(52, true), ctimensec: v.getUint32(56, true),
    mode: v.getUint32(60, true), nlink: v.getUint32(64, true), uid: v.getUint32(68, true),
    gid: v.getUint32(72, true), rdev: v.getUint32(76, true), blksize: v.getUint32(80, true),
    flags: v.getUint32(84, true),
  };
}

/** Linux new_encode_dev. */
const newEncodeDev = (major: number, minor: number) =>
  ((minor & 0xff) | (major << 8) | ((minor & ~0xff) << 12)) >>> 0;

const EXPECTED_ATTR = {
  ino: 0x1234_5678_9abc_def0n, size: 123456789012n, blocks: 241136n,
  atime: 1_700_000_001n, mtime: 1_700_000_002n, ctime: 1_700_000_003n,
  atimensec: 111, mtimensec: 222, ctimensec: 333,
  mode: 0o100644, nlink: 3, uid: 1001, gid: 1002, rdev: newEncodeDev(259, 0x12345), blksize: 4096, flags: 0,
};

test('statx -> fuse_attr_out: every field, rdev as new_encode_dev, timeout split in sec/nsec', async () => {
  const core = await createCore();
  core.bytes().set(STATX, core.statxPtr);
  core.bytes().fill(0xee, core.replyPtr, core.replyPtr + 200);
  assert.is(core.encodeAttrOut(core.replyPtr, 1.5, core.statxPtr), FUSE_ATTR_OUT_SIZE);
  const out = core.bytes().slice(core.replyPtr, core.replyPtr + 200);
  const v = new DataView(out.buffer);
  assert.is(v.getBigUint64(0, true), 1n, 'attr_valid');
  assert.is(v.getUint32(8, true), 500_000_000, 'attr_valid_nsec');
  assert.is(v.getUint32(12, true), 0, 'dummy');
  assert.equal(attrFields(out, 16), EXPECTED_ATTR);
  assert.is(out[104], 0xee, 'nothing written past 104 bytes');
  // new_encode_dev of a classic device: 8:1 -> 0x801
  assert.is(newEncodeDev(8, 1), 0x801);
});

test('statx -> fuse_entry_out: ids, both timeouts, attr at offset 40; nodeid 0 zeroes the attributes', async () => {
  const core = await createCore();
  core.bytes().set(STATX, core.statxPtr);
  const dst = core.replyPtr;
  assert.is(core.encodeEntryOut(dst, 2 ** 40 + 5, 7, 0.25, 86400, core.statxPtr), FUSE_ENTRY_OUT_SIZE);
  let out = core.bytes().slice(dst, dst + 128);
  let v = new DataView(out.buffer);
  assert.is(v.getBigUint64(0, true), 2n ** 40n + 5n, 'nodeid');
  assert.is(v.getBigUint64(8, true), 7n, 'generation');
  assert.is(v.getBigUint64(16, true), 0n, 'entry_valid');
  assert.is(v.getBigUint64(24, true), 86400n, 'attr_valid');
  assert.is(v.getUint32(32, true), 250_000_000, 'entry_valid_nsec');
  assert.is(v.getUint32(36, true), 0, 'attr_valid_nsec');
  assert.equal(attrFields(out, 40), EXPECTED_ATTR);
  // negative entry
  assert.is(core.encodeEntryOut(dst, 0, 0, 2, 0, core.statxPtr), 128);
  out = core.bytes().slice(dst, dst + 128);
  v = new DataView(out.buffer);
  assert.is(v.getBigUint64(0, true), 0n);
  assert.is(v.getBigUint64(16, true), 2n, 'negative entries keep their entry timeout');
  assert.ok(out.subarray(40).every((b) => b === 0), 'attributes zeroed');
  // hostile timeouts never produce garbage
  core.encodeAttrOut(dst, -1, core.statxPtr);
  assert.is(core.view().getBigUint64(dst, true), 0n);
  core.encodeAttrOut(dst, Number.NaN, core.statxPtr);
  assert.is(core.view().getBigUint64(dst, true), 0n);
  core.encodeAttrOut(dst, 1e300, core.statxPtr);
  assert.is(core.view().getBigUint64(dst, true), 0xffff_ffff_ffff_ffffn);
  assert.is(core.view().getUint32(dst + 8, true), 999_999_999);
});

// ---- dirents -----------------------------------------------------------------------------------------------------

/** linux_dirent64 records, reclen rounded to 8 like the kernel does. */
function linuxDirents(entries: { ino: bigint; off: bigint; type: number; name: string }[]): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const e of entries) {
    const name = new TextEncoder().encode(e.name);
    const reclen = Math.ceil((19 + name.length + 1) / 8) * 8;
    const r = new Uint8Array(reclen);
    const v = new DataView(r.buffer);
    v.setBigUint64(0, e.ino, true);
    v.setBigUint64(8, e.off, true);
    v.setUint16(16, reclen, true);
    r[18] = e.type;
    r.set(name, 19);
    parts.push(r);
  }
  return Buffer.concat(parts);
}

const ENTRIES = [
  { ino: 2n, off: 0x7fff_ffff_ffff_fff1n, type: 4, name: '.' },
  { ino: 1n, off: 0xfedc_ba98_7654_3210n, type: 4, name: '..' },
  { ino: 0x1_0000_0003n, off: 0x8000_0000_0000_0001n, type: 8, name: 'seven77' },
  { ino: 99n, off: 42n, type: 10, name: 'a-name-of-exactly-24-byt' },
];

test('dirents: iteration, fuse_dirent packing with 8-byte alignment, d_off preserved to 64 bits', async () => {
  const core = await createCore();
  const raw = linuxDirents(ENTRIES);
  core.bytes().set(raw, core.direntBufPtr);
  core.direntsBegin(raw.length);
  let at = 0;
  const cap = 4096;
  core.bytes().fill(0xcc, core.replyPtr, core.replyPtr + cap);
  for (const e of ENTRIES) {
    assert.is(core.direntNext(), 1);
    assert.is(core.direntIno(), Number(e.ino));
    assert.is(core.direntType(), e.type);
    assert.is(core.direntName().toString(), e.name);
    const size = core.direntSize();
    assert.is(size, Math.ceil((24 + e.name.length) / 8) * 8);
    assert.is(core.direntEmit(at, cap), size);
    const v = core.view();
    const o = core.replyPtr + at;
    assert.is(v.getBigUint64(o, true), e.ino);
    assert.is(v.getBigUint64(o + 8, true), e.off, `d_off of ${e.name}`);
    assert.is(v.getUint32(o + 16, true), e.name.length);
    assert.is(v.getUint32(o + 20, true), e.type);
    assert.is(Buffer.from(core.bytes().subarray(o + 24, o + 24 + e.name.length)).toString(), e.name);
    assert.ok(core.bytes().subarray(o + 24 + e.name.length, o + size).every((b) => b === 0), 'padding zeroed');
    at += size;
    assert.is(at % 8, 0);
  }
  assert.is(core.direntNext(), 0);
  assert.is(core.bytes()[core.replyPtr + at], 0xcc, 'nothing written past the last record');
});

test('dirents: a record that does not fit the cap is not written (exact fit is)', async () => {
  const core = await createCore();
  const raw = linuxDirents([ENTRIES[2]]);
  core.bytes().set(raw, core.direntBufPtr);
  core.direntsBegin(raw.length);
  assert.is(core.direntNext(), 1);
  const size = core.direntSize(); // 24 + 7 -> 32
  assert.is(size, 32);
  assert.is(core.direntEmit(100, 100 + size - 1), 0);
  assert.is(core.direntEmit(100, 100 + size), size);
  const plus = core.direntPlusSize(); // 152 + 7 -> 160
  assert.is(plus, 160);
  assert.is(core.direntPlusEmit(0, plus - 1, 5, 0, 1, 1, core.statxPtr), 0);
});

test('direntplus: entry_out then fuse_dirent; nodeid 0 leaves a zeroed entry', async () => {
  const core = await createCore();
  core.bytes().set(STATX, core.statxPtr);
  const raw = linuxDirents(ENTRIES.slice(0, 3));
  core.bytes().set(raw, core.direntBufPtr);
  core.direntsBegin(raw.length);
  assert.is(core.direntNext(), 1); // "."
  const dot = core.direntPlusEmit(0, 4096, 0, 0, 1, 1, core.statxPtr);
  assert.is(dot, 160);
  assert.ok(core.bytes().subarray(core.replyPtr, core.replyPtr + 128).every((b) => b === 0));
  assert.is(core.direntNext(), 1); // ".."
  const dotdot = core.direntPlusEmit(dot, 4096, 0, 0, 1, 1, core.statxPtr);
  assert.is(dotdot, 160);
  assert.is(core.direntNext(), 1); // "seven77"
  const at = dot + dotdot;
  assert.is(core.direntPlusEmit(at, 4096, 77, 3, 2, 1.25, core.statxPtr), 160);
  const o = core.replyPtr + at;
  const v = core.view();
  assert.is(v.getBigUint64(o, true), 77n);
  assert.is(v.getBigUint64(o + 8, true), 3n);
  assert.is(v.getBigUint64(o + 16, true), 2n);
  assert.is(v.getUint32(o + 36, true), 250_000_000);
  assert.equal(attrFields(core.bytes(), o + 40), EXPECTED_ATTR);
  assert.is(v.getBigUint64(o + 128 + 8, true), 0x8000_0000_0000_0001n, 'd_off preserved in direntplus');
  assert.is(v.getUint32(o + 128 + 16, true), 7);
});

test('dirents: corrupt getdents64 output ends iteration with -1', async () => {
  const core = await createCore();
  const cases: [string, (b: Uint8Array) => Uint8Array][] = [
    ['reclen 0', (b) => { new DataView(b.buffer, b.byteOffset).setUint16(16, 0, true); return b; }],
    ['reclen past the end', (b) => { new DataView(b.buffer, b.byteOffset).setUint16(16, 4096, true); return b; }],
    ['unterminated name', (b) => { b.fill(0x41, 19); return b; }],
    ['truncated header', (b) => b.subarray(0, 12)],
  ];
  for (const [name, corrupt] of cases) {
    const raw = corrupt(linuxDirents([ENTRIES[2]]));
    core.bytes().set(raw, core.direntBufPtr);
    core.direntsBegin(raw.length);
    assert.is(core.direntNext(), -1, name);
    assert.is(core.direntNext(), 0, `${name}: iteration stays ended`);
    assert.is(core.direntEmit(0, 4096), 0, `${name}: nothing to emit`);
  }
});

test.run();

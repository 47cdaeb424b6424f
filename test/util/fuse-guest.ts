/**
 * Shared by the FUSE server tests: one guest (mock virtqueue driver over a test region of the core's memory) + the
 * real core + a FuseServer, and encoders for request args / decoders for replies.
 */
import * as assert from 'uvu/assert';
import { native } from '../../host/native-loader.js';
import { Core } from '../../host/core.js';
import { VirtqueueDriver, type GuestBuffer } from '../../host/frontend/virtqueue-driver.js';
import { FuseServer, type FuseServerOptions } from '../../host/fuse/server.js';
import type { FileSystem } from '../../host/fuse/filesystem.js';
import * as P from '../../host/fuse/protocol.js';

export const C = native.constants;
export const E = C.errno;
const GPA = 0x4000_0000n;
const RAM = 8 * 1024 * 1024;
const QSIZE = 128;

export interface Reply {
  error: number;
  body: Uint8Array;
  view: DataView;
  usedLen: number;
}

/** A mock guest (virtqueue driver over a test region) talking FUSE to a real core and FuseServer. */
export class FuseGuest {
  readonly driver: VirtqueueDriver;
  private heap = 0n;
  private unique = 1n;
  private readonly heapStart: bigint;

  constructor(readonly core: Core, readonly server: FuseServer, private readonly ramOffset: number) {
    const mem = { gpa: GPA, bytes: () => new Uint8Array(core.memory.buffer, ramOffset, RAM) };
    this.driver = new VirtqueueDriver(mem, { num: QSIZE, ringGpa: GPA, indirectMax: 300 });
    const l = this.driver.layout;
    assert.is(core.queueSetNum(0, QSIZE), 0);
    assert.is(core.queueSetAddr(0, l.descGpa, l.usedGpa, l.availGpa), 0);
    core.queueSetBase(0, 0);
    core.queueSetFeatures(0, false, true);
    this.heapStart = GPA + BigInt(Math.ceil(l.size / 4096) * 4096);
  }

  static async create(fsImpl: FileSystem, options: FuseServerOptions = { cache: 'auto' }): Promise<FuseGuest> {
    const core = await Core.create();
    const off = core.addTestRegion(GPA, GPA, RAM);
    return new FuseGuest(core, new FuseServer(fsImpl, core, options), off);
  }

  /** Buffers of requests left in flight (submit), from the top of RAM down: request() never reuses them. */
  private parkedTop = 0n;

  /**
   * Makes one request available and lets the core pop and the server serve it, without expecting an answer yet
   * (a SETLKW the server parks). Its header + args and its 4 KiB reply buffer live apart from request()'s.
   */
  submit(opcode: number, nodeId: number, args: Uint8Array): { unique: bigint; head: number; reply: GuestBuffer } {
    const take = (len: number): GuestBuffer => {
      this.parkedTop += BigInt(Math.ceil(len / 64) * 64);
      return { gpa: GPA + BigInt(RAM) - this.parkedTop, len };
    };
    const head = take(40 + args.length);
    const unique = this.unique++;
    const hv = new DataView(this.core.memory.buffer, this.ramOffset + Number(head.gpa - GPA), head.len);
    hv.setUint32(0, 40 + args.length, true);
    hv.setUint32(4, opcode, true);
    hv.setBigUint64(8, unique, true);
    hv.setBigUint64(16, BigInt(nodeId), true);
    hv.setUint32(24, process.getuid!(), true);
    hv.setUint32(28, process.getgid!(), true);
    this.bytes(head.gpa + 40n, args.length).set(args);
    const reply = take(4096);
    this.bytes(reply.gpa, reply.len).fill(0xee);
    const id = this.driver.add([head], [reply]);
    this.driver.publish();
    assert.is(this.core.queuePop(0), 1, 'the core pops the request');
    this.server.serveCurrent();
    return { unique, head: id, reply };
  }

  /** The out header in a reply buffer: {len, error, unique}. */
  outHeader(reply: GuestBuffer): { len: number; error: number; unique: bigint } {
    const v = new DataView(this.core.memory.buffer, this.ramOffset + Number(reply.gpa - GPA), 16);
    return { len: v.getUint32(0, true), error: v.getInt32(4, true), unique: v.getBigUint64(8, true) };
  }

  bytes(gpa: bigint, len: number): Uint8Array {
    return new Uint8Array(this.core.memory.buffer, this.ramOffset + Number(gpa - GPA), len);
  }

  alloc(len: number): GuestBuffer {
    const gpa = this.heapStart + this.heap;
    this.heap += BigInt(Math.ceil(len / 64) * 64);
    if (this.heap > BigInt(RAM) - (this.heapStart - GPA)) throw new Error('test heap exhausted');
    return { gpa, len };
  }

  /**
   * Sends one request: header + args in one readable buffer (plus optional extra readable payload buffers),
   * the reply space split into `replySegments` writable buffers. Returns the reply as the guest sees it.
   */
  request(opcode: number, nodeId: number, args: Uint8Array, opts: {
    reply?: number[]; payload?: Uint8Array[]; uid?: number; gid?: number; indirect?: boolean;
  } = {}): Reply {
    this.heap = 0n;
    const payload = opts.payload ?? [];
    const payloadLen = payload.reduce((n, p) => n + p.length, 0);
    const head = this.alloc(40 + args.length);
    const hv = new DataView(this.core.memory.buffer, this.ramOffset + Number(head.gpa - GPA), head.len);
    hv.setUint32(0, 40 + args.length + payloadLen, true);
    hv.setUint32(4, opcode, true);
    hv.setBigUint64(8, this.unique++, true);
    hv.setBigUint64(16, BigInt(nodeId), true);
    hv.setUint32(24, opts.uid ?? process.getuid!(), true);
    hv.setUint32(28, opts.gid ?? process.getgid!(), true);
    hv.setUint32(32, 4242, true);
    this.bytes(head.gpa + 40n, args.length).set(args);
    const readable = [head];
    for (const p of payload) {
      const b = this.alloc(p.length);
      this.bytes(b.gpa, p.length).set(p);
      readable.push(b);
    }
    const writable = (opts.reply ?? [4096]).map((n) => this.alloc(n));
    for (const w of writable) this.bytes(w.gpa, w.len).fill(0xee);
    this.driver.add(readable, writable, { indirect: opts.indirect });
    this.driver.publish();
    assert.is(this.core.queuePop(0), 1, 'the core pops the request');
    this.server.serveCurrent();
    const used = this.driver.pollUsed();
    assert.is(used.length, 1);
    const total = writable.reduce((n, w) => n + w.len, 0);
    const flat = new Uint8Array(total);
    let at = 0;
    for (const w of writable) {
      flat.set(this.bytes(w.gpa, w.len), at);
      at += w.len;
    }
    const usedLen = used[0].len;
    if (usedLen === 0) return { error: 0, body: new Uint8Array(0), view: new DataView(new ArrayBuffer(0)), usedLen };
    const fv = new DataView(flat.buffer);
    assert.is(fv.getUint32(0, true), usedLen, 'out header len = used len');
    assert.is(fv.getBigUint64(8, true), this.unique - 1n, 'unique echoed');
    const body = flat.slice(16, usedLen);
    return { error: fv.getInt32(4, true), body, view: new DataView(body.buffer), usedLen };
  }
}

// ---- argument encoders -----------------------------------------------------------------------------------------

export const enc = new TextEncoder();
export const cstr = (...names: string[]): Uint8Array => enc.encode(names.map((n) => `${n}\0`).join(''));

export function struct(size: number, fill: (v: DataView) => void, tail?: Uint8Array): Uint8Array {
  const out = new Uint8Array(size + (tail?.length ?? 0));
  fill(new DataView(out.buffer));
  if (tail) out.set(tail, size);
  return out;
}

export function initIn(minor: number, flags: number, flags2 = 0): Uint8Array {
  return struct(P.INIT_IN.SIZE, (v) => {
    v.setUint32(P.INIT_IN.major, 7, true);
    v.setUint32(P.INIT_IN.minor, minor, true);
    v.setUint32(P.INIT_IN.maxReadahead, 128 * 1024, true);
    v.setUint32(P.INIT_IN.flags, flags >>> 0, true);
    v.setUint32(P.INIT_IN.flags2, flags2, true);
  });
}

export const KERNEL_FLAGS = P.FUSE_ASYNC_READ | P.FUSE_POSIX_LOCKS | P.FUSE_ATOMIC_O_TRUNC | P.FUSE_EXPORT_SUPPORT |
  P.FUSE_BIG_WRITES | P.FUSE_DONT_MASK | P.FUSE_FLOCK_LOCKS | P.FUSE_AUTO_INVAL_DATA | P.FUSE_DO_READDIRPLUS |
  P.FUSE_READDIRPLUS_AUTO | P.FUSE_ASYNC_DIO | P.FUSE_WRITEBACK_CACHE | P.FUSE_PARALLEL_DIROPS |
  P.FUSE_HANDLE_KILLPRIV | P.FUSE_POSIX_ACL | P.FUSE_MAX_PAGES | P.FUSE_CACHE_SYMLINKS | P.FUSE_SUBMOUNTS |
  P.FUSE_INIT_EXT;

/** fuse_lk_in for GETLK/SETLK/SETLKW: owner's lock of `type` over [start, end], pid 77; `lkFlags` e.g. FUSE_LK_FLOCK. */
export function lkIn(fh: number, owner: bigint, type: number, start = 0n, end = P.OFFSET_MAX, lkFlags = 0): Uint8Array {
  return struct(P.LK_IN.SIZE, (v) => {
    v.setBigUint64(P.LK_IN.fh, BigInt(fh), true);
    v.setBigUint64(P.LK_IN.owner, owner, true);
    v.setBigUint64(P.LK_IN.start, start, true);
    v.setBigUint64(P.LK_IN.end, end, true);
    v.setUint32(P.LK_IN.type, type, true);
    v.setUint32(P.LK_IN.pid, 77, true);
    v.setUint32(P.LK_IN.lkFlags, lkFlags, true);
  });
}

export function readIn(fh: number, offset: bigint, size: number): Uint8Array {
  return struct(P.READ_IN.SIZE, (v) => {
    v.setBigUint64(P.READ_IN.fh, BigInt(fh), true);
    v.setBigUint64(P.READ_IN.offset, offset, true);
    v.setUint32(P.READ_IN.size, size, true);
  });
}

/** fuse_entry_out fields we check. */
export function entryOut(v: DataView, at = 0): { nodeId: number; size: number; mode: number; ino: bigint; entryValid: number } {
  return {
    nodeId: Number(v.getBigUint64(at, true)),
    entryValid: Number(v.getBigUint64(at + 16, true)),
    ino: v.getBigUint64(at + 40, true),
    size: Number(v.getBigUint64(at + 48, true)),
    mode: v.getUint32(at + 40 + 60, true),
  };
}

export function parseDirentPlus(body: Uint8Array): Array<{ name: string; nodeId: number; ino: bigint; off: bigint }> {
  const v = new DataView(body.buffer, body.byteOffset, body.byteLength);
  const out = [];
  for (let o = 0; o < body.length;) {
    const namelen = v.getUint32(o + 128 + 16, true);
    out.push({
      nodeId: Number(v.getBigUint64(o, true)),
      ino: v.getBigUint64(o + 128, true),
      off: v.getBigUint64(o + 128 + 8, true),
      name: new TextDecoder().decode(body.subarray(o + 152, o + 152 + namelen)),
    });
    o += (152 + namelen + 7) & ~7;
  }
  return out;
}


/**
 * The `vhost-user` fuzz target: the control plane (host/vhost-user/backend.ts) over a real socketpair, in-process,
 * against the real core, a FuseServer and a read-only PassthroughFs.
 *
 * A case is one connection: a valid session prefix of random length (GET_FEATURES, protocol features, SET_OWNER,
 * SET_FEATURES, SET_MEM_TABLE with real memfds, VRING_* with real eventfds, all through SCM_RIGHTS), then mutated
 * messages: bad sizes and lying sizes, unknown request codes, flag and version bits, missing/extra/wrong fds,
 * overlapping/zero-sized/huge/past-EOF regions, ring addresses outside every region, queue indices out of range,
 * and kicks with requests (valid or garbage) in the rings after the mutated setup.
 *
 * Oracle, per message, from a model of the protocol written here (not the backend's own tables): the message is
 * answered exactly as vhost-user.rst says (a reply body, an ack with the status the model expects, nothing), or
 * the connection is closed where the model says it must be; never a hang. Per case: no `log.error` (a handler
 * bug, a halted queue), the session ends as VU_ERR_INVALID_MESSAGE or a clean disconnect, never VU_ERR_INTERNAL.
 * Every CHECK_EVERY cases and at the end: open fds and guest-memory mappings (/proc/self/maps) back to the
 * baseline, and a fresh valid session through VhostUserFrontend serves INIT and GETATTR of the root.
 *
 * A crash (SIGBUS from guest memory, a native abort) kills the process: the case running is kept in
 * findings/.vhost-user-running.<pid> so the next `npm run fuzz` reports it.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { native } from '../../host/native-loader.js';
import { countOpenFds } from '../util/fds.js';
import { Core } from '../../host/core.js';
import { log, setLogLevel } from '../../host/log.js';
import { VhostUserError } from '../../host/errors.js';
import { FdPoller } from '../../host/vhost-user/fd-poller.js';
import { VhostUserBackend } from '../../host/vhost-user/backend.js';
import { VhostUserListener } from '../../host/vhost-user/listener.js';
import { GuestMemory, VhostUserFrontend } from '../../host/frontend/vhost-user-frontend.js';
import { VirtqueueDriver } from '../../host/frontend/virtqueue-driver.js';
import { FuseServer } from '../../host/fuse/server.js';
import { PassthroughFs } from '../../host/passthrough/passthrough-fs.js';
import { fuseRequest } from '../util/fuse-request.js';
import { Finding, hit } from './harness.js';
import { Prng, caseSeed } from './prng.js';

// ---- the wire, as vhost-user.rst has it (independent of host/vhost-user/protocol.ts) -------------------------

const REQ = {
  GET_FEATURES: 1, SET_FEATURES: 2, SET_OWNER: 3, RESET_OWNER: 4, SET_MEM_TABLE: 5, SET_LOG_BASE: 6, SET_LOG_FD: 7,
  SET_VRING_NUM: 8, SET_VRING_ADDR: 9, SET_VRING_BASE: 10, GET_VRING_BASE: 11, SET_VRING_KICK: 12,
  SET_VRING_CALL: 13, SET_VRING_ERR: 14, GET_PROTOCOL_FEATURES: 15, SET_PROTOCOL_FEATURES: 16, GET_QUEUE_NUM: 17,
  SET_VRING_ENABLE: 18, RESET_DEVICE: 34, GET_MAX_MEM_SLOTS: 36, ADD_MEM_REG: 37, REM_MEM_REG: 38,
} as const;
const VERSION = 1;
const REPLY = 0x4;
const NEED_REPLY = 0x8;
const MAX_PAYLOAD = 4096;
const MAX_FDS = 8;
/** Payload sizes of the requests we implement (SET_MEM_TABLE: 8 + 32n, n <= 8). */
const EXACT_SIZE = new Map<number, number>([
  [1, 0], [2, 8], [3, 0], [4, 0], [8, 8], [9, 40], [10, 8], [11, 8], [12, 8], [13, 8], [14, 8], [15, 0], [16, 8],
  [17, 0], [18, 8], [34, 0], [36, 0], [37, 40], [38, 40],
  [21, 0], [44, 0], // SET_BACKEND_REQ_FD, GET_SHMEM_CONFIG (the DAX window; this rig's daemon offers none)
]);
const BODY_REPLY = new Set<number>([REQ.GET_FEATURES, REQ.GET_PROTOCOL_FEATURES, REQ.GET_VRING_BASE,
  REQ.GET_QUEUE_NUM, REQ.GET_MAX_MEM_SLOTS, 44]);
const PF_BACKEND_REQ = 1n << 5n;
const PF_SHMEM = 1n << 22n;
const PF_MQ = 1n << 0n;
const PF_REPLY_ACK = 1n << 3n;
const PF_RESET_DEVICE = 1n << 13n;
const PF_CONFIGURE_MEM_SLOTS = 1n << 15n;
const F_PROTOCOL_FEATURES = 1n << 30n;
const U64_MAX = (1n << 64n) - 1n;

// ---- guest memory of the fuzzing frontend ------------------------------------------------------------------

const MIB = 1 << 20;
/** Two memfds, adjacent in guest-physical space, far apart in user space. */
const RAM = [
  { name: 'vu-fuzz-a', gpa: 0n, uva: 0x7f00_0000_0000n, size: MIB },
  { name: 'vu-fuzz-b', gpa: 0x10_0000n, uva: 0x7f10_0000_0000n, size: MIB },
] as const;
const RING_NUM = 64;
/** Queue q's rings at gpa q * 0x8000 in A (VirtqueueDriver layout, indirectMax 1). */
const ringGpa = (q: number): bigint => BigInt(q) * 0x8000n;
const REQ_GPA = 0x80000n;
const FUSE_INIT = 26;
const FUSE_GETATTR = 3;

interface Region { gpa: bigint; size: bigint; uva: bigint; off: bigint; fd: number }

// ---- the rig -------------------------------------------------------------------------------------------------

/** What a run shares across cases: core, server, poller, the frontend's guest RAM, the good-session listener. */
export class VhostUserRig {
  readonly errors: string[] = [];
  private restoreLog: () => void;
  baselineFds = -1;
  baselineMaps = -1;
  baselineFdTable = new Map<number, string>();
  goodSessions = 0;

  private constructor(readonly core: Core, readonly server: FuseServer, readonly poller: FdPoller,
    readonly mems: GuestMemory[], readonly shareDir: string, readonly listener: VhostUserListener) {
    // Any log.error is a finding (a handler bug, a halted queue, a poller handler that threw).
    const original = log.error;
    log.error = (...a: unknown[]): void => {
      this.errors.push(a.map((x) => (x instanceof Error ? x.stack ?? x.message : String(x))).join(' '));
    };
    this.restoreLog = () => { log.error = original; };
  }

  static async create(): Promise<VhostUserRig> {
    // The backend warns about every bad message; errors are collected (the constructor), not printed.
    setLogLevel((process.env.LOG_LEVEL as 'error') ?? 'error');
    const core = await Core.create();
    const shareDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vu-fuzz-share-'));
    fs.writeFileSync(path.join(shareDir, 'file'), 'x');
    const server = new FuseServer(new PassthroughFs({ root: shareDir }), core, { cache: 'never', readonly: true });
    const poller = new FdPoller();
    const mems = RAM.map((r) => GuestMemory.create(r.size, { guestAddr: r.gpa, userAddr: r.uva, name: r.name }));
    const listener = new VhostUserListener({ socketPath: path.join(shareDir, '..', `${path.basename(shareDir)}.sock`),
      core, server, poller });
    listener.on('error', () => undefined);
    listener.on('disconnect', () => server.endSession());
    listener.listen();
    return new VhostUserRig(core, server, poller, mems, shareDir, listener);
  }

  region(i: number, over: Partial<Region> = {}): Region {
    const m = this.mems[i]!;
    return { gpa: m.guestAddr, size: BigInt(m.size), uva: m.userAddr, off: 0n, fd: m.fd, ...over };
  }

  /**
   * The errors logged since the last call, minus the one a hostile guest may cause on purpose: a ring whose
   * avail index jumped (kickQueue rewrites rings behind the backend's back) halts that queue until reset.
   */
  takeErrors(): string[] {
    return this.errors.splice(0).filter((e) => !/ring broken \(avail index moved/.test(e));
  }

  close(): void {
    this.listener.close();
    for (const m of this.mems) m.close();
    this.poller.close();
    this.restoreLog();
    fs.rmSync(this.shareDir, { recursive: true, force: true });
  }
}

/** Lines of /proc/self/maps naming the fuzzer's memfds (the frontend's own views plus whatever the core mapped). */
export function guestMappings(): number {
  let n = 0;
  for (const line of fs.readFileSync('/proc/self/maps', 'utf8').split('\n')) if (line.includes('/memfd:vu-fuzz-')) n++;
  return n;
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

// ---- the raw frontend ----------------------------------------------------------------------------------------

interface Reply { request: number; flags: number; payload: Uint8Array }

/** One end of the socketpair: sends anything, reads replies; nonblocking, turning the event loop while it waits. */
class RawFrontend {
  closed = false;
  private readonly rx = new Uint8Array(12 + MAX_PAYLOAD);
  private rxLen = 0;
  private readonly fdsIn = new Int32Array(MAX_FDS);

  constructor(readonly fd: number) {}

  async send(bytes: Uint8Array, fds: number[]): Promise<boolean> {
    let off = 0;
    let withFds: number[] = fds;
    const t0 = Date.now();
    while (off < bytes.length) {
      const rc = native.sendmsg(this.fd, bytes, off, bytes.length - off, withFds);
      if (rc > 0) {
        off += rc;
        withFds = [];
      } else if (rc === -11 && Date.now() - t0 < STEP_TIMEOUT_MS) {
        await tick();
      } else {
        return false; // EPIPE / ECONNRESET: the backend closed
      }
    }
    return true;
  }

  /** The next message from the backend; 'closed' on EOF; 'timeout' when nothing came. */
  async next(timeoutMs: number): Promise<Reply | 'closed' | 'timeout'> {
    const t0 = Date.now();
    for (;;) {
      if (this.rxLen >= 12) {
        const v = new DataView(this.rx.buffer);
        const size = v.getUint32(8, true);
        if (size > MAX_PAYLOAD) throw new Finding('vhost-reply', `backend sent a reply with payload size ${size}`);
        if (this.rxLen >= 12 + size) {
          const r = { request: v.getUint32(0, true), flags: v.getUint32(4, true), payload: this.rx.slice(12, 12 + size) };
          this.rx.copyWithin(0, 12 + size, this.rxLen);
          this.rxLen -= 12 + size;
          return r;
        }
      }
      if (this.closed) return 'closed';
      const rc = native.recvmsg(this.fd, this.rx, this.rxLen, this.rx.length - this.rxLen, this.fdsIn, false);
      for (const f of this.fdsIn) {
        if (f >= 0) {
          native.close(f);
          throw new Finding('vhost-reply', 'backend sent an fd');
        }
      }
      if (rc > 0) {
        this.rxLen += rc;
        continue;
      }
      if (rc === 0 || (rc < 0 && rc !== -11 && rc !== -4)) {
        this.closed = true;
        continue;
      }
      if (Date.now() - t0 > timeoutMs) return 'timeout';
      await tick();
    }
  }
}

const STEP_TIMEOUT_MS = 2000;

// ---- the model -----------------------------------------------------------------------------------------------

/** What the backend should do with a message. `ack` is the status the model expects ('any' where it cannot tell). */
type Expect = { kind: 'close' } | { kind: 'body' } | { kind: 'ack'; ack: 'ok' | 'err' | 'any' } | { kind: 'silent' }
  | { kind: 'stall' };

class SessionModel {
  offeredFeatures = 0n;
  offeredProtocol = 0n;
  protocol = 0n;
  featuresSet = false;
  features = 0n;
  regions: Region[] = [];
  /** The size of each queue whose SET_VRING_NUM the backend accepted (ring addresses are only checked then). */
  num = new Map<number, number>();
  constructor(readonly numQueues: number) {}
}

/**
 * What SET_VRING_ADDR must answer, predicted from the rules rather than taken from the backend: an index past the
 * device's queues is refused; before the queue's size is known the addresses are only kept; after, each ring
 * (descriptor table 16 * num bytes, avail 6 + 2 * num, used 6 + 8 * num) must lie wholly inside one region of the
 * table, and be aligned as virtio 1.2 §2.7 requires (16, 2, 4) where the backend maps it: a region's bytes start
 * at a page-aligned mapping plus mmap_offset modulo the page size.
 */
function vringAddrHint(m: SessionModel, q: number, desc: bigint, used: bigint, avail: bigint): 'ok' | 'err' {
  if (q >= m.numQueues) return 'err';
  const num = m.num.get(q);
  if (num === undefined) return 'ok';
  const n = BigInt(num);
  const page = BigInt(native.constants.PAGE_SIZE);
  const fits = (x: bigint, len: bigint, align: bigint): boolean => {
    if (x + len > U64_MAX) return false;
    const r = m.regions.find((g) => x >= g.uva && x - g.uva < g.size);
    if (r === undefined || len > r.size - (x - r.uva)) return false;
    return ((r.off % page) + (x - r.uva)) % align === 0n;
  };
  return fits(desc, 16n * n, 16n) && fits(avail, 6n + 2n * n, 2n) && fits(used, 6n + 8n * n, 4n) ? 'ok' : 'err';
}

interface Msg {
  request: number;
  flags: number;
  payload: Uint8Array;
  /** header size when it lies about the payload */
  size?: number;
  fds: number[];
  /** the handler's status as the generator knows it */
  hint: 'ok' | 'err' | 'any';
  what: string;
  /** applied to the model once the backend took the message (and acked it ok, when it acks) */
  apply?: (m: SessionModel) => void;
}

function regionBad(r: { size: bigint; gpa: bigint; uva: bigint; off: bigint }): boolean {
  return r.size === 0n || r.gpa > U64_MAX - (r.size - 1n) || r.uva > U64_MAX - (r.size - 1n) ||
    r.off > U64_MAX - (r.size - 1n);
}

function decodeRegion(v: DataView, o: number): Region {
  return { gpa: v.getBigUint64(o, true), size: v.getBigUint64(o + 8, true), uva: v.getBigUint64(o + 16, true),
    off: v.getBigUint64(o + 24, true), fd: -1 };
}

function expectFor(msg: Msg, m: SessionModel): Expect {
  const size = msg.size ?? msg.payload.length;
  // 1. syntax: version 1, no reply bit, no unknown bits, size; more than 8 fds
  if ((msg.flags & 3) !== VERSION || (msg.flags & REPLY) !== 0 || (msg.flags & ~0xf) !== 0) return { kind: 'close' };
  if (size > MAX_PAYLOAD) return { kind: 'close' };
  const exact = EXACT_SIZE.get(msg.request);
  if (msg.request === REQ.SET_MEM_TABLE) {
    if (size < 8 || size > 8 + 8 * 32 || (size - 8) % 32 !== 0) return { kind: 'close' };
  } else if (exact !== undefined && size !== exact) {
    return { kind: 'close' };
  }
  if (msg.fds.length > MAX_FDS) return { kind: 'close' };
  if (size > msg.payload.length) return { kind: 'stall' }; // the backend waits for the rest
  const needReply = (msg.flags & NEED_REPLY) !== 0 && (m.protocol & PF_REPLY_ACK) !== 0n;
  // 2. features
  let allowed = true;
  switch (msg.request) {
    case REQ.GET_QUEUE_NUM: allowed = (m.protocol & PF_MQ) !== 0n; break;
    case REQ.RESET_DEVICE: allowed = (m.protocol & PF_RESET_DEVICE) !== 0n; break;
    case 21: allowed = (m.protocol & PF_BACKEND_REQ) !== 0n; break;
    case 44: allowed = (m.protocol & PF_SHMEM) !== 0n; break;
    case REQ.GET_MAX_MEM_SLOTS: case REQ.ADD_MEM_REG: case REQ.REM_MEM_REG:
      allowed = (m.protocol & PF_CONFIGURE_MEM_SLOTS) !== 0n; break;
    case REQ.SET_VRING_ENABLE:
      allowed = ((m.featuresSet ? m.features : m.offeredFeatures) & F_PROTOCOL_FEATURES) !== 0n; break;
  }
  if (!allowed) msg.hint = 'err'; // not taken: the model does not follow it
  if (!allowed) return BODY_REPLY.has(msg.request) ? { kind: 'close' } : needReply ? { kind: 'ack', ack: 'err' } : { kind: 'silent' };
  // payload that cannot be decoded
  const v = new DataView(msg.payload.buffer, msg.payload.byteOffset, size);
  if (msg.request === REQ.SET_MEM_TABLE) {
    const n = v.getUint32(0, true);
    if (n > 8 || 8 + 32 * n > size) return { kind: 'close' };
    for (let i = 0; i < n; i++) if (regionBad(decodeRegion(v, 8 + 32 * i))) return { kind: 'close' };
  }
  if ((msg.request === REQ.ADD_MEM_REG || msg.request === REQ.REM_MEM_REG) && regionBad(decodeRegion(v, 8))) {
    return { kind: 'close' };
  }
  if (msg.request === REQ.GET_VRING_BASE && v.getUint32(0, true) >= m.numQueues) return { kind: 'close' };
  if (BODY_REPLY.has(msg.request)) return { kind: 'body' };
  return needReply ? { kind: 'ack', ack: msg.hint } : { kind: 'silent' };
}

// ---- message generation --------------------------------------------------------------------------------------

function u64(x: bigint): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt.asUintN(64, x), true);
  return b;
}

function state(index: number, num: number): Uint8Array {
  const b = new Uint8Array(8);
  const v = new DataView(b.buffer);
  v.setUint32(0, index >>> 0, true);
  v.setUint32(4, num >>> 0, true);
  return b;
}

function memTable(regions: Region[], nregions = regions.length, slots = regions.length): Uint8Array {
  const b = new Uint8Array(8 + 32 * slots);
  const v = new DataView(b.buffer);
  v.setUint32(0, nregions >>> 0, true);
  regions.slice(0, slots).forEach((r, i) => {
    v.setBigUint64(8 + 32 * i, BigInt.asUintN(64, r.gpa), true);
    v.setBigUint64(16 + 32 * i, BigInt.asUintN(64, r.size), true);
    v.setBigUint64(24 + 32 * i, BigInt.asUintN(64, r.uva), true);
    v.setBigUint64(32 + 32 * i, BigInt.asUintN(64, r.off), true);
  });
  return b;
}

function singleRegion(r: Region): Uint8Array {
  const t = memTable([r]);
  t.fill(0, 0, 8);
  return t;
}

function vringAddr(index: number, desc: bigint, used: bigint, avail: bigint, flags = 0): Uint8Array {
  const b = new Uint8Array(40);
  const v = new DataView(b.buffer);
  v.setUint32(0, index >>> 0, true);
  v.setUint32(4, flags >>> 0, true);
  v.setBigUint64(8, BigInt.asUintN(64, desc), true);
  v.setBigUint64(16, BigInt.asUintN(64, used), true);
  v.setBigUint64(24, BigInt.asUintN(64, avail), true);
  return b;
}

/** Do two regions overlap in guest-physical or user space? */
function overlap(a: Region, b: Region): boolean {
  const o = (x: bigint, xs: bigint, y: bigint, ys: bigint): boolean => x < y + ys && y < x + xs;
  return o(a.gpa, a.size, b.gpa, b.size) || o(a.uva, a.size, b.uva, b.size);
}

/** The status a table of regions gets: err if they overlap or run past their file, ok if it is all fine. */
function tableHint(rig: VhostUserRig, regions: Region[]): 'ok' | 'err' {
  for (let i = 0; i < regions.length; i++) {
    const r = regions[i]!;
    const fileSize = BigInt(rig.mems.find((m) => m.fd === r.fd)?.size ?? 0);
    if (r.off + r.size > fileSize) return 'err';
    for (let j = 0; j < i; j++) if (overlap(r, regions[j]!)) return 'err';
  }
  return 'ok';
}

/** The case's fds, closed at its end (the backend gets its own copies through SCM_RIGHTS). */
class CaseFds {
  readonly all: number[] = [];
  kick = new Map<number, number>();
  eventfd(): number {
    const fd = native.eventfd(0, native.constants.EFD_NONBLOCK);
    if (fd < 0) throw new Error('eventfd failed');
    this.all.push(fd);
    return fd;
  }
  closeAll(): void {
    for (const fd of this.all) native.close(fd);
    this.all.length = 0;
  }
}

/** A random region: a pool memfd as it is, shifted, cut, past its end, zero-sized, huge, wrapping, or clashing. */
function randomRegion(rng: Prng, rig: VhostUserRig): Region {
  const i = rng.below(2);
  const r = rig.region(i);
  switch (rng.below(12)) {
    case 0: return { ...r, size: 0n };
    case 1: return { ...r, size: r.size + BigInt(rng.range(1, 3) * 4096) }; // past EOF
    case 2: return { ...r, size: 1n << BigInt(rng.range(32, 62)) }; // huge
    case 3: return { ...r, gpa: U64_MAX - BigInt(rng.below(4096)) }; // wraps
    case 4: return { ...r, off: BigInt(rng.range(1, 16) * 4096), size: r.size - BigInt(rng.range(1, 16) * 4096) };
    case 5: return { ...r, off: BigInt(rng.below(4096)), size: r.size / 2n }; // unaligned offset
    case 6: return { ...r, off: r.size }; // starts at EOF
    case 7: return { ...r, gpa: rig.region(1 - i).gpa + BigInt(rng.below(MIB)) }; // overlaps the other in gpa
    case 8: return { ...r, size: BigInt(rng.range(1, 4096)) }; // tiny, not page-sized
    default: return r;
  }
}

/** A ring address: inside A, at the edge, outside every region, overflowing, or an unaligned one. */
function randomRingAddr(rng: Prng, q: number): [bigint, bigint, bigint] {
  const l = VirtqueueDriver.layout(RING_NUM, ringGpa(q), 1);
  const uva = (g: bigint): bigint => g + RAM[0].uva;
  const good: [bigint, bigint, bigint] = [uva(l.descGpa), uva(l.usedGpa), uva(l.availGpa)];
  const bad = (): bigint => rng.pick([
    0n, rng.u64(), U64_MAX - BigInt(rng.below(64)), RAM[0].uva + BigInt(RAM[0].size) - BigInt(rng.below(16)),
    RAM[1].uva + BigInt(RAM[1].size) - 8n, RAM[0].uva - 16n, RAM[1].gpa, 0x7f08_0000_0000n,
    RAM[0].uva + BigInt(rng.below(MIB)),
  ]);
  const k = rng.below(3);
  if (rng.chance(0.5)) good[k] = bad();
  else if (rng.chance(0.5)) good[k] = good[k] + BigInt(rng.range(1, 3)); // misaligned
  return good;
}

/** One message of the valid prefix at step `i`, or null when the prefix is done. */
function prefixMessage(i: number, rng: Prng, rig: VhostUserRig, m: SessionModel, fds: CaseFds): Msg | null {
  const ack = VERSION | NEED_REPLY;
  const q = i - 6;
  switch (i) {
    case 0: return { request: REQ.GET_FEATURES, flags: VERSION, payload: new Uint8Array(0), fds: [], hint: 'ok', what: 'GET_FEATURES' };
    case 1: return { request: REQ.GET_PROTOCOL_FEATURES, flags: VERSION, payload: new Uint8Array(0), fds: [], hint: 'ok', what: 'GET_PROTOCOL_FEATURES' };
    case 2: {
      const want = m.offeredProtocol & (rng.chance(0.9) ? (PF_REPLY_ACK | rng.u64()) : rng.u64());
      return { request: REQ.SET_PROTOCOL_FEATURES, flags: VERSION, payload: u64(want), fds: [], hint: 'ok',
        what: `SET_PROTOCOL_FEATURES 0x${want.toString(16)}`, apply: (s) => { s.protocol = want; } };
    }
    case 3: return { request: REQ.SET_OWNER, flags: ack, payload: new Uint8Array(0), fds: [], hint: 'ok', what: 'SET_OWNER' };
    case 4: {
      const f = m.offeredFeatures & (rng.chance(0.8) ? U64_MAX : rng.u64() | F_PROTOCOL_FEATURES);
      return { request: REQ.SET_FEATURES, flags: ack, payload: u64(f), fds: [], hint: 'ok', what: `SET_FEATURES 0x${f.toString(16)}`,
        apply: (s) => { s.featuresSet = true; s.features = f; } };
    }
    case 5: {
      const regions = rng.chance(0.7) ? [rig.region(0), rig.region(1)] : [rig.region(0)];
      return { request: REQ.SET_MEM_TABLE, flags: ack, payload: memTable(regions), fds: regions.map((r) => r.fd), hint: 'ok',
        what: `SET_MEM_TABLE ${regions.length} regions`, apply: (s) => { s.regions = regions; } };
    }
  }
  // queues: NUM, BASE, ADDR, CALL, KICK, ENABLE per queue
  const qi = Math.floor(q / 6);
  if (qi >= m.numQueues) return null;
  const l = VirtqueueDriver.layout(RING_NUM, ringGpa(qi), 1);
  const uva = (g: bigint): bigint => g + RAM[0].uva;
  switch (q % 6) {
    case 0: return { request: REQ.SET_VRING_NUM, flags: ack, payload: state(qi, RING_NUM), fds: [], hint: 'ok',
      what: `SET_VRING_NUM ${qi}`, apply: (s) => { s.num.set(qi, RING_NUM); } };
    case 1: return { request: REQ.SET_VRING_BASE, flags: ack, payload: state(qi, 0), fds: [], hint: 'ok', what: `SET_VRING_BASE ${qi}` };
    case 2: return { request: REQ.SET_VRING_ADDR, flags: ack, payload: vringAddr(qi, uva(l.descGpa), uva(l.usedGpa), uva(l.availGpa)),
      fds: [], hint: 'ok', what: `SET_VRING_ADDR ${qi}` };
    case 3: return { request: REQ.SET_VRING_CALL, flags: ack, payload: u64(BigInt(qi)), fds: [fds.eventfd()], hint: 'ok', what: `SET_VRING_CALL ${qi}` };
    case 4: {
      const k = fds.eventfd();
      fds.kick.set(qi, k);
      return { request: REQ.SET_VRING_KICK, flags: ack, payload: u64(BigInt(qi)), fds: [k], hint: 'ok', what: `SET_VRING_KICK ${qi}` };
    }
    default: {
      const protocolOn = ((m.featuresSet ? m.features : m.offeredFeatures) & F_PROTOCOL_FEATURES) !== 0n;
      return protocolOn
        ? { request: REQ.SET_VRING_ENABLE, flags: ack, payload: state(qi, 1), fds: [], hint: 'ok', what: `SET_VRING_ENABLE ${qi}` }
        : { request: REQ.GET_FEATURES, flags: VERSION, payload: new Uint8Array(0), fds: [], hint: 'ok', what: 'GET_FEATURES' };
    }
  }
}

/** One mutated message. */
function mutatedMessage(rng: Prng, rig: VhostUserRig, m: SessionModel, fds: CaseFds): Msg {
  const flags = VERSION | (rng.chance(0.8) ? NEED_REPLY : 0);
  const nq = m.numQueues;
  const qIndex = (): number => rng.chance(0.8) ? rng.below(nq) : rng.pick([nq, nq + 1, 63, 64, 255, 256, 0xffffffff]);
  const msg = (request: number, payload: Uint8Array, hint: Msg['hint'], what: string, extra: Partial<Msg> = {}): Msg =>
    ({ request, flags, payload, fds: [], hint, what, ...extra });
  switch (rng.below(22)) {
    case 0: { // header damage: version, reply bit, unknown flags
      const f = rng.pick([0, 2, 3, VERSION | REPLY, VERSION | 0x10, VERSION | 0x8000_0000, rng.u32()]);
      return { ...msg(rng.pick([REQ.GET_FEATURES, REQ.SET_OWNER, REQ.SET_VRING_NUM]), state(0, 64), 'any', `flags 0x${f.toString(16)}`), flags: f };
    }
    case 1: { // wrong payload size for a known request (honest or lying header)
      const req = rng.pick([...EXACT_SIZE.keys(), REQ.SET_MEM_TABLE]);
      let len = rng.pick([0, 1, 7, 9, 16, 39, 41, 48, 8 + 32 * 9, 4096, 4097]);
      if (len === EXACT_SIZE.get(req)) len++; // a right size would be a real message the model does not follow
      const lie = rng.chance(0.3) ? rng.pick([len + 1, len + 100, 0xffffffff]) : undefined; // never shorter: framing
      return msg(req, rng.bytes(Math.min(len, 4200)), 'any', `request ${req} with ${len} bytes${lie !== undefined ? ` (header says ${lie})` : ''}`,
        { size: lie });
    }
    case 2: { // unknown or unsupported request codes, with fds sometimes
      const req = rng.pick([0, 6, 7, 19, 20, 21, 22, 23, 24, 25, 31, 32, 35, 39, 40, 41, 99, 0xffff, 0xffffffff, rng.u32()]);
      const f = rng.chance(0.3) ? Array.from({ length: rng.range(1, 3) }, () => fds.eventfd()) : [];
      return msg(req, rng.bytes(rng.pick([0, 8, 16, 40])), 'err', `unknown request ${req} with ${f.length} fds`, { fds: f });
    }
    case 3: { // SET_MEM_TABLE with random regions and fd counts
      const n = rng.range(0, 4);
      const regions = Array.from({ length: n }, () => randomRegion(rng, rig));
      const fdCount = rng.chance(0.7) ? n : rng.range(0, 9);
      const f = Array.from({ length: fdCount }, (_, i) => regions[i]?.fd ?? rig.mems[0]!.fd);
      const hint = fdCount !== n ? 'err' : tableHint(rig, regions);
      return msg(REQ.SET_MEM_TABLE, memTable(regions), hint, `SET_MEM_TABLE ${JSON.stringify(regions, big)} fds ${fdCount}`,
        { fds: f, apply: (s) => { if (hint === 'ok') s.regions = regions; } });
    }
    case 4: { // SET_MEM_TABLE whose nregions lies
      const regions = [rig.region(0)];
      const nregions = rng.pick([2, 8, 9, 0xffffffff]);
      return msg(REQ.SET_MEM_TABLE, memTable(regions, nregions), 'any', `SET_MEM_TABLE nregions ${nregions}`, { fds: [regions[0]!.fd] });
    }
    case 5: { // a memory region fd that is not memory: an eventfd, a directory, the socket itself
      const r = rig.region(0);
      const fd = rng.chance(0.5) ? fds.eventfd() : rig.mems[1]!.fd;
      const hint = fd === rig.mems[1]!.fd ? 'ok' : 'err';
      return msg(REQ.SET_MEM_TABLE, memTable([r]), hint, `SET_MEM_TABLE with fd kind ${hint === 'ok' ? 'memfd' : 'eventfd'}`,
        { fds: [fd], apply: (s) => { if (hint === 'ok') s.regions = [{ ...r, fd }]; } });
    }
    case 6: { // SET_VRING_NUM
      const num = rng.pick([0, 1, 3, 64, 100, 32768, 65536, 0xffffffff, RING_NUM]);
      const q = qIndex();
      const ok = q < nq && num >= 1 && num <= 32768 && (num & (num - 1)) === 0;
      return msg(REQ.SET_VRING_NUM, state(q, num), ok ? 'ok' : 'err', `SET_VRING_NUM ${q} ${num}`,
        { apply: (s) => { if (ok) s.num.set(q, num); } });
    }
    case 7: case 8: { // SET_VRING_ADDR, often outside every region
      const q = qIndex();
      const [d, u, a] = randomRingAddr(rng, q < nq ? q : 0);
      const hint = vringAddrHint(m, q, d, u, a);
      hit(`vu SET_VRING_ADDR predicted ${hint}${m.num.has(q) ? '' : ' (size unknown)'}`);
      return msg(REQ.SET_VRING_ADDR, vringAddr(q, d, u, a, rng.chance(0.1) ? 1 : 0), hint,
        `SET_VRING_ADDR ${q} desc 0x${d.toString(16)} used 0x${u.toString(16)} avail 0x${a.toString(16)}`);
    }
    case 9: { // SET_VRING_BASE
      const q = qIndex();
      const base = rng.pick([0, 1, 0xffff, 0x10000, 0xffffffff, rng.below(0x10000)]);
      return msg(REQ.SET_VRING_BASE, state(q, base), q < nq && base <= 0xffff ? 'ok' : 'err', `SET_VRING_BASE ${q} ${base}`);
    }
    case 10: { // GET_VRING_BASE (stops the ring); an out-of-range index closes
      const q = rng.chance(0.9) ? rng.below(nq) : qIndex();
      return { ...msg(REQ.GET_VRING_BASE, state(q, 0), 'ok', `GET_VRING_BASE ${q}`), flags: VERSION };
    }
    case 11: case 12: { // SET_VRING_KICK/CALL/ERR with missing, extra or flagged fds; u64 = index | NOFD << 8
      const req = rng.pick([REQ.SET_VRING_KICK, REQ.SET_VRING_CALL, REQ.SET_VRING_ERR]);
      let u = BigInt(qIndex()) | (rng.chance(0.2) ? 0x100n : 0n);
      if (rng.chance(0.1)) u |= 1n << BigInt(rng.range(9, 63)); // reserved bits
      const index = Number(u & 0xffn);
      const noFd = (u & 0x100n) !== 0n;
      const n = rng.chance(0.7) ? (noFd ? 0 : 1) : rng.range(0, 3);
      const f = Array.from({ length: n }, () => fds.eventfd());
      const ok = (u >> 9n) === 0n && n === (noFd ? 0 : 1) && index < nq;
      if (ok && n === 1 && rng.chance(0.15)) { // not an eventfd: a memfd (epoll refuses it as a kick fd)
        f[0] = rig.mems[0]!.fd;
        fds.kick.delete(index);
        return msg(req, u64(u), 'any', `request ${req} u64 0x${u.toString(16)} with a memfd`, { fds: f });
      }
      if (ok && req === REQ.SET_VRING_KICK) {
        if (n === 1) fds.kick.set(index, f[0]!);
        else fds.kick.delete(index);
      }
      return msg(req, u64(u), ok ? 'ok' : 'err', `request ${req} u64 0x${u.toString(16)} with ${n} fds`, { fds: f });
    }
    case 13: { // SET_VRING_ENABLE
      const q = qIndex();
      const on = rng.pick([0, 1, 2, 0xffffffff]);
      return msg(REQ.SET_VRING_ENABLE, state(q, on), q < nq && on <= 1 ? 'ok' : 'err', `SET_VRING_ENABLE ${q} ${on}`);
    }
    case 14: { // extra fds on messages that take none (closed by the backend)
      const f = Array.from({ length: rng.range(1, 10) }, () => fds.eventfd());
      const req = rng.pick([REQ.SET_OWNER, REQ.SET_VRING_NUM, REQ.SET_FEATURES]);
      const payload = req === REQ.SET_OWNER ? new Uint8Array(0) : req === REQ.SET_VRING_NUM ? state(0, RING_NUM) : u64(m.offeredFeatures);
      return msg(req, payload, 'ok', `request ${req} with ${f.length} extra fds`, { fds: f,
        apply: (s) => { if (req === REQ.SET_VRING_NUM) s.num.set(0, RING_NUM); if (req === REQ.SET_FEATURES) { s.featuresSet = true; s.features = m.offeredFeatures; } } });
    }
    case 15: { // features not offered
      const req = rng.pick([REQ.SET_FEATURES, REQ.SET_PROTOCOL_FEATURES]);
      const offered = req === REQ.SET_FEATURES ? m.offeredFeatures : m.offeredProtocol;
      const x = rng.chance(0.5) ? rng.u64() : offered;
      const ok = (x & ~offered) === 0n;
      return msg(req, u64(x), ok ? 'ok' : 'err', `request ${req} 0x${x.toString(16)}`, { apply: (s) => {
        if (!ok) return;
        if (req === REQ.SET_FEATURES) { s.featuresSet = true; s.features = x; } else s.protocol = x;
      } });
    }
    case 16: { // ADD_MEM_REG / REM_MEM_REG
      const r = rng.chance(0.5) ? randomRegion(rng, rig) : rig.region(rng.below(2));
      if (rng.chance(0.5)) {
        const n = rng.chance(0.8) ? 1 : rng.pick([0, 2]);
        const hint = n !== 1 ? 'err' : tableHint(rig, [...m.regions, r]);
        return msg(REQ.ADD_MEM_REG, singleRegion(r), hint, `ADD_MEM_REG ${JSON.stringify(r, big)} fds ${n}`,
          { fds: Array.from({ length: n }, () => r.fd), apply: (s) => { if (hint === 'ok') s.regions = [...s.regions, r]; } });
      }
      const present = m.regions.some((x) => x.gpa === r.gpa && x.uva === r.uva && x.size === r.size);
      return msg(REQ.REM_MEM_REG, singleRegion(r), present ? 'ok' : 'err', `REM_MEM_REG ${JSON.stringify(r, big)}`,
        { apply: (s) => { s.regions = s.regions.filter((x) => !(x.gpa === r.gpa && x.uva === r.uva && x.size === r.size)); } });
    }
    case 17: // requests needing protocol features that may not be negotiated
      return { ...msg(rng.pick([REQ.GET_QUEUE_NUM, REQ.GET_MAX_MEM_SLOTS, REQ.GET_PROTOCOL_FEATURES]), new Uint8Array(0), 'ok', 'GET_*'),
        flags: VERSION };
    case 18:
      return msg(REQ.RESET_DEVICE, new Uint8Array(0), 'ok', 'RESET_DEVICE', { apply: (s) => { s.featuresSet = false; s.features = 0n; s.num.clear(); } });
    case 19:
      return msg(REQ.RESET_OWNER, new Uint8Array(0), 'ok', 'RESET_OWNER');
    default: { // a message cut short: header only, then the connection ends
      const payload = rng.bytes(rng.range(0, 20));
      return msg(rng.pick([REQ.SET_MEM_TABLE, REQ.SET_VRING_ADDR, REQ.SET_FEATURES]), payload, 'any',
        `truncated message (${payload.length} of 40 bytes)`, { size: 40 });
    }
  }
}

function big(_k: string, v: unknown): unknown {
  return typeof v === 'bigint' ? `0x${v.toString(16)}` : v;
}

/** Requests in queue q's ring (valid GETATTRs or garbage descriptors), then a kick if we hold its kick fd. */
function kickQueue(rng: Prng, rig: VhostUserRig, fds: CaseFds, q: number): void {
  const kick = fds.kick.get(q);
  if (kick === undefined) return;
  const mem = rig.mems[0]!;
  const drv = new VirtqueueDriver(mem, { num: RING_NUM, ringGpa: ringGpa(q), indirectMax: 1, initialIdx: rng.below(3) });
  const n = rng.range(1, 4);
  for (let i = 0; i < n; i++) {
    const gpa = REQ_GPA + BigInt(q * 0x4000 + i * 0x1000);
    if (rng.chance(0.6)) {
      const req = fuseRequest(rng.chance(0.5) ? FUSE_GETATTR : rng.below(60), BigInt(i + 1), 1n, new Uint8Array(16));
      mem.bytes().set(req, mem.gpaToOffset(gpa));
      drv.add([{ gpa, len: req.length }], [{ gpa: gpa + 0x800n, len: rng.pick([0, 8, 16, 256]) }]);
    } else {
      const head = drv.add([{ gpa, len: 64 }], []);
      const d = mem.gpaToOffset(drv.layout.descGpa) + 16 * head;
      mem.bytes().set(rng.bytes(16), d); // a garbage descriptor
    }
  }
  drv.publish();
  native.eventfdWrite(kick, 1);
  hit('vu kick');
}

// ---- one case ------------------------------------------------------------------------------------------------

export async function vhostUserCase(rig: VhostUserRig, seed: number): Promise<void> {
  const rng = new Prng(seed);
  const pair = new Int32Array(2);
  if (native.socketpair(pair) < 0) throw new Error('socketpair failed');
  native.setNonblocking(pair[0]!, true);
  native.setNonblocking(pair[1]!, true);
  const nrq = rng.chance(0.7) ? 1 : rng.range(2, 3);
  let endReason: Error | null | undefined;
  const backend = new VhostUserBackend(pair[0]!, rig.core, rig.server, rig.poller, { numRequestQueues: nrq },
    (r) => { endReason = r; rig.server.endSession(); });
  backend.start();
  const fe = new RawFrontend(pair[1]!);
  const m = new SessionModel(1 + nrq);
  const fds = new CaseFds();
  const trail: string[] = [];
  try {
    // GET_FEATURES and GET_PROTOCOL_FEATURES always: the model learns the offers from them.
    const prefixLen = rng.chance(0.15) ? rng.range(2, 5) : 6 + 6 * m.numQueues;
    const mutations = rng.range(0, 12);
    let stalled = false;
    for (let i = 0; i < prefixLen + mutations && !fe.closed; i++) {
      const msg = i < prefixLen ? prefixMessage(i, rng, rig, m, fds) : mutatedMessage(rng, rig, m, fds);
      if (msg === null) continue;
      if (i >= prefixLen && rng.chance(0.25)) kickQueue(rng, rig, fds, rng.below(m.numQueues));
      const exp = expectFor(msg, m);
      trail.push(`${msg.what} -> ${exp.kind}${exp.kind === 'ack' ? ` ${exp.ack}` : ''}`);
      hit(`vu ${exp.kind}${exp.kind === 'ack' ? ` ${exp.ack}` : ''}`);
      const size = msg.size ?? msg.payload.length;
      const bytes = new Uint8Array(12 + msg.payload.length);
      const hv = new DataView(bytes.buffer);
      hv.setUint32(0, msg.request >>> 0, true);
      hv.setUint32(4, msg.flags >>> 0, true);
      hv.setUint32(8, size >>> 0, true);
      bytes.set(msg.payload, 12);
      if (!(await fe.send(bytes, msg.fds))) {
        if (exp.kind !== 'close') throw new Finding('vhost-close', `connection closed before ${msg.what}`, trail);
        break;
      }
      await check(fe, msg, exp, m, trail);
      if (exp.kind === 'stall') {
        stalled = true;
        break;
      }
      if (exp.kind === 'close') break;
      // The model follows the messages the backend took (an ack 'err' means it did not).
      if (msg.apply !== undefined && msg.hint !== 'err') msg.apply(m);
    }
    // Sync: the next message must be the reply to this GET_FEATURES (no reply missing, none extra).
    if (!fe.closed && !stalled) {
      const getf = new Uint8Array(12);
      new DataView(getf.buffer).setUint32(0, REQ.GET_FEATURES, true);
      new DataView(getf.buffer).setUint32(4, VERSION, true);
      if (await fe.send(getf, [])) {
        const r = await fe.next(STEP_TIMEOUT_MS);
        if (r === 'timeout') throw new Finding('vhost-hang', 'no reply to the final GET_FEATURES', trail);
        if (r === 'closed') throw new Finding('vhost-close', 'connection closed; the model expected a GET_FEATURES reply', trail);
        if (r.request !== REQ.GET_FEATURES) {
          throw new Finding('vhost-reply', `an unexpected reply to request ${r.request} before the final GET_FEATURES`, trail);
        }
      } else {
        throw new Finding('vhost-close', 'connection closed before the final GET_FEATURES', trail);
      }
      // Give kicked queues a few turns of the event loop before hanging up.
      for (let k = 0; k < 4; k++) await tick();
    }
  } finally {
    native.close(pair[1]!);
    const t0 = Date.now();
    while (!backend.isClosed && Date.now() - t0 < STEP_TIMEOUT_MS) await tick();
    fds.closeAll();
  }
  if (!backend.isClosed) throw new Finding('vhost-hang', 'the backend did not notice the frontend hanging up', trail);
  const errors = rig.takeErrors();
  if (errors.length) throw new Finding('vhost-error-log', `log.error: ${errors[0]!.slice(0, 600)}`, trail);
  if (endReason instanceof VhostUserError && endReason.code === 'VU_ERR_INTERNAL') {
    throw new Finding('vhost-internal', `session ended with ${endReason.message}`, trail);
  }
}

/** Checks the backend's answer to one message against the model's expectation. */
async function check(fe: RawFrontend, msg: Msg, exp: Expect, m: SessionModel, trail: string[]): Promise<void> {
  if (exp.kind === 'silent' || exp.kind === 'stall') return;
  const r = await fe.next(STEP_TIMEOUT_MS);
  if (exp.kind === 'close') {
    if (r === 'timeout') throw new Finding('vhost-close', `${msg.what}: connection not closed`, trail);
    if (r !== 'closed') throw new Finding('vhost-close', `${msg.what}: replied (request ${r.request}) instead of closing`, trail);
    return;
  }
  if (r === 'timeout') throw new Finding('vhost-hang', `${msg.what}: no reply`, trail);
  if (r === 'closed') throw new Finding('vhost-close', `${msg.what}: connection closed, the model expected ${exp.kind}`, trail);
  if (r.request !== msg.request || r.flags !== (VERSION | REPLY)) {
    throw new Finding('vhost-reply', `${msg.what}: reply header request ${r.request} flags 0x${r.flags.toString(16)}`, trail);
  }
  if (r.payload.length !== 8) throw new Finding('vhost-reply', `${msg.what}: reply payload ${r.payload.length} bytes`, trail);
  const v = new DataView(r.payload.buffer);
  if (exp.kind === 'body') {
    switch (msg.request) {
      case REQ.GET_FEATURES: m.offeredFeatures = v.getBigUint64(0, true); break;
      case REQ.GET_PROTOCOL_FEATURES: m.offeredProtocol = v.getBigUint64(0, true); break;
      case REQ.GET_QUEUE_NUM:
        if (v.getBigUint64(0, true) !== BigInt(m.numQueues)) throw new Finding('vhost-reply', `GET_QUEUE_NUM = ${v.getBigUint64(0, true)}`, trail);
        break;
      case REQ.GET_VRING_BASE: {
        const index = new DataView(msg.payload.buffer).getUint32(0, true);
        if (v.getUint32(0, true) !== index || v.getUint32(4, true) > 0xffff) {
          throw new Finding('vhost-reply', `GET_VRING_BASE ${index} answered {${v.getUint32(0, true)}, ${v.getUint32(4, true)}}`, trail);
        }
        break;
      }
    }
    return;
  }
  const status = v.getBigUint64(0, true);
  if (exp.kind === 'ack' && exp.ack !== 'any' && (status === 0n) !== (exp.ack === 'ok')) {
    throw new Finding('vhost-ack', `${msg.what}: acked ${status}, the model expected ${exp.ack}`, trail);
  }
  if (exp.kind === 'ack' && exp.ack === 'any' && status !== 0n) msg.hint = 'err';
}

// ---- the good session ----------------------------------------------------------------------------------------

/** A fresh frontend through the listener: negotiate, memory, a ring, INIT and GETATTR of the root served. */
export async function goodSession(rig: VhostUserRig): Promise<void> {
  const fe = await VhostUserFrontend.connect(rig.listener.socketPath, { poller: rig.poller, timeoutMs: STEP_TIMEOUT_MS });
  try {
    await fe.negotiate();
    const mem = rig.mems[1]!;
    await fe.setMemTable([rig.mems[0]!.region, mem.region]);
    const drv = await fe.setupDriverVring(1, mem, { num: 16, ringGpa: mem.guestAddr + 0x80000n, indirectMax: 1 });
    const at = mem.guestAddr + 0x90000n;
    const init = new Uint8Array(64);
    new DataView(init.buffer).setUint32(0, 7, true);
    new DataView(init.buffer).setUint32(4, 36, true);
    for (const [opcode, unique, args] of [[FUSE_INIT, 1n, init], [FUSE_GETATTR, 2n, new Uint8Array(16)]] as const) {
      const req = fuseRequest(opcode, unique, 1n, args);
      mem.bytes().set(req, mem.gpaToOffset(at));
      mem.bytes().fill(0, mem.gpaToOffset(at + 0x1000n), mem.gpaToOffset(at + 0x2000n));
      drv.add([{ gpa: at, len: req.length }], [{ gpa: at + 0x1000n, len: 4096 }]);
      drv.publish();
      fe.kick(1);
      // The used ring is polled (the call eventfd is only checked for not being a requirement here).
      const t0 = Date.now();
      let used = drv.pollUsed();
      while (used.length === 0 && Date.now() - t0 < STEP_TIMEOUT_MS) {
        await tick();
        used = drv.pollUsed();
      }
      drv.setUsedEvent(drv.lastUsed);
      const v = mem.view();
      const o = mem.gpaToOffset(at + 0x1000n);
      const len = v.getUint32(o, true);
      const error = v.getInt32(o + 4, true);
      if (used.length !== 1 || error !== 0 || v.getBigUint64(o + 8, true) !== unique) {
        throw new Finding('good-session', `opcode ${opcode}: used ${JSON.stringify(used)}, reply len ${len} error ${error}`);
      }
      if (opcode === FUSE_GETATTR && (len !== 120 || (v.getUint32(o + 16 + 16 + 60, true) & 0o170000) !== 0o040000)) {
        throw new Finding('good-session', `GETATTR of the root answered len ${len}`);
      }
    }
    rig.goodSessions++;
  } finally {
    fe.close();
    const t0 = Date.now();
    while (rig.listener.backend !== null && Date.now() - t0 < STEP_TIMEOUT_MS) await tick();
  }
}

/** "fd -> what it is" for every open fd (for the leak message). */
function fdTable(): Map<number, string> {
  const t = new Map<number, string>();
  for (const f of fs.readdirSync('/proc/self/fd')) {
    try {
      t.set(Number(f), fs.readlinkSync(`/proc/self/fd/${f}`));
    } catch { /* the directory's own fd, gone */ }
  }
  return t;
}

/**
 * fds and guest mappings back at the baseline (taken by the first call). A difference is looked at again after a
 * few event-loop turns (something closing asynchronously is not a leak) before it is a finding.
 */
export async function checkLeaks(rig: VhostUserRig): Promise<void> {
  if (rig.baselineFds < 0) {
    rig.baselineFds = countOpenFds();
    rig.baselineMaps = guestMappings();
    rig.baselineFdTable = fdTable();
    return;
  }
  for (let i = 0; i < 50 && (countOpenFds() !== rig.baselineFds || guestMappings() !== rig.baselineMaps); i++) {
    await new Promise((r) => setTimeout(r, 2));
  }
  const fdsNow = countOpenFds();
  if (fdsNow !== rig.baselineFds) {
    const now = fdTable();
    const added = [...now].filter(([fd, what]) => rig.baselineFdTable.get(fd) !== what).map(([fd, w]) => `${fd} -> ${w}`);
    const gone = [...rig.baselineFdTable].filter(([fd, what]) => now.get(fd) !== what).map(([fd, w]) => `${fd} -> ${w}`);
    throw new Finding('vhost-fd-leak', `${fdsNow} fds open, ${rig.baselineFds} at the baseline; new: ${added.join(', ')}` +
      `${gone.length ? `; gone: ${gone.join(', ')}` : ''}`);
  }
  const mapsNow = guestMappings();
  if (mapsNow !== rig.baselineMaps) {
    throw new Finding('vhost-map-leak', `${mapsNow} guest-memory mappings, ${rig.baselineMaps} at the baseline`);
  }
}

// ---- running -------------------------------------------------------------------------------------------------

/** Cases between the leak checks and good sessions. */
export const CHECK_EVERY = 32;

export interface VhostUserFinding {
  caseSeed: number; index: number; invariant: string; message: string; detail?: unknown;
}

/**
 * The case running now, kept on disk (findings/.vhost-user-running.<pid>) so a crash of the process is reported
 * by the next run; one file per process, so concurrent runs do not take each other for crashed.
 */
export class CrashMarker {
  private fd = -1;
  readonly file: string;
  constructor(readonly dir: string) {
    this.file = path.join(dir, `.vhost-user-running.${process.pid}`);
  }
  /** The cases that runs which are no longer alive died in (their marker files are removed). */
  static collect(dir: string): Array<{ caseSeed: number; runSeed: number; index: number; pid: number }> {
    const out = [];
    let names: string[] = [];
    try {
      names = fs.readdirSync(dir);
    } catch {
      return [];
    }
    for (const name of names) {
      const m = /^\.vhost-user-running\.(\d+)$/.exec(name);
      if (m === null || fs.existsSync(`/proc/${m[1]}`)) continue;
      const file = path.join(dir, name);
      try {
        const s = fs.readFileSync(file, 'utf8').replace(/\0+$/, '').trim();
        if (s) out.push({ ...JSON.parse(s), pid: Number(m[1]) });
      } catch { /* unreadable: dropped */ }
      fs.rmSync(file, { force: true });
    }
    return out;
  }
  set(runSeed: number, index: number, seed: number): void {
    if (this.fd < 0) {
      fs.mkdirSync(this.dir, { recursive: true });
      this.fd = fs.openSync(this.file, 'w');
    }
    const b = Buffer.alloc(96);
    b.write(JSON.stringify({ caseSeed: seed, runSeed, index }));
    fs.writeSync(this.fd, b, 0, b.length, 0);
  }
  clear(): void {
    if (this.fd >= 0) fs.closeSync(this.fd);
    this.fd = -1;
    fs.rmSync(this.file, { force: true });
  }
}

/**
 * Runs cases caseSeed(runSeed, i) for `budgetMs` (or `maxCases`), with the leak checks and a good session every
 * CHECK_EVERY cases and at the end. A finding is recorded and the rig rebuilt.
 */
export async function runVhostUser(runSeed: number, budgetMs: number, maxCases = Infinity, maxFindings = 10,
  marker?: CrashMarker): Promise<{ executions: number; ms: number; findings: VhostUserFinding[]; goodSessions: number }> {
  let rig = await VhostUserRig.create();
  const findings: VhostUserFinding[] = [];
  const started = Date.now();
  let goodSessions = 0;
  const record = async (seed: number, index: number, err: unknown): Promise<void> => {
    const f = err instanceof Finding ? err : new Finding('harness', (err as Error).stack ?? String(err));
    findings.push({ caseSeed: seed, index, invariant: f.invariant, message: f.message, detail: f.detail });
    goodSessions += rig.goodSessions;
    rig.close();
    rig = await VhostUserRig.create();
  };
  const periodic = async (seed: number, index: number): Promise<void> => {
    try {
      await goodSession(rig);
      await checkLeaks(rig);
      const errors = rig.takeErrors();
      if (errors.length) throw new Finding('vhost-error-log', `log.error: ${errors[0]!.slice(0, 600)}`);
    } catch (err) {
      await record(seed, index, err);
    }
  };
  marker?.set(runSeed, 0, caseSeed(runSeed, 0)); // opens its file before the fd baseline is taken
  await periodic(0, -1); // the baseline
  let i = 0;
  for (; i < maxCases && Date.now() - started < budgetMs && findings.length < maxFindings; i++) {
    const seed = caseSeed(runSeed, i);
    marker?.set(runSeed, i, seed);
    try {
      await vhostUserCase(rig, seed);
    } catch (err) {
      await record(seed, i, err);
      continue;
    }
    if ((i + 1) % CHECK_EVERY === 0) await periodic(seed, i);
  }
  await periodic(caseSeed(runSeed, Math.max(0, i - 1)), i - 1);
  marker?.clear();
  goodSessions += rig.goodSessions;
  rig.close();
  return { executions: i, ms: Date.now() - started, findings, goodSessions };
}

/** Replays one case on a fresh rig, then the leak checks and a good session; throws its Finding. */
export async function replayVhostUser(seed: number): Promise<void> {
  const rig = await VhostUserRig.create();
  try {
    await goodSession(rig);
    await checkLeaks(rig);
    await vhostUserCase(rig, seed);
    await goodSession(rig);
    await checkLeaks(rig);
  } finally {
    rig.close();
  }
}

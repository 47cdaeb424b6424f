/**
 * vhost-user wire format: message numbers, feature bits, the 12-byte header and the payload layouts, as
 * described by QEMU's docs/interop/vhost-user.rst. Pure data and codecs, no I/O; shared by the backend
 * (`backend.ts`) and the frontend library (`../frontend/vhost-user-frontend.ts`).
 *
 * ```
 *  0        4        8        12
 *  +--------+--------+--------+---------------------+
 *  |request | flags  |  size  | payload (size bytes)|   all numbers in host byte order (little endian here)
 *  +--------+--------+--------+---------------------+
 *  flags: bits 0-1 version (1), bit 2 REPLY, bit 3 NEED_REPLY
 * ```
 */

import { VhostUserError } from '../errors.js';

export const VHOST_USER_HDR_SIZE = 12;
export const VHOST_USER_VERSION = 0x1;
export const VHOST_USER_VERSION_MASK = 0x3;
export const VHOST_USER_REPLY_MASK = 0x4;
export const VHOST_USER_NEED_REPLY_MASK = 0x8;
/** Flag bits a request may carry; anything else is a syntax error. */
export const VHOST_USER_KNOWN_FLAGS = VHOST_USER_VERSION_MASK | VHOST_USER_REPLY_MASK | VHOST_USER_NEED_REPLY_MASK;

/** Largest payload we accept. Real messages are far smaller (a full memory table is 264 bytes). */
export const VHOST_USER_MAX_PAYLOAD = 4096;
/** Regions in one SET_MEM_TABLE and fds in one message (VHOST_MEMORY_BASELINE_NREGIONS). */
export const VHOST_USER_MAX_FDS = 8;
/** SET_VRING_KICK/CALL/ERR u64: bits 0-7 vring index, bit 8 "no fd attached". */
export const VHOST_USER_VRING_IDX_MASK = 0xff;
export const VHOST_USER_VRING_NOFD_MASK = 0x100;

/** Front-end -> back-end request numbers. */
export const VhostUserRequest = {
  GET_FEATURES: 1,
  SET_FEATURES: 2,
  SET_OWNER: 3,
  RESET_OWNER: 4,
  SET_MEM_TABLE: 5,
  SET_LOG_BASE: 6,
  SET_LOG_FD: 7,
  SET_VRING_NUM: 8,
  SET_VRING_ADDR: 9,
  SET_VRING_BASE: 10,
  GET_VRING_BASE: 11,
  SET_VRING_KICK: 12,
  SET_VRING_CALL: 13,
  SET_VRING_ERR: 14,
  GET_PROTOCOL_FEATURES: 15,
  SET_PROTOCOL_FEATURES: 16,
  GET_QUEUE_NUM: 17,
  SET_VRING_ENABLE: 18,
  SEND_RARP: 19,
  NET_SET_MTU: 20,
  SET_BACKEND_REQ_FD: 21,
  IOTLB_MSG: 22,
  SET_VRING_ENDIAN: 23,
  GET_CONFIG: 24,
  SET_CONFIG: 25,
  CREATE_CRYPTO_SESSION: 26,
  CLOSE_CRYPTO_SESSION: 27,
  POSTCOPY_ADVISE: 28,
  POSTCOPY_LISTEN: 29,
  POSTCOPY_END: 30,
  GET_INFLIGHT_FD: 31,
  SET_INFLIGHT_FD: 32,
  GPU_SET_SOCKET: 33,
  RESET_DEVICE: 34,
  VRING_KICK: 35,
  GET_MAX_MEM_SLOTS: 36,
  ADD_MEM_REG: 37,
  REM_MEM_REG: 38,
  SET_STATUS: 39,
  GET_STATUS: 40,
  /** The backend's VIRTIO shared memory regions (the DAX window's size): nregions + 256 sizes. */
  GET_SHMEM_CONFIG: 44,
} as const;
export type VhostUserRequestCode = (typeof VhostUserRequest)[keyof typeof VhostUserRequest];

const requestNames = new Map<number, string>(Object.entries(VhostUserRequest).map(([k, v]) => [v, k]));

/** `SET_VRING_KICK` for 12, `UNKNOWN(99)` for anything else; for logs. */
export function requestName(request: number): string {
  return requestNames.get(request) ?? `UNKNOWN(${request})`;
}

// ---- virtio / vhost feature bits (GET_FEATURES / SET_FEATURES), as bigint masks ------------------------------
export const VIRTIO_RING_F_INDIRECT_DESC = 28;
export const VIRTIO_RING_F_EVENT_IDX = 29;
export const VHOST_USER_F_PROTOCOL_FEATURES = 30;
export const VIRTIO_F_VERSION_1 = 32;
export const VHOST_F_LOG_ALL = 26;

export const bit = (n: number): bigint => 1n << BigInt(n);

// ---- protocol feature bits (GET_PROTOCOL_FEATURES / SET_PROTOCOL_FEATURES) ------------------------------------
export const VhostUserProtocolFeature = {
  MQ: 0,
  LOG_SHMFD: 1,
  RARP: 2,
  REPLY_ACK: 3,
  MTU: 4,
  BACKEND_REQ: 5,
  CROSS_ENDIAN: 6,
  CRYPTO_SESSION: 7,
  PAGEFAULT: 8,
  CONFIG: 9,
  BACKEND_SEND_FD: 10,
  HOST_NOTIFIER: 11,
  INFLIGHT_SHMFD: 12,
  RESET_DEVICE: 13,
  INBAND_NOTIFICATIONS: 14,
  CONFIGURE_MEM_SLOTS: 15,
  STATUS: 16,
  /**
   * The backend may ask the frontend to map fds into its shared memory regions (SHMEM_MAP/UNMAP). Bit 22, as the
   * vhost-user spec assigns VHOST_USER_PROTOCOL_F_SHMEM_MAP and rust-vmm vhost uses since its bit fix (PR #367):
   * 20 is GET_VRING_BASE_INFLIGHT, 21 GPA_ADDRESSES (DESIGN.md "DAX window").
   */
  SHMEM: 22,
} as const;

/** Backend -> frontend requests on the backend channel (SET_BACKEND_REQ_FD). */
export const VhostUserBackendRequest = {
  SHMEM_MAP: 9,
  SHMEM_UNMAP: 10,
} as const;

/**
 * The original virtio-fs patches' backend requests (QEMU forks with vhost-user-fs-pci,cache-size=): the same
 * numbers mean SHARED_OBJECT_* upstream, so they are only ever sent under --dax-protocol=legacy.
 */
export const VhostUserLegacyFsRequest = {
  SLAVE_FS_MAP: 6,
  SLAVE_FS_UNMAP: 7,
} as const;

/** The device features a vhost-user-fs backend offers: what QEMU's vhost-user-fs passes through, minus packed rings. */
export const FS_DEVICE_FEATURES =
  bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_RING_F_INDIRECT_DESC) | bit(VIRTIO_RING_F_EVENT_IDX) |
  bit(VHOST_USER_F_PROTOCOL_FEATURES);

/** Protocol features we implement. */
export const FS_PROTOCOL_FEATURES =
  bit(VhostUserProtocolFeature.MQ) | bit(VhostUserProtocolFeature.REPLY_ACK) |
  bit(VhostUserProtocolFeature.RESET_DEVICE) | bit(VhostUserProtocolFeature.CONFIGURE_MEM_SLOTS);

/** Memory slots reported by GET_MAX_MEM_SLOTS (QEMU caps it at what the machine supports). */
export const FS_MAX_MEM_SLOTS = 32;

// ---- header ------------------------------------------------------------------------------------------------
export interface VhostUserHeader {
  request: number;
  flags: number;
  size: number;
}

export function decodeHeader(view: DataView, offset = 0): VhostUserHeader {
  return {
    request: view.getUint32(offset, true),
    flags: view.getUint32(offset + 4, true),
    size: view.getUint32(offset + 8, true),
  };
}

export function encodeHeader(view: DataView, offset: number, request: number, flags: number, size: number): void {
  view.setUint32(offset, request, true);
  view.setUint32(offset + 4, flags, true);
  view.setUint32(offset + 8, size, true);
}

/**
 * Syntax of a request header as the backend receives it: version 1, no reply bit, no unknown flag bits, size
 * within VHOST_USER_MAX_PAYLOAD. Returns null when fine, else what is wrong (the connection is then closed).
 */
export function checkRequestHeader(h: VhostUserHeader): string | null {
  if ((h.flags & VHOST_USER_VERSION_MASK) !== VHOST_USER_VERSION) return `bad version in flags 0x${h.flags.toString(16)}`;
  if ((h.flags & VHOST_USER_REPLY_MASK) !== 0) return 'reply flag set on a request';
  if ((h.flags & ~VHOST_USER_KNOWN_FLAGS) !== 0) return `unknown flag bits 0x${h.flags.toString(16)}`;
  if (h.size > VHOST_USER_MAX_PAYLOAD) return `payload size ${h.size} exceeds ${VHOST_USER_MAX_PAYLOAD}`;
  return null;
}

// ---- payload layouts ---------------------------------------------------------------------------------------
/** u64 payload. */
export const U64_SIZE = 8;
/** Vring state: u32 index, u32 num. */
export const VRING_STATE_SIZE = 8;
/** Vring address: u32 index, u32 flags, u64 desc, u64 used, u64 avail, u64 log. */
export const VRING_ADDR_SIZE = 40;
/** Memory table: u32 nregions, u32 padding, then nregions x region. */
export const MEM_TABLE_HDR_SIZE = 8;
/** Memory region: u64 guest address, u64 size, u64 user address, u64 mmap offset. */
export const MEM_REGION_SIZE = 32;
/** Single memory region (ADD/REM_MEM_REG): u64 padding, then a region. */
export const SINGLE_MEM_REGION_SIZE = 8 + MEM_REGION_SIZE;
/** Vring flag in SET_VRING_ADDR: log used ring writes. */
export const VHOST_VRING_F_LOG = 0x1;

export interface VringState { index: number; num: number }
export interface VringAddr { index: number; flags: number; desc: bigint; used: bigint; avail: bigint; log: bigint }
export interface MemRegion { guestAddr: bigint; size: bigint; userAddr: bigint; mmapOffset: bigint }

/**
 * Payload size rule per request: an exact size, or a check function. Requests absent from the table are unknown
 * to this implementation (any size up to the maximum is syntactically fine; the handler answers "unsupported").
 */
export type SizeRule = number | ((size: number) => boolean);

export const REQUEST_PAYLOAD_SIZE: ReadonlyMap<number, SizeRule> = new Map<number, SizeRule>([
  [VhostUserRequest.GET_FEATURES, 0],
  [VhostUserRequest.SET_FEATURES, U64_SIZE],
  [VhostUserRequest.SET_OWNER, 0],
  [VhostUserRequest.RESET_OWNER, 0],
  // Strictly 8 + n*32 (what QEMU sends); some frontends send the whole 8-region struct: accept both.
  [VhostUserRequest.SET_MEM_TABLE, (s) => s >= MEM_TABLE_HDR_SIZE && s <= MEM_TABLE_HDR_SIZE + VHOST_USER_MAX_FDS * MEM_REGION_SIZE &&
    (s - MEM_TABLE_HDR_SIZE) % MEM_REGION_SIZE === 0],
  [VhostUserRequest.SET_VRING_NUM, VRING_STATE_SIZE],
  [VhostUserRequest.SET_VRING_ADDR, VRING_ADDR_SIZE],
  [VhostUserRequest.SET_VRING_BASE, VRING_STATE_SIZE],
  [VhostUserRequest.GET_VRING_BASE, VRING_STATE_SIZE],
  [VhostUserRequest.SET_VRING_KICK, U64_SIZE],
  [VhostUserRequest.SET_VRING_CALL, U64_SIZE],
  [VhostUserRequest.SET_VRING_ERR, U64_SIZE],
  [VhostUserRequest.GET_PROTOCOL_FEATURES, 0],
  [VhostUserRequest.SET_PROTOCOL_FEATURES, U64_SIZE],
  [VhostUserRequest.GET_QUEUE_NUM, 0],
  [VhostUserRequest.SET_VRING_ENABLE, VRING_STATE_SIZE],
  [VhostUserRequest.RESET_DEVICE, 0],
  [VhostUserRequest.GET_MAX_MEM_SLOTS, 0],
  [VhostUserRequest.ADD_MEM_REG, SINGLE_MEM_REGION_SIZE],
  [VhostUserRequest.REM_MEM_REG, SINGLE_MEM_REGION_SIZE],
  [VhostUserRequest.SET_BACKEND_REQ_FD, 0],
  [VhostUserRequest.GET_SHMEM_CONFIG, 0],
]);

export function payloadSizeOk(request: number, size: number): boolean {
  const rule = REQUEST_PAYLOAD_SIZE.get(request);
  if (rule === undefined) return size <= VHOST_USER_MAX_PAYLOAD;
  return typeof rule === 'number' ? size === rule : rule(size);
}

function need(view: DataView, offset: number, size: number, what: string): void {
  if (offset < 0 || offset + size > view.byteLength) {
    throw new VhostUserError('VU_ERR_INVALID_MESSAGE', `${what}: payload too short (${view.byteLength - offset} < ${size})`);
  }
}

export function decodeU64(view: DataView, offset = 0): bigint {
  need(view, offset, U64_SIZE, 'u64');
  return view.getBigUint64(offset, true);
}

export function encodeU64(view: DataView, offset: number, v: bigint): void {
  view.setBigUint64(offset, BigInt.asUintN(64, v), true);
}

export function decodeVringState(view: DataView, offset = 0): VringState {
  need(view, offset, VRING_STATE_SIZE, 'vring state');
  return { index: view.getUint32(offset, true), num: view.getUint32(offset + 4, true) };
}

export function encodeVringState(view: DataView, offset: number, s: VringState): void {
  view.setUint32(offset, s.index, true);
  view.setUint32(offset + 4, s.num, true);
}

export function decodeVringAddr(view: DataView, offset = 0): VringAddr {
  need(view, offset, VRING_ADDR_SIZE, 'vring address');
  return {
    index: view.getUint32(offset, true),
    flags: view.getUint32(offset + 4, true),
    desc: view.getBigUint64(offset + 8, true),
    used: view.getBigUint64(offset + 16, true),
    avail: view.getBigUint64(offset + 24, true),
    log: view.getBigUint64(offset + 32, true),
  };
}

export function encodeVringAddr(view: DataView, offset: number, a: VringAddr): void {
  view.setUint32(offset, a.index, true);
  view.setUint32(offset + 4, a.flags, true);
  view.setBigUint64(offset + 8, a.desc, true);
  view.setBigUint64(offset + 16, a.used, true);
  view.setBigUint64(offset + 24, a.avail, true);
  view.setBigUint64(offset + 32, a.log, true);
}

function decodeRegion(view: DataView, offset: number): MemRegion {
  return {
    guestAddr: view.getBigUint64(offset, true),
    size: view.getBigUint64(offset + 8, true),
    userAddr: view.getBigUint64(offset + 16, true),
    mmapOffset: view.getBigUint64(offset + 24, true),
  };
}

function encodeRegion(view: DataView, offset: number, r: MemRegion): void {
  view.setBigUint64(offset, r.guestAddr, true);
  view.setBigUint64(offset + 8, r.size, true);
  view.setBigUint64(offset + 16, r.userAddr, true);
  view.setBigUint64(offset + 24, r.mmapOffset, true);
}

/**
 * Memory table. Checks: nregions <= 8 and the payload holds them; regions non-empty, not wrapping around 2^64 in
 * either address space. Overlap is left to the core (`memAddRegion` answers -EINVAL).
 */
export function decodeMemTable(view: DataView, offset = 0): MemRegion[] {
  need(view, offset, MEM_TABLE_HDR_SIZE, 'memory table');
  const n = view.getUint32(offset, true);
  if (n > VHOST_USER_MAX_FDS) throw new VhostUserError('VU_ERR_INVALID_MESSAGE', `memory table: ${n} regions (max ${VHOST_USER_MAX_FDS})`);
  need(view, offset, MEM_TABLE_HDR_SIZE + n * MEM_REGION_SIZE, 'memory table');
  const regions: MemRegion[] = [];
  for (let i = 0; i < n; i++) regions.push(checkRegion(decodeRegion(view, offset + MEM_TABLE_HDR_SIZE + i * MEM_REGION_SIZE)));
  return regions;
}

export function encodeMemTable(view: DataView, offset: number, regions: readonly MemRegion[]): number {
  view.setUint32(offset, regions.length, true);
  view.setUint32(offset + 4, 0, true);
  regions.forEach((r, i) => encodeRegion(view, offset + MEM_TABLE_HDR_SIZE + i * MEM_REGION_SIZE, r));
  return MEM_TABLE_HDR_SIZE + regions.length * MEM_REGION_SIZE;
}

export function decodeSingleMemRegion(view: DataView, offset = 0): MemRegion {
  need(view, offset, SINGLE_MEM_REGION_SIZE, 'memory region');
  return checkRegion(decodeRegion(view, offset + 8));
}

export function encodeSingleMemRegion(view: DataView, offset: number, r: MemRegion): number {
  view.setBigUint64(offset, 0n, true);
  encodeRegion(view, offset + 8, r);
  return SINGLE_MEM_REGION_SIZE;
}

const U64_MAX = (1n << 64n) - 1n;

function checkRegion(r: MemRegion): MemRegion {
  if (r.size === 0n || r.guestAddr > U64_MAX - (r.size - 1n) || r.userAddr > U64_MAX - (r.size - 1n) ||
      r.mmapOffset > U64_MAX - (r.size - 1n)) {
    throw new VhostUserError('VU_ERR_INVALID_MESSAGE',
      `memory region gpa=0x${r.guestAddr.toString(16)} size=0x${r.size.toString(16)} is empty or wraps`);
  }
  return r;
}

// ---- the DAX window: shared memory regions and the backend channel's map requests ------------------------------

/** GET_SHMEM_CONFIG reply: u32 nregions, u32 padding, u64 memory_sizes[256]. */
export const SHMEM_CONFIG_MAX_REGIONS = 256;
export const SHMEM_CONFIG_SIZE = 8 + SHMEM_CONFIG_MAX_REGIONS * 8;

export function encodeShmemConfig(view: DataView, offset: number, sizes: readonly bigint[]): number {
  new Uint8Array(view.buffer, view.byteOffset + offset, SHMEM_CONFIG_SIZE).fill(0);
  view.setUint32(offset, sizes.length, true);
  sizes.forEach((s, i) => view.setBigUint64(offset + 8 + i * 8, s, true));
  return SHMEM_CONFIG_SIZE;
}

export function decodeShmemConfig(view: DataView, offset = 0): bigint[] {
  need(view, offset, SHMEM_CONFIG_SIZE, 'shmem config');
  const n = view.getUint32(offset, true);
  if (n > SHMEM_CONFIG_MAX_REGIONS) throw new VhostUserError('VU_ERR_INVALID_MESSAGE', `shmem config: ${n} regions`);
  const out: bigint[] = [];
  for (let i = 0; i < n; i++) out.push(view.getBigUint64(offset + 8 + i * 8, true));
  return out;
}

/**
 * VhostUserMMap, the SHMEM_MAP/SHMEM_UNMAP payload (40 bytes; the file rides as SCM_RIGHTS with MAP):
 * ```
 *  0      1         8           16           24     32      40
 *  +------+---------+-----------+------------+------+-------+
 *  |shmid | pad[7]  | fd_offset | shm_offset | len  | flags |
 *  +------+---------+-----------+------------+------+-------+
 * ```
 */
export const VHOST_USER_MMAP_SIZE = 40;
/** VhostUserMMap.flags: map writable (else read-only). */
export const VHOST_USER_FLAG_MAP_RW = 1n;

export interface ShmemMapping { shmid: number; fdOffset: bigint; shmOffset: bigint; len: bigint; flags: bigint }

export function encodeMMap(view: DataView, offset: number, m: ShmemMapping): number {
  new Uint8Array(view.buffer, view.byteOffset + offset, 8).fill(0);
  view.setUint8(offset, m.shmid);
  view.setBigUint64(offset + 8, m.fdOffset, true);
  view.setBigUint64(offset + 16, m.shmOffset, true);
  view.setBigUint64(offset + 24, m.len, true);
  view.setBigUint64(offset + 32, m.flags, true);
  return VHOST_USER_MMAP_SIZE;
}

/** Syntax as rust-vmm checks it: len > 0, no wrap in either space, no unknown flag. Else VU_ERR_INVALID_MESSAGE. */
export function decodeMMap(view: DataView, offset = 0): ShmemMapping {
  need(view, offset, VHOST_USER_MMAP_SIZE, 'mmap request');
  const m: ShmemMapping = {
    shmid: view.getUint8(offset), fdOffset: view.getBigUint64(offset + 8, true),
    shmOffset: view.getBigUint64(offset + 16, true), len: view.getBigUint64(offset + 24, true),
    flags: view.getBigUint64(offset + 32, true),
  };
  if (m.len === 0n || m.fdOffset > U64_MAX - m.len || m.shmOffset > U64_MAX - m.len || (m.flags & ~VHOST_USER_FLAG_MAP_RW) !== 0n) {
    throw new VhostUserError('VU_ERR_INVALID_MESSAGE', 'mmap request: empty, wrapping or unknown flags');
  }
  return m;
}

/**
 * The legacy dialect's VhostUserFSSlaveMsg (256 bytes): u64 fd_offset[8], c_offset[8], len[8], flags[8]; an entry
 * with len 0 is unused. Flags: bit 0 read, bit 1 write.
 */
export const LEGACY_FS_ENTRIES = 8;
export const LEGACY_FS_MSG_SIZE = LEGACY_FS_ENTRIES * 8 * 4;
export const LEGACY_FS_FLAG_MAP_R = 1n;
export const LEGACY_FS_FLAG_MAP_W = 2n;

export interface LegacyFsEntry { fdOffset: bigint; cOffset: bigint; len: bigint; flags: bigint }

export function encodeLegacyFsMsg(view: DataView, offset: number, entries: readonly LegacyFsEntry[]): number {
  if (entries.length > LEGACY_FS_ENTRIES) throw new RangeError('legacy fs message: at most 8 entries');
  new Uint8Array(view.buffer, view.byteOffset + offset, LEGACY_FS_MSG_SIZE).fill(0);
  entries.forEach((e, i) => {
    view.setBigUint64(offset + i * 8, e.fdOffset, true);
    view.setBigUint64(offset + 64 + i * 8, e.cOffset, true);
    view.setBigUint64(offset + 128 + i * 8, e.len, true);
    view.setBigUint64(offset + 192 + i * 8, e.flags, true);
  });
  return LEGACY_FS_MSG_SIZE;
}

export function decodeLegacyFsMsg(view: DataView, offset = 0): LegacyFsEntry[] {
  need(view, offset, LEGACY_FS_MSG_SIZE, 'legacy fs message');
  const out: LegacyFsEntry[] = [];
  for (let i = 0; i < LEGACY_FS_ENTRIES; i++) {
    const len = view.getBigUint64(offset + 128 + i * 8, true);
    if (len === 0n) continue;
    out.push({ fdOffset: view.getBigUint64(offset + i * 8, true), cOffset: view.getBigUint64(offset + 64 + i * 8, true),
      len, flags: view.getBigUint64(offset + 192 + i * 8, true) });
  }
  return out;
}

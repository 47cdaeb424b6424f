// The core's exported ABI (DESIGN.md "Core ABI"). host/core.ts wraps each export 1:1 in camelCase.
//
// Everything here is allocation-free: runtime `stub`, every buffer is a fixed `memory.data` area. Guest RAM (flat
// mode) or the window onto it (windowed mode) is mapped by the host above the static data (memory.grow + mmap), so
// nothing of ours may ever grow into it.
//
// Scratch areas (static, addresses via the *Ptr() exports):
//   ARGS        72 KiB          request args after fuse_in_header (WRITE: fuse_write_in only)
//   REPLY       1 MiB + 4 KiB   reply body, preceded by a private 16-byte fuse_out_header slot
//   DIRENT_BUF  64 KiB          getdents64 output
//   STATX       256 B           one struct statx
//   IOV         1024 x 16 B     struct iovec {u64 base, u64 len} (process addresses); IOV_MAX (1024) per call
//   LINEAR_IN   1 MiB + 4 KiB   one request as read(2) from /dev/fuse (linearPop)
//   LINEAR_OUT  1 MiB + 4 KiB   its reply, to write(2) back (linearReplyLen bytes)
//   DAX RANGES  256 KiB + 64 KiB  the DAX window's range records and (node, file index) hash (dax-ranges.ts)

import * as gm from './guest-memory';
import * as sq from './split-queue';
import * as rq from './request';
import * as fc from './fuse-codec';
import * as dr from './dax-ranges';
export { abortMessagePtr, abortMessageLength } from './abort'; // and coreAbort, the `--use abort=` target (asconfig.json)

const STATX: usize = memory.data(<i32>fc.STATX_SIZE, 16);

// ---- guest memory table -----------------------------------------------------------------------------------------

export function memReset(): void {
  gm.memReset();
}

/** The process address of linear memory's byte 0 (iovecs over linear ranges are based on it). */
export function memSetLinearBase(base: u64): void {
  gm.memSetLinearBase(base);
}

/** Flat mode: 0 or -EINVAL (overlap, overflow, empty, outside linear memory, table full, windowed). */
export function memAddRegion(gpa: u64, uva: u64, size: u64, linearOffset: u32): i32 {
  return gm.memAddRegion(gpa, uva, size, linearOffset);
}

/** After memReset: windowed mode with `slots` 4 MiB slots from linear offset `base`. 0 or -EINVAL. */
export function memSetWindow(base: u32, slots: u32): i32 {
  return gm.memSetWindow(base, slots);
}

/** Windowed mode: a region mapped whole at process address `host`, `delta` bytes into its first page. */
export function memAddRegionWindowed(gpa: u64, uva: u64, size: u64, host: u64, delta: u32): i32 {
  return gm.memAddRegionWindowed(gpa, uva, size, host, delta);
}

/** Window slots holding a chunk (tests, logs). */
export function memWindowSlotsMapped(): u32 {
  return gm.windowSlotsMapped();
}

/** Linear offset of [gpa, gpa+len) if wholly inside one region, else -1 (host helpers and tests). */
export function memTranslate(gpa: u64, len: u32): f64 {
  return <f64>gm.translateGpa(gpa, <u64>len);
}

// ---- queues -----------------------------------------------------------------------------------------------------

export function queueReset(q: u32): void {
  rq.forgetRequestOf(q);
  sq.queueReset(q);
}

export function queueSetNum(q: u32, num: u32): i32 {
  return sq.queueSetNum(q, num);
}

export function queueSetAddr(q: u32, descUva: u64, usedUva: u64, availUva: u64): i32 {
  return sq.queueSetAddr(q, descUva, usedUva, availUva);
}

export function queueSetBase(q: u32, lastAvailIdx: u32): void {
  sq.queueSetBase(q, lastAvailIdx);
}

export function queueGetBase(q: u32): u32 {
  return sq.queueGetBase(q);
}

export function queueSetFeatures(q: u32, eventIdx: bool, indirect: bool): void {
  sq.queueSetFeatures(q, eventIdx, indirect);
}

/** 1 request current, 0 empty, -1 POP_BAD_CHAIN, -2 POP_BAD_MESSAGE, -3 POP_RING_BROKEN. */
export function queuePop(q: u32): i32 {
  return rq.queuePop(q);
}

/** Parks the current request; its head (0: linear), or -EINVAL. See request.ts. */
export function requestPark(): i32 {
  return rq.requestPark();
}

/** A header-only reply to a parked request: 0, -EBUSY, -EINVAL, -ERANGE. See request.ts. */
export function queueReplyParked(q: u32, head: u32, unique: u64, error: i32): i32 {
  return rq.queueReplyParked(q, head, unique, error);
}

/** A parked request current again, for a full reply: 1, -EBUSY, -EINVAL. See request.ts. */
export function requestResume(q: u32, head: u32, unique: u64, opcode: u32): i32 {
  return rq.requestResume(q, head, unique, opcode);
}

/** A parked linear (/dev/fuse) request current again, answered into [outPtr, outPtr+outCap). See request.ts. */
export function linearResume(outPtr: u32, outCap: u32, unique: u64, opcode: u32): i32 {
  return rq.linearResume(outPtr, outCap, unique, opcode);
}

export function queueNeedsNotify(q: u32): bool {
  return sq.queueNeedsNotify(q);
}

/** Chains available but not popped yet; leaves the notification state alone (polling). */
export function queueAvailPending(q: u32): u32 {
  return sq.queueAvailPending(q);
}

/** The driver's lag behind its used_event: chains made available (used false) or used elements (true) since. */
export function queueDriverLag(q: u32, used: bool): u32 {
  return sq.queueDriverLag(q, used);
}

/** EVENT_IDX: one kick once n more chains are available; returns the chains pending. See split-queue.ts. */
export function queueKickAfter(q: u32, n: u32): u32 {
  return sq.queueKickAfter(q, n);
}

/** Kicks off (while polling) or on again; on returns the chains pending after re-enabling. */
export function queueSetKicks(q: u32, on: bool): u32 {
  return sq.queueSetKicks(q, on);
}

// ---- linear requests (the /dev/fuse transport) -------------------------------------------------------------------

/** 1 request current, -1 POP_BAD_CHAIN (bad ranges; no reply), -2 POP_BAD_MESSAGE (reply per linearReplyLen). */
export function linearPop(inPtr: u32, inLen: u32, outPtr: u32, outCap: u32): i32 {
  return rq.linearPop(inPtr, inLen, outPtr, outCap);
}
/** Bytes of the last linear request's reply at its outPtr; 0 = nothing to write (FORGET, INTERRUPT). */
export function linearReplyLen(): u32 {
  return rq.linearReplyLen;
}
export function linearInPtr(): usize {
  return rq.LINEAR_IN;
}
export function linearOutPtr(): usize {
  return rq.LINEAR_OUT;
}
export function linearBufSize(): u32 {
  return rq.LINEAR_BUF_SIZE;
}

/** The current request as /dev/fuse bytes at dst (header, args, WRITE payload): its length, or 0. See request.ts. */
export function requestCopy(dst: usize, cap: u32): u32 {
  return rq.requestCopy(dst, cap);
}

// ---- the current request ----------------------------------------------------------------------------------------

export function reqQueue(): u32 {
  return rq.reqQueue;
}
export function reqHead(): u32 {
  return rq.reqHead;
}
export function reqOpcode(): u32 {
  return rq.reqOpcode;
}
export function reqUnique(): u64 {
  return rq.reqUnique;
}
export function reqNodeId(): f64 {
  return <f64>rq.reqNodeId;
}
export function reqUid(): u32 {
  return rq.reqUid;
}
export function reqGid(): u32 {
  return rq.reqGid;
}
export function reqPid(): u32 {
  return rq.reqPid;
}
export function reqLen(): u32 {
  return rq.reqLen;
}
/** fuse_in_header.len - 40 (for WRITE this includes the payload; only fuse_write_in is in ARGS). */
export function reqArgsLen(): u32 {
  return rq.reqArgsLen;
}
export function reqReadable(): u32 {
  return rq.reqReadable;
}
export function reqWritable(): u32 {
  return rq.reqWritable;
}

export function argsPtr(): usize {
  return rq.ARGS;
}
/** The popped request's fuse_in_header (valid from a pop that returned a request; a resume does not write it). */
export function inHeaderPtr(): usize {
  return rq.IN_HEADER;
}
export function replyPtr(): usize {
  return rq.REPLY;
}
export function iovPtr(): usize {
  return rq.IOV;
}
export function statxPtr(): usize {
  return STATX;
}
export function direntBufPtr(): usize {
  return fc.DIRENT_BUF;
}

export function payloadReadIov(skip: u32, maxBytes: u32): i32 {
  return rq.payloadReadIov(skip, maxBytes);
}

export function payloadWriteIov(skip: u32, maxBytes: u32): i32 {
  return rq.payloadWriteIov(skip, maxBytes);
}

/** READ from bytes: len bytes at src into the writable segments after skip. Bytes copied or 0. */
export function payloadScatter(src: usize, skip: u32, len: u32): u32 {
  return rq.payloadScatter(src, skip, len);
}

/** WRITE to bytes: len payload bytes from skip after the args start to dst. Bytes copied or 0. */
export function payloadGather(dst: usize, skip: u32, len: u32): u32 {
  return rq.payloadGather(dst, skip, len);
}

export function replySend(error: i32, bodyLen: u32, payloadLen: u32): i32 {
  return rq.replySend(error, bodyLen, payloadLen);
}

export function replyNone(): void {
  rq.replyNone();
}

// ---- codec ------------------------------------------------------------------------------------------------------

export function encodeAttrOut(dst: usize, attrTimeout: f64, statx: usize): u32 {
  return fc.encodeAttrOut(dst, attrTimeout, statx);
}

export function encodeEntryOut(
  dst: usize, nodeid: f64, generation: f64, entryTimeout: f64, attrTimeout: f64, statx: usize,
): u32 {
  return fc.encodeEntryOut(dst, nodeid, generation, entryTimeout, attrTimeout, statx);
}

export function direntsBegin(len: u32): void {
  fc.direntsBegin(len);
}
export function direntNext(): i32 {
  return fc.direntNext();
}
export function direntIno(): f64 {
  return fc.direntIno();
}
export function direntType(): u32 {
  return fc.direntType();
}
export function direntNamePtr(): usize {
  return fc.direntNamePtr();
}
export function direntNameLen(): u32 {
  return fc.direntNameLen();
}
export function direntSize(): u32 {
  return fc.direntSize();
}
export function direntPlusSize(): u32 {
  return fc.direntPlusSize();
}

/** The current record as a fuse_dirent at replyPtr()+dstOffset if dstOffset+size <= cap; bytes or 0. */
export function direntEmit(dstOffset: u32, cap: u32): u32 {
  return fc.direntEmitAt(rq.REPLY, rq.REPLY_MAX, dstOffset, cap);
}

export function direntPlusEmit(
  dstOffset: u32, cap: u32, nodeid: f64, generation: f64, entryTimeout: f64, attrTimeout: f64, statx: usize,
): u32 {
  return fc.direntPlusEmitAt(rq.REPLY, rq.REPLY_MAX, dstOffset, cap, nodeid, generation, entryTimeout,
    attrTimeout, statx);
}

// ---- the DAX window's range allocator (dax-ranges.ts; used by the frontend in the guest driver's role) ------------
// Node ids and file indices cross as f64 (< 2^53); anything else is -EINVAL / -1 instead of a trapping conversion.

// @ts-ignore: decorator
@inline function okKey(x: f64): bool {
  return x >= 0 && x <= 9007199254740991.0;
}

export function daxInit(nRanges: u32): i32 {
  return dr.daxInit(nRanges);
}
export function daxRangeCount(): u32 {
  return dr.daxRangeCount();
}
export function daxFreeCount(): u32 {
  return dr.daxFreeCount();
}
export function daxBusyCount(): u32 {
  return dr.daxBusyCount();
}
export function daxLookup(node: f64, fileIdx: f64): i32 {
  if (!okKey(node) || !okKey(fileIdx)) return -1;
  return dr.daxLookup(<u64>node, <u64>fileIdx);
}
export function daxMap(node: f64, fileIdx: f64, writable: bool): i32 {
  if (!okKey(node) || !okKey(fileIdx)) return -22;
  return dr.daxMap(<u64>node, <u64>fileIdx, writable);
}
export function daxUnmap(range: u32): i32 {
  return dr.daxUnmap(range);
}
export function daxReclaimVictim(): i32 {
  return dr.daxReclaimVictim();
}
export function daxNeedsReclaim(): bool {
  return dr.daxNeedsReclaim();
}
export function daxSetWritable(range: u32): i32 {
  return dr.daxSetWritable(range);
}
export function daxIsWritable(range: u32): i32 {
  return dr.daxIsWritable(range);
}
export function daxNode(range: u32): f64 {
  return <f64>dr.daxNode(range);
}
export function daxFileIdx(range: u32): f64 {
  return <f64>dr.daxFileIdx(range);
}
export function daxPin(range: u32): i32 {
  return dr.daxPin(range);
}
export function daxUnpin(range: u32): i32 {
  return dr.daxUnpin(range);
}
export function daxNextOfNode(node: f64, after: i32): i32 {
  if (!okKey(node) || after < -1) return -1;
  return dr.daxNextOfNode(<u64>node, after);
}

// The current FUSE request: the chain split-queue.ts popped, read as fuse_in_header + args from its readable
// segments, answered as fuse_out_header + body (+ payload) into its writable segments.
//
//   readable segments                                  writable segments
//   +----------------+-----------------------+         +-----------------+--------------+-------------+
//   | fuse_in_header | args (struct, names…) |         | fuse_out_header | reply body   | payload     |
//   +----------------+-----------------------+         +-----------------+--------------+-------------+
//     40 bytes         in.len - 40 (copied to ARGS;      16 bytes          from REPLY     placed by preadv
//                      WRITE: only fuse_write_in)                                          through payloadReadIov
// Either side may be cut into segments at any byte (the guest's scatterlists, region borders): all access goes
// through gather/scatter over SEGS.
//
// A linear request (linearPop, the /dev/fuse transport) is the same thing with one segment each way: the bytes one
// read(2) of /dev/fuse returned, and an out buffer the reply is written to; the host then write(2)s
// [outPtr, outPtr + linearReplyLen) back. Replies go there instead of into a used ring; nothing else differs.

import {
  SEGS, segReadable, segWritable, bytesReadable, bytesWritable, chainQueue, chainHead, popChain, pushUsed,
  linearChain, rewalkChain, POP_REQUEST, POP_BAD_CHAIN, POP_BAD_MESSAGE,
} from './split-queue';
import { SEG_SIZE, segmentHost, segmentCopy } from './guest-memory';
import {
  FUSE_IN_HEADER_SIZE, FUSE_OUT_HEADER_SIZE, IN_LEN, IN_OPCODE, IN_UNIQUE, IN_NODEID, IN_UID, IN_GID, IN_PID,
  OUT_LEN, OUT_ERROR, OUT_UNIQUE, FUSE_WRITE, FUSE_WRITE_IN_SIZE, minArgs,
} from './fuse-codec';

export const ARGS_MAX: u32 = 72 * 1024;
export const REPLY_MAX: u32 = 1024 * 1024 + 4096;
/** UIO_MAXIOV: preadv/pwritev accept no more iovecs than this. */
export const IOV_MAX: u32 = 1024;
/** struct iovec {u64 iov_base, u64 iov_len} (x86-64, arm64): handed to preadv/pwritev as is. */
export const IOVEC_SIZE: u32 = 16;

const EINVAL: i32 = 22;
const EIO: i32 = 5;
const ERANGE: i32 = 34;
const EBUSY: i32 = 16;
const EFAULT: i32 = 14;

export const ARGS: usize = memory.data(<i32>ARGS_MAX, 16);
// fuse_out_header scratch immediately followed by the reply body, so header + body scatter in one pass.
const REPLY_AREA: usize = memory.data(<i32>(FUSE_OUT_HEADER_SIZE + REPLY_MAX), 16);
export const REPLY: usize = REPLY_AREA + FUSE_OUT_HEADER_SIZE;
export const IOV: usize = memory.data(<i32>(IOV_MAX * IOVEC_SIZE), 16);
/** The current request's fuse_in_header as popped (the host reads its fields here: no call per field). */
export const IN_HEADER: usize = memory.data(<i32>FUSE_IN_HEADER_SIZE, 16);

/**
 * The /dev/fuse transport's buffers. The kernel refuses a read(2) smaller than
 * max(FUSE_MIN_READ_BUFFER = 8192, sizeof(fuse_in_header) + sizeof(fuse_write_in) + max_write), and our max_write
 * is at most 1 MiB (FuseServer: 256 pages of 4 KiB); a READ reply is 16 + at most max_pages pages (1 MiB).
 */
export const LINEAR_BUF_SIZE: u32 = 1024 * 1024 + 4096;
export const LINEAR_IN: usize = memory.data(<i32>LINEAR_BUF_SIZE, 16);
export const LINEAR_OUT: usize = memory.data(<i32>LINEAR_BUF_SIZE, 16);
/** reqQueue() of a linear request: no virtqueue (forgetRequestOf never matches it). */
export const LINEAR_QUEUE: u32 = u32.MAX_VALUE;

let active = false;
/** The current request came from linearPop: finish() records the reply length instead of pushing a used element. */
let linear = false;
/** Bytes of the last linear reply at its outPtr (0 = no reply: FORGET, INTERRUPT, a message with no room). */
export let linearReplyLen: u32 = 0;
export let reqQueue: u32 = 0;
export let reqHead: u32 = 0;
export let reqOpcode: u32 = 0;
export let reqUnique: u64 = 0;
export let reqNodeId: u64 = 0;
export let reqUid: u32 = 0;
export let reqGid: u32 = 0;
export let reqPid: u32 = 0;
export let reqLen: u32 = 0;
export let reqArgsLen: u32 = 0;
export let reqReadable: u32 = 0;
export let reqWritable: u32 = 0;

/**
 * Copies len bytes between linear memory at `lin` and bytes [skip, skip+len) of segments [first, end) of the
 * current chain (toSegment: lin -> segments). The caller checked the room. false: the window had no slot for a
 * piece (windowed mode, every slot pinned).
 */
function copySegments(first: u32, end: u32, skip: u32, lin: usize, len: u32, toSegment: bool): bool {
  let left = len;
  for (let i = first; i < end && left != 0; i++) {
    const s = SEGS + <usize>(i * SEG_SIZE);
    const segLen = load<u32>(s, 8);
    if (skip >= segLen) {
      skip -= segLen;
      continue;
    }
    const n = segLen - skip < left ? segLen - skip : left;
    if (!segmentCopy(s, skip, lin, n, toSegment)) return false;
    lin += n;
    left -= n;
    skip = 0;
  }
  // Internal invariant (callers check against bytesReadable/bytesWritable): kept in release, it costs one compare.
  if (left != 0) abort(toSegment ? "scatter past the writable segments" : "gather past the readable segments");
  return true;
}

/** Readable bytes [off, off+len) of the current chain to dst. */
@inline function gather(dst: usize, off: u32, len: u32): bool {
  return copySegments(0, segReadable, off, dst, len, false);
}

/** src to writable bytes [skip, skip+len) of the current chain. */
@inline function scatter(src: usize, skip: u32, len: u32): bool {
  return copySegments(segReadable, segReadable + segWritable, skip, src, len, true);
}

function finish(len: u32): void {
  if (linear) linearReplyLen = len;
  else pushUsed(reqQueue, reqHead, len);
  active = false;
}

/** Replies with an error header if one fits (unique from the header, if it was readable), else used len 0. */
function rejectMessage(unique: u64): i32 {
  sendErrorHeader(-EINVAL, unique, bytesWritable);
  return POP_BAD_MESSAGE;
}

/** A header-only reply {16, error, unique} if 16 bytes fit (and the window let it through), else used len 0. */
function sendErrorHeader(error: i32, unique: u64, writable: u32): void {
  if (writable >= FUSE_OUT_HEADER_SIZE) {
    store<u32>(REPLY_AREA, FUSE_OUT_HEADER_SIZE, OUT_LEN);
    store<i32>(REPLY_AREA, error, OUT_ERROR);
    store<u64>(REPLY_AREA, unique, OUT_UNIQUE);
    if (scatter(REPLY_AREA, 0, FUSE_OUT_HEADER_SIZE)) {
      finish(FUSE_OUT_HEADER_SIZE);
      return;
    }
  }
  finish(0);
}

/** queuePop: the next request of queue q, validated, its args in ARGS. */
export function queuePop(q: u32): i32 {
  if (active) {
    // The host popped again without completing the previous request: return that one empty so the guest
    // gets its buffer back instead of leaking a descriptor chain.
    finish(0);
  }
  const r = popChain(q);
  if (r != POP_REQUEST) return r;
  linear = false;
  return beginRequest(chainQueue, chainHead);
}

/**
 * linearPop: the request at [inPtr, inPtr+inLen) (one read(2) of /dev/fuse), answered into [outPtr,
 * outPtr+outCap). Same results and checks as queuePop: 1 (current), POP_BAD_MESSAGE (an -EINVAL reply is at outPtr
 * if 16 bytes fit; see linearReplyLen), POP_BAD_CHAIN (a range outside linear memory or the two overlapping).
 */
export function linearPop(inPtr: u32, inLen: u32, outPtr: u32, outCap: u32): i32 {
  if (active) finish(0);
  linearReplyLen = 0;
  if (!linearChain(inPtr, inLen, outPtr, outCap)) return POP_BAD_CHAIN;
  linear = true;
  return beginRequest(LINEAR_QUEUE, 0);
}

/** Validates the chain now in SEGS as a FUSE request and makes it current. */
function beginRequest(queue: u32, head: u32): i32 {
  active = true;
  reqQueue = queue;
  reqHead = head;
  reqReadable = bytesReadable;
  reqWritable = bytesWritable;
  reqOpcode = 0;
  reqUnique = 0;
  reqNodeId = 0;
  reqLen = 0;
  reqArgsLen = 0;
  if (bytesReadable < FUSE_IN_HEADER_SIZE) {
    finish(0);
    return POP_BAD_MESSAGE;
  }
  if (!gather(IN_HEADER, 0, FUSE_IN_HEADER_SIZE)) {
    finish(0);
    return POP_BAD_MESSAGE;
  }
  const len = load<u32>(IN_HEADER, IN_LEN);
  const opcode = load<u32>(IN_HEADER, IN_OPCODE);
  const unique = load<u64>(IN_HEADER, IN_UNIQUE);
  if (len < FUSE_IN_HEADER_SIZE || len > bytesReadable) return rejectMessage(unique);
  const argsLen = len - FUSE_IN_HEADER_SIZE;
  if (argsLen < minArgs(opcode)) return rejectMessage(unique);
  let copy = argsLen;
  if (opcode == FUSE_WRITE) copy = FUSE_WRITE_IN_SIZE;
  else if (argsLen > ARGS_MAX) return rejectMessage(unique);
  if (!gather(ARGS, FUSE_IN_HEADER_SIZE, copy)) return rejectMessage(unique);
  reqOpcode = opcode;
  reqUnique = unique;
  reqNodeId = load<u64>(IN_HEADER, IN_NODEID);
  reqUid = load<u32>(IN_HEADER, IN_UID);
  reqGid = load<u32>(IN_HEADER, IN_GID);
  reqPid = load<u32>(IN_HEADER, IN_PID);
  reqLen = len;
  reqArgsLen = argsLen;
  return POP_REQUEST;
}

/**
 * Writes up to maxBytes of iovecs over segments [first, end) after skipping `skip` bytes: process addresses
 * (guest RAM as the host mapped it, or linear memory), so the binding passes IOV to preadv/pwritev unchanged.
 * Returns the count.
 */
function buildIov(first: u32, end: u32, skip: u32, maxBytes: u32): i32 {
  let n: u32 = 0;
  let left = maxBytes;
  for (let i = first; i < end && left != 0 && n < IOV_MAX; i++) {
    const s = SEGS + <usize>(i * SEG_SIZE);
    const segLen = load<u32>(s, 8);
    if (skip >= segLen) {
      skip -= segLen;
      continue;
    }
    const len = segLen - skip < left ? segLen - skip : left;
    const v = IOV + <usize>(n * IOVEC_SIZE);
    store<u64>(v, segmentHost(s, skip));
    store<u64>(v, <u64>len, 8);
    n++;
    left -= len;
    skip = 0;
  }
  return <i32>n;
}

/** iovecs over the writable segments after `skip` bytes (16 for the out header), at most maxBytes. */
export function payloadReadIov(skip: u32, maxBytes: u32): i32 {
  if (!active) return 0;
  return buildIov(segReadable, segReadable + segWritable, skip, maxBytes);
}

/**
 * iovecs over the readable segments, `skip` counted from the start of the args (40 = after fuse_write_in),
 * at most maxBytes and never past fuse_in_header.len.
 */
export function payloadWriteIov(skip: u32, maxBytes: u32): i32 {
  if (!active || skip >= reqArgsLen) return 0;
  const room = reqArgsLen - skip;
  return buildIov(0, segReadable, FUSE_IN_HEADER_SIZE + skip, maxBytes < room ? maxBytes : room);
}

/**
 * fuse_out_header {16 + bodyLen + payloadLen, error, unique} and REPLY[0, bodyLen) into the writable segments,
 * then the used element. 0; -ERANGE if it does not fit (an -EIO header is sent instead when 16 bytes fit);
 * -EINVAL if no request is current.
 */
export function replySend(error: i32, bodyLen: u32, payloadLen: u32): i32 {
  if (!active) return -EINVAL;
  const total = <u64>FUSE_OUT_HEADER_SIZE + <u64>bodyLen + <u64>payloadLen;
  if (bodyLen > REPLY_MAX || total > <u64>reqWritable) {
    sendErrorHeader(-EIO, reqUnique, reqWritable);
    return -ERANGE;
  }
  store<u32>(REPLY_AREA, <u32>total, OUT_LEN);
  store<i32>(REPLY_AREA, error, OUT_ERROR);
  store<u64>(REPLY_AREA, reqUnique, OUT_UNIQUE);
  if (!scatter(REPLY_AREA, 0, FUSE_OUT_HEADER_SIZE + bodyLen)) {
    // Windowed, every slot pinned: the guest gets its buffers back empty rather than half a reply.
    finish(0);
    return -EFAULT;
  }
  finish(<u32>total);
  return 0;
}

/**
 * Copies len bytes from linear memory at src into the writable segments after `skip` bytes (16: READ data after
 * the out header): a READ answered from bytes (a filesystem without an fd). Bytes copied: 0 when no request is
 * current, the room is short, or the window had no slot.
 */
export function payloadScatter(src: usize, skip: u32, len: u32): u32 {
  if (!active || <u64>skip + <u64>len > <u64>reqWritable) return 0;
  return scatter(src, skip, len) ? len : 0;
}

/**
 * Copies len bytes of the readable segments from `skip` bytes after the start of the args (40: WRITE data after
 * fuse_write_in), never past fuse_in_header.len, to linear memory at dst. Bytes copied (0 as above).
 */
export function payloadGather(dst: usize, skip: u32, len: u32): u32 {
  if (!active || <u64>skip + <u64>len > <u64>reqArgsLen) return 0;
  return gather(dst, FUSE_IN_HEADER_SIZE + skip, len) ? len : 0;
}

/**
 * The current request as one read(2) of /dev/fuse would give it, at dst: the fuse_in_header and args as validated
 * at pop (IN_HEADER, ARGS), and for WRITE its payload gathered from the chain. What a queue thread hands the main
 * thread (host/virtio/queue-thread.ts), which serves it with linearPop. Bytes written (fuse_in_header.len); 0 when
 * no request is current, cap is short, or the window had no slot for the payload.
 */
export function requestCopy(dst: usize, cap: u32): u32 {
  if (!active || reqLen > cap) return 0;
  memory.copy(dst, IN_HEADER, FUSE_IN_HEADER_SIZE);
  const copied = reqOpcode == FUSE_WRITE ? FUSE_WRITE_IN_SIZE : reqArgsLen;
  memory.copy(dst + FUSE_IN_HEADER_SIZE, ARGS, copied);
  const rest = reqArgsLen - copied;
  if (rest != 0 && !gather(dst + FUSE_IN_HEADER_SIZE + copied, FUSE_IN_HEADER_SIZE + copied, rest)) return 0;
  return reqLen;
}

/** No reply (FORGET, BATCH_FORGET, INTERRUPT): the chain goes back with used len 0. */
export function replyNone(): void {
  if (!active) return;
  finish(0);
}

/**
 * Parks the current request: it stays unanswered (its chain stays the device's) and stops being current, so the
 * host can serve others and answer it later with queueReplyParked (a SETLKW waiting for a lock). Returns its head
 * (0 for a linear request: the host writes that reply to /dev/fuse itself), or -EINVAL when none is current.
 */
export function requestPark(): i32 {
  if (!active) return -EINVAL;
  active = false;
  return linear ? 0 : <i32>reqHead;
}

/**
 * Answers a parked request of queue q with a header-only reply {16, error, unique}: its chain is walked again
 * (rewalkChain), so a guest that rewrote the descriptors meanwhile gets the chain back unused, never a write
 * outside its memory. 0 sent; -EBUSY while another request is current; -EINVAL when the queue or head is gone
 * or the chain is malformed now; -ERANGE when 16 bytes do not fit (returned with len 0).
 */
export function queueReplyParked(q: u32, head: u32, unique: u64, error: i32): i32 {
  if (active) return -EBUSY;
  if (rewalkChain(q, head) != 1) return -EINVAL;
  linear = false;
  active = true;
  reqQueue = q;
  reqHead = head;
  reqUnique = unique;
  reqReadable = bytesReadable;
  reqWritable = bytesWritable;
  return replySend(error, 0, 0);
}

/**
 * Makes a parked request of queue q current again, for a full reply (body + payload) by the usual payloadReadIov
 * and replySend/replyNone: its chain is walked again from `head` against today's memory table (rewalkChain), so a
 * guest that rewrote the descriptors meanwhile gets the chain back unused (-EINVAL), never a write outside its
 * memory. The args are not restored (ARGS belongs to later requests now): reqArgsLen is 0, payloadWriteIov gives
 * nothing. 1 current; -EBUSY while another request is current; -EINVAL when the queue/head is gone or the chain
 * is malformed now.
 */
export function requestResume(q: u32, head: u32, unique: u64, opcode: u32): i32 {
  if (active) return -EBUSY;
  if (rewalkChain(q, head) != 1) return -EINVAL;
  linear = false;
  resumeAs(q, head, unique, opcode);
  return 1;
}

/**
 * The same for a parked linear request (/dev/fuse): it becomes current with one writable segment [outPtr,
 * outPtr+outCap) and no readable one; after replySend the host writes linearReplyLen bytes from outPtr.
 * 1; -EBUSY while another request is current; -EINVAL for a range outside linear memory.
 */
export function linearResume(outPtr: u32, outCap: u32, unique: u64, opcode: u32): i32 {
  if (active) return -EBUSY;
  linearReplyLen = 0;
  if (!linearChain(0, 0, outPtr, outCap)) return -EINVAL;
  linear = true;
  resumeAs(LINEAR_QUEUE, 0, unique, opcode);
  return 1;
}

function resumeAs(queue: u32, head: u32, unique: u64, opcode: u32): void {
  active = true;
  reqQueue = queue;
  reqHead = head;
  reqUnique = unique;
  reqOpcode = opcode;
  reqArgsLen = 0;
  reqLen = FUSE_IN_HEADER_SIZE;
  reqReadable = bytesReadable;
  reqWritable = bytesWritable;
}

/**
 * Queue q is being reset: a request popped from it belongs to a ring that no longer exists, so it is forgotten
 * (no used element). Otherwise the next pop would return its head into the queue's next ring, which never made
 * it available (fuzz finding ring-3326651569).
 */
export function forgetRequestOf(q: u32): void {
  if (active && !linear && reqQueue == q) active = false;
}

export function requestActive(): bool {
  return active;
}

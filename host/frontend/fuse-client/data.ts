/**
 * FuseClient's data ops: OPEN, READ (a copy, or into the caller's buffer, or left in guest memory), WRITE, FLUSH,
 * RELEASE, FSYNC; and the request shapes OPENDIR/READDIR/RELEASEDIR share with them (fuse_open_in, fuse_read_in,
 * fuse_release_in).
 */
import * as P from '../../fuse/protocol.js';
import { voidReply, type FuseTransport, type ReplyDecoder } from './transport.js';

export interface OpenReply { fh: number; openFlags: number }

const openReply: ReplyDecoder = (t, _g, b): OpenReply =>
  ({ fh: t.getU64(b + P.OPEN_OUT.fh), openFlags: t.dv.getUint32(b + P.OPEN_OUT.openFlags, true) });

const writeReply: ReplyDecoder = (t, _g, b) => t.dv.getUint32(b + P.WRITE_OUT.size, true);

/** READ: a copy of the bytes. */
const readReply: ReplyDecoder = (t, _g, b, bodyLen) => t.u8.slice(b, b + bodyLen);

/** READ into the slot's destination (none: only the count). */
const readIntoReply: ReplyDecoder = (t, g, b, bodyLen) => {
  const dst = t.dsts[g];
  if (dst === null || dst === undefined) return bodyLen;
  const n = Math.min(bodyLen, dst.length);
  dst.set(t.u8.subarray(b, b + n));
  return n;
};

/** OPEN, OPENDIR: fuse_open_in. */
export function openLike(t: FuseTransport, op: number, nodeid: number, flags: number, q?: number): Promise<OpenReply> {
  const g = t.slot(q);
  if (g < 0) return t.retry(() => openLike(t, op, nodeid, flags, q));
  const a = t.argsAt(g);
  t.dv.setUint32(a + P.OPEN_IN.flags, flags, true);
  t.dv.setUint32(a + P.OPEN_IN.openFlags, 0, true);
  return t.send(g, op, nodeid, P.OPEN_IN.SIZE, openReply);
}

export function open(t: FuseTransport, nodeid: number, flags: number, q?: number): Promise<OpenReply> {
  return openLike(t, P.FUSE_OPEN, nodeid, flags, q);
}

/** READ, READDIR, READDIRPLUS: fuse_read_in on a slot already taken; at most maxPayload bytes. */
export function sendRead(t: FuseTransport, g: number, op: number, nodeid: number, fh: number, offset: number | bigint,
  size: number, reply: ReplyDecoder): Promise<any> {
  if (size > t.maxPayload) size = t.maxPayload;
  const a = t.argsAt(g);
  const v = t.dv;
  t.putU64(a + P.READ_IN.fh, fh);
  if (typeof offset === 'bigint') v.setBigUint64(a + P.READ_IN.offset, offset, true);
  else t.putU64(a + P.READ_IN.offset, offset);
  v.setUint32(a + P.READ_IN.size, size, true);
  v.setUint32(a + P.READ_IN.readFlags, 0, true);
  t.putU64(a + P.READ_IN.lockOwner, 0);
  v.setUint32(a + P.READ_IN.flags, 0, true);
  v.setUint32(a + P.READ_IN.padding, 0, true);
  return t.send(g, op, nodeid, P.READ_IN.SIZE, reply, -1, P.OUT_HEADER.SIZE + size);
}

export function read(t: FuseTransport, nodeid: number, fh: number, offset: number, size: number,
  q?: number): Promise<Uint8Array> {
  const g = t.slot(q);
  if (g < 0) return t.retry(() => read(t, nodeid, fh, offset, size, q));
  return sendRead(t, g, P.FUSE_READ, nodeid, fh, offset, size, readReply);
}

export function readInto(t: FuseTransport, nodeid: number, fh: number, offset: number, size: number,
  dst: Uint8Array | null, q?: number): Promise<number> {
  const g = t.slot(q);
  if (g < 0) return t.retry(() => readInto(t, nodeid, fh, offset, size, dst, q));
  t.dsts[g] = dst;
  return sendRead(t, g, P.FUSE_READ, nodeid, fh, offset, size, readIntoReply);
}

export function write(t: FuseTransport, nodeid: number, fh: number, offset: number, data: Uint8Array | number,
  q?: number): Promise<number> {
  const g = t.slot(q);
  if (g < 0) return t.retry(() => write(t, nodeid, fh, offset, data, q));
  const size = typeof data === 'number' ? data : data.length;
  if (size > t.maxPayload) {
    t.release1(g);
    return Promise.reject(new RangeError(`write of ${size} bytes over maxPayload ${t.maxPayload}`));
  }
  const a = t.argsAt(g);
  const v = t.dv;
  t.putU64(a + P.WRITE_IN.fh, fh);
  t.putU64(a + P.WRITE_IN.offset, offset);
  v.setUint32(a + P.WRITE_IN.size, size, true);
  v.setUint32(a + P.WRITE_IN.writeFlags, 0, true);
  t.putU64(a + P.WRITE_IN.lockOwner, 0);
  v.setUint32(a + P.WRITE_IN.flags, 0, true);
  v.setUint32(a + P.WRITE_IN.padding, 0, true);
  if (typeof data !== 'number') t.u8.set(data, t.dataAt(g));
  return t.send(g, P.FUSE_WRITE, nodeid, P.WRITE_IN.SIZE + size, writeReply, size);
}

export function flush(t: FuseTransport, nodeid: number, fh: number, q?: number): Promise<void> {
  const g = t.slot(q);
  if (g < 0) return t.retry(() => flush(t, nodeid, fh, q));
  const a = t.argsAt(g);
  t.u8.fill(0, a, a + P.FLUSH_IN.SIZE);
  t.putU64(a + P.FLUSH_IN.fh, fh);
  return t.send(g, P.FUSE_FLUSH, nodeid, P.FLUSH_IN.SIZE, voidReply);
}

/** RELEASE, RELEASEDIR: fuse_release_in. */
export function releaseLike(t: FuseTransport, op: number, nodeid: number, fh: number, flags: number,
  q?: number): Promise<void> {
  const g = t.slot(q);
  if (g < 0) return t.retry(() => releaseLike(t, op, nodeid, fh, flags, q));
  const a = t.argsAt(g);
  t.u8.fill(0, a, a + P.RELEASE_IN.SIZE);
  t.putU64(a + P.RELEASE_IN.fh, fh);
  t.dv.setUint32(a + P.RELEASE_IN.flags, flags, true);
  return t.send(g, op, nodeid, P.RELEASE_IN.SIZE, voidReply);
}

export function release(t: FuseTransport, nodeid: number, fh: number, flags: number, q?: number): Promise<void> {
  return releaseLike(t, P.FUSE_RELEASE, nodeid, fh, flags, q);
}

export function fsync(t: FuseTransport, nodeid: number, fh: number, datasync: boolean, q?: number): Promise<void> {
  const g = t.slot(q);
  if (g < 0) return t.retry(() => fsync(t, nodeid, fh, datasync, q));
  const a = t.argsAt(g);
  t.u8.fill(0, a, a + P.FSYNC_IN.SIZE);
  t.putU64(a + P.FSYNC_IN.fh, fh);
  t.dv.setUint32(a + P.FSYNC_IN.fsyncFlags, datasync ? P.FUSE_FSYNC_FDATASYNC : 0, true);
  return t.send(g, P.FUSE_FSYNC, nodeid, P.FSYNC_IN.SIZE, voidReply);
}

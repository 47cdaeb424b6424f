/**
 * FuseClient's attribute ops: GETATTR, SETATTR, STATFS, and the fuse_attr decoder the entry replies share.
 */
import * as P from '../../fuse/protocol.js';
import type { FuseTransport, ReplyDecoder } from './transport.js';

/** struct fuse_attr (inside fuse_attr_out at +16 and fuse_entry_out at +40); times in seconds + nanoseconds. */
export interface FuseAttr {
  ino: number; size: number; blocks: number;
  atime: number; mtime: number; ctime: number; atimensec: number; mtimensec: number; ctimensec: number;
  mode: number; nlink: number; uid: number; gid: number; rdev: number; blksize: number;
  /** fuse_attr.flags: FUSE_ATTR_SUBMOUNT, FUSE_ATTR_DAX. */
  flags: number;
}
export interface AttrReply { attrValid: number; attr: FuseAttr }
export interface StatfsReply {
  blocks: number; bfree: number; bavail: number; files: number; ffree: number; bsize: number; namelen: number;
  frsize: number;
}
export interface SetattrIn {
  mode?: number; uid?: number; gid?: number; size?: number; fh?: number;
  /** seconds (fractions become nanoseconds) */
  atime?: number; mtime?: number;
}

/**
 * fuse_attr offsets. host/fuse/protocol.ts lists fuse_attr_out / fuse_entry_out only by size (the core encodes
 * them); the host side never decodes them, so the field offsets live here.
 */
const ATTR = {
  ino: 0, size: 8, blocks: 16, atime: 24, mtime: 32, ctime: 40, atimensec: 48, mtimensec: 52, ctimensec: 56,
  mode: 60, nlink: 64, uid: 68, gid: 72, rdev: 76, blksize: 80, flags: 84, SIZE: 88,
} as const;
const ATTR_OUT = { attrValid: 0, attrValidNsec: 8, attr: 16 } as const;

/** The struct fuse_attr at guest offset `a`. */
export function decodeAttr(t: FuseTransport, a: number): FuseAttr {
  const v = t.dv;
  return {
    ino: t.getU64(a + ATTR.ino), size: t.getU64(a + ATTR.size), blocks: t.getU64(a + ATTR.blocks),
    atime: t.getU64(a + ATTR.atime), mtime: t.getU64(a + ATTR.mtime), ctime: t.getU64(a + ATTR.ctime),
    atimensec: v.getUint32(a + ATTR.atimensec, true), mtimensec: v.getUint32(a + ATTR.mtimensec, true),
    ctimensec: v.getUint32(a + ATTR.ctimensec, true), mode: v.getUint32(a + ATTR.mode, true),
    nlink: v.getUint32(a + ATTR.nlink, true), uid: v.getUint32(a + ATTR.uid, true), gid: v.getUint32(a + ATTR.gid, true),
    rdev: v.getUint32(a + ATTR.rdev, true), blksize: v.getUint32(a + ATTR.blksize, true),
    flags: v.getUint32(a + ATTR.flags, true),
  };
}

const attrReply: ReplyDecoder = (t, _g, b): AttrReply =>
  ({ attrValid: t.getU64(b + ATTR_OUT.attrValid), attr: decodeAttr(t, b + ATTR_OUT.attr) });

const statfsReply: ReplyDecoder = (t, _g, b): StatfsReply => ({
  blocks: t.getU64(b + P.STATFS_OUT.blocks), bfree: t.getU64(b + P.STATFS_OUT.bfree),
  bavail: t.getU64(b + P.STATFS_OUT.bavail), files: t.getU64(b + P.STATFS_OUT.files),
  ffree: t.getU64(b + P.STATFS_OUT.ffree), bsize: t.dv.getUint32(b + P.STATFS_OUT.bsize, true),
  namelen: t.dv.getUint32(b + P.STATFS_OUT.namelen, true), frsize: t.dv.getUint32(b + P.STATFS_OUT.frsize, true),
});

export function getattr(t: FuseTransport, nodeid: number, fh?: number, q?: number): Promise<AttrReply> {
  const g = t.slot(q);
  if (g < 0) return t.retry(() => getattr(t, nodeid, fh, q));
  const a = t.argsAt(g);
  t.dv.setUint32(a + P.GETATTR_IN.getattrFlags, fh === undefined ? 0 : P.FUSE_GETATTR_FH, true);
  t.dv.setUint32(a + P.GETATTR_IN.dummy, 0, true);
  t.putU64(a + P.GETATTR_IN.fh, fh ?? 0);
  return t.send(g, P.FUSE_GETATTR, nodeid, P.GETATTR_IN.SIZE, attrReply);
}

export function setattr(t: FuseTransport, nodeid: number, s: SetattrIn, q?: number): Promise<AttrReply> {
  const g = t.slot(q);
  if (g < 0) return t.retry(() => setattr(t, nodeid, s, q));
  const a = t.argsAt(g);
  t.u8.fill(0, a, a + P.SETATTR_IN.SIZE);
  const v = t.dv;
  let valid = 0;
  if (s.mode !== undefined) { valid |= P.FATTR_MODE; v.setUint32(a + P.SETATTR_IN.mode, s.mode, true); }
  if (s.uid !== undefined) { valid |= P.FATTR_UID; v.setUint32(a + P.SETATTR_IN.uid, s.uid, true); }
  if (s.gid !== undefined) { valid |= P.FATTR_GID; v.setUint32(a + P.SETATTR_IN.gid, s.gid, true); }
  if (s.size !== undefined) { valid |= P.FATTR_SIZE; t.putU64(a + P.SETATTR_IN.size, s.size); }
  if (s.fh !== undefined) { valid |= P.FATTR_FH; t.putU64(a + P.SETATTR_IN.fh, s.fh); }
  if (s.atime !== undefined) {
    valid |= P.FATTR_ATIME;
    t.putU64(a + P.SETATTR_IN.atime, Math.floor(s.atime));
    v.setUint32(a + P.SETATTR_IN.atimensec, Math.round((s.atime % 1) * 1e9), true);
  }
  if (s.mtime !== undefined) {
    valid |= P.FATTR_MTIME;
    t.putU64(a + P.SETATTR_IN.mtime, Math.floor(s.mtime));
    v.setUint32(a + P.SETATTR_IN.mtimensec, Math.round((s.mtime % 1) * 1e9), true);
  }
  v.setUint32(a + P.SETATTR_IN.valid, valid, true);
  return t.send(g, P.FUSE_SETATTR, nodeid, P.SETATTR_IN.SIZE, attrReply);
}

export function statfs(t: FuseTransport, nodeid: number, q?: number): Promise<StatfsReply> {
  const g = t.slot(q);
  if (g < 0) return t.retry(() => statfs(t, nodeid, q));
  return t.send(g, P.FUSE_STATFS, nodeid, 0, statfsReply);
}

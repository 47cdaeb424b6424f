/**
 * Reply pieces several op families write into the core's REPLY scratch (fuse_open_out, a bare status, the
 * fuse_attr.flags of an entry), what undoes a reply the guest never received, and how the DAX window follows a
 * request that changed a file.
 */
import * as P from '../protocol.js';
import { daxOf } from '../../dax/dax-device.js';
import type { Args, OpContext } from './op.js';

export function replyView(s: OpContext): DataView {
  return s.core.view();
}

/** A header-only reply: the errno, or 0 for any success. */
export function statusReply(r: number): number {
  return r < 0 ? r : 0;
}

/** fuse_open_out at reply offset `at` (OPEN, OPENDIR, CREATE, TMPFILE). Returns its length. */
export function openOut(s: OpContext, at: number, fh: number, flags: number): number {
  const v = replyView(s);
  const o = s.core.replyPtr + at;
  v.setBigUint64(o + P.OPEN_OUT.fh, BigInt(fh), true);
  v.setUint32(o + P.OPEN_OUT.openFlags, flags >>> 0, true);
  v.setUint32(o + P.OPEN_OUT.padding, 0, true);
  return P.OPEN_OUT.SIZE;
}

/** FUSE_ATTR_DAX when the --inode-dax policy picks the file in the statx scratch (only with FUSE_HAS_INODE_DAX). */
export function daxAttrFlag(s: OpContext): number {
  const dax = daxOf(s);
  if (dax === undefined || !dax.inodeDaxNegotiated) return 0;
  const v = replyView(s);
  const mode = v.getUint16(s.core.statxPtr + 28, true); // struct statx: stx_mode
  const size = Number(v.getBigUint64(s.core.statxPtr + 40, true)); // stx_size
  return dax.wantsDax(mode, size) ? P.FUSE_ATTR_DAX : 0;
}

/**
 * The fuse_attr.flags of an entry whose attributes are in the statx scratch: the bits of `wanted` that INIT allows
 * (FUSE_ATTR_SUBMOUNT only with FUSE_SUBMOUNTS), plus FUSE_ATTR_DAX when the --inode-dax policy picks the file.
 */
export function attrFlagsAllowed(s: OpContext, wanted: number | undefined): number {
  const submount = wanted && (s.negotiatedFlags & P.FUSE_SUBMOUNTS) !== 0 ? wanted & P.FUSE_ATTR_SUBMOUNT : 0;
  return submount | daxAttrFlag(s);
}

/** After a request that may have changed a file's size (SETATTR size, WRITE, FALLOCATE, COPY_FILE_RANGE, OPEN with
 *  O_TRUNC): the DAX window follows (a no-op without mappings of that file). */
export function daxSizeChanged(s: OpContext, nodeId: number, r: number): number {
  if (r >= 0) daxOf(s)?.sizeChanged(nodeId);
  return r;
}

// ---- undoing an undelivered reply ------------------------------------------------------------------------------

/** The fuse_entry_out at reply offset `at` was not delivered: drop the lookup it gave. */
export function undoEntry(s: OpContext, at = 0): void {
  const nodeId = Number(replyView(s).getBigUint64(s.core.replyPtr + at, true));
  if (nodeId !== 0) s.fs.forget?.(nodeId, 1);
}

/** The fuse_open_out at reply offset `at` was not delivered: release the handle it gave. */
export function undoOpen(s: OpContext, req: Args, at: number, dir: boolean): void {
  const fh = Number(replyView(s).getBigUint64(s.core.replyPtr + at + P.OPEN_OUT.fh, true));
  if (dir) s.fs.releasedir?.(req.ctx, req.nodeId, fh);
  else s.fs.release?.(req.ctx, req.nodeId, fh, 0, 0);
}

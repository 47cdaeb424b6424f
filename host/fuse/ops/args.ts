/**
 * Reading a request's args (fuse_*_in structs and the names after them) out of the core's ARGS scratch, and the
 * decoders several op families share. A decoder returns plain values or a negative errno for malformed args.
 */
import { native } from '../../native-loader.js';
import * as P from '../protocol.js';
import { nameOf } from '../names.js';
import type { Args } from './op.js';

const E = native.constants.errno;

/** Where a request's args are: enough for the decoders (a queue thread has no Args of its own). */
export type ArgBytes = Pick<Args, 'view' | 'base' | 'len'>;

export const u32 = (a: ArgBytes, off: number): number => a.view.getUint32(a.base + off, true);
/**
 * A u64 as a number (file handles, node ids, offsets, sizes: all below 2^53 in practice; larger -> rounded, as
 * Number(bigint) would). Two u32 reads: no BigInt is made on the request path.
 */
export const u64Number = (a: ArgBytes, off: number): number => u64At(a.view, a.base + off);
/** u64Number at an absolute offset of `v` (the server's read of fuse_in_header.nodeid). */
export const u64At = (v: DataView, at: number): number =>
  v.getUint32(at + 4, true) * 0x1_0000_0000 + v.getUint32(at, true);
/** A u64 exactly (directory cookies, lock ranges, DAX offsets, INIT flags: all 64 bits matter). */
export const u64Big = (a: Args, off: number): bigint => a.view.getBigUint64(a.base + off, true);

/** `count` NUL-terminated names (byte strings, names.ts) starting at args offset `off`; -EINVAL if unterminated. */
export function cstrings(a: Args, off: number, count: number): string[] | number {
  const bytes = new Uint8Array(a.view.buffer, a.base, a.len);
  const out: string[] = [];
  let pos = off;
  for (let i = 0; i < count; i++) {
    if (pos > a.len) return -E.EINVAL;
    const nul = bytes.indexOf(0, pos);
    if (nul < 0) return -E.EINVAL;
    out.push(nameOf(bytes, pos, nul));
    pos = nul + 1;
  }
  return out;
}

/** -EINVAL when the args are shorter than `size`, else 0. */
export function need(a: ArgBytes, size: number): number {
  return a.len < size ? -E.EINVAL : 0;
}

/** Requests without args (or whose args we do not read). */
export const noArgs = (): null => null;

export interface NameArgs { name: string }

/** One name (LOOKUP, UNLINK, RMDIR, REMOVEXATTR). */
export function nameDecoder(a: Args): NameArgs | number {
  const n = cstrings(a, 0, 1);
  return typeof n === 'number' ? n : { name: n[0] };
}

export interface ReadArgs { fh: number; offset: number; size: number; flags: number }

/** fuse_read_in of READ (the directory reads have their own: their offset is a cookie). */
export function readDecoder(a: ArgBytes): ReadArgs | number {
  const bad = need(a, P.READ_IN.SIZE);
  if (bad < 0) return bad;
  return {
    fh: u64Number(a, P.READ_IN.fh), offset: u64Number(a, P.READ_IN.offset), size: u32(a, P.READ_IN.size),
    flags: u32(a, P.READ_IN.flags),
  };
}

export interface FsyncArgs { fh: number; datasync: boolean }

/** fuse_fsync_in (FSYNC, FSYNCDIR). */
export function fsyncDecoder(a: Args): FsyncArgs | number {
  return a.len < P.FSYNC_IN.SIZE ? -E.EINVAL
    : { fh: u64Number(a, P.FSYNC_IN.fh), datasync: (u32(a, P.FSYNC_IN.fsyncFlags) & P.FUSE_FSYNC_FDATASYNC) !== 0 };
}

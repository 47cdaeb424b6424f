/**
 * A file's times in nanoseconds, read by statx(2) through the addon. node:fs's `bigint` stat carries nanoseconds
 * on Node and Bun, but Deno's node:fs rounds them to milliseconds, so tests that check nanosecond times read them
 * here, the same in every runtime.
 */
import { byteString, native } from '../../host/native-loader.js';

/** struct statx: stx_atime at 64, stx_ctime at 96, stx_mtime at 112; each { s64 tv_sec; u32 tv_nsec; s32 pad }. */
const AT = { atimeNs: 64, ctimeNs: 96, mtimeNs: 112 } as const;

/** atime, ctime and mtime of `file` (following a final symlink) in nanoseconds since the epoch. */
export function timesNs(file: string): { atimeNs: bigint; ctimeNs: bigint; mtimeNs: bigint } {
  const buf = new Uint8Array(256);
  const r = native.statx(native.constants.AT_FDCWD, byteString(file), 0, native.constants.STATX_BASIC_STATS, buf, 0);
  if (r < 0) throw new Error(`statx ${file}: ${native.strerror(-r)}`);
  const v = new DataView(buf.buffer);
  const at = (o: number): bigint => v.getBigInt64(o, true) * 1_000_000_000n + BigInt(v.getUint32(o + 8, true));
  return { atimeNs: at(AT.atimeNs), ctimeNs: at(AT.ctimeNs), mtimeNs: at(AT.mtimeNs) };
}

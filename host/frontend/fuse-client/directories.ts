/**
 * FuseClient's directory ops: OPENDIR, READDIR and READDIRPLUS with their dirent decoders, RELEASEDIR. OPENDIR,
 * RELEASEDIR and the READDIRs carry the same structs as OPEN, RELEASE and READ (data.ts).
 */
import * as P from '../../fuse/protocol.js';
import { decodeEntry, type EntryReply } from './entries.js';
import { openLike, releaseLike, sendRead, type OpenReply } from './data.js';
import type { FuseTransport, ReplyDecoder } from './transport.js';

/** `off` is the directory cookie to continue from: a full 64-bit value (ext4 hashes), hence a bigint. */
export interface Dirent { ino: number; off: bigint; type: number; name: string }
export interface DirentPlus extends Dirent { entry: EntryReply }

/** The fuse_dirent (or fuse_direntplus) records in `len` bytes at guest offset `b`. */
function decodeDirents(t: FuseTransport, b: number, len: number, plus: boolean): Dirent[] | DirentPlus[] {
  const out: any[] = [];
  let o = b;
  const end = b + len;
  const head = plus ? P.DIRENTPLUS.dirent : 0;
  for (;;) {
    const rec = o + head;
    if (rec + P.DIRENT.name > end) break;
    const namelen = t.dv.getUint32(rec + P.DIRENT.namelen, true);
    const size = Math.ceil((head + P.DIRENT.name + namelen) / 8) * 8;
    if (namelen === 0 || o + size > end) break;
    const d: any = {
      ino: t.getU64(rec + P.DIRENT.ino), off: t.dv.getBigUint64(rec + P.DIRENT.off, true),
      type: t.dv.getUint32(rec + P.DIRENT.type, true),
      name: t.textDecoder.decode(t.u8.subarray(rec + P.DIRENT.name, rec + P.DIRENT.name + namelen)),
    };
    if (plus) d.entry = decodeEntry(t, o + P.DIRENTPLUS.entryOut);
    out.push(d);
    o += size;
  }
  return out;
}

const direntsReply: ReplyDecoder = (t, _g, b, bodyLen) => decodeDirents(t, b, bodyLen, false);
const direntsPlusReply: ReplyDecoder = (t, _g, b, bodyLen) => decodeDirents(t, b, bodyLen, true);

export function readdir(t: FuseTransport, nodeid: number, fh: number, offset: number | bigint, size: number,
  q?: number): Promise<Dirent[]> {
  const g = t.slot(q);
  if (g < 0) return t.retry(() => readdir(t, nodeid, fh, offset, size, q));
  return sendRead(t, g, P.FUSE_READDIR, nodeid, fh, offset, size, direntsReply);
}

export function readdirplus(t: FuseTransport, nodeid: number, fh: number, offset: number | bigint, size: number,
  q?: number): Promise<DirentPlus[]> {
  const g = t.slot(q);
  if (g < 0) return t.retry(() => readdirplus(t, nodeid, fh, offset, size, q));
  return sendRead(t, g, P.FUSE_READDIRPLUS, nodeid, fh, offset, size, direntsPlusReply);
}

export function opendir(t: FuseTransport, nodeid: number, q?: number): Promise<OpenReply> {
  return openLike(t, P.FUSE_OPENDIR, nodeid, 0, q);
}

export function releasedir(t: FuseTransport, nodeid: number, fh: number, q?: number): Promise<void> {
  return releaseLike(t, P.FUSE_RELEASEDIR, nodeid, fh, 0, q);
}

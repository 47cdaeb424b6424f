/**
 * FuseClient's entry ops: LOOKUP, FORGET and BATCH_FORGET (on the hiprio queue), CREATE, MKDIR, UNLINK, RMDIR,
 * RENAME/RENAME2, and the fuse_entry_out decoder READDIRPLUS shares.
 */
import * as P from '../../fuse/protocol.js';
import { decodeAttr, type FuseAttr } from './attributes.js';
import { HIPRIO, IN_AREA, noReply, voidReply, type FuseTransport, type ReplyDecoder } from './transport.js';

export interface EntryReply { nodeid: number; generation: number; entryValid: number; attrValid: number; attr: FuseAttr }
export interface CreateReply { entry: EntryReply; fh: number; openFlags: number }

const ENTRY_OUT = { nodeid: 0, generation: 8, entryValid: 16, attrValid: 24, attr: 40 } as const;

/** The fuse_entry_out at guest offset `b`. */
export function decodeEntry(t: FuseTransport, b: number): EntryReply {
  return {
    nodeid: t.getU64(b + ENTRY_OUT.nodeid), generation: t.getU64(b + ENTRY_OUT.generation),
    entryValid: t.getU64(b + ENTRY_OUT.entryValid), attrValid: t.getU64(b + ENTRY_OUT.attrValid),
    attr: decodeAttr(t, b + ENTRY_OUT.attr),
  };
}

const entryReply: ReplyDecoder = (t, _g, b) => decodeEntry(t, b);

/** fuse_entry_out then fuse_open_out. */
const createReply: ReplyDecoder = (t, _g, b): CreateReply => {
  const e = b + P.ENTRY_OUT_SIZE;
  return { entry: decodeEntry(t, b), fh: t.getU64(e + P.OPEN_OUT.fh),
    openFlags: t.dv.getUint32(e + P.OPEN_OUT.openFlags, true) };
};

export function lookup(t: FuseTransport, parent: number, name: string, q?: number): Promise<EntryReply> {
  const g = t.slot(q);
  if (g < 0) return t.retry(() => lookup(t, parent, name, q));
  const n = t.putName(g, 0, name);
  return t.send(g, P.FUSE_LOOKUP, parent, n, entryReply);
}

export function forget(t: FuseTransport, nodeid: number, nlookup: number): Promise<void> {
  const g = t.hiprioSlot();
  if (g < 0) return t.retryOn(HIPRIO, () => forget(t, nodeid, nlookup));
  t.putU64(t.argsAt(g) + P.FORGET_IN.nlookup, nlookup);
  return t.send(g, P.FUSE_FORGET, nodeid, P.FORGET_IN.SIZE, noReply);
}

export async function batchForget(t: FuseTransport,
  items: ReadonlyArray<{ nodeid: number; nlookup: number }>): Promise<void> {
  const per = Math.floor((IN_AREA - P.IN_HEADER.SIZE - P.BATCH_FORGET_IN.SIZE) / P.FORGET_ONE.SIZE);
  const all: Promise<void>[] = [];
  for (let i = 0; i < items.length; i += per) {
    const chunk = items.slice(i, i + per);
    all.push(batchForgetOne(t, chunk));
  }
  await Promise.all(all);
}

function batchForgetOne(t: FuseTransport, items: ReadonlyArray<{ nodeid: number; nlookup: number }>): Promise<void> {
  const g = t.hiprioSlot();
  if (g < 0) return t.retryOn(HIPRIO, () => batchForgetOne(t, items));
  const a = t.argsAt(g);
  t.dv.setUint32(a + P.BATCH_FORGET_IN.count, items.length, true);
  t.dv.setUint32(a + P.BATCH_FORGET_IN.dummy, 0, true);
  let o = a + P.BATCH_FORGET_IN.SIZE;
  for (const it of items) {
    t.putU64(o + P.FORGET_ONE.nodeid, it.nodeid);
    t.putU64(o + P.FORGET_ONE.nlookup, it.nlookup);
    o += P.FORGET_ONE.SIZE;
  }
  return t.send(g, P.FUSE_BATCH_FORGET, 0, o - a, noReply);
}

export function create(t: FuseTransport, parent: number, name: string, flags: number, mode: number,
  q?: number): Promise<CreateReply> {
  const g = t.slot(q);
  if (g < 0) return t.retry(() => create(t, parent, name, flags, mode, q));
  const a = t.argsAt(g);
  const v = t.dv;
  v.setUint32(a + P.CREATE_IN.flags, flags, true);
  v.setUint32(a + P.CREATE_IN.mode, mode, true);
  v.setUint32(a + P.CREATE_IN.umask, 0, true);
  v.setUint32(a + P.CREATE_IN.openFlags, 0, true);
  const n = t.putName(g, P.CREATE_IN.SIZE, name);
  return t.send(g, P.FUSE_CREATE, parent, P.CREATE_IN.SIZE + n, createReply);
}

export function mkdir(t: FuseTransport, parent: number, name: string, mode: number, q?: number): Promise<EntryReply> {
  const g = t.slot(q);
  if (g < 0) return t.retry(() => mkdir(t, parent, name, mode, q));
  const a = t.argsAt(g);
  t.dv.setUint32(a + P.MKDIR_IN.mode, mode, true);
  t.dv.setUint32(a + P.MKDIR_IN.umask, 0, true);
  const n = t.putName(g, P.MKDIR_IN.SIZE, name);
  return t.send(g, P.FUSE_MKDIR, parent, P.MKDIR_IN.SIZE + n, entryReply);
}

export function unlink(t: FuseTransport, parent: number, name: string, q?: number): Promise<void> {
  return nameOnly(t, P.FUSE_UNLINK, parent, name, q);
}

export function rmdir(t: FuseTransport, parent: number, name: string, q?: number): Promise<void> {
  return nameOnly(t, P.FUSE_RMDIR, parent, name, q);
}

/** UNLINK, RMDIR: the name alone. */
function nameOnly(t: FuseTransport, op: number, parent: number, name: string, q?: number): Promise<void> {
  const g = t.slot(q);
  if (g < 0) return t.retry(() => nameOnly(t, op, parent, name, q));
  const n = t.putName(g, 0, name);
  return t.send(g, op, parent, n, voidReply);
}

export function rename(t: FuseTransport, parent: number, name: string, newParent: number, newName: string, flags: number,
  q?: number): Promise<void> {
  const g = t.slot(q);
  if (g < 0) return t.retry(() => rename(t, parent, name, newParent, newName, flags, q));
  const a = t.argsAt(g);
  let fixed: number;
  let op: number;
  if (flags === 0) {
    op = P.FUSE_RENAME;
    fixed = P.RENAME_IN.SIZE;
    t.putU64(a + P.RENAME_IN.newdir, newParent);
  } else {
    op = P.FUSE_RENAME2;
    fixed = P.RENAME2_IN.SIZE;
    t.putU64(a + P.RENAME2_IN.newdir, newParent);
    t.dv.setUint32(a + P.RENAME2_IN.flags, flags, true);
    t.dv.setUint32(a + P.RENAME2_IN.padding, 0, true);
  }
  const n1 = t.putName(g, fixed, name);
  const n2 = t.putName(g, fixed + n1, newName);
  return t.send(g, op, parent, fixed + n1 + n2, voidReply);
}

/**
 * Entry ops: the names in a directory and the lookup counts they give. LOOKUP, FORGET, BATCH_FORGET, MKNOD, MKDIR,
 * SYMLINK, LINK, UNLINK, RMDIR, RENAME, RENAME2, and CREATE/TMPFILE (a new entry and an open handle in one reply).
 * Every reply that hands out a node (fuse_entry_out) counts one lookup; `undo` takes it back when the reply could
 * not be delivered.
 */
import { native } from '../../native-loader.js';
import type { CreateResult, Entry } from '../filesystem.js';
import * as P from '../protocol.js';
import { cstrings, nameDecoder, need, u32, u64Number, type NameArgs } from './args.js';
import { attrFlagsAllowed, openOut, replyView, statusReply, undoEntry, undoOpen } from './replies.js';
import { NO_REPLY, op, type Args, type OpRow, type OpContext } from './op.js';

const E = native.constants.errno;

interface MknodArgs { mode: number; rdev: number; umask: number; name: string }
interface MkdirArgs { mode: number; umask: number; name: string }
interface RenameArgs { newDir: number; flags: number; name: string; newName: string }
interface CreateArgs { flags: number; mode: number; umask: number; openFlags: number; name: string }

/** fuse_entry_out from an Entry and the statx scratch. */
function entryReply(s: OpContext, r: Entry | number): number {
  if (typeof r === 'number') return r;
  const c = s.core;
  const n = c.encodeEntryOut(c.replyPtr, r.nodeId, r.generation, r.entryTimeout ?? s.entryTimeout,
    r.attrTimeout ?? s.attrTimeout, c.statxPtr);
  // The core writes fuse_attr.flags as 0; FUSE_ATTR_SUBMOUNT comes from the filesystem.
  const flags = attrFlagsAllowed(s, r.attrFlags);
  if (flags !== 0) replyView(s).setUint32(c.replyPtr + P.ENTRY_OUT_ATTR_FLAGS, flags, true);
  return n;
}

/** CREATE/TMPFILE: fuse_entry_out then fuse_open_out. */
function createReply(s: OpContext, r: CreateResult | number): number {
  const n = entryReply(s, r);
  if (typeof r === 'number' || n < 0) return n;
  return n + openOut(s, n, r.fh, (r.openFlags ?? 0) | s.fileOpenFlags);
}

/** CREATE/TMPFILE: the new node's release goes out first, then its lookup is dropped. */
function undoCreate(s: OpContext, _d: unknown, req: Args): void {
  const nodeId = Number(replyView(s).getBigUint64(s.core.replyPtr, true));
  undoOpen(s, { ...req, nodeId }, P.ENTRY_OUT_SIZE, false);
  undoEntry(s);
}

function renameDecoder(a: Args, headerSize: number, withFlags: boolean): RenameArgs | number {
  const bad = need(a, headerSize);
  if (bad < 0) return bad;
  const names = cstrings(a, headerSize, 2);
  if (typeof names === 'number') return names;
  return { newDir: u64Number(a, 0), flags: withFlags ? u32(a, P.RENAME2_IN.flags) : 0, name: names[0], newName: names[1] };
}

/** fuse_create_in (CREATE, TMPFILE) with the entry's name. */
function createArgs(a: Args, name: string): CreateArgs {
  return { flags: u32(a, P.CREATE_IN.flags), mode: u32(a, P.CREATE_IN.mode), umask: u32(a, P.CREATE_IN.umask),
    openFlags: u32(a, P.CREATE_IN.openFlags), name };
}

export const entryOps: readonly OpRow[] = [
  [P.FUSE_LOOKUP, op<NameArgs>({
    name: 'LOOKUP', method: 'lookup', undo: (s) => undoEntry(s), decode: nameDecoder,
    handle: (s, d, req) => entryReply(s, s.fs.lookup!(req.ctx, req.nodeId, d.name, s.attr)),
  })],

  [P.FUSE_FORGET, op<number>({
    name: 'FORGET', method: 'forget', noReply: true,
    decode: (a) => (a.len < P.FORGET_IN.SIZE ? -E.EINVAL : u64Number(a, P.FORGET_IN.nlookup)),
    handle: (s, nlookup, req) => {
      s.fs.forget!(req.nodeId, nlookup);
      return NO_REPLY;
    },
  })],

  [P.FUSE_BATCH_FORGET, op<number>({
    name: 'BATCH_FORGET', method: 'forget', noReply: true,
    decode: (a) => {
      if (a.len < P.BATCH_FORGET_IN.SIZE) return -E.EINVAL;
      // Only as many entries as are really there.
      const room = Math.floor((a.len - P.BATCH_FORGET_IN.SIZE) / P.FORGET_ONE.SIZE);
      return Math.min(u32(a, P.BATCH_FORGET_IN.count), room);
    },
    handle: (s, count, req) => {
      for (let i = 0; i < count; i++) {
        const at = P.BATCH_FORGET_IN.SIZE + i * P.FORGET_ONE.SIZE;
        s.fs.forget!(u64Number(req, at + P.FORGET_ONE.nodeid), u64Number(req, at + P.FORGET_ONE.nlookup));
      }
      return NO_REPLY;
    },
  })],

  [P.FUSE_SYMLINK, op<{ name: string; target: string }>({
    name: 'SYMLINK', method: 'symlink', modifies: true, undo: (s) => undoEntry(s),
    decode: (a) => {
      const n = cstrings(a, 0, 2); // the new entry's name, then the link target
      return typeof n === 'number' ? n : { name: n[0], target: n[1] };
    },
    handle: (s, d, req) => entryReply(s, s.fs.symlink!(req.ctx, req.nodeId, d.name, d.target, s.attr)),
  })],

  [P.FUSE_MKNOD, op<MknodArgs>({
    name: 'MKNOD', method: 'mknod', modifies: true, undo: (s) => undoEntry(s),
    decode: (a, s) => {
      const head = s.minor >= 12 ? P.MKNOD_IN.SIZE : P.MKNOD_IN.COMPAT_SIZE;
      const bad = need(a, head);
      if (bad < 0) return bad;
      const n = cstrings(a, head, 1);
      if (typeof n === 'number') return n;
      return { mode: u32(a, P.MKNOD_IN.mode), rdev: u32(a, P.MKNOD_IN.rdev),
        umask: head === P.MKNOD_IN.SIZE ? u32(a, P.MKNOD_IN.umask) : 0, name: n[0] };
    },
    handle: (s, d, req) => entryReply(s, s.fs.mknod!(req.ctx, req.nodeId, d.name, d.mode, d.rdev, d.umask, s.attr)),
  })],

  [P.FUSE_MKDIR, op<MkdirArgs>({
    name: 'MKDIR', method: 'mkdir', modifies: true, undo: (s) => undoEntry(s),
    decode: (a) => {
      const bad = need(a, P.MKDIR_IN.SIZE);
      if (bad < 0) return bad;
      const n = cstrings(a, P.MKDIR_IN.SIZE, 1);
      if (typeof n === 'number') return n;
      return { mode: u32(a, P.MKDIR_IN.mode), umask: u32(a, P.MKDIR_IN.umask), name: n[0] };
    },
    handle: (s, d, req) => entryReply(s, s.fs.mkdir!(req.ctx, req.nodeId, d.name, d.mode, d.umask, s.attr)),
  })],

  [P.FUSE_UNLINK, op<NameArgs>({
    name: 'UNLINK', method: 'unlink', modifies: true, decode: nameDecoder,
    handle: (s, d, req) => statusReply(s.fs.unlink!(req.ctx, req.nodeId, d.name)),
  })],

  [P.FUSE_RMDIR, op<NameArgs>({
    name: 'RMDIR', method: 'rmdir', modifies: true, decode: nameDecoder,
    handle: (s, d, req) => statusReply(s.fs.rmdir!(req.ctx, req.nodeId, d.name)),
  })],

  [P.FUSE_RENAME, op<RenameArgs>({
    name: 'RENAME', method: 'rename', modifies: true, decode: (a) => renameDecoder(a, P.RENAME_IN.SIZE, false),
    handle: (s, d, req) => statusReply(s.fs.rename!(req.ctx, req.nodeId, d.name, d.newDir, d.newName, 0)),
  })],

  [P.FUSE_RENAME2, op<RenameArgs>({
    name: 'RENAME2', method: 'rename', modifies: true, decode: (a) => renameDecoder(a, P.RENAME2_IN.SIZE, true),
    handle: (s, d, req) => statusReply(s.fs.rename!(req.ctx, req.nodeId, d.name, d.newDir, d.newName, d.flags)),
  })],

  [P.FUSE_LINK, op<{ oldNode: number; name: string }>({
    name: 'LINK', method: 'link', modifies: true, undo: (s) => undoEntry(s),
    decode: (a) => {
      const bad = need(a, P.LINK_IN.SIZE);
      if (bad < 0) return bad;
      const n = cstrings(a, P.LINK_IN.SIZE, 1);
      return typeof n === 'number' ? n : { oldNode: u64Number(a, P.LINK_IN.oldnodeid), name: n[0] };
    },
    // The request's node is the new parent.
    handle: (s, d, req) => entryReply(s, s.fs.link!(req.ctx, d.oldNode, req.nodeId, d.name, s.attr)),
  })],

  [P.FUSE_CREATE, op<CreateArgs>({
    name: 'CREATE', method: 'create', modifies: true,
    undo: undoCreate,
    decode: (a) => {
      const bad = need(a, P.CREATE_IN.SIZE);
      if (bad < 0) return bad;
      const n = cstrings(a, P.CREATE_IN.SIZE, 1);
      return typeof n === 'number' ? n : createArgs(a, n[0]);
    },
    handle: (s, d, req) => createReply(s,
      s.fs.create!(req.ctx, req.nodeId, d.name, d.mode, d.flags, d.umask, s.attr, d.openFlags)),
  })],

  [P.FUSE_TMPFILE, op<CreateArgs>({
    // fuse_create_in, then a name the kernel makes up (ignored): the file has none.
    name: 'TMPFILE', method: 'tmpfile', modifies: true, undo: undoCreate,
    decode: (a) => {
      const bad = need(a, P.CREATE_IN.SIZE);
      return bad < 0 ? bad : createArgs(a, '');
    },
    handle: (s, d, req) => createReply(s, s.fs.tmpfile!(req.ctx, req.nodeId, d.mode, d.flags, d.umask, s.attr)),
  })],
];

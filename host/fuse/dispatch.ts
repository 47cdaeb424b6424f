/**
 * The FUSE dispatch table: opcode -> `{ name, method, decode, handle }` (the Op shape, ops/op.ts), assembled from
 * the op families. Each family file holds its opcodes' arg decoders, handlers and reply encoders together:
 *
 *   ops/session.ts      INIT DESTROY INTERRUPT SYNCFS
 *   ops/entries.ts      LOOKUP FORGET BATCH_FORGET MKNOD MKDIR SYMLINK LINK UNLINK RMDIR RENAME RENAME2 CREATE TMPFILE
 *   ops/attributes.ts   GETATTR SETATTR ACCESS READLINK STATFS
 *   ops/data.ts         OPEN READ WRITE FLUSH RELEASE FSYNC FALLOCATE LSEEK COPY_FILE_RANGE IOCTL
 *   ops/directories.ts  OPENDIR READDIR READDIRPLUS RELEASEDIR FSYNCDIR
 *   ops/xattrs.ts       GETXATTR LISTXATTR SETXATTR REMOVEXATTR
 *   ops/locks.ts        GETLK SETLK SETLKW (POSIX locks, and BSD flock through FUSE_LK_FLOCK)
 *   ops/dax.ts          SETUPMAPPING REMOVEMAPPING
 *
 * with what they share in ops/args.ts (reading args) and ops/replies.ts (reply pieces, undo). The server
 * (server.ts) owns the loop around the table: lookup, the INIT gate, ENOSYS for what is missing, replySend/
 * replyNone, and catching throws.
 *
 * Opcodes not in the table are answered ENOSYS, which the kernel remembers (it stops sending them and falls back to
 * local behaviour): POLL (the kernel then treats files as always ready), BMAP (block devices
 * only), NOTIFY_REPLY (we never send a retrieve notification), CUSE_INIT; SETUPMAPPING/REMOVEMAPPING without a
 * DAX window (host/dax/dax-device.ts; with one they are answered once the frontend mapped). IOCTL is answered ENOTTY
 * (no ioctl is passed through).
 */
import type { Op } from './ops/op.js';
import { sessionOps } from './ops/session.js';
import { entryOps } from './ops/entries.js';
import { attributeOps } from './ops/attributes.js';
import { dataOps } from './ops/data.js';
import { directoryOps } from './ops/directories.js';
import { xattrOps } from './ops/xattrs.js';
import { lockOps } from './ops/locks.js';
import { daxOps } from './ops/dax.js';

export { DEFER, NO_REPLY, type Args, type FuseCore, type Op, type OpContext } from './ops/op.js';
export { attrFlagsAllowed } from './ops/replies.js';

/** The dispatch table, indexed by opcode. */
export const OPS: ReadonlyMap<number, Op<unknown>> = new Map([
  ...sessionOps, ...entryOps, ...attributeOps, ...dataOps, ...directoryOps, ...xattrOps, ...lockOps, ...daxOps,
]);

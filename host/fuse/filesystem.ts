/**
 * The `FileSystem` interface the FUSE server dispatches to, and the sinks through which a filesystem hands back
 * attributes, file data and directory entries without copying them through JS.
 *
 * Conventions, for every method:
 * - Every method is optional; a missing one answers ENOSYS (and for READDIRPLUS / INIT-time features, the server
 *   does not negotiate what a filesystem cannot do).
 * - Methods get a `Context` (the caller's uid/gid/pid from fuse_in_header) and decoded, plain arguments.
 * - A method returns a negative errno (e.g. `-Errno.ENOENT`), which travels unchanged into
 *   `fuse_out_header.error`, or its result — or a Promise of either (see `FileSystem`: the request is answered
 *   when it settles, others are served meanwhile). Methods never throw for a filesystem error; a throw or a
 *   rejection is a bug, which the server logs (once per opcode) and answers with EIO.
 * - Node ids are the filesystem's own numbers (1 = FUSE_ROOT_ID). The **lookup count** of a node is the number of
 *   successful replies that carried its node id in an entry (LOOKUP, MKNOD, MKDIR, SYMLINK, LINK, CREATE, and
 *   READDIRPLUS entries), minus the counts FORGET/BATCH_FORGET return. The filesystem must keep a node alive
 *   while its count is above zero. Each method's doc says what it does to the count.
 * - Attributes are written into an `AttrTarget` (a raw `struct statx` in the core's scratch), from which the server
 *   encodes fuse_attr. A passthrough calls `native.statx(..., target.buffer, target.offset)`; any other
 *   filesystem calls `target.set({...})`.
 */
import { native } from '../native-loader.js';
import { nameBytes as bytesOfName, nameOf } from './names.js';

/** Who asks: the caller's ids and process, from fuse_in_header (guest ids for a VM). */
export interface Context {
  readonly uid: number;
  readonly gid: number;
  /** The caller's process id in the guest (0 for requests the kernel makes itself). */
  readonly pid: number;
}

/**
 * A successful entry reply: the node and its generation; the attributes are in the request's AttrTarget.
 * `nodeId: 0` in a LOOKUP reply is a negative entry (the name does not exist; cached for `entryTimeout`).
 */
export interface Entry {
  /** The filesystem's own number for the node (1 = the root); the guest uses it in later requests. */
  nodeId: number;
  /** Bumped when a node id is reused for another file, so the pair stays unique for NFS-style handles (0 is fine). */
  generation: number;
  /** Override the server's cache-mode timeouts (seconds). */
  entryTimeout?: number;
  attrTimeout?: number;
  /** fuse_attr.flags (FUSE_ATTR_SUBMOUNT); default 0. */
  attrFlags?: number;
}

/** Result of OPEN/OPENDIR. */
export interface OpenResult {
  fh: number;
  /** FOPEN_* bits the filesystem wants in addition to the server's cache-mode bits. */
  openFlags?: number;
}

/** Result of CREATE: an entry and an open handle. */
export interface CreateResult extends Entry, OpenResult {}

export interface Timestamp {
  sec: number;
  nsec: number;
}

/** Decoded fuse_setattr_in: only the fields whose FATTR_* bit was set are present. */
export interface SetAttr {
  /** The raw FATTR_* mask (for filesystems that want it). */
  valid: number;
  /** An open handle of the node (FATTR_FH). */
  fh?: number;
  mode?: number;
  uid?: number;
  gid?: number;
  size?: number;
  /** 'now' for FATTR_ATIME_NOW / FATTR_MTIME_NOW. */
  atime?: Timestamp | 'now';
  mtime?: Timestamp | 'now';
  /** FATTR_KILL_SUIDGID: clear setuid/setgid together with this change. */
  killSuidgid?: boolean;
}

/** STATFS reply, as statvfs(3) has it. Block counts are in units of `frsize`. */
export interface StatFs {
  /** Total blocks. */
  blocks: number;
  /** Free blocks. */
  bfree: number;
  /** Free blocks an unprivileged user may use. */
  bavail: number;
  /** Total inodes. */
  files: number;
  /** Free inodes. */
  ffree: number;
  /** Preferred I/O size. */
  bsize: number;
  /** Longest name, in bytes (255 on most filesystems). */
  namelen: number;
  /** Fragment size: the unit of the block counts. */
  frsize: number;
}

/** Decoded fuse_init_in, for `init`. */
export interface InitInfo {
  major: number;
  minor: number;
  /** What the kernel offered (flags | flags2 << 32, as a number: bits up to 52 are exact). */
  kernelFlags: number;
}

/** Plain attributes for `AttrTarget.set` (filesystems without a host inode). Times in seconds + nanoseconds. */
export interface Attr {
  ino: number;
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  size: number;
  blocks?: number;
  blksize?: number;
  rdevMajor?: number;
  rdevMinor?: number;
  atime?: Timestamp;
  mtime?: Timestamp;
  ctime?: Timestamp;
}

// ---- struct statx (include/uapi/linux/stat.h) ------------------------------------------------------------------
/**
 * Byte offsets in `struct statx` (256 bytes). Timestamps are `struct statx_timestamp { s64 tv_sec; u32 tv_nsec;
 * s32 __reserved; }` (16 bytes).
 */
export const STATX = {
  mask: 0, blksize: 4, attributes: 8, nlink: 16, uid: 20, gid: 24, mode: 28, ino: 32, size: 40, blocks: 48,
  attributesMask: 56, atime: 64, btime: 80, ctime: 96, mtime: 112, rdevMajor: 128, rdevMinor: 132,
  devMajor: 136, devMinor: 140, mntId: 144, SIZE: 256,
} as const;
const STATX_BASIC_STATS = 0x7ff;

/**
 * Where a filesystem puts a node's attributes: a raw `struct statx` at `offset` in `buffer`. The server's target
 * is the core's statx scratch, so a passthrough `native.statx` lands exactly where the encoder reads.
 */
export class AttrTarget {
  private dv: DataView | null = null;
  private at: number;

  /** @param memory returns the current buffer (a WebAssembly.Memory's buffer is replaced when it grows). */
  constructor(private memory: () => ArrayBuffer, offset: number) {
    this.at = offset;
  }

  /** Byte offset of the `struct statx` in `buffer`. */
  get offset(): number {
    return this.at;
  }

  /**
   * Moves this target to a private 256-byte buffer, keeping what was written so far. The server does this when a
   * method's result is a Promise: the shared scratch belongs to the next request, this target to the pending one.
   */
  detach(): void {
    const own = new ArrayBuffer(STATX.SIZE);
    new Uint8Array(own).set(new Uint8Array(this.memory(), this.at, STATX.SIZE));
    this.memory = () => own;
    this.at = 0;
    this.dv = null;
  }

  /** The 256 bytes of the statx (a view, not a copy). */
  bytes(): Uint8Array {
    return new Uint8Array(this.memory(), this.at, STATX.SIZE);
  }

  /** A target over its own 256-byte buffer (tests, filesystems used without a core). */
  static standalone(): AttrTarget {
    const buf = new ArrayBuffer(STATX.SIZE);
    return new AttrTarget(() => buf, 0);
  }

  get buffer(): ArrayBuffer {
    return this.memory();
  }

  /** A DataView over the whole buffer (index with `offset + STATX.x`). */
  get view(): DataView {
    const buf = this.memory();
    if (this.dv === null || this.dv.buffer !== buf) this.dv = new DataView(buf);
    return this.dv;
  }

  /** Fills the statx from plain values (and zeroes what is not given). */
  set(a: Attr): void {
    const v = this.view;
    const o = this.offset;
    new Uint8Array(v.buffer, o, STATX.SIZE).fill(0);
    v.setUint32(o + STATX.mask, STATX_BASIC_STATS, true);
    v.setUint32(o + STATX.blksize, a.blksize ?? 4096, true);
    v.setUint32(o + STATX.nlink, a.nlink, true);
    v.setUint32(o + STATX.uid, a.uid, true);
    v.setUint32(o + STATX.gid, a.gid, true);
    v.setUint16(o + STATX.mode, a.mode, true);
    v.setBigUint64(o + STATX.ino, BigInt(a.ino), true);
    v.setBigUint64(o + STATX.size, BigInt(a.size), true);
    v.setBigUint64(o + STATX.blocks, BigInt(a.blocks ?? Math.ceil(a.size / 512)), true);
    const ts = (at: number, t: Timestamp | undefined): void => {
      if (!t) return;
      v.setBigInt64(o + at, BigInt(t.sec), true);
      v.setUint32(o + at + 8, t.nsec, true);
    };
    ts(STATX.atime, a.atime);
    ts(STATX.mtime, a.mtime);
    ts(STATX.ctime, a.ctime);
    v.setUint32(o + STATX.rdevMajor, a.rdevMajor ?? 0, true);
    v.setUint32(o + STATX.rdevMinor, a.rdevMinor ?? 0, true);
  }

  // Readers of the current contents (a filesystem keys its inodes on dev/ino; tests check fields).
  get mode(): number { return this.view.getUint16(this.offset + STATX.mode, true); }
  get nlink(): number { return this.view.getUint32(this.offset + STATX.nlink, true); }
  get uid(): number { return this.view.getUint32(this.offset + STATX.uid, true); }
  get gid(): number { return this.view.getUint32(this.offset + STATX.gid, true); }
  get size(): number { return Number(this.view.getBigUint64(this.offset + STATX.size, true)); }
  /** 512-byte blocks allocated. */
  get blocks(): number { return Number(this.view.getBigUint64(this.offset + STATX.blocks, true)); }
  get rdevMajor(): number { return this.view.getUint32(this.offset + STATX.rdevMajor, true); }
  get rdevMinor(): number { return this.view.getUint32(this.offset + STATX.rdevMinor, true); }
  /** The exact 64-bit inode number. */
  get ino(): bigint { return this.view.getBigUint64(this.offset + STATX.ino, true); }
  get devMajor(): number { return this.view.getUint32(this.offset + STATX.devMajor, true); }
  get devMinor(): number { return this.view.getUint32(this.offset + STATX.devMinor, true); }
  time(which: 'atime' | 'mtime' | 'ctime'): Timestamp {
    const at = this.offset + STATX[which];
    return { sec: Number(this.view.getBigInt64(at, true)), nsec: this.view.getUint32(at + 8, true) };
  }
}

// ---- file data ------------------------------------------------------------------------------------------------------
/**
 * The destination of a READ: the guest's writable buffers. `fromFd` moves file data straight into guest memory
 * with one preadv; `fromBytes` copies (filesystems without an fd).
 */
export interface DataTarget {
  /** Bytes the guest asked for (the upper bound of what may be delivered). */
  readonly size: number;
  /** preadv(fd, guest buffers, position); bytes read or -errno. Call once per request. */
  fromFd(fd: number, position: number): number;
  /** Copies bytes (at most `size`) into the guest buffers; returns the count. Call once per request. */
  fromBytes(bytes: Uint8Array): number;
  /**
   * Optional: preadv2(fd, guest buffers, position, RWF_NOWAIT): bytes (short when only part is cached), or
   * -EAGAIN when nothing is. Data it placed counts only if its result is the method's; after it, fromFd or
   * fromBytes may still answer the request (host/passthrough/blocking-io.ts).
   */
  fromFdNowait?(fd: number, position: number): number;
}

/** The source of a WRITE: the guest's readable payload. */
export interface DataSource {
  /** Bytes the guest sent. */
  readonly size: number;
  /** pwritev(fd, guest payload, position); bytes written or -errno. */
  toFd(fd: number, position: number): number;
  /** A copy of the payload (filesystems without an fd). */
  toBytes(): Uint8Array;
  /**
   * Optional: pwritev2(fd, guest payload, position, RWF_NOWAIT): bytes (maybe short), -EAGAIN when it would block,
   * -EOPNOTSUPP when the filesystem cannot say.
   */
  toFdNowait?(fd: number, position: number): number;
}

/**
 * iovec-backed DataTarget/DataSource over an ordinary buffer: a test double for the guest, and the way to use a
 * FileSystem without a core. Layout: one `struct iovec` {u64 base, u64 len} at byte 0 (base = the address of
 * byte 16), data from byte 16.
 */
export class BufferData implements DataTarget, DataSource {
  static readonly DATA = 16;
  readonly memory: ArrayBuffer;
  readonly bytes: Uint8Array;

  constructor(readonly size: number, content?: Uint8Array) {
    this.memory = new ArrayBuffer(BufferData.DATA + size);
    const dv = new DataView(this.memory);
    dv.setBigUint64(0, BigInt(native.addressOf(this.memory) + BufferData.DATA), true);
    dv.setBigUint64(8, BigInt(size), true);
    this.bytes = new Uint8Array(this.memory, BufferData.DATA, size);
    if (content) this.bytes.set(content.subarray(0, size));
  }

  fromFd(fd: number, position: number): number {
    return native.preadv(fd, this.memory, 0, this.size > 0 ? 1 : 0, position);
  }
  fromBytes(src: Uint8Array): number {
    const n = Math.min(src.length, this.size);
    this.bytes.set(src.subarray(0, n));
    return n;
  }
  toFd(fd: number, position: number): number {
    return native.pwritev(fd, this.memory, 0, this.size > 0 ? 1 : 0, position);
  }
  toBytes(): Uint8Array {
    return this.bytes.slice();
  }
}

// ---- directory entries --------------------------------------------------------------------------------------------
/**
 * The destination of a READDIR/READDIRPLUS reply. Two ways to fill it:
 * - raw: `fill(fd)` reads `struct linux_dirent64` records with getdents64 into the core's dirent buffer, `next()`
 *   walks them, and `emit()`/`emitPlus()` append the current record (name copied byte for byte, its own d_off as
 *   the cookie) without the name passing through JS;
 * - plain: `add(...)` appends an entry from values (synthetic filesystems).
 * Every append returns false when the record does not fit; the filesystem then stops (the guest asks again from
 * the last cookie it got).
 */
export interface DirTarget {
  /** Bytes the guest asked for. */
  readonly size: number;
  /** READDIRPLUS: entries carry fuse_entry_out (attributes from `attr`). */
  readonly plus: boolean;
  /** Where `emitPlus`/`add` take the entry's attributes from. */
  readonly attr: AttrTarget;
  /** Bytes appended so far. */
  readonly used: number;

  /** getdents64(fd) into the raw buffer (at most about `size` bytes) and starts walking it. Bytes (0 = end) or -errno. */
  fill(fd: number): number;
  /** Moves to the next raw record: 1 = one is current, 0 = the batch is consumed, -1 = corrupt buffer. */
  next(): number;
  /** The current record's name, a byte string (names.ts). */
  name(): string;
  /**
   * Where the current record's name lies, for native calls that take a name as bytes (no string is made for it):
   * `nameLength()` bytes at `nameOffset()` in `nameMemory()`.
   */
  nameMemory(): ArrayBuffer;
  nameOffset(): number;
  nameLength(): number;
  /** The current record is `.` or `..`. */
  isDotOrDotDot(): boolean;
  /** Appends the current record as a fuse_dirent. */
  emit(): boolean;
  /** The current record fits as a fuse_direntplus (check before taking a lookup count for it). */
  fitsPlus(): boolean;
  /** Appends the current record as a fuse_direntplus; nodeId 0 = attributes not supplied (plain dirent).
   *  `attrFlags` goes to fuse_attr.flags (FUSE_ATTR_SUBMOUNT). */
  emitPlus(nodeId: number, generation: number, attrFlags?: number): boolean;
  /** The cookie (d_off) of the last record appended, or null if none was. */
  lastCookie(): bigint | null;
  /** Appends an entry from plain values; in plus mode with `entry`, attributes come from `attr`. */
  add(ino: number, cookie: bigint, type: number, name: string, entry?: Entry): boolean;
}

/** A POSIX record lock as FUSE carries it: [start, end] inclusive (end OFFSET_MAX = to the end of the file);
 *  type F_RDLCK / F_WRLCK / F_UNLCK (the Linux values); pid of the holder (0 when unknown). */
export interface FileLock {
  start: bigint;
  end: bigint;
  type: number;
  pid: number;
}

// ---- byte replies (xattrs) ------------------------------------------------------------------------------------------
/**
 * Where a GETXATTR/LISTXATTR value goes: `size` bytes at `buffer[offset]` (the reply scratch; valid only during
 * the call). `size` 0 means the guest asks for the size only.
 */
export interface ByteTarget {
  readonly buffer: ArrayBuffer;
  readonly offset: number;
  readonly size: number;
}

/** A ByteTarget over an ordinary buffer (tests, using a FileSystem without a core). */
export class BufferBytes implements ByteTarget {
  readonly buffer: ArrayBuffer;
  readonly offset = 0;
  constructor(readonly size: number) {
    this.buffer = new ArrayBuffer(Math.max(1, size));
  }
  /** The first n bytes. */
  bytes(n: number): Uint8Array {
    return new Uint8Array(this.buffer, 0, n);
  }
}

// ---- the interface ---------------------------------------------------------------------------------------------------
/**
 * A method's result: the value itself, or a Promise (any thenable) of it. A filesystem backed by a network or a
 * database returns a Promise; the server then parks the request, keeps serving the others, and answers it when
 * the Promise settles. A rejected Promise answers EIO (logged), as a throw does.
 */
export type MaybePromise<T> = T | PromiseLike<T>;

/**
 * What the server serves. Every method is optional: a missing one answers ENOSYS. See the module comment for the
 * conventions (errno results, lookup counts, attributes through `AttrTarget`).
 *
 * **Asynchronous methods.** Any method may return a Promise. While it is pending:
 * - requests for other nodes and handles are served as usual (the guest sees them answered first);
 * - the targets the method got (`attr`, `target`, `source`, `out`) stay valid and private to this request until
 *   the Promise settles: write to them before or after an `await`, as suits you. `setxattr`'s `value` is a view
 *   of the request valid only until the method returns or first awaits: copy it if you need it later;
 * - FORGET/BATCH_FORGET that arrive after a pending entry reply (LOOKUP, MKNOD, MKDIR, SYMLINK, LINK, CREATE,
 *   TMPFILE, READDIRPLUS) are delivered to `forget` only once that reply went out, so a count never drops to zero
 *   under a node about to be handed out;
 * - RELEASE/RELEASEDIR of a handle wait until the requests pending on that handle (READ, WRITE, FLUSH, FSYNC,
 *   READDIR...) have settled;
 * - if the guest goes away (disconnect, queue reset, DESTROY) the result is dropped; a dropped entry or open
 *   result is taken back (`forget` of one lookup, `release` of the handle) unless the session ended (then
 *   `destroy` already reset every count);
 * - a FUSE_INTERRUPT (host /dev/fuse mounts: the caller got a signal) of a request that changes nothing (READ,
 *   LOOKUP, GETATTR, ...) answers EINTR at once; its later result is dropped (and taken back as above).
 *
 * A method that throws, returns a rejected Promise or a result of the wrong shape (a positive number where an
 * errno is due, a non-integer, an object without its fields) is answered EIO and logged once per opcode.
 */
export interface FileSystem {

  /**
   * INIT: the guest mounts. Called once per session, before any other method. Replies: 0, or -errno (the mount
   * fails).
   */
  init?(info: InitInfo): MaybePromise<number>;

  /**
   * DESTROY (the guest unmounts) or the end of the session (frontend gone, daemon closing). Every lookup count
   * drops to zero: release all nodes except the root, and every open handle. No reply content.
   */
  destroy?(): MaybePromise<void>;

  /**
   * LOOKUP `name` in directory `parent`. Valid replies: an `Entry` (attributes written into `attr`), `{ nodeId: 0 }`
   * as a negative entry (cached by the guest for `entryTimeout`), or -errno (-ENOENT when absent).
   * Lookup count: +1 on the returned node on success. `.` and `..` are valid names here (`..` of the root is the
   * root).
   */
  lookup?(ctx: Context, parent: number, name: string, attr: AttrTarget): MaybePromise<Entry | number>;

  /** FORGET / BATCH_FORGET: subtract `nlookup` from the node's lookup count; at zero the node may go. No reply. */
  forget?(nodeId: number, nlookup: number): void;

  /**
   * GETATTR. `fh` is given when the kernel asked through an open handle. Valid replies: 0 (attributes written
   * into `attr`) or -errno. Lookup count unchanged.
   */
  getattr?(ctx: Context, nodeId: number, fh: number | undefined, attr: AttrTarget): MaybePromise<number>;

  /**
   * SETATTR: apply the present fields of `set` (chmod, chown, truncate when `size` is set, utimes), then write the
   * new attributes into `attr`. Valid replies: 0 or -errno. Lookup count unchanged.
   */
  setattr?(ctx: Context, nodeId: number, set: SetAttr, attr: AttrTarget): MaybePromise<number>;

  /** READLINK. Valid replies: the target (a byte string, see names) or -errno. Lookup count unchanged. */
  readlink?(ctx: Context, nodeId: number): MaybePromise<string | number>;

  /** SYMLINK: create `name` -> `target` in `parent`. Valid replies: entry or -errno. Lookup count +1 on success. */
  symlink?(ctx: Context, parent: number, name: string, target: string, attr: AttrTarget): MaybePromise<Entry | number>;

  /**
   * MKNOD (regular files, fifos, sockets, devices). `mode` includes the type; the kernel applied `umask` already
   * unless FUSE_DONT_MASK. Valid replies: entry or -errno. Lookup count +1 on success.
   */
  mknod?(ctx: Context, parent: number, name: string, mode: number, rdev: number, umask: number,
         attr: AttrTarget): MaybePromise<Entry | number>;

  /** MKDIR. Valid replies: entry or -errno (-EEXIST). Lookup count +1 on success. */
  mkdir?(ctx: Context, parent: number, name: string, mode: number, umask: number,
         attr: AttrTarget): MaybePromise<Entry | number>;

  /** UNLINK. Valid replies: 0 or -errno. Lookup counts unchanged (the node lives on until forgotten). */
  unlink?(ctx: Context, parent: number, name: string): MaybePromise<number>;

  /** RMDIR. Valid replies: 0 or -errno (-ENOTEMPTY). Lookup counts unchanged. */
  rmdir?(ctx: Context, parent: number, name: string): MaybePromise<number>;

  /**
   * RENAME / RENAME2 (`flags`: RENAME_NOREPLACE 1 | RENAME_EXCHANGE 2 | RENAME_WHITEOUT 4). Valid replies: 0 or
   * -errno (-EINVAL for flags the filesystem does not support). Lookup counts unchanged.
   */
  rename?(ctx: Context, parent: number, name: string, newParent: number, newName: string,
          flags: number): MaybePromise<number>;

  /** LINK `nodeId` as `newName` in `newParent`. Valid replies: entry or -errno. Lookup count +1 on success. */
  link?(ctx: Context, nodeId: number, newParent: number, newName: string, attr: AttrTarget): MaybePromise<Entry | number>;

  /**
   * OPEN with open(2) `flags` (the kernel removed O_CREAT/O_EXCL/O_NOCTTY; O_TRUNC only with ATOMIC_O_TRUNC).
   * `openFlags` are fuse_open_in.open_flags (FUSE_OPEN_KILL_SUIDGID: with O_TRUNC, clear setuid/setgid).
   * Valid replies: a handle (`{ fh }`, any number you choose; RELEASE gives it back) or -errno. Lookup count
   * unchanged.
   */
  open?(ctx: Context, nodeId: number, flags: number, openFlags?: number): MaybePromise<OpenResult | number>;

  /**
   * READ up to `target.size` bytes at `offset` into `target` (`fromBytes` or `fromFd`, once). Valid replies: the
   * byte count delivered (short at end of file, 0 past it) or -errno. Lookup count unchanged.
   */
  read?(ctx: Context, nodeId: number, fh: number, offset: number, target: DataTarget): MaybePromise<number>;

  /**
   * WRITE `source.size` bytes at `offset` (`source.toBytes()` or `toFd`). `writeFlags` are FUSE_WRITE_*
   * (FUSE_WRITE_KILL_SUIDGID: clear setuid, and setgid if group-executable, as a write by an unprivileged process
   * does). Valid replies: bytes written or -errno. Lookup count unchanged.
   */
  write?(ctx: Context, nodeId: number, fh: number, offset: number, source: DataSource,
         writeFlags: number): MaybePromise<number>;

  /** FLUSH (every close(2) of a descriptor). Valid replies: 0 or -errno. */
  flush?(ctx: Context, nodeId: number, fh: number, lockOwner: bigint): MaybePromise<number>;

  /**
   * RELEASE: the last reference to the open file is gone; `fh` is invalid afterwards. Valid replies: 0 (errors are
   * ignored by the kernel). Lookup count unchanged.
   */
  release?(ctx: Context, nodeId: number, fh: number, flags: number, releaseFlags: number): MaybePromise<number>;

  /** FSYNC (`datasync`: FUSE_FSYNC_FDATASYNC). Valid replies: 0 or -errno. */
  fsync?(ctx: Context, nodeId: number, fh: number, datasync: boolean): MaybePromise<number>;

  /** OPENDIR. Valid replies: a handle or -errno (-ENOTDIR). Lookup count unchanged. */
  opendir?(ctx: Context, nodeId: number, flags: number): MaybePromise<OpenResult | number>;

  /**
   * READDIR from `cookie` (0 = start, else a cookie the filesystem emitted). Append entries to `target` until one
   * does not fit (`add` returns false). Valid replies: 0 (the entries are in the target; none = end of
   * directory) or -errno. Lookup count unchanged.
   */
  readdir?(ctx: Context, nodeId: number, fh: number, cookie: bigint, target: DirTarget): MaybePromise<number>;

  /**
   * READDIRPLUS: as readdir, each entry with its attributes (write them into `target.attr` before each `add`).
   * Lookup count +1 on every entry appended with a node id (never `.`/`..`, which go out with node id 0); an entry
   * that did not fit must not keep a count.
   */
  readdirplus?(ctx: Context, nodeId: number, fh: number, cookie: bigint, target: DirTarget): MaybePromise<number>;

  /** RELEASEDIR. Valid replies: 0. */
  releasedir?(ctx: Context, nodeId: number, fh: number): MaybePromise<number>;

  /** FSYNCDIR. Valid replies: 0 or -errno. */
  fsyncdir?(ctx: Context, nodeId: number, fh: number, datasync: boolean): MaybePromise<number>;

  /** STATFS of the filesystem holding `nodeId`. Valid replies: the numbers or -errno. */
  statfs?(ctx: Context, nodeId: number): MaybePromise<StatFs | number>;

  /** ACCESS (`mask`: R_OK 4 | W_OK 2 | X_OK 1, or F_OK 0) for the caller in `ctx`. Valid replies: 0 or -errno. */
  access?(ctx: Context, nodeId: number, mask: number): MaybePromise<number>;

  /**
   * CREATE and open `name` in `parent` (`flags` include O_CREAT, maybe O_EXCL; `openFlags` as for open).
   * Valid replies: entry + handle or -errno. Lookup count +1 on success.
   */
  create?(ctx: Context, parent: number, name: string, mode: number, flags: number, umask: number,
          attr: AttrTarget, openFlags?: number): MaybePromise<CreateResult | number>;

  /**
   * TMPFILE (7.37): create an unnamed regular file in `parent` (O_TMPFILE) and open it. Valid replies: entry +
   * handle or -errno (-EOPNOTSUPP when the host filesystem cannot). Lookup count +1 on success.
   */
  tmpfile?(ctx: Context, parent: number, mode: number, flags: number, umask: number,
           attr: AttrTarget): MaybePromise<CreateResult | number>;

  /**
   * GETXATTR. `out.size` 0: reply the value's size only; else write the value into `out` and reply its length,
   * -ERANGE when it is longer than `out.size`. -ENODATA when absent. -ENOSYS: xattrs are off (the kernel stops
   * asking and answers EOPNOTSUPP itself).
   */
  getxattr?(ctx: Context, nodeId: number, name: string, out: ByteTarget): MaybePromise<number>;

  /** LISTXATTR: NUL-terminated names, with the size-probe and ERANGE rules of getxattr. */
  listxattr?(ctx: Context, nodeId: number, out: ByteTarget): MaybePromise<number>;

  /**
   * SETXATTR. `value` is a view of the request (valid until the method returns or first awaits); `flags`:
   * XATTR_CREATE | XATTR_REPLACE; `setxattrFlags` (with FUSE_SETXATTR_EXT): FUSE_SETXATTR_ACL_KILL_SGID.
   * Valid replies: 0 or -errno.
   */
  setxattr?(ctx: Context, nodeId: number, name: string, value: Uint8Array, flags: number,
            setxattrFlags?: number): MaybePromise<number>;

  /** REMOVEXATTR. Valid replies: 0 or -errno (-ENODATA when absent). */
  removexattr?(ctx: Context, nodeId: number, name: string): MaybePromise<number>;

  /**
   * FALLOCATE on an open file with fallocate(2) `mode` bits as given. Valid replies: 0 or -errno (-EOPNOTSUPP
   * when the mode is not supported).
   */
  fallocate?(ctx: Context, nodeId: number, fh: number, offset: number, length: number,
             mode: number): MaybePromise<number>;

  /** LSEEK (the kernel sends SEEK_DATA / SEEK_HOLE). Valid replies: the new offset or -errno (-ENXIO past the data). */
  lseek?(ctx: Context, nodeId: number, fh: number, offset: bigint, whence: number): MaybePromise<bigint | number>;

  /** COPY_FILE_RANGE from (nodeIn, fhIn, offIn) to (nodeOut, fhOut, offOut). Valid replies: bytes copied or -errno. */
  copyFileRange?(ctx: Context, nodeIn: number, fhIn: number, offIn: number, nodeOut: number, fhOut: number,
                 offOut: number, length: number, flags: number): MaybePromise<number>;

  /**
   * GETLK (only with `posixLocks`): a lock of another owner that conflicts with `lock`, or `lock` with type
   * F_UNLCK when none does. `owner` is the guest's lock owner (one per process file table). Valid replies: a lock
   * or -errno.
   */
  getlk?(ctx: Context, nodeId: number, fh: number, owner: bigint, lock: FileLock): MaybePromise<FileLock | number>;

  /**
   * SETLK / SETLKW (`sleep`): take or release (F_UNLCK) a lock for `owner`, never waiting. Valid replies: 0,
   * -EAGAIN on a conflict, SETLKW included: the server parks a SETLKW and calls again until the answer is not
   * -EAGAIN (or the guest interrupts it). FLUSH with the same owner releases the owner's locks on that node.
   */
  setlk?(ctx: Context, nodeId: number, fh: number, owner: bigint, lock: FileLock, sleep: boolean): MaybePromise<number>;

  /**
   * SETLK / SETLKW with FUSE_LK_FLOCK (only with `flockLocks`): a BSD flock(2) on the open file `fh` (`owner`
   * identifies the guest's open file). `type` F_RDLCK (shared), F_WRLCK (exclusive) or F_UNLCK. Valid replies: 0,
   * -EAGAIN on a conflict (SETLKW is parked and retried as for setlk). RELEASE of `fh` releases the lock.
   */
  flock?(ctx: Context, nodeId: number, fh: number, owner: bigint, type: number, sleep: boolean): MaybePromise<number>;

  /** SYNCFS: flush whatever backs the filesystem. Valid replies: 0 or -errno. */
  syncfs?(ctx: Context, nodeId: number): MaybePromise<number>;
}


/**
 * A DirTarget over ordinary buffers, with the getdents64 records walked in JS: for tests and for using a
 * FileSystem without a core (the server's target does the same walk and encoding in the core). `entries()`
 * decodes what was appended.
 */
export class BufferDirTarget implements DirTarget {
  static readonly RAW_SIZE = 64 * 1024;
  readonly raw = new ArrayBuffer(BufferDirTarget.RAW_SIZE);
  readonly out: ArrayBuffer;
  readonly attr: AttrTarget;
  used = 0;
  private readonly rawView = new DataView(this.raw);
  private readonly outView: DataView;
  private end = 0;
  private pos = 0;
  private cur = -1;
  private lastDirent = -1;

  constructor(readonly size: number, readonly plus: boolean, attr?: AttrTarget) {
    this.out = new ArrayBuffer(size);
    this.outView = new DataView(this.out);
    this.attr = attr ?? AttrTarget.standalone();
  }

  fill(fd: number): number {
    const len = Math.min(BufferDirTarget.RAW_SIZE, Math.max(1024, this.plus ? this.size >>> 2 : this.size));
    const n = native.getdents64(fd, this.raw, 0, len);
    if (n > 0) {
      this.end = n;
      this.pos = 0;
      this.cur = -1;
    }
    return n;
  }

  next(): number {
    if (this.pos >= this.end) return 0;
    if (this.end - this.pos < 20) return -1;
    const reclen = this.rawView.getUint16(this.pos + 16, true);
    if (reclen < 20 || this.pos + reclen > this.end) return -1;
    this.cur = this.pos;
    this.pos += reclen;
    return 1;
  }

  private nameBytes(): Uint8Array {
    const start = this.cur + 19;
    const bytes = new Uint8Array(this.raw, start, this.pos - start);
    const nul = bytes.indexOf(0);
    return nul < 0 ? bytes : bytes.subarray(0, nul);
  }

  name(): string {
    const b = this.nameBytes();
    return nameOf(b, 0, b.length);
  }

  nameMemory(): ArrayBuffer {
    return this.raw;
  }

  nameOffset(): number {
    return this.cur + 19;
  }

  nameLength(): number {
    return this.nameBytes().length;
  }

  isDotOrDotDot(): boolean {
    const b = this.nameBytes();
    return (b.length === 1 && b[0] === 0x2e) || (b.length === 2 && b[0] === 0x2e && b[1] === 0x2e);
  }

  private append(ino: bigint, cookie: bigint, type: number, name: Uint8Array, entry: Entry | null): boolean {
    const head = this.plus ? 128 : 0;
    const rec = (head + 24 + name.length + 7) & ~7;
    if (this.used + rec > this.size) return false;
    const v = this.outView;
    const o = this.used;
    new Uint8Array(this.out, o, rec).fill(0);
    if (this.plus && entry !== null) {
      // fuse_entry_out: nodeid, generation, then (here) only ino/size/mode of the attributes, for tests.
      v.setBigUint64(o, BigInt(entry.nodeId), true);
      v.setBigUint64(o + 8, BigInt(entry.generation), true);
      v.setBigUint64(o + 40, this.attr.ino, true);
      v.setBigUint64(o + 48, BigInt(this.attr.size), true);
      v.setUint32(o + 100, this.attr.mode, true);
      v.setUint32(o + 124, entry.attrFlags ?? 0, true);
    }
    const d = o + head;
    v.setBigUint64(d, ino, true);
    v.setBigUint64(d + 8, cookie, true);
    v.setUint32(d + 16, name.length, true);
    v.setUint32(d + 20, type, true);
    new Uint8Array(this.out, d + 24, name.length).set(name);
    this.lastDirent = d;
    this.used += rec;
    return true;
  }

  private current(): [bigint, bigint, number] {
    return [this.rawView.getBigUint64(this.cur, true), this.rawView.getBigUint64(this.cur + 8, true),
      this.rawView.getUint8(this.cur + 18)];
  }

  emit(): boolean {
    const [ino, off, type] = this.current();
    return this.append(ino, off, type, this.nameBytes(), null);
  }

  fitsPlus(): boolean {
    return this.used + ((128 + 24 + this.nameBytes().length + 7) & ~7) <= this.size;
  }

  emitPlus(nodeId: number, generation: number, attrFlags = 0): boolean {
    const [ino, off, type] = this.current();
    return this.append(ino, off, type, this.nameBytes(), nodeId === 0 ? null : { nodeId, generation, attrFlags });
  }

  lastCookie(): bigint | null {
    return this.lastDirent < 0 ? null : this.outView.getBigUint64(this.lastDirent + 8, true);
  }

  add(ino: number, cookie: bigint, type: number, name: string, entry?: Entry): boolean {
    return this.append(BigInt(ino), cookie, type, bytesOfName(name), entry ?? null);
  }

  /** Decodes the appended records. */
  entries(): Array<{ name: string; ino: bigint; cookie: bigint; type: number; nodeId: number; attrFlags: number }> {
    const out = [];
    const v = this.outView;
    const head = this.plus ? 128 : 0;
    for (let o = 0; o < this.used;) {
      const d = o + head;
      const namelen = v.getUint32(d + 16, true);
      out.push({
        name: new TextDecoder().decode(new Uint8Array(this.out, d + 24, namelen)), // as text, for test output
        ino: v.getBigUint64(d, true), cookie: v.getBigUint64(d + 8, true), type: v.getUint32(d + 20, true),
        nodeId: this.plus ? Number(v.getBigUint64(o, true)) : 0,
        attrFlags: this.plus ? v.getUint32(o + 124, true) : 0,
      });
      o += (head + 24 + namelen + 7) & ~7;
    }
    return out;
  }
}

/**
 * FsGuard: the FileSystem the dispatch handlers call. It wraps a user's filesystem method by method so that the
 * handlers (ops/*.ts), written for synchronous results, serve asynchronous ones unchanged:
 *
 * - a result that is a thenable, inside `serving` (the server is running a handler for the current request):
 *   the guard keeps it in `pending` and throws PENDING; the server parks the request and, when the Promise has
 *   settled, makes the request current again and runs the same handler once more in `replaying` mode, where the
 *   first method call returns the settled value instead of calling the filesystem again;
 * - a result of the wrong shape, or a throw: logged once per opcode (through `report`) and answered -EIO;
 * - outside `serving` (undo paths, retries from timers, endSession) a thenable is returned as it is, with its
 *   rejection observed so it never becomes an unhandled rejection.
 *
 * The synchronous path allocates nothing: a `typeof` check per result, a `.then` probe only on objects.
 */
import type { FileSystem } from './filesystem.js';

/** The FileSystem as the dispatch handlers see it through the guard: every result already settled. */
export type SettledFileSystem = {
  [K in keyof FileSystem]?: NonNullable<FileSystem[K]> extends (...a: infer A) => infer R ? (...a: A) => Awaited<R> : never;
};

/** Thrown by a guarded method when the result is pending; caught by the server only. */
export const PENDING: unique symbol = Symbol('virtiofsd-ts pending request');

/** What a method's result must look like. */
type Shape = 'status' | 'count' | 'entry' | 'open' | 'create' | 'string' | 'statfs' | 'lseek' | 'lock' | 'void';

const SHAPES: Readonly<Record<keyof FileSystem, Shape>> = {
  init: 'status', destroy: 'void', lookup: 'entry', forget: 'void', getattr: 'status', setattr: 'status',
  readlink: 'string', symlink: 'entry', mknod: 'entry', mkdir: 'entry', unlink: 'status', rmdir: 'status',
  rename: 'status', link: 'entry', open: 'open', read: 'count', write: 'count', flush: 'status',
  release: 'status', fsync: 'status', opendir: 'open', readdir: 'status', readdirplus: 'status',
  releasedir: 'status', fsyncdir: 'status', statfs: 'statfs', access: 'status', create: 'create', tmpfile: 'create',
  getxattr: 'count', listxattr: 'count', setxattr: 'status', removexattr: 'status', fallocate: 'status',
  lseek: 'lseek', copyFileRange: 'count', getlk: 'lock', setlk: 'status', flock: 'status', syncfs: 'status',
};

/** Methods whose third argument is an open handle (the server keeps RELEASE of it until they settled). */
const FH_METHODS: ReadonlySet<string> = new Set(['read', 'write', 'flush', 'fsync', 'readdir', 'readdirplus',
  'fsyncdir', 'fallocate', 'lseek', 'copyFileRange', 'getlk', 'setlk', 'flock']);
/** Methods whose reply hands out a node id (the server keeps FORGETs arriving after them until they settled). */
const ENTRY_METHODS: ReadonlySet<string> = new Set(['lookup', 'mknod', 'mkdir', 'symlink', 'link', 'create',
  'tmpfile', 'readdirplus']);

const EIO = 5;

function isErrno(r: unknown): boolean {
  return typeof r === 'number' && Number.isInteger(r) && r < 0 && r >= -4095;
}

function isCount(r: unknown): boolean {
  return typeof r === 'number' && Number.isInteger(r) && r >= -4095 && r <= 0xffff_ffff;
}

function isId(v: unknown): boolean {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= Number.MAX_SAFE_INTEGER;
}

/** Why `r` is not a valid result of a method of this shape, or null. */
export function badResult(shape: Shape, r: unknown): string | null {
  if (shape === 'void') return null;
  if (typeof r === 'number') {
    if (shape === 'count') return isCount(r) ? null : `returned ${r}, not a count or a negative errno`;
    if (shape === 'status') return r === 0 || isErrno(r) ? null : `returned ${r}, not 0 or a negative errno`;
    return isErrno(r) ? null : `returned ${r}, not a negative errno`;
  }
  switch (shape) {
    case 'entry':
    case 'create': {
      const e = r as { nodeId?: unknown; generation?: unknown; fh?: unknown } | null;
      if (typeof e !== 'object' || e === null) return `returned ${typeof r}, not an entry or a negative errno`;
      if (!isId(e.nodeId)) return `returned an entry with nodeId ${String(e.nodeId)}`;
      if (!isId(e.generation)) return `returned an entry with generation ${String(e.generation)}`;
      if (shape === 'create' && !isId(e.fh)) return `returned a handle ${String(e.fh)}`;
      if (shape === 'create' && e.nodeId === 0) return 'returned a negative entry for a created file';
      return null;
    }
    case 'open': {
      const o = r as { fh?: unknown } | null;
      if (typeof o !== 'object' || o === null) return `returned ${typeof r}, not a handle or a negative errno`;
      return isId(o.fh) ? null : `returned a handle ${String(o.fh)}`;
    }
    case 'string':
      return typeof r === 'string' ? null : `returned ${typeof r}, not a string or a negative errno`;
    case 'statfs': {
      const st = r as Record<string, unknown> | null;
      if (typeof st !== 'object' || st === null) return `returned ${typeof r}, not statfs numbers or a negative errno`;
      for (const k of ['blocks', 'bfree', 'bavail', 'files', 'ffree', 'bsize', 'namelen', 'frsize']) {
        if (!isId(st[k])) return `returned statfs.${k} = ${String(st[k])}`;
      }
      return null;
    }
    case 'lseek':
      return typeof r === 'bigint' && r >= 0n ? null : `returned ${typeof r}, not an offset or a negative errno`;
    case 'lock': {
      const l = r as { start?: unknown; end?: unknown; type?: unknown; pid?: unknown } | null;
      if (typeof l !== 'object' || l === null) return `returned ${typeof r}, not a lock or a negative errno`;
      return typeof l.start === 'bigint' && typeof l.end === 'bigint' && isId(l.type) && isId(l.pid) ? null
        : 'returned a lock with missing fields';
    }
    default:
      return `returned ${typeof r}, not a number`;
  }
}

/** What the guard asks of the server. */
export interface GuardHost {
  /** A method failed (threw, rejected, bad result): log once per opcode. */
  report(method: string, problem: string, err?: unknown): void;
  /** FORGET to deliver now (true) or kept by the server until pending entry replies went out (false). */
  forgetNow(nodeId: number, nlookup: number): boolean;
  /** RELEASE/RELEASEDIR of `fh`: a Promise to wait for when requests on it are pending, else null. */
  handleIdle(fh: number): PromiseLike<void> | null;
}

type AnyFn = (...a: unknown[]) => unknown;

export class FsGuard {
  /** The guarded filesystem: the same methods as the target's (a missing one stays missing). */
  readonly fs: SettledFileSystem;
  /** Set by the server while a handler serves the current request. */
  serving = false;
  /** Set by the server to answer the next method call with `replayValue`. */
  replaying = false;
  replayValue: unknown = undefined;
  /** The thenable that made a guarded method throw PENDING, its method and open handle. */
  pending: PromiseLike<unknown> | null = null;
  pendingMethod = '';
  pendingFh: number | undefined = undefined;

  constructor(readonly target: FileSystem, private readonly host: GuardHost) {
    const methods: [string, AnyFn][] = [];
    for (const name of Object.keys(SHAPES) as Array<keyof FileSystem>) {
      const fn = (target as Record<string, unknown>)[name];
      if (typeof fn === 'function') methods.push([name, this.wrap(name, SHAPES[name], fn as AnyFn)]);
    }
    // Made in one go: built by a store per method, the object ended up in V8's dictionary mode, and every
    // `fs.method` on the request path was a hash lookup (measured: keyed megamorphic loads in serveCurrent).
    this.fs = Object.fromEntries(methods) as SettledFileSystem;
  }

  /** The shape-check of a settled value: the value, or -EIO (reported) for a bad one. */
  settled(method: string, r: unknown): unknown {
    const shape = SHAPES[method as keyof FileSystem];
    const bad = shape === undefined ? null : badResult(shape, r);
    if (bad === null) return r;
    this.host.report(method, bad);
    return shape === 'void' ? undefined : -EIO;
  }

  /** Whether a method's reply hands out node ids. */
  static isEntryMethod(method: string): boolean {
    return ENTRY_METHODS.has(method);
  }

  private wrap(name: string, shape: Shape, fn: AnyFn): AnyFn {
    const target = this.target;
    const host = this.host;
    const fhAt2 = FH_METHODS.has(name);
    const isForget = name === 'forget';
    const isRelease = name === 'release' || name === 'releasedir';
    // Fixed arity (the widest method takes 9): no rest array per call.
    return (a?: unknown, b?: unknown, c?: unknown, d?: unknown, e?: unknown, f?: unknown, g?: unknown,
      h?: unknown, i?: unknown): unknown => {
      if (this.replaying) {
        this.replaying = false;
        return this.replayValue;
      }
      if (isForget && !host.forgetNow(a as number, b as number)) return undefined;
      let r: unknown;
      try {
        const idle = isRelease ? host.handleIdle(c as number) : null;
        r = idle === null ? fn.call(target, a, b, c, d, e, f, g, h, i)
          : idle.then(() => fn.call(target, a, b, c, d, e, f, g, h, i));
      } catch (err) {
        host.report(name, 'threw', err);
        return shape === 'void' ? undefined : -EIO;
      }
      if (typeof r === 'object' && r !== null && typeof (r as PromiseLike<unknown>).then === 'function') {
        const p = r as PromiseLike<unknown>;
        // FORGET has no reply to wait for: its Promise is only observed.
        if (this.serving && !isForget) {
          this.pending = p;
          this.pendingMethod = name;
          this.pendingFh = fhAt2 ? (c as number) : undefined;
          throw PENDING;
        }
        p.then(undefined, (err: unknown) => host.report(name, 'rejected', err));
        return p;
      }
      const bad = badResult(shape, r);
      if (bad === null) return r;
      host.report(name, bad);
      return shape === 'void' ? undefined : -EIO;
    };
  }
}

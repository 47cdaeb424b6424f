/**
 * A durability oracle: a FUSE filesystem, served by our own /dev/fuse transport in a process of its own, that
 * passes everything through to a backing directory (PassthroughFs) and records every FSYNC, FSYNCDIR and FLUSH it
 * receives, with what the file held at that moment (size and SHA-256).
 *
 * Used as the shared directory of the code under test: when that code fsyncs a file, the host kernel forwards
 * it to this filesystem as FUSE_FSYNC (fdatasync as FUSE_FSYNC with FUSE_FSYNC_FDATASYNC), so a test can tell a
 * real fsync from none at all, which a plain "the bytes are in the file afterwards" check cannot: the page cache
 * holds them either way.
 *
 *   node dist/test/util/recording-fs.js <backing dir> <mountpoint> <record file>
 *
 * Each record is one JSON line appended (synchronously) to the record file before the reply is written, so when
 * the caller's fsync(2) returns, its record is there. Prints `mounted` when the mount is up; SIGTERM unmounts.
 * The test side is test/util/recording-mount.ts.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Core } from '../../host/core.js';
import type { Context, Entry, FileSystem } from '../../host/fuse/filesystem.js';
import { FuseServer } from '../../host/fuse/server.js';
import { setLogLevel } from '../../host/log.js';
import { PassthroughFs } from '../../host/passthrough/passthrough-fs.js';
import { DevFuseSession, devFuseMaxPages } from '../../host/transport/dev-fuse.js';

export interface SyncRecord {
  op: 'fsync' | 'fsyncdir' | 'flush';
  /** Path relative to the share ('' for its root; '?' when the node's name was never seen). */
  path: string;
  datasync?: boolean;
  /** What the backing filesystem answered (0 or -errno). */
  result: number;
  /** The file as it was when the call arrived (regular files only). */
  size?: number;
  sha256?: string;
}

/** `inner` with FSYNC, FSYNCDIR and FLUSH recorded to `recordFile`; node names are followed to name the records. */
export function recordingFs(inner: PassthroughFs, backing: string, recordFile: string): FileSystem {
  const paths = new Map<number, string>([[1, '']]);
  const named = (parent: number, name: string, r: Entry | number): void => {
    if (typeof r === 'object') paths.set(r.nodeId, path.join(paths.get(parent) ?? '?', name));
  };
  const snapshot = (rel: string): Pick<SyncRecord, 'size' | 'sha256'> => {
    try {
      const bytes = fs.readFileSync(path.join(backing, rel));
      return { size: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') };
    } catch {
      return {};
    }
  };
  const record = (r: SyncRecord): void => fs.appendFileSync(recordFile, `${JSON.stringify(r)}\n`);
  const wrapped: Partial<FileSystem> = {
    lookup: (ctx, parent, name, attr) => { const r = inner.lookup(ctx, parent, name, attr); named(parent, name, r); return r; },
    create: (ctx, parent, name, mode, flags, umask, attr) => {
      const r = inner.create(ctx, parent, name, mode, flags, umask, attr);
      named(parent, name, r);
      return r;
    },
    mkdir: (ctx, parent, name, mode, umask, attr) => {
      const r = inner.mkdir(ctx, parent, name, mode, umask, attr);
      named(parent, name, r);
      return r;
    },
    rename: (ctx, parent, name, newParent, newName, flags) => {
      const r = inner.rename(ctx, parent, name, newParent, newName, flags);
      const from = path.join(paths.get(parent) ?? '?', name);
      if (r === 0) for (const [id, p] of paths) if (p === from) paths.set(id, path.join(paths.get(newParent) ?? '?', newName));
      return r;
    },
    fsync: (ctx: Context, nodeId, fh, datasync) => {
      const rel = paths.get(nodeId) ?? '?';
      const before = snapshot(rel);
      const result = inner.fsync(ctx, nodeId, fh, datasync) as number; // no thread pool here: synchronous
      record({ op: 'fsync', path: rel, datasync, result, ...before });
      return result;
    },
    fsyncdir: (ctx: Context, nodeId, fh, datasync) => {
      const result = inner.fsyncdir(ctx, nodeId, fh, datasync) as number;
      record({ op: 'fsyncdir', path: paths.get(nodeId) ?? '?', datasync, result });
      return result;
    },
    flush: (ctx: Context, nodeId, fh, owner) => {
      const rel = paths.get(nodeId) ?? '?';
      const result = inner.flush(ctx, nodeId, fh, owner);
      record({ op: 'flush', path: rel, result, ...snapshot(rel) });
      return result;
    },
  };
  return new Proxy(inner as FileSystem, {
    get(target, key) {
      if (Object.prototype.hasOwnProperty.call(wrapped, key)) return (wrapped as Record<string | symbol, unknown>)[key];
      const v = Reflect.get(target, key, target);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
}

async function main(): Promise<void> {
  const [backing, mountpoint, recordFile] = process.argv.slice(2);
  if (!backing || !mountpoint || !recordFile) {
    console.error('usage: recording-fs.js <backing dir> <mountpoint> <record file>');
    process.exit(2);
  }
  setLogLevel('error');
  const pfs = new PassthroughFs({ root: backing });
  const core = await Core.create();
  // cache=never: every write reaches the backing file at once, so a record's snapshot is what was written.
  const server = new FuseServer(recordingFs(pfs, backing, recordFile), core, { cache: 'never', maxPages: devFuseMaxPages() });
  const session = DevFuseSession.mount(core, server, { mountpoint, sharedDir: backing, subtype: 'recording-fs' });
  const stop = (): void => { void session.close().then(() => process.exit(0)); };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  session.on('close', () => process.exit(0));
  console.log('mounted');
}

if (process.argv[1] && path.resolve(process.argv[1]) === new URL(import.meta.url).pathname) await main();

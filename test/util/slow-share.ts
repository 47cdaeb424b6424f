/**
 * A host directory whose file `slow` blocks its readers: a MemFs served by this process over /dev/fuse (serve with
 * a mountpoint), whose READs of `slow` wait for the test (`releaseOne`, `releaseAll`) or, for benchmarks, a fixed
 * delay. A daemon sharing the mountpoint then has host reads that sleep for as long as we say, while everything
 * else in the directory answers at once. This process must touch the mount only asynchronously (it serves it). Used by test/blocking-io.test.ts and benchmarks/blocking.ts.
 */
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { MemFs } from '../../examples/memfs.js';
import { serve, type FileSystemDaemon } from '../../host/daemon.js';
import type { Context, DataTarget, FileSystem, MaybePromise } from '../../host/fuse/filesystem.js';
import { detach } from './dev-fuse-mount.js';

/** MemFs seen as a FileSystem (its read may then be overridden with an asynchronous one). */
const AsyncableMemFs = MemFs as unknown as new () => FileSystem & { seed(dir: string): void };

/** Bytes of `slow` (a recognisable pattern: byte i is (i * 7 + (i >> 12)) & 0xff). */
export const SLOW_SIZE = 256 * 1024;

export function slowContent(): Uint8Array {
  const b = new Uint8Array(SLOW_SIZE);
  for (let i = 0; i < b.length; i++) b[i] = (i * 7 + (i >> 12)) & 0xff;
  return b;
}

class SlowFs extends AsyncableMemFs {
  slowNode = -1;
  /** READs of `slow` received, and those not answered yet. */
  seen = 0;
  readonly held: Array<() => void> = [];
  /** Benchmarks: answer every READ of `slow` after this many ms instead of waiting to be released. */
  delayMs: number | null = null;

  override read(ctx: Context, nodeId: number, fh: number, offset: number, target: DataTarget): MaybePromise<number> {
    if (nodeId !== this.slowNode) return super.read!(ctx, nodeId, fh, offset, target);
    this.seen++;
    const answer = (resolve: (n: MaybePromise<number>) => void) => () => resolve(super.read!(ctx, nodeId, fh, offset, target));
    if (this.delayMs !== null) return new Promise((resolve) => setTimeout(answer(resolve), this.delayMs!));
    return new Promise((resolve) => this.held.push(answer(resolve)));
  }
}

export interface SlowShare {
  /** The mountpoint: share it. */
  readonly dir: string;
  readonly fs: SlowFs;
  releaseOne(): void;
  releaseAll(): void;
  /** From now on every READ is answered at once (and those held now are released). */
  open(): void;
  close(): Promise<void>;
}

/** Mounts the slow directory (needs root and /dev/fuse: check missingDevFuse first). Contains `slow` and `fast`. */
export async function mountSlowShare(): Promise<SlowShare> {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'vfsd-slow-'));
  const seed = path.join(base, 'seed');
  const dir = path.join(base, 'mnt');
  fs.mkdirSync(seed);
  fs.mkdirSync(dir);
  fs.writeFileSync(path.join(seed, 'slow'), slowContent());
  fs.writeFileSync(path.join(seed, 'fast'), 'fast');
  const slowFs = new SlowFs();
  slowFs.seed(seed);
  let daemon: FileSystemDaemon;
  try {
    // cache never: every read of `slow` reaches us (no page cache of the mount answers it).
    daemon = await serve(slowFs, { mountpoint: dir, cache: 'never' });
  } catch (e) {
    fs.rmSync(base, { recursive: true, force: true });
    throw e;
  }
  // Never a synchronous call on the mount from this thread: it is the thread that answers it.
  slowFs.slowNode = (await fsp.stat(path.join(dir, 'slow'))).ino;
  const share: SlowShare = {
    dir, fs: slowFs,
    releaseOne: () => slowFs.held.shift()?.(),
    releaseAll: () => { for (const go of slowFs.held.splice(0)) go(); },
    open: () => {
      slowFs.delayMs = 0;
      for (const go of slowFs.held.splice(0)) go();
    },
    async close() {
      share.open();
      await daemon.close();
      detach(dir);
      fs.rmSync(base, { recursive: true, force: true });
    },
  };
  return share;
}

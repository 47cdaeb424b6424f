/**
 * Launches an example filesystem (examples/) as the vhost-user daemon for the guest tests, through the public
 * `serve()` as a consumer would:
 *
 *   node dist/test/e2e/example-daemon.js --example=memfs --socket-path=S --seed=DIR [--cache=MODE]
 *   node dist/test/e2e/example-daemon.js --example=tarfs --socket-path=S --archive=T.tar --gate=PATH [--cache=MODE]
 *
 * `--gate=PATH` (tarfs) holds READs of that member pending until the guest opens the gate, so a test can show
 * the daemon answering other requests meanwhile by events, not timing: while a gated READ waits, a LOOKUP of
 * `/.gate-pending` finds an entry (else ENOENT); a LOOKUP of `/.gate-open` opens the gate (and answers ENOENT).
 * The daemon prints `GATE pending` when a READ starts waiting and, when the gate opens, `GATE open` with the
 * LOOKUP/GETATTR counts answered while it waited. A gate left closed opens by itself after 60 s (no hangs).
 */
import { serve, type AttrTarget, type CacheMode, type Context, type DataTarget, type Entry, type FileSystem } from '../../host/index.js';
import { MemFs, exampleArgs } from '../../examples/memfs.js';
import { TarFs } from '../../examples/tarfs.js';

const ROOT = 1;

/** Counts of LOOKUP + GETATTR answered so far. */
type Counter = () => { lookup: number; getattr: number };

/** Wraps a TarFs: READs of `gated` wait for the gate; two control names in the root (see the module comment). */
function gated(inner: TarFs, gatedPath: string, counts: () => Counter): FileSystem {
  let gatedNode = -1;
  let waiting: Array<() => void> = [];
  let opened = false;
  let before = { lookup: 0, getattr: 0 };
  const open = (why: string): void => {
    if (opened) return;
    opened = true;
    const now = counts()();
    console.log(`GATE open (${why}) lookup=${now.lookup - before.lookup} getattr=${now.getattr - before.getattr} ` +
      `waiting=${waiting.length}`);
    for (const w of waiting.splice(0)) w();
  };
  const fs: FileSystem = {
    lookup: (ctx: Context, parent: number, name: string, attr: AttrTarget): Entry | number => {
      if (parent === ROOT && name === '.gate-open') {
        open('guest');
        return -2;
      }
      if (parent === ROOT && name === '.gate-pending') {
        if (waiting.length === 0 || gatedNode < 0) return -2;
        const r = inner.getattr(ctx, gatedNode, undefined, attr);
        return r < 0 ? r : { nodeId: gatedNode, generation: 0 };
      }
      return inner.lookup(ctx, parent, name, attr);
    },
    getattr: (ctx, nodeId, fh, attr) => inner.getattr(ctx, nodeId, fh, attr),
    readlink: (ctx, nodeId) => inner.readlink(ctx, nodeId),
    open: (ctx, nodeId) => inner.open(ctx, nodeId),
    read: async (ctx: Context, nodeId: number, fh: number, offset: number, target: DataTarget): Promise<number> => {
      if (nodeId === gatedNode && !opened) {
        await new Promise<void>((resolve) => {
          if (waiting.length === 0) {
            before = counts()();
            console.log('GATE pending');
            setTimeout(() => open('timeout'), 60_000).unref();
          }
          waiting.push(resolve);
        });
      }
      return inner.read(ctx, nodeId, fh, offset, target);
    },
    release: () => inner.release(),
    opendir: (ctx, nodeId) => inner.opendir(ctx, nodeId),
    readdir: (ctx, nodeId, fh, cookie, target) => inner.readdir(ctx, nodeId, fh, cookie, target),
    releasedir: () => inner.releasedir(),
    statfs: () => inner.statfs(),
  };
  // Resolve the gated member's node id once (a LOOKUP walk from the root, as the guest does).
  const attr = { set: () => undefined } as unknown as AttrTarget;
  let node = ROOT;
  for (const part of gatedPath.split('/').filter((p) => p !== '')) {
    const e = inner.lookup({ uid: 0, gid: 0, pid: 0 }, node, part, attr);
    if (typeof e === 'number') throw new Error(`--gate=${gatedPath}: not in the archive`);
    node = e.nodeId;
  }
  gatedNode = node;
  return fs;
}

async function main(): Promise<void> {
  const args = exampleArgs(process.argv.slice(2));
  const example = args.get('example');
  const socketPath = args.get('socket-path');
  if (socketPath === undefined) throw new Error('--socket-path is required');
  const cache = (args.get('cache') ?? 'auto') as CacheMode;
  let served: FileSystem;
  let counter: Counter = () => ({ lookup: 0, getattr: 0 });
  if (example === 'memfs') {
    const m = new MemFs();
    if (args.has('seed')) m.seed(args.get('seed')!);
    served = m;
  } else if (example === 'tarfs') {
    const t = await TarFs.open(args.get('archive') ?? '');
    served = args.has('gate') ? gated(t, args.get('gate')!, () => counter) : t;
  } else {
    throw new Error('--example=memfs|tarfs');
  }
  const daemon = await serve(served, { socketPath, cache, readonly: example === 'tarfs', logLevel: 'warn' });
  counter = () => {
    const s = daemon.stats();
    return { lookup: s.find((x) => x.name === 'LOOKUP')?.count ?? 0, getattr: s.find((x) => x.name === 'GETATTR')?.count ?? 0 };
  };
  daemon.on('connect', () => console.log('EVENT connect'));
  daemon.on('disconnect', () => console.log('EVENT disconnect'));
  const stop = (): void => {
    console.log(`STATS\n${daemon.formatStats()}`);
    void daemon.close();
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  await daemon.closed;
}

main().catch((e: unknown) => {
  console.error(`example-daemon: ${e instanceof Error ? e.stack : String(e)}`);
  process.exit(1);
});

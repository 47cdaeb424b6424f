/**
 * The library API end to end on this host, faster than a guest boot: `serve()` of a custom FileSystem (the memfs
 * example, wrapped with gates that hold chosen methods pending) over vhost-user, driven by the independent FUSE
 * client (host/frontend/fuse-client.ts), and over a /dev/fuse mount driven by node:fs.
 *
 * What a Promise-returning method must do: a pending READ does not hold up GETATTR/LOOKUP of other nodes; it is
 * answered in full (payload bytes, entry bodies, directory listings) when it settles; a throw, a rejection or a
 * result of the wrong shape answers EIO and is logged once per opcode; FORGET after a pending LOOKUP and RELEASE
 * after a pending READ on the same handle reach the filesystem only once those went out; a disconnect drops what
 * is pending without touching the gone guest.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import {
  serve, Errno, FileType, setLogger, setLogLevel, type AttrTarget, type Context, type DataSource, type DataTarget,
  type DirTarget, type Entry, type FileSystem, type FileSystemDaemon, type MaybePromise, type OperationStats,
} from '../host/index.js';
import { MemFs } from '../examples/memfs.js';
import { FuseClient, FuseError } from '../host/frontend/fuse-client.js';
import { FUSE_ROOT_ID } from '../host/fuse/protocol.js';
import { native } from '../host/native-loader.js';
import { detach } from './util/dev-fuse-mount.js';
import { missingDevFuse, skipIf } from './util/prereq.js';
import { sleep, waitFor } from './util/wait.js';
import { evalArgs, runtimeArgs } from './util/runtime.js';

const DIST = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'library-test-'));
process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));
let seq = 0;

const logged: string[] = [];
setLogLevel('error');
setLogger((level, message) => logged.push(`${level} ${message}`));

/** A Promise that resolves when `open()` is called; `waiting` tells whether someone waits on it. */
class Gate {
  private opened = false;
  private waiters: Array<() => void> = [];
  waiting = 0;
  wait(): Promise<void> {
    if (this.opened) return Promise.resolve();
    this.waiting++;
    return new Promise((resolve) => this.waiters.push(() => { this.waiting--; resolve(); }));
  }
  open(): void {
    this.opened = true;
    for (const w of this.waiters.splice(0)) w();
  }
}

/** MemFs seen as a FileSystem (its methods may then be overridden with asynchronous ones). */
const AsyncableMemFs = MemFs as unknown as new () => FileSystem & { seed(dir: string): void };

/** memfs with an event log and gates: methods named in `gates` wait for their gate (then run as memfs does). */
class GatedFs extends AsyncableMemFs {
  readonly events: string[] = [];
  readonly gates = new Map<string, Gate>();
  gate(name: string): Gate {
    const g = new Gate();
    this.gates.set(name, g);
    return g;
  }

  override lookup(ctx: Context, parent: number, name: string, attr: AttrTarget): MaybePromise<Entry | number> {
    const g = this.gates.get(`lookup:${name}`);
    if (g === undefined) return super.lookup!(ctx, parent, name, attr);
    return g.wait().then(() => {
      const r = super.lookup!(ctx, parent, name, attr); // attributes written after the await
      this.events.push(`lookup ${name} done`);
      return r;
    });
  }

  override forget(nodeId: number, nlookup: number): void {
    this.events.push(`forget ${nodeId} ${nlookup}`);
    super.forget!(nodeId, nlookup);
  }

  override read(ctx: Context, nodeId: number, fh: number, offset: number, target: DataTarget): MaybePromise<number> {
    const g = this.gates.get(`read:${nodeId}`);
    if (g === undefined) return super.read!(ctx, nodeId, fh, offset, target);
    this.events.push(`read ${nodeId} pending`);
    return g.wait().then(() => {
      this.events.push(`read ${nodeId} done`);
      return super.read!(ctx, nodeId, fh, offset, target); // fromBytes after the await
    });
  }

  override write(ctx: Context, nodeId: number, fh: number, offset: number, source: DataSource): MaybePromise<number> {
    const g = this.gates.get(`write:${nodeId}`);
    if (g === undefined) return super.write!(ctx, nodeId, fh, offset, source, 0);
    return g.wait().then(() => super.write!(ctx, nodeId, fh, offset, source, 0)); // toBytes after the await
  }

  override release(ctx: Context, nodeId: number, fh: number): MaybePromise<number> {
    this.events.push(`release ${nodeId}`);
    return super.release!(ctx, nodeId, fh, 0, 0);
  }

  override readdir(ctx: Context, nodeId: number, fh: number, cookie: bigint, target: DirTarget): MaybePromise<number> {
    const g = this.gates.get('readdir');
    if (g === undefined) return super.readdir!(ctx, nodeId, fh, cookie, target);
    // One entry before the await, the rest after it.
    const dot = cookie === 0n ? target.add(nodeId, 1n, 4, '.') : true;
    return g.wait().then(() => (dot ? super.readdir!(ctx, nodeId, fh, cookie === 0n ? 1n : cookie, target) : 0));
  }

  override destroy(): MaybePromise<void> {
    this.events.push('destroy');
    return super.destroy!();
  }
}

const enc = new TextEncoder();
const dec = new TextDecoder();

async function setup(fsImpl: GatedFs): Promise<{ daemon: FileSystemDaemon<GatedFs>; fc: FuseClient; socket: string }> {
  const socket = path.join(tmp, `lib${seq++}.sock`);
  const daemon = await serve(fsImpl, { socketPath: socket, cache: 'never' });
  const fc = await FuseClient.connect(socket, { depth: 16, timeoutMs: 8000 });
  await fc.init();
  return { daemon, fc, socket };
}

function seeded(): GatedFs {
  const src = path.join(tmp, `seed${seq++}`);
  fs.mkdirSync(path.join(src, 'dir'), { recursive: true });
  fs.writeFileSync(path.join(src, 'slow.txt'), 'slow contents '.repeat(1000));
  fs.writeFileSync(path.join(src, 'other.txt'), 'other');
  fs.writeFileSync(path.join(src, 'dir', 'a'), 'A');
  fs.writeFileSync(path.join(src, 'dir', 'b'), 'BB');
  const g = new GatedFs();
  g.seed(src);
  return g;
}

test('a pending READ is answered in full later; GETATTR and LOOKUP of other files are answered meanwhile', async () => {
  const g = seeded();
  const { daemon, fc } = await setup(g);
  try {
    const slow = await fc.lookup(FUSE_ROOT_ID, 'slow.txt');
    const other = await fc.lookup(FUSE_ROOT_ID, 'other.txt');
    const gate = g.gate(`read:${slow.nodeid}`);
    const h = await fc.open(slow.nodeid, native.constants.O_RDONLY);
    let readDone = false;
    const read = fc.read(slow.nodeid, h.fh, 0, 65536).then((b) => { readDone = true; return b; });
    await waitFor(() => daemon.pendingRequests === 1, 'the READ to be pending');
    // Served while the READ is pending (cache=never: every one reaches the filesystem).
    const a = await fc.getattr(other.nodeid);
    const e = await fc.lookup(FUSE_ROOT_ID, 'other.txt');
    assert.is(a.attr.size, 5);
    assert.is(e.nodeid, other.nodeid);
    assert.not.ok(readDone, 'the READ is still pending after GETATTR/LOOKUP of another file were answered');
    assert.is(daemon.pendingRequests, 1);
    gate.open();
    const bytes = await read;
    assert.is(dec.decode(bytes), 'slow contents '.repeat(1000));
    assert.is(daemon.pendingRequests, 0);
    const st = daemon.stats().find((s) => s.name === 'READ')!;
    assert.is(st.async, 1);
    assert.is(st.pending, 0);
    assert.ok(st.latency.reduce((x, y) => x + y, 0) === st.count);
    assert.ok(daemon.stats().find((s) => s.name === 'GETATTR')!.count >= 1);
    assert.match(daemon.formatStats(), /READ\s+\d+/);
  } finally {
    fc.close();
    await daemon.close();
  }
});

test('async LOOKUP (attributes written after the await), WRITE (payload read after it) and READDIR', async () => {
  const g = seeded();
  const { daemon, fc } = await setup(g);
  try {
    g.gate('lookup:other.txt').open(); // already open: still a Promise, answered from a later job
    const e = await fc.lookup(FUSE_ROOT_ID, 'other.txt');
    assert.is(e.attr.size, 5);
    assert.is(e.attr.mode & FileType.S_IFMT, FileType.S_IFREG);

    const h = await fc.open(e.nodeid, native.constants.O_RDWR);
    const wg = g.gate(`write:${e.nodeid}`);
    const w = fc.write(e.nodeid, h.fh, 5, enc.encode(' and more'));
    await waitFor(() => daemon.pendingRequests === 1, 'the WRITE to be pending');
    wg.open();
    assert.is(await w, 9);
    assert.is(dec.decode(await fc.read(e.nodeid, h.fh, 0, 100)), 'other and more');

    const dir = await fc.lookup(FUSE_ROOT_ID, 'dir');
    const dh = await fc.opendir(dir.nodeid);
    const rg = g.gate('readdir');
    const listing = fc.readdir(dir.nodeid, dh.fh, 0);
    await waitFor(() => daemon.pendingRequests === 1, 'the READDIR to be pending');
    rg.open();
    assert.equal((await listing).map((d) => d.name), ['.', '..', 'a', 'b']);
  } finally {
    fc.close();
    await daemon.close();
  }
});

test('a throw, a rejection and a result of the wrong shape answer EIO, logged once per opcode', async () => {
  const g = seeded();
  g.getattr = (_c, nodeId) => { if (nodeId !== FUSE_ROOT_ID) throw new Error('boom'); return 0; };
  g.statfs = () => Promise.reject(new Error('backend down'));
  const origLookup = g.lookup.bind(g);
  g.lookup = (c, p, name, attr) => (name === 'bad' ? 2 : origLookup(c, p, name, attr)); // a positive "errno"
  const { daemon, fc } = await setup(g);
  const eio = async (p: Promise<unknown>): Promise<void> => {
    try {
      await p;
      assert.unreachable('expected EIO');
    } catch (e) {
      assert.instance(e, FuseError);
      assert.is((e as FuseError).errno, Errno.EIO);
    }
  };
  try {
    logged.length = 0;
    const other = await fc.lookup(FUSE_ROOT_ID, 'other.txt');
    for (let i = 0; i < 3; i++) {
      await eio(fc.getattr(other.nodeid));
      await eio(fc.statfs());
      await eio(fc.lookup(FUSE_ROOT_ID, 'bad'));
    }
    const lines = (re: RegExp): number => logged.filter((l) => re.test(l)).length;
    assert.is(lines(/GETATTR: FileSystem.getattr threw/), 1, logged.join('\n'));
    assert.is(lines(/STATFS: FileSystem.statfs rejected/), 1, logged.join('\n'));
    assert.is(lines(/LOOKUP: FileSystem.lookup returned 2, not a negative errno/), 1, logged.join('\n'));
    assert.ok(logged.some((l) => l.includes('backend down')), 'the rejection reason is logged');
    // The daemon goes on serving.
    assert.is((await fc.lookup(FUSE_ROOT_ID, 'dir')).attr.mode & FileType.S_IFMT, FileType.S_IFDIR);
  } finally {
    fc.close();
    await daemon.close();
  }
});

test('FORGET after a pending LOOKUP and RELEASE after a pending READ wait for them', async () => {
  const g = seeded();
  const { daemon, fc } = await setup(g);
  try {
    const first = await fc.lookup(FUSE_ROOT_ID, 'other.txt');
    const lg = g.gate('lookup:other.txt');
    const pending = fc.lookup(FUSE_ROOT_ID, 'other.txt');
    await waitFor(() => daemon.pendingRequests === 1, 'the LOOKUP to be pending');
    await fc.forget(first.nodeid, 1); // the guest drops the count of the first lookup
    await sleep(20);
    assert.not.ok(g.events.some((e) => e.startsWith('forget')), 'FORGET is held while the LOOKUP is pending');
    lg.open();
    const second = await pending;
    assert.is(second.nodeid, first.nodeid);
    await waitFor(() => g.events.includes(`forget ${first.nodeid} 1`), 'the held FORGET');
    assert.ok(g.events.indexOf('lookup other.txt done') < g.events.indexOf(`forget ${first.nodeid} 1`));

    const slow = await fc.lookup(FUSE_ROOT_ID, 'slow.txt');
    const h = await fc.open(slow.nodeid, native.constants.O_RDONLY);
    const rg = g.gate(`read:${slow.nodeid}`);
    const read = fc.read(slow.nodeid, h.fh, 0, 4096);
    await waitFor(() => daemon.pendingRequests === 1, 'the READ to be pending');
    const release = fc.release(slow.nodeid, h.fh);
    await sleep(20);
    assert.not.ok(g.events.includes(`release ${slow.nodeid}`), 'RELEASE is held while a READ of the handle is pending');
    rg.open();
    assert.is((await read).length, 4096);
    await release;
    assert.ok(g.events.indexOf(`read ${slow.nodeid} done`) < g.events.indexOf(`release ${slow.nodeid}`));
  } finally {
    fc.close();
    await daemon.close();
  }
});

test('a disconnect drops pending requests: their late results touch nothing, the next guest is served', async () => {
  const g = seeded();
  const { daemon, fc, socket } = await setup(g);
  const slow = await fc.lookup(FUSE_ROOT_ID, 'slow.txt');
  const h = await fc.open(slow.nodeid, native.constants.O_RDONLY);
  const rg = g.gate(`read:${slow.nodeid}`);
  const read = fc.read(slow.nodeid, h.fh, 0, 4096).catch((e: Error) => e);
  await waitFor(() => daemon.pendingRequests === 1, 'the READ to be pending');
  const gone = new Promise<void>((resolve) => daemon.once('disconnect', () => resolve()));
  fc.close();
  await gone;
  assert.is(daemon.pendingRequests, 0);
  assert.ok(g.events.includes('destroy'), 'the session ended: destroy');
  rg.open(); // the result arrives for a guest that is gone
  await sleep(20);
  assert.instance(await read, Error);
  const fc2 = await FuseClient.connect(socket, { depth: 8, timeoutMs: 5000 });
  try {
    await fc2.init();
    const e = await fc2.lookup(FUSE_ROOT_ID, 'other.txt');
    assert.is(e.attr.size, 5);
    assert.is(daemon.stats().find((s) => s.name === 'READ')!.pending, 0);
  } finally {
    fc2.close();
    await daemon.close();
  }
});

test('serve() takes an already-listening socket fd; logLevel off prints nothing', async () => {
  const socket = path.join(tmp, `fd${seq++}.sock`);
  const fd = native.unixListen(socket, 4);
  assert.ok(fd >= 0);
  const lines: string[] = [];
  const daemon = await serve(new MemFs(), { listenFd: fd, logLevel: 'off', logger: (l, m) => lines.push(`${l} ${m}`) });
  try {
    let connected = 0;
    daemon.on('connect', () => connected++);
    const fc = await FuseClient.connect(socket, { depth: 4, timeoutMs: 5000 });
    await fc.init();
    const st = await fc.statfs();
    assert.ok(st.blocks > 0);
    fc.close();
    assert.is(connected, 1);
    assert.equal(lines, [], 'nothing logged at level off');
  } finally {
    await daemon.close();
    setLogLevel('error');
    setLogger((level, message) => logged.push(`${level} ${message}`));
  }
});

test('the Errno and FileType tables match the host', () => {
  const e = native.constants.errno as Record<string, number>;
  for (const [k, v] of Object.entries(Errno)) if (e[k] !== undefined) assert.is(v, e[k], k);
  assert.is(FileType.S_IFMT, native.constants.S_IFMT);
});

test('VirtiofsDaemon with logLevel off prints nothing over a whole session; the CLI prints stats on SIGUSR1', async () => {
  const share = path.join(tmp, `share${seq++}`);
  fs.mkdirSync(share);
  fs.writeFileSync(path.join(share, 'f'), 'x');
  const socket = path.join(tmp, `off${seq++}.sock`);
  const script = `
    import { VirtiofsDaemon } from ${JSON.stringify(path.join(DIST, 'host', 'index.js'))};
    import { FuseClient } from ${JSON.stringify(path.join(DIST, 'host', 'frontend', 'fuse-client.js'))};
    const d = await VirtiofsDaemon.start({ socketPath: ${JSON.stringify(socket)}, sharedDir: ${JSON.stringify(share)},
      logLevel: 'off' });
    const fc = await FuseClient.connect(${JSON.stringify(socket)}, { depth: 4 });
    await fc.init();
    await fc.lookup(1, 'f');
    await fc.lookup(1, 'missing').catch(() => {});
    fc.close();
    await new Promise((r) => d.once('disconnect', r));
    await d.close();`;
  const r = spawnSync(...evalArgs(script), { encoding: 'utf8', timeout: 20000 });
  assert.is(r.status, 0, r.stderr);
  assert.is(r.stderr, '', 'nothing on stderr at level off');
  assert.is(r.stdout, '');

  const cliSocket = path.join(tmp, `cli${seq++}.sock`);
  const cli = spawn(...runtimeArgs(path.join(DIST, 'host', 'cli.js'), [`--socket-path=${cliSocket}`,
    `--shared-dir=${share}`, '--sandbox=none', '--log-level=error']), { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  cli.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
  try {
    await waitFor(() => fs.existsSync(cliSocket), 'the CLI socket');
    const fc = await FuseClient.connect(cliSocket, { depth: 4 });
    await fc.init();
    await fc.lookup(FUSE_ROOT_ID, 'f');
    cli.kill('SIGUSR1');
    await waitFor(() => /LOOKUP\s+1\s/.test(err), 'the stats on stderr');
    assert.match(err, /operation stats/);
    assert.match(err, /INIT\s+1\s/);
    fc.close();
  } finally {
    cli.kill('SIGTERM');
    await new Promise((r) => cli.once('exit', r));
  }
});

test('over /dev/fuse: stat of another file completes while a READ is pending; content checked', async () => {
  if (skipIf(missingDevFuse())) return;
  const g = seeded();
  const mp = path.join(tmp, `mnt${seq++}`);
  fs.mkdirSync(mp);
  const daemon = await serve(g, { mountpoint: mp, cache: 'never' });
  try {
    const slowId = (await fsp.stat(path.join(mp, 'slow.txt'))).ino;
    const gate = g.gate(`read:${slowId}`);
    let readDone = false;
    const read = fsp.readFile(path.join(mp, 'slow.txt'), 'utf8').then((s) => { readDone = true; return s; });
    await waitFor(() => gate.waiting === 1, 'the READ to be pending');
    const st = await fsp.stat(path.join(mp, 'dir', 'b'));
    assert.is(st.size, 2);
    assert.is(await fsp.readFile(path.join(mp, 'other.txt'), 'utf8'), 'other');
    assert.not.ok(readDone, 'the READ is still pending');
    gate.open();
    assert.is(await read, 'slow contents '.repeat(1000));
    // Writes, renames, symlinks through the kernel's FUSE client.
    await fsp.writeFile(path.join(mp, 'new.txt'), 'fresh');
    await fsp.rename(path.join(mp, 'new.txt'), path.join(mp, 'dir', 'moved.txt'));
    await fsp.symlink('moved.txt', path.join(mp, 'dir', 'link'));
    assert.is(await fsp.readFile(path.join(mp, 'dir', 'link'), 'utf8'), 'fresh');
    assert.equal((await fsp.readdir(path.join(mp, 'dir'))).sort(), ['a', 'b', 'link', 'moved.txt']);

    // A signal to a reader whose READ is pending: the kernel sends FUSE_INTERRUPT and then waits, unkillable,
    // for the answer; the READ is answered EINTR at once, so the reader exits while the gate is still closed.
    // Its RELEASE waits for the READ's late result, which is dropped.
    const gate2 = g.gate(`read:${slowId}`);
    const dd = spawn('dd', [`if=${path.join(mp, 'slow.txt')}`, 'of=/dev/null', 'bs=4096', 'count=1'], { stdio: 'ignore' });
    await waitFor(() => gate2.waiting === 1, 'the second READ to be pending');
    const exited = new Promise<boolean>((r) => dd.once('exit', () => r(true)));
    dd.kill('SIGINT');
    const inTime = await Promise.race([exited, sleep(5000).then(() => false)]);
    if (!inTime) gate2.open(); // let the reader go before failing
    assert.ok(inTime, 'the interrupted reader did not exit while its READ was pending');
    assert.is(gate2.waiting, 1, 'the reader exited while its READ was still pending in the filesystem');
    const readStats = (): OperationStats => daemon.stats().find((x) => x.name === 'READ')!;
    assert.is(readStats().pending, 0, 'the READ was answered (EINTR)');
    assert.ok(daemon.stats().find((x) => x.name === 'INTERRUPT')!.count >= 1);
    gate2.open();
    await waitFor(() => daemon.pendingRequests === 0, 'the RELEASE after the late READ result');
  } finally {
    await daemon.close();
    detach(mp);
  }
});

test.run();

/**
 * Adaptive polling (--poll-us) and the lean kick path: the core's queueAvailPending / queueSetKicks against the
 * split-ring driver (host/frontend/virtqueue-driver.ts), the QueueProcessor's polling window, and the poller's
 * edge-triggered eventfd registrations (addEventfd).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Core, POP_EMPTY, POP_REQUEST } from '../host/core.js';
import { VirtqueueDriver } from '../host/frontend/virtqueue-driver.js';
import { QueueProcessor, type QueueCore, type RequestServer } from '../host/virtio/queue-processor.js';
import { FdPoller } from '../host/vhost-user/fd-poller.js';
import { native } from '../host/native-loader.js';
import { FUSE_GETATTR } from '../host/fuse/protocol.js';
import { fuseRequest } from './util/fuse-request.js';
import { parseCommandLine } from '../host/cli-options.js';
import { ConfigError } from '../host/errors.js';
import { unlessRuntime } from './util/runtime.js';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { VirtiofsDaemon } from '../host/daemon.js';
import { FUSE_ROOT_ID } from '../host/fuse/protocol.js';
import { connectWhenListening } from './util/socket-daemon.js';

const GPA = 0x4000_0000n;
const UVA = 0x7f00_0000_0000n;
const RAM = 1024 * 1024;
const BUFS = GPA + 0x8_0000n;

/** A core with queue 0 on a driver's ring; `submit` makes one GETATTR available, `serve` answers what is popped. */
async function rig(eventIdx: boolean) {
  const core = await Core.create();
  const off = core.addTestRegion(GPA, UVA, RAM);
  const driver = new VirtqueueDriver({ gpa: GPA, bytes: () => core.bytes().subarray(off, off + RAM) },
    { num: 16, ringGpa: GPA, eventIdx });
  const uva = (gpa: bigint) => gpa - GPA + UVA;
  core.queueSetNum(0, 16);
  core.queueSetAddr(0, uva(driver.layout.descGpa), uva(driver.layout.usedGpa), uva(driver.layout.availGpa));
  core.queueSetBase(0, 0);
  core.queueSetFeatures(0, eventIdx, false);
  let unique = 1n;
  let slot = 0n;
  const submit = (): void => {
    const req = fuseRequest(FUSE_GETATTR, unique++, 1n, new Uint8Array(16));
    const inGpa = BUFS + (slot++ % 32n) * 256n;
    core.bytes().set(req, off + Number(inGpa - GPA));
    driver.add([{ gpa: inGpa, len: req.length }], [{ gpa: inGpa + 128n, len: 120 }]);
    driver.publish();
  };
  const served: bigint[] = [];
  const server: RequestServer = {
    serveCurrent() {
      served.push(core.reqUnique());
      core.replySend(0, 0, 0);
    },
  };
  return { core, driver, submit, served, server };
}

test('queueAvailPending counts what the driver published without re-arming kicks (EVENT_IDX)', async () => {
  const { core, driver, submit, server } = await rig(true);
  assert.is(core.queuePop(0), POP_EMPTY);
  assert.is(driver.availEvent(), 0, 'an empty pop asks for a kick at index 0');
  submit();
  submit();
  assert.is(core.queueAvailPending(0), 2);
  assert.is(core.queuePop(0), POP_REQUEST);
  server.serveCurrent();
  assert.is(core.queueAvailPending(0), 1);
  assert.is(core.queuePop(0), POP_REQUEST);
  server.serveCurrent();
  assert.is(core.queueAvailPending(0), 0, 'empty');
  assert.is(driver.availEvent(), 0, 'peeking an empty ring leaves avail_event behind: no kick is asked for');
  driver.pollUsed();
  submit();
  assert.is(driver.kickNeeded(), false, 'kicks stay off while the device polls');
  assert.is(core.queueSetKicks(0, true), 1, 're-arming reports the chain that came meanwhile');
  assert.is(driver.availEvent(), 2, 'avail_event = the next index the device will pop');
});

test('queueKickAfter (EVENT_IDX): no kick until the nth chain, one then; refused without EVENT_IDX', async () => {
  const { core, driver, submit, server } = await rig(true);
  assert.is(core.queuePop(0), POP_EMPTY);
  assert.is(core.queueKickAfter(0, 3), 0, 'nothing pending');
  assert.is(driver.availEvent(), 2, 'avail_event = last_avail + n - 1');
  const kicks: boolean[] = [];
  for (let i = 0; i < 3; i++) {
    submit();
    kicks.push(driver.kickNeeded());
  }
  assert.equal(kicks, [false, false, true], 'the third chain kicks, the first two do not');
  for (let i = 0; i < 3; i++) {
    assert.is(core.queuePop(0), POP_REQUEST);
    server.serveCurrent();
  }
  submit();
  assert.is(core.queueKickAfter(0, 1), 1, 'a chain already here is reported: serve it now');
  const plain = await rig(false);
  assert.is(plain.core.queuePop(0), POP_EMPTY);
  assert.is(plain.core.queueKickAfter(0, 2), 0, 'without EVENT_IDX there is no avail_event to move');
});

test('queueSetKicks without EVENT_IDX: VIRTQ_USED_F_NO_NOTIFY set while polling, cleared after', async () => {
  const { core, driver, submit } = await rig(false);
  assert.is(core.queuePop(0), POP_EMPTY);
  submit();
  assert.is(driver.kickNeeded(), true, 'kicks on by default');
  assert.is(core.queueSetKicks(0, false), 0);
  submit();
  assert.is(driver.kickNeeded(), false, 'NO_NOTIFY set');
  assert.is(core.queueSetKicks(0, true), 2, 'on again: both chains are pending');
  submit();
  assert.is(driver.kickNeeded(), true, 'NO_NOTIFY cleared');
});

/** The core as the processor sees it, with a hook on every queueAvailPending call (a guest "arriving" mid-spin). */
function hooked(core: Core, onPeek: (n: number) => void): QueueCore {
  let peeks = 0;
  return {
    queuePop: (q) => core.queuePop(q),
    queueNeedsNotify: (q) => core.queueNeedsNotify(q),
    replySend: (e, b, p) => core.replySend(e, b, p),
    queueAvailPending: (q) => {
      onPeek(++peeks);
      return core.queueAvailPending(q);
    },
    queueSetKicks: (q, on) => core.queueSetKicks(q, on),
    queueDriverLag: (q, used) => core.queueDriverLag(q, used),
  };
}

for (const eventIdx of [true, false]) {
  const mode = eventIdx ? 'EVENT_IDX' : 'no EVENT_IDX';
  test(`polling (${mode}): a request arriving inside the window is served without a kick; then the run yields`, async () => {
    const { core, driver, submit, served, server } = await rig(eventIdx);
    submit();
    let arrivedAt = 0;
    const p = new QueueProcessor(hooked(core, (n) => {
      // The third look finds the ring drained and inside the spin: the guest adds a request now.
      if (n === 3) {
        submit();
        arrivedAt = served.length;
      }
    }), server, 0, { pollUs: 50_000 });
    assert.is(p.run(), true, 'a window that found work asks to be run again (the caller yields in between)');
    assert.equal(served, [1n, 2n], 'both served in one run');
    assert.is(arrivedAt, 1);
    assert.is(p.stats.pollHits, 1);
    driver.pollUsed();
    submit();
    assert.is(driver.kickNeeded(), false, 'kicks are still off between the runs');
    assert.is(p.run(), false, 'served the third, whose arrival needed no kick; then a window passed empty');
    assert.equal(served, [1n, 2n, 3n]);
    assert.is(p.stats.pollMisses, 1);
    submit();
    assert.is(driver.kickNeeded(), true, 'after the empty window the next request kicks');
  });

  test(`polling (${mode}): a window that passes empty turns kicks on again and stops`, async () => {
    const { core, driver, submit, served, server } = await rig(eventIdx);
    submit();
    const p = new QueueProcessor(core, server, 0, { pollUs: 300 });
    assert.is(p.run(), false, 'nothing came: back to waiting for kicks');
    assert.equal(served, [1n]);
    assert.is(p.stats.pollMisses, 1);
    driver.pollUsed();
    submit();
    assert.is(driver.kickNeeded(), true, 'the next request kicks');
    assert.is(p.run(), false);
    assert.equal(served, [1n, 2n]);
  });
}

test('polling backs off while windows pass empty (one batch in 16 still polls), and resumes once they pay', async () => {
  const { core, driver, submit, served, server } = await rig(true);
  let fast = false;
  let emptyLooks = 0;
  let arrivals = 0;
  const p = new QueueProcessor(hooked(core, () => {
    // A fast driver adds its next request while the processor watches the drained ring (at the second look in a
    // row that finds it empty: the first is the drain's own), up to 3 per batch.
    if (!fast) return;
    if (core.queueAvailPending(0) > 0) return;
    if (++emptyLooks === 2 && arrivals < 3) {
      arrivals++;
      emptyLooks = 0;
      submit();
    }
  }), server, 0, { pollUs: 300 });
  const batch = (): void => {
    emptyLooks = arrivals = 0;
    submit();
    while (p.run()) { /* a window found work: run again, as the backend does */ }
    driver.pollUsed();
  };
  for (let i = 0; i < 43; i++) batch(); // a slow driver: every window passes empty
  // The share of paying windows starts at 1 and loses 1/8 per empty window: under 1/4 after 11 of them; then
  // batches 12..43 wait for kicks, except every 16th (batches 27 and 43).
  assert.is(p.stats.pollMisses, 13, 'windows tried');
  assert.is(p.stats.pollSkips, 30, 'batches that waited for a kick instead');
  assert.is(p.stats.pollHits, 0);
  submit();
  assert.is(driver.kickNeeded(), true, 'a backed-off queue asks for kicks like one that never polls');
  while (p.run()) { /* as above */ }
  driver.pollUsed();
  // The driver turns fast: the next probe finds a request in its window, and the windows pay again.
  const skipsBefore = p.stats.pollSkips;
  fast = true;
  for (let i = 0; i < 16; i++) batch();
  assert.ok(p.stats.pollHits >= 1, `the probe found the request: ${JSON.stringify(p.stats)}`);
  const skipsAfter = p.stats.pollSkips;
  for (let i = 0; i < 8; i++) batch();
  assert.is(p.stats.pollSkips, skipsAfter, `polling every batch again (skipped before: ${skipsAfter - skipsBefore})`);
});

test('polling: stopped() turns kicks on again (no silent ring is left behind)', async () => {
  const { core, driver, submit, server } = await rig(false);
  submit();
  let n = 0;
  const p = new QueueProcessor(hooked(core, () => { if (++n === 3) submit(); }), server, 0, { pollUs: 100_000 });
  assert.is(p.run(), true); // kicks off, work found
  driver.pollUsed();
  submit();
  assert.is(driver.kickNeeded(), false);
  p.stopped();
  submit();
  assert.is(driver.kickNeeded(), true);
});

test('polling: a ring whose avail.idx jumps past the queue size still halts the queue', async () => {
  const { core, driver, server } = await rig(true);
  driver.setAvailIdx(40); // 40 > num (16)
  const p = new QueueProcessor(core, server, 0, { pollUs: 100_000 });
  assert.is(p.run(), false);
  assert.is(p.halted, true);
  p.reset(); // the processor forgets; the core's ring stays broken until queueReset
  assert.is(p.run(), false);
  assert.is(p.halted, true, 'a ring already marked broken is seen again (not taken for an empty one)');
});

/**
 * One batch of `depth` requests on a driver waiting at used_event 0, without polling. The driver takes what it was
 * told about and waits at the next used index once `rearmAt` requests were served. Returns the calls seen before
 * serving each request and after the batch, and the processor's notification count.
 */
async function callsInOneBatch(depth: number, rearmAt: readonly number[]) {
  const { core, driver, submit, served, server } = await rig(true);
  const callFd = native.eventfd(0, native.constants.EFD_NONBLOCK);
  try {
    for (let i = 0; i < depth; i++) submit();
    driver.setUsedEvent(0); // "interrupt me at the first completion"
    const callsSeen: number[] = [];
    const callsNow = (): number => {
      const calls = native.eventfdRead(callFd); // -EAGAIN (nothing yet) or the count
      return calls > 0 ? calls : 0;
    };
    const observing: RequestServer = {
      serveCurrent() {
        callsSeen.push(callsNow());
        if (rearmAt.includes(served.length)) driver.setUsedEvent(served.length);
        server.serveCurrent();
      },
    };
    const p = new QueueProcessor(core, observing, 0);
    p.callFd = callFd;
    assert.is(p.run(), false);
    callsSeen.push(callsNow());
    return { served, callsSeen, notifications: p.stats.notifications };
  } finally {
    native.close(callFd);
  }
}

test('EVENT_IDX: calls follow completions inside the batch, every half depth; the last held one ends the batch', async () => {
  // 5 outstanding past used_event 0: half the depth is 2. The driver re-arms after 2, then after 4.
  const r = await callsInOneBatch(5, [2, 4]);
  assert.equal(r.served, [1n, 2n, 3n, 4n, 5n]);
  // Calls seen before serving requests 1..5, and after the batch: after request 2 (2 unseen past used_event 0),
  // after request 4 (2 past 2), and the 5th, held, when the ring was found empty.
  assert.equal(r.callsSeen, [0, 0, 1, 0, 1, 1]);
  assert.is(r.notifications, 3);
});

test('EVENT_IDX: a driver of depth 3 or less hears of each completion it waits on at once', async () => {
  const r = await callsInOneBatch(3, [2]);
  assert.equal(r.served, [1n, 2n, 3n]);
  assert.equal(r.callsSeen, [0, 1, 0, 1], 'after request 1 (used_event 0) and after request 3 (used_event 2)');
});

test('queueDriverLag: chains made available and used elements pushed since used_event (EVENT_IDX only)', async () => {
  for (const eventIdx of [true, false]) {
    const { core, driver, submit, server } = await rig(eventIdx);
    for (let i = 0; i < 3; i++) submit();
    driver.setUsedEvent(0);
    const p = new QueueProcessor(core, server, 0);
    assert.is(core.queueDriverLag(0, false), eventIdx ? 3 : 0, 'made available');
    assert.is(core.queueDriverLag(0, true), 0, 'nothing used yet');
    p.run();
    assert.is(core.queueDriverLag(0, true), eventIdx ? 3 : 0, 'used');
    driver.setUsedEvent(0xfff0); // what Linux writes while its callbacks are off is no position it waits at
    assert.is(core.queueDriverLag(0, false), 0, 'farther than the ring holds: unknown');
    assert.is(core.queueDriverLag(0, true), 0);
  }
});

/**
 * Coalescing while polling: a driver that waits at used_event with 8 more chains outstanding hears of them once
 * 4 are done (the other 4 keep it busy meanwhile), and a window passing empty releases what is held (without
 * polling, the end of the batch does: the test above).
 */
test('polling (EVENT_IDX): a deep driver hears at half its depth; a window passing empty releases the rest', async () => {
  const { core, driver, submit, served, server } = await rig(true);
  const callFd = native.eventfd(0, native.constants.EFD_NONBLOCK);
  try {
    let calls = 0;
    const readCalls = (): number => {
      const n = native.eventfdRead(callFd);
      calls += n > 0 ? n : 0;
      return calls;
    };
    const callsSeen: number[] = [];
    const observing: RequestServer = {
      serveCurrent() {
        callsSeen.push(readCalls());
        server.serveCurrent();
      },
    };
    let burst = 0;
    let peeks = 0;
    const p = new QueueProcessor(hooked(core, () => {
      // Inside the window (the third look of a run: after the drain and its empty look), the driver takes what
      // it was told about, waits at the next used index, and adds `burst` requests.
      if (++peeks !== 3 || burst === 0) return;
      driver.pollUsed();
      driver.setUsedEvent(served.length);
      for (let i = 0; i < burst; i++) submit();
      burst = 0;
    }), observing, 0, { pollUs: 300 });
    p.callFd = callFd;
    const batch = (n: number): void => {
      peeks = 0;
      burst = n;
      driver.pollUsed();
      driver.setUsedEvent(served.length); // the first request kicks; the driver waits for its completion
      submit();
      while (p.run()) { /* as the backend does */ }
    };

    batch(8);
    assert.is(served.length, 9);
    // Calls seen before serving each request: the first (kicked) request's call at once; then, of the 8 served
    // with kicks off, the call comes after the 4th (used_event 1 + 4), not after the first.
    assert.equal(callsSeen, [0, 1, 1, 1, 1, 2, 2, 2, 2]);
    assert.is(readCalls(), 2, 'no call after the batch: the driver was told and has not re-armed');

    // Depth 8 is remembered: the kicked request and the 2 that come inside its window are held, until a window
    // passes empty.
    callsSeen.length = 0;
    batch(2);
    assert.is(served.length, 12);
    assert.equal(callsSeen, [2, 2, 2], 'the 3 completions were held while the windows ran');
    assert.is(readCalls(), 3, 'released by the window that passed empty');
    assert.is(p.stats.notifications, 3);
  } finally {
    native.close(callFd);
  }
});

/**
 * Batch windows: a processor whose owner arms a timer (here: recorded, and "fired" by calling windowEnded + run).
 * `depth` requests are made available at used_event 0 and served; the driver then re-arms at what it was told.
 */
const WINDOW_US = 10_000_000;

async function windowRig(eventIdx: boolean, depth: number) {
  const r = await rig(eventIdx);
  const callFd = native.eventfd(0, native.constants.EFD_NONBLOCK);
  const armed: number[] = [];
  // A window far longer than the test: its "hold as old as two windows" release never fires here.
  const p = new QueueProcessor(r.core, r.server, 0, { batchWindowUs: WINDOW_US, armWindow: (us) => armed.push(us) });
  p.callFd = callFd;
  for (let i = 0; i < depth; i++) r.submit();
  r.driver.setUsedEvent(0);
  const calls = (): number => Math.max(0, native.eventfdRead(callFd));
  return { ...r, p, armed, calls, close: () => native.close(callFd) };
}

test('batch window: a deep driver\'s drained ring waits for the timer, kicks off; a burst inside costs no kick',
  async () => {
  const w = await windowRig(true, 8);
  try {
    assert.is(w.p.run(), false, 'drained: the queue sleeps until the timer');
    assert.equal(w.armed, [WINDOW_US]);
    assert.is(w.served.length, 8);
    w.calls();
    w.driver.pollUsed();
    w.driver.setUsedEvent(8);
    for (let i = 0; i < 3; i++) w.submit();
    assert.is(w.driver.kickNeeded(), false, 'kicks are off during the window');
    w.p.windowEnded();
    assert.is(w.p.run(), false);
    assert.is(w.served.length, 11, 'the burst was served when the timer fired');
    assert.is(w.p.stats.windowHits, 1);
    assert.equal(w.armed, [WINDOW_US, WINDOW_US], 'and the next window began');
    assert.is(w.calls(), 0, 'the 3 completions are held (fewer than half of 8)');

    w.p.windowEnded();
    assert.is(w.p.run(), false, 'an empty window: back to waiting for kicks');
    assert.is(w.p.stats.windowMisses, 1);
    assert.is(w.calls(), 1, 'what was held goes out when a window passes empty');
    w.driver.pollUsed();
    w.submit();
    assert.is(w.driver.kickNeeded(), true, 'kicks are on again');
    w.p.windowEnded(); // a timer firing late finds no window open: run() is as after a kick
    assert.is(w.p.run(), false);
    assert.is(w.served.length, 12);
    assert.is(w.p.stats.windowMisses, 1, 'not counted');
  } finally {
    w.close();
  }
});

test('batch window: a driver of depth 3 or less, or without EVENT_IDX, never gets one (kicks on at once)', async () => {
  for (const [eventIdx, depth] of [[true, 3], [false, 8]] as const) {
    const w = await windowRig(eventIdx, depth);
    try {
      assert.is(w.p.run(), false);
      assert.is(w.served.length, depth);
      assert.equal(w.armed, [], `eventIdx ${eventIdx}, depth ${depth}`);
      w.driver.pollUsed();
      w.submit();
      assert.is(w.driver.kickNeeded(), true);
    } finally {
      w.close();
    }
  }
});

test('batch window: a driver that refills the ring as fast as a burst is served gets no more windows', async () => {
  const r = await rig(true);
  let refill = 0;
  const server: RequestServer = {
    serveCurrent() {
      r.server.serveCurrent();
      if (refill > 0) { // the driver takes each completion at once and sends a new request
        refill--;
        r.driver.pollUsed();
        r.submit();
      }
    },
  };
  const armed: number[] = [];
  const p = new QueueProcessor(r.core, server, 0, { batchWindowUs: 50, armWindow: (us) => armed.push(us) });
  for (let i = 0; i < 8; i++) r.submit();
  r.driver.setUsedEvent(0);
  p.run();
  assert.is(armed.length, 1, 'a window for the deep driver');
  for (let w = 0; w < 12 && armed.length === w + 1; w++) {
    r.driver.pollUsed();
    r.submit();
    refill = 40; // while the window's burst is served, 41 requests in all: more than twice any depth a 16-ring shows
    p.windowEnded();
    p.run();
  }
  assert.ok(p.stats.windowHits >= 8 && p.stats.windowHits <= 12, `windows backed off: ${JSON.stringify(p.stats)}`);
  assert.is(p.stats.windowMisses, 0);
  assert.ok(armed.length < 13, `no window once the share fell: ${armed.length} armed`);
  r.driver.pollUsed();
  r.submit();
  assert.is(r.driver.kickNeeded(), true, 'kicks on: the driver kicks as before');
});

test('batch window: stopped() ends it with kicks on, and a reset ring starts without one', async () => {
  const w = await windowRig(true, 8);
  try {
    w.p.run();
    assert.equal(w.armed, [WINDOW_US]);
    w.p.stopped();
    w.driver.pollUsed();
    w.submit();
    assert.is(w.driver.kickNeeded(), true, 'no silent ring is left behind');
    w.p.windowEnded();
    w.p.run();
    assert.is(w.p.stats.windowHits + w.p.stats.windowMisses, 0, 'the window was over');
  } finally {
    w.close();
  }
});

test('batch windows on the daemon: each burst of a deep driver in one wake-up, ended by one kick, not the timer', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'batch-window-'));
  // A 30 s window: a burst that waited for the timer would outlive the client's 5 s request timeout. The window
  // asks for one kick when half the depth has come (queueKickAfter), so the burst ends it.
  const daemon = await VirtiofsDaemon.start({ socketPath: path.join(dir, 's.sock'), sharedDir: dir, cache: 'never',
    logLevel: 'error', batchWindowUs: 30_000_000 });
  const fc = await connectWhenListening(path.join(dir, 's.sock'), { queues: 1, depth: 16, timeoutMs: 5000 });
  try {
    await fc.init();
    const bursts = 100;
    for (let i = 0; i < bursts; i++) await Promise.all(Array.from({ length: 8 }, () => fc.getattr(FUSE_ROOT_ID)));
    const st = daemon.listener!.backend!.queueStats(1)!;
    assert.is(st.served, bursts * 8 + 1, 'every request answered (INIT too), none after a timer');
    assert.ok(st.windowHits > bursts / 2, `bursts served by a window: ${JSON.stringify(st)}`);
    assert.ok(st.kicks <= bursts + 2, `about one kick per burst of 8, not one per request: ${JSON.stringify(st)}`);
  } finally {
    fc.close();
    await daemon.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('without pollUs the processor never touches the kick state', async () => {
  const { core, driver, submit, served, server } = await rig(false);
  submit();
  let peeks = 0;
  const p = new QueueProcessor(hooked(core, () => peeks++), server, 0);
  assert.is(p.run(), false);
  assert.equal(served, [1n]);
  assert.is(peeks, 0);
  submit();
  assert.is(driver.kickNeeded(), true);
});

test('--poll-us: parsed into pollUs (default 0); a negative, fractional or huge value is refused', () => {
  const base = ['--socket-path=/tmp/x.sock', '--shared-dir=/tmp'];
  const opts = (extra: string[]) => parseCommandLine([...base, ...extra]) as { pollUs?: number };
  assert.is(opts([]).pollUs, 0);
  assert.is(opts(['--poll-us=50']).pollUs, 50);
  for (const bad of ['-1', '1.5', 'x', '1000001']) {
    assert.throws(() => opts([`--poll-us=${bad}`]), (e: unknown) => e instanceof ConfigError, bad);
  }
});

const loopReason = 'the loop poller needs Node\'s libuv loop (FdPoller refuses it there; the thread poller serves)';
for (const mode of ['loop', 'thread'] as const) {
  const modeTest = mode === 'loop' ? unlessRuntime(test, { bun: loopReason, deno: loopReason }) : test;
  modeTest(`FdPoller.addEventfd (${mode}): every write runs the handler, no rearm by the caller`, async () => {
    const poller = new FdPoller(mode);
    const efd = native.eventfd(0, native.constants.EFD_NONBLOCK);
    let runs = 0;
    let wake: (() => void) | null = null;
    const token = poller.addEventfd(efd, () => {
      runs++;
      wake?.();
    });
    const next = () => new Promise<void>((resolve) => {
      wake = resolve;
    });
    try {
      for (let i = 1; i <= 3; i++) {
        const ran = next();
        native.eventfdWrite(efd, 1);
        await ran;
        assert.is(runs, i, `write ${i} ran the handler once`);
      }
      // The loop backend never reads the counter (edge-triggered); the thread backend drains it each time.
      const left = native.eventfdRead(efd);
      if (mode === 'loop') assert.is(left, 3);
      else assert.is(left, -(native.constants.errno.EAGAIN ?? 11));
    } finally {
      poller.remove(token);
      poller.close();
      native.close(efd);
    }
  });
}

test.run();

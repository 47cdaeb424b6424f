/**
 * SharedFiles (host/passthrough/shared-files.ts): the open files queue threads use without asking the main
 * thread, and the rule that a withdrawn handle's fd is never closed while a thread is in a syscall on it.
 * HandleTable (its only writer) is checked with real fds: a RELEASE while a reader holds the fd leaves the fd open
 * until the reader lets go, and then closes it once.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { native } from '../host/native-loader.js';
import { HandleTable } from '../host/passthrough/handle-table.js';
import { SHARED_LIVE, SHARED_NOWAIT, SHARED_WRITES, SharedFiles } from '../host/passthrough/shared-files.js';
import { waitFor } from './util/wait.js';

const C = native.constants;
const isOpen = (fd: number): boolean => native.fcntlGetfl(fd) >= 0;
const devNull = (): number => native.openat(C.AT_FDCWD, '/dev/null', C.O_RDONLY | C.O_CLOEXEC, 0);

test('published handles: the fd for its own node only; withdrawn, unknown or too large: -1 (forward)', () => {
  const s = new SharedFiles();
  assert.ok(s.publish(7, 3, 40));
  assert.is(s.acquire(7, 3), 40);
  s.release(7);
  assert.is(s.acquire(7, 4), -1, 'another node\'s fh');
  assert.is(s.acquire(8, 3), -1, 'not published');
  assert.is(s.acquire(7 + 4096, 3), -1, 'the same slot, another fh');
  assert.not.ok(s.publish(7 + 4096, 3, 41), 'the slot is taken: that handle is served by the main thread');
  assert.not.ok(s.publish(2 ** 31, 3, 41), 'an fh beyond int32');
  assert.ok(s.withdraw(7), 'nobody reads it');
  assert.is(s.acquire(7, 3), -1);
  assert.ok(s.publish(7 + 4096, 3, 41), 'the slot is free again');
});

test('flags are shared through the buffer: another view (a thread) sees them', () => {
  const s = new SharedFiles();
  const t = new SharedFiles(s.buffer);
  s.setFlag(SHARED_LIVE, true);
  s.setFlag(SHARED_WRITES, true);
  assert.ok(t.flag(SHARED_LIVE) && t.flag(SHARED_WRITES) && !t.flag(SHARED_NOWAIT));
  s.setFlag(SHARED_LIVE, false);
  assert.not.ok(t.flag(SHARED_LIVE));
  assert.ok(t.flag(SHARED_WRITES));
});

test('withdraw while a reader holds the slot: not free; whenFree runs once the reader released, and the slot waits',
  async () => {
  const s = new SharedFiles();
  const reader = new SharedFiles(s.buffer);
  s.publish(9, 2, 50);
  assert.is(reader.acquire(9, 2), 50);
  assert.not.ok(s.withdraw(9), 'a reader is in a syscall on the fd');
  let closed = 0;
  s.whenFree(9, () => { closed++; });
  assert.not.ok(s.publish(9 + 4096, 2, 51), 'no new handle in the slot while the old fd waits for its reader');
  await new Promise((r) => setTimeout(r, 20));
  assert.is(closed, 0);
  reader.release(9);
  await waitFor(() => closed === 1, 'whenFree to run');
  assert.ok(s.publish(9 + 4096, 2, 51));
});

test('HandleTable: RELEASE while a thread reads keeps the fd open until the read is done, then closes it once',
  async () => {
  const table = new HandleTable();
  const shared = new SharedFiles();
  table.shareWith(shared);
  const fd = devNull();
  const h = table.add(5, fd, false);
  const reader = new SharedFiles(shared.buffer);
  assert.is(reader.acquire(h.fh, 5), fd, 'published on add');
  assert.ok(table.remove(h.fh));
  assert.ok(isOpen(fd), 'open while the reader holds it');
  await new Promise((r) => setTimeout(r, 20));
  assert.ok(isOpen(fd));
  reader.release(h.fh);
  await waitFor(() => !isOpen(fd), 'the fd to be closed after the read');
  // Directories are never published; a handle nobody reads closes at once.
  const d = table.add(5, devNull(), true);
  assert.is(reader.acquire(d.fh, 5), -1);
  const f = table.add(5, devNull(), false);
  const ffd = f.fd;
  assert.ok(table.remove(f.fh));
  assert.not.ok(isOpen(ffd));
  table.clear();
});

test('HandleTable: a pool job and a thread on the same fd: closed after both let go, in either order', async () => {
  for (const jobFirst of [true, false]) {
    const table = new HandleTable();
    const shared = new SharedFiles();
    table.shareWith(shared);
    const h = table.add(6, devNull(), false);
    const reader = new SharedFiles(shared.buffer);
    HandleTable.hold(h);
    assert.is(reader.acquire(h.fh, 6), h.fd);
    table.remove(h.fh);
    if (jobFirst) HandleTable.unhold(h); else reader.release(h.fh);
    await new Promise((r) => setTimeout(r, 10));
    assert.ok(isOpen(h.fd), `open while the ${jobFirst ? 'thread' : 'job'} still uses it`);
    if (jobFirst) reader.release(h.fh); else HandleTable.unhold(h);
    await waitFor(() => !isOpen(h.fd), 'the fd to be closed');
  }
});

test.run();

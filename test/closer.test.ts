/**
 * The native closer (bindings/closer.c, used by the inode table for forgotten nodes' fds): fds queued stay open
 * until closerWake, then its thread closes them, counted; closerClose closes what is queued; once closed, or for
 * a bad fd, closerAdd closes inline and says how that went.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { native } from '../host/native-loader.js';
import type { CloserHandle } from '../host/native.js';

const C = native.constants;
const EBADF = C.errno.EBADF ?? 9;

function create(): CloserHandle {
  const c = native.closerCreate();
  if (typeof c === 'number') throw new Error(`closerCreate: ${c}`);
  return c;
}

/** `n` fds of /dev/null (the runtime's own fs may hand out ids that are not fds: Deno). */
function openFds(n: number): number[] {
  const fds: number[] = [];
  for (let i = 0; i < n; i++) {
    const fd = native.openat(C.AT_FDCWD, '/dev/null', C.O_RDONLY | C.O_CLOEXEC, 0);
    if (fd < 0) throw new Error(`openat /dev/null: ${fd}`);
    fds.push(fd);
  }
  return fds;
}

function isOpen(fd: number): boolean {
  const copy = native.dup(fd);
  if (copy < 0) return false;
  native.close(copy);
  return true;
}

test('queued fds stay open until closerWake; then the thread closes them, counted', async () => {
  const c = create();
  try {
    const fds = openFds(300);
    for (const fd of fds) assert.is(native.closerAdd(c, fd), 0);
    await new Promise((r) => setTimeout(r, 20));
    assert.is(fds.filter(isOpen).length, 300, 'not woken: nothing closed');
    assert.equal(native.closerStats(c), [300, 0]);
    native.closerWake(c);
    native.closerFlush(c);
    assert.equal(fds.filter(isOpen), [], 'every fd closed');
    assert.equal(native.closerStats(c), [300, 300]);
  } finally {
    native.closerClose(c);
  }
});

test('closerClose closes what is still queued; afterwards closerAdd closes inline', () => {
  const c = create();
  const fds = openFds(500);
  for (const fd of fds) native.closerAdd(c, fd);
  native.closerClose(c);
  assert.equal(fds.filter(isOpen), [], 'the queue was closed before the thread went');
  const [late] = openFds(1);
  assert.is(native.closerAdd(c, late), 0, 'closed inline');
  assert.not.ok(isOpen(late));
  assert.is(native.closerAdd(c, late), -EBADF, 'an fd that is not open: close says so');
  assert.is(native.closerStats(c)[0], 500, 'inline closes are not counted as handed over');
  native.closerFlush(c); // returns at once once closed
  native.closerClose(c); // idempotent
});

test('a negative fd is refused; anything but a CloserHandle is a TypeError', () => {
  const c = create();
  try {
    assert.is(native.closerAdd(c, -1), -EBADF);
    assert.throws(() => native.closerAdd({} as CloserHandle, 0), TypeError);
    assert.throws(() => native.closerStats(undefined as unknown as CloserHandle), TypeError);
  } finally {
    native.closerClose(c);
  }
});

test.run();

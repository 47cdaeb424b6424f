/**
 * The answering side of the eventfd round-trip floors (benchmarks/floors.ts), a child process as our daemon is:
 * waits for eventfd `ping` (fd 4), reads it, writes eventfd `pong` (fd 5). A counter value >= 2 on `ping` means
 * stop; the peer then sends the CPU time it used since it was ready (process.cpuUsage, µs) and exits. argv[2] is
 * how it waits:
 * - `epoll`: blocked in epoll_wait, as a C daemon's queue thread is;
 * - `loop`: in Node's event loop through an FdPoller, as our daemon is woken by a kick (libuv's epoll_pwait, the
 *   poller's callback, the entry into JS), with the loop's idle-time metric off as the CLI has it.
 */
import { native } from '../host/native-loader.js';
import { FdPoller } from '../host/vhost-user/fd-poller.js';

const PING = 4;
const PONG = 5;
const mode = process.argv[2] === 'loop' ? 'loop' : 'epoll';

let cpu0 = process.cpuUsage();
function ready(): void {
  cpu0 = process.cpuUsage();
  process.send!('ready');
}
function done(): void {
  const u = process.cpuUsage(cpu0);
  process.send!(u.user + u.system, () => process.exit(0));
}

/** Answers one wake-up; false when told to stop. */
function answer(): boolean {
  const v = native.eventfdRead(PING);
  if (v >= 2) return false;
  if (v === 1) native.eventfdWrite(PONG, 1);
  return true;
}

if (mode === 'loop') {
  native.loopIdleMetricOff();
  const poller = new FdPoller('loop');
  poller.addEventfd(PING, () => {
    if (answer()) return;
    poller.close();
    done();
  });
  ready();
} else {
  const ep = native.epollCreate();
  native.epollCtl(ep, 1, PING, native.constants.EPOLLIN, 1);
  const out = new Int32Array(2);
  ready();
  for (;;) {
    if (native.epollWait(ep, out, 5000) <= 0 || !answer()) break;
  }
  native.close(ep);
  done();
}

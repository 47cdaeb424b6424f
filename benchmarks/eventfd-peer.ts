/**
 * The other thread of the eventfd round-trip floor (benchmarks/floors.ts): blocks in epoll_wait on eventfd `ping`,
 * reads it, writes eventfd `pong`. A counter value >= 2 on `ping` means stop.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { native } from '../host/native-loader.js';

const { ping, pong } = workerData as { ping: number; pong: number };
const ep = native.epollCreate();
native.epollCtl(ep, 1, ping, native.constants.EPOLLIN, 1);
const out = new Int32Array(2);
parentPort!.postMessage('ready');
for (;;) {
  const n = native.epollWait(ep, out, 5000);
  if (n <= 0) break;
  const v = native.eventfdRead(ping);
  if (v >= 2) break;
  if (v === 1) native.eventfdWrite(pong, 1);
}
native.close(ep);

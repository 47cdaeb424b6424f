/** Reading a bound Unix datagram socket (a stand-in system logger for `--syslog` tests). */
import { native } from '../../host/native-loader.js';

/** The datagrams waiting on `fd` (bound with native.unixDatagram(path, true)), as UTF-8 text, oldest first. */
export function drainDatagrams(fd: number): string[] {
  const out: string[] = [];
  const buf = new Uint8Array(16384);
  const fds = new Int32Array(4);
  for (;;) {
    const n = native.recvmsg(fd, buf, 0, buf.length, fds, false);
    if (n <= 0) return out;
    out.push(Buffer.from(buf.subarray(0, n)).toString('utf8'));
  }
}

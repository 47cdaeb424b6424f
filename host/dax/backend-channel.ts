/**
 * The device's end of the vhost-user backend channel (VHOST_USER_SET_BACKEND_REQ_FD): requests from the backend to
 * the frontend — here SHMEM_MAP/SHMEM_UNMAP (or the legacy SLAVE_FS_MAP/UNMAP) of the DAX window.
 *
 * Requests are pipelined: `request()` sends at once (the fds ride as SCM_RIGHTS) and returns a promise of the
 * frontend's REPLY_ACK status, answered in order. Without REPLY_ACK negotiated nothing comes back and a sent
 * request counts as done. A frontend that does not answer within `timeoutMs` is broken: every waiting request
 * fails with -ETIMEDOUT and the channel closes (a late ack could no longer be matched to its request); the daemon
 * serves on, DAX requests fail until the frontend sends a new channel.
 */
import { native } from '../native-loader.js';
import { log } from '../log.js';
import type { FdPoller } from '../vhost-user/fd-poller.js';
import {
  VHOST_USER_HDR_SIZE, VHOST_USER_NEED_REPLY_MASK, VHOST_USER_REPLY_MASK, VHOST_USER_VERSION, decodeHeader,
  encodeHeader,
} from '../vhost-user/protocol.js';

const E = native.constants.errno;

interface Pending {
  request: number;
  resolve: (status: number) => void;
  timer: NodeJS.Timeout;
}

export class BackendChannel {
  private readonly token: number;
  private readonly pending: Pending[] = [];
  private readonly rx = new Uint8Array(VHOST_USER_HDR_SIZE + 64);
  private rxLen = 0;
  private readonly fdsIn = new Int32Array(8);
  private closedFlag = false;

  /** Requests sent and acks received (introspection for tests). */
  sent = 0;
  acked = 0;

  /**
   * @param fd the channel socket (adopted; closed by close()).
   * @param replyAck REPLY_ACK was negotiated: ask for and wait on an ack per request.
   */
  constructor(readonly fd: number, private readonly poller: FdPoller, private readonly replyAck: boolean,
    private readonly timeoutMs: number, private readonly onClosed: () => void = () => {}) {
    native.setNonblocking(fd, true);
    this.token = poller.add(fd, native.constants.EPOLLIN, () => this.onReadable());
  }

  get closed(): boolean {
    return this.closedFlag;
  }

  /** Sends one request; resolves to 0 (acked or no ack asked), -EIO (the frontend refused), -ETIMEDOUT, -ENOTCONN. */
  request(request: number, payload: Uint8Array, fds: number[] = []): Promise<number> {
    if (this.closedFlag) return Promise.resolve(-E.ENOTCONN);
    const msg = new Uint8Array(VHOST_USER_HDR_SIZE + payload.length);
    encodeHeader(new DataView(msg.buffer), 0, request,
      VHOST_USER_VERSION | (this.replyAck ? VHOST_USER_NEED_REPLY_MASK : 0), payload.length);
    msg.set(payload, VHOST_USER_HDR_SIZE);
    let rc: number;
    do rc = native.sendmsg(this.fd, msg, 0, msg.length, fds); while (rc === -E.EINTR);
    if (rc !== msg.length) {
      // A full socket buffer means the frontend stopped reading: the same as not answering.
      log.warn(`dax: backend channel send failed (${rc < 0 ? native.strerror(-rc) : `short ${rc}`}); closing it`);
      this.close();
      return Promise.resolve(-E.ENOTCONN);
    }
    this.sent++;
    if (!this.replyAck) return Promise.resolve(0);
    return new Promise((resolve) => {
      const p: Pending = {
        request, resolve,
        timer: setTimeout(() => {
          log.error(`dax: the frontend did not answer backend request ${request} within ${this.timeoutMs} ms; ` +
            'closing the backend channel');
          this.close(-E.ETIMEDOUT);
        }, this.timeoutMs),
      };
      p.timer.unref();
      this.pending.push(p);
    });
  }

  /** Closes the socket; waiting requests resolve to `status`. Idempotent. */
  close(status = -E.ENOTCONN): void {
    if (this.closedFlag) return;
    this.closedFlag = true;
    this.poller.remove(this.token);
    native.close(this.fd);
    for (const p of this.pending.splice(0)) {
      clearTimeout(p.timer);
      p.resolve(status);
    }
    this.onClosed();
  }

  private onReadable(): void {
    if (this.closedFlag) return;
    for (;;) {
      const rc = native.recvmsg(this.fd, this.rx, this.rxLen, this.rx.length - this.rxLen, this.fdsIn, false);
      for (let i = 0; i < this.fdsIn.length; i++) if (this.fdsIn[i]! >= 0) native.close(this.fdsIn[i]!);
      if (rc === -E.EINTR) continue;
      if (rc === -E.EAGAIN) break;
      if (rc <= 0) {
        log.info('dax: the frontend closed the backend channel');
        this.close();
        return;
      }
      this.rxLen += rc;
      if (!this.parseAcks()) return;
    }
    this.poller.rearm(this.token);
  }

  /** Acks are a header + u64 status. Anything else on this channel is a protocol error: the channel closes. */
  private parseAcks(): boolean {
    const view = new DataView(this.rx.buffer);
    let off = 0;
    while (this.rxLen - off >= VHOST_USER_HDR_SIZE + 8) {
      const h = decodeHeader(view, off);
      const p = this.pending.shift();
      if (p === undefined || h.size !== 8 || (h.flags & VHOST_USER_REPLY_MASK) === 0 || h.request !== p.request) {
        log.warn(`dax: unexpected message ${h.request} (flags 0x${h.flags.toString(16)}, size ${h.size}) on the backend channel`);
        if (p !== undefined) this.pending.unshift(p);
        this.close(-E.EIO);
        return false;
      }
      const status = view.getBigUint64(off + VHOST_USER_HDR_SIZE, true);
      off += VHOST_USER_HDR_SIZE + 8;
      clearTimeout(p.timer);
      this.acked++;
      p.resolve(status === 0n ? 0 : -E.EIO);
    }
    this.rx.copyWithin(0, off, this.rxLen);
    this.rxLen -= off;
    return true;
  }
}

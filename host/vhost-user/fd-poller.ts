/**
 * A token -> handler table over the native one-shot poller (`native.pollerCreate`). Used by the vhost-user
 * listener/backend (listen socket, connection socket, kick eventfds) and by the frontend library (its socket,
 * call eventfds).
 *
 * One-shot: after a handler runs, its fd is silent until `rearm(token)`. Tokens are never reused, so a callback
 * that was already queued for a removed fd finds no handler and is dropped.
 */

import { native } from '../native-loader.js';
import type { PollerHandle } from '../native.js';
import { SystemError } from '../errors.js';
import { log } from '../log.js';

export type FdHandler = (events: number) => void;

interface Registration { fd: number; events: number; handler: FdHandler }

export class FdPoller {
  private handle: PollerHandle | null;
  private readonly regs = new Map<number, Registration>();
  private nextToken = 1;

  constructor() {
    this.handle = native.pollerCreate((token, events) => this.dispatch(token, events));
  }

  get closed(): boolean {
    return this.handle === null;
  }

  /** Registers fd; returns its token. Throws SystemError if epoll refuses the fd. */
  add(fd: number, events: number, handler: FdHandler): number {
    if (this.handle === null) throw new SystemError('epoll_ctl', native.constants.errno.EBADF ?? 9, 'poller closed');
    const token = this.nextToken;
    this.nextToken = this.nextToken >= 0x7fffffff ? 1 : this.nextToken + 1;
    const rc = native.pollerAdd(this.handle, fd, token, events);
    if (rc < 0) throw new SystemError('epoll_ctl', -rc, native.strerror(-rc));
    this.regs.set(token, { fd, events, handler });
    return token;
  }

  /** Re-enables a one-shot registration after its handler ran. A no-op for unknown tokens. */
  rearm(token: number): void {
    const r = this.regs.get(token);
    if (r === undefined || this.handle === null) return;
    const rc = native.pollerRearm(this.handle, r.fd, token, r.events);
    if (rc < 0) log.warn(`poller: rearm fd ${r.fd} failed: ${native.strerror(-rc)}`);
  }

  /** Unregisters (call before closing the fd). A no-op for unknown tokens. */
  remove(token: number): void {
    const r = this.regs.get(token);
    if (r === undefined) return;
    this.regs.delete(token);
    if (this.handle !== null) native.pollerRemove(this.handle, r.fd);
  }

  has(token: number): boolean {
    return this.regs.has(token);
  }

  /** Stops the poller thread; the process may exit afterwards. Idempotent. */
  close(): void {
    if (this.handle === null) return;
    const h = this.handle;
    this.handle = null;
    this.regs.clear();
    native.pollerClose(h);
  }

  private dispatch(token: number, events: number): void {
    const r = this.regs.get(token);
    if (r === undefined) return;
    try {
      r.handler(events);
    } catch (err) {
      // A handler bug must not take the daemon down with an uncaught exception from a native callback.
      log.error('poller: handler for fd', r.fd, 'threw:', err);
    }
  }
}

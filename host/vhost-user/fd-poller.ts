/**
 * A token -> handler table over the native one-shot poller. Used by the vhost-user listener/backend (listen
 * socket, connection socket, kick eventfds) and by the frontend library (its socket, call eventfds).
 *
 * Two native backends behind one API: `loop` (`native.pollerCreateOnLoop`: the epoll fd is watched by Node's own
 * libuv loop, callbacks run straight from it: one wake-up per kick) and `thread` (`native.pollerCreate`: a thread
 * blocked in epoll_wait hands events over through a threadsafe function: two wake-ups per kick, but it works in
 * any Node-API runtime). `loop` is used on Node, `thread` on Bun and Deno (whose libuv stand-ins cannot run it);
 * VIRTIOFSD_TS_POLLER=thread|loop forces one.
 *
 * One-shot: after a handler runs, its fd is silent until `rearm(token)`. Tokens are never reused, so a callback
 * that was already queued for a removed fd finds no handler and is dropped.
 *
 * Eventfds whose value nobody needs (vhost-user kicks) have `addEventfd`: on the loop an edge-triggered,
 * persistent registration, so a wake-up costs neither a read of the counter nor an epoll_ctl re-arm (each write
 * to an eventfd is a new edge, read or not); on the thread the one-shot registration, drained and re-armed here.
 */

import { native } from '../native-loader.js';
import type { PollerHandle } from '../native.js';
import { SystemError } from '../errors.js';
import { log } from '../log.js';

export type FdHandler = (events: number) => void;

interface Registration {
  fd: number;
  events: number;
  handler: FdHandler;
  /** addEventfd on the thread backend: drain the counter and re-arm around the handler. */
  drainAndRearm: boolean;
}

export type PollerMode = 'loop' | 'thread';

export class FdPoller {
  private handle: PollerHandle | null;
  private readonly regs = new Map<number, Registration>();
  private nextToken = 1;
  /** Which native backend this poller runs on. */
  readonly mode: PollerMode;

  constructor(mode: PollerMode | 'auto' = defaultMode()) {
    const cb = (token: number, events: number): void => this.dispatch(token, events);
    const onLoop = mode === 'thread' ? -1 : native.pollerCreateOnLoop(cb);
    if (typeof onLoop !== 'number') {
      this.handle = onLoop;
      this.mode = 'loop';
    } else {
      if (mode === 'loop') throw new SystemError('uv_poll_init', -onLoop, native.strerror(-onLoop), 'poller on the loop');
      this.handle = native.pollerCreate(cb);
      this.mode = 'thread';
    }
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
    this.regs.set(token, { fd, events, handler, drainAndRearm: false });
    return token;
  }

  /**
   * Watches an eventfd for writes: `handler` runs at least once after every write (a few writes may share a
   * run). The counter is not reported and may be left unread. No rearm needed. Returns its token.
   */
  addEventfd(fd: number, handler: () => void): number {
    const { EPOLLIN, EPOLLET } = native.constants;
    if (this.mode === 'thread') {
      const token = this.add(fd, EPOLLIN, handler);
      this.regs.get(token)!.drainAndRearm = true;
      return token;
    }
    return this.add(fd, (EPOLLIN | EPOLLET) >>> 0, handler);
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

  /** Stops the poller (its thread, or its watch on the loop); the process may exit afterwards. Idempotent. */
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
    // Drained before the handler: a write while it runs stays in the counter and fires after the re-arm.
    if (r.drainAndRearm) native.eventfdRead(r.fd);
    try {
      r.handler(events);
    } catch (err) {
      // A handler bug must not take the daemon down with an uncaught exception from a native callback.
      log.error('poller: handler for fd', r.fd, 'threw:', err);
    }
    if (r.drainAndRearm && this.regs.has(token)) this.rearm(token);
  }
}

function defaultMode(): PollerMode | 'auto' {
  const forced = process.env.VIRTIOFSD_TS_POLLER;
  if (forced === 'thread' || forced === 'loop') return forced;
  // Only Node's loop is the real libuv one: Bun exports uv_* names as stubs that abort the process, and Deno's
  // napi_get_uv_event_loop gives a loop whose uv_poll callbacks never fire.
  const other = typeof process.versions.bun === 'string' || 'Deno' in globalThis;
  return other ? 'thread' : 'auto';
}

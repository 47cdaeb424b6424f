/**
 * The vhost-user socket: listens on a Unix socket path and serves one frontend at a time with a
 * `VhostUserBackend`.
 *
 * One frontend at a time: while a session is active the listening socket is not polled, so a second frontend
 * that connects waits in the listen backlog (its messages go unanswered) and is accepted as soon as the current
 * one disconnects. This makes "old frontend goes away, new one connects" race-free (QEMU reconnecting, tests).
 *
 * On disconnect the backend is torn down (rings stopped, fds closed, guest memory unmapped, queues reset) and the
 * listener keeps listening, unless `exitOnDisconnect`, in which case it closes itself.
 *
 * Events:
 *   'listening' ()                     socket bound
 *   'connect'   (backend)              a frontend was accepted
 *   'disconnect'(reason: Error | null) the session ended (null: the frontend closed the connection cleanly)
 *   'error'     (err: VhostUserError)  a session ended on a protocol/transport error, or accept failed
 *                                      (emitted only when someone listens for it; otherwise logged)
 *   'close'     ()                     close() finished: socket file removed, poller stopped
 */

import { EventEmitter } from 'node:events';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { byteString, native } from '../native-loader.js';
import { VhostUserError } from '../errors.js';
import { log } from '../log.js';
import type { RequestServer } from '../virtio/queue-processor.js';
import { FdPoller } from './fd-poller.js';
import { VhostUserBackend, type BackendCore, type VhostUserBackendOptions } from './backend.js';

export interface VhostUserListenerOptions extends VhostUserBackendOptions {
  /** Path to bind and listen on (the file is removed by close()). */
  socketPath?: string;
  /** Instead of socketPath: a socket already bound and listening (handed over by a launcher); closed by close(). */
  listenFd?: number;
  core: BackendCore;
  server: RequestServer;
  /** Close the listener after the first session ends (the C virtiofsd's behaviour). Default false. */
  exitOnDisconnect?: boolean;
  /** listen(2) backlog. Default 4. */
  backlog?: number;
  /** Share an existing poller (not closed by close()). Default: the listener creates and owns one. */
  poller?: FdPoller;
}

export class VhostUserListener extends EventEmitter {
  readonly socketPath: string;
  private readonly opts: VhostUserListenerOptions;
  private readonly poller: FdPoller;
  private readonly ownsPoller: boolean;
  private listenFd = -1;
  /** O_PATH fd of the socket's directory, opened at listen(). */
  private socketDirFd = -1;
  private listenToken = 0;
  private session: VhostUserBackend | null = null;
  private closed = false;
  /** Sessions served so far. */
  sessions = 0;

  constructor(options: VhostUserListenerOptions) {
    super();
    this.opts = options;
    if ((options.socketPath === undefined) === (options.listenFd === undefined)) {
      throw new VhostUserError('VU_ERR_LISTEN', 'give either a socket path or a listening fd', { reconnect: false });
    }
    this.socketPath = options.socketPath ?? `fd ${options.listenFd}`;
    this.ownsPoller = options.poller === undefined;
    this.poller = options.poller ?? new FdPoller();
  }

  /** The active session's backend, if a frontend is connected. */
  get backend(): VhostUserBackend | null {
    return this.session;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /**
   * Binds and listens. A stale socket file (nobody listening) is replaced; a path where another process
   * listens, or a path that is not a socket, is a VhostUserError (reconnect: false).
   */
  listen(): void {
    if (this.closed) throw new VhostUserError('VU_ERR_CLOSED', 'listener is closed', { reconnect: false });
    if (this.listenFd >= 0) return;
    if (this.opts.listenFd !== undefined) {
      this.listenFd = this.opts.listenFd;
      try {
        this.listenToken = this.poller.add(this.listenFd, native.constants.EPOLLIN, () => this.onAcceptable());
      } catch (err) {
        throw new VhostUserError('VU_ERR_LISTEN', `cannot poll ${this.socketPath}`, { cause: err, reconnect: false });
      }
      log.info(`vhost-user: listening on ${this.socketPath}`);
      this.emit('listening');
      return;
    }
    const EADDRINUSE = native.constants.errno.EADDRINUSE ?? 98;
    let fd = native.unixListen(this.socketPath, this.opts.backlog ?? 4);
    if (fd === -EADDRINUSE) {
      this.removeStaleSocket();
      fd = native.unixListen(this.socketPath, this.opts.backlog ?? 4);
    }
    if (fd < 0) {
      throw new VhostUserError('VU_ERR_LISTEN', `cannot listen on ${this.socketPath}: ${native.strerror(-fd)}`,
        { errno: -fd, reconnect: false });
    }
    this.listenFd = fd;
    // Held so close() removes *this* socket file even after a sandbox pivot changed what the path names.
    this.socketDirFd = native.openat(native.constants.AT_FDCWD, byteString(path.dirname(this.socketPath)),
      native.constants.O_PATH | native.constants.O_DIRECTORY | native.constants.O_CLOEXEC, 0);
    try {
      this.listenToken = this.poller.add(fd, native.constants.EPOLLIN, () => this.onAcceptable());
    } catch (err) {
      native.close(fd);
      this.listenFd = -1;
      throw new VhostUserError('VU_ERR_LISTEN', `cannot poll ${this.socketPath}`, { cause: err, reconnect: false });
    }
    log.info(`vhost-user: listening on ${this.socketPath}`);
    this.emit('listening');
  }

  /** Ends the session (if any), stops listening, removes the socket file and stops the poller. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.session?.close(null);
    this.session = null;
    if (this.listenFd >= 0) {
      this.poller.remove(this.listenToken);
      native.close(this.listenFd);
      this.listenFd = -1;
      this.removeSocketFile();
    }
    if (this.ownsPoller) this.poller.close();
    this.emit('close');
  }

  private onAcceptable(): void {
    if (this.closed || this.session !== null) return; // not rearmed: pending frontends wait in the backlog
    const fd = native.accept(this.listenFd);
    if (fd < 0) {
      const EAGAIN = native.constants.errno.EAGAIN ?? 11;
      if (fd !== -EAGAIN) {
        this.reportError(new VhostUserError('VU_ERR_ACCEPT', `accept on ${this.socketPath}: ${native.strerror(-fd)}`, { errno: -fd }));
      }
      this.poller.rearm(this.listenToken);
      return;
    }
    let backend: VhostUserBackend;
    try {
      backend = new VhostUserBackend(fd, this.opts.core, this.opts.server, this.poller, this.opts,
        (reason) => this.onSessionEnd(backend, reason));
      this.session = backend;
      backend.start();
    } catch (err) {
      this.session = null;
      native.close(fd);
      this.reportError(new VhostUserError('VU_ERR_SESSION', 'cannot start a session', { cause: err }));
      this.poller.rearm(this.listenToken);
      return;
    }
    this.sessions++;
    log.info(`vhost-user: frontend connected on ${this.socketPath}`);
    this.emit('connect', backend);
  }

  private onSessionEnd(backend: VhostUserBackend, reason: Error | null): void {
    if (this.session !== backend) return;
    this.session = null;
    this.emit('disconnect', reason);
    if (reason !== null) this.reportError(reason);
    if (this.closed) return;
    if (this.opts.exitOnDisconnect) {
      this.close();
      return;
    }
    // Accept the next frontend (possibly already waiting in the backlog).
    this.poller.rearm(this.listenToken);
  }

  private reportError(err: Error): void {
    if (this.listenerCount('error') > 0) this.emit('error', err);
    else log.warn(`vhost-user: ${err.message}${err instanceof VhostUserError && err.code === 'VU_ERR_INVALID_MESSAGE' ? '; connection closed' : ''}`);
  }

  /** EADDRINUSE from bind: unlink the file if it is a socket nobody listens on; else a clear error. */
  /** Unlinks our socket file (if it is still a socket) relative to the directory it was created in. */
  private removeSocketFile(): void {
    const dirFd = this.socketDirFd;
    if (dirFd < 0) return;
    this.socketDirFd = -1;
    const C = native.constants;
    const name = byteString(path.basename(this.socketPath));
    const st = new Uint8Array(256);
    if (native.statx(dirFd, name, C.AT_SYMLINK_NOFOLLOW, C.STATX_BASIC_STATS, st, 0) === 0) {
      const mode = new DataView(st.buffer).getUint16(28, true); // struct statx.stx_mode
      if ((mode & C.S_IFMT) === C.S_IFSOCK) native.unlinkat(dirFd, name, 0);
    }
    native.close(dirFd);
  }

  private removeStaleSocket(): void {
    let st: fs.Stats;
    try {
      st = fs.lstatSync(this.socketPath);
    } catch {
      return; // vanished meanwhile: retry the bind
    }
    if (!st.isSocket()) {
      throw new VhostUserError('VU_ERR_ADDRESS_IN_USE', `${this.socketPath} exists and is not a socket`, { reconnect: false });
    }
    if (this.someoneListens()) {
      throw new VhostUserError('VU_ERR_ADDRESS_IN_USE',
        `${this.socketPath} is in use: another process is listening on it`, { reconnect: false, errno: native.constants.errno.EADDRINUSE });
    }
    log.info(`vhost-user: replacing stale socket ${this.socketPath}`);
    fs.unlinkSync(this.socketPath);
  }

  private someoneListens(): boolean {
    return socketInUse(this.socketPath);
  }
}

/**
 * Is a socket bound to this path in the listening state (in our network namespace)? Read from /proc/net/unix
 * first (non-intrusive: a probe connect looks like a frontend coming and going to the other daemon, and the C
 * virtiofsd exits then); only a socket not listed there (stale, or in another network namespace) is probed. The CLI asks before it
 * enters a sandbox's own network namespace, where the host's sockets are not listed.
 */
export function socketInUse(socketPath: string): boolean {
  const wanted = new Set([socketPath, path.resolve(socketPath)]);
  let table: string;
  try {
    table = fs.readFileSync('/proc/net/unix', 'utf8');
  } catch {
    const fd = native.unixConnect(socketPath);
    if (fd >= 0) native.close(fd);
    return fd >= 0;
  }
  const SO_ACCEPTCON = 0x10000;
  for (const line of table.split('\n').slice(1)) {
    const cols = line.trim().split(/\s+/);
    if (cols.length < 8) continue;
    const flags = parseInt(cols[3]!, 16);
    const p = cols.slice(7).join(' ');
    if ((flags & SO_ACCEPTCON) !== 0 && (wanted.has(p) || wanted.has(path.resolve(p)))) return true;
  }
  // Not listed: either stale, or bound by a daemon in another network namespace (a sandboxed one), which only a
  // connect can tell.
  const fd = native.unixConnect(socketPath);
  if (fd >= 0) native.close(fd);
  return fd >= 0;
}

/**
 * The vhost-user socket: listens on a Unix socket path (or serves on a listening socket it was handed, virtiofsd's
 * `--fd`) and serves one frontend at a time with a `VhostUserBackend`.
 *
 * One frontend at a time: while a frontend is connected the listening socket is not polled, so a second frontend
 * that connects waits in the listen backlog (its messages go unanswered) and is accepted as soon as the current
 * one disconnects. This makes "old frontend goes away, new one connects" race-free (QEMU reconnecting, tests).
 *
 * On disconnect the backend is torn down (rings stopped, fds closed, guest memory unmapped, queues reset) and the
 * listener keeps listening, unless `exitOnDisconnect`, in which case it closes itself.
 *
 * Events:
 *   'listening' ()                     socket bound
 *   'connect'   (backend)              a frontend was accepted
 *   'disconnect'(reason: Error | null) the connection ended (null: the frontend closed the connection cleanly)
 *   'error'     (err: VhostUserError)  a connection ended on a protocol/transport error, or accept failed
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
  /** The socket path to bind (one of socketPath and listenFd). */
  socketPath?: string;
  /**
   * An already listening Unix stream socket to serve on, e.g. inherited from libvirt or Kata (virtiofsd's `--fd`).
   * It is taken over: moved to a close-on-exec fd, made nonblocking, closed by close(); its path is not unlinked.
   */
  listenFd?: number;
  /**
   * With socketPath: the group that may connect (virtiofsd's --socket-group), by name (/etc/group) or number. The
   * socket is created `rwxrwx---` and chowned to it; without a group it is created `rwx------`, as virtiofsd's.
   */
  socketGroup?: string;
  core: BackendCore;
  server: RequestServer;
  /** Close the listener after the first connection ends (the C virtiofsd's behaviour). Default false. */
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
  private connection: VhostUserBackend | null = null;
  private closed = false;
  /** Frontend connections served so far. */
  connections = 0;

  constructor(options: VhostUserListenerOptions) {
    super();
    if ((options.socketPath === undefined) === (options.listenFd === undefined)) {
      throw new VhostUserError('VU_ERR_LISTEN', 'give one of socketPath and listenFd', { reconnect: false });
    }
    this.opts = options;
    this.socketPath = options.socketPath ?? `fd ${options.listenFd}`;
    this.ownsPoller = options.poller === undefined;
    this.poller = options.poller ?? new FdPoller();
  }

  /** The connected frontend's backend, if a frontend is connected. */
  get backend(): VhostUserBackend | null {
    return this.connection;
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
    const fd = this.opts.listenFd !== undefined ? adoptListeningSocket(this.opts.listenFd) : this.bindSocket();
    this.listenFd = fd;
    try {
      this.listenToken = this.poller.add(fd, native.constants.EPOLLIN, () => this.onAcceptable());
    } catch (err) {
      native.close(fd);
      this.listenFd = -1;
      throw new VhostUserError('VU_ERR_LISTEN', `cannot poll ${this.socketPath}`, { cause: err, reconnect: false });
    }
    // Kata's runtime-rs waits for the Rust virtiofsd's words "Waiting for vhost-user socket connection" on stderr
    // before it starts the VM (share_virtio_fs_standalone.rs): the same words say so here.
    log.info(`vhost-user: listening on ${this.socketPath}; Waiting for vhost-user socket connection`);
    this.emit('listening');
  }

  /** Ends the connection (if any), stops listening, removes the socket file and stops the poller. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.connection?.close(null);
    this.connection = null;
    if (this.listenFd >= 0) {
      this.poller.remove(this.listenToken);
      native.close(this.listenFd);
      this.listenFd = -1;
      this.removeSocketFile();
    }
    if (this.ownsPoller) this.poller.close();
    this.emit('close');
  }

  /** Binds socketPath with virtiofsd's permissions (see socketGroup) and listens. Returns the fd. */
  private bindSocket(): number {
    const socketPath = this.opts.socketPath!;
    const gid = this.opts.socketGroup !== undefined ? groupId(this.opts.socketGroup) : -1;
    const EADDRINUSE = native.constants.errno.EADDRINUSE ?? 98;
    const listen = (): number => {
      // bind(2) creates the socket file with 0777 & ~umask, owned by this thread's fsuid/fsgid: set the umask, and
      // the fsgid where we may (root), for that one call, so the file never exists with the wrong group (nothing
      // else of the daemon creates files at this point). Otherwise the chgrp below gives it the group.
      const previous = native.umask(gid >= 0 ? 0o007 : 0o077);
      const fsgid = gid >= 0 ? native.setfsgid(gid) : -1;
      try {
        return native.unixListen(socketPath, this.opts.backlog ?? 4);
      } finally {
        if (fsgid >= 0) native.setfsgid(fsgid);
        native.umask(previous);
      }
    };
    let fd = listen();
    if (fd === -EADDRINUSE) {
      this.removeStaleSocket();
      fd = listen();
    }
    if (fd < 0) {
      throw new VhostUserError('VU_ERR_LISTEN', `cannot listen on ${socketPath}: ${native.strerror(-fd)}`,
        { errno: -fd, reconnect: false });
    }
    const C = native.constants;
    if (gid >= 0) {
      const r = native.fchownat(C.AT_FDCWD, byteString(socketPath), -1, gid, C.AT_SYMLINK_NOFOLLOW);
      if (r < 0) {
        native.close(fd);
        fs.rmSync(socketPath, { force: true });
        throw new VhostUserError('VU_ERR_LISTEN', `--socket-group: cannot chgrp ${socketPath}: ${native.strerror(-r)}`,
          { errno: -r, reconnect: false });
      }
    }
    // Held so close() removes *this* socket file even after a sandbox pivot changed what the path names.
    this.socketDirFd = native.openat(C.AT_FDCWD, byteString(path.dirname(socketPath)),
      C.O_PATH | C.O_DIRECTORY | C.O_CLOEXEC, 0);
    return fd;
  }

  private onAcceptable(): void {
    if (this.closed || this.connection !== null) return; // not rearmed: pending frontends wait in the backlog
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
      this.connection = backend;
      backend.start();
    } catch (err) {
      this.connection = null;
      native.close(fd);
      this.reportError(new VhostUserError('VU_ERR_SESSION', 'cannot start serving a connection', { cause: err }));
      this.poller.rearm(this.listenToken);
      return;
    }
    this.connections++;
    log.info(`vhost-user: frontend connected on ${this.socketPath}`);
    this.emit('connect', backend);
  }

  private onSessionEnd(backend: VhostUserBackend, reason: Error | null): void {
    if (this.connection !== backend) return;
    this.connection = null;
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
/** Resolves a --socket-group value: a group name from /etc/group (as getgrnam(3) with files), else a number. */
export function groupId(group: string): number {
  let table = '';
  try {
    table = fs.readFileSync('/etc/group', 'utf8');
  } catch {
    // no /etc/group: only numbers work
  }
  for (const line of table.split('\n')) {
    const [name, , gid] = line.split(':');
    if (name === group && gid !== undefined && /^\d+$/.test(gid)) return Number(gid);
  }
  if (/^\d+$/.test(group) && Number(group) < 0xffffffff) return Number(group);
  throw new VhostUserError('VU_ERR_LISTEN', `--socket-group: no group '${group}' in /etc/group`, { reconnect: false });
}

export type UnixSocketState = 'listening' | 'not-listening' | 'not-stream' | 'unlisted';

/**
 * What /proc/net/unix says of the Unix socket open as `fd` (found by inode). `unlisted`: the socket belongs to
 * another network namespace (e.g. it was inherited into the sandbox's), so the table cannot tell.
 * Throws when `fd` is not open or not a socket.
 */
export function unixSocketState(fd: number): UnixSocketState {
  const C = native.constants;
  const st = new Uint8Array(256);
  const r = native.statx(fd, '', C.AT_EMPTY_PATH, C.STATX_BASIC_STATS, st, 0);
  if (r < 0) throw new VhostUserError('VU_ERR_LISTEN', `--fd=${fd}: ${native.strerror(-r)}`, { errno: -r, reconnect: false });
  const dv = new DataView(st.buffer);
  if ((dv.getUint16(28, true) & C.S_IFMT) !== C.S_IFSOCK) { // struct statx.stx_mode
    throw new VhostUserError('VU_ERR_LISTEN', `--fd=${fd} is not a socket`, { reconnect: false });
  }
  const inode = dv.getBigUint64(32, true).toString(); // struct statx.stx_ino
  let table = '';
  try {
    table = fs.readFileSync('/proc/net/unix', 'utf8');
  } catch {
    return 'unlisted';
  }
  // Columns: Num RefCount Protocol Flags Type St Inode [Path]
  for (const line of table.split('\n').slice(1)) {
    const cols = line.trim().split(/\s+/);
    if (cols[6] !== inode) continue;
    if (parseInt(cols[4]!, 16) !== 1) return 'not-stream'; // SOCK_STREAM
    return (parseInt(cols[3]!, 16) & 0x10000) !== 0 ? 'listening' : 'not-listening'; // __SO_ACCEPTCON
  }
  return 'unlisted';
}

/**
 * Takes over an inherited listening socket: checks it, moves it to a close-on-exec fd (an inherited fd is not, and
 * must not leak into anything the daemon might start) and makes it nonblocking (accept runs from the poller).
 */
function adoptListeningSocket(fd: number): number {
  const state = unixSocketState(fd);
  if (state === 'not-stream') throw new VhostUserError('VU_ERR_LISTEN', `--fd=${fd} is not a Unix stream socket`, { reconnect: false });
  if (state === 'not-listening') {
    throw new VhostUserError('VU_ERR_LISTEN', `--fd=${fd} is a socket that is not listening (listen(2) it first)`, { reconnect: false });
  }
  const own = native.dup(fd); // F_DUPFD_CLOEXEC
  if (own < 0) throw new VhostUserError('VU_ERR_LISTEN', `--fd=${fd}: ${native.strerror(-own)}`, { errno: -own, reconnect: false });
  native.close(fd);
  const r = native.setNonblocking(own, true);
  if (r < 0) {
    native.close(own);
    throw new VhostUserError('VU_ERR_LISTEN', `--fd=${fd}: ${native.strerror(-r)}`, { errno: -r, reconnect: false });
  }
  return own;
}

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

/**
 * DevFuseSession: serves a FileSystem as a FUSE mount on the host, through /dev/fuse, with the same FuseServer and
 * the same core codec as the vhost-user path. Only the transport differs:
 *
 *   vhost-user:  kick -> queuePop (a descriptor chain in guest RAM) -> serveCurrent -> used ring -> call
 *   /dev/fuse:   EPOLLIN -> read(2) into the core's LINEAR_IN -> linearPop -> serveCurrent -> write(2) of
 *                LINEAR_OUT[0, linearReplyLen)
 *
 * One read(2) returns exactly one request; one write(2) is exactly one reply. WRITE payloads stay in LINEAR_IN
 * (pwritev from there), READ data lands in LINEAR_OUT after the 16-byte header (preadv to there).
 *
 * Mount: open("/dev/fuse", O_RDWR|O_NONBLOCK|O_CLOEXEC), then mount(2) with fstype `fuse.<subtype>` and the
 * options the kernel requires (fd, rootmode, user_id, group_id) plus allow_other and default_permissions: the
 * daemon runs as root and, except for the creating ops (run under the caller's fsuid/fsgid), does not check
 * permissions itself, so the kernel must (FUSE does not even send the caller's supplementary groups).
 *
 * End of the session, whichever comes first:
 *   - close() (the CLI calls it on SIGINT/SIGTERM): umount2(UMOUNT_NOFOLLOW), or a lazy MNT_DETACH when the
 *     mount is busy; then /dev/fuse is closed, which aborts whatever the kernel still had queued.
 *   - read(2) answers ENODEV: the kernel ended the connection (umount from outside, an abort through
 *     /sys/fs/fuse/connections). A mount still there (aborted) is detached.
 *   - process exit without close(): an 'exit' hook detaches the mount, so a crash does not leave a dead mount
 *     behind (SIGKILL cannot be caught: then `umount -l` is the user's).
 * umount2 never waits for this daemon's JS thread: the kernel aborts the FUSE connection before it syncs the
 * superblock, so nothing deadlocks (but, as with any FUSE server, data still in a writeback cache is lost).
 *
 * Events: 'close' (reason: Error | null) once, when the session has ended and every fd is closed.
 */
import { EventEmitter } from 'node:events';
import { readFileSync, realpathSync, statSync } from 'node:fs';
import { native } from '../native-loader.js';
import { ConfigError, SystemError } from '../errors.js';
import { log } from '../log.js';
import { Core, LINEAR_QUEUE, POP_REQUEST } from '../core.js';
import { FdPoller } from '../vhost-user/fd-poller.js';
import type { FuseServer } from '../fuse/server.js';
import { OUT_HEADER, encodeOutHeader } from '../fuse/protocol.js';
import type { ParkedRequest, ReplyParking } from '../virtio/queue-processor.js';

const C = native.constants;
const E = C.errno;

/** Requests served per poller callback before yielding to the event loop (signals, timers). */
const BATCH = 64;
/** The largest READ we let the kernel send (its mount option max_read) and what LINEAR_OUT holds after the header. */
const MAX_IO = 1024 * 1024;

export interface DevFuseOptions {
  /** Directory to mount on (must exist, must not be inside the shared directory). */
  mountpoint: string;
  /** The shared directory, refused as (or as a parent of) the mountpoint, and the source of the root's mode. */
  sharedDir?: string;
  /** mount(2) source, shown in /proc/self/mountinfo. Default `virtiofsd-ts`. */
  source?: string;
  /** fstype is `fuse.<subtype>`. Default `virtiofsd-ts`. */
  subtype?: string;
  /** Let users other than the daemon's use the mount (allow_other). Default true. */
  allowOther?: boolean;
  /** Mount read-only (MS_RDONLY). Default false. */
  readonly?: boolean;
  /** The root's mode for the mount (rootmode=) when there is no sharedDir to take it from. Default 0o40755. */
  rootMode?: number;
}

/** FUSE_MAX_PAGES for the /dev/fuse transport: the kernel's pages are the host's, LINEAR_OUT holds 1 MiB of data. */
export function devFuseMaxPages(): number {
  return Math.max(1, Math.min(256, Math.floor(MAX_IO / C.PAGE_SIZE)));
}

/** Unescapes a /proc/self/mountinfo path field (\040 for space, \011, \012, \134). */
function unescapeMountPath(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** The mounts at `path` in this process's mount namespace: "major:minor" and fstype, last mounted last. */
export function mountsAt(path: string): { dev: string; fstype: string }[] {
  let text: string;
  try {
    text = readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return [];
  }
  const out: { dev: string; fstype: string }[] = [];
  for (const line of text.split('\n')) {
    const f = line.split(' ');
    if (f.length < 10 || unescapeMountPath(f[4]) !== path) continue;
    const sep = f.indexOf('-', 6);
    if (sep < 0) continue;
    out.push({ dev: f[2], fstype: f[sep + 1] });
  }
  return out;
}

export class DevFuseSession extends EventEmitter implements ReplyParking {
  /** The mountpoint, resolved (as it appears in /proc/self/mountinfo). */
  readonly mountpoint: string;
  readonly fstype: string;
  /** Resolves when the session has ended (close(), the kernel's ENODEV). */
  readonly closed: Promise<void>;
  private fd = -1;
  private poller: FdPoller | null = null;
  private token = 0;
  /** "major:minor" of our mount, to never unmount something mounted over it later. */
  private dev = '';
  private ended = false;
  private resolveClosed!: () => void;
  private readonly exitHook = (): void => this.detachOnExit();
  /** Requests served; messages the core refused (logged). */
  requests = 0;
  badMessages = 0;
  /** fuse_out_header of a parked request's answer. */
  private readonly parkedReply = new DataView(new ArrayBuffer(OUT_HEADER.SIZE));

  private constructor(private readonly core: Core, private readonly server: FuseServer,
    private readonly options: DevFuseOptions) {
    super();
    let mp: string;
    try {
      mp = realpathSync(options.mountpoint);
    } catch (e) {
      throw new ConfigError(`--mountpoint ${options.mountpoint}: ${(e as NodeJS.ErrnoException).code ?? e}`);
    }
    if (!statSync(mp).isDirectory()) throw new ConfigError(`--mountpoint ${options.mountpoint}: not a directory`);
    if (options.sharedDir !== undefined) {
      const shared = realpathSync(options.sharedDir);
      // The daemon would look itself up through its own mount and wait for its own answer forever.
      if (mp === shared || mp.startsWith(shared.endsWith('/') ? shared : `${shared}/`)) {
        throw new ConfigError(`--mountpoint ${options.mountpoint}: must not be inside --shared-dir`);
      }
    }
    this.mountpoint = mp;
    this.fstype = `fuse.${options.subtype ?? 'virtiofsd-ts'}`;
    this.closed = new Promise((resolve) => { this.resolveClosed = resolve; });
    server.attachParking(LINEAR_QUEUE, this);
  }

  /** ReplyParking: the current request stays unanswered (nothing is written for it now). */
  park(): ParkedRequest {
    const unique = this.core.reqUnique();
    this.core.requestPark();
    return { queue: LINEAR_QUEUE, head: 0, unique };
  }

  /** ReplyParking: a parked request's answer is a 16-byte fuse_out_header written like any reply. */
  answer(p: ParkedRequest, error: number): void {
    if (this.ended) return;
    const v = this.parkedReply;
    const w = native.write(this.fd, v, 0, encodeOutHeader(v, error, p.unique));
    if (w < 0 && w !== -E.ENOENT) log.warn(`/dev/fuse: reply to a parked request refused: ${native.strerror(-w)}`);
  }

  /** ReplyParking: the parked request current again, answered into LINEAR_OUT (no other request is current). */
  resume(p: ParkedRequest, opcode: number): number {
    if (this.ended) return -E.EINVAL;
    const c = this.core;
    return c.linearResume(c.linearOutPtr, c.linearBufSize, p.unique, opcode);
  }

  /** ReplyParking: writes the resumed request's reply, as serve() does. */
  delivered(): void {
    const c = this.core;
    const len = c.linearReplyLen();
    if (len === 0 || this.ended) return;
    const w = native.write(this.fd, c.memoryBuffer(), c.linearOutPtr, len);
    if (w < 0 && w !== -E.ENOENT) log.warn(`/dev/fuse: reply of ${len} bytes refused: ${native.strerror(-w)}`);
  }

  /**
   * Opens /dev/fuse, mounts it at options.mountpoint and starts serving. The core must be one no vhost-user
   * queue uses (its LINEAR buffers and current request are this session's). Throws ConfigError / SystemError.
   */
  static mount(core: Core, server: FuseServer, options: DevFuseOptions): DevFuseSession {
    const s = new DevFuseSession(core, server, options);
    s.start();
    return s;
  }

  private start(): void {
    const fd = native.openat(C.AT_FDCWD, '/dev/fuse', C.O_RDWR | C.O_NONBLOCK, 0);
    if (fd < 0) throw new SystemError('open', -fd, native.strerror(-fd), '/dev/fuse');
    let rootMode = 0o040000 | ((this.options.rootMode ?? 0o755) & 0o7777);
    if (this.options.sharedDir !== undefined) rootMode = 0o040000 | (statSync(this.options.sharedDir).mode & 0o7777);
    const data = [
      `fd=${fd}`, `rootmode=${rootMode.toString(8)}`, `user_id=${process.getuid?.() ?? 0}`,
      `group_id=${process.getgid?.() ?? 0}`, 'default_permissions', `max_read=${MAX_IO}`,
    ];
    if (this.options.allowOther ?? true) data.push('allow_other');
    const flags = C.MS_NOSUID | C.MS_NODEV | (this.options.readonly ? C.MS_RDONLY : 0);
    const before = new Set(mountsAt(this.mountpoint).map((m) => m.dev));
    const r = native.mount(this.options.source ?? 'virtiofsd-ts', this.mountpoint, this.fstype, flags, data.join(','));
    if (r < 0) {
      native.close(fd);
      throw new SystemError('mount', -r, native.strerror(-r), this.mountpoint);
    }
    this.fd = fd;
    const ours = mountsAt(this.mountpoint).filter((m) => m.fstype === this.fstype && !before.has(m.dev));
    this.dev = ours.length > 0 ? ours[ours.length - 1].dev : '';
    process.on('exit', this.exitHook);
    try {
      this.poller = new FdPoller();
      this.token = this.poller.add(fd, C.EPOLLIN, () => this.onReadable());
    } catch (e) {
      this.finish(e as Error);
      throw e;
    }
    log.debug(`/dev/fuse: mounted ${this.fstype} at ${this.mountpoint} (dev ${this.dev})`);
  }

  /** Unmounts (lazily if busy) and closes /dev/fuse. Idempotent; resolves when done. */
  close(): Promise<void> {
    this.finish(null);
    return this.closed;
  }

  private onReadable(): void {
    const c = this.core;
    const size = c.linearBufSize;
    for (let i = 0; i < BATCH && !this.ended; i++) {
      const n = native.read(this.fd, c.memoryBuffer(), c.linearInPtr, size);
      if (n === -E.EAGAIN) break;
      if (n === -E.EINTR) continue;
      if (n === -E.ENODEV) {
        log.info(`/dev/fuse: the kernel ended the session (${this.mountpoint} unmounted or aborted)`);
        this.finish(null);
        return;
      }
      if (n < 0) {
        this.finish(new SystemError('read', -n, native.strerror(-n), '/dev/fuse'));
        return;
      }
      this.serve(n);
    }
    // One-shot registration: when more is pending the poller fires again at once, after other callbacks ran.
    if (!this.ended) this.poller?.rearm(this.token);
  }

  /** One request of n bytes at LINEAR_IN: the same FuseServer as the virtqueues, the reply out by one write(2). */
  private serve(n: number): void {
    const c = this.core;
    const r = c.linearPop(c.linearInPtr, n, c.linearOutPtr, c.linearBufSize);
    if (r === POP_REQUEST) {
      this.requests++;
      this.server.serveCurrent();
    } else {
      this.badMessages++;
      log.warn(`/dev/fuse: malformed message of ${n} bytes (${r})`);
    }
    const len = c.linearReplyLen();
    if (len === 0) return;
    const w = native.write(this.fd, c.memoryBuffer(), c.linearOutPtr, len);
    // ENOENT: the request is gone (interrupted, or the connection aborted): nobody waits for the answer.
    if (w < 0 && w !== -E.ENOENT) {
      if (w === -E.ENODEV) this.finish(null);
      else log.warn(`/dev/fuse: reply of ${len} bytes refused: ${native.strerror(-w)}`);
    }
  }

  /** Whether our mount is still the top one at the mountpoint. */
  private mounted(): boolean {
    const at = mountsAt(this.mountpoint);
    if (at.length === 0) return false;
    const top = at[at.length - 1];
    return top.fstype === this.fstype && (this.dev === '' || top.dev === this.dev);
  }

  private unmount(): void {
    if (!this.mounted()) return;
    let r = native.umount2(this.mountpoint, C.UMOUNT_NOFOLLOW);
    if (r === -E.EBUSY) {
      log.info(`/dev/fuse: ${this.mountpoint} is busy: detaching it (umount -l)`);
      r = native.umount2(this.mountpoint, C.MNT_DETACH | C.UMOUNT_NOFOLLOW);
    }
    if (r < 0 && r !== -E.EINVAL) log.warn(`/dev/fuse: umount ${this.mountpoint}: ${native.strerror(-r)}`);
  }

  private finish(reason: Error | null): void {
    if (this.ended) return;
    this.ended = true;
    if (reason !== null) log.error(`/dev/fuse: ${reason.message}`);
    try {
      this.unmount();
    } finally {
      process.removeListener('exit', this.exitHook);
      if (this.poller !== null) {
        this.poller.remove(this.token);
        this.poller.close();
        this.poller = null;
      }
      if (this.fd >= 0) native.close(this.fd);
      this.fd = -1;
      this.server.endSession();
      this.resolveClosed();
      this.emit('close', reason);
    }
  }

  private detachOnExit(): void {
    if (this.ended || !this.mounted()) return;
    native.umount2(this.mountpoint, C.MNT_DETACH | C.UMOUNT_NOFOLLOW);
  }
}

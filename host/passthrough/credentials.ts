/**
 * Filesystem credentials of the thread that serves requests (the JS thread).
 *
 * Linux keeps credentials per thread, and setfsuid/setfsgid (raw syscalls in the binding; glibc never broadcasts
 * them to other threads) change only the calling one: libuv's pool threads, which run Node's async `fs` calls,
 * keep the daemon's identity. `asCaller(ctx, fn)` runs `fn` with fsuid/fsgid = the caller's and restores the
 * daemon's before returning, so nothing else (control plane, timers, Node's own sync `fs` calls) ever runs
 * switched. It costs four syscalls, and none when the caller already is the daemon's identity (guest root
 * against a root daemon).
 *
 * Only the fs ids change: supplementary groups stay the daemon's (setgroups is process-wide in glibc and FUSE 7.37
 * does not tell us the caller's). Changing fsuid from 0 to another id drops the filesystem capabilities
 * (CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_FOWNER, CAP_FSETID, ...) from the effective set; back to 0 restores them.
 *
 * ID translation (--translate-uid/--translate-gid, id-map.ts): `toHost(ctx)` gives the caller's host identity (or
 * -EPERM for a forbidden guest id) and `attrToGuest` rewrites the owner of attributes the guest is about to see.
 */
import { native } from '../native-loader.js';
import { log } from '../log.js';
import { STATX, type AttrTarget, type Context } from '../fuse/filesystem.js';
import { FORBIDDEN, IdMap } from './id-map.js';

const E = native.constants.errno;

export class FsCredentials {
  /** The daemon's own fs ids (restored after every switch). */
  readonly uid: number;
  readonly gid: number;
  /** Whether switching is possible (the daemon has CAP_SETUID/CAP_SETGID: it runs as root). */
  readonly enabled: boolean;
  readonly uidMap: IdMap;
  readonly gidMap: IdMap;
  /** Both maps are empty: ids pass unchanged and nothing is rewritten. */
  private readonly identity: boolean;

  constructor(enabled = process.geteuid?.() === 0, uidMap = new IdMap(), gidMap = new IdMap()) {
    this.uid = native.setfsuid(-1);
    this.gid = native.setfsgid(-1);
    this.enabled = enabled;
    this.uidMap = uidMap;
    this.gidMap = gidMap;
    this.identity = uidMap.isIdentity && gidMap.isIdentity;
  }

  /** The caller with host uid/gid, or -EPERM when a forbid-guest rule covers either. */
  toHost(ctx: Context): Context | number {
    if (this.identity) return ctx;
    const uid = this.uidMap.toHost(ctx.uid);
    const gid = this.gidMap.toHost(ctx.gid);
    if (uid === FORBIDDEN || gid === FORBIDDEN) return -E.EPERM;
    return uid === ctx.uid && gid === ctx.gid ? ctx : { uid, gid, pid: ctx.pid };
  }

  /** A uid (or gid) from the guest, for chown: the host id, or FORBIDDEN. */
  uidToHost(uid: number): number {
    return this.uidMap.toHost(uid);
  }
  gidToHost(gid: number): number {
    return this.gidMap.toHost(gid);
  }

  /** Rewrites the owner and group of a statx the host filled into the guest's ids. */
  attrToGuest(attr: AttrTarget): void {
    if (this.identity) return;
    const v = attr.view;
    const o = attr.offset;
    v.setUint32(o + STATX.uid, this.uidMap.toGuest(v.getUint32(o + STATX.uid, true)), true);
    v.setUint32(o + STATX.gid, this.gidMap.toGuest(v.getUint32(o + STATX.gid, true)), true);
  }

  /** The caller is the daemon's own identity: nothing to switch. */
  isDaemon(ctx: Context): boolean {
    return ctx.uid === this.uid && ctx.gid === this.gid;
  }

  /**
   * Runs `fn` with the caller's fsuid/fsgid (when enabled and different), restoring the daemon's afterwards, even
   * if `fn` throws. -EPERM if the switch did not take effect (fn is not called).
   */
  asCaller<T>(ctx: Context, fn: () => T | number): T | number {
    if (!this.enabled || this.isDaemon(ctx)) return fn();
    // gid first: setfsgid needs CAP_SETGID, which is not among the capabilities a non-zero fsuid drops anyway.
    if (native.setfsgid(ctx.gid) < 0) return -E.EPERM;
    if (native.setfsuid(ctx.uid) < 0) {
      this.restore();
      return -E.EPERM;
    }
    try {
      return fn();
    } finally {
      this.restore();
    }
  }

  /** Back to the daemon's fs ids. */
  restore(): void {
    const u = native.setfsuid(this.uid);
    const g = native.setfsgid(this.gid);
    if (u < 0 || g < 0) log.error('passthrough: could not restore the daemon\'s filesystem credentials');
  }
}

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
 */
import { native } from '../native-loader.js';
import { log } from '../log.js';
import type { Context } from '../fuse/filesystem.js';

const E = native.constants.errno;

export class FsCredentials {
  /** The daemon's own fs ids (restored after every switch). */
  readonly uid: number;
  readonly gid: number;
  /** Whether switching is possible (the daemon has CAP_SETUID/CAP_SETGID: it runs as root). */
  readonly enabled: boolean;

  constructor(enabled = process.geteuid?.() === 0) {
    this.uid = native.setfsuid(-1);
    this.gid = native.setfsgid(-1);
    this.enabled = enabled;
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

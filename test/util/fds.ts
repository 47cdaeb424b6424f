/**
 * The open fds of this process, for leak checks: the entries of /proc/self/fd, less the one the listing itself
 * holds open while it reads them. Test-only, so it lives here rather than in the addon.
 */
import { readdirSync } from 'node:fs';

export function countOpenFds(): number {
  return readdirSync('/proc/self/fd').length - 1;
}

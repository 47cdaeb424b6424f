/**
 * The open fds of this process, for leak checks: the entries of /proc/self/fd, less the one the listing itself
 * holds open while it reads them. Test-only, so it lives here rather than in the addon.
 */
import { lstatSync, readdirSync, readlinkSync } from 'node:fs';

export function countOpenFds(): number {
  return readdirSync('/proc/self/fd').length - 1;
}

/** The open fd numbers (the listing's own fd, closed by the time this returns, is left out). */
export function openFds(): Set<number> {
  const open = new Set<number>();
  for (const name of readdirSync('/proc/self/fd')) {
    try {
      lstatSync(`/proc/self/fd/${name}`);
      open.add(Number(name));
    } catch {
      // the listing's fd
    }
  }
  return open;
}

/**
 * The fds open now that were not open in `before`: a leak check that a runtime's own fds closing meanwhile (Bun
 * closes some of its own lazily) cannot upset, as a count can.
 */
export function fdsOpenedSince(before: Set<number>): number[] {
  return [...openFds()].filter((fd) => !before.has(fd));
}

/**
 * How many fds of this process point at a memfd created with `name`: a leak check on the fds of one object, which
 * neither a runtime's own fds closing meanwhile nor fd-number reuse can upset.
 */
export function memfdsNamed(name: string): number {
  let count = 0;
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`).startsWith(`/memfd:${name} `)) count++;
    } catch {
      // the listing's fd, or one closed meanwhile
    }
  }
  return count;
}

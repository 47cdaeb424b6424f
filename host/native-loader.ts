/**
 * Loads the native addon (bindings/, built by node-gyp) and exports it as `native`.
 *
 * The package root is found relative to this file: compiled it runs from `dist/host/` (root two levels up),
 * unbuilt from `host/` (root one level up). Node, Bun and Deno all load `.node` files through createRequire.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Native } from './native.js';

const ADDON = join('build', 'Release', 'virtiofsd_native.node');

function candidates(): string[] {
  const here = dirname(fileURLToPath(import.meta.url));
  return [resolve(here, '..', '..', ADDON), resolve(here, '..', ADDON)];
}

function load(): Native {
  const require = createRequire(import.meta.url);
  const tried = candidates();
  const found = tried.find((path) => existsSync(path));
  let reason = 'not found';
  if (found !== undefined) {
    try {
      return require(found) as Native;
    } catch (err) {
      reason = err instanceof Error ? err.message : String(err);
    }
  }
  throw new Error(
    `virtiofsd-ts: native addon not built: run \`npm run build:native\` (${found ?? tried.join(' or ')}: ${reason})`,
  );
}

/** The native surface declared in native.d.ts. */
export const native: Native = load();

/**
 * File names cross the *at bindings as byte strings: one char per byte (0..255), so a name that is not UTF-8
 * reaches the syscall unchanged. Names from the guest are byte strings already (fuse/names.ts); a path typed by a
 * user (the shared dir, the socket path) is UTF-8 text and goes through this first.
 */
export function byteString(text: string): string {
  return Buffer.from(text, 'utf8').toString('latin1');
}

/**
 * Where the package's own files are (package.json, dist/core.wasm, build/ and prebuilds/ with the native addon).
 * Found from this module's location, not from the working directory: compiled it runs from `dist/host/`
 * (root two levels up), run from source (Bun, Deno) from `host/` (root one level up). No side effects, so
 * core.ts can use it without loading the addon.
 */
import { basename, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export function packageRoot(): string {
  const parent = resolve(dirname(fileURLToPath(import.meta.url)), '..');
  return basename(parent) === 'dist' ? resolve(parent, '..') : parent;
}

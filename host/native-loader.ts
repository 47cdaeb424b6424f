/**
 * Loads the native addon (bindings/) and exports it as `native`.
 *
 * Where it may be, in order (the first that loads wins):
 *   build/Release/virtiofsd_native.node                     built from source by node-gyp (a checkout, or an
 *                                                            install on a platform without a prebuilt binary)
 *   prebuilds/<platform>-<arch>/virtiofsd_native.napi<N>.node  shipped in the npm package (scripts/prebuild.mjs)
 * A local build comes first so that a developer's rebuilt addon is never shadowed by an older shipped one. A
 * prebuilt binary needs N-API version N (Node-API is ABI-stable: one binary serves every Node, Bun and Deno that
 * has N); the highest N this runtime offers is tried first. Node, Bun and Deno all load `.node` files through
 * createRequire. The sandbox helper executable sits next to whichever addon was loaded (`addonPath`).
 */
import { existsSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import type { Native } from './native.js';
import { packageRoot } from './package-root.js';

const ADDON_NAME = 'virtiofsd_native';
const PREBUILT = new RegExp(`^${ADDON_NAME}\\.napi(\\d+)\\.node$`);

/** The places to look, best first. */
export function addonCandidates(root: string): string[] {
  const list = [join(root, 'build', 'Release', `${ADDON_NAME}.node`)];
  const dir = join(root, 'prebuilds', `${process.platform}-${process.arch}`);
  // A runtime that does not say its N-API version gets every prebuilt tried (a failed load is reported below).
  const runtimeNapi = process.versions.napi === undefined ? Infinity : Number(process.versions.napi);
  const prebuilt = existsSync(dir) ? readdirSync(dir).flatMap((name) => {
    const m = PREBUILT.exec(name);
    return m && Number(m[1]) <= runtimeNapi ? [{ name, napi: Number(m[1]) }] : [];
  }) : [];
  prebuilt.sort((a, b) => b.napi - a.napi);
  return [...list, ...prebuilt.map((p) => join(dir, p.name))];
}

function load(): { native: Native; path: string } {
  const require = createRequire(import.meta.url);
  const root = packageRoot();
  const reasons: string[] = [];
  for (const path of addonCandidates(root)) {
    if (!existsSync(path)) {
      reasons.push(`${path}: not found`);
      continue;
    }
    try {
      return { native: require(path) as Native, path };
    } catch (err) {
      reasons.push(`${path}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  reasons.push(`no prebuilt binary for ${process.platform}-${process.arch}, N-API ${process.versions.napi ?? 'none'}`);
  throw new Error(
    `virtiofsd-ts: native addon not built: run \`npm run build:native\` in a checkout, or \`npm rebuild virtiofsd-ts\` ` +
    `with a C toolchain where it is installed (${reasons.join('; ')})`,
  );
}

const loaded = load();

/** The native surface declared in native.d.ts. */
export const native: Native = loaded.native;

/** The file the addon was loaded from; the sandbox helper executable built or shipped with it is beside it. */
export const addonPath: string = loaded.path;

/**
 * File names cross the *at bindings as byte strings: one char per byte (0..255), so a name that is not UTF-8
 * reaches the syscall unchanged. Names from the guest are byte strings already (fuse/names.ts); a path typed by a
 * user (the shared dir, the socket path) is UTF-8 text and goes through this first.
 */
export function byteString(text: string): string {
  return Buffer.from(text, 'utf8').toString('latin1');
}

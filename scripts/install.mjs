// The package's `install` script. An installed package carries prebuilt addons (prebuilds/<platform>-<arch>/);
// when the one for this machine loads, nothing is compiled, so no compiler is needed. Otherwise (another
// platform, another libc) the addon is built from source with node-gyp, which needs a C compiler, make and
// python3. A development checkout (a .git beside package.json) always builds from source, as does
// `npm install --build-from-source`. node-gyp's `rebuild` cleans build/ only; the shipped core (dist/core.wasm)
// and prebuilds/ are outside it.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { runNodeGyp } from './node-gyp.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const loader = join(root, 'dist', 'host', 'native-loader.js');

/** Why the shipped binaries cannot be used here, or undefined when they can. */
async function prebuiltProblem() {
  if (existsSync(join(root, '.git'))) return 'a development checkout';
  if (process.env.npm_config_build_from_source === 'true') return '--build-from-source';
  if (!existsSync(loader)) return `${loader} is missing`;
  let loaded;
  try {
    loaded = await import(pathToFileURL(loader).href);
  } catch (err) {
    return err.message;
  }
  // The namespace sandbox execs the helper shipped beside the addon: it must run here too (same libc).
  const helper = join(dirname(loaded.addonPath), 'virtiofsd-ts-sandbox');
  const r = spawnSync(helper, [], { encoding: 'utf8' });
  if (r.error || r.status !== 125 || !r.stderr.includes('usage: virtiofsd-ts-sandbox')) {
    return `${helper} does not run here (${r.error?.message ?? `exit ${r.status}: ${r.stderr.trim()}`})`;
  }
  console.log(`virtiofsd-ts: the native addon ${loaded.addonPath} loads here; nothing to build`);
  return undefined;
}

const problem = await prebuiltProblem();
if (problem !== undefined) {
  console.log(`virtiofsd-ts: building the native addon from source (${problem})`);
  const status = runNodeGyp(['rebuild'], { cwd: root });
  if (status !== 0) {
    console.error('virtiofsd-ts: building the native addon failed; it needs a C compiler, make and python3 ' +
      '(Debian: apt-get install build-essential python3)');
  }
  process.exit(status);
}

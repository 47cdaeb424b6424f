/**
 * Where host/native-loader.ts finds the addon: a node-gyp build (build/Release) first, then the prebuilt binary
 * the npm package ships (prebuilds/<platform>-<arch>/virtiofsd_native.napi<N>.node) for an N-API version this
 * runtime has. Each case is a scratch package root holding a copy of the compiled loader and the binaries it
 * should or should not pick, imported in a fresh node process.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));
const BUILT = join(ROOT, 'build', 'Release', 'virtiofsd_native.node');
const PLATFORM_DIR = `${process.platform}-${process.arch}`;
const NAPI = Number(process.versions.napi);

const scratch: string[] = [];
test.after(() => {
  for (const dir of scratch) fs.rmSync(dir, { recursive: true, force: true });
});

/** A package root with the compiled loader, and the addon copied to each of `addons` (paths under the root). */
function packageWith(addons: Record<string, string | Buffer>): string {
  const root = fs.mkdtempSync(join(tmpdir(), 'vfs-loader-'));
  scratch.push(root);
  fs.mkdirSync(join(root, 'dist', 'host'), { recursive: true });
  for (const file of ['native-loader.js', 'package-root.js']) {
    fs.copyFileSync(join(ROOT, 'dist', 'host', file), join(root, 'dist', 'host', file));
  }
  fs.writeFileSync(join(root, 'package.json'), '{"type":"module"}');
  for (const [rel, content] of Object.entries(addons)) {
    fs.mkdirSync(join(root, rel, '..'), { recursive: true });
    if (typeof content === 'string') fs.copyFileSync(content, join(root, rel));
    else fs.writeFileSync(join(root, rel), content);
  }
  return root;
}

/** Imports the root's loader in a new process: where it loaded the addon from, or its error message. */
function load(root: string): { path?: string; error?: string } {
  const loader = join(root, 'dist', 'host', 'native-loader.js');
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', `
    import(${JSON.stringify(loader)}).then(
      (m) => console.log(JSON.stringify({ path: m.addonPath, works: m.native.strerror(2) })),
      (e) => console.log(JSON.stringify({ error: e.message })));`], { encoding: 'utf8', timeout: 10000 });
  assert.is(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout) as { path?: string; works?: string; error?: string };
  if (out.path !== undefined) assert.is(out.works, 'No such file or directory');
  return out.path !== undefined ? { path: out.path } : { error: out.error };
}

test('a prebuilt binary for this platform and N-API version is loaded when nothing was built', () => {
  const rel = join('prebuilds', PLATFORM_DIR, `virtiofsd_native.napi${NAPI}.node`);
  const root = packageWith({ [rel]: BUILT });
  assert.equal(load(root), { path: join(root, rel) });
});

test('a build from source wins over the prebuilt binary', () => {
  const root = packageWith({
    [join('build', 'Release', 'virtiofsd_native.node')]: BUILT,
    [join('prebuilds', PLATFORM_DIR, 'virtiofsd_native.napi8.node')]: BUILT,
  });
  assert.equal(load(root), { path: join(root, 'build', 'Release', 'virtiofsd_native.node') });
});

test('prebuilt binaries for a newer N-API, another arch or another platform are not used', () => {
  const other = process.arch === 'arm64' ? 'x64' : 'arm64';
  const root = packageWith({
    [join('prebuilds', PLATFORM_DIR, `virtiofsd_native.napi${NAPI + 1}.node`)]: BUILT,
    [join('prebuilds', `${process.platform}-${other}`, 'virtiofsd_native.napi8.node')]: BUILT,
    [join('prebuilds', `darwin-${process.arch}`, 'virtiofsd_native.napi8.node')]: BUILT,
  });
  const { error } = load(root);
  assert.ok(error?.startsWith('virtiofsd-ts: native addon not built'), error);
  assert.ok(error?.includes(`no prebuilt binary for ${PLATFORM_DIR}, N-API ${NAPI}`), error);
});

test('of several prebuilt N-API versions the newest usable one is loaded; one that fails to load is skipped', () => {
  const dir = join('prebuilds', PLATFORM_DIR);
  const root = packageWith({
    [join(dir, 'virtiofsd_native.napi3.node')]: BUILT,
    [join(dir, `virtiofsd_native.napi${NAPI}.node`)]: Buffer.from('not an ELF file'),
  });
  assert.equal(load(root), { path: join(root, dir, 'virtiofsd_native.napi3.node') });
  // With only the broken one, its load error is part of the message.
  fs.rmSync(join(root, dir, 'virtiofsd_native.napi3.node'));
  const { error } = load(root);
  assert.ok(error?.includes(`${join(root, dir, `virtiofsd_native.napi${NAPI}.node`)}: `), error);
  assert.ok(error?.includes(`${join(root, 'build', 'Release', 'virtiofsd_native.node')}: not found`), error);
});

test.run();

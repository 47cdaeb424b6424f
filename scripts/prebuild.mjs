// Builds the prebuilt native binaries the npm package ships: prebuilds/<platform>-<arch>/ holds
// virtiofsd_native.napi<N>.node (N = the NAPI_VERSION binding.gyp builds for) and the sandbox helper
// virtiofsd-ts-sandbox. Each arch is built from a copy of binding.gyp and bindings/ in a scratch directory, so
// the checkout's own build/ is left alone. Another arch is cross-compiled with Debian's cross toolchain
// (x64 <-> arm64: apt-get install gcc-aarch64-linux-gnu / gcc-x86-64-linux-gnu); Node's headers are the same
// for both. Every binary is checked to be an ELF for its arch before it is copied.
//
//   node scripts/prebuild.mjs [linux-x64] [linux-arm64]      (default: both)
import { cpSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { nodeDir, runNodeGyp } from './node-gyp.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** Per arch: the GNU triplet of its cross toolchain and the ELF e_machine of its binaries. */
const ARCHES = {
  x64: { triplet: 'x86_64-linux-gnu', machine: 62 /* EM_X86_64 */, debian: 'gcc-x86-64-linux-gnu libc6-dev-amd64-cross' },
  arm64: { triplet: 'aarch64-linux-gnu', machine: 183 /* EM_AARCH64 */, debian: 'gcc-aarch64-linux-gnu libc6-dev-arm64-cross' },
};

function onPath(command) {
  return (process.env.PATH ?? '').split(':').some((dir) => dir && existsSync(join(dir, command)));
}

/** The N-API version the addon is compiled against (binding.gyp's NAPI_VERSION define). */
function napiVersion() {
  const m = /NAPI_VERSION=(\d+)/.exec(readFileSync(join(root, 'binding.gyp'), 'utf8'));
  if (!m) throw new Error('binding.gyp defines no NAPI_VERSION');
  return Number(m[1]);
}

/** The ELF e_machine of a file, or undefined when it is not an ELF. */
function elfMachine(file) {
  const head = readFileSync(file).subarray(0, 20);
  if (head.length < 20 || head.readUInt32BE(0) !== 0x7f454c46) return undefined;
  return head[5] === 2 ? head.readUInt16BE(18) : head.readUInt16LE(18);
}

function buildFor(target) {
  const [platform, arch] = target.split('-');
  const spec = ARCHES[arch];
  if (platform !== 'linux' || spec === undefined) throw new Error(`prebuild: unsupported target ${target}`);
  const stage = mkdtempSync(join(tmpdir(), `virtiofsd-ts-prebuild-${arch}-`));
  try {
    copyFileSync(join(root, 'binding.gyp'), join(stage, 'binding.gyp'));
    cpSync(join(root, 'bindings'), join(stage, 'bindings'), { recursive: true });
    const cross = arch !== process.arch;
    const cc = `${spec.triplet}-gcc`;
    if (cross && !onPath(cc)) throw new Error(`prebuild: ${cc} not found (Debian: apt-get install ${spec.debian})`);
    // gyp links with $(CXX); the sources are C only, so the C compiler links too.
    const env = cross ? { CC: cc, CXX: cc, LINK: cc, AR: `${spec.triplet}-ar` } : {};
    console.log(`prebuild: ${target}${cross ? ` (cross, ${cc})` : ''}`);
    // node-gyp puts <nodedir>/include (and more) on the include path: with nodedir=/usr that is the build
    // machine's libc headers, which a cross compiler must not see. A private nodedir holds Node's headers only.
    const nodedir = join(stage, 'node');
    const headers = nodeDir();
    if (headers === undefined) throw new Error('prebuild: no Node headers (set npm_config_nodedir)');
    mkdirSync(join(nodedir, 'include'), { recursive: true });
    symlinkSync(join(headers, 'include', 'node'), join(nodedir, 'include', 'node'));
    const status = runNodeGyp(['rebuild', `--arch=${arch}`], { cwd: stage, env, nodedir });
    if (status !== 0) throw new Error(`prebuild: node-gyp failed for ${target} (exit ${status})`);
    const out = join(root, 'prebuilds', target);
    rmSync(out, { recursive: true, force: true });
    mkdirSync(out, { recursive: true });
    const files = [
      ['virtiofsd_native.node', `virtiofsd_native.napi${napiVersion()}.node`],
      ['virtiofsd-ts-sandbox', 'virtiofsd-ts-sandbox'],
    ];
    for (const [built, shipped] of files) {
      const from = join(stage, 'build', 'Release', built);
      const machine = elfMachine(from);
      if (machine !== spec.machine) {
        throw new Error(`prebuild: ${built} for ${target} has ELF machine ${machine}, want ${spec.machine}`);
      }
      copyFileSync(from, join(out, shipped));
    }
    console.log(`prebuild: ${target}: ${files.map(([, f]) => join('prebuilds', target, f)).join(', ')}`);
  } finally {
    rmSync(stage, { recursive: true, force: true });
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const targets = process.argv.slice(2);
  for (const target of targets.length ? targets : ['linux-x64', 'linux-arm64']) buildFor(target);
}

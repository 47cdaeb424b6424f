/**
 * Tests of the native addon (bindings/) through its loader: the syscalls behave as the kernel's, failures come
 * back as -errno, memory mappings really share pages with a WebAssembly.Memory, and the poller delivers
 * events one-shot on the JS thread without keeping a closed process alive.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { constants as osConstants, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { native } from '../host/native-loader.js';
import { countOpenFds, fdsOpenedSince, openFds } from './util/fds.js';
import { evalArgs, unlessRuntime } from './util/runtime.js';
import { requireRoot } from './util/prereq.js';
import type { PollerHandle } from '../host/native.js';

const C = native.constants;
const E = C.errno;
const PAGE = C.PAGE_SIZE;
const WASM_PAGE = 65536;

/** struct statx field offsets (linux/stat.h). */
const STX = {
  mask: 0, nlink: 16, uid: 20, gid: 24, mode: 28, ino: 32, size: 40, atimeSec: 64, atimeNsec: 72,
  mtimeSec: 112, mtimeNsec: 120,
} as const;

function scratchDir(): string {
  return fs.mkdtempSync(join(tmpdir(), 'virtiofsd-native-'));
}

/** statx of dirfd/path into a fresh 256-byte buffer; asserts success. */
function statxOf(dirfd: number, path: string, flags = C.AT_SYMLINK_NOFOLLOW): DataView {
  const buf = new ArrayBuffer(256);
  const r = native.statx(dirfd, path, flags, C.STATX_BASIC_STATS, buf, 0);
  assert.is(r, 0, `statx ${path}`);
  return new DataView(buf);
}

function openDir(path: string): number {
  const fd = native.openat(C.AT_FDCWD, path, C.O_RDONLY | C.O_DIRECTORY, 0);
  assert.ok(fd >= 0, `open ${path}: ${fd}`);
  return fd;
}

function bytes(s: string): Uint8Array {
  return new TextEncoder().encode(s);
}

function text(b: Uint8Array): string {
  return new TextDecoder().decode(b);
}

/** A wasm module importing memory m.mem and exporting load(addr) -> i32.load8_u and store(addr, v). */
function wasmAccessor(memory: WebAssembly.Memory): { load(a: number): number; store(a: number, v: number): void } {
  const code = new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    // type: (i32)->i32, (i32,i32)->()
    0x01, 0x0b, 0x02, 0x60, 0x01, 0x7f, 0x01, 0x7f, 0x60, 0x02, 0x7f, 0x7f, 0x00,
    // import "m" "mem" memory min 1
    0x02, 0x0a, 0x01, 0x01, 0x6d, 0x03, 0x6d, 0x65, 0x6d, 0x02, 0x00, 0x01,
    // functions: 0 -> type 0, 1 -> type 1
    0x03, 0x03, 0x02, 0x00, 0x01,
    // exports "load" func 0, "store" func 1
    0x07, 0x10, 0x02, 0x04, 0x6c, 0x6f, 0x61, 0x64, 0x00, 0x00, 0x05, 0x73, 0x74, 0x6f, 0x72, 0x65, 0x00, 0x01,
    // code
    0x0a, 0x13, 0x02,
    0x07, 0x00, 0x20, 0x00, 0x2d, 0x00, 0x00, 0x0b, // local.get 0; i32.load8_u; end
    0x09, 0x00, 0x20, 0x00, 0x20, 0x01, 0x3a, 0x00, 0x00, 0x0b, // local.get 0; local.get 1; i32.store8; end
  ]);
  const instance = new WebAssembly.Instance(new WebAssembly.Module(code), { m: { mem: memory } });
  return instance.exports as unknown as { load(a: number): number; store(a: number, v: number): void };
}

/** Runs an ESM snippet in a child node that has `native` in scope; returns status/stdout/stderr. */
function runChild(body: string, timeoutMs: number): { status: number | null; signal: string | null; stdout: string; stderr: string } {
  const loader = fileURLToPath(new URL('../host/native-loader.js', import.meta.url));
  const script = `import { native } from ${JSON.stringify(loader)};\n${body}`;
  const r = spawnSync(...evalArgs(script), { timeout: timeoutMs, encoding: 'utf8' });
  return { status: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

function waitFor<T>(register: (resolve: (v: T) => void) => void, ms: number): Promise<T | 'timeout'> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve('timeout'), ms);
    register((v) => {
      clearTimeout(timer);
      resolve(v);
    });
  });
}

// ---- constants ---------------------------------------------------------------------------------------------

test('constants: errno names match the OS, and every name the d.ts lists exists', () => {
  const names = ('ENOENT EIO EBADF EAGAIN ENOMEM EACCES EFAULT EBUSY EEXIST EXDEV ENODEV ENOTDIR EISDIR EINVAL ' +
    'ENFILE EMFILE ENOTTY EFBIG ENOSPC ESPIPE EROFS EMLINK EPIPE ERANGE ENAMETOOLONG ENOSYS ENOTEMPTY ELOOP ' +
    'ENODATA EOPNOTSUPP ENOTSUP EOVERFLOW EPROTO EMSGSIZE ECONNRESET ENOTCONN EADDRINUSE EINTR EPERM ESRCH ENXIO ' +
    'E2BIG ETIMEDOUT ECONNREFUSED ENOTSOCK').split(' ');
  const os = osConstants.errno as Record<string, number>;
  for (const name of names) {
    assert.type(E[name], 'number', name);
    if (name in os) assert.is(E[name], os[name], name);
  }
  assert.is(E.ENOENT, 2);
});

test('constants: open flags and mode bits match fs.constants', () => {
  const k = C as unknown as Record<string, number>;
  const f = fs.constants as unknown as Record<string, number>;
  for (const name of ['O_RDONLY', 'O_WRONLY', 'O_RDWR', 'O_CREAT', 'O_EXCL', 'O_NOCTTY', 'O_TRUNC', 'O_APPEND',
    'O_DIRECTORY', 'O_NOATIME', 'O_NOFOLLOW', 'O_SYNC', 'O_DSYNC', 'O_DIRECT', 'O_NONBLOCK', 'S_IFMT', 'S_IFREG',
    'S_IFDIR', 'S_IFLNK', 'S_IFIFO', 'S_IFSOCK', 'S_IFCHR', 'S_IFBLK']) {
    if (name in f) assert.is(k[name], f[name], name);
  }
  assert.is(C.AT_FDCWD, -100);
  assert.ok(C.PAGE_SIZE >= 4096 && (C.PAGE_SIZE & (C.PAGE_SIZE - 1)) === 0);
  assert.ok(C.RENAME_NOREPLACE > 0 && C.UTIME_OMIT > 0 && C.STATX_BASIC_STATS > 0);
  assert.ok(Object.isFrozen(C));
});

test('loader: without a built addon, importing fails with one clear message', () => {
  // A copy of the compiled loader in a package root that has no build/ or prebuilds/ directory.
  const root = scratchDir();
  fs.mkdirSync(join(root, 'dist', 'host'), { recursive: true });
  const copy = join(root, 'dist', 'host', 'native-loader.js');
  for (const file of ['native-loader.js', 'package-root.js']) {
    fs.copyFileSync(fileURLToPath(new URL(`../host/${file}`, import.meta.url)), join(root, 'dist', 'host', file));
  }
  fs.writeFileSync(join(root, 'package.json'), '{"type":"module"}');
  const r = spawnSync(...evalArgs(
    `import(${JSON.stringify(copy)}).catch((e) => { console.log(e.message); process.exit(3); });`),
  { encoding: 'utf8', timeout: 10000 });
  assert.is(r.status, 3);
  assert.match(r.stdout, /^virtiofsd-ts: native addon not built: run `npm run build:native` in a checkout, or `npm rebuild virtiofsd-ts` /);
  assert.ok(r.stdout.includes(join(root, 'build', 'Release', 'virtiofsd_native.node')), r.stdout);
});

test('strerror', () => {
  assert.is(native.strerror(E.ENOENT), 'No such file or directory');
  assert.is(native.strerror(-E.ENOENT), 'No such file or directory');
});

unlessRuntime(test, { deno: 'Deno\'s napi_get_value_int32 converts a string instead of failing with napi_number_expected' })(
  'a string where an fd goes throws TypeError', () => {
    assert.throws(() => (native.openat as unknown as (...a: unknown[]) => number)('x', 'y', 0, 0), TypeError);
  });

test('wrong argument types throw TypeError (programmer errors), syscall failures do not throw', () => {
  assert.throws(() => (native.close as unknown as () => number)(), TypeError);
  assert.throws(() => native.pread(0, {} as ArrayBufferView, 0), TypeError);
  assert.throws(() => native.epollWait(0, new Uint32Array(2) as unknown as Int32Array, 0), TypeError);
  assert.is(native.close(999999), -E.EBADF);
});

// ---- fsat.c ------------------------------------------------------------------------------------------------

test('openat / statx: missing file is -ENOENT; statx reports the file', () => {
  const dir = scratchDir();
  const dfd = openDir(dir);
  assert.is(native.openat(dfd, 'missing', C.O_RDONLY, 0), -E.ENOENT);
  assert.is(native.statx(dfd, 'missing', 0, C.STATX_BASIC_STATS, new ArrayBuffer(256), 0), -E.ENOENT);
  assert.is(native.openat(C.AT_FDCWD, join(dir, 'missing'), C.O_RDONLY, 0), -E.ENOENT);

  const fd = native.openat(dfd, 'f', C.O_CREAT | C.O_EXCL | C.O_RDWR, 0o640);
  assert.ok(fd >= 0);
  assert.is(native.openat(dfd, 'f', C.O_CREAT | C.O_EXCL | C.O_RDWR, 0o640), -E.EEXIST);
  assert.is(native.pwrite(fd, bytes('hello'), 0), 5);
  // The fd is close-on-exec.
  assert.ok(fs.readlinkSync(`/proc/self/fd/${fd}`).endsWith('/f'));
  const flags = fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8').match(/flags:\s+(\d+)/);
  assert.ok(flags !== null && (parseInt(flags[1], 8) & C.O_CLOEXEC) !== 0, 'O_CLOEXEC');

  const st = statxOf(dfd, 'f');
  assert.is(Number(st.getBigUint64(STX.size, true)), 5);
  assert.is(st.getUint16(STX.mode, true) & C.S_IFMT, C.S_IFREG);
  assert.is(st.getUint16(STX.mode, true) & 0o7777, 0o640 & ~process.umask());
  assert.is(st.getBigUint64(STX.ino, true), fs.statSync(join(dir, 'f'), { bigint: true }).ino);
  // AT_EMPTY_PATH on the fd itself, at an unaligned offset inside a bigger buffer.
  const big = new Uint8Array(300);
  assert.is(native.statx(fd, '', C.AT_EMPTY_PATH, C.STATX_BASIC_STATS, big, 3), 0);
  assert.is(new DataView(big.buffer).getBigUint64(3 + STX.ino, true), st.getBigUint64(STX.ino, true));
  // Out of range destination.
  assert.is(native.statx(fd, '', C.AT_EMPTY_PATH, C.STATX_BASIC_STATS, new ArrayBuffer(255), 0), -E.EFAULT);
  assert.is(native.statx(fd, '', C.AT_EMPTY_PATH, C.STATX_BASIC_STATS, big, 45), -E.EFAULT);

  const buf = new Uint8Array(5);
  assert.is(native.pread(fd, buf, 0), 5);
  assert.is(text(buf), 'hello');
  assert.is(native.close(fd), 0);
  assert.is(native.close(dfd), 0);
});

test('statxName / openStatxName: one name as bytes, never a path (\'/\', NUL refused); fd O_PATH + cloexec', () => {
  const dir = scratchDir();
  fs.mkdirSync(join(dir, 'sub'));
  fs.writeFileSync(join(dir, 'sub', 'f'), 'abc');
  fs.writeFileSync(join(dir, 'x'), 'hello');
  const dfd = openDir(dir);
  // Names at an offset inside a bigger buffer, as a listing's records lie in the core's dirent buffer.
  const names = bytes('..x.sub/f.');
  const ino = fs.statSync(join(dir, 'x'), { bigint: true }).ino;
  const out = new ArrayBuffer(300);
  const v = new DataView(out);
  const flags = C.AT_SYMLINK_NOFOLLOW;
  assert.is(native.statxName(dfd, names, 2, 1, flags, C.STATX_BASIC_STATS, out, 8), 0);
  assert.is(v.getBigUint64(8 + STX.ino, true), ino);

  const fd = native.openStatxName(dfd, names, 2, 1, C.O_PATH | C.O_NOFOLLOW, flags, C.STATX_BASIC_STATS, out, 16);
  assert.ok(fd >= 0, `fd ${fd}`);
  assert.is(v.getBigUint64(16 + STX.ino, true), ino);
  assert.is(Number(v.getBigUint64(16 + STX.size, true)), 5);
  const fdFlags = parseInt(fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8').match(/flags:\s+(\d+)/)![1], 8);
  assert.ok((fdFlags & C.O_CLOEXEC) !== 0 && (fdFlags & C.O_PATH) !== 0, 'O_PATH | O_CLOEXEC');
  native.close(fd);

  // "sub/f" names a file two components down: not one name.
  for (const call of [
    () => native.statxName(dfd, names, 3, 5, flags, C.STATX_BASIC_STATS, out, 0),
    () => native.openStatxName(dfd, names, 3, 5, C.O_PATH, flags, C.STATX_BASIC_STATS, out, 0),
  ]) assert.is(call(), -E.EINVAL);
  const withNul = new Uint8Array([0x78, 0, 0x79]);
  assert.is(native.openStatxName(dfd, withNul, 0, 3, C.O_PATH, flags, C.STATX_BASIC_STATS, out, 0), -E.EINVAL);
  assert.is(native.statxName(dfd, names, 2, 0, flags, C.STATX_BASIC_STATS, out, 0), -E.EINVAL);
  assert.is(native.statxName(dfd, new Uint8Array(300).fill(0x61), 0, 256, flags, C.STATX_BASIC_STATS, out, 0),
    -E.ENAMETOOLONG);
  assert.is(native.statxName(dfd, names, 8, 5, flags, C.STATX_BASIC_STATS, out, 0), -E.EFAULT); // past the name memory
  assert.is(native.openStatxName(dfd, names, 2, 1, C.O_PATH, flags, C.STATX_BASIC_STATS, out, 100), -E.EFAULT);
  assert.is(native.openStatxName(dfd, bytes('missing'), 0, 7, C.O_PATH, flags, C.STATX_BASIC_STATS, out, 0),
    -E.ENOENT);
  native.close(dfd);
  fs.rmSync(dir, { recursive: true });
});

test('names: too long -> -ENAMETOOLONG, embedded NUL -> -EINVAL', () => {
  assert.is(native.openat(C.AT_FDCWD, '/' + 'a'.repeat(5000), C.O_RDONLY, 0), -E.ENAMETOOLONG);
  assert.is(native.openat(C.AT_FDCWD, 'a\0b', C.O_RDONLY, 0), -E.EINVAL);
});

test('mkdirat / symlinkat / readlinkat / linkat / unlinkat / mknodat', () => {
  const dir = scratchDir();
  const dfd = openDir(dir);
  assert.is(native.mkdirat(dfd, 'd', 0o755), 0);
  assert.is(native.mkdirat(dfd, 'd', 0o755), -E.EEXIST);
  assert.is(statxOf(dfd, 'd').getUint16(STX.mode, true) & C.S_IFMT, C.S_IFDIR);

  assert.is(native.symlinkat('some/target ü', dfd, 'l'), 0);
  assert.is(native.readlinkat(dfd, 'l'), 'some/target ü');
  assert.is(native.readlinkat(dfd, 'd'), -E.EINVAL);
  assert.is(native.readlinkat(dfd, 'nope'), -E.ENOENT);
  assert.is(statxOf(dfd, 'l').getUint16(STX.mode, true) & C.S_IFMT, C.S_IFLNK);

  const fd = native.openat(dfd, 'f', C.O_CREAT | C.O_WRONLY, 0o644);
  assert.ok(fd >= 0);
  assert.is(native.linkat(dfd, 'f', dfd, 'g', 0), 0);
  assert.is(statxOf(dfd, 'g').getUint32(STX.nlink, true), 2);
  assert.is(native.linkat(dfd, 'f', dfd, 'g', 0), -E.EEXIST);
  // linkat of an fd via AT_EMPTY_PATH (needs CAP_DAC_READ_SEARCH) or /proc/self/fd with AT_SYMLINK_FOLLOW.
  assert.is(native.linkat(C.AT_FDCWD, `/proc/self/fd/${fd}`, dfd, 'h', C.AT_SYMLINK_FOLLOW), 0);
  assert.is(statxOf(dfd, 'f').getUint32(STX.nlink, true), 3);

  assert.is(native.mknodat(dfd, 'fifo', C.S_IFIFO | 0o600, 0), 0);
  assert.is(statxOf(dfd, 'fifo').getUint16(STX.mode, true) & C.S_IFMT, C.S_IFIFO);

  assert.is(native.unlinkat(dfd, 'd', 0), -E.EISDIR);
  assert.is(native.mkdirat(dfd, 'd/inner', 0o755), 0);
  assert.is(native.unlinkat(dfd, 'd', C.AT_REMOVEDIR), -E.ENOTEMPTY);
  assert.is(native.unlinkat(dfd, 'd/inner', C.AT_REMOVEDIR), 0);
  assert.is(native.unlinkat(dfd, 'd', C.AT_REMOVEDIR), 0);
  assert.is(native.unlinkat(dfd, 'g', 0), 0);
  assert.is(native.unlinkat(dfd, 'g', 0), -E.ENOENT);
  assert.is(statxOf(dfd, 'f').getUint32(STX.nlink, true), 2);
  native.close(fd);
  native.close(dfd);
});

test('renameat2: plain, RENAME_NOREPLACE -> -EEXIST, RENAME_EXCHANGE', () => {
  const dir = scratchDir();
  const dfd = openDir(dir);
  fs.writeFileSync(join(dir, 'a'), 'A');
  fs.writeFileSync(join(dir, 'b'), 'B');
  assert.is(native.renameat2(dfd, 'a', dfd, 'b', C.RENAME_NOREPLACE), -E.EEXIST);
  assert.is(fs.readFileSync(join(dir, 'b'), 'utf8'), 'B');
  assert.is(native.renameat2(dfd, 'a', dfd, 'b', C.RENAME_EXCHANGE), 0);
  assert.is(fs.readFileSync(join(dir, 'a'), 'utf8'), 'B');
  assert.is(fs.readFileSync(join(dir, 'b'), 'utf8'), 'A');
  assert.is(native.renameat2(dfd, 'a', dfd, 'c', C.RENAME_NOREPLACE), 0);
  assert.is(native.renameat2(dfd, 'a', dfd, 'd', 0), -E.ENOENT);
  assert.is(native.renameat2(dfd, 'c', dfd, 'b', 0), 0);
  assert.equal(fs.readdirSync(dir), ['b']);
  assert.is(fs.readFileSync(join(dir, 'b'), 'utf8'), 'B');
  native.close(dfd);
});

test('fchmodat / fchmod / fchownat', () => {
  const dir = scratchDir();
  const dfd = openDir(dir);
  fs.writeFileSync(join(dir, 'f'), '');
  assert.is(native.fchmodat(dfd, 'f', 0o600), 0);
  assert.is(statxOf(dfd, 'f').getUint16(STX.mode, true) & 0o7777, 0o600);
  const fd = native.openat(dfd, 'f', C.O_RDONLY, 0);
  assert.is(native.fchmod(fd, 0o4711), 0);
  assert.is(statxOf(dfd, 'f').getUint16(STX.mode, true) & 0o7777, 0o4711);
  assert.is(native.fchmodat(dfd, 'nope', 0o600), -E.ENOENT);

  // -1 leaves both ids unchanged (works unprivileged).
  const before = statxOf(dfd, 'f');
  assert.is(native.fchownat(dfd, 'f', -1, -1, 0), 0);
  const after = statxOf(dfd, 'f');
  assert.is(after.getUint32(STX.uid, true), before.getUint32(STX.uid, true));
  assert.is(after.getUint32(STX.gid, true), before.getUint32(STX.gid, true));
  native.close(fd);
  native.close(dfd);
});

test('fchownat without CAP_CHOWN: giving a file away is EPERM', () => {
  const dir = scratchDir();
  fs.writeFileSync(join(dir, 'f'), '');
  const fd = native.openat(C.AT_FDCWD, join(dir, 'f'), C.O_RDONLY, 0);
  // As root, an fsuid other than 0 takes CAP_CHOWN (and the other fs capabilities) out of this thread's
  // effective set until the fsuid is 0 again, so the refusal is checked either way.
  const root = process.getuid?.() === 0;
  if (root) native.setfsuid(65534);
  try {
    assert.is(native.fchownat(fd, '', root ? 65534 : 0, -1, C.AT_EMPTY_PATH), -E.EPERM);
  } finally {
    if (root) native.setfsuid(0);
    native.close(fd);
  }
});

test('fchownat as root: uid by path, gid by AT_EMPTY_PATH', () => {
  if (!requireRoot()) return; // another owner takes CAP_CHOWN
  const dir = scratchDir();
  const dfd = openDir(dir);
  fs.writeFileSync(join(dir, 'f'), '');
  const fd = native.openat(dfd, 'f', C.O_RDONLY, 0);
  assert.is(native.fchownat(dfd, 'f', 1234, -1, 0), 0);
  assert.is(native.fchownat(fd, '', -1, 5678, C.AT_EMPTY_PATH), 0);
  const st = statxOf(dfd, 'f');
  assert.is(st.getUint32(STX.uid, true), 1234);
  assert.is(st.getUint32(STX.gid, true), 5678);
  native.close(fd);
  native.close(dfd);
});

test('utimensat: nanoseconds, UTIME_OMIT, AT_EMPTY_PATH', () => {
  const dir = scratchDir();
  const dfd = openDir(dir);
  fs.writeFileSync(join(dir, 'f'), '');
  assert.is(native.utimensat(dfd, 'f', 1000, 123456789, 2000, 987654321, 0), 0);
  let st = statxOf(dfd, 'f');
  assert.is(Number(st.getBigInt64(STX.atimeSec, true)), 1000);
  assert.is(st.getUint32(STX.atimeNsec, true), 123456789);
  assert.is(Number(st.getBigInt64(STX.mtimeSec, true)), 2000);
  assert.is(st.getUint32(STX.mtimeNsec, true), 987654321);

  assert.is(native.utimensat(dfd, 'f', 0, C.UTIME_OMIT, 3000, 5, 0), 0);
  st = statxOf(dfd, 'f');
  assert.is(Number(st.getBigInt64(STX.atimeSec, true)), 1000);
  assert.is(Number(st.getBigInt64(STX.mtimeSec, true)), 3000);
  assert.is(st.getUint32(STX.mtimeNsec, true), 5);

  const fd = native.openat(dfd, 'f', C.O_PATH, 0);
  assert.is(native.utimensat(fd, '', 4000, 0, 0, C.UTIME_OMIT, C.AT_EMPTY_PATH), 0);
  assert.is(Number(statxOf(dfd, 'f').getBigInt64(STX.atimeSec, true)), 4000);
  assert.is(native.utimensat(dfd, 'f', 0, 1_000_000_000, 0, 0, 0), -E.EINVAL);
  assert.is(native.utimensat(dfd, 'nope', 0, 0, 0, 0, 0), -E.ENOENT);
  native.close(fd);
  native.close(dfd);
});

test('fstatvfs agrees with statfs', () => {
  const dir = scratchDir();
  const dfd = openDir(dir);
  const out = new Float64Array(8);
  assert.is(native.fstatvfs(dfd, out), 0);
  const sf = fs.statfsSync(dir);
  assert.is(out[0], sf.bsize);
  assert.is(out[2], sf.blocks);
  assert.is(out[5], sf.files);
  assert.ok(out[7] >= 255, 'namemax');
  assert.is(native.fstatvfs(999999, out), -E.EBADF);
  assert.throws(() => native.fstatvfs(dfd, new Float64Array(4)), RangeError);
  native.close(dfd);
});

/** Parses linux_dirent64 records: [name, d_off, type]. */
function parseDirents(buf: Uint8Array, len: number): Array<{ name: string; off: bigint; type: number }> {
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const out: Array<{ name: string; off: bigint; type: number }> = [];
  for (let pos = 0; pos < len;) {
    const reclen = view.getUint16(pos + 16, true);
    const nameBytes = buf.subarray(pos + 19, pos + reclen);
    const name = text(nameBytes.subarray(0, nameBytes.indexOf(0)));
    out.push({ name, off: view.getBigInt64(pos + 8, true), type: view.getUint8(pos + 18) });
    pos += reclen;
  }
  return out;
}

test('getdents64 and lseek with bigint cookies', () => {
  const dir = scratchDir();
  for (const n of ['a', 'b', 'c']) fs.writeFileSync(join(dir, n), n);
  fs.mkdirSync(join(dir, 'sub'));
  const dfd = openDir(dir);
  const buf = new Uint8Array(4096);
  const n = native.getdents64(dfd, buf, 0, buf.length);
  assert.ok(n > 0);
  const all = parseDirents(buf, n);
  assert.equal(all.map((d) => d.name).sort(), ['.', '..', 'a', 'b', 'c', 'sub']);
  assert.is(all.find((d) => d.name === 'sub')?.type, 4 /* DT_DIR */);
  assert.is(native.getdents64(dfd, buf, 0, buf.length), 0, 'end of directory');

  // Seek to the cookie of the third record: reading resumes at the fourth.
  assert.is(native.lseek(dfd, all[2].off, C.SEEK_SET), all[2].off);
  const rest = parseDirents(buf, native.getdents64(dfd, buf, 0, buf.length));
  assert.equal(rest.map((d) => d.name), all.slice(3).map((d) => d.name));
  assert.is(native.lseek(dfd, 0n, C.SEEK_SET), 0n);
  assert.is(parseDirents(buf, native.getdents64(dfd, buf, 0, buf.length)).length, all.length);

  assert.is(native.getdents64(dfd, buf, 4000, 200), -E.EFAULT);
  assert.is(native.getdents64(999999, buf, 0, 100), -E.EBADF);
  native.close(dfd);

  const fd = native.openat(C.AT_FDCWD, join(dir, 'a'), C.O_RDONLY, 0);
  assert.is(native.lseek(fd, 0n, C.SEEK_END), 1n);
  assert.is(native.lseek(fd, -5n, C.SEEK_SET), BigInt(-E.EINVAL));
  assert.is(native.lseek(fd, 0n, 99), BigInt(-E.EINVAL));
  assert.is(native.getdents64(fd, buf, 0, buf.length), -E.ENOTDIR);
  native.close(fd);
});

test('ftruncate / fallocate / fsync / fdatasync / dup', () => {
  const dir = scratchDir();
  const fd = native.openat(C.AT_FDCWD, join(dir, 'f'), C.O_CREAT | C.O_RDWR, 0o644);
  assert.is(native.ftruncate(fd, 10000), 0);
  assert.is(fs.statSync(join(dir, 'f')).size, 10000);
  assert.is(native.fallocate(fd, 0, 0, 20000), 0);
  assert.is(fs.statSync(join(dir, 'f')).size, 20000);
  assert.is(native.fsync(fd), 0);
  assert.is(native.fdatasync(fd), 0);
  const fd2 = native.dup(fd);
  assert.ok(fd2 >= 0 && fd2 !== fd);
  assert.is(native.lseek(fd2, 7n, C.SEEK_SET), 7n);
  assert.is(native.lseek(fd, 0n, C.SEEK_CUR), 7n, 'dup shares the file position');
  native.close(fd2);
  native.close(fd);
  assert.is(native.ftruncate(fd, 0), -E.EBADF);
});

// ---- preadv / pwritev ----------------------------------------------------------------------------------------

/** struct iovec entries {u64 base, u64 len} at mem[at], bases = mem's address + the given offsets. */
function putIov(mem: WebAssembly.Memory, at: number, entries: Array<[number, number]>): void {
  const view = new DataView(mem.buffer);
  const base = BigInt(native.addressOf(mem.buffer));
  entries.forEach(([off, len], i) => {
    view.setBigUint64(at + i * 16, base + BigInt(off), true);
    view.setBigUint64(at + i * 16 + 8, BigInt(len), true);
  });
}

test('preadv / pwritev hand struct iovecs (process addresses) to the kernel', () => {
  const dir = scratchDir();
  const fd = native.openat(C.AT_FDCWD, join(dir, 'f'), C.O_CREAT | C.O_RDWR, 0o644);
  fs.writeFileSync(join(dir, 'f'), 'abcdefghijklmnop');
  const mem = new WebAssembly.Memory({ initial: 2 });
  putIov(mem, 16, [[1000, 3], [70000, 5]]); // the second segment is in the second wasm page
  assert.is(native.preadv(fd, mem.buffer, 16, 2, 2), 8);
  const u8 = new Uint8Array(mem.buffer);
  assert.is(text(u8.subarray(1000, 1003)), 'cde');
  assert.is(text(u8.subarray(70000, 70005)), 'fghij');

  u8.set(bytes('XY'), 500);
  u8.set(bytes('Z'), 131071); // last byte of the memory
  putIov(mem, 64, [[500, 2], [131071, 1]]);
  assert.is(native.pwritev(fd, mem.buffer, 64, 2, 1), 3);
  assert.is(fs.readFileSync(join(dir, 'f'), 'utf8'), 'aXYZefghijklmnop');

  // position -1: the file position (readv/writev).
  assert.is(native.lseek(fd, 4n, C.SEEK_SET), 4n);
  putIov(mem, 16, [[2000, 4]]);
  assert.is(native.preadv(fd, mem.buffer, 16, 1, -1), 4);
  assert.is(text(u8.subarray(2000, 2004)), 'efgh');
  assert.is(native.lseek(fd, 0n, C.SEEK_CUR), 8n);

  // The table is checked (inside mem, aligned, at most UIO_MAXIOV); an unmapped base is the kernel's -EFAULT.
  const v = new DataView(mem.buffer);
  v.setBigUint64(16, 0x10n, true); // page zero: never mapped
  v.setBigUint64(24, 4n, true);
  assert.is(native.preadv(fd, mem.buffer, 16, 1, 0), -E.EFAULT);
  assert.is(native.pwritev(fd, mem.buffer, 16, 1, 0), -E.EFAULT);
  assert.is(native.preadv(fd, mem.buffer, 131072 - 8, 1, 0), -E.EFAULT, 'table past the end');
  assert.is(native.preadv(fd, mem.buffer, -16, 1, 0), -E.EFAULT);
  assert.is(native.preadv(fd, mem.buffer, 20, 1, 0), -E.EINVAL, 'misaligned table');
  assert.is(native.preadv(fd, mem.buffer, 0, 1025, 0), -E.EINVAL);
  assert.is(native.preadv(fd, mem.buffer, 0, 0, 0), 0);
  assert.is(fs.readFileSync(join(dir, 'f'), 'utf8'), 'aXYZefghijklmnop', 'failed calls wrote nothing');
  // A view: the table offset is relative to the view.
  const view = new Uint8Array(mem.buffer, 4096, 4096);
  putIov(mem, 4096 + 16, [[4096 + 100, 2]]);
  assert.is(native.preadv(fd, view, 16, 1, 0), 2);
  assert.is(text(view.subarray(100, 102)), 'aX');
  native.close(fd);
});

test('mmapShared maps a memfd whole (sparse, beyond 4 GiB); munmap releases it', () => {
  const fd = native.memfdCreate('t', 0);
  const size = 16 * 2 ** 30; // costs nothing until touched
  assert.is(native.ftruncate(fd, size), 0);
  const addr = native.mmapShared(fd, size, 0);
  assert.ok(addr > 0n, `mapped (${addr})`);
  const high = 12 * 2 ** 30 + 4096;
  const src = Buffer.from('above 4 GiB');
  assert.is(native.pwrite(fd, src, high), src.length);
  const mem = new WebAssembly.Memory({ initial: 1 });
  const v = new DataView(mem.buffer);
  // pwritev from the mapping's address (12 GiB in) to another memfd: the bytes pwrite put in the first one.
  const fd2 = native.memfdCreate('t2', 0);
  v.setBigUint64(16, addr + BigInt(high), true);
  v.setBigUint64(24, BigInt(src.length), true);
  assert.is(native.pwritev(fd2, mem.buffer, 16, 1, 0), src.length, 'the mapping is readable at its address');
  const back = Buffer.alloc(src.length);
  assert.is(native.pread(fd2, back, 0), src.length);
  assert.is(back.toString(), 'above 4 GiB');
  assert.is(native.mmapShared(fd, 4096, 100), -BigInt(E.EINVAL), 'unaligned file offset');
  assert.is(native.munmap(addr, size), 0);
  native.close(fd);
  native.close(fd2);
});

// ---- mman.c ------------------------------------------------------------------------------------------------

test('mmapInto a grown WebAssembly.Memory: memfd and memory see each other; unmapFrom leaves zeros', () => {
  const memory = new WebAssembly.Memory({ initial: 1, maximum: 1024 });
  const wasm = wasmAccessor(memory);
  const base = native.addressOf(memory.buffer);
  const at = memory.grow(2) * WASM_PAGE; // linear offset of the new pages
  const size = 2 * WASM_PAGE;
  const fd = native.memfdCreate('guest-ram', 0);
  assert.ok(fd >= 0);
  assert.is(native.ftruncate(fd, size), 0);
  assert.is(native.mmapInto(memory.buffer, at, size, C.PROT_READ | C.PROT_WRITE, fd, 0), 0);

  // memfd -> memory (JS view and wasm code)
  assert.is(native.pwrite(fd, bytes('from the memfd'), 100), 14);
  let u8 = new Uint8Array(memory.buffer);
  assert.is(text(u8.subarray(at + 100, at + 114)), 'from the memfd');
  assert.is(wasm.load(at + 100), 'f'.charCodeAt(0));
  // memory -> memfd
  u8.set(bytes('from js'), at + 5000);
  wasm.store(at + size - 1, 0x5a);
  const back = new Uint8Array(7);
  assert.is(native.pread(fd, back, 5000), 7);
  assert.is(text(back), 'from js');
  const last = new Uint8Array(1);
  native.pread(fd, last, size - 1);
  assert.is(last[0], 0x5a);

  // Growing again keeps the base and the mapping.
  memory.grow(1);
  assert.is(native.addressOf(memory.buffer), base);
  u8 = new Uint8Array(memory.buffer);
  assert.is(text(u8.subarray(at + 100, at + 114)), 'from the memfd');

  // A second memory mapping the same memfd shares the pages (what a second core instance over the same guest would
  // hold, e.g. a vhost-user frontend beside the backend in one process).
  const other = new WebAssembly.Memory({ initial: 1, maximum: 16 });
  const at2 = other.grow(2) * WASM_PAGE;
  assert.is(native.mmapInto(other.buffer, at2, size, C.PROT_READ | C.PROT_WRITE, fd, 0), 0);
  new Uint8Array(other.buffer)[at2 + 42] = 0x99;
  assert.is(u8[at + 42], 0x99);

  // unmapFrom: zeros, still usable, no longer connected to the memfd.
  assert.is(native.unmapFrom(memory.buffer, at, size), 0);
  assert.ok(u8.subarray(at, at + size).every((b) => b === 0));
  u8[at + 100] = 7;
  assert.is(wasm.load(at + 100), 7);
  native.pread(fd, back, 100);
  assert.is(text(back), 'from th', 'the file kept its bytes');
  assert.is(native.unmapFrom(other.buffer, at2, size), 0);
  native.close(fd);
});

test('mmapInto checks alignment and bounds', () => {
  const memory = new WebAssembly.Memory({ initial: 2 });
  const fd = native.memfdCreate('x', C.MFD_ALLOW_SEALING);
  native.ftruncate(fd, 4 * WASM_PAGE);
  const RW = C.PROT_READ | C.PROT_WRITE;
  assert.is(native.mmapInto(memory.buffer, 100, PAGE, RW, fd, 0), -E.EINVAL);
  assert.is(native.mmapInto(memory.buffer, 0, 100, RW, fd, 0), -E.EINVAL);
  assert.is(native.mmapInto(memory.buffer, 0, PAGE, RW, fd, 100), -E.EINVAL);
  assert.is(native.mmapInto(memory.buffer, 0, 0, RW, fd, 0), -E.EINVAL);
  assert.is(native.mmapInto(memory.buffer, WASM_PAGE, 2 * WASM_PAGE, RW, fd, 0), -E.EFAULT);
  assert.is(native.mmapInto(memory.buffer, -PAGE, PAGE, RW, fd, 0), -E.EFAULT);
  assert.is(native.mmapInto(memory.buffer, 0, PAGE, RW, 999999, 0), -E.EBADF);
  assert.is(native.unmapFrom(memory.buffer, 0, 3 * WASM_PAGE), -E.EFAULT);
  // A view whose data does not start on a page boundary.
  assert.is(native.mmapInto(new Uint8Array(memory.buffer, 8), 0, PAGE, RW, fd, 0), -E.EINVAL);
  native.close(fd);
});

// ---- eventfd.c -----------------------------------------------------------------------------------------------

test('eventfd: counter adds up, read resets, -EAGAIN when zero', () => {
  const fd = native.eventfd(0, C.EFD_NONBLOCK);
  assert.ok(fd >= 0);
  assert.is(native.eventfdRead(fd), -E.EAGAIN);
  assert.is(native.eventfdWrite(fd, 3), 0);
  assert.is(native.eventfdWrite(fd, 4), 0);
  assert.is(native.eventfdRead(fd), 7);
  assert.is(native.eventfdRead(fd), -E.EAGAIN);
  native.close(fd);
  const sem = native.eventfd(2, C.EFD_NONBLOCK | C.EFD_SEMAPHORE);
  assert.is(native.eventfdRead(sem), 1);
  assert.is(native.eventfdRead(sem), 1);
  assert.is(native.eventfdRead(sem), -E.EAGAIN);
  native.close(sem);
  assert.is(native.eventfdWrite(fd, 1), -E.EBADF);
});

// ---- socket.c ------------------------------------------------------------------------------------------------

test('socketpair + sendmsg/recvmsg pass an fd that refers to the same file', () => {
  const dir = scratchDir();
  fs.writeFileSync(join(dir, 'f'), 'shared');
  const file = native.openat(C.AT_FDCWD, join(dir, 'f'), C.O_RDONLY, 0);
  const sv = new Int32Array(2);
  assert.is(native.socketpair(sv), 0);
  const msg = bytes('hello');
  assert.is(native.sendmsg(sv[0], msg, 0, 5, [file]), 5);
  const mem = new Uint8Array(64);
  const fds = new Int32Array(4).fill(123);
  assert.is(native.recvmsg(sv[1], mem, 10, 5, fds, true), 5);
  assert.is(text(mem.subarray(10, 15)), 'hello');
  assert.ok(fds[0] >= 0 && fds[0] !== file);
  assert.equal(Array.from(fds.subarray(1)), [-1, -1, -1]);
  const a = statxOf(file, '', C.AT_EMPTY_PATH);
  const b = statxOf(fds[0], '', C.AT_EMPTY_PATH);
  assert.is(b.getBigUint64(STX.ino, true), a.getBigUint64(STX.ino, true));
  const got = new Uint8Array(6);
  assert.is(native.pread(fds[0], got, 0), 6);
  assert.is(text(got), 'shared');
  native.close(fds[0]);

  // No fds, an Int32Array of fds, -EAGAIN when empty and nonblocking, -EFAULT out of range, 0 on close.
  assert.is(native.sendmsg(sv[0], msg, 1, 2, new Int32Array(0)), 2);
  assert.is(native.recvmsg(sv[1], mem, 0, 64, fds, false), 2);
  assert.is(text(mem.subarray(0, 2)), 'el');
  assert.is(fds[0], -1);
  assert.is(native.setNonblocking(sv[1], true), 0);
  assert.is(native.recvmsg(sv[1], mem, 0, 64, fds, false), -E.EAGAIN);
  assert.is(native.recvmsg(sv[1], mem, 60, 5, fds, false), -E.EFAULT);
  assert.is(native.sendmsg(sv[0], msg, 3, 5, []), -E.EFAULT);
  assert.is(native.shutdown(sv[0]), 0);
  assert.is(native.recvmsg(sv[1], mem, 0, 64, fds, false), 0);
  assert.is(native.sendmsg(sv[1], msg, 0, 5, []), -E.EPIPE, 'MSG_NOSIGNAL: EPIPE, no SIGPIPE');
  native.close(sv[0]);
  native.close(sv[1]);
  native.close(file);
});

test('recvmsg closes fds beyond fdsOut instead of leaking them', () => {
  const sv = new Int32Array(2);
  native.socketpair(sv);
  const e1 = native.eventfd(0, 0);
  const e2 = native.eventfd(0, 0);
  const e3 = native.eventfd(0, 0);
  const before = countOpenFds();
  assert.is(native.sendmsg(sv[0], bytes('x'), 0, 1, [e1, e2, e3]), 1);
  const fds = new Int32Array(1);
  assert.is(native.recvmsg(sv[1], new Uint8Array(1), 0, 1, fds, false), 1);
  assert.ok(fds[0] >= 0);
  assert.is(countOpenFds(), before + 1, 'only the one handed out stays open');
  assert.is(native.sendmsg(sv[0], bytes('x'), 0, 1, new Array<number>(254).fill(e1)), -E.EINVAL, 'over SCM_MAX_FD');
  // It is a working copy of e1.
  assert.is(native.eventfdWrite(e1, 5), 0);
  assert.is(native.eventfdRead(fds[0]), 5);
  for (const fd of [fds[0], e1, e2, e3, sv[0], sv[1]]) native.close(fd);
});

test('unixListen / unixConnect / accept', () => {
  const dir = scratchDir();
  const path = join(dir, 'vhost.sock');
  const lfd = native.unixListen(path, 4);
  assert.ok(lfd >= 0, `listen ${lfd}`);
  assert.ok(fs.statSync(path).isSocket());
  assert.is(native.unixListen(path, 4), -E.EADDRINUSE);
  assert.is(native.accept(lfd), -E.EAGAIN);
  const cfd = native.unixConnect(path);
  assert.ok(cfd >= 0);
  const sfd = native.accept(lfd);
  assert.ok(sfd >= 0);
  assert.is(native.sendmsg(cfd, bytes('ping'), 0, 4, []), 4);
  const buf = new Uint8Array(4);
  assert.is(native.recvmsg(sfd, buf, 0, 4, new Int32Array(0), true), 4);
  assert.is(text(buf), 'ping');
  assert.is(native.recvmsg(sfd, buf, 0, 4, new Int32Array(0), false), -E.EAGAIN, 'accepted fd is nonblocking');
  assert.is(native.unixConnect(join(dir, 'nobody.sock')), -E.ENOENT);
  assert.is(native.unixConnect(join(dir, 'x'.repeat(200))), -E.ENAMETOOLONG);
  for (const fd of [cfd, sfd, lfd]) native.close(fd);
  fs.writeFileSync(join(dir, 'plain'), '');
  assert.is(native.unixConnect(join(dir, 'plain')), -E.ECONNREFUSED);
});

// ---- poller.c ------------------------------------------------------------------------------------------------

// pollerCreateOnLoop needs Node's own libuv (Bun and Deno have stand-ins that cannot run it: FdPoller uses the
// thread there).
const nodeLoop = typeof process.versions.bun !== 'string' && !('Deno' in globalThis);
const pollerBackends = [['thread', 'pollerCreate'], ['loop', 'pollerCreateOnLoop']] as const;
for (const [mode, fn] of pollerBackends.filter(([m]) => m === 'thread' || nodeLoop)) {
  /** This backend's create; pollerCreateOnLoop must give a handle here (Node has libuv). */
  const create = (cb: (token: number, events: number) => void): PollerHandle => {
    const h = native[fn](cb);
    if (typeof h === 'number') throw new Error(`${fn}: ${h}`);
    return h;
  };

  test(`poller (${mode}): callback on the JS thread when an eventfd is written; one-shot until rearm`, async () => {
    const efd = native.eventfd(0, C.EFD_NONBLOCK);
    const events: Array<[number, number]> = [];
    let notify: ((v: [number, number]) => void) | undefined;
    const poller = create((token, ev) => {
      events.push([token, ev]);
      notify?.([token, ev]);
    });
    assert.is(native.pollerAdd(poller, efd, -7, C.EPOLLIN), 0);
    assert.is(native.pollerAdd(poller, efd, 1, C.EPOLLIN), -E.EEXIST);

    native.eventfdWrite(efd, 1);
    const first = await waitFor<[number, number]>((r) => (notify = r), 2000);
    assert.equal(first, [-7, C.EPOLLIN]);

    // Still readable, but one-shot: nothing more until rearmed.
    native.eventfdWrite(efd, 1);
    const none = await waitFor<[number, number]>((r) => (notify = r), 150);
    assert.is(none, 'timeout');
    assert.is(events.length, 1);

    assert.is(native.pollerRearm(poller, efd, 42, C.EPOLLIN), 0);
    const second = await waitFor<[number, number]>((r) => (notify = r), 2000);
    assert.equal(second, [42, C.EPOLLIN]);
    assert.is(native.eventfdRead(efd), 2);

    assert.is(native.pollerRemove(poller, efd), 0);
    assert.is(native.pollerRemove(poller, efd), -E.ENOENT);
    assert.is(native.pollerRearm(poller, efd, 1, C.EPOLLIN), -E.ENOENT);
    native.pollerClose(poller);
    native.pollerClose(poller); // idempotent
    assert.is(native.pollerAdd(poller, efd, 1, C.EPOLLIN), -E.EBADF);
    assert.throws(() => native.pollerClose({} as never), TypeError);
    native.close(efd);
  });

  test(`poller (${mode}): a closed poller lets the process exit; a throwing callback is logged, not fatal`, () => {
    const r = runChild(`
      const efd = native.eventfd(0, 0);
      let calls = 0;
      const p = native.${fn}((token) => {
        calls++;
        native.eventfdRead(efd);
        if (calls === 1) { native.pollerRearm(p, efd, token, native.constants.EPOLLIN); native.eventfdWrite(efd, 1); throw new Error('boom'); }
        console.log('second ' + token + ' ' + calls);
        native.pollerClose(p);
      });
      native.pollerAdd(p, efd, 9, native.constants.EPOLLIN);
      native.eventfdWrite(efd, 1);
    `, 10000);
    assert.is(r.signal, null, 'exited by itself');
    assert.is(r.status, 0, r.stderr);
    assert.is(r.stdout.trim(), 'second 9 2');
    assert.match(r.stderr, /poller callback threw/);
    assert.match(r.stderr, /boom/);
  });

  test(`poller (${mode}): an open poller keeps the event loop alive`, () => {
    const r = runChild(`native.${fn}(() => {}); console.log('started');`, 1500);
    assert.is(r.stdout.trim(), 'started');
    assert.is(r.signal, 'SIGTERM', 'still running when the timeout hit');
  });

  unlessRuntime(test, { deno: 'a Deno worker terminated with a poller open leaves its fds open (the worker\'s and the poller\'s; 8 here), where Node closes them' })(`poller (${mode}) in a worker thread: events arrive there; terminating the worker with the poller open cleans up`, async () => {
    const before = openFds();
    const loader = new URL('../host/native-loader.js', import.meta.url).href;
    const worker = new Worker(`
      const { parentPort } = require('node:worker_threads');
      import(${JSON.stringify(loader)}).then(({ native }) => {
        const efd = native.eventfd(0, 0);
        const p = native.${fn}((token, events) => parentPort.postMessage({ efd, token, events }));
        native.pollerAdd(p, efd, 77, native.constants.EPOLLIN);
        native.eventfdWrite(efd, 1);
      });`, { eval: true });
    const msg = await waitFor<{ efd: number; token: number; events: number }>((r) => worker.once('message', r), 5000);
    assert.ok(msg !== 'timeout', 'event delivered in the worker');
    assert.is(msg.token, 77);
    assert.is(msg.events, C.EPOLLIN);
    await worker.terminate();
    native.close(msg.efd);
    assert.equal(fdsOpenedSince(before), [], 'the poller thread was joined and its fds closed');
  });

  test(`poller (${mode}): 300 rearm cycles from inside the callback deliver exactly 300 events`, async () => {
    const efd = native.eventfd(0, C.EFD_NONBLOCK);
    const marker = native.eventfd(0, C.EFD_NONBLOCK);
    let count = 0;
    let done: ((v: number) => void) | undefined;
    let markerSeen: ((v: number) => void) | undefined;
    const poller = create((token) => {
      if (token === 4) {
        native.eventfdRead(marker);
        markerSeen?.(count);
        return;
      }
      count++;
      assert.is(native.eventfdRead(efd), 1);
      if (count === 300) {
        done?.(count);
        return;
      }
      native.pollerRearm(poller, efd, token, C.EPOLLIN);
      native.eventfdWrite(efd, 1);
    });
    native.pollerAdd(poller, efd, 3, C.EPOLLIN);
    native.eventfdWrite(efd, 1);
    const r = await waitFor<number>((resolve) => (done = resolve), 5000);
    assert.is(r, 300);
    native.eventfdWrite(efd, 1); // not rearmed: must stay silent
    // A second fd made readable after it: once its event is delivered, an event of the first would have been too.
    native.pollerAdd(poller, marker, 4, C.EPOLLIN);
    native.eventfdWrite(marker, 1);
    assert.is(await waitFor<number>((resolve) => (markerSeen = resolve), 5000), 300, 'no event for the fd not rearmed');
    assert.is(count, 300);
    native.pollerClose(poller);
    native.close(efd);
    native.close(marker);
  });
}

test('raw epoll: epollCreate / epollCtl / epollWait', () => {
  const ep = native.epollCreate();
  assert.ok(ep >= 0);
  const efd = native.eventfd(0, C.EFD_NONBLOCK);
  assert.is(native.epollCtl(ep, 1, efd, C.EPOLLIN, -3), 0);
  const out = new Int32Array(8);
  assert.is(native.epollWait(ep, out, 0), 0);
  native.eventfdWrite(efd, 1);
  assert.is(native.epollWait(ep, out, 1000), 1);
  assert.equal(Array.from(out.subarray(0, 2)), [-3, C.EPOLLIN]);
  assert.is(native.epollCtl(ep, 3, efd, C.EPOLLOUT, 5), 0);
  assert.is(native.epollWait(ep, out, 0), 1);
  assert.equal(Array.from(out.subarray(0, 2)), [5, C.EPOLLOUT]);
  assert.is(native.epollCtl(ep, 2, efd, 0, 0), 0);
  assert.is(native.epollCtl(ep, 2, efd, 0, 0), -E.ENOENT);
  assert.is(native.epollWait(ep, new Int32Array(1), 0), -E.EINVAL);
  native.close(efd);
  native.close(ep);
});

// ---- leaks ---------------------------------------------------------------------------------------------------

test('nothing leaks across a loop of every fd-creating call (and the fd count sees a new fd)', () => {
  const dir = scratchDir();
  fs.writeFileSync(join(dir, 'f'), 'x');
  const base = countOpenFds();
  const one = native.openat(C.AT_FDCWD, dir, C.O_RDONLY, 0);
  assert.is(countOpenFds(), base + 1);
  native.close(one);
  const sv = new Int32Array(2);
  const fds = new Int32Array(2);
  const stx = new ArrayBuffer(256);
  for (let i = 0; i < 200; i++) {
    const fd = native.openat(C.AT_FDCWD, join(dir, 'f'), C.O_RDONLY, 0);
    native.statx(fd, '', C.AT_EMPTY_PATH, C.STATX_BASIC_STATS, stx, 0);
    native.socketpair(sv);
    native.sendmsg(sv[0], bytes('m'), 0, 1, [fd, fd, fd]);
    native.recvmsg(sv[1], new Uint8Array(1), 0, 1, fds, false);
    native.close(fds[0]);
    native.close(fds[1]);
    const e = native.eventfd(0, 0);
    const m = native.memfdCreate('leak', 0);
    const ep = native.epollCreate();
    const d = native.dup(fd);
    const pollers = [native.pollerCreate(() => {})];
    if (nodeLoop) pollers.push(native.pollerCreateOnLoop(() => {}) as PollerHandle);
    for (const p of pollers) {
      native.pollerAdd(p, e, 1, C.EPOLLIN);
      native.pollerClose(p);
    }
    for (const x of [fd, sv[0], sv[1], e, m, ep, d]) native.close(x);
  }
  assert.is(countOpenFds(), base);
});

// Node's libuv only, as pollerCreateOnLoop (the CLI calls it on Node only).
if (nodeLoop) test('loopIdleMetricOff: the loop stops counting idle time (one epoll_pwait per wait)', () => {
  // In a child: the metric cannot be turned on again. Idle time is counted while the loop sleeps in a timer, then
  // no longer (the counter does not move at all: it is updated only while the flag is set).
  const r = runChild(`
    const { performance } = await import('node:perf_hooks');
    const sleep = () => new Promise((resolve) => setTimeout(resolve, 100));
    const a = performance.eventLoopUtilization();
    await sleep();
    const on = performance.eventLoopUtilization(a).idle;
    const first = native.loopIdleMetricOff();
    const second = native.loopIdleMetricOff();
    const b = performance.eventLoopUtilization();
    await sleep();
    console.log(JSON.stringify({ on, first, second, off: performance.eventLoopUtilization(b).idle }));
  `, 10_000);
  assert.is(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout) as { on: number; first: number; second: number; off: number };
  assert.ok(out.on > 0, `idle time was counted before (${out.on} ms)`);
  assert.is(out.first, 0);
  assert.is(out.second, 1);
  assert.is(out.off, 0);
});

test.run();

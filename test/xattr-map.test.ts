/**
 * --xattrmap: the rule syntax (separator = a rule's first character, white space between rules, the `map`
 * shorthand), virtiofsd's first-match semantics in both directions, and PassthroughFs storing and listing the
 * mapped names.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { native } from '../host/native-loader.js';
import { setLogLevel } from '../host/log.js';
import { ConfigError } from '../host/errors.js';
import { AttrTarget, BufferBytes, type Entry } from '../host/fuse/filesystem.js';
import { XattrMap, parseXattrMap } from '../host/passthrough/xattr-map.js';
import { PassthroughFs } from '../host/passthrough/passthrough-fs.js';
import { parseCommandLine } from '../host/cli.js';
import { requireRoot } from './util/prereq.js';

setLogLevel('off');

const C = native.constants;
const E = C.errno;

test('syntax: each rule picks its own separator; white space and newlines between rules', () => {
  const rules = parseXattrMap(`  /prefix/all/trusted./user.virtiofs./
    /bad/server//trusted./
    :bad:client:user.virtiofs.::
    |ok|all|||`);
  assert.equal(rules, [
    { type: 'prefix', client: true, server: true, key: 'trusted.', prepend: 'user.virtiofs.' },
    { type: 'bad', client: false, server: true, key: '', prepend: 'trusted.' },
    { type: 'bad', client: true, server: false, key: 'user.virtiofs.', prepend: '' },
    { type: 'ok', client: true, server: true, key: '', prepend: '' },
  ]);
  // The separator may be a letter's neighbour in the key: only the rule's own separator splits.
  assert.equal(parseXattrMap(',ok,client,a:b,,')[0].key, 'a:b');
});

test('syntax errors are ConfigErrors', () => {
  for (const bad of ['', '   ', ':prefix:all:a', ':frob:all:::', ':ok:both:::', ':ok:all::', ':map:a:']) {
    assert.throws(() => parseXattrMap(bad), (e: unknown) => e instanceof ConfigError, JSON.stringify(bad));
  }
});

test(':map: expands to prefix + two bad rules, with a final catch-all', () => {
  const m = new XattrMap(':map:trusted.:user.virtiofs.:');
  assert.equal(m.rules, [
    { type: 'prefix', client: true, server: true, key: 'trusted.', prepend: 'user.virtiofs.' },
    { type: 'bad', client: false, server: true, key: '', prepend: 'trusted.' },
    { type: 'bad', client: true, server: false, key: 'user.virtiofs.', prepend: '' },
    { type: 'ok', client: true, server: true, key: '', prepend: '' },
  ]);
  assert.is(m.toHost('trusted.overlay.x'), 'user.virtiofs.trusted.overlay.x');
  assert.is(m.toHost('user.plain'), 'user.plain');
  assert.is(m.toHost('user.virtiofs.sneaky'), -E.EPERM, 'the guest may not reach the prefixed names itself');
  assert.is(m.toGuest('user.virtiofs.trusted.overlay.x'), 'trusted.overlay.x');
  assert.is(m.toGuest('trusted.host-only'), null, 'the host\'s own trusted. names are hidden');
  assert.is(m.toGuest('user.plain'), 'user.plain');
  // An empty key maps everything: anything unprefixed on the host is hidden.
  const all = new XattrMap(':map::user.virtiofs.:');
  assert.is(all.toHost('security.selinux'), 'user.virtiofs.security.selinux');
  assert.is(all.toGuest('user.virtiofs.security.selinux'), 'security.selinux');
  assert.is(all.toGuest('user.other'), null);
});

test('first match wins; no match refuses (client) or hides (server); bad/unsupported errnos', () => {
  // (A server-side match looks at `prepend`: `:bad:all:security.::` would hide every host name.)
  const m = new XattrMap(':ok:client:user.:: :bad:client:security.:: :bad:server::security.: ' +
    ':unsupported:client:system.:: :prefix:server::user.g.: :ok:server::trusted.a:');
  assert.is(m.toHost('user.x'), 'user.x');
  assert.is(m.toHost('security.capability'), -E.EPERM);
  assert.is(m.toHost('system.posix_acl_access'), -E.EOPNOTSUPP);
  assert.is(m.toHost('trusted.x'), -E.EPERM, 'no client rule matches');
  assert.is(m.toGuest('security.selinux'), null);
  assert.is(m.toGuest('user.g.name'), 'name');
  assert.is(m.toGuest('trusted.abc'), 'trusted.abc');
  assert.is(m.toGuest('user.x'), null, 'no server rule matches');
  // Order matters: an earlier catch-all shadows the rest.
  const first = new XattrMap(':ok:all::: :bad:all:user.::');
  assert.is(first.toHost('user.x'), 'user.x');
});

const base = ['--socket-path=/tmp/vfs-cli-test.sock', '--shared-dir=/tmp'];

test('CLI: --xattrmap and --posix-acl need --xattr; a bad map is reported before start-up', () => {
  const d = parseCommandLine([...base, '--xattr', '--xattrmap=:map:trusted.:user.virtiofs.:', '--posix-acl']);
  if (typeof d !== 'object') throw new Error('options');
  assert.equal([d.xattr, d.xattrmap, d.posixAcl], [true, ':map:trusted.:user.virtiofs.:', true]);
  const none = parseCommandLine(base);
  if (typeof none !== 'object') throw new Error('options');
  assert.equal([none.xattrmap, none.posixAcl], [undefined, false]);
  assert.throws(() => parseCommandLine([...base, '--xattrmap=:ok:all:::']), /needs --xattr/);
  assert.throws(() => parseCommandLine([...base, '--posix-acl']), /needs --xattr/);
  assert.throws(() => parseCommandLine([...base, '--xattr', '--xattrmap=:ok:nowhere:::']), /unknown scope/);
});

// ---- PassthroughFs ------------------------------------------------------------------------------------------------

let dir = '';
let pfs: PassthroughFs | undefined;

test.after.each(() => {
  pfs?.close();
  pfs = undefined;
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
  dir = '';
});

const ctx = { uid: process.getuid!(), gid: process.getgid!(), pid: 1 };

function names(b: BufferBytes, n: number): string[] {
  return new TextDecoder().decode(b.bytes(n)).split('\0').filter((s) => s !== '').sort();
}

function mappedShare(): PassthroughFs {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vfs-xmap-'));
  fs.writeFileSync(path.join(dir, 'f'), '');
  return new PassthroughFs({
    // virtiofsd's documented example 2.
    root: dir, xattr: true, xattrMap: new XattrMap(`/prefix/all/trusted./user.virtiofs./
      /bad/server//trusted./
      /bad/client/user.virtiofs.//
      /ok/all///`),
  });
}

test('PassthroughFs: guest trusted.x lives as host user.virtiofs.trusted.x; LISTXATTR maps and hides', () => {
  pfs = mappedShare();
  const a = AttrTarget.standalone();
  const f = pfs.lookup(ctx, 1, 'f', a) as Entry;
  assert.type(f, 'object');
  const value = new TextEncoder().encode('v1');
  assert.is(pfs.setxattr(ctx, f.nodeId, 'trusted.x', value, 0), 0);
  assert.is(pfs.setxattr(ctx, f.nodeId, 'user.plain', new TextEncoder().encode('p'), 0), 0);
  assert.is(pfs.setxattr(ctx, f.nodeId, 'user.virtiofs.direct', value, 0), -E.EPERM);

  // On the host: the prefixed name, no trusted.x.
  const host = path.join(dir, 'f');
  const hb = new Uint8Array(16);
  assert.is(native.getxattr(host, 'user.virtiofs.trusted.x', hb, 0, hb.length), 2);
  assert.is(new TextDecoder().decode(hb.subarray(0, 2)), 'v1');
  assert.is(native.getxattr(host, 'trusted.x', hb, 0, hb.length), -E.ENODATA);

  const out = new BufferBytes(64);
  assert.is(pfs.getxattr(ctx, f.nodeId, 'trusted.x', out), 2);
  assert.is(new TextDecoder().decode(out.bytes(2)), 'v1');
  assert.is(pfs.getxattr(ctx, f.nodeId, 'user.virtiofs.trusted.x', out), -E.EPERM);

  // The guest's names come back unprefixed (the host's own trusted. attributes: the next test).
  const list = new BufferBytes(256);
  const n = pfs.listxattr(ctx, f.nodeId, list);
  assert.ok(n > 0);
  assert.equal(names(list, n), ['trusted.x', 'user.plain']);
  // Size probe and ERANGE follow the mapped list, not the host's.
  assert.is(pfs.listxattr(ctx, f.nodeId, new BufferBytes(0)), 'trusted.x\0user.plain\0'.length);
  assert.is(pfs.listxattr(ctx, f.nodeId, new BufferBytes(12)), -E.ERANGE);

  assert.is(pfs.removexattr(ctx, f.nodeId, 'trusted.x'), 0);
  assert.is(native.getxattr(host, 'user.virtiofs.trusted.x', hb, 0, 0), -E.ENODATA);
});

test('PassthroughFs as root: the host\'s own trusted. attributes stay hidden from the guest', () => {
  if (!requireRoot()) return; // only CAP_SYS_ADMIN sets a trusted. attribute on the host
  pfs = mappedShare();
  const host = path.join(dir, 'f');
  assert.is(native.setxattr(host, 'trusted.hostonly', new TextEncoder().encode('h1'), 0, 2, 0), 0);
  assert.is(native.setxattr(host, 'user.plain', new TextEncoder().encode('p'), 0, 1, 0), 0);
  const f = pfs.lookup(ctx, 1, 'f', AttrTarget.standalone()) as Entry;
  assert.type(f, 'object');
  const list = new BufferBytes(256);
  const n = pfs.listxattr(ctx, f.nodeId, list);
  assert.equal(names(list, n), ['user.plain'], 'LISTXATTR hides it');
  assert.is(pfs.getxattr(ctx, f.nodeId, 'trusted.hostonly', new BufferBytes(64)), -E.ENODATA,
    'the guest\'s trusted.hostonly is the host\'s user.virtiofs.trusted.hostonly, which does not exist');
});

test('PassthroughFs: --xattrmap without --xattr is a configuration error', () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vfs-xmap-'));
  assert.throws(() => new PassthroughFs({ root: dir, xattrMap: new XattrMap(':ok:all:::') }),
    (e: unknown) => e instanceof ConfigError);
});

test.run();

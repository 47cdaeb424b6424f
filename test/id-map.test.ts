/**
 * --translate-uid/--translate-gid: the rule parser (virtiofsd's grammar and its overlap refusal), the mapping in
 * both directions, and PassthroughFs applying it: creating ops and chown go guest -> host (forbidden ids EPERM),
 * every attribute the guest sees goes host -> guest.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { native } from '../host/native-loader.js';
import { setLogLevel } from '../host/log.js';
import { ConfigError } from '../host/errors.js';
import { AttrTarget, type Entry } from '../host/fuse/filesystem.js';
import { FORBIDDEN, IdMap, parseIdMapRule } from '../host/passthrough/id-map.js';
import { PassthroughFs } from '../host/passthrough/passthrough-fs.js';
import { parseCommandLine } from '../host/cli.js';
import { requireRoot } from './util/prereq.js';

setLogLevel('off');

const C = native.constants;
const E = C.errno;

test('rules parse with any separator; type names are case-insensitive', () => {
  assert.equal(parseIdMapRule('map:1000:2000:10'), { kind: 'map', fields: [1000, 2000, 10], text: 'map:1000:2000:10' });
  assert.equal(parseIdMapRule('squash-guest/0/1000/4294967295').fields, [0, 1000, 4294967295]);
  assert.equal(parseIdMapRule('FORBID-GUEST,5,1').kind, 'forbid-guest');
  assert.equal(parseIdMapRule('host:1:2:3').kind, 'host');
  assert.equal(parseIdMapRule('guest:1:2:3').kind, 'guest');
  assert.equal(parseIdMapRule('squash-host:1:2:3').kind, 'squash-host');
});

test('malformed rules are refused with ConfigError', () => {
  for (const bad of ['', 'map', 'map:1:2', 'map:1:2:3:4', 'forbid-guest:1:2:3', 'frob:1:2:3', 'map:1:x:3',
    'map:1:2:-3', 'map:1:2:4294967296', 'map:1:2:3/', 'map:1/2/3', 'map::1:2']) {
    assert.throws(() => parseIdMapRule(bad), (e: unknown) => e instanceof ConfigError, bad);
  }
});

test('overlapping rules in the same direction are refused; the other direction is independent', () => {
  assert.throws(() => new IdMap(['forbid-guest:0:1000', 'map:999:5000:1']), /intersects/);
  assert.throws(() => new IdMap(['squash-host:0:65534:100', 'host:99:7:1']), /intersects/);
  // virtiofsd's example: ranges that touch but do not intersect are fine.
  new IdMap(['forbid-guest:0:1000', 'map:1000:1000:1', 'forbid-guest:1001:999', 'map:2000:2000:1']);
  // squash-guest and host cover different directions: no conflict.
  new IdMap(['squash-guest:0:1000:4294967295', 'host:1000:0:1']);
  assert.throws(() => new IdMap(['map:0:0:0']), /empty/);
  assert.throws(() => new IdMap(['map:4294967295:0:2']), /past/);
  assert.throws(() => new IdMap(['guest:0:4294967295:2']), /past/);
});

test('mapping: ranges, squashes, forbidden ids, identity outside the rules', () => {
  const m = new IdMap(['map:1000:3000:100', 'squash-guest:5000:65534:10', 'forbid-guest:7:2', 'squash-host:0:65534:1',
    'host:9000:8000:5']);
  assert.is(m.toHost(1000), 3000);
  assert.is(m.toHost(1099), 3099);
  assert.is(m.toHost(1100), 1100, 'past the range: unchanged');
  assert.is(m.toHost(5009), 65534);
  assert.is(m.toHost(7), FORBIDDEN);
  assert.is(m.toHost(8), FORBIDDEN);
  assert.is(m.toHost(9), 9);
  assert.is(m.toGuest(3042), 1042);
  assert.is(m.toGuest(0), 65534, 'host root squashed');
  assert.is(m.toGuest(9004), 8004);
  assert.is(m.toGuest(9005), 9005);
  assert.is(m.toGuest(65534), 65534);
  assert.is(new IdMap().isIdentity, true);
  assert.is(m.isIdentity, false);
  const all = new IdMap(['squash-guest:0:1000:4294967295']);
  assert.is(all.toHost(4294967294), 1000);
  assert.is(all.toHost(0), 1000);
  assert.is(all.toHost(4294967295), 4294967295, 'COUNT 4294967295 from 0 stops short of (uid_t)-1');
});

const base = ['--socket-path=/tmp/vfs-cli-test.sock', '--shared-dir=/tmp'];

test('CLI: --translate-uid/--translate-gid repeat and are checked before start-up', () => {
  const d = parseCommandLine([...base, '--translate-uid=squash-guest:0:1000:4294967295', '--translate-uid=host:1000:0:1',
    '--translate-gid', 'map:0:100:10']);
  if (typeof d !== 'object') throw new Error('options');
  assert.equal(d.translateUid, ['squash-guest:0:1000:4294967295', 'host:1000:0:1']);
  assert.equal(d.translateGid, ['map:0:100:10']);
  const none = parseCommandLine(base);
  if (typeof none !== 'object') throw new Error('options');
  assert.equal([none.translateUid, none.translateGid], [[], []]);
  assert.throws(() => parseCommandLine([...base, '--translate-uid=map:1:2']), /--translate-uid: .*expected 3/);
  assert.throws(() => parseCommandLine([...base, '--translate-gid=forbid-guest:0:10', '--translate-gid=map:5:5:1']),
    /--translate-gid: .*intersects/);
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

function entry(r: Entry | number, what: string): Entry {
  if (typeof r === 'number') throw new Error(`${what}: ${native.strerror(-r)}`);
  return r;
}

test('PassthroughFs: new nodes get the host ids, the guest sees its own; forbidden ids get EPERM', () => {
  if (!requireRoot()) return;
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vfs-idmap-'));
  fs.chmodSync(dir, 0o777);
  pfs = new PassthroughFs({
    root: dir,
    uidMap: new IdMap(['map:1000:3000:100', 'forbid-guest:5:1', 'squash-host:60000:65534:10']),
    gidMap: new IdMap(['map:1000:4000:100']),
  });
  const guest = { uid: 1001, gid: 1002, pid: 1 };
  const a = AttrTarget.standalone();

  const f = pfs.create(guest, 1, 'f', C.S_IFREG | 0o644, C.O_WRONLY, 0, a);
  if (typeof f === 'number') throw new Error(`create: ${native.strerror(-f)}`);
  assert.equal([a.uid, a.gid], [1001, 1002], 'CREATE reply in guest ids');
  const st = fs.statSync(path.join(dir, 'f'));
  assert.equal([st.uid, st.gid], [3001, 4002], 'owned by the host ids on the host');

  entry(pfs.mkdir(guest, 1, 'd', 0o755, 0, a), 'mkdir');
  assert.equal([a.uid, a.gid], [1001, 1002]);
  assert.equal([fs.statSync(path.join(dir, 'd')).uid, fs.statSync(path.join(dir, 'd')).gid], [3001, 4002]);

  // Host-side owners seen from the guest: mapped, squashed, or unchanged outside every rule.
  fs.writeFileSync(path.join(dir, 'h1'), '');
  fs.chownSync(path.join(dir, 'h1'), 3050, 4099);
  fs.writeFileSync(path.join(dir, 'h2'), '');
  fs.chownSync(path.join(dir, 'h2'), 60003, 7);
  const h1 = entry(pfs.lookup(guest, 1, 'h1', a), 'lookup h1');
  assert.equal([a.uid, a.gid], [1050, 1099], 'LOOKUP');
  assert.is(pfs.getattr(guest, h1.nodeId, undefined, a), 0);
  assert.equal([a.uid, a.gid], [1050, 1099], 'GETATTR');
  entry(pfs.lookup(guest, 1, 'h2', a), 'lookup h2');
  assert.equal([a.uid, a.gid], [65534, 7]);

  // chown from the guest: guest ids -> host ids; a forbidden one is refused.
  assert.is(pfs.setattr(guest, h1.nodeId, { valid: 0, uid: 1010, gid: 1020 }, a), 0);
  assert.equal([a.uid, a.gid], [1010, 1020]);
  assert.equal([fs.statSync(path.join(dir, 'h1')).uid, fs.statSync(path.join(dir, 'h1')).gid], [3010, 4020]);
  assert.is(pfs.setattr(guest, h1.nodeId, { valid: 0, uid: 5 }, a), -E.EPERM);
  assert.is(fs.statSync(path.join(dir, 'h1')).uid, 3010);

  // A forbidden caller cannot create anything.
  const forbidden = { uid: 5, gid: 1000, pid: 1 };
  assert.is(pfs.create(forbidden, 1, 'nope', C.S_IFREG | 0o644, C.O_WRONLY, 0, a), -E.EPERM);
  assert.is(pfs.mknod(forbidden, 1, 'nope', C.S_IFIFO | 0o644, 0, 0, a), -E.EPERM);
  assert.is(pfs.symlink(forbidden, 1, 'nope', 'f', a), -E.EPERM);
  assert.is(fs.existsSync(path.join(dir, 'nope')), false);
});

test.run();

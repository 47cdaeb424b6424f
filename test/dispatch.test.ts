/**
 * The dispatch table as assembled from the op families (host/fuse/dispatch.ts, host/fuse/ops/*.ts): every opcode
 * is served by exactly one family (a Map would let a second row silently replace the first), each row carries its
 * opcode's own name, and the opcodes documented as unanswered stay out of the table. Also the u64 reader the
 * decoders share.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as P from '../host/fuse/protocol.js';
import { OPS } from '../host/fuse/dispatch.js';
import type { Args, OpRow } from '../host/fuse/ops/op.js';
import { u64Big, u64Number } from '../host/fuse/ops/args.js';
import { sessionOps } from '../host/fuse/ops/session.js';
import { entryOps } from '../host/fuse/ops/entries.js';
import { attributeOps } from '../host/fuse/ops/attributes.js';
import { dataOps } from '../host/fuse/ops/data.js';
import { directoryOps } from '../host/fuse/ops/directories.js';
import { xattrOps } from '../host/fuse/ops/xattrs.js';
import { lockOps } from '../host/fuse/ops/locks.js';
import { daxOps } from '../host/fuse/ops/dax.js';

const families: Record<string, readonly OpRow[]> = {
  session: sessionOps, entries: entryOps, attributes: attributeOps, data: dataOps, directories: directoryOps,
  xattrs: xattrOps, locks: lockOps, dax: daxOps,
};

test('every opcode is served by exactly one family, and the table holds all of them', () => {
  const owner = new Map<number, string>();
  for (const [family, rows] of Object.entries(families)) {
    for (const [opcode, op] of rows) {
      assert.not.ok(owner.has(opcode), `${P.OPCODE_NAMES[opcode]} in both ${owner.get(opcode)} and ${family}`);
      owner.set(opcode, family);
      assert.is(OPS.get(opcode), op, `${P.OPCODE_NAMES[opcode]} of ${family}`);
    }
  }
  assert.is(OPS.size, owner.size);
});

test('each row is named for its opcode', () => {
  for (const [opcode, op] of OPS) assert.is(op.name, P.OPCODE_NAMES[opcode], `opcode ${opcode}`);
});

test('the opcodes we answer ENOSYS to are not in the table', () => {
  for (const opcode of [P.FUSE_BMAP, P.FUSE_POLL, P.FUSE_NOTIFY_REPLY, P.CUSE_INIT]) {
    assert.not.ok(OPS.has(opcode), P.OPCODE_NAMES[opcode]);
  }
});

test('every other opcode we know by name is answered', () => {
  const unanswered = new Set([P.FUSE_BMAP, P.FUSE_POLL, P.FUSE_NOTIFY_REPLY, P.CUSE_INIT]);
  for (const key of Object.keys(P.OPCODE_NAMES)) {
    const opcode = Number(key);
    if (!unanswered.has(opcode)) assert.ok(OPS.has(opcode), P.OPCODE_NAMES[opcode]);
  }
});

test('u64Number is the u64 exactly below 2^53 and Number(u64) above (read as two u32, no BigInt)', () => {
  const view = new DataView(new ArrayBuffer(16));
  const args = { view, base: 8, len: 8 } as unknown as Args;
  const samples = [0n, 1n, 0xffff_ffffn, 0x1_0000_0000n, 0x1_2345_6789n, 2n ** 53n - 1n, 2n ** 53n, 2n ** 53n + 1n,
    2n ** 53n + 3n, 0x8000_0000_0000_0001n, 2n ** 64n - 1n];
  for (let i = 0; i < 2000; i++) {
    samples.push(BigInt.asUintN(64, BigInt(Math.floor(Math.random() * 2 ** 53)) << BigInt(i % 12)));
  }
  for (const v of samples) {
    view.setBigUint64(8, v, true);
    assert.is(u64Number(args, 0), Number(v), `0x${v.toString(16)}`);
    assert.is(u64Big(args, 0), v);
  }
});

test.run();

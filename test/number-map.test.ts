/**
 * NumberMap (the inode and handle tables' index): the same answers as a Map under random sets and deletes over
 * clustered and spread keys, through growth, with backward-shift deletion keeping every remaining key findable;
 * the size kept through deletes and given back by compact.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { NumberMap } from '../host/passthrough/number-map.js';

interface Box { readonly n: number }

function compare(map: NumberMap<Box>, ref: Map<number, Box>, probe: number[], what: string): void {
  assert.is(map.size, ref.size, `${what}: size`);
  for (const k of probe) assert.is(map.get(k), ref.get(k), `${what}: key ${k}`);
  const seen = new Map<number, Box>();
  map.forEach((v, k) => seen.set(k, v));
  assert.equal([...seen.entries()].sort((a, b) => a[0] - b[0]), [...ref.entries()].sort((a, b) => a[0] - b[0]),
    `${what}: forEach`);
}

for (const [name, keyOf] of [
  ['sequential keys', (r: number): number => r],
  ['keys 2^43 apart in the high part', (r: number): number => (r % 7) * 2 ** 43 + Math.floor(r / 7)],
  ['keys that are multiples of 2^20', (r: number): number => r * 2 ** 20],
] as const) {
  test(`${name}: random sets and deletes answer as a Map does`, () => {
    let seed = 42;
    const rnd = (n: number): number => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed % n; };
    const map = new NumberMap<Box>();
    const ref = new Map<number, Box>();
    const probe: number[] = [];
    for (let i = 0; i < 3000; i++) probe.push(keyOf(i));
    for (let round = 0; round < 6; round++) {
      // Fill to a few thousand (growth), then delete most (shifts), in random order.
      for (let i = 0; i < 2500; i++) {
        const k = keyOf(rnd(3000));
        const v = { n: k };
        map.set(k, v);
        ref.set(k, v);
      }
      compare(map, ref, probe, `round ${round} filled`);
      for (let i = 0; i < 2800; i++) {
        const k = keyOf(rnd(3000));
        assert.is(map.delete(k), ref.delete(k), `delete ${k}`);
      }
      compare(map, ref, probe, `round ${round} emptied`);
    }
    map.clear();
    assert.is(map.size, 0);
    assert.is(map.get(keyOf(1)), undefined);
  });
}

test('a key is replaced in place; keys that are not safe non-negative integers are refused', () => {
  const map = new NumberMap<Box>();
  map.set(7, { n: 1 });
  map.set(7, { n: 2 });
  assert.is(map.size, 1);
  assert.is(map.get(7)!.n, 2);
  assert.ok(map.has(7));
  assert.not.ok(map.has(8));
  for (const bad of [-1, 1.5, 2 ** 53, NaN, Infinity]) assert.throws(() => map.set(bad, { n: 0 }), RangeError);
  assert.is(map.delete(8), false);
});

test('the table keeps its largest size through deletes; compact gives it back and keeps the entries', () => {
  const map = new NumberMap<Box>();
  for (let k = 0; k < 5000; k++) map.set(k * 3, { n: k });
  const grown = map.capacity;
  assert.ok(grown >= 10_000, `grown to ${grown}`);
  for (let k = 10; k < 5000; k++) map.delete(k * 3);
  assert.is(map.capacity, grown, 'deletes do not shrink it');
  map.compact();
  assert.is(map.capacity, 64, 'compacted');
  assert.is(map.size, 10);
  for (let k = 0; k < 10; k++) assert.is(map.get(k * 3)!.n, k);
  assert.is(map.get(30), undefined);
  for (let k = 0; k < 40; k++) map.set(1000 + k, { n: k });
  const small = map.capacity;
  map.compact();
  assert.is(map.capacity, small, 'a table not 4 times too large stays');
});

test.run();

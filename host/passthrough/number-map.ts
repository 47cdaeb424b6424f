/**
 * A map from non-negative integer keys (up to 2^53) to objects, for the tables that every request touches: the
 * inode table's node ids and (st_dev, st_ino) keys, and open handles. Open addressing with linear probing over a
 * Float64Array of keys and an array of values, at most half full.
 *
 * Why not a Map: a READDIRPLUS listing of 10,000 entries adds 10,000 inodes and the guest's BATCH_FORGET removes
 * them again; a Map grows through every power of two on the way up and shrinks back on the way down, allocating
 * each table anew (large-object pages, a GC's work), listing after listing. This table grows and never shrinks
 * (until `clear` or `compact`, which the CLI daemon calls once it has gone idle), so from the second listing on an
 * entry costs a probe and two stores. Deletion shifts the following entries back rather than leaving tombstones,
 * so lookups never slow down with churn.
 */
/** The fewest slots a table has. */
const MIN_SLOTS = 64;

export class NumberMap<V extends object> {
  private keys!: Float64Array;
  /** `undefined` marks an empty slot (values are objects, never undefined). */
  private values!: Array<V | undefined>;
  private mask!: number;
  private count = 0;

  /** `entries`: how many the table should hold before it first grows. */
  constructor(entries = 0) {
    this.allocate(slotsFor(entries));
  }

  get size(): number {
    return this.count;
  }

  /** Slots allocated now (a power of two, at least twice `size`). */
  get capacity(): number {
    return this.mask + 1;
  }

  get(key: number): V | undefined {
    const keys = this.keys;
    const values = this.values;
    const mask = this.mask;
    for (let i = home(key, mask); ; i = (i + 1) & mask) {
      const v = values[i];
      if (v === undefined || keys[i] === key) return v;
    }
  }

  has(key: number): boolean {
    return this.get(key) !== undefined;
  }

  /** Sets `key` to `value`. Throws RangeError for a key that is not a safe non-negative integer. */
  set(key: number, value: V): this {
    if (!(Number.isSafeInteger(key) && key >= 0)) throw new RangeError(`NumberMap key ${key}`);
    if ((this.count + 1) * 2 > this.mask + 1) this.resize((this.mask + 1) * 2);
    this.insert(key, value);
    return this;
  }

  delete(key: number): boolean {
    const keys = this.keys;
    const values = this.values;
    const mask = this.mask;
    let hole = home(key, mask);
    for (; ; hole = (hole + 1) & mask) {
      if (values[hole] === undefined) return false;
      if (keys[hole] === key) break;
    }
    values[hole] = undefined;
    this.count--;
    // Backward shift: an entry after the hole moves into it unless its home lies cyclically in (hole, j], where
    // a probe for it would never pass the hole.
    for (let j = (hole + 1) & mask; values[j] !== undefined; j = (j + 1) & mask) {
      const h = home(keys[j]!, mask);
      const stays = hole <= j ? hole < h && h <= j : hole < h || h <= j;
      if (stays) continue;
      keys[hole] = keys[j]!;
      values[hole] = values[j];
      values[j] = undefined;
      hole = j;
    }
    return true;
  }

  /** Calls `fn` for every entry, in no particular order. `fn` must not add or delete entries. */
  forEach(fn: (value: V, key: number) => void): void {
    const keys = this.keys;
    const values = this.values;
    for (let i = 0; i < values.length; i++) {
      const v = values[i];
      if (v !== undefined) fn(v, keys[i]!);
    }
  }

  /** Empties the map and gives back the memory a large table held. */
  clear(): void {
    this.allocate(MIN_SLOTS);
  }

  /** Gives back the memory of a table at least 4 times larger than its entries need (entries kept). */
  compact(): void {
    const slots = slotsFor(this.count);
    if (slots * 4 <= this.mask + 1) this.resize(slots);
  }

  /** Moves every entry into a table of `slots` (their keys were checked when they were set). */
  private resize(slots: number): void {
    const oldKeys = this.keys;
    const oldValues = this.values;
    this.allocate(slots);
    for (let i = 0; i < oldValues.length; i++) {
      const v = oldValues[i];
      if (v !== undefined) this.insert(oldKeys[i]!, v);
    }
  }

  /** An empty table of `slots` slots. */
  private allocate(slots: number): void {
    this.keys = new Float64Array(slots);
    this.values = new Array<V | undefined>(slots).fill(undefined);
    this.mask = slots - 1;
    this.count = 0;
  }

  /** Puts `key` in its slot, or replaces its value; the table has room (set grew it first). */
  private insert(key: number, value: V): void {
    const keys = this.keys;
    const values = this.values;
    const mask = this.mask;
    for (let i = home(key, mask); ; i = (i + 1) & mask) {
      if (values[i] === undefined) {
        keys[i] = key;
        values[i] = value;
        this.count++;
        return;
      }
      if (keys[i] === key) {
        values[i] = value;
        return;
      }
    }
  }
}

/** The slots for `entries`: a power of two, at least twice `entries` and at least MIN_SLOTS. */
function slotsFor(entries: number): number {
  let slots = MIN_SLOTS;
  while (slots < entries * 2) slots *= 2;
  return slots;
}

/** The key's home slot: its low and high 32 bits mixed (murmur3's finaliser), so sequential keys spread. */
function home(key: number, mask: number): number {
  let x = (key | 0) ^ Math.imul((key / 0x1_0000_0000) | 0, 0x9e3779b1);
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b);
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35);
  return (x ^ (x >>> 16)) & mask;
}

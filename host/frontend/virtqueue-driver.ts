/**
 * The driver side of a virtio split virtqueue, as the Linux guest does it (drivers/virtio/virtio_ring.c): it
 * lays out the descriptor table and the avail/used rings in guest memory, hands out descriptors from a free
 * list, exposes buffers through the avail ring and collects them from the used ring.
 *
 * It works on any byte view of guest memory (the core's linear memory in tests and benchmarks, a mapped memfd
 * in a userspace frontend) through a `GuestMemory` that resolves guest-physical addresses. It is single-threaded:
 * the "barriers" of the real driver are program order here, and are marked where the Linux driver has them.
 *
 * Besides the well-behaved path (add/publish/pollUsed) it has raw accessors so tests can build hostile tables:
 * loops, bad lengths, bad flags, a lying avail.idx.
 *
 * Layout produced by `VirtqueueDriver.layout(num)` from `ringGpa` (the legacy/QEMU-friendly packing):
 *
 *   ringGpa            descriptor table   16 * num
 *   + 16*num           avail ring         6 + 2 * num   (flags, idx, ring[num], used_event)
 *   align 4096         used ring          6 + 8 * num   (flags, idx, ring[num]{id,len}, avail_event)
 *   align 16           indirect tables    num slots of indirectMax * 16 bytes (slot = head index)
 */

export const VIRTQ_DESC_F_NEXT = 1;
export const VIRTQ_DESC_F_WRITE = 2;
export const VIRTQ_DESC_F_INDIRECT = 4;
export const VIRTQ_AVAIL_F_NO_INTERRUPT = 1;
export const VIRTQ_USED_F_NO_NOTIFY = 1;

/** A guest buffer: guest-physical address and length. */
export interface GuestBuffer {
  gpa: bigint;
  len: number;
}

/** One raw descriptor. */
export interface Descriptor {
  addr: bigint;
  len: number;
  flags: number;
  next: number;
}

/** A used-ring element. */
export interface UsedElement {
  id: number;
  len: number;
}

/** Guest RAM seen by the driver: a base guest-physical address and a byte view starting there. */
export interface GuestMemory {
  /** guest-physical address of bytes()[0] */
  readonly gpa: bigint;
  /** A view from gpa on. Fetched again when the previous one was detached (a wasm memory grew), or on refresh(). */
  bytes(): Uint8Array;
}

export interface RingLayout {
  descGpa: bigint;
  availGpa: bigint;
  usedGpa: bigint;
  indirectGpa: bigint;
  /** Total bytes from ringGpa. */
  size: number;
}

export interface VirtqueueDriverOptions {
  /** Queue size (power of two, <= 32768). */
  num: number;
  /** Where the rings start (see the layout above). */
  ringGpa: bigint;
  /** Starting value of avail.idx and used.idx (to test index wrap-around). Default 0. */
  initialIdx?: number;
  /** VIRTIO_RING_F_EVENT_IDX negotiated: the driver honours avail_event and may set used_event. */
  eventIdx?: boolean;
  /** Entries per indirect table slot. Default 64. */
  indirectMax?: number;
}

const align = (v: number, a: number) => Math.ceil(v / a) * a;

export class VirtqueueDriver {
  readonly num: number;
  readonly layout: RingLayout;
  readonly eventIdx: boolean;
  readonly indirectMax: number;

  private readonly mem: GuestMemory;
  private readonly descOff: number;
  private readonly availOff: number;
  private readonly usedOff: number;
  private freeHead = 0;
  private numFree: number;
  /** Shadow avail.idx (what publish() will write). */
  private availIdx: number;
  /** avail.idx at the last publish (for kickNeeded). */
  private publishedIdx: number;
  private lastPublishedBefore: number;
  private lastUsedIdx: number;
  /** Per head: the descriptor indices of its chain in the main table (to free them). */
  private readonly chains: (number[] | undefined)[];

  /** Bytes needed for a queue of `num` entries with `indirectMax`-entry indirect slots. */
  static layout(num: number, ringGpa: bigint, indirectMax = 64): RingLayout {
    const desc = 0;
    const avail = desc + 16 * num;
    const used = align(avail + 6 + 2 * num, 4096);
    const indirect = align(used + 6 + 8 * num, 16);
    const size = indirect + num * indirectMax * 16;
    return {
      descGpa: ringGpa + BigInt(desc),
      availGpa: ringGpa + BigInt(avail),
      usedGpa: ringGpa + BigInt(used),
      indirectGpa: ringGpa + BigInt(indirect),
      size,
    };
  }

  constructor(mem: GuestMemory, options: VirtqueueDriverOptions) {
    const { num } = options;
    if (!(num >= 1 && num <= 32768 && (num & (num - 1)) === 0)) throw new RangeError(`bad queue size ${num}`);
    this.mem = mem;
    this.num = num;
    this.eventIdx = options.eventIdx ?? false;
    this.indirectMax = options.indirectMax ?? 64;
    this.layout = VirtqueueDriver.layout(num, options.ringGpa, this.indirectMax);
    // Ring offsets inside the view, checked once (the hot path then does plain number arithmetic).
    this.descOff = this.off(this.layout.descGpa, this.layout.size);
    this.availOff = this.descOff + Number(this.layout.availGpa - this.layout.descGpa);
    this.usedOff = this.descOff + Number(this.layout.usedGpa - this.layout.descGpa);
    this.chains = new Array(num).fill(undefined);
    const idx = (options.initialIdx ?? 0) & 0xffff;
    this.availIdx = idx;
    this.publishedIdx = idx;
    this.lastPublishedBefore = idx;
    this.lastUsedIdx = idx;
    this.numFree = num;
    this.reset(idx);
  }

  /**
   * Zeroes the rings, rebuilds the free list and sets avail.idx = idx and used.idx = usedIdx (default idx), as a
   * driver does when it (re)initializes a queue. In-flight chains are forgotten.
   */
  reset(idx = 0, usedIdx = idx): void {
    const b = this.bytes();
    b.fill(0, this.descOff, this.descOff + this.layout.size);
    for (let i = 0; i < this.num; i++) this.writeDesc(i, { addr: 0n, len: 0, flags: 0, next: (i + 1) % this.num });
    this.freeHead = 0;
    this.numFree = this.num;
    this.chains.fill(undefined);
    this.availIdx = idx & 0xffff;
    this.publishedIdx = this.availIdx;
    this.lastPublishedBefore = this.availIdx;
    this.lastUsedIdx = usedIdx & 0xffff;
    this.setAvailIdx(this.availIdx);
    this.view().setUint16(this.usedOff + 2, this.lastUsedIdx, true);
  }

  /** Descriptors not in use. */
  get free(): number {
    return this.numFree;
  }

  // ---- the driver's normal path -------------------------------------------------------------------------------

  /**
   * Adds one buffer chain: device-readable buffers first, then device-writable ones (virtio requires that
   * order). With `indirect`, the chain is written into the head's indirect slot and takes one descriptor.
   * Returns the head index. The buffer is not visible to the device until publish().
   */
  add(readable: GuestBuffer[], writable: GuestBuffer[], opts: { indirect?: boolean } = {}): number {
    const total = readable.length + writable.length;
    if (total === 0) throw new RangeError('a chain needs at least one buffer');
    const at = (i: number) => (i < readable.length ? readable[i] : writable[i - readable.length]);
    const flagsOf = (i: number) => (i < readable.length ? 0 : VIRTQ_DESC_F_WRITE)
      | (i + 1 < total ? VIRTQ_DESC_F_NEXT : 0);
    let head: number;
    if (opts.indirect) {
      if (total > this.indirectMax) throw new RangeError(`indirect chain longer than ${this.indirectMax}`);
      head = this.takeFree();
      const table = this.indirectSlotGpa(head);
      const base = this.off(table, total * 16);
      for (let i = 0; i < total; i++) {
        const b = at(i);
        this.writeDescOff(base + 16 * i, { addr: b.gpa, len: b.len, flags: flagsOf(i), next: i + 1 });
      }
      this.writeDesc(head, { addr: table, len: total * 16, flags: VIRTQ_DESC_F_INDIRECT, next: 0 });
      this.chains[head] = [head];
    } else {
      if (this.numFree < total) throw new RangeError('virtqueue full');
      const ids: number[] = new Array(total);
      for (let i = 0; i < total; i++) ids[i] = this.takeFree();
      for (let i = 0; i < total; i++) {
        const b = at(i);
        this.writeDesc(ids[i], { addr: b.gpa, len: b.len, flags: flagsOf(i), next: i + 1 < total ? ids[i + 1] : 0 });
      }
      head = ids[0];
      this.chains[head] = ids;
    }
    this.pushAvail(head);
    return head;
  }

  /** Puts a head in the next avail slot (shadow index only; publish() makes it visible). */
  pushAvail(head: number): void {
    this.writeAvailRing(this.availIdx & (this.num - 1), head);
    this.availIdx = (this.availIdx + 1) & 0xffff;
  }

  /**
   * Makes everything added since the last publish visible: the release-write of avail.idx (Linux:
   * virtio_wmb() then the idx store).
   */
  publish(): void {
    this.lastPublishedBefore = this.publishedIdx;
    this.setAvailIdx(this.availIdx);
    this.publishedIdx = this.availIdx;
  }

  /**
   * Whether the last publish() needs a kick (Linux virtqueue_kick_prepare): with EVENT_IDX, vring_need_event on
   * the device's avail_event; otherwise unless the device set VIRTQ_USED_F_NO_NOTIFY.
   */
  kickNeeded(): boolean {
    const v = this.view();
    const used = this.usedOff;
    if (this.eventIdx) {
      const event = v.getUint16(used + 4 + 8 * this.num, true);
      return needEvent(event, this.publishedIdx, this.lastPublishedBefore);
    }
    return (v.getUint16(used, true) & VIRTQ_USED_F_NO_NOTIFY) === 0;
  }

  /** Collects used elements published since the last call and frees their descriptors. */
  pollUsed(): UsedElement[] {
    const out: UsedElement[] = [];
    const usedIdx = this.usedIdx();
    while (this.lastUsedIdx !== usedIdx) {
      const e = this.readUsedElem(this.lastUsedIdx & (this.num - 1));
      out.push(e);
      this.lastUsedIdx = (this.lastUsedIdx + 1) & 0xffff;
      const chain = e.id < this.num ? this.chains[e.id] : undefined;
      if (chain !== undefined) {
        this.chains[e.id] = undefined;
        for (const i of chain) this.giveFree(i);
      }
    }
    return out;
  }

  /** Used-buffer notification suppression: with EVENT_IDX, "interrupt me when used.idx passes idx". */
  setUsedEvent(idx: number): void {
    this.view().setUint16(this.availOff + 4 + 2 * this.num, idx & 0xffff, true);
  }

  /** VIRTQ_AVAIL_F_NO_INTERRUPT on/off (without EVENT_IDX). */
  setNoInterrupt(on: boolean): void {
    this.view().setUint16(this.availOff, on ? VIRTQ_AVAIL_F_NO_INTERRUPT : 0, true);
  }

  /** The shadow avail index (next slot to fill). */
  get nextAvailIdx(): number {
    return this.availIdx;
  }

  /** The driver's last seen used index. */
  get lastUsed(): number {
    return this.lastUsedIdx;
  }

  /** Guest-physical address of head's indirect table slot. */
  indirectSlotGpa(head: number): bigint {
    return this.layout.indirectGpa + BigInt(head * this.indirectMax * 16);
  }

  // ---- raw access (hostile tables in tests) -------------------------------------------------------------------

  /** Takes a descriptor off the free list (for hand-built chains). */
  takeFree(): number {
    if (this.numFree === 0) throw new RangeError('virtqueue full');
    const i = this.freeHead;
    this.freeHead = this.view().getUint16(this.descOff + 16 * i + 14, true) % this.num;
    this.numFree--;
    return i;
  }

  private giveFree(i: number): void {
    const v = this.view();
    const o = this.descOff + 16 * i;
    v.setUint16(o + 12, 0, true);
    v.setUint16(o + 14, this.freeHead, true);
    this.freeHead = i;
    this.numFree++;
  }

  writeDesc(i: number, d: Descriptor): void {
    this.writeDescOff(this.descOff + 16 * (i & 0xffff), d);
  }

  readDesc(i: number): Descriptor {
    const v = this.view();
    const o = this.descOff + 16 * (i & 0xffff);
    return {
      addr: v.getBigUint64(o, true), len: v.getUint32(o + 8, true), flags: v.getUint16(o + 12, true),
      next: v.getUint16(o + 14, true),
    };
  }

  /** Writes an indirect table (any length, any content) at gpa. */
  writeIndirect(gpa: bigint, entries: Descriptor[]): void {
    entries.forEach((d, i) => this.writeDescAt(gpa + BigInt(i * 16), d));
  }

  writeAvailRing(slot: number, head: number): void {
    this.view().setUint16(this.availOff + 4 + 2 * (slot & (this.num - 1)), head & 0xffff, true);
  }

  /** Writes avail.idx directly (the shadow index is not changed: use for lying indices). */
  setAvailIdx(idx: number): void {
    this.view().setUint16(this.availOff + 2, idx & 0xffff, true);
  }

  usedIdx(): number {
    return this.view().getUint16(this.usedOff + 2, true);
  }

  /** The device's avail_event (EVENT_IDX). */
  availEvent(): number {
    return this.view().getUint16(this.usedOff + 4 + 8 * this.num, true);
  }

  readUsedElem(slot: number): UsedElement {
    const v = this.view();
    const o = this.usedOff + 4 + 8 * (slot & (this.num - 1));
    return { id: v.getUint32(o, true), len: v.getUint32(o + 4, true) };
  }

  // ---- guest memory -------------------------------------------------------------------------------------------

  private writeDescAt(gpa: bigint, d: Descriptor): void {
    this.writeDescOff(this.off(gpa, 16), d);
  }

  private writeDescOff(o: number, d: Descriptor): void {
    const v = this.view();
    v.setBigUint64(o, d.addr, true); // ToBigUint64: wraps modulo 2^64
    v.setUint32(o + 8, d.len >>> 0, true);
    v.setUint16(o + 12, d.flags & 0xffff, true);
    v.setUint16(o + 14, d.next & 0xffff, true);
  }

  // The view is cached: mem.bytes() is asked again only when the cached buffer was detached (a wasm memory
  // grew) or after refresh().
  private ab: ArrayBufferLike | undefined;
  private dv: DataView | undefined;
  private u8: Uint8Array | undefined;

  /** Drops the cached view of guest memory (call if mem.bytes() now returns a different memory). */
  refresh(): void {
    const b = this.mem.bytes();
    this.ab = b.buffer;
    this.u8 = b;
    this.dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  }

  private bytes(): Uint8Array {
    if (this.ab === undefined || this.ab.byteLength === 0) this.refresh();
    return this.u8!;
  }

  private view(): DataView {
    if (this.ab === undefined || this.ab.byteLength === 0) this.refresh();
    return this.dv!;
  }

  /** Offset in bytes() of [gpa, gpa+len); throws if outside the view (a bug in the caller, not guest input). */
  private off(gpa: bigint, len: number): number {
    const rel = gpa - this.mem.gpa;
    const size = this.bytes().byteLength;
    if (rel < 0n || rel + BigInt(len) > BigInt(size)) {
      throw new RangeError(`gpa 0x${gpa.toString(16)}+${len} is outside the driver's guest memory view`);
    }
    return Number(rel);
  }
}

/** vring_need_event: whether moving the index from `old` to `next` crossed `event` (u16 arithmetic). */
export function needEvent(event: number, next: number, old: number): boolean {
  return ((next - event - 1) & 0xffff) < ((next - old) & 0xffff);
}

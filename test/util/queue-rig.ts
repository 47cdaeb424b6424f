/**
 * A core with one synthetic guest region and queue 0 set up, driven by the split-ring driver: `submit` lays out a
 * request (one readable buffer, writable buffers of the given sizes) and publishes it.
 */
import * as assert from 'uvu/assert';
import { Core } from '../../host/core.js';
import { VirtqueueDriver } from '../../host/frontend/virtqueue-driver.js';

export const RIG_GPA = 0x4000_0000n;
const UVA = 0x7f00_0000_0000n;
export const RIG_RAM = 2 * 1024 * 1024;

export async function queueRig() {
  const core = await Core.create({ wasmPath: process.env.CORE_WASM });
  const off = core.addTestRegion(RIG_GPA, UVA, RIG_RAM);
  const driver = new VirtqueueDriver({ gpa: RIG_GPA, bytes: () => core.bytes().subarray(off, off + RIG_RAM) },
    { num: 16, ringGpa: RIG_GPA });
  const uva = (gpa: bigint) => gpa - RIG_GPA + UVA;
  assert.is(core.queueSetNum(0, 16), 0);
  assert.is(core.queueSetAddr(0, uva(driver.layout.descGpa), uva(driver.layout.usedGpa), uva(driver.layout.availGpa)), 0);
  core.queueSetBase(0, 0);
  let next = RIG_GPA + 0x10_0000n;
  const lin = (gpa: bigint) => off + Number(gpa - RIG_GPA);
  const submit = (req: Uint8Array, writeSizes: number[]) => {
    const r = next;
    next += BigInt(req.length + 64);
    core.bytes().set(req, lin(r));
    const writable = writeSizes.map((n) => { const gpa = next; next += BigInt(n + 64); return { gpa, len: n }; });
    const head = driver.add([{ gpa: r, len: req.length }], writable);
    driver.publish();
    return { head, writable };
  };
  const read = (gpa: bigint, len: number) => core.bytes().slice(lin(gpa), lin(gpa) + len);
  return { core, driver, submit, read };
}

/** fuse_out_header fields of a reply's first 16 bytes. */
export function outHeader(b: Uint8Array): { len: number; error: number; unique: bigint } {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  return { len: v.getUint32(0, true), error: v.getInt32(4, true), unique: v.getBigUint64(8, true) };
}

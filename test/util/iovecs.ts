import type { Core } from '../../host/core.js';

/**
 * The payload iovecs (struct iovec {u64 base, u64 len}) at the core's iovPtr, bases as offsets in its linear memory:
 * test regions and the /dev/fuse buffers live there (in windowed test mode too, where a test region is a memfd
 * mapped over linear pages).
 */
export function iovecs(c: Core, n: number): { off: number; len: number }[] {
  const v = c.view();
  return Array.from({ length: n }, (_, i) => ({
    off: Number(v.getBigUint64(c.iovPtr + 16 * i, true) - c.linearBase),
    len: Number(v.getBigUint64(c.iovPtr + 16 * i + 8, true)),
  }));
}

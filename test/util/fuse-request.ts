/** Builds a FUSE request as the Linux driver lays it out: fuse_in_header (40 bytes) followed by the args. */
export function fuseRequest(opcode: number, unique: bigint, nodeid: bigint, args: Uint8Array,
  ids = { uid: 1000, gid: 100, pid: 4242 }): Uint8Array {
  const b = new Uint8Array(40 + args.length);
  const v = new DataView(b.buffer);
  v.setUint32(0, b.length, true);
  v.setUint32(4, opcode, true);
  v.setBigUint64(8, unique, true);
  v.setBigUint64(16, nodeid, true);
  v.setUint32(24, ids.uid, true);
  v.setUint32(28, ids.gid, true);
  v.setUint32(32, ids.pid, true);
  b.set(args, 40);
  return b;
}

/** Root's ids, as the vhost-user tests send them. */
export const ROOT_IDS = { uid: 0, gid: 0, pid: 1 };

/**
 * Writes the request fuseRequest() builds into guest memory at `gpa` (a frontend's GuestMemory, or any memory
 * with the same shape); returns the request's length.
 */
export function putFuseRequest(mem: { bytes(): Uint8Array; gpaToOffset(gpa: bigint | number): number }, gpa: bigint,
  opcode: number, unique: bigint, nodeid: bigint, args: Uint8Array, ids = ROOT_IDS): number {
  const b = fuseRequest(opcode, unique, nodeid, args, ids);
  mem.bytes().set(b, mem.gpaToOffset(gpa));
  return b.length;
}

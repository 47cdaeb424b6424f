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

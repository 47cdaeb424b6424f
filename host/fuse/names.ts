/**
 * File names as the FUSE layer carries them: byte strings, one char per byte (0..255). A POSIX name is any bytes
 * but `/` and NUL, UTF-8 or not; decoding them as UTF-8 would make some names unreachable (or two names one), so
 * names stay bytes from the guest's request to the host syscall (the *at bindings take byte strings) and back
 * (directory entries, symlink targets, xattr names). Text meant for people (logs) shows them as Latin-1.
 */

/** bytes[start, end) as a byte string. */
export function nameOf(bytes: Uint8Array, start: number, end: number): string {
  // Names are short: building the string directly beats a Buffer round trip, and allocates only the string.
  if (end - start <= 64) {
    let s = '';
    for (let i = start; i < end; i++) s += String.fromCharCode(bytes[i]!);
    return s;
  }
  return Buffer.from(bytes.buffer, bytes.byteOffset + start, end - start).toString('latin1');
}

/** Writes byte string `name` at dst[0..]; returns name.length. The caller checked the room. */
export function putName(name: string, dst: Uint8Array): number {
  for (let i = 0; i < name.length; i++) dst[i] = name.charCodeAt(i);
  return name.length;
}

/** A byte string as bytes (a fresh array). */
export function nameBytes(name: string): Uint8Array {
  const out = new Uint8Array(name.length);
  putName(name, out);
  return out;
}

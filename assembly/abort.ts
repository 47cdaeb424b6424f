// The core's abort: reached only on internal corruption (a broken invariant of the core itself, never guest input).
// It leaves `abort: <message>[ at <file>:<line>:<column>]` in a static buffer and traps; the host (host/core.ts)
// reads it through abortMessagePtr/abortMessageLength and turns the trap into a VirtiofsdError ERR_CORE_TRAP
// carrying this text. The core imports nothing to report it: no I/O layer is loaded for a message that a healthy
// core never writes.
//
// Wired in by asconfig.json: `--use abort=assembly/abort/coreAbort`.

const MSG_CAP: u32 = 1024;

// The message bytes. Static; abort never allocates.
const MSG_BUF: usize = memory.data(MSG_CAP);

let msgLen: u32 = 0;

function putByte(b: u32): void {
  if (msgLen < MSG_CAP) {
    store<u8>(MSG_BUF + msgLen, <u8>b);
    msgLen++;
  }
}

/** Appends a (static) string as ASCII; anything outside 0x20..0x7e becomes '?'. */
function putString(s: string | null): void {
  if (s === null) return;
  const p = changetype<usize>(s);
  const n = <u32>s.length;
  for (let i: u32 = 0; i < n; i++) {
    const c = <u32>load<u16>(p + (<usize>i << 1));
    putByte(c >= 0x20 && c < 0x7f ? c : 0x3f);
  }
}

function putDecimal(v: u32): void {
  // Largest u32 has 10 digits; emit most significant first without a buffer.
  let div: u32 = 1000000000;
  let started = false;
  while (div > 0) {
    const d = (v / div) % 10;
    if (d != 0 || started || div == 1) {
      putByte(0x30 + d);
      started = true;
    }
    div /= 10;
  }
}

export function coreAbort(
  message: string | null = null, fileName: string | null = null, line: u32 = 0, column: u32 = 0,
): void {
  msgLen = 0;
  putString("abort: ");
  putString(message);
  if (fileName !== null) {
    putString(" at ");
    putString(fileName);
    putByte(0x3a);
    putDecimal(line);
    putByte(0x3a);
    putDecimal(column);
  }
  unreachable();
}

/** Where the last abort's message starts (ASCII, abortMessageLength() bytes; 0 bytes before any abort). */
export function abortMessagePtr(): usize {
  return MSG_BUF;
}

export function abortMessageLength(): u32 {
  return msgLen;
}

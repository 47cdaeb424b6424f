// The core's abort: reached only on internal corruption (a broken invariant of the core itself, never guest input).
// It prints `abort: <message>[ at <file>:<line>:<column>]` to stderr through WASI `fd_write` and traps; the host
// (host/core.ts) turns the trap into a VirtiofsdError ERR_CORE_TRAP carrying this text.
//
// Wired in by asconfig.json: `--use abort=assembly/abort/coreAbort`.

@external("wasi_snapshot_preview1", "fd_write")
declare function wasiFdWrite(fd: u32, iovs: usize, iovsLen: u32, nwritten: usize): u32;

const STDERR: u32 = 2;
const MSG_CAP: u32 = 1024;

// Scratch: the message bytes, one iovec {u32 buf, u32 len} and the nwritten word. Static; abort never allocates.
const MSG_BUF: usize = memory.data(MSG_CAP);
const MSG_IOV: usize = memory.data(16, 8);

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
  putByte(0x0a);
  store<u32>(MSG_IOV, <u32>MSG_BUF);
  store<u32>(MSG_IOV, msgLen, 4);
  wasiFdWrite(STDERR, MSG_IOV, 1, MSG_IOV + 8);
  unreachable();
}

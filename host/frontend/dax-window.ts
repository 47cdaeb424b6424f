/**
 * The VMM's half of a DAX device: the cache window and the backend channel that fills it. Plays what QEMU does for
 * `vhost-user-fs-pci` with a cache: reserves the window (inaccessible memory, PROT_NONE), gives the backend a
 * channel (SET_BACKEND_REQ_FD), and answers its requests by mapping the file it sent into the window (MAP_SHARED |
 * MAP_FIXED) or turning a range back into inaccessible memory.
 *
 * QEMU's rules apply: a map over an existing mapping fails, an unmap must name one mapping exactly, both must lie
 * inside the window (shmid 0). Each request is acked (REPLY_ACK) with 0 or 1 when the backend asked for a reply.
 *
 * Dialects: `shmem` (SHMEM_MAP 9 / SHMEM_UNMAP 10 with VhostUserMMap; the window size comes from the backend's
 * GET_SHMEM_CONFIG) or `legacy` (SLAVE_FS_MAP 6 / SLAVE_FS_UNMAP 7 with arrays of {fd_offset, c_offset, len,
 * flags}; the VMM picks the size, like QEMU's cache-size=).
 *
 * The window is an external ArrayBuffer: `bytes()` reads and writes mapped file pages directly. Touching a range
 * that is not mapped is SIGSEGV, and a mapped page past the end of its file is SIGBUS: the guest-driver layer
 * (dax-driver.ts) only touches mapped ranges below the file size, and the device keeps shrunk files' tails mapped
 * to zero pages (host/dax/dax-device.ts).
 */
import { native } from '../native-loader.js';
import { SystemError, VhostUserError } from '../errors.js';
import { log } from '../log.js';
import { FdPoller } from '../vhost-user/fd-poller.js';
import type { VhostUserFrontend } from './vhost-user-frontend.js';
import {
  LEGACY_FS_FLAG_MAP_W, LEGACY_FS_MSG_SIZE, VHOST_USER_FLAG_MAP_RW, VHOST_USER_HDR_SIZE, VHOST_USER_MMAP_SIZE,
  VHOST_USER_NEED_REPLY_MASK, VHOST_USER_REPLY_MASK, VHOST_USER_VERSION, VhostUserBackendRequest as BR,
  VhostUserLegacyFsRequest as LR, decodeHeader, decodeLegacyFsMsg, decodeMMap, encodeHeader, type VhostUserHeader,
} from '../vhost-user/protocol.js';

export type DaxWindowProtocol = 'shmem' | 'legacy';

export interface DaxWindowOptions {
  protocol?: DaxWindowProtocol;
  /** Window size for the legacy dialect (shmem: the backend's GET_SHMEM_CONFIG decides). */
  size?: number;
  /** Share a poller (not closed by close()). */
  poller?: FdPoller;
}

export interface DaxWindowStats { maps: number; unmaps: number; refused: number }

const PAGE = 4096;

export class DaxWindow {
  readonly buffer: ArrayBuffer;
  readonly size: number;
  readonly protocol: DaxWindowProtocol;
  readonly stats: DaxWindowStats = { maps: 0, unmaps: 0, refused: 0 };
  /** Tests: a VMM that never answers map requests (they are read and dropped, their fds closed). */
  silent = false;
  /** Tests: a VMM that refuses every request (acks it with status 1). */
  refuse = false;

  /** Mapped pieces: window offset -> length. */
  private readonly pieces = new Map<number, number>();
  private readonly poller: FdPoller;
  private readonly ownsPoller: boolean;
  private readonly token: number;
  private readonly hdr = new Uint8Array(VHOST_USER_HDR_SIZE);
  private readonly payload = new Uint8Array(LEGACY_FS_MSG_SIZE);
  private readonly fdsIn = new Int32Array(8);
  private readonly ack = new Uint8Array(VHOST_USER_HDR_SIZE + 8);
  private hdrGot = 0;
  private header: VhostUserHeader | null = null;
  private payloadGot = 0;
  private fds: number[] = [];
  private closed = false;

  private constructor(readonly fd: number, buffer: ArrayBuffer, protocol: DaxWindowProtocol, poller: FdPoller | undefined) {
    this.buffer = buffer;
    this.size = buffer.byteLength;
    this.protocol = protocol;
    this.ownsPoller = poller === undefined;
    this.poller = poller ?? new FdPoller();
    this.token = this.poller.add(fd, native.constants.EPOLLIN, () => this.onReadable());
  }

  /**
   * Reserves the window and gives the backend its channel. The frontend must have negotiated BACKEND_REQ and
   * BACKEND_SEND_FD (and SHMEM for the shmem dialect).
   */
  static async attach(fe: VhostUserFrontend, options: DaxWindowOptions = {}): Promise<DaxWindow> {
    const protocol = options.protocol ?? 'shmem';
    let size: number;
    if (protocol === 'shmem') {
      const sizes = await fe.getShmemConfig();
      if (sizes.length < 1 || sizes[0]! === 0n) throw new VhostUserError('VU_ERR_INVALID_REPLY', 'the backend has no shared memory region');
      size = Number(sizes[0]!);
    } else {
      size = options.size ?? 0;
    }
    if (!(size > 0 && size % PAGE === 0)) throw new RangeError(`DAX window size ${size} is not a positive page multiple`);
    const buffer = native.windowReserve(size);
    if (typeof buffer === 'number') throw new SystemError('mmap', -buffer, native.strerror(-buffer));
    const pair = new Int32Array(2);
    const rc = native.socketpair(pair);
    if (rc < 0) throw new SystemError('socketpair', -rc, native.strerror(-rc));
    native.setNonblocking(pair[0]!, true);
    const w = new DaxWindow(pair[0]!, buffer, protocol, options.poller);
    try {
      await fe.setBackendReqFd(pair[1]!);
    } catch (err) {
      w.close();
      throw err;
    } finally {
      native.close(pair[1]!);
    }
    return w;
  }

  /** The window's bytes (only mapped ranges may be touched). */
  bytes(): Uint8Array {
    return new Uint8Array(this.buffer);
  }

  /** Pieces currently mapped (window offset -> length), for tests. */
  get mapped(): ReadonlyMap<number, number> {
    return this.pieces;
  }

  /** Handles every request already waiting on the channel (before touching the window after a size change). */
  pump(): void {
    this.onReadable(false);
  }

  /** Closes the channel (the backend sees it go) and makes the whole window inaccessible. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.poller.remove(this.token);
    native.close(this.fd);
    for (const f of this.fds) native.close(f);
    this.fds = [];
    native.windowUnmap(this.buffer, 0, this.size);
    this.pieces.clear();
    if (this.ownsPoller) this.poller.close();
  }

  // ---- the channel ------------------------------------------------------------------------------------------

  private onReadable(rearm = true): void {
    if (this.closed) return;
    for (;;) {
      const r = this.readStep();
      if (r === 'closed') return;
      if (r === 'empty') break;
    }
    if (rearm) this.poller.rearm(this.token);
  }

  /** One recvmsg into the header or payload; dispatches a message when complete. */
  private readStep(): 'more' | 'empty' | 'closed' {
    const E = native.constants.errno;
    const inHeader = this.header === null;
    const buf = inHeader ? this.hdr : this.payload;
    const at = inHeader ? this.hdrGot : this.payloadGot;
    const want = inHeader ? VHOST_USER_HDR_SIZE - at : this.header!.size - at;
    if (want > 0) {
      const rc = native.recvmsg(this.fd, buf, at, want, this.fdsIn, false);
      for (let i = 0; i < this.fdsIn.length; i++) if (this.fdsIn[i]! >= 0) this.fds.push(this.fdsIn[i]!);
      if (rc === -E.EAGAIN) return 'empty';
      if (rc === -E.EINTR) return 'more';
      if (rc <= 0) {
        log.debug('dax window: the backend closed its channel');
        this.close();
        return 'closed';
      }
      if (inHeader) this.hdrGot += rc;
      else this.payloadGot += rc;
    }
    if (this.header === null) {
      if (this.hdrGot < VHOST_USER_HDR_SIZE) return 'more';
      const h = decodeHeader(new DataView(this.hdr.buffer));
      if (h.size > this.payload.length) {
        log.warn(`dax window: backend request ${h.request} with a ${h.size}-byte payload; closing the channel`);
        this.close();
        return 'closed';
      }
      this.header = h;
      this.payloadGot = 0;
      if (h.size > 0) return 'more';
    }
    if (this.payloadGot < this.header.size) return 'more';
    const h = this.header;
    const fds = this.fds;
    this.header = null;
    this.hdrGot = 0;
    this.fds = [];
    let ok = false;
    try {
      ok = this.silent || this.refuse ? false : this.handle(h, new DataView(this.payload.buffer, 0, h.size), fds);
    } catch (err) {
      log.warn(`dax window: backend request ${h.request}: ${(err as Error).message}`);
    } finally {
      for (const f of fds) native.close(f);
    }
    if (!ok) this.stats.refused++;
    if (!this.silent && (h.flags & VHOST_USER_NEED_REPLY_MASK) !== 0) this.sendAck(h.request, ok);
    return 'more';
  }

  private handle(h: VhostUserHeader, p: DataView, fds: number[]): boolean {
    if (this.protocol === 'shmem') {
      if (h.request === BR.SHMEM_MAP || h.request === BR.SHMEM_UNMAP) {
        if (h.size !== VHOST_USER_MMAP_SIZE) return false;
        const m = decodeMMap(p);
        if (m.shmid !== 0) return false;
        if (h.request === BR.SHMEM_MAP) {
          return fds.length === 1 && this.map(Number(m.shmOffset), Number(m.len), fds[0]!, Number(m.fdOffset),
            (m.flags & VHOST_USER_FLAG_MAP_RW) !== 0n);
        }
        return fds.length === 0 && this.unmap(Number(m.shmOffset), Number(m.len));
      }
      return false;
    }
    if (h.request !== LR.SLAVE_FS_MAP && h.request !== LR.SLAVE_FS_UNMAP) return false;
    if (h.size !== LEGACY_FS_MSG_SIZE) return false;
    const entries = decodeLegacyFsMsg(p);
    for (const e of entries) {
      const done = h.request === LR.SLAVE_FS_MAP
        ? fds.length === 1 && this.map(Number(e.cOffset), Number(e.len), fds[0]!, Number(e.fdOffset),
          (e.flags & LEGACY_FS_FLAG_MAP_W) !== 0n)
        : this.unmap(Number(e.cOffset), Number(e.len));
      if (!done) return false;
    }
    return true;
  }

  private inWindow(off: number, len: number): boolean {
    return Number.isSafeInteger(off) && Number.isSafeInteger(len) && len > 0 && off % PAGE === 0 &&
      len % PAGE === 0 && off + len <= this.size;
  }

  private map(off: number, len: number, fd: number, fdOffset: number, write: boolean): boolean {
    if (!this.inWindow(off, len) || !Number.isSafeInteger(fdOffset) || fdOffset % PAGE !== 0) return false;
    for (const [o, l] of this.pieces) if (o < off + len && off < o + l) return false; // over an existing mapping
    const c = native.constants;
    const rc = native.mmapInto(this.buffer, off, len, c.PROT_READ | (write ? c.PROT_WRITE : 0), fd, fdOffset);
    if (rc < 0) {
      log.warn(`dax window: mmap at 0x${off.toString(16)}+0x${len.toString(16)}: ${native.strerror(-rc)}`);
      return false;
    }
    this.pieces.set(off, len);
    this.stats.maps++;
    return true;
  }

  private unmap(off: number, len: number): boolean {
    if (this.pieces.get(off) !== len) return false; // must be exactly one mapping
    if (native.windowUnmap(this.buffer, off, len) < 0) return false;
    this.pieces.delete(off);
    this.stats.unmaps++;
    return true;
  }

  private sendAck(request: number, ok: boolean): void {
    const v = new DataView(this.ack.buffer);
    encodeHeader(v, 0, request, VHOST_USER_VERSION | VHOST_USER_REPLY_MASK, 8);
    v.setBigUint64(VHOST_USER_HDR_SIZE, ok ? 0n : 1n, true);
    const rc = native.sendmsg(this.fd, this.ack, 0, this.ack.length, []);
    if (rc !== this.ack.length) log.warn(`dax window: ack not sent (${rc})`);
  }
}

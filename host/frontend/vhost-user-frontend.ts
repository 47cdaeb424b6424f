/**
 * A vhost-user *frontend* (the role QEMU plays) as a library with a promise API: connect to a backend's socket,
 * negotiate features, share guest memory (a memfd that JS also sees, mapped into a `WebAssembly.Memory`), set up
 * vrings, kick them and wait for their call eventfds. Generic: no knowledge of the device behind the rings (a
 * FUSE client, a block client... is layered on top, writing descriptor chains into `GuestMemory`).
 *
 * Speaks the protocol as written in QEMU's docs/interop/vhost-user.rst, so it drives our backend and the C
 * virtiofsd alike. All socket I/O is nonblocking (the backend may live in the same process).
 *
 * One request at a time: calls are serialised in a queue; each resolves when its reply (or, with REPLY_ACK
 * negotiated, its ack) arrived.
 */

import { native } from '../native-loader.js';
import { SystemError, VhostUserError } from '../errors.js';
import { FdPoller } from '../vhost-user/fd-poller.js';
import { VirtqueueDriver } from './virtqueue-driver.js';
import {
  VHOST_USER_F_PROTOCOL_FEATURES, VHOST_USER_HDR_SIZE, VHOST_USER_MAX_FDS, VHOST_USER_MAX_PAYLOAD,
  VHOST_USER_NEED_REPLY_MASK, VHOST_USER_REPLY_MASK, VHOST_USER_VERSION, VHOST_USER_VERSION_MASK,
  VHOST_USER_VRING_NOFD_MASK, VIRTIO_RING_F_EVENT_IDX, VhostUserProtocolFeature as PF, VhostUserRequest as R, bit, decodeHeader, decodeU64,
  decodeShmemConfig, decodeVringState, encodeHeader, encodeMemTable, encodeSingleMemRegion, encodeU64, encodeVringAddr,
  encodeVringState, requestName, type MemRegion, type VhostUserHeader,
} from '../vhost-user/protocol.js';

const WASM_PAGE = 65536;

/**
 * Guest RAM for a frontend: a memfd of `size` bytes, mapped MAP_SHARED over the pages of a fresh non-shared
 * WebAssembly.Memory so JS reads and writes what the backend sees. Guest physical address `guestAddr` is at
 * byte 0 of the memory; the "user address" told to the backend is `userAddr` (any value: it only has to be
 * consistent between SET_MEM_TABLE and SET_VRING_ADDR).
 */
export class GuestMemory {
  readonly memory: WebAssembly.Memory;
  readonly fd: number;
  readonly size: number;
  readonly guestAddr: bigint;
  readonly userAddr: bigint;
  private closed = false;

  private constructor(memory: WebAssembly.Memory, fd: number, size: number, guestAddr: bigint, userAddr: bigint) {
    this.memory = memory;
    this.fd = fd;
    this.size = size;
    this.guestAddr = guestAddr;
    this.userAddr = userAddr;
  }

  /** size is rounded up to 64 KiB. */
  static create(size: number, opts: { guestAddr?: bigint; userAddr?: bigint; name?: string } = {}): GuestMemory {
    const bytes = Math.ceil(size / WASM_PAGE) * WASM_PAGE;
    const fd = native.memfdCreate(opts.name ?? 'vhost-user-guest-ram', 0);
    if (fd < 0) throw new SystemError('memfd_create', -fd, native.strerror(-fd));
    let rc = native.ftruncate(fd, bytes);
    if (rc < 0) {
      native.close(fd);
      throw new SystemError('ftruncate', -rc, native.strerror(-rc));
    }
    const memory = new WebAssembly.Memory({ initial: bytes / WASM_PAGE, maximum: bytes / WASM_PAGE });
    const c = native.constants;
    rc = native.mmapInto(memory.buffer, 0, bytes, c.PROT_READ | c.PROT_WRITE, fd, 0);
    if (rc < 0) {
      native.close(fd);
      throw new SystemError('mmap', -rc, native.strerror(-rc));
    }
    return new GuestMemory(memory, fd, bytes, opts.guestAddr ?? 0n, opts.userAddr ?? 0x7f0000000000n);
  }

  /** The region to announce in SET_MEM_TABLE / ADD_MEM_REG (the fd is sent, not given away). */
  get region(): MemRegion & { fd: number } {
    return { guestAddr: this.guestAddr, size: BigInt(this.size), userAddr: this.userAddr, mmapOffset: 0n, fd: this.fd };
  }

  /** Guest physical address of bytes()[0] (the `GuestMemory` shape VirtqueueDriver works on). */
  get gpa(): bigint {
    return this.guestAddr;
  }

  /** Byte view over the whole guest RAM (valid until close()). */
  bytes(): Uint8Array {
    return new Uint8Array(this.memory.buffer, 0, this.size);
  }

  view(): DataView {
    return new DataView(this.memory.buffer, 0, this.size);
  }

  /** Guest physical address -> user address, for SET_VRING_ADDR. */
  gpaToUva(gpa: bigint | number): bigint {
    return BigInt(gpa) - this.guestAddr + this.userAddr;
  }

  /** Guest physical address -> byte offset in `memory`. */
  gpaToOffset(gpa: bigint | number): number {
    return Number(BigInt(gpa) - this.guestAddr);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    native.unmapFrom(this.memory.buffer, 0, this.size);
    native.close(this.fd);
  }
}

export interface VhostUserReply {
  header: VhostUserHeader;
  payload: Uint8Array;
}

export interface VringConfig {
  /** Queue size (power of two). */
  num: number;
  /** Guest physical addresses of the descriptor table, available ring and used ring. */
  desc: bigint | number;
  avail: bigint | number;
  used: bigint | number;
  /** First avail index. Default 0. */
  base?: number;
  /** Send SET_VRING_ENABLE 1 (when PROTOCOL_FEATURES was negotiated). Default true. */
  enable?: boolean;
}

interface FrontendVring {
  kickFd: number;
  callFd: number;
  callToken: number;
  /** Call signals received and not yet consumed by waitCall(). */
  calls: number;
  waiters: Array<() => void>;
}

interface ReplyWaiter {
  resolve: (r: VhostUserReply) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

export interface VhostUserFrontendOptions {
  /** Reply timeout per request. Default 5000 ms. */
  timeoutMs?: number;
  /** Share a poller (not closed by close()). */
  poller?: FdPoller;
}

export interface NegotiateOptions {
  /** Device features to acknowledge: intersected with what the backend offers. Default: all it offers. */
  features?: bigint;
  /** Protocol features wanted: intersected with the offer. Default MQ | REPLY_ACK. */
  protocolFeatures?: bigint;
}

export class VhostUserFrontend {
  /** Backend's GET_FEATURES answer, after negotiate(). */
  backendFeatures = 0n;
  /** Acknowledged device features (SET_FEATURES). */
  ackedFeatures = 0n;
  /** Negotiated protocol features. */
  protocolFeatures = 0n;

  private readonly poller: FdPoller;
  private readonly ownsPoller: boolean;
  private readonly sockToken: number;
  private readonly timeoutMs: number;
  private closed = false;
  private closeReason: Error | null = null;
  private chain: Promise<unknown> = Promise.resolve();
  private readonly rx = new Uint8Array(VHOST_USER_HDR_SIZE + VHOST_USER_MAX_PAYLOAD);
  private rxLen = 0;
  private readonly fdsIn = new Int32Array(VHOST_USER_MAX_FDS);
  private readonly replies: VhostUserReply[] = [];
  private readonly replyWaiters: ReplyWaiter[] = [];
  private readonly vrings = new Map<number, FrontendVring>();
  private readonly tx = new Uint8Array(VHOST_USER_HDR_SIZE + VHOST_USER_MAX_PAYLOAD);
  private readonly txView = new DataView(this.tx.buffer);

  private constructor(readonly fd: number, options: VhostUserFrontendOptions) {
    this.timeoutMs = options.timeoutMs ?? 5000;
    this.ownsPoller = options.poller === undefined;
    this.poller = options.poller ?? new FdPoller();
    this.sockToken = this.poller.add(fd, native.constants.EPOLLIN, () => this.onReadable());
  }

  /** Connects to a backend listening on `socketPath`. */
  static async connect(socketPath: string, options: VhostUserFrontendOptions = {}): Promise<VhostUserFrontend> {
    const fd = native.unixConnect(socketPath);
    if (fd < 0) {
      throw new VhostUserError('VU_ERR_CONNECT', `connect ${socketPath}: ${native.strerror(-fd)}`, { errno: -fd });
    }
    native.setNonblocking(fd, true);
    try {
      return new VhostUserFrontend(fd, options);
    } catch (err) {
      native.close(fd);
      throw err;
    }
  }

  get isClosed(): boolean {
    return this.closed;
  }

  get replyAck(): boolean {
    return (this.protocolFeatures & bit(PF.REPLY_ACK)) !== 0n;
  }

  // ---- high level -------------------------------------------------------------------------------------------

  /**
   * GET_FEATURES, GET/SET_PROTOCOL_FEATURES (if offered), SET_OWNER, SET_FEATURES; the order QEMU uses.
   * Returns the acknowledged device features.
   */
  async negotiate(opts: NegotiateOptions = {}): Promise<bigint> {
    this.backendFeatures = await this.getFeatures();
    if ((this.backendFeatures & bit(VHOST_USER_F_PROTOCOL_FEATURES)) !== 0n) {
      const offered = await this.getProtocolFeatures();
      const want = opts.protocolFeatures ?? (bit(PF.MQ) | bit(PF.REPLY_ACK));
      await this.setProtocolFeatures(offered & want);
    }
    await this.setOwner();
    const features = (opts.features ?? this.backendFeatures) & this.backendFeatures;
    await this.setFeatures(features);
    return features;
  }

  /**
   * SET_VRING_NUM, SET_VRING_BASE, SET_VRING_ADDR, SET_VRING_KICK, SET_VRING_CALL (fresh eventfds owned by the
   * frontend) and SET_VRING_ENABLE 1 when PROTOCOL_FEATURES was negotiated.
   */
  async setupVring(q: number, mem: GuestMemory, cfg: VringConfig): Promise<void> {
    await this.setVringNum(q, cfg.num);
    await this.setVringBase(q, cfg.base ?? 0);
    await this.setVringAddr(q, { desc: mem.gpaToUva(cfg.desc), used: mem.gpaToUva(cfg.used), avail: mem.gpaToUva(cfg.avail) });
    const c = native.constants;
    const kick = native.eventfd(0, c.EFD_NONBLOCK);
    if (kick < 0) throw new SystemError('eventfd', -kick, native.strerror(-kick));
    const call = native.eventfd(0, c.EFD_NONBLOCK);
    if (call < 0) {
      native.close(kick);
      throw new SystemError('eventfd', -call, native.strerror(-call));
    }
    this.dropVring(q);
    const v: FrontendVring = { kickFd: kick, callFd: call, callToken: 0, calls: 0, waiters: [] };
    v.callToken = this.poller.add(call, c.EPOLLIN, () => this.onCall(v));
    this.vrings.set(q, v);
    await this.setVringCall(q, call);
    await this.setVringKick(q, kick);
    if ((cfg.enable ?? true) && (this.ackedFeatures & bit(VHOST_USER_F_PROTOCOL_FEATURES)) !== 0n) {
      await this.setVringEnable(q, true);
    }
  }

  /**
   * Lays out a split ring with VirtqueueDriver at `ringGpa` in `mem` and sets it up in the backend (setupVring).
   * EVENT_IDX follows what was negotiated. Returns the driver: `add()` chains, `publish()`, then `kick(q)`.
   */
  async setupDriverVring(q: number, mem: GuestMemory, opts: { num: number; ringGpa: bigint | number; indirectMax?: number;
    enable?: boolean }): Promise<VirtqueueDriver> {
    const eventIdx = (this.ackedFeatures & bit(VIRTIO_RING_F_EVENT_IDX)) !== 0n;
    const driver = new VirtqueueDriver(mem, { num: opts.num, ringGpa: BigInt(opts.ringGpa), eventIdx,
      indirectMax: opts.indirectMax });
    const l = driver.layout;
    await this.setupVring(q, mem, { num: opts.num, desc: l.descGpa, avail: l.availGpa, used: l.usedGpa, enable: opts.enable });
    return driver;
  }

  /** Signals the backend that queue q has new available buffers. */
  kick(q: number): void {
    const v = this.vrings.get(q);
    if (v === undefined) throw new VhostUserError('VU_ERR_NO_VRING', `queue ${q} is not set up`);
    const rc = native.eventfdWrite(v.kickFd, 1);
    if (rc < 0) throw new SystemError('write', -rc, native.strerror(-rc));
  }

  /** Resolves when the backend signalled queue q's call eventfd (consumes one signal). */
  waitCall(q: number, timeoutMs = this.timeoutMs): Promise<void> {
    const v = this.vrings.get(q);
    if (v === undefined) return Promise.reject(new VhostUserError('VU_ERR_NO_VRING', `queue ${q} is not set up`));
    if (v.calls > 0) {
      v.calls--;
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      const waiter = (): void => {
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        const i = v.waiters.indexOf(waiter);
        if (i >= 0) v.waiters.splice(i, 1);
        reject(new VhostUserError('VU_ERR_TIMEOUT', `no call on queue ${q} within ${timeoutMs} ms`));
      }, timeoutMs);
      v.waiters.push(waiter);
    });
  }

  /** Signals pending on queue q's call eventfd that nobody waited for yet. */
  pendingCalls(q: number): number {
    return this.vrings.get(q)?.calls ?? 0;
  }

  // ---- one method per message -------------------------------------------------------------------------------

  async getFeatures(): Promise<bigint> {
    return decodeU64(this.payloadView(await this.request(R.GET_FEATURES, 0, [], true)), 0);
  }

  async setFeatures(features: bigint): Promise<void> {
    encodeU64(this.txView, VHOST_USER_HDR_SIZE, features);
    await this.command(R.SET_FEATURES, 8);
    this.ackedFeatures = features;
  }

  async getProtocolFeatures(): Promise<bigint> {
    return decodeU64(this.payloadView(await this.request(R.GET_PROTOCOL_FEATURES, 0, [], true)), 0);
  }

  async setProtocolFeatures(features: bigint): Promise<void> {
    encodeU64(this.txView, VHOST_USER_HDR_SIZE, features);
    // Not acked: REPLY_ACK only applies once this message was processed.
    await this.request(R.SET_PROTOCOL_FEATURES, 8, [], false);
    this.protocolFeatures = features;
  }

  setOwner(): Promise<void> {
    return this.command(R.SET_OWNER, 0);
  }

  resetOwner(): Promise<void> {
    return this.command(R.RESET_OWNER, 0);
  }

  resetDevice(): Promise<void> {
    return this.command(R.RESET_DEVICE, 0);
  }

  async getQueueNum(): Promise<number> {
    return Number(decodeU64(this.payloadView(await this.request(R.GET_QUEUE_NUM, 0, [], true)), 0));
  }

  async getMaxMemSlots(): Promise<number> {
    return Number(decodeU64(this.payloadView(await this.request(R.GET_MAX_MEM_SLOTS, 0, [], true)), 0));
  }

  /** SET_MEM_TABLE: the regions' fds are sent (duplicated by the kernel), not given away. */
  setMemTable(regions: ReadonlyArray<MemRegion & { fd: number }>): Promise<void> {
    const size = encodeMemTable(this.txView, VHOST_USER_HDR_SIZE, regions);
    return this.command(R.SET_MEM_TABLE, size, regions.map((r) => r.fd));
  }

  addMemReg(region: MemRegion & { fd: number }): Promise<void> {
    const size = encodeSingleMemRegion(this.txView, VHOST_USER_HDR_SIZE, region);
    return this.command(R.ADD_MEM_REG, size, [region.fd]);
  }

  remMemReg(region: MemRegion): Promise<void> {
    const size = encodeSingleMemRegion(this.txView, VHOST_USER_HDR_SIZE, region);
    return this.command(R.REM_MEM_REG, size);
  }

  setVringNum(q: number, num: number): Promise<void> {
    encodeVringState(this.txView, VHOST_USER_HDR_SIZE, { index: q, num });
    return this.command(R.SET_VRING_NUM, 8);
  }

  setVringBase(q: number, base: number): Promise<void> {
    encodeVringState(this.txView, VHOST_USER_HDR_SIZE, { index: q, num: base });
    return this.command(R.SET_VRING_BASE, 8);
  }

  /** Addresses are user addresses (see GuestMemory.gpaToUva). */
  setVringAddr(q: number, a: { desc: bigint; used: bigint; avail: bigint; flags?: number; log?: bigint }): Promise<void> {
    encodeVringAddr(this.txView, VHOST_USER_HDR_SIZE,
      { index: q, flags: a.flags ?? 0, desc: a.desc, used: a.used, avail: a.avail, log: a.log ?? 0n });
    return this.command(R.SET_VRING_ADDR, 40);
  }

  /** Stops the ring in the backend; returns the next avail index it would have consumed. */
  async getVringBase(q: number): Promise<number> {
    encodeVringState(this.txView, VHOST_USER_HDR_SIZE, { index: q, num: 0 });
    const reply = await this.request(R.GET_VRING_BASE, 8, [], true);
    const s = decodeVringState(this.payloadView(reply), 0);
    if (s.index !== q) throw new VhostUserError('VU_ERR_INVALID_REPLY', `GET_VRING_BASE reply for queue ${s.index}, asked ${q}`);
    return s.num;
  }

  /** fd null sends the "no fd" flag (bit 8). The fd is sent, not given away. */
  setVringKick(q: number, fd: number | null): Promise<void> {
    return this.vringFd(R.SET_VRING_KICK, q, fd);
  }

  setVringCall(q: number, fd: number | null): Promise<void> {
    return this.vringFd(R.SET_VRING_CALL, q, fd);
  }

  setVringErr(q: number, fd: number | null): Promise<void> {
    return this.vringFd(R.SET_VRING_ERR, q, fd);
  }

  /** SET_BACKEND_REQ_FD: the backend's requests (DAX SHMEM_MAP/UNMAP) come on `fd`'s peer. The fd is sent, not given. */
  setBackendReqFd(fd: number): Promise<void> {
    return this.command(R.SET_BACKEND_REQ_FD, 0, [fd]);
  }

  /** GET_SHMEM_CONFIG: the sizes of the backend's shared memory regions (the DAX window is shmid 0). */
  async getShmemConfig(): Promise<bigint[]> {
    return decodeShmemConfig(this.payloadView(await this.request(R.GET_SHMEM_CONFIG, 0, [], true)), 0);
  }

  setVringEnable(q: number, on: boolean): Promise<void> {
    encodeVringState(this.txView, VHOST_USER_HDR_SIZE, { index: q, num: on ? 1 : 0 });
    return this.command(R.SET_VRING_ENABLE, 8);
  }

  /**
   * Sends an arbitrary message (tests: malformed input). `expectReply` waits for and returns the next message
   * from the backend; otherwise resolves once sent.
   */
  sendRaw(request: number, flags: number, payload: Uint8Array, fds: number[] = [],
          opts: { size?: number; expectReply?: boolean } = {}): Promise<VhostUserReply | null> {
    return this.serialize(async () => {
      const out = new Uint8Array(VHOST_USER_HDR_SIZE + payload.length);
      encodeHeader(new DataView(out.buffer), 0, request, flags, opts.size ?? payload.length);
      out.set(payload, VHOST_USER_HDR_SIZE);
      await this.sendBytes(out, out.length, fds);
      return opts.expectReply ? this.nextReply(request) : null;
    });
  }

  /** Waits until the backend closes the connection (or the timeout). Resolves true if it did. */
  waitClosed(timeoutMs = this.timeoutMs): Promise<boolean> {
    if (this.closed) return Promise.resolve(true);
    return new Promise((resolve) => {
      const t0 = Date.now();
      const tick = (): void => {
        if (this.closed) resolve(true);
        else if (Date.now() - t0 > timeoutMs) resolve(false);
        else setTimeout(tick, 5);
      };
      tick();
    });
  }

  /** Closes the socket and the vring eventfds. The backend sees a disconnect. Idempotent. */
  close(): void {
    this.shutdown(new VhostUserError('VU_ERR_CLOSED', 'frontend closed'));
    for (const q of [...this.vrings.keys()]) this.dropVring(q);
    if (this.ownsPoller) this.poller.close();
  }

  // ---- plumbing ---------------------------------------------------------------------------------------------

  private vringFd(request: number, q: number, fd: number | null): Promise<void> {
    const u = BigInt(q & 0xff) | (fd === null ? BigInt(VHOST_USER_VRING_NOFD_MASK) : 0n);
    encodeU64(this.txView, VHOST_USER_HDR_SIZE, u);
    return this.command(request, 8, fd === null ? [] : [fd]);
  }

  /** A message without a reply body; with REPLY_ACK negotiated it asks for and checks the ack. */
  private async command(request: number, size: number, fds: number[] = []): Promise<void> {
    if (!this.replyAck) {
      await this.request(request, size, fds, false);
      return;
    }
    const reply = await this.request(request, size, fds, true, VHOST_USER_NEED_REPLY_MASK);
    const status = decodeU64(this.payloadView(reply), 0);
    if (status !== 0n) {
      throw new VhostUserError('VU_ERR_NACK', `${requestName(request)} failed in the backend (status ${status})`);
    }
  }

  /**
   * Sends the message whose payload was encoded at tx[12..12+size) and, if wanted, waits for its reply.
   * The payload is copied before the call returns to the queue, so callers may encode the next one.
   */
  private request(request: number, size: number, fds: number[], wantReply: boolean, extraFlags = 0): Promise<VhostUserReply> {
    const msg = new Uint8Array(VHOST_USER_HDR_SIZE + size);
    encodeHeader(new DataView(msg.buffer), 0, request, VHOST_USER_VERSION | extraFlags, size);
    msg.set(this.tx.subarray(VHOST_USER_HDR_SIZE, VHOST_USER_HDR_SIZE + size), VHOST_USER_HDR_SIZE);
    const fdsCopy = fds.slice();
    return this.serialize(async () => {
      await this.sendBytes(msg, msg.length, fdsCopy);
      if (!wantReply) return { header: { request, flags: 0, size: 0 }, payload: new Uint8Array(0) };
      return this.nextReply(request);
    });
  }

  private serialize<T>(op: () => Promise<T>): Promise<T> {
    const run = this.chain.then(() => {
      if (this.closed) throw this.closeReason ?? new VhostUserError('VU_ERR_CLOSED', 'connection closed');
      return op();
    });
    this.chain = run.catch(() => undefined);
    return run;
  }

  private async sendBytes(msg: Uint8Array, len: number, fds: number[]): Promise<void> {
    let off = 0;
    let withFds: ArrayLike<number> = fds;
    const EAGAIN = native.constants.errno.EAGAIN ?? 11;
    const EINTR = native.constants.errno.EINTR ?? 4;
    const t0 = Date.now();
    while (off < len) {
      if (this.closed) throw this.closeReason ?? new VhostUserError('VU_ERR_CLOSED', 'connection closed');
      const rc = native.sendmsg(this.fd, msg, off, len - off, withFds);
      if (rc > 0) {
        off += rc;
        withFds = [];
        continue;
      }
      if (rc === -EINTR) continue;
      if (rc === -EAGAIN && Date.now() - t0 < this.timeoutMs) {
        await new Promise((r) => setTimeout(r, 1));
        continue;
      }
      const err = new VhostUserError('ERR_SOCKET_BROKEN', `sendmsg: ${rc < 0 ? native.strerror(-rc) : 'no progress'}`,
        { errno: rc < 0 ? -rc : undefined });
      this.shutdown(err);
      throw err;
    }
  }

  private nextReply(request: number): Promise<VhostUserReply> {
    const check = (r: VhostUserReply): VhostUserReply => {
      const h = r.header;
      if (h.request !== request || (h.flags & VHOST_USER_REPLY_MASK) === 0 ||
          (h.flags & VHOST_USER_VERSION_MASK) !== VHOST_USER_VERSION) {
        throw new VhostUserError('VU_ERR_INVALID_REPLY',
          `expected reply to ${requestName(request)}, got ${requestName(h.request)} flags 0x${h.flags.toString(16)}`);
      }
      return r;
    };
    const queued = this.replies.shift();
    if (queued !== undefined) return Promise.resolve(check(queued));
    if (this.closed) return Promise.reject(this.closeReason ?? new VhostUserError('VU_ERR_CLOSED', 'connection closed'));
    return new Promise<VhostUserReply>((resolve, reject) => {
      const w: ReplyWaiter = {
        resolve: (r) => {
          try {
            resolve(check(r));
          } catch (e) {
            reject(e as Error);
          }
        },
        reject,
        timer: setTimeout(() => {
          const i = this.replyWaiters.indexOf(w);
          if (i >= 0) this.replyWaiters.splice(i, 1);
          reject(new VhostUserError('VU_ERR_TIMEOUT', `no reply to ${requestName(request)} within ${this.timeoutMs} ms`));
        }, this.timeoutMs),
      };
      this.replyWaiters.push(w);
    });
  }

  private payloadView(r: VhostUserReply): DataView {
    return new DataView(r.payload.buffer, r.payload.byteOffset, r.payload.byteLength);
  }

  private onReadable(): void {
    if (this.closed) return;
    const EAGAIN = native.constants.errno.EAGAIN ?? 11;
    const EINTR = native.constants.errno.EINTR ?? 4;
    for (;;) {
      const rc = native.recvmsg(this.fd, this.rx, this.rxLen, this.rx.length - this.rxLen, this.fdsIn, false);
      // Backends never send fds on this channel; close any so they cannot leak.
      for (let i = 0; i < this.fdsIn.length; i++) if (this.fdsIn[i]! >= 0) native.close(this.fdsIn[i]!);
      if (rc > 0) {
        this.rxLen += rc;
        if (!this.parseReplies()) return;
        continue;
      }
      if (rc === -EINTR) continue;
      if (rc === -EAGAIN) break;
      this.shutdown(rc === 0 ? new VhostUserError('VU_ERR_DISCONNECTED', 'backend closed the connection')
        : new VhostUserError('ERR_SOCKET_BROKEN', `recvmsg: ${native.strerror(-rc)}`, { errno: -rc }));
      return;
    }
    this.poller.rearm(this.sockToken);
  }

  /** Splits complete messages off rx. Returns false if the connection was shut down on a bad message. */
  private parseReplies(): boolean {
    let off = 0;
    const view = new DataView(this.rx.buffer);
    while (this.rxLen - off >= VHOST_USER_HDR_SIZE) {
      const h = decodeHeader(view, off);
      if (h.size > VHOST_USER_MAX_PAYLOAD) {
        this.shutdown(new VhostUserError('VU_ERR_INVALID_REPLY', `reply payload size ${h.size}`));
        return false;
      }
      if (this.rxLen - off < VHOST_USER_HDR_SIZE + h.size) break;
      const payload = this.rx.slice(off + VHOST_USER_HDR_SIZE, off + VHOST_USER_HDR_SIZE + h.size);
      off += VHOST_USER_HDR_SIZE + h.size;
      const reply = { header: h, payload };
      const w = this.replyWaiters.shift();
      if (w !== undefined) {
        clearTimeout(w.timer);
        w.resolve(reply);
      } else {
        this.replies.push(reply);
      }
    }
    this.rx.copyWithin(0, off, this.rxLen);
    this.rxLen -= off;
    return true;
  }

  private onCall(v: FrontendVring): void {
    native.eventfdRead(v.callFd);
    const w = v.waiters.shift();
    if (w !== undefined) w();
    else v.calls++;
    this.poller.rearm(v.callToken);
  }

  private dropVring(q: number): void {
    const v = this.vrings.get(q);
    if (v === undefined) return;
    this.poller.remove(v.callToken);
    native.close(v.callFd);
    native.close(v.kickFd);
    this.vrings.delete(q);
  }

  /** Ends the connection (socket and pending replies); vring eventfds and the poller go in close(). */
  private shutdown(reason: Error): void {
    if (this.closed) return;
    this.closed = true;
    this.closeReason = reason;
    this.poller.remove(this.sockToken);
    native.close(this.fd);
    for (const w of this.replyWaiters.splice(0)) {
      clearTimeout(w.timer);
      w.reject(reason);
    }
  }
}

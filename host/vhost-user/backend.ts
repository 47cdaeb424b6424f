/**
 * The per-connection vhost-user state machine of a vhost-user-fs device (the backend QEMU's
 * `-device vhost-user-fs-pci` talks to).
 *
 * Reading: the socket is nonblocking. A message is read in two steps, the 12-byte header (with
 * `native.recvmsg`, which also brings any SCM_RIGHTS fds) and then `size` payload bytes; a partial read keeps its
 * progress in `RecvState` and resumes on the next readable event, so a slow frontend never blocks the daemon.
 *
 * Each message goes through, in this order:
 *   1. syntax   header flags (version 1, no reply bit, no unknown bits), payload size for the request
 *               -> a violation closes the connection (VhostUserError VU_ERR_INVALID_MESSAGE)
 *   2. features the request must be allowed by what was negotiated (e.g. GET_QUEUE_NUM needs MQ)
 *   3. handler  a method named after the message (`setVringKick`, ...)
 *   4. ack      the reply of a request that has one, or the REPLY_ACK u64 (0 / error) when NEED_REPLY was set and
 *               REPLY_ACK negotiated
 *
 * Vrings (queue 0 = hiprio, 1..N = request queues): a ring is *started* by SET_VRING_KICK (a kick fd) and
 * *stopped* by GET_VRING_BASE; it is *enabled* by SET_VRING_ENABLE 1 if VHOST_USER_F_PROTOCOL_FEATURES was
 * negotiated, otherwise at SET_FEATURES. Requests are processed only while started and enabled.
 *
 * Fd ownership: every fd received is either adopted (memory region, kick, call, err) and closed exactly once when
 * replaced, on RESET_DEVICE or at close(), or closed right after the message that brought it.
 */

import { native } from '../native-loader.js';
import { VhostUserError } from '../errors.js';
import { log } from '../log.js';
import type { QueueStats, RequestServer } from '../virtio/queue-processor.js';
import { LocalQueue, type QueueEngine, type RingCore } from '../virtio/local-queue.js';
import type { GuestRegion } from '../core.js';
import type { FdPoller } from './fd-poller.js';
import { BackendChannel } from '../dax/backend-channel.js';
import type { DaxDevice } from '../dax/dax-device.js';
import {
  FS_DEVICE_FEATURES, FS_MAX_MEM_SLOTS, FS_PROTOCOL_FEATURES, VHOST_USER_F_PROTOCOL_FEATURES, VHOST_USER_HDR_SIZE,
  VHOST_USER_MAX_FDS, VHOST_USER_MAX_PAYLOAD, VHOST_USER_NEED_REPLY_MASK, VHOST_USER_REPLY_MASK, VHOST_USER_VERSION,
  VHOST_USER_VRING_IDX_MASK, VHOST_USER_VRING_NOFD_MASK, VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC,
  VhostUserProtocolFeature as PF, VhostUserRequest as R, bit, checkRequestHeader, decodeHeader, decodeMemTable,
  decodeSingleMemRegion, decodeU64, decodeVringAddr, decodeVringState, encodeHeader, encodeShmemConfig, encodeU64,
  encodeVringState, payloadSizeOk, SHMEM_CONFIG_SIZE, requestName, type MemRegion, type VringAddr, type VhostUserHeader,
} from './protocol.js';

export type { GuestRegion };

/** What the backend needs from the core (`host/core.ts` `Core` satisfies it structurally). */
export interface BackendCore extends RingCore {
  /**
   * Replaces the guest memory table: maps every region's fd into the core (the fds stay owned by the backend).
   * Throws on failure, leaving no table registered.
   */
  mapGuestRegions(regions: GuestRegion[]): void;
  /** Drops all guest memory mappings. */
  unmapGuestRegions(): void;
  /** Set when guest RAM is reached through a window (host/core.ts), for logs. */
  readonly window?: { slots: number };
}

export interface VhostUserBackendOptions {
  /** Request queues besides hiprio (queue 0). Default 1. GET_QUEUE_NUM reports 1 + this. */
  numRequestQueues?: number;
  /** Device features offered by GET_FEATURES. Default FS_DEVICE_FEATURES. */
  deviceFeatures?: bigint;
  /** Protocol features offered by GET_PROTOCOL_FEATURES. Default FS_PROTOCOL_FEATURES. */
  protocolFeatures?: bigint;
  /** Requests per queue run before yielding to the event loop. */
  batch?: number;
  /**
   * The DAX window (host/dax/dax-device.ts): offers BACKEND_REQ + BACKEND_SEND_FD (+ SHMEM and GET_SHMEM_CONFIG in
   * the shmem dialect) and hands it the backend channel.
   */
  dax?: DaxDevice;
  /** How long the frontend may take to answer a backend-channel request. Default 5000 ms. */
  backendRequestTimeoutMs?: number;
  /** Adaptive polling window per queue in µs (host/virtio/queue-processor.ts); 0 = off. */
  pollUs?: number;
  /** Batch window per queue in µs for deep drivers (host/virtio/queue-processor.ts); 0 = off. Default 0. */
  batchWindowUs?: number;
  /**
   * Request queue q (1..numRequestQueues) served on thread q - 1 of these (host/virtio/queue-thread.ts) instead of
   * this thread; the hiprio queue stays here. Given, there must be one per request queue.
   */
  queueThreads?: readonly QueueThreadEngine[];
}

/** A queue served on a thread of its own, with its own core: it maps guest memory itself. */
export interface QueueThreadEngine extends QueueEngine {
  mapGuestRegions(regions: GuestRegion[]): void;
  unmapGuestRegions(): void;
}

/** Status sent in a REPLY_ACK on failure (any non-zero value means failure to the frontend). */
const ACK_ERROR = 1n;

class Vring {
  num = 0;
  addr: VringAddr | null = null;
  kickFd = -1;
  callFd = -1;
  errFd = -1;
  /** Started by SET_VRING_KICK, stopped by GET_VRING_BASE. */
  started = false;
  enabled = false;
  constructor(readonly index: number, readonly engine: QueueEngine) {}
}

/** Message receive progress (header, then payload), kept across readable events. */
interface RecvState {
  hdrGot: number;
  header: VhostUserHeader | null;
  payloadGot: number;
  fds: number[];
}

type HandlerResult = 'replied' | 'ok' | 'error';

export class VhostUserBackend {
  readonly numQueues: number;
  private readonly deviceFeatures: bigint;
  private readonly offeredProtocolFeatures: bigint;
  private ackedFeatures = 0n;
  private ackedProtocolFeatures = 0n;
  private featuresSet = false;
  private owner = false;
  private readonly vrings: Vring[] = [];
  /** The request queues' threads (empty: every queue is served on this thread). */
  private readonly threads: readonly QueueThreadEngine[];
  private regions: GuestRegion[] = [];
  private readonly dax: DaxDevice | undefined;
  private readonly backendRequestTimeoutMs: number;

  private sockToken = 0;
  private closed = false;
  private readonly hdrBuf = new Uint8Array(VHOST_USER_HDR_SIZE);
  private readonly payloadBuf = new Uint8Array(VHOST_USER_MAX_PAYLOAD);
  private readonly sendBuf = new Uint8Array(VHOST_USER_HDR_SIZE + SHMEM_CONFIG_SIZE);
  private readonly sendView = new DataView(this.sendBuf.buffer);
  // One slot more than allowed, so a message with too many fds is detected (the addon closes any beyond).
  private readonly fdsOut = new Int32Array(VHOST_USER_MAX_FDS + 1);
  private readonly recv: RecvState = { hdrGot: 0, header: null, payloadGot: 0, fds: [] };
  private readonly EAGAIN = native.constants.errno.EAGAIN ?? 11;
  private readonly EINTR = native.constants.errno.EINTR ?? 4;

  /** Messages handled, by request number (introspection for tests and logs). */
  readonly messageCounts = new Map<number, number>();

  /**
   * @param fd connected, nonblocking socket; owned from now on (closed by close()).
   * @param onClose called once when the connection ends (peer hung up, protocol error, or close()).
   */
  constructor(
    readonly fd: number,
    private readonly core: BackendCore,
    server: RequestServer,
    private readonly poller: FdPoller,
    options: VhostUserBackendOptions = {},
    private readonly onClose: (reason: Error | null) => void = () => {},
  ) {
    const nrq = options.numRequestQueues ?? 1;
    if (!Number.isInteger(nrq) || nrq < 1 || nrq > 63) {
      throw new VhostUserError('VU_ERR_CONFIG', `numRequestQueues must be 1..63, got ${nrq}`, { reconnect: false });
    }
    this.numQueues = 1 + nrq;
    this.deviceFeatures = options.deviceFeatures ?? FS_DEVICE_FEATURES;
    this.offeredProtocolFeatures = options.protocolFeatures ?? FS_PROTOCOL_FEATURES;
    this.dax = options.dax;
    this.backendRequestTimeoutMs = options.backendRequestTimeoutMs ?? 5000;
    if (this.dax !== undefined) {
      this.offeredProtocolFeatures |= bit(PF.BACKEND_REQ) | bit(PF.BACKEND_SEND_FD) |
        (this.dax.protocol === 'shmem' ? bit(PF.SHMEM) : 0n);
    }
    const threads = options.queueThreads ?? [];
    if (threads.length !== 0 && threads.length < nrq) {
      throw new VhostUserError('VU_ERR_CONFIG', `${threads.length} queue threads for ${nrq} request queues`,
        { reconnect: false });
    }
    this.threads = threads.slice(0, nrq);
    for (let q = 0; q < this.numQueues; q++) {
      const thread = q >= 1 ? this.threads[q - 1] : undefined;
      if (thread !== undefined) thread.ringReset();
      const engine = thread ?? new LocalQueue(core, server, q, poller,
        { batch: options.batch, pollUs: options.pollUs, batchWindowUs: options.batchWindowUs });
      this.vrings.push(new Vring(q, engine));
    }
  }

  /** Starts reading messages. */
  start(): void {
    this.sockToken = this.poller.add(this.fd, native.constants.EPOLLIN, () => this.onReadable());
  }

  get isClosed(): boolean {
    return this.closed;
  }

  get negotiatedFeatures(): bigint {
    return this.ackedFeatures;
  }

  get negotiatedProtocolFeatures(): bigint {
    return this.ackedProtocolFeatures;
  }

  /** Per-queue processing counters. */
  queueStats(q: number): QueueStats | undefined {
    return this.vrings[q]?.engine.stats;
  }

  /** Ring state for tests and logs. */
  vringState(q: number): { started: boolean; enabled: boolean; halted: boolean } | undefined {
    const v = this.vrings[q];
    return v && { started: v.started, enabled: v.enabled, halted: v.engine.halted };
  }

  /**
   * Tears the connection down: stops every ring, closes every fd it owns, unmaps guest memory, resets the
   * queues. Idempotent; calls onClose once.
   */
  close(reason: Error | null = null): void {
    if (this.closed) return;
    this.closed = true;
    for (const v of this.vrings) {
      this.stopRing(v, true);
      v.engine.close();
    }
    try {
      for (const v of this.vrings) v.engine.ringReset();
    } catch (err) {
      log.error('vhost-user: queueReset failed:', err);
    }
    this.dropRegions();
    this.dax?.attachChannel(null); // the window goes with the frontend
    this.closeFds(this.recv.fds);
    this.recv.fds = [];
    if (this.sockToken !== 0) this.poller.remove(this.sockToken);
    native.close(this.fd);
    try {
      this.onClose(reason);
    } catch (err) {
      log.error('vhost-user: onClose handler threw:', err);
    }
  }

  // ---- socket reading ---------------------------------------------------------------------------------------

  private onReadable(): void {
    if (this.closed) return;
    try {
      // Bounded so one chatty frontend cannot monopolise the event loop; the socket stays readable.
      for (let i = 0; i < 64 && !this.closed; i++) {
        if (!this.readStep()) break;
      }
    } catch (err) {
      if (err instanceof VhostUserError && err.code === 'VU_ERR_DISCONNECTED') {
        log.info('vhost-user: frontend disconnected');
        this.close(null);
        return;
      }
      const e = err instanceof VhostUserError ? err
        : new VhostUserError('VU_ERR_INTERNAL', `vhost-user: internal error: ${(err as Error)?.message ?? err}`, { cause: err });
      if (!(err instanceof VhostUserError)) log.error('vhost-user: handler bug:', err);
      else log.debug(`vhost-user: ${e.message}; closing the connection`); // reported by the listener
      this.close(e);
      return;
    }
    if (!this.closed) this.poller.rearm(this.sockToken);
  }

  /** One recvmsg; dispatches a message when complete. Returns false when the socket has no more data now. */
  private readStep(): boolean {
    const st = this.recv;
    if (st.header === null) {
      const n = this.recvSome(this.hdrBuf, st.hdrGot, VHOST_USER_HDR_SIZE - st.hdrGot);
      if (n < 0) return false;
      st.hdrGot += n;
      if (st.hdrGot < VHOST_USER_HDR_SIZE) return true;
      const h = decodeHeader(new DataView(this.hdrBuf.buffer));
      const bad = checkRequestHeader(h) ?? (payloadSizeOk(h.request, h.size) ? null
        : `${requestName(h.request)}: bad payload size ${h.size}`);
      if (bad !== null) throw new VhostUserError('VU_ERR_INVALID_MESSAGE', `invalid message header: ${bad}`);
      st.header = h;
      st.payloadGot = 0;
    }
    const h = st.header;
    if (st.payloadGot < h.size) {
      const n = this.recvSome(this.payloadBuf, st.payloadGot, h.size - st.payloadGot);
      if (n < 0) return false;
      st.payloadGot += n;
      if (st.payloadGot < h.size) return true;
    }
    const fds = st.fds;
    st.fds = [];
    st.header = null;
    st.hdrGot = 0;
    st.payloadGot = 0;
    try {
      this.dispatch(h, new DataView(this.payloadBuf.buffer, 0, h.size), fds);
    } finally {
      this.closeFds(fds);
    }
    return true;
  }

  /** Bytes read (> 0), or -1 when the socket would block. Throws on EOF/error (the connection ends). */
  private recvSome(buf: Uint8Array, offset: number, length: number): number {
    for (;;) {
      const rc = native.recvmsg(this.fd, buf, offset, length, this.fdsOut, false);
      for (let i = 0; i < this.fdsOut.length; i++) {
        const fd = this.fdsOut[i]!;
        if (fd >= 0) this.recv.fds.push(fd);
      }
      if (this.recv.fds.length > VHOST_USER_MAX_FDS) {
        throw new VhostUserError('VU_ERR_INVALID_MESSAGE', `more than ${VHOST_USER_MAX_FDS} fds attached to one message`);
      }
      if (rc > 0) return rc;
      if (rc === 0) throw new VhostUserError('VU_ERR_DISCONNECTED', 'frontend closed the connection');
      if (rc === -this.EAGAIN) return -1;
      if (rc === -this.EINTR) continue;
      throw new VhostUserError('ERR_SOCKET_BROKEN', `recvmsg: ${native.strerror(-rc)}`, { errno: -rc });
    }
  }

  // ---- dispatch ---------------------------------------------------------------------------------------------

  private dispatch(h: VhostUserHeader, p: DataView, fds: number[]): void {
    this.messageCounts.set(h.request, (this.messageCounts.get(h.request) ?? 0) + 1);
    if (log.enabled('debug')) {
      log.debug(`vhost-user: <- ${requestName(h.request)} flags=0x${h.flags.toString(16)} size=${h.size} fds=${fds.length}`);
    }
    const needReply = (h.flags & VHOST_USER_NEED_REPLY_MASK) !== 0 && this.hasProtocol(PF.REPLY_ACK);

    // 2. feature check
    const denied = this.featureCheck(h.request);
    if (denied !== null) {
      log.warn(`vhost-user: ${requestName(h.request)} not allowed: ${denied}`);
      if (REPLY_BODY.has(h.request)) {
        // The frontend is waiting for a reply body we may not give: the two sides disagree, end the session.
        throw new VhostUserError('VU_ERR_INVALID_MESSAGE', `${requestName(h.request)} not allowed: ${denied}`);
      }
      if (needReply) this.sendU64Reply(h.request, ACK_ERROR);
      return;
    }

    // 3. handler
    let result: HandlerResult;
    switch (h.request) {
      case R.GET_FEATURES: result = this.getFeatures(); break;
      case R.SET_FEATURES: result = this.setFeatures(decodeU64(p)); break;
      case R.SET_OWNER: result = this.setOwner(); break;
      case R.RESET_OWNER: result = this.resetOwner(); break;
      case R.SET_MEM_TABLE: result = this.setMemTable(decodeMemTable(p), fds); break;
      case R.SET_VRING_NUM: result = this.setVringNum(decodeVringState(p)); break;
      case R.SET_VRING_ADDR: result = this.setVringAddr(decodeVringAddr(p)); break;
      case R.SET_VRING_BASE: result = this.setVringBase(decodeVringState(p)); break;
      case R.GET_VRING_BASE: result = this.getVringBase(decodeVringState(p)); break;
      case R.SET_VRING_KICK: result = this.setVringKick(decodeU64(p), fds); break;
      case R.SET_VRING_CALL: result = this.setVringCall(decodeU64(p), fds); break;
      case R.SET_VRING_ERR: result = this.setVringErr(decodeU64(p), fds); break;
      case R.GET_PROTOCOL_FEATURES: result = this.getProtocolFeatures(); break;
      case R.SET_PROTOCOL_FEATURES: result = this.setProtocolFeatures(decodeU64(p)); break;
      case R.GET_QUEUE_NUM: result = this.getQueueNum(); break;
      case R.SET_VRING_ENABLE: result = this.setVringEnable(decodeVringState(p)); break;
      case R.RESET_DEVICE: result = this.resetDevice(); break;
      case R.GET_MAX_MEM_SLOTS: result = this.getMaxMemSlots(); break;
      case R.ADD_MEM_REG: result = this.addMemReg(decodeSingleMemRegion(p), fds); break;
      case R.REM_MEM_REG: result = this.remMemReg(decodeSingleMemRegion(p)); break;
      case R.SET_BACKEND_REQ_FD: result = this.setBackendReqFd(fds); break;
      case R.GET_SHMEM_CONFIG: result = this.getShmemConfig(); break;
      default:
        log.warn(`vhost-user: unsupported request ${requestName(h.request)} (size ${h.size}) ignored`);
        result = 'error';
    }

    // 4. ack
    if (result !== 'replied' && needReply) this.sendU64Reply(h.request, result === 'ok' ? 0n : ACK_ERROR);
  }

  /** null when the request is allowed by what was offered/negotiated, else why not. */
  private featureCheck(request: number): string | null {
    switch (request) {
      case R.GET_PROTOCOL_FEATURES:
      case R.SET_PROTOCOL_FEATURES:
        return (this.deviceFeatures & bit(VHOST_USER_F_PROTOCOL_FEATURES)) !== 0n ? null : 'PROTOCOL_FEATURES not offered';
      case R.SET_VRING_ENABLE:
        // Spec: only when VHOST_USER_F_PROTOCOL_FEATURES has been negotiated. A frontend may enable before
        // its SET_FEATURES, so "offered" is what we can check before then.
        if (this.featuresSet) {
          return (this.ackedFeatures & bit(VHOST_USER_F_PROTOCOL_FEATURES)) !== 0n ? null : 'PROTOCOL_FEATURES not negotiated';
        }
        return (this.deviceFeatures & bit(VHOST_USER_F_PROTOCOL_FEATURES)) !== 0n ? null : 'PROTOCOL_FEATURES not offered';
      case R.GET_QUEUE_NUM:
        return this.hasProtocol(PF.MQ) ? null : 'protocol feature MQ not negotiated';
      case R.RESET_DEVICE:
        return this.hasProtocol(PF.RESET_DEVICE) ? null : 'protocol feature RESET_DEVICE not negotiated';
      case R.GET_MAX_MEM_SLOTS:
      case R.ADD_MEM_REG:
      case R.REM_MEM_REG:
        return this.hasProtocol(PF.CONFIGURE_MEM_SLOTS) ? null : 'protocol feature CONFIGURE_MEM_SLOTS not negotiated';
      case R.SET_BACKEND_REQ_FD:
        return this.hasProtocol(PF.BACKEND_REQ) ? null : 'protocol feature BACKEND_REQ not negotiated';
      case R.GET_SHMEM_CONFIG:
        return this.hasProtocol(PF.SHMEM) ? null : 'protocol feature SHMEM not negotiated';
      default:
        return null;
    }
  }

  private hasProtocol(f: number): boolean {
    return (this.ackedProtocolFeatures & bit(f)) !== 0n;
  }

  // ---- handlers (named after the messages) -------------------------------------------------------------------

  getFeatures(): HandlerResult {
    this.sendU64Reply(R.GET_FEATURES, this.deviceFeatures);
    return 'replied';
  }

  setFeatures(features: bigint): HandlerResult {
    const unknown = features & ~this.deviceFeatures;
    if (unknown !== 0n) {
      log.warn(`vhost-user: SET_FEATURES with features not offered: 0x${unknown.toString(16)}`);
      return 'error';
    }
    this.ackedFeatures = features;
    this.featuresSet = true;
    // Without PROTOCOL_FEATURES there is no SET_VRING_ENABLE: rings are enabled right away.
    if ((features & bit(VHOST_USER_F_PROTOCOL_FEATURES)) === 0n) {
      for (const v of this.vrings) this.setEnabled(v, true);
    }
    for (const v of this.vrings) this.applyQueueFeatures(v);
    return 'ok';
  }

  setOwner(): HandlerResult {
    if (this.owner) log.debug('vhost-user: SET_OWNER again');
    this.owner = true;
    return 'ok';
  }

  /** Deprecated by the spec; handled as "disable all rings" (stop them), keeping features and memory. */
  resetOwner(): HandlerResult {
    for (const v of this.vrings) this.stopRing(v, false);
    return 'ok';
  }

  /** Stops all rings and returns the device to its initial state (ownership and protocol features stay). */
  resetDevice(): HandlerResult {
    for (const v of this.vrings) {
      this.stopRing(v, true);
      v.enabled = false;
      v.num = 0;
      v.addr = null;
      v.engine.reset();
      v.engine.ringReset();
    }
    this.ackedFeatures = 0n;
    this.featuresSet = false;
    this.dax?.reset(); // the guest's mappings are gone with the device state
    return 'ok';
  }

  setMemTable(regions: MemRegion[], fds: number[]): HandlerResult {
    if (fds.length !== regions.length) {
      log.warn(`vhost-user: SET_MEM_TABLE with ${regions.length} regions but ${fds.length} fds`);
      return 'error';
    }
    const next: GuestRegion[] = regions.map((r, i) => toGuestRegion(r, fds[i]!));
    fds.fill(-1); // adopted
    return this.installRegions(next, this.regions);
  }

  getMaxMemSlots(): HandlerResult {
    this.sendU64Reply(R.GET_MAX_MEM_SLOTS, BigInt(FS_MAX_MEM_SLOTS));
    return 'replied';
  }

  addMemReg(region: MemRegion, fds: number[]): HandlerResult {
    if (fds.length !== 1) {
      log.warn(`vhost-user: ADD_MEM_REG with ${fds.length} fds (need 1)`);
      return 'error';
    }
    if (this.regions.length >= FS_MAX_MEM_SLOTS) {
      log.warn('vhost-user: ADD_MEM_REG beyond the slot limit');
      return 'error';
    }
    const fd = fds[0]!;
    fds[0] = -1; // adopted
    return this.installRegions([...this.regions, toGuestRegion(region, fd)], []);
  }

  /** Removes the region matching guest address, user address and size; the mmap offset is ignored (spec). */
  remMemReg(region: MemRegion): HandlerResult {
    const i = this.regions.findIndex((r) =>
      r.gpa === region.guestAddr && r.uva === region.userAddr && r.size === region.size);
    if (i < 0) {
      log.warn(`vhost-user: REM_MEM_REG of unknown region gpa=0x${region.guestAddr.toString(16)}`);
      return 'error';
    }
    const removed = this.regions[i]!;
    return this.installRegions(this.regions.filter((_, j) => j !== i), [removed]);
  }

  setVringNum(s: { index: number; num: number }): HandlerResult {
    const v = this.vring(s.index, 'SET_VRING_NUM');
    if (v === null) return 'error';
    const rc = v.engine.ringSetNum(s.num);
    if (rc < 0) {
      log.warn(`vhost-user: SET_VRING_NUM queue ${v.index} num ${s.num} rejected (${rc})`);
      return 'error';
    }
    v.num = s.num;
    return 'ok';
  }

  setVringAddr(a: VringAddr): HandlerResult {
    const v = this.vring(a.index, 'SET_VRING_ADDR');
    if (v === null) return 'error';
    v.addr = a;
    if (this.applyAddr(v)) {
      this.refreshRunnable(v);
      return 'ok';
    }
    log.warn(`vhost-user: SET_VRING_ADDR queue ${v.index}: rings not inside guest memory`);
    return 'error';
  }

  setVringBase(s: { index: number; num: number }): HandlerResult {
    const v = this.vring(s.index, 'SET_VRING_BASE');
    if (v === null) return 'error';
    if (s.num > 0xffff) {
      log.warn(`vhost-user: SET_VRING_BASE queue ${v.index} base ${s.num} is not a split-ring index`);
      return 'error';
    }
    v.engine.ringSetBase(s.num);
    return 'ok';
  }

  /** Stops the ring (spec) and replies with the next avail index the backend would consume. */
  getVringBase(s: { index: number; num: number }): HandlerResult {
    const v = this.vring(s.index, 'GET_VRING_BASE');
    if (v === null) {
      // The frontend waits for a reply; an out-of-range queue means we disagree about the device.
      throw new VhostUserError('VU_ERR_INVALID_MESSAGE', `GET_VRING_BASE for queue ${s.index} of ${this.numQueues}`);
    }
    // The kick fd goes (the ring is stopped); call and err stay until replaced: QEMU sends SET_VRING_ERR only
    // once, at device init, and SET_VRING_CALL again on every start.
    this.stopRing(v, false);
    const base = v.engine.ringGetBase();
    this.sendVringStateReply(R.GET_VRING_BASE, v.index, base);
    return 'replied';
  }

  setVringKick(u: bigint, fds: number[]): HandlerResult {
    const v = this.vringFdMessage(u, fds, 'SET_VRING_KICK');
    if (v === null) return 'error';
    const fd = this.adoptOptionalFd(u, fds);
    if (v.kickFd >= 0) this.closeKick(v);
    if (fd >= 0) {
      try {
        v.engine.setKick(fd);
      } catch (err) {
        log.warn(`vhost-user: queue ${v.index}: kick fd cannot be polled: ${(err as Error).message}`);
        native.close(fd);
        return 'error';
      }
      v.kickFd = fd;
    } else {
      log.warn(`vhost-user: queue ${v.index}: SET_VRING_KICK without fd (polling mode) is not supported; ` +
        'the ring is only looked at when it is started or enabled');
    }
    v.started = true;
    v.engine.reset();
    this.applyQueueFeatures(v);
    // Requests may already be waiting (a restarted ring): look once.
    this.refreshRunnable(v);
    return 'ok';
  }

  setVringCall(u: bigint, fds: number[]): HandlerResult {
    const v = this.vringFdMessage(u, fds, 'SET_VRING_CALL');
    if (v === null) return 'error';
    const fd = this.adoptOptionalFd(u, fds);
    v.engine.setCall(fd); // before the old one is closed: a queue thread may be signalling it
    if (v.callFd >= 0) native.close(v.callFd);
    v.callFd = fd;
    return 'ok';
  }

  setVringErr(u: bigint, fds: number[]): HandlerResult {
    const v = this.vringFdMessage(u, fds, 'SET_VRING_ERR');
    if (v === null) return 'error';
    const fd = this.adoptOptionalFd(u, fds);
    v.engine.setErr(fd);
    if (v.errFd >= 0) native.close(v.errFd);
    v.errFd = fd;
    return 'ok';
  }

  getProtocolFeatures(): HandlerResult {
    this.sendU64Reply(R.GET_PROTOCOL_FEATURES, this.offeredProtocolFeatures);
    return 'replied';
  }

  setProtocolFeatures(features: bigint): HandlerResult {
    const unknown = features & ~this.offeredProtocolFeatures;
    if (unknown !== 0n) {
      log.warn(`vhost-user: SET_PROTOCOL_FEATURES with features not offered: 0x${unknown.toString(16)}`);
      return 'error';
    }
    this.ackedProtocolFeatures = features;
    return 'ok';
  }

  getQueueNum(): HandlerResult {
    this.sendU64Reply(R.GET_QUEUE_NUM, BigInt(this.numQueues));
    return 'replied';
  }

  setVringEnable(s: { index: number; num: number }): HandlerResult {
    const v = this.vring(s.index, 'SET_VRING_ENABLE');
    if (v === null) return 'error';
    if (s.num !== 0 && s.num !== 1) {
      log.warn(`vhost-user: SET_VRING_ENABLE queue ${v.index} with ${s.num}`);
      return 'error';
    }
    this.setEnabled(v, s.num === 1);
    return 'ok';
  }

  /** The backend channel: the DAX window's map requests go to the frontend through it. */
  setBackendReqFd(fds: number[]): HandlerResult {
    if (fds.length !== 1) {
      log.warn(`vhost-user: SET_BACKEND_REQ_FD with ${fds.length} fds (need 1)`);
      return 'error';
    }
    const fd = fds[0]!;
    fds[0] = -1; // adopted (by the channel, or closed here)
    if (this.dax === undefined) {
      native.close(fd);
      return 'ok'; // nothing to ask the frontend; QEMU sends it whenever BACKEND_REQ was negotiated
    }
    this.dax.attachChannel(new BackendChannel(fd, this.poller, this.hasProtocol(PF.REPLY_ACK), this.backendRequestTimeoutMs));
    return 'ok';
  }

  /** One shared memory region, shmid 0: the DAX cache window (VIRTIO_FS_SHMCAP_ID_CACHE). */
  getShmemConfig(): HandlerResult {
    encodeHeader(this.sendView, 0, R.GET_SHMEM_CONFIG, VHOST_USER_VERSION | VHOST_USER_REPLY_MASK, SHMEM_CONFIG_SIZE);
    encodeShmemConfig(this.sendView, VHOST_USER_HDR_SIZE, this.dax !== undefined ? [this.dax.windowSize] : []);
    this.send(VHOST_USER_HDR_SIZE + SHMEM_CONFIG_SIZE);
    return 'replied';
  }

  // ---- vring helpers ----------------------------------------------------------------------------------------

  private vring(index: number, what: string): Vring | null {
    const v = this.vrings[index];
    if (v === undefined) {
      log.warn(`vhost-user: ${what} for queue ${index}, device has ${this.numQueues}`);
      return null;
    }
    return v;
  }

  /** Index and fd-count checks shared by SET_VRING_KICK/CALL/ERR. */
  private vringFdMessage(u: bigint, fds: number[], what: string): Vring | null {
    const index = Number(u & BigInt(VHOST_USER_VRING_IDX_MASK));
    const noFd = (u & BigInt(VHOST_USER_VRING_NOFD_MASK)) !== 0n;
    if ((u & ~BigInt(VHOST_USER_VRING_IDX_MASK | VHOST_USER_VRING_NOFD_MASK)) !== 0n) {
      log.warn(`vhost-user: ${what} with reserved bits set: 0x${u.toString(16)}`);
      return null;
    }
    if (noFd ? fds.length !== 0 : fds.length !== 1) {
      log.warn(`vhost-user: ${what} queue ${index}: ${fds.length} fds attached, expected ${noFd ? 0 : 1}`);
      return null;
    }
    return this.vring(index, what);
  }

  private adoptOptionalFd(u: bigint, fds: number[]): number {
    if ((u & BigInt(VHOST_USER_VRING_NOFD_MASK)) !== 0n) return -1;
    const fd = fds[0]!;
    fds[0] = -1;
    return fd;
  }

  private setEnabled(v: Vring, on: boolean): void {
    v.enabled = on;
    this.refreshRunnable(v);
  }

  private applyQueueFeatures(v: Vring): void {
    v.engine.ringSetFeatures(
      (this.ackedFeatures & bit(VIRTIO_RING_F_EVENT_IDX)) !== 0n,
      (this.ackedFeatures & bit(VIRTIO_RING_F_INDIRECT_DESC)) !== 0n);
  }

  /** Translates the ring addresses through the current memory table. */
  private applyAddr(v: Vring): boolean {
    if (v.addr === null) return true;
    const rc = v.engine.ringSetAddr(v.addr.desc, v.addr.used, v.addr.avail);
    if (rc < 0) {
      (v.started ? log.warn : log.debug)(`vhost-user: queue ${v.index}: ring addresses desc=0x${v.addr.desc.toString(16)} ` +
        `used=0x${v.addr.used.toString(16)} avail=0x${v.addr.avail.toString(16)} not in guest memory (${rc})`);
      return false;
    }
    return true;
  }

  /** Stops processing and closes the kick fd; with `dropFds` also call/err (RESET_DEVICE, close). */
  private stopRing(v: Vring, dropFds: boolean): void {
    v.started = false;
    v.engine.setRunnable(false);
    v.engine.stopped();
    if (v.kickFd >= 0) this.closeKick(v);
    if (dropFds) {
      // The engine lets go of them first: a queue thread may be signalling them.
      v.engine.setCall(-1);
      v.engine.setErr(-1);
      if (v.callFd >= 0) native.close(v.callFd);
      if (v.errFd >= 0) native.close(v.errFd);
      v.callFd = v.errFd = -1;
    }
  }

  private closeKick(v: Vring): void {
    v.engine.setKick(-1);
    native.close(v.kickFd);
    v.kickFd = -1;
  }

  /**
   * Requests of the queue are served while it is started, enabled, has rings and guest memory is mapped; called
   * whenever one of these changes (turning on looks at the ring once: requests may be waiting).
   */
  private refreshRunnable(v: Vring): void {
    v.engine.setRunnable(!this.closed && v.started && v.enabled && v.addr !== null && this.regions.length > 0);
  }

  // ---- memory -----------------------------------------------------------------------------------------------

  /**
   * Maps `next` into the core, then closes the fds of `retired` (regions no longer in the table). On failure the
   * new fds not already owned are closed and the previous table is kept (reinstalled).
   */
  private installRegions(next: GuestRegion[], retired: GuestRegion[]): HandlerResult {
    const owned = new Set(this.regions.map((r) => r.fd));
    for (const r of next) {
      const bad = owned.has(r.fd) ? null : regionPastEof(r);
      if (bad === null) continue;
      // Finding vhost-user-2056059019 (test/vhost-user.test.ts): mapped, such a region is SIGBUS on first access.
      log.warn(`vhost-user: memory region gpa=0x${r.gpa.toString(16)} rejected: ${bad}`);
      for (const x of next) if (!owned.has(x.fd)) native.close(x.fd);
      return 'error';
    }
    try {
      this.mapEverywhere(next);
    } catch (err) {
      log.warn(`vhost-user: guest memory table rejected: ${(err as Error).message}`);
      for (const r of next) if (!owned.has(r.fd)) native.close(r.fd);
      try {
        if (this.regions.length > 0) this.mapEverywhere(this.regions);
        else this.unmapEverywhere();
      } catch (err2) {
        log.error('vhost-user: cannot restore the previous memory table:', err2);
        for (const r of this.regions) native.close(r.fd);
        this.regions = [];
      }
      for (const v of this.vrings) this.applyAddr(v);
      return 'error';
    }
    // Every core has mapped the new table (the mappings hold the memory, not the fds): retired fds can go.
    for (const r of retired) native.close(r.fd);
    this.regions = next;
    // Re-translate configured rings through the new table. A ring the new table does not cover is not an error
    // of this message (a stopped ring may keep stale addresses until its next SET_VRING_ADDR).
    for (const v of this.vrings) {
      this.applyAddr(v);
      this.refreshRunnable(v);
    }
    if (log.enabled('info')) {
      const total = next.reduce((n, r) => n + r.size, 0n);
      const w = this.core.window;
      log.info(`vhost-user: guest memory ${next.length} region(s), ${total >> 20n} MiB, ` +
        (w ? `windowed (${w.slots} slots of 4 MiB)` : 'flat'));
    }
    if (log.enabled('debug')) {
      for (const r of next) {
        log.debug(`vhost-user: region gpa=0x${r.gpa.toString(16)} size=0x${r.size.toString(16)} ` +
          `uva=0x${r.uva.toString(16)} off=0x${r.mmapOffset.toString(16)}`);
      }
    }
    return 'ok';
  }

  private dropRegions(): void {
    try {
      this.unmapEverywhere();
    } catch (err) {
      log.error('vhost-user: unmapGuestRegions failed:', err);
    }
    for (const r of this.regions) native.close(r.fd);
    this.regions = [];
    for (const v of this.vrings) this.refreshRunnable(v);
  }

  /** The table into this thread's core and each queue thread's (each maps the fds itself). Throws on failure. */
  private mapEverywhere(regions: GuestRegion[]): void {
    this.core.mapGuestRegions(regions);
    for (const t of this.threads) t.mapGuestRegions(regions);
  }

  private unmapEverywhere(): void {
    this.core.unmapGuestRegions();
    for (const t of this.threads) t.unmapGuestRegions();
  }

  // ---- replies ----------------------------------------------------------------------------------------------

  private sendU64Reply(request: number, value: bigint): void {
    encodeHeader(this.sendView, 0, request, VHOST_USER_VERSION | VHOST_USER_REPLY_MASK, 8);
    encodeU64(this.sendView, VHOST_USER_HDR_SIZE, value);
    this.send(VHOST_USER_HDR_SIZE + 8);
  }

  private sendVringStateReply(request: number, index: number, num: number): void {
    encodeHeader(this.sendView, 0, request, VHOST_USER_VERSION | VHOST_USER_REPLY_MASK, 8);
    encodeVringState(this.sendView, VHOST_USER_HDR_SIZE, { index, num });
    this.send(VHOST_USER_HDR_SIZE + 8);
  }

  private send(len: number): void {
    for (;;) {
      const rc = native.sendmsg(this.fd, this.sendBuf, 0, len, []);
      if (rc === len) return;
      if (rc === -this.EINTR) continue;
      // Replies are tiny; a full socket buffer means the frontend stopped reading: give up on it.
      throw new VhostUserError('ERR_SOCKET_BROKEN',
        rc < 0 ? `sendmsg: ${native.strerror(-rc)}` : `sendmsg: short write ${rc}/${len}`, { errno: rc < 0 ? -rc : undefined });
    }
  }

  private closeFds(fds: number[]): void {
    for (let i = 0; i < fds.length; i++) {
      if (fds[i]! >= 0) native.close(fds[i]!);
      fds[i] = -1;
    }
  }
}

const statxBuf = new Uint8Array(256);

/**
 * Why a region cannot be mapped from its fd, or null. A MAP_SHARED mapping past the end of its file succeeds, but
 * the first access to those pages (the core reading a ring) raises SIGBUS and kills the daemon: a region of a
 * regular file (memfd, /dev/shm, hugetlbfs) must end inside it. Other kinds are left to mmap to refuse.
 */
function regionPastEof(r: GuestRegion): string | null {
  const C = native.constants;
  const rc = native.statx(r.fd, '', C.AT_EMPTY_PATH, C.STATX_BASIC_STATS, statxBuf, 0);
  if (rc < 0) return `fstat of its fd: ${native.strerror(-rc)}`;
  const st = new DataView(statxBuf.buffer);
  if ((st.getUint16(28, true) & C.S_IFMT) !== C.S_IFREG) return null; // struct statx.stx_mode
  const fileSize = st.getBigUint64(40, true); // stx_size
  if (r.mmapOffset + r.size > fileSize) {
    return `mmap offset 0x${r.mmapOffset.toString(16)} + size 0x${r.size.toString(16)} is past the end of its file ` +
      `(0x${fileSize.toString(16)} bytes)`;
  }
  return null;
}

function toGuestRegion(r: MemRegion, fd: number): GuestRegion {
  return { gpa: r.guestAddr, size: r.size, uva: r.userAddr, mmapOffset: r.mmapOffset, fd };
}

/** Requests whose reply carries a body (always sent, independent of REPLY_ACK). */
const REPLY_BODY: ReadonlySet<number> = new Set<number>([
  R.GET_FEATURES, R.GET_PROTOCOL_FEATURES, R.GET_VRING_BASE, R.GET_QUEUE_NUM, R.GET_MAX_MEM_SLOTS, R.GET_SHMEM_CONFIG,
]);

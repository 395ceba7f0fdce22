// tswl-host as a vhost-user back-end (tswl-host --vhost-user SOCKET): the virtio-gpu device model
// served to a VMM over the vhost-user protocol (QEMU >= 11.1 `vhost-user-test-device-pci` with
// virtio-id=16, or crosvm `--vhost-user type=gpu`). The VMM connects to our socket; one
// connection is one VM with its own GpuDevice. Guest RAM comes as memfds (ADD_MEM_REG or
// SET_MEM_TABLE), the control queue's commands are read from guest RAM, and host-visible blobs are
// mapped into the guest's shared-memory region with SHMEM_MAP over the back-end channel.
//
// The front-end (the VMM) is trusted to speak the protocol; anything malformed from it ends that
// connection. The guest is not trusted: the rings and buffers it writes are checked in
// virtqueue.ts, and a bad command fails in the device, never here.

import { fstatSync, readSync, writeSync } from 'node:fs';
import * as native from '../native/index.js';
import { BACKLOG_PAUSE, type GuestLimits } from './budget.js';
import { GpuDevice, type Reply, deviceConfig, onlyPolls } from './device.js';
import { DEVICE_FEATURES } from './device.js';
import { type DeviceLog, errorMessage } from './errors.js';
import { closeQuietly } from './fds.js';
import { GuestRam } from './guest-ram.js';
import { type Chain, ChainError, Virtqueue } from './virtqueue.js';
import {
  BackendReq,
  CONFIG_HDR_SIZE,
  F_PROTOCOL_FEATURES,
  F_VERSION_1,
  Flag,
  HEADER_SIZE,
  MAX_CONFIG_SIZE,
  MAX_MEM_SLOTS,
  MAX_PAYLOAD,
  MEM_REGION_SIZE,
  MEM_TABLE_MAX_REGIONS,
  OFFERED_PROTOCOL_FEATURES,
  ProtocolFeature,
  Req,
  SHMEM_CONFIG_SIZE,
  SHMEM_MAP_RW,
  SHMEM_MAP_SIZE,
  ShmemMap,
  SINGLE_MEM_REGION_SIZE,
  VRING_ADDR_SIZE,
  VRING_INDEX_MASK,
  VRING_NOFD,
  VRING_STATE_SIZE,
  VringAddr,
  requestName,
} from './vhost-user-protocol.js';
import { SHM_ID_HOST_VISIBLE, VirtioGpuResp } from '../virtgpu/protocol.js';
import type { HostWayland } from './wayland.js';

export interface VhostUserOptions {
  /** How VMs' Wayland channels reach the compositor (--wayland-sock and the policy). */
  readonly wayland: HostWayland;
  readonly log: DeviceLog;
  /** Size of the host-visible shared-memory region (region 1) offered to the guest. */
  readonly hostVisibleSize?: bigint;
  /** What one VM may make the host hold. */
  readonly limits?: GuestLimits;
  /** Called when a VM disconnects and everything it had is released (tests). */
  readonly onGuestGone?: (name: string) => void;
}

export const DEFAULT_HOST_VISIBLE_SIZE = 256n << 20n;
/** controlq and cursorq. */
export const NUM_QUEUES = 2;
const CONTROL_QUEUE = 0;
/** The feature bits offered: the device's, plus VERSION_1 and PROTOCOL_FEATURES. */
export const VHOST_USER_FEATURES =
  DEVICE_FEATURES | (1n << BigInt(F_VERSION_1)) | (1n << BigInt(F_PROTOCOL_FEATURES));
/** Chains handled per kick before yielding to the event loop (other guests, other fds). */
const CHAINS_PER_TURN = 256;
const pause = new Int32Array(new SharedArrayBuffer(4));

interface Queue {
  num: number;
  base: number;
  addrs: { desc: bigint; avail: bigint; used: bigint } | null;
  kickFd: number;
  callFd: number;
  errFd: number;
  kickPoller: native.Poller | null;
  enabled: boolean;
  vq: Virtqueue | null;
  /** Bumped when the queue stops: replies for chains of an older generation are dropped. */
  generation: number;
  scheduled: boolean;
}

function newQueue(): Queue {
  return {
    num: 0,
    base: 0,
    addrs: null,
    kickFd: -1,
    callFd: -1,
    errFd: -1,
    kickPoller: null,
    enabled: false,
    vq: null,
    generation: 0,
    scheduled: false,
  };
}

/** A front-end protocol violation: the connection ends. */
class ProtocolError extends Error {}

interface BackendRequest {
  readonly packet: Buffer;
  readonly done: (ok: boolean) => void;
}

/** One VMM connection: one VM, one device. */
export class VhostUserConnection {
  device: GpuDevice;
  readonly ram = new GuestRam();
  private readonly queues: Queue[] = [];
  private readonly poller: native.Poller;
  private readonly header = Buffer.alloc(HEADER_SIZE);
  private readonly payload = Buffer.alloc(MAX_PAYLOAD);
  private have = 0;
  private readonly recvOut = new Int32Array(native.RECV_OUT_LENGTH);
  private fds: number[] = [];
  private features = 0n;
  private protocolFeatures = 0n;
  private status = 0;
  private backendFd = -1;
  private backendPoller: native.Poller | null = null;
  private readonly backendQueue: BackendRequest[] = [];
  private readonly backendIn = Buffer.alloc(HEADER_SIZE + 8);
  /** Control-queue chains held back while the guest's backlog is paused, in order. */
  private readonly parked: Chain[] = [];
  private backendHave = 0;
  closed = false;

  constructor(
    readonly fd: number,
    readonly name: string,
    private readonly options: VhostUserOptions,
    private readonly onClosed: (c: VhostUserConnection) => void,
  ) {
    for (let i = 0; i < NUM_QUEUES; i++) this.queues.push(newQueue());
    this.device = this.newDevice();
    this.poller = new native.Poller(fd, (events, errorCode) =>
      this.guarded(() => {
        if (errorCode) return this.close(`polling the vhost-user socket failed (${errorCode})`);
        if (events & (native.READABLE | native.DISCONNECT)) this.readMessages();
      }),
    );
    this.poller.update(native.READABLE);
  }

  /** Runs one event of this VM: a bug of ours ends this VM's connection, never tswl-host. */
  private guarded(run: () => void): void {
    try {
      run();
    } catch (e) {
      this.close(`internal error: ${(e as Error)?.stack ?? String(e)}`);
    }
  }

  private get log(): DeviceLog {
    return this.options.log;
  }

  private newDevice(): GpuDevice {
    return new GpuDevice({
      wayland: this.options.wayland,
      log: this.options.log,
      name: this.name,
      limits: this.options.limits,
      // the compositor caught up: the control queue may go on
      onBacklogDrained: () => this.schedule(CONTROL_QUEUE),
    });
  }

  /** The VM is gone (or broke the protocol): releases its memory, fds, device and mappings. */
  close(reason: string | null = null): void {
    if (this.closed) return;
    this.closed = true;
    if (reason) this.log.warn(`${this.name}: ${reason}; disconnecting it`);
    this.device.destroy();
    for (const q of this.queues) this.resetQueue(q, true);
    this.ram.clear();
    this.closeBackend();
    for (const fd of this.fds) closeQuietly(fd);
    this.fds = [];
    this.poller.close();
    closeQuietly(this.fd);
    if (this.log.verbose) this.log.info(`${this.name}: disconnected, everything it had released`);
    this.onClosed(this);
    this.options.onGuestGone?.(this.name);
  }

  // ---- front-end messages -------------------------------------------------------------------

  private readMessages(): void {
    while (!this.closed) {
      const inHeader = this.have < HEADER_SIZE;
      const size = inHeader ? HEADER_SIZE : HEADER_SIZE + this.header.readUInt32LE(8);
      const buf = inHeader ? this.header : this.payload;
      const start = inHeader ? this.have : this.have - HEADER_SIZE;
      const end = inHeader ? HEADER_SIZE : size - HEADER_SIZE;
      let n = 0;
      if (end > start) {
        try {
          n = native.recvmsg(this.fd, buf, start, end, this.recvOut);
        } catch (e) {
          this.takeFds();
          return this.close(`reading the vhost-user socket failed: ${errorMessage(e)}`);
        }
        this.takeFds();
        if (n < 0) return;
        if (n === 0) return this.close(null);
        this.have += n;
      }
      if (this.have === HEADER_SIZE) {
        const payloadSize = this.header.readUInt32LE(8);
        if (payloadSize > MAX_PAYLOAD) {
          return this.close(`a ${payloadSize}-byte vhost-user message (at most ${MAX_PAYLOAD})`);
        }
        if (payloadSize > 0) continue;
      } else if (this.have < size) {
        continue;
      }
      this.have = 0;
      const fds = this.fds;
      this.fds = [];
      const request = this.header.readUInt32LE(0);
      const flags = this.header.readUInt32LE(4);
      const body = this.payload.subarray(0, this.header.readUInt32LE(8));
      try {
        this.handle(request, flags, body, fds);
      } catch (e) {
        for (const fd of fds) closeQuietly(fd);
        if (e instanceof ProtocolError) {
          return this.close(`${requestName(request)}: ${e.message}`);
        }
        this.log.warn(`${this.name}: ${requestName(request)}: ${errorMessage(e)}`);
        if (flags & Flag.NEED_REPLY) this.replyU64(request, 1n);
      }
    }
  }

  private takeFds(): void {
    for (let k = 0; k < this.recvOut[0]; k++) this.fds.push(this.recvOut[2 + k]);
    if (this.recvOut[1]) this.log.warn(`${this.name}: a vhost-user message lost fds (too many)`);
  }

  private has(bit: number): boolean {
    return (this.protocolFeatures & (1n << BigInt(bit))) !== 0n;
  }

  /** Handles one message; fds that it does not keep are closed here. */
  private handle(request: number, flags: number, body: Buffer, fds: number[]): void {
    if ((flags & Flag.VERSION_MASK) !== Flag.VERSION) {
      throw new ProtocolError(`protocol version ${flags & Flag.VERSION_MASK} (only 1)`);
    }
    if (this.log.verbose) this.log.info(`${this.name}: ${requestName(request)}`);
    const needBody = (n: number): void => {
      if (body.length < n) throw new ProtocolError(`${body.length}-byte payload, ${n} needed`);
    };
    const fdsUsed = (n: number): number[] => {
      const used = fds.splice(0, n);
      for (const fd of fds) closeQuietly(fd);
      fds.length = 0;
      return used;
    };
    let acked = false; // the message's own answer (or its ack) was sent
    switch (request) {
      case Req.GET_FEATURES:
        this.replyU64(request, VHOST_USER_FEATURES);
        acked = true;
        break;
      case Req.SET_FEATURES:
        needBody(8);
        this.features = body.readBigUInt64LE(0);
        if (this.features & ~VHOST_USER_FEATURES) {
          this.log.warn(
            `${this.name}: the front-end acked features 0x${this.features.toString(16)}, beyond the offered 0x${VHOST_USER_FEATURES.toString(16)}`,
          );
        }
        break;
      case Req.GET_PROTOCOL_FEATURES:
        this.replyU64(request, OFFERED_PROTOCOL_FEATURES);
        acked = true;
        break;
      case Req.SET_PROTOCOL_FEATURES:
        needBody(8);
        this.protocolFeatures = body.readBigUInt64LE(0) & OFFERED_PROTOCOL_FEATURES;
        break;
      case Req.SET_OWNER:
        break;
      case Req.RESET_OWNER:
      case Req.RESET_DEVICE:
        this.resetDevice();
        break;
      case Req.GET_QUEUE_NUM:
        this.replyU64(request, BigInt(NUM_QUEUES));
        acked = true;
        break;
      case Req.GET_MAX_MEM_SLOTS:
        this.replyU64(request, BigInt(MAX_MEM_SLOTS));
        acked = true;
        break;
      case Req.ADD_MEM_REG: {
        needBody(SINGLE_MEM_REGION_SIZE);
        const [fd] = fdsUsed(1);
        if (fd === undefined) throw new ProtocolError('no fd came with the region');
        try {
          if (this.ram.regionCount >= MAX_MEM_SLOTS) throw new Error('no free memory slot');
          this.ram.add(region(body, 8), fd);
        } finally {
          closeQuietly(fd);
        }
        break;
      }
      case Req.REM_MEM_REG: {
        needBody(SINGLE_MEM_REGION_SIZE);
        fdsUsed(0);
        const r = region(body, 8);
        if (!this.ram.remove(r.guestPhysAddr, r.size)) {
          throw new Error(`no memory region at 0x${r.guestPhysAddr.toString(16)} to remove`);
        }
        break;
      }
      case Req.SET_MEM_TABLE: {
        needBody(8);
        const n = body.readUInt32LE(0);
        if (n > MEM_TABLE_MAX_REGIONS || body.length < 8 + n * MEM_REGION_SIZE) {
          throw new ProtocolError(`a memory table of ${n} regions in ${body.length} bytes`);
        }
        if (fds.length !== n) throw new ProtocolError(`${n} regions but ${fds.length} fds`);
        const used = fdsUsed(n);
        try {
          // A new table replaces the old one; the queues keep their addresses (user addresses).
          this.ram.clear();
          for (let i = 0; i < n; i++) this.ram.add(region(body, 8 + i * MEM_REGION_SIZE), used[i]);
        } finally {
          for (const fd of used) closeQuietly(fd);
        }
        for (const q of this.queues) if (q.vq) this.restartQueue(q);
        break;
      }
      case Req.SET_VRING_NUM: {
        needBody(VRING_STATE_SIZE);
        this.queue(body).num = body.readUInt32LE(4);
        break;
      }
      case Req.SET_VRING_BASE: {
        needBody(VRING_STATE_SIZE);
        this.queue(body).base = body.readUInt32LE(4) & 0xffff;
        break;
      }
      case Req.SET_VRING_ADDR: {
        needBody(VRING_ADDR_SIZE);
        const q = this.queue(body);
        q.addrs = {
          desc: body.readBigUInt64LE(VringAddr.DESC),
          used: body.readBigUInt64LE(VringAddr.USED),
          avail: body.readBigUInt64LE(VringAddr.AVAIL),
        };
        break;
      }
      case Req.GET_VRING_BASE: {
        needBody(VRING_STATE_SIZE);
        const index = body.readUInt32LE(0);
        const q = this.queue(body);
        const base = q.vq ? q.vq.lastAvail : q.base;
        this.resetQueue(q, false);
        q.base = base;
        const out = Buffer.alloc(VRING_STATE_SIZE);
        out.writeUInt32LE(index, 0);
        out.writeUInt32LE(base, 4);
        this.reply(request, out);
        acked = true;
        break;
      }
      case Req.SET_VRING_KICK:
      case Req.SET_VRING_CALL:
      case Req.SET_VRING_ERR: {
        needBody(8);
        const v = Number(body.readBigUInt64LE(0) & 0xffffn);
        const index = v & VRING_INDEX_MASK;
        if (index >= NUM_QUEUES)
          throw new ProtocolError(`queue ${index} (there are ${NUM_QUEUES})`);
        const q = this.queues[index];
        const fd = v & VRING_NOFD ? -1 : (fdsUsed(1)[0] ?? -1);
        if (!(v & VRING_NOFD) && fd < 0) throw new ProtocolError('no eventfd came with it');
        if (request === Req.SET_VRING_KICK) {
          this.stopKick(q);
          q.kickFd = fd;
          this.startQueue(index);
        } else if (request === Req.SET_VRING_CALL) {
          if (q.callFd >= 0) closeQuietly(q.callFd);
          q.callFd = fd;
        } else {
          if (q.errFd >= 0) closeQuietly(q.errFd);
          q.errFd = fd;
        }
        break;
      }
      case Req.SET_VRING_ENABLE: {
        needBody(VRING_STATE_SIZE);
        const q = this.queue(body);
        q.enabled = body.readUInt32LE(4) !== 0;
        if (q.enabled) this.schedule(this.queues.indexOf(q));
        break;
      }
      case Req.SET_BACKEND_REQ_FD: {
        const [fd] = fdsUsed(1);
        if (fd === undefined) throw new ProtocolError('no socket came with it');
        this.closeBackend();
        this.backendFd = fd;
        this.backendPoller = new native.Poller(fd, (_events, errorCode) =>
          this.guarded(() => this.readBackend(errorCode)),
        );
        this.backendPoller.update(native.READABLE);
        break;
      }
      case Req.GET_CONFIG: {
        needBody(CONFIG_HDR_SIZE);
        const offset = body.readUInt32LE(0);
        const size = body.readUInt32LE(4);
        if (size > MAX_CONFIG_SIZE || offset > MAX_CONFIG_SIZE) {
          throw new ProtocolError(`config bytes ${offset}+${size}`);
        }
        const out = Buffer.alloc(CONFIG_HDR_SIZE + size);
        body.copy(out, 0, 0, CONFIG_HDR_SIZE);
        const config = vmDeviceConfig();
        if (offset < config.length)
          config.copy(out, CONFIG_HDR_SIZE, offset, Math.min(config.length, offset + size));
        this.reply(request, out);
        acked = true;
        break;
      }
      case Req.SET_CONFIG:
        // events_clear: the device never raises config events, so there is nothing to clear.
        break;
      case Req.SET_STATUS: {
        needBody(8);
        const status = Number(body.readBigUInt64LE(0) & 0xffn);
        if (status === 0 && this.status !== 0) this.resetDevice();
        this.status = status;
        break;
      }
      case Req.GET_STATUS:
        this.replyU64(request, BigInt(this.status));
        acked = true;
        break;
      case Req.GET_SHMEM_CONFIG: {
        const out = Buffer.alloc(SHMEM_CONFIG_SIZE);
        // Region 0 unused, region 1 (VIRTIO_GPU_SHM_ID_HOST_VISIBLE) the host-visible window.
        out.writeUInt32LE(SHM_ID_HOST_VISIBLE + 1, 0);
        out.writeBigUInt64LE(
          this.options.hostVisibleSize ?? DEFAULT_HOST_VISIBLE_SIZE,
          8 + 8 * SHM_ID_HOST_VISIBLE,
        );
        this.reply(request, out);
        acked = true;
        break;
      }
      case Req.SET_VRING_ENDIAN:
      case Req.SET_LOG_BASE:
      case Req.SET_LOG_FD:
      case Req.SET_INFLIGHT_FD:
      case Req.GET_INFLIGHT_FD:
      case Req.IOTLB_MSG:
      default:
        fdsUsed(0);
        throw new Error('not supported');
    }
    for (const fd of fds) closeQuietly(fd);
    if (!acked && flags & Flag.NEED_REPLY && this.has(ProtocolFeature.REPLY_ACK)) {
      this.replyU64(request, 0n);
    }
  }

  private queue(body: Buffer): Queue {
    const index = body.readUInt32LE(0);
    if (index >= NUM_QUEUES) throw new ProtocolError(`queue ${index} (there are ${NUM_QUEUES})`);
    return this.queues[index];
  }

  private reply(request: number, payload: Buffer): void {
    const out = Buffer.alloc(HEADER_SIZE + payload.length);
    out.writeUInt32LE(request, 0);
    out.writeUInt32LE(Flag.VERSION | Flag.REPLY, 4);
    out.writeUInt32LE(payload.length, 8);
    payload.copy(out, HEADER_SIZE);
    this.sendAll(this.fd, out, []);
  }

  private replyU64(request: number, value: bigint): void {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(value);
    this.reply(request, b);
  }

  /**
   * Writes a whole message. The front-end reads our answers synchronously and they are small,
   * so a full socket means a stuck VMM; after a short wait that ends the connection.
   */
  private sendAll(fd: number, data: Buffer, fds: number[]): void {
    let off = 0;
    let attempts = 0;
    while (off < data.length) {
      const n = native.sendmsg(fd, data, off, data.length, fds, off === 0 ? fds.length : 0);
      if (n < 0) {
        if (++attempts > 100) throw new ProtocolError('the front-end does not read its socket');
        Atomics.wait(pause, 0, 0, 10); // a full socket: give the VMM a moment
        continue;
      }
      off += n;
    }
  }

  // ---- queues ----------------------------------------------------------------------------------

  private startQueue(index: number): void {
    const q = this.queues[index];
    if (q.kickFd < 0) return;
    q.kickPoller = new native.Poller(q.kickFd, (_events, errorCode) =>
      this.guarded(() => {
        if (errorCode) return this.close(`polling a kick eventfd failed (${errorCode})`);
        native.eventfdDrain(q.kickFd);
        this.process(index);
      }),
    );
    q.kickPoller.update(native.READABLE);
    // Without PROTOCOL_FEATURES a ring starts enabled when it is kicked.
    if (!(this.features & (1n << BigInt(F_PROTOCOL_FEATURES)))) q.enabled = true;
    this.schedule(index);
  }

  private stopKick(q: Queue): void {
    q.kickPoller?.close();
    q.kickPoller = null;
    if (q.kickFd >= 0) closeQuietly(q.kickFd);
    q.kickFd = -1;
  }

  /** Stops a queue (GET_VRING_BASE, reset, disconnect); `all` also drops its eventfds. */
  private resetQueue(q: Queue, all: boolean): void {
    if (q === this.queues[CONTROL_QUEUE]) this.parked.length = 0;
    q.generation++;
    q.vq = null;
    q.enabled = false;
    this.stopKick(q);
    if (all) {
      if (q.callFd >= 0) closeQuietly(q.callFd);
      if (q.errFd >= 0) closeQuietly(q.errFd);
      q.callFd = q.errFd = -1;
    }
  }

  /** The memory table changed under a running queue: map its rings anew. */
  private restartQueue(q: Queue): void {
    const base = q.vq ? q.vq.lastAvail : q.base;
    q.vq = null;
    q.base = base;
    this.schedule(this.queues.indexOf(q));
  }

  private schedule(index: number): void {
    const q = this.queues[index];
    if (q.scheduled || this.closed) return;
    q.scheduled = true;
    setImmediate(() => {
      q.scheduled = false;
      this.guarded(() => this.process(index));
    });
  }

  private process(index: number): void {
    const q = this.queues[index];
    if (this.closed || !q.enabled || q.kickFd < 0 || !q.addrs) return;
    if (!q.vq) {
      try {
        q.vq = new Virtqueue(this.ram, q.num, q.base, q.addrs, true);
      } catch (e) {
        this.log.warn(`${this.name}: queue ${index} cannot start: ${errorMessage(e)}`);
        return;
      }
    }
    const vq = q.vq;
    for (let i = 0; i < CHAINS_PER_TURN; i++) {
      // back-pressure: while the compositor (or a clipboard reader) lags, the guest's commands
      // wait, held back in order; its polls go on, since a backlog may drain only through them
      const paused = index === CONTROL_QUEUE && this.device.backlog >= BACKLOG_PAUSE;
      if (!paused && this.parked.length > 0) {
        this.run(q, this.parked.shift()!);
        continue;
      }
      if (paused && this.parked.length >= vq.num) return;
      let chain: Chain | null;
      try {
        chain = vq.pop();
      } catch (e) {
        if (!(e instanceof ChainError)) {
          // a ring we cannot read any more: this VM's queue stops, nothing else does
          this.log.warn(`${this.name}: queue ${index} stopped: ${errorMessage(e)}`);
          q.enabled = false;
          return;
        }
        this.log.warn(`${this.name}: queue ${index}: ${e.message}; returned unanswered`);
        vq.complete(e.head, 0);
        this.notify(q);
        continue;
      }
      if (!chain) {
        if (vq.broken) {
          this.log.warn(`${this.name}: queue ${index} stopped: ${vq.broken}`);
          q.enabled = false;
        }
        return;
      }
      if (index !== CONTROL_QUEUE) {
        // The cursor queue: no cursor is drawn, the buffers go back as they came.
        vq.complete(chain.head, 0);
        this.notify(q);
        continue;
      }
      if ((paused || this.parked.length > 0) && !onlyPolls(chain.readable)) {
        // the chain's command is read into a scratch buffer that the next pop reuses
        this.parked.push({ ...chain, readable: Buffer.from(chain.readable) });
        continue;
      }
      this.run(q, chain);
    }
    this.schedule(index); // more may wait: continue on the next turn
  }

  /** Answers one control-queue chain (now, or when its fence signals). */
  private run(q: Queue, c: Chain): void {
    const generation = q.generation;
    const display = displayInfo(c.readable);
    if (display) {
      q.vq!.complete(c.head, Virtqueue.fill(c, display));
      this.notify(q);
      return;
    }
    this.device.handleCommand(c.readable, this.ram, (reply) =>
      this.answer(q, generation, c, reply),
    );
  }

  private answer(q: Queue, generation: number, chain: Chain, reply: Reply): void {
    if (this.closed || q.generation !== generation || !q.vq) {
      if (reply.map) closeQuietly(reply.map.fd);
      return;
    }
    const finish = (ok: boolean): void => {
      if (this.closed || q.generation !== generation || !q.vq) return;
      let response = reply.response;
      if (!ok) {
        response = Buffer.from(response.subarray(0, 24));
        response.writeUInt32LE(VirtioGpuResp.ERR_UNSPEC, 0);
      }
      q.vq.complete(chain.head, Virtqueue.fill(chain, response));
      this.notify(q);
    };
    if (reply.map) {
      const m = reply.map;
      let fd: number;
      try {
        fd = fileForMapping(m.fd, m.size);
      } catch (e) {
        this.log.warn(`${this.name}: a host-visible blob cannot be mapped: ${errorMessage(e)}`);
        finish(false);
        return;
      }
      this.shmem(BackendReq.SHMEM_MAP, m.offset, m.size, m.writable, fd, finish);
    } else if (reply.unmap) {
      this.shmem(BackendReq.SHMEM_UNMAP, reply.unmap.offset, reply.unmap.size, false, -1, () =>
        finish(true),
      );
    } else {
      finish(true);
    }
  }

  private notify(q: Queue): void {
    if (q.callFd < 0 || q.vq?.interruptsSuppressed) return;
    try {
      native.eventfdSignal(q.callFd);
    } catch (e) {
      this.log.warn(`${this.name}: signalling the guest failed: ${errorMessage(e)}`);
    }
  }

  private resetDevice(): void {
    for (const q of this.queues) this.resetQueue(q, false);
    this.device.destroy();
    this.device = this.newDevice();
    if (this.log.verbose) this.log.info(`${this.name}: device reset`);
  }

  // ---- the back-end channel: SHMEM_MAP / SHMEM_UNMAP ------------------------------------------

  /** Sends SHMEM_MAP (with `fd`, which is closed here) or SHMEM_UNMAP; `done` gets the outcome. */
  private shmem(
    request: number,
    offset: bigint,
    size: number,
    writable: boolean,
    fd: number,
    done: (ok: boolean) => void,
  ): void {
    if (this.backendFd < 0 || !this.has(ProtocolFeature.SHMEM)) {
      if (fd >= 0) closeQuietly(fd);
      this.log.warn(
        `${this.name}: a host-visible blob cannot be mapped: the front-end did not negotiate ` +
          'SHMEM and a back-end channel',
      );
      done(false);
      return;
    }
    const packet = Buffer.alloc(HEADER_SIZE + SHMEM_MAP_SIZE);
    const ack = this.has(ProtocolFeature.REPLY_ACK);
    packet.writeUInt32LE(request, 0);
    packet.writeUInt32LE(Flag.VERSION | (ack ? Flag.NEED_REPLY : 0), 4);
    packet.writeUInt32LE(SHMEM_MAP_SIZE, 8);
    const p = HEADER_SIZE;
    packet[p + ShmemMap.SHMID] = SHM_ID_HOST_VISIBLE;
    packet.writeBigUInt64LE(0n, p + ShmemMap.FD_OFFSET);
    packet.writeBigUInt64LE(offset, p + ShmemMap.SHM_OFFSET);
    packet.writeBigUInt64LE(BigInt(size), p + ShmemMap.LEN);
    packet.writeBigUInt64LE(writable ? SHMEM_MAP_RW : 0n, p + ShmemMap.FLAGS);
    try {
      this.sendAll(this.backendFd, packet, fd >= 0 ? [fd] : []);
    } catch (e) {
      this.log.warn(`${this.name}: the back-end channel failed: ${errorMessage(e)}`);
      done(false);
      return;
    } finally {
      if (fd >= 0) closeQuietly(fd);
    }
    if (ack) this.backendQueue.push({ packet, done });
    else done(true);
  }

  private readBackend(errorCode: string | null): void {
    if (errorCode) return this.closeBackend();
    while (this.backendFd >= 0) {
      let n: number;
      const out = new Int32Array(native.RECV_OUT_LENGTH);
      try {
        n = native.recvmsg(
          this.backendFd,
          this.backendIn,
          this.backendHave,
          this.backendIn.length,
          out,
        );
      } catch {
        n = 0;
      }
      for (let k = 0; k < out[0]; k++) closeQuietly(out[2 + k]);
      if (n < 0) return;
      if (n === 0) {
        this.closeBackend();
        return;
      }
      this.backendHave += n;
      if (this.backendHave < this.backendIn.length) continue;
      this.backendHave = 0;
      const value = this.backendIn.readBigUInt64LE(HEADER_SIZE);
      const pending = this.backendQueue.shift();
      if (!pending) {
        this.log.warn(`${this.name}: an unexpected reply on the back-end channel`);
        continue;
      }
      if (value !== 0n) {
        this.log.warn(
          `${this.name}: the front-end refused ${this.backendIn.readUInt32LE(0) === BackendReq.SHMEM_MAP ? 'SHMEM_MAP' : 'SHMEM_UNMAP'} (${value})`,
        );
      }
      pending.done(value === 0n);
    }
  }

  private closeBackend(): void {
    this.backendPoller?.close();
    this.backendPoller = null;
    if (this.backendFd >= 0) closeQuietly(this.backendFd);
    this.backendFd = -1;
    const pending = this.backendQueue.splice(0);
    for (const p of pending) p.done(false);
  }
}

/**
 * virtio_gpu_config for a VM: as the device's, but with one scanout (Linux 6.1's driver refuses a
 * device with none). The scanout is never enabled: GET_DISPLAY_INFO reports it disconnected.
 */
function vmDeviceConfig(): Buffer {
  const config = deviceConfig();
  if (config.readUInt32LE(8) === 0) config.writeUInt32LE(1, 8);
  return config;
}

const GET_DISPLAY_INFO = 0x0100;
const OK_DISPLAY_INFO = 0x1101;
/** OK_DISPLAY_INFO: the header, then 16 × {rect (4 × u32), u32 enabled, u32 flags}. */
const DISPLAY_INFO_SIZE = 24 + 16 * 24;

/** The answer to GET_DISPLAY_INFO (no scanout enabled), or null for any other command. */
function displayInfo(cmd: Uint8Array): Buffer | null {
  if (cmd.length < 24) return null;
  const v = Buffer.from(cmd.buffer, cmd.byteOffset, 24);
  if (v.readUInt32LE(0) !== GET_DISPLAY_INFO) return null;
  const out = Buffer.alloc(DISPLAY_INFO_SIZE);
  out.writeUInt32LE(OK_DISPLAY_INFO, 0);
  // A fenced request gets its fence echoed, as the device does for its own commands.
  if (v.readUInt32LE(4) & 1) {
    out.writeUInt32LE(v.readUInt32LE(4) & 3, 4);
    v.copy(out, 8, 8, 21);
  }
  return out;
}

function region(body: Buffer, at: number) {
  return {
    guestPhysAddr: body.readBigUInt64LE(at),
    size: body.readBigUInt64LE(at + 8),
    userAddr: body.readBigUInt64LE(at + 16),
    mmapOffset: body.readBigUInt64LE(at + 24),
  };
}

/** Listens on the vhost-user socket; every VMM connection gets its own device. */
export class VhostUserServer {
  private listener: native.Listener | null = null;
  private poller: native.Poller | null = null;
  private readonly connections = new Set<VhostUserConnection>();
  private nextGuest = 1;

  constructor(
    readonly path: string,
    private readonly options: VhostUserOptions,
  ) {}

  get connectionCount(): number {
    return this.connections.size;
  }

  get current(): readonly VhostUserConnection[] {
    return [...this.connections];
  }

  /** Binds and listens (throws like listenUnix: EADDRINUSE while another process serves it). */
  listen(): void {
    this.listener = native.listenUnix(this.path);
    this.poller = new native.Poller(this.listener.fd, (_events, errorCode) => {
      if (errorCode) {
        this.options.log.warn(`vhost-user: polling the listening socket failed (${errorCode})`);
        return;
      }
      this.acceptAll();
    });
    this.poller.update(native.READABLE);
  }

  /** Stops listening and disconnects every VM. The socket and lock files are the caller's. */
  close(): void {
    this.poller?.close();
    this.poller = null;
    if (this.listener) {
      closeQuietly(this.listener.fd);
      closeQuietly(this.listener.lockFd);
    }
    this.listener = null;
    for (const c of [...this.connections]) c.close();
  }

  private acceptAll(): void {
    for (;;) {
      let fd: number;
      try {
        fd = native.accept(this.listener!.fd);
      } catch (e) {
        this.options.log.warn(`vhost-user: accept failed: ${errorMessage(e)}`);
        this.poller?.update(0);
        setTimeout(() => this.poller?.update(native.READABLE), 200).unref();
        return;
      }
      if (fd < 0) return;
      const name = `vm ${this.nextGuest++}`;
      const c = new VhostUserConnection(fd, name, this.options, (x) => this.connections.delete(x));
      this.connections.add(c);
      this.options.log.info(`${name}: a VMM connected`);
    }
  }
}

/**
 * The fd to send with SHMEM_MAP for `size` bytes of `fd` (which is consumed). QEMU maps only what
 * the file holds and refuses a mapping past its end, but a blob is a whole number of pages while
 * the file a client sent may be shorter (weston's 64434-byte keymap in a 64 KiB blob): such a
 * file is copied into a memfd of the mapping's size. The copy is the guest's from then on; the
 * files cross-domain sends this way (keymaps) are read-only.
 */
export function fileForMapping(fd: number, size: number): number {
  let copy = -1;
  try {
    const length = fstatSync(fd).size;
    if (length >= size) return fd;
    copy = native.memfdCreate('tswl-host-map', size);
    const data = Buffer.alloc(length);
    for (let at = 0; at < length;) {
      const n = readSync(fd, data, at, length - at, at);
      if (n <= 0) break;
      at += n;
    }
    writeSync(copy, data, 0, length, 0);
    closeQuietly(fd);
    return copy;
  } catch (e) {
    closeQuietly(fd);
    if (copy >= 0) closeQuietly(copy);
    throw e;
  }
}

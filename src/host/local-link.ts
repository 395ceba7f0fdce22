// The local link: guests reach the device over a Unix SOCK_SEQPACKET socket instead of a
// virtqueue (the envelope is documented in src/virtgpu/protocol.ts). One connection is one
// guest with its own GpuDevice. This file only moves packets; the device does the rest.

import * as native from '../native/index.js';
import {
  CTRL_HDR_SIZE,
  CtrlHdr,
  LOCAL_LINK_ENVELOPE_SIZE,
  LOCAL_LINK_MAX_PACKET,
  LOCAL_LINK_WANT_REPLY,
  VirtioGpuResp,
  getU32,
  setU32,
} from '../virtgpu/protocol.js';
import { BACKLOG_PAUSE, type GuestLimits } from './budget.js';
import { GpuDevice, type Reply, onlyPolls } from './device.js';
import { type DeviceLog, errorMessage } from './errors.js';
import { type FdLedger, closeQuietly } from './fds.js';
import type { GuestBacking, GuestMemory, MemEntry } from './guest-memory.js';
import type { HostWayland } from './wayland.js';

export interface LocalLinkOptions {
  /** How guests' Wayland channels reach the compositor (--wayland-sock and the policy). */
  readonly wayland: HostWayland;
  readonly log: DeviceLog;
  /** What one guest may make the host hold. */
  readonly limits?: GuestLimits;
}

/** Packets handled per readiness callback, so that one busy guest cannot starve the others. */
const PACKETS_PER_TURN = 64;
/** Packets held back while a guest is paused, before its socket is left to fill. */
const MAX_PARKED = 256;
const NO_FDS: readonly number[] = [];

/**
 * A GUEST blob's memory on the local link: the memfd that came with RESOURCE_CREATE_BLOB, its
 * entries addressing that file (addr = offset), written through a mapping of the file. The guest
 * may truncate its file at any time: the addon's copy catches the fault of a write past its end,
 * and the write then fails instead of the host.
 */
class MemfdBacking implements GuestBacking {
  readonly entryLengths: number[];
  private map: Buffer | null = null;

  constructor(
    private fd: number,
    private readonly size: number,
    private readonly offsets: number[],
    lengths: number[],
    private readonly ledger: FdLedger,
  ) {
    this.entryLengths = lengths;
  }

  write(entry: number, offset: number, src: Uint8Array, start: number, end: number): void {
    if (this.fd < 0) throw new Error('the blob is gone');
    this.map ??= native.mmap(this.fd, 0, this.size, true);
    const at = this.offsets[entry] + offset;
    const n = end - start;
    if (n === 0) return;
    oneRow[2] = n;
    const copied = native.copyRects(
      this.map.subarray(at, at + n),
      n,
      Buffer.from(src.buffer, src.byteOffset + start, n),
      n,
      oneRow,
      1,
      1,
      n,
      1,
    );
    if (copied < 0) throw new Error('the guest memory file was truncated under its blob');
  }

  release(): void {
    if (this.fd < 0) return;
    if (this.map) native.munmap(this.map);
    this.map = null;
    this.ledger.close(this.fd);
    this.fd = -1;
  }
}

/** One rectangle a row high (x, y, width, height): a plain copy through the guarded copier. */
const oneRow = new Int32Array([0, 0, 0, 1]);

/** The fds that came with one packet; RESOURCE_CREATE_BLOB (GUEST) takes its memfd from here. */
class PacketMemory implements GuestMemory {
  fds: readonly number[] = NO_FDS;

  resolve(entries: readonly MemEntry[], ledger: FdLedger): GuestBacking {
    if (this.fds.length !== 1) {
      throw new Error(
        `a GUEST blob takes exactly one memfd with its command; ${this.fds.length} came`,
      );
    }
    const fd = this.fds[0];
    const kind = native.fdKind(fd);
    if (kind.kind !== 'memory')
      throw new Error(`the fd that came with it is a ${kind.kind}, not memory`);
    if (!kind.writable) throw new Error('the memfd that came with it is read-only');
    const offsets: number[] = [];
    const lengths: number[] = [];
    for (const e of entries) {
      if (e.length === 0 || e.addr + BigInt(e.length) > BigInt(kind.size)) {
        throw new Error(
          `mem entry ${offsets.length} (offset ${e.addr}, ${e.length} bytes) is not inside the ${kind.size}-byte memfd`,
        );
      }
      offsets.push(Number(e.addr));
      lengths.push(e.length);
    }
    if (!ledger.hasRoom()) throw new Error('the guest holds too many fds');
    ledger.take(fd);
    this.fds = [];
    return new MemfdBacking(fd, kind.size, offsets, lengths, ledger);
  }
}

interface Outgoing {
  packet: Buffer;
  fds: readonly number[];
}

/** One connected guest: its packets in, the device's replies out. */
export class LinkGuest {
  readonly device: GpuDevice;
  private readonly poller: native.Poller;
  private readonly inBuf = Buffer.allocUnsafe(LOCAL_LINK_MAX_PACKET + 1);
  private readonly recvOut = new Int32Array(native.RECV_OUT_LENGTH);
  private readonly outQueue: Outgoing[] = [];
  /** Where a reply is put together; one the socket did not take is queued as a copy. */
  private readonly outBuf = Buffer.allocUnsafe(LOCAL_LINK_MAX_PACKET);
  /** The fds that came with the command being handled (one object, reused). */
  private readonly memory = new PacketMemory();
  private closing = false;
  private resumeScheduled = false;
  /** Packets held back while the guest's backlog is paused, in order, with their fds. */
  private readonly parked: { packet: Buffer; fds: readonly number[] }[] = [];
  closed = false;

  constructor(
    readonly fd: number,
    readonly name: string,
    private readonly log: DeviceLog,
    options: LocalLinkOptions,
    private readonly onClosed: (guest: LinkGuest) => void,
  ) {
    this.device = new GpuDevice({
      wayland: options.wayland,
      log: options.log,
      name,
      limits: options.limits,
      onBacklogDrained: () => this.resumeReading(),
    });
    this.poller = new native.Poller(fd, (events, errorCode) => {
      try {
        this.onPoll(events, errorCode);
      } catch (e) {
        // a bug of ours must not take the other guests down with this one
        this.close(`internal error: ${(e as Error)?.stack ?? String(e)}`);
      }
    });
    this.poller.update(native.READABLE);
  }

  /** Disconnects the guest and releases everything it had. */
  close(reason: string | null = null): void {
    if (this.closed) return;
    this.closed = true;
    this.closing = true;
    if (reason) this.log.warn(`${this.name}: ${reason}; disconnecting it`);
    this.device.destroy();
    this.poller.close();
    for (const o of [...this.outQueue, ...this.parked]) for (const fd of o.fds) closeQuietly(fd);
    this.outQueue.length = 0;
    this.parked.length = 0;
    closeQuietly(this.fd);
    if (this.log.verbose) this.log.info(`${this.name}: disconnected, everything it had released`);
    this.onClosed(this);
  }

  /** Closes from inside a callback of the device, once that call has returned. */
  private fail(reason: string | null): void {
    if (this.closing) return;
    this.closing = true;
    queueMicrotask(() => this.close(reason));
  }

  private onPoll(events: number, errorCode: string | null): void {
    if (this.closing) return;
    if (errorCode) {
      // a guest that hangs up with data unread shows as a reset: that is still just a hang-up
      const hangUp = errorCode === 'ECONNRESET' || errorCode === 'EPIPE';
      return this.close(hangUp ? null : `polling the link failed (${errorCode})`);
    }
    if (events & native.WRITABLE) this.flush();
    if (events & (native.READABLE | native.DISCONNECT)) this.readPackets();
  }

  /** The compositor caught up: take the guest's commands again. */
  private resumeReading(): void {
    // from the event loop, never inside the device's handling of a command
    if (this.resumeScheduled) return;
    this.resumeScheduled = true;
    setImmediate(() => {
      this.resumeScheduled = false;
      if (this.closing || this.device.backlog >= BACKLOG_PAUSE) return;
      if (this.outQueue.length === 0) this.poller.update(native.READABLE);
      this.readPackets();
    });
  }

  private readPackets(): void {
    for (let i = 0; i < PACKETS_PER_TURN && !this.closing && this.outQueue.length === 0; i++) {
      // back-pressure: while the compositor (or a clipboard reader) lags, the guest's commands
      // are held back in order (then wait in its socket); its polls go on, since a backlog may
      // drain only through them
      const paused = this.device.backlog >= BACKLOG_PAUSE;
      if (!paused && this.parked.length > 0) {
        const p = this.parked.shift()!;
        this.handle(p.packet, p.fds);
        continue;
      }
      if (paused && this.parked.length >= MAX_PARKED) {
        this.poller.update(0);
        return;
      }
      let n: number;
      try {
        n = native.recvmsg(this.fd, this.inBuf, 0, this.inBuf.length, this.recvOut);
      } catch (e) {
        for (let k = 0; k < this.recvOut[0]; k++) closeQuietly(this.recvOut[2 + k]);
        return this.close(`receiving from the link failed: ${errorMessage(e)}`);
      }
      const count = this.recvOut[0];
      const fds = count === 0 ? NO_FDS : Array.from(this.recvOut.subarray(2, 2 + count));
      if (n < 0) {
        for (const fd of fds) closeQuietly(fd);
        return;
      }
      if (n === 0) {
        for (const fd of fds) closeQuietly(fd);
        return this.close(null);
      }
      if (this.recvOut[1])
        this.device.warn('a packet carried more fds than fit; the rest were lost');
      if (n < LOCAL_LINK_ENVELOPE_SIZE || n > LOCAL_LINK_MAX_PACKET) {
        for (const fd of fds) closeQuietly(fd);
        return this.close(
          n < LOCAL_LINK_ENVELOPE_SIZE
            ? `a ${n}-byte packet, shorter than the envelope`
            : `a packet over ${LOCAL_LINK_MAX_PACKET} bytes`,
        );
      }
      const packet = this.inBuf.subarray(0, n);
      if (
        (paused || this.parked.length > 0) &&
        !onlyPolls(packet.subarray(LOCAL_LINK_ENVELOPE_SIZE))
      ) {
        this.parked.push({ packet: Buffer.from(packet), fds });
        continue;
      }
      this.handle(packet, fds);
    }
  }

  /** Runs one packet's command; its answer goes out now or when its fence signals. */
  private handle(packet: Buffer, fds: readonly number[]): void {
    const tag = getU32(packet, 0);
    const wanted = (getU32(packet, 4) & LOCAL_LINK_WANT_REPLY) !== 0;
    const command = packet.subarray(LOCAL_LINK_ENVELOPE_SIZE);
    const fenced = command.length >= CTRL_HDR_SIZE && (getU32(command, CtrlHdr.FLAGS) & 1) !== 0;
    const memory = this.memory;
    memory.fds = fds;
    this.device.handleCommand(command, memory, (reply) => {
      // an unfenced success the guest did not ask about is left unanswered (protocol.ts)
      if (!wanted && !fenced && getU32(reply.response, 0) < VirtioGpuResp.ERR_UNSPEC) {
        if (reply.map) closeQuietly(reply.map.fd);
        return;
      }
      this.send(tag, reply);
    });
    const left = memory.fds;
    memory.fds = NO_FDS;
    if (left.length > 0) {
      this.device.warn(
        `${left.length} fd(s) came with a command that did not take them; closed them`,
      );
      for (const fd of left) closeQuietly(fd);
    }
  }

  private send(tag: number, reply: Reply): void {
    const fds = reply.map ? [reply.map.fd] : NO_FDS;
    if (this.closing) {
      for (const fd of fds) closeQuietly(fd);
      return;
    }
    const length = LOCAL_LINK_ENVELOPE_SIZE + reply.response.length;
    const packet = length <= this.outBuf.length ? this.outBuf : Buffer.allocUnsafe(length);
    setU32(packet, 0, tag);
    setU32(packet, 4, 0);
    reply.response.copy(packet, LOCAL_LINK_ENVELOPE_SIZE);
    if (this.outQueue.length === 0) {
      const sent = this.trySend(packet, length, fds);
      if (sent === null) for (const fd of fds) closeQuietly(fd);
      if (sent !== false) return;
      this.poller.update(native.WRITABLE);
    }
    this.outQueue.push({ packet: Buffer.from(packet.subarray(0, length)), fds });
  }

  /** Sends queued replies; while some wait for room, the guest's packets are not read. */
  private flush(): void {
    while (this.outQueue.length > 0) {
      const o = this.outQueue[0];
      const sent = this.trySend(o.packet, o.packet.length, o.fds);
      if (sent === null) return;
      if (!sent) break;
      this.outQueue.shift();
    }
    if (this.closing) return;
    this.poller.update(this.outQueue.length > 0 ? native.WRITABLE : native.READABLE);
  }

  /** True once sent (its fds closed), false when the socket is full, null when the link failed. */
  private trySend(packet: Buffer, length: number, fds: readonly number[]): boolean | null {
    let n: number;
    try {
      n = native.sendmsg(this.fd, packet, 0, length, fds, fds.length);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      // the guest hung up with replies still on their way: that is no failure of the link
      if (code === 'EPIPE' || code === 'ECONNRESET') this.fail(null);
      else this.fail(`sending to the link failed: ${errorMessage(e)}`);
      return null;
    }
    if (n < 0) return false;
    for (const fd of fds) closeQuietly(fd);
    return true;
  }
}

/** Listens on the local-link socket and gives every connection its own device. */
export class LocalLinkServer {
  private listenFd = -1;
  private poller: native.Poller | null = null;
  private readonly guests = new Set<LinkGuest>();
  private nextGuest = 1;

  constructor(
    readonly path: string,
    private readonly options: LocalLinkOptions,
  ) {}

  get guestCount(): number {
    return this.guests.size;
  }

  /** Binds and listens (throws like listenSeqpacket: EADDRINUSE when the path exists). */
  listen(): void {
    this.listenFd = native.listenSeqpacket(this.path);
    this.poller = new native.Poller(this.listenFd, (_events, errorCode) => {
      if (errorCode) {
        this.options.log.warn(`local link: polling the listening socket failed (${errorCode})`);
        return;
      }
      this.acceptAll();
    });
    this.poller.update(native.READABLE);
  }

  /** Stops listening and disconnects every guest. The socket path is the caller's to remove. */
  close(): void {
    this.poller?.close();
    this.poller = null;
    if (this.listenFd >= 0) closeQuietly(this.listenFd);
    this.listenFd = -1;
    for (const g of [...this.guests]) g.close();
  }

  private acceptAll(): void {
    for (;;) {
      let fd: number;
      try {
        fd = native.accept(this.listenFd);
      } catch (e) {
        // EMFILE and the like: try again in a while rather than spin on a readable socket.
        this.options.log.warn(`local link: accept failed: ${errorMessage(e)}`);
        this.poller?.update(0);
        setTimeout(() => this.poller?.update(native.READABLE), 200).unref();
        return;
      }
      if (fd < 0) return;
      const name = `guest ${this.nextGuest++}`;
      const guest = new LinkGuest(fd, name, this.options.log, this.options, (g) =>
        this.guests.delete(g),
      );
      this.guests.add(guest);
      if (this.options.log.verbose) this.options.log.info(`${name}: connected`);
    }
  }
}

// The cross-domain context type (capset 5) as crosvm's rutabaga implements it: the command
// decoder for SUBMIT_3D buffers, the item table, the query and channel rings (mailboxes the host
// writes at offset 0 of their first backing entry), one compositor connection per context and
// one host→guest message per ring-1 fence.
//
// The guest is untrusted: every field is checked before use; a bad command fails this context
// only (ContextError), and a severe one disables it for good.

import * as native from '../native/index.js';
import {
  CROSS_DOMAIN_CHANNEL_TYPE_WAYLAND,
  CROSS_DOMAIN_GET_IMAGE_REQUIREMENTS_SIZE,
  CROSS_DOMAIN_HEADER_SIZE,
  CROSS_DOMAIN_IMAGE_REQUIREMENTS_SIZE,
  CROSS_DOMAIN_MAX_IDENTIFIERS,
  CROSS_DOMAIN_MAX_SEND_RECV_SIZE,
  CROSS_DOMAIN_PIPE_READ_START,
  CROSS_DOMAIN_READ_WRITE_SIZE,
  CROSS_DOMAIN_SEND_RECEIVE_SIZE,
  CrossDomainCmd,
  CrossDomainId,
  CrossDomainInitSize,
  ImageRequirements as Reqs,
  MapCache,
  ReadWrite,
  SendReceive,
  VirtioGpuResp,
} from '../virtgpu/protocol.js';
import { ContextError, DeviceError, type DeviceLog, errorMessage } from './errors.js';
import { type FdLedger, dupMemory, reopen } from './fds.js';
import { type ImageRequirements, PAGE_SIZE, formatName, imageRequirements } from './gralloc.js';
import type { GuestBacking } from './guest-memory.js';
import { CompositorSocket, OUTBOX_LIMIT, ReadPipe, WritePipe } from './io.js';

/** A virtio-gpu resource as a context sees it (the device owns it). */
export interface Resource {
  readonly id: number;
  readonly blobMem: number;
  readonly size: number;
  /** GUEST blobs: the guest memory behind it. */
  readonly backing: GuestBacking | null;
  /** HOST3D blobs: the memory file (owned by the resource), else -1. */
  fd: number;
  readonly fdWritable: boolean;
  /** Contexts it is attached to. */
  readonly contexts: Set<number>;
  /** Where RESOURCE_MAP_BLOB put it in the host-visible region, while mapped. */
  mappedAt: bigint | null;
}

/** What a context needs from its device. */
export interface ContextHost {
  readonly log: DeviceLog;
  readonly ledger: FdLedger;
  /** The compositor socket a Wayland channel connects to. */
  readonly waylandSocket: string;
  resource(id: number): Resource | undefined;
  /** A compositor connection that was backed up has caught up. */
  backlogDrained(): void;
}

/** A fenced command waiting on the channel ring: signal() returns its response. */
export interface RingFence {
  signal(): void;
  /** The transport is gone: release what the response holds without sending it. */
  drop(): void;
}

/** The memory a HOST3D blob gets from an item. */
export interface BlobMemory {
  readonly fd: number;
  readonly writable: boolean;
}

type Item =
  | { readonly kind: 'image'; readonly reqs: ImageRequirements }
  | {
      readonly kind: 'blob';
      readonly fd: number;
      readonly size: number;
      readonly writable: boolean;
    }
  | { readonly kind: 'write-pipe'; readonly pipe: WritePipe }
  | { readonly kind: 'read-pipe'; readonly pipe: ReadPipe };

/** The smallest rings INIT accepts: room for the reply, and for a RECEIVE with some data. */
export const MIN_QUERY_RING = CROSS_DOMAIN_IMAGE_REQUIREMENTS_SIZE;
export const MIN_CHANNEL_RING = 512;
/** Items one context may hold (image templates are never freed while it lives). */
export const MAX_ITEMS = 65536;
/** Most warnings one context logs; a guest stuck in a loop of errors must not flood the log. */
const MAX_WARNINGS = 50;

const COMMAND_NAMES = [
  '',
  'INIT',
  'GET_IMAGE_REQUIREMENTS',
  'POLL',
  'SEND',
  'RECEIVE',
  'READ',
  'WRITE',
];

/** Scratch space for one host→guest message; the event loop runs one context at a time. */
const scratch = Buffer.alloc(65536);
const scratchView = new DataView(scratch.buffer, scratch.byteOffset, scratch.byteLength);
const recvOut = new Int32Array(native.RECV_OUT_LENGTH);

export class CrossDomainContext {
  /** Resources attached with CTX_ATTACH_RESOURCE. */
  readonly attached = new Set<number>();
  private initialized = false;
  private queryRing = 0;
  private channelRing = 0;
  /** Set once an INIT asked for a channel (a context gets at most one). */
  private hasChannel = false;
  private socket: CompositorSocket | null = null;

  /** Bytes from the guest still waiting for the compositor to read them. */
  get backlog(): number {
    return this.socket?.queuedBytes ?? 0;
  }
  private readonly items = new Map<number, Item>();
  private nextItemId = 2;
  private readPipeId = CROSS_DOMAIN_PIPE_READ_START;
  private readonly readPipes = new Set<ReadPipe>();
  /** Write pipes still flushing after the guest hung up. */
  private readonly draining = new Set<WritePipe>();
  private readonly fences: RingFence[] = [];
  private disabled: string | null = null;
  private warnings = 0;
  private destroyed = false;

  constructor(
    readonly id: number,
    readonly label: string,
    private readonly host: ContextHost,
  ) {}

  // ---- SUBMIT_3D ------------------------------------------------------------------------------

  /**
   * Runs the commands in `buf` in order. On the first failure the rest is abandoned and the
   * reason is returned (the SUBMIT_3D is then answered ERR_UNSPEC); null when all succeeded.
   */
  submit(buf: Uint8Array): string | null {
    if (this.disabled !== null) {
      const reason = `the context is disabled (${this.disabled})`;
      this.note(reason);
      return reason;
    }
    const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    let pos = 0;
    try {
      while (pos < buf.length) {
        const left = buf.length - pos;
        if (left < CROSS_DOMAIN_HEADER_SIZE) {
          throw new ContextError(
            `${left} trailing bytes at offset ${pos}, too few for a command header`,
            true,
          );
        }
        const cmd = buf[pos];
        const size = view.getUint16(pos + 2, true);
        if (size < CROSS_DOMAIN_HEADER_SIZE) {
          throw new ContextError(
            `command ${commandName(cmd)} at offset ${pos} has cmd_size ${size}, less than its 8-byte header`,
            true,
          );
        }
        if (size > left) {
          throw new ContextError(
            `command ${commandName(cmd)} at offset ${pos} has cmd_size ${size}, past the end of the buffer (${left} bytes left)`,
            true,
          );
        }
        this.run(cmd, new DataView(buf.buffer, buf.byteOffset + pos, size), buf, pos, size);
        pos += size;
      }
    } catch (e) {
      const severe = e instanceof ContextError && e.severe;
      const reason = errorMessage(e);
      if (severe) this.disable(reason);
      else this.warn(reason);
      return reason;
    }
    return null;
  }

  private run(cmd: number, c: DataView, buf: Uint8Array, pos: number, size: number): void {
    switch (cmd) {
      case CrossDomainCmd.INIT:
        return this.init(c, size);
      case CrossDomainCmd.GET_IMAGE_REQUIREMENTS:
        return this.getImageRequirements(c, size);
      case CrossDomainCmd.POLL:
        return; // the ring-1 fence of the submission is what counts
      case CrossDomainCmd.SEND:
        return this.send(c, buf, pos, size);
      case CrossDomainCmd.WRITE:
        return this.write(c, buf, pos, size);
      case CrossDomainCmd.RECEIVE:
      case CrossDomainCmd.READ:
        throw new ContextError(`command ${commandName(cmd)} goes from host to guest only`, true);
      default:
        if (cmd >= 8 && cmd <= 13) {
          throw new ContextError(`command ${cmd} (a rutabaga 0.1.80 extension) is not supported`);
        }
        throw new ContextError(`unknown command ${cmd}`, true);
    }
  }

  private init(c: DataView, size: number): void {
    if (
      size !== CrossDomainInitSize.LEGACY &&
      size !== CrossDomainInitSize.V1 &&
      size !== CrossDomainInitSize.CURRENT
    ) {
      throw new ContextError(`INIT with cmd_size ${size}; its forms are 16, 20 and 36 bytes`, true);
    }
    const queryRing = c.getUint32(8, true);
    const channelRing = size === CrossDomainInitSize.LEGACY ? queryRing : c.getUint32(12, true);
    const channelType = c.getUint32(size === CrossDomainInitSize.LEGACY ? 12 : 16, true);
    if (this.hasChannel) {
      throw new ContextError('a second INIT: this context already has its channel');
    }
    if (channelType !== 0 && channelType !== CROSS_DOMAIN_CHANNEL_TYPE_WAYLAND) {
      throw new ContextError(
        `INIT asks for channel type ${channelType}; only Wayland (1) is offered`,
      );
    }
    this.ring(queryRing, MIN_QUERY_RING, 'query');
    if (channelType !== 0) this.ring(channelRing, MIN_CHANNEL_RING, 'channel');
    if (channelType !== 0) {
      if (!this.host.ledger.hasRoom()) throw new ContextError('the guest holds too many fds');
      let fd: number;
      try {
        fd = native.connectUnix(this.host.waylandSocket);
      } catch (e) {
        throw new ContextError(
          `cannot connect to the compositor at ${this.host.waylandSocket}: ${errorMessage(e)}`,
        );
      }
      this.host.ledger.take(fd);
      this.socket = new CompositorSocket(
        fd,
        this.host.ledger,
        () => this.onSourceReadable(null),
        (e) => this.note(`writing to the compositor failed: ${e.message}`),
        () => this.host.backlogDrained(),
      );
      this.hasChannel = true;
      if (this.host.log.verbose) this.info(`connected to the compositor (fd ${fd})`);
    }
    this.queryRing = queryRing;
    this.channelRing = channelRing;
    this.initialized = true;
    this.updatePolling();
  }

  private getImageRequirements(c: DataView, size: number): void {
    if (size < CROSS_DOMAIN_GET_IMAGE_REQUIREMENTS_SIZE) {
      throw new ContextError(`GET_IMAGE_REQUIREMENTS with cmd_size ${size}, less than 24`, true);
    }
    if (!this.initialized) throw new ContextError('GET_IMAGE_REQUIREMENTS before INIT');
    const width = c.getUint32(8, true);
    const height = c.getUint32(12, true);
    const format = c.getUint32(16, true);
    let reqs: ImageRequirements;
    try {
      reqs = imageRequirements(width, height, format);
    } catch (e) {
      throw new ContextError(`GET_IMAGE_REQUIREMENTS: ${errorMessage(e)}`);
    }
    const ring = this.ring(this.queryRing, MIN_QUERY_RING, 'query');
    const blobId = this.addItem({ kind: 'image', reqs });
    const r = scratch.subarray(0, CROSS_DOMAIN_IMAGE_REQUIREMENTS_SIZE).fill(0);
    for (let p = 0; p < 4; p++) {
      scratchView.setUint32(Reqs.STRIDES + 4 * p, reqs.strides[p], true);
      scratchView.setUint32(Reqs.OFFSETS + 4 * p, reqs.offsets[p], true);
    }
    scratchView.setBigUint64(Reqs.MODIFIER, 0n, true);
    scratchView.setBigUint64(Reqs.SIZE, BigInt(reqs.size), true);
    scratchView.setUint32(Reqs.BLOB_ID, blobId, true);
    scratchView.setUint32(Reqs.MAP_INFO, MapCache.CACHED, true);
    scratchView.setInt32(Reqs.MEMORY_IDX, -1, true);
    scratchView.setInt32(Reqs.PHYSICAL_DEVICE_IDX, -1, true);
    this.writeRing(ring, r.length, 'query');
    if (this.host.log.verbose) {
      this.info(
        `image ${width}x${height} ${formatName(format)}: blob id ${blobId}, ${reqs.size} bytes`,
      );
    }
  }

  private send(c: DataView, buf: Uint8Array, pos: number, size: number): void {
    if (size < CROSS_DOMAIN_SEND_RECEIVE_SIZE) {
      throw new ContextError(
        `SEND with cmd_size ${size}, less than ${CROSS_DOMAIN_SEND_RECEIVE_SIZE}`,
        true,
      );
    }
    const count = c.getUint32(SendReceive.NUM_IDENTIFIERS, true);
    const dataSize = c.getUint32(SendReceive.OPAQUE_DATA_SIZE, true);
    if (count > CROSS_DOMAIN_MAX_IDENTIFIERS) {
      throw new ContextError(
        `SEND with ${count} identifiers; at most ${CROSS_DOMAIN_MAX_IDENTIFIERS}`,
        true,
      );
    }
    if (dataSize > size - CROSS_DOMAIN_SEND_RECEIVE_SIZE) {
      throw new ContextError(
        `SEND opaque_data_size ${dataSize} runs past its cmd_size ${size}`,
        true,
      );
    }
    const socket = this.socket;
    if (!socket) {
      throw new ContextError(
        this.hasChannel
          ? 'SEND after the compositor closed the connection'
          : 'SEND without a channel (INIT with channel type 1 first)',
      );
    }
    if (count > 0 && dataSize === 0)
      throw new ContextError('SEND of identifiers without data to carry them');
    if (dataSize === 0) return;
    if (socket.queuedBytes > OUTBOX_LIMIT) {
      throw new ContextError(
        `the compositor is not reading (${socket.queuedBytes} bytes queued)`,
        true,
      );
    }
    const ledger = this.host.ledger;
    const fds: number[] = [];
    let readPipe: { id: number; fd: number } | null = null;
    try {
      for (let i = 0; i < count; i++) {
        const id = c.getUint32(SendReceive.IDENTIFIERS + 4 * i, true);
        const type = c.getUint32(SendReceive.IDENTIFIER_TYPES + 4 * i, true);
        if (type === CrossDomainId.VIRTGPU_BLOB) {
          const r = this.attachedResource(id);
          if (!r)
            throw new ContextError(`SEND of resource ${id}, which is not attached to this context`);
          if (r.fd < 0) {
            throw new ContextError(
              `SEND of resource ${id}, which has no host memory (guest blobs cannot be sent)`,
            );
          }
          if (!ledger.hasRoom()) throw new ContextError('the guest holds too many fds');
          fds.push(ledger.take(dupMemory(r.fd, r.fdWritable)));
        } else if (type === CrossDomainId.READ_PIPE) {
          if (readPipe)
            throw new ContextError(
              'SEND with more than one READ_PIPE (expected just one pipe pair)',
            );
          const allocated = this.allocReadPipeId();
          if (id !== allocated) {
            throw new ContextError(
              `SEND predicted read pipe id 0x${id.toString(16)}, but the host allocated 0x${allocated.toString(16)}`,
            );
          }
          if (!ledger.hasRoom(3)) throw new ContextError('the guest holds too many fds');
          const [r, w] = native.pipe();
          readPipe = { id, fd: ledger.take(r) };
          ledger.take(w);
          try {
            // The compositor's client gets a blocking write end, as from pipe(2) under crosvm.
            fds.push(ledger.take(reopen(w, 'write')));
          } finally {
            ledger.close(w);
          }
        } else {
          throw new ContextError(
            `SEND identifier ${id} has type ${type}; a guest sends only VIRTGPU_BLOB (1) and READ_PIPE (3)`,
          );
        }
      }
      socket.send(buf, pos + SendReceive.DATA, pos + SendReceive.DATA + dataSize, fds);
    } catch (e) {
      for (const fd of fds) ledger.close(fd);
      if (readPipe) ledger.close(readPipe.fd);
      if (e instanceof ContextError) throw e;
      throw new ContextError(`SEND: ${errorMessage(e)}`);
    }
    if (readPipe) {
      const pipe = new ReadPipe(readPipe.id, readPipe.fd, ledger, (p) => this.onSourceReadable(p));
      this.items.set(readPipe.id, { kind: 'read-pipe', pipe });
      this.readPipes.add(pipe);
      pipe.setReading(this.fences.length > 0);
    }
  }

  private write(c: DataView, buf: Uint8Array, pos: number, size: number): void {
    if (size < CROSS_DOMAIN_READ_WRITE_SIZE) {
      throw new ContextError(
        `WRITE with cmd_size ${size}, less than ${CROSS_DOMAIN_READ_WRITE_SIZE}`,
        true,
      );
    }
    const id = c.getUint32(ReadWrite.IDENTIFIER, true);
    const hangUp = c.getUint32(ReadWrite.HANG_UP, true);
    const dataSize = c.getUint32(ReadWrite.OPAQUE_DATA_SIZE, true);
    if (dataSize > size - CROSS_DOMAIN_READ_WRITE_SIZE) {
      throw new ContextError(
        `WRITE opaque_data_size ${dataSize} runs past its cmd_size ${size}`,
        true,
      );
    }
    const item = this.items.get(id);
    if (!item || item.kind !== 'write-pipe') {
      throw new ContextError(
        `WRITE to identifier 0x${id.toString(16)}, which is not a write pipe of this context`,
      );
    }
    item.pipe.write(buf, pos + ReadWrite.DATA, pos + ReadWrite.DATA + dataSize);
    if (hangUp !== 0) {
      this.items.delete(id);
      if (!item.pipe.closed) {
        this.draining.add(item.pipe);
        item.pipe.hangUp();
      }
    }
  }

  // ---- items and blobs ------------------------------------------------------------------------

  private addItem(item: Item): number {
    const id = this.allocItemId();
    this.items.set(id, item);
    return id;
  }

  /** The next item id (one counter from 2), once the table has room. */
  private allocItemId(): number {
    if (this.items.size >= MAX_ITEMS)
      throw new ContextError(`the item table is full (${MAX_ITEMS} items)`);
    if (this.nextItemId >= CROSS_DOMAIN_PIPE_READ_START) throw new ContextError('out of item ids');
    return this.nextItemId++;
  }

  /** The host's read-pipe id rule: max(++id, 0x80000000), starting from 0x80000000. */
  private allocReadPipeId(): number {
    this.readPipeId = Math.max((this.readPipeId + 1) >>> 0, CROSS_DOMAIN_PIPE_READ_START);
    return this.readPipeId;
  }

  /**
   * Memory for a HOST3D blob created from item `blobId`: a new memfd for an image-requirements
   * item (whose size must match), or the received memory fd of a blob item (used once).
   * Throws DeviceError.
   */
  createBlob(blobId: bigint, size: bigint): BlobMemory {
    if (this.disabled !== null) {
      throw new DeviceError(`context ${this.id} is disabled (${this.disabled})`);
    }
    const item = blobId <= 0xffff_ffffn ? this.items.get(Number(blobId)) : undefined;
    if (!item) {
      throw new DeviceError(
        `HOST3D blob: blob id ${blobId} is not an item of context ${this.id}`,
        VirtioGpuResp.ERR_INVALID_PARAMETER,
      );
    }
    if (item.kind === 'image') {
      if (BigInt(item.reqs.size) !== size) {
        throw new DeviceError(
          `HOST3D blob: size ${size} does not match the ${item.reqs.size} bytes of blob id ${blobId}`,
          VirtioGpuResp.ERR_INVALID_PARAMETER,
        );
      }
      if (!this.host.ledger.hasRoom()) {
        throw new DeviceError(
          'HOST3D blob: the guest holds too many fds',
          VirtioGpuResp.ERR_OUT_OF_MEMORY,
        );
      }
      let fd: number;
      try {
        fd = native.memfdCreate('tswl-host-blob', item.reqs.size);
      } catch (e) {
        throw new DeviceError(`HOST3D blob: ${errorMessage(e)}`, VirtioGpuResp.ERR_OUT_OF_MEMORY);
      }
      return { fd: this.host.ledger.take(fd), writable: true };
    }
    if (item.kind === 'blob') {
      const limit = Math.ceil(item.size / PAGE_SIZE) * PAGE_SIZE;
      if (size === 0n || size > BigInt(Math.max(limit, PAGE_SIZE))) {
        throw new DeviceError(
          `HOST3D blob: size ${size} does not fit the ${item.size}-byte file of blob id ${blobId}`,
          VirtioGpuResp.ERR_INVALID_PARAMETER,
        );
      }
      this.items.delete(Number(blobId));
      return { fd: item.fd, writable: item.writable };
    }
    throw new DeviceError(
      `HOST3D blob: identifier ${blobId} is a ${item.kind}, not a blob`,
      VirtioGpuResp.ERR_INVALID_PARAMETER,
    );
  }

  // ---- rings ----------------------------------------------------------------------------------

  private attachedResource(id: number): Resource | undefined {
    return this.attached.has(id) ? this.host.resource(id) : undefined;
  }

  /** A ring's backing, checked: attached, guest memory, first entry at least `min` bytes. */
  private ring(id: number, min: number, which: string): GuestBacking {
    const r = this.attachedResource(id);
    if (!r)
      throw new ContextError(`the ${which} ring (resource ${id}) is not attached to this context`);
    if (!r.backing || r.backing.entryLengths.length === 0) {
      throw new ContextError(`the ${which} ring (resource ${id}) is not guest memory`);
    }
    if (r.backing.entryLengths[0] < min) {
      throw new ContextError(
        `the ${which} ring (resource ${id}) has ${r.backing.entryLengths[0]} bytes in its first entry; it needs ${min}`,
      );
    }
    return r.backing;
  }

  /** Writes scratch[0, length) at offset 0 of the ring's first entry. */
  private writeRing(ring: GuestBacking, length: number, which: string): void {
    try {
      ring.write(0, 0, scratch, 0, length);
    } catch (e) {
      throw new ContextError(`cannot write the ${which} ring: ${errorMessage(e)}`, true);
    }
  }

  // ---- fences and host→guest messages ---------------------------------------------------------

  /** A fence on the channel ring: signalled once one message has been written for it. */
  addRingFence(fence: RingFence): void {
    if (this.disabled !== null) {
      this.writeEndOfFile();
      fence.signal();
      return;
    }
    this.fences.push(fence);
    if (this.fences.length === 1) this.updatePolling();
  }

  private updatePolling(): void {
    const on = this.fences.length > 0 && this.disabled === null && !this.destroyed;
    this.socket?.setReading(on);
    for (const p of this.readPipes) p.setReading(on);
  }

  /** A source is readable: turn one message from it into the channel ring, for one fence. */
  private onSourceReadable(pipe: ReadPipe | null): void {
    if (this.fences.length === 0 || this.disabled !== null || this.destroyed) return;
    let delivered: boolean;
    try {
      delivered = pipe ? this.readFromPipe(pipe) : this.receive();
    } catch (e) {
      this.disable(errorMessage(e));
      return;
    }
    if (!delivered) return;
    const fence = this.fences.shift()!;
    if (this.fences.length === 0) this.updatePolling();
    fence.signal();
  }

  /** RECEIVE: one recvmsg of at most 3744 bytes and 28 fds from the compositor. */
  private receive(): boolean {
    const socket = this.socket;
    if (!socket) return false;
    const ring = this.ring(this.channelRing, MIN_CHANNEL_RING, 'channel');
    const room = Math.min(
      CROSS_DOMAIN_MAX_SEND_RECV_SIZE,
      ring.entryLengths[0] - CROSS_DOMAIN_SEND_RECEIVE_SIZE,
    );
    let n: number;
    try {
      n = native.recvmsg(socket.fd, scratch, SendReceive.DATA, SendReceive.DATA + room, recvOut);
    } catch (e) {
      this.note(`reading from the compositor failed: ${errorMessage(e)}`);
      n = 0;
      recvOut[0] = 0;
    }
    const nfds = recvOut[0];
    if (n < 0 && nfds === 0) {
      if (!socket.pollFailed) return false;
      n = 0;
    }
    if (n <= 0 && nfds === 0) {
      // The compositor hung up: one empty RECEIVE, then the socket is no longer watched.
      this.socket = null;
      socket.close();
      if (this.host.log.verbose) this.info('the compositor closed the connection');
      scratch.fill(0, 0, CROSS_DOMAIN_SEND_RECEIVE_SIZE);
      scratch[0] = CrossDomainCmd.RECEIVE;
      this.writeRing(ring, CROSS_DOMAIN_SEND_RECEIVE_SIZE, 'channel');
      return true;
    }
    if (n < 0) n = 0;
    if (recvOut[1]) this.note('the compositor sent more than 28 fds at once; the rest were lost');
    // Header: cmd RECEIVE, cmd_size left 0 as crosvm does.
    scratch.fill(0, 0, CROSS_DOMAIN_SEND_RECEIVE_SIZE);
    scratch[0] = CrossDomainCmd.RECEIVE;
    let count = 0;
    for (let i = 0; i < nfds; i++) {
      const exported = this.exportFd(recvOut[2 + i]);
      if (!exported) continue;
      scratchView.setUint32(SendReceive.IDENTIFIERS + 4 * count, exported.id, true);
      scratchView.setUint32(SendReceive.IDENTIFIER_TYPES + 4 * count, exported.type, true);
      scratchView.setUint32(SendReceive.IDENTIFIER_SIZES + 4 * count, exported.size, true);
      count++;
    }
    scratchView.setUint32(SendReceive.NUM_IDENTIFIERS, count, true);
    scratchView.setUint32(SendReceive.OPAQUE_DATA_SIZE, n, true);
    this.writeRing(ring, CROSS_DOMAIN_SEND_RECEIVE_SIZE + n, 'channel');
    return true;
  }

  /**
   * Makes a received fd an item the guest can name: memory → VIRTGPU_BLOB with its size, the
   * write end of a pipe → WRITE_PIPE. Anything else is closed and logged (the message goes on
   * without it); so is an fd over this guest's budget.
   */
  private exportFd(fd: number): { id: number; type: number; size: number } | null {
    const ledger = this.host.ledger;
    let kind: native.FdKind;
    try {
      kind = native.fdKind(fd);
    } catch (e) {
      this.note(`an fd from the compositor cannot be inspected (${errorMessage(e)}); dropped it`);
      native.close(fd);
      return null;
    }
    if (!ledger.hasRoom() || this.items.size >= MAX_ITEMS) {
      this.note("an fd from the compositor is over this guest's limit; dropped it");
      native.close(fd);
      return null;
    }
    if (kind.kind === 'memory') {
      if (kind.size > 0xffff_ffff) {
        this.note(
          `a ${kind.size}-byte memory fd from the compositor is too large to pass; dropped it`,
        );
        native.close(fd);
        return null;
      }
      ledger.take(fd);
      const id = this.addItem({ kind: 'blob', fd, size: kind.size, writable: kind.writable });
      return { id, type: CrossDomainId.VIRTGPU_BLOB, size: kind.size };
    }
    if (kind.kind === 'pipe-write') {
      let own: number;
      try {
        // Our own open of the pipe, nonblocking, so a WRITE never stalls the host.
        own = reopen(fd, 'write', true);
      } catch (e) {
        this.note(
          `a write pipe from the compositor cannot be reopened (${errorMessage(e)}); dropped it`,
        );
        return null;
      } finally {
        native.close(fd);
      }
      ledger.take(own);
      const id = this.allocItemId();
      const pipe = new WritePipe(
        id,
        own,
        ledger,
        (m) => this.note(m),
        (p) => this.draining.delete(p),
      );
      this.items.set(id, { kind: 'write-pipe', pipe });
      return { id, type: CrossDomainId.WRITE_PIPE, size: 0 };
    }
    this.note(`the compositor sent a ${kind.kind} fd, which cannot pass to the guest; closed it`);
    native.close(fd);
    return null;
  }

  /** READ: what the pipe has, up to the ring's room; hang_up (and the pipe closes) at its end. */
  private readFromPipe(pipe: ReadPipe): boolean {
    const ring = this.ring(this.channelRing, MIN_CHANNEL_RING, 'channel');
    const room = Math.min(ring.entryLengths[0], scratch.length) - CROSS_DOMAIN_READ_WRITE_SIZE;
    let n: number;
    try {
      n = native.readFd(pipe.fd, scratch, ReadWrite.DATA, ReadWrite.DATA + room);
    } catch (e) {
      this.note(`read pipe 0x${pipe.id.toString(16)}: ${errorMessage(e)}`);
      n = 0;
    }
    if (n < 0) return false;
    scratch.fill(0, 0, CROSS_DOMAIN_READ_WRITE_SIZE);
    scratch[0] = CrossDomainCmd.READ;
    scratchView.setUint32(ReadWrite.IDENTIFIER, pipe.id, true);
    scratchView.setUint32(ReadWrite.HANG_UP, n === 0 ? 1 : 0, true);
    scratchView.setUint32(ReadWrite.OPAQUE_DATA_SIZE, n, true);
    if (n === 0) {
      this.items.delete(pipe.id);
      this.readPipes.delete(pipe);
      pipe.close();
    }
    this.writeRing(ring, CROSS_DOMAIN_READ_WRITE_SIZE + n, 'channel');
    return true;
  }

  /** Best effort: an empty RECEIVE (the end-of-file convention) in the channel ring. */
  private writeEndOfFile(): void {
    if (!this.initialized) return;
    try {
      const ring = this.ring(this.channelRing, CROSS_DOMAIN_SEND_RECEIVE_SIZE, 'channel');
      scratch.fill(0, 0, CROSS_DOMAIN_SEND_RECEIVE_SIZE);
      scratch[0] = CrossDomainCmd.RECEIVE;
      ring.write(0, 0, scratch, 0, CROSS_DOMAIN_SEND_RECEIVE_SIZE);
    } catch {
      // no ring to write to: the fence still signals
    }
  }

  // ---- failure and teardown -------------------------------------------------------------------

  /**
   * Disables the context for good: its compositor connection, pipes and items go; every
   * ring-1 fence (waiting or later) is answered with an empty RECEIVE, the end-of-file message,
   * so the guest's poll never hangs.
   */
  disable(reason: string): void {
    if (this.disabled !== null) return;
    this.disabled = reason;
    this.host.log.warn(`${this.label}: ${reason}; the context is disabled`);
    this.releaseIo();
    for (const fence of this.fences.splice(0)) {
      this.writeEndOfFile();
      fence.signal();
    }
  }

  /**
   * CTX_DESTROY (signalPending: the waiting fenced commands are answered) or the guest went
   * away (they are dropped). Closes every fd the context holds.
   */
  destroy(signalPending: boolean): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.releaseIo();
    this.attached.clear();
    for (const fence of this.fences.splice(0)) {
      if (signalPending) fence.signal();
      else fence.drop();
    }
  }

  private releaseIo(): void {
    this.socket?.close();
    this.socket = null;
    for (const item of this.items.values()) {
      if (item.kind === 'blob') this.host.ledger.close(item.fd);
      else if (item.kind === 'write-pipe') item.pipe.close();
      else if (item.kind === 'read-pipe') item.pipe.close();
    }
    this.items.clear();
    this.readPipes.clear();
    for (const p of [...this.draining]) p.close();
    this.draining.clear();
  }

  // ---- logging --------------------------------------------------------------------------------

  private info(message: string): void {
    this.host.log.info(`${this.label}: ${message}`);
  }

  /** A failed command: a warning, until this context has had its share of them. */
  private warn(message: string): void {
    this.warnings++;
    if (this.warnings <= MAX_WARNINGS) this.host.log.warn(`${this.label}: ${message}`);
    if (this.warnings === MAX_WARNINGS) {
      this.host.log.warn(`${this.label}: further errors of this context are logged with -v only`);
    } else if (this.warnings > MAX_WARNINGS && this.host.log.verbose) {
      this.info(message);
    }
  }

  /** Something the guest did not cause (compositor side): a warning under the same cap. */
  private note(message: string): void {
    this.warn(message);
  }
}

function commandName(cmd: number): string {
  return COMMAND_NAMES[cmd] ? `${COMMAND_NAMES[cmd]} (${cmd})` : String(cmd);
}

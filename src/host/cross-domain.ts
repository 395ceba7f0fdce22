// The cross-domain context type (capset 5) as crosvm's rutabaga implements it: the command
// decoder for SUBMIT_3D buffers, the item table, the query and channel rings (mailboxes the host
// writes at offset 0 of their first backing entry), and one host→guest message per ring-1 fence.
// Unlike crosvm, a Wayland channel is not handed to the compositor unread: its bytes go through
// tswl-host's relay (the same code as tswl-proxy's, with the host's policy), which owns the
// compositor connection; the channel (channel.ts) is the relay's client side.
//
// The guest is untrusted: every field is checked before use; a bad command fails this context
// only (ContextError), and a severe one disables it for good.

import * as native from '../native/index.js';
import type { EndpointConnector, Relay } from '../relay/relay.js';
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
import type { GuestLimits } from './budget.js';
import { GuestChannel } from './channel.js';
import { ContextError, DeviceError, type DeviceLog, errorMessage } from './errors.js';
import { type FdLedger, dupMemory, reopen } from './fds.js';
import { type ImageRequirements, PAGE_SIZE, formatName, imageRequirements } from './gralloc.js';
import type { GuestBacking } from './guest-memory.js';
import { ReadPipe, WritePipe } from './io.js';

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
  /** Host memory counted against the guest's blob budget, and mem entries against its limit. */
  blobBytes: number;
  memEntries: number;
  /** Contexts it is attached to. */
  readonly contexts: Set<number>;
  /** Where RESOURCE_MAP_BLOB put it in the host-visible region, while mapped. */
  mappedAt: bigint | null;
}

/** What a context needs from its device. */
export interface ContextHost {
  readonly log: DeviceLog;
  readonly ledger: FdLedger;
  readonly limits: GuestLimits;
  /** Counts shared by all contexts of the guest. */
  readonly usage: { items: number; blobBytes: number };
  resource(id: number): Resource | undefined;
  /**
   * Starts the relay of one Wayland channel: its compositor connection and the host's policy.
   * Throws when the compositor cannot be reached.
   */
  openRelay(channel: EndpointConnector, label: string): Relay;
  /** Guest bytes queued in all its contexts (the hard limit is limits.queuedBytes). */
  queuedBytes(): number;
  /** Something the transport paused for has drained: it may take the guest's commands again. */
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
  /** Bytes counted against the guest's blob budget (released with the resource). */
  readonly bytes: number;
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

let nextChannelLabel = 1;

export class CrossDomainContext {
  /** Resources attached with CTX_ATTACH_RESOURCE. */
  readonly attached = new Set<number>();
  private initialized = false;
  private queryRing = 0;
  private channelRing = 0;
  /** The Wayland channel, once an INIT asked for one (a context gets at most one). */
  private channel: GuestChannel | null = null;
  private relay: Relay | null = null;
  /** The empty RECEIVE that ends the channel went out. */
  private endOfFileSent = false;
  private readonly items = new Map<number, Item>();
  /** Image templates by width, height and format: a repeated query reuses its item. */
  private readonly images = new Map<string, number>();
  private nextItemId = 2;
  private readPipeId = CROSS_DOMAIN_PIPE_READ_START;
  private readonly readPipes = new Set<ReadPipe>();
  /** Every open write pipe, items and those still flushing after the guest hung up. */
  private readonly writePipes = new Set<WritePipe>();
  private readonly fences: RingFence[] = [];
  private disabled: string | null = null;
  private warnings = 0;
  private destroyed = false;

  constructor(
    readonly id: number,
    readonly label: string,
    private readonly host: ContextHost,
  ) {}

  /**
   * Guest bytes waiting: what the relay has not taken because the compositor is behind, and what
   * clipboard readers have not read. The transport stops taking commands while it is large.
   */
  get backlog(): number {
    let bytes = this.channel?.unprocessed ?? 0;
    for (const p of this.writePipes) bytes += p.queued;
    return bytes;
  }

  /** Every byte queued for or from this guest in this context, for the guest's hard limit. */
  get queuedBytes(): number {
    const relay = this.relay;
    let bytes = this.backlog + (this.channel?.out.pending ?? 0);
    if (relay && !relay.host.closed) bytes += relay.host.out.pending;
    return bytes;
  }

  /** fds in flight through the relay (not in the ledger): its queues and its compositor socket. */
  get fdsInFlight(): number {
    const relay = this.relay;
    let n = this.channel?.heldFds ?? 0;
    if (relay && !relay.host.closed) n += 1 + relay.host.inFds.length + relay.host.out.fds.length;
    return n;
  }

  /** Pending fenced commands, for the guest's fence budget. */
  get pendingFences(): number {
    return this.fences.length;
  }

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
    if (this.channel) {
      throw new ContextError('a second INIT: this context already has its channel');
    }
    if (channelType !== 0 && channelType !== CROSS_DOMAIN_CHANNEL_TYPE_WAYLAND) {
      throw new ContextError(
        `INIT asks for channel type ${channelType}; only Wayland (1) is offered`,
      );
    }
    this.ring(queryRing, MIN_QUERY_RING, 'query');
    if (channelType !== 0) {
      this.ring(channelRing, MIN_CHANNEL_RING, 'channel');
      if (!this.host.ledger.hasRoom()) throw new ContextError('the guest holds too many fds');
      const channel = new GuestChannel(
        nextChannelLabel++,
        () => this.deliver(),
        () => this.host.backlogDrained(),
      );
      try {
        this.relay = this.host.openRelay((handler) => {
          channel.handler = handler;
          return channel;
        }, this.label);
      } catch (e) {
        throw new ContextError(`cannot connect to the compositor: ${errorMessage(e)}`);
      }
      this.channel = channel;
      if (this.host.log.verbose) this.info('connected to the compositor');
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
    const key = `${width}x${height}:${format}`;
    let blobId = this.images.get(key);
    let reqs: ImageRequirements;
    if (blobId !== undefined) {
      reqs = (this.items.get(blobId) as { reqs: ImageRequirements }).reqs;
    } else {
      try {
        reqs = imageRequirements(width, height, format);
      } catch (e) {
        throw new ContextError(`GET_IMAGE_REQUIREMENTS: ${errorMessage(e)}`);
      }
      blobId = this.addItem({ kind: 'image', reqs });
      this.images.set(key, blobId);
    }
    const ring = this.ring(this.queryRing, MIN_QUERY_RING, 'query');
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
    const channel = this.channel;
    if (!channel) throw new ContextError('SEND without a channel (INIT with channel type 1 first)');
    if (channel.closed) throw new ContextError('SEND after the channel was closed');
    if (count > 0 && dataSize === 0)
      throw new ContextError('SEND of identifiers without data to carry them');
    if (dataSize === 0) return;
    const queued = this.host.queuedBytes();
    if (queued + dataSize > this.host.limits.queuedBytes) {
      throw new ContextError(
        `the guest has ${queued} bytes queued, its limit is ${this.host.limits.queuedBytes}`,
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
          if (!ledger.hasRoom(fds.length + 1))
            throw new ContextError('the guest holds too many fds');
          fds.push(dupMemory(r.fd, r.fdWritable));
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
          if (!ledger.hasRoom(fds.length + 3))
            throw new ContextError('the guest holds too many fds');
          if (this.host.usage.items >= this.host.limits.items)
            throw new ContextError(`the guest has ${this.host.usage.items} items, its limit`);
          const [r, w] = native.pipe();
          readPipe = { id, fd: ledger.take(r) };
          try {
            // The compositor's client gets a blocking write end, as from pipe(2) under crosvm.
            fds.push(reopen(w, 'write'));
          } finally {
            native.close(w);
          }
        } else {
          throw new ContextError(
            `SEND identifier ${id} has type ${type}; a guest sends only VIRTGPU_BLOB (1) and READ_PIPE (3)`,
          );
        }
      }
    } catch (e) {
      for (const fd of fds) native.close(fd);
      if (readPipe) ledger.close(readPipe.fd);
      if (e instanceof ContextError) throw e;
      throw new ContextError(`SEND: ${errorMessage(e)}`);
    }
    if (readPipe) {
      const pipe = new ReadPipe(readPipe.id, readPipe.fd, ledger, (p) => this.onPipeReadable(p));
      this.items.set(readPipe.id, { kind: 'read-pipe', pipe });
      this.host.usage.items++;
      this.readPipes.add(pipe);
      pipe.setReading(this.fences.length > 0);
    }
    // the relay reads the bytes now (or once the compositor catches up) and owns the fds
    channel.push(buf, pos + SendReceive.DATA, pos + SendReceive.DATA + dataSize, fds);
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
    const queued = this.host.queuedBytes();
    if (queued + dataSize > this.host.limits.queuedBytes) {
      throw new ContextError(
        `the guest has ${queued} bytes queued, its limit is ${this.host.limits.queuedBytes}`,
        true,
      );
    }
    item.pipe.write(buf, pos + ReadWrite.DATA, pos + ReadWrite.DATA + dataSize);
    if (hangUp !== 0) {
      this.removeItem(id);
      if (!item.pipe.closed) item.pipe.hangUp();
    }
  }

  // ---- items and blobs ------------------------------------------------------------------------

  private addItem(item: Item): number {
    const id = this.allocItemId();
    this.items.set(id, item);
    this.host.usage.items++;
    return id;
  }

  private removeItem(id: number): void {
    if (this.items.delete(id)) this.host.usage.items--;
  }

  /** The next item id (one counter from 2), once the guest's budget has room. */
  private allocItemId(): number {
    const usage = this.host.usage;
    if (usage.items >= this.host.limits.items)
      throw new ContextError(`the guest has ${usage.items} items, its limit`);
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
      const usage = this.host.usage;
      if (usage.blobBytes + item.reqs.size > this.host.limits.blobBytes) {
        throw new DeviceError(
          `HOST3D blob: the guest has ${usage.blobBytes} bytes of host memory, ${item.reqs.size} more is over its limit of ${this.host.limits.blobBytes}`,
          VirtioGpuResp.ERR_OUT_OF_MEMORY,
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
      usage.blobBytes += item.reqs.size;
      return { fd: this.host.ledger.take(fd), writable: true, bytes: item.reqs.size };
    }
    if (item.kind === 'blob') {
      const limit = Math.ceil(item.size / PAGE_SIZE) * PAGE_SIZE;
      if (size === 0n || size > BigInt(Math.max(limit, PAGE_SIZE))) {
        throw new DeviceError(
          `HOST3D blob: size ${size} does not fit the ${item.size}-byte file of blob id ${blobId}`,
          VirtioGpuResp.ERR_INVALID_PARAMETER,
        );
      }
      this.removeItem(Number(blobId));
      return { fd: item.fd, writable: item.writable, bytes: 0 };
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
    this.deliver();
    if (this.fences.length > 0) this.updatePolling();
  }

  /** Read pipes are watched while a fence waits for a message. */
  private updatePolling(): void {
    const on = this.fences.length > 0 && this.disabled === null && !this.destroyed;
    for (const p of this.readPipes) p.setReading(on);
  }

  /** Signals the oldest waiting fence: one message was written for it. */
  private signalFence(): void {
    const fence = this.fences.shift()!;
    if (this.fences.length === 0) this.updatePolling();
    fence.signal();
  }

  /**
   * Gives waiting fences what the relay has for the guest: RECEIVEs while it has output, then,
   * once the channel is closed and drained, the one empty RECEIVE that means end of file.
   */
  private deliver(): void {
    const channel = this.channel;
    if (!channel || this.disabled !== null || this.destroyed) return;
    try {
      while (this.fences.length > 0) {
        if (channel.hasOutput) this.receive(channel);
        else if (channel.closed && !this.endOfFileSent) {
          this.endOfFileSent = true;
          if (this.host.log.verbose) this.info('the channel is closed');
          this.writeEndOfFile();
        } else return;
        this.signalFence();
      }
    } catch (e) {
      this.disable(errorMessage(e));
    }
  }

  /**
   * One RECEIVE: at most 3744 bytes (or what the ring holds) and 28 identifiers of the relay's
   * output. fds go no later than the bytes of their messages: when some are left for the next
   * RECEIVE, this one carries too few bytes to finish a message.
   */
  private receive(channel: GuestChannel): void {
    const ring = this.ring(this.channelRing, MIN_CHANNEL_RING, 'channel');
    const room = Math.min(
      CROSS_DOMAIN_MAX_SEND_RECV_SIZE,
      ring.entryLengths[0] - CROSS_DOMAIN_SEND_RECEIVE_SIZE,
    );
    const out = channel.out;
    // Header: cmd RECEIVE, cmd_size left 0 as crosvm does.
    scratch.fill(0, 0, CROSS_DOMAIN_SEND_RECEIVE_SIZE);
    scratch[0] = CrossDomainCmd.RECEIVE;
    let taken = 0;
    let count = 0;
    while (taken < out.fds.length && count < CROSS_DOMAIN_MAX_IDENTIFIERS) {
      const exported = this.exportFd(out.fds[taken++]);
      if (!exported) continue;
      scratchView.setUint32(SendReceive.IDENTIFIERS + 4 * count, exported.id, true);
      scratchView.setUint32(SendReceive.IDENTIFIER_TYPES + 4 * count, exported.type, true);
      scratchView.setUint32(SendReceive.IDENTIFIER_SIZES + 4 * count, exported.size, true);
      count++;
    }
    out.fds.splice(0, taken);
    let n = Math.min(out.pending, room);
    if (out.fds.length > 0) n = Math.min(n, 4);
    out.buf.copy(scratch, SendReceive.DATA, out.head, out.head + n);
    const relieved = out.sent(n);
    scratchView.setUint32(SendReceive.NUM_IDENTIFIERS, count, true);
    scratchView.setUint32(SendReceive.OPAQUE_DATA_SIZE, n, true);
    this.writeRing(ring, CROSS_DOMAIN_SEND_RECEIVE_SIZE + n, 'channel');
    if (relieved) queueMicrotask(() => channel.handler?.onDrain?.());
  }

  /**
   * Makes an fd from the compositor an item the guest can name: memory → VIRTGPU_BLOB with its
   * size, the write end of a pipe → WRITE_PIPE. Anything else is closed and logged (the message
   * goes on without it); so is an fd over this guest's budget. The fd is consumed.
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
    if (!ledger.hasRoom() || this.host.usage.items >= this.host.limits.items) {
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
        (p) => this.writePipes.delete(p),
        () => this.host.backlogDrained(),
      );
      this.items.set(id, { kind: 'write-pipe', pipe });
      this.writePipes.add(pipe);
      this.host.usage.items++;
      return { id, type: CrossDomainId.WRITE_PIPE, size: 0 };
    }
    this.note(`the compositor sent a ${kind.kind} fd, which cannot pass to the guest; closed it`);
    native.close(fd);
    return null;
  }

  /** A read pipe has data (or hung up): one READ for the oldest waiting fence. */
  private onPipeReadable(pipe: ReadPipe): void {
    if (this.fences.length === 0 || this.disabled !== null || this.destroyed) return;
    let delivered: boolean;
    try {
      delivered = this.readFromPipe(pipe);
    } catch (e) {
      this.disable(errorMessage(e));
      return;
    }
    if (delivered) this.signalFence();
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
      this.removeItem(pipe.id);
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
    const channel = this.channel;
    channel?.discard((fd) => native.close(fd));
    this.relay?.close();
    this.relay = null;
    for (const item of this.items.values()) {
      if (item.kind === 'blob') this.host.ledger.close(item.fd);
      else if (item.kind === 'write-pipe') item.pipe.close();
      else if (item.kind === 'read-pipe') item.pipe.close();
    }
    this.host.usage.items -= this.items.size;
    this.items.clear();
    this.images.clear();
    this.readPipes.clear();
    for (const p of [...this.writePipes]) p.close();
    this.writePipes.clear();
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

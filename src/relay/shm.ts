// Shadowed wl_shm: when the host cannot see the client's memory (across a VM boundary), client
// pools stay in the proxy. They are mapped lazily, on the first commit that needs their pixels;
// surface.ts copies the damaged parts of each committed buffer into host memory (buffer.ts).
import type {
  WlShmEventHandlers,
  WlShmPoolRequestHandlers,
  WlShmRequestHandlers,
} from '../generated/wayland.js';
import {
  WlShmError,
  WlShmFormat,
  dispatchWlShmEvent,
  dispatchWlShmPoolRequest,
  dispatchWlShmRequest,
  writeWlDisplayEventDeleteId,
} from '../generated/wayland.js';
import * as native from '../native/index.js';
import { closeQuietly } from '../wire/fd-queue.js';
import { DisplayError, ProtocolError } from './errors.js';
import { WlObject } from './objects.js';
import type { HookContext, InterfaceHooks, Relay } from './relay.js';

const DISPLAY_ID = 1;

/** Host memory for one shadow buffer. */
export interface ShadowMemory {
  /** The proxy's mapping: at least the size asked for. */
  readonly bytes: Buffer;
  /** A new fd for this memory, to send in the host's wl_shm.create_pool; the caller owns it. */
  exportFd(): number;
  /** Unmaps and releases the memory (once the host requests queued so far have gone out). */
  free(): void;
}

/** Where one client's shadow buffers come from: host blobs through its cross-domain context, or memfds. */
export interface ShadowAllocator {
  allocate(size: number): ShadowMemory;
}

/** Gives the allocator for a relay, or null to relay that client's wl_shm unchanged. */
export type ShadowAllocatorSource = (relay: Relay) => ShadowAllocator | null;

/** Something a relay's shadow state must release when the client goes. */
export interface Disposable {
  dispose(): void;
}

const fourcc = (s: string): number =>
  (s.charCodeAt(0) | (s.charCodeAt(1) << 8) | (s.charCodeAt(2) << 16) | (s.charCodeAt(3) << 24)) >>>
  0;

/** Bytes per pixel of the single-plane wl_shm formats; 0 for the rest (YUV, planar, packed odd). */
const BYTES_PER_PIXEL = new Map<number, number>([
  [WlShmFormat.argb8888, 4],
  [WlShmFormat.xrgb8888, 4],
]);
for (const [bpp, codes] of [
  [1, ['C8  ', 'R8  ', 'RGB8', 'BGR8']],
  [
    2,
    [
      ...['XR12', 'XB12', 'RX12', 'BX12', 'AR12', 'AB12', 'RA12', 'BA12'],
      ...['XR15', 'XB15', 'RX15', 'BX15', 'AR15', 'AB15', 'RA15', 'BA15'],
      ...['RG16', 'BG16', 'R16 ', 'RG88', 'GR88'],
    ],
  ],
  [3, ['RG24', 'BG24']],
  [
    4,
    [
      ...['XB24', 'RX24', 'BX24', 'AB24', 'RA24', 'BA24'],
      ...['XR30', 'XB30', 'RX30', 'BX30', 'AR30', 'AB30', 'RA30', 'BA30'],
      ...['RG32', 'GR32'],
    ],
  ],
  [8, ['XR4H', 'XB4H', 'AR4H', 'AB4H', 'XR48', 'XB48', 'AR48', 'AB48']],
] as const) {
  for (const code of codes) BYTES_PER_PIXEL.set(fourcc(code), bpp);
}

/** Bytes per pixel of a wl_shm format, 0 when it is not a single packed plane. */
export function bytesPerPixel(format: number): number {
  return BYTES_PER_PIXEL.get(format >>> 0) ?? 0;
}

/**
 * The planes after the first of multi-planar YUV formats, laid out as weston reads them from a
 * wl_shm buffer: one after the other, each `stride / hsub × bytes` wide and `height / vsub` rows
 * tall, `bytes` being its sample size relative to the first plane's (2 for interleaved chroma).
 */
const EXTRA_PLANES = new Map<number, readonly (readonly [number, number, number])[]>();
for (const [codes, planes] of [
  [['NV12', 'NV21', 'P010', 'P012', 'P016'], [[2, 2, 2]]],
  [['NV16', 'NV61'], [[2, 1, 2]]],
  [['NV24', 'NV42'], [[1, 1, 2]]],
  [
    ['YUV9', 'YVU9'],
    [
      [4, 4, 1],
      [4, 4, 1],
    ],
  ],
  [
    ['YU11', 'YV11'],
    [
      [4, 1, 1],
      [4, 1, 1],
    ],
  ],
  [
    ['YU12', 'YV12'],
    [
      [2, 2, 1],
      [2, 2, 1],
    ],
  ],
  [
    ['YU16', 'YV16'],
    [
      [2, 1, 1],
      [2, 1, 1],
    ],
  ],
  [
    ['YU24', 'YV24'],
    [
      [1, 1, 1],
      [1, 1, 1],
    ],
  ],
] as const) {
  for (const code of codes) EXTRA_PLANES.set(fourcc(code), planes);
}

/** The bytes a compositor reads for a wl_shm buffer: every plane of it. */
export function shmBufferSize(format: number, stride: number, height: number): number {
  let size = stride * height;
  for (const [hsub, vsub, bytes] of EXTRA_PLANES.get(format >>> 0) ?? [])
    size += Math.ceil(stride / hsub) * bytes * Math.ceil(height / vsub);
  return size;
}

/** A client's wl_shm_pool: its fd, and a read-only mapping made on first use. */
export class ClientPool {
  mapping: Buffer | null = null;
  /** The pool object and every buffer made from it. */
  private refs = 1;

  constructor(
    readonly state: ShadowState,
    private fd: number,
    public size: number,
    /** The client's wl_shm it came from: the host object the proxy makes host pools with. */
    readonly shm: WlObject,
    readonly clientId: number,
  ) {
    state.pools.add(this);
  }

  /** The pool's bytes, mapped now if they were not; throws invalid_fd for an fd that cannot be. */
  map(): Buffer {
    if (this.mapping) return this.mapping;
    try {
      this.mapping = native.mmap(this.fd, 0, this.size, false);
    } catch (e) {
      throw new ProtocolError(
        this.shm.dying ? DISPLAY_ID : this.shm.clientId,
        this.shm.dying ? DisplayError.implementation : WlShmError.invalid_fd,
        `cannot map the fd of wl_shm_pool@${this.clientId}: ${(e as Error).message}`,
      );
    }
    return this.mapping;
  }

  resize(size: number): void {
    this.unmap();
    this.size = size;
  }

  ref(): void {
    this.refs++;
  }

  unref(): void {
    if (--this.refs === 0) this.dispose();
  }

  dispose(): void {
    this.unmap();
    if (this.fd >= 0) closeQuietly(this.fd);
    this.fd = -1;
    this.state.pools.delete(this);
  }

  private unmap(): void {
    if (this.mapping) native.munmap(this.mapping);
    this.mapping = null;
  }
}

/** A client's wl_buffer from a shadowed pool; it has no host object of its own. */
export class ShmBuffer {
  destroyed = false;

  constructor(
    readonly pool: ClientPool,
    readonly clientId: number,
    readonly offset: number,
    readonly width: number,
    readonly height: number,
    readonly stride: number,
    readonly format: number,
  ) {}

  /** Every plane's bytes, from `offset` on. */
  get byteSize(): number {
    return shmBufferSize(this.format, this.stride, this.height);
  }
}

/** One client's shadowing: its allocator, the host's formats, what to release when it goes. */
export class ShadowState {
  readonly formats = new Set<number>([WlShmFormat.argb8888, WlShmFormat.xrgb8888]);
  readonly pools = new Set<ClientPool>();
  readonly disposables = new Set<Disposable>();
  /** The client's wl_shm objects, any of which can make host pools. */
  readonly shms = new Set<WlObject>();

  constructor(
    readonly relay: Relay,
    readonly allocator: ShadowAllocator,
  ) {
    relay.addDisposer(() => this.dispose());
  }

  /** A live host wl_shm to make pools with, preferring `preferred`. */
  hostShm(preferred: WlObject): number {
    if (!preferred.dying) return preferred.hostId;
    for (const s of this.shms) if (!s.dying) return s.hostId;
    throw new ProtocolError(
      DISPLAY_ID,
      DisplayError.implementation,
      'a wl_shm buffer was committed after every wl_shm of the client was released',
    );
  }

  private dispose(): void {
    for (const d of [...this.disposables]) d.dispose();
    this.disposables.clear();
    for (const p of [...this.pools]) p.dispose();
  }
}

/** The shadowing of every relay of one proxy. */
export class Shadowing {
  private readonly states = new WeakMap<Relay, ShadowState | null>();

  constructor(private readonly source: ShadowAllocatorSource) {}

  /** This relay's state, made on first use; null when the relay's client is not shadowed. */
  state(relay: Relay): ShadowState | null {
    let s = this.states.get(relay);
    if (s === undefined) {
      const allocator = this.source(relay);
      s = allocator ? new ShadowState(relay, allocator) : null;
      this.states.set(relay, s);
    }
    return s;
  }
}

/** Tells the client an object of its own that has no host counterpart is gone. */
export function deleteClientOnlyObject(relay: Relay, clientId: number): void {
  relay.clientIds.remove(clientId);
  writeWlDisplayEventDeleteId(relay.client.out, DISPLAY_ID, clientId);
}

function newClientOnlyObject(relay: Relay, id: number, iface: string, state: unknown): WlObject {
  if (!relay.clientIds.canInsert(id, false))
    throw new ProtocolError(DISPLAY_ID, DisplayError.invalidObject, `invalid new id ${id}`);
  // hostId 0: nothing on the host; requests to it are all handled here
  const obj = new WlObject(id, 0, relay.tables.require(iface), 1);
  obj.state = state;
  relay.clientIds.set(id, obj);
  return obj;
}

export function shmHooks(shadowing: Shadowing): Map<string, InterfaceHooks> {
  const shm: WlShmRequestHandlers<HookContext> = {
    create_pool({ relay, obj }, id, fd, size) {
      const state = shadowing.state(relay);
      if (!state) return false;
      state.shms.add(obj);
      if (size <= 0)
        throw new ProtocolError(
          obj.clientId,
          WlShmError.invalid_stride,
          `invalid pool size ${size}`,
        );
      const pool = newClientOnlyObject(relay, id, 'wl_shm_pool', null);
      // from here on the fd is the pool's
      pool.state = new ClientPool(state, fd, size, obj, id);
      return true;
    },
  };

  const shmEvents: WlShmEventHandlers<HookContext> = {
    /** Formats the host takes: what create_buffer accepts. */
    format({ relay }, format) {
      shadowing.state(relay)?.formats.add(format >>> 0);
      return false;
    },
  };

  const poolRequests: WlShmPoolRequestHandlers<HookContext> = {
    create_buffer({ relay, obj }, id, offset, width, height, stride, format) {
      const pool = obj.state as ClientPool;
      const state = pool.state;
      if (!state.formats.has(format >>> 0)) {
        throw new ProtocolError(
          obj.clientId,
          WlShmError.invalid_format,
          `invalid format 0x${(format >>> 0).toString(16)}`,
        );
      }
      const bpp = bytesPerPixel(format);
      if (
        offset < 0 ||
        width <= 0 ||
        height <= 0 ||
        stride < width * Math.max(bpp, 1) ||
        stride * height > pool.size - offset
      ) {
        throw new ProtocolError(
          obj.clientId,
          WlShmError.invalid_stride,
          `invalid width, height or stride (${width}x${height}, ${stride}) at offset ${offset} of a pool of ${pool.size} bytes`,
        );
      }
      newClientOnlyObject(
        relay,
        id,
        'wl_buffer',
        new ShmBuffer(pool, id, offset, width, height, stride, format >>> 0),
      );
      pool.ref();
      return true;
    },

    destroy({ relay, obj }) {
      deleteClientOnlyObject(relay, obj.clientId);
      (obj.state as ClientPool).unref();
      return true;
    },

    resize({ obj }, size) {
      const pool = obj.state as ClientPool;
      if (size < pool.size) {
        throw new ProtocolError(
          obj.clientId,
          WlShmError.invalid_stride,
          `shrinking a pool is invalid (${pool.size} to ${size} bytes)`,
        );
      }
      pool.resize(size);
      return true;
    },
  };

  return new Map<string, InterfaceHooks>([
    [
      'wl_shm',
      {
        request: (ctx, opcode, args) => dispatchWlShmRequest(shm, ctx, opcode, args),
        event: (ctx, opcode, args) => dispatchWlShmEvent(shmEvents, ctx, opcode, args),
      },
    ],
    [
      'wl_shm_pool',
      {
        request: (ctx, opcode, args) =>
          // pools of unshadowed clients are relayed as they are
          ctx.obj.state instanceof ClientPool
            ? dispatchWlShmPoolRequest(poolRequests, ctx, opcode, args)
            : false,
      },
    ],
  ]);
}

// Host-side shadow buffers, made by the proxy for itself, and wl_buffer's special cases: a
// shadowed client buffer is destroyed here (the host never knew it), and a shadow buffer's
// release goes back to its surface's pool of host buffers, never to the client.
import {
  dispatchWlBufferEvent,
  dispatchWlBufferRequest,
  writeWlBufferDestroy,
  writeWlShmCreatePool,
  writeWlShmPoolCreateBuffer,
  writeWlShmPoolDestroy,
} from '../generated/wayland.js';
import type { WlBufferEventHandlers, WlBufferRequestHandlers } from '../generated/wayland.js';
import { Damage } from './damage.js';
import { DisplayError, ProtocolError } from './errors.js';
import { WlObject } from './objects.js';
import type { HookContext, InterfaceHooks, Relay } from './relay.js';
import type { ShadowMemory, ShadowState } from './shm.js';
import { ShmBuffer, deleteClientOnlyObject } from './shm.js';

const DISPLAY_ID = 1;

/** A host object the proxy owns: clientId 0, so its events and delete_id stay in the proxy. */
function newHostObject(relay: Relay, iface: string, state: unknown): WlObject {
  const id = relay.hostIds.allocate(false);
  const obj = new WlObject(0, id, relay.tables.require(iface), 1);
  obj.state = state;
  relay.hostIds.set(id, obj);
  return obj;
}

/** One host wl_buffer over host memory that mirrors client buffers of one shape. */
export class HostBuffer {
  /** The host holds it (attached and not yet released). */
  busy = false;
  destroyed = false;
  /** Called when the host gives it back (a commit of its surface may be waiting for that). */
  onRelease: (() => void) | null = null;
  /** The surface's frame number when it was last written: the latest has the least to catch up. */
  writtenAt = 0;
  /** What changed in the client's frames since this buffer was last written. */
  readonly damage = new Damage();
  readonly memory: ShadowMemory;
  private readonly obj: WlObject;

  /** Allocates host memory and makes the host pool and buffer over it. */
  constructor(
    readonly state: ShadowState,
    hostShm: number,
    readonly width: number,
    readonly height: number,
    readonly stride: number,
    readonly format: number,
    readonly byteSize: number,
  ) {
    let memory: ShadowMemory;
    try {
      memory = state.allocator.allocate(byteSize);
    } catch (e) {
      throw new ProtocolError(
        DISPLAY_ID,
        DisplayError.noMemory,
        `cannot allocate ${byteSize} bytes of host memory for a wl_shm buffer: ${(e as Error).message}`,
      );
    }
    this.memory = memory;
    const relay = state.relay;
    const out = relay.host.out;
    const pool = newHostObject(relay, 'wl_shm_pool', null);
    this.obj = newHostObject(relay, 'wl_buffer', this);
    writeWlShmCreatePool(out, hostShm, pool.hostId, memory.exportFd(), byteSize);
    writeWlShmPoolCreateBuffer(out, pool.hostId, this.obj.hostId, 0, width, height, stride, format);
    // the buffer keeps the host pool's memory; the pool object itself is not needed again
    writeWlShmPoolDestroy(out, pool.hostId);
    pool.dying = true;
    this.damage.setFull();
    state.disposables.add(this);
  }

  get hostId(): number {
    return this.obj.hostId;
  }

  matches(b: ShmBuffer): boolean {
    return (
      b.width === this.width &&
      b.height === this.height &&
      b.stride === this.stride &&
      b.format === this.format &&
      b.byteSize === this.byteSize
    );
  }

  /** Destroys the host buffer and frees the memory. */
  destroy(): void {
    if (this.destroyed) return;
    writeWlBufferDestroy(this.state.relay.host.out, this.obj.hostId);
    this.obj.dying = true;
    this.dispose();
  }

  /** Frees the memory only: the host connection is gone. */
  dispose(): void {
    this.destroyed = true;
    this.busy = false;
    this.memory.free();
    this.state.disposables.delete(this);
  }
}

const requests: WlBufferRequestHandlers<HookContext> = {
  destroy({ relay, obj }) {
    const buffer = obj.state as ShmBuffer;
    buffer.destroyed = true;
    deleteClientOnlyObject(relay, obj.clientId);
    buffer.pool.unref();
    return true;
  },
};

const events: WlBufferEventHandlers<HookContext> = {
  release({ obj }) {
    const buffer = obj.state as HostBuffer;
    buffer.busy = false;
    buffer.onRelease?.();
    return true;
  },
};

export const bufferHooks: InterfaceHooks = {
  request: (ctx, opcode, args) =>
    ctx.obj.state instanceof ShmBuffer
      ? dispatchWlBufferRequest(requests, ctx, opcode, args)
      : false,
  event: (ctx, opcode, args) => {
    if (ctx.obj.clientId !== 0) return false;
    // a proxy-owned shadow buffer: whatever the host says about it stays here
    if (ctx.obj.state instanceof HostBuffer) dispatchWlBufferEvent(events, ctx, opcode, args);
    return true;
  },
};

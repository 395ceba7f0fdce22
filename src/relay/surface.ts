// wl_surface with shadowed wl_shm buffers: an attach of a client shm buffer is held back; on
// commit the damaged parts of the client's buffer are copied (in the addon) into one of the
// surface's host buffers, that host buffer is attached instead, and the client's buffer is
// released at once. Each host buffer remembers the damage of every frame since it was last
// written, so a frame copies only what changed since then; a new host buffer is copied whole.
import type { WlSurfaceRequestHandlers } from '../generated/wayland.js';
import {
  WlShmError,
  dispatchWlSurfaceRequest,
  writeWlBufferEventRelease,
  writeWlSurfaceAttach,
} from '../generated/wayland.js';
import type { WpViewporterRequestHandlers } from '../generated/viewporter.js';
import { dispatchWpViewporterRequest } from '../generated/viewporter.js';
import * as native from '../native/index.js';
import { HostBuffer } from './buffer.js';
import { Damage, addSurfaceDamage } from './damage.js';
import { DisplayError, ProtocolError } from './errors.js';
import type { WlObject } from './objects.js';
import type { HookContext, InterfaceHooks } from './relay.js';
import type { Disposable, ShadowState, Shadowing } from './shm.js';
import { ShmBuffer, bytesPerPixel } from './shm.js';

const DISPLAY_ID = 1;
/** Host buffers per surface before the proxy stops waiting for the host to release one. */
const MAX_HOST_BUFFERS = 6;

let rectScratch: Int32Array = new Int32Array(64);

export class SurfaceShadow implements Disposable {
  /** An attach is pending for the next commit; `pending` is its shm buffer (null: another kind). */
  private attached = false;
  private pending: ShmBuffer | null = null;
  private attachX = 0;
  private attachY = 0;
  private pendingScale = 0;
  private pendingTransform = -1;
  private scale = 1;
  private transform = 0;
  /**
   * The next shm buffer is copied whole: scale or transform changed, another kind of buffer was
   * shown, or damage came without a buffer since the last copy.
   */
  private viewChanged = false;
  /** A wp_viewport was made for it: surface damage is then copied as full damage. */
  viewported = false;
  /** Damage requests since the last commit: surface coordinates, and buffer coordinates. */
  private readonly surfaceDamage: number[] = [];
  private readonly bufferDamage: number[] = [];
  readonly hostBuffers: HostBuffer[] = [];
  /**
   * Client buffers copied while the host held every host buffer of this surface: they are given
   * back only when the host gives one back, so a client that outruns the compositor waits for it
   * instead of making the proxy allocate (and copy whole) ever more host buffers.
   */
  private readonly heldClientBuffers: ShmBuffer[] = [];
  private readonly frameDamage = new Damage();
  /** The last client buffer copied, and the host buffer it went to (for inspection). */
  lastBuffer: ShmBuffer | null = null;
  lastHostBuffer: HostBuffer | null = null;

  constructor(
    private readonly state: ShadowState,
    /** The surface's id on the host. */
    private readonly hostId: number,
  ) {
    state.disposables.add(this);
  }

  attach(buffer: WlObject | undefined, x: number, y: number): boolean {
    this.attached = true;
    this.attachX = x;
    this.attachY = y;
    this.pending = buffer?.state instanceof ShmBuffer ? buffer.state : null;
    // other buffers (dmabuf, single-pixel, null) go to the host as they are; after them the
    // client's damage no longer tells what changed in our host buffers: copy the next one whole
    if (!this.pending) this.viewChanged = true;
    return this.pending !== null;
  }

  damage(x: number, y: number, w: number, h: number, buffer: boolean): void {
    (buffer ? this.bufferDamage : this.surfaceDamage).push(x, y, w, h);
  }

  setScale(scale: number): void {
    this.pendingScale = scale;
  }

  setTransform(transform: number): void {
    this.pendingTransform = transform;
  }

  /** Copies what the commit needs and attaches a host buffer; the commit itself is forwarded after. */
  commit(): void {
    // a new scale or transform redraws the buffer from the same surface picture: every pixel
    // may move, whatever the damage says (compositors take it as full damage too)
    let changed = false;
    if (this.pendingScale > 0 && this.pendingScale !== this.scale) {
      this.scale = this.pendingScale;
      changed = true;
    }
    if (this.pendingTransform >= 0 && this.pendingTransform !== this.transform) {
      this.transform = this.pendingTransform;
      changed = true;
    }
    this.viewChanged ||= changed;
    this.pendingScale = 0;
    this.pendingTransform = -1;
    const attached = this.attached;
    const buffer = this.pending;
    this.attached = false;
    this.pending = null;
    try {
      if (attached && buffer) this.commitShm(buffer);
      else if (this.surfaceDamage.length > 0 || this.bufferDamage.length > 0) {
        // damage without a new buffer: the client changed a buffer it had been given back;
        // nothing is copied now, but the next copy cannot trust its own damage alone
        this.viewChanged = true;
      }
    } finally {
      this.surfaceDamage.length = 0;
      this.bufferDamage.length = 0;
    }
  }

  /** The surface is destroyed: so are its host buffers, and the client's buffers are free again. */
  destroy(): void {
    this.lastBuffer = null;
    this.lastHostBuffer = null;
    this.hostReleased();
    for (const b of this.hostBuffers) b.destroy();
    this.hostBuffers.length = 0;
    this.state.disposables.delete(this);
  }

  dispose(): void {
    this.lastBuffer = null;
    this.lastHostBuffer = null;
    for (const b of this.hostBuffers) b.dispose();
    this.hostBuffers.length = 0;
  }

  private commitShm(buffer: ShmBuffer): void {
    const relay = this.state.relay;
    if (buffer.destroyed) {
      // destroyed between attach and commit: the attach becomes a null attach, as in libwayland
      writeWlSurfaceAttach(relay.host.out, this.hostId, 0, this.attachX, this.attachY);
      return;
    }
    const { width, height } = buffer;
    const damage = this.frameDamage;
    damage.clear();
    if (this.viewChanged) damage.setFull();
    this.viewChanged = false;
    const s = this.surfaceDamage;
    for (let i = 0; i < s.length && !damage.full; i += 4) {
      if (this.viewported) damage.setFull();
      else
        addSurfaceDamage(
          damage,
          s[i],
          s[i + 1],
          s[i + 2],
          s[i + 3],
          width,
          height,
          this.scale,
          this.transform,
        );
    }
    const b = this.bufferDamage;
    for (let i = 0; i < b.length && !damage.full; i += 4)
      damage.add(b[i], b[i + 1], b[i + 2], b[i + 3], width, height);

    // one busy buffer is the one on screen; two or more all busy means the host is behind
    const hostIsBehind = this.hostBuffers.length >= 2 && this.hostBuffers.every((h) => h.busy);
    const target = this.hostBufferFor(buffer);
    // every host buffer has to catch up with this frame's changes when it is next written
    for (const h of this.hostBuffers) {
      if (h.width === width && h.height === height) h.damage.addAll(damage, width, height);
      else h.damage.setFull();
    }
    this.copy(buffer, target);
    this.lastBuffer = buffer;
    this.lastHostBuffer = target;
    target.busy = true;
    writeWlSurfaceAttach(relay.host.out, this.hostId, target.hostId, this.attachX, this.attachY);
    // the pixels are in host memory now: the client may reuse its buffer, once the host keeps up
    if (hostIsBehind) this.heldClientBuffers.push(buffer);
    else writeWlBufferEventRelease(relay.client.out, buffer.clientId);
  }

  /** The host gave back one of our buffers: give back the client's buffers held for it. */
  private hostReleased(): void {
    const out = this.state.relay.client.out;
    for (const b of this.heldClientBuffers)
      if (!b.destroyed) writeWlBufferEventRelease(out, b.clientId);
    this.heldClientBuffers.length = 0;
  }

  /** A free host buffer of the right shape, else a new one. */
  private hostBufferFor(buffer: ShmBuffer): HostBuffer {
    const list = this.hostBuffers;
    // free ones of another shape are of no more use (the client resized)
    for (let i = list.length - 1; i >= 0; i--) {
      if (!list[i].busy && !list[i].matches(buffer)) list.splice(i, 1)[0].destroy();
    }
    for (const h of list) if (!h.busy) return h;
    if (list.length >= MAX_HOST_BUFFERS) {
      // the host holds them all: give up the oldest rather than grow without end
      list.shift()!.destroy();
    }
    const pool = buffer.pool;
    const h = new HostBuffer(
      this.state,
      this.state.hostShm(pool.shm),
      buffer.width,
      buffer.height,
      buffer.stride,
      buffer.format,
      buffer.byteSize,
    );
    h.onRelease = () => this.hostReleased();
    list.push(h);
    return h;
  }

  private copy(buffer: ShmBuffer, target: HostBuffer): void {
    const pool = buffer.pool;
    const src = pool.map().subarray(buffer.offset, buffer.offset + buffer.byteSize);
    const bpp = bytesPerPixel(buffer.format);
    let copied: number;
    if (bpp === 0) {
      // not a single packed plane: copy every plane's bytes whole (as much as the pool holds of
      // them; libwayland checks only the first plane against the pool)
      const n = src.length;
      rectScratch[0] = 0;
      rectScratch[1] = 0;
      rectScratch[2] = n;
      rectScratch[3] = 1;
      copied =
        n === 0 ? 0 : native.copyRects(target.memory.bytes, n, src, n, rectScratch, 1, 1, n, 1);
    } else {
      rectScratch = target.damage.write(rectScratch, buffer.width, buffer.height);
      copied = native.copyRects(
        target.memory.bytes,
        buffer.stride,
        src,
        buffer.stride,
        rectScratch,
        target.damage.count,
        bpp,
        buffer.width,
        buffer.height,
      );
    }
    if (copied < 0) {
      const shm = pool.shm;
      throw new ProtocolError(
        shm.dying ? DISPLAY_ID : shm.clientId,
        shm.dying ? DisplayError.implementation : WlShmError.invalid_fd,
        `the memory of wl_buffer@${buffer.clientId} cannot be read: was its pool file truncated?`,
      );
    }
    target.damage.clear();
  }
}

function shadowOf(shadowing: Shadowing, { relay, obj }: HookContext): SurfaceShadow | null {
  if (obj.state instanceof SurfaceShadow) return obj.state;
  const state = shadowing.state(relay);
  if (!state) return null;
  const s = new SurfaceShadow(state, obj.hostId);
  obj.state = s;
  return s;
}

export function surfaceHooks(shadowing: Shadowing): Map<string, InterfaceHooks> {
  const requests: WlSurfaceRequestHandlers<HookContext> = {
    attach(ctx, buffer, x, y) {
      const s = shadowOf(shadowing, ctx);
      return s ? s.attach(buffer ? ctx.relay.clientIds.get(buffer) : undefined, x, y) : false;
    },
    damage(ctx, x, y, w, h) {
      shadowOf(shadowing, ctx)?.damage(x, y, w, h, false);
      return false;
    },
    damage_buffer(ctx, x, y, w, h) {
      shadowOf(shadowing, ctx)?.damage(x, y, w, h, true);
      return false;
    },
    set_buffer_scale(ctx, scale) {
      shadowOf(shadowing, ctx)?.setScale(scale);
      return false;
    },
    set_buffer_transform(ctx, transform) {
      shadowOf(shadowing, ctx)?.setTransform(transform);
      return false;
    },
    commit(ctx) {
      shadowOf(shadowing, ctx)?.commit();
      return false;
    },
    destroy(ctx) {
      if (ctx.obj.state instanceof SurfaceShadow) ctx.obj.state.destroy();
      return false;
    },
  };
  const viewporter: WpViewporterRequestHandlers<HookContext> = {
    get_viewport({ relay }, _id, surface) {
      const obj = relay.clientIds.get(surface);
      if (obj?.state instanceof SurfaceShadow) obj.state.viewported = true;
      else if (obj && obj.iface.name === 'wl_surface' && shadowing.state(relay)) {
        shadowOf(shadowing, { relay, obj })!.viewported = true;
      }
      return false;
    },
  };
  return new Map<string, InterfaceHooks>([
    [
      'wl_surface',
      { request: (ctx, opcode, args) => dispatchWlSurfaceRequest(requests, ctx, opcode, args) },
    ],
    [
      'wp_viewporter',
      {
        request: (ctx, opcode, args) => dispatchWpViewporterRequest(viewporter, ctx, opcode, args),
      },
    ],
  ]);
}

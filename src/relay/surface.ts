// wl_surface with shadowed wl_shm buffers: an attach of a client shm buffer is held back; on
// commit the damaged parts of the client's buffer are copied (in the addon) into one of the
// surface's host buffers, that host buffer is attached instead, and the client's buffer is
// released at once. Each host buffer remembers the damage of every frame since it was last
// written, so a frame copies only what changed since then; a new host buffer is copied whole.
// A surface has a few host buffers; when the host holds all of them, the client's commit waits
// (the relay reads no further) until the host gives one back, so a client that outruns the
// compositor is slowed to its pace instead of making the proxy allocate and copy ever more.
import type { WlSurfaceRequestHandlers } from '../generated/wayland.js';
import {
  WL_SURFACE_COMMIT,
  WlShmError,
  dispatchWlSurfaceRequest,
  writeWlBufferEventRelease,
  writeWlSurfaceAttach,
} from '../generated/wayland.js';
import type { WpViewporterRequestHandlers } from '../generated/viewporter.js';
import { dispatchWpViewporterRequest } from '../generated/viewporter.js';
import * as native from '../native/index.js';
import { HostBuffer } from './buffer.js';
import { Damage, RectList, addSurfaceDamage } from './damage.js';
import { DisplayError, ProtocolError } from './errors.js';
import type { WlObject } from './objects.js';
import type { HookContext, InterfaceHooks } from './relay.js';
import type { Disposable, ShadowState, Shadowing } from './shm.js';
import { ShmBuffer, bytesPerPixel } from './shm.js';

const DISPLAY_ID = 1;
/** Host buffers per surface: one on screen, one the compositor may still read, one to write. */
const HOST_BUFFERS = 3;
/** More, for a compositor that keeps them all longer than WAIT_MS; then the oldest is dropped. */
const MAX_HOST_BUFFERS = 6;
const WAIT_MS = 100;
/** How long a commit waits for a host buffer that missed fewer frames than a free one. */
const FRESHER_WAIT_MS = 4;
/**
 * How long it waits when the free one missed so much that catching up copies a quarter of the
 * buffer or more: a compositor busy repainting gives buffers back late, within a frame at 60 Hz.
 */
const STALE_WAIT_MS = 16;

const rectsToCopy = new RectList();

/**
 * A surface's damage requests since its last commit, as the client sent them: at most 16; more
 * are merged into their bounds (as Damage does later), so a flood of them costs neither memory
 * nor allocation.
 */
class DamageRequests {
  static readonly MAX = 16;
  /** x, y, width, height of each; doubles, since a merged width may exceed an int32. */
  readonly rects = new Float64Array(DamageRequests.MAX * 4);
  count = 0;

  add(x: number, y: number, w: number, h: number): void {
    const r = this.rects;
    if (this.count < DamageRequests.MAX) {
      const i = this.count++ * 4;
      r[i] = x;
      r[i + 1] = y;
      r[i + 2] = w;
      r[i + 3] = h;
      return;
    }
    let x0 = x;
    let y0 = y;
    let x1 = x + w;
    let y1 = y + h;
    for (let i = 0; i < r.length; i += 4) {
      x0 = Math.min(x0, r[i]);
      y0 = Math.min(y0, r[i + 1]);
      x1 = Math.max(x1, r[i] + r[i + 2]);
      y1 = Math.max(y1, r[i + 1] + r[i + 3]);
    }
    r[0] = x0;
    r[1] = y0;
    r[2] = x1 - x0;
    r[3] = y1 - y0;
    this.count = 1;
  }
}

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
  private readonly surfaceDamage = new DamageRequests();
  private readonly bufferDamage = new DamageRequests();
  readonly hostBuffers: HostBuffer[] = [];
  /** A commit waits for the host to give a host buffer back (see mustWait). */
  private waiting = false;
  /** The host kept every host buffer past WAIT_MS: more may be made, up to MAX_HOST_BUFFERS. */
  private mayGrow = false;
  /** A fresher host buffer did not come back within FRESHER_WAIT_MS: an older one will do. */
  private waitedForFresher = false;
  private waitTimer: NodeJS.Timeout | null = null;
  /** Frames copied so far. */
  private frames = 0;
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
    (buffer ? this.bufferDamage : this.surfaceDamage).add(x, y, w, h);
  }

  setScale(scale: number): void {
    this.pendingScale = scale;
  }

  setTransform(transform: number): void {
    this.pendingTransform = transform;
  }

  /** Copies what the commit needs and attaches a host buffer; the commit itself is forwarded after. */
  commit(): void {
    const attached = this.attached;
    const buffer = this.pending;
    this.attached = false;
    this.pending = null;
    try {
      if (attached && buffer) this.commitShm(buffer);
      else if (this.surfaceDamage.count > 0 || this.bufferDamage.count > 0) {
        // damage without a new buffer: the client changed a buffer it had been given back;
        // nothing is copied now, but the next copy cannot trust its own damage alone
        this.viewChanged = true;
      }
    } finally {
      this.surfaceDamage.count = 0;
      this.bufferDamage.count = 0;
      // a new scale or transform redraws the buffer from the same surface picture: every pixel
      // may move, whatever the damage says (compositors take it as full damage too); a copy
      // made now took that into account already
      let changed = false;
      if (this.pendingScale > 0 && this.pendingScale !== this.scale) {
        this.scale = this.pendingScale;
        changed = true;
      }
      if (this.pendingTransform >= 0 && this.pendingTransform !== this.transform) {
        this.transform = this.pendingTransform;
        changed = true;
      }
      if (changed && !(attached && buffer)) this.viewChanged = true;
      this.pendingScale = 0;
      this.pendingTransform = -1;
    }
  }

  /**
   * Whether the commit now due must wait for the host to give a host buffer back: it brings an
   * shm buffer, no host buffer of its shape is free, and the surface has all it may have.
   */
  mustWait(): boolean {
    const buffer = this.pending;
    if (!this.attached || !buffer || buffer.destroyed) return false;
    let usable = 0;
    let free: HostBuffer | null = null;
    for (const h of this.hostBuffers) {
      if (h.busy || h.matches(buffer)) usable++;
      if (!h.busy && h.matches(buffer) && (!free || h.writtenAt > free.writtenAt)) free = h;
    }
    if (free) {
      // a buffer written after the free one, that the host no longer shows, on its way back
      let coming = false;
      for (const h of this.hostBuffers)
        if (h.busy && h !== this.lastHostBuffer && h.writtenAt > free.writtenAt) coming = true;
      // catching up costs more than twice this frame: wait for that one, a little
      if (!coming || this.waitedForFresher) return false;
      const { width, height } = buffer;
      const catchUp = free.damage.area(width, height);
      if (catchUp <= this.damageOf(buffer).area(width, height)) return false;
      const ms = catchUp * 4 >= width * height ? STALE_WAIT_MS : FRESHER_WAIT_MS;
      return this.wait(ms, () => (this.waitedForFresher = true));
    }
    if (usable < (this.mayGrow ? MAX_HOST_BUFFERS : HOST_BUFFERS)) return false;
    // a compositor that keeps every buffer a while (hidden surface, deep queue): grow then
    return this.wait(WAIT_MS, () => (this.mayGrow = true));
  }

  /** Holds the commit until a host buffer comes back, or `ms` pass (then `expired`). */
  private wait(ms: number, expired: () => void): boolean {
    if (!this.waiting) {
      this.waiting = true;
      this.waitTimer = setTimeout(() => {
        this.waitTimer = null;
        expired();
        this.stopWaiting();
      }, ms);
    }
    return true;
  }

  /** The surface is destroyed: so are its host buffers. */
  destroy(): void {
    this.forget();
    for (const b of this.hostBuffers) b.destroy();
    this.hostBuffers.length = 0;
    this.state.disposables.delete(this);
  }

  /** The client is gone: the memory goes, the host objects went with its connection. */
  dispose(): void {
    this.forget();
    for (const b of this.hostBuffers) b.dispose();
    this.hostBuffers.length = 0;
  }

  private forget(): void {
    this.lastBuffer = null;
    this.lastHostBuffer = null;
    this.waiting = false;
    if (this.waitTimer) clearTimeout(this.waitTimer);
    this.waitTimer = null;
  }

  private commitShm(buffer: ShmBuffer): void {
    const relay = this.state.relay;
    if (buffer.destroyed) {
      // destroyed between attach and commit: the attach becomes a null attach, as in libwayland
      writeWlSurfaceAttach(relay.host.out, this.hostId, 0, this.attachX, this.attachY);
      return;
    }
    const { width, height } = buffer;
    const damage = this.damageOf(buffer);
    this.viewChanged = false;
    const target = this.hostBufferFor(buffer);
    // every host buffer has to catch up with this frame's changes when it is next written
    for (const h of this.hostBuffers) {
      if (h.width === width && h.height === height) h.damage.addAll(damage, width, height);
      else h.damage.setFull();
    }
    this.copy(buffer, target);
    target.writtenAt = ++this.frames;
    this.lastBuffer = buffer;
    this.lastHostBuffer = target;
    target.busy = true;
    writeWlSurfaceAttach(relay.host.out, this.hostId, target.hostId, this.attachX, this.attachY);
    // the pixels are in host memory now: the client may reuse its buffer
    writeWlBufferEventRelease(relay.client.out, buffer.clientId);
  }

  /**
   * The damage of the commit now due, in pixels of `buffer` (into frameDamage): what the client
   * damaged, or everything when the picture may have moved (scale, transform, viewport, another
   * kind of buffer shown before).
   */
  private damageOf(buffer: ShmBuffer): Damage {
    const { width, height } = buffer;
    const scale = this.pendingScale > 0 ? this.pendingScale : this.scale;
    const transform = this.pendingTransform >= 0 ? this.pendingTransform : this.transform;
    const damage = this.frameDamage;
    damage.clear();
    if (this.viewChanged || scale !== this.scale || transform !== this.transform) damage.setFull();
    const s = this.surfaceDamage.rects;
    for (let i = 0; i < this.surfaceDamage.count * 4 && !damage.full; i += 4) {
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
          scale,
          transform,
        );
    }
    const b = this.bufferDamage.rects;
    for (let i = 0; i < this.bufferDamage.count * 4 && !damage.full; i += 4)
      damage.add(b[i], b[i + 1], b[i + 2], b[i + 3], width, height);
    return damage;
  }

  /** The host gave back one of our buffers: a commit waiting for one goes on. */
  private hostReleased(): void {
    this.mayGrow = false;
    this.waitedForFresher = false;
    this.stopWaiting();
  }

  private stopWaiting(): void {
    if (!this.waiting) return;
    this.waiting = false;
    if (this.waitTimer) clearTimeout(this.waitTimer);
    this.waitTimer = null;
    this.state.relay.releaseRequests();
  }

  /** A free host buffer of the right shape, else a new one. */
  private hostBufferFor(buffer: ShmBuffer): HostBuffer {
    const list = this.hostBuffers;
    // free ones of another shape are of no more use (the client resized)
    for (let i = list.length - 1; i >= 0; i--) {
      if (!list[i].busy && !list[i].matches(buffer)) list.splice(i, 1)[0].destroy();
    }
    // the free one written last has missed the fewest frames
    let best: HostBuffer | null = null;
    for (const h of list) if (!h.busy && (!best || h.writtenAt > best.writtenAt)) best = h;
    if (best) return best;
    if (list.length >= MAX_HOST_BUFFERS) {
      // the host has held them all for a long while: give up the oldest rather than grow
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
      rectsToCopy.count = 0;
      rectsToCopy.push(0, 0, n, 1);
      copied =
        n === 0
          ? 0
          : native.copyRects(target.memory.bytes, n, src, n, rectsToCopy.rects, 1, 1, n, 1);
    } else {
      target.damage.write(rectsToCopy, buffer.width, buffer.height);
      copied = native.copyRects(
        target.memory.bytes,
        buffer.stride,
        src,
        buffer.stride,
        rectsToCopy.rects,
        rectsToCopy.count,
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
      {
        request: (ctx, opcode, args) => dispatchWlSurfaceRequest(requests, ctx, opcode, args),
        gate: ({ obj }, opcode) =>
          opcode === WL_SURFACE_COMMIT &&
          obj.state instanceof SurfaceShadow &&
          obj.state.mustWait(),
      },
    ],
    [
      'wp_viewporter',
      {
        request: (ctx, opcode, args) => dispatchWpViewporterRequest(viewporter, ctx, opcode, args),
      },
    ],
  ]);
}

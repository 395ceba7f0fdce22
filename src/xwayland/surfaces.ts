// Xwayland's own Wayland connection, as the WM sees it: which wl_surface is which X window's
// (paired by WL_SURFACE_ID or by xwayland_shell_v1's serial), Xwayland's requests held at a
// surface's first buffer until its window has a configured role, and the input events that move
// X focus and stacking. Everything else on that connection is relayed like any client's.
import type {
  WlDataDeviceRequestHandlers,
  WlKeyboardEventHandlers,
  WlPointerEventHandlers,
  WlPointerRequestHandlers,
  WlSubcompositorRequestHandlers,
  WlSurfaceRequestHandlers,
} from '../generated/wayland.js';
import {
  dispatchWlDataDeviceRequest,
  dispatchWlKeyboardEvent,
  dispatchWlPointerEvent,
  dispatchWlPointerRequest,
  dispatchWlSubcompositorRequest,
  dispatchWlSurfaceRequest,
} from '../generated/wayland.js';
import type {
  XwaylandShellV1RequestHandlers,
  XwaylandSurfaceV1RequestHandlers,
} from '../generated/xwayland-shell-v1.js';
import {
  XwaylandSurfaceV1Error,
  dispatchXwaylandShellV1Request,
  dispatchXwaylandSurfaceV1Request,
} from '../generated/xwayland-shell-v1.js';
import type { WpViewporterRequestHandlers } from '../generated/viewporter.js';
import {
  dispatchWpViewporterRequest,
  writeWpViewportDestroy,
  writeWpViewportSetDestination,
  writeWpViewporterGetViewport,
} from '../generated/viewporter.js';
import type { WlObject } from '../relay/objects.js';
import {
  deleteClientOnlyObject,
  newClientOnlyObject,
  newOwnedObject,
  ownedObjectDestroyed,
} from '../relay/owned.js';
import { ProtocolError } from '../relay/errors.js';
import type { LocalGlobal } from '../relay/registry.js';
import type { HookContext, InterfaceHooks, Relay, RequestGate } from '../relay/relay.js';
import type { Role } from './roles.js';
import type { Unscale } from './unscale.js';

const ATTACH = 1;
const COMMIT = 6;

/**
 * What a surface of Xwayland's is: not yet known; being resolved (an X round trip tells whether
 * a WL_SURFACE_ID or serial names it); an X window's; or something else (a cursor, a subsurface,
 * a window the WM gave up on) that is relayed as it is.
 */
export type SurfaceKind = 'unknown' | 'resolving' | 'window' | 'other';

export class XSurface {
  kind: SurfaceKind = 'unknown';
  /** From xwayland_surface_v1.set_serial (Xwayland >= 23.1). */
  serial: bigint | null = null;
  /** The X window it shows, set by the WM when paired. */
  window: number | null = null;
  role: Role | null = null;
  /** --x-unscale: the viewport of ours that shows it at 1/N size, and its destination. */
  viewport: WlObject | null = null;
  destination: [number, number] = [0, 0];
  /** Xwayland gave it a viewport itself (xrandr emulation): ours must not be there too. */
  ownViewport = false;

  constructor(readonly obj: WlObject) {}

  /** Xwayland's requests wait while this surface's window has no configured role yet. */
  get holds(): boolean {
    return this.kind === 'resolving' || (this.kind === 'window' && !this.role?.configured);
  }
}

/** What the Wayland side asks of the WM (the X side). */
export interface SurfaceEvents {
  /** A surface got its first buffer before it was paired: find out whose it is. */
  resolve(s: XSurface): void;
  /** Xwayland destroyed a surface: its role goes first. */
  destroyed(s: XSurface): void;
  keyboardEnter(s: XSurface): void;
  pointerEnter(s: XSurface): void;
  /** An X window's surface is about to get a buffer. */
  attached(s: XSurface): void;
}

export class XwaylandSurfaces {
  relay: Relay | null = null;
  private readonly surfaces = new Map<WlObject, XSurface>();
  /** Serial of the latest button or key event Xwayland got: for move and resize requests. */
  lastInputSerial = 0;
  /** Serial of the latest input event Xwayland got, enter events too: for set_selection. */
  lastSerial = 0;
  /** --x-unscale: the host's wp_viewporter, once bound. */
  viewporter: WlObject | null = null;

  constructor(
    private readonly events: SurfaceEvents,
    readonly unscale: Unscale | null = null,
  ) {}

  /**
   * --x-unscale: shows an X window's surface at 1/N of its X size (`width` × `height`), from its
   * next commit on.
   */
  showUnscaled(s: XSurface, width: number, height: number): void {
    const relay = this.relay;
    if (!this.unscale || !this.viewporter || !relay || s.ownViewport || s.obj.dying) return;
    const out = relay.host.out;
    if (!s.viewport) {
      s.viewport = newOwnedObject(relay, 'wp_viewport', 1, () => {});
      writeWpViewporterGetViewport(out, this.viewporter.hostId, s.viewport.hostId, s.obj.hostId);
      s.destination = [0, 0];
    }
    const w = Math.max(1, this.unscale.size(width));
    const h = Math.max(1, this.unscale.size(height));
    if (w === s.destination[0] && h === s.destination[1]) return;
    s.destination = [w, h];
    writeWpViewportSetDestination(out, s.viewport.hostId, w, h);
  }

  /** The surface is no X window's any more: shown as its buffer is again. */
  dropViewport(s: XSurface): void {
    if (!s.viewport || !this.relay) return;
    writeWpViewportDestroy(this.relay.host.out, s.viewport.hostId);
    ownedObjectDestroyed(this.relay, s.viewport);
    s.viewport = null;
  }

  /** The surface object `id` on Xwayland's connection, if it is a live wl_surface. */
  byClientId(id: number): XSurface | null {
    const obj = this.relay?.clientIds.get(id);
    if (!obj || obj.dying || obj.iface.name !== 'wl_surface') return null;
    return this.of(obj);
  }

  bySerial(serial: bigint): XSurface | null {
    for (const s of this.surfaces.values()) if (s.serial === serial && !s.obj.dying) return s;
    return null;
  }

  /** Every surface being resolved. */
  resolving(): XSurface[] {
    return [...this.surfaces.values()].filter((s) => s.kind === 'resolving');
  }

  of(obj: WlObject): XSurface {
    let s = this.surfaces.get(obj);
    if (!s) {
      s = new XSurface(obj);
      this.surfaces.set(obj, s);
    }
    return s;
  }

  /** Xwayland's wl_seat on the host, for move and resize. */
  seatHostId(): number {
    for (const o of this.relay?.clientIds.objects() ?? []) {
      if (o.iface.name === 'wl_seat' && !o.dying) return o.hostId;
    }
    return 0;
  }

  /** Lets Xwayland's held requests go on, if what held them changed. */
  release(): void {
    this.relay?.releaseRequests();
    this.relay?.flush();
  }

  readonly gate: RequestGate = (relay, id, opcode) => {
    if (opcode !== ATTACH && opcode !== COMMIT) return false;
    const obj = relay.clientIds.get(id);
    if (!obj || obj.iface.name !== 'wl_surface') return false;
    const s = this.of(obj);
    if (s.kind === 'unknown') {
      // commits without a buffer attached do not need a role: only a buffer does
      if (opcode === COMMIT) return false;
      s.kind = 'resolving';
      this.events.resolve(s);
    }
    return s.holds;
  };

  /** xwayland_shell_v1, for Xwayland's connection only. */
  readonly shellGlobal: LocalGlobal = {
    iface: 'xwayland_shell_v1',
    version: 1,
    bind: (relay, id) => void newClientOnlyObject(relay, id, 'xwayland_shell_v1', 1),
  };

  /** Xwayland's hooks: `base` is what any client of this proxy gets; ours run first. */
  hooks(base: ReadonlyMap<string, InterfaceHooks>): Map<string, InterfaceHooks> {
    const hooks = new Map(base);
    if (this.unscale) {
      // coordinates are converted before the hooks every client gets (shm shadowing) see them
      const unscaled = this.unscale.hooks((relay, id) => {
        const obj = relay.clientIds.get(id);
        return obj !== undefined && this.surfaces.get(obj)?.viewport != null;
      });
      for (const [name, h] of unscaled) hooks.set(name, chain(h, base.get(name)));
    }
    const underneath = new Map(hooks);
    const add = (name: string, mine: InterfaceHooks): void => {
      hooks.set(name, chain(mine, underneath.get(name)));
    };

    const surface: WlSurfaceRequestHandlers<HookContext> = {
      destroy: ({ obj }) => {
        const s = this.surfaces.get(obj);
        if (s) {
          this.surfaces.delete(obj);
          this.events.destroyed(s);
          this.dropViewport(s);
        }
        return false;
      },
      attach: ({ obj }, buffer) => {
        const s = this.surfaces.get(obj);
        if (buffer !== 0 && s?.kind === 'window') this.events.attached(s);
        return false;
      },
    };
    add('wl_surface', {
      request: (ctx, op, args) => dispatchWlSurfaceRequest(surface, ctx, op, args),
    });

    const markOther = (relay: Relay, id: number): void => {
      const obj = relay.clientIds.get(id);
      if (obj && obj.iface.name === 'wl_surface') {
        const s = this.of(obj);
        if (s.kind === 'unknown') s.kind = 'other';
      }
    };
    const pointerRequests: WlPointerRequestHandlers<HookContext> = {
      set_cursor: ({ relay }, _serial, surfaceId) => {
        if (surfaceId !== 0) markOther(relay, surfaceId);
        return false;
      },
    };
    const pointerEvents: WlPointerEventHandlers<HookContext> = {
      enter: ({ relay }, serial, surfaceId) => {
        this.lastSerial = serial;
        const s = this.byHostId(relay, surfaceId);
        if (s) this.events.pointerEnter(s);
        return false;
      },
      button: (_ctx, serial) => {
        this.lastInputSerial = this.lastSerial = serial;
        return false;
      },
    };
    add('wl_pointer', {
      request: (ctx, op, args) => dispatchWlPointerRequest(pointerRequests, ctx, op, args),
      event: (ctx, op, args) => dispatchWlPointerEvent(pointerEvents, ctx, op, args),
    });

    const keyboardEvents: WlKeyboardEventHandlers<HookContext> = {
      enter: ({ relay }, serial, surfaceId) => {
        this.lastSerial = serial;
        const s = this.byHostId(relay, surfaceId);
        if (s) this.events.keyboardEnter(s);
        return false;
      },
      key: (_ctx, serial) => {
        this.lastInputSerial = this.lastSerial = serial;
        return false;
      },
    };
    add('wl_keyboard', {
      event: (ctx, op, args) => dispatchWlKeyboardEvent(keyboardEvents, ctx, op, args),
    });

    const subcompositor: WlSubcompositorRequestHandlers<HookContext> = {
      get_subsurface: ({ relay }, _id, surfaceId) => {
        markOther(relay, surfaceId);
        return false;
      },
    };
    add('wl_subcompositor', {
      request: (ctx, op, args) => dispatchWlSubcompositorRequest(subcompositor, ctx, op, args),
    });

    const viewporter: WpViewporterRequestHandlers<HookContext> = {
      get_viewport: ({ relay }, _id, surfaceId) => {
        const obj = relay.clientIds.get(surfaceId);
        if (obj?.iface.name === 'wl_surface') {
          const s = this.of(obj);
          s.ownViewport = true;
          this.dropViewport(s);
        }
        return false;
      },
    };
    add('wp_viewporter', {
      request: (ctx, op, args) => dispatchWpViewporterRequest(viewporter, ctx, op, args),
    });

    const dataDevice: WlDataDeviceRequestHandlers<HookContext> = {
      start_drag: ({ relay }, _source, _origin, icon) => {
        if (icon !== 0) markOther(relay, icon);
        return false;
      },
    };
    add('wl_data_device', {
      request: (ctx, op, args) => dispatchWlDataDeviceRequest(dataDevice, ctx, op, args),
    });

    const shell: XwaylandShellV1RequestHandlers<HookContext> = {
      destroy: ({ relay, obj }) => {
        deleteClientOnlyObject(relay, obj.clientId);
        return true;
      },
      get_xwayland_surface: ({ relay }, id, surfaceId) => {
        const target = relay.clientIds.get(surfaceId);
        if (!target || target.dying || target.iface.name !== 'wl_surface') {
          throw new ProtocolError(1, 0, `invalid object ${surfaceId} as a wl_surface`);
        }
        newClientOnlyObject(relay, id, 'xwayland_surface_v1', 1).state = this.of(target);
        return true;
      },
    };
    const xwaylandSurface: XwaylandSurfaceV1RequestHandlers<HookContext> = {
      set_serial: ({ obj }, lo, hi) => {
        const s = obj.state as XSurface;
        if (s.serial !== null) {
          throw new ProtocolError(
            obj.clientId,
            XwaylandSurfaceV1Error.already_associated,
            'the surface already has a serial',
          );
        }
        s.serial = (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
        return true;
      },
      destroy: ({ relay, obj }) => {
        deleteClientOnlyObject(relay, obj.clientId);
        return true;
      },
    };
    hooks.set('xwayland_shell_v1', {
      request: (ctx, op, args) => dispatchXwaylandShellV1Request(shell, ctx, op, args) ?? true,
    });
    hooks.set('xwayland_surface_v1', {
      request: (ctx, op, args) =>
        dispatchXwaylandSurfaceV1Request(xwaylandSurface, ctx, op, args) ?? true,
    });
    return hooks;
  }

  private byHostId(relay: Relay, hostId: number): XSurface | null {
    const obj = relay.hostIds.get(hostId);
    return obj ? (this.surfaces.get(obj) ?? null) : null;
  }
}

/**
 * Our hook first; when it does not consume the message, the usual one sees it from the start.
 * Either one's gate holds the request.
 */
function chain(mine: InterfaceHooks, base: InterfaceHooks | undefined): InterfaceHooks {
  const run =
    (a: InterfaceHooks['request'], b: InterfaceHooks['request']): InterfaceHooks['request'] =>
    (ctx, opcode, args) => {
      const pos = args.pos;
      const fdPos = args.fdPos;
      if (a?.(ctx, opcode, args)) return true;
      args.pos = pos;
      args.fdPos = fdPos;
      return b?.(ctx, opcode, args) ?? false;
    };
  const gate =
    mine.gate && base?.gate
      ? (ctx: HookContext, opcode: number) => mine.gate!(ctx, opcode) || base.gate!(ctx, opcode)
      : (mine.gate ?? base?.gate);
  return {
    request: mine.request || base?.request ? run(mine.request, base?.request) : undefined,
    event: mine.event || base?.event ? run(mine.event, base?.event) : undefined,
    gate,
  };
}

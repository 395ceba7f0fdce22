// The host role of one X window's surface, made by the proxy on Xwayland's host connection:
// xdg_surface with xdg_toplevel, or xdg_popup placed where X put the window relative to its
// parent. Configures are acknowledged here; what they mean for the X window goes to the WM.
import { writeWlSurfaceCommit } from '../generated/wayland.js';
import {
  XdgPositionerAnchor,
  XdgPositionerGravity,
  dispatchXdgPopupEvent,
  dispatchXdgSurfaceEvent,
  dispatchXdgToplevelEvent,
  writeXdgPopupDestroy,
  writeXdgPositionerDestroy,
  writeXdgPositionerSetAnchor,
  writeXdgPositionerSetAnchorRect,
  writeXdgPositionerSetGravity,
  writeXdgPositionerSetSize,
  writeXdgSurfaceAckConfigure,
  writeXdgSurfaceDestroy,
  writeXdgSurfaceGetPopup,
  writeXdgSurfaceGetToplevel,
  writeXdgSurfaceSetWindowGeometry,
  writeXdgToplevelDestroy,
  writeXdgToplevelMove,
  writeXdgToplevelResize,
  writeXdgToplevelSetAppId,
  writeXdgToplevelSetFullscreen,
  writeXdgToplevelSetMaxSize,
  writeXdgToplevelSetMaximized,
  writeXdgToplevelSetMinSize,
  writeXdgToplevelSetParent,
  writeXdgToplevelSetTitle,
  writeXdgToplevelUnsetFullscreen,
  writeXdgToplevelUnsetMaximized,
  writeXdgWmBaseCreatePositioner,
  writeXdgWmBaseGetXdgSurface,
} from '../generated/xdg-shell.js';
import type { WlObject } from '../relay/objects.js';
import { newOwnedObject, ownedObjectDestroyed } from '../relay/owned.js';
import type { Relay } from '../relay/relay.js';
import { labelled } from '../relay/xdg-toplevel.js';

/** What the compositor asked of a toplevel in one configure sequence. */
export interface ToplevelConfigure {
  readonly width: number;
  readonly height: number;
  /** xdg_toplevel.state values. */
  readonly states: ReadonlySet<number>;
}

export interface RoleEvents {
  /** The first configure was acknowledged: the surface may show its buffers. */
  configured(role: Role): void;
  toplevelConfigure(role: Role, c: ToplevelConfigure): void;
  close(role: Role): void;
}

/** Where a popup goes: its size, and its offset from its parent's top-left corner. */
export interface PopupPlacement {
  readonly parent: Role;
  readonly x: number;
  readonly y: number;
  readonly width: number;
  readonly height: number;
}

export class Role {
  readonly xdgSurface: WlObject;
  readonly toplevel: WlObject | null = null;
  readonly popup: WlObject | null = null;
  readonly children = new Set<Role>();
  configured = false;
  destroyed = false;
  private geometry: [number, number] = [0, 0];
  private pendingToplevel: ToplevelConfigure | null = null;
  private readonly parentRole: Role | null;

  constructor(
    readonly relay: Relay,
    wmBase: WlObject,
    readonly surface: WlObject,
    private readonly events: RoleEvents,
    popup: PopupPlacement | null,
  ) {
    const out = relay.host.out;
    this.xdgSurface = newOwnedObject(relay, 'xdg_surface', wmBase.version, (op, args) =>
      dispatchXdgSurfaceEvent({ configure: (_c, serial) => this.ack(serial) }, null, op, args),
    );
    writeXdgWmBaseGetXdgSurface(out, wmBase.hostId, this.xdgSurface.hostId, surface.hostId);
    this.parentRole = popup?.parent ?? null;
    if (popup) {
      const positioner = newOwnedObject(relay, 'xdg_positioner', wmBase.version, () => {});
      writeXdgWmBaseCreatePositioner(out, wmBase.hostId, positioner.hostId);
      const p = positioner.hostId;
      writeXdgPositionerSetSize(out, p, Math.max(1, popup.width), Math.max(1, popup.height));
      writeXdgPositionerSetAnchorRect(out, p, popup.x, popup.y, 1, 1);
      writeXdgPositionerSetAnchor(out, p, XdgPositionerAnchor.top_left);
      writeXdgPositionerSetGravity(out, p, XdgPositionerGravity.bottom_right);
      this.popup = newOwnedObject(relay, 'xdg_popup', wmBase.version, (op, args) =>
        // popup_done: the X client closes its menu itself when it sees the click elsewhere
        dispatchXdgPopupEvent({}, null, op, args),
      );
      writeXdgSurfaceGetPopup(
        out,
        this.xdgSurface.hostId,
        this.popup.hostId,
        popup.parent.xdgSurface.hostId,
        p,
      );
      writeXdgPositionerDestroy(out, p);
      ownedObjectDestroyed(relay, positioner);
      popup.parent.children.add(this);
    } else {
      this.toplevel = newOwnedObject(relay, 'xdg_toplevel', wmBase.version, (op, args) =>
        dispatchXdgToplevelEvent(
          {
            configure: (_c, width, height, states) => {
              const set = new Set<number>();
              for (let i = 0; i + 4 <= states.length; i += 4) set.add(states.readUInt32LE(i));
              this.pendingToplevel = { width, height, states: set };
            },
            close: () => this.events.close(this),
          },
          null,
          op,
          args,
        ),
      );
      writeXdgSurfaceGetToplevel(out, this.xdgSurface.hostId, this.toplevel.hostId);
    }
  }

  /** The role's first commit, without a buffer: it asks the compositor for a configure. */
  commit(): void {
    writeWlSurfaceCommit(this.relay.host.out, this.surface.hostId);
  }

  setTitle(tag: string, title: string): void {
    if (this.toplevel)
      writeXdgToplevelSetTitle(this.relay.host.out, this.toplevel.hostId, labelled(tag, title));
  }

  setAppId(prefix: string, appId: string): void {
    if (this.toplevel)
      writeXdgToplevelSetAppId(this.relay.host.out, this.toplevel.hostId, labelled(prefix, appId));
  }

  setSizeLimits(min: [number, number], max: [number, number]): void {
    if (!this.toplevel) return;
    writeXdgToplevelSetMinSize(this.relay.host.out, this.toplevel.hostId, min[0], min[1]);
    writeXdgToplevelSetMaxSize(this.relay.host.out, this.toplevel.hostId, max[0], max[1]);
  }

  /** The window's extent on the host (from its next commit on), in surface coordinates. */
  setWindowGeometry(width: number, height: number): void {
    if (this.destroyed || width <= 0 || height <= 0) return;
    if (width === this.geometry[0] && height === this.geometry[1]) return;
    this.geometry = [width, height];
    writeXdgSurfaceSetWindowGeometry(
      this.relay.host.out,
      this.xdgSurface.hostId,
      0,
      0,
      width,
      height,
    );
  }

  setParent(parent: Role | null): void {
    if (!this.toplevel) return;
    const p = parent?.toplevel && !parent.destroyed ? parent.toplevel.hostId : 0;
    writeXdgToplevelSetParent(this.relay.host.out, this.toplevel.hostId, p);
  }

  setFullscreen(on: boolean): void {
    if (!this.toplevel) return;
    if (on) writeXdgToplevelSetFullscreen(this.relay.host.out, this.toplevel.hostId, 0);
    else writeXdgToplevelUnsetFullscreen(this.relay.host.out, this.toplevel.hostId);
  }

  setMaximized(on: boolean): void {
    if (!this.toplevel) return;
    if (on) writeXdgToplevelSetMaximized(this.relay.host.out, this.toplevel.hostId);
    else writeXdgToplevelUnsetMaximized(this.relay.host.out, this.toplevel.hostId);
  }

  /** An interactive move (edges 0) or resize, for the seat and input serial given. */
  moveResize(seat: number, serial: number, edges: number | null): void {
    if (!this.toplevel) return;
    if (edges === null)
      writeXdgToplevelMove(this.relay.host.out, this.toplevel.hostId, seat, serial);
    else writeXdgToplevelResize(this.relay.host.out, this.toplevel.hostId, seat, serial, edges);
  }

  /** Destroys the role objects, popups on it first (the surface itself stays Xwayland's). */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    for (const child of [...this.children]) child.destroy();
    this.parentRole?.children.delete(this);
    const out = this.relay.host.out;
    if (this.popup) {
      writeXdgPopupDestroy(out, this.popup.hostId);
      ownedObjectDestroyed(this.relay, this.popup);
    }
    if (this.toplevel) {
      writeXdgToplevelDestroy(out, this.toplevel.hostId);
      ownedObjectDestroyed(this.relay, this.toplevel);
    }
    writeXdgSurfaceDestroy(out, this.xdgSurface.hostId);
    ownedObjectDestroyed(this.relay, this.xdgSurface);
  }

  private ack(serial: number): void {
    if (this.destroyed) return;
    writeXdgSurfaceAckConfigure(this.relay.host.out, this.xdgSurface.hostId, serial);
    const c = this.pendingToplevel;
    this.pendingToplevel = null;
    if (c) this.events.toplevelConfigure(this, c);
    if (!this.configured) {
      this.configured = true;
      this.events.configured(this);
    }
  }
}

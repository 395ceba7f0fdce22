// The proxy's own globals on Xwayland's host connection: a registry of its own, the xdg_wm_base
// that gives Xwayland's surfaces their roles (Xwayland's rootless surfaces have none), and a seat
// with the data device managers the clipboard bridge uses.
import {
  dispatchWlRegistryEvent,
  writeWlDisplayGetRegistry,
  writeWlRegistryBind,
} from '../generated/wayland.js';
import { dispatchXdgWmBaseEvent, writeXdgWmBasePong } from '../generated/xdg-shell.js';
import type { WlObject } from '../relay/objects.js';
import { newOwnedObject } from '../relay/owned.js';
import type { Relay } from '../relay/relay.js';

/** Globals the proxy binds for itself, at most at these versions. */
const WANTED: Record<string, number> = {
  xdg_wm_base: 5,
  wl_seat: 1,
  wp_viewporter: 1,
  wl_data_device_manager: 3,
  zwp_primary_selection_device_manager_v1: 1,
};

export class HostShell {
  /** Bound globals by interface name. */
  readonly bound = new Map<string, WlObject>();
  private readonly waiting = new Map<string, (() => void)[]>();

  constructor(readonly relay: Relay) {
    const registry = newOwnedObject(relay, 'wl_registry', 1, (opcode, args) =>
      dispatchWlRegistryEvent(
        {
          global: (_c, name, iface, version) => this.global(registry, name, iface, version),
        },
        null,
        opcode,
        args,
      ),
    );
    writeWlDisplayGetRegistry(relay.host.out, 1, registry.hostId);
    relay.flush();
  }

  get wmBase(): WlObject | null {
    return this.bound.get('xdg_wm_base') ?? null;
  }

  /** Runs `f` once xdg_wm_base is bound (at once if it is). */
  whenReady(f: () => void): void {
    this.whenBound(['xdg_wm_base'], f);
  }

  /** Runs `f` once all of `ifaces` are bound (never, if the host lacks one). */
  whenBound(ifaces: readonly string[], f: () => void): void {
    const missing = ifaces.find((i) => !this.bound.has(i));
    if (missing === undefined) {
      f();
      return;
    }
    const list = this.waiting.get(missing) ?? [];
    list.push(() => this.whenBound(ifaces, f));
    this.waiting.set(missing, list);
  }

  private global(registry: WlObject, name: number, iface: string, version: number): void {
    const wanted = WANTED[iface];
    if (wanted === undefined || this.bound.has(iface)) return;
    const v = Math.min(wanted, version);
    const obj = newOwnedObject(this.relay, iface, v, (opcode, args) => {
      if (iface === 'xdg_wm_base') {
        dispatchXdgWmBaseEvent(
          { ping: (_c, serial) => writeXdgWmBasePong(this.relay.host.out, obj.hostId, serial) },
          null,
          opcode,
          args,
        );
      }
    });
    writeWlRegistryBind(this.relay.host.out, registry.hostId, name, iface, v, obj.hostId);
    this.bound.set(iface, obj);
    const waiting = this.waiting.get(iface) ?? [];
    this.waiting.delete(iface);
    for (const f of waiting) f();
  }
}

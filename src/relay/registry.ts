import type { WlRegistryEventHandlers, WlRegistryRequestHandlers } from '../generated/wayland.js';
import {
  dispatchWlRegistryEvent,
  dispatchWlRegistryRequest,
  writeWlRegistryEventGlobal,
} from '../generated/wayland.js';
import type { WlObject } from './objects.js';
import { DisplayError, ProtocolError } from './errors.js';
import type { HookContext, InterfaceHooks, Relay } from './relay.js';

/**
 * What one wl_registry told its client: global name → interface and advertised version. A
 * removed global stays here (marked): a bind of it may already be on its way, which libwayland
 * and wlroots compositors accept (the host gets the bind and makes an inert object).
 */
type Advertised = Map<
  number,
  {
    readonly iface: string;
    readonly version: number;
    readonly local?: LocalGlobal;
    removed?: boolean;
  }
>;

/**
 * A global the proxy implements itself for the clients of one hook set (xwayland_shell_v1 for
 * Xwayland's own connection): advertised in every registry of theirs, never forwarded.
 */
export interface LocalGlobal {
  readonly iface: string;
  readonly version: number;
  /** Creates the client's object `id` (client-only: hostId 0; its hooks handle every request). */
  bind(relay: Relay, id: number, version: number): void;
}

/** Names of local globals: far above the small numbers compositors count from. */
const LOCAL_GLOBAL_NAME = 0xfff00000;

function advertised(registry: WlObject): Advertised {
  return (registry.state ??= new Map()) as Advertised;
}

/**
 * Clients see only the globals the proxy can relay, at the lower of the host's and the
 * proxy's version, and may bind only what they were shown. `hidden` names interfaces the
 * proxy knows but cannot carry over the current host link.
 */
export function registryHooks(
  hidden: ReadonlySet<string>,
  local: readonly LocalGlobal[] = [],
): InterfaceHooks {
  const events: WlRegistryEventHandlers<HookContext> = {
    global({ relay, obj }, name, iface, hostVersion) {
      const shown = advertised(obj);
      // the host's first global is the moment this registry lists its globals: ours go first
      if (local.length > 0 && !shown.has(LOCAL_GLOBAL_NAME)) {
        local.forEach((g, i) => {
          shown.set(LOCAL_GLOBAL_NAME + i, { iface: g.iface, version: g.version, local: g });
          writeWlRegistryEventGlobal(
            relay.client.out,
            obj.clientId,
            LOCAL_GLOBAL_NAME + i,
            g.iface,
            g.version,
          );
        });
      }
      const known = relay.tables.get(iface);
      if (!known || hidden.has(iface)) return true;
      const version = Math.min(hostVersion, known.version);
      if (shown.get(name)?.local) return true;
      shown.set(name, { iface, version });
      writeWlRegistryEventGlobal(relay.client.out, obj.clientId, name, iface, version);
      return true;
    },

    global_remove({ obj }, name) {
      // forward only the removal of a global the client was shown, once
      const global = advertised(obj).get(name);
      if (!global || global.local || global.removed) return true;
      global.removed = true;
      return false;
    },
  };

  const requests: WlRegistryRequestHandlers<HookContext> = {
    bind({ relay, obj }, name, iface, version, id) {
      const global = advertised(obj).get(name);
      if (!global || global.iface !== iface) {
        throw new ProtocolError(
          obj.clientId,
          DisplayError.invalidObject,
          `invalid global ${iface} (${name})`,
        );
      }
      if (version < 1 || version > global.version) {
        throw new ProtocolError(
          obj.clientId,
          DisplayError.invalidObject,
          `invalid version for global ${iface} (${name}): have ${global.version}, wanted ${version}`,
        );
      }
      if (global.local) {
        global.local.bind(relay, id, version);
        return true;
      }
      return false;
    },
  };

  return {
    event: (ctx, opcode, args) => dispatchWlRegistryEvent(events, ctx, opcode, args),
    request: (ctx, opcode, args) => dispatchWlRegistryRequest(requests, ctx, opcode, args),
  };
}

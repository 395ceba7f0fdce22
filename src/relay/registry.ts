import type { WlRegistryEventHandlers, WlRegistryRequestHandlers } from '../generated/wayland.js';
import {
  dispatchWlRegistryEvent,
  dispatchWlRegistryRequest,
  writeWlRegistryEventGlobal,
} from '../generated/wayland.js';
import type { WlObject } from './objects.js';
import { DisplayError, ProtocolError } from './errors.js';
import type { HookContext, InterfaceHooks } from './relay.js';

/**
 * What one wl_registry told its client: global name → interface and advertised version. A
 * removed global stays here (marked): a bind of it may already be on its way, which libwayland
 * and wlroots compositors accept (the host gets the bind and makes an inert object).
 */
type Advertised = Map<
  number,
  { readonly iface: string; readonly version: number; removed: boolean }
>;

function advertised(registry: WlObject): Advertised {
  return (registry.state ??= new Map()) as Advertised;
}

/**
 * Clients see only the globals the proxy can relay, at the lower of the host's and the
 * proxy's version, and may bind only what they were shown. `hidden` names interfaces the
 * proxy knows but cannot carry over the current host link.
 */
export function registryHooks(hidden: ReadonlySet<string>): InterfaceHooks {
  const events: WlRegistryEventHandlers<HookContext> = {
    global({ relay, obj }, name, iface, hostVersion) {
      const known = relay.tables.get(iface);
      if (!known || hidden.has(iface)) return true;
      const version = Math.min(hostVersion, known.version);
      advertised(obj).set(name, { iface, version, removed: false });
      writeWlRegistryEventGlobal(relay.client.out, obj.clientId, name, iface, version);
      return true;
    },

    global_remove({ obj }, name) {
      // forward only the removal of a global the client was shown, once
      const global = advertised(obj).get(name);
      if (!global || global.removed) return true;
      global.removed = true;
      return false;
    },
  };

  const requests: WlRegistryRequestHandlers<HookContext> = {
    bind({ obj }, name, iface, version) {
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
      return false;
    },
  };

  return {
    event: (ctx, opcode, args) => dispatchWlRegistryEvent(events, ctx, opcode, args),
    request: (ctx, opcode, args) => dispatchWlRegistryRequest(requests, ctx, opcode, args),
  };
}

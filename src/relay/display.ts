import type { WlDisplayEventHandlers } from '../generated/wayland.js';
import {
  dispatchWlDisplayEvent,
  writeWlDisplayEventDeleteId,
  writeWlDisplayEventError,
} from '../generated/wayland.js';
import { DisplayError } from './errors.js';
import type { HookContext, InterfaceHooks } from './relay.js';

const events: WlDisplayEventHandlers<HookContext> = {
  /**
   * The host refused a request the proxy made on its own (to an object of its own, clientId 0):
   * the client is told on wl_display, since the object the host names is none of its own, and a
   * null object in an error makes libwayland abort.
   */
  error({ relay }, objectId, code, message) {
    const obj = relay.hostIds.get(objectId);
    if (!obj || obj.clientId !== 0 || objectId === 1) return false;
    writeWlDisplayEventError(
      relay.client.out,
      1,
      1,
      DisplayError.implementation,
      `the host compositor refused the proxy's own ${obj.iface.name}@${objectId} (error ${code}): ${message}`,
    );
    return true;
  },

  /**
   * The host freed an id: free it on both sides, and only then tell the client, so a
   * client never reuses an id the host still knows.
   */
  delete_id({ relay }, hostId) {
    const obj = relay.hostIds.get(hostId);
    if (!obj || obj.serverCreated) return true;
    relay.hostIds.release(hostId);
    // clientId 0: an object the proxy made on the host for itself (a shadow buffer)
    if (obj.clientId === 0) return true;
    relay.clientIds.remove(obj.clientId);
    writeWlDisplayEventDeleteId(relay.client.out, 1, obj.clientId);
    return true;
  },
};

export const displayHooks: InterfaceHooks = {
  event: (ctx, opcode, args) => dispatchWlDisplayEvent(events, ctx, opcode, args),
};

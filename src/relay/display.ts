import type { WlDisplayEventHandlers } from '../generated/wayland.js';
import { dispatchWlDisplayEvent, writeWlDisplayEventDeleteId } from '../generated/wayland.js';
import type { HookContext, InterfaceHooks } from './relay.js';

const events: WlDisplayEventHandlers<HookContext> = {
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

import type { WlFixesRequestHandlers } from '../generated/wayland.js';
import { dispatchWlFixesRequest, writeWlFixesDestroyRegistry } from '../generated/wayland.js';
import { DisplayError, ProtocolError } from './errors.js';
import type { HookContext, InterfaceHooks } from './relay.js';

const requests: WlFixesRequestHandlers<HookContext> = {
  /**
   * Destroys a wl_registry by a request of another interface: the relay marks the registry dying
   * as its own destructor would, so that later requests to it are errors and its id stays taken
   * until the host's delete_id.
   */
  destroy_registry({ relay, obj }, registryId) {
    const registry = relay.clientIds.get(registryId);
    if (!registry || registry.dying || registry.iface.name !== 'wl_registry') {
      throw new ProtocolError(
        1,
        DisplayError.invalidObject,
        `invalid object ${registryId} as argument 0 of wl_fixes@${obj.clientId}.destroy_registry`,
      );
    }
    writeWlFixesDestroyRegistry(relay.host.out, obj.hostId, registry.hostId);
    registry.dying = true;
    return true;
  },
};

export const fixesHooks: InterfaceHooks = {
  request: (ctx, opcode, args) => dispatchWlFixesRequest(requests, ctx, opcode, args),
};

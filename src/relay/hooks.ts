import { displayHooks } from './display.js';
import type { InterfaceHooks } from './relay.js';
import { registryHooks } from './registry.js';

/** The interfaces that need more than generic forwarding, by name. */
export function defaultHooks(): Map<string, InterfaceHooks> {
  return new Map([
    ['wl_display', displayHooks],
    ['wl_registry', registryHooks],
  ]);
}

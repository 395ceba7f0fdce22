import { displayHooks } from './display.js';
import type { InterfaceHooks } from './relay.js';
import { registryHooks } from './registry.js';
import { titleTagHooks } from './xdg-toplevel.js';

export interface HookOptions {
  /** Prefix for every toplevel title (--tag); empty for none. */
  readonly tag: string;
}

/** The interfaces that need more than generic forwarding, by name. */
export function relayHooks(options: HookOptions): Map<string, InterfaceHooks> {
  const hooks = new Map<string, InterfaceHooks>([
    ['wl_display', displayHooks],
    ['wl_registry', registryHooks],
  ]);
  if (options.tag) for (const [name, h] of titleTagHooks(options.tag)) hooks.set(name, h);
  return hooks;
}

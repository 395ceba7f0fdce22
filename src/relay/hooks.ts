import { bufferHooks } from './buffer.js';
import { displayHooks } from './display.js';
import { fixesHooks } from './fixes.js';
import type { InterfaceHooks } from './relay.js';
import { iccHooks } from './icc.js';
import type { LocalGlobal } from './registry.js';
import { registryHooks } from './registry.js';
import type { ShadowAllocatorSource } from './shm.js';
import { Shadowing, shmHooks } from './shm.js';
import { surfaceHooks } from './surface.js';
import { toplevelLabelHooks } from './xdg-toplevel.js';

export interface HookOptions {
  /** Prefix for every toplevel title (--tag); empty for none. */
  readonly tag: string;
  /** Prefix for every toplevel app_id (--app-id-prefix); empty or absent for none. */
  readonly appIdPrefix?: string;
  /**
   * Shadow wl_shm buffers in host memory, copying only damage on commit: where each client's
   * host memory comes from (e.g. `crossDomainShadowShm`). Null or absent: wl_shm is relayed as is.
   */
  readonly shadowShm?: ShadowAllocatorSource | null;
  /** Globals kept from clients: privileged ones (policy.ts), and those the host link cannot carry. */
  readonly hiddenGlobals?: ReadonlySet<string>;
  /** Globals the proxy implements itself for these clients (their interfaces need hooks too). */
  readonly localGlobals?: readonly LocalGlobal[];
}

/** The interfaces that need more than generic forwarding, by name. */
export function relayHooks(options: HookOptions): Map<string, InterfaceHooks> {
  const hooks = new Map<string, InterfaceHooks>([
    ['wl_display', displayHooks],
    ['wl_registry', registryHooks(options.hiddenGlobals ?? new Set(), options.localGlobals)],
    ['wl_fixes', fixesHooks],
  ]);
  if (options.tag || options.appIdPrefix) {
    for (const [name, h] of toplevelLabelHooks(options.tag, options.appIdPrefix ?? ''))
      hooks.set(name, h);
  }
  if (options.shadowShm) {
    const shadowing = new Shadowing(options.shadowShm);
    for (const [name, h] of shmHooks(shadowing)) hooks.set(name, h);
    for (const [name, h] of surfaceHooks(shadowing)) hooks.set(name, h);
    hooks.set('wl_buffer', bufferHooks);
    for (const [name, h] of iccHooks(shadowing)) hooks.set(name, h);
  }
  return hooks;
}

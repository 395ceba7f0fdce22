import type { FuzzTarget } from '../harness.js';
import { activationTarget, controlTarget } from './cli.js';
import { deviceTarget } from './device.js';
import { relayTargets } from './relay.js';
import { vhostUserTarget } from './vhost-user.js';
import { virtWlTarget } from './virtwl.js';
import { x11Target } from './x11.js';

/** Every fuzz target, in the order `npm run fuzz` runs them. */
export const targets: readonly FuzzTarget<never>[] = [
  ...relayTargets,
  deviceTarget,
  vhostUserTarget,
  virtWlTarget,
  controlTarget,
  activationTarget,
  x11Target,
] as FuzzTarget<never>[];

import type { FuzzTarget } from '../harness.js';
import { deviceTarget } from './device.js';
import { relayTargets } from './relay.js';

/** Every fuzz target, in the order `npm run fuzz` runs them. */
export const targets: readonly FuzzTarget<never>[] = [
  ...relayTargets,
  deviceTarget,
] as FuzzTarget<never>[];

import { spawnSync } from 'node:child_process';
import { allInterfaces } from '../../src/generated/index.js';

/** Globals as wayland-info lists them: interface → the version of each instance. */
export type Globals = Map<string, number[]>;

/** Runs wayland-info with `env` and returns the globals it was shown. */
export function waylandInfoGlobals(env: NodeJS.ProcessEnv): Globals {
  const run = spawnSync('wayland-info', [], { env, encoding: 'utf8', timeout: 20000 });
  if (run.status !== 0) throw new Error(`wayland-info failed (${run.status}): ${run.stderr}`);
  const found: Globals = new Map();
  for (const m of run.stdout.matchAll(/^interface: '(\w+)',\s+version:\s+(\d+), name:\s+\d+$/gm)) {
    found.set(m[1], [...(found.get(m[1]) ?? []), Number(m[2])]);
  }
  return found;
}

const known = new Map(allInterfaces.map((i) => [i.name, i.version]));

/** The interfaces of `globals` that protocols/ has no XML for (the proxy cannot relay them). */
export function unknownGlobals(globals: Globals): string[] {
  return [...globals.keys()].filter((n) => !known.has(n)).sort();
}

/**
 * What a client of the proxy should see of a compositor's `direct` globals: those in protocols/,
 * less `hidden`, each at the lower of the compositor's and the proxy's version.
 */
export function expectedThroughProxy(
  direct: Globals,
  hidden: ReadonlySet<string> = new Set(),
): Globals {
  return new Map(
    [...direct]
      .filter(([name]) => known.has(name) && !hidden.has(name))
      .map(([name, versions]) => [name, versions.map((v) => Math.min(v, known.get(name)!))]),
  );
}

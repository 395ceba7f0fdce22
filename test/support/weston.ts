import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { type Running, accepts, start, stop, waitFor } from './processes.js';

export const repoRoot = resolve(import.meta.dirname, '../..');
export const proxyBin = join(repoRoot, 'bin/tswl-proxy');

/** A headless weston in a private XDG_RUNTIME_DIR, for tests that need a compositor but no pixels. */
export interface HeadlessWeston {
  readonly runtimeDir: string;
  /** Environment for clients of weston itself (WAYLAND_DISPLAY=wayland-0). */
  readonly env: NodeJS.ProcessEnv;
  readonly weston: Running;
  stop(): Promise<void>;
}

export async function startHeadlessWeston(
  extraEnv: NodeJS.ProcessEnv = {},
  /** `gl`: weston's GL renderer on Mesa's llvmpipe, which also takes planar YUV shm buffers. */
  renderer: 'pixman' | 'gl' = 'pixman',
): Promise<HeadlessWeston> {
  const runtimeDir = mkdtempSync(join(tmpdir(), 'tswl-rt-'));
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    XDG_RUNTIME_DIR: runtimeDir,
    WAYLAND_DISPLAY: 'wayland-0',
  };
  delete env.DISPLAY;
  delete env.WAYLAND_DEBUG;
  delete env.WAYLAND_DEBUG_PROXY;
  const weston = start(
    'weston',
    [
      '--backend=headless-backend.so',
      renderer === 'gl' ? '--use-gl' : '--use-pixman',
      '--socket=wayland-0',
      '--idle-time=0',
      '--no-config',
    ],
    { ...env, ...extraEnv },
  );
  await waitFor('weston to listen', () => accepts(join(runtimeDir, 'wayland-0')));
  return {
    runtimeDir,
    env,
    weston,
    async stop() {
      await stop(weston);
      rmSync(runtimeDir, { recursive: true, force: true });
    },
  };
}

/**
 * The proxy's environment leads nowhere: a client it spawns with the caller's WAYLAND_DISPLAY
 * (or one that ignores the proxy) finds no compositor, so a test cannot pass around the proxy.
 */
export const NOWHERE = 'no-compositor-here';

/**
 * Starts tswl-proxy against a weston (named by --host-display, not the environment) and waits
 * until it listens on wayland-1 (unless a command exits first).
 */
export async function startProxy(
  w: HeadlessWeston,
  args: string[],
  extraEnv: NodeJS.ProcessEnv = {},
): Promise<Running> {
  const hostArgs = args.some((a) => a.startsWith('--virtio'))
    ? []
    : ['--host-display', join(w.runtimeDir, 'wayland-0')];
  const proxy = start(proxyBin, [...hostArgs, ...args], {
    ...w.env,
    WAYLAND_DISPLAY: NOWHERE,
    ...extraEnv,
  });
  await waitFor(
    'tswl-proxy to listen',
    async () => (await accepts(join(w.runtimeDir, 'wayland-1'))) || proxy.child.exitCode !== null,
  );
  return proxy;
}

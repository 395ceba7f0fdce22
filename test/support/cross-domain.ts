// The cross-domain path on one machine: weston, tswl-host serving the local link, and the proxy
// in this process (so tests can read its copy counters and inspect its shadow buffers).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { allInterfaces } from '../../src/generated/index.js';
import { connectCrossDomain, crossDomainShadowShm } from '../../src/links/cross-domain.js';
import { ProtocolTables } from '../../src/protocol/tables.js';
import { ProxyServer } from '../../src/proxy.js';
import { relayHooks } from '../../src/relay/hooks.js';
import { VM_BOUNDARY_HIDDEN_GLOBALS, withheldGlobals } from '../../src/relay/policy.js';
import type { InterfaceHooks } from '../../src/relay/relay.js';
import { type Running, accepts, listening, start, stop, waitFor } from './processes.js';
import { repoRoot } from './weston.js';

export const hostBin = join(repoRoot, 'bin/tswl-host');

/** A weston of either backend in a private runtime dir. */
export interface Compositor {
  readonly runtimeDir: string;
  /** Environment for clients of weston itself (WAYLAND_DISPLAY=wayland-0). */
  readonly env: NodeJS.ProcessEnv;
  stop(): Promise<void>;
}

function baseEnv(runtimeDir: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    XDG_RUNTIME_DIR: runtimeDir,
    WAYLAND_DISPLAY: 'wayland-0',
  };
  delete env.DISPLAY;
  delete env.WAYLAND_DEBUG;
  delete env.WAYLAND_DEBUG_PROXY;
  return env;
}

/**
 * weston on its x11 backend under a private Xvfb: unlike headless, it has a seat (keyboard and
 * pointer), which the clipboard needs, and desktop-shell gives new windows keyboard focus.
 */
export async function startX11Weston(): Promise<Compositor> {
  const runtimeDir = mkdtempSync(join(tmpdir(), 'tswl-rt-'));
  const env = baseEnv(runtimeDir);
  const xvfb = start(
    'Xvfb',
    ['-displayfd', '1', '-screen', '0', '1280x800x24', '-nolisten', 'tcp'],
    env,
  );
  const display = await waitFor(
    'Xvfb to pick a display',
    () => /^(\d+)$/m.exec(xvfb.output())?.[1],
  );
  const weston = start(
    'weston',
    [
      '--backend=x11-backend.so',
      '--use-pixman',
      '--socket=wayland-0',
      '--idle-time=0',
      '--no-config',
    ],
    { ...env, DISPLAY: `:${display}` },
  );
  await waitFor('weston to listen', () => accepts(join(runtimeDir, 'wayland-0')), 20000);
  return {
    runtimeDir,
    env,
    async stop() {
      await stop(weston);
      await stop(xvfb);
      rmSync(runtimeDir, { recursive: true, force: true });
    },
  };
}

/** `tswl-host --listen-local` against the weston in `c.runtimeDir`, ready once it listens. */
export async function startHost(
  c: Pick<Compositor, 'runtimeDir' | 'env'>,
  name = 'tswl-gpu',
): Promise<{ run: Running; path: string }> {
  const path = join(c.runtimeDir, name);
  const run = start(
    hostBin,
    ['--wayland-sock', join(c.runtimeDir, 'wayland-0'), '--listen-local', path],
    c.env,
  );
  await waitFor('tswl-host to listen', () => listening(path) || run.child.exitCode !== null);
  if (!listening(path)) throw new Error(`tswl-host did not start:\n${run.output()}`);
  return { run, path };
}

export interface InProcessProxy {
  readonly server: ProxyServer;
  readonly warnings: string[];
  /** Environment for clients of the proxy (WAYLAND_DISPLAY=wayland-1). */
  readonly env: NodeJS.ProcessEnv;
  close(): void;
}

/**
 * A ProxyServer in this process whose relays reach the host through cross-domain contexts of
 * the device at `gpuPath`, with wl_shm shadowed. `wrap` may replace hooks, to observe them.
 */
export function startCrossDomainProxy(
  c: Compositor,
  gpuPath: string,
  wrap?: (hooks: Map<string, InterfaceHooks>) => void,
): InProcessProxy {
  const warnings: string[] = [];
  // as tswl-proxy --virtio-gpu-device sets it up
  const hooks = relayHooks({
    tag: '',
    shadowShm: crossDomainShadowShm,
    hiddenGlobals: new Set([...withheldGlobals([]), ...VM_BOUNDARY_HIDDEN_GLOBALS]),
  });
  wrap?.(hooks);
  const server = new ProxyServer({
    listenPath: join(c.runtimeDir, 'wayland-1'),
    connectHost: (handler) => connectCrossDomain(gpuPath, handler),
    hostName: gpuPath,
    tables: new ProtocolTables(allInterfaces),
    hooks,
    warn: (m) => warnings.push(m),
  });
  server.listen();
  return {
    server,
    warnings,
    env: { ...c.env, WAYLAND_DISPLAY: 'wayland-1' },
    close: () => server.close(),
  };
}

// What the soak and fault runs share: a weston that can be killed and started again on the same
// socket, a Wayland round trip by hand, and a process's open fds and RSS from /proc.
import { mkdtempSync, readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hostBin } from '../support/cross-domain.js';
import { type Running, accepts, listening, start, waitFor } from '../support/processes.js';
import { NOWHERE } from '../support/weston.js';
import { RawClient, type RawEvent, displayError } from '../support/raw-client.js';

/**
 * A private runtime directory for a soak run, the environment its programs get (no X display, a
 * WAYLAND_DISPLAY that leads nowhere: proxies reach weston only through --host-display), and where
 * weston listens in it.
 */
export function soakRuntime(prefix: string): {
  runtimeDir: string;
  env: NodeJS.ProcessEnv;
  compositor: string;
} {
  const runtimeDir = mkdtempSync(join(tmpdir(), prefix));
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    XDG_RUNTIME_DIR: runtimeDir,
    WAYLAND_DISPLAY: NOWHERE,
  };
  delete env.DISPLAY;
  return {
    runtimeDir,
    env,
    compositor: join(runtimeDir, 'wayland-0'),
  };
}

/** A headless weston on `runtimeDir`/wayland-0 (kill it, start another on the same socket). */
export async function startWestonAt(runtimeDir: string): Promise<Running> {
  const env: NodeJS.ProcessEnv = { ...process.env, XDG_RUNTIME_DIR: runtimeDir };
  delete env.DISPLAY;
  delete env.WAYLAND_DISPLAY;
  const weston = start(
    'weston',
    [
      '--backend=headless-backend.so',
      '--use-pixman',
      '--socket=wayland-0',
      '--idle-time=0',
      '--no-config',
    ],
    env,
  );
  await waitFor('weston to listen', () => accepts(join(runtimeDir, 'wayland-0')), 20000);
  return weston;
}

/** A headless weston and a `tswl-host --vhost-user` serving it, both in `runtimeDir`. */
export async function startVhostUserHost(
  runtimeDir: string,
): Promise<{ weston: Running; host: Running; socket: string }> {
  const weston = await startWestonAt(runtimeDir);
  const socket = join(runtimeDir, 'gpu.sock');
  const host = start(
    hostBin,
    ['--wayland-sock', join(runtimeDir, 'wayland-0'), '--vhost-user', socket],
    { ...process.env, XDG_RUNTIME_DIR: runtimeDir },
  );
  await waitFor('tswl-host to listen', () => listening(socket) || host.child.exitCode !== null);
  return { weston, host, socket };
}

/** What one round trip got: the globals announced, or the display error that ended it. */
export interface RoundTrip {
  globals: number;
  done: boolean;
  error: string | null;
  eof: boolean;
}

/** get_registry + sync on a new connection to `path`: the globals, or the error. */
export async function roundTrip(path: string, client = new RawClient(path)): Promise<RoundTrip> {
  try {
    client
      .message(1, 1, (w) => w.newId(2)) // wl_display.get_registry
      .message(1, 0, (w) => w.newId(3)); // wl_display.sync
    try {
      client.send();
    } catch {
      // refused before the requests went out: its reason is waiting to be read
    }
    return await readRoundTrip(client);
  } finally {
    client.close();
  }
}

export async function readRoundTrip(client: RawClient, timeoutMs = 5000): Promise<RoundTrip> {
  const r: RoundTrip = { globals: 0, done: false, error: null, eof: false };
  const deadline = Date.now() + timeoutMs;
  while (!r.done && !r.error && !r.eof && Date.now() < deadline) {
    const { events, eof } = await client.read(50, Math.max(1, deadline - Date.now()));
    r.eof = eof;
    for (const e of events) note(r, e);
  }
  return r;
}

function note(r: RoundTrip, e: RawEvent): void {
  const error = displayError(e);
  if (error) r.error = error.message;
  else if (e.id === 2 && e.opcode === 0) r.globals++;
  else if (e.id === 3 && e.opcode === 0) r.done = true;
}

export function openFds(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

/** What each open fd of a process is (for messages about leaks). */
export function describeFds(pid: number): string {
  return readdirSync(`/proc/${pid}/fd`)
    .map((fd) => {
      try {
        return `${fd}=${readlinkSync(`/proc/${pid}/fd/${fd}`)}`;
      } catch {
        return fd;
      }
    })
    .join(' ');
}

/** Resident set size of a process, in KiB. */
export function rssKiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN);
}

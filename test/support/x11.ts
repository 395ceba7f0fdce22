// Helpers for X11 tests: free display numbers, and where an X client's window is on screen.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { XConnection } from '../../src/xwayland/x11/connection.js';
import { XRequests } from '../../src/xwayland/x11/requests.js';

/**
 * An X display number nobody uses now: no lock file, no socket file, no abstract socket (other
 * test runs and Xvfb instances share this machine). Starts at a random point to keep parallel
 * runs apart.
 */
export function freeXDisplay(): number {
  const abstract = readFileSync('/proc/net/unix', 'utf8');
  const start = 100 + Math.floor(Math.random() * 800);
  for (let n = start; n < start + 200; n++) {
    if (existsSync(`/tmp/.X${n}-lock`) || existsSync(`/tmp/.X11-unix/X${n}`)) continue;
    if (abstract.includes(`@/tmp/.X11-unix/X${n}\n`)) continue;
    return n;
  }
  throw new Error('no free X display number');
}

export interface ClientArea {
  readonly x: number;
  readonly y: number;
  readonly width: number;
  readonly height: number;
}

/**
 * Where the window of WM_CLASS `className` is on the X screen of `display` (its absolute
 * position, which under weston is its place on the output), from xwininfo's tree.
 */
export function clientArea(display: string, className: string): ClientArea | null {
  const run = spawnSync('xwininfo', ['-display', display, '-root', '-tree'], { encoding: 'utf8' });
  const line = run.stdout
    .split('\n')
    .find((l) => l.includes(`"${className}")`) && /\d+x\d+[+-]/.test(l));
  const m = line && /(\d+)x(\d+)[+-]-?\d+[+-]-?\d+\s+\+?(-?\d+)\+?(-?\d+)/.exec(line);
  if (!m) return null;
  return { width: Number(m[1]), height: Number(m[2]), x: Number(m[3]), y: Number(m[4]) };
}

/** Crops a screenshot (ImageMagick). */
export function crop(file: string, area: ClientArea, out: string): string {
  const run = spawnSync('convert', [
    file,
    '-crop',
    `${area.width}x${area.height}+${area.x}+${area.y}`,
    '+repage',
    out,
  ]);
  if (run.status !== 0) throw new Error(`convert failed: ${run.stderr}`);
  return out;
}

/**
 * Runs a short-lived program to its end (killed with its process group after `timeoutMs`):
 * its exit status and everything it printed, as bytes.
 */
export function capture(
  command: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  timeoutMs = 15000,
): Promise<{ status: number | null; stdout: Buffer; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    const out: Buffer[] = [];
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // gone
      }
    }, timeoutMs);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ status: code, stdout: Buffer.concat(out), stderr });
    });
  });
}

/** Runs `f` with an X connection to display `display` (the proxy's own X client code). */
async function withX<T>(
  display: number,
  f: (x: XRequests, root: number) => Promise<T>,
): Promise<T> {
  const socket = connect(`/tmp/.X11-unix/X${display}`);
  const conn: XConnection = new XConnection(
    { write: (b) => void socket.write(b), close: () => socket.destroy() },
    { event: () => {}, error: () => {}, closed: () => {} },
  );
  socket.on('data', (d: Buffer) => conn.feed(d));
  socket.on('error', () => conn.close());
  try {
    const setup = await conn.ready();
    return await f(new XRequests(conn), setup.root);
  } finally {
    conn.close();
  }
}

/**
 * Sends an EWMH ClientMessage about `window` to the root of X display `display`, as X clients
 * ask the window manager for things (format 32, to SubstructureRedirect|SubstructureNotify);
 * resolves once the server has handled it.
 */
export function sendWmMessage(
  display: number,
  window: number,
  type: string,
  /** Numbers, or names of atoms. */
  data: (number | string)[],
): Promise<void> {
  return withX(display, async (x, root) => {
    const ev = Buffer.alloc(32);
    ev[0] = 33; // ClientMessage
    ev[1] = 32;
    ev.writeUInt32LE(window, 4);
    ev.writeUInt32LE(await x.internAtom(type), 8);
    for (const [i, v] of data.entries())
      ev.writeUInt32LE((typeof v === 'string' ? await x.internAtom(v) : v) >>> 0, 12 + 4 * i);
    x.sendEvent(false, root, (1 << 19) | (1 << 20), ev);
    await x.getInputFocus();
  });
}

/** Whether the X server of `display` has the first pointer button down (QueryPointer). */
export function buttonDown(display: number): Promise<boolean> {
  return withX(display, async (x, root) => {
    const mask = await x.conn.request(
      (w) => w.begin(38).u32(root).end(),
      (r) => r.u16(24),
    );
    return (mask & (1 << 8)) !== 0;
  });
}

// Real clients on weston (x11 backend, kiosk shell, under Xvfb): through the proxy, in host mode
// and across the cross-domain path (tswl-proxy --virtio-gpu-device → tswl-host → weston), each
// one shows exactly the pixels it shows when run directly, and typing reaches it.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Desktop, colourCount, differingPixels, withFrozenWallClock } from './support/desktop.js';
import * as native from '../src/native/index.js';
import { startCrossDomainProxy } from './support/cross-domain.js';
import { killAll, listening, type Running, start, stop, waitFor } from './support/processes.js';
import { ShmClient } from './support/shm-client.js';
import { NOWHERE, proxyBin, repoRoot } from './support/weston.js';

const hostBin = join(repoRoot, 'bin/tswl-host');

const shots = join(repoRoot, 'test-output', 'pixels');
let desktop: Desktop;
let gpu: Running;
const gpuPath = (): string => join(desktop.runtimeDir, 'tswl-gpu');

/** How a client reaches weston: directly, through tswl-proxy, or through tswl-proxy and tswl-host. */
type Route = 'direct' | 'proxied' | 'cross-domain';
const routes: Route[] = ['proxied', 'cross-domain'];

mkdirSync(shots, { recursive: true });

beforeAll(async () => {
  desktop = await Desktop.start();
  // -v: its log names every context and compositor connection, so a test can tell that a
  // client went through it
  gpu = start(
    hostBin,
    ['-v', '--wayland-sock', join(desktop.runtimeDir, 'wayland-0'), '--listen-local', gpuPath()],
    process.env,
  );
  await waitFor('tswl-host to listen', () => listening(gpuPath()));
});

afterAll(async () => {
  killAll();
  await desktop?.stop();
});

/** Runs a client on weston by one route until `stopAfter` resolves. */
async function run(command: string[], route: Route, stopAfter: (client: Running) => Promise<void>) {
  // the proxy is told where weston is; its environment leads nowhere, so its client can only
  // reach weston through it
  const through =
    route === 'cross-domain'
      ? ['--virtio-gpu-device', gpuPath()]
      : ['--host-display', join(desktop.runtimeDir, 'wayland-0')];
  const client =
    route === 'direct'
      ? start(command[0], command.slice(1), desktop.clientEnv())
      : start(
          proxyBin,
          ['--wayland-display', 'wayland-1', ...through, ...command],
          desktop.clientEnv(NOWHERE),
        );
  const carried = (): number =>
    (gpu.output().match(/context \d+ \(tswl-proxy\): connected to the compositor/g) ?? []).length;
  const before = carried();
  try {
    await stopAfter(client);
    // across the VM boundary the client's channel went through tswl-host
    if (route === 'cross-domain') expect(carried()).toBeGreaterThan(before);
  } finally {
    await stop(client);
    // the kiosk shell goes back to its empty black output once the window is gone
    await waitFor('the window to go', async () => {
      desktop.screenshot(join(shots, 'empty.png'));
      return colourCount(join(shots, 'empty.png')) <= 2;
    });
  }
}

// What the terminals show: colours, bold text and enough of it to cover several rows.
const terminalShell = join(shots, 'terminal-shell.sh');
writeFileSync(
  terminalShell,
  `#!/bin/sh\nprintf '\\033[1;31mred \\033[32mgreen \\033[34mblue \\033[7minverse\\033[0m\\n'\nseq 1 60 | paste -sd' '\nexec sh\n`,
  { mode: 0o755 },
);

const clients: [string, string[]][] = [
  // these animate from frame-callback times, which the frozen presentation clock keeps fixed;
  // simple-damage and flower also seed their randomness from the time of day
  ['weston-simple-shm', ['weston-simple-shm']],
  ['weston-simple-damage', withFrozenWallClock(['weston-simple-damage'])],
  ['weston-flower', withFrozenWallClock(['weston-flower'])],
  ['weston-terminal', ['weston-terminal', `--shell=${terminalShell}`]],
  ['foot', ['foot', '--override=cursor.blink=no', terminalShell]],
  ['gtk4-demo', ['gtk4-demo']],
];

describe('same pixels through the proxy', () => {
  test.each(clients)('%s', async (name, command) => {
    const direct = join(shots, `${name}-direct.png`);
    await run(command, 'direct', async () => void (await desktop.stableScreenshot(direct)));
    expect(colourCount(direct)).toBeGreaterThan(2);
    for (const route of routes) {
      const shot = join(shots, `${name}-${route}.png`);
      await run(command, route, async () => void (await desktop.stableScreenshot(shot)));
      expect(differingPixels(direct, shot), route).toBe(0);
    }
  });
});

describe('input through the proxy', () => {
  // across the VM boundary the keymap arrives as a host blob that the guest maps
  test.each(routes)(
    'text typed into the weston window reaches weston-terminal (%s)',
    async (route) => {
      const file = join(desktop.runtimeDir, `typed-${route}.txt`);
      await run(['weston-terminal', '--shell=/bin/sh'], route, async () => {
        await desktop.stableScreenshot(join(shots, `typing-${route}.png`));
        desktop.type(`echo typed-through-tswl > ${file}`);
        await waitFor(
          'the shell to write the file',
          () => existsSync(file) && readFileSync(file, 'utf8').length > 0,
        );
      });
      expect(readFileSync(file, 'utf8')).toBe('typed-through-tswl\n');
    },
  );
});

describe('damage-only copying across the cross-domain path, on screen', () => {
  /**
   * A toplevel that moves a 10×10 square over a still background, damaging only the square's old
   * and new places each frame; returns once the last frame is committed.
   */
  async function movingSquare(socket: string): Promise<ShmClient> {
    const c = new ShmClient(socket);
    const { compositor, shm } = await c.setup();
    const wmBase = c.newId();
    c.message(2, 0, (w) => {
      w.uint(c.globals.get('xdg_wm_base')!);
      w.string('xdg_wm_base');
      w.uint(1);
      w.newId(wmBase);
    });
    const surface = c.createSurface(compositor);
    const xdgSurface = c.newId();
    c.message(wmBase, 2, (w) => [w.newId(xdgSurface), w.object(surface)]);
    const toplevel = c.newId();
    c.message(xdgSurface, 1, (w) => w.newId(toplevel));
    c.commit(surface);
    const events = await c.roundtrip();
    const configure = events.find((e) => e.id === xdgSurface && e.opcode === 0)!;
    const size = events.find((e) => e.id === toplevel && e.opcode === 0)!;
    c.message(xdgSurface, 4, (w) => w.uint(configure.body.readUInt32LE(0))); // ack_configure
    const W = size.body.readInt32LE(0) || 640;
    const H = size.body.readInt32LE(4) || 480;
    const stride = W * 4;
    const frame = stride * H;
    const memfd = native.memfdCreate('moving-square', frame * 2);
    const pixels = native.mmap(memfd, 0, frame * 2, true);
    const pool = c.createPool(shm, memfd, frame * 2);
    const buffers = [0, 1].map((i) => c.createBuffer(pool, i * frame, W, H, stride));
    const draw = (i: number, x: number, y: number): void => {
      for (let p = i * frame; p < (i + 1) * frame; p += 4) pixels.writeUInt32LE(0xff3060a0, p);
      for (let row = y; row < y + 10; row++)
        for (let col = x; col < x + 10; col++)
          pixels.writeUInt32LE(0xfff0c020, i * frame + row * stride + col * 4);
    };
    let last: [number, number] | null = null;
    for (let n = 0; n < 20; n++) {
      const [x, y] = [20 + n * 25, 30 + n * 17];
      draw(n % 2, x, y);
      c.attach(surface, buffers[n % 2]);
      if (!last) c.damage(surface, 0, 0, W, H);
      else c.damage(surface, last[0], last[1], 10, 10).damage(surface, x, y, 10, 10);
      c.commit(surface);
      last = [x, y];
      await c.roundtrip();
      // answer weston's pings, as any client does
      for (const e of c.events.filter((e) => e.id === wmBase && e.opcode === 0).splice(0))
        c.message(wmBase, 3, (w) => w.uint(e.body.readUInt32LE(0)));
    }
    native.munmap(pixels);
    native.close(memfd);
    return c;
  }

  test('a moving square copies only its damage, and the screen shows what a direct run shows', async () => {
    const direct = join(shots, 'square-direct.png');
    const c = await movingSquare(join(desktop.runtimeDir, 'wayland-0'));
    await desktop.stableScreenshot(direct);
    c.close();
    await waitFor('the window to go', async () => {
      desktop.screenshot(join(shots, 'empty.png'));
      return colourCount(join(shots, 'empty.png')) <= 2;
    });
    const compositor = {
      runtimeDir: desktop.runtimeDir,
      env: desktop.clientEnv(),
      stop: async () => {},
    };
    const proxy = startCrossDomainProxy(compositor, gpuPath());
    try {
      const before = native.copiedBytes();
      const p = await movingSquare(join(desktop.runtimeDir, 'wayland-1'));
      const copied = native.copiedBytes() - before;
      const shot = join(shots, 'square-cross-domain.png');
      await desktop.stableScreenshot(shot);
      expect(differingPixels(direct, shot)).toBe(0);
      // the first frame of each of the (at most three) host buffers whole, then the squares only
      const frame = 640 * 480 * 4;
      expect(copied).toBeGreaterThanOrEqual(2 * frame);
      expect(copied).toBeLessThanOrEqual(3 * frame + 20 * 4 * 10 * 10 * 4);
      p.close();
    } finally {
      proxy.close();
    }
  });
});

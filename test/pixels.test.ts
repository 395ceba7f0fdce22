// Real clients on weston (x11 backend, kiosk shell, under Xvfb): through the proxy, in host mode
// and across the cross-domain path (tswl-proxy --virtio-gpu-device → tswl-host → weston), each
// one shows exactly the pixels it shows when run directly, and typing reaches it.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Desktop, colourCount, differingPixels, withFrozenWallClock } from './support/desktop.js';
import { killAll, type Running, start, stop, waitFor } from './support/processes.js';
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
  await waitFor('tswl-host to listen', () => existsSync(gpuPath()));
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

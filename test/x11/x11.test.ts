// X11 applications through tswl-proxy --x-display, on weston (x11 backend, kiosk shell, under
// Xvfb): each shows the same content as under weston's own Xwayland and window manager
// (`weston --xwayland`), in host mode and across the cross-domain path; typing reaches xterm;
// titles carry --tag; the compositor's close reaches xterm as WM_DELETE_WINDOW.
//
// Weston's own window manager draws a frame around X windows, ours leaves decorations to the host
// (weston draws none for xdg toplevels): screenshots are compared on the client's own area. The
// proxied run gets an output exactly the size of the direct run's client area, so both clients
// draw at the same size.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, test } from 'vitest';
import { Desktop, colourCount, differingPixels } from '../support/desktop.js';
import { killAll, type Running, start, stop, waitFor } from '../support/processes.js';
import { type ClientArea, clientArea, crop, freeXDisplay } from '../support/x11.js';
import { hostBin } from '../support/cross-domain.js';
import { proxyBin, repoRoot } from '../support/weston.js';

const shots = join(repoRoot, 'test-output', 'x11');
mkdirSync(shots, { recursive: true });

const desktops: Desktop[] = [];
afterEach(async () => {
  killAll();
  for (const d of desktops.splice(0)) await d.stop();
});
afterAll(() => killAll());

async function desktop(options: Parameters<typeof Desktop.start>[1] = {}): Promise<Desktop> {
  const d = await Desktop.start(1, options);
  desktops.push(d);
  return d;
}

/** Environment for the proxy: its host is given by --host-display, WAYLAND_DISPLAY leads nowhere. */
function proxyEnv(d: Desktop): NodeJS.ProcessEnv {
  return { ...d.clientEnv('nowhere'), GDK_BACKEND: 'x11' };
}

type Route = 'proxied' | 'cross-domain';

/** tswl-proxy --x-display running `command`, by one route to the desktop's weston. */
async function proxied(
  d: Desktop,
  route: Route,
  command: string[],
  extra: string[] = [],
): Promise<{ proxy: Running; display: number }> {
  const display = freeXDisplay();
  const through: string[] = ['--host-display', 'wayland-0'];
  if (route === 'cross-domain') {
    const gpu = join(d.runtimeDir, 'tswl-gpu');
    if (!existsSync(gpu)) {
      start(
        hostBin,
        ['--wayland-sock', join(d.runtimeDir, 'wayland-0'), '--listen-local', gpu],
        process.env,
      );
      await waitFor('tswl-host to listen', () => existsSync(gpu));
    }
    through.splice(0, 2, '--virtio-gpu-device', gpu);
  }
  const proxy = start(
    proxyBin,
    [
      '--wayland-display',
      'wayland-1',
      ...through,
      '--x-display',
      String(display),
      ...extra,
      ...command,
    ],
    proxyEnv(d),
  );
  return { proxy, display };
}

// What xterm shows: colours, bold text, several rows; printed once the window has its final
// size (xterm wraps lines at the width it has when they are printed).
const xtermScript = join(shots, 'xterm-shell.sh');
writeFileSync(
  xtermScript,
  `#!/bin/sh\nsleep 1\nprintf '\\033[1;31mred \\033[32mgreen \\033[34mblue \\033[7minverse\\033[0m\\n'\nseq 1 40 | paste -sd' '\nexec sleep 600\n`,
  { mode: 0o755 },
);

const clients: [string, string, string[]][] = [
  ['xterm', 'XTerm', ['xterm', '+bc', '-e', xtermScript]],
];
// Under weston's own WM with the kiosk shell, xeyes and xlogo end up partly off the output, so
// there is no direct run to compare them with: they must show, and the same in both routes.
const scaledClients: [string, string[]][] = [
  ['xeyes', ['xeyes']],
  ['xlogo', ['xlogo']],
];

/** Screenshot of the client's area, the pointer parked in its bottom-right corner and cut off. */
async function clientShot(d: Desktop, area: ClientArea, name: string): Promise<string> {
  d.xdotool('mousemove', String(area.x + area.width - 4), String(area.y + area.height - 4));
  const full = await d.stableScreenshot(join(shots, `${name}-full.png`));
  return crop(full, { ...area, height: area.height - 40 }, join(shots, `${name}.png`));
}

describe('X11 clients show the same content as under weston --xwayland', () => {
  test.each(clients)('%s', async (name, className, command) => {
    const direct = await desktop({ xwayland: true });
    const env = { ...direct.clientEnv(), DISPLAY: direct.westonXDisplay!, GDK_BACKEND: 'x11' };
    const client = start(command[0], command.slice(1), env);
    // weston's WM resizes the window after it maps: measure again until the size holds
    let area: ClientArea = await waitFor(`the ${name} window under weston's Xwayland`, () =>
      clientArea(direct.westonXDisplay!, className) ?? undefined,
    );
    let directShot: string;
    for (;;) {
      directShot = await clientShot(direct, area, `${name}-direct`);
      const again = clientArea(direct.westonXDisplay!, className);
      if (again && JSON.stringify(again) === JSON.stringify(area)) break;
      area = again ?? area;
    }
    expect(colourCount(directShot)).toBeGreaterThan(1);
    await stop(client);
    killAll();
    await direct.stop();
    desktops.splice(desktops.indexOf(direct), 1);

    // an output the size of that client area: the proxied client is configured to that size
    const d = await desktop({ width: area.width, height: area.height });
    for (const route of ['proxied', 'cross-domain'] as Route[]) {
      const { proxy } = await proxied(d, route, command);
      const shot = await clientShot(
        d,
        { x: 0, y: 0, width: area.width, height: area.height },
        `${name}-${route}`,
      );
      expect(differingPixels(directShot, shot), `${route}\n${proxy.output()}`).toBe(0);
      await stop(proxy);
      await waitFor('the window to go', async () => {
        d.screenshot(join(shots, 'empty.png'));
        return colourCount(join(shots, 'empty.png')) <= 2;
      });
    }
  });
});

describe('X11 clients that draw to their window size', () => {
  test.each(scaledClients)(
    '%s shows the same in host mode and across the cross-domain path',
    async (name, command) => {
      const d = await desktop();
      const area = { x: 0, y: 0, width: 640, height: 480 };
      const shotOf = async (route: Route): Promise<string> => {
        const { proxy } = await proxied(d, route, command);
        const shot = await clientShot(d, area, `${name}-${route}`);
        await stop(proxy);
        await waitFor('the window to go', async () => {
          d.screenshot(join(shots, 'empty.png'));
          return colourCount(join(shots, 'empty.png')) <= 2;
        });
        return shot;
      };
      const host = await shotOf('proxied');
      expect(colourCount(host)).toBeGreaterThan(1);
      expect(differingPixels(host, await shotOf('cross-domain'))).toBe(0);
    },
  );
});

describe('input, titles and close', () => {
  test.each(['proxied', 'cross-domain'] as Route[])(
    'text typed into weston reaches xterm (%s)',
    async (route) => {
      const d = await desktop();
      const file = join(d.runtimeDir, `typed-${route}.txt`);
      await proxied(d, route, ['xterm', '-e', '/bin/sh']);
      await d.stableScreenshot(join(shots, `typing-${route}.png`));
      d.type(`echo typed-through-tswl-x11 > ${file}`);
      await waitFor(
        'the shell to write the file',
        () => existsSync(file) && readFileSync(file, 'utf8').length > 0,
      );
      expect(readFileSync(file, 'utf8')).toBe('typed-through-tswl-x11\n');
    },
  );

  test('--tag prefixes X11 titles (weston logs the title it got)', async () => {
    const d = await desktop({ protocolLog: true });
    await proxied(
      d,
      'proxied',
      ['xterm', '-T', 'x11-title', '-e', 'sleep', '600'],
      ['--tag', '[vm] '],
    );
    await waitFor('weston to get the title', () =>
      /xdg_toplevel@\d+\.set_title\("\[vm\] x11-title"\)/.test(d.weston.output()),
    );
  });
});

// X11 applications through tswl-proxy --x-display on sway 1.12 (bookworm's Xwayland and X
// clients on the host, sway in the VM harness's chroot): the compositor's close reaches xterm as
// WM_DELETE_WINDOW, fullscreen goes both ways between _NET_WM_STATE and xdg_toplevel,
// _NET_WM_MOVERESIZE moves and resizes a floating window, and the primary selection (weston 10
// has none) and the clipboard go both ways between xclip and sway's wl-copy/wl-paste clients,
// in host mode and across the cross-domain path. Headless sway has no input device: a virtual
// pointer gives Xwayland the pointer events whose serials set_selection, move and resize need.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { type Running, killAll, start, stop, waitFor } from '../support/processes.js';
import { type Route, Sway, type SwayNode, type VirtualPointer } from '../support/sway.js';
import { colourCount, differingPixels } from '../support/desktop.js';
import { proxyBin, repoRoot } from '../support/weston.js';
import { buttonDown, capture, freeXDisplay, sendWmMessage } from '../support/x11.js';

let sway: Sway;
let pointer: VirtualPointer;

beforeAll(async () => {
  // debug: sway logs the requests it gets, among them move and resize
  sway = await Sway.start({ debug: true });
  await sway.startHost();
  pointer = await sway.virtualPointer();
});

afterEach(async () => {
  for (const r of running.splice(0)) await stop(r);
  await waitFor('the windows to go', () => sway.windows().length === 0, 20000);
});

afterAll(async () => {
  pointer?.close();
  killAll();
  await sway?.stop();
});

const running: Running[] = [];
const shots = join(repoRoot, 'test-output', 'sway');
mkdirSync(shots, { recursive: true });

/** tswl-proxy --x-display running `command` on sway; X clients get `env` (no way to sway). */
function x11(
  route: Exclude<Route, 'direct'>,
  command: string[],
  extra: string[] = [],
): { proxy: Running; env: NodeJS.ProcessEnv; display: number } {
  const display = freeXDisplay();
  const proxy = start(
    proxyBin,
    [...sway.proxyArgs(route), '--x-display', String(display), ...extra, '--', ...command],
    sway.clientEnv('tswl-nowhere'),
  );
  running.push(proxy);
  return { proxy, display, env: { ...sway.clientEnv('tswl-nowhere'), DISPLAY: `:${display}` } };
}

/** The window of sway's tree with this app_id (the X client's WM_CLASS class). */
function windowOf(appId: string): SwayNode | undefined {
  return sway.windows().find((w) => w.app_id === appId);
}

/** An X client's window by its WM_CLASS class (xdotool). */
async function xWindow(env: NodeJS.ProcessEnv, className: string): Promise<string> {
  return waitFor(`the X window of ${className}`, async () => {
    const r = await capture('xdotool', ['search', '--class', className], env);
    return r.stdout.toString().trim().split('\n')[0] || undefined;
  });
}

async function xprop(env: NodeJS.ProcessEnv, window: string, property: string): Promise<string> {
  return (await capture('xprop', ['-id', window, property], env)).stdout.toString();
}

const routes: Exclude<Route, 'direct'>[] = ['proxied', 'cross-domain'];

describe('window management', () => {
  test('the compositor closes xterm through WM_DELETE_WINDOW (swaymsg kill)', async () => {
    const { proxy } = x11('proxied', ['xterm', '-class', 'TswlClose', '-e', 'sleep', '600']);
    await waitFor('the xterm window on sway', () => windowOf('TswlClose'), 20000);
    sway.chroot(['swaymsg', '[app_id=TswlClose] kill']);
    // xterm ends cleanly on WM_DELETE_WINDOW; KillClient would leave it a fatal X I/O error
    expect(await proxy.exited, proxy.output()).toBe(0);
    expect(proxy.output()).not.toMatch(/fatal IO error|KillClient/);
  });

  test('fullscreen both ways: wmctrl → sway, swaymsg → _NET_WM_STATE', async () => {
    const { env } = x11('proxied', ['xterm', '-class', 'TswlFull', '-T', 'tswl-full']);
    await waitFor('the xterm window on sway', () => windowOf('TswlFull'), 20000);
    const window = await xWindow(env, 'TswlFull');
    // X → sway: _NET_WM_STATE client messages to the root
    await capture('wmctrl', ['-r', 'tswl-full', '-b', 'add,fullscreen'], env);
    await waitFor('sway to make it fullscreen', () => windowOf('TswlFull')?.fullscreen_mode === 1);
    await capture('wmctrl', ['-r', 'tswl-full', '-b', 'remove,fullscreen'], env);
    await waitFor('sway to end fullscreen', () => windowOf('TswlFull')?.fullscreen_mode === 0);
    // sway → X: the configure's fullscreen state lands in _NET_WM_STATE
    sway.chroot(['swaymsg', '[app_id=TswlFull] fullscreen enable']);
    await waitFor('_NET_WM_STATE_FULLSCREEN', async () =>
      (await xprop(env, window, '_NET_WM_STATE')).includes('_NET_WM_STATE_FULLSCREEN'),
    );
    sway.chroot(['swaymsg', '[app_id=TswlFull] fullscreen disable']);
    await waitFor(
      'no _NET_WM_STATE_FULLSCREEN',
      async () => !(await xprop(env, window, '_NET_WM_STATE')).includes('FULLSCREEN'),
    );
  });
  test('_NET_WM_MOVERESIZE moves and resizes a floating window with the pointer', async () => {
    const { env, display } = x11('proxied', ['xterm', '-class', 'TswlMove', '-geometry', '40x10']);
    await waitFor('the xterm window on sway', () => windowOf('TswlMove'), 20000);
    const window = Number(await xWindow(env, 'TswlMove'));
    sway.chroot(['swaymsg', '[app_id=TswlMove] floating enable, move position 100 100']);
    const rect = (): { x: number; y: number; width: number; height: number } =>
      windowOf('TswlMove')!.rect as { x: number; y: number; width: number; height: number };
    await waitFor('the window at 100,100', () => rect().x === 100 && rect().y === 100);
    const before = rect();
    // the button goes down on the window (Xwayland gets its serial), then xterm's "request"
    const drag = async (from: [number, number], to: [number, number], direction: number) => {
      pointer.moveTo(...from);
      pointer.button(true);
      await waitFor('the press to reach the X server', () => buttonDown(display));
      // sway moves the window with the pointer once it has the request (its protocol log)
      const request = direction === 8 ? /xdg_toplevel#\d+\.move\(/g : /xdg_toplevel#\d+\.resize\(/g;
      const seen = sway.sway.output().match(request)?.length ?? 0;
      await sendWmMessage(display, window, '_NET_WM_MOVERESIZE', [...from, direction, 1, 1]);
      await waitFor(
        'sway to get the request',
        () => (sway.sway.output().match(request)?.length ?? 0) > seen,
      );
      pointer.moveTo(...to);
      pointer.button(false);
    };
    // 8: move
    await drag([before.x + 20, before.y + 20], [before.x + 80, before.y + 60], 8);
    await waitFor('sway to move the window by (60, 40)', () => rect().x === before.x + 60);
    expect(rect()).toMatchObject({ y: before.y + 40, width: before.width, height: before.height });
    // 4: resize by the bottom-right corner
    const moved = rect();
    const corner: [number, number] = [moved.x + moved.width - 2, moved.y + moved.height - 2];
    await drag(corner, [corner[0] + 100, corner[1] + 50], 4);
    await waitFor('sway to resize the window', () => rect().width > moved.width);
    expect(rect().height).toBeGreaterThan(moved.height);
    expect(rect()).toMatchObject({ x: moved.x, y: moved.y });
  });
});

describe('selections between xclip and sway (wl-copy and wl-paste use wlr data control)', () => {
  const lines = (n: number, word: string): string =>
    Array.from({ length: n }, (_, i) => `${word} line ${i} of the selection\n`).join('');

  test.each(
    routes.flatMap((route) =>
      (['primary', 'clipboard'] as const).map((selection) => [selection, route] as const),
    ),
  )('%s, 1.2 MB each way (%s)', async (selection, route) => {
    const { proxy, env } = x11(route, ['xterm', '-class', 'TswlSel', '-e', 'sleep', '600'], ['-v']);
    // the X window has sway's focus: the host's selections reach Xwayland's connection; the
    // pointer's enter gives it a serial, which set_selection needs
    await waitFor('the xterm window on sway', () => windowOf('TswlSel')?.focused, 20000);
    pointer.moveTo(320 + (route === 'proxied' ? 1 : 2), 240);
    const name = selection === 'primary' ? 'PRIMARY' : 'CLIPBOARD';
    const wlFlag = selection === 'primary' ? ['--primary'] : [];
    const fromX = lines(38000, `${route}-x11`);
    const fromHost = lines(38000, `${route}-host`);
    const file = (n: string, text: string): string => {
      const path = join(sway.clientDir, n);
      writeFileSync(path, text);
      return path;
    };
    const pasted = async (command: string[], penv: NodeJS.ProcessEnv, want: string) => {
      let got = '';
      await waitFor(
        `${command[0]} to paste what was copied`,
        async () => {
          got = (await capture(command[0], command.slice(1), penv)).stdout.toString();
          return got === want;
        },
        20000,
      ).catch(() => undefined);
      expect(got.length, proxy.output().slice(-3000)).toBe(want.length);
      expect(got === want).toBe(true);
    };
    const hostEnv = sway.clientEnv();
    const logged = (what: RegExp) =>
      waitFor(`the proxy to log ${what.source}`, () => what.test(proxy.output()));

    // X11 → sway
    running.push(start('xclip', ['-selection', name, '-i', file('x.txt', fromX)], env));
    await pasted(['wl-paste', ...wlFlag, '--no-newline'], hostEnv, fromX);
    await logged(
      new RegExp(
        `X11 ${selection} to the host as [^:]+: ${fromX.length} bytes in \\d+ INCR chunks`,
      ),
    );
    // sway → X11
    running.push(
      start('sh', ['-c', `exec wl-copy ${wlFlag.join(' ')} < ${file('h.txt', fromHost)}`], hostEnv),
    );
    await pasted(['xclip', '-selection', name, '-o'], env, fromHost);
    await logged(
      new RegExp(
        `X11 ${selection} from the host as [^:]+: ${fromHost.length} bytes in \\d+ INCR chunks`,
      ),
    );
  });
});

describe('--x-unscale', () => {
  // colours and text, printed once xterm has its final size (it wraps at the width it has then)
  const script = join(shots, 'x11-unscale.sh');
  writeFileSync(
    script,
    `#!/bin/sh\nsleep 1\nprintf '\\033[1;31mred \\033[32mgreen \\033[34mblue\\033[0m\\n'\nseq 1 30 | paste -sd' '\nexec sleep 600\n`,
    { mode: 0o755 },
  );

  /** A screenshot (grim: the output's pixels) of xterm with the output at `scale`. */
  async function shot(
    scale: number,
    extra: string[],
    name: string,
    during: (env: NodeJS.ProcessEnv) => Promise<void> = async () => {},
    route: Exclude<Route, 'direct'> = 'proxied',
  ): Promise<string> {
    sway.chroot(['swaymsg', `output * scale ${scale}`]);
    const { proxy, env } = x11(route, ['xterm', '+bc', '-class', 'TswlScale', '-e', script], extra);
    await waitFor('the xterm window on sway', () => windowOf('TswlScale'), 20000);
    // the script prints after a second: a blank terminal is stable until then
    await new Promise((r) => setTimeout(r, 1500));
    const file = await sway.stableScreenshot(join(shots, name));
    await during(env);
    await stop(proxy);
    await waitFor('the window to go', () => sway.windows().length === 0, 20000);
    return file;
  }

  test('xterm at --x-unscale 2 on a scale-2 output shows the pixels it shows at scale 1, in both routes', async () => {
    try {
      const base = await shot(1, [], 'x11-scale-1.png');
      expect(colourCount(base)).toBeGreaterThan(2);
      // at scale 2 the output has half the logical size: X draws the window in twice as many
      // pixels as the host asks for, and the viewport shows them one to one
      // the pointer at logical (100, 50) of the scale-2 output is at X pixel (200, 100)
      const pointerAt = async (env: NodeJS.ProcessEnv) => {
        pointer.moveTo(200, 100); // of the virtual pointer's 640×480: a fraction of the output
        await waitFor('the pointer in X pixels', async () =>
          /x:200 y:100 /.test(
            (await capture('xdotool', ['getmouselocation'], env)).stdout.toString(),
          ),
        );
      };
      const sharp = await shot(2, ['--x-unscale', '2'], 'x11-scale-2-unscaled.png', pointerAt);
      expect(differingPixels(base, sharp)).toBe(0);
      // and across the cross-domain path, where Xwayland's buffers are shadowed
      const across = await shot(
        2,
        ['--x-unscale', '2'],
        'x11-scale-2-unscaled-cross-domain.png',
        undefined,
        'cross-domain',
      );
      expect(differingPixels(base, across)).toBe(0);
      // without it, the same xterm is half the size, scaled up by sway
      const scaledUp = await shot(2, [], 'x11-scale-2.png');
      expect(differingPixels(base, scaledUp)).toBeGreaterThan(1000);
    } finally {
      sway.chroot(['swaymsg', 'output * scale 1']);
    }
  });
});

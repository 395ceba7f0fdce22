// X11 applications through tswl-proxy --x-display, on weston (x11 backend, kiosk shell, under
// Xvfb): each shows the same content as under weston's own Xwayland and window manager
// (`weston --xwayland`), in host mode and across the cross-domain path; a GTK3 menu opens where
// it does there; typing reaches xterm; titles carry --tag; the clipboard goes both ways. What
// needs sway (close, fullscreen, move and resize, the primary selection, --x-unscale) is in
// test/sway/x11.test.ts.
//
// Weston's own window manager draws a frame around X windows, ours leaves decorations to the host
// (weston draws none for xdg toplevels): screenshots are compared on the client's own area. The
// proxied run gets an output exactly the size of the direct run's client area, so both clients
// draw at the same size.
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, onTestFinished, test } from 'vitest';
import { Desktop, colourCount, differingPixels } from '../support/desktop.js';
import { killAll, listening, type Running, start, stop, waitFor } from '../support/processes.js';
import {
  type ClientArea,
  capture,
  clientArea,
  crop,
  freeXDisplay,
  sendWmMessage,
} from '../support/x11.js';
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

// sid's Xwayland 24.1 (xwayland_shell_v1) from the VM harness chroot, through a wrapper; bookworm's
// 22.1.9 pairs windows by WL_SURFACE_ID only
const sid = join(process.env.TSWL_VM_DIR ?? '/var/cache/tswl-proxy-vm', 'sid');
const sidXwayland = join(shots, 'sid-xwayland.sh');
writeFileSync(sidXwayland, `#!/bin/sh\nexec chroot ${sid} /usr/bin/Xwayland "$@"\n`, {
  mode: 0o755,
});
type Xwayland = 'bookworm' | 'sid';
const xwaylandArgs = (x: Xwayland): string[] => {
  if (x === 'bookworm') return [];
  expect(existsSync(join(sid, 'usr/bin/Xwayland')), 'run scripts/vm/build.sh (sid Xwayland)').toBe(
    true,
  );
  return ['--xwayland-binary', sidXwayland];
};

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
      await waitFor('tswl-host to listen', () => listening(gpu));
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
// size (xterm wraps lines at the width it has when they are printed): the 628-pixel-wide window
// of both runs has more than 100 columns, the 80-column one xterm starts with fewer.
const xtermScript = join(shots, 'xterm-shell.sh');
writeFileSync(
  xtermScript,
  `#!/bin/sh\nwhile [ "$(stty size | cut -d' ' -f2)" -lt 100 ]; do sleep 0.1; done\nsleep 0.5\nprintf '\\033[1;31mred \\033[32mgreen \\033[34mblue \\033[7minverse\\033[0m\\n'\nseq 1 40 | paste -sd' '\nexec sleep 600\n`,
  { mode: 0o755 },
);

const clients: [string, string, string[]][] = [
  ['xterm', 'XTerm', ['xterm', '+bc', '-e', xtermScript]],
];
// Under weston's own WM with the kiosk shell, xeyes and xlogo end up partly off the output, so
// there is no direct run to compare them with: they must show, and the same in both routes.
// xeyes without its shape: the pixels of a shaped window outside its shape are whatever was there
// before the compositor's size arrived (an eye drawn at the first size, or not), run by run.
const scaledClients: [string, string[]][] = [
  ['xeyes', ['xeyes', '+shape']],
  ['xlogo', ['xlogo']],
];

/** Screenshot of the client's area, the pointer parked in its bottom-right corner and cut off. */
async function clientShot(d: Desktop, area: ClientArea, name: string): Promise<string> {
  d.xdotool('mousemove', String(area.x + area.width - 4), String(area.y + area.height - 4));
  const full = await d.stableScreenshot(join(shots, `${name}-full.png`));
  return crop(full, { ...area, height: area.height - 40 }, join(shots, `${name}.png`));
}

describe('X11 clients show the same content as under weston --xwayland', () => {
  test.each(
    clients.flatMap(([n, c, cmd]) =>
      (['bookworm', 'sid'] as Xwayland[]).map((x) => [`${n} (${x} Xwayland)`, c, cmd, x] as const),
    ),
  )('%s', async (name, className, command, xwayland) => {
    const direct = await desktop({ xwayland: true });
    const env = { ...direct.clientEnv(), DISPLAY: direct.westonXDisplay!, GDK_BACKEND: 'x11' };
    const client = start(command[0], command.slice(1), env);
    // weston's WM resizes the window after it maps: measure again until the size holds
    let area: ClientArea = await waitFor(
      `the ${name} window under weston's Xwayland`,
      () => clientArea(direct.westonXDisplay!, className) ?? undefined,
    );
    let directShot: string;
    // and until it has printed (red, green, blue and inverse text on white)
    for (;;) {
      directShot = await clientShot(direct, area, `${name}-direct`);
      const again = clientArea(direct.westonXDisplay!, className);
      const settled = again && JSON.stringify(again) === JSON.stringify(area);
      if (settled && colourCount(directShot) > 4) break;
      area = again ?? area;
    }
    await stop(client);
    killAll();
    await direct.stop();
    desktops.splice(desktops.indexOf(direct), 1);

    // an output the size of that client area: the proxied client is configured to that size
    const d = await desktop({ width: area.width, height: area.height });
    for (const route of ['proxied', 'cross-domain'] as Route[]) {
      const { proxy } = await proxied(d, route, command, xwaylandArgs(xwayland));
      // xterm's script prints after a second: a blank terminal is stable until then
      let shot = '';
      const same = async (): Promise<boolean> => {
        shot = await clientShot(
          d,
          { x: 0, y: 0, width: area.width, height: area.height },
          `${name}-${route}-${xwayland}`,
        );
        return differingPixels(directShot, shot) === 0;
      };
      await waitFor('the same pixels as the direct run', same, 15000).catch(() => undefined);
      expect(differingPixels(directShot, shot), `${route}\n${proxy.output()}`).toBe(0);
      await stop(proxy);
      await waitFor('the window to go', async () => {
        d.screenshot(join(shots, 'empty.png'));
        return colourCount(join(shots, 'empty.png')) <= 2;
      });
    }
  });
});

describe('GTK3: GDK_BACKEND=x11 gtk3-demo, fullscreen in both runs', () => {
  // Under the kiosk shell our toplevel is fullscreen, and GTK then hides its title bar; weston's
  // own WM leaves gtk3-demo a framed window partly off the output. Asking weston's WM for
  // fullscreen as well (_NET_WM_STATE, as an X client would) puts both runs in the same state,
  // so whole screens compare (less the bottom rows, where the pointer is parked).
  const menuAt = [300, 260];
  const whole = { x: 0, y: 0, width: 640, height: 480 };

  /** The window, then the context menu of its text view, opened by a right click. */
  async function windowAndMenu(d: Desktop, name: string): Promise<[string, string]> {
    const window = await clientShot(d, whole, `${name}-window`);
    d.xdotool('mousemove', String(menuAt[0]), String(menuAt[1]));
    d.xdotool('click', '3');
    // the pointer leaves the menu without selecting anything (it holds the grab)
    const menu = await clientShot(d, whole, `${name}-menu`);
    return [window, menu];
  }

  test.each(['proxied', 'cross-domain'] as Route[])(
    '%s: the same pixels, and a right-click menu opens where it opens under weston --xwayland',
    async (route) => {
      const direct = await desktop({ xwayland: true });
      const xEnv = { ...proxyEnv(direct), DISPLAY: direct.westonXDisplay! };
      start('gtk3-demo', [], xEnv);
      const window = await waitFor('gtk3-demo under weston --xwayland', async () => {
        const found = await capture('xdotool', ['search', '--name', '^Application Class$'], xEnv);
        return Number(found.stdout.toString().split('\n')[0]) || undefined;
      });
      const westonDisplay = Number(direct.westonXDisplay!.slice(1));
      await sendWmMessage(westonDisplay, window, '_NET_WM_STATE', [
        1,
        '_NET_WM_STATE_FULLSCREEN',
        0,
        1,
      ]);
      const [directWindow, directMenu] = await windowAndMenu(direct, 'gtk3-direct');
      expect(colourCount(directWindow)).toBeGreaterThan(2);
      // the menu is on screen, and only where it opened
      expect(differingPixels(directWindow, directMenu)).toBeGreaterThan(1000);
      killAll();
      await direct.stop();
      desktops.splice(desktops.indexOf(direct), 1);

      const d = await desktop();
      await proxied(d, route, ['gtk3-demo']);
      const [ourWindow, ourMenu] = await windowAndMenu(d, `gtk3-${route}`);
      expect(differingPixels(directWindow, ourWindow)).toBe(0);
      expect(differingPixels(directMenu, ourMenu)).toBe(0);
    },
  );
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
  test.each([
    ['proxied', 'bookworm'],
    ['cross-domain', 'bookworm'],
    ['proxied', 'sid'],
  ] as [Route, Xwayland][])(
    'text typed into weston reaches xterm (%s, %s Xwayland)',
    async (route, xwayland) => {
      const d = await desktop();
      const file = join(d.runtimeDir, `typed-${route}.txt`);
      await proxied(d, route, ['xterm', '-e', '/bin/sh'], xwaylandArgs(xwayland));
      await d.stableScreenshot(join(shots, `typing-${route}.png`));
      d.type(`echo typed-through-tswl-x11 > ${file}`);
      await waitFor(
        'the shell to write the file',
        () => existsSync(file) && readFileSync(file, 'utf8').length > 0,
      );
      expect(readFileSync(file, 'utf8')).toBe('typed-through-tswl-x11\n');
    },
  );

  test('maximize both ways on weston’s desktop shell: wmctrl → set_maximized, its configure → _NET_WM_STATE', async () => {
    const d = await desktop({ shell: 'desktop' });
    const { display } = await proxied(d, 'proxied', [
      'xterm',
      '-class',
      'TswlMax',
      '-T',
      'tswl-max',
      '-e',
      'sleep',
      '600',
    ]);
    const xEnv = { ...d.clientEnv('nowhere'), DISPLAY: `:${display}` };
    const window = await waitFor('the xterm window', async () => {
      const found = await capture('xdotool', ['search', '--class', 'TswlMax'], xEnv);
      return found.stdout.toString().split('\n')[0] || undefined;
    });
    const state = async (): Promise<string> =>
      (await capture('xprop', ['-id', window, '_NET_WM_STATE'], xEnv)).stdout.toString();
    const width = async (): Promise<number> =>
      Number(
        /Width: (\d+)/.exec(
          (await capture('xwininfo', ['-id', window], xEnv)).stdout.toString(),
        )?.[1],
      );
    await waitFor(
      'xterm at its own size',
      async () => (await width()) > 0 && (await width()) < 640,
    );
    // xdotool and xwininfo find the window before it is mapped; wmctrl only once the window
    // manager lists it in _NET_CLIENT_LIST (asked earlier, wmctrl says it cannot find the window)
    await waitFor('wmctrl to list the window', async () =>
      (await capture('wmctrl', ['-l'], xEnv)).stdout.toString().includes('tswl-max'),
    );
    const wmctrl = async (change: string): Promise<void> =>
      expect(
        (await capture('wmctrl', ['-r', 'tswl-max', '-b', change], xEnv)).status,
        `wmctrl -b ${change}`,
      ).toBe(0);
    // X → weston: the client message becomes set_maximized; weston's maximized configure comes
    // back, and the X window takes its size and the state
    await wmctrl('add,maximized_vert,maximized_horz');
    await waitFor('_NET_WM_STATE_MAXIMIZED_*', async () =>
      /MAXIMIZED_VERT.*MAXIMIZED_HORZ|MAXIMIZED_HORZ.*MAXIMIZED_VERT/.test(await state()),
    );
    await waitFor('xterm as wide as the output', async () => (await width()) === 640);
    await wmctrl('remove,maximized_vert,maximized_horz');
    await waitFor('no _NET_WM_STATE_MAXIMIZED_*', async () => !/MAXIMIZED/.test(await state()));
    await waitFor('xterm at its own size again', async () => (await width()) < 640);
  });

  test('--tag and --app-id-prefix label X11 toplevels (weston logs what it got)', async () => {
    const d = await desktop({ protocolLog: true });
    await proxied(
      d,
      'proxied',
      ['xterm', '-T', 'x11-title', '-e', 'sleep', '600'],
      ['--tag', '[vm] ', '--app-id-prefix', 'vm.'],
    );
    await waitFor('weston to get the title', () =>
      /xdg_toplevel@\d+\.set_title\("\[vm\] x11-title"\)/.test(d.weston.output()),
    );
    // the app_id is WM_CLASS's class
    expect(d.weston.output()).toMatch(/xdg_toplevel@\d+\.set_app_id\("vm\.XTerm"\)/);
  });
});

describe('clipboard (CLIPBOARD: weston 10 has no primary selection; PRIMARY is tested on sway)', () => {
  // More than xclip puts in one property (a quarter of the server's 16 MiB request limit), so
  // xclip hands it over in INCR chunks, and more than our 256 KiB requests carry, so we do too.
  const lines = (n: number, word: string): string =>
    Array.from({ length: n }, (_, i) => `${word} line ${i} of the clipboard\n`).join('');
  const fromX = lines(40000, 'x11');
  const fromHost = lines(40000, 'host');

  test.each(['proxied', 'cross-domain'] as Route[])(
    '1.3 MB each way between xclip and the host, and a Wayland client of the same proxy (%s)',
    async (route) => {
      const d = await desktop();
      const { proxy, display } = await proxied(d, route, ['xterm', '-e', 'sleep', '600'], ['-v']);
      await d.stableScreenshot(join(shots, `clipboard-${route}.png`));
      // X clients reach the display only; the host's wl-copy and wl-paste reach weston
      const xEnv = { ...d.clientEnv('nowhere'), DISPLAY: `:${display}` };
      const hostEnv = d.clientEnv();
      const proxiedEnv = d.clientEnv('wayland-1');
      const file = (name: string, text: string): string => {
        const path = join(d.runtimeDir, name);
        writeFileSync(path, text);
        return path;
      };
      const pasted = async (command: string[], env: NodeJS.ProcessEnv, want: string) => {
        let got = '';
        await waitFor(
          `${command[0]} to paste what was copied`,
          async () => {
            got = (await capture(command[0], command.slice(1), env)).stdout.toString();
            return got === want;
          },
          20000,
        ).catch(() => undefined);
        writeFileSync(join(shots, `clipboard-${route}-proxy.log`), proxy.output());
        // not toBe: a megabyte of diff helps nobody
        expect(got.length, `${command.join(' ')}\n${proxy.output().slice(-3000)}`).toBe(
          want.length,
        );
        expect(got === want).toBe(true);
      };

      // X11 → host
      start('xclip', ['-selection', 'clipboard', '-i', file('x.txt', fromX)], xEnv);
      await pasted(['wl-paste', '--no-newline'], hostEnv, fromX);
      const logged = (what: RegExp) =>
        waitFor(`the proxy to log ${what.source}`, () => what.test(proxy.output()));
      await logged(
        new RegExp(`X11 clipboard to the host as [^:]+: ${fromX.length} bytes in \\d+ INCR chunks`),
      );
      // -v traces the requests the proxy makes on its own too
      expect(proxy.output()).toMatch(
        /host#\d+ +-> wl_data_device@\d+\.set_selection\(wl_data_source@\d+, \d+\)/,
      );
      // host → X11
      start('sh', ['-c', `exec wl-copy < ${file('host.txt', fromHost)}`], hostEnv);
      await pasted(['xclip', '-selection', 'clipboard', '-o'], xEnv, fromHost);
      await logged(
        new RegExp(
          `X11 clipboard from the host as [^:]+: ${fromHost.length} bytes in \\d+ INCR chunks`,
        ),
      );
      // an X11 client and a Wayland client of the same proxy, both ways
      start('xclip', ['-selection', 'clipboard', '-i', file('x2.txt', fromX.slice(0, 5000))], xEnv);
      await pasted(['wl-paste', '--no-newline'], proxiedEnv, fromX.slice(0, 5000));
      start('sh', ['-c', `exec wl-copy < ${file('w2.txt', fromHost.slice(0, 5000))}`], proxiedEnv);
      await pasted(['xclip', '-selection', 'clipboard', '-o'], xEnv, fromHost.slice(0, 5000));
    },
  );
});

describe('Xwayland comes and goes', () => {
  test('Xwayland killed under load: the next X client gets a new one; Wayland clients keep drawing', async () => {
    const d = await desktop();
    const { proxy, display } = await proxied(d, 'proxied', []);
    await waitFor('the proxy to listen', () => listening(join(d.runtimeDir, 'wayland-1')));
    const env = { ...d.clientEnv('wayland-1'), DISPLAY: `:${display}` };
    const wayland = start('weston-simple-shm', [], env);
    const load = start('xterm', ['-e', 'sh', '-c', 'while :; do seq 1 1000; done'], env);
    await d.stableScreenshot(join(shots, 'load.png')).catch(() => undefined);
    const xwayland = await waitFor('Xwayland to run', () => childNamed(proxy, 'Xwayland'));
    process.kill(xwayland, 'SIGKILL');
    expect(await load.exited).not.toBe(0);
    const file = join(d.runtimeDir, 'after-kill.txt');
    start('xterm', ['-e', 'sh', '-c', `echo restarted > ${file}`], env);
    // Xwayland starts again at most once per 10 s
    await waitFor('the next X client to run', () => existsSync(file), 30000);
    expect(readFileSync(file, 'utf8')).toBe('restarted\n');
    expect(wayland.child.exitCode, proxy.output()).toBeNull();
    // the Wayland client still draws: a frame of its shows once the X windows are gone
    const shot = join(shots, 'after-kill.png');
    await waitFor('weston-simple-shm on screen', () => {
      d.screenshot(shot);
      return colourCount(shot) > 2;
    });
    expect(proxy.child.exitCode).toBeNull();
  });

  test('socket activation: an X client is served through the "x11" socket systemd hands over', async () => {
    const d = await desktop();
    const display = freeXDisplay();
    // where the socket unit puts it; the abstract socket is left to nobody
    const xsocket = `/tmp/.X11-unix/X${display}`;
    onTestFinished(() => rmSync(xsocket, { force: true }));
    const activate = start(
      'systemd-socket-activate',
      [
        '-l',
        join(d.runtimeDir, 'wayland-1'),
        '-l',
        xsocket,
        '--fdname=wayland:x11',
        `--setenv=XDG_RUNTIME_DIR=${d.runtimeDir}`,
        proxyBin,
        '--host-display',
        'wayland-0',
        '--x-display',
        String(display),
      ],
      proxyEnv(d),
    );
    await waitFor('the sockets', () => listening(xsocket));
    const file = join(d.runtimeDir, 'activated.txt');
    start('xterm', ['-e', 'sh', '-c', `echo activated > ${file}`], {
      ...d.clientEnv(),
      DISPLAY: `:${display}`,
    });
    await waitFor('the X client to run', () => existsSync(file), 30000);
    expect(readFileSync(file, 'utf8')).toBe('activated\n');
    expect(activate.output()).not.toMatch(/socket activation|already taken/);
  });
});

/** The pid of a process named `comm` among the descendants of `run`. */
function childNamed(run: Running, comm: string): number | undefined {
  const queue = [run.child.pid!];
  while (queue.length > 0) {
    const pid = queue.shift()!;
    let children: number[] = [];
    try {
      children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8')
        .trim()
        .split(/\s+/)
        .filter(Boolean)
        .map(Number);
    } catch {
      continue;
    }
    for (const c of children) {
      try {
        if (readFileSync(`/proc/${c}/comm`, 'utf8').trim() === comm) return c;
      } catch {
        // gone
      }
      queue.push(c);
    }
  }
  return undefined;
}

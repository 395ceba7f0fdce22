import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Running, accepts, start, stop, waitFor } from './processes.js';

const WIDTH = 640;
const HEIGHT = 480;

const FREEZE_CLOCK_SOURCE = join(import.meta.dirname, 'freeze-clock.c');

/** Builds freeze-clock.so once per version of its source (cached in the temp dir). */
function freezeClockLibrary(): string {
  const source = readFileSync(FREEZE_CLOCK_SOURCE);
  const hash = createHash('sha256').update(source).digest('hex').slice(0, 12);
  const lib = join(tmpdir(), `tswl-freeze-clock-${hash}.so`);
  if (existsSync(lib)) return lib;
  const partial = `${lib}.${process.pid}`;
  const cc = spawnSync(
    'cc',
    ['-shared', '-fPIC', '-O2', '-o', partial, FREEZE_CLOCK_SOURCE, '-ldl'],
    {
      encoding: 'utf8',
    },
  );
  if (cc.status !== 0) throw new Error(`building freeze-clock.so failed: ${cc.stderr}`);
  renameSync(partial, lib);
  return lib;
}

/**
 * Runs a client with its wall clock (time(), gettimeofday()) frozen, monotonic clocks running:
 * for clients that seed their randomness from the time of day (weston-flower, weston-simple-damage).
 */
export function withFrozenWallClock(command: string[]): string[] {
  return [
    'env',
    'LD_PRELOAD=/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1',
    'FAKETIME=2024-01-01 00:00:00',
    'FAKETIME_DONT_FAKE_MONOTONIC=1',
    ...command,
  ];
}

/**
 * Xvfb with weston's x11 backend and kiosk shell in a private XDG_RUNTIME_DIR: a seat for
 * input, and every window filling the one output, so that screenshots of a direct and a
 * proxied run of the same client compare pixel for pixel. Weston's presentation clock is frozen
 * (freeze-clock.c), so clients that animate from frame-callback times draw the same frame on
 * every run.
 */
export class Desktop {
  private constructor(
    readonly runtimeDir: string,
    readonly display: string,
    private readonly xvfb: Running,
    readonly weston: Running,
    /** With `xwayland`: the X display of weston's own Xwayland (`:N`). */
    readonly westonXDisplay: string | null = null,
  ) {}

  /**
   * `outputs` > 1 gives weston that many outputs (X windows), side by side; `xwayland` starts
   * weston's own Xwayland and window manager, the direct run X11 clients are compared against;
   * `protocolLog` logs every request weston gets (WAYLAND_DEBUG=server) to its output;
   * `shell: 'desktop'` runs weston's desktop shell (windows at their own size, maximize) instead.
   */
  static async start(
    outputs = 1,
    {
      xwayland = false,
      width = WIDTH,
      height = HEIGHT,
      protocolLog = false,
      shell = 'kiosk' as 'kiosk' | 'desktop',
    } = {},
  ): Promise<Desktop> {
    const runtimeDir = mkdtempSync(join(tmpdir(), 'tswl-desktop-'));
    const xvfb = start(
      'Xvfb',
      ['-displayfd', '1', '-screen', '0', `${width * outputs}x${height}x24`, '-nolisten', 'tcp'],
      process.env,
    );
    const number = await waitFor(
      'Xvfb to pick a display',
      () => /(?:^|\n)(\d+)\n/.exec(xvfb.output())?.[1],
    );
    const display = `:${number}`;
    // a frozen presentation clock needs a repaint due right after each frame (see freeze-clock.c)
    const config = join(runtimeDir, 'weston.ini');
    writeFileSync(config, '[core]\nidle-time=0\nrepaint-window=16\n');
    const weston = start(
      'weston',
      [
        '--backend=x11-backend.so',
        `--shell=${shell}-shell.so`,
        '--use-pixman',
        '--socket=wayland-0',
        `--width=${width}`,
        `--height=${height}`,
        `--output-count=${outputs}`,
        '--idle-time=0',
        `--config=${config}`,
        ...(xwayland ? ['--xwayland'] : []),
      ],
      {
        ...process.env,
        XDG_RUNTIME_DIR: runtimeDir,
        DISPLAY: display,
        LD_PRELOAD: freezeClockLibrary(),
        // weston's log then shows every request its clients make
        ...(protocolLog ? { WAYLAND_DEBUG: 'server' } : {}),
      },
    );
    await waitFor('weston to listen', () => accepts(join(runtimeDir, 'wayland-0')));
    const westonX = xwayland
      ? await waitFor(
          'weston to start its X server',
          () => /xserver listening on display (:\d+)/.exec(weston.output())?.[1],
        )
      : null;
    return new Desktop(runtimeDir, display, xvfb, weston, westonX);
  }

  /** Environment for Wayland clients of this desktop (never X11: DISPLAY is unset). */
  clientEnv(waylandDisplay = 'wayland-0'): NodeJS.ProcessEnv {
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      XDG_RUNTIME_DIR: this.runtimeDir,
      WAYLAND_DISPLAY: waylandDisplay,
      GDK_BACKEND: 'wayland',
      // GTK's software renderer gives the same pixels every run
      GSK_RENDERER: 'cairo',
      HOME: this.runtimeDir,
    };
    delete env.DISPLAY;
    delete env.WAYLAND_DEBUG;
    delete env.WAYLAND_DEBUG_PROXY;
    return env;
  }

  screenshot(file: string): void {
    const run = spawnSync('import', ['-display', this.display, '-window', 'root', `png:${file}`]);
    if (run.status !== 0) throw new Error(`screenshot failed: ${run.stderr}`);
  }

  /** Waits until two screenshots in a row are identical and not a single colour; returns the file. */
  async stableScreenshot(file: string, timeoutMs = 20000): Promise<string> {
    const previous = `${file}.previous.png`;
    this.screenshot(previous);
    await waitFor(
      `a stable, non-blank screen (${file})`,
      async () => {
        await new Promise((r) => setTimeout(r, 400));
        this.screenshot(file);
        const same = differingPixels(previous, file) === 0 && colourCount(file) > 1;
        if (!same) spawnSync('cp', [file, previous]);
        return same;
      },
      timeoutMs,
    );
    rmSync(previous, { force: true });
    return file;
  }

  /** Runs xdotool on the Xvfb that shows weston (XTEST: input for weston's seat). */
  xdotool(...args: string[]): void {
    const run = spawnSync('xdotool', args, { env: { ...process.env, DISPLAY: this.display } });
    if (run.status !== 0) throw new Error(`xdotool ${args[0]} failed: ${run.stderr}`);
  }

  /** Types text into whatever window of weston has keyboard focus (XTEST through Xvfb). */
  type(text: string): void {
    for (const args of [
      ['type', '--delay', '15', text],
      ['key', 'Return'],
    ]) {
      const run = spawnSync('xdotool', args, { env: { ...process.env, DISPLAY: this.display } });
      if (run.status !== 0) throw new Error(`xdotool ${args[0]} failed: ${run.stderr}`);
    }
  }

  async stop(): Promise<void> {
    await stop(this.weston);
    await stop(this.xvfb);
    rmSync(this.runtimeDir, { recursive: true, force: true });
  }
}

/** Pixels that differ between two images (ImageMagick's AE metric). */
export function differingPixels(a: string, b: string): number {
  const run = spawnSync('compare', ['-metric', 'AE', a, b, 'null:'], { encoding: 'utf8' });
  const n = Number(run.stderr.trim().split(/\s/)[0]);
  if (run.status === 2 || Number.isNaN(n)) throw new Error(`compare failed: ${run.stderr}`);
  return n;
}

/** Distinct colours in an image: 1 means nothing was drawn. */
export function colourCount(file: string): number {
  const run = spawnSync('identify', ['-format', '%k', file], { encoding: 'utf8' });
  return Number(run.stdout.trim());
}

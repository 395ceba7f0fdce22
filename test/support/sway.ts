// sway 1.12 from Debian sid as a second real compositor (npm run test:sway): it runs in the VM
// harness's sid chroot (scripts/vm/build.sh installs it there), headless with the pixman renderer,
// with a fixed config so that a client shows the same pixels on every run. Its runtime dir is a
// folder under the chroot's /tmp, so its sockets are reachable from both sides: clients run on
// the host (bookworm's foot, gtk4-demo, weston-terminal), grim and swaymsg run in the chroot.
// Nothing is mounted: sway, swaybg, grim and swaymsg need neither /proc nor /dev there.
import { spawnSync } from 'node:child_process';
import {
  copyFileSync,
  existsSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join, relative } from 'node:path';
import { hostBin } from './cross-domain.js';
import { colourCount, differingPixels } from './desktop.js';
import { type Running, accepts, start, stop, waitFor } from './processes.js';
import { RawClient } from './raw-client.js';
import { proxyBin, repoRoot } from './weston.js';

const WIDTH = 640;
const HEIGHT = 480;
/** The background every empty screenshot shows (#204060). */
const BACKGROUND = 'srgb(32,64,96)';

/** The sid chroot of the VM harness. */
const sid = join(process.env.TSWL_VM_DIR ?? join(repoRoot, '.vm'), 'sid');

// One output of a fixed size; no bar (none is configured), no borders or title bars, so the one
// tiled window fills the output; no Xwayland; a solid background drawn by swaybg.
const CONFIG = `
output * mode ${WIDTH}x${HEIGHT} position 0 0 scale 1 bg #204060 solid_color
default_border none
default_floating_border none
font pango:DejaVu Sans Mono 10
focus_follows_mouse no
xwayland disable
`;

const BTN_LEFT = 0x110;

/** A pointer device of sway's seat, driven by the test (Sway.virtualPointer). */
export interface VirtualPointer {
  /** To a position on the output, in pixels. */
  moveTo(x: number, y: number): void;
  /** The left button pressed or released. */
  button(pressed: boolean): void;
  close(): void;
}

/** How a client reaches sway: directly, through tswl-proxy, or through tswl-proxy and tswl-host. */
export type Route = 'direct' | 'proxied' | 'cross-domain';

/** A node of `swaymsg -t get_tree` (the fields tests read; the rest is there too). */
export interface SwayNode {
  id: number;
  type: string;
  name: string | null;
  app_id?: string | null;
  pid?: number;
  sandbox_engine?: string | null;
  sandbox_app_id?: string | null;
  sandbox_instance_id?: string | null;
  nodes: SwayNode[];
  floating_nodes: SwayNode[];
  [key: string]: unknown;
}

export class Sway {
  /** Where the last tswl-host started listens, once startHost() ran. */
  gpuPath = '';
  private host: Running | undefined;
  private readonly hosts: Running[] = [];

  private constructor(
    /** sway's XDG_RUNTIME_DIR as the host sees it. */
    readonly runtimeDir: string,
    /** The same folder inside the chroot. */
    readonly runtimeInside: string,
    /** sway's Wayland socket (host path). */
    readonly socket: string,
    /** XDG_RUNTIME_DIR and HOME of the clients: nothing in it leads to sway. */
    readonly clientDir: string,
    public sway: Running,
    private readonly debug: boolean,
  ) {}

  /** `debug`: sway traces every message it gets (WAYLAND_DEBUG=server), readable in its output. */
  static async start(options: { debug?: boolean } = {}): Promise<Sway> {
    if (process.getuid?.() !== 0) throw new Error('npm run test:sway needs root (chroot)');
    if (!existsSync(join(sid, 'usr/bin/sway')) || !existsSync(join(sid, 'usr/bin/grim'))) {
      throw new Error(`no sway and grim in ${sid}: run scripts/vm/build.sh (TSWL_VM_DIR)`);
    }
    const runtimeDir = mkdtempSync(join(sid, 'tmp', 'tswl-sway-'));
    const runtimeInside = `/${relative(sid, runtimeDir)}`;
    const clientDir = mkdtempSync(join(tmpdir(), 'tswl-sway-clients-'));
    writeFileSync(join(runtimeDir, 'config'), CONFIG);
    const sway = spawnSway(runtimeInside, options.debug ?? false);
    try {
      const name = await waitFor(
        'sway to listen',
        async () => {
          if (sway.child.exitCode !== null) throw new Error(`sway exited:\n${sway.output()}`);
          const socket = readdirSync(runtimeDir).find((f) => /^wayland-\d+$/.test(f));
          return socket && (await accepts(join(runtimeDir, socket))) && socket;
        },
        20000,
      );
      const s = new Sway(
        runtimeDir,
        runtimeInside,
        join(runtimeDir, name),
        clientDir,
        sway,
        options.debug ?? false,
      );
      // swaybg has drawn the background: the output is ready for screenshots
      await waitFor('the background', () => s.isEmpty(), 20000);
      return s;
    } catch (e) {
      await stop(sway);
      rmSync(runtimeDir, { recursive: true, force: true });
      rmSync(clientDir, { recursive: true, force: true });
      throw e;
    }
  }

  /**
   * Environment for clients on the host: Wayland only, software rendering for GTK, and a
   * WAYLAND_DISPLAY that is sway's socket, or `waylandDisplay` (for the proxy, one leading nowhere).
   */
  clientEnv(waylandDisplay = this.socket): NodeJS.ProcessEnv {
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      XDG_RUNTIME_DIR: this.clientDir,
      HOME: this.clientDir,
      WAYLAND_DISPLAY: waylandDisplay,
      GDK_BACKEND: 'wayland',
      // GTK's software renderer gives the same pixels every run
      GSK_RENDERER: 'cairo',
    };
    delete env.DISPLAY;
    delete env.WAYLAND_SOCKET;
    delete env.WAYLAND_DEBUG;
    delete env.WAYLAND_DEBUG_PROXY;
    return env;
  }

  /**
   * `tswl-host -v --wayland-sock <sway> --listen-local <link> [args]`, for the cross-domain route;
   * the route uses the last one started.
   */
  async startHost(args: string[] = [], name = 'tswl-gpu'): Promise<Running> {
    this.gpuPath = join(this.clientDir, name);
    this.host = start(
      hostBin,
      ['-v', '--wayland-sock', this.socket, '--listen-local', this.gpuPath, ...args],
      this.clientEnv('tswl-nowhere'),
    );
    this.hosts.push(this.host);
    await waitFor(
      'tswl-host to listen',
      () => existsSync(this.gpuPath) || this.host!.child.exitCode !== null,
    );
    if (!existsSync(this.gpuPath))
      throw new Error(`tswl-host did not start:\n${this.host.output()}`);
    return this.host;
  }

  /** Cross-domain contexts tswl-host has made so far, by its -v log. */
  contextsCreated(): number {
    return this.host?.output().match(/context \d+ created/g)?.length ?? 0;
  }

  /**
   * Where tswl-proxy listens for a route, and how it reaches sway: never through its
   * environment, whose WAYLAND_DISPLAY leads nowhere.
   */
  proxyArgs(route: Exclude<Route, 'direct'>, listen = 'tswl-proxy'): string[] {
    const through =
      route === 'cross-domain'
        ? ['--virtio-gpu-device', this.gpuPath]
        : ['--host-display', this.socket];
    return ['--wayland-display', join(this.clientDir, listen), ...through];
  }

  /** Starts `command` on sway by one route (through the proxy: the proxy runs it). */
  run(route: Route, command: string[]): Running {
    if (route === 'direct') return start(command[0], command.slice(1), this.clientEnv());
    if (route === 'cross-domain' && !this.gpuPath) throw new Error('startHost() first');
    return start(
      proxyBin,
      [...this.proxyArgs(route), '--', ...command],
      this.clientEnv('tswl-nowhere'),
    );
  }

  /** Runs a program of the chroot against this sway (grim, swaymsg…); throws on failure. */
  chroot(command: string[]): string {
    const env = [
      'PATH=/usr/bin:/bin',
      'LANG=C.UTF-8',
      `XDG_RUNTIME_DIR=${this.runtimeInside}`,
      `WAYLAND_DISPLAY=${basename(this.socket)}`,
      `SWAYSOCK=${this.runtimeInside}/ipc.sock`,
    ];
    const r = spawnSync('chroot', [sid, 'env', '-i', ...env, ...command], {
      encoding: 'utf8',
      timeout: 20000,
    });
    if (r.status !== 0) {
      throw new Error(`${command.join(' ')} failed (${r.status ?? r.signal}): ${r.stderr}`);
    }
    return r.stdout;
  }

  /** A grim screenshot of the whole output, written to `file` (a host path). */
  screenshot(file: string): void {
    this.chroot(['grim', '-t', 'png', `${this.runtimeInside}/shot.png`]);
    copyFileSync(join(this.runtimeDir, 'shot.png'), file);
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
        if (!same) copyFileSync(file, previous);
        return same;
      },
      timeoutMs,
    );
    rmSync(previous, { force: true });
    return file;
  }

  /** True when the output shows nothing but the background. */
  isEmpty(): boolean {
    const shot = join(this.runtimeDir, 'empty.png');
    this.screenshot(shot);
    const r = spawnSync('convert', [shot, '-format', '%k %[pixel:p{0,0}]', 'info:'], {
      encoding: 'utf8',
    });
    return r.stdout.trim() === `1 ${BACKGROUND}`;
  }

  /**
   * A pointer for headless sway, which has no input device: a wlr virtual pointer (of a raw
   * client of sway's own), so the seat gets a pointer and clients get its enter and button
   * events, with the serials that set_selection, move and resize need.
   */
  async virtualPointer(): Promise<VirtualPointer> {
    const c = new RawClient(this.socket);
    c.message(1, 1, (w) => w.newId(2)).send(); // wl_display.get_registry
    const { events } = await c.read();
    const manager = events.find(
      (e) =>
        e.id === 2 &&
        e.opcode === 0 &&
        e.body.toString('latin1', 8, 8 + e.body.readUInt32LE(4) - 1) ===
          'zwlr_virtual_pointer_manager_v1',
    );
    if (!manager) throw new Error('sway offers no zwlr_virtual_pointer_manager_v1');
    c.message(2, 0, (w) => {
      // wl_registry.bind(name, "zwlr_virtual_pointer_manager_v1", 1, new id 3)
      w.uint(manager.body.readUInt32LE(0));
      w.string('zwlr_virtual_pointer_manager_v1');
      w.uint(1);
      w.newId(3);
    });
    c.message(3, 0, (w) => {
      w.object(0); // the default seat
      w.newId(4);
    });
    c.send();
    const time = (): number => Date.now() & 0x7fffffff;
    return {
      moveTo: (x, y) => {
        c.message(4, 1, (w) => [time(), x, y, WIDTH, HEIGHT].forEach((v) => w.uint(v)));
        c.message(4, 4).send();
      },
      button: (pressed) => {
        c.message(4, 2, (w) => [time(), BTN_LEFT, pressed ? 1 : 0].forEach((v) => w.uint(v)));
        c.message(4, 4).send();
      },
      close: () => c.close(),
    };
  }

  /** `swaymsg -t get_tree`: outputs, workspaces and windows with titles, app_ids, sandbox_engine. */
  tree(): SwayNode {
    return JSON.parse(this.chroot(['swaymsg', '-r', '-t', 'get_tree'])) as SwayNode;
  }

  /**
   * The command lines of the processes whose connections own sway's windows (sway reads their
   * peer credentials): the client itself, tswl-proxy, or tswl-host.
   */
  windowOwners(): string[] {
    return this.windows().map((w) =>
      readFileSync(`/proc/${w.pid}/cmdline`, 'utf8').split('\0').join(' ').trim(),
    );
  }

  /** The windows in the tree (nodes with a pid: tiled and floating views). */
  windows(): SwayNode[] {
    const found: SwayNode[] = [];
    const walk = (n: SwayNode): void => {
      if (n.pid !== undefined && (n.type === 'con' || n.type === 'floating_con')) found.push(n);
      for (const c of [...n.nodes, ...n.floating_nodes]) walk(c);
    };
    walk(this.tree());
    return found;
  }

  /** Kills sway and starts another on the same socket: a compositor restart under its clients. */
  async restart(): Promise<void> {
    process.kill(-this.sway.child.pid!, 'SIGKILL');
    await this.sway.exited;
    // a killed sway leaves its IPC socket, which the next one does not take over
    rmSync(join(this.runtimeDir, 'ipc.sock'), { force: true });
    this.sway = spawnSway(this.runtimeInside, this.debug);
    await waitFor('sway to listen again', () => accepts(this.socket), 20000);
    await waitFor('the background', () => this.isEmpty(), 20000);
  }

  async stop(): Promise<void> {
    for (const h of this.hosts) await stop(h);
    await stop(this.sway);
    rmSync(this.runtimeDir, { recursive: true, force: true });
    rmSync(this.clientDir, { recursive: true, force: true });
  }
}

/** sway in the chroot, headless, on `runtimeInside` (its path inside the chroot). */
function spawnSway(runtimeInside: string, debug: boolean): Running {
  return start(
    'chroot',
    [
      sid,
      'env',
      '-i',
      'PATH=/usr/bin:/bin',
      'LANG=C.UTF-8',
      `HOME=${runtimeInside}`,
      `XDG_RUNTIME_DIR=${runtimeInside}`,
      `SWAYSOCK=${runtimeInside}/ipc.sock`,
      'WLR_BACKENDS=headless',
      'WLR_RENDERER=pixman',
      'WLR_LIBINPUT_NO_DEVICES=1',
      ...(debug ? ['WAYLAND_DEBUG=server'] : []),
      'sway',
      '--config',
      `${runtimeInside}/config`,
    ],
    process.env,
  );
}

/**
 * Runs a client on sway by one route until `during` resolves, then stops it and waits until
 * its window is gone, so that the next run starts on an empty output.
 */
export async function runOn(
  s: Sway,
  route: Route,
  command: string[],
  during: (client: Running) => Promise<void>,
): Promise<void> {
  const client = s.run(route, command);
  try {
    await during(client);
  } finally {
    await stop(client);
    await waitFor('the window to go', () => s.isEmpty(), 20000);
  }
}

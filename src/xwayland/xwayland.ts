// Xwayland on demand: the X display's sockets are polled, and the first X client to connect
// starts Xwayland with them (-listenfd), its Wayland connection relayed like any client's and its
// -wm socket talking to our window manager. After Xwayland exits the next X client starts a new
// one, at most one start per RESTART_INTERVAL_MS.
import { type ChildProcess, spawn } from 'node:child_process';
import { Socket } from 'node:net';
import * as native from '../native/index.js';
import type { ProxyServer } from '../proxy.js';
import type { LocalGlobal } from '../relay/registry.js';
import type { InterfaceHooks, Relay } from '../relay/relay.js';
import { closeQuietly } from '../wire/fd-queue.js';
import type { XDisplay } from './display.js';
import { HostSelection } from './host-selection.js';
import { HostShell } from './host-shell.js';
import { SelectionBridge } from './selection.js';
import { Unscale } from './unscale.js';
import { XwaylandSurfaces } from './surfaces.js';
import { WindowManager } from './wm.js';
import { XConnection } from './x11/connection.js';
import { decodeEvent } from './x11/events.js';

export const RESTART_INTERVAL_MS = 10_000;

export interface XwaylandOptions {
  readonly display: XDisplay;
  /** The Xwayland program (--xwayland-binary). */
  readonly binary: string;
  readonly server: ProxyServer;
  /** The hooks every client of the proxy gets, with these local globals in their registries. */
  readonly hooks: (localGlobals: readonly LocalGlobal[]) => ReadonlyMap<string, InterfaceHooks>;
  readonly tag: string;
  readonly appIdPrefix: string;
  readonly xrdb: readonly string[];
  /** --x-unscale N; 1 leaves coordinates alone. */
  readonly unscale: number;
  readonly info: (message: string) => void;
  readonly warn: (message: string) => void;
}

/** One run of Xwayland: the process, its relayed Wayland connection and its WM. */
class XwaylandRun {
  readonly surfaces: XwaylandSurfaces;
  readonly wm: WindowManager;
  relay: Relay | null = null;
  private readonly socket: Socket;

  constructor(
    readonly child: ChildProcess,
    waylandFd: number,
    wmFd: number,
    options: XwaylandOptions,
    onBroken: (why: string) => void,
  ) {
    this.socket = new Socket({ fd: wmFd, readable: true, writable: true });
    const conn = new XConnection(
      {
        write: (bytes) => void this.socket.write(bytes),
        close: () => this.socket.destroy(),
      },
      {
        event: (code, packet) => {
          const ev = decodeEvent(code, packet, this.wm.xfixes?.firstEvent ?? 0);
          if (ev) this.wm.handleEvent(ev);
        },
        error: (e) =>
          options.warn(
            `Xwayland: X error ${e.code} for request ${e.majorOpcode}.${e.minorOpcode} (value 0x${e.badValue.toString(16)})`,
          ),
        closed: (why) => {
          if (why) onBroken(`the WM connection failed: ${why.message}`);
        },
      },
    );
    this.socket.on('data', (data: Buffer) => {
      try {
        conn.feed(data);
      } catch (e) {
        // a bug of ours on input from Xwayland: this Xwayland goes, nothing else
        onBroken(`the WM failed: ${(e as Error).stack ?? String(e)}`);
      }
    });
    this.socket.on('error', () => conn.close());
    this.socket.on('close', () => conn.close());

    const unscale = options.unscale > 1 ? new Unscale(options.unscale) : null;
    this.surfaces = new XwaylandSurfaces(
      {
        resolve: (s) => this.wm.resolve(s),
        destroyed: (s) => this.wm.destroyed(s),
        keyboardEnter: (s) => this.wm.keyboardEnter(s),
        pointerEnter: (s) => this.wm.pointerEnter(s),
        attached: (s) => this.wm.attached(s),
      },
      unscale,
    );
    this.wm = new WindowManager(conn, this.surfaces, {
      tag: options.tag,
      appIdPrefix: options.appIdPrefix,
      xrdb: options.xrdb,
      warn: options.warn,
      info: options.info,
      unscale,
    });
    try {
      this.relay = options.server.adoptClient(waylandFd, {
        hooks: this.surfaces.hooks(options.hooks([this.surfaces.shellGlobal])),
        requestGate: this.surfaces.gate,
        onClose: () => {
          this.relay = null;
        },
      });
    } catch (e) {
      onBroken((e as Error).message);
      return;
    }
    this.surfaces.relay = this.relay;
    const shell = new HostShell(this.relay);
    this.wm.attachShell(shell);
    const relay = this.relay;
    if (unscale) {
      shell.whenBound(['wp_viewporter'], () => {
        this.surfaces.viewporter = shell.bound.get('wp_viewporter')!;
      });
    }
    const bridge = new SelectionBridge(this.wm);
    this.wm.selections = bridge;
    for (const [kind, manager] of [
      ['clipboard', 'wl_data_device_manager'],
      ['primary', 'zwp_primary_selection_device_manager_v1'],
    ] as const) {
      shell.whenBound(['wl_seat', manager], () =>
        bridge.attachHost(
          kind,
          (events) =>
            new HostSelection(
              relay,
              kind,
              shell.bound.get(manager)!,
              shell.bound.get('wl_seat')!,
              events,
            ),
        ),
      );
    }
    this.wm.start().catch((e: Error) => onBroken(`the WM could not start: ${e.message}`));
  }

  stop(): void {
    this.wm.selections?.close();
    this.relay?.close();
    this.socket.destroy();
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGTERM');
  }
}

export class XwaylandLauncher {
  private pollers: native.Poller[] = [];
  private run: XwaylandRun | null = null;
  private lastStart = -Infinity;
  private restartTimer: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(private readonly options: XwaylandOptions) {}

  /** Starts waiting for the first X client. */
  listen(): void {
    this.watch();
  }

  close(): void {
    this.closed = true;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.unwatch();
    this.run?.stop();
    this.run = null;
  }

  /** The running Xwayland's pid, if one runs. */
  get pid(): number | null {
    return this.run?.child.pid ?? null;
  }

  private watch(): void {
    if (this.closed || this.pollers.length > 0) return;
    for (const fd of this.options.display.fds) {
      const p = new native.Poller(fd, () => this.clientWaiting());
      p.update(native.READABLE);
      this.pollers.push(p);
    }
  }

  private unwatch(): void {
    for (const p of this.pollers.splice(0)) p.close();
  }

  /** An X client is waiting to be accepted: Xwayland takes it from here. */
  private clientWaiting(): void {
    this.unwatch();
    const wait = this.lastStart + RESTART_INTERVAL_MS - Date.now();
    if (wait > 0) {
      this.options.info(
        `Xwayland exited less than ${RESTART_INTERVAL_MS / 1000} s ago; starting it again in ${Math.ceil(wait / 1000)} s`,
      );
      this.restartTimer = setTimeout(() => {
        this.restartTimer = null;
        this.start();
      }, wait);
      return;
    }
    this.start();
  }

  private start(): void {
    if (this.closed) return;
    this.lastStart = Date.now();
    const o = this.options;
    const [waylandOurs, waylandTheirs] = native.socketpair();
    const [wmOurs, wmTheirs] = native.socketpair();
    const listenFds = o.display.fds;
    // child fds: 3 WAYLAND_SOCKET, 4 the WM socket, 5… the display's listening sockets
    const args = [`:${o.display.number}`, '-rootless', '-nolisten', 'tcp', '-wm', '4'];
    listenFds.forEach((_, i) => args.push('-listenfd', String(5 + i)));
    const env: NodeJS.ProcessEnv = { ...process.env, WAYLAND_SOCKET: '3' };
    delete env.WAYLAND_DISPLAY;
    delete env.DISPLAY;
    const child = spawn(o.binary, args, {
      env,
      stdio: ['ignore', 'ignore', 'inherit', waylandTheirs, wmTheirs, ...listenFds],
    });
    closeQuietly(waylandTheirs);
    closeQuietly(wmTheirs);
    o.info(`started Xwayland (pid ${child.pid ?? '?'}) for X display :${o.display.number}`);
    let broken = false;
    const run = new XwaylandRun(child, waylandOurs, wmOurs, o, (why) => {
      if (broken) return;
      broken = true;
      o.warn(`Xwayland on :${o.display.number}: ${why}; stopping it`);
      run.stop();
    });
    this.run = run;
    child.once('error', (e) => {
      o.warn(`cannot run Xwayland (${o.binary}): ${e.message}`);
      run.stop();
      this.ended(run);
    });
    child.once('exit', (code, signal) => {
      o.info(`Xwayland exited with ${signal ?? code}`);
      run.stop();
      this.ended(run);
    });
  }

  private ended(run: XwaylandRun): void {
    if (this.run !== run) return;
    this.run = null;
    this.watch();
  }
}

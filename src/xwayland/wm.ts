// The X11 window manager of one Xwayland: it redirects the root's children, pairs each mapped
// window with its wl_surface, and gives that surface a host role (toplevel or popup) carrying the
// window's title, class, size limits, parent and state. X events come in decoded through
// handleEvent(), so the WM can be driven in process with any sequence of them.
import { XdgToplevelState } from '../generated/xdg-shell.js';
import type { Atoms } from './atoms.js';
import { Predefined, internAtoms } from './atoms.js';
import type { HostShell } from './host-shell.js';
import type { Role, ToplevelConfigure } from './roles.js';
import { Role as HostRole } from './roles.js';
import type { SurfaceEvents, XSurface, XwaylandSurfaces } from './surfaces.js';
import type { XConnection } from './x11/connection.js';
import type { XEvent } from './x11/events.js';
import type { ExtensionInfo, Property } from './x11/requests.js';
import { CURRENT_TIME, EventMask, NONE, StackMode, XRequests } from './x11/requests.js';
import type { Selections } from './selection.js';
import type { Unscale } from './unscale.js';

export interface WmOptions {
  /** --tag: prefix of every toplevel title. */
  readonly tag: string;
  /** --app-id-prefix: prefix of every toplevel app_id. */
  readonly appIdPrefix: string;
  /** --xrdb entries (KEY:VALUE), written to the root's RESOURCE_MANAGER. */
  readonly xrdb: readonly string[];
  readonly warn: (message: string) => void;
  /** Said with --verbose only. */
  readonly info?: (message: string) => void;
  /** --x-unscale N (null for 1): X pixels are 1/N of the host's surface coordinates. */
  readonly unscale?: Unscale | null;
}

/** One child of the root, as far as the WM knows it. */
export class XWindow {
  mapped = false;
  propsLoaded = false;
  loading: Promise<void> | null = null;
  title = '';
  appId = '';
  transientFor = NONE;
  readonly protocols = new Set<number>();
  readonly types: number[] = [];
  readonly netState = new Set<number>();
  minSize: [number, number] = [0, 0];
  maxSize: [number, number] = [0, 0];
  surface: XSurface | null = null;
  role: Role | null = null;
  /** The size the compositor's last configure asked for (host coordinates), if it named one. */
  requested: [number, number] | null = null;
  /** Its X size before the compositor maximized or fullscreened it, to return to after. */
  restoreSize: [number, number] | null = null;

  constructor(
    readonly id: number,
    public x: number,
    public y: number,
    public width: number,
    public height: number,
    public overrideRedirect: boolean,
  ) {}
}

/** Size-hint flags of WM_NORMAL_HINTS. */
const P_MIN_SIZE = 1 << 4;
const P_MAX_SIZE = 1 << 5;
/** _NET_WM_MOVERESIZE directions → xdg_toplevel resize edges (8 is a move). */
const RESIZE_EDGES = [5, 1, 9, 8, 10, 2, 6, 4];
const MOVERESIZE_MOVE = 8;
/** What the WM selects on each child of the root. */
const ADOPTED_EVENTS = EventMask.PropertyChange | EventMask.FocusChange;

export class WindowManager implements SurfaceEvents {
  readonly x: XRequests;
  atoms!: Atoms;
  root = NONE;
  /** _NET_SUPPORTING_WM_CHECK's window, never mapped; the clipboard's windows are its children. */
  checkWindow = NONE;
  xfixes: ExtensionInfo | null = null;
  readonly windows = new Map<number, XWindow>();
  /** Pairings named on the X side before their surface was seen, by surface id or serial. */
  private readonly pendingIds = new Map<number, number>();
  private readonly pendingSerials = new Map<bigint, number>();
  /** The window with keyboard focus and the last one the pointer entered: parents for popups. */
  private focused = NONE;
  private hovered = NONE;
  private shell: HostShell | null = null;
  selections: Selections | null = null;
  private resolving = false;

  constructor(
    readonly conn: XConnection,
    readonly surfaces: XwaylandSurfaces,
    private readonly options: WmOptions,
  ) {
    this.x = new XRequests(conn);
  }

  /** Takes the WM role on the X server; rejects when it cannot. */
  async start(): Promise<void> {
    const setup = await this.conn.ready();
    this.root = setup.root;
    const x = this.x;
    const [atoms, composite, xfixes] = await Promise.all([
      internAtoms(x),
      x.queryExtension('Composite'),
      x.queryExtension('XFIXES'),
    ]);
    this.atoms = atoms;
    if (!composite.present) throw new Error('Xwayland has no Composite extension');
    await x.queryVersion(composite, 0, 4);
    if (xfixes.present && (await x.queryVersion(xfixes, 5, 0)).major >= 1) this.xfixes = xfixes;
    try {
      await x.selectInputChecked(
        this.root,
        EventMask.SubstructureRedirect | EventMask.SubstructureNotify | EventMask.PropertyChange,
      );
    } catch {
      throw new Error('another window manager runs on this X server');
    }
    x.compositeRedirectSubwindows(composite, this.root, 1);

    this.checkWindow = this.conn.allocateId();
    x.createWindow(this.checkWindow, this.root, { x: -100, y: -100, width: 1, height: 1 }, true, {
      overrideRedirect: true,
    });
    const name = Buffer.from('tswl-proxy');
    for (const w of [this.root, this.checkWindow])
      x.changeProperty32(w, atoms._NET_SUPPORTING_WM_CHECK, Predefined.WINDOW, [this.checkWindow]);
    x.changeProperty(0, this.checkWindow, atoms._NET_WM_NAME, atoms.UTF8_STRING, 8, name);
    x.changeProperty32(this.root, atoms._NET_SUPPORTED, Predefined.ATOM, [
      atoms._NET_ACTIVE_WINDOW,
      atoms._NET_CLIENT_LIST,
      atoms._NET_WM_MOVERESIZE,
      atoms._NET_WM_NAME,
      atoms._NET_WM_STATE,
      atoms._NET_WM_STATE_FULLSCREEN,
      atoms._NET_WM_STATE_MAXIMIZED_VERT,
      atoms._NET_WM_STATE_MAXIMIZED_HORZ,
      atoms._NET_WM_STATE_FOCUSED,
      atoms._NET_SUPPORTING_WM_CHECK,
    ]);
    x.setSelectionOwner(this.checkWindow, atoms.WM_S0, CURRENT_TIME);
    x.setSelectionOwner(this.checkWindow, atoms._NET_WM_CM_S0, CURRENT_TIME);

    // without a root cursor the pointer is invisible over windows that set none (left_ptr)
    const font = this.conn.allocateId();
    const cursor = this.conn.allocateId();
    x.openFont(font, 'cursor');
    x.createGlyphCursor(cursor, font, 68);
    x.changeWindowAttributes(this.root, { cursor });

    if (this.options.xrdb.length > 0) {
      const text = this.options.xrdb.map((e) => `${e.replace(/:/, ':\t')}\n`).join('');
      x.changeProperty(
        0,
        this.root,
        atoms.RESOURCE_MANAGER,
        Predefined.STRING,
        8,
        Buffer.from(text, 'utf8'),
      );
    }
    this.selections?.start();

    // windows that X clients mapped before the WM was ready
    for (const id of await x.queryTree(this.root)) {
      if (id === this.checkWindow || this.windows.has(id)) continue;
      try {
        const [attrs, g] = await Promise.all([x.getWindowAttributes(id), x.getGeometry(id)]);
        this.adopt(id, g.x, g.y, g.width, g.height, attrs.overrideRedirect);
        if (attrs.mapState !== 0) this.onMapped(this.windows.get(id)!);
      } catch {
        // gone meanwhile
      }
    }
    this.conn.flush();
  }

  /** The proxy's globals on Xwayland's host connection: roles can be given from now on. */
  attachShell(shell: HostShell): void {
    this.shell = shell;
    shell.whenReady(() => {
      for (const w of this.windows.values()) this.maybeGiveRole(w);
    });
  }

  /** One event from Xwayland. */
  handleEvent(ev: XEvent): void {
    // Before start() has the atoms, only a client's SendEvent can reach the WM; the windows that
    // exist by then are found by start() itself.
    if (!this.atoms) return;
    switch (ev.kind) {
      case 'create':
        if (ev.parent === this.root && ev.window !== this.checkWindow)
          this.adopt(ev.window, ev.x, ev.y, ev.width, ev.height, ev.overrideRedirect);
        break;
      case 'destroy': {
        this.selections?.handleEvent(ev);
        const w = this.windows.get(ev.window);
        if (!w) break;
        this.unmapped(w);
        this.windows.delete(ev.window);
        break;
      }
      case 'map-request': {
        const w = this.windows.get(ev.window);
        if (!w) {
          this.x.mapWindow(ev.window);
          break;
        }
        this.x.changeProperty32(w.id, this.atoms.WM_STATE, this.atoms.WM_STATE, [1, NONE]);
        // the surface is the window's border box: no border, or it outgrows its configure
        this.x.configureWindow(w.id, { borderWidth: 0 });
        this.x.mapWindow(w.id);
        this.loadProperties(w);
        break;
      }
      case 'map': {
        const w = this.windows.get(ev.window);
        if (w && ev.event === this.root) this.onMapped(w);
        break;
      }
      case 'unmap': {
        const w = this.windows.get(ev.window);
        if (!w || ev.event !== this.root) break;
        this.unmapped(w);
        if (!w.overrideRedirect)
          this.x.changeProperty32(w.id, this.atoms.WM_STATE, this.atoms.WM_STATE, [0, NONE]);
        break;
      }
      case 'configure': {
        const w = this.windows.get(ev.window);
        if (!w || ev.event !== this.root) break;
        w.x = ev.x;
        w.y = ev.y;
        w.width = ev.width;
        w.height = ev.height;
        this.updateGeometry(w);
        break;
      }
      case 'configure-request':
        // X clients place and size their windows as they ask; the compositor's configures win later
        this.x.configureWindow(ev.window, {
          x: ev.valueMask & 1 ? ev.x : undefined,
          y: ev.valueMask & 2 ? ev.y : undefined,
          width: ev.valueMask & 4 ? ev.width : undefined,
          height: ev.valueMask & 8 ? ev.height : undefined,
          borderWidth:
            ev.valueMask & 16 && this.windows.get(ev.window)?.overrideRedirect
              ? ev.borderWidth
              : undefined,
          stackMode: ev.valueMask & 64 ? ev.stackMode : undefined,
        });
        break;
      case 'property':
        this.selections?.handleEvent(ev);
        this.onProperty(ev.window, ev.atom);
        break;
      case 'client-message':
        this.onClientMessage(ev.window, ev.type, ev.data);
        break;
      case 'selection-clear':
      case 'selection-request':
      case 'selection-notify':
      case 'xfixes-selection-notify':
        this.selections?.handleEvent(ev);
        break;
    }
    this.conn.flush();
    this.surfaces.relay?.flush();
  }

  /** The events the WM itself selects on a window (the clipboard adds to them for a while). */
  eventMaskOf(window: number): number {
    return this.windows.has(window) ? ADOPTED_EVENTS : 0;
  }

  warn(message: string): void {
    this.options.warn(message);
  }

  info(message: string): void {
    this.options.info?.(message);
  }

  // ---- SurfaceEvents: from Xwayland's Wayland connection ------------------------------------

  resolve(s: XSurface): void {
    if (this.tryPairPending(s)) return;
    if (this.resolving) return;
    this.resolving = true;
    // every pairing message Xwayland sent before it answers this has reached us by then
    this.x
      .getInputFocus()
      .then(() => {
        this.resolving = false;
        for (const r of this.surfaces.resolving()) {
          if (!this.tryPairPending(r)) r.kind = 'other';
        }
        this.surfaces.release();
      })
      .catch(() => {
        this.resolving = false;
      });
    this.conn.flush();
  }

  destroyed(s: XSurface): void {
    const w = s.window === null ? undefined : this.windows.get(s.window);
    if (w?.surface === s) {
      w.role?.destroy();
      w.role = null;
      w.surface = null;
    }
    s.role = null;
  }

  keyboardEnter(s: XSurface): void {
    const w = s.window === null ? undefined : this.windows.get(s.window);
    if (!w) return;
    this.focused = w.id;
    this.x.setInputFocus(w.id, 1, CURRENT_TIME);
    if (w.protocols.has(this.atoms.WM_TAKE_FOCUS)) {
      this.x.sendClientMessage(w.id, this.atoms.WM_PROTOCOLS, [
        this.atoms.WM_TAKE_FOCUS,
        CURRENT_TIME,
      ]);
    }
    this.x.changeProperty32(this.root, this.atoms._NET_ACTIVE_WINDOW, Predefined.WINDOW, [w.id]);
    // X focus before the Wayland enter, so the first keys already go to the window
    this.conn.flush();
  }

  attached(s: XSurface): void {
    const w = s.window === null ? undefined : this.windows.get(s.window);
    if (w) this.surfaces.showUnscaled(s, w.width, w.height);
  }

  pointerEnter(s: XSurface): void {
    const w = s.window === null ? undefined : this.windows.get(s.window);
    if (!w) return;
    this.hovered = w.id;
    this.x.configureWindow(w.id, { stackMode: StackMode.Above });
    this.conn.flush();
  }

  // ---- windows --------------------------------------------------------------------------------

  private adopt(
    id: number,
    x: number,
    y: number,
    width: number,
    height: number,
    or: boolean,
  ): void {
    const w = new XWindow(id, x, y, width, height, or);
    this.windows.set(id, w);
    this.x.changeWindowAttributes(id, { eventMask: ADOPTED_EVENTS });
  }

  private onMapped(w: XWindow): void {
    w.mapped = true;
    this.loadProperties(w);
    this.maybeGiveRole(w);
    if (!w.overrideRedirect) this.writeClientList();
  }

  /** _NET_CLIENT_LIST: the mapped managed windows, oldest first (how wmctrl finds windows). */
  private writeClientList(): void {
    const list = [...this.windows.values()].filter((w) => w.mapped && !w.overrideRedirect);
    this.x.changeProperty32(
      this.root,
      this.atoms._NET_CLIENT_LIST,
      Predefined.WINDOW,
      list.map((w) => w.id),
    );
  }

  private unmapped(w: XWindow): void {
    const listed = w.mapped && !w.overrideRedirect;
    w.mapped = false;
    if (listed) this.writeClientList();
    w.role?.destroy();
    w.role = null;
    w.requested = null;
    if (w.surface) {
      // Xwayland destroys the surface next; until then its buffers go to a surface with no role
      w.surface.role = null;
      this.surfaces.dropViewport(w.surface);
      w.surface.kind = 'other';
      w.surface.window = null;
      w.surface = null;
      this.surfaces.release();
    }
    if (this.focused === w.id) this.focused = NONE;
    if (this.hovered === w.id) this.hovered = NONE;
  }

  private loadProperties(w: XWindow): void {
    if (w.loading) return;
    const a = this.atoms;
    const get = (atom: number): Promise<Property | null> =>
      this.x.getProperty(w.id, atom).catch(() => null);
    w.loading = Promise.all([
      get(a._NET_WM_NAME),
      get(Predefined.WM_NAME),
      get(Predefined.WM_CLASS),
      get(Predefined.WM_TRANSIENT_FOR),
      get(a.WM_PROTOCOLS),
      get(Predefined.WM_NORMAL_HINTS),
      get(a._NET_WM_WINDOW_TYPE),
      get(a._NET_WM_STATE),
    ])
      .then(([netName, name, cls, transient, protocols, hints, types, state]) => {
        w.title = titleOf(netName, name);
        w.appId = classOf(cls);
        w.transientFor =
          transient && transient.format === 32 && transient.value.length >= 4
            ? transient.value.readUInt32LE(0)
            : NONE;
        setWords(w.protocols, protocols);
        w.types.length = 0;
        if (types?.format === 32) w.types.push(...words(types));
        setWords(w.netState, state);
        [w.minSize, w.maxSize] = sizeHints(hints);
        w.propsLoaded = true;
        this.maybeGiveRole(w);
        this.conn.flush();
        this.surfaces.relay?.flush();
      })
      .catch((e: unknown) => this.options.warn(`X window 0x${w.id.toString(16)}: ${String(e)}`));
  }

  private onProperty(window: number, atom: number): void {
    const w = this.windows.get(window);
    if (!w || !w.propsLoaded) return;
    const a = this.atoms;
    if (atom === Predefined.WM_NAME || atom === a._NET_WM_NAME) {
      void Promise.all([
        this.x.getProperty(w.id, a._NET_WM_NAME).catch(() => null),
        this.x.getProperty(w.id, Predefined.WM_NAME).catch(() => null),
      ]).then(([netName, name]) => {
        w.title = titleOf(netName, name);
        w.role?.setTitle(this.options.tag, w.title);
        this.surfaces.relay?.flush();
      });
    } else if (atom === Predefined.WM_CLASS) {
      void this.x
        .getProperty(w.id, atom)
        .catch(() => null)
        .then((p) => {
          w.appId = classOf(p);
          w.role?.setAppId(this.options.appIdPrefix, w.appId);
          this.surfaces.relay?.flush();
        });
    } else if (atom === a.WM_PROTOCOLS) {
      void this.x
        .getProperty(w.id, atom)
        .catch(() => null)
        .then((p) => setWords(w.protocols, p));
    } else if (atom === Predefined.WM_NORMAL_HINTS) {
      void this.x
        .getProperty(w.id, atom)
        .catch(() => null)
        .then((p) => {
          [w.minSize, w.maxSize] = sizeHints(p);
          w.role?.setSizeLimits(...this.hostSizeLimits(w));
          this.surfaces.relay?.flush();
        });
    }
  }

  private onClientMessage(window: number, type: number, data: number[]): void {
    const a = this.atoms;
    const w = this.windows.get(window);
    if (type === a.WL_SURFACE_ID) {
      if (!w) return;
      const s = this.surfaces.byClientId(data[0]);
      if (s && (s.kind === 'unknown' || s.kind === 'resolving')) this.pair(w, s);
      else this.pendingIds.set(data[0], window);
    } else if (type === a.WL_SURFACE_SERIAL) {
      if (!w) return;
      const serial = (BigInt(data[1] >>> 0) << 32n) | BigInt(data[0] >>> 0);
      const s = this.surfaces.bySerial(serial);
      if (s && (s.kind === 'unknown' || s.kind === 'resolving')) this.pair(w, s);
      else this.pendingSerials.set(serial, window);
    } else if (type === a._NET_WM_STATE && w) {
      this.changeNetState(w, data[0], [data[1], data[2]]);
    } else if (type === a._NET_WM_MOVERESIZE && w?.role) {
      const direction = data[2];
      const seat = this.surfaces.seatHostId();
      if (seat === 0 || direction > MOVERESIZE_MOVE) return;
      w.role.moveResize(
        seat,
        this.surfaces.lastInputSerial,
        direction === MOVERESIZE_MOVE ? null : RESIZE_EDGES[direction],
      );
    } else if (type === a._NET_ACTIVE_WINDOW && w) {
      // a Wayland client cannot take focus; raising it among the X windows is what remains
      this.x.configureWindow(w.id, { stackMode: StackMode.Above });
    }
  }

  /**
   * _NET_WM_STATE: action 0 remove, 1 add, 2 toggle. Fullscreen and maximized are asked of the
   * compositor, and become the window's state when its configure says so (it may refuse); before
   * the window has a role they are kept for it.
   */
  private changeNetState(w: XWindow, action: number, atoms: number[]): void {
    const a = this.atoms;
    const want = (atom: number): boolean => action === 1 || (action === 2 && !w.netState.has(atom));
    const next = new Set(w.netState);
    for (const atom of atoms) {
      if (atom === NONE) continue;
      if (want(atom)) next.add(atom);
      else next.delete(atom);
    }
    const compositorOwns = [
      a._NET_WM_STATE_FULLSCREEN,
      a._NET_WM_STATE_MAXIMIZED_HORZ,
      a._NET_WM_STATE_MAXIMIZED_VERT,
    ];
    const toplevel = w.role?.toplevel ? w.role : null;
    if (toplevel) {
      if (atoms.includes(a._NET_WM_STATE_FULLSCREEN))
        toplevel.setFullscreen(next.has(a._NET_WM_STATE_FULLSCREEN));
      if (
        atoms.includes(a._NET_WM_STATE_MAXIMIZED_HORZ) ||
        atoms.includes(a._NET_WM_STATE_MAXIMIZED_VERT)
      ) {
        toplevel.setMaximized(
          next.has(a._NET_WM_STATE_MAXIMIZED_HORZ) && next.has(a._NET_WM_STATE_MAXIMIZED_VERT),
        );
      }
      for (const atom of compositorOwns) {
        if (w.netState.has(atom)) next.add(atom);
        else next.delete(atom);
      }
    }
    w.netState.clear();
    for (const atom of next) w.netState.add(atom);
    this.writeNetState(w);
  }

  private writeNetState(w: XWindow): void {
    this.x.changeProperty32(w.id, this.atoms._NET_WM_STATE, Predefined.ATOM, [...w.netState]);
  }

  private tryPairPending(s: XSurface): boolean {
    let window: number | undefined;
    if (s.serial !== null) {
      window = this.pendingSerials.get(s.serial);
      if (window !== undefined) this.pendingSerials.delete(s.serial);
    } else {
      window = this.pendingIds.get(s.obj.clientId);
      if (window !== undefined) this.pendingIds.delete(s.obj.clientId);
    }
    const w = window === undefined ? undefined : this.windows.get(window);
    if (!w) return false;
    this.pair(w, s);
    return true;
  }

  private pair(w: XWindow, s: XSurface): void {
    if (w.surface && w.surface !== s) this.unmapped(w);
    w.surface = s;
    s.window = w.id;
    s.kind = 'window';
    this.maybeGiveRole(w);
  }

  private maybeGiveRole(w: XWindow): void {
    if (w.role || !w.mapped || !w.propsLoaded || !w.surface || !this.shell?.wmBase) return;
    const relay = this.surfaces.relay;
    if (!relay) return;
    if (this.isHidden(w)) {
      // GTK's 1×1 drag-and-drop helpers and the like: never shown
      w.surface.kind = 'other';
      this.surfaces.release();
      return;
    }
    const popup = this.isPopup(w) ? this.popupParent(w) : null;
    const role = new HostRole(
      relay,
      this.shell.wmBase,
      w.surface.obj,
      {
        configured: () => this.surfaces.release(),
        toplevelConfigure: (r, c) => this.onToplevelConfigure(w, r, c),
        close: () => this.close(w),
      },
      popup
        ? {
            parent: popup.role!,
            x: this.toHost(w.x - popup.x),
            y: this.toHost(w.y - popup.y),
            width: this.hostSize(w.width),
            height: this.hostSize(w.height),
          }
        : null,
    );
    w.role = role;
    w.surface.role = role;
    if (!popup) {
      role.setTitle(this.options.tag, w.title);
      if (w.appId) role.setAppId(this.options.appIdPrefix, w.appId);
      if (w.minSize[0] || w.minSize[1] || w.maxSize[0] || w.maxSize[1])
        role.setSizeLimits(...this.hostSizeLimits(w));
      const parent = this.windows.get(w.transientFor);
      if (parent?.role?.toplevel) role.setParent(parent.role);
      if (w.netState.has(this.atoms._NET_WM_STATE_FULLSCREEN)) role.setFullscreen(true);
      if (
        w.netState.has(this.atoms._NET_WM_STATE_MAXIMIZED_HORZ) &&
        w.netState.has(this.atoms._NET_WM_STATE_MAXIMIZED_VERT)
      )
        role.setMaximized(true);
    }
    this.surfaces.showUnscaled(w.surface, w.width, w.height);
    role.commit();
    relay.flush();
  }

  private isHidden(w: XWindow): boolean {
    return w.overrideRedirect && w.width <= 1 && w.height <= 1;
  }

  private isPopup(w: XWindow): boolean {
    const a = this.atoms;
    if (w.overrideRedirect) return true;
    return w.types.some(
      (t) => t === a._NET_WM_WINDOW_TYPE_DROPDOWN_MENU || t === a._NET_WM_WINDOW_TYPE_POPUP_MENU,
    );
  }

  /** The window a popup hangs from: its WM_TRANSIENT_FOR, else where the input last was. */
  private popupParent(w: XWindow): XWindow | null {
    for (const id of [w.transientFor, this.hovered, this.focused]) {
      const p = this.windows.get(id);
      if (p && p !== w && p.role && !p.role.destroyed) return p;
    }
    for (const p of this.windows.values()) if (p !== w && p.role?.toplevel) return p;
    return null;
  }

  private onToplevelConfigure(w: XWindow, _r: Role, c: ToplevelConfigure): void {
    const a = this.atoms;
    const width = this.toX(c.width);
    const height = this.toX(c.height);
    w.requested = width > 0 && height > 0 ? [c.width, c.height] : null;
    const large =
      c.states.has(XdgToplevelState.maximized) || c.states.has(XdgToplevelState.fullscreen);
    if (large) w.restoreSize ??= [w.width, w.height];
    if (w.requested && (width !== w.width || height !== w.height)) {
      this.x.configureWindow(w.id, { width, height });
    } else if (!w.requested && !large && w.restoreSize) {
      // the compositor leaves the size to the client: X clients expect the WM to restore it
      const [rw, rh] = w.restoreSize;
      this.x.configureWindow(w.id, { width: rw, height: rh });
    }
    if (!large) w.restoreSize = null;
    this.updateGeometry(w);
    const sync = (atom: number, on: boolean): void => {
      if (on) w.netState.add(atom);
      else w.netState.delete(atom);
    };
    sync(a._NET_WM_STATE_FULLSCREEN, c.states.has(XdgToplevelState.fullscreen));
    sync(a._NET_WM_STATE_MAXIMIZED_HORZ, c.states.has(XdgToplevelState.maximized));
    sync(a._NET_WM_STATE_MAXIMIZED_VERT, c.states.has(XdgToplevelState.maximized));
    sync(a._NET_WM_STATE_FOCUSED, c.states.has(XdgToplevelState.activated));
    this.writeNetState(w);
    this.conn.flush();
  }

  /**
   * The toplevel's window geometry: the size the compositor asked for while the X window is
   * being resized to it, so the buffers X drew before (larger ones too) fit the configured
   * state; the X window's own size when the compositor left that to the client.
   */
  private updateGeometry(w: XWindow): void {
    if (!w.role?.toplevel) return;
    const [width, height] = w.requested ?? [this.hostSize(w.width), this.hostSize(w.height)];
    w.role.setWindowGeometry(width, height);
  }

  // ---- --x-unscale: X pixels and the host's surface coordinates ----------------------------

  private toX(v: number): number {
    return this.options.unscale?.toX(v) ?? v;
  }

  private toHost(v: number): number {
    return this.options.unscale?.toHost(v) ?? v;
  }

  private hostSize(v: number): number {
    return this.options.unscale?.size(v) ?? v;
  }

  /** WM_NORMAL_HINTS' limits on the host, rounded up (a fixed size stays fixed). */
  private hostSizeLimits(w: XWindow): [[number, number], [number, number]] {
    const u = this.options.unscale;
    if (!u) return [w.minSize, w.maxSize];
    return [
      [u.size(w.minSize[0]), u.size(w.minSize[1])],
      [u.size(w.maxSize[0]), u.size(w.maxSize[1])],
    ];
  }

  /** The compositor asks to close: WM_DELETE_WINDOW when the client takes it, else disconnect it. */
  close(w: XWindow): void {
    if (w.protocols.has(this.atoms.WM_DELETE_WINDOW)) {
      this.x.sendClientMessage(w.id, this.atoms.WM_PROTOCOLS, [
        this.atoms.WM_DELETE_WINDOW,
        CURRENT_TIME,
      ]);
    } else {
      this.x.killClient(w.id);
    }
    this.conn.flush();
  }
}

function words(p: Property): number[] {
  const out: number[] = [];
  for (let i = 0; i + 4 <= p.value.length; i += 4) out.push(p.value.readUInt32LE(i));
  return out;
}

function setWords(set: Set<number>, p: Property | null): void {
  set.clear();
  if (p?.format === 32) for (const v of words(p)) set.add(v);
}

/** _NET_WM_NAME (UTF-8) over WM_NAME (Latin-1, or whatever the client put there). */
function titleOf(netName: Property | null, name: Property | null): string {
  if (netName && netName.format === 8 && netName.value.length > 0)
    return netName.value.toString('utf8');
  if (name && name.format === 8)
    return name.value.toString(name.type === Predefined.STRING ? 'latin1' : 'utf8');
  return '';
}

/** WM_CLASS is "instance\0class\0": the class names the application. */
function classOf(p: Property | null): string {
  if (!p || p.format !== 8) return '';
  const parts = p.value.toString('latin1').split('\0');
  return parts[1] || parts[0] || '';
}

function sizeHints(p: Property | null): [[number, number], [number, number]] {
  if (!p || p.format !== 32 || p.value.length < 9 * 4)
    return [
      [0, 0],
      [0, 0],
    ];
  const v = words(p);
  const clamp = (n: number): number => (n > 0 && n < 0x8000 ? n : 0);
  const min: [number, number] = v[0] & P_MIN_SIZE ? [clamp(v[5]), clamp(v[6])] : [0, 0];
  const max: [number, number] = v[0] & P_MAX_SIZE ? [clamp(v[7]), clamp(v[8])] : [0, 0];
  return [min, max];
}

// CLIPBOARD and PRIMARY between X11 and Wayland. The WM watches who owns each X selection
// (XFixes): when an X client takes one, the host gets a source of ours offering the same types,
// whose reads become ConvertSelection into a window of ours; when the host's selection changes
// while an X window has focus, the WM takes the X selection and answers X clients' requests from
// the host's offer. Large data goes in INCR chunks both ways (ICCCM 2.7.2).
import type { Atoms } from './atoms.js';
import { Predefined } from './atoms.js';
import type { HostOffer, HostSelection, HostSelectionEvents } from './host-selection.js';
import { closeQuietly } from '../wire/fd-queue.js';
import { PipeReader, PipeWriter } from './pipes.js';
import type { WindowManager } from './wm.js';
import type { XEvent } from './x11/events.js';
import type { Property } from './x11/requests.js';
import { CURRENT_TIME, EventMask, NONE, PropMode } from './x11/requests.js';

export interface Selections {
  /** The WM is ready: start watching the X selections. */
  start(): void;
  handleEvent(ev: XEvent): void;
  /** Ends every transfer (Xwayland is going). */
  close(): void;
}

export type SelectionKind = 'clipboard' | 'primary';

/** A transfer that makes no progress for this long is given up. */
const STALL_MS = 10_000;
/** 32-bit units asked for per GetProperty. */
const PROPERTY_READ_UNITS = 256 * 1024;
/** Most bytes one selection property may hold as we read it (a TARGETS list far less). */
const MAX_PROPERTY_BYTES = 64 << 20;
const MAX_TARGETS = 64;
/** Data of a Wayland source buffered for a slow X requestor, in INCR chunks, before we stop reading. */
const BUFFERED_CHUNKS = 4;
const XFIXES_SET_SELECTION_OWNER = 1;
const XFIXES_SELECTION_WINDOW_DESTROY = 2;
const XFIXES_SELECTION_CLIENT_CLOSE = 4;

const UTF8_TEXT = 'text/plain;charset=utf-8';
/** Wayland text types, best first, and the X text targets they answer. */
const TEXT_MIMES = [UTF8_TEXT, 'UTF8_STRING', 'text/plain', 'STRING', 'TEXT'];

/** One X selection and the host's selection of the same kind. */
class Selection {
  host: HostSelection | null = null;
  /** The host's offer the X side reads while we own the X selection (or will, once we do). */
  offer: HostOffer | null = null;
  /** X targets we answer for that offer → the mime type each is read as. */
  readonly targets = new Map<number, string>();
  /** Server time at which we became the X owner (for TIMESTAMP). */
  ownedAt = 0;
  /** The X selection's last-change time as XFixes last told it (0: never changed). */
  lastChange = 0;
  /** What the X owner offers the host: mime type → X target. */
  readonly xTargets = new Map<string, number>();
  /** Counts X owner changes: answers about an earlier owner are dropped. */
  generation = 0;

  constructor(
    readonly kind: SelectionKind,
    readonly atom: number,
  ) {}
}

/** Where data read from an X selection goes. */
interface Sink {
  /** Takes data; calls `ready` once it can take more (at once, or later). */
  write(data: Buffer, ready: () => void): void;
  end(ok: boolean): void;
}

export class SelectionBridge implements Selections {
  /** Owner of our X selections and parent of each transfer's window. */
  window = NONE;
  private readonly selections: Selection[] = [];
  /** Host offers that came before the X side was ready. */
  private readonly early = new Map<SelectionKind, HostOffer | null>();
  private readonly incoming = new Map<number, XToHost>();
  private readonly outgoing = new Set<HostToX>();
  /** Windows of finished transfers, until their DestroyNotify frees their ids. */
  private readonly destroyed = new Set<number>();
  /** Requestor windows we watch for INCR, and how many transfers need each. */
  private readonly watched = new Map<number, number>();
  private readonly atomNames = new Map<number, string>();
  /** Host devices bound before the X side was ready. */
  private readonly pendingHosts = new Map<SelectionKind, HostSelection>();
  private started = false;
  private closed = false;

  constructor(readonly wm: WindowManager) {}

  get atoms(): Atoms {
    return this.wm.atoms;
  }

  /** Bytes per property write of ours: the largest request the server takes, less its header. */
  get chunkSize(): number {
    const max = this.wm.conn.setup?.maxRequestBytes ?? 262140;
    return Math.max(4096, (max - 64) & ~3);
  }

  /** The host's device for one kind of selection, once its globals are bound. */
  attachHost(kind: SelectionKind, create: (events: HostSelectionEvents) => HostSelection): void {
    const events: HostSelectionEvents = {
      selection: (offer) => {
        const sel = this.byKind(kind);
        if (sel) this.hostSelection(sel, offer);
        else this.early.set(kind, offer);
      },
      send: (mime, fd) => {
        const sel = this.byKind(kind);
        if (sel) this.hostReads(sel, mime, fd);
        else closeQuietly(fd);
      },
      cancelled: () => {},
    };
    const host = create(events);
    const sel = this.byKind(kind);
    if (sel) sel.host = host;
    else this.pendingHosts.set(kind, host);
  }

  start(): void {
    const wm = this.wm;
    if (!wm.xfixes) {
      wm.warn('Xwayland has no XFIXES extension: no clipboard between X11 and Wayland');
      return;
    }
    const a = this.atoms;
    this.window = wm.conn.allocateId();
    wm.x.createWindow(this.window, wm.checkWindow, { x: 0, y: 0, width: 1, height: 1 }, true, {
      eventMask: EventMask.PropertyChange,
    });
    for (const [kind, atom] of [
      ['clipboard', a.CLIPBOARD],
      ['primary', a.PRIMARY],
    ] as const) {
      const sel = new Selection(kind, atom);
      sel.host = this.pendingHosts.get(kind) ?? null;
      this.selections.push(sel);
      wm.x.xfixesSelectSelectionInput(
        wm.xfixes,
        this.window,
        atom,
        XFIXES_SET_SELECTION_OWNER |
          XFIXES_SELECTION_WINDOW_DESTROY |
          XFIXES_SELECTION_CLIENT_CLOSE,
      );
    }
    this.pendingHosts.clear();
    this.started = true;
    for (const [kind, offer] of this.early) this.hostSelection(this.byKind(kind)!, offer);
    this.early.clear();
  }

  close(): void {
    this.closed = true;
    for (const t of [...this.incoming.values()]) t.finish(false);
    for (const t of [...this.outgoing]) t.finish();
  }

  handleEvent(ev: XEvent): void {
    if (!this.started) return;
    switch (ev.kind) {
      case 'xfixes-selection-notify': {
        const sel = this.byAtom(ev.selection);
        if (sel) this.xOwnerChanged(sel, ev.owner, ev.selectionTime);
        break;
      }
      case 'selection-request':
        if (ev.owner === this.window) this.xRequest(ev);
        break;
      case 'selection-notify':
        this.incoming.get(ev.requestor)?.converted(ev.property);
        break;
      case 'destroy':
        // no event about a window of ours comes after this one: its id is free again
        if (this.destroyed.delete(ev.window)) this.wm.conn.releaseId(ev.window);
        // a requestor that went away mid-transfer
        if (this.watched.delete(ev.window)) {
          for (const t of [...this.outgoing]) if (t.requestor === ev.window) t.finish();
        }
        break;
      case 'property':
        this.incoming.get(ev.window)?.propertyChanged(ev.atom, ev.deleted);
        if (ev.deleted && this.watched.has(ev.window)) {
          for (const t of [...this.outgoing]) t.propertyDeleted(ev.window, ev.atom);
        }
        break;
      default:
        break;
    }
  }

  // ---- X → host ------------------------------------------------------------------------------

  /** XFixes: the X selection has a new owner (or none). */
  private xOwnerChanged(sel: Selection, owner: number, time: number): void {
    sel.lastChange = time;
    if (owner === this.window) {
      sel.ownedAt = time;
      return;
    }
    sel.generation++;
    sel.offer = null;
    sel.targets.clear();
    sel.xTargets.clear();
    if (!sel.host) return;
    if (owner === NONE) {
      sel.host.withdraw(this.wm.surfaces.lastSerial);
      return;
    }
    const generation = sel.generation;
    const parts: Buffer[] = [];
    let size = 0;
    this.convert(sel, this.atoms.TARGETS, '', {
      write: (data, ready) => {
        parts.push(data);
        size += data.length;
        if (size <= MAX_TARGETS * 4 * 4) ready();
      },
      end: (ok) => {
        if (!ok || generation !== sel.generation) return;
        const list = Buffer.concat(parts);
        const targets: number[] = [];
        for (let i = 0; i + 4 <= list.length && targets.length < MAX_TARGETS; i += 4)
          targets.push(list.readUInt32LE(i));
        void this.offerToHost(sel, generation, targets);
      },
    });
  }

  /** Offers the X owner's targets to the host, as mime types. */
  private async offerToHost(sel: Selection, generation: number, targets: number[]): Promise<void> {
    let names: string[];
    try {
      names = await Promise.all(targets.map((t) => this.atomName(t)));
    } catch {
      return;
    }
    if (generation !== sel.generation || this.closed || !sel.host) return;
    const byName = new Map(names.map((n, i) => [n, targets[i]]));
    const x = sel.xTargets;
    const text = byName.get('UTF8_STRING') ?? byName.get('STRING') ?? byName.get('TEXT');
    if (text !== undefined) {
      x.set(UTF8_TEXT, text);
      x.set('text/plain', text);
    }
    for (const [name, atom] of byName) if (name.includes('/') && !x.has(name)) x.set(name, atom);
    if (x.size === 0) return;
    sel.host.offer([...x.keys()], this.wm.surfaces.lastSerial);
  }

  /** A host client reads the X selection as `mime`, into `fd`. */
  private hostReads(sel: Selection, mime: string, fd: number): void {
    const target = sel.xTargets.get(mime);
    if (target === undefined || this.closed) {
      closeQuietly(fd);
      return;
    }
    let ready: (() => void) | null = null;
    let transfer: XToHost | null = null;
    const pipe = new PipeWriter(
      fd,
      () => {
        const r = ready;
        ready = null;
        r?.();
      },
      () => transfer?.finish(false),
    );
    transfer = this.convert(sel, target, `${sel.kind} to the host as ${mime}`, {
      write: (data, next) => {
        pipe.write(data);
        if (pipe.isClosed) return;
        if (pipe.queued === 0) next();
        else ready = next;
      },
      end: (ok) => {
        if (ok) pipe.end();
        else pipe.close();
      },
    });
  }

  /** Reads the X selection as `target`; `what` names the transfer in the log ('': no log). */
  private convert(sel: Selection, target: number, what: string, sink: Sink): XToHost {
    const t = new XToHost(this, sel.atom, target, what, sink);
    this.incoming.set(t.window, t);
    this.wm.conn.flush();
    return t;
  }

  forgetIncoming(t: XToHost): void {
    this.incoming.delete(t.window);
    this.destroyed.add(t.window);
  }

  // ---- host → X ------------------------------------------------------------------------------

  /** The host's selection changed (an X window has focus): the X side reads it from us. */
  private hostSelection(sel: Selection, offer: HostOffer | null): void {
    const wm = this.wm;
    if (!offer) {
      if (sel.offer) {
        sel.offer = null;
        sel.targets.clear();
        wm.x.setSelectionOwner(NONE, sel.atom, CURRENT_TIME);
        wm.conn.flush();
      }
      return;
    }
    sel.offer = offer;
    const mimes = offer.mimeTypes.slice(0, MAX_TARGETS);
    Promise.all(
      mimes.map((m) => (m.includes('/') ? wm.x.internAtom(m) : Promise.resolve(NONE))),
    ).then(
      (atoms) => {
        if (sel.offer !== offer || this.closed) return;
        sel.targets.clear();
        const text = TEXT_MIMES.find((m) => mimes.includes(m));
        if (text) {
          for (const t of [this.atoms.UTF8_STRING, Predefined.STRING, this.atoms.TEXT])
            sel.targets.set(t, text);
        }
        mimes.forEach((m, i) => {
          if (atoms[i] !== NONE && !sel.targets.has(atoms[i])) sel.targets.set(atoms[i], m);
        });
        // at the last change we know of: if an X client took the selection since, it keeps it
        // (ICCCM: an earlier time has no effect), rather than lose a copy newer than the host's
        wm.x.setSelectionOwner(this.window, sel.atom, sel.lastChange || CURRENT_TIME);
        wm.conn.flush();
      },
      () => {},
    );
    wm.conn.flush();
  }

  /** An X client asks for the selection we own. */
  private xRequest(ev: Extract<XEvent, { kind: 'selection-request' }>): void {
    const a = this.atoms;
    const x = this.wm.x;
    const sel = this.byAtom(ev.selection);
    // obsolete clients name no property: the target's name is used (ICCCM 2.2)
    const property = ev.property === NONE ? ev.target : ev.property;
    const notify = (p: number): void =>
      this.notify(ev.requestor, ev.selection, ev.target, p, ev.time);
    if (!sel?.offer || this.closed) {
      notify(NONE);
    } else if (ev.target === a.TARGETS) {
      x.changeProperty32(ev.requestor, property, Predefined.ATOM, [
        a.TARGETS,
        a.TIMESTAMP,
        ...sel.targets.keys(),
      ]);
      notify(property);
    } else if (ev.target === a.TIMESTAMP) {
      x.changeProperty32(ev.requestor, property, Predefined.INTEGER, [sel.ownedAt]);
      notify(property);
    } else {
      const mime = sel.targets.get(ev.target);
      const fd = mime === undefined ? -1 : sel.offer.receive(mime);
      if (fd < 0) {
        notify(NONE);
      } else {
        const type = ev.target === a.TEXT ? a.UTF8_STRING : ev.target;
        const what = `${sel.kind} from the host as ${mime}`;
        this.outgoing.add(new HostToX(this, what, ev, property, type, fd));
      }
    }
    this.wm.conn.flush();
  }

  /** Sends SelectionNotify to a requestor: its data is in `property`, or there is none. */
  notify(
    requestor: number,
    selection: number,
    target: number,
    property: number,
    time: number,
  ): void {
    const ev = Buffer.alloc(32);
    ev[0] = 31;
    ev.writeUInt32LE(time >>> 0, 4);
    ev.writeUInt32LE(requestor >>> 0, 8);
    ev.writeUInt32LE(selection >>> 0, 12);
    ev.writeUInt32LE(target >>> 0, 16);
    ev.writeUInt32LE(property >>> 0, 20);
    this.wm.x.sendEvent(false, requestor, 0, ev);
  }

  /** PropertyNotify on a requestor's window, for INCR: our event mask there gets PropertyChange. */
  watch(window: number): void {
    const n = this.watched.get(window) ?? 0;
    this.watched.set(window, n + 1);
    if (n === 0) {
      this.wm.x.changeWindowAttributes(window, {
        eventMask: this.wm.eventMaskOf(window) | EventMask.PropertyChange,
      });
    }
  }

  unwatch(window: number): void {
    const n = this.watched.get(window);
    if (n === undefined) return;
    if (n > 1) {
      this.watched.set(window, n - 1);
      return;
    }
    this.watched.delete(window);
    this.wm.x.changeWindowAttributes(window, { eventMask: this.wm.eventMaskOf(window) });
  }

  forgetOutgoing(t: HostToX): void {
    this.outgoing.delete(t);
  }

  // ---- helpers -------------------------------------------------------------------------------

  private byAtom(atom: number): Selection | undefined {
    return this.selections.find((s) => s.atom === atom);
  }

  private byKind(kind: SelectionKind): Selection | undefined {
    return this.selections.find((s) => s.kind === kind);
  }

  private async atomName(atom: number): Promise<string> {
    const known = this.atomNames.get(atom);
    if (known !== undefined) return known;
    const name = await this.wm.x.getAtomName(atom);
    if (this.atomNames.size >= 4096) this.atomNames.clear();
    this.atomNames.set(atom, name);
    return name;
  }
}

/** One ConvertSelection of an X selection into a window of ours, and its reading (INCR too). */
class XToHost {
  readonly window: number;
  private incr = false;
  private converted_ = false;
  /** A chunk is being read or written: the next PropertyNotify must wait for it. */
  private busy = false;
  private finished = false;
  private readonly timer: NodeJS.Timeout;
  private bytes = 0;
  private chunks = 0;

  constructor(
    private readonly bridge: SelectionBridge,
    selection: number,
    target: number,
    private readonly what: string,
    private readonly sink: Sink,
  ) {
    const wm = bridge.wm;
    this.window = wm.conn.allocateId();
    // StructureNotify: its DestroyNotify tells when its id may be used again
    wm.x.createWindow(this.window, bridge.window, { x: 0, y: 0, width: 1, height: 1 }, true, {
      eventMask: EventMask.PropertyChange | EventMask.StructureNotify,
    });
    wm.x.convertSelection(
      this.window,
      selection,
      target,
      bridge.atoms._TSWL_SELECTION,
      CURRENT_TIME,
    );
    this.timer = setTimeout(() => this.finish(false), STALL_MS);
  }

  /** SelectionNotify: the owner put the data in our property, or refused (NONE). */
  converted(property: number): void {
    if (this.converted_ || this.finished) return;
    this.converted_ = true;
    if (property === NONE) {
      this.finish(false);
      return;
    }
    this.busy = true;
    void this.read().then((p) => {
      if (!p) return;
      if (p.type === this.bridge.atoms.INCR) {
        this.incr = true;
        this.nextChunk();
        return;
      }
      this.bytes = p.value.length;
      this.sink.write(p.value, () => this.finish(true));
    });
  }

  /** PropertyNotify on our window: in INCR, a new chunk (empty at the end). */
  propertyChanged(atom: number, deleted: boolean): void {
    if (!this.incr || deleted || this.busy || this.finished) return;
    if (atom !== this.bridge.atoms._TSWL_SELECTION) return;
    this.busy = true;
    this.timer.refresh();
    void this.read().then((p) => {
      if (!p) return;
      if (p.value.length === 0) {
        this.finish(true);
        return;
      }
      this.bytes += p.value.length;
      this.chunks++;
      this.sink.write(p.value, () => this.nextChunk());
    });
  }

  /** Deleting the property asks the owner for the next INCR chunk. */
  private nextChunk(): void {
    if (this.finished) return;
    this.busy = false;
    this.timer.refresh();
    const wm = this.bridge.wm;
    wm.x.deleteProperty(this.window, this.bridge.atoms._TSWL_SELECTION);
    wm.conn.flush();
  }

  /** Reads the whole property, in parts if it is long; null when the transfer ended meanwhile. */
  private async read(): Promise<Property | null> {
    const x = this.bridge.wm.x;
    const parts: Buffer[] = [];
    let size = 0;
    let offset = 0;
    for (;;) {
      let p: Property;
      try {
        p = await x.getProperty(
          this.window,
          this.bridge.atoms._TSWL_SELECTION,
          0,
          offset,
          PROPERTY_READ_UNITS,
        );
      } catch {
        this.finish(false);
        return null;
      }
      if (this.finished) return null;
      parts.push(p.value);
      size += p.value.length;
      offset += p.value.length / 4;
      // a part that is not whole 32-bit units is the last one
      if (p.bytesAfter === 0 || p.value.length === 0 || p.value.length % 4 !== 0) {
        return { ...p, value: parts.length === 1 ? p.value : Buffer.concat(parts) };
      }
      if (size + p.bytesAfter > MAX_PROPERTY_BYTES) {
        this.finish(false);
        return null;
      }
    }
  }

  finish(ok: boolean): void {
    if (this.finished) return;
    this.finished = true;
    clearTimeout(this.timer);
    this.bridge.forgetIncoming(this);
    const wm = this.bridge.wm;
    wm.x.destroyWindow(this.window);
    wm.conn.flush();
    if (this.what)
      wm.info(`X11 ${this.what}: ${transferred(ok, this.bytes, this.incr, this.chunks)}`);
    this.sink.end(ok);
  }
}

/** The host's selection read for one X requestor: in one property, or in INCR chunks. */
class HostToX {
  private readonly reader: PipeReader;
  private readonly chunks: Buffer[] = [];
  private buffered = 0;
  private eof = false;
  private incr = false;
  /** An INCR chunk is in the requestor's property: the next waits for its deletion. */
  private awaitingDelete = false;
  private done = false;
  private readonly timer: NodeJS.Timeout;
  private bytes = 0;
  private chunkCount = 0;
  private ok = false;

  constructor(
    private readonly bridge: SelectionBridge,
    private readonly what: string,
    private readonly request: Extract<XEvent, { kind: 'selection-request' }>,
    private readonly property: number,
    private readonly type: number,
    fd: number,
  ) {
    this.reader = new PipeReader(
      fd,
      (chunk) => this.data(chunk),
      (failed) => this.ended(failed),
    );
    this.timer = setTimeout(() => this.finish(), STALL_MS);
  }

  get requestor(): number {
    return this.request.requestor;
  }

  private data(chunk: Buffer): void {
    this.timer.refresh();
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    if (!this.incr && this.buffered > this.bridge.chunkSize) this.startIncr();
    else if (this.incr) this.pump();
    if (this.buffered > BUFFERED_CHUNKS * this.bridge.chunkSize) this.reader.pause();
  }

  private ended(failed: boolean): void {
    this.eof = true;
    if (this.incr) {
      this.pump();
      return;
    }
    const r = this.request;
    if (failed) {
      this.bridge.notify(r.requestor, r.selection, r.target, NONE, r.time);
    } else {
      this.bridge.wm.x.changeProperty(
        PropMode.Replace,
        r.requestor,
        this.property,
        this.type,
        8,
        this.take(this.buffered),
      );
      this.bridge.notify(r.requestor, r.selection, r.target, this.property, r.time);
      this.ok = true;
    }
    this.finish();
  }

  private startIncr(): void {
    const r = this.request;
    const x = this.bridge.wm.x;
    this.incr = true;
    this.bridge.watch(r.requestor);
    // the size is a lower bound: we do not know how much the source will write
    x.changeProperty32(r.requestor, this.property, this.bridge.atoms.INCR, [this.buffered]);
    this.bridge.notify(r.requestor, r.selection, r.target, this.property, r.time);
    this.awaitingDelete = true;
    this.bridge.wm.conn.flush();
  }

  /** PropertyNotify (deleted) on a watched requestor: it took the last chunk. */
  propertyDeleted(window: number, atom: number): void {
    if (!this.incr || window !== this.request.requestor || atom !== this.property) return;
    if (!this.awaitingDelete) return;
    this.awaitingDelete = false;
    this.timer.refresh();
    this.pump();
  }

  /** Writes the next chunk once the requestor took the last one and a whole chunk (or the end) is here. */
  private pump(): void {
    if (this.awaitingDelete || this.done) return;
    const size = this.bridge.chunkSize;
    if (this.buffered < size && !this.eof) return;
    const chunk = this.take(Math.min(size, this.buffered));
    this.bridge.wm.x.changeProperty(
      PropMode.Replace,
      this.request.requestor,
      this.property,
      this.type,
      8,
      chunk,
    );
    this.awaitingDelete = true;
    this.chunkCount++;
    if (chunk.length === 0) {
      this.ok = true;
      this.chunkCount--;
      this.finish();
    } else if (!this.eof && this.buffered < BUFFERED_CHUNKS * size) this.reader.resume();
    this.bridge.wm.conn.flush();
  }

  /** The first `n` buffered bytes. */
  private take(n: number): Buffer {
    this.bytes += n;
    const all = this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks);
    this.chunks.length = 0;
    if (all.length > n) this.chunks.push(all.subarray(n));
    this.buffered = all.length - n;
    return all.subarray(0, n);
  }

  finish(): void {
    if (this.done) return;
    this.done = true;
    clearTimeout(this.timer);
    this.reader.close();
    if (this.incr) this.bridge.unwatch(this.request.requestor);
    this.bridge.forgetOutgoing(this);
    this.bridge.wm.conn.flush();
    this.bridge.wm.info(
      `X11 ${this.what}: ${transferred(this.ok, this.bytes, this.incr, this.chunkCount)}`,
    );
  }
}

function transferred(ok: boolean, bytes: number, incr: boolean, chunks: number): string {
  const how = incr ? `in ${chunks} INCR chunk${chunks === 1 ? '' : 's'}` : 'in one property';
  return ok ? `${bytes} bytes ${how}` : `failed after ${bytes} bytes`;
}

// The X11 requests the window manager makes, typed, with their replies decoded (core protocol,
// Composite and XFixes). Opcodes and layouts are those of the X11 protocol specification.
import type { XConnection } from './connection.js';
import type { XReader } from './wire.js';

export const NONE = 0;
export const CURRENT_TIME = 0;

/** Event masks (core protocol). */
export const EventMask = {
  KeyPress: 1 << 0,
  EnterWindow: 1 << 4,
  LeaveWindow: 1 << 5,
  StructureNotify: 1 << 17,
  SubstructureNotify: 1 << 19,
  SubstructureRedirect: 1 << 20,
  FocusChange: 1 << 21,
  PropertyChange: 1 << 22,
} as const;

/** Window attribute value-mask bits (CreateWindow, ChangeWindowAttributes). */
export const Cw = {
  OverrideRedirect: 1 << 9,
  EventMask: 1 << 11,
  Cursor: 1 << 14,
} as const;

/** ConfigureWindow value-mask bits. */
export const ConfigMask = {
  X: 1 << 0,
  Y: 1 << 1,
  Width: 1 << 2,
  Height: 1 << 3,
  BorderWidth: 1 << 4,
  Sibling: 1 << 5,
  StackMode: 1 << 6,
} as const;

export const StackMode = { Above: 0, Below: 1 } as const;
export const PropMode = { Replace: 0, Prepend: 1, Append: 2 } as const;

export interface Geometry {
  x: number;
  y: number;
  width: number;
  height: number;
}

export interface Property {
  /** Atom of the property's type; NONE when the property does not exist. */
  readonly type: number;
  readonly format: number;
  /** The value's bytes (for format 32: little-endian words). */
  readonly value: Buffer;
  /** Bytes left after this part (for reading big properties in parts). */
  readonly bytesAfter: number;
}

export interface ExtensionInfo {
  readonly present: boolean;
  readonly majorOpcode: number;
  readonly firstEvent: number;
  readonly firstError: number;
}

/** Typed requests on one connection. */
export class XRequests {
  constructor(readonly conn: XConnection) {}

  internAtom(name: string, onlyIfExists = false): Promise<number> {
    const bytes = Buffer.from(name, 'latin1');
    return this.conn.request(
      (w) =>
        w
          .begin(16, onlyIfExists ? 1 : 0)
          .u16(bytes.length)
          .u16(0)
          .data(bytes)
          .end(),
      (r) => r.u32(8),
    );
  }

  getAtomName(atom: number): Promise<string> {
    return this.conn.request(
      (w) => w.begin(17).u32(atom).end(),
      (r) => r.bytes(32, r.u16(8)).toString('latin1'),
    );
  }

  createWindow(
    id: number,
    parent: number,
    g: Geometry,
    inputOnly: boolean,
    values: { overrideRedirect?: boolean; eventMask?: number } = {},
  ): void {
    let mask = 0;
    const list: number[] = [];
    if (values.overrideRedirect !== undefined) {
      mask |= Cw.OverrideRedirect;
      list.push(values.overrideRedirect ? 1 : 0);
    }
    if (values.eventMask !== undefined) {
      mask |= Cw.EventMask;
      list.push(values.eventMask);
    }
    this.conn.send((w) => {
      // depth and visual 0: copied from the parent
      w.begin(1, 0).u32(id).u32(parent).i16(g.x).i16(g.y).u16(g.width).u16(g.height);
      w.u16(0)
        .u16(inputOnly ? 2 : 1)
        .u32(0)
        .u32(mask);
      for (const v of list) w.u32(v);
      w.end();
    });
  }

  changeWindowAttributes(window: number, values: { eventMask?: number; cursor?: number }): void {
    let mask = 0;
    const list: number[] = [];
    if (values.eventMask !== undefined) {
      mask |= Cw.EventMask;
      list.push(values.eventMask);
    }
    if (values.cursor !== undefined) {
      mask |= Cw.Cursor;
      list.push(values.cursor);
    }
    this.conn.send((w) => {
      w.begin(2).u32(window).u32(mask);
      for (const v of list) w.u32(v);
      w.end();
    });
  }

  /** ChangeWindowAttributes whose error (another WM redirects the root) is awaited. */
  async selectInputChecked(window: number, eventMask: number): Promise<void> {
    this.changeWindowAttributes(window, { eventMask });
    await this.getInputFocus();
  }

  getWindowAttributes(window: number): Promise<{ overrideRedirect: boolean; mapState: number }> {
    return this.conn.request(
      (w) => w.begin(3).u32(window).end(),
      (r) => ({ mapState: r.u8(26), overrideRedirect: r.u8(27) !== 0 }),
    );
  }

  destroyWindow(window: number): void {
    this.conn.send((w) => w.begin(4).u32(window).end());
  }

  mapWindow(window: number): void {
    this.conn.send((w) => w.begin(8).u32(window).end());
  }

  configureWindow(
    window: number,
    v: Partial<Geometry> & { borderWidth?: number; stackMode?: number },
  ): void {
    const items: [number, number, boolean][] = [
      [ConfigMask.X, v.x ?? 0, v.x !== undefined],
      [ConfigMask.Y, v.y ?? 0, v.y !== undefined],
      [ConfigMask.Width, v.width ?? 0, v.width !== undefined],
      [ConfigMask.Height, v.height ?? 0, v.height !== undefined],
      [ConfigMask.BorderWidth, v.borderWidth ?? 0, v.borderWidth !== undefined],
      [ConfigMask.StackMode, v.stackMode ?? 0, v.stackMode !== undefined],
    ];
    let mask = 0;
    for (const [bit, , set] of items) if (set) mask |= bit;
    if (mask === 0) return;
    this.conn.send((w) => {
      w.begin(12).u32(window).u16(mask).u16(0);
      // signed 16-bit positions travel sign-extended in 32-bit slots
      for (const [, value, set] of items) if (set) w.u32(value | 0);
      w.end();
    });
  }

  getGeometry(drawable: number): Promise<Geometry> {
    return this.conn.request(
      (w) => w.begin(14).u32(drawable).end(),
      (r) => ({ x: r.i16(12), y: r.i16(14), width: r.u16(16), height: r.u16(18) }),
    );
  }

  /** Children of a window, bottom to top. */
  queryTree(window: number): Promise<number[]> {
    return this.conn.request(
      (w) => w.begin(15).u32(window).end(),
      (r) => r.u32s(32, r.u16(16)),
    );
  }

  changeProperty(
    mode: number,
    window: number,
    property: number,
    type: number,
    format: 8 | 16 | 32,
    data: Buffer,
  ): void {
    const units = data.length / (format / 8);
    this.conn.send((w) =>
      w
        .begin(18, mode)
        .u32(window)
        .u32(property)
        .u32(type)
        .u8(format)
        .u8(0)
        .u16(0)
        .u32(units)
        .data(data)
        .end(),
    );
  }

  changeProperty32(window: number, property: number, type: number, values: number[]): void {
    const data = Buffer.alloc(values.length * 4);
    values.forEach((v, i) => data.writeUInt32LE(v >>> 0, i * 4));
    this.changeProperty(PropMode.Replace, window, property, type, 32, data);
  }

  deleteProperty(window: number, property: number): void {
    this.conn.send((w) => w.begin(19).u32(window).u32(property).end());
  }

  /** Reads `longLength` 32-bit units of a property from `longOffset`; type 0 is AnyPropertyType. */
  getProperty(
    window: number,
    property: number,
    type = 0,
    longOffset = 0,
    longLength = 0x10000,
    del = false,
  ): Promise<Property> {
    return this.conn.request(
      (w) =>
        w
          .begin(20, del ? 1 : 0)
          .u32(window)
          .u32(property)
          .u32(type)
          .u32(longOffset)
          .u32(longLength)
          .end(),
      (r) => parseProperty(r),
    );
  }

  setSelectionOwner(owner: number, selection: number, time: number): void {
    this.conn.send((w) => w.begin(22).u32(owner).u32(selection).u32(time).end());
  }

  getSelectionOwner(selection: number): Promise<number> {
    return this.conn.request(
      (w) => w.begin(23).u32(selection).end(),
      (r) => r.u32(8),
    );
  }

  convertSelection(
    requestor: number,
    selection: number,
    target: number,
    property: number,
    time: number,
  ): void {
    this.conn.send((w) =>
      w.begin(24).u32(requestor).u32(selection).u32(target).u32(property).u32(time).end(),
    );
  }

  /** SendEvent of a 32-byte event packet. */
  sendEvent(propagate: boolean, destination: number, eventMask: number, event: Buffer): void {
    this.conn.send((w) =>
      w
        .begin(25, propagate ? 1 : 0)
        .u32(destination)
        .u32(eventMask)
        .data(event.subarray(0, 32))
        .end(),
    );
  }

  /** A ClientMessage of format 32 to `window`. */
  sendClientMessage(window: number, type: number, data: number[], eventMask = 0): void {
    const ev = Buffer.alloc(32);
    ev[0] = 33;
    ev[1] = 32;
    ev.writeUInt32LE(window >>> 0, 4);
    ev.writeUInt32LE(type >>> 0, 8);
    data.slice(0, 5).forEach((v, i) => ev.writeUInt32LE(v >>> 0, 12 + i * 4));
    this.sendEvent(false, window, eventMask, ev);
  }

  /** revertTo: 0 None, 1 PointerRoot, 2 Parent. */
  setInputFocus(window: number, revertTo: number, time: number): void {
    this.conn.send((w) => w.begin(42, revertTo).u32(window).u32(time).end());
  }

  /** The cheapest request with a reply: a round trip. */
  getInputFocus(): Promise<number> {
    return this.conn.request(
      (w) => w.begin(43).end(),
      (r) => r.u32(8),
    );
  }

  openFont(id: number, name: string): void {
    const bytes = Buffer.from(name, 'latin1');
    this.conn.send((w) => w.begin(45).u32(id).u16(bytes.length).u16(0).data(bytes).end());
  }

  /** A cursor from glyphs of a font (black on white). */
  createGlyphCursor(id: number, font: number, glyph: number): void {
    this.conn.send((w) =>
      w
        .begin(94)
        .u32(id)
        .u32(font)
        .u32(font)
        .u16(glyph)
        .u16(glyph + 1)
        .u16(0)
        .u16(0)
        .u16(0)
        .u16(0xffff)
        .u16(0xffff)
        .u16(0xffff)
        .end(),
    );
  }

  queryExtension(name: string): Promise<ExtensionInfo> {
    const bytes = Buffer.from(name, 'latin1');
    return this.conn.request(
      (w) => w.begin(98).u16(bytes.length).u16(0).data(bytes).end(),
      (r) => ({
        present: r.u8(8) !== 0,
        majorOpcode: r.u8(9),
        firstEvent: r.u8(10),
        firstError: r.u8(11),
      }),
    );
  }

  killClient(resource: number): void {
    this.conn.send((w) => w.begin(113).u32(resource).end());
  }

  /** An extension's QueryVersion (minor opcode 0 in Composite and XFixes): the server's version. */
  queryVersion(
    ext: ExtensionInfo,
    major: number,
    minor: number,
  ): Promise<{ major: number; minor: number }> {
    return this.conn.request(
      (w) => w.begin(ext.majorOpcode, 0).u32(major).u32(minor).end(),
      (r) => ({ major: r.u32(8), minor: r.u32(12) }),
    );
  }

  /** Composite RedirectSubwindows; update 1 is Manual (the compositor draws them). */
  compositeRedirectSubwindows(composite: ExtensionInfo, window: number, update: number): void {
    this.conn.send((w) => w.begin(composite.majorOpcode, 2).u32(window).u8(update).pad().end());
  }

  /** XFixes SelectSelectionInput: the 3 selection event kinds (owner, destroy, close). */
  xfixesSelectSelectionInput(
    xfixes: ExtensionInfo,
    window: number,
    selection: number,
    mask: number,
  ): void {
    this.conn.send((w) =>
      w.begin(xfixes.majorOpcode, 2).u32(window).u32(selection).u32(mask).end(),
    );
  }
}

export function parseProperty(r: XReader): Property {
  const format = r.u8(1);
  const type = r.u32(8);
  const bytesAfter = r.u32(12);
  const units = r.u32(16);
  if (type === NONE) return { type, format: 0, value: Buffer.alloc(0), bytesAfter };
  const size = format === 8 ? 1 : format === 16 ? 2 : format === 32 ? 4 : 0;
  // a format other than 8, 16 or 32 and a length past the reply are read as malformed
  const value = r.bytes(32, size === 0 ? r.length : units * size);
  return { type, format, value, bytesAfter };
}

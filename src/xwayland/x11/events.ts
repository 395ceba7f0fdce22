// The X11 events the window manager handles, decoded from their 32-byte packets.
import type { XReader } from './wire.js';

export type XEvent =
  | {
      kind: 'create';
      parent: number;
      window: number;
      x: number;
      y: number;
      width: number;
      height: number;
      overrideRedirect: boolean;
    }
  | { kind: 'destroy'; window: number }
  | { kind: 'unmap'; event: number; window: number }
  | { kind: 'map'; event: number; window: number; overrideRedirect: boolean }
  | { kind: 'map-request'; parent: number; window: number }
  | {
      kind: 'configure';
      event: number;
      window: number;
      x: number;
      y: number;
      width: number;
      height: number;
      overrideRedirect: boolean;
    }
  | {
      kind: 'configure-request';
      parent: number;
      window: number;
      x: number;
      y: number;
      width: number;
      height: number;
      borderWidth: number;
      stackMode: number;
      sibling: number;
      valueMask: number;
    }
  | { kind: 'property'; window: number; atom: number; time: number; deleted: boolean }
  | { kind: 'selection-clear'; time: number; owner: number; selection: number }
  | {
      kind: 'selection-request';
      time: number;
      owner: number;
      requestor: number;
      selection: number;
      target: number;
      property: number;
    }
  | {
      kind: 'selection-notify';
      time: number;
      requestor: number;
      selection: number;
      target: number;
      property: number;
    }
  | { kind: 'client-message'; window: number; type: number; format: number; data: number[] }
  | {
      kind: 'xfixes-selection-notify';
      window: number;
      owner: number;
      selection: number;
      time: number;
      selectionTime: number;
    };

/** Core event codes. */
export const EventCode = {
  CreateNotify: 16,
  DestroyNotify: 17,
  UnmapNotify: 18,
  MapNotify: 19,
  MapRequest: 20,
  ConfigureNotify: 22,
  ConfigureRequest: 23,
  PropertyNotify: 28,
  SelectionClear: 29,
  SelectionRequest: 30,
  SelectionNotify: 31,
  ClientMessage: 33,
} as const;

/**
 * Decodes one event; null for the kinds the WM ignores. `xfixesEvent` is XFixes' first event
 * code (0 when it is absent). Reads are bounds-checked by the reader.
 */
export function decodeEvent(code: number, r: XReader, xfixesEvent: number): XEvent | null {
  switch (code) {
    case EventCode.CreateNotify:
      return {
        kind: 'create',
        parent: r.u32(4),
        window: r.u32(8),
        x: r.i16(12),
        y: r.i16(14),
        width: r.u16(16),
        height: r.u16(18),
        overrideRedirect: r.u8(22) !== 0,
      };
    case EventCode.DestroyNotify:
      return { kind: 'destroy', window: r.u32(8) };
    case EventCode.UnmapNotify:
      return { kind: 'unmap', event: r.u32(4), window: r.u32(8) };
    case EventCode.MapNotify:
      return { kind: 'map', event: r.u32(4), window: r.u32(8), overrideRedirect: r.u8(12) !== 0 };
    case EventCode.MapRequest:
      return { kind: 'map-request', parent: r.u32(4), window: r.u32(8) };
    case EventCode.ConfigureNotify:
      return {
        kind: 'configure',
        event: r.u32(4),
        window: r.u32(8),
        x: r.i16(16),
        y: r.i16(18),
        width: r.u16(20),
        height: r.u16(22),
        overrideRedirect: r.u8(26) !== 0,
      };
    case EventCode.ConfigureRequest:
      return {
        kind: 'configure-request',
        stackMode: r.u8(1),
        parent: r.u32(4),
        window: r.u32(8),
        sibling: r.u32(12),
        x: r.i16(16),
        y: r.i16(18),
        width: r.u16(20),
        height: r.u16(22),
        borderWidth: r.u16(24),
        valueMask: r.u16(26),
      };
    case EventCode.PropertyNotify:
      return {
        kind: 'property',
        window: r.u32(4),
        atom: r.u32(8),
        time: r.u32(12),
        deleted: r.u8(16) === 1,
      };
    case EventCode.SelectionClear:
      return { kind: 'selection-clear', time: r.u32(4), owner: r.u32(8), selection: r.u32(12) };
    case EventCode.SelectionRequest:
      return {
        kind: 'selection-request',
        time: r.u32(4),
        owner: r.u32(8),
        requestor: r.u32(12),
        selection: r.u32(16),
        target: r.u32(20),
        property: r.u32(24),
      };
    case EventCode.SelectionNotify:
      return {
        kind: 'selection-notify',
        time: r.u32(4),
        requestor: r.u32(8),
        selection: r.u32(12),
        target: r.u32(16),
        property: r.u32(20),
      };
    case EventCode.ClientMessage:
      return {
        kind: 'client-message',
        format: r.u8(1),
        window: r.u32(4),
        type: r.u32(8),
        data: r.u32s(12, 5),
      };
    default:
      if (xfixesEvent !== 0 && code === xfixesEvent) {
        return {
          kind: 'xfixes-selection-notify',
          window: r.u32(4),
          owner: r.u32(8),
          selection: r.u32(12),
          time: r.u32(16),
          selectionTime: r.u32(20),
        };
      }
      return null;
  }
}

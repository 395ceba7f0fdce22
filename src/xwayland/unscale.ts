// --x-unscale N: Xwayland sees outputs at 1/N of their scale and N times their logical size, so X
// clients draw at the host's full resolution; each X window's surface is shown at 1/N of its
// size (a wp_viewport destination the WM sets), and the coordinates between Xwayland and the
// host are converted here. The integer arguments are rewritten in place in the received message,
// so the hooks after these (shm shadowing, pairing) and the forwarding see the converted values.
// Surface damage is left in X pixels: too large for the host, which clips it, and what shm
// shadowing copies by (Xwayland damages in buffer coordinates anyway).
import type { InterfaceHooks, Relay } from '../relay/relay.js';
import type { ArgReader } from '../wire/reader.js';

const SURFACE_ATTACH = 1;
const SURFACE_OFFSET = 10;
const POINTER_ENTER = 0;
const POINTER_MOTION = 2;
const TOUCH_DOWN = 0;
const TOUCH_MOTION = 2;
const OUTPUT_SCALE = 3;
const XDG_OUTPUT_LOGICAL_POSITION = 0;
const XDG_OUTPUT_LOGICAL_SIZE = 1;

/** The 32-bit argument `index` of the message `args` is positioned on, rewritten by `f`. */
function patch(args: ArgReader, index: number, f: (v: number) => number): void {
  const at = args.pos + index * 4;
  // a message too short for it is left to the forwarding, which refuses it
  if (at + 4 > args.end) return;
  args.view.setInt32(at, f(args.view.getInt32(at, true)), true);
}

/** Coordinates from Xwayland (X pixels) to the host's surface coordinates, and back. */
export class Unscale {
  constructor(readonly factor: number) {}

  /** A surface size on the host: every X pixel is covered. */
  size(v: number): number {
    return Math.ceil(v / this.factor);
  }

  toHost(v: number): number {
    return Math.trunc(v / this.factor);
  }

  toX(v: number): number {
    return v * this.factor;
  }

  /**
   * Hooks for Xwayland's connection. `isWindow` tells whether a surface (by the client's id) is
   * an X window's, the surfaces shown through a viewport; cursors keep their own coordinates.
   */
  hooks(isWindow: (relay: Relay, surfaceId: number) => boolean): Map<string, InterfaceHooks> {
    const n = this.factor;
    const fixedToX = (v: number): number => v * n;
    const toHost = (v: number): number => this.toHost(v);
    return new Map<string, InterfaceHooks>([
      [
        'wl_surface',
        {
          request: ({ relay, obj }, opcode, args) => {
            if (!isWindow(relay, obj.clientId)) return false;
            if (opcode === SURFACE_ATTACH || opcode === SURFACE_OFFSET) {
              const first = opcode === SURFACE_ATTACH ? 1 : 0;
              patch(args, first, toHost);
              patch(args, first + 1, toHost);
            }
            return false;
          },
        },
      ],
      [
        'wl_pointer',
        {
          event: (_ctx, opcode, args) => {
            if (opcode === POINTER_ENTER) {
              patch(args, 2, fixedToX);
              patch(args, 3, fixedToX);
            } else if (opcode === POINTER_MOTION) {
              patch(args, 1, fixedToX);
              patch(args, 2, fixedToX);
            }
            return false;
          },
        },
      ],
      [
        'wl_touch',
        {
          event: (_ctx, opcode, args) => {
            if (opcode === TOUCH_DOWN) {
              patch(args, 4, fixedToX);
              patch(args, 5, fixedToX);
            } else if (opcode === TOUCH_MOTION) {
              patch(args, 2, fixedToX);
              patch(args, 3, fixedToX);
            }
            return false;
          },
        },
      ],
      [
        'wl_output',
        {
          event: (_ctx, opcode, args) => {
            if (opcode === OUTPUT_SCALE) patch(args, 0, (f) => Math.max(1, Math.trunc(f / n)));
            return false;
          },
        },
      ],
      [
        'zxdg_output_v1',
        {
          event: (_ctx, opcode, args) => {
            if (opcode === XDG_OUTPUT_LOGICAL_POSITION || opcode === XDG_OUTPUT_LOGICAL_SIZE) {
              patch(args, 0, (v) => v * n);
              patch(args, 1, (v) => v * n);
            }
            return false;
          },
        },
      ],
    ]);
  }
}

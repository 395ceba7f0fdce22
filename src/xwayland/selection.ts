// CLIPBOARD and PRIMARY between X11 and Wayland (filled in by the clipboard bridge).
import type { XEvent } from './x11/events.js';

export interface Selections {
  /** The WM is ready: start watching the X selections. */
  start(): void;
  handleEvent(ev: XEvent): void;
}

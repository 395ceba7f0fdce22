// The atoms the window manager uses, interned once per X connection.
import type { XRequests } from './x11/requests.js';

const NAMES = [
  'WL_SURFACE_ID',
  'WL_SURFACE_SERIAL',
  'WM_S0',
  'WM_PROTOCOLS',
  'WM_DELETE_WINDOW',
  'WM_TAKE_FOCUS',
  'WM_STATE',
  'WM_CHANGE_STATE',
  'UTF8_STRING',
  'TEXT',
  'TARGETS',
  'INCR',
  'TIMESTAMP',
  'MULTIPLE',
  'CLIPBOARD',
  'PRIMARY',
  'RESOURCE_MANAGER',
  '_NET_WM_CM_S0',
  '_NET_SUPPORTED',
  '_NET_CLIENT_LIST',
  '_NET_SUPPORTING_WM_CHECK',
  '_NET_WM_NAME',
  '_NET_ACTIVE_WINDOW',
  '_NET_WM_MOVERESIZE',
  '_NET_WM_STATE',
  '_NET_WM_STATE_FULLSCREEN',
  '_NET_WM_STATE_MAXIMIZED_VERT',
  '_NET_WM_STATE_MAXIMIZED_HORZ',
  '_NET_WM_STATE_FOCUSED',
  '_NET_WM_STATE_HIDDEN',
  '_NET_WM_WINDOW_TYPE',
  '_NET_WM_WINDOW_TYPE_NORMAL',
  '_NET_WM_WINDOW_TYPE_DIALOG',
  '_NET_WM_WINDOW_TYPE_MENU',
  '_NET_WM_WINDOW_TYPE_DROPDOWN_MENU',
  '_NET_WM_WINDOW_TYPE_POPUP_MENU',
  '_NET_WM_WINDOW_TYPE_TOOLTIP',
  '_NET_WM_WINDOW_TYPE_COMBO',
  '_NET_WM_WINDOW_TYPE_DND',
  '_NET_WM_WINDOW_TYPE_NOTIFICATION',
  '_NET_WM_WINDOW_TYPE_UTILITY',
  '_TSWL_SELECTION',
] as const;

export type AtomName = (typeof NAMES)[number];
export type Atoms = Record<AtomName, number>;

/** Predefined atoms of the core protocol. */
export const Predefined = {
  ATOM: 4,
  CARDINAL: 6,
  INTEGER: 19,
  STRING: 31,
  WINDOW: 33,
  WM_HINTS: 35,
  WM_NAME: 39,
  WM_NORMAL_HINTS: 40,
  WM_SIZE_HINTS: 41,
  WM_CLASS: 67,
  WM_TRANSIENT_FOR: 68,
} as const;

export async function internAtoms(x: XRequests): Promise<Atoms> {
  const values = await Promise.all(NAMES.map((n) => x.internAtom(n)));
  return Object.fromEntries(NAMES.map((n, i) => [n, values[i]])) as Atoms;
}

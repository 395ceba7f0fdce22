import type { XdgToplevelRequestHandlers } from '../generated/xdg-shell.js';
import {
  dispatchXdgToplevelRequest,
  writeXdgToplevelSetAppId,
  writeXdgToplevelSetTitle,
} from '../generated/xdg-shell.js';
import type { ZxdgToplevelV6RequestHandlers } from '../generated/xdg-shell-unstable-v6.js';
import {
  dispatchZxdgToplevelV6Request,
  writeZxdgToplevelV6SetAppId,
  writeZxdgToplevelV6SetTitle,
} from '../generated/xdg-shell-unstable-v6.js';
import { MAX_MESSAGE_SIZE } from '../wire/connection.js';
import type { HookContext, InterfaceHooks } from './relay.js';

/** Header, object id of the string's length word, NUL and padding. */
const SET_TITLE_OVERHEAD = 8 + 4 + 4;

/**
 * A label put in front of a client's string (`--tag` for titles, `--app-id-prefix` for app_ids),
 * so the user can tell a VM's windows apart. A string made too long by it is cut at a character
 * boundary; the label itself is never cut.
 */
export function labelled(label: string, value: string): string {
  const full = label + value;
  const limit = MAX_MESSAGE_SIZE - SET_TITLE_OVERHEAD;
  if (Buffer.byteLength(full) <= limit) return full;
  let cut = Buffer.from(full).subarray(0, limit).toString('utf8');
  // a multi-byte character split at the limit decodes as U+FFFD: drop it
  if (cut.endsWith('\uFFFD')) cut = cut.slice(0, -1);
  return cut;
}

/** `--tag` and `--app-id-prefix`: labels on every toplevel (xdg_toplevel and zxdg_toplevel_v6). */
export function toplevelLabelHooks(tag: string, appIdPrefix: string): Map<string, InterfaceHooks> {
  const stable: XdgToplevelRequestHandlers<HookContext> = {};
  const v6: ZxdgToplevelV6RequestHandlers<HookContext> = {};
  if (tag) {
    stable.set_title = ({ relay, obj }, title) => {
      writeXdgToplevelSetTitle(relay.host.out, obj.hostId, labelled(tag, title));
      return true;
    };
    v6.set_title = ({ relay, obj }, title) => {
      writeZxdgToplevelV6SetTitle(relay.host.out, obj.hostId, labelled(tag, title));
      return true;
    };
  }
  if (appIdPrefix) {
    stable.set_app_id = ({ relay, obj }, appId) => {
      writeXdgToplevelSetAppId(relay.host.out, obj.hostId, labelled(appIdPrefix, appId));
      return true;
    };
    v6.set_app_id = ({ relay, obj }, appId) => {
      writeZxdgToplevelV6SetAppId(relay.host.out, obj.hostId, labelled(appIdPrefix, appId));
      return true;
    };
  }
  return new Map<string, InterfaceHooks>([
    [
      'xdg_toplevel',
      { request: (ctx, op, args) => dispatchXdgToplevelRequest(stable, ctx, op, args) },
    ],
    [
      'zxdg_toplevel_v6',
      { request: (ctx, op, args) => dispatchZxdgToplevelV6Request(v6, ctx, op, args) },
    ],
  ]);
}

import type { XdgToplevelRequestHandlers } from '../generated/xdg-shell.js';
import { dispatchXdgToplevelRequest, writeXdgToplevelSetTitle } from '../generated/xdg-shell.js';
import type { ZxdgToplevelV6RequestHandlers } from '../generated/xdg-shell-unstable-v6.js';
import {
  dispatchZxdgToplevelV6Request,
  writeZxdgToplevelV6SetTitle,
} from '../generated/xdg-shell-unstable-v6.js';
import { MAX_MESSAGE_SIZE } from '../wire/connection.js';
import type { HookContext, InterfaceHooks } from './relay.js';

/** Header, object id of the string's length word, NUL and padding. */
const SET_TITLE_OVERHEAD = 8 + 4 + 4;

/**
 * `--tag`: every toplevel title reaches the host with the prefix, so the user can tell a
 * VM's windows apart. A title made too long by the prefix is cut at a character boundary.
 */
export function taggedTitle(tag: string, title: string): string {
  const full = tag + title;
  const limit = MAX_MESSAGE_SIZE - SET_TITLE_OVERHEAD;
  if (Buffer.byteLength(full) <= limit) return full;
  let cut = Buffer.from(full).subarray(0, limit).toString('utf8');
  // a multi-byte character split at the limit decodes as U+FFFD: drop it
  if (cut.endsWith('\uFFFD')) cut = cut.slice(0, -1);
  return cut;
}

export function titleTagHooks(tag: string): Map<string, InterfaceHooks> {
  const stable: XdgToplevelRequestHandlers<HookContext> = {
    set_title({ relay, obj }, title) {
      writeXdgToplevelSetTitle(relay.host.out, obj.hostId, taggedTitle(tag, title));
      return true;
    },
  };
  const v6: ZxdgToplevelV6RequestHandlers<HookContext> = {
    set_title({ relay, obj }, title) {
      writeZxdgToplevelV6SetTitle(relay.host.out, obj.hostId, taggedTitle(tag, title));
      return true;
    },
  };
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

// How tswl-host's guests reach the compositor: each Wayland channel of a guest gets a relay (the
// proxy's relay, with the host's policy as hooks) whose host side is a socket to the compositor,
// or to the guest's own security context when the compositor offers them.

import { allInterfaces } from '../generated/index.js';

import type { Tracer } from '../log/trace.js';
import * as native from '../native/index.js';
import { ProtocolTables } from '../protocol/tables.js';
import { relayHooks } from '../relay/hooks.js';
import { VM_BOUNDARY_HIDDEN_GLOBALS, withheldGlobals } from '../relay/policy.js';
import type { EndpointConnector, InterfaceHooks } from '../relay/relay.js';
import { Relay } from '../relay/relay.js';
import { Connection } from '../wire/connection.js';
import { closeQuietly } from '../wire/fd-queue.js';

/** Output queued for the compositor past which a channel's relay stops reading the guest. */
const COMPOSITOR_HIGH_WATER = 256 * 1024;

/** How one guest's channels connect to the compositor. */
export interface CompositorAccess {
  /** A new connected socket (throws when the compositor cannot be reached). */
  connect(): number;
  /** The guest is gone. */
  close(): void;
}

export interface HostWaylandOptions {
  /** The compositor socket. */
  readonly socket: string;
  /** Privileged globals the user allows guests (--allow-global). */
  readonly allowGlobals?: readonly string[];
  /** Title prefix for every toplevel of a guest (--tag). */
  readonly tag?: string;
  /** app_id prefix for every toplevel of a guest (--app-id-prefix). */
  readonly appIdPrefix?: string;
  /** Per guest, another way to the compositor (its own security context). */
  readonly access?: (guestName: string) => CompositorAccess;
  readonly trace?: Tracer | null;
}

/** The host side of every guest's Wayland channels. */
export class HostWayland {
  readonly tables = new ProtocolTables(allInterfaces);
  readonly hooks: ReadonlyMap<string, InterfaceHooks>;

  constructor(readonly options: HostWaylandOptions) {
    this.hooks = relayHooks({
      tag: options.tag ?? '',
      appIdPrefix: options.appIdPrefix ?? '',
      hiddenGlobals: new Set([
        ...withheldGlobals(options.allowGlobals ?? []),
        ...VM_BOUNDARY_HIDDEN_GLOBALS,
      ]),
    });
  }

  /** How the channels of guest `name` reach the compositor. */
  access(name: string): CompositorAccess {
    if (this.options.access) return this.options.access(name);
    const socket = this.options.socket;
    return { connect: () => native.connectUnix(socket), close: () => {} };
  }

  /** A relay between one guest channel and a new compositor connection. */
  openRelay(
    access: CompositorAccess,
    client: EndpointConnector,
    warn: (message: string) => void,
  ): Relay {
    const fd = access.connect();
    try {
      return new Relay({
        tables: this.tables,
        hooks: this.hooks,
        connectClient: client,
        connectHost: (handler) => new Connection(fd, handler, COMPOSITOR_HIGH_WATER),
        warn,
        trace: this.options.trace ?? null,
      });
    } catch (e) {
      closeQuietly(fd);
      throw e;
    }
  }
}

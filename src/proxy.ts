import { unlinkSync } from 'node:fs';
import * as native from './native/index.js';
import type { Tracer } from './log/trace.js';
import type { ProtocolTables } from './protocol/tables.js';
import { DisplayError } from './relay/errors.js';
import type { HostConnector, InterfaceHooks, RequestGate } from './relay/relay.js';
import { Relay } from './relay/relay.js';
import { Connection } from './wire/connection.js';
import { closeQuietly } from './wire/fd-queue.js';
import { MessageWriter } from './wire/writer.js';

export interface ProxyOptions {
  /** Where clients connect. */
  readonly listenPath: string;
  /** A listening socket handed over by systemd; it is never unlinked by the proxy. */
  readonly activatedFd?: number;
  /** How each client gets its own connection to the host compositor, and what to call it in messages. */
  readonly connectHost: HostConnector;
  readonly hostName: string;
  readonly tables: ProtocolTables;
  readonly hooks: ReadonlyMap<string, InterfaceHooks>;
  readonly warn: (message: string) => void;
  readonly trace?: Tracer | null;
  /** Called whenever a client connects or leaves, with the number connected. */
  readonly onClientsChanged?: (clients: number) => void;
}

/** How a client the proxy connected itself is relayed differently from the rest. */
export interface SpecialClient {
  readonly hooks: ReadonlyMap<string, InterfaceHooks>;
  readonly requestGate?: RequestGate;
  readonly onClose?: (relay: Relay) => void;
}

export interface ProxyStats {
  clients: number;
  objects: number;
  bytesToHost: number;
  bytesToClients: number;
  fdsToHost: number;
  fdsToClients: number;
}

/** How long accepting pauses after it failed (out of fds), rather than spin on a readable socket. */
const ACCEPT_RETRY_MS = 200;

/** The listening socket and the relays of the clients connected to it. */
export class ProxyServer {
  readonly relays = new Set<Relay>();
  /** Traffic of relays that have ended; live relays are added on demand. */
  private readonly ended: ProxyStats = {
    clients: 0,
    objects: 0,
    bytesToHost: 0,
    bytesToClients: 0,
    fdsToHost: 0,
    fdsToClients: 0,
  };
  private listener: native.Listener | null = null;
  private poller: native.Poller | null = null;

  constructor(private readonly options: ProxyOptions) {}

  /** Binds the socket (taking libwayland's lock file) and starts accepting clients. */
  listen(): void {
    const listener =
      this.options.activatedFd === undefined
        ? native.listenUnix(this.options.listenPath)
        : { fd: this.options.activatedFd, lockFd: -1 };
    this.listener = listener;
    this.poller = new native.Poller(listener.fd, () => this.acceptAll());
    this.poller.update(native.READABLE);
  }

  /** Disconnects every client, closes and removes the socket and its lock file. */
  close(): void {
    for (const relay of [...this.relays]) relay.close();
    if (!this.listener) return;
    this.poller?.close();
    this.poller = null;
    if (this.options.activatedFd === undefined) {
      // unlink before dropping the lock, so no other proxy can bind in between
      for (const path of [this.options.listenPath, `${this.options.listenPath}.lock`]) {
        try {
          unlinkSync(path);
        } catch {
          // already gone
        }
      }
      closeQuietly(this.listener.lockFd);
    }
    closeQuietly(this.listener.fd);
    this.listener = null;
  }

  stats(): ProxyStats {
    const s = { ...this.ended, clients: this.relays.size, objects: 0 };
    for (const relay of this.relays) {
      s.objects += relay.objectCount;
      s.bytesToHost += relay.client.bytesIn;
      s.bytesToClients += relay.host.bytesIn;
      s.fdsToHost += relay.client.fdsIn;
      s.fdsToClients += relay.host.fdsIn;
    }
    return s;
  }

  private acceptAll(): void {
    for (;;) {
      let clientFd: number;
      try {
        clientFd = native.accept(this.listener!.fd);
      } catch (e) {
        // EMFILE and the like: the socket stays readable, so wait a while instead of spinning
        this.options.warn(`accept failed: ${(e as Error).message}; trying again in 200 ms`);
        const poller = this.poller;
        poller?.update(0);
        setTimeout(() => {
          if (this.poller === poller) poller?.update(native.READABLE);
        }, ACCEPT_RETRY_MS).unref();
        return;
      }
      if (clientFd < 0) return;
      this.connectClient(clientFd);
    }
  }

  /**
   * Relays a client connection the proxy made itself (one end of a socketpair handed to a
   * program it started, as Xwayland's WAYLAND_SOCKET), with hooks of its own. Throws when the
   * host cannot be reached; the fd is then closed.
   */
  adoptClient(clientFd: number, special: SpecialClient): Relay {
    const relay = this.connectClient(clientFd, special);
    if (!relay) throw new Error(`cannot reach the host compositor at ${this.options.hostName}`);
    return relay;
  }

  private connectClient(clientFd: number, special?: SpecialClient): Relay | null {
    let relay: Relay;
    try {
      relay = new Relay({
        connectClient: (handler) => new Connection(clientFd, handler),
        connectHost: this.options.connectHost,
        tables: this.options.tables,
        hooks: special?.hooks ?? this.options.hooks,
        requestGate: special?.requestGate,
        warn: this.options.warn,
        trace: this.options.trace,
        onClose: (r) => {
          this.relays.delete(r);
          this.ended.bytesToHost += r.client.bytesIn;
          this.ended.bytesToClients += r.host.bytesIn;
          this.ended.fdsToHost += r.client.fdsIn;
          this.ended.fdsToClients += r.host.fdsIn;
          this.options.onClientsChanged?.(this.relays.size);
          special?.onClose?.(r);
        },
      });
    } catch (e) {
      const why = `cannot reach the host compositor at ${this.options.hostName}: ${(e as Error).message}`;
      this.options.warn(why);
      refuseClient(clientFd, why);
      return null;
    }
    this.relays.add(relay);
    this.options.onClientsChanged?.(this.relays.size);
    return relay;
  }
}

/** Tells a client why it cannot be served, the way a compositor would, then hangs up. */
function refuseClient(fd: number, message: string): void {
  const w = new MessageWriter(256);
  w.begin(1, 0);
  w.object(1);
  w.uint(DisplayError.implementation);
  w.string(message);
  w.end();
  try {
    native.sendmsg(fd, w.buf, 0, w.len, [], 0);
    // what the client sent already is read first: closing a socket with unread bytes resets the
    // connection, and the client would get ECONNRESET instead of the error
    const buf = Buffer.allocUnsafe(4096);
    const out = new Int32Array(native.RECV_OUT_LENGTH);
    for (let n = 1; n > 0;) {
      n = native.recvmsg(fd, buf, 0, buf.length, out);
      for (let i = 0; i < out[0]; i++) closeQuietly(out[2 + i]);
    }
  } catch {
    // the client is gone already
  }
  closeQuietly(fd);
}

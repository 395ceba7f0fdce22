import { unlinkSync } from 'node:fs';
import * as native from './native/index.js';
import type { ProtocolTables } from './protocol/tables.js';
import { DisplayError } from './relay/errors.js';
import type { InterfaceHooks } from './relay/relay.js';
import { Relay } from './relay/relay.js';
import { closeQuietly } from './wire/fd-queue.js';
import { MessageWriter } from './wire/writer.js';

export interface ProxyOptions {
  /** Where clients connect. */
  readonly listenPath: string;
  /** The host compositor's socket; every client gets its own connection to it. */
  readonly hostPath: string;
  readonly tables: ProtocolTables;
  readonly hooks: ReadonlyMap<string, InterfaceHooks>;
  readonly warn: (message: string) => void;
}

/** The listening socket and the relays of the clients connected to it. */
export class ProxyServer {
  readonly relays = new Set<Relay>();
  private listener: native.Listener | null = null;
  private poller: native.Poller | null = null;

  constructor(private readonly options: ProxyOptions) {}

  /** Binds the socket (taking libwayland's lock file) and starts accepting clients. */
  listen(): void {
    const listener = native.listenUnix(this.options.listenPath);
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
    for (const path of [this.options.listenPath, `${this.options.listenPath}.lock`]) {
      try {
        unlinkSync(path);
      } catch {
        // already gone
      }
    }
    closeQuietly(this.listener.fd);
    closeQuietly(this.listener.lockFd);
    this.listener = null;
  }

  private acceptAll(): void {
    for (;;) {
      let clientFd: number;
      try {
        clientFd = native.accept(this.listener!.fd);
      } catch (e) {
        this.options.warn(`accept failed: ${(e as Error).message}`);
        return;
      }
      if (clientFd < 0) return;
      this.connectClient(clientFd);
    }
  }

  private connectClient(clientFd: number): void {
    let hostFd: number;
    try {
      hostFd = native.connectUnix(this.options.hostPath);
    } catch (e) {
      const why = `cannot reach the host compositor at ${this.options.hostPath}: ${(e as Error).message}`;
      this.options.warn(why);
      refuseClient(clientFd, why);
      return;
    }
    const relay = new Relay(clientFd, hostFd, {
      tables: this.options.tables,
      hooks: this.options.hooks,
      warn: this.options.warn,
      onClose: (r) => this.relays.delete(r),
    });
    this.relays.add(relay);
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
  } catch {
    // the client is gone already
  }
  closeQuietly(fd);
}

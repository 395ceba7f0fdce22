import type { Tracer } from '../log/trace.js';
import type { HandlerResult } from '../protocol/meta.js';
import { ArgKind } from '../protocol/meta.js';
import type { Interface, Message, ProtocolTables } from '../protocol/tables.js';
import type { Endpoint, EndpointHandler } from '../wire/connection.js';
import { MAX_MESSAGE_SIZE } from '../wire/connection.js';
import { WireError } from '../wire/errors.js';
import { closeQuietly } from '../wire/fd-queue.js';
import { ArgReader } from '../wire/reader.js';
import type { MessageWriter } from '../wire/writer.js';
import { DisplayError, ProtocolError } from './errors.js';
import { relayActivity, releaseMemoryWhenQuiet } from './memory-release.js';
import { IdSpace, SERVER_ID_START, WlObject } from './objects.js';

const DISPLAY_ID = 1;
/** More fd arguments than any message in protocols/ has. */
const MAX_FDS_PER_MESSAGE = 8;

/**
 * Special handling for one interface. A hook sees a message before it is forwarded, with
 * its arguments still in the sender's id space; returning true means it consumed the
 * message (and its fds), so nothing is forwarded.
 */
export interface InterfaceHooks {
  request?(ctx: HookContext, opcode: number, args: ArgReader): HandlerResult;
  event?(ctx: HookContext, opcode: number, args: ArgReader): HandlerResult;
  /**
   * Asked before a request is read: true holds the client's requests from this one on, until
   * the hook calls `Relay.releaseRequests()` (a commit waiting for a free host buffer).
   */
  gate?(ctx: HookContext, opcode: number): boolean;
}

type MessageHook = NonNullable<InterfaceHooks['request']>;

/** What a hook is called with: the relay and the object the message is addressed to. */
export interface HookContext {
  readonly relay: Relay;
  obj: WlObject;
}

/**
 * Decides, before a client request is processed, whether the client's requests must wait from
 * that message on (nothing of it is read, no fd taken); `Relay.releaseRequests` goes on from it.
 */
export type RequestGate = (relay: Relay, objectId: number, opcode: number) => boolean;

/** Opens one side of a relay: the client's connection, or its own connection to the compositor. */
export type EndpointConnector = (handler: EndpointHandler) => Endpoint;
/** Opens this client's own connection to the host compositor. */
export type HostConnector = EndpointConnector;

export interface RelayOptions {
  readonly tables: ProtocolTables;
  /** The client side: a Unix socket in the proxy, a guest's cross-domain channel in tswl-host. */
  readonly connectClient: EndpointConnector;
  readonly connectHost: HostConnector;
  readonly hooks: ReadonlyMap<string, InterfaceHooks>;
  /** Called once when both connections are closed. */
  readonly onClose?: (relay: Relay) => void;
  readonly warn?: (message: string) => void;
  /** Null when tracing is off, so the relay pays nothing for it. */
  readonly trace?: Tracer | null;
  /** Holds the client's requests at a message until the proxy is ready for it (see RequestGate). */
  readonly requestGate?: RequestGate;
}

/**
 * One client's relay: requests from the client go to its own host connection and events
 * come back, with object ids translated both ways and fds passed through.
 */
export class Relay {
  readonly clientIds = new IdSpace();
  readonly hostIds = new IdSpace();
  readonly client: Endpoint;
  readonly host: Endpoint;
  readonly tables: ProtocolTables;
  /** By interface index: one array load per message. */
  private readonly hooks: (InterfaceHooks | undefined)[] = [];
  private readonly reader = new ArgReader();
  private readonly msgFds = new Int32Array(MAX_FDS_PER_MESSAGE);
  private readonly hookContext: HookContext;
  private readonly trace: Tracer | null;
  private hostSentError = false;
  /** Inside pump(): a hook's synchronous device call must not start another one. */
  private pumping = false;
  private closed = false;
  /** The request gate closed: the client's requests wait at the first unprocessed one. */
  private held = false;
  /** A peer caught up (or a gate opened) while a pump ran: resume reading after it. */
  private resumeAfterPump = false;
  private readonly disposers: (() => void)[] = [];
  /** How far the host side's output is traced, as `host.out.dropped + offset`. */
  private hostTraced = 0;

  /** Throws when the host cannot be reached; the client side is then not opened. */
  constructor(private readonly options: RelayOptions) {
    this.tables = options.tables;
    this.trace = options.trace ?? null;
    for (const [name, hooks] of options.hooks) this.hooks[this.tables.require(name).index] = hooks;
    const display = new WlObject(DISPLAY_ID, DISPLAY_ID, this.tables.require('wl_display'), 1);
    this.hookContext = { relay: this, obj: display };
    this.clientIds.set(DISPLAY_ID, display);
    this.hostIds.set(DISPLAY_ID, display);
    this.host = options.connectHost({
      onData: () => this.pump(this.host),
      onClose: (error) => this.onHostClosed(error),
      onDrain: () => this.resume(),
    });
    this.client = options.connectClient({
      onData: () => this.pump(this.client),
      onClose: (error) => this.onClientClosed(error),
      onDrain: () => this.resume(),
    });
    releaseMemoryWhenQuiet();
  }

  get objectCount(): number {
    return this.clientIds.size;
  }

  /** Sends wl_display.error to the client and disconnects it (and its host connection). */
  postError(objectId: number, code: number, message: string): void {
    if (this.closed) return;
    this.warn(`client protocol error: ${message}`);
    const w = this.client.out;
    w.begin(DISPLAY_ID, 0);
    w.object(objectId);
    w.uint(code);
    w.string(message);
    w.end();
    this.client.flush();
    this.close();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.client.close();
    this.host.close();
    for (const dispose of this.disposers.splice(0)) dispose();
    this.options.onClose?.(this);
    releaseMemoryWhenQuiet();
  }

  /**
   * Runs `dispose` once when the relay closes, after both connections: how hooks release the
   * per-client state they keep outside the objects (mappings, fds of shadowed shm pools).
   */
  addDisposer(dispose: () => void): void {
    if (this.closed) dispose();
    else this.disposers.push(dispose);
  }

  /**
   * Whether messages from `from` may be processed now. A side is not read while what it would
   * make queues up: requests while the host is behind, and anything at all while the client is
   * behind, since the proxy answers some requests itself (delete_id, wl_buffer.release).
   */
  private mayRead(from: Endpoint): boolean {
    if (this.client.congested) return false;
    return from === this.host || !(this.host.congested || this.held);
  }

  /** The request gate held the client's requests: process them again, from the one it stopped at. */
  releaseRequests(): void {
    if (!this.held || this.closed) return;
    this.held = false;
    this.resume();
  }

  /** Sends what hooks or the proxy itself queued for either peer outside of a pump. */
  flush(): void {
    if (this.closed) return;
    this.traceOwnRequests();
    const { host, client } = this;
    if (host.out.pending > 0 || host.out.fds.length > 0) host.flush();
    if (client.out.pending > 0 || client.out.fds.length > 0) client.flush();
  }

  /** A peer that was too slow caught up: read again, starting with what is buffered. */
  private resume(): void {
    if (this.pumping) {
      // from inside a hook: once the current pump is done
      this.resumeAfterPump = true;
      return;
    }
    this.resumeSide(this.host);
    this.resumeSide(this.client);
  }

  private resumeSide(from: Endpoint): void {
    if (this.closed || !this.mayRead(from)) return;
    from.setReading(true);
    if (from.inEnd > from.inStart) this.pump(from);
  }

  private warn(message: string): void {
    this.options.warn?.(message);
  }

  /** Processes every complete message from one side, then flushes each peer once. */
  private pump(from: Endpoint): void {
    if (this.pumping) {
      // data delivered from inside a hook: taken once the current pump is done
      this.resumeAfterPump = true;
      return;
    }
    relayActivity.pumps++;
    const toClient = from === this.host;
    // what handling a message may fill: the other side, and the client (the proxy answers some
    // requests itself); every 32 messages only these are checked (a queue may pass its high
    // water by that many messages' output), the transports' state once at the end
    const toOut = toClient ? this.client.out : this.host.out;
    const clientOut = this.client.out;
    const begin = from.inStart;
    let pos = begin;
    let handled = 0;
    this.pumping = true;
    try {
      if (from.fdsTruncated) {
        throw new WireError(`too many file descriptors in one message (more than 28)`);
      }
      const view = from.inView;
      const end = from.inEnd;
      while (end - pos >= 8 && !this.closed) {
        const id = view.getUint32(pos, true);
        const word = view.getUint32(pos + 4, true);
        const size = word >>> 16;
        if (size < 8 || size % 4 !== 0 || size > MAX_MESSAGE_SIZE) {
          throw new WireError(`message to object ${id} has an invalid size ${size}`);
        }
        if (end - pos < size) break;
        if (toClient) this.handleEvent(pos, size, id, word & 0xffff);
        else if (!this.handleRequest(pos, size, id, word & 0xffff)) {
          this.held = true;
          from.setReading(false);
          break;
        }
        pos += size;
        if ((++handled & 31) === 0 && (toOut.congested || clientOut.congested)) {
          from.setReading(false);
          break;
        }
      }
    } catch (e) {
      from.consume(pos - begin);
      this.onPumpError(e, toClient);
      return;
    } finally {
      this.pumping = false;
    }
    from.consume(pos - begin);
    // hooks may also answer the peer a message came from (a proxy-owned object's ack, an event)
    this.flush();
    if (!this.closed && !this.mayRead(from)) from.setReading(false);
    if (this.resumeAfterPump) {
      this.resumeAfterPump = false;
      this.resume();
    }
  }

  /**
   * Whatever went wrong while handling one client's messages ends that client only: a hook or
   * the addon failing is that client's implementation error, never the proxy's exit.
   */
  private onPumpError(e: unknown, fromHost: boolean): void {
    if (!(e instanceof WireError || e instanceof ProtocolError)) {
      const what = e instanceof Error ? (e.stack ?? e.message) : String(e);
      this.warn(`internal error while relaying ${fromHost ? 'an event' : 'a request'}: ${what}`);
      const message = e instanceof Error ? e.message : String(e);
      this.postError(DISPLAY_ID, DisplayError.implementation, `the proxy failed: ${message}`);
      return;
    }
    if (fromHost) {
      // The host compositor broke the protocol; the client cannot go on without it.
      this.postError(
        DISPLAY_ID,
        DisplayError.implementation,
        `host compositor sent a malformed message: ${e.message}`,
      );
    } else if (e instanceof ProtocolError) {
      this.postError(e.objectId, e.code, e.message);
    } else {
      this.postError(DISPLAY_ID, DisplayError.invalidMethod, e.message);
    }
  }

  /** Moves the fds of one message out of the queue; the message is named only on error. */
  private takeFds(from: Endpoint, obj: WlObject, id: number, msg: Message): void {
    const n = msg.fdCount;
    if (n === 0) {
      this.reader.setFds(this.msgFds, 0, 0);
      return;
    }
    if (from.inFds.length < n) {
      throw new WireError(
        `${obj.iface.name}@${id}.${msg.name} needs ${n} file descriptor(s) that were not sent`,
      );
    }
    from.inFds.take(n, this.msgFds);
    this.reader.setFds(this.msgFds, 0, n);
  }

  /** Relays one request; false when a gate holds it (and those after it), unread. */
  private handleRequest(start: number, size: number, id: number, opcode: number): boolean {
    if (this.options.requestGate?.(this, id, opcode)) return false;
    const from = this.client;
    const obj = this.clientIds.get(id);
    if (!obj || obj.dying)
      throw new ProtocolError(DISPLAY_ID, DisplayError.invalidObject, `invalid object ${id}`);
    const msg = obj.iface.requests[opcode];
    if (!msg || msg.since > obj.version) {
      throw new ProtocolError(
        id,
        DisplayError.invalidMethod,
        `invalid method ${opcode}${msg ? ` (since ${msg.since} > version ${obj.version})` : ''}, object ${obj.iface.name}@${id}`,
      );
    }
    const hooks = this.hooks[obj.iface.index];
    const gate = hooks?.gate;
    if (gate) {
      this.hookContext.obj = obj;
      if (gate(this.hookContext, opcode)) return false;
    }
    this.takeFds(from, obj, id, msg);
    if (this.trace) {
      const out = this.host.out;
      this.traceOwnRequests();
      const outMark = out.len;
      const fdMark = out.fds.length;
      this.traceArrived(true, from, start, size);
      this.dispatch(from, this.host, start, size, obj, msg, hooks?.request);
      this.traceSent(true, out, outMark, fdMark);
      this.hostTraced = out.dropped + out.len;
    } else {
      this.dispatch(from, this.host, start, size, obj, msg, hooks?.request);
    }
    if (msg.destructor) {
      obj.dying = true;
      // The host frees server-created ids without a delete_id; events still in flight are dropped.
      if (obj.serverCreated) this.clientIds.release(obj.clientId);
    }
    return true;
  }

  private handleEvent(start: number, size: number, id: number, opcode: number): void {
    const from = this.host;
    const obj = this.hostIds.get(id);
    if (!obj) throw new WireError(`event for unknown object ${id}`);
    const msg = obj.iface.events[opcode];
    if (!msg) throw new WireError(`unknown event ${opcode} for ${obj.iface.name}@${id}`);
    this.takeFds(from, obj, id, msg);
    if (obj.dying && obj.serverCreated) {
      // The client already destroyed this server-created object: it would drop the event too.
      // Objects the event creates (a tablet pad group's rings) are kept as zombies, so the host's
      // later ids stay in sequence and their own events are dropped the same way.
      this.closeMessageFds(msg.fdCount);
      if (msg.newIdCount > 0) this.addZombies(from, start, size, msg);
      return;
    }
    if (obj.owner) {
      // a host object the proxy made for itself: its events are the proxy's, never the client's
      this.reader.reset(from.in, from.inView, start + 8, start + size);
      this.traceArrived(false, from, start, size);
      try {
        obj.owner(opcode, this.reader);
      } finally {
        for (let i = this.reader.fdPos; i < msg.fdCount; i++) closeQuietly(this.msgFds[i]);
      }
      return;
    }
    if (id === DISPLAY_ID && opcode === 0) this.hostSentError = true;
    const hook = this.hooks[obj.iface.index]?.event;
    if (this.trace) {
      const out = this.client.out;
      const outMark = out.len;
      const fdMark = out.fds.length;
      this.traceArrived(false, from, start, size);
      this.dispatch(from, this.client, start, size, obj, msg, hook);
      this.traceSent(false, out, outMark, fdMark);
    } else {
      this.dispatch(from, this.client, start, size, obj, msg, hook);
    }
    if (msg.destructor) {
      obj.dying = true;
      if (obj.serverCreated) {
        this.hostIds.remove(obj.hostId);
        this.clientIds.release(obj.clientId);
      }
    }
  }

  /** Lets the interface's hook see the message first, then forwards it unless the hook consumed it. */
  private dispatch(
    from: Endpoint,
    to: Endpoint,
    start: number,
    size: number,
    obj: WlObject,
    msg: Message,
    hook: MessageHook | undefined,
  ): void {
    if (hook) {
      this.reader.reset(from.in, from.inView, start + 8, start + size);
      this.hookContext.obj = obj;
      let consumed: HandlerResult;
      try {
        consumed = hook(this.hookContext, msg.opcode, this.reader);
      } catch (e) {
        this.closeMessageFds(msg.fdCount);
        throw e;
      }
      if (consumed) return;
      this.reader.fdPos = 0;
    }
    this.forward(from, to.out, start, size, obj, msg, to === this.host);
  }

  /** Traces one message as it arrived, in the sender's id space (requests from the client, events from the host). */
  private traceArrived(request: boolean, from: Endpoint, start: number, size: number): void {
    const side = request ? 'client' : 'host';
    if (!this.trace?.wants(side)) return;
    const ids = request ? this.clientIds : this.hostIds;
    this.trace.messages(
      side,
      this.client.label,
      request,
      from.in,
      start,
      start + size,
      ids,
      this.msgFds,
      0,
    );
  }

  /**
   * Traces the requests the proxy wrote to the host on its own (for the objects it owns, as an
   * Xwayland window's role), which no client message accounts for.
   */
  private traceOwnRequests(): void {
    if (!this.trace?.wants('host')) return;
    const out = this.host.out;
    const from = Math.max(this.hostTraced - out.dropped, out.head);
    if (from < out.len) {
      this.trace.messages(
        'host',
        this.client.label,
        true,
        out.buf,
        from,
        out.len,
        this.hostIds,
        [],
        0,
      );
    }
    this.hostTraced = out.dropped + out.len;
  }

  /** Traces what handling a message wrote to the other side since the marks, in the receiver's id space. */
  private traceSent(request: boolean, out: MessageWriter, outMark: number, fdMark: number): void {
    const side = request ? 'host' : 'client';
    if (!this.trace?.wants(side)) return;
    const ids = request ? this.hostIds : this.clientIds;
    this.trace.messages(
      side,
      this.client.label,
      request,
      out.buf,
      outMark,
      out.len,
      ids,
      out.fds,
      fdMark,
    );
  }

  private closeMessageFds(n: number): void {
    for (let i = 0; i < n; i++) closeQuietly(this.msgFds[i]);
  }

  /**
   * Copies one message to the other side, validating every argument and rewriting object
   * ids into the receiver's id space; new_id arguments create the object on both sides.
   */
  private forward(
    from: Endpoint,
    out: MessageWriter,
    start: number,
    size: number,
    obj: WlObject,
    msg: Message,
    request: boolean,
  ): void {
    const src = from.in;
    const view = from.inView;
    if (!msg.needsWalk) {
      if (size !== msg.fixedSize) {
        this.closeMessageFds(msg.fdCount);
        throw new WireError(
          `${obj.iface.name}.${msg.name}: message size ${size} does not match its arguments`,
        );
      }
      out.copyMessage(src, view, start, start + size, request ? obj.hostId : obj.clientId);
      return;
    }
    const mark = out.len;
    const at = out.copyMessage(src, view, start, start + size, request ? obj.hostId : obj.clientId);
    const end = start + size;
    let pos = start + 8;
    let fdIndex = 0;
    try {
      const kinds = msg.kinds;
      for (let i = 0; i < kinds.length; i++) {
        const kind = kinds[i];
        if (kind === ArgKind.Fd) {
          out.fd(this.msgFds[fdIndex++]);
          continue;
        }
        if (pos + 4 > end) throw new WireError(`${obj.iface.name}.${msg.name}: message too short`);
        const value = view.getUint32(pos, true);
        const outPos = at + (pos - start);
        switch (kind) {
          case ArgKind.String:
          case ArgKind.Array: {
            const padded = (value + 3) & ~3;
            if (value > MAX_MESSAGE_SIZE || pos + 4 + padded > end) {
              throw new WireError(
                `${obj.iface.name}.${msg.name}: argument ${i} runs past the message`,
              );
            }
            if (kind === ArgKind.String) {
              if (value === 0 && !msg.nullable[i]) {
                throw new WireError(
                  `${obj.iface.name}.${msg.name}: null string for a non-nullable argument`,
                );
              }
              if (value > 0 && src[pos + 4 + value - 1] !== 0) {
                throw new WireError(`${obj.iface.name}.${msg.name}: string not NUL-terminated`);
              }
            }
            pos += 4 + padded;
            break;
          }
          case ArgKind.Object:
            out.view.setUint32(outPos, this.translateObject(value, msg, i, obj, request), true);
            pos += 4;
            break;
          case ArgKind.NewId:
            if (msg.argInterfaces[i] === null) {
              // untyped new_id: interface name, version, id
              pos = this.forwardUntypedNewId(
                src,
                view,
                pos,
                end,
                out,
                at - start,
                obj,
                msg,
                request,
              );
            } else {
              out.view.setUint32(
                outPos,
                this.createObject(value, msg.argInterfaces[i]!, obj.version, request),
                true,
              );
              pos += 4;
            }
            break;
          default:
            pos += 4;
        }
      }
      if (pos !== end)
        throw new WireError(
          `${obj.iface.name}.${msg.name}: message size ${size} does not match its arguments`,
        );
    } catch (e) {
      out.len = mark;
      for (let i = out.fds.length - fdIndex; i < out.fds.length; i++) closeQuietly(out.fds[i]);
      out.fds.length -= fdIndex;
      for (let i = fdIndex; i < msg.fdCount; i++) closeQuietly(this.msgFds[i]);
      throw e;
    }
  }

  private translateObject(
    id: number,
    msg: Message,
    i: number,
    sender: WlObject,
    request: boolean,
  ): number {
    if (id === 0) {
      if (!msg.nullable[i]) {
        throw new ProtocolError(
          request ? sender.clientId : DISPLAY_ID,
          DisplayError.invalidMethod,
          `${sender.iface.name}.${msg.name}: null object for a non-nullable argument`,
        );
      }
      return 0;
    }
    const target = request ? this.clientIds.get(id) : this.hostIds.get(id);
    if (request) {
      const expected = msg.argInterfaces[i];
      if (!target || target.dying || (expected !== null && target.iface !== expected)) {
        throw new ProtocolError(
          DISPLAY_ID,
          DisplayError.invalidObject,
          `invalid object ${id} as argument ${i} of ${sender.iface.name}@${sender.clientId}.${msg.name}`,
        );
      }
      return target.hostId;
    }
    if (!target) throw new WireError(`${sender.iface.name}.${msg.name} names unknown object ${id}`);
    // A server-created object the client already destroyed reads as null, as libwayland does.
    return target.dying && target.serverCreated ? 0 : target.clientId;
  }

  /** Registers the new_id arguments of a dropped event as destroyed server-created objects. */
  private addZombies(from: Endpoint, start: number, size: number, msg: Message): void {
    const view = from.inView;
    const end = start + size;
    let pos = start + 8;
    const kinds = msg.kinds;
    for (let i = 0; i < kinds.length; i++) {
      const kind = kinds[i];
      if (kind === ArgKind.Fd) continue;
      if (pos + 4 > end) throw new WireError(`${msg.name}: message too short`);
      const value = view.getUint32(pos, true);
      if (kind === ArgKind.String || kind === ArgKind.Array) {
        pos += 4 + ((value + 3) & ~3);
        continue;
      }
      if (kind === ArgKind.NewId && msg.argInterfaces[i] !== null) {
        const stale = this.hostIds.get(value);
        if (value < SERVER_ID_START || (stale && !(stale.dying && stale.serverCreated))) {
          throw new WireError(
            `host created object ${value} over a live one or outside its id range`,
          );
        }
        if (!stale && !this.hostIds.canInsert(value, true))
          throw new WireError(`host created object ${value} out of sequence`);
        const zombie = new WlObject(0, value, msg.argInterfaces[i]!, 1);
        zombie.dying = true;
        this.hostIds.set(value, zombie);
      }
      pos += 4;
    }
  }

  private createObject(id: number, iface: Interface, version: number, request: boolean): number {
    if (request) {
      if (!this.clientIds.canInsert(id, false)) {
        throw new ProtocolError(DISPLAY_ID, DisplayError.invalidObject, `invalid new id ${id}`);
      }
      const hostId = this.hostIds.allocate(false);
      const obj = new WlObject(id, hostId, iface, version);
      this.clientIds.set(id, obj);
      this.hostIds.set(hostId, obj);
      return hostId;
    }
    const stale = this.hostIds.get(id);
    if (id < SERVER_ID_START || (stale && !(stale.dying && stale.serverCreated))) {
      throw new WireError(`host created object ${id} over a live one or outside its id range`);
    }
    if (!stale && !this.hostIds.canInsert(id, true))
      throw new WireError(`host created object ${id} out of sequence`);
    const clientId = this.clientIds.allocate(true);
    const obj = new WlObject(clientId, id, iface, version);
    this.clientIds.set(clientId, obj);
    this.hostIds.set(id, obj);
    return clientId;
  }

  private forwardUntypedNewId(
    src: Buffer,
    view: DataView,
    pos: number,
    end: number,
    out: MessageWriter,
    shift: number,
    sender: WlObject,
    msg: Message,
    request: boolean,
  ): number {
    const len = view.getUint32(pos, true);
    const padded = (len + 3) & ~3;
    if (len === 0 || pos + 4 + padded + 8 > end || src[pos + 4 + len - 1] !== 0) {
      throw new WireError(`${sender.iface.name}.${msg.name}: malformed interface name`);
    }
    const name = src.toString('latin1', pos + 4, pos + 4 + len - 1);
    pos += 4 + padded;
    const version = view.getUint32(pos, true);
    const id = view.getUint32(pos + 4, true);
    const iface = this.tables.get(name);
    if (!iface || version < 1 || version > iface.version) {
      throw new ProtocolError(
        DISPLAY_ID,
        DisplayError.invalidObject,
        `cannot create object of interface ${name} version ${version}`,
      );
    }
    out.view.setUint32(pos + 4 + shift, this.createObject(id, iface, version, request), true);
    return pos + 8;
  }

  private onClientClosed(error: Error | null): void {
    if (error) this.warn(`client connection failed: ${error.message}`);
    this.close();
  }

  private onHostClosed(error: Error | null): void {
    if (!this.hostSentError && !this.closed) {
      const why = error ? error.message : 'it closed the connection';
      const w = this.client.out;
      w.begin(DISPLAY_ID, 0);
      w.object(DISPLAY_ID);
      w.uint(DisplayError.implementation);
      w.string(`lost the host compositor: ${why}`);
      w.end();
    }
    this.client.flush();
    this.close();
  }
}

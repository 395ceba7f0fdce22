// One X11 client connection (the WM's, on Xwayland's -wm socket): the setup handshake, request
// sequence numbers, replies matched to their requests, and events and errors handed on whole.
// Every packet is framed and bounds-checked here; anything malformed ends the connection with an
// XProtocolError (Xwayland is a peer whose bytes are not trusted).
import { XProtocolError, XReader, XRequestWriter } from './wire.js';

/** What the server said about itself at setup, as far as a WM needs it. */
export interface XSetup {
  readonly root: number;
  readonly rootVisual: number;
  readonly rootDepth: number;
  readonly width: number;
  readonly height: number;
  readonly resourceIdBase: number;
  readonly resourceIdMask: number;
  /** Largest request the server takes, in bytes. */
  readonly maxRequestBytes: number;
}

export interface XErrorInfo {
  readonly code: number;
  readonly sequence: number;
  readonly badValue: number;
  readonly minorOpcode: number;
  readonly majorOpcode: number;
}

/** A request that expected a reply got an X error instead. */
export class XRequestError extends Error {
  override name = 'XRequestError';
  constructor(readonly info: XErrorInfo) {
    super(`X error ${info.code} for request ${info.majorOpcode}.${info.minorOpcode}`);
  }
}

/** The connection ended before the reply came. */
export class XConnectionClosed extends Error {
  override name = 'XConnectionClosed';
}

export interface XTransport {
  write(bytes: Buffer): void;
  close(): void;
}

export interface XConnectionHandler {
  /** One event: its code (without the sent-by-SendEvent bit) and its whole packet. */
  event(code: number, packet: XReader, synthetic: boolean): void;
  /** An error for a request that expected no reply. */
  error(info: XErrorInfo): void;
  /** The connection is over: the peer closed it, or sent something malformed (`why`). */
  closed(why: Error | null): void;
}

/** Replies and events bigger than this are malformed here: the WM never asks for that much. */
const MAX_PACKET = 16 << 20;
const GENERIC_EVENT = 35;

interface Pending {
  readonly sequence: number;
  readonly parse: (r: XReader) => unknown;
  readonly resolve: (v: unknown) => void;
  readonly reject: (e: Error) => void;
}

export class XConnection {
  setup: XSetup | null = null;
  private input = Buffer.alloc(4096);
  private inStart = 0;
  private inEnd = 0;
  private readonly out = new XRequestWriter();
  /** Requests sent (the full count; the wire carries its low 16 bits). */
  private sequence = 0;
  private lastReceived = 0;
  private readonly pending: Pending[] = [];
  private nextId = 0;
  /** Ids of resources that are gone for good, given out again first. */
  private readonly freeIds: number[] = [];
  private flushQueued = false;
  private closed = false;
  private setupWaiters: ((s: XSetup | Error) => void)[] = [];

  constructor(
    private readonly transport: XTransport,
    private readonly handler: XConnectionHandler,
  ) {
    // byte order 'l', protocol 11.0, no authorization
    const hello = Buffer.alloc(12);
    hello[0] = 0x6c;
    hello.writeUInt16LE(11, 2);
    transport.write(hello);
  }

  /** Resolves once the server accepted the connection. */
  ready(): Promise<XSetup> {
    if (this.setup) return Promise.resolve(this.setup);
    if (this.closed) return Promise.reject(new XConnectionClosed('the X connection is closed'));
    return new Promise((resolve, reject) =>
      this.setupWaiters.push((s) => (s instanceof Error ? reject(s) : resolve(s))),
    );
  }

  /** A new resource id of this client. */
  allocateId(): number {
    const free = this.freeIds.pop();
    if (free !== undefined) return free;
    const s = this.setup!;
    const mask = s.resourceIdMask;
    const step = mask & -mask;
    const id = this.nextId;
    this.nextId += step;
    if ((id & mask) !== id) throw new Error('out of X resource ids');
    return (s.resourceIdBase | id) >>> 0;
  }
  /**
   * An id whose resource was destroyed, once no event about it can still arrive (the server sent
   * its DestroyNotify): it may be given out again.
   */
  releaseId(id: number): void {
    this.freeIds.push(id);
  }

  /** Writes a request (begin…end on the writer); it goes out at the end of this tick. */
  send(build: (w: XRequestWriter) => void): number {
    if (this.closed) return this.sequence;
    build(this.out);
    this.sequence++;
    this.queueFlush();
    return this.sequence;
  }

  /** Writes a request that has a reply, which `parse` decodes (its reads are bounds-checked). */
  request<T>(build: (w: XRequestWriter) => void, parse: (r: XReader) => T): Promise<T> {
    if (this.closed) return Promise.reject(new XConnectionClosed('the X connection is closed'));
    const sequence = this.send(build);
    return new Promise<T>((resolve, reject) => {
      this.pending.push({ sequence, parse, resolve: resolve as (v: unknown) => void, reject });
    });
  }

  flush(): void {
    this.flushQueued = false;
    if (this.closed || this.out.pending === 0) return;
    this.transport.write(this.out.take());
  }

  close(why: Error | null = null): void {
    if (this.closed) return;
    this.closed = true;
    this.transport.close();
    const gone = why ?? new XConnectionClosed('the X connection closed');
    for (const p of this.pending.splice(0)) p.reject(gone);
    for (const w of this.setupWaiters.splice(0)) w(gone);
    this.handler.closed(why);
  }

  /** Bytes from the server; whole packets are handled at once. */
  feed(data: Buffer): void {
    if (this.closed) return;
    this.append(data);
    try {
      while (!this.closed) {
        const n = this.setup ? this.nextPacket() : this.setupReply();
        if (n === 0) break;
        this.inStart += n;
      }
    } catch (e) {
      if (!(e instanceof XProtocolError)) throw e;
      this.close(e);
    }
    if (this.inStart === this.inEnd) this.inStart = this.inEnd = 0;
  }

  private append(data: Buffer): void {
    if (this.inEnd + data.length > this.input.length) {
      const used = this.inEnd - this.inStart;
      const size = Math.max(this.input.length, (used + data.length) * 2);
      const next = size > this.input.length ? Buffer.alloc(size) : this.input;
      this.input.copy(next, 0, this.inStart, this.inEnd);
      this.input = next;
      this.inStart = 0;
      this.inEnd = used;
    }
    data.copy(this.input, this.inEnd);
    this.inEnd += data.length;
  }

  private available(): number {
    return this.inEnd - this.inStart;
  }

  private setupReply(): number {
    if (this.available() < 8) return 0;
    const head = new XReader(this.input, this.inStart, this.inEnd);
    const total = 8 + head.u16(6) * 4;
    if (total > MAX_PACKET) throw new XProtocolError(`a setup reply of ${total} bytes`);
    if (this.available() < total) return 0;
    const r = new XReader(this.input, this.inStart, this.inStart + total);
    if (r.u8(0) !== 1) {
      const reason = r.bytes(8, Math.min(r.u8(1), total - 8)).toString('latin1');
      throw new XProtocolError(`the X server refused the WM connection: ${reason}`);
    }
    const vendorLength = r.u16(24);
    const screens = r.u8(28);
    const formats = r.u8(29);
    if (screens < 1) throw new XProtocolError('the X server has no screen');
    const screen = 40 + ((vendorLength + 3) & ~3) + 8 * formats;
    this.setup = {
      resourceIdBase: r.u32(12),
      resourceIdMask: r.u32(16),
      maxRequestBytes: r.u16(26) * 4,
      root: r.u32(screen),
      width: r.u16(screen + 20),
      height: r.u16(screen + 22),
      rootVisual: r.u32(screen + 32),
      rootDepth: r.u8(screen + 38),
    };
    if (this.setup.resourceIdMask === 0) throw new XProtocolError('an empty resource id mask');
    for (const w of this.setupWaiters.splice(0)) w(this.setup);
    return total;
  }

  /** Handles the next whole packet; returns its size, 0 when it has not all arrived. */
  private nextPacket(): number {
    if (this.available() < 32) return 0;
    const head = new XReader(this.input, this.inStart, this.inEnd);
    const type = head.u8(0);
    let total = 32;
    if (type === 1 || (type & 0x7f) === GENERIC_EVENT) {
      const extra = head.u32(4);
      if (extra > (MAX_PACKET - 32) / 4) throw new XProtocolError(`a packet of ${extra} words`);
      total += extra * 4;
    }
    if (this.available() < total) return 0;
    const packet = new XReader(this.input, this.inStart, this.inStart + total);
    const sequence = this.widen(packet.u16(2));
    if (type === 0) this.onError(packet, sequence);
    else if (type === 1) this.onReply(packet, sequence);
    else this.handler.event(type & 0x7f, packet, (type & 0x80) !== 0);
    return total;
  }

  /** The full sequence number of a packet, from its low 16 bits. */
  private widen(low: number): number {
    let full = (this.lastReceived & ~0xffff) + low;
    if (full < this.lastReceived) full += 0x10000;
    if (full > this.sequence) {
      throw new XProtocolError(`a packet for request ${full}, but only ${this.sequence} were sent`);
    }
    this.lastReceived = full;
    return full;
  }

  /** The pending request `sequence` answers; earlier ones can no longer be. */
  private takePending(sequence: number): Pending | null {
    if (this.pending.length > 0 && this.pending[0].sequence < sequence) {
      throw new XProtocolError(`request ${this.pending[0].sequence} was never answered`);
    }
    if (this.pending.length > 0 && this.pending[0].sequence === sequence) {
      return this.pending.shift()!;
    }
    return null;
  }

  private onReply(packet: XReader, sequence: number): void {
    const p = this.takePending(sequence);
    if (!p) throw new XProtocolError(`a reply to request ${sequence}, which expects none`);
    let value: unknown;
    try {
      value = p.parse(packet);
    } catch (e) {
      if (e instanceof XProtocolError) p.reject(e);
      throw e;
    }
    p.resolve(value);
  }

  private onError(packet: XReader, sequence: number): void {
    const info: XErrorInfo = {
      code: packet.u8(1),
      sequence,
      badValue: packet.u32(4),
      minorOpcode: packet.u16(8),
      majorOpcode: packet.u8(10),
    };
    const p = this.takePending(sequence);
    if (p) p.reject(new XRequestError(info));
    else this.handler.error(info);
  }

  private queueFlush(): void {
    if (this.flushQueued) return;
    this.flushQueued = true;
    queueMicrotask(() => this.flush());
  }
}

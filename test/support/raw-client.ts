import * as native from '../../src/native/index.js';
import { MessageWriter } from '../../src/wire/writer.js';

export interface RawEvent {
  id: number;
  opcode: number;
  body: Buffer;
}

/**
 * A Wayland client that writes bytes by hand, for feeding the proxy malformed input and
 * reading exactly what comes back.
 */
export class RawClient {
  readonly fd: number;
  private readonly w = new MessageWriter(4096);
  private received = Buffer.alloc(0);
  private eof = false;
  private closed = false;

  /** Connects to the socket at `path`, or talks on a connected socket `fd` (then its owner). */
  constructor(path: string | number) {
    this.fd = typeof path === 'number' ? path : native.connectUnix(path);
  }

  /** Queues a well-formed message built by fill(). */
  message(id: number, opcode: number, fill: (w: MessageWriter) => void = () => {}): this {
    this.w.begin(id, opcode);
    fill(this.w);
    this.w.end();
    return this;
  }

  /** Queues raw bytes, for messages no real client would write. */
  raw(bytes: Buffer): this {
    this.w.copyFrom(bytes, 0, bytes.length);
    return this;
  }

  send(fds: number[] = []): this {
    let sent = 0;
    let first = true;
    while (sent < this.w.len) {
      const n = native.sendmsg(this.fd, this.w.buf, sent, this.w.len, fds, first ? fds.length : 0);
      if (n < 0) throw new Error('raw client: socket full');
      sent += n;
      first = false;
    }
    this.w.len = 0;
    return this;
  }

  /** Reads until the peer hangs up or no byte arrives for quietMs; returns the events. */
  async read(quietMs = 300, timeoutMs = 5000): Promise<{ events: RawEvent[]; eof: boolean }> {
    const buf = Buffer.alloc(65536);
    const out = new Int32Array(30);
    const deadline = Date.now() + timeoutMs;
    let lastData = Date.now();
    while (!this.eof && Date.now() < deadline && Date.now() - lastData < quietMs) {
      const n = native.recvmsg(this.fd, buf, 0, buf.length, out);
      for (let i = 0; i < out[0]; i++) native.close(out[2 + i]);
      if (n === 0) this.eof = true;
      else if (n > 0) {
        this.received = Buffer.concat([this.received, buf.subarray(0, n)]);
        lastData = Date.now();
      } else await new Promise((r) => setTimeout(r, 10));
    }
    const events: RawEvent[] = [];
    let pos = 0;
    while (this.received.length - pos >= 8) {
      const size = this.received.readUInt32LE(pos + 4) >>> 16;
      if (size < 8 || this.received.length - pos < size) break;
      events.push({
        id: this.received.readUInt32LE(pos),
        opcode: this.received.readUInt32LE(pos + 4) & 0xffff,
        body: this.received.subarray(pos + 8, pos + size),
      });
      pos += size;
    }
    this.received = this.received.subarray(pos);
    return { events, eof: this.eof };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    native.close(this.fd);
  }
}

/** Decodes wl_display.error(object, code, message) from an event body. */
export function displayError(
  e: RawEvent,
): { object: number; code: number; message: string } | null {
  if (e.id !== 1 || e.opcode !== 0) return null;
  const len = e.body.readUInt32LE(8);
  return {
    object: e.body.readUInt32LE(0),
    code: e.body.readUInt32LE(4),
    message: e.body.toString('utf8', 12, 12 + len - 1),
  };
}

import { WireError } from './errors.js';

/**
 * Reads the arguments of one message straight out of a connection's receive buffer.
 * One reader per connection is reset for every message, so decoding allocates nothing
 * beyond the values a caller asks for (strings, array views).
 */
export class ArgReader {
  buf: Buffer = Buffer.alloc(0);
  view: DataView = new DataView(this.buf.buffer);
  pos = 0;
  end = 0;
  /** The fds that belong to this message, in order; fd() hands them out. */
  fds: Int32Array = new Int32Array(0);
  fdPos = 0;
  fdEnd = 0;

  reset(buf: Buffer, view: DataView, start: number, end: number): this {
    this.buf = buf;
    this.view = view;
    this.pos = start;
    this.end = end;
    return this;
  }

  setFds(fds: Int32Array, start: number, end: number): this {
    this.fds = fds;
    this.fdPos = start;
    this.fdEnd = end;
    return this;
  }

  private need(n: number): void {
    if (this.pos + n > this.end) throw new WireError('message too short for its arguments');
  }

  int(): number {
    this.need(4);
    const v = this.view.getInt32(this.pos, true);
    this.pos += 4;
    return v;
  }

  uint(): number {
    this.need(4);
    const v = this.view.getUint32(this.pos, true);
    this.pos += 4;
    return v;
  }

  /** wl_fixed_t as a number (24.8 fixed point). */
  fixed(): number {
    return this.int() / 256;
  }

  object(): number {
    return this.uint();
  }

  newId(): number {
    return this.uint();
  }

  /** A string argument; null for the zero-length (null) encoding. */
  string(): string | null {
    const len = this.uint();
    if (len === 0) return null;
    const padded = (len + 3) & ~3;
    this.need(padded);
    const start = this.pos;
    if (this.buf[start + len - 1] !== 0) throw new WireError('string not NUL-terminated');
    this.pos += padded;
    return this.buf.toString('utf8', start, start + len - 1);
  }

  /** An array argument as a view into the receive buffer: copy it to keep it. */
  array(): Buffer {
    const len = this.uint();
    const padded = (len + 3) & ~3;
    this.need(padded);
    const start = this.pos;
    this.pos += padded;
    return this.buf.subarray(start, start + len);
  }

  fd(): number {
    if (this.fdPos >= this.fdEnd)
      throw new WireError('message needs a file descriptor that was not sent');
    return this.fds[this.fdPos++];
  }
}

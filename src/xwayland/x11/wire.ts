// The X11 wire format, little-endian (the byte order our setup asks for): a bounds-checked
// reader for what Xwayland sends, and a writer for requests.

/** Xwayland sent bytes that are not the X11 protocol: the WM connection cannot go on. */
export class XProtocolError extends Error {
  override name = 'XProtocolError';
}

/** Reads fields of one reply or event; every read past its end is an XProtocolError. */
export class XReader {
  private readonly view: DataView;

  constructor(
    readonly buf: Buffer,
    readonly start = 0,
    readonly end = buf.length,
  ) {
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  get length(): number {
    return this.end - this.start;
  }

  private at(offset: number, n: number): number {
    if (offset < 0 || this.start + offset + n > this.end) {
      throw new XProtocolError(
        `a field at byte ${offset} runs past the ${this.length}-byte packet`,
      );
    }
    return this.start + offset;
  }

  u8(offset: number): number {
    return this.buf[this.at(offset, 1)];
  }

  u16(offset: number): number {
    return this.view.getUint16(this.at(offset, 2), true);
  }

  i16(offset: number): number {
    return this.view.getInt16(this.at(offset, 2), true);
  }

  u32(offset: number): number {
    return this.view.getUint32(this.at(offset, 4), true);
  }

  /** A copy of `n` bytes from `offset`. */
  bytes(offset: number, n: number): Buffer {
    const from = this.at(offset, n);
    return Buffer.from(this.buf.subarray(from, from + n));
  }

  /** `n` 32-bit values from `offset`. */
  u32s(offset: number, n: number): number[] {
    this.at(offset, n * 4);
    const out = new Array<number>(n);
    for (let i = 0; i < n; i++) out[i] = this.u32(offset + i * 4);
    return out;
  }
}

/** Builds one request: a growing buffer whose length field is filled in by end(). */
export class XRequestWriter {
  private buf = Buffer.alloc(256);
  private len = 0;
  private begun = -1;

  private room(n: number): void {
    if (this.len + n <= this.buf.length) return;
    const bigger = Buffer.alloc(Math.max(this.buf.length * 2, this.len + n));
    this.buf.copy(bigger, 0, 0, this.len);
    this.buf = bigger;
  }

  /** Opcode, the byte after it, and room for the length. */
  begin(opcode: number, data = 0): this {
    this.begun = this.len;
    return this.u8(opcode).u8(data).u16(0);
  }

  u8(v: number): this {
    this.room(1);
    this.buf[this.len++] = v & 0xff;
    return this;
  }

  u16(v: number): this {
    this.room(2);
    this.buf.writeUInt16LE(v & 0xffff, this.len);
    this.len += 2;
    return this;
  }

  i16(v: number): this {
    this.room(2);
    this.buf.writeInt16LE(Math.max(-0x8000, Math.min(0x7fff, v | 0)), this.len);
    this.len += 2;
    return this;
  }

  u32(v: number): this {
    this.room(4);
    this.buf.writeUInt32LE(v >>> 0, this.len);
    this.len += 4;
    return this;
  }

  data(b: Uint8Array): this {
    this.room(b.length + 3);
    this.buf.set(b, this.len);
    this.len += b.length;
    return this.pad();
  }

  pad(): this {
    while (this.len % 4 !== 0) this.u8(0);
    return this;
  }

  /** Fills in the request's length (in 4-byte units); returns it in bytes. */
  end(): number {
    this.pad();
    const bytes = this.len - this.begun;
    this.buf.writeUInt16LE(bytes / 4, this.begun + 2);
    return bytes;
  }

  /** Everything written so far, handed over; the writer starts empty again. */
  take(): Buffer {
    const out = Buffer.from(this.buf.subarray(0, this.len));
    this.len = 0;
    return out;
  }

  get pending(): number {
    return this.len;
  }
}

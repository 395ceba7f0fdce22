import { RELEASED, RELEASED_VIEW, giveBack, takeBuffer } from './buffer-pool.js';

/**
 * An output buffer for one connection plus the fds that go with it. Messages are
 * appended with begin() … end() and leave in batches when the connection flushes.
 */
/** Queued output past which a connection is congested: the relay stops reading the other side. */
export const HIGH_WATER = 4 * 1024 * 1024;
/** Queued fds past which a connection is congested too: each one is a process fd held for the peer. */
export const FD_HIGH_WATER = 256;

export class MessageWriter {
  buf: Buffer;
  view: DataView;
  /** Bytes [head, len) are queued; [0, head) went out already and are dropped lazily. */
  head = 0;
  len = 0;
  /** Bytes dropped from the front of buf so far: `dropped + offset` names a byte for good. */
  dropped = 0;
  /** fds queued for the next sendmsg; ownership passes to the connection, which closes them once sent. */
  readonly fds: number[] = [];
  private start = 0;
  /** Congested when last looked at, so that a drain within one flush is not missed. */
  private wasCongested = false;

  constructor(
    initialSize = 16384,
    /** Queued bytes past which it is congested. */
    private readonly highWater = HIGH_WATER,
  ) {
    this.buf = takeBuffer(initialSize);
    this.view = new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.byteLength);
  }

  /** Bytes queued and not yet sent. */
  get pending(): number {
    return this.len - this.head;
  }

  get congested(): boolean {
    return this.len - this.head >= this.highWater || this.fds.length >= FD_HIGH_WATER;
  }

  /**
   * Forgets the next n queued bytes, which the transport took. Returns true when that relieved a
   * congestion seen since the last call (the relay may have stopped reading on seeing it). The
   * sent bytes are dropped from the buffer only once they are at least half of it, so a peer
   * that takes a large backlog a little at a time costs linear, not quadratic, copying.
   */
  sent(n: number): boolean {
    const was = this.wasCongested || this.congested;
    this.head += n;
    if (this.head === this.len) {
      this.dropped += this.len;
      this.head = 0;
      this.len = 0;
    } else if (this.head >= this.len - this.head) {
      this.buf.copy(this.buf, 0, this.head, this.len);
      this.dropped += this.head;
      this.len -= this.head;
      this.head = 0;
    }
    this.wasCongested = this.congested;
    return was && !this.wasCongested;
  }

  /** Drops everything queued (the transport is gone); the fds are the caller's to close. */
  clear(): void {
    this.dropped += this.len;
    this.head = 0;
    this.len = 0;
  }

  /** The transport is gone: its buffer goes back to the pool, and anything queued with it. */
  release(): void {
    this.clear();
    giveBack(this.buf);
    this.buf = RELEASED;
    this.view = RELEASED_VIEW;
  }

  reserve(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let size = Math.max(this.buf.length * 2, 4096);
    while (size < this.len + n) size *= 2;
    const next = Buffer.allocUnsafe(size);
    // bytes already sent are kept too: callers may hold positions in the buffer (trace marks)
    this.buf.copy(next, 0, 0, this.len);
    this.buf = next;
    this.view = new DataView(next.buffer, next.byteOffset, next.byteLength);
  }

  begin(id: number, opcode: number): void {
    this.reserve(8);
    this.start = this.len;
    this.view.setUint32(this.len, id >>> 0, true);
    this.view.setUint32(this.len + 4, opcode, true);
    this.len += 8;
  }

  end(): void {
    const size = this.len - this.start;
    this.view.setUint32(
      this.start + 4,
      (size << 16) | this.view.getUint16(this.start + 4, true),
      true,
    );
  }

  int(v: number): void {
    this.reserve(4);
    this.view.setInt32(this.len, v, true);
    this.len += 4;
  }

  uint(v: number): void {
    this.reserve(4);
    this.view.setUint32(this.len, v >>> 0, true);
    this.len += 4;
  }

  fixed(v: number): void {
    this.int(Math.round(v * 256));
  }

  object(id: number): void {
    this.uint(id);
  }

  newId(id: number): void {
    this.uint(id);
  }

  string(s: string | null): void {
    if (s === null) return this.uint(0);
    this.reserve(4 + s.length * 3 + 4);
    const at = this.len;
    const n = this.buf.write(s, at + 4, 'utf8');
    this.buf[at + 4 + n] = 0;
    this.view.setUint32(at, n + 1, true);
    const padded = (n + 1 + 3) & ~3;
    this.buf.fill(0, at + 4 + n + 1, at + 4 + padded);
    this.len = at + 4 + padded;
  }

  array(a: Uint8Array): void {
    const padded = (a.length + 3) & ~3;
    this.reserve(4 + padded);
    this.view.setUint32(this.len, a.length, true);
    this.buf.set(a, this.len + 4);
    this.buf.fill(0, this.len + 4 + a.length, this.len + 4 + padded);
    this.len += 4 + padded;
  }

  fd(fd: number): void {
    this.fds.push(fd);
  }

  /** Appends bytes verbatim; returns where they start. */
  copyFrom(src: Uint8Array, start: number, end: number): number {
    this.reserve(end - start);
    const at = this.len;
    this.buf.set(src.subarray(start, end), at);
    this.len += end - start;
    return at;
  }

  /**
   * Appends a forwarded message: its bytes from `src`, with its first word (the object id)
   * replaced by `id`. Returns where it starts.
   */
  copyMessage(src: Buffer, srcView: DataView, start: number, end: number, id: number): number {
    const n = end - start;
    this.reserve(n);
    const at = this.len;
    const view = this.view;
    if (n <= 128) {
      // most messages are a few words: word loads and stores beat both Buffer.copy's call
      // overhead and a byte loop (each byte access checks for a detached buffer) several times
      for (let i = 4; i < n; i += 4)
        view.setUint32(at + i, srcView.getUint32(start + i, true), true);
    } else {
      src.copy(this.buf, at + 4, start + 4, end);
    }
    view.setUint32(at, id, true);
    this.len += n;
    return at;
  }
}

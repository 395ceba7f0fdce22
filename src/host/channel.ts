// A guest's Wayland channel as the client side of tswl-host's relay: bytes and fds come in with
// the guest's SEND commands, and what the relay has for the guest leaves as RECEIVE records, one
// per ring-1 fence, written by the context (cross-domain.ts). The relay reads it like a socket.

import type { Endpoint, EndpointHandler } from '../wire/connection.js';
import { releaseInput, takeBuffer } from '../wire/buffer-pool.js';
import { FdQueue, closeQuietly } from '../wire/fd-queue.js';
import { MessageWriter } from '../wire/writer.js';

const IN_BUFFER_SIZE = 16384;
/** Output waiting for fences past which the relay stops reading the compositor. */
export const CHANNEL_HIGH_WATER = 256 * 1024;
/** fds a guest may have sent ahead of the messages that use them. */
const MAX_PENDING_FDS = 256;

export class GuestChannel implements Endpoint {
  in = takeBuffer(IN_BUFFER_SIZE);
  inView = new DataView(this.in.buffer, this.in.byteOffset, this.in.byteLength);
  inStart = 0;
  inEnd = 0;
  readonly inFds = new FdQueue(MAX_PENDING_FDS);
  fdsTruncated = false;
  readonly out = new MessageWriter(16384, CHANNEL_HIGH_WATER);
  /** The relay is done with it; output already queued is still delivered, then end of file. */
  closed = false;
  bytesIn = 0;
  fdsIn = 0;
  /** The relay takes the guest's messages (it stops while the compositor is behind). */
  reading = true;
  handler: EndpointHandler | null = null;

  constructor(
    readonly label: number,
    /** The relay has output for the guest: deliver what a waiting fence can take. */
    private readonly deliver: () => void,
    /** The relay reads the guest again: the transport may take its commands again. */
    private readonly resumed: () => void,
  ) {}

  get congested(): boolean {
    return this.out.congested;
  }

  /** Guest bytes the relay has not processed yet. */
  get unprocessed(): number {
    return this.inEnd - this.inStart;
  }

  /** fds this channel holds in its queues, for the guest's fd budget. */
  get heldFds(): number {
    return this.inFds.length + this.out.fds.length;
  }

  /** Output waiting for the guest to poll. */
  get hasOutput(): boolean {
    return this.out.pending > 0 || this.out.fds.length > 0;
  }

  /** Takes one SEND's data and fds (which it now owns) and lets the relay process them. */
  push(src: Uint8Array, start: number, end: number, fds: readonly number[]): void {
    for (const fd of fds) {
      if (!this.inFds.push(fd)) {
        // more fds than messages could use: the relay ends the client with an error
        this.fdsTruncated = true;
        closeQuietly(fd);
      }
    }
    this.fdsIn += fds.length;
    const size = end - start;
    if (this.in.length - this.inEnd < size) {
      this.in.copy(this.in, 0, this.inStart, this.inEnd);
      this.inEnd -= this.inStart;
      this.inStart = 0;
      if (this.in.length - this.inEnd < size) {
        let length = Math.max(this.in.length * 2, IN_BUFFER_SIZE);
        while (length - this.inEnd < size) length *= 2;
        const bigger = Buffer.allocUnsafe(length);
        this.in.copy(bigger, 0, 0, this.inEnd);
        this.in = bigger;
        this.inView = new DataView(bigger.buffer, bigger.byteOffset, bigger.byteLength);
      }
    }
    this.in.set(src.subarray(start, end), this.inEnd);
    this.inEnd += size;
    this.bytesIn += size;
    if (this.reading) this.handler?.onData();
  }

  consume(n: number): void {
    this.inStart += n;
    if (this.inStart === this.inEnd) {
      this.inStart = 0;
      this.inEnd = 0;
    }
  }

  setReading(on: boolean): void {
    if (this.reading === on) return;
    this.reading = on;
    if (on) this.resumed();
  }

  flush(): void {
    if (this.hasOutput) this.deliver();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.inFds.closeAll();
    releaseInput(this);
    this.deliver();
  }

  /** The context is gone: nothing more is delivered. */
  discard(closeFd: (fd: number) => void): void {
    this.close();
    for (const fd of this.out.fds) closeFd(fd);
    this.out.fds.length = 0;
    this.out.release();
  }
}

import * as native from '../native/index.js';
import { releaseInput, takeBuffer } from './buffer-pool.js';
import { FdQueue, closeQuietly } from './fd-queue.js';
import { MessageWriter } from './writer.js';

/** libwayland's per-sendmsg fd limit; receivers size their control buffers for it. */
export const MAX_FDS_PER_SENDMSG = 28;
export const MAX_MESSAGE_SIZE = 4096;
const IN_BUFFER_SIZE = 65536;

export interface EndpointHandler {
  /** New bytes (and fds) are in the input buffer; consume whole messages with consume(). */
  onData(): void;
  /** The peer hung up or the transport failed; the endpoint is already closed. */
  onClose(error: Error | null): void;
  /** The output buffer drained below the high-water mark after being above it. */
  onDrain?(): void;
}

/**
 * One side of a relay: a stream of Wayland messages with fds. A Unix socket (Connection) on
 * the client side and in host mode; a cross-domain channel when the host is across a VM boundary.
 */
export interface Endpoint {
  readonly in: Buffer;
  readonly inView: DataView;
  inStart: number;
  inEnd: number;
  readonly inFds: FdQueue;
  /** Set when the peer sent more fds than the transport could take in. */
  readonly fdsTruncated: boolean;
  readonly out: MessageWriter;
  readonly closed: boolean;
  /** More output is queued than should be buffered: stop reading the other side. */
  readonly congested: boolean;
  /** Totals received, for `stats`. */
  readonly bytesIn: number;
  readonly fdsIn: number;
  /** A number that names this endpoint in traces (the socket's fd). */
  readonly label: number;
  /** Marks bytes [inStart, inStart + n) as processed. */
  consume(n: number): void;
  setReading(on: boolean): void;
  /** Sends what is queued; what cannot go now goes when the transport is ready. */
  flush(): void;
  /** Closes the transport and every fd still queued in either direction. */
  close(): void;
}

/**
 * One Wayland socket: a receive buffer with its fd queue, an output buffer with
 * batched flushes, and readiness from Node's event loop.
 */
export class Connection implements Endpoint {
  in = takeBuffer(IN_BUFFER_SIZE);
  inView = new DataView(this.in.buffer, this.in.byteOffset, this.in.byteLength);
  inStart = 0;
  inEnd = 0;
  readonly inFds = new FdQueue();
  /** Set when the peer sent more fds in one sendmsg than fit in the control buffer. */
  fdsTruncated = false;
  readonly out: MessageWriter;
  closed = false;
  /** Totals received on this socket, for `stats`. */
  bytesIn = 0;
  fdsIn = 0;
  private readonly poller: native.Poller;
  private readonly recvResult = new Int32Array(2 + MAX_FDS_PER_SENDMSG);
  private reading = true;
  private wantWrite = false;

  constructor(
    readonly fd: number,
    private readonly handler: EndpointHandler,
    /** Output queued past which it is congested (MessageWriter's default: 4 MiB). */
    highWater?: number,
  ) {
    this.out = new MessageWriter(16384, highWater);
    this.poller = new native.Poller(fd, (events, error) => this.onReady(events, error));
    this.poller.update(native.READABLE);
  }

  get label(): number {
    return this.fd;
  }

  consume(n: number): void {
    this.inStart += n;
  }

  get congested(): boolean {
    return this.out.congested;
  }

  setReading(on: boolean): void {
    if (this.closed || this.reading === on) return;
    this.reading = on;
    this.updatePoll();
  }

  flush(): void {
    if (this.closed) return;
    const out = this.out;
    let sent = out.head;
    try {
      while (sent < out.len || out.fds.length > 0) {
        const nfds = Math.min(out.fds.length, MAX_FDS_PER_SENDMSG);
        // fds ride with the first byte of a sendmsg; a batch of more than 28 is split
        // so that each part carries at least one byte of the messages that use them.
        const end = nfds < out.fds.length ? Math.min(out.len, sent + 4) : out.len;
        if (end <= sent && nfds > 0) break; // fds without bytes cannot happen: messages carry them
        const n = native.sendmsg(this.fd, out.buf, sent, end, out.fds, nfds);
        if (n < 0) break;
        for (let i = 0; i < nfds; i++) closeQuietly(out.fds[i]);
        out.fds.splice(0, nfds);
        sent += n;
      }
    } catch (e) {
      out.clear();
      this.fail(e as Error);
      return;
    }
    const relieved = out.sent(sent - out.head);
    const pending = out.pending > 0 || out.fds.length > 0;
    if (pending !== this.wantWrite) {
      this.wantWrite = pending;
      this.updatePoll();
    }
    if (relieved) this.handler.onDrain?.();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.poller.close();
    closeQuietly(this.fd);
    this.inFds.closeAll();
    for (const fd of this.out.fds) closeQuietly(fd);
    this.out.fds.length = 0;
    this.out.release();
    releaseInput(this);
  }

  private updatePoll(): void {
    this.poller.update(
      (this.reading ? native.READABLE : 0) | (this.wantWrite ? native.WRITABLE : 0),
    );
  }

  private fail(error: Error | null): void {
    if (this.closed) return;
    this.close();
    this.handler.onClose(error);
  }

  private onReady(events: number, errorCode: string | null): void {
    if (this.closed) return;
    if (errorCode) return this.fail(new Error(`poll: ${errorCode}`));
    if (events & native.WRITABLE) this.flush();
    if (this.closed || !(events & (native.READABLE | native.DISCONNECT)) || !this.reading) return;
    let eof = false;
    try {
      eof = this.readAvailable();
    } catch (e) {
      return this.fail(e as Error);
    }
    if (this.inEnd > this.inStart || this.inFds.length > 0 || this.fdsTruncated) {
      this.handler.onData();
    }
    if (eof) this.fail(null);
  }

  /** Reads until the socket is drained or the buffer is full; returns true on EOF. */
  private readAvailable(): boolean {
    for (;;) {
      if (this.inStart > 0 && (this.inStart === this.inEnd || this.inEnd === this.in.length)) {
        this.in.copy(this.in, 0, this.inStart, this.inEnd);
        this.inEnd -= this.inStart;
        this.inStart = 0;
      }
      if (this.inEnd === this.in.length) return false;
      const n = native.recvmsg(this.fd, this.in, this.inEnd, this.in.length, this.recvResult);
      const nfds = this.recvResult[0];
      this.fdsIn += nfds;
      if (this.recvResult[1]) this.fdsTruncated = true;
      for (let i = 0; i < nfds; i++) {
        const fd = this.recvResult[2 + i];
        if (!this.inFds.push(fd)) {
          closeQuietly(fd);
          this.fdsTruncated = true;
        }
      }
      if (n < 0) return false;
      if (n === 0) return true;
      this.inEnd += n;
      this.bytesIn += n;
      // a read that did not fill the buffer emptied the socket: save the recvmsg that would
      // only say EAGAIN (anything newer makes the socket readable again)
      if (this.inEnd < this.in.length) return false;
    }
  }
}

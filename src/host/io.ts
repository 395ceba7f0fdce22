// Nonblocking writers for the fds a cross-domain context talks to: the compositor socket and
// the write pipes the compositor hands out. Nothing here may block the event loop, because one
// tswl-host process serves every guest: what cannot be written now waits in an Outbox.

import * as native from '../native/index.js';
import type { FdLedger } from './fds.js';

interface Chunk {
  data: Buffer;
  start: number;
  /** fds that go with the first byte of the chunk; empty once they went out. */
  fds: number[];
}

/**
 * Bytes (and fds riding with them) waiting for a full socket or pipe to drain. It owns the fds
 * it holds: they are closed (through the ledger) once sent, or when the outbox is cleared.
 */
export class Outbox {
  private readonly chunks: Chunk[] = [];
  bytes = 0;

  constructor(private readonly ledger: FdLedger) {}

  get empty(): boolean {
    return this.chunks.length === 0;
  }

  /** Queues a copy of src[start, end) with `fds`, which the outbox now owns. */
  push(src: Uint8Array, start: number, end: number, fds: number[]): void {
    this.chunks.push({ data: Buffer.from(src.subarray(start, end)), start: 0, fds });
    this.bytes += end - start;
  }

  /**
   * Writes what it can with `write` (bytes written, or -1 when the fd is full; throws on
   * failure). Returns true when everything went out.
   */
  flush(
    write: (buf: Buffer, start: number, end: number, fds: readonly number[]) => number,
  ): boolean {
    while (this.chunks.length > 0) {
      const c = this.chunks[0];
      const n = write(c.data, c.start, c.data.length, c.fds);
      if (n < 0) return false;
      if (c.fds.length > 0) {
        for (const fd of c.fds) this.ledger.close(fd);
        c.fds = [];
      }
      c.start += n;
      this.bytes -= n;
      if (c.start === c.data.length) this.chunks.shift();
    }
    return true;
  }

  clear(): void {
    for (const c of this.chunks) for (const fd of c.fds) this.ledger.close(fd);
    this.chunks.length = 0;
    this.bytes = 0;
  }
}

/** Most bytes one writer keeps waiting before the host gives up on the reader. */
export const OUTBOX_LIMIT = 16 * 1024 * 1024;

/**
 * The context's connection to the compositor: a nonblocking stream socket, read only while a
 * ring-1 fence waits for a message (onReadable), written through an Outbox. A failed write
 * (the compositor went away) only stops the writing: what the compositor sent before leaving,
 * such as a wl_display.error, is still read, and the end of file after it.
 */
export class CompositorSocket {
  private readonly poller: native.Poller;
  private readonly outbox: Outbox;
  private reading = false;
  /** Why writing stopped, once it has. */
  writeError: Error | null = null;
  /** Polling failed: reads that find nothing mean end of file. */
  pollFailed = false;
  closed = false;

  constructor(
    readonly fd: number,
    private readonly ledger: FdLedger,
    private readonly onReadable: () => void,
    private readonly onWriteError: (error: Error) => void,
    /** Everything queued has reached the compositor. */
    private readonly onDrained: () => void = () => {},
  ) {
    this.outbox = new Outbox(ledger);
    this.poller = new native.Poller(fd, (events, errorCode) => this.onPoll(events, errorCode));
  }

  get queuedBytes(): number {
    return this.outbox.bytes;
  }

  setReading(on: boolean): void {
    if (this.closed || this.reading === on) return;
    this.reading = on;
    if (on && this.pollFailed) {
      queueMicrotask(() => {
        if (!this.closed && this.reading) this.onReadable();
      });
      return;
    }
    this.updatePoll();
  }

  /**
   * Sends src[start, end) with `fds` attached (fds need at least one byte). On success the
   * socket owns the fds (closed once transmitted); on a throw they are still the caller's.
   */
  send(src: Uint8Array, start: number, end: number, fds: number[]): void {
    if (this.closed) throw new Error('the compositor connection is closed');
    if (this.writeError)
      throw new Error(`the compositor connection failed: ${this.writeError.message}`);
    if (this.outbox.empty) {
      let n: number;
      try {
        n = native.sendmsg(this.fd, src, start, end, fds, fds.length);
      } catch (e) {
        this.failWrite(e as Error);
        throw new Error(`the compositor connection failed: ${(e as Error).message}`);
      }
      if (n >= 0) {
        for (const fd of fds) this.ledger.close(fd);
        if (start + n === end) return;
        this.outbox.push(src, start + n, end, []);
      } else {
        this.outbox.push(src, start, end, fds);
      }
      this.updatePoll();
      return;
    }
    this.outbox.push(src, start, end, fds);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.poller.close();
    this.outbox.clear();
    this.ledger.close(this.fd);
  }

  private failWrite(error: Error): void {
    this.writeError = error;
    this.outbox.clear();
    this.updatePoll();
  }

  private updatePoll(): void {
    if (this.closed || this.pollFailed) return;
    this.poller.update(
      (this.reading ? native.READABLE : 0) | (this.outbox.empty ? 0 : native.WRITABLE),
    );
  }

  private onPoll(events: number, errorCode: string | null): void {
    if (this.closed) return;
    if (errorCode) {
      this.pollFailed = true;
      if (!this.outbox.empty) this.failWrite(new Error(`poll: ${errorCode}`));
      if (this.reading) this.onReadable();
      return;
    }
    if (events & native.WRITABLE && !this.outbox.empty) {
      try {
        this.outbox.flush((buf, s, e, fds) => native.sendmsg(this.fd, buf, s, e, fds, fds.length));
      } catch (e) {
        this.failWrite(e as Error);
        this.onWriteError(e as Error);
      }
      if (this.outbox.empty) {
        this.updatePoll();
        this.onDrained();
      }
    }
    if (this.closed) return;
    if (this.reading && events & (native.READABLE | native.DISCONNECT)) this.onReadable();
  }
}

/**
 * The write end of a pipe the compositor gave the guest (identifier type WRITE_PIPE): the guest's
 * WRITEs go into it. Writes never block; a reader that stops reading loses the data past
 * OUTBOX_LIMIT (the pipe is then closed, as if the guest had hung up).
 */
export class WritePipe {
  private readonly outbox: Outbox;
  private poller: native.Poller | null = null;
  private closeWhenDrained = false;
  private broken = false;
  closed = false;

  constructor(
    readonly id: number,
    readonly fd: number,
    private readonly ledger: FdLedger,
    private readonly note: (message: string) => void,
    private readonly onClosed: (pipe: WritePipe) => void,
  ) {
    this.outbox = new Outbox(ledger);
  }

  write(src: Uint8Array, start: number, end: number): void {
    if (this.broken || this.closed || start === end) return;
    if (this.outbox.empty) {
      try {
        while (start < end) {
          const n = native.writeFd(this.fd, src, start, end);
          if (n < 0) break;
          start += n;
        }
      } catch (e) {
        this.fail(
          `write pipe 0x${this.id.toString(16)}: ${(e as Error).message}; its data is dropped`,
        );
        return;
      }
      if (start === end) return;
    }
    this.outbox.push(src, start, end, []);
    if (this.outbox.bytes > OUTBOX_LIMIT) {
      this.fail(
        `write pipe 0x${this.id.toString(16)}: its reader left ${this.outbox.bytes} bytes unread; closing it`,
      );
      return;
    }
    this.watch();
  }

  /** The guest is done (hang_up): close once what is queued has been written. */
  hangUp(): void {
    this.closeWhenDrained = true;
    if (this.outbox.empty || this.broken) this.close();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.poller?.close();
    this.poller = null;
    this.outbox.clear();
    this.ledger.close(this.fd);
    this.onClosed(this);
  }

  private fail(message: string): void {
    this.note(message);
    this.broken = true;
    this.outbox.clear();
    this.poller?.update(0);
    if (this.closeWhenDrained) this.close();
  }

  private watch(): void {
    if (!this.poller) {
      this.poller = new native.Poller(this.fd, (_events, errorCode) => this.onPoll(errorCode));
    }
    this.poller.update(native.WRITABLE);
  }

  /** Writable (or the reader left, which the write then reports). */
  private onPoll(errorCode: string | null): void {
    if (this.closed) return;
    if (errorCode) return this.fail(`write pipe 0x${this.id.toString(16)}: poll: ${errorCode}`);
    try {
      if (!this.outbox.flush((buf, s, e) => native.writeFd(this.fd, buf, s, e))) return;
    } catch (e) {
      return this.fail(`write pipe 0x${this.id.toString(16)}: ${(e as Error).message}`);
    }
    this.poller?.update(0);
    if (this.closeWhenDrained) this.close();
  }
}

/**
 * The read end of a pipe the host made for the guest (identifier type READ_PIPE): watched while
 * a ring-1 fence waits, and read into a READ message.
 */
export class ReadPipe {
  private readonly poller: native.Poller;
  private reading = false;
  closed = false;

  constructor(
    readonly id: number,
    readonly fd: number,
    private readonly ledger: FdLedger,
    onReadable: (pipe: ReadPipe) => void,
  ) {
    this.poller = new native.Poller(fd, (events, errorCode) => {
      if (this.closed || !this.reading) return;
      if (errorCode) this.reading = false;
      if (errorCode || events & (native.READABLE | native.DISCONNECT)) onReadable(this);
    });
  }

  setReading(on: boolean): void {
    if (this.closed || this.reading === on) return;
    this.reading = on;
    this.poller.update(on ? native.READABLE : 0);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.poller.close();
    this.ledger.close(this.fd);
  }
}

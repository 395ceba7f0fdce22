// Nonblocking pipes of a cross-domain context: the write pipes the compositor hands out (the
// guest's WRITEs go into them) and the read pipes the host makes for the guest. Nothing here may
// block the event loop, because one tswl-host process serves every guest: what cannot be written
// now waits in an Outbox, and the transport stops taking the guest's commands while it is large.

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

/** A reader that takes nothing for this long while data waits is stuck: its paste is cut short. */
export const PIPE_STALL_MS = 10_000;

/**
 * The write end of a pipe the compositor gave the guest (identifier type WRITE_PIPE): the guest's
 * WRITEs go into it. Writes never block; what the reader has not taken yet waits, and counts in
 * the guest's backlog, so a slow reader slows the guest down as a blocking pipe would under crosvm.
 * A reader that takes nothing at all for PIPE_STALL_MS loses the rest (so that another VM or a
 * stuck application cannot hold this guest back for ever).
 */
export class WritePipe {
  private readonly outbox: Outbox;
  private poller: native.Poller | null = null;
  private closeWhenDrained = false;
  private broken = false;
  /** When the reader last took bytes, while some waited. */
  private progressAt = 0;
  private stallTimer: NodeJS.Timeout | null = null;
  closed = false;

  constructor(
    readonly id: number,
    readonly fd: number,
    private readonly ledger: FdLedger,
    private readonly note: (message: string) => void,
    private readonly onClosed: (pipe: WritePipe) => void,
    /** Everything queued was written. */
    private readonly onDrained: () => void,
  ) {
    this.outbox = new Outbox(ledger);
  }

  /** Bytes waiting for the reader. */
  get queued(): number {
    return this.outbox.bytes;
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
    this.watch();
    if (!this.stallTimer) {
      this.progressAt = Date.now();
      this.checkStall();
    }
  }

  /** Gives up on a reader that took nothing for PIPE_STALL_MS while data waited. */
  private checkStall(): void {
    const left = this.progressAt + PIPE_STALL_MS - Date.now();
    if (left > 0) {
      this.stallTimer = setTimeout(() => this.checkStall(), left);
      this.stallTimer.unref();
      return;
    }
    this.stallTimer = null;
    this.fail(
      `write pipe 0x${this.id.toString(16)}: its reader took nothing for ${PIPE_STALL_MS / 1000} s; the rest (${this.outbox.bytes} bytes) is dropped`,
    );
  }

  private stopStallTimer(): void {
    if (this.stallTimer) clearTimeout(this.stallTimer);
    this.stallTimer = null;
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
    this.stopStallTimer();
    const hadBacklog = !this.outbox.empty;
    this.outbox.clear();
    this.ledger.close(this.fd);
    this.onClosed(this);
    if (hadBacklog) this.onDrained();
  }

  private fail(message: string): void {
    this.note(message);
    this.broken = true;
    this.stopStallTimer();
    const hadBacklog = !this.outbox.empty;
    this.outbox.clear();
    this.poller?.update(0);
    if (this.closeWhenDrained) this.close();
    else if (hadBacklog) this.onDrained();
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
    const before = this.outbox.bytes;
    try {
      const drained = this.outbox.flush((buf, s, e) => native.writeFd(this.fd, buf, s, e));
      if (this.outbox.bytes < before) this.progressAt = Date.now();
      if (!drained) return;
    } catch (e) {
      return this.fail(`write pipe 0x${this.id.toString(16)}: ${(e as Error).message}`);
    }
    this.stopStallTimer();
    this.poller?.update(0);
    this.onDrained();
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

// The two ends of a clipboard transfer the window manager holds itself: a pipe it reads (data a
// Wayland source writes) and one it writes (data for a Wayland reader). Both are nonblocking and
// polled, so a peer that is slow or never reads holds up only its own transfer.
import * as native from '../native/index.js';
import { closeQuietly } from '../wire/fd-queue.js';

const READ_SIZE = 64 * 1024;

/** Reads a pipe until end of file, handing each chunk on; pause() stops reading for a while. */
export class PipeReader {
  private readonly poller: native.Poller;
  private closed = false;

  constructor(
    private readonly fd: number,
    private readonly onData: (chunk: Buffer) => void,
    /** End of file (`failed` false) or a read error; the fd is closed by then. */
    private readonly onEnd: (failed: boolean) => void,
  ) {
    this.poller = new native.Poller(fd, () => this.readable());
    this.poller.update(native.READABLE);
  }

  pause(): void {
    if (!this.closed) this.poller.update(0);
  }

  resume(): void {
    if (!this.closed) this.poller.update(native.READABLE);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.poller.close();
    closeQuietly(this.fd);
  }

  private readable(): void {
    if (this.closed) return;
    const buf = Buffer.allocUnsafe(READ_SIZE);
    let n: number;
    try {
      n = native.readFd(this.fd, buf, 0, buf.length);
    } catch {
      this.close();
      this.onEnd(true);
      return;
    }
    if (n < 0) return;
    if (n === 0) {
      this.close();
      this.onEnd(false);
      return;
    }
    this.onData(buf.subarray(0, n));
  }
}

/** Writes into a pipe in order, queueing what the reader has not taken yet. */
export class PipeWriter {
  private readonly queue: Buffer[] = [];
  private queuedBytes = 0;
  private poller: native.Poller | null = null;
  private ending = false;
  private closed = false;

  constructor(
    private readonly fd: number,
    /** Everything queued was written (only called after a write had to wait). */
    private readonly onDrained: () => void,
    /** The reader went away (EPIPE); the fd is closed by then. */
    private readonly onGone: () => void,
  ) {}

  /** Bytes waiting for the reader. */
  get queued(): number {
    return this.queuedBytes;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  write(data: Buffer): void {
    if (this.closed || this.ending || data.length === 0) return;
    this.queue.push(data);
    this.queuedBytes += data.length;
    this.flush();
  }

  /** Closes the pipe once everything queued is written. */
  end(): void {
    this.ending = true;
    if (this.queue.length === 0) this.close();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.queue.length = 0;
    this.queuedBytes = 0;
    this.poller?.close();
    closeQuietly(this.fd);
  }

  /** Writes what the pipe takes now; false when the reader is gone. */
  private flush(): boolean {
    try {
      while (this.queue.length > 0) {
        const b = this.queue[0];
        const n = native.writeFd(this.fd, b, 0, b.length);
        if (n < 0) break;
        this.queuedBytes -= n;
        if (n === b.length) this.queue.shift();
        else this.queue[0] = b.subarray(n);
      }
    } catch {
      this.close();
      this.onGone();
      return false;
    }
    if (this.queue.length > 0) {
      this.poller ??= new native.Poller(this.fd, () => this.writable());
      this.poller.update(native.WRITABLE);
    } else {
      this.poller?.update(0);
      if (this.ending) this.close();
    }
    return true;
  }

  private writable(): void {
    if (this.closed) return;
    if (this.flush() && this.queue.length === 0) this.onDrained();
  }
}

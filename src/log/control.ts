import { closeSync, constants, lstatSync, openSync, readSync, unlinkSync } from 'node:fs';
import * as native from '../native/index.js';

/**
 * A FIFO that takes one command per line (`echo dump-log > $XDG_RUNTIME_DIR/wayland-1-ctl`).
 * It is held open for reading and writing so that a writer closing it never looks like EOF.
 */
export class ControlPipe {
  private fd = -1;
  private poller: native.Poller | null = null;
  private pending = '';
  private readonly buf = Buffer.alloc(1024);

  constructor(
    readonly path: string,
    private readonly onCommand: (command: string) => void,
  ) {}

  open(): void {
    removeStaleFifo(this.path);
    native.mkfifo(this.path, 0o600);
    this.fd = openSync(this.path, constants.O_RDWR | constants.O_NONBLOCK);
    this.poller = new native.Poller(this.fd, () => this.readCommands());
    this.poller.update(native.READABLE);
  }

  close(): void {
    if (this.fd < 0) return;
    this.poller?.close();
    closeSync(this.fd);
    this.fd = -1;
    try {
      unlinkSync(this.path);
    } catch {
      // already removed
    }
  }

  private readCommands(): void {
    for (;;) {
      let n: number;
      try {
        n = readSync(this.fd, this.buf, 0, this.buf.length, null);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'EAGAIN') break;
        throw e;
      }
      if (n <= 0) break;
      this.pending += this.buf.toString('utf8', 0, n);
    }
    const lines = this.pending.split('\n');
    this.pending = lines.pop() ?? '';
    if (this.pending.length > 4096) this.pending = ''; // a line that never ends is no command
    for (const line of lines) {
      const command = line.trim();
      if (command) this.onCommand(command);
    }
  }
}

/** A FIFO left by a proxy that died is replaced; anything else at that path is not ours to remove. */
function removeStaleFifo(path: string): void {
  let isFifo: boolean;
  try {
    isFifo = lstatSync(path).isFIFO();
  } catch {
    return;
  }
  if (!isFifo) throw new Error(`${path} exists and is not a FIFO`);
  unlinkSync(path);
}

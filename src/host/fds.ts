import { closeQuietly, reopen } from '../wire/fd-queue.js';

export { closeQuietly, reopen };

/** A second fd for a memory file: read/write when the original allows writing, else read-only. */
export function dupMemory(fd: number, writable: boolean): number {
  if (writable) {
    try {
      return reopen(fd, 'readwrite');
    } catch {
      // sealed or opened read-only by its creator: fall back to read access
    }
  }
  return reopen(fd, 'read');
}

/**
 * The fds one guest holds in the host process, counted against a budget so that one guest cannot
 * exhaust the process's fd table for the others. Every fd the device keeps goes through take()
 * and leaves through close().
 */
export class FdLedger {
  private count = 0;

  constructor(
    readonly budget: number,
    /** fds held for the guest outside the ledger: in flight between it and the compositor. */
    private readonly inFlight: () => number = () => 0,
  ) {}

  /** fds held for the guest, in the ledger and in flight. */
  get open(): number {
    return this.count + this.inFlight();
  }

  /** Whether `n` more fds fit in the budget. */
  hasRoom(n = 1): boolean {
    return this.count + this.inFlight() + n <= this.budget;
  }

  /** Counts `fd` as held; when the budget is spent, closes it and throws. */
  take(fd: number): number {
    if (this.count >= this.budget) {
      closeQuietly(fd);
      throw new Error(`the guest holds ${this.count} fds, its limit`);
    }
    this.count++;
    return fd;
  }

  /** Stops counting `fd`, which now belongs to someone else (sent with a reply). */
  untake(fd: number): void {
    if (fd >= 0) this.count--;
  }

  close(fd: number): void {
    if (fd < 0) return;
    this.count--;
    closeQuietly(fd);
  }
}

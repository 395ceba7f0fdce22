import { constants, openSync } from 'node:fs';
import * as native from '../native/index.js';

/**
 * fds received from a peer and not yet claimed by a message, in arrival order.
 * A fixed ring: a peer that sends more fds than its messages use runs out of room
 * and is treated as malformed (libwayland keeps at most 1024 in its fd buffer too).
 */
export class FdQueue {
  private readonly ring: Int32Array;
  private head = 0;
  length = 0;

  constructor(readonly capacity = 1024) {
    this.ring = new Int32Array(capacity);
  }

  /** Returns false when the queue is full; the caller still owns fd then. */
  push(fd: number): boolean {
    if (this.length === this.capacity) return false;
    this.ring[(this.head + this.length) % this.capacity] = fd;
    this.length++;
    return true;
  }

  /** Moves the next n fds into out[0..n); the caller must have checked length >= n. */
  take(n: number, out: Int32Array): void {
    for (let i = 0; i < n; i++) {
      out[i] = this.ring[this.head];
      this.head = (this.head + 1) % this.capacity;
    }
    this.length -= n;
  }

  closeAll(): void {
    while (this.length > 0) {
      closeQuietly(this.ring[this.head]);
      this.head = (this.head + 1) % this.capacity;
      this.length--;
    }
  }
}

export function closeQuietly(fd: number): void {
  try {
    native.close(fd);
  } catch {
    // already closed: nothing left to release
  }
}

/**
 * A new open file description for the file `fd` refers to, through /proc/self/fd (close-on-exec;
 * O_NONBLOCK only if asked). Unlike dup(2) the new fd has its own status flags: how a pipe end a
 * client gave us is made nonblocking for us without changing it for the client, and how one we
 * hand to a client is made blocking for it. Works for memfds, files and pipes, not sockets.
 */
export function reopen(
  fd: number,
  access: 'read' | 'write' | 'readwrite',
  nonblock = false,
): number {
  const mode =
    access === 'read'
      ? constants.O_RDONLY
      : access === 'write'
        ? constants.O_WRONLY
        : constants.O_RDWR;
  return openSync(`/proc/self/fd/${fd}`, mode | (nonblock ? constants.O_NONBLOCK : 0));
}

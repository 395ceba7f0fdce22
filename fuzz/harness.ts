// What every fuzz target shares: the target shape the runner drives, in-memory Endpoints that a
// target feeds bytes and fds into, and the fds a peer can send, made from a description so that
// an input stays plain data (printable, storable in a corpus, shrinkable).
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Arbitrary } from 'fast-check';
import { HostWayland } from '../src/host/wayland.js';
import * as native from '../src/native/index.js';
import type { Endpoint, EndpointHandler } from '../src/wire/connection.js';
import { MAX_MESSAGE_SIZE } from '../src/wire/connection.js';
import { FdQueue, closeQuietly } from '../src/wire/fd-queue.js';
import { MessageWriter } from '../src/wire/writer.js';

export interface FuzzTarget<T> {
  readonly name: string;
  /** What it reaches, for the runner's listing and the README. */
  readonly description: string;
  /** Its corpus: the JSON files of fuzz/corpus/<corpusDir>/ (none when absent). */
  readonly corpusDir?: string;
  /** Inputs: structured from the protocol, and mutated from the corpus given. */
  arbitrary(corpus: readonly unknown[]): Arbitrary<T>;
  /** The corpus as it is, run before anything generated. */
  seeds?(corpus: readonly unknown[]): T[];
  /** Opens what every execution shares (before the fds are first counted). */
  setup?(): void;
  /** Inputs that wait for the event loop (fds polled, timers) return a promise. */
  readonly async?: boolean;
  /**
   * Runs one input. Throws (or rejects) on a fault: an exception that escaped the code under
   * test, a broken invariant. Must leave no fd of its own open (the runner counts them).
   */
  run(input: T): void | Promise<void>;
}

/** An fd a peer sends, described. */
export type FdSpec =
  | { readonly kind: 'memfd'; readonly size: number }
  | { readonly kind: 'pipe-read' }
  | { readonly kind: 'pipe-write' }
  | { readonly kind: 'socket' };

/** Opens the fd a spec describes; the other end of a pipe or socket goes into `extra` (the caller closes it). */
export function openFd(spec: FdSpec, extra: number[]): number {
  switch (spec.kind) {
    case 'memfd':
      return native.memfdCreate('fuzz', spec.size);
    case 'pipe-read': {
      const [r, w] = native.pipe();
      extra.push(w);
      return r;
    }
    case 'pipe-write': {
      const [r, w] = native.pipe();
      extra.push(r);
      return w;
    }
    case 'socket': {
      const [a, b] = native.socketpair();
      extra.push(b);
      return a;
    }
  }
}

/**
 * One side of a relay in memory: `deliver` is a socket read (bytes and fds arrive, the handler is
 * told), `flush` is a peer that takes everything at once. What was sent is checked to be framed
 * Wayland (a relay must never pass on a malformed message).
 */
export class MemoryEndpoint implements Endpoint {
  readonly in = Buffer.alloc(65536);
  readonly inView = new DataView(this.in.buffer, this.in.byteOffset, this.in.byteLength);
  inStart = 0;
  inEnd = 0;
  readonly inFds = new FdQueue();
  fdsTruncated = false;
  readonly out = new MessageWriter(16384);
  closed = false;
  congested = false;
  bytesIn = 0;
  fdsIn = 0;
  readonly label = -1;
  reading = true;
  /** Messages sent whose header was malformed: a relay fault. */
  malformed: string | null = null;
  /** The last message sent, for oracles (wl_display.error to the client). */
  lastSent: Buffer | null = null;

  constructor(readonly handler: EndpointHandler) {}

  consume(n: number): void {
    this.inStart += n;
  }

  setReading(on: boolean): void {
    this.reading = on;
  }

  flush(): void {
    if (this.closed) return;
    const out = this.out;
    let pos = out.head;
    while (pos + 8 <= out.len) {
      const size = out.view.getUint32(pos + 4, true) >>> 16;
      if (size < 8 || size % 4 !== 0 || size > MAX_MESSAGE_SIZE || pos + size > out.len) {
        this.malformed ??= `a message of size ${size} at ${pos - out.head}`;
        break;
      }
      this.lastSent = out.buf.subarray(pos, pos + size);
      pos += size;
    }
    if (pos !== out.len) this.malformed ??= 'a partial message';
    this.lastSent = this.lastSent && Buffer.from(this.lastSent);
    for (const fd of out.fds) closeQuietly(fd);
    out.fds.length = 0;
    out.sent(out.pending);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.inFds.closeAll();
    for (const fd of this.out.fds) closeQuietly(fd);
    this.out.fds.length = 0;
  }

  /** Bytes and fds arrive, as one recvmsg (what does not fit waits, as in a socket: dropped here). */
  deliver(bytes: Uint8Array, fds: readonly number[]): void {
    if (this.closed) {
      for (const fd of fds) closeQuietly(fd);
      return;
    }
    if (this.inStart > 0) {
      this.in.copy(this.in, 0, this.inStart, this.inEnd);
      this.inEnd -= this.inStart;
      this.inStart = 0;
    }
    const n = Math.min(bytes.length, this.in.length - this.inEnd);
    this.in.set(bytes.subarray(0, n), this.inEnd);
    this.inEnd += n;
    this.bytesIn += n;
    for (const fd of fds) {
      this.fdsIn++;
      if (!this.inFds.push(fd)) {
        closeQuietly(fd);
        this.fdsTruncated = true;
      }
    }
    if (this.reading && (this.inEnd > this.inStart || this.inFds.length > 0)) this.handler.onData();
  }

  /** The peer hung up. */
  hangUp(): void {
    if (this.closed) return;
    this.close();
    this.handler.onClose(null);
  }

  /** The peer catches up after being slow. */
  drain(): void {
    if (this.closed) return;
    this.congested = false;
    this.handler.onDrain?.();
  }
}

/**
 * The warnings of the code under test. One that reports an internal error (an exception the code
 * caught from itself, a bug however well contained) is a fault; FUZZ_DEBUG=1 prints them all,
 * which shows how deep a target's inputs get.
 */
export class Warnings {
  internal: string | null = null;
  readonly warn = (message: string): void => {
    if (process.env.FUZZ_DEBUG) console.error(`warning: ${message.slice(0, 120)}`);
    if (message.includes('internal error')) this.internal ??= message;
  };

  /** A device log that keeps quiet and reports its warnings here. */
  readonly log = { verbose: false, info: (): void => {}, warn: this.warn };

  /** Throws when an internal error was reported. */
  check(where: string): void {
    if (this.internal) throw new Error(`an exception inside ${where}: ${this.internal}`);
  }
}

/** tswl-host's compositor as socketpairs: each connection's far end goes to `peers`. */
export function socketpairWayland(peers: number[]): HostWayland {
  return new HostWayland({
    socket: '/nonexistent',
    access: () => ({
      connect() {
        const [a, b] = native.socketpair();
        peers.push(b);
        return a;
      },
      close() {},
    }),
  });
}

/** Values at the edges, where size and offset arithmetic goes wrong. */
export const EDGE_U32 = [
  0, 1, 2, 3, 4, 7, 8, 0xff, 0x100, 0xfff, 0x1000, 0x1001, 0x7fff, 0x8000, 0xffff, 0x10000,
  0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff, 0xff000000, 0xff000001,
] as const;

/** An input as JSON: byte arrays as `{ "$bytes": base64 }`. */
export function inputToJson(value: unknown): string {
  return JSON.stringify(
    value,
    (_k, v) => (v instanceof Uint8Array ? { $bytes: Buffer.from(v).toString('base64') } : v),
    1,
  );
}

export function inputFromJson(text: string): unknown {
  return JSON.parse(text, (_k, v) =>
    v && typeof v === 'object' && typeof v.$bytes === 'string'
      ? new Uint8Array(Buffer.from(v.$bytes, 'base64'))
      : v,
  );
}

/** The JSON files of `root/dir`, parsed, in name order ([] when there are none). */
export function loadCorpus(root: string, dir: string | undefined): unknown[] {
  if (!dir) return [];
  let files: string[];
  try {
    files = readdirSync(join(root, dir))
      .filter((f) => f.endsWith('.json'))
      .sort();
  } catch {
    return [];
  }
  return files.map((f) => JSON.parse(readFileSync(join(root, dir, f), 'utf8')));
}

// One split virtqueue as the device side sees it (virtio 1.x, 2.7): it takes descriptor chains
// from the available ring and returns them on the used ring. The rings and every buffer live in
// guest RAM, written by an untrusted guest: every index, length and address is checked, a chain
// may not be longer than the queue (no loops), and a broken queue stops (that guest's device
// then stalls; the host and other guests do not notice).

import type { GuestRam, Span } from './guest-ram.js';
import {
  AVAIL_NO_INTERRUPT,
  DESC_SIZE,
  DescFlag,
  MAX_QUEUE_SIZE,
  USED_ELEM_SIZE,
} from './vhost-user-protocol.js';

/** Most readable bytes one chain may carry (a command); larger chains are refused. */
export const MAX_CHAIN_READ = 16 << 20;

/** A chain taken from the available ring, to be answered through `complete` exactly once. */
export interface Chain {
  readonly head: number;
  /** The readable (driver → device) bytes, gathered. Valid until the next `pop`. */
  readonly readable: Uint8Array;
  /** The writable (device → driver) buffers, in order. */
  readonly writable: readonly Span[];
}

export interface RingAddresses {
  readonly desc: bigint;
  readonly avail: bigint;
  readonly used: bigint;
}

export class Virtqueue {
  private desc: Buffer;
  private avail: Buffer;
  private used: Buffer;
  /** Next available-ring entry to take (the vring base). */
  lastAvail: number;
  private usedIdx: number;
  /** Set when the guest broke the queue; no more chains are taken. */
  broken: string | null = null;
  private scratch = Buffer.allocUnsafe(4096);

  constructor(
    private readonly ram: GuestRam,
    readonly num: number,
    base: number,
    addrs: RingAddresses,
    userAddresses: boolean,
  ) {
    if (num === 0 || num > MAX_QUEUE_SIZE || (num & (num - 1)) !== 0) {
      throw new Error(`a queue of ${num} entries (a power of two up to ${MAX_QUEUE_SIZE})`);
    }
    const view = (a: bigint, n: number, what: string): Buffer =>
      userAddresses ? ram.userView(a, n, what) : ram.view(a, n, what);
    this.desc = view(addrs.desc, DESC_SIZE * num, 'the descriptor table');
    this.avail = view(addrs.avail, 6 + 2 * num, 'the available ring');
    this.used = view(addrs.used, 6 + USED_ELEM_SIZE * num, 'the used ring');
    this.lastAvail = base & 0xffff;
    // The used index continues from what the ring says (a restarted queue keeps its state).
    this.usedIdx = this.used.readUInt16LE(2);
  }

  /** Whether the guest asked for no interrupts (VRING_AVAIL_F_NO_INTERRUPT). */
  get interruptsSuppressed(): boolean {
    return this.avail.length > 0 && (this.avail.readUInt16LE(0) & AVAIL_NO_INTERRUPT) !== 0;
  }

  /**
   * The next chain, or null when the available ring is empty. A malformed chain throws (with the
   * reason) after consuming its entry: the caller answers it with `complete(head, 0)` via
   * `error.head`, and goes on. A malformed ring sets `broken` and returns null from then on.
   */
  pop(): Chain | null {
    if (this.broken) return null;
    // a region removed (REM_MEM_REG) or replaced under the queue leaves its views empty
    if (this.avail.length === 0 || this.desc.length === 0 || this.used.length === 0) {
      this.broken = 'guest memory is gone';
      return null;
    }
    const availIdx = this.avail.readUInt16LE(2);
    if (availIdx === this.lastAvail) return null;
    if (((availIdx - this.lastAvail) & 0xffff) > this.num) {
      this.broken = `the available index moved ${(availIdx - this.lastAvail) & 0xffff} entries past a ${this.num}-entry queue`;
      return null;
    }
    const head = this.avail.readUInt16LE(4 + 2 * (this.lastAvail % this.num));
    this.lastAvail = (this.lastAvail + 1) & 0xffff;
    if (head >= this.num) {
      this.broken = `descriptor head ${head} is outside the ${this.num}-entry table`;
      return null;
    }
    return this.walk(head);
  }

  private walk(head: number): Chain {
    const writable: Span[] = [];
    let readLength = 0;
    let i = head;
    for (let count = 0; ; count++) {
      if (count >= this.num) throw new ChainError(head, 'the descriptor chain loops');
      const d = i * DESC_SIZE;
      const addr = this.desc.readBigUInt64LE(d);
      const len = this.desc.readUInt32LE(d + 8);
      const flags = this.desc.readUInt16LE(d + 12);
      const next = this.desc.readUInt16LE(d + 14);
      if (flags & DescFlag.INDIRECT) {
        throw new ChainError(head, 'an indirect descriptor (not negotiated)');
      }
      if (flags & DescFlag.WRITE) {
        writable.push(...this.spansOf(head, addr, len, i));
      } else {
        if (writable.length > 0) {
          throw new ChainError(head, 'a readable descriptor after a writable one');
        }
        if (readLength + len > MAX_CHAIN_READ) {
          throw new ChainError(head, `a command over ${MAX_CHAIN_READ} bytes`);
        }
        const spans = this.spansOf(head, addr, len, i);
        if (this.scratch.length < readLength + len) {
          const bigger = Buffer.allocUnsafe(Math.max(readLength + len, this.scratch.length * 2));
          this.scratch.copy(bigger, 0, 0, readLength);
          this.scratch = bigger;
        }
        for (const s of spans) {
          s.buf.copy(this.scratch, readLength, s.offset, s.offset + s.length);
          readLength += s.length;
        }
      }
      if (!(flags & DescFlag.NEXT)) break;
      if (next >= this.num)
        throw new ChainError(head, `next descriptor ${next} is outside the table`);
      i = next;
    }
    return { head, readable: this.scratch.subarray(0, readLength), writable };
  }

  private spansOf(head: number, addr: bigint, len: number, i: number): Span[] {
    try {
      return this.ram.spans(addr, len, `descriptor ${i}`);
    } catch (e) {
      throw new ChainError(head, (e as Error).message);
    }
  }

  /** Copies `data` into a chain's writable buffers; returns the bytes that fit. */
  static fill(chain: Chain, data: Uint8Array): number {
    let done = 0;
    for (const s of chain.writable) {
      if (done >= data.length) break;
      const n = Math.min(s.length, data.length - done);
      if (s.buf.length < s.offset + n) break; // guest memory unmapped since
      s.buf.set(data.subarray(done, done + n), s.offset);
      done += n;
    }
    return done;
  }

  /** Returns chain `head` to the guest with `written` bytes in its writable buffers. */
  complete(head: number, written: number): void {
    if (this.used.length === 0) return;
    const e = 4 + USED_ELEM_SIZE * (this.usedIdx % this.num);
    this.used.writeUInt32LE(head, e);
    this.used.writeUInt32LE(written, e + 4);
    // The element is in place before the index moves (x86 stores are not reordered; elsewhere
    // V8 emits these in program order, and the guest reads them after the interrupt).
    this.usedIdx = (this.usedIdx + 1) & 0xffff;
    this.used.writeUInt16LE(this.usedIdx, 2);
  }
}

/** A chain the guest got wrong: `head` is to be returned with nothing written. */
export class ChainError extends Error {
  constructor(
    readonly head: number,
    message: string,
  ) {
    super(message);
  }
}

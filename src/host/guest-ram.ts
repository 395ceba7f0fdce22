// Guest RAM as a vhost-user front-end shares it: regions of memfds (ADD_MEM_REG or SET_MEM_TABLE),
// each mapped once into this process. Guest physical addresses (descriptors, blob mem entries)
// and the front-end's own user addresses (SET_VRING_ADDR) are both translated here, always with
// bounds checks: the guest writes descriptors, and nothing in them is trusted.

import * as native from '../native/index.js';
import { type FdLedger } from './fds.js';
import type { GuestBacking, GuestMemory, MemEntry } from './guest-memory.js';

export interface RegionSpec {
  readonly guestPhysAddr: bigint;
  readonly size: bigint;
  readonly userAddr: bigint;
  readonly mmapOffset: bigint;
}

interface Region extends RegionSpec {
  map: Buffer;
}

/** A contiguous piece of guest memory in this process. */
export interface Span {
  readonly buf: Buffer;
  readonly offset: number;
  readonly length: number;
}

/** Largest region mapped (a Buffer's limit in Node 20). */
const MAX_REGION_SIZE = 2n ** 32n;

export class GuestRam implements GuestMemory {
  private regions: Region[] = [];

  get regionCount(): number {
    return this.regions.length;
  }

  /** Maps `fd` (which stays the caller's to close) as one more region. Throws with the reason. */
  add(spec: RegionSpec, fd: number): void {
    if (spec.size === 0n || spec.size > MAX_REGION_SIZE) {
      throw new Error(`a memory region of ${spec.size} bytes (at most ${MAX_REGION_SIZE})`);
    }
    if (spec.mmapOffset % 4096n !== 0n) {
      throw new Error(`a memory region at mmap offset ${spec.mmapOffset}, not page-aligned`);
    }
    for (const r of this.regions) {
      if (
        spec.guestPhysAddr < r.guestPhysAddr + r.size &&
        r.guestPhysAddr < spec.guestPhysAddr + spec.size
      ) {
        throw new Error(`memory region at 0x${spec.guestPhysAddr.toString(16)} overlaps another`);
      }
    }
    const map = native.mmap(fd, Number(spec.mmapOffset), Number(spec.size), true);
    this.regions.push({ ...spec, map });
  }

  /** Unmaps the region at `guestPhysAddr` of `size` bytes; false when there is none. */
  remove(guestPhysAddr: bigint, size: bigint): boolean {
    const i = this.regions.findIndex((r) => r.guestPhysAddr === guestPhysAddr && r.size === size);
    if (i < 0) return false;
    native.munmap(this.regions[i].map);
    this.regions.splice(i, 1);
    return true;
  }

  /** Unmaps every region (buffers handed out before read as empty afterwards). */
  clear(): void {
    for (const r of this.regions) native.munmap(r.map);
    this.regions = [];
  }

  /**
   * The spans holding guest-physical [addr, addr + length), in order; throws when any byte of it
   * is not guest RAM. A range may cross from one region into an adjacent one.
   */
  spans(addr: bigint, length: number, what: string): Span[] {
    const out: Span[] = [];
    let a = addr;
    let left = length;
    while (left > 0) {
      const r = this.regions.find((x) => a >= x.guestPhysAddr && a < x.guestPhysAddr + x.size);
      if (!r) {
        throw new Error(`${what} at 0x${a.toString(16)} (${left} bytes) is outside guest RAM`);
      }
      const offset = Number(a - r.guestPhysAddr);
      const n = Math.min(left, r.map.length - offset);
      out.push({ buf: r.map, offset, length: n });
      a += BigInt(n);
      left -= n;
    }
    return out;
  }

  /** A view of guest-physical [addr, addr + length), which must lie in one region. */
  view(addr: bigint, length: number, what: string): Buffer {
    const s = this.spans(addr, length, what);
    if (s.length !== 1) throw new Error(`${what} at 0x${addr.toString(16)} crosses memory regions`);
    return s[0].buf.subarray(s[0].offset, s[0].offset + length);
  }

  /** A view of the front-end's user address range [uaddr, uaddr + length) (vring addresses). */
  userView(uaddr: bigint, length: number, what: string): Buffer {
    for (const r of this.regions) {
      if (uaddr >= r.userAddr && uaddr + BigInt(length) <= r.userAddr + r.size) {
        const offset = Number(uaddr - r.userAddr);
        return r.map.subarray(offset, offset + length);
      }
    }
    throw new Error(`${what} at user address 0x${uaddr.toString(16)} is outside guest RAM`);
  }

  /** GuestMemory: a GUEST blob's mem entries (guest physical addresses). */
  resolve(entries: readonly MemEntry[], _ledger: FdLedger): GuestBacking {
    const spans = entries.map((e, i) => {
      if (e.length === 0) throw new Error(`mem entry ${i} is empty`);
      return this.spans(e.addr, e.length, `mem entry ${i}`);
    });
    return new RamBacking(spans);
  }
}

/** A GUEST blob's backing in guest RAM: the host writes through the regions' mappings. */
class RamBacking implements GuestBacking {
  readonly entryLengths: number[];

  constructor(private spans: Span[][] | null) {
    this.entryLengths = spans!.map((s) => s.reduce((n, x) => n + x.length, 0));
  }

  write(entry: number, offset: number, src: Uint8Array, start: number, end: number): void {
    if (!this.spans) throw new Error('the blob is gone');
    for (const s of this.spans[entry]) {
      if (start >= end) break;
      if (offset >= s.length) {
        offset -= s.length;
        continue;
      }
      const n = Math.min(end - start, s.length - offset);
      // A region removed since (REM_MEM_REG) is unmapped and its Buffer detached.
      if (s.buf.length < s.offset + offset + n) throw new Error('the guest memory is gone');
      s.buf.set(src.subarray(start, start + n), s.offset + offset);
      start += n;
      offset = 0;
    }
  }

  release(): void {
    this.spans = null;
  }
}

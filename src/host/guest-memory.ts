// How the device reaches guest memory: the backing of GUEST blobs (the cross-domain rings).
// The transport provides it: the local link resolves the memfd that came with the command; a
// vhost-user backend resolves guest physical addresses through the VMM's memory table.

import type { FdLedger } from './fds.js';

/** One virtio_gpu_mem_entry of RESOURCE_CREATE_BLOB. */
export interface MemEntry {
  readonly addr: bigint;
  readonly length: number;
}

/** The host's handle on a GUEST blob's memory. The device only ever writes into it. */
export interface GuestBacking {
  /** Byte lengths of the backing entries, in order (entry 0 is a ring's mailbox). */
  readonly entryLengths: readonly number[];
  /**
   * Copies src[start, end) into backing entry `entry` at `offset`. The caller keeps the write
   * within entryLengths[entry]. Throws (with the reason) when the memory cannot be written; the
   * host process must survive whatever the guest did to that memory.
   */
  write(entry: number, offset: number, src: Uint8Array, start: number, end: number): void;
  /** Lets go of the memory (unmaps, closes); idempotent. */
  release(): void;
}

export interface GuestMemory {
  /**
   * The memory that `entries` describe, for a GUEST blob being created. fds the backing keeps
   * are counted in `ledger`. Throws an Error whose message says what is wrong with the entries.
   */
  resolve(entries: readonly MemEntry[], ledger: FdLedger): GuestBacking;
}

/** For transports (or commands) that carry no guest memory: every GUEST blob is refused. */
export const noGuestMemory: GuestMemory = {
  resolve() {
    throw new Error('no guest memory came with the command');
  },
};

import type { ArgReader } from '../wire/reader.js';
import type { Interface } from '../protocol/tables.js';

export const SERVER_ID_START = 0xff000000;

/** A Wayland object as both peers see it: its id on the client's socket and on the host's. */
export class WlObject {
  /** The client destroyed it; its ids stay reserved until the host confirms with delete_id. */
  dying = false;
  /** Per-interface state kept by a special handler (a registry's advertised globals, …). */
  state: unknown = undefined;
  /**
   * Set for a host object the proxy made for itself (clientId 0): it takes the object's events,
   * with the fds it does not read closed afterwards; nothing of them reaches the client.
   */
  owner: ((opcode: number, args: ArgReader) => void) | null = null;

  constructor(
    public clientId: number,
    public hostId: number,
    readonly iface: Interface,
    readonly version: number,
  ) {}

  /** Created by the host (a new_id in an event) rather than by the client. */
  get serverCreated(): boolean {
    return this.hostId >= SERVER_ID_START;
  }
}

/**
 * One side's id space: dense arrays indexed by id, one for client-allocated ids and one
 * for server-allocated ids (counted from 0xff000000), as libwayland's wl_map does.
 */
export class IdSpace {
  private readonly low: (WlObject | undefined)[] = [undefined];
  private readonly high: (WlObject | undefined)[] = [];
  private readonly freeLow: number[] = [];
  private readonly freeHigh: number[] = [];

  get(id: number): WlObject | undefined {
    return id < SERVER_ID_START ? this.low[id] : this.high[id - SERVER_ID_START];
  }

  /**
   * Whether a peer may create an object with this id: the next id in sequence, or one
   * that was freed, in the range the peer allocates from (libwayland's rule).
   */
  canInsert(id: number, serverRange: boolean): boolean {
    if (serverRange !== id >= SERVER_ID_START) return false;
    if (id === 0) return false;
    const arr = serverRange ? this.high : this.low;
    const index = serverRange ? id - SERVER_ID_START : id;
    return index <= arr.length && arr[index] === undefined;
  }

  set(id: number, obj: WlObject): void {
    if (id < SERVER_ID_START) this.low[id] = obj;
    else this.high[id - SERVER_ID_START] = obj;
  }

  /** Allocates an unused id in one range, reusing freed ids first. */
  allocate(serverRange: boolean): number {
    if (serverRange) {
      const id = this.freeHigh.pop();
      if (id !== undefined) return id;
      this.high.push(undefined);
      return SERVER_ID_START + this.high.length - 1;
    }
    const id = this.freeLow.pop();
    if (id !== undefined) return id;
    this.low.push(undefined);
    return this.low.length - 1;
  }

  /** Frees an id the proxy allocated, so allocate() may hand it out again. */
  release(id: number): void {
    this.remove(id);
    if (id < SERVER_ID_START) this.freeLow.push(id);
    else this.freeHigh.push(id);
  }

  /** Forgets an id the peer allocated; the peer decides when to reuse it. */
  remove(id: number): void {
    if (id < SERVER_ID_START) this.low[id] = undefined;
    else this.high[id - SERVER_ID_START] = undefined;
  }

  *objects(): IterableIterator<WlObject> {
    for (const o of this.low) if (o) yield o;
    for (const o of this.high) if (o) yield o;
  }

  get size(): number {
    let n = 0;
    for (const o of this.low) if (o) n++;
    for (const o of this.high) if (o) n++;
    return n;
  }
}

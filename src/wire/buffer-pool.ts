/**
 * Spare buffers of the sizes every connection takes, so that clients coming and going reuse
 * them. Without it each ended connection leaves its buffers (some 100 KiB in host mode, several
 * hundred across the cross-domain path) in malloc's heap until a full collection finds them, and
 * a process serving short-lived clients settles tens of MiB above its start.
 */
const MAX_SPARES_PER_SIZE = 16;
const spares = new Map<number, Buffer[]>();

/** What a released owner's fields point at: any later use fails loudly instead of sharing. */
export const RELEASED = Buffer.alloc(0);
export const RELEASED_VIEW = new DataView(RELEASED.buffer, RELEASED.byteOffset, 0);

export function takeBuffer(size: number): Buffer {
  let list = spares.get(size);
  if (!list) spares.set(size, (list = []));
  return list.pop() ?? Buffer.allocUnsafe(size);
}

/**
 * Takes `buf` back once the code running now has finished with it (a relay may still be parsing
 * the input of a connection that its own error just closed). Only sizes that are taken are kept:
 * a buffer that grew in a flood goes to the collector.
 */
export function giveBack(buf: Buffer): void {
  const list = spares.get(buf.length);
  if (!list) return;
  queueMicrotask(() => {
    if (list.length < MAX_SPARES_PER_SIZE) list.push(buf);
  });
}

/** Lets the spares go, for a quiet moment: the next connections allocate their buffers anew. */
export function dropSpares(): void {
  for (const list of spares.values()) list.length = 0;
}

/** The input side of an endpoint, as the relay reads it. */
interface Input {
  in: Buffer;
  inView: DataView;
  inStart: number;
  inEnd: number;
}

/** An endpoint closed: its input buffer goes back, and its fields point at nothing. */
export function releaseInput(e: Input): void {
  giveBack(e.in);
  e.in = RELEASED;
  e.inView = RELEASED_VIEW;
  e.inStart = e.inEnd = 0;
}

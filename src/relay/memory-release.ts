// A Node process keeps the memory its busiest moment needed: V8 keeps heap pages it could give
// back, glibc the chunks its compiler threads freed, the buffer pool the spares of past clients.
// A client arriving (its setup's garbage) or leaving is when such a moment may be over, so once no
// relay of the process has pumped for a second after one opened or closed, that memory goes back
// to the system: once per quiet spell, since the collection takes a few milliseconds.
import * as native from '../native/index.js';
import { dropSpares } from '../wire/buffer-pool.js';

const QUIET_MS = 1000;

/** Counted by every relay of the process, one per pump: how the release tells quiet from busy. */
export const relayActivity = { pumps: 0 };

let timer: NodeJS.Timeout | null = null;
let pumpsSeen = 0;

/** A relay opened or closed: release memory after the next second without a pump. */
export function releaseMemoryWhenQuiet(): void {
  if (timer) return;
  pumpsSeen = relayActivity.pumps;
  timer = setTimeout(releaseIfQuiet, QUIET_MS);
  timer.unref();
}

function releaseIfQuiet(): void {
  if (relayActivity.pumps !== pumpsSeen) {
    pumpsSeen = relayActivity.pumps;
    timer!.refresh();
    return;
  }
  timer = null;
  dropSpares();
  native.releaseMemory();
}

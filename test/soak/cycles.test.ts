// Connect/disconnect soak: many short clients in a row, a third of them hanging up in the middle
// of a message, through tswl-proxy in host mode and through the cross-domain path (a guest's
// tswl-proxy over tswl-host's local link). Afterwards every program is back at the fds it had
// before, and, once it had the quiet second after which it gives memory back, its RSS is at most
// 1.2 times what it was fresh, and at most 1.2 times what it was after a warm-up of as many
// clients (at least 2,000): a leak grows with the clients served, so twice the clients show it.
//   TSWL_SOAK_CYCLES=10000 npm run test:soak -- cycles
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import * as native from '../../src/native/index.js';
import { startHost } from '../support/cross-domain.js';
import { type Running, accepts, killAll, start, stop, waitFor } from '../support/processes.js';
import { proxyBin } from '../support/weston.js';
import { describeFds, openFds, rssKiB, soakRuntime, startWestonAt } from './support.js';

const CYCLES = Number(process.env.TSWL_SOAK_CYCLES ?? 300);
const WARM_UP = Math.max(2000, CYCLES);

/** Longer than the second without traffic after which the programs give memory back. */
const quiet = () => new Promise((r) => setTimeout(r, 2000));

/** get_registry, sync: 24 bytes. */
const REQUESTS = Buffer.from([
  1, 0, 0, 0, 1, 0, 12, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 12, 0, 3, 0, 0, 0,
]);
const recvBuf = Buffer.alloc(65536);
const recvOut = new Int32Array(native.RECV_OUT_LENGTH);

/**
 * One client: a full round trip (the sync's done arrives), or, every third one, half a message
 * and a hang-up. Returns false when the round trip ended in something else.
 */
function cycle(path: string, i: number): boolean {
  const fd = native.connectUnix(path);
  try {
    if (i % 3 === 2) {
      // get_registry whole, then 6 bytes of the sync: the proxy holds half a message
      native.sendmsg(fd, REQUESTS, 0, 18, [], 0);
      return true;
    }
    native.sendmsg(fd, REQUESTS, 0, REQUESTS.length, [], 0);
    let got = Buffer.alloc(0);
    for (;;) {
      if (!native.waitReadable(fd, 5000)) return false;
      const n = native.recvmsg(fd, recvBuf, 0, recvBuf.length, recvOut);
      for (let k = 0; k < recvOut[0]; k++) native.close(recvOut[2 + k]);
      if (n === 0) return false;
      if (n < 0) continue;
      got = Buffer.concat([got, recvBuf.subarray(0, n)]);
      for (let pos = 0; pos + 8 <= got.length;) {
        const id = got.readUInt32LE(pos);
        const word = got.readUInt32LE(pos + 4);
        if (id === 1 && (word & 0xffff) === 0) return false; // wl_display.error
        if (id === 3 && (word & 0xffff) === 0) return true; // wl_callback.done
        pos += word >>> 16 || 8;
      }
    }
  } finally {
    native.close(fd);
  }
}

describe(`${CYCLES} connect/disconnect cycles, a third hanging up mid-message`, () => {
  const { runtimeDir, env, compositor } = soakRuntime('tswl-soak-');
  let weston: Running;

  beforeAll(async () => {
    weston = await startWestonAt(runtimeDir);
  });

  afterAll(async () => {
    killAll();
    rmSync(runtimeDir, { recursive: true, force: true });
  });

  async function soak(path: string, programs: Record<string, Running>): Promise<void> {
    const pids = Object.entries(programs).map(([name, run]) => ({ name, pid: run.child.pid! }));
    const rssFresh = new Map(pids.map((p) => [p.pid, rssKiB(p.pid)]));
    for (let i = 0; i < WARM_UP; i++) expect(cycle(path, i)).toBe(true);
    const settled = async (what: string, baseline: Map<number, number>) =>
      waitFor(what, () => pids.every((p) => openFds(p.pid) === baseline.get(p.pid)), 10000).catch(
        () => {
          const now = pids.map(
            (p) =>
              `${p.name} ${openFds(p.pid)} (was ${baseline.get(p.pid)}): ${describeFds(p.pid)}`,
          );
          throw new Error(`fds not back at baseline: ${now.join(', ')}`);
        },
      );
    // the baseline: no client connected, after the warm-up grew whatever grows once and the
    // programs gave back what they no longer need (a second without traffic after a client left)
    await quiet();
    const fdsBefore = new Map(pids.map((p) => [p.pid, openFds(p.pid)]));
    const rssBefore = new Map(pids.map((p) => [p.pid, rssKiB(p.pid)]));
    const started = Date.now();
    let failed = 0;
    for (let i = 0; i < CYCLES; i++) if (!cycle(path, i)) failed++;
    const seconds = (Date.now() - started) / 1000;
    expect(failed).toBe(0);
    await settled('fds back at baseline', fdsBefore);
    await quiet();
    for (const p of pids) {
      const fresh = rssFresh.get(p.pid)!;
      const before = rssBefore.get(p.pid)!;
      const after = rssKiB(p.pid);
      const mib = (k: number) => (k / 1024).toFixed(1);
      console.log(
        `${p.name}: ${CYCLES} cycles in ${seconds.toFixed(1)} s; fds ${fdsBefore.get(p.pid)} -> ${openFds(p.pid)}; ` +
          `RSS ${mib(fresh)} MiB fresh, ${mib(before)} after ${WARM_UP} warm-up cycles, ` +
          `${mib(after)} after the ${CYCLES} (x${(after / before).toFixed(2)}, x${(after / fresh).toFixed(2)} fresh)`,
      );
      expect(after).toBeLessThanOrEqual(before * 1.2);
      expect(after).toBeLessThanOrEqual(fresh * 1.2);
    }
    for (const run of Object.values(programs)) expect(run.child.exitCode).toBeNull();
  }

  test('host mode: tswl-proxy', async () => {
    const proxy = start(
      proxyBin,
      ['--host-display', compositor, '--wayland-display', 'wayland-1'],
      env,
    );
    const path = join(runtimeDir, 'wayland-1');
    await waitFor('tswl-proxy to listen', () => accepts(path));
    await soak(path, { 'tswl-proxy (host mode)': proxy });
    await stop(proxy);
  });

  test('cross-domain: a guest tswl-proxy over tswl-host', async () => {
    const { run: host, path: gpu } = await startHost({ runtimeDir, env });
    const proxy = start(
      proxyBin,
      ['--virtio-gpu-device', gpu, '--wayland-display', 'wayland-2'],
      env,
    );
    const path = join(runtimeDir, 'wayland-2');
    await waitFor('tswl-proxy to listen', () => accepts(path));
    await soak(path, { 'tswl-proxy (guest)': proxy, 'tswl-host': host });
    await Promise.all([stop(proxy), stop(host)]);
    await stop(weston);
  });
});

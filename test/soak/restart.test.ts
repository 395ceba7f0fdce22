// The host compositor killed and started again under a running tswl-proxy (host mode) and a
// running tswl-host (local link, with a tswl-proxy in front of it as a guest's proxy): their
// clients get a wl_display.error that says the compositor is gone, both programs stay up, refuse
// new clients clearly while there is no compositor, and serve new clients once it is back.
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startHost } from '../support/cross-domain.js';
import { type Running, accepts, killAll, start, stop, waitFor } from '../support/processes.js';
import { RawClient } from '../support/raw-client.js';
import { proxyBin } from '../support/weston.js';
import { readRoundTrip, roundTrip, soakRuntime, startWestonAt } from './support.js';

/** How many times the compositor is killed and started again. */
const RESTARTS = Number(process.env.TSWL_SOAK_RESTARTS ?? 3);

describe('the host compositor killed and started again', () => {
  const { runtimeDir, env, compositor } = soakRuntime('tswl-restart-');
  /** tswl-proxy in host mode, and tswl-proxy as a guest's proxy in front of tswl-host. */
  const paths = { host: join(runtimeDir, 'wayland-1'), guest: join(runtimeDir, 'wayland-2') };
  let weston: Running;
  let proxy: Running;
  let host: Running;
  let guestProxy: Running;

  beforeAll(async () => {
    weston = await startWestonAt(runtimeDir);
    proxy = start(proxyBin, ['--host-display', compositor, '--wayland-display', 'wayland-1'], env);
    const gpu = await startHost({ runtimeDir, env });
    host = gpu.run;
    guestProxy = start(
      proxyBin,
      ['--virtio-gpu-device', gpu.path, '--wayland-display', 'wayland-2'],
      env,
    );
    for (const p of Object.values(paths)) await waitFor(`${p} to listen`, () => accepts(p));
  });

  afterAll(async () => {
    killAll();
    rmSync(runtimeDir, { recursive: true, force: true });
  });

  test(`${RESTARTS} times: clients told, programs up, new clients served once it is back`, async () => {
    const backWithin: number[] = [];
    const told = new Set<string>();
    for (let round = 0; round < RESTARTS; round++) {
      // a client of each program, connected and idle
      const idle = Object.values(paths).map((p) => new RawClient(p));
      for (const c of idle) expect((await roundTripOn(c)).done).toBe(true);

      process.kill(-weston.child.pid!, 'SIGKILL');
      await weston.exited;
      for (const c of idle) {
        const r = await readRoundTrip(c);
        expect(r.error, 'the idle client is told').toMatch(/compositor/);
        told.add(r.error!);
        c.close();
      }
      // no compositor: new clients are refused with a reason, and nothing dies
      for (const p of Object.values(paths)) {
        const r = await roundTrip(p);
        expect(r.done).toBe(false);
        expect(r.error).toMatch(/compositor|host/);
        told.add(r.error!);
      }
      for (const run of [proxy, host, guestProxy])
        expect(run.child.exitCode, run.output()).toBeNull();

      weston = await startWestonAt(runtimeDir);
      const back = Date.now();
      for (const p of Object.values(paths)) {
        const r = await waitFor(
          `a new client of ${p} to be served`,
          async () => {
            const t = await roundTrip(p);
            return t.done ? t : undefined;
          },
          10000,
        );
        expect(r.globals).toBeGreaterThan(3);
      }
      backWithin.push(Date.now() - back);
    }
    console.log(`what clients were told: ${[...told].join(' | ')}`);
    console.log(
      `compositor restarts: every client told; both programs served new clients ${backWithin.join(', ')} ms after the compositor was back`,
    );
    for (const run of [proxy, host, guestProxy])
      expect(run.child.exitCode, run.output()).toBeNull();
    await Promise.all([stop(guestProxy), stop(proxy), stop(host), stop(weston)]);
  });
});

function roundTripOn(c: RawClient) {
  c.message(1, 1, (w) => w.newId(2))
    .message(1, 0, (w) => w.newId(3))
    .send();
  return readRoundTrip(c);
}

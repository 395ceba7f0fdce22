// Globals that come and go while clients run (sway's `create_output` and `output … unplug`), a
// bind that races a removal, and a second seat: what a client sees through the proxy, in host
// mode and across the cross-domain path, is what it sees on sway directly.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { waylandInfoGlobals } from '../support/globals.js';
import { type Running, accepts, killAll, start, stop, waitFor } from '../support/processes.js';
import { ShmClient } from '../support/shm-client.js';
import { Sway } from '../support/sway.js';
import { proxyBin } from '../support/weston.js';

let sway: Sway;
const proxies = new Map<string, Running>();

beforeAll(async () => {
  sway = await Sway.start();
  await sway.startHost();
  for (const route of ['proxied', 'cross-domain'] as const) {
    const listen = `hotplug-${route}`;
    const proxy = start(proxyBin, sway.proxyArgs(route, listen), sway.clientEnv('tswl-nowhere'));
    await waitFor('tswl-proxy to listen', () => accepts(join(sway.clientDir, listen)));
    proxies.set(route, proxy);
  }
});

afterAll(async () => {
  killAll();
  await sway?.stop();
});

type Route = 'direct' | 'proxied' | 'cross-domain';
const routes: Route[] = ['direct', 'proxied', 'cross-domain'];
const socketOf = (route: Route): string =>
  route === 'direct' ? sway.socket : join(sway.clientDir, `hotplug-${route}`);

/** A client's registry: wl_registry.global (name → interface) and global_remove events. */
function registryEvents(c: ShmClient, registry: number) {
  const added = new Map<number, string>();
  const removed: number[] = [];
  for (const e of c.events) {
    if (e.id !== registry) continue;
    if (e.opcode === 0) {
      const len = e.body.readUInt32LE(4);
      added.set(e.body.readUInt32LE(0), e.body.toString('utf8', 8, 8 + len - 1));
    } else if (e.opcode === 1) removed.push(e.body.readUInt32LE(0));
  }
  return { added, removed };
}

let outputs = 1;

describe('outputs plugged and unplugged while clients run', () => {
  test.each(routes)('%s: the new output is announced, then its removal', async (route) => {
    const c = new ShmClient(socketOf(route));
    const registry = c.newId();
    c.message(1, 1, (w) => w.newId(registry));
    await c.roundtrip();
    const before = registryEvents(c, registry).added;
    sway.chroot(['swaymsg', 'create_output']);
    const name = `HEADLESS-${++outputs}`;
    const output = await waitFor('the new wl_output', () => {
      c.poll();
      return [...registryEvents(c, registry).added].find(
        ([n, iface]) => iface === 'wl_output' && !before.has(n),
      )?.[0];
    });
    sway.chroot(['swaymsg', 'output', name, 'unplug']);
    await waitFor('its removal', () => {
      c.poll();
      return registryEvents(c, registry).removed.includes(output);
    });
    expect(c.errors()).toEqual([]);
    c.close();
  });

  test.each(routes)(
    '%s: binding an output while it is being unplugged is no error',
    async (route) => {
      const c = new ShmClient(socketOf(route));
      const registry = c.newId();
      c.message(1, 1, (w) => w.newId(registry));
      await c.roundtrip();
      const before = registryEvents(c, registry).added;
      sway.chroot(['swaymsg', 'create_output']);
      const name = `HEADLESS-${++outputs}`;
      const output = await waitFor('the new wl_output', () => {
        c.poll();
        return [...registryEvents(c, registry).added].find(
          ([n, iface]) => iface === 'wl_output' && !before.has(n),
        )?.[0];
      });
      // unplugged: the removal is on its way to the client, which binds before reading it
      sway.chroot(['swaymsg', 'output', name, 'unplug']);
      await new Promise((r) => setTimeout(r, 300));
      c.message(registry, 0, (w) => {
        w.uint(output);
        w.string('wl_output');
        w.uint(4);
        w.newId(c.newId());
      });
      await c.roundtrip();
      expect(registryEvents(c, registry).removed).toContain(output);
      expect(c.errors()).toEqual([]);
      await c.roundtrip();
      expect(c.eof).toBe(false);
      c.close();
    },
  );
});

describe('a second seat', () => {
  test('reaches clients through the proxy in both modes', async () => {
    sway.chroot(['swaymsg', 'seat', 'seat1', 'attach', '*']);
    const seats = (route: Route): number =>
      waylandInfoGlobals(sway.clientEnv(socketOf(route))).get('wl_seat')?.length ?? 0;
    await waitFor('two seats on sway', () => seats('direct') === 2);
    expect(seats('proxied')).toBe(2);
    expect(seats('cross-domain')).toBe(2);
    for (const proxy of proxies.values()) expect(proxy.child.exitCode).toBeNull();
    await stop(proxies.get('proxied')!);
  });
});

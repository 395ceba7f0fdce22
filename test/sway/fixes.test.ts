// wl_fixes (libwayland 1.24+, offered by sway 1.12) through the proxy, both ways of reaching sway:
// destroy_registry destroys a wl_registry by a request of another interface. A client that uses
// it keeps working, gets its registry's id back, and a request to the destroyed registry is
// refused by the proxy itself.
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { accepts, killAll, type Running, start, stop, waitFor } from '../support/processes.js';
import { RawClient, type RawEvent, displayError } from '../support/raw-client.js';
import { type Route, Sway } from '../support/sway.js';
import { proxyBin } from '../support/weston.js';

let sway: Sway;
const proxies = new Map<Route, { run: Running; socket: string }>();
const clients: RawClient[] = [];

const routes = ['proxied', 'cross-domain'] as const;

beforeAll(async () => {
  sway = await Sway.start();
  await sway.startHost();
  for (const route of routes) {
    const socket = join(sway.clientDir, `fixes-${route}`);
    const run = start(
      proxyBin,
      sway.proxyArgs(route, `fixes-${route}`),
      sway.clientEnv('tswl-nowhere'),
    );
    await waitFor('tswl-proxy to listen', () => accepts(socket));
    proxies.set(route, { run, socket });
  }
});

afterEach(() => {
  for (const c of clients.splice(0)) c.close();
});

afterAll(async () => {
  for (const { run } of proxies.values()) await stop(run);
  killAll();
  await sway?.stop();
});

/** wl_registry.global events on `registry`: interface → global name. */
function globalsOn(events: RawEvent[], registry: number): Map<string, number> {
  const found = new Map<string, number>();
  for (const e of events.filter((e) => e.id === registry && e.opcode === 0)) {
    found.set(e.body.toString('utf8', 8, 8 + e.body.readUInt32LE(4) - 1), e.body.readUInt32LE(0));
  }
  return found;
}

const deleted = (events: RawEvent[]): number[] =>
  events.filter((e) => e.id === 1 && e.opcode === 1).map((e) => e.body.readUInt32LE(0));

/** A client of the proxy with registry 2 and wl_fixes bound as 4; also the globals it saw. */
async function withFixes(route: Route): Promise<{ c: RawClient; globals: Map<string, number> }> {
  const c = new RawClient(proxies.get(route)!.socket);
  clients.push(c);
  c.message(1, 1, (w) => w.newId(2)); // get_registry
  c.message(1, 0, (w) => w.newId(3)); // sync
  c.send();
  const { events } = await c.read();
  const globals = globalsOn(events, 2);
  const fixes = globals.get('wl_fixes');
  expect(fixes, 'sway offers wl_fixes through the proxy').toBeDefined();
  c.message(2, 0, (w) => {
    w.uint(fixes!);
    w.string('wl_fixes');
    w.uint(1);
    w.newId(4);
  });
  return { c, globals };
}

describe('wl_fixes.destroy_registry through the proxy', () => {
  test.each(routes)('the client keeps working and gets the id back (%s)', async (route) => {
    const { c } = await withFixes(route);
    c.message(4, 1, (w) => w.object(2)); // destroy_registry(2)
    c.message(1, 1, (w) => w.newId(5)); // get_registry
    c.message(1, 0, (w) => w.newId(6)); // sync
    c.send();
    const first = await c.read();
    expect(first.events.map(displayError).filter((e) => e)).toEqual([]);
    expect(deleted(first.events)).toContain(2);
    expect(globalsOn(first.events, 5).has('wl_compositor')).toBe(true);
    expect(first.events.some((e) => e.id === 6 && e.opcode === 0)).toBe(true);
    // id 2 is free on both sides again: a new object may take it
    c.message(1, 0, (w) => w.newId(2)); // sync
    c.send();
    const second = await c.read();
    expect(second.events.some((e) => e.id === 2 && e.opcode === 0)).toBe(true);
    expect(second.eof).toBe(false);
  });

  test.each(routes)('a request to the destroyed registry is an error (%s)', async (route) => {
    const { c, globals } = await withFixes(route);
    c.message(4, 1, (w) => w.object(2)); // destroy_registry(2)
    c.message(2, 0, (w) => {
      // a bind that was valid before, on the destroyed registry
      w.uint(globals.get('wl_compositor')!);
      w.string('wl_compositor');
      w.uint(1);
      w.newId(5);
    });
    c.send();
    const { events, eof } = await c.read();
    const errors = events.map(displayError).filter((e) => e !== null);
    expect(errors).toEqual([{ object: 1, code: 0, message: 'invalid object 2' }]);
    expect(eof).toBe(true);
    // the proxy refused it (sway never saw the request)
    await waitFor('the proxy to log the error', () =>
      proxies.get(route)!.run.output().includes('client protocol error: invalid object 2'),
    );
  });
});

// The relay's mechanisms for clients and objects of the proxy's own, which Xwayland's connection
// is built on, against a headless weston: a client the proxy connected itself (adoptClient) with
// hooks of its own, a global the proxy implements itself, host objects the proxy owns, and the
// request gate that holds a client's requests.
import { join } from 'node:path';
import { afterEach, describe, expect, test } from 'vitest';
import { allInterfaces } from '../src/generated/index.js';
import {
  writeWlDisplayGetRegistry,
  writeWlDisplaySync,
  writeWlRegistryBind,
} from '../src/generated/wayland.js';
import * as native from '../src/native/index.js';
import { ProtocolTables } from '../src/protocol/tables.js';
import { ProxyServer } from '../src/proxy.js';
import { relayHooks } from '../src/relay/hooks.js';
import { newClientOnlyObject, newOwnedObject } from '../src/relay/owned.js';
import type { InterfaceHooks, Relay, RequestGate } from '../src/relay/relay.js';
import type { LocalGlobal } from '../src/relay/registry.js';
import { Connection } from '../src/wire/connection.js';
import { type RawEvent, RawClient, displayError } from './support/raw-client.js';
import { waitFor } from './support/processes.js';
import { type HeadlessWeston, startHeadlessWeston } from './support/weston.js';

let weston: HeadlessWeston | undefined;
let server: ProxyServer | undefined;
const clients: RawClient[] = [];

afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  server?.close();
  server = undefined;
  await weston?.stop();
  weston = undefined;
});

async function proxy(connectHost?: () => never): Promise<ProxyServer> {
  weston = await startHeadlessWeston();
  const hostPath = join(weston.runtimeDir, 'wayland-0');
  server = new ProxyServer({
    listenPath: join(weston.runtimeDir, 'wayland-1'),
    connectHost:
      connectHost ?? ((handler) => new Connection(native.connectUnix(hostPath), handler)),
    hostName: hostPath,
    tables: new ProtocolTables(allInterfaces),
    hooks: relayHooks({ tag: '' }),
    warn: () => {},
  });
  server.listen();
  return server;
}

/** A client on one end of a socketpair whose other end the proxy adopts. */
function adopt(
  s: ProxyServer,
  hooks: Map<string, InterfaceHooks>,
  requestGate?: RequestGate,
): { relay: Relay; client: RawClient } {
  const [ours, theirs] = native.socketpair();
  const relay = s.adoptClient(ours, { hooks, requestGate });
  const client = new RawClient(theirs);
  clients.push(client);
  return { relay, client };
}

interface Global {
  name: number;
  iface: string;
  version: number;
}

function globalsOf(events: RawEvent[], registry: number): Global[] {
  return events
    .filter((e) => e.id === registry && e.opcode === 0)
    .map((e) => {
      const len = e.body.readUInt32LE(4);
      return {
        name: e.body.readUInt32LE(0),
        iface: e.body.toString('latin1', 8, 8 + len - 1),
        version: e.body.readUInt32LE(8 + ((len + 3) & ~3)),
      };
    });
}

const LOCAL_NAME = 0xfff00000;

describe('a client the proxy connected itself, with a global of the proxy’s own', () => {
  test('the local global is listed first and bound in the proxy, never forwarded', async () => {
    const s = await proxy();
    const bound: number[] = [];
    const local: LocalGlobal = {
      iface: 'xwayland_shell_v1',
      version: 1,
      bind: (relay, id) => {
        newClientOnlyObject(relay, id, 'xwayland_shell_v1', 1);
        bound.push(id);
      },
    };
    const hooks = relayHooks({ tag: '', localGlobals: [local] });
    const requests: number[] = [];
    hooks.set('xwayland_shell_v1', { request: (_ctx, opcode) => (requests.push(opcode), true) });
    const { relay, client } = adopt(s, hooks);
    expect(s.relays.has(relay)).toBe(true);

    client.message(1, 1, (w) => w.newId(2)).send(); // get_registry
    const globals = globalsOf((await client.read()).events, 2);
    expect(globals[0]).toEqual({ name: LOCAL_NAME, iface: 'xwayland_shell_v1', version: 1 });
    expect(globals.filter((g) => g.iface === 'xwayland_shell_v1')).toHaveLength(1);
    expect(globals.map((g) => g.iface)).toContain('wl_compositor');

    // bind, then a request to it: both stay in the proxy (its hook takes every request)
    client
      .message(2, 0, (w) => {
        w.uint(LOCAL_NAME);
        w.string('xwayland_shell_v1');
        w.uint(1);
        w.newId(3);
      })
      .message(3, 0) // xwayland_shell_v1.destroy
      .message(1, 0, (w) => w.newId(4)) // sync: weston has seen what was forwarded
      .send();
    const { events, eof } = await client.read();
    expect(events.map(displayError).filter(Boolean)).toEqual([]);
    expect(eof).toBe(false);
    expect(events.some((e) => e.id === 4 && e.opcode === 0)).toBe(true);
    expect(bound).toEqual([3]);
    expect(requests).toEqual([0]);
    expect(relay.clientIds.get(3)?.hostId).toBe(0);
  });

  test('binding the local global above its version is a protocol error for that client', async () => {
    const s = await proxy();
    const local: LocalGlobal = { iface: 'xwayland_shell_v1', version: 1, bind: () => {} };
    const { client } = adopt(s, relayHooks({ tag: '', localGlobals: [local] }));
    client.message(1, 1, (w) => w.newId(2)).send();
    await client.read();
    client
      .message(2, 0, (w) => {
        w.uint(LOCAL_NAME);
        w.string('xwayland_shell_v1');
        w.uint(2);
        w.newId(3);
      })
      .send();
    const { events, eof } = await client.read();
    expect(eof).toBe(true);
    expect(events.map(displayError).find(Boolean)?.message).toMatch(
      /invalid version for global xwayland_shell_v1/,
    );
  });

  test('a host that cannot be reached: adoptClient throws, the client is told why', async () => {
    const s = await proxy(() => {
      throw new Error('no host here');
    });
    const [ours, theirs] = native.socketpair();
    const client = new RawClient(theirs);
    clients.push(client);
    expect(() => s.adoptClient(ours, { hooks: relayHooks({ tag: '' }) })).toThrow(
      /cannot reach the host compositor/,
    );
    const { events, eof } = await client.read();
    expect(eof).toBe(true);
    expect(events.map(displayError).find(Boolean)?.message).toMatch(/no host here/);
  });
});

describe('host objects the proxy owns', () => {
  test('their events are the proxy’s; an error about one reaches the client on wl_display', async () => {
    const s = await proxy();
    const { relay, client } = adopt(s, relayHooks({ tag: '' }));
    const seen: string[] = [];
    let compositorName = 0;
    const registry = newOwnedObject(relay, 'wl_registry', 1, (opcode, args) => {
      if (opcode !== 0) return;
      const name = args.uint();
      const iface = args.string() ?? '';
      seen.push(iface);
      if (iface === 'wl_compositor') compositorName = name;
    });
    writeWlDisplayGetRegistry(relay.host.out, 1, registry.hostId);
    relay.flush();
    await waitFor('the owned registry to list the globals', () => compositorName !== 0);
    expect(seen).toContain('wl_shm');
    // the client heard nothing of it
    expect((await client.read()).events).toEqual([]);

    // a bind of a global that does not exist: weston posts an error on the registry
    const compositor = newOwnedObject(relay, 'wl_compositor', 1, () => {});
    writeWlRegistryBind(
      relay.host.out,
      registry.hostId,
      0xabcdef,
      'wl_compositor',
      1,
      compositor.hostId,
    );
    relay.flush();
    const { events, eof } = await client.read();
    expect(eof).toBe(true);
    const error = events.map(displayError).find(Boolean);
    // not object 0 (an object the client never had), which makes libwayland abort
    expect(error).toMatchObject({ object: 1, code: 3 });
    expect(error?.message).toMatch(/the proxy's own wl_registry@\d+ \(error 0\)/);
  });
});

describe('the request gate', () => {
  test('held requests wait unread until released, also when a host event releases them', async () => {
    const s = await proxy();
    let hold = true;
    // wl_display.sync is held while `hold`
    const gate: RequestGate = (_relay, id, opcode) => hold && id === 1 && opcode === 0;
    const { relay, client } = adopt(s, relayHooks({ tag: '' }), gate);
    client.message(1, 0, (w) => w.newId(2)).send();
    expect((await client.read(400)).events).toEqual([]);
    expect(relay.clientIds.get(2)).toBeUndefined(); // not even read

    // the proxy's own round trip to the host ends, and its event handler releases the client:
    // the held sync goes on without the client writing anything more
    hold = false;
    const callback = newOwnedObject(relay, 'wl_callback', 1, () => relay.releaseRequests());
    writeWlDisplaySync(relay.host.out, 1, callback.hostId);
    relay.flush();
    const { events } = await client.read();
    expect(events.some((e) => e.id === 2 && e.opcode === 0)).toBe(true);
  });
});

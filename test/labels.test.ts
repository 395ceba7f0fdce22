// --tag and --app-id-prefix on both toplevel interfaces: xdg_toplevel and zxdg_toplevel_v6. No
// compositor here still offers xdg-shell v6 (weston 10 and sway 1.12 dropped it), so a hand-made
// one offers both and reads what the proxy sends it.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { allInterfaces } from '../src/generated/index.js';
import * as native from '../src/native/index.js';
import { ProtocolTables } from '../src/protocol/tables.js';
import { ProxyServer } from '../src/proxy.js';
import { relayHooks } from '../src/relay/hooks.js';
import { labelled } from '../src/relay/xdg-toplevel.js';
import { Connection } from '../src/wire/connection.js';
import { waitFor } from './support/processes.js';
import { ShmClient } from './support/shm-client.js';

let dir: string;
let server: ProxyServer;
let listener: native.Listener;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'tswl-labels-'));
  listener = native.listenUnix(join(dir, 'compositor'));
  server = new ProxyServer({
    listenPath: join(dir, 'proxy'),
    connectHost: (h) => new Connection(native.connectUnix(join(dir, 'compositor')), h),
    hostName: 'test',
    tables: new ProtocolTables(allInterfaces),
    hooks: relayHooks({ tag: '[vm] ', appIdPrefix: 'vm.' }),
    warn: () => {},
  });
  server.listen();
});

afterAll(() => {
  server.close();
  native.close(listener.fd);
  native.close(listener.lockFd);
  rmSync(dir, { recursive: true, force: true });
});

/** Every string argument of what the hand-made compositor received, as "id.opcode:string". */
function strings(fd: number): string[] {
  const buf = Buffer.alloc(65536);
  const out = new Int32Array(native.RECV_OUT_LENGTH);
  const found: string[] = [];
  let data = Buffer.alloc(0);
  for (let n; (n = native.recvmsg(fd, buf, 0, buf.length, out)) > 0;)
    data = Buffer.concat([data, buf.subarray(0, n)]);
  for (let pos = 0; pos + 8 <= data.length;) {
    const id = data.readUInt32LE(pos);
    const word = data.readUInt32LE(pos + 4);
    const size = word >>> 16;
    if (size >= 16) {
      const len = data.readUInt32LE(pos + 8);
      if (len > 0 && 12 + len <= size)
        found.push(`${id}.${word & 0xffff}:${data.toString('utf8', pos + 12, pos + 12 + len - 1)}`);
    }
    pos += size;
  }
  return found;
}

describe.each([
  ['xdg_wm_base', 5],
  ['zxdg_shell_v6', 1],
])('labels on %s toplevels', (shell, version) => {
  test('the title gets --tag, the app_id --app-id-prefix, and a long title is cut whole', async () => {
    const c = new ShmClient(join(dir, 'proxy'));
    const host = await waitFor('the host connection', () => {
      const fd = native.accept(listener.fd);
      return fd >= 0 ? fd : false;
    });
    try {
      c.message(1, 1, (w) => w.newId(2)); // get_registry
      c.send();
      await waitFor('get_registry', () => native.waitReadable(host, 0));
      strings(host);
      const globals = Buffer.concat(
        [
          [1, 'wl_compositor', 4],
          [2, shell, version],
        ].map(([name, iface, v]) => global(2, name as number, iface as string, v as number)),
      );
      native.sendmsg(host, globals, 0, globals.length, [], 0);
      await waitFor('the globals', () => (c.poll(), c.events.length >= 2));
      c.message(2, 0, (w) => [w.uint(1), w.string('wl_compositor'), w.uint(4), w.newId(3)]);
      c.message(2, 0, (w) => [w.uint(2), w.string(shell), w.uint(version), w.newId(4)]);
      c.message(3, 0, (w) => w.newId(5)); // create_surface
      c.message(4, 2, (w) => [w.newId(6), w.object(5)]); // get_xdg_surface
      c.message(6, 1, (w) => w.newId(7)); // get_toplevel
      // fits a client's message; with the label it would not
      const long = 'é'.repeat(2035);
      c.message(7, 2, (w) => w.string('a title')); // set_title
      c.message(7, 3, (w) => w.string('org.example.app')); // set_app_id
      c.message(7, 2, (w) => w.string(long));
      c.send();
      await waitFor('the requests', () => native.waitReadable(host, 0));
      await new Promise((r) => setTimeout(r, 100));
      const got = strings(host).filter((s) => s.startsWith('7.'));
      expect(got).toEqual([
        '7.2:[vm] a title',
        '7.3:vm.org.example.app',
        `7.2:${labelled('[vm] ', long)}`,
      ]);
      // the cut kept whole characters and the whole label, within one message
      const cut = labelled('[vm] ', long);
      expect(cut.startsWith('[vm] é')).toBe(true);
      expect(Buffer.byteLength(cut)).toBeLessThanOrEqual(4096 - 16);
      expect(cut.endsWith('\uFFFD')).toBe(false);
      expect(c.errors()).toEqual([]);
    } finally {
      c.close();
      native.close(host);
    }
  });
});

function global(registry: number, name: number, iface: string, version: number): Buffer {
  const len = iface.length + 1;
  const padded = Math.ceil(len / 4) * 4;
  const b = Buffer.alloc(8 + 4 + 4 + padded + 4);
  b.writeUInt32LE(registry, 0);
  b.writeUInt32LE((b.length << 16) | 0, 4);
  b.writeUInt32LE(name, 8);
  b.writeUInt32LE(len, 12);
  b.write(iface, 16);
  b.writeUInt32LE(version, 16 + padded);
  return b;
}

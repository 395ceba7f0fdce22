// A client the proxy cannot serve (no compositor) is told why, even when it sent its first
// requests before the proxy got to it: the proxy reads them before it hangs up, since closing a
// socket with unread bytes resets the connection and the client would see ECONNRESET instead.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, test } from 'vitest';
import { allInterfaces } from '../src/generated/index.js';
import { ProtocolTables } from '../src/protocol/tables.js';
import { ProxyServer } from '../src/proxy.js';
import { RawClient, displayError } from './support/raw-client.js';

const dir = mkdtempSync(join(tmpdir(), 'tswl-refuse-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

test('a client refused for want of a compositor gets the error, not a reset', async () => {
  const server = new ProxyServer({
    listenPath: join(dir, 'wayland-1'),
    connectHost: () => {
      throw new Error('connect: Connection refused');
    },
    hostName: 'the test compositor',
    tables: new ProtocolTables(allInterfaces),
    hooks: new Map(),
    warn: () => {},
  });
  server.listen();
  try {
    for (let i = 0; i < 20; i++) {
      const c = new RawClient(join(dir, 'wayland-1'));
      // requests in the socket before the proxy accepts it
      c.message(1, 1, (w) => w.newId(2))
        .message(1, 0, (w) => w.newId(3))
        .send();
      const { events, eof } = await c.read(50);
      c.close();
      expect(eof).toBe(true);
      expect(displayError(events[0])?.message).toMatch(/cannot reach the host compositor/);
    }
  } finally {
    server.close();
  }
});

// Malformed client input: each case gets wl_display.error with a clear message and a
// disconnect, while the proxy goes on serving other clients.
import { spawnSync } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { killAll, type Running, stop } from './support/processes.js';
import { RawClient, displayError } from './support/raw-client.js';
import { type HeadlessWeston, startHeadlessWeston, startProxy } from './support/weston.js';

let weston: HeadlessWeston;
let proxy: Running;
let socket: string;
const clients: RawClient[] = [];

beforeAll(async () => {
  weston = await startHeadlessWeston();
  proxy = await startProxy(weston, []);
  socket = join(weston.runtimeDir, 'wayland-1');
});

afterEach(() => {
  for (const c of clients.splice(0)) c.close();
});

afterAll(async () => {
  await stop(proxy);
  await weston.stop();
  killAll();
});

function client(): RawClient {
  const c = new RawClient(socket);
  clients.push(c);
  return c;
}

/** Sends what fill() queues and expects exactly one wl_display.error followed by a hang-up. */
async function expectError(fill: (c: RawClient) => void, fds: number[] = []) {
  const c = client();
  fill(c);
  c.send(fds);
  const { events, eof } = await c.read();
  const errors = events.map(displayError).filter((e) => e !== null);
  expect(errors).toHaveLength(1);
  expect(eof).toBe(true);
  return errors[0]!;
}

/** A full round trip through the proxy: get_registry + sync, answered with globals and done. */
async function roundTrip(): Promise<string[]> {
  const c = client();
  c.message(1, 1, (w) => w.newId(2)); // get_registry
  c.message(1, 0, (w) => w.newId(3)); // sync
  c.send();
  const { events } = await c.read(300);
  expect(events.some((e) => e.id === 3 && e.opcode === 0)).toBe(true); // wl_callback.done
  return events
    .filter((e) => e.id === 2 && e.opcode === 0)
    .map((e) => e.body.toString('utf8', 8, 8 + e.body.readUInt32LE(4) - 1));
}

describe('a client sending garbage', () => {
  test('an unknown object id gets invalid_object', async () => {
    const err = await expectError((c) => c.message(42, 0));
    expect(err).toMatchObject({ object: 1, code: 0 });
    expect(err.message).toMatch(/invalid object 42/);
  });

  test('an unknown opcode gets invalid_method naming the object', async () => {
    const err = await expectError((c) => c.message(1, 7));
    expect(err).toMatchObject({ object: 1, code: 1 });
    expect(err.message).toMatch(/invalid method 7.*wl_display@1/);
  });

  test('a message shorter than its arguments is refused', async () => {
    // wl_display.sync without its new_id
    const err = await expectError((c) => c.raw(Buffer.from([1, 0, 0, 0, 0, 0, 8, 0])));
    expect(err.code).toBe(1);
    expect(err.message).toMatch(/does not match its arguments|too short/);
  });

  test('a size field below the header size is refused', async () => {
    const err = await expectError((c) => c.raw(Buffer.from([1, 0, 0, 0, 0, 0, 4, 0])));
    expect(err.message).toMatch(/invalid size 4/);
  });

  test('a size field that is not a multiple of 4 is refused', async () => {
    const err = await expectError((c) =>
      c.raw(Buffer.from([1, 0, 0, 0, 0, 0, 13, 0, 2, 0, 0, 0, 0])),
    );
    expect(err.message).toMatch(/invalid size 13/);
  });

  test('a string whose length runs past the message is refused', async () => {
    const err = await expectError((c) => {
      c.message(1, 1, (w) => w.newId(2));
      // wl_registry.bind(name 1, string length 1000 in a 24-byte message)
      c.raw(
        Buffer.from([
          2, 0, 0, 0, 0, 0, 24, 0, 1, 0, 0, 0, 0xe8, 3, 0, 0, 0x61, 0x62, 0, 0, 1, 0, 0, 0,
        ]),
      );
    });
    expect(err.code).toBe(1);
  });

  test('binding a global that was never advertised is refused', async () => {
    const err = await expectError((c) => {
      c.message(1, 1, (w) => w.newId(2));
      c.message(2, 0, (w) => {
        w.uint(9999);
        w.string('wl_compositor');
        w.uint(1);
        w.newId(3);
      });
    });
    expect(err).toMatchObject({ object: 2, code: 0 });
    expect(err.message).toMatch(/invalid global wl_compositor \(9999\)/);
  });

  test('a new id out of sequence is refused', async () => {
    const err = await expectError((c) => c.message(1, 0, (w) => w.newId(1000)));
    expect(err.message).toMatch(/invalid new id 1000/);
  });

  test.each([
    [28, 'taken'],
    [29, 'refused'],
  ])('%i fds in one sendmsg are %s (libwayland: 28), and none is leaked', async (n, what) => {
    const before = proxyFdCount();
    const c = client();
    const python = [
      'import os, socket',
      's = socket.socket(fileno=3)',
      `fds = [os.open('/dev/null', os.O_RDONLY) for _ in range(${n})]`,
      // a well-formed wl_display.sync, with the fds riding along
      'socket.send_fds(s, [bytes([1,0,0,0, 0,0,12,0, 2,0,0,0])], fds)',
    ].join('\n');
    const run = spawnSync('python3', ['-c', python], { stdio: ['ignore', 'ignore', 'pipe', c.fd] });
    expect(run.status, String(run.stderr)).toBe(0);
    const { events, eof } = await c.read();
    const err = events.map(displayError).find((e) => e !== null);
    if (what === 'refused') {
      expect(err?.message).toMatch(/too many file descriptors/);
      expect(eof).toBe(true);
    } else {
      expect(err).toBeUndefined();
      expect(events.some((e) => e.id === 2 && e.opcode === 0)).toBe(true); // wl_callback.done
    }
    c.close();
    clients.length = 0;
    await new Promise((r) => setTimeout(r, 200));
    expect(proxyFdCount()).toBe(before);
  });

  test('fds that no message uses are closed when the client goes', async () => {
    const before = proxyFdCount();
    const c = client();
    const files = Array.from({ length: 5 }, () => openSync('/dev/null', 'r'));
    c.message(1, 0, (w) => w.newId(2)).send(files);
    files.forEach((f) => closeSync(f));
    await c.read(200);
    c.close();
    clients.length = 0;
    await new Promise((r) => setTimeout(r, 200));
    expect(proxyFdCount()).toBe(before);
  });

  test('after all that the proxy still serves new clients', async () => {
    const globals = await roundTrip();
    expect(globals).toContain('wl_compositor');
    expect(globals).toContain('xdg_wm_base');
    expect(proxy.child.exitCode).toBeNull();
  });
});

function proxyFdCount(): number {
  // the proxy is `node`, started by bin/tswl-proxy in its own process group
  return Number(
    spawnSync('sh', ['-c', `ls /proc/${proxy.child.pid}/fd | wc -l`])
      .stdout.toString()
      .trim(),
  );
}

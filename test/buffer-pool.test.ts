// Connections that come and go reuse their buffers: a process serving short-lived clients must
// not leave every ended connection's 80 KiB for the collector (the soak runs measure the RSS).
import { expect, test } from 'vitest';
import * as native from '../src/native/index.js';
import { takeBuffer } from '../src/wire/buffer-pool.js';
import { Connection, type EndpointHandler } from '../src/wire/connection.js';

const ignore: EndpointHandler = { onData() {}, onClose() {} };

function connection(): Connection {
  const [a, b] = native.socketpair();
  native.close(b);
  return new Connection(a, ignore);
}

test("a closed connection's buffers go to the next one, and are no longer its own", async () => {
  const first = connection();
  const input = first.in;
  const output = first.out.buf;
  first.close();
  // a closed connection's buffers are empty: a late use cannot touch the next owner's bytes
  expect(first.in.length).toBe(0);
  expect(first.out.buf.length).toBe(0);
  expect(() => first.inView.getUint32(0, true)).toThrow(RangeError);
  // the relay may still be parsing the closed connection's input until its turn ends
  const meanwhile = connection();
  expect(meanwhile.in).not.toBe(input);
  await Promise.resolve();
  const next = connection();
  expect(next.in).toBe(input);
  expect(next.out.buf).toBe(output);
  // a writer released and written to again gets a buffer of its own
  first.out.begin(1, 0);
  first.out.end();
  expect(first.out.buf).not.toBe(output);
  for (const c of [meanwhile, next]) c.close();
});

test('a buffer that grew in a flood is not kept', async () => {
  const c = connection();
  c.out.reserve(4 * 1024 * 1024);
  const grown = c.out.buf;
  c.close();
  await Promise.resolve();
  // nothing takes buffers of that size: keeping it would hold megabytes for good
  expect(takeBuffer(grown.length)).not.toBe(grown);
});

// A paste through tswl-host between two Wayland clients of guests, here played by two contexts
// of vhost-user VMs and a hand-made compositor that hands the source the reader's pipe (as a real
// one does with wl_data_source.send): a large paste within one VM completes although the VM's
// commands are held back while the reader is behind (its polls go on), and a reader that never
// reads holds the source VM back for at most PIPE_STALL_MS.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, expect, test } from 'vitest';
import { PIPE_STALL_MS } from '../src/host/io.js';
import { VhostUserServer } from '../src/host/vhost-user.js';
import { HostWayland } from '../src/host/wayland.js';
import * as native from '../src/native/index.js';
import { CrossDomainId, VirtioGpuResp } from '../src/virtgpu/protocol.js';
import { waitFor } from './support/processes.js';
import { TestFrontend, until } from './support/vhost-user-frontend.js';
import { cdSend, cdWrite, ctxCreate, sleep, submit, wl } from './support/virtgpu-commands.js';

const OK = VirtioGpuResp.OK_NODATA;
const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0).reverse()) c();
});

/** What one read of the compositor side of a channel got. */
async function drain(fd: number, ms = 150): Promise<{ data: Buffer; fds: number[] }> {
  const buf = Buffer.alloc(65536);
  const out = new Int32Array(native.RECV_OUT_LENGTH);
  let data = Buffer.alloc(0);
  const fds: number[] = [];
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const n = native.recvmsg(fd, buf, 0, buf.length, out);
    for (let i = 0; i < out[0]; i++) fds.push(out[2 + i]);
    if (n > 0) data = Buffer.concat([data, buf.subarray(0, n)]);
    else await sleep(10);
  }
  return { data, fds };
}

/**
 * tswl-host's vhost-user back-end, a source context (1) in VM `a` with a data source, a reader
 * context (2) in VM `b` (the same VM unless `otherVm`) that asked for the data with a read pipe,
 * and the write pipe the source got for it: what is left is the guest writing the data.
 */
async function paste(otherVm: boolean) {
  const dir = mkdtempSync(join(tmpdir(), 'tswl-paste-'));
  const listener = native.listenUnix(join(dir, 'wayland-0'));
  const warnings: string[] = [];
  const server = new VhostUserServer(join(dir, 'gpu.sock'), {
    wayland: new HostWayland({ socket: join(dir, 'wayland-0') }),
    log: { verbose: false, info: () => {}, warn: (m) => warnings.push(m) },
  });
  server.listen();
  const a = new TestFrontend(join(dir, 'gpu.sock'));
  const b = otherVm ? new TestFrontend(join(dir, 'gpu.sock')) : a;
  cleanups.push(() => {
    a.close();
    if (b !== a) b.close();
    server.close();
    native.close(listener.fd);
    native.close(listener.lockFd);
    rmSync(dir, { recursive: true, force: true });
  });
  const accept = () =>
    waitFor('a compositor connection', () => {
      const fd = native.accept(listener.fd);
      return fd >= 0 ? fd : false;
    });
  await a.handshake();
  if (b !== a) await b.handshake();
  await a.context(1);
  const source = await accept();
  await b.context(2);
  const reader = await accept();
  const globals = Buffer.concat([
    wl(2, 0, 1, 'wl_seat', 7),
    wl(2, 0, 2, 'wl_data_device_manager', 3),
  ]);
  // the source: a data source offering text
  expect(await a.type(a.sendCommand(1, wl(1, 1, 2)))).toBe(OK);
  await drain(source);
  native.sendmsg(source, globals, 0, globals.length, [], 0);
  await sleep(100);
  const offerText = Buffer.concat([
    wl(2, 0, 2, 'wl_data_device_manager', 3, 3),
    wl(3, 0, 4), // create_data_source
    wl(4, 0, 'text/plain'), // offer
  ]);
  expect(await a.type(a.sendCommand(1, offerText))).toBe(OK);
  // the reader: a data device that got the selection, and asks for it with a read pipe
  expect(await b.type(b.sendCommand(2, wl(1, 1, 2)))).toBe(OK);
  await drain(reader);
  native.sendmsg(reader, globals, 0, globals.length, [], 0);
  await sleep(100);
  const device = Buffer.concat([
    wl(2, 0, 1, 'wl_seat', 7, 3),
    wl(2, 0, 2, 'wl_data_device_manager', 3, 4),
    wl(4, 1, 5, 3), // get_data_device
  ]);
  expect(await b.type(b.sendCommand(2, device))).toBe(OK);
  await drain(reader);
  const selection = Buffer.concat([wl(5, 0, 0xff000000), wl(0xff000000, 0, 'text/plain')]);
  native.sendmsg(reader, selection, 0, selection.length, [], 0);
  await b.pollUntil(2, (ev) => ev.some((e) => e.id === 0xff000000));
  const receive = wl(0xff000000, 1, 'text/plain');
  const pipe = [{ id: 0x80000001, type: CrossDomainId.READ_PIPE }];
  expect(await b.type(submit(2, cdSend(receive, pipe)))).toBe(OK);
  const got = await drain(reader, 200);
  expect(got.fds).toHaveLength(1);
  // the compositor gives the source the reader's pipe: wl_data_source.send
  const send = wl(4, 1, 'text/plain');
  native.sendmsg(source, send, 0, send.length, got.fds, 1);
  native.close(got.fds[0]);
  const m = await a.poll(1);
  expect(m.cmd === 'receive' && m.ids.length).toBe(1);
  const writePipe = m.cmd === 'receive' ? m.ids[0].id : 0;
  return { a, b, writePipe, warnings };
}

/**
 * The source writes `total` bytes in WRITEs of 60000 (up to 8 in flight) while `reading` says
 * whether the reader polls for READs; resolves with the bytes read once `done` holds.
 */
async function pump(
  p: Awaited<ReturnType<typeof paste>>,
  total: number,
  reading: boolean,
  ms: number,
): Promise<{ written: number; read: number; hungUp: boolean }> {
  const chunk = Buffer.alloc(60000, 0x61);
  const state = { written: 0, read: 0, hungUp: false };
  const inFlight = new Set<number>();
  let poll: number | null = null;
  await until(
    'the paste',
    () => {
      for (const h of [...inFlight]) if (p.a.takeResponse(h)) inFlight.delete(h);
      while (state.written < total && inFlight.size < 8) {
        const n = Math.min(chunk.length, total - state.written);
        const last = state.written + n === total;
        const h = p.a.tryStart(submit(1, cdWrite(p.writePipe, chunk.subarray(0, n), last)));
        if (h === null) break;
        inFlight.add(h);
        state.written += n;
      }
      if (!reading) return state.written >= total && inFlight.size === 0;
      if (poll === null) poll = p.b.startPoll(2);
      else if (p.b.takeResponse(poll)) {
        poll = null;
        const ring = p.b.channelRing(2);
        if (ring[0] === 6) {
          state.read += ring.readUInt32LE(16);
          if (ring.readUInt32LE(12)) state.hungUp = true;
        }
      }
      return state.hungUp;
    },
    ms,
  );
  return state;
}

test('4 MiB pasted between two clients of one VM: its polls pass its held-back commands', async () => {
  const p = await paste(false);
  const total = 4 * 1024 * 1024;
  const { read } = await pump(p, total, true, 30000);
  expect(read).toBe(total);
  expect(p.warnings.join('\n')).not.toMatch(/disabled|dropped/);
});

test('a reader in another VM that never reads holds the source VM back for at most a while', async () => {
  const p = await paste(true);
  const t0 = Date.now();
  await pump(p, 4 * 1024 * 1024, false, PIPE_STALL_MS + 10000);
  // the source VM was held back, then let go when the pipe was given up
  expect(Date.now() - t0).toBeGreaterThanOrEqual(PIPE_STALL_MS - 500);
  expect(p.warnings.join('\n')).toMatch(/its reader took nothing for 10 s; the rest .* is dropped/);
  // and it goes on: a new context, a round trip
  expect(await p.a.type(ctxCreate(5))).toBe(OK);
});

// tswl-host: the virtio-gpu device with the cross-domain context, tested two ways.
//  1. In process, through the transport-independent device API (as a vhost-user backend will use
//     it), with guest memory in a Buffer and a hand-made compositor that sends the fd kinds a
//     headless weston never sends (memory, pipes, sockets).
//  2. As users run it: bin/tswl-host between a real weston and test guests that speak the local
//     link envelope over SOCK_SEQPACKET, including misbehaving ones and an fd-leak check; and
//     against weston's x11 backend under Xvfb, whose seat sends a real keymap fd.

import { existsSync, mkdtempSync, rmSync, ftruncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type Reply, GpuDevice, deviceConfig } from '../src/host/device.js';
import { HostWayland } from '../src/host/wayland.js';
import { imageRequirements, fourcc } from '../src/host/gralloc.js';
import type { GuestBacking, GuestMemory, MemEntry } from '../src/host/guest-memory.js';
import type { FdLedger } from '../src/host/fds.js';
import * as native from '../src/native/index.js';
import {
  CrossDomainCmd,
  CrossDomainId,
  VirtioGpuCmd,
  VirtioGpuFlag,
  VirtioGpuResp,
} from '../src/virtgpu/protocol.js';
import { type Running, killAll, start, stop, waitFor } from './support/processes.js';
import { type HeadlessWeston, repoRoot, startHeadlessWeston } from './support/weston.js';
import { LinkGuest, fdCount } from './support/link-guest.js';
import {
  type Fence,
  NV12,
  R8,
  RING,
  type RingMessage,
  XR24,
  YV12,
  cdHeader,
  cdImageReqs,
  cdInit,
  cdPoll,
  cdSend,
  cdWrite,
  ctxCreate,
  guestBlob,
  hdr,
  host3dBlob,
  mapBlob,
  parseReqs,
  parseRing,
  resourceCmd,
  sleep,
  submit,
  wl,
  wlEvents,
  wlString,
} from './support/virtgpu-commands.js';

// ---- Wayland through a context ----------------------------------------------------------------

/**
 * A wl_display.sync from the guest (new callback `id`) and its wl_callback.done from the
 * compositor, through the context's relay both ways.
 */
async function roundTrip(
  h: DeviceHarness,
  ctxId: number,
  channelRing: number,
  compositorFd: number,
  id: number,
): Promise<void> {
  expect(await h.query(ctxId, cdSend(wl(1, 0, id)))).toBe(VirtioGpuResp.OK_NODATA);
  expect((await drain(compositorFd, 150)).data).toEqual(wl(1, 0, id));
  const done = wl(id, 0, 7);
  native.sendmsg(compositorFd, done, 0, done.length, [], 0);
  expect(await h.poll(ctxId, channelRing)).toEqual({ cmd: 'receive', data: done, ids: [] });
}

// ---- in-process harness -------------------------------------------------------------------------

/** Guest RAM in a Buffer; GUEST blobs address it by "physical" address, as under vhost-user. */
class BufferMemory implements GuestMemory {
  readonly ram = Buffer.alloc(1 << 20);
  resolve(entries: readonly MemEntry[], _ledger: FdLedger): GuestBacking {
    for (const e of entries) {
      if (e.addr + BigInt(e.length) > BigInt(this.ram.length)) throw new Error('outside guest RAM');
    }
    const ram = this.ram;
    return {
      entryLengths: entries.map((e) => e.length),
      write(entry, offset, src, s, end) {
        ram.set(src.subarray(s, end), Number(entries[entry].addr) + offset);
      },
      release() {},
    };
  }
  region(addr: number, length = RING): Buffer {
    return this.ram.subarray(addr, addr + length);
  }
}

interface LogLines {
  warnings: string[];
  infos: string[];
}

class DeviceHarness {
  readonly memory = new BufferMemory();
  readonly logs: LogLines = { warnings: [], infos: [] };
  readonly device: GpuDevice;
  private fenceId = 1n;

  constructor(waylandSocket: string) {
    this.device = new GpuDevice({
      wayland: new HostWayland({ socket: waylandSocket }),
      name: 'guest',
      log: {
        verbose: true,
        info: (m) => this.logs.infos.push(m),
        warn: (m) => this.logs.warnings.push(m),
      },
    });
  }

  /** Runs a command; the reply may come later (a ring-1 fence), hence the promise. */
  run(cmd: Buffer): Promise<Reply> {
    return new Promise((resolve) => this.device.handleCommand(cmd, this.memory, resolve));
  }

  async type(cmd: Buffer): Promise<number> {
    const r = await this.run(cmd);
    if (r.map) native.close(r.map.fd);
    return r.response.readUInt32LE(0);
  }

  nextFence(ring?: number): Fence {
    return { id: this.fenceId++, ring };
  }

  /** SUBMIT_3D fenced on the query ring; the response type. */
  query(ctxId: number, cmds: Buffer): Promise<number> {
    return this.type(submit(ctxId, cmds, this.nextFence(0)));
  }

  /** A POLL on ring 1: resolves with the channel ring's message once the fence signals. */
  poll(ctxId: number, channelAddr: number): Promise<RingMessage> {
    return this.run(submit(ctxId, cdPoll(), this.nextFence(1))).then(() =>
      parseRing(this.memory.region(channelAddr)),
    );
  }

  /** A context with a query ring (resource q at 0) and a channel ring (resource c at 4096). */
  async context(ctxId: number, base: number, channelType = 1): Promise<{ q: number; c: number }> {
    const q = base;
    const c = base + 1;
    expect(await this.type(ctxCreate(ctxId))).toBe(VirtioGpuResp.OK_NODATA);
    expect(await this.type(guestBlob(q, BigInt(q * RING), RING))).toBe(VirtioGpuResp.OK_NODATA);
    expect(await this.type(guestBlob(c, BigInt(c * RING), RING))).toBe(VirtioGpuResp.OK_NODATA);
    expect(await this.type(resourceCmd(VirtioGpuCmd.CTX_ATTACH_RESOURCE, q, ctxId))).toBe(
      VirtioGpuResp.OK_NODATA,
    );
    expect(await this.type(resourceCmd(VirtioGpuCmd.CTX_ATTACH_RESOURCE, c, ctxId))).toBe(
      VirtioGpuResp.OK_NODATA,
    );
    expect(await this.type(submit(ctxId, cdInit(q, c, channelType)))).toBe(VirtioGpuResp.OK_NODATA);
    return { q: q * RING, c: c * RING };
  }
}

/** A compositor stand-in: a listening socket whose accepted connections the test drives. */
class FakeCompositor {
  readonly listener: native.Listener;
  constructor(readonly path: string) {
    this.listener = native.listenUnix(path);
  }
  async accept(): Promise<number> {
    return waitFor('a connection to the fake compositor', () => {
      const fd = native.accept(this.listener.fd);
      return fd >= 0 ? fd : false;
    });
  }
  close(): void {
    native.close(this.listener.fd);
    native.close(this.listener.lockFd);
  }
}

/** Reads what arrives on fd within a short while: bytes and fds. */
async function drain(fd: number, ms = 300): Promise<{ data: Buffer; fds: number[] }> {
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

describe('tswl-host device model (in process)', () => {
  let dir: string;
  let compositor: FakeCompositor;

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'tswl-host-'));
    compositor = new FakeCompositor(join(dir, 'wayland-0'));
  });
  afterAll(() => {
    compositor.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('reports capset 5 and its 16-byte capabilities', async () => {
    const h = new DeviceHarness(compositor.path);
    const info = hdr(VirtioGpuCmd.GET_CAPSET_INFO, 32);
    const r = (await h.run(info)).response;
    expect(r.readUInt32LE(0)).toBe(VirtioGpuResp.OK_CAPSET_INFO);
    expect([r.readUInt32LE(24), r.readUInt32LE(28), r.readUInt32LE(32)]).toEqual([5, 0, 16]);
    const get = hdr(VirtioGpuCmd.GET_CAPSET, 32);
    get.writeUInt32LE(5, 24);
    const caps = (await h.run(get)).response;
    expect(caps.readUInt32LE(0)).toBe(VirtioGpuResp.OK_CAPSET);
    expect([0, 4, 8, 12].map((o) => caps.readUInt32LE(24 + o))).toEqual([1, 2, 0, 0]);
    info.writeUInt32LE(1, 24);
    expect(await h.type(info)).toBe(VirtioGpuResp.ERR_INVALID_PARAMETER);
    expect(deviceConfig().readUInt32LE(12)).toBe(1);
    h.device.destroy();
  });

  it('a fenced response echoes the fence id (all 64 bits), its flags, context and ring', async () => {
    const h = new DeviceHarness(compositor.path);
    const fence = { id: 0xfedc_ba98_7654_3210n, ring: 0 };
    const create = ctxCreate(3);
    create.set(hdr(VirtioGpuCmd.CTX_CREATE, 24, 3, fence));
    const r = (await h.run(create)).response;
    expect(r.readUInt32LE(0)).toBe(VirtioGpuResp.OK_NODATA);
    expect(r.readUInt32LE(4)).toBe(VirtioGpuFlag.FENCE | VirtioGpuFlag.INFO_RING_IDX);
    expect(r.readBigUInt64LE(8)).toBe(fence.id);
    expect(r.readUInt32LE(16)).toBe(3);
    expect(r[20]).toBe(0);
    h.device.destroy();
  });

  it("lays out images as crosvm's system gralloc does", () => {
    expect(imageRequirements(10, 10, R8)).toMatchObject({ strides: [10, 0, 0, 0], size: 4096 });
    expect(imageRequirements(10, 10, XR24)).toMatchObject({ strides: [40, 0, 0, 0], size: 4096 });
    expect(imageRequirements(10, 10, NV12)).toMatchObject({
      strides: [10, 10, 0, 0],
      offsets: [0, 100, 0, 0],
      size: 4096,
    });
    expect(imageRequirements(10, 10, YV12)).toMatchObject({
      strides: [10, 5, 5, 0],
      offsets: [0, 100, 125, 0],
      size: 4096,
    });
    expect(imageRequirements(1920, 1080, XR24).size).toBe(1920 * 1080 * 4);
    expect(imageRequirements(33, 33, fourcc('BG24')).size).toBe(4096);
    expect(() => imageRequirements(10, 10, fourcc('YUYV'))).toThrow(/unsupported/);
    expect(() => imageRequirements(0, 10, XR24)).toThrow(/no pixels/);
    expect(() => imageRequirements(0xffffffff, 0xffffffff, fourcc('AB4H'))).toThrow(/too large/);
  });

  it('classifies compositor fds, passes blobs and pipes both ways, and reports EOF', async () => {
    const h = new DeviceHarness(compositor.path);
    const fdsBefore = native.openFdCount();
    const { c } = await h.context(1, 1);
    const cfd = await compositor.accept();
    const OK = VirtioGpuResp.OK_NODATA;

    // The guest asks for the registry; the compositor (this test) offers a seat, a data device
    // manager and shm; the guest binds them and makes a keyboard, a data source and a data device.
    expect(await h.query(1, cdSend(wl(1, 1, 2)))).toBe(OK);
    expect((await drain(cfd)).data).toEqual(wl(1, 1, 2));
    const globals = Buffer.concat([
      wl(2, 0, 1, 'wl_seat', 7),
      wl(2, 0, 2, 'wl_data_device_manager', 3),
      wl(2, 0, 3, 'wl_shm', 1),
    ]);
    native.sendmsg(cfd, globals, 0, globals.length, [], 0);
    expect(await h.poll(1, c)).toEqual({ cmd: 'receive', data: globals, ids: [] });
    const binds = Buffer.concat([
      wl(2, 0, 1, 'wl_seat', 7, 3),
      wl(2, 0, 2, 'wl_data_device_manager', 3, 4),
      wl(2, 0, 3, 'wl_shm', 1, 5),
      wl(3, 1, 6), // wl_seat.get_keyboard
      wl(4, 0, 7), // wl_data_device_manager.create_data_source
      wl(4, 1, 8, 3), // wl_data_device_manager.get_data_device
    ]);
    expect(await h.query(1, cdSend(binds))).toBe(OK);
    expect((await drain(cfd)).data).toEqual(binds);

    // Compositor → guest: keymaps with a memory fd, a pipe's read end and a socket, and a data
    // source's send with a pipe's write end: memory and write ends cross, the rest is dropped.
    const memfd = native.memfdCreate('keymap', 100);
    const [pr, pw] = native.pipe();
    const [s1, s2] = native.socketpair();
    const events = Buffer.concat([
      wl(6, 0, 1, 100), // wl_keyboard.keymap(format, fd, size)
      wl(7, 1, 'text/plain'), // wl_data_source.send(mime_type, fd)
      wl(6, 0, 1, 100),
      wl(6, 0, 1, 100),
    ]);
    expect(native.sendmsg(cfd, events, 0, events.length, [memfd, pw, pr, s1], 4)).toBe(
      events.length,
    );
    [memfd, pw, s1, s2].forEach((fd) => native.close(fd));
    const m1 = await h.poll(1, c);
    expect(m1.cmd).toBe('receive');
    if (m1.cmd !== 'receive') return;
    expect(m1.data).toEqual(events);
    expect(m1.ids.map((x) => [x.type, x.size])).toEqual([
      [CrossDomainId.VIRTGPU_BLOB, 100],
      [CrossDomainId.WRITE_PIPE, 0],
    ]);
    expect(m1.ids[0].id).toBe(2); // one counter from 2
    expect(m1.ids[1].id).toBe(3);
    expect(h.logs.warnings.join('\n')).toMatch(/pipe-read fd.*closed it/);
    expect(h.logs.warnings.join('\n')).toMatch(/socket fd.*closed it/);

    // The memory fd becomes a HOST3D blob (page-rounded size), once.
    expect(await h.type(host3dBlob(1, 10, m1.ids[0].id, 4096))).toBe(OK);
    expect(await h.type(host3dBlob(1, 11, m1.ids[0].id, 4096))).toBe(
      VirtioGpuResp.ERR_INVALID_PARAMETER,
    );
    const mapped = await h.run(mapBlob(10));
    expect(mapped.response.readUInt32LE(0)).toBe(VirtioGpuResp.OK_MAP_INFO);
    expect(mapped.response.readUInt32LE(24)).toBe(1);
    expect(native.fdKind(mapped.map!.fd)).toMatchObject({ kind: 'memory', size: 100 });
    native.close(mapped.map!.fd);

    // WRITE into the write pipe, hang up: the reader gets the data, then EOF.
    const data = Buffer.from('clipboard-bytes');
    expect(await h.query(1, cdWrite(m1.ids[1].id, data, true))).toBe(OK);
    const rb = Buffer.alloc(100);
    await waitFor('pipe data', () => native.waitReadable(pr, 0));
    expect(rb.toString('utf8', 0, native.readFd(pr, rb, 0, 100))).toBe('clipboard-bytes');
    expect(native.readFd(pr, rb, 0, 100)).toBe(0);
    native.close(pr);
    expect(await h.query(1, cdWrite(m1.ids[1].id, data, false))).toBe(VirtioGpuResp.ERR_UNSPEC);

    // Guest → compositor: wl_data_offer.receive with a READ_PIPE whose id the guest predicts
    // (0x80000001), for an offer the compositor made.
    const offer = Buffer.concat([wl(8, 0, 0xff000000), wl(0xff000000, 0, 'text/plain')]);
    native.sendmsg(cfd, offer, 0, offer.length, [], 0);
    expect(await h.poll(1, c)).toEqual({ cmd: 'receive', data: offer, ids: [] });
    const receive = (): Buffer => wl(0xff000000, 1, 'text/plain');
    const pipeId = (id: number) => [{ id, type: CrossDomainId.READ_PIPE }];
    expect(await h.query(1, cdSend(receive(), pipeId(0x80000001)))).toBe(OK);
    const got = await drain(cfd);
    expect(got.data).toEqual(receive());
    expect(got.fds.length).toBe(1);
    expect(native.fdKind(got.fds[0]).kind).toBe('pipe-write');
    const reply = Buffer.from('pasted text');
    native.writeFd(got.fds[0], reply, 0, reply.length);
    native.close(got.fds[0]);
    const r1 = await h.poll(1, c);
    expect(r1).toEqual({ cmd: 'read', id: 0x80000001, hangUp: false, data: reply });
    const r2 = await h.poll(1, c);
    expect(r2).toMatchObject({ cmd: 'read', id: 0x80000001, hangUp: true });

    // A wrong prediction is refused (the host allocated 0x80000002 for it).
    expect(await h.query(1, cdSend(receive(), pipeId(0x80000005)))).toBe(VirtioGpuResp.ERR_UNSPEC);
    expect(h.logs.warnings.join('\n')).toMatch(/predicted read pipe id 0x80000005.*0x80000002/);
    expect(
      await h.query(1, cdSend(receive(), [...pipeId(0x80000003), ...pipeId(0x80000004)])),
    ).toBe(VirtioGpuResp.ERR_UNSPEC);
    expect(h.logs.warnings.join('\n')).toMatch(/more than one READ_PIPE/);

    // A HOST3D blob goes to the compositor as a memory fd (wl_shm.create_pool); a guest blob cannot.
    expect(await h.query(1, cdImageReqs(10, 10, XR24))).toBe(OK);
    const reqs = parseReqs(h.memory.region(1 * RING));
    expect(await h.type(host3dBlob(1, 12, reqs.blobId, 4096))).toBe(OK);
    expect(await h.type(resourceCmd(VirtioGpuCmd.CTX_ATTACH_RESOURCE, 12, 1))).toBe(OK);
    const pool = wl(5, 0, 9, 4096);
    expect(await h.query(1, cdSend(pool, [{ id: 12, type: CrossDomainId.VIRTGPU_BLOB }]))).toBe(OK);
    const got2 = await drain(cfd);
    expect(got2.data).toEqual(pool);
    expect(native.fdKind(got2.fds[0])).toMatchObject({ kind: 'memory', size: 4096 });
    got2.fds.forEach((fd) => native.close(fd));
    expect(
      await h.query(1, cdSend(wl(5, 0, 10, 4096), [{ id: 1, type: CrossDomainId.VIRTGPU_BLOB }])),
    ).toBe(VirtioGpuResp.ERR_UNSPEC);
    expect(h.logs.warnings.join('\n')).toMatch(/guest blobs cannot be sent/);

    // The compositor hangs up: the guest is told why, then gets one empty RECEIVE; then nothing
    // until a pipe speaks.
    native.close(cfd);
    const lost = await h.poll(1, c);
    expect(lost.cmd).toBe('receive');
    if (lost.cmd !== 'receive') return;
    const [error] = wlEvents(lost.data).events;
    expect([error.id, error.opcode]).toEqual([1, 0]);
    expect(wlString(error.body, 8)).toMatch(/lost the host compositor/);
    expect(await h.poll(1, c)).toEqual({ cmd: 'receive', data: Buffer.alloc(0), ids: [] });
    let signalled = false;
    void h.run(submit(1, cdPoll(), h.nextFence(1))).then(() => (signalled = true));
    await sleep(200);
    expect(signalled).toBe(false);
    expect(await h.query(1, cdSend(wl(1, 0, 11)))).toBe(VirtioGpuResp.ERR_UNSPEC);
    // CTX_DESTROY answers the waiting fence.
    expect(await h.type(hdr(VirtioGpuCmd.CTX_DESTROY, 24, 1))).toBe(OK);
    await waitFor('the pending poll to be answered', () => signalled);

    h.device.destroy();
    expect(h.device.stats.fds).toBe(0);
    expect(native.openFdCount()).toBe(fdsBefore);
  });

  it('accepts the 16-, 20- and 36-byte INIT forms and query-only contexts', async () => {
    const h = new DeviceHarness(compositor.path);
    const fdsBefore = native.openFdCount();
    const rings = async (ctxId: number, q: number, c: number): Promise<void> => {
      expect(await h.type(ctxCreate(ctxId))).toBe(VirtioGpuResp.OK_NODATA);
      for (const id of [q, c]) {
        expect(await h.type(guestBlob(id, BigInt(id * RING), RING))).toBe(VirtioGpuResp.OK_NODATA);
        expect(await h.type(resourceCmd(VirtioGpuCmd.CTX_ATTACH_RESOURCE, id, ctxId))).toBe(
          VirtioGpuResp.OK_NODATA,
        );
      }
    };

    // Legacy (16 bytes): the channel ring is the query ring.
    await rings(1, 1, 2);
    const legacy = cdHeader(CrossDomainCmd.INIT, 16);
    legacy.writeUInt32LE(1, 8);
    legacy.writeUInt32LE(1, 12);
    expect(await h.type(submit(1, legacy))).toBe(VirtioGpuResp.OK_NODATA);
    const fd1 = await compositor.accept();
    await roundTrip(h, 1, 1 * RING, fd1, 2);

    // Current (36 bytes, with an unused uuid).
    await rings(2, 3, 4);
    const current = Buffer.concat([cdInit(3, 4), Buffer.alloc(16, 0xab)]);
    current.writeUInt16LE(36, 2);
    expect(await h.type(submit(2, current))).toBe(VirtioGpuResp.OK_NODATA);
    const fd2 = await compositor.accept();
    await roundTrip(h, 2, 4 * RING, fd2, 2);

    // Channel type 0: a query-only context, no compositor connection; a later INIT may add one.
    await rings(3, 5, 6);
    expect(await h.type(submit(3, cdInit(5, 6, 0)))).toBe(VirtioGpuResp.OK_NODATA);
    expect(await h.query(3, cdImageReqs(10, 10, R8))).toBe(VirtioGpuResp.OK_NODATA);
    expect(parseReqs(h.memory.region(5 * RING))).toMatchObject({
      strides: [10, 0, 0, 0],
      blobId: 2,
    });
    const ping = wl(1, 0, 2); // wl_display.sync
    expect(await h.query(3, cdSend(ping))).toBe(VirtioGpuResp.ERR_UNSPEC);
    expect(h.logs.warnings.join('\n')).toMatch(/SEND without a channel/);
    expect(await h.type(submit(3, cdInit(5, 6, 7)))).toBe(VirtioGpuResp.ERR_UNSPEC);
    expect(h.logs.warnings.join('\n')).toMatch(/channel type 7; only Wayland \(1\) is offered/);
    expect(await h.type(submit(3, cdInit(5, 6, 1)))).toBe(VirtioGpuResp.OK_NODATA);
    const fd3 = await compositor.accept();

    // A failed command abandons the rest of its buffer: the SEND after it never happens.
    const batch = Buffer.concat([cdImageReqs(10, 10, fourcc('YUYV')), cdSend(ping)]);
    expect(await h.query(3, batch)).toBe(VirtioGpuResp.ERR_UNSPEC);
    expect((await drain(fd3, 150)).data.length).toBe(0);
    // Several commands in one buffer run in order.
    const two = Buffer.concat([cdSend(wl(1, 0, 2)), cdPoll(), cdSend(wl(1, 0, 3))]);
    expect(await h.query(3, two)).toBe(VirtioGpuResp.OK_NODATA);
    expect((await drain(fd3, 150)).data).toEqual(Buffer.concat([wl(1, 0, 2), wl(1, 0, 3)]));

    h.device.destroy();
    [fd1, fd2, fd3].forEach((fd) => native.close(fd));
    expect(h.device.stats.fds).toBe(0);
    expect(native.openFdCount()).toBe(fdsBefore);
  });

  it('fails only the context that sends malformed commands', async () => {
    const h = new DeviceHarness(compositor.path);
    const fdsBefore = native.openFdCount();
    const good = await h.context(1, 1);
    const goodFd = await compositor.accept();
    const warned = (re: RegExp): void => {
      expect(h.logs.warnings.join('\n')).toMatch(re);
    };

    // Each case gets a fresh context; the severe ones disable it.
    let ctx = 10;
    const fresh = async (): Promise<{ id: number; c: number }> => {
      const id = ctx++;
      const rings = await h.context(id, id * 2);
      await compositor.accept().then((fd) => native.close(fd));
      return { id, c: rings.c };
    };
    const severe = async (cmds: Buffer, re: RegExp): Promise<void> => {
      const x = await fresh();
      expect(await h.query(x.id, cmds)).toBe(VirtioGpuResp.ERR_UNSPEC);
      warned(re);
      warned(new RegExp(`context ${x.id} \\(test\\): .*the context is disabled`));
      // A disabled context answers ring-1 fences at once with the end-of-file message.
      expect(await h.poll(x.id, x.c)).toEqual({ cmd: 'receive', data: Buffer.alloc(0), ids: [] });
      expect(await h.query(x.id, cdPoll())).toBe(VirtioGpuResp.ERR_UNSPEC);
    };

    await severe(cdHeader(CrossDomainCmd.POLL, 16, 0), /cmd_size 0, less than its 8-byte header/);
    await severe(cdHeader(CrossDomainCmd.SEND, 100), /SEND with cmd_size 100, less than 352/);
    await severe(
      Buffer.concat([cdPoll(), cdHeader(CrossDomainCmd.POLL, 8, 64)]),
      /cmd_size 64, past the end of the buffer/,
    );
    const many = cdSend(Buffer.from('x'.repeat(8)));
    many.writeUInt32LE(29, 8);
    await severe(many, /SEND with 29 identifiers; at most 28/);
    const long = cdSend(Buffer.from('x'.repeat(8)));
    long.writeUInt32LE(5000, 12);
    await severe(long, /SEND opaque_data_size 5000 runs past/);
    const longWrite = cdWrite(5, Buffer.from('abc'), false);
    longWrite.writeUInt32LE(4000, 16);
    await severe(longWrite, /WRITE opaque_data_size 4000 runs past/);
    await severe(cdHeader(99, 8), /unknown command 99/);
    await severe(cdHeader(CrossDomainCmd.INIT, 24), /INIT with cmd_size 24/);

    // Non-severe: answered ERR_UNSPEC, the context lives on.
    const x = await fresh();
    expect(await h.query(x.id, cdWrite(1234, Buffer.from('a'), false))).toBe(
      VirtioGpuResp.ERR_UNSPEC,
    );
    warned(/WRITE to identifier 0x4d2, which is not a write pipe/);
    expect(await h.query(x.id, cdSend(Buffer.from('abcd'), [{ id: 7, type: 2 }]))).toBe(
      VirtioGpuResp.ERR_UNSPEC,
    );
    warned(/has type 2; a guest sends only/);
    expect(await h.query(x.id, cdInit(x.id * 2, x.id * 2 + 1))).toBe(VirtioGpuResp.ERR_UNSPEC);
    warned(/a second INIT: this context already has its channel/);
    expect(await h.query(x.id, cdImageReqs(10, 10, fourcc('YUYV')))).toBe(VirtioGpuResp.ERR_UNSPEC);
    warned(/unsupported image format YUYV/);
    // The SEND of a resource attached to another context.
    expect(await h.query(x.id, cdSend(Buffer.from('abcd'), [{ id: 1, type: 1 }]))).toBe(
      VirtioGpuResp.ERR_UNSPEC,
    );
    warned(/resource 1, which is not attached to this context/);
    expect(await h.query(x.id, cdImageReqs(10, 10, XR24))).toBe(VirtioGpuResp.OK_NODATA);

    // INIT before the rings are attached; image requests before INIT.
    expect(await h.type(ctxCreate(50))).toBe(VirtioGpuResp.OK_NODATA);
    expect(await h.query(50, cdInit(1, 2))).toBe(VirtioGpuResp.ERR_UNSPEC);
    warned(/the query ring \(resource 1\) is not attached to this context/);
    expect(await h.query(50, cdImageReqs(10, 10, XR24))).toBe(VirtioGpuResp.ERR_UNSPEC);
    warned(/GET_IMAGE_REQUIREMENTS before INIT/);

    // Blob ids are per context: context 1's item is unknown to context x.
    expect(await h.query(1, cdImageReqs(10, 10, XR24))).toBe(VirtioGpuResp.OK_NODATA);
    const blobId = parseReqs(h.memory.region(good.q)).blobId;
    expect(await h.type(host3dBlob(50, 100, blobId, 4096))).toBe(
      VirtioGpuResp.ERR_INVALID_PARAMETER,
    );
    warned(new RegExp(`blob id ${blobId} is not an item of context 50`));
    expect(await h.type(host3dBlob(1, 100, blobId, 8192))).toBe(
      VirtioGpuResp.ERR_INVALID_PARAMETER,
    );
    warned(/size 8192 does not match the 4096 bytes/);

    // Device-level garbage: short headers, unknown commands and ids, out-of-range entries.
    expect(await h.type(Buffer.alloc(10))).toBe(VirtioGpuResp.ERR_UNSPEC);
    expect(await h.type(hdr(0x0999, 24))).toBe(VirtioGpuResp.ERR_UNSPEC);
    expect(await h.type(hdr(VirtioGpuCmd.SUBMIT_3D, 32, 77))).toBe(
      VirtioGpuResp.ERR_INVALID_CONTEXT_ID,
    );
    expect(await h.type(resourceCmd(VirtioGpuCmd.CTX_ATTACH_RESOURCE, 999, 1))).toBe(
      VirtioGpuResp.ERR_INVALID_RESOURCE_ID,
    );
    expect(await h.type(guestBlob(500, BigInt(1 << 20), RING))).toBe(
      VirtioGpuResp.ERR_INVALID_PARAMETER,
    );
    const badSubmit = submit(1, cdPoll());
    badSubmit.writeUInt32LE(1 << 20, 24);
    expect(await h.type(badSubmit)).toBe(VirtioGpuResp.ERR_INVALID_PARAMETER);
    expect(await h.type(ctxCreate(1))).toBe(VirtioGpuResp.ERR_INVALID_CONTEXT_ID);
    expect(await h.type(ctxCreate(60, 1))).toBe(VirtioGpuResp.ERR_INVALID_PARAMETER);

    // Through all this, context 1 still works: a real exchange with the compositor.
    await roundTrip(h, 1, good.c, goodFd, 2);

    h.device.destroy();
    native.close(goodFd);
    expect(h.device.stats.fds).toBe(0);
    expect(native.openFdCount()).toBe(fdsBefore);
  });

  it('answers every command of a random-garbage guest and stays consistent', async () => {
    const h = new DeviceHarness(compositor.path);
    const fdsBefore = native.openFdCount();
    const held: number[] = [];
    const acceptAll = (): void => {
      for (let fd = native.accept(compositor.listener.fd); fd >= 0;) {
        held.push(fd);
        fd = native.accept(compositor.listener.fd);
      }
    };
    await h.context(1, 1);
    await h.context(2, 3);
    acceptAll();
    let seed = 12345;
    const rand = (n: number): number => {
      // mulberry32: deterministic, and without the short cycles of a low-bit LCG
      seed = (seed + 0x6d2b79f5) >>> 0;
      let t = Math.imul(seed ^ (seed >>> 15), seed | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) % n;
    };
    const pick = <T>(xs: readonly T[]): T => xs[rand(xs.length)];
    const ids = [0, 1, 2, 3, 4, 7, 100, 101, 0x80000001, 0x80000002, 0xffffffff];
    const crossDomain = (): Buffer => {
      const cmd = pick([1, 2, 2, 2, 3, 4, 4, 4, 7, 7, 2, 4, 7, rand(4) ? 3 : pick([5, 6, 9, 99])]);
      let b: Buffer;
      switch (cmd) {
        case 1:
          b = cdInit(pick([1, 2, 3, 4, 9]), pick([1, 2, 3, 4, 9]), pick([0, 1, 2]));
          break;
        case 2:
          b = cdImageReqs(rand(50), rand(50), pick([XR24, NV12, YV12, R8, 0x12345678]));
          break;
        case 4: {
          const n = rand(8) === 0 ? rand(40) : rand(4);
          b = cdSend(
            Buffer.alloc(rand(64), 0x41),
            Array.from({ length: Math.min(n, 28) }, () => ({ id: pick(ids), type: rand(6) })),
          );
          b.writeUInt32LE(n, 8);
          if (rand(8) === 0) b.writeUInt32LE(rand(100000), 12);
          break;
        }
        case 7:
          b = cdWrite(pick(ids), Buffer.alloc(rand(40), 0x42), rand(2) === 1);
          if (rand(8) === 0) b.writeUInt32LE(rand(100000), 16);
          break;
        default:
          b = cdHeader(cmd, 8 + rand(3) * 8);
      }
      if (rand(40) === 0) b.writeUInt16LE(rand(2) ? rand(16) : rand(65536), 2);
      return b;
    };
    const tally = new Map<number, number>();
    let replies = 0;
    let sent = 0;
    for (let i = 0; i < 4000; i++) {
      let cmd: Buffer | Buffer[];
      const kind = rand(10);
      if (kind < 6) {
        const cmds = Buffer.concat(Array.from({ length: 1 + rand(3) }, crossDomain));
        const fence = rand(2) ? { id: BigInt(i + 1), ring: pick([0, 0, 3]) } : undefined;
        cmd = submit(1 + rand(3), cmds, fence);
      } else if (kind < 8) {
        cmd = pick([
          () => guestBlob(100 + rand(4), BigInt(rand(300) * RING), RING),
          () => host3dBlob(1 + rand(3), 100 + rand(4), rand(12), pick([4096, 8192, 0])),
          () =>
            resourceCmd(VirtioGpuCmd.CTX_ATTACH_RESOURCE, pick([1, 2, 3, 100, 101]), 1 + rand(3)),
          () => resourceCmd(VirtioGpuCmd.CTX_DETACH_RESOURCE, pick([100, 101, 102]), 1 + rand(3)),
          () => resourceCmd(VirtioGpuCmd.RESOURCE_UNREF, 100 + rand(4)),
          () => mapBlob(100 + rand(4)),
          () => resourceCmd(VirtioGpuCmd.RESOURCE_UNMAP_BLOB, 100 + rand(4)),
          () => ctxCreate(3, pick([0, 5, 6])),
          () => hdr(VirtioGpuCmd.CTX_DESTROY, 24, 3),
          // a well-formed run: a fresh query-only context whose image blob is created and mapped
          () => [
            hdr(VirtioGpuCmd.CTX_DESTROY, 24, 3),
            ctxCreate(3),
            resourceCmd(VirtioGpuCmd.CTX_ATTACH_RESOURCE, 1, 3),
            submit(3, Buffer.concat([cdInit(1, 1, 0), cdImageReqs(10, 10, XR24)])),
            resourceCmd(VirtioGpuCmd.RESOURCE_UNREF, 200),
            host3dBlob(3, 200, 2, 4096),
            mapBlob(200),
          ],
        ])();
      } else {
        cmd = Buffer.alloc(pick([8, 24, 32, 40, 56, 72, 96]));
        for (let j = 24; j < cmd.length; j++) cmd[j] = rand(3) === 0 ? rand(256) : 0;
        if (cmd.length >= 24) {
          cmd.writeUInt32LE(pick(Object.values(VirtioGpuCmd)), 0);
          cmd.writeUInt32LE(3 + rand(3), 16);
        }
      }
      for (const c of Array.isArray(cmd) ? cmd : [cmd]) {
        sent++;
        h.device.handleCommand(c, h.memory, (r) => {
          replies++;
          const t = r.response.readUInt32LE(0);
          tally.set(t, (tally.get(t) ?? 0) + 1);
          if (r.map) native.close(r.map.fd);
        });
      }
      acceptAll();
    }
    // Every command was answered (no ring-1 fence was asked for: rings 0 and 3 signal at once),
    // and both successes and refusals of every kind were exercised.
    expect(replies).toBe(sent);
    expect(tally.get(VirtioGpuResp.OK_NODATA)).toBeGreaterThan(100);
    expect(tally.get(VirtioGpuResp.ERR_UNSPEC)).toBeGreaterThan(100);
    expect(tally.get(VirtioGpuResp.OK_MAP_INFO)).toBeGreaterThan(0);
    h.device.destroy();
    held.forEach((fd) => native.close(fd));
    expect(h.device.stats.fds).toBe(0);
    expect(native.openFdCount()).toBe(fdsBefore);
  });
});

// ---- the local link, end to end -----------------------------------------------------------------

const hostBin = join(repoRoot, 'bin/tswl-host');

describe('tswl-host over the local link, with weston', () => {
  let w: HeadlessWeston;
  let host: Running;
  let linkPath: string;

  beforeAll(async () => {
    w = await startHeadlessWeston();
    linkPath = join(w.runtimeDir, 'tswl-link');
    host = start(
      hostBin,
      ['--wayland-sock', join(w.runtimeDir, 'wayland-0'), '--listen-local', linkPath, '-v'],
      w.env,
    );
    await waitFor(
      'tswl-host to listen',
      () => existsSync(linkPath) || host.child.exitCode !== null,
    );
    expect(host.child.exitCode).toBeNull();
  });
  afterAll(async () => {
    await stop(host);
    await w.stop();
    killAll();
  });
  afterEach(() => {
    expect(host.child.exitCode).toBeNull();
  });

  it('answers an unfenced command that succeeds only when the envelope asks, and every failure', async () => {
    const g = new LinkGuest(linkPath);
    try {
      await g.context(1);
      const quiet = (cmd: Buffer, tag: number): void => {
        const packet = Buffer.concat([Buffer.alloc(8), cmd]);
        packet.writeUInt32LE(tag, 0); // flags 0: no LOCAL_LINK_WANT_REPLY
        expect(native.sendmsg(g.fd, packet, 0, packet.length, [], 0)).toBe(packet.length);
      };
      quiet(submit(1, cdSend(wl(1, 0, 2))), 1000); // a wl_display.sync that goes through
      quiet(resourceCmd(VirtioGpuCmd.RESOURCE_UNREF, 999), 1001); // no such resource
      // a command that asks, after both: its reply shows the link has handled them
      expect((await g.call(hdr(VirtioGpuCmd.GET_CAPSET_INFO, 32))).response.readUInt32LE(0)).toBe(
        VirtioGpuResp.OK_CAPSET_INFO,
      );
      g.receive();
      await expect(g.reply(1000, 200)).rejects.toThrow(/no reply to tag 1000/);
      expect((await g.reply(1001)).response.readUInt32LE(0)).toBe(
        VirtioGpuResp.ERR_INVALID_RESOURCE_ID,
      );
    } finally {
      g.close();
    }
  });

  it('carries a Wayland exchange with weston through SEND and RECEIVE', async () => {
    const g = new LinkGuest(linkPath);
    try {
      const get = hdr(VirtioGpuCmd.GET_CAPSET, 32);
      get.writeUInt32LE(5, 24);
      const caps = (await g.call(get)).response;
      expect(caps.readUInt32LE(0)).toBe(VirtioGpuResp.OK_CAPSET);
      expect(caps.readUInt32LE(28)).toBe(2); // supported_channels: Wayland

      const { query, channel } = await g.context(1);
      // wl_display.get_registry(2), wl_display.sync(3)
      expect(await g.query(1, cdSend(Buffer.concat([wl(1, 1, 2), wl(1, 0, 3)])))).toBe(
        VirtioGpuResp.OK_NODATA,
      );
      const events = await g.pollUntil(1, channel, (ev) =>
        ev.some((e) => e.id === 3 && e.opcode === 0),
      );
      const globals = events
        .filter((e) => e.id === 2 && e.opcode === 0)
        .map((e) => ({
          name: e.body.readUInt32LE(0),
          iface: wlString(e.body, 4),
          version: e.body.readUInt32LE(e.body.length - 4),
        }));
      expect(globals.map((x) => x.iface)).toContain('wl_compositor');
      const shm = globals.find((x) => x.iface === 'wl_shm')!;
      expect(shm).toBeDefined();

      // Image requirements for a 10x10 XR24 buffer, then a HOST3D blob that is mapped.
      expect(await g.query(1, cdImageReqs(10, 10, XR24))).toBe(VirtioGpuResp.OK_NODATA);
      const reqs = parseReqs(query);
      expect(reqs).toMatchObject({
        strides: [40, 0, 0, 0],
        offsets: [0, 0, 0, 0],
        modifier: 0n,
        size: 4096,
        mapInfo: 1,
        memoryIdx: -1,
        physicalDeviceIdx: -1,
      });
      expect(reqs.blobId).toBeGreaterThanOrEqual(2);
      expect(await g.type(host3dBlob(1, 100, reqs.blobId, 4096))).toBe(VirtioGpuResp.OK_NODATA);
      expect(await g.type(resourceCmd(VirtioGpuCmd.CTX_ATTACH_RESOURCE, 100, 1))).toBe(
        VirtioGpuResp.OK_NODATA,
      );
      const mapped = await g.call(mapBlob(100, 0x10000n));
      expect(mapped.response.readUInt32LE(0)).toBe(VirtioGpuResp.OK_MAP_INFO);
      expect(mapped.response.readUInt32LE(24)).toBe(1); // CACHED
      expect(mapped.fds.length).toBe(1);
      expect(native.fdKind(mapped.fds[0])).toMatchObject({ kind: 'memory', size: 4096 });
      const pixels = native.mmap(mapped.fds[0], 0, 4096, true);
      pixels.fill(0x7f, 0, 400);
      native.munmap(pixels);
      native.close(mapped.fds[0]);

      expect(await g.query(1, cdImageReqs(10, 10, NV12))).toBe(VirtioGpuResp.OK_NODATA);
      expect(parseReqs(query)).toMatchObject({
        strides: [10, 10, 0, 0],
        offsets: [0, 100, 0, 0],
        size: 4096,
        blobId: reqs.blobId + 1,
      });
      expect(await g.query(1, cdImageReqs(10, 10, YV12))).toBe(VirtioGpuResp.OK_NODATA);
      expect(parseReqs(query)).toMatchObject({
        strides: [10, 5, 5, 0],
        offsets: [0, 100, 125, 0],
        size: 4096,
      });

      // The blob as a wl_shm pool: bind wl_shm (4), create_pool(5, fd, 4096),
      // create_buffer(6, 0, 10, 10, 40, XRGB8888), then sync(7).
      const msgs = Buffer.concat([
        wl(2, 0, shm.name, 'wl_shm', 1, 4),
        wl(4, 0, 5, 4096),
        wl(5, 0, 6, 0, 10, 10, 40, 1),
        wl(1, 0, 7),
      ]);
      expect(await g.query(1, cdSend(msgs, [{ id: 100, type: CrossDomainId.VIRTGPU_BLOB }]))).toBe(
        VirtioGpuResp.OK_NODATA,
      );
      const after = await g.pollUntil(1, channel, (ev) =>
        ev.some((e) => (e.id === 7 && e.opcode === 0) || (e.id === 1 && e.opcode === 0)),
      );
      expect(after.find((e) => e.id === 1 && e.opcode === 0)).toBeUndefined(); // no wl_display.error
      expect(after.some((e) => e.id === 4 && e.opcode === 0)).toBe(true); // wl_shm.format
    } finally {
      g.close();
    }
  });

  it('a guest that truncates its ring file under the host fails its own context only', async () => {
    const g = new LinkGuest(linkPath);
    const other = new LinkGuest(linkPath);
    try {
      await g.context(1);
      await other.context(1);
      ftruncateSync(g.memfdOf(10), 0); // the query ring
      expect(await g.query(1, cdImageReqs(10, 10, XR24))).toBe(VirtioGpuResp.ERR_UNSPEC);
      await waitFor('the reason', () =>
        /cannot write the query ring: the guest memory file was truncated/.test(host.output()),
      );
      expect(await other.query(1, cdImageReqs(10, 10, XR24))).toBe(VirtioGpuResp.OK_NODATA);
      expect(host.child.exitCode).toBeNull();
    } finally {
      g.close();
      other.close();
    }
  });

  it('survives misbehaving guests, keeps serving others and leaks no fd', async () => {
    // A first guest warms the host up (lazily opened fds are not leaks).
    const idle = (): boolean => {
      const out = host.output();
      const n = (re: RegExp): number => (out.match(re) ?? []).length;
      return n(/: connected$/gm) === n(/: disconnected, everything it had released$/gm);
    };
    const warm = new LinkGuest(linkPath);
    await warm.context(1);
    warm.close();
    await waitFor('the warm-up guest to go', idle);
    const baseline = fdCount(host.child.pid!);

    // A bad guest: a context with resources, an outstanding poll, then garbage of every kind.
    const bad = new LinkGuest(linkPath);
    const { channel } = await bad.context(1);
    expect(fdCount(host.child.pid!)).toBeGreaterThan(baseline);
    expect(await bad.query(1, cdImageReqs(64, 64, XR24))).toBe(VirtioGpuResp.OK_NODATA);
    const pollTag = bad.post(submit(1, cdPoll(), bad.fence(1)));
    expect(await bad.query(1, cdHeader(CrossDomainCmd.POLL, 16, 0))).toBe(VirtioGpuResp.ERR_UNSPEC);
    // The disabled context answered the outstanding poll with the end-of-file message.
    expect((await bad.reply(pollTag)).response.readUInt32LE(0)).toBe(VirtioGpuResp.OK_NODATA);
    expect(parseRing(channel)).toEqual({ cmd: 'receive', data: Buffer.alloc(0), ids: [] });
    await bad.context(2);
    const many = cdSend(Buffer.from('12345678'));
    many.writeUInt32LE(40, 8);
    expect(await bad.query(2, many)).toBe(VirtioGpuResp.ERR_UNSPEC);
    await bad.context(3);
    const long = cdSend(Buffer.from('12345678'));
    long.writeUInt32LE(60000, 12);
    expect(await bad.query(3, long)).toBe(VirtioGpuResp.ERR_UNSPEC);
    expect(await bad.type(ctxCreate(4))).toBe(VirtioGpuResp.OK_NODATA);
    expect(await bad.query(4, cdInit(40, 41))).toBe(VirtioGpuResp.ERR_UNSPEC);
    await bad.context(5);
    expect(await bad.query(5, cdInit(50, 51))).toBe(VirtioGpuResp.ERR_UNSPEC);
    expect(await bad.type(host3dBlob(5, 200, 9999, 4096))).toBe(
      VirtioGpuResp.ERR_INVALID_PARAMETER,
    );
    await bad.context(6);
    expect(await bad.query(6, cdHeader(42, 8))).toBe(VirtioGpuResp.ERR_UNSPEC);
    expect(await bad.type(hdr(0x0abc, 24))).toBe(VirtioGpuResp.ERR_UNSPEC);
    // A GUEST blob without its memfd, and a stray fd on a command that takes none.
    expect(await bad.type(guestBlob(300, 0n, RING))).toBe(VirtioGpuResp.ERR_INVALID_PARAMETER);
    const stray = native.memfdCreate('stray', 10);
    expect(await bad.type(hdr(VirtioGpuCmd.GET_CAPSET_INFO, 32), [stray])).toBe(
      VirtioGpuResp.OK_CAPSET_INFO,
    );
    native.close(stray);
    // A HOST3D blob that is mapped and never unmapped, and a poll left outstanding.
    expect(await bad.query(5, cdImageReqs(10, 10, R8))).toBe(VirtioGpuResp.OK_NODATA);
    expect(await bad.type(host3dBlob(5, 201, 2, 4096))).toBe(VirtioGpuResp.OK_NODATA);
    expect(await bad.type(mapBlob(201))).toBe(VirtioGpuResp.OK_MAP_INFO);
    bad.post(submit(5, cdPoll(), bad.fence(1)));

    // Meanwhile a second guest works normally.
    const other = new LinkGuest(linkPath);
    const rings = await other.context(7);
    expect(await other.query(7, cdSend(Buffer.concat([wl(1, 1, 2), wl(1, 0, 3)])))).toBe(
      VirtioGpuResp.OK_NODATA,
    );
    await other.pollUntil(7, rings.channel, (ev) => ev.some((e) => e.id === 3 && e.opcode === 0));

    const log = host.output();
    expect(log).toMatch(/cmd_size 0, less than its 8-byte header; the context is disabled/);
    expect(log).toMatch(/SEND with 40 identifiers; at most 28; the context is disabled/);
    expect(log).toMatch(/SEND opaque_data_size 60000 runs past/);
    expect(log).toMatch(/the query ring \(resource 40\) is not attached to this context/);
    expect(log).toMatch(/a second INIT: this context already has its channel/);
    expect(log).toMatch(/unknown command 42/);
    expect(log).toMatch(/blob id 9999 is not an item of context 5/);
    expect(log).toMatch(/command 0xabc: unknown or unsupported command/);
    expect(log).toMatch(/a GUEST blob takes exactly one memfd with its command; 0 came/);
    expect(log).toMatch(/1 fd\(s\) came with a command that did not take them/);

    // A broken envelope disconnects only that guest.
    const broken = new LinkGuest(linkPath);
    native.sendmsg(broken.fd, Buffer.from([1, 2, 3]), 0, 3, [], 0);
    await waitFor('the broken guest to be dropped', () =>
      /a 3-byte packet, shorter than the envelope; disconnecting it/.test(host.output()),
    );
    broken.close();

    bad.close();
    other.close();
    await waitFor(
      'every fd of the departed guests to be closed',
      () => fdCount(host.child.pid!) === baseline,
    );

    // And a new guest is served as the first one was.
    const next = new LinkGuest(linkPath);
    const r = await next.context(1);
    expect(await next.query(1, cdSend(Buffer.concat([wl(1, 1, 2), wl(1, 0, 3)])))).toBe(
      VirtioGpuResp.OK_NODATA,
    );
    await next.pollUntil(1, r.channel, (ev) => ev.some((e) => e.id === 3 && e.opcode === 0));
    next.close();
    await waitFor('the last guest to go', () => fdCount(host.child.pid!) === baseline);
  });

  it('answers command-line mistakes with one line', async () => {
    const noSock = start(hostBin, ['--listen-local', join(w.runtimeDir, 'x')], w.env);
    expect(await noSock.exited).toBe(1);
    expect(noSock.output().trim()).toBe('tswl-host: --wayland-sock is required');
    const noCompositor = start(
      hostBin,
      ['--wayland-sock', join(w.runtimeDir, 'nope'), '--listen-local', join(w.runtimeDir, 'x')],
      w.env,
    );
    expect(await noCompositor.exited).toBe(1);
    expect(noCompositor.output().trim()).toMatch(
      /^tswl-host: cannot reach the compositor at .*nope: No such file or directory \(ENOENT\)$/,
    );
    const inUse = start(
      hostBin,
      ['--wayland-sock', join(w.runtimeDir, 'wayland-0'), '--listen-local', linkPath],
      w.env,
    );
    expect(await inUse.exited).toBe(1);
    expect(inUse.output().trim()).toBe(
      `tswl-host: ${linkPath} is already in use by another tswl-host`,
    );
    // A socket left by a host that died is replaced; SIGTERM removes the socket again.
    const stalePath = join(w.runtimeDir, 'stale-link');
    native.close(native.listenSeqpacket(stalePath));
    const second = start(
      hostBin,
      ['--wayland-sock', join(w.runtimeDir, 'wayland-0'), '--listen-local', stalePath],
      w.env,
    );
    await waitFor('the second host to listen', () => {
      try {
        native.close(native.connectSeqpacket(stalePath));
        return true;
      } catch {
        return false;
      }
    });
    expect(await stop(second)).toBe(0);
    expect(existsSync(stalePath)).toBe(false);
    const help = start(hostBin, ['--help'], w.env);
    expect(await help.exited).toBe(0);
    expect(help.output()).toMatch(/--listen-local <path>/);
  });

  it('says READY=1 on NOTIFY_SOCKET once guests can connect, and STOPPING=1 at SIGTERM', async () => {
    // A notify socket as systemd's (datagrams), printing what arrives, one line per datagram.
    const notifyPath = join(w.runtimeDir, 'notify');
    const receiver = start(
      'python3',
      [
        '-u',
        '-c',
        [
          'import socket',
          's = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)',
          `s.bind(${JSON.stringify(notifyPath)})`,
          'print("bound")',
          'while True: print(s.recv(4096).decode().replace("\\n", "|"))',
        ].join('\n'),
      ],
      w.env,
    );
    await waitFor('the receiver', () => receiver.output().includes('bound'));
    const link = join(w.runtimeDir, 'notify-link');
    const notified = start(
      hostBin,
      ['--wayland-sock', join(w.runtimeDir, 'wayland-0'), '--listen-local', link],
      { ...w.env, NOTIFY_SOCKET: notifyPath },
    );
    await waitFor('READY=1', () => receiver.output().includes('READY=1'));
    expect(receiver.output()).toContain(`READY=1|STATUS=serving on ${link}`);
    native.close(native.connectSeqpacket(link)); // ready means ready
    expect(await stop(notified)).toBe(0);
    await waitFor('STOPPING=1', () => receiver.output().includes('STOPPING=1'));
    await stop(receiver, 'SIGKILL');
  });
});

describe('tswl-host with a seat: the keymap fd (weston on Xvfb)', () => {
  let runtimeDir: string;
  let xvfb: Running;
  let weston: Running;
  let host: Running;
  let linkPath: string;

  beforeAll(async () => {
    runtimeDir = mkdtempSync(join(tmpdir(), 'tswl-rt-'));
    const env: NodeJS.ProcessEnv = { ...process.env, XDG_RUNTIME_DIR: runtimeDir };
    delete env.DISPLAY;
    delete env.WAYLAND_DISPLAY;
    xvfb = start(
      'Xvfb',
      ['-displayfd', '1', '-screen', '0', '640x480x24', '-nolisten', 'tcp'],
      env,
    );
    const display = await waitFor(
      'Xvfb to pick a display',
      () => /^(\d+)$/m.exec(xvfb.output())?.[1],
    );
    weston = start(
      'weston',
      [
        '--backend=x11-backend.so',
        '--use-pixman',
        '--socket=wayland-0',
        '--idle-time=0',
        '--no-config',
      ],
      { ...env, DISPLAY: `:${display}` },
    );
    const sock = join(runtimeDir, 'wayland-0');
    await waitFor('weston to listen', () => existsSync(sock), 20000);
    linkPath = join(runtimeDir, 'tswl-link');
    host = start(hostBin, ['--wayland-sock', sock, '--listen-local', linkPath], env);
    await waitFor(
      'tswl-host to listen',
      () => existsSync(linkPath) || host.child.exitCode !== null,
      20000,
    );
  });
  afterAll(async () => {
    await stop(host);
    await stop(weston);
    await stop(xvfb);
    rmSync(runtimeDir, { recursive: true, force: true });
  });

  it('exports the keymap as a one-use blob the guest maps', async () => {
    const g = new LinkGuest(linkPath);
    try {
      const { channel } = await g.context(1);
      expect(await g.query(1, cdSend(Buffer.concat([wl(1, 1, 2), wl(1, 0, 3)])))).toBe(
        VirtioGpuResp.OK_NODATA,
      );
      const events = await g.pollUntil(1, channel, (ev) =>
        ev.some((e) => e.id === 3 && e.opcode === 0),
      );
      const seat = events.find(
        (e) => e.id === 2 && e.opcode === 0 && wlString(e.body, 4) === 'wl_seat',
      );
      expect(seat).toBeDefined();
      // bind wl_seat v5 as 4, get_keyboard as 5, sync as 6: the keymap event carries a memfd.
      expect(
        await g.query(
          1,
          cdSend(
            Buffer.concat([
              wl(2, 0, seat!.body.readUInt32LE(0), 'wl_seat', 5, 4),
              wl(4, 1, 5),
              wl(1, 0, 6),
            ]),
          ),
        ),
      ).toBe(VirtioGpuResp.OK_NODATA);
      const ids: { id: number; type: number; size: number }[] = [];
      const more = await g.pollUntil(
        1,
        channel,
        (ev) => ev.some((e) => e.id === 6 && e.opcode === 0),
        ids,
      );
      const keymap = more.find((e) => e.id === 5 && e.opcode === 0);
      expect(keymap).toBeDefined();
      const size = keymap!.body.readUInt32LE(4);
      expect(ids).toEqual([{ id: expect.any(Number), type: CrossDomainId.VIRTGPU_BLOB, size }]);
      expect(ids[0].id).toBeGreaterThanOrEqual(2);

      const pageSize = Math.ceil(size / 4096) * 4096;
      expect(await g.type(host3dBlob(1, 100, ids[0].id, pageSize))).toBe(VirtioGpuResp.OK_NODATA);
      const mapped = await g.call(mapBlob(100));
      expect(mapped.response.readUInt32LE(0)).toBe(VirtioGpuResp.OK_MAP_INFO);
      const text = native.mmap(mapped.fds[0], 0, size, false);
      expect(text.toString('utf8', 0, 10)).toBe('xkb_keymap');
      native.munmap(text);
      native.close(mapped.fds[0]);
      // One use only.
      expect(await g.type(host3dBlob(1, 101, ids[0].id, pageSize))).toBe(
        VirtioGpuResp.ERR_INVALID_PARAMETER,
      );
    } finally {
      g.close();
    }
  });
});

// tswl-host's vhost-user back-end against a test front-end (test/support/vhost-user-frontend.ts)
// that speaks the real protocol over a real Unix socket to the real back-end, here in this
// process so that its state can be inspected.

import { HostWayland } from '../src/host/wayland.js';
import { fstatSync, mkdtempSync, readSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { fourcc } from '../src/host/gralloc.js';
import {
  VhostUserServer,
  type VhostUserConnection,
  fileForMapping,
} from '../src/host/vhost-user.js';
import {
  BackendReq,
  Flag,
  OFFERED_PROTOCOL_FEATURES,
  Req,
} from '../src/host/vhost-user-protocol.js';
import * as native from '../src/native/index.js';
import {
  BlobMem,
  CrossDomainCmd,
  VirtioGpuCmd,
  VirtioGpuFlag,
  VirtioGpuResp,
} from '../src/virtgpu/protocol.js';
import { sleep } from './support/virtgpu-commands.js';
import {
  CHANNEL_RING_AT,
  CMD_AT,
  GPA,
  QUERY_RING_AT,
  QSIZE,
  QUEUE_AT,
  RAM_SIZE,
  RESP_AT,
  TestFrontend,
  message,
  readMessage,
  u64,
  until,
} from './support/vhost-user-frontend.js';

function hdr(type: number, size: number, ctxId = 0, fenceId?: bigint): Buffer {
  const b = Buffer.alloc(size);
  b.writeUInt32LE(type, 0);
  if (fenceId !== undefined) {
    b.writeUInt32LE(VirtioGpuFlag.FENCE | VirtioGpuFlag.INFO_RING_IDX, 4);
    b.writeBigUInt64LE(fenceId, 8);
  }
  b.writeUInt32LE(ctxId, 16);
  return b;
}

function submit(ctxId: number, cmds: Buffer, fenceId?: bigint): Buffer {
  const b = Buffer.concat([hdr(VirtioGpuCmd.SUBMIT_3D, 32, ctxId, fenceId), cmds]);
  b.writeUInt32LE(cmds.length, 24);
  return b;
}

function resourceCmd(type: number, resId: number, ctxId = 0): Buffer {
  const b = hdr(type, 32, ctxId);
  b.writeUInt32LE(resId, 24);
  return b;
}

const type = (r: Buffer): number => r.readUInt32LE(0);

describe('vhost-user back-end', () => {
  let dir = '';
  let server: VhostUserServer | null = null;
  let frontends: TestFrontend[] = [];
  const warnings: string[] = [];
  const gone: string[] = [];

  function startServer(): string {
    dir = mkdtempSync(join(tmpdir(), 'tswl-vhost-'));
    const path = join(dir, 'gpu.sock');
    server = new VhostUserServer(path, {
      wayland: new HostWayland({ socket: join(dir, 'no-compositor') }),
      log: { verbose: false, info: () => {}, warn: (m: string) => warnings.push(m) },
      onGuestGone: (name) => gone.push(name),
    });
    server.listen();
    return path;
  }

  afterEach(() => {
    for (const f of frontends) f.close();
    frontends = [];
    server?.close();
    server = null;
    if (dir) rmSync(dir, { recursive: true, force: true });
    warnings.length = 0;
    gone.length = 0;
  });

  async function connect(path: string): Promise<{ f: TestFrontend; c: VhostUserConnection }> {
    const f = new TestFrontend(path);
    frontends.push(f);
    const before = server!.connectionCount;
    await until('the connection', () => server!.connectionCount > before);
    const c = server!.current[server!.current.length - 1];
    await f.handshake();
    return { f, c };
  }

  it('negotiates as QEMU 11.1 expects and serves the control queue', async () => {
    const { f } = await connect(startServer());
    expect(OFFERED_PROTOCOL_FEATURES & (1n << 21n)).toBe(0n);

    const info = hdr(VirtioGpuCmd.GET_CAPSET_INFO, 32);
    const r = await f.command(info, 40);
    expect(type(r)).toBe(VirtioGpuResp.OK_CAPSET_INFO);
    expect(r.readUInt32LE(24)).toBe(5);
    expect(r.readUInt32LE(32)).toBe(16);

    const caps = hdr(VirtioGpuCmd.GET_CAPSET, 32);
    caps.writeUInt32LE(5, 24);
    const c = await f.command(caps, 40);
    expect(type(c)).toBe(VirtioGpuResp.OK_CAPSET);
    expect(c.length).toBe(40);
    expect(c.readUInt32LE(24)).toBe(1); // version 1

    const display = await f.command(hdr(0x0100, 24), 408);
    expect(type(display)).toBe(0x1101);
    expect(display.length).toBe(408);

    // The cursor queue returns its buffers.
    f.post(1, [{ addr: GPA + 0x50000n, len: 56, write: false }]);
    expect(await f.used(1)).toEqual({ id: 0, len: 0 });
    expect(warnings).toEqual([]);
  });

  it('writes GUEST rings in guest RAM and maps host blobs with SHMEM_MAP', async () => {
    const { f, c } = await connect(startServer());
    const create = hdr(VirtioGpuCmd.CTX_CREATE, 96, 1);
    create.writeUInt32LE(4, 24);
    create.writeUInt32LE(5, 28);
    create.write('test', 32);
    expect(type(await f.command(create))).toBe(VirtioGpuResp.OK_NODATA);
    for (const [id, at] of [
      [1, QUERY_RING_AT],
      [2, CHANNEL_RING_AT],
    ]) {
      const b = hdr(VirtioGpuCmd.RESOURCE_CREATE_BLOB, 56 + 16);
      b.writeUInt32LE(id, 24);
      b.writeUInt32LE(BlobMem.GUEST, 28);
      b.writeUInt32LE(1, 32);
      b.writeUInt32LE(1, 36);
      b.writeBigUInt64LE(4096n, 48);
      b.writeBigUInt64LE(GPA + BigInt(at), 56);
      b.writeUInt32LE(4096, 64);
      expect(type(await f.command(b))).toBe(VirtioGpuResp.OK_NODATA);
      expect(type(await f.command(resourceCmd(VirtioGpuCmd.CTX_ATTACH_RESOURCE, id, 1)))).toBe(
        VirtioGpuResp.OK_NODATA,
      );
    }
    // A query-only context (channel type 0), then image requirements into the query ring.
    const init = Buffer.alloc(20);
    init[0] = CrossDomainCmd.INIT;
    init.writeUInt16LE(20, 2);
    init.writeUInt32LE(1, 8);
    init.writeUInt32LE(2, 12);
    init.writeUInt32LE(0, 16);
    expect(type(await f.command(submit(1, init)))).toBe(VirtioGpuResp.OK_NODATA);
    const reqs = Buffer.alloc(24);
    reqs[0] = CrossDomainCmd.GET_IMAGE_REQUIREMENTS;
    reqs.writeUInt16LE(24, 2);
    reqs.writeUInt32LE(64, 8);
    reqs.writeUInt32LE(32, 12);
    reqs.writeUInt32LE(fourcc('XR24'), 16);
    reqs.writeUInt32LE(0x11, 20);
    f.ram.fill(0, QUERY_RING_AT, QUERY_RING_AT + 4096);
    expect(type(await f.command(submit(1, reqs, 7n)))).toBe(VirtioGpuResp.OK_NODATA);
    // The device wrote the answer into guest RAM, at the query ring's guest-physical address.
    expect(f.ram.readUInt32LE(QUERY_RING_AT)).toBe(256); // stride of 64 XR24 pixels
    const size = Number(f.ram.readBigUInt64LE(QUERY_RING_AT + 40));
    const blobId = f.ram.readUInt32LE(QUERY_RING_AT + 48);
    expect(size).toBeGreaterThanOrEqual(256 * 32);

    const host = hdr(VirtioGpuCmd.RESOURCE_CREATE_BLOB, 56, 1);
    host.writeUInt32LE(3, 24);
    host.writeUInt32LE(BlobMem.HOST3D, 28);
    host.writeUInt32LE(3, 32);
    host.writeBigUInt64LE(BigInt(blobId), 40);
    host.writeBigUInt64LE(BigInt(Math.ceil(size / 4096) * 4096), 48);
    expect(type(await f.command(host))).toBe(VirtioGpuResp.OK_NODATA);

    // RESOURCE_MAP_BLOB: the back-end asks us (the VMM) to map the blob's fd, and answers the
    // guest only once we acknowledged.
    const map = hdr(VirtioGpuCmd.RESOURCE_MAP_BLOB, 40);
    map.writeUInt32LE(3, 24);
    map.writeBigUInt64LE(0x200000n, 32);
    map.copy(f.ram, CMD_AT);
    f.post(0, [
      { addr: GPA + BigInt(CMD_AT), len: 40, write: false },
      { addr: GPA + BigInt(RESP_AT), len: 32, write: true },
    ]);
    const req = await readMessage(f.backendEnd);
    expect(req.req).toBe(BackendReq.SHMEM_MAP);
    expect(req.flags).toBe(Flag.VERSION | Flag.NEED_REPLY);
    expect(req.body.length).toBe(40);
    expect(req.body[0]).toBe(1); // shmid: the host-visible region
    expect(req.body.readBigUInt64LE(8)).toBe(0n); // fd_offset
    expect(req.body.readBigUInt64LE(16)).toBe(0x200000n); // shm_offset
    expect(Number(req.body.readBigUInt64LE(24))).toBeGreaterThanOrEqual(size);
    expect(req.body.readBigUInt64LE(32)).toBe(1n); // read/write
    expect(req.fds.length).toBe(1);
    const kind = native.fdKind(req.fds[0]);
    expect(kind.kind).toBe('memory');
    native.close(req.fds[0]);
    await sleep(20);
    expect(f.ram.readUInt16LE(QUEUE_AT[0] + 0x800 + 2)).toBe(8); // not answered yet
    const ack = message(BackendReq.SHMEM_MAP, u64(0), Flag.VERSION | Flag.REPLY);
    native.sendmsg(f.backendEnd, ack, 0, ack.length, [], 0);
    await f.used(0);
    expect(f.ram.readUInt32LE(RESP_AT)).toBe(VirtioGpuResp.OK_MAP_INFO);

    // UNMAP_BLOB → SHMEM_UNMAP of the same range.
    resourceCmd(VirtioGpuCmd.RESOURCE_UNMAP_BLOB, 3).copy(f.ram, CMD_AT);
    f.post(0, [
      { addr: GPA + BigInt(CMD_AT), len: 32, write: false },
      { addr: GPA + BigInt(RESP_AT), len: 24, write: true },
    ]);
    const un = await readMessage(f.backendEnd);
    expect(un.req).toBe(BackendReq.SHMEM_UNMAP);
    expect(un.body.readBigUInt64LE(16)).toBe(0x200000n);
    expect(un.fds).toEqual([]);
    const ack2 = message(BackendReq.SHMEM_UNMAP, u64(0), Flag.VERSION | Flag.REPLY);
    native.sendmsg(f.backendEnd, ack2, 0, ack2.length, [], 0);
    await f.used(0);
    expect(f.ram.readUInt32LE(RESP_AT)).toBe(VirtioGpuResp.OK_NODATA);
    expect(c.device.stats.resources).toBe(3);
    expect(warnings).toEqual([]);
  });

  it('survives a hostile guest: bad descriptors, loops, addresses outside RAM', async () => {
    const { f, c } = await connect(startServer());
    // A readable descriptor outside guest RAM: returned unanswered, the queue goes on.
    f.post(0, [{ addr: GPA + BigInt(RAM_SIZE) - 8n, len: 64, write: false }]);
    expect(await f.used(0)).toEqual({ id: 0, len: 0 });
    // A writable buffer before the readable one.
    f.post(0, [
      { addr: GPA + BigInt(RESP_AT), len: 64, write: true },
      { addr: GPA + BigInt(CMD_AT), len: 24, write: false },
    ]);
    expect((await f.used(0)).len).toBe(0);
    // A loop: descriptor 0 → 1 → 0 …
    f.post(0, [
      { addr: GPA + BigInt(CMD_AT), len: 24, write: false },
      { addr: GPA + BigInt(CMD_AT), len: 24, write: false },
    ]);
    f.ram.writeUInt16LE(0, QUEUE_AT[0] + 16 + 14);
    f.ram.writeUInt16LE(1, QUEUE_AT[0] + 16 + 12);
    expect((await f.used(0)).len).toBe(0);
    // A zero-length command and a too-short one get an error response, not a hang.
    const r = await f.command(Buffer.alloc(0), 24);
    expect(type(r)).toBe(VirtioGpuResp.ERR_UNSPEC);
    // Still serving.
    expect(type(await f.command(hdr(VirtioGpuCmd.GET_CAPSET_INFO, 32), 40))).toBe(
      VirtioGpuResp.OK_CAPSET_INFO,
    );
    // A head index outside the table breaks only this queue.
    const avail = QUEUE_AT[0] + 0x400;
    const idx = f.ram.readUInt16LE(avail + 2);
    f.ram.writeUInt16LE(QSIZE + 5, avail + 4 + 2 * (idx % QSIZE));
    f.ram.writeUInt16LE((idx + 1) & 0xffff, avail + 2);
    native.eventfdSignal(f.kick[0]);
    await until('the warning', () => warnings.some((w) => w.includes('stopped')));
    expect(server!.connectionCount).toBe(1);
    expect(c.closed).toBe(false);
  });

  it('releases a killed VM’s memory and fds and accepts the next one', async () => {
    const path = startServer();
    const fdsBefore = native.openFdCount();
    const first = await connect(path);
    const create = hdr(VirtioGpuCmd.CTX_CREATE, 96, 1);
    create.writeUInt32LE(5, 28);
    expect(type(await first.f.command(create))).toBe(VirtioGpuResp.OK_NODATA);
    // A map request left unanswered when the VM dies mid-frame.
    const host = hdr(VirtioGpuCmd.RESOURCE_CREATE_BLOB, 56 + 16);
    host.writeUInt32LE(1, 24);
    host.writeUInt32LE(BlobMem.GUEST, 28);
    host.writeUInt32LE(1, 36);
    host.writeBigUInt64LE(4096n, 48);
    host.writeBigUInt64LE(GPA + BigInt(QUERY_RING_AT), 56);
    host.writeUInt32LE(4096, 64);
    expect(type(await first.f.command(host))).toBe(VirtioGpuResp.OK_NODATA);
    first.f.close();
    frontends = frontends.filter((x) => x !== first.f);
    await until('the VM to be released', () => gone.length === 1);
    expect(first.c.closed).toBe(true);
    expect(first.c.ram.regionCount).toBe(0);
    expect(first.c.device.stats).toEqual({
      contexts: 0,
      resources: 0,
      fds: 0,
      items: 0,
      blobBytes: 0,
      fences: 0,
      queuedBytes: 0,
    });
    expect(native.openFdCount()).toBe(fdsBefore);

    const second = await connect(path);
    expect(type(await second.f.command(hdr(VirtioGpuCmd.GET_CAPSET_INFO, 32), 40))).toBe(
      VirtioGpuResp.OK_CAPSET_INFO,
    );
  });

  it('ends a connection that breaks the protocol, and keeps listening', async () => {
    const path = startServer();
    const f = new TestFrontend(path);
    frontends.push(f);
    await until('the connection', () => server!.connectionCount === 1);
    const huge = Buffer.alloc(12);
    huge.writeUInt32LE(Req.SET_FEATURES, 0);
    huge.writeUInt32LE(Flag.VERSION, 4);
    huge.writeUInt32LE(1 << 20, 8);
    native.sendmsg(f.sock, huge, 0, 12, [], 0);
    await until('the disconnect', () => server!.connectionCount === 0);
    expect(warnings.join('\n')).toMatch(/vhost-user message/);
    await connect(path);
  });
});

describe('SHMEM_MAP file', () => {
  // QEMU refuses to map past the end of the file (seen with weston's 64434-byte keymap)
  it('is a page-sized copy when the file is shorter than the blob', () => {
    const short = native.memfdCreate('short', 5000);
    writeSync(short, Buffer.from('keymap'), 0, 6, 0);
    const fd = fileForMapping(short, 8192);
    try {
      expect(fd).not.toBe(short);
      expect(() => fstatSync(short)).toThrow(); // consumed
      expect(fstatSync(fd).size).toBe(8192);
      const head = Buffer.alloc(6);
      readSync(fd, head, 0, 6, 0);
      expect(head.toString()).toBe('keymap');
    } finally {
      native.close(fd);
    }
    const whole = native.memfdCreate('whole', 8192);
    expect(fileForMapping(whole, 8192)).toBe(whole);
    native.close(whole);
  });
});

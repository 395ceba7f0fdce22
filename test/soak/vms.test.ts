// VMs killed mid-frame, one after another, against a running `tswl-host --vhost-user`: each VM
// (the test front-end, as QEMU and a guest driver) sets up a Wayland channel to weston, then dies
// with a blob mapping waiting for the VMM's ack, a ring-1 poll waiting, and half a Wayland
// message in its channel. After every one tswl-host is back at its fds, and it serves the next.
//   TSWL_SOAK_VMS=100 npm run test:soak -- vms
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { fourcc } from '../../src/host/gralloc.js';
import { BackendReq } from '../../src/host/vhost-user-protocol.js';
import * as native from '../../src/native/index.js';
import {
  BlobMem,
  CrossDomainCmd,
  VirtioGpuCmd,
  VirtioGpuResp,
} from '../../src/virtgpu/protocol.js';
import { hostBin } from '../support/cross-domain.js';
import { killAll, start, stop, waitFor } from '../support/processes.js';
import {
  CHANNEL_RING_AT,
  CMD_AT,
  GPA,
  QUERY_RING_AT,
  RESP_AT,
  TestFrontend,
  hdr,
  readMessage,
  resourceCmd,
  submit,
} from '../support/vhost-user-frontend.js';
import { describeFds, openFds, rssKiB, startWestonAt } from './support.js';

const VMS = Number(process.env.TSWL_SOAK_VMS ?? 100);
const type = (r: Buffer): number => r.readUInt32LE(0);

function cd(cmd: number, size: number): Buffer {
  const b = Buffer.alloc(size);
  b[0] = cmd;
  b.writeUInt16LE(size, 2);
  return b;
}

/** A cross-domain SEND of Wayland bytes. */
function send(data: Buffer): Buffer {
  const b = cd(CrossDomainCmd.SEND, 352 + data.length);
  b.writeUInt32LE(data.length, 12);
  data.copy(b, 352);
  return b;
}

/** A POLL fenced on the channel ring (ring 1): answered when the host has a message. */
function poll(fenceId: bigint): Buffer {
  const b = submit(1, cd(CrossDomainCmd.POLL, 16), fenceId);
  b[20] = 1;
  return b;
}

/** get_registry(2), sync(3). */
const REGISTRY = Buffer.from([
  1, 0, 0, 0, 1, 0, 12, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 12, 0, 3, 0, 0, 0,
]);

/** One VM: a Wayland channel to weston with a round trip, then a frame's worth left in flight. */
async function vmDyingMidFrame(path: string): Promise<void> {
  const f = new TestFrontend(path);
  try {
    await f.handshake();
    const create = hdr(VirtioGpuCmd.CTX_CREATE, 96, 1);
    create.writeUInt32LE(5, 28);
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
    const init = cd(CrossDomainCmd.INIT, 20);
    init.writeUInt32LE(1, 8);
    init.writeUInt32LE(2, 12);
    init.writeUInt32LE(1, 16); // a Wayland channel: tswl-host connects to weston
    expect(type(await f.command(submit(1, init)))).toBe(VirtioGpuResp.OK_NODATA);
    expect(type(await f.command(submit(1, send(REGISTRY))))).toBe(VirtioGpuResp.OK_NODATA);
    // the globals come back in the channel ring when a poll's fence signals
    expect(type(await f.command(poll(1n)))).toBe(VirtioGpuResp.OK_NODATA);
    expect(f.ram[CHANNEL_RING_AT]).toBe(CrossDomainCmd.RECEIVE);

    // a shadow buffer for the frame, mapped: the SHMEM_MAP is never acked
    const reqs = cd(CrossDomainCmd.GET_IMAGE_REQUIREMENTS, 24);
    reqs.writeUInt32LE(256, 8);
    reqs.writeUInt32LE(256, 12);
    reqs.writeUInt32LE(fourcc('XR24'), 16);
    reqs.writeUInt32LE(0x11, 20);
    expect(type(await f.command(submit(1, reqs, 2n)))).toBe(VirtioGpuResp.OK_NODATA);
    const size = Number(f.ram.readBigUInt64LE(QUERY_RING_AT + 40));
    const blob = hdr(VirtioGpuCmd.RESOURCE_CREATE_BLOB, 56, 1);
    blob.writeUInt32LE(3, 24);
    blob.writeUInt32LE(BlobMem.HOST3D, 28);
    blob.writeUInt32LE(3, 32);
    blob.writeBigUInt64LE(BigInt(f.ram.readUInt32LE(QUERY_RING_AT + 48)), 40);
    blob.writeBigUInt64LE(BigInt(Math.ceil(size / 4096) * 4096), 48);
    expect(type(await f.command(blob))).toBe(VirtioGpuResp.OK_NODATA);
    const map = hdr(VirtioGpuCmd.RESOURCE_MAP_BLOB, 40);
    map.writeUInt32LE(3, 24);
    map.copy(f.ram, CMD_AT);
    f.post(0, [
      { addr: GPA + BigInt(CMD_AT), len: 40, write: false },
      { addr: GPA + BigInt(RESP_AT), len: 32, write: true },
    ]);
    const mapping = await readMessage(f.backendEnd);
    expect(mapping.req).toBe(BackendReq.SHMEM_MAP);
    for (const fd of mapping.fds) native.close(fd);

    // half a wl_surface request in the channel, and a poll left waiting: then the VM dies
    const half = submit(1, send(Buffer.from([4, 0, 0, 0, 1, 0, 16, 0, 5, 0])));
    half.copy(f.ram, CMD_AT + 0x1000);
    f.post(0, [
      { addr: GPA + BigInt(CMD_AT + 0x1000), len: half.length, write: false },
      { addr: GPA + BigInt(RESP_AT + 0x1000), len: 24, write: true },
    ]);
    const waiting = poll(3n);
    waiting.copy(f.ram, CMD_AT + 0x2000);
    f.post(0, [
      { addr: GPA + BigInt(CMD_AT + 0x2000), len: waiting.length, write: false },
      { addr: GPA + BigInt(RESP_AT + 0x2000), len: 24, write: true },
    ]);
  } finally {
    f.close();
  }
}

describe(`${VMS} VMs in a row killed mid-frame against tswl-host --vhost-user`, () => {
  const runtimeDir = mkdtempSync(join(tmpdir(), 'tswl-vms-'));

  afterAll(() => {
    killAll();
    rmSync(runtimeDir, { recursive: true, force: true });
  });

  test('each is released whole; the next one is served', async () => {
    const weston = await startWestonAt(runtimeDir);
    const socket = join(runtimeDir, 'gpu.sock');
    const env: NodeJS.ProcessEnv = { ...process.env, XDG_RUNTIME_DIR: runtimeDir };
    const host = start(
      hostBin,
      ['--wayland-sock', join(runtimeDir, 'wayland-0'), '--vhost-user', socket],
      env,
    );
    await waitFor('tswl-host to listen', () => existsSync(socket) || host.child.exitCode !== null);
    const pid = host.child.pid!;
    await vmDyingMidFrame(socket); // warm-up: what is made once (weston's keymap…) is made
    await new Promise((r) => setTimeout(r, 300));
    const fds = openFds(pid);
    const rss = rssKiB(pid);
    const started = Date.now();
    for (let i = 0; i < VMS; i++) {
      await vmDyingMidFrame(socket);
      await waitFor(`VM ${i + 1}'s fds to be released`, () => openFds(pid) === fds, 10000).catch(
        () => {
          throw new Error(
            `after VM ${i + 1}: ${openFds(pid)} fds, not ${fds}: ${describeFds(pid)}`,
          );
        },
      );
    }
    const after = rssKiB(pid);
    console.log(
      `${VMS} VMs killed mid-frame in ${((Date.now() - started) / 1000).toFixed(1)} s: tswl-host at ${fds} fds after each; ` +
        `RSS ${(rss / 1024).toFixed(1)} -> ${(after / 1024).toFixed(1)} MiB`,
    );
    expect(host.child.exitCode, host.output()).toBeNull();
    expect(host.output()).not.toMatch(/internal error|fatal/);
    await stop(host);
    await stop(weston);
  });
});

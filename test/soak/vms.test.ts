// VMs killed mid-frame, one after another, against a running `tswl-host --vhost-user`: each VM
// (the test front-end, as QEMU and a guest driver) sets up a Wayland channel to weston, then dies
// with a blob mapping waiting for the VMM's ack, a ring-1 poll waiting, and half a Wayland
// message in its channel. After every one tswl-host is back at its fds, and it serves the next.
//   TSWL_SOAK_VMS=100 npm run test:soak -- vms
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { BackendReq } from '../../src/host/vhost-user-protocol.js';
import * as native from '../../src/native/index.js';
import { VirtioGpuResp } from '../../src/virtgpu/protocol.js';
import { killAll, stop, waitFor } from '../support/processes.js';
import {
  XR24,
  cdImageReqs,
  host3dBlob,
  mapBlob,
  parseReqs,
  submit,
  wl,
} from '../support/virtgpu-commands.js';
import { TestFrontend, readMessage } from '../support/vhost-user-frontend.js';
import { describeFds, openFds, rssKiB, startVhostUserHost } from './support.js';

const VMS = Number(process.env.TSWL_SOAK_VMS ?? 100);
const OK = VirtioGpuResp.OK_NODATA;

/** One VM: a Wayland channel to weston with a round trip, then a frame's worth left in flight. */
async function vmDyingMidFrame(path: string): Promise<void> {
  const f = new TestFrontend(path);
  try {
    await f.handshake();
    const { query } = await f.context(1); // its rings, and a Wayland channel to weston
    expect(await f.type(f.sendCommand(1, wl(1, 1, 2)))).toBe(OK); // get_registry
    expect((await f.poll(1)).cmd).toBe('receive'); // the globals

    // a shadow buffer for the frame, mapped: the VMM never acks the SHMEM_MAP
    expect(await f.type(submit(1, cdImageReqs(256, 256, XR24), { id: 100n }))).toBe(OK);
    const { size, blobId } = parseReqs(query);
    expect(await f.type(host3dBlob(1, 3, blobId, Math.ceil(size / 4096) * 4096))).toBe(OK);
    expect(f.tryStart(mapBlob(3))).not.toBeNull();
    const mapping = await readMessage(f.backendEnd);
    expect(mapping.req).toBe(BackendReq.SHMEM_MAP);
    for (const fd of mapping.fds) native.close(fd);

    // half a wl_registry.bind in the channel, and a poll left waiting: then it dies
    expect(f.tryStart(f.sendCommand(1, wl(2, 0, 3, 1, 7).subarray(0, 10)))).not.toBeNull();
    expect(f.startPoll(1)).not.toBeNull();
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
    const { weston, host, socket } = await startVhostUserHost(runtimeDir);
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

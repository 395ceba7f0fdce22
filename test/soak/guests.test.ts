// Guests that misbehave against a running `tswl-host --vhost-user`, held to the budgets of
// src/host/budget.ts: a guest that floods the compositor with requests and never POLLs for the
// answers. tswl-host stops reading the compositor for it once 256 KiB wait for the guest
// (CHANNEL_HIGH_WATER), stops taking its commands once 1 MiB of its own requests wait
// (BACKLOG_PAUSE), and serves other VMs meanwhile; when the guest goes, all of it is released.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { VirtioGpuResp } from '../../src/virtgpu/protocol.js';
import { killAll, stop, waitFor } from '../support/processes.js';
import { sleep, wl } from '../support/virtgpu-commands.js';
import { TestFrontend } from '../support/vhost-user-frontend.js';
import { describeFds, openFds, rssKiB, startVhostUserHost } from './support.js';

/** A VM with a Wayland channel to the compositor (context 1). */
async function vmWithChannel(path: string): Promise<TestFrontend> {
  const f = new TestFrontend(path);
  await f.handshake();
  await f.context(1);
  return f;
}

/** wl_display.sync requests with new ids from `first`: 312 of them fill one SEND. */
function syncs(first: number, n: number): Buffer {
  return Buffer.concat(Array.from({ length: n }, (_, i) => wl(1, 0, first + i)));
}

describe('guests that never POLL, against tswl-host --vhost-user', () => {
  const runtimeDir = mkdtempSync(join(tmpdir(), 'tswl-guests-'));

  afterAll(() => {
    killAll();
    rmSync(runtimeDir, { recursive: true, force: true });
  });

  test('a flood of requests whose answers are never polled is bounded; other VMs go on', async () => {
    const { weston, host, socket } = await startVhostUserHost(runtimeDir);
    const pid = host.child.pid!;
    (await vmWithChannel(socket)).close(); // warm-up
    await new Promise((r) => setTimeout(r, 300));
    const fds = openFds(pid);
    const rss = rssKiB(pid);

    const flood = await vmWithChannel(socket);
    let sent = 0;
    let paused = false;
    for (let i = 0; i < 2000 && !paused; i++) {
      const head = flood.tryStart(flood.sendCommand(1, syncs(2 + sent, 312)))!;
      const deadline = Date.now() + 2000;
      let answer: Buffer | null = null;
      while (!answer && Date.now() < deadline) {
        answer = flood.takeResponse(head);
        if (!answer) await sleep(2);
      }
      if (answer) {
        expect(answer.readUInt32LE(0)).toBe(VirtioGpuResp.OK_NODATA);
        sent += 312;
      } else {
        paused = true; // tswl-host stopped taking this guest's commands
      }
    }
    expect(paused, `${sent} syncs all taken`).toBe(true);
    const grown = (rssKiB(pid) - rss) / 1024;
    console.log(
      `a guest that never polls: tswl-host took ${sent} wl_display.sync (${(sent * 12) / 1024} KiB, ` +
        `their answers ${(sent * 24) / 1024} KiB) before pausing it; RSS grew ${grown.toFixed(1)} MiB`,
    );
    // 256 KiB for the guest, 1 MiB from it, the compositor's socket: a few MiB, not the flood
    expect(sent * 12).toBeLessThan(4 << 20);
    expect(grown).toBeLessThan(32);

    // another VM is served meanwhile
    const other = await vmWithChannel(socket);
    expect(await other.type(other.sendCommand(1, wl(1, 1, 2)))).toBe(VirtioGpuResp.OK_NODATA);
    expect((await other.poll(1)).cmd).toBe('receive');
    other.close();

    flood.close();
    await waitFor('the flooding VM to be released', () => openFds(pid) === fds, 10000).catch(() => {
      throw new Error(`${openFds(pid)} fds, not ${fds}: ${describeFds(pid)}`);
    });
    expect(host.child.exitCode, host.output()).toBeNull();
    await stop(host);
    await stop(weston);
  });
});

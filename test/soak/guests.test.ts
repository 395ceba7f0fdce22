// Guests that misbehave against a running `tswl-host --vhost-user`, held to the budgets of
// src/host/budget.ts: a guest that floods the compositor with requests and never POLLs for the
// answers. tswl-host stops reading the compositor for it once 256 KiB wait for the guest
// (CHANNEL_HIGH_WATER), stops taking its commands once 1 MiB of its own requests wait
// (BACKLOG_PAUSE), and serves other VMs meanwhile; when the guest goes, all of it is released.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { CrossDomainCmd, VirtioGpuCmd, VirtioGpuResp } from '../../src/virtgpu/protocol.js';
import { BlobMem } from '../../src/virtgpu/protocol.js';
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
  resourceCmd,
  submit,
} from '../support/vhost-user-frontend.js';
import { describeFds, openFds, rssKiB, startWestonAt } from './support.js';

const type = (r: Buffer): number => r.readUInt32LE(0);

function cd(cmd: number, size: number): Buffer {
  const b = Buffer.alloc(size);
  b[0] = cmd;
  b.writeUInt16LE(size, 2);
  return b;
}

function send(data: Buffer): Buffer {
  const b = cd(CrossDomainCmd.SEND, 352 + data.length);
  b.writeUInt32LE(data.length, 12);
  data.copy(b, 352);
  return b;
}

/** A VM with a Wayland channel to the compositor (context 1, rings at their usual places). */
async function vmWithChannel(path: string): Promise<TestFrontend> {
  const f = new TestFrontend(path);
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
  init.writeUInt32LE(1, 16);
  expect(type(await f.command(submit(1, init)))).toBe(VirtioGpuResp.OK_NODATA);
  return f;
}

/** wl_display.sync requests with new ids from `first`: 312 of them fill one SEND. */
function syncs(first: number, n: number): Buffer {
  const b = Buffer.alloc(12 * n);
  for (let i = 0; i < n; i++) {
    b.writeUInt32LE(1, 12 * i);
    b.writeUInt32LE(12 << 16, 12 * i + 4);
    b.writeUInt32LE(first + i, 12 * i + 8);
  }
  return b;
}

describe('guests that never POLL, against tswl-host --vhost-user', () => {
  const runtimeDir = mkdtempSync(join(tmpdir(), 'tswl-guests-'));

  afterAll(() => {
    killAll();
    rmSync(runtimeDir, { recursive: true, force: true });
  });

  test('a flood of requests whose answers are never polled is bounded; other VMs go on', async () => {
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
    (await vmWithChannel(socket)).close(); // warm-up
    await new Promise((r) => setTimeout(r, 300));
    const fds = openFds(pid);
    const rss = rssKiB(pid);

    const flood = await vmWithChannel(socket);
    let sent = 0;
    let paused = false;
    for (let i = 0; i < 2000 && !paused; i++) {
      const cmd = submit(1, send(syncs(2 + sent, 312)));
      cmd.copy(flood.ram, CMD_AT);
      flood.post(0, [
        { addr: GPA + BigInt(CMD_AT), len: cmd.length, write: false },
        { addr: GPA + BigInt(RESP_AT), len: 24, write: true },
      ]);
      try {
        await flood.used(0);
        sent += 312;
      } catch {
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
    const registry = Buffer.from([1, 0, 0, 0, 1, 0, 12, 0, 2, 0, 0, 0]);
    expect(type(await other.command(submit(1, send(registry))))).toBe(VirtioGpuResp.OK_NODATA);
    const poll = submit(1, cd(CrossDomainCmd.POLL, 16), 1n);
    poll[20] = 1;
    expect(type(await other.command(poll))).toBe(VirtioGpuResp.OK_NODATA);
    expect(other.ram[CHANNEL_RING_AT]).toBe(CrossDomainCmd.RECEIVE);
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

// One tswl-host serves many guests, so no guest may take it down or starve the others: bin/tswl-host
// between a real weston and hostile guests. On the local link, guests that go for its memory and
// fds are stopped at their per-guest limits (src/host/budget.ts): tswl-host's RSS and fd count
// (read in /proc) stay under the bounds the README states, another guest is served meanwhile, and
// a departed guest leaves nothing behind. Over vhost-user, a VM that takes away the memory under
// its running queue stops that queue only.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { DEFAULT_LIMITS } from '../src/host/budget.js';
import { Req } from '../src/host/vhost-user-protocol.js';
import * as native from '../src/native/index.js';
import { VirtioGpuCmd, VirtioGpuResp } from '../src/virtgpu/protocol.js';
import { hostBin } from './support/cross-domain.js';
import { LinkGuest, fdCount } from './support/link-guest.js';
import { type Running, killAll, listening, start, stop, waitFor } from './support/processes.js';
import {
  R8,
  RING,
  XR24,
  cdImageReqs,
  cdInit,
  cdSend,
  ctxCreate,
  guestBlob,
  hdr,
  host3dBlob,
  parseReqs,
  resourceCmd,
  sleep,
  submit,
  wl,
} from './support/virtgpu-commands.js';
import { TestFrontend } from './support/vhost-user-frontend.js';
import { type HeadlessWeston, startHeadlessWeston } from './support/weston.js';

const OK = VirtioGpuResp.OK_NODATA;
const MiB = 1024 * 1024;

/**
 * What a guest at every limit may make tswl-host hold beyond what it holds idle (the README's
 * budget table states these): its fd budget and the link socket, and this much memory.
 */
const RSS_BOUND = 64 * MiB;
const FD_BOUND = DEFAULT_LIMITS.fds + 8;

function rss(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m![1]) * 1024;
}

let w: HeadlessWeston;
let host: Running;
let linkPath: string;
let vhostPath: string;
let pid: number;

beforeAll(async () => {
  w = await startHeadlessWeston();
  linkPath = join(w.runtimeDir, 'tswl-link');
  vhostPath = join(w.runtimeDir, 'tswl-vhost');
  host = start(
    hostBin,
    [
      ...['--wayland-sock', join(w.runtimeDir, 'wayland-0')],
      ...['--listen-local', linkPath, '--vhost-user', vhostPath],
    ],
    w.env,
  );
  await waitFor('tswl-host to listen', () => {
    if (host.child.exitCode !== null) throw new Error(host.output());
    return listening(linkPath) && listening(vhostPath);
  });
  pid = host.child.pid!;
});
afterAll(async () => {
  await stop(host);
  await w.stop();
  killAll();
});
afterEach(() => {
  expect(host.child.exitCode, host.output()).toBeNull();
});

/**
 * tswl-host's log reaches us through its stderr pipe, apart from its answers on the link, so a
 * line may still be on its way when the answer is here: wait for it, then assert it.
 */
async function expectLogged(line: RegExp): Promise<void> {
  await waitFor(`${line} in tswl-host's log`, () => line.test(host.output())).catch(() => {});
  expect(host.output()).toMatch(line);
}

describe("guests that go for tswl-host's memory and fds (weston, local link)", () => {
  let idleRss = 0;
  let idleFds = 0;
  let peakRss = 0;
  let peakFds = 0;

  /** Samples tswl-host's RSS and fds, and fails as soon as either passes its bound. */
  const check = (): void => {
    const r = rss(pid) - idleRss;
    const f = fdCount(pid) - idleFds;
    peakRss = Math.max(peakRss, r);
    peakFds = Math.max(peakFds, f);
    expect(f, 'fds tswl-host holds beyond idle').toBeLessThanOrEqual(FD_BOUND);
    expect(r, 'bytes of RSS tswl-host holds beyond idle').toBeLessThanOrEqual(RSS_BOUND);
  };

  beforeAll(async () => {
    // A first guest warms tswl-host up: what it opens lazily is not the hostile guest's (its
    // first warning makes Node open its stderr stream, and libuv /dev/null with it).
    const warm = new LinkGuest(linkPath);
    expect(await warm.type(hdr(0x0abc, 24))).toBe(VirtioGpuResp.ERR_UNSPEC);
    await roundTrip(warm, 1);
    warm.close();
    await sleep(200);
    idleRss = rss(pid);
    idleFds = fdCount(pid);
  });

  test('a guest that opens 1,000 contexts, fills them with items and takes host memory and fds is stopped at its limits', async () => {
    const g = new LinkGuest(linkPath);
    try {
      // Rings shared by every context: one query ring, one channel ring.
      expect(await g.type(ctxCreate(1))).toBe(OK);
      const query = await g.ring(1, 1);
      await g.ring(2, 1);
      expect(await g.type(submit(1, cdInit(1, 2)))).toBe(OK);

      // HOST3D blobs of 1 GiB each (memfds never touched, so no RAM): the third is over 2 GiB.
      expect(await g.query(1, cdImageReqs(16384, 16384, XR24))).toBe(OK);
      const image = parseReqs(query);
      expect(image.size).toBe(1024 * MiB);
      const blobs = [];
      for (let res = 100; res < 104; res++)
        blobs.push(await g.type(host3dBlob(1, res, image.blobId, image.size)));
      expect(blobs).toEqual([
        OK,
        OK,
        VirtioGpuResp.ERR_OUT_OF_MEMORY,
        VirtioGpuResp.ERR_OUT_OF_MEMORY,
      ]);
      await expectLogged(/1073741824 more is over its limit of 2147483648/);
      check();

      // 1,000 contexts, each with a Wayland channel (a compositor connection), each filled with up
      // to 20,000 image items of distinct sizes. The guest gets 64 contexts and 16,384 items.
      let contexts = 1;
      for (let ctx = 1; ctx <= 1000; ctx++) {
        if (ctx > 1) {
          if ((await g.type(ctxCreate(ctx))) !== OK) continue;
          contexts++;
          for (const res of [1, 2]) {
            expect(await g.type(resourceCmd(VirtioGpuCmd.CTX_ATTACH_RESOURCE, res, ctx))).toBe(OK);
          }
          expect(await g.type(submit(ctx, cdInit(1, 2)))).toBe(OK);
        }
        for (let batch = 0; batch < 10; batch++) {
          const reqs = Array.from({ length: 2000 }, (_, i) => {
            const k = batch * 2000 + i;
            return cdImageReqs(1 + (k % 1024), 1 + Math.floor(k / 1024), R8);
          });
          if ((await g.query(ctx, Buffer.concat(reqs))) !== OK) break;
          check();
        }
      }
      expect(contexts).toBe(DEFAULT_LIMITS.contexts);
      await expectLogged(/the guest has 64 contexts already, its limit/);
      await expectLogged(/the guest has 16384 items, its limit/);
      check();

      // GUEST blobs, each with a memfd the host keeps: refused once the guest holds 1,024 fds.
      const memfd = native.memfdCreate('guest-blob', RING);
      let held = 0;
      let refused = 0;
      try {
        await pipeline(
          g,
          2000,
          (i) => ({ cmd: guestBlob(1000 + i, 0n, RING), fds: [memfd] }),
          (r) => {
            if (r.response.readUInt32LE(0) === OK) held++;
            else refused++;
          },
          check,
        );
      } finally {
        native.close(memfd);
      }
      expect(refused).toBeGreaterThan(0);
      // each refusal was logged until the guest had its share of warnings, no further
      const lines = host.output().split('\n');
      expect(lines.filter((l) => l.includes('came with a command')).length).toBeLessThanOrEqual(
        100,
      );
      // what it held already: 2 ring memfds, 2 blob memfds, 64 compositor sockets
      expect(held).toBe(DEFAULT_LIMITS.fds - 2 - 2 - 64);
      check();

      // Meanwhile another guest is served as usual.
      const other = new LinkGuest(linkPath);
      try {
        await roundTrip(other, 1);
      } finally {
        other.close();
      }
    } finally {
      g.close();
    }
    await waitFor('every fd of the guest to be closed', () => fdCount(pid) === idleFds);
  });

  test('a guest that queues 10,000 fenced maps is stopped at 256 waiting fences, each fd they hold counted', async () => {
    const g = new LinkGuest(linkPath);
    try {
      const { query } = await g.context(1);
      expect(await g.query(1, cdImageReqs(64, 64, XR24))).toBe(OK);
      const image = parseReqs(query);
      expect(await g.type(host3dBlob(1, 100, image.blobId, image.size))).toBe(OK);
      // RESOURCE_MAP_BLOB fenced on ring 1: its answer (and the fd it carries) waits for a
      // message on the channel, which never comes.
      let fenceId = 1n;
      const fencedMap = (): Buffer => {
        const b = hdr(VirtioGpuCmd.RESOURCE_MAP_BLOB, 40, 1, { id: fenceId++, ring: 1 });
        b.writeUInt32LE(100, 24);
        return b;
      };
      // 255 wait, each answer holding a file open in tswl-host, counted for the guest
      for (let i = 0; i < DEFAULT_LIMITS.fences - 1; i++) g.post(fencedMap());
      const info = hdr(VirtioGpuCmd.GET_CAPSET_INFO, 32);
      expect(await g.type(info)).toBe(VirtioGpuResp.OK_CAPSET_INFO); // all of them were taken
      check();
      expect(fdCount(pid) - idleFds).toBeGreaterThanOrEqual(DEFAULT_LIMITS.fences - 1);
      // the 256th disables the context: the waiting maps are answered; the rest at once
      const answers = new Map<number, number>();
      await pipeline(
        g,
        10000 - (DEFAULT_LIMITS.fences - 1),
        () => ({ cmd: fencedMap(), fds: [] }),
        (r) => {
          const type = r.response.readUInt32LE(0);
          answers.set(type, (answers.get(type) ?? 0) + 1);
          r.fds.forEach((fd) => native.close(fd));
        },
        check,
        10000,
      );
      await expectLogged(
        /context 1 \(test\): the guest has 256 fenced commands waiting, its limit; the context is disabled/,
      );
      expect(answers.get(VirtioGpuResp.OK_MAP_INFO)).toBe(10000);

      const other = new LinkGuest(linkPath);
      try {
        await roundTrip(other, 1);
      } finally {
        other.close();
      }
    } finally {
      g.close();
    }
    await waitFor('every fd of the guest to be closed', () => fdCount(pid) === idleFds);
    console.log(`peak beyond idle: ${(peakRss / MiB).toFixed(1)} MiB RSS, ${peakFds} fds`);
  });
});

describe('a VM that takes away the memory under its running queue (vhost-user)', () => {
  test('has that queue stopped; tswl-host stays up and serves the next VM', async () => {
    const info = (): Buffer => hdr(VirtioGpuCmd.GET_CAPSET_INFO, 32);
    const vm = new TestFrontend(vhostPath);
    try {
      await vm.handshake();
      const removal = await vm.moveDescriptorTable(0);
      expect(await vm.type(info())).toBe(VirtioGpuResp.OK_CAPSET_INFO);
      // the region with the descriptor table goes; the rings in guest RAM stay, and a kick comes
      expect(await vm.acked(Req.REM_MEM_REG, removal)).toBe(0n);
      vm.tryStart(info());
      await waitFor('the stopped queue in the log', () =>
        /vm \d+: queue 0 stopped: guest memory is gone/.test(host.output()),
      );
      expect(host.child.exitCode).toBeNull();
    } finally {
      vm.close();
    }
    const next = new TestFrontend(vhostPath);
    try {
      await next.handshake();
      expect(await next.type(info())).toBe(VirtioGpuResp.OK_CAPSET_INFO);
    } finally {
      next.close();
    }
  });
});

describe('--guest-limit', () => {
  test('changes a limit; an unknown name is refused', async () => {
    const path = join(w.runtimeDir, 'tswl-link-limited');
    const compositor = ['--wayland-sock', join(w.runtimeDir, 'wayland-0')];
    const limited = start(
      hostBin,
      [...compositor, '--listen-local', path, '--guest-limit', 'contexts=2'],
      w.env,
    );
    try {
      await waitFor('the limited tswl-host to listen', () => listening(path));
      const g = new LinkGuest(path);
      try {
        const created = [];
        for (let ctx = 1; ctx <= 3; ctx++) created.push(await g.type(ctxCreate(ctx)));
        expect(created).toEqual([OK, OK, VirtioGpuResp.ERR_OUT_OF_MEMORY]);
      } finally {
        g.close();
      }
    } finally {
      await stop(limited);
    }
    const wrong = start(
      hostBin,
      [...compositor, '--listen-local', path, '--guest-limit', 'windows=3'],
      w.env,
    );
    expect(await wrong.exited).toBe(1);
    expect(wrong.output()).toMatch(
      /unknown limit "windows" \(names: contexts, items, fds, fences, blobBytes, queuedBytes\)/,
    );
  });
});

/**
 * Posts `count` commands as fast as tswl-host takes them while taking its answers, as a guest
 * that queues work would, until `answers` came (more than `count` when earlier commands wait for
 * theirs); `sample` runs every 100 commands.
 */
async function pipeline(
  g: LinkGuest,
  count: number,
  make: (i: number) => { cmd: Buffer; fds: number[] },
  onReply: (r: { response: Buffer; fds: number[] }) => void,
  sample: () => void,
  answers = count,
): Promise<void> {
  let sent = 0;
  let answered = 0;
  let idleSince = Date.now();
  while (answered < answers) {
    let progress = false;
    while (sent < count) {
      const { cmd, fds } = make(sent);
      if (g.tryPost(cmd, fds) === null) break;
      if (++sent % 100 === 0) sample();
      progress = true;
    }
    for (const r of g.takeReplies().values()) {
      onReply(r);
      answered++;
      progress = true;
    }
    if (progress) idleSince = Date.now();
    else if (Date.now() - idleSince > 5000) {
      throw new Error(`${answered} of ${answers} answers, ${sent} of ${count} sent; nothing moves`);
    } else await sleep(1);
  }
  sample();
}

/** Registry and a wl_display.sync through a fresh context of `g`, answered by weston. */
async function roundTrip(g: LinkGuest, ctx: number): Promise<void> {
  const { channel } = await g.context(ctx);
  expect(await g.query(ctx, cdSend(Buffer.concat([wl(1, 1, 2), wl(1, 0, 3)])))).toBe(OK);
  await g.pollUntil(ctx, channel, (ev) => ev.some((e) => e.id === 3 && e.opcode === 0));
}

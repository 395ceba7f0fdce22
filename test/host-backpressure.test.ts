// Back-pressure in tswl-host: a compositor that does not read (a real weston stopped with
// SIGSTOP) slows the guest that floods it, over the local link (tswl-host stops reading its
// socket) and over vhost-user (tswl-host stops taking its control queue's chains): the context
// is not failed, tswl-host's memory stays bounded, and once the compositor reads again every
// request arrives, in order. A clipboard reader that starts late gets every byte of 20 MiB.

import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { BACKLOG_PAUSE, DEFAULT_LIMITS } from '../src/host/budget.js';
import * as native from '../src/native/index.js';
import { VirtioGpuResp } from '../src/virtgpu/protocol.js';
import {
  type Compositor,
  type InProcessProxy,
  hostBin,
  startCrossDomainProxy,
  startHost,
  startX11Weston,
} from './support/cross-domain.js';
import { LinkGuest } from './support/link-guest.js';
import { type Running, killAll, start, stop, waitFor } from './support/processes.js';
import { type WlEvent, cdSend, sleep, submit, wl, wlString } from './support/virtgpu-commands.js';
import { TestFrontend, until } from './support/vhost-user-frontend.js';
import { type HeadlessWeston, startHeadlessWeston } from './support/weston.js';

const OK = VirtioGpuResp.OK_NODATA;
const MiB = 1024 * 1024;
/** What the flood sends in all: more than a guest may have queued (limits.queuedBytes). */
const FLOOD_BYTES = DEFAULT_LIMITS.queuedBytes + 4 * MiB;
/** wl_surface.damage requests per SEND, then one wl_display.sync. */
const DAMAGE_PER_SEND = 1990;
/** Callback ids follow the surface's (5): a client allocates its ids in order. */
const FIRST_CALLBACK = 6;
/**
 * What tswl-host may take from the flooding guest while the compositor does not read: its pause
 * point (BACKLOG_PAUSE), the relay's queue to the compositor, the socket buffers between them,
 * and the command in hand. Far below what the flood sends.
 */
const TAKEN_BOUND = 6 * MiB;
const RSS_BOUND = 64 * MiB;

function rss(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m![1]) * 1024;
}

/** SEND number `i` of the flood: damage to surface 5, then a sync with callback FIRST + i. */
function floodSend(i: number): Buffer {
  const damage = wl(5, 2, 0, 0, 1, 1);
  const parts = Array.from({ length: DAMAGE_PER_SEND }, () => damage);
  parts.push(wl(1, 0, FIRST_CALLBACK + i));
  return Buffer.concat(parts);
}

const SENDS = Math.ceil(FLOOD_BYTES / floodSend(0).length);

/** The flood's callbacks are done exactly once each and in order; how many so far. */
function callbacksInOrder(events: WlEvent[]): number {
  const done = events
    .filter((e) => e.opcode === 0 && e.id >= FIRST_CALLBACK && e.id < FIRST_CALLBACK + SENDS)
    .map((e) => e.id - FIRST_CALLBACK);
  expect(done).toEqual(done.map((_, i) => i));
  return done.length;
}

/** The messages that bind wl_compositor (as 4) and make a surface (5), from the registry. */
function surfaceRequests(globals: WlEvent[]): Buffer {
  const compositor = globals.find((e) => e.id === 2 && wlString(e.body, 4) === 'wl_compositor');
  expect(compositor).toBeDefined();
  const name = compositor!.body.readUInt32LE(0);
  return Buffer.concat([wl(2, 0, name, 'wl_compositor', 4, 4), wl(4, 0, 5)]);
}

describe('tswl-host slows a guest whose compositor does not read (weston stopped)', () => {
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
        '--wayland-sock',
        join(w.runtimeDir, 'wayland-0'),
        '--listen-local',
        linkPath,
        '--vhost-user',
        vhostPath,
      ],
      w.env,
    );
    await waitFor('tswl-host to listen', () => {
      if (host.child.exitCode !== null) throw new Error(host.output());
      return existsSync(linkPath) && existsSync(vhostPath);
    });
    pid = host.child.pid!;
  });
  afterAll(async () => {
    await stop(host);
    await w.stop();
    killAll();
  });
  afterEach(() => {
    process.kill(w.weston.child.pid!, 'SIGCONT');
    expect(host.child.exitCode, host.output()).toBeNull();
    expect(host.output()).not.toMatch(/disabled/);
  });

  test('over the local link: the guest cannot send, then everything arrives in order', async () => {
    const g = new LinkGuest(linkPath);
    try {
      const { channel } = await g.context(1);
      expect(await g.query(1, cdSend(Buffer.concat([wl(1, 1, 2), wl(1, 0, 3)])))).toBe(OK);
      const globals = await g.pollUntil(1, channel, (ev) => ev.some((e) => e.id === 3));
      expect(await g.query(1, cdSend(surfaceRequests(globals)))).toBe(OK);
      const idleRss = rss(pid);

      process.kill(w.weston.child.pid!, 'SIGSTOP');
      let sent = 0;
      let answered = 0;
      const take = (): void => {
        for (const r of g.takeReplies().values()) {
          expect(r.response.readUInt32LE(0), host.output()).toBe(OK);
          answered++;
        }
      };
      // Send until tswl-host stops reading: the socket stays full for a second.
      const post = (): void => {
        while (sent < SENDS && g.tryPost(submit(1, cdSend(floodSend(sent)))) !== null) sent++;
      };
      await waitFor('the link to stay full', async () => {
        post();
        const before = { sent, answered };
        await sleep(1000);
        take();
        post();
        return sent === before.sent && answered === before.answered;
      });
      const taken = answered * floodSend(0).length;
      expect(taken).toBeGreaterThanOrEqual(BACKLOG_PAUSE);
      expect(taken).toBeLessThan(TAKEN_BOUND);
      expect(rss(pid) - idleRss).toBeLessThan(RSS_BOUND);

      process.kill(w.weston.child.pid!, 'SIGCONT');
      await until(
        'the rest of the flood to be taken',
        () => {
          post();
          take();
          return answered === SENDS;
        },
        60000,
      );
      const events = await g.pollUntil(1, channel, (ev) => callbacksInOrder(ev) === SENDS);
      expect(events.find((e) => e.id === 1 && e.opcode === 0)).toBeUndefined(); // no error
      // and the context goes on
      const last = FIRST_CALLBACK + SENDS;
      expect(await g.query(1, cdSend(wl(1, 0, last)))).toBe(OK);
      await g.pollUntil(1, channel, (ev) => ev.some((e) => e.id === last && e.opcode === 0));
    } finally {
      process.kill(w.weston.child.pid!, 'SIGCONT');
      g.close();
    }
  });

  test('over vhost-user: the used ring stops, then everything arrives in order', async () => {
    const f = new TestFrontend(vhostPath);
    try {
      await f.handshake();
      await f.context(1);
      expect(await f.type(f.sendCommand(1, Buffer.concat([wl(1, 1, 2), wl(1, 0, 3)])))).toBe(OK);
      const globals = await f.pollUntil(1, (ev) => ev.some((e) => e.id === 3));
      expect(await f.type(f.sendCommand(1, surfaceRequests(globals)))).toBe(OK);
      const idleRss = rss(pid);

      process.kill(w.weston.child.pid!, 'SIGSTOP');
      let sent = 0;
      let answered = 0;
      const inFlight = new Set<number>();
      const step = (): void => {
        for (const head of [...inFlight]) {
          const r = f.takeResponse(head);
          if (!r) continue;
          expect(r.readUInt32LE(0)).toBe(OK);
          inFlight.delete(head);
          answered++;
        }
        while (sent < SENDS) {
          const head = f.tryStart(f.sendCommand(1, floodSend(sent)));
          if (head === null) break;
          inFlight.add(head);
          sent++;
        }
      };
      // Post until tswl-host stops taking chains: every slot in flight, none back for a second.
      await waitFor('the used ring to stop', async () => {
        step();
        const before = answered;
        await sleep(1000);
        step();
        return inFlight.size === 31 && answered === before;
      });
      const taken = answered * floodSend(0).length;
      expect(taken).toBeGreaterThanOrEqual(BACKLOG_PAUSE);
      expect(taken).toBeLessThan(TAKEN_BOUND);
      expect(rss(pid) - idleRss).toBeLessThan(RSS_BOUND);

      process.kill(w.weston.child.pid!, 'SIGCONT');
      await until(
        'the rest of the flood to be taken',
        () => {
          step();
          return answered === SENDS;
        },
        60000,
      );
      const events = await f.pollUntil(1, (ev) => callbacksInOrder(ev) === SENDS);
      expect(events.find((e) => e.id === 1 && e.opcode === 0)).toBeUndefined();
      const last = FIRST_CALLBACK + SENDS;
      expect(await f.type(f.sendCommand(1, wl(1, 0, last)))).toBe(OK);
      await f.pollUntil(1, (ev) => ev.some((e) => e.id === last && e.opcode === 0));
    } finally {
      process.kill(w.weston.child.pid!, 'SIGCONT');
      f.close();
    }
  });
});

describe('a clipboard reader that starts late (weston on x11, a guest wl-copy through tswl-proxy)', () => {
  let weston: Compositor;
  let host: { run: Running; path: string };
  let proxy: InProcessProxy;

  beforeAll(async () => {
    weston = await startX11Weston();
    host = await startHost(weston);
    proxy = startCrossDomainProxy(weston, host.path);
  });
  afterAll(async () => {
    try {
      proxy?.close();
    } finally {
      killAll();
      await weston?.stop();
    }
  });

  test('gets all of 20 MiB: the write pipe slows the guest instead of dropping data', async () => {
    const data = Buffer.alloc(20 * MiB);
    for (let i = 0; i < data.length; i += 4) data.writeUInt32LE(i, i);
    // wl-copy keeps the selection in a process of its own and returns
    const copy = spawn('wl-copy', [], { env: proxy.env, stdio: ['pipe', 'ignore', 'ignore'] });
    copy.stdin.end(data);
    expect(await new Promise((resolve) => copy.once('exit', resolve))).toBe(0);
    await waitFor('the selection to reach the host', async () => {
      const types = spawn('wl-paste', ['--list-types'], { env: weston.env });
      let out = '';
      types.stdout.on('data', (d: Buffer) => (out += d.toString()));
      await new Promise((resolve) => types.once('close', resolve));
      return out.includes('text/plain');
    });
    const idleRss = rss(host.run.child.pid!);
    // wl-paste writes into a pipe nobody reads for two seconds
    const [r, wEnd] = native.pipe();
    const paste = spawn('wl-paste', ['--no-newline', '--type', 'text/plain'], {
      env: weston.env,
      stdio: ['ignore', wEnd, 'pipe'],
    });
    native.close(wEnd);
    const pasted = new Promise<number | null>((resolve) => paste.once('exit', resolve));
    try {
      await sleep(2000);
      expect(rss(host.run.child.pid!) - idleRss).toBeLessThan(RSS_BOUND);
      const got = Buffer.alloc(data.length + 1);
      let n = 0;
      await until(
        'the whole selection',
        () => {
          for (;;) {
            const k = native.readFd(r, got, n, got.length);
            if (k <= 0) return k === 0;
            n += k;
          }
        },
        60000,
      );
      expect(n).toBe(data.length);
      expect(got.subarray(0, n).equals(data)).toBe(true);
      expect(await pasted).toBe(0);
      expect(host.run.output()).not.toMatch(/dropped|unread/);
    } finally {
      paste.kill('SIGKILL');
      native.close(r);
    }
  });
});

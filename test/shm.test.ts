// Shadowed wl_shm through the cross-domain path: client pools stay in the guest, each commit
// copies only the damage since the host buffer was last written, and what the host shows is
// always exactly what the client drew.
import { ftruncateSync, readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import * as native from '../src/native/index.js';
import { Damage, RectList, addSurfaceDamage } from '../src/relay/damage.js';
import type { InterfaceHooks, Relay } from '../src/relay/relay.js';
import { ClientPool, ShmBuffer, bytesPerPixel } from '../src/relay/shm.js';
import { SurfaceShadow } from '../src/relay/surface.js';
import {
  type Compositor,
  type InProcessProxy,
  startCrossDomainProxy,
  startHost,
} from './support/cross-domain.js';
import { killAll, start, stop, waitFor, type Running } from './support/processes.js';
import { ShmClient } from './support/shm-client.js';
import { startHeadlessWeston } from './support/weston.js';

/** The rectangles Damage writes out, as [x, y, w, h] lists. */
function written(d: Damage, width: number, height: number): number[][] {
  const out = new RectList();
  d.write(out, width, height);
  return Array.from({ length: out.count }, (_, k) =>
    Array.from(out.rects.subarray(k * 4, k * 4 + 4)),
  );
}

describe('damage geometry', () => {
  test('rectangles are clipped, contained ones dropped, many collapse to their bounds', () => {
    const d = new Damage();
    d.add(-5, -5, 10, 10, 100, 50);
    d.add(1, 1, 2, 2, 100, 50); // inside the first
    d.add(90, 40, 50, 50, 100, 50);
    expect(written(d, 100, 50)).toEqual([
      [0, 0, 5, 5],
      [90, 40, 10, 10],
    ]);
    d.add(0, 0, 100, 50, 100, 50);
    expect(d.full).toBe(true);
    expect(written(d, 100, 50)).toEqual([[0, 0, 100, 50]]);
    const many = new Damage();
    for (let i = 0; i < 20; i++) many.add(i * 4, i, 2, 2, 100, 50);
    expect(many.count).toBeLessThanOrEqual(16);
    // every pixel added is still covered
    const covered = new Uint8Array(100 * 50);
    for (const [x, y, w, h] of written(many, 100, 50))
      for (let py = y; py < y + h; py++) covered.fill(1, py * 100 + x, py * 100 + x + w);
    for (let i = 0; i < 20; i++)
      for (let py = i; py < i + 2; py++)
        expect(Array.from(covered.subarray(py * 100 + i * 4, py * 100 + i * 4 + 2))).toEqual([
          1, 1,
        ]);
  });

  test('overlapping rectangles are written out so that each damaged pixel is copied once', () => {
    // two places of a moving rectangle: the top, the overlap band, the bottom
    const two = new Damage();
    two.add(10, 10, 40, 20, 100, 50);
    two.add(20, 15, 40, 20, 100, 50);
    expect(written(two, 100, 50)).toEqual([
      [10, 10, 40, 5],
      [10, 15, 50, 15],
      [20, 30, 40, 5],
    ]);
    expect(two.area(100, 50)).toBe(40 * 20 * 2 - 30 * 15);
    // random ones: the pixels written are exactly the union, none twice
    let seed = 7;
    const random = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) >> 8) % n;
    for (let round = 0; round < 200; round++) {
      const W = 40;
      const H = 30;
      const d = new Damage();
      const union = new Uint8Array(W * H);
      for (let k = 1 + random(12); k > 0; k--) {
        const [x, y, w, h] = [random(W), random(H), 1 + random(20), 1 + random(15)];
        d.add(x, y, w, h, W, H);
        for (let py = y; py < Math.min(H, y + h); py++)
          for (let px = x; px < Math.min(W, x + w); px++) union[py * W + px] = 1;
      }
      const times = new Uint8Array(W * H);
      for (const [x, y, w, h] of written(d, W, H)) {
        expect(w > 0 && h > 0).toBe(true);
        for (let py = y; py < y + h; py++) for (let px = x; px < x + w; px++) times[py * W + px]++;
      }
      expect(times).toEqual(union);
    }
  });

  test('surface damage becomes buffer damage with scale and transform', () => {
    const rect = (scale: number, transform: number, bw: number, bh: number, ...r: number[]) => {
      const d = new Damage();
      addSurfaceDamage(d, r[0], r[1], r[2], r[3], bw, bh, scale, transform);
      return d.full ? 'full' : written(d, bw, bh)[0];
    };
    expect(rect(1, 0, 100, 50, 10, 5, 4, 3)).toEqual([10, 5, 4, 3]);
    expect(rect(2, 0, 200, 100, 10, 5, 4, 3)).toEqual([20, 10, 8, 6]);
    // the whole surface is the whole buffer, whatever the transform
    for (let t = 0; t < 8; t++) expect(rect(2, t, 200, 100, 0, 0, 1e9, 1e9)).toBe('full');
    // 90°: buffer x runs along surface y; surface (0,0)-(10,20) of a 50×100 surface
    expect(rect(1, 1, 100, 50, 0, 0, 10, 20)).toEqual([0, 40, 20, 10]);
    expect(rect(1, 2, 100, 50, 0, 0, 10, 20)).toEqual([90, 30, 10, 20]);
    expect(rect(1, 4, 100, 50, 0, 0, 10, 20)).toEqual([90, 0, 10, 20]);
    // INT32_MAX damage does not overflow
    expect(rect(3, 0, 30, 30, 0, 0, 2147483647, 2147483647)).toBe('full');
  });

  test('bytes per pixel of wl_shm formats', () => {
    expect(bytesPerPixel(0)).toBe(4); // argb8888
    expect(bytesPerPixel(1)).toBe(4); // xrgb8888
    expect(bytesPerPixel(0x36314752)).toBe(2); // RG16 (rgb565)
    expect(bytesPerPixel(0x34324742)).toBe(3); // BG24
    expect(bytesPerPixel(0x48344241)).toBe(8); // AB4H
    expect(bytesPerPixel(0x3231564e)).toBe(0); // NV12: not one packed plane
  });
});

/** What the host buffer of a surface holds equals the client buffer it was copied from. */
function hostMatchesClient(s: SurfaceShadow): boolean {
  const b = s.lastBuffer!;
  const h = s.lastHostBuffer!;
  const src = b.pool.map();
  const row = b.width * bytesPerPixel(b.format);
  for (let y = 0; y < b.height; y++) {
    const a = src.subarray(b.offset + y * b.stride, b.offset + y * b.stride + row);
    const c = h.memory.bytes.subarray(y * b.stride, y * b.stride + row);
    if (!a.equals(c)) return false;
  }
  return true;
}

interface CommitRecord {
  copied: number;
  frameBytes: number;
  matches: boolean;
}

let weston: Compositor & { weston: Running };
let host: { run: Running; path: string };
let proxy: InProcessProxy;
/** Every commit of a shadowed buffer the proxy handled, in order. */
const commits: CommitRecord[] = [];
let lastCopied = 0;

beforeAll(async () => {
  weston = await startHeadlessWeston();
  host = await startHost(weston);
  proxy = startCrossDomainProxy(weston, host.path, (hooks: Map<string, InterfaceHooks>) => {
    const surface = hooks.get('wl_surface')!;
    hooks.set('wl_surface', {
      ...surface,
      request(ctx, opcode, args) {
        const before = (ctx.obj.state as SurfaceShadow | undefined)?.lastHostBuffer;
        const before2 = (ctx.obj.state as SurfaceShadow | undefined)?.lastBuffer;
        const result = surface.request!(ctx, opcode, args);
        const s = ctx.obj.state;
        if (opcode === 6 && s instanceof SurfaceShadow && s.lastBuffer) {
          const copied = native.copiedBytes() - lastCopied;
          if (copied > 0 || s.lastHostBuffer !== before || s.lastBuffer !== before2) {
            commits.push({
              copied,
              frameBytes: s.lastBuffer.byteSize,
              matches: hostMatchesClient(s),
            });
          }
        }
        lastCopied = native.copiedBytes();
        return result;
      },
    });
  });
});

afterAll(async () => {
  try {
    proxy?.close();
  } finally {
    killAll(); // weston and tswl-host too, whatever happened above
    await weston?.stop();
  }
});

function relayOf(): Relay {
  return [...proxy.server.relays].at(-1)!;
}

/** A client with one pool holding two W×H XRGB buffers it draws into from this process. */
async function shmClient(width: number, height: number) {
  const c = new ShmClient(`${weston.runtimeDir}/wayland-1`);
  const { compositor, shm } = await c.setup();
  const stride = width * 4;
  const size = stride * height * 2;
  const memfd = native.memfdCreate('test-client-pool', size);
  const pixels = native.mmap(memfd, 0, size, true);
  const pool = c.createPool(shm, memfd, size);
  const buffers = [
    c.createBuffer(pool, 0, width, height, stride),
    c.createBuffer(pool, stride * height, width, height, stride),
  ];
  const surface = c.createSurface(compositor);
  await c.roundtrip();
  return { c, memfd, pixels, pool, shm, buffers, surface, stride, size };
}

describe('shadow buffers', () => {
  test('a small damaged rectangle copies about that many bytes, not the frame', async () => {
    const W = 320;
    const H = 200;
    const { c, pixels, buffers, surface, stride, memfd } = await shmClient(W, H);
    const frame = stride * H;
    /** The picture: a background, and a 10×10 square at (x, y). */
    const draw = (i: number, x: number, y: number, value: number) => {
      const base = i * frame;
      pixels.fill(0x40, base, base + frame);
      for (let row = y; row < y + 10; row++)
        pixels.fill(value, base + row * stride + x * 4, base + row * stride + (x + 10) * 4);
    };
    commits.length = 0;
    const positions: [number, number][] = [];
    for (let n = 0; n < 12; n++) {
      const i = n % 2;
      const x = 10 + n * 20;
      const y = 20 + n * 10;
      positions.push([x, y]);
      draw(i, x, y, n + 1);
      c.attach(surface, buffers[i]);
      if (n === 0) c.damage(surface, 0, 0, W, H);
      else {
        // what changed since the last frame: the square's old place and its new one
        const [px, py] = positions[n - 1];
        c.damage(surface, px, py, 10, 10);
        c.damage(surface, x, y, 10, 10);
      }
      c.commit(surface);
      const events = await c.roundtrip();
      // the client's buffer is released at once: its pixels are in host memory already
      expect(events.some((e) => e.id === buffers[i] && e.opcode === 0)).toBe(true);
    }
    expect(c.errors()).toEqual([]);
    expect(commits).toHaveLength(12);
    expect(commits.every((r) => r.matches)).toBe(true);
    // new host buffers are written whole (two, or a third if the host was slow to release
    // one); every other frame copies the damage of the frames since that host buffer was last
    // written: two frames of two 10×10 squares, 1600 bytes of a 256000-byte frame
    expect(commits[0].copied).toBe(frame);
    expect(commits[1].copied).toBe(frame);
    const whole = commits.filter((r) => r.copied === frame);
    const partial = commits.filter((r) => r.copied !== frame);
    expect(whole.length).toBeLessThanOrEqual(3);
    for (const r of partial) {
      expect(r.copied).toBeGreaterThan(0);
      expect(r.copied).toBeLessThanOrEqual(4 * 10 * 10 * 4);
    }
    const s = relayOf().clientIds.get(surface)!.state as SurfaceShadow;
    expect(s.hostBuffers.length).toBe(whole.length);
    c.close();
    native.close(memfd);
    native.munmap(pixels);
  });

  test('a client that commits as fast as it gets buffers back waits for the compositor: three host buffers, and frames copy about their damage', async () => {
    const W = 400;
    const H = 300;
    const stride = W * 4;
    const frame = stride * H;
    const c = new ShmClient(`${weston.runtimeDir}/wayland-1`);
    const { compositor, shm } = await c.setup();
    const memfd = native.memfdCreate('fast-client', frame * 3);
    const pixels = native.mmap(memfd, 0, frame * 3, true);
    const pool = c.createPool(shm, memfd, frame * 3);
    const buffers = [0, 1, 2].map((i) => c.createBuffer(pool, i * frame, W, H, stride));
    const surface = c.createSurface(compositor);
    await c.roundtrip();
    const busy = new Set<number>();
    commits.length = 0;
    // a W/4 × H/5 rectangle (5 %) moves every frame over a still background: the damage is its
    // old and new places (the first frame is damaged whole)
    const dw = W / 4;
    const dh = H / 5;
    let last: [number, number] = [0, 0];
    for (let n = 0; n < 60; n++) {
      let b: number | undefined;
      await waitFor('a free buffer', () => {
        c.poll();
        for (const e of c.events.splice(0)) if (e.opcode === 0) busy.delete(e.id);
        b = buffers.find((x) => !busy.has(x));
        return b !== undefined;
      });
      const i = buffers.indexOf(b!);
      const x = (n * 37) % (W - dw);
      const y = (n * 23) % (H - dh);
      pixels.fill(0x40, i * frame, (i + 1) * frame);
      for (let row = y; row < y + dh; row++)
        pixels.fill(
          n + 1,
          i * frame + row * stride + x * 4,
          i * frame + row * stride + (x + dw) * 4,
        );
      c.attach(surface, b!);
      if (n === 0) c.damage(surface, 0, 0, W, H);
      else c.damage(surface, last[0], last[1], dw, dh).damage(surface, x, y, dw, dh);
      last = [x, y];
      c.commit(surface).send();
      busy.add(b!);
    }
    await c.roundtrip();
    expect(c.errors()).toEqual([]);
    const shadow = relayOf().clientIds.get(surface)!.state as SurfaceShadow;
    expect(shadow.hostBuffers.length).toBeLessThanOrEqual(3);
    expect(commits.every((r) => r.matches)).toBe(true);
    // after each host buffer's first (whole) copy, a frame copies its own damage (the two places
    // of the rectangle) and the previous frame's, which that host buffer missed: at most 1.5× what
    // the client damaged (less where the places overlap). A host buffer left unused a while
    // catches up with more (its rectangles merge into their bounds), which is rare: on average,
    // at most twice the damage.
    const later = commits.slice(3);
    const damaged = 2 * dw * dh * 4;
    expect(later.length).toBeGreaterThan(50);
    const withinTwice = later.filter((r) => r.copied <= 2 * damaged).length;
    expect(withinTwice / later.length).toBeGreaterThan(0.9);
    const average = later.reduce((n, r) => n + r.copied, 0) / later.length;
    expect(average).toBeLessThanOrEqual(2 * damaged);
    c.close();
    native.munmap(pixels);
    native.close(memfd);
  });

  test('thousands of damage requests before a commit are kept as a few rectangles, and the frame still arrives whole', async () => {
    const W = 256;
    const H = 64;
    const { c, pixels, buffers, surface, stride, memfd } = await shmClient(W, H);
    for (let row = 0; row < H; row++) pixels.fill(row + 1, row * stride, (row + 1) * stride);
    // host buffers that have all seen this picture, so the next commit copies only damage
    for (let n = 0; n < 8; n++) {
      if (n === 0) c.attach(surface, buffers[0]).damage(surface, 0, 0, W, H);
      else c.attach(surface, buffers[0]).damage(surface, W - 1, H - 1, 1, 1);
      c.commit(surface);
      await c.roundtrip();
    }
    commits.length = 0;
    // every pixel damaged on its own, half as buffer damage and half as surface damage: 16384
    // requests, one commit
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) c.damage(surface, x, y, 1, 1, y % 2 === 0);
      await c.roundtrip();
    }
    await c.roundtrip();
    const s = relayOf().clientIds.get(surface)!.state as SurfaceShadow;
    const pending = s as unknown as { [kind: string]: { count: number } };
    expect(pending.surfaceDamage.count).toBeLessThanOrEqual(16);
    expect(pending.bufferDamage.count).toBeLessThanOrEqual(16);
    for (let row = 0; row < H; row++) pixels.fill(0x80 + row, row * stride, (row + 1) * stride);
    c.attach(surface, buffers[0]).commit(surface);
    await c.roundtrip();
    expect(c.errors()).toEqual([]);
    expect(commits).toHaveLength(1);
    expect(commits[0].matches).toBe(true);
    // the bounds of each kind: two rectangles, each about the frame
    expect(commits[0].copied).toBeLessThanOrEqual(2 * stride * H);
    c.close();
    native.close(memfd);
    native.munmap(pixels);
  });

  test('when the client resizes, host buffers of the old size go once the host lets them go', async () => {
    const c = new ShmClient(`${weston.runtimeDir}/wayland-1`);
    const { compositor, shm } = await c.setup();
    const size = 200 * 100 * 4 * 2;
    const memfd = native.memfdCreate('resize-pool', size);
    const pool = c.createPool(shm, memfd, size);
    const surface = c.createSurface(compositor);
    const frames = (w: number, h: number) => [
      c.createBuffer(pool, 0, w, h, w * 4),
      c.createBuffer(pool, w * h * 4, w, h, w * 4),
    ];
    const small = frames(100, 50);
    const big = frames(200, 100);
    for (let n = 0; n < 6; n++) {
      const b = (n < 3 ? small : big)[n % 2];
      c.attach(surface, b).damage(surface, 0, 0, 200, 100).commit(surface);
      await c.roundtrip();
    }
    expect(c.errors()).toEqual([]);
    const s = relayOf().clientIds.get(surface)!.state as SurfaceShadow;
    expect(s.hostBuffers.length).toBeLessThanOrEqual(3);
    expect(s.hostBuffers.filter((h) => !h.busy).every((h) => h.width === 200)).toBe(true);
    c.close();
    native.close(memfd);
  });

  test('pools are mapped when a commit needs their pixels, not before', async () => {
    const { c, pixels, buffers, surface, pool, memfd } = await shmClient(64, 64);
    const obj = relayOf().clientIds.get(pool)!;
    expect(obj.state).toBeInstanceOf(ClientPool);
    expect((obj.state as ClientPool).mapping).toBeNull();
    c.attach(surface, buffers[0]).damage(surface, 0, 0, 64, 64).commit(surface);
    await c.roundtrip();
    expect((obj.state as ClientPool).mapping).not.toBeNull();
    expect(relayOf().clientIds.get(buffers[1])!.state).toBeInstanceOf(ShmBuffer);
    // a grown pool is mapped again, lazily, at its new size
    const oldSize = (obj.state as ClientPool).size;
    ftruncateSync(memfd, oldSize * 2);
    c.message(pool, 2, (w) => w.int(oldSize * 2)); // wl_shm_pool.resize
    await c.roundtrip();
    expect((obj.state as ClientPool).mapping).toBeNull();
    const far = c.createBuffer(pool, oldSize, 64, 64, 256);
    const tail = native.mmap(memfd, 0, oldSize * 2, true);
    tail.fill(0x7f, oldSize, oldSize * 2);
    c.attach(surface, far).damage(surface, 0, 0, 64, 64).commit(surface);
    await c.roundtrip();
    native.munmap(tail);
    expect(c.errors()).toEqual([]);
    expect(commits.at(-1)!.matches).toBe(true);
    expect((obj.state as ClientPool).mapping!.length).toBe(oldSize * 2);
    // shrinking is refused, as libwayland does
    c.message(pool, 2, (w) => w.int(16));
    await c.roundtrip();
    expect(c.errors()[0]).toMatchObject({ object: pool, code: 1 });
    c.close();
    native.close(memfd);
    native.munmap(pixels);
  });

  test('a client that truncates its pool gets invalid_fd; the proxy and other clients go on', async () => {
    const other = await shmClient(32, 32);
    const { c, pixels, buffers, surface, memfd, shm } = await shmClient(128, 128);
    native.munmap(pixels); // this process must not touch the truncated memory either
    ftruncateSync(memfd, 0);
    c.attach(surface, buffers[0]).damage(surface, 0, 0, 128, 128).commit(surface);
    await c.roundtrip();
    const errors = c.errors();
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ object: shm, code: 2 });
    expect(errors[0].message).toMatch(/truncated/);
    // the other client still works
    other.c
      .attach(other.surface, other.buffers[0])
      .damage(other.surface, 0, 0, 32, 32)
      .commit(other.surface);
    const events = await other.c.roundtrip();
    expect(events.some((e) => e.id === other.buffers[0] && e.opcode === 0)).toBe(true);
    expect(other.c.errors()).toEqual([]);
    c.close();
    other.c.close();
    native.close(memfd);
    native.close(other.memfd);
    native.munmap(other.pixels);
  });

  test('every fd and mapping is released when a client goes', async () => {
    await waitFor('earlier clients to be gone', () => proxy.server.relays.size === 0);
    // memory files mapped, and fds of the kinds the proxy holds (the runtime's own come and go)
    const maps = () => readFileSync('/proc/self/maps', 'utf8').match(/memfd:/g)?.length ?? 0;
    const openFds = () =>
      readdirSync('/proc/self/fd').filter((f) => {
        try {
          return /^(memfd:|socket:|pipe:|anon_inode:\[eventfd)/.test(
            readlinkSync(`/proc/self/fd/${f}`),
          );
        } catch {
          return false;
        }
      }).length;
    const fds = openFds();
    const mappings = maps();
    const { c, pixels, buffers, surface, memfd } = await shmClient(100, 60);
    for (let n = 0; n < 4; n++) {
      c.attach(surface, buffers[n % 2])
        .damage(surface, 0, 0, 100, 60)
        .commit(surface);
      await c.roundtrip();
    }
    native.munmap(pixels);
    native.close(memfd);
    c.close();
    await waitFor('the relay to close', () => proxy.server.relays.size === 0);
    expect(openFds()).toBe(fds);
    expect(maps()).toBe(mappings);
  });
});

describe('weston-simple-damage: the host always shows what the client drew', () => {
  const variants: string[][] = [
    [],
    ['--use-damage-buffer'],
    ['--scale=2'],
    ['--transform=90'],
    ['--transform=flipped-270', '--scale=2'],
    ['--rotating-transform'],
    ['--use-viewport'],
  ];
  for (const args of variants) {
    test(`weston-simple-damage ${args.join(' ') || '(plain)'}`, async () => {
      commits.length = 0;
      lastCopied = native.copiedBytes();
      const run = start('weston-simple-damage', args, proxy.env);
      await waitFor('30 frames', () => commits.length >= 30 || run.child.exitCode !== null, 20000);
      await stop(run, 'SIGINT');
      expect(commits.length, run.output()).toBeGreaterThanOrEqual(30);
      expect(commits.filter((r) => !r.matches)).toEqual([]);
      if (args.includes('--use-viewport') || args.includes('--rotating-transform')) return;
      // (surface damage under a viewport, or with the transform changing, is copied whole)
      // a ball moving over a still background: apart from new host buffers, which are copied
      // whole, a few percent of each frame
      const partial = commits.filter((r) => r.copied < r.frameBytes);
      expect(partial.length).toBeGreaterThan(commits.length * 0.8);
      const copied = partial.reduce((n, r) => n + r.copied, 0);
      const frames = partial.reduce((n, r) => n + r.frameBytes, 0);
      expect(copied / frames).toBeLessThan(0.05);
    });
  }
});

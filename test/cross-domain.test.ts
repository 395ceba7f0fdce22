// The cross-domain host link: its framing against a recording device, the local-link VirtGpu
// against a real tswl-host, and whole clients (wayland-info, weston-simple-shm, wl-clipboard)
// through proxy → cross-domain context → tswl-host → weston.
import { spawn } from 'node:child_process';
import { fstatSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { allInterfaces } from '../src/generated/index.js';
import { PRIVILEGED_GLOBALS, VM_BOUNDARY_HIDDEN_GLOBALS } from '../src/relay/policy.js';
import { CrossDomainLink, openVirtGpu } from '../src/links/cross-domain.js';
import * as native from '../src/native/index.js';
import { LocalVirtGpu } from '../src/virtgpu/local.js';
import { BlobFlag, BlobMem, CrossDomainCmd, CrossDomainId } from '../src/virtgpu/protocol.js';
import type {
  BlobHandle,
  ExecbufferOptions,
  ResourceInfo,
  VirtGpu,
} from '../src/virtgpu/virtgpu.js';
import { VirtGpuParam, pageAlign } from '../src/virtgpu/virtgpu.js';
import type { EndpointHandler } from '../src/wire/connection.js';
import { reopen } from '../src/wire/fd-queue.js';
import {
  type Compositor,
  type InProcessProxy,
  startCrossDomainProxy,
  startHost,
  startX11Weston,
} from './support/cross-domain.js';
import { type Running, killAll, start, stop, waitFor } from './support/processes.js';
import { ShmClient } from './support/shm-client.js';
import { proxyBin, startHeadlessWeston } from './support/weston.js';

/** A device that records what the link submits and lets the test play the host's part. */
class RecordingGpu implements VirtGpu {
  onFence: (() => void) | null = null;
  onError: ((error: Error) => void) | null = null;
  onDrain: (() => void) | null = null;
  /** Commands the device has not taken yet: a test sets it to play a device that is behind. */
  queuedBytes = 0;
  readonly submits: { commands: Buffer; ringIdx?: number }[] = [];
  readonly blobs = new Map<
    number,
    { resId: number; size: number; memfd: number; blobMem: number; blobId: number }
  >();
  private nextHandle = 1;
  private nextRes = 1;
  closed = false;

  getParam(param: number): number {
    return param === VirtGpuParam.SUPPORTED_CAPSET_IDS ? 1 << 5 : 1;
  }
  getCaps(): Buffer {
    const caps = Buffer.alloc(16);
    caps.writeUInt32LE(1, 0);
    caps.writeUInt32LE(1 << 1, 4);
    return caps;
  }
  contextInit(): void {}
  createBlob(blobMem: number, _flags: number, size: number, blobId: number): BlobHandle {
    const memfd = native.memfdCreate('fake-blob', pageAlign(size));
    const handle = this.nextHandle++;
    const resId = this.nextRes++;
    this.blobs.set(handle, { resId, size: pageAlign(size), memfd, blobMem, blobId });
    return { handle, resId };
  }
  private readonly maps = new Map<number, Buffer>();
  map(handle: number): Buffer {
    let m = this.maps.get(handle);
    if (!m) {
      m = native.mmap(this.blobs.get(handle)!.memfd, 0, this.blobs.get(handle)!.size, true);
      this.maps.set(handle, m);
    }
    return m;
  }
  unmap(handle: number): void {
    const m = this.maps.get(handle);
    if (m) native.munmap(m);
    this.maps.delete(handle);
  }
  exportFd(handle: number): number {
    // a second open file of the same memory, as a dma-buf export would be
    return openSync(`/proc/self/fd/${this.blobs.get(handle)!.memfd}`, 'r+');
  }
  importFd(fd: number): number {
    const ino = inode(fd);
    for (const [h, b] of this.blobs) if (inode(b.memfd) === ino) return h;
    throw new Error('not a blob of this device');
  }
  resourceInfo(handle: number): ResourceInfo {
    const b = this.blobs.get(handle)!;
    return { resId: b.resId, size: b.size, blobMem: b.blobMem };
  }
  closeHandle(handle: number): void {
    const b = this.blobs.get(handle);
    if (b) native.close(b.memfd);
    this.blobs.delete(handle);
  }
  execbuffer(commands: Uint8Array, options: ExecbufferOptions = {}): void {
    this.submits.push({ commands: Buffer.from(commands), ringIdx: options.ringIdx });
  }
  wait(): boolean {
    return true;
  }
  close(): void {
    this.closed = true;
    for (const h of [...this.maps.keys()]) this.unmap(h);
    for (const h of [...this.blobs.keys()]) this.closeHandle(h);
  }

  /** The commands of every submission so far, split by cmd_size. */
  commands(): Buffer[] {
    const out: Buffer[] = [];
    for (const s of this.submits) {
      let at = 0;
      while (at < s.commands.length) {
        const size = s.commands.readUInt16LE(at + 2);
        out.push(s.commands.subarray(at, at + size));
        at += size;
      }
    }
    return out;
  }

  /** The channel ring page (the second GUEST blob). */
  channelPage(): Buffer {
    const guest = [...this.blobs].filter(([, b]) => b.blobMem === BlobMem.GUEST);
    return this.map(guest[1][0]);
  }
}

function inode(fd: number): string {
  const st = fstatSync(fd);
  return `${st.dev}:${st.ino}`;
}

/**
 * Runs a program without blocking this process (the proxy lives here: spawnSync would deadlock
 * it). Resolves at its exit, or, with `untilClose`, once its output is closed as well.
 */
function run(
  command: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  options: { input?: string; untilClose?: boolean; timeoutMs?: number } = {},
): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(command, args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 10000);
    child.once(options.untilClose ? 'close' : 'exit', (code) => {
      clearTimeout(timer);
      resolve({ status: code, stdout, stderr });
    });
    // a program that exits without reading its input is no failure of the test
    child.stdin.on('error', () => {});
    child.stdin.end(options.input ?? '');
  });
}

describe('the link against a recording device', () => {
  let gpu: RecordingGpu;
  let link: CrossDomainLink;
  const seen = { data: 0, closed: [] as (Error | null)[] };
  const handler: EndpointHandler = {
    onData: () => seen.data++,
    onClose: (e) => seen.closed.push(e),
  };

  afterEach(() => {
    link?.close();
    seen.data = 0;
    seen.closed.length = 0;
  });

  function open(): void {
    gpu = new RecordingGpu();
    link = new CrossDomainLink(gpu, handler);
  }

  test('setup: two ring pages, a 20-byte INIT naming them, then one POLL on ring 1', () => {
    open();
    const [init, poll] = gpu.commands();
    expect(init[0]).toBe(CrossDomainCmd.INIT);
    expect(init.length).toBe(20);
    const rings = [...gpu.blobs.values()].filter((b) => b.blobMem === BlobMem.GUEST);
    expect(rings).toHaveLength(2);
    expect([init.readUInt32LE(8), init.readUInt32LE(12), init.readUInt32LE(16)]).toEqual([
      rings[0].resId,
      rings[1].resId,
      1,
    ]);
    expect(poll[0]).toBe(CrossDomainCmd.POLL);
    expect(gpu.submits.at(-1)!.ringIdx).toBe(1);
  });

  test('big output is split into SENDs of at most 3744 bytes, all in order', () => {
    open();
    gpu.submits.length = 0;
    const payload = Buffer.alloc(10000);
    for (let i = 0; i < payload.length; i++) payload[i] = i % 251;
    link.out.copyFrom(payload, 0, payload.length);
    link.flush();
    const sends = gpu.commands();
    expect(sends.map((c) => c.readUInt32LE(12))).toEqual([3744, 3744, 10000 - 7488]);
    const joined = Buffer.concat(sends.map((c) => c.subarray(352, 352 + c.readUInt32LE(12))));
    expect(joined.equals(payload)).toBe(true);
    expect(sends.every((c) => c[0] === CrossDomainCmd.SEND && c.length % 4 === 0)).toBe(true);
  });

  test('fds: blobs by resource id, pipes as READ_PIPE with predicted ids, one per SEND', () => {
    open();
    gpu.submits.length = 0;
    const blob = gpu.createBlob(BlobMem.HOST3D, BlobFlag.USE_MAPPABLE, 8192, 7);
    const blobFd = gpu.exportFd(blob.handle);
    const [r1, w1] = native.pipe();
    const [r2, w2] = native.pipe();
    link.out.copyFrom(Buffer.alloc(64), 0, 64);
    link.out.fds.push(blobFd, w1, w2);
    link.flush();
    const sends = gpu.commands();
    expect(sends).toHaveLength(2);
    const ids = (c: Buffer) =>
      Array.from({ length: c.readUInt32LE(8) }, (_, i) => [
        c.readUInt32LE(16 + 4 * i),
        c.readUInt32LE(128 + 4 * i),
      ]);
    expect(ids(sends[0])).toEqual([
      [blob.resId, CrossDomainId.VIRTGPU_BLOB],
      [0x80000001, CrossDomainId.READ_PIPE],
    ]);
    // the second pipe waits for the next SEND; the first carries only 4 bytes so it is on time
    expect(sends[0].readUInt32LE(12)).toBe(4);
    expect(ids(sends[1])).toEqual([[0x80000002, CrossDomainId.READ_PIPE]]);
    expect(sends[1].readUInt32LE(12)).toBe(60);
    // READ data for the first pipe reaches the client's read end; hang_up closes it
    const page = gpu.channelPage();
    page.fill(0, 0, 64);
    page[0] = CrossDomainCmd.READ;
    page.writeUInt32LE(0x80000001, 8);
    page.writeUInt32LE(1, 12);
    page.writeUInt32LE(5, 16);
    page.write('hello', 24);
    gpu.onFence!();
    const got = Buffer.alloc(16);
    expect(native.readFd(r1, got, 0, 16)).toBe(5);
    expect(got.toString('utf8', 0, 5)).toBe('hello');
    expect(native.readFd(r1, got, 0, 16)).toBe(0); // hung up: the link closed its write end
    // and a new POLL went out after the message was taken
    expect(gpu.submits.at(-1)!.ringIdx).toBe(1);
    for (const fd of [r1, r2]) native.close(fd);
  });

  test('RECEIVE: bytes to the input buffer, a write pipe becomes a local pipe pumped with WRITE', async () => {
    open();
    const page = gpu.channelPage();
    page.fill(0, 0, 512);
    page[0] = CrossDomainCmd.RECEIVE;
    page.writeUInt32LE(1, 8);
    page.writeUInt32LE(8, 12);
    page.writeUInt32LE(42, 16);
    page.writeUInt32LE(CrossDomainId.WRITE_PIPE, 128);
    page.write('ABCDEFGH', 352);
    gpu.submits.length = 0;
    gpu.onFence!();
    expect(seen.data).toBe(1);
    expect(link.in.toString('utf8', link.inStart, link.inEnd)).toBe('ABCDEFGH');
    expect(link.inFds.length).toBe(1);
    const fds = new Int32Array(1);
    link.inFds.take(1, fds);
    expect(native.fdKind(fds[0]).kind).toBe('pipe-write');
    native.writeFd(fds[0], Buffer.from('clip'), 0, 4);
    native.close(fds[0]);
    await waitFor('WRITE with hang_up', () =>
      gpu.commands().some((c) => c[0] === CrossDomainCmd.WRITE && c.readUInt32LE(12) === 1),
    );
    const writes = gpu.commands().filter((c) => c[0] === CrossDomainCmd.WRITE);
    const data = Buffer.concat(writes.map((c) => c.subarray(24, 24 + c.readUInt32LE(16))));
    expect(data.toString()).toBe('clip');
    expect(writes.every((c) => c.readUInt32LE(8) === 42)).toBe(true);
  });

  test('a paste into a client that reads late never blocks the link, and all of it arrives', async () => {
    open();
    // the client's pipe, blocking as pipe(2) makes it
    const [r, nonblocking] = native.pipe();
    const w = reopen(nonblocking, 'write');
    native.close(nonblocking);
    link.out.copyFrom(Buffer.alloc(16), 0, 16);
    link.out.fds.push(w);
    link.flush();
    const page = gpu.channelPage();
    const chunk = 4072;
    const total = 300 * chunk; // more than a pipe holds, and than the link keeps queued
    let polls = 0;
    for (let i = 0; i < 300; i++) {
      page.fill(0, 0, 24);
      page[0] = CrossDomainCmd.READ;
      page.writeUInt32LE(0x80000001, 8);
      page.writeUInt32LE(i === 299 ? 1 : 0, 12);
      page.writeUInt32LE(chunk, 16);
      page.fill(i % 251, 24, 24 + chunk);
      const before = gpu.submits.length;
      gpu.onFence!(); // returns at once: nothing here waits for the reader
      polls += gpu.submits.length - before;
    }
    // past its backlog limit the link stopped asking for more
    expect(polls).toBeLessThan(300);
    const got = Buffer.alloc(total + 1);
    let n = 0;
    await waitFor('every byte', async () => {
      for (;;) {
        const k = native.readFd(r, got, n, got.length);
        if (k <= 0) return k === 0;
        n += k;
      }
    });
    expect(n).toBe(total);
    for (let i = 0; i < 300; i++) expect(got[i * chunk]).toBe(i % 251);
    native.close(r);
  });

  test('a source client writes into a blocking pipe, read only while the device keeps up', async () => {
    open();
    const page = gpu.channelPage();
    page.fill(0, 0, 512);
    page[0] = CrossDomainCmd.RECEIVE;
    page.writeUInt32LE(1, 8);
    page.writeUInt32LE(8, 12);
    page.writeUInt32LE(42, 16);
    page.writeUInt32LE(CrossDomainId.WRITE_PIPE, 128);
    gpu.onFence!();
    const fds = new Int32Array(1);
    link.inFds.take(1, fds);
    // what a client gets is blocking, as pipe(2) makes it: simple writers never see EAGAIN
    const flags = /flags:\s+(\d+)/.exec(readFileSync(`/proc/self/fdinfo/${fds[0]}`, 'utf8'))![1];
    expect(parseInt(flags, 8) & 0o4000).toBe(0);
    const writes = (): number => gpu.commands().filter((c) => c[0] === CrossDomainCmd.WRITE).length;
    // the device is behind: the client's data waits in its pipe
    gpu.queuedBytes = 1 << 20;
    native.writeFd(fds[0], Buffer.from('data'), 0, 4);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(writes()).toBe(0);
    gpu.queuedBytes = 0;
    gpu.onDrain!();
    await waitFor('the WRITE', () => writes() > 0);
    native.close(fds[0]);
  });

  test('an empty RECEIVE is the host closing: onClose(null), no more POLLs', () => {
    open();
    const page = gpu.channelPage();
    page.fill(0, 0, 512);
    page[0] = CrossDomainCmd.RECEIVE;
    const before = gpu.submits.length;
    gpu.onFence!();
    expect(seen.closed).toEqual([null]);
    expect(link.closed).toBe(true);
    expect(gpu.closed).toBe(true);
    expect(gpu.submits.length).toBe(before);
  });

  test('a guest memory fd cannot cross: the link fails with a clear reason', () => {
    open();
    const memfd = native.memfdCreate('guest', 4096);
    link.out.copyFrom(Buffer.alloc(16), 0, 16);
    link.out.fds.push(memfd);
    link.flush();
    expect(seen.closed).toHaveLength(1);
    expect(seen.closed[0]!.message).toMatch(/only virtio-gpu buffers cross the VM boundary/);
  });

  test('while the relay is not reading, no new POLL goes out', () => {
    open();
    link.setReading(false);
    const page = gpu.channelPage();
    page.fill(0, 0, 512);
    page[0] = CrossDomainCmd.RECEIVE;
    page.writeUInt32LE(8, 12);
    const before = gpu.submits.length;
    gpu.onFence!();
    expect(gpu.submits.length).toBe(before);
    link.setReading(true);
    expect(gpu.submits.length).toBe(before + 1);
    expect(gpu.submits.at(-1)!.ringIdx).toBe(1);
  });
});

describe('devices', () => {
  test('openVirtGpu: a character device must be a virtio-gpu DRM node', () => {
    expect(() => openVirtGpu('/dev/null')).toThrow(/\/dev\/null is not a DRM device/);
    expect(() => openVirtGpu('/etc/hostname')).toThrow(/neither a DRM device nor/);
    expect(() => openVirtGpu('/nonexistent/gpu')).toThrow(/ENOENT|no such file/i);
  });
});

describe('through tswl-host and weston', () => {
  let weston: Compositor & { weston: Running };
  let host: { run: Running; path: string };
  let proxy: InProcessProxy;

  beforeAll(async () => {
    weston = await startHeadlessWeston();
    host = await startHost(weston);
    proxy = startCrossDomainProxy(weston, host.path);
  });

  afterAll(async () => {
    try {
      proxy?.close();
    } finally {
      killAll(); // weston and tswl-host too, whatever happened above
      await weston?.stop();
    }
  });

  test('the local-link VirtGpu behaves like the DRM uapi', () => {
    const gpu = LocalVirtGpu.connect(host.path);
    try {
      expect(gpu.getParam(VirtGpuParam.SUPPORTED_CAPSET_IDS) & (1 << 5)).toBeTruthy();
      expect(() => gpu.getParam(99)).toThrow(/unknown GETPARAM/);
      const caps = gpu.getCaps(5, 0, 16);
      expect(caps.readUInt32LE(0)).toBe(1);
      expect(caps.readUInt32LE(4) & 2).toBe(2);
      expect(() => gpu.getCaps(5, 1, 16)).toThrow();
      gpu.contextInit(5, 2, 2);
      expect(() => gpu.contextInit(5, 2, 2)).toThrow(/already has a context/);
      const ring = gpu.createBlob(BlobMem.GUEST, BlobFlag.USE_MAPPABLE, 4096, 0);
      const page = gpu.map(ring.handle);
      expect(page.length).toBe(4096);
      expect(gpu.resourceInfo(ring.handle)).toMatchObject({
        resId: ring.resId,
        size: 4096,
        blobMem: BlobMem.GUEST,
      });
      expect(() => gpu.execbuffer(Buffer.alloc(16), { ringIdx: 2 })).toThrow(/ring 2 out of range/);
      gpu.unmap(ring.handle);
      gpu.closeHandle(ring.handle);
    } finally {
      gpu.close();
    }
  });

  test("wayland-info lists weston's globals less what cannot cross the VM boundary", async () => {
    const globals = async (env: NodeJS.ProcessEnv) => {
      const r = await run('wayland-info', [], env, { untilClose: true });
      expect(r.status, r.stderr).toBe(0);
      return [...r.stdout.matchAll(/^interface: '(\w+)',\s+version:\s+(\d+)/gm)].map(
        (m) => `${m[1]} ${m[2]}`,
      );
    };
    const known = new Map(allInterfaces.map((i) => [i.name, i.version]));
    const direct = (await globals(weston.env)).map((g) => g.split(' '));
    // weston 10 offers one global that cannot cross, and none that is privileged
    expect(direct.filter(([name]) => VM_BOUNDARY_HIDDEN_GLOBALS.has(name))).toHaveLength(1);
    expect(direct.filter(([name]) => PRIVILEGED_GLOBALS.has(name))).toEqual([]);
    const expected = direct
      .filter(([name]) => known.has(name) && !VM_BOUNDARY_HIDDEN_GLOBALS.has(name))
      .map(([name, v]) => `${name} ${Math.min(Number(v), known.get(name)!)}`);
    expect(await globals(proxy.env)).toEqual(expected);
  });

  test('weston-simple-shm draws frame after frame', async () => {
    const run = start('weston-simple-shm', [], { ...proxy.env, WAYLAND_DEBUG: 'client' });
    const releases = () => (run.output().match(/wl_buffer@\d+\.release\(\)/g) ?? []).length;
    await waitFor('60 frames', () => releases() >= 60 || run.child.exitCode !== null, 20000);
    expect(run.child.exitCode, run.output().slice(-2000)).toBeNull();
    expect(run.output()).not.toMatch(/error/i);
    await stop(run, 'SIGINT');
  });

  test('a host protocol error reaches the client, then the empty RECEIVE ends its relay', async () => {
    const c = new ShmClient(join(weston.runtimeDir, 'wayland-1'));
    const { compositor } = await c.setup();
    const surface = c.createSurface(compositor);
    const registry = 2;
    const sub = c.newId();
    c.message(registry, 0, (w) => {
      w.uint(c.globals.get('wl_subcompositor')!);
      w.string('wl_subcompositor');
      w.uint(1);
      w.newId(sub);
    });
    const child = c.newId();
    // a surface cannot be its own parent: weston's bad_surface
    c.message(sub, 1, (w) => {
      w.newId(child);
      w.object(surface);
      w.object(surface);
    });
    await c.roundtrip();
    const errors = c.errors();
    expect(errors).toHaveLength(1);
    expect(errors[0].object).toBe(sub);
    await waitFor('the relay to end', () => proxy.server.relays.size === 0);
    c.close();
  });

  test('when tswl-host goes away, clients are told and the proxy stays up', async () => {
    const c = new ShmClient(join(weston.runtimeDir, 'wayland-1'));
    await c.setup();
    await stop(host.run, 'SIGKILL');
    await waitFor('the client to hear', () => {
      c.poll();
      return c.eof;
    });
    expect(c.errors()[0]?.message ?? '').toMatch(/lost the host compositor/);
    c.close();
    // a new client is refused with a reason, the proxy goes on
    const d = new ShmClient(join(weston.runtimeDir, 'wayland-1'));
    await waitFor('the refusal', () => {
      d.poll();
      return d.eof;
    });
    expect(d.errors()[0]?.message ?? '').toMatch(/cannot reach the host compositor/);
    d.close();
    host = await startHost(weston, 'tswl-gpu-2');
  });
});

describe('bin/tswl-proxy --virtio-gpu-device', () => {
  let weston: Compositor & { weston: Running };
  let host: { run: Running; path: string };

  afterAll(async () => {
    killAll();
    await weston?.stop();
  });

  test('runs wayland-info and weston-simple-shm through the local link', async () => {
    weston = await startHeadlessWeston();
    host = await startHost(weston);
    const info = start(proxyBin, ['--virtio-gpu-device', host.path, 'wayland-info'], weston.env);
    expect(await info.exited, info.output()).toBe(0);
    expect(info.output()).toMatch(/interface: 'wl_compositor'/);
    const shm = start(proxyBin, ['--virtio-gpu-device', host.path, 'weston-simple-shm'], {
      ...weston.env,
      WAYLAND_DEBUG: 'client',
    });
    await waitFor(
      '30 frames',
      () =>
        (shm.output().match(/wl_buffer@\d+\.release\(\)/g) ?? []).length >= 30 ||
        shm.child.exitCode !== null,
      20000,
    );
    expect(shm.child.exitCode, shm.output().slice(-2000)).toBeNull();
    await stop(shm);
  });
});

describe('clipboard between a guest client and a host client (x11 weston: it has a seat)', () => {
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
      killAll(); // weston and tswl-host too, whatever happened above
      await weston?.stop();
    }
  });

  /** wl-copy (it forks a server that keeps the selection and returns), then wl-paste. */
  async function copyPaste(
    data: string,
    from: NodeJS.ProcessEnv,
    to: NodeJS.ProcessEnv,
  ): Promise<string> {
    const copy = await run('wl-copy', [], from, { input: data });
    expect(copy.status, copy.stderr).toBe(0);
    let pasted = '';
    await waitFor(
      'wl-paste to get the selection',
      async () => {
        const paste = await run('wl-paste', ['--no-newline'], to, { untilClose: true });
        pasted = paste.stdout;
        return paste.status === 0 && pasted === data;
      },
      15000,
    ).catch(() => {});
    return pasted;
  }

  test('guest wl-copy, host wl-paste', async () => {
    expect(await copyPaste('from the guest', proxy.env, weston.env)).toBe('from the guest');
  });

  test('host wl-copy, guest wl-paste', async () => {
    expect(await copyPaste('from the host', weston.env, proxy.env)).toBe('from the host');
  });

  test('a megabyte each way', async () => {
    const big = Array.from({ length: 40000 }, (_, i) => `line ${i} of the clipboard\n`).join('');
    expect((await copyPaste(big, proxy.env, weston.env)) === big).toBe(true);
    expect((await copyPaste(big.toUpperCase(), weston.env, proxy.env)) === big.toUpperCase()).toBe(
      true,
    );
  });
});

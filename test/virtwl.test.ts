// The legacy virtio_wl host link (src/links/virtwl.ts).
//
// This machine has no virtio_wl device: the driver (CONFIG_VIRTIO_WL) exists only in ChromiumOS
// kernels, not in Debian's, so /dev/wl0 cannot be opened here. A test against the real device
// needs a guest running a ChromiumOS kernel under crosvm --wayland-sock; it is not part of this
// suite. What is tested here:
//  1. the uapi numbers and struct layouts (src/links/virtwl-uapi.ts), recomputed independently
//     from the _IOC formula and the C struct definitions given in
//     /work/shared/reference/cross-domain.md §3.1;
//  2. the link's framing, fd handling, pipes and allocator, against a fake at the ioctl layer
//     that behaves like the uapi (txn buffers with −1 padded fds, EAGAIN, hang-up as a RECV of 0);
//  3. the error for a missing device.
import { existsSync, fstatSync } from 'node:fs';
import { afterEach, describe, expect, test } from 'vitest';
import * as native from '../src/native/index.js';
import {
  VirtWlLink,
  type VirtWlIo,
  connectVirtWl,
  deviceIo,
  openVirtWl,
  virtWlShadowShm,
} from '../src/links/virtwl.js';
import * as uapi from '../src/links/virtwl-uapi.js';
import type { Relay } from '../src/relay/relay.js';
import type { EndpointHandler } from '../src/wire/connection.js';

// --- 1. uapi ---------------------------------------------------------------------------------------

// <asm-generic/ioctl.h>: nr 8 bits @0, type 8 bits @8, size 14 bits @16, dir 2 bits @30
const IOC_WRITE = 1;
const IOC_READ = 2;
function IOC(dir: number, type: number, nr: number, size: number): number {
  return ((dir << 30) | (size << 16) | (type << 8) | nr) >>> 0;
}
const W = 'w'.charCodeAt(0);
// struct virtwl_ioctl_new { __u32 type; int fd; __u32 flags; union { __u32 size;
//   struct { __u32 width, height, format, stride0, stride1, stride2, offset0, offset1, offset2; } dmabuf;
//   char name[32]; }; }
const unionSize = Math.max(4, 9 * 4, 32);
const sizeofNew = 4 + 4 + 4 + unionSize;
// struct virtwl_ioctl_txn { int fds[VIRTWL_SEND_MAX_ALLOCS = 28]; __u32 len; __u8 data[0]; }
const sizeofTxn = 28 * 4 + 4;
// struct virtwl_ioctl_dmabuf_sync { __u32 flags; }
const sizeofSync = 4;

describe('virtio_wl uapi', () => {
  test('struct sizes and offsets', () => {
    expect(sizeofNew).toBe(48);
    expect(uapi.VIRTWL_NEW_SIZE).toBe(sizeofNew);
    expect(uapi.VIRTWL_NEW_TYPE_OFFSET).toBe(0);
    expect(uapi.VIRTWL_NEW_FD_OFFSET).toBe(4);
    expect(uapi.VIRTWL_NEW_FLAGS_OFFSET).toBe(8);
    expect(uapi.VIRTWL_NEW_SIZE_OFFSET).toBe(12);
    expect(uapi.VIRTWL_TXN_SIZE).toBe(sizeofTxn);
    expect(uapi.VIRTWL_TXN_FDS_OFFSET).toBe(0);
    expect(uapi.VIRTWL_TXN_LEN_OFFSET).toBe(28 * 4);
    expect(uapi.VIRTWL_TXN_DATA_OFFSET).toBe(sizeofTxn);
    expect(uapi.VIRTWL_SEND_MAX_ALLOCS).toBe(28);
    expect(uapi.VIRTWL_MAX_TXN_DATA).toBe(4096 - sizeofTxn);
    expect(uapi.VIRTWL_MAX_TXN_DATA).toBe(3980);
  });

  test('ioctl numbers follow _IOC and match the reference table', () => {
    expect(uapi.VIRTWL_IOCTL_TYPE).toBe(W);
    expect(uapi.VIRTWL_IOCTL_NEW).toBe(IOC(IOC_READ | IOC_WRITE, W, 0, sizeofNew));
    expect(uapi.VIRTWL_IOCTL_SEND).toBe(IOC(IOC_READ, W, 1, sizeofTxn));
    expect(uapi.VIRTWL_IOCTL_RECV).toBe(IOC(IOC_WRITE, W, 2, sizeofTxn));
    expect(uapi.VIRTWL_IOCTL_DMABUF_SYNC).toBe(IOC(IOC_READ, W, 3, sizeofSync));
    // the values as the reference writes them
    expect([
      IOC(IOC_READ | IOC_WRITE, W, 0, sizeofNew),
      IOC(IOC_READ, W, 1, sizeofTxn),
      IOC(IOC_WRITE, W, 2, sizeofTxn),
      IOC(IOC_READ, W, 3, sizeofSync),
    ]).toEqual([0xc0307700, 0x80747701, 0x40747702, 0x80047703]);
  });

  test('NEW types', () => {
    expect(uapi.VirtWlNewType).toEqual({
      CTX: 0,
      ALLOC: 1,
      PIPE_READ: 2,
      PIPE_WRITE: 3,
      DMABUF: 4,
      CTX_NAMED: 5,
    });
  });
});

// --- 2. the link against a fake device --------------------------------------------------------------

function errno(code: string): Error {
  return Object.assign(new Error(`${code} (fake)`), { code, syscall: 'ioctl' });
}

function inode(fd: number): string {
  const st = fstatSync(fd);
  return `${st.dev}:${st.ino}`;
}

interface Sent {
  data: Buffer;
  /** Inodes of the fds, in order (the link closes its fds after a SEND). */
  fds: string[];
  /** The raw fds[28] array as the link wrote it. */
  raw: number[];
  argLength: number;
}

/**
 * A stand-in for the virtio_wl kernel driver at the ioctl layer. The context vfd is one end of a
 * socketpair; the fake keeps one byte in the other end while a message is queued (the vfd polls
 * readable) and closes it on hang-up (the vfd polls readable and hung up). Memory vfds are
 * memfds; pipe vfds are pipe ends whose other end the fake keeps as "the host's".
 */
class FakeVirtWl implements VirtWlIo {
  device = -1;
  ctx = -1;
  private peer = -1;
  readonly news: { type: number; size: number; fd: number; argLength: number }[] = [];
  readonly sends: Sent[] = [];
  /** The fds the fake handed out (by inode), what SEND accepts. */
  readonly vfds = new Set<string>();
  /** The host's end of each NEW_PIPE_* vfd, by the vfd's inode. */
  readonly hostPipeEnds = new Map<string, number>();
  private readonly queue: { data: Buffer; fds: number[] }[] = [];
  private hungUp = false;
  /** SENDs still to refuse with EAGAIN. */
  sendAgain = 0;
  readonly owned: number[] = [];

  open(): number {
    this.device = native.eventfd(0);
    return this.device;
  }

  ioctl(fd: number, request: number, arg: Buffer): number {
    switch (request) {
      case uapi.VIRTWL_IOCTL_NEW:
        return this.newVfd(fd, arg);
      case uapi.VIRTWL_IOCTL_SEND:
        return this.send(fd, arg);
      case uapi.VIRTWL_IOCTL_RECV:
        return this.recv(fd, arg);
      default:
        throw errno('ENOTTY');
    }
  }

  private newVfd(fd: number, arg: Buffer): number {
    if (fd !== this.device || arg.length !== uapi.VIRTWL_NEW_SIZE) throw errno('EINVAL');
    const type = arg.readUInt32LE(0);
    const size = arg.readUInt32LE(12);
    let vfd: number;
    switch (type) {
      case uapi.VirtWlNewType.CTX: {
        const [a, b] = native.socketpair();
        this.ctx = a;
        this.peer = b;
        this.owned.push(b);
        vfd = a;
        break;
      }
      case uapi.VirtWlNewType.ALLOC:
        // the kernel page-aligns; a test that the link asks for whole pages lives in the test
        vfd = native.memfdCreate('virtwl_alloc', size);
        break;
      case uapi.VirtWlNewType.PIPE_READ: {
        const [r, w] = native.pipe();
        vfd = r;
        this.hostPipeEnds.set(inode(r), w);
        this.owned.push(w);
        break;
      }
      case uapi.VirtWlNewType.PIPE_WRITE: {
        const [r, w] = native.pipe();
        vfd = w;
        this.hostPipeEnds.set(inode(w), r);
        this.owned.push(r);
        break;
      }
      default:
        throw errno('EINVAL');
    }
    this.vfds.add(inode(vfd));
    arg.writeInt32LE(vfd, 4);
    this.news.push({ type, size, fd: vfd, argLength: arg.length });
    return 0;
  }

  private send(fd: number, arg: Buffer): number {
    if (fd !== this.ctx) throw errno('ENOTTY');
    if (arg.length < uapi.VIRTWL_TXN_SIZE) throw errno('EFAULT');
    const len = arg.readUInt32LE(112);
    if (len > uapi.VIRTWL_MAX_TXN_DATA || 116 + len > arg.length) throw errno('EINVAL');
    const raw: number[] = [];
    const fds: string[] = [];
    let ended = false;
    for (let i = 0; i < 28; i++) {
      const v = arg.readInt32LE(4 * i);
      raw.push(v);
      if (v < 0) {
        ended = true;
        continue;
      }
      // the list ends at the first −1: a vfd after one would be lost
      if (ended) throw errno('EINVAL');
      const id = inode(v);
      if (!this.vfds.has(id)) throw errno('EBADFD');
      fds.push(id);
    }
    if (this.sendAgain > 0) {
      this.sendAgain--;
      throw errno('EAGAIN');
    }
    this.sends.push({
      data: Buffer.from(arg.subarray(116, 116 + len)),
      fds,
      raw,
      argLength: arg.length,
    });
    return 0;
  }

  private recv(fd: number, arg: Buffer): number {
    if (fd !== this.ctx) throw errno('ENOTTY');
    const cap = arg.readUInt32LE(112);
    if (cap === 0) throw errno('EINVAL');
    const msg = this.queue.shift();
    if (!msg) {
      if (this.hungUp) {
        for (let i = 0; i < 28; i++) arg.writeInt32LE(-1, 4 * i);
        arg.writeUInt32LE(0, 112);
        return 0;
      }
      throw errno('EAGAIN');
    }
    if (msg.data.length > cap) throw new Error('fake: a message larger than the RECV buffer');
    for (let i = 0; i < 28; i++) arg.writeInt32LE(i < msg.fds.length ? msg.fds[i] : -1, 4 * i);
    arg.writeUInt32LE(msg.data.length, 112);
    msg.data.copy(arg, 116);
    if (this.queue.length === 0 && !this.hungUp) this.drainReadiness();
    return 0;
  }

  private drainReadiness(): void {
    const b = Buffer.alloc(1);
    native.readFd(this.ctx, b, 0, 1);
  }

  /** The host sends bytes and fds (the fds become the guest's). */
  hostSend(data: Buffer, fds: number[] = []): void {
    if (data.length > uapi.VIRTWL_MAX_TXN_DATA || fds.length > 28) throw new Error('fake: too big');
    for (const f of fds) this.vfds.add(inode(f));
    if (this.queue.length === 0) native.writeFd(this.peer, Buffer.from([1]), 0, 1);
    this.queue.push({ data, fds });
  }

  hangUp(): void {
    this.hungUp = true;
    native.close(this.peer);
    this.owned.splice(this.owned.indexOf(this.peer), 1);
  }

  /** The bytes of every SEND, in order. */
  sentBytes(): Buffer {
    return Buffer.concat(this.sends.map((s) => s.data));
  }

  dispose(): void {
    for (const fd of this.owned) {
      try {
        native.close(fd);
      } catch {
        // closed by the test
      }
    }
    this.owned.length = 0;
  }
}

class Recorder implements EndpointHandler {
  data = 0;
  /** The link's unread input at each onData (its buffer is released once it closes). */
  unread: string[] = [];
  link: VirtWlLink | null = null;
  closed: (Error | null)[] = [];
  drained = 0;
  onData(): void {
    this.data++;
    if (this.link)
      this.unread.push(this.link.in.subarray(this.link.inStart, this.link.inEnd).toString());
  }
  onClose(error: Error | null): void {
    this.closed.push(error);
  }
  onDrain(): void {
    this.drained++;
  }
}

async function until(what: () => boolean, ms = 2000): Promise<void> {
  const end = Date.now() + ms;
  while (!what()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 5));
  }
}

function takeFds(link: VirtWlLink): number[] {
  const n = link.inFds.length;
  const out = new Int32Array(n);
  link.inFds.take(n, out);
  return [...out];
}

/** What a nonblocking fd has now, and whether it is at end of file. */
function readAvailable(fd: number): { data: Buffer; eof: boolean } {
  const chunks: Buffer[] = [];
  const buf = Buffer.alloc(4096);
  for (;;) {
    const n = native.readFd(fd, buf, 0, buf.length);
    if (n <= 0) return { data: Buffer.concat(chunks), eof: n === 0 };
    chunks.push(Buffer.from(buf.subarray(0, n)));
  }
}

describe('virtio_wl link (fake device)', () => {
  let fake: FakeVirtWl;
  let link: VirtWlLink;
  let handler: Recorder;
  const cleanup: (() => void)[] = [];

  function connect(): void {
    fake = new FakeVirtWl();
    handler = new Recorder();
    link = connectVirtWl('/dev/wl0', handler, fake) as VirtWlLink;
    cleanup.push(() => {
      link.close();
      fake.dispose();
    });
  }

  afterEach(() => {
    for (const c of cleanup.splice(0)) c();
  });

  test('NEW_CTX on the device fd makes the context', () => {
    connect();
    expect(link).toBeInstanceOf(VirtWlLink);
    expect(fake.news).toEqual([
      { type: uapi.VirtWlNewType.CTX, size: 0, fd: fake.ctx, argLength: 48 },
    ]);
    expect(link.ctx).toBe(fake.ctx);
  });

  test('a large send is split into SENDs of at most 3980 bytes, in order', () => {
    connect();
    const data = Buffer.alloc(10000);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7 + 3) & 0xff;
    link.out.reserve(data.length);
    data.copy(link.out.buf, 0);
    link.out.len = data.length;
    link.flush();
    expect(fake.sends.map((s) => s.data.length)).toEqual([3980, 3980, 2040]);
    expect(fake.sentBytes().equals(data)).toBe(true);
    for (const s of fake.sends) {
      expect(s.raw).toEqual(new Array(28).fill(-1));
      expect(s.argLength).toBeGreaterThanOrEqual(116 + s.data.length);
    }
    expect(link.out.len).toBe(0);
    expect(handler.closed).toEqual([]);
  });

  test('at most 28 fds per SEND; the rest go no later than their bytes', () => {
    connect();
    const mem = Array.from({ length: 30 }, () => link.allocate(100));
    const fds = mem.map((m) => m.exportFd());
    const ids = fds.map(inode);
    const before = native.openFdCount();
    link.out.reserve(100);
    link.out.buf.fill(9, 0, 100);
    link.out.len = 100;
    link.out.fds.push(...fds);
    link.flush();
    expect(fake.sends.map((s) => s.fds.length)).toEqual([28, 2]);
    expect(fake.sends[0].data.length).toBe(4);
    expect(fake.sends[1].data.length).toBe(96);
    expect(fake.sends[1].raw.slice(2)).toEqual(new Array(26).fill(-1));
    expect(fake.sends.flatMap((s) => s.fds)).toEqual(ids);
    // sent fds are closed: the kernel holds its own references
    expect(native.openFdCount()).toBe(before - 30);
    expect(link.out.fds).toEqual([]);
    for (const m of mem) m.free();
  });

  test('EAGAIN from SEND keeps the data and retries when the context is writable', async () => {
    connect();
    fake.sendAgain = 1;
    link.out.reserve(10);
    link.out.buf.write('0123456789', 0);
    link.out.len = 10;
    link.flush();
    expect(fake.sends).toEqual([]);
    expect(link.out.len).toBe(10);
    await until(() => fake.sends.length === 1);
    expect(fake.sentBytes().toString()).toBe('0123456789');
    expect(link.out.len).toBe(0);
  });

  test('received bytes and fds arrive in order, and the fds are usable', async () => {
    connect();
    const a = native.memfdCreate('host-a', 4096);
    const b = native.memfdCreate('host-b', 4096);
    const c = native.memfdCreate('host-c', 4096);
    native.mmap(a, 0, 4096, true).write('keymap A');
    native.mmap(b, 0, 4096, true).write('keymap B');
    const ids = [a, b, c].map(inode);
    fake.hostSend(Buffer.from('abc'), [a, b]);
    fake.hostSend(Buffer.from('defg'), [c]);
    fake.hostSend(Buffer.from('h'));
    await until(() => link.inEnd - link.inStart === 8);
    expect(link.in.subarray(link.inStart, link.inEnd).toString()).toBe('abcdefgh');
    const got = takeFds(link);
    expect(got.map(inode)).toEqual(ids);
    expect(native.mmap(got[1], 0, 4096, false).subarray(0, 8).toString()).toBe('keymap B');
    for (const fd of got) native.close(fd);
    expect(link.bytesIn).toBe(8);
    expect(link.fdsIn).toBe(3);
    expect(handler.closed).toEqual([]);
  });

  test('a RECV of nothing (hang-up) closes the link after the data before it', async () => {
    connect();
    handler.link = link;
    fake.hostSend(Buffer.from('last words'));
    fake.hangUp();
    await until(() => handler.closed.length > 0);
    expect(handler.closed).toEqual([null]);
    expect(handler.unread.at(-1)).toBe('last words');
    expect(link.closed).toBe(true);
  });

  test('the allocator asks NEW_ALLOC for whole pages and maps host memory', () => {
    connect();
    const m = link.allocate(5000);
    const alloc = fake.news.filter((n) => n.type === uapi.VirtWlNewType.ALLOC);
    expect(alloc.map((n) => n.size)).toEqual([8192]);
    expect(m.bytes.length).toBe(5000);
    m.bytes.write('pixels', 4990);
    const exported = m.exportFd();
    expect(exported).not.toBe(alloc[0].fd);
    expect(inode(exported)).toBe(inode(alloc[0].fd));
    // the host side of the same memory sees the writes
    const host = native.mmap(exported, 0, 8192, false);
    expect(host.subarray(4990, 4996).toString()).toBe('pixels');
    native.munmap(host);
    native.close(exported);
    link.allocate(4096);
    link.allocate(1);
    expect(fake.news.filter((n) => n.type === uapi.VirtWlNewType.ALLOC).map((n) => n.size)).toEqual(
      [8192, 4096, 4096],
    );
    m.free();
    expect(() => native.close(alloc[0].fd)).toThrow();
  });

  test('shadowShm gives the link for relays whose host side it is', () => {
    connect();
    expect(virtWlShadowShm({ host: link } as unknown as Relay)).toBe(link);
    expect(virtWlShadowShm({ host: {} } as unknown as Relay)).toBeNull();
  });

  test("a client's clipboard write end becomes a NEW_PIPE_READ vfd, pumped into it", async () => {
    connect();
    const [clientRead, clientWrite] = native.pipe();
    cleanup.push(() => native.close(clientRead));
    link.out.reserve(8);
    link.out.buf.fill(1, 0, 8);
    link.out.len = 8;
    link.out.fds.push(clientWrite);
    link.flush();
    const pipe = fake.news.find((n) => n.type === uapi.VirtWlNewType.PIPE_READ);
    expect(pipe).toBeDefined();
    expect(fake.sends[0].fds).toEqual([inode(pipe!.fd)]);
    const hostWrite = fake.hostPipeEnds.get(inode(pipe!.fd))!;
    const text = Buffer.from('clipboard text '.repeat(1000));
    const received: Buffer[] = [];
    let eof = false;
    let pos = 0;
    // the compositor writes, then closes its end
    while (pos < text.length) {
      const n = native.writeFd(hostWrite, text, pos, text.length);
      if (n > 0) pos += n;
      received.push(readAvailable(clientRead).data);
      await new Promise((r) => setTimeout(r, 1));
    }
    native.close(hostWrite);
    fake.owned.splice(fake.owned.indexOf(hostWrite), 1);
    await until(() => {
      const r = readAvailable(clientRead);
      received.push(r.data);
      eof = r.eof;
      return eof;
    });
    expect(Buffer.concat(received).equals(text)).toBe(true);
  });

  test('a client pipe read end becomes a NEW_PIPE_WRITE vfd the client data is pumped into', async () => {
    connect();
    const [clientRead, clientWrite] = native.pipe();
    cleanup.push(() => native.close(clientWrite));
    link.out.reserve(8);
    link.out.len = 8;
    link.out.fds.push(clientRead);
    link.flush();
    const pipe = fake.news.find((n) => n.type === uapi.VirtWlNewType.PIPE_WRITE)!;
    expect(fake.sends[0].fds).toEqual([inode(pipe.fd)]);
    const hostRead = fake.hostPipeEnds.get(inode(pipe.fd))!;
    native.writeFd(clientWrite, Buffer.from('to the host'), 0, 11);
    const got: Buffer[] = [];
    await until(() => {
      got.push(readAvailable(hostRead).data);
      return Buffer.concat(got).toString() === 'to the host';
    });
  });

  test('fds that cannot cross fail the link with an explanation', () => {
    connect();
    const [s1, s2] = native.socketpair();
    cleanup.push(() => native.close(s2));
    link.out.reserve(8);
    link.out.len = 8;
    link.out.fds.push(s1);
    link.flush();
    expect(handler.closed.length).toBe(1);
    expect(handler.closed[0]?.message).toMatch(/socket/);

    connect();
    const memfd = native.memfdCreate('guest-ram', 4096);
    link.out.reserve(8);
    link.out.len = 8;
    link.out.fds.push(memfd);
    link.flush();
    expect(handler.closed.length).toBe(1);
    expect(handler.closed[0]?.message).toMatch(/only vfds .* cross the VM boundary/);
    expect(fake.sends).toEqual([]);
  });

  test('close() closes the context, the device and queued fds', () => {
    connect();
    const before = native.openFdCount();
    const m = native.memfdCreate('queued', 4096);
    link.out.fds.push(m);
    link.close();
    expect(native.openFdCount()).toBe(before - 2);
    expect(() => native.close(fake.ctx)).toThrow();
    expect(() => native.close(fake.device)).toThrow();
  });
});

// --- 3. the missing device ------------------------------------------------------------------------

describe('opening the device', () => {
  test('the real ioctl path hands the kernel a struct-sized view of the txn buffer', () => {
    // drmIoctl refuses an arg whose length differs from the ioctl's size field; on a memfd the
    // kernel then answers ENOTTY, which shows the call got as far as ioctl(2)
    const memfd = native.memfdCreate('not-a-vfd', 4096);
    try {
      for (const [request, size] of [
        [uapi.VIRTWL_IOCTL_SEND, 4096],
        [uapi.VIRTWL_IOCTL_RECV, 4096],
        [uapi.VIRTWL_IOCTL_NEW, 48],
      ] as const) {
        let code: string | undefined;
        try {
          deviceIo.ioctl(memfd, request, Buffer.alloc(size));
        } catch (e) {
          code = (e as NodeJS.ErrnoException).code;
        }
        expect(code).toBe('ENOTTY');
      }
    } finally {
      native.close(memfd);
    }
  });

  test('a missing device path says what is missing', () => {
    expect(() => openVirtWl('/nonexistent/wl0')).toThrow(
      'no /nonexistent/wl0: the guest has no virtio_wl device (a ChromiumOS kernel with CONFIG_VIRTIO_WL, and crosvm --wayland-sock)',
    );
  });

  test.skipIf(existsSync('/dev/wl0'))(
    'without /dev/wl0, connectVirtWl fails with the message',
    () => {
      expect(() => connectVirtWl('/dev/wl0', new Recorder())).toThrow(
        'no /dev/wl0: the guest has no virtio_wl device (a ChromiumOS kernel with CONFIG_VIRTIO_WL, and crosvm --wayland-sock)',
      );
    },
  );
});

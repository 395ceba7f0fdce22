// The host link through the legacy virtio_wl device (/dev/wl0, ChromiumOS guest kernels with
// CONFIG_VIRTIO_WL and crosvm --wayland-sock): the relay's host Endpoint when the VM has no
// virtio-gpu cross-domain context. Each link owns one context vfd (NEW_CTX: crosvm connects a new
// socket to the compositor for it); Wayland bytes and fds leave in SEND transactions and arrive in
// RECV ones (uapi: ./virtwl-uapi.ts). Fds that cross are vfds: host memory from NEW_ALLOC (the
// shadow allocator), host pipes from NEW_PIPE_READ/WRITE (a client's clipboard pipe is pumped
// through one), and whatever the host sends (ordinary guest fds: mmap-able memory, pipes).
import { openSync } from 'node:fs';
import * as native from '../native/index.js';
import type { Relay } from '../relay/relay.js';
import type { ShadowAllocator, ShadowAllocatorSource, ShadowMemory } from '../relay/shm.js';
import type { Endpoint, EndpointHandler } from '../wire/connection.js';
import { releaseInput, takeBuffer } from '../wire/buffer-pool.js';
import { FdQueue, closeQuietly, reopen } from '../wire/fd-queue.js';
import { MessageWriter } from '../wire/writer.js';
import {
  VIRTWL_DEFAULT_DEVICE,
  VIRTWL_IOCTL_NEW,
  VIRTWL_IOCTL_RECV,
  VIRTWL_IOCTL_SEND,
  VIRTWL_MAX_TXN_DATA,
  VIRTWL_NEW_FD_OFFSET,
  VIRTWL_NEW_SIZE,
  VIRTWL_NEW_SIZE_OFFSET,
  VIRTWL_NEW_TYPE_OFFSET,
  VIRTWL_SEND_MAX_ALLOCS,
  VIRTWL_TXN_BUFFER_SIZE,
  VIRTWL_TXN_DATA_OFFSET,
  VIRTWL_TXN_FDS_OFFSET,
  VIRTWL_TXN_LEN_OFFSET,
  VirtWlNewType,
} from './virtwl-uapi.js';

const PAGE_SIZE = 4096;
const IN_BUFFER_SIZE = 65536;
/** RECVs per wake-up before the event loop gets a turn. */
const RECV_BATCH = 16;
/** Pipe data per read when pumping a clipboard pipe. */
const PUMP_CHUNK = 4096;

/**
 * The ioctl layer the link runs on: the real device, or a test's stand-in. Both behave as the
 * uapi does: NEW on the device fd, SEND/RECV on a context vfd, txn buffers with −1 padded fds.
 */
export interface VirtWlIo {
  /** Opens the device (read-write, close-on-exec); throws a clear error when it is missing. */
  open(path: string): number;
  /**
   * ioctl(fd, request, arg). `arg` starts with the struct the request names; for SEND and RECV
   * the data follows it in the same buffer (the kernel reads and writes past the struct).
   * Failures throw Node-style errors; code 'EAGAIN' means "not now, wait for readiness".
   */
  ioctl(fd: number, request: number, arg: Buffer): number;
}

/** Opens a virtio_wl device, explaining what is wrong when there is none. */
export function openVirtWl(devicePath = VIRTWL_DEFAULT_DEVICE): number {
  try {
    // libuv opens with O_CLOEXEC
    return openSync(devicePath, 'r+');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENXIO' || code === 'ENODEV')
      throw new Error(
        `no ${devicePath}: the guest has no virtio_wl device (a ChromiumOS kernel with CONFIG_VIRTIO_WL, and crosvm --wayland-sock)`,
        { cause: e },
      );
    throw new Error(`cannot open ${devicePath}: ${(e as Error).message}`, { cause: e });
  }
}

/**
 * The real device through the addon's generic ioctl call. Its length check wants exactly the
 * struct the request encodes, so it gets a view of the struct's bytes; the data that follows
 * in the same memory is what the kernel reads (SEND) or fills (RECV).
 *
 * The addon retries EAGAIN, so the context vfd is left blocking (no O_NONBLOCK: a nonblocking one
 * would make a full device spin instead of sleep): RECV is only issued when the vfd polls
 * readable (it then never waits), and a SEND into a full out-queue waits in the kernel for the
 * host to take buffers, as sommelier's does.
 */
export const deviceIo: VirtWlIo = {
  open: openVirtWl,
  ioctl: (fd, request, arg) =>
    native.drmIoctl(fd, request, arg.subarray(0, (request >>> 16) & 0x3fff)),
};

function errorCode(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException | null)?.code;
}

let nextLabel = 1;

/** One client's channel to the host compositor through its own virtio_wl context. */
export class VirtWlLink implements Endpoint, ShadowAllocator {
  in = takeBuffer(IN_BUFFER_SIZE);
  inView = new DataView(this.in.buffer, this.in.byteOffset, this.in.byteLength);
  inStart = 0;
  inEnd = 0;
  readonly inFds = new FdQueue();
  fdsTruncated = false;
  readonly out = new MessageWriter();
  closed = false;
  bytesIn = 0;
  fdsIn = 0;
  readonly label = nextLabel++;
  /** The context vfd: the Wayland transport. */
  readonly ctx: number;
  private readonly poller: native.Poller;
  private reading = true;
  private wantWrite = false;
  private readonly txn = Buffer.alloc(VIRTWL_TXN_BUFFER_SIZE);
  /** fds in out.fds that are vfds of our pumps: sent, but kept (the pump owns them). */
  private readonly pumpVfds = new Set<number>();
  private readonly pumps = new Set<Pump>();
  /** A socketpair that duplicates fds (SCM_RIGHTS to ourselves), made when first needed. */
  private dupPair: [number, number] | null = null;

  constructor(
    private readonly io: VirtWlIo,
    /** The /dev/wl0 fd; the link owns it. */
    readonly device: number,
    private readonly handler: EndpointHandler,
  ) {
    try {
      this.ctx = this.newVfd(VirtWlNewType.CTX, 0);
    } catch (e) {
      closeQuietly(device);
      throw new Error(`virtio_wl NEW_CTX failed: ${(e as Error).message}`, { cause: e });
    }
    try {
      this.poller = new native.Poller(this.ctx, (events, error) => this.onReady(events, error));
      this.poller.update(native.READABLE);
    } catch (e) {
      closeQuietly(this.ctx);
      closeQuietly(device);
      throw e;
    }
  }

  get congested(): boolean {
    return this.out.congested;
  }

  consume(n: number): void {
    this.inStart += n;
  }

  setReading(on: boolean): void {
    if (this.closed || this.reading === on) return;
    this.reading = on;
    this.updatePoll();
  }

  flush(): void {
    if (this.closed) return;
    const out = this.out;
    let sent = out.head;
    let blocked = false;
    try {
      while (sent < out.len) {
        const r = this.sendOne(sent);
        if (r < 0) {
          blocked = true;
          break;
        }
        sent += r;
      }
    } catch (e) {
      this.fail(e as Error);
      return;
    }
    const relieved = out.sent(sent - out.head);
    if (blocked !== this.wantWrite) {
      this.wantWrite = blocked;
      this.updatePoll();
    }
    if (relieved) this.handler.onDrain?.();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.poller.close();
    for (const p of [...this.pumps]) p.close();
    closeQuietly(this.ctx);
    closeQuietly(this.device);
    this.inFds.closeAll();
    for (const fd of this.out.fds) if (!this.pumpVfds.has(fd)) closeQuietly(fd);
    this.pumpVfds.clear();
    this.out.fds.length = 0;
    this.out.release();
    releaseInput(this);
    if (this.dupPair) for (const fd of this.dupPair) closeQuietly(fd);
    this.dupPair = null;
  }

  /** Host memory for a shadow buffer: a NEW_ALLOC vfd of `size` rounded up to pages, mapped. */
  allocate(size: number): ShadowMemory {
    if (this.closed) throw new Error('the virtio_wl link is closed');
    const rounded = Math.max(PAGE_SIZE, Math.ceil(size / PAGE_SIZE) * PAGE_SIZE);
    const vfd = this.newVfd(VirtWlNewType.ALLOC, rounded);
    let map: Buffer;
    try {
      map = native.mmap(vfd, 0, rounded, true);
    } catch (e) {
      closeQuietly(vfd);
      throw e;
    }
    let freed = false;
    return {
      bytes: map.subarray(0, size),
      exportFd: () => this.dup(vfd),
      // a copy already exported (queued in a create_pool) keeps the vfd alive until it is sent
      free: () => {
        if (freed) return;
        freed = true;
        native.munmap(map);
        closeQuietly(vfd);
      },
    };
  }

  fail(error: Error | null): void {
    if (this.closed) return;
    this.close();
    this.handler.onClose(error);
  }

  forgetPump(p: Pump): void {
    this.pumps.delete(p);
  }

  // --- device -----------------------------------------------------------------------------------

  /** NEW of `type` on the device fd: the new vfd. */
  private newVfd(type: number, size: number): number {
    const arg = Buffer.alloc(VIRTWL_NEW_SIZE);
    arg.writeUInt32LE(type, VIRTWL_NEW_TYPE_OFFSET);
    arg.writeInt32LE(-1, VIRTWL_NEW_FD_OFFSET);
    arg.writeUInt32LE(size, VIRTWL_NEW_SIZE_OFFSET);
    this.io.ioctl(this.device, VIRTWL_IOCTL_NEW, arg);
    const fd = arg.readInt32LE(VIRTWL_NEW_FD_OFFSET);
    if (fd < 0) throw new Error(`virtio_wl NEW (type ${type}) returned no fd`);
    return fd;
  }

  private dup(fd: number): number {
    this.dupPair ??= native.socketpair();
    const one = Buffer.alloc(1);
    native.sendmsg(this.dupPair[0], one, 0, 1, [fd], 1);
    const got = new Int32Array(native.RECV_OUT_LENGTH);
    const n = native.recvmsg(this.dupPair[1], one, 0, 1, got);
    if (n !== 1 || got[0] !== 1) {
      for (let i = 0; i < got[0]; i++) closeQuietly(got[2 + i]);
      throw new Error('could not duplicate a virtio_wl vfd');
    }
    return got[2];
  }

  // --- sending ------------------------------------------------------------------------------------

  /**
   * One SEND from out.buf[pos…): at most 3980 bytes and 28 fds; when fds are left over, only 4
   * bytes go, so the rest of the fds travel no later than the messages that use them. Returns the
   * bytes sent, or −1 when the device said EAGAIN (nothing was sent).
   */
  private sendOne(pos: number): number {
    const out = this.out;
    const fds = out.fds;
    const txn = this.txn;
    const nfds = Math.min(fds.length, VIRTWL_SEND_MAX_ALLOCS);
    for (let i = 0; i < nfds; i++) fds[i] = this.sendable(fds[i]);
    let len = Math.min(out.len - pos, VIRTWL_MAX_TXN_DATA);
    if (nfds < fds.length) len = Math.min(len, 4);
    for (let i = 0; i < VIRTWL_SEND_MAX_ALLOCS; i++)
      txn.writeInt32LE(i < nfds ? fds[i] : -1, VIRTWL_TXN_FDS_OFFSET + 4 * i);
    txn.writeUInt32LE(len, VIRTWL_TXN_LEN_OFFSET);
    out.buf.copy(txn, VIRTWL_TXN_DATA_OFFSET, pos, pos + len);
    try {
      this.io.ioctl(this.ctx, VIRTWL_IOCTL_SEND, txn);
    } catch (e) {
      if (errorCode(e) === 'EAGAIN') return -1;
      throw new Error(
        `virtio_wl SEND failed (${(e as Error).message}): only vfds (host memory from the link's allocator, host pipes, fds the host sent) and virtio-gpu buffers cross the VM boundary`,
        { cause: e },
      );
    }
    // the kernel holds its own references now
    for (const fd of fds.splice(0, nfds)) {
      if (this.pumpVfds.delete(fd)) continue;
      closeQuietly(fd);
    }
    return len;
  }

  /** An fd as something SEND can carry: a local pipe end becomes a host pipe, pumped. */
  private sendable(fd: number): number {
    if (this.pumpVfds.has(fd)) return fd;
    const kind = native.fdKind(fd);
    switch (kind.kind) {
      case 'pipe-write': {
        // the client reads what the compositor writes (wl_data_offer.receive): a host pipe whose
        // read side we have, its write side going to the compositor
        const vfd = this.newVfd(VirtWlNewType.PIPE_READ, 0);
        // our own nonblocking open of the client's pipe: a late reader must not block us
        const own = reopen(fd, 'write', true);
        closeQuietly(fd);
        this.pumps.add(new Pump(this, vfd, own));
        this.pumpVfds.add(vfd);
        return vfd;
      }
      case 'pipe-read': {
        // the compositor reads what the client writes
        const vfd = this.newVfd(VirtWlNewType.PIPE_WRITE, 0);
        this.pumps.add(new Pump(this, fd, vfd));
        this.pumpVfds.add(vfd);
        return vfd;
      }
      case 'socket':
        throw new Error('cannot pass a socket to the host through virtio_wl');
      default:
        // vfds (memory, pipes) and dma-bufs: the kernel decides
        return fd;
    }
  }

  // --- receiving ----------------------------------------------------------------------------------

  private updatePoll(): void {
    if (this.closed) return;
    this.poller.update(
      (this.reading ? native.READABLE : 0) | (this.wantWrite ? native.WRITABLE : 0),
    );
  }

  private onReady(events: number, errorCode: string | null): void {
    if (this.closed) return;
    if (errorCode) return this.fail(new Error(`poll: ${errorCode}`));
    if (events & native.WRITABLE) this.flush();
    if (this.closed || !(events & (native.READABLE | native.DISCONNECT)) || !this.reading) return;
    let eof = false;
    let got = false;
    try {
      for (let i = 0; i < RECV_BATCH; i++) {
        // the vfd is blocking: RECV only while it polls readable (or hung up)
        if (i > 0 && !native.waitReadable(this.ctx, 0)) break;
        const r = this.recvOne();
        if (r === 'again') break;
        if (r === 'eof') {
          eof = true;
          break;
        }
        got = true;
        if (this.inEnd - this.inStart >= IN_BUFFER_SIZE) break;
      }
    } catch (e) {
      return this.fail(e as Error);
    }
    if (got) this.handler.onData();
    if (eof) this.fail(null);
  }

  /** One RECV: its bytes into the input buffer, its vfds into inFds. */
  private recvOne(): 'data' | 'again' | 'eof' {
    const txn = this.txn;
    for (let i = 0; i < VIRTWL_SEND_MAX_ALLOCS; i++)
      txn.writeInt32LE(-1, VIRTWL_TXN_FDS_OFFSET + 4 * i);
    txn.writeUInt32LE(VIRTWL_MAX_TXN_DATA, VIRTWL_TXN_LEN_OFFSET);
    try {
      this.io.ioctl(this.ctx, VIRTWL_IOCTL_RECV, txn);
    } catch (e) {
      if (errorCode(e) === 'EAGAIN') return 'again';
      throw e;
    }
    let nfds = 0;
    while (nfds < VIRTWL_SEND_MAX_ALLOCS) {
      const fd = txn.readInt32LE(VIRTWL_TXN_FDS_OFFSET + 4 * nfds);
      if (fd < 0) break;
      nfds++;
      if (!this.inFds.push(fd)) {
        closeQuietly(fd);
        this.fdsTruncated = true;
      }
    }
    this.fdsIn += nfds;
    const len = txn.readUInt32LE(VIRTWL_TXN_LEN_OFFSET);
    if (len > VIRTWL_MAX_TXN_DATA) throw new Error(`malformed RECV (${len} bytes)`);
    if (len === 0 && nfds === 0) return 'eof';
    this.append(txn, VIRTWL_TXN_DATA_OFFSET, len);
    return 'data';
  }

  private append(src: Buffer, start: number, size: number): void {
    if (this.in.length - this.inEnd < size) {
      this.in.copy(this.in, 0, this.inStart, this.inEnd);
      this.inEnd -= this.inStart;
      this.inStart = 0;
      if (this.in.length - this.inEnd < size) {
        const bigger = Buffer.allocUnsafe(Math.max(this.in.length * 2, IN_BUFFER_SIZE));
        this.in.copy(bigger, 0, 0, this.inEnd);
        this.in = bigger;
        this.inView = new DataView(bigger.buffer, bigger.byteOffset, bigger.byteLength);
      }
    }
    src.copy(this.in, this.inEnd, start, start + size);
    this.inEnd += size;
    this.bytesIn += size;
  }
}

/**
 * Copies a pipe's data from `src` to `dst` until `src` ends, then closes both (so the reader of
 * `dst` sees end of file). One of them is a host pipe vfd; vfds read, write and poll like pipes.
 */
class Pump {
  private readonly srcPoller: native.Poller;
  private dstPoller: native.Poller | null = null;
  private readonly buf = Buffer.allocUnsafe(PUMP_CHUNK);
  private pending: Buffer | null = null;
  private eof = false;
  private closed = false;

  constructor(
    private readonly link: VirtWlLink,
    private readonly src: number,
    private readonly dst: number,
  ) {
    this.srcPoller = new native.Poller(src, () => this.onReadable());
    this.srcPoller.update(native.READABLE);
  }

  private onReadable(): void {
    if (this.closed || this.pending) return;
    let n: number;
    try {
      // one read per wake-up: a blocking vfd is only read while it polls readable
      n = native.readFd(this.src, this.buf, 0, this.buf.length);
    } catch {
      n = 0;
    }
    if (n < 0) return;
    if (n === 0) {
      this.eof = true;
      this.close();
      return;
    }
    this.write(this.buf.subarray(0, n));
  }

  private write(data: Buffer): void {
    let pos = 0;
    try {
      while (pos < data.length) {
        const n = native.writeFd(this.dst, data, pos, data.length);
        if (n < 0) break;
        pos += n;
      }
    } catch {
      // the reader went away (EPIPE): nothing more to copy
      this.close();
      return;
    }
    if (pos < data.length) {
      this.pending = Buffer.from(data.subarray(pos));
      this.srcPoller.update(0);
      this.dstPoller ??= new native.Poller(this.dst, () => this.onWritable());
      this.dstPoller.update(native.WRITABLE);
    }
  }

  private onWritable(): void {
    if (this.closed || !this.pending) return;
    const data = this.pending;
    this.pending = null;
    this.dstPoller?.update(0);
    this.write(data);
    if (!this.pending && !this.closed) {
      if (this.eof) this.close();
      else this.srcPoller.update(native.READABLE);
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.srcPoller.close();
    this.dstPoller?.close();
    closeQuietly(this.src);
    closeQuietly(this.dst);
    this.link.forgetPump(this);
  }
}

/** Connects a relay's host side through a new context of the virtio_wl device at `devicePath`. */
export function connectVirtWl(
  devicePath: string,
  handler: EndpointHandler,
  io: VirtWlIo = deviceIo,
): Endpoint {
  const device = io.open(devicePath);
  return new VirtWlLink(io, device, handler);
}

/** `shadowShm` for relays whose host side is a virtio_wl link: their shm goes to NEW_ALLOC memory. */
export const virtWlShadowShm: ShadowAllocatorSource = (relay: Relay) =>
  relay.host instanceof VirtWlLink ? relay.host : null;

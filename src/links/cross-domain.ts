// The host link through a virtio-gpu cross-domain context: the relay's host Endpoint when the
// compositor is across a VM boundary. Wayland bytes and fds leave in SEND commands; what the
// host has for us comes back one message per ring-1 fence (RECEIVE, READ), so exactly one POLL
// is kept outstanding. Pipes carry clipboard data both ways with READ and WRITE. The link also
// allocates host memory for shadowed wl_shm buffers (GET_IMAGE_REQUIREMENTS + HOST3D blobs).
import * as native from '../native/index.js';
import { RELEASED, giveBack, releaseInput, takeBuffer } from '../wire/buffer-pool.js';
import type { Relay } from '../relay/relay.js';
import type { ShadowAllocator, ShadowAllocatorSource, ShadowMemory } from '../relay/shm.js';
import {
  BlobFlag,
  BlobMem,
  CAPSET_CROSS_DOMAIN,
  CROSS_DOMAIN_CAPS_SIZE,
  CROSS_DOMAIN_CHANNEL_RING,
  CROSS_DOMAIN_CHANNEL_TYPE_WAYLAND,
  CROSS_DOMAIN_MAX_IDENTIFIERS,
  CROSS_DOMAIN_MAX_SEND_RECV_SIZE,
  CROSS_DOMAIN_PIPE_READ_START,
  CROSS_DOMAIN_QUERY_RING,
  CROSS_DOMAIN_READ_WRITE_SIZE,
  CROSS_DOMAIN_SEND_RECEIVE_SIZE,
  CrossDomainCmd,
  CrossDomainId,
  getU32,
  setU32,
} from '../virtgpu/protocol.js';
import { openVirtGpu } from '../virtgpu/open.js';
import type { VirtGpu } from '../virtgpu/virtgpu.js';
import { VirtGpuParam, pageAlign } from '../virtgpu/virtgpu.js';
import type { Endpoint, EndpointHandler } from '../wire/connection.js';
import { FdQueue, closeQuietly, reopen } from '../wire/fd-queue.js';
import { MessageWriter } from '../wire/writer.js';

export { openVirtGpu } from '../virtgpu/open.js';

const PAGE_SIZE = 4096;
const IN_BUFFER_SIZE = 65536;
/** Cross-domain command bytes per EXECBUFFER. */
const MAX_SUBMIT = 60 * 1024;
/** The largest READ/WRITE payload: one page less the header. */
const MAX_READ_WRITE_DATA = PAGE_SIZE - CROSS_DOMAIN_READ_WRITE_SIZE;
/** Clipboard data waiting for a slow guest reader before the link stops polling the host. */
const PIPE_BACKLOG_LIMIT = 1 << 20;
/** DRM_FORMAT_R8: shadow memory is asked for as a size × 1 image of bytes. */
const DRM_FORMAT_R8 = 0x20203852;
/** GBM_BO_USE_SCANOUT | GBM_BO_USE_LINEAR, what sommelier asks for. */
const GBM_USE_LINEAR_SCANOUT = 0x11;
const POLL_CMD_SIZE = 16;
const INIT_CMD_SIZE = 20;
const GET_IMAGE_REQUIREMENTS_SIZE = 24;

interface ImageRequirements {
  readonly stride0: number;
  readonly offset0: number;
  readonly size: number;
  readonly blobId: number;
}

function header(buf: Buffer, at: number, cmd: number, size: number, ring = 0): void {
  buf[at] = cmd;
  buf[at + 1] = ring;
  buf[at + 2] = size;
  buf[at + 3] = size >>> 8;
  setU32(buf, at + 4, 0);
}

const POLL_OPTIONS = { ringIdx: CROSS_DOMAIN_CHANNEL_RING } as const;

let nextLabel = 1;

/**
 * One client's channel to the host compositor through its own cross-domain context (its own
 * VirtGpu, i.e. its own DRM file), set up as sommelier does: CONTEXT_INIT(5, 2 rings, poll ring
 * 1), a query and a channel ring page, INIT, POLL.
 */
export class CrossDomainLink implements Endpoint, ShadowAllocator {
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
  private reading = true;
  private polling = false;
  private readonly query: { handle: number; resId: number; map: Buffer };
  private readonly channel: { handle: number; resId: number; map: Buffer };
  /** The POLL command, the same every time. */
  private readonly pollCmd = Buffer.alloc(POLL_CMD_SIZE);
  private readPipeId = CROSS_DOMAIN_PIPE_READ_START;
  /** Client pipes the host's READ data goes to, by read-pipe id. */
  private readonly readPipes = new Map<number, ReadPipe>();
  /** Local pipes whose data goes to the host's write pipes with WRITE. */
  private readonly writePipes = new Set<WritePipe>();
  pipeBacklog = 0;
  /** GEM handles of shadow memory: importFd finds them, and they are not closed after a SEND. */
  private readonly ownedHandles = new Set<number>();
  /** Handles to close once the requests queued before their release have been submitted. */
  private readonly deferredCloses: number[] = [];
  private readonly requirements = new Map<string, ImageRequirements>();
  private submitBuf = takeBuffer(MAX_SUBMIT);
  private readonly imported: number[] = [];

  constructor(
    readonly gpu: VirtGpu,
    private readonly handler: EndpointHandler,
  ) {
    try {
      for (const [param, what] of [
        [VirtGpuParam.FEATURES_3D, '3D features (VIRTIO_GPU_F_VIRGL)'],
        [VirtGpuParam.RESOURCE_BLOB, 'blob resources'],
        [VirtGpuParam.HOST_VISIBLE, 'a host-visible memory region'],
        [VirtGpuParam.CONTEXT_INIT, 'context types (VIRTIO_GPU_F_CONTEXT_INIT)'],
      ] as const) {
        if (!gpu.getParam(param)) throw new Error(`the virtio-gpu device lacks ${what}`);
      }
      if (!(gpu.getParam(VirtGpuParam.SUPPORTED_CAPSET_IDS) & (1 << CAPSET_CROSS_DOMAIN)))
        throw new Error('the virtio-gpu device has no cross-domain capset');
      const caps = gpu.getCaps(CAPSET_CROSS_DOMAIN, 0, CROSS_DOMAIN_CAPS_SIZE);
      if (caps.length < 8 || !(getU32(caps, 4) & (1 << CROSS_DOMAIN_CHANNEL_TYPE_WAYLAND)))
        throw new Error(
          'the host offers no Wayland channel (is it started with a Wayland socket?)',
        );
      gpu.contextInit(CAPSET_CROSS_DOMAIN, 2, 1 << CROSS_DOMAIN_CHANNEL_RING);
      this.query = this.ringPage();
      this.channel = this.ringPage();
      const init = Buffer.alloc(INIT_CMD_SIZE);
      header(init, 0, CrossDomainCmd.INIT, INIT_CMD_SIZE);
      setU32(init, 8, this.query.resId);
      setU32(init, 12, this.channel.resId);
      setU32(init, 16, CROSS_DOMAIN_CHANNEL_TYPE_WAYLAND);
      gpu.execbuffer(init);
      header(this.pollCmd, 0, CrossDomainCmd.POLL, POLL_CMD_SIZE, CROSS_DOMAIN_CHANNEL_RING);
      gpu.onFence = () => this.onChannelMessage();
      gpu.onDrain = () => {
        if (this.closed) return;
        for (const p of this.writePipes) p.resume();
        this.handler.onDrain?.();
      };
      gpu.onError = (e) => this.fail(e);
      this.poll();
    } catch (e) {
      gpu.close();
      throw e;
    }
  }

  /** The device has not taken what was sent yet (tswl-host is waiting for its compositor). */
  get congested(): boolean {
    return this.gpu.queuedBytes >= DEVICE_HIGH_WATER;
  }

  consume(n: number): void {
    this.inStart += n;
  }

  setReading(on: boolean): void {
    if (this.closed || this.reading === on) return;
    this.reading = on;
    this.maybePoll();
  }

  flush(): void {
    if (this.closed) return;
    const out = this.out;
    try {
      if (out.len > 0 || out.fds.length > 0) this.sendAll();
    } catch (e) {
      this.fail(e as Error);
      return;
    }
    for (const h of this.deferredCloses.splice(0)) {
      this.ownedHandles.delete(h);
      this.gpu.closeHandle(h);
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.gpu.onFence = null;
    this.gpu.onError = null;
    for (const p of [...this.readPipes.values()]) p.close();
    for (const p of [...this.writePipes]) p.close();
    this.gpu.unmap(this.query.handle);
    this.gpu.unmap(this.channel.handle);
    this.gpu.close();
    this.inFds.closeAll();
    for (const fd of this.out.fds) closeQuietly(fd);
    this.out.fds.length = 0;
    this.out.release();
    releaseInput(this);
    giveBack(this.submitBuf);
    this.submitBuf = RELEASED;
  }

  /** Host memory for a shadow buffer: a HOST3D blob made from an R8 image of `size` × 1. */
  allocate(size: number): ShadowMemory {
    if (this.closed) throw new Error('the cross-domain link is closed');
    const reqs = this.imageRequirements(pageAlign(size), 1, DRM_FORMAT_R8);
    const gpu = this.gpu;
    const { handle } = gpu.createBlob(
      BlobMem.HOST3D,
      BlobFlag.USE_MAPPABLE | BlobFlag.USE_SHAREABLE,
      reqs.size,
      reqs.blobId,
    );
    let map: Buffer;
    try {
      map = gpu.map(handle);
      if (reqs.offset0 + size > map.length)
        throw new Error(`host blob of ${map.length} bytes is too small for ${size}`);
    } catch (e) {
      gpu.unmap(handle);
      gpu.closeHandle(handle);
      throw e;
    }
    this.ownedHandles.add(handle);
    let freed = false;
    return {
      bytes: map.subarray(reqs.offset0, reqs.offset0 + size),
      exportFd: () => gpu.exportFd(handle),
      free: () => {
        if (freed) return;
        freed = true;
        gpu.unmap(handle);
        if (this.closed) return;
        this.deferredCloses.push(handle);
      },
    };
  }

  // --- setup and host messages -------------------------------------------------------------------

  private ringPage(): { handle: number; resId: number; map: Buffer } {
    const blob = this.gpu.createBlob(BlobMem.GUEST, BlobFlag.USE_MAPPABLE, PAGE_SIZE, 0);
    return { ...blob, map: this.gpu.map(blob.handle) };
  }

  private poll(): void {
    this.gpu.execbuffer(this.pollCmd, POLL_OPTIONS);
    this.polling = true;
  }

  private maybePoll(): void {
    if (this.closed || this.polling || !this.reading || this.pipeBacklog >= PIPE_BACKLOG_LIMIT)
      return;
    try {
      this.poll();
    } catch (e) {
      this.fail(e as Error);
    }
  }

  /** The ring-1 fence signalled: the channel page holds one message. */
  private onChannelMessage(): void {
    if (this.closed) return;
    this.polling = false;
    const page = this.channel.map;
    let data = false;
    try {
      switch (page[0]) {
        case CrossDomainCmd.RECEIVE:
          if (!this.onReceive(page)) return this.fail(null);
          data = true;
          break;
        case CrossDomainCmd.READ:
          this.onRead(page);
          break;
        default:
          throw new Error(`unknown command ${page[0]} in the channel ring`);
      }
    } catch (e) {
      this.fail(e as Error);
      return;
    }
    // the message is copied out, so the host may overwrite the page: the next POLL goes first
    this.maybePoll();
    if (data && !this.closed) this.handler.onData();
  }

  /** Takes in a RECEIVE; false when it is the empty one that means end of file. */
  private onReceive(page: Buffer): boolean {
    const count = getU32(page, 8);
    const size = getU32(page, 12);
    if (count > CROSS_DOMAIN_MAX_IDENTIFIERS || size > CROSS_DOMAIN_MAX_SEND_RECV_SIZE)
      throw new Error(`malformed RECEIVE (${count} identifiers, ${size} bytes)`);
    if (count === 0 && size === 0) return false;
    for (let i = 0; i < count; i++) {
      const id = getU32(page, 16 + 4 * i);
      const type = getU32(page, 128 + 4 * i);
      const idSize = getU32(page, 240 + 4 * i);
      let fd: number;
      if (
        type === CrossDomainId.WRITE_PIPE ||
        (type === CrossDomainId.VIRTGPU_BLOB && idSize === 0)
      ) {
        // (a blob of size 0 is a write pipe from a host with the 2024-10 type bug)
        fd = this.newWritePipe(id);
      } else if (type === CrossDomainId.VIRTGPU_BLOB) {
        fd = this.importHostBlob(id, idSize);
      } else {
        throw new Error(`the host sent an identifier of unsupported type ${type}`);
      }
      if (!this.inFds.push(fd)) {
        closeQuietly(fd);
        this.fdsTruncated = true;
      }
    }
    this.fdsIn += count;
    this.append(page, CROSS_DOMAIN_SEND_RECEIVE_SIZE, size);
    return true;
  }

  private append(src: Buffer, start: number, size: number): void {
    if (this.in.length - this.inEnd < size) {
      this.in.copy(this.in, 0, this.inStart, this.inEnd);
      this.inEnd -= this.inStart;
      this.inStart = 0;
      if (this.in.length - this.inEnd < size) {
        const bigger = Buffer.allocUnsafe(this.in.length * 2);
        this.in.copy(bigger, 0, 0, this.inEnd);
        this.in = bigger;
        this.inView = new DataView(bigger.buffer, bigger.byteOffset, bigger.byteLength);
      }
    }
    src.copy(this.in, this.inEnd, start, start + size);
    this.inEnd += size;
    this.bytesIn += size;
  }

  /** A host fd (a keymap…) as a guest fd: a HOST3D blob made from its identifier, exported. */
  private importHostBlob(id: number, size: number): number {
    const { handle } = this.gpu.createBlob(
      BlobMem.HOST3D,
      BlobFlag.USE_MAPPABLE | BlobFlag.USE_SHAREABLE,
      size,
      id,
    );
    try {
      return this.gpu.exportFd(handle);
    } finally {
      this.gpu.closeHandle(handle);
    }
  }

  /** A host write pipe (the compositor wants data from the client): a local pipe, read and forwarded. */
  private newWritePipe(id: number): number {
    const [readEnd, writeEnd] = native.pipe();
    let clientEnd = -1;
    try {
      // the client writes as into any pipe: blocking, while our end stays nonblocking
      clientEnd = reopen(writeEnd, 'write');
      this.writePipes.add(new WritePipe(this, id, readEnd));
    } catch (e) {
      closeQuietly(readEnd);
      if (clientEnd >= 0) closeQuietly(clientEnd);
      throw e;
    } finally {
      closeQuietly(writeEnd);
    }
    return clientEnd;
  }

  private onRead(page: Buffer): void {
    const id = getU32(page, 8);
    const hangUp = getU32(page, 12) !== 0;
    const size = getU32(page, 16);
    if (size > MAX_READ_WRITE_DATA) throw new Error(`malformed READ (${size} bytes)`);
    const pipe = this.readPipes.get(id);
    // data for a pipe whose reader went away is dropped
    if (!pipe) return;
    pipe.write(page, CROSS_DOMAIN_READ_WRITE_SIZE, size);
    if (hangUp) pipe.hangUp();
  }

  /** WRITE commands for data read from a local pipe: one per chunk, then a hang_up one at its end. */
  sendWrites(id: number, chunks: readonly Buffer[], hangUp: boolean): void {
    const buf = this.submitBuf;
    let at = 0;
    const n = chunks.length + (hangUp ? 1 : 0);
    for (let i = 0; i < n; i++) {
      const data = i < chunks.length ? chunks[i] : null;
      const len = data ? data.length : 0;
      const size = (CROSS_DOMAIN_READ_WRITE_SIZE + len + 3) & ~3;
      if (at + size > buf.length) {
        this.gpu.execbuffer(buf.subarray(0, at));
        at = 0;
      }
      buf.fill(0, at, at + size);
      header(buf, at, CrossDomainCmd.WRITE, size);
      setU32(buf, at + 8, id);
      setU32(buf, at + 12, data ? 0 : 1);
      setU32(buf, at + 16, len);
      if (data) data.copy(buf, at + CROSS_DOMAIN_READ_WRITE_SIZE);
      at += size;
    }
    if (at > 0) this.gpu.execbuffer(buf.subarray(0, at));
  }

  // --- sending ------------------------------------------------------------------------------------

  /**
   * Turns the output buffer into SENDs: at most 3744 bytes and 28 identifiers each, one read pipe
   * at most, fds no later than the bytes of their message, packed into few EXECBUFFERs.
   */
  private sendAll(): void {
    const out = this.out;
    const buf = this.submitBuf;
    const fds = out.fds;
    let at = 0;
    let pos = 0;
    let fdPos = 0;
    try {
      while (pos < out.len) {
        if (at + PAGE_SIZE > buf.length) {
          this.gpu.execbuffer(buf.subarray(0, at));
          at = 0;
        }
        buf.fill(0, at, at + CROSS_DOMAIN_SEND_RECEIVE_SIZE);
        let count = 0;
        let pipes = 0;
        while (fdPos < fds.length && count < CROSS_DOMAIN_MAX_IDENTIFIERS) {
          const fd = fds[fdPos];
          const kind = native.fdKind(fd);
          let id: number;
          let type: number;
          let size = 0;
          if (kind.kind === 'pipe-write') {
            if (pipes === 1) break; // the host takes one read pipe per SEND
            pipes++;
            id = this.readPipeId = Math.max(
              (this.readPipeId + 1) >>> 0,
              CROSS_DOMAIN_PIPE_READ_START,
            );
            type = CrossDomainId.READ_PIPE;
            // the pipe is ours to feed from now on, through our own nonblocking open of it
            const own = reopen(fd, 'write', true);
            closeQuietly(fd);
            fds[fdPos] = -1;
            this.readPipes.set(id, new ReadPipe(this, id, own));
          } else if (kind.kind === 'memory' || kind.kind === 'other') {
            let handle: number;
            try {
              handle = this.gpu.importFd(fd);
            } catch (e) {
              throw new Error(
                `cannot pass a ${kind.kind} fd to the host: only virtio-gpu buffers cross the VM boundary (${(e as Error).message})`,
              );
            }
            if (!this.ownedHandles.has(handle)) this.imported.push(handle);
            const info = this.gpu.resourceInfo(handle);
            id = info.resId;
            size = info.size;
            type = CrossDomainId.VIRTGPU_BLOB;
          } else {
            throw new Error(`cannot pass a ${kind.kind} fd to the host`);
          }
          setU32(buf, at + 16 + 4 * count, id);
          setU32(buf, at + 128 + 4 * count, type);
          setU32(buf, at + 240 + 4 * count, size);
          count++;
          fdPos++;
        }
        let len = Math.min(out.len - pos, CROSS_DOMAIN_MAX_SEND_RECV_SIZE);
        // fds that did not fit go with the next SEND: send little now, so theirs come in time
        if (fdPos < fds.length) len = Math.min(len, 4);
        const cmdSize = (CROSS_DOMAIN_SEND_RECEIVE_SIZE + len + 3) & ~3;
        header(buf, at, CrossDomainCmd.SEND, cmdSize);
        setU32(buf, at + 8, count);
        setU32(buf, at + 12, len);
        out.buf.copy(buf, at + CROSS_DOMAIN_SEND_RECEIVE_SIZE, pos, pos + len);
        buf.fill(0, at + CROSS_DOMAIN_SEND_RECEIVE_SIZE + len, at + cmdSize);
        at += cmdSize;
        pos += len;
      }
      if (at > 0) this.gpu.execbuffer(buf.subarray(0, at));
    } finally {
      // the fds were sent (or the link is failing): ours to close, except pipes handed on
      for (const fd of fds) if (fd >= 0) closeQuietly(fd);
      fds.length = 0;
      out.clear();
      // imported handles stay open until their SEND is submitted
      for (const h of this.imported) this.gpu.closeHandle(h);
      this.imported.length = 0;
    }
  }

  private imageRequirements(width: number, height: number, format: number): ImageRequirements {
    const key = `${width}x${height}:${format}`;
    const cached = this.requirements.get(key);
    if (cached) return cached;
    const page = this.query.map;
    // a failed query leaves the page as it was: zero it so a failure reads as blob_id 0
    page.fill(0, 0, 64);
    const cmd = Buffer.alloc(GET_IMAGE_REQUIREMENTS_SIZE);
    header(
      cmd,
      0,
      CrossDomainCmd.GET_IMAGE_REQUIREMENTS,
      GET_IMAGE_REQUIREMENTS_SIZE,
      CROSS_DOMAIN_QUERY_RING,
    );
    setU32(cmd, 8, width);
    setU32(cmd, 12, height);
    setU32(cmd, 16, format);
    setU32(cmd, 20, GBM_USE_LINEAR_SCANOUT);
    this.gpu.execbuffer(cmd, { ringIdx: CROSS_DOMAIN_QUERY_RING, boHandles: [this.query.handle] });
    this.gpu.wait(this.query.handle);
    const reqs: ImageRequirements = {
      stride0: getU32(page, 0),
      offset0: getU32(page, 16),
      size: Number(page.readBigUInt64LE(40)),
      blobId: getU32(page, 48),
    };
    if (reqs.blobId === 0 || reqs.size === 0)
      throw new Error(
        `the host cannot allocate a ${width}x${height} image (format 0x${format.toString(16)})`,
      );
    this.requirements.set(key, reqs);
    return reqs;
  }

  fail(error: Error | null): void {
    if (this.closed) return;
    this.close();
    this.handler.onClose(error);
  }

  /** A pipe caught up: a POLL held back for the clipboard backlog may go. */
  backlogDrained(): void {
    this.maybePoll();
  }

  /** A ReadPipe or WritePipe is finished. */
  forgetPipe(pipe: ReadPipe | WritePipe): void {
    if (pipe instanceof ReadPipe) this.readPipes.delete(pipe.id);
    else this.writePipes.delete(pipe);
  }
}

/** A client's pipe (wl_data_offer.receive) that the host's READ messages are written into. */
class ReadPipe {
  private readonly queue: Buffer[] = [];
  private queued = 0;
  private hungUp = false;
  private poller: native.Poller | null = null;
  private closed = false;

  constructor(
    private readonly link: CrossDomainLink,
    readonly id: number,
    private readonly fd: number,
  ) {}

  write(src: Buffer, start: number, size: number): void {
    if (this.closed || size === 0) return;
    let pos = start;
    const end = start + size;
    if (this.queue.length === 0) {
      try {
        while (pos < end) {
          const n = native.writeFd(this.fd, src, pos, end);
          if (n < 0) break;
          pos += n;
        }
      } catch {
        // the reader is gone (EPIPE): drop the rest of the data
        this.close();
        return;
      }
    }
    if (pos < end) {
      this.queue.push(Buffer.from(src.subarray(pos, end)));
      this.queued += end - pos;
      this.link.pipeBacklog += end - pos;
      if (!this.poller) {
        this.poller = new native.Poller(this.fd, () => this.drain());
        this.poller.update(native.WRITABLE);
      }
    }
  }

  hangUp(): void {
    this.hungUp = true;
    if (this.queue.length === 0) this.close();
  }

  private drain(): void {
    try {
      while (this.queue.length > 0) {
        const b = this.queue[0];
        const n = native.writeFd(this.fd, b, 0, b.length);
        if (n < 0) return;
        this.queued -= n;
        this.link.pipeBacklog -= n;
        if (n === b.length) this.queue.shift();
        else this.queue[0] = b.subarray(n);
      }
    } catch {
      this.close();
      return;
    }
    this.poller?.update(0);
    if (this.hungUp) this.close();
    this.link.backlogDrained();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.link.pipeBacklog -= this.queued;
    this.queue.length = 0;
    this.poller?.close();
    closeQuietly(this.fd);
    this.link.forgetPipe(this);
    this.link.backlogDrained();
  }
}

/** The read end of a local pipe the client writes into (wl_data_source.send); data goes out as WRITE. */
class WritePipe {
  private readonly poller: native.Poller;
  private readonly buf = Buffer.allocUnsafe(MAX_READ_WRITE_DATA);
  private closed = false;

  constructor(
    private readonly link: CrossDomainLink,
    private readonly id: number,
    private readonly fd: number,
  ) {
    this.poller = new native.Poller(fd, () => this.onReadable());
    this.poller.update(native.READABLE);
  }

  /** The device took what was queued: read the client's pipe again. */
  resume(): void {
    if (!this.closed) this.poller.update(native.READABLE);
  }

  private onReadable(): void {
    if (this.closed) return;
    if (this.link.congested) {
      // the device is behind: the client's writes wait in its pipe, not in our memory
      this.poller.update(0);
      return;
    }
    const chunks: Buffer[] = [];
    let eof = false;
    try {
      // a bounded batch per wake-up; the poller fires again while data is left
      while (chunks.length < 14) {
        const n = native.readFd(this.fd, this.buf, 0, this.buf.length);
        if (n < 0) break;
        if (n === 0) {
          eof = true;
          break;
        }
        chunks.push(Buffer.from(this.buf.subarray(0, n)));
      }
    } catch {
      eof = true;
    }
    try {
      if (chunks.length > 0 || eof) this.link.sendWrites(this.id, chunks, eof);
    } catch (e) {
      this.link.fail(e as Error);
      return;
    }
    if (eof) this.close();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.poller.close();
    closeQuietly(this.fd);
    this.link.forgetPipe(this);
  }
}

/** Queued command bytes past which the relay stops reading the client. */
const DEVICE_HIGH_WATER = 256 * 1024;

/** Connects a relay's host side through a cross-domain context of the device at `devicePath`. */
export function connectCrossDomain(devicePath: string, handler: EndpointHandler): Endpoint {
  return new CrossDomainLink(openVirtGpu(devicePath), handler);
}

/** `shadowShm` for relays whose host side is a cross-domain link: their shm goes to host blobs. */
export const crossDomainShadowShm: ShadowAllocatorSource = (relay: Relay) =>
  relay.host instanceof CrossDomainLink ? relay.host : null;

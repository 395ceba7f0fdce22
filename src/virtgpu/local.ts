// VirtGpu over the local link to tswl-host (src/virtgpu/protocol.ts describes the envelope): this
// file plays the guest kernel's part, turning uapi calls into virtio-gpu control commands. One
// instance is one SOCK_SEQPACKET connection, as one DRM fd per client is under a real VM.
import { fstatSync, openSync } from 'node:fs';
import * as native from '../native/index.js';
import { closeQuietly } from '../wire/fd-queue.js';
import { RELEASED, RELEASED_VIEW, giveBack, takeBuffer } from '../wire/buffer-pool.js';
import {
  BlobFlag,
  BlobMem,
  CTRL_HDR_SIZE,
  LOCAL_LINK_ENVELOPE_SIZE,
  LOCAL_LINK_MAX_PACKET,
  LOCAL_LINK_WANT_REPLY,
  getU32,
  setU32,
  VirtioGpuCmd,
  VirtioGpuFlag,
  VirtioGpuResp,
} from './protocol.js';
import type { BlobHandle, ExecbufferOptions, ResourceInfo, VirtGpu } from './virtgpu.js';
import { VirtGpuParam, pageAlign, virtGpuError } from './virtgpu.js';

/** How long a synchronous call waits for tswl-host (the kernel's VIRTGPU_WAIT limit). */
const REPLY_TIMEOUT_MS = 15000;
const MAX_RINGS = 64;
/** Packet buffers kept for reuse: enough for the queue below the relay's high water mark. */
const MAX_SPARE_SCRATCH = 4;
/** The ctx_id of the single context of this "file" (the kernel numbers them per file from 1). */
const CTX_ID = 1;
/** Size of the host-visible region the guest places MAPPABLE host blobs in (crosvm's default). */
const HOST_VISIBLE_SIZE = 2 ** 33;

/** First-fit ranges of the host-visible region, as the kernel's drm_mm hands them out. */
class RegionAllocator {
  /** Free ranges [start, end), sorted, coalesced. */
  private readonly free: [number, number][] = [[0, HOST_VISIBLE_SIZE]];

  allocate(size: number): number {
    for (let i = 0; i < this.free.length; i++) {
      const [start, end] = this.free[i];
      if (end - start < size) continue;
      if (end - start === size) this.free.splice(i, 1);
      else this.free[i][0] = start + size;
      return start;
    }
    throw virtGpuError('ENOSPC', `no room for ${size} bytes in the host-visible region`);
  }

  release(start: number, size: number): void {
    const end = start + size;
    let i = 0;
    while (i < this.free.length && this.free[i][0] < start) i++;
    this.free.splice(i, 0, [start, end]);
    // merge with the neighbours
    if (i + 1 < this.free.length && this.free[i + 1][0] === end) {
      this.free[i][1] = this.free[i + 1][1];
      this.free.splice(i + 1, 1);
    }
    if (i > 0 && this.free[i - 1][1] === start) {
      this.free[i - 1][1] = this.free[i][1];
      this.free.splice(i, 1);
    }
  }
}

const NO_BOS: BlobObject[] = [];
const NO_FDS: readonly number[] = [];
/** What a POLL's fence is: observed, and on no buffer (so one object serves them all). */
const POLL_FENCE: Fence = { polled: true, objects: NO_BOS };

interface Reply {
  readonly type: number;
  /** The response from its ctrl header on (a copy). */
  readonly body: Buffer;
  readonly fds: readonly number[];
}

interface BlobObject {
  readonly resId: number;
  readonly size: number;
  readonly blobMem: number;
  /** The current GEM handle, 0 once closed. */
  handle: number;
  /** Backing memory: the guest's own memfd (GUEST) or the one OK_MAP_INFO carried (HOST3D). */
  memfd: number;
  /** dev:inode of memfd, how importFd recognises exported fds. */
  readonly key: string | null;
  mapping: Buffer | null;
  /** Where RESOURCE_MAP_BLOB placed it in the host-visible region, -1 when not. */
  hostOffset: number;
  /** CTX_ATTACH_RESOURCE succeeded. */
  attached: boolean;
  /** Tags of fenced submissions this object waits for. */
  readonly fences: Set<number>;
}

interface Fence {
  readonly polled: boolean;
  readonly objects: BlobObject[];
}

/** A new open file of the same memfd (what dup would give, with its own offset), read/write if it can be. */
function reopen(fd: number): number {
  const path = `/proc/self/fd/${fd}`;
  return native.fdKind(fd).writable ? openSync(path, 'r+') : openSync(path, 'r');
}

function fileKey(fd: number): string {
  const st = fstatSync(fd);
  return `${st.dev}:${st.ino}`;
}

function ctrlHeader(
  view: DataView,
  at: number,
  type: number,
  flags = 0,
  fenceId = 0,
  ctxId = 0,
  ring = 0,
): void {
  view.setUint32(at, type, true);
  view.setUint32(at + 4, flags, true);
  // fence ids count up from 1 within a context: never past 2^32 in practice, 2^53 at most
  view.setUint32(at + 8, fenceId >>> 0, true);
  view.setUint32(at + 12, Math.floor(fenceId / 2 ** 32), true);
  view.setUint32(at + 16, ctxId, true);
  view.setUint32(at + 20, ring & 0xff, true);
}

function respName(type: number): string {
  for (const [name, value] of Object.entries(VirtioGpuResp)) if (value === type) return name;
  return `0x${type.toString(16)}`;
}

export class LocalVirtGpu implements VirtGpu {
  onFence: (() => void) | null = null;
  onError: ((error: Error) => void) | null = null;
  private readonly fd: number;
  private readonly poller: native.Poller;
  private rbuf = takeBuffer(LOCAL_LINK_MAX_PACKET);
  /** Where execbuffer builds a packet; one the socket did not take is queued as it is. */
  private execScratch: Buffer = takeBuffer(LOCAL_LINK_MAX_PACKET);
  private execView = new DataView(this.execScratch.buffer, this.execScratch.byteOffset);
  /** Scratch buffers back from the queue, so a flood that fills the socket allocates nothing. */
  private readonly spareScratch: Buffer[] = [];
  private readonly recvOut = new Int32Array(native.RECV_OUT_LENGTH);
  private readonly sendQueue: { buf: Buffer; fds: number[]; scratch: Buffer | null }[] = [];
  queuedBytes = 0;
  onDrain: (() => void) | null = null;
  /** Tags whose replies a synchronous call waits for, and the replies that came. */
  private readonly awaited = new Set<number>();
  private readonly replies = new Map<number, Reply>();
  private readonly fences = new Map<number, Fence>();
  private readonly objects = new Map<number, BlobObject>();
  private readonly byKey = new Map<string, BlobObject>();
  /** Mappings by the handle they were made with; they outlive GEM_CLOSE, as mmaps do. */
  private readonly mapped = new Map<number, BlobObject>();
  private capsets: { id: number; maxVersion: number; maxSize: number }[] | null = null;
  private readonly capsCache = new Map<string, Buffer>();
  private readonly region = new RegionAllocator();
  private nextTag = 1;
  private nextFenceId = 1;
  private nextResId = 1;
  private nextHandle = 1;
  private hasContext = false;
  private numRings = 0;
  private pollRingsMask = 0;
  private fenceEvents = 0;
  private deliveryScheduled = false;
  private delivering = false;
  private failed: Error | null = null;
  private closed = false;

  /** Connects to `tswl-host --listen-local PATH`. */
  static connect(path: string): LocalVirtGpu {
    return new LocalVirtGpu(native.connectSeqpacket(path));
  }

  /** Takes ownership of a connected SOCK_SEQPACKET socket. */
  constructor(fd: number) {
    this.fd = fd;
    this.poller = new native.Poller(fd, (events, error) => this.onReady(events, error));
    this.poller.update(native.READABLE);
  }

  getParam(param: number): number {
    switch (param) {
      case VirtGpuParam.FEATURES_3D:
      case VirtGpuParam.CAPSET_QUERY_FIX:
      case VirtGpuParam.RESOURCE_BLOB:
      case VirtGpuParam.HOST_VISIBLE:
      case VirtGpuParam.CONTEXT_INIT:
        return 1;
      case VirtGpuParam.CROSS_DEVICE:
        return 0;
      case VirtGpuParam.SUPPORTED_CAPSET_IDS: {
        let mask = 0;
        for (const c of this.capsetInfos()) if (c.id < 31) mask |= 1 << c.id;
        return mask >>> 0;
      }
      default:
        throw virtGpuError('EINVAL', `unknown GETPARAM ${param}`);
    }
  }

  getCaps(capsetId: number, version: number, size: number): Buffer {
    if (size <= 0) throw virtGpuError('EINVAL', 'GET_CAPS with size 0');
    const info = this.capsetInfos().find((c) => c.id === capsetId);
    if (!info || version > info.maxVersion)
      throw virtGpuError('EINVAL', `no capset ${capsetId} version ${version}`);
    const key = `${capsetId}:${version}`;
    let caps = this.capsCache.get(key);
    if (!caps) {
      const { buf, view } = this.packet(CTRL_HDR_SIZE + 8);
      ctrlHeader(view, 8, VirtioGpuCmd.GET_CAPSET);
      view.setUint32(8 + CTRL_HDR_SIZE, capsetId, true);
      view.setUint32(8 + CTRL_HDR_SIZE + 4, version, true);
      const reply = this.call(buf, [], VirtioGpuResp.OK_CAPSET, 'GET_CAPSET');
      caps = Buffer.from(reply.body.subarray(CTRL_HDR_SIZE, CTRL_HDR_SIZE + info.maxSize));
      this.capsCache.set(key, caps);
    }
    return Buffer.from(caps.subarray(0, Math.min(size, caps.length)));
  }

  contextInit(capsetId: number, numRings: number, pollRingsMask: number): void {
    if (this.hasContext) throw virtGpuError('EEXIST', 'this file already has a context');
    if (capsetId > 63 || !this.capsetInfos().some((c) => c.id === capsetId))
      throw virtGpuError('EINVAL', `capset ${capsetId} is not offered by the device`);
    if (numRings < 0 || numRings > MAX_RINGS)
      throw virtGpuError('EINVAL', `NUM_RINGS ${numRings} is above ${MAX_RINGS}`);
    if (pollRingsMask & ~((1 << numRings) - 1))
      throw virtGpuError(
        'EINVAL',
        `POLL_RINGS_MASK ${pollRingsMask} names rings above ${numRings}`,
      );
    const name = Buffer.from('tswl-proxy');
    const { buf, view } = this.packet(CTRL_HDR_SIZE + 8 + 64);
    ctrlHeader(view, 8, VirtioGpuCmd.CTX_CREATE, 0, 0, CTX_ID);
    view.setUint32(8 + CTRL_HDR_SIZE, name.length, true);
    view.setUint32(8 + CTRL_HDR_SIZE + 4, capsetId, true);
    name.copy(buf, 8 + CTRL_HDR_SIZE + 8);
    this.call(buf, [], VirtioGpuResp.OK_NODATA, 'CTX_CREATE');
    this.hasContext = true;
    this.numRings = numRings;
    this.pollRingsMask = pollRingsMask;
  }

  createBlob(blobMem: number, blobFlags: number, size: number, blobId: number): BlobHandle {
    this.check();
    if (blobFlags & ~(BlobFlag.USE_MAPPABLE | BlobFlag.USE_SHAREABLE | BlobFlag.USE_CROSS_DEVICE))
      throw virtGpuError('EINVAL', `unknown blob flags ${blobFlags}`);
    if (blobFlags & BlobFlag.USE_CROSS_DEVICE)
      throw virtGpuError('EINVAL', 'the local link has no RESOURCE_UUID');
    if (size <= 0) throw virtGpuError('EINVAL', `blob size ${size}`);
    const host = blobMem === BlobMem.HOST3D || blobMem === BlobMem.HOST3D_GUEST;
    if (!host && blobMem !== BlobMem.GUEST) throw virtGpuError('EINVAL', `blob_mem ${blobMem}`);
    if (blobMem === BlobMem.HOST3D_GUEST)
      throw virtGpuError('EINVAL', 'HOST3D_GUEST blobs are not supported on the local link');
    if (!host && blobId !== 0) throw virtGpuError('EINVAL', 'a GUEST blob takes no blob_id');
    if (!this.hasContext && host) throw virtGpuError('EINVAL', 'HOST3D blobs need a context');
    size = pageAlign(size);
    const resId = this.nextResId++;
    let memfd = -1;
    if (!host) memfd = native.memfdCreate(`tswl-guest-blob-${resId}`, size);
    const obj: BlobObject = {
      resId,
      size,
      blobMem,
      handle: this.nextHandle++,
      memfd,
      key: memfd >= 0 ? fileKey(memfd) : null,
      mapping: null,
      hostOffset: -1,
      attached: false,
      fences: new Set(),
    };
    try {
      // RESOURCE_CREATE_BLOB: GUEST blobs carry their backing fd and one mem entry over it
      const entries = host ? 0 : 1;
      const { buf, view } = this.packet(CTRL_HDR_SIZE + 32 + entries * 16);
      const at = 8 + CTRL_HDR_SIZE;
      ctrlHeader(view, 8, VirtioGpuCmd.RESOURCE_CREATE_BLOB, 0, 0, host ? CTX_ID : 0);
      view.setUint32(at, resId, true);
      view.setUint32(at + 4, blobMem, true);
      view.setUint32(at + 8, blobFlags, true);
      view.setUint32(at + 12, entries, true);
      view.setBigUint64(at + 16, BigInt(blobId), true);
      view.setBigUint64(at + 24, BigInt(size), true);
      if (entries) {
        view.setBigUint64(at + 32, 0n, true);
        view.setUint32(at + 40, size, true);
      }
      const createTag = this.sendTagged(buf, memfd >= 0 ? [memfd] : [], true);
      // a handle made in a file with a context is attached to it
      const attachTag = this.hasContext
        ? this.sendResourceCmd(VirtioGpuCmd.CTX_ATTACH_RESOURCE, resId, CTX_ID, true)
        : 0;
      // the kernel maps MAPPABLE host blobs into the host-visible window straight away
      let mapTag = 0;
      if (host && blobFlags & BlobFlag.USE_MAPPABLE) {
        obj.hostOffset = this.region.allocate(size);
        const m = this.packet(CTRL_HDR_SIZE + 16);
        ctrlHeader(m.view, 8, VirtioGpuCmd.RESOURCE_MAP_BLOB);
        m.view.setUint32(8 + CTRL_HDR_SIZE, resId, true);
        m.view.setBigUint64(8 + CTRL_HDR_SIZE + 8, BigInt(obj.hostOffset), true);
        mapTag = this.sendTagged(m.buf, [], true);
      }
      const created = this.waitReply(createTag);
      const attached = attachTag ? this.waitReply(attachTag) : null;
      const mapped = mapTag ? this.waitReply(mapTag) : null;
      const fail = [
        [created, VirtioGpuResp.OK_NODATA, 'RESOURCE_CREATE_BLOB'],
        [attached, VirtioGpuResp.OK_NODATA, 'CTX_ATTACH_RESOURCE'],
        [mapped, VirtioGpuResp.OK_MAP_INFO, 'RESOURCE_MAP_BLOB'],
      ] as const;
      let error: Error | null = null;
      for (const [reply, ok, what] of fail) {
        if (reply && reply.type !== ok && !error)
          error = virtGpuError('EINVAL', `${what} failed: ${respName(reply.type)}`);
      }
      if (mapped) {
        for (let i = 1; i < mapped.fds.length; i++) closeQuietly(mapped.fds[i]);
        if (mapped.type !== VirtioGpuResp.OK_MAP_INFO) {
          this.region.release(obj.hostOffset, size);
          obj.hostOffset = -1;
        }
        if (mapped.type === VirtioGpuResp.OK_MAP_INFO) {
          if (mapped.fds.length === 0 && !error)
            error = virtGpuError('EPROTO', 'OK_MAP_INFO came without the blob memory');
          else obj.memfd = mapped.fds[0];
        } else if (mapped.fds.length > 0) closeQuietly(mapped.fds[0]);
      }
      for (const r of [created, attached]) for (const fd of r?.fds ?? []) closeQuietly(fd);
      obj.attached = attached?.type === VirtioGpuResp.OK_NODATA;
      if (error) {
        this.release(obj, created?.type === VirtioGpuResp.OK_NODATA);
        throw error;
      }
    } catch (e) {
      if (obj.memfd >= 0) closeQuietly(obj.memfd);
      obj.memfd = -1;
      throw e;
    }
    if (obj.memfd >= 0 && !obj.key) (obj as { key: string | null }).key = fileKey(obj.memfd);
    this.objects.set(obj.handle, obj);
    if (obj.key) this.byKey.set(obj.key, obj);
    return { handle: obj.handle, resId };
  }

  map(handle: number): Buffer {
    const obj = this.object(handle);
    if (obj.memfd < 0) throw virtGpuError('EINVAL', `blob ${obj.resId} is not mappable`);
    if (!obj.mapping) {
      // read-only host memory (a sealed keymap) maps read-only, as map_info's access says
      obj.mapping = native.mmap(obj.memfd, 0, obj.size, native.fdKind(obj.memfd).writable);
      this.mapped.set(handle, obj);
    }
    return obj.mapping;
  }

  unmap(handle: number): void {
    const obj = this.mapped.get(handle);
    if (!obj) return;
    this.mapped.delete(handle);
    if (obj.mapping) native.munmap(obj.mapping);
    obj.mapping = null;
  }

  exportFd(handle: number): number {
    const obj = this.object(handle);
    if (obj.memfd < 0) throw virtGpuError('EINVAL', `blob ${obj.resId} cannot be exported`);
    // a new open file of the same memory, as a new dma-buf fd would be
    return reopen(obj.memfd);
  }

  importFd(fd: number): number {
    this.check();
    let key: string;
    try {
      key = fileKey(fd);
    } catch {
      throw virtGpuError('EBADF', `fd ${fd} is not open`);
    }
    const obj = this.byKey.get(key);
    if (!obj) throw virtGpuError('EINVAL', `fd ${fd} is not a buffer of this device`);
    return obj.handle;
  }

  resourceInfo(handle: number): ResourceInfo {
    const obj = this.object(handle);
    return { resId: obj.resId, size: obj.size, blobMem: obj.blobMem };
  }

  /**
   * GEM_CLOSE. Unlike the kernel, which keeps the resource while an exported dma-buf lives, the
   * local link frees the resource on the host with its last handle; exported fds stay valid as
   * memory (the host and guest share it), but cannot be imported again.
   */
  closeHandle(handle: number): void {
    const obj = this.objects.get(handle);
    if (!obj) return;
    this.release(obj, true);
  }

  execbuffer(commands: Uint8Array, options: ExecbufferOptions = {}): void {
    this.check();
    if (!this.hasContext) throw virtGpuError('EINVAL', 'EXECBUFFER before CONTEXT_INIT');
    const ring = options.ringIdx;
    if (ring !== undefined && (ring < 0 || ring >= this.numRings))
      throw virtGpuError('EINVAL', `ring ${ring} out of range (${this.numRings} rings)`);
    const size = LOCAL_LINK_ENVELOPE_SIZE + CTRL_HDR_SIZE + 8 + commands.length;
    if (size > LOCAL_LINK_MAX_PACKET)
      throw virtGpuError('E2BIG', `a command buffer of ${commands.length} bytes is too big`);
    const bos = options.boHandles?.length ? options.boHandles.map((h) => this.object(h)) : NO_BOS;
    const polled = ring !== undefined && (this.pollRingsMask & (1 << ring)) !== 0;
    // a fence exists when someone can observe it (kernels since 6.6 make none otherwise)
    const fenced = polled || bos.length > 0;
    // the hot path (SEND, POLL, WRITE): built in one reused buffer, copied only if queued
    const buf = this.execScratch.subarray(0, size);
    const view = this.execView;
    buf.fill(0, 0, LOCAL_LINK_ENVELOPE_SIZE + CTRL_HDR_SIZE + 8);
    let flags = 0;
    let fenceId = 0;
    if (fenced) {
      flags = VirtioGpuFlag.FENCE | (ring !== undefined ? VirtioGpuFlag.INFO_RING_IDX : 0);
      fenceId = this.nextFenceId++;
    }
    ctrlHeader(view, 8, VirtioGpuCmd.SUBMIT_3D, flags, fenceId, CTX_ID, ring ?? 0);
    view.setUint32(8 + CTRL_HDR_SIZE, commands.length, true);
    buf.set(commands, 8 + CTRL_HDR_SIZE + 8);
    const tag = this.sendTagged(buf, NO_FDS, false);
    if (fenced) {
      this.fences.set(tag, polled && bos.length === 0 ? POLL_FENCE : { polled, objects: bos });
      for (const o of bos) o.fences.add(tag);
    }
  }

  wait(handle: number, noWait = false): boolean {
    const obj = this.object(handle);
    if (obj.fences.size === 0) return true;
    if (noWait) {
      this.readPackets();
      return obj.fences.size === 0;
    }
    const deadline = Date.now() + REPLY_TIMEOUT_MS;
    while (obj.fences.size > 0) this.pumpOnce(deadline, 'VIRTGPU_WAIT');
    return true;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.poller.close();
    closeQuietly(this.fd);
    for (const obj of this.objects.values()) {
      if (obj.memfd >= 0) closeQuietly(obj.memfd);
      obj.memfd = -1;
      obj.handle = 0;
    }
    this.objects.clear();
    this.byKey.clear();
    // munmap leaves Buffers detached (empty), so a late user cannot touch freed memory
    for (const handle of [...this.mapped.keys()]) this.unmap(handle);
    for (const r of this.replies.values()) for (const fd of r.fds) closeQuietly(fd);
    this.replies.clear();
    for (const q of this.sendQueue) for (const fd of q.fds) closeQuietly(fd);
    this.sendQueue.length = 0;
    this.queuedBytes = 0;
    for (const buf of [this.rbuf, this.execScratch, ...this.spareScratch]) giveBack(buf);
    this.spareScratch.length = 0;
    this.rbuf = this.execScratch = RELEASED;
    this.execView = RELEASED_VIEW;
  }

  // --- internals ---------------------------------------------------------------------------------

  private object(handle: number): BlobObject {
    const obj = this.objects.get(handle);
    if (!obj) throw virtGpuError('ENOENT', `no GEM handle ${handle}`);
    return obj;
  }

  private release(obj: BlobObject, onHost: boolean): void {
    this.objects.delete(obj.handle);
    if (obj.key && this.byKey.get(obj.key) === obj) this.byKey.delete(obj.key);
    obj.handle = 0;
    if (onHost && !this.closed && !this.failed) {
      // detach, drop the host-visible mapping, then the resource; nobody waits for these
      if (obj.attached)
        this.sendResourceCmd(VirtioGpuCmd.CTX_DETACH_RESOURCE, obj.resId, CTX_ID, false);
      if (obj.hostOffset >= 0)
        this.sendResourceCmd(VirtioGpuCmd.RESOURCE_UNMAP_BLOB, obj.resId, 0, false);
      this.sendResourceCmd(VirtioGpuCmd.RESOURCE_UNREF, obj.resId, 0, false);
    }
    if (obj.hostOffset >= 0) this.region.release(obj.hostOffset, obj.size);
    obj.hostOffset = -1;
    // the mapping (if any) stays until unmap(); the memory lives while it is mapped
    if (obj.memfd >= 0) closeQuietly(obj.memfd);
    obj.memfd = -1;
  }

  private capsetInfos(): { id: number; maxVersion: number; maxSize: number }[] {
    if (this.capsets) return this.capsets;
    const found: { id: number; maxVersion: number; maxSize: number }[] = [];
    // the device config's num_capsets is not on the link: ask by index until the host says no
    for (let index = 0; index < 64; index++) {
      const { buf, view } = this.packet(CTRL_HDR_SIZE + 8);
      ctrlHeader(view, 8, VirtioGpuCmd.GET_CAPSET_INFO);
      view.setUint32(8 + CTRL_HDR_SIZE, index, true);
      const reply = this.waitReply(this.sendTagged(buf, [], true));
      for (const fd of reply.fds) closeQuietly(fd);
      if (reply.type !== VirtioGpuResp.OK_CAPSET_INFO) break;
      const v = new DataView(reply.body.buffer, reply.body.byteOffset, reply.body.byteLength);
      if (reply.body.length < CTRL_HDR_SIZE + 12)
        throw virtGpuError('EPROTO', 'short OK_CAPSET_INFO');
      found.push({
        id: v.getUint32(CTRL_HDR_SIZE, true),
        maxVersion: v.getUint32(CTRL_HDR_SIZE + 4, true),
        maxSize: v.getUint32(CTRL_HDR_SIZE + 8, true),
      });
    }
    this.capsets = found;
    return found;
  }

  private packet(commandSize: number): { buf: Buffer; view: DataView } {
    const buf = Buffer.alloc(LOCAL_LINK_ENVELOPE_SIZE + commandSize);
    return { buf, view: new DataView(buf.buffer, buf.byteOffset, buf.byteLength) };
  }

  private sendResourceCmd(type: number, resId: number, ctxId: number, awaited: boolean): number {
    const { buf, view } = this.packet(CTRL_HDR_SIZE + 8);
    ctrlHeader(view, 8, type, 0, 0, ctxId);
    view.setUint32(8 + CTRL_HDR_SIZE, resId, true);
    return this.sendTagged(buf, [], awaited);
  }

  /** A synchronous command: send, wait for the reply, check its type. */
  private call(buf: Buffer, fds: number[], ok: number, what: string): Reply {
    const reply = this.waitReply(this.sendTagged(buf, fds, true));
    if (reply.type !== ok) {
      for (const fd of reply.fds) closeQuietly(fd);
      throw virtGpuError('EINVAL', `${what} failed: ${respName(reply.type)}`);
    }
    return reply;
  }

  /** Stamps the envelope and sends (or queues) one packet; `fds` stay the caller's. */
  private sendTagged(buf: Buffer, fds: readonly number[], awaited: boolean): number {
    this.check();
    const tag = this.nextTag;
    this.nextTag = (this.nextTag + 1) >>> 0 || 1;
    setU32(buf, 0, tag);
    setU32(buf, 4, awaited ? LOCAL_LINK_WANT_REPLY : 0);
    if (awaited) this.awaited.add(tag);
    if (this.sendQueue.length === 0 && this.trySend(buf, fds)) return tag;
    // the packet and its fds must outlive the queue: keep our own copies (or the scratch
    // buffer itself, execbuffer going on in another)
    const owned = fds.map(reopen);
    const scratch = buf.buffer === this.execScratch.buffer ? this.execScratch : null;
    if (scratch) {
      this.execScratch = this.spareScratch.pop() ?? takeBuffer(LOCAL_LINK_MAX_PACKET);
      this.execView = new DataView(this.execScratch.buffer, this.execScratch.byteOffset);
    }
    this.sendQueue.push({ buf: scratch ? buf : Buffer.from(buf), fds: owned, scratch });
    this.queuedBytes += buf.length;
    this.poller.update(native.READABLE | native.WRITABLE);
    return tag;
  }

  private trySend(buf: Buffer, fds: readonly number[]): boolean {
    try {
      return native.sendmsg(this.fd, buf, 0, buf.length, fds, fds.length) >= 0;
    } catch (e) {
      this.fail(new Error(`local link to tswl-host failed: ${(e as Error).message}`));
      throw this.failed!;
    }
  }

  private flushQueue(): void {
    const hadQueue = this.sendQueue.length > 0;
    while (this.sendQueue.length > 0) {
      const q = this.sendQueue[0];
      if (!this.trySend(q.buf, q.fds)) return;
      for (const fd of q.fds) closeQuietly(fd);
      this.sendQueue.shift();
      this.queuedBytes -= q.buf.length;
      if (q.scratch && this.spareScratch.length < MAX_SPARE_SCRATCH)
        this.spareScratch.push(q.scratch);
    }
    if (!this.closed) this.poller.update(native.READABLE);
    // from the event loop, never from inside a call that is waiting on the device
    if (hadQueue) queueMicrotask(() => this.onDrain?.());
  }

  private waitReply(tag: number): Reply {
    const deadline = Date.now() + REPLY_TIMEOUT_MS;
    for (;;) {
      const reply = this.replies.get(tag);
      if (reply) {
        this.replies.delete(tag);
        this.awaited.delete(tag);
        return reply;
      }
      this.pumpOnce(deadline, 'a reply');
    }
  }

  /** One step of a synchronous wait: send what is queued, wait for input, read it. */
  private pumpOnce(deadline: number, what: string): void {
    this.check();
    this.flushQueue();
    const left = deadline - Date.now();
    if (left <= 0) {
      this.fail(virtGpuError('ETIMEDOUT', `tswl-host did not answer (waiting for ${what})`));
      throw this.failed!;
    }
    if (native.waitReadable(this.fd, this.sendQueue.length > 0 ? Math.min(left, 2) : left))
      this.readPackets();
    if (this.fenceEvents > 0) this.scheduleDelivery();
    this.check();
  }

  private onReady(events: number, error: string | null): void {
    if (this.closed) return;
    if (error) return this.fail(new Error(`local link poll failed: ${error}`));
    try {
      if (events & native.WRITABLE) this.flushQueue();
      if (events & (native.READABLE | native.DISCONNECT)) this.readPackets();
    } catch (e) {
      if (!this.failed) this.fail(e as Error);
      return;
    }
    this.deliverFences();
  }

  private readPackets(): void {
    while (!this.closed && !this.failed) {
      const n = native.recvmsg(this.fd, this.rbuf, 0, this.rbuf.length, this.recvOut);
      const count = this.recvOut[0];
      const fds = count === 0 ? NO_FDS : Array.from(this.recvOut.subarray(2, 2 + count));
      if (n < 0) {
        for (const fd of fds) closeQuietly(fd);
        return;
      }
      if (n === 0) {
        for (const fd of fds) closeQuietly(fd);
        this.fail(new Error('tswl-host closed the local link'));
        return;
      }
      this.onPacket(n, fds);
    }
  }

  private onPacket(n: number, fds: readonly number[]): void {
    if (n < LOCAL_LINK_ENVELOPE_SIZE + CTRL_HDR_SIZE) {
      for (const fd of fds) closeQuietly(fd);
      this.fail(virtGpuError('EPROTO', `tswl-host sent a packet of ${n} bytes`));
      return;
    }
    const tag = getU32(this.rbuf, 0);
    const type = getU32(this.rbuf, LOCAL_LINK_ENVELOPE_SIZE);
    if (this.awaited.has(tag)) {
      this.replies.set(tag, {
        type,
        body: Buffer.from(this.rbuf.subarray(LOCAL_LINK_ENVELOPE_SIZE, n)),
        fds,
      });
      return;
    }
    for (const fd of fds) closeQuietly(fd);
    const fence = this.fences.get(tag);
    if (fence) {
      // the fence signalled (a failed submission still signals, as under crosvm)
      this.fences.delete(tag);
      for (const o of fence.objects) o.fences.delete(tag);
      if (fence.polled) this.fenceEvents++;
      return;
    }
    if (type >= VirtioGpuResp.ERR_UNSPEC) {
      // an unfenced command failed: the kernel only logs this, but here the context is as
      // good as lost (a SEND the host refused dropped Wayland bytes), so report it
      this.fail(new Error(`tswl-host refused a command (${respName(type)})`));
    }
  }

  private scheduleDelivery(): void {
    if (this.deliveryScheduled) return;
    this.deliveryScheduled = true;
    setImmediate(() => {
      this.deliveryScheduled = false;
      this.deliverFences();
    });
  }

  private deliverFences(): void {
    if (this.delivering) return;
    this.delivering = true;
    try {
      while (this.fenceEvents > 0 && !this.closed) {
        this.fenceEvents--;
        this.onFence?.();
      }
    } finally {
      this.delivering = false;
    }
  }

  private check(): void {
    if (this.failed) throw this.failed;
    if (this.closed) throw virtGpuError('EBADF', 'the device is closed');
  }

  private fail(error: Error): void {
    if (this.failed || this.closed) return;
    this.failed = error;
    this.poller.update(0);
    const handler = this.onError;
    setImmediate(() => handler?.(error));
  }
}

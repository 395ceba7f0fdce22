// VirtGpu on a real virtio-gpu DRM device (/dev/dri/renderD*), through ioctls in the addon: what
// tswl-proxy --virtio-gpu uses inside a VM. The kernel does what local.ts does by hand: it picks
// the context and resource ids, places host-visible blobs, and signals fences as DRM events.

import { closeSync, openSync, readdirSync } from 'node:fs';
import * as native from '../native/index.js';
import { CAPSET_CROSS_DOMAIN } from './protocol.js';
import {
  CONTEXT_SET_PARAM_SIZE,
  ContextParam,
  CreateBlob,
  DRM_CLOEXEC,
  DRM_EVENT_SIZE,
  DRM_RDWR,
  DRM_VERSION_SIZE,
  DrmVersion,
  EXECBUF_RING_IDX,
  Execbuffer,
  Ioctl,
  VIRTGPU_CONTEXT_INIT_SIZE,
  VIRTGPU_CREATE_BLOB_SIZE,
  VIRTGPU_EVENT_FENCE_SIGNALED,
  VIRTGPU_EXECBUFFER_SIZE,
  VIRTGPU_GET_CAPS_SIZE,
  VIRTGPU_WAIT_NOWAIT,
} from './drm-uapi.js';
import type { BlobHandle, ExecbufferOptions, ResourceInfo, VirtGpu } from './virtgpu.js';
import { VirtGpuParam, pageAlign, virtGpuError } from './virtgpu.js';

/** The VMM options that give a guest what cross-domain needs. */
const VMM_HINT =
  'start the VM with crosvm --gpu context-types=cross-domain, or with QEMU >= 11.1 ' +
  'vhost-user-test-device-pci (virtio-id=16) served by tswl-host --vhost-user';

/** The DRM driver name of a DRM device fd (DRM_IOCTL_VERSION). */
export function drmDriverName(fd: number): string {
  const v = Buffer.alloc(DRM_VERSION_SIZE);
  native.drmIoctl(fd, Ioctl.VERSION, v); // lengths first
  const nameLen = Math.min(Number(v.readBigUInt64LE(DrmVersion.NAME_LEN)), 256);
  const name = Buffer.alloc(Math.max(nameLen, 1));
  const q = Buffer.alloc(DRM_VERSION_SIZE);
  q.writeBigUInt64LE(BigInt(nameLen), DrmVersion.NAME_LEN);
  native.drmIoctl(fd, Ioctl.VERSION, q, [[DrmVersion.NAME, name]]);
  return name.subarray(0, nameLen).toString('latin1').replace(/\0.*$/, '');
}

/**
 * The render node of the first virtio-gpu device (/dev/dri/renderD128 …), found by DRM driver
 * name. Throws with a message saying what is missing.
 */
export function discoverVirtGpu(dir = '/dev/dri'): string {
  let names: string[];
  try {
    names = readdirSync(dir).filter((n) => /^renderD\d+$/.test(n));
  } catch {
    throw new Error(
      `no ${dir}: the guest has no DRM device (load the virtio-gpu module, or ${VMM_HINT})`,
    );
  }
  names.sort((a, b) => Number(a.slice(7)) - Number(b.slice(7)));
  const seen: string[] = [];
  for (const n of names) {
    const path = `${dir}/${n}`;
    let fd = -1;
    try {
      fd = openSync(path, 'r+');
      const driver = drmDriverName(fd);
      if (driver === 'virtio_gpu') return path;
      seen.push(`${n} (${driver})`);
    } catch (e) {
      seen.push(`${n} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
    } finally {
      if (fd >= 0) closeSync(fd);
    }
  }
  throw new Error(
    `no virtio-gpu render node in ${dir}` +
      (seen.length ? `; found ${seen.join(', ')}` : '') +
      ` (load the virtio-gpu module, or ${VMM_HINT})`,
  );
}

export class DrmVirtGpu implements VirtGpu {
  onFence: (() => void) | null = null;
  onError: ((error: Error) => void) | null = null;
  /** The kernel blocks EXECBUFFER instead of queueing: nothing is ever pending here. */
  readonly queuedBytes = 0;
  onDrain: (() => void) | null = null;
  private poller: native.Poller | null = null;
  private readonly maps = new Map<number, Buffer>();
  private readonly events = Buffer.alloc(1024);
  private closed = false;

  private constructor(
    readonly fd: number,
    readonly path: string,
  ) {}

  /**
   * Opens the DRM device at `path` and checks that it can carry cross-domain: the virtio_gpu
   * driver, 3D features (needed for CONTEXT_INIT), context-init, resource blobs, a host-visible
   * region and capset 5. The error names what is missing and the VMM option that provides it.
   */
  static open(path: string): DrmVirtGpu {
    const fd = openSync(path, 'r+');
    const gpu = new DrmVirtGpu(fd, path);
    try {
      let driver: string;
      try {
        driver = drmDriverName(fd);
      } catch (e) {
        throw new Error(`${path} is not a DRM device (${(e as Error).message})`);
      }
      if (driver !== 'virtio_gpu') {
        throw new Error(`${path} is a ${driver} device, not virtio-gpu`);
      }
      gpu.checkCrossDomain();
    } catch (e) {
      closeSync(fd);
      throw e;
    }
    return gpu;
  }

  private checkCrossDomain(): void {
    const param = (p: number): number => {
      try {
        return this.getParam(p);
      } catch {
        return 0; // an older kernel that does not know the parameter
      }
    };
    const missing: string[] = [];
    if (!param(VirtGpuParam.FEATURES_3D)) missing.push('3D features (VIRTIO_GPU_F_VIRGL)');
    if (!param(VirtGpuParam.CONTEXT_INIT)) missing.push('context-init');
    if (!param(VirtGpuParam.RESOURCE_BLOB)) missing.push('resource-blob');
    if (!param(VirtGpuParam.HOST_VISIBLE)) missing.push('host-visible memory');
    if (!(param(VirtGpuParam.SUPPORTED_CAPSET_IDS) & (1 << CAPSET_CROSS_DOMAIN))) {
      missing.push('the cross-domain capset (5)');
    }
    if (missing.length > 0) {
      throw new Error(
        `the virtio-gpu device ${this.path} lacks ${missing.join(', ')}, which cross-domain needs: ${VMM_HINT}`,
      );
    }
  }

  getParam(param: number): number {
    const arg = Buffer.alloc(16);
    const value = Buffer.alloc(4);
    arg.writeBigUInt64LE(BigInt(param), 0);
    native.drmIoctl(this.fd, Ioctl.VIRTGPU_GETPARAM, arg, [[8, value]]);
    return value.readInt32LE(0);
  }

  getCaps(capsetId: number, version: number, size: number): Buffer {
    const arg = Buffer.alloc(VIRTGPU_GET_CAPS_SIZE);
    const out = Buffer.alloc(size);
    arg.writeUInt32LE(capsetId, 0);
    arg.writeUInt32LE(version, 4);
    arg.writeUInt32LE(size, 16);
    native.drmIoctl(this.fd, Ioctl.VIRTGPU_GET_CAPS, arg, [[8, out]]);
    return out;
  }

  contextInit(capsetId: number, numRings: number, pollRingsMask: number): void {
    const params = Buffer.alloc(3 * CONTEXT_SET_PARAM_SIZE);
    const set = (i: number, p: number, v: number): void => {
      params.writeBigUInt64LE(BigInt(p), i * CONTEXT_SET_PARAM_SIZE);
      params.writeBigUInt64LE(BigInt(v), i * CONTEXT_SET_PARAM_SIZE + 8);
    };
    set(0, ContextParam.CAPSET_ID, capsetId);
    set(1, ContextParam.NUM_RINGS, numRings);
    set(2, ContextParam.POLL_RINGS_MASK, pollRingsMask);
    const arg = Buffer.alloc(VIRTGPU_CONTEXT_INIT_SIZE);
    arg.writeUInt32LE(3, 0);
    native.drmIoctl(this.fd, Ioctl.VIRTGPU_CONTEXT_INIT, arg, [[8, params]]);
    if (pollRingsMask) this.startEvents();
  }

  createBlob(blobMem: number, blobFlags: number, size: number, blobId: number): BlobHandle {
    const arg = Buffer.alloc(VIRTGPU_CREATE_BLOB_SIZE);
    arg.writeUInt32LE(blobMem, CreateBlob.BLOB_MEM);
    arg.writeUInt32LE(blobFlags, CreateBlob.BLOB_FLAGS);
    arg.writeBigUInt64LE(BigInt(pageAlign(size)), CreateBlob.SIZE);
    arg.writeBigUInt64LE(BigInt(blobId), CreateBlob.BLOB_ID);
    native.drmIoctl(this.fd, Ioctl.VIRTGPU_RESOURCE_CREATE_BLOB, arg);
    return {
      handle: arg.readUInt32LE(CreateBlob.BO_HANDLE),
      resId: arg.readUInt32LE(CreateBlob.RES_HANDLE),
    };
  }

  map(handle: number): Buffer {
    const cached = this.maps.get(handle);
    if (cached) return cached;
    const size = this.resourceInfo(handle).size;
    const arg = Buffer.alloc(16);
    arg.writeUInt32LE(handle, 8);
    native.drmIoctl(this.fd, Ioctl.VIRTGPU_MAP, arg);
    const offset = Number(arg.readBigUInt64LE(0));
    const m = native.mmap(this.fd, offset, pageAlign(size), true);
    this.maps.set(handle, m);
    return m;
  }

  unmap(handle: number): void {
    const m = this.maps.get(handle);
    if (!m) return;
    this.maps.delete(handle);
    native.munmap(m);
  }

  exportFd(handle: number): number {
    const arg = Buffer.alloc(12);
    arg.writeUInt32LE(handle, 0);
    arg.writeUInt32LE(DRM_CLOEXEC | DRM_RDWR, 4);
    arg.writeInt32LE(-1, 8);
    native.drmIoctl(this.fd, Ioctl.PRIME_HANDLE_TO_FD, arg);
    return arg.readInt32LE(8);
  }

  importFd(fd: number): number {
    const arg = Buffer.alloc(12);
    arg.writeInt32LE(fd, 8);
    native.drmIoctl(this.fd, Ioctl.PRIME_FD_TO_HANDLE, arg);
    return arg.readUInt32LE(0);
  }

  resourceInfo(handle: number): ResourceInfo {
    const arg = Buffer.alloc(16);
    arg.writeUInt32LE(handle, 0);
    native.drmIoctl(this.fd, Ioctl.VIRTGPU_RESOURCE_INFO, arg);
    return { resId: arg.readUInt32LE(4), size: arg.readUInt32LE(8), blobMem: arg.readUInt32LE(12) };
  }

  closeHandle(handle: number): void {
    const arg = Buffer.alloc(8);
    arg.writeUInt32LE(handle, 0);
    native.drmIoctl(this.fd, Ioctl.GEM_CLOSE, arg);
  }

  execbuffer(commands: Uint8Array, options: ExecbufferOptions = {}): void {
    const arg = Buffer.alloc(VIRTGPU_EXECBUFFER_SIZE);
    const pointers: [number, Uint8Array][] = [[Execbuffer.COMMAND, commands]];
    let flags = 0;
    if (options.ringIdx !== undefined) {
      flags |= EXECBUF_RING_IDX;
      arg.writeUInt32LE(options.ringIdx, Execbuffer.RING_IDX);
    }
    const bos = options.boHandles ?? [];
    if (bos.length > 0) {
      const b = Buffer.alloc(4 * bos.length);
      bos.forEach((h, i) => b.writeUInt32LE(h, 4 * i));
      pointers.push([Execbuffer.BO_HANDLES, b]);
      arg.writeUInt32LE(bos.length, Execbuffer.NUM_BO_HANDLES);
    }
    arg.writeUInt32LE(flags, Execbuffer.FLAGS);
    arg.writeUInt32LE(commands.length, Execbuffer.SIZE);
    arg.writeInt32LE(-1, Execbuffer.FENCE_FD);
    native.drmIoctl(this.fd, Ioctl.VIRTGPU_EXECBUFFER, arg, pointers);
  }

  wait(handle: number, noWait = false): boolean {
    const arg = Buffer.alloc(8);
    arg.writeUInt32LE(handle, 0);
    arg.writeUInt32LE(noWait ? VIRTGPU_WAIT_NOWAIT : 0, 4);
    try {
      native.drmIoctl(this.fd, Ioctl.VIRTGPU_WAIT, arg);
      return true;
    } catch (e) {
      if (noWait && (e as NodeJS.ErrnoException).code === 'EBUSY') return false;
      throw e;
    }
  }

  /** Fence events: readable DRM fd, whole 8-byte drm_events. */
  private startEvents(): void {
    if (this.poller) return;
    this.poller = new native.Poller(this.fd, (_events, errorCode) => {
      if (errorCode) return this.fail(virtGpuError(errorCode, 'polling the DRM device failed'));
      for (;;) {
        let n: number;
        try {
          n = native.readFd(this.fd, this.events, 0, this.events.length);
        } catch (e) {
          return this.fail(e as Error);
        }
        if (n <= 0) return;
        for (let at = 0; at + DRM_EVENT_SIZE <= n;) {
          const type = this.events.readUInt32LE(at);
          const length = Math.max(this.events.readUInt32LE(at + 4), DRM_EVENT_SIZE);
          if (type === VIRTGPU_EVENT_FENCE_SIGNALED) this.onFence?.();
          at += length;
          if (this.closed) return;
        }
      }
    });
    this.poller.update(native.READABLE);
  }

  private fail(error: Error): void {
    this.poller?.close();
    this.poller = null;
    this.onError?.(error);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.poller?.close();
    this.poller = null;
    for (const m of this.maps.values()) native.munmap(m);
    this.maps.clear();
    closeSync(this.fd);
  }
}

// The guest's view of a virtio-gpu device, shaped like the Linux DRM uapi (virtgpu_drm.h): one
// instance is one open DRM file, holding at most one context. Implementations: the local link to
// tswl-host (local.ts) and, later, DRM ioctls through the addon.

/** GETPARAM ids (VIRTGPU_PARAM_*). */
export const VirtGpuParam = {
  FEATURES_3D: 1,
  CAPSET_QUERY_FIX: 2,
  RESOURCE_BLOB: 3,
  HOST_VISIBLE: 4,
  CROSS_DEVICE: 5,
  CONTEXT_INIT: 6,
  SUPPORTED_CAPSET_IDS: 7,
} as const;

/** drm_virtgpu_resource_create_blob's answer. */
export interface BlobHandle {
  /** The GEM handle, valid in this file until closeHandle. */
  readonly handle: number;
  /** The virtio-gpu resource id the host knows it by (what cross-domain identifiers carry). */
  readonly resId: number;
}

/** drm_virtgpu_resource_info's answer. */
export interface ResourceInfo {
  readonly resId: number;
  readonly size: number;
  readonly blobMem: number;
}

export interface ExecbufferOptions {
  /** VIRTGPU_EXECBUF_RING_IDX: the submission is fenced on this ring's timeline. */
  readonly ringIdx?: number;
  /** GEM handles the fence is attached to, so that wait(handle) waits for it. */
  readonly boHandles?: readonly number[];
}

export interface VirtGpu {
  /** VIRTGPU_GETPARAM; throws (EINVAL) for a parameter the device does not know. */
  getParam(param: number): number;
  /** VIRTGPU_GET_CAPS: the first `size` bytes of capset `capsetId` at `version`. */
  getCaps(capsetId: number, version: number, size: number): Buffer;
  /**
   * VIRTGPU_CONTEXT_INIT with CAPSET_ID, NUM_RINGS and POLL_RINGS_MASK. Must come before any
   * other context-creating call (EEXIST otherwise); fences of rings in the poll mask are
   * reported through `onFence`.
   */
  contextInit(capsetId: number, numRings: number, pollRingsMask: number): void;
  /** VIRTGPU_RESOURCE_CREATE_BLOB. HOST3D sizes are rounded up to a page. */
  createBlob(blobMem: number, blobFlags: number, size: number, blobId: number): BlobHandle;
  /**
   * VIRTGPU_MAP + mmap of a MAPPABLE blob (MAP_SHARED, read/write), cached per handle; the
   * mapping stays valid after closeHandle, until unmap().
   */
  map(handle: number): Buffer;
  /** Drops a mapping made by map(). */
  unmap(handle: number): void;
  /** PRIME_HANDLE_TO_FD (CLOEXEC|RDWR): a new fd the caller owns; the object outlives the handle. */
  exportFd(handle: number): number;
  /**
   * PRIME_FD_TO_HANDLE: the handle of an object exported by this device. As in the kernel, an
   * object that already has a handle in this file gets that same handle back. Throws for fds
   * that are not this device's.
   */
  importFd(fd: number): number;
  /** VIRTGPU_RESOURCE_INFO. */
  resourceInfo(handle: number): ResourceInfo;
  /** GEM_CLOSE. */
  closeHandle(handle: number): void;
  /** VIRTGPU_EXECBUFFER: queues `commands` for the context (it does not wait for the host). */
  execbuffer(commands: Uint8Array, options?: ExecbufferOptions): void;
  /**
   * VIRTGPU_WAIT: blocks until every fence attached to `handle` has signalled (at most 15 s,
   * then throws EBUSY); with noWait returns false instead of blocking when one is pending.
   */
  wait(handle: number, noWait?: boolean): boolean;
  /**
   * Called once per VIRTGPU_EVENT_FENCE_SIGNALED, i.e. per signalled fence of a ring in the poll
   * mask, from the event loop (never from inside another call on this device).
   */
  onFence: (() => void) | null;
  /** The device failed for good (the link dropped); no more fences will come. */
  onError: ((error: Error) => void) | null;
  /**
   * Command bytes submitted but not yet taken by the device. A kernel device blocks the
   * submitting ioctl instead and reports 0; the local link queues while tswl-host is busy.
   */
  readonly queuedBytes: number;
  /** Called when queued commands have all gone to the device. */
  onDrain: (() => void) | null;
  /** Closes the file: the context and every resource of it go away. */
  close(): void;
}

export function pageAlign(n: number): number {
  return Math.ceil(n / 4096) * 4096;
}

/** An errno-style error, as a failing ioctl gives. */
export function virtGpuError(code: string, message: string): Error {
  const e = new Error(`virtio-gpu: ${message}`) as NodeJS.ErrnoException;
  e.code = code;
  return e;
}

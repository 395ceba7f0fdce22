// The Linux DRM uapi that DrmVirtGpu uses (drm.h, virtgpu_drm.h): ioctl numbers and struct
// layouts on 64-bit Linux, offsets from each struct's start. test/drm-uapi.test.ts checks them
// against the kernel headers with a C program when the headers are installed.

const IOC_WRITE = 1;
const IOC_READ = 2;
const DRM_TYPE = 0x64; // 'd'
const DRM_COMMAND_BASE = 0x40;

function ioc(dir: number, nr: number, size: number): number {
  return ((dir << 30) | (size << 16) | (DRM_TYPE << 8) | nr) >>> 0;
}
const iowr = (nr: number, size: number): number => ioc(IOC_READ | IOC_WRITE, nr, size);
const iow = (nr: number, size: number): number => ioc(IOC_WRITE, nr, size);

/** struct drm_version: @0 major, @4 minor, @8 patchlevel, @16 name_len, @24 name, @32 date_len, @40 date, @48 desc_len, @56 desc. */
export const DRM_VERSION_SIZE = 64;
export const DrmVersion = {
  NAME_LEN: 16,
  NAME: 24,
  DATE_LEN: 32,
  DATE: 40,
  DESC_LEN: 48,
  DESC: 56,
};
/** drm_gem_close {u32 handle, u32 pad}. */
export const GEM_CLOSE_SIZE = 8;
/** drm_prime_handle {u32 handle, u32 flags, s32 fd}. */
export const PRIME_HANDLE_SIZE = 12;
export const DRM_CLOEXEC = 0o2000000;
export const DRM_RDWR = 2;

/** drm_virtgpu_map {u64 offset (out), u32 handle, u32 pad}. */
export const VIRTGPU_MAP_SIZE = 16;
/** drm_virtgpu_execbuffer, 5.16 layout: @0 flags, @4 size, @8 command, @16 bo_handles, @24 num_bo_handles, @28 fence_fd, @32 ring_idx, @36 pad. */
export const VIRTGPU_EXECBUFFER_SIZE = 40;
export const Execbuffer = {
  FLAGS: 0,
  SIZE: 4,
  COMMAND: 8,
  BO_HANDLES: 16,
  NUM_BO_HANDLES: 24,
  FENCE_FD: 28,
  RING_IDX: 32,
} as const;
export const EXECBUF_RING_IDX = 0x04;
/** drm_virtgpu_getparam {u64 param, u64 value (a pointer to an int the kernel writes)}. */
export const VIRTGPU_GETPARAM_SIZE = 16;
/** drm_virtgpu_resource_info {u32 bo_handle, u32 res_handle, u32 size, u32 blob_mem}. */
export const VIRTGPU_RESOURCE_INFO_SIZE = 16;
/** drm_virtgpu_3d_wait {u32 handle, u32 flags}. */
export const VIRTGPU_WAIT_SIZE = 8;
export const VIRTGPU_WAIT_NOWAIT = 1;
/** drm_virtgpu_get_caps {u32 cap_set_id, u32 cap_set_ver, u64 addr, u32 size, u32 pad}. */
export const VIRTGPU_GET_CAPS_SIZE = 24;
/** drm_virtgpu_resource_create_blob: @0 blob_mem, @4 blob_flags, @8 bo_handle, @12 res_handle, @16 u64 size, @24 pad, @28 cmd_size, @32 cmd, @40 blob_id. */
export const VIRTGPU_CREATE_BLOB_SIZE = 48;
export const CreateBlob = {
  BLOB_MEM: 0,
  BLOB_FLAGS: 4,
  BO_HANDLE: 8,
  RES_HANDLE: 12,
  SIZE: 16,
  CMD_SIZE: 28,
  CMD: 32,
  BLOB_ID: 40,
} as const;
/** drm_virtgpu_context_init {u32 num_params, u32 pad, u64 ctx_set_params}; params {u64 param, u64 value}. */
export const VIRTGPU_CONTEXT_INIT_SIZE = 16;
export const CONTEXT_SET_PARAM_SIZE = 16;
export const ContextParam = { CAPSET_ID: 1, NUM_RINGS: 2, POLL_RINGS_MASK: 3 } as const;
/** drm_event {u32 type, u32 length}; the fence event has no payload. */
export const DRM_EVENT_SIZE = 8;
export const VIRTGPU_EVENT_FENCE_SIGNALED = 0x90000000;

export const Ioctl = {
  VERSION: iowr(0x00, DRM_VERSION_SIZE),
  GEM_CLOSE: iow(0x09, GEM_CLOSE_SIZE),
  PRIME_HANDLE_TO_FD: iowr(0x2d, PRIME_HANDLE_SIZE),
  PRIME_FD_TO_HANDLE: iowr(0x2e, PRIME_HANDLE_SIZE),
  VIRTGPU_MAP: iowr(DRM_COMMAND_BASE + 0x01, VIRTGPU_MAP_SIZE),
  VIRTGPU_EXECBUFFER: iowr(DRM_COMMAND_BASE + 0x02, VIRTGPU_EXECBUFFER_SIZE),
  VIRTGPU_GETPARAM: iowr(DRM_COMMAND_BASE + 0x03, VIRTGPU_GETPARAM_SIZE),
  VIRTGPU_RESOURCE_INFO: iowr(DRM_COMMAND_BASE + 0x05, VIRTGPU_RESOURCE_INFO_SIZE),
  VIRTGPU_WAIT: iowr(DRM_COMMAND_BASE + 0x08, VIRTGPU_WAIT_SIZE),
  VIRTGPU_GET_CAPS: iowr(DRM_COMMAND_BASE + 0x09, VIRTGPU_GET_CAPS_SIZE),
  VIRTGPU_RESOURCE_CREATE_BLOB: iowr(DRM_COMMAND_BASE + 0x0a, VIRTGPU_CREATE_BLOB_SIZE),
  VIRTGPU_CONTEXT_INIT: iowr(DRM_COMMAND_BASE + 0x0b, VIRTGPU_CONTEXT_INIT_SIZE),
} as const;

// Wire facts of the vhost-user protocol (QEMU docs/interop/vhost-user.rst) as tswl-host's backend
// speaks it: message numbers, flags, feature bits and payload layouts. All integers are
// little-endian. Every message is a 12-byte header {u32 request, u32 flags, u32 size} followed by
// `size` payload bytes; fds ride on the header as SCM_RIGHTS.

export const HEADER_SIZE = 12;
/** Largest payload either side sends us (GET_SHMEM_CONFIG's answer, 2056 bytes, is ours). */
export const MAX_PAYLOAD = 4096;

/** Front-end → back-end requests. */
export const Req = {
  GET_FEATURES: 1,
  SET_FEATURES: 2,
  SET_OWNER: 3,
  RESET_OWNER: 4,
  SET_MEM_TABLE: 5,
  SET_LOG_BASE: 6,
  SET_LOG_FD: 7,
  SET_VRING_NUM: 8,
  SET_VRING_ADDR: 9,
  SET_VRING_BASE: 10,
  GET_VRING_BASE: 11,
  SET_VRING_KICK: 12,
  SET_VRING_CALL: 13,
  SET_VRING_ERR: 14,
  GET_PROTOCOL_FEATURES: 15,
  SET_PROTOCOL_FEATURES: 16,
  GET_QUEUE_NUM: 17,
  SET_VRING_ENABLE: 18,
  SEND_RARP: 19,
  NET_SET_MTU: 20,
  SET_BACKEND_REQ_FD: 21,
  IOTLB_MSG: 22,
  SET_VRING_ENDIAN: 23,
  GET_CONFIG: 24,
  SET_CONFIG: 25,
  GET_INFLIGHT_FD: 31,
  SET_INFLIGHT_FD: 32,
  GPU_SET_SOCKET: 33,
  RESET_DEVICE: 34,
  GET_MAX_MEM_SLOTS: 36,
  ADD_MEM_REG: 37,
  REM_MEM_REG: 38,
  SET_STATUS: 39,
  GET_STATUS: 40,
  GET_SHMEM_CONFIG: 44,
} as const;

/** Back-end → front-end requests, on the channel SET_BACKEND_REQ_FD gave us. */
export const BackendReq = {
  SHMEM_MAP: 9,
  SHMEM_UNMAP: 10,
} as const;

export const Flag = {
  VERSION: 0x1,
  VERSION_MASK: 0x3,
  REPLY: 0x4,
  NEED_REPLY: 0x8,
} as const;

/** Transport feature bits (virtio and vhost-user), as bit numbers. */
export const F_PROTOCOL_FEATURES = 30;
export const F_VERSION_1 = 32;

/** Protocol feature bits. */
export const ProtocolFeature = {
  MQ: 0,
  REPLY_ACK: 3,
  BACKEND_REQ: 5,
  CONFIG: 9,
  BACKEND_SEND_FD: 10,
  CONFIGURE_MEM_SLOTS: 15,
  STATUS: 16,
  /** GET_SHMEM_CONFIG, SHMEM_MAP, SHMEM_UNMAP (bit 22 in the final spec; not 20 nor 21). */
  SHMEM: 22,
} as const;

/** The protocol features the backend offers (bits above; never GPA_ADDRESSES, bit 21). */
export const OFFERED_PROTOCOL_FEATURES = [
  ProtocolFeature.MQ,
  ProtocolFeature.REPLY_ACK,
  ProtocolFeature.BACKEND_REQ,
  ProtocolFeature.CONFIG,
  ProtocolFeature.BACKEND_SEND_FD,
  ProtocolFeature.CONFIGURE_MEM_SLOTS,
  ProtocolFeature.STATUS,
  ProtocolFeature.SHMEM,
].reduce((a, bit) => a | (1n << BigInt(bit)), 0n);

/** Memory regions the backend accepts with ADD_MEM_REG (answer to GET_MAX_MEM_SLOTS). */
export const MAX_MEM_SLOTS = 32;
/** SET_MEM_TABLE's fixed region count. */
export const MEM_TABLE_MAX_REGIONS = 8;

/** {u32 index, u32 num}: SET_VRING_NUM, SET_VRING_BASE, SET_VRING_ENABLE, GET_VRING_BASE. */
export const VRING_STATE_SIZE = 8;
/** {u32 index, u32 flags, u64 desc, u64 used, u64 avail, u64 log}: front-end user addresses. */
export const VRING_ADDR_SIZE = 40;
export const VringAddr = { INDEX: 0, FLAGS: 4, DESC: 8, USED: 16, AVAIL: 24, LOG: 32 } as const;
/** SET_VRING_KICK / CALL / ERR u64: bits 0-7 the queue, bit 8 set when no fd came. */
export const VRING_INDEX_MASK = 0xff;
export const VRING_NOFD = 0x100;

/** A memory region: {u64 guest_phys_addr, u64 memory_size, u64 userspace_addr, u64 mmap_offset}. */
export const MEM_REGION_SIZE = 32;
/** ADD_MEM_REG / REM_MEM_REG: u64 padding, then one region. */
export const SINGLE_MEM_REGION_SIZE = 8 + MEM_REGION_SIZE;
/** SET_MEM_TABLE: u32 nregions, u32 padding, then MEM_TABLE_MAX_REGIONS regions. */
export const MEM_TABLE_SIZE = 8 + MEM_TABLE_MAX_REGIONS * MEM_REGION_SIZE;

/** GET_CONFIG / SET_CONFIG: {u32 offset, u32 size, u32 flags} then `size` bytes of config. */
export const CONFIG_HDR_SIZE = 12;
export const MAX_CONFIG_SIZE = 256;

/** GET_SHMEM_CONFIG's answer: {u32 nregions, u32 padding, u64 memory_sizes[256]}. */
export const SHMEM_CONFIG_MAX_REGIONS = 256;
export const SHMEM_CONFIG_SIZE = 8 + 8 * SHMEM_CONFIG_MAX_REGIONS;

/**
 * SHMEM_MAP / SHMEM_UNMAP: {u8 shmid, u8 pad[7], u64 fd_offset, u64 shm_offset, u64 len,
 * u64 flags}; flags bit 0 maps read/write. MAP carries the fd.
 */
export const SHMEM_MAP_SIZE = 40;
export const ShmemMap = { SHMID: 0, FD_OFFSET: 8, SHM_OFFSET: 16, LEN: 24, FLAGS: 32 } as const;
export const SHMEM_MAP_RW = 1n;

/** Device status bits (virtio): the driver reset the device when it writes 0. */
export const STATUS_DRIVER_OK = 4;

export function requestName(req: number): string {
  for (const [name, value] of Object.entries(Req)) if (value === req) return name;
  return `request ${req}`;
}

// ---- split virtqueue layout (virtio 1.x, 2.7) -----------------------------------------------

/** vring_desc: @0 u64 addr, @8 u32 len, @12 u16 flags, @14 u16 next. */
export const DESC_SIZE = 16;
export const DescFlag = { NEXT: 1, WRITE: 2, INDIRECT: 4 } as const;
/** vring_avail: @0 u16 flags, @2 u16 idx, @4 u16 ring[num], then u16 used_event. */
export const AVAIL_NO_INTERRUPT = 1;
/** vring_used: @0 u16 flags, @2 u16 idx, @4 {u32 id, u32 len}[num], then u16 avail_event. */
export const USED_ELEM_SIZE = 8;
/** The largest queue the backend accepts (the virtio maximum). */
export const MAX_QUEUE_SIZE = 32768;

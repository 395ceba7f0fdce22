// Wire facts shared by the guest (tswl-proxy) and the host device (tswl-host): virtio-gpu control
// commands in their virtio-spec layouts, the cross-domain context protocol as crosvm speaks it,
// and the envelope of the local link that carries them between two processes on one machine.
// All integers are little-endian; offsets are from the start of each struct.

/** virtio_gpu_ctrl_hdr: @0 type, @4 flags, @8 u64 fence_id, @16 ctx_id, @20 u8 ring_idx, @21 pad[3]. */
export const CTRL_HDR_SIZE = 24;

export const VirtioGpuCmd = {
  RESOURCE_UNREF: 0x0102,
  GET_CAPSET_INFO: 0x0108,
  GET_CAPSET: 0x0109,
  RESOURCE_CREATE_BLOB: 0x010c,
  CTX_CREATE: 0x0200,
  CTX_DESTROY: 0x0201,
  CTX_ATTACH_RESOURCE: 0x0202,
  CTX_DETACH_RESOURCE: 0x0203,
  SUBMIT_3D: 0x0207,
  RESOURCE_MAP_BLOB: 0x0208,
  RESOURCE_UNMAP_BLOB: 0x0209,
} as const;

export const VirtioGpuResp = {
  OK_NODATA: 0x1100,
  OK_CAPSET_INFO: 0x1102,
  OK_CAPSET: 0x1103,
  OK_MAP_INFO: 0x1106,
  ERR_UNSPEC: 0x1200,
  ERR_OUT_OF_MEMORY: 0x1201,
  ERR_INVALID_SCANOUT_ID: 0x1202,
  ERR_INVALID_RESOURCE_ID: 0x1203,
  ERR_INVALID_CONTEXT_ID: 0x1204,
  ERR_INVALID_PARAMETER: 0x1205,
} as const;

export const VirtioGpuFlag = {
  FENCE: 1,
  INFO_RING_IDX: 2,
} as const;

/** Device feature bits a cross-domain device offers (virtio-gpu feature numbers). */
export const VirtioGpuFeature = {
  VIRGL: 0,
  EDID: 1,
  RESOURCE_UUID: 2,
  RESOURCE_BLOB: 3,
  CONTEXT_INIT: 4,
} as const;

export const BlobMem = { GUEST: 1, HOST3D: 2, HOST3D_GUEST: 3 } as const;
export const BlobFlag = { USE_MAPPABLE: 1, USE_SHAREABLE: 2, USE_CROSS_DEVICE: 4 } as const;

/** Host-visible shared memory region id. */
export const SHM_ID_HOST_VISIBLE = 1;

export const CAPSET_CROSS_DOMAIN = 5;
/** Capset payload: u32 version, u32 supported_channels, u32 supports_dmabuf, u32 supports_external_gpu_memory. */
export const CROSS_DOMAIN_CAPS_SIZE = 16;

export const CrossDomainCmd = {
  INIT: 1,
  GET_IMAGE_REQUIREMENTS: 2,
  POLL: 3,
  SEND: 4,
  RECEIVE: 5,
  READ: 6,
  WRITE: 7,
} as const;

/** CrossDomainHeader: @0 u8 cmd, @1 u8 ring_idx (unused by hosts), @2 u16 cmd_size, @4 u32 pad. */
export const CROSS_DOMAIN_HEADER_SIZE = 8;
export const CROSS_DOMAIN_CHANNEL_TYPE_WAYLAND = 1;
export const CrossDomainId = {
  VIRTGPU_BLOB: 1,
  VIRTGPU_SYNC: 2,
  READ_PIPE: 3,
  WRITE_PIPE: 4,
} as const;
export const CROSS_DOMAIN_QUERY_RING = 0;
export const CROSS_DOMAIN_CHANNEL_RING = 1;
export const CROSS_DOMAIN_PIPE_READ_START = 0x80000000;
export const CROSS_DOMAIN_MAX_IDENTIFIERS = 28;
/** CrossDomainSendReceive: fixed part before the opaque Wayland bytes. */
export const CROSS_DOMAIN_SEND_RECEIVE_SIZE = 352;
/** The host's recvmsg buffer, and so the most Wayland bytes one SEND or RECEIVE carries. */
export const CROSS_DOMAIN_MAX_SEND_RECV_SIZE = 4096 - CROSS_DOMAIN_SEND_RECEIVE_SIZE;
/** CrossDomainReadWrite: @8 identifier, @12 hang_up, @16 opaque_data_size, @20 pad, data from @24. */
export const CROSS_DOMAIN_READ_WRITE_SIZE = 24;
/** CrossDomainImageRequirements reply in the query ring. */
export const CROSS_DOMAIN_IMAGE_REQUIREMENTS_SIZE = 64;

/**
 * The local link (tswl-host --listen-local PATH): a Unix SOCK_SEQPACKET connection per guest
 * device instance, standing in for a VM's virtqueue. Each packet is one envelope:
 *   @0 u32 tag (chosen by the guest, echoed in the reply), @4 u32 flags (guest→host: bit 0,
 *   LOCAL_LINK_WANT_REPLY; else 0), @8 a virtio-gpu control command (guest→host) or its
 *   response (host→guest).
 * fds ride on packets as SCM_RIGHTS:
 *   - RESOURCE_CREATE_BLOB with blob_mem GUEST carries exactly one memfd, the blob's backing;
 *     its mem entries address that fd (addr = offset into it).
 *   - The OK_MAP_INFO reply to RESOURCE_MAP_BLOB carries the blob's memfd, which the guest mmaps
 *     (what a VMM would map into the host-visible region).
 * A fenced command (FLAG_FENCE) is answered when its fence signals, as a virtqueue returns the
 * descriptor, so replies may come out of order; the tag matches them.
 * The guest never blocks the link: ring-1 POLLs stay pending while other commands are answered.
 * Host rules (tswl-host, no change to the above): a GUEST blob's memfd must be open read-write
 * and hold every mem entry (the host writes the rings through a mapping, guarded: a guest that
 * truncates the file fails its own writes, never the host); fds
 * riding on any other command are closed unused; a packet shorter than the envelope or longer
 * than LOCAL_LINK_MAX_PACKET ends the connection, and so does the guest closing it, which
 * releases everything that guest had. While replies wait for room on the socket, the host reads
 * no further packets from that guest.
 * Guest rules (tswl-proxy's LocalVirtGpu, no change to the above either): it plays the kernel
 * driver, so it picks ctx_id (1, one context per connection) and resource ids (from 1), and
 * places MAPPABLE host blobs at distinct page-aligned offsets of an 8 GiB host-visible region. The
 * device config's num_capsets is not on the link: the guest asks GET_CAPSET_INFO by index from 0
 * until an error response. A fenced command is answered when its fence signals; an unfenced one
 * only when it fails or its envelope asks (LOCAL_LINK_WANT_REPLY; the guest's synchronous calls
 * do), so that the SENDs and WRITEs of the hot path cost no reply each. An error response to an
 * unfenced command (SUBMIT_3D, detach, unref…) is taken as the loss of that guest's context, and
 * the guest drops the connection.
 */
export const LOCAL_LINK_ENVELOPE_SIZE = 8;
/** Envelope flag: answer this command even when it succeeds and is not fenced. */
export const LOCAL_LINK_WANT_REPLY = 1;
/** Largest packet either side accepts (a SUBMIT_3D of one page of commands plus headers). */
export const LOCAL_LINK_MAX_PACKET = 65536;

// ---- Struct layouts (virtio spec 5.7.6; cross-domain as in rutabaga), offsets from each start ----

/** virtio_gpu_ctrl_hdr field offsets. */
export const CtrlHdr = { TYPE: 0, FLAGS: 4, FENCE_ID: 8, CTX_ID: 16, RING_IDX: 20 } as const;
/** GET_CAPSET_INFO: hdr, @24 capset_index, @28 pad. */
export const GET_CAPSET_INFO_SIZE = 32;
/** OK_CAPSET_INFO: hdr, @24 capset_id, @28 capset_max_version, @32 capset_max_size, @36 pad. */
export const RESP_CAPSET_INFO_SIZE = 40;
/** GET_CAPSET: hdr, @24 capset_id, @28 capset_version. OK_CAPSET: hdr, capset data from @24. */
export const GET_CAPSET_SIZE = 32;
/** CTX_CREATE: hdr (ctx_id), @24 nlen, @28 context_init (capset id in bits 0-7), @32 char[64] debug_name. */
export const CTX_CREATE_SIZE = 96;
/** CTX_ATTACH_RESOURCE, CTX_DETACH_RESOURCE, RESOURCE_UNREF, RESOURCE_UNMAP_BLOB: hdr, @24 resource_id, @28 pad. */
export const RESOURCE_CMD_SIZE = 32;
/**
 * RESOURCE_CREATE_BLOB: hdr, @24 resource_id, @28 blob_mem, @32 blob_flags, @36 nr_entries,
 * @40 u64 blob_id, @48 u64 size, then nr_entries × virtio_gpu_mem_entry from @56.
 */
export const RESOURCE_CREATE_BLOB_SIZE = 56;
/** virtio_gpu_mem_entry: @0 u64 addr, @8 length, @12 pad. */
export const MEM_ENTRY_SIZE = 16;
/** SUBMIT_3D: hdr, @24 size, @28 num_in_fences (ignored, as crosvm does), command bytes from @32. */
export const SUBMIT_3D_SIZE = 32;
/** RESOURCE_MAP_BLOB: hdr, @24 resource_id, @28 pad, @32 u64 offset (in the host-visible region). */
export const RESOURCE_MAP_BLOB_SIZE = 40;
/** OK_MAP_INFO: hdr, @24 map_info, @28 pad. */
export const RESP_MAP_INFO_SIZE = 32;
/** map_info cache types (RUTABAGA_MAP_CACHE_*); OK_MAP_INFO carries map_info & 0x0f. */
export const MapCache = { CACHED: 1, UNCACHED: 2, WC: 3 } as const;

/** CrossDomainInit sizes by form: legacy (query ring = channel ring), V1, current (with a uuid). */
export const CrossDomainInitSize = { LEGACY: 16, V1: 20, CURRENT: 36 } as const;
/** CrossDomainGetImageRequirements: @8 width, @12 height, @16 drm_format, @20 flags. */
export const CROSS_DOMAIN_GET_IMAGE_REQUIREMENTS_SIZE = 24;
/** CrossDomainSendReceive field offsets (see CROSS_DOMAIN_SEND_RECEIVE_SIZE). */
export const SendReceive = {
  NUM_IDENTIFIERS: 8,
  OPAQUE_DATA_SIZE: 12,
  IDENTIFIERS: 16,
  IDENTIFIER_TYPES: 128,
  IDENTIFIER_SIZES: 240,
  DATA: 352,
} as const;
/** CrossDomainReadWrite field offsets (see CROSS_DOMAIN_READ_WRITE_SIZE). */
export const ReadWrite = { IDENTIFIER: 8, HANG_UP: 12, OPAQUE_DATA_SIZE: 16, DATA: 24 } as const;
/** CrossDomainImageRequirements (the reply) field offsets. */
export const ImageRequirements = {
  STRIDES: 0,
  OFFSETS: 16,
  MODIFIER: 32,
  SIZE: 40,
  BLOB_ID: 48,
  MAP_INFO: 52,
  MEMORY_IDX: 56,
  PHYSICAL_DEVICE_IDX: 60,
} as const;

// Little-endian words of local-link envelopes, ctrl headers and cross-domain commands, byte by
// byte: Buffer's readUInt32LE and writeUInt32LE check their arguments through a wrapper of Node's
// on every call, and these words are read and written for every packet and command.
export function getU32(bytes: Uint8Array, at: number): number {
  return (bytes[at] | (bytes[at + 1] << 8) | (bytes[at + 2] << 16) | (bytes[at + 3] << 24)) >>> 0;
}

export function setU32(bytes: Uint8Array, at: number, value: number): void {
  bytes[at] = value;
  bytes[at + 1] = value >>> 8;
  bytes[at + 2] = value >>> 16;
  bytes[at + 3] = value >>> 24;
}

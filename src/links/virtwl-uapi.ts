// The legacy virtio_wl guest uapi (ChromiumOS `linux/virtwl.h`, ioctl type 'w'), as tabulated in
// /work/shared/reference/cross-domain.md §3.1 (and §6 of wayland-proxy-virtwl.md). The numbers are
// written out as the table gives them; test/virtwl.test.ts recomputes them from the _IOC formula.
// Note that the direction bits of SEND (_IOR) and RECV (_IOW) are the reverse of the data flow:
// the kernel driver defines them that way, and only these exact numbers are accepted.

/** The ioctl type of every virtio_wl ioctl: 'w'. */
export const VIRTWL_IOCTL_TYPE = 0x77;

/** _IOWR('w', 0, struct virtwl_ioctl_new): on the /dev/wl0 fd, makes a context, memory or pipe vfd. */
export const VIRTWL_IOCTL_NEW = 0xc0307700;
/** _IOR('w', 1, struct virtwl_ioctl_txn): on a context vfd, sends bytes and vfds to the host. */
export const VIRTWL_IOCTL_SEND = 0x80747701;
/** _IOW('w', 2, struct virtwl_ioctl_txn): on a context vfd, takes one message from the host. */
export const VIRTWL_IOCTL_RECV = 0x40747702;
/** _IOR('w', 3, struct virtwl_ioctl_dmabuf_sync): on a dmabuf vfd (unused here). */
export const VIRTWL_IOCTL_DMABUF_SYNC = 0x80047703;

/** `virtwl_ioctl_new.type`. */
export const VirtWlNewType = {
  CTX: 0,
  ALLOC: 1,
  PIPE_READ: 2,
  PIPE_WRITE: 3,
  DMABUF: 4,
  CTX_NAMED: 5,
} as const;

/**
 * struct virtwl_ioctl_new (48 bytes): u32 type @0; s32 fd @4 (out); u32 flags @8 (0);
 * union @12 { u32 size; dmabuf { width, height, format, stride0..2, offset0..2 } (36); char name[32] }.
 */
export const VIRTWL_NEW_SIZE = 48;
export const VIRTWL_NEW_TYPE_OFFSET = 0;
export const VIRTWL_NEW_FD_OFFSET = 4;
export const VIRTWL_NEW_FLAGS_OFFSET = 8;
export const VIRTWL_NEW_SIZE_OFFSET = 12;

/** Most vfds one SEND carries (and one RECV returns): the length of `virtwl_ioctl_txn.fds`. */
export const VIRTWL_SEND_MAX_ALLOCS = 28;
/**
 * struct virtwl_ioctl_txn (116 bytes + data): s32 fds[28] @0 (unused slots −1, the list ends at
 * the first −1); u32 len @112; u8 data[len] @116. For RECV, `len` is set to the capacity and
 * the kernel writes the bytes read into it.
 */
export const VIRTWL_TXN_FDS_OFFSET = 0;
export const VIRTWL_TXN_LEN_OFFSET = 112;
export const VIRTWL_TXN_DATA_OFFSET = 116;
export const VIRTWL_TXN_SIZE = 116;
/** The transaction buffer sommelier uses, one page; hence the data limit below. */
export const VIRTWL_TXN_BUFFER_SIZE = 4096;
/** The most data bytes per SEND or RECV: 4096 − 116. */
export const VIRTWL_MAX_TXN_DATA = VIRTWL_TXN_BUFFER_SIZE - VIRTWL_TXN_SIZE;

/** Where the guest finds the device. */
export const VIRTWL_DEFAULT_DEVICE = '/dev/wl0';

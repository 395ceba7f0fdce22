/**
 * Typed access to the native addon (native/*.cc): unix sockets with fd passing, readiness
 * polling on Node's event loop, and the few calls systemd integration needs. All fds it makes are
 * close-on-exec and all sockets nonblocking.
 *
 * Errors thrown by these functions are Node-style system errors: `.code` is the errno name
 * ('ENOENT'), `.errno` the negated errno (as in Node's own errors), `.syscall` the failing call,
 * `.path` the path when one is involved. Bad arguments throw TypeError or RangeError.
 */
import { readdirSync } from 'node:fs';
import { addon as loadedAddon } from './addon.js';

/** A listening socket and the lock file that guards its path. Close both when done. */
export interface Listener {
  fd: number;
  lockFd: number;
}

/** Readiness of one fd, reported through the callback given to the constructor. */
export interface Poller {
  /** (Re)starts polling for READABLE|WRITABLE (DISCONNECT is always reported); 0 stops. */
  update(events: number): void;
  /**
   * Stops and releases the handle; call it before closing the fd (libuv aborts the process when a
   * watched fd disappears). Idempotent. An idle Poller is also released when collected.
   */
  close(): void;
}

export interface PollerConstructor {
  /**
   * Watches `fd` (one Poller per fd; a second one on the same fd fails with EEXIST once the
   * first is polling). `callback` runs from the event loop with the ready events,
   * or with events 0 and an errno name when polling failed (polling has then stopped). An
   * exception thrown by the callback is an uncaught exception, as with Node's own handles.
   * Callbacks run in the async context of the constructor call, each followed by its ticks and
   * promise jobs. The Poller holds the callback (a `callback` property), so a callback that
   * refers back to its Poller does not keep an idle one alive.
   */
  new (fd: number, callback: (events: number, errorCode: string | null) => void): Poller;
}

interface NativeAddon {
  listenUnix(path: string): Listener;
  listenStream(address: string): number;
  accept(listenFd: number): number;
  connectUnix(path: string): number;
  socketpair(): [number, number];
  sendmsg(
    fd: number,
    buf: Uint8Array,
    start: number,
    end: number,
    fds: readonly number[] | Int32Array,
    fdCount: number,
  ): number;
  recvmsg(fd: number, buf: Uint8Array, start: number, end: number, out: Int32Array): number;
  close(fd: number): void;
  sendDatagram(path: string, data: Uint8Array): void;
  inspectListenSocket(fd: number): string;
  mkfifo(path: string, mode: number): void;
  memfdCreate(name: string, size: number): number;
  mmap(fd: number, offset: number, length: number, writable: boolean): Buffer;
  munmap(buf: Buffer): void;
  mappingCount(): number;
  copyRects(
    dst: Uint8Array,
    dstStride: number,
    src: Uint8Array,
    srcStride: number,
    rects: Int32Array,
    count: number,
    bytesPerPixel: number,
    width: number,
    height: number,
  ): number;
  copiedBytes(): number;
  releaseMemory(): void;
  pipe(): [number, number];
  fdKind(fd: number): FdKind;
  readFd(fd: number, buf: Uint8Array, start: number, end: number): number;
  writeFd(fd: number, buf: Uint8Array, start: number, end: number): number;
  waitReadable(fd: number, timeoutMs: number): boolean;
  listenSeqpacket(path: string): number;
  connectSeqpacket(path: string): number;
  eventfd(initval: number): number;
  eventfdSignal(fd: number): boolean;
  eventfdDrain(fd: number): number;
  drmIoctl(
    fd: number,
    request: number,
    arg: Uint8Array,
    pointers?: readonly (readonly [number, Uint8Array])[],
  ): number;
  Poller: PollerConstructor;
  READABLE: number;
  WRITABLE: number;
  DISCONNECT: number;
  MAX_FDS: number;
}

const addon = loadedAddon as NativeAddon;

export const READABLE = 1;
export const WRITABLE = 2;
export const DISCONNECT = 4;
/** Most fds one sendmsg may carry, and all that recvmsg has room for (libwayland's limit). */
export const MAX_FDS = 28;
/** The length `recvmsg`'s `out` array needs: count, truncated flag, then MAX_FDS fds. */
export const RECV_OUT_LENGTH = 2 + MAX_FDS;

if (
  addon.READABLE !== READABLE ||
  addon.WRITABLE !== WRITABLE ||
  addon.DISCONNECT !== DISCONNECT ||
  addon.MAX_FDS !== MAX_FDS
) {
  throw new Error('tswl_native: constants differ from src/native/index.ts; rebuild the addon');
}

/**
 * Listens on a unix socket at `path`, as libwayland does: takes an exclusive flock on
 * `${path}.lock` (created 0660) and throws code 'EADDRINUSE' if another process holds it;
 * with the lock held, a socket left at `path` by a crashed process is removed first. Paths that
 * do not fit in sun_path throw 'ENAMETOOLONG'. Removing the files on shutdown is the caller's job.
 */
export const listenUnix: (path: string) => Listener = addon.listenUnix;

/**
 * A listening unix stream socket at a path, or at the abstract address '@name' (the name's bytes,
 * no trailing NUL), without a lock file: X11 display sockets. 'EADDRINUSE' when taken.
 */
export const listenStream: (address: string) => number = addon.listenStream;

/** Accepts one connection (close-on-exec, nonblocking); -1 when none is pending. */
export const accept: (listenFd: number) => number = addon.accept;

/** Connects to a unix socket (a blocking connect), then makes the socket nonblocking. */
export const connectUnix: (path: string) => number = addon.connectUnix;

/** A connected pair of unix stream sockets. */
export const socketpair: () => [number, number] = addon.socketpair;

/**
 * One sendmsg of buf[start, end) with fds[0, fdCount) attached as SCM_RIGHTS (at most MAX_FDS,
 * else 'EINVAL'; fds need a non-empty range). Returns the bytes sent, or -1 when the socket is
 * full. Other failures (EPIPE, ECONNRESET…) throw. The fds stay open: they are the caller's.
 */
export const sendmsg: (
  fd: number,
  buf: Uint8Array,
  start: number,
  end: number,
  fds: readonly number[] | Int32Array,
  fdCount: number,
) => number = addon.sendmsg;

/**
 * One recvmsg into buf[start, end) (a non-empty range). Returns the bytes read, 0 at end of
 * file, or -1 when nothing is available. Received fds (close-on-exec, now the caller's to close)
 * are in `out`: out[0] = count, out[1] = 1 if the peer sent more fds than fit (MSG_CTRUNC; the
 * excess are lost), fds at out[2 .. 2 + count). `out` needs RECV_OUT_LENGTH entries; the count
 * and flag are reset on every call that reaches the kernel, including ones returning -1 or 0.
 */
export const recvmsg: (
  fd: number,
  buf: Uint8Array,
  start: number,
  end: number,
  out: Int32Array,
) => number = addon.recvmsg;

/** Closes an fd; throws only on EBADF. */
export const close: (fd: number) => void = addon.close;

/**
 * Sends `data` as one datagram from a fresh AF_UNIX SOCK_DGRAM socket to `path`, as sd_notify
 * does: a path starting with '@' names an abstract socket ('\0' + the rest, no trailing NUL).
 * Waits at most one second for room in a full receiver queue, then throws 'EAGAIN'. A missing
 * receiver throws 'ENOENT' or 'ECONNREFUSED'; an over-long address 'ENAMETOOLONG'.
 */
export const sendDatagram: (path: string, data: Uint8Array) => void = addon.sendDatagram;

/**
 * Checks that `fd` (inherited, e.g. from systemd) is a listening AF_UNIX stream socket, makes it
 * nonblocking and close-on-exec, and returns its bound address: a path, '@name' for an abstract
 * socket (every byte of the name as bound: Node pads its abstract names with NULs to the whole
 * sun_path, systemd does not), or '' for an unnamed one. Throws with code 'EBADF' (not open), 'ENOTSOCK' (not a socket)
 * or 'EINVAL' (another family or type, or not listening); the message names the fd and the reason.
 */
export const inspectListenSocket: (fd: number) => string = addon.inspectListenSocket;

/** Creates a FIFO at `path` with `mode` (less the umask); throws 'EEXIST' if the path exists. */
export const mkfifo: (path: string, mode: number) => void = addon.mkfifo;

export const Poller: PollerConstructor = addon.Poller;

/** What an fd is, as the cross-domain protocol classifies fds it passes. */
export interface FdKind {
  /** memory: seekable (memfd, shm file, dma-buf); pipe ends by access mode; socket; other. */
  kind: 'memory' | 'pipe-read' | 'pipe-write' | 'socket' | 'other';
  /** The file size, for memory. */
  size: number;
  writable: boolean;
}

/** An anonymous memory file (MFD_CLOEXEC | MFD_ALLOW_SEALING) of `size` bytes. */
export const memfdCreate: (name: string, size: number) => number = addon.memfdCreate;

/**
 * Maps `length` bytes of `fd` from `offset` (a page multiple), MAP_SHARED, as a Buffer over that
 * memory. munmap() releases it at once; otherwise the GC does, when the Buffer is collected.
 */
export const mmap: (fd: number, offset: number, length: number, writable: boolean) => Buffer =
  addon.mmap;

/** Unmaps a Buffer returned by mmap() and detaches it (it reads as empty afterwards). Idempotent. */
export const munmap: (buf: Buffer) => void = addon.munmap;

/** Mappings from mmap() still in place: what munmap() (or a collected Buffer) has not undone. */
export const mappingCount: () => number = addon.mappingCount;

/**
 * Copies rectangles (x, y, w, h quadruples in pixels, `count` of them, clipped to
 * width × height) row by row from src to dst. Returns the bytes copied, or -1 when a mapping
 * faulted (a client truncated its pool under us): the process survives that. Counts toward
 * copiedBytes().
 */
export const copyRects: (
  dst: Uint8Array,
  dstStride: number,
  src: Uint8Array,
  srcStride: number,
  rects: Int32Array,
  count: number,
  bytesPerPixel: number,
  width: number,
  height: number,
) => number = addon.copyRects;

/** Bytes copied by copyRects() in this process so far (for tests and the benchmark). */
export const copiedBytes: () => number = addon.copiedBytes;

/**
 * Gives memory the process no longer uses back to the system: a garbage collection that shrinks
 * V8's heap, then the C library's free memory. Takes milliseconds; for quiet moments only.
 */
export const releaseMemory: () => void = addon.releaseMemory;

/** A pipe, both ends close-on-exec and nonblocking: [read end, write end]. */
export const pipe: () => [number, number] = addon.pipe;

export const fdKind: (fd: number) => FdKind = addon.fdKind;

/** read(2) into buf[start, end): bytes read, 0 at end of file, -1 when nothing is available. */
export const readFd: (fd: number, buf: Uint8Array, start: number, end: number) => number =
  addon.readFd;

/** write(2) of buf[start, end): bytes written, -1 when the fd is full. */
export const writeFd: (fd: number, buf: Uint8Array, start: number, end: number) => number =
  addon.writeFd;

/** Blocks up to timeoutMs until fd is readable; for round trips that stand in for blocking ioctls. */
export const waitReadable: (fd: number, timeoutMs: number) => boolean = addon.waitReadable;

/** A listening AF_UNIX SOCK_SEQPACKET socket (the local link), nonblocking, close-on-exec. */
export const listenSeqpacket: (path: string) => number = addon.listenSeqpacket;

/** Connects a SOCK_SEQPACKET socket; sendmsg/recvmsg then move one packet per call. */
export const connectSeqpacket: (path: string) => number = addon.connectSeqpacket;

/** eventfd(initval, EFD_CLOEXEC | EFD_NONBLOCK): a vhost-user kick or call notifier. */
export const eventfd: (initval: number) => number = addon.eventfd;

/** Adds 1 to an eventfd's counter; false when it is full (the signal is then already pending). */
export const eventfdSignal: (fd: number) => boolean = addon.eventfdSignal;

/** Reads and resets an eventfd's counter: its value, 0 when nothing was signalled. */
export const eventfdDrain: (fd: number) => number = addon.eventfdDrain;

/**
 * ioctl(fd, request, arg) for DRM: `arg` is the struct (its length must be the size encoded in
 * `request`); each [offset, buffer] of `pointers` has the buffer's address written as a u64 at
 * that offset of `arg` first. Returns the ioctl's result; failures throw (code 'EINVAL'…,
 * syscall 'ioctl'). EINTR and EAGAIN are retried.
 */
export const drmIoctl: (
  fd: number,
  request: number,
  arg: Uint8Array,
  pointers?: readonly (readonly [number, Uint8Array])[],
) => number = addon.drmIoctl;

/** Open fds of this process (entries of /proc/self/fd), for leak checks. */
export function openFdCount(): number {
  // readdirSync's own directory fd is listed too; it is closed again by the time we return.
  return readdirSync('/proc/self/fd').length - 1;
}

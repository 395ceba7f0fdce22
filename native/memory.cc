// Memory the proxy shares with the host, and the copies into it.
//
// A client's shm pool is mapped from an fd the client controls: it may truncate the file under
// us, and touching the mapping past the new end raises SIGBUS. Copies therefore run under a
// SIGBUS guard that turns the fault into a failed copy (reported to that client as a protocol
// error) instead of a dead proxy.

#include "memory.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <string>
#include <thread>
#include <unordered_map>

#include <v8.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "args.h"
#include "errors.h"

namespace tswl {
namespace {

// ---- mappings -------------------------------------------------------------------------------

struct Mapping {
  void* addr;
  size_t length;
  bool unmapped;
};

// Mappings still in place, by address, so munmap() can find the one a Buffer wraps.
std::unordered_map<void*, Mapping*> live_mappings;

void FinalizeMapping(Napi::Env, uint8_t*, Mapping* m) {
  if (!m->unmapped) {
    munmap(m->addr, m->length);
    auto it = live_mappings.find(m->addr);
    if (it != live_mappings.end() && it->second == m) live_mappings.erase(it);
  }
  delete m;
}

Napi::Value MemfdCreate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name;
  int64_t size;
  if (!GetString(info, 0, "name", &name) || !GetInt(info, 1, "size", 0, INT64_MAX / 2, &size)) {
    return {};
  }
  int fd = memfd_create(name.c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) {
    ThrowErrno(env, errno, "memfd_create");
    return {};
  }
  if (ftruncate(fd, size) < 0) {
    int err = errno;
    close(fd);
    ThrowErrno(env, err, "ftruncate");
    return {};
  }
  return Napi::Number::New(env, fd);
}

Napi::Value Mmap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  int64_t offset, length;
  if (!GetFd(info, 0, &fd) || !GetInt(info, 1, "offset", 0, INT64_MAX / 2, &offset) ||
      !GetInt(info, 2, "length", 1, INT64_MAX / 2, &length)) {
    return {};
  }
  if (!info[3].IsBoolean()) return Fail(env, "writable must be a boolean"), Napi::Value();
  bool writable = info[3].As<Napi::Boolean>().Value();
  if (offset % sysconf(_SC_PAGESIZE) != 0) {
    ThrowErrno(env, EINVAL, "mmap");
    return {};
  }
  void* addr = mmap(nullptr, static_cast<size_t>(length), PROT_READ | (writable ? PROT_WRITE : 0),
                    MAP_SHARED, fd, static_cast<off_t>(offset));
  if (addr == MAP_FAILED) {
    ThrowErrno(env, errno, "mmap");
    return {};
  }
  auto* m = new Mapping{addr, static_cast<size_t>(length), false};
  live_mappings[addr] = m;
  return Napi::Buffer<uint8_t>::New(env, static_cast<uint8_t*>(addr), m->length, FinalizeMapping,
                                    m);
}

// Unmaps at once (the finalizer would wait for the GC) and detaches the buffer, so any later use
// from JS sees an empty buffer rather than unmapped memory.
Napi::Value Munmap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsBuffer()) return Fail(env, "buf must be a Buffer from mmap()"), Napi::Value();
  Napi::Buffer<uint8_t> buf = info[0].As<Napi::Buffer<uint8_t>>();
  Napi::ArrayBuffer ab = buf.ArrayBuffer();
  auto it = live_mappings.find(ab.Data());
  if (it == live_mappings.end()) return env.Undefined();  // already unmapped
  Mapping* m = it->second;
  munmap(m->addr, m->length);
  m->unmapped = true;
  live_mappings.erase(it);
  napi_detach_arraybuffer(env, ab);
  return env.Undefined();
}

// Mappings not unmapped yet (by munmap() or a collected Buffer): for leak checks.
Napi::Value MappingCount(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(live_mappings.size()));
}

// ---- pixel copies ---------------------------------------------------------------------------

// volatile: the stores around the copy loop must not be moved across the memcpy calls.
thread_local sigjmp_buf* volatile copy_jump = nullptr;
struct sigaction previous_sigbus;
bool sigbus_installed = false;
double copied_bytes = 0;

void OnSigbus(int sig, siginfo_t* si, void* ctx) {
  if (copy_jump != nullptr) siglongjmp(*copy_jump, 1);
  // Not ours: behave as if we had never been installed.
  if (previous_sigbus.sa_flags & SA_SIGINFO) {
    previous_sigbus.sa_sigaction(sig, si, ctx);
  } else if (previous_sigbus.sa_handler != SIG_DFL && previous_sigbus.sa_handler != SIG_IGN) {
    previous_sigbus.sa_handler(sig);
  } else {
    signal(SIGBUS, SIG_DFL);
    raise(SIGBUS);
  }
}

void InstallSigbusGuard() {
  if (sigbus_installed) return;
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_sigaction = OnSigbus;
  sa.sa_flags = SA_SIGINFO | SA_NODEFER;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGBUS, &sa, &previous_sigbus);
  sigbus_installed = true;
}

// A rectangle at least this large is copied with non-temporal stores: the host memory it goes to
// is read next by another process, not by us, and at this size it would not stay in our cache
// anyway. Streaming skips reading each destination line before writing it, which made a 1080p
// frame 0.58 → 0.42 ms and a 480×216 rectangle 0.090 → 0.072 ms out of cache on this machine's
// EPYC; a 100×50 one, whose lines are still cached, is three times slower streamed.
constexpr size_t kStreamBytes = 256 * 1024;

void CopyRowStreaming(uint8_t* dst, const uint8_t* src, size_t n) {
#if defined(__SSE2__)
  size_t head = (16 - (reinterpret_cast<uintptr_t>(dst) & 15)) & 15;
  if (head > n) head = n;
  memcpy(dst, src, head);
  dst += head;
  src += head;
  n -= head;
  for (; n >= 64; n -= 64, dst += 64, src += 64) {
    __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src));
    __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 16));
    __m128i c = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 32));
    __m128i d = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 48));
    _mm_stream_si128(reinterpret_cast<__m128i*>(dst), a);
    _mm_stream_si128(reinterpret_cast<__m128i*>(dst + 16), b);
    _mm_stream_si128(reinterpret_cast<__m128i*>(dst + 32), c);
    _mm_stream_si128(reinterpret_cast<__m128i*>(dst + 48), d);
  }
#endif
  memcpy(dst, src, n);
}

// copyRects(dst, dstStride, src, srcStride, rects, count, bytesPerPixel, width, height)
// Copies each rectangle (x, y, w, h in pixels, clipped to width × height) row by row. Returns the
// bytes copied, or -1 when the source or destination faulted (a truncated file).
Napi::Value CopyRects(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  void *dst_v, *src_v, *rects_v;
  size_t dst_len, src_len, rects_len;
  int64_t dst_stride, src_stride, count, bpp, width, height;
  if (!GetTypedArray(info, 0, "dst", napi_uint8_array, &dst_v, &dst_len) ||
      !GetInt(info, 1, "dstStride", 1, INT32_MAX, &dst_stride) ||
      !GetTypedArray(info, 2, "src", napi_uint8_array, &src_v, &src_len) ||
      !GetInt(info, 3, "srcStride", 1, INT32_MAX, &src_stride) ||
      !GetTypedArray(info, 4, "rects", napi_int32_array, &rects_v, &rects_len) ||
      !GetInt(info, 5, "count", 0, rects_len / 4, &count) ||
      !GetInt(info, 6, "bytesPerPixel", 1, 16, &bpp) ||
      !GetInt(info, 7, "width", 0, INT32_MAX, &width) ||
      !GetInt(info, 8, "height", 0, INT32_MAX, &height)) {
    return {};
  }
  if (width * bpp > dst_stride || width * bpp > src_stride) {
    return Fail(env, "a row of width pixels does not fit in the stride", true), Napi::Value();
  }
  if (height > 0 && (static_cast<size_t>((height - 1) * dst_stride + width * bpp) > dst_len ||
                     static_cast<size_t>((height - 1) * src_stride + width * bpp) > src_len)) {
    return Fail(env, "width × height does not fit in the buffers", true), Napi::Value();
  }
  auto* dst = static_cast<uint8_t*>(dst_v);
  auto* src = static_cast<const uint8_t*>(src_v);
  const int32_t* r = static_cast<const int32_t*>(rects_v);
  InstallSigbusGuard();
  sigjmp_buf jump;
  volatile int64_t total = 0;
  // no signal mask to save: SA_NODEFER leaves SIGBUS unblocked in the handler, and saving it
  // would cost a system call per copy
  if (sigsetjmp(jump, 0) != 0) {
    copy_jump = nullptr;
    return Napi::Number::New(env, -1);
  }
  copy_jump = &jump;
  std::atomic_signal_fence(std::memory_order_seq_cst);
  for (int64_t i = 0; i < count; i++) {
    int64_t x0 = r[4 * i], y0 = r[4 * i + 1];
    int64_t x1 = x0 + r[4 * i + 2], y1 = y0 + r[4 * i + 3];
    if (x0 < 0) x0 = 0;
    if (y0 < 0) y0 = 0;
    if (x1 > width) x1 = width;
    if (y1 > height) y1 = height;
    if (x0 >= x1 || y0 >= y1) continue;
    size_t row = static_cast<size_t>((x1 - x0) * bpp);
    bool stream = row * static_cast<size_t>(y1 - y0) >= kStreamBytes;
    for (int64_t y = y0; y < y1; y++) {
      uint8_t* to = dst + y * dst_stride + x0 * bpp;
      const uint8_t* from = src + y * src_stride + x0 * bpp;
      if (stream) {
        CopyRowStreaming(to, from, row);
      } else {
        memcpy(to, from, row);
      }
    }
#if defined(__SSE2__)
    // streamed stores are weakly ordered: visible before the commit that tells the host
    if (stream) _mm_sfence();
#endif
    total = total + static_cast<int64_t>(row) * (y1 - y0);
  }
  std::atomic_signal_fence(std::memory_order_seq_cst);
  copy_jump = nullptr;
  copied_bytes += static_cast<double>(total);
  return Napi::Number::New(env, static_cast<double>(total));
}

Napi::Value CopiedBytes(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), copied_bytes);
}

// ---- pipes and plain fd I/O -----------------------------------------------------------------

Napi::Value Pipe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fds[2];
  if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) < 0) {
    ThrowErrno(env, errno, "pipe2");
    return {};
  }
  Napi::Array result = Napi::Array::New(env, 2);
  result.Set(uint32_t{0}, Napi::Number::New(env, fds[0]));
  result.Set(uint32_t{1}, Napi::Number::New(env, fds[1]));
  return result;
}

// What an fd is, the way the cross-domain protocol classifies fds: seekable memory (with its
// size), one end of a pipe, a socket, or something else.
Napi::Value FdKind(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!GetFd(info, 0, &fd)) return {};
  struct stat st;
  if (fstat(fd, &st) < 0) {
    ThrowErrno(env, errno, "fstat");
    return {};
  }
  int flags = fcntl(fd, F_GETFL);
  int mode = flags & O_ACCMODE;
  const char* kind = "other";
  double size = 0;
  if (S_ISSOCK(st.st_mode)) {
    kind = "socket";
  } else if (S_ISFIFO(st.st_mode)) {
    kind = mode == O_WRONLY ? "pipe-write" : mode == O_RDONLY ? "pipe-read" : "other";
  } else {
    off_t end = lseek(fd, 0, SEEK_END);
    if (end >= 0) {
      kind = "memory";
      size = static_cast<double>(end);
    }
  }
  Napi::Object result = Napi::Object::New(env);
  result.Set("kind", Napi::String::New(env, kind));
  result.Set("size", Napi::Number::New(env, size));
  result.Set("writable", Napi::Boolean::New(env, mode == O_WRONLY || mode == O_RDWR));
  return result;
}

// One read(2) or write(2) of buf[start, end) on a nonblocking fd: the count, or -1 for EAGAIN.
template <typename Io>
Napi::Value NonblockingIo(const Napi::CallbackInfo& info, Io io, const char* syscall) {
  Napi::Env env = info.Env();
  int fd;
  uint8_t* data;
  size_t len;
  if (!GetFd(info, 0, &fd) || !GetByteRange(info, 1, &data, &len)) return {};
  ssize_t n;
  do n = io(fd, data, len);
  while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return Napi::Number::New(env, -1);
    ThrowErrno(env, errno, syscall);
    return {};
  }
  return Napi::Number::New(env, static_cast<double>(n));
}

Napi::Value ReadFd(const Napi::CallbackInfo& info) {
  return NonblockingIo(info, [](int fd, uint8_t* d, size_t n) { return read(fd, d, n); }, "read");
}

Napi::Value WriteFd(const Napi::CallbackInfo& info) {
  return NonblockingIo(info, [](int fd, uint8_t* d, size_t n) { return write(fd, d, n); }, "write");
}

// Blocks until fd is readable or timeoutMs passes: the local link's synchronous round trips,
// which stand in for ioctls that block in the kernel.
Napi::Value WaitReadable(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  int64_t timeout;
  if (!GetFd(info, 0, &fd) || !GetInt(info, 1, "timeoutMs", 0, INT32_MAX, &timeout)) return {};
  struct pollfd p = {fd, POLLIN, 0};
  int n;
  do n = poll(&p, 1, static_cast<int>(timeout));
  while (n < 0 && errno == EINTR);
  if (n < 0) {
    ThrowErrno(env, errno, "poll");
    return {};
  }
  return Napi::Boolean::New(env, n > 0);
}

// ---- seqpacket sockets (the local link) -------------------------------------------------------

bool SeqpacketAddress(Napi::Env env, const char* syscall, const std::string& path,
                      sockaddr_un* addr) {
  memset(addr, 0, sizeof(*addr));
  if (path.empty() || path.size() >= sizeof(addr->sun_path)) {
    ThrowErrno(env, path.empty() ? EINVAL : ENAMETOOLONG, syscall, path);
    return false;
  }
  addr->sun_family = AF_UNIX;
  memcpy(addr->sun_path, path.data(), path.size());
  return true;
}

Napi::Value ListenSeqpacket(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path;
  if (!GetString(info, 0, "path", &path)) return {};
  sockaddr_un addr;
  if (!SeqpacketAddress(env, "bind", path, &addr)) return {};
  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    ThrowErrno(env, errno, "socket");
    return {};
  }
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) < 0 || listen(fd, 16) < 0) {
    int err = errno;
    close(fd);
    ThrowErrno(env, err, "bind", path);
    return {};
  }
  return Napi::Number::New(env, fd);
}

Napi::Value ConnectSeqpacket(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path;
  if (!GetString(info, 0, "path", &path)) return {};
  sockaddr_un addr;
  if (!SeqpacketAddress(env, "connect", path, &addr)) return {};
  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    ThrowErrno(env, errno, "socket");
    return {};
  }
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) < 0) {
    int err = errno;
    close(fd);
    ThrowErrno(env, err, "connect", path);
    return {};
  }
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  return Napi::Number::New(env, fd);
}

// Node-API has no way to ask for this: a garbage collection that also shrinks V8's heap and
// returns its pooled pages, then glibc's free chunks of every arena (the compiler threads' too).
Napi::Value ReleaseMemory(const Napi::CallbackInfo& info) {
  v8::Isolate::GetCurrent()->LowMemoryNotification();
#ifdef __GLIBC__
  malloc_trim(0);
#endif
  return info.Env().Undefined();
}

#ifdef __GLIBC__
// The first time a thread's arena shrinks, glibc opens /proc/sys/vm/overcommit_memory, in
// whichever thread that is. Done here, at load, so that the process's fd count never shows it
// later (the tests and the fuzzer count fds around what they run).
void ShrinkAThreadArena() {
  std::thread([] {
    void* blocks[16];
    for (void*& b : blocks) b = malloc(100 * 1024);
    for (void* b : blocks) free(b);
  }).join();
}
#endif

}  // namespace

void InitMemory(Napi::Env env, Napi::Object exports) {
#ifdef __GLIBC__
  // A fixed trim threshold also fixes the mmap threshold: glibc otherwise raises both after a
  // large block is freed, and the top of every arena (V8's compiler threads have their own)
  // then keeps megabytes that malloc_trim cannot return.
  mallopt(M_TRIM_THRESHOLD, 128 * 1024);
  ShrinkAThreadArena();
#endif
  exports.Set("memfdCreate", Napi::Function::New(env, MemfdCreate, "memfdCreate"));
  exports.Set("mmap", Napi::Function::New(env, Mmap, "mmap"));
  exports.Set("munmap", Napi::Function::New(env, Munmap, "munmap"));
  exports.Set("mappingCount", Napi::Function::New(env, MappingCount, "mappingCount"));
  exports.Set("copyRects", Napi::Function::New(env, CopyRects, "copyRects"));
  exports.Set("releaseMemory", Napi::Function::New(env, ReleaseMemory, "releaseMemory"));
  exports.Set("copiedBytes", Napi::Function::New(env, CopiedBytes, "copiedBytes"));
  exports.Set("pipe", Napi::Function::New(env, Pipe, "pipe"));
  exports.Set("fdKind", Napi::Function::New(env, FdKind, "fdKind"));
  exports.Set("readFd", Napi::Function::New(env, ReadFd, "readFd"));
  exports.Set("writeFd", Napi::Function::New(env, WriteFd, "writeFd"));
  exports.Set("waitReadable", Napi::Function::New(env, WaitReadable, "waitReadable"));
  exports.Set("listenSeqpacket", Napi::Function::New(env, ListenSeqpacket, "listenSeqpacket"));
  exports.Set("connectSeqpacket", Napi::Function::New(env, ConnectSeqpacket, "connectSeqpacket"));
}

}  // namespace tswl

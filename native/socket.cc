// Unix-domain stream sockets and SCM_RIGHTS, the part of the Wayland wire Node cannot do, plus
// what systemd integration needs: notify datagrams, checking inherited listening sockets, FIFOs.
// Every fd made here is close-on-exec, and every socket kept open is nonblocking.

#include "socket.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <string>

#include "args.h"
#include "errors.h"

namespace tswl {
namespace {

// libwayland's limit per sendmsg (its MAX_FDS_OUT); receivers size their control buffers for it.
constexpr int kMaxFds = 28;
// recvmsg's out array: count, truncated flag, then the fds.
constexpr size_t kRecvOutLength = 2 + kMaxFds;

// Control buffer for exactly kMaxFds descriptors, aligned for cmsghdr.
union ControlBuffer {
  char buf[CMSG_SPACE(sizeof(int) * kMaxFds)];
  struct cmsghdr align;
};

// Fills a sockaddr_un, throwing ENAMETOOLONG or EINVAL for paths that cannot be one.
bool MakeAddress(Napi::Env env, const char* syscall, const std::string& path, sockaddr_un* addr,
                 socklen_t* len) {
  if (path.empty() || path.find('\0') != std::string::npos) {
    ThrowErrno(env, EINVAL, syscall, path);
    return false;
  }
  memset(addr, 0, sizeof(*addr));
  if (path.size() >= sizeof(addr->sun_path)) {
    std::string message = std::string(syscall) + " " + path + ": path is longer than " +
                          std::to_string(sizeof(addr->sun_path) - 1) +
                          " bytes, the limit for a unix socket";
    ErrnoError(env, ENAMETOOLONG, syscall, path, message).ThrowAsJavaScriptException();
    return false;
  }
  addr->sun_family = AF_UNIX;
  memcpy(addr->sun_path, path.data(), path.size());
  *len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + 1);
  return true;
}

// Closes fds the caller will not see because an error is being thrown.
void CloseQuietly(int fd) {
  if (fd >= 0) ::close(fd);
}

// A listening stream socket at a path, or at an abstract address written '@name' (the name's
// bytes only, as X servers bind theirs), with no lock file and nothing removed first: X11's
// display sockets, whose lock is the caller's /tmp/.X<n>-lock.
Napi::Value ListenStream(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string address;
  if (!GetString(info, 0, "address", &address)) return {};
  sockaddr_un addr;
  socklen_t addrLen;
  bool abstract = !address.empty() && address[0] == '@';
  if (abstract) {
    std::string name = address.substr(1);
    if (name.empty() || name.size() > sizeof(addr.sun_path) - 1) {
      ThrowErrno(env, name.empty() ? EINVAL : ENAMETOOLONG, "listen", address);
      return {};
    }
    memset(&addr, 0, sizeof(addr));
    addr.sun_family = AF_UNIX;
    memcpy(addr.sun_path + 1, name.data(), name.size());
    addrLen = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
  } else if (!MakeAddress(env, "listen", address, &addr, &addrLen)) {
    return {};
  }
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    ThrowErrno(env, errno, "socket");
    return {};
  }
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), addrLen) < 0 || listen(fd, 128) < 0) {
    int err = errno;
    CloseQuietly(fd);
    ThrowErrno(env, err, "bind", address);
    return {};
  }
  return Napi::Number::New(env, fd);
}

Napi::Value ListenUnix(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path;
  sockaddr_un addr;
  socklen_t addrLen;
  if (!GetString(info, 0, "path", &path)) return {};
  if (!MakeAddress(env, "listen", path, &addr, &addrLen)) return {};

  // The lock file tells a live socket from a stale one, as libwayland does.
  std::string lockPath = path + ".lock";
  int lockFd = open(lockPath.c_str(), O_CREAT | O_CLOEXEC | O_RDWR, 0660);
  if (lockFd < 0) {
    ThrowErrno(env, errno, "open", lockPath);
    return {};
  }
  if (flock(lockFd, LOCK_EX | LOCK_NB) < 0) {
    int err = errno;
    CloseQuietly(lockFd);
    if (err == EWOULDBLOCK) {
      std::string message = path + " is in use by another compositor/proxy (" + lockPath +
                            " is locked)";
      ErrnoError(env, EADDRINUSE, "flock", lockPath, message).ThrowAsJavaScriptException();
    } else {
      ThrowErrno(env, err, "flock", lockPath);
    }
    return {};
  }

  // We hold the lock, so a socket left at path belongs to a process that died: remove it.
  // Anything that is not a socket is left alone and makes bind fail.
  struct stat st;
  if (lstat(path.c_str(), &st) == 0) {
    if (S_ISSOCK(st.st_mode) && unlink(path.c_str()) < 0 && errno != ENOENT) {
      int err = errno;
      CloseQuietly(lockFd);
      ThrowErrno(env, err, "unlink", path);
      return {};
    }
  } else if (errno != ENOENT) {
    int err = errno;
    CloseQuietly(lockFd);
    ThrowErrno(env, err, "lstat", path);
    return {};
  }

  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    int err = errno;
    CloseQuietly(lockFd);
    ThrowErrno(env, err, "socket");
    return {};
  }
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), addrLen) < 0) {
    int err = errno;
    CloseQuietly(fd);
    CloseQuietly(lockFd);
    ThrowErrno(env, err, "bind", path);
    return {};
  }
  if (listen(fd, 128) < 0) {
    int err = errno;
    unlink(path.c_str());
    CloseQuietly(fd);
    CloseQuietly(lockFd);
    ThrowErrno(env, err, "listen", path);
    return {};
  }

  Napi::Object result = Napi::Object::New(env);
  result.Set("fd", Napi::Number::New(env, fd));
  result.Set("lockFd", Napi::Number::New(env, lockFd));
  return result;
}

Napi::Value Accept(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int listenFd;
  if (!GetFd(info, 0, &listenFd)) return {};
  int fd;
  do {
    fd = accept4(listenFd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return Napi::Number::New(env, -1);
    ThrowErrno(env, errno, "accept");
    return {};
  }
  return Napi::Number::New(env, fd);
}

Napi::Value ConnectUnix(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path;
  sockaddr_un addr;
  socklen_t addrLen;
  if (!GetString(info, 0, "path", &path)) return {};
  if (!MakeAddress(env, "connect", path, &addr, &addrLen)) return {};

  // A blocking connect: on a local socket it only waits while the listener's backlog is full.
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    ThrowErrno(env, errno, "socket");
    return {};
  }
  int r;
  do {
    r = connect(fd, reinterpret_cast<sockaddr*>(&addr), addrLen);
  } while (r < 0 && errno == EINTR);
  const char* failed = r < 0 ? "connect" : nullptr;
  if (!failed) {
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) failed = "fcntl";
  }
  if (failed) {
    int err = errno;
    CloseQuietly(fd);
    ThrowErrno(env, err, failed, path);
    return {};
  }
  return Napi::Number::New(env, fd);
}

Napi::Value SocketPair(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, fds) < 0) {
    ThrowErrno(env, errno, "socketpair");
    return {};
  }
  Napi::Array result = Napi::Array::New(env, 2);
  result.Set(uint32_t{0}, Napi::Number::New(env, fds[0]));
  result.Set(uint32_t{1}, Napi::Number::New(env, fds[1]));
  return result;
}

// Reads fds[0..count) from a number[] or an Int32Array into out.
bool GetFdList(const Napi::CallbackInfo& info, size_t i, size_t count, int* out) {
  napi_env env = info.Env();
  napi_value v = info[i];
  bool isTyped = false;
  napi_is_typedarray(env, v, &isTyped);
  if (isTyped) {
    void* data;
    size_t length;
    if (!GetTypedArray(info, i, "fds", napi_int32_array, &data, &length)) return false;
    if (count > length) return Fail(info.Env(), "fdCount is larger than fds", true);
    memcpy(out, data, count * sizeof(int));
    return true;
  }
  Napi::Value value = info[i];
  if (!value.IsArray()) return Fail(info.Env(), "fds must be an array or an Int32Array");
  Napi::Array array = value.As<Napi::Array>();
  if (count > array.Length()) return Fail(info.Env(), "fdCount is larger than fds", true);
  for (uint32_t k = 0; k < count; k++) {
    Napi::Value fd = array.Get(k);
    if (!fd.IsNumber()) return Fail(info.Env(), "fds must hold numbers");
    out[k] = fd.As<Napi::Number>().Int32Value();
  }
  return true;
}

Napi::Value SendMsg(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  uint8_t* data;
  size_t len;
  int64_t fdCount;
  if (!GetFd(info, 0, &fd) || !GetByteRange(info, 1, &data, &len)) return {};
  if (!GetInt(info, 5, "fdCount", 0, INT32_MAX, &fdCount)) return {};
  if (fdCount > kMaxFds) {
    std::string message = "sendmsg: " + std::to_string(fdCount) + " fds in one message, at most " +
                          std::to_string(kMaxFds) + " are allowed";
    ErrnoError(env, EINVAL, "sendmsg", {}, message).ThrowAsJavaScriptException();
    return {};
  }
  if (fdCount > 0 && len == 0) {
    // On a stream socket the fds travel with the first byte; without bytes they would be lost.
    ErrnoError(env, EINVAL, "sendmsg", {}, "sendmsg: fds need at least one byte to travel with")
        .ThrowAsJavaScriptException();
    return {};
  }

  iovec iov = {data, len};
  msghdr msg = {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  ControlBuffer control;
  if (fdCount > 0) {
    memset(&control, 0, sizeof(control));
    msg.msg_control = control.buf;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * fdCount);
    cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int) * fdCount);
    if (!GetFdList(info, 4, static_cast<size_t>(fdCount), reinterpret_cast<int*>(CMSG_DATA(cmsg)))) {
      return {};
    }
  }

  ssize_t n;
  do {
    n = ::sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return Napi::Number::New(env, -1);
    ThrowErrno(env, errno, "sendmsg");
    return {};
  }
  return Napi::Number::New(env, static_cast<double>(n));
}

Napi::Value RecvMsg(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  uint8_t* data;
  size_t len;
  void* outData;
  size_t outLength;
  if (!GetFd(info, 0, &fd) || !GetByteRange(info, 1, &data, &len)) return {};
  if (!GetTypedArray(info, 4, "out", napi_int32_array, &outData, &outLength)) return {};
  if (outLength < kRecvOutLength) {
    Fail(env, "out must have room for " + std::to_string(kRecvOutLength) + " entries", true);
    return {};
  }
  if (len == 0) {
    // Zero bytes read would look like end of file.
    Fail(env, "recvmsg needs a non-empty range", true);
    return {};
  }
  int32_t* out = static_cast<int32_t*>(outData);
  out[0] = 0;
  out[1] = 0;

  iovec iov = {data, len};
  ControlBuffer control;
  msghdr msg = {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.buf;
  msg.msg_controllen = sizeof(control.buf);
  ssize_t n;
  do {
    n = ::recvmsg(fd, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return Napi::Number::New(env, -1);
    ThrowErrno(env, errno, "recvmsg");
    return {};
  }

  int count = 0;
  for (cmsghdr* cmsg = CMSG_FIRSTHDR(&msg); cmsg; cmsg = CMSG_NXTHDR(&msg, cmsg)) {
    if (cmsg->cmsg_level != SOL_SOCKET || cmsg->cmsg_type != SCM_RIGHTS) continue;
    size_t bytes = cmsg->cmsg_len - CMSG_LEN(0);
    const unsigned char* src = CMSG_DATA(cmsg);
    for (size_t k = 0; k + sizeof(int) <= bytes; k += sizeof(int)) {
      int received;
      memcpy(&received, src + k, sizeof(int));
      if (count < kMaxFds) {
        out[2 + count++] = received;
      } else {
        ::close(received);  // cannot happen with this control buffer; never leak one anyway
      }
    }
  }
  out[0] = count;
  out[1] = (msg.msg_flags & MSG_CTRUNC) ? 1 : 0;
  return Napi::Number::New(env, static_cast<double>(n));
}

Napi::Value Close(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!GetFd(info, 0, &fd)) return {};
  // Linux releases the fd even when close reports EINTR or EIO, so only EBADF is an error.
  if (::close(fd) < 0 && errno == EBADF) ThrowErrno(env, EBADF, "close");
  return {};
}

// The unix address for a path, or for an abstract name written "@name" as in $NOTIFY_SOCKET.
// Abstract names are length-delimited: no trailing NUL is part of the address.
bool MakeNamedAddress(Napi::Env env, const char* syscall, const std::string& path, sockaddr_un* addr,
                      socklen_t* len) {
  if (path.empty() || path[0] != '@') return MakeAddress(env, syscall, path, addr, len);
  std::string name = path.substr(1);
  if (name.empty() || name.find('\0') != std::string::npos) {
    ThrowErrno(env, EINVAL, syscall, path);
    return false;
  }
  memset(addr, 0, sizeof(*addr));
  if (name.size() + 1 > sizeof(addr->sun_path)) {
    std::string message = std::string(syscall) + " " + path + ": abstract name is longer than " +
                          std::to_string(sizeof(addr->sun_path) - 1) + " bytes";
    ErrnoError(env, ENAMETOOLONG, syscall, path, message).ThrowAsJavaScriptException();
    return false;
  }
  addr->sun_family = AF_UNIX;
  memcpy(addr->sun_path + 1, name.data(), name.size());
  *len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
  return true;
}

// How long sendDatagram waits for room in the receiver's queue. sd_notify blocks without limit;
// a bound keeps a stuck receiver from stalling the event loop for good.
constexpr int kDatagramSendTimeoutMs = 1000;

Napi::Value SendDatagram(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path;
  void* data;
  size_t len;
  sockaddr_un addr;
  socklen_t addrLen;
  if (!GetString(info, 0, "path", &path)) return {};
  if (!GetTypedArray(info, 1, "data", napi_uint8_array, &data, &len)) return {};
  if (!MakeNamedAddress(env, "sendto", path, &addr, &addrLen)) return {};

  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    ThrowErrno(env, errno, "socket");
    return {};
  }
  timeval timeout = {kDatagramSendTimeoutMs / 1000, (kDatagramSendTimeoutMs % 1000) * 1000};
  if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout)) < 0) {
    int err = errno;
    CloseQuietly(fd);
    ThrowErrno(env, err, "setsockopt");
    return {};
  }
  ssize_t n;
  do {
    n = sendto(fd, data, len, MSG_NOSIGNAL, reinterpret_cast<sockaddr*>(&addr), addrLen);
  } while (n < 0 && errno == EINTR);
  int err = errno;
  CloseQuietly(fd);
  if (n < 0) {
    ThrowErrno(env, err == EWOULDBLOCK ? EAGAIN : err, "sendto", path);
    return {};
  }
  return {};
}

bool GetSocketInt(Napi::Env env, int fd, int option, int* value) {
  socklen_t len = sizeof(*value);
  if (getsockopt(fd, SOL_SOCKET, option, value, &len) < 0) {
    ThrowErrno(env, errno, "getsockopt");
    return false;
  }
  return true;
}

void ThrowFdError(Napi::Env env, int err, const char* syscall, int fd, const std::string& why) {
  std::string message = "fd " + std::to_string(fd) + " " + why;
  ErrnoError(env, err, syscall, {}, message).ThrowAsJavaScriptException();
}

Napi::Value InspectListenSocket(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!GetFd(info, 0, &fd)) return {};

  struct stat st;
  if (fstat(fd, &st) < 0) {
    int err = errno;
    if (err == EBADF) {
      ThrowFdError(env, EBADF, "fstat", fd, "is not open");
    } else {
      ThrowErrno(env, err, "fstat");
    }
    return {};
  }
  if (!S_ISSOCK(st.st_mode)) {
    ThrowFdError(env, ENOTSOCK, "fstat", fd, "is not a socket");
    return {};
  }
  int domain, type, accepting;
  if (!GetSocketInt(env, fd, SO_DOMAIN, &domain)) return {};
  if (domain != AF_UNIX) {
    const char* name = domain == AF_INET ? "AF_INET" : domain == AF_INET6 ? "AF_INET6" : nullptr;
    std::string family = name ? name : "address family " + std::to_string(domain);
    ThrowFdError(env, EINVAL, "getsockopt", fd, "is an " + family + " socket, not AF_UNIX");
    return {};
  }
  if (!GetSocketInt(env, fd, SO_TYPE, &type)) return {};
  if (type != SOCK_STREAM) {
    const char* name = type == SOCK_DGRAM       ? "a datagram (SOCK_DGRAM)"
                       : type == SOCK_SEQPACKET ? "a SOCK_SEQPACKET"
                                                : "a non-stream";
    ThrowFdError(env, EINVAL, "getsockopt", fd,
                      std::string("is ") + name + " socket, not a stream socket");
    return {};
  }
  if (!GetSocketInt(env, fd, SO_ACCEPTCONN, &accepting)) return {};
  if (!accepting) {
    ThrowFdError(env, EINVAL, "getsockopt", fd, "is a unix stream socket but not listening");
    return {};
  }

  sockaddr_un addr;
  socklen_t addrLen = sizeof(addr);
  memset(&addr, 0, sizeof(addr));
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &addrLen) < 0) {
    ThrowErrno(env, errno, "getsockname");
    return {};
  }
  size_t nameLen = addrLen > offsetof(sockaddr_un, sun_path)
                       ? std::min<size_t>(addrLen - offsetof(sockaddr_un, sun_path),
                                          sizeof(addr.sun_path))
                       : 0;
  std::string path;
  if (nameLen > 0 && addr.sun_path[0] == '\0') {
    path = "@" + std::string(addr.sun_path + 1, nameLen - 1);
  } else {
    path = std::string(addr.sun_path, strnlen(addr.sun_path, nameLen));
  }

  int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
    ThrowErrno(env, errno, "fcntl");
    return {};
  }
  int fdFlags = fcntl(fd, F_GETFD);
  if (fdFlags < 0 || fcntl(fd, F_SETFD, fdFlags | FD_CLOEXEC) < 0) {
    ThrowErrno(env, errno, "fcntl");
    return {};
  }
  return Napi::String::New(env, path);
}

Napi::Value MkFifo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path;
  int64_t mode;
  if (!GetString(info, 0, "path", &path)) return {};
  if (!GetInt(info, 1, "mode", 0, 07777, &mode)) return {};
  if (path.empty() || path.find('\0') != std::string::npos) {
    ThrowErrno(env, EINVAL, "mkfifo", path);
    return {};
  }
  if (::mkfifo(path.c_str(), static_cast<mode_t>(mode)) < 0) {
    ThrowErrno(env, errno, "mkfifo", path);
    return {};
  }
  return {};
}

}  // namespace

void InitSocket(Napi::Env env, Napi::Object exports) {
  exports.Set("listenUnix", Napi::Function::New(env, ListenUnix, "listenUnix"));
  exports.Set("listenStream", Napi::Function::New(env, ListenStream, "listenStream"));
  exports.Set("accept", Napi::Function::New(env, Accept, "accept"));
  exports.Set("connectUnix", Napi::Function::New(env, ConnectUnix, "connectUnix"));
  exports.Set("socketpair", Napi::Function::New(env, SocketPair, "socketpair"));
  exports.Set("sendmsg", Napi::Function::New(env, SendMsg, "sendmsg"));
  exports.Set("recvmsg", Napi::Function::New(env, RecvMsg, "recvmsg"));
  exports.Set("close", Napi::Function::New(env, Close, "close"));
  exports.Set("sendDatagram", Napi::Function::New(env, SendDatagram, "sendDatagram"));
  exports.Set("inspectListenSocket",
              Napi::Function::New(env, InspectListenSocket, "inspectListenSocket"));
  exports.Set("mkfifo", Napi::Function::New(env, MkFifo, "mkfifo"));
  exports.Set("MAX_FDS", Napi::Number::New(env, kMaxFds));
}

}  // namespace tswl

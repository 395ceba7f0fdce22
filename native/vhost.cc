// eventfds for the vhost-user backend (tswl-host --vhost-user): the VMM hands the backend one
// eventfd per virtqueue to be kicked through and one to call (interrupt) the guest through.

#include "vhost.h"

#include <errno.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "args.h"
#include "errors.h"

namespace tswl {
namespace {

// eventfd(initval, EFD_CLOEXEC | EFD_NONBLOCK).
Napi::Value Eventfd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t init;
  if (!GetInt(info, 0, "initval", 0, UINT32_MAX, &init)) return {};
  int fd = eventfd(static_cast<unsigned>(init), EFD_CLOEXEC | EFD_NONBLOCK);
  if (fd < 0) {
    ThrowErrno(env, errno, "eventfd");
    return {};
  }
  return Napi::Number::New(env, fd);
}

// Adds 1 to the counter. Returns false when the counter is full (EAGAIN): the reader has not
// consumed 2^64 - 2 signals, and one more changes nothing it will see.
Napi::Value EventfdSignal(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!GetFd(info, 0, &fd)) return {};
  uint64_t one = 1;
  ssize_t n;
  do n = write(fd, &one, sizeof one);
  while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN) return Napi::Boolean::New(env, false);
    ThrowErrno(env, errno, "write");
    return {};
  }
  return Napi::Boolean::New(env, true);
}

// Reads and resets the counter: its value (as a double; saturates far above any real count),
// or 0 when it was 0 (EAGAIN on a nonblocking eventfd).
Napi::Value EventfdDrain(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!GetFd(info, 0, &fd)) return {};
  uint64_t value = 0;
  ssize_t n;
  do n = read(fd, &value, sizeof value);
  while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN) return Napi::Number::New(env, 0);
    ThrowErrno(env, errno, "read");
    return {};
  }
  return Napi::Number::New(env, static_cast<double>(value));
}

}  // namespace

void InitVhost(Napi::Env env, Napi::Object exports) {
  exports.Set("eventfd", Napi::Function::New(env, Eventfd, "eventfd"));
  exports.Set("eventfdSignal", Napi::Function::New(env, EventfdSignal, "eventfdSignal"));
  exports.Set("eventfdDrain", Napi::Function::New(env, EventfdDrain, "eventfdDrain"));
}

}  // namespace tswl

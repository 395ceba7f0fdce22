// DRM ioctls for the guest's virtio-gpu device. The structs are laid out in TypeScript
// (src/virtgpu/drm-uapi.ts); this only issues the ioctl, patching the addresses of the given
// buffers into the struct's pointer fields first, since JavaScript cannot name an address.

#include "drm.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>

#include <vector>

#include "args.h"
#include "errors.h"

namespace tswl {
namespace {

// drmIoctl(fd, request, arg: Uint8Array, pointers?: [offset, Uint8Array][]): 0, or throws the
// errno. Each pointer buffer's address is written (as a u64) at `offset` in `arg`; the buffers
// are only used during the call. EINTR and EAGAIN are retried, as libdrm's drmIoctl does.
Napi::Value DrmIoctl(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  int64_t request;
  void* arg;
  size_t argLength;
  if (!GetFd(info, 0, &fd) || !GetInt(info, 1, "request", 0, UINT32_MAX, &request) ||
      !GetTypedArray(info, 2, "arg", napi_uint8_array, &arg, &argLength)) {
    return {};
  }
  if (argLength != ((static_cast<uint32_t>(request) >> 16) & 0x3fff)) {
    Fail(env, "arg's length differs from the size in the ioctl number", true);
    return {};
  }
  if (info.Length() > 3 && !info[3].IsUndefined()) {
    if (!info[3].IsArray()) return Fail(env, "pointers must be an array"), Napi::Value();
    Napi::Array pointers = info[3].As<Napi::Array>();
    for (uint32_t i = 0; i < pointers.Length(); i++) {
      Napi::Value entry = pointers.Get(i);
      if (!entry.IsArray() || entry.As<Napi::Array>().Length() != 2) {
        return Fail(env, "each pointer must be [offset, Uint8Array]"), Napi::Value();
      }
      Napi::Array pair = entry.As<Napi::Array>();
      Napi::Value off = pair.Get(0u);
      Napi::Value buf = pair.Get(1u);
      if (!off.IsNumber() || !buf.IsTypedArray()) {
        return Fail(env, "each pointer must be [offset, Uint8Array]"), Napi::Value();
      }
      double o = off.As<Napi::Number>().DoubleValue();
      if (!(o >= 0 && o + 8 <= static_cast<double>(argLength)) || static_cast<int64_t>(o) != o) {
        return Fail(env, "pointer offset out of range", true), Napi::Value();
      }
      Napi::TypedArray ta = buf.As<Napi::TypedArray>();
      uint8_t* base = static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
      uint64_t address = reinterpret_cast<uintptr_t>(base);
      memcpy(static_cast<uint8_t*>(arg) + static_cast<size_t>(o), &address, sizeof address);
    }
  }
  int r;
  do r = ioctl(fd, static_cast<unsigned long>(request), arg);
  while (r < 0 && (errno == EINTR || errno == EAGAIN));
  if (r < 0) {
    ThrowErrno(env, errno, "ioctl");
    return {};
  }
  return Napi::Number::New(env, r);
}

}  // namespace

void InitDrm(Napi::Env env, Napi::Object exports) {
  exports.Set("drmIoctl", Napi::Function::New(env, DrmIoctl, "drmIoctl"));
}

}  // namespace tswl

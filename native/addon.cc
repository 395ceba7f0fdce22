// tswl_native: what Node cannot do for the proxy. No policy lives here.
#include <napi.h>

#include "drm.h"
#include "memory.h"
#include "poller.h"
#include "socket.h"
#include "vhost.h"

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  tswl::InitSocket(env, exports);
  tswl::InitMemory(env, exports);
  tswl::InitVhost(env, exports);
  tswl::InitDrm(env, exports);
  exports.Set("Poller", tswl::Poller::Define(env));
  exports.Set("READABLE", Napi::Number::New(env, UV_READABLE));
  exports.Set("WRITABLE", Napi::Number::New(env, UV_WRITABLE));
  exports.Set("DISCONNECT", Napi::Number::New(env, UV_DISCONNECT));
  return exports;
}

}  // namespace

NODE_API_MODULE(tswl_native, Init)

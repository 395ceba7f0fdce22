#pragma once

#include <napi.h>
#include <uv.h>

#include <memory>

namespace tswl {

// Readiness of one fd on Node's event loop (a uv_poll_t). While polling is on, the JS object is
// kept alive by a reference; close() (or garbage collection of an idle Poller) releases the handle
// with uv_close, and the handle's memory is freed in its close callback.
class Poller : public Napi::ObjectWrap<Poller> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit Poller(const Napi::CallbackInfo& info);
  ~Poller() override;

 private:
  Napi::Value Update(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);

  static void OnPoll(uv_poll_t* handle, int status, int events);
  void SetActive(bool active);
  void CloseHandle();

  int fd_ = -1;
  uv_poll_t* handle_ = nullptr;  // null once closed
  bool active_ = false;          // polling, and holding a reference to the JS object
  int events_ = 0;               // what it polls for now: an update to the same costs nothing
  bool inCallback_ = false;
  Napi::FunctionReference callback_;  // weak; the JS object's `callback` property holds it
  std::unique_ptr<Napi::AsyncContext> context_;
};

}  // namespace tswl

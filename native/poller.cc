#include "poller.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>

#include "args.h"
#include "errors.h"

namespace tswl {

Napi::Function Poller::Define(Napi::Env env) {
  return DefineClass(env, "Poller",
                     {
                         InstanceMethod<&Poller::Update>("update"),
                         InstanceMethod<&Poller::Close>("close"),
                     });
}

Poller::Poller(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Poller>(info) {
  Napi::Env env = info.Env();
  if (!GetFd(info, 0, &fd_)) return;
  if (!info[1].IsFunction()) {
    Fail(env, "callback must be a function");
    return;
  }
  uv_loop_t* loop = nullptr;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok) {
    Napi::Error::New(env, "Poller: no event loop").ThrowAsJavaScriptException();
    return;
  }
  auto* handle = new uv_poll_t;
  int r = uv_poll_init(loop, handle, fd_);
  if (r < 0) {
    delete handle;  // not registered with the loop when init fails
    ThrowErrno(env, -r, "uv_poll_init");
    return;
  }
  handle->data = this;
  handle_ = handle;
  // The object holds its callback, and the native side holds it only weakly, so that a callback
  // referring back to its Poller forms an ordinary cycle the garbage collector can free.
  Napi::Function callback = info[1].As<Napi::Function>();
  info.This().As<Napi::Object>().DefineProperty(
      Napi::PropertyDescriptor::Value("callback", callback, napi_default));
  callback_ = Napi::Weak(callback);
  context_ = std::make_unique<Napi::AsyncContext>(env, "tswl.Poller");
}

Poller::~Poller() {
  // Reached on garbage collection of an idle Poller, or for every Poller when the environment is
  // torn down (a worker thread ending), whose loop must then have no open handles left. The
  // reference is being finalized, so it is not touched.
  active_ = false;
  CloseHandle();
}

Napi::Value Poller::Update(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t events;
  if (!GetInt(info, 0, "events", 0, UV_READABLE | UV_WRITABLE | UV_DISCONNECT, &events)) return {};
  if (!handle_) {
    Napi::Error::New(env, "Poller.update: the poller is closed").ThrowAsJavaScriptException();
    return {};
  }
  events &= UV_READABLE | UV_WRITABLE;
  // the relay asks for what it wants after every message; only changes reach the kernel
  if (events == events_) return {};
  if (events == 0) {
    uv_poll_stop(handle_);
    events_ = 0;
    SetActive(false);
    return {};
  }
  // libuv aborts the process if the fd it is asked to watch is no longer open; report it here.
  if (fcntl(fd_, F_GETFD) < 0) {
    ThrowErrno(env, errno, "Poller.update");
    return {};
  }
  int r = uv_poll_start(handle_, static_cast<int>(events) | UV_DISCONNECT, OnPoll);
  if (r < 0) {
    ThrowErrno(env, -r, "uv_poll_start");
    return {};
  }
  events_ = static_cast<int>(events);
  SetActive(true);
  return {};
}

Napi::Value Poller::Close(const Napi::CallbackInfo& info) {
  CloseHandle();
  callback_.Reset();
  if (!inCallback_) context_.reset();  // else OnPoll drops it once the callback has returned
  return {};
}

void Poller::SetActive(bool active) {
  if (active == active_) return;
  active_ = active;
  if (active) {
    Ref();
  } else {
    Unref();
  }
}

void Poller::CloseHandle() {
  if (!handle_) return;
  events_ = 0;
  SetActive(false);
  handle_->data = nullptr;
  uv_close(reinterpret_cast<uv_handle_t*>(handle_),
           [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
  handle_ = nullptr;
}

void Poller::OnPoll(uv_poll_t* handle, int status, int events) {
  auto* self = static_cast<Poller*>(handle->data);
  if (!self) return;
  Napi::Env env = self->Env();
  Napi::HandleScope scope(env);
  Napi::Object receiver = self->Value();  // holds the object while its callback runs

  Napi::Value error = env.Null();
  if (status < 0) {
    // libuv has stopped the handle. It reports every POLLERR as EBADF; a socket knows better.
    int err = -status;
    int soError = 0;
    socklen_t len = sizeof(soError);
    if (status == UV_EBADF && getsockopt(self->fd_, SOL_SOCKET, SO_ERROR, &soError, &len) == 0 &&
        soError != 0) {
      err = soError;
    }
    error = Napi::String::New(env, ErrnoName(err));
    events = 0;
    self->events_ = 0;
    self->SetActive(false);
  }
  napi_value args[] = {
      Napi::Number::New(env, events & (UV_READABLE | UV_WRITABLE | UV_DISCONNECT)),
      error,
  };
  Napi::Value callback = self->callback_.Value();  // alive: the receiver holds it
  if (!callback.IsFunction()) return;
  // MakeCallback, unlike Call, runs in the Poller's async context and afterwards drains
  // process.nextTick and promise jobs, as Node does after each of its own I/O callbacks.
  self->inCallback_ = true;
  callback.As<Napi::Function>().MakeCallback(receiver, 2, args, *self->context_);
  self->inCallback_ = false;
  if (!self->handle_) self->context_.reset();  // closed by the callback
  if (env.IsExceptionPending()) {
    // As for Node's own handles: an exception thrown by the callback is an uncaught exception.
    napi_fatal_exception(env, env.GetAndClearPendingException().Value());
  }
}

}  // namespace tswl

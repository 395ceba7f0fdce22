#include "errors.h"

#include <string.h>
#include <uv.h>

namespace tswl {

const char* ErrnoName(int err) {
  const char* name = strerrorname_np(err);  // glibc >= 2.32
  return name ? name : uv_err_name(-err);
}

static const char* Describe(int err) {
  const char* text = strerrordesc_np(err);  // untranslated and thread-safe, unlike strerror()
  return text ? text : uv_strerror(-err);
}

Napi::Error ErrnoError(Napi::Env env, int err, const char* syscall, const std::string& path,
                       const std::string& message) {
  std::string text = message;
  if (text.empty()) {
    text = syscall;
    if (!path.empty()) text += " " + path;
    text += ": ";
    text += Describe(err);
  }
  Napi::Error error = Napi::Error::New(env, text);
  Napi::Object obj = error.Value();
  obj.Set("code", Napi::String::New(env, ErrnoName(err)));
  obj.Set("errno", Napi::Number::New(env, -err));
  obj.Set("syscall", Napi::String::New(env, syscall));
  if (!path.empty()) obj.Set("path", Napi::String::New(env, path));
  return error;
}

void ThrowErrno(Napi::Env env, int err, const char* syscall, const std::string& path) {
  ErrnoError(env, err, syscall, path).ThrowAsJavaScriptException();
}

}  // namespace tswl

// Argument checks for the exported functions. Each returns false with a pending TypeError or
// RangeError; callers then return immediately. The TypeScript wrapper types the same arguments,
// so these only guard the process against misuse (a wrong fd number must never reach libuv).
#pragma once

#include <napi.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>

namespace tswl {

inline bool Fail(Napi::Env env, const std::string& message, bool range = false) {
  if (range) {
    Napi::RangeError::New(env, message).ThrowAsJavaScriptException();
  } else {
    Napi::TypeError::New(env, message).ThrowAsJavaScriptException();
  }
  return false;
}

// An integer argument in [min, max].
inline bool GetInt(const Napi::CallbackInfo& info, size_t i, const char* name, int64_t min,
                   int64_t max, int64_t* out) {
  Napi::Value v = info[i];
  if (!v.IsNumber()) return Fail(info.Env(), std::string(name) + " must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= static_cast<double>(min) && d <= static_cast<double>(max)) || std::trunc(d) != d) {
    return Fail(info.Env(), std::string(name) + " is out of range", true);
  }
  *out = static_cast<int64_t>(d);
  return true;
}

inline bool GetFd(const Napi::CallbackInfo& info, size_t i, int* fd) {
  int64_t v;
  if (!GetInt(info, i, "fd", 0, INT32_MAX, &v)) return false;
  *fd = static_cast<int>(v);
  return true;
}

// A typed array of the given type; data points at its first element.
inline bool GetTypedArray(const Napi::CallbackInfo& info, size_t i, const char* name,
                          napi_typedarray_type want, void** data, size_t* length) {
  napi_env env = info.Env();
  napi_value v = info[i];
  bool is = false;
  napi_typedarray_type type;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is ||
      napi_get_typedarray_info(env, v, &type, length, data, nullptr, nullptr) != napi_ok ||
      type != want) {
    const char* kind = want == napi_uint8_array ? "a Uint8Array" : "an Int32Array";
    return Fail(info.Env(), std::string(name) + " must be " + kind);
  }
  return true;
}

// A byte range [start, end) of a Uint8Array argument at i, with start and end at i + 1, i + 2.
inline bool GetByteRange(const Napi::CallbackInfo& info, size_t i, uint8_t** data, size_t* len) {
  void* base;
  size_t length;
  int64_t start, end;
  if (!GetTypedArray(info, i, "buf", napi_uint8_array, &base, &length)) return false;
  if (!GetInt(info, i + 1, "start", 0, length, &start)) return false;
  if (!GetInt(info, i + 2, "end", start, length, &end)) return false;
  *data = static_cast<uint8_t*>(base) + start;
  *len = static_cast<size_t>(end - start);
  return true;
}

inline bool GetString(const Napi::CallbackInfo& info, size_t i, const char* name,
                      std::string* out) {
  Napi::Value v = info[i];
  if (!v.IsString()) return Fail(info.Env(), std::string(name) + " must be a string");
  *out = v.As<Napi::String>().Utf8Value();
  return true;
}

}  // namespace tswl

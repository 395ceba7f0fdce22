// Node-style system errors for the addon: Error objects with .code, .errno, .syscall and .path.
#pragma once

#include <napi.h>

#include <string>

namespace tswl {

// The errno name ("ENOENT"), or libuv's description for numbers glibc does not know.
const char* ErrnoName(int err);

// Builds `<syscall> <path>: <description>` (path omitted when empty) unless `message` is given.
// .errno is negative, as in Node's own system errors (util.getSystemErrorName accepts it).
Napi::Error ErrnoError(Napi::Env env, int err, const char* syscall, const std::string& path = {},
                       const std::string& message = {});

// Throws ErrnoError(...) as a pending JS exception.
void ThrowErrno(Napi::Env env, int err, const char* syscall, const std::string& path = {});

}  // namespace tswl

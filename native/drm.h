// DRM ioctls for the guest's virtio-gpu device (tswl-proxy --virtio-gpu on a real VM).
#pragma once

#include <napi.h>

namespace tswl {

void InitDrm(Napi::Env env, Napi::Object exports);

}  // namespace tswl

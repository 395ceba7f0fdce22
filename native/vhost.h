// eventfds for the vhost-user backend: kick and call notifications of the virtqueues.
#pragma once

#include <napi.h>

namespace tswl {

void InitVhost(Napi::Env env, Napi::Object exports);

}  // namespace tswl

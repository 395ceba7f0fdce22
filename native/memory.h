// Shared memory, pipes and pixel copies: memfds, mmap, damage-rectangle copies that survive a
// client truncating its pool, giving memory back when quiet, plus the seqpacket socket of the
// local link.
#pragma once

#include <napi.h>

namespace tswl {

void InitMemory(Napi::Env env, Napi::Object exports);

}  // namespace tswl

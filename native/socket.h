#pragma once

#include <napi.h>

namespace tswl {

// Unix sockets with fd passing: listenUnix, accept, connectUnix, socketpair, sendmsg, recvmsg, close;
// for systemd and the log control pipe: sendDatagram, inspectListenSocket, mkfifo.
void InitSocket(Napi::Env env, Napi::Object exports);

}  // namespace tswl

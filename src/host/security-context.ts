// Each VM in its own wp_security_context_v1, when the compositor offers the manager: tswl-host
// listens on a private socket, hands it to the compositor with the VM's labels (sandbox engine
// "tswl-host", app_id, instance id), and connects that VM's channels to it, so the compositor's
// own rules for sandboxed clients apply as a second wall behind tswl-host's filter.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  writeWpSecurityContextManagerV1CreateListener,
  writeWpSecurityContextV1Commit,
  writeWpSecurityContextV1SetAppId,
  writeWpSecurityContextV1SetInstanceId,
  writeWpSecurityContextV1SetSandboxEngine,
} from '../generated/security-context-v1.js';
import {
  writeWlDisplayGetRegistry,
  writeWlDisplaySync,
  writeWlRegistryBind,
} from '../generated/wayland.js';
import * as native from '../native/index.js';
import { closeQuietly } from '../wire/fd-queue.js';
import { MessageWriter } from '../wire/writer.js';
import type { CompositorAccess } from './wayland.js';

const MANAGER = 'wp_security_context_manager_v1';
/** How long tswl-host waits for the compositor to answer while setting a context up. */
const ANSWER_TIMEOUT_MS = 2000;
const DISPLAY = 1;

/** The compositor's manager global, or null when it offers none. */
export interface SecurityContextManager {
  readonly name: number;
}

/**
 * A short synchronous conversation with the compositor: requests out, then events read until the
 * final wl_display.sync is done. Used only while a VM connects (a few hundred microseconds on a
 * local compositor), never per message.
 */
function converse(
  socket: string,
  write: (w: MessageWriter) => void,
  /** The id of the final wl_callback: the next unused id after what `write` made. */
  syncId: number,
  fds: number[] = [],
): { globals: Map<string, number>; error: string | null } {
  const fd = native.connectUnix(socket);
  try {
    const w = new MessageWriter(1024);
    write(w);
    writeWlDisplaySync(w, DISPLAY, syncId);
    if (native.sendmsg(fd, w.buf, 0, w.len, fds, fds.length) !== w.len)
      throw new Error('the compositor did not take the request');
    const globals = new Map<string, number>();
    let data = Buffer.alloc(0);
    const buf = Buffer.alloc(65536);
    const out = new Int32Array(native.RECV_OUT_LENGTH);
    const deadline = Date.now() + ANSWER_TIMEOUT_MS;
    for (;;) {
      const left = deadline - Date.now();
      if (left <= 0 || !native.waitReadable(fd, left))
        throw new Error('the compositor did not answer');
      const n = native.recvmsg(fd, buf, 0, buf.length, out);
      for (let i = 0; i < out[0]; i++) closeQuietly(out[2 + i]);
      if (n === 0) throw new Error('the compositor closed the connection');
      if (n < 0) continue;
      data = Buffer.concat([data, buf.subarray(0, n)]);
      let pos = 0;
      while (data.length - pos >= 8) {
        const id = data.readUInt32LE(pos);
        const word = data.readUInt32LE(pos + 4);
        const size = word >>> 16;
        if (size < 8 || data.length - pos < size) break;
        const opcode = word & 0xffff;
        const body = data.subarray(pos + 8, pos + size);
        pos += size;
        if (id === DISPLAY && opcode === 0) {
          const len = body.readUInt32LE(8);
          return { globals, error: body.toString('utf8', 12, 12 + Math.max(0, len - 1)) };
        }
        if (id === syncId && opcode === 0) return { globals, error: null };
        if (id === 2 && opcode === 0 && body.length >= 8) {
          // wl_registry.global(name, interface, version)
          const len = body.readUInt32LE(4);
          globals.set(body.toString('latin1', 8, 8 + Math.max(0, len - 1)), body.readUInt32LE(0));
        }
      }
      data = data.subarray(pos);
    }
  } finally {
    closeQuietly(fd);
  }
}

/** Asks the compositor whether it offers security contexts (once, at start-up). */
export function findSecurityContextManager(socket: string): SecurityContextManager | null {
  const { globals, error } = converse(socket, (w) => writeWlDisplayGetRegistry(w, DISPLAY, 2), 3);
  if (error) throw new Error(error);
  const name = globals.get(MANAGER);
  return name === undefined ? null : { name };
}

/**
 * One VM's security context: a private listening socket the compositor serves with the VM's
 * labels. Closing it hangs up close_fd, and the compositor stops listening.
 */
export function openSecurityContext(
  socket: string,
  manager: SecurityContextManager,
  appId: string,
  instanceId: string,
): CompositorAccess {
  // systemd's RuntimeDirectory= is the one writable place of a sandboxed tswl-host@.service
  const parent = process.env.RUNTIME_DIRECTORY || process.env.XDG_RUNTIME_DIR || tmpdir();
  const dir = mkdtempSync(join(parent, 'tswl-host-vm-'));
  const path = join(dir, 'wayland');
  let listener: native.Listener | null = null;
  let closeRead = -1;
  let closeWrite = -1;
  try {
    listener = native.listenUnix(path);
    [closeRead, closeWrite] = native.pipe();
    const { error } = converse(
      socket,
      (w) => {
        writeWlDisplayGetRegistry(w, DISPLAY, 2);
        writeWlRegistryBind(w, 2, manager.name, MANAGER, 1, 3);
        writeWpSecurityContextManagerV1CreateListener(w, 3, 4, listener!.fd, closeRead);
        writeWpSecurityContextV1SetSandboxEngine(w, 4, 'tswl-host');
        writeWpSecurityContextV1SetAppId(w, 4, appId);
        writeWpSecurityContextV1SetInstanceId(w, 4, instanceId);
        writeWpSecurityContextV1Commit(w, 4);
      },
      5,
      [listener.fd, closeRead],
    );
    if (error) throw new Error(`the compositor refused the security context: ${error}`);
  } catch (e) {
    if (closeWrite >= 0) closeQuietly(closeWrite);
    rmSync(dir, { recursive: true, force: true });
    throw e;
  } finally {
    // the compositor has its own copies now
    if (listener) {
      closeQuietly(listener.fd);
      closeQuietly(listener.lockFd);
    }
    if (closeRead >= 0) closeQuietly(closeRead);
  }
  return {
    connect: () => native.connectUnix(path),
    close: () => {
      closeQuietly(closeWrite);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

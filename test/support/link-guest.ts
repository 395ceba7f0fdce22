// A test guest on the local link: it speaks the envelope over SOCK_SEQPACKET to a real
// bin/tswl-host, with GUEST blobs in memfds it maps to read the rings. Replies are matched by tag.

import { readdirSync } from 'node:fs';
import { expect } from 'vitest';
import * as native from '../../src/native/index.js';
import { VirtioGpuCmd, VirtioGpuResp } from '../../src/virtgpu/protocol.js';
import {
  type Fence,
  RING,
  type WlEvent,
  cdInit,
  cdPoll,
  ctxCreate,
  guestBlob,
  parseRing,
  resourceCmd,
  sleep,
  submit,
  wlEvents,
} from './virtgpu-commands.js';

/** A test guest: speaks the local-link envelope; replies are matched by tag. */
export class LinkGuest {
  readonly fd: number;
  private tag = 1;
  private fenceId = 1n;
  private readonly replies = new Map<number, { response: Buffer; fds: number[] }>();
  private readonly buf = Buffer.alloc(70000);
  private readonly out = new Int32Array(native.RECV_OUT_LENGTH);
  eof = false;
  /** Memory files of GUEST blobs, mapped to read the rings. */
  private readonly maps = new Map<number, { fd: number; mem: Buffer }>();

  constructor(path: string) {
    this.fd = native.connectSeqpacket(path);
  }

  post(cmd: Buffer, fds: number[] = []): number {
    const tag = this.tag++;
    const packet = Buffer.concat([Buffer.alloc(8), cmd]);
    packet.writeUInt32LE(tag, 0);
    expect(native.sendmsg(this.fd, packet, 0, packet.length, fds, fds.length)).toBe(packet.length);
    return tag;
  }

  /** Posts without waiting for room: the tag, or null while the host is not reading the link. */
  tryPost(cmd: Buffer, fds: number[] = []): number | null {
    const packet = Buffer.concat([Buffer.alloc(8), cmd]);
    packet.writeUInt32LE(this.tag, 0);
    const n = native.sendmsg(this.fd, packet, 0, packet.length, fds, fds.length);
    if (n < 0) return null;
    expect(n).toBe(packet.length);
    return this.tag++;
  }

  /** Reads the replies that have arrived, without waiting; how many came. */
  receive(): number {
    let count = 0;
    for (;;) {
      const n = native.recvmsg(this.fd, this.buf, 0, this.buf.length, this.out);
      if (n < 0) return count;
      if (n === 0) {
        this.eof = true;
        return count;
      }
      const fds = Array.from(this.out.subarray(2, 2 + this.out[0]));
      this.replies.set(this.buf.readUInt32LE(0), {
        response: Buffer.from(this.buf.subarray(8, n)),
        fds,
      });
      count++;
    }
  }

  /** Takes the replies received so far (their fds are the caller's). */
  takeReplies(): Map<number, { response: Buffer; fds: number[] }> {
    this.receive();
    const all = new Map(this.replies);
    this.replies.clear();
    return all;
  }

  async reply(tag: number, timeoutMs = 5000): Promise<{ response: Buffer; fds: number[] }> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = this.replies.get(tag);
      if (r) {
        this.replies.delete(tag);
        return r;
      }
      if (this.eof) throw new Error('the host closed the link');
      if (Date.now() > deadline) throw new Error(`no reply to tag ${tag}`);
      if (this.receive() === 0 && !this.eof) await sleep(1);
    }
  }

  async call(cmd: Buffer, fds: number[] = []): Promise<{ response: Buffer; fds: number[] }> {
    return this.reply(this.post(cmd, fds));
  }

  async type(cmd: Buffer, fds: number[] = []): Promise<number> {
    const r = await this.call(cmd, fds);
    r.fds.forEach((fd) => native.close(fd));
    return r.response.readUInt32LE(0);
  }

  fence(ring?: number): Fence {
    return { id: this.fenceId++, ring };
  }

  /** A GUEST blob backed by a fresh memfd, mapped here to read what the host writes. */
  async ring(resId: number, ctxId: number): Promise<Buffer> {
    const fd = native.memfdCreate('ring', RING);
    const mem = native.mmap(fd, 0, RING, true);
    this.maps.set(resId, { fd, mem });
    expect(await this.type(guestBlob(resId, 0n, RING), [fd])).toBe(VirtioGpuResp.OK_NODATA);
    expect(await this.type(resourceCmd(VirtioGpuCmd.CTX_ATTACH_RESOURCE, resId, ctxId))).toBe(
      VirtioGpuResp.OK_NODATA,
    );
    return mem;
  }

  /** CTX_CREATE, both rings, INIT with a Wayland channel. */
  async context(ctxId: number): Promise<{ query: Buffer; channel: Buffer }> {
    expect(await this.type(ctxCreate(ctxId))).toBe(VirtioGpuResp.OK_NODATA);
    const query = await this.ring(ctxId * 10, ctxId);
    const channel = await this.ring(ctxId * 10 + 1, ctxId);
    expect(await this.type(submit(ctxId, cdInit(ctxId * 10, ctxId * 10 + 1)))).toBe(
      VirtioGpuResp.OK_NODATA,
    );
    return { query, channel };
  }

  async query(ctxId: number, cmds: Buffer): Promise<number> {
    return this.type(submit(ctxId, cmds, this.fence(0)));
  }

  /** POLLs ring 1 until `done` says the Wayland events seen so far are enough. */
  async pollUntil(
    ctxId: number,
    channel: Buffer,
    done: (events: WlEvent[]) => boolean,
    ids: { id: number; type: number; size: number }[] = [],
  ): Promise<WlEvent[]> {
    const events: WlEvent[] = [];
    let pending = Buffer.alloc(0);
    const deadline = Date.now() + 10000;
    while (!done(events)) {
      if (Date.now() > deadline) throw new Error('the expected events did not come');
      expect(await this.type(submit(ctxId, cdPoll(), this.fence(1)))).toBe(VirtioGpuResp.OK_NODATA);
      const m = parseRing(channel);
      if (m.cmd !== 'receive') continue;
      if (m.data.length === 0) throw new Error('the compositor hung up');
      ids.push(...m.ids);
      const split = wlEvents(Buffer.concat([pending, m.data]));
      events.push(...split.events);
      pending = Buffer.from(split.rest);
    }
    return events;
  }

  close(): void {
    for (const m of this.maps.values()) {
      native.munmap(m.mem);
      native.close(m.fd);
    }
    this.maps.clear();
    native.close(this.fd);
  }
}

export function fdCount(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

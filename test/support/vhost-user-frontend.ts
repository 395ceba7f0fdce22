// A vhost-user front-end for tests: a VMM and a guest driver in one, speaking the real protocol
// over a real Unix socket to tswl-host's back-end, with a memfd as guest RAM and split virtqueues
// laid out in it as a guest driver would, and a socketpair as the back-end channel on which
// SHMEM_MAP / SHMEM_UNMAP arrive. The message sequence is the one QEMU 11.1 sends (see the
// vm-harness reference, §8.2).
import { expect } from 'vitest';
import { VHOST_USER_FEATURES } from '../../src/host/vhost-user.js';
import { Flag, Req } from '../../src/host/vhost-user-protocol.js';
import * as native from '../../src/native/index.js';
import { VirtioGpuCmd, VirtioGpuFlag } from '../../src/virtgpu/protocol.js';

export const RAM_SIZE = 4 << 20;
export const GPA = 0x100000n; // guest-physical address of the RAM region
export const UADDR = 0x7f1200000000n; // where the "VMM" claims to have it mapped
export const QSIZE = 64;
export const QUEUE_AT = [0x1000, 0x4000]; // desc table; avail at +0x400; used at +0x800
export const CMD_AT = 0x10000;
export const RESP_AT = 0x20000;
export const QUERY_RING_AT = 0x30000;
export const CHANNEL_RING_AT = 0x31000;
export const NO_FENCE = undefined;

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function until<T>(what: string, f: () => T | null | undefined, ms = 3000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = f();
    if (v !== null && v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(2);
  }
}

/** Reads one whole message (header + payload, with fds) from a nonblocking socket. */
export async function readMessage(
  fd: number,
): Promise<{ req: number; flags: number; body: Buffer; fds: number[] }> {
  const hdr = Buffer.alloc(12);
  const out = new Int32Array(native.RECV_OUT_LENGTH);
  const fds: number[] = [];
  const readInto = async (buf: Buffer): Promise<void> => {
    let have = 0;
    await until('a vhost-user message', () => {
      const n = native.recvmsg(fd, buf, have, buf.length, out);
      for (let k = 0; k < out[0]; k++) fds.push(out[2 + k]);
      if (n === 0) throw new Error('the peer closed the socket');
      if (n > 0) have += n;
      return have === buf.length;
    });
  };
  await readInto(hdr);
  const body = Buffer.alloc(hdr.readUInt32LE(8));
  if (body.length > 0) await readInto(body);
  return { req: hdr.readUInt32LE(0), flags: hdr.readUInt32LE(4), body, fds };
}

export function message(req: number, body: Buffer, flags: number = Flag.VERSION): Buffer {
  const b = Buffer.alloc(12 + body.length);
  b.writeUInt32LE(req, 0);
  b.writeUInt32LE(flags, 4);
  b.writeUInt32LE(body.length, 8);
  body.copy(b, 12);
  return b;
}

export const u64 = (v: bigint | number): Buffer => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(v));
  return b;
};
export const state = (index: number, num: number): Buffer => {
  const b = Buffer.alloc(8);
  b.writeUInt32LE(index, 0);
  b.writeUInt32LE(num, 4);
  return b;
};

/** A VMM and a guest driver in one: drives the back-end as QEMU and Linux's virtio-gpu would. */
export class TestFrontend {
  readonly sock: number;
  readonly ramFd: number;
  readonly ram: Buffer;
  /** Our end of the back-end channel. */
  backendEnd = -1;
  readonly kick: number[] = [];
  readonly call: number[] = [];
  private availIdx = [0, 0];
  private usedSeen = [0, 0];

  constructor(path: string) {
    this.sock = native.connectUnix(path);
    this.ramFd = native.memfdCreate('guest-ram', RAM_SIZE);
    this.ram = native.mmap(this.ramFd, 0, RAM_SIZE, true);
  }

  send(req: number, body: Buffer, fds: number[] = [], flags: number = Flag.VERSION): void {
    const m = message(req, body, flags);
    expect(native.sendmsg(this.sock, m, 0, m.length, fds, fds.length)).toBe(m.length);
  }

  async request(req: number, body: Buffer = Buffer.alloc(0)): Promise<Buffer> {
    this.send(req, body);
    const r = await readMessage(this.sock);
    expect(r.req).toBe(req);
    expect(r.flags).toBe(Flag.VERSION | Flag.REPLY);
    return r.body;
  }

  /** A message with NEED_REPLY: resolves with the ack's value (0 = success). */
  async acked(req: number, body: Buffer, fds: number[] = []): Promise<bigint> {
    this.send(req, body, fds, Flag.VERSION | Flag.NEED_REPLY);
    const r = await readMessage(this.sock);
    expect(r.req).toBe(req);
    return r.body.readBigUInt64LE(0);
  }

  /** The handshake QEMU 11.1.3 performs with vhost-user-test-device-pci. */
  async handshake(): Promise<void> {
    expect((await this.request(Req.GET_FEATURES)).readBigUInt64LE(0)).toBe(0x140000019n);
    const proto = (await this.request(Req.GET_PROTOCOL_FEATURES)).readBigUInt64LE(0);
    expect(proto).toBe(0x418629n);
    this.send(Req.SET_PROTOCOL_FEATURES, u64(proto));
    expect((await this.request(Req.GET_QUEUE_NUM)).readBigUInt64LE(0)).toBe(2n);
    expect((await this.request(Req.GET_MAX_MEM_SLOTS)).readBigUInt64LE(0)).toBeGreaterThan(1n);
    const [mine, theirs] = native.socketpair();
    this.backendEnd = mine;
    expect(await this.acked(Req.SET_BACKEND_REQ_FD, Buffer.alloc(0), [theirs])).toBe(0n);
    native.close(theirs);
    this.send(Req.SET_OWNER, Buffer.alloc(0));
    expect((await this.request(Req.GET_FEATURES)).readBigUInt64LE(0)).toBe(VHOST_USER_FEATURES);
    for (let q = 0; q < 2; q++) {
      this.call[q] = native.eventfd(0);
      this.kick[q] = native.eventfd(0);
      expect(await this.acked(Req.SET_VRING_CALL, u64(q), [this.call[q]])).toBe(0n);
      expect(await this.acked(Req.SET_VRING_ERR, u64(q | 0x100))).toBe(0n);
    }
    const shmem = await this.request(Req.GET_SHMEM_CONFIG);
    expect(shmem.length).toBe(2056);
    expect(shmem.readUInt32LE(0)).toBe(2);
    expect(shmem.readBigUInt64LE(8)).toBe(0n);
    expect(shmem.readBigUInt64LE(16)).toBe(256n << 20n);
    const cfgReq = Buffer.alloc(12 + 16);
    cfgReq.writeUInt32LE(0, 0);
    cfgReq.writeUInt32LE(16, 4);
    const cfg = await this.request(Req.GET_CONFIG, cfgReq);
    expect(cfg.length).toBe(28);
    // events_read, events_clear, num_scanouts 1, num_capsets 1
    expect([0, 1, 2, 3].map((i) => cfg.readUInt32LE(12 + 4 * i))).toEqual([0, 0, 1, 1]);
    this.send(Req.SET_FEATURES, u64(0x140000019n));
    this.send(Req.SET_STATUS, u64(8), [], Flag.VERSION | Flag.NEED_REPLY);
    expect((await readMessage(this.sock)).body.readBigUInt64LE(0)).toBe(0n);
    expect((await this.request(Req.GET_STATUS)).readBigUInt64LE(0)).toBe(8n);
    const reg = Buffer.alloc(40);
    reg.writeBigUInt64LE(GPA, 8);
    reg.writeBigUInt64LE(BigInt(RAM_SIZE), 16);
    reg.writeBigUInt64LE(UADDR, 24);
    reg.writeBigUInt64LE(0n, 32);
    expect(await this.acked(Req.ADD_MEM_REG, reg, [this.ramFd])).toBe(0n);
    for (let q = 0; q < 2; q++) {
      this.send(Req.SET_VRING_NUM, state(q, QSIZE));
      this.send(Req.SET_VRING_BASE, state(q, 0));
      const addr = Buffer.alloc(40);
      addr.writeUInt32LE(q, 0);
      addr.writeBigUInt64LE(UADDR + BigInt(QUEUE_AT[q]), 8);
      addr.writeBigUInt64LE(UADDR + BigInt(QUEUE_AT[q] + 0x800), 16);
      addr.writeBigUInt64LE(UADDR + BigInt(QUEUE_AT[q] + 0x400), 24);
      this.send(Req.SET_VRING_ADDR, addr);
      this.send(Req.SET_VRING_KICK, u64(q), [this.kick[q]]);
    }
    for (let q = 0; q < 2; q++)
      expect(await this.acked(Req.SET_VRING_ENABLE, state(q, 1))).toBe(0n);
  }

  /** Puts a raw descriptor chain on queue `q`'s available ring and kicks. */
  post(q: number, descs: { addr: bigint; len: number; write: boolean }[], head = 0): void {
    const base = QUEUE_AT[q];
    descs.forEach((d, i) => {
      const at = base + 16 * ((head + i) % QSIZE);
      this.ram.writeBigUInt64LE(d.addr, at);
      this.ram.writeUInt32LE(d.len, at + 8);
      this.ram.writeUInt16LE((i + 1 < descs.length ? 1 : 0) | (d.write ? 2 : 0), at + 12);
      this.ram.writeUInt16LE((head + i + 1) % QSIZE, at + 14);
    });
    const avail = base + 0x400;
    this.ram.writeUInt16LE(head, avail + 4 + 2 * (this.availIdx[q] % QSIZE));
    this.availIdx[q] = (this.availIdx[q] + 1) & 0xffff;
    this.ram.writeUInt16LE(this.availIdx[q], avail + 2);
    native.eventfdSignal(this.kick[q]);
  }

  /** Waits for the next used element of queue `q`: {id, len}. */
  async used(q: number): Promise<{ id: number; len: number }> {
    const usedAt = QUEUE_AT[q] + 0x800;
    await until('a used buffer', () => this.ram.readUInt16LE(usedAt + 2) !== this.usedSeen[q]);
    expect(native.eventfdDrain(this.call[q])).toBeGreaterThan(0);
    const e = usedAt + 4 + 8 * (this.usedSeen[q] % QSIZE);
    this.usedSeen[q] = (this.usedSeen[q] + 1) & 0xffff;
    return { id: this.ram.readUInt32LE(e), len: this.ram.readUInt32LE(e + 4) };
  }

  /** One control command in two descriptors (command, response); resolves with the response. */
  async command(cmd: Buffer, respSize = 64): Promise<Buffer> {
    cmd.copy(this.ram, CMD_AT);
    this.ram.fill(0xee, RESP_AT, RESP_AT + respSize);
    this.post(0, [
      { addr: GPA + BigInt(CMD_AT), len: cmd.length, write: false },
      { addr: GPA + BigInt(RESP_AT), len: respSize, write: true },
    ]);
    const u = await this.used(0);
    expect(u.id).toBe(0);
    return Buffer.from(this.ram.subarray(RESP_AT, RESP_AT + u.len));
  }

  close(): void {
    for (const fd of [this.sock, this.ramFd, this.backendEnd, ...this.kick, ...this.call]) {
      if (fd >= 0) native.close(fd);
    }
    native.munmap(this.ram);
  }
}

export function hdr(type: number, size: number, ctxId = 0, fenceId?: bigint): Buffer {
  const b = Buffer.alloc(size);
  b.writeUInt32LE(type, 0);
  if (fenceId !== undefined) {
    b.writeUInt32LE(VirtioGpuFlag.FENCE | VirtioGpuFlag.INFO_RING_IDX, 4);
    b.writeBigUInt64LE(fenceId, 8);
  }
  b.writeUInt32LE(ctxId, 16);
  return b;
}

export function submit(ctxId: number, cmds: Buffer, fenceId?: bigint): Buffer {
  const b = Buffer.concat([hdr(VirtioGpuCmd.SUBMIT_3D, 32, ctxId, fenceId), cmds]);
  b.writeUInt32LE(cmds.length, 24);
  return b;
}

export function resourceCmd(type: number, resId: number, ctxId = 0): Buffer {
  const b = hdr(type, 32, ctxId);
  b.writeUInt32LE(resId, 24);
  return b;
}

// A VMM and a guest driver in one, for tests of tswl-host's vhost-user back-end: it speaks the
// real protocol over a real Unix socket (to a VhostUserServer in the test process, or to a
// bin/tswl-host --vhost-user), with a memfd as guest RAM and split virtqueues laid out in it as
// a guest driver would, and a socketpair as the back-end channel on which SHMEM_MAP / SHMEM_UNMAP
// arrive. The message sequence is the one QEMU 11.1 sends (see vm-harness reference, §8.2).
// On top of single commands it keeps up to 31 control chains in flight, and plays a cross-domain
// guest: contexts with their rings in guest RAM, SENDs and ring-1 POLLs.

import { expect } from 'vitest';
import { VHOST_USER_FEATURES } from '../../src/host/vhost-user.js';
import { Flag, Req } from '../../src/host/vhost-user-protocol.js';
import * as native from '../../src/native/index.js';
import { VirtioGpuCmd, VirtioGpuResp } from '../../src/virtgpu/protocol.js';
import {
  RING,
  type RingMessage,
  type WlEvent,
  cdInit,
  cdPoll,
  cdSend,
  ctxCreate,
  guestBlob,
  parseRing,
  resourceCmd,
  sleep,
  submit,
  wlEvents,
} from './virtgpu-commands.js';

export const RAM_SIZE = 8 << 20;
export const GPA = 0x100000n; // guest-physical address of the RAM region
export const UADDR = 0x7f1200000000n; // where the "VMM" claims to have it mapped
export const QSIZE = 64;
export const QUEUE_AT = [0x1000, 0x4000]; // desc table; avail at +0x400; used at +0x800
export const CMD_AT = 0x10000;
export const RESP_AT = 0x20000;
export const QUERY_RING_AT = 0x30000;
export const CHANNEL_RING_AT = 0x31000;

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
/** The body of ADD_MEM_REG / REM_MEM_REG for the one region of guest RAM. */
function ramRegion(): Buffer {
  const reg = Buffer.alloc(40);
  reg.writeBigUInt64LE(GPA, 8);
  reg.writeBigUInt64LE(BigInt(RAM_SIZE), 16);
  reg.writeBigUInt64LE(UADDR, 24);
  reg.writeBigUInt64LE(0n, 32);
  return reg;
}

/** Control chains in flight: slot k uses descriptors 2k and 2k + 1 and its own buffers. */
const SLOTS = 31;
const SLOTS_AT = 0x100000;
const SLOT_COMMAND = 0x10000;
const SLOT_SIZE = SLOT_COMMAND + 0x1000;
/** Rings of context n: the query ring at RINGS_AT + n * 0x2000, the channel ring 0x1000 later. */
const RINGS_AT = 0x40000;

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

  /** Where post() writes each queue's descriptors: in guest RAM, unless moved. */
  private readonly descTables: Buffer[];
  /** A second memory region holding a moved descriptor table. */
  private extra: { fd: number; map: Buffer } | null = null;

  constructor(path: string) {
    this.sock = native.connectUnix(path);
    this.ramFd = native.memfdCreate('guest-ram', RAM_SIZE);
    this.ram = native.mmap(this.ramFd, 0, RAM_SIZE, true);
    this.descTables = QUEUE_AT.map((at) => this.ram.subarray(at, at + 16 * QSIZE));
  }

  /**
   * Moves queue `q`'s descriptor table into a second memory region (ADD_MEM_REG), as a VMM whose
   * guest memory has several regions may lay it out: the queue is stopped (GET_VRING_BASE) and
   * started again with the new address and a new kick eventfd. Returns the body of the
   * REM_MEM_REG that takes that region away.
   */
  async moveDescriptorTable(q: number): Promise<Buffer> {
    const size = 0x10000;
    const fd = native.memfdCreate('guest-ram-2', size);
    this.extra = { fd, map: native.mmap(fd, 0, size, true) };
    const gpa = GPA + BigInt(RAM_SIZE);
    const uaddr = UADDR + BigInt(RAM_SIZE);
    const reg = Buffer.alloc(40);
    reg.writeBigUInt64LE(gpa, 8);
    reg.writeBigUInt64LE(BigInt(size), 16);
    reg.writeBigUInt64LE(uaddr, 24);
    expect(await this.acked(Req.ADD_MEM_REG, reg, [fd])).toBe(0n);
    const base = (await this.request(Req.GET_VRING_BASE, state(q, 0))).readUInt32LE(4);
    this.send(Req.SET_VRING_BASE, state(q, base));
    const addr = Buffer.alloc(40);
    addr.writeUInt32LE(q, 0);
    addr.writeBigUInt64LE(uaddr, 8);
    addr.writeBigUInt64LE(UADDR + BigInt(QUEUE_AT[q] + 0x800), 16);
    addr.writeBigUInt64LE(UADDR + BigInt(QUEUE_AT[q] + 0x400), 24);
    this.send(Req.SET_VRING_ADDR, addr);
    native.close(this.kick[q]);
    this.kick[q] = native.eventfd(0);
    this.send(Req.SET_VRING_KICK, u64(q), [this.kick[q]]);
    expect(await this.acked(Req.SET_VRING_ENABLE, state(q, 1))).toBe(0n);
    this.descTables[q] = this.extra.map.subarray(0, 16 * QSIZE);
    return reg;
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
    expect(await this.acked(Req.ADD_MEM_REG, ramRegion(), [this.ramFd])).toBe(0n);
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
    const table = this.descTables[q];
    descs.forEach((d, i) => {
      const at = 16 * ((head + i) % QSIZE);
      table.writeBigUInt64LE(d.addr, at);
      table.writeUInt32LE(d.len, at + 8);
      table.writeUInt16LE((i + 1 < descs.length ? 1 : 0) | (d.write ? 2 : 0), at + 12);
      table.writeUInt16LE((head + i + 1) % QSIZE, at + 14);
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

  // ---- chains in flight (do not mix with post/used/command in one test) ----------------------

  private readonly freeSlots = Array.from({ length: SLOTS }, (_, i) => i + 1);
  private readonly returned = new Map<number, number>();
  private fenceId = 1n;

  /** Posts a control command in a free slot (its head), or null when every slot is taken. */
  tryStart(cmd: Buffer, respSize = 64): number | null {
    if (cmd.length > SLOT_COMMAND) throw new Error(`a ${cmd.length}-byte command`);
    const slot = this.freeSlots.shift();
    if (slot === undefined) return null;
    const at = SLOTS_AT + slot * SLOT_SIZE;
    cmd.copy(this.ram, at);
    this.post(
      0,
      [
        { addr: GPA + BigInt(at), len: cmd.length, write: false },
        { addr: GPA + BigInt(at + SLOT_COMMAND), len: respSize, write: true },
      ],
      2 * slot,
    );
    return 2 * slot;
  }

  /** The response of chain `head` once the device returned it (its slot is free again), or null. */
  takeResponse(head: number): Buffer | null {
    const usedAt = QUEUE_AT[0] + 0x800;
    while (this.usedSeen[0] !== this.ram.readUInt16LE(usedAt + 2)) {
      const e = usedAt + 4 + 8 * (this.usedSeen[0] % QSIZE);
      this.returned.set(this.ram.readUInt32LE(e), this.ram.readUInt32LE(e + 4));
      this.usedSeen[0] = (this.usedSeen[0] + 1) & 0xffff;
    }
    const len = this.returned.get(head);
    if (len === undefined) return null;
    this.returned.delete(head);
    this.freeSlots.push(head / 2);
    const at = SLOTS_AT + (head / 2) * SLOT_SIZE + SLOT_COMMAND;
    return Buffer.from(this.ram.subarray(at, at + len));
  }

  /** One control command in a slot of its own; resolves with its response. */
  async exec(cmd: Buffer, respSize = 64, ms = 5000): Promise<Buffer> {
    const head = await until('a free chain slot', () => this.tryStart(cmd, respSize), ms);
    return until(`the answer to chain ${head}`, () => this.takeResponse(head), ms);
  }

  /** The response type of one control command. */
  async type(cmd: Buffer): Promise<number> {
    return (await this.exec(cmd)).readUInt32LE(0);
  }

  /** Context `ctxId` (1-30): its rings as GUEST blobs in guest RAM, INIT with a Wayland channel. */
  async context(ctxId: number): Promise<{ query: Buffer; channel: Buffer }> {
    const OK = VirtioGpuResp.OK_NODATA;
    expect(await this.type(ctxCreate(ctxId))).toBe(OK);
    const at = RINGS_AT + ctxId * 0x2000;
    for (const [res, addr] of [
      [ctxId * 10, at],
      [ctxId * 10 + 1, at + RING],
    ]) {
      expect(await this.type(guestBlob(res, GPA + BigInt(addr), RING))).toBe(OK);
      expect(await this.type(resourceCmd(VirtioGpuCmd.CTX_ATTACH_RESOURCE, res, ctxId))).toBe(OK);
    }
    expect(await this.type(submit(ctxId, cdInit(ctxId * 10, ctxId * 10 + 1)))).toBe(OK);
    return { query: this.ram.subarray(at, at + RING), channel: this.channelRing(ctxId) };
  }

  channelRing(ctxId: number): Buffer {
    const at = RINGS_AT + ctxId * 0x2000 + RING;
    return this.ram.subarray(at, at + RING);
  }

  /** Wayland bytes into context `ctxId`'s channel, in one SEND. */
  sendCommand(ctxId: number, data: Buffer): Buffer {
    return submit(ctxId, cdSend(data));
  }

  /** A POLL fenced on ring 1, posted; its chain returns once the host wrote a message for it. */
  startPoll(ctxId: number): number | null {
    return this.tryStart(submit(ctxId, cdPoll(), { id: this.fenceId++, ring: 1 }));
  }

  /** Polls ring 1 once and reads the message the host wrote into the channel ring. */
  async poll(ctxId: number, ms = 5000): Promise<RingMessage> {
    const head = await until('a free chain slot', () => this.startPoll(ctxId), ms);
    const r = await until('the poll to be answered', () => this.takeResponse(head), ms);
    expect(r.readUInt32LE(0)).toBe(VirtioGpuResp.OK_NODATA);
    return parseRing(this.channelRing(ctxId));
  }

  /** Polls ring 1 until `done` says the Wayland events seen so far are enough. */
  async pollUntil(
    ctxId: number,
    done: (events: WlEvent[]) => boolean,
    ms = 10000,
  ): Promise<WlEvent[]> {
    const events: WlEvent[] = [];
    let pending = Buffer.alloc(0);
    while (!done(events)) {
      const m = await this.poll(ctxId, ms);
      if (m.cmd !== 'receive') continue;
      if (m.data.length === 0) throw new Error('the channel ended');
      const split = wlEvents(Buffer.concat([pending, m.data]));
      events.push(...split.events);
      pending = Buffer.from(split.rest);
    }
    return events;
  }

  close(): void {
    for (const fd of [this.sock, this.ramFd, this.backendEnd, ...this.kick, ...this.call]) {
      if (fd >= 0) native.close(fd);
    }
    native.munmap(this.ram);
    if (this.extra) {
      native.munmap(this.extra.map);
      native.close(this.extra.fd);
    }
  }
}

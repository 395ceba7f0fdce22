// What tswl-host reads from a VMM: vhost-user messages on its socket (headers, payloads, fds of
// any kind and number), and the virtqueues in guest memory (descriptor tables, available rings,
// chains that loop, overlap or point outside memory, indirect tables), with virtio-gpu commands
// inside. The VMM end is the other half of a socketpair; guest RAM is a memfd this process maps.
import fc from 'fast-check';
import { VhostUserConnection } from '../../src/host/vhost-user.js';
import { Flag, Req } from '../../src/host/vhost-user-protocol.js';
import * as native from '../../src/native/index.js';
import { VirtioGpuCmd } from '../../src/virtgpu/protocol.js';
import { closeQuietly, reopen } from '../../src/wire/fd-queue.js';
import type { FuzzTarget } from '../harness.js';
import { EDGE_U32, Warnings, socketpairWayland } from '../harness.js';

const RAM = 1 << 16;
/** The VMM's address of guest RAM, as SET_MEM_TABLE gives it (user addresses). */
const USER_BASE = 0x7f0000000000n;
const DESC = 0x1000;
const AVAIL = 0x1800;
const USED = 0x1a00;
const DATA = 0x2000;

/** An fd sent with a message, described. */
type Fd = 'ram' | 'eventfd' | 'socket' | 'pipe';

interface Message {
  readonly req: number;
  readonly flags: number;
  readonly body: Uint8Array;
  readonly fds: readonly Fd[];
  /** A size field that lies (-1: the real one). */
  readonly size: number;
}

type Op =
  | { readonly op: 'message'; readonly m: Message }
  | {
      readonly op: 'ring';
      /** Descriptors: addr (offset into RAM, or wild), len, flags, next. */
      readonly descs: readonly (readonly [number, number, number, number])[];
      readonly heads: readonly number[];
      readonly availIdx: number;
      /** A command placed at DATA: a type and bytes. */
      readonly command: number;
      readonly body: Uint8Array;
    }
  | { readonly op: 'kick'; readonly queue: number }
  | { readonly op: 'tick' }
  | { readonly op: 'raw'; readonly bytes: Uint8Array };

export interface VhostUserInput {
  readonly session: boolean;
  readonly ops: readonly Op[];
}

const u32 = fc.oneof(
  fc.constantFrom(...EDGE_U32),
  fc.nat(16),
  fc.integer({ min: 0, max: 0xffffffff }),
);
const REQS = Object.values(Req);

function u64(...values: (number | bigint)[]): Uint8Array {
  const b = Buffer.alloc(8 * values.length);
  values.forEach((v, i) => b.writeBigUInt64LE(BigInt.asUintN(64, BigInt(v)), 8 * i));
  return b;
}
function u32s(...values: number[]): Uint8Array {
  const b = Buffer.alloc(4 * values.length);
  values.forEach((v, i) => b.writeUInt32LE(v >>> 0, 4 * i));
  return b;
}
const cat = (...parts: Uint8Array[]) => Buffer.concat(parts);
const msg = (req: number, body: Uint8Array = new Uint8Array(0), fds: Fd[] = []): Op => ({
  op: 'message',
  m: { req, flags: Flag.VERSION, body, fds, size: -1 },
});

/** One region of guest RAM, as SET_MEM_TABLE and ADD_MEM_REG describe it. */
const region = (gpa = 0n, size = BigInt(RAM), user = USER_BASE, offset = 0n) =>
  u64(gpa, size, user, offset);

/** A VMM that sets the device up as QEMU does: features, memory, the control queue, enabled. */
const SESSION: Op[] = [
  msg(Req.GET_FEATURES),
  msg(Req.SET_FEATURES, u64((1n << 32n) | (1n << 30n) | 0x1n)),
  msg(Req.GET_PROTOCOL_FEATURES),
  msg(Req.SET_PROTOCOL_FEATURES, u64(0xffffn)),
  msg(Req.SET_OWNER),
  msg(Req.SET_MEM_TABLE, cat(u32s(1, 0), region()), ['ram']),
  msg(Req.SET_VRING_NUM, u32s(0, 8)),
  msg(Req.SET_VRING_BASE, u32s(0, 0)),
  msg(
    Req.SET_VRING_ADDR,
    cat(
      u32s(0, 0),
      u64(USER_BASE + BigInt(DESC), USER_BASE + BigInt(USED), USER_BASE + BigInt(AVAIL), 0),
    ),
  ),
  msg(Req.SET_VRING_KICK, u64(0), ['eventfd']),
  msg(Req.SET_VRING_CALL, u64(0), ['eventfd']),
  msg(Req.SET_VRING_ENABLE, u32s(0, 1)),
];

const fdArb = fc.constantFrom<Fd>('ram', 'eventfd', 'socket', 'pipe');

const message: fc.Arbitrary<Op> = fc.oneof(
  fc.record({
    op: fc.constant('message' as const),
    m: fc.record({
      req: fc.oneof({ weight: 6, arbitrary: fc.constantFrom(...REQS) }, fc.nat(60)),
      flags: fc.oneof({ weight: 6, arbitrary: fc.constantFrom(1, 1 | 8) }, u32),
      body: fc.oneof(
        fc.uint8Array({ maxLength: 72 }),
        fc.tuple(u32, u32, u32, u32).map(([a, b, c, d]) => u32s(a % 4, b, c, d)),
        fc
          .tuple(fc.nat(10), u32, u32)
          .map(([n, gpa, size]) => cat(u32s(n, 0), region(BigInt(gpa) << 12n, BigInt(size)))),
        fc
          .tuple(u32, u32)
          .map(([q, v]) =>
            cat(u32s(q % 3, 0), u64(USER_BASE + BigInt(v), USER_BASE, USER_BASE, 0)),
          ),
      ),
      fds: fc.array(fdArb, { maxLength: 3 }),
      size: fc.oneof({ weight: 8, arbitrary: fc.constant(-1) }, u32),
    }),
  }),
);

const ring: fc.Arbitrary<Op> = fc.record({
  op: fc.constant('ring' as const),
  descs: fc.array(
    fc.tuple(
      fc.oneof(fc.constantFrom(DATA, DATA + 0x100, DATA + 0x400, RAM - 8, RAM, DESC), u32),
      fc.oneof(fc.constantFrom(24, 32, 96, 0x100, 0x400, 0, 16), u32),
      fc.oneof(fc.constantFrom(0, 1, 2, 3, 4), fc.nat(0xffff)),
      fc.oneof(fc.nat(9), fc.nat(0xffff)),
    ),
    { minLength: 1, maxLength: 8 },
  ),
  heads: fc.array(fc.oneof(fc.nat(8), fc.nat(0xffff)), { minLength: 1, maxLength: 4 }),
  availIdx: fc.oneof({ weight: 6, arbitrary: fc.constant(-1) }, fc.nat(0xffff)),
  command: fc.oneof(
    fc.constantFrom(
      VirtioGpuCmd.GET_CAPSET_INFO,
      VirtioGpuCmd.GET_CAPSET,
      VirtioGpuCmd.CTX_CREATE,
      VirtioGpuCmd.RESOURCE_CREATE_BLOB,
      VirtioGpuCmd.RESOURCE_MAP_BLOB,
      VirtioGpuCmd.SUBMIT_3D,
      0x0100,
    ),
    u32,
  ),
  body: fc.uint8Array({ maxLength: 80 }),
});

const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: message },
  { weight: 4, arbitrary: ring },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('kick' as const), queue: fc.nat(1) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('tick' as const) }) },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant('raw' as const),
      bytes: fc.uint8Array({ maxLength: 40 }),
    }),
  },
);

const tick = () => new Promise<void>((r) => setImmediate(r));

export const vhostUserTarget: FuzzTarget<VhostUserInput> = {
  name: 'vhost-user',
  description:
    'what tswl-host reads from a VMM: vhost-user messages and fds, and virtqueues in guest memory (descriptors, rings, chains)',
  async: true,
  arbitrary() {
    return fc.record({
      session: fc.oneof({ weight: 4, arbitrary: fc.constant(true) }, fc.constant(false)),
      ops: fc.array(op, { maxLength: 12 }),
    });
  },
  seeds() {
    const command = Buffer.alloc(32);
    return [
      {
        session: true,
        ops: [
          {
            op: 'ring',
            descs: [
              [DATA, 32, 1, 1],
              [DATA + 0x400, 0x100, 2, 0],
            ],
            heads: [0],
            availIdx: -1,
            command: VirtioGpuCmd.GET_CAPSET_INFO,
            body: command,
          },
          { op: 'kick', queue: 0 },
          { op: 'tick' },
        ],
      },
    ];
  },
  run: runVhostUser,
};

export async function runVhostUser(input: VhostUserInput): Promise<void> {
  const [vmm, ours] = native.socketpair();
  const ramFd = native.memfdCreate('fuzz-guest-ram', RAM);
  const ram = native.mmap(ramFd, 0, RAM, true);
  const extra: number[] = [];
  const warnings = new Warnings();
  let closed = false;
  const wayland = socketpairWayland(extra);
  const conn = new VhostUserConnection(
    ours,
    'fuzz',
    { wayland, log: warnings.log, hostVisibleSize: 1n << 24n },
    () => {
      closed = true;
    },
  );
  const openFd = (f: Fd): number => {
    switch (f) {
      case 'ram':
        // guest RAM itself: the device maps the memory the ring ops write
        return reopen(ramFd, 'readwrite');
      case 'eventfd':
        return native.eventfd(0);
      case 'socket': {
        const [a, b] = native.socketpair();
        extra.push(b);
        return a;
      }
      case 'pipe': {
        const [r, w] = native.pipe();
        extra.push(w);
        return r;
      }
    }
  };
  // eventfds sent are kept: a kick signals them all (the device polls the one it took as kick)
  const sentEventfds: number[] = [];
  try {
    const ops = input.session ? [...SESSION, ...input.ops] : input.ops;
    for (const o of ops) {
      if (closed) break;
      switch (o.op) {
        case 'message': {
          const m = o.m;
          const b = Buffer.alloc(12 + m.body.length);
          b.writeUInt32LE(m.req >>> 0, 0);
          b.writeUInt32LE(m.flags >>> 0, 4);
          b.writeUInt32LE(m.size < 0 ? m.body.length : m.size >>> 0, 8);
          b.set(m.body, 12);
          const fds = m.fds.map((f) => {
            const fd = openFd(f);
            if (f === 'eventfd') sentEventfds.push(fd);
            return fd;
          });
          try {
            native.sendmsg(vmm, b, 0, b.length, fds, fds.length);
          } catch {
            // the device hung up
          }
          for (const fd of fds) {
            if (!sentEventfds.includes(fd)) closeQuietly(fd);
          }
          await tick();
          break;
        }
        case 'ring':
          writeRing(ram, o);
          break;
        case 'kick':
          for (const fd of sentEventfds) {
            try {
              native.eventfdSignal(fd);
            } catch {
              // closed
            }
          }
          await tick();
          await tick();
          break;
        case 'tick':
          await tick();
          break;
        case 'raw':
          try {
            native.sendmsg(vmm, Buffer.from(o.bytes), 0, o.bytes.length, [], 0);
          } catch {
            // the device hung up
          }
          await tick();
      }
    }
    await tick();
    warnings.check("tswl-host's vhost-user");
  } finally {
    conn.close();
    native.munmap(ram);
    for (const fd of [vmm, ramFd, ...extra, ...sentEventfds]) closeQuietly(fd);
  }
  if (conn.ram.regionCount !== 0) throw new Error('guest memory still mapped after the VM left');
  await tick();
}

function writeRing(ram: Buffer, o: Extract<Op, { op: 'ring' }>): void {
  o.descs.forEach(([addr, len, flags, next], i) => {
    const at = DESC + 16 * i;
    ram.writeBigUInt64LE(BigInt(addr >>> 0), at);
    ram.writeUInt32LE(len >>> 0, at + 8);
    ram.writeUInt16LE(flags & 0xffff, at + 12);
    ram.writeUInt16LE(next & 0xffff, at + 14);
  });
  const idx = ram.readUInt16LE(AVAIL + 2);
  o.heads.forEach((h, i) => ram.writeUInt16LE(h & 0xffff, AVAIL + 4 + 2 * ((idx + i) % 8)));
  ram.writeUInt16LE(o.availIdx < 0 ? (idx + o.heads.length) & 0xffff : o.availIdx, AVAIL + 2);
  const cmd = Buffer.alloc(Math.max(24, o.body.length));
  cmd.set(o.body, 0);
  cmd.writeUInt32LE(o.command >>> 0, 0);
  cmd.copy(ram, DATA);
}

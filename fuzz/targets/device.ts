// tswl-host's handling of one guest: virtio-gpu control commands into GpuDevice.handleCommand,
// with guest RAM in a Buffer, and cross-domain commands inside SUBMIT_3D (INIT with its rings,
// image requirements, SEND with Wayland bytes from the recorded corpus and identifiers of every
// type, POLL, WRITE to pipes). The compositor is the other end of a socketpair per channel, which
// sends bytes (and memfds and pipe ends, which become ring items and clipboard pipes) back.
// Every field a guest controls is generated at and around its limits.
import fc from 'fast-check';
import { DEFAULT_LIMITS } from '../../src/host/budget.js';
import { GpuDevice, type Reply } from '../../src/host/device.js';
import type { FdLedger } from '../../src/host/fds.js';
import type { GuestBacking, GuestMemory, MemEntry } from '../../src/host/guest-memory.js';
import * as native from '../../src/native/index.js';
import {
  BlobMem,
  CrossDomainCmd,
  VirtioGpuCmd,
  VirtioGpuFlag,
} from '../../src/virtgpu/protocol.js';
import { closeQuietly } from '../../src/wire/fd-queue.js';
import type { FdSpec, FuzzTarget } from '../harness.js';
import { EDGE_U32, Warnings, openFd, socketpairWayland } from '../harness.js';
import type { Trace } from './relay.js';
import { CORPUS } from './relay.js';

const RAM = 1 << 16;
const PAGE = 4096;

/** Guest RAM in a Buffer: GUEST blobs address it by offset, as a VMM's guest-physical memory. */
class BufferMemory implements GuestMemory {
  readonly ram = Buffer.alloc(RAM);
  resolve(entries: readonly MemEntry[], _ledger: FdLedger): GuestBacking {
    for (const e of entries) {
      if (e.addr + BigInt(e.length) > BigInt(RAM)) throw new Error('outside guest RAM');
    }
    const ram = this.ram;
    return {
      entryLengths: entries.map((e) => e.length),
      write(entry, offset, src, s, end) {
        ram.set(src.subarray(s, end), Number(entries[entry].addr) + offset);
      },
      release() {},
    };
  }
}

type CdOp =
  | {
      readonly cd: 'init';
      readonly q: number;
      readonly c: number;
      readonly type: number;
      readonly size: number;
    }
  | {
      readonly cd: 'reqs';
      readonly w: number;
      readonly h: number;
      readonly format: number;
      readonly flags: number;
    }
  | { readonly cd: 'poll' }
  | {
      readonly cd: 'send';
      /** Index into the corpus's client bytes, or raw bytes. */
      readonly data: number | Uint8Array;
      readonly ids: readonly (readonly [number, number])[];
      readonly count: number;
    }
  | {
      readonly cd: 'write';
      readonly id: number;
      readonly hangUp: number;
      readonly data: Uint8Array;
      readonly size: number;
    }
  | { readonly cd: 'raw'; readonly cmd: number; readonly size: number; readonly body: Uint8Array };

type DeviceOp =
  | { readonly op: 'ctx'; readonly ctx: number; readonly capset: number; readonly nameLen: number }
  | { readonly op: 'ctxDestroy'; readonly ctx: number }
  | {
      readonly op: 'guestBlob';
      readonly res: number;
      readonly entries: readonly (readonly [number, number])[];
      readonly size: number;
      readonly count: number;
    }
  | {
      readonly op: 'hostBlob';
      readonly ctx: number;
      readonly res: number;
      readonly blobId: number;
      readonly size: number;
      readonly blobMem: number;
    }
  | { readonly op: 'resource'; readonly type: number; readonly res: number; readonly ctx: number }
  | { readonly op: 'map'; readonly res: number; readonly offset: number }
  | { readonly op: 'caps'; readonly type: number; readonly index: number; readonly version: number }
  | {
      readonly op: 'submit';
      readonly ctx: number;
      readonly fence: number; // 0 none, 1 plain, 2 ring 0, 3 ring 1, 4 ring 7
      readonly cmds: readonly CdOp[];
      readonly sizeLie: number;
    }
  | {
      readonly op: 'compositor';
      readonly channel: number;
      readonly data: number | Uint8Array;
      readonly fds: readonly FdSpec[];
    }
  | { readonly op: 'compositorHangUp'; readonly channel: number }
  | { readonly op: 'raw'; readonly bytes: Uint8Array }
  | { readonly op: 'tick' };

export interface DeviceInput {
  /** Starts with a working session (rings, a Wayland channel, a registry) before the ops. */
  readonly session: boolean;
  readonly ops: readonly DeviceOp[];
  /** Words of the built commands overwritten: op index, word index, value. */
  readonly words: readonly (readonly [number, number, number])[];
}

const u32 = fc.oneof(
  fc.constantFrom(...EDGE_U32),
  fc.nat(16),
  fc.integer({ min: 0, max: 0xffffffff }),
);
const small = fc.oneof({ weight: 4, arbitrary: fc.integer({ min: 0, max: 4 }) }, u32);
const fdSpec: fc.Arbitrary<FdSpec> = fc.oneof(
  fc.record({ kind: fc.constant('memfd' as const), size: fc.constantFrom(0, 1, 4096, 65536) }),
  fc.constant({ kind: 'pipe-read' as const }),
  fc.constant({ kind: 'pipe-write' as const }),
  fc.constant({ kind: 'socket' as const }),
);
const bytes = fc.uint8Array({ maxLength: 96 });

const cdOp: fc.Arbitrary<CdOp> = fc.oneof(
  fc.record({
    cd: fc.constant('init' as const),
    q: small,
    c: small,
    type: fc.oneof(fc.constant(1), small),
    size: fc.constantFrom(16, 20, 36, 8, 12),
  }),
  fc.record({
    cd: fc.constant('reqs' as const),
    w: u32,
    h: u32,
    format: fc.oneof(
      fc.constantFrom(0x34325258, 0x34325241, 0x3231564e, 0x32315659, 0x20203852, 0x36314752),
      u32,
    ),
    flags: u32,
  }),
  fc.record({ cd: fc.constant('poll' as const) }),
  fc.record({
    cd: fc.constant('send' as const),
    data: fc.oneof({ weight: 3, arbitrary: fc.nat() }, bytes),
    ids: fc.array(fc.tuple(small, fc.integer({ min: 0, max: 6 })), { maxLength: 4 }),
    count: fc.oneof({ weight: 5, arbitrary: fc.constant(-1) }, u32),
  }),
  fc.record({
    cd: fc.constant('write' as const),
    id: fc.oneof(small, fc.integer({ min: 0x80000000, max: 0x80000004 })),
    hangUp: fc.constantFrom(0, 1, 2),
    data: bytes,
    size: fc.oneof({ weight: 5, arbitrary: fc.constant(-1) }, u32),
  }),
  fc.record({
    cd: fc.constant('raw' as const),
    cmd: fc.integer({ min: 0, max: 9 }),
    size: fc.oneof(fc.constantFrom(0, 4, 8), fc.nat(400)),
    body: bytes,
  }),
);

const deviceOp: fc.Arbitrary<DeviceOp> = fc.oneof(
  fc.record({
    op: fc.constant('ctx' as const),
    ctx: small,
    capset: fc.oneof(fc.constant(5), small),
    nameLen: fc.oneof(fc.nat(70), u32),
  }),
  fc.record({ op: fc.constant('ctxDestroy' as const), ctx: small }),
  fc.record({
    op: fc.constant('guestBlob' as const),
    res: small,
    entries: fc.array(
      fc.tuple(
        fc.oneof(fc.constantFrom(0, PAGE, 2 * PAGE, RAM - PAGE, RAM), u32),
        fc.oneof(fc.constantFrom(PAGE, 8, 0, 2 * PAGE), u32),
      ),
      { maxLength: 3 },
    ),
    size: fc.oneof(fc.constantFrom(PAGE, 0), u32),
    count: fc.oneof({ weight: 5, arbitrary: fc.constant(-1) }, u32),
  }),
  fc.record({
    op: fc.constant('hostBlob' as const),
    ctx: small,
    res: small,
    blobId: small,
    size: fc.oneof(fc.constantFrom(PAGE, 0, 1 << 20), u32),
    blobMem: fc.oneof(fc.constant(BlobMem.HOST3D), small),
  }),
  fc.record({
    op: fc.constant('resource' as const),
    type: fc.constantFrom(
      VirtioGpuCmd.CTX_ATTACH_RESOURCE,
      VirtioGpuCmd.CTX_DETACH_RESOURCE,
      VirtioGpuCmd.RESOURCE_UNREF,
      VirtioGpuCmd.RESOURCE_UNMAP_BLOB,
    ),
    res: small,
    ctx: small,
  }),
  fc.record({
    op: fc.constant('map' as const),
    res: small,
    offset: fc.oneof(fc.constantFrom(0, PAGE, 1), u32),
  }),
  fc.record({
    op: fc.constant('caps' as const),
    type: fc.constantFrom(VirtioGpuCmd.GET_CAPSET_INFO, VirtioGpuCmd.GET_CAPSET),
    index: small,
    version: small,
  }),
  {
    weight: 4,
    arbitrary: fc.record({
      op: fc.constant('submit' as const),
      ctx: fc.oneof({ weight: 4, arbitrary: fc.constant(1) }, small),
      fence: fc.integer({ min: 0, max: 4 }),
      cmds: fc.array(cdOp, { minLength: 1, maxLength: 4 }),
      sizeLie: fc.oneof(
        { weight: 6, arbitrary: fc.constant(0) },
        fc.integer({ min: -8, max: 8 }),
        u32,
      ),
    }),
  },
  fc.record({
    op: fc.constant('compositor' as const),
    channel: fc.nat(3),
    data: fc.oneof({ weight: 3, arbitrary: fc.nat() }, bytes),
    fds: fc.array(fdSpec, { maxLength: 3 }),
  }),
  fc.record({ op: fc.constant('compositorHangUp' as const), channel: fc.nat(3) }),
  fc.record({ op: fc.constant('raw' as const), bytes: fc.uint8Array({ maxLength: 128 }) }),
  fc.record({ op: fc.constant('tick' as const) }),
);

// ---- command encoding --------------------------------------------------------------------------

function hdr(type: number, size: number, ctxId = 0, fence = 0, fenceId = 1): Buffer {
  const b = Buffer.alloc(size);
  b.writeUInt32LE(type, 0);
  if (fence > 0) {
    b.writeUInt32LE(VirtioGpuFlag.FENCE | (fence > 1 ? VirtioGpuFlag.INFO_RING_IDX : 0), 4);
    b.writeBigUInt64LE(BigInt(fenceId), 8);
    b[20] = [0, 0, 0, 1, 7][fence];
  }
  b.writeUInt32LE(ctxId >>> 0, 16);
  return b;
}

function cdHeader(cmd: number, size: number, cmdSize = size): Buffer {
  const b = Buffer.alloc(size);
  b[0] = cmd;
  b.writeUInt16LE(cmdSize & 0xffff, 2);
  return b;
}

function encodeCd(c: CdOp, sends: readonly Buffer[]): Buffer {
  switch (c.cd) {
    case 'init': {
      const b = cdHeader(CrossDomainCmd.INIT, Math.max(8, c.size));
      if (c.size >= 16) {
        b.writeUInt32LE(c.q >>> 0, 8);
        b.writeUInt32LE(c.c >>> 0, 12);
      }
      if (c.size >= 20) b.writeUInt32LE(c.type >>> 0, 16);
      return b;
    }
    case 'reqs': {
      const b = cdHeader(CrossDomainCmd.GET_IMAGE_REQUIREMENTS, 24);
      b.writeUInt32LE(c.w >>> 0, 8);
      b.writeUInt32LE(c.h >>> 0, 12);
      b.writeUInt32LE(c.format >>> 0, 16);
      b.writeUInt32LE(c.flags >>> 0, 20);
      return b;
    }
    case 'poll':
      return cdHeader(CrossDomainCmd.POLL, 16);
    case 'send': {
      const data =
        typeof c.data === 'number'
          ? (sends[c.data % Math.max(1, sends.length)] ?? Buffer.alloc(0))
          : Buffer.from(c.data);
      const b = cdHeader(CrossDomainCmd.SEND, 352 + data.length);
      b.writeUInt32LE(c.count < 0 ? c.ids.length : c.count >>> 0, 8);
      b.writeUInt32LE(data.length, 12);
      c.ids.forEach(([id, type], i) => {
        b.writeUInt32LE(id >>> 0, 16 + 4 * i);
        b.writeUInt32LE(type, 128 + 4 * i);
      });
      data.copy(b, 352);
      return b;
    }
    case 'write': {
      const b = cdHeader(CrossDomainCmd.WRITE, 24 + c.data.length);
      b.writeUInt32LE(c.id >>> 0, 8);
      b.writeUInt32LE(c.hangUp, 12);
      b.writeUInt32LE(c.size < 0 ? c.data.length : c.size >>> 0, 16);
      b.set(c.data, 24);
      return b;
    }
    case 'raw': {
      const b = cdHeader(c.cmd, Math.max(8, Math.min(c.size, 400)), c.size);
      b.set(c.body.subarray(0, b.length - 8), 8);
      return b;
    }
  }
}

function encode(op: DeviceOp, sends: readonly Buffer[], fenceId: number): Buffer | null {
  switch (op.op) {
    case 'ctx': {
      const b = hdr(VirtioGpuCmd.CTX_CREATE, 96, op.ctx);
      b.writeUInt32LE(op.nameLen >>> 0, 24);
      b.writeUInt32LE(op.capset >>> 0, 28);
      b.write('fuzz-context-name'.repeat(4).slice(0, 64), 32);
      return b;
    }
    case 'ctxDestroy':
      return hdr(VirtioGpuCmd.CTX_DESTROY, 24, op.ctx);
    case 'guestBlob': {
      const b = hdr(VirtioGpuCmd.RESOURCE_CREATE_BLOB, 56 + 16 * op.entries.length);
      b.writeUInt32LE(op.res >>> 0, 24);
      b.writeUInt32LE(BlobMem.GUEST, 28);
      b.writeUInt32LE(1, 32);
      b.writeUInt32LE(op.count < 0 ? op.entries.length : op.count >>> 0, 36);
      b.writeBigUInt64LE(BigInt(op.size >>> 0), 48);
      op.entries.forEach(([addr, len], i) => {
        b.writeBigUInt64LE(BigInt(addr >>> 0), 56 + 16 * i);
        b.writeUInt32LE(len >>> 0, 64 + 16 * i);
      });
      return b;
    }
    case 'hostBlob': {
      const b = hdr(VirtioGpuCmd.RESOURCE_CREATE_BLOB, 56, op.ctx);
      b.writeUInt32LE(op.res >>> 0, 24);
      b.writeUInt32LE(op.blobMem >>> 0, 28);
      b.writeUInt32LE(3, 32);
      b.writeBigUInt64LE(BigInt(op.blobId >>> 0), 40);
      b.writeBigUInt64LE(BigInt(op.size >>> 0), 48);
      return b;
    }
    case 'resource': {
      const b = hdr(op.type, 32, op.ctx);
      b.writeUInt32LE(op.res >>> 0, 24);
      return b;
    }
    case 'map': {
      const b = hdr(VirtioGpuCmd.RESOURCE_MAP_BLOB, 40);
      b.writeUInt32LE(op.res >>> 0, 24);
      b.writeBigUInt64LE(BigInt(op.offset >>> 0) * BigInt(PAGE), 32);
      return b;
    }
    case 'caps': {
      const b = hdr(op.type, 32);
      b.writeUInt32LE(op.index >>> 0, 24);
      b.writeUInt32LE(op.version >>> 0, 28);
      return b;
    }
    case 'submit': {
      const cmds = Buffer.concat(op.cmds.map((c) => encodeCd(c, sends)));
      const b = Buffer.concat([hdr(VirtioGpuCmd.SUBMIT_3D, 32, op.ctx, op.fence, fenceId), cmds]);
      b.writeUInt32LE((cmds.length + op.sizeLie) >>> 0, 24);
      return b;
    }
    case 'raw':
      return Buffer.from(op.bytes);
    default:
      return null;
  }
}

/** A guest that works: capsets, a context, its two rings, a Wayland channel, a registry. */
const SESSION: DeviceOp[] = [
  { op: 'caps', type: VirtioGpuCmd.GET_CAPSET_INFO, index: 0, version: 0 },
  { op: 'caps', type: VirtioGpuCmd.GET_CAPSET, index: 5, version: 0 },
  { op: 'ctx', ctx: 1, capset: 5, nameLen: 4 },
  { op: 'guestBlob', res: 1, entries: [[0, PAGE]], size: PAGE, count: -1 },
  { op: 'guestBlob', res: 2, entries: [[PAGE, PAGE]], size: PAGE, count: -1 },
  { op: 'resource', type: VirtioGpuCmd.CTX_ATTACH_RESOURCE, res: 1, ctx: 1 },
  { op: 'resource', type: VirtioGpuCmd.CTX_ATTACH_RESOURCE, res: 2, ctx: 1 },
  {
    op: 'submit',
    ctx: 1,
    fence: 0,
    cmds: [{ cd: 'init', q: 1, c: 2, type: 1, size: 20 }],
    sizeLie: 0,
  },
  {
    op: 'submit',
    ctx: 1,
    fence: 2,
    cmds: [{ cd: 'reqs', w: 64, h: 64, format: 0x34325258, flags: 0x11 }],
    sizeLie: 0,
  },
  {
    op: 'submit',
    ctx: 1,
    fence: 0,
    cmds: [{ cd: 'send', data: 0, ids: [], count: -1 }],
    sizeLie: 0,
  },
  { op: 'submit', ctx: 1, fence: 3, cmds: [{ cd: 'poll' }], sizeLie: 0 },
];

/** Client bytes of the relay corpus, one message or read each, for SEND. */
function sendsOf(corpus: readonly unknown[]): Buffer[] {
  const out: Buffer[] = [];
  for (const t of corpus as Trace[]) {
    for (const op of t.ops) {
      const b = Buffer.from(op.data, 'base64');
      if (b.length <= 3000) out.push(b);
    }
  }
  // a get_registry first: the session's channel then has a registry
  const getRegistry = Buffer.alloc(12);
  getRegistry.writeUInt32LE(1, 0);
  getRegistry.writeUInt32LE((12 << 16) | 1, 4);
  getRegistry.writeUInt32LE(2, 8);
  return [getRegistry, ...out];
}

const tick = () => new Promise<void>((r) => setImmediate(r));

export const deviceTarget: FuzzTarget<DeviceInput> & { sends: Buffer[]; events: Buffer[] } = {
  name: 'host-device',
  description:
    "tswl-host's device for one guest: virtio-gpu commands, cross-domain commands, rings, identifiers, pipes, compositor replies",
  corpusDir: CORPUS.hostMode,
  async: true,
  sends: [],
  events: [],
  arbitrary(corpus) {
    deviceTarget.sends = sendsOf(corpus);
    deviceTarget.events = (corpus as Trace[]).flatMap((t) =>
      t.ops.filter((o) => o.side === 'h').map((o) => Buffer.from(o.data, 'base64')),
    );
    return fc.record({
      session: fc.oneof({ weight: 4, arbitrary: fc.constant(true) }, fc.constant(false)),
      ops: fc.array(deviceOp, { maxLength: 16 }),
      words: fc.array(fc.tuple(fc.nat(), fc.nat(), u32), { maxLength: 3 }),
    });
  },
  seeds() {
    return [{ session: true, ops: [{ op: 'tick' }], words: [] }];
  },
  async run(input) {
    await runDevice(input, deviceTarget.sends, deviceTarget.events);
  },
};

export async function runDevice(
  input: DeviceInput,
  sends: readonly Buffer[],
  events: readonly Buffer[],
): Promise<void> {
  const compositors: number[] = [];
  const extra: number[] = [];
  const warnings = new Warnings();
  const wayland = socketpairWayland(compositors);
  const memory = new BufferMemory();
  const device = new GpuDevice({
    wayland,
    log: warnings.log,
    name: 'fuzz',
    limits: { ...DEFAULT_LIMITS, contexts: 8, items: 64, fds: 64, fences: 16, blobBytes: 1 << 24 },
  });
  let commands = 0;
  let replies = 0;
  let fault: string | null = null;
  const onReply = (r: Reply) => {
    replies++;
    if (r.map) closeQuietly(r.map.fd);
    if (r.response.length < 24) fault ??= `a ${r.response.length}-byte response`;
  };
  const ops = input.session ? [...SESSION, ...input.ops] : input.ops;
  try {
    let fenceId = 1;
    for (let i = 0; i < ops.length; i++) {
      const op = ops[i];
      if (op.op === 'tick') {
        await tick();
        continue;
      }
      if (op.op === 'compositor' || op.op === 'compositorHangUp') {
        const fd = compositors[op.channel % Math.max(1, compositors.length)];
        if (fd === undefined) continue;
        if (op.op === 'compositorHangUp') {
          native.close(fd);
          compositors.splice(compositors.indexOf(fd), 1);
        } else {
          const data =
            typeof op.data === 'number'
              ? (events[op.data % Math.max(1, events.length)] ?? Buffer.alloc(4))
              : Buffer.from(op.data);
          const fds = op.fds.map((s) => openFd(s, extra));
          try {
            native.sendmsg(fd, data, 0, data.length, fds, fds.length);
          } catch {
            // the device closed its end
          }
          for (const f of fds) closeQuietly(f);
        }
        await tick();
        continue;
      }
      const cmd = encode(op, sends, fenceId++);
      if (!cmd) continue;
      for (const [opIndex, word, value] of input.words) {
        if (opIndex % ops.length === i && cmd.length >= 4) {
          cmd.writeUInt32LE(value >>> 0, 4 * (word % (cmd.length >> 2)));
        }
      }
      commands++;
      device.handleCommand(cmd, memory, onReply);
    }
    await tick();
    warnings.check('the device');
    if (fault) throw new Error(fault);
    if (replies > commands) throw new Error(`${replies} replies to ${commands} commands`);
  } finally {
    device.destroy();
    for (const fd of [...compositors, ...extra]) closeQuietly(fd);
  }
  const s = device.stats;
  if (s.resources || s.fds || s.items || s.blobBytes || s.contexts) {
    throw new Error(`the device kept state after destroy: ${JSON.stringify(s)}`);
  }
}

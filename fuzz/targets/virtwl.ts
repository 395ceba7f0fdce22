// The legacy virtio_wl link (tswl-proxy --virtio-wl): a relay whose host side is a VirtWlLink on a
// stand-in for the kernel driver at the ioctl layer (as test/virtwl.test.ts has one). The client
// replays recorded sessions (so shm is shadowed in NEW_ALLOC memory and pipes become NEW_PIPE
// vfds); what the host sends back through RECV is fuzzed: recorded events, mutated, raw bytes,
// and vfds of every kind and size, and the host hanging up.
import fc from 'fast-check';
import { VirtWlLink, type VirtWlIo, virtWlShadowShm } from '../../src/links/virtwl.js';
import * as uapi from '../../src/links/virtwl-uapi.js';
import * as native from '../../src/native/index.js';
import { allInterfaces } from '../../src/generated/index.js';
import { ProtocolTables } from '../../src/protocol/tables.js';
import { relayHooks } from '../../src/relay/hooks.js';
import { VM_BOUNDARY_HIDDEN_GLOBALS } from '../../src/relay/policy.js';
import { Relay } from '../../src/relay/relay.js';
import { closeQuietly } from '../../src/wire/fd-queue.js';
import type { FdSpec, FuzzTarget } from '../harness.js';
import { EDGE_U32, Warnings, MemoryEndpoint, openFd } from '../harness.js';
import type { Trace } from './relay.js';
import { CORPUS } from './relay.js';

function errno(code: string): Error {
  return Object.assign(new Error(`${code} (fuzz)`), { code, syscall: 'ioctl' });
}

/**
 * The virtio_wl driver as the uapi describes it: the context vfd is one end of a socketpair that
 * holds a byte while a message is queued; memory vfds are memfds, pipe vfds pipe ends.
 */
class FakeVirtWl implements VirtWlIo {
  device = -1;
  ctx = -1;
  private peer = -1;
  private readonly queue: { data: Buffer; fds: number[] }[] = [];
  private hungUp = false;
  readonly owned: number[] = [];
  sends = 0;

  open(): number {
    this.device = native.eventfd(0);
    return this.device;
  }

  ioctl(fd: number, request: number, arg: Buffer): number {
    switch (request) {
      case uapi.VIRTWL_IOCTL_NEW:
        return this.newVfd(fd, arg);
      case uapi.VIRTWL_IOCTL_SEND:
        if (fd !== this.ctx) throw errno('ENOTTY');
        if (arg.readUInt32LE(112) > uapi.VIRTWL_MAX_TXN_DATA) throw errno('EINVAL');
        this.sends++;
        return 0;
      case uapi.VIRTWL_IOCTL_RECV:
        return this.recv(fd, arg);
      default:
        throw errno('ENOTTY');
    }
  }

  private newVfd(fd: number, arg: Buffer): number {
    if (fd !== this.device) throw errno('EINVAL');
    let vfd: number;
    switch (arg.readUInt32LE(0)) {
      case uapi.VirtWlNewType.CTX: {
        const [a, b] = native.socketpair();
        this.ctx = a;
        this.peer = b;
        this.owned.push(b);
        vfd = a;
        break;
      }
      case uapi.VirtWlNewType.ALLOC:
        vfd = native.memfdCreate('virtwl_alloc', arg.readUInt32LE(12));
        break;
      case uapi.VirtWlNewType.PIPE_READ: {
        const [r, w] = native.pipe();
        this.owned.push(w);
        vfd = r;
        break;
      }
      case uapi.VirtWlNewType.PIPE_WRITE: {
        const [r, w] = native.pipe();
        this.owned.push(r);
        vfd = w;
        break;
      }
      default:
        throw errno('EINVAL');
    }
    arg.writeInt32LE(vfd, 4);
    return 0;
  }

  private recv(fd: number, arg: Buffer): number {
    if (fd !== this.ctx) throw errno('ENOTTY');
    const msg = this.queue.shift();
    if (!msg) {
      if (this.hungUp) {
        for (let i = 0; i < 28; i++) arg.writeInt32LE(-1, 4 * i);
        arg.writeUInt32LE(0, 112);
        return 0;
      }
      throw errno('EAGAIN');
    }
    for (let i = 0; i < 28; i++) arg.writeInt32LE(i < msg.fds.length ? msg.fds[i] : -1, 4 * i);
    arg.writeUInt32LE(msg.data.length, 112);
    msg.data.copy(arg, 116);
    if (this.queue.length === 0 && !this.hungUp) native.readFd(this.ctx, Buffer.alloc(1), 0, 1);
    return 0;
  }

  /** The host sends bytes and vfds (which become the guest's). */
  hostSend(data: Buffer, fds: number[]): void {
    if (this.hungUp || this.peer < 0) {
      for (const f of fds) closeQuietly(f);
      return;
    }
    if (this.queue.length === 0) native.writeFd(this.peer, Buffer.from([1]), 0, 1);
    this.queue.push({ data: data.subarray(0, uapi.VIRTWL_MAX_TXN_DATA), fds: fds.slice(0, 28) });
    for (const f of fds.slice(28)) closeQuietly(f);
  }

  hangUp(): void {
    if (this.hungUp || this.peer < 0) return;
    this.hungUp = true;
    native.close(this.peer);
    this.owned.splice(this.owned.indexOf(this.peer), 1);
  }

  dispose(): void {
    for (const q of this.queue) for (const f of q.fds) closeQuietly(f);
    for (const fd of this.owned) closeQuietly(fd);
    this.owned.length = 0;
  }
}

type Op =
  /** The next `count` reads of the recorded session, both sides in their order. */
  | { readonly op: 'replay'; readonly count: number }
  | { readonly op: 'host'; readonly event: number | Uint8Array; readonly fds: readonly FdSpec[] }
  | { readonly op: 'word'; readonly event: number; readonly word: number; readonly value: number }
  | { readonly op: 'hangup' }
  | { readonly op: 'tick' };

export interface VirtWlInput {
  readonly trace: number;
  readonly ops: readonly Op[];
}

const fdSpec: fc.Arbitrary<FdSpec> = fc.oneof(
  fc.record({ kind: fc.constant('memfd' as const), size: fc.constantFrom(0, 1, 4096, 65536) }),
  fc.constant({ kind: 'pipe-read' as const }),
  fc.constant({ kind: 'pipe-write' as const }),
  fc.constant({ kind: 'socket' as const }),
);
const u32 = fc.oneof(fc.constantFrom(...EDGE_U32), fc.integer({ min: 0, max: 0xffffffff }));

const op: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.record({
      op: fc.constant('replay' as const),
      count: fc.integer({ min: 1, max: 60 }),
    }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      op: fc.constant('host' as const),
      event: fc.oneof({ weight: 3, arbitrary: fc.nat() }, fc.uint8Array({ maxLength: 64 })),
      fds: fc.array(fdSpec, { maxLength: 3 }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant('word' as const),
      event: fc.nat(),
      word: fc.nat(),
      value: u32,
    }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('hangup' as const) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('tick' as const) }) },
);

const tables = new ProtocolTables(allInterfaces);
/** Lets the link's poller see what the host sent: one turn of the event loop can be too few. */
const tick = async () => {
  for (let i = 0; i < 2; i++) await new Promise<void>((r) => setImmediate(r));
};

interface Decoded {
  ops: { side: 'c' | 'h'; data: Buffer; fds: readonly FdSpec[] }[];
  host: Buffer[];
}

export const virtWlTarget: FuzzTarget<VirtWlInput> & { traces: Decoded[] } = {
  name: 'virtwl-link',
  description:
    "the virtio_wl link's messages from the host: RECV data and vfds (memory, pipes), through the relay with shm shadowed in NEW_ALLOC memory",
  corpusDir: CORPUS.shadow,
  async: true,
  traces: [],
  arbitrary(corpus) {
    virtWlTarget.traces = (corpus as Trace[]).map((t) => {
      const ops = t.ops.map((o) => ({
        side: o.side,
        data: Buffer.from(o.data, 'base64'),
        fds: o.fds,
      }));
      return { ops, host: ops.filter((o) => o.side === 'h').map((o) => o.data) };
    });
    return fc.record({
      trace: fc.nat(Math.max(0, corpus.length - 1)),
      ops: fc.array(op, { maxLength: 16 }),
    });
  },
  seeds(corpus) {
    return corpus.map((_, i) => ({
      trace: i,
      ops: [{ op: 'replay', count: 1000 }],
    }));
  },
  run: (input) => runVirtWl(input, virtWlTarget.traces),
};

export async function runVirtWl(input: VirtWlInput, traces: readonly Decoded[]): Promise<void> {
  const trace = traces[input.trace % Math.max(1, traces.length)] ?? { ops: [], host: [] };
  const io = new FakeVirtWl();
  const extra: number[] = [];
  let client!: MemoryEndpoint;
  const warnings = new Warnings();
  let closed = false;
  const host = trace.host.map((b) => Buffer.from(b));
  const relay = new Relay({
    tables,
    hooks: relayHooks({
      tag: '',
      shadowShm: virtWlShadowShm,
      hiddenGlobals: VM_BOUNDARY_HIDDEN_GLOBALS,
    }),
    connectClient: (h) => (client = new MemoryEndpoint(h)),
    connectHost: (h) => new VirtWlLink(io, io.open(), h),
    onClose: () => (closed = true),
    warn: warnings.warn,
  });
  let next = 0;
  try {
    for (const o of input.ops) {
      if (closed) break;
      switch (o.op) {
        case 'replay':
          for (let i = 0; i < o.count && next < trace.ops.length && !closed; i++) {
            const r = trace.ops[next++];
            const fds = r.fds.map((s) => openFd(s, extra));
            if (r.side === 'c') {
              client.deliver(r.data, fds);
            } else {
              io.hostSend(r.data, fds);
              await tick();
            }
          }
          break;
        case 'host': {
          const data =
            typeof o.event === 'number'
              ? (host[o.event % Math.max(1, host.length)] ?? Buffer.alloc(8))
              : Buffer.from(o.event);
          io.hostSend(
            data,
            o.fds.map((s) => openFd(s, extra)),
          );
          await tick();
          break;
        }
        case 'word': {
          const b = host[o.event % Math.max(1, host.length)];
          if (b && b.length >= 4) b.writeUInt32LE(o.value >>> 0, 4 * (o.word % (b.length >> 2)));
          break;
        }
        case 'hangup':
          io.hangUp();
          await tick();
          break;
        case 'tick':
          await tick();
      }
    }
    await tick();
    warnings.check('the relay');
    if (client.malformed)
      throw new Error(`the relay sent a malformed message: ${client.malformed}`);
  } finally {
    relay.close();
    io.dispose();
    for (const fd of extra) closeQuietly(fd);
  }
}

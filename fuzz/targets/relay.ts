// The relay, fed from both sides in memory: recorded sessions of real clients against weston,
// mutated (words overwritten with edge values, fds swapped for other kinds and sizes, hang-ups
// and congestion inserted), and messages built from the protocol tables for whichever object an
// id names at that moment, so that generated requests reach the hooks with well-typed arguments.
import { ftruncateSync } from 'node:fs';
import fc from 'fast-check';
import { allInterfaces } from '../../src/generated/index.js';
import * as native from '../../src/native/index.js';
import { ArgKind } from '../../src/protocol/meta.js';
import type { Interface } from '../../src/protocol/tables.js';
import { ProtocolTables } from '../../src/protocol/tables.js';
import { relayHooks } from '../../src/relay/hooks.js';
import { VM_BOUNDARY_HIDDEN_GLOBALS, withheldGlobals } from '../../src/relay/policy.js';
import type { InterfaceHooks } from '../../src/relay/relay.js';
import { Relay } from '../../src/relay/relay.js';
import type { ShadowAllocatorSource } from '../../src/relay/shm.js';
import { closeQuietly, reopen } from '../../src/wire/fd-queue.js';
import type { FdSpec, FuzzTarget } from '../harness.js';
import { EDGE_U32, Warnings, MemoryEndpoint, openFd } from '../harness.js';

/** One recorded read: which side's endpoint received it, its bytes, the fds that came with them. */
export interface TraceOp {
  readonly side: 'c' | 'h';
  readonly data: string; // base64
  readonly fds: readonly FdSpec[];
}

/** A corpus file: one client's session, both directions, in the order the relay saw them. */
export interface Trace {
  readonly source: string;
  readonly ops: readonly TraceOp[];
}

type Side = 'c' | 'h';

/** A step a target takes besides replaying the trace. */
export type Step =
  | {
      readonly kind: 'message';
      readonly side: Side;
      /**
       * Object id; below LIVE, an index into the objects alive on that side when it is sent. The
       * message is built for the interface that object has then.
       */
      readonly id: number;
      readonly opcode: number;
      readonly args: readonly { readonly u: number; readonly s: string }[];
      readonly fds: readonly FdSpec[];
    }
  | {
      readonly kind: 'raw';
      readonly side: Side;
      readonly data: Uint8Array;
      readonly fds: readonly FdSpec[];
    }
  | { readonly kind: 'hangup'; readonly side: Side }
  | { readonly kind: 'congest'; readonly side: Side; readonly on: boolean }
  /** The peer shrinks (or grows) a memory file it sent, under the proxy's mapping. */
  | { readonly kind: 'truncate'; readonly memfd: number; readonly size: number };

export interface RelayInput {
  readonly trace: number;
  /** Where in the trace the steps go (modulo its length + 1; -1: at its end). */
  readonly at: number;
  readonly steps: readonly Step[];
  /** Words of the trace's ops overwritten: op index, word index, value (both modulo). */
  readonly words: readonly (readonly [number, number, number])[];
  /** fds of the trace's ops replaced: op index, fd index, new fd. */
  readonly fds: readonly (readonly [number, number, FdSpec])[];
  /** Trace ops dropped or repeated: op index, and whether repeated. */
  readonly ops: readonly (readonly [number, boolean])[];
  /**
   * How many reads of the trace are replayed (-1: all). A session's start (globals, pools,
   * surfaces, the first frames) is where most of its handling is; its 200th frame adds copying.
   */
  readonly keep: number;
}

const tables = new ProtocolTables(allInterfaces);
/** Ids and object arguments below this pick one of the objects alive at that moment. */
const LIVE = 1000;
const INTERFACE_NAMES = [...tables.names()];

const fdSpec: fc.Arbitrary<FdSpec> = fc.oneof(
  fc.record({
    kind: fc.constant('memfd' as const),
    size: fc.oneof(fc.constantFrom(0, 1, 4095, 4096, 4097, 65536, 1 << 20), fc.nat(1 << 16)),
  }),
  fc.constant({ kind: 'pipe-read' as const }),
  fc.constant({ kind: 'pipe-write' as const }),
  fc.constant({ kind: 'socket' as const }),
);

/** wl_shm formats of every kind: packed RGB of 1 to 8 bytes a pixel, planar YUV, odd ones. */
const SHM_FORMATS = [
  'XR24',
  'AR24',
  'RG16',
  'R8  ',
  'RG24',
  'XB30',
  'AB4H',
  'NV12',
  'YV12',
  'YU12',
  'P010',
  'C8  ',
  'Y410',
  'XYUV',
  'NV24',
  'T010',
].map((f) => Buffer.from(f, 'latin1').readUInt32LE(0));

/** Argument values: sizes, offsets and strides at their limits, formats, small numbers. */
const u32 = fc.oneof(
  fc.constantFrom(...EDGE_U32),
  fc.nat(64),
  fc.integer({ min: 0, max: 0xffffffff }),
  fc.integer({ min: -64, max: 64 }).map((n) => n >>> 0),
  fc.constantFrom(...SHM_FORMATS),
  fc.constantFrom(64 * 4, 256 * 4, 4096 * 4, 0x3fff, 0x4000, 1 << 20, (1 << 20) + 4),
);

const argValue = fc.record({
  u: u32,
  s: fc.oneof(
    fc.constantFrom(...INTERFACE_NAMES),
    fc.string({ maxLength: 16 }),
    fc.constantFrom('', 'a'.repeat(300)),
  ),
});

function step(events: boolean): fc.Arbitrary<Step> {
  const side = events
    ? fc.constantFrom<Side>('h', 'h', 'h', 'c')
    : fc.constantFrom<Side>('c', 'c', 'c', 'h');
  return fc.oneof(
    {
      weight: 8,
      arbitrary: fc.record({
        kind: fc.constant('message' as const),
        side,
        id: fc.oneof(
          { weight: 6, arbitrary: fc.nat(LIVE - 1) },
          fc.integer({ min: 0xff000000, max: 0xff000020 }),
          fc.constantFrom(0, LIVE, 0xffffffff),
        ),
        opcode: fc.oneof(fc.nat(12), fc.constant(0xffff)),
        args: fc.array(argValue, { maxLength: 8 }),
        fds: fc.array(fdSpec, { maxLength: 3 }),
      }),
    },
    {
      weight: 1,
      arbitrary: fc.record({
        kind: fc.constant('raw' as const),
        side,
        data: fc.uint8Array({ maxLength: 64 }),
        fds: fc.array(fdSpec, { maxLength: 2 }),
      }),
    },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('hangup' as const), side }) },
    {
      weight: 1,
      arbitrary: fc.record({ kind: fc.constant('congest' as const), side, on: fc.boolean() }),
    },
    {
      weight: 1,
      arbitrary: fc.record({
        kind: fc.constant('truncate' as const),
        memfd: fc.nat(),
        size: fc.oneof(fc.constantFrom(0, 1, 4095, 4096), fc.nat(1 << 20)),
      }),
    },
  );
}

function relayInput(corpus: readonly Trace[], events: boolean): fc.Arbitrary<RelayInput> {
  return fc.record({
    trace: fc.nat(Math.max(0, corpus.length - 1)),
    // mostly after the whole trace: host events recorded after the steps no longer fit
    at: fc.oneof({ weight: 3, arbitrary: fc.constant(-1) }, fc.nat()),
    steps: fc.array(step(events), { maxLength: 12 }),
    words: fc.array(fc.tuple(fc.nat(), fc.nat(), u32), { maxLength: 4 }),
    fds: fc.array(fc.tuple(fc.nat(), fc.nat(), fdSpec), { maxLength: 2 }),
    ops: fc.array(fc.tuple(fc.nat(), fc.boolean()), { maxLength: 2 }),
    keep: fc.oneof({ weight: 6, arbitrary: fc.integer({ min: 1, max: 60 }) }, fc.constant(-1)),
  });
}

/** The whole trace, replayed as it was recorded. */
export function replayInput(trace: number, length: number): RelayInput {
  return { trace, at: length, steps: [], words: [], fds: [], ops: [], keep: -1 };
}

/** Shadow buffers in memfds, as a cross-domain link would give them in host blobs. */
export const memfdShadow: ShadowAllocatorSource = () => ({
  allocate(size: number) {
    const fd = native.memfdCreate('fuzz-shadow', size);
    let bytes: Buffer;
    try {
      bytes = native.mmap(fd, 0, size, true);
    } catch (e) {
      closeQuietly(fd);
      throw e;
    }
    return {
      bytes,
      exportFd: () => reopen(fd, 'readwrite'),
      free() {
        native.munmap(bytes);
        closeQuietly(fd);
      },
    };
  },
});

/** Decoded corpus ops, kept per corpus array. */
const decoded = new WeakMap<
  readonly Trace[],
  { side: Side; data: Buffer; fds: readonly FdSpec[] }[][]
>();

function decode(corpus: readonly Trace[]) {
  let d = decoded.get(corpus);
  if (!d) {
    d = corpus.map((t) =>
      t.ops.map((op) => ({ side: op.side, data: Buffer.from(op.data, 'base64'), fds: op.fds })),
    );
    decoded.set(corpus, d);
  }
  return d;
}

/** Builds a message for the interface object `id` has now on that side (any opcode, any size). */
function buildMessage(relay: Relay, s: Extract<Step, { kind: 'message' }>): Buffer {
  const id = s.id < LIVE ? liveId(relay, s.side, s.id, null) : s.id;
  const obj = s.side === 'c' ? relay.clientIds.get(id) : relay.hostIds.get(id);
  const msgs = obj ? (s.side === 'c' ? obj.iface.requests : obj.iface.events) : [];
  const msg = msgs.length > 0 ? msgs[s.opcode % (msgs.length + 1)] : undefined;
  const words: Buffer[] = [];
  const word = (v: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v >>> 0);
    words.push(b);
  };
  const str = (v: string, n: number) => {
    const bytes = Buffer.from(v + '\0');
    // n picks a length field that lies now and then
    const len = n % 7 === 6 ? n : bytes.length;
    word(len);
    words.push(Buffer.concat([bytes, Buffer.alloc((4 - (bytes.length % 4)) % 4)]));
  };
  let i = 0;
  const arg = () => s.args[i++ % Math.max(1, s.args.length)] ?? { u: 0, s: '' };
  const kinds = msg?.kinds ?? [];
  for (let k = 0; k < kinds.length; k++) {
    const kind = kinds[k];
    const a = arg();
    switch (kind) {
      case ArgKind.Fd:
        break;
      case ArgKind.String:
        str(a.s, a.u);
        break;
      case ArgKind.Array:
        word(a.u % 97);
        words.push(Buffer.alloc(((a.u % 97) + 3) & ~3, a.u & 0xff));
        break;
      case ArgKind.Object:
        word(a.u < LIVE ? liveId(relay, s.side, a.u, msg!.argInterfaces[k]) : a.u);
        break;
      case ArgKind.NewId:
        if (msg!.argInterfaces[k] === null) {
          str(a.s, 0);
          word(a.u % 9);
        }
        word(nextId(relay, s.side, a.u));
        break;
      default:
        word(a.u);
    }
  }
  const body = Buffer.concat(words);
  const head = Buffer.alloc(8);
  head.writeUInt32LE(id >>> 0, 0);
  head.writeUInt32LE((((8 + body.length) & 0xffff) << 16) | (msg?.opcode ?? s.opcode & 0xffff), 4);
  return Buffer.concat([head, body]);
}

/** The id, on one side, of the n-th live object (of that interface when there is one). */
function liveId(relay: Relay, side: Side, n: number, iface: Interface | null): number {
  const ids = side === 'c' ? relay.clientIds : relay.hostIds;
  const all: number[] = [];
  const typed: number[] = [];
  for (const o of ids.objects()) {
    const id = side === 'c' ? o.clientId : o.hostId;
    all.push(id);
    if (o.iface === iface) typed.push(id);
  }
  const from = typed.length > 0 && n % 8 !== 7 ? typed : all;
  return from[n % from.length] ?? 0;
}

/** A new id: mostly the next free one on that side, sometimes a taken or wild one. */
function nextId(relay: Relay, side: Side, u: number): number {
  if (u % 5 === 4) return u;
  const ids = side === 'c' ? relay.clientIds : relay.hostIds;
  let id = side === 'c' ? 2 : 0xff000000;
  while (ids.get(id)) id++;
  return id;
}

interface RelayTargetOptions {
  readonly name: string;
  readonly description: string;
  readonly corpusDir: string;
  readonly hooks: () => Map<string, InterfaceHooks>;
  /** Events from the compositor are the input (else requests from the client). */
  readonly events: boolean;
}

function relayTarget(o: RelayTargetOptions): FuzzTarget<RelayInput> {
  const target = {
    name: o.name,
    corpusDir: o.corpusDir,
    description: o.description,
    corpus: [] as readonly Trace[],
    arbitrary(corpus: readonly unknown[]) {
      target.corpus = corpus as Trace[];
      return relayInput(target.corpus, o.events);
    },
    seeds(corpus: readonly unknown[]) {
      return (corpus as Trace[]).map((t, i) => replayInput(i, t.ops.length));
    },
    run(input: RelayInput) {
      runRelay(target.corpus, o, input);
    },
  };
  return target;
}

/** Runs one input; throws on a fault. */
export function runRelay(
  corpus: readonly Trace[],
  o: Pick<RelayTargetOptions, 'hooks' | 'events'>,
  input: RelayInput,
): void {
  const traces = decode(corpus);
  const trace = traces[input.trace % Math.max(1, traces.length)] ?? [];
  const ops = input.keep < 0 ? [...trace] : trace.slice(0, input.keep);
  for (const [i, repeat] of input.ops) {
    if (ops.length === 0) break;
    const k = i % ops.length;
    if (repeat) ops.splice(k, 0, ops[k]);
    else ops.splice(k, 1);
  }
  const mutable = (i: number) => ops[i].side === (o.events ? 'h' : 'c');
  for (const [opIndex, wordIndex, value] of input.words) {
    if (ops.length === 0) break;
    const k = opIndex % ops.length;
    if (!mutable(k) || ops[k].data.length < 4) continue;
    const data = Buffer.from(ops[k].data);
    data.writeUInt32LE(value >>> 0, 4 * (wordIndex % (data.length >> 2)));
    ops[k] = { ...ops[k], data };
  }
  for (const [opIndex, fdIndex, spec] of input.fds) {
    if (ops.length === 0) break;
    const k = opIndex % ops.length;
    if (!mutable(k) || ops[k].fds.length === 0) continue;
    const fds = [...ops[k].fds];
    fds[fdIndex % fds.length] = spec;
    ops[k] = { ...ops[k], fds };
  }
  const at = input.at < 0 ? ops.length : input.at % (ops.length + 1);

  let client!: MemoryEndpoint;
  let host!: MemoryEndpoint;
  let relayClosed = false;
  const warnings = new Warnings();
  const relay = new Relay({
    tables,
    hooks: o.hooks(),
    connectClient: (h) => (client = new MemoryEndpoint(h)),
    connectHost: (h) => (host = new MemoryEndpoint(h)),
    onClose: () => (relayClosed = true),
    warn: warnings.warn,
  });
  const extra: number[] = [];
  let hungUp = false;
  /** Our own handle on every memory file sent, to truncate it later. */
  const memfds: number[] = [];
  const send = (side: Side, data: Uint8Array, specs: readonly FdSpec[]) => {
    const fds = specs.map((s) => {
      const fd = openFd(s, extra);
      if (s.kind === 'memfd') memfds.push(reopen(fd, 'readwrite'));
      return fd;
    });
    (side === 'c' ? client : host).deliver(data, fds);
  };
  try {
    const replay = (from: number, to: number) => {
      for (let i = from; i < to && !relayClosed; i++) send(ops[i].side, ops[i].data, ops[i].fds);
    };
    replay(0, at);
    for (const s of input.steps) {
      if (relayClosed) break;
      const ep = s.kind === 'truncate' || s.side === 'c' ? client : host;
      switch (s.kind) {
        case 'message':
          send(s.side, buildMessage(relay, s), s.fds);
          break;
        case 'raw':
          send(s.side, s.data, s.fds);
          break;
        case 'hangup':
          hungUp = true;
          ep.hangUp();
          break;
        case 'congest':
          if (s.on) ep.congested = true;
          else ep.drain();
          break;
        case 'truncate':
          if (memfds.length > 0) ftruncateSync(memfds[s.memfd % memfds.length], s.size);
      }
    }
    replay(at, ops.length);
    if (process.env.FUZZ_DEBUG) {
      const held = (relay as unknown as { held: boolean }).held;
      console.error(`relay ${relayClosed ? 'closed' : held ? 'holding requests' : 'open'}`);
    }
    warnings.check('the relay');
    for (const ep of [client, host]) {
      if (ep.malformed) throw new Error(`the relay sent a malformed message: ${ep.malformed}`);
    }
    if (relayClosed && !hungUp && !isDisplayError(client.lastSent)) {
      throw new Error('the relay ended a client without a wl_display.error');
    }
  } finally {
    relay.close();
    for (const fd of [...extra, ...memfds]) closeQuietly(fd);
  }
}

function isDisplayError(msg: Buffer | null): boolean {
  return msg !== null && msg.readUInt32LE(0) === 1 && (msg.readUInt32LE(4) & 0xffff) === 0;
}

/** How tswl-proxy relays in host mode: labels on, privileged globals withheld. */
export const hostModeHooks = () =>
  relayHooks({ tag: '[vm] ', appIdPrefix: 'vm.', hiddenGlobals: withheldGlobals([]) });

/** How it relays across a VM boundary: wl_shm shadowed (in memfds here), more globals hidden. */
export const shadowHooks = () =>
  relayHooks({
    tag: '[vm] ',
    appIdPrefix: 'vm.',
    shadowShm: memfdShadow,
    hiddenGlobals: new Set([...withheldGlobals([]), ...VM_BOUNDARY_HIDDEN_GLOBALS]),
  });

/**
 * The corpus of each: sessions recorded through a relay with those same hooks, so that replayed
 * events fit the ids the relay gives its own host objects (shadow pools and buffers).
 */
export const CORPUS = { hostMode: 'relay', shadow: 'relay-shm' } as const;

export const relayTargets = [
  relayTarget({
    name: 'relay-requests',
    description: "tswl-proxy's relay in host mode: requests, fds, ids and sizes from a client",
    corpusDir: CORPUS.hostMode,
    hooks: hostModeHooks,
    events: false,
  }),
  relayTarget({
    name: 'relay-requests-shm',
    description:
      'the relay with wl_shm shadowing on (as across a VM boundary): pools, buffers of any shape, damage, commits',
    corpusDir: CORPUS.shadow,
    hooks: shadowHooks,
    events: false,
  }),
  relayTarget({
    name: 'relay-events',
    description: 'events from the host compositor into the relay in host mode',
    corpusDir: CORPUS.hostMode,
    hooks: hostModeHooks,
    events: true,
  }),
  relayTarget({
    name: 'relay-events-shm',
    description:
      'events from the host compositor into the relay with wl_shm shadowed (buffer releases, keymaps)',
    corpusDir: CORPUS.shadow,
    hooks: shadowHooks,
    events: true,
  }),
];

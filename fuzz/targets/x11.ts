// The X11 window manager's input from Xwayland: the bytes on its -wm connection go into
// XConnection.feed (setup reply, replies, errors, events, in any chunks) and the events it
// decodes into WindowManager.handleEvent. A stand-in server answers every request that expects a
// reply with fuzzed words (so the WM gets through its start with odd atoms, extensions, property
// values and window trees), and sends events about the windows the WM has seen, with fields at
// their limits.
import fc from 'fast-check';
import { EventCode, decodeEvent } from '../../src/xwayland/x11/events.js';
import { XConnection } from '../../src/xwayland/x11/connection.js';
import { WindowManager } from '../../src/xwayland/wm.js';
import { XwaylandSurfaces } from '../../src/xwayland/surfaces.js';
import type { FuzzTarget } from '../harness.js';
import { EDGE_U32 } from '../harness.js';

type Step =
  /** Answers every request waiting for a reply; `words` fill its fields after the header. */
  | {
      readonly s: 'replies';
      readonly words: readonly number[];
      readonly extra: number;
      readonly count: number;
    }
  | { readonly s: 'error'; readonly code: number; readonly words: readonly number[] }
  | {
      readonly s: 'event';
      readonly code: number;
      /** Index into windows the WM knows (or, past them, a literal id). */
      readonly window: number;
      readonly words: readonly number[];
      readonly synthetic: boolean;
    }
  | { readonly s: 'raw'; readonly bytes: Uint8Array }
  | { readonly s: 'tick' };

export interface X11Input {
  readonly setup: {
    readonly ok: boolean;
    readonly vendor: number;
    readonly screens: number;
    readonly formats: number;
    readonly mask: number;
    readonly words: readonly number[];
  };
  readonly steps: readonly Step[];
  /** Bytes are fed in chunks of this size (0: each packet whole). */
  readonly chunk: number;
}

const ROOT = 0x3e2;
const u32 = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...EDGE_U32) },
  { weight: 3, arbitrary: fc.nat(64) },
  fc.constantFrom(ROOT, 0x200001, 0x400000),
  fc.integer({ min: 0, max: 0xffffffff }),
);
const words = fc.array(u32, { maxLength: 10 });
const EVENT_CODES = [...Object.values(EventCode), 2, 7, 9, 12, 21, 35, 64, 65, 90];

const step: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      s: fc.constant('replies' as const),
      words,
      extra: fc.oneof({ weight: 5, arbitrary: fc.nat(4) }, u32),
      count: fc.oneof(fc.constant(1000), fc.nat(4)),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ s: fc.constant('error' as const), code: fc.nat(20), words }),
  },
  {
    weight: 6,
    arbitrary: fc.record({
      s: fc.constant('event' as const),
      code: fc.oneof(fc.constantFrom(...EVENT_CODES), fc.nat(127)),
      window: fc.oneof({ weight: 4, arbitrary: fc.nat(7) }, u32),
      words,
      synthetic: fc.boolean(),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      s: fc.constant('raw' as const),
      bytes: fc.uint8Array({ maxLength: 48 }),
    }),
  },
  { weight: 2, arbitrary: fc.record({ s: fc.constant('tick' as const) }) },
);

const tick = () => new Promise<void>((r) => setImmediate(r));

function setupReply(s: X11Input['setup']): Buffer {
  const vendor = s.vendor % 64;
  const formats = s.formats % 4;
  const screenAt = 40 + ((vendor + 3) & ~3) + 8 * formats;
  const b = Buffer.alloc(screenAt + 40 + 16);
  b[0] = s.ok ? 1 : 0;
  b[1] = 5;
  b.writeUInt16LE(11, 2);
  b.writeUInt16LE((b.length - 8) / 4, 6);
  b.writeUInt32LE(0x200000, 12);
  b.writeUInt32LE(s.mask >>> 0, 16);
  b.writeUInt16LE(vendor, 24);
  b.writeUInt16LE(0xffff, 26);
  b[28] = s.screens % 3;
  b[29] = formats;
  b.writeUInt32LE(ROOT, screenAt);
  b.writeUInt16LE(1024, screenAt + 20);
  b.writeUInt16LE(768, screenAt + 22);
  b.writeUInt32LE(0x21, screenAt + 32);
  b[screenAt + 38] = 24;
  s.words.forEach((w, i) => {
    if (8 + 4 * i + 4 <= b.length && i % 3 === 2) b.writeUInt32LE(w >>> 0, 8 + 4 * i);
  });
  return b;
}

export async function runX11(input: X11Input): Promise<void> {
  const written: Buffer[] = [];
  let closedWhy: Error | null | undefined;
  let fault: unknown = null;
  const onRejection = (e: unknown) => (fault ??= e);
  process.on('unhandledRejection', onRejection);
  let wm!: WindowManager;
  const conn = new XConnection(
    { write: (b) => void written.push(b), close: () => {} },
    {
      event: (code, packet) => {
        const ev = decodeEvent(code, packet, wm.xfixes?.firstEvent ?? 0);
        if (ev) wm.handleEvent(ev);
      },
      error: () => {},
      closed: (why) => (closedWhy = why),
    },
  );
  const surfaces = new XwaylandSurfaces({
    resolve: (s) => wm.resolve(s),
    destroyed: (s) => wm.destroyed(s),
    keyboardEnter: (s) => wm.keyboardEnter(s),
    pointerEnter: (s) => wm.pointerEnter(s),
    attached: (s) => wm.attached(s),
  });
  wm = new WindowManager(conn, surfaces, {
    tag: '[x] ',
    appIdPrefix: 'vm.',
    xrdb: ['Xft.dpi:96'],
    warn: () => {},
  });
  const started = wm.start().catch(() => {});
  const internals = conn as unknown as { pending: { sequence: number }[]; sequence: number };
  const feed = (bytes: Buffer) => {
    if (input.chunk <= 0) return conn.feed(bytes);
    for (let at = 0; at < bytes.length; at += input.chunk)
      conn.feed(bytes.subarray(at, at + input.chunk));
  };
  const windows = () => [ROOT, ...wm.windows.keys()];
  try {
    feed(setupReply(input.setup));
    await tick();
    for (const st of input.steps) {
      if (closedWhy !== undefined || fault) break;
      switch (st.s) {
        case 'replies': {
          const n = Math.min(st.count, internals.pending.length);
          for (let i = 0; i < n; i++) {
            const extra = st.extra;
            const b = Buffer.alloc(32 + 4 * Math.min(extra, 64));
            b[0] = 1;
            b[1] = st.words[0] ?? 0;
            b.writeUInt16LE(internals.pending[0]?.sequence & 0xffff, 2);
            b.writeUInt32LE(extra >>> 0, 4);
            st.words.forEach((w, k) => {
              if (8 + 4 * k + 4 <= b.length) b.writeUInt32LE((w + i) >>> 0, 8 + 4 * k);
            });
            feed(b);
            if (closedWhy !== undefined) break;
          }
          await tick();
          break;
        }
        case 'error': {
          const b = Buffer.alloc(32);
          b[1] = st.code;
          b.writeUInt16LE(internals.sequence & 0xffff, 2);
          st.words.forEach((w, k) => b.writeUInt32LE(w >>> 0, 4 + 4 * (k % 7)));
          feed(b);
          break;
        }
        case 'event': {
          const b = Buffer.alloc(32);
          b[0] = (st.code & 0x7f) | (st.synthetic ? 0x80 : 0);
          b.writeUInt16LE(internals.sequence & 0xffff, 2);
          st.words.forEach((w, k) => b.writeUInt32LE(w >>> 0, 4 + 4 * (k % 7)));
          const ws = windows();
          const window = st.window < 8 ? ws[st.window % ws.length] : st.window >>> 0;
          // the window field of the kinds the WM handles: 4 for most, 8 for create and configure
          b.writeUInt32LE(window, st.code === EventCode.CreateNotify ? 8 : 4);
          if (st.code === EventCode.CreateNotify || st.code === EventCode.MapRequest)
            b.writeUInt32LE(ROOT, 4);
          if (st.code === EventCode.MapRequest) b.writeUInt32LE(window, 8);
          feed(b);
          break;
        }
        case 'raw':
          feed(Buffer.from(st.bytes));
          break;
        case 'tick':
          await tick();
      }
    }
    await tick();
    if (process.env.FUZZ_DEBUG) {
      console.error(`the WM ${wm.atoms ? `started, ${wm.windows.size} windows` : 'did not start'}`);
    }
    if (fault) throw fault;
  } finally {
    conn.close();
    await started;
    await tick();
    process.off('unhandledRejection', onRejection);
  }
  if (fault) throw fault;
}

export const x11Target: FuzzTarget<X11Input> = {
  name: 'x11-wm',
  description: "the X11 window manager's input from Xwayland: setup, replies, errors and events",
  async: true,
  arbitrary() {
    return fc.record({
      setup: fc.record({
        ok: fc.oneof({ weight: 9, arbitrary: fc.constant(true) }, fc.constant(false)),
        vendor: fc.oneof(fc.constant(4), fc.nat(70)),
        screens: fc.oneof({ weight: 5, arbitrary: fc.constant(1) }, fc.nat(3)),
        formats: fc.nat(3),
        mask: fc.oneof({ weight: 5, arbitrary: fc.constant(0x1fffff) }, u32),
        words: fc.oneof({ weight: 5, arbitrary: fc.constant([]) }, words),
      }),
      steps: fc.array(step, { maxLength: 24 }),
      chunk: fc.oneof({ weight: 5, arbitrary: fc.constant(0) }, fc.integer({ min: 1, max: 40 })),
    });
  },
  seeds() {
    const setup = { ok: true, vendor: 4, screens: 1, formats: 1, mask: 0x1fffff, words: [] };
    const replies: Step = { s: 'replies', words: [1, 5, 0, 0], extra: 0, count: 1000 };
    return [
      {
        setup,
        chunk: 0,
        steps: [
          replies,
          replies,
          replies,
          replies,
          {
            s: 'event',
            code: EventCode.CreateNotify,
            window: 0x200001,
            words: [0, 0, 0, 0, 0x00640064],
            synthetic: false,
          },
          { s: 'event', code: EventCode.MapRequest, window: 1, words: [], synthetic: false },
          replies,
          {
            s: 'event',
            code: EventCode.PropertyNotify,
            window: 1,
            words: [0, 39],
            synthetic: false,
          },
          replies,
        ],
      },
    ];
  },
  run: runX11,
};

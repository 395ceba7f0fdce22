// Records the fuzz corpus from real traffic: real clients (weston demos, foot, GTK, wl-copy) run
// against weston (x11 backend under Xvfb, so there is a seat) through an in-process relay whose
// two Connections note every read: its bytes and what each fd was. Each client is recorded twice,
// through the hooks its targets use: in fuzz/corpus/relay/ (host mode) and fuzz/corpus/relay-shm/
// (wl_shm shadowed), so that replayed events fit the ids the relay gives its own host objects.
// `npm run fuzz:record` (bundled into fuzz/build/) when the protocols or the relay change a lot.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { allInterfaces } from '../src/generated/index.js';
import * as native from '../src/native/index.js';
import { ProtocolTables } from '../src/protocol/tables.js';
import { Relay } from '../src/relay/relay.js';
import type { EndpointHandler } from '../src/wire/connection.js';
import { Connection } from '../src/wire/connection.js';
import { type Running, accepts, start, stop, waitFor } from '../test/support/processes.js';
import type { FdSpec } from './harness.js';
import type { Trace, TraceOp } from './targets/relay.js';
import { CORPUS, hostModeHooks, shadowHooks } from './targets/relay.js';

/** A trace stops growing here: the corpus stays small, and the session's start is what matters. */
const MAX_OPS = 300;
const MAX_BYTES = 48 * 1024;

const CLIENTS: { name: string; command: string[]; seconds: number; input?: string[][] }[] = [
  { name: 'weston-simple-shm', command: ['weston-simple-shm'], seconds: 2 },
  { name: 'weston-simple-egl', command: ['weston-simple-egl'], seconds: 2 },
  {
    name: 'weston-terminal',
    command: ['weston-terminal', '--shell=/bin/sh'],
    seconds: 3,
    input: [
      ['mousemove', '200', '200'],
      ['type', 'ls'],
      ['key', 'Return'],
      ['click', '1'],
    ],
  },
  {
    name: 'foot',
    command: ['foot', '-o', 'font=monospace:size=8', 'sh'],
    seconds: 3,
    input: [
      ['mousemove', '100', '120'],
      ['type', 'echo hi'],
      ['key', 'Return'],
      ['click', '3'],
    ],
  },
  { name: 'gtk4-demo', command: ['gtk4-demo'], seconds: 5, input: [['mousemove', '50', '50']] },
  { name: 'weston-dnd', command: ['weston-dnd'], seconds: 2, input: [['mousemove', '300', '200']] },
  { name: 'wl-copy', command: ['wl-copy', 'fuzz corpus clipboard'], seconds: 2 },
  { name: 'wl-paste', command: ['wl-paste', '--no-newline'], seconds: 2 },
];

function fdSpec(fd: number): FdSpec {
  const k = native.fdKind(fd);
  switch (k.kind) {
    case 'memory':
      return { kind: 'memfd', size: k.size };
    case 'pipe-read':
    case 'pipe-write':
      return { kind: k.kind };
    default:
      return { kind: 'socket' };
  }
}

/** Wraps a Connection's handler so that each read is noted before the relay sees it. */
function recording(
  side: 'c' | 'h',
  ops: TraceOp[],
  connect: (h: EndpointHandler) => Connection,
  handler: EndpointHandler,
): Connection {
  let bytes = 0;
  let fds = 0;
  let total = 0;
  const conn: Connection = connect({
    ...handler,
    onData() {
      const newBytes = conn.bytesIn - bytes;
      const newFds = conn.fdsIn - fds;
      bytes = conn.bytesIn;
      fds = conn.fdsIn;
      if (ops.length < MAX_OPS && total < MAX_BYTES) {
        total += newBytes;
        // the queue is private to the wire layer; a recorder may look inside
        const q = conn.inFds as unknown as { ring: Int32Array; head: number; length: number };
        const specs: FdSpec[] = [];
        for (let i = q.length - newFds; i < q.length; i++)
          specs.push(fdSpec(q.ring[(q.head + i) % q.ring.length]));
        const data = conn.in.subarray(conn.inEnd - newBytes, conn.inEnd);
        ops.push({ side, data: Buffer.from(data).toString('base64'), fds: specs });
      }
      handler.onData();
    },
  });
  return conn;
}

async function main(): Promise<void> {
  const runtimeDir = mkdtempSync(join(tmpdir(), 'tswl-record-'));
  const xvfb = start(
    'Xvfb',
    ['-displayfd', '1', '-screen', '0', '640x480x24', '-nolisten', 'tcp'],
    process.env,
  );
  const running: Running[] = [xvfb];
  try {
    const display = `:${await waitFor('Xvfb', () => /(?:^|\n)(\d+)\n/.exec(xvfb.output())?.[1])}`;
    const weston = start(
      'weston',
      ['--backend=x11-backend.so', '--shell=kiosk-shell.so', '--use-pixman', '--socket=wayland-0'],
      { ...process.env, XDG_RUNTIME_DIR: runtimeDir, DISPLAY: display },
    );
    running.push(weston);
    await waitFor('weston', () => accepts(join(runtimeDir, 'wayland-0')));
    const compositor = join(runtimeDir, 'wayland-0');
    const tables = new ProtocolTables(allInterfaces);
    let hooks = hostModeHooks();
    const listener = native.listenUnix(join(runtimeDir, 'wayland-rec'));
    let current: TraceOp[] = [];
    const poller = new native.Poller(listener.fd, () => {
      for (;;) {
        const fd = native.accept(listener.fd);
        if (fd < 0) return;
        const ops = current;
        new Relay({
          tables,
          hooks,
          connectClient: (h) => recording('c', ops, (hh) => new Connection(fd, hh), h),
          connectHost: (h) =>
            recording('h', ops, (hh) => new Connection(native.connectUnix(compositor), hh), h),
        });
      }
    });
    poller.update(native.READABLE);
    // each client twice: through the host-mode relay, and through one that shadows wl_shm
    for (const [dir, makeHooks] of [
      [CORPUS.hostMode, hostModeHooks],
      [CORPUS.shadow, shadowHooks],
    ] as const) {
      const out = join(import.meta.dirname, '..', 'corpus', dir);
      mkdirSync(out, { recursive: true });
      hooks = makeHooks();
      for (const c of CLIENTS) {
        current = [];
        const env: NodeJS.ProcessEnv = {
          ...process.env,
          XDG_RUNTIME_DIR: runtimeDir,
          WAYLAND_DISPLAY: 'wayland-rec',
          HOME: runtimeDir,
          GDK_BACKEND: 'wayland',
          GSK_RENDERER: 'cairo',
        };
        delete env.DISPLAY;
        const client = start(c.command[0], c.command.slice(1), env);
        await new Promise((r) => setTimeout(r, 1000));
        for (const args of c.input ?? []) {
          spawnSync('xdotool', args, { env: { ...process.env, DISPLAY: display } });
          await new Promise((r) => setTimeout(r, 200));
        }
        await new Promise((r) => setTimeout(r, c.seconds * 1000));
        await stop(client);
        await new Promise((r) => setTimeout(r, 200));
        const trace: Trace = { source: c.name, ops: current };
        writeFileSync(join(out, `${c.name}.json`), JSON.stringify(trace) + '\n');
        console.log(`${dir}/${c.name}: ${current.length} reads`);
      }
    }
    poller.close();
    native.close(listener.fd);
  } finally {
    for (const r of running.reverse()) await stop(r);
    rmSync(runtimeDir, { recursive: true, force: true });
  }
  process.exit(0);
}

await main();

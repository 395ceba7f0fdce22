// Two small parsers of what a local user or a service manager hands tswl-proxy: the control
// FIFO's command lines (any bytes, in any chunks, lines without end), and socket activation's
// LISTEN_PID / LISTEN_FDS / LISTEN_FDNAMES. Each must answer garbage with a warning or a
// UsageError naming the bad value, never another exception, and never hold unbounded input.
import { closeSync, constants, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { allInterfaces } from '../../src/generated/index.js';
import { listenFdsFromEnv } from '../../src/cli/activation.js';
import { UsageError } from '../../src/cli/paths.js';
import { runControlCommand } from '../../src/cli/tswl-proxy.js';
import { ControlPipe } from '../../src/log/control.js';
import { Log } from '../../src/log/log.js';
import { ProtocolTables } from '../../src/protocol/tables.js';
import { ProxyServer } from '../../src/proxy.js';
import type { FuzzTarget } from '../harness.js';

// ---- the control FIFO ----------------------------------------------------------------------------

/** Opened once per process: a FIFO, the pipe reading it, a writer, a log with a ring file. */
let fifo: {
  dir: string;
  pipe: ControlPipe;
  writer: number;
  commands: string[];
} | null = null;

function controlFifo() {
  if (fifo) return fifo;
  const dir = mkdtempSync(join(tmpdir(), 'tswl-fuzz-ctl-'));
  const log = new Log({
    ringPath: join(dir, 'ring.log'),
    ringSize: 4096,
    verbose: true,
    prefix: 'fuzz',
    stderr: () => {},
  });
  const server = new ProxyServer({
    listenPath: join(dir, 'unused'),
    connectHost: () => {
      throw new Error('no host');
    },
    hostName: 'nowhere',
    tables: new ProtocolTables(allInterfaces),
    hooks: new Map(),
    warn: () => {},
  });
  const commands: string[] = [];
  const pipe = new ControlPipe(join(dir, 'ctl'), (cmd) => {
    commands.push(cmd);
    runControlCommand(cmd, log, server);
  });
  pipe.open();
  const writer = openSync(pipe.path, constants.O_WRONLY | constants.O_NONBLOCK);
  process.once('exit', () => {
    closeSync(writer);
    pipe.close();
    rmSync(dir, { recursive: true, force: true });
  });
  fifo = { dir, pipe, writer, commands };
  return fifo;
}

const CONTROL_WORDS = ['dump-log', 'stats', '\n', ' ', '\r\n', '\t', '\0', 'x'.repeat(5000)];

export const controlTarget: FuzzTarget<readonly (string | Uint8Array)[]> = {
  name: 'control-fifo',
  description: "tswl-proxy's control FIFO: command lines as any bytes, in any chunks",
  arbitrary() {
    return fc.array(
      fc.oneof(
        fc.constantFrom(...CONTROL_WORDS),
        fc.string({ maxLength: 40 }),
        fc.uint8Array({ maxLength: 40 }),
      ),
      { maxLength: 12 },
    );
  },
  setup: () => void controlFifo(),
  seeds() {
    return [
      ['stats\n', 'dump-log\n'],
      ['sta', 'ts\n'],
      ['x'.repeat(5000), '\nstats\n'],
    ];
  },
  run(chunks) {
    const f = controlFifo();
    f.commands.length = 0;
    for (const chunk of chunks) {
      const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : Buffer.from(chunk);
      if (bytes.length > 0) writeSync(f.writer, bytes);
      // the poller would call this when the FIFO is readable; the fuzzer calls it at once
      (f.pipe as unknown as { readCommands(): void }).readCommands();
    }
    const pending = (f.pipe as unknown as { pending: string }).pending;
    if (pending.length > 4096)
      throw new Error(`the control pipe holds ${pending.length} chars of an unfinished line`);
    for (const c of f.commands) {
      if (c.includes('\n') || c !== c.trim())
        throw new Error(`a command with whitespace: ${JSON.stringify(c)}`);
    }
    // the ring file takes every report: start each input with none
    rmSync(join(f.dir, 'ring.log'), { force: true });
    // an unfinished line stays for the next input: end it
    writeSync(f.writer, '\n');
    (f.pipe as unknown as { readCommands(): void }).readCommands();
  },
};

// ---- socket activation ---------------------------------------------------------------------------

interface ActivationInput {
  readonly pid: string | null;
  readonly fds: string | null;
  readonly names: string | null;
}

const numberish = fc.oneof(
  fc.constantFrom(
    '1',
    '2',
    '3',
    '0',
    '-1',
    '01',
    '1 ',
    ' 1',
    '1e3',
    '0x10',
    '',
    '4294967296',
    '2147483644',
    '2147483645',
    '999999999999999999999',
  ),
  fc.nat().map(String),
  fc.string({ maxLength: 12 }),
);
const names = fc.oneof(
  fc.constantFrom(
    'wayland',
    'x11',
    'wayland:x11',
    'x11:wayland',
    'wayland:wayland',
    'unknown',
    ':',
    '',
    'wayland:',
    'a:b:c',
  ),
  fc
    .array(fc.constantFrom('wayland', 'x11', 'unknown', '', 'foo'), { maxLength: 6 })
    .map((a) => a.join(':')),
  fc.string({ maxLength: 30 }),
);

export const activationTarget: FuzzTarget<ActivationInput> = {
  name: 'listen-fds',
  description: 'socket activation: LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES as any strings',
  arbitrary() {
    return fc.record({
      pid: fc.oneof(
        { weight: 4, arbitrary: fc.constant(String(process.pid)) },
        fc.constant(null),
        numberish,
      ),
      fds: fc.oneof(fc.constant(null), numberish),
      names: fc.oneof(fc.constant(null), names),
    });
  },
  seeds() {
    const pid = String(process.pid);
    return [
      { pid, fds: '1', names: null },
      { pid, fds: '2', names: 'wayland:x11' },
      { pid, fds: '2147483644', names: null },
    ];
  },
  run(input) {
    const env: NodeJS.ProcessEnv = {};
    if (input.pid !== null) env.LISTEN_PID = input.pid;
    if (input.fds !== null) env.LISTEN_FDS = input.fds;
    if (input.names !== null) env.LISTEN_FDNAMES = input.names;
    try {
      // fds 3, 4… of this process are Node's own (an epoll fd, pipes): never listening sockets,
      // so only the refusal paths run, and nothing of them is changed
      const r = listenFdsFromEnv(env, process.pid);
      if (r !== null)
        throw new Error(`accepted ${JSON.stringify(r)} with no listening socket passed`);
    } catch (e) {
      if (!(e instanceof UsageError)) throw e;
    }
    if (Object.keys(env).length > 0)
      throw new Error(`LISTEN_* left in the environment: ${Object.keys(env)}`);
  },
};

// systemd integration: socket activation (listenFdsFromEnv), readiness notification (Notifier),
// the native calls behind them, and the unit files. Activation is tested in child processes
// started by the real systemd-socket-activate, since the sockets must sit at fds 3, 4, … of the
// process that reads them; the notify protocol against receivers written in Python and against
// the real systemd-notify.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import {
  closeSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { type ListenOptions, type Server, type Socket, connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { listenFdsFromEnv } from '../src/cli/activation.js';
import { Notifier } from '../src/cli/notify.js';
import { UsageError } from '../src/cli/paths.js';
import {
  close,
  inspectListenSocket,
  listenUnix,
  mkfifo,
  openFdCount,
  sendDatagram,
  socketpair,
} from '../src/native/index.js';

const root = join(import.meta.dirname, '..');
const dir = mkdtempSync(join(tmpdir(), 'tswl-systemd-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const O_NONBLOCK = 0o4000;
const O_CLOEXEC = 0o2000000;

// Children and sockets a test started; afterEach ends what a failing test left behind.
const children = new Set<ChildProcess>();
const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
  children.clear();
  for (const cleanup of cleanups.splice(0).reverse()) cleanup();
});

let unique = 0;
/** A fresh name, also usable as an abstract socket name. */
function name(what: string): string {
  return `tswl-test-${process.pid}-${++unique}-${what}`;
}

function errorOf(fn: () => unknown): NodeJS.ErrnoException {
  try {
    fn();
  } catch (e) {
    return e as NodeJS.ErrnoException;
  }
  throw new Error('expected an exception');
}

function startChild(command: string, args: string[], env = cleanEnv()): ChildProcess {
  const child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  return child;
}

/** process.env without the variables these tests are about. */
function cleanEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const key of ['LISTEN_PID', 'LISTEN_PIDFDID', 'LISTEN_FDS', 'LISTEN_FDNAMES']) {
    delete env[key];
  }
  delete env.NOTIFY_SOCKET;
  return env;
}

/** Collects a child's output and resolves when it has exited. */
function finished(child: ChildProcess): Promise<{ code: number | null; out: string; err: string }> {
  let out = '';
  let err = '';
  child.stdout!.setEncoding('utf8').on('data', (s: string) => (out += s));
  child.stderr!.setEncoding('utf8').on('data', (s: string) => (err += s));
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, out, err }));
  });
}

/** Resolves once `stream` has printed `text` (the child's readiness line). */
function printed(child: ChildProcess, stream: 'stdout' | 'stderr', text: string): Promise<void> {
  return new Promise((resolve, reject) => {
    let seen = '';
    const onData = (chunk: Buffer | string) => {
      seen += String(chunk);
      if (seen.includes(text)) {
        child[stream]!.off('data', onData);
        resolve();
      }
    };
    child[stream]!.on('data', onData);
    child.once('close', (code) =>
      reject(new Error(`${child.spawnfile} exited (${code}) before printing "${text}": ${seen}`)),
    );
  });
}

/** Fails (rather than skips) without the systemd tools: scripts/install-deps.sh installs them. */
function requireTool(tool: string): void {
  const r = spawnSync(tool, ['--version'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) {
    throw new Error(`${tool} is needed (Debian package "systemd"): ${r.error ?? r.stderr}`);
  }
}

describe('listenFdsFromEnv: reading the environment', () => {
  // These cases all end before any fd is looked at (the environment is checked first), so they
  // run in this process: fd 3 here is not a socket from a service manager.
  const pid = 424242;
  function fds(vars: Record<string, string>): ReturnType<typeof listenFdsFromEnv> {
    return listenFdsFromEnv({ ...vars }, pid);
  }
  function usageError(vars: Record<string, string>): string {
    const e = errorOf(() => fds(vars));
    expect(e).toBeInstanceOf(UsageError);
    return e.message;
  }

  test('null without LISTEN_PID, or for another process; nothing else is read', () => {
    expect(fds({})).toBeNull();
    expect(fds({ LISTEN_FDS: '1' })).toBeNull();
    // A malformed LISTEN_FDS is no error when the sockets are not ours.
    expect(fds({ LISTEN_PID: String(pid + 1), LISTEN_FDS: 'garbage', LISTEN_FDNAMES: 'x:y' })).toBe(
      null,
    );
    // LISTEN_FDS unset: sd_listen_fds returns 0, no sockets.
    expect(fds({ LISTEN_PID: String(pid) })).toBeNull();
  });

  test('always removes the LISTEN_* variables, as sd_listen_fds(1) does', () => {
    const vars = {
      LISTEN_PID: String(pid + 1),
      LISTEN_PIDFDID: '7',
      LISTEN_FDS: '1',
      LISTEN_FDNAMES: 'wayland',
      OTHER: 'kept',
    };
    let env: NodeJS.ProcessEnv = { ...vars };
    expect(listenFdsFromEnv(env, pid)).toBeNull();
    expect(env).toEqual({ OTHER: 'kept' });

    env = { ...vars, LISTEN_PID: String(pid), LISTEN_FDNAMES: 'bogus' };
    expect(() => listenFdsFromEnv(env, pid)).toThrow(UsageError);
    expect(env).toEqual({ OTHER: 'kept' });
  });

  test('a malformed LISTEN_PID or LISTEN_FDS is an error naming the value', () => {
    expect(usageError({ LISTEN_PID: 'self', LISTEN_FDS: '1' })).toContain('LISTEN_PID="self"');
    expect(usageError({ LISTEN_PID: '-5' })).toContain('LISTEN_PID="-5"');
    for (const bad of ['', '0', '-1', 'two', '1x', ' 1', '01', '99999999999']) {
      expect(usageError({ LISTEN_PID: String(pid), LISTEN_FDS: bad })).toContain(
        `LISTEN_FDS="${bad}"`,
      );
    }
  });

  test('LISTEN_FDNAMES must have exactly LISTEN_FDS entries', () => {
    const base = { LISTEN_PID: String(pid) };
    expect(usageError({ ...base, LISTEN_FDS: '2', LISTEN_FDNAMES: 'wayland' })).toMatch(
      /LISTEN_FDNAMES="wayland" has 1 name but LISTEN_FDS=2/,
    );
    expect(usageError({ ...base, LISTEN_FDS: '1', LISTEN_FDNAMES: 'wayland:x11' })).toMatch(
      /LISTEN_FDNAMES="wayland:x11" has 2 names but LISTEN_FDS=1/,
    );
    // Empty entries count (systemd does not coalesce separators).
    expect(usageError({ ...base, LISTEN_FDS: '2', LISTEN_FDNAMES: 'wayland::x11' })).toContain(
      'has 3 names',
    );
  });

  test('only "wayland" and "x11" are accepted, each once', () => {
    const base = { LISTEN_PID: String(pid) };
    expect(usageError({ ...base, LISTEN_FDS: '1', LISTEN_FDNAMES: 'wl' })).toMatch(
      /fd 3 is named "wl"; only "wayland" and "x11"/,
    );
    // What a .socket unit without FileDescriptorName= sends: the hint says how to fix it.
    expect(usageError({ ...base, LISTEN_FDS: '1', LISTEN_FDNAMES: 'tswl-proxy.socket' })).toMatch(
      /"tswl-proxy.socket".*FileDescriptorName=/,
    );
    expect(usageError({ ...base, LISTEN_FDS: '2', LISTEN_FDNAMES: 'wayland:' })).toContain(
      'fd 4 is named ""',
    );
    expect(usageError({ ...base, LISTEN_FDS: '2', LISTEN_FDNAMES: 'wayland:wayland' })).toMatch(
      /two sockets are named "wayland" \(fds 3 and 4/,
    );
    expect(usageError({ ...base, LISTEN_FDS: '3', LISTEN_FDNAMES: 'x11:wayland:x11' })).toMatch(
      /two sockets are named "x11" \(fds 3 and 5/,
    );
  });

  test('unnamed fds: only a single one is taken (as "wayland")', () => {
    const base = { LISTEN_PID: String(pid), LISTEN_FDS: '2' };
    expect(usageError(base)).toMatch(/fd 3 has no name/);
    // An empty LISTEN_FDNAMES means no names; "unknown" is systemd's name for an unnamed fd.
    expect(usageError({ ...base, LISTEN_FDNAMES: '' })).toMatch(/fd 3 has no name/);
    expect(usageError({ ...base, LISTEN_FDNAMES: 'wayland:unknown' })).toMatch(/fd 4 has no name/);
  });

  test('a huge LISTEN_FDS without names is refused, not spelled out (found by npm run fuzz)', () => {
    // it once made an array of LISTEN_FDS names: 2^31 of them ended the process out of memory
    const base = { LISTEN_PID: String(pid), LISTEN_FDS: '2147483644' };
    expect(usageError(base)).toMatch(/fd 3 has no name/);
    expect(usageError({ ...base, LISTEN_FDNAMES: 'wayland:x11' })).toMatch(/has 2 names/);
  });
});

describe('listenFdsFromEnv: sockets from systemd-socket-activate', () => {
  const outDir = join(dir, 'compiled');
  const childScript = join(outDir, 'child.mjs');

  beforeAll(() => {
    requireTool('systemd-socket-activate');
    // Compile the modules under test with the project's compiler settings into a directory a
    // plain `node` child can import; build/ (the addon) is linked beside it.
    const tsconfig = join(dir, 'tsconfig.json');
    writeFileSync(
      tsconfig,
      JSON.stringify({
        extends: join(root, 'tsconfig.json'),
        compilerOptions: {
          outDir,
          rootDir: root,
          noEmit: false,
          sourceMap: false,
          typeRoots: [join(root, 'node_modules/@types')],
        },
        files: [join(root, 'src/cli/activation.ts')],
        include: [],
      }),
    );
    const tsc = spawnSync(
      process.execPath,
      [join(root, 'node_modules/typescript/bin/tsc'), '-p', tsconfig],
      {
        encoding: 'utf8',
      },
    );
    if (tsc.status !== 0) throw new Error(`tsc failed: ${tsc.stdout}${tsc.stderr}`);
    symlinkSync(join(root, 'build'), join(outDir, 'build'));
    // Reports what listenFdsFromEnv returned, the fd flags around the call, and what a
    // sub-command would inherit (environment and open fds).
    writeFileSync(
      childScript,
      `import { spawnSync } from 'node:child_process';
import { readFileSync, readlinkSync } from 'node:fs';
import { listenFdsFromEnv } from './src/cli/activation.js';
const flags = (fd) => parseInt(/^flags:\\s+([0-7]+)$/m.exec(readFileSync('/proc/self/fdinfo/' + fd, 'utf8'))[1], 8);
const fds = [];
for (let i = 0; i < Number(process.env.LISTEN_FDS); i++) fds.push(3 + i);
const report = { before: fds.map(flags), sockets: fds.map((fd) => readlinkSync('/proc/self/fd/' + fd)) };
try {
  report.result = listenFdsFromEnv(process.env, process.pid);
} catch (e) {
  report.error = { name: e.name, message: e.message };
}
report.after = fds.map(flags);
report.env = Object.keys(process.env).filter((k) => k.startsWith('LISTEN_'));
report.inherited = spawnSync('sh', ['-c', 'env | grep ^LISTEN_; ls -l /proc/$$/fd'], { encoding: 'utf8' }).stdout;
console.log(JSON.stringify(report));
`,
    );
  });

  interface Report {
    before: number[];
    after: number[];
    sockets: string[];
    result?: ReturnType<typeof listenFdsFromEnv>;
    error?: { name: string; message: string };
    env: string[];
    inherited: string;
  }

  /**
   * Runs the child under systemd-socket-activate with `args`; `trigger` makes the "communication
   * attempt" it waits for before starting the child.
   */
  async function activate(
    args: string[],
    listening: number,
    trigger: () => Promise<() => void>,
  ): Promise<Report> {
    const child = startChild('systemd-socket-activate', [...args, process.execPath, childScript]);
    const done = finished(child);
    let seen = 0;
    await new Promise<void>((resolve, reject) => {
      child.stderr!.on('data', (chunk: string) => {
        seen += (chunk.match(/^Listening on /gm) ?? []).length;
        if (seen >= listening) resolve();
      });
      child.once('close', () => reject(new Error('systemd-socket-activate exited early')));
    });
    const release = await trigger();
    const { code, out, err } = await done;
    release();
    expect(code, err).toBe(0);
    return JSON.parse(out) as Report;
  }

  /** Connects to a stream socket (an abstract one for '@name'); returns how to disconnect. */
  async function connectTo(path: string): Promise<() => void> {
    if (path.startsWith('@')) {
      // Node pads abstract names to the whole sun_path; systemd's are length-delimited, like
      // Python's.
      const python = [
        'import socket, sys, time',
        's = socket.socket(socket.AF_UNIX)',
        "s.connect('\\0' + sys.argv[1][1:])",
        "print('connected', flush=True)",
        'time.sleep(60)',
      ].join('\n');
      const child = startChild('python3', ['-c', python, path]);
      await printed(child, 'stdout', 'connected');
      return () => child.kill();
    }
    const socket: Socket = connect(path);
    socket.on('error', () => {});
    await once(socket, 'connect');
    return () => socket.destroy();
  }

  function socketPath(what: string): string {
    const path = join(dir, name(what));
    cleanups.push(() => rmSync(path, { force: true }));
    return path;
  }

  function expectHandedOver(report: Report, fdCount: number): void {
    expect(report.env).toEqual([]);
    for (let i = 0; i < fdCount; i++) {
      // Node itself marks inherited fds close-on-exec at start-up (uv_disable_stdio_inheritance),
      // so only O_NONBLOCK shows what listenFdsFromEnv changed.
      expect(report.before[i] & O_NONBLOCK, 'systemd-socket-activate passes blocking fds').toBe(0);
      expect(report.after[i] & O_CLOEXEC).toBe(O_CLOEXEC);
      expect(report.after[i] & O_NONBLOCK).toBe(O_NONBLOCK);
      expect(report.sockets[i]).toMatch(/^socket:\[\d+\]$/);
      expect(report.inherited).toMatch(/ 2 -> /); // the listing works: it shows stderr
      expect(report.inherited).not.toContain(report.sockets[i]);
    }
    expect(report.inherited).not.toMatch(/^LISTEN_/m);
  }

  test('a single socket without --fdname is the Wayland socket', async () => {
    const path = socketPath('wayland');
    const report = await activate(['-l', path], 1, () => connectTo(path));
    expect(report.error).toBeUndefined();
    expect(report.result).toEqual({ wayland: { fd: 3, path } });
    expectHandedOver(report, 1);
  }, 20_000);

  test('--fdname=wayland:x11 gives both; the X11 socket may be abstract', async () => {
    const path = socketPath('wayland');
    const x11 = `@${name('x11')}`;
    const report = await activate(['-l', path, '-l', x11, '--fdname=wayland:x11'], 2, () =>
      connectTo(x11),
    );
    expect(report.error).toBeUndefined();
    expect(report.result).toEqual({ wayland: { fd: 3, path }, x11: { fd: 4 } });
    expectHandedOver(report, 2);
  }, 20_000);

  test('x11 before wayland, and x11 alone', async () => {
    const path = socketPath('wayland');
    const x11 = socketPath('x11');
    let report = await activate(['-l', x11, '-l', path, '--fdname=x11:wayland'], 2, () =>
      connectTo(path),
    );
    expect(report.result).toEqual({ wayland: { fd: 4, path }, x11: { fd: 3 } });

    const x11b = socketPath('x11b');
    report = await activate(['-l', x11b, '--fdname=x11'], 1, () => connectTo(x11b));
    expect(report.result).toEqual({ x11: { fd: 3 } });
    expectHandedOver(report, 1);
  }, 20_000);

  test('a datagram socket is refused', async () => {
    const path = socketPath('dgram');
    const report = await activate(['--datagram', '-l', path, '--fdname=wayland'], 1, async () => {
      sendDatagram(path, Buffer.from('wake up'));
      return () => {};
    });
    expect(report.error).toEqual({
      name: 'UsageError',
      message:
        'socket activation: the "wayland" socket: fd 3 is a datagram (SOCK_DGRAM) socket, ' +
        'not a stream socket',
    });
    expect(report.env).toEqual([]);
  }, 20_000);

  test('an abstract Wayland socket is refused: clients cannot name it', async () => {
    const abstract = `@${name('wayland')}`;
    const report = await activate(['-l', abstract, '--fdname=wayland'], 1, () =>
      connectTo(abstract),
    );
    expect(report.error?.name).toBe('UsageError');
    expect(report.error?.message).toContain(
      `the "wayland" socket (fd 3) has the abstract address ${abstract}`,
    );
  }, 20_000);
});

describe('inspectListenSocket', () => {
  let fdsBefore = 0;
  let servers: Server[] = [];
  afterEach(async () => {
    for (const server of servers) await new Promise((resolve) => server.close(resolve));
    servers = [];
    expect(openFdCount() - fdsBefore).toBe(0);
  });
  const start = () => (fdsBefore = openFdCount());

  async function serverFd(options: ListenOptions): Promise<number> {
    const server = createServer();
    servers.push(server);
    server.listen(options);
    await once(server, 'listening');
    const fd = (server as unknown as { _handle: { fd: number } })._handle.fd;
    expect(fd).toBeGreaterThan(2);
    return fd;
  }

  test('returns the path of a listening unix socket, or @name for an abstract one', async () => {
    start();
    const path = join(dir, name('listen'));
    const listener = listenUnix(path);
    cleanups.push(() => rmSync(path, { force: true }));
    cleanups.push(() => rmSync(`${path}.lock`, { force: true }));
    try {
      expect(inspectListenSocket(listener.fd)).toBe(path);
    } finally {
      close(listener.fd);
      close(listener.lockFd);
    }
    // Node binds abstract names padded with NULs to the whole sun_path: that is the address.
    const abstract = name('abstract');
    expect(inspectListenSocket(await serverFd({ path: `\0${abstract}` }))).toBe(
      `@${abstract}`.padEnd(108, '\0'),
    );
  });

  test('refuses what is not a listening unix stream socket', async () => {
    start();
    const [a, b] = socketpair();
    const file = openSync(join(dir, 'not-a-socket'), 'w');
    try {
      let e = errorOf(() => inspectListenSocket(a));
      expect([e.code, e.message]).toEqual([
        'EINVAL',
        `fd ${a} is a unix stream socket but not listening`,
      ]);
      e = errorOf(() => inspectListenSocket(file));
      expect([e.code, e.message]).toEqual(['ENOTSOCK', `fd ${file} is not a socket`]);
    } finally {
      close(a);
      close(b);
      closeSync(file);
    }
    const unused = 1_000_000; // above any fd limit, so never open
    const e = errorOf(() => inspectListenSocket(unused));
    expect([e.code, e.message]).toEqual(['EBADF', `fd ${unused} is not open`]);

    const tcp = await serverFd({ port: 0, host: '127.0.0.1' });
    const t = errorOf(() => inspectListenSocket(tcp));
    expect([t.code, t.message]).toEqual(['EINVAL', `fd ${tcp} is an AF_INET socket, not AF_UNIX`]);
    expect(() => inspectListenSocket(-1)).toThrow(RangeError);
  });
});

describe('sendDatagram and mkfifo', () => {
  test('errors carry errno names', () => {
    const fdsBefore = openFdCount();
    const missing = join(dir, 'nobody-here');
    let e = errorOf(() => sendDatagram(missing, Buffer.from('x')));
    expect([e.code, e.syscall, e.path]).toEqual(['ENOENT', 'sendto', missing]);

    // A stream socket's path with nobody listening.
    const stale = join(dir, name('stale'));
    const listener = listenUnix(stale);
    close(listener.fd);
    close(listener.lockFd);
    e = errorOf(() => sendDatagram(stale, Buffer.from('x')));
    expect(e.code).toBe('ECONNREFUSED');

    expect(errorOf(() => sendDatagram('@', Buffer.from('x'))).code).toBe('EINVAL');
    expect(errorOf(() => sendDatagram('', Buffer.from('x'))).code).toBe('EINVAL');
    expect(errorOf(() => sendDatagram(`/${'x'.repeat(200)}`, Buffer.from('x'))).code).toBe(
      'ENAMETOOLONG',
    );
    const longName = errorOf(() => sendDatagram(`@${'x'.repeat(108)}`, Buffer.from('x')));
    expect(longName.code).toBe('ENAMETOOLONG');
    // The longest abstract name fits; nobody listens there.
    expect(
      errorOf(() => sendDatagram(`@${name('x').padEnd(107, 'x')}`, Buffer.from('x'))).code,
    ).toBe('ECONNREFUSED');
    expect(() => sendDatagram(missing, 'x' as unknown as Uint8Array)).toThrow(TypeError);
    expect(openFdCount()).toBe(fdsBefore);
  });

  test('mkfifo makes a FIFO with the mode given (less the umask)', () => {
    const path = join(dir, name('fifo'));
    mkfifo(path, 0o600);
    const st = statSync(path);
    expect(st.isFIFO()).toBe(true);
    expect(st.mode & 0o777 & ~0o600).toBe(0);
    const e = errorOf(() => mkfifo(path, 0o600));
    expect([e.code, e.syscall, e.path]).toEqual(['EEXIST', 'mkfifo', path]);
    expect(() => mkfifo(path, 0o10000)).toThrow(RangeError);
    rmSync(path);
  });
});

describe('Notifier', () => {
  // A notify socket as systemd makes one, in Python: prints "bound", then each datagram as a JSON
  // string, until one reads END.
  const receiver = [
    'import json, socket, sys',
    'a = sys.argv[1]',
    's = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)',
    "s.bind('\\0' + a[1:] if a.startswith('@') else a)",
    "print('bound', flush=True)",
    's.settimeout(15)',
    'while True:',
    "    m = s.recv(4096).decode('utf8')",
    "    if m == 'END': break",
    '    print(json.dumps(m), flush=True)',
  ].join('\n');

  async function receive(address: string, send: () => void | Promise<void>): Promise<string[]> {
    const child = startChild('python3', ['-c', receiver, address]);
    const done = finished(child);
    await printed(child, 'stdout', 'bound\n');
    await send();
    sendDatagram(address, Buffer.from('END'));
    const { code, out, err } = await done;
    expect(code, err).toBe(0);
    return out
      .split('\n')
      .slice(1)
      .filter((line) => line !== '')
      .map((line) => JSON.parse(line) as string);
  }

  for (const kind of ['path', 'abstract'] as const) {
    test(`sends READY=1, STATUS and STOPPING=1 to ${kind === 'path' ? 'a path' : 'an abstract'} socket`, async () => {
      const address = kind === 'path' ? join(dir, name('notify')) : `@${name('notify')}`;
      const errors: string[] = [];
      const env: NodeJS.ProcessEnv = { NOTIFY_SOCKET: address, OTHER: 'kept' };
      const notifier = Notifier.fromEnv(env, (m) => errors.push(m));
      expect(env).toEqual({ OTHER: 'kept' });
      expect(notifier?.socket).toBe(address);
      const got = await receive(address, () => {
        notifier!.ready();
        notifier!.status('serving 2 clients\non wayland-1');
        notifier!.ready('listening on wayland-1');
        notifier!.stopping();
      });
      expect(got).toEqual([
        'READY=1',
        'STATUS=serving 2 clients on wayland-1',
        'READY=1\nSTATUS=listening on wayland-1',
        'STOPPING=1',
      ]);
      expect(errors).toEqual([]);
    }, 20_000);
  }

  test('says READY=1 with a status exactly as systemd-notify does', async () => {
    requireTool('systemd-notify');
    const address = `@${name('compare')}`;
    const got = await receive(address, async () => {
      new Notifier(address).ready('hello there');
      const env = { ...cleanEnv(), NOTIFY_SOCKET: address };
      const tool = startChild('systemd-notify', ['--ready', '--status=hello there'], env);
      await finished(tool);
    });
    // systemd-notify may follow up with BARRIER=1 (to wait until the manager has read it).
    expect(got.filter((m) => m !== 'BARRIER=1')).toEqual([
      'READY=1\nSTATUS=hello there',
      'READY=1\nSTATUS=hello there',
    ]);
  }, 20_000);

  test('fromEnv: null without NOTIFY_SOCKET; an unusable value is reported once', () => {
    expect(Notifier.fromEnv({})).toBeNull();
    const empty: NodeJS.ProcessEnv = { NOTIFY_SOCKET: '' };
    expect(Notifier.fromEnv(empty)).toBeNull();
    expect(empty).toEqual({});
    for (const bad of ['relative/socket', 'vsock:2:1234', '@']) {
      const errors: string[] = [];
      const env: NodeJS.ProcessEnv = { NOTIFY_SOCKET: bad };
      expect(Notifier.fromEnv(env, (m) => errors.push(m))).toBeNull();
      expect(env).toEqual({});
      expect(errors).toEqual([
        `NOTIFY_SOCKET="${bad}" is not a unix socket path or @name; the service manager will not be told when the proxy is ready`,
      ]);
    }
  });

  test('a failing notify socket never throws and is reported once', () => {
    const fdsBefore = openFdCount();
    const path = join(dir, name('gone'));
    const errors: string[] = [];
    const notifier = Notifier.fromEnv({ NOTIFY_SOCKET: path }, (m) => errors.push(m))!;
    notifier.ready('x');
    notifier.status('y');
    notifier.stopping();
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(
      new RegExp(
        `^cannot notify the service manager through NOTIFY_SOCKET=${path}: sendto ${path}: No such file or directory`,
      ),
    );
    // Without a callback failures are ignored.
    expect(() => new Notifier(path).ready()).not.toThrow();
    expect(openFdCount()).toBe(fdsBefore);
  });
});

describe('unit files', () => {
  const units = ['tswl-proxy.socket', 'tswl-proxy.service', 'tswl-host@.service'];

  /** systemd-analyze verify --user on copies of the units (edited by `edit`) in a fresh directory. */
  function verify(edit: (name: string, text: string) => string = (_, t) => t) {
    requireTool('systemd-analyze');
    const unitDir = mkdtempSync(join(dir, 'units-'));
    // A user manager always has a runtime directory (%t); this container has no session.
    const runtimeDir = join(unitDir, 'runtime');
    mkdirSync(runtimeDir, { mode: 0o700 });
    for (const unit of units) {
      const text = readFileSync(join(root, 'systemd', unit), 'utf8');
      writeFileSync(join(unitDir, unit), edit(unit, text));
    }
    // A template is checked as one of its instances.
    const names = units.map((u) => u.replace('@.', '@vm1.'));
    const r = spawnSync('systemd-analyze', ['verify', '--user', '--man=no', ...names], {
      cwd: unitDir,
      env: { ...cleanEnv(), XDG_RUNTIME_DIR: runtimeDir },
      encoding: 'utf8',
    });
    rmSync(unitDir, { recursive: true, force: true });
    return r;
  }

  /** The overall exposure level of tswl-host@.service (edited by `edit`), as `1.5 OK`. */
  function exposure(edit: (text: string) => string = (t) => t): string {
    requireTool('systemd-analyze');
    const unitDir = mkdtempSync(join(dir, 'security-'));
    const text = readFileSync(join(root, 'systemd/tswl-host@.service'), 'utf8');
    writeFileSync(join(unitDir, 'tswl-host@.service'), edit(text));
    const r = spawnSync(
      'systemd-analyze',
      ['security', '--offline=yes', '--user', '--no-pager', 'tswl-host@.service'],
      { cwd: unitDir, env: { ...cleanEnv(), XDG_RUNTIME_DIR: unitDir }, encoding: 'utf8' },
    );
    rmSync(unitDir, { recursive: true, force: true });
    const level = /Overall exposure level for \S+: (\d+\.\d+ [A-Z]+)/.exec(r.stdout);
    if (!level) throw new Error(`no exposure level in: ${r.stdout}${r.stderr}`);
    return level[1];
  }

  test('both units pass systemd-analyze verify --user without warnings', () => {
    const r = verify();
    expect(r.error).toBeUndefined();
    expect(r.stderr + r.stdout).toBe('');
    expect(r.status).toBe(0);
  });

  test('the check notices mistakes (it is not vacuous)', () => {
    // An unknown key is only a warning (exit 0), so the test above also demands silence.
    const typo = verify((unit, text) =>
      text.replace(/^FileDescriptorName=/m, 'FileDescriptorNam='),
    );
    expect(typo.stderr).toContain("Unknown key 'FileDescriptorNam'");
    const badExec = verify((_, text) =>
      text.replace(/^ExecStart=\/usr\/bin\/env /m, 'ExecStart=/nonexistent/env '),
    );
    expect(badExec.status).not.toBe(0);
    expect(badExec.stderr).toContain('/nonexistent/env');
  });

  test('tswl-host@.service is sandboxed to an exposure level of at most OK', () => {
    expect(exposure()).toMatch(/ (PERFECT|SAFE|OK)$/);
    // Without its sandboxing directives the same unit is rated far worse.
    const bare = exposure((text) =>
      text.replace(/^(NoNewPriv|Capab|Private|Protect|Restrict|Lock|Keyring|SystemCall).*\n/gm, ''),
    );
    expect(bare).toMatch(/ (UNSAFE|DANGEROUS)$/);
  });

  test('the socket is named "wayland" and the service is Type=notify', () => {
    const socket = readFileSync(join(root, 'systemd/tswl-proxy.socket'), 'utf8');
    const service = readFileSync(join(root, 'systemd/tswl-proxy.service'), 'utf8');
    expect(socket).toMatch(/^FileDescriptorName=wayland$/m);
    expect(socket).toMatch(/^ListenStream=%t\/wayland-1$/m);
    expect(service).toMatch(/^Type=notify$/m);
    const host = readFileSync(join(root, 'systemd/tswl-host@.service'), 'utf8');
    expect(host).toMatch(/^Type=notify$/m);
    expect(host).toMatch(/^ExecStart=.* --vhost-user %t\/tswl-host\/%i\/vhost-user.sock /m);
  });
});

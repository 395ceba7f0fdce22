// Running tswl-proxy as a service: --tag, traces, the log ring and its control FIFO,
// systemd socket activation and readiness, clean shutdown.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, test } from 'vitest';
import { Desktop } from './support/desktop.js';
import { killAll, start, stop, waitFor, accepts } from './support/processes.js';
import {
  type HeadlessWeston,
  NOWHERE,
  proxyBin,
  startHeadlessWeston,
  startProxy,
} from './support/weston.js';

let westons: HeadlessWeston[] = [];

afterEach(async () => {
  killAll();
  for (const w of westons) await w.stop();
  westons = [];
});

async function weston(extraEnv: NodeJS.ProcessEnv = {}): Promise<HeadlessWeston> {
  const w = await startHeadlessWeston(extraEnv);
  westons.push(w);
  return w;
}

describe('--tag', () => {
  test('the compositor receives every toplevel title with the prefix', async () => {
    const w = await weston({ WAYLAND_DEBUG: 'server' });
    const proxy = await startProxy(w, ['--tag', '[vm] ', 'weston-simple-shm']);
    await waitFor('the tagged title in weston’s protocol trace', () =>
      /xdg_toplevel@\d+\.set_title\("\[vm\] simple-shm"\)/.test(w.weston.output()),
    );
    expect(w.weston.output()).not.toMatch(/set_title\("simple-shm"\)/);
    await stop(proxy);
  });
});

describe('tracing', () => {
  test('WAYLAND_DEBUG_PROXY=client,server traces requests and events on both connections', async () => {
    const w = await weston();
    const proxy = await startProxy(w, ['weston-simple-shm'], {
      WAYLAND_DEBUG_PROXY: 'client,server',
    });
    await waitFor(
      'a few frames',
      () => (proxy.output().match(/wl_surface@\d+\.commit\(\)/g) ?? []).length > 6,
    );
    await stop(proxy);
    const trace = proxy.output();
    // the client's requests on its own connection, as the host sees them, and the host's events
    expect(trace).toMatch(/client#\d+ +-> wl_display@1\.get_registry\(new id wl_registry@2\)/);
    expect(trace).toMatch(
      /host#\d+ +-> wl_registry@2\.bind\(\d+, new id wl_compositor@\d+ \(version \d\)\)/,
    );
    expect(trace).toMatch(/host#\d+ +<- wl_registry@2\.global\(\d+, "wl_compositor", \d\)/);
    expect(trace).toMatch(
      /client#\d+ +<- xdg_wm_base@\d+\.ping|client#\d+ +<- wl_callback@\d+\.done\(\d+\)/,
    );
    expect(trace).toMatch(
      /client#\d+ +-> wl_shm@\d+\.create_pool\(new id wl_shm_pool@\d+, fd \d+, \d+\)/,
    );
  });

  test('WAYLAND_DEBUG=1 means both sides; -v too', async () => {
    const w = await weston();
    for (const [env, args] of [
      [{ WAYLAND_DEBUG: '1' }, ['wayland-info']],
      [{}, ['-v', 'wayland-info']],
    ] as const) {
      const proxy = await startProxy(w, [...args], env);
      await proxy.exited;
      expect(proxy.output()).toMatch(/client#\d+ +->/);
      expect(proxy.output()).toMatch(/host#\d+ +<-/);
    }
  });

  test('--log-suppress hides its classes and nothing else', async () => {
    const w = await weston();
    const proxy = await startProxy(w, ['--log-suppress', 'shm,drawing', 'weston-simple-shm'], {
      WAYLAND_DEBUG_PROXY: 'client',
    });
    await waitFor(
      'a few frame callbacks',
      () => (proxy.output().match(/xdg_wm_base|wl_buffer/g) ?? []).length > 0,
    );
    await new Promise((r) => setTimeout(r, 500));
    await stop(proxy);
    const trace = proxy.output();
    expect(trace).toMatch(/wl_display@1\.get_registry/);
    expect(trace).toMatch(/-> wl_compositor@\d+\.create_surface\(new id wl_surface@\d+\)/);
    for (const hidden of [
      'wl_shm_pool@',
      'wl_surface@\\d+\\.attach',
      'wl_surface@\\d+\\.damage',
      'wl_surface@\\d+\\.commit',
    ]) {
      expect(trace).not.toMatch(new RegExp(`[-<]{2} ${hidden}`));
    }
  });

  test('motion, delete, region and hints: each hides exactly its messages', async () => {
    // weston with a seat, so that pointer motion reaches the client
    const desktop = await Desktop.start();
    try {
      const trace = async (suppress: string): Promise<string> => {
        const proxy = start(
          proxyBin,
          [
            '--host-display',
            join(desktop.runtimeDir, 'wayland-0'),
            '--log-suppress',
            suppress,
            'weston-terminal',
          ],
          { ...desktop.clientEnv(NOWHERE), WAYLAND_DEBUG_PROXY: 'client' },
        );
        try {
          await waitFor('the window', () => /wl_surface@\d+\.commit/.test(proxy.output()));
          await desktop.stableScreenshot(join(desktop.runtimeDir, 'suppress.png'));
          // move the pointer across the window: motion events reach the client
          for (const x of [100, 200, 300]) desktop.xdotool('mousemove', String(x), '200');
          await waitFor('the pointer to move', () =>
            /wl_pointer@\d+\.(enter|motion)/.test(proxy.output()),
          );
          await new Promise((r) => setTimeout(r, 300));
          return proxy.output();
        } finally {
          await stop(proxy);
        }
      };
      const classes = {
        motion: /<- wl_pointer@\d+\.(motion|frame)\(/,
        delete: /<- wl_display@1\.delete_id\(/,
        region:
          /-> (wl_compositor@\d+\.create_region|wl_region@\d+\.|wl_surface@\d+\.set_(opaque|input)_region)/,
        hints: /-> (xdg_surface@\d+\.set_window_geometry|xdg_toplevel@\d+\.set_(min|max)_size)\(/,
      };
      const all = await trace('');
      for (const [name, re] of Object.entries(classes)) expect(all, name).toMatch(re);
      const hidden = await trace(Object.keys(classes).join(','));
      for (const [name, re] of Object.entries(classes)) expect(hidden, name).not.toMatch(re);
      // and nothing else went: the pointer still enters, the surface still commits
      expect(hidden).toMatch(/<- wl_pointer@\d+\.enter\(/);
      expect(hidden).toMatch(/-> wl_surface@\d+\.commit\(\)/);
    } finally {
      killAll();
      await desktop.stop();
    }
  });

  test('an unknown class is a clear error', () => {
    const run = spawnSync(proxyBin, ['--log-suppress', 'motion,bogus'], { encoding: 'utf8' });
    expect(run.status).toBe(1);
    expect(run.stderr).toMatch(
      /unknown log class "bogus" \(known: motion, shm, delete, region, drawing, hints\)/,
    );
  });
});

describe('the log ring and its control FIFO', () => {
  test('dump-log appends the latest messages; stats reports counts; unknown commands are logged', async () => {
    const w = await weston();
    const logFile = join(w.runtimeDir, 'proxy.log');
    const ctl = join(w.runtimeDir, 'wayland-1-ctl');
    const proxy = await startProxy(w, [
      '-v',
      '--log-ring-path',
      logFile,
      '--log-ring-size',
      '65536',
    ]);
    expect(statSync(ctl).isFIFO()).toBe(true);
    expect(statSync(ctl).mode & 0o777).toBe(0o600);
    const client = start('weston-simple-shm', [], { ...w.env, WAYLAND_DISPLAY: 'wayland-1' });
    await new Promise((r) => setTimeout(r, 1000));
    expect(existsSync(logFile)).toBe(false); // the trace stays in memory until asked for

    writeFileSync(ctl, 'dump-log\n');
    await waitFor(
      'the log file',
      () => existsSync(logFile) && readFileSync(logFile, 'utf8').includes('commit'),
    );
    const first = readFileSync(logFile, 'utf8');
    expect(first).toMatch(/^=== tswl-proxy log, dump-log, .* ===$/m);
    expect(first.length).toBeLessThan(65536 + 200);

    await new Promise((r) => setTimeout(r, 300));
    writeFileSync(ctl, 'stats\nfrobnicate\n');
    await waitFor('stats', () => readFileSync(logFile, 'utf8').includes('fds client->host'));
    const stats = readFileSync(logFile, 'utf8').slice(first.length);
    expect(stats).toMatch(/clients: 1\n/);
    expect(Number(stats.match(/objects: (\d+)/)?.[1])).toBeGreaterThan(5);
    expect(Number(stats.match(/bytes client->host: (\d+)/)?.[1])).toBeGreaterThan(1000);
    expect(Number(stats.match(/fds client->host: (\d+)/)?.[1])).toBeGreaterThanOrEqual(1); // the shm pool

    writeFileSync(ctl, 'dump-log\n');
    await waitFor(
      'a second dump',
      () => (readFileSync(logFile, 'utf8').match(/=== tswl-proxy log/g) ?? []).length === 2,
    );
    const second = readFileSync(logFile, 'utf8');
    expect(second.slice(first.length)).toMatch(/wl_surface@\d+\.commit/);
    // its stderr reaches this process on its own time
    await waitFor('the warning', () =>
      /control: unknown command "frobnicate"/.test(proxy.output()),
    );
    expect(proxy.child.exitCode).toBeNull();
    await stop(client);
    await stop(proxy);
  });
});

describe('a fatal error', () => {
  test('appends the log ring to its file, and the proxy exits 70', async () => {
    const w = await weston();
    const logFile = join(w.runtimeDir, 'proxy.log');
    // a bug that escapes everything, planted from outside: the real handler deals with it
    const bug = join(w.runtimeDir, 'bug.mjs');
    writeFileSync(
      bug,
      "process.on('SIGUSR2', () => setImmediate(() => { throw new Error('planted bug'); }));\n",
    );
    const proxy = start(
      process.execPath,
      [
        '--import',
        bug,
        proxyBin,
        '-v',
        '--host-display',
        join(w.runtimeDir, 'wayland-0'),
        '--log-ring-path',
        logFile,
      ],
      { ...w.env, WAYLAND_DISPLAY: NOWHERE },
    );
    await waitFor('the proxy', () => accepts(join(w.runtimeDir, 'wayland-1')));
    const info = spawnSync('wayland-info', [], { env: { ...w.env, WAYLAND_DISPLAY: 'wayland-1' } });
    expect(info.status).toBe(0);
    process.kill(proxy.child.pid!, 'SIGUSR2');
    expect(await proxy.exited).toBe(70);
    const dumped = readFileSync(logFile, 'utf8');
    expect(dumped).toMatch(/=== tswl-proxy log, fatal error,/);
    // what wayland-info did is in it
    expect(dumped).toMatch(/client#\d+\s+-> wl_display@1\.get_registry/);
    expect(proxy.output()).toMatch(/fatal error: Error: planted bug/);
    expect(existsSync(join(w.runtimeDir, 'wayland-1'))).toBe(false);
  });
});

describe('shutdown', () => {
  test.each(['SIGTERM', 'SIGINT'] as const)(
    '%s disconnects clients and leaves no socket, lock file or FIFO',
    async (signal) => {
      const w = await weston();
      const proxy = await startProxy(w, [], { WAYLAND_DEBUG_PROXY: 'client' });
      const client = start('weston-simple-shm', [], { ...w.env, WAYLAND_DISPLAY: 'wayland-1' });
      // the client is drawing through the proxy
      await waitFor('a commit through the proxy', () =>
        /client#\d+\s+-> wl_surface@\d+\.commit\(\)/.test(proxy.output()),
      );
      expect(client.child.exitCode).toBeNull();
      expect(await stop(proxy, signal)).toBe(0);
      for (const name of ['wayland-1', 'wayland-1.lock', 'wayland-1-ctl']) {
        expect(existsSync(join(w.runtimeDir, name)), name).toBe(false);
      }
      // it lost its compositor and ended
      await waitFor('the client to end', () => client.child.exitCode !== null);
    },
  );

  test('a second proxy on the same socket is refused with a clear message', async () => {
    const w = await weston();
    const first = await startProxy(w, []);
    const second = start(proxyBin, [], w.env);
    expect(await second.exited).toBe(1);
    expect(second.output()).toMatch(/wayland-1 is already in use by another compositor or proxy/);
    await stop(first);
  });

  test('an unreachable host compositor and a missing XDG_RUNTIME_DIR are one-line errors', async () => {
    const w = await weston();
    const run = spawnSync(proxyBin, ['--host-display', 'nothing-here'], {
      env: w.env,
      encoding: 'utf8',
    });
    expect(run.status).toBe(1);
    expect(run.stderr.trim()).toMatch(
      /^tswl-proxy: cannot reach the host compositor at .*nothing-here: .*$/,
    );
    const env = { ...w.env };
    delete env.XDG_RUNTIME_DIR;
    const run2 = spawnSync(proxyBin, [], { env, encoding: 'utf8' });
    expect(run2.status).toBe(1);
    expect(run2.stderr.trim()).toMatch(/^tswl-proxy: XDG_RUNTIME_DIR is not set/);
  });

  test('a guest without the device it was told to use gets a one-line error naming it', async () => {
    const w = await weston();
    const wl = spawnSync(proxyBin, ['--virtio-wl', join(w.runtimeDir, 'no-wl0'), 'true'], {
      env: w.env,
      encoding: 'utf8',
    });
    expect(wl.status).toBe(1);
    expect(wl.stderr.trim()).toMatch(
      /^tswl-proxy: --virtio-wl: no .*no-wl0: the guest has no virtio_wl device/,
    );
    const both = spawnSync(proxyBin, ['--virtio-wl', '/dev/wl0', '--virtio-gpu', 'true'], {
      env: w.env,
      encoding: 'utf8',
    });
    expect(both.status).toBe(1);
    expect(both.stderr).toMatch(/pick one/);
  });

  test('the exit status is the command’s', async () => {
    const w = await weston();
    // the command reaches a compositor only through the proxy: its own environment leads nowhere
    const run = spawnSync(
      proxyBin,
      [
        '--host-display',
        join(w.runtimeDir, 'wayland-0'),
        'sh',
        '-c',
        'wayland-info | grep -q "interface: .wl_compositor" && exit 7',
      ],
      { env: { ...w.env, WAYLAND_DISPLAY: NOWHERE }, encoding: 'utf8' },
    );
    expect(run.status, run.stderr).toBe(7);
  });
});

describe('systemd', () => {
  // systemd-socket-activate passes on only the variables it is told to, as systemd does
  const activateEnv = ['-E', 'XDG_RUNTIME_DIR', '-E', 'WAYLAND_DISPLAY'];

  test('a socket-activated proxy serves clients on the handed socket and never removes it', async () => {
    const w = await weston();
    const path = join(w.runtimeDir, 'wayland-1');
    const proxy = start(
      'systemd-socket-activate',
      [...activateEnv, '-l', path, '--fdname=wayland', proxyBin],
      w.env,
    );
    await waitFor('the activation socket', () => accepts(path));
    const info = spawnSync('wayland-info', [], {
      env: { ...w.env, WAYLAND_DISPLAY: 'wayland-1' },
      encoding: 'utf8',
    });
    expect(info.status).toBe(0);
    expect(info.stdout).toMatch(/interface: 'wl_compositor'/);
    await stop(proxy, 'SIGTERM');
    // systemd-socket-activate exec()s the proxy, which must leave the socket to its owner
    expect(existsSync(path)).toBe(true);
  });

  test('bad LISTEN_FDNAMES and --wayland-display with an activated socket are clear errors', async () => {
    const w = await weston();
    const path = join(w.runtimeDir, 'wayland-1');
    for (const [args, message] of [
      [['--fdname=bogus', proxyBin], /bogus/],
      [
        ['--fdname=wayland', proxyBin, '--wayland-display', 'wayland-5'],
        /--wayland-display cannot be used/,
      ],
    ] as const) {
      rmSync(path, { force: true });
      const proxy = start('systemd-socket-activate', [...activateEnv, '-l', path, ...args], w.env);
      // the socket file appears at bind(), before listen(): only a connection that is taken
      // makes systemd-socket-activate start the program
      await waitFor('the activation socket', () => accepts(path));
      expect(await proxy.exited).toBe(1);
      expect(proxy.output()).toMatch(message);
    }
  });

  test('READY=1 reaches NOTIFY_SOCKET once the proxy listens, and STATUS tells the client count', async () => {
    const w = await weston();
    const notifyPath = join(w.runtimeDir, 'notify');
    const receiver = spawn(
      'python3',
      [
        '-u',
        '-c',
        [
          'import socket, sys',
          's = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)',
          `s.bind(${JSON.stringify(notifyPath)})`,
          'print("bound", flush=True)',
          'while True: print(s.recv(4096).decode().replace("\\n", "|"), flush=True)',
        ].join('\n'),
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let got = '';
    receiver.stdout.on('data', (d: Buffer) => (got += d.toString()));
    try {
      await waitFor('the receiver', () => got.includes('bound'));
      const proxy = await startProxy(w, [], { NOTIFY_SOCKET: notifyPath });
      await waitFor('READY=1', () => /READY=1/.test(got));
      const info = spawnSync('wayland-info', [], {
        env: { ...w.env, WAYLAND_DISPLAY: 'wayland-1' },
      });
      expect(info.status).toBe(0);
      await waitFor(
        'STATUS',
        () => /STATUS=1 client connected/.test(got) && /STATUS=0 clients connected/.test(got),
      );
      await stop(proxy);
      await waitFor('STOPPING=1', () => /STOPPING=1/.test(got));
    } finally {
      receiver.kill('SIGKILL');
    }
  });
});

// End to end in a real Linux guest (npm run test:vm, after scripts/vm/build.sh): QEMU 11.1 under
// TCG with `vhost-user-test-device-pci` as a virtio-gpu served by `tswl-host --vhost-user`, which
// connects each cross-domain channel to a weston on Xvfb. Inside the guest, `tswl-proxy
// --virtio-gpu` finds /dev/dri/renderD128 and runs real clients: their windows show on the host's
// weston and host keyboard input reaches them. Killing QEMU mid-frame leaves tswl-host running with
// everything of that VM released, and the next VM works. Debian's own QEMU 7.2 (virtio-gpu-pci,
// no context-init) gets a clear refusal from the proxy.
//
// The guest runs the host's root filesystem read-only over 9p (scripts/vm/init.sh). Each boot runs
// a small driver script that executes step-N.sh files as the test writes them into the boot's
// folder, and ends when the test writes `poweroff`; everything the guest says comes back on the
// serial console (QEMU's stdout).
import { spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Desktop, colourCount, differingPixels } from '../support/desktop.js';
import { type Running, accepts, killAll, start, stop, waitFor } from '../support/processes.js';
import { repoRoot } from '../support/weston.js';
import { freeXDisplay } from '../support/x11.js';

const hostBin = join(repoRoot, 'bin/tswl-host');
const runSh = join(repoRoot, 'scripts/vm/run.sh');
const sid = join(process.env.TSWL_VM_DIR ?? join(repoRoot, '.vm'), 'sid');
// QEMU runs in the sid chroot: the back-end's socket has to be inside it.
const socket = join(sid, 'vm', `gpu-test-${process.pid}.sock`);
// The guest's folders must be on the host's root filesystem, outside /tmp (a tmpfs in the guest).
const out = join(repoRoot, 'test-output', 'vm');
const BOOT_MS = 120000;

let desktop: Desktop;
let host: Running;
let hostFdBaseline = 0;
let boots = 0;
const guests: Guest[] = [];

const fdCount = (pid: number): number => readdirSync(`/proc/${pid}/fd`).length;

/** Waits until tswl-host holds as many fds as before the first VM; the error lists them. */
async function fdsAtBaseline(): Promise<void> {
  const pid = host.child.pid!;
  await waitFor(
    "tswl-host's fd count to return to its baseline",
    () => fdCount(pid) === hostFdBaseline,
    10000,
  ).catch(() => {
    const fds = readdirSync(`/proc/${pid}/fd`).map((fd) => {
      try {
        return `${fd} → ${readlinkSync(`/proc/${pid}/fd/${fd}`)}`;
      } catch {
        return fd;
      }
    });
    throw new Error(
      `tswl-host has ${fds.length} fds, ${hostFdBaseline} before the first VM:\n${fds.join('\n')}`,
    );
  });
}

/** One guest boot, driven step by step through files in its own folder. */
class Guest {
  private steps = 0;
  private constructor(
    readonly dir: string,
    readonly qemu: Running,
  ) {}

  static boot(qemu: 'sid' | 'bookworm' = 'sid'): Guest {
    const dir = join(out, `boot-${++boots}`);
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    const driver = join(dir, 'guest.sh');
    writeFileSync(
      driver,
      [
        'dir=$(dirname "$0")',
        `cd ${repoRoot}`,
        'i=1',
        'while [ ! -f "$dir/poweroff" ]; do',
        '  if [ -f "$dir/step-$i.sh" ]; then',
        '    echo "STEP-$i-BEGIN"',
        '    sh "$dir/step-$i.sh" </dev/null 2>&1',
        '    echo "STEP-$i-EXIT=$?"',
        '    i=$((i + 1))',
        '  else',
        '    sleep 0.2',
        '  fi',
        'done',
        '',
      ].join('\n'),
    );
    const args = [runSh, '--qemu', qemu, '--e2e', driver, '--timeout', '300'];
    if (qemu === 'sid') args.push('--socket', socket);
    const guest = new Guest(dir, start('bash', args, process.env));
    guests.push(guest);
    // the console stays next to the boot's scripts for a look after a failure
    void guest.qemu.exited.then(() => writeFileSync(join(dir, 'console.log'), guest.console()));
    return guest;
  }

  console(): string {
    return this.qemu.output();
  }

  /**
   * Runs a shell command in the guest (cwd: the checkout) until it exits or `stop()` is called;
   * resolves once it has started.
   */
  async run(command: string): Promise<Step> {
    const n = ++this.steps;
    const stopFile = join(this.dir, `stop-${n}`);
    const script = [
      `${command} &`,
      'p=$!',
      `while kill -0 $p 2>/dev/null && [ ! -f ${stopFile} ]; do sleep 0.2; done`,
      'kill $p 2>/dev/null',
      'wait $p',
      '',
    ].join('\n');
    // written whole, then renamed: the guest never sees half a script
    writeFileSync(join(this.dir, `.step-${n}.sh`), script);
    renameSync(join(this.dir, `.step-${n}.sh`), join(this.dir, `step-${n}.sh`));
    await waitFor(`step ${n} to start in the guest`, () => this.saw(`STEP-${n}-BEGIN`), BOOT_MS);
    return new Step(this, n, stopFile);
  }

  saw(text: string): boolean {
    if (this.qemu.child.exitCode !== null || this.qemu.child.signalCode !== null) {
      if (this.console().includes(text)) return true;
      throw new Error(`QEMU ended before "${text}":\n${this.console().slice(-4000)}`);
    }
    return this.console().includes(text);
  }

  /** Asks the guest to power off once its current step is over; resolves with run.sh's status. */
  async powerOff(): Promise<number> {
    writeFileSync(join(this.dir, 'poweroff'), '');
    return Promise.race([
      this.qemu.exited,
      new Promise<number>((_, reject) =>
        setTimeout(() => reject(new Error('the guest did not power off')), 30000),
      ),
    ]);
  }

  /** The QEMU process itself (run.sh → timeout → qemu-system-x86_64). */
  qemuPid(): number {
    const children = (pid: number): number[] => {
      try {
        return readdirSync(`/proc/${pid}/task`).flatMap((t) =>
          readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8')
            .trim()
            .split(/\s+/)
            .filter(Boolean)
            .map(Number),
        );
      } catch {
        return [];
      }
    };
    const queue = [this.qemu.child.pid!];
    while (queue.length > 0) {
      const pid = queue.shift()!;
      let comm = '';
      try {
        comm = readFileSync(`/proc/${pid}/comm`, 'utf8');
      } catch {
        continue;
      }
      if (comm.startsWith('qemu-system')) return pid;
      queue.push(...children(pid));
    }
    throw new Error('no QEMU process under run.sh');
  }
}

class Step {
  constructor(
    private readonly guest: Guest,
    readonly n: number,
    private readonly stopFile: string,
  ) {}

  /** Resolves with the command's exit status once it ends by itself. */
  async exited(timeoutMs = BOOT_MS): Promise<number> {
    const marker = new RegExp(`STEP-${this.n}-EXIT=(\\d+)`);
    await waitFor(`step ${this.n} to end`, () => this.guest.saw(`STEP-${this.n}-EXIT=`), timeoutMs);
    return Number(marker.exec(this.guest.console())![1]);
  }

  /** Stops the command and waits for it to end. */
  async stop(): Promise<number> {
    writeFileSync(this.stopFile, '');
    return this.exited(30000);
  }

  /** What the command printed (between its markers on the console). */
  output(): string {
    const c = this.guest.console();
    const from = c.indexOf(`STEP-${this.n}-BEGIN`);
    const to = c.indexOf(`STEP-${this.n}-EXIT=`);
    return c.slice(from, to < 0 ? undefined : to);
  }
}

/** Unmounts whatever run.sh left in the chroot (it cleans up itself unless killed outright). */
function releaseMounts(): void {
  for (const m of ['mnt/hostroot', 'dev', 'proc']) {
    const target = join(sid, m);
    if (spawnSync('mountpoint', ['-q', target]).status === 0) {
      spawnSync('umount', [target]);
      if (spawnSync('mountpoint', ['-q', target]).status === 0) spawnSync('umount', ['-l', target]);
    }
  }
}

async function windowGone(): Promise<void> {
  const empty = join(out, 'empty.png');
  await waitFor(
    'the window to go',
    () => {
      desktop.screenshot(empty);
      return colourCount(empty) <= 2;
    },
    30000,
  );
}

/** Waits until a window shows (more than the background and the pointer); returns the shot. */
async function windowShown(name: string, timeoutMs: number): Promise<string> {
  const shot = join(out, `${name}.png`);
  await waitFor(
    `the ${name} window`,
    () => {
      desktop.screenshot(shot);
      return colourCount(shot) > 2;
    },
    timeoutMs,
  );
  return shot;
}

beforeAll(async () => {
  rmSync(out, { recursive: true, force: true });
  mkdirSync(out, { recursive: true });
  expect(existsSync(join(sid, 'vm', 'vmlinuz')), 'run scripts/vm/build.sh first').toBe(true);
  desktop = await Desktop.start();
  rmSync(socket, { force: true });
  host = start(
    hostBin,
    ['--wayland-sock', join(desktop.runtimeDir, 'wayland-0'), '--vhost-user', socket],
    process.env,
  );
  await waitFor('tswl-host to listen', () => accepts(socket));
  await new Promise((r) => setTimeout(r, 200));
  hostFdBaseline = fdCount(host.child.pid!);
});

afterAll(async () => {
  if (host) writeFileSync(join(out, 'tswl-host.log'), host.output());
  // run.sh ends QEMU and unmounts on SIGTERM; QEMU itself goes if that takes too long
  for (const guest of guests) {
    if (guest.qemu.child.exitCode !== null || guest.qemu.child.signalCode !== null) continue;
    let qemuPid = 0;
    try {
      qemuPid = guest.qemuPid();
    } catch {
      // not started yet, or gone
    }
    const ended = await Promise.race([
      stop(guest.qemu).then(() => true),
      new Promise<boolean>((r) => setTimeout(() => r(false), 15000)),
    ]);
    if (!ended && qemuPid) process.kill(qemuPid, 'SIGKILL');
  }
  killAll();
  await new Promise((r) => setTimeout(r, 500));
  releaseMounts(); // in case run.sh itself was killed outright
  await desktop?.stop();
  rmSync(socket, { force: true });
  rmSync(`${socket}.lock`, { force: true });
});

describe('a guest on QEMU 11.1 with tswl-host --vhost-user', () => {
  let guest: Guest;

  // Weston's presentation clock is frozen (test/support/desktop.ts), so simple-shm draws the
  // same frame on every run: the guest's window must match the direct run pixel for pixel. Its
  // frames only come after fences on the cross-domain rings, which the guest's DrmVirtGpu reads
  // as DRM events.
  test('weston-simple-shm through tswl-proxy --virtio-gpu shows the same pixels as directly', async () => {
    const direct = join(out, 'simple-shm-direct.png');
    const client = start('weston-simple-shm', [], desktop.clientEnv());
    try {
      await desktop.stableScreenshot(direct);
    } finally {
      await stop(client);
    }
    await windowGone();
    expect(colourCount(direct)).toBeGreaterThan(2);

    guest = Guest.boot();
    const proxied = await guest.run('./bin/tswl-proxy --virtio-gpu weston-simple-shm');
    const shot = join(out, 'simple-shm-guest.png');
    await desktop.stableScreenshot(shot, BOOT_MS);
    expect(await proxied.stop(), proxied.output()).toBe(0);
    await windowGone();
    expect(differingPixels(direct, shot)).toBe(0);
  });

  test('text typed on the host reaches weston-terminal in the guest', async () => {
    expect(guest, 'the guest of the previous test').toBeDefined();
    const terminal = await guest.run(
      './bin/tswl-proxy --virtio-gpu weston-terminal --shell=/bin/sh',
    );
    await desktop.stableScreenshot(join(out, 'terminal-guest.png'), BOOT_MS);
    // the shell's output goes to the guest's console, i.e. QEMU's stdout; the marker is computed
    // by the guest's shell so the typed command itself never matches
    desktop.type('echo typed-$((6 * 7))-through-the-vm > /dev/console');
    await waitFor(
      'the typed command to run in the guest',
      () => guest.saw('typed-42-through-the-vm'),
      30000,
    );
    expect(await terminal.stop(), terminal.output()).toBe(0);
    await windowGone();
  });

  // The same xterm (the host's binaries, which the guest runs over 9p) through tswl-proxy on the
  // host and inside the guest: its Xwayland's shm buffers are shadowed across the VM boundary
  // like any client's. It prints once it has its final size (it wraps at the size it has then).
  test('an X11 client in the guest: xterm shows the pixels it shows through the proxy on the host, and typing reaches it', async () => {
    expect(guest, 'the guest of the previous tests').toBeDefined();
    const script = join(out, 'xterm-shell.sh');
    writeFileSync(
      script,
      [
        '#!/bin/sh',
        'while [ "$(stty size | cut -d" " -f2)" -lt 100 ]; do sleep 0.2; done',
        "printf '\\033[1;31mred \\033[32mgreen \\033[34mblue\\033[0m\\n'",
        "seq 1 30 | paste -sd' '",
        'exec sh',
        '',
      ].join('\n'),
      { mode: 0o755 },
    );
    const xterm = ['xterm', '+bc', '-e', script];
    // the pointer out of the way, in the corner
    desktop.xdotool('mousemove', '636', '476');
    const onHost = start(
      join(repoRoot, 'bin/tswl-proxy'),
      [
        '--wayland-display',
        'tswl-vm-x11',
        '--host-display',
        'wayland-0',
        '--x-display',
        String(freeXDisplay()),
        ...xterm,
      ],
      desktop.clientEnv('nowhere'),
    );
    // printed: red, green and blue on white and black
    const printed = async (shot: string, timeoutMs: number): Promise<void> => {
      await waitFor(
        'xterm to print',
        async () => colourCount(await desktop.stableScreenshot(shot, timeoutMs)) >= 5,
        timeoutMs,
      );
    };
    const hostShot = join(out, 'xterm-host.png');
    await printed(hostShot, 30000);
    await stop(onHost);
    await windowGone();

    const inGuest = await guest.run(
      `./bin/tswl-proxy --virtio-gpu --x-display 7 ${xterm.join(' ')}`,
    );
    const guestShot = join(out, 'xterm-guest.png');
    await printed(guestShot, BOOT_MS);
    expect(differingPixels(hostShot, guestShot), inGuest.output()).toBe(0);
    // the shell's output goes to the guest's console; the marker is computed by the guest's
    // shell so the typed command itself never matches
    desktop.type('echo typed-$((6 * 7))-through-x11-in-the-vm > /dev/console');
    await waitFor(
      'the typed command to run in the guest',
      () => guest.saw('typed-42-through-x11-in-the-vm'),
      30000,
    );
    expect(await inGuest.stop(), inGuest.output()).toBe(0);
    await windowGone();
  });

  test('QEMU killed mid-frame: tswl-host survives, releases that VM and serves the next', async () => {
    expect(guest, 'the guest of the previous tests').toBeDefined();
    await guest.run('./bin/tswl-proxy --virtio-gpu weston-simple-shm');
    await windowShown('simple-shm-before-kill', BOOT_MS);
    expect(fdCount(host.child.pid!)).toBeGreaterThan(hostFdBaseline);
    process.kill(guest.qemuPid(), 'SIGKILL');
    await guest.qemu.exited;
    await windowGone();
    expect(host.child.exitCode, host.output()).toBeNull();
    await fdsAtBaseline();

    const next = Guest.boot();
    guest = next;
    const info = await next.run('./bin/tswl-proxy --virtio-gpu wayland-info');
    expect(await info.exited(), info.output()).toBe(0);
    expect(info.output()).toMatch(/interface: 'wl_compositor'/);
    expect(info.output()).toMatch(/interface: 'wl_seat'/);
    expect(await next.powerOff()).toBe(0);
    expect(host.child.exitCode, host.output()).toBeNull();
    await fdsAtBaseline();
  });
});

describe("a guest on Debian's QEMU 7.2 with virtio-gpu-pci", () => {
  test('tswl-proxy --virtio-gpu names what the device lacks and the VMM option', async () => {
    const guest = Guest.boot('bookworm');
    const proxy = await guest.run('./bin/tswl-proxy --virtio-gpu true');
    const status = await proxy.exited();
    const said = proxy.output();
    expect(await guest.powerOff()).toBe(0);
    expect(status, said).not.toBe(0);
    expect(said).toMatch(/lacks .*context-init/);
    expect(said).toMatch(/cross-domain needs/);
    expect(said).toMatch(/QEMU >= 11\.1 vhost-user-test-device-pci/);
    expect(said).toMatch(/tswl-host --vhost-user/);
  });
});

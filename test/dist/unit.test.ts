// systemd/tswl-host@.service as shipped, run by a real systemd: a fresh bookworm machine booted
// under systemd-nspawn (systemd is PID 1 there), the user manager of its user vmuser, and the
// single executable of tswl-host (the machine has no Node). An instance starts (Type=notify),
// serves a guest over the local link and takes a VMM's connection, and runs in the sandbox the
// unit describes. Each sandboxing directive is shown to matter: test/support/sandbox-probe.c runs
// as another instance of the same template (a drop-in replaces only what it runs), once as
// shipped and once per directive with that directive taken out, and as a plain service of the
// same manager for the baseline; each directive must change at least one of the probe's lines,
// and taking it out must change them back.
import { spawnSync } from 'node:child_process';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { type Running, killAll, start, stop, waitFor } from '../support/processes.js';
import { repoRoot } from '../support/weston.js';
import {
  BootedMachine,
  type HostWeston,
  VMUSER_UID,
  baseImage,
  globalsIn,
  requireRoot,
  startWeston,
} from './machine.js';

const unitFile = join(repoRoot, 'systemd/tswl-host@.service');
const runtime = `/run/user/${VMUSER_UID}`;
const instanceDir = `${runtime}/tswl-host/vm1`;
const localLink = `${instanceDir}/local-link.sock`;
const probeUnitOverride = `/home/vmuser/.config/systemd/user/tswl-host@probe.service`;

/**
 * The lines of the probe each sandboxing directive changes. Taking the directive out of the unit
 * must bring them back to what a plain service sees, unless `undone` says what else: the values
 * instead, 'changed' (only that they are not the shipped ones), or 'fails' (the unit fails).
 */
const EVIDENCE: Record<
  string,
  { keys: string[]; undone?: Record<string, string> | 'changed' | 'fails' }
> = {
  NoNewPrivileges: { keys: ['status_NoNewPrivs'] },
  // Without it the user namespace keeps every capability other directives do not remove.
  CapabilityBoundingSet: { keys: ['status_CapBnd'], undone: 'changed' },
  // Without a user namespace a user manager cannot set up the other namespaces at all.
  PrivateUsers: { keys: ['ns_user'], undone: 'fails' },
  ProtectSystem: { keys: ['write_root'] },
  ProtectHome: { keys: ['write_home', 'write_runtime_dir'] },
  PrivateTmp: { keys: ['tmp_inode'] },
  PrivateDevices: { keys: ['dev_net_tun'] },
  PrivateIPC: { keys: ['ns_ipc'] },
  PrivateNetwork: { keys: ['ns_net'] },
  RestrictAddressFamilies: { keys: ['socket_inet', 'socket_inet6', 'socket_netlink'] },
  RestrictNamespaces: { keys: ['unshare_user'] },
  ProtectHostname: { keys: ['ns_uts'] },
  ProtectKernelTunables: { keys: ['kallsyms'] },
  ProtectKernelModules: { keys: ['modules_dir'] },
  ProtectKernelLogs: { keys: ['kmsg_mode'] },
  LockPersonality: { keys: ['personality'] },
  RestrictSUIDSGID: { keys: ['chmod_suid'] },
  KeyringMode: { keys: ['session_keyring'] },
  SystemCallArchitectures: { keys: ['syscall_i386'] },
  SystemCallFilter: { keys: ['setuid_self', 'setpriority', 'ptrace_traceme'] },
  // Refused calls fail with EPERM instead of killing the process.
  SystemCallErrorNumber: {
    keys: ['setuid_self', 'setpriority', 'ptrace_traceme'],
    undone: { setuid_self: 'SYS', setpriority: 'SYS', ptrace_traceme: 'SYS' },
  },
  UMask: { keys: ['umask'] },
};
/** Lines of [Service] that are not sandboxing. */
const NOT_SANDBOXING = ['Type', 'ExecStart', 'Restart', 'RuntimeDirectory', 'RuntimeDirectoryMode'];

let work: string;
let weston: HostWeston;
let machine: BootedMachine;

/** Parses the probe's `name=value` lines. */
function report(text: string): Record<string, string> {
  return Object.fromEntries(
    text
      .trim()
      .split('\n')
      .map((line) => line.split(/=(.*)/s).slice(0, 2)),
  );
}

function userctl(...args: string[]): string {
  return machine.run(['systemctl', '--user', ...args], { user: 'vmuser' });
}

/** Runs a oneshot unit of vmuser's manager and returns the report its probe left in `file`. */
function probe(unit: string, file: string): Record<string, string> {
  rmSync(machine.path(file), { force: true });
  userctl('start', unit);
  return report(readFileSync(machine.path(file), 'utf8'));
}

beforeAll(async () => {
  requireRoot();
  const exe = join(repoRoot, 'dist/exe/tswl-host');
  if (!existsSync(exe)) throw new Error(`no ${exe}: npm run build:exe`);
  work = mkdtempSync(join(tmpdir(), 'tswl-dist-unit-'));

  const bin = join(work, 'bin');
  mkdirSync(bin);
  const cc = spawnSync(
    'cc',
    [
      '-static',
      '-O2',
      '-o',
      join(bin, 'tswl-sandbox-probe'),
      join(repoRoot, 'test/support/sandbox-probe.c'),
    ],
    { encoding: 'utf8' },
  );
  if (cc.status !== 0) throw new Error(`building the probe failed: ${cc.stderr}`);

  // The user units as a user would install them, plus the test's own.
  const units = join(work, 'units');
  mkdirSync(join(units, 'tswl-host@vm1.service.d'), { recursive: true });
  mkdirSync(join(units, 'tswl-host@probe.service.d'));
  copyFileSync(unitFile, join(units, 'tswl-host@.service'));
  // As README says to add options: the local link, for a guest on this machine.
  writeFileSync(
    join(units, 'tswl-host@vm1.service.d/local-link.conf'),
    `[Service]\nEnvironment="TSWL_HOST_OPTIONS=--listen-local %t/tswl-host/%i/local-link.sock --verbose"\n`,
  );
  writeFileSync(
    join(units, 'tswl-host@probe.service.d/probe.conf'),
    [
      '[Service]',
      'Type=oneshot',
      'ExecStart=',
      'ExecStart=/usr/local/libexec/tswl/tswl-sandbox-probe %t/tswl-host/%i',
      // Opened by the manager, outside the sandbox.
      'StandardOutput=truncate:%t/probe-report',
      '',
    ].join('\n'),
  );
  writeFileSync(
    join(units, 'tswl-probe-baseline.service'),
    [
      '[Service]',
      'Type=oneshot',
      'RuntimeDirectory=tswl-host/baseline',
      'ExecStart=/usr/local/libexec/tswl/tswl-sandbox-probe %t/tswl-host/baseline',
      'StandardOutput=truncate:%t/probe-baseline',
      '',
    ].join('\n'),
  );

  weston = await startWeston(VMUSER_UID);
  machine = await BootedMachine.boot(
    baseImage,
    [
      { host: exe, inside: '/usr/local/bin/tswl-host' },
      { host: join(repoRoot, 'dist/exe/tswl-proxy'), inside: '/usr/local/bin/tswl-proxy' },
      { host: bin, inside: '/usr/local/libexec/tswl' },
      { host: units, inside: '/etc/systemd/user' },
      { host: weston.runtimeDir, inside: '/mnt/wayland' },
    ],
    // nspawn keeps keyring calls from its machines (keyrings are not namespaced); allowing them
    // gives the baseline a session keyring to compare KeyringMode= against.
    ['--system-call-filter=@keyring'],
  );
  // nspawn covers /proc/kmsg with a FIFO of its own (now deleted), which no machine has and which
  // systemd cannot cover again for ProtectKernelLogs=.
  machine.run([
    'sh',
    '-c',
    'if grep -q " /proc/kmsg " /proc/self/mountinfo; then umount /proc/kmsg; fi',
  ]);
  machine.run(['systemctl', 'start', `user@${VMUSER_UID}.service`]);
  // What a compositor's session does (README).
  userctl('set-environment', 'WAYLAND_DISPLAY=/mnt/wayland/wayland-0');
}, 180000);

afterAll(async () => {
  await machine?.stop();
  await weston?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
  killAll();
});

describe('tswl-host@vm1', () => {
  test('starts once tswl-host is ready (Type=notify)', () => {
    expect(machine.exec(['sh', '-c', 'command -v node nodejs']).status).not.toBe(0);
    userctl('start', 'tswl-host@vm1.service');
    expect(userctl('is-active', 'tswl-host@vm1.service').trim()).toBe('active');
    expect(userctl('show', '-p', 'StatusText', '--value', 'tswl-host@vm1.service').trim()).toBe(
      `serving on ${localLink} and ${instanceDir}/vhost-user.sock`,
    );
  });

  test('serves a guest over the local link', async () => {
    // The guest: the single executable of tswl-proxy in the same machine, as vmuser; its
    // WAYLAND_DISPLAY leads nowhere, so the device is its only way to the compositor.
    const info = machine.run(
      [
        'env',
        'WAYLAND_DISPLAY=nowhere',
        'tswl-proxy',
        '--virtio-gpu-device',
        localLink,
        'wayland-info',
      ],
      { user: 'vmuser' },
    );
    expect(globalsIn(info)).toEqual(
      expect.arrayContaining(['wl_compositor', 'wl_shm', 'xdg_wm_base']),
    );
    // A client that draws: host blobs (memfds made by tswl-host in its sandbox) carry its frames.
    // This guest runs on the host, reaching the link through the machine's root.
    const runtimeDir = mkdtempSync(join(work, 'guest-'));
    const guest: Running = start(
      join(repoRoot, 'bin/tswl-proxy'),
      ['--virtio-gpu-device', machine.path(localLink), 'weston-simple-shm'],
      { ...process.env, XDG_RUNTIME_DIR: runtimeDir, WAYLAND_DISPLAY: 'nowhere' },
    );
    const journal = (): string =>
      machine.run(['journalctl', '-o', 'cat', '_SYSTEMD_USER_UNIT=tswl-host@vm1.service']);
    await waitFor('frames in host blobs', () => /host blob of \d+ bytes/.test(journal()), 20000);
    expect(guest.child.exitCode).toBeNull();
    await stop(guest);
    await waitFor('the guest to go', () => /guest \d+: disconnected/.test(journal()));
    expect(journal()).not.toMatch(/fail|error|denied|EPERM/i);
  });

  test("takes a VMM's connection on its vhost-user socket, private to vmuser", async () => {
    const socket = `${instanceDir}/vhost-user.sock`;
    // RuntimeDirectoryMode= and UMask=
    expect(machine.run(['stat', '-c', '%a %U', instanceDir, socket]).trim().split('\n')).toEqual([
      '700 vmuser',
      '700 vmuser',
    ]);
    await new Promise<void>((resolve, reject) => {
      const s = connect(machine.path(socket));
      s.once('connect', () => {
        s.destroy();
        resolve();
      });
      s.once('error', reject);
    });
  });

  test('runs in the sandbox: no privileges, seccomp, its own namespaces and mounts', () => {
    const pid = userctl('show', '-p', 'MainPID', '--value', 'tswl-host@vm1.service').trim();
    const manager = machine
      .run(['systemctl', 'show', '-p', 'MainPID', '--value', `user@${VMUSER_UID}.service`])
      .trim();
    const status = machine.run(['cat', `/proc/${pid}/status`]);
    expect(status).toMatch(/^NoNewPrivs:\s+1$/m);
    expect(status).toMatch(/^Seccomp:\s+2$/m);
    expect(status).toMatch(/^CapBnd:\s+0+$/m);
    for (const ns of ['user', 'net', 'ipc', 'uts', 'mnt']) {
      const [own, managers] = machine
        .run(['readlink', `/proc/${pid}/ns/${ns}`, `/proc/${manager}/ns/${ns}`])
        .split('\n');
      expect(own, ns).not.toBe(managers);
    }
    // mount point → options, from the process's mount table (the last mount on a path wins)
    const mounts = new Map(
      machine
        .run(['cat', `/proc/${pid}/mountinfo`])
        .trim()
        .split('\n')
        .map((line) => line.split(' '))
        .map((f) => [f[4], f[5].split(',')] as const),
    );
    expect(mounts.get('/')).toContain('ro'); // ProtectSystem=strict
    expect(mounts.get('/run/user')).toContain('ro'); // ProtectHome=read-only
    expect(mounts.get(instanceDir)).toContain('rw'); // RuntimeDirectory=
    expect(mounts.get('/dev')).toContain('ro'); // PrivateDevices=
    expect(mounts.has('/tmp')).toBe(true); // PrivateTmp=
    expect(mounts.get('/proc/fs')).toContain('ro'); // ProtectKernelTunables=
    expect(mounts.has('/proc/kmsg')).toBe(true); // ProtectKernelLogs=
  });

  test('each sandboxing directive changes what the unit may do', () => {
    const text = readFileSync(unitFile, 'utf8');
    const service = text.slice(text.search(/^\[Service\]$/m), text.search(/^\[Install\]$/m));
    const directives = [...new Set([...service.matchAll(/^(\w+)=/gm)].map((m) => m[1]))].filter(
      (d) => !NOT_SANDBOXING.includes(d),
    );
    expect(directives.sort()).toEqual(Object.keys(EVIDENCE).sort());

    const baseline = probe('tswl-probe-baseline.service', `${runtime}/probe-baseline`);
    const shipped = probe('tswl-host@probe.service', `${runtime}/probe-report`);
    // What tswl-host itself runs with is what the probe ran with.
    const pid = userctl('show', '-p', 'MainPID', '--value', 'tswl-host@vm1.service').trim();
    const hostStatus = report(
      machine
        .run(['grep', '-E', '^(NoNewPrivs|Seccomp_filters|CapBnd):', `/proc/${pid}/status`])
        .replace(/^(\w+):\s+/gm, 'status_$1='),
    );
    for (const key of ['status_NoNewPrivs', 'status_Seccomp_filters', 'status_CapBnd']) {
      expect(hostStatus[key], key).toBe(shipped[key]);
    }
    // The unit's own runtime directory stays writable inside the sandbox.
    expect(shipped.write_own_runtime_dir).toBe('ok');
    expect(shipped.socket_unix).toBe('ok');

    const override = machine.path(probeUnitOverride);
    mkdirSync(join(override, '..'), { recursive: true });
    try {
      for (const [directive, { keys, undone }] of Object.entries(EVIDENCE)) {
        for (const key of keys) {
          expect(shipped[key], `${directive}: ${key}`).not.toBe(baseline[key]);
        }
        // The same unit without the directive, for this instance only.
        writeFileSync(override, text.replace(new RegExp(`^${directive}=.*\\n`, 'gm'), ''));
        userctl('daemon-reload');
        if (undone === 'fails') {
          expect(
            machine.exec(['systemctl', '--user', 'start', 'tswl-host@probe.service'], {
              user: 'vmuser',
            }).status,
            directive,
          ).not.toBe(0);
          userctl('reset-failed', 'tswl-host@probe.service');
          continue;
        }
        const without = probe('tswl-host@probe.service', `${runtime}/probe-report`);
        for (const key of keys) {
          const what = `without ${directive}: ${key}`;
          if (undone === 'changed') expect(without[key], what).not.toBe(shipped[key]);
          else expect(without[key], what).toBe(undone?.[key] ?? baseline[key]);
        }
      }
    } finally {
      rmSync(override, { force: true });
      userctl('daemon-reload');
    }
  });

  test('stops with its sockets removed', () => {
    userctl('stop', 'tswl-host@vm1.service');
    expect(machine.exec(['test', '-e', instanceDir]).status).not.toBe(0);
  });
});

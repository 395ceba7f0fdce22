// Fresh Debian bookworm machines for the distribution tests (npm run test:dist): the images that
// scripts/dist/build-images.sh keeps in $TSWL_DIST_DIR, run under systemd-nspawn with
// --volatile=overlay, so every run starts from the image as built and leaves it untouched.
import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Running, accepts, start, stop, waitFor } from '../support/processes.js';

export const distDir = process.env.TSWL_DIST_DIR ?? '/var/cache/tswl-proxy-dist';
/** Debian 12 minbase with systemd and wayland-utils; no Node. */
export const baseImage = join(distDir, 'bookworm');
/** The same with g++, make, python3 and ca-certificates; no Node. */
export const devImage = join(distDir, 'bookworm-dev');
/** The user of the images (scripts/dist/build-images.sh). */
export const VMUSER_UID = 4242;

/** Fails, rather than skips, where the tests cannot run. */
export function requireRoot(): void {
  if (process.getuid?.() !== 0) {
    throw new Error('the dist tests need root (systemd-nspawn): run npm run test:dist as root');
  }
}

/** A bind mount into the machine: host path, path inside, read-only unless rw. */
export interface Bind {
  host: string;
  inside: string;
  rw?: boolean;
}

function nspawnArgs(image: string, binds: Bind[], extra: string[]): string[] {
  return [
    '--quiet',
    `--directory=${image}`,
    '--volatile=overlay',
    // There is no systemd-machined or service manager to register with on a build machine.
    '--register=no',
    '--keep-unit',
    ...binds.map((b) => `--bind${b.rw ? '' : '-ro'}=${b.host}:${b.inside}`),
    ...extra,
  ];
}

/**
 * Runs `script` with bash in a fresh machine (the machine's PID 1 is a stub init, bash its child)
 * and returns its status and output. The machine shares the host's network.
 */
export function runInMachine(
  image: string,
  script: string,
  opts: { binds?: Bind[]; env?: Record<string, string>; timeoutMs?: number } = {},
): { status: number | null; stdout: string; stderr: string } {
  const env = Object.entries(opts.env ?? {}).map(([k, v]) => `--setenv=${k}=${v}`);
  const r = spawnSync(
    'systemd-nspawn',
    [
      ...nspawnArgs(image, opts.binds ?? [], [...env, '--as-pid2', '--console=pipe']),
      '/bin/bash',
      '--norc',
      '-euo',
      'pipefail',
      '-c',
      script,
    ],
    { encoding: 'utf8', timeout: opts.timeoutMs ?? 120000 },
  );
  if (r.error) throw r.error;
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** A machine booted with systemd as PID 1. */
export class BootedMachine {
  private constructor(
    private readonly nspawn: Running,
    /** The machine's PID 1 (systemd), as seen from the host. */
    readonly init: number,
  ) {}

  static async boot(image: string, binds: Bind[], extra: string[] = []): Promise<BootedMachine> {
    const nspawn = start('systemd-nspawn', nspawnArgs(image, binds, [...extra, '--boot']), {
      ...process.env,
      SYSTEMD_LOG_LEVEL: 'warning',
    });
    let init = 0;
    try {
      init = await waitFor(
        'the machine to start systemd',
        () => {
          if (nspawn.child.exitCode !== null) {
            throw new Error(`systemd-nspawn exited: ${nspawn.output()}`);
          }
          const r = spawnSync('pgrep', ['-P', String(nspawn.child.pid), '-x', 'systemd']);
          return r.status === 0 && Number(r.stdout.toString().trim());
        },
        30000,
      );
      const machine = new BootedMachine(nspawn, init);
      // Until systemd listens on its socket, systemctl says nothing, or "offline" when it
      // cannot reach it yet (seen on a loaded machine): both mean ask again.
      const state = await waitFor(
        'systemd in the machine to answer',
        () => {
          const said = machine.exec(['systemctl', 'is-system-running', '--wait']).stdout.trim();
          return said !== 'offline' && said;
        },
        30000,
      );
      if (state !== 'running') {
        throw new Error(
          `the machine is ${state}: ${machine.exec(['systemctl', '--failed']).stdout}`,
        );
      }
      return machine;
    } catch (e) {
      // The machine's PID 1 is not in nspawn's process group: it must be killed by itself.
      if (init) killQuietly(init);
      await stop(nspawn, 'SIGKILL');
      throw e;
    }
  }

  /** Runs a command in the machine (all its namespaces), as root or as vmuser. */
  exec(
    command: string[],
    opts: { user?: 'vmuser'; timeoutMs?: number } = {},
  ): { status: number | null; stdout: string; stderr: string } {
    const asUser = opts.user
      ? ['runuser', '-u', opts.user, '--', 'env', `XDG_RUNTIME_DIR=/run/user/${VMUSER_UID}`]
      : [];
    const r = spawnSync('nsenter', ['-t', String(this.init), '-a', ...asUser, ...command], {
      encoding: 'utf8',
      timeout: opts.timeoutMs ?? 60000,
    });
    if (r.error) throw r.error;
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
  }

  /** As exec, but a failure throws with the command's output. */
  run(command: string[], opts: { user?: 'vmuser'; timeoutMs?: number } = {}): string {
    const r = this.exec(command, opts);
    if (r.status !== 0) {
      throw new Error(`${command.join(' ')} failed (${r.status}): ${r.stdout}${r.stderr}`);
    }
    return r.stdout;
  }

  /** A path inside the machine, as the host reaches it. */
  path(inside: string): string {
    return `/proc/${this.init}/root${inside}`;
  }

  /** Powers the machine off (SIGTERM asks nspawn for that), killing it if that takes too long. */
  async stop(): Promise<void> {
    this.nspawn.child.kill('SIGTERM');
    const timer = setTimeout(() => killQuietly(this.init), 15000);
    await this.nspawn.exited;
    clearTimeout(timer);
    killQuietly(this.init); // if nspawn went without it
  }
}

/** SIGKILL to a process, which may be gone; for a machine's PID 1 that ends the whole machine. */
function killQuietly(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // gone already
  }
}

/** A headless weston on the host, in its own runtime directory, run as `uid`. */
export interface HostWeston {
  readonly runtimeDir: string;
  readonly socket: string;
  stop(): Promise<void>;
}

export async function startWeston(uid = 0): Promise<HostWeston> {
  const runtimeDir = mkdtempSync(join(tmpdir(), 'tswl-dist-weston-'));
  chownSync(runtimeDir, uid, uid);
  chmodSync(runtimeDir, 0o700);
  const weston = start(
    'setpriv',
    [
      `--reuid=${uid}`,
      `--regid=${uid}`,
      '--clear-groups',
      'weston',
      '--backend=headless-backend.so',
      '--use-pixman',
      '--socket=wayland-0',
      '--idle-time=0',
      '--no-config',
    ],
    { PATH: process.env.PATH, XDG_RUNTIME_DIR: runtimeDir },
  );
  const socket = join(runtimeDir, 'wayland-0');
  await waitFor(
    'weston to listen',
    async () => (await accepts(socket)) || weston.child.exitCode !== null,
  );
  if (weston.child.exitCode !== null) throw new Error(`weston exited: ${weston.output()}`);
  return {
    runtimeDir,
    socket,
    async stop() {
      await stop(weston);
      rmSync(runtimeDir, { recursive: true, force: true });
    },
  };
}

/** Interface names that wayland-info printed. */
export function globalsIn(waylandInfo: string): string[] {
  return [...waylandInfo.matchAll(/^interface: '(\w+)'/gm)].map((m) => m[1]);
}

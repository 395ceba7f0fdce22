// The configurations measured, all against the same headless weston. Each is a list of
// processes started in order; applications connect to the socket of the last one. Adding a way
// of relaying is adding one entry here.

import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface Context {
  readonly root: string;
  readonly runtimeDir: string;
  /** weston's socket, as a path. */
  readonly compositorPath: string;
  /** A number that makes this instance's socket names unique within the run. */
  readonly instance: number;
}

export interface Step {
  /** Shown in error messages, and names the per-process memory breakdown. */
  readonly name: string;
  readonly command: string;
  readonly args: string[];
  /** The Unix socket (stream or seqpacket) that accepts connections once the step is up. */
  readonly listens: string;
  /** A Node program: `--cpu-prof DIR` profiles it. */
  readonly node?: boolean;
  /** tswl-proxy's control FIFO and the file its `stats` reports go to (bytes copied). */
  readonly stats?: { readonly fifo: string; readonly file: string };
}

export interface Config {
  readonly id: string;
  readonly title: string;
  /** Optional configurations are left out, with the reason printed, when unavailable. */
  readonly optional?: boolean;
  /** Why this configuration cannot run here, or null when it can. */
  unavailable(root: string): Promise<string | null>;
  /** No steps: clients talk to weston directly. */
  steps(ctx: Context): Step[];
}

async function helpText(command: string): Promise<string> {
  try {
    const { stdout } = await run(command, ['--help'], { timeout: 15000 });
    return stdout;
  } catch (e) {
    return (e as { stdout?: string }).stdout ?? '';
  }
}

/** One minimal C relay listening in the run's folder and relaying to `upstream`. */
function relayStep(ctx: Context, name: string, upstream: string): Step {
  const socket = join(ctx.runtimeDir, `${name.replace(/\W+/g, '-')}-${ctx.instance}`);
  return {
    name,
    command: join(ctx.root, 'bench/build/bin/relay'),
    args: [socket, upstream],
    listens: socket,
  };
}

function proxyBuilt(root: string): string | null {
  return existsSync(join(root, 'dist/cli/tswl-proxy-main.js'))
    ? null
    : 'dist/ is missing: run `npm run build` (npm ci does it)';
}

export const CONFIGS: Config[] = [
  {
    id: 'direct',
    title: 'direct',
    unavailable: async () => null,
    steps: () => [],
  },
  {
    id: 'floor',
    title: 'a minimal C relay (bench/clients/relay.c): the floor of any relaying process here',
    unavailable: async () => null,
    steps: (ctx) => [relayStep(ctx, 'floor', ctx.compositorPath)],
  },
  {
    id: 'floor-2hop',
    title: 'two minimal C relays in a row: the floor of any path through two processes',
    unavailable: async () => null,
    steps: (ctx) => {
      const first = relayStep(ctx, 'floor hop 1', ctx.compositorPath);
      return [first, relayStep(ctx, 'floor hop 2', first.listens)];
    },
  },
  {
    id: 'tswl-proxy',
    title: 'tswl-proxy (host mode)',
    unavailable: async (root) => proxyBuilt(root),
    steps: (ctx) => {
      const socket = join(ctx.runtimeDir, `tswl-${ctx.instance}`);
      return [
        {
          name: 'tswl-proxy',
          command: join(ctx.root, 'bin/tswl-proxy'),
          args: ['--wayland-display', socket, '--host-display', ctx.compositorPath],
          listens: socket,
          node: true,
        },
      ];
    },
  },
  {
    id: 'tswl-virtio-gpu',
    title: 'tswl-proxy --virtio-gpu (local link, tswl-host)',
    optional: true,
    unavailable: async (root) => {
      const built = proxyBuilt(root);
      if (built) return built;
      if (!existsSync(join(root, 'bin/tswl-host'))) return 'bin/tswl-host does not exist yet';
      if (!(await helpText(join(root, 'bin/tswl-proxy'))).includes('--virtio-gpu-device'))
        return '`tswl-proxy --help` does not mention --virtio-gpu-device yet';
      return null;
    },
    steps: (ctx) => {
      const link = join(ctx.runtimeDir, `tswl-host-${ctx.instance}.sock`);
      const socket = join(ctx.runtimeDir, `tswl-vgpu-${ctx.instance}`);
      return [
        {
          name: 'tswl-host',
          command: join(ctx.root, 'bin/tswl-host'),
          args: ['--wayland-sock', ctx.compositorPath, '--listen-local', link],
          listens: link,
          node: true,
        },
        {
          name: 'tswl-proxy',
          command: join(ctx.root, 'bin/tswl-proxy'),
          args: [
            '--virtio-gpu-device',
            link,
            '--wayland-display',
            socket,
            '--log-ring-path',
            `${socket}.log`,
          ],
          listens: socket,
          node: true,
          stats: { fifo: `${socket}-ctl`, file: `${socket}.log` },
        },
      ];
    },
  },
  {
    id: 'waypipe',
    title: 'waypipe -c none (client + server over a Unix socket)',
    unavailable: async () => {
      try {
        await run('waypipe', ['--version'], { timeout: 15000 });
        return null;
      } catch {
        return 'waypipe is not installed (Debian package waypipe; see scripts/install-deps.sh)';
      }
    },
    steps: (ctx) => {
      // As in reference/peers.md §1.3: the "client" half talks to the compositor and listens on
      // the link socket; the "server" half is the display applications connect to. Both fork a
      // process per application connection.
      const link = join(ctx.runtimeDir, `waypipe-${ctx.instance}.sock`);
      const socket = join(ctx.runtimeDir, `waypipe-${ctx.instance}`);
      return [
        {
          name: 'waypipe client',
          command: 'waypipe',
          args: ['-c', 'none', '-s', link, 'client'],
          listens: link,
        },
        {
          name: 'waypipe server',
          command: 'waypipe',
          args: [
            '-c',
            'none',
            '-s',
            link,
            '--display',
            socket,
            'server',
            '--',
            'sleep',
            'infinity',
          ],
          listens: socket,
        },
      ];
    },
  },
];

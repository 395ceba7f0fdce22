import { spawn } from 'node:child_process';
import { accessSync, closeSync, constants as constants_fs, statSync } from 'node:fs';
import { join } from 'node:path';
import { constants } from 'node:os';
import { Command, InvalidArgumentError } from 'commander';
import { allInterfaces } from '../generated/index.js';
import { ControlPipe } from '../log/control.js';
import { Log } from '../log/log.js';
import { parseSuppressClasses } from '../log/suppress.js';
import { Tracer } from '../log/trace.js';
import * as native from '../native/index.js';
import { ProtocolTables } from '../protocol/tables.js';
import { ProxyServer } from '../proxy.js';
import { relayHooks } from '../relay/hooks.js';
import {
  privilegedGlobalsForHelp,
  VM_BOUNDARY_HIDDEN_GLOBALS,
  parseAllowGlobal,
  withheldGlobals,
} from '../relay/policy.js';
import type { HostConnector } from '../relay/relay.js';
import type { LocalGlobal } from '../relay/registry.js';
import type { ShadowAllocatorSource } from '../relay/shm.js';
import { XDisplay } from '../xwayland/display.js';
import { XwaylandLauncher } from '../xwayland/xwayland.js';
import { connectCrossDomain, crossDomainShadowShm, openVirtGpu } from '../links/cross-domain.js';
import { connectVirtWl, openVirtWl, virtWlShadowShm } from '../links/virtwl.js';
import { discoverVirtGpu } from '../virtgpu/drm.js';
import { Connection } from '../wire/connection.js';
import { closeQuietly } from '../wire/fd-queue.js';
import { listenFdsFromEnv } from './activation.js';
import { Notifier } from './notify.js';
import { UsageError, displayPath } from './paths.js';
import { version } from './version.js';

interface Options {
  waylandDisplay: string;
  hostDisplay?: string;
  virtioGpu?: boolean;
  virtioGpuDevice?: string;
  virtioWl?: string;
  tag?: string;
  appIdPrefix?: string;
  allowGlobal?: string[];
  verbose?: boolean;
  logSuppress: string;
  logRingPath?: string;
  logRingSize: number;
  xDisplay?: number;
  xwaylandBinary: string;
  xrdb: string[];
  xUnscale: number;
}

function displayNumber(value: string): number {
  const n = Number(value);
  if (!/^[0-9]+$/.test(value) || n > 65535)
    throw new InvalidArgumentError('expected an X display number, 0 to 65535');
  return n;
}

function xrdbEntry(value: string): string {
  if (!/^[^:\n]+:[^\n]*$/.test(value)) throw new InvalidArgumentError('expected KEY:VALUE');
  return value;
}

function unscaleFactor(value: string): number {
  const n = Number(value);
  if (!/^[0-9]+$/.test(value) || n < 1 || n > 16)
    throw new InvalidArgumentError('expected a whole number from 1 to 16');
  return n;
}

function byteCount(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1024)
    throw new InvalidArgumentError('expected a whole number of bytes, at least 1024');
  return n;
}

export function buildProgram(): Command {
  return new Command('tswl-proxy')
    .description(
      'Relay Wayland clients to the host compositor. With a command, run it with WAYLAND_DISPLAY pointing at the proxy and exit with its status.',
    )
    .usage('[options] [--] [command [args...]]')
    .argument(
      '[command...]',
      'program to run through the proxy (everything from the first non-option word on)',
    )
    .option(
      '--wayland-display <name|path>',
      'socket to listen on: a name in $XDG_RUNTIME_DIR, or a path',
      'wayland-1',
    )
    .option(
      '--host-display <name|path>',
      'host compositor socket (default: $WAYLAND_DISPLAY, else wayland-0)',
    )
    .option(
      '--virtio-gpu',
      'reach the host compositor through a virtio-gpu cross-domain context (in a VM guest)',
    )
    .option(
      '--virtio-gpu-device <path>',
      'the virtio-gpu device: a DRM node, or the local link socket of tswl-host (implies --virtio-gpu)',
    )
    .option(
      '--virtio-wl <path>',
      'reach the host compositor through the legacy virtio_wl device instead (e.g. /dev/wl0, ChromiumOS kernels)',
    )
    .option('--tag <prefix>', 'prefix for the title of every toplevel window')
    .option('--app-id-prefix <prefix>', 'prefix for the app_id of every toplevel window')
    .option(
      '--allow-global <names>',
      'offer these privileged globals to clients too, comma-separated (repeatable; see below)',
      parseAllowGlobal,
    )
    .option(
      '--x-display <n>',
      'serve X11 applications as display :N, through Xwayland started on demand (DISPLAY=:N for the command)',
      displayNumber,
    )
    .option('--xwayland-binary <path>', 'the Xwayland program to run', 'Xwayland')
    .option(
      '--xrdb <key:value>',
      "an X resource for the root window's RESOURCE_MANAGER, e.g. Xft.dpi:96 (repeatable)",
      (value: string, list: string[]) => [...list, xrdbEntry(value)],
      [] as string[],
    )
    .option(
      '--x-unscale <n>',
      'X11 apps draw at N times the size the host asks for, shown at 1/N (e.g. 2 on a scale-2 output: sharp instead of scaled up)',
      unscaleFactor,
      1,
    )
    .option('-v, --verbose', 'trace every message on both sides, and say more')
    .option(
      '--log-suppress <classes>',
      'leave these classes out of the trace, comma-separated: motion,shm,delete,region,drawing,hints',
      '',
    )
    .option(
      '--log-ring-path <file>',
      'keep the trace in a memory ring; `dump-log` and fatal errors append it to FILE',
    )
    .option('--log-ring-size <bytes>', 'size of the log ring', byteCount, 512 * 1024)
    .addHelpText(
      'after',
      `
Privileged globals are offered only when allowed with --allow-global (across a VM boundary,
tswl-host decides again for itself):
${privilegedGlobalsForHelp()}

Tracing: WAYLAND_DEBUG_PROXY=client,server (else WAYLAND_DEBUG; 1 means client,server) traces
the proxy's connections to clients and to the host compositor.

Control: while running, the FIFO <socket>-ctl (e.g. $XDG_RUNTIME_DIR/wayland-1-ctl) takes
  dump-log   append the log ring to the --log-ring-path file
  stats      append counts of clients, objects, bytes and fds relayed, bytes copied

X11: with --x-display N, X clients connect to /tmp/.X11-unix/XN (and the abstract socket of that
name); the first one starts Xwayland, whose windows become toplevels and popups on the host, and
whose CLIPBOARD and PRIMARY selections are the host's.

systemd: socket activation (LISTEN_FDS, sockets named "wayland" and "x11") and Type=notify are
supported.`,
    )
    .passThroughOptions()
    .version(version)
    .showHelpAfterError();
}

/** Which sides WAYLAND_DEBUG_PROXY (or WAYLAND_DEBUG) asks to trace. */
export function debugSides(
  env: NodeJS.ProcessEnv,
  warn: (m: string) => void,
): { client: boolean; host: boolean } {
  const variable = env.WAYLAND_DEBUG_PROXY !== undefined ? 'WAYLAND_DEBUG_PROXY' : 'WAYLAND_DEBUG';
  const value = env[variable] ?? '';
  if (value === '1') return { client: true, host: true };
  const sides = { client: false, host: false };
  for (const item of value.split(',')) {
    const name = item.trim();
    if (name === 'client') sides.client = true;
    else if (name === 'server') sides.host = true;
    else if (name !== '' && name !== 'xwayland')
      warn(`unknown ${variable} item "${name}" (known: client, server, xwayland)`);
  }
  return sides;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  program.parse(argv);
  const opts = program.opts<Options>();
  const command = program.args;
  const env = process.env;

  const log = new Log({
    ringPath: opts.logRingPath ?? null,
    ringSize: opts.logRingSize,
    verbose: opts.verbose ?? false,
    prefix: 'tswl-proxy',
  });
  let hidden: Set<string>;
  try {
    hidden = parseSuppressClasses(opts.logSuppress);
  } catch (e) {
    throw new UsageError(`--log-suppress: ${(e as Error).message}`);
  }
  const sides = opts.verbose ? { client: true, host: true } : debugSides(env, log.warn);
  const tracer =
    sides.client || sides.host ? new Tracer({ ...sides, hidden, write: log.trace }) : null;

  const activated = listenFdsFromEnv(env, process.pid);
  if (activated?.wayland && program.getOptionValueSource('waylandDisplay') === 'cli') {
    throw new UsageError(
      '--wayland-display cannot be used with a socket-activated "wayland" socket',
    );
  }
  if (activated?.x11 && opts.xDisplay === undefined) {
    throw new UsageError(
      'an "x11" socket was passed by systemd: give its display number with --x-display N',
    );
  }
  const xwaylandBinary = opts.xDisplay === undefined ? null : findProgram(opts.xwaylandBinary, env);
  if (opts.xDisplay !== undefined && !xwaylandBinary) {
    throw new UsageError(
      `--x-display needs Xwayland, and ${opts.xwaylandBinary} was not found: install the xwayland package or give --xwayland-binary PATH`,
    );
  }
  const listenPath =
    activated?.wayland?.path ?? displayPath(opts.waylandDisplay, env, '--wayland-display');
  if (opts.virtioWl && (opts.virtioGpu || opts.virtioGpuDevice)) {
    throw new UsageError('--virtio-wl and --virtio-gpu are two ways to reach the host: pick one');
  }
  let withheld: Set<string>;
  try {
    withheld = withheldGlobals(opts.allowGlobal ?? []);
  } catch (e) {
    throw new UsageError(`--allow-global: ${(e as Error).message}`);
  }
  const host = opts.virtioWl
    ? virtioWlHost(opts.virtioWl)
    : opts.virtioGpu || opts.virtioGpuDevice
      ? virtioGpuHost(opts)
      : socketHost(opts, env, listenPath);

  const notifier = Notifier.fromEnv(env, log.warn);
  const hooksWith = (localGlobals: readonly LocalGlobal[]) =>
    relayHooks({
      tag: opts.tag ?? '',
      appIdPrefix: opts.appIdPrefix ?? '',
      shadowShm: host.shadowShm,
      hiddenGlobals: new Set([...withheld, ...host.hiddenGlobals]),
      localGlobals,
    });
  const server = new ProxyServer({
    listenPath,
    activatedFd: activated?.wayland?.fd,
    connectHost: host.connect,
    hostName: host.name,
    tables: new ProtocolTables(allInterfaces),
    hooks: hooksWith([]),
    warn: log.warn,
    trace: tracer,
    onClientsChanged: (n) => notifier?.status(`${n} client${n === 1 ? '' : 's'} connected`),
  });
  try {
    server.listen();
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'EADDRINUSE')
      throw new UsageError(`${listenPath} is already in use by another compositor or proxy`);
    throw new UsageError(`cannot listen on ${listenPath}: ${err.message}`);
  }
  let xDisplay: XDisplay | null = null;
  let xwayland: XwaylandLauncher | null = null;
  if (opts.xDisplay !== undefined) {
    xDisplay = new XDisplay(opts.xDisplay);
    try {
      xDisplay.claim(activated?.x11?.fd);
    } catch (e) {
      server.close();
      throw new UsageError((e as Error).message);
    }
    xwayland = new XwaylandLauncher({
      display: xDisplay,
      binary: xwaylandBinary!,
      server,
      hooks: hooksWith,
      tag: opts.tag ?? '',
      appIdPrefix: opts.appIdPrefix ?? '',
      xrdb: opts.xrdb,
      unscale: opts.xUnscale,
      info: log.info,
      warn: log.warn,
    });
    xwayland.listen();
  }
  const stopX11 = (): void => {
    xwayland?.close();
    xDisplay?.release();
  };
  const control = new ControlPipe(`${listenPath}-ctl`, (cmd) =>
    runControlCommand(cmd, log, server),
  );
  try {
    control.open();
  } catch (e) {
    server.close();
    stopX11();
    throw new UsageError(`cannot create the control FIFO ${control.path}: ${(e as Error).message}`);
  }
  log.info(`listening on ${listenPath}, relaying to ${host.name}`);
  if (xDisplay) log.info(`X11 display :${xDisplay.number}, Xwayland started on demand`);
  notifier?.ready(`listening on ${listenPath}`);

  return new Promise<number>((resolveExit) => {
    let stopped = false;
    const stop = (code: number): void => {
      if (stopped) return;
      stopped = true;
      notifier?.stopping();
      stopX11();
      server.close();
      control.close();
      resolveExit(code);
    };
    process.once('uncaughtException', (e) => {
      log.warn(`fatal error: ${e.stack ?? e.message}`);
      log.dumpRing('fatal error');
      stop(70);
    });
    if (command.length === 0) {
      process.once('SIGINT', () => stop(0));
      process.once('SIGTERM', () => stop(0));
      return;
    }
    const childEnv: NodeJS.ProcessEnv = {
      ...env,
      WAYLAND_DISPLAY:
        activated?.wayland || opts.waylandDisplay.includes('/') ? listenPath : opts.waylandDisplay,
    };
    delete childEnv.WAYLAND_SOCKET;
    if (xDisplay) childEnv.DISPLAY = `:${xDisplay.number}`;
    const child = spawn(command[0], command.slice(1), { stdio: 'inherit', env: childEnv });
    const forward = (signal: NodeJS.Signals): void => {
      child.kill(signal);
      stop(0);
    };
    process.once('SIGINT', forward);
    process.once('SIGTERM', forward);
    child.once('error', (e) => {
      log.warn(`cannot run ${command[0]}: ${e.message}`);
      stop(127);
    });
    child.once('exit', (code, signal) => {
      log.info(`${command[0]} exited with ${signal ?? code}`);
      stop(code ?? 128 + (signal ? (constants.signals[signal] ?? 0) : 0));
    });
  });
}

export function runControlCommand(command: string, log: Log, server: ProxyServer): void {
  switch (command) {
    case 'dump-log':
      if (log.ring) log.dumpRing('dump-log');
      else log.warn('dump-log: there is no log ring (start with --log-ring-path FILE)');
      return;
    case 'stats': {
      const s = server.stats();
      log.report(
        'stats',
        `clients: ${s.clients}\nobjects: ${s.objects}\n` +
          `bytes client->host: ${s.bytesToHost}\nbytes host->client: ${s.bytesToClients}\n` +
          `fds client->host: ${s.fdsToHost}\nfds host->client: ${s.fdsToClients}\n` +
          `bytes copied into host memory: ${native.copiedBytes()}\n`,
      );
      return;
    }
    default:
      log.warn(`control: unknown command "${command}" (known: dump-log, stats)`);
  }
}

/** A program as spawn() would find it: a path, or a name on PATH; null when there is none. */
function findProgram(program: string, env: NodeJS.ProcessEnv): string | null {
  const executable = (path: string): boolean => {
    try {
      accessSync(path, constants_fs.X_OK);
      return statSync(path).isFile();
    } catch {
      return false;
    }
  };
  if (program.includes('/')) return executable(program) ? program : null;
  for (const dir of (env.PATH ?? '').split(':')) {
    if (dir && executable(join(dir, program))) return join(dir, program);
  }
  return null;
}

/** How each client reaches the host compositor, and what its memory must go through. */
interface HostRoute {
  readonly name: string;
  readonly connect: HostConnector;
  readonly shadowShm: ShadowAllocatorSource | null;
  readonly hiddenGlobals: ReadonlySet<string>;
}

/** Host mode: a plain Unix socket to the compositor; fds, shm pools included, pass as they are. */
function socketHost(opts: Options, env: NodeJS.ProcessEnv, listenPath: string): HostRoute {
  const hostDisplay = opts.hostDisplay ?? env.WAYLAND_DISPLAY ?? 'wayland-0';
  const hostPath = displayPath(hostDisplay, env, 'host display');
  if (listenPath === hostPath) {
    throw new UsageError(
      `the proxy would listen on the host compositor's own socket ${hostPath}; pick another --wayland-display`,
    );
  }
  let fd: number;
  try {
    fd = native.connectUnix(hostPath);
  } catch (e) {
    throw new UsageError(
      `cannot reach the host compositor at ${hostPath}: ${(e as Error).message}`,
    );
  }
  closeQuietly(fd);
  return {
    name: hostPath,
    connect: (handler) => new Connection(native.connectUnix(hostPath), handler),
    shadowShm: null,
    hiddenGlobals: new Set(),
  };
}

/** A guest with the legacy virtio_wl device: a context per client; shm goes through host allocations. */
function virtioWlHost(device: string): HostRoute {
  try {
    closeSync(openVirtWl(device));
  } catch (e) {
    throw new UsageError(`--virtio-wl: ${(e as Error).message}`);
  }
  return {
    name: device,
    connect: (handler) => connectVirtWl(device, handler),
    shadowShm: virtWlShadowShm,
    hiddenGlobals: VM_BOUNDARY_HIDDEN_GLOBALS,
  };
}

/** A VM guest: each client gets its own cross-domain context; shm is shadowed in host blobs. */
function virtioGpuHost(opts: Options): HostRoute {
  let device = opts.virtioGpuDevice;
  if (!device) {
    try {
      device = discoverVirtGpu();
    } catch (e) {
      throw new UsageError(`--virtio-gpu: ${(e as Error).message}`);
    }
  }
  try {
    openVirtGpu(device).close();
  } catch (e) {
    const which = opts.virtioGpuDevice
      ? `--virtio-gpu-device ${device}`
      : `--virtio-gpu (found ${device})`;
    throw new UsageError(`${which}: ${(e as Error).message}`);
  }
  return {
    name: device,
    connect: (handler) => connectCrossDomain(device, handler),
    shadowShm: crossDomainShadowShm,
    hiddenGlobals: VM_BOUNDARY_HIDDEN_GLOBALS,
  };
}

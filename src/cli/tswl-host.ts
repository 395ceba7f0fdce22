import { lstatSync, unlinkSync } from 'node:fs';
import { Command, InvalidArgumentError } from 'commander';
import { DEFAULT_LIMITS, type GuestLimits, parseGuestLimit } from '../host/budget.js';
import { errorMessage } from '../host/errors.js';
import { closeQuietly } from '../host/fds.js';
import { LocalLinkServer } from '../host/local-link.js';
import {
  findSecurityContextManager,
  openSecurityContext,
  type SecurityContextManager,
} from '../host/security-context.js';
import { VhostUserServer } from '../host/vhost-user.js';
import { type CompositorAccess, HostWayland } from '../host/wayland.js';
import { Log } from '../log/log.js';
import * as native from '../native/index.js';
import { parseAllowGlobal, privilegedGlobalsForHelp, withheldGlobals } from '../relay/policy.js';
import { Notifier } from './notify.js';
import { UsageError, displayPath } from './paths.js';
import { version } from './version.js';

interface Options {
  waylandSock?: string;
  listenLocal?: string;
  vhostUser?: string;
  label?: string;
  tag?: string;
  appIdPrefix?: string;
  allowGlobal?: string[];
  guestLimit?: GuestLimits;
  securityContext: boolean;
  verbose?: boolean;
}

export function buildProgram(): Command {
  return new Command('tswl-host')
    .description(
      "A virtio-gpu device with crosvm's cross-domain context type: connects each guest's Wayland channel to the host compositor.",
    )
    .option(
      '--wayland-sock <path>',
      'the host compositor socket each channel connects to (a bare name is taken in $XDG_RUNTIME_DIR)',
    )
    .option(
      '--listen-local <path>',
      'serve guests over the local link: a SOCK_SEQPACKET socket at PATH, one connection per guest',
    )
    .option(
      '--vhost-user <path>',
      'serve VMs as a vhost-user virtio-gpu back-end on the Unix socket PATH (QEMU >= 11.1 vhost-user-test-device-pci, crosvm --vhost-user type=gpu); one connection per VM',
    )
    .option(
      '--label <name>',
      "the VM's name: the default of --tag '[NAME] ' and --app-id-prefix 'NAME.', and the app_id of its security context",
    )
    .option(
      '--tag <prefix>',
      'prefix for every toplevel title of a guest (the guest cannot remove it)',
    )
    .option('--app-id-prefix <prefix>', 'prefix for every toplevel app_id of a guest')
    .option(
      '--allow-global <names>',
      'offer these privileged globals to guests too, comma-separated (repeatable; see below)',
      parseAllowGlobal,
    )
    .option(
      '--guest-limit <name=value>',
      `what one guest may make tswl-host hold (repeatable; K, M, G are powers of 1024); the defaults: ${Object.entries(
        DEFAULT_LIMITS,
      )
        .map(([k, v]) => `${k}=${withUnit(v)}`)
        .join(', ')}`,
      (value: string, previous: GuestLimits = DEFAULT_LIMITS) => {
        try {
          return parseGuestLimit(value, previous);
        } catch (e) {
          throw new InvalidArgumentError((e as Error).message);
        }
      },
    )
    .option(
      '--no-security-context',
      'do not put each VM in a security context of its own, even when the compositor offers them',
    )
    .option('-v, --verbose', 'log guests, contexts and resources as they come and go')
    .addHelpText(
      'after',
      `
Privileged globals are never offered to a guest unless allowed with --allow-global:
${privilegedGlobalsForHelp()}

Example, with no VM (guests then connect to the local link):
  tswl-host --wayland-sock $XDG_RUNTIME_DIR/wayland-0 --listen-local $XDG_RUNTIME_DIR/tswl-gpu
Example, for a VM (QEMU: -chardev socket,id=gpu,path=/tmp/gpu.sock
  -device vhost-user-test-device-pci,chardev=gpu,virtio-id=16,num_vqs=2,config_size=16):
  tswl-host --wayland-sock wayland-0 --vhost-user /tmp/gpu.sock

systemd: Type=notify is supported (READY=1 once it serves); the user unit tswl-host@.service
runs one instance per VM.`,
    )
    .version(version)
    .showHelpAfterError();
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  program.parse(argv);
  const opts = program.opts<Options>();
  const env = process.env;
  if (program.args.length > 0) {
    throw new UsageError(`unexpected argument "${program.args[0]}"`);
  }
  if (!opts.waylandSock) throw new UsageError('--wayland-sock is required');
  if (!opts.listenLocal && !opts.vhostUser) {
    throw new UsageError('--listen-local or --vhost-user is required');
  }
  const log = new Log({
    ringPath: null,
    ringSize: 0,
    verbose: opts.verbose ?? false,
    prefix: 'tswl-host',
  });
  const deviceLog = { verbose: opts.verbose ?? false, info: log.info, warn: log.warn };
  const waylandSock = displayPath(opts.waylandSock, env, '--wayland-sock');
  try {
    withheldGlobals(opts.allowGlobal ?? []);
  } catch (e) {
    throw new UsageError(`--allow-global: ${(e as Error).message}`);
  }
  const listenPath = opts.listenLocal ? displayPath(opts.listenLocal, env, '--listen-local') : null;
  const vhostPath = opts.vhostUser ? displayPath(opts.vhostUser, env, '--vhost-user') : null;
  for (const [p, flag] of [
    [listenPath, '--listen-local'],
    [vhostPath, '--vhost-user'],
  ] as const) {
    if (p === waylandSock)
      throw new UsageError(`${flag} and --wayland-sock are the same path ${p}`);
  }
  if (listenPath && listenPath === vhostPath) {
    throw new UsageError(`--listen-local and --vhost-user are the same path ${listenPath}`);
  }
  checkCompositor(waylandSock);
  if (listenPath) removeStaleSocket(listenPath);

  const label = opts.label ?? 'tswl-host';
  const manager = opts.securityContext ? securityContextManager(waylandSock, log) : null;
  const wayland = new HostWayland({
    socket: waylandSock,
    allowGlobals: opts.allowGlobal ?? [],
    tag: opts.tag ?? (opts.label ? `[${opts.label}] ` : ''),
    appIdPrefix: opts.appIdPrefix ?? (opts.label ? `${opts.label}.` : ''),
    access: manager ? (guest) => vmContext(waylandSock, manager, label, guest, log) : undefined,
  });
  const deviceOptions = { wayland, log: deviceLog, limits: opts.guestLimit ?? DEFAULT_LIMITS };
  const server = listenPath ? new LocalLinkServer(listenPath, deviceOptions) : null;
  try {
    server?.listen();
  } catch (e) {
    throw new UsageError(`cannot listen on ${listenPath}: ${systemError(e)}`);
  }
  if (listenPath) log.info(`serving guests on ${listenPath}, channels to ${waylandSock}`);
  const vhost = vhostPath ? new VhostUserServer(vhostPath, deviceOptions) : null;
  try {
    vhost?.listen();
  } catch (e) {
    server?.close();
    const code = (e as NodeJS.ErrnoException).code;
    throw new UsageError(
      code === 'EADDRINUSE'
        ? `${vhostPath} is already in use by another tswl-host`
        : `cannot listen on ${vhostPath}: ${systemError(e)}`,
    );
  }
  if (vhostPath) log.info(`serving VMs (vhost-user) on ${vhostPath}, channels to ${waylandSock}`);
  const notifier = Notifier.fromEnv(env, log.warn);
  notifier?.ready(`serving on ${[listenPath, vhostPath].filter((p) => p).join(' and ')}`);

  return new Promise<number>((resolveExit) => {
    let stopped = false;
    const stop = (code: number): void => {
      if (stopped) return;
      stopped = true;
      notifier?.stopping();
      server?.close();
      vhost?.close();
      for (const p of [listenPath, vhostPath, vhostPath && `${vhostPath}.lock`]) {
        if (!p) continue;
        try {
          unlinkSync(p);
        } catch {
          // already gone
        }
      }
      resolveExit(code);
    };
    process.once('SIGINT', () => stop(0));
    process.once('SIGTERM', () => stop(0));
    process.once('uncaughtException', (e) => {
      log.warn(`fatal error: ${e.stack ?? e.message}`);
      stop(70);
    });
  });
}

/** The compositor's security-context manager, or null (said once in the log). */
export function securityContextManager(socket: string, log: Log): SecurityContextManager | null {
  let manager: SecurityContextManager | null = null;
  try {
    manager = findSecurityContextManager(socket);
  } catch (e) {
    log.warn(`cannot ask the compositor for security contexts: ${errorMessage(e)}`);
  }
  if (manager) log.info('each VM gets a security context of its own (sandbox engine tswl-host)');
  else
    log.info(
      "the compositor offers no security contexts (wp_security_context_manager_v1): guests are limited by tswl-host's own filter",
    );
  return manager;
}

/**
 * A VM's way to the compositor: its own security context, else (said in the log) the socket. A
 * context lives in the compositor: when the compositor is restarted, the VM's next channel finds
 * nobody listening and gets a new context from the new compositor.
 */
export function vmContext(
  socket: string,
  manager: SecurityContextManager,
  label: string,
  guest: string,
  log: Log,
): CompositorAccess {
  const instance = `${label}-${process.pid}-${guest.replace(/\W+/g, '')}`;
  const plain: CompositorAccess = { connect: () => native.connectUnix(socket), close: () => {} };
  /** The VM's access, or null while there is no compositor to ask (the next channel asks). */
  const open = (m: SecurityContextManager | null): CompositorAccess | null => {
    if (!m) {
      log.warn(`${guest}: the compositor offers no security contexts; its channels use ${socket}`);
      return plain;
    }
    try {
      return openSecurityContext(socket, m, label, instance);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ECONNREFUSED' || code === 'ENOENT') return null;
      log.warn(`${guest}: no security context (${errorMessage(e)}); its channels use ${socket}`);
      return plain;
    }
  };
  let access = open(manager);
  return {
    connect() {
      if (access) {
        try {
          return access.connect();
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'ECONNREFUSED' || access === plain) throw e;
          log.warn(`${guest}: its security context is gone (was the compositor restarted?)`);
          access.close();
          access = null;
        }
      }
      // throws while there is no compositor: this channel fails, the next one asks again
      access = open(findSecurityContextManager(socket));
      if (!access) throw new Error(`cannot reach the compositor at ${socket}`);
      return access.connect();
    },
    close: () => access?.close(),
  };
}

function checkCompositor(path: string): void {
  let fd: number;
  try {
    fd = native.connectUnix(path);
  } catch (e) {
    throw new UsageError(`cannot reach the compositor at ${path}: ${systemError(e)}`);
  }
  closeQuietly(fd);
}

/** A socket file left by a tswl-host that died is removed; a live one is an error. */
function removeStaleSocket(path: string): void {
  let isSocket: boolean;
  try {
    isSocket = lstatSync(path).isSocket();
  } catch {
    return; // nothing there
  }
  if (!isSocket) throw new UsageError(`${path} exists and is not a socket`);
  let fd = -1;
  try {
    fd = native.connectSeqpacket(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ECONNREFUSED') {
      throw new UsageError(`${path} exists and cannot be checked: ${systemError(e)}`);
    }
    unlinkSync(path); // nobody listens: left over from a process that died
    return;
  }
  closeQuietly(fd);
  throw new UsageError(`${path} is already in use by another tswl-host`);
}

/** "No such file or directory (ENOENT)" from a native error ("connect PATH: No such file…"). */
function systemError(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  if (!err?.code) return errorMessage(e);
  const text = err.syscall ? err.message.replace(/^\w+( \S+)?: /, '') : err.message;
  return `${text} (${err.code})`;
}

/** 2147483648 as 2G, 16777216 as 16M: how --guest-limit takes them. */
function withUnit(n: number): string {
  for (const [unit, size] of [
    ['G', 1024 ** 3],
    ['M', 1024 ** 2],
    ['K', 1024],
  ] as const)
    if (n >= size && n % size === 0) return `${n / size}${unit}`;
  return String(n);
}

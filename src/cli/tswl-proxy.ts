import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { constants } from 'node:os';
import { Command } from 'commander';
import { allInterfaces } from '../generated/index.js';
import * as native from '../native/index.js';
import { ProtocolTables } from '../protocol/tables.js';
import { ProxyServer } from '../proxy.js';
import { defaultHooks } from '../relay/hooks.js';
import { closeQuietly } from '../wire/fd-queue.js';
import { UsageError, displayPath } from './paths.js';

interface Options {
  waylandDisplay: string;
  hostDisplay?: string;
}

const packageJson = JSON.parse(
  readFileSync(new URL('../../package.json', import.meta.url), 'utf8'),
) as {
  version: string;
};

function warn(message: string): void {
  process.stderr.write(`tswl-proxy: ${message}\n`);
}

export function buildProgram(): Command {
  return new Command('tswl-proxy')
    .description(
      'Relay Wayland clients to the host compositor. With a command, run it with WAYLAND_DISPLAY\n' +
        'pointing at the proxy and exit with its status.',
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
    .passThroughOptions()
    .version(packageJson.version)
    .showHelpAfterError();
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  program.parse(argv);
  const opts = program.opts<Options>();
  const command = program.args;

  const env = process.env;
  const listenPath = displayPath(opts.waylandDisplay, env, '--wayland-display');
  const hostDisplay = opts.hostDisplay ?? env.WAYLAND_DISPLAY ?? 'wayland-0';
  const hostPath = displayPath(hostDisplay, env, 'host display');
  if (listenPath === hostPath) {
    throw new UsageError(
      `the proxy would listen on the host compositor's own socket ${hostPath}; pick another --wayland-display`,
    );
  }
  checkHostReachable(hostPath);

  const server = new ProxyServer({
    listenPath,
    hostPath,
    tables: new ProtocolTables(allInterfaces),
    hooks: defaultHooks(),
    warn,
  });
  try {
    server.listen();
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'EADDRINUSE')
      throw new UsageError(`${listenPath} is already in use by another compositor or proxy`);
    throw new UsageError(`cannot listen on ${listenPath}: ${err.message}`);
  }

  return new Promise<number>((resolveExit) => {
    const stop = (code: number): void => {
      server.close();
      resolveExit(code);
    };
    process.once('SIGINT', () => stop(0));
    process.once('SIGTERM', () => stop(0));
    if (command.length === 0) return;
    const childEnv: NodeJS.ProcessEnv = {
      ...env,
      WAYLAND_DISPLAY: opts.waylandDisplay.includes('/') ? listenPath : opts.waylandDisplay,
    };
    delete childEnv.WAYLAND_SOCKET;
    const child = spawn(command[0], command.slice(1), { stdio: 'inherit', env: childEnv });
    child.once('error', (e) => {
      warn(`cannot run ${command[0]}: ${e.message}`);
      stop(127);
    });
    child.once('exit', (code, signal) => stop(code ?? 128 + (signal ? signalNumber(signal) : 0)));
  });
}

function checkHostReachable(hostPath: string): void {
  let fd: number;
  try {
    fd = native.connectUnix(hostPath);
  } catch (e) {
    throw new UsageError(
      `cannot reach the host compositor at ${hostPath}: ${(e as Error).message}`,
    );
  }
  closeQuietly(fd);
}

/** Exit status of a command killed by a signal, as a shell reports it. */
function signalNumber(signal: NodeJS.Signals): number {
  return constants.signals[signal] ?? 0;
}

// Builds the C load generators (bench/clients/*.c) against the system's libwayland-client into
// bench/build/, and runs them. The xdg-shell glue comes from wayland-scanner at build time.

import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { indent, start, stop } from './procs.js';

const run = promisify(execFile);

export const CLIENTS = [
  'roundtrip',
  'request-flood',
  'event-flood',
  'frames',
  'connect',
  'idle',
  'memcpy',
  'sockprobe',
  'relay',
] as const;
export type ClientName = (typeof CLIENTS)[number];

/** The xdg-shell XML: Debian's wayland-protocols, else this repository's copy. */
function xdgShellXml(root: string): string {
  const candidates = [
    '/usr/share/wayland-protocols/stable/xdg-shell/xdg-shell.xml',
    join(root, 'protocols/stable/xdg-shell/xdg-shell.xml'),
  ];
  const found = candidates.find((p) => existsSync(p));
  if (!found) throw new Error(`xdg-shell.xml not found (looked at ${candidates.join(', ')})`);
  return found;
}

async function tool(command: string, args: string[], what: string): Promise<string> {
  try {
    const { stdout } = await run(command, args, { maxBuffer: 1 << 20 });
    return stdout;
  } catch (e) {
    const err = e as NodeJS.ErrnoException & { stderr?: string };
    if (err.code === 'ENOENT') {
      throw new Error(
        `${command} is not installed (needed to ${what}); see scripts/install-deps.sh`,
      );
    }
    throw new Error(`${what} failed: ${command} ${args.join(' ')}\n${indent(err.stderr ?? '')}`);
  }
}

function mtime(path: string): number {
  return existsSync(path) ? statSync(path).mtimeMs : 0;
}

/** Compiles every load generator that is older than its sources; returns the binaries' folder. */
export async function buildClients(root: string): Promise<string> {
  const src = join(root, 'bench/clients');
  const out = join(root, 'bench/build');
  const gen = join(out, 'gen');
  const bin = join(out, 'bin');
  mkdirSync(gen, { recursive: true });
  mkdirSync(bin, { recursive: true });

  const xml = xdgShellXml(root);
  const header = join(gen, 'xdg-shell-client-protocol.h');
  const code = join(gen, 'xdg-shell-protocol.c');
  if (mtime(header) < mtime(xml) || mtime(code) < mtime(xml)) {
    await tool('wayland-scanner', ['client-header', xml, header], 'generate the xdg-shell header');
    await tool('wayland-scanner', ['private-code', xml, code], 'generate the xdg-shell code');
  }

  let libs = ['-lwayland-client'];
  try {
    libs = (await run('pkg-config', ['--cflags', '--libs', 'wayland-client'])).stdout
      .trim()
      .split(/\s+/);
  } catch {
    // no pkg-config: Debian's libwayland-dev puts everything on the default paths
  }
  const shared = [join(src, 'common.c'), join(src, 'common.h'), code, header];
  const newestShared = Math.max(...shared.map(mtime));
  for (const name of CLIENTS) {
    const exe = join(bin, name);
    const source = join(src, `${name}.c`);
    if (mtime(exe) > Math.max(newestShared, mtime(source))) continue;
    await tool(
      process.env.CC ?? 'cc',
      ['-O2', '-std=gnu11', '-Wall', '-Wextra', `-I${gen}`, `-I${src}`, '-o', exe, source].concat(
        [join(src, 'common.c'), code],
        libs,
      ),
      `compile bench/clients/${name}.c`,
    );
  }
  const unknown = readdirSync(src).filter(
    (f) => f.endsWith('.c') && f !== 'common.c' && !CLIENTS.includes(f.slice(0, -2) as ClientName),
  );
  if (unknown.length > 0) throw new Error(`bench/clients has unlisted sources: ${unknown.join()}`);
  return bin;
}

export type ClientResult = Record<string, number | string>;

/** Runs one load generator to completion and returns the JSON object it printed. */
export async function runClient(
  bin: string,
  name: ClientName,
  args: (string | number)[],
  env: NodeJS.ProcessEnv,
  timeoutMs: number,
): Promise<ClientResult> {
  const command = `${name} ${args.join(' ')}`;
  // Started like every other process, so that a failure or Ctrl-C stops it too.
  const proc = start(name, join(bin, name), args.map(String), env);
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), timeoutMs)));
  const code = await Promise.race([proc.exited, late]);
  clearTimeout(timer);
  if (code === null) {
    await stop(proc, 0);
    throw new Error(
      `load generator "${command}" did not finish within ${timeoutMs / 1000} s:\n${indent(proc.output())}`,
    );
  }
  if (code !== 0)
    throw new Error(`load generator "${command}" failed (${code}):\n${indent(proc.output())}`);
  const line =
    proc
      .output()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .pop() ?? '';
  try {
    return JSON.parse(line) as ClientResult;
  } catch {
    throw new Error(`load generator "${command}" printed no result:\n${indent(proc.output())}`);
  }
}

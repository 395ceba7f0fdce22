import { type ChildProcess, spawn } from 'node:child_process';
import { connect } from 'node:net';
import { readFileSync } from 'node:fs';

/** A child process whose output is collected, for reading logs and traces. */
export interface Running {
  readonly child: ChildProcess;
  output(): string;
  /** Resolves with the exit code (or 128 + signal) when the process ends. */
  readonly exited: Promise<number>;
}

const live = new Set<ChildProcess>();

export function start(command: string, args: string[], env: NodeJS.ProcessEnv): Running {
  const child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  live.add(child);
  let text = '';
  child.stdout!.on('data', (d: Buffer) => (text += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (text += d.toString()));
  const exited = new Promise<number>((resolve) => {
    child.once('exit', (code, signal) => {
      live.delete(child);
      resolve(code ?? 128 + (signal === 'SIGKILL' ? 9 : signal === 'SIGTERM' ? 15 : 0));
    });
  });
  return { child, output: () => text, exited };
}

/** Kills a process group (the process and whatever it started), then waits for it. */
export async function stop(run: Running, signal: NodeJS.Signals = 'SIGTERM'): Promise<number> {
  if (run.child.exitCode === null && run.child.signalCode === null) {
    try {
      process.kill(-run.child.pid!, signal);
    } catch {
      // already gone
    }
  }
  return run.exited;
}

/** Kills everything start() began that is still running; for afterEach/afterAll. */
export function killAll(): void {
  for (const child of live) {
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  live.clear();
}

export async function waitFor<T>(
  what: string,
  check: () => T | undefined | false | Promise<T | undefined | false>,
  timeoutMs = 10000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** True once something accepts connections on the Unix socket at path. */
export function accepts(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/**
 * True once a Unix socket at path is listening. The file appears at bind(), before listen(), so
 * a connection made as soon as it exists can be refused; this reads the kernel's table instead
 * of connecting, so the server sees no client that was only a probe.
 */
export function listening(path: string): boolean {
  // Num RefCount Protocol Flags Type St Inode Path; Flags 00010000 is __SO_ACCEPTCON
  return readFileSync('/proc/net/unix', 'utf8')
    .split('\n')
    .some((line) => {
      const f = line.trim().split(/\s+/);
      return f[3] === '00010000' && f.slice(7).join(' ') === path;
    });
}

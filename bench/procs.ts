// Processes the benchmark starts, and what /proc says about them. Every process is started in a
// process group of its own and registered, so that one call stops them all, whatever happened.

import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { connect } from 'node:net';
import { constants } from 'node:os';

export interface Proc {
  readonly name: string;
  readonly child: ChildProcess;
  readonly pid: number;
  /** Resolves with the exit code, or 128 + signal number. */
  readonly exited: Promise<number>;
  /** The last few KiB of stdout and stderr, for error messages. */
  output(): string;
  running(): boolean;
}

const OUTPUT_KEEP = 8192;
const live = new Set<Proc>();

export function start(
  name: string,
  command: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  stdin: 'ignore' | 'pipe' = 'ignore',
): Proc {
  const child = spawn(command, args, { env, stdio: [stdin, 'pipe', 'pipe'], detached: true });
  let text = '';
  const keep = (d: Buffer): void => {
    text = (text + d.toString()).slice(-OUTPUT_KEEP);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  let done = false;
  const exited = new Promise<number>((resolve) => {
    child.once('error', (e) => {
      keep(Buffer.from(`cannot run ${command}: ${e.message}\n`));
      done = true;
      resolve(127);
    });
    child.once('exit', (code, signal) => {
      done = true;
      resolve(code ?? 128 + (signal ? signalNumber(signal) : 0));
    });
  });
  const proc: Proc = {
    name,
    child,
    pid: child.pid ?? -1,
    exited,
    output: () => text,
    running: () => !done,
  };
  live.add(proc);
  void exited.then(() => live.delete(proc));
  return proc;
}

function signalNumber(signal: NodeJS.Signals): number {
  return constants.signals[signal] ?? 0;
}

function killGroup(proc: Proc, signal: NodeJS.Signals): void {
  if (proc.pid <= 0) return;
  try {
    process.kill(-proc.pid, signal);
  } catch {
    // the group is gone already
  }
}

/** SIGTERM to the process group, SIGKILL if it is still there after graceMs. */
export async function stop(proc: Proc, graceMs = 3000): Promise<number> {
  killGroup(proc, 'SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMs)));
  const code = await Promise.race([proc.exited, late.then(() => null)]);
  clearTimeout(timer);
  if (code !== null) {
    killGroup(proc, 'SIGKILL'); // whatever the leader left behind in its group
    return code;
  }
  killGroup(proc, 'SIGKILL');
  return proc.exited;
}

/** Stops everything still running, newest first (clients before proxies before weston). */
export async function stopAll(): Promise<void> {
  for (const proc of [...live].reverse()) await stop(proc, 1500);
}

/** Last resort for process.on('exit'): SIGKILL to every group, synchronously. */
export function killAllNow(): void {
  for (const proc of live) killGroup(proc, 'SIGKILL');
}

/** Runs `sockprobe PATH` for sockets that are not stream sockets; set by the orchestrator. */
let seqpacketProbe: ((path: string) => Promise<boolean>) | null = null;

export function setSeqpacketProbe(probe: (path: string) => Promise<boolean>): void {
  seqpacketProbe = probe;
}

/** True once something accepts connections on the Unix socket at path (stream or seqpacket). */
export function accepts(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', (e: NodeJS.ErrnoException) => {
      // EPROTOTYPE: a socket of another type (tswl-host's local link is SOCK_SEQPACKET).
      if (e.code === 'EPROTOTYPE' && seqpacketProbe) resolve(seqpacketProbe(path));
      else resolve(false);
    });
  });
}

/**
 * Waits until the socket accepts, polling every 2 ms; returns the milliseconds since `since`
 * (a performance.now() value). Fails early, with the process's output, if proc exits first.
 */
export async function waitForSocket(
  path: string,
  proc: Proc,
  since: number,
  timeoutMs = 15000,
): Promise<number> {
  for (;;) {
    if (await accepts(path)) return performance.now() - since;
    if (!proc.running()) {
      throw new Error(`${proc.name} exited before listening on ${path}:\n${indent(proc.output())}`);
    }
    if (performance.now() - since > timeoutMs) {
      throw new Error(
        `${proc.name} did not listen on ${path} within ${timeoutMs} ms:\n${indent(proc.output())}`,
      );
    }
    await new Promise((r) => setTimeout(r, 2));
  }
}

export function indent(text: string): string {
  const t = text.trimEnd();
  return t === '' ? '    (no output)' : t.replace(/^/gm, '    ');
}

/** The given processes and all their descendants, from the parent links in /proc. */
export function processTree(roots: number[]): number[] {
  const parent = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      parent.set(Number(entry), Number(fields[1]));
    } catch {
      // exited meanwhile
    }
  }
  const tree = new Set(roots.filter((pid) => parent.has(pid)));
  for (let grew = true; grew;) {
    grew = false;
    for (const [pid, ppid] of parent) {
      if (!tree.has(pid) && tree.has(ppid)) {
        tree.add(pid);
        grew = true;
      }
    }
  }
  return [...tree];
}

/** Memory and fds of one process: VmRSS and Pss in KiB, open fds. */
export interface ProcMemory {
  pid: number;
  name: string;
  rssKiB: number;
  pssKiB: number;
  fds: number;
}

export function processMemory(pid: number): ProcMemory | null {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const field = (text: string, key: string): number =>
      Number(new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(text)?.[1] ?? 0);
    const rollup = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
    return {
      pid,
      name: /^Name:\s+(.*)$/m.exec(status)?.[1] ?? '?',
      rssKiB: field(status, 'VmRSS'),
      pssKiB: field(rollup, 'Pss'),
      fds: readdirSync(`/proc/${pid}/fd`).length,
    };
  } catch {
    return null; // exited meanwhile, or a zombie
  }
}

/** One line per process of the tree: state, CPU time so far and where it sleeps (for hangs). */
export function describeProcesses(roots: number[]): string {
  const lines: string[] = [];
  for (const pid of processTree(roots)) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const cpu = (Number(f[11]) + Number(f[12])) / 100; // utime + stime, USER_HZ = 100
      let wchan = '';
      try {
        wchan = readFileSync(`/proc/${pid}/wchan`, 'utf8');
      } catch {
        // not readable here
      }
      lines.push(
        `pid ${pid} ${name}: state ${f[0]}, ${cpu.toFixed(2)} s CPU` +
          (wchan ? `, in ${wchan}` : ''),
      );
    } catch {
      // exited meanwhile
    }
  }
  return lines.join('\n');
}

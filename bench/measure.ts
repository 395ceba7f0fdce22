// Measuring one configuration: starting its processes (start-up time), memory and fds with idle
// clients, and the load generators.

import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { type ClientName, type ClientResult, runClient } from './clients.js';
import type { Config, Context } from './configs.js';
import {
  FRAME_DAMAGE,
  FRAME_MODES,
  FRAME_SIZES,
  type FrameMode,
  type FrameSize,
  frameKey,
} from './figures.js';
import {
  type Proc,
  type ProcMemory,
  describeProcesses,
  indent,
  processMemory,
  processTree,
  start,
  stop,
  waitForSocket,
} from './procs.js';

export interface Sizes {
  repeat: number;
  startups: number;
  roundtrips: number;
  requests: number;
  syncs: number;
  syncWindow: number;
  connects: number;
  frames: Record<FrameSize, Record<FrameMode, number>>;
  memcpyReps: number;
  clientTimeoutMs: number;
}

export interface Env {
  readonly root: string;
  readonly bin: string;
  readonly runtimeDir: string;
  readonly compositorPath: string;
  /** Environment of every process started (XDG_RUNTIME_DIR, WAYLAND_DISPLAY=weston). */
  readonly env: NodeJS.ProcessEnv;
  /** Profile the Node programs of each configuration into this folder (node --cpu-prof). */
  readonly cpuProfDir?: string;
  readonly sizes: Sizes;
}

/** Samples of each figure for one configuration. */
export type Samples = Record<string, number[]>;

function record(samples: Samples, key: string, value: number | string | undefined): void {
  if (typeof value !== 'number' || value < 0 || !Number.isFinite(value)) return; // -1: no proxy
  (samples[key] ??= []).push(value);
}

export interface Instance {
  /** The socket applications connect to. */
  readonly display: string;
  /** Where tswl-proxy reports its counters, when a step is one that copies. */
  readonly stats?: { readonly fifo: string; readonly file: string };
  readonly procs: Proc[];
  /** Milliseconds from spawning each step to its socket accepting, in order. */
  readonly stepMs: number[];
  stop(): Promise<void>;
  /** Throws, with its output, if a process of the configuration is gone. */
  checkAlive(): void;
}

let instances = 0;

/** The last two "bytes copied" counts tswl-proxy reported (the client's two marks). */
async function copiedBytesMarks(file: string): Promise<[number, number]> {
  const deadline = performance.now() + 5000;
  let seen: number[] = [];
  for (;;) {
    const text = existsSync(file) ? readFileSync(file, 'utf8') : '';
    seen = [...text.matchAll(/^bytes copied into host memory: (\d+)$/gm)].map((m) => Number(m[1]));
    // each frames run adds two reports; a run's second one may still be on its way
    if (seen.length >= 2 && seen.length % 2 === 0) break;
    if (performance.now() > deadline) throw new Error(`tswl-proxy reported no stats in ${file}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return [seen[seen.length - 2], seen[seen.length - 1]];
}

export async function startInstance(config: Config, e: Env): Promise<Instance> {
  const ctx: Context = {
    root: e.root,
    runtimeDir: e.runtimeDir,
    compositorPath: e.compositorPath,
    instance: instances++,
  };
  const procs: Proc[] = [];
  const stepMs: number[] = [];
  const steps = config.steps(ctx);
  const stopAll = async (): Promise<void> => {
    for (const p of [...procs].reverse()) await stop(p);
  };
  try {
    for (const step of steps) {
      // --cpu-prof is not allowed in NODE_OPTIONS: run the script through node instead.
      const [command, args] =
        step.node && e.cpuProfDir
          ? [process.execPath, ['--cpu-prof', `--cpu-prof-dir=${e.cpuProfDir}`, step.command]]
          : [step.command, []];
      const since = performance.now();
      const proc = start(step.name, command, [...args, ...step.args], e.env);
      procs.push(proc);
      stepMs.push(await waitForSocket(step.listens, proc, since));
    }
  } catch (err) {
    await stopAll();
    throw err;
  }
  return {
    display: steps.length > 0 ? steps[steps.length - 1].listens : e.compositorPath,
    stats: steps.find((s) => s.stats)?.stats,
    procs,
    stepMs,
    stop: stopAll,
    checkAlive() {
      for (const p of procs)
        if (!p.running())
          throw new Error(`${p.name} (${config.id}) exited during the run:\n${indent(p.output())}`);
    },
  };
}

export interface Usage {
  rssMB: number;
  pssMB: number;
  fds: number;
}

export interface MemorySnapshot extends Usage {
  /** Per step of the configuration (with its descendants), e.g. tswl-host and tswl-proxy. */
  steps: Record<string, Usage>;
  processes: ProcMemory[];
}

function usage(processes: ProcMemory[]): Usage {
  const sum = (f: (m: ProcMemory) => number): number => processes.reduce((a, m) => a + f(m), 0);
  return {
    rssMB: sum((m) => m.rssKiB) / 1024,
    pssMB: sum((m) => m.pssKiB) / 1024,
    fds: sum((m) => m.fds),
  };
}

function snapshot(inst: Instance): MemorySnapshot {
  const steps: Record<string, Usage> = {};
  const processes: ProcMemory[] = [];
  for (const p of inst.procs) {
    const mine = processTree([p.pid])
      .map(processMemory)
      .filter((m): m is ProcMemory => m !== null);
    steps[p.name] = usage(mine);
    processes.push(...mine);
  }
  return { ...usage(processes), steps, processes };
}

async function waitForReady(p: Proc, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!p.output().includes('ready')) {
    if (!p.running()) throw new Error(`an idle client exited early:\n${indent(p.output())}`);
    if (performance.now() > deadline)
      throw new Error(`an idle client was not ready within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const settle = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * How long memory is read after idle clients connected: tswl-proxy and tswl-host give memory back
 * once a second passed without traffic after a client came or went, which takes them up to two.
 */
const QUIET_MS = 3000;

/** RSS, PSS and fds of the configuration's processes (and descendants) with 1 and 20 clients. */
export async function measureMemory(
  inst: Instance,
  e: Env,
): Promise<{ one: MemorySnapshot; twenty: MemorySnapshot }> {
  const env = { ...e.env, WAYLAND_DISPLAY: inst.display };
  const idle: Proc[] = [];
  const add = async (n: number): Promise<void> => {
    for (let i = 0; i < n; i++) {
      const p = start('idle client', join(e.bin, 'idle'), [], env, 'pipe');
      idle.push(p);
      await waitForReady(p, 10000);
    }
  };
  try {
    await add(1);
    await settle(QUIET_MS);
    const one = snapshot(inst);
    await add(19);
    await settle(QUIET_MS);
    const twenty = snapshot(inst);
    return { one, twenty };
  } finally {
    for (const p of idle) p.child.stdin?.end();
    for (const p of idle) await stop(p, 2000);
  }
}

/** Runs every load generator once against the instance; adds to samples. */
export async function runLoads(inst: Instance, e: Env, samples: Samples): Promise<void> {
  const s = e.sizes;
  const env: NodeJS.ProcessEnv = { ...e.env, WAYLAND_DISPLAY: inst.display };
  if (inst.procs.length > 0) env.BENCH_PROXY_PIDS = inst.procs.map((p) => p.pid).join(',');
  if (inst.stats) env.BENCH_PROXY_CTL = inst.stats.fifo;
  const roots = inst.procs.map((p) => p.pid);
  const client = async (name: ClientName, args: (string | number)[]): Promise<ClientResult> => {
    let result: ClientResult;
    try {
      result = await runClient(e.bin, name, args, env, s.clientTimeoutMs);
    } catch (err) {
      inst.checkAlive();
      // Alive but the client failed or hung: say what the relaying processes were doing.
      if (roots.length > 0 && err instanceof Error)
        err.message += `\n  the configuration's processes:\n${indent(describeProcesses(roots))}`;
      throw err;
    }
    inst.checkAlive();
    return result;
  };

  const rt = await client('roundtrip', [s.roundtrips]);
  record(samples, 'roundtrip', rt.mean_us);
  record(samples, 'cpu_roundtrip', rt.proxy_cpu_us);

  const req = await client('request-flood', [s.requests]);
  record(samples, 'request_rate', (req.per_second as number) / 1e6);
  record(samples, 'cpu_request', req.proxy_cpu_ns);

  const ev = await client('event-flood', [s.syncs, s.syncWindow]);
  record(samples, 'event_rate', (ev.per_second as number) / 1e6);
  record(samples, 'cpu_event', ev.proxy_cpu_ns);

  const conn = await client('connect', [s.connects]);
  record(samples, 'connect', conn.mean_ms);

  for (const size of FRAME_SIZES)
    for (const mode of FRAME_MODES)
      for (const damage of FRAME_DAMAGE) {
        const count = s.frames[size.name][mode];
        const f = await client('frames', [size.width, size.height, count, mode, damage]);
        const key = frameKey(size.name, mode, damage);
        if (inst.stats) {
          // the client asked the proxy for its counters as it started and ended measuring
          const copied = await copiedBytesMarks(inst.stats.file);
          record(samples, `copied_${key}`, (copied[1] - copied[0]) / count / 1e6);
        }
        record(samples, key, f.commit_ms);
        record(samples, `cpu_${key}`, f.proxy_cpu_ms);
        record(samples, `draw_${key}`, f.draw_ms);
      }
}

/** Everything for one configuration in one repetition; start-up and memory on the first. */
export async function measureConfig(
  config: Config,
  e: Env,
  samples: Samples,
  first: boolean,
): Promise<MemorySnapshot[] | null> {
  const startups = first ? e.sizes.startups : 1; // direct has no processes: instant
  let inst: Instance | null = null;
  let memory: MemorySnapshot[] | null = null;
  try {
    for (let i = 0; i < startups; i++) {
      if (inst) await inst.stop();
      inst = await startInstance(config, e);
      if (inst.procs.length > 0) {
        record(samples, 'startup', inst.stepMs[inst.stepMs.length - 1]);
        record(
          samples,
          'startup_all',
          inst.stepMs.reduce((a, b) => a + b, 0),
        );
      }
    }
    const live = inst!;
    if (first && live.procs.length > 0) {
      const m = await measureMemory(live, e);
      record(samples, 'rss_1', m.one.rssMB);
      record(samples, 'rss_20', m.twenty.rssMB);
      // the process applications connect to (tswl-proxy in the guest; waypipe's server half)
      record(samples, 'rss_20_front', m.twenty.steps[live.procs[live.procs.length - 1].name].rssMB);
      record(samples, 'pss_20', m.twenty.pssMB);
      record(samples, 'fds_1', m.one.fds);
      record(samples, 'fds_20', m.twenty.fds);
      memory = [m.one, m.twenty];
      live.checkAlive();
    }
    await runLoads(live, e, samples);
    if (first && live.procs.length > 0) {
      // what the loads left behind (connects and disconnects among them)
      const m = await measureMemory(live, e);
      record(samples, 'rss_after', m.one.rssMB);
    }
    return memory;
  } finally {
    if (inst) await inst.stop();
  }
}

/** The single executable of tswl-proxy (npm run build:exe), measured when it was built. */
export interface Executable {
  path: string;
  sizeMB: number;
  /** Spawn until its socket accepts, relaying to weston (host mode), one per start-up. */
  startupMs: number[];
}

export async function measureExecutable(e: Env): Promise<Executable | null> {
  const path = join(e.root, 'dist/exe/tswl-proxy');
  if (!existsSync(path)) return null;
  const startupMs: number[] = [];
  for (let i = 0; i < e.sizes.startups; i++) {
    const socket = join(e.runtimeDir, `tswl-exe-${i}`);
    const since = performance.now();
    const proc = start(
      'tswl-proxy (single executable)',
      path,
      ['--wayland-display', socket],
      e.env,
    );
    try {
      startupMs.push(await waitForSocket(socket, proc, since));
    } finally {
      await stop(proc);
    }
  }
  return { path, sizeMB: statSync(path).size / 1e6, startupMs };
}

// `npm run bench [-- --quick] [--json PATH]`: starts a headless weston in a private
// XDG_RUNTIME_DIR, measures every configuration of configs.ts against it with the C load
// generators, prints a table with the ratio of each figure to the direct connection, and stops
// every process it started and removes its sockets, also on failure or Ctrl-C.

import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, release, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { Command } from 'commander';
import { buildClients, runClient } from './clients.js';
import { CONFIGS, type Config } from './configs.js';
import {
  type Column,
  FIGURES,
  type Reference,
  type Values,
  median,
  readOffs,
  renderTable,
} from './figures.js';
import {
  type Env,
  type MemorySnapshot,
  type Samples,
  type Sizes,
  measureConfig,
  measureExecutable,
} from './measure.js';
import {
  indent,
  killAllNow,
  setSeqpacketProbe,
  start,
  stop,
  stopAll,
  waitForSocket,
  type Proc,
} from './procs.js';

const QUICK: Sizes = {
  repeat: 1,
  startups: 3,
  roundtrips: 5000,
  requests: 1_000_000,
  syncs: 300_000,
  syncWindow: 256,
  connects: 50,
  frames: { '1080p': { vsync: 20, free: 150 }, '4K': { vsync: 12, free: 40 } },
  memcpyReps: 48,
  clientTimeoutMs: 30_000,
};

const FULL: Sizes = {
  repeat: 3,
  startups: 5,
  roundtrips: 20_000,
  requests: 3_000_000,
  syncs: 1_000_000,
  syncWindow: 256,
  connects: 200,
  frames: { '1080p': { vsync: 60, free: 600 }, '4K': { vsync: 60, free: 200 } },
  memcpyReps: 480,
  clientTimeoutMs: 60_000,
};

interface Options {
  quick?: boolean;
  json?: string;
  only?: string;
  cpuProf?: string;
}

const root = resolve(import.meta.dirname, '../../..');
const say = (text: string): void => void process.stdout.write(`${text}\n`);
const run = promisify(execFile);

async function version(command: string, args: string[]): Promise<string> {
  try {
    const { stdout, stderr } = await run(command, args, { timeout: 10000 });
    return (stdout || stderr).trim().split('\n')[0];
  } catch {
    return 'unknown';
  }
}

async function startWeston(runtimeDir: string, env: NodeJS.ProcessEnv): Promise<Proc> {
  const args = [
    '--backend=headless-backend.so',
    '--use-pixman',
    '--idle-time=0',
    '--no-config',
    '--socket=wayland-0',
  ];
  const since = performance.now();
  const weston = start('weston', 'weston', args, env);
  await waitForSocket(join(runtimeDir, 'wayland-0'), weston, since);
  return weston;
}

async function main(): Promise<void> {
  const program = new Command('npm run bench --')
    .description('Benchmark tswl-proxy against a direct connection and waypipe on headless weston.')
    .option('--quick', 'fewer iterations: every figure, in under two minutes')
    .option('--json <path>', 'also write the figures as JSON to PATH')
    .option(
      '--only <ids>',
      `comma-separated configurations (${CONFIGS.map((c) => c.id).join(', ')})`,
    )
    .option(
      '--cpu-prof <dir>',
      'profile the Node processes of each configuration (node --cpu-prof)',
    )
    .parse(process.argv);
  const opts = program.opts<Options>();
  const sizes = opts.quick ? QUICK : FULL;
  const began = performance.now();

  say(`tswl-proxy benchmark (${opts.quick ? 'quick' : 'full'})`);
  say('building the load generators in bench/build/ …');
  const bin = await buildClients(root);
  setSeqpacketProbe(async (path) => {
    try {
      await run(join(bin, 'sockprobe'), [path], { timeout: 5000 });
      return true;
    } catch {
      return false;
    }
  });

  const wanted = opts.only?.split(',').map((s) => s.trim());
  for (const id of wanted ?? [])
    if (!CONFIGS.some((c) => c.id === id)) throw new Error(`--only: unknown configuration ${id}`);
  const configs: Config[] = [];
  const skipped: { id: string; reason: string }[] = [];
  for (const c of CONFIGS) {
    if (wanted && c.id !== 'direct' && !wanted.includes(c.id)) continue;
    const reason = await c.unavailable(root);
    if (reason === null) configs.push(c);
    else if (c.optional) skipped.push({ id: c.id, reason });
    else throw new Error(`configuration ${c.id} cannot run: ${reason}`);
  }
  for (const c of configs) say(`  measuring ${c.id}: ${c.title}`);
  for (const s of skipped) say(`  not measuring ${s.id}: ${s.reason}`);

  const runtimeDir = mkdtempSync(join(tmpdir(), 'tswl-bench-'));
  const removeRuntimeDir = (): void => rmSync(runtimeDir, { recursive: true, force: true });
  process.on('exit', () => {
    killAllNow();
    removeRuntimeDir();
  });
  const env: NodeJS.ProcessEnv = { ...process.env, XDG_RUNTIME_DIR: runtimeDir };
  env.WAYLAND_DISPLAY = 'wayland-0';
  for (const v of ['WAYLAND_DEBUG', 'WAYLAND_DEBUG_PROXY', 'WAYLAND_SOCKET', 'DISPLAY'])
    delete env[v];
  delete env.NODE_OPTIONS;

  const samples = new Map<string, Samples>(configs.map((c) => [c.id, {}]));
  const memory = new Map<string, MemorySnapshot[]>();
  let weston: Proc | null = null;
  try {
    weston = await startWeston(runtimeDir, env);
    const e: Env = {
      root,
      bin,
      runtimeDir,
      compositorPath: join(runtimeDir, 'wayland-0'),
      env,
      cpuProfDir: opts.cpuProf ? resolve(opts.cpuProf) : undefined,
      sizes,
    };
    const copy = await runClient(bin, 'memcpy', [1920, 1080, sizes.memcpyReps], env, 60000);
    const copy4k = await runClient(bin, 'memcpy', [3840, 2160, sizes.memcpyReps / 4], env, 60000);
    const reference: Reference = {
      memcpyColdMs: copy.cold_ms as number,
      memcpyHotMs: copy.hot_ms as number,
      memcpy4KColdMs: copy4k.cold_ms as number,
    };

    for (let rep = 0; rep < sizes.repeat; rep++) {
      for (const c of configs) {
        const t = performance.now();
        const m = await measureConfig(c, e, samples.get(c.id)!, rep === 0).catch((err: Error) => {
          if (weston && !weston.running())
            err.message += `\nweston exited:\n${indent(weston.output())}`;
          throw err;
        });
        if (m) memory.set(c.id, m);
        say(
          `  [${rep + 1}/${sizes.repeat}] ${c.id}: ${((performance.now() - t) / 1000).toFixed(1)} s`,
        );
      }
    }

    const executable = await measureExecutable(e);

    const columns: Column[] = configs.map((c) => {
      const values: Values = {};
      for (const [key, list] of Object.entries(samples.get(c.id)!)) values[key] = median(list);
      for (const f of FIGURES) values[f.key] ??= null;
      return { id: c.id, title: c.title, values };
    });
    const seconds = (performance.now() - began) / 1000;

    say('');
    say(renderTable(columns));
    say('');
    say(
      `reference: one memcpy of a 1920×1080 XRGB8888 frame (8.3 MB): ` +
        `${reference.memcpyColdMs.toFixed(3)} ms out of cache, ` +
        `${reference.memcpyHotMs.toFixed(3)} ms cache-hot; of a 3840×2160 one (33 MB): ` +
        `${reference.memcpy4KColdMs.toFixed(3)} ms out of cache`,
    );
    say(
      executable
        ? `single executable ${executable.path}: ${executable.sizeMB.toFixed(1)} MB, start-up ` +
            `(spawn → socket accepts, host mode) ${median(executable.startupMs).toFixed(1)} ms`
        : 'single executable: not built (npm run build:exe)',
    );
    for (const s of skipped) say(`not measured: ${s.id}: ${s.reason}`);
    say('');
    say('targets (read off, not asserted):');
    for (const line of readOffs(columns, reference)) say(`  ${line}`);
    say('');
    say(`done in ${seconds.toFixed(0)} s (${sizes.repeat} repetition(s), medians)`);

    if (opts.json) {
      const machine = {
        cpus: cpus().length,
        cpu: cpus()[0]?.model ?? 'unknown',
        kernel: release(),
        node: process.version,
        weston: await version('weston', ['--version']),
        waypipe: await version('waypipe', ['--version']),
        libwayland: await version('pkg-config', ['--modversion', 'wayland-client']),
      };
      const json = {
        date: new Date().toISOString(),
        mode: opts.quick ? 'quick' : 'full',
        seconds,
        machine,
        sizes,
        configs: configs.map((c) => ({ id: c.id, title: c.title })),
        skipped,
        figures: FIGURES.map((f) => ({ key: f.key, label: f.label, unit: f.unit })),
        reference,
        executable,
        values: Object.fromEntries(columns.map((c) => [c.id, c.values])),
        samples: Object.fromEntries(samples),
        memory: Object.fromEntries(memory),
      };
      writeFileSync(opts.json, `${JSON.stringify(json, null, 2)}\n`);
      say(`figures written to ${opts.json}`);
    }
  } finally {
    await stopAll();
    if (weston) await stop(weston);
    removeRuntimeDir();
  }
}

let stopping = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (stopping) return;
    stopping = true;
    process.stderr.write(`bench: ${signal}: stopping everything it started\n`);
    void stopAll().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
  });
}

main().then(
  () => process.exit(0),
  async (e: unknown) => {
    process.stderr.write(`bench: FAILED: ${e instanceof Error ? e.message : String(e)}\n`);
    await stopAll();
    process.exit(1);
  },
);

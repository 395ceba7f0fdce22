// The bench's promise when something goes wrong: a relay that dies mid-run fails the bench with
// exit status 1 and a message, Ctrl-C stops it with 130, and in both cases every process it
// started is gone and its runtime directory removed.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { type Running, killAll, start, waitFor } from './support/processes.js';
import { repoRoot } from './support/weston.js';

let tmp: string;

beforeAll(() => {
  execFileSync('npx', ['tsc', '-p', 'bench/tsconfig.json'], { cwd: repoRoot, stdio: 'inherit' });
  tmp = mkdtempSync(join(tmpdir(), 'tswl-bench-test-'));
}, 120_000);

afterAll(() => {
  killAll();
  rmSync(tmp, { recursive: true, force: true });
});

/** The bench's runtime directory: the one folder it made in its TMPDIR. */
function runtimeDir(): string | undefined {
  const dirs = readdirSync(tmp).filter((d) => d.startsWith('tswl-bench-'));
  return dirs.length === 1 ? join(tmp, dirs[0]) : undefined;
}

/** Processes whose environment names `dir` as XDG_RUNTIME_DIR: all the bench started. */
function processesOf(dir: string): { pid: number; cmdline: string }[] {
  const found: { pid: number; cmdline: string }[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const environ = readFileSync(`/proc/${entry}/environ`, 'utf8').split('\0');
      if (!environ.includes(`XDG_RUNTIME_DIR=${dir}`)) continue;
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8').replaceAll('\0', ' ');
      found.push({ pid: Number(entry), cmdline });
    } catch {
      // gone meanwhile, or not ours to read
    }
  }
  return found;
}

function startBench(): Running {
  const env = { ...process.env, TMPDIR: tmp };
  return start(
    process.execPath,
    [join(repoRoot, 'bench/build/js/run.js'), '--quick', '--only', 'tswl-proxy'],
    env,
  );
}

test('a relay that exits mid-run fails the bench (status 1, a message), and it cleans up', async () => {
  const bench = startBench();
  let dir: string | undefined;
  const proxy = await waitFor(
    "the bench's tswl-proxy",
    () => {
      dir ??= runtimeDir();
      return dir ? processesOf(dir).find((p) => p.cmdline.includes('tswl-proxy')) : undefined;
    },
    120_000,
  );
  expect(processesOf(dir!).some((p) => p.cmdline.startsWith('weston'))).toBe(true);
  process.kill(proxy.pid, 'SIGKILL');
  expect(await bench.exited).toBe(1);
  expect(bench.output()).toMatch(/bench: FAILED: .+/);
  await waitFor('the processes it started to be gone', () => processesOf(dir!).length === 0, 5000);
  expect(existsSync(dir!)).toBe(false);
}, 180_000);

test('Ctrl-C stops the bench with status 130, and it cleans up', async () => {
  const bench = startBench();
  let dir: string | undefined;
  await waitFor(
    "the bench's weston",
    () => {
      dir ??= runtimeDir();
      return dir && processesOf(dir).some((p) => p.cmdline.startsWith('weston'));
    },
    120_000,
  );
  bench.child.kill('SIGINT');
  expect(await bench.exited).toBe(130);
  expect(bench.output()).toMatch(/bench: SIGINT: stopping everything it started/);
  await waitFor('the processes it started to be gone', () => processesOf(dir!).length === 0, 5000);
  expect(existsSync(dir!)).toBe(false);
}, 180_000);

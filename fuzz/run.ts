// npm run fuzz -- --seconds N [--runs N] [--target NAME]... [--corpus-only] [--seed S --path P]
//                 [--json FILE]
//
// Runs every fuzz target (or those named), one after another, each in its own process for N
// seconds (or until it made --runs executions): first its corpus as recorded, then fast-check's
// inputs (structured from the protocol tables, and mutations of the corpus). Each execution is
// checked for exceptions that escape the code under test, broken invariants, fds left open and
// memory left mapped; a target that stops making progress for HANG_SECONDS is killed and
// reported as a hang. Prints executions per target; exits 1 on any fault, with the input that
// caused it (and how to replay it) in fuzz/build/crashes/.
// FUZZ_DEBUG=1 prints the warnings of the code under test: how deep the inputs get.
import { fork } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import * as native from '../src/native/index.js';
import type { FuzzTarget } from './harness.js';
import { inputToJson, loadCorpus } from './harness.js';
import { targets } from './targets/index.js';

const HANG_SECONDS = 30;
const here = import.meta.dirname; // fuzz/build when bundled
const corpusRoot = join(here, '..', 'corpus');
const crashDir = join(here, 'crashes');

interface Result {
  target: string;
  executions: number;
  seconds: number;
  /** RSS of the target's process at the start and end of its run, MiB. */
  rssStart: number;
  rssEnd: number;
  fault: string | null;
}

interface Args {
  seconds: number;
  runs: number;
  targets: string[];
  corpusOnly: boolean;
  seed: number | undefined;
  path: string | undefined;
  json: string | undefined;
  child: string | undefined;
  status: string | undefined;
}

function parseArgs(argv: string[]): Args {
  const a: Args = {
    seconds: 10,
    runs: 2 ** 31 - 1,
    targets: [],
    corpusOnly: false,
    seed: undefined,
    path: undefined,
    json: undefined,
    child: undefined,
    status: undefined,
  };
  for (let i = 0; i < argv.length; i++) {
    const value = () => {
      if (i + 1 >= argv.length) throw new Error(`${argv[i]} needs a value`);
      return argv[++i];
    };
    switch (argv[i]) {
      case '--seconds':
        a.seconds = Number(value());
        break;
      case '--runs':
        a.runs = Number(value());
        break;
      case '--target':
        a.targets.push(...value().split(','));
        break;
      case '--corpus-only':
        a.corpusOnly = true;
        break;
      case '--seed':
        a.seed = Number(value());
        break;
      case '--path':
        a.path = value();
        break;
      case '--json':
        a.json = value();
        break;
      case '--child':
        a.child = value();
        break;
      case '--status':
        a.status = value();
        break;
      case '--list':
        for (const t of targets) console.log(`${t.name.padEnd(22)} ${t.description}`);
        process.exit(0);
      default:
        throw new Error(`unknown argument ${argv[i]}`);
    }
  }
  if (!(a.seconds > 0)) throw new Error('--seconds takes a positive number');
  if (!(a.runs > 0)) throw new Error('--runs takes a positive number');
  for (const t of a.targets) {
    if (!targets.some((x) => x.name === t)) throw new Error(`no fuzz target named ${t}`);
  }
  return a;
}

const mib = () => Math.round((process.memoryUsage().rss / 1048576) * 10) / 10;

/** In the target's own process: runs it and writes the result to the status file. */
async function runChild(args: Args): Promise<void> {
  const target = targets.find((t) => t.name === args.child)! as FuzzTarget<unknown>;
  const corpus = loadCorpus(corpusRoot, target.corpusDir);
  const status = args.status!;
  const result: Result = {
    target: target.name,
    executions: 0,
    seconds: 0,
    rssStart: mib(),
    rssEnd: 0,
    fault: null,
  };
  const started = Date.now();
  let lastStatus = started;
  const report = () => {
    result.seconds = Math.round((Date.now() - started) / 100) / 10;
    result.rssEnd = mib();
    writeFileSync(status, JSON.stringify(result));
  };
  // the time limit abandons an execution that is waiting: it is let finish before the last count
  let inFlight: Promise<void> | null = null;
  const checked = (input: unknown): void | Promise<void> => {
    result.executions++;
    if ((result.executions & 255) === 0 && Date.now() - lastStatus > 1000) {
      lastStatus = Date.now();
      report();
    }
    const before = native.openFdCount();
    const mappings = native.mappingCount();
    const after = () => {
      const now = native.openFdCount();
      if (now !== before) throw new Error(`fd leak: ${before} fds open before, ${now} after`);
      // what the code under test mapped is unmapped when its object dies, not when the GC runs
      const left = native.mappingCount() - mappings;
      if (left !== 0) throw new Error(`${left} mapping(s) left in place after the execution`);
    };
    const r = target.run(input);
    if (r instanceof Promise) return (inFlight = r.then(after));
    after();
  };
  target.setup?.();
  const seeds = target.seeds?.(corpus) ?? [];
  const baseline = native.openFdCount();
  const params: fc.Parameters<[unknown]> = {
    // the corpus (examples) counts in numRuns and runs first
    numRuns: args.corpusOnly ? Math.max(1, seeds.length) : Math.max(seeds.length, args.runs),
    interruptAfterTimeLimit: args.seconds * 1000,
    markInterruptAsFailure: false,
    examples: seeds.map((s) => [s]),
    seed: args.seed,
    path: args.path,
    endOnFailure: false,
  };
  const arb = target.arbitrary(corpus);
  const details = target.async
    ? await fc.check(
        fc.asyncProperty(arb, async (x) => void (await checked(x))),
        params,
      )
    : fc.check(
        fc.property(arb, (x) => void checked(x)),
        params,
      );
  await (inFlight as Promise<void> | null)?.catch(() => {});
  if (details.failed) {
    mkdirSync(crashDir, { recursive: true });
    const file = join(crashDir, `${target.name}-${details.seed}.json`);
    writeFileSync(file, inputToJson(details.counterexample?.[0]) + '\n');
    const error = details.errorInstance as Error | undefined;
    result.fault =
      `${error?.stack ?? String(error)}\n  input: ${file}\n` +
      `  replay: npm run fuzz -- --target ${target.name} --seed ${details.seed} --path ${details.counterexamplePath}`;
  } else if (native.openFdCount() !== baseline) {
    result.fault = `fd leak over the whole run: ${baseline} fds open before, ${native.openFdCount()} after`;
  }
  report();
  process.exit(0);
}

/** Runs one target in a child process, watching its progress; a silent child is a hang. */
function runTarget(args: Args, name: string, dir: string): Promise<Result> {
  const status = join(dir, `${name}.json`);
  const passed = ['--seconds', String(args.seconds), '--runs', String(args.runs)];
  passed.push('--child', name, '--status', status);
  if (args.corpusOnly) passed.push('--corpus-only');
  if (args.seed !== undefined) passed.push('--seed', String(args.seed));
  if (args.path !== undefined) passed.push('--path', args.path);
  const child = fork(fileURLToPath(import.meta.url), passed, { stdio: 'inherit' });
  const read = (): Result | null => {
    try {
      return JSON.parse(readFileSync(status, 'utf8')) as Result;
    } catch {
      return null;
    }
  };
  return new Promise((resolve) => {
    let last = -1;
    let lastChange = Date.now();
    const watch = setInterval(() => {
      const r = read();
      if (r && r.executions !== last) {
        last = r.executions;
        lastChange = Date.now();
      }
      // the start (corpus load, first input) and the shrinking of a failure may take a while
      const limit = (last < 0 ? args.seconds : 0) * 1000 + HANG_SECONDS * 1000;
      if (Date.now() - lastChange > limit + (r?.fault ? 600_000 : 0)) {
        clearInterval(watch);
        child.kill('SIGKILL');
      }
    }, 1000);
    child.once('exit', (code, signal) => {
      clearInterval(watch);
      const r = read() ?? {
        target: name,
        executions: 0,
        seconds: 0,
        rssStart: 0,
        rssEnd: 0,
        fault: null,
      };
      if (signal === 'SIGKILL' && !r.fault) {
        r.fault = `hang: no progress for ${HANG_SECONDS} s after ${r.executions} executions (replay with --seed)`;
      } else if (code !== 0 && !r.fault) {
        r.fault = `the target's process died (${signal ?? `exit ${code}`}) after ${r.executions} executions`;
      }
      resolve(r);
    });
  });
}

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  if (args.child) {
    await runChild(args);
    return 0;
  }
  const names = args.targets.length > 0 ? args.targets : targets.map((t) => t.name);
  const dir = join(tmpdir(), `tswl-fuzz-${process.pid}`);
  mkdirSync(dir, { recursive: true });
  const results: Result[] = [];
  try {
    for (const name of names) {
      const r = await runTarget(args, name, dir);
      results.push(r);
      const rate = r.seconds > 0 ? Math.round(r.executions / r.seconds) : 0;
      console.log(
        `${name.padEnd(22)} ${String(r.executions).padStart(10)} executions in ${r.seconds} s ` +
          `(${rate}/s), RSS ${r.rssStart} -> ${r.rssEnd} MiB: ${r.fault ? 'FAULT' : 'ok'}`,
      );
      if (r.fault) console.log(`  ${r.fault.replaceAll('\n', '\n  ')}`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  if (args.json) writeFileSync(args.json, JSON.stringify(results, null, 1) + '\n');
  const faults = results.filter((r) => r.fault).length;
  console.log(`${results.length - faults} passed, ${faults} failed`);
  return faults > 0 ? 1 : 0;
}

process.exitCode = await main();

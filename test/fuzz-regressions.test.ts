// Every fault the fuzzer found stays found: each input in fuzz/regressions/ runs through its
// target again, with the target's checks (no exception escapes the code under test, no
// malformed output, state released) and no fd left open. `npm run fuzz` covers the rest.
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { inputFromJson, loadCorpus } from '../fuzz/harness.js';
import { targets } from '../fuzz/targets/index.js';
import * as native from '../src/native/index.js';

const fuzzDir = join(import.meta.dirname, '..', 'fuzz');
const files = readdirSync(join(fuzzDir, 'regressions')).filter((f) => f.endsWith('.json'));

describe('inputs the fuzzer found faults with', () => {
  test('there are some, each named after a target', () => {
    expect(files.length).toBeGreaterThan(0);
    for (const f of files) expect(targets.some((t) => f.startsWith(`${t.name}-`))).toBe(true);
  });

  for (const file of files) {
    test(file, async () => {
      const target = targets.find((t) => file.startsWith(`${t.name}-`))!;
      target.arbitrary(loadCorpus(join(fuzzDir, 'corpus'), target.corpusDir));
      target.setup?.();
      const input = inputFromJson(readFileSync(join(fuzzDir, 'regressions', file), 'utf8'));
      const before = native.openFdCount();
      await target.run(input as never);
      expect(native.openFdCount()).toBe(before);
    });
  }
});

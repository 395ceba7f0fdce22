// Runs a program's bundle with the V8 code cache `npm run build` made beside it: parsing the half
// megabyte of code and protocol tables is otherwise a fifth of start-up. A cache made by another
// Node is rejected by V8, and the bundle is then simply parsed.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Script } from 'node:vm';

export function compile(file, source, cachedData) {
  return new Script(`(function (exports, require, module, __filename, __dirname) {${source}\n})`, {
    filename: file,
    cachedData,
  });
}

export function run(name) {
  const file = fileURLToPath(new URL(`../dist/bundle/${name}.cjs`, import.meta.url));
  let cache;
  try {
    cache = readFileSync(file.replace(/\.cjs$/, '.cache'));
  } catch {
    // not built with a cache: parse it
  }
  const module = { exports: {} };
  compile(file, readFileSync(file, 'latin1'), cache).runInThisContext()(
    module.exports,
    createRequire(file),
    module,
    file,
    dirname(file),
  );
}

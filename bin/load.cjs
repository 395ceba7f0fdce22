// Runs a program's bundle with the V8 code cache `npm run build` made beside it: parsing the half
// megabyte of code and protocol tables is otherwise a fifth of start-up. A cache made by another
// Node is rejected by V8, and the bundle is then simply parsed. CommonJS, like the programs in
// bin/ (bin/package.json): Node's ES module loader would add a tenth to start-up.
'use strict';
const { readFileSync } = require('node:fs');
const { createRequire } = require('node:module');
const { dirname, join } = require('node:path');
const { Script } = require('node:vm');

function compile(file, source, cachedData) {
  return new Script(`(function (exports, require, module, __filename, __dirname) {${source}\n})`, {
    filename: file,
    cachedData,
  });
}

function run(name) {
  const file = join(__dirname, '..', 'dist', 'bundle', `${name}.cjs`);
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

module.exports = { compile, run };

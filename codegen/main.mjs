#!/usr/bin/env node
// @ts-check
// tswl-proxy protocol code generator.
//
//   node codegen/main.mjs PROTOCOLS_DIR OUT_DIR
//
// Reads every *.xml below PROTOCOLS_DIR and writes OUT_DIR/<file stem>.ts for each, plus
// OUT_DIR/index.ts. Files are rewritten only when their text changes; generated files that no
// longer have an XML are removed. Problems are reported as `file:line: message`, exit status 1.

import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { join, relative, sep } from 'node:path';
import { pathToFileURL } from 'node:url';
import { emitIndex, emitProtocol, exportedNames, HEADER } from './emit.mjs';
import { checkReferences, CodegenError, parseProtocol } from './parse.mjs';

/** @typedef {import('./parse.mjs').Protocol} Protocol */

/** Names the generated modules declare or import besides the exported ones. */
const MODULE_NAMES = new Set([
  'ArgKind',
  'ArgReader',
  'EMPTY',
  'HandlerResult',
  'InterfaceMeta',
  'MessageWriter',
  'ProtocolMeta',
  'WireError',
  'allInterfaces',
  'interfacesByName',
  'protocols',
]);

/**
 * Every .xml file below `dir`, as paths relative to it with `/` separators, sorted, with a
 * top-level wayland.xml first.
 * @param {string} dir
 * @returns {string[]}
 */
function findXml(dir) {
  /** @type {string[]} */
  const out = [];
  /** @param {string} sub */
  const walk = (sub) => {
    for (const entry of readdirSync(join(dir, sub), { withFileTypes: true })) {
      const rel = sub === '' ? entry.name : `${sub}/${entry.name}`;
      if (entry.isDirectory()) walk(rel);
      else if (entry.name.endsWith('.xml')) out.push(rel);
    }
  };
  walk('');
  const rank = (/** @type {string} */ f) => (f === 'wayland.xml' ? 0 : 1);
  return out.sort((a, b) => rank(a) - rank(b) || (a < b ? -1 : a > b ? 1 : 0));
}

/**
 * Runs the generator. Returns the problems found (nothing is written when there are any).
 * @param {string} inDir
 * @param {string} outDir
 * @returns {{ errors: string[], written: string[], protocols: Protocol[] }}
 */
export function generate(inDir, outDir) {
  /** @type {CodegenError[]} */
  const errors = [];
  /** @type {Protocol[]} */
  const protocols = [];
  const files = findXml(inDir);
  if (files.length === 0) {
    return { errors: [`${inDir}: no protocol XML files found`], written: [], protocols };
  }
  for (const file of files) {
    const path = join(inDir, ...file.split('/'));
    const { protocol, errors: found } = parseProtocol(readFileSync(path, 'utf8'), path, file);
    errors.push(...found);
    if (protocol !== null) protocols.push(protocol);
  }
  errors.push(...checkReferences(protocols));

  // Module names come from file stems and every exported name must be unique, since the index
  // re-exports all modules.
  /** @type {Map<string, Protocol>} */
  const stems = new Map();
  /** @type {Map<string, Protocol>} */
  const exported = new Map();
  for (const p of protocols) {
    const other = stems.get(p.stem);
    if (other !== undefined || p.stem === 'index' || !/^[A-Za-z0-9_.-]+$/.test(p.stem)) {
      const why =
        other !== undefined
          ? `has the same file name as ${other.path}`
          : 'is not a usable module name';
      errors.push(new CodegenError(p.path, 0, `file name '${p.stem}' ${why}`));
    }
    stems.set(p.stem, p);
    for (const name of new Set(exportedNames(p))) {
      if (MODULE_NAMES.has(name)) {
        errors.push(new CodegenError(p.path, 0, `generated name ${name} clashes with an import`));
      }
      const owner = exported.get(name);
      if (owner !== undefined) {
        const where = owner === p ? 'twice in this file' : `also by ${owner.path}`;
        errors.push(new CodegenError(p.path, 0, `generated name ${name} is produced ${where}`));
      }
      exported.set(name, p);
    }
  }
  if (errors.length > 0) return { errors: errors.map((e) => e.message), written: [], protocols };

  /** @type {Map<string, string>} */
  const outputs = new Map();
  for (const p of protocols) {
    try {
      outputs.set(`${p.stem}.ts`, emitProtocol(p));
    } catch (e) {
      errors.push(new CodegenError(p.path, 0, e instanceof Error ? e.message : String(e)));
    }
  }
  if (errors.length > 0) return { errors: errors.map((e) => e.message), written: [], protocols };
  mkdirSync(outDir, { recursive: true });
  outputs.set(
    'index.ts',
    emitIndex(protocols, (p) => `./${p.stem}.js`),
  );

  /** @type {string[]} */
  const written = [];
  for (const [name, text] of outputs) {
    const path = join(outDir, name);
    if (existsSync(path) && readFileSync(path, 'utf8') === text) continue;
    writeFileSync(path, text);
    written.push(path);
  }
  for (const entry of readdirSync(outDir)) {
    if (!entry.endsWith('.ts') || outputs.has(entry)) continue;
    const path = join(outDir, entry);
    if (readFileSync(path, 'utf8').startsWith(HEADER)) unlinkSync(path);
  }
  return { errors: [], written, protocols };
}

function main() {
  const [inDir, outDir, ...rest] = process.argv.slice(2);
  if (!inDir || !outDir || rest.length > 0) {
    console.error('usage: node codegen/main.mjs PROTOCOLS_DIR OUT_DIR');
    process.exit(2);
  }
  let result;
  try {
    result = generate(inDir, outDir);
  } catch (e) {
    console.error(`codegen: ${e instanceof Error ? e.message : String(e)}`);
    process.exit(1);
  }
  for (const error of result.errors) console.error(`codegen: ${error}`);
  if (result.errors.length > 0) {
    console.error(`codegen: ${result.errors.length} problem(s), nothing written`);
    process.exit(1);
  }
  const count = result.protocols.reduce((n, p) => n + p.interfaces.length, 0);
  const where = relative(process.cwd(), outDir).split(sep).join('/') || '.';
  console.log(
    `codegen: ${result.protocols.length} protocols, ${count} interfaces -> ${where} ` +
      `(${result.written.length} file(s) updated)`,
  );
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) main();

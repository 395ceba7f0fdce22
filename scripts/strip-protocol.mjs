#!/usr/bin/env node
// @ts-check
// Copies Wayland protocol XML files, dropping every <description> element (prose) and keeping
// everything else byte for byte: the <copyright> element, comments, summary attributes.
//
//   node scripts/strip-protocol.mjs SRC_ROOT DEST_ROOT REL_PATH…
//
// Each REL_PATH is read from SRC_ROOT/REL_PATH and written to DEST_ROOT/REL_PATH. The result is
// checked to be well-formed XML that still holds its copyright and no description.

import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { XMLValidator } from 'fast-xml-parser';

/**
 * Removes <description …>…</description> and <description …/> elements. An element that sits on
 * lines of its own takes those lines with it; one embedded in a line leaves the rest of the line.
 * Comments and CDATA sections are skipped over, so a description inside them is left alone.
 * @param {string} xml
 * @returns {string}
 */
export function stripDescriptions(xml) {
  let out = '';
  let i = 0;
  for (;;) {
    const next = xml.slice(i).search(/<description[\s/>]|<!--|<!\[CDATA\[/);
    if (next < 0) break;
    const at = i + next;
    if (xml.startsWith('<!--', at) || xml.startsWith('<![CDATA[', at)) {
      const close = xml.startsWith('<!--', at) ? '-->' : ']]>';
      const end = xml.indexOf(close, at);
      if (end < 0) throw new Error(`unterminated ${close === '-->' ? 'comment' : 'CDATA'}`);
      out += xml.slice(i, end + close.length);
      i = end + close.length;
      continue;
    }
    const tagEnd = xml.indexOf('>', at);
    if (tagEnd < 0) throw new Error('unterminated <description> tag');
    let end;
    if (xml[tagEnd - 1] === '/') {
      end = tagEnd + 1;
    } else {
      const closeAt = xml.indexOf('</description>', tagEnd);
      if (closeAt < 0) throw new Error('<description> without </description>');
      end = closeAt + '</description>'.length;
    }
    // Whole-line removal when only whitespace surrounds the element on its lines.
    const lineStart = xml.lastIndexOf('\n', at - 1) + 1;
    const before = xml.slice(lineStart, at);
    const after = /^[ \t]*(\r?\n|$)/.exec(xml.slice(end));
    if (/^[ \t]*$/.test(before) && after) {
      out += xml.slice(i, lineStart);
      i = end + after[0].length;
    } else {
      out += xml.slice(i, at);
      i = end;
    }
  }
  return out + xml.slice(i);
}

function main() {
  const [srcRoot, destRoot, ...files] = process.argv.slice(2);
  if (!srcRoot || !destRoot || files.length === 0) {
    console.error('usage: strip-protocol.mjs SRC_ROOT DEST_ROOT REL_PATH…');
    process.exit(2);
  }
  let failed = false;
  for (const rel of files) {
    const src = join(srcRoot, rel);
    try {
      const xml = readFileSync(src, 'utf8');
      const stripped = stripDescriptions(xml);
      const valid = XMLValidator.validate(stripped);
      if (valid !== true) {
        throw new Error(
          `not well-formed after stripping: line ${valid.err.line}: ${valid.err.msg}`,
        );
      }
      if (/<copyright[\s>]/.test(xml) && !/<copyright[\s>]/.test(stripped)) {
        throw new Error('copyright element lost');
      }
      const dest = join(destRoot, rel);
      mkdirSync(dirname(dest), { recursive: true });
      writeFileSync(dest, stripped);
    } catch (e) {
      console.error(`${src}: ${e instanceof Error ? e.message : String(e)}`);
      failed = true;
    }
  }
  if (failed) process.exit(1);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) main();

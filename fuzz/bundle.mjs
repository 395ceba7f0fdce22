// Bundles the fuzz runner and the corpus recorder into fuzz/build/ (TypeScript in, one ES module
// out, as scripts/bundle.mjs does for the programs); the addon is found two folders up.
import { build } from 'esbuild';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = fileURLToPath(new URL('.', import.meta.url));
await build({
  entryPoints: { run: join(here, 'run.ts'), record: join(here, 'record.ts') },
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'esm',
  outdir: join(here, 'build'),
  outExtension: { '.js': '.mjs' },
  logLevel: 'warning',
  sourcemap: 'inline',
  banner: {
    js: "import { createRequire as bundleCreateRequire } from 'node:module'; const require = bundleCreateRequire(import.meta.url);",
  },
});

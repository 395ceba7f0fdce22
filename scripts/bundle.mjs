// Bundles each program into one CommonJS file in dist/bundle/ (part of `npm run build`), with
// V8's code cache for it: bin/ runs these through bin/load.cjs, since Node starts one file much
// faster than the ~100 modules tsc emits, and one whose parse is cached faster still. The addon
// stays a file beside the bundle (build/Release), found as src/native/addon.ts says.
import { build } from 'esbuild';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const root = fileURLToPath(new URL('..', import.meta.url));

export const entryPoints = {
  'tswl-proxy': join(root, 'src/cli/tswl-proxy-main.ts'),
  'tswl-host': join(root, 'src/cli/tswl-host-main.ts'),
};

/** Options both the bundles and the single executables use. */
export const common = {
  entryPoints,
  bundle: true,
  platform: 'node',
  target: 'node20',
  logLevel: 'warning',
  // without comments and spaces, and ASCII only, V8 keeps the source as a one-byte string of
  // about half the size and parses it faster; names stay, so stack traces still read
  minifyWhitespace: true,
  minifySyntax: true,
  charset: 'ascii',
};

export async function bundle() {
  const outdir = join(root, 'dist/bundle');
  await build({
    ...common,
    format: 'cjs',
    outdir,
    outExtension: { '.js': '.cjs' },
    // the sources find package.json and the addon relative to their own URL
    define: { 'import.meta.url': 'bundleUrl' },
    banner: { js: "const bundleUrl=require('node:url').pathToFileURL(__filename).href;" },
  });
  const { compile } = await import(join(root, 'bin/load.cjs'));
  for (const name of Object.keys(entryPoints)) {
    const file = join(outdir, `${name}.cjs`);
    writeFileSync(
      join(outdir, `${name}.cache`),
      compile(file, readFileSync(file, 'latin1')).createCachedData(),
    );
  }
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) await bundle();

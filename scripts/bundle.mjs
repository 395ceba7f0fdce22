// Bundles each program into one ES module in dist/bundle/ (part of `npm run build`): bin/ runs
// these, since Node starts one file much faster than the ~100 modules tsc emits. The addon
// stays a file beside the bundle (build/Release), found as src/native/addon.ts says.
import { build } from 'esbuild';
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
  await build({
    ...common,
    format: 'esm',
    outdir: join(root, 'dist/bundle'),
    outExtension: { '.js': '.mjs' },
    // commander is CommonJS and requires Node's modules; an ES module has no `require` of its own.
    banner: {
      js: "import { createRequire as bundleCreateRequire } from 'node:module'; const require = bundleCreateRequire(import.meta.url);",
    },
  });
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) await bundle();

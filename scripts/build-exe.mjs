// npm run build:exe: one self-contained executable per program in dist/exe/, made with Node's
// single executable applications: a copy of this Node binary (stripped) with a blob injected
// (postject) that holds the program bundled as CommonJS, V8's code cache for it, and the addon
// as an asset, which src/native/addon-sea.ts loads at start. The executables need glibc and
// libstdc++ (as this Node does), no Node and no node_modules.
import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { build } from 'esbuild';
import { common, entryPoints, root } from './bundle.mjs';

const out = join(root, 'dist/exe');
const postject = join(root, 'node_modules/postject/dist/cli.js');
const addonFile = join(root, 'build/Release/tswl_native.node');
// Node's marker for "a blob was injected" (doc/api/single-executable-applications.md).
const SEA_FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';

function fail(message) {
  console.error(`build:exe: ${message}`);
  process.exit(1);
}

const [major, minor] = process.versions.node.split('.').map(Number);
if (major === 20 && minor < 12) fail('needs Node >= 20.12 (assets in single executables)');
if (!existsSync(addonFile)) fail(`${addonFile} is missing: run \`npm ci\` (it builds the addon)`);
if (!existsSync(join(root, 'src/generated/index.ts')))
  fail('src/generated/ is missing: run `npm run codegen`');
const { version } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));

// Inside the executables the addon comes from the asset, and the version is built in.
const seaModules = {
  name: 'sea-modules',
  setup(b) {
    const replaced = new Map([
      [join(root, 'src/native/addon.js'), { path: join(root, 'src/native/addon-sea.ts') }],
      [join(root, 'src/cli/version.js'), { path: 'version', namespace: 'sea' }],
    ]);
    b.onResolve({ filter: /\/(addon|version)\.js$/ }, (args) =>
      replaced.get(join(args.resolveDir, args.path)),
    );
    b.onLoad({ filter: /^version$/, namespace: 'sea' }, () => ({
      contents: `export const version = ${JSON.stringify(version)};`,
    }));
  },
};

rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
await build({
  ...common,
  format: 'cjs',
  outdir: out,
  outExtension: { '.js': '.cjs' },
  plugins: [seaModules],
});

for (const name of Object.keys(entryPoints)) {
  const exe = join(out, name);
  const blob = join(out, `${name}.blob`);
  const config = join(out, `${name}.sea.json`);
  const seaConfig = {
    main: join(out, `${name}.cjs`),
    output: blob,
    disableExperimentalSEAWarning: true,
    useCodeCache: true,
    assets: { 'tswl_native.node': addonFile },
  };
  writeFileSync(config, JSON.stringify(seaConfig, null, 2));
  execFileSync(process.execPath, ['--experimental-sea-config', config], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  copyFileSync(process.execPath, exe);
  chmodSync(exe, 0o755);
  strip(exe);
  // postject's ELF parser warns about each note of Node's binary: its output shows on failure only.
  const inject = [postject, exe, 'NODE_SEA_BLOB', blob, '--sentinel-fuse', SEA_FUSE];
  execFileSync(process.execPath, inject, { stdio: ['ignore', 'pipe', 'pipe'] });
  for (const f of [blob, config, seaConfig.main]) rmSync(f);
  const said = execFileSync(exe, ['--version'], { encoding: 'utf8' }).trim();
  if (said !== version) fail(`${exe} --version says "${said}", not ${version}`);
  console.log(`build:exe: ${exe} (${(statSync(exe).size / 1e6).toFixed(1)} MB)`);
}

/** Node's symbols and debug information are a tenth of its size and no use to a guest. */
function strip(file) {
  try {
    execFileSync('strip', [file], { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (e) {
    if (e.code !== 'ENOENT') throw e;
    console.warn(
      'build:exe: strip (binutils) is not installed; the executables keep their symbols',
    );
  }
}

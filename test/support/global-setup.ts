import { execFileSync } from 'node:child_process';
import { join } from 'node:path';

/** Tests run bin/tswl-proxy as users do, so its bundle in dist/ must match the sources under test. */
export default function setup(): void {
  const root = join(import.meta.dirname, '../..');
  const run = (script: string, ...args: string[]) =>
    execFileSync(process.execPath, [join(root, script), ...args], { cwd: root, stdio: 'inherit' });
  run('node_modules/typescript/bin/tsc', '-p', 'tsconfig.build.json');
  run('scripts/bundle.mjs');
}

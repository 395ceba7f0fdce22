import { execFileSync } from 'node:child_process';
import { join } from 'node:path';

/** Tests run bin/tswl-proxy as users do, so dist/ must match the sources under test. */
export default function setup(): void {
  const root = join(import.meta.dirname, '../..');
  execFileSync(
    process.execPath,
    [join(root, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json'],
    {
      cwd: root,
      stdio: 'inherit',
    },
  );
}

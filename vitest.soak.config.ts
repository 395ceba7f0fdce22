import { configDefaults, defineConfig } from 'vitest/config';

// npm run test:soak: soak and fault runs (compositor restarts, connect/disconnect cycles, VMs
// killed mid-frame, guests that never poll). Short by default (CI); TSWL_SOAK_* make them long.
export default defineConfig({
  test: {
    include: ['test/soak/**/*.test.ts'],
    exclude: [...configDefaults.exclude],
    globalSetup: ['test/support/global-setup.ts'],
    testTimeout: 3_600_000,
    hookTimeout: 60000,
    fileParallelism: false,
  },
});

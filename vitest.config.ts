import { configDefaults, defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // test/vm needs the VM harness and root: npm run test:vm (vitest.vm.config.ts); test/dist
    // needs root and fresh machines: npm run test:dist (vitest.dist.config.ts)
    exclude: [...configDefaults.exclude, 'test/vm/**', 'test/dist/**'],
    globalSetup: ['test/support/global-setup.ts'],
    testTimeout: 60000,
    hookTimeout: 60000,
    // Tests start compositors, Xvfb and clients: on a 2-core machine they run one file at a time.
    fileParallelism: false,
  },
});

import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/support/global-setup.ts'],
    testTimeout: 60000,
    hookTimeout: 60000,
    // Tests start compositors, Xvfb and clients: on a 2-core machine they run one file at a time.
    fileParallelism: false,
  },
});

import { configDefaults, defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // need the VM harness (or fresh machines) and root: npm run test:vm, test:sway, test:x11,
    // test:dist
    exclude: [
      ...configDefaults.exclude,
      'test/vm/**',
      'test/sway/**',
      'test/x11/**',
      'test/dist/**',
      'test/soak/**',
    ],
    globalSetup: ['test/support/global-setup.ts'],
    testTimeout: 60000,
    hookTimeout: 60000,
    // Tests start compositors, Xvfb and clients: on a 2-core machine they run one file at a time.
    fileParallelism: false,
  },
});

import { configDefaults, defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // test/vm and test/sway need the VM harness and root (npm run test:vm, npm run test:sway);
    // test/x11 is npm run test:x11
    exclude: [...configDefaults.exclude, 'test/vm/**', 'test/sway/**', 'test/x11/**'],
    globalSetup: ['test/support/global-setup.ts'],
    testTimeout: 60000,
    hookTimeout: 60000,
    // Tests start compositors, Xvfb and clients: on a 2-core machine they run one file at a time.
    fileParallelism: false,
  },
});

import { defineConfig } from 'vitest/config';

// npm run test:vm: tests that need the VM harness of scripts/vm/build.sh (root, .vm/). They boot
// guests under TCG, so their timeouts are long; `npm test` leaves them out.
export default defineConfig({
  test: {
    include: ['test/vm/**/*.test.ts'],
    globalSetup: ['test/support/global-setup.ts'],
    testTimeout: 240000,
    hookTimeout: 60000,
    fileParallelism: false,
  },
});

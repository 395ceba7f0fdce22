import { defineConfig } from 'vitest/config';

// npm run test:sway: real clients on sway 1.12, which runs in the VM harness's sid chroot
// (scripts/vm/build.sh installs it there), so these tests need root and that chroot; `npm test`
// leaves them out.
export default defineConfig({
  test: {
    include: ['test/sway/**/*.test.ts'],
    globalSetup: ['test/support/global-setup.ts'],
    testTimeout: 120000,
    hookTimeout: 60000,
    fileParallelism: false,
  },
});

import { defineConfig } from 'vitest/config';

// npm run test:x11: X11 applications through Xwayland, compared with weston's own Xwayland. They
// start several desktops and X servers each, so `npm test` leaves them out.
export default defineConfig({
  test: {
    include: ['test/x11/**/*.test.ts'],
    globalSetup: ['test/support/global-setup.ts'],
    testTimeout: 120000,
    hookTimeout: 60000,
    fileParallelism: false,
  },
});

import { defineConfig } from 'vitest/config';

// npm run test:dist: how the programs are distributed, tried on fresh Debian bookworm machines
// (scripts/dist/build-images.sh; root, systemd-nspawn): the single executables of
// `npm run build:exe` without Node, the README's install steps, and tswl-host@.service under a
// booted systemd with its sandbox. `npm test` leaves them out.
export default defineConfig({
  test: {
    include: ['test/dist/**/*.test.ts'],
    globalSetup: ['test/support/global-setup.ts'],
    testTimeout: 600000,
    hookTimeout: 120000,
    fileParallelism: false,
  },
});

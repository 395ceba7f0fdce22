import { createRequire } from 'node:module';

/**
 * The addon node-gyp built. The path is relative to this file as src/native/addon.ts, as
 * dist/native/addon.js and as the bundles in dist/bundle/: all two folders below the package.
 * The single executables carry the addon inside and load it with addon-sea.ts instead.
 */
export const addon: unknown = createRequire(import.meta.url)(
  '../../build/Release/tswl_native.node',
);

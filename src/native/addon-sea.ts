/**
 * The addon inside a single executable (scripts/build-exe.mjs puts this module in place of
 * addon.ts). The executable carries it as the asset "tswl_native.node", but dlopen needs a file:
 * it is written to an unnamed file (O_TMPFILE: no name, freed when closed, nothing left behind
 * by a crash) in the first directory that takes it and lets it be mapped executable, and loaded
 * through /proc/self/fd.
 */
import { closeSync, constants, openSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { getAsset } from 'node:sea';

// Linux's O_TMPFILE (it includes O_DIRECTORY), the same on x86-64 and arm64; Node has no name for it.
const O_TMPFILE = 0o20200000;

function load(): unknown {
  const bytes = new Uint8Array(getAsset('tswl_native.node'));
  const dirs = new Set([process.env.XDG_RUNTIME_DIR, tmpdir(), '/dev/shm']);
  const failures: string[] = [];
  for (const dir of dirs) {
    if (!dir) continue;
    let fd = -1;
    try {
      fd = openSync(dir, O_TMPFILE | constants.O_RDWR, 0o700);
      for (let done = 0; done < bytes.length;) done += writeSync(fd, bytes, done);
      const module = { exports: {} };
      process.dlopen(module, `/proc/self/fd/${fd}`);
      return module.exports;
    } catch (e) {
      failures.push(`${dir}: ${(e as Error).message}`);
    } finally {
      if (fd >= 0) closeSync(fd);
    }
  }
  throw new Error(`cannot load the native addon from a temporary file (${failures.join('; ')})`);
}

export const addon: unknown = load();

import { isAbsolute, resolve } from 'node:path';

export class UsageError extends Error {
  override name = 'UsageError';
}

/** A Wayland display as libwayland reads WAYLAND_DISPLAY: a name in $XDG_RUNTIME_DIR, or a path. */
export function displayPath(display: string, env: NodeJS.ProcessEnv, what: string): string {
  if (display.includes('/')) return isAbsolute(display) ? display : resolve(display);
  const runtimeDir = env.XDG_RUNTIME_DIR;
  if (!runtimeDir) {
    throw new UsageError(
      `XDG_RUNTIME_DIR is not set, so the ${what} "${display}" has no directory; set it or give an absolute path`,
    );
  }
  return resolve(runtimeDir, display);
}

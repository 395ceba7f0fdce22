import { readFileSync } from 'node:fs';

/** The package's version, for --version (the single executables have it built in instead). */
export const version: string = (
  JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
    version: string;
  }
).version;

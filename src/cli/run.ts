import { UsageError } from './paths.js';

/** Runs a CLI entry point: one-line errors for what the user can fix, exit with its status. */
export function run(prefix: string, main: (argv: string[]) => Promise<number>): void {
  main(process.argv).then(
    (code) => process.exit(code),
    (e: unknown) => {
      if (e instanceof UsageError) {
        process.stderr.write(`${prefix}: ${e.message}\n`);
        process.exit(1);
      }
      throw e;
    },
  );
}

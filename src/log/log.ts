import { appendFileSync } from 'node:fs';
import { LogRing } from './ring.js';

export interface LogOptions {
  /** Where the ring goes on `dump-log` and on a fatal error; null keeps trace lines on stderr. */
  readonly ringPath: string | null;
  readonly ringSize: number;
  /** Informational lines (-v); warnings are always shown. */
  readonly verbose: boolean;
  readonly prefix: string;
  readonly stderr?: (text: string) => void;
}

/**
 * Where the proxy's words go: trace and info lines into the ring when there is one, else
 * to stderr; warnings to stderr always (and into the ring, to keep their context).
 */
export class Log {
  readonly ring: LogRing | null;
  private readonly stderr: (text: string) => void;

  constructor(readonly options: LogOptions) {
    this.ring = options.ringPath ? new LogRing(options.ringSize) : null;
    this.stderr = options.stderr ?? ((text) => process.stderr.write(text));
  }

  trace = (line: string): void => {
    if (this.ring) this.ring.write(line);
    else this.stderr(`${line}\n`);
  };

  info = (message: string): void => {
    if (this.options.verbose) this.trace(`${this.options.prefix}: ${message}`);
  };

  warn = (message: string): void => {
    this.ring?.write(`${this.options.prefix}: ${message}`);
    this.stderr(`${this.options.prefix}: ${message}\n`);
  };

  /** Appends the ring to the ring file under a header line, then empties the ring. */
  dumpRing(reason: string): void {
    if (!this.ring || !this.options.ringPath) return;
    const header = `=== ${this.options.prefix} log, ${reason}, ${new Date().toISOString()} ===\n`;
    appendFileSync(
      this.options.ringPath,
      Buffer.concat([Buffer.from(header), this.ring.contents()]),
    );
    this.ring.clear();
  }

  /** Appends a report (such as `stats`) to the ring file, or writes it to stderr without one. */
  report(title: string, body: string): void {
    const text = `=== ${this.options.prefix} ${title}, ${new Date().toISOString()} ===\n${body}`;
    if (this.options.ringPath) appendFileSync(this.options.ringPath, text);
    else this.stderr(text);
  }
}

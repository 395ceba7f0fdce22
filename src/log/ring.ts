/**
 * The newest `size` bytes of log text, kept in memory so that tracing a long session
 * costs no disk until someone asks for the log (`dump-log`) or the proxy dies.
 */
export class LogRing {
  private readonly buf: Buffer;
  private pos = 0;
  private wrapped = false;

  constructor(readonly size: number) {
    if (!Number.isInteger(size) || size < 1024)
      throw new Error(`log ring size ${size} is too small (at least 1024 bytes)`);
    this.buf = Buffer.alloc(size);
  }

  write(line: string): void {
    const bytes = Buffer.from(`${line}\n`);
    let data = bytes;
    if (data.length >= this.size) {
      data = data.subarray(data.length - this.size);
      this.wrapped = true;
    }
    const first = Math.min(data.length, this.size - this.pos);
    data.copy(this.buf, this.pos, 0, first);
    if (first < data.length) {
      data.copy(this.buf, 0, first);
      this.pos = data.length - first;
      this.wrapped = true;
    } else {
      this.pos += first;
      if (this.pos === this.size) {
        this.pos = 0;
        this.wrapped = true;
      }
    }
  }

  /** Whole lines, oldest first (a line cut by the wrap-around is left out). */
  contents(): Buffer {
    if (!this.wrapped) return Buffer.from(this.buf.subarray(0, this.pos));
    const all = Buffer.concat([this.buf.subarray(this.pos), this.buf.subarray(0, this.pos)]);
    const firstLineEnd = all.indexOf(10);
    return firstLineEnd < 0 ? Buffer.alloc(0) : all.subarray(firstLineEnd + 1);
  }

  clear(): void {
    this.pos = 0;
    this.wrapped = false;
  }
}

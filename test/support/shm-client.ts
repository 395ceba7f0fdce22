// A small hand-written Wayland client that draws into wl_shm buffers, for tests that need to
// know exactly which pixels changed and what each commit damaged. Never blocks: the proxy may
// be running in the same process.
import * as native from '../../src/native/index.js';
import { MessageWriter } from '../../src/wire/writer.js';

export interface Event {
  id: number;
  opcode: number;
  body: Buffer;
}

const DISPLAY = 1;

export class ShmClient {
  readonly fd: number;
  readonly events: Event[] = [];
  eof = false;
  private readonly w = new MessageWriter(4096);
  private nextId = 2;
  private received = Buffer.alloc(0);
  private readonly rbuf = Buffer.alloc(65536);
  private readonly rout = new Int32Array(native.RECV_OUT_LENGTH);
  /** fds that came with events (keymaps…), closed by close(). */
  private readonly fds: number[] = [];
  globals = new Map<string, number>();

  constructor(path: string) {
    this.fd = native.connectUnix(path);
  }

  newId(): number {
    return this.nextId++;
  }

  message(id: number, opcode: number, fill: (w: MessageWriter) => void = () => {}): this {
    this.w.begin(id, opcode);
    fill(this.w);
    this.w.end();
    return this;
  }

  send(fds: number[] = []): void {
    let sent = 0;
    let first = true;
    while (sent < this.w.len) {
      const n = native.sendmsg(this.fd, this.w.buf, sent, this.w.len, fds, first ? fds.length : 0);
      if (n < 0) throw new Error('shm client: socket full');
      sent += n;
      first = false;
    }
    this.w.len = 0;
  }

  /** Sends what is queued plus a wl_display.sync, and reads until its done (or an error). */
  async roundtrip(timeoutMs = 10000): Promise<Event[]> {
    const cb = this.newId();
    this.message(DISPLAY, 0, (w) => w.newId(cb)).send();
    const from = this.events.length;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      this.poll();
      const got = this.events.slice(from);
      if (got.some((e) => (e.id === cb && e.opcode === 0) || (e.id === DISPLAY && e.opcode === 0)))
        return got;
      if (this.eof) return got;
      if (Date.now() > deadline) throw new Error('shm client: roundtrip timed out');
      await new Promise((r) => setTimeout(r, 2));
    }
  }

  /** Binds the globals it needs: wl_compositor, wl_shm. */
  async setup(): Promise<{ compositor: number; shm: number }> {
    const registry = this.newId();
    this.message(DISPLAY, 1, (w) => w.newId(registry));
    for (const e of await this.roundtrip()) {
      if (e.id !== registry || e.opcode !== 0) continue;
      const name = e.body.readUInt32LE(0);
      const len = e.body.readUInt32LE(4);
      this.globals.set(e.body.toString('utf8', 8, 8 + len - 1), name);
    }
    const bind = (iface: string, version: number): number => {
      const id = this.newId();
      this.message(registry, 0, (w) => {
        w.uint(this.globals.get(iface)!);
        w.string(iface);
        w.uint(version);
        w.newId(id);
      });
      return id;
    };
    const compositor = bind('wl_compositor', 4);
    const shm = bind('wl_shm', 1);
    await this.roundtrip();
    return { compositor, shm };
  }

  createPool(shm: number, fd: number, size: number): number {
    const id = this.newId();
    this.message(shm, 0, (w) => {
      w.newId(id);
      w.int(size);
    });
    this.send([fd]);
    return id;
  }

  createBuffer(
    pool: number,
    offset: number,
    width: number,
    height: number,
    stride: number,
    format = 1,
  ): number {
    const id = this.newId();
    this.message(pool, 0, (w) => {
      w.newId(id);
      w.int(offset);
      w.int(width);
      w.int(height);
      w.int(stride);
      w.uint(format);
    });
    return id;
  }

  createSurface(compositor: number): number {
    const id = this.newId();
    this.message(compositor, 0, (w) => w.newId(id));
    return id;
  }

  attach(surface: number, buffer: number): this {
    return this.message(surface, 1, (w) => {
      w.object(buffer);
      w.int(0);
      w.int(0);
    });
  }

  damage(
    surface: number,
    x: number,
    y: number,
    width: number,
    height: number,
    buffer = true,
  ): this {
    return this.message(surface, buffer ? 9 : 2, (w) => {
      w.int(x);
      w.int(y);
      w.int(width);
      w.int(height);
    });
  }

  commit(surface: number): this {
    return this.message(surface, 6);
  }

  /** wl_display.error events received so far, decoded. */
  errors(): { object: number; code: number; message: string }[] {
    return this.events
      .filter((e) => e.id === DISPLAY && e.opcode === 0)
      .map((e) => ({
        object: e.body.readUInt32LE(0),
        code: e.body.readUInt32LE(4),
        message: e.body.toString('utf8', 12, 12 + e.body.readUInt32LE(8) - 1),
      }));
  }

  close(): void {
    native.close(this.fd);
    for (const fd of this.fds.splice(0)) native.close(fd);
  }

  /** Reads whatever has arrived. */
  poll(): void {
    while (!this.eof) {
      const n = native.recvmsg(this.fd, this.rbuf, 0, this.rbuf.length, this.rout);
      for (let i = 0; i < this.rout[0]; i++) this.fds.push(this.rout[2 + i]);
      if (n < 0) break;
      if (n === 0) {
        this.eof = true;
        break;
      }
      this.received = Buffer.concat([this.received, this.rbuf.subarray(0, n)]);
    }
    let pos = 0;
    while (this.received.length - pos >= 8) {
      const size = this.received.readUInt32LE(pos + 4) >>> 16;
      if (size < 8 || this.received.length - pos < size) break;
      this.events.push({
        id: this.received.readUInt32LE(pos),
        opcode: this.received.readUInt32LE(pos + 4) & 0xffff,
        body: Buffer.from(this.received.subarray(pos + 8, pos + size)),
      });
      pos += size;
    }
    this.received = this.received.subarray(pos);
  }
}

import { ArgKind } from '../protocol/meta.js';
import type { Message } from '../protocol/tables.js';
import type { IdSpace } from '../relay/objects.js';

export type Side = 'client' | 'host';

export interface TraceOptions {
  /** Trace the proxy's connections to clients. */
  readonly client: boolean;
  /** Trace the proxy's connections to the host compositor. */
  readonly host: boolean;
  /** `interface.message` names left out of the trace (--log-suppress). */
  readonly hidden: ReadonlySet<string>;
  readonly write: (line: string) => void;
}

/**
 * Writes one line per message in libwayland's WAYLAND_DEBUG style:
 * `[12:34:56.789] client#9  -> wl_surface@3.attach(wl_buffer@5, 0, 0)`.
 * `->` points toward the compositor (requests), `<-` toward the application (events);
 * `client#9` and `host#9` are the two connections of the client whose socket is fd 9.
 * The relay holds no Tracer at all when tracing is off, so formatting costs nothing then.
 */
export class Tracer {
  constructor(readonly options: TraceOptions) {}

  wants(side: Side): boolean {
    return side === 'client' ? this.options.client : this.options.host;
  }

  /**
   * Traces every message in buf[start, end) as seen on one connection; `ids` is that
   * connection's id space and `fds` the fds that travel with the messages, in order.
   */
  messages(
    side: Side,
    label: number,
    request: boolean,
    buf: Buffer,
    start: number,
    end: number,
    ids: IdSpace,
    fds: ArrayLike<number>,
    fdStart: number,
  ): void {
    let fdIndex = fdStart;
    for (let pos = start; pos + 8 <= end;) {
      const id = buf.readUInt32LE(pos);
      const word = buf.readUInt32LE(pos + 4);
      const size = word >>> 16;
      if (size < 8) return;
      const obj = ids.get(id);
      const msg = obj
        ? (request ? obj.iface.requests : obj.iface.events)[word & 0xffff]
        : undefined;
      const name = `${obj ? obj.iface.name : '[unknown]'}.${msg ? msg.name : `#${word & 0xffff}`}`;
      if (!this.options.hidden.has(name)) {
        const args = msg ? formatArgs(msg, buf, pos + 8, pos + size, ids, fds, fdIndex) : '…';
        const target = `${obj ? obj.iface.name : '[unknown]'}@${id}`;
        this.options.write(
          `[${timestamp()}] ${`${side}#${label}`.padEnd(11)} ${request ? '->' : '<-'} ${target}.${msg ? msg.name : `#${word & 0xffff}`}(${args})`,
        );
      }
      if (msg) fdIndex += msg.fdCount;
      pos += size;
    }
  }
}

function timestamp(): string {
  const d = new Date();
  const two = (n: number): string => String(n).padStart(2, '0');
  return `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}.${String(d.getMilliseconds()).padStart(3, '0')}`;
}

function formatArgs(
  msg: Message,
  buf: Buffer,
  pos: number,
  end: number,
  ids: IdSpace,
  fds: ArrayLike<number>,
  fdIndex: number,
): string {
  const parts: string[] = [];
  for (let i = 0; i < msg.kinds.length; i++) {
    const kind = msg.kinds[i];
    if (kind === ArgKind.Fd) {
      parts.push(`fd ${fds[fdIndex++] ?? '?'}`);
      continue;
    }
    if (pos + 4 > end) break;
    const word = buf.readUInt32LE(pos);
    pos += 4;
    switch (kind) {
      case ArgKind.Int:
        parts.push(String(word | 0));
        break;
      case ArgKind.Uint:
        parts.push(String(word));
        break;
      case ArgKind.Fixed:
        parts.push(((word | 0) / 256).toFixed(6));
        break;
      case ArgKind.String:
        parts.push(word === 0 ? 'nil' : JSON.stringify(buf.toString('utf8', pos, pos + word - 1)));
        pos += (word + 3) & ~3;
        break;
      case ArgKind.Array:
        parts.push(`array[${word}]`);
        pos += (word + 3) & ~3;
        break;
      case ArgKind.Object: {
        const target = word === 0 ? undefined : ids.get(word);
        parts.push(word === 0 ? 'nil' : `${target ? target.iface.name : '[unknown]'}@${word}`);
        break;
      }
      case ArgKind.NewId: {
        const typed = msg.argInterfaces[i];
        if (typed) {
          parts.push(`new id ${typed.name}@${word}`);
          break;
        }
        // untyped new_id: interface name, version, id
        const iface = buf.toString('utf8', pos, pos + Math.max(word - 1, 0));
        pos += (word + 3) & ~3;
        const version = buf.readUInt32LE(pos);
        const id = buf.readUInt32LE(pos + 4);
        pos += 8;
        parts.push(`new id ${iface}@${id} (version ${version})`);
        break;
      }
    }
  }
  return parts.join(', ');
}

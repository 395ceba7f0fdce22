import type { InterfaceMeta, MessageMeta } from './meta.js';
import { ArgKind } from './meta.js';

/** A message with what the relay needs per message precomputed, so forwarding never re-reads the XML shape. */
export class Message {
  readonly name: string;
  readonly opcode: number;
  readonly since: number;
  readonly destructor: boolean;
  readonly kinds: Uint8Array;
  readonly nullable: Uint8Array;
  /** For object and new_id arguments, the interface they name; null when untyped. */
  readonly argInterfaces: (Interface | null)[] = [];
  readonly fdCount: number;
  /** How many new_id arguments it has (objects it creates). */
  readonly newIdCount: number;
  /** Size of the whole message when it has no strings or arrays; -1 otherwise. */
  readonly fixedSize: number;
  /** True when some argument is an object, new_id or fd, so forwarding must look inside. */
  readonly needsWalk: boolean;

  constructor(readonly meta: MessageMeta) {
    this.name = meta.name;
    this.opcode = meta.opcode;
    this.since = meta.since;
    this.destructor = meta.destructor;
    this.kinds = Uint8Array.from(meta.args, (a) => a.kind);
    this.nullable = Uint8Array.from(meta.args, (a) => (a.nullable ? 1 : 0));
    let fds = 0;
    let newIds = 0;
    let variable = false;
    let walk = false;
    let words = 0;
    for (const a of meta.args) {
      if (a.kind === ArgKind.Fd) fds++;
      if (a.kind === ArgKind.NewId) newIds++;
      else if (a.kind === ArgKind.String || a.kind === ArgKind.Array) variable = true;
      else words++;
      if (a.kind === ArgKind.Object || a.kind === ArgKind.NewId || a.kind === ArgKind.Fd)
        walk = true;
      // an untyped new_id is interface string + version + id on the wire
      if (a.kind === ArgKind.NewId && a.interface === null) variable = true;
    }
    this.fdCount = fds;
    this.newIdCount = newIds;
    this.fixedSize = variable ? -1 : 8 + 4 * words;
    this.needsWalk = walk || variable;
  }
}

export class Interface {
  readonly name: string;
  readonly version: number;
  readonly requests: Message[];
  readonly events: Message[];

  constructor(
    readonly meta: InterfaceMeta,
    /** Its place in its ProtocolTables: per-interface data can live in an array. */
    readonly index: number,
  ) {
    this.name = meta.name;
    this.version = meta.version;
    this.requests = meta.requests.map((m) => new Message(m));
    this.events = meta.events.map((m) => new Message(m));
  }
}

/**
 * Every interface the proxy knows, linked so that arguments point at interfaces directly. An
 * interface is built the first time it is asked for (with those its messages name): a client
 * uses a few dozen of the two hundred, and building them all was a tenth of start-up.
 */
export class ProtocolTables {
  private readonly metas = new Map<string, InterfaceMeta>();
  private readonly byName = new Map<string, Interface>();

  constructor(metas: readonly InterfaceMeta[]) {
    for (const meta of metas) {
      if (this.metas.has(meta.name)) throw new Error(`interface ${meta.name} is defined twice`);
      this.metas.set(meta.name, meta);
    }
  }

  get(name: string): Interface | undefined {
    return this.byName.get(name) ?? this.build(name);
  }

  require(name: string): Interface {
    const iface = this.get(name);
    if (!iface) throw new Error(`unknown interface ${name}`);
    return iface;
  }

  names(): IterableIterator<string> {
    return this.metas.keys();
  }

  private build(name: string): Interface | undefined {
    const meta = this.metas.get(name);
    if (!meta) return undefined;
    const iface = new Interface(meta, this.byName.size);
    // known before its arguments are linked: interfaces name each other in cycles
    this.byName.set(name, iface);
    for (const msg of [...iface.requests, ...iface.events]) {
      for (const arg of msg.meta.args) {
        const target = arg.interface === null ? null : this.get(arg.interface);
        if (target === undefined) {
          throw new Error(`${iface.name}.${msg.name}: unknown interface ${arg.interface}`);
        }
        msg.argInterfaces.push(target);
      }
    }
    return iface;
  }
}

// Shapes of the protocol tables that codegen emits for every interface in protocols/.
// The relay's generic forwarding and the logger run off these tables alone.

export const ArgKind = {
  Int: 0,
  Uint: 1,
  Fixed: 2,
  String: 3,
  Object: 4,
  NewId: 5,
  Array: 6,
  Fd: 7,
} as const;
export type ArgKind = (typeof ArgKind)[keyof typeof ArgKind];

export interface ArgMeta {
  readonly name: string;
  readonly kind: ArgKind;
  readonly nullable: boolean;
  /** Interface of an object or new_id argument; null for untyped ones (wl_registry.bind). */
  readonly interface: string | null;
  /** Enum name as written in the XML (`wl_output.transform` or a local `error`), if any. */
  readonly enum: string | null;
}

export interface MessageMeta {
  readonly name: string;
  readonly opcode: number;
  readonly since: number;
  readonly destructor: boolean;
  readonly args: readonly ArgMeta[];
  /** libwayland's signature string: since-version prefix, `?` for nullable, then `iufsonah`. */
  readonly signature: string;
}

export interface EnumEntryMeta {
  readonly name: string;
  readonly value: number;
  readonly since: number;
}

export interface EnumMeta {
  readonly name: string;
  readonly bitfield: boolean;
  readonly entries: readonly EnumEntryMeta[];
}

export interface InterfaceMeta {
  readonly name: string;
  readonly version: number;
  readonly requests: readonly MessageMeta[];
  readonly events: readonly MessageMeta[];
  readonly enums: readonly EnumMeta[];
}

export interface ProtocolMeta {
  /** The protocol's name attribute, e.g. `xdg_shell`. */
  readonly name: string;
  /** Path of the XML below protocols/, e.g. `stable/xdg-shell/xdg-shell.xml`. */
  readonly file: string;
  readonly interfaces: readonly InterfaceMeta[];
}

/** What a hand-written handler returns: true when it consumed the message (nothing is forwarded). */
export type HandlerResult = boolean | void;

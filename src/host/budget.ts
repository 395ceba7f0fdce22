// What one guest (one VM, or one local-link connection) may make tswl-host hold. A guest that
// reaches a limit has that one command refused (or that context failed); other guests never
// notice. The README's budget table is read off DEFAULT_LIMITS.

export interface GuestLimits {
  /** Cross-domain contexts (one per Wayland client in the guest, plus query-only ones). */
  readonly contexts: number;
  /** Items in all its contexts' tables: image templates, blobs and pipes from the compositor. */
  readonly items: number;
  /** Process fds held for it: compositor sockets, host blobs, pipes, fds in flight. */
  readonly fds: number;
  /** Fenced commands whose answer waits (ring-1 polls, and what they hold). */
  readonly fences: number;
  /** Bytes of host memory in its HOST3D blobs (shadow buffers). */
  readonly blobBytes: number;
  /**
   * Bytes from it that the compositor or a clipboard reader has not taken yet. Past 1 MiB the
   * transport stops taking its commands; a context that still grows the backlog past this
   * limit is failed.
   */
  readonly queuedBytes: number;
}

export const DEFAULT_LIMITS: GuestLimits = {
  contexts: 64,
  items: 16384,
  fds: 1024,
  fences: 256,
  blobBytes: 2 * 1024 ** 3,
  queuedBytes: 16 * 1024 ** 2,
};

/** Guest bytes waiting for the compositor past which the transport stops taking commands. */
export const BACKLOG_PAUSE = 1024 * 1024;

/** Parses one `--guest-limit NAME=VALUE` into `limits` (a copy). */
export function parseGuestLimit(value: string, limits: GuestLimits): GuestLimits {
  const m = /^([a-zA-Z]+)=(\d+)([KMG]i?)?$/.exec(value.trim());
  const names = Object.keys(DEFAULT_LIMITS).join(', ');
  if (!m) throw new Error(`"${value}" is not NAME=NUMBER (names: ${names})`);
  const [, name, digits, unit] = m;
  if (!(name in DEFAULT_LIMITS)) throw new Error(`unknown limit "${name}" (names: ${names})`);
  const scale = unit ? 1024 ** ('KMG'.indexOf(unit[0]) + 1) : 1;
  const n = Number(digits) * scale;
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`${name}=${digits}: out of range`);
  return { ...limits, [name]: n };
}

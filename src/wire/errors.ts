/** A peer sent bytes that do not form a valid Wayland message. */
export class WireError extends Error {
  override name = 'WireError';
}

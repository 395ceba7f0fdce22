/** wl_display.error codes (wayland.xml). */
export const DisplayError = {
  invalidObject: 0,
  invalidMethod: 1,
  noMemory: 2,
  implementation: 3,
} as const;

/** A client broke the protocol: it gets wl_display.error(objectId, code, message) and is disconnected. */
export class ProtocolError extends Error {
  override name = 'ProtocolError';
  constructor(
    readonly objectId: number,
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

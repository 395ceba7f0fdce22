import { VirtioGpuResp } from '../virtgpu/protocol.js';

/** Where the device's words go. `verbose` says whether info() lines are wanted at all. */
export interface DeviceLog {
  readonly verbose: boolean;
  info(message: string): void;
  warn(message: string): void;
}

/** A control command the device refuses: answered with `response`, logged with the message. */
export class DeviceError extends Error {
  constructor(
    message: string,
    readonly response: number = VirtioGpuResp.ERR_UNSPEC,
    /** An expected refusal (a probe), logged with -v only. */
    readonly quiet = false,
  ) {
    super(message);
  }
}

/**
 * A cross-domain command that failed: the rest of the command buffer is abandoned and the
 * SUBMIT_3D is answered ERR_UNSPEC. A severe failure (the guest does not speak the protocol:
 * broken framing, impossible counts, unknown commands) also disables the context.
 */
export class ContextError extends Error {
  constructor(
    message: string,
    readonly severe = false,
  ) {
    super(message);
  }
}

export function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

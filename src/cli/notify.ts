/**
 * The service manager's readiness protocol (sd_notify(3)), for `Type=notify` units: datagrams of
 * newline-separated assignments (`READY=1`, `STATUS=…`, `STOPPING=1`) sent to the AF_UNIX socket
 * named by $NOTIFY_SOCKET, a path or '@name' for an abstract socket. systemd identifies the sender
 * by the kernel's credentials, so the process that calls these must be the service's main process
 * (NotifyAccess=main, the default).
 */
import { sendDatagram } from '../native/index.js';

/** Told once, with a one-line message, when notifying fails; later failures are silent. */
export type NotifyErrorHandler = (message: string) => void;

export class Notifier {
  #reported = false;

  /**
   * @param socket the notify socket: an absolute path, or '@name' for an abstract socket.
   * @param onError told about the first failure; without it failures are ignored.
   */
  constructor(
    readonly socket: string,
    private readonly onError?: NotifyErrorHandler,
  ) {}

  /**
   * A Notifier for $NOTIFY_SOCKET, or null when it is unset or empty (not started by a service
   * manager that wants notifications). NOTIFY_SOCKET is deleted from `env` either way, as
   * sd_notify(1, …) does, so children (the sub-command, Xwayland) do not notify in our name. A
   * value that is neither an absolute path nor '@name' (newer systemd also allows `vsock:…`,
   * which this does not speak) is reported through `onError` and yields null.
   */
  static fromEnv(env: NodeJS.ProcessEnv, onError?: NotifyErrorHandler): Notifier | null {
    const socket = env.NOTIFY_SOCKET;
    delete env.NOTIFY_SOCKET;
    if (!socket) return null;
    if (!socket.startsWith('/') && !(socket.startsWith('@') && socket.length > 1)) {
      onError?.(
        `NOTIFY_SOCKET="${socket}" is not a unix socket path or @name; ` +
          'the service manager will not be told when the proxy is ready',
      );
      return null;
    }
    return new Notifier(socket, onError);
  }

  /** Start-up is complete (`READY=1`), optionally with a status line. */
  ready(status?: string): void {
    this.#send(status === undefined ? 'READY=1' : `READY=1\nSTATUS=${oneLine(status)}`);
  }

  /** A free-form status line, shown by `systemctl status` (`STATUS=…`). */
  status(text: string): void {
    this.#send(`STATUS=${oneLine(text)}`);
  }

  /** Shutdown has begun (`STOPPING=1`). */
  stopping(): void {
    this.#send('STOPPING=1');
  }

  #send(message: string): void {
    try {
      sendDatagram(this.socket, Buffer.from(message, 'utf8'));
    } catch (e) {
      if (this.#reported) return;
      this.#reported = true;
      this.onError?.(
        `cannot notify the service manager through NOTIFY_SOCKET=${this.socket}: ` +
          `${(e as Error).message} (further notification errors are not reported)`,
      );
    }
  }
}

/** Each notification line is one assignment, so a status must not start new ones. */
function oneLine(text: string): string {
  return text.replace(/[\r\n\0]+/g, ' ');
}

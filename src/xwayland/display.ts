// An X11 display number claimed the way X servers claim one: the lock file /tmp/.X<n>-lock with
// the owner's pid, the filesystem socket /tmp/.X11-unix/X<n> and the abstract one of the same name.
import {
  closeSync,
  mkdirSync,
  openSync,
  readFileSync,
  unlinkSync,
  writeSync,
  chmodSync,
  lstatSync,
} from 'node:fs';
import * as native from '../native/index.js';
import { closeQuietly } from '../wire/fd-queue.js';

export class XDisplayError extends Error {
  override name = 'XDisplayError';
}

export const X11_SOCKET_DIR = '/tmp/.X11-unix';

export class XDisplay {
  /** Listening sockets to hand to Xwayland (-listenfd). */
  readonly fds: number[] = [];
  private locked = false;
  private socketPath: string | null = null;

  constructor(
    readonly number: number,
    private readonly dir = '/tmp',
  ) {}

  get lockPath(): string {
    return `${this.dir}/.X${this.number}-lock`;
  }

  get socketDir(): string {
    return this.dir === '/tmp' ? X11_SOCKET_DIR : `${this.dir}/.X11-unix`;
  }

  /**
   * Takes the lock (replacing a stale one) and opens the sockets, or only the lock when systemd
   * handed the socket (`activatedFd`). Throws XDisplayError when the display is taken.
   */
  claim(activatedFd?: number): void {
    try {
      this.lock();
      if (activatedFd !== undefined) {
        this.fds.push(activatedFd);
        return;
      }
      mkdirSync(this.socketDir, { recursive: true, mode: 0o1777 });
      const path = `${this.socketDir}/X${this.number}`;
      // we hold the lock: a socket left at the path belongs to a server that died
      try {
        if (lstatSync(path).isSocket()) unlinkSync(path);
      } catch {
        // not there
      }
      this.fds.push(this.listen(path));
      this.socketPath = path;
      this.fds.push(this.listen(`@${path}`));
    } catch (e) {
      this.release();
      throw e;
    }
  }

  /** Closes the sockets and removes the socket file and the lock. */
  release(): void {
    for (const fd of this.fds.splice(0)) closeQuietly(fd);
    if (this.socketPath) unlinkQuietly(this.socketPath);
    this.socketPath = null;
    if (this.locked) unlinkQuietly(this.lockPath);
    this.locked = false;
  }

  private listen(address: string): number {
    try {
      return native.listenStream(address);
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      if (err.code === 'EADDRINUSE') {
        throw new XDisplayError(
          `X display :${this.number} is already taken (${address} is in use)`,
        );
      }
      throw new XDisplayError(`cannot listen on ${address}: ${err.message}`);
    }
  }

  private lock(): void {
    for (let attempt = 0; attempt < 2; attempt++) {
      let fd: number;
      try {
        fd = openSync(this.lockPath, 'wx', 0o444);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') {
          throw new XDisplayError(`cannot create ${this.lockPath}: ${(e as Error).message}`);
        }
        const owner = lockOwner(this.lockPath);
        if (owner !== null && processExists(owner)) {
          throw new XDisplayError(
            `X display :${this.number} is already taken (process ${owner} holds ${this.lockPath})`,
          );
        }
        // a server that died without removing its lock
        unlinkQuietly(this.lockPath);
        continue;
      }
      try {
        writeSync(fd, `${String(process.pid).padStart(10)}\n`);
        chmodSync(this.lockPath, 0o444);
      } finally {
        closeSync(fd);
      }
      this.locked = true;
      return;
    }
    throw new XDisplayError(`cannot take ${this.lockPath}: it keeps coming back`);
  }
}

function lockOwner(path: string): number | null {
  try {
    const pid = Number(readFileSync(path, 'latin1').trim());
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function unlinkQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // already gone
  }
}

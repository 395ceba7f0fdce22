/**
 * systemd socket activation (sd_listen_fds(3)): the listening sockets a service manager passed in.
 *
 * The protocol: the manager puts the sockets at fds 3, 4, … (SD_LISTEN_FDS_START), and sets
 * LISTEN_PID to the pid they are meant for, LISTEN_FDS to their count and, optionally,
 * LISTEN_FDNAMES to their names joined with ':' (FileDescriptorName= in a .socket unit, --fdname
 * for systemd-socket-activate). tswl-proxy takes a socket named `wayland` (its Wayland display,
 * instead of --wayland-display) and one named `x11` (the X display, instead of the abstract
 * socket --x-display would open), each at most once.
 *
 * Sockets without names. When LISTEN_FDNAMES is unset (or empty), sd_listen_fds_with_names names
 * every fd "unknown", so a program cannot tell an explicit "unknown" from no name at all; we treat
 * both the same way. systemd's own service manager always sets names (a .socket unit without
 * FileDescriptorName= names its fds after the unit, e.g. "tswl-proxy.socket"), so unnamed fds
 * come from other launchers, typically `systemd-socket-activate -l PATH` without --fdname. To make
 * that work, a single unnamed fd is taken as the Wayland socket. With two or more fds, unnamed ones
 * are an error: which one is Wayland would be a guess.
 *
 * Not checked: LISTEN_PIDFDID (newer systemd's guard against pid reuse); it is unset all the same.
 */
import { inspectListenSocket } from '../native/index.js';
import { UsageError } from './paths.js';

/** The first fd a service manager passes (SD_LISTEN_FDS_START). */
export const LISTEN_FDS_START = 3;

export interface ActivatedSockets {
  /** The Wayland listening socket and the path it is bound to (from getsockname). */
  wayland?: { fd: number; path: string };
  /** The X11 listening socket (a unix stream socket; path or abstract name). */
  x11?: { fd: number };
}

const LISTEN_VARS = ['LISTEN_PID', 'LISTEN_PIDFDID', 'LISTEN_FDS', 'LISTEN_FDNAMES'] as const;

/** How systemd names fds it has no name for. */
const UNNAMED = 'unknown';

const HINT =
  'name the sockets "wayland" and "x11" (FileDescriptorName= in the .socket unit, or ' +
  '--fdname=wayland:x11 for systemd-socket-activate)';

/**
 * The sockets passed to process `pid` by socket activation, or null when there are none for it:
 * LISTEN_PID unset or naming another process, or LISTEN_FDS unset (as sd_listen_fds returns 0).
 * Either way LISTEN_PID, LISTEN_PIDFDID, LISTEN_FDS and LISTEN_FDNAMES are deleted from `env`
 * afterwards, as sd_listen_fds(1) does, so children do not inherit them (when `env` is
 * process.env this changes the real environment). The sockets are made nonblocking and
 * close-on-exec; they are the caller's to close.
 *
 * Throws UsageError, naming the bad value, for: a malformed LISTEN_PID or LISTEN_FDS; a
 * LISTEN_FDNAMES with a different number of entries than LISTEN_FDS; a name other than `wayland`
 * and `x11`, or one of them twice; unnamed fds when there is more than one; a socket that is not a
 * listening AF_UNIX stream socket; a Wayland socket with no path (an abstract or unnamed address,
 * which Wayland clients cannot reach by WAYLAND_DISPLAY). The environment is checked before any fd
 * is touched.
 */
export function listenFdsFromEnv(env: NodeJS.ProcessEnv, pid: number): ActivatedSockets | null {
  try {
    return readListenFds(env, pid);
  } finally {
    for (const name of LISTEN_VARS) delete env[name];
  }
}

function readListenFds(env: NodeJS.ProcessEnv, pid: number): ActivatedSockets | null {
  const listenPid = env.LISTEN_PID;
  if (listenPid === undefined) return null;
  if (!/^[1-9][0-9]*$/.test(listenPid)) {
    throw new UsageError(`socket activation: LISTEN_PID="${listenPid}" is not a process id`);
  }
  if (Number(listenPid) !== pid) return null;

  const listenFds = env.LISTEN_FDS;
  if (listenFds === undefined) return null;
  const count = /^[1-9][0-9]*$/.test(listenFds) ? Number(listenFds) : NaN;
  if (!(count >= 1 && count <= 0x7fffffff - LISTEN_FDS_START)) {
    throw new UsageError(
      `socket activation: LISTEN_FDS="${listenFds}" is not a positive number of sockets`,
    );
  }

  const names = fdNames(env.LISTEN_FDNAMES, count);
  const byName = new Map<string, number>();
  names.forEach((name, i) => {
    const fd = LISTEN_FDS_START + i;
    if (name !== 'wayland' && name !== 'x11') {
      const why =
        name === UNNAMED
          ? `fd ${fd} has no name (LISTEN_FDNAMES="${env.LISTEN_FDNAMES ?? ''}")`
          : `fd ${fd} is named "${name}"; only "wayland" and "x11" are accepted`;
      throw new UsageError(`socket activation: ${why}; ${HINT}`);
    }
    const previous = byName.get(name);
    if (previous !== undefined) {
      throw new UsageError(
        `socket activation: two sockets are named "${name}" (fds ${previous} and ${fd}, ` +
          `LISTEN_FDNAMES="${env.LISTEN_FDNAMES}"); ${HINT}`,
      );
    }
    byName.set(name, fd);
  });

  const result: ActivatedSockets = {};
  for (const [name, fd] of byName) {
    let path: string;
    try {
      path = inspectListenSocket(fd);
    } catch (e) {
      throw new UsageError(`socket activation: the "${name}" socket: ${(e as Error).message}`);
    }
    if (name === 'wayland') {
      if (!path.startsWith('/')) {
        const address = path === '' ? 'no address' : `the abstract address ${path}`;
        throw new UsageError(
          `socket activation: the "wayland" socket (fd ${fd}) has ${address}; Wayland clients ` +
            'need a path (ListenStream=%t/wayland-1)',
        );
      }
      result.wayland = { fd, path };
    } else {
      result.x11 = { fd };
    }
  }
  return result;
}

/** One name per fd, "unknown" for unnamed ones; a lone unnamed fd is the Wayland socket. */
function fdNames(listenFdNames: string | undefined, count: number): string[] {
  // Unset and empty are the same to sd_listen_fds_with_names: no names. LISTEN_FDS may be any
  // number up to 2^31: no list of that many names is made to find that they are all unnamed.
  if (!listenFdNames) {
    if (count === 1) return ['wayland'];
    throw new UsageError(
      `socket activation: fd ${LISTEN_FDS_START} has no name (LISTEN_FDNAMES="${listenFdNames ?? ''}"); ${HINT}`,
    );
  }
  const names = listenFdNames.split(':');
  if (names.length !== count) {
    throw new UsageError(
      `socket activation: LISTEN_FDNAMES="${listenFdNames}" has ${names.length} ` +
        `name${names.length === 1 ? '' : 's'} but LISTEN_FDS=${count}`,
    );
  }
  if (count === 1 && names[0] === UNNAMED) return ['wayland'];
  return names;
}

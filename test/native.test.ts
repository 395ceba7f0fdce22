import { AsyncLocalStorage } from 'node:async_hooks';
import { spawnSync } from 'node:child_process';
import { once } from 'node:events';
import {
  closeSync,
  existsSync,
  fstatSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Worker } from 'node:worker_threads';
import { afterAll, afterEach, beforeEach, describe, expect, test } from 'vitest';
import * as native from '../src/native/index.js';
import {
  DISCONNECT,
  MAX_FDS,
  Poller,
  READABLE,
  RECV_OUT_LENGTH,
  WRITABLE,
  accept,
  close,
  connectUnix,
  listenUnix,
  openFdCount,
  recvmsg,
  sendmsg,
  socketpair,
} from '../src/native/index.js';

const O_NONBLOCK = 0o4000;
const O_CLOEXEC = 0o2000000;

const dir = mkdtempSync(join(tmpdir(), 'tswl-native-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// Every test must leave the process with the fds it found. Fds a test opens are tracked so that
// a failing test does not also break the ones after it.
let fdsBefore = 0;
const open = new Set<number>();
beforeEach(() => {
  fdsBefore = openFdCount();
});
afterEach(() => {
  const leaked = openFdCount() - fdsBefore;
  for (const fd of open) closeSync(fd);
  open.clear();
  expect(leaked).toBe(0);
});

function track<T extends number | number[]>(fds: T): T {
  for (const fd of typeof fds === 'number' ? [fds] : (fds as number[])) open.add(fd);
  return fds;
}

function release(...fds: number[]): void {
  for (const fd of fds) {
    close(fd);
    open.delete(fd);
  }
}

function fdFlags(fd: number): number {
  const m = /^flags:\s+([0-7]+)$/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'));
  if (!m) throw new Error(`no flags for fd ${fd}`);
  return parseInt(m[1], 8);
}

function expectCloexecNonblocking(fd: number): void {
  const flags = fdFlags(fd);
  expect(flags & O_CLOEXEC, `fd ${fd} close-on-exec`).toBe(O_CLOEXEC);
  expect(flags & O_NONBLOCK, `fd ${fd} nonblocking`).toBe(O_NONBLOCK);
}

/** Opens n distinct files so that received fds can be told apart by inode. */
function openFiles(n: number): number[] {
  const fds: number[] = [];
  for (let i = 0; i < n; i++) {
    const file = join(dir, `file-${i}`);
    writeFileSync(file, String(i));
    fds.push(track(openSync(file, 'r')));
  }
  return fds;
}

function sameFile(a: number, b: number): boolean {
  const sa = fstatSync(a);
  const sb = fstatSync(b);
  return sa.ino === sb.ino && sa.dev === sb.dev;
}

function send(fd: number, text: string, fds: readonly number[] | Int32Array = []): number {
  const buf = Buffer.from(text);
  return sendmsg(fd, buf, 0, buf.length, fds, fds.length);
}

const recvOut = new Int32Array(RECV_OUT_LENGTH);
/** One recvmsg; the fds it brings are tracked. */
function recv(fd: number): { n: number; text: string; fds: number[]; truncated: boolean } {
  const buf = Buffer.alloc(4096);
  recvOut.fill(-7);
  const n = recvmsg(fd, buf, 0, buf.length, recvOut);
  const fds = Array.from(recvOut.subarray(2, 2 + recvOut[0]));
  track(fds);
  return { n, text: buf.toString('utf8', 0, Math.max(n, 0)), fds, truncated: recvOut[1] === 1 };
}

function errorOf(fn: () => unknown): NodeJS.ErrnoException {
  try {
    fn();
  } catch (e) {
    return e as NodeJS.ErrnoException;
  }
  throw new Error('expected an exception');
}

const addon = join(import.meta.dirname, '../build/Release/tswl_native.node');
const tick = () => new Promise((resolve) => setTimeout(resolve, 20));

describe('socketpair, sendmsg, recvmsg', () => {
  test('moves bytes both ways; -1 when empty, 0 at end of file', () => {
    const [a, b] = track(socketpair());
    expectCloexecNonblocking(a);
    expectCloexecNonblocking(b);
    expect(recv(b).n).toBe(-1);
    expect(recvOut[0]).toBe(0); // out is reset even when nothing was read
    expect(send(a, 'hello')).toBe(5);
    expect(send(b, 'back')).toBe(4);
    expect(recv(b)).toEqual({ n: 5, text: 'hello', fds: [], truncated: false });
    expect(recv(a).text).toBe('back');

    // A range inside a larger buffer.
    const buf = Buffer.from('..abc..');
    expect(sendmsg(a, buf, 2, 5, [], 0)).toBe(3);
    const into = Buffer.alloc(8, '-');
    expect(recvmsg(b, into, 3, 6, recvOut)).toBe(3);
    expect(into.toString()).toBe('---abc--');

    release(a);
    expect(recv(b).n).toBe(0);
    release(b);
  });

  test('sendmsg returns -1 when the socket is full', () => {
    const [a, b] = track(socketpair());
    const chunk = Buffer.alloc(65536);
    let total = 0;
    let n = 0;
    while ((n = sendmsg(a, chunk, 0, chunk.length, [], 0)) > 0) total += n;
    expect(n).toBe(-1);
    expect(total).toBeGreaterThan(0);
    release(a, b);
  });

  test('passes an fd that refers to the same file and is close-on-exec', () => {
    const [a, b] = track(socketpair());
    const [file] = openFiles(1);
    expect(send(a, 'x', [file])).toBe(1);
    const got = recv(b);
    expect(got.n).toBe(1);
    expect(got.fds).toHaveLength(1);
    expect(got.fds[0]).not.toBe(file);
    expect(sameFile(got.fds[0], file)).toBe(true);
    expect(fdFlags(got.fds[0]) & O_CLOEXEC).toBe(O_CLOEXEC);
    expect(fstatSync(file).isFile()).toBe(true); // sending does not close the fd
    release(a, b, file, ...got.fds);
  });

  test('passes 28 fds in one message, in order, from an Int32Array', () => {
    const [a, b] = track(socketpair());
    const files = openFiles(MAX_FDS);
    expect(send(a, 'many', Int32Array.from(files))).toBe(4);
    const got = recv(b);
    expect(got.text).toBe('many');
    expect(got.truncated).toBe(false);
    expect(got.fds).toHaveLength(MAX_FDS);
    got.fds.forEach((fd, i) => expect(sameFile(fd, files[i]), `fd ${i}`).toBe(true));
    release(a, b, ...files, ...got.fds);
  });

  test('sends only fdCount fds of the list', () => {
    const [a, b] = track(socketpair());
    const files = openFiles(3);
    expect(sendmsg(a, Buffer.from('ab'), 0, 2, files, 2)).toBe(2);
    const got = recv(b);
    expect(got.fds).toHaveLength(2);
    expect(sameFile(got.fds[1], files[1])).toBe(true);
    release(a, b, ...files, ...got.fds);
  });

  test('rejects 29 fds with EINVAL and sends nothing', () => {
    const [a, b] = track(socketpair());
    const files = openFiles(MAX_FDS + 1);
    const e = errorOf(() => send(a, 'too many', files));
    expect(e.code).toBe('EINVAL');
    expect(e.syscall).toBe('sendmsg');
    expect(recv(b).n).toBe(-1);
    release(a, b, ...files);
  });

  test('reports MSG_CTRUNC when a peer sends more fds than fit', () => {
    // Our own sendmsg cannot send more than 28, so a Python peer does.
    const [a, b] = track(socketpair());
    const python = [
      'import os, socket',
      's = socket.socket(fileno=3)',
      "fds = [os.open('/dev/null', os.O_RDONLY) for _ in range(40)]",
      "socket.send_fds(s, [b'hello'], fds)",
    ].join('\n');
    const run = spawnSync('python3', ['-c', python], { stdio: ['ignore', 'ignore', 'pipe', a] });
    if (run.error || run.status !== 0) {
      release(a, b);
      throw new Error(`python3 with socket.send_fds is needed: ${run.error ?? run.stderr}`);
    }
    const got = recv(b);
    expect(got.text).toBe('hello');
    expect(got.truncated).toBe(true);
    expect(got.fds).toHaveLength(MAX_FDS);
    release(a, b, ...got.fds);
  });

  test('throws EPIPE when the peer is gone, and checks its arguments', () => {
    const [a, b] = track(socketpair());
    release(b);
    const e = errorOf(() => send(a, 'x'));
    expect(e).toBeInstanceOf(Error);
    expect(e.code).toBe('EPIPE');
    expect(e.errno).toBe(-32);
    expect(e.syscall).toBe('sendmsg');
    expect(e.message).toBe('sendmsg: Broken pipe');

    const buf = Buffer.alloc(4);
    expect(() => sendmsg(a, buf, 0, 5, [], 0)).toThrow(RangeError);
    expect(() => sendmsg(a, buf, 3, 2, [], 0)).toThrow(RangeError);
    expect(() => sendmsg(a, buf, 0, 1, [1], 2)).toThrow(RangeError);
    expect(() => recvmsg(a, buf, 0, 4, new Int32Array(29))).toThrow(RangeError);
    expect(() => recvmsg(a, buf, 2, 2, recvOut)).toThrow(RangeError);
    expect(() => recvmsg(-1, buf, 0, 4, recvOut)).toThrow(RangeError);
    expect(() => recvmsg(a, new Int8Array(4) as never, 0, 4, recvOut)).toThrow(TypeError);
    expect(() => sendmsg(a, buf, 0, 0, [1], 1)).toThrow(/at least one byte/);
    release(a);
  });

  test('close throws EBADF for an fd that is not open', () => {
    const [a, b] = socketpair();
    close(a);
    close(b);
    const e = errorOf(() => close(a));
    expect(e.code).toBe('EBADF');
    expect(e.errno).toBe(-9);
    expect(e.syscall).toBe('close');
  });
});

describe('listenUnix, connectUnix, accept', () => {
  test('accepts a connection; fds are close-on-exec and nonblocking', () => {
    const path = join(dir, 'wayland-a');
    const listener = listenUnix(path);
    track([listener.fd, listener.lockFd]);
    expectCloexecNonblocking(listener.fd);
    expect(fdFlags(listener.lockFd) & O_CLOEXEC).toBe(O_CLOEXEC);
    expect(existsSync(`${path}.lock`)).toBe(true);
    expect(accept(listener.fd)).toBe(-1);

    const client = track(connectUnix(path));
    expectCloexecNonblocking(client);
    const server = track(accept(listener.fd));
    expect(server).toBeGreaterThanOrEqual(0);
    expectCloexecNonblocking(server);
    expect(accept(listener.fd)).toBe(-1);

    expect(send(client, 'ping')).toBe(4);
    expect(recv(server).text).toBe('ping');
    release(client, server, listener.fd, listener.lockFd);
  });

  test('a second listener on the same path gets EADDRINUSE', () => {
    const path = join(dir, 'wayland-b');
    const listener = listenUnix(path);
    track([listener.fd, listener.lockFd]);
    const e = errorOf(() => listenUnix(path));
    expect(e.code).toBe('EADDRINUSE');
    expect(e.message).toContain(`${path} is in use by another compositor/proxy`);
    // The first listener is untouched.
    const client = track(connectUnix(path));
    const server = track(accept(listener.fd));
    expect(server).toBeGreaterThanOrEqual(0);
    release(client, server, listener.fd, listener.lockFd);
  });

  test('a stale socket is replaced once its lock is free', () => {
    const path = join(dir, 'wayland-c');
    const first = listenUnix(path);
    release(first.fd, first.lockFd);
    // The dead listener's socket file is still there and refuses connections...
    expect(existsSync(path)).toBe(true);
    expect(errorOf(() => connectUnix(path)).code).toBe('ECONNREFUSED');
    // ...and the next listener takes its place.
    const second = listenUnix(path);
    track([second.fd, second.lockFd]);
    const client = track(connectUnix(path));
    const server = track(accept(second.fd));
    expect(server).toBeGreaterThanOrEqual(0);
    release(client, server, second.fd, second.lockFd);
  });

  test('a file that is not a socket is not removed', () => {
    const path = join(dir, 'wayland-d');
    writeFileSync(path, 'keep me');
    const e = errorOf(() => listenUnix(path));
    expect(e.code).toBe('EADDRINUSE');
    expect(e.syscall).toBe('bind');
    expect(readFileSync(path, 'utf8')).toBe('keep me');
  });

  test('connect errors carry code, errno, syscall and path', () => {
    const path = join(dir, 'missing');
    const e = errorOf(() => connectUnix(path));
    expect(e).toBeInstanceOf(Error);
    expect(e.code).toBe('ENOENT');
    expect(e.errno).toBe(-2);
    expect(e.syscall).toBe('connect');
    expect(e.path).toBe(path);
    expect(e.message).toBe(`connect ${path}: No such file or directory`);
  });

  test('paths longer than sun_path get ENAMETOOLONG', () => {
    const path = join(dir, 'x'.repeat(120));
    expect(errorOf(() => listenUnix(path)).code).toBe('ENAMETOOLONG');
    expect(errorOf(() => connectUnix(path)).code).toBe('ENAMETOOLONG');
    expect(existsSync(`${path}.lock`)).toBe(false);
  });
});

/** A Poller whose callbacks are queued for the test to await. */
function watch(fd: number) {
  const events: Array<[number, string | null]> = [];
  let wake: (() => void) | undefined;
  const poller = new Poller(fd, (ev, err) => {
    events.push([ev, err]);
    wake?.();
  });
  const next = () =>
    new Promise<[number, string | null]>((resolve) => {
      if (events.length > 0) return resolve(events.shift()!);
      wake = () => {
        wake = undefined;
        resolve(events.shift()!);
      };
    });
  return { poller, events, next };
}

describe('Poller', () => {
  test('reports READABLE when the peer writes', async () => {
    const [a, b] = track(socketpair());
    const w = watch(a);
    w.poller.update(READABLE);
    await tick();
    expect(w.events).toEqual([]);
    send(b, 'data');
    const [ev, err] = await w.next();
    expect(ev & READABLE).toBe(READABLE);
    expect(err).toBeNull();
    expect(recv(a).text).toBe('data');
    w.poller.close();
    release(a, b);
  });

  test('reports WRITABLE', async () => {
    const [a, b] = track(socketpair());
    const w = watch(a);
    w.poller.update(WRITABLE);
    const [ev] = await w.next();
    expect(ev & WRITABLE).toBe(WRITABLE);
    expect(ev & READABLE).toBe(0);
    w.poller.close();
    release(a, b);
  });

  test('reports the peer hanging up; recvmsg then returns 0', async () => {
    const [a, b] = track(socketpair());
    const w = watch(a);
    w.poller.update(READABLE);
    release(b);
    const [ev, err] = await w.next();
    expect(err).toBeNull();
    expect(ev & (READABLE | DISCONNECT)).not.toBe(0);
    expect(recv(a).n).toBe(0);
    w.poller.close();
    release(a);
  });

  test('reports a reset connection as an error and stops', async () => {
    // Closing a socket with unread input resets the connection for its peer.
    const [a, b] = track(socketpair());
    send(a, 'unread');
    const w = watch(a);
    w.poller.update(READABLE);
    release(b);
    expect(await w.next()).toEqual([0, 'ECONNRESET']);
    await tick();
    expect(w.events).toEqual([]);
    w.poller.close();
    release(a);
  });

  test('close() and update(0) stop callbacks', async () => {
    const [a, b] = track(socketpair());
    const w = watch(a);
    w.poller.update(READABLE);
    w.poller.update(0);
    send(b, 'x');
    await tick();
    expect(w.events).toEqual([]);
    w.poller.update(READABLE);
    await w.next();
    w.poller.close();
    w.events.length = 0;
    await tick();
    expect(w.events).toEqual([]);
    w.poller.close(); // idempotent
    expect(() => w.poller.update(READABLE)).toThrow(/closed/);
    release(a, b);
  });

  test('a callback can close its poller', async () => {
    const [a, b] = track(socketpair());
    let calls = 0;
    const poller = new Poller(a, () => {
      calls++;
      poller.close();
    });
    poller.update(READABLE | WRITABLE);
    send(b, 'x');
    await tick();
    expect(calls).toBe(1);
    release(a, b);
  });

  test('each callback is followed by its nextTicks and promise jobs', async () => {
    // Two pollers ready in the same loop iteration: with a bare function call instead of
    // MakeCallback, both callbacks would run before either's queued jobs.
    const [a, b] = track(socketpair());
    const order: string[] = [];
    let done!: () => void;
    const finished = new Promise<void>((resolve) => (done = resolve));
    const pollers = [a, b].map(
      (fd, i) =>
        new Poller(fd, () => {
          pollers[i].close();
          order.push(`callback ${i}`);
          process.nextTick(() => order.push(`tick ${i}`));
          void Promise.resolve().then(() => order.push(`promise ${i}`));
          if (order.length > 3) setImmediate(done);
        }),
    );
    pollers.forEach((p) => p.update(WRITABLE));
    await finished;
    expect(order.map((s) => s.replace(/\d/, 'n'))).toEqual([
      'callback n',
      'tick n',
      'promise n',
      'callback n',
      'tick n',
      'promise n',
    ]);
    release(a, b);
  });

  test('callbacks run in the async context the Poller was made in', async () => {
    const [a, b] = track(socketpair());
    const als = new AsyncLocalStorage<string>();
    const store = await new Promise<string | undefined>((resolve) => {
      const poller = als.run(
        'made here',
        () =>
          new Poller(a, () => {
            poller.close();
            resolve(als.getStore());
          }),
      );
      poller.update(WRITABLE);
    });
    expect(store).toBe('made here');
    release(a, b);
  });

  test('an fd that is not open is refused instead of reaching libuv', () => {
    const [a, b] = socketpair();
    const poller = new Poller(a, () => {});
    close(a);
    close(b);
    expect(errorOf(() => poller.update(READABLE)).code).toBe('EBADF');
    poller.close();
    expect(errorOf(() => new Poller(a, () => {})).code).toBe('EBADF');
  });

  test('an active poller stays alive without references; a closed one is collected', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const [a, b] = track(socketpair());
    let fired = 0;
    const collected: string[] = [];
    const registry = new FinalizationRegistry<string>((name) => collected.push(name));
    const gcAndWait = async (done: () => boolean) => {
      for (let i = 0; i < 10 && !done(); i++) {
        gc();
        await tick();
      }
    };
    // The callbacks do not refer to their pollers, so only the addon can keep them alive.
    const active = new WeakRef(new Poller(a, () => fired++));
    active.deref()!.update(READABLE);
    registry.register(active.deref()!, 'active');
    registry.register(new Poller(b, () => {}), 'idle');
    // One whose callback refers to it, as a connection's does, and is never started or closed.
    (() => {
      const cyclic: Poller = new Poller(b, () => cyclic.close());
      registry.register(cyclic, 'cyclic');
    })();

    await gcAndWait(() => collected.length >= 2);
    expect(collected.sort()).toEqual(['cyclic', 'idle']);
    send(b, 'x');
    await gcAndWait(() => fired > 0);
    expect(fired).toBeGreaterThan(0);
    active.deref()!.close();
    await gcAndWait(() => collected.length >= 3);
    expect(collected.sort()).toEqual(['active', 'cyclic', 'idle']);
    release(a, b);
  });

  test('a worker that ends with an active poller exits cleanly', async () => {
    const [a, b] = track(socketpair());
    const worker = new Worker(
      `const { parentPort, workerData } = require('node:worker_threads');
       const native = require(workerData.addon);
       const poller = new native.Poller(workerData.fd, () => {});
       poller.update(native.READABLE);
       parentPort.postMessage('polling');`,
      { eval: true, workerData: { addon, fd: a } },
    );
    await new Promise((resolve) => worker.once('message', resolve));
    expect(await worker.terminate()).toBe(1);
    release(a, b);
  });

  test('an exception thrown by a callback is an uncaught exception', async () => {
    const [a, b] = track(socketpair());
    const worker = new Worker(
      `const { workerData } = require('node:worker_threads');
       const native = require(workerData.addon);
       const poller = new native.Poller(workerData.fd, () => {
         poller.close();
         throw new Error('thrown by the callback');
       });
       poller.update(native.WRITABLE);`,
      { eval: true, workerData: { addon, fd: a } },
    );
    const [error] = (await once(worker, 'error')) as [Error];
    expect(error.message).toBe('thrown by the callback');
    await once(worker, 'exit');
    release(a, b);
  });

  test('exports the libuv event bits', () => {
    expect([native.READABLE, native.WRITABLE, native.DISCONNECT]).toEqual([1, 2, 4]);
  });
});

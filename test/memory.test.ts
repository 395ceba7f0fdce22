// The addon's memory half: memfds, mappings, damage-rectangle copies (and their SIGBUS guard),
// pipes, fd classification and the local link's seqpacket sockets.
import { ftruncateSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import * as native from '../src/native/index.js';

const dir = mkdtempSync(join(tmpdir(), 'tswl-memory-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('memfd and mmap', () => {
  test('two mappings of one memfd share memory; munmap detaches the buffer', () => {
    const before = native.openFdCount();
    const fd = native.memfdCreate('test', 8192);
    expect(native.fdKind(fd)).toEqual({ kind: 'memory', size: 8192, writable: true });
    const a = native.mmap(fd, 0, 8192, true);
    const b = native.mmap(fd, 4096, 4096, false);
    a[4096 + 7] = 42;
    expect(b[7]).toBe(42);
    native.munmap(a);
    native.munmap(b);
    native.munmap(b); // idempotent
    expect(a.length).toBe(0);
    native.close(fd);
    expect(native.openFdCount()).toBe(before);
  });

  test('an unaligned offset is refused', () => {
    const fd = native.memfdCreate('test', 8192);
    expect(() => native.mmap(fd, 100, 4096, false)).toThrow(
      expect.objectContaining({ code: 'EINVAL' }),
    );
    native.close(fd);
  });
});

describe('copyRects', () => {
  const width = 64;
  const height = 32;
  const bpp = 4;
  const stride = width * bpp;

  test('copies exactly the damaged rectangles and counts the bytes', () => {
    const src = Buffer.alloc(stride * height, 0xab);
    const dst = Buffer.alloc(stride * height);
    const before = native.copiedBytes();
    const rects = Int32Array.from([2, 3, 5, 4, 60, 30, 10, 10]); // the second is clipped to 4×2
    const n = native.copyRects(dst, stride, src, stride, rects, 2, bpp, width, height);
    expect(n).toBe(5 * 4 * bpp + 4 * 2 * bpp);
    expect(native.copiedBytes() - before).toBe(n);
    let touched = 0;
    for (let i = 0; i < dst.length; i++) if (dst[i]) touched++;
    expect(touched).toBe(n);
    expect(dst[3 * stride + 2 * bpp]).toBe(0xab);
    expect(dst[3 * stride + 1 * bpp]).toBe(0);
  });

  test('large rectangles (streamed stores) arrive byte for byte, at any alignment', () => {
    // wider than the small-copy path takes, with strides and x offsets that leave rows unaligned
    const w = 1001;
    const h = 300;
    const srcStride = w * bpp + 12;
    const dstStride = w * bpp + 4;
    const src = Buffer.alloc(srcStride * h);
    for (let i = 0; i < src.length; i++) src[i] = (i * 7 + (i >> 9)) & 0xff;
    const dst = Buffer.alloc(dstStride * h + 3).subarray(3);
    const expected = Buffer.alloc(dstStride * h);
    const rects = Int32Array.from([3, 1, 997, 290, 0, 0, 1, 1]);
    const n = native.copyRects(dst, dstStride, src, srcStride, rects, 2, bpp, w, h);
    expect(n).toBe((997 * 290 + 1) * bpp);
    expect(997 * 290 * bpp).toBeGreaterThan(256 * 1024);
    for (const [x, y, rw, rh] of [
      [3, 1, 997, 290],
      [0, 0, 1, 1],
    ]) {
      for (let row = y; row < y + rh; row++) {
        src.copy(
          expected,
          row * dstStride + x * bpp,
          row * srcStride + x * bpp,
          row * srcStride + (x + rw) * bpp,
        );
      }
    }
    expect(dst.equals(expected)).toBe(true);
  });

  test('buffers too small for width × height are refused', () => {
    const small = Buffer.alloc(100);
    expect(() =>
      native.copyRects(small, stride, small, stride, new Int32Array(4), 1, bpp, width, height),
    ).toThrow(RangeError);
  });

  test.each([
    ['small', width, height],
    ['streamed', 512, 256],
  ])('a %s copy from a source truncated under the mapping gives -1, not a crash', (_, w, h) => {
    const size = w * bpp * h;
    const fd = native.memfdCreate('client-pool', size);
    const src = native.mmap(fd, 0, size, false);
    const dst = Buffer.alloc(size);
    // the client shrinks its pool: the mapping now faults past the new end
    ftruncateSync(fd, 0);
    const whole = Int32Array.from([0, 0, w, h]);
    expect(native.copyRects(dst, w * bpp, src, w * bpp, whole, 1, bpp, w, h)).toBe(-1);
    // and the guard leaves later copies working
    const one = Int32Array.from([0, 0, 1, 1]);
    expect(native.copyRects(dst, w * bpp, dst, w * bpp, one, 1, bpp, w, h)).toBe(bpp);
    native.munmap(src);
    native.close(fd);
  });
});

describe('pipes and fd kinds', () => {
  test('data goes through a pipe; ends are classified by access mode', () => {
    const [r, w] = native.pipe();
    expect(native.fdKind(r).kind).toBe('pipe-read');
    expect(native.fdKind(w).kind).toBe('pipe-write');
    const buf = Buffer.alloc(16);
    expect(native.readFd(r, buf, 0, 16)).toBe(-1);
    expect(native.writeFd(w, Buffer.from('hello'), 0, 5)).toBe(5);
    expect(native.waitReadable(r, 1000)).toBe(true);
    expect(native.readFd(r, buf, 0, 16)).toBe(5);
    native.close(w);
    expect(native.readFd(r, buf, 0, 16)).toBe(0);
    native.close(r);
  });
});

describe('seqpacket sockets', () => {
  test('packets keep their boundaries and carry fds', () => {
    const path = join(dir, 'link');
    const listener = native.listenSeqpacket(path);
    const guest = native.connectSeqpacket(path);
    const host = native.accept(listener);
    expect(native.fdKind(host).kind).toBe('socket');
    const memfd = native.memfdCreate('blob', 4096);
    native.sendmsg(guest, Buffer.from('one'), 0, 3, [memfd], 1);
    native.sendmsg(guest, Buffer.from('two!'), 0, 4, [], 0);
    const buf = Buffer.alloc(64);
    const out = new Int32Array(native.RECV_OUT_LENGTH);
    expect(native.waitReadable(host, 1000)).toBe(true);
    expect(native.recvmsg(host, buf, 0, 64, out)).toBe(3);
    expect(out[0]).toBe(1);
    expect(native.fdKind(out[2]).size).toBe(4096);
    native.close(out[2]);
    expect(native.recvmsg(host, buf, 0, 64, out)).toBe(4);
    expect(native.waitReadable(host, 0)).toBe(false);
    for (const fd of [memfd, guest, host, listener]) native.close(fd);
  });
});

// Commands a virtio-gpu cross-domain guest sends, and what it reads back: virtio-gpu control
// commands, cross-domain commands inside SUBMIT_3D, the channel ring's messages, and the Wayland
// wire format of the bytes a channel carries. Shared by the tests that play a hostile guest.

import { expect } from 'vitest';
import { fourcc } from '../../src/host/gralloc.js';
import {
  CrossDomainCmd,
  VirtioGpuCmd,
  VirtioGpuFlag,
  BlobMem,
} from '../../src/virtgpu/protocol.js';

export const XR24 = fourcc('XR24');
export const NV12 = fourcc('NV12');
export const YV12 = fourcc('YV12');
export const R8 = fourcc('R8  ');
export const RING = 4096;

// ---- virtio-gpu and cross-domain command builders --------------------------------------------

export interface Fence {
  id: bigint;
  ring?: number;
}

export function hdr(type: number, size: number, ctxId = 0, fence?: Fence): Buffer {
  const b = Buffer.alloc(size);
  b.writeUInt32LE(type, 0);
  if (fence) {
    b.writeUInt32LE(
      VirtioGpuFlag.FENCE | (fence.ring !== undefined ? VirtioGpuFlag.INFO_RING_IDX : 0),
      4,
    );
    b.writeBigUInt64LE(fence.id, 8);
    b[20] = fence.ring ?? 0;
  }
  b.writeUInt32LE(ctxId, 16);
  return b;
}

export function ctxCreate(ctxId: number, capset = 5, name = 'test'): Buffer {
  const b = hdr(VirtioGpuCmd.CTX_CREATE, 96, ctxId);
  b.writeUInt32LE(name.length, 24);
  b.writeUInt32LE(capset, 28);
  b.write(name, 32);
  return b;
}

export function resourceCmd(type: number, resId: number, ctxId = 0): Buffer {
  const b = hdr(type, 32, ctxId);
  b.writeUInt32LE(resId, 24);
  return b;
}

export function guestBlob(resId: number, addr: bigint, size: number): Buffer {
  const b = hdr(VirtioGpuCmd.RESOURCE_CREATE_BLOB, 56 + 16);
  b.writeUInt32LE(resId, 24);
  b.writeUInt32LE(BlobMem.GUEST, 28);
  b.writeUInt32LE(1, 32); // USE_MAPPABLE
  b.writeUInt32LE(1, 36);
  b.writeBigUInt64LE(BigInt(size), 48);
  b.writeBigUInt64LE(addr, 56);
  b.writeUInt32LE(size, 64);
  return b;
}

export function host3dBlob(ctxId: number, resId: number, blobId: number, size: number): Buffer {
  const b = hdr(VirtioGpuCmd.RESOURCE_CREATE_BLOB, 56, ctxId);
  b.writeUInt32LE(resId, 24);
  b.writeUInt32LE(BlobMem.HOST3D, 28);
  b.writeUInt32LE(3, 32); // MAPPABLE | SHAREABLE
  b.writeBigUInt64LE(BigInt(blobId), 40);
  b.writeBigUInt64LE(BigInt(size), 48);
  return b;
}

export function mapBlob(resId: number, offset = 0n): Buffer {
  const b = hdr(VirtioGpuCmd.RESOURCE_MAP_BLOB, 40);
  b.writeUInt32LE(resId, 24);
  b.writeBigUInt64LE(offset, 32);
  return b;
}

export function submit(ctxId: number, cmds: Buffer, fence?: Fence): Buffer {
  const b = Buffer.concat([hdr(VirtioGpuCmd.SUBMIT_3D, 32, ctxId, fence), cmds]);
  b.writeUInt32LE(cmds.length, 24);
  return b;
}

export function cdHeader(cmd: number, size: number, cmdSize = size): Buffer {
  const b = Buffer.alloc(size);
  b[0] = cmd;
  b.writeUInt16LE(cmdSize, 2);
  return b;
}

export function cdInit(queryRing: number, channelRing: number, channelType = 1): Buffer {
  const b = cdHeader(CrossDomainCmd.INIT, 20);
  b.writeUInt32LE(queryRing, 8);
  b.writeUInt32LE(channelRing, 12);
  b.writeUInt32LE(channelType, 16);
  return b;
}

export function cdImageReqs(width: number, height: number, format: number): Buffer {
  const b = cdHeader(CrossDomainCmd.GET_IMAGE_REQUIREMENTS, 24);
  b.writeUInt32LE(width, 8);
  b.writeUInt32LE(height, 12);
  b.writeUInt32LE(format, 16);
  b.writeUInt32LE(0x11, 20);
  return b;
}

export const cdPoll = (): Buffer => cdHeader(CrossDomainCmd.POLL, 16);

export function cdSend(data: Buffer, ids: { id: number; type: number }[] = []): Buffer {
  const b = cdHeader(CrossDomainCmd.SEND, 352 + data.length);
  b.writeUInt32LE(ids.length, 8);
  b.writeUInt32LE(data.length, 12);
  ids.forEach((x, i) => {
    b.writeUInt32LE(x.id, 16 + 4 * i);
    b.writeUInt32LE(x.type, 128 + 4 * i);
  });
  data.copy(b, 352);
  return b;
}

export function cdWrite(id: number, data: Buffer, hangUp: boolean): Buffer {
  const b = cdHeader(CrossDomainCmd.WRITE, 24 + data.length);
  b.writeUInt32LE(id, 8);
  b.writeUInt32LE(hangUp ? 1 : 0, 12);
  b.writeUInt32LE(data.length, 16);
  data.copy(b, 24);
  return b;
}

/** A message in the channel ring. */
export type RingMessage =
  | { cmd: 'receive'; data: Buffer; ids: { id: number; type: number; size: number }[] }
  | { cmd: 'read'; id: number; hangUp: boolean; data: Buffer };

export function parseRing(ring: Buffer): RingMessage {
  if (ring[0] === CrossDomainCmd.RECEIVE) {
    const count = ring.readUInt32LE(8);
    const size = ring.readUInt32LE(12);
    const ids = [];
    for (let i = 0; i < count; i++) {
      ids.push({
        id: ring.readUInt32LE(16 + 4 * i),
        type: ring.readUInt32LE(128 + 4 * i),
        size: ring.readUInt32LE(240 + 4 * i),
      });
    }
    return { cmd: 'receive', data: Buffer.from(ring.subarray(352, 352 + size)), ids };
  }
  expect(ring[0]).toBe(CrossDomainCmd.READ);
  return {
    cmd: 'read',
    id: ring.readUInt32LE(8),
    hangUp: ring.readUInt32LE(12) !== 0,
    data: Buffer.from(ring.subarray(24, 24 + ring.readUInt32LE(16))),
  };
}

export function parseReqs(ring: Buffer) {
  return {
    strides: [0, 1, 2, 3].map((i) => ring.readUInt32LE(4 * i)),
    offsets: [0, 1, 2, 3].map((i) => ring.readUInt32LE(16 + 4 * i)),
    modifier: ring.readBigUInt64LE(32),
    size: Number(ring.readBigUInt64LE(40)),
    blobId: ring.readUInt32LE(48),
    mapInfo: ring.readUInt32LE(52),
    memoryIdx: ring.readInt32LE(56),
    physicalDeviceIdx: ring.readInt32LE(60),
  };
}

// ---- Wayland wire helpers ----------------------------------------------------------------------

export function wl(id: number, opcode: number, ...args: (number | string)[]): Buffer {
  const parts: Buffer[] = [];
  for (const a of args) {
    if (typeof a === 'number') {
      const b = Buffer.alloc(4);
      b.writeUInt32LE(a >>> 0);
      parts.push(b);
    } else {
      const len = Buffer.byteLength(a) + 1;
      const b = Buffer.alloc(4 + Math.ceil(len / 4) * 4);
      b.writeUInt32LE(len);
      b.write(a, 4);
      parts.push(b);
    }
  }
  const body = Buffer.concat(parts);
  const h = Buffer.alloc(8);
  h.writeUInt32LE(id);
  h.writeUInt32LE(((8 + body.length) << 16) | opcode, 4);
  return Buffer.concat([h, body]);
}

export interface WlEvent {
  id: number;
  opcode: number;
  body: Buffer;
}

/** Splits whole Wayland messages off the front of `buf`; returns them and the rest. */
export function wlEvents(buf: Buffer): { events: WlEvent[]; rest: Buffer } {
  const events: WlEvent[] = [];
  let pos = 0;
  while (buf.length - pos >= 8) {
    const size = buf.readUInt32LE(pos + 4) >>> 16;
    if (size < 8 || buf.length - pos < size) break;
    events.push({
      id: buf.readUInt32LE(pos),
      opcode: buf.readUInt32LE(pos + 4) & 0xffff,
      body: buf.subarray(pos + 8, pos + size),
    });
    pos += size;
  }
  return { events, rest: buf.subarray(pos) };
}

export function wlString(body: Buffer, at: number): string {
  const len = body.readUInt32LE(at);
  return body.toString('utf8', at + 4, at + 4 + len - 1);
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

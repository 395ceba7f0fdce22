// The virtio-gpu device model of tswl-host, for one guest (one VM, or one local-link
// connection): the control commands a cross-domain guest uses, its resources and contexts, and
// fences. It knows nothing of the transport: a command comes in as bytes with a GuestMemory to
// resolve blob backing, and its response goes out through a callback, at once or when its fence
// signals.

import {
  BlobMem,
  CAPSET_CROSS_DOMAIN,
  CROSS_DOMAIN_CAPS_SIZE,
  CROSS_DOMAIN_CHANNEL_RING,
  CROSS_DOMAIN_CHANNEL_TYPE_WAYLAND,
  CROSS_DOMAIN_QUERY_RING,
  CTRL_HDR_SIZE,
  CTX_CREATE_SIZE,
  CrossDomainCmd,
  CtrlHdr,
  GET_CAPSET_INFO_SIZE,
  GET_CAPSET_SIZE,
  MEM_ENTRY_SIZE,
  MapCache,
  RESOURCE_CMD_SIZE,
  RESOURCE_CREATE_BLOB_SIZE,
  RESOURCE_MAP_BLOB_SIZE,
  RESP_CAPSET_INFO_SIZE,
  RESP_MAP_INFO_SIZE,
  SUBMIT_3D_SIZE,
  VirtioGpuCmd,
  VirtioGpuFeature,
  VirtioGpuFlag,
  VirtioGpuResp,
  setU32,
} from '../virtgpu/protocol.js';
import { DEFAULT_LIMITS, type GuestLimits } from './budget.js';
import { CrossDomainContext, type Resource } from './cross-domain.js';
import { DeviceError, type DeviceLog, errorMessage } from './errors.js';
import { FdLedger, closeQuietly, dupMemory } from './fds.js';
import type { GuestMemory, MemEntry } from './guest-memory.js';
import type { CompositorAccess, HostWayland } from './wayland.js';

/** Feature bits the device offers: F_VIRGL (needed for contexts), RESOURCE_BLOB, CONTEXT_INIT. */
export const DEVICE_FEATURES =
  (1n << BigInt(VirtioGpuFeature.VIRGL)) |
  (1n << BigInt(VirtioGpuFeature.RESOURCE_BLOB)) |
  (1n << BigInt(VirtioGpuFeature.CONTEXT_INIT));

/** The capsets the device reports, in GET_CAPSET_INFO index order. */
export const CAPSETS = [
  { id: CAPSET_CROSS_DOMAIN, maxVersion: 0, maxSize: CROSS_DOMAIN_CAPS_SIZE },
];

/** virtio_gpu_config: events_read, events_clear, num_scanouts, num_capsets. */
export function deviceConfig(): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt32LE(CAPSETS.length, 12);
  return b;
}

/** The cross-domain capabilities: version 1, Wayland channel only, no dma-buf, no GPU memory. */
export function crossDomainCaps(): Buffer {
  const b = Buffer.alloc(CROSS_DOMAIN_CAPS_SIZE);
  b.writeUInt32LE(1, 0);
  b.writeUInt32LE(1 << CROSS_DOMAIN_CHANNEL_TYPE_WAYLAND, 4);
  return b;
}

export interface Reply {
  /** The response: a virtio-gpu response header and its payload. */
  readonly response: Buffer;
  /**
   * OK_MAP_INFO: the blob's memory and where RESOURCE_MAP_BLOB asked for it in the host-visible
   * region. `fd` is the receiver's to close (the local link sends it with the reply; a
   * vhost-user backend maps it into the shared-memory region at `offset`).
   */
  readonly map?: { fd: number; offset: bigint; size: number; writable: boolean };
  /** RESOURCE_UNMAP_BLOB: the range of the host-visible region to unmap. */
  readonly unmap?: { offset: bigint; size: number };
}

export interface DeviceOptions {
  /** How Wayland channels reach the compositor, with the host's policy. */
  readonly wayland: HostWayland;
  readonly log: DeviceLog;
  /** Names the guest in log lines ("guest 3"). */
  readonly name: string;
  /** What this guest may make the host hold (DEFAULT_LIMITS when absent). */
  readonly limits?: GuestLimits;
  /** A backlog the transport paused for has drained (see backlog). */
  readonly onBacklogDrained?: () => void;
}

export const MAX_RESOURCES = 16384;
/** Most mem entries one GUEST blob may have, and all of a guest's blobs together. */
export const MAX_MEM_ENTRIES = 16384;
export const MAX_GUEST_MEM_ENTRIES = 65536;
/** Most device-level warnings one guest gets logged (contexts count their own). */
const MAX_WARNINGS = 100;

/** Fields of a control header that a response echoes when its command was fenced. */
interface Header {
  type: number;
  flags: number;
  /** The fence id's low and high words: only echoed, so never made a BigInt. */
  fenceLow: number;
  fenceHigh: number;
  ctxId: number;
  ringIdx: number;
}

export class GpuDevice {
  readonly ledger: FdLedger;
  readonly limits: GuestLimits;
  /** Counts shared by the guest's contexts (items, host memory) and its blobs (mem entries). */
  readonly usage = { items: 0, blobBytes: 0, memEntries: 0 };
  private readonly resources = new Map<number, Resource>();
  private readonly contexts = new Map<number, CrossDomainContext>();
  private access: CompositorAccess | null = null;
  private destroyed = false;
  private warnings = 0;
  private readonly log: DeviceLog;

  constructor(private readonly options: DeviceOptions) {
    this.limits = options.limits ?? DEFAULT_LIMITS;
    this.ledger = new FdLedger(this.limits.fds, () => {
      let n = 0;
      for (const ctx of this.contexts.values()) n += ctx.fdsInFlight;
      return n;
    });
    this.log = options.log;
  }

  /**
   * Bytes from this guest that the compositor or a clipboard reader has not taken yet. A
   * transport stops taking commands while it is large (BACKLOG_PAUSE), so a guest that floods the
   * compositor is slowed down instead of growing the host's memory.
   */
  get backlog(): number {
    let bytes = 0;
    for (const ctx of this.contexts.values()) bytes += ctx.backlog;
    return bytes;
  }

  /** Counts, for tests, leak checks and the budgets. */
  get stats(): {
    contexts: number;
    resources: number;
    fds: number;
    items: number;
    blobBytes: number;
    fences: number;
    queuedBytes: number;
  } {
    const fences = this.pendingFences();
    return {
      contexts: this.contexts.size,
      resources: this.resources.size,
      fds: this.ledger.open,
      items: this.usage.items,
      blobBytes: this.usage.blobBytes,
      fences,
      queuedBytes: this.queuedBytes(),
    };
  }

  private pendingFences(): number {
    let fences = 0;
    for (const ctx of this.contexts.values()) fences += ctx.pendingFences;
    return fences;
  }

  private queuedBytes(): number {
    let bytes = 0;
    for (const ctx of this.contexts.values()) bytes += ctx.queuedBytes;
    return bytes;
  }

  /**
   * Executes one control-queue command. `reply` is called exactly once with its response: before
   * this returns, or later when the command's fence signals (a ring-1 fence waits for a
   * host→guest message). `cmd` is only read during the call. `memory` resolves the backing of a
   * GUEST blob that RESOURCE_CREATE_BLOB creates.
   */
  handleCommand(cmd: Uint8Array, memory: GuestMemory, reply: (reply: Reply) => void): void {
    if (this.destroyed) return;
    if (cmd.length < CTRL_HDR_SIZE) {
      this.warn(`a ${cmd.length}-byte command, shorter than the control header`);
      reply({ response: header(VirtioGpuResp.ERR_UNSPEC) });
      return;
    }
    const v = new DataView(cmd.buffer, cmd.byteOffset, cmd.byteLength);
    const hdr: Header = {
      type: v.getUint32(CtrlHdr.TYPE, true),
      flags: v.getUint32(CtrlHdr.FLAGS, true),
      fenceLow: v.getUint32(CtrlHdr.FENCE_ID, true),
      fenceHigh: v.getUint32(CtrlHdr.FENCE_ID + 4, true),
      ctxId: v.getUint32(CtrlHdr.CTX_ID, true),
      ringIdx: cmd[CtrlHdr.RING_IDX],
    };
    let out: Reply;
    try {
      out = this.dispatch(hdr, v, memory);
    } catch (e) {
      if (e instanceof DeviceError) {
        if (!e.quiet) this.warn(`${commandName(hdr.type)}: ${e.message}`);
        else if (this.log.verbose) this.info(`${commandName(hdr.type)}: ${e.message}`);
        out = { response: header(e.response) };
      } else {
        // A bug of ours must not take the other guests down with this one's command.
        this.warn(`${commandName(hdr.type)}: internal error: ${(e as Error)?.stack ?? String(e)}`);
        out = { response: header(VirtioGpuResp.ERR_UNSPEC) };
      }
    }
    if (!(hdr.flags & VirtioGpuFlag.FENCE)) {
      reply(out);
      return;
    }
    // Fenced: the response echoes the fence, and leaves when the fence signals.
    const r = out.response;
    setU32(r, CtrlHdr.FLAGS, hdr.flags & (VirtioGpuFlag.FENCE | VirtioGpuFlag.INFO_RING_IDX));
    setU32(r, CtrlHdr.FENCE_ID, hdr.fenceLow);
    setU32(r, CtrlHdr.FENCE_ID + 4, hdr.fenceHigh);
    setU32(r, CtrlHdr.CTX_ID, hdr.ctxId);
    r[CtrlHdr.RING_IDX] = hdr.ringIdx;
    this.fence(hdr, out, reply);
  }

  /** The guest is gone: every context, resource, fd and mapping it had is released. */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    for (const ctx of this.contexts.values()) ctx.destroy(false);
    this.contexts.clear();
    for (const r of this.resources.values()) this.release(r);
    this.resources.clear();
    this.access?.close();
    this.access = null;
  }

  private fence(hdr: Header, out: Reply, reply: (reply: Reply) => void): void {
    if (hdr.flags & VirtioGpuFlag.INFO_RING_IDX) {
      const ctx = this.contexts.get(hdr.ctxId);
      if (ctx && hdr.ringIdx === CROSS_DOMAIN_CHANNEL_RING) {
        if (this.pendingFences() >= this.limits.fences) {
          // a guest polls once per channel: this many waiting is a guest hoarding our memory
          ctx.disable(`the guest has ${this.limits.fences} fenced commands waiting, its limit`);
        }
        const held = out.map ? out.map.fd : -1;
        if (held >= 0) {
          // the answer keeps a file open until its fence signals: it counts for the guest
          if (!this.ledger.hasRoom()) {
            closeQuietly(held);
            this.warn('RESOURCE_MAP_BLOB: the guest holds too many fds; refused');
            reply({ response: header(VirtioGpuResp.ERR_OUT_OF_MEMORY) });
            return;
          }
          this.ledger.take(held);
        }
        ctx.addRingFence({
          signal: () => {
            if (held >= 0) this.ledger.untake(held);
            reply(out);
          },
          drop: () => {
            if (held >= 0) this.ledger.close(held);
          },
        });
        return;
      }
      if (ctx && hdr.ringIdx !== CROSS_DOMAIN_QUERY_RING) {
        this.warn(
          `context ${hdr.ctxId}: a fence on ring ${hdr.ringIdx}, which does not exist; signalled at once`,
        );
      }
    }
    // Query-ring fences (the reply is already written) and global fences signal at once.
    reply(out);
  }

  private dispatch(hdr: Header, v: DataView, memory: GuestMemory): Reply {
    const need = (size: number): void => {
      if (v.byteLength < size) {
        throw new DeviceError(
          `${v.byteLength} bytes, less than the ${size} the command needs`,
          VirtioGpuResp.ERR_INVALID_PARAMETER,
        );
      }
    };
    switch (hdr.type) {
      case VirtioGpuCmd.GET_CAPSET_INFO: {
        need(GET_CAPSET_INFO_SIZE);
        const index = v.getUint32(24, true);
        const capset = CAPSETS[index];
        if (!capset) {
          // Guests without a config space (the local link) probe indexes until one fails.
          throw new DeviceError(
            `capset index ${index} does not exist`,
            VirtioGpuResp.ERR_INVALID_PARAMETER,
            true,
          );
        }
        const r = header(VirtioGpuResp.OK_CAPSET_INFO, RESP_CAPSET_INFO_SIZE);
        r.writeUInt32LE(capset.id, 24);
        r.writeUInt32LE(capset.maxVersion, 28);
        r.writeUInt32LE(capset.maxSize, 32);
        return { response: r };
      }
      case VirtioGpuCmd.GET_CAPSET: {
        need(GET_CAPSET_SIZE);
        const id = v.getUint32(24, true);
        const version = v.getUint32(28, true);
        if (id !== CAPSET_CROSS_DOMAIN || version !== 0) {
          throw new DeviceError(
            `capset ${id} version ${version} does not exist`,
            VirtioGpuResp.ERR_INVALID_PARAMETER,
          );
        }
        const r = header(VirtioGpuResp.OK_CAPSET, CTRL_HDR_SIZE + CROSS_DOMAIN_CAPS_SIZE);
        crossDomainCaps().copy(r, CTRL_HDR_SIZE);
        return { response: r };
      }
      case VirtioGpuCmd.CTX_CREATE:
        need(CTX_CREATE_SIZE);
        this.createContext(hdr.ctxId, v);
        return ok();
      case VirtioGpuCmd.CTX_DESTROY: {
        const ctx = this.context(hdr.ctxId);
        this.contexts.delete(hdr.ctxId);
        for (const id of ctx.attached) this.resources.get(id)?.contexts.delete(hdr.ctxId);
        ctx.destroy(true);
        if (this.log.verbose) this.info(`context ${hdr.ctxId} destroyed`);
        return ok();
      }
      case VirtioGpuCmd.CTX_ATTACH_RESOURCE: {
        need(RESOURCE_CMD_SIZE);
        const ctx = this.context(hdr.ctxId);
        const r = this.resource(v.getUint32(24, true));
        ctx.attached.add(r.id);
        r.contexts.add(ctx.id);
        return ok();
      }
      case VirtioGpuCmd.CTX_DETACH_RESOURCE: {
        need(RESOURCE_CMD_SIZE);
        const ctx = this.context(hdr.ctxId);
        const r = this.resource(v.getUint32(24, true));
        ctx.attached.delete(r.id);
        r.contexts.delete(ctx.id);
        return ok();
      }
      case VirtioGpuCmd.RESOURCE_CREATE_BLOB:
        need(RESOURCE_CREATE_BLOB_SIZE);
        this.createBlob(hdr, v, memory);
        return ok();
      case VirtioGpuCmd.RESOURCE_UNREF: {
        need(RESOURCE_CMD_SIZE);
        const r = this.resource(v.getUint32(24, true));
        this.resources.delete(r.id);
        for (const ctxId of r.contexts) this.contexts.get(ctxId)?.attached.delete(r.id);
        const unmap = r.mappedAt !== null ? { offset: r.mappedAt, size: r.size } : undefined;
        this.release(r);
        return unmap ? { response: header(VirtioGpuResp.OK_NODATA), unmap } : ok();
      }
      case VirtioGpuCmd.SUBMIT_3D: {
        need(SUBMIT_3D_SIZE);
        const ctx = this.context(hdr.ctxId);
        const size = v.getUint32(24, true);
        if (size > v.byteLength - SUBMIT_3D_SIZE) {
          throw new DeviceError(
            `SUBMIT_3D of ${size} bytes, but only ${v.byteLength - SUBMIT_3D_SIZE} follow`,
            VirtioGpuResp.ERR_INVALID_PARAMETER,
          );
        }
        const cmds = new Uint8Array(v.buffer, v.byteOffset + SUBMIT_3D_SIZE, size);
        // The context has logged the reason already.
        return ctx.submit(cmds) === null ? ok() : { response: header(VirtioGpuResp.ERR_UNSPEC) };
      }
      case VirtioGpuCmd.RESOURCE_MAP_BLOB: {
        need(RESOURCE_MAP_BLOB_SIZE);
        const r = this.resource(v.getUint32(24, true));
        const offset = v.getBigUint64(32, true);
        if (r.fd < 0) {
          throw new DeviceError(
            `resource ${r.id} has no host memory to map`,
            VirtioGpuResp.ERR_INVALID_PARAMETER,
          );
        }
        let fd: number;
        try {
          fd = dupMemory(r.fd, r.fdWritable);
        } catch (e) {
          throw new DeviceError(
            `resource ${r.id}: ${errorMessage(e)}`,
            VirtioGpuResp.ERR_OUT_OF_MEMORY,
          );
        }
        r.mappedAt = offset;
        const resp = header(VirtioGpuResp.OK_MAP_INFO, RESP_MAP_INFO_SIZE);
        resp.writeUInt32LE(MapCache.CACHED, 24);
        return { response: resp, map: { fd, offset, size: r.size, writable: r.fdWritable } };
      }
      case VirtioGpuCmd.RESOURCE_UNMAP_BLOB: {
        need(RESOURCE_CMD_SIZE);
        const r = this.resource(v.getUint32(24, true));
        if (r.mappedAt === null) {
          throw new DeviceError(
            `resource ${r.id} is not mapped`,
            VirtioGpuResp.ERR_INVALID_PARAMETER,
          );
        }
        const unmap = { offset: r.mappedAt, size: r.size };
        r.mappedAt = null;
        return { response: header(VirtioGpuResp.OK_NODATA), unmap };
      }
      default:
        throw new DeviceError('unknown or unsupported command');
    }
  }

  private createContext(ctxId: number, v: DataView): void {
    if (ctxId === 0) throw new DeviceError('context id 0', VirtioGpuResp.ERR_INVALID_CONTEXT_ID);
    if (this.contexts.has(ctxId)) {
      throw new DeviceError(
        `context ${ctxId} already exists`,
        VirtioGpuResp.ERR_INVALID_CONTEXT_ID,
      );
    }
    if (this.contexts.size >= this.limits.contexts) {
      throw new DeviceError(
        `the guest has ${this.limits.contexts} contexts already, its limit`,
        VirtioGpuResp.ERR_OUT_OF_MEMORY,
      );
    }
    const capset = v.getUint32(28, true) & 0xff;
    // capset 0: a context created without CONTEXT_INIT gets the default (only) component.
    if (capset !== CAPSET_CROSS_DOMAIN && capset !== 0) {
      throw new DeviceError(
        `context ${ctxId} asks for capset ${capset}; only cross-domain (5) is offered`,
        VirtioGpuResp.ERR_INVALID_PARAMETER,
      );
    }
    const nameLength = Math.min(v.getUint32(24, true), 64);
    let name = '';
    for (let i = 0; i < nameLength; i++) {
      const ch = v.getUint8(32 + i);
      if (ch === 0) break;
      name += ch >= 0x20 && ch < 0x7f ? String.fromCharCode(ch) : '?';
    }
    const label = `${this.options.name} context ${ctxId}${name ? ` (${name})` : ''}`;
    this.contexts.set(
      ctxId,
      new CrossDomainContext(ctxId, label, {
        log: this.log,
        ledger: this.ledger,
        limits: this.limits,
        usage: this.usage,
        resource: (id) => this.resources.get(id),
        openRelay: (client, ctxLabel) => {
          this.access ??= this.options.wayland.access(this.options.name);
          return this.options.wayland.openRelay(this.access, client, (m) =>
            this.log.warn(`${ctxLabel}: ${m}`),
          );
        },
        queuedBytes: () => this.queuedBytes(),
        backlogDrained: () => this.options.onBacklogDrained?.(),
      }),
    );
    if (this.log.verbose) this.info(`context ${ctxId} created${name ? ` for ${name}` : ''}`);
  }

  private createBlob(hdr: Header, v: DataView, memory: GuestMemory): void {
    const id = v.getUint32(24, true);
    const blobMem = v.getUint32(28, true);
    const count = v.getUint32(36, true);
    const blobId = v.getBigUint64(40, true);
    const size = v.getBigUint64(48, true);
    if (id === 0 || this.resources.has(id)) {
      throw new DeviceError(
        id === 0 ? 'resource id 0' : `resource ${id} already exists`,
        VirtioGpuResp.ERR_INVALID_RESOURCE_ID,
      );
    }
    if (this.resources.size >= MAX_RESOURCES) {
      throw new DeviceError(
        `the guest has ${MAX_RESOURCES} resources already`,
        VirtioGpuResp.ERR_OUT_OF_MEMORY,
      );
    }
    if (size === 0n || size > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new DeviceError(`blob size ${size}`, VirtioGpuResp.ERR_INVALID_PARAMETER);
    }
    let r: Resource;
    if (blobMem === BlobMem.GUEST) {
      if (count === 0 || count > MAX_MEM_ENTRIES) {
        throw new DeviceError(
          `GUEST blob with ${count} mem entries`,
          VirtioGpuResp.ERR_INVALID_PARAMETER,
        );
      }
      if (this.usage.memEntries + count > MAX_GUEST_MEM_ENTRIES) {
        throw new DeviceError(
          `GUEST blob: the guest's blobs have ${this.usage.memEntries} mem entries, ${count} more is over ${MAX_GUEST_MEM_ENTRIES}`,
          VirtioGpuResp.ERR_OUT_OF_MEMORY,
        );
      }
      if (v.byteLength < RESOURCE_CREATE_BLOB_SIZE + count * MEM_ENTRY_SIZE) {
        throw new DeviceError(
          `GUEST blob: its ${count} mem entries run past the command`,
          VirtioGpuResp.ERR_INVALID_PARAMETER,
        );
      }
      const entries: MemEntry[] = [];
      for (let i = 0; i < count; i++) {
        const at = RESOURCE_CREATE_BLOB_SIZE + i * MEM_ENTRY_SIZE;
        entries.push({ addr: v.getBigUint64(at, true), length: v.getUint32(at + 8, true) });
      }
      let backing;
      try {
        backing = memory.resolve(entries, this.ledger);
      } catch (e) {
        throw new DeviceError(
          `GUEST blob ${id}: ${errorMessage(e)}`,
          VirtioGpuResp.ERR_INVALID_PARAMETER,
        );
      }
      this.usage.memEntries += count;
      r = {
        id,
        blobMem,
        size: Number(size),
        backing,
        fd: -1,
        fdWritable: false,
        blobBytes: 0,
        memEntries: count,
        contexts: new Set(),
        mappedAt: null,
      };
    } else if (blobMem === BlobMem.HOST3D) {
      const ctx = this.contexts.get(hdr.ctxId);
      if (!ctx) {
        throw new DeviceError(
          `HOST3D blob ${id} in context ${hdr.ctxId}, which does not exist`,
          VirtioGpuResp.ERR_INVALID_CONTEXT_ID,
        );
      }
      const mem = ctx.createBlob(blobId, size);
      r = {
        id,
        blobMem,
        size: Number(size),
        backing: null,
        fd: mem.fd,
        fdWritable: mem.writable,
        blobBytes: mem.bytes,
        memEntries: 0,
        contexts: new Set(),
        mappedAt: null,
      };
    } else {
      throw new DeviceError(
        `blob_mem ${blobMem} is not supported (GUEST 1 and HOST3D 2 are)`,
        VirtioGpuResp.ERR_INVALID_PARAMETER,
      );
    }
    this.resources.set(id, r);
    if (this.log.verbose)
      this.info(
        `resource ${id}: ${blobMem === BlobMem.GUEST ? 'guest' : 'host'} blob of ${size} bytes`,
      );
  }

  private release(r: Resource): void {
    r.backing?.release();
    if (r.fd >= 0) this.ledger.close(r.fd);
    r.fd = -1;
    this.usage.blobBytes -= r.blobBytes;
    this.usage.memEntries -= r.memEntries;
    r.blobBytes = 0;
    r.memEntries = 0;
    r.contexts.clear();
  }

  private context(ctxId: number): CrossDomainContext {
    const ctx = this.contexts.get(ctxId);
    if (!ctx)
      throw new DeviceError(
        `context ${ctxId} does not exist`,
        VirtioGpuResp.ERR_INVALID_CONTEXT_ID,
      );
    return ctx;
  }

  private resource(id: number): Resource {
    const r = this.resources.get(id);
    if (!r)
      throw new DeviceError(`resource ${id} does not exist`, VirtioGpuResp.ERR_INVALID_RESOURCE_ID);
    return r;
  }

  private info(message: string): void {
    this.log.info(`${this.options.name}: ${message}`);
  }

  /**
   * A refused command (or what a transport refused of this guest): a warning, until this guest
   * has had its share of them.
   */
  warn(message: string): void {
    this.warnings++;
    if (this.warnings <= MAX_WARNINGS) this.log.warn(`${this.options.name}: ${message}`);
    if (this.warnings === MAX_WARNINGS) {
      this.log.warn(`${this.options.name}: further errors of this guest are logged with -v only`);
    } else if (this.warnings > MAX_WARNINGS && this.log.verbose) {
      this.info(message);
    }
  }
}

/**
 * Whether a control command only waits for the host (a SUBMIT_3D of POLLs alone): such a command
 * adds nothing to a guest's backlog, so it goes on while the guest's other commands are held back
 * (a paste between two of its clients drains only through its polls).
 */
export function onlyPolls(cmd: Uint8Array): boolean {
  if (cmd.length < SUBMIT_3D_SIZE + 8) return false;
  const v = new DataView(cmd.buffer, cmd.byteOffset, cmd.byteLength);
  if (v.getUint32(CtrlHdr.TYPE, true) !== VirtioGpuCmd.SUBMIT_3D) return false;
  const end = SUBMIT_3D_SIZE + v.getUint32(24, true);
  if (end > cmd.length) return false;
  for (let pos = SUBMIT_3D_SIZE; pos < end;) {
    const size = end - pos >= 8 ? v.getUint16(pos + 2, true) : 0;
    if (cmd[pos] !== CrossDomainCmd.POLL || size < 8) return false;
    pos += size;
  }
  return true;
}

function header(type: number, size = CTRL_HDR_SIZE): Buffer {
  const b = Buffer.alloc(size);
  setU32(b, 0, type);
  return b;
}

function ok(): Reply {
  return { response: header(VirtioGpuResp.OK_NODATA) };
}

const COMMAND_NAMES = new Map<number, string>(
  Object.entries(VirtioGpuCmd).map(([name, value]) => [value, name]),
);

function commandName(type: number): string {
  return COMMAND_NAMES.get(type) ?? `command 0x${type.toString(16)}`;
}

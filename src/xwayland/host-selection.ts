// One selection (the clipboard, or the primary selection) on Xwayland's host connection, as the
// window manager's own objects: a data device that hears the host's selection while an X window
// has keyboard focus, the offers it brings, and a source that offers the X selection to the host.
// They live on Xwayland's connection because that is the client the compositor gives focus to,
// and whose input serials set_selection needs.
import {
  dispatchWlDataDeviceEvent,
  dispatchWlDataOfferEvent,
  dispatchWlDataSourceEvent,
  writeWlDataDeviceManagerCreateDataSource,
  writeWlDataDeviceManagerGetDataDevice,
  writeWlDataDeviceSetSelection,
  writeWlDataOfferDestroy,
  writeWlDataOfferReceive,
  writeWlDataSourceDestroy,
  writeWlDataSourceOffer,
} from '../generated/wayland.js';
import {
  dispatchZwpPrimarySelectionDeviceV1Event,
  dispatchZwpPrimarySelectionOfferV1Event,
  dispatchZwpPrimarySelectionSourceV1Event,
  writeZwpPrimarySelectionDeviceManagerV1CreateSource,
  writeZwpPrimarySelectionDeviceManagerV1GetDevice,
  writeZwpPrimarySelectionDeviceV1SetSelection,
  writeZwpPrimarySelectionOfferV1Destroy,
  writeZwpPrimarySelectionOfferV1Receive,
  writeZwpPrimarySelectionSourceV1Destroy,
  writeZwpPrimarySelectionSourceV1Offer,
} from '../generated/primary-selection-unstable-v1.js';
import * as native from '../native/index.js';
import type { WlObject } from '../relay/objects.js';
import { adoptOwnedObject, newOwnedObject, ownedObjectDestroyed } from '../relay/owned.js';
import type { Relay } from '../relay/relay.js';
import type { ArgReader } from '../wire/reader.js';
import type { MessageWriter } from '../wire/writer.js';
import { closeQuietly, reopen } from '../wire/fd-queue.js';

/** The requests and events that differ between wl_data_device and zwp_primary_selection. */
interface Flavour {
  readonly device: string;
  readonly offer: string;
  readonly source: string;
  getDevice(w: MessageWriter, manager: number, id: number, seat: number): void;
  createSource(w: MessageWriter, manager: number, id: number): void;
  setSelection(w: MessageWriter, device: number, source: number, serial: number): void;
  offerMime(w: MessageWriter, source: number, mime: string): void;
  destroySource(w: MessageWriter, source: number): void;
  receive(w: MessageWriter, offer: number, mime: string, fd: number): void;
  destroyOffer(w: MessageWriter, offer: number): void;
  deviceEvent(h: DeviceEvents, opcode: number, args: ArgReader): void;
  offerEvent(h: { offer(mime: string): void }, opcode: number, args: ArgReader): void;
  sourceEvent(h: SourceEvents, opcode: number, args: ArgReader): void;
}

interface DeviceEvents {
  dataOffer(id: number): void;
  selection(id: number): void;
  /** A drag entered with this offer (wl_data_device only). */
  dragOffer(id: number): void;
}

interface SourceEvents {
  send(mime: string, fd: number): void;
  cancelled(): void;
}

const CLIPBOARD: Flavour = {
  device: 'wl_data_device',
  offer: 'wl_data_offer',
  source: 'wl_data_source',
  getDevice: writeWlDataDeviceManagerGetDataDevice,
  createSource: writeWlDataDeviceManagerCreateDataSource,
  setSelection: writeWlDataDeviceSetSelection,
  offerMime: writeWlDataSourceOffer,
  destroySource: writeWlDataSourceDestroy,
  receive: writeWlDataOfferReceive,
  destroyOffer: writeWlDataOfferDestroy,
  deviceEvent: (h, op, args) =>
    void dispatchWlDataDeviceEvent(
      {
        data_offer: (_c, id) => void h.dataOffer(id),
        selection: (_c, id) => void h.selection(id),
        enter: (_c, _serial, _surface, _x, _y, id) => void h.dragOffer(id),
      },
      null,
      op,
      args,
    ),
  offerEvent: (h, op, args) =>
    void dispatchWlDataOfferEvent({ offer: (_c, mime) => void h.offer(mime) }, null, op, args),
  sourceEvent: (h, op, args) =>
    void dispatchWlDataSourceEvent(
      { send: (_c, mime, fd) => void h.send(mime, fd), cancelled: () => void h.cancelled() },
      null,
      op,
      args,
    ),
};

const PRIMARY: Flavour = {
  device: 'zwp_primary_selection_device_v1',
  offer: 'zwp_primary_selection_offer_v1',
  source: 'zwp_primary_selection_source_v1',
  getDevice: writeZwpPrimarySelectionDeviceManagerV1GetDevice,
  createSource: writeZwpPrimarySelectionDeviceManagerV1CreateSource,
  setSelection: writeZwpPrimarySelectionDeviceV1SetSelection,
  offerMime: writeZwpPrimarySelectionSourceV1Offer,
  destroySource: writeZwpPrimarySelectionSourceV1Destroy,
  receive: writeZwpPrimarySelectionOfferV1Receive,
  destroyOffer: writeZwpPrimarySelectionOfferV1Destroy,
  deviceEvent: (h, op, args) =>
    void dispatchZwpPrimarySelectionDeviceV1Event(
      {
        data_offer: (_c, id) => void h.dataOffer(id),
        selection: (_c, id) => void h.selection(id),
      },
      null,
      op,
      args,
    ),
  offerEvent: (h, op, args) =>
    void dispatchZwpPrimarySelectionOfferV1Event(
      { offer: (_c, mime) => void h.offer(mime) },
      null,
      op,
      args,
    ),
  sourceEvent: (h, op, args) =>
    void dispatchZwpPrimarySelectionSourceV1Event(
      { send: (_c, mime, fd) => void h.send(mime, fd), cancelled: () => void h.cancelled() },
      null,
      op,
      args,
    ),
};

/** The host's selection as offered to us: its mime types, and a way to read it as one of them. */
export class HostOffer {
  readonly mimeTypes: string[] = [];

  constructor(
    private readonly selection: HostSelection,
    readonly obj: WlObject,
  ) {}

  /**
   * Asks for the data as `mime`: the read end of a pipe (nonblocking, the caller's to close);
   * -1 once the offer is gone (the host's selection changed meanwhile).
   */
  receive(mime: string): number {
    if (this.obj.dying) return -1;
    return this.selection.receive(this, mime);
  }
}

export interface HostSelectionEvents {
  /** The host's selection changed to one that is not ours: an offer, or null for none. */
  selection(offer: HostOffer | null): void;
  /** A host client reads our source as `mime` into `fd` (nonblocking, ours to close). */
  send(mime: string, fd: number): void;
  /** Our source is no longer the host's selection. */
  cancelled(): void;
}

export class HostSelection {
  private readonly flavour: Flavour;
  private readonly device: WlObject;
  private readonly offers = new Map<number, HostOffer>();
  private current: HostOffer | null = null;
  private source: WlObject | null = null;
  /**
   * Offered by every source of ours and by no one else's (a token per run): the host's selection
   * is ours, not another client's, exactly when its offer lists it.
   */
  private readonly marker: string;

  constructor(
    private readonly relay: Relay,
    kind: 'clipboard' | 'primary',
    private readonly manager: WlObject,
    seat: WlObject,
    private readonly events: HostSelectionEvents,
  ) {
    this.flavour = kind === 'clipboard' ? CLIPBOARD : PRIMARY;
    this.marker = `application/x-tswl-proxy-xwm-${process.pid}-${Math.random().toString(36).slice(2, 10)}`;
    const handlers: DeviceEvents = {
      dataOffer: (id) => this.dataOffer(id),
      selection: (id) => this.selectionChanged(id),
      dragOffer: (id) => {
        // no drag and drop between X and Wayland: the offer of a drag over an X window goes
        if (id !== 0) this.dropOffer(this.offers.get(id));
      },
    };
    this.device = newOwnedObject(relay, this.flavour.device, manager.version, (op, args) =>
      this.flavour.deviceEvent(handlers, op, args),
    );
    this.flavour.getDevice(relay.host.out, manager.hostId, this.device.hostId, seat.hostId);
    relay.flush();
  }

  /** Makes the X selection the host's: a new source offering `mimeTypes`. */
  offer(mimeTypes: readonly string[], serial: number): void {
    this.dropSource();
    const out = this.relay.host.out;
    const handlers: SourceEvents = {
      send: (mime, fd) => this.send(source, mime, fd),
      cancelled: () => {
        if (this.source !== source) return;
        this.dropSource();
        this.events.cancelled();
      },
    };
    const source = newOwnedObject(
      this.relay,
      this.flavour.source,
      this.manager.version,
      (op, args) => this.flavour.sourceEvent(handlers, op, args),
    );
    this.source = source;
    this.flavour.createSource(out, this.manager.hostId, source.hostId);
    for (const mime of [...mimeTypes, this.marker])
      this.flavour.offerMime(out, source.hostId, mime);
    this.flavour.setSelection(out, this.device.hostId, source.hostId, serial);
    this.relay.flush();
  }

  /** The X selection went away: clears the host's selection if it is still ours. */
  withdraw(serial: number): void {
    if (!this.source) return;
    this.dropSource();
    this.flavour.setSelection(this.relay.host.out, this.device.hostId, 0, serial);
    this.relay.flush();
  }

  receive(offer: HostOffer, mime: string): number {
    // out of fds: this read fails, nothing else
    let fds: [number, number];
    try {
      fds = native.pipe();
    } catch {
      return -1;
    }
    const [readEnd, writeEnd] = fds;
    let handed: number;
    try {
      // the source client writes as into any pipe: blocking, while our end stays nonblocking
      handed = reopen(writeEnd, 'write');
    } catch {
      closeQuietly(readEnd);
      return -1;
    } finally {
      closeQuietly(writeEnd);
    }
    // the writer owns the fd from here and closes it once sent
    this.flavour.receive(this.relay.host.out, offer.obj.hostId, mime, handed);
    this.relay.flush();
    return readEnd;
  }

  private send(source: WlObject, mime: string, fd: number): void {
    let ours = -1;
    try {
      if (source === this.source && mime !== this.marker) ours = reopen(fd, 'write', true);
    } catch {
      // not a pipe we can open: the reader gets nothing
    } finally {
      closeQuietly(fd);
    }
    if (ours >= 0) this.events.send(mime, ours);
  }

  private dataOffer(id: number): void {
    let offer: HostOffer;
    const obj = adoptOwnedObject(
      this.relay,
      id,
      this.flavour.offer,
      this.device.version,
      (op, args) =>
        this.flavour.offerEvent(
          {
            offer: (mime) => {
              if (offer.mimeTypes.length < 256) offer.mimeTypes.push(mime);
            },
          },
          op,
          args,
        ),
    );
    offer = new HostOffer(this, obj);
    this.offers.set(id, offer);
  }

  private selectionChanged(id: number): void {
    const offer = id === 0 ? null : (this.offers.get(id) ?? null);
    if (this.current && this.current !== offer) this.dropOffer(this.current);
    this.current = offer;
    if (offer?.mimeTypes.includes(this.marker)) {
      // our own source, as the host now offers it: nothing new for the X side
      this.dropOffer(offer);
      this.current = null;
      return;
    }
    this.events.selection(offer);
  }

  private dropOffer(offer: HostOffer | undefined): void {
    if (!offer || offer.obj.dying) return;
    this.offers.delete(offer.obj.hostId);
    this.flavour.destroyOffer(this.relay.host.out, offer.obj.hostId);
    ownedObjectDestroyed(this.relay, offer.obj);
  }

  private dropSource(): void {
    if (!this.source) return;
    this.flavour.destroySource(this.relay.host.out, this.source.hostId);
    ownedObjectDestroyed(this.relay, this.source);
    this.source = null;
  }
}

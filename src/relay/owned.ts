// Host objects the proxy makes for itself on a client's host connection (a role for an Xwayland
// surface, its own registry, a data device): clientId 0, so nothing of them reaches the client,
// and an owner that takes their events.
import { WireError } from '../wire/errors.js';
import type { ArgReader } from '../wire/reader.js';
import { DisplayError, ProtocolError } from './errors.js';
import { SERVER_ID_START, WlObject } from './objects.js';
import type { Relay } from './relay.js';

export type EventOwner = (opcode: number, args: ArgReader) => void;

/** A new host object with an id of the proxy's choosing; send the request that creates it next. */
export function newOwnedObject(
  relay: Relay,
  iface: string,
  version: number,
  owner: EventOwner,
): WlObject {
  const id = relay.hostIds.allocate(false);
  const obj = new WlObject(0, id, relay.tables.require(iface), version);
  obj.owner = owner;
  relay.hostIds.set(id, obj);
  return obj;
}

/** A host object created by an event of a proxy-owned object (a new_id argument it read). */
export function adoptOwnedObject(
  relay: Relay,
  hostId: number,
  iface: string,
  version: number,
  owner: EventOwner,
): WlObject {
  const stale = relay.hostIds.get(hostId);
  if (
    hostId < SERVER_ID_START ||
    (stale && !stale.dying) ||
    (!stale && !relay.hostIds.canInsert(hostId, true))
  ) {
    throw new WireError(`host created object ${hostId} over a live one or out of sequence`);
  }
  const obj = new WlObject(0, hostId, relay.tables.require(iface), version);
  obj.owner = owner;
  relay.hostIds.set(hostId, obj);
  return obj;
}

/**
 * The proxy destroyed one of its objects (after writing the destructor request): ids the proxy
 * allocated wait for the host's delete_id; an id the host allocated stays a zombie, whose late
 * events are dropped, until the host creates another object with it.
 */
export function ownedObjectDestroyed(_relay: Relay, obj: WlObject): void {
  obj.dying = true;
  obj.owner = ignoreEvents;
}

function ignoreEvents(): void {}

/**
 * A client object with nothing on the host (hostId 0), for an interface the proxy implements
 * itself: its hooks must handle every request to it.
 */
export function newClientOnlyObject(
  relay: Relay,
  id: number,
  iface: string,
  version: number,
): WlObject {
  if (!relay.clientIds.canInsert(id, false))
    throw new ProtocolError(1, DisplayError.invalidObject, `invalid new id ${id}`);
  const obj = new WlObject(id, 0, relay.tables.require(iface), version);
  relay.clientIds.set(id, obj);
  return obj;
}

export { deleteClientOnlyObject } from './shm.js';

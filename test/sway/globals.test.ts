// What a client sees of sway 1.12's globals through the proxy: everything sway offers, less
// exactly the globals the proxy cannot relay (interfaces without XML in protocols/, and across
// the VM boundary the cross-domain hidden list), each at the lower of the two versions.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { CROSS_DOMAIN_HIDDEN_GLOBALS } from '../../src/links/cross-domain.js';
import {
  type Globals,
  expectedThroughProxy,
  unknownGlobals,
  waylandInfoGlobals,
} from '../support/globals.js';
import { accepts, killAll, start, stop, waitFor } from '../support/processes.js';
import { Sway } from '../support/sway.js';
import { proxyBin } from '../support/weston.js';

let sway: Sway;
let direct: Globals;

beforeAll(async () => {
  sway = await Sway.start();
  await sway.startHost();
  direct = waylandInfoGlobals(sway.clientEnv());
});

afterAll(async () => {
  killAll();
  await sway?.stop();
});

const GET_REGISTRY = /client#\d+\s+-> wl_display@1\.get_registry\(/;

/** The globals wayland-info is shown through a proxy of `route` (traced with -v). */
async function throughProxy(route: 'proxied' | 'cross-domain'): Promise<Globals> {
  const listen = `globals-${route}`;
  const proxy = start(
    proxyBin,
    ['-v', ...sway.proxyArgs(route, listen)],
    sway.clientEnv('tswl-nowhere'),
  );
  try {
    await waitFor('tswl-proxy to listen', () => accepts(join(sway.clientDir, listen)));
    const globals = waylandInfoGlobals(sway.clientEnv(join(sway.clientDir, listen)));
    // wayland-info's registry went through the proxy, not around it
    await waitFor('the proxy to trace get_registry', () => GET_REGISTRY.test(proxy.output()));
    return globals;
  } finally {
    await stop(proxy);
  }
}

describe('sway 1.12 globals through the proxy', () => {
  test('sway offers nothing that protocols/ lacks', () => {
    expect(direct.has('wl_compositor') && direct.has('xdg_wm_base')).toBe(true);
    expect(unknownGlobals(direct)).toEqual([]);
  });

  test('host mode: all of them, at the lower version', async () => {
    expect(await throughProxy('proxied')).toEqual(expectedThroughProxy(direct));
  });

  test('cross-domain: all but the hidden list', async () => {
    const contexts = sway.contextsCreated();
    expect(await throughProxy('cross-domain')).toEqual(
      expectedThroughProxy(direct, CROSS_DOMAIN_HIDDEN_GLOBALS),
    );
    expect(sway.contextsCreated()).toBeGreaterThan(contexts);
    // sway offers some of what cannot cross, so the list is exercised
    const hiddenHere = [...direct.keys()].filter((n) => CROSS_DOMAIN_HIDDEN_GLOBALS.has(n));
    expect(hiddenHere).toContain('zwlr_screencopy_manager_v1');
  });
});

// What a client sees of sway 1.12's globals through the proxy: everything sway offers, less
// exactly what the proxy may not or cannot relay: privileged globals (unless allowed on every
// program on the path), interfaces without XML in protocols/, and across the VM boundary what
// cannot cross it; each at the lower of the two versions.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { PRIVILEGED_GLOBALS, VM_BOUNDARY_HIDDEN_GLOBALS } from '../../src/relay/policy.js';
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
  direct = waylandInfoGlobals(sway.clientEnv());
});

afterAll(async () => {
  killAll();
  await sway?.stop();
});

const GET_REGISTRY = /client#\d+\s+-> wl_display@1\.get_registry\(/;
const privileged = new Set(PRIVILEGED_GLOBALS.keys());
const crossing = new Set([...privileged, ...VM_BOUNDARY_HIDDEN_GLOBALS]);
/**
 * What sway itself withholds from a client in a security context, beyond our privileged list
 * (sway's is_privileged() in sway/server.c): a VM tswl-host puts in one loses these too.
 */
const SWAY_SANDBOX_WITHHELD = [
  'zwp_keyboard_shortcuts_inhibit_manager_v1',
  'zxdg_output_manager_v1',
];
const sandboxed = new Set([...crossing, ...SWAY_SANDBOX_WITHHELD]);
const DATA_CONTROL = 'ext_data_control_manager_v1';

/** The globals wayland-info is shown through a proxy of `route` (traced with -v). */
async function throughProxy(
  route: 'proxied' | 'cross-domain',
  args: string[] = [],
): Promise<Globals> {
  const listen = `globals-${route}`;
  const proxy = start(
    proxyBin,
    ['-v', ...sway.proxyArgs(route, listen), ...args],
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

function without(globals: Globals, name: string): Globals {
  const copy = new Map(globals);
  copy.delete(name);
  return copy;
}

describe('sway 1.12 globals through the proxy', () => {
  test('sway offers nothing that protocols/ lacks, and privileged globals a guest must not get', () => {
    expect(direct.has('wl_compositor') && direct.has('xdg_wm_base')).toBe(true);
    expect(unknownGlobals(direct)).toEqual([]);
    for (const name of [
      'ext_session_lock_manager_v1',
      DATA_CONTROL,
      'ext_foreign_toplevel_list_v1',
      'zwlr_layer_shell_v1',
      'zwlr_screencopy_manager_v1',
    ])
      expect([...direct.keys()]).toContain(name);
    // and what ordinary applications use
    for (const name of [
      'wl_fixes',
      'zwp_pointer_gestures_v1',
      'org_kde_kwin_server_decoration_manager',
    ])
      expect([...direct.keys()]).toContain(name);
  });

  test('host mode: all but the privileged ones, at the lower version', async () => {
    const seen = await throughProxy('proxied');
    expect(seen).toEqual(expectedThroughProxy(direct, privileged));
    expect([...seen.keys()].filter((n) => privileged.has(n))).toEqual([]);
    expect([...seen.keys()]).toEqual(
      expect.arrayContaining([
        'wl_fixes',
        'zwp_pointer_gestures_v1',
        'org_kde_kwin_server_decoration_manager',
      ]),
    );
  });

  test('host mode, --allow-global: exactly that one more', async () => {
    const hidden = new Set([...privileged].filter((n) => n !== DATA_CONTROL));
    const seen = await throughProxy('proxied', ['--allow-global', DATA_CONTROL]);
    expect(seen).toEqual(expectedThroughProxy(direct, hidden));
    expect(without(seen, DATA_CONTROL)).toEqual(expectedThroughProxy(direct, privileged));
  });
});

describe('sway 1.12 globals across the cross-domain path', () => {
  test('all but the privileged ones and what cannot cross, less what sway keeps from a security context', async () => {
    await sway.startHost([], 'gpu-default');
    const contexts = sway.contextsCreated();
    expect(await throughProxy('cross-domain')).toEqual(expectedThroughProxy(direct, sandboxed));
    expect(sway.contextsCreated()).toBeGreaterThan(contexts);
    // sway offers some of what cannot cross, so that list is exercised
    expect([...direct.keys()]).toContain('zwlr_screencopy_manager_v1');
    for (const name of SWAY_SANDBOX_WITHHELD) expect([...direct.keys()]).toContain(name);
  });

  test('a guest proxy that allows every privileged global still gets none from tswl-host', async () => {
    await sway.startHost(['--no-security-context'], 'gpu-unsandboxed');
    const all = [...privileged].join(',');
    // without a security context, only tswl-host's own policy stands between the VM and them
    expect(await throughProxy('cross-domain', ['--allow-global', all])).toEqual(
      expectedThroughProxy(direct, crossing),
    );
  });

  test('allowed on both programs on the path, exactly that one more; sway still keeps it from a sandboxed VM', async () => {
    await sway.startHost(['--no-security-context', '--allow-global', DATA_CONTROL], 'gpu-allow');
    const hidden = new Set([...crossing].filter((n) => n !== DATA_CONTROL));
    expect(await throughProxy('cross-domain', ['--allow-global', DATA_CONTROL])).toEqual(
      expectedThroughProxy(direct, hidden),
    );
    // allowed by tswl-host only: the guest proxy still keeps it from its clients
    expect(await throughProxy('cross-domain')).toEqual(expectedThroughProxy(direct, crossing));
    // in a security context sway itself withholds it, whatever tswl-host allows
    await sway.startHost(['--allow-global', DATA_CONTROL], 'gpu-allow-sandboxed');
    expect(await throughProxy('cross-domain', ['--allow-global', DATA_CONTROL])).toEqual(
      expectedThroughProxy(direct, sandboxed),
    );
  });
});

// sway killed and started again under a running tswl-host: each VM's security context lived in
// the old sway, so the VM's next channel gets a new one from the new sway, and VMs connecting
// after the restart get theirs too (windows still carry the VM's sandbox labels).
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { securityContextManager, vmContext } from '../../src/cli/tswl-host.js';
import { Log } from '../../src/log/log.js';
import * as native from '../../src/native/index.js';
import { killAll, type Running, waitFor } from '../support/processes.js';
import { Sway, type SwayNode, runOn } from '../support/sway.js';

let sway: Sway;
let host: Running;

beforeAll(async () => {
  sway = await Sway.start();
  host = await sway.startHost(['--label', 'vm1']);
});

afterAll(async () => {
  killAll();
  await sway?.stop();
});

/** get_registry + sync on a connected socket: true when the sync's done comes back. */
function roundTrip(fd: number): boolean {
  const req = Buffer.from([
    1, 0, 0, 0, 1, 0, 12, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 12, 0, 3, 0, 0, 0,
  ]);
  native.sendmsg(fd, req, 0, req.length, [], 0);
  const buf = Buffer.alloc(65536);
  const out = new Int32Array(native.RECV_OUT_LENGTH);
  let got = Buffer.alloc(0);
  while (native.waitReadable(fd, 5000)) {
    const n = native.recvmsg(fd, buf, 0, buf.length, out);
    if (n === 0) return false;
    if (n > 0) got = Buffer.concat([got, buf.subarray(0, n)]);
    for (let pos = 0; pos + 8 <= got.length; pos += got.readUInt32LE(pos + 4) >>> 16 || 8) {
      if (got.readUInt32LE(pos) === 3) return true;
    }
  }
  return false;
}

describe('sway restarted under tswl-host', () => {
  test("a VM's channels get a new security context from the new sway", async () => {
    const warnings: string[] = [];
    const log = new Log({
      ringPath: null,
      ringSize: 0,
      verbose: false,
      prefix: 'test',
      stderr: (t) => warnings.push(t),
    });
    const manager = securityContextManager(sway.socket, log);
    expect(manager).not.toBeNull();
    const vm = vmContext(sway.socket, manager!, 'vm1', 'guest1', log);
    try {
      const before = vm.connect();
      expect(roundTrip(before)).toBe(true);
      native.close(before);

      await sway.restart();
      // the context's socket is still there, but nobody listens on it: a new context is made
      const after = vm.connect();
      expect(roundTrip(after)).toBe(true);
      native.close(after);
      expect(warnings.join('')).toMatch(/security context is gone/);
      expect(warnings.join('')).not.toMatch(/channels use/);
    } finally {
      vm.close();
    }
  });

  test('windows of VMs that connect after the restart are in their security context', async () => {
    await runOn(sway, 'cross-domain', ['foot', '--app-id', 'foot-term'], async () => {
      const window = await waitFor('the window', () =>
        sway.windows().find((w: SwayNode) => w.app_id === 'vm1.foot-term'),
      );
      expect(window.sandbox_engine, host.output()).toBe('tswl-host');
    });
    expect(host.child.exitCode).toBeNull();
  });
});

// tswl-host decides what a VM may do, whatever the guest runs: a guest that writes raw Wayland
// into its channel (no tswl-proxy in between), on the local link or as a VM over vhost-user,
// cannot bind a privileged global, and every window of a VM carries the host's labels and sits
// in the VM's own security context.
import { spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { join } from 'node:path';
import { CrossDomainLink, connectCrossDomain } from '../../src/links/cross-domain.js';
import { VirtioGpuResp } from '../../src/virtgpu/protocol.js';
import type { Endpoint } from '../../src/wire/connection.js';
import { killAll, type Running, waitFor } from '../support/processes.js';
import { Sway, type SwayNode, runOn } from '../support/sway.js';
import { TestFrontend } from '../support/vhost-user-frontend.js';
import { type WlEvent, wl, wlString } from '../support/virtgpu-commands.js';

let sway: Sway;
let host: Running;
let vhostPath: string;

beforeAll(async () => {
  // sway traces what it receives, so the test can tell that a refused bind never reached it
  sway = await Sway.start({ debug: true });
  vhostPath = join(sway.clientDir, 'tswl-vhost');
  host = await sway.startHost(['--label', 'vm1', '--vhost-user', vhostPath]);
});

afterAll(async () => {
  killAll();
  await sway?.stop();
});

/** The name sway gave a global, read off wayland-info run directly on sway. */
function globalName(iface: string): number {
  const r = spawnSync('wayland-info', [], { env: sway.clientEnv(), encoding: 'utf8' });
  const m = new RegExp(`interface: '${iface}',\\s+version:\\s+\\d+, name:\\s+(\\d+)`).exec(
    r.stdout,
  );
  if (!m) throw new Error(`sway offers no ${iface}`);
  return Number(m[1]);
}

/** A guest that speaks the local link itself and writes whatever Wayland bytes it likes. */
class RawGuest {
  readonly link: Endpoint;
  closed = false;
  private data = Buffer.alloc(0);

  constructor(gpuPath: string) {
    this.link = connectCrossDomain(gpuPath, {
      onData: () => {
        const l = this.link;
        this.data = Buffer.concat([this.data, l.in.subarray(l.inStart, l.inEnd)]);
        l.consume(l.inEnd - l.inStart);
        l.inFds.closeAll();
      },
      onClose: () => (this.closed = true),
    });
  }

  send(id: number, opcode: number, fill: (w: Endpoint['out']) => void = () => {}): this {
    this.link.out.begin(id, opcode);
    fill(this.link.out);
    this.link.out.end();
    return this;
  }

  flush(): void {
    this.link.flush();
  }

  /** The events received so far: id, opcode, body. */
  events(): { id: number; opcode: number; body: Buffer }[] {
    const out = [];
    for (let pos = 0; this.data.length - pos >= 8;) {
      const size = this.data.readUInt32LE(pos + 4) >>> 16;
      if (size < 8 || this.data.length - pos < size) break;
      out.push({
        id: this.data.readUInt32LE(pos),
        opcode: this.data.readUInt32LE(pos + 4) & 0xffff,
        body: this.data.subarray(pos + 8, pos + size),
      });
      pos += size;
    }
    return out;
  }

  /** wl_display.error's message, once one came. */
  error(): string | undefined {
    const e = this.events().find((x) => x.id === 1 && x.opcode === 0);
    return e?.body.toString('utf8', 12, 12 + e.body.readUInt32LE(8) - 1);
  }

  close(): void {
    if (this.link instanceof CrossDomainLink) this.link.close();
  }
}

const PRIVILEGED_BY_RAW_BYTES = ['ext_session_lock_manager_v1', 'ext_data_control_manager_v1'];

describe('a guest that bypasses tswl-proxy', () => {
  test.each(PRIVILEGED_BY_RAW_BYTES)(
    'binding %s by raw bytes is refused by tswl-host',
    async (iface) => {
      const name = globalName(iface);
      const guest = new RawGuest(sway.gpuPath);
      const neighbour = new RawGuest(sway.gpuPath);
      try {
        guest
          .send(1, 1, (w) => w.newId(2)) // get_registry
          .send(2, 0, (w) => {
            // bind the global the host never showed it
            w.uint(name);
            w.string(iface);
            w.uint(1);
            w.newId(3);
          })
          .flush();
        await waitFor('the error', () => guest.error());
        expect(guest.error()).toMatch(new RegExp(`invalid global ${iface} \\(${name}\\)`));
        await waitFor('the channel to end', () => guest.closed);
        // nothing privileged reached sway
        expect(sway.sway.output()).not.toMatch(new RegExp(`bind\\(${name}, "${iface}"`));
        // another guest of the same tswl-host is served as before
        neighbour.send(1, 0, (w) => w.newId(2)).flush(); // sync
        await waitFor('its round trip', () => neighbour.events().some((e) => e.id === 2));
        expect(neighbour.error()).toBeUndefined();
        expect(host.child.exitCode).toBeNull();
      } finally {
        guest.close();
        neighbour.close();
      }
    },
  );
});

describe('a VM that writes raw Wayland into its channel (vhost-user, no tswl-proxy)', () => {
  test("binding ext_session_lock_manager_v1 gets wl_display.error; the VM's other context goes on", async () => {
    const iface = 'ext_session_lock_manager_v1';
    const name = globalName(iface);
    const vm = new TestFrontend(vhostPath);
    try {
      await vm.handshake();
      await vm.context(1);
      await vm.context(2);
      // get_registry, then bind the global the host never showed
      const bind = Buffer.concat([wl(1, 1, 2), wl(2, 0, name, iface, 1, 3)]);
      expect(await vm.type(vm.sendCommand(1, bind))).toBe(VirtioGpuResp.OK_NODATA);
      const isError = (e: WlEvent): boolean => e.id === 1 && e.opcode === 0;
      const events = await vm.pollUntil(1, (ev) => ev.some(isError));
      const error = events.find(isError)!;
      expect(wlString(error.body, 8)).toMatch(new RegExp(`invalid global ${iface} \\(${name}\\)`));
      // then the channel ends
      expect(await vm.poll(1)).toEqual({ cmd: 'receive', data: Buffer.alloc(0), ids: [] });
      expect(sway.sway.output()).not.toMatch(new RegExp(`bind\\(${name}, "${iface}"`));
      // the VM's other context is served as before: a sync round trip with sway
      expect(await vm.type(vm.sendCommand(2, wl(1, 0, 2)))).toBe(VirtioGpuResp.OK_NODATA);
      const done = await vm.pollUntil(2, (ev) => ev.some((e) => e.id === 2 && e.opcode === 0));
      expect(done.find(isError)).toBeUndefined();
      expect(host.child.exitCode).toBeNull();
    } finally {
      vm.close();
    }
  });
});

describe('labels and security contexts from tswl-host', () => {
  test("every window of the VM has the host's title and app_id labels and its sandbox", async () => {
    // the guest proxy sets no labels of its own
    await runOn(
      sway,
      'cross-domain',
      ['foot', '--app-id', 'foot-term', '--title', 'hello'],
      async () => {
        const window = await waitFor('the window', () =>
          sway.windows().find((w: SwayNode) => w.app_id !== undefined && w.app_id !== null),
        );
        expect(window.name).toBe('[vm1] hello');
        expect(window.app_id).toBe('vm1.foot-term');
        expect(window.sandbox_engine, host.output()).toBe('tswl-host');
        expect(window.sandbox_app_id).toBe('vm1');
        expect(window.sandbox_instance_id).toMatch(/^vm1-\d+-guest\d+$/);
      },
    );
    expect(host.output()).toMatch(/each VM gets a security context of its own/);
  });

  test('a window sent directly carries none of them', async () => {
    await runOn(sway, 'direct', ['foot', '--app-id', 'foot-term', '--title', 'hello'], async () => {
      const window = await waitFor('the window', () => sway.windows()[0]);
      expect(window.name).toBe('hello');
      expect(window.app_id).toBe('foot-term');
      expect(window.sandbox_engine ?? null).toBeNull();
    });
  });
});

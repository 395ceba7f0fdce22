// Real clients on sway 1.12 (headless, pixman renderer, in the VM harness's sid chroot): through
// the proxy in host mode and across the cross-domain path (tswl-proxy --virtio-gpu-device →
// tswl-host → sway), each one shows exactly the pixels grim captures when it runs directly on sway.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { colourCount, differingPixels } from '../support/desktop.js';
import { killAll } from '../support/processes.js';
import { type Route, Sway, runOn } from '../support/sway.js';
import { repoRoot } from '../support/weston.js';

const shots = join(repoRoot, 'test-output', 'sway');
mkdirSync(shots, { recursive: true });
let sway: Sway;

beforeAll(async () => {
  sway = await Sway.start();
  await sway.startHost();
});

afterAll(async () => {
  killAll();
  await sway?.stop();
});

// What the terminals show: colours, bold text and several rows. No line is longer than the
// narrowest terminal: both start at a provisional size and resize once sway tiles them, and a
// line printed before that would wrap differently from run to run.
const terminalShell = join(shots, 'terminal-shell.sh');
writeFileSync(
  terminalShell,
  `#!/bin/sh\nprintf '\\033[1;31mred \\033[32mgreen \\033[34mblue \\033[7minverse\\033[0m\\n'\nseq 1 60 | paste -d' ' - - - - - - - - - -\nexec sh\n`,
  { mode: 0o755 },
);

const clients: [string, string[]][] = [
  ['foot', ['foot', '--override=cursor.blink=no', terminalShell]],
  ['gtk4-demo', ['gtk4-demo']],
  ['weston-terminal', ['weston-terminal', `--shell=${terminalShell}`]],
];

const routes: Route[] = ['proxied', 'cross-domain'];

describe('same pixels on sway through the proxy', () => {
  test.each(clients)('%s', async (name, command) => {
    const direct = join(shots, `${name}-direct.png`);
    await runOn(sway, 'direct', command, async () => void (await sway.stableScreenshot(direct)));
    expect(colourCount(direct)).toBeGreaterThan(2);
    for (const route of routes) {
      const contexts = sway.contextsCreated();
      const shot = join(shots, `${name}-${route}.png`);
      await runOn(sway, route, command, async () => {
        await sway.stableScreenshot(shot);
        // sway's one window belongs to the proxy's connection (or tswl-host's), not the client's
        const owners = sway.windowOwners();
        expect(owners).toHaveLength(1);
        expect(owners[0]).toContain(route === 'proxied' ? 'bin/tswl-proxy' : 'bin/tswl-host');
      });
      expect(differingPixels(direct, shot), route).toBe(0);
      if (route === 'cross-domain') expect(sway.contextsCreated()).toBeGreaterThan(contexts);
    }
  });
});

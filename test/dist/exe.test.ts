// The single executables of `npm run build:exe` (dist/exe/) on a fresh Debian bookworm that has no
// Node: tswl-proxy relays wayland-info to a weston on the host, tswl-host serves a guest over the
// local link, and the addon each carries leaves no file behind.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { killAll } from '../support/processes.js';
import { repoRoot } from '../support/weston.js';
import {
  type Bind,
  type HostWeston,
  baseImage,
  globalsIn,
  requireRoot,
  runInMachine,
  startWeston,
} from './machine.js';

const exeDir = join(repoRoot, 'dist/exe');
const { version } = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as {
  version: string;
};

let weston: HostWeston;
let direct: string[];

beforeAll(async () => {
  requireRoot();
  for (const name of ['tswl-proxy', 'tswl-host']) {
    if (!existsSync(join(exeDir, name))) throw new Error(`no ${exeDir}/${name}: npm run build:exe`);
  }
  weston = await startWeston();
  const info = spawnSync('wayland-info', [], {
    env: { ...process.env, WAYLAND_DISPLAY: weston.socket },
    encoding: 'utf8',
  });
  direct = globalsIn(info.stdout);
  expect(direct).toContain('wl_compositor');
});

afterAll(async () => {
  await weston?.stop();
  killAll();
});

function binds(): Bind[] {
  return [
    { host: join(exeDir, 'tswl-proxy'), inside: '/usr/local/bin/tswl-proxy' },
    { host: join(exeDir, 'tswl-host'), inside: '/usr/local/bin/tswl-host' },
    { host: weston.runtimeDir, inside: '/mnt/wayland' },
  ];
}

// Every program runs with XDG_RUNTIME_DIR=/run/t, where the addon's unnamed file is made; the
// script ends by listing /run/t and /tmp, which must then be empty.
const runtimeDir = 'mkdir -m 700 /run/t; export XDG_RUNTIME_DIR=/run/t';
const leftovers = 'echo "left: $(ls -A /run/t /tmp | grep -v "^/\\|^$" | tr "\\n" " ")"';

test('the machine has no Node, and the executables run there', () => {
  const r = runInMachine(
    baseImage,
    'if command -v node nodejs; then exit 3; fi; tswl-proxy --version; tswl-host --version',
    { binds: binds() },
  );
  expect(r.stdout.trim(), r.stderr).toBe(`${version}\n${version}`);
  expect(r.status).toBe(0);
});

test('tswl-proxy relays wayland-info to the compositor', () => {
  // WAYLAND_DISPLAY leads nowhere: only --host-display reaches weston.
  const r = runInMachine(
    baseImage,
    `${runtimeDir}
    WAYLAND_DISPLAY=nowhere tswl-proxy --host-display /mnt/wayland/wayland-0 wayland-info
    ${leftovers}`,
    { binds: binds() },
  );
  expect(r.status, r.stdout + r.stderr).toBe(0);
  const proxied = globalsIn(r.stdout);
  expect(proxied).toEqual(expect.arrayContaining(['wl_compositor', 'wl_shm', 'xdg_wm_base']));
  expect(direct).toEqual(expect.arrayContaining(proxied));
  expect(r.stdout).toMatch(/^left: $/m);
});

test('tswl-host serves tswl-proxy over the local link', () => {
  const r = runInMachine(
    baseImage,
    `${runtimeDir}
    tswl-host --verbose --wayland-sock /mnt/wayland/wayland-0 --listen-local /run/t/link \
      2>/root/host.log & host=$!
    until grep -q "serving guests" /root/host.log; do kill -0 $host; sleep 0.1; done
    WAYLAND_DISPLAY=nowhere tswl-proxy --virtio-gpu-device /run/t/link wayland-info
    kill $host; wait $host
    cat /root/host.log
    ${leftovers}`,
    { binds: binds() },
  );
  expect(r.status, r.stdout + r.stderr).toBe(0);
  expect(globalsIn(r.stdout)).toEqual(
    expect.arrayContaining(['wl_compositor', 'wl_shm', 'xdg_wm_base']),
  );
  // The globals came across the cross-domain path: a context on the device, then the compositor.
  expect(r.stdout).toMatch(/context 1 created for tswl-proxy/);
  expect(r.stdout).toMatch(/context 1 \(tswl-proxy\): connected to the compositor/);
  expect(r.stdout).toMatch(/^left: $/m);
});

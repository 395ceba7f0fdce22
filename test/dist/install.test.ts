// The README's install commands, run as written on fresh Debian bookworm machines: in a clean
// clone (of the commit under test: uncommitted changes are not in it) on a machine with Node and
// the build tools, then the tarball it packs on another such machine, then the single executables
// it builds on a machine without Node. Each way must give working tswl-proxy and tswl-host
// commands: they relay wayland-info to a weston on the host.
//
// "A machine with Node" is the dev image plus this host's Node (the binary, npm and the headers,
// mounted read-only), as a Node package would install them. npm reaches the registry as it does
// on this host (its certificates and proxy settings).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { killAll } from '../support/processes.js';
import { repoRoot } from '../support/weston.js';
import {
  type Bind,
  type HostWeston,
  baseImage,
  devImage,
  globalsIn,
  requireRoot,
  runInMachine,
  startWeston,
} from './machine.js';

const readme = readFileSync(join(repoRoot, 'README.md'), 'utf8');

/** The shell block that follows `<!-- install:NAME -->` in the README. */
function readmeBlock(name: string): string {
  const m = new RegExp(`<!-- install:${name} -->\\n\`\`\`sh\\n([^]*?)\`\`\``).exec(readme);
  if (!m) throw new Error(`README.md has no <!-- install:${name} --> block`);
  return m[1];
}

let work: string;
let checkout: string;
let weston: HostWeston;

/** Node as a package installs it: /usr/bin/node, npm, the headers, and npm's global config. */
function nodeBinds(): Bind[] {
  const node = process.execPath;
  const prefix = dirname(dirname(node));
  return [
    { host: node, inside: '/usr/bin/node' },
    { host: join(prefix, 'lib/node_modules/npm'), inside: '/usr/lib/node_modules/npm' },
    { host: join(prefix, 'include/node'), inside: '/usr/include/node' },
    { host: '/etc/ssl/certs', inside: '/etc/ssl/certs' },
  ];
}
const installNode = `
ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/bin/npm
ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/bin/npx
mkdir -p /usr/etc && echo nodedir=/usr > /usr/etc/npmrc
node --version
`;
/** What npm needs from this host's environment to reach the registry. */
function networkEnv(): Record<string, string> {
  const names = ['NODE_EXTRA_CA_CERTS', 'https_proxy', 'HTTPS_PROXY', 'http_proxy', 'HTTP_PROXY'];
  return Object.fromEntries(
    names.filter((n) => process.env[n]).map((n) => [n, process.env[n] as string]),
  );
}

/** Shell lines that show the installed commands work: wayland-info through each. */
const tryCommands = `
tswl-proxy --version; tswl-host --version
mkdir -p -m 700 /run/t; export XDG_RUNTIME_DIR=/run/t WAYLAND_DISPLAY=nowhere
tswl-proxy --host-display /mnt/wayland/wayland-0 wayland-info > /root/host-mode.txt
tswl-host -v --wayland-sock /mnt/wayland/wayland-0 --listen-local /run/t/link 2>/root/host.log &
host=$!
until grep -q "serving guests" /root/host.log; do kill -0 $host; sleep 0.1; done
tswl-proxy --virtio-gpu-device /run/t/link wayland-info > /root/cross-domain.txt
kill $host
echo "== host mode"; cat /root/host-mode.txt; echo "== cross-domain"; cat /root/cross-domain.txt
`;

function expectWorkingCommands(stdout: string): void {
  const { version } = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as {
    version: string;
  };
  expect(stdout).toContain(`${version}\n${version}\n`);
  const [hostMode, crossDomain] = stdout.split('== cross-domain');
  for (const part of [hostMode, crossDomain]) {
    expect(globalsIn(part)).toEqual(
      expect.arrayContaining(['wl_compositor', 'wl_shm', 'xdg_wm_base']),
    );
  }
}

beforeAll(async () => {
  requireRoot();
  work = mkdtempSync(join(tmpdir(), 'tswl-dist-install-'));
  checkout = join(work, 'tswl-proxy');
  const clone = spawnSync('git', ['clone', '--quiet', repoRoot, checkout], { encoding: 'utf8' });
  if (clone.status !== 0) throw new Error(`git clone failed: ${clone.stderr}`);
  weston = await startWeston();
});

afterAll(async () => {
  await weston?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
  killAll();
});

const westonBind = (): Bind => ({ host: weston.runtimeDir, inside: '/mnt/wayland' });

test('from a checkout; then it packs a tarball and builds the single executables', () => {
  const r = runInMachine(
    devImage,
    `${installNode}
    cd /root/tswl-proxy
    ${readmeBlock('checkout')}
    ${tryCommands}
    ${readmeBlock('pack')}
    ${readmeBlock('build-exe')}`,
    {
      binds: [
        ...nodeBinds(),
        { host: checkout, inside: '/root/tswl-proxy', rw: true },
        westonBind(),
      ],
      env: networkEnv(),
      timeoutMs: 600000,
    },
  );
  expect(r.status, r.stdout + r.stderr).toBe(0);
  expectWorkingCommands(r.stdout);
});

test('from the tarball, on another machine with Node', () => {
  const tarball = readdirSync(checkout).find((f) => f.endsWith('.tgz'));
  expect(tarball).toBeDefined();
  const r = runInMachine(
    devImage,
    `${installNode}
    cd /root/package
    ${readmeBlock('tarball')}
    ${tryCommands}`,
    {
      binds: [
        ...nodeBinds(),
        { host: join(checkout, tarball!), inside: `/root/package/${tarball}` },
        westonBind(),
      ],
      env: networkEnv(),
      timeoutMs: 600000,
    },
  );
  expect(r.status, r.stdout + r.stderr).toBe(0);
  expectWorkingCommands(r.stdout);
});

test('the single executables, on a machine without Node', () => {
  const exe = join(checkout, 'dist/exe');
  const r = runInMachine(
    baseImage,
    `if command -v node nodejs; then exit 3; fi
    cd /root/copied
    ${readmeBlock('exe')}
    ${tryCommands}`,
    {
      binds: [
        { host: join(exe, 'tswl-proxy'), inside: '/root/copied/tswl-proxy' },
        { host: join(exe, 'tswl-host'), inside: '/root/copied/tswl-host' },
        westonBind(),
      ],
    },
  );
  expect(r.status, r.stdout + r.stderr).toBe(0);
  expectWorkingCommands(r.stdout);
});

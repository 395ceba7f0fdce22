// The privileged-protocol table: it names real interfaces, a typo in --allow-global is an error
// rather than a quiet no-op, and both programs say so in one line.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { allInterfaces } from '../src/generated/index.js';
import {
  PRIVILEGED_GLOBALS,
  VM_BOUNDARY_HIDDEN_GLOBALS,
  parseAllowGlobal,
  withheldGlobals,
} from '../src/relay/policy.js';
import { proxyBin, repoRoot } from './support/weston.js';

const known = new Set(allInterfaces.map((i) => i.name));

describe('policy table', () => {
  test('every privileged and every VM-boundary name is an interface in protocols/', () => {
    expect([...PRIVILEGED_GLOBALS.keys()].filter((n) => !known.has(n))).toEqual([]);
    expect([...VM_BOUNDARY_HIDDEN_GLOBALS].filter((n) => !known.has(n))).toEqual([]);
    // the ones the issue names as what a guest must never get unasked
    for (const name of [
      'ext_session_lock_manager_v1',
      'ext_data_control_manager_v1',
      'zwlr_data_control_manager_v1',
      'ext_image_copy_capture_manager_v1',
      'zwlr_screencopy_manager_v1',
      'ext_foreign_toplevel_list_v1',
      'zwlr_foreign_toplevel_manager_v1',
      'ext_workspace_manager_v1',
      'zwlr_layer_shell_v1',
      'wp_security_context_manager_v1',
      'ext_idle_notifier_v1',
    ])
      expect(PRIVILEGED_GLOBALS.has(name), name).toBe(true);
    for (const reason of PRIVILEGED_GLOBALS.values()) expect(reason.length).toBeGreaterThan(10);
  });

  test('the README lists every privileged global with its reason, and every one hidden across the boundary', () => {
    const readme = readFileSync(join(repoRoot, 'README.md'), 'utf8');
    for (const [name, reason] of PRIVILEGED_GLOBALS)
      expect(readme).toContain(`| \`${name}\` | ${reason} |`);
    for (const name of VM_BOUNDARY_HIDDEN_GLOBALS) expect(readme).toContain(`\`${name}\``);
  });

  test('allowing takes exactly the names given, in any number of options', () => {
    const allowed = parseAllowGlobal(
      'zwlr_layer_shell_v1',
      parseAllowGlobal(' ext_data_control_manager_v1 ,ext_idle_notifier_v1,'),
    );
    expect(allowed).toEqual([
      'ext_data_control_manager_v1',
      'ext_idle_notifier_v1',
      'zwlr_layer_shell_v1',
    ]);
    const withheld = withheldGlobals(allowed);
    expect(withheld.size).toBe(PRIVILEGED_GLOBALS.size - 3);
    for (const name of allowed) expect(withheld.has(name)).toBe(false);
    expect(() => withheldGlobals(['wl_seat'])).toThrow(/wl_seat is not a privileged global/);
  });

  test.each([
    ['tswl-proxy', proxyBin, []],
    [
      'tswl-host',
      join(repoRoot, 'bin/tswl-host'),
      ['--wayland-sock', '/nonexistent', '--listen-local', '/nonexistent2'],
    ],
  ])('%s: a name that is not privileged is a one-line error', (_name, bin, args) => {
    const run = spawnSync(bin, [...args, '--allow-global', 'ext_data_control_manager,wl_seat'], {
      encoding: 'utf8',
      env: { ...process.env, XDG_RUNTIME_DIR: '/tmp' },
    });
    expect(run.status).toBe(1);
    expect(run.stderr.trim().split('\n')).toHaveLength(1);
    expect(run.stderr).toMatch(
      /--allow-global: ext_data_control_manager is not a privileged global/,
    );
  });
});

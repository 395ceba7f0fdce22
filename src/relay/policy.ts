// What a guest may bind: every interface in protocols/ is relayed, except the privileged globals
// below, which give a client power over the host desktop beyond its own windows. They are never
// offered unless the user names them (--allow-global). tswl-host enforces this for each VM; the
// guest proxy applies the same table only as a convenience.

/** Privileged globals, each with why it is withheld (the README lists them from here). */
export const PRIVILEGED_GLOBALS: ReadonlyMap<string, string> = new Map([
  ['ext_session_lock_manager_v1', 'locks the host screen and draws its own lock screen'],
  ['ext_data_control_manager_v1', "reads and replaces the host's clipboard without focus"],
  ['zwlr_data_control_manager_v1', "reads and replaces the host's clipboard without focus"],
  ['ext_image_copy_capture_manager_v1', 'captures screenshots of host outputs and windows'],
  ['ext_output_image_capture_source_manager_v1', 'names host outputs for screen capture'],
  ['ext_foreign_toplevel_image_capture_source_manager_v1', 'names host windows for capture'],
  ['zwlr_screencopy_manager_v1', 'captures screenshots of host outputs'],
  ['zwlr_export_dmabuf_manager_v1', 'captures host outputs as dma-bufs'],
  ['ext_foreign_toplevel_list_v1', 'lists every host window with its title and app_id'],
  ['zwlr_foreign_toplevel_manager_v1', 'lists, activates and closes every host window'],
  ['ext_workspace_manager_v1', 'lists and switches host workspaces'],
  ['zwlr_layer_shell_v1', 'draws panels and overlays above every host window'],
  ['zwlr_gamma_control_manager_v1', "changes the host outputs' colour ramps"],
  ['zwlr_output_manager_v1', 'reconfigures host outputs'],
  ['zwlr_output_power_manager_v1', 'turns host outputs off'],
  ['zwp_virtual_keyboard_manager_v1', 'types into whatever host window has focus'],
  ['zwlr_virtual_pointer_manager_v1', 'moves and clicks the host pointer anywhere'],
  ['zwp_input_method_manager_v2', 'reads and injects text in every host window'],
  ['ext_transient_seat_manager_v1', 'creates extra host seats'],
  ['wp_security_context_manager_v1', 'makes sandbox contexts (tswl-host makes the VM its own)'],
  ['wp_drm_lease_device_v1', "leases the host's display hardware"],
  ['ext_idle_notifier_v1', "watches the host user's activity"],
  ['xwayland_shell_v1', "meant for the compositor's own Xwayland"],
]);

/** The privileged names for --help: comma-separated lines indented by two, within 80 columns. */
export function privilegedGlobalsForHelp(): string {
  const lines: string[] = [];
  let line = '';
  for (const name of PRIVILEGED_GLOBALS.keys()) {
    if (line && line.length + name.length + 2 > 78) {
      lines.push(`  ${line},`);
      line = '';
    }
    line = line ? `${line}, ${name}` : name;
  }
  lines.push(`  ${line}`);
  return lines.join('\n');
}

/**
 * The globals withheld from guests: every privileged one not in `allowed`. Throws for an allowed
 * name that is not privileged (a typo would otherwise quietly allow nothing).
 */
export function withheldGlobals(allowed: Iterable<string>): Set<string> {
  const withheld = new Set(PRIVILEGED_GLOBALS.keys());
  for (const name of allowed) {
    if (!PRIVILEGED_GLOBALS.has(name)) {
      throw new Error(
        `${name} is not a privileged global (those are: ${[...PRIVILEGED_GLOBALS.keys()].join(', ')})`,
      );
    }
    withheld.delete(name);
  }
  return withheld;
}

/** Parses `--allow-global NAME[,NAME…]` values (the option may repeat). */
export function parseAllowGlobal(value: string, previous: string[] = []): string[] {
  return [
    ...previous,
    ...value
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== ''),
  ];
}

/**
 * Globals that cannot work across a VM boundary (tswl-proxy --virtio-gpu/--virtio-wl, and every
 * guest of tswl-host), even when allowed: guest dma-bufs, sync files and DRM sync objects (the
 * device offers none), guest memory files (gamma ramps, virtual keyboard keymaps), and buffers
 * that stay in the guest while the host would write into them or keep them (capture, icons).
 */
export const VM_BOUNDARY_HIDDEN_GLOBALS: ReadonlySet<string> = new Set([
  'zwp_linux_dmabuf_v1',
  'zwp_linux_explicit_synchronization_v1',
  'wp_linux_drm_syncobj_manager_v1',
  'wp_drm_lease_device_v1',
  'ext_image_copy_capture_manager_v1',
  'zwlr_screencopy_manager_v1',
  'zwlr_export_dmabuf_manager_v1',
  'zwlr_gamma_control_manager_v1',
  'zwp_virtual_keyboard_manager_v1',
  'xdg_toplevel_icon_manager_v1',
]);

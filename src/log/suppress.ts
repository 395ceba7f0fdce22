/**
 * Classes of messages that `--log-suppress` hides from the trace, each a table of
 * `interface.message` names (requests and events alike).
 */
export const SUPPRESS_CLASSES = {
  motion: [
    'wl_pointer.motion',
    'wl_pointer.frame',
    'wl_touch.motion',
    'wl_touch.frame',
    'zwp_relative_pointer_v1.relative_motion',
    'zwp_tablet_tool_v2.motion',
    'zwp_tablet_tool_v2.frame',
  ],
  shm: [
    'wl_shm.create_pool',
    'wl_shm.release',
    'wl_shm.format',
    'wl_shm_pool.create_buffer',
    'wl_shm_pool.destroy',
    'wl_shm_pool.resize',
    'wl_buffer.destroy',
    'wl_buffer.release',
  ],
  delete: ['wl_display.delete_id'],
  region: [
    'wl_compositor.create_region',
    'wl_region.destroy',
    'wl_region.add',
    'wl_region.subtract',
    'wl_surface.set_input_region',
    'wl_surface.set_opaque_region',
  ],
  drawing: [
    'wl_surface.attach',
    'wl_surface.frame',
    'wl_surface.damage',
    'wl_surface.damage_buffer',
    'wl_surface.commit',
    'wl_callback.done',
  ],
  hints: [
    'xdg_toplevel.set_min_size',
    'xdg_toplevel.set_max_size',
    'xdg_surface.set_window_geometry',
    'wl_surface.set_buffer_scale',
    'wl_surface.set_buffer_transform',
  ],
} as const;

export type SuppressClass = keyof typeof SUPPRESS_CLASSES;

/** Parses `--log-suppress motion,shm`; throws on an unknown class, naming the known ones. */
export function parseSuppressClasses(list: string): Set<string> {
  const hidden = new Set<string>();
  for (const item of list.split(',')) {
    const name = item.trim();
    if (name === '') continue;
    if (!(name in SUPPRESS_CLASSES)) {
      throw new Error(
        `unknown log class "${name}" (known: ${Object.keys(SUPPRESS_CLASSES).join(', ')})`,
      );
    }
    for (const message of SUPPRESS_CLASSES[name as SuppressClass]) hidden.add(message);
  }
  return hidden;
}

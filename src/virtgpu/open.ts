import { statSync } from 'node:fs';
import { DrmVirtGpu } from './drm.js';
import { LocalVirtGpu } from './local.js';
import type { VirtGpu } from './virtgpu.js';

/**
 * Opens a virtio-gpu device for one client: a Unix socket is a local link to `tswl-host
 * --listen-local`; a character device is a DRM render node (/dev/dri/renderD128), checked for
 * what cross-domain needs.
 */
export function openVirtGpu(path: string): VirtGpu {
  let st;
  try {
    st = statSync(path);
  } catch (e) {
    throw new Error(`virtio-gpu device ${path}: ${(e as Error).message}`);
  }
  if (st.isSocket()) return LocalVirtGpu.connect(path);
  if (st.isCharacterDevice()) return DrmVirtGpu.open(path);
  throw new Error(`${path} is neither a DRM device nor a tswl-host local link socket`);
}

import { statSync } from 'node:fs';
import { LocalVirtGpu } from './local.js';
import type { VirtGpu } from './virtgpu.js';

/**
 * Opens a virtio-gpu device for one client: a Unix socket is a local link to `tswl-host
 * --listen-local`; a character device would be a DRM render node (/dev/dri/renderD128).
 */
export function openVirtGpu(path: string): VirtGpu {
  let st;
  try {
    st = statSync(path);
  } catch (e) {
    throw new Error(`virtio-gpu device ${path}: ${(e as Error).message}`);
  }
  if (st.isSocket()) return LocalVirtGpu.connect(path);
  if (st.isCharacterDevice()) {
    throw new Error(
      `${path} is a character device: DRM (/dev/dri) virtio-gpu devices are not supported yet; ` +
        'use the local link of tswl-host (--listen-local) for now',
    );
  }
  throw new Error(`${path} is neither a DRM device nor a tswl-host local link socket`);
}

// The DRM ioctl numbers and struct layouts of src/virtgpu/drm-uapi.ts against the kernel's own
// headers, computed by a C program built with the system compiler. Part of npm run test:vm: the VM
// harness (scripts/vm/build.sh) installs sid's libdrm-dev into its chroot, whose virtgpu_drm.h has
// context-init (bookworm's does not); the test fails if no such header is found.

import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as uapi from '../../src/virtgpu/drm-uapi.js';

// Headers older than Linux 5.16 (bookworm's libdrm-dev) lack context-init: they do not count.
const searched = [
  '/usr/include/drm',
  '/usr/include/libdrm',
  join(process.env.TSWL_VM_DIR ?? join(import.meta.dirname, '../../.vm'), 'sid/usr/include/libdrm'),
];
const includeDir = searched.find((d) => {
  const h = join(d, 'virtgpu_drm.h');
  return existsSync(h) && readFileSync(h, 'utf8').includes('DRM_IOCTL_VIRTGPU_CONTEXT_INIT');
});

const program = `
#include <stdio.h>
#include <stddef.h>
#include <drm.h>
#include <virtgpu_drm.h>
#define P(name, value) printf("%s %lu\\n", name, (unsigned long)(value))
int main(void) {
  P("VERSION", DRM_IOCTL_VERSION);
  P("GEM_CLOSE", DRM_IOCTL_GEM_CLOSE);
  P("PRIME_HANDLE_TO_FD", DRM_IOCTL_PRIME_HANDLE_TO_FD);
  P("PRIME_FD_TO_HANDLE", DRM_IOCTL_PRIME_FD_TO_HANDLE);
  P("VIRTGPU_MAP", DRM_IOCTL_VIRTGPU_MAP);
  P("VIRTGPU_GETPARAM", DRM_IOCTL_VIRTGPU_GETPARAM);
  P("VIRTGPU_RESOURCE_INFO", DRM_IOCTL_VIRTGPU_RESOURCE_INFO);
  P("VIRTGPU_WAIT", DRM_IOCTL_VIRTGPU_WAIT);
  P("VIRTGPU_GET_CAPS", DRM_IOCTL_VIRTGPU_GET_CAPS);
  P("VIRTGPU_RESOURCE_CREATE_BLOB", DRM_IOCTL_VIRTGPU_RESOURCE_CREATE_BLOB);
  P("VIRTGPU_CONTEXT_INIT", DRM_IOCTL_VIRTGPU_CONTEXT_INIT);
  P("version.name_len", offsetof(struct drm_version, name_len));
  P("version.name", offsetof(struct drm_version, name));
  P("version.size", sizeof(struct drm_version));
  P("execbuffer.ring_idx", offsetof(struct drm_virtgpu_execbuffer, ring_idx));
  P("execbuffer.fence_fd", offsetof(struct drm_virtgpu_execbuffer, fence_fd));
  P("execbuffer.bo_handles", offsetof(struct drm_virtgpu_execbuffer, bo_handles));
  P("blob.cmd", offsetof(struct drm_virtgpu_resource_create_blob, cmd));
  P("blob.blob_id", offsetof(struct drm_virtgpu_resource_create_blob, blob_id));
  P("blob.size", sizeof(struct drm_virtgpu_resource_create_blob));
  P("EXECBUF_RING_IDX", VIRTGPU_EXECBUF_RING_IDX);
  P("EVENT_FENCE_SIGNALED", VIRTGPU_EVENT_FENCE_SIGNALED);
  P("CONTEXT_PARAM_POLL_RINGS_MASK", VIRTGPU_CONTEXT_PARAM_POLL_RINGS_MASK);
  return 0;
}
`;

describe('DRM uapi layouts', () => {
  it('match the kernel headers', () => {
    if (!includeDir) {
      throw new Error(
        `no virtgpu_drm.h with DRM_IOCTL_VIRTGPU_CONTEXT_INIT in ${searched.join(', ')} (run scripts/vm/build.sh)`,
      );
    }
    const dir = mkdtempSync(join(tmpdir(), 'tswl-uapi-'));
    try {
      writeFileSync(join(dir, 'layout.c'), program);
      execFileSync('cc', ['-I', includeDir, '-o', join(dir, 'layout'), join(dir, 'layout.c')]);
      const got = Object.fromEntries(
        execFileSync(join(dir, 'layout'), { encoding: 'utf8' })
          .trim()
          .split('\n')
          .map((l) => l.split(' '))
          .map(([k, v]) => [k, Number(v)]),
      );
      const { Ioctl } = uapi;
      expect({
        VERSION: Ioctl.VERSION,
        GEM_CLOSE: Ioctl.GEM_CLOSE,
        PRIME_HANDLE_TO_FD: Ioctl.PRIME_HANDLE_TO_FD,
        PRIME_FD_TO_HANDLE: Ioctl.PRIME_FD_TO_HANDLE,
        VIRTGPU_MAP: Ioctl.VIRTGPU_MAP,
        VIRTGPU_GETPARAM: Ioctl.VIRTGPU_GETPARAM,
        VIRTGPU_RESOURCE_INFO: Ioctl.VIRTGPU_RESOURCE_INFO,
        VIRTGPU_WAIT: Ioctl.VIRTGPU_WAIT,
        VIRTGPU_GET_CAPS: Ioctl.VIRTGPU_GET_CAPS,
        VIRTGPU_RESOURCE_CREATE_BLOB: Ioctl.VIRTGPU_RESOURCE_CREATE_BLOB,
        VIRTGPU_CONTEXT_INIT: Ioctl.VIRTGPU_CONTEXT_INIT,
        'version.name_len': uapi.DrmVersion.NAME_LEN,
        'version.name': uapi.DrmVersion.NAME,
        'version.size': uapi.DRM_VERSION_SIZE,
        'execbuffer.ring_idx': uapi.Execbuffer.RING_IDX,
        'execbuffer.fence_fd': uapi.Execbuffer.FENCE_FD,
        'execbuffer.bo_handles': uapi.Execbuffer.BO_HANDLES,
        'blob.cmd': uapi.CreateBlob.CMD,
        'blob.blob_id': uapi.CreateBlob.BLOB_ID,
        'blob.size': uapi.VIRTGPU_CREATE_BLOB_SIZE,
        EXECBUF_RING_IDX: uapi.EXECBUF_RING_IDX,
        EVENT_FENCE_SIGNALED: uapi.VIRTGPU_EVENT_FENCE_SIGNALED,
        CONTEXT_PARAM_POLL_RINGS_MASK: uapi.ContextParam.POLL_RINGS_MASK,
      }).toEqual(got);
      // The 5.16 EXECBUFFER layout the ioctl number encodes (40 bytes; newer kernels take it).
      expect((Ioctl.VIRTGPU_EXECBUFFER >>> 16) & 0x3fff).toBe(40);
      expect(Ioctl.VIRTGPU_EXECBUFFER).toBe(0xc0286442);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

#!/bin/bash
# Builds the VM harness of `npm run test:vm` into the git-ignored folder .vm/ (see
# /work/shared/reference/vm-harness.md): a Debian sid chroot with QEMU >= 11.1, bookworm's guest
# kernel, and a busybox initramfs whose init mounts the host root read-only over 9p. Every step
# is skipped when its output exists, so a second run costs nothing. Needs root and network access
# to the Debian mirror named in the host's apt sources.
set -euo pipefail

PROJECT=$(cd "$(dirname "$0")/../.." && pwd)
VM=${TSWL_VM_DIR:-$PROJECT/.vm}
SID=$VM/sid
log() { echo "vm-build: $*" >&2; }

[ "$(id -u)" = 0 ] || { log "needs root (debootstrap, chroot, mounts)"; exit 1; }
mkdir -p "$VM/dl"

# The mirror the host already uses (no mirror host is named here).
mirror() {
  local f uri
  for f in /etc/apt/sources.list.d/debian.sources; do
    [ -f "$f" ] || continue
    uri=$(sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\).*/\1/p' "$f" | grep -v security | head -1)
    [ -n "$uri" ] && { echo "$uri"; return; }
  done
  uri=$(sed -n 's/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\([^[:space:]]*\)[[:space:]].*/\2/p' \
    /etc/apt/sources.list 2>/dev/null | grep -v security | head -1)
  [ -n "$uri" ] || { log "no Debian mirror found in the apt sources"; exit 1; }
  echo "$uri"
}

need() { command -v "$1" >/dev/null || { log "installing $2"; apt-get install -y "$2" >&2; }; }
need debootstrap debootstrap
need cpio cpio

# ---- 1. sid chroot with QEMU >= 11.1 --------------------------------------------------------
if [ ! -x "$SID/usr/bin/qemu-system-x86_64" ]; then
  if [ ! -x "$SID/usr/bin/apt-get" ]; then
    log "debootstrap sid into $SID"
    rm -rf "$SID"
    debootstrap --variant=minbase sid "$SID" "$(mirror)" >&2
  fi
  mounted=()
  cleanup() { for m in "${mounted[@]}"; do umount "$m" || true; done; }
  trap cleanup EXIT
  mountpoint -q "$SID/proc" || { mount -t proc proc "$SID/proc"; mounted+=("$SID/proc"); }
  cp /etc/resolv.conf "$SID/etc/resolv.conf" 2>/dev/null || true
  log "installing qemu-system-x86 in the chroot"
  # A mirror snapshot may carry an expired Release file; its signature is still checked.
  chroot "$SID" apt-get -o Acquire::Check-Valid-Until=false update >&2
  DEBIAN_FRONTEND=noninteractive chroot "$SID" apt-get install -y --no-install-recommends \
    qemu-system-x86 >&2
  chroot "$SID" apt-get clean
  cleanup
  mounted=()
  trap - EXIT
fi
"$SID/usr/bin/qemu-system-x86_64" --version >/dev/null 2>&1 ||
  chroot "$SID" qemu-system-x86_64 --version | head -1 >&2

# The kernel's DRM uapi headers (test/drm-uapi.test.ts checks our layouts against them).
if [ ! -f "$SID/usr/include/libdrm/virtgpu_drm.h" ]; then
  DEBIAN_FRONTEND=noninteractive chroot "$SID" apt-get install -y --no-install-recommends \
    libdrm-dev >&2
  chroot "$SID" apt-get clean
fi

# sid's Xwayland (24.1, with xwayland_shell_v1), run by the X11 tests through a wrapper.
if [ ! -x "$SID/usr/bin/Xwayland" ]; then
  DEBIAN_FRONTEND=noninteractive chroot "$SID" apt-get install -y --no-install-recommends \
    xwayland >&2
  chroot "$SID" apt-get clean
fi

# ---- 2. bookworm's guest kernel and busybox -------------------------------------------------
KVER=$(cat "$VM/kver" 2>/dev/null || true)
if [ -z "$KVER" ] || [ ! -f "$VM/kernel/boot/vmlinuz-$KVER" ]; then
  KVER=$(apt-cache depends linux-image-amd64 | sed -n 's/.*Depends: linux-image-//p' | head -1)
  [ -n "$KVER" ] || { log "cannot resolve linux-image-amd64 (apt-get update?)"; exit 1; }
  log "downloading linux-image-$KVER and busybox-static"
  (cd "$VM/dl" && apt-get download "linux-image-$KVER" busybox-static >&2)
  rm -rf "$VM/kernel" "$VM/busybox"
  dpkg-deb -x "$VM/dl/linux-image-${KVER}"_*.deb "$VM/kernel"
  dpkg-deb -x "$VM"/dl/busybox-static_*.deb "$VM/busybox"
  echo "$KVER" >"$VM/kver"
fi

# ---- 3. the initramfs -------------------------------------------------------------------------
INIT=$PROJECT/scripts/vm/init.sh
if [ ! -f "$VM/initrd.gz" ] || [ "$INIT" -nt "$VM/initrd.gz" ]; then
  log "building the initramfs"
  IR=$VM/initramfs
  K=$VM/kernel/lib/modules/$KVER/kernel
  rm -rf "$IR"
  mkdir -p "$IR"/bin "$IR"/dev "$IR"/proc "$IR"/sys "$IR"/mnt "$IR"/mods
  cp "$VM/busybox/bin/busybox" "$IR/bin/"
  for a in sh mount umount insmod cat echo grep dmesg ls mkdir chmod chroot poweroff sleep; do
    ln -s busybox "$IR/bin/$a"
  done
  i=1
  for m in drivers/virtio/virtio_ring drivers/virtio/virtio_pci_modern_dev \
    drivers/virtio/virtio_pci_legacy_dev drivers/virtio/virtio drivers/virtio/virtio_pci \
    drivers/gpu/drm/drm drivers/gpu/drm/drm_kms_helper drivers/gpu/drm/drm_shmem_helper \
    drivers/virtio/virtio_dma_buf drivers/gpu/drm/virtio/virtio-gpu fs/netfs/netfs \
    fs/fscache/fscache net/9p/9pnet net/9p/9pnet_virtio fs/9p/9p \
    drivers/char/hw_random/virtio-rng; do
    cp "$K/$m.ko" "$IR/mods/$(printf %02d $i)-$(basename $m).ko"
    i=$((i + 1))
  done
  install -m 0755 "$INIT" "$IR/init"
  (cd "$IR" && find . | cpio -o -H newc --quiet | gzip -9) >"$VM/initrd.gz.new"
  mv "$VM/initrd.gz.new" "$VM/initrd.gz"
fi
mkdir -p "$SID/vm"
cp "$VM/kernel/boot/vmlinuz-$KVER" "$SID/vm/vmlinuz"
cp "$VM/initrd.gz" "$SID/vm/initrd.gz"
log "ready: $SID with $(chroot "$SID" qemu-system-x86_64 --version | head -1), kernel $KVER"

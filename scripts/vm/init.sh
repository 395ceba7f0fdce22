#!/bin/sh
# init of the test guest's initramfs (scripts/vm/build.sh): loads the virtio, DRM and 9p modules,
# mounts the host root read-only over 9p and runs the test script named by `e2e=` on the kernel
# command line inside it, then powers off. The serial console carries everything to the host.
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in /mods/*.ko; do
  case "$m" in *drm_kms_helper*) p="fbdev_emulation=0" ;; *) p="" ;; esac
  insmod "$m" $p || echo "insmod failed: $m"
done
echo "=== virtio-gpu ==="
dmesg | grep -i -E '\[drm\]|virtio_gpu'
ls -l /dev/dri
echo "=== host userland ==="
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144 hostroot /mnt || echo "9p mount failed"
mount -t proc proc /mnt/proc
mount -t sysfs sys /mnt/sys
mount -t devtmpfs dev /mnt/dev
mkdir -p /mnt/dev/pts /mnt/dev/shm
mount -t devpts -o ptmxmode=0666 devpts /mnt/dev/pts # terminals (weston-terminal) need ptys
mount -t tmpfs shm /mnt/dev/shm
mount -t tmpfs run /mnt/run
# the guest gets a writable /tmp of its own, but a checkout that lives under the host's /tmp
# (where the test's scripts are) must stay visible: keep the host's /tmp reachable and bind the
# directory holding the script back in place
mkdir -p /mnt/run/host-tmp
mount -o bind /mnt/tmp /mnt/run/host-tmp
mount -t tmpfs tmp /mnt/tmp
case "$e2e" in
  /tmp/?*/*)
    top=${e2e#/tmp/}
    top=${top%%/*}
    mkdir -p "/mnt/tmp/$top"
    mount -o bind "/mnt/run/host-tmp/$top" "/mnt/tmp/$top"
    ;;
esac
mkdir -p -m 0700 /mnt/run/user/0
echo "e2e=$e2e"
if [ -n "$e2e" ]; then
  chroot /mnt /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/tmp \
    XDG_RUNTIME_DIR=/run/user/0 /bin/sh "$e2e"
  echo "E2E_EXIT=$?"
fi
poweroff -f

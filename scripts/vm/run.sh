#!/bin/bash
# Boots the test guest built by scripts/vm/build.sh under TCG and prints its serial console.
#   run.sh [--qemu sid|bookworm] [--socket PATH] [--timeout SECONDS] [--e2e SCRIPT] [--mem MiB]
# --qemu sid (default): QEMU >= 11.1 in the sid chroot, with `vhost-user-test-device-pci` as a
#   virtio-gpu (virtio id 16) whose back-end listens on --socket (a host path inside the chroot,
#   default .vm/sid/vm/gpu.sock); the back-end must be listening already.
# --qemu bookworm: the host's own QEMU (7.2) with its built-in `virtio-gpu-pci` (no context-init).
# --e2e: a host path of a script the guest runs (as root, in the host's root filesystem shared
#   read-only over 9p); the console then shows E2E_EXIT=<status>.
set -euo pipefail

PROJECT=$(cd "$(dirname "$0")/../.." && pwd)
VM=${TSWL_VM_DIR:-$PROJECT/.vm}
SID=$VM/sid
QEMU=sid
SOCKET=$SID/vm/gpu.sock
TIMEOUT=300
E2E=
MEM=512
while [ $# -gt 0 ]; do
  case "$1" in
    --qemu) QEMU=$2; shift 2 ;;
    --socket) SOCKET=$2; shift 2 ;;
    --timeout) TIMEOUT=$2; shift 2 ;;
    --e2e) E2E=$2; shift 2 ;;
    --mem) MEM=$2; shift 2 ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "run.sh: needs root (chroot, mounts)" >&2; exit 1; }
[ -f "$SID/vm/vmlinuz" ] || { echo "run.sh: run scripts/vm/build.sh first" >&2; exit 1; }

APPEND="console=ttyS0 loglevel=4 panic=-1${E2E:+ e2e=$E2E}"
COMMON=(-accel tcg -machine q35 -m "${MEM}M" -nographic -no-reboot -nic none -device virtio-rng-pci)

if [ "$QEMU" = bookworm ]; then
  command -v qemu-system-x86_64 >/dev/null || apt-get install -y qemu-system-x86 >&2
  exec timeout -k 5 "$TIMEOUT" qemu-system-x86_64 "${COMMON[@]}" \
    -kernel "$SID/vm/vmlinuz" -initrd "$SID/vm/initrd.gz" -append "$APPEND" \
    -device virtio-gpu-pci \
    -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap
fi

case "$SOCKET" in
  "$SID"/*) INSIDE=${SOCKET#"$SID"} ;;
  *) echo "run.sh: --socket must be inside $SID (QEMU runs in the chroot)" >&2; exit 2 ;;
esac

mounted=()
cleanup() {
  local i
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount "${mounted[$i]}" 2>/dev/null || umount -l "${mounted[$i]}" || true; done
}
trap cleanup EXIT
mkdir -p "$SID/mnt/hostroot"
mountpoint -q "$SID/proc" || { mount -t proc proc "$SID/proc"; mounted+=("$SID/proc"); }
mountpoint -q "$SID/dev" || { mount --bind /dev "$SID/dev"; mounted+=("$SID/dev"); }
if ! mountpoint -q "$SID/mnt/hostroot"; then
  mount --bind / "$SID/mnt/hostroot"
  mounted+=("$SID/mnt/hostroot")
  mount -o remount,bind,ro "$SID/mnt/hostroot"
fi

# QEMU runs in the background so that a SIGTERM to this script (a test stopping it) ends QEMU at
# once and the mounts above are released; `timeout` sits in a process group of its own.
timeout -k 5 "$TIMEOUT" chroot "$SID" qemu-system-x86_64 "${COMMON[@]}" \
  -object memory-backend-memfd,id=mem,size="${MEM}M",share=on -machine memory-backend=mem \
  -kernel /vm/vmlinuz -initrd /vm/initrd.gz -append "$APPEND" \
  -chardev socket,id=gpu,path="$INSIDE" \
  -device vhost-user-test-device-pci,id=gpu0,chardev=gpu,virtio-id=16,num_vqs=2,config_size=16 \
  -virtfs local,path=/mnt/hostroot,mount_tag=hostroot,security_model=none,readonly=on </dev/null &
qemu=$!
trap 'kill -TERM "$qemu" 2>/dev/null; wait "$qemu"; exit 143' TERM INT HUP
status=0
wait "$qemu" || status=$?
exit "$status"

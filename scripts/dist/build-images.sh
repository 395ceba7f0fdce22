#!/bin/bash
# Builds the machines `npm run test:dist` runs in, into $TSWL_DIST_DIR (default
# /var/cache/tswl-proxy-dist); each is built once and reused:
#   bookworm/      Debian 12 minbase with systemd and wayland-utils, and no Node: the single
#                  executables run there, and it boots under systemd-nspawn for tswl-host@.service
#   bookworm-dev/  the same plus what building the addon takes (g++, make, python3) and
#                  ca-certificates, still no Node: the README's install steps run in a throwaway
#                  overlay of it once Node is added
# An image made by another version of this script is made again. Needs root and the Debian mirror
# of the host's apt sources.
set -euo pipefail

DIST=${TSWL_DIST_DIR:-/var/cache/tswl-proxy-dist}
log() { echo "dist-images: $*" >&2; }
[ "$(id -u)" = 0 ] || { log "needs root (debootstrap, chroot)"; exit 1; }
mkdir -p "$DIST"
RECIPE=$(sha256sum "$0" | cut -c1-16)

# The mirror the host already uses.
mirror() {
  local uri
  uri=$(sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\).*/\1/p' /etc/apt/sources.list.d/*.sources \
    2>/dev/null | grep -v security | head -1 || true)
  [ -n "$uri" ] || uri=$(sed -n 's/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\([^[:space:]]*\)[[:space:]].*/\2/p' \
    /etc/apt/sources.list 2>/dev/null | grep -v security | head -1 || true)
  [ -n "$uri" ] || { log "no Debian mirror found in the apt sources"; exit 1; }
  echo "$uri"
}

# Runs apt-get install in a chroot, with /proc mounted for the packages' scripts.
chroot_install() {
  local root=$1
  shift
  mount -t proc proc "$root/proc"
  trap 'umount "$root/proc"' RETURN
  cp /etc/resolv.conf "$root/etc/resolv.conf"
  chroot "$root" apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive chroot "$root" apt-get install -y -q --no-install-recommends "$@" >&2
  chroot "$root" apt-get clean
}

BASE=$DIST/bookworm
if [ "$(cat "$BASE/.complete" 2>/dev/null)" != "$RECIPE" ]; then
  rm -rf "$BASE"
  log "debootstrap bookworm into $BASE"
  debootstrap --variant=minbase --include=systemd,systemd-sysv,libpam-systemd,dbus,wayland-utils \
    bookworm "$BASE" "$(mirror)" >&2
  # The user whose manager runs tswl-host@.service in the container (a uid no host account is
  # likely to have: the test's weston runs as it on the host).
  chroot "$BASE" useradd --create-home --uid 4242 --shell /bin/bash vmuser
  # As on any machine with a kernel installed; ProtectKernelModules= hides it.
  mkdir -p "$BASE/usr/lib/modules"
  # The container has no console login to offer and no network to configure.
  chroot "$BASE" systemctl mask console-getty.service getty@.service systemd-networkd.service \
    systemd-resolved.service >&2
  if chroot "$BASE" sh -c 'command -v node || command -v nodejs'; then
    log "$BASE has Node in it; it must not"
    exit 1
  fi
  echo "$RECIPE" >"$BASE/.complete"
fi

DEV=$DIST/bookworm-dev
if [ "$(cat "$DEV/.complete" 2>/dev/null)" != "$RECIPE" ]; then
  rm -rf "$DEV"
  log "copying $BASE to $DEV and installing the addon's build tools"
  cp -a "$BASE" "$DEV"
  rm "$DEV/.complete"
  chroot_install "$DEV" ca-certificates g++ make python3
  echo "$RECIPE" >"$DEV/.complete"
fi
log "ready: $BASE, $DEV"

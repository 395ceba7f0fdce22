#!/usr/bin/env bash
# Installs the Debian packages that `npm run demo` and the end-to-end tests need.
# Only missing packages are installed; apt-get update runs first when something must be installed.
# Works as root, or through sudo otherwise. Set TSWL_DEPS_DRY_RUN=1 to only list what is missing.
set -euo pipefail

# The one list of packages (Debian 12 "bookworm" names).
PACKAGES=(
  weston            # host compositor, weston-screenshooter and the demo clients (weston-simple-shm, …)
  xvfb              # X server for weston's x11 backend (a seat, input, screenshots)
  xauth             # used by Xvfb helpers
  xdotool           # focus the weston window and type into it (XTEST)
  x11-utils         # xwininfo, handy when debugging the X side
  imagemagick       # import (screenshots) and compare (pixel diffs)
  faketime          # libfaketime: freezes weston's clock so animated clients render a fixed frame
  foot              # a Wayland terminal used as a test client
  wayland-utils     # wayland-info
  gtk-4-examples    # gtk4-demo
  libwayland-bin    # wayland-scanner
  libwayland-dev    # core protocol XML
  wayland-protocols # protocol XML
  waypipe           # benchmark comparison
  libgl1-mesa-dri   # Mesa software rendering (llvmpipe) for EGL clients
  libegl-mesa0      # Mesa EGL
  fonts-dejavu-core # a fixed, known font set for pixel comparisons
  fontconfig        # fc-match and the font cache
  xkb-data          # keymaps for weston's seat
  dbus              # GTK is quieter with a session bus available
  procps            # pgrep/pkill used by cleanup checks
  systemd           # systemd-analyze, systemd-socket-activate, systemd-notify for the unit tests
  python3           # raw-socket peers in tests (more than 28 fds, notify receivers)
  wl-clipboard      # wl-copy and wl-paste: clipboard both ways across the cross-domain link
  gcc               # the benchmark's load generators, written in C against libwayland-client
  libc6-dev         # their C library headers
  qemu-system-x86   # bookworm's QEMU 7.2: the VM test's guest without context-init
  debootstrap       # the VM harness: a sid chroot with QEMU >= 11.1 (scripts/vm/build.sh)
  cpio              # the VM harness: the guest's initramfs
  xwayland          # tswl-proxy --x-display: Xwayland 22.1.9, and weston --xwayland to compare with
  xterm             # X11 test client
  x11-apps          # xeyes, xlogo: X11 test clients
  xclip             # X11 selections from the command line
  wmctrl            # EWMH requests of an X client: fullscreen, maximize, activate
  gtk-3-examples    # gtk3-demo, a GTK3 client (GDK_BACKEND=x11)
  binutils          # strip, for npm run build:exe (Node's symbols are a tenth of its size)
  systemd-container # systemd-nspawn: npm run test:dist boots fresh bookworm machines
)

if [[ "${1:-}" == "--list" ]]; then
  printf '%s\n' "${PACKAGES[@]}"
  exit 0
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
  if [[ "$status" != "installed" ]]; then
    missing+=("$pkg")
  fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install-deps: all ${#PACKAGES[@]} Debian packages are already installed."
  exit 0
fi

echo "install-deps: missing Debian packages: ${missing[*]}"
if [[ -n "${TSWL_DEPS_DRY_RUN:-}" ]]; then
  exit 0
fi

if [[ $(id -u) -eq 0 ]]; then
  SUDO=()
elif command -v sudo >/dev/null 2>&1; then
  SUDO=(sudo)
else
  echo "install-deps: not root and sudo is not available; install these packages by hand." >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
echo "install-deps: running apt-get update"
"${SUDO[@]}" apt-get update -q
echo "install-deps: installing ${missing[*]}"
"${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
echo "install-deps: done."

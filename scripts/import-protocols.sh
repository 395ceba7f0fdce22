#!/usr/bin/env bash
# Imports the protocol XML that tswl-proxy relays into protocols/, all from Debian packages of one
# suite (default sid):
#   - wayland.xml from libwayland-dev;
#   - from wayland-protocols: every stable and staging protocol, plus the unstable ones listed in
#     UNSTABLE below. An unstable protocol whose interfaces all live on in a stable file (it was
#     moved, same interface names) is skipped: the stable file is the newer definition of the very
#     interfaces clients bind;
#   - the KDE server-decoration protocol from plasma-wayland-protocols (PLASMA), into plasma/;
#   - wlroots' protocols (WLR) from librust-wayland-protocols-wlr-dev, the Debian package that ships
#     the wlr-protocols XML, into wlr/; and the virtual keyboard and input method v2 (MISC) from
#     librust-wayland-protocols-misc-dev, into misc/. Most of these are privileged (screen
#     capture, input injection, output control): the proxy knows them so that a policy can decide.
# Every <description> element is dropped; <copyright> and everything else are kept.
# protocols/SOURCES records the packages, their exact versions and the files.
#
# Packages come through apt-get, reusing the mirror URIs of the system's own Debian source, with a
# temporary source list, state and cache: the system's apt configuration is never changed.
#
# Environment: SUITE (default sid) is the suite to take the packages from.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
dest="$repo/protocols"
suite="${SUITE:-sid}"

# Unstable protocols still bound by clients (paths below unstable/ in wayland-protocols).
UNSTABLE=(
  xdg-decoration/xdg-decoration-unstable-v1.xml
  primary-selection/primary-selection-unstable-v1.xml
  pointer-constraints/pointer-constraints-unstable-v1.xml
  relative-pointer/relative-pointer-unstable-v1.xml
  linux-dmabuf/linux-dmabuf-unstable-v1.xml
  xdg-output/xdg-output-unstable-v1.xml
  text-input/text-input-unstable-v3.xml
  tablet/tablet-unstable-v2.xml
  idle-inhibit/idle-inhibit-unstable-v1.xml
  keyboard-shortcuts-inhibit/keyboard-shortcuts-inhibit-unstable-v1.xml
  xdg-foreign/xdg-foreign-unstable-v1.xml
  xdg-foreign/xdg-foreign-unstable-v2.xml
  xdg-shell/xdg-shell-unstable-v6.xml
  pointer-gestures/pointer-gestures-unstable-v1.xml
  input-timestamps/input-timestamps-unstable-v1.xml
  linux-explicit-synchronization/linux-explicit-synchronization-unstable-v1.xml
  text-input/text-input-unstable-v1.xml
  fullscreen-shell/fullscreen-shell-unstable-v1.xml
)

# From plasma-wayland-protocols (below /usr/share/plasma-wayland-protocols).
PLASMA=(
  server-decoration.xml
)

# From librust-wayland-protocols-wlr-dev (its wlr-protocols/unstable folder).
WLR=(
  wlr-data-control-unstable-v1.xml
  wlr-export-dmabuf-unstable-v1.xml
  wlr-foreign-toplevel-management-unstable-v1.xml
  wlr-gamma-control-unstable-v1.xml
  wlr-layer-shell-unstable-v1.xml
  wlr-output-management-unstable-v1.xml
  wlr-output-power-management-unstable-v1.xml
  wlr-screencopy-unstable-v1.xml
  wlr-virtual-pointer-unstable-v1.xml
)

# From librust-wayland-protocols-misc-dev (its protocols folder).
MISC=(
  input-method-unstable-v2.xml
  virtual-keyboard-unstable-v1.xml
)

die() {
  echo "import-protocols: $*" >&2
  exit 1
}

for tool in apt-get dpkg-deb node; do
  command -v "$tool" >/dev/null || die "$tool not found"
done

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# --- A temporary apt setup that reuses the system's Debian mirror -------------------------------

# Prints "URI SIGNED_BY" of the system's main Debian archive (not the security one), from the
# deb822 sources or, failing that, from a one-line sources.list.
system_debian_source() {
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -r "$f" ] || continue
    awk '
      function flush() {
        if (uri != "" && suites !~ /-security/ && types ~ /(^| )deb( |$)/ && !done) {
          print uri, (signed == "" ? "-" : signed); done = 1
        }
        uri = ""; suites = ""; types = ""; signed = ""
      }
      /^[ \t]*$/ { flush(); next }
      /^#/ { next }
      /^Types:/ { sub(/^Types:[ \t]*/, ""); types = $0 }
      /^URIs:/ { uri = $2 }
      /^Suites:/ { sub(/^Suites:[ \t]*/, ""); suites = $0 }
      /^Signed-By:/ { signed = $2 }
      END { flush() }
    ' "$f"
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -r "$f" ] || continue
    awk '$1 == "deb" && $0 !~ /-security/ {
      uri = ""; for (i = 2; i <= NF; i++) if ($i !~ /^\[/ && $i !~ /\]$/ && $i !~ /=/) { uri = $i; break }
      if (uri != "") print uri, "-"
    }' "$f"
  done
}

read -r mirror signed_by < <(system_debian_source | head -n 1) ||
  die "no Debian source found in /etc/apt to reuse"
[ "$signed_by" = "-" ] && signed_by=/usr/share/keyrings/debian-archive-keyring.gpg

mkdir -p "$tmp/lists/partial" "$tmp/cache/archives/partial" "$tmp/deb"
add_suite() {
  printf 'Types: deb\nURIs: %s\nSuites: %s\nComponents: main\nSigned-By: %s\n\n' \
    "$mirror" "$1" "$signed_by" >>"$tmp/apt.sources"
}
apt_opts=(
  -o "Dir::Etc::SourceList=$tmp/apt.sources"
  -o "Dir::Etc::SourceParts=-"
  -o "Dir::State::Lists=$tmp/lists"
  -o "Dir::Cache=$tmp/cache"
  -o "APT::Get::List-Cleanup=0"
)
[ "$(id -u)" = 0 ] && apt_opts+=(-o "APT::Sandbox::User=root")

apt_fetch() { # apt_fetch PKG/SUITE -> path of the downloaded .deb on stdout
  (cd "$tmp/deb" && apt-get -q "${apt_opts[@]}" download "$1" >&2)
  local deb
  deb="$(ls -t "$tmp/deb/${1%%/*}"_*.deb | head -n 1)"
  [ -f "$deb" ] || die "apt-get download $1 produced no .deb"
  echo "$deb"
}

add_suite "$suite"
echo "import-protocols: apt-get update ($mirror: $suite)" >&2
apt-get -q "${apt_opts[@]}" update >&2

# fetch_package PKG: downloads and unpacks PKG from the suite into $tmp/PKG, sets $version and
# records it in $sources.
sources=()
fetch_package() {
  local deb
  deb="$(apt_fetch "$1/$suite")"
  version="$(dpkg-deb -f "$deb" Version)"
  dpkg-deb -x "$deb" "$tmp/$1"
  sources+=("$1 $version (suite $suite, .deb sha256 $(sha256sum "$deb" | cut -d' ' -f1))")
}

# --- wayland.xml ------------------------------------------------------------------------------

fetch_package libwayland-dev
wl_version=$version
wl_root="$tmp/libwayland-dev/usr/share/wayland"
[ -r "$wl_root/wayland.xml" ] || die "wayland.xml not found in libwayland-dev $wl_version"

# --- wayland-protocols ------------------------------------------------------------------------

fetch_package wayland-protocols
wp_version=$version
wp_root="$tmp/wayland-protocols/usr/share/wayland-protocols"
[ -d "$wp_root/stable" ] || die "no stable/ in wayland-protocols $wp_version"

files=()
while IFS= read -r f; do files+=("$f"); done < <(
  cd "$wp_root" && find stable staging -name '*.xml' | LC_ALL=C sort
)

interfaces_of() { grep -o '<interface[^>]*name="[^"]*"' "$1" | sed 's/.*name="\([^"]*\)".*/\1/' | LC_ALL=C sort -u; }
stable_ifaces="$(cd "$wp_root" && for f in stable/*/*.xml; do interfaces_of "$f"; done | LC_ALL=C sort -u)"

skipped=()
for u in "${UNSTABLE[@]}"; do
  path="unstable/$u"
  [ -f "$wp_root/$path" ] || die "$path is not in wayland-protocols $wp_version: update UNSTABLE"
  missing="$(comm -23 <(interfaces_of "$wp_root/$path") <(echo "$stable_ifaces"))"
  if [ -z "$missing" ]; then
    skipped+=("$path")
  else
    files+=("$path")
  fi
done

# --- Protocols outside wayland-protocols ---------------------------------------------------------

fetch_package plasma-wayland-protocols
plasma_version=$version
plasma_root="$tmp/plasma-wayland-protocols/usr/share/plasma-wayland-protocols"
fetch_package librust-wayland-protocols-wlr-dev
wlr_version=$version
wlr_root="$(echo "$tmp"/librust-wayland-protocols-wlr-dev/usr/share/cargo/registry/wayland-protocols-wlr-*/wlr-protocols/unstable)"
fetch_package librust-wayland-protocols-misc-dev
misc_version=$version
misc_root="$(echo "$tmp"/librust-wayland-protocols-misc-dev/usr/share/cargo/registry/wayland-protocols-misc-*/protocols)"
for f in "${PLASMA[@]}"; do [ -f "$plasma_root/$f" ] || die "$f is not in plasma-wayland-protocols $plasma_version"; done
for f in "${WLR[@]}"; do [ -f "$wlr_root/$f" ] || die "$f is not in librust-wayland-protocols-wlr-dev $wlr_version"; done
for f in "${MISC[@]}"; do [ -f "$misc_root/$f" ] || die "$f is not in librust-wayland-protocols-misc-dev $misc_version"; done

# --- Write protocols/ -------------------------------------------------------------------------

rm -rf "$dest/stable" "$dest/staging" "$dest/unstable" "$dest/plasma" "$dest/wlr" "$dest/misc" \
  "$dest/wayland.xml" "$dest/SOURCES"
mkdir -p "$dest"
node "$here/strip-protocol.mjs" "$wl_root" "$dest" wayland.xml
node "$here/strip-protocol.mjs" "$wp_root" "$dest" "${files[@]}"
node "$here/strip-protocol.mjs" "$plasma_root" "$dest/plasma" "${PLASMA[@]}"
node "$here/strip-protocol.mjs" "$wlr_root" "$dest/wlr" "${WLR[@]}"
node "$here/strip-protocol.mjs" "$misc_root" "$dest/misc" "${MISC[@]}"

{
  echo "Protocol XML relayed by tswl-proxy, imported by scripts/import-protocols.sh."
  echo "Every <description> element was removed; <copyright> and everything else are unchanged."
  echo
  echo "Packages (Debian):"
  for s in "${sources[@]}"; do echo "  $s"; done
  echo
  echo "From libwayland-dev $wl_version:"
  echo "  wayland.xml"
  echo
  echo "From wayland-protocols $wp_version:"
  for f in "${files[@]}"; do echo "  $f"; done
  echo
  echo "From plasma-wayland-protocols $plasma_version (/usr/share/plasma-wayland-protocols):"
  for f in "${PLASMA[@]}"; do echo "  plasma/$f"; done
  echo
  echo "From librust-wayland-protocols-wlr-dev $wlr_version (the crate's wlr-protocols/unstable):"
  for f in "${WLR[@]}"; do echo "  wlr/$f"; done
  echo
  echo "From librust-wayland-protocols-misc-dev $misc_version (the crate's protocols):"
  for f in "${MISC[@]}"; do echo "  misc/$f"; done
  if [ "${#skipped[@]}" -gt 0 ]; then
    echo
    echo "Not imported: moved to stable/ with the same interface names (the stable file defines them):"
    for f in "${skipped[@]}"; do echo "  $f"; done
  fi
} >"$dest/SOURCES"

count=$((1 + ${#files[@]} + ${#PLASMA[@]} + ${#WLR[@]} + ${#MISC[@]}))
echo "import-protocols: wrote $count files to $dest (wayland $wl_version, wayland-protocols $wp_version)" >&2

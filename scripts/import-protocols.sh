#!/usr/bin/env bash
# Imports the protocol XML that tswl-proxy relays into protocols/:
#   - wayland.xml from Debian's libwayland-dev (the installed bookworm package, or downloaded);
#   - from the newest wayland-protocols Debian ships (suite sid): every stable and staging
#     protocol, plus the unstable ones listed in UNSTABLE below. An unstable protocol whose
#     interfaces all live on in a stable file (it was moved, same interface names) is skipped:
#     the stable file is the newer definition of the very interfaces clients bind.
# Every <description> element is dropped; <copyright> and everything else are kept.
# protocols/SOURCES records the packages, their exact versions and the files.
#
# Packages come through apt-get, reusing the mirror URIs of the system's own Debian source, with a
# temporary source list, state and cache: the system's apt configuration is never changed.
#
# Environment: SUITE (default sid) is the suite to take wayland-protocols from.
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
)

die() {
  echo "import-protocols: $*" >&2
  exit 1
}

for tool in apt-get dpkg-deb dpkg-query node; do
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

# --- wayland.xml ------------------------------------------------------------------------------

wl_xml=/usr/share/wayland/wayland.xml
wl_version="$(dpkg-query -W -f='${Version}' libwayland-dev 2>/dev/null || true)"
need_bookworm=0
if [ ! -r "$wl_xml" ] || [ -z "$wl_version" ]; then
  need_bookworm=1
fi

add_suite "$suite"
[ "$need_bookworm" = 1 ] && add_suite bookworm
echo "import-protocols: apt-get update ($mirror: $suite$([ "$need_bookworm" = 1 ] && echo ', bookworm'))" >&2
apt-get -q "${apt_opts[@]}" update >&2

if [ "$need_bookworm" = 1 ]; then
  deb="$(apt_fetch libwayland-dev/bookworm)"
  wl_version="$(dpkg-deb -f "$deb" Version)"
  dpkg-deb -x "$deb" "$tmp/libwayland-dev"
  wl_xml="$tmp/libwayland-dev/usr/share/wayland/wayland.xml"
  wl_origin="downloaded libwayland-dev_${wl_version}.deb (bookworm)"
else
  wl_origin="the installed package"
fi
[ -r "$wl_xml" ] || die "wayland.xml not found in libwayland-dev"

# --- wayland-protocols ------------------------------------------------------------------------

wp_deb="$(apt_fetch "wayland-protocols/$suite")"
wp_version="$(dpkg-deb -f "$wp_deb" Version)"
wp_sha256="$(sha256sum "$wp_deb" | cut -d' ' -f1)"
dpkg-deb -x "$wp_deb" "$tmp/wp"
wp_root="$tmp/wp/usr/share/wayland-protocols"
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

# --- Write protocols/ -------------------------------------------------------------------------

rm -rf "$dest/stable" "$dest/staging" "$dest/unstable" "$dest/wayland.xml" "$dest/SOURCES"
mkdir -p "$dest"
node "$here/strip-protocol.mjs" "$(dirname "$wl_xml")" "$dest" wayland.xml
node "$here/strip-protocol.mjs" "$wp_root" "$dest" "${files[@]}"

{
  echo "Protocol XML relayed by tswl-proxy, imported by scripts/import-protocols.sh."
  echo "Every <description> element was removed; <copyright> and everything else are unchanged."
  echo
  echo "Packages (Debian):"
  echo "  libwayland-dev $wl_version ($wl_origin)"
  echo "  wayland-protocols $wp_version (suite $suite, .deb sha256 $wp_sha256)"
  echo
  echo "From libwayland-dev $wl_version:"
  echo "  wayland.xml"
  echo
  echo "From wayland-protocols $wp_version:"
  for f in "${files[@]}"; do echo "  $f"; done
  if [ "${#skipped[@]}" -gt 0 ]; then
    echo
    echo "Not imported: moved to stable/ with the same interface names (the stable file defines them):"
    for f in "${skipped[@]}"; do echo "  $f"; done
  fi
} >"$dest/SOURCES"

echo "import-protocols: wrote $((${#files[@]} + 1)) files to $dest (wayland $wl_version, wayland-protocols $wp_version)" >&2

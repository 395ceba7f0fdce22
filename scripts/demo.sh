#!/usr/bin/env bash
# The README's demo: a real Wayland client shown through tswl-proxy, and a screenshot of it.
# Uses the running compositor if there is one; otherwise starts a headless weston of its own.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh

if [[ ! -e dist/cli/tswl-proxy-main.js ]]; then
  echo "demo: building first (npm install normally does this)"
  npm run build
fi

started=()
cleanup() {
  # the proxy (and its client) first, then the compositor under them
  for ((i = ${#started[@]} - 1; i >= 0; i--)); do kill "${started[i]}" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [[ -n "${own_runtime:-}" ]] && rm -rf "$own_runtime"
}
trap cleanup EXIT

screenshot_ok=0
if [[ -n "${XDG_RUNTIME_DIR:-}" && -S "${XDG_RUNTIME_DIR}/${WAYLAND_DISPLAY:-wayland-0}" ]]; then
  echo "demo: using the running compositor at ${XDG_RUNTIME_DIR}/${WAYLAND_DISPLAY:-wayland-0}"
  export WAYLAND_DISPLAY="${WAYLAND_DISPLAY:-wayland-0}"
else
  own_runtime=$(mktemp -d /tmp/tswl-demo-XXXXXX)
  chmod 700 "$own_runtime"
  export XDG_RUNTIME_DIR="$own_runtime" WAYLAND_DISPLAY=wayland-0
  echo "demo: no compositor running; starting a headless weston in $own_runtime"
  weston --backend=headless-backend.so --use-pixman --debug --socket=wayland-0 --idle-time=0 \
    --width=800 --height=600 >"$own_runtime/weston.log" 2>&1 &
  started+=($!)
  for _ in $(seq 50); do [[ -S "$own_runtime/wayland-0" ]] && break; sleep 0.1; done
  screenshot_ok=1
fi

echo "demo: running 'tswl-proxy --tag \"[demo] \" weston-flower' (the client talks only to the proxy)"
./bin/tswl-proxy --wayland-display tswl-demo --tag '[demo] ' weston-flower &
started+=($!)
sleep 3

if [[ $screenshot_ok == 1 ]]; then
  shot_dir=$(mktemp -d)
  (cd "$shot_dir" && weston-screenshooter >/dev/null 2>&1) || true
  shot=$(ls "$shot_dir"/*.png 2>/dev/null | head -1 || true)
  if [[ -n "$shot" ]]; then
    mv "$shot" demo-screenshot.png
    rm -rf "$shot_dir"
    echo "demo: screenshot of the compositor's output saved as $(pwd)/demo-screenshot.png"
  else
    echo "demo: weston-screenshooter did not produce a screenshot" >&2
    exit 1
  fi
else
  echo "demo: look at your desktop: weston-flower is shown through the proxy (titled \"[demo] …\")"
  sleep 3
fi
echo "demo: stopping the proxy and everything the demo started"

#!/usr/bin/env bash
# Takes the README's screenshots from the real app: builds the release binary, opens it under
# Xvfb with a fresh project and fresh settings, and clicks through the four steps with xdotool the
# way a first-time user would — make a certificate, look at Firmware and Flash, start the server,
# "Try without hardware", publish the newer build, watch the virtual device install it.
#
#   scripts/screenshots.sh              # writes assets/*.png
#   OUT=/tmp/shots scripts/screenshots.sh
#
# Coordinates are for the app's default 1000x700 window at the top-left of an unmanaged X screen.
# It also prints the app's CPU use over 10 s of idling (the window open, nothing moving).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$ROOT/assets}

if ! command -v xvfb-run >/dev/null || ! command -v xdotool >/dev/null || ! command -v import >/dev/null; then
    echo "Installing xvfb, xdotool and imagemagick…"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq xvfb xauth xdotool imagemagick >/dev/null
fi

cargo build --release -q -p otaforge --bin otaforge
mkdir -p "$OUT"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

cat >"$WORK/session.sh" <<'SESSION'
#!/usr/bin/env bash
set -euo pipefail
# Fresh settings: nothing remembered from an earlier run.
export HOME=$WORK/home XDG_DATA_HOME=$WORK/home/data XDG_CONFIG_HOME=$WORK/home/config
mkdir -p "$HOME"
"$ROOT/target/release/otaforge" --dir "$WORK/project" >"$WORK/app.log" 2>&1 &
APP=$!
trap 'kill $APP 2>/dev/null || true' EXIT

click() { xdotool mousemove "$1" "$2"; sleep 0.3; xdotool mousedown 1; sleep 0.1; xdotool mouseup 1; sleep "${3:-0.5}"; }
shot() { import -window root -crop 1000x700+0+0 +repage "$OUT/$1.png"; echo "  $OUT/$1.png"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$APP/stat"; }

for _ in $(seq 50); do xdotool search --name "OTA Forge" >/dev/null 2>&1 && break; sleep 0.2; done
sleep 2
xdotool windowfocus "$(xdotool search --name 'OTA Forge' | head -1)"
sleep 0.5

before=$(cpu_ticks); sleep 10; after=$(cpu_ticks)
echo "Idle for 10 s with the window open: $(( (after - before) * 10 )) ms of CPU ($(( after - before )) ticks of 10 ms)"

# 1. Certificate: a host name, Generate.
click 480 83; xdotool type --delay 40 "ota.lan"; sleep 0.3
click 255 183 3
shot certificate-step
# 2. Firmware and 3. Flash, as they open.
xdotool key ctrl+2; sleep 1; shot firmware-step
xdotool key ctrl+3; sleep 2; shot flash-step
# 4. Serve: start, a virtual device, publish the newer build it was given.
xdotool key ctrl+4; sleep 1
click 524 66 2          # Start server
click 643 66 6          # Try without hardware
shot serve-devices-before
click 659 160 2         # Publish the newer demo build…
shot serve-publish
click 248 505 1         # Publish
sleep 9                 # the device checks every 3 s, downloads, restarts, checks in
shot serve-releases
click 340 210 1         # Devices tab
shot serve-devices
click 529 210 1         # Log tab
shot serve-log
SESSION
chmod +x "$WORK/session.sh"

echo "Screenshots:"
WORK=$WORK ROOT=$ROOT OUT=$OUT xvfb-run -a -s "-screen 0 1280x800x24 -nolisten tcp" "$WORK/session.sh"

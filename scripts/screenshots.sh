#!/usr/bin/env bash
# Takes the README's screenshots from the real app: builds the release binary, opens it under
# Xvfb with a fresh project and fresh settings, and clicks through the four steps with xdotool the
# way a first-time user would — make a certificate, look at Firmware and Flash, start the server,
# "Try without hardware", publish the newer build, watch the virtual device install it.
#
#   scripts/screenshots.sh              # writes assets/*.png
#   OUT=/tmp/shots scripts/screenshots.sh
#   BUILD=0 scripts/screenshots.sh      # use target/release/otaforge as it is (no cargo build)
#
# It also prints the app's CPU use over 10 s of idling (the window open, nothing moving).
#
# How it stays reliable:
# - The window is found with `xdotool search --sync`, moved to 0,0 and sized to 1000x700 (the
#   app's default) explicitly, and given the keyboard focus (with no window manager winit ignores
#   input until it has it); every shot is that window's rectangle.
# - Every step waits for something observable instead of a fixed sleep: a file in the project
#   (ca.pem, endpoint.json, demo/*.bin), the store as `otaforge releases` / `otaforge devices
#   --json` read it (a release published, the device checked in, then installed 1.1.0), or the
#   window's pixels changing after a click and then holding still (`settle`). Each wait has a
#   deadline and names the click that missed, so a moved widget fails the run instead of
#   producing a wrong picture.
# - Run as root, the session gets network and host-name namespaces of its own (unshare): host
#   name "workbench", one address from the documentation range (192.0.2.10) on a veth pair that
#   leads nowhere, loopback for the server and the virtual device. The pictures then show no name
#   or address of the machine that took them, and port 3443 is free whatever runs outside.
#
# egui exposes no widget tree to X, so clicks are at pixel positions. Each CLICK_* below names
# its widget; they were read off screenshots of the 1000x700 window. When the layout changes,
# run with KEEP=1 (the session's temporary directory is kept and printed, with a screenshot
# of the states between shots as state-*.png; a failed run keeps it too, with failed.png), look at the pictures and update the positions.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$ROOT/assets}

if ! command -v xvfb-run >/dev/null || ! command -v xdotool >/dev/null || ! command -v import >/dev/null \
    || ! command -v xwd >/dev/null; then
    echo "Installing xvfb, xdotool, x11-apps and imagemagick…"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq xvfb xauth xdotool x11-apps imagemagick >/dev/null
fi

if [[ ${BUILD:-1} != 0 ]]; then
    cargo build --release -q -p otaforge --bin otaforge
fi
[[ -x target/release/otaforge ]] || { echo "no target/release/otaforge: run without BUILD=0" >&2; exit 1; }
mkdir -p "$OUT"
WORK=$(mktemp -d)
# Kept when asked (KEEP=1) or when the session failed, to look at; removed otherwise.
trap 'if [[ -n ${KEEP:-} || ${ok:-} != 1 ]]; then echo "Kept $WORK"; else rm -rf "$WORK"; fi' EXIT

cat >"$WORK/session.sh" <<'SESSION'
#!/usr/bin/env bash
set -euo pipefail
# Fresh settings: nothing remembered from an earlier run.
export HOME=$WORK/home XDG_DATA_HOME=$WORK/home/data XDG_CONFIG_HOME=$WORK/home/config
mkdir -p "$HOME"
PROJECT=$WORK/project
OTAFORGE=$ROOT/target/release/otaforge

# The window is 1000x700 at 0,0; positions are window pixels (= screen pixels there).
W=1000 H=700
CLICK_HOST_FIELD=(485 83)     # Certificate: the "Update-server host" text field
CLICK_GENERATE=(255 183)      # Certificate: "Generate cert", under the Key and Pin rows
CLICK_START=(524 66)          # Serve: "Start server", right of Listen on / Port
CLICK_TRY=(643 66)            # Serve: "Try without hardware", right of "Stop server" once it runs
CLICK_PUBLISH_DEMO=(308 208)  # Serve: "Publish the newer demo build…", under "Firmware to publish"
CLICK_PUBLISH=(248 541)       # the Publish firmware dialog: "Publish", bottom left
CLICK_TAB_DEVICES=(340 258)   # Serve: the "Devices (1)" tab, once the "Published 1.1.0" line shows
CLICK_TAB_LOG=(526 258)       # Serve: the "Log (n)" tab, same row
PARK=(100 400)                # the empty sidebar: no hover highlight or tooltip in a shot

"$OTAFORGE" --dir "$PROJECT" >"$WORK/app.log" 2>&1 &
APP=$!
trap 'kill $APP 2>/dev/null || true' EXIT

fail() {
    echo "screenshots: $*" >&2
    echo "  (the window as it was: $WORK/failed.png; the app's output: $WORK/app.log)" >&2
    import -window root -crop "${W}x${H}+0+0" +repage "$WORK/failed.png" 2>/dev/null || true
    exit 1
}
# wait_for SECONDS WHAT COMMAND…: runs COMMAND every 0.2 s until it succeeds.
wait_for() {
    local seconds=$1 what=$2
    shift 2
    local deadline=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || fail "waited ${seconds} s for $what"
        sleep 0.2
    done
}
frame() { xwd -silent -id "$WIN" | md5sum | cut -d' ' -f1; }
# settle: the window's pixels held still for 0.6 s (egui draws nothing once nothing moves).
settle() {
    local last now same=0 deadline=$((SECONDS + 10))
    last=$(frame)
    while ((same < 3)); do
        ((SECONDS < deadline)) || fail "the window kept changing for 10 s"
        sleep 0.2
        now=$(frame)
        if [[ $now == "$last" ]]; then same=$((same + 1)); else same=0 last=$now; fi
    done
}
# changed_from HASH: the window no longer shows the frame HASH.
changed_from() { [[ $(frame) != "$1" ]]; }
park() { xdotool mousemove "${PARK[@]}"; }
# click NAME X Y: press and release there (a short settle so egui sees two separate events).
click() {
    xdotool mousemove "$2" "$3"
    sleep 0.2
    xdotool mousedown 1
    sleep 0.1
    xdotool mouseup 1
    sleep 0.1
}
# click_and_see NAME X Y: click, then wait for the window to change (hover state excluded).
click_and_see() {
    xdotool mousemove "$2" "$3"
    settle
    local before
    before=$(frame)
    click "$@"
    wait_for 5 "the click on $1 at $2,$3 to change the window" changed_from "$before"
}
# key_and_see KEYS: press keys, then wait for the window to change.
key_and_see() {
    local before
    before=$(frame)
    xdotool key "$1"
    wait_for 5 "$1 to change the window" changed_from "$before"
}
shot() {
    park
    settle
    import -window root -crop "${W}x${H}+0+0" +repage "$OUT/$1.png"
    echo "  $OUT/$1.png"
}
state() { [[ -z ${KEEP:-} ]] || import -window root -crop "${W}x${H}+0+0" +repage "$WORK/state-$1.png"; }
# grep reads to the end (no -q): under pipefail, a grep that quits at its match would fail the
# check with the writer's SIGPIPE.
devices_json() { "$OTAFORGE" --dir "$PROJECT" devices --json; }
device_checked_in() { devices_json | grep '"mac"' >/dev/null; }
device_installed() { devices_json | grep '"state_detail": "installed 1.1.0"' >/dev/null; }
release_published() { "$OTAFORGE" --dir "$PROJECT" releases --channel demo | grep ' 1\.1\.0 ' >/dev/null; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$APP/stat"; }

WIN=$(timeout 30 xdotool search --sync --onlyvisible --name '^OTA Forge$' | head -1) \
    || fail "no window named \"OTA Forge\" within 30 s"
# (No --sync: it waits for a change, and there is none when the window is already so.)
xdotool windowmove "$WIN" 0 0
xdotool windowsize "$WIN" "$W" "$H"
wait_for 5 "the window to be ${W}x${H} at 0,0" sh -c \
    "xdotool getwindowgeometry '$WIN' | tr -d '\n' | grep -q 'Position: 0,0 .*Geometry: ${W}x${H}'"
xdotool windowfocus "$WIN"
wait_for 5 "the keyboard focus" sh -c "[ \"\$(xdotool getwindowfocus)\" = '$WIN' ]"
park
settle
state start

hz=$(getconf CLK_TCK)
before=$(cpu_ticks); sleep 10; after=$(cpu_ticks)
echo "Idle for 10 s with the window open: $(( (after - before) * 1000 / hz )) ms of CPU ($(( after - before )) ticks of $(( 1000 / hz )) ms)"

# 1. Certificate: a host name, Generate.
click_and_see "the host field" "${CLICK_HOST_FIELD[@]}"
xdotool type --delay 40 "ota.lan"
click "Generate cert" "${CLICK_GENERATE[@]}"
wait_for 30 "ca.pem (was Generate cert clicked?)" test -s "$PROJECT/ca.pem"
wait_for 5 "server.pem" test -s "$PROJECT/server.pem"
shot certificate-step
# 2. Firmware and 3. Flash, as they open.
key_and_see ctrl+2
shot firmware-step
key_and_see ctrl+3
shot flash-step
# 4. Serve: start, a virtual device, publish the newer build it was given.
key_and_see ctrl+4
settle
state serve-stopped
click "Start server" "${CLICK_START[@]}"
wait_for 15 "endpoint.json (was Start server clicked?)" test -s "$PROJECT/endpoint.json"
park
settle
state serve-started
click "Try without hardware" "${CLICK_TRY[@]}"
wait_for 30 "the demo build (was Try without hardware clicked?)" compgen -G "$PROJECT/demo/*.bin"
wait_for 30 "the virtual device's first check-in" device_checked_in
shot serve-devices-before
click_and_see "Publish the newer demo build…" "${CLICK_PUBLISH_DEMO[@]}"
shot serve-publish
click "Publish (in the dialog)" "${CLICK_PUBLISH[@]}"
wait_for 15 "release 1.1.0 on demo (was Publish clicked?)" release_published
# The device checks every 3 s, downloads, restarts and checks in again.
wait_for 60 "the virtual device to install 1.1.0" device_installed
shot serve-releases
click_and_see "the Devices tab" "${CLICK_TAB_DEVICES[@]}"
shot serve-devices
click_and_see "the Log tab" "${CLICK_TAB_LOG[@]}"
shot serve-log
SESSION
chmod +x "$WORK/session.sh"

# The X session, inside its own network and host name when this may make them (see above).
export WORK ROOT OUT KEEP=${KEEP:-}
run_session() { xvfb-run -a -s "-screen 0 1280x800x24 -nolisten tcp" "$WORK/session.sh"; }
echo "Screenshots:"
if [[ $(id -u) == 0 ]] && unshare --net --uts true 2>/dev/null && command -v ip >/dev/null; then
    export -f run_session
    unshare --net --uts bash -euo pipefail -c '
        ip link set lo up
        ip link add eth0 type veth peer name veth-nowhere
        ip addr add 192.0.2.10/24 dev eth0
        ip link set veth-nowhere up
        ip link set eth0 up
        hostname workbench
        run_session'
else
    echo "  (not root, or no unshare: the Certificate picture shows this machine's host name and addresses)"
    run_session
fi
ok=1

#!/usr/bin/env bash
# How `otaforge serve`'s memory grows with the number of devices it has seen: update checks from
# a new device every time (loadgen --macs 0, c=16), the server's resident and peak memory read
# after every STEP devices. See bench/README.md ("Memory per device").
#
#   bench/serve/fleet-memory.sh                 # 30,000 devices in steps of 10,000
#   DEVICES=60000 STEP=20000 bench/serve/fleet-memory.sh
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
DEVICES=${DEVICES:-30000}
STEP=${STEP:-10000}
PORT=${PORT:-24451}
say() { printf '%s\n' "$*" >&2; }

say "building otaforge and the load generator (release)…"
[ -n "${NO_BUILD:-}" ] || (cd "$ROOT" && cargo build --release --quiet -p otaforge --example loadgen --bin otaforge)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
OTAFORGE=$TARGET/release/otaforge
LOADGEN=$TARGET/release/examples/loadgen

WORK=$(mktemp -d "${TMPDIR:-/tmp}/otaforge-fleetmem.XXXXXX")
PID=
cleanup() {
    [ -z "$PID" ] || { kill -INT "$PID" 2>/dev/null; wait "$PID" 2>/dev/null || true; }
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

PROJ=$WORK/project
"$OTAFORGE" --dir "$PROJ" cert new --host ota.test --host 127.0.0.1 >/dev/null
"$LOADGEN" make-image "$WORK/fw.bin" 420000 >/dev/null
"$OTAFORGE" --dir "$PROJ" publish "$WORK/fw.bin" --version 1.0.0 >/dev/null
"$OTAFORGE" --dir "$PROJ" serve --bind 127.0.0.1 --port "$PORT" --max-unproven-devices 1000000 >"$WORK/serve.log" 2>&1 &
PID=$!
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done

mem() { awk '/^VmRSS/{r=$2} /^VmHWM/{h=$2} END{printf "%.1f %.1f\n", r/1024, h/1024}' "/proc/$PID/status"; }
printf '| devices seen | resident MiB | peak MiB | KiB per device (resident, since start) |\n|---|---|---|---|\n'
read -r r0 h0 < <(mem)
printf '| 0 | %s | %s | |\n' "$r0" "$h0"
seen=0
while [ "$seen" -lt "$DEVICES" ]; do
    "$LOADGEN" --addr "127.0.0.1:$PORT" --ca "$PROJ/ca.pem" --concurrency 16 --requests "$STEP" \
        --macs 0 --mac-base "$seen" --header "x-ESP8266-STA-MAC: {mac}" --header "x-ESP8266-version: 1.0.0" \
        --header "x-ESP8266-free-space: 3000000" --header "x-ESP8266-sketch-md5: 0123456789abcdef0123456789abcdef" \
        --header "x-ESP8266-Chip-ID: 1234567" --header "x-ESP8266-chip-size: 4194304" \
        --header "x-ESP8266-sdk-version: 2.2.2-dev(38a443e)" --header "x-ESP8266-mode: sketch" >/dev/null
    seen=$((seen + STEP))
    sleep 1 # let the inventory writer catch up
    read -r r h < <(mem)
    printf '| %d | %s | %s | %.2f |\n' "$seen" "$r" "$h" "$(awk -v a="$r0" -v b="$r" -v n="$seen" 'BEGIN{print (b-a)*1024/n}')"
done

#!/usr/bin/env bash
# A rollout to a fleet of virtual devices against `otaforge serve`: the devices poll (steady
# state), a new release is published, every device downloads, verifies and reboots into it.
# Measures checks/s, downloads completed/s, failed checks, the server's peak RSS and CPU.
# The first fleet size is the reference; the others are printed as ratios against it.
# See bench/README.md ("Fleet rollout").
#
#   bench/fleet/run.sh                          # 200 and 1,000 devices
#   FLEETS="200 1000 2000" INTERVAL=5 bench/fleet/run.sh
#   FLEETS=1000 VARIANTS="plain gzip" bench/fleet/run.sh   # the same rollout published gzip'd
#
# With several VARIANTS, each fleet size is run once per variant; "plain" (published as built) is
# the reference, and "gzip" (otaforge publish --gzip, unpacked by eboot on the device) is printed
# as ratios against it: bytes on the wire, rollout time, server CPU per download.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
FLEETS=${FLEETS:-"200 1000"}    # the first is the reference
VARIANTS=${VARIANTS:-plain}     # plain and/or gzip
INTERVAL=${INTERVAL:-5}         # seconds between one device's checks (±10 % jitter)
STEADY=${STEADY:-20}            # seconds of polling before the release is published
SIZE=${SIZE:-300000}            # image size in bytes
TIMEOUT=${TIMEOUT:-600}         # the rollout must finish within this many seconds
PORT=${PORT:-24601}
SERVER_CPU=${SERVER_CPU:-0}     # taskset pins: server and fleet on different cores
FLEET_CPU=${FLEET_CPU:-1}
say() { printf '%s\n' "$*" >&2; }

say "building otaforge (release)…"
[ -n "${NO_BUILD:-}" ] || (cd "$ROOT" && cargo build --release --quiet -p otaforge --bin otaforge)
OTAFORGE=${CARGO_TARGET_DIR:-$ROOT/target}/release/otaforge
PIN_SERVER=(); PIN_FLEET=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
    PIN_SERVER=(taskset -c "$SERVER_CPU"); PIN_FLEET=(taskset -c "$FLEET_CPU")
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/otaforge-fleetbench.XXXXXX")
SERVER_PID=; FLEET_PID=
cleanup() {
    for p in $FLEET_PID $SERVER_PID; do kill -INT "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    [ -n "${KEEP:-}" ] && say "kept $WORK" || rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

TICK=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
peak_rss_mib() { awk '/^VmHWM/{printf "%.1f", $2/1024}' "/proc/$1/status"; }
now() { date +%s.%N; }

RESULTS=$WORK/results.txt
: >"$RESULTS"
for N in $FLEETS; do
for VARIANT in $VARIANTS; do
    say ""
    say "== $N devices, a check every ${INTERVAL}s each, ${SIZE}-byte images, published $VARIANT =="
    P=$WORK/$N-$VARIANT
    PUBLISH_FLAGS=()
    [ "$VARIANT" = gzip ] && PUBLISH_FLAGS=(--gzip)
    mkdir -p "$P"
    "$OTAFORGE" --dir "$P" cert new --host ota.bench --host 127.0.0.1 >/dev/null
    "$OTAFORGE" --dir "$P" sim reference-image --version 2.0.0 --size "$SIZE" --compressible --out "$P/ref2.bin" >/dev/null
    # Reference images are synthetic: they live on the demo channel, which `sim fleet` polls.
    "$OTAFORGE" --dir "$P" bake --image "$P/ref2.bin" --out "$P/v2.bin" --version 2.0.0 \
        --host 127.0.0.1 --port "$PORT" --channel demo >/dev/null
    "${PIN_SERVER[@]}" "$OTAFORGE" --dir "$P" serve --bind 127.0.0.1 --port "$PORT" \
        --max-connections 4096 --max-unproven-devices 1000000 >"$P/serve.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done

    "${PIN_FLEET[@]}" "$OTAFORGE" --dir "$P" sim fleet --devices "$N" --interval "$INTERVAL" \
        --host 127.0.0.1 --port "$PORT" --image-size "$SIZE" --version 1.0.0 \
        --until-version 2.0.0 --duration "$TIMEOUT" --json >"$P/fleet.json" 2>"$P/fleet.log" &
    FLEET_PID=$!
    T0=$(now); C0=$(cpu_ticks "$SERVER_PID")
    sleep "$STEADY"
    T1=$(now); C1=$(cpu_ticks "$SERVER_PID")
    "$OTAFORGE" --dir "$P" publish "$P/v2.bin" --channel demo "${PUBLISH_FLAGS[@]}" >"$P/publish.log"
    # "Published #1 2.0.0 on "demo": N bytes, ...": what every download carries.
    WIRE=$(sed -n 's/^Published .*: \([0-9]*\) bytes,.*/\1/p' "$P/publish.log")
    say "published 2.0.0 ($VARIANT, $WIRE bytes) after ${STEADY}s of polling"
    status=0
    wait "$FLEET_PID" || status=$?
    FLEET_PID=
    T2=$(now); C2=$(cpu_ticks "$SERVER_PID")
    RSS=$(peak_rss_mib "$SERVER_PID")
    kill -INT "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=
    tail -n 2 "$P/fleet.log" >&2
    [ "$status" -eq 0 ] || say "the rollout did not finish (fleet exit status $status)"
    python3 - "$P/fleet.json" "$N" "$T0" "$T1" "$T2" "$C0" "$C1" "$C2" "$TICK" "$RSS" "$STEADY" "$VARIANT" "$WIRE" >>"$RESULTS" <<'EOF'
import json, sys
f, n, t0, t1, t2, c0, c1, c2, tick, rss, steady, variant, wire = sys.argv[1:]
s = json.load(open(f))
t0, t1, t2 = float(t0), float(t1), float(t2)
c0, c1, c2, tick = int(c0), int(c1), int(c2), int(tick)
tl = s["timeline"]
first = tl.get("first_update_s")
done = tl.get("all_updated_s")
before = tl.get("checks_before_first_update") or s["checks"]
# Steady polling: the checks made before any device downloaded, over that time.
steady_rate = before / first if first else s["checks"] / s["elapsed_s"]
rollout_s = (done - first) if (first is not None and done is not None) else None
row = {
    "devices": int(n),
    "variant": variant,
    "wire_bytes": int(wire),
    # The rollout phase's server CPU over its downloads (the checks in it included).
    "server_cpu_ms_per_download": 1000.0 * (c2 - c1) / tick / max(s["updates"], 1),
    "checks_per_s": steady_rate,
    "downloads_per_s": (s["updates"] / rollout_s) if rollout_s else 0.0,
    "rollout_s": rollout_s,
    "updates": s["updates"],
    "failed_checks": s["failures"],
    "running_new": s["versions"].get("2.0.0", 0),
    "server_cpu_steady_pct": 100.0 * (c1 - c0) / tick / (t1 - t0),
    "server_cpu_rollout_pct": 100.0 * (c2 - c1) / tick / max(t2 - t1, 1e-3),
    "server_peak_rss_mib": float(rss),
}
print(json.dumps(row))
EOF
done
done

python3 - "$RESULTS" "$INTERVAL" "$SIZE" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
interval, size = sys.argv[2], sys.argv[3]
print(f"\nFleet rollout: a check every {interval} s per device, {int(size):,}-byte image\n")
print("| devices | published | bytes per download | checks/s (steady) | downloads completed/s | rollout | updated | failed checks | server CPU steady / rollout | server CPU per download | server peak RSS |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    ro = f"{r['rollout_s']:.1f} s" if r["rollout_s"] is not None else "did not finish"
    print(f"| {r['devices']:,} | {r['variant']} | {r['wire_bytes']:,} | {r['checks_per_s']:.0f} | {r['downloads_per_s']:.1f} | {ro} | {r['running_new']:,} of {r['devices']:,} "
          f"| {r['failed_checks']} | {r['server_cpu_steady_pct']:.0f} % / {r['server_cpu_rollout_pct']:.0f} % | {r['server_cpu_ms_per_download']:.2f} ms | {r['server_peak_rss_mib']:.1f} MiB |")
def ratio(r, ref, key):
    return r[key] / ref[key] if ref[key] else float("nan")
plain = [r for r in rows if r["variant"] == "plain"]
if len(plain) > 1:
    ref = plain[0]
    print(f"\nAgainst {ref['devices']:,} devices (same script, same machine):")
    for r in plain[1:]:
        k = r["devices"] / ref["devices"]
        print(f"  {r['devices']:,} devices ({k:.0f}x): checks/s x{ratio(r, ref, 'checks_per_s'):.2f}, downloads/s x{ratio(r, ref, 'downloads_per_s'):.2f}, "
              f"server CPU (steady) x{ratio(r, ref, 'server_cpu_steady_pct'):.2f}, peak RSS x{ratio(r, ref, 'server_peak_rss_mib'):.2f}")
for r in rows:
    if r["variant"] == "plain":
        continue
    ref = next((p for p in plain if p["devices"] == r["devices"]), None)
    if ref is None or not ref["rollout_s"] or not r["rollout_s"]:
        continue
    print(f"\n{r['devices']:,} devices, {r['variant']} against plain: bytes on the wire x{ratio(r, ref, 'wire_bytes'):.2f} "
          f"({r['wire_bytes'] * r['updates'] / 1e6:.1f} MB instead of {ref['wire_bytes'] * ref['updates'] / 1e6:.1f} MB), "
          f"rollout time x{ratio(r, ref, 'rollout_s'):.2f}, server CPU per download x{ratio(r, ref, 'server_cpu_ms_per_download'):.2f}")
EOF

#!/usr/bin/env bash
# A rollout to a fleet of virtual devices against `otaforge serve`: the devices poll (steady
# state), a new release is published, every device downloads, verifies and reboots into it.
# Measures checks/s, downloads completed/s, failed checks, the server's peak RSS and CPU.
# The first fleet size is the reference; the others are printed as ratios against it.
# See bench/README.md ("Fleet rollout").
#
#   bench/fleet/run.sh                          # 200 and 1,000 devices
#   FLEETS="200 1000 2000" INTERVAL=5 bench/fleet/run.sh
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
FLEETS=${FLEETS:-"200 1000"}    # the first is the reference
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
    say ""
    say "== $N devices, a check every ${INTERVAL}s each, ${SIZE}-byte images =="
    P=$WORK/$N
    mkdir -p "$P"
    "$OTAFORGE" --dir "$P" cert new --host ota.bench --host 127.0.0.1 >/dev/null
    "$OTAFORGE" --dir "$P" sim reference-image --version 2.0.0 --size "$SIZE" --out "$P/ref2.bin" >/dev/null
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
    "$OTAFORGE" --dir "$P" publish "$P/v2.bin" --channel demo >/dev/null
    say "published 2.0.0 after ${STEADY}s of polling"
    status=0
    wait "$FLEET_PID" || status=$?
    FLEET_PID=
    T2=$(now); C2=$(cpu_ticks "$SERVER_PID")
    RSS=$(peak_rss_mib "$SERVER_PID")
    kill -INT "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=
    tail -n 2 "$P/fleet.log" >&2
    [ "$status" -eq 0 ] || say "the rollout did not finish (fleet exit status $status)"
    python3 - "$P/fleet.json" "$N" "$T0" "$T1" "$T2" "$C0" "$C1" "$C2" "$TICK" "$RSS" "$STEADY" >>"$RESULTS" <<'EOF'
import json, sys
f, n, t0, t1, t2, c0, c1, c2, tick, rss, steady = sys.argv[1:]
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

python3 - "$RESULTS" "$INTERVAL" "$SIZE" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
interval, size = sys.argv[2], sys.argv[3]
print(f"\nFleet rollout: a check every {interval} s per device, {int(size):,}-byte image\n")
print("| devices | checks/s (steady) | downloads completed/s | rollout | updated | failed checks | server CPU steady / rollout | server peak RSS |")
print("|---|---|---|---|---|---|---|---|")
for r in rows:
    ro = f"{r['rollout_s']:.1f} s" if r["rollout_s"] is not None else "did not finish"
    print(f"| {r['devices']:,} | {r['checks_per_s']:.0f} | {r['downloads_per_s']:.1f} | {ro} | {r['running_new']:,} of {r['devices']:,} "
          f"| {r['failed_checks']} | {r['server_cpu_steady_pct']:.0f} % / {r['server_cpu_rollout_pct']:.0f} % | {r['server_peak_rss_mib']:.1f} MiB |")
if len(rows) > 1:
    ref = rows[0]
    print(f"\nAgainst {ref['devices']:,} devices (same script, same machine):")
    for r in rows[1:]:
        k = r["devices"] / ref["devices"]
        def ratio(key):
            return r[key] / ref[key] if ref[key] else float("nan")
        print(f"  {r['devices']:,} devices ({k:.0f}x): checks/s x{ratio('checks_per_s'):.2f}, downloads/s x{ratio('downloads_per_s'):.2f}, "
              f"server CPU (steady) x{ratio('server_cpu_steady_pct'):.2f}, peak RSS x{ratio('server_peak_rss_mib'):.2f}")
EOF

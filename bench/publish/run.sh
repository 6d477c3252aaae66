#!/usr/bin/env bash
# What signing (and gzip) add to `otaforge publish` for a 1 MiB ESP8266 image: the whole command,
# as a user runs it, plain against --sign against --gzip --sign, in turns so machine noise hits
# each alike. Prints the median of each and its ratio to plain. See bench/README.md ("Publish").
#
#   bench/publish/run.sh                 # 15 rounds, 1 MiB
#   ROUNDS=30 SIZE=2097152 bench/publish/run.sh
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
ROUNDS=${ROUNDS:-15}
SIZE=${SIZE:-1048576}
say() { printf '%s\n' "$*" >&2; }

[ -n "${NO_BUILD:-}" ] || (cd "$ROOT" && cargo build --release --quiet -p otaforge --bin otaforge)
OTAFORGE=${CARGO_TARGET_DIR:-$ROOT/target}/release/otaforge
WORK=$(mktemp -d "${TMPDIR:-/tmp}/otaforge-publishbench.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

P=$WORK/project
"$OTAFORGE" --dir "$P" cert new --host ota.bench >/dev/null
"$OTAFORGE" --dir "$P" key new >/dev/null
# The reference image is synthetic, so it is published on demo-* channels (one per variant:
# each publish needs a newer version than its channel serves).
"$OTAFORGE" --dir "$P" sim reference-image --version 1.0.0 --size "$SIZE" --compressible --out "$WORK/ref.bin" >/dev/null
# Baked as a user bakes it (CA, host, version, the project's public signing key): a release that
# verifies with this project's key, as signed gzip'd releases must be (see README, "Signed
# updates"). Baking is not timed.
VARIANTS="plain sign gzip-sign"
for i in $(seq "$ROUNDS"); do
    for variant in $VARIANTS; do
        "$OTAFORGE" --dir "$P" bake --image "$WORK/ref.bin" --out "$WORK/$variant-$i.bin" --version "1.0.$i" \
            --host ota.bench --channel "demo-$variant" >/dev/null
    done
done
say "publishing a $(stat -c %s "$WORK/plain-1.bin")-byte image $ROUNDS times per variant"

now() { date +%s.%N; }
for i in $(seq "$ROUNDS"); do
    for variant in $VARIANTS; do
        case $variant in
            plain) flags=() ;;
            sign) flags=(--sign) ;;
            gzip-sign) flags=(--gzip --sign) ;;
        esac
        t0=$(now)
        "$OTAFORGE" --dir "$P" publish "$WORK/$variant-$i.bin" --channel "demo-$variant" "${flags[@]}" >/dev/null 2>&1
        t1=$(now)
        echo "$variant $t0 $t1" >>"$WORK/times"
    done
done

python3 - "$WORK/times" "$SIZE" <<'PY'
import statistics, sys
times = {}
for line in open(sys.argv[1]):
    v, a, b = line.split()
    times.setdefault(v, []).append((float(b) - float(a)) * 1000)
plain = statistics.median(times["plain"])
print(f"\notaforge publish, {int(sys.argv[2]):,}-byte ESP8266 image, {len(times['plain'])} rounds (median, whole command)\n")
print("| variant | median | min | ratio to plain |")
print("|---|---|---|---|")
for v in ["plain", "sign", "gzip-sign"]:
    m = statistics.median(times[v])
    print(f"| {v} | {m:.1f} ms | {min(times[v]):.1f} ms | x{m / plain:.2f} |")
PY

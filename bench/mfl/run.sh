#!/usr/bin/env bash
# Benchmark: what honouring max_fragment_length costs. A default ESP8266 client (BearSSL, 16 KB
# receive / 512 B send buffers) advertises max_fragment_length 512, so with the default policy
# (honour) `otaforge serve` sends it 512-byte records; with --ignore-fragment-length it sends
# 16 KB records, which such a client can also take. Same server, same firmware, same client
# (app/tests/support/esp_tls_client.c: BearSSL configured as the ESP8266 core configures it),
# downloads one after another; the report gives honour/ignore ratios. See bench/README.md.
#
#   bench/mfl/run.sh               # 40 downloads of 1 MB per policy, 3 rounds
#   N=100 SIZE=2000000 ROUNDS=5 bench/mfl/run.sh
#
# Only 127.0.0.1 is contacted. The server this script starts is stopped on exit.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
N=${N:-40}                 # downloads per policy and round
SIZE=${SIZE:-1000000}      # firmware bytes
ROUNDS=${ROUNDS:-3}
PORT=${PORT:-24441}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
say() { printf '%s\n' "$*" >&2; }

if [ ! -f /usr/include/bearssl.h ]; then
    say "installing libbearssl-dev…"
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq libbearssl-dev gcc >/dev/null
fi
say "building otaforge and the image maker (release)…"
[ -n "${NO_BUILD:-}" ] || (cd "$ROOT" && cargo build --release --quiet -p otaforge --no-default-features --example loadgen --bin otaforge)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
OTAFORGE=$TARGET/release/otaforge
LOADGEN=$TARGET/release/examples/loadgen

WORK=$(mktemp -d "${TMPDIR:-/tmp}/otaforge-mfl.XXXXXX")
SERVER_PID=
cleanup() {
    [ -z "$SERVER_PID" ] || { kill -INT "$SERVER_PID" 2>/dev/null; wait "$SERVER_PID" 2>/dev/null || true; }
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

gcc -O2 -o "$WORK/client" "$ROOT/app/tests/support/esp_tls_client.c" -lbearssl
PROJ=$WORK/project
"$OTAFORGE" --dir "$PROJ" cert new --host 127.0.0.1 >/dev/null
openssl x509 -in "$PROJ/ca.pem" -outform der -out "$WORK/ca.der" 2>/dev/null || {
    # No openssl: the anchor's DER is the base64 body of the PEM.
    sed '/-----/d' "$PROJ/ca.pem" | base64 -d >"$WORK/ca.der"
}
"$LOADGEN" make-image "$WORK/fw.bin" "$SIZE" >/dev/null
"$OTAFORGE" --dir "$PROJ" publish "$WORK/fw.bin" --version 2.0.0 >/dev/null

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)

start() { # extra serve args...
    taskset -c "$SERVER_CPU" "$OTAFORGE" --dir "$PROJ" serve --bind 127.0.0.1 --port "$PORT" "$@" >"$WORK/serve.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && return 0
        sleep 0.1
    done
    say "otaforge serve did not start:"; cat "$WORK/serve.log" >&2; exit 1
}
stop() { kill -INT "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=; }

SERIAL=0
download() { # rx -> the client's line on stdout, "CPU user sys" on stderr
    /usr/bin/time -f "CPU %U %S" taskset -c "$CLIENT_CPU" "$WORK/client" 127.0.0.1 "$PORT" 127.0.0.1 "$WORK/ca.der" --rx "$1" --tx 512 \
        --get /update --header "$(printf "x-ESP8266-STA-MAC: 18:FE:34:00:%02X:%02X" $((SERIAL >> 8 \& 255)) $((SERIAL \& 255)))" --header "x-ESP8266-version: 1.0.0" \
        --header "x-ESP8266-free-space: 3000000" --header "x-ESP8266-chip-size: 4194304" \
        --header "x-ESP8266-mode: sketch"
}

# One cell: N downloads with a default client; prints "seconds server_cpu_s client_cpu_s max_record".
cell() {
    local t0 t1 c0 c1 line max=0 client_cpu=0 out
    c0=$(cpu_ticks "$SERVER_PID")
    t0=$(date +%s.%N)
    for _ in $(seq "$N"); do
        # A new device each time: the server stops offering a release to a device that downloaded
        # it three times without running it.
        SERIAL=$((SERIAL + 1))
        out=$(download 16384 2>&1)
        line=$(grep '^OK' <<<"$out") || { say "download failed: $out"; exit 1; }
        grep -q "status=200" <<<"$line" || { say "unexpected answer: $line"; tail -5 "$WORK/serve.log" >&2; exit 1; }
        m=$(sed 's/.*max_record=//' <<<"$line"); [ "$m" -gt "$max" ] && max=$m
        client_cpu=$(awk -v a="$client_cpu" -v l="$(grep '^CPU' <<<"$out")" 'BEGIN{split(l,f," "); print a+f[2]+f[3]}')
    done
    t1=$(date +%s.%N)
    c1=$(cpu_ticks "$SERVER_PID")
    echo "$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}') $(awk -v a="$c0" -v b="$c1" -v hz="$HZ" 'BEGIN{print (b-a)/hz}') $client_cpu $max"
}

declare -A RESULTS
for round in $(seq "$ROUNDS"); do
    for policy in honour ignore; do
        if [ "$policy" = ignore ]; then start --ignore-fragment-length; else start; fi
        RESULTS[$policy.$round]=$(cell)
        # A client whose receive buffer really is 512 bytes (setBufferSizes(512, 512)):
        SERIAL=$((SERIAL + 1))
        small=$(download 512 2>/dev/null || true)
        RESULTS[$policy.small]=$(grep -q '^OK.*status=200' <<<"$small" && echo "downloads" || echo "fails: ${small}")
        stop
        say "round $round $policy: ${RESULTS[$policy.$round]}"
    done
done

median() { sort -g | awk '{a[NR]=$1} END{print (NR%2)? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
col() { # policy column -> median over rounds
    for round in $(seq "$ROUNDS"); do echo "${RESULTS[$1.$round]}" | awk -v c="$2" '{print $c}'; done | median
}
MB=$(awk -v n="$N" -v s="$SIZE" 'BEGIN{print n*s/1e6}')
printf '\n%d downloads of %d bytes per cell, %d round(s), medians; client = BearSSL as on an ESP8266 (rx 16384, tx 512: advertises max_fragment_length 512)\n\n' "$N" "$SIZE" "$ROUNDS"
printf '| policy | largest record | MB/s | server CPU ms/MB | client CPU ms/MB | a 512-byte-buffer client |\n|---|---|---|---|---|---|\n'
for policy in honour ignore; do
    s=$(col $policy 1); c=$(col $policy 2); k=$(col $policy 3); m=$(col $policy 4)
    printf '| %s | %s | %.1f | %.2f | %.2f | %s |\n' "$policy" "$m" "$(awk -v mb="$MB" -v s="$s" 'BEGIN{print mb/s}')" \
        "$(awk -v mb="$MB" -v c="$c" 'BEGIN{print 1000*c/mb}')" "$(awk -v mb="$MB" -v k="$k" 'BEGIN{print 1000*k/mb}')" "${RESULTS[$policy.small]}"
done
hs=$(col honour 1); is=$(col ignore 1); hc=$(col honour 2); ic=$(col ignore 2); hk=$(col honour 3); ik=$(col ignore 3)
printf '\nhonour/ignore: time %.2f×, server CPU %.2f×, client CPU %.2f×\n' \
    "$(awk -v a="$hs" -v b="$is" 'BEGIN{print a/b}')" "$(awk -v a="$hc" -v b="$ic" 'BEGIN{print (b>0)? a/b : 0}')" \
    "$(awk -v a="$hk" -v b="$ik" 'BEGIN{print (b>0)? a/b : 0}')"

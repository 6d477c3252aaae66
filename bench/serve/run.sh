#!/usr/bin/env bash
# Benchmark: `otaforge serve` against the tutorial's Node/Express server and nginx, on the same
# certificate, firmware file and cipher suite, with an ESP8266-like load generator
# (app/examples/loadgen.rs): a new TLS 1.2 connection per request, no resumption, HTTP/1.0,
# Connection: close, ChaCha20-Poly1305 first. See bench/README.md.
#
#   bench/serve/run.sh                    # everything (about 2 minutes once built)
#   ROUNDS=3 bench/serve/run.sh           # three rounds, medians (about 5 minutes)
#   DURATION=10 bench/serve/run.sh        # longer cells
#   SERVERS="otaforge nginx" CONCURRENCY="16 64" bench/serve/run.sh
#   SUITES="chacha20 aes128" SMALL_RECORDS=512 bench/serve/run.sh   # the defaults
#
# Only 127.0.0.1 is ever contacted. Every server this script starts is stopped on exit.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
DURATION=${DURATION:-5}          # seconds per measured cell
ROUNDS=${ROUNDS:-1}              # repeats of the whole matrix; the report shows each cell's median
WARMUP=${WARMUP:-1}              # seconds of unmeasured load per server and workload first
CONCURRENCY=${CONCURRENCY:-"1 16 64"}
SERVERS=${SERVERS:-"otaforge node nginx"}
SERVER_CPU=${SERVER_CPU:-0}      # the server is pinned here...
CLIENT_CPU=${CLIENT_CPU:-1}      # ...and the load generator here
SIZE=${SIZE:-420000}             # firmware bytes
KX=${KX:-x25519}                 # key exchange: x25519 (P-256 also offered) or secp256r1 only
# Each suite is measured on its own (the client offers only it): ChaCha20-Poly1305 is what an
# ESP8266 picks first, AES-128-GCM what arduino-esp32 and most other clients end up with.
SUITES=${SUITES:-"chacha20 aes128"}
# Downloads are also measured with records of this many bytes (what an ESP8266 that advertises
# max_fragment_length 512 gets): otaforge with --record-size, nginx with ssl_buffer_size. "" skips.
SMALL_RECORDS=${SMALL_RECORDS-512}
# Priority of the servers and the load generator: on a machine where other work runs (builds,
# tests), a higher priority keeps it from skewing the numbers. Default: nice -10 when root.
if [ -z "${NICENESS+x}" ]; then
    if [ "$(id -u)" -eq 0 ]; then NICENESS=-10; else NICENESS=0; fi
fi
NICE=()
[ "$NICENESS" = 0 ] || NICE=(nice -n "$NICENESS")
# Ports below the ephemeral range (32768-60999 on Linux), so that no client socket of an earlier
# cell holds them.
PORT_OTAFORGE=${PORT_OTAFORGE:-24431}
PORT_NODE=${PORT_NODE:-24432}
PORT_NODE_HTTP=${PORT_NODE_HTTP:-24430}
PORT_NGINX=${PORT_NGINX:-24433}
PORT_OTAFORGE_SMALL=${PORT_OTAFORGE_SMALL:-24434}
PORT_NGINX_SMALL=${PORT_NGINX_SMALL:-24435}

say() { printf '%s\n' "$*" >&2; }

# ---------------------------------------------------------------------------------------------
# What is needed

if [ "$(nproc)" -lt 2 ]; then
    say "warning: $(nproc) CPU(s): the server and the load generator will share one"
    CLIENT_CPU=$SERVER_CPU
fi
APT_UPDATED=
apt_install() {
    if ! command -v apt-get >/dev/null; then
        say "missing $*, and no apt-get to install it"
        exit 1
    fi
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    if [ -z "$APT_UPDATED" ]; then
        $sudo apt-get update -qq
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}
NGINX=$(command -v nginx || true)
[ -n "$NGINX" ] || [ ! -x /usr/sbin/nginx ] || NGINX=/usr/sbin/nginx
if [ -z "$NGINX" ]; then
    say "installing nginx…"
    apt_install nginx
    NGINX=$(command -v nginx || echo /usr/sbin/nginx)
fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    say "installing Node.js…"
    apt_install nodejs npm
fi
command -v taskset >/dev/null || apt_install util-linux
if [ ! -d "$HERE/node/node_modules/express" ]; then
    say "npm install (express)…"
    (cd "$HERE/node" && npm install --no-audit --no-fund --no-package-lock --omit=dev >/dev/null)
fi

TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
# OTAFORGE=/path/to/otaforge measures another build (an older commit's, say) with this script.
if [ -z "${OTAFORGE:-}" ] || [ -z "${LOADGEN:-}" ]; then
    say "building otaforge (the server build, no GUI) and the load generator (release)…"
    (cd "$ROOT" && cargo build --release --quiet -p otaforge --no-default-features --example loadgen --bin otaforge)
fi
OTAFORGE=${OTAFORGE:-$TARGET/release/otaforge}
LOADGEN=${LOADGEN:-$TARGET/release/examples/loadgen}

# ---------------------------------------------------------------------------------------------
# Servers and cleanup

WORK=$(mktemp -d "${TMPDIR:-/tmp}/otaforge-bench.XXXXXX")
SERVER_PID=  # the server being started or measured
SERVER_NAME=
declare -A PIDS=() PORTS=()
stop_all() {
    local name pid sig
    for name in "${!PIDS[@]}"; do
        pid=${PIDS[$name]}
        sig=TERM
        case $name in
            otaforge*) sig=INT ;; # what `otaforge serve` stops on
            nginx*) sig=QUIT ;;   # graceful
        esac
        kill -s "$sig" "$pid" 2>/dev/null || true
    done
    for name in "${!PIDS[@]}"; do
        pid=${PIDS[$name]}
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -s KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        unset "PIDS[$name]"
    done
}
cleanup() {
    stop_all
    if [ -n "${KEEP:-}" ]; then say "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_listening() { # port
    for _ in $(seq 100); do
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            say "$SERVER_NAME exited at start; its log:"
            cat "$WORK/$SERVER_NAME.log" >&2 || true
            exit 1
        fi
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    say "$SERVER_NAME does not listen on 127.0.0.1:$1"
    exit 1
}

# The project: the same CA, server certificate (ECDSA P-256) and firmware for all three.
PROJ=$WORK/project
"$OTAFORGE" --dir "$PROJ" cert new --host ota.test --host 127.0.0.1 >/dev/null
chmod 755 "$WORK"
mkdir -p "$WORK/www"
chmod 755 "$WORK/www"
FIRMWARE=$WORK/www/firmware.bin
MD5=$("$LOADGEN" make-image "$FIRMWARE" "$SIZE")
chmod 644 "$FIRMWARE"
"$OTAFORGE" --dir "$PROJ" publish "$FIRMWARE" --version 1.0.0 >/dev/null
# The small-record server serves a copy (one `serve` per project).
cp -a "$PROJ" "$WORK/project-small"
# nginx's workers may run as another user: they read the firmware, the master reads the key.

start_otaforge() { # [record size]
    local dir=$PROJ port=$PORT_OTAFORGE extra=() log=$WORK/otaforge.log
    if [ -n "${1:-}" ]; then
        dir=$WORK/project-small port=$PORT_OTAFORGE_SMALL extra=(--record-size "$1") log=$WORK/otaforge-small.log
    fi
    taskset -c "$SERVER_CPU" "${NICE[@]}" "$OTAFORGE" --dir "$dir" serve --bind 127.0.0.1 --port "$port" \
        --max-unproven-devices 1000000 "${extra[@]}" >"$log" 2>&1 &
    SERVER_PID=$!
    PORT=$port
}

# Node's TLS server prefers its own cipher order (honorCipherOrder defaults to true there) and would
# pick AES-128-GCM; giving it the ESP8266's order on the command line (not in the tutorial's code)
# makes it negotiate ChaCha20-Poly1305 like the other two.
NODE_CIPHERS=ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384

start_node() {
    OTA_KEY=$PROJ/server.key OTA_CERT=$PROJ/server.pem FIRMWARE=$FIRMWARE HOST=127.0.0.1 \
        PORT=$PORT_NODE_HTTP PORT_HTTPS=$PORT_NODE \
        taskset -c "$SERVER_CPU" "${NICE[@]}" node --tls-cipher-list="$NODE_CIPHERS" "$HERE/node/index.js" >"$WORK/node.log" 2>&1 &
    SERVER_PID=$!
    PORT=$PORT_NODE
}

start_nginx() { # [record size]
    # One nginx serves both: full records on PORT_NGINX, small ones (ssl_buffer_size) on
    # PORT_NGINX_SMALL; started once, the second call only points at the other port.
    if [ -n "${1:-}" ]; then
        SERVER_PID=${PIDS[nginx]}
        PORT=$PORT_NGINX_SMALL
        return
    fi
    local d=$WORK/nginx
    mkdir -p "$d/tmp"
    # Checks: nginx has no update logic, so the answer is a static `return 304` chosen by an exact
    # match on the same x-ESP8266-version header the other servers get; anything else gets the file.
    cat >"$d/nginx.conf" <<EOF
worker_processes 1;
daemon off;
master_process on;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    default_type application/octet-stream;
    client_body_temp_path $d/tmp/body;
    proxy_temp_path $d/tmp/proxy;
    fastcgi_temp_path $d/tmp/fastcgi;
    uwsgi_temp_path $d/tmp/uwsgi;
    scgi_temp_path $d/tmp/scgi;
    map \$http_x_esp8266_version \$ota_current { "1.0.0" 1; default 0; }
    server {
        listen 127.0.0.1:$PORT_NGINX ssl;
        server_name ota.test;
        ssl_certificate $PROJ/server.pem;
        ssl_certificate_key $PROJ/server.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_prefer_server_ciphers off;
        location = /update {
            if (\$ota_current) { return 304; }
            alias $FIRMWARE;
        }
    }
    server {
        listen 127.0.0.1:$PORT_NGINX_SMALL ssl;
        server_name ota.test;
        ssl_certificate $PROJ/server.pem;
        ssl_certificate_key $PROJ/server.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_prefer_server_ciphers off;
        ssl_buffer_size ${SMALL_RECORDS:-16k};
        location = /update {
            alias $FIRMWARE;
        }
    }
}
EOF
    taskset -c "$SERVER_CPU" "${NICE[@]}" "$NGINX" -p "$d/" -c "$d/nginx.conf" >"$WORK/nginx.log" 2>&1 &
    SERVER_PID=$!
    PORT=$PORT_NGINX
}

# ---------------------------------------------------------------------------------------------
# Measuring

CLK_TCK=$(getconf CLK_TCK)

busy_ticks() { # non-idle ticks of the server's and the client's CPUs together
    awk -v a="cpu$SERVER_CPU" -v b="cpu$CLIENT_CPU" '$1 == a || ($1 == b && a != b) { s += $2 + $3 + $4 + $7 + $8 + $9 } END { print s }' /proc/stat
}

tree_pids() { # pid and all its descendants
    echo "$1"
    local c
    for c in $(cat /proc/"$1"/task/*/children 2>/dev/null); do tree_pids "$c"; done
}

cpu_ticks() { # utime+stime (+ reaped children's) of a process tree, in clock ticks
    local sum=0 p f
    for p in $(tree_pids "$1"); do
        [ -r "/proc/$p/stat" ] || continue
        read -r -a f < <(sed 's/^.*) //' "/proc/$p/stat") || continue
        sum=$((sum + f[11] + f[12] + f[13] + f[14]))
    done
    echo "$sum"
}

hwm_kib() { # VmHWM of one process
    awk '/^VmHWM:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0
}

rss_kib() { # peak RSS: the process itself; for nginx the sum over the master's children (workers)
    if [ "$SERVER_NAME" = nginx ]; then
        local sum=0 c
        for c in $(cat /proc/"$SERVER_PID"/task/*/children 2>/dev/null); do sum=$((sum + $(hwm_kib "$c"))); done
        echo "$sum"
    else
        hwm_kib "$SERVER_PID"
    fi
}

# The headers ESP8266httpUpdate sends (see app/tests/support/mod.rs); {mac} is filled in per device.
DEVICE_HEADERS=(
    --header "User-Agent: ESP8266-http-Update"
    --header "x-ESP8266-Chip-ID: 10560374"
    --header "x-ESP8266-STA-MAC: {mac}"
    --header "x-ESP8266-AP-MAC: 1A:FE:34:A1:B2:C3"
    --header "x-ESP8266-free-space: 2093056"
    --header "x-ESP8266-sketch-size: 300000"
    --header "x-ESP8266-chip-size: 4194304"
    --header "x-ESP8266-sdk-version: 2.2.2-dev(38a443e)"
    --header "x-ESP8266-mode: sketch"
)
# (a) a device that runs the published release (1.0.0, its MD5): otaforge answers 304; Node's
#     parseFloat("1.0.0") = 1 >= LAST_VERSION 0.3 answers 304; nginx's map answers 304.
CHECK_ARGS=(--mode check --expect-status 304 --macs 1000 --mac-base 0
    --header "x-ESP8266-sketch-md5: $MD5" --header "x-ESP8266-version: 1.0.0")
# (b) a device on 0.1.0 with another sketch: 200 and the 420 KB file from all three (otaforge:
#     older than 1.0.0; Node: 0.1 < 0.3; nginx: not "1.0.0"). Every download is a new device, as
#     otaforge stops offering a release to a device that downloads it 3 times without running it.
DOWNLOAD_ARGS=(--mode download --expect-status 200 --macs 0 --expect-md5 "$MD5"
    --header "x-ESP8266-sketch-md5: 0123456789abcdef0123456789abcdef" --header "x-ESP8266-version: 0.1.0")

RESULTS=$WORK/results.jsonl
: >"$RESULTS"
CELL=0

SUITE=chacha20 # the suite being measured
RECORDS=full   # the record size being measured
load() { # workload concurrency seconds download-device-base [most requests]
    local workload=$1 conc=$2 secs=$3 base=$4
    local args=("${CHECK_ARGS[@]}")
    [ "$workload" = check ] || args=("${DOWNLOAD_ARGS[@]}" --mac-base "$base")
    [ -z "${5:-}" ] || args+=(--requests "$5")
    taskset -c "$CLIENT_CPU" "${NICE[@]}" "$LOADGEN" --addr "127.0.0.1:$PORT" --server-name ota.test --ca "$PROJ/ca.pem" \
        --path /update --concurrency "$conc" --duration "$secs" --kx "$KX" --suite "$SUITE" "${DEVICE_HEADERS[@]}" \
        "${args[@]}" --label "$SERVER_NAME $workload c=$conc $SUITE records=$RECORDS" --json
}

measure() { # workload concurrency
    local workload=$1 conc=$2 before after busy_before busy_after busy t0 t1 out rss cpu
    CELL=$((CELL + 1))
    before=$(cpu_ticks "$SERVER_PID")
    busy_before=$(busy_ticks)
    t0=$(date +%s.%N)
    out=$(load "$workload" "$conc" "$DURATION" $((CELL * 10000000)) 2>"$WORK/last.txt")
    sleep 0.2 # let the server finish what the last answers left (logs, inventory writes)
    after=$(cpu_ticks "$SERVER_PID")
    busy_after=$(busy_ticks)
    t1=$(date +%s.%N)
    rss=$(rss_kib)
    cpu=$(awk -v a="$after" -v b="$before" -v t="$CLK_TCK" 'BEGIN { printf "%.3f", (a - b) / t }')
    busy=$(awk -v a="$busy_after" -v b="$busy_before" -v t="$CLK_TCK" 'BEGIN { printf "%.3f", (a - b) / t }')
    printf '{"server":"%s","workload":"%s","concurrency":%d,"suite":"%s","records":"%s","cpu_s":%s,"rss_kib":%d,"busy_s":%s,"wall_s":%s,"load":%s}\n' \
        "$SERVER_NAME" "$workload" "$conc" "$SUITE" "$RECORDS" "$cpu" "$rss" "$busy" "$(awk -v a="$t1" -v b="$t0" 'BEGIN { printf "%.3f", a - b }')" "$out" \
        | tee -a "$WORK/results-$SUITE-$RECORDS.jsonl" >>"$RESULTS"
    say "  $SERVER_NAME $(head -n1 "$WORK/last.txt"); server CPU ${cpu} s, peak RSS $((rss / 1024)) MiB"
}

b0=$(busy_ticks); sleep 1; b1=$(busy_ticks)
if [ $((b1 - b0)) -gt $((CLK_TCK / 5)) ]; then
    say "warning: other work keeps these CPUs $(((b1 - b0) * 100 / CLK_TCK))% busy: rates will be lower than on a quiet machine (see the \"other %\" column)"
fi
say "firmware: $SIZE bytes, MD5 $MD5; ${DURATION}s per cell; server on CPU $SERVER_CPU, load generator on CPU $CLIENT_CPU"
for port in $PORT_OTAFORGE $PORT_NODE $PORT_NODE_HTTP $PORT_NGINX $PORT_OTAFORGE_SMALL $PORT_NGINX_SMALL; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        say "something already listens on 127.0.0.1:$port: stop it or choose other ports (PORT_OTAFORGE, PORT_NODE, PORT_NODE_HTTP, PORT_NGINX)"
        exit 1
    fi
done
# All servers run at once (idle ones cost next to nothing), and every cell measures them one
# after the other, so that a slower or faster spell of this machine hits all of them alike.
# The small-record variants: otaforge and nginx only (downloads; a check sends no body).
SMALL_SERVERS=()
if [ -n "$SMALL_RECORDS" ]; then
    for server in $SERVERS; do
        case $server in otaforge | nginx) SMALL_SERVERS+=("$server") ;; esac
    done
fi
start() { # server [record size]
    SERVER_NAME=$1
    "start_$1" "${2:-}"
    local key=$1${2:+@small}
    PIDS[$key]=$SERVER_PID
    PORTS[$key]=$PORT
    wait_listening "$PORT"
    say "$1${2:+ (records of $2 bytes)} (pid $SERVER_PID) on 127.0.0.1:$PORT"
}
for server in $SERVERS; do start "$server"; done
for server in "${SMALL_SERVERS[@]}"; do start "$server" "$SMALL_RECORDS"; done
use() { # server [small]
    local key=$1${2:+@small}
    SERVER_NAME=$1 SERVER_PID=${PIDS[$key]} PORT=${PORTS[$key]}
}
for server in $SERVERS; do
    use "$server"
    load check 16 "$WARMUP" 0 >/dev/null 2>&1
    load download 16 "$WARMUP" 900000000 200 >/dev/null 2>&1 # at most 200 more devices
done
for server in "${SMALL_SERVERS[@]}"; do
    use "$server" small
    load download 16 "$WARMUP" 910000000 200 >/dev/null 2>&1
done
for round in $(seq "$ROUNDS"); do
    [ "$ROUNDS" = 1 ] || say "round $round of $ROUNDS"
    for SUITE in $SUITES; do
        RECORDS=full
        for workload in check download; do
            for c in $CONCURRENCY; do
                for server in $SERVERS; do
                    use "$server"
                    measure "$workload" "$c"
                done
            done
        done
        [ ${#SMALL_SERVERS[@]} -gt 0 ] || continue
        RECORDS=$SMALL_RECORDS
        for c in $CONCURRENCY; do
            for server in "${SMALL_SERVERS[@]}"; do
                use "$server" small
                measure download "$c"
            done
        done
    done
done
stop_all

echo
echo "otaforge serve vs the tutorial's Node/Express server vs nginx $("$NGINX" -v 2>&1 | sed 's/.*\///')"
echo "node $(node --version), express $(node -p "require('$HERE/node/node_modules/express/package.json').version")"
echo "$(nproc) CPUs ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)); server pinned to CPU $SERVER_CPU, load generator to CPU $CLIENT_CPU"
echo "every request: new TCP + full TLS 1.2 handshake (no resumption), HTTP/1.0, Connection: close; key exchange $KX"
echo "${DURATION}s per cell, $ROUNDS round(s) (medians shown), servers interleaved cell by cell; priority nice $NICENESS"
echo "CPU/req and CPU/MB: server CPU (utime+stime of the process tree) ÷ answers or ÷ MB of body"
echo "srv %, cli %, other %: CPU time of the server, of the load generator, and of everything else on their two CPUs, ÷ wall time"
for SUITE in $SUITES; do
    for RECORDS in full $SMALL_RECORDS; do
        f=$WORK/results-$SUITE-$RECORDS.jsonl
        [ -s "$f" ] || continue
        echo
        echo "=== $SUITE, $([ "$RECORDS" = full ] && echo "full 16 KB records" || echo "records of $RECORDS bytes") ==="
        "$LOADGEN" report "$f"
    done
done
echo
"$LOADGEN" summary "$RESULTS"
if [ -n "${RESULTS_OUT:-}" ]; then cp "$RESULTS" "$RESULTS_OUT"; fi

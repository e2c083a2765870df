#!/usr/bin/env bash
# Scale-out: 300 WebSocket sessions held by clients that reconnect 0-1 s after any close,
# over a pool of two backends; at 5 s a third backend is added (SIGHUP for wsgate, a
# reload for nginx). Each backend's open sessions are sampled every 0.5 s for 40 s (as
# ESTABLISHED connections on its port, the same count for every proxy), and the clients
# report how their sessions ended.
#
#   wsgate          balance: least_sessions, rebalance {max_skew: 1.25, closes_per_second: 20}
#   nginx           least_conn (an expert's pick for long connections), reload
#   nginx-shutdown  the same with worker_shutdown_timeout 2s: the old workers' sessions are
#                   cut at the reload, so clients reconnect and least_conn spreads them
#
# Prints, per proxy: the time until every backend holds 100 +- 15 sessions (or "never"), the
# final counts, and how sessions ended (forced moves). Samples in bench/out/scaleout-*.tsv.
# Usage: bench/scaleout.sh [--no-build] [--proxies "wsgate nginx nginx-shutdown"]
set -euo pipefail
BENCH=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$BENCH/.." && pwd)
OUT=$BENCH/out
BUILD=1
PROXIES="wsgate nginx nginx-shutdown"
while [ $# -gt 0 ]; do
    case "$1" in
        --no-build) BUILD=0 ;;
        --proxies) PROXIES=$2; shift ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
SESSIONS=300
ADD_AT=5          # seconds after the sessions are open
SAMPLE_SECS=40
PROXY_ADDR=127.0.0.1:19200
BACKENDS=(127.0.0.1:19201 127.0.0.1:19202 127.0.0.1:19203)
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
mkdir -p "$OUT"

log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
die() { log "FAILED: $*"; exit 1; }
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

if [ "$BUILD" = 1 ]; then
    log "building wsgate and loadgen (release)"
    (cd "$ROOT" && cargo build --release --bin wsgate) >"$OUT/build-wsgate.log" 2>&1 || die "wsgate build"
    (cd "$BENCH/loadgen" && cargo build --release) >"$OUT/build-loadgen.log" 2>&1 || die "loadgen build"
fi
WSGATE=$ROOT/target/release/wsgate
LOADGEN=$BENCH/loadgen/target/release/loadgen
[ -x "$NGINX" ] || die "nginx is missing (apt-get install nginx)"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# Open sessions on the backend at ADDR: established connections on its port.
held() { ss -Htn state established "( sport = :${1##*:} )" | wc -l; }

wait_port() {
    local i
    for i in $(seq 1 100); do
        ss -Htln "sport = :${1##*:}" | grep -q . && return 0
        sleep 0.1
    done
    return 1
}

nginx_conf() {   # nginx_conf DIR N_BACKENDS SHUTDOWN_TIMEOUT
    local dir=$1 n=$2 shutdown=$3 servers="" i
    for i in $(seq 0 $((n - 1))); do servers+="server ${BACKENDS[$i]}; "; done
    cat >"$dir/nginx.conf" <<EOF
worker_processes 2;
pid $dir/nginx.pid;
daemon off;
error_log $dir/error.log error;
${shutdown:+worker_shutdown_timeout $shutdown;}
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    map \$http_upgrade \$connection_upgrade { default upgrade; '' close; }
    upstream ws { least_conn; $servers}
    server {
        listen $PROXY_ADDR;
        location / {
            proxy_pass http://ws;
            proxy_http_version 1.1;
            proxy_set_header Host \$host;
            proxy_set_header Upgrade \$http_upgrade;
            proxy_set_header Connection \$connection_upgrade;
            proxy_read_timeout 1h;
        }
    }
}
EOF
}

wsgate_conf() {   # wsgate_conf DIR N_BACKENDS
    local dir=$1 n=$2 list="" i
    for i in $(seq 0 $((n - 1))); do list+="${BACKENDS[$i]}, "; done
    cat >"$dir/wsgate.yaml" <<EOF
server: {threads: 2, pid_file: $dir/wsgate.pid, upgrade_sock: $dir/upgrade.sock}
listeners: [{address: $PROXY_ADDR}]
access_log: {path: 'off'}
limits: {max_connections_per_ip: 20000}
upstreams:
  ws:
    backends: [${list%, }]
    balance: least_sessions
    rebalance: {max_skew: 1.25, closes_per_second: 20}
routes: [{path_prefix: /, upstream: ws}]
EOF
}

run_case() {   # run_case PROXY
    local proxy=$1 dir total t0 now i a b c converged="never" line tsv=$OUT/scaleout-$1.tsv
    dir=$(mktemp -d)
    mkdir -p "$dir/tmp"
    PIDS=()
    for addr in "${BACKENDS[@]}"; do
        "$LOADGEN" serve-ws --addr "$addr" >/dev/null 2>&1 &
        PIDS+=($!)
    done
    case $proxy in
        wsgate)
            wsgate_conf "$dir" 2
            RUST_LOG=warn "$WSGATE" -c "$dir/wsgate.yaml" >"$dir/proxy.log" 2>&1 &
            ;;
        nginx|nginx-shutdown)
            nginx_conf "$dir" 2 "$([ "$proxy" = nginx-shutdown ] && echo 2s || true)"
            "$NGINX" -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" >"$dir/proxy.log" 2>&1 &
            ;;
    esac
    local proxy_pid=$!
    PIDS+=("$proxy_pid")
    wait_port "$PROXY_ADDR" || die "$proxy did not start (see $dir)"
    "$LOADGEN" --threads 2 ws-hold --url "ws://$PROXY_ADDR/ws" --sessions $SESSIONS --reconnect 1s \
        --duration "$((ADD_AT + SAMPLE_SECS + 10))s" >"$dir/hold.json" &
    local hold_pid=$!
    PIDS+=("$hold_pid")
    for i in $(seq 1 200); do
        total=$(( $(held "${BACKENDS[0]}") + $(held "${BACKENDS[1]}") ))
        [ "$total" -ge $SESSIONS ] && break
        sleep 0.1
    done
    log "  $proxy: $total sessions open on a and b ($(held "${BACKENDS[0]}") / $(held "${BACKENDS[1]}"))"
    sleep $ADD_AT
    case $proxy in
        wsgate) wsgate_conf "$dir" 3 ;;
        *) nginx_conf "$dir" 3 "$([ "$proxy" = nginx-shutdown ] && echo 2s || true)" ;;
    esac
    kill -HUP "$proxy_pid"
    t0=$(date +%s.%N)
    printf 'secs\ta\tb\tc\n' >"$tsv"
    for i in $(seq 1 $((SAMPLE_SECS * 2))); do
        sleep 0.5
        now=$(date +%s.%N)
        a=$(held "${BACKENDS[0]}"); b=$(held "${BACKENDS[1]}"); c=$(held "${BACKENDS[2]}")
        printf '%.1f\t%s\t%s\t%s\n' "$(echo "$now - $t0" | bc)" "$a" "$b" "$c" >>"$tsv"
        if [ "$converged" = never ] && [ $((a + b + c)) -ge $((SESSIONS - 15)) ]; then
            if [ "$a" -ge 85 ] && [ "$a" -le 115 ] && [ "$b" -ge 85 ] && [ "$b" -le 115 ] && [ "$c" -ge 85 ] && [ "$c" -le 115 ]; then
                converged=$(printf '%.1f s' "$(echo "$now - $t0" | bc)")
            fi
        fi
    done
    wait "$hold_pid" || true
    line=$(tail -1 "$dir/hold.json")
    log "  $proxy: converged (100 +- 15 each): $converged; at ${SAMPLE_SECS} s: $a / $b / $c; clients: $line"
    printf '%s\t%s\t%s/%s/%s\t%s\n' "$proxy" "$converged" "$a" "$b" "$c" "$line" >>"$OUT/scaleout-summary.tsv"
    cleanup
    rm -rf "$dir"
}

: >"$OUT/scaleout-summary.tsv"
for proxy in $PROXIES; do
    log "scale-out through $proxy"
    run_case "$proxy"
done
cat "$OUT/scaleout-summary.tsv"

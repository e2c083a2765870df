#!/usr/bin/env bash
# wsgate vs nginx (tuned and the seed's recipe) vs HAProxy vs no proxy, side by side on loopback:
#
#   bench/run.sh            # full run: 3 interleaved rotations (~30 min on 2 cores)
#   bench/run.sh --quick    # 1 rotation, shorter workloads (~8 min), for iteration
#
# Options: --rotations N, --no-build (use the binaries already built), --workers "1 2",
# --proxies "direct nginx nginx-seed haproxy wsgate" (nginx: upstream keepalive 128, Connection ""
# on /; nginx-seed: the seed's one recipe for every location, a backend connection per request;
# haproxy: mode http, timeout tunnel 1h, its default keep-alive and http-reuse safe), --workloads
# "idle http echo handshake bulk flood". WSGATE_BIN=/path/to/wsgate benchmarks another build;
# WSGATE_LIMITS='{...}' replaces wsgate's `limits:` (e.g. '{max_connections_per_ip: 256,
# max_connections: 20000}' for the flood with a per-address limit; idle needs 5,000 per address).
# It installs nginx, haproxy and wrk if missing (apt), builds wsgate and bench/loadgen (release),
# starts the loadgen's backends (HTTP: 1 KiB body; WebSocket echo), then for each proxy and worker
# count runs: idle sessions (RSS), HTTP keep-alive GET (wrk), WS echo 64 B, WS handshakes, 1 GiB
# single-session echo, paced WS echo unloaded and under a connection flood (flooder under SCHED_IDLE
# from 127.0.0.2; "direct" floods the backend). Proxy CPU (user+sys, /proc/PID/stat: nginx master +
# workers, HAProxy's one process with nbthread = workers) before and after each workload. Results:
# bench/out/<stamp>/results.tsv (raw) and table.md (medians, ratios to tuned nginx and, for wsgate,
# to HAProxy; also on stdout). Every process it starts is stopped by PID on exit or failure.
# shellcheck disable=SC2046  # $(measured_pids) and $(rss_pids) are PID lists, split on purpose
set -euo pipefail

BENCH=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$BENCH/.." && pwd)

QUICK=0
ROTATIONS=3
BUILD=1
WORKERS="1 2"
PROXIES="direct nginx nginx-seed haproxy wsgate"
WORKLOADS="idle http echo handshake bulk flood"
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1; ROTATIONS=1 ;;
        --rotations) ROTATIONS=$2; shift ;;
        --no-build) BUILD=0 ;;
        --workers) WORKERS=$2; shift ;;
        --proxies) PROXIES=$2; shift ;;
        --workloads) WORKLOADS=$2; shift ;;
        -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
        *) echo "run.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done

if [ "$QUICK" = 1 ]; then
    HTTP_SECS=3; ECHO_SECS=3; HS_SECS=3; BULK_MIB=1024; IDLE_HOLD=2s; FLOOD_SECS=3
else
    HTTP_SECS=8; ECHO_SECS=8; HS_SECS=6; BULK_MIB=1024; IDLE_HOLD=3s; FLOOD_SECS=4
fi
IDLE_SESSIONS=5000
IDLE_BURST=262144      # idle workload: then one echo of this size per session...
IDLE_BURST_SETTLE=11   # ...and RSS measured this many seconds later
ECHO_CONNS=50
ECHO_SIZE=64
HS_CONC=20
PACED_SESSIONS=200  # flood workload: sessions echoing one 64 B message every 50 ms each
PACED_INTERVAL=50ms
FLOOD_SOURCE=127.0.0.2
SETTLE=0.5

HTTP_BACKEND=127.0.0.1:19101
WS_BACKEND=127.0.0.1:19102
PROXY_ADDR=127.0.0.1:19180
LOAD_CPU=0          # load generator, wrk and both backends
PROXY_CPU_1=1       # a 1-worker proxy gets CPU 1 to itself
PROXY_CPU_2=0,1     # a 2-worker proxy gets both CPUs (shared with the load side on CPU 0)

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT="$BENCH/out/$STAMP"
mkdir -p "$OUT"
RESULTS="$OUT/results.tsv"
: > "$RESULTS"
START_TIME=$(date +%s)

log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
die() { log "FAILED: $*"; exit 1; }

# ---------------------------------------------------------------- cleanup by PID
STARTED=()          # every PID this script started
PROXY_PID=""
PROXY_KIND=""
cleanup() {
    local rc=$?
    set +e
    if [ -n "$PROXY_PID" ]; then stop_proxy; fi
    local pid
    for pid in "${STARTED[@]}"; do
        kill -0 "$pid" 2>/dev/null && kill -TERM "$pid" 2>/dev/null
    done
    for _ in $(seq 1 30); do
        local alive=0
        for pid in "${STARTED[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [ "$alive" = 0 ] && break
        sleep 0.1
    done
    for pid in "${STARTED[@]}"; do kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null; done
    [ $rc -ne 0 ] && log "exit $rc; logs in $OUT"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- setup
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
[ "$NOFILE" -ge $((2 * IDLE_SESSIONS + 500)) ] || die "ulimit -n is $NOFILE; $IDLE_SESSIONS idle sessions need $((2 * IDLE_SESSIONS + 500))"

uses() { case " $PROXIES " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
need_apt=()
if uses nginx || uses nginx-seed; then command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need_apt+=(nginx); fi
if uses haproxy; then command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || need_apt+=(haproxy); fi
command -v wrk >/dev/null || need_apt+=(wrk)
if [ ${#need_apt[@]} -gt 0 ]; then
    log "installing ${need_apt[*]} (apt)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends "${need_apt[@]}" >"$OUT/apt.log" 2>&1 \
        || { apt-get update >>"$OUT/apt.log" 2>&1 && apt-get install -y --no-install-recommends "${need_apt[@]}" >>"$OUT/apt.log" 2>&1; } \
        || die "apt-get install ${need_apt[*]} (see $OUT/apt.log)"
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)
for p in $PROXIES; do
    case $p in
        direct|wsgate) ;;
        nginx|nginx-seed) [ -x "$NGINX" ] || die "nginx is missing" ;;
        haproxy) [ -x "$HAPROXY" ] || die "haproxy is missing" ;;
        *) die "unknown proxy $p (direct nginx nginx-seed haproxy wsgate)" ;;
    esac
done
for tool in wrk taskset timeout curl pgrep chrt; do command -v $tool >/dev/null || die "$tool is missing"; done

if [ "$BUILD" = 1 ]; then
    log "building wsgate (release)"
    (cd "$ROOT" && cargo build --release --bin wsgate) >"$OUT/build-wsgate.log" 2>&1 || die "wsgate build (see $OUT/build-wsgate.log)"
    log "building bench/loadgen (release)"
    (cd "$BENCH/loadgen" && cargo build --release) >"$OUT/build-loadgen.log" 2>&1 || die "loadgen build (see $OUT/build-loadgen.log)"
fi
WSGATE=${WSGATE_BIN:-$ROOT/target/release/wsgate}
LOADGEN=$BENCH/loadgen/target/release/loadgen
[ -x "$WSGATE" ] || die "no wsgate binary at $WSGATE"
[ -x "$LOADGEN" ] || die "no loadgen binary at $LOADGEN"

for addr in $HTTP_BACKEND $WS_BACKEND $PROXY_ADDR; do
    if ss -Htln "sport = :${addr##*:}" | grep -q .; then die "port ${addr##*:} is already in use"; fi
done

# ---------------------------------------------------------------- helpers
# user+sys clock ticks of the given PIDs (fields 14 and 15 of /proc/PID/stat)
cpu_ticks() {
    local total=0 pid stat
    for pid in "$@"; do
        # after "pid (comm) " the fields start at field 3: utime is field 14, stime 15
        read -r -a stat < <(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null) || continue
        [ ${#stat[@]} -gt 12 ] && total=$((total + stat[11] + stat[12]))
    done
    echo $total
}
rss_kib() {
    local total=0 pid v
    for pid in "$@"; do
        v=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
        total=$((total + ${v:-0}))
    done
    echo $total
}
CLK_TCK=$(getconf CLK_TCK)
# JSON number field of the last line of a file that has it
jget() { grep -o "\"$2\":[-0-9.]*" "$1" | tail -1 | cut -d: -f2; }
record() { printf '%s\t%s\t%s\t%s\t%s\n' "$ROT" "$PROXY" "$W" "$1" "$2" >>"$RESULTS"; }
# CPU µs per operation from tick counts
per_op_us() { awk -v t="$1" -v n="$2" -v hz="$CLK_TCK" 'BEGIN { if (n > 0) printf "%.2f", t * 1e6 / hz / n; else print 0 }'; }

wait_port() {   # wait_port ADDR PID: up to 10 s for a listener
    local i
    for i in $(seq 1 100); do
        kill -0 "$2" 2>/dev/null || return 1
        ss -Htln "sport = :${1##*:}" | grep -q . && return 0
        sleep 0.1
    done
    return 1
}

start_bg() {    # start_bg LOGFILE CMD...: background, PID in BG_PID, remembered for cleanup
    "${@:2}" >"$1" 2>&1 &
    BG_PID=$!
    STARTED+=("$BG_PID")
}

# The proxy's processes. wsgate and HAProxy (nbthread threads, -db: no master) are one
# process whose /proc/PID/stat counts all its threads; nginx is a master + worker processes.
measured_pids() {   # whose CPU counts: the process; nginx master + workers
    case $PROXY_KIND in
        nginx|nginx-seed) echo "$PROXY_PID $(pgrep -P "$PROXY_PID" | tr '\n' ' ')" ;;
        *) echo "$PROXY_PID" ;;
    esac
}
rss_pids() {        # whose RSS counts: the process; nginx workers
    case $PROXY_KIND in
        nginx|nginx-seed) pgrep -P "$PROXY_PID" | tr '\n' ' ' ;;
        *) echo "$PROXY_PID" ;;
    esac
}

# nginx two ways. "nginx" is tuned as an operator would: a keepalive pool to the HTTP backend
# (keepalive 128, HTTP/1.1, Connection cleared) and nginx's WebSocket recipe on /ws. "nginx-seed"
# is the seed's recipe for every location (HTTP/1.1, Host, Upgrade, Connection from the map) and
# no upstream keepalive: "Connection: close" for every plain request, a backend connection each.
# Both have proxy_read_timeout 1h (HAProxy: timeout tunnel 1h).
write_nginx_conf() {   # write_nginx_conf DIR WORKERS nginx|nginx-seed
    local dir=$1 workers=$2 kind=$3 locations
    mkdir -p "$dir/tmp"
    if [ "$kind" = nginx-seed ]; then
        locations=$(for loc in "/ws ws_backend" "/ http_backend"; do cat <<EOF
        location ${loc% *} {
            proxy_pass http://${loc#* };
            proxy_http_version 1.1;
            proxy_set_header Host \$host;
            proxy_set_header Upgrade \$http_upgrade;
            proxy_set_header Connection \$connection_upgrade;
            proxy_read_timeout 1h;
        }
EOF
        done)
    else
        locations=$(cat <<EOF
        location /ws {
            proxy_pass http://ws_backend;
            proxy_http_version 1.1;
            proxy_set_header Host \$host;
            proxy_set_header Upgrade \$http_upgrade;
            proxy_set_header Connection \$connection_upgrade;
            proxy_read_timeout 1h;
        }
        location / {
            proxy_pass http://http_backend;
            proxy_http_version 1.1;
            proxy_set_header Host \$host;
            proxy_set_header Connection "";
            proxy_read_timeout 1h;
        }
EOF
        )
    fi
    cat >"$dir/nginx.conf" <<EOF
# $kind: see write_nginx_conf in bench/run.sh
worker_processes $workers;
worker_rlimit_nofile $NOFILE;
pid $dir/nginx.pid;
daemon off;
error_log $dir/error.log error;
events { worker_connections $((NOFILE - 100)); }
http {
    access_log off;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;

    map \$http_upgrade \$connection_upgrade { default upgrade; '' close; }
    upstream ws_backend { server $WS_BACKEND; }
    upstream http_backend { server $HTTP_BACKEND;$([ "$kind" = nginx ] && echo " keepalive 128;") }
    server {
        listen $PROXY_ADDR;
$locations
    }
}
EOF
}

# HAProxy in HTTP mode: keep-alive on both sides (its default; no http-server-close) with
# http-reuse safe, its default balancing, a tunnel timeout of 1h for WebSocket sessions.
# One process (-db: foreground, no master) with nbthread threads, so its /proc/PID/stat counts
# them all; HAProxy writes no pidfile in that mode, start_proxy writes haproxy.pid. maxconn from
# the file descriptor limit (each proxied connection holds two), well above the 5,000 idle
# sessions. No logs, no stats.
write_haproxy_conf() {   # write_haproxy_conf DIR WORKERS
    local dir=$1 workers=$2 maxconn=$(( (NOFILE - 500) / 2 ))
    cat >"$dir/haproxy.cfg" <<EOF
global
    nbthread $workers
    maxconn $maxconn

defaults
    mode http
    maxconn $maxconn
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout tunnel 1h

frontend bench
    bind $PROXY_ADDR
    acl is_ws path_beg /ws
    use_backend ws_backend if is_ws
    default_backend http_backend

backend ws_backend
    server ws $WS_BACKEND

backend http_backend
    server http $HTTP_BACKEND
EOF
}

write_wsgate_conf() {
    local dir=$1 workers=$2
    cat >"$dir/wsgate.yaml" <<EOF
server:
  threads: $workers
  pid_file: $dir/wsgate.pid
  upgrade_sock: $dir/wsgate_upgrade.sock
  grace_period_seconds: 0
  graceful_shutdown_timeout_seconds: 1
listeners:
  - address: $PROXY_ADDR
access_log: {path: 'off'}
# All load comes from 127.0.0.1 (5,000 idle sessions, more than the per-address default).
limits: ${WSGATE_LIMITS:-{max_connections_per_ip: 20000, max_connections: 20000\}}
upstreams:
  ws:
    backends: [$WS_BACKEND]
    health_check: {kind: tcp, interval: 5s}
  http:
    backends: [$HTTP_BACKEND]
    health_check: {kind: tcp, interval: 5s}
routes:
  - path_prefix: /ws
    upstream: ws
  - path_prefix: /
    upstream: http
EOF
}

start_proxy() {    # start_proxy KIND WORKERS RUNDIR
    local kind=$1 workers=$2 dir=$3 cpus
    cpus=$([ "$workers" = 1 ] && echo $PROXY_CPU_1 || echo $PROXY_CPU_2)
    PROXY_KIND=$kind
    case $kind in
        nginx|nginx-seed)
            write_nginx_conf "$dir" "$workers" "$kind"
            "$NGINX" -t -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" >"$dir/nginx-t.log" 2>&1 || die "nginx -t (see $dir/nginx-t.log)"
            start_bg "$dir/nginx.log" taskset -c "$cpus" "$NGINX" -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log"
            ;;
        haproxy)
            write_haproxy_conf "$dir" "$workers"
            "$HAPROXY" -c -f "$dir/haproxy.cfg" >"$dir/haproxy-c.log" 2>&1 || die "haproxy -c (see $dir/haproxy-c.log)"
            start_bg "$dir/haproxy.log" taskset -c "$cpus" "$HAPROXY" -db -f "$dir/haproxy.cfg"
            echo "$BG_PID" >"$dir/haproxy.pid"    # taskset execs haproxy: the same PID
            ;;
        wsgate)
            write_wsgate_conf "$dir" "$workers"
            RUST_LOG=warn start_bg "$dir/wsgate.log" taskset -c "$cpus" "$WSGATE" -c "$dir/wsgate.yaml"
            ;;
    esac
    PROXY_PID=$BG_PID
    wait_port "$PROXY_ADDR" "$PROXY_PID" || die "$kind did not start (see $dir)"
    sleep 0.5   # workers forked, first health checks done
    log "  $kind ×$workers up (pid $PROXY_PID, CPUs $cpus, processes: $(measured_pids))"
}

stop_proxy() {
    local pids i
    pids=$(measured_pids)
    # nginx, HAProxy: TERM (fast/hard stop); wsgate: INT (Pingora's fast shutdown)
    kill -0 "$PROXY_PID" 2>/dev/null && kill "-$([ "$PROXY_KIND" = wsgate ] && echo INT || echo TERM)" "$PROXY_PID" 2>/dev/null
    for i in $(seq 1 50); do
        local alive=0 p
        for p in $pids; do kill -0 "$p" 2>/dev/null && alive=1; done
        [ "$alive" = 0 ] && break
        sleep 0.1
    done
    for p in $pids; do kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null; done
    wait "$PROXY_PID" 2>/dev/null || true
    PROXY_PID=""
}

on_load_cpu() { taskset -c "$LOAD_CPU" "$@"; }

# ---------------------------------------------------------------- workloads
# Each sets CPU0 before and records CPU per op after; stdout of each tool is kept in RUNDIR.
cpu_begin() { [ "$PROXY" = direct ] && return; CPU_T0=$(cpu_ticks $(measured_pids)); }
cpu_end() {  # cpu_end METRIC OPS
    [ "$PROXY" = direct ] && return
    local t1; t1=$(cpu_ticks $(measured_pids))
    record "$1" "$(per_op_us $((t1 - CPU_T0)) "$2")"
}

# await_event FILE PID EVENT TRIES: waits (0.1 s a try) until loadgen PID prints EVENT.
await_event() {
    local i
    for i in $(seq 1 "$4"); do
        grep -q "\"$3\"" "$1" 2>/dev/null && return 0
        kill -0 "$2" 2>/dev/null || break
        sleep 0.1
    done
    grep -q "\"$3\"" "$1"
}

w_idle() {
    local f=$RUNDIR/idle.json before after
    [ "$PROXY" != direct ] && before=$(rss_kib $(rss_pids))
    timeout -k 5 180 taskset -c "$LOAD_CPU" "$LOADGEN" ws-idle --url "$WS_URL" --sessions $IDLE_SESSIONS --hold $IDLE_HOLD \
        --burst $IDLE_BURST --burst-hold $((IDLE_BURST_SETTLE + 2))s >"$f" 2>"$RUNDIR/idle.err" &
    local idle_pid=$!
    STARTED+=("$idle_pid")
    await_event "$f" "$idle_pid" ready 900 || die "ws-idle never got ready (see $f)"
    sleep 0.5
    if [ "$PROXY" != direct ]; then
        after=$(rss_kib $(rss_pids))
        local sessions; sessions=$(jget "$f" sessions)
        record idle_rss_kib "$(awk -v a="$after" -v b="$before" -v n="$sessions" 'BEGIN { printf "%.2f", (a - b) / n }')"
        log "    idle: $sessions sessions, RSS $before -> $after KiB"
    fi
    # Then each session echoes one large message and goes idle again: what is still held
    # once the allocator has had its decay time (jemalloc: 10 s) is what an hour of
    # idleness costs.
    await_event "$f" "$idle_pid" burst 1200 || die "ws-idle never finished its burst (see $f)"
    if [ "$PROXY" != direct ]; then
        sleep "$IDLE_BURST_SETTLE"
        after=$(rss_kib $(rss_pids))
        record idle_burst_rss_kib "$(awk -v a="$after" -v b="$before" -v n="$sessions" 'BEGIN { printf "%.2f", (a - b) / n }')"
        log "    idle after a $IDLE_BURST-byte echo each: RSS $before -> $after KiB"
    fi
    wait "$idle_pid" || true
    record idle_failed "$(( IDLE_SESSIONS - $(jget "$f" sessions) ))"
}

w_http() {
    local f=$RUNDIR/wrk.txt
    cpu_begin
    timeout -k 5 $((HTTP_SECS + 30)) taskset -c "$LOAD_CPU" wrk -t2 -c50 -d${HTTP_SECS}s --latency "$HTTP_URL" >"$f" 2>&1 || die "wrk (see $f)"
    local reqs rps p99 errors
    reqs=$(awk '/requests in/ {print $1}' "$f")
    rps=$(awk '/^Requests\/sec:/ {print $2}' "$f")
    p99=$(awk '$1 == "99%" { v = $2; u = v; gsub(/[0-9.]/, "", u); sub(/[a-z]+$/, "", v);
        m = (u == "us") ? 1 : (u == "ms") ? 1000 : (u == "s") ? 1e6 : (u == "m") ? 6e7 : 1; printf "%.0f", v * m }' "$f")
    errors=$(awk '/Non-2xx|Socket errors/ { for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+,?$/) { gsub(",", "", $i); s += $i } } END { print s + 0 }' "$f")
    cpu_end http_cpu_us "$reqs"
    record http_rps "$rps"; record http_p99_us "$p99"; record http_errors "$errors"
    log "    http: $rps req/s, p99 ${p99} µs, errors $errors"
}

w_echo() {
    local f=$RUNDIR/echo.json
    cpu_begin
    timeout -k 5 $((ECHO_SECS + 60)) taskset -c "$LOAD_CPU" "$LOADGEN" ws-echo --url "$WS_URL" --connections $ECHO_CONNS --size $ECHO_SIZE --duration ${ECHO_SECS}s >"$f" 2>&1 || true
    local msgs; msgs=$(jget "$f" msgs)
    [ -n "$msgs" ] || die "ws-echo (see $f)"
    cpu_end echo_cpu_us "$msgs"
    record echo_mps "$(jget "$f" msgs_per_s)"; record echo_p50_us "$(jget "$f" p50_us)"; record echo_p99_us "$(jget "$f" p99_us)"
    record echo_errors "$(jget "$f" errors)"
    log "    echo: $(jget "$f" msgs_per_s) msg/s, p50 $(jget "$f" p50_us) µs, p99 $(jget "$f" p99_us) µs"
}

w_handshake() {
    local f=$RUNDIR/handshake.json
    cpu_begin
    timeout -k 5 $((HS_SECS + 60)) taskset -c "$LOAD_CPU" "$LOADGEN" ws-handshake --url "$WS_URL" --concurrency $HS_CONC --duration ${HS_SECS}s >"$f" 2>&1 || true
    local n; n=$(jget "$f" handshakes)
    [ -n "$n" ] || die "ws-handshake (see $f)"
    cpu_end hs_cpu_us "$n"
    record hs_per_s "$(jget "$f" per_s)"; record hs_failures "$(jget "$f" failures)"
    log "    handshakes: $(jget "$f" per_s)/s, failures $(jget "$f" failures)"
}

w_bulk() {
    local f=$RUNDIR/bulk.json
    timeout -k 5 300 taskset -c "$LOAD_CPU" "$LOADGEN" ws-bulk --url "$WS_URL" --mib $BULK_MIB --msg-kib 64 --stall 10s >"$f" 2>&1 || true
    if grep -q '"stalled":false' "$f"; then
        record bulk_mib_s "$(jget "$f" mib_per_s)"; record bulk_stalled 0
        log "    bulk: $(jget "$f" mib_per_s) MiB/s"
    else
        record bulk_stalled 1
        log "    bulk: STALLED or failed: $(cat "$f")"
    fi
}

# Paced echo (PACED_SESSIONS x one message per PACED_INTERVAL) unloaded, then again while
# one client floods the proxy with connections as fast as it can under SCHED_IDLE (it
# stands for remote clients: it takes the CPU time the rest leaves, not the proxy's).
w_flood() {
    local base=$RUNDIR/paced.json under=$RUNDIR/paced-flood.json fl=$RUNDIR/flood.json target
    target=$([ "$PROXY" = direct ] && echo "$WS_BACKEND" || echo "$PROXY_ADDR")
    # The proxy's CPU per flooded connection, with the flood alone.
    cpu_begin
    timeout -k 5 30 chrt --idle 0 "$LOADGEN" flood --addr "$target" --source $FLOOD_SOURCE --duration 2s >"$RUNDIR/flood-alone.json" 2>&1 || true
    [ -n "$(jget "$RUNDIR/flood-alone.json" opened)" ] || die "flood (see $RUNDIR/flood-alone.json)"
    cpu_end flood_cpu_us "$(jget "$RUNDIR/flood-alone.json" opened)"
    sleep $SETTLE
    timeout -k 5 $((FLOOD_SECS + 60)) taskset -c "$LOAD_CPU" "$LOADGEN" ws-echo --url "$WS_URL" --connections $PACED_SESSIONS --interval $PACED_INTERVAL --duration ${FLOOD_SECS}s >"$base" 2>&1 || true
    [ -n "$(jget "$base" msgs)" ] || die "paced ws-echo (see $base)"
    sleep $SETTLE
    timeout -k 5 $((FLOOD_SECS + 30)) chrt --idle 0 "$LOADGEN" flood --addr "$target" --source $FLOOD_SOURCE --duration $((FLOOD_SECS + 2))s >"$fl" 2>&1 &
    local flood_pid=$!
    STARTED+=("$flood_pid")
    sleep 1     # the flood ramps up (it holds its connections within ~0.2 s)
    timeout -k 5 $((FLOOD_SECS + 60)) taskset -c "$LOAD_CPU" "$LOADGEN" ws-echo --url "$WS_URL" --connections $PACED_SESSIONS --interval $PACED_INTERVAL --duration ${FLOOD_SECS}s >"$under" 2>&1 || true
    wait "$flood_pid" || true
    [ -n "$(jget "$under" msgs)" ] || die "paced ws-echo under the flood (see $under)"
    [ -n "$(jget "$fl" per_s)" ] || die "flood (see $fl)"
    local b u
    b=$(jget "$base" p99_us); u=$(jget "$under" p99_us)
    record flood_base_p99_us "$b"; record flood_p99_us "$u"
    record flood_ratio "$(awk -v u="$u" -v b="$b" 'BEGIN { printf "%.2f", u / b }')"
    record flood_conn_s "$(jget "$fl" per_s)"
    record flood_errors "$(( $(jget "$base" errors) + $(jget "$under" errors) ))"
    log "    flood: p99 $b -> $u µs at $(jget "$fl" per_s) connections/s, errors $(jget "$base" errors)+$(jget "$under" errors)"
}

# ---------------------------------------------------------------- run
log "output in $OUT"
start_bg "$OUT/serve-http.log" taskset -c "$LOAD_CPU" "$LOADGEN" serve-http --addr $HTTP_BACKEND
BACKEND_HTTP_PID=$BG_PID
start_bg "$OUT/serve-ws.log" taskset -c "$LOAD_CPU" "$LOADGEN" serve-ws --addr $WS_BACKEND
BACKEND_WS_PID=$BG_PID
wait_port $HTTP_BACKEND $BACKEND_HTTP_PID || die "HTTP backend did not start"
wait_port $WS_BACKEND $BACKEND_WS_PID || die "WebSocket backend did not start"

# Configurations in rotation order; every other rotation runs them in reverse.
CONFIGS=()
for w in $WORKERS; do
    for p in $PROXIES; do
        if [ "$p" = direct ]; then [ "$w" = "${WORKERS%% *}" ] && CONFIGS+=("direct:1"); else CONFIGS+=("$p:$w"); fi
    done
done
{
    echo "# wsgate bench $STAMP quick=$QUICK rotations=$ROTATIONS"
    echo "# http ${HTTP_SECS}s wrk -t2 -c50; echo ${ECHO_SECS}s ${ECHO_CONNS}x${ECHO_SIZE}B; handshakes ${HS_SECS}s x$HS_CONC; bulk ${BULK_MIB} MiB/64 KiB; idle $IDLE_SESSIONS hold $IDLE_HOLD"
} >>"$RESULTS"

for ROT in $(seq 1 "$ROTATIONS"); do
    order=("${CONFIGS[@]}")
    if [ $((ROT % 2)) = 0 ]; then
        order=(); for ((i = ${#CONFIGS[@]} - 1; i >= 0; i--)); do order+=("${CONFIGS[$i]}"); done
    fi
    for cfg in "${order[@]}"; do
        PROXY=${cfg%%:*}; W=${cfg##*:}
        RUNDIR="$OUT/r$ROT-$PROXY-w$W"; mkdir -p "$RUNDIR"
        log "rotation $ROT/$ROTATIONS: $PROXY ×$W"
        if [ "$PROXY" = direct ]; then
            HTTP_URL="http://$HTTP_BACKEND/"; WS_URL="ws://$WS_BACKEND/ws"
        else
            start_proxy "$PROXY" "$W" "$RUNDIR"
            HTTP_URL="http://$PROXY_ADDR/"; WS_URL="ws://$PROXY_ADDR/ws"
        fi
        for workload in $WORKLOADS; do
            "w_$workload"
            sleep $SETTLE
        done
        [ "$PROXY" != direct ] && stop_proxy
        sleep $SETTLE
    done
done

ELAPSED=$(( $(date +%s) - START_TIME ))
{
    echo "Run $STAMP: \`bench/run.sh$([ "$QUICK" = 1 ] && echo " --quick")\`, $ROTATIONS rotation(s), ${ELAPSED} s in all."
    echo "Machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(uname -r); $(uses nginx || uses nginx-seed && echo "nginx $("$NGINX" -v 2>&1 | sed 's/.*nginx\///'), ")$(uses haproxy && echo "HAProxy $("$HAPROXY" -v 2>&1 | awk 'NR == 1 {print $3}'), ")wrk $(wrk -v 2>&1 | head -1 | awk '{print $2}'), wsgate $(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD -- src Cargo.toml Cargo.lock || echo '+uncommitted')."
    echo "Workloads: HTTP keep-alive GET, wrk -t2 -c50 ${HTTP_SECS}s, 1 KiB body; WS echo ${ECHO_CONNS} connections x ${ECHO_SIZE} B, ${ECHO_SECS}s closed loop (CPU per echo round trip); WS handshakes (connect, one echo, close) x${HS_CONC}, ${HS_SECS}s; one session echoing ${BULK_MIB} MiB in 64 KiB messages; ${IDLE_SESSIONS} idle sessions, then one ${IDLE_BURST}-byte echo each and ${IDLE_BURST_SETTLE}s idle; flood: ${PACED_SESSIONS} sessions x one 64 B echo per ${PACED_INTERVAL}, ${FLOOD_SECS}s unloaded then ${FLOOD_SECS}s under a connection flood from $FLOOD_SOURCE (SCHED_IDLE, unpinned; every other connection reset at once, the rest send a partial request line, 1,200 held). Workloads run: $WORKLOADS."
    echo "Pinning: load generator, wrk and both backends on CPU $LOAD_CPU; 1-worker proxies on CPU $PROXY_CPU_1; 2-worker proxies on CPUs $PROXY_CPU_2 (shared with the load side)."
    echo
    "$LOADGEN" report --input "$RESULTS"
} | tee "$OUT/table.md"
log "done in ${ELAPSED} s; raw results $RESULTS"

#!/usr/bin/env bash
# Profiles wsgate (1 worker) on one workload, with the bench's backends and config.
#
#   bench/profile.sh callgrind http|echo|handshake|flood   # instructions per operation + top functions (repeatable)
#   bench/profile.sh perf      http|echo|handshake|flood   # perf record (DWARF call graphs), top symbols, user/kernel split
#   bench/profile.sh syscalls  http|echo|handshake|flood   # strace -c: syscalls per operation
#   bench/profile.sh cpu       http|echo|handshake|flood   # operations/s and wsgate's CPU µs per operation
# (flood: one operation is one connection of run.sh's connection flood, from 127.0.0.2)
#   bench/profile.sh rss                             # RSS KiB per idle WebSocket session (5,000)
#
# WSGATE_BIN=/path/to/wsgate profiles another build (e.g. an allocator or buffer experiment);
# WSGATE_THREADS=2 gives wsgate two workers (unpinned then); WS_ROUTE='websocket: {...}' adds keys
# to the /ws route (e.g. 'websocket: {ping_interval: 30s}' to price keepalive); WS_HEADER='Name: value'
# is sent on every handshake of the echo and handshake workloads, e.g. to price JWT verification:
#   WS_ROUTE="auth: {jwt: {keys: $PWD/tests/fixtures/jwt/jwks.json, algorithms: [RS256]}}" \
#   WS_HEADER="Authorization: Bearer $(bench/jwt-token.sh)" bench/profile.sh callgrind handshake
# Needs bench/run.sh to have built bench/loadgen once. Output: bench/out/profile-<stamp>/.
# Every process it starts is stopped by PID on exit.
set -euo pipefail

BENCH=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$BENCH/.." && pwd)
MODE=${1:-}; WL=${2:-}
case "$MODE" in
    callgrind|perf|syscalls|cpu) case "$WL" in http|echo|handshake|flood) ;; *) sed -n '2,16p' "$0"; exit 2 ;; esac ;;
    rss) WL=idle ;;
    *) sed -n '2,16p' "$0"; exit 2 ;;
esac
WSGATE=${WSGATE_BIN:-$ROOT/target/release/wsgate}
LOADGEN=$BENCH/loadgen/target/release/loadgen
[ -x "$WSGATE" ] || { echo "no wsgate at $WSGATE (cargo build --release)" >&2; exit 1; }
[ -x "$LOADGEN" ] || { echo "no loadgen at $LOADGEN (bench/run.sh builds it)" >&2; exit 1; }
for tool in $([ "$MODE" = callgrind ] && echo valgrind callgrind_control callgrind_annotate) $([ "$MODE" = perf ] && echo perf) $([ "$MODE" = syscalls ] && echo strace); do
    command -v "$tool" >/dev/null || { echo "$tool is missing (apt-get install valgrind / linux-perf / strace)" >&2; exit 1; }
done
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

OUT="$BENCH/out/profile-$(date -u +%Y%m%dT%H%M%SZ)-$MODE-$WL"
mkdir -p "$OUT"
HTTP_BACKEND=127.0.0.1:19101; WS_BACKEND=127.0.0.1:19102; PROXY=127.0.0.1:19180
for port in 19101 19102 19180; do
    if ss -Htln "sport = :$port" | grep -q .; then echo "port $port is in use" >&2; exit 1; fi
done

STARTED=()
cleanup() {
    set +e
    for pid in "${STARTED[@]}"; do kill -0 "$pid" 2>/dev/null && kill -INT "$pid" 2>/dev/null; done
    for _ in $(seq 1 30); do
        alive=0; for pid in "${STARTED[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [ $alive = 0 ] && break; sleep 0.1
    done
    for pid in "${STARTED[@]}"; do kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM
bg() { "${@:2}" >"$1" 2>&1 & STARTED+=("$!"); }
wait_port() { for _ in $(seq 1 600); do ss -Htln "sport = :$1" | grep -q . && return 0; sleep 0.1; done; return 1; }

bg "$OUT/serve-http.log" taskset -c 0 "$LOADGEN" serve-http --addr $HTTP_BACKEND
bg "$OUT/serve-ws.log" taskset -c 0 "$LOADGEN" serve-ws --addr $WS_BACKEND
cat >"$OUT/wsgate.yaml" <<EOF
server:
  threads: ${WSGATE_THREADS:-1}
  pid_file: $OUT/wsgate.pid
  upgrade_sock: $OUT/wsgate_upgrade.sock
  grace_period_seconds: 0
  graceful_shutdown_timeout_seconds: 1
listeners:
  - address: $PROXY
access_log: {path: 'off'}
limits: {max_connections_per_ip: 20000, max_connections: 20000}
upstreams:
  ws: {backends: [$WS_BACKEND], health_check: {kind: tcp, interval: 5s}}
  http: {backends: [$HTTP_BACKEND], health_check: {kind: tcp, interval: 5s}}
routes:
  - {path_prefix: /ws, upstream: ws${WS_ROUTE:+, $WS_ROUTE}}
  - {path_prefix: /, upstream: http}
EOF
if [ "$MODE" = callgrind ]; then
    RUST_LOG=warn bg "$OUT/wsgate.log" valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.out.%p" "$WSGATE" -c "$OUT/wsgate.yaml"
else
    RUST_LOG=warn bg "$OUT/wsgate.log" taskset -c "$([ "${WSGATE_THREADS:-1}" = 1 ] && echo 1 || echo 0,1)" "$WSGATE" -c "$OUT/wsgate.yaml"
fi
WPID=${STARTED[-1]}
wait_port 19180 || { echo "wsgate did not start (see $OUT/wsgate.log)" >&2; exit 1; }
sleep 1

# Under valgrind everything is ~50x slower: shorter, smaller loads there.
SECS=$([ "$MODE" = callgrind ] && echo 10 || echo 6)
CONNS=$([ "$MODE" = callgrind ] && echo 10 || echo 50)
HDR=(); [ -z "${WS_HEADER:-}" ] || HDR=(--header "$WS_HEADER")
load() {   # runs the workload once, prints the number of operations
    case $WL in
        http) timeout 120 taskset -c 0 wrk -t1 -c$CONNS -d${SECS}s "http://$PROXY/" >"$OUT/load.txt" 2>&1; awk '/requests in/ {print $1}' "$OUT/load.txt" ;;
        echo) timeout 120 taskset -c 0 "$LOADGEN" ws-echo --url "ws://$PROXY/ws" --connections $CONNS --duration ${SECS}s "${HDR[@]}" >"$OUT/load.txt" 2>&1 || true
              grep -o '"msgs":[0-9]*' "$OUT/load.txt" | cut -d: -f2 ;;
        handshake) timeout 120 taskset -c 0 "$LOADGEN" ws-handshake --url "ws://$PROXY/ws" --concurrency $((CONNS / 5 + 1)) --duration ${SECS}s "${HDR[@]}" >"$OUT/load.txt" 2>&1 || true
              grep -q '"failures":[1-9]' "$OUT/load.txt" && echo "warning: failed handshakes, $(grep -o '"failures".*' "$OUT/load.txt")" >&2
              grep -o '"handshakes":[0-9]*' "$OUT/load.txt" | cut -d: -f2 ;;
        flood) timeout 120 chrt --idle 0 "$LOADGEN" flood --addr "$PROXY" --duration ${SECS}s >"$OUT/load.txt" 2>&1 || true
              grep -o '"opened":[0-9]*' "$OUT/load.txt" | cut -d: -f2 ;;
    esac
}
per_op() { awk -v a="$1" -v n="$2" 'BEGIN { printf "%.1f", a / n }'; }

case $MODE in
    callgrind)
        load >/dev/null    # warm-up (connections, pools), then count from zero
        callgrind_control -z "$WPID" >/dev/null
        n=$(load)
        callgrind_control -d "$WPID" >/dev/null
        sleep 1
        f=$(ls -t "$OUT"/callgrind.out.* | head -1)
        callgrind_annotate --inclusive=yes --threshold=100 "$f" >"$OUT/inclusive.txt" 2>/dev/null
        callgrind_annotate --threshold=100 "$f" >"$OUT/self.txt" 2>/dev/null
        ir=$(awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}' "$OUT/self.txt")
        echo "$WL: $n operations, $(per_op "$ir" "$n") instructions (Ir) per operation, user space"
        echo "top self cost per operation:"
        sed -n '/file:function/,$p' "$OUT/self.txt" \
            | awk -v n="$n" -v total="$ir" 'match($0, /^ *[0-9,]+ \( *[0-9.]+%\) +/) {
                  x = $1; gsub(",", "", x); x += 0; name = substr($0, RLENGTH + 1)
                  if (x / n >= 100 && x < 0.9 * total) printf "  %8.0f  %s\n", x / n, name }' \
            | sed 's#/root/.cargo/registry/src/[^/]*/##; s#/rustc/[0-9a-f]*/##' | cut -c1-170 | head -25
        echo "full listings: $OUT/self.txt, $OUT/inclusive.txt (callgrind_annotate --tree=caller $f for callers)"
        ;;
    perf)
        (load >"$OUT/ops.txt") & LOADPID=$!
        sleep 1
        perf record -F 999 --call-graph dwarf,32768 -p "$WPID" -o "$OUT/perf.data" -- sleep $((SECS - 2)) >"$OUT/perf-record.log" 2>&1
        wait $LOADPID || true
        perf report -i "$OUT/perf.data" --no-children --sort dso --stdio -g none 2>/dev/null | grep '%' | head -6
        echo "top symbols (self):"
        perf report -i "$OUT/perf.data" --no-children --sort sym --stdio -g none 2>/dev/null | grep '%' | head -30 | cut -c1-170
        echo "call graphs: perf report -i $OUT/perf.data --children"
        ;;
    cpu)   # user+sys of wsgate from /proc (10 ms ticks), after a warm-up run
        ticks() { awk '{print $14, $15}' "/proc/$WPID/stat"; }
        us() { per_op $(($1 * 1000000 / $(getconf CLK_TCK))) "$n"; }
        load >/dev/null
        read -r u0 s0 < <(ticks); n=$(load); read -r u1 s1 < <(ticks)
        echo "$WL: $n operations in ${SECS}s, $(per_op "$n" $SECS)/s, $(us $((u1 + s1 - u0 - s0))) CPU µs per operation (wsgate user $(us $((u1 - u0))) + sys $(us $((s1 - s0))))"
        ;;
    syscalls)
        timeout 120 strace -c -f -p "$WPID" -o "$OUT/strace.txt" & SPID=$!
        sleep 1
        n=$(load)
        sleep 0.5; kill -INT $SPID 2>/dev/null; wait $SPID 2>/dev/null || true
        echo "$WL: $n operations; syscalls per operation:"
        awk -v n="$n" '$4 ~ /^[0-9]+$/ && $NF ~ /^[a-z_0-9]+$/ && $NF != "total" && $4 / n >= 0.01 { printf "  %-16s %6.2f\n", $NF, $4 / n }' "$OUT/strace.txt"
        ;;
    rss)
        before=$(awk '/^VmRSS:/ {print $2}' "/proc/$WPID/status")
        taskset -c 0 "$LOADGEN" ws-idle --url "ws://$PROXY/ws" --sessions 5000 --hold 2s >"$OUT/idle.txt" 2>&1 & IDLE=$!; STARTED+=("$IDLE")
        for _ in $(seq 1 600); do grep -q '"ready"' "$OUT/idle.txt" && break; kill -0 $IDLE 2>/dev/null || break; sleep 0.1; done
        sleep 0.5
        after=$(awk '/^VmRSS:/ {print $2}' "/proc/$WPID/status")
        wait $IDLE || true
        n=$(grep '"ready"' "$OUT/idle.txt" | grep -o '"sessions":[0-9]*' | cut -d: -f2)
        echo "RSS before $before KiB, with $n idle sessions $after KiB: $(per_op $((after - before)) "$n") KiB per session"
        ;;
esac
echo "output: $OUT"

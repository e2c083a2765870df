#!/usr/bin/env bash
# How long the admin API's GET /sessions takes with many open sessions (#16: 10,000 in
# under 100 ms), and wsgate's RSS with them open.
#
#   bench/admin-sessions.sh [SESSIONS]      # default 9900
#
# Each session holds two sockets in wsgate (client and backend): under a hard limit of 20,000
# open files (these machines; not raisable without CAP_SYS_RESOURCE) 9,900 sessions leave the
# admin listener room to accept. At the limit, accept() fails with EMFILE and every listener
# backs off for about a second, which is what a GET then measures.
#
# Needs a release build (cargo build --release) and bench/loadgen (bench/run.sh builds it).
# Every process it starts is stopped by PID on exit. Output: bench/out/admin-sessions-<stamp>/.
set -euo pipefail

BENCH=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$BENCH/.." && pwd)
N=${1:-9900}
WSGATE=${WSGATE_BIN:-$ROOT/target/release/wsgate}
LOADGEN=$BENCH/loadgen/target/release/loadgen
[ -x "$WSGATE" ] || { echo "no wsgate at $WSGATE (cargo build --release)" >&2; exit 1; }
[ -x "$LOADGEN" ] || { echo "no loadgen at $LOADGEN (bench/run.sh builds it)" >&2; exit 1; }
# Two sockets per session (client and backend), and the admin API must still accept.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
OUT="$BENCH/out/admin-sessions-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT"
WS_BACKEND=127.0.0.1:19202; PROXY=127.0.0.1:19280; ADMIN=127.0.0.1:19281
for port in 19202 19280 19281; do
    if ss -Htln "sport = :$port" | grep -q .; then echo "port $port is in use" >&2; exit 1; fi
done
STARTED=()
cleanup() {
    set +e
    for pid in "${STARTED[@]}"; do kill -0 "$pid" 2>/dev/null && kill -INT "$pid" 2>/dev/null; done
    for _ in $(seq 1 50); do
        alive=0; for pid in "${STARTED[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [ $alive = 0 ] && break; sleep 0.1
    done
    for pid in "${STARTED[@]}"; do kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM
bg() { "${@:2}" >"$1" 2>&1 & STARTED+=("$!"); }
wait_port() { for _ in $(seq 1 600); do ss -Htln "sport = :$1" | grep -q . && return 0; sleep 0.1; done; return 1; }

echo "bench-token" >"$OUT/admin.token"
cat >"$OUT/wsgate.yaml" <<YAML
server: {threads: 2, pid_file: $OUT/wsgate.pid, upgrade_sock: $OUT/upgrade.sock, grace_period_seconds: 0, graceful_shutdown_timeout_seconds: 1}
listeners: [{address: $PROXY}]
admin: {address: $ADMIN, token_file: $OUT/admin.token}
access_log: {path: 'off'}
limits: {max_connections_per_ip: 50000, max_connections: 50000, max_concurrent_per_ip: 50000, max_websocket_sessions: 50000}
upstreams:
  ws: {backends: [$WS_BACKEND], health_check: {kind: tcp, interval: 5s}}
routes:
  - {path_prefix: /, upstream: ws}
YAML
bg "$OUT/serve-ws.log" "$LOADGEN" serve-ws --addr $WS_BACKEND
RUST_LOG=warn bg "$OUT/wsgate.log" "$WSGATE" -c "$OUT/wsgate.yaml"
WPID=${STARTED[-1]}
wait_port 19280 && wait_port 19281 || { echo "wsgate did not start (see $OUT/wsgate.log)" >&2; exit 1; }
bg "$OUT/idle.txt" "$LOADGEN" ws-idle --url "ws://$PROXY/" --sessions "$N" --hold 120s
for _ in $(seq 1 1200); do grep -q '"event":"ready"' "$OUT/idle.txt" && break; sleep 0.1; done
grep '"event":"ready"' "$OUT/idle.txt" || { echo "sessions did not open (see $OUT/idle.txt)" >&2; exit 1; }
get() { curl -s -o "$OUT/sessions.json" -w '%{time_total}' -H "Authorization: Bearer bench-token" "http://$ADMIN/sessions?limit=$N"; }
get >/dev/null   # warm-up
times=$(for _ in 1 2 3 4 5; do get; echo; done)
listed=$(grep -o '"total": *[0-9]*' "$OUT/sessions.json" | grep -o '[0-9]*$')
bytes=$(wc -c <"$OUT/sessions.json")
rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$WPID/status")
echo "GET /sessions with $listed open sessions ($bytes bytes of JSON): seconds per answer, 5 runs:" $times
echo "wsgate RSS with them open: ${rss} KiB"
one=$(for _ in 1 2 3; do curl -s -o /dev/null -w '%{time_total} ' -H "Authorization: Bearer bench-token" "http://$ADMIN/sessions?limit=1"; done)
echo "GET /sessions?limit=1 (all listed, one serialised): $one"

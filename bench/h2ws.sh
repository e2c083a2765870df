#!/usr/bin/env bash
# WebSocket over HTTP/2 (RFC 8441) against the same over HTTP/1.1, through one wsgate TLS
# listener, on loopback:
#
#   bench/h2ws.sh                 # 3 rounds of 1 GiB bulk echo + 64 B echo, h1 and h2 interleaved
#   bench/h2ws.sh --rounds 5 --mib 2048 --echo-secs 0 --no-build
#
# Options: --rounds N (3), --mib N (1024: MiB echoed per bulk run), --msg-kib N (64),
# --echo-secs S (5; 0 skips the small-message echo), --stall S (10: the bulk watchdog, s),
# --no-build. WSGATE_BIN=/path/to/wsgate runs another build. CARGO_TARGET_DIR is honoured
# when building wsgate; the binary is then copied to a temp dir and run from there, since
# a shared target directory can be rebuilt by someone else during the run.
#
# Setup as bench/run.sh: loadgen serve-ws (the WebSocket echo backend) and every loadgen
# client pinned to CPU 0, wsgate with 1 worker pinned to CPU 1. wsgate has one TLS listener
# (a throwaway self-signed P-256 certificate made with openssl in a temp dir) with
# `http2: true, websocket_over_http2: true`. Per round, in alternating order:
#   bulk h1: loadgen ws-bulk --url wss://... (ALPN http/1.1, an HTTP/1.1 upgrade)
#   bulk h2: loadgen ws-bulk --url wss://... --h2 (ALPN h2, one extended-CONNECT stream)
#   echo h1 / echo h2: loadgen ws-echo, 1 connection, 64 B messages, closed loop
# Each bulk run is one session echoing --mib MiB in --msg-kib KiB messages (writer and
# reader concurrent); its watchdog fails the run if no echoed byte arrives for --stall
# seconds, and a stall stops the script (exit 1) with the byte counts and wsgate's log.
# Measured per run: MiB/s (or echoes/s), wsgate's user+sys CPU from /proc/PID/stat before
# and after (10 ms ticks) per MiB, per message echoed and per 64 B echo, the CPU time of
# the loadgen client and the backend (CPU 0), and the h2/h1 ratios within each round.
# Output: bench/out/h2ws-<stamp>/ (results.tsv, summary.md, logs). Every process this
# script starts is stopped by PID on exit.
set -euo pipefail

BENCH=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$BENCH/.." && pwd)

ROUNDS=3; MIB=1024; MSG_KIB=64; ECHO_SECS=5; STALL=10; BUILD=1
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) ROUNDS=$2; shift ;;
        --mib) MIB=$2; shift ;;
        --msg-kib) MSG_KIB=$2; shift ;;
        --echo-secs) ECHO_SECS=$2; shift ;;
        --stall) STALL=$2; shift ;;
        --no-build) BUILD=0 ;;
        -h|--help) sed -n '2,28p' "$0"; exit 0 ;;
        *) echo "h2ws.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done

WS_BACKEND=127.0.0.1:19302
PROXY_ADDR=127.0.0.1:19343
LOAD_CPU=0
PROXY_CPU=1
SETTLE=0.5

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT="$BENCH/out/h2ws-$STAMP"
mkdir -p "$OUT"
RESULTS="$OUT/results.tsv"
printf 'round\tproto\tmetric\tvalue\n' >"$RESULTS"
TMP=$(mktemp -d)

log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
die() { log "FAILED: $*"; exit 1; }

STARTED=()
cleanup() {
    local rc=$? pid
    set +e
    # TERM: background jobs of a script ignore SIGINT; wsgate exits within its 1 s timeout.
    for pid in "${STARTED[@]}"; do kill -0 "$pid" 2>/dev/null && kill -TERM "$pid" 2>/dev/null; done
    for _ in $(seq 1 50); do
        local alive=0
        for pid in "${STARTED[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [ "$alive" = 0 ] && break
        sleep 0.1
    done
    for pid in "${STARTED[@]}"; do kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null; done
    rm -rf "$TMP"
    [ $rc -ne 0 ] && log "exit $rc; logs in $OUT"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for tool in openssl taskset timeout ss; do command -v $tool >/dev/null || die "$tool is missing"; done
REV=$(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD -- src Cargo.toml Cargo.lock || echo '+uncommitted')
if [ "$BUILD" = 1 ]; then
    log "building wsgate (release)"
    (cd "$ROOT" && cargo build --release --bin wsgate) >"$OUT/build-wsgate.log" 2>&1 || die "wsgate build (see $OUT/build-wsgate.log)"
    log "building bench/loadgen (release)"
    (cd "$BENCH/loadgen" && cargo build --release) >"$OUT/build-loadgen.log" 2>&1 || die "loadgen build (see $OUT/build-loadgen.log)"
fi
SRC_BIN=${WSGATE_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/wsgate}
[ -x "$SRC_BIN" ] || die "no wsgate binary at $SRC_BIN"
cp "$SRC_BIN" "$TMP/wsgate"    # removed on exit with the certificate
WSGATE=$TMP/wsgate
LOADGEN=$BENCH/loadgen/target/release/loadgen
[ -x "$LOADGEN" ] || die "no loadgen binary at $LOADGEN"
for addr in $WS_BACKEND $PROXY_ADDR; do
    if ss -Htln "sport = :${addr##*:}" | grep -q .; then die "port ${addr##*:} is already in use"; fi
done

# ---------------------------------------------------------------- helpers
CLK_TCK=$(getconf CLK_TCK)
ticks() { local f; read -r -a f < <(sed 's/^.*) //' "/proc/$1/stat"); echo "${f[11]} ${f[12]}"; }   # utime stime
jget() { grep -o "\"$2\":[-0-9.]*" "$1" | tail -1 | cut -d: -f2; }
record() { printf '%s\t%s\t%s\t%s\n' "$ROUND" "$1" "$2" "$3" >>"$RESULTS"; }
calc() { awk "BEGIN { printf \"$1\", $2 }"; }
wait_port() {
    local i
    for i in $(seq 1 100); do
        kill -0 "$2" 2>/dev/null || return 1
        ss -Htln "sport = :${1##*:}" | grep -q . && return 0
        sleep 0.1
    done
    return 1
}
# client_run FILE CMD...: runs a loadgen client pinned to CPU 0; its user+sys CPU seconds
# (from the subshell's `times`, which then counts only that child) go to CLIENT_CPU.
client_run() {
    local f=$1; shift
    CLIENT_CPU=$( (taskset -c "$LOAD_CPU" "$@" >"$f" 2>&1 || true; times) | tail -1 | awk '{
        t = 0; for (i = 1; i <= 2; i++) { split($i, p, "m"); sub("s", "", p[2]); t += p[1] * 60 + p[2] } printf "%.2f", t }')
}

# ---------------------------------------------------------------- setup
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout "$TMP/key.pem" -out "$TMP/cert.pem" >"$OUT/openssl.log" 2>&1 \
    || die "openssl req (see $OUT/openssl.log)"
cat >"$OUT/wsgate.yaml" <<EOF
server:
  threads: 1
  pid_file: $OUT/wsgate.pid
  upgrade_sock: $OUT/wsgate_upgrade.sock
  grace_period_seconds: 0
  graceful_shutdown_timeout_seconds: 1
listeners:
  - address: $PROXY_ADDR
    tls: {cert: $TMP/cert.pem, key: $TMP/key.pem, http2: true, websocket_over_http2: true}
access_log: {path: 'off'}
upstreams:
  ws: {backends: [$WS_BACKEND], health_check: {kind: tcp, interval: 5s}}
routes:
  - {path_prefix: /ws, upstream: ws}
EOF

log "output in $OUT"
taskset -c "$LOAD_CPU" "$LOADGEN" serve-ws --addr $WS_BACKEND >"$OUT/serve-ws.log" 2>&1 &
BACKEND_PID=$!; STARTED+=("$BACKEND_PID")
wait_port $WS_BACKEND $BACKEND_PID || die "the WebSocket backend did not start"
RUST_LOG=${RUST_LOG:-warn} taskset -c "$PROXY_CPU" "$WSGATE" -c "$OUT/wsgate.yaml" >"$OUT/wsgate.log" 2>&1 &
WPID=$!; STARTED+=("$WPID")
wait_port $PROXY_ADDR $WPID || die "wsgate did not start (see $OUT/wsgate.log)"
sleep 1
URL="wss://$PROXY_ADDR/ws"
flag() { [ "$1" = h2 ] && echo --h2 || true; }

# ---------------------------------------------------------------- workloads
bulk() {   # bulk h1|h2
    local p=$1 f="$OUT/r$ROUND-bulk-$1.json" u0 s0 u1 s1 b0 b1
    read -r u0 s0 < <(ticks $WPID); b0=$(ticks $BACKEND_PID | awk '{print $1 + $2}')
    client_run "$f" timeout -k 5 600 "$LOADGEN" ws-bulk --url "$URL" $(flag "$p") --mib "$MIB" --msg-kib "$MSG_KIB" --stall "${STALL}s"
    read -r u1 s1 < <(ticks $WPID); b1=$(ticks $BACKEND_PID | awk '{print $1 + $2}')
    if ! grep -q '"stalled":false' "$f"; then
        cp "$OUT/wsgate.log" "$OUT/wsgate-at-stall.log"
        log "bulk $p: STALLED or failed: $(cat "$f")"
        log "wsgate's log (last 20 lines, all in $OUT/wsgate-at-stall.log):"; tail -20 "$OUT/wsgate.log" >&2
        die "bulk over $p did not complete"
    fi
    local t=$((u1 + s1 - u0 - s0)) msgs=$(( (MIB * 1024 + MSG_KIB - 1) / MSG_KIB )) secs
    secs=$(calc %.3f "$t / $CLK_TCK")
    record "$p" bulk_mib_s "$(jget "$f" mib_per_s)"
    record "$p" bulk_cpu_s "$secs"
    record "$p" bulk_user_s "$(calc %.3f "($u1 - $u0) / $CLK_TCK")"
    record "$p" bulk_sys_s "$(calc %.3f "($s1 - $s0) / $CLK_TCK")"
    record "$p" bulk_cpu_ms_per_mib "$(calc %.3f "$secs * 1000 / $MIB")"
    record "$p" bulk_cpu_us_per_msg "$(calc %.1f "$secs * 1e6 / $msgs")"
    record "$p" bulk_client_cpu_s "$CLIENT_CPU"
    record "$p" bulk_backend_cpu_s "$(calc %.2f "($b1 - $b0) / $CLK_TCK")"
    log "  bulk $p: $(jget "$f" mib_per_s) MiB/s in $(jget "$f" secs) s; wsgate CPU $secs s (user $(calc %.2f "($u1 - $u0) / $CLK_TCK"), sys $(calc %.2f "($s1 - $s0) / $CLK_TCK")) = $(calc %.2f "$secs * 1000 / $MIB") ms/MiB; client $CLIENT_CPU s"
}

echo_small() {   # echo_small h1|h2
    local p=$1 f="$OUT/r$ROUND-echo-$1.json" t0 t1 n
    t0=$(ticks $WPID | awk '{print $1 + $2}')
    client_run "$f" timeout -k 5 $((ECHO_SECS + 60)) "$LOADGEN" ws-echo --url "$URL" $(flag "$p") --connections 1 --size 64 --duration "${ECHO_SECS}s"
    t1=$(ticks $WPID | awk '{print $1 + $2}')
    n=$(jget "$f" msgs)
    { [ -n "$n" ] && [ "$n" -gt 0 ] && grep -q '"errors":0' "$f"; } || die "ws-echo over $p (see $f)"
    record "$p" echo_per_s "$(jget "$f" msgs_per_s)"
    record "$p" echo_p50_us "$(jget "$f" p50_us)"
    record "$p" echo_cpu_us "$(calc %.2f "($t1 - $t0) * 1e6 / $CLK_TCK / $n")"
    log "  echo $p: $(jget "$f" msgs_per_s)/s, p50 $(jget "$f" p50_us) µs; wsgate $(calc %.2f "($t1 - $t0) * 1e6 / $CLK_TCK / $n") CPU µs per echo"
}

# ---------------------------------------------------------------- run
START=$(date +%s)
for ROUND in $(seq 1 "$ROUNDS"); do
    order="h1 h2"; [ $((ROUND % 2)) = 0 ] && order="h2 h1"
    log "round $ROUND/$ROUNDS ($order)"
    for p in $order; do bulk "$p"; sleep $SETTLE; done
    if [ "$ECHO_SECS" != 0 ]; then
        for p in $order; do echo_small "$p"; sleep $SETTLE; done
    fi
done
ELAPSED=$(( $(date +%s) - START ))

# ---------------------------------------------------------------- summary
{
    echo "Run $STAMP: \`bench/h2ws.sh --rounds $ROUNDS --mib $MIB --msg-kib $MSG_KIB --echo-secs $ECHO_SECS\`, ${ELAPSED} s."
    echo "wsgate ${WSGATE_BIN:+$WSGATE_BIN, not built here; the tree was }$REV; $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(uname -r); load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
    echo
    awk -F'\t' -v rounds="$ROUNDS" -v echo_secs="$ECHO_SECS" '
        NR > 1 { v[$1, $2, $3] = $4 }
        function med(a, n,   i, j, t) {   # median of a[1..n]
            for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
            return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
        }
        function row(label, m, fmt,   r, s, a, b, ra, rb, rr, line) {
            line = "| " label
            for (r = 1; r <= rounds; r++) {
                a = v[r, "h1", m]; b = v[r, "h2", m]
                ra[r] = a; rb[r] = b; rr[r] = (a > 0) ? b / a : 0
                line = line sprintf(" | " fmt " / " fmt " (%.2f)", a, b, rr[r])
            }
            printf "%s | " fmt " | " fmt " | %.2f |\n", line, med(ra, rounds), med(rb, rounds), med(rr, rounds)
        }
        END {
            hdr = "| metric (h1 / h2 (h2/h1))"; sep = "|---"
            for (r = 1; r <= rounds; r++) { hdr = hdr " | round " r; sep = sep "|---" }
            print hdr " | h1 median | h2 median | h2/h1, median of rounds |"; print sep "|---|---|---|"
            row("bulk MiB/s", "bulk_mib_s", "%.1f")
            row("bulk: wsgate CPU ms per MiB", "bulk_cpu_ms_per_mib", "%.2f")
            row("bulk: wsgate CPU µs per 64 KiB echo", "bulk_cpu_us_per_msg", "%.0f")
            row("bulk: wsgate user s", "bulk_user_s", "%.2f")
            row("bulk: wsgate sys s", "bulk_sys_s", "%.2f")
            row("bulk: client CPU s (CPU 0)", "bulk_client_cpu_s", "%.2f")
            row("bulk: backend CPU s (CPU 0)", "bulk_backend_cpu_s", "%.2f")
            if (echo_secs != 0) {
                row("64 B echo, 1 conn: echoes/s", "echo_per_s", "%.0f")
                row("64 B echo: p50 µs", "echo_p50_us", "%.0f")
                row("64 B echo: wsgate CPU µs per echo", "echo_cpu_us", "%.1f")
            }
        }' "$RESULTS"
} | tee "$OUT/summary.md"
grep -q . "$OUT/wsgate.log" && { log "wsgate logged (warn and above):"; tail -5 "$OUT/wsgate.log" >&2; }
log "done in ${ELAPSED} s; raw results $RESULTS"

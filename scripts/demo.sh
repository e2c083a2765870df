#!/usr/bin/env bash
# Quick-start demo: demo backends + wsgate (conf/wsgate.yaml), a probe through the
# proxy, then stays in the foreground until Ctrl-C. Only the two processes started
# here are stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/ensure-deps.sh

CONFIG=conf/wsgate.yaml
if [ ! -f "$CONFIG" ]; then
    echo "demo: $CONFIG not found" >&2
    exit 1
fi

cargo build --release --bin wsgate --example demo_backend

LOG_DIR=target/demo
mkdir -p "$LOG_DIR"
BACKEND_LOG="$LOG_DIR/demo_backend.log"
WSGATE_LOG="$LOG_DIR/wsgate.log"

BACKEND_PID=""
WSGATE_PID=""
cleanup() {
    trap - EXIT INT TERM
    # wsgate: SIGINT = Pingora's fast shutdown (SIGTERM would wait out the grace
    # period, 5 min by default). Backend: SIGTERM. KILL whatever is left after 5 s.
    if [ -n "$WSGATE_PID" ]; then kill -INT "$WSGATE_PID" 2>/dev/null || true; fi
    if [ -n "$BACKEND_PID" ]; then kill -TERM "$BACKEND_PID" 2>/dev/null || true; fi
    local pid i
    for pid in $WSGATE_PID $BACKEND_PID; do
        for i in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    done
}
trap cleanup EXIT
trap 'echo; echo "demo: stopping"; exit 130' INT TERM

# wait_port PORT PID NAME LOG: poll TCP connect every 0.1 s, at most 15 s.
wait_port() {
    local port=$1 pid=$2 name=$3 log=$4 i
    for i in $(seq 1 150); do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "demo: $name exited before port $port opened; last log lines:" >&2
            tail -n 30 "$log" >&2 || true
            return 1
        fi
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "demo: $name did not open port $port within 15 s; last log lines:" >&2
    tail -n 30 "$log" >&2 || true
    return 1
}

echo "demo: starting demo backends (ws 3001, ws 3002, http 3003) -> $BACKEND_LOG"
target/release/examples/demo_backend \
    --ws 127.0.0.1:3001 --ws 127.0.0.1:3002 --http 127.0.0.1:3003 >"$BACKEND_LOG" 2>&1 &
BACKEND_PID=$!
for port in 3001 3002 3003; do
    wait_port "$port" "$BACKEND_PID" demo_backend "$BACKEND_LOG"
done

echo "demo: starting wsgate -c $CONFIG -> $WSGATE_LOG"
RUST_LOG="${RUST_LOG:-info}" target/release/wsgate -c "$CONFIG" >"$WSGATE_LOG" 2>&1 &
WSGATE_PID=$!
wait_port 8080 "$WSGATE_PID" wsgate "$WSGATE_LOG"

echo "demo: probing through wsgate"
probe_ok=0
for attempt in 1 2 3 4 5; do
    if target/release/examples/demo_backend \
        --probe-http http://127.0.0.1:8080/ --probe-ws ws://127.0.0.1:8080/websocket; then
        probe_ok=1
        break
    fi
    echo "demo: probe attempt $attempt failed; retrying" >&2
    sleep 1
done
if [ "$probe_ok" -ne 1 ]; then
    echo "demo: probe failed; last wsgate log lines:" >&2
    tail -n 30 "$WSGATE_LOG" >&2 || true
    exit 1
fi

cat <<'TXT'

wsgate is running. Try:
  curl -i http://127.0.0.1:8080/
  curl -ik https://localhost:8443/            # TLS listener from the config (-k: self-signed)
  websocat ws://127.0.0.1:8080/websocket      # or any WebSocket client, e.g.
  python3 -m websockets ws://127.0.0.1:8080/websocket
  cargo run --release --example demo_backend -- --probe-ws ws://127.0.0.1:8080/websocket

Logs: target/demo/wsgate.log, target/demo/demo_backend.log
Press Ctrl-C to stop.
TXT

# Stay in the foreground until Ctrl-C or until either process exits.
set +e
wait -n "$BACKEND_PID" "$WSGATE_PID"
status=$?
set -e
echo "demo: a background process exited (status $status); stopping" >&2
exit "$status"

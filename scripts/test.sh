#!/usr/bin/env bash
# Runs the whole test suite: the docs' links, the shape of src/ (scripts/check-structure.py:
# no import cycle, no file over 500 lines), rustfmt, clippy with warnings as errors, unit +
# integration tests (debug build), then the WebSocket
# soak at full size in a release build (10 × 1 GiB through one session, 5,000 sequential
# and 200 concurrent sessions), which a debug build would take minutes to push through,
# the connection-flood test (echo latency of 200 sessions while one client opens
# connections as fast as it can), whose timing only means something in a release build, and
# the container image test (the image holds the release binary).
# Extra arguments are passed to the first `cargo test`, e.g. scripts/test.sh --test routing
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/ensure-deps.sh
if [ "$#" -eq 0 ]; then
    python3 scripts/check-doc-links.py
    python3 scripts/check-structure.py
    cargo fmt --all --check
    cargo clippy --all-targets -- -D warnings
fi
cargo test "$@"
if [ "$#" -eq 0 ]; then
    WSGATE_STRESS_BULK_MIB=1024 WSGATE_STRESS_BULK_RUNS=10 \
        cargo test --release --test websocket_stress -- --nocapture
    # Latency under a connection flood: timing, so release only (ignored in debug builds).
    cargo test --release --test flood -- --nocapture
    # The container image holds the release binary (ignored in debug builds, which would
    # otherwise build the release tree a second time from inside a test).
    cargo test --release --test container -- --nocapture
    # A short run of every fuzz target (no sanitizer: a third of the build time); the
    # 10-minute AddressSanitizer runs are `scripts/fuzz.sh 600` (fuzz/README.md).
    FUZZ_SANITIZER=none scripts/fuzz.sh 10
fi

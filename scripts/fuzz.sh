#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for SECONDS each (default 60), one after the other,
# one process each. Usage: scripts/fuzz.sh [SECONDS]
#
# Works on a stable toolchain: cargo-fuzz passes nightly-only flags (-Zsanitizer=address,
# SanitizerCoverage), which stable rustc accepts under RUSTC_BOOTSTRAP=1. Installs
# cargo-fuzz when it is missing. FUZZ_SANITIZER=none builds without AddressSanitizer
# (faster, but then memory errors in unsafe code go unnoticed).
#
# libFuzzer's output goes to fuzz/logs/<target>.log; the script prints the final figures.
# Each target starts from fuzz/seeds/<target>/ (committed) plus fuzz/corpus/<target>/ (kept
# between runs, not committed). A crash stops that target, saves the input under
# fuzz/artifacts/<target>/ and makes the script exit 1 after the other targets ran.
# Reproduce one with: RUSTC_BOOTSTRAP=1 cargo fuzz run <target> fuzz/artifacts/<target>/crash-...
set -euo pipefail
cd "$(dirname "$0")/.."

each="${1:-60}"
case "$each" in
    '' | *[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;;
esac
sanitizer="${FUZZ_SANITIZER:-address}"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz"
    cargo install cargo-fuzz --locked --version 0.13.2
fi

start=$(date +%s)
cargo fuzz build -s "$sanitizer"
echo "fuzz: built in $(($(date +%s) - start)) s"

failed=()
mkdir -p fuzz/logs
for target in $(cargo fuzz list); do
    mkdir -p "fuzz/corpus/$target"
    args=(-max_total_time="$each" -timeout=10 -print_final_stats=1)
    if [ -f "fuzz/dicts/$target.dict" ]; then
        args+=(-dict="fuzz/dicts/$target.dict")
    fi
    log="fuzz/logs/$target.log"
    echo "fuzz: $target for ${each} s (log: $log)"
    if cargo fuzz run -s "$sanitizer" "$target" "fuzz/corpus/$target" "fuzz/seeds/$target" -- "${args[@]}" >"$log" 2>&1; then
        grep -E '^#[0-9]+[[:space:]]+DONE|^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' "$log" | sed 's/^/    /'
    else
        tail -n 60 "$log" >&2
        failed+=("$target")
    fi
done

echo "fuzz: done in $(($(date +%s) - start)) s"
if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz: FAILED: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
echo "fuzz: no crash"

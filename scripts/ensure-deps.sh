#!/usr/bin/env bash
# Installs build/test prerequisites only when missing. Uses sudo only when not root.
#
# Required (a failure is fatal): cmake (Pingora's build), the openssl CLI (self-signed
# certs in the TLS tests), python3 (scripts/check-doc-links.py), chromium (the headless
# browser of tests/browser_h2.rs), and podman with runc (scripts/image.sh builds the
# container image, tests/container.rs runs it; runc, not crun, which fails on hybrid
# cgroups: see scripts/image.sh).
# Optional here (a failure is a warning, exit 0): `promtool` and `prometheus` from Debian's
# `prometheus` package, used by tests/prometheus_scrape.rs; without them those tests fail
# under CI and print SKIPPED and pass elsewhere.
# Then, required, however the script ends: the pinned kubernetes-validate (PyPI) in a virtualenv
# under ~/.cache/wsgate (scripts/ensure-kubernetes-validate.sh), for tests/kubernetes_manifests.rs.
set -euo pipefail

# On a successful exit only (python3 is installed by then); its failure fails this script.
kubernetes_validate() { [ "$?" -ne 0 ] || "$(dirname "$0")/ensure-kubernetes-validate.sh" || exit 1; }
trap kubernetes_validate EXIT

missing=()
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v podman >/dev/null 2>&1 || missing+=(podman)
{ command -v runc >/dev/null 2>&1 || [ -x /usr/sbin/runc ]; } || missing+=(runc)  # podman looks in /usr/sbin too

optional_missing=false
{ command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; } || optional_missing=true

if [ "${#missing[@]}" -eq 0 ] && [ "$optional_missing" = false ]; then
    exit 0
fi

warn_optional() {
    echo "ensure-deps: WARNING: could not install promtool/prometheus (Debian package \`prometheus\`): $1" >&2
    echo "ensure-deps: WARNING: tests/prometheus_scrape.rs will print SKIPPED; install it by hand to run them" >&2
}

# Fatal for required packages, a warning when only the optional one is missing.
fail() {
    if [ "${#missing[@]}" -gt 0 ]; then
        echo "ensure-deps: missing ${missing[*]}; $1" >&2
        exit 1
    fi
    warn_optional "$1"
    exit 0
}

command -v apt-get >/dev/null 2>&1 || fail "apt-get is not available; please install them"

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        fail "not root and sudo not available"
    fi
fi

updated=false
if [ "${#missing[@]}" -gt 0 ]; then
    echo "ensure-deps: installing ${missing[*]}" >&2
    $SUDO apt-get update
    updated=true
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
fi

if [ "$optional_missing" = true ]; then
    echo "ensure-deps: installing prometheus (provides promtool and prometheus)" >&2
    if [ "$updated" = false ] && ! $SUDO apt-get update; then
        warn_optional "apt-get update failed"
        exit 0
    fi
    if ! $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus; then
        warn_optional "apt-get install prometheus failed"
        exit 0
    fi
    if ! { command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; }; then
        warn_optional "the package installed, but promtool/prometheus are still not on PATH"
        exit 0
    fi
fi
exit 0

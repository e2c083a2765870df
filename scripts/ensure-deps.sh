#!/usr/bin/env bash
# Installs build/test prerequisites only when missing: cmake (Pingora's build) and the
# openssl CLI (self-signed certs in the TLS tests). Uses sudo only when not root.
set -euo pipefail

missing=()
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)

if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-deps: missing ${missing[*]} and apt-get is not available; please install them" >&2
    exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "ensure-deps: missing ${missing[*]}; not root and sudo not available" >&2
        exit 1
    fi
fi

echo "ensure-deps: installing ${missing[*]}" >&2
$SUDO apt-get update
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"

#!/usr/bin/env bash
# Installs the pinned kubernetes-validate (PyPI) that tests/kubernetes_manifests.rs runs on
# deploy/kubernetes/, into a virtualenv of its own under the user's cache directory, so no
# system or user site-packages change. Required: a failure is fatal (exit 1). Idempotent: when
# the stamp of a finished install is there it only checks the stamp and exits (milliseconds).
# The schemas of every Kubernetes version it knows ship inside the package, so the test runs
# offline once this has run. Called by scripts/ensure-deps.sh.
#
#   scripts/ensure-kubernetes-validate.sh          # install if missing
#   scripts/ensure-kubernetes-validate.sh --path   # print where the tool is (installing it first)
#
# The version and the directory are repeated in tests/kubernetes_manifests.rs: change both.
set -euo pipefail

VERSION=1.37.0
# Its dependencies, pinned too (what pip chose for 1.37.0), so a new jsonschema cannot change
# what the test accepts.
DEPENDENCIES=(
    attrs==26.1.0 importlib_resources==7.1.0 jsonschema==4.26.0 jsonschema-specifications==2025.9.1
    packaging==26.4 PyYAML==6.0.4 referencing==0.37.0 rpds-py==2026.9.1 typing_extensions==4.16.0
)
dir="${XDG_CACHE_HOME:-$HOME/.cache}/wsgate/kubernetes-validate-$VERSION"
bin="$dir/bin/kubernetes-validate"
stamp="$dir/.installed"

if [ ! -f "$stamp" ] || [ ! -x "$bin" ]; then
    echo "ensure-kubernetes-validate: installing kubernetes-validate==$VERSION into $dir" >&2
    command -v python3 >/dev/null 2>&1 || { echo "ensure-kubernetes-validate: python3 is missing (scripts/ensure-deps.sh installs it)" >&2; exit 1; }
    rm -rf "$dir"
    mkdir -p "$(dirname "$dir")"
    if ! python3 -m venv "$dir" 2>/dev/null; then
        # Debian's own python3 keeps venv (and ensurepip) in a package of its own.
        rm -rf "$dir"
        SUDO=""
        [ "$(id -u)" -eq 0 ] || SUDO="sudo"
        $SUDO apt-get update
        $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y python3-venv
        python3 -m venv "$dir"
    fi
    "$dir/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
        "kubernetes-validate==$VERSION" "${DEPENDENCIES[@]}"
    installed=$("$bin" --version)
    [ "$installed" = "$VERSION" ] || { echo "ensure-kubernetes-validate: $bin says $installed, expected $VERSION" >&2; exit 1; }
    touch "$stamp"
fi
if [ "${1:-}" = "--path" ]; then
    echo "$bin"
fi

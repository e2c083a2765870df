#!/usr/bin/env bash
# Builds the wsgate container image offline, without pulling any base image: a root file
# system holding the release binary (debug info stripped), the shared libraries `ldd` lists
# for it, the CA bundle, passwd/group/nsswitch files with the non-root user 65532
# (`nonroot`, as in distroless) and the quick-start config at /etc/wsgate/wsgate.yaml, tarred
# and imported with `podman import` as `wsgate:dev`, with the Containerfile's USER,
# ENTRYPOINT, CMD, EXPOSE, STOPSIGNAL and WORKDIR. docs/image.md says what it leaves out
# compared with the Containerfile's image (which needs a registry to build).
#
#   scripts/image.sh                  # cargo build --release (a no-op when up to date), then the image
#   scripts/image.sh --no-build       # the existing target/release/wsgate as it is
#   scripts/image.sh --binary PATH    # another wsgate binary (implies --no-build)
#   scripts/image.sh --tag NAME       # another image name than wsgate:dev
#
# Podman on these machines (Debian 12's podman 4.3): the host has hybrid cgroups (the v1
# controllers under /sys/fs/cgroup, plus a cgroup2 at /sys/fs/cgroup/unified that holds the
# hugetlb controller) and no systemd as PID 1, so the options are fixed, not podman's defaults:
#   --runtime runc              crun (1.8) refuses such a host outright: "cgroups in hybrid mode
#                               not supported, drop all controllers from cgroupv2", even with
#                               --cgroups disabled; runc drives the v1 hierarchy.
#   --cgroup-manager cgroupfs   no systemd to ask for a scope: podman writes the cgroups itself.
#   --storage-driver vfs        plain copies, no overlay mount: slower to create a container (a
#                               full copy of the image, ~25 MB here) but works on any file system.
# To run the image, add explicit limits: podman's defaults (nofile and nproc of 1048576)
# are above this host's hard limits, and runc then fails with "error setting rlimit type
# 7 [6]: operation not permitted". Host networking is what the tests use (loopback only):
#   podman --storage-driver vfs --runtime runc --cgroup-manager cgroupfs run --rm \
#       --network host --ulimit nofile=20000:20000 --ulimit nproc=1024:1024 wsgate:dev
# WSGATE_PODMAN_OPTS replaces those three global options (e.g. with "" on a machine where
# podman's defaults work); tests/container.rs reads the same variable.
set -euo pipefail
cd "$(dirname "$0")/.."

tag=wsgate:dev
build=true
binary=""
while [ "$#" -gt 0 ]; do
    case "$1" in
        --no-build) build=false ;;
        --binary) binary="${2:?--binary needs a path}"; build=false; shift ;;
        --tag) tag="${2:?--tag needs a name}"; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "image.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

# Global options for every podman call; word splitting of the variable is intended.
read -r -a podman_opts <<< "${WSGATE_PODMAN_OPTS---storage-driver vfs --runtime runc --cgroup-manager cgroupfs}"
command -v podman >/dev/null 2>&1 || { echo "image.sh: podman is not installed (scripts/ensure-deps.sh installs it)" >&2; exit 1; }

if [ "$build" = true ]; then
    cargo build --release --bin wsgate
fi
binary="${binary:-${CARGO_TARGET_DIR:-target}/release/wsgate}"
[ -x "$binary" ] || { echo "image.sh: no wsgate binary at $binary (build it, or drop --no-build)" >&2; exit 1; }
ca_bundle=/etc/ssl/certs/ca-certificates.crt
[ -f "$ca_bundle" ] || { echo "image.sh: no $ca_bundle (Debian package ca-certificates)" >&2; exit 1; }

started=$(date +%s%N)
rootfs=$(mktemp -d "${TMPDIR:-/tmp}/wsgate-rootfs.XXXXXX")
trap 'rm -rf "$rootfs"' EXIT
umask 022
chmod 0755 "$rootfs"   # the image's / (mktemp made it 0700)

# The binary, without its debug info (143 MB -> ~25 MB); symbols stay, so a panic's
# backtrace still names functions.
install -d -m 0755 "$rootfs/usr/local/bin"
if command -v objcopy >/dev/null 2>&1; then
    objcopy --strip-debug "$binary" "$rootfs/usr/local/bin/wsgate"
else
    cp "$binary" "$rootfs/usr/local/bin/wsgate"
fi
chmod 0755 "$rootfs/usr/local/bin/wsgate"

# Every library the dynamic loader resolves, and the loader itself, at the path ldd names
# (the file a symlink points to, copied under the symlink's name). None for a static binary.
if ! ldd_out=$(ldd "$binary" 2>&1); then
    echo "image.sh: ldd: ${ldd_out} (a static binary: no library copied)" >&2
    ldd_out=""
fi
if grep -q "not found" <<< "$ldd_out"; then
    echo "image.sh: ldd cannot resolve every library of $binary:" >&2
    echo "$ldd_out" >&2
    exit 1
fi
libs=$(awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' <<< "$ldd_out" | sort -u)
for lib in $libs; do
    install -d -m 0755 "$rootfs$(dirname "$lib")"
    cp -L "$lib" "$rootfs$lib"
done

# /etc: users (root and distroless's nonroot 65532), name lookup, CA bundle, the config.
install -d -m 0755 "$rootfs/etc/ssl/certs" "$rootfs/etc/wsgate/tls"
install -d -m 1777 "$rootfs/tmp"
printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' \
    'nonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin' \
    'nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin' > "$rootfs/etc/passwd"
printf '%s\n' 'root:x:0:' 'nonroot:x:65532:' 'nogroup:x:65534:' > "$rootfs/etc/group"
printf '%s\n' 'passwd: files' 'group: files' 'hosts: files dns' > "$rootfs/etc/nsswitch.conf"
cp "$ca_bundle" "$rootfs/etc/ssl/certs/ca-certificates.crt"
# The quick-start config, listening on every interface (a container's 127.0.0.1 is its own);
# the same edit as the Containerfile's. The demo key is in the repository, so 0644 hides
# nothing; a real key comes from a mounted Secret.
sed -E 's/127\.0\.0\.1:(8080|8443|9100)/0.0.0.0:\1/' conf/wsgate.yaml > "$rootfs/etc/wsgate/wsgate.yaml"
install -m 0644 conf/tls/cert.pem conf/tls/key.pem "$rootfs/etc/wsgate/tls/"
chmod -R u=rwX,go=rX "$rootfs/etc"

# The image this tag named before, removed below once nothing else names it.
previous=$(podman "${podman_opts[@]}" image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
id=$(tar -C "$rootfs" --sort=name --owner=0 --group=0 --numeric-owner -c . |
    podman "${podman_opts[@]}" import \
        --quiet --message "wsgate $version, built offline by scripts/image.sh" \
        --change 'USER 65532:65532' \
        --change 'WORKDIR /' \
        --change 'ENTRYPOINT ["/usr/local/bin/wsgate"]' \
        --change 'CMD ["-c", "/etc/wsgate/wsgate.yaml"]' \
        --change 'EXPOSE 8080/tcp' --change 'EXPOSE 8443/tcp' --change 'EXPOSE 9100/tcp' \
        --change 'STOPSIGNAL SIGTERM' \
        --change 'LABEL org.opencontainers.image.title=wsgate' \
        --change 'LABEL org.opencontainers.image.description=HTTP and WebSocket reverse proxy on Pingora' \
        --change 'LABEL org.opencontainers.image.licenses=Apache-2.0' \
        --change "LABEL org.opencontainers.image.version=$version" \
        - "$tag")
id=${id#sha256:}
if [ -n "$previous" ] && [ "$previous" != "$id" ] &&
    [ -z "$(podman "${podman_opts[@]}" image inspect --format '{{join .RepoTags ","}}' "$previous" 2>/dev/null)" ]; then
    podman "${podman_opts[@]}" rmi "$previous" >/dev/null 2>&1 || true   # a container may still use it
fi
elapsed_ms=$((($(date +%s%N) - started) / 1000000))
size=$(podman "${podman_opts[@]}" image inspect --format '{{.Size}}' "$tag")
echo "image.sh: $tag ${id:0:12}: $((size / 1024 / 1024)) MiB ($size bytes), built in $((elapsed_ms / 1000)).$(printf '%03d' $((elapsed_ms % 1000))) s"

#!/usr/bin/env bash
# bench_oci_import.sh CORPUS_V1 WORK: `bootree switch` of the corpus as an OCI image, time and peak RSS.
#
# Builds, once, a plain OCI image of CORPUS_V1 with umoci (the tree copied into a bundle, /usr/etc
# moved back to /etc as an image has it; one gzip layer) and pushes it with skopeo to a
# docker-registry on a free loopback port. Then, in fresh directory sysroots, it runs
# `bootree switch --stateroot=bench IMAGE` under /usr/bin/time for both `oci:WORK/oci:v1`
# (read in place) and `docker://127.0.0.1:PORT/bench/corpus:v1`, and prints wall time, CPU time
# and peak RSS. Beside it, for scale: `skopeo copy` of the image to an `oci:` dir plus
# `ostree commit` of its unpacked tree (the work a user would script without bootree).
#
# Env: BOOTREE (default bootree), OSTREE (default ostree), REPS (default 1). Must run as root.
set -euo pipefail
CORPUS=${1:?usage: bench_oci_import.sh CORPUS_V1 WORK}
WORK=${2:?usage: bench_oci_import.sh CORPUS_V1 WORK}
BOOTREE=${BOOTREE:-bootree}
OSTREE=${OSTREE:-ostree}
REPS=${REPS:-1}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)

if [ ! -e "$WORK/oci/index.json" ]; then
    rm -rf "$WORK/oci" "$WORK/bundle"
    umoci init --layout "$WORK/oci"
    umoci new --image "$WORK/oci:v1"
    umoci config --image "$WORK/oci:v1" --os linux --architecture amd64 --config.label containers.bootc=1 \
        --config.label org.opencontainers.image.version=v1
    umoci unpack --image "$WORK/oci:v1" "$WORK/bundle"
    cp -a "$CORPUS/." "$WORK/bundle/rootfs/"
    if [ -d "$WORK/bundle/rootfs/usr/etc" ] && [ ! -e "$WORK/bundle/rootfs/etc" ]; then
        mv "$WORK/bundle/rootfs/usr/etc" "$WORK/bundle/rootfs/etc"
    fi
    umoci repack --image "$WORK/oci:v1" "$WORK/bundle"
    rm -rf "$WORK/bundle"
fi

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$WORK/registry"
cat > "$WORK/registry.yml" <<EOF
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $WORK/registry
http:
  addr: 127.0.0.1:$port
EOF
docker-registry serve "$WORK/registry.yml" >/dev/null 2>&1 &
registry_pid=$!
trap 'kill $registry_pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 1)" 2>/dev/null && break
    sleep 0.1
done
skopeo copy -q --dest-tls-verify=false "oci:$WORK/oci:v1" "docker://127.0.0.1:$port/bench/corpus:v1"
printf '[[registry]]\nlocation = "127.0.0.1:%s"\ninsecure = true\n' "$port" > "$WORK/registries.conf"
export CONTAINERS_REGISTRIES_CONF=$WORK/registries.conf
export OSTREE_SYSROOT_DEBUG=mutable-deployments

measure() {  # measure NAME CMD...: one row (wall s, user s, sys s, peak RSS MB)
    local name=$1
    shift
    sync
    /usr/bin/time -f '%e %U %S %M' -o "$WORK/time.out" "$@" >/dev/null
    read -r wall user sys rss < "$WORK/time.out"
    printf '| %s | %s | %s | %s | %d |\n' "$name" "$wall" "$user" "$sys" "$((rss / 1024))"
}

fresh_sysroot() {
    if [ -d "$WORK/sysroot" ]; then
        find "$WORK/sysroot" -xdev -type d -exec chattr -i {} + 2>/dev/null || true
        rm -rf "$WORK/sysroot"
    fi
    $BOOTREE admin init-fs "$WORK/sysroot" >/dev/null
}

printf '| run | wall s | user s | sys s | peak RSS MB |\n|---|---:|---:|---:|---:|\n'
for _ in $(seq "$REPS"); do
    fresh_sysroot
    measure "bootree switch oci:" $BOOTREE switch --sysroot="$WORK/sysroot" --stateroot=bench "oci:$WORK/oci:v1"
    fresh_sysroot
    measure "bootree switch docker://" $BOOTREE switch --sysroot="$WORK/sysroot" --stateroot=bench \
        "127.0.0.1:$port/bench/corpus:v1"
    rm -rf "$WORK/copy" "$WORK/unpacked" "$WORK/ostree-repo"
    measure "skopeo copy docker:// -> oci:" skopeo copy -q --src-tls-verify=false \
        "docker://127.0.0.1:$port/bench/corpus:v1" "oci:$WORK/copy:v1"
    measure "umoci unpack (for ostree)" umoci unpack --image "$WORK/copy:v1" "$WORK/unpacked"
    $OSTREE --repo="$WORK/ostree-repo" init --mode=bare >/dev/null
    measure "ostree commit of the tree" $OSTREE --repo="$WORK/ostree-repo" commit --branch=corpus \
        --tree=dir="$WORK/unpacked/rootfs"
done

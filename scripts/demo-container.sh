#!/usr/bin/env bash
# Demo step (issue 11): the container workflow, as bootc users run it.
#
# Publishes the demo's v1 and v2 commits as bootable OCI images (`bootree container
# encapsulate`, chunked by package) to a docker-registry it starts on 127.0.0.1, then on a fresh
# directory sysroot: `bootree switch` to the image (the first deployment), `upgrade` after v2 is
# pushed under the same tag with a delta from v1 beside it (`--delta-from`: an OCI artifact
# referring to v2; the upgrade fetches the delta instead of the changed layers, both counted in
# the registry's log), `status`, and `rollback`. Called by scripts/demo.sh with DEMO_DIR, BOOTREE, REPO and REF set.
# Skips with a message when docker-registry is missing (CI installs it).
set -euo pipefail
DEMO_DIR=${DEMO_DIR:-demo-work}
BOOTREE=${BOOTREE:-bootree}
REPO=${REPO:?REPO (the demo's archive repository) is required}
REF=${REF:?REF (the demo's branch) is required}
BOLD=$(tput bold 2>/dev/null || true)
PLAIN=$(tput sgr0 2>/dev/null || true)

if ! command -v docker-registry >/dev/null; then
    echo "skipped: docker-registry is not installed (apt-get install docker-registry)"
    exit 0
fi

W=$(mkdir -p "$DEMO_DIR/container" && cd "$DEMO_DIR/container" && pwd)
SYSROOT=$W/sysroot
REGISTRY_PID=
cleanup() {
    [ -z "$REGISTRY_PID" ] || kill "$REGISTRY_PID" 2>/dev/null || true
}
trap cleanup EXIT

run() {    # run ARGS...: show the bootree command line, then run it
    printf '%s$ bootree %s%s\n' "$BOLD" "$*" "$PLAIN"
    "$BOOTREE" "$@"
}

# --- a registry of our own on a free loopback port (never the packaged service) ----------------
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
rm -rf "$W/registry"
mkdir -p "$W/registry"
cat > "$W/registry/config.yml" <<EOF
version: 0.1
log:
  level: info
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: $W/registry/data
http:
  addr: 127.0.0.1:$PORT
EOF
docker-registry serve "$W/registry/config.yml" > "$W/registry/log" 2>&1 &
REGISTRY_PID=$!
for _ in $(seq 100); do
    (echo > "/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    sleep 0.1
done
IMAGE=127.0.0.1:$PORT/demo/os:stable
# Plain HTTP is allowed only for registries that registries.conf marks insecure, as with podman.
printf '[[registry]]\nlocation = "127.0.0.1:%s"\ninsecure = true\n' "$PORT" > "$W/registries.conf"
export CONTAINERS_REGISTRIES_CONF=$W/registries.conf
echo "registry at 127.0.0.1:$PORT (log: $W/registry/log; insecure in $W/registries.conf)"

# blob_bytes: bytes of blob bodies the registry has sent to bootree so far
blob_bytes() {
    { grep -o '"GET /v2/[^ ]*/blobs/sha256:[0-9a-f]* HTTP/[0-9.]*" 20[06] [0-9]*' "$W/registry/log" || true; } \
        | awk '{s += $NF} END {print s + 0}'
}

# --- publish v1, switch to it ----------------------------------------------------------------------
run --repo="$REPO" container encapsulate --max-layers=8 "$REF^" "docker://$IMAGE"
if [ -d "$SYSROOT/ostree/deploy" ]; then
    find "$SYSROOT/ostree/deploy" -mindepth 3 -maxdepth 3 -type d -exec chattr -i {} + 2>/dev/null || true
fi
rm -rf "$SYSROOT"
mkdir -p "$SYSROOT"
run admin init-fs "$SYSROOT"
before=$(blob_bytes)
run switch --sysroot="$SYSROOT" --stateroot=demo "docker://$IMAGE"
v1_bytes=$(( $(blob_bytes) - before ))
# `admin boot` plays the bootloader and the initramfs (a private mount namespace): the machine
# now runs the image's first deployment, as after `bootc install` and a reboot.
run admin boot --sysroot="$SYSROOT"
run status --sysroot="$SYSROOT" --booted

# --- publish v2 under the same tag and a delta from v1 beside it; upgrade through the delta --------
run --repo="$REPO" container encapsulate --max-layers=8 --delta-from="docker://$IMAGE" "$REF" "docker://$IMAGE"
run upgrade --sysroot="$SYSROOT" --check
layers_bytes=$("$BOOTREE" upgrade --sysroot="$SYSROOT" --check --json \
    | python3 -c 'import json, sys; print(sum(x["size"] for x in json.load(sys.stdin)["newLayers"]))')
before=$(blob_bytes)
run upgrade --sysroot="$SYSROOT"
v2_bytes=$(( $(blob_bytes) - before ))
echo "bytes sent by the registry: v1 ${v1_bytes} (first install); v1 -> v2 upgrade ${v2_bytes} through the delta" \
     "(the changed layers: ${layers_bytes}; saved $(( layers_bytes - v2_bytes )))"
run admin boot --sysroot="$SYSROOT"   # the reboot: the staged deployment is finalized, v2 boots
printf '%s$ bootree status --sysroot=%s --format=json%s  (saved in %s; its digests:)\n' "$BOLD" "$SYSROOT" "$PLAIN" "$W/status.json"
"$BOOTREE" status --sysroot="$SYSROOT" --format=json > "$W/status.json"
python3 - "$W/status.json" <<'PY'
import json, sys
status = json.load(open(sys.argv[1]))["status"]
for slot in ("booted", "staged", "rollback"):
    entry = status.get(slot)
    print(f"  {slot:9} {entry['image']['imageDigest'] if entry and entry.get('image') else '-'}")
PY

# --- roll back ------------------------------------------------------------------------------------
run rollback --sysroot="$SYSROOT"
run admin boot --sysroot="$SYSROOT"
run status --sysroot="$SYSROOT"

#!/usr/bin/env bash
# bootree demo (run by `make demo`): build a tiny OS tree, commit two versions into an archive
# repository, inspect them, verify the repository and check the new version out.
#
# Uses only the `bootree` CLI, whose commands and options mirror ostree's, so every line below
# also works with `ostree` in place of `bootree` (BOOTREE=ostree scripts/demo.sh).
#
#   DEMO_DIR   work directory (default ./demo-work); only the subdirectories listed under
#              "Layout" are (re)created, nothing else in it is touched
#   BOOTREE    the CLI to run (default: bootree from PATH)
#
# Layout under $DEMO_DIR:  tree-v1/ tree-v2/ (sources)  repo/ (archive repo)  checkout-v2/
#                          sysroot/ (a directory sysroot: deployments, /boot, its own repo)
#                          trusted.gpg.d/ (the publisher's public GPG key, what clients trust)
# The publisher's secret key lives in a temporary GnuPG home, removed at exit: commits and the
# summary are signed, and the sysroot pulls with gpg-verify and gpg-verify-summary on.
#
# Steps are functions called in order at the bottom; later issues add their own after
# step_checkout (deploy into a sysroot, serve the repo over HTTP, update, roll back), then
# scripts/demo-container.sh (the same update as OCI images in a registry) and
# scripts/demo-bootchain.sh (a real boot chain under qemu).
set -euo pipefail
export LC_ALL=C

DEMO_DIR=${DEMO_DIR:-demo-work}
BOOTREE=${BOOTREE:-bootree}
REF=demo/x86_64/stable

mkdir -p "$DEMO_DIR"
DEMO_DIR=$(cd "$DEMO_DIR" && pwd)
REPO=$DEMO_DIR/repo
V1=$DEMO_DIR/tree-v1
V2=$DEMO_DIR/tree-v2
CHECKOUT=$DEMO_DIR/checkout-v2
SYSROOT=$DEMO_DIR/sysroot
SERVER_PID=
GNUPG_TMP=
cleanup() {
    if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; fi
    if [ -n "$GNUPG_TMP" ]; then
        gpgconf --homedir "$GNUPG_TMP" --kill all 2>/dev/null || true
        rm -rf "$GNUPG_TMP"
    fi
}
trap cleanup EXIT

if [ -t 1 ]; then BOLD=$'\033[1m' PLAIN=$'\033[0m'; else BOLD='' PLAIN=''; fi
step_no=0
step() {   # step TITLE: print a numbered heading
    step_no=$((step_no + 1))
    printf '\n%s== %d. %s%s\n' "$BOLD" "$step_no" "$*" "$PLAIN"
}
run() {    # run ARGS...: show the bootree command line, then run it
    printf '$ bootree'
    printf ' %q' "$@"
    printf '\n'
    "$BOOTREE" "$@"
}

# write PATH MODE CONTENT: create a file (and its parents) with the given mode
write() {
    mkdir -p "$(dirname "$1")"
    printf '%s' "$3" > "$1"
    chmod "$2" "$1"
}

# add_shell ROOT: copy the host's dash and the libraries it needs, so deployments can run commands
add_shell() {
    local root=$1 sh lib dest
    sh=$(command -v dash || command -v sh)
    mkdir -p "$root/usr/bin"
    cp "$sh" "$root/usr/bin/sh"
    for lib in $(ldd "$sh" | grep -o '/[^ ]*'); do
        dest=$root/usr${lib#/usr}
        mkdir -p "$(dirname "$dest")"
        cp -L "$lib" "$dest"
    done
    [ -e "$root/lib64" ] || ln -s usr/lib64 "$root/lib64"
}

step_build_trees() {
    step "Build a small OS tree (v1) and an update of it (v2)"
    command -v "$BOOTREE" >/dev/null || { echo "error: '$BOOTREE' not found (run 'make demo')" >&2; exit 1; }
    rm -rf "$V1" "$V2" "$REPO" "$CHECKOUT"

    # ostree layout: merged /usr, default config in /usr/etc, an empty /var, kernel in /usr/lib/modules
    write "$V1/usr/lib/os-release" 0644 $'NAME="Demo OS"\nID=demo\nVERSION_ID=1.0\n'
    write "$V1/usr/etc/hostname" 0644 $'demo\n'
    write "$V1/usr/etc/motd" 0644 $'Welcome to Demo OS 1.0\n'
    write "$V1/usr/bin/hello" 0755 $'#!/bin/sh\necho "hello from Demo OS"\n'
    write "$V1/usr/bin/greet" 0755 $'#!/bin/sh\necho "greetings, $1"\n'
    write "$V1/usr/share/doc/demo/README" 0644 $'Demo OS documentation.\n'
    write "$V1/usr/lib/modules/6.1.0-1-amd64/vmlinuz" 0644 "fake kernel 6.1.0-1"
    head -c 65536 /dev/zero | tr '\0' 'k' >> "$V1/usr/lib/modules/6.1.0-1-amd64/vmlinuz"
    write "$V1/usr/sbin/secret-tool" 4755 $'#!/bin/sh\nid -u\n'
    ln -s ../lib/os-release "$V1/usr/etc/os-release"
    ln -s usr/bin "$V1/bin"
    ln -s usr/lib "$V1/lib"
    mkdir -p "$V1/var" "$V1/usr/share/empty" "$V1/sysroot" "$V1/proc" "$V1/dev" "$V1/run" "$V1/tmp"
    add_shell "$V1"

    # v2: a version bump, one edited file, one added, one removed, a new kernel
    cp -a "$V1" "$V2"
    write "$V2/usr/lib/os-release" 0644 $'NAME="Demo OS"\nID=demo\nVERSION_ID=2.0\n'
    write "$V2/usr/etc/motd" 0644 $'Welcome to Demo OS 2.0\n'
    write "$V2/usr/bin/update-notes" 0755 $'#!/bin/sh\necho "2.0: a new kernel and update-notes"\n'
    rm "$V2/usr/bin/greet"
    rm -r "$V2/usr/lib/modules/6.1.0-1-amd64"
    write "$V2/usr/lib/modules/6.1.0-2-amd64/vmlinuz" 0644 "fake kernel 6.1.0-2"
    head -c 65536 /dev/zero | tr '\0' 'K' >> "$V2/usr/lib/modules/6.1.0-2-amd64/vmlinuz"
    # a 256 KiB library that does not compress, patched in two places: what static deltas are for
    head -c 262144 /dev/urandom > "$V1/usr/lib/libdemo.so.1"
    cp "$V1/usr/lib/libdemo.so.1" "$V2/usr/lib/libdemo.so.1"
    printf 'PATCHED-2.0' | dd of="$V2/usr/lib/libdemo.so.1" bs=1 seek=4096 conv=notrunc status=none
    printf 'PATCHED-2.0' | dd of="$V2/usr/lib/libdemo.so.1" bs=1 seek=200000 conv=notrunc status=none
    echo "v1: $(find "$V1" | wc -l) paths; v2: $(find "$V2" | wc -l) paths (in $DEMO_DIR)"
}

step_init() {
    step "Create an archive repository (the format served over HTTP)"
    run --repo="$REPO" init --mode=archive
}

step_keys() {
    step "Make the publisher's signing key (GnuPG); clients will trust only its public half"
    command -v gpg >/dev/null 2>&1 || { echo "error: the demo signs its updates with GnuPG: install gnupg" >&2; exit 1; }
    GNUPG_TMP=$(mktemp -d /tmp/bootree-demo-gnupg.XXXXXX)
    echo "\$ gpg --homedir \$GNUPG_TMP --batch --passphrase '' --quick-gen-key 'Demo OS publisher' ed25519 sign never"
    gpg --homedir "$GNUPG_TMP" --batch --passphrase '' \
        --quick-gen-key 'Demo OS publisher <publisher@demo.invalid>' ed25519 sign never 2>/dev/null
    KEYID=$(gpg --homedir "$GNUPG_TMP" --with-colons --list-secret-keys 2>/dev/null | awk -F: '/^fpr:/ {print $10; exit}')
    rm -rf "$DEMO_DIR/trusted.gpg.d"
    mkdir -p "$DEMO_DIR/trusted.gpg.d"
    gpg --homedir "$GNUPG_TMP" --export "$KEYID" > "$DEMO_DIR/trusted.gpg.d/publisher.gpg"
    echo "signing key $KEYID; its public key: trusted.gpg.d/publisher.gpg"
    SIGN=(--gpg-sign="$KEYID" --gpg-homedir="$GNUPG_TMP")
}

step_commit() {
    step "Commit v1, then v2 on top of it, each signed"
    run --repo="$REPO" commit -b "$REF" -s "Demo OS 1.0" --add-metadata-string=version=1.0 --tree=dir="$V1" "${SIGN[@]}"
    run --repo="$REPO" commit -b "$REF" -s "Demo OS 2.0" --add-metadata-string=version=2.0 --tree=dir="$V2" "${SIGN[@]}"
    run --repo="$REPO" refs
    run --repo="$REPO" rev-parse "$REF"
}

step_inspect() {
    step "Inspect: history, what changed, contents"
    run --repo="$REPO" log "$REF"
    run --repo="$REPO" diff "$REF^" "$REF"
    run --repo="$REPO" ls "$REF" /usr/bin
    run --repo="$REPO" cat "$REF" /usr/lib/os-release
    run --repo="$REPO" show --gpg-homedir="$DEMO_DIR/trusted.gpg.d" "$REF"
}

step_fsck() {
    step "Verify every object in the repository"
    run --repo="$REPO" fsck
}

step_checkout() {
    step "Check v2 out and compare it with its source tree"
    run --repo="$REPO" checkout -U "$REF" "$CHECKOUT"
    if diff -r --no-dereference "$V2" "$CHECKOUT" >/dev/null; then
        echo "checkout-v2/ has the same files, symlinks and contents as tree-v2/"
    else
        echo "error: checkout-v2/ differs from tree-v2/:" >&2
        diff -r --no-dereference "$V2" "$CHECKOUT" >&2 || true
        exit 1
    fi
}


# --- deploy, update over HTTP, roll back (needs root: a sysroot's repo keeps real owners) ---

# The demo OS has only a shell: `show FILE` prints a file with shell builtins.
SHOW='show() { while IFS= read -r l || [ -n "$l" ]; do printf "%s\n" "$l"; done < "$1"; }; '

step_serve() {
    step "Static deltas v1 -> v2 (ostree's format and bootree's own), then serve over HTTP, summary signed"
    run --repo="$REPO" static-delta generate --from="$REF^" --to="$REF"
    run --repo="$REPO" static-delta generate --format=bootree --from="$REF^" --to="$REF"
    run --repo="$REPO" static-delta list
    run --repo="$REPO" summary -u "${SIGN[@]}"
    "$BOOTREE" --repo="$REPO" serve --port=0 > "$DEMO_DIR/serve.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 50); do
        URL=$(grep -o 'http://[^ ]*' "$DEMO_DIR/serve.log" || true)
        [ -n "$URL" ] && break
        sleep 0.1
    done
    [ -n "$URL" ] || { echo "error: the server did not start:" >&2; cat "$DEMO_DIR/serve.log" >&2; exit 1; }
    echo "serving $REPO at $URL"
}

step_deploy_v1() {
    step "Create a sysroot, trust the publisher's key, pull v1 over HTTP (verified) and deploy it"
    # Deployment roots are immutable (chattr +i, as ostree makes them): unlock before deleting.
    if [ -d "$SYSROOT/ostree/deploy" ]; then
        find "$SYSROOT/ostree/deploy" -mindepth 3 -maxdepth 3 -type d -exec chattr -i {} + 2>/dev/null || true
    fi
    rm -rf "$SYSROOT"
    mkdir -p "$SYSROOT"
    V1_COMMIT=$("$BOOTREE" --repo="$REPO" rev-parse "$REF^")
    run admin init-fs "$SYSROOT"
    run admin os-init --sysroot="$SYSROOT" demo
    run remote add --repo="$SYSROOT/ostree/repo" --set=gpg-verify=true --set=gpg-verify-summary=true origin "$URL"
    run remote gpg-import --repo="$SYSROOT/ostree/repo" origin -k "$DEMO_DIR/trusted.gpg.d/publisher.gpg"
    run pull --repo="$SYSROOT/ostree/repo" origin "$REF@$V1_COMMIT"
    run admin deploy --sysroot="$SYSROOT" --os=demo --karg=root=LABEL=root "origin:$REF"
    run admin status --sysroot="$SYSROOT"
}

step_boot_v1() {
    step "Boot v1 (a private mount namespace plays the bootloader), write to /var and /etc"
    run admin boot --sysroot="$SYSROOT" -- /usr/bin/sh -c "$SHOW"'show /etc/motd;
        echo "written while v1 was booted" > /var/demo-note; echo "demo-box" > /etc/hostname;
        (echo x > /usr/bin/x) 2>/dev/null || echo "/usr is read-only, as it should be"'
}

step_update() {
    step "Update: pull v2 over HTTP through the static delta, stage it, finalize at shutdown"
    # What the same update costs without a delta (a scratch copy of the device's repository):
    rm -rf "$DEMO_DIR/no-delta-repo"
    cp -a "$SYSROOT/ostree/repo" "$DEMO_DIR/no-delta-repo"
    run pull --repo="$DEMO_DIR/no-delta-repo" --disable-static-deltas origin "$REF"
    run pull --repo="$SYSROOT/ostree/repo" origin "$REF"
    echo "(the first pull fetched the missing objects; the second, the real update, fetched the delta)"
    run admin deploy --sysroot="$SYSROOT" --os=demo --stage "origin:$REF"
    run admin status --sysroot="$SYSROOT"
    run admin finalize-staged --sysroot="$SYSROOT"
    run admin boot --sysroot="$SYSROOT" -- /usr/bin/sh -c "$SHOW"'show /etc/motd;
        echo "/var kept: $(show /var/demo-note)"; echo "/etc kept: $(show /etc/hostname)"'
    run admin status --sysroot="$SYSROOT"
}

step_rollback() {
    step "Roll back to v1 and boot it again"
    run admin rollback --sysroot="$SYSROOT"
    run admin boot --sysroot="$SYSROOT" -- /usr/bin/sh -c "$SHOW"'show /etc/motd; show /var/demo-note'
    run admin status --sysroot="$SYSROOT"
    kill "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
}

step_build_trees
step_keys
step_init
step_commit
step_inspect
step_fsck
step_checkout
if [ "$(id -u)" -eq 0 ]; then
    step_serve
    step_deploy_v1
    step_boot_v1
    step_update
    step_rollback
    step "Container workflow (bootc's verbs): publish v1 and v2 to a registry, switch, upgrade, status, rollback"
    DEMO_DIR="$DEMO_DIR" BOOTREE="$BOOTREE" REPO="$REPO" REF="$REF" bash "$(dirname "${BASH_SOURCE[0]}")/demo-container.sh"
else
    step "Deploy, update over HTTP, roll back: skipped (needs root for the sysroot; run 'sudo make demo')"
fi

# --- optional final step (issue 5): a real boot chain under qemu; skips with a message without it --
step "Boot chain: install to a disk image, boot counting, failed health check, automatic rollback"
DEMO_DIR="$DEMO_DIR" BOOTREE="$BOOTREE" bash "$(dirname "${BASH_SOURCE[0]}")/demo-bootchain.sh"
printf '\n%sdemo finished%s: repository in %s, sysroot in %s\n' "$BOLD" "$PLAIN" "$REPO" "$SYSROOT"

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
#
# Steps are functions called in order at the bottom; later issues add their own after
# step_checkout (deploy into a sysroot, serve the repo over HTTP, update, roll back).
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
    mkdir -p "$V1/var" "$V1/usr/share/empty"

    # v2: a version bump, one edited file, one added, one removed, a new kernel
    cp -a "$V1" "$V2"
    write "$V2/usr/lib/os-release" 0644 $'NAME="Demo OS"\nID=demo\nVERSION_ID=2.0\n'
    write "$V2/usr/etc/motd" 0644 $'Welcome to Demo OS 2.0\n'
    write "$V2/usr/bin/update-notes" 0755 $'#!/bin/sh\necho "2.0: a new kernel and update-notes"\n'
    rm "$V2/usr/bin/greet"
    rm -r "$V2/usr/lib/modules/6.1.0-1-amd64"
    write "$V2/usr/lib/modules/6.1.0-2-amd64/vmlinuz" 0644 "fake kernel 6.1.0-2"
    head -c 65536 /dev/zero | tr '\0' 'K' >> "$V2/usr/lib/modules/6.1.0-2-amd64/vmlinuz"
    echo "v1: $(find "$V1" | wc -l) paths; v2: $(find "$V2" | wc -l) paths (in $DEMO_DIR)"
}

step_init() {
    step "Create an archive repository (the format served over HTTP)"
    run --repo="$REPO" init --mode=archive
}

step_commit() {
    step "Commit v1, then v2 on top of it"
    run --repo="$REPO" commit -b "$REF" -s "Demo OS 1.0" --add-metadata-string=version=1.0 --tree=dir="$V1"
    run --repo="$REPO" commit -b "$REF" -s "Demo OS 2.0" --add-metadata-string=version=2.0 --tree=dir="$V2"
    run --repo="$REPO" refs
    run --repo="$REPO" rev-parse "$REF"
}

step_inspect() {
    step "Inspect: history, what changed, contents"
    run --repo="$REPO" log "$REF"
    run --repo="$REPO" diff "$REF^" "$REF"
    run --repo="$REPO" ls "$REF" /usr/bin
    run --repo="$REPO" cat "$REF" /usr/lib/os-release
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

# --- later steps (other issues): deploy into a sysroot, update over HTTP, roll back ----------

step_build_trees
step_init
step_commit
step_inspect
step_fsck
step_checkout
printf '\n%sdemo finished%s: repository in %s, checkout in %s\n' "$BOLD" "$PLAIN" "$REPO" "$CHECKOUT"

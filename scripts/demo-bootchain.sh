#!/usr/bin/env bash
# Optional last step of the demo (issue 5): a real boot chain with automatic rollback, under qemu.
#
# Builds a small real OS (Debian cloud kernel, busybox, Python and bootree, see
# tests/integration/osimage.py), commits v1 (healthy) and v2 (its required health check fails),
# runs `bootree install to-disk` and boots the disk image with OVMF → systemd-boot → bootree's
# initramfs → the deployment, where `bootree health run` assesses each boot:
#   boot 1: v1 (entry +1) passes, is marked good, and deploys v2 (its entry gets +1 try)
#   boot 2: v2 fails its check, reboots without blessing (its entry is now +0-1: bad)
#   boot 3: systemd-boot falls back to v1 by itself; `bootree admin status` there says so.
# Skips with a message when qemu, OVMF, systemd-boot, busybox-static, mtools, dosfstools or gdisk
# are missing. Each boot takes 20-60 s without KVM. Work dir: $DEMO_DIR/bootchain.
set -euo pipefail
DEMO_DIR=${DEMO_DIR:-demo-work}
BOOTREE=${BOOTREE:-bootree}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PY=${PYTHON:-python3}
W=$(mkdir -p "$DEMO_DIR/bootchain" && cd "$DEMO_DIR/bootchain" && pwd)
export MTOOLS_SKIP_CHECK=1

missing=$("$PY" -c "import sys; sys.path.insert(0, '$HERE/../tests/integration'); import osimage; print(' '.join(osimage.missing_tools()))")
if [ -n "$missing" ]; then
    echo "skipping the boot chain demo: missing $missing"
    echo "(Debian: apt-get install qemu-system-x86 ovmf systemd-boot-efi busybox-static mtools dosfstools gdisk)"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "skipping the boot chain demo: building the test OS image needs root (file ownership, chroot)"
    exit 0
fi

show() { printf '$ %s\n' "$*"; "$@"; }
echo "building the OS trees (Debian packages cached in ~/.cache/bootree-test) ..."
"$PY" "$HERE/../tests/integration/osimage.py" "$W/tree-v1" 1 ok >/dev/null
"$PY" "$HERE/../tests/integration/osimage.py" "$W/tree-v2" 2 fail >/dev/null
rm -rf "$W/repo"
show "$BOOTREE" --repo="$W/repo" init --mode=archive
show "$BOOTREE" --repo="$W/repo" commit -b os/stable -s v1 --add-metadata-string=version=1 --tree=dir="$W/tree-v1" >/dev/null
show "$BOOTREE" --repo="$W/repo" commit -b os/v2 -s v2 --add-metadata-string=version=2 --tree=dir="$W/tree-v2" >/dev/null
show "$BOOTREE" --repo="$W/repo" install to-disk os/stable --disk="$W/disk.img" --karg=console=ttyS0 --karg=quiet --karg=no_timer_check \
    --boot-counting-tries=1 --extra-ref=os/v2
OFF=$(( $(sgdisk -i 1 "$W/disk.img" | awk '/First sector/{print $3}') * 512 ))
[ "$OFF" -gt 0 ] || { echo "error: no ESP in $W/disk.img" >&2; exit 1; }
entries() { mdir -b -i "$W/disk.img@@$OFF" ::/loader/entries | sed 's|.*/||; s/-\([0-9a-f]\{8\}\)[0-9a-f]\{56\}\./-\1…./' | tr '\n' ' '; }
cmd() { printf '%s\n' "$1" > "$W/cmd"; mmd -i "$W/disk.img@@$OFF" ::/bootree-test 2>/dev/null || true
        mcopy -o -i "$W/disk.img@@$OFF" "$W/cmd" ::/bootree-test/cmd; }
boot() {
    cp /usr/share/OVMF/OVMF_VARS_4M.fd "$W/vars.fd"
    local t0=$SECONDS
    timeout 300 qemu-system-x86_64 -machine q35 -m 768 -nographic -no-reboot -nic none -accel tcg,tb-size=512 \
        -drive if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd \
        -drive if=pflash,format=raw,unit=1,file="$W/vars.fd" -drive file="$W/disk.img",format=raw,if=virtio \
        > "$W/boot$1.log" 2>&1 || true
    echo "--- boot $1 ($((SECONDS - t0)) s), serial console (filtered):"
    tr -d '\r' < "$W/boot$1.log" | sed 's/\x1b\[[0-9;?]*[A-Za-z=]//g' | grep -a -v -E '^(BdsDxe|\[ *[0-9.]+\])|^\s*$' \
        | sed -n '/BOOTREE-TEST: booted/,$p' | sed 's/^/    /'
    echo "    ESP entries now: $(entries)"
}
echo "ESP entries: $(entries)"
cmd "bootree admin deploy os/v2"
boot 1
cmd ""
boot 2
cmd "bootree admin status"
boot 3
grep -aq "BOOTREE-TEST: booted uptime=[0-9.]* version=1" "$W/boot3.log" && grep -aq "Automatic rollback" "$W/boot3.log" \
    && echo "boot chain demo: v2 failed its health check, the machine fell back to v1 and says so"

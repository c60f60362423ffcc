"""Trees and in-VM scripts for the composefs + fs-verity boot test (test_bootchain.test_composefs_verity).

The scripts run inside the test OS (busybox sh, the OS's python3 and bootree) from the command
file the host leaves on the ESP; what they find comes back over the serial log as
``CFS-<WHAT> ...`` lines that the test parses.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import osimage

from bootree.install.initramfs import build_initramfs

#: A file only the tamper step reads: its object is swapped before the first open in that boot.
TAMPER_TARGET = "usr/share/bootree-test/tamper-target"
TAMPER_CONTENT = b"this file is read once, after its object was swapped\n"
FRESH_CONTENT = b"an object written inside the VM\n"


def keygen(path: Path) -> str:
    """An ed25519 key pair (``path``, ``path.pub``) made by ``bootree sign-keygen``; the public key."""
    out = subprocess.run([sys.executable, "-m", "bootree", "sign-keygen", str(path)], check=True,
                         capture_output=True, text=True).stdout
    return out.strip()


def signed_tree(base: Path, dest: Path, version: int, trusted_key: str) -> Path:
    """A healthy OS tree whose initramfs wants ``[composefs] enabled = signed`` with ``trusted_key``."""
    tree = osimage.make_version(base, dest, version, healthy=True)
    (tree / "usr/lib/ostree").mkdir(parents=True, exist_ok=True)
    (tree / "usr/lib/ostree/prepare-root.conf").write_text("[composefs]\nenabled = signed\n")
    (tree / "etc/ostree").mkdir(parents=True, exist_ok=True)
    (tree / "etc/ostree/initramfs-root-binding.key").write_text(trusted_key + "\n")
    (tree / TAMPER_TARGET).parent.mkdir(parents=True, exist_ok=True)
    (tree / TAMPER_TARGET).write_bytes(TAMPER_CONTENT)
    build_initramfs(tree)  # again: now with the config and the key
    return tree


def commit_signed(repo: Path, tree: Path, ref: str, subject: str, secret: Path) -> None:
    """Commit ``tree`` with its composefs digest and sign it with ``secret`` (``bootree sign``)."""
    bt = [sys.executable, "-m", "bootree", f"--repo={repo}"]
    subprocess.run([*bt, "commit", "-b", ref, f"--tree=dir={tree}", f"--subject={subject}",
                    "--generate-composefs-metadata"], check=True, capture_output=True)
    subprocess.run([*bt, "sign", ref, f"--keys-file={secret}"], check=True, capture_output=True)


_MEASURE = """python3 - "$@" <<'EOF'
import os, sys
from bootree._fs import fsverity_measure
from bootree.format.checksum import ObjectType
from bootree.repo import Repo
r = Repo.open("/ostree/repo")
def measure(csum):
    fd = os.open(r.object_path(ObjectType.FILE, csum), os.O_RDONLY)
    try:
        d = fsverity_measure(fd)
    finally:
        os.close(fd)
    return d.hex() if d else "none"
for what, rev, path in (a.split(":") for a in sys.argv[1:]):
    print("CFS-VERITY", what, measure(r.reader.lookup(r.read_commit(r.resolve_rev(rev)), path).checksum))
EOF
"""


def measure(*specs: str) -> str:
    """A script printing ``CFS-VERITY <what> <kernel digest|none>`` for each ``what:rev:path``."""
    return "set -- " + " ".join(specs) + "\n" + _MEASURE


def first_boot(ref_mismatch: str, csum_mismatch: str, ref_other_key: str) -> str:
    """In v1: a fresh object (fs-verity from the transaction), then two refused deployments."""
    return (
        "grep -A1 '^\\[ex-fsverity\\]' /ostree/repo/config\n"
        f"mkdir -p /tmp/fresh && printf '{FRESH_CONTENT.decode().rstrip()}\\n' > /tmp/fresh/f\n"
        "bootree --repo=/ostree/repo commit -b test/fresh --tree=dir=/tmp/fresh >/dev/null\n"
        + measure("fresh:test/fresh:f", f"installed:{ref_mismatch}:{TAMPER_TARGET}")
        + f"bootree admin deploy {ref_mismatch} >/dev/null && echo CFS-DEPLOYED {ref_mismatch}\n"
        + measure(f"deployed:{ref_mismatch}:{TAMPER_TARGET}")
        # the image no longer matches the commit's digest (one byte of the header padding: still
        # valid EROFS); it has fs-verity, so it is replaced rather than written to
        + """python3 - <<'EOF'
import glob, os
from pathlib import Path
from bootree.sysroot import immutable
(d,) = [Path(p) for p in glob.glob("/ostree/deploy/default/deploy/CSUM.*") if os.path.isdir(p)]  # not .origin
immutable.set_immutable(d, False)
img = bytearray((d / ".ostree.cfs").read_bytes()); img[100] ^= 1
(d / ".ostree.cfs.tmp").write_bytes(img); os.replace(d / ".ostree.cfs.tmp", d / ".ostree.cfs")
immutable.set_immutable(d, True)
print("CFS-IMAGE-TAMPERED", d.name)
EOF
""".replace("CSUM", csum_mismatch)
        + f"bootree admin deploy --retain {ref_other_key} >/dev/null && echo CFS-DEPLOYED {ref_other_key}\n"
        "ls /boot/efi/loader/entries\n"
    )


def composefs_boot(ref: str, tamper_object: str) -> str:
    """In v5 on composefs: the mount, /usr, digests in the image, then one swapped object."""
    obj = f"/sysroot/ostree/repo/objects/{tamper_object[:2]}/{tamper_object[2:]}.file"
    return (
        "grep ' / ' /proc/mounts\n"
        "touch /usr/bootree-write-test 2>/dev/null && echo CFS-USR writable || echo CFS-USR read-only\n"
        "sha256sum /usr/lib/os-release\n"
        + measure(f"booted:{ref}:{TAMPER_TARGET}")
        + "D=$(readlink -f /sysroot$(tr ' ' '\\n' < /proc/cmdline | sed -n 's/^ostree=//p'))\n"
        f"bootree composefs dump \"$D/.ostree.cfs\" | grep '^/{TAMPER_TARGET} ' | sed 's/^/CFS-DUMP /'\n"
        # same size, other bytes, no fs-verity; the original (with fs-verity) is kept aside
        f"S=$(stat -c %s {obj}); mv {obj} /sysroot/ostree/repo/tmp/orig\n"
        f"dd if=/dev/zero of={obj} bs=1 count=\"$S\" 2>/dev/null; chmod 644 {obj}\n"
        f"echo CFS-SWAPPED size=$(stat -c %s {obj})\n"
        f"cat /{TAMPER_TARGET} >/dev/null 2>/tmp/err; echo \"CFS-TAMPER-READ rc=$? $(cat /tmp/err)\"\n"
        "dmesg | grep -i 'overlayfs' | tail -3 | sed 's/^/CFS-DMESG /'\n"
        f"mv /sysroot/ostree/repo/tmp/orig {obj}\n"
        "bootree admin status\n"
    )


def verity_lines(log: str) -> dict[str, str]:
    """``CFS-VERITY what digest`` lines → {what: digest}."""
    return dict(re.findall(r"^CFS-VERITY (\S+) (\S+)$", log, re.M))

"""The initramfs builder: newc cpio framing, module resolution and decompression, the init."""

from __future__ import annotations

import gzip
import lzma
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from bootree.errors import InstallError
from bootree.install import rootsign
from bootree.install.initramfs import INIT_SCRIPT, InitramfsOptions, build_initramfs, cpio_newc, find_kver


def parse_newc(data: bytes) -> dict[str, tuple[int, bytes]]:
    """A reader for the archive, independent of the writer."""
    out: dict[str, tuple[int, bytes]] = {}
    pos = 0
    while True:
        assert data[pos:pos + 6] == b"070701"
        f = [int(data[pos + 6 + 8 * i: pos + 14 + 8 * i], 16) for i in range(13)]
        mode, size, namesize = f[1], f[6], f[11]
        name = data[pos + 110: pos + 110 + namesize - 1].decode()
        pos += 110 + namesize
        pos += (4 - pos % 4) % 4
        body = data[pos: pos + size]
        pos += size
        pos += (4 - pos % 4) % 4
        if name == "TRAILER!!!":
            return out
        out[name] = (mode, body)


def test_cpio_newc_round_trip() -> None:
    entries = [("d", stat.S_IFDIR | 0o755, b""), ("d/f", stat.S_IFREG | 0o644, b"abc"),
               ("l", stat.S_IFLNK | 0o777, b"d/f")]
    got = parse_newc(cpio_newc(entries))
    assert got == {n: (m, b) for n, m, b in entries}


def make_tree(tmp_path: Path, *, depmod: bool) -> Path:
    tree = tmp_path / "tree"
    mod = tree / "usr/lib/modules/6.1.0-test"
    (mod / "kernel/fs/fat").mkdir(parents=True)
    (mod / "kernel/fs/nls").mkdir(parents=True)
    (mod / "vmlinuz").write_bytes(b"kernel")
    (mod / "kernel/fs/fat/fat.ko.xz").write_bytes(lzma.compress(b"fat module"))
    (mod / "kernel/fs/fat/vfat.ko").write_bytes(b"vfat module")
    (mod / "kernel/fs/nls/nls_iso8859-1.ko.xz").write_bytes(lzma.compress(b"nls module"))
    if depmod:
        (mod / "modules.dep").write_text("kernel/fs/fat/vfat.ko: kernel/fs/fat/fat.ko.xz\n"
                                         "kernel/fs/fat/fat.ko.xz:\nkernel/fs/nls/nls_iso8859-1.ko.xz:\n")
    return tree


@pytest.mark.parametrize("depmod", [False, True])
def test_build_initramfs(tmp_path: Path, depmod: bool) -> None:
    tree = make_tree(tmp_path, depmod=depmod)
    bb = tmp_path / "busybox"
    bb.write_bytes(b"\x7fELF static busybox")
    # with modules.dep, asking for vfat alone pulls fat in first
    wanted = ("vfat", "nls_iso8859-1", "virtio_blk") if depmod else ("fat", "vfat", "nls_iso8859-1", "virtio_blk")
    out = build_initramfs(tree, options=InitramfsOptions(busybox=bb, modules=wanted))
    assert out == tree / "usr/lib/modules/6.1.0-test/initramfs.img"
    files = parse_newc(gzip.decompress(out.read_bytes()))
    assert files["bin/busybox"][1] == bb.read_bytes()
    assert files["init"][0] & 0o111 and b"switch_root /newroot" in files["init"][1]
    assert files["lib/modules/fat.ko"][1] == b"fat module"  # decompressed for busybox insmod
    assert files["etc/bootree-modules"][1] == b"fat\nvfat\nnls_iso8859_1\n"  # order; absent ones skipped
    assert out.read_bytes() == build_initramfs(tree, options=InitramfsOptions(busybox=bb, modules=wanted)).read_bytes()


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(InstallError, match="one kernel"):
        find_kver(tmp_path)
    tree = make_tree(tmp_path, depmod=False)
    with pytest.raises(InstallError, match="busybox"):
        build_initramfs(tree, options=InitramfsOptions(busybox=tmp_path / "nope"))


@pytest.mark.parametrize(
    ("usr_lib", "etc", "karg", "expected"),
    [
        (None, None, "", ""),
        ("[composefs]\nenabled = yes\n", None, "", "yes"),
        ("[composefs]\nenabled=verity\n[root]\ntransient=false\n", None, "", "verity"),
        ("[root]\ntransient=true\n[composefs]\n  enabled = true  \n", None, "", "yes"),
        ("[composefs]\nenabled = yes\n", "[etc]\ntransient=false\n", "", ""),  # the /etc file replaces it
        ("[composefs]\nenabled = yes\n", "[composefs]\nenabled = signed\n", "", "signed"),
        ("[composefs]\nenabled = yes\n", None, "no", ""),  # the karg wins
        (None, None, "maybe", "maybe"),
    ],
)
@pytest.mark.parametrize("in_initramfs", [False, True])
def test_init_composefs_mode(
    tmp_path: Path, usr_lib: str | None, etc: str | None, karg: str, expected: str, in_initramfs: bool
) -> None:
    """The init's reading of prepare-root.conf (busybox sed), the way ostree-prepare-root reads it:
    the initramfs's own copy when it has one (then the deployment's says nothing), else the
    deployment's."""
    busybox = shutil.which("busybox")
    if busybox is None:
        pytest.skip("busybox is not installed")
    func = INIT_SCRIPT[INIT_SCRIPT.index("ROOTCONF=\n") : INIT_SCRIPT.index("CFS=$(cfs_mode)")]
    initrd, deploy = tmp_path / "initrd", tmp_path / "deploy"
    for rel, text in (("usr/lib/ostree/prepare-root.conf", usr_lib), ("etc/ostree/prepare-root.conf", etc)):
        if text is not None:
            for base in (initrd, deploy):
                (base / rel).parent.mkdir(parents=True, exist_ok=True)
            (((initrd if in_initramfs else deploy)) / rel).write_text(text)
            if in_initramfs:  # the deployment's own file is ignored
                (deploy / rel).write_text("[composefs]\nenabled = no\n")
    script = f'karg() {{ echo "{karg}"; }}\nINITRD={initrd}\nDEPLOY={deploy}\n{func}\ncfs_mode\n'
    out = subprocess.run([busybox, "sh", "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.strip() == expected


def _init_function(name: str, until: str) -> str:
    return INIT_SCRIPT[INIT_SCRIPT.index(f"{name}() {{") : INIT_SCRIPT.index(until)]


@pytest.mark.parametrize("size", [0, 6, 4096, 4097, 4096 * 129 + 5])
def test_init_fsverity_matches_python(tmp_path: Path, size: int) -> None:
    """The init's busybox fs-verity digest equals bootree's (it checks the composefs image)."""
    from bootree.format.fsverity import fsverity_digest

    busybox = shutil.which("busybox")
    if busybox is None:
        pytest.skip("busybox is not installed")
    data = bytes(i % 251 for i in range(size))
    (tmp_path / "f").write_bytes(data)
    script = _init_function("fsverity_hex", "commit_cfs_digest() {") + f'fsverity_hex {tmp_path / "f"} {tmp_path / "t"}\n'
    out = subprocess.run([busybox, "sh", "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.strip() == fsverity_digest(data).hex()


def test_init_reads_the_commit_digest(tmp_path: Path) -> None:
    """The init finds ostree.composefs.digest.v0 in a commit object (and nothing without it)."""
    from bootree.format.gvariant import Variant
    from bootree.format.objects import Commit

    busybox = shutil.which("busybox")
    if busybox is None:
        pytest.skip("busybox is not installed")
    digest = bytes(range(32))
    func = _init_function("commit_cfs_digest", "CFS=$(cfs_mode)")
    for meta, want in (
        ((("ostree.ref-binding", Variant("as", ["a/b"])), ("ostree.composefs.digest.v0", Variant("ay", digest))), digest.hex()),
        ((("version", Variant("s", "1")),), ""),
    ):
        commit = Commit(root_tree="a" * 64, root_meta="b" * 64, subject="s", metadata=meta)  # type: ignore[arg-type]
        (tmp_path / "c").write_bytes(commit.to_bytes())
        out = subprocess.run([busybox, "sh", "-c", func + f"commit_cfs_digest {tmp_path / 'c'}\n"],
                             capture_output=True, text=True, check=True).stdout
        assert out.strip() == want


def test_builder_copies_config_and_keys(tmp_path: Path) -> None:
    tree = make_tree(tmp_path, depmod=False)
    bb = tmp_path / "busybox"
    bb.write_bytes(b"\x7fELF static busybox")
    (tree / "usr/lib/ostree").mkdir(parents=True)
    (tree / "usr/lib/ostree/prepare-root.conf").write_text("[composefs]\nenabled = signed\n")
    (tree / "etc/ostree").mkdir(parents=True)
    (tree / "etc/ostree/initramfs-root-binding.key").write_text("S0VZ\n")
    out = build_initramfs(tree, options=InitramfsOptions(busybox=bb, modules=()))
    files = parse_newc(gzip.decompress(out.read_bytes()))
    assert files["usr/lib/ostree/prepare-root.conf"][1] == b"[composefs]\nenabled = signed\n"
    assert files["etc/ostree/initramfs-root-binding.key"][1] == b"S0VZ\n"
    assert files[rootsign.ED25519_BC_PATH][1] == rootsign.ED25519_BC.encode()
    names = list(files)
    assert names.index("usr/lib") < names.index("usr/lib/ostree") < names.index("usr/lib/ostree/prepare-root.conf")
    # another keypath, and a symlinked key (it could name a host file) is not followed
    (tree / "usr/lib/ostree/prepare-root.conf").write_text("[composefs]\nenabled = signed\nkeypath = /usr/lib/k\n")
    (tree / "usr/lib/k").symlink_to("/etc/hostname")
    files = parse_newc(gzip.decompress(build_initramfs(tree, options=InitramfsOptions(busybox=bb, modules=())).read_bytes()))
    assert "usr/lib/k" not in files and "etc/ostree/initramfs-root-binding.key" not in files
    # no config: nothing copied
    (tree / "usr/lib/ostree/prepare-root.conf").unlink()
    files = parse_newc(gzip.decompress(build_initramfs(tree, options=InitramfsOptions(busybox=bb, modules=())).read_bytes()))
    assert not any(n.startswith("usr/") for n in files)

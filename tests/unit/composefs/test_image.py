"""Commit → composefs image (ostree's mapping), the commit digest, fsck --composefs, the CLI."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from bootree.cli import main
from bootree.composefs import (
    COMPOSEFS_DIGEST_KEY_V0,
    ComposefsDigestMismatch,
    Verity,
    build_image,
    check_image,
    commit_digest,
    object_payload,
)
from bootree.composefs.check import check_commit, check_image_objects, objects_of_payload
from bootree.composefs.verity import (
    FS_IOC_ENABLE_VERITY,
    FS_IOC_MEASURE_VERITY,
    VerityUnsupported,
    enable_arg,
    enable_verity,
    file_digest,
    measure_verity,
)
from bootree.format.composefs_dump import iter_nodes
from bootree.format.erofs_read import read_image
from bootree.format.fsverity import fsverity_digest
from bootree.format.objects import ObjectType
from bootree.repo import Repo, RepoMode
from builders import Dir, File, Link, make_tree

BIG = bytes(i % 253 for i in range(70000))
SPEC = {
    "usr/bin/hello": File(b"hello\n", 0o755, {"user.kind": b"binary"}),
    "usr/lib/big.bin": File(BIG),
    "usr/lib/empty": File(b""),
    "usr/lib/link": Link("big.bin"),
    "usr/share/setuid": File(b"x", 0o4755),
    "opt": Dir(0o700),
}


@pytest.fixture(params=[RepoMode.BARE_USER, RepoMode.ARCHIVE], ids=["bare-user", "archive"])
def committed(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Repo, str]:
    repo = Repo.init(tmp_path / "repo", mode=request.param)
    make_tree(tmp_path / "tree", SPEC)
    return repo, repo.commit([tmp_path / "tree"], branch="os/main")


def test_image_maps_the_commit_like_ostree(committed: tuple[Repo, str]) -> None:
    repo, csum = committed
    image = build_image(repo, csum)  # type: ignore[arg-type]
    assert image.digest == fsverity_digest(image.data)
    entries = dict(iter_nodes(read_image(image.data).root))
    # ostree adds the root directories a root file system needs.
    for name in (b"usr", b"etc", b"boot", b"var", b"sysroot", b"opt"):
        assert stat.S_ISDIR(entries[b"/" + name].mode)
    assert stat.S_IMODE(entries[b"/opt"].mode) == 0o700
    hello = entries[b"/usr/bin/hello"]
    assert hello.size == 6 and stat.S_IMODE(hello.mode) == 0o755
    assert hello.xattrs == {b"user.kind": b"binary"}
    assert hello.digest == fsverity_digest(b"hello\n")
    assert hello.payload is not None and objects_of_payload(hello.payload) is not None
    big = entries[b"/usr/lib/big.bin"]
    assert (big.size, big.digest, big.content) == (len(BIG), fsverity_digest(BIG), None)
    assert entries[b"/usr/lib/link"].payload == b"big.bin"
    assert entries[b"/usr/lib/empty"].size == 0 and entries[b"/usr/lib/empty"].payload is None
    assert stat.S_IMODE(entries[b"/usr/share/setuid"].mode) == 0o4755
    assert all(n.mtime_sec == 0 for n in entries.values())
    assert all(n.nlink == 1 for n in entries.values() if not n.is_dir)
    # Without digests: same tree, no metacopy digests, another image.
    bare = build_image(repo, csum, verity=Verity.NO)  # type: ignore[arg-type]
    assert bare.digest != image.digest
    assert dict(iter_nodes(read_image(bare.data).root))[b"/usr/bin/hello"].digest is None


def test_payload_is_the_bare_loose_path() -> None:
    csum = "ab" + "c" * 62
    assert object_payload(csum) == b"ab/" + b"c" * 62 + b".file"  # type: ignore[arg-type]
    assert objects_of_payload(object_payload(csum)) == csum  # type: ignore[arg-type]
    assert objects_of_payload(b"ab/cd") is None


def test_commit_generate_composefs_metadata(tmp_path: Path) -> None:
    repo = Repo.init(tmp_path / "repo", mode=RepoMode.BARE_USER)
    make_tree(tmp_path / "tree", SPEC)
    assert main(["commit", f"--repo={repo.path}", "-b", "os/main", "--generate-composefs-metadata", str(tmp_path / "tree")]) == 0
    csum = repo.resolve_rev("os/main")
    assert csum is not None
    commit = repo.read_commit(csum)
    recorded = commit_digest(commit)
    assert recorded is not None and len(recorded) == 32
    assert dict(commit.metadata)[COMPOSEFS_DIGEST_KEY_V0].type == "ay"
    image = build_image(repo, csum)
    assert image.digest == recorded
    check_image(csum, commit, image)
    with pytest.raises(ComposefsDigestMismatch):
        check_image(csum, commit, build_image(repo, csum, verity=Verity.NO))
    assert check_commit(repo, csum) == []


def _tamper(repo: Repo, csum: str, path: str) -> Path:
    obj = next(c for p, kind, c, _ in repo.walk_tree(csum) if p == path and kind == "f")  # type: ignore[arg-type]
    file = repo.object_path(ObjectType.FILE, obj)
    size = file.stat().st_size
    data = bytearray(file.read_bytes())
    data[size // 2] ^= 0xFF
    os.chmod(file, 0o644)
    with open(file, "r+b") as f:  # same size, other bytes; the xattrs stay
        f.write(bytes(data))
    return file


def test_fsck_composefs_reports_a_replaced_object(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = Repo.init(tmp_path / "repo", mode=RepoMode.BARE_USER)
    make_tree(tmp_path / "tree", SPEC)
    main(["commit", f"--repo={repo.path}", "-b", "os/main", "--generate-composefs-metadata", str(tmp_path / "tree")])
    csum = repo.resolve_rev("os/main")
    assert csum is not None
    image_path = tmp_path / "image.cfs"
    image_path.write_bytes(build_image(repo, csum).data)
    assert main(["fsck", f"--repo={repo.path}", "--composefs"]) == 0
    assert check_image_objects(repo, image_path) == []
    _tamper(repo, csum, "/usr/lib/big.bin")
    obj = next(c for p, _k, c, _m in repo.walk_tree(csum) if p == "/usr/lib/big.bin")
    capsys.readouterr()
    assert main(["fsck", f"--repo={repo.path}", "--composefs", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    kinds = {(p["kind"], p["checksum"]) for p in report["problems"]}
    assert ("composefs", csum) in kinds  # the regenerated image no longer has the digest
    assert any(c == obj for _k, c in kinds)  # and the object is named
    problems = check_image_objects(repo, image_path)
    assert [p.what for p in problems] == [obj]
    assert "fs-verity digest" in problems[0].message
    with pytest.raises(ComposefsDigestMismatch):
        check_image(csum, repo.read_commit(csum), build_image(repo, csum))


def test_cli_create_dump_info(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dump = Path(__file__).resolve().parents[2] / "data" / "composefs" / "special.dump"
    img = tmp_path / "special.cfs"
    assert main(["composefs", "create", "--from-file", str(dump), str(img), "--print-digest", "--max-version=0"]) == 0
    assert capsys.readouterr().out.strip() == "6fae72a66167ef8d5830fa15647263ef1b535681aa91fdf195fa3d6f5e3ae15e"
    assert main(["composefs", "info", "--json", str(img)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["digest"].startswith("6fae72a6") and info["composefs_version"] == 0 and info["size"] == 28672
    assert main(["composefs", "dump", str(img)]) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[0].startswith("/ 4096 40555 2 0 0 0 1633950376.0 - - -")
    img2 = tmp_path / "again.cfs"
    (tmp_path / "again.dump").write_text(text)
    assert main(["composefs", "create", "--from-file", str(tmp_path / "again.dump"), str(img2), "--max-version=0"]) == 0
    assert img2.read_bytes() == img.read_bytes()
    assert main(["composefs", "create", str(img)]) == 2  # neither --from-file nor --rev
    (tmp_path / "bad.dump").write_text("/ 4096 40755 2 0 0 0 0.0 - - -\n/x 0 777 1 0 0 0 0.0 - - -\n")
    assert main(["composefs", "create", "--from-file", str(tmp_path / "bad.dump"), str(img)]) == 1
    assert "error: dump line 2: invalid mode 777" in capsys.readouterr().err


def test_cli_create_from_rev(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = Repo.init(tmp_path / "repo", mode=RepoMode.BARE_USER)
    make_tree(tmp_path / "tree", SPEC)
    csum = repo.commit([tmp_path / "tree"], branch="os/main")
    img = tmp_path / "x.cfs"
    assert main(["composefs", "create", f"--repo={repo.path}", "--rev=os/main", str(img), "--print-digest"]) == 0
    assert capsys.readouterr().out.strip() == build_image(repo, csum).digest.hex()
    assert img.read_bytes() == build_image(repo, csum).data


def test_verity_ioctl_interface(tmp_path: Path) -> None:
    """The ioctl numbers and argument layout of <linux/fsverity.h>; the kernel call where possible."""
    assert FS_IOC_ENABLE_VERITY == 0x40806685
    assert FS_IOC_MEASURE_VERITY == 0xC0046686
    arg = enable_arg()
    assert len(arg) == 128 and arg[:16] == bytes.fromhex("01000000" "01000000" "00100000" "00000000")
    f = tmp_path / "obj"
    f.write_bytes(BIG)
    fd = os.open(f, os.O_RDONLY)
    try:
        assert file_digest(fd) == fsverity_digest(BIG)  # measured or computed: the same value
        try:
            measured = measure_verity(fd)
        except VerityUnsupported:
            measured = None
        assert measured is None  # a fresh file never has verity
        try:
            enable_verity(fd)
        except VerityUnsupported:
            pytest.skip("no fs-verity on this kernel or file system (the digest math is tested above)")
        assert measure_verity(fd) == fsverity_digest(BIG)
    finally:
        os.close(fd)

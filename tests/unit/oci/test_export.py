"""``container encapsulate`` to an OCI layout: the format, labels, reproducibility, and the round
trip tree → layers → bootree's own layer import → the same tree (same root dirtree checksum)."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest
from commitgen import KERNEL, D, F, base_spec, write_commit
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bootree.errors import ImageError
from bootree.format.checksum import Checksum
from bootree.oci.export import EncapsulateOptions, encapsulate_to_layout
from bootree.oci.importer import pull_image
from bootree.oci.reference import ImageReference
from bootree.repo import Repo


def _layout(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    index = json.loads((path / "index.json").read_text())
    mdig = index["manifests"][0]["digest"]
    manifest = json.loads((path / "blobs/sha256" / mdig[7:]).read_bytes())
    config = json.loads((path / "blobs/sha256" / manifest["config"]["digest"][7:]).read_bytes())
    return manifest, config


def _members(path: Path, digest: str) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress((path / "blobs/sha256" / digest[7:]).read_bytes()))) as tf:
        return tf.getmembers()


def _roundtrip(repo: Repo, csum: Checksum, out: Path, options: EncapsulateOptions) -> Checksum:
    encapsulate_to_layout(repo, csum, ImageReference.parse(f"oci:{out}:t"), options)
    dest = Repo.init(out.parent / (out.name + "-import"))
    res = pull_image(dest, ImageReference.parse(f"oci:{out}:t"), privileged=False)
    commit = dest.read_commit(res.state.commit)
    return Checksum(commit.root_tree + commit.root_meta)


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    return Repo.init(tmp_path / "repo")


def test_layout_labels_and_format(repo: Repo, tmp_path: Path) -> None:
    spec = {**base_spec(), "usr/bin/hello": F(b"#!/bin/sh\n", 0o755, xattrs=((b"user.k", b"v"),)),
            "usr/bin/hi": F(b"#!/bin/sh\n", 0o755, xattrs=((b"user.k", b"v"),)), "usr/share/empty": F(b""),
            "usr/bin/sh": F(target="hello"), "usr/etc/motd": F(b"hi\n")}
    csum = write_commit(repo, spec, version="42.1")
    out = tmp_path / "oci"
    img = encapsulate_to_layout(repo, "test", ImageReference.parse(f"oci:{out}:v1"),
                                EncapsulateOptions(labels={"org.example": "x"}, architecture="amd64"))
    manifest, config = _layout(out)
    labels = config["config"]["Labels"]
    assert labels == manifest["annotations"] == img.labels
    assert labels["containers.bootc"] == "1" and labels["ostree.bootable"] == "true"
    assert labels["ostree.commit"] == csum
    assert labels["version"] == labels["org.opencontainers.image.version"] == "42.1"
    assert labels["org.example"] == "x"
    assert labels["ostree.final-diffid"] == config["rootfs"]["diff_ids"][-1]
    assert config["created"] == "2023-11-14T22:13:20Z" and config["architecture"] == "amd64"
    assert len(manifest["layers"]) == 1 == len(config["history"])
    names = {m.name: m for m in _members(out, manifest["layers"][0]["digest"])}
    assert f"sysroot/ostree/repo/objects/{csum[:2]}/{csum[2:]}.commit" in names
    assert names["sysroot/ostree/repo/config"].size > 0
    # usr/etc is written as etc; paths link to their objects; the empty file is written in place.
    motd = names["etc/motd"]
    assert motd.islnk() and motd.linkname.startswith("sysroot/ostree/repo/objects/")
    assert names["usr/bin/hello"].linkname == names["usr/bin/hi"].linkname
    assert names["usr/share/empty"].isreg() and names["usr/share/empty"].size == 0
    obj = names[names["usr/bin/hello"].linkname]
    assert obj.isreg() and obj.mode == 0o755 and obj.pax_headers["SCHILY.xattr.user.k"] == "v"
    assert names[names["usr/bin/sh"].linkname].issym()
    assert all(m.mtime == 0 and m.uname == "" for m in names.values())
    assert "./etc" in names and "./usr/lib/modules/6.1.0-test" in names and "./sysroot" not in names


def test_same_tree_same_digests_other_commit_changes_commit_layer_only(repo: Repo, tmp_path: Path) -> None:
    spec = {**base_spec(), **{f"usr/share/p{i}/f": F(bytes([i]) * 100) for i in range(4)}}
    a = write_commit(repo, spec, ref="a")
    opts = EncapsulateOptions(max_layers=8)
    one = encapsulate_to_layout(repo, a, ImageReference.parse(f"oci:{tmp_path / 'x'}"), opts)
    two = encapsulate_to_layout(repo, a, ImageReference.parse(f"oci:{tmp_path / 'y'}"), opts)
    assert one.manifest_digest == two.manifest_digest and one.manifest == two.manifest
    b = write_commit(repo, spec, ref="b", timestamp=1800000000, subject="rebuilt")
    three = encapsulate_to_layout(repo, b, ImageReference.parse(f"oci:{tmp_path / 'z'}"), opts)
    assert [x.digest for x in three.layers[1:]] == [x.digest for x in one.layers[1:]]
    assert three.layers[0].digest != one.layers[0].digest


@pytest.mark.parametrize("compression", ["gzip", "zstd", "none"])
def test_roundtrip_through_bootree_import(repo: Repo, tmp_path: Path, compression: str) -> None:
    spec = {**base_spec(), "usr/bin/a": F(b"x" * 5000, 0o4755, uid=3000000, gid=7), "usr/bin/b": F(b"x" * 5000, 0o4755,
            uid=3000000, gid=7), "usr/lib/l": F(target="../bin/a"), "usr/share/d": D(0o700, 5, 6, ((b"user.d", b"\xff"),)),
            "usr/share/d/é": F(b"\x00\xff", xattrs=((b"user.bin", b"\x00\x80\xfe"), (b"user.z", b""))),
            "usr/etc/e": F(b"")}
    csum = write_commit(repo, spec)
    c = repo.read_commit(csum)
    got = _roundtrip(repo, csum, tmp_path / "oci", EncapsulateOptions(max_layers=3, compression=compression))
    assert got == c.root_tree + c.root_meta


_names = st.text(alphabet="abé.-", min_size=1, max_size=4).filter(lambda n: n not in (".", "..") and not n.startswith(".wh."))
_xattrs = st.dictionaries(st.sampled_from([b"user.a", b"user.b", b"trusted.x"]), st.binary(max_size=6), max_size=2)
_files = st.builds(lambda data, mode, uid, xa, link: F(data, mode, uid, uid % 3, tuple(sorted(xa.items())), link),
                   st.binary(max_size=40), st.sampled_from([0o644, 0o755, 0o600, 0o2755]),
                   st.sampled_from([0, 1000, 2097152]), _xattrs,
                   st.sampled_from(["", "", "", "x", "/usr/bin/x"]))
_trees = st.dictionaries(st.lists(_names, min_size=1, max_size=3).map(lambda p: "usr/share/" + "/".join(p)), _files,
                         max_size=8)


@pytest.mark.slow
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(files=_trees, max_layers=st.integers(1, 4))
def test_property_tree_layers_import_is_the_same_tree(tmp_path_factory: pytest.TempPathFactory,
                                                      files: dict[str, F], max_layers: int) -> None:
    # A path that is also a parent of another path becomes a directory.
    parents = {"/".join(p.split("/")[:i]) for p in files for i in range(1, p.count("/") + 1)}
    spec: dict[str, F | D] = {**base_spec(), **{p: f for p, f in files.items() if p not in parents}}
    work = tmp_path_factory.mktemp("prop")
    repo = Repo.init(work / "repo")
    csum = write_commit(repo, spec)
    c = repo.read_commit(csum)
    assert _roundtrip(repo, csum, work / "oci", EncapsulateOptions(max_layers=max_layers)) == c.root_tree + c.root_meta


def test_bad_options(repo: Repo, tmp_path: Path) -> None:
    write_commit(repo, base_spec())
    with pytest.raises(ImageError, match="compression"):
        encapsulate_to_layout(repo, "test", ImageReference.parse(f"oci:{tmp_path / 'o'}"),
                              EncapsulateOptions(compression="lz4"))
    with pytest.raises(ImageError, match="not an OCI layout"):
        encapsulate_to_layout(repo, "test", ImageReference.parse("docker://example.com/a:b"))
    assert not list((tmp_path / "o" / "blobs" / "sha256").glob(".layer-*")), "an aborted layer leaves no temp file"


def test_kernel_less_commit_is_not_labelled_bootable(repo: Repo, tmp_path: Path) -> None:
    spec = {k: v for k, v in base_spec().items() if not k.startswith("usr/lib/modules")}
    write_commit(repo, spec, version=None)
    img = encapsulate_to_layout(repo, "test", ImageReference.parse(f"oci:{tmp_path / 'o'}"))
    assert "containers.bootc" not in img.labels and "version" not in img.labels
    assert KERNEL not in json.dumps(img.labels)


def test_archive_repository_large_files(tmp_path: Path) -> None:
    """Objects inflated from an archive repository arrive in short reads: every byte must reach the tar."""
    import hashlib

    from bootree.repo import RepoMode

    repo = Repo.init(tmp_path / "archive", mode=RepoMode.ARCHIVE)
    noise = b"".join(hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(40000))  # 1.25 MB, incompressible
    spec = {**base_spec(), "usr/lib/noise": F(noise), "usr/lib/text": F(b"all work and no play\n" * 200000)}
    csum = write_commit(repo, spec)
    c = repo.read_commit(csum)
    assert _roundtrip(repo, csum, tmp_path / "oci", EncapsulateOptions(max_layers=2)) == c.root_tree + c.root_meta

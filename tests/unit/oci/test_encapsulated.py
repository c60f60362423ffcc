"""Encapsulated ostree images (ostree-ext's format): the imported commit is the published one."""

from __future__ import annotations

from pathlib import Path

import pytest
from ocigen import KERNEL, Entry
from ostreegen import commit_entries, write_encapsulated

from bootree.errors import ImageError, LayerError
from bootree.format.checksum import Checksum, ObjectType
from bootree.format.gvariant import Variant
from bootree.oci.encapsulated import FINAL_DIFFID_LABEL, parse_layout
from bootree.oci.importer import pull_image
from bootree.oci.reference import ImageReference, blob_ref, image_ref
from bootree.repo import Repo


def tree(version: str = "1", extra: bytes = b"") -> list[Entry]:
    """An ostree commit's tree: usr/etc (not etc), xattrs, a symlink, a hardlink, an empty file."""
    return [
        Entry("usr", "d", mode=0o755), Entry("usr/bin", "d", mode=0o755),
        Entry("usr/bin/hello", data=b"#!/bin/sh\necho hi\n", mode=0o755, xattrs={"user.test": "v"}),
        Entry("usr/bin/hello-hardlink", "h", link="usr/bin/hello"),
        Entry("usr/bin/sh", "l", link="hello"),
        Entry("usr/lib/modules/6.1.0-test", "d", mode=0o755),
        Entry(KERNEL, data=b"kernel " + version.encode()),
        Entry("usr/lib/modules/6.1.0-test/initramfs.img", data=b"initrd"),
        Entry("usr/share/doc/empty", data=b""), Entry("usr/share/doc/big", data=b"x" * 300_000 + extra),
        Entry("usr/share/doc/private", data=b"p", mode=0o600, uid=42, gid=43),
        Entry("usr/etc", "d", mode=0o755), Entry("usr/etc/os-release", data=f"VERSION={version}\n".encode()),
        Entry("sysroot", "d", mode=0o755), Entry("var", "d", mode=0o755),
        Entry("bin", "l", link="usr/bin"),
    ]


@pytest.fixture
def src(tmp_path: Path) -> Repo:
    return Repo.init(tmp_path / "src")


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    return Repo.init(tmp_path / "repo")


def _commit(src: Repo, tmp_path: Path, version: str = "1", extra: bytes = b"") -> Checksum:
    return commit_entries(src, tree(version, extra), tmp_path, subject=f"v{version}", timestamp=1700000000,
                          metadata=[("version", Variant("s", version)), ("ostree.bootable", Variant("b", True))])


def _objects(repo: Repo, commit: Checksum) -> set[tuple[ObjectType, Checksum]]:
    return repo.reachable_objects([commit])


def _nothing_published(repo: Repo, img: ImageReference) -> None:
    assert repo.try_resolve_rev(image_ref(img)) is None
    assert repo.refs.list() == {}
    assert not [p for p in (repo.path / "objects").rglob("*") if p.is_file()]


@pytest.mark.parametrize(("chunks", "compression"), [(0, "gzip"), (3, "gzip"), (2, "zstd")])
def test_imported_commit_has_the_published_checksum(src: Repo, repo: Repo, tmp_path: Path, chunks: int,
                                                    compression: str) -> None:
    commit = _commit(src, tmp_path)
    lay = tmp_path / "oci"
    write_encapsulated(lay, src, commit, chunks=chunks, compression=compression)
    img = ImageReference.parse(f"oci:{lay}")
    res = pull_image(repo, img, architecture="amd64")
    assert res.ostree_commit == commit
    assert res.layers_fetched == chunks + 1
    # Every object of the commit came across, byte for byte (same checksums, same set).
    assert _objects(repo, commit) == _objects(src, commit)
    assert repo.load_metadata(ObjectType.COMMIT, commit) == src.load_metadata(ObjectType.COMMIT, commit)
    for otype, csum in _objects(src, commit):
        if otype is ObjectType.FILE:
            assert repo.load_file(csum) == src.load_file(csum)
    assert repo.fsck().ok
    import json

    layers = json.loads(res.state.manifest)["layers"]
    assert repo.resolve_rev(blob_ref(layers[0]["digest"])) == commit
    merge = repo.read_commit(res.state.commit)
    base = repo.read_commit(commit)
    assert (merge.root_tree, merge.root_meta, merge.parent) == (base.root_tree, base.root_meta, commit)
    for layer in layers[1:]:  # chunk layers: a flat tree of the objects they carried, named by checksum
        c = repo.read_commit(repo.resolve_rev(blob_ref(layer["digest"])))
        files = repo.read_dirtree(c.root_tree).files
        assert files and all(name == csum for name, csum in files) and c.timestamp == 0


@pytest.mark.parametrize("style", ["v0", "v1-regular"])
def test_older_and_fallback_xattr_encodings(src: Repo, repo: Repo, tmp_path: Path, style: str) -> None:
    commit = _commit(src, tmp_path)
    lay = tmp_path / "oci"
    write_encapsulated(lay, src, commit, chunks=1, xattrs_style=style)
    res = pull_image(repo, ImageReference.parse(f"oci:{lay}"), architecture="amd64")
    assert res.ostree_commit == commit and _objects(repo, commit) == _objects(src, commit)
    hello = repo.reader.lookup(repo.read_commit(commit), "/usr/bin/hello")
    assert hello is not None and repo.load_file(hello.checksum)[0].xattrs == ((b"user.test", b"v"),)


def test_detached_metadata_is_kept(src: Repo, repo: Repo, tmp_path: Path) -> None:
    from bootree.format import gvariant

    commit = _commit(src, tmp_path)
    detached = gvariant.encode("a{sv}", [("test.signature", Variant("ay", b"\x01\x02"))])
    with src.transaction() as txn:
        txn.write_commitmeta(commit, detached)
    lay = tmp_path / "oci"
    write_encapsulated(lay, src, commit)
    pull_image(repo, ImageReference.parse(f"oci:{lay}"), architecture="amd64")
    assert repo.read_commitmeta(commit) == detached


def test_derived_layers_merge_over_the_commit(src: Repo, repo: Repo, tmp_path: Path) -> None:
    commit = _commit(src, tmp_path)
    lay = tmp_path / "oci"
    derived = [[Entry("usr/share/doc/.wh.big", mode=0), Entry("etc/added.conf", data=b"added\n"),
                Entry("usr/bin/tool", data=b"tool", mode=0o755)]]
    write_encapsulated(lay, src, commit, chunks=1, derived=derived)
    res = pull_image(repo, ImageReference.parse(f"oci:{lay}"), architecture="amd64")
    merged = repo.read_commit(res.state.commit)
    assert merged.parent == commit
    paths = {e.path for e in repo.walk_entries(res.state.commit)}
    assert "/usr/share/doc/big" not in paths
    assert {"/usr/etc/added.conf", "/usr/bin/tool", "/usr/etc/os-release", "/usr/bin/hello"} <= paths
    assert not any(".wh." in p for p in paths)


def test_update_fetches_only_changed_layers(src: Repo, repo: Repo, tmp_path: Path) -> None:
    lay = tmp_path / "oci"
    c1 = _commit(src, tmp_path, "1")
    write_encapsulated(lay, src, c1, chunks=3)
    img = ImageReference.parse(f"oci:{lay}")
    first = pull_image(repo, img, architecture="amd64")
    assert first.layers_fetched == 4
    c2 = _commit(src, tmp_path, "2")  # the kernel and os-release change; their chunks change
    write_encapsulated(lay, src, c2, chunks=3)
    second = pull_image(repo, img, architecture="amd64")
    assert second.ostree_commit == c2 and repo.fsck().ok
    assert second.layers_cached >= 1 and second.layers_fetched < 4
    assert second.layers_fetched + second.layers_cached == 4


def test_layout_follows_the_final_diffid_label(src: Repo, tmp_path: Path) -> None:
    from bootree.format.oci import ImageConfig

    def config(labels: dict[str, str], diff_ids: list[str]) -> ImageConfig:
        import json

        return ImageConfig.from_bytes(json.dumps({"architecture": "amd64", "os": "linux",
                                                  "config": {"Labels": labels},
                                                  "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode())

    d = [f"sha256:{c * 64}" for c in "abc"]
    assert not parse_layout(config({}, d)).encapsulated
    lay = parse_layout(config({FINAL_DIFFID_LABEL: d[1]}, d))
    assert lay.ostree_layers == 2 and [lay.kind(i).value for i in range(3)] == ["commit", "chunk", "derived"]
    with pytest.raises(ImageError, match="names no layer"):
        parse_layout(config({FINAL_DIFFID_LABEL: "sha256:" + "f" * 64}, d))
    with pytest.raises(ImageError, match="names 2 layers"):
        parse_layout(config({FINAL_DIFFID_LABEL: d[0]}, [d[0], d[0]]))


def _flip(target_ext: str, target: str | None = None):  # type: ignore[no-untyped-def]
    done = []

    def mutate(ext: str, csum: str, data: bytes) -> bytes | None:
        if ext == target_ext and (target is None or csum == target) and not done and len(data) > 3:
            done.append(csum)
            return data[:2] + bytes([data[2] ^ 1]) + data[3:]
        return data

    return mutate


@pytest.mark.parametrize(("case", "exc", "match"), [
    ("content", LayerError, r"does not match its checksum"),
    ("dirtree", LayerError, r"checksum|mismatch"),
    ("commit", LayerError, r"checksum|mismatch"),
    ("missing", ImageError, r"incomplete: .* is in no layer"),
    ("label", LayerError, r"ostree.commit label"),
    ("chunk-metadata", LayerError, r"metadata object in a chunk layer"),
])
def test_bad_encapsulated_images_publish_nothing(src: Repo, repo: Repo, tmp_path: Path, case: str,
                                                 exc: type[Exception], match: str) -> None:
    commit = _commit(src, tmp_path)
    lay = tmp_path / "oci"
    kw: dict[str, object] = {"chunks": 1}
    if case in ("content", "dirtree", "commit"):
        kw["mutate"] = _flip("file" if case == "content" else case)
    elif case == "missing":
        kw["mutate"] = lambda ext, csum, data: None if ext == "file" and data == b"initrd" else data
    elif case == "label":
        kw["label_commit"] = "0" * 64
    else:
        kw["wrong_layer"] = "dirmeta-in-chunk"
    write_encapsulated(lay, src, commit, **kw)  # type: ignore[arg-type]
    img = ImageReference.parse(f"oci:{lay}")
    with pytest.raises(exc, match=match) as ei:
        pull_image(repo, img, architecture="amd64")
    assert "\n" not in str(ei.value)
    _nothing_published(repo, img)

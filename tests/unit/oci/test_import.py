"""Importing OCI layouts into a repository: the store layout, whiteouts, safety, caching."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ocigen import KERNEL, Entry, base_layers, wrap_index, write_layout

from bootree.errors import ImageError, LayerError
from bootree.format.checksum import Checksum
from bootree.oci.importer import image_state, pull_image
from bootree.oci.reference import ImageReference, blob_ref, image_ref
from bootree.repo import Repo


def _paths(repo: Repo, csum: Checksum, kind: str) -> set[str]:
    return {e.path for e in repo.walk_entries(csum) if e.kind == kind}


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    return Repo.init(tmp_path / "repo")


@pytest.mark.parametrize("compression", ["gzip", "zstd", "none"])
def test_import_merges_layers_like_ostree_ext(repo: Repo, tmp_path: Path, compression: str) -> None:
    lay = tmp_path / "oci"
    digest = write_layout(lay, base_layers(), tag="v1", compression=compression)
    img = ImageReference.parse(f"oci:{lay}:v1")
    res = pull_image(repo, img, architecture="amd64")
    assert res.changed and res.layers_fetched == 3 and res.layers_cached == 0
    head = repo.resolve_rev(image_ref(img))
    assert head == res.state.commit
    c = repo.read_commit(head)
    meta = dict(c.metadata)
    assert meta["ostree.manifest-digest"].value == digest
    assert json.loads(meta["ostree.manifest"].value)["schemaVersion"] == 2
    assert json.loads(meta["ostree.container.image-config"].value)["architecture"] == "amd64"
    assert "ostree.importer.version" in meta
    files = _paths(repo, head, "f")
    assert files == {"/usr/bin/hello", "/usr/bin/hello-hardlink", "/usr/bin/hello-symlink", "/" + KERNEL,
                     "/usr/lib/modules/6.1.0-test/initramfs.img", "/usr/share/demo/only.txt",
                     "/usr/etc/demo.conf", "/var/lib/demo/state", "/bin"}
    dirs = _paths(repo, head, "d")
    assert "/tmp" in dirs and "/etc" not in dirs
    rd = repo.reader
    conf = rd.lookup(c, "/usr/etc/demo.conf")
    hello, hard = rd.lookup(c, "/usr/bin/hello"), rd.lookup(c, "/usr/bin/hello-hardlink")
    assert conf is not None and hello is not None and hard is not None
    assert hello.checksum == hard.checksum
    with repo.open_file(conf.checksum) as f:
        assert f.read() == b"a=2\n"
    with repo.open_file(hello.checksum) as f:
        assert f.header.xattrs == ((b"user.test", b"v"),) and f.header.mode & 0o777 == 0o755
    for d in res.state.manifest and json.loads(res.state.manifest)["layers"]:
        assert repo.try_resolve_rev(blob_ref(d["digest"])) is not None


def test_second_pull_is_a_noop_and_update_reuses_layers(repo: Repo, tmp_path: Path) -> None:
    lay = tmp_path / "oci"
    layers = base_layers()
    write_layout(lay, layers, tag="latest")
    img = ImageReference.parse(f"oci:{lay}")
    first = pull_image(repo, img, architecture="amd64")
    again = pull_image(repo, img, architecture="amd64")
    assert not again.changed and again.state.commit == first.state.commit and again.layers_fetched == 0
    write_layout(lay, [*layers[:2], [Entry("usr/share/demo/v2.txt", data=b"2")]], tag="latest")
    upd = pull_image(repo, img, architecture="amd64")
    assert upd.changed and upd.layers_fetched == 1 and upd.layers_cached == 2
    state = image_state(repo, img)
    assert state is not None and state.commit == upd.state.commit


def test_recompressed_layer_is_reused_by_diff_id(repo: Repo, tmp_path: Path) -> None:
    layers = base_layers()
    write_layout(tmp_path / "gz", layers)
    pull_image(repo, ImageReference.parse(f"oci:{tmp_path / 'gz'}"), architecture="amd64")
    write_layout(tmp_path / "zst", layers, compression="zstd")
    res = pull_image(repo, ImageReference.parse(f"oci:{tmp_path / 'zst'}"), architecture="amd64")
    assert res.changed and res.layers_fetched == 0 and res.layers_cached == 3
    for d in json.loads(res.state.manifest)["layers"]:
        assert d["mediaType"].endswith("+zstd") and repo.try_resolve_rev(blob_ref(d["digest"])) is not None


def _refuse(repo: Repo, tmp_path: Path, layer: list[Entry], match: str, *, privileged: bool = True,
            exc: type[Exception] = LayerError) -> None:
    lay = tmp_path / "bad"
    write_layout(lay, [base_layers()[0], layer])
    img = ImageReference.parse(f"oci:{lay}")
    before = set(repo.refs.list())
    with pytest.raises(exc, match=match) as ei:
        pull_image(repo, img, architecture="amd64", privileged=privileged)
    assert "\n" not in str(ei.value)
    assert repo.try_resolve_rev(image_ref(img)) is None
    objects = [p for p in (repo.path / "objects").rglob("*") if p.is_file()]
    assert objects == [], "nothing may be published by a failed import"
    assert set(repo.refs.list()) == before


@pytest.mark.parametrize(("entry", "match"), [
    (Entry("usr/../../etc/passwd", data=b"x"), r"escapes the root"),
    (Entry("/usr/abs", data=b"x"), r"absolute path"),
    (Entry("usr/evil", "l", link="../../../etc/shadow"), r"symlink target .* escapes"),
    (Entry("usr/evil", "h", link="../outside"), r"escapes the root"),
    (Entry("usr/evil", "h", link="usr/none"), r"not an earlier file"),
])
def test_unsafe_entries_are_refused(repo: Repo, tmp_path: Path, entry: Entry, match: str) -> None:
    _refuse(repo, tmp_path, [entry], match)


def test_device_node_refused_unprivileged(repo: Repo, tmp_path: Path) -> None:
    _refuse(repo, tmp_path, [Entry("usr/null", "c")], r"device node", privileged=False)


def test_device_node_skipped_privileged(repo: Repo, tmp_path: Path) -> None:
    lay = tmp_path / "dev"
    write_layout(lay, [base_layers()[0], [Entry("usr/null", "c")]])
    res = pull_image(repo, ImageReference.parse(f"oci:{lay}"), architecture="amd64", privileged=True)
    assert any(s.skipped_special == 1 for s in res.layer_stats)


def test_no_kernel_refused(repo: Repo, tmp_path: Path) -> None:
    lay = tmp_path / "nok"
    write_layout(lay, [[Entry("usr/bin/x", data=b"x")]])
    with pytest.raises(ImageError, match="no kernel"):
        pull_image(repo, ImageReference.parse(f"oci:{lay}"), architecture="amd64")
    assert not [p for p in (repo.path / "objects").rglob("*") if p.is_file()]


def test_other_platform_refused(repo: Repo, tmp_path: Path) -> None:
    lay = tmp_path / "arm"
    write_layout(lay, base_layers(), arch="arm64")
    with pytest.raises(ImageError, match="arm64"):
        pull_image(repo, ImageReference.parse(f"oci:{lay}"), architecture="amd64")


def test_index_picks_the_host_platform(repo: Repo, tmp_path: Path) -> None:
    lay = tmp_path / "multi"
    arm = write_layout(lay, [[Entry("usr/x", data=b"arm")]], tag="arm", arch="arm64")
    amd = write_layout(lay, base_layers(), tag="amd", arch="amd64")
    assert arm != amd
    wrap_index(lay, {"arm64": "arm", "amd64": "amd"}, "multi")
    res = pull_image(repo, ImageReference.parse(f"oci:{lay}:multi"), architecture="amd64")
    assert res.state.manifest_digest == amd


def test_index_for_another_platform_only(repo: Repo, tmp_path: Path) -> None:
    lay = tmp_path / "armonly"
    write_layout(lay, base_layers(), tag="arm", arch="arm64")
    wrap_index(lay, {"arm64": "arm"}, "multi")
    with pytest.raises(ImageError, match=r"no image for linux/amd64 in the index \(it has: linux/arm64\)"):
        pull_image(repo, ImageReference.parse(f"oci:{lay}:multi"), architecture="amd64")
    assert repo.refs.list() == {}


def test_corrupt_blob_refused(repo: Repo, tmp_path: Path) -> None:
    lay = tmp_path / "corrupt"
    write_layout(lay, base_layers(), corrupt_layer=1)
    with pytest.raises(ImageError, match="digest"):
        pull_image(repo, ImageReference.parse(f"oci:{lay}"), architecture="amd64")
    assert repo.try_resolve_rev(blob_ref("sha256:" + "0" * 64)) is None
    assert not [p for p in (repo.path / "objects").rglob("*") if p.is_file()]

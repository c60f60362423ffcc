"""Top-level directories outside usr/etc/var: kept for plain images (ostree-ext's generic images)."""

from __future__ import annotations

from pathlib import Path

from ocigen import Entry, base_layers, layer_tar, write_layout

from bootree.format.oci import Compression
from bootree.oci.importer import pull_image
from bootree.oci.layer import import_layer
from bootree.oci.reference import ImageReference
from bootree.repo import Repo

EXTRA = [Entry("sysroot", "d", mode=0o755), Entry("boot", "d", mode=0o755), Entry("mnt", "d", mode=0o755),
         Entry("opt/app/tool", data=b"t", mode=0o755), Entry("ostree", "l", link="sysroot/ostree"),
         Entry("proc", "d", mode=0o555), Entry("proc/self", data=b"x")]


def test_a_plain_image_keeps_its_mount_points(tmp_path: Path) -> None:
    """An OS image made by any tool brings /sysroot and /boot, which prepare-root mounts onto."""
    repo = Repo.init(tmp_path / "repo")
    lay = tmp_path / "oci"
    layers = base_layers()
    write_layout(lay, [layers[0] + EXTRA, *layers[1:]], tag="v1")
    res = pull_image(repo, ImageReference.parse(f"oci:{lay}:v1"), architecture="amd64")
    entries = {e.path: e.kind for e in repo.walk_entries(res.state.commit)}
    for d in ("/sysroot", "/boot", "/mnt", "/opt", "/opt/app", "/proc"):
        assert entries.get(d) == "d", d
    assert entries.get("/opt/app/tool") == "f" and entries.get("/ostree") == "f"
    assert "/proc/self" not in entries  # API file systems are still emptied
    (st,) = [s for s in res.layer_stats if s.filtered]
    assert st.filtered == {"proc": 1, "tmp": 1}


def test_derived_layers_of_a_non_transient_root_drop_them(tmp_path: Path) -> None:
    """``allow_nonusr=False``: ostree-ext's rule for layers over an ostree base without a transient root."""
    repo = Repo.init(tmp_path / "repo")
    blob = tmp_path / "layer.tar"
    blob.write_bytes(layer_tar([Entry("usr/bin/x", data=b"x"), *EXTRA]))
    with repo.transaction() as txn:
        tree, stats = import_layer(txn, blob, Compression.NONE, None, privileged=False, allow_nonusr=False)
    assert set(tree.dirs) == {"usr", "proc"} and set(tree.files) == {"ostree"}
    assert stats.filtered == {"sysroot": 1, "boot": 1, "mnt": 1, "opt": 1, "proc": 1}

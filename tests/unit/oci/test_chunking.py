"""``--max-layers``: content grouped by the dpkg package that owns it, stable across updates."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from commitgen import D, F, base_spec, write_commit

from bootree.errors import ImageError
from bootree.oci.chunking import KERNEL, UNOWNED, plan_chunks, read_package_db
from bootree.oci.export import EncapsulateOptions, encapsulate_to_layout
from bootree.oci.reference import ImageReference
from bootree.repo import Repo


def _changelog(pkg: str, uploads: int) -> bytes:
    entries = []
    for i in range(uploads):
        entries.append(f"{pkg} (1.{i}) bookworm; urgency=medium\n\n  * change {i}\n\n"
                       f" -- Dev <dev@example.org>  Mon, {1 + i % 27:02d} Jan 2024 10:00:00 +0000\n\n")
    return gzip.compress("".join(entries).encode(), mtime=0)


def _distro(n_pkgs: int, *, bump: str | None = None, volatile: tuple[str, ...] = ()) -> dict[str, F | D]:
    """A tree with ``n_pkgs`` packages owning files, their dpkg .list files, unowned content."""
    spec: dict[str, F | D] = {**base_spec(), "bin": F(target="usr/bin"), "var/lib/dpkg": D(),
                              "usr/share/local/notes": F(b"mine")}
    for i in range(n_pkgs):
        pkg = f"pkg{i:02d}"
        body = (b"v2-" if pkg == bump else b"v1-") + pkg.encode() * (50 + 30 * i)
        # /bin/... reaches usr/bin through the root symlink, /etc/... is usr/etc/...
        spec[f"usr/bin/{pkg}"] = F(body, 0o755)
        spec[f"usr/etc/{pkg}.conf"] = F(pkg.encode())
        spec[f"usr/share/doc/{pkg}/changelog.Debian.gz"] = F(_changelog(pkg, 8 if pkg in volatile else 2))
        listing = f"/.\n/bin\n/bin/{pkg}\n/etc/{pkg}.conf\n/usr/share/doc/{pkg}/changelog.Debian.gz\n"
        spec[f"var/lib/dpkg/info/{pkg}:amd64.list"] = F(listing.encode())
    return spec


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    return Repo.init(tmp_path / "repo")


def test_packages_get_layers_and_the_db_is_found_in_the_tree(repo: Repo) -> None:
    csum = write_commit(repo, _distro(3))
    db = read_package_db(repo, csum)
    assert db is not None and db.source == "var/lib/dpkg/info" and set(db.files) == {"pkg00", "pkg01", "pkg02"}
    plan = plan_chunks(repo, csum, 10, package_db=db)
    by_name = {c.name: c for c in plan.chunks}
    assert set(by_name) == {"pkg00", "pkg01", "pkg02", KERNEL, UNOWNED}
    paths = {p for _, ps in by_name["pkg01"].objects.values() for p in ps}
    assert paths == {"usr/bin/pkg01", "usr/etc/pkg01.conf", "usr/share/doc/pkg01/changelog.Debian.gz"}
    unowned = {p for _, ps in by_name[UNOWNED].objects.values() for p in ps}
    assert "usr/share/local/notes" in unowned and "var/lib/dpkg/info/pkg00:amd64.list" in unowned
    every = [c for ch in plan.chunks for c in ch.objects]
    assert len(every) == len(set(every)), "each object is in one chunk"


@pytest.mark.parametrize(("n_pkgs", "max_layers"), [(3, 10), (24, 8)])
def test_a_package_update_changes_its_layer_and_the_commit_layer_only(repo: Repo, tmp_path: Path, n_pkgs: int,
                                                                      max_layers: int) -> None:
    v1 = write_commit(repo, _distro(n_pkgs), ref="v1")
    v2 = write_commit(repo, _distro(n_pkgs, bump="pkg01"), ref="v2", timestamp=1800000000)
    opts = EncapsulateOptions(max_layers=max_layers)
    one = encapsulate_to_layout(repo, v1, ImageReference.parse(f"oci:{tmp_path / 'a'}"), opts)
    two = encapsulate_to_layout(repo, v2, ImageReference.parse(f"oci:{tmp_path / 'b'}"), opts)
    assert len(one.layers) == len(two.layers) <= max_layers
    changed = [i for i, (x, y) in enumerate(zip(one.layers, two.layers, strict=True)) if x.digest != y.digest]
    assert changed[0] == 0 and len(changed) == 2, changed


def test_volatile_and_stable_packages_are_bucketed_apart(repo: Repo) -> None:
    vol = ("pkg03", "pkg07", "pkg11")
    csum = write_commit(repo, _distro(24, volatile=vol))
    plan = plan_chunks(repo, csum, 13, package_db=read_package_db(repo, csum))
    assert len(plan.chunks) <= 12
    buckets = [c for c in plan.chunks if c.name.startswith(("stable-", "volatile-"))]
    assert buckets
    for c in buckets:
        kinds = {p in vol for p in c.components}
        assert kinds == {c.name.startswith("volatile-")}, c


def test_external_package_db_and_fallback_without_one(repo: Repo, tmp_path: Path) -> None:
    spec = {k: v for k, v in _distro(2).items() if not k.startswith("var/lib/dpkg")}
    csum = write_commit(repo, spec)
    assert read_package_db(repo, csum) is None
    info = tmp_path / "dpkg" / "info"
    info.mkdir(parents=True)
    (info / "pkg00.list").write_text("/bin/pkg00\n/etc/pkg00.conf\n")
    db = read_package_db(repo, csum, tmp_path / "dpkg")
    assert db is not None
    names = {c.name for c in plan_chunks(repo, csum, 10, package_db=db).chunks}
    assert "pkg00" in names and UNOWNED in names and "pkg01" not in names
    # Without a database, directories are the components.
    names = {c.name for c in plan_chunks(repo, csum, 20).chunks}
    assert {"usr/bin", "usr/share/doc", KERNEL} <= names
    with pytest.raises(ImageError, match=r"\*\.list"):
        read_package_db(repo, csum, tmp_path)
    with pytest.raises(ImageError, match="at least 1"):
        plan_chunks(repo, csum, 0)


@pytest.mark.parametrize("max_layers", [2, 3, 4, 5, 9])
def test_never_more_layers_than_asked(repo: Repo, max_layers: int) -> None:
    csum = write_commit(repo, _distro(12, volatile=("pkg02", "pkg05")))
    plan = plan_chunks(repo, csum, max_layers, package_db=read_package_db(repo, csum))
    assert 1 <= len(plan.chunks) + 1 <= max_layers
    every = [c for ch in plan.chunks for c in ch.objects]
    assert len(every) == len(set(every)) and not plan.remainder.objects
    assert set(every) == {e.checksum for e in repo.walk_entries(csum) if e.kind == "f"}, "every object is placed"

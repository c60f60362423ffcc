"""Static deltas against the real ostree 2022.7, both ways.

* ``ostree static-delta apply-offline`` accepts bootree's deltas (from a parent and ``--empty``,
  with parts beside the superblock and ``--inline``), ``ostree static-delta show`` reads them;
* bootree applies the deltas ``ostree static-delta generate`` makes (rollsum and bsdiff);
* both repositories fsck clean with both tools;
* the recipe of ``delta-vectors.sh`` gives the deltas and the decoded operations of its expected
  output (sizes, modes, offsets, the ``o r w w R w c`` rollsum sequence).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from bootree.delta import DeltaOptions, apply_offline, generate_delta, read_superblock
from bootree.format.delta import DeltaName, decode_part
from bootree.format.deltaops import (
    Close,
    Open,
    SetReadSource,
    Splice,
    UnsetReadSource,
    Write,
    decode_operations,
)
from bootree.pull import pull_local
from bootree.repo import Repo, RepoMode
from delta_builders import Pair, make_pair

pytestmark = [pytest.mark.compat, pytest.mark.skipif(shutil.which("ostree") is None, reason="needs ostree")]

#: The commits of shared/reference/ostree-vectors/delta-vectors.sh (its expected output's last line).
VECTOR_COMMITS = (
    "c1de0349464b471b859d936d9dd207f18c8c58349d9e2ee4492945f05296eeb7",
    "2315c397ed66eb7f744d99dbc3edd99051e62a31ad9d2a6cc38439653a9fc0ae",
    "ea6636f6019abdb8556d274c58ab6a5b8e6d689a2a78f3ea62c288d19958eda8",
)


def ostree(*args: str | Path) -> str:
    return subprocess.run(["ostree", *map(str, args)], check=True, capture_output=True, text=True).stdout


def _fsck_both(path: Path) -> None:
    assert "no errors found" in ostree(f"--repo={path}", "fsck")
    assert Repo.open(path).fsck().ok


@pytest.fixture
def pair(tmp_path: Path) -> Pair:
    return make_pair(tmp_path)


def _ostree_target(tmp_path: Path, src: Path, rev: str | None, name: str) -> Path:
    dst = tmp_path / name
    ostree(f"--repo={dst}", "init", "--mode=bare-user")
    if rev:
        ostree(f"--repo={dst}", "pull-local", src, rev)
    return dst


@pytest.mark.parametrize("inline", [False, True], ids=["parts", "inline"])
def test_ostree_applies_bootree_from_delta(tmp_path: Path, pair: Pair, inline: bool) -> None:
    # libostree's choices (rollsum where it qualifies), so that ostree runs every operation kind
    options = DeltaOptions(min_fallback_size=0, inline=inline, prefer_rollsum=True)
    res = generate_delta(pair.repo, pair.v2, from_commit=pair.v1, options=options)
    assert res.bsdiff_objects and res.rollsum_objects
    if not inline:  # ostree 2022.7's show opens part files even for its own inline deltas
        show = ostree(f"--repo={pair.repo.path}", "static-delta", "show", str(res.name))
        assert f"To: {pair.v2}" in show and "bspatch=0" not in show and "write=0" not in show
    dst = _ostree_target(tmp_path, pair.repo.path, pair.v1, "o-from")
    ostree(f"--repo={dst}", "static-delta", "apply-offline", res.path / "superblock")
    assert ostree(f"--repo={dst}", "cat", pair.v2, "/usr/bin/tool") == "#!/bin/sh\necho v2\n"
    _fsck_both(dst)


def test_ostree_reads_bootree_scratch_delta_with_fallbacks(tmp_path: Path, pair: Pair) -> None:
    res = generate_delta(pair.repo, pair.v2, options=DeltaOptions(min_fallback_size=200_000))
    fallbacks = res.superblock.fallbacks
    assert len(fallbacks) == 2  # big.txt and huge.bin
    show = ostree(f"--repo={pair.repo.path}", "static-delta", "show", pair.v2)
    assert "Number of fallback entries: 2" in show and "From <scratch>" in show
    assert f"Total Fallback Uncompressed Size: {sum(f.uncompressed_size for f in fallbacks)} " in show
    # ostree applies deltas with fallback entries only when pulling (tests/compat pull tests);
    # offline it refuses them outright, whatever the repository holds.
    dst = _ostree_target(tmp_path, pair.repo.path, None, "o-scratch")
    proc = subprocess.run(["ostree", f"--repo={dst}", "static-delta", "apply-offline", res.path / "superblock"],
                          capture_output=True, text=True)
    assert proc.returncode == 1 and "fallback" in proc.stderr
    # the scratch delta without fallbacks is applied
    res = generate_delta(pair.repo, pair.v2, options=DeltaOptions(min_fallback_size=0))
    ostree(f"--repo={dst}", "static-delta", "apply-offline", res.path / "superblock")
    _fsck_both(dst)


def _ostree_source(tmp_path: Path) -> tuple[Path, str, str]:
    """An ostree-made repo whose v1→v2 delta has rollsum and bsdiff files."""
    src = tmp_path / "osrc"
    ostree(f"--repo={src}", "init", "--mode=archive")
    pair = make_pair(tmp_path / "trees")
    revs = []
    for n, rev in enumerate((pair.v1, pair.v2)):
        out = tmp_path / f"co{n}"
        pair.repo.checkout(rev, out, user_mode=True)
        revs.append(ostree(f"--repo={src}", "commit", "-b", "os", f"--tree=dir={out}", f"--timestamp=@{1700000000 + n}",
                           "--owner-uid=0", "--owner-gid=0").strip())
    return src, revs[0], revs[1]


@pytest.mark.parametrize("mode", [RepoMode.BARE_USER, RepoMode.ARCHIVE])
def test_bootree_applies_ostree_deltas(tmp_path: Path, mode: RepoMode) -> None:
    src, v1, v2 = _ostree_source(tmp_path)
    ostree(f"--repo={src}", "static-delta", "generate", "--min-fallback-size=0", f"--from={v1}", f"--to={v2}")
    ostree(f"--repo={src}", "static-delta", "generate", "--empty", f"--to={v2}")
    show = ostree(f"--repo={src}", "static-delta", "show", f"{v1}-{v2}")
    assert "bspatch=0" not in show and "write=0" not in show  # ostree used both bsdiff and rollsum
    srcrepo = Repo.open(src)
    dst = Repo.init(tmp_path / "dst", mode=mode)
    pull_local(dst, src, [v1])
    apply_offline(dst, src / DeltaName(v1, v2).superblock_relpath)
    scratch = Repo.init(tmp_path / "scratch", mode=mode)
    apply_offline(scratch, src / DeltaName(None, v2).superblock_relpath)
    for repo in (dst, scratch):
        assert repo.read_commit(v2) == srcrepo.read_commit(v2)
        _fsck_both(repo.path)


def test_delta_vectors_recipe(tmp_path: Path) -> None:
    """delta-vectors.sh's trees and commits: bootree's deltas decode to its expected operations."""
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "hello.txt").write_text("hello\n")
    (tree / "empty").write_bytes(b"")
    os.symlink("hello.txt", tree / "link")
    (tree / "sub" / "run.sh").write_text("#!/bin/sh\necho hi\n")
    for p, m in ((tree / "hello.txt", 0o644), (tree / "empty", 0o644), (tree / "sub/run.sh", 0o755), (tree, 0o755),
                 (tree / "sub", 0o755)):
        os.chmod(p, m)
    repo = Repo.init(tmp_path / "srv", mode=RepoMode.ARCHIVE)

    def commit(d: Path, ts: int) -> str:
        return ostree(f"--repo={repo.path}", "commit", "-b", "test", f"--tree=dir={d}", f"--timestamp=@{ts}",
                      f"--subject={d.name}", "--owner-uid=0", "--owner-gid=0", "--no-xattrs").strip()

    a = commit(tree, 1700000000)
    tree2 = tmp_path / "tree2"
    shutil.copytree(tree, tree2, symlinks=True)
    (tree2 / "big.txt").write_text("".join(f"{i}\n" for i in range(1, 6001)))
    b = commit(tree2, 1700000100)
    tree3 = tmp_path / "tree3"
    shutil.copytree(tree2, tree3, symlinks=True)
    (tree3 / "big.txt").write_text("".join(("three thousand" if i == 3000 else str(i)) + "\n" for i in range(1, 6001)))
    c = commit(tree3, 1700000200)
    assert (a, b, c) == VECTOR_COMMITS
    repo = Repo.open(repo.path)
    generate_delta(repo, c)
    generate_delta(repo, c, from_commit=b, options=DeltaOptions(prefer_rollsum=True))  # libostree's choices
    assert sorted(ostree(f"--repo={repo.path}", "static-delta", "list").split()) == sorted([c, f"{b}-{c}"])

    def ops(name: DeltaName) -> tuple[list[object], list[tuple[int, int, int]]]:
        _d, sb = read_superblock(repo, name)
        part = decode_part((repo.path / name.relpath / "0").read_bytes(), max_size=1 << 20)
        entry = sb.parts[0]
        assert (len(sb.parts), entry.uncompressed_size) == ((1, 29218) if name.from_commit is None else (1, 29140))
        return decode_operations(part.operations, entry.objects, payload_size=len(part.payload),
                                 n_modes=len(part.modes), n_xattrs=len(part.xattrs)), list(part.modes)

    scratch, modes = ops(DeltaName(None, c))
    lengths = sorted(op.length for op in scratch if isinstance(op, Splice))
    assert lengths == sorted([237, 12, 42, 0, 6, 18, 28903, 9])  # the expected output's S lengths
    assert {m for _u, _g, m in modes} == {0o100644, 0o100755, 0o120777}
    rollsum, _ = ops(DeltaName(b, c))
    kinds = [type(op) for op in rollsum]
    assert kinds[0] is Splice and kinds[1] is Open and kinds[-1] is Close
    assert SetReadSource in kinds and UnsetReadSource in kinds and Write in kinds
    opened = next(op for op in rollsum if isinstance(op, Open))
    assert opened.size == 28903
    # and real ostree applies both (the expected output's last check, with bootree as the writer)
    for name, base in ((DeltaName(None, c), None), (DeltaName(b, c), b)):
        dst = _ostree_target(tmp_path, repo.path, base, f"apply-{name.to_commit[:6]}-{base is None}")
        ostree(f"--repo={dst}", "static-delta", "apply-offline", repo.path / name.superblock_relpath)
        assert "no errors found" in ostree(f"--repo={dst}", "fsck")

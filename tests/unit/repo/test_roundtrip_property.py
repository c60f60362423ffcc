"""Property: checkout(commit(tree)) == tree, for generated trees, in archive and bare-user modes."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bootree.repo import CheckoutMode, Repo, RepoMode
from builders import Dir, File, Link, make_tree, snapshot

name = st.text(
    alphabet=st.characters(blacklist_characters="/\0", blacklist_categories=["Cs"]), min_size=1, max_size=16
).filter(lambda s: s not in (".", "..") and len(s.encode()) < 200)
entry = st.one_of(
    st.builds(File, st.binary(max_size=3000), st.sampled_from([0o644, 0o755, 0o600, 0o400, 0o4755, 0o1777])),
    st.builds(Link, st.text(alphabet="abc./ ", min_size=1, max_size=20)),
    st.builds(Dir, st.sampled_from([0o755, 0o700, 0o555])),
)
paths = st.lists(name, min_size=1, max_size=3).map("/".join)
trees = st.dictionaries(paths, entry, max_size=12)


def _consistent(spec: dict[str, object]) -> dict[str, object]:
    # Drop entries whose parent path is also a file or symlink in the spec.
    out = {}
    for p, e in sorted(spec.items(), key=lambda kv: kv[0].count("/")):
        parents = ["/".join(p.split("/")[:i]) for i in range(1, p.count("/") + 1)]
        if all(not isinstance(out.get(q), (File, Link)) for q in parents) and p not in out:
            if any(k.startswith(p + "/") for k in out) and not isinstance(e, Dir):
                continue
            out[p] = e
    return out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trees, st.sampled_from([RepoMode.ARCHIVE, RepoMode.BARE_USER]))
def test_checkout_of_commit_is_the_tree(spec: dict[str, object], mode: RepoMode) -> None:
    work = Path(tempfile.mkdtemp())
    try:
        tree = make_tree(work / "tree", _consistent(spec))  # type: ignore[arg-type]
        repo = Repo.init(work / "repo", mode=mode)
        c = repo.commit([tree], branch="t", timestamp=1)
        repo.checkout(c, work / "out", mode=CheckoutMode.COPY)
        assert snapshot(work / "out") == snapshot(tree)
        assert repo.fsck().ok
        # Committing the checkout gives the same commit: nothing was lost or added.
        assert repo.commit([work / "out"], branch="t2", timestamp=1, bindings=False) == repo.commit(
            [tree], branch="t3", timestamp=1, bindings=False
        )
    finally:
        for p in work.rglob("*"):
            if p.is_dir() and not p.is_symlink():
                p.chmod(0o755)
        shutil.rmtree(work)

"""Repository and pull behaviour the libostree suite's collection, size and delta tests found
different (issue 15), each compared with the real ostree on the same input.

Each scenario runs once with ``ostree`` and once with ``bootree``, in fresh directories, and
compares what a script sees: checksums, printed lines, exit status and error wording.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from tests.compat.test_cli_compat import each, make_tree, run

pytestmark = pytest.mark.compat

TS = "--timestamp=@1700000000"


def _collection_repo(tool: str, w: Path) -> str:
    repo = f"--repo={w / 'repo'}"
    run(tool, repo, "init", "--mode=archive", "--collection-id", "org.example.Collection")
    make_tree(w / "tree")
    run(tool, repo, "commit", "-b", "ref1", "-s", "one", TS, f"--tree=dir={w / 'tree'}")
    run(tool, repo, "commit", "--orphan", "--bind-ref", "ref2", "-s", "two", TS, f"--tree=dir={w / 'tree'}",
        "--add-metadata-string=ostree.collection-binding=org.example.Collection2")
    return repo


def test_commit_in_a_collection_repo_binds_the_collection(tmp_path: Path, ostree: str) -> None:
    def scenario(tool: str, w: Path) -> tuple[str, str, str]:
        repo = _collection_repo(tool, w)
        config = (w / "repo" / "config").read_text()
        line = next(x for x in config.splitlines() if x.startswith("collection-id="))
        return (run(tool, repo, "rev-parse", "ref1").stdout, run(tool, repo, "show", "--raw", "ref1").stdout, line)

    got = each(tmp_path, ostree, scenario)
    assert got["bootree"] == got["ostree"]


def test_refs_collections_lists_creates_and_deletes(tmp_path: Path, ostree: str) -> None:
    def scenario(tool: str, w: Path) -> list[str]:
        repo = _collection_repo(tool, w)
        out = []
        run(tool, repo, "refs", "--collections", "--create=org.example.Other:mirrored", "ref1")
        out.append(sorted(run(tool, repo, "refs", "--collections").stdout.splitlines()))
        out.append(run(tool, repo, "refs").stdout)
        out.append(run(tool, repo, "refs", "--collections", "org.example.Other").stdout)
        run(tool, repo, "refs", "--collections", "--delete", "org.example.Collection")
        out.append(sorted(run(tool, repo, "refs", "--collections").stdout.splitlines()))
        out.append(sorted(str(p.relative_to(w / "repo")) for p in (w / "repo" / "refs").rglob("*")
                          if p.is_file() and not p.name.startswith(".")))  # bootree's lock file aside
        return out

    got = each(tmp_path, ostree, scenario)
    assert got["bootree"] == got["ostree"]


def _error_line(stderr: str) -> str:
    return next(line for line in stderr.splitlines() if line.startswith("error:"))


def test_fsck_verify_bindings_and_back_refs(tmp_path: Path, ostree: str) -> None:
    def scenario(tool: str, w: Path) -> list[object]:
        repo = _collection_repo(tool, w)
        csum = run(tool, repo, "rev-parse", "ref1").stdout.strip()
        out: list[object] = []
        run(tool, repo, "refs", "--create=new-ref", csum)
        r = run(tool, repo, "fsck", "--verify-bindings", check=False)
        out += [r.returncode, _error_line(r.stderr)]
        run(tool, repo, "refs", "--delete", "new-ref", "ref1")
        r = run(tool, repo, "fsck", "--verify-back-refs", check=False)
        out += [r.returncode, _error_line(r.stderr)]
        return out

    got = each(tmp_path, ostree, scenario)
    assert got["bootree"] == got["ostree"]


def _summary_shape(text: str) -> list[str]:
    """``summary --view`` without what differs run to run (times, the metadata commit's checksum and size)."""
    out = []
    for line in text.splitlines():
        if "Timestamp" in line or "Last-Modified" in line or re.fullmatch(r"\s+[0-9a-f]{64}", line):
            continue
        out.append(re.sub(r"Latest Commit \(\d+ bytes\)", "Latest Commit", line))
    return out


def test_summary_with_collection_ids(tmp_path: Path, ostree: str) -> None:
    def scenario(tool: str, w: Path) -> list[object]:
        repo = _collection_repo(tool, w)
        run(tool, repo, "refs", "--collections", "--create=org.example.Other:mirrored", "ref1")
        run(tool, repo, "summary", "-u", "--add-metadata=map=@a{sv} {}")
        meta = run(tool, repo, "show", "--raw", "ostree-metadata").stdout.splitlines()[1]
        return [
            # Sorted: with extra keys ostree orders the summary metadata (and collection refs)
            # as its hash tables do, which bootree does not reproduce: keys and values agree.
            sorted(_summary_shape(run(tool, repo, "summary", "--view").stdout)),
            sorted(run(tool, repo, "refs", "--collections").stdout.splitlines()),
            sorted(re.findall(r"'([^']+)': (<[^>]*>)", meta.split("@a(say)")[0])),  # keys and values
        ]

    got = each(tmp_path, ostree, scenario)
    assert got["bootree"] == got["ostree"]


def test_generate_sizes_and_print_sizes(tmp_path: Path, ostree: str) -> None:
    def scenario(tool: str, w: Path) -> tuple[str, str]:
        repo = f"--repo={w / 'repo'}"
        run(tool, repo, "init", "--mode=archive")
        make_tree(w / "tree")
        csum = run(tool, repo, "commit", "-b", "m", "--no-xattrs", "--generate-sizes", TS, f"--tree=dir={w / 'tree'}").stdout
        return csum, run(tool, repo, "show", "--print-sizes", "m").stdout

    got = each(tmp_path, ostree, scenario)
    assert got["bootree"] == got["ostree"]


def _server(ostree: str, w: Path, mode: str = "archive") -> Path:
    """A server repository with two commits of ``main`` and an ostree-generated delta between them."""
    srv = w / "srv"
    run(ostree, f"--repo={srv}", "init", f"--mode={mode}")
    tree = make_tree(w / "tree")
    run(ostree, f"--repo={srv}", "commit", "-b", "main", "--timestamp=@1000000000", f"--tree=dir={tree}")
    (tree / "big").write_bytes(bytes(range(256)) * 400)
    run(ostree, f"--repo={srv}", "commit", "-b", "main", "--timestamp=@1000000100", f"--tree=dir={tree}")
    run(ostree, f"--repo={srv}", "static-delta", "generate", "main")
    run(ostree, f"--repo={srv}", "summary", "-u")
    return srv


def test_require_static_deltas_refused_into_archive(tmp_path: Path, ostree: str) -> None:
    srv = _server(ostree, tmp_path)

    def scenario(tool: str, w: Path) -> tuple[int, bool]:
        repo = f"--repo={w / 'repo'}"
        run(tool, repo, "init", "--mode=archive")
        run(tool, repo, "remote", "add", "--no-gpg-verify", "origin", f"file://{srv}")
        r = run(tool, repo, "pull", "--require-static-deltas", "origin", "main", check=False)
        return r.returncode, "Can't use static deltas in an archive repo" in r.stderr

    got = each(tmp_path, ostree, scenario)
    assert got["bootree"] == got["ostree"] == (1, True)


def test_dry_run_require_static_deltas_reports_the_delta(tmp_path: Path, ostree: str) -> None:
    srv = _server(ostree, tmp_path)
    parent = run(ostree, f"--repo={srv}", "rev-parse", "main^").stdout.strip()

    def scenario(tool: str, w: Path) -> list[str]:
        repo = f"--repo={w / 'repo'}"
        run(tool, repo, "init", "--mode=bare-user")
        run(tool, repo, "remote", "add", "--no-gpg-verify", "origin", f"file://{srv}")
        run(tool, repo, "pull", "origin", f"main@{parent}")
        out = run(tool, repo, "pull", "--dry-run", "--require-static-deltas", "origin", "main").stdout
        return [line for line in out.splitlines() if line.startswith("Delta update:")]

    got = each(tmp_path, ostree, scenario)
    assert got["bootree"] == got["ostree"]
    assert len(got["ostree"]) == 1  # type: ignore[arg-type]


def test_pull_from_a_bare_file_remote(tmp_path: Path, ostree: str) -> None:
    srv = _server(ostree, tmp_path, mode="bare-user")

    def scenario(tool: str, w: Path) -> tuple[int, str]:
        repo = f"--repo={w / 'repo'}"
        run(tool, repo, "init", "--mode=archive")
        run(tool, repo, "remote", "add", "--no-gpg-verify", "origin", f"file://{srv}")
        r = run(tool, repo, "pull", "origin", "main", check=False)
        return r.returncode, run(tool, repo, "rev-parse", "origin:main", check=False).stdout

    got = each(tmp_path, ostree, scenario)
    assert got["bootree"] == got["ostree"]
    assert got["ostree"][0] == 0  # type: ignore[index]

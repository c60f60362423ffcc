"""file_contexts lookups with libselinux's rules: anchored regexes, the last match wins, exact
paths beat patterns, file-type limits, ``<<none>>``, path aliases (``.subs``)."""

from __future__ import annotations

import stat

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bootree.errors import FormatError
from bootree.format.selinux_fc import FileContexts, parse_file_contexts, parse_subs

REG, DIR, LNK = stat.S_IFREG | 0o644, stat.S_IFDIR | 0o755, stat.S_IFLNK | 0o777
POLICY = """\
# comment
/.*                     system_u:object_r:default_t:s0
/usr(/.*)?              system_u:object_r:usr_t:s0
/usr/bin(/.*)?          system_u:object_r:bin_t:s0
/usr/bin/sudo   --      system_u:object_r:sudo_exec_t:s0
/usr/lib/debug(/.*)?    <<none>>
/etc(/.*)?              system_u:object_r:etc_t:s0
/etc/shadow.*   --      system_u:object_r:shadow_t:s0
/usr/bin/.*\\.sh   --      system_u:object_r:script_t:s0
/var/run        -l      system_u:object_r:var_run_t:s0
/var/run        -d      system_u:object_r:var_run_dir_t:s0
/mnt(/[^/]*)?   -d      system_u:object_r:mnt_t:s0
/usr/bin/lit            system_u:object_r:exact_t:s0
/usr/bin/l.t            system_u:object_r:pattern_t:s0
"""


@pytest.fixture
def fc() -> FileContexts:
    return FileContexts(parse_file_contexts(POLICY), parse_subs("/usr/etc /etc\n/var/roothome /root\n"))


@pytest.mark.parametrize(("path", "mode", "label"), [
    ("/", DIR, "default_t"), ("/usr", DIR, "usr_t"), ("/usr/share/x", REG, "usr_t"),
    ("/usr/bin/ls", REG, "bin_t"), ("/usr/bin", DIR, "bin_t"),
    ("/usr/bin/sudo", REG, "sudo_exec_t"), ("/usr/bin/sudo", LNK, "bin_t"),  # type-limited spec
    ("/usr/bin/run.sh", REG, "script_t"), ("/usr/bin/runXsh", REG, "bin_t"),  # \\. is a literal dot
    ("/usr/lib/debug/x", REG, None), ("/usr/lib/debug", DIR, None),  # <<none>>
    ("/etc/shadow-", REG, "shadow_t"), ("/usr/etc/shadow", REG, "shadow_t"),  # the alias
    ("/usr/etcfoo", REG, "usr_t"),  # an alias applies to whole components only
    ("/var/run", LNK, "var_run_t"), ("/var/run", DIR, "var_run_dir_t"), ("/var/run", REG, "default_t"),
    ("/mnt", DIR, "mnt_t"), ("/usr//bin//ls", REG, "bin_t"), ("/usr/bin/", DIR, "bin_t"),
    # An exact path beats a pattern listed after it (libselinux moves exact specs last).
    ("/usr/bin/lit", REG, "exact_t"), ("/usr/bin/lot", REG, "pattern_t"),
])
def test_lookup(fc: FileContexts, path: str, mode: int, label: str | None) -> None:
    got = fc.lookup(path, mode)
    assert (got.split(":")[2] if got else None) == label


def test_regexes_are_anchored() -> None:
    fc = FileContexts(parse_file_contexts("/usr/bin   a:b:c_t:s0\n"))
    assert fc.lookup("/usr/bin", DIR) == "a:b:c_t:s0"
    assert fc.lookup("/usr/bin/ls", REG) is None and fc.lookup("/x/usr/bin", DIR) is None


@given(st.lists(st.sampled_from(["/usr(/.*)?", "/usr/bin(/.*)?", "/.*", "/usr/bin/ls", "/usr/[a-z]+/ls"]),
                min_size=1, max_size=6))
def test_last_matching_pattern_wins(patterns: list[str]) -> None:
    text = "".join(f"{p} u:r:t{i}_t:s0\n" for i, p in enumerate(patterns))
    fc = FileContexts(parse_file_contexts(text))
    import re

    exact = [i for i, p in enumerate(patterns) if p == "/usr/bin/ls"]
    regex = [i for i, p in enumerate(patterns) if p != "/usr/bin/ls" and re.fullmatch(p, "/usr/bin/ls")]
    want = exact[-1] if exact else regex[-1] if regex else None
    assert fc.lookup("/usr/bin/ls", REG) == (f"u:r:t{want}_t:s0" if want is not None else None)


def test_bad_lines() -> None:
    for text, why in [("/x -z a:b:c:s0\n", "unknown file type"), ("/x\n", "fields"),
                      ("/x( a:b:c:s0\n", "bad regex"), ("/x a b c d\n", "fields")]:
        with pytest.raises(FormatError, match=why):
            parse_file_contexts(text)
    with pytest.raises(FormatError, match="ALIAS TARGET"):
        parse_subs("/one\n")

"""Rewrite the result lists of ``docs/compat.md`` from ``ostree_suite_expected.txt``.

The expected-results file is the source of truth (CI checks it against a real run); the
document's lists and counts are derived from it, so they cannot drift apart. Between the
markers ``<!-- suite-lists:begin -->`` and ``<!-- suite-lists:end -->`` the document is
generated; the prose around them is written by hand. The bold count line is rewritten too.

Usage: ``python tests/compat/compat_doc.py [--check]`` (``--check``: exit 1 if out of date).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
EXPECTED = HERE / "ostree_suite_expected.txt"
DOC = HERE.parent.parent / "docs" / "compat.md"
BEGIN, END = "<!-- suite-lists:begin -->", "<!-- suite-lists:end -->"
TOTAL = 90  # the tests that pass with the real ostree here (the baseline)


def _entries(text: str) -> list[tuple[str, str, str]]:
    out = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, outcome, *rest = line.split(None, 2)
        out.append((name, outcome, rest[0] if rest else ""))
    return out


def render(expected: str) -> tuple[int, str]:
    """The number passing and the generated Markdown lists."""
    entries = _entries(expected)
    passing = [n for n, o, _ in entries if o == "pass"]
    both = [(n, r) for n, o, r in entries if o == "skip" and r.startswith("skips with the real ostree too")]
    gated = [(n, o, r) for n, o, r in entries if o == "skip" and (n, r) not in both]
    deliberate = [(n, o, r) for n, o, r in entries if o != "pass" and o != "skip" and r.startswith("deliberately different")]
    todo = [(n, o, r) for n, o, r in entries if o not in ("pass", "skip") and (n, o, r) not in deliberate]
    lines = [f"### Passing ({len(passing)})", ""] + [f"- `{n}`" for n in passing]
    lines += ["", f"### Not passing ({len(gated) + len(deliberate) + len(todo)})", ""]
    for title, group in (
        ("Deliberately different", deliberate),
        ("Skipping with bootree only (a feature `--version` does not list)", gated),
        ("Not implemented yet / not yet triaged", todo),
    ):
        if group:
            lines += [f"#### {title} ({len(group)})", ""] + [f"- `{n}` ({o}): {r}" for n, o, r in group] + [""]
    lines += [f"### Skipping with both tools ({len(both)})", ""]
    lines += [f"- `{n}`: {r.removeprefix('skips with the real ostree too: ')}" for n, r in both]
    return len(passing), "\n".join(lines) + "\n"


def rewrite(doc: str, expected: str) -> str:
    """``doc`` with its generated part and count line brought up to date."""
    count, lists = render(expected)
    start, end = doc.index(BEGIN) + len(BEGIN), doc.index(END)
    doc = doc[:start] + "\n\n" + lists + "\n" + doc[end:]
    return re.sub(r"\*\*With bootree as `ostree`, \d+ of those \d+ pass\.\*\*",
                  f"**With bootree as `ostree`, {count} of those {TOTAL} pass.**", doc)


def main(argv: list[str]) -> int:
    doc = DOC.read_text()
    new = rewrite(doc, EXPECTED.read_text())
    if "--check" in argv:
        if new != doc:
            print(f"{DOC} is out of date: run python {Path(__file__).relative_to(Path.cwd()) if Path(__file__).is_relative_to(Path.cwd()) else __file__}")
            return 1
        return 0
    DOC.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Run libostree's installed shell test suite with a chosen program as ``ostree``.

The suite (Debian ``ostree-tests``: ``/usr/libexec/installed-tests/libostree/test-*.sh``) was
written by people who never saw bootree, so it measures "an ostree user types the same line"
better than our own tests can. Each test runs alone, in a fresh empty directory (``libtest.sh``
refuses a non-empty one), with a timeout, and a directory holding an ``ostree`` shim first in
``PATH``; the test web server stays ostree's own ``ostree-trivial-httpd`` (``libtest.sh`` finds it
next to the suite).

Outcomes: ``pass`` (exit 0; a test whose subtests all report ``# SKIP`` counts as passing, as the
issue's baseline counts it), ``skip`` (exit 0 after a ``1..0`` plan: the test itself found a
missing tool or feature), ``fail`` (non-zero exit), ``timeout``.

The expected-results file lists one test a line: ``NAME pass`` for tests that must pass, or
``NAME fail|skip REASON`` for known failures and skips with the reason. ``--check`` compares a
run with it: a test expected to pass that does not is a regression (exit 1); a test that passes
but is not listed as ``pass`` is reported as newly passing so the list can grow.

Usage (from the checkout)::

    python tests/compat/ostree_suite.py --bootree            # shim execs .venv/bin/bootree
    python tests/compat/ostree_suite.py --real               # the real ostree, for reference
    python tests/compat/ostree_suite.py --bootree --check tests/compat/ostree_suite_expected.txt
    python tests/compat/ostree_suite.py --bootree test-refs.sh test-config.sh --keep
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

SUITE_DIR = Path("/usr/libexec/installed-tests/libostree")
META_DIR = Path("/usr/share/installed-tests/libostree")
OUTCOMES = ("pass", "fail", "skip", "timeout")


@dataclass(frozen=True)
class Result:
    """The outcome of one test script."""

    name: str
    outcome: str
    seconds: float
    detail: str  # the last lines of output when it did not pass, the skip reason when it skipped


@dataclass(frozen=True)
class Expectation:
    """One line of the expected-results file."""

    name: str
    outcome: str
    reason: str


def shell_tests(suite_dir: Path = SUITE_DIR, meta_dir: Path = META_DIR) -> list[str]:
    """Names of the suite's shell tests (those whose ``.test`` file runs a ``.sh``)."""
    names = []
    for meta in sorted(meta_dir.glob("*.test")):
        name = meta.name.removesuffix(".test")
        if name.endswith(".sh") and (suite_dir / name).is_file():
            names.append(name)
    return names


#: Relative cost of the slowest scripts (measured with bootree as ``ostree``; 1 for the rest):
#: the four ``admin-test.sh`` runs make about 600 ``ostree`` calls each.
WEIGHTS = {
    "test-admin-deploy-grub2.sh": 12, "test-admin-deploy-none.sh": 12, "test-admin-deploy-syslinux.sh": 12,
    "test-admin-deploy-uboot.sh": 12, "test-admin-deploy-2.sh": 6, "test-help.sh": 5, "test-refs.sh": 4,
    "test-admin-deploy-etcmerge-cornercases.sh": 4, "test-basic-user.sh": 4, "test-pull-bareuser.sh": 4,
    "test-pull-bareuseronly.sh": 4, "test-pull-bare.sh": 4, "test-delta.sh": 3, "test-remote-add.sh": 3,
    "test-admin-deploy-switch.sh": 3, "test-pull-mirror-summary.sh": 3, "test-admin-upgrade-not-backwards.sh": 3,
}


def split(names: list[str], parts: int) -> list[list[str]]:
    """``names`` in ``parts`` shares of about equal cost (:data:`WEIGHTS`), each sorted by name.

    So that the suite can run as several pytest tests, one on each xdist worker. Greedy: the
    costliest script goes to the cheapest share so far; the result depends on the names only.
    """
    shares: list[list[str]] = [[] for _ in range(parts)]
    cost = [0] * parts
    for name in sorted(names, key=lambda n: (-WEIGHTS.get(n, 1), n)):
        i = cost.index(min(cost))
        shares[i].append(name)
        cost[i] += WEIGHTS.get(name, 1)
    return [sorted(share) for share in shares]


def make_shim(directory: Path, target: list[str]) -> Path:
    """Make ``directory/ostree`` run ``target`` with its arguments.

    A single program becomes a symbolic link named ``ostree`` (so that the program sees that
    name in ``argv[0]``, as bootree uses it for usage texts); a command line becomes a script.
    """
    directory.mkdir(parents=True, exist_ok=True)
    shim = directory / "ostree"
    if len(target) == 1:
        shim.symlink_to(target[0])
        return shim
    words = " ".join("'" + w.replace("'", "'\\''") + "'" for w in target)
    shim.write_text(f'#!/bin/sh\nexec {words} "$@"\n')
    shim.chmod(0o755)
    return shim


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def run_one(name: str, shim_dir: Path, work_root: Path, timeout: float, keep: bool) -> Result:
    """Run one test script in a fresh directory under ``work_root``; never raises on test failure."""
    workdir = Path(tempfile.mkdtemp(prefix=name.removesuffix(".sh") + ".", dir=work_root))
    env = dict(os.environ)
    env["PATH"] = f"{shim_dir}:{env.get('PATH', '/usr/bin:/bin')}"
    env["G_TEST_SRCDIR"] = str(SUITE_DIR)
    env["G_TEST_BUILDDIR"] = str(SUITE_DIR)
    env["LC_ALL"] = "C.UTF-8"
    env["TMPDIR"] = str(workdir)  # tests' own mktemp stays inside the directory we remove
    for var in ("OSTREE_REPO", "OSTREE_SYSROOT", "OSTREE_SYSROOT_DEBUG"):
        env.pop(var, None)
    start = time.monotonic()
    with open(workdir.parent / (workdir.name + ".log"), "w+b") as log:
        proc = subprocess.Popen(
            [str(SUITE_DIR / name)], cwd=workdir, env=env, stdin=subprocess.DEVNULL,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        try:
            rc: int | None = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            rc = None
        # The test's daemons (trivial-httpd --autoexit) and stragglers share its session: end them.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        log.seek(0)
        output = log.read().decode("utf-8", "replace")
    seconds = time.monotonic() - start
    if rc is None:
        outcome, detail = "timeout", _tail(output)
    elif rc != 0:
        outcome, detail = "fail", _tail(output)
    else:
        # A TAP plan of 1..0 skips the whole test ("1..0 # SKIP why", some tests write "#SKIP").
        skip = next((ln for ln in output.splitlines() if ln.startswith("1..0")), None)
        ran = any(ln.startswith("ok ") for ln in output.splitlines())
        if skip is not None and not ran:
            outcome, detail = "skip", skip.removeprefix("1..0").strip().lstrip("#").strip().removeprefix("SKIP").strip()
        else:
            outcome, detail = "pass", ""
    if not keep:
        _remove_tree(workdir)
        (workdir.parent / (workdir.name + ".log")).unlink(missing_ok=True)
    return Result(name, outcome, round(seconds, 1), detail)


def _remove_tree(path: Path) -> None:
    """Remove a test's directory, unlocking immutable deployment roots (``chattr +i``) first."""
    if shutil.which("chattr"):
        subprocess.run(["chattr", "-R", "-i", str(path)], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=False)
    shutil.rmtree(path, ignore_errors=True)


def run_suite(names: list[str], target: list[str], *, jobs: int = 2, timeout: float = 60.0,
              keep: bool = False, work_root: Path | None = None,
              progress: bool = False) -> list[Result]:
    """Run ``names`` with a shim for ``target`` first in PATH, ``jobs`` at a time."""
    root = Path(tempfile.mkdtemp(prefix="ostree-suite.", dir=work_root))
    shim_dir = root / "bin"
    make_shim(shim_dir, target)
    results: list[Result] = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(run_one, n, shim_dir, root, timeout, keep) for n in names]
        for fut in concurrent.futures.as_completed(futures):
            res = fut.result()
            results.append(res)
            if progress:
                print(f"{res.outcome:8} {res.seconds:6.1f}s {res.name}", file=sys.stderr, flush=True)
    if not keep:
        _remove_tree(root)
    else:
        print(f"kept work directories under {root}", file=sys.stderr)
    return sorted(results, key=lambda r: r.name)


def load_expected(path: Path) -> dict[str, Expectation]:
    """Parse the expected-results file (``NAME OUTCOME [REASON]``, ``#`` comments)."""
    expected: dict[str, Expectation] = {}
    for lineno, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 2)
        if len(parts) < 2 or parts[1] not in OUTCOMES:
            raise ValueError(f"{path}:{lineno}: expected 'NAME pass|fail|skip [REASON]'")
        if parts[1] != "pass" and len(parts) < 3:
            raise ValueError(f"{path}:{lineno}: a known failure or skip needs its reason")
        if parts[0] in expected:
            raise ValueError(f"{path}:{lineno}: {parts[0]} listed twice")
        expected[parts[0]] = Expectation(parts[0], parts[1], parts[2] if len(parts) > 2 else "")
    return expected


@dataclass(frozen=True)
class Comparison:
    """A run set against the expected results."""

    regressions: list[Result]  # expected to pass, did not
    newly_passing: list[Result]  # passed, not listed as pass
    unlisted: list[str]  # tests of the suite the file does not mention
    passed: int
    total: int


def compare(results: list[Result], expected: dict[str, Expectation]) -> Comparison:
    """Regressions, newly passing tests and unlisted tests of one run."""
    regressions = [r for r in results if r.name in expected and expected[r.name].outcome == "pass"
                   and r.outcome != "pass"]
    newly = [r for r in results if r.outcome == "pass"
             and (r.name not in expected or expected[r.name].outcome != "pass")]
    unlisted = [r.name for r in results if r.name not in expected]
    passed = sum(r.outcome == "pass" for r in results)
    return Comparison(regressions, newly, unlisted, passed, len(results))


def report(cmp: Comparison) -> str:
    """Human-readable summary of a comparison."""
    lines = [f"{cmp.passed} of {cmp.total} shell tests passed"]
    for r in cmp.regressions:
        lines.append(f"REGRESSION {r.name}: {r.outcome} after {r.seconds}s\n{r.detail}")
    for r in cmp.newly_passing:
        lines.append(f"newly passing (add '{r.name} pass' to the expected list): {r.name}")
    for name in cmp.unlisted:
        lines.append(f"not in the expected list: {name}")
    return "\n".join(lines)


def bootree_command() -> list[str]:
    """How the shim starts bootree: the console script next to this Python, else ``-m bootree``."""
    script = Path(sys.executable).parent / "bootree"
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-m", "bootree"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--bootree", action="store_true", help="the shim execs bootree")
    who.add_argument("--real", action="store_true", help="the shim execs the real ostree")
    parser.add_argument("tests", nargs="*", help="test names (default: every shell test)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--keep", action="store_true", help="keep work directories and logs")
    parser.add_argument("--check", type=Path, help="expected-results file to compare with")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    if args.real:
        real = shutil.which("ostree")
        if real is None:
            parser.error("ostree is not installed")
        target = [os.path.realpath(real)]
    else:
        target = bootree_command()
    names = args.tests or shell_tests()
    results = run_suite(names, target, jobs=args.jobs, timeout=args.timeout, keep=args.keep,
                        progress=True)
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=1) + "\n")
    for r in results:
        if r.outcome not in ("pass", "skip"):
            print(f"--- {r.name}: {r.outcome}\n{r.detail}")
    if args.check:
        cmp = compare(results, load_expected(args.check))
        print(report(cmp))
        return 1 if cmp.regressions else 0
    print(f"{sum(r.outcome == 'pass' for r in results)} of {len(results)} passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())

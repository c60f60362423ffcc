"""The import rules of docs/architecture.md, checked by reading the source with ``ast``.

import-linter (tests/test_linters.py) checks the full layering; this test re-checks the rules
that matter most without any third-party tool, so it also runs where import-linter is absent:

* ``bootree.format`` is pure: from bootree it imports only ``bootree.errors`` and itself;
* ``bootree.repo`` imports only ``bootree.format``, ``bootree._fs``, ``bootree.errors`` and itself;
* nothing imports ``bootree.cli`` except the CLI itself and ``bootree.__main__``.

Imports are collected everywhere in a module (inside functions and ``if TYPE_CHECKING:`` too).
Packages that do not exist yet are simply not checked; new ones are checked as they appear.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PKG_DIR = Path(__file__).resolve().parent.parent / "src" / "bootree"


def module_name(path: Path, pkg_dir: Path = PKG_DIR) -> str:
    """Dotted module name of a source file under ``pkg_dir`` (a package's ``__init__`` is the package)."""
    parts = list(path.relative_to(pkg_dir.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_submodule(dotted: str, pkg_dir: Path) -> bool:
    rel = Path(*dotted.split(".")[1:])
    base = pkg_dir / rel
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file() or base.is_dir()


def imported_modules(source: str, name: str, *, is_package: bool, pkg_dir: Path = PKG_DIR) -> set[str]:
    """Every bootree module that the module ``name`` imports, as dotted names.

    ``from X import y`` counts as importing ``X.y`` when that is a module, else ``X``; relative
    imports are resolved against ``name``.
    """
    root = pkg_dir.name
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = name.split(".") if is_package else name.split(".")[:-1]
                if node.level > 1:
                    package = package[: -(node.level - 1)]
                base = ".".join([*package, node.module] if node.module else package)
            else:
                base = node.module or ""
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if _is_submodule(candidate, pkg_dir) else base)
    return {m for m in found if m == root or m.startswith(root + ".")}


def iter_imports(pkg_dir: Path = PKG_DIR) -> Iterator[tuple[str, str]]:
    """Yield ``(importer, imported)`` for every bootree-internal import in the package."""
    for path in sorted(pkg_dir.rglob("*.py")):
        name = module_name(path, pkg_dir)
        source = path.read_text(encoding="utf-8")
        for imported in sorted(
            imported_modules(source, name, is_package=path.name == "__init__.py", pkg_dir=pkg_dir)
        ):
            yield name, imported


def _within(module: str, *packages: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def _violations(importer_pkg: str, allowed: tuple[str, ...]) -> list[str]:
    return [
        f"{importer} imports {imported}"
        for importer, imported in iter_imports()
        if _within(importer, importer_pkg) and not _within(imported, *allowed)
    ]


def test_format_is_pure() -> None:
    assert _violations("bootree.format", ("bootree.format", "bootree.errors")) == []


def test_repo_imports_only_format_fs_errors() -> None:
    allowed = ("bootree.repo", "bootree.format", "bootree._fs", "bootree.errors")
    assert _violations("bootree.repo", allowed) == []


def test_nothing_imports_cli() -> None:
    bad = [
        f"{importer} imports {imported}"
        for importer, imported in iter_imports()
        if _within(imported, "bootree.cli") and not _within(importer, "bootree.cli", "bootree.__main__")
    ]
    assert bad == []


def test_the_checker_sees_imports(tmp_path: Path) -> None:
    """The collector itself: absolute, relative, ``from pkg import module`` and nested imports."""
    pkg = tmp_path / "bootree"
    for sub in ("format", "repo", "cli"):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "errors.py").write_text("")
    (pkg / "format" / "objects.py").write_text("")
    source = (
        "import os\n"
        "import bootree.errors\n"
        "from . import objects\n"
        "from .. import repo\n"
        "from ..cli import main\n"
        "from bootree import __version__\n"
        "def f() -> None:\n"
        "    from bootree.repo import Repo\n"
    )
    got = imported_modules(source, "bootree.format.gvariant", is_package=False, pkg_dir=pkg)
    assert got == {"bootree", "bootree.errors", "bootree.format.objects", "bootree.repo", "bootree.cli"}
    assert module_name(pkg / "format" / "__init__.py", pkg) == "bootree.format"


def test_install_and_health_stay_above_sysroot_and_offline() -> None:
    """install/ and health/ (issue 5) are siblings above sysroot: no network layers, no host, not each other."""
    for pkg, sibling in (("bootree.install", "bootree.health"), ("bootree.health", "bootree.install")):
        bad = [
            f"{importer} imports {imported}"
            for importer, imported in iter_imports()
            if _within(importer, pkg)
            and _within(imported, "bootree.transport", "bootree.pull", "bootree.oci", "bootree.host", "bootree.cli",
                        sibling)
        ]
        assert bad == []
    assert _violations("bootree.sysroot", tuple(
        f"bootree.{p}" for p in ("sysroot", "repo", "format", "_fs", "_run", "errors", "delta", "composefs", "sign")
    )) == []


OCI_PUBLISH = ("bootree.oci.export", "bootree.oci.push", "bootree.oci.chunking", "bootree.oci.tarexport",
               "bootree.oci.zchunkwrite")
OCI_PULL = ("bootree.oci.importer", "bootree.oci.layer", "bootree.oci.source", "bootree.oci.registry",
            "bootree.oci.reference", "bootree.oci.auth", "bootree.oci.partial", "bootree.oci.zchunked",
            "bootree.oci.zchunktar")


def test_oci_pull_side_never_imports_the_publishing_side() -> None:
    """Importing images does not depend on exporting them (issue 11): the pull modules never import
    export/push/chunking/tarexport, and the tar writer and the chunk planner never touch the network."""
    bad = [f"{importer} imports {imported}" for importer, imported in iter_imports()
           if importer in OCI_PULL and _within(imported, *OCI_PUBLISH)]
    bad += [f"{importer} imports {imported}" for importer, imported in iter_imports()
            if importer in ("bootree.oci.chunking", "bootree.oci.tarexport", "bootree.oci.zchunkwrite",
                            "bootree.oci.zchunked", "bootree.oci.zchunktar")
            and _within(imported, "bootree.oci.registry", "bootree.oci.push", "bootree.transport")]
    assert bad == []

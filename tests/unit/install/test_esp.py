"""The ESP mirror (bootree.sysroot.esp): names, the loader model, plans, crash safety, blessing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bootree.errors import SysrootError
from bootree.format.kargs import Kargs
from bootree.sysroot import esp
from bootree.sysroot.esp import CountState, EntryName, EspDeployment

C1, C2, C3 = "1" * 64, "2" * 64, "3" * 64
K1 = "a" * 64


def dep(tmp_path: Path, csum: str, bootcsum: str = K1) -> EspDeployment:
    k = tmp_path / "kernels" / bootcsum
    k.mkdir(parents=True, exist_ok=True)
    (k / "vmlinuz").write_bytes(b"kernel " + bootcsum.encode())
    (k / "initrd").write_bytes(b"initrd " + bootcsum.encode())
    return EspDeployment("os", f"{csum}.0", bootcsum, k / "vmlinuz", k / "initrd", f"OS {csum[:1]}",
                         Kargs.parse("root=LABEL=r rw ostree=/ostree/boot.1/os/x/0"))


def apply(esp_dir: Path, deps: list[EspDeployment], tries: int = 3) -> list[esp.Op]:
    return esp.sync(esp_dir, deps, tries=tries)


def conf(esp_dir: Path) -> list[str]:
    return esp.list_entries(esp_dir)


def test_entry_names_round_trip_and_states() -> None:
    n = EntryName.parse(f"bootree-12-os-{C1}.3+1-2.conf")
    assert n == EntryName(12, "os", f"{C1}.3", 1, 2)
    assert n.filename == f"bootree-12-os-{C1}.3+1-2.conf" and n.state is CountState.INDETERMINATE
    assert EntryName.parse(f"bootree-1-my-os-{C1}.0.conf") == EntryName(1, "my-os", f"{C1}.0")
    assert EntryName.parse(f"bootree-1-os-{C1}.0+0-3.conf").state is CountState.BAD  # type: ignore[union-attr]
    assert EntryName(4, "os", f"{C1}.0", 3).filename == f"bootree-4-os-{C1}.0+3.conf"
    assert EntryName.parse("ostree-1-os.conf") is None
    assert esp.strip_counter("a+1-2.conf") == "a.conf" and esp.strip_counter("a+3.conf") == "a.conf"
    assert esp.counter_state("a.conf") is CountState.GOOD


def test_loader_model_orders_like_systemd_boot() -> None:
    # newest id first; a bad entry after every other; names the loader ignores do not count
    assert esp.loader_default(["bootree-9-os-x.conf", "bootree-10-os-y+3.conf"]) == "bootree-10-os-y+3.conf"
    assert esp.loader_default(["bootree-9-os-x.conf", "bootree-10-os-y+0-3.conf"]) == "bootree-9-os-x.conf"
    assert esp.loader_default(["bootree-9-os-x.conf", ".bootree-10.tmp"]) == "bootree-9-os-x.conf"
    assert esp.loader_default(["a+0-1.conf"]) == "a+0-1.conf"  # only a bad one: it still boots
    assert esp.loader_default([]) is None


def test_first_sync_writes_loader_conf_kernel_and_counted_entry(tmp_path: Path) -> None:
    e = tmp_path / "esp"
    e.mkdir()
    apply(e, [dep(tmp_path, C1)])
    assert conf(e) == [f"bootree-1-os-{C1}.0+3.conf"]
    loader = (e / "loader/loader.conf").read_text()
    assert "default" not in loader and "timeout 0" in loader
    text = (e / "loader/entries" / conf(e)[0]).read_text()
    assert f"options root=LABEL=r rw ostree=/ostree/deploy/os/deploy/{C1}.0\n" in text
    assert f"linux /EFI/bootree/{K1}/vmlinuz\n" in text and "version 1\n" in text
    assert (e / f"EFI/bootree/{K1}/initrd").read_bytes() == b"initrd " + K1.encode()
    # nothing left to do: a second plan only re-checks directories
    assert {op.kind for op in esp.plan_sync(e, [dep(tmp_path, C1)])} == {"mkdir"}
    assert not [f for f in os.listdir(e / "loader/entries") if f.startswith(".")]


def test_new_default_is_counted_old_one_kept_and_uncounted_when_tries_zero(tmp_path: Path) -> None:
    e = tmp_path / "esp"
    apply(e, [dep(tmp_path, C1)], tries=0)
    assert conf(e) == [f"bootree-1-os-{C1}.0.conf"]
    apply(e, [dep(tmp_path, C2), dep(tmp_path, C1)])
    assert conf(e) == [f"bootree-1-os-{C1}.0.conf", f"bootree-2-os-{C2}.0+3.conf"]
    assert esp.loader_default(conf(e)) == f"bootree-2-os-{C2}.0+3.conf"


def test_reorder_gives_a_fresh_entry_and_keeps_counters(tmp_path: Path) -> None:
    e = tmp_path / "esp"
    apply(e, [dep(tmp_path, C1)], tries=0)
    apply(e, [dep(tmp_path, C2), dep(tmp_path, C1)])
    os.rename(e / "loader/entries" / f"bootree-2-os-{C2}.0+3.conf", e / "loader/entries" / f"bootree-2-os-{C2}.0+0-3.conf")
    apply(e, [dep(tmp_path, C1), dep(tmp_path, C2)])  # rollback made permanent
    assert conf(e) == [f"bootree-2-os-{C2}.0+0-3.conf", f"bootree-3-os-{C1}.0.conf"]
    apply(e, [dep(tmp_path, C3, "b" * 64), dep(tmp_path, C1)])  # v2 dropped, its kernel unused
    assert conf(e) == [f"bootree-3-os-{C1}.0.conf", f"bootree-4-os-{C3}.0+3.conf"]
    assert sorted(os.listdir(e / "EFI/bootree")) == ["a" * 64, "b" * 64]
    apply(e, [dep(tmp_path, C3, "b" * 64)])
    assert os.listdir(e / "EFI/bootree") == ["b" * 64]


@pytest.mark.parametrize("tries", [0, 3])
def test_every_intermediate_state_boots_old_or_new_default(tmp_path: Path, tries: int) -> None:
    """A power cut before any operation: the model loader picks the old or the new default, and
    every file that entry names exists (each op is applied in order, as execute does)."""
    transitions = [
        ([dep(tmp_path, C1)], [dep(tmp_path, C2, "b" * 64), dep(tmp_path, C1)]),
        ([dep(tmp_path, C2, "b" * 64), dep(tmp_path, C1)], [dep(tmp_path, C1), dep(tmp_path, C2, "b" * 64)]),
        ([dep(tmp_path, C1), dep(tmp_path, C2, "b" * 64)], [dep(tmp_path, C3, "c" * 64), dep(tmp_path, C1)]),
    ]
    base = tmp_path / "esp"
    apply(base, transitions[0][0], tries=tries)
    for _old, new in transitions:  # each starts where the previous one ended
        old_default = esp.loader_default(conf(base))
        ops = esp.plan_sync(base, new, tries=tries)
        for k in range(len(ops) + 1):
            cut = tmp_path / f"cut{k}"
            os.system(f"rm -rf {cut} && cp -a {base} {cut}")
            esp.execute(cut, ops[:k])
            chosen = esp.loader_default(conf(cut))
            assert chosen is not None
            n = EntryName.parse(chosen)
            assert n is not None
            assert chosen == old_default or n.deployment == new[0].deployment, (k, ops[k - 1].describe() if k else "")
            text = (cut / "loader/entries" / chosen).read_text()
            for line in text.splitlines():
                if line.startswith(("linux ", "initrd ")):
                    assert (cut / line.split(" ", 1)[1].lstrip("/")).is_file(), (k, line)
            assert "default" not in (cut / "loader/loader.conf").read_text()
        esp.execute(base, ops)
        assert EntryName.parse(esp.loader_default(conf(base)) or "").deployment == new[0].deployment  # type: ignore[union-attr]


def test_interrupted_sync_leftovers_are_cleaned(tmp_path: Path) -> None:
    e = tmp_path / "esp"
    apply(e, [dep(tmp_path, C1)])
    (e / "loader/entries/.bootree-7.tmp").write_text("half")
    apply(e, [dep(tmp_path, C1)])
    assert conf(e) == [f"bootree-1-os-{C1}.0+3.conf"]


def test_bless_and_mark_bad(tmp_path: Path) -> None:
    e = tmp_path / "esp"
    apply(e, [dep(tmp_path, C1)])
    os.rename(e / "loader/entries" / f"bootree-1-os-{C1}.0+3.conf", e / "loader/entries" / f"bootree-1-os-{C1}.0+2-1.conf")
    count_path = f"\\loader\\entries\\bootree-1-os-{C1}.0+2-1.conf"
    assert esp.bless(e, count_path) == f"bootree-1-os-{C1}.0.conf"
    assert esp.bless(e, count_path) is None  # idempotent: already renamed
    assert esp.bless(e, None) is None
    # a counter-less twin: refuse (systemd #33504)
    (e / "loader/entries" / f"bootree-1-os-{C1}.0+1-2.conf").write_text("x")
    with pytest.raises(SysrootError, match="exists too"):
        esp.bless(e, f"\\loader\\entries\\bootree-1-os-{C1}.0+1-2.conf")
    assert esp.mark_bad(e, f"\\loader\\entries\\bootree-1-os-{C1}.0+1-2.conf") == f"bootree-1-os-{C1}.0+0-2.conf"
    with pytest.raises(SysrootError, match="invalid"):
        esp.bless(e, "\\..\\etc\\passwd+1.conf")


def test_a_default_line_is_removed_from_loader_conf(tmp_path: Path) -> None:
    """A pin would make systemd-boot boot a bad entry again and again (boot-chain.md §3)."""
    e = tmp_path / "esp"
    (e / "loader").mkdir(parents=True)
    (e / "loader/loader.conf").write_text("timeout 3\ndefault bootree-*\n")
    apply(e, [dep(tmp_path, C1)])
    assert (e / "loader/loader.conf").read_text() == "timeout 3\n"

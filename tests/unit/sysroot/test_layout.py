"""Path arithmetic and the Origin/Deployment values."""

from __future__ import annotations

import pytest

from bootree.errors import SysrootError
from bootree.format.checksum import Checksum
from bootree.format.kargs import Kargs
from bootree.sysroot import layout
from bootree.sysroot.deployment import Deployment, Origin

C = Checksum("ab" * 32)
B = "cd" * 32


def test_paths_match_ostree_layout() -> None:
    assert str(layout.deploy_dir("os", C, 1)) == f"ostree/deploy/os/deploy/{C}.1"
    assert str(layout.origin_path("os", C, 0)) == f"ostree/deploy/os/deploy/{C}.0.origin"
    assert str(layout.bootlink_path(0, 1, "os", B, 2)) == f"ostree/boot.0.1/os/{B}/2"
    assert layout.bootlink_target("os", C, 0) == f"../../../deploy/os/deploy/{C}.0"
    assert layout.ostree_karg(1, "os", B, 0) == f"/ostree/boot.1/os/{B}/0"
    assert str(layout.kernel_dir("os", B)) == f"boot/ostree/os-{B}"
    assert layout.kernel_dir_boot_relative("os", B) == f"/ostree/os-{B}"
    assert layout.entry_filename(2, "os") == "ostree-2-os.conf"
    assert layout.deployment_ref(0, 1, 3) == "ostree/0/1/3"


def test_parsers_round_trip_and_reject() -> None:
    link = layout.parse_ostree_karg(layout.ostree_karg(1, "os", B, 3))
    assert (link.bootversion, link.stateroot, link.bootcsum, link.bootserial) == (1, "os", B, 3)
    assert layout.parse_deploy_name(f"{C}.12") == (C, 12)
    for bad in ("x.0", f"{C}", f"{C}.x"):
        with pytest.raises(SysrootError):
            layout.parse_deploy_name(bad)
    with pytest.raises(SysrootError):
        layout.parse_ostree_karg("/ostree/boot.2/os/x/0")
    for bad in ("", "a/b", ".hidden", "a b"):
        with pytest.raises(SysrootError):
            layout.validate_stateroot(bad)


def test_origin_pin_unpin_text_as_ostree() -> None:
    o = Origin.for_refspec("myos/x86_64/stable")
    assert o.text == "[origin]\nrefspec=myos/x86_64/stable\n"
    p = o.with_pinned(True)
    assert p.text == "[origin]\nrefspec=myos/x86_64/stable\n\n[libostree-transient]\npinned=true\n"
    assert p.pinned and not o.pinned
    # ostree 2022.7 leaves the empty group behind on unpin (verified byte for byte).
    assert p.with_pinned(False).text == "[origin]\nrefspec=myos/x86_64/stable\n\n[libostree-transient]\n"
    assert Origin("[origin]\ncontainer-image-reference=ostree-unverified-registry:q/x:1\n").container_image_reference


def test_deployment_identity() -> None:
    d = Deployment("os", C, 0, B, kargs=Kargs.parse("quiet"), origin=Origin.for_refspec("r"))
    assert d.name == f"{C}.0"
    assert d.same(d.with_(bootserial=3, kargs=Kargs()))
    assert not d.same(d.with_(deployserial=1))
    assert d.refspec == "r" and not d.pinned

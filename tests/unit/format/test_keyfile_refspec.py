"""GLib key files (round-trip keeps unknown keys) and ref name rules."""

from __future__ import annotations

import pytest

from bootree.errors import InvalidRefName, KeyFileError
from bootree.format.keyfile import KeyFile
from bootree.format.refspec import RefSpec, parse_refspec, validate_ref_name

CONFIG = """[core]
repo_version=1
mode=archive-z2

# a comment kept verbatim
[remote "origin"]
url=http://example.invalid/repo
gpg-verify=false
tls-ca-path=/etc/pki/x.pem
"""


def test_keyfile_roundtrip_and_edit() -> None:
    kf = KeyFile.from_text(CONFIG)
    assert kf.to_text() == CONFIG
    assert kf.get("core", "mode") == "archive-z2"
    assert kf.get_bool("remote \"origin\"", "gpg-verify", True) is False
    kf.set("core", "fsync", "false")
    kf.set("core", "mode", "bare")
    text = kf.to_text()
    assert "mode=bare\nfsync=false" in text and "tls-ca-path=/etc/pki/x.pem" in text and "# a comment" in text
    assert kf.remove_group('remote "origin"')
    assert "origin" not in kf.to_text()


@pytest.mark.parametrize("bad", ["key=value\n", "[core\nx=1\n", "[core]\nnovalue\n"])
def test_keyfile_errors(bad: str) -> None:
    with pytest.raises(KeyFileError):
        KeyFile.from_text(bad)


@pytest.mark.parametrize("name", ["os/main", "a", "_x", "fedora/39/x86_64/coreos", "a.b-c_d"])
def test_valid_refs(name: str) -> None:
    assert validate_ref_name(name) == name


@pytest.mark.parametrize("name", ["", "/a", "a/", "a//b", "../x", "a/../b", ".hidden", "-x", "a b", "a:b", "a\nb"])
def test_invalid_refs(name: str) -> None:
    with pytest.raises(InvalidRefName):
        validate_ref_name(name)


def test_refspec() -> None:
    assert parse_refspec("origin:os/main") == RefSpec("origin", "os/main")
    assert str(parse_refspec("os/main")) == "os/main"
    with pytest.raises(InvalidRefName):
        parse_refspec("bad/remote:x")

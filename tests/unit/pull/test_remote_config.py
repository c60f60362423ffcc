"""Remote sections of the repo config, written the way 'ostree remote add' writes them."""

from __future__ import annotations

import pytest

from bootree.errors import InvalidRefName, RemoteExists, RemoteNotFound
from bootree.format.keyfile import KeyFile
from bootree.pull.remote import add_remote, delete_remote, get_remote, list_remotes

BASE = "[core]\nrepo_version=1\nmode=archive-z2\n"


def test_add_matches_ostree_layout() -> None:
    kf = KeyFile.from_text(BASE)
    add_remote(
        kf,
        "o3",
        "http://z/",
        branches=["b1", "b2"],
        contenturl="http://c/",
        options=[("foo", "1")],
        gpg_verify=False,
        collection_id="org.x.Y",
    )
    add_remote(kf, "o4", "file:///tmp/x", gpg_verify=False, sign_verify=False)
    # byte-for-byte what ostree 2022.7 wrote for the same commands
    assert kf.to_text() == (
        BASE + '\n[remote "o3"]\nurl=http://z/\nbranches=b1;b2;\ncontenturl=http://c/\nfoo=1\n'
        "gpg-verify=false\ncollection-id=org.x.Y\n"
        '\n[remote "o4"]\nurl=file:///tmp/x\ngpg-verify=false\nsign-verify=false\n'
    )
    r = get_remote(kf, "o3")
    assert r.url == "http://z/" and r.content_url == "http://c/" and r.branches == ["b1", "b2"]
    assert not r.gpg_verify and r.collection_id == "org.x.Y"
    assert [x.name for x in list_remotes(kf)] == ["o3", "o4"]


def test_unknown_keys_kept_verbatim() -> None:
    text = BASE + '\n[remote "origin"]\nurl=https://x/\ntls-permissive=true\nx-vendor-key=keep me\n'
    kf = KeyFile.from_text(text)
    r = get_remote(kf, "origin")
    assert r.get("x-vendor-key") == "keep me" and r.gpg_verify  # ostree's default
    assert not r.fetch_config().tls_verify
    add_remote(kf, "other", "http://y/")
    assert kf.to_text().startswith(text)


def test_exists_force_if_not_exists() -> None:
    kf = KeyFile.from_text(BASE)
    add_remote(kf, "o", "http://a/")
    with pytest.raises(RemoteExists):
        add_remote(kf, "o", "http://b/")
    assert not add_remote(kf, "o", "http://b/", if_not_exists=True)
    assert get_remote(kf, "o").url == "http://a/"
    add_remote(kf, "o", "http://b/", force=True)
    assert get_remote(kf, "o").url == "http://b/"


def test_delete_and_missing() -> None:
    kf = KeyFile.from_text(BASE)
    add_remote(kf, "o", "http://a/")
    assert delete_remote(kf, "o")
    with pytest.raises(RemoteNotFound):
        delete_remote(kf, "o")
    assert not delete_remote(kf, "o", if_exists=True)
    with pytest.raises(RemoteNotFound):
        get_remote(kf, "o")
    with pytest.raises(InvalidRefName):
        add_remote(kf, "bad/name", "http://a/")


def test_per_remote_rate_and_buffer_keys() -> None:
    import pytest

    from bootree.errors import KeyFileError
    from bootree.pull.options import MiB, PullConfig, parse_size
    from bootree.pull.remote import Remote

    r = Remote("o", (("url", "http://x/"), ("low-speed-limit-bytes", "500"), ("low-speed-time-seconds", "12"),
                     ("download-buffer-size", "8M")))
    fc = r.fetch_config()
    assert (fc.low_speed_limit, fc.low_speed_time) == (500.0, 12.0)
    assert PullConfig().for_remote(r.get, r.name).max_buffered_bytes == 8 * MiB
    assert PullConfig().for_remote(Remote("p", ()).get, "p") == PullConfig()
    assert [parse_size(s) for s in ("1048576", "2M", "1G", "4096K", "3MiB")] == [MiB, 2 * MiB, 1024 * MiB, 4 * MiB, 3 * MiB]
    for bad in ("", "x", "12Q", "1K"):
        with pytest.raises(ValueError):
            parse_size(bad)
    with pytest.raises(KeyFileError, match="low-speed-limit-bytes"):
        Remote("o", (("low-speed-limit-bytes", "fast"),)).fetch_config()
    with pytest.raises(KeyFileError, match="download-buffer-size"):
        PullConfig().for_remote(Remote("o", (("download-buffer-size", "1K"),)).get, "o")

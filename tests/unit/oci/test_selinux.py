"""Relabeling a commit with the SELinux policy in its own tree (synthetic policy directory; the
host needs no SELinux: the labels are xattrs of the objects, in their checksums)."""

from __future__ import annotations

from pathlib import Path

import pytest
from commitgen import D, F, base_spec, write_commit

from bootree.errors import ImageError
from bootree.format.checksum import Checksum
from bootree.format.objects import Xattrs
from bootree.oci.selinux import SELINUX_XATTR, label_commit, policy_of_commit
from bootree.repo import Repo
from bootree.repo.reader import EntryKind

FC = """\
/.*                     system_u:object_r:default_t:s0
/usr(/.*)?              system_u:object_r:usr_t:s0
/usr/bin(/.*)?          system_u:object_r:bin_t:s0
/usr/bin/tool   --      system_u:object_r:tool_exec_t:s0
/etc(/.*)?              system_u:object_r:etc_t:s0
/usr/lib/debug(/.*)?    <<none>>
/mnt(/.*)?              system_u:object_r:mnt_t:s0
"""


def _spec(config: str = "SELINUX=enforcing\nSELINUXTYPE=targeted\n", subs: str = "") -> dict[str, F | D]:
    spec: dict[str, F | D] = {**base_spec(), "usr/bin/tool": F(b"tool", 0o755), "usr/bin/sh": F(target="tool"),
                              "usr/lib/debug/x": F(b"dbg", xattrs=((b"security.selinux", b"old_t\0"),)),
                              "usr/etc/hosts": F(b"127.0.0.1\n", xattrs=((b"user.keep", b"1"),)),
                              "proc": D(), "usr/etc/selinux/config": F(config.encode()),
                              "usr/etc/selinux/targeted/contexts/files/file_contexts": F(FC.encode())}
    if subs:
        spec["usr/etc/selinux/targeted/contexts/files/file_contexts.subs_dist"] = F(subs.encode())
    return spec


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    return Repo.init(tmp_path / "repo")


def _labels(repo: Repo, commit: Checksum) -> dict[str, Xattrs]:
    out = {"/": repo.read_dirmeta(repo.read_commit(commit).root_meta).xattrs}
    for e in repo.walk_entries(commit, "/"):
        if e.kind is EntryKind.FILE:
            out[e.path] = repo.stat_file(e.checksum)[0].xattrs
        elif e.meta is not None:
            out[e.path] = repo.read_dirmeta(e.meta).xattrs
    return out


def _ctx(xattrs: Xattrs) -> str | None:
    got = dict(xattrs).get(SELINUX_XATTR)
    return got.rstrip(b"\0").decode().split(":")[2] if got else None


def test_labels_follow_the_trees_policy(repo: Repo) -> None:
    csum = write_commit(repo, _spec(subs="/usr/etc /etc\n"))
    policy = policy_of_commit(repo, csum)
    assert policy is not None and policy.name == "targeted" and policy.root == "usr/etc/selinux/targeted"
    new, n = label_commit(repo, csum, policy, ref="labeled")
    assert new != csum and n > 0 and repo.resolve_rev("labeled") == new
    labels = _labels(repo, new)
    assert _ctx(labels["/"]) == "default_t" and _ctx(labels["/usr"]) == "usr_t"
    assert _ctx(labels["/usr/bin/tool"]) == "tool_exec_t" and _ctx(labels["/usr/bin/sh"]) == "bin_t"
    assert _ctx(labels["/proc"]) == "mnt_t", "/proc is labeled as /mnt (ostree's rule)"
    assert _ctx(labels["/usr/etc/hosts"]) == "etc_t", "file_contexts.subs_dist aliases /usr/etc to /etc"
    assert dict(labels["/usr/etc/hosts"])[b"user.keep"] == b"1", "other xattrs are kept"
    assert labels["/usr/lib/debug/x"] == ((SELINUX_XATTR, b"old_t\0"),), "<<none>> leaves the object alone"
    assert dict(labels["/usr/bin/tool"])[SELINUX_XATTR] == b"system_u:object_r:tool_exec_t:s0\0"
    # The same tree gives the same labeled commit; relabeling a labeled tree changes nothing.
    again, _ = label_commit(repo, csum, policy)
    assert again == new and label_commit(repo, new, policy) == (new, 0)
    meta_old, meta_new = repo.read_commit(csum), repo.read_commit(new)
    assert (meta_new.metadata, meta_new.parent, meta_new.timestamp) == (meta_old.metadata, meta_old.parent,
                                                                        meta_old.timestamp)
    assert repo.fsck().ok


def test_without_subs_usr_etc_is_looked_up_as_is(repo: Repo) -> None:
    csum = write_commit(repo, _spec())
    policy = policy_of_commit(repo, csum)
    assert policy is not None
    new, _ = label_commit(repo, csum, policy)
    assert _ctx(_labels(repo, new)["/usr/etc/hosts"]) == "usr_t"


@pytest.mark.parametrize("config", ["SELINUX=disabled\nSELINUXTYPE=targeted\n", "SELINUXTYPE=targeted\n"])
def test_disabled_policy_labels_nothing(repo: Repo, config: str) -> None:
    assert policy_of_commit(repo, write_commit(repo, _spec(config))) is None
    assert policy_of_commit(repo, write_commit(repo, base_spec())) is None


def test_enabled_policy_without_file_contexts(repo: Repo) -> None:
    spec = _spec("SELINUX=permissive\nSELINUXTYPE=mls\n")
    with pytest.raises(ImageError, match="mls/contexts/files/file_contexts: missing"):
        policy_of_commit(repo, write_commit(repo, spec))


def test_plain_image_is_relabeled_after_the_pull(repo: Repo, tmp_path: Path) -> None:
    from ocigen import KERNEL, Entry, write_layout

    from bootree.oci.importer import pull_image
    from bootree.oci.reference import ImageReference, image_ref
    from bootree.oci.selinux import relabel_image

    lay = tmp_path / "oci"
    write_layout(lay, [[Entry(KERNEL, data=b"k"), Entry("usr/bin/tool", data=b"t", mode=0o755),
                        Entry("etc/selinux/config", data=b"SELINUX=enforcing\nSELINUXTYPE=targeted\n"),
                        Entry("etc/selinux/targeted/contexts/files/file_contexts", data=FC.encode()),
                        Entry("etc/selinux/targeted/contexts/files/file_contexts.subs_dist",
                              data=b"/usr/etc /etc\n")]])
    img = ImageReference.parse(f"oci:{lay}")
    res = pull_image(repo, img, architecture="amd64")
    state, n = relabel_image(repo, img, res.state)
    assert n > 0 and state.commit != res.state.commit and repo.resolve_rev(image_ref(img)) == state.commit
    labels = _labels(repo, state.commit)
    assert _ctx(labels["/usr/bin/tool"]) == "tool_exec_t" and _ctx(labels["/usr/etc/selinux/config"]) == "etc_t"
    assert repo.read_commit(state.commit).metadata == repo.read_commit(res.state.commit).metadata
    # Pulled again: unchanged, the labeled commit is what the image ref holds.
    again = pull_image(repo, img, architecture="amd64")
    assert not again.changed and again.state.commit == state.commit

"""SELinux labels in a commit, from the policy its own tree carries (``ostree commit --selinux-policy``).

Layer: oci. Why: an image whose derived layers were built by a container tool carries no
``security.selinux`` xattrs (or the builder's), and ostree-ext relabels the merged tree of such
an image with the policy found in that tree before it is deployed. This module is that
relabeling, over commits in a repository; the labels go into the objects' xattrs (and so into
their checksums), whether or not the host itself runs SELinux. This machine's kernel has no
SELinux: nothing here needs it, the policy is only read as files.

The policy (ostree's ``OstreeSePolicy``): ``etc/selinux/config`` in the tree, else
``usr/etc/selinux/config``; a ``SELINUX=`` of ``enforcing`` or ``permissive`` enables it,
``SELINUXTYPE=NAME`` picks ``…/selinux/NAME/contexts/files/file_contexts`` (with ``.homedirs``,
``.local``, ``.subs``, ``.subs_dist``; :mod:`bootree.format.selinux_fc` has the lookup rules).
Each path is looked up as ``/``-rooted with its type; ``/proc`` is looked up as ``/mnt``; paths
under ``/usr/etc`` are looked up as they are (ostree's labeling epoch 0, which ostree-ext's merge
uses). A label replaces any ``security.selinux`` the object had, NUL-terminated as ostree
stores it (``g_variant_new_bytestring``); ``<<none>>`` or no match keeps the object's xattrs.

When: :func:`relabel_image` after a pull, as ostree-ext's merge does, only for an image with
derived layers (a plain image, or layers on top of an encapsulated commit): an encapsulated
commit alone keeps the labels it was committed with.
"""

from __future__ import annotations

import dataclasses
import stat
from dataclasses import dataclass

from bootree.errors import BootreeError, FormatError, ImageError
from bootree.format.checksum import Checksum
from bootree.format.objects import Commit, DirMeta, DirTree, FileHeader, Xattrs
from bootree.format.oci import ImageConfig
from bootree.format.selinux_fc import FileContexts, parse_file_contexts, parse_subs
from bootree.oci.encapsulated import parse_layout
from bootree.oci.importer import ImageState
from bootree.oci.reference import ImageReference, image_ref
from bootree.repo import Repo
from bootree.repo.reader import EntryKind
from bootree.repo.transaction import Transaction

__all__ = ["SELINUX_XATTR", "Policy", "label_commit", "policy_of_commit", "relabel_image"]

SELINUX_XATTR = b"security.selinux"
MAX_POLICY_FILE = 64 << 20
_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class Policy:
    """A tree's file-labeling policy."""

    name: str
    root: str
    """The policy directory in the tree (``usr/etc/selinux/targeted``)."""
    contexts: FileContexts


def _read(repo: Repo, commit: Commit, path: str) -> str | None:
    try:
        entry = repo.reader.lookup(commit, "/" + path)
    except BootreeError:
        return None
    if entry is None or entry.kind is not EntryKind.FILE:
        return None
    header, size = repo.stat_file(entry.checksum)
    if not stat.S_ISREG(header.mode):
        return None
    if size > MAX_POLICY_FILE:
        raise ImageError(f"/{path}: {size} bytes, larger than a policy file may be")
    return repo.load_file(entry.checksum)[1].decode("utf-8", "surrogateescape")


def policy_of_commit(repo: Repo, commit: Checksum) -> Policy | None:
    """The labeling policy of ``commit``'s tree, or ``None`` (no config, SELinux disabled there).

    Raises:
        ImageError: an enabled policy whose ``file_contexts`` is missing or does not parse.
    """
    c = repo.read_commit(commit)
    for base in ("etc/selinux", "usr/etc/selinux"):
        config = _read(repo, c, f"{base}/config")
        if config is not None:
            break
    else:
        return None
    name, enabled = None, False
    for line in config.splitlines():
        if line.startswith("SELINUXTYPE="):
            name = line[len("SELINUXTYPE=") :].strip()
        elif line.startswith("SELINUX="):
            enabled = line[len("SELINUX=") :].lower().startswith(("enforcing", "permissive"))
    if not enabled:
        return None
    if not name or "/" in name or name in (".", ".."):
        raise ImageError(f"/{base}/config: SELinux is enabled but SELINUXTYPE is {name!r}")
    fc_path = f"{base}/{name}/contexts/files/file_contexts"
    try:
        specs = []
        for suffix in ("", ".homedirs", ".local"):
            text = _read(repo, c, fc_path + suffix)
            if text is None and not suffix:
                raise ImageError(f"/{fc_path}: missing (policy {name} is enabled in /{base}/config)")
            specs += parse_file_contexts(text or "", f"/{fc_path}{suffix}")
        subs = []
        for suffix in (".subs", ".subs_dist"):
            subs += parse_subs(_read(repo, c, fc_path + suffix) or "", f"/{fc_path}{suffix}")
    except FormatError as e:
        raise ImageError(str(e)) from None
    return Policy(name, f"{base}/{name}", FileContexts(specs, subs))


def _labeled(xattrs: Xattrs, label: str | None) -> Xattrs:
    if label is None:
        return xattrs
    kept = [(k, v) for k, v in xattrs if k != SELINUX_XATTR]
    return tuple(sorted([*kept, (SELINUX_XATTR, label.encode() + b"\0")]))


class _Labeler:
    def __init__(self, repo: Repo, txn: Transaction, policy: Policy) -> None:
        self.repo, self.txn, self.fc = repo, txn, policy.contexts
        self.files: dict[tuple[Checksum, str | None], Checksum] = {}
        self.relabeled = 0

    def label(self, path: str, mode: int) -> str | None:
        return self.fc.lookup("/mnt" if path == "/proc" else path, mode)

    def file(self, csum: Checksum, path: str) -> Checksum:
        header, size = self.repo.stat_file(csum)
        label = self.label(path, header.mode)
        new_x = _labeled(header.xattrs, label)
        if new_x == header.xattrs:
            return csum
        key = (csum, label)
        done = self.files.get(key)
        if done is None:
            new = FileHeader(header.uid, header.gid, header.mode, header.rdev, header.symlink_target, new_x)
            if stat.S_ISLNK(header.mode):
                done = self.txn.write_file(new, None)
            else:  # streamed: a relabeled file is never held in memory whole
                with self.repo.store.open_file(csum) as obj, self.txn.content_writer(new, size) as w:
                    stream = obj.stream
                    assert stream is not None
                    while chunk := stream.read(_CHUNK):
                        w.write(chunk)
                    done = w.finish()
            self.files[key] = done
            self.relabeled += 1
        return done

    def tree(self, tree: Checksum, meta: Checksum) -> tuple[Checksum, Checksum]:
        """Relabel a tree bottom-up (an explicit stack: trees may be deep)."""
        out: dict[str, tuple[Checksum, Checksum]] = {}
        stack: list[tuple[str, Checksum, Checksum, bool]] = [("/", tree, meta, False)]
        while stack:
            path, t, m, done = stack.pop()
            dt = self.repo.reader.read_dirtree(t)
            sub = {name: ("/" if path == "/" else path + "/") + name for name, _, _ in dt.dirs}
            if not done:
                stack.append((path, t, m, True))
                stack.extend((sub[name], st, sm, False) for name, st, sm in dt.dirs)
                continue
            prefix = "" if path == "/" else path
            files = {name: self.file(c, f"{prefix}/{name}") for name, c in dt.files}
            dirs = {name: out.pop(sub[name]) for name, _, _ in dt.dirs}
            dm = self.repo.read_dirmeta(m)
            new_meta = DirMeta(dm.uid, dm.gid, dm.mode, _labeled(dm.xattrs, self.label(path, dm.mode)))
            out[path] = (self.txn.write_dirtree(DirTree.build(files, dirs)), self.txn.write_dirmeta(new_meta))
        return out["/"]


def label_commit(repo: Repo, commit: Checksum, policy: Policy, *, ref: str | None = None) -> tuple[Checksum, int]:
    """A commit like ``commit`` (same metadata, parent, timestamp) with its tree labeled by ``policy``.

    Returns the new commit (``commit`` itself when no label changes) and the number of content
    objects relabeled; ``ref`` is moved to it in the same transaction.
    """
    c = repo.read_commit(commit)
    with repo.transaction() as txn:
        lab = _Labeler(repo, txn, policy)
        root_tree, root_meta = lab.tree(c.root_tree, c.root_meta)
        if (root_tree, root_meta) == (c.root_tree, c.root_meta):
            new = commit
        else:
            new = txn.write_commit(Commit(root_tree=root_tree, root_meta=root_meta, parent=c.parent,
                                          timestamp=c.timestamp, metadata=c.metadata, subject=c.subject,
                                          body=c.body, related=c.related))
        if ref is not None:
            txn.set_ref(ref, new)
    return new, lab.relabeled


def relabel_image(repo: Repo, image: ImageReference, state: ImageState) -> tuple[ImageState, int]:
    """Label a freshly pulled image's merge commit with its own policy (see the module docstring).

    Returns the state to deploy (its commit relabeled, the image ref moved to it) and the
    number of content objects relabeled; the state unchanged when there is nothing to do.

    Raises:
        ImageError: an enabled policy whose ``file_contexts`` is missing or does not parse.
    """
    config = ImageConfig.from_bytes(state.config)
    if len(config.diff_ids) <= parse_layout(config).ostree_layers:
        return state, 0
    policy = policy_of_commit(repo, state.commit)
    if policy is None:
        return state, 0
    new, n = label_commit(repo, state.commit, policy, ref=image_ref(image))
    return dataclasses.replace(state, commit=new), n

"""Deployment and Origin values: what a sysroot's boot entries say about each deployment.

Layer: sysroot (pure values; reading and writing them is :mod:`bootree.sysroot.sysroot`'s job).
A :class:`Deployment` names a checkout ``ostree/deploy/<stateroot>/deploy/<csum>.<serial>``
together with the boot configuration that goes with it (bootcsum, kernel arguments) and its
:class:`Origin`, the keyfile that says where updates come from. Both are frozen: a new
deployment list is computed from the old one and written in one swap, never edited in place.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import PurePosixPath

from bootree.format.checksum import Checksum
from bootree.format.kargs import Kargs
from bootree.format.keyfile import KeyFile
from bootree.sysroot import layout

__all__ = ["Deployment", "Origin"]

_TRANSIENT = "libostree-transient"


@dataclass(frozen=True, slots=True)
class Origin:
    """A deployment's ``.origin`` GLib keyfile, kept as text so that unknown keys survive.

    ``[origin] refspec=`` names the branch an upgrade follows (``override-commit=`` pins a
    commit; bootc uses ``container-image-reference=``); ``[libostree-transient] pinned=true``
    keeps the deployment from being garbage-collected.
    """

    text: str

    @classmethod
    def for_refspec(cls, refspec: str) -> Origin:
        """``[origin]\\nrefspec=<refspec>\\n`` as ``ostree admin deploy REF`` writes it."""
        kf = KeyFile()
        kf.set("origin", "refspec", refspec)
        return cls(kf.to_text())

    @classmethod
    def for_commit(cls, csum: Checksum) -> Origin:
        """The origin of a deployment of a bare commit (ostree writes its checksum as refspec)."""
        return cls.for_refspec(csum)

    def keyfile(self) -> KeyFile:
        """A fresh, mutable parse of the text.

        Raises:
            KeyFileError: if the text is not a valid keyfile.
        """
        return KeyFile.from_text(self.text)

    def get(self, group: str, key: str) -> str | None:
        """One value (``None`` when absent)."""
        return self.keyfile().get(group, key)

    @property
    def refspec(self) -> str | None:
        """``[origin] refspec``."""
        return self.get("origin", "refspec")

    @property
    def container_image_reference(self) -> str | None:
        """``[origin] container-image-reference`` (bootc / ostree-container deployments)."""
        return self.get("origin", "container-image-reference")

    @property
    def pinned(self) -> bool:
        """``[libostree-transient] pinned``."""
        return self.keyfile().get_bool(_TRANSIENT, "pinned", False)

    def without_transient(self) -> Origin:
        """The origin a new deployment inherits: without ``[libostree-transient]`` (the pin is
        the old deployment's, not its successor's), as ostree copies it."""
        kf = self.keyfile()
        kf.remove_group(_TRANSIENT)
        return Origin(kf.to_text())

    def with_refspec(self, refspec: str) -> Origin:
        """The same origin following ``refspec`` (an end-of-life rebase); other keys are kept."""
        kf = self.keyfile()
        kf.set("origin", "refspec", refspec)
        return Origin(kf.to_text())

    def with_pinned(self, pinned: bool) -> Origin:
        """Set or clear the pin the way ostree does (unpinning leaves the empty group behind)."""
        kf = self.keyfile()
        if pinned:
            kf.set(_TRANSIENT, "pinned", "true")
        else:
            kf.remove_key(_TRANSIENT, "pinned")
        return Origin(kf.to_text())


@dataclass(frozen=True, slots=True)
class Deployment:
    """One deployment of a commit in a stateroot, with its boot configuration.

    ``bootserial`` is the position among deployments sharing ``bootcsum``; it is reassigned
    every time a list is written, so two lists are compared by :meth:`key`, never by it.
    ``kargs`` never contains ``ostree=``: that argument is derived from the position in the
    list when the entries are written.
    """

    stateroot: str
    csum: Checksum
    deployserial: int
    bootcsum: str
    kargs: Kargs = field(default_factory=Kargs)
    origin: Origin | None = None
    version: str | None = None
    bootserial: int = 0
    staged: bool = False
    overlay_initrds: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """``<csum>.<deployserial>``, the directory name."""
        return layout.deploy_name(self.csum, self.deployserial)

    def key(self) -> tuple[str, str, int]:
        """What identifies a deployment on disk: stateroot, commit, serial."""
        return (self.stateroot, self.csum, self.deployserial)

    def same(self, other: Deployment | None) -> bool:
        """Whether ``other`` names the same deployment directory."""
        return other is not None and self.key() == other.key()

    @property
    def pinned(self) -> bool:
        """Whether the origin carries ``[libostree-transient] pinned=true``."""
        return self.origin is not None and self.origin.pinned

    @property
    def refspec(self) -> str | None:
        """The origin's refspec, if any."""
        return self.origin.refspec if self.origin else None

    @property
    def dir(self) -> PurePosixPath:
        """The deployment root relative to the sysroot."""
        return layout.deploy_dir(self.stateroot, self.csum, self.deployserial)

    @property
    def origin_path(self) -> PurePosixPath:
        """The ``.origin`` file relative to the sysroot."""
        return layout.origin_path(self.stateroot, self.csum, self.deployserial)

    def with_(self, **changes: object) -> Deployment:
        """``dataclasses.replace`` under a short name."""
        return replace(self, **changes)  # type: ignore[arg-type]

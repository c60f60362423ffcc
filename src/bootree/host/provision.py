"""The first deployment of a machine from a container image: what ``install to-disk IMAGE`` installs.

Layer: host. bootc's ``install to-disk`` deploys an image and records it as the origin, so
that the installed machine's ``status`` shows the image and its digest and its ``upgrade`` and
``switch`` follow the image from the first boot on. :class:`ImageInstallSource` is that half of
the install: it pulls the image with the OCI importer straight into the new sysroot's
repository (the layer and image refs of ostree-ext's store go with it, so a later ``switch``
to an image sharing layers fetches only the others) and seeds the new stateroot's ``/var``
from the image once, as ``switch --stateroot`` does. It has the shape of
:class:`bootree.install.todisk.ContentSource`; the CLI hands it to ``install_from`` (this
layer does not import ``install``, its sibling).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bootree.errors import ImageError
from bootree.format.checksum import Checksum
from bootree.host.bootc import origin_for, pull_verified, seed_var
from bootree.oci.importer import PullResult
from bootree.oci.progress import PullProgress
from bootree.oci.reference import OstreeImageReference
from bootree.oci.registry import RegistryOptions
from bootree.oci.source import open_source, resolve
from bootree.sysroot import Deployment, Origin, Sysroot, layout

__all__ = ["ImageInstallSource"]


@dataclass(slots=True)
class ImageInstallSource:
    """A container image as the content of a new sysroot; ``pulled`` is set by :meth:`fill`."""

    image: OstreeImageReference
    options: RegistryOptions | None = None
    progress: PullProgress | None = None
    pulled: PullResult | None = field(default=None, init=False)

    def check(self) -> None:
        """Resolve the manifest and config before anything is written (a wrong tag, platform or transport).

        Raises:
            ImageError, RegistryError: as :func:`bootree.oci.source.resolve`.
        """
        src = open_source(self.image.image, self.options)
        try:
            resolve(src)
        finally:
            src.close()

    def fill(self, sysroot: Sysroot) -> tuple[Checksum, Origin]:
        """Pull the image into ``sysroot.repo``; its merge commit and bootc's origin for it.

        An ``ostree-image-signed:`` or ``ostree-remote-image:`` image is verified as ``switch``
        verifies it (the containers policy; the named remote of the new sysroot's repository).

        Raises:
            ImageError, LayerError, RegistryError: from the pull (nothing is published then).
            ContainerPolicyError, SignatureError, RemoteNotFound: the image's checks failed.
        """
        self.pulled, _ = pull_verified(sysroot, self.image, self.options, None, self.progress)
        return self.pulled.state.commit, origin_for(self.image)

    def deployed(self, sysroot: Sysroot, deployment: Deployment) -> None:
        """Seed the new stateroot's ``/var`` from the image's (bootc-oci.md §2.4)."""
        if self.pulled is None or deployment.csum != self.pulled.state.commit:
            raise ImageError("the deployment is not the image that was pulled")
        seed_var(sysroot.deployment_dir(deployment) / "var", sysroot.path / layout.var_dir(deployment.stateroot))

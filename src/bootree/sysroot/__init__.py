"""Deployment: the physical root, its deployments and their boot entries.

Layer: sysroot. Imports :mod:`bootree.repo`, :mod:`bootree.format`, :mod:`bootree._fs` and
:mod:`bootree.errors`; never ``pull``, ``oci`` or ``transport``: deploying only uses local
commits. Modules: :mod:`layout` (path arithmetic), :mod:`deployment` (values),
:mod:`sysroot` (load/lock), :mod:`etcmerge`, :mod:`bootloader` (kernels, BLS), :mod:`swap`
(the atomic list write), :mod:`deploy`, :mod:`cleanup`, :mod:`ops` (undeploy, pin, rollback,
...), :mod:`bootsim` (booting a directory sysroot in a private mount namespace).
"""

from bootree.sysroot.deploy import DeployOptions, DeployResult, deploy, finalize_staged, stage
from bootree.sysroot.deployment import Deployment, Origin
from bootree.sysroot.sysroot import Sysroot

__all__ = [
    "DeployOptions",
    "DeployResult",
    "Deployment",
    "Origin",
    "Sysroot",
    "deploy",
    "finalize_staged",
    "stage",
]

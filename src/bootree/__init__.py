"""bootree: an image-based, immutable OS updater compatible with OSTree.

The package is layered (see ``docs/architecture.md``): pure formats in :mod:`bootree.format`,
the object store in :mod:`bootree.repo`, and above it transport, pull, sysroot and the CLI.
"""

__version__ = "0.1.0"

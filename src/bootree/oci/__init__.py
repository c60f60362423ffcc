"""Container images as an OS update source: references, registries, layer import (issue 11).

Layer: workflows (beside ``pull`` and ``sysroot``; it may use ``transport``, ``repo`` and
``format``). :mod:`~bootree.oci.reference` spells image references as bootc and
containers/image do; :mod:`~bootree.oci.registry` and :mod:`~bootree.oci.layout` fetch
manifests and blobs; :mod:`~bootree.oci.importer` turns layers into commits the way
ostree-ext's container store does, so a repository reads the same under both tools.
Publishing goes the other way: :mod:`~bootree.oci.export` (``container encapsulate``) writes a
commit as an image in ostree-ext's layer format (:mod:`~bootree.oci.tarexport`), split by
:mod:`~bootree.oci.chunking`, and :mod:`~bootree.oci.push` uploads it to a registry.
"""

"""The image delta's layer map check (``deltapull.check_layer_map``), on built superblocks."""

from __future__ import annotations

import pytest

from bootree.errors import DeltaError
from bootree.format.checksum import Checksum
from bootree.format.delta import Superblock
from bootree.format.gvariant import Variant
from bootree.format.objects import Commit
from bootree.format.oci import OCI_MANIFEST, Descriptor, digest_of
from bootree.oci import deltaartifact as da
from bootree.oci.deltapull import check_layer_map

MAP = digest_of(b"the layer map")


def _artifact(layer_map: str = MAP) -> da.DeltaArtifact:
    c1, c2 = Checksum("11" * 32), Checksum("22" * 32)
    ann = {da.FROM_DIGEST: digest_of(b"v1"), da.FROM_COMMIT: str(c1), da.TO_DIGEST: digest_of(b"v2"),
           da.TO_COMMIT: str(c2), da.FORMAT: "bootree"}
    data = da.build_artifact(Descriptor(OCI_MANIFEST, digest_of(b"v2"), 9),
                             Descriptor(da.DELTA_MEDIA_TYPE, digest_of(b"delta"), 5),
                             Descriptor(da.LAYERMAP_MEDIA_TYPE, layer_map, 13), ann)
    return da.parse_artifact(data, digest_of(data))


def _superblock(named: str | None) -> Superblock:
    meta = [] if named is None else [(da.LAYERMAP_KEY, Variant("s", named))]
    commit = Commit(Checksum("33" * 32), Checksum("44" * 32), subject="v2").to_bytes()
    sb = Superblock.build(to_commit=Checksum("22" * 32), commit=commit, parts=[], timestamp=0, user_metadata=meta)
    return Superblock.from_bytes(sb.to_bytes())  # as a client reads it


@pytest.mark.parametrize("verified", [True, False])
def test_the_named_map_passes(verified: bool) -> None:
    check_layer_map(_superblock(MAP), _artifact(), verified=verified)


@pytest.mark.parametrize("verified", [True, False])
def test_another_map_is_refused(verified: bool) -> None:
    other = digest_of(b"a forged layer map")
    with pytest.raises(DeltaError, match=f"names layer map {MAP}, its artifact carries {other}"):
        check_layer_map(_superblock(MAP), _artifact(other), verified=verified)


def test_a_verified_delta_must_name_its_map() -> None:
    with pytest.raises(DeltaError, match="is signed but does not name its layer map"):
        check_layer_map(_superblock(None), _artifact(), verified=True)
    check_layer_map(_superblock(None), _artifact(), verified=False)  # unsigned and older: the map stands alone

"""composefs images byte-identical to mkcomposefs: the upstream golden dumps (composefs tests/assets).

The image sha256 values are upstream's ``.sha256`` files (images of ``mkcomposefs
[--min-version=V --max-version=V] --from-file DUMP``); the composefs digests (fs-verity of the
image) are from shared/reference/composefs-erofs.md §1.8. The dumps are shipped in
tests/data/composefs (large ones gzip-compressed, as upstream ships them).
"""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import pytest

from bootree.errors import ComposefsFormatError
from bootree.format.composefs_dump import format_dump, parse_dump
from bootree.format.erofs import WriteOptions, write_image, xxh32
from bootree.format.erofs_read import read_image
from bootree.format.fsverity import fsverity_digest

DATA = Path(__file__).resolve().parents[2] / "data" / "composefs"

# (asset, version (None: mkcomposefs defaults 0..1), bytes, image sha256, composefs digest)
GOLDEN = [
    ("no-newline.dump", 0, 16384, "99f02c3c63d0c4c14be6f63e87250adafc0e173a12354f50d9ba7cd320deeca7", "4aa51e1805ee1c2d3bd8d9ba2f2740948c2ee4de7c3cbfcef863982e456f46fe"),
    ("bigfile.dump", None, 20480, "475838479da68b086445eca1f12dd30fc4513f3f88c66b40b58fd70f7495ea27", "160c71227628d810604ad305e5d4a912e01a5964866b9bec9f8fddc55e352bfb"),
    ("bigfile-xattr.dump", None, 20480, "5bdb37d78dcf03b4ab1adc9a2d5212d3d95213b41628939f5fe3769f93d927cc", "96477776a78abab3bf28c57b16dd0c47ed41a05774a2352ecf15c3ac15108b3f"),
    ("special.dump", 0, 28672, "d344782ff962ab7d1c5533755c19c5bf3c3485f55bfaf228fc89524c7e2ba61e", "6fae72a66167ef8d5830fa15647263ef1b535681aa91fdf195fa3d6f5e3ae15e"),
    ("special.dump", 1, 28672, "2b1dfb9ffe6938cb3134c339059572e38cbd8cc515d54758fdff55cad5a37427", "1d268f8bc7609b4f8f8467e98565f45300f9e192c0e6ef2d05820d3ea41d4515"),
    ("longlink.dump", None, 40960, "6747c908f88fc6c18626027f204159f3c2a6225b45e4de2f2d5ebf969bf5f24a", "32f1351322d32ebed1bde5fd72e2d218435c4aada13a359f1b1d1f1e126815a6"),
    ("honggfuzz-long-symlink.dump", None, 24576, "7939aa24a6499de3796792d8ad220138453803ab5f20c96a8c815bf212d44ff7", "d7894fc7641b935efec393392e36dfab0ffbcc20d29a4c684aebde71b8c38005"),
    ("honggfuzz-bigfile-with-acl.dump", None, 24576, "49fcb98c1d331c3f4b414d99d17aac0a6a7e1f8fe7de0d33bbe53064fa55e88b", "062b7c9e88806d8fe267287a35ba7abfa8faf70460b2dd8294781d6f26d64912"),
    ("honggfuzz-chardev-nonzero-size.dump", None, 16384, "3e7ca8195f29cfd0583ed761c8eead21892ef0ec61d1402aa7f7d84ef8316947", "efdef54b5e204b11f2590a41cde5d01c57622393e2a428af4fa4cfaac18c4575"),
    ("config.dump.gz", None, 1658880, "f93737bda1b19d79c8fe2828615b9dd24e4ec5d97410a1ce6e3716b1a778f00f", "26cbaf47c39d0b5ed47bd959595e4d84f01c8eb8196d861d9f00bf527c244ad2"),
    ("config-with-hard-link.dump.gz", None, 1658880, "d67e775ced030711b36d70d315ddf7150214312fd18b9345f98a5572035a2076", "a7afa3886a072e11ac8dae09d46da54ea43ca0cfe34d170b1cdc9287cceca6a1"),
    ("cs9-x86_64-minimal.dump.gz", None, 3403776, "a168966c314b0b27c8e25270e6f20838a4736a888e5de97993d15d046c797ba3", "ea6a12d09a928b965d9881f6703c54cf2801ad0a5fad2c921819d6c7ba4956ce"),
    ("cs9-x86_64-developer.dump.gz", None, 9998336, "8c61b21852d6abfdd3a7a3da71a5ccb56fae2ad099bebe7d564fcaa842cb9532", "c2891b9a6ce8f676ce63aeaeb7df329695db705d5d1a6a8160f8ed3ec188c5ba"),
]
_LARGE = {"cs9-x86_64-minimal.dump.gz", "cs9-x86_64-developer.dump.gz"}


def load(name: str) -> bytes:
    data = (DATA / name).read_bytes()
    return gzip.decompress(data) if name.endswith(".gz") else data


def _params() -> list[object]:
    out = []
    for entry in GOLDEN:
        marks = [pytest.mark.slow] if entry[0] in _LARGE else []
        out.append(pytest.param(*entry, id=f"{entry[0]}-v{entry[1]}", marks=marks))
    return out


@pytest.mark.parametrize(("asset", "version", "size", "sha256", "digest"), _params())
def test_golden_image(asset: str, version: int | None, size: int, sha256: str, digest: str) -> None:
    options = WriteOptions() if version is None else WriteOptions(version, version)
    image = write_image(parse_dump(load(asset)), options)
    assert len(image) == size
    assert hashlib.sha256(image).hexdigest() == sha256
    assert fsverity_digest(image).hex() == digest
    # The reader inverts the writer: image -> tree -> image, and via the dump text too.
    if asset not in _LARGE:
        back = read_image(image)
        assert write_image(back.root, options) == image
        assert write_image(parse_dump(format_dump(back.root)), options) == image


SHOULD_FAIL = sorted(p.name for p in DATA.glob("should-fail-*"))


@pytest.mark.parametrize("asset", SHOULD_FAIL)
def test_should_fail(asset: str) -> None:
    """mkcomposefs refuses these inputs; so do we, with a typed error."""
    with pytest.raises(ComposefsFormatError):
        write_image(parse_dump(load(asset)))


def test_xxh32_vectors() -> None:
    assert xxh32(b"", 0) == 0x02CC5D05
    assert xxh32(b"abc", 0) == 0x32D153FF
    assert xxh32(b"overlay.metacopy", 0x25BBE08F + 4) & 31 == 31
    assert xxh32(b"Nobody inspects the spammish repetition", 0) == 0xE2293B2F


def test_reader_rejects_garbage() -> None:
    with pytest.raises(ComposefsFormatError):
        read_image(b"\0" * 8192)
    image = bytearray(write_image(parse_dump(load("special.dump"))))
    with pytest.raises(ComposefsFormatError):
        read_image(bytes(image[:2000]))

"""Build small OCI image layouts in Python for the import tests (no external tools)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

KERNEL = "usr/lib/modules/6.1.0-test/vmlinuz"


@dataclass
class Entry:
    """One tar member: ``kind`` f (file), d (dir), l (symlink), h (hardlink), c (char device)."""

    name: str
    kind: str = "f"
    data: bytes = b""
    mode: int = 0o644
    link: str = ""
    uid: int = 0
    gid: int = 0
    xattrs: dict[str, str] = field(default_factory=dict)


def layer_tar(entries: list[Entry]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for e in entries:
            ti = tarfile.TarInfo(e.name)
            ti.mode, ti.uid, ti.gid, ti.mtime = e.mode, e.uid, e.gid, 1700000000
            if e.xattrs:
                ti.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in e.xattrs.items()}
            if e.kind == "d":
                ti.type = tarfile.DIRTYPE
                tf.addfile(ti)
            elif e.kind == "l":
                ti.type, ti.linkname = tarfile.SYMTYPE, e.link
                tf.addfile(ti)
            elif e.kind == "h":
                ti.type, ti.linkname = tarfile.LNKTYPE, e.link
                tf.addfile(ti)
            elif e.kind == "c":
                ti.type, ti.devmajor, ti.devminor = tarfile.CHRTYPE, 1, 3
                tf.addfile(ti)
            else:
                ti.size = len(e.data)
                tf.addfile(ti, io.BytesIO(e.data))
    return buf.getvalue()


def _put(root: Path, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    p = root / "blobs/sha256" / digest[7:]
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return digest


def write_layout(root: Path, layers: list[list[Entry]], *, tag: str = "latest", arch: str = "amd64",
                 labels: dict[str, str] | None = None, compression: str = "gzip",
                 corrupt_layer: int | None = None) -> str:
    """Write (or add a tag to) an OCI layout; returns the manifest digest."""
    return write_tars(root, [layer_tar(e) for e in layers], tag=tag, arch=arch, labels=labels,
                      compression=compression, corrupt_layer=corrupt_layer)


def write_tars(root: Path, tars: list[bytes], *, tag: str = "latest", arch: str = "amd64",
               labels: dict[str, str] | None = None, compression: str = "gzip",
               corrupt_layer: int | None = None, label_fn: object = None) -> str:
    """:func:`write_layout` from ready layer tars; ``label_fn(diff_ids)`` adds labels that need them."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    descs, diff_ids = [], []
    for i, tar in enumerate(tars):
        diff_ids.append("sha256:" + hashlib.sha256(tar).hexdigest())
        if compression == "gzip":
            blob, mt = gzip.compress(tar, mtime=0), "application/vnd.oci.image.layer.v1.tar+gzip"
        elif compression == "zstd":
            import zstandard

            c = zstandard.ZstdCompressor()
            half = len(tar) // 2  # two frames: the decoder must read across them
            blob, mt = c.compress(tar[:half]) + c.compress(tar[half:]), "application/vnd.oci.image.layer.v1.tar+zstd"
        else:
            blob, mt = tar, "application/vnd.oci.image.layer.v1.tar"
        digest = _put(root, blob)
        if corrupt_layer == i:
            (root / "blobs/sha256" / digest[7:]).write_bytes(blob[:-1] + bytes([blob[-1] ^ 1]))
        descs.append({"mediaType": mt, "digest": digest, "size": len(blob)})
    labels = {"containers.bootc": "1", "version": tag, **(labels or {})}
    if callable(label_fn):
        labels.update(label_fn(diff_ids))
    config = json.dumps({
        "architecture": arch, "os": "linux", "created": "2024-05-01T10:00:00.123456789Z",
        "config": {"Labels": labels},
        "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    cdig = _put(root, config)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cdig,
                                      "size": len(config)}, "layers": descs}).encode()
    mdig = _put(root, manifest)
    idx_path = root / "index.json"
    index = json.loads(idx_path.read_text()) if idx_path.exists() else {"schemaVersion": 2, "manifests": []}
    index["manifests"] = [m for m in index["manifests"]
                          if m.get("annotations", {}).get("org.opencontainers.image.ref.name") != tag]
    index["manifests"].append({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": mdig,
                               "size": len(manifest), "annotations": {"org.opencontainers.image.ref.name": tag}})
    idx_path.write_text(json.dumps(index))
    return mdig


def wrap_index(root: Path, tags: dict[str, str], tag: str) -> str:
    """Replace the layout's entries ``tags`` (platform arch -> tag) by one OCI index tagged ``tag``."""
    index = json.loads((root / "index.json").read_text())
    by_tag = {m["annotations"]["org.opencontainers.image.ref.name"]: m for m in index["manifests"]}
    entries = []
    for arch, t in tags.items():
        m = dict(by_tag[t])
        m.pop("annotations")
        m["platform"] = {"architecture": arch, "os": "linux"}
        entries.append(m)
    data = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                       "manifests": entries}).encode()
    digest = _put(root, data)
    index["manifests"] = [{"mediaType": "application/vnd.oci.image.index.v1+json", "digest": digest,
                           "size": len(data), "annotations": {"org.opencontainers.image.ref.name": tag}}]
    (root / "index.json").write_text(json.dumps(index))
    return digest


def base_layers() -> list[list[Entry]]:
    """Three layers: a base, an edit with a whiteout, and an opaque directory."""
    return [
        [Entry("usr", "d", mode=0o755), Entry("usr/bin", "d", mode=0o755),
         Entry("usr/bin/hello", data=b"#!/bin/sh\necho hi\n", mode=0o755, xattrs={"user.test": "v"}),
         Entry("usr/bin/hello-hardlink", "h", link="usr/bin/hello"),
         Entry("usr/bin/hello-symlink", "l", link="hello"),
         Entry("usr/lib/modules/6.1.0-test", "d", mode=0o755),
         Entry(KERNEL, data=b"kernel"), Entry("usr/lib/modules/6.1.0-test/initramfs.img", data=b"initrd"),
         Entry("usr/share/demo/obsolete.txt", data=b"old"), Entry("usr/share/demo/keep.txt", data=b"keep"),
         Entry("etc", "d", mode=0o755), Entry("etc/demo.conf", data=b"a=1\n"),
         Entry("var/lib/demo/state", data=b"s"), Entry("tmp", "d", mode=0o1777), Entry("tmp/junk", data=b"x"),
         Entry("bin", "l", link="usr/bin")],
        [Entry("etc/demo.conf", data=b"a=2\n"), Entry("usr/share/demo/new.txt", data=b"new"),
         Entry("usr/share/demo/.wh.obsolete.txt", mode=0)],
        [Entry("usr/share/demo", "d", mode=0o755), Entry("usr/share/demo/.wh..wh..opq", mode=0),
         Entry("usr/share/demo/only.txt", data=b"only")],
    ]

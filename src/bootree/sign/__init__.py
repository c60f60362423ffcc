"""Signatures of commits and summaries in ostree's formats: ed25519 and GPG (and ostree's
test-only ``dummy`` engine, off unless ``OSTREE_DUMMY_SIGN_ENABLED=1``: :mod:`bootree.sign.dummy`).

Layer: services. Signing and checking work over bytes (a commit object, a summary, detached
metadata); reading key files, fetching and writing belong to the callers (``pull``, ``cli``).
GPG is delegated to the ``gpg`` program (:mod:`bootree.sign.gpg`, ADR 0002), so this package may
import :mod:`bootree._run` besides ``format`` and ``errors``.
"""

from bootree.sign.detached import GPG_KEY
from bootree.sign.ed25519 import METADATA_KEY as ED25519_KEY
from bootree.sign.ed25519 import PublicKey, SecretKey, parse_public_keys, parse_secret_keys
from bootree.sign.gpg import GpgVerifier
from bootree.sign.result import SignatureCheck, VerifyResult
from bootree.sign.verifier import Verifier, add_dummy, add_ed25519, add_gpg

__all__ = [
    "ED25519_KEY",
    "GPG_KEY",
    "GpgVerifier",
    "PublicKey",
    "SecretKey",
    "SignatureCheck",
    "Verifier",
    "VerifyResult",
    "add_dummy",
    "add_ed25519",
    "add_gpg",
    "parse_public_keys",
    "parse_secret_keys",
]

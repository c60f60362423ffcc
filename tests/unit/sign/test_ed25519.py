"""ed25519 signatures: the reference vector, key files, trust and revocation."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bootree.errors import FormatError, SignatureError
from bootree.sign import Verifier, add_ed25519, detached
from bootree.sign.ed25519 import (
    METADATA_KEY,
    PublicKey,
    SecretKey,
    parse_public_keys,
    parse_secret_keys,
    verify,
)

# ostree-format.md §8: vector computed with `cryptography` over the real ostree 2022.7 commit
# 2bf73aea… (objects-hexdump.txt); this Debian ostree has no ed25519 to check it with.
COMMIT = bytes.fromhex(
    "6f737472 65652e72 65662d62 696e6469 6e670000 00000000 74657374 00050061"
    "73132273 75626a00 626f6479 00000000 00000000 6553f100 e2abaf50 12d82bad"
    "c138e734 e5d7fc17 f782ff4d 95905340 7446082e c81f9a77 446a0ef1 1b7cc167"
    "f3b603e5 85c7eeee b675faa4 12d5ec73 f62988eb 0b6c5488 582d2823 2323".replace(" ", "")
)
SEED = bytes(range(32))
PUB = "A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg="
SIG = bytes.fromhex(
    "c9949695ee58f47189db85ac266fe308f69e08941383cca212f73d5f572a5b49"
    "872fca920cb827e63b3191479f4a315c159d9e9526e3f5e83af8cd53f143930f"
)


def test_reference_vector() -> None:
    assert hashlib.sha256(COMMIT).hexdigest().startswith("2bf73aea")
    key = SecretKey.from_seed(SEED)
    assert key.public.base64 == PUB
    assert base64.b64decode(key.base64) == SEED + base64.b64decode(PUB)  # libsodium layout
    assert key.sign(COMMIT) == SIG
    meta = add_ed25519(COMMIT, None, [key])
    # "ostree.sign.ed25519\0" 00×4 <sig 64> 40 00 "aay" 14 5e (95 bytes)
    assert meta == b"ostree.sign.ed25519\0" + bytes(4) + SIG + b"\x40\x00aay\x14\x5e"
    assert len(meta) == 95
    assert detached.signatures(detached.decode(meta), METADATA_KEY) == [SIG]


def test_secret_key_never_shown() -> None:
    key = SecretKey.from_seed(SEED)
    assert key.base64 not in repr(key) and str(SEED) not in repr(key)
    bad = base64.b64encode(SEED + bytes(32)).decode()  # public half does not match
    with pytest.raises(FormatError) as exc:
        parse_secret_keys(bad.encode())
    assert bad not in str(exc.value) and exc.value.__cause__ is None
    with pytest.raises(FormatError) as exc2:
        parse_secret_keys(b"!!notbase64!!\n")
    assert "notbase64" not in str(exc2.value)


def test_key_files() -> None:
    a, b = SecretKey.generate(), SecretKey.generate()
    text = f"# trusted keys\n{a.public.base64}\n\n{b.public.base64}\n".encode()
    assert parse_public_keys(text) == [a.public, b.public]
    assert parse_secret_keys(f"{a.base64}\n{b.base64}\n".encode())[1].public == b.public
    with pytest.raises(FormatError, match="key 2"):
        parse_public_keys(f"{a.public.base64}\nAAAA\n".encode())


def test_trust_rotation_and_revocation() -> None:
    old, new, stranger = SecretKey.generate(), SecretKey.generate(), SecretKey.generate()
    data = b"commit bytes"
    both = add_ed25519(data, add_ed25519(data, None, [old]), [new])
    assert len(detached.signatures(detached.decode(both), METADATA_KEY)) == 2
    # Key rotation: a client trusting either key accepts the commit.
    for trusted in ([old.public], [new.public], [old.public, new.public]):
        Verifier(ed25519=tuple(trusted)).check("c", data, both, require_ed25519=True)
    # Revoking the old key still accepts the new signature...
    Verifier(ed25519=(old.public, new.public), revoked=(old.public,)).check("c", data, both, require_ed25519=True)
    # ...but a commit signed by the old key only is refused, as revoked.
    only_old = add_ed25519(data, None, [old])
    with pytest.raises(SignatureError) as exc:
        Verifier(ed25519=(old.public,), revoked=(old.public,)).check("commit x", data, only_old, require_ed25519=True)
    assert exc.value.reason == "revoked" and old.public.base64 in str(exc.value)
    with pytest.raises(SignatureError) as exc:
        Verifier(ed25519=(old.public,)).check("c", data, add_ed25519(data, None, [stranger]), require_ed25519=True)
    assert exc.value.reason == "untrusted"
    with pytest.raises(SignatureError) as exc:
        Verifier(ed25519=(old.public,)).check("c", data, None, require_ed25519=True)
    assert exc.value.reason == "unsigned"
    # A signature over other bytes (another commit) does not verify.
    with pytest.raises(SignatureError) as exc:
        Verifier(ed25519=(old.public,)).check("c", b"other commit", only_old, require_ed25519=True)
    assert exc.value.reason == "untrusted"
    with pytest.raises(SignatureError) as exc:
        Verifier(ed25519=(old.public,)).check("c", data, only_old[:-7], require_ed25519=True)
    assert exc.value.reason == "malformed"


def test_append_keeps_other_keys_and_dedupes() -> None:
    from bootree.format.gvariant import Variant

    key = SecretKey.from_seed(SEED)
    meta = detached.encode([("xa.note", Variant("s", "keep me"))])
    once = add_ed25519(COMMIT, meta, [key])
    twice = add_ed25519(COMMIT, once, [key])
    assert once == twice
    entries = detached.decode(once)
    assert entries[0] == ("xa.note", Variant("s", "keep me"))
    stripped, n = detached.remove_signatures(entries, METADATA_KEY, lambda s: True)
    assert n == 1 and detached.encode(stripped) == meta


def test_malformed_signature_lengths() -> None:
    checks = verify(b"x", [b"short"], [SecretKey.generate().public])
    assert [c.status for c in checks] == ["malformed"]


@given(st.binary(max_size=512), st.binary(min_size=32, max_size=32))
def test_sign_verify_roundtrip(data: bytes, seed: bytes) -> None:
    key = SecretKey.from_seed(seed)
    sig = key.sign(data)
    assert key.public.verifies(data, sig)
    assert not key.public.verifies(data + b"!", sig)
    assert PublicKey.from_base64(key.public.base64) == key.public

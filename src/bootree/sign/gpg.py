"""OpenPGP signatures as ostree makes them, by driving GnuPG's ``gpg`` program.

Layer: sign (services); the one module of :mod:`bootree.sign` that runs a program, through
:mod:`bootree._run` (ADR 0002 says why the ``gpg`` binary and not a Python binding). Nothing here
parses OpenPGP: ``gpg`` does, and we read its machine-readable ``--status-fd`` lines
(GnuPG's doc/DETAILS), which are stable across GnuPG versions.

Formats (ostree-format.md §8): the detached metadata key ``ostree.gpgsigs`` holds ``aay``, each
element a binary (not armored) OpenPGP detached signature over the exact bytes of the
``.commit`` file (``summary.sig``: over the ``summary`` bytes). Like libostree, all signatures
are handed to ``gpg --verify`` at once, concatenated, and each is reported on its own.

Secrets: signing keys stay in the GnuPG home (``--gpg-homedir``) and its agent; bootree passes
only a key ID on the command line and the data on stdin, and never sees a secret key.
Verification runs ``gpgv`` with an empty private home and exactly the trusted keyrings, so a
user's own keyring and trust settings never widen what a remote trusts.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from bootree import _run
from bootree.errors import ExternalCommandError, SignatureError, VerificationError
from bootree.sign.result import SignatureCheck

__all__ = ["GpgVerifier", "export_keys", "gpg_program", "gpgv_program", "key_fingerprints", "sign"]

log = logging.getLogger(__name__)

_TIMEOUT = 120.0
#: OpenPGP public-key algorithm numbers (RFC 4880 9.1, RFC 9580) as gpg names them.
_ALGORITHMS = {"1": "RSA", "3": "RSA", "17": "DSA", "18": "ECDH", "19": "ECDSA", "22": "EdDSA"}
_BASE = ["--batch", "--no-tty", "--no-greeting", "--status-fd", "1"]


def gpg_program() -> str:
    """The ``gpg`` binary (GnuPG 2).

    Raises:
        VerificationError: GnuPG is not installed.
    """
    found = _run.find_program("gpg")
    if found is None:
        raise VerificationError("GnuPG ('gpg') is not installed: GPG signatures cannot be made or checked",
                                hint="install the gnupg package")
    return found


def gpgv_program() -> str:
    """GnuPG's verify-only ``gpgv``.

    Raises:
        VerificationError: it is not installed.
    """
    found = _run.find_program("gpgv")
    if found is None:
        raise VerificationError("GnuPG's 'gpgv' is not installed: GPG signatures cannot be checked",
                                hint="install the gpgv package")
    return found


def _home_args(homedir: Path | None) -> list[str]:
    return ["--homedir", os.fspath(homedir)] if homedir is not None else []


@dataclass(frozen=True, slots=True)
class _Status:
    keyword: str
    args: tuple[str, ...]


def _status_lines(out: bytes) -> list[_Status]:
    lines = []
    for raw in out.splitlines():
        if not raw.startswith(b"[GNUPG:] "):
            continue
        parts = raw[len(b"[GNUPG:] ") :].decode("utf-8", "replace").split(" ")
        lines.append(_Status(parts[0], tuple(parts[1:])))
    return lines


def sign(data: bytes, key_id: str, *, homedir: Path | None = None) -> bytes:
    """A binary detached signature over ``data`` by ``key_id`` from the GnuPG home ``homedir``.

    The key needs no passphrase, or an agent that already has it (``--batch``: no prompt).

    Raises:
        SignatureError: ``gpg`` could not sign (unknown key, no secret key, locked key).
    """
    with tempfile.TemporaryDirectory(prefix="bootree-gpg-") as tmp:
        out = Path(tmp) / "sig"
        argv = [gpg_program(), *_BASE, *_home_args(homedir), "--local-user", key_id,
                "--detach-sign", "--yes", "--output", os.fspath(out), "-"]
        proc = _run.run(argv, input=data, timeout=_TIMEOUT, check=False)
        status = _status_lines(proc.stdout)
        if proc.returncode != 0 or not any(s.keyword == "SIG_CREATED" for s in status):
            raise SignatureError(f"GPG key {key_id}", "invalid", f"gpg could not sign: {_why(proc.stderr, status)}")
        return out.read_bytes()


def _why(stderr: bytes, status: Sequence[_Status]) -> str:
    for s in status:
        if s.keyword in ("INV_SGNR", "INV_RECP"):
            return {"1": "key not found", "9": "no secret key", "4": "key revoked", "5": "key expired"}.get(
                s.args[0] if s.args else "", "unusable key"
            )
        if s.keyword == "NO_SGNR":
            return "no usable secret key"
        if s.keyword == "FAILURE":
            return " ".join(s.args)
    lines = [ln for ln in stderr.decode(errors="replace").strip().splitlines() if ln.strip()]
    return lines[-1].removeprefix("gpg: ") if lines else "unknown error"


#: What gpgme (so ostree) says of each outcome; scripts match these words.
_DETAILS = {"EXPSIG": "Signature expired", "EXPKEYSIG": "Key expired", "REVKEYSIG": "Key revoked",
            "BADSIG": "BAD signature"}


def _checks(status: Sequence[_Status]) -> list[SignatureCheck]:
    """One check per signature from ``gpg --verify`` status lines (doc/DETAILS)."""
    records: list[dict[str, str]] = []
    primary = {"GOODSIG": "good", "EXPSIG": "expired", "EXPKEYSIG": "expired",
               "REVKEYSIG": "revoked", "BADSIG": "bad", "ERRSIG": "error"}
    for s in status:
        if s.keyword == "NEWSIG" or (s.keyword in primary and (not records or "status" in records[-1])):
            if s.keyword == "NEWSIG" or not records or "status" in records[-1]:
                records.append({})
        if not records:
            continue
        rec = records[-1]
        if s.keyword in primary:
            rec["status"] = primary[s.keyword]
            rec["detail"] = _DETAILS.get(s.keyword, "")
            rec.setdefault("key", s.args[0] if s.args else "")
            if s.keyword != "ERRSIG":
                rec["user"] = " ".join(s.args[1:])
            else:
                rec["rc"] = s.args[5] if len(s.args) > 5 else ""
                if len(s.args) > 6 and s.args[6] != "-":
                    rec["key"] = s.args[6]
        elif s.keyword == "VALIDSIG" and s.args:
            rec["key"] = s.args[9] if len(s.args) > 9 else s.args[0]
            rec["time"] = s.args[2] if len(s.args) > 2 else ""
            rec["algo"] = _ALGORITHMS.get(s.args[6] if len(s.args) > 6 else "", "")
    out = []
    for rec in records:
        state = rec.get("status")
        if state is None:
            continue
        if state == "error":
            state = "untrusted" if rec.get("rc") == "9" else "malformed"
        when = rec.get("time", "")
        out.append(
            SignatureCheck("gpg", state == "good", state, rec.get("key", ""),
                           int(when) if when.isdigit() else None, rec.get("user") or None,
                           rec.get("algo") or None,
                           "Can't check signature: public key not found" if state == "untrusted" else
                           rec.get("detail") or None)
        )
    return out


class GpgVerifier:
    """Checks detached signatures against a fixed set of trusted keys, with ``gpgv``.

    ``gpgv`` is GnuPG's verify-only program (what apt uses for the same job): it trusts exactly
    the keyrings it is given, needs no agent and no trust database, and starts in a few
    milliseconds, so a pull pays one short process per signed object. ``keyrings`` are key
    files, binary or armored (``<remote>.trustedkeys.gpg``, the files of ``gpgkeypath``);
    armored ones are converted once (``gpg --dearmor``) into a private temporary directory,
    removed by :meth:`close`. With ``homedir`` and no keyrings, that GnuPG home's own public
    keyring is used.
    """

    def __init__(self, *, keyrings: Sequence[Path] = (), homedir: Path | None = None) -> None:
        self._keyrings = list(keyrings)
        self._user_home = homedir
        self._tmp: Path | None = None
        self._rings: list[Path] | None = None
        self._calls = 0

    def __enter__(self) -> GpgVerifier:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Remove the temporary directory (idempotent)."""
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
            self._rings = None

    def _workdir(self) -> Path:
        if self._tmp is None:
            self._tmp = Path(tempfile.mkdtemp(prefix="bootree-gpgv-"))
            (self._tmp / "home").mkdir(mode=0o700)  # empty: no default keyring is ever trusted
        return self._tmp

    def _keyring_files(self) -> list[Path]:
        if self._rings is not None:
            return self._rings
        tmp = self._workdir()
        sources = list(self._keyrings)
        if not sources and self._user_home is not None:
            sources = [p for p in (self._user_home / "pubring.kbx", self._user_home / "pubring.gpg") if p.is_file()]
        rings: list[Path] = []
        for n, src in enumerate(sources):
            try:
                with open(src, "rb") as f:
                    armored = f.read(64).lstrip().startswith(b"-----BEGIN PGP")
            except OSError as e:
                raise VerificationError(f"cannot read GPG keyring {src}: {e.strerror}") from e
            if not armored:
                rings.append(Path(os.path.abspath(src)))
                continue
            out = tmp / f"ring{n}.gpg"
            proc = _run.run([gpg_program(), "--batch", "--no-tty", "--homedir", os.fspath(tmp / "home"),
                             "--no-autostart", "--output", os.fspath(out), "--dearmor", os.fspath(src)],
                            timeout=_TIMEOUT, check=False)
            if proc.returncode != 0 or not out.exists():
                raise VerificationError(f"cannot read GPG keyring {src}: {_why(proc.stderr, [])}")
            rings.append(out)
        self._rings = rings
        return rings

    def verify(self, data: bytes, signatures: Sequence[bytes]) -> list[SignatureCheck]:
        """One :class:`SignatureCheck` per signature in ``signatures`` over ``data``."""
        if not signatures:
            return []
        rings = self._keyring_files()
        tmp = self._workdir()
        self._calls += 1
        sig, dat = tmp / f"{self._calls}.sig", tmp / f"{self._calls}.data"
        try:
            sig.write_bytes(b"".join(signatures))
            dat.write_bytes(data)
            argv = [gpgv_program(), "--status-fd", "1", "--homedir", os.fspath(tmp / "home")]
            for ring in rings:
                argv += ["--keyring", os.fspath(ring)]
            try:
                proc = _run.run([*argv, os.fspath(sig), os.fspath(dat)], timeout=_TIMEOUT, check=False)
            except ExternalCommandError as e:
                raise VerificationError(f"gpgv could not run: {e}") from e
        finally:
            sig.unlink(missing_ok=True)
            dat.unlink(missing_ok=True)
        checks = _checks(_status_lines(proc.stdout))
        if not checks:
            return [SignatureCheck("gpg", False, "malformed", "not an OpenPGP signature")]
        return checks

    def verify_message(self, message: bytes, *, max_payload: int = 4 << 20) -> tuple[SignatureCheck, bytes | None]:
        """Check an OpenPGP *signed message* (data and signature in one blob) and extract its data.

        This is the container "simple signing" format (containers-signature(5)): the data is
        handed back only when the blob holds exactly one signature and it is good, so nothing
        parses a payload that is not authenticated. Binary messages only (an armored or
        cleartext-signed text is not a signed message in that format). The extracted data is
        capped at ``max_payload`` bytes with ``prlimit --fsize`` when util-linux has it, so a
        compressed message cannot fill the disk.
        """
        if not message or not message[0] & 0x80:
            return SignatureCheck("gpg", False, "malformed", "not a binary OpenPGP message"), None
        rings = self._keyring_files()
        tmp = self._workdir()
        self._calls += 1
        msg, out = tmp / f"{self._calls}.msg", tmp / f"{self._calls}.out"
        try:
            msg.write_bytes(message)
            argv = [gpgv_program(), "--status-fd", "1", "--homedir", os.fspath(tmp / "home")]
            for ring in rings:
                argv += ["--keyring", os.fspath(ring)]
            argv += ["--output", os.fspath(out), os.fspath(msg)]
            limit = _run.find_program("prlimit")
            if limit is not None:
                argv = [limit, f"--fsize={max_payload}", "--", *argv]
            try:
                proc = _run.run(argv, timeout=_TIMEOUT, check=False)
            except ExternalCommandError as e:
                raise VerificationError(f"gpgv could not run: {e}") from e
            status = _status_lines(proc.stdout)
            checks = _checks(status)
            data = out.read_bytes() if out.exists() and out.stat().st_size <= max_payload else None
        finally:
            msg.unlink(missing_ok=True)
            out.unlink(missing_ok=True)
        if not checks:
            return SignatureCheck("gpg", False, "malformed", "not an OpenPGP signed message"), None
        if len(checks) != 1:
            return SignatureCheck("gpg", False, "malformed", f"{len(checks)} signatures in one message"), None
        check = checks[0]
        if not check.valid or proc.returncode != 0 or data is None or not any(s.keyword == "PLAINTEXT" for s in status):
            if check.valid:
                check = SignatureCheck("gpg", False, "malformed", f"{check.key}: no signed data (or too large)")
            return check, None
        return check, data


def export_keys(keyrings: Sequence[Path], *, homedir: Path | None = None, key_ids: Sequence[str] = ()) -> bytes:
    """The public keys of ``keyrings`` (or of ``homedir``'s keyring), as one binary keyring.

    ``key_ids`` restricts the export to those keys. Used by ``remote gpg-import`` to build
    ``<remote>.trustedkeys.gpg``.

    Raises:
        VerificationError: a keyring that gpg cannot read, or no key exported.
    """
    with tempfile.TemporaryDirectory(prefix="bootree-gpgx-") as tmp:
        home = homedir
        if keyrings or home is None:
            home = Path(tmp) / "home"
            home.mkdir(mode=0o700)
        assert home is not None
        base = [gpg_program(), *_BASE, "--homedir", os.fspath(home), "--no-autostart"]
        if keyrings:
            proc = _run.run([*base, "--import", *map(os.fspath, keyrings)], timeout=_TIMEOUT, check=False)
            if not any(s.keyword == "IMPORT_RES" for s in _status_lines(proc.stdout)):
                raise VerificationError(f"cannot import GPG keys: {_why(proc.stderr, [])}")
        out = Path(tmp) / "export.gpg"
        proc = _run.run([*base, "--output", os.fspath(out), "--export", *key_ids], timeout=_TIMEOUT, check=False)
        data = out.read_bytes() if out.exists() else b""
        if proc.returncode != 0 or not data:
            raise VerificationError("no GPG public key to import" + (f" ({', '.join(key_ids)})" if key_ids else ""))
        return data


def key_fingerprints(keyring: bytes) -> list[str]:
    """The primary key fingerprints in a binary keyring (``gpg --show-keys``)."""
    proc = _run.run([gpg_program(), "--batch", "--no-tty", "--with-colons", "--show-keys"],
                    input=keyring, timeout=_TIMEOUT, check=False)
    out: list[str] = []
    expect_fpr = False
    for line in proc.stdout.decode(errors="replace").splitlines():
        fields = line.split(":")
        if fields[0] == "pub":
            expect_fpr = True
        elif fields[0] == "fpr" and expect_fpr and len(fields) > 9:
            out.append(fields[9])
            expect_fpr = False
    return out

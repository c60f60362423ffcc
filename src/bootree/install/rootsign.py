"""The commit signature check of bootree's initramfs (``[composefs] enabled = signed``), in busybox.

Layer: install. With ``signed``, ostree's prepare-root trusts a deployment's composefs image only
if the deployment's commit carries a valid ed25519 signature (``ostree.sign.ed25519`` in its
``.commitmeta``) by one of the public keys in the initramfs (``keypath``, by default
``/etc/ostree/initramfs-root-binding.key``: base64, one key per line); the commit's
``ostree.composefs.digest.v0`` then pins the image. bootree's initramfs has no Python and no
crypto library, only a static busybox, so the check is written for busybox's tools:

* :data:`SIGNED_SH` (sourced by the init): the signatures are read out of the ``a{sv}`` file with
  ``od`` and ``awk`` (the ``aay`` value's framing offsets are checked, not guessed), and
  ``sha512sum`` hashes ``R || A || commit``;
* :data:`ED25519_BC` does the curve arithmetic in busybox ``bc`` (arbitrary precision): RFC 8032
  §5.1.7 verification, cofactorless, as libsodium checks: ``A`` is decompressed (a key that is not
  a curve point fails), ``S < L`` is required, and ``[S]B - [k]A`` must encode to ``R``.

About 1.2 s per signature natively (one double-scalar multiplication with extended coordinates);
the unit tests check it against the ``cryptography`` package's signatures. It is a verifier only:
no secret is ever handled here, so constant time does not matter.
"""

from __future__ import annotations

__all__ = ["ED25519_BC", "ED25519_BC_PATH", "SIGNED_SH", "SIGNED_SH_PATH"]

#: Where the builder puts the two files in the initramfs.
ED25519_BC_PATH = "lib/bootree/ed25519.bc"
SIGNED_SH_PATH = "lib/bootree/signed.sh"

ED25519_BC = r"""/* RFC 8032 Ed25519 verification. Input (set before this file): a (public key), r, s (the two
   signature halves) and h (SHA-512 of r || a || message), each the little-endian integer of its
   bytes. Prints 1 if [s]B = R + [h mod L]A, else 0. */
p = 2^255 - 19
l = 2^252 + 27742317777372353535851937790883648493
dd = 37095705934669439343138083508754565189542113879843219016388785533085940283555
d2 = (2 * dd) % p
bx = 15112221349535400772501151409588531511454012693041857206046113283949847762202
by = 46316835694926478169428394003475163141307993866256225615783033603165251855960
t255 = 2^255
define pw(b, e) {
  auto r
  r = 1
  while (e > 0) {
    if (e % 2 == 1) r = (r * b) % p
    b = (b * b) % p
    e = e / 2
  }
  return r
}
/* extended twisted Edwards addition (a = -1), complete: also doubles. Result in qx qy qz qt. */
define pa(x1, y1, z1, t1, x2, y2, z2, t2) {
  auto aa, bb, cc, zz, ee, ff, gg, hh
  aa = ((y1 - x1 + p) * (y2 - x2 + p)) % p
  bb = ((y1 + x1) * (y2 + x2)) % p
  cc = (t1 * t2 % p) * d2 % p
  zz = (2 * z1 * z2) % p
  ee = bb - aa + p
  ff = zz - cc + p
  gg = zz + cc
  hh = bb + aa
  qx = ee * ff % p
  qy = gg * hh % p
  qt = ee * hh % p
  qz = ff * gg % p
  return 0
}
/* doubling (dbl-2008-hwcd, a = -1) into qx qy qz qt */
define pd(x1, y1, z1) {
  auto aa, bb, cc, ee, ff, gg, hh
  aa = x1 * x1 % p
  bb = y1 * y1 % p
  cc = 2 * z1 * z1 % p
  ee = ((x1 + y1) * (x1 + y1) - aa - bb) % p + p
  gg = bb - aa + p
  ff = gg - cc + p
  hh = 2 * p - aa - bb
  qx = ee * ff % p
  qy = gg * hh % p
  qt = ee * hh % p
  qz = ff * gg % p
  return 0
}
define vf() {
  auto ya, sa, yr, sr, u, v, v3, x, w, i, k, ax, ay, at, cx, cy, cz, ct, ex, ey, ez, et, sb[], kb[], zi, n, bt
  sa = a / t255; ya = a % t255
  sr = r / t255; yr = r % t255
  if (ya >= p || yr >= p || s >= l) return 0
  /* decompress A */
  u = (ya * ya - 1 + p) % p
  v = (dd * ya % p * ya + 1) % p
  v3 = v * v % p * v % p
  x = u * v3 % p * pw(u * (v3 * v3 % p * v % p) % p, (p - 5) / 8) % p
  w = v * x % p * x % p
  if (w != u) {
    if (w != (p - u) % p) return 0
    x = x * pw(2, (p - 1) / 4) % p
  }
  if (x == 0 && sa == 1) return 0
  if (x % 2 != sa) x = p - x
  /* -A, and B + (-A) */
  ax = (p - x) % p; ay = ya; at = ax * ay % p
  bt = bx * by % p
  n = pa(bx, by, 1, bt, ax, ay, 1, at)
  cx = qx; cy = qy; cz = qz; ct = qt
  k = h % l
  for (i = 0; i < 256; i++) { sb[i] = s % 2; s = s / 2; kb[i] = k % 2; k = k / 2; }
  ex = 0; ey = 1; ez = 1; et = 0
  for (i = 255; i >= 0; i--) {
    n = pd(ex, ey, ez)
    ex = qx; ey = qy; ez = qz; et = qt
    if (sb[i] == 1 && kb[i] == 1) {
      n = pa(ex, ey, ez, et, cx, cy, cz, ct)
    } else if (sb[i] == 1) {
      n = pa(ex, ey, ez, et, bx, by, 1, bt)
    } else if (kb[i] == 1) {
      n = pa(ex, ey, ez, et, ax, ay, 1, at)
    }
    if (sb[i] == 1 || kb[i] == 1) { ex = qx; ey = qy; ez = qz; et = qt; }
  }
  /* [s]B - [k]A must encode to r */
  zi = pw(ez, p - 2)
  if (ey * zi % p != yr) return 0
  if ((ex * zi % p) % 2 != sr) return 0
  return 1
}
vf()
quit
"""

SIGNED_SH = r"""# bootree initramfs: ed25519 commit signatures (sourced by /init; written by bootree).
ED25519_BC=/lib/bootree/ed25519.bc
# le HEX: the bc (ibase=16) number of little-endian bytes
ed25519_le() { echo "$1" | awk '{ for (i = length($0) - 1; i > 0; i -= 2) printf "%s", substr($0, i, 2); print "" }' | tr a-f A-F; }
# ed25519_verify PUBHEX SIGHEX FILE: whether SIG is a valid signature of FILE's bytes by PUB.
ed25519_verify() {
  _r=$(echo "$2" | cut -c1-64); _s=$(echo "$2" | cut -c65-128)
  _h=$( { printf '%s%s' "$_r" "$1" | xxd -r -p; cat "$3"; } | sha512sum | cut -c1-128)
  _out=$( { echo ibase=16; echo "a=$(ed25519_le "$1")"; echo "r=$(ed25519_le "$_r")"; echo "s=$(ed25519_le "$_s")"
            echo "h=$(ed25519_le "$_h")"; echo ibase=A; cat "$ED25519_BC"; } | bc -q)
  [ "$_out" = 1 ]
}
# The ed25519 signatures (hex, one a line) in a .commitmeta (a{sv}) file: the value of key
# ostree.sign.ed25519, an "aay" variant, is n 64-byte arrays followed by n framing offsets
# (1 byte each while the array is under 256 bytes, else 2), each checked.
commit_signatures() {
  od -An -v -tx1 "$1" | tr -d ' \n' | awk '
  function num(h, w,   v, i, j) {
    v = 0
    for (i = w - 1; i >= 0; i--) {
      j = substr(h, 2 * i + 1, 2)
      v = v * 256 + (index("0123456789abcdef", substr(j, 1, 1)) - 1) * 16 + index("0123456789abcdef", substr(j, 2, 1)) - 1
    }
    return v
  }
  {
    key = "6f73747265652e7369676e2e6564323535313900"
    all = $0; from = 1
    while ((p = index(substr(all, from), key)) > 0) {
      at = from + p - 1
      from = at + 2
      if ((at - 1) % 16 != 0) continue
      v = at + 48
      for (n = 1; n <= 64; n++) {
        w = (65 * n <= 255) ? 1 : 2
        len = 64 * n + w * n
        if (substr(all, v + 2 * len, 8) != "00616179") continue
        ok = 1
        for (i = 0; i < n; i++) if (num(substr(all, v + 128 * n + 2 * w * i, 2 * w), w) != 64 * (i + 1)) ok = 0
        if (!ok) continue
        for (i = 0; i < n; i++) print substr(all, v + 128 * i, 128)
        exit
      }
    }
  }'
}
# check_signed COMMIT-FILE KEYS-FILE: print the key that signed the commit (a valid signature in
# the .commitmeta beside it); else fail: 2 when it carries no ed25519 signature at all, 1 when none
# of its signatures is by a key of KEYS-FILE.
check_signed() {
  _meta="${1%.commit}.commitmeta"
  [ -f "$_meta" ] || return 2
  _sigs=$(commit_signatures "$_meta")
  [ -n "$_sigs" ] || return 2
  while read -r _k; do
    case "$_k" in ''|'#'*) continue ;; esac
    _pub=$(echo "$_k" | base64 -d 2>/dev/null | od -An -v -tx1 | tr -d ' \n')
    [ ${#_pub} = 64 ] || continue
    for _sig in $_sigs; do
      if ed25519_verify "$_pub" "$_sig" "$1"; then echo "$_k"; return 0; fi
    done
  done < "$2"
  return 1
}
"""

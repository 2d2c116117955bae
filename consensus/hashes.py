"""Hash functions and merkle trees used by the chain."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from .errors import ParseError


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def sha256d(data: bytes) -> bytes:
    return hashlib.sha256(hashlib.sha256(data).digest()).digest()


def hash160(data: bytes) -> bytes:
    return hashlib.new("ripemd160", hashlib.sha256(data).digest()).digest()


def hash_to_hex(h: bytes) -> str:
    """Display form of a 32-byte hash: byte-reversed hex, as Bitcoin shows ids."""
    return h[::-1].hex()


def hex_to_hash(s: str) -> bytes:
    """Inverse of :func:`hash_to_hex`; refuses anything but 64 hex digits."""
    if not isinstance(s, str) or len(s) != 64:
        raise ParseError("a hash is 64 hex digits")
    try:
        return bytes.fromhex(s)[::-1]
    except ValueError as e:
        raise ParseError(f"not hex: {e}") from None


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """Bitcoin's merkle root: pairwise sha256d, duplicating an odd last node.

    Also reports nothing about CVE-2012-2459 mutation; the block validator
    refuses duplicate transactions, which closes that hole.
    """
    if not leaves:
        return b"\x00" * 32
    level = list(leaves)
    while len(level) > 1:
        if len(level) & 1:
            level.append(level[-1])
        level = [sha256d(level[i] + level[i + 1]) for i in range(0, len(level), 2)]
    return level[0]


def merkle_branch(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """The sibling hashes from leaf ``index`` to the root."""
    if not 0 <= index < len(leaves):
        raise IndexError(index)
    branch: list[bytes] = []
    level = list(leaves)
    while len(level) > 1:
        if len(level) & 1:
            level.append(level[-1])
        branch.append(level[index ^ 1])
        level = [sha256d(level[i] + level[i + 1]) for i in range(0, len(level), 2)]
        index >>= 1
    return branch


def merkle_root_from_branch(leaf: bytes, branch: Sequence[bytes], index: int) -> bytes:
    h = leaf
    for sibling in branch:
        h = sha256d(sibling + h) if index & 1 else sha256d(h + sibling)
        index >>= 1
    return h


def fast_merkle_root(leaves: Sequence[bytes]) -> bytes:
    """Elements' ``ComputeFastMerkleRoot``: single SHA-256 compression of
    each pair, no duplication of an odd node (it is carried up unchanged).
    Used for the Elements wtxid.

    Elements hashes each pair with one SHA-256 *compression* (no padding,
    no length), which hashlib does not expose; :func:`_sha256_compress`
    implements that one block function.
    """
    if not leaves:
        return b"\x00" * 32
    level = list(leaves)
    while len(level) > 1:
        nxt = [_sha256_compress(level[i] + level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) & 1:
            nxt.append(level[-1])
        level = nxt
    return level[0]


_K = (
    0x428A2F98, 0x71374491, 0xB5C0FBCF, 0xE9B5DBA5, 0x3956C25B, 0x59F111F1, 0x923F82A4, 0xAB1C5ED5,
    0xD807AA98, 0x12835B01, 0x243185BE, 0x550C7DC3, 0x72BE5D74, 0x80DEB1FE, 0x9BDC06A7, 0xC19BF174,
    0xE49B69C1, 0xEFBE4786, 0x0FC19DC6, 0x240CA1CC, 0x2DE92C6F, 0x4A7484AA, 0x5CB0A9DC, 0x76F988DA,
    0x983E5152, 0xA831C66D, 0xB00327C8, 0xBF597FC7, 0xC6E00BF3, 0xD5A79147, 0x06CA6351, 0x14292967,
    0x27B70A85, 0x2E1B2138, 0x4D2C6DFC, 0x53380D13, 0x650A7354, 0x766A0ABB, 0x81C2C92E, 0x92722C85,
    0xA2BFE8A1, 0xA81A664B, 0xC24B8B70, 0xC76C51A3, 0xD192E819, 0xD6990624, 0xF40E3585, 0x106AA070,
    0x19A4C116, 0x1E376C08, 0x2748774C, 0x34B0BCB5, 0x391C0CB3, 0x4ED8AA4A, 0x5B9CCA4F, 0x682E6FF3,
    0x748F82EE, 0x78A5636F, 0x84C87814, 0x8CC70208, 0x90BEFFFA, 0xA4506CEB, 0xBEF9A3F7, 0xC67178F2,
)  # fmt: skip
_H0 = (0x6A09E667, 0xBB67AE85, 0x3C6EF372, 0xA54FF53A, 0x510E527F, 0x9B05688C, 0x1F83D9AB, 0x5BE0CD19)
_M32 = 0xFFFFFFFF


def _rotr(x: int, n: int) -> int:
    return ((x >> n) | (x << (32 - n))) & _M32


def _sha256_compress(block: bytes) -> bytes:
    """One SHA-256 compression of a 64-byte block from the standard IV."""
    assert len(block) == 64
    w = [int.from_bytes(block[i : i + 4], "big") for i in range(0, 64, 4)]
    for i in range(16, 64):
        s0 = _rotr(w[i - 15], 7) ^ _rotr(w[i - 15], 18) ^ (w[i - 15] >> 3)
        s1 = _rotr(w[i - 2], 17) ^ _rotr(w[i - 2], 19) ^ (w[i - 2] >> 10)
        w.append((w[i - 16] + s0 + w[i - 7] + s1) & _M32)
    a, b, c, d, e, f, g, h = _H0
    for i in range(64):
        s1 = _rotr(e, 6) ^ _rotr(e, 11) ^ _rotr(e, 25)
        ch = (e & f) ^ (~e & g)
        t1 = (h + s1 + ch + _K[i] + w[i]) & _M32
        s0 = _rotr(a, 2) ^ _rotr(a, 13) ^ _rotr(a, 22)
        maj = (a & b) ^ (a & c) ^ (b & c)
        t2 = (s0 + maj) & _M32
        h, g, f, e, d, c, b, a = g, f, e, (d + t1) & _M32, c, b, a, (t1 + t2) & _M32
    out = [(x + y) & _M32 for x, y in zip(_H0, (a, b, c, d, e, f, g, h))]
    return b"".join(v.to_bytes(4, "big") for v in out)

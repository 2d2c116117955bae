"""Point formats: libsecp256k1-zkp's 33-byte commitments and generators, and coincurve's.

libsecp256k1-zkp serializes a Pedersen value commitment and an asset generator
as a prefix byte and the x coordinate:

    object                prefix if y is a quadratic residue   otherwise
    value commitment      0x08                                 0x09
    asset generator       0x0a                                 0x0b
    (SEC public key)      0x02 if y is even                    0x03 if y is odd

The low bit is "y is not a square mod p", not y's parity, so turning a
commitment into a coincurve point takes a square root and a Legendre symbol,
not a prefix swap. The conversions here let an auditor recompute homomorphic
sums with coincurve (:func:`sum_points`), independently of the library's tally.

Validity is decided by libsecp256k1-zkp itself (:func:`commitment_struct`,
:func:`generator_struct`); the pure conversion agrees with it (tested).
Every failure raises an :class:`~confidential.errors.EncodingError`.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterable

from coincurve import PublicKey

from . import _lib
from .errors import BadLength, BadPointEncoding, BadScalar, WrongPrefix

FIELD_P = 2**256 - 2**32 - 977
"""The secp256k1 field prime."""
CURVE_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
"""The secp256k1 group order n."""

POINT_LEN = 33
ASSET_ID_LEN = 32
BLINDING_FACTOR_LEN = 32
ZERO32 = bytes(32)

VALUE_COMMITMENT_PREFIXES = (0x08, 0x09)
GENERATOR_PREFIXES = (0x0A, 0x0B)
PUBKEY_PREFIXES = (0x02, 0x03)

_SQRT_EXP = (FIELD_P + 1) // 4
_LEGENDRE_EXP = (FIELD_P - 1) // 2

CommitmentStruct = ctypes.Array[ctypes.c_char]
GeneratorStruct = ctypes.Array[ctypes.c_char]


def as_bytes(data: object, length: int, what: str) -> bytes:
    """``data`` as immutable bytes of exactly ``length``, or :class:`BadLength`."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise BadLength(f"{what}: expected {length} bytes, got {type(data).__name__}")
    raw = bytes(data)
    if len(raw) != length:
        raise BadLength(f"{what}: expected {length} bytes, got {len(raw)}")
    return raw


def as_var_bytes(data: object, what: str) -> bytes:
    """``data`` as immutable bytes of any length, or :class:`BadLength`."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise BadLength(f"{what}: expected bytes, got {type(data).__name__}")
    return bytes(data)


def as_list(items: object, what: str) -> list[object]:
    """A finite sequence as a list, or :class:`BadLength` (never a TypeError)."""
    if isinstance(items, bytes | bytearray | memoryview | str) or not isinstance(items, Iterable):
        raise BadLength(f"{what}: expected a sequence, got {type(items).__name__}")
    return list(items)


def check_scalar(data: object, what: str, *, allow_zero: bool = False) -> bytes:
    """32 bytes that are a scalar below the group order (non-zero unless allowed)."""
    raw = as_bytes(data, 32, what)
    k = int.from_bytes(raw, "big")
    if k >= CURVE_ORDER or (k == 0 and not allow_zero):
        raise BadScalar(f"{what} is not a valid {'' if allow_zero else 'non-zero '}scalar")
    return raw


def check_asset_id(data: object) -> bytes:
    return as_bytes(data, ASSET_ID_LEN, "asset id")


# --- Library-parsed forms -----------------------------------------------------


def _check_prefix(raw: bytes, prefixes: tuple[int, int], what: str) -> None:
    if raw[0] not in prefixes:
        raise WrongPrefix(f"{what}: prefix 0x{raw[0]:02x}, expected 0x{prefixes[0]:02x} or 0x{prefixes[1]:02x}")


def commitment_struct(data: object) -> CommitmentStruct:
    """Parse a 33-byte value commitment with libsecp256k1-zkp into its opaque struct."""
    raw = as_bytes(data, POINT_LEN, "value commitment")
    _check_prefix(raw, VALUE_COMMITMENT_PREFIXES, "value commitment")
    buf = ctypes.create_string_buffer(_lib.COMMITMENT_SIZE)
    if _lib.commitment_parse(_lib.CTX, buf, raw) != 1:
        raise BadPointEncoding("value commitment: x is not on the curve")
    return buf


def generator_struct(data: object) -> GeneratorStruct:
    """Parse a 33-byte asset generator with libsecp256k1-zkp into its opaque struct."""
    raw = as_bytes(data, POINT_LEN, "asset generator")
    _check_prefix(raw, GENERATOR_PREFIXES, "asset generator")
    buf = ctypes.create_string_buffer(_lib.GENERATOR_SIZE)
    if _lib.generator_parse(_lib.CTX, buf, raw) != 1:
        raise BadPointEncoding("asset generator: x is not on the curve")
    return buf


def generator_array(generators: object) -> tuple[ctypes.Array[ctypes.c_char], list[bytes]]:
    """Parse generators into one contiguous array of structs, as surjection proofs need.

    Returns the array and the generators as bytes, in order.
    """
    items = as_list(generators, "input generators")
    # The library wants a non-NULL pointer even for zero inputs.
    buf = ctypes.create_string_buffer(_lib.GENERATOR_SIZE * max(1, len(items)))
    raws = []
    for i, g in enumerate(items):
        raw = as_bytes(g, POINT_LEN, f"input generator {i}")
        _check_prefix(raw, GENERATOR_PREFIXES, f"input generator {i}")
        if _lib.generator_parse(_lib.CTX, ctypes.byref(buf, i * _lib.GENERATOR_SIZE), raw) != 1:
            raise BadPointEncoding(f"input generator {i}: x is not on the curve")
        raws.append(raw)
    return buf, raws


def parse_value_commitment(data: object) -> bytes:
    """Check that ``data`` is a valid 33-byte value commitment; return it as bytes."""
    commitment_struct(data)
    return as_bytes(data, POINT_LEN, "value commitment")


def parse_asset_generator(data: object) -> bytes:
    """Check that ``data`` is a valid 33-byte asset generator; return it as bytes."""
    generator_struct(data)
    return as_bytes(data, POINT_LEN, "asset generator")


def parse_pubkey(data: object, what: str = "public key") -> bytes:
    """A 33-byte compressed SEC public key that is on the curve."""
    raw = as_bytes(data, POINT_LEN, what)
    _check_prefix(raw, PUBKEY_PREFIXES, what)
    try:
        PublicKey(raw)
    except Exception as exc:  # coincurve raises ValueError; keep the promise of our tree only
        raise BadPointEncoding(f"{what}: not a point on the curve") from exc
    return raw


# --- Conversion to and from coincurve -----------------------------------------


def _is_square(y: int) -> bool:
    return pow(y, _LEGENDRE_EXP, FIELD_P) == 1


def _to_pubkey(data: object, prefixes: tuple[int, int], what: str) -> PublicKey:
    raw = as_bytes(data, POINT_LEN, what)
    _check_prefix(raw, prefixes, what)
    x = int.from_bytes(raw[1:], "big")
    if x >= FIELD_P:
        raise BadPointEncoding(f"{what}: x is not a field element")
    rhs = (pow(x, 3, FIELD_P) + 7) % FIELD_P
    y = pow(rhs, _SQRT_EXP, FIELD_P)
    if y * y % FIELD_P != rhs:
        raise BadPointEncoding(f"{what}: x is not on the curve")
    # prefixes[0] marks a square y, prefixes[1] a non-square one. Since p = 3 mod 4,
    # -1 is not a square, so exactly one of y and p - y is.
    want_square = raw[0] == prefixes[0]
    if _is_square(y) != want_square:
        y = FIELD_P - y
    return PublicKey(bytes((0x02 | (y & 1),)) + raw[1:])


def _from_pubkey(point: PublicKey, prefixes: tuple[int, int]) -> bytes:
    full = point.format(compressed=False)
    y = int.from_bytes(full[33:], "big")
    prefix = prefixes[0] if _is_square(y) else prefixes[1]
    return bytes((prefix,)) + full[1:33]


def commitment_to_pubkey(commitment: object) -> PublicKey:
    """The curve point of a 0x08/0x09 value commitment, as a coincurve key."""
    return _to_pubkey(commitment, VALUE_COMMITMENT_PREFIXES, "value commitment")


def pubkey_to_commitment(point: PublicKey) -> bytes:
    """The 0x08/0x09 serialization of a curve point given as a coincurve key."""
    return _from_pubkey(point, VALUE_COMMITMENT_PREFIXES)


def generator_to_pubkey(generator: object) -> PublicKey:
    """The curve point of a 0x0a/0x0b asset generator, as a coincurve key."""
    return _to_pubkey(generator, GENERATOR_PREFIXES, "asset generator")


def pubkey_to_generator(point: PublicKey) -> bytes:
    """The 0x0a/0x0b serialization of a curve point given as a coincurve key."""
    return _from_pubkey(point, GENERATOR_PREFIXES)


def negate(point: PublicKey) -> PublicKey:
    """-P: the same x with the other y (parity flips since p is odd)."""
    sec = point.format(compressed=True)
    return PublicKey(bytes((sec[0] ^ 1,)) + sec[1:])


def add_points(a: PublicKey | None, b: PublicKey | None) -> PublicKey | None:
    """a + b where ``None`` stands for the point at infinity, which coincurve cannot hold."""
    if a is None:
        return b
    if b is None:
        return a
    if a.format() == negate(b).format():
        return None
    return PublicKey.combine_keys([a, b])


def sum_points(points: Iterable[PublicKey | None]) -> PublicKey | None:
    """The sum of points; ``None`` if it is the point at infinity."""
    total: PublicKey | None = None
    for p in points:
        total = add_points(total, p)
    return total

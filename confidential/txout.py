"""Elements' wire form of a transaction output and its witness.

The consensus package owns whole transactions; this module only knows the
output, so the proofs this package makes can be put on the wire and read back
byte-for-byte as Elements does (src/primitives/confidential.h, transaction.h):

    field            prefix 0x00   prefix 0x01                  commitment prefixes
    asset            null          + 32-byte asset id           0x0a / 0x0b + 32
    value            null          + 8-byte big-endian amount   0x08 / 0x09 + 32
    nonce            null          + 32 bytes                   0x02 / 0x03 + 32 (ephemeral pubkey)

    output   = asset | value | nonce | CompactSize(len) scriptPubKey
    witness  = CompactSize(len) surjection proof | CompactSize(len) range proof

As in Elements, parsing checks syntax only (prefixes and lengths); whether a
commitment is a point is checked when it is used (:meth:`TxOut.to_value`).
Every failure raises an :class:`~confidential.errors.EncodingError`.
"""

from __future__ import annotations

from dataclasses import dataclass

from .commit import explicit_generator
from .errors import BadLength, EncodingError, ValueOutOfRange, WrongPrefix
from .points import (
    ASSET_ID_LEN,
    GENERATOR_PREFIXES,
    POINT_LEN,
    PUBKEY_PREFIXES,
    VALUE_COMMITMENT_PREFIXES,
    as_var_bytes,
    check_asset_id,
    parse_asset_generator,
    parse_pubkey,
    parse_value_commitment,
)
from .verify import Committed, Explicit, Value

MAX_SIZE = 0x02000000
"""Largest CompactSize accepted (Bitcoin's MAX_SIZE)."""

# prefix-A, prefix-B and the explicit size (prefix byte included) of each field kind
_ASSET = (GENERATOR_PREFIXES, 1 + ASSET_ID_LEN, "asset")
_VALUE = (VALUE_COMMITMENT_PREFIXES, 1 + 8, "value")
_NONCE = (PUBKEY_PREFIXES, 1 + 32, "nonce")


def ser_compact_size(n: int) -> bytes:
    if n < 0xFD:
        return bytes((n,))
    if n <= 0xFFFF:
        return b"\xfd" + n.to_bytes(2, "little")
    if n <= 0xFFFFFFFF:
        return b"\xfe" + n.to_bytes(4, "little")
    return b"\xff" + n.to_bytes(8, "little")


def ser_varbytes(data: bytes) -> bytes:
    return ser_compact_size(len(data)) + data


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int, what: str) -> bytes:
        if n > len(self.data) - self.pos:
            raise BadLength(f"{what}: needs {n} bytes, {len(self.data) - self.pos} left")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def compact_size(self, what: str) -> int:
        first = self.take(1, what)[0]
        if first < 0xFD:
            return first
        width = {0xFD: 2, 0xFE: 4, 0xFF: 8}[first]
        n = int.from_bytes(self.take(width, what), "little")
        if n < {2: 0xFD, 4: 0x10000, 8: 0x100000000}[width]:
            raise EncodingError(f"{what}: non-canonical CompactSize")
        if n > MAX_SIZE:
            raise BadLength(f"{what}: length {n} above MAX_SIZE")
        return n

    def varbytes(self, what: str) -> bytes:
        return self.take(self.compact_size(what), what)

    def field(self, kind: tuple[tuple[int, int], int, str]) -> bytes:
        prefixes, explicit_len, what = kind
        prefix = self.take(1, what)[0]
        if prefix == 0:
            return b""
        if prefix == 1:
            return b"\x01" + self.take(explicit_len - 1, what)
        if prefix in prefixes:
            return bytes((prefix,)) + self.take(POINT_LEN - 1, what)
        raise WrongPrefix(f"{what}: unrecognized serialization prefix 0x{prefix:02x}")

    def done(self, what: str) -> None:
        if self.pos != len(self.data):
            raise EncodingError(f"{what}: {len(self.data) - self.pos} trailing bytes")


def _check_field(data: bytes, kind: tuple[tuple[int, int], int, str]) -> bytes:
    prefixes, explicit_len, what = kind
    raw = as_var_bytes(data, what)
    if not raw:
        return raw
    if raw[0] == 1 and len(raw) == explicit_len:
        return raw
    if raw[0] in prefixes and len(raw) == POINT_LEN:
        return raw
    raise WrongPrefix(f"{what}: {len(raw)} bytes with prefix 0x{raw[0]:02x} is not a valid field")


def encode_asset(asset: bytes) -> bytes:
    """A 32-byte asset id as an explicit asset field, or a 33-byte generator as is."""
    raw = as_var_bytes(asset, "asset")
    if len(raw) == ASSET_ID_LEN:
        return b"\x01" + raw
    return parse_asset_generator(raw)


def encode_value(value: int | bytes) -> bytes:
    """An amount as an explicit value field, or a 33-byte value commitment as is."""
    if isinstance(value, int) and not isinstance(value, bool):
        if not 0 <= value < 2**64:
            raise ValueOutOfRange(f"explicit value {value} does not fit 64 bits")
        return b"\x01" + value.to_bytes(8, "big")
    return parse_value_commitment(value)


def encode_nonce(pubkey: bytes | None) -> bytes:
    """An ephemeral public key as a nonce field, or null for ``None``."""
    return b"" if pubkey is None else parse_pubkey(pubkey, "nonce")


def asset_field_generator(asset: bytes) -> bytes:
    """The generator an asset field stands for: explicit (0x01 + id) gives H_asset,
    a 33-byte generator is itself. This is what surjection proofs are checked against."""
    raw = _check_field(asset, _ASSET)
    if not raw:
        raise EncodingError("asset: null asset has no generator")
    if raw[0] == 1:
        return explicit_generator(raw[1:])
    return parse_asset_generator(raw)


@dataclass(frozen=True, slots=True)
class TxOut:
    """One output, fields held as Elements holds them (empty bytes = null)."""

    asset: bytes
    value: bytes
    nonce: bytes
    script_pubkey: bytes
    surjection_proof: bytes = b""
    range_proof: bytes = b""

    def __post_init__(self) -> None:
        _check_field(self.asset, _ASSET)
        _check_field(self.value, _VALUE)
        _check_field(self.nonce, _NONCE)
        for name in ("script_pubkey", "surjection_proof", "range_proof"):
            as_var_bytes(getattr(self, name), name)

    @property
    def is_confidential(self) -> bool:
        return len(self.value) == POINT_LEN

    def serialize(self) -> bytes:
        """The output as it appears in the transaction body (hashed into the txid)."""
        return b"".join(f or b"\x00" for f in (self.asset, self.value, self.nonce)) + ser_varbytes(self.script_pubkey)

    def serialize_witness(self) -> bytes:
        """The output's part of the witness section."""
        return ser_varbytes(self.surjection_proof) + ser_varbytes(self.range_proof)

    @classmethod
    def parse(cls, data: bytes, witness: bytes | None = None) -> TxOut:
        """Read an output (and optionally its witness); refuses trailing bytes."""
        r = _Reader(as_var_bytes(data, "output"))
        asset, value, nonce = r.field(_ASSET), r.field(_VALUE), r.field(_NONCE)
        script = r.varbytes("scriptPubKey")
        r.done("output")
        surj = rng = b""
        if witness is not None:
            w = _Reader(as_var_bytes(witness, "output witness"))
            surj, rng = w.varbytes("surjection proof"), w.varbytes("range proof")
            w.done("output witness")
        return cls(asset, value, nonce, script, surj, rng)

    def to_value(self) -> Value:
        """The output's amount for :func:`verify_balance`: Explicit or Committed."""
        if len(self.value) == 9 and len(self.asset) == 33 and self.asset[0] == 1:
            return Explicit(int.from_bytes(self.value[1:], "big"), check_asset_id(self.asset[1:]))
        if len(self.value) == POINT_LEN and len(self.asset) == POINT_LEN:
            gen = explicit_generator(self.asset[1:]) if self.asset[0] == 1 else parse_asset_generator(self.asset)
            return Committed(parse_value_commitment(self.value), gen)
        raise EncodingError("output has a null field, or an explicit value under a blinded asset (not supported)")

"""Elements transactions: the wire format, ids and weight.

Serialization (Elements ``src/primitives/transaction.h``):

    field        size          notes
    version      int32
    flags        uint8         bit 0: witness section follows; others refused
    vin          vector<TxIn>
    vout         vector<TxOut>
    locktime     uint32
    -- only when flags & 1 --
    in-witness   TxInWitness   one per input, no count
    out-witness  TxOutWitness  one per output, no count

    TxIn:   prevout.txid (32) | prevout.n (uint32, high bits are flags) |
            scriptSig (varbytes) | sequence (uint32) |
            AssetIssuance, only when the issuance flag is set
    n:      0xffffffff = the coinbase's null index, carries no flags;
            otherwise bit 31 = has issuance, bit 30 = is peg-in,
            the low 30 bits are the output index
    AssetIssuance: blinding nonce (32) | entropy (32) |
            amount (ConfidentialValue) | inflation keys (ConfidentialValue)
    TxOut:  asset (ConfidentialAsset) | value (ConfidentialValue) |
            nonce (ConfidentialNonce) | scriptPubKey (varbytes)
    TxInWitness:  issuance amount rangeproof (varbytes) |
            inflation keys rangeproof (varbytes) |
            script witness (stack) | peg-in witness (stack)
    TxOutWitness: surjection proof (varbytes) | range proof (varbytes)

Confidential fields are a prefix byte then a fixed-size body:

    type    0x00 null   0x01 explicit            commitment
    asset   1 byte      33: 32-byte asset id      0x0a/0x0b + 32
    value   1 byte      9: 8-byte BIG-endian      0x08/0x09 + 32
    nonce   1 byte      33: 32 bytes              0x02/0x03 + 32

Any other prefix is a ParseError, as Elements throws on it.

Ids (Elements ``transaction.cpp``, ``consensus/merkle.cpp``):

* ``txid``: sha256d of the serialization without witness (flags byte 0).
* ``wtxid``: sha256d of the full serialization, or the txid when the
  transaction has no witness. This is what Elements' ``GetWitnessHash``
  returns and RPC shows as ``hash``/``wtxid``.
* ``witness_hash``: Elements' ``GetWitnessOnlyHash`` (RPC ``withash``):
  ``fast_merkle_root([in_root, out_root])`` where ``in_root`` is the fast
  merkle root of each input witness's hash (a null-prevout input counts as
  an empty witness), ``out_root`` the same over output witnesses, and each
  witness hash is the fast merkle root of sha256d of its fields'
  serializations (4 leaves for an input, 2 for an output). It is the leaf
  of the block's witness merkle tree; the txid is *not* one of its leaves.

Weight is Elements' ``GetTransactionWeight``: ``base_size * 3 + size``,
where ``base_size`` is the no-witness serialization (flags byte included).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import wallycore as wally

from .errors import ParseError
from .hashes import hash_to_hex, sha256d
from .serialize import (
    ByteReader,
    parse_exact,
    ser_compact_size,
    ser_i32,
    ser_stack,
    ser_u32,
    ser_varbytes,
)

OUTPOINT_ISSUANCE_FLAG = 0x8000_0000
OUTPOINT_PEGIN_FLAG = 0x4000_0000
OUTPOINT_INDEX_MASK = 0x3FFF_FFFF
NULL_INDEX = 0xFFFF_FFFF
SEQUENCE_FINAL = 0xFFFF_FFFF
WITNESS_SCALE_FACTOR = 4

_ZERO32 = b"\x00" * 32


def fast_merkle_root(leaves: list[bytes]) -> bytes:
    """Elements' ``ComputeFastMerkleRoot``, as :func:`consensus.hashes.fast_merkle_root`
    computes it, with the SHA-256 compression done by libwally's
    ``sha256_midstate`` (about 0.6 µs against 125 µs in pure Python): a block
    needs several per transaction."""
    if not leaves:
        return _ZERO32
    midstate = wally.sha256_midstate
    level = leaves
    while len(level) > 1:
        nxt = [bytes(midstate(level[i] + level[i + 1])) for i in range(0, len(level) - 1, 2)]
        if len(level) & 1:
            nxt.append(level[-1])  # carried up unchanged, not paired with itself
        level = nxt
    return level[0]


# --- Confidential commitments -------------------------------------------------


def _read_prefixed(r: ByteReader, sizes: dict[int, int], what: str) -> bytes:
    """Read a prefix byte and the body its prefix implies, as one slice."""
    prefix = r.peek_u8()
    size = sizes.get(prefix)
    if size is None:
        raise ParseError(f"unknown {what} prefix 0x{prefix:02x}")
    return r.read(size)


_ASSET_SIZES = {0x00: 1, 0x01: 33, 0x0A: 33, 0x0B: 33}
_VALUE_SIZES = {0x00: 1, 0x01: 9, 0x08: 33, 0x09: 33}
_NONCE_SIZES = {0x00: 1, 0x01: 33, 0x02: 33, 0x03: 33}


@dataclass(frozen=True, slots=True)
class ConfidentialAsset:
    """An asset: null, an explicit 32-byte id, or a blinded generator.

    ``raw`` is the serialized form, prefix included.
    """

    raw: bytes

    def __post_init__(self) -> None:
        if not self.raw or _ASSET_SIZES.get(self.raw[0]) != len(self.raw):
            raise ValueError(f"malformed confidential asset {self.raw.hex()}")

    @classmethod
    def explicit(cls, asset_id: bytes) -> ConfidentialAsset:
        if len(asset_id) != 32:
            raise ValueError("asset id is 32 bytes")
        return cls(b"\x01" + asset_id)

    @property
    def is_null(self) -> bool:
        return self.raw[0] == 0

    @property
    def is_explicit(self) -> bool:
        return self.raw[0] == 1

    @property
    def is_commitment(self) -> bool:
        return self.raw[0] in (0x0A, 0x0B)

    @property
    def asset_id(self) -> bytes:
        if self.raw[0] != 1:
            raise ValueError("asset is not explicit")
        return self.raw[1:]

    def serialize(self) -> bytes:
        return self.raw

    @classmethod
    def read(cls, r: ByteReader) -> ConfidentialAsset:
        raw = _read_prefixed(r, _ASSET_SIZES, "asset")
        return NULL_ASSET if len(raw) == 1 else cls(raw)

    @classmethod
    def parse(cls, data: bytes) -> ConfidentialAsset:
        return parse_exact(data, cls.read)


@dataclass(frozen=True, slots=True)
class ConfidentialValue:
    """A value: null, an explicit amount (8 bytes big-endian), or a Pedersen
    commitment. ``raw`` is the serialized form, prefix included; it is also
    what a segwit signature hash commits to for the spent output."""

    raw: bytes

    def __post_init__(self) -> None:
        if not self.raw or _VALUE_SIZES.get(self.raw[0]) != len(self.raw):
            raise ValueError(f"malformed confidential value {self.raw.hex()}")

    @classmethod
    def explicit(cls, amount: int) -> ConfidentialValue:
        if not 0 <= amount < 2**64:
            raise ValueError("explicit amount is a uint64")
        return cls(b"\x01" + amount.to_bytes(8, "big"))

    @property
    def is_null(self) -> bool:
        return self.raw[0] == 0

    @property
    def is_explicit(self) -> bool:
        return self.raw[0] == 1

    @property
    def is_commitment(self) -> bool:
        return self.raw[0] in (0x08, 0x09)

    @property
    def amount(self) -> int:
        if self.raw[0] != 1:
            raise ValueError("value is not explicit")
        return int.from_bytes(self.raw[1:], "big")

    def serialize(self) -> bytes:
        return self.raw

    @classmethod
    def read(cls, r: ByteReader) -> ConfidentialValue:
        raw = _read_prefixed(r, _VALUE_SIZES, "value")
        return NULL_VALUE if len(raw) == 1 else cls(raw)

    @classmethod
    def parse(cls, data: bytes) -> ConfidentialValue:
        return parse_exact(data, cls.read)


@dataclass(frozen=True, slots=True)
class ConfidentialNonce:
    """An output nonce: null, 32 explicit bytes, or an ECDH public key."""

    raw: bytes

    def __post_init__(self) -> None:
        if not self.raw or _NONCE_SIZES.get(self.raw[0]) != len(self.raw):
            raise ValueError(f"malformed confidential nonce {self.raw.hex()}")

    @property
    def is_null(self) -> bool:
        return self.raw[0] == 0

    def serialize(self) -> bytes:
        return self.raw

    @classmethod
    def read(cls, r: ByteReader) -> ConfidentialNonce:
        raw = _read_prefixed(r, _NONCE_SIZES, "nonce")
        return NULL_NONCE if len(raw) == 1 else cls(raw)

    @classmethod
    def parse(cls, data: bytes) -> ConfidentialNonce:
        return parse_exact(data, cls.read)


NULL_ASSET = ConfidentialAsset(b"\x00")
NULL_VALUE = ConfidentialValue(b"\x00")
NULL_NONCE = ConfidentialNonce(b"\x00")


# --- Inputs -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OutPoint:
    """A reference to a transaction output: (txid, index).

    ``index`` is the plain output index. The issuance and peg-in flags that
    Elements packs into the serialized index belong to the input, and
    :class:`TxIn` adds and strips them; an OutPoint is therefore also the
    key of the UTXO set and what the signature hash commits to.
    """

    txid: bytes
    index: int

    def __post_init__(self) -> None:
        if len(self.txid) != 32:
            raise ValueError("txid is 32 bytes")
        if not (0 <= self.index <= OUTPOINT_INDEX_MASK or self.index == NULL_INDEX):
            raise ValueError(f"outpoint index {self.index} does not fit Elements' 30 bits")

    @property
    def is_null(self) -> bool:
        """The coinbase's outpoint: zero hash, index 0xffffffff."""
        return self.index == NULL_INDEX and self.txid == _ZERO32

    def serialize(self) -> bytes:
        return self.txid + ser_u32(self.index)

    @classmethod
    def read(cls, r: ByteReader) -> OutPoint:
        """A plain outpoint (no flags); see :meth:`TxIn.read` for the flagged form."""
        txid = r.read(32)
        n = r.read_u32()
        if n != NULL_INDEX and n > OUTPOINT_INDEX_MASK:
            raise ParseError("outpoint index has flag bits set")
        return cls(txid, n)

    @classmethod
    def parse(cls, data: bytes) -> OutPoint:
        return parse_exact(data, cls.read)

    def __repr__(self) -> str:
        return f"OutPoint({hash_to_hex(self.txid)}:{self.index})"


NULL_OUTPOINT = OutPoint(_ZERO32, NULL_INDEX)


@dataclass(frozen=True, slots=True)
class AssetIssuance:
    """A new issuance (zero blinding nonce) or a reissuance. This chain
    rejects issuances at validation; the type exists so that every Elements
    transaction parses."""

    blinding_nonce: bytes
    entropy: bytes
    amount: ConfidentialValue
    inflation_keys: ConfidentialValue

    def __post_init__(self) -> None:
        if len(self.blinding_nonce) != 32 or len(self.entropy) != 32:
            raise ValueError("issuance nonce and entropy are 32 bytes")
        if self.amount.is_null and self.inflation_keys.is_null:
            # Elements cannot serialize a null issuance: the flag would drop.
            raise ValueError("an issuance issues an amount or inflation keys")

    def serialize(self) -> bytes:
        return self.blinding_nonce + self.entropy + self.amount.raw + self.inflation_keys.raw

    @classmethod
    def read(cls, r: ByteReader) -> AssetIssuance:
        nonce = r.read(32)
        entropy = r.read(32)
        amount = ConfidentialValue.read(r)
        keys = ConfidentialValue.read(r)
        if amount.is_null and keys.is_null:
            # Elements would parse it and re-serialize without the flag, so
            # the txid would not be the hash of the bytes received.
            raise ParseError("issuance flag set on a null issuance")
        return cls(nonce, entropy, amount, keys)

    @classmethod
    def parse(cls, data: bytes) -> AssetIssuance:
        return parse_exact(data, cls.read)


@dataclass(frozen=True, slots=True)
class TxIn:
    prevout: OutPoint
    script_sig: bytes = b""
    sequence: int = SEQUENCE_FINAL
    issuance: AssetIssuance | None = None
    is_pegin: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.sequence <= 0xFFFFFFFF:
            raise ValueError("sequence is a uint32")
        if self.prevout.index == NULL_INDEX and (self.issuance is not None or self.is_pegin):
            raise ValueError("an input with index 0xffffffff cannot carry issuance or peg-in flags")
        if self.prevout.index != NULL_INDEX and self._serialized_index() == NULL_INDEX:
            raise ValueError("index 0x3fffffff with both flags would serialize as the null index")

    def _serialized_index(self) -> int:
        n = self.prevout.index
        if n == NULL_INDEX:
            return n
        if self.issuance is not None:
            n |= OUTPOINT_ISSUANCE_FLAG
        if self.is_pegin:
            n |= OUTPOINT_PEGIN_FLAG
        return n

    def serialize(self) -> bytes:
        out = (
            self.prevout.txid
            + ser_u32(self._serialized_index())
            + ser_varbytes(self.script_sig)
            + ser_u32(self.sequence)
        )
        if self.issuance is not None:
            out += self.issuance.serialize()
        return out

    @classmethod
    def read(cls, r: ByteReader) -> TxIn:
        txid = r.read(32)
        n = r.read_u32()
        script_sig = r.read_varbytes()
        sequence = r.read_u32()
        if n == NULL_INDEX:
            return cls(OutPoint(txid, n), script_sig, sequence)
        issuance = AssetIssuance.read(r) if n & OUTPOINT_ISSUANCE_FLAG else None
        return cls(
            OutPoint(txid, n & OUTPOINT_INDEX_MASK), script_sig, sequence, issuance, bool(n & OUTPOINT_PEGIN_FLAG)
        )

    @classmethod
    def parse(cls, data: bytes) -> TxIn:
        return parse_exact(data, cls.read)


# --- Outputs ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TxOut:
    asset: ConfidentialAsset
    value: ConfidentialValue
    nonce: ConfidentialNonce = NULL_NONCE
    script_pubkey: bytes = b""

    @classmethod
    def explicit(cls, asset_id: bytes, amount: int, script_pubkey: bytes) -> TxOut:
        return cls(ConfidentialAsset.explicit(asset_id), ConfidentialValue.explicit(amount), NULL_NONCE, script_pubkey)

    @property
    def is_fee(self) -> bool:
        """Elements' ``CTxOut::IsFee``: empty script, explicit asset and value."""
        return not self.script_pubkey and self.value.raw[0] == 1 and self.asset.raw[0] == 1

    @property
    def is_explicit(self) -> bool:
        return self.value.raw[0] == 1 and self.asset.raw[0] == 1

    def serialize(self) -> bytes:
        return self.asset.raw + self.value.raw + self.nonce.raw + ser_varbytes(self.script_pubkey)

    @classmethod
    def read(cls, r: ByteReader) -> TxOut:
        asset = ConfidentialAsset.read(r)
        value = ConfidentialValue.read(r)
        nonce = ConfidentialNonce.read(r)
        return cls(asset, value, nonce, r.read_varbytes())

    @classmethod
    def parse(cls, data: bytes) -> TxOut:
        return parse_exact(data, cls.read)


# --- Witnesses --------------------------------------------------------------


def _leaf_bytes(data: bytes) -> bytes:
    return sha256d(ser_varbytes(data))


def _leaf_stack(stack: tuple[bytes, ...]) -> bytes:
    return sha256d(ser_stack(stack))


@dataclass(frozen=True, slots=True)
class TxInWitness:
    issuance_amount_rangeproof: bytes = b""
    inflation_keys_rangeproof: bytes = b""
    script_witness: tuple[bytes, ...] = ()
    pegin_witness: tuple[bytes, ...] = ()

    @property
    def is_null(self) -> bool:
        return not (
            self.issuance_amount_rangeproof
            or self.inflation_keys_rangeproof
            or self.script_witness
            or self.pegin_witness
        )

    def serialize(self) -> bytes:
        return (
            ser_varbytes(self.issuance_amount_rangeproof)
            + ser_varbytes(self.inflation_keys_rangeproof)
            + ser_stack(self.script_witness)
            + ser_stack(self.pegin_witness)
        )

    def hash(self) -> bytes:
        """Elements' ``CTxInWitness::GetHash``."""
        if self.is_null:
            return EMPTY_TXIN_WITNESS_HASH
        return fast_merkle_root(
            [
                _leaf_bytes(self.issuance_amount_rangeproof),
                _leaf_bytes(self.inflation_keys_rangeproof),
                _leaf_stack(self.script_witness),
                _leaf_stack(self.pegin_witness),
            ]
        )

    @classmethod
    def read(cls, r: ByteReader) -> TxInWitness:
        a = r.read_varbytes()
        b = r.read_varbytes()
        script_witness = r.read_stack()
        pegin_witness = r.read_stack()
        if not (a or b or script_witness or pegin_witness):
            return EMPTY_TXIN_WITNESS
        return cls(a, b, script_witness, pegin_witness)

    @classmethod
    def parse(cls, data: bytes) -> TxInWitness:
        return parse_exact(data, cls.read)


@dataclass(frozen=True, slots=True)
class TxOutWitness:
    surjection_proof: bytes = b""
    range_proof: bytes = b""

    @property
    def is_null(self) -> bool:
        return not (self.surjection_proof or self.range_proof)

    def serialize(self) -> bytes:
        return ser_varbytes(self.surjection_proof) + ser_varbytes(self.range_proof)

    def hash(self) -> bytes:
        """Elements' ``CTxOutWitness::GetHash``."""
        if self.is_null:
            return EMPTY_TXOUT_WITNESS_HASH
        return fast_merkle_root([_leaf_bytes(self.surjection_proof), _leaf_bytes(self.range_proof)])

    @classmethod
    def read(cls, r: ByteReader) -> TxOutWitness:
        pos = r.pos
        if r.slice(pos, pos + 2) == b"\x00\x00":  # the usual case: no proofs
            r.read(2)
            return EMPTY_TXOUT_WITNESS
        s = r.read_varbytes()
        p = r.read_varbytes()
        if not (s or p):
            return EMPTY_TXOUT_WITNESS
        return cls(s, p)

    @classmethod
    def parse(cls, data: bytes) -> TxOutWitness:
        return parse_exact(data, cls.read)


EMPTY_TXIN_WITNESS = TxInWitness()
EMPTY_TXOUT_WITNESS = TxOutWitness()
_EMPTY_LEAF = sha256d(b"\x00")
EMPTY_TXIN_WITNESS_HASH = fast_merkle_root([_EMPTY_LEAF] * 4)
EMPTY_TXOUT_WITNESS_HASH = fast_merkle_root([_EMPTY_LEAF] * 2)


# --- Transaction ------------------------------------------------------------

_MIN_TXIN_SIZE = 32 + 4 + 1 + 4
_MIN_TXOUT_SIZE = 1 + 1 + 1 + 1


@dataclass(frozen=True)
class Transaction:
    """An Elements transaction. Witnesses are held beside the inputs and
    outputs (Elements' ``CTxWitness``); an empty tuple means "no witness" and
    is normalized to one empty witness per input/output.

    Hashes, sizes and the serialization are computed once and cached; a
    transaction read from bytes keeps those bytes, so its ids cost one hash
    and no re-serialization.
    """

    version: int
    inputs: tuple[TxIn, ...]
    outputs: tuple[TxOut, ...]
    locktime: int = 0
    input_witnesses: tuple[TxInWitness, ...] = ()
    output_witnesses: tuple[TxOutWitness, ...] = ()

    def __post_init__(self) -> None:
        if not -(2**31) <= self.version < 2**31:
            raise ValueError("version is int32")
        if not 0 <= self.locktime <= 0xFFFFFFFF:
            raise ValueError("locktime is uint32")
        if not self.input_witnesses:
            object.__setattr__(self, "input_witnesses", (EMPTY_TXIN_WITNESS,) * len(self.inputs))
        elif len(self.input_witnesses) != len(self.inputs):
            raise ValueError("one input witness per input")
        if not self.output_witnesses:
            object.__setattr__(self, "output_witnesses", (EMPTY_TXOUT_WITNESS,) * len(self.outputs))
        elif len(self.output_witnesses) != len(self.outputs):
            raise ValueError("one output witness per output")

    # -- serialization -------------------------------------------------------

    @property
    def has_witness(self) -> bool:
        return not all(w.is_null for w in self.input_witnesses) or not all(w.is_null for w in self.output_witnesses)

    @cached_property
    def _encoded(self) -> tuple[bytes, int]:
        """(full serialization, length of its part before the witness)."""
        has_witness = self.has_witness
        body = (
            ser_i32(self.version)
            + (b"\x01" if has_witness else b"\x00")
            + ser_compact_size(len(self.inputs))
            + b"".join(i.serialize() for i in self.inputs)
            + ser_compact_size(len(self.outputs))
            + b"".join(o.serialize() for o in self.outputs)
            + ser_u32(self.locktime)
        )
        if not has_witness:
            return body, len(body)
        wit = b"".join(w.serialize() for w in self.input_witnesses) + b"".join(
            w.serialize() for w in self.output_witnesses
        )
        return body + wit, len(body)

    def serialize(self) -> bytes:
        return self._encoded[0]

    def serialize_without_witness(self) -> bytes:
        raw, base_end = self._encoded
        if base_end == len(raw):
            return raw
        # Same bytes with the flags byte cleared and the witness dropped.
        return raw[:4] + b"\x00" + raw[5:base_end]

    @classmethod
    def read(cls, r: ByteReader) -> Transaction:
        start = r.pos
        version = r.read_i32()
        flags = r.read_u8()
        if flags & ~1:
            raise ParseError(f"unknown transaction flags 0x{flags:02x}")
        inputs = tuple([TxIn.read(r) for _ in range(r.read_count(_MIN_TXIN_SIZE))])
        outputs = tuple([TxOut.read(r) for _ in range(r.read_count(_MIN_TXOUT_SIZE))])
        locktime = r.read_u32()
        base_end = r.pos
        if flags:
            in_wits = tuple([TxInWitness.read(r) for _ in inputs])
            out_wits = tuple([TxOutWitness.read(r) for _ in outputs])
            if all(w is EMPTY_TXIN_WITNESS for w in in_wits) and all(w is EMPTY_TXOUT_WITNESS for w in out_wits):
                # Elements: "Superfluous witness record". Accepting it would
                # give two encodings of one transaction.
                raise ParseError("witness flag set but every witness is empty")
        else:
            in_wits = (EMPTY_TXIN_WITNESS,) * len(inputs)
            out_wits = (EMPTY_TXOUT_WITNESS,) * len(outputs)
        tx = cls(version, inputs, outputs, locktime, in_wits, out_wits)
        # Seed the cache with the bytes just read: ids need no re-encoding.
        tx.__dict__["_encoded"] = (r.slice(start, r.pos), base_end - start)
        return tx

    @classmethod
    def parse(cls, data: bytes) -> Transaction:
        return parse_exact(data, cls.read)

    # -- ids -----------------------------------------------------------------

    @cached_property
    def txid(self) -> bytes:
        """sha256d of the no-witness serialization, internal byte order."""
        return sha256d(self.serialize_without_witness())

    @property
    def txid_hex(self) -> str:
        return hash_to_hex(self.txid)

    @cached_property
    def wtxid(self) -> bytes:
        """Elements' ``GetWitnessHash``: sha256d of the full serialization."""
        raw, base_end = self._encoded
        return self.txid if base_end == len(raw) else sha256d(raw)

    @cached_property
    def witness_hash(self) -> bytes:
        """Elements' ``GetWitnessOnlyHash``, the leaf of the block's witness
        merkle tree. A null-prevout (coinbase) input's witness counts as
        empty: the coinbase's reserved value is not committed to."""
        in_hashes = [
            EMPTY_TXIN_WITNESS_HASH if i.prevout.is_null else w.hash()
            for i, w in zip(self.inputs, self.input_witnesses)
        ]
        out_hashes = [w.hash() for w in self.output_witnesses]
        return fast_merkle_root([fast_merkle_root(in_hashes), fast_merkle_root(out_hashes)])

    # -- size ----------------------------------------------------------------

    @property
    def size(self) -> int:
        return len(self._encoded[0])

    @property
    def base_size(self) -> int:
        return self._encoded[1]

    @property
    def weight(self) -> int:
        raw, base_end = self._encoded
        return base_end * (WITNESS_SCALE_FACTOR - 1) + len(raw)

    @property
    def vsize(self) -> int:
        return (self.weight + WITNESS_SCALE_FACTOR - 1) // WITNESS_SCALE_FACTOR

    # -- shape ---------------------------------------------------------------

    @property
    def is_coinbase(self) -> bool:
        """Elements' ``IsCoinBase``: exactly one input, with the null prevout."""
        return len(self.inputs) == 1 and self.inputs[0].prevout.is_null

    def with_witnesses(
        self,
        input_witnesses: tuple[TxInWitness, ...] | None = None,
        output_witnesses: tuple[TxOutWitness, ...] | None = None,
    ) -> Transaction:
        """The same transaction with other witnesses (same txid)."""
        return Transaction(
            self.version,
            self.inputs,
            self.outputs,
            self.locktime,
            self.input_witnesses if input_witnesses is None else input_witnesses,
            self.output_witnesses if output_witnesses is None else output_witnesses,
        )

    def __repr__(self) -> str:
        return f"Transaction({self.txid_hex}, {len(self.inputs)} in, {len(self.outputs)} out, {self.size} B)"

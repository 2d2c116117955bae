"""Bitcoin's wire structures with their real serialization, and the hashes over them.

Every hash is kept in internal byte order (as hashed); ``*_hex`` properties give
the reversed form that RPC shows.

| structure   | serialization                                                                      |
|-------------|------------------------------------------------------------------------------------|
| OutPoint    | txid (32, internal order) · n (u32 LE)                                             |
| TxIn        | prevout · scriptSig (compact size + bytes) · nSequence (u32 LE)                    |
| TxOut       | value (i64 LE, satoshis) · scriptPubKey (compact size + bytes)                     |
| Transaction | version (i32) · [00 01 when any witness] · vin · vout · [witness stack per input]  |
|             | · nLockTime (u32)                                                                  |
| BlockHeader | version (i32) · prev hash (32) · merkle root (32) · time · bits · nonce (u32 each) |
| Block       | header · compact size · transactions (with witness)                                |

A witness stack is a compact size count of items, each compact size + bytes.
``txid`` hashes the serialization without witness, ``wtxid`` with it (BIP141).
Weight is 3 × stripped size + total size; virtual size is weight / 4 rounded up.

Parsing follows Bitcoin Core's rules: compact sizes must be canonical and below
0x02000000, a witness flag other than 01 is refused, a witness section in which
every stack is empty is "superfluous", and trailing bytes are an error.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field

MAX_SIZE = 0x02000000  # Core's cap on any compact size read from the wire
SEQUENCE_FINAL = 0xFFFFFFFF
NULL_HASH = b"\x00" * 32
COIN = 100_000_000
MAX_MONEY = 21_000_000 * COIN
WITNESS_SCALE_FACTOR = 4


class DeserializationError(ValueError):
    """Bytes that are not a well-formed structure."""


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def sha256d(data: bytes) -> bytes:
    return hashlib.sha256(hashlib.sha256(data).digest()).digest()


def _ripemd160(data: bytes) -> bytes:
    try:
        return hashlib.new("ripemd160", data).digest()
    except ValueError:  # OpenSSL 3 builds without the legacy provider
        from bitcoin.core.contrib.ripemd160 import ripemd160 as pure

        result: bytes = pure(data)
        return result


def ripemd160(data: bytes) -> bytes:
    return _ripemd160(data)


def hash160(data: bytes) -> bytes:
    return _ripemd160(hashlib.sha256(data).digest())


def hash_to_hex(h: bytes) -> str:
    """Internal byte order to RPC display order."""
    return h[::-1].hex()


def hex_to_hash(s: str) -> bytes:
    """RPC display order to internal byte order; raises ValueError unless 64 hex digits."""
    if len(s) != 64:
        raise ValueError("must be of length 64")
    return bytes.fromhex(s)[::-1]


# --- compact sizes and streams --------------------------------------------------------


def ser_compact_size(n: int) -> bytes:
    if n < 0xFD:
        return bytes((n,))
    if n <= 0xFFFF:
        return b"\xfd" + n.to_bytes(2, "little")
    if n <= 0xFFFFFFFF:
        return b"\xfe" + n.to_bytes(4, "little")
    return b"\xff" + n.to_bytes(8, "little")


def ser_bytes(b: bytes) -> bytes:
    return ser_compact_size(len(b)) + b


class Reader:
    """A cursor over bytes; every short read raises DeserializationError."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def read(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise DeserializationError("end of data")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u8(self) -> int:
        return self.read(1)[0]

    def u32(self) -> int:
        return int(struct.unpack("<I", self.read(4))[0])

    def i32(self) -> int:
        return int(struct.unpack("<i", self.read(4))[0])

    def i64(self) -> int:
        return int(struct.unpack("<q", self.read(8))[0])

    def compact_size(self, range_check: bool = True) -> int:
        first = self.u8()
        if first < 0xFD:
            n = first
        elif first == 0xFD:
            n = int.from_bytes(self.read(2), "little")
            if n < 0xFD:
                raise DeserializationError("non-canonical ReadCompactSize()")
        elif first == 0xFE:
            n = int.from_bytes(self.read(4), "little")
            if n < 0x10000:
                raise DeserializationError("non-canonical ReadCompactSize()")
        else:
            n = int.from_bytes(self.read(8), "little")
            if n < 0x100000000:
                raise DeserializationError("non-canonical ReadCompactSize()")
        if range_check and n > MAX_SIZE:
            raise DeserializationError("ReadCompactSize(): size too large")
        return n

    def var_bytes(self) -> bytes:
        return self.read(self.compact_size())

    def at_end(self) -> bool:
        return self.pos == len(self.data)

    def expect_end(self) -> None:
        if not self.at_end():
            raise DeserializationError("trailing bytes after the structure")


# --- transactions ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OutPoint:
    txid: bytes  # internal byte order
    n: int

    def __post_init__(self) -> None:
        if len(self.txid) != 32:
            raise ValueError("an outpoint's txid is 32 bytes")
        if not 0 <= self.n <= 0xFFFFFFFF:
            raise ValueError("an outpoint's index is a u32")

    def serialize(self) -> bytes:
        return self.txid + struct.pack("<I", self.n)

    @classmethod
    def read(cls, r: Reader) -> OutPoint:
        return cls(r.read(32), r.u32())

    def is_null(self) -> bool:
        return self.txid == NULL_HASH and self.n == 0xFFFFFFFF

    def __repr__(self) -> str:
        return f"OutPoint({hash_to_hex(self.txid)}:{self.n})"


NULL_OUTPOINT = OutPoint(NULL_HASH, 0xFFFFFFFF)


@dataclass(frozen=True, slots=True)
class TxIn:
    prevout: OutPoint
    script_sig: bytes = b""
    sequence: int = SEQUENCE_FINAL
    witness: tuple[bytes, ...] = ()

    def serialize(self) -> bytes:
        return self.prevout.serialize() + ser_bytes(self.script_sig) + struct.pack("<I", self.sequence)

    @classmethod
    def read(cls, r: Reader) -> TxIn:
        return cls(OutPoint.read(r), r.var_bytes(), r.u32())


@dataclass(frozen=True, slots=True)
class TxOut:
    value: int  # satoshis
    script_pubkey: bytes

    def serialize(self) -> bytes:
        return struct.pack("<q", self.value) + ser_bytes(self.script_pubkey)

    @classmethod
    def read(cls, r: Reader) -> TxOut:
        return cls(r.i64(), r.var_bytes())


def _ser_witness(stack: tuple[bytes, ...]) -> bytes:
    return ser_compact_size(len(stack)) + b"".join(ser_bytes(item) for item in stack)


@dataclass(frozen=True, slots=True)
class Transaction:
    """An immutable transaction; txid, wtxid and sizes are computed once."""

    version: int
    vin: tuple[TxIn, ...]
    vout: tuple[TxOut, ...]
    locktime: int = 0
    txid: bytes = field(init=False, repr=False, compare=False)
    wtxid: bytes = field(init=False, repr=False, compare=False)
    size: int = field(init=False, repr=False, compare=False)
    stripped_size: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        stripped = self.serialize(with_witness=False)
        full = self.serialize(with_witness=True) if self.has_witness() else stripped
        object.__setattr__(self, "txid", sha256d(stripped))
        object.__setattr__(self, "wtxid", sha256d(full))
        object.__setattr__(self, "size", len(full))
        object.__setattr__(self, "stripped_size", len(stripped))

    def has_witness(self) -> bool:
        return any(txin.witness for txin in self.vin)

    def serialize(self, with_witness: bool = True) -> bytes:
        parts = [struct.pack("<i", self.version)]
        witness = with_witness and self.has_witness()
        if witness:
            parts.append(b"\x00\x01")
        parts.append(ser_compact_size(len(self.vin)))
        parts.extend(txin.serialize() for txin in self.vin)
        parts.append(ser_compact_size(len(self.vout)))
        parts.extend(txout.serialize() for txout in self.vout)
        if witness:
            parts.extend(_ser_witness(txin.witness) for txin in self.vin)
        parts.append(struct.pack("<I", self.locktime))
        return b"".join(parts)

    @classmethod
    def read(cls, r: Reader, allow_witness: bool = True) -> Transaction:
        version = r.i32()
        vin = [TxIn.read(r) for _ in range(r.compact_size())]
        flags = 0
        if not vin and allow_witness:
            flags = r.u8()
            if flags != 0:
                vin = [TxIn.read(r) for _ in range(r.compact_size())]
                vout = [TxOut.read(r) for _ in range(r.compact_size())]
            else:
                vout = []
        else:
            vout = [TxOut.read(r) for _ in range(r.compact_size())]
        if flags & 1 and allow_witness:
            flags ^= 1
            stacks = []
            for _ in vin:
                stacks.append(tuple(r.var_bytes() for _ in range(r.compact_size())))
            if not any(stacks):
                raise DeserializationError("Superfluous witness record")
            vin = [TxIn(t.prevout, t.script_sig, t.sequence, s) for t, s in zip(vin, stacks, strict=True)]
        if flags:
            raise DeserializationError("Unknown transaction optional data")
        return cls(version, tuple(vin), tuple(vout), r.u32())

    @classmethod
    def from_bytes(cls, data: bytes) -> Transaction:
        """Parse a whole transaction, as Core's DecodeHexTx: with witness first,
        then without (a legacy transaction with no inputs looks like a marker)."""
        errors = []
        for allow_witness in (True, False):
            r = Reader(data)
            try:
                tx = cls.read(r, allow_witness)
                r.expect_end()
                return tx
            except DeserializationError as e:
                errors.append(str(e))
        raise DeserializationError(errors[0])

    @property
    def txid_hex(self) -> str:
        return hash_to_hex(self.txid)

    @property
    def wtxid_hex(self) -> str:
        return hash_to_hex(self.wtxid)

    @property
    def weight(self) -> int:
        return self.stripped_size * (WITNESS_SCALE_FACTOR - 1) + self.size

    @property
    def vsize(self) -> int:
        return (self.weight + WITNESS_SCALE_FACTOR - 1) // WITNESS_SCALE_FACTOR

    def is_coinbase(self) -> bool:
        return len(self.vin) == 1 and self.vin[0].prevout.is_null()

    def __repr__(self) -> str:
        return f"Transaction({self.txid_hex}, {len(self.vin)} in, {len(self.vout)} out)"


# --- blocks --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BlockHeader:
    version: int
    prev_hash: bytes
    merkle_root: bytes
    time: int
    bits: int
    nonce: int
    hash: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.prev_hash) != 32 or len(self.merkle_root) != 32:
            raise ValueError("header hashes are 32 bytes")
        object.__setattr__(self, "hash", sha256d(self.serialize()))

    def serialize(self) -> bytes:
        return (
            struct.pack("<i", self.version)
            + self.prev_hash
            + self.merkle_root
            + struct.pack("<III", self.time, self.bits, self.nonce)
        )

    @classmethod
    def read(cls, r: Reader) -> BlockHeader:
        version = r.i32()
        prev = r.read(32)
        root = r.read(32)
        t, bits, nonce = struct.unpack("<III", r.read(12))
        return cls(version, prev, root, t, bits, nonce)

    @property
    def hash_hex(self) -> str:
        return hash_to_hex(self.hash)

    def with_nonce(self, nonce: int) -> BlockHeader:
        return BlockHeader(self.version, self.prev_hash, self.merkle_root, self.time, self.bits, nonce)


@dataclass(frozen=True, slots=True)
class Block:
    header: BlockHeader
    txs: tuple[Transaction, ...]

    def serialize(self, with_witness: bool = True) -> bytes:
        return (
            self.header.serialize()
            + ser_compact_size(len(self.txs))
            + b"".join(tx.serialize(with_witness) for tx in self.txs)
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Block:
        r = Reader(data)
        header = BlockHeader.read(r)
        txs = tuple(Transaction.read(r) for _ in range(r.compact_size()))
        r.expect_end()
        return cls(header, txs)

    @property
    def hash(self) -> bytes:
        return self.header.hash

    @property
    def hash_hex(self) -> str:
        return self.header.hash_hex

    @property
    def size(self) -> int:
        return 80 + len(ser_compact_size(len(self.txs))) + sum(tx.size for tx in self.txs)

    @property
    def stripped_size(self) -> int:
        return 80 + len(ser_compact_size(len(self.txs))) + sum(tx.stripped_size for tx in self.txs)

    @property
    def weight(self) -> int:
        return self.stripped_size * (WITNESS_SCALE_FACTOR - 1) + self.size


# --- merkle trees ----------------------------------------------------------------------------


def merkle_root(hashes: list[bytes]) -> tuple[bytes, bool]:
    """Bitcoin's merkle root (last node duplicated on odd levels) and whether
    a level held two equal adjacent nodes (CVE-2012-2459: the block is mutated)."""
    if not hashes:
        return NULL_HASH, False
    level = list(hashes)
    mutated = False
    while len(level) > 1:
        for i in range(0, len(level) - 1, 2):
            if level[i] == level[i + 1]:
                mutated = True
        if len(level) % 2:
            level.append(level[-1])
        level = [sha256d(level[i] + level[i + 1]) for i in range(0, len(level), 2)]
    return level[0], mutated


def block_merkle_root(txs: tuple[Transaction, ...] | list[Transaction]) -> tuple[bytes, bool]:
    return merkle_root([tx.txid for tx in txs])


def witness_merkle_root(txs: tuple[Transaction, ...] | list[Transaction]) -> bytes:
    # The coinbase's wtxid counts as zero: its witness holds the reserved value.
    hashes = [NULL_HASH] + [tx.wtxid for tx in txs[1:]]
    return merkle_root(hashes)[0]


# --- compact difficulty ---------------------------------------------------------------------


def bits_to_target(bits: int) -> tuple[int, bool, bool]:
    """(target, negative, overflow) as Core's arith_uint256::SetCompact."""
    size = bits >> 24
    word = bits & 0x007FFFFF
    if size <= 3:
        target = word >> (8 * (3 - size))
    else:
        target = word << (8 * (size - 3))
    negative = word != 0 and bool(bits & 0x00800000)
    overflow = word != 0 and (size > 34 or (word > 0xFF and size > 33) or (word > 0xFFFF and size > 32))
    return target, negative, overflow


def block_work(bits: int) -> int:
    target, negative, overflow = bits_to_target(bits)
    if negative or overflow or target == 0:
        return 0
    return (1 << 256) // (target + 1)


def difficulty(bits: int) -> float:
    """Core's GetDifficulty: the minimum difficulty's target over this one."""
    shift = (bits >> 24) & 0xFF
    diff = 0x0000FFFF / (bits & 0x00FFFFFF)
    while shift < 29:
        diff *= 256.0
        shift += 1
    while shift > 29:
        diff /= 256.0
        shift -= 1
    return diff

"""The parent chain as a peg-in proves it: Bitcoin transactions, block headers,
BIP37 merkle blocks, proof of work, and segwit addresses.

Pure and independent of any Bitcoin node: a functionary validates a peg-in's
witness from these bytes alone, and asks its own bitcoind only whether the
proven block is in its best chain and how deep (``consensus.peg.MainchainView``).

Serializations (Bitcoin Core ``primitives/transaction.h``, ``merkleblock.h``):

    Transaction  version (i32) | [marker 00, flag 01] | vin | vout |
                 [one witness stack per input] | locktime (u32)
    TxIn         prev txid (32) | prev index (u32) | scriptSig (varbytes) |
                 sequence (u32)
    TxOut        value (i64 LE, satoshis) | scriptPubKey (varbytes)
    Header       version (i32) | prev (32) | merkle root (32) | time (u32) |
                 bits (u32) | nonce (u32)                       80 bytes
    MerkleBlock  header (80) | n transactions (u32) |
                 hashes (compact count, 32 each) |
                 flag bits (compact byte count, bits LSB first in each byte)

Hashes are kept in internal byte order (as hashed); display forms are
reversed (:func:`consensus.hashes.hash_to_hex`).

Parsing is Bitcoin Core's with witnesses allowed (as Elements reads the
mainchain transaction of a peg-in): canonical compact sizes, no trailing
bytes, no superfluous witness record, no unknown flag. The ``txid`` hashes
the serialization without witness, so a peg-in may carry the transaction
with or without its witness and prove the same output. Every failure is a
:class:`~consensus.errors.ParseError`.

The partial merkle tree is checked as Bitcoin Core's
``CPartialMerkleTree::ExtractMatches``: every hash and every flag bit
consumed (up to the byte padding), no identical left and right siblings,
at most one hash per transaction, and a transaction count a block could
hold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

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

MAX_MONEY = 21_000_000 * 100_000_000
HEADER_SIZE = 80
MAX_BLOCK_WEIGHT = 4_000_000
MIN_TRANSACTION_WEIGHT = 4 * 60
MAX_MERKLE_TRANSACTIONS = MAX_BLOCK_WEIGHT // MIN_TRANSACTION_WEIGHT
"""Bitcoin Core's bound on a partial merkle tree's transaction count."""

_MIN_TXIN_SIZE = 32 + 4 + 1 + 4
_MIN_TXOUT_SIZE = 8 + 1


# --- Networks ------------------------------------------------------------------


def _check_hrp(hrp: str) -> None:
    if not 1 <= len(hrp) <= 83 or any(not 33 <= ord(c) <= 126 for c in hrp) or hrp.lower() != hrp:
        raise ValueError(f"bad bech32 human-readable part {hrp!r}")


@dataclass(frozen=True)
class MainchainNetwork:
    """What a sidechain needs to know about its parent chain: the genesis hash
    (internal byte order) named by peg-ins and peg-outs, the proof-of-work
    limit headers must respect (Elements' ``-parentpowlimit``), and the
    segwit address prefix used for peg-in addresses."""

    name: str
    genesis_hash: bytes
    pow_limit: int
    bech32_hrp: str

    def __post_init__(self) -> None:
        if len(self.genesis_hash) != 32:
            raise ValueError("genesis hash is 32 bytes")
        if not 0 < self.pow_limit < 2**256:
            raise ValueError("pow limit is a positive 256-bit number")
        _check_hrp(self.bech32_hrp)


def _genesis(display_hex: str) -> bytes:
    return bytes.fromhex(display_hex)[::-1]


MAINNET = MainchainNetwork(
    "main",
    _genesis("000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f"),
    0x00000000FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF,
    "bc",
)
TESTNET = MainchainNetwork(
    "test",
    _genesis("000000000933ea01ad0ee984209779baaec3ced90fa3f408719526f8d77f4943"),
    0x00000000FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF,
    "tb",
)
REGTEST = MainchainNetwork(
    "regtest",
    _genesis("0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206"),
    0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF,
    "bcrt",
)


# --- Transactions --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BtcTxIn:
    prev_txid: bytes
    prev_index: int
    script_sig: bytes = b""
    sequence: int = 0xFFFFFFFF

    def __post_init__(self) -> None:
        if len(self.prev_txid) != 32:
            raise ValueError("prev txid is 32 bytes")
        if not 0 <= self.prev_index <= 0xFFFFFFFF or not 0 <= self.sequence <= 0xFFFFFFFF:
            raise ValueError("index and sequence are uint32")

    def serialize(self) -> bytes:
        return self.prev_txid + ser_u32(self.prev_index) + ser_varbytes(self.script_sig) + ser_u32(self.sequence)

    @classmethod
    def read(cls, r: ByteReader) -> BtcTxIn:
        return cls(r.read(32), r.read_u32(), r.read_varbytes(), r.read_u32())


@dataclass(frozen=True, slots=True)
class BtcTxOut:
    value: int
    """Satoshis. Bitcoin serializes an int64; a negative value parses (as in
    Core) and is refused by whoever relies on the amount."""
    script_pubkey: bytes

    def __post_init__(self) -> None:
        if not -(2**63) <= self.value < 2**63:
            raise ValueError("value is int64")

    def serialize(self) -> bytes:
        return self.value.to_bytes(8, "little", signed=True) + ser_varbytes(self.script_pubkey)

    @classmethod
    def read(cls, r: ByteReader) -> BtcTxOut:
        return cls(r.read_i64(), r.read_varbytes())


@dataclass(frozen=True)
class BtcTransaction:
    """A Bitcoin transaction. ``witnesses`` is empty, or one stack per input."""

    version: int
    inputs: tuple[BtcTxIn, ...]
    outputs: tuple[BtcTxOut, ...]
    locktime: int = 0
    witnesses: tuple[tuple[bytes, ...], ...] = ()

    def __post_init__(self) -> None:
        if not -(2**31) <= self.version < 2**31:
            raise ValueError("version is int32")
        if not 0 <= self.locktime <= 0xFFFFFFFF:
            raise ValueError("locktime is uint32")
        if self.witnesses and len(self.witnesses) != len(self.inputs):
            raise ValueError("one witness stack per input")

    @property
    def has_witness(self) -> bool:
        return any(self.witnesses)

    def serialize(self, *, with_witness: bool = True) -> bytes:
        body = ser_compact_size(len(self.inputs)) + b"".join(i.serialize() for i in self.inputs)
        body += ser_compact_size(len(self.outputs)) + b"".join(o.serialize() for o in self.outputs)
        if with_witness and self.has_witness:
            wit = b"".join(ser_stack(w) for w in self.witnesses)
            return ser_i32(self.version) + b"\x00\x01" + body + wit + ser_u32(self.locktime)
        return ser_i32(self.version) + body + ser_u32(self.locktime)

    def serialize_without_witness(self) -> bytes:
        return self.serialize(with_witness=False)

    @cached_property
    def txid(self) -> bytes:
        """sha256d of the serialization without witness (internal order)."""
        return sha256d(self.serialize_without_witness())

    @property
    def txid_hex(self) -> str:
        return hash_to_hex(self.txid)

    @classmethod
    def read(cls, r: ByteReader) -> BtcTransaction:
        # Bitcoin Core's UnserializeTransaction with witnesses allowed: an
        # empty vin is the segwit marker, and the byte after it the flags.
        version = r.read_i32()
        flags = 0
        inputs = _read_inputs(r)
        if not inputs:
            flags = r.read_u8()
            if flags:
                inputs = _read_inputs(r)
                outputs = _read_outputs(r)
            else:
                outputs = ()
        else:
            outputs = _read_outputs(r)
        witnesses: tuple[tuple[bytes, ...], ...] = ()
        if flags & 1:
            flags ^= 1
            witnesses = tuple(r.read_stack() for _ in inputs)
            if not any(witnesses):
                raise ParseError("superfluous witness record")
        if flags:
            raise ParseError("unknown transaction optional data")
        locktime = r.read_u32()
        try:
            return cls(version, inputs, outputs, locktime, witnesses)
        except ValueError as e:  # pragma: no cover - every field was read in range
            raise ParseError(str(e)) from None

    @classmethod
    def parse(cls, data: bytes) -> BtcTransaction:
        return parse_exact(data, cls.read)

    def __repr__(self) -> str:
        return f"BtcTransaction({self.txid_hex}, {len(self.inputs)} in, {len(self.outputs)} out)"


def _read_inputs(r: ByteReader) -> tuple[BtcTxIn, ...]:
    return tuple([BtcTxIn.read(r) for _ in range(r.read_count(_MIN_TXIN_SIZE))])


def _read_outputs(r: ByteReader) -> tuple[BtcTxOut, ...]:
    return tuple([BtcTxOut.read(r) for _ in range(r.read_count(_MIN_TXOUT_SIZE))])


# --- Headers and proof of work -----------------------------------------------------


def bits_to_target(bits: int) -> tuple[int, bool, bool]:
    """Bitcoin Core's ``arith_uint256::SetCompact``: (target, negative, overflow)."""
    size = bits >> 24
    word = bits & 0x007FFFFF
    if size <= 3:
        target = word >> (8 * (3 - size))
    else:
        target = word << (8 * (size - 3))
    negative = word != 0 and bool(bits & 0x00800000)
    overflow = word != 0 and (size > 34 or (word > 0xFF and size > 33) or (word > 0xFFFF and size > 32))
    return target, negative, overflow


def check_proof_of_work(block_hash: bytes, bits: int, pow_limit: int) -> bool:
    """Elements' ``CheckParentProofOfWork``: ``bits`` is a valid target no
    easier than ``pow_limit`` and the hash meets it."""
    target, negative, overflow = bits_to_target(bits)
    if negative or overflow or target == 0 or target > pow_limit:
        return False
    return int.from_bytes(block_hash, "little") <= target


@dataclass(frozen=True, slots=True)
class BtcBlockHeader:
    version: int
    prev_hash: bytes
    merkle_root: bytes
    time: int
    bits: int
    nonce: int

    def __post_init__(self) -> None:
        if len(self.prev_hash) != 32 or len(self.merkle_root) != 32:
            raise ValueError("hashes are 32 bytes")
        if not -(2**31) <= self.version < 2**31:
            raise ValueError("version is int32")
        for v in (self.time, self.bits, self.nonce):
            if not 0 <= v <= 0xFFFFFFFF:
                raise ValueError("time, bits and nonce are uint32")

    def serialize(self) -> bytes:
        return (
            ser_i32(self.version)
            + self.prev_hash
            + self.merkle_root
            + ser_u32(self.time)
            + ser_u32(self.bits)
            + ser_u32(self.nonce)
        )

    @property
    def hash(self) -> bytes:
        return sha256d(self.serialize())

    @property
    def hash_hex(self) -> str:
        return hash_to_hex(self.hash)

    def check_pow(self, pow_limit: int) -> bool:
        return check_proof_of_work(self.hash, self.bits, pow_limit)

    @classmethod
    def read(cls, r: ByteReader) -> BtcBlockHeader:
        return cls(r.read_i32(), r.read(32), r.read(32), r.read_u32(), r.read_u32(), r.read_u32())

    @classmethod
    def parse(cls, data: bytes) -> BtcBlockHeader:
        return parse_exact(data, cls.read)


# --- Partial merkle trees (BIP37) ---------------------------------------------------


def _tree_width(n_tx: int, height: int) -> int:
    return (n_tx + (1 << height) - 1) >> height


def _tree_height(n_tx: int) -> int:
    height = 0
    while _tree_width(n_tx, height) > 1:
        height += 1
    return height


@dataclass(frozen=True, slots=True)
class MerkleMatch:
    """What a valid partial merkle tree proves: its root, and each matched
    txid with its position in the block (0 is the coinbase)."""

    root: bytes
    matches: tuple[tuple[bytes, int], ...]


@dataclass(frozen=True)
class PartialMerkleTree:
    n_transactions: int
    hashes: tuple[bytes, ...]
    flags: bytes
    """Flag bits as serialized, least significant bit of each byte first.
    Kept as bytes: a hostile proof may carry megabytes of them."""

    def __post_init__(self) -> None:
        if not 0 <= self.n_transactions <= 0xFFFFFFFF:
            raise ValueError("transaction count is uint32")
        if any(len(h) != 32 for h in self.hashes):
            raise ValueError("hashes are 32 bytes")

    def serialize(self) -> bytes:
        return (
            ser_u32(self.n_transactions)
            + ser_compact_size(len(self.hashes))
            + b"".join(self.hashes)
            + ser_varbytes(self.flags)
        )

    @classmethod
    def read(cls, r: ByteReader) -> PartialMerkleTree:
        n_tx = r.read_u32()
        hashes = tuple([r.read(32) for _ in range(r.read_count(32))])
        return cls(n_tx, hashes, r.read_varbytes())

    def extract_matches(self) -> MerkleMatch:
        """The root and the matched txids, or ParseError where Bitcoin Core's
        ``ExtractMatches`` returns the null hash."""
        n_tx = self.n_transactions
        hashes, flags = self.hashes, self.flags
        n_bits = len(flags) * 8
        if n_tx == 0:
            raise ParseError("partial merkle tree of no transactions")
        if n_tx > MAX_MERKLE_TRANSACTIONS:
            raise ParseError(f"partial merkle tree claims {n_tx} transactions")
        if len(hashes) > n_tx:
            raise ParseError("more hashes than transactions")
        if n_bits < len(hashes):
            raise ParseError("fewer flag bits than hashes")
        matches: list[tuple[bytes, int]] = []
        used_bits = 0
        used_hashes = 0

        def traverse(height: int, pos: int) -> bytes:
            nonlocal used_bits, used_hashes
            if used_bits >= n_bits:
                raise ParseError("partial merkle tree runs out of flag bits")
            parent_of_match = (flags[used_bits >> 3] >> (used_bits & 7)) & 1
            used_bits += 1
            if height == 0 or not parent_of_match:
                if used_hashes >= len(hashes):
                    raise ParseError("partial merkle tree runs out of hashes")
                h = hashes[used_hashes]
                used_hashes += 1
                if height == 0 and parent_of_match:
                    matches.append((h, pos))
                return h
            left = traverse(height - 1, pos * 2)
            if pos * 2 + 1 < _tree_width(n_tx, height - 1):
                right = traverse(height - 1, pos * 2 + 1)
                if right == left:
                    # Two identical subtrees: the CVE-2012-2459 duplication.
                    raise ParseError("identical left and right branches")
            else:
                right = left
            return sha256d(left + right)

        # Recursion depth is the tree height: at most 15 for MAX_MERKLE_TRANSACTIONS.
        root = traverse(_tree_height(n_tx), 0)
        if (used_bits + 7) // 8 != len(flags):
            raise ParseError("unused flag bytes in partial merkle tree")
        if used_hashes != len(hashes):
            raise ParseError("unused hashes in partial merkle tree")
        return MerkleMatch(root, tuple(matches))

    @classmethod
    def build(cls, txids: Sequence[bytes], match: Sequence[bool]) -> PartialMerkleTree:
        """Bitcoin Core's ``CPartialMerkleTree(vTxid, vMatch)``."""
        n_tx = len(txids)
        if n_tx == 0 or len(match) != n_tx:
            raise ValueError("one match flag per txid, at least one txid")
        hashes: list[bytes] = []
        bits: list[bool] = []

        def node_hash(height: int, pos: int) -> bytes:
            if height == 0:
                return txids[pos]
            left = node_hash(height - 1, pos * 2)
            right = node_hash(height - 1, pos * 2 + 1) if pos * 2 + 1 < _tree_width(n_tx, height - 1) else left
            return sha256d(left + right)

        def build_node(height: int, pos: int) -> None:
            lo = pos << height
            hi = min((pos + 1) << height, n_tx)
            parent_of_match = any(match[lo:hi])
            bits.append(parent_of_match)
            if height == 0 or not parent_of_match:
                hashes.append(node_hash(height, pos))
            else:
                build_node(height - 1, pos * 2)
                if pos * 2 + 1 < _tree_width(n_tx, height - 1):
                    build_node(height - 1, pos * 2 + 1)

        build_node(_tree_height(n_tx), 0)
        flags = bytearray((len(bits) + 7) // 8)
        for i, bit in enumerate(bits):
            if bit:
                flags[i >> 3] |= 1 << (i & 7)
        return cls(n_tx, tuple(hashes), bytes(flags))


@dataclass(frozen=True)
class MerkleBlock:
    """A BIP37 merkle block, what ``gettxoutproof`` returns and the last item
    of a peg-in witness."""

    header: BtcBlockHeader
    tree: PartialMerkleTree

    def serialize(self) -> bytes:
        return self.header.serialize() + self.tree.serialize()

    @classmethod
    def read(cls, r: ByteReader) -> MerkleBlock:
        return cls(BtcBlockHeader.read(r), PartialMerkleTree.read(r))

    @classmethod
    def parse(cls, data: bytes) -> MerkleBlock:
        return parse_exact(data, cls.read)

    def extract(self) -> MerkleMatch:
        """The tree's matches, after checking that its root is the header's
        merkle root (ParseError otherwise)."""
        found = self.tree.extract_matches()
        if found.root != self.header.merkle_root:
            raise ParseError("partial merkle tree root does not match the header")
        return found

    @classmethod
    def build(cls, header: BtcBlockHeader, txids: Sequence[bytes], matched: Sequence[bytes]) -> MerkleBlock:
        """A proof that ``matched`` are in the block of ``header`` whose
        transactions are ``txids`` (in block order)."""
        want = set(matched)
        return cls(header, PartialMerkleTree.build(txids, [t in want for t in txids]))


# --- Segwit addresses (BIP173 bech32, BIP350 bech32m) ------------------------------

_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_BECH32_CONST = 1
_BECH32M_CONST = 0x2BC830A3


def _polymod(values: Sequence[int]) -> int:
    gen = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
    chk = 1
    for v in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i in range(5):
            chk ^= gen[i] if (top >> i) & 1 else 0
    return chk


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _convert_bits(data: Sequence[int], frombits: int, tobits: int, pad: bool) -> list[int]:
    acc = 0
    nbits = 0
    out: list[int] = []
    maxv = (1 << tobits) - 1
    max_acc = (1 << (frombits + tobits - 1)) - 1
    for value in data:
        acc = ((acc << frombits) | value) & max_acc
        nbits += frombits
        while nbits >= tobits:
            nbits -= tobits
            out.append((acc >> nbits) & maxv)
    if pad:
        if nbits:
            out.append((acc << (tobits - nbits)) & maxv)
    elif nbits >= frombits or (acc << (tobits - nbits)) & maxv:
        raise ParseError("invalid padding in segwit program")
    return out


def encode_segwit_address(hrp: str, version: int, program: bytes) -> str:
    """A segwit address: bech32 for version 0, bech32m for 1..16."""
    _check_hrp(hrp)
    if not 0 <= version <= 16 or not 2 <= len(program) <= 40 or (version == 0 and len(program) not in (20, 32)):
        raise ValueError("invalid witness version or program length")
    data = [version, *_convert_bits(program, 8, 5, True)]
    const = _BECH32_CONST if version == 0 else _BECH32M_CONST
    polymod = _polymod(_hrp_expand(hrp) + data + [0] * 6) ^ const
    checksum = [(polymod >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(_CHARSET[d] for d in data + checksum)


def decode_segwit_address(hrp: str, address: str) -> tuple[int, bytes]:
    """(version, program) of a segwit address for ``hrp``; ParseError for
    anything else, an address of another network included."""
    if not isinstance(address, str) or not 8 <= len(address) <= 90:
        raise ParseError("a segwit address is 8 to 90 characters")
    if any(not 33 <= ord(c) <= 126 for c in address):
        raise ParseError("non-printable character in address")
    if address.lower() != address and address.upper() != address:
        raise ParseError("mixed-case address")
    address = address.lower()
    sep = address.rfind("1")
    if sep < 1 or sep + 7 > len(address):
        raise ParseError("no bech32 separator or checksum")
    if address[:sep] != hrp:
        raise ParseError(f"address is for {address[:sep]!r}, not {hrp!r}")
    try:
        data = [_CHARSET.index(c) for c in address[sep + 1 :]]
    except ValueError:
        raise ParseError("character outside the bech32 alphabet") from None
    const = _polymod(_hrp_expand(hrp) + data)
    if const not in (_BECH32_CONST, _BECH32M_CONST):
        raise ParseError("bad bech32 checksum")
    payload = data[:-6]
    if not payload:
        raise ParseError("empty segwit payload")
    version = payload[0]
    if version > 16:
        raise ParseError("witness version above 16")
    if (version == 0) != (const == _BECH32_CONST):
        raise ParseError("wrong checksum variant for the witness version (BIP350)")
    program = bytes(_convert_bits(payload[1:], 5, 8, False))
    if not 2 <= len(program) <= 40 or (version == 0 and len(program) not in (20, 32)):
        raise ParseError("invalid witness program length")
    return version, program


def segwit_script(version: int, program: bytes) -> bytes:
    """The scriptPubKey of a witness program."""
    return bytes((version + 0x50 if version else 0, len(program))) + program


__all__ = [
    "MAINNET",
    "REGTEST",
    "TESTNET",
    "BtcBlockHeader",
    "BtcTransaction",
    "BtcTxIn",
    "BtcTxOut",
    "MainchainNetwork",
    "MerkleBlock",
    "MerkleMatch",
    "PartialMerkleTree",
    "bits_to_target",
    "check_proof_of_work",
    "decode_segwit_address",
    "encode_segwit_address",
    "segwit_script",
]

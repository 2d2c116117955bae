"""BIP37 partial merkle trees and merkle blocks: what ``gettxoutproof`` returns,
what ``verifytxoutproof`` checks, and what an Elements peg-in carries as its
``txoutproof``.

| field (CMerkleBlock)   | serialization                                              |
|------------------------|------------------------------------------------------------|
| header                 | the 80-byte block header                                   |
| total transactions     | u32 LE                                                     |
| hashes                 | compact size count, then 32-byte hashes (internal order)   |
| flag bits              | compact size byte count, bits packed LSB first per byte    |

The tree is walked depth first. Each node visited costs one flag bit: 1 when
it is an ancestor of (or is) a matched transaction, else 0. A node with bit 0,
or a leaf, costs one hash; a node with bit 1 above the leaves is descended.
Extraction refuses: no transactions or more than a block can hold, more
hashes than transactions, fewer bits than hashes, a right child equal to its
left sibling (CVE-2012-2459), bits or hashes left unused.
"""

from __future__ import annotations

from dataclasses import dataclass

from .primitives import BlockHeader, DeserializationError, Reader, ser_compact_size, sha256d

# Core's bound: a block of minimum-size transactions (4000000 / 240).
MAX_TRANSACTIONS = 4_000_000 // 240


def _width(n_tx: int, height: int) -> int:
    return (n_tx + (1 << height) - 1) >> height


def _tree_height(n_tx: int) -> int:
    height = 0
    while _width(n_tx, height) > 1:
        height += 1
    return height


@dataclass(frozen=True)
class PartialMerkleTree:
    n_transactions: int
    hashes: tuple[bytes, ...]
    bits: tuple[bool, ...]

    @classmethod
    def build(cls, txids: list[bytes], matches: list[bool]) -> PartialMerkleTree:
        n = len(txids)
        hashes: list[bytes] = []
        bits: list[bool] = []

        def calc_hash(height: int, pos: int) -> bytes:
            if height == 0:
                return txids[pos]
            left = calc_hash(height - 1, pos * 2)
            right = calc_hash(height - 1, pos * 2 + 1) if pos * 2 + 1 < _width(n, height - 1) else left
            return sha256d(left + right)

        def build(height: int, pos: int) -> None:
            lo, hi = pos << height, min((pos + 1) << height, n)
            parent_of_match = any(matches[lo:hi])
            bits.append(parent_of_match)
            if height == 0 or not parent_of_match:
                hashes.append(calc_hash(height, pos))
            else:
                build(height - 1, pos * 2)
                if pos * 2 + 1 < _width(n, height - 1):
                    build(height - 1, pos * 2 + 1)

        build(_tree_height(n), 0)
        return cls(n, tuple(hashes), tuple(bits))

    def serialize(self) -> bytes:
        packed = bytearray((len(self.bits) + 7) // 8)
        for i, bit in enumerate(self.bits):
            if bit:
                packed[i // 8] |= 1 << (i % 8)
        return (
            self.n_transactions.to_bytes(4, "little")
            + ser_compact_size(len(self.hashes))
            + b"".join(self.hashes)
            + ser_compact_size(len(packed))
            + bytes(packed)
        )

    @classmethod
    def read(cls, r: Reader) -> PartialMerkleTree:
        n = r.u32()
        hashes = tuple(r.read(32) for _ in range(r.compact_size()))
        packed = r.var_bytes()
        bits = tuple(bool(packed[i // 8] >> (i % 8) & 1) for i in range(len(packed) * 8))
        return cls(n, hashes, bits)

    def extract_matches(self) -> tuple[bytes, list[bytes], list[int]] | None:
        """(merkle root, matched txids, their positions), or None if malformed."""
        n = self.n_transactions
        if n == 0 or n > MAX_TRANSACTIONS:
            return None
        if len(self.hashes) > n or len(self.bits) < len(self.hashes):
            return None
        used = {"bits": 0, "hashes": 0}
        matched: list[bytes] = []
        positions: list[int] = []

        class _Bad(Exception):
            pass

        def walk(height: int, pos: int) -> bytes:
            if used["bits"] >= len(self.bits):
                raise _Bad
            parent_of_match = self.bits[used["bits"]]
            used["bits"] += 1
            if height == 0 or not parent_of_match:
                if used["hashes"] >= len(self.hashes):
                    raise _Bad
                h = self.hashes[used["hashes"]]
                used["hashes"] += 1
                if height == 0 and parent_of_match:
                    matched.append(h)
                    positions.append(pos)
                return h
            left = walk(height - 1, pos * 2)
            if pos * 2 + 1 < _width(n, height - 1):
                right = walk(height - 1, pos * 2 + 1)
                if right == left:
                    raise _Bad  # CVE-2012-2459: a duplicated subtree would fake a match
            else:
                right = left
            return sha256d(left + right)

        try:
            root = walk(_tree_height(n), 0)
        except _Bad:
            return None
        if (used["bits"] + 7) // 8 != (len(self.bits) + 7) // 8:
            return None
        if used["hashes"] != len(self.hashes):
            return None
        return root, matched, positions


@dataclass(frozen=True)
class MerkleBlock:
    header: BlockHeader
    tree: PartialMerkleTree

    @classmethod
    def build(cls, header: BlockHeader, txids: list[bytes], wanted: set[bytes]) -> MerkleBlock:
        return cls(header, PartialMerkleTree.build(txids, [t in wanted for t in txids]))

    def serialize(self) -> bytes:
        return self.header.serialize() + self.tree.serialize()

    @classmethod
    def from_bytes(cls, data: bytes) -> MerkleBlock:
        """Parse as Core's stream does: a short read is an error, trailing bytes are ignored."""
        r = Reader(data)
        try:
            return cls(BlockHeader.read(r), PartialMerkleTree.read(r))
        except DeserializationError:
            raise
        except IndexError:
            raise DeserializationError("end of data") from None

"""Blocks: a signed header and its transactions, in Elements' format.

Serialization:

    field          size
    header         BlockHeader (see consensus.header)
    transactions   vector<Transaction>, the first one the coinbase

Commitments (Elements ``consensus/merkle.cpp``, ``validation.cpp``):

    header.merkle_root   Bitcoin merkle root (sha256d pairs) of the txids
    witness root         fast merkle root of every transaction's
                         ``witness_hash`` (Elements' GetWitnessOnlyHash),
                         the coinbase included: its input witness counts
                         as empty, its output witnesses count
    commitment           sha256d(witness root || reserved value), in the
                         LAST coinbase output whose script starts
                         6a 24 aa21a9ed (OP_RETURN, push 36, magic); the
                         reserved value is the coinbase input's only
                         script-witness item, 32 bytes

This differs from Bitcoin's BIP141 on one point: Bitcoin puts wtxids in a
sha256d tree with the coinbase's as zero, Elements puts witness-only hashes
in a fast merkle tree. The real Liquid block in
``tests/vectors/liquid_signed_block_2of3.json`` decides it: its commitment
matches the Elements rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from .hashes import hash_to_hex, merkle_root, sha256d
from .header import BlockHeader
from .serialize import ByteReader, parse_exact, ser_compact_size
from .transaction import WITNESS_SCALE_FACTOR, Transaction, fast_merkle_root

WITNESS_COMMITMENT_HEADER = bytes.fromhex("6a24aa21a9ed")
MINIMUM_WITNESS_COMMITMENT = 38
WITNESS_RESERVED_VALUE = b"\x00" * 32
_MIN_TX_SIZE = 4 + 1 + 1 + 1 + 4


def witness_commitment_script(witness_root: bytes, reserved: bytes = WITNESS_RESERVED_VALUE) -> bytes:
    return WITNESS_COMMITMENT_HEADER + sha256d(witness_root + reserved)


def find_witness_commitment(coinbase: Transaction) -> int | None:
    """Index of the coinbase output carrying the witness commitment: the
    last one that matches, as Bitcoin's GetWitnessCommitmentIndex."""
    found = None
    for i, out in enumerate(coinbase.outputs):
        spk = out.script_pubkey
        if len(spk) >= MINIMUM_WITNESS_COMMITMENT and spk[:6] == WITNESS_COMMITMENT_HEADER:
            found = i
    return found


@dataclass(frozen=True)
class Block:
    header: BlockHeader
    transactions: tuple[Transaction, ...]

    def serialize(self) -> bytes:
        return self._encoded

    @cached_property
    def _encoded(self) -> bytes:
        return (
            self.header.serialize()
            + ser_compact_size(len(self.transactions))
            + b"".join(tx.serialize() for tx in self.transactions)
        )

    @classmethod
    def read(cls, r: ByteReader) -> Block:
        start = r.pos
        header = BlockHeader.read(r)
        n = r.read_count(_MIN_TX_SIZE)
        txs = tuple([Transaction.read(r) for _ in range(n)])
        block = cls(header, txs)
        block.__dict__["_encoded"] = r.slice(start, r.pos)
        return block

    @classmethod
    def parse(cls, data: bytes) -> Block:
        return parse_exact(data, cls.read)

    def with_solution(self, solution: bytes) -> Block:
        """The same block with another proof solution: the hash does not
        change, since the header hash excludes the solution."""
        return Block(self.header.with_solution(solution), self.transactions)

    # -- ids and commitments --------------------------------------------------

    @property
    def hash(self) -> bytes:
        return self.header.hash

    @property
    def hash_hex(self) -> str:
        return hash_to_hex(self.header.hash)

    @property
    def height(self) -> int:
        return self.header.height

    @cached_property
    def txids(self) -> tuple[bytes, ...]:
        return tuple(tx.txid for tx in self.transactions)

    def compute_merkle_root(self) -> bytes:
        return merkle_root(self.txids)

    def compute_witness_root(self) -> bytes:
        return fast_merkle_root([tx.witness_hash for tx in self.transactions])

    def witness_commitment(self) -> bytes | None:
        """The 32-byte commitment the coinbase carries, if any."""
        if not self.transactions:
            return None
        coinbase = self.transactions[0]
        i = find_witness_commitment(coinbase)
        return None if i is None else coinbase.outputs[i].script_pubkey[6:38]

    def witness_commitment_ok(self) -> bool:
        """Elements' witness rule: with a commitment, the coinbase witness is
        exactly one 32-byte reserved value and the commitment matches; with
        none, no transaction may carry witness data."""
        if not self.transactions:
            return False
        commitment = self.witness_commitment()
        if commitment is None:
            return not any(tx.has_witness for tx in self.transactions)
        stack = self.transactions[0].input_witnesses[0].script_witness if self.transactions[0].inputs else ()
        if len(stack) != 1 or len(stack[0]) != 32:
            return False
        return sha256d(self.compute_witness_root() + stack[0]) == commitment

    # -- size -----------------------------------------------------------------

    @property
    def size(self) -> int:
        return len(self._encoded)

    @cached_property
    def base_size(self) -> int:
        """Serialized size with every transaction's witness stripped."""
        return (
            len(self._encoded)
            - sum(tx.size for tx in self.transactions)
            + sum(tx.base_size for tx in self.transactions)
        )

    @property
    def weight(self) -> int:
        """Elements' GetBlockWeight: base size * 3 + total size."""
        return self.base_size * (WITNESS_SCALE_FACTOR - 1) + self.size

    def __repr__(self) -> str:
        return f"Block({self.hash_hex}, height {self.header.height}, {len(self.transactions)} txs)"

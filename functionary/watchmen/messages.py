"""Wire forms of the payout round's messages between watchmen.

Each starts with a kind byte; integers little-endian; txids internal order;
transactions in Bitcoin's serialization.

    kind  message           fields
    0x50  PayoutProposal    leader u32 | sidechain height u32 | tx varbytes (no witness)
    0x51  PayoutSignatures  watchman u32 | txid (32) | count | each sig varbytes
    0x52  PayoutRefused     watchman u32 | txid (32) | code varbytes (ASCII, the
                            error class) | count | each earlier tx varbytes
    0x53  PayoutComplete    tx varbytes (with witness): the signed payout, for
                            every member's ledger (``record_payout``)

A leader that receives PayoutRefused with ``ConflictsWithSignedPayout``
learns the payouts that watchman signed and that may still confirm. One its
bitcoind holds in the mempool is in flight: ``record_payout`` it (so the next
proposal replaces it, BIP125 and all). For the rest, pass them as
``must_conflict`` to ``plan_payout``: the proposal then spends an input of
each, so that watchman can sign it and they can never confirm.
"""

from __future__ import annotations

from dataclasses import dataclass

from consensus.errors import ParseError
from consensus.mainchain import BtcTransaction
from consensus.serialize import ByteReader, parse_exact, ser_compact_size, ser_u32, ser_varbytes

PROPOSAL = 0x50
SIGNATURES = 0x51
REFUSED = 0x52
COMPLETE = 0x53
_MAX_CODE = 64


@dataclass(frozen=True, slots=True)
class PayoutProposal:
    leader: int
    sidechain_height: int
    tx: BtcTransaction

    def serialize(self) -> bytes:
        return (
            bytes((PROPOSAL,))
            + ser_u32(self.leader)
            + ser_u32(self.sidechain_height)
            + ser_varbytes(self.tx.serialize_without_witness())
        )


@dataclass(frozen=True, slots=True)
class PayoutSignatures:
    index: int
    txid: bytes
    signatures: tuple[bytes, ...]

    def serialize(self) -> bytes:
        return (
            bytes((SIGNATURES,))
            + ser_u32(self.index)
            + self.txid
            + ser_compact_size(len(self.signatures))
            + b"".join(ser_varbytes(s) for s in self.signatures)
        )


@dataclass(frozen=True, slots=True)
class PayoutRefused:
    index: int
    txid: bytes
    code: str
    earlier: tuple[bytes, ...] = ()

    def serialize(self) -> bytes:
        return (
            bytes((REFUSED,))
            + ser_u32(self.index)
            + self.txid
            + ser_varbytes(self.code.encode("ascii"))
            + ser_compact_size(len(self.earlier))
            + b"".join(ser_varbytes(t) for t in self.earlier)
        )


@dataclass(frozen=True, slots=True)
class PayoutComplete:
    tx: BtcTransaction

    def serialize(self) -> bytes:
        return bytes((COMPLETE,)) + ser_varbytes(self.tx.serialize())


PayoutMessage = PayoutProposal | PayoutSignatures | PayoutRefused | PayoutComplete


def parse_message(data: bytes) -> PayoutMessage:
    """Any of the four; ParseError for anything else (trailing bytes included)."""

    def read(r: ByteReader) -> PayoutMessage:
        kind = r.read_u8()
        if kind == PROPOSAL:
            leader, height = r.read_u32(), r.read_u32()
            tx = BtcTransaction.parse(r.read_varbytes())
            if tx.has_witness:
                raise ParseError("a proposal carries no witness")
            return PayoutProposal(leader, height, tx)
        if kind == SIGNATURES:
            index, txid = r.read_u32(), r.read(32)
            sigs = tuple(r.read_varbytes(limit=73) for _ in range(r.read_count(9)))
            return PayoutSignatures(index, txid, sigs)
        if kind == REFUSED:
            index, txid = r.read_u32(), r.read(32)
            raw_code = r.read_varbytes(limit=_MAX_CODE)
            if not raw_code.isascii():
                raise ParseError("refusal code is ASCII")
            earlier = tuple(r.read_varbytes() for _ in range(r.read_count(1)))
            return PayoutRefused(index, txid, raw_code.decode("ascii"), earlier)
        if kind == COMPLETE:
            return PayoutComplete(BtcTransaction.parse(r.read_varbytes()))
        raise ParseError(f"unknown payout message kind {kind:#x}")

    return parse_exact(data, read)


__all__ = [
    "PayoutComplete",
    "PayoutMessage",
    "PayoutProposal",
    "PayoutRefused",
    "PayoutSignatures",
    "parse_message",
]

"""Signing-protocol messages between functionaries.

Every message is one type byte followed by its fields. The transport
authenticates the sender (functionary/), so messages carry no sender field;
block signatures are ECDSA over the block hash and stand on their own.

    type  message            fields
    0x01  Proposal           height u32, round u32, block
    0x02  Precommit          height u32, round u32, block_hash 32
    0x03  BlockSignature     height u32, round u32, block_hash 32, sig varbytes
    0x04  LockAnnouncement   height u32, round u32, sig varbytes, block
    0x05  Status             height u32, round u32
    0x06  BlockRequest       height u32, block_hash 32
    0x07  BlockResponse      block (a candidate, unsigned or partly signed)
    0x08  CommittedBlock     block (with a full solution)

``round`` in BlockSignature and LockAnnouncement is the round whose m
precommits led the sender to sign (its polka round).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .block import Block
from .errors import ParseError
from .serialize import ByteReader, parse_exact, ser_u32, ser_varbytes

MAX_SIGNATURE_SIZE = 73


@dataclass(frozen=True)
class Proposal:
    TYPE: ClassVar[int] = 0x01
    height: int
    round: int
    block: Block

    def body(self) -> bytes:
        return ser_u32(self.height) + ser_u32(self.round) + self.block.serialize()

    @classmethod
    def read_body(cls, r: ByteReader) -> "Proposal":
        return cls(r.read_u32(), r.read_u32(), Block.read(r))


@dataclass(frozen=True)
class Precommit:
    TYPE: ClassVar[int] = 0x02
    height: int
    round: int
    block_hash: bytes

    def body(self) -> bytes:
        return ser_u32(self.height) + ser_u32(self.round) + self.block_hash

    @classmethod
    def read_body(cls, r: ByteReader) -> "Precommit":
        return cls(r.read_u32(), r.read_u32(), r.read(32))


@dataclass(frozen=True)
class BlockSignature:
    TYPE: ClassVar[int] = 0x03
    height: int
    round: int
    block_hash: bytes
    signature: bytes

    def body(self) -> bytes:
        return ser_u32(self.height) + ser_u32(self.round) + self.block_hash + ser_varbytes(self.signature)

    @classmethod
    def read_body(cls, r: ByteReader) -> "BlockSignature":
        return cls(r.read_u32(), r.read_u32(), r.read(32), r.read_varbytes(MAX_SIGNATURE_SIZE))


@dataclass(frozen=True)
class LockAnnouncement:
    TYPE: ClassVar[int] = 0x04
    height: int
    round: int
    signature: bytes
    block: Block

    def body(self) -> bytes:
        return ser_u32(self.height) + ser_u32(self.round) + ser_varbytes(self.signature) + self.block.serialize()

    @classmethod
    def read_body(cls, r: ByteReader) -> "LockAnnouncement":
        return cls(r.read_u32(), r.read_u32(), r.read_varbytes(MAX_SIGNATURE_SIZE), Block.read(r))


@dataclass(frozen=True)
class Status:
    TYPE: ClassVar[int] = 0x05
    height: int
    round: int

    def body(self) -> bytes:
        return ser_u32(self.height) + ser_u32(self.round)

    @classmethod
    def read_body(cls, r: ByteReader) -> "Status":
        return cls(r.read_u32(), r.read_u32())


@dataclass(frozen=True)
class BlockRequest:
    TYPE: ClassVar[int] = 0x06
    height: int
    block_hash: bytes

    def body(self) -> bytes:
        return ser_u32(self.height) + self.block_hash

    @classmethod
    def read_body(cls, r: ByteReader) -> "BlockRequest":
        return cls(r.read_u32(), r.read(32))


@dataclass(frozen=True)
class BlockResponse:
    TYPE: ClassVar[int] = 0x07
    block: Block

    def body(self) -> bytes:
        return self.block.serialize()

    @classmethod
    def read_body(cls, r: ByteReader) -> "BlockResponse":
        return cls(Block.read(r))


@dataclass(frozen=True)
class CommittedBlock:
    TYPE: ClassVar[int] = 0x08
    block: Block

    def body(self) -> bytes:
        return self.block.serialize()

    @classmethod
    def read_body(cls, r: ByteReader) -> "CommittedBlock":
        return cls(Block.read(r))


Message = (
    Proposal | Precommit | BlockSignature | LockAnnouncement | Status | BlockRequest | BlockResponse | CommittedBlock
)

_TYPES: dict[int, type[Message]] = {
    cls.TYPE: cls
    for cls in (
        Proposal,
        Precommit,
        BlockSignature,
        LockAnnouncement,
        Status,
        BlockRequest,
        BlockResponse,
        CommittedBlock,
    )
}


def serialize_message(msg: Message) -> bytes:
    return bytes((msg.TYPE,)) + msg.body()


def parse_message(data: bytes) -> Message:
    """Decode one message; ParseError for anything malformed or unknown."""

    def read(r: ByteReader) -> Message:
        kind = r.read_u8()
        cls = _TYPES.get(kind)
        if cls is None:
            raise ParseError(f"unknown message type 0x{kind:02x}")
        return cls.read_body(r)

    return parse_exact(data, read)

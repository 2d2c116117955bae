"""Wire messages of the I/O layer: block catch-up and transaction relay.

They share the transport with the consensus messages (types 0x01-0x0f, see
consensus/messages.py) and use types from 0x10:

    type  message     fields
    0x10  GetBlocks   from_height u32, max_count u16
    0x11  Blocks      count, then each block as varbytes (raw, signed)
    0x12  TxRelay     raw transaction varbytes
"""

from __future__ import annotations

from dataclasses import dataclass

from consensus.errors import ParseError
from consensus.messages import Message, parse_message
from consensus.serialize import ByteReader, parse_exact, ser_compact_size, ser_u32, ser_varbytes

GET_BLOCKS = 0x10
BLOCKS = 0x11
TX_RELAY = 0x12
MAX_BLOCKS_PER_RESPONSE = 500


@dataclass(frozen=True)
class GetBlocks:
    from_height: int
    max_count: int

    def serialize(self) -> bytes:
        return bytes((GET_BLOCKS,)) + ser_u32(self.from_height) + self.max_count.to_bytes(2, "little")


@dataclass(frozen=True)
class Blocks:
    raw_blocks: tuple[bytes, ...]

    def serialize(self) -> bytes:
        return (
            bytes((BLOCKS,))
            + ser_compact_size(len(self.raw_blocks))
            + b"".join(ser_varbytes(b) for b in self.raw_blocks)
        )


@dataclass(frozen=True)
class TxRelay:
    raw_tx: bytes

    def serialize(self) -> bytes:
        return bytes((TX_RELAY,)) + ser_varbytes(self.raw_tx)


WireMessage = Message | GetBlocks | Blocks | TxRelay


def parse_wire(data: bytes) -> WireMessage:
    """A consensus or sync message; ParseError for anything else."""
    if not data:
        raise ParseError("empty message")
    kind = data[0]
    if kind < GET_BLOCKS:
        return parse_message(data)

    def read(r: ByteReader) -> WireMessage:
        r.read_u8()
        if kind == GET_BLOCKS:
            return GetBlocks(r.read_u32(), r.read_u16())
        if kind == BLOCKS:
            n = r.read_count(1)
            if n > MAX_BLOCKS_PER_RESPONSE:
                raise ParseError(f"{n} blocks in one response")
            return Blocks(tuple(r.read_varbytes() for _ in range(n)))
        if kind == TX_RELAY:
            return TxRelay(r.read_varbytes())
        raise ParseError(f"unknown message type 0x{kind:02x}")

    return parse_exact(data, read)

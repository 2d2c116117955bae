"""Signing-protocol messages and block headers: round trips, and hostile bytes
that raise nothing but ParseError."""

from __future__ import annotations

import contextlib
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.chainstate import ChainState
from consensus.errors import ParseError
from consensus.header import DYNAFED_VERSION_BIT, BlockHeader, BlockProof
from consensus.messages import (
    BlockRequest,
    BlockResponse,
    BlockSignature,
    CommittedBlock,
    LockAnnouncement,
    Precommit,
    Proposal,
    Status,
    parse_message,
    serialize_message,
)
from functionary.sync import Blocks, GetBlocks, TxRelay, parse_wire
from tests.simulation import make_params

u32 = st.integers(0, 2**32 - 1)
h32 = st.binary(min_size=32, max_size=32)
sig = st.binary(min_size=8, max_size=72)

headers = st.builds(
    BlockHeader,
    version=st.integers(0, 2**31 - 1),
    prev_hash=h32,
    merkle_root=h32,
    time=u32,
    height=u32,
    proof=st.builds(BlockProof, st.binary(max_size=600), st.binary(max_size=400)),
)


@given(headers)
def test_header_round_trip(h):
    raw = h.serialize()
    assert BlockHeader.parse(raw) == h
    assert BlockHeader.parse(raw).hash == h.hash
    assert h.with_solution(b"\x00\x01").hash == h.hash


def test_dynafed_headers_are_refused_as_parse_errors():
    h = BlockHeader(1, b"\x00" * 32, b"\x00" * 32, 0, 1, BlockProof(b"\x51", b""))
    raw = bytearray(h.serialize())
    raw[3] |= DYNAFED_VERSION_BIT >> 24
    with pytest.raises(ParseError):
        BlockHeader.parse(bytes(raw))


def _block():
    chain = ChainState(make_params(4, 3))
    return chain.assemble_block([], 1000)


@settings(max_examples=50)
@given(height=u32, rnd=u32, bh=h32, s=sig)
def test_every_message_round_trips(height, rnd, bh, s):
    block = _BLOCK
    for msg in (
        Proposal(height, rnd, block),
        Precommit(height, rnd, bh),
        BlockSignature(height, rnd, bh, s),
        LockAnnouncement(height, rnd, s, block),
        Status(height, rnd),
        BlockRequest(height, bh),
        BlockResponse(block),
        CommittedBlock(block),
    ):
        raw = serialize_message(msg)
        back = parse_message(raw)
        assert back == msg or (type(back) is type(msg) and serialize_message(back) == raw)
        assert parse_wire(raw) == back
        for cut in (1, len(raw) // 2, len(raw) - 1):
            _refused(raw[:cut])
        _refused(raw + b"\x00")


_BLOCK = _block()


def test_sync_messages_round_trip():
    raw_block = _BLOCK.serialize()
    for msg in (GetBlocks(7, 500), Blocks((raw_block, raw_block)), TxRelay(b"\x01\x02")):
        assert parse_wire(msg.serialize()) == msg
    _refused(bytes((0x11,)) + b"\xfd\xf5\x01")  # 501 blocks claimed with no bytes behind them


def _refused(data: bytes) -> None:
    try:
        parse_wire(data)
    except ParseError:
        return
    raise AssertionError(f"accepted {data[:16].hex()}…")


def test_random_bytes_raise_only_parse_error():
    rng = random.Random(2026)
    valid = [serialize_message(m) for m in (Status(1, 2), Precommit(3, 4, b"\x11" * 32), Proposal(1, 0, _BLOCK))]
    for i in range(10_000):
        if i % 2:
            data = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 64)))
        else:
            base = bytearray(rng.choice(valid))
            for _ in range(rng.randrange(1, 4)):
                base[rng.randrange(len(base))] = rng.randrange(256)
            data = bytes(base)
        with contextlib.suppress(ParseError):
            parse_wire(data)

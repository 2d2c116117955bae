"""Blocks: the real Liquid block, round trips, commitments, fuzzing."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import wallycore as wally
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus import hashes
from consensus.block import (
    WITNESS_COMMITMENT_HEADER,
    Block,
    find_witness_commitment,
    witness_commitment_script,
)
from consensus.errors import ParseError
from consensus.hashes import sha256d
from consensus.header import BlockHeader, BlockProof
from consensus.transaction import (
    NULL_OUTPOINT,
    Transaction,
    TxIn,
    TxInWitness,
    TxOut,
    TxOutWitness,
)

VECTOR = json.loads((Path(__file__).parent / "vectors" / "liquid_signed_block_2of3.json").read_text())
TX_VECTORS = json.loads((Path(__file__).parent / "vectors" / "tx_elements.json").read_text())["vectors"]
WALLY_FLAGS = wally.WALLY_TX_FLAG_USE_WITNESS | wally.WALLY_TX_FLAG_USE_ELEMENTS
ASSET = b"\x6d" * 32


def test_liquid_block_parses_completely_and_reserializes():
    raw = bytes.fromhex(VECTOR["hex"])
    block = Block.parse(raw)
    assert block.serialize() == raw
    assert block.hash_hex == VECTOR["block_hash"]
    assert block.header.height == VECTOR["height"]
    assert len(block.transactions) == 1
    coinbase = block.transactions[0]
    assert coinbase.is_coinbase
    # Rebuilt from fields (no cached bytes): still byte-identical.
    rebuilt = Block(
        BlockHeader.parse(block.header.serialize()),
        tuple(Transaction.parse(tx.serialize()) for tx in block.transactions),
    )
    assert rebuilt.serialize() == raw
    # The coinbase as libwally reads it.
    wtx = wally.tx_from_bytes(coinbase.serialize(), WALLY_FLAGS)
    assert bytes(wally.tx_get_txid(wtx)) == coinbase.txid
    assert wally.tx_get_weight(wtx) == coinbase.weight


def test_liquid_block_commitments():
    block = Block.parse(bytes.fromhex(VECTOR["hex"]))
    assert block.compute_merkle_root() == block.header.merkle_root
    assert block.witness_commitment_ok()
    # The commitment is Elements' rule (fast merkle root of witness-only
    # hashes, coinbase included), not Bitcoin's (sha256d tree of wtxids
    # with the coinbase as zero): the two give different values here.
    reserved = block.transactions[0].input_witnesses[0].script_witness[0]
    commitment = block.witness_commitment()
    assert commitment == sha256d(block.compute_witness_root() + reserved)
    bitcoin_rule = sha256d(hashes.merkle_root([b"\x00" * 32]) + reserved)
    assert commitment != bitcoin_rule


def test_liquid_block_size_and_weight():
    block = Block.parse(bytes.fromhex(VECTOR["hex"]))
    assert block.size == len(bytes.fromhex(VECTOR["hex"]))
    coinbase = block.transactions[0]
    witness_bytes = coinbase.size - coinbase.base_size
    assert block.base_size == block.size - witness_bytes
    assert block.weight == 3 * block.base_size + block.size


def test_a_truncated_liquid_block_is_refused():
    raw = bytes.fromhex(VECTOR["hex"])
    for cut in (1, 2, 40, len(raw) - 80):
        with pytest.raises(ParseError):
            Block.parse(raw[:-cut])
    with pytest.raises(ParseError):
        Block.parse(raw + b"\x00")


def _block(txs: tuple[Transaction, ...], with_commitment: bool = True) -> Block:
    if with_commitment:
        cb = txs[0]
        outs = (*cb.outputs, TxOut.explicit(ASSET, 0, witness_commitment_script(b"\x00" * 32)))
        draft = Transaction(cb.version, cb.inputs, outs, cb.locktime, (TxInWitness(script_witness=(b"\x00" * 32,)),))
        root = Block(_header(b"\x00" * 32), (draft, *txs[1:])).compute_witness_root()
        outs = (*cb.outputs, TxOut.explicit(ASSET, 0, witness_commitment_script(root)))
        txs = (Transaction(cb.version, cb.inputs, outs, cb.locktime, draft.input_witnesses), *txs[1:])
    return Block(_header(hashes.merkle_root([tx.txid for tx in txs])), txs)


def _header(root: bytes) -> BlockHeader:
    return BlockHeader(0x20000000, b"\x11" * 32, root, 1_700_000_000, 5, BlockProof(b"\x51", b"\x00\x01\x02"))


def _coinbase() -> Transaction:
    return Transaction(2, (TxIn(NULL_OUTPOINT, b"\x55\x00"),), (TxOut.explicit(ASSET, 0, b"\x6a"),))


def _sample_txs() -> tuple[Transaction, ...]:
    return tuple(Transaction.parse(bytes.fromhex(v["hex"])) for v in TX_VECTORS if v["name"] != "coinbase")


def test_assembled_block_round_trip_and_commitment():
    block = _block((_coinbase(), *_sample_txs()))
    raw = block.serialize()
    back = Block.parse(raw)
    assert back == block
    assert back.serialize() == raw
    assert back.witness_commitment_ok()
    assert back.compute_merkle_root() == back.header.merkle_root
    assert back.weight == 3 * back.base_size + back.size
    assert back.base_size == back.size - sum(tx.size - tx.base_size for tx in back.transactions)


def test_witness_commitment_detects_a_changed_witness():
    block = _block((_coinbase(), *_sample_txs()))
    txs = list(block.transactions)
    victim = txs[1]
    wits = list(victim.input_witnesses)
    wits[0] = TxInWitness(script_witness=(b"\x30" * 10, *wits[0].script_witness[1:]))
    txs[1] = victim.with_witnesses(tuple(wits))
    assert txs[1].txid == victim.txid
    tampered = Block(block.header, tuple(txs))
    assert tampered.compute_merkle_root() == block.header.merkle_root
    assert not tampered.witness_commitment_ok()
    # An output witness (a range proof) is committed too.
    ow = list(victim.output_witnesses)
    ow[0] = TxOutWitness(b"", b"\x01")
    txs[1] = victim.with_witnesses(None, tuple(ow))
    assert not Block(block.header, tuple(txs)).witness_commitment_ok()


def test_witness_commitment_rules():
    block = _block((_coinbase(), *_sample_txs()))
    cb = block.transactions[0]
    # The reserved value must be exactly one 32-byte item.
    for stack in ((), (b"\x00" * 31,), (b"\x00" * 32, b"")):
        odd = cb.with_witnesses((TxInWitness(script_witness=stack),))
        assert not Block(block.header, (odd, *block.transactions[1:])).witness_commitment_ok()
    # No commitment: fine only if nothing has a witness.
    bare = _block((_coinbase(), _sample_txs()[-1]), with_commitment=False)
    assert not bare.transactions[1].has_witness
    assert bare.witness_commitment_ok()
    bare = _block((_coinbase(), _sample_txs()[0]), with_commitment=False)
    assert not bare.witness_commitment_ok()


def test_last_matching_output_is_the_commitment():
    cb = Transaction(
        2,
        (TxIn(NULL_OUTPOINT, b"\x55\x00"),),
        (
            TxOut.explicit(ASSET, 0, WITNESS_COMMITMENT_HEADER + b"\x01" * 32),
            TxOut.explicit(ASSET, 0, b"\x6a"),
            TxOut.explicit(ASSET, 0, WITNESS_COMMITMENT_HEADER + b"\x02" * 32 + b"extra"),
            TxOut.explicit(ASSET, 0, WITNESS_COMMITMENT_HEADER + b"\x03" * 31),  # too short
        ),
    )
    assert find_witness_commitment(cb) == 2


def test_with_solution_keeps_the_hash():
    block = _block((_coinbase(),))
    signed = block.with_solution(b"\x00" + b"\x47" + b"\x30" * 71)
    assert signed.hash == block.hash
    assert signed.serialize() != block.serialize()
    assert Block.parse(signed.serialize()) == signed


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(range(len(TX_VECTORS))), max_size=6), st.booleans())
def test_block_round_trip(picks, commit):
    txs = tuple(Transaction.parse(bytes.fromhex(TX_VECTORS[i]["hex"])) for i in picks)
    block = _block((_coinbase(), *txs), with_commitment=commit)
    raw = block.serialize()
    assert Block.parse(raw).serialize() == raw
    assert Block.parse(raw) == block
    with pytest.raises(ParseError):
        Block.parse(raw[:-1])


def test_random_and_mutated_blocks_raise_only_parse_error():
    seed = 77
    rng = random.Random(seed)
    base = [bytes.fromhex(VECTOR["hex"]), _block((_coinbase(), *_sample_txs()[:3])).serialize()]
    accepted = 0
    for i in range(20_000):  # 10,000 random byte strings, 10,000 mutated blocks
        if i % 2:
            data = rng.randbytes(rng.choice([0, 3, 80, 150, 600]))
        else:
            b = bytearray(rng.choice(base))
            for _ in range(rng.randint(1, 3)):
                k = rng.randrange(3)
                if k == 0:
                    b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
                elif k == 1:
                    del b[rng.randrange(len(b))]
                else:
                    b.insert(rng.randrange(len(b)), rng.randrange(256))
            data = bytes(b)
        try:
            block = Block.parse(data)
        except ParseError:
            continue
        except Exception as e:  # pragma: no cover - the failure report
            pytest.fail(f"seed {seed}, case {i}: {type(e).__name__}: {e}")
        accepted += 1
        assert block.serialize() == data
    assert accepted > 50

"""The functionary runtime in one process: a 1-of-1 federation that makes its
own blocks, its mempool and its API. (Many members in many processes:
tests/test_processes.py.)"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from coincurve import PrivateKey

from consensus.transaction import OutPoint
from functionary.api import create_app
from functionary.cli import init_federation
from functionary.config import Federation, MemberConfig, MemberKeys
from functionary.mempool import MempoolConflict, TxRejected
from functionary.node import FunctionaryNode
from functionary.txbuild import Coin, build_p2wpkh_spend, p2wpkh_for

FREE = 1_000_000_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _wait(pred: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


class Solo:
    """A 1-of-1 federation in this process."""

    def __init__(self, tmp: Path) -> None:
        self.dir = tmp
        init_federation(
            tmp,
            1,
            1,
            p2p_port=_free_port(),
            api_port=_free_port(),
            block_interval=0.2,
            round_timeout=1.0,
            free_coins=FREE,
        )
        faucet = json.loads((tmp / "faucet.json").read_text())
        self.faucet = PrivateKey(bytes.fromhex(faucet["key"]))
        self.node: FunctionaryNode

    async def start(self) -> FunctionaryNode:
        cfg = MemberConfig.load(self.dir / "member0" / "member.json")
        fed = Federation.load(cfg.federation_file)
        self.node = FunctionaryNode(cfg, fed, MemberKeys.load(cfg.keys_file), logging.getLogger("test.solo"))
        await self.node.start()
        return self.node

    def genesis_coin(self) -> Coin:
        genesis = self.node.chain.genesis
        return Coin(OutPoint(genesis.transactions[0].txid, 0), FREE, self.faucet)

    @property
    def asset(self) -> bytes:
        return self.node.chain.params.policy_asset


def run(tmp_path: Path, body: Callable[[Solo], Awaitable[None]]) -> None:
    async def main() -> None:
        solo = Solo(tmp_path)
        await solo.start()
        try:
            await body(solo)
        finally:
            await solo.node.stop()

    asyncio.run(main())


def test_solo_federation_makes_blocks_and_mines_a_submitted_transaction(tmp_path):
    async def body(solo: Solo) -> None:
        node = solo.node
        await _wait(lambda: node.chain.tip_height >= 2, 10, "two blocks")
        bob = PrivateKey(b"\x0b" * 32)
        tx = build_p2wpkh_spend([solo.genesis_coin()], [(p2wpkh_for(bob), 300_000_000)], 1_000, solo.asset)
        entry = await node.submit_transaction(tx)
        assert entry.fee == 1_000 and tx.txid in node.mempool
        await _wait(lambda: tx.txid not in node.mempool, 10, "the transaction to be mined")
        height, _ = await asyncio.to_thread(node.storage.tx_location, tx.txid) or (None, None)
        assert height is not None and height <= node.chain.tip_height
        assert node.chain.utxo(OutPoint(tx.txid, 0)) is not None
        assert node.chain.utxo(OutPoint(solo.genesis_coin().outpoint.txid, 0)) is None
        stored = await asyncio.to_thread(node.storage.get_utxo, tx.txid, 0)
        assert stored is not None and stored.height == height

    run(tmp_path, body)


def test_mempool_refuses_conflicts_and_invalid_transactions(tmp_path):
    async def body(solo: Solo) -> None:
        node = solo.node
        coin = solo.genesis_coin()
        # While the coin is unspent: a wrong key, and an overstated input value.
        thief = Coin(coin.outpoint, FREE, PrivateKey(b"\x0c" * 32))
        with pytest.raises(TxRejected) as e:
            await node.submit_transaction(build_p2wpkh_spend([thief], [(b"\x00\x14" + b"\x01" * 20, 5)], 5, solo.asset))
        assert e.value.reason in ("ScriptVerifyError", "BadTxSignature")
        overpay = Coin(coin.outpoint, FREE + 1, solo.faucet)
        with pytest.raises(TxRejected):
            await node.submit_transaction(
                build_p2wpkh_spend([overpay], [(p2wpkh_for(solo.faucet), FREE)], 1, solo.asset)
            )
        # Two spends of one coin, added in one step of the event loop so no
        # block can confirm the first in between.
        a = build_p2wpkh_spend([coin], [(p2wpkh_for(PrivateKey(b"\x0a" * 32)), 1_000)], 500, solo.asset)
        b = build_p2wpkh_spend([coin], [(p2wpkh_for(PrivateKey(b"\x0b" * 32)), 2_000)], 500, solo.asset)
        node.mempool.add(a, time.time())
        with pytest.raises(MempoolConflict):
            node.mempool.add(b, time.time())
        await _wait(lambda: a.txid not in node.mempool, 10, "the first spend to be mined")
        with pytest.raises(TxRejected) as e:
            await node.submit_transaction(b)
        assert e.value.reason == "DoubleSpend"

    run(tmp_path, body)


def test_proposer_fills_blocks_by_fee_rate(tmp_path):
    async def body(solo: Solo) -> None:
        node = solo.node
        coin = solo.genesis_coin()
        # Split the free coin into outputs, then spend them with different fees.
        keys = [PrivateKey(bytes([0x20 + i]) * 32) for i in range(4)]
        split = build_p2wpkh_spend([coin], [(p2wpkh_for(k), 10_000_000) for k in keys], 1_000, solo.asset)
        await node.submit_transaction(split)
        await _wait(lambda: split.txid not in node.mempool, 10, "the split")
        spends = [
            build_p2wpkh_spend(
                [Coin(OutPoint(split.txid, i), 10_000_000, k)], [(p2wpkh_for(k), 1_000_000)], fee, solo.asset
            )
            for i, (k, fee) in enumerate(zip(keys, (100, 5_000, 300, 2_000)))
        ]
        # Submit while no block can be made, so they all wait together.
        for tx in spends:
            node.mempool.add(tx, time.time())
        chosen = node.mempool.select()
        assert [t.txid for t in chosen] == [spends[i].txid for i in (1, 3, 2, 0)]
        one = node.mempool.select(max_weight=max(t.weight for t in spends) + 8_000)
        assert [t.txid for t in one] == [spends[1].txid]

    run(tmp_path, body)


def test_restart_reloads_the_chain(tmp_path):
    async def main() -> None:
        solo = Solo(tmp_path)
        node = await solo.start()
        await _wait(lambda: node.chain.tip_height >= 3, 10, "three blocks")
        await node.stop()
        tip = (node.chain.tip_height, node.chain.tip_hash)
        node2 = await solo.start()
        try:
            assert node2.chain.tip_height >= tip[0]
            assert node2.chain.header_at(tip[0]).hash == tip[1]
            await _wait(lambda: node2.chain.tip_height > tip[0], 10, "a block after restart")
        finally:
            await node2.stop()

    asyncio.run(main())


def test_api_answers_esplora_shapes_and_refuses_bad_input_with_4xx(tmp_path):
    async def body(solo: Solo) -> None:
        node = solo.node
        await _wait(lambda: node.chain.tip_height >= 2, 10, "two blocks")
        app = create_app(node)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://member") as c:
            height = int((await c.get("/blocks/tip/height")).text)
            assert height >= 2
            h1 = (await c.get("/block-height/1")).text
            assert len(h1) == 64
            header = (await c.get(f"/block/{h1}/header")).text
            assert node.chain.header_at(1).serialize().hex() == header
            from consensus.header import BlockHeader

            assert BlockHeader.parse(bytes.fromhex(header)).hash_hex == h1
            status = (await c.get("/status")).json()
            assert status["member"] == 0 and status["tip"]["height"] >= 2
            bad = {
                "/block-height/abc": 400,
                "/block-height/99999999": 404,
                "/block/zz/header": 400,
                f"/block/{'00' * 32}/header": 404,
                "/nope": 404,
            }
            for path, code in bad.items():
                r = await c.get(path)
                assert r.status_code == code, (path, r.status_code, r.text)
                assert set(r.json()) == {"code", "message"}
            for body, code in [
                (b"zz", 400),
                (b"00", 400),
                (b"ff" * 10, 400),
                (b"\xff\xfe", 400),
                (b"0" * 3_000_000, 413),
            ]:
                r = await c.post("/tx", content=body)
                assert r.status_code == code, (body[:8], r.status_code, r.text)
                assert "code" in r.json()
            tx = build_p2wpkh_spend([solo.genesis_coin()], [(p2wpkh_for(solo.faucet), 1_000)], 100, solo.asset)
            r = await c.post("/tx", content=tx.serialize().hex())
            assert r.status_code == 200 and r.text == tx.txid[::-1].hex()
            r = await c.post("/tx", content=tx.serialize().hex())
            assert r.status_code == 409
            assert (await c.get(f"/tx/{tx.txid[::-1].hex()}/hex")).text == tx.serialize().hex()
            assert (await c.get(f"/tx/{'11' * 32}/hex")).status_code == 404
            from consensus.block import Block

            raw = (await c.get(f"/block/{h1}/raw")).content
            block = Block.parse(raw)
            assert block.hash_hex == h1
            assert (await c.get(f"/block/{h1}/txids")).json() == [t[::-1].hex() for t in block.txids]
            await _wait(lambda: tx.txid not in node.mempool, 10, "the transaction to be mined")
            assert (await c.get(f"/tx/{tx.txid[::-1].hex()}/hex")).text == tx.serialize().hex()

    run(tmp_path, body)


def test_consensus_events_are_taken_before_queued_submissions(tmp_path):
    """A backlog of transactions to verify must not hold up a round: the
    consumer takes ticks, messages and templates first, submissions in the
    order they came, and the stop marker after the submissions queued before
    it."""
    from functionary.node import _STOP

    async def main() -> None:
        solo = Solo(tmp_path)
        cfg = MemberConfig.load(solo.dir / "member0" / "member.json")
        fed = Federation.load(cfg.federation_file)
        node = FunctionaryNode(cfg, fed, MemberKeys.load(cfg.keys_file), logging.getLogger("test.order"))
        node._post_tx("tx1")
        node._post("tick1")
        node._post_tx("tx2")
        node._post_tx(_STOP)
        node._post("message")
        taken = [await node._next_item() for _ in range(5)]
        assert taken == ["tick1", "message", "tx1", "tx2", _STOP]
        waiter = asyncio.ensure_future(node._next_item())
        await asyncio.sleep(0.01)
        assert not waiter.done()
        node._post_tx("tx3")
        assert await asyncio.wait_for(waiter, 1) == "tx3"

    asyncio.run(main())


def test_a_block_message_below_the_tip_is_dropped_unparsed():
    from consensus.block import Block
    from consensus.header import BlockHeader, BlockProof
    from consensus.messages import BlockResponse, CommittedBlock, Proposal, serialize_message
    from functionary.node import _stale_block_message

    header = BlockHeader(0x20000000, b"\x01" * 32, b"\x02" * 32, 1_700_000_000, 7, BlockProof(b"\x51", b""))
    block = Block(header, ())
    for msg in (CommittedBlock(block), BlockResponse(block)):
        data = serialize_message(msg)
        assert _stale_block_message(data, 7) and _stale_block_message(data, 100)
        assert not _stale_block_message(data, 6)
    # A proposal at an old height is answered (the sender is helped), so it is kept.
    assert not _stale_block_message(serialize_message(Proposal(7, 0, block)), 100)
    assert not _stale_block_message(bytes((CommittedBlock.TYPE,)) + b"\x00" * 10, 100)  # too short: parsed, refused

"""``functionary audit``: an honest chain passes; each tampering is caught by name.

A 2-of-3 federation with fixed keys and a peg makes a short chain in process
(free-coin spends, two independent transactions in one block, a peg-in claim
of a hand-built mainchain deposit). The audit reads it through a list-backed
fetcher, so the tests can serve it altered without a server; one test serves a
real member's API over HTTP and runs the command itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest
import uvicorn
from coincurve import PrivateKey

from consensus.block import Block
from consensus.chainstate import ChainState
from consensus.hashes import hash160
from consensus.header import BlockHeader, BlockProof, sign_block_hash
from consensus.mainchain import encode_segwit_address
from consensus.peg import PegInRules, PegOutRules, PegParams, build_pegin_witness
from consensus.script import push_data
from consensus.standard import p2wpkh_script, p2wpkh_script_code, sign_segwit_v0
from consensus.transaction import ConfidentialValue, OutPoint, Transaction, TxIn, TxInWitness, TxOut
from functionary.api import create_app
from functionary.audit import AuditReport, audit_chain
from functionary.bitcoind import btc
from functionary.cli import main
from functionary.config import Federation, MemberInfo, PegSettings
from regtest.testing import mainchain
from tests.test_peg_rules import deposit
from tests.test_runtime import Solo, _free_port, _wait

SIGNERS = [PrivateKey(bytes([0x01 + i]) * 32) for i in range(3)]
WATCHMEN = [PrivateKey(bytes([0x61 + i]) * 32) for i in range(3)]
ALICE, BOB, CAROL, CLAIMER = (PrivateKey(bytes([b]) * 32) for b in (0x0A, 0x0B, 0x0C, 0x0D))
COIN = 100_000_000
FREE = 50 * COIN
T0 = 1_700_000_000
PEG = PegParams(watchman_keys=tuple(k.public_key.format() for k in WATCHMEN), peg_threshold=2, pegin_min_depth=2)


def pub(k: PrivateKey) -> bytes:
    return k.public_key.format()


def spk(k: PrivateKey) -> bytes:
    return p2wpkh_script(pub(k))


CLAIM_SCRIPT = spk(CLAIMER)


def federation(genesis_time: int = T0) -> Federation:
    members = tuple(
        MemberInfo(i, f"m{i}", pub(k), bytes([i]) * 32, ("127.0.0.1", 7100 + i), "") for i, k in enumerate(SIGNERS)
    )
    return Federation(members, 2, genesis_time, 1.0, 1.0, FREE, spk(ALICE), PegSettings(PEG))


FED = federation()
ASSET = FED.chain_params().policy_asset


def signed_spend(key: PrivateKey, prev: OutPoint, value: int, outs: Sequence[tuple[bytes, int]]) -> Transaction:
    outputs = tuple(TxOut.explicit(ASSET, v, s) for s, v in outs)
    fee = value - sum(v for _, v in outs)
    tx = Transaction(2, (TxIn(prev, b"", 0xFFFFFFFF),), (*outputs, TxOut.explicit(ASSET, fee, b"")))
    code = p2wpkh_script_code(hash160(pub(key)))
    sig = sign_segwit_v0(key, tx, 0, code, ConfidentialValue.explicit(value))
    return tx.with_witnesses((TxInWitness(script_witness=(sig, pub(key))),))


def claim(stack: tuple[bytes, ...], prev: OutPoint, value: int, fee: int = 1_000) -> Transaction:
    tx = Transaction(
        2,
        (TxIn(prev, b"", 0xFFFFFFFF, None, True),),
        (TxOut.explicit(ASSET, value - fee, spk(BOB)), TxOut.explicit(ASSET, fee, b"")),
    )
    code = p2wpkh_script_code(hash160(pub(CLAIMER)))
    sig = sign_segwit_v0(CLAIMER, tx, 0, code, ConfidentialValue.explicit(value))
    return tx.with_witnesses((TxInWitness(script_witness=(sig, pub(CLAIMER)), pegin_witness=stack),))


def sign(block: Block, signers: Sequence[int] = (0, 1)) -> Block:
    sigs = [sign_block_hash(SIGNERS[i], block.hash) for i in signers]
    return block.with_solution(b"\x00" + b"".join(push_data(s) for s in sigs))


def build_chain() -> list[Block]:
    """Genesis and four blocks: a split, two independent spends, a peg-in claim, an empty block."""
    dep = deposit(PEG.pegin_script_pubkey(CLAIM_SCRIPT), COIN)
    chain = ChainState(FED.chain_params(), pegin_verifier=PegInRules(PEG, dep.view), pegout_verifier=PegOutRules(PEG))
    blocks = [chain.genesis]
    genesis_coin = OutPoint(chain.genesis.transactions[0].txid, 0)
    split = signed_spend(ALICE, genesis_coin, FREE, [(spk(BOB), 20 * COIN), (spk(CAROL), 29 * COIN)])
    b_spend = signed_spend(BOB, OutPoint(split.txid, 0), 20 * COIN, [(spk(ALICE), 19 * COIN)])
    c_spend = signed_spend(CAROL, OutPoint(split.txid, 1), 29 * COIN, [(spk(ALICE), 28 * COIN)])
    pegin = claim(build_pegin_witness(PEG, CLAIM_SCRIPT, dep.tx, dep.proof, 0), OutPoint(dep.tx.txid, 0), COIN)
    for txs in ([split], [b_spend, c_spend], [pegin], []):
        block = sign(chain.assemble_block(txs, blocks[-1].header.time + 60))
        chain.connect_block(block, block.header.time)
        blocks.append(block)
    return blocks


BLOCKS = build_chain()


class ListFetcher:
    """A member serving ``blocks``; ``named`` overrides what /block-height says."""

    def __init__(self, blocks: Sequence[Block], named: Sequence[bytes] | None = None) -> None:
        self.blocks = list(blocks)
        self.named = list(named) if named is not None else [b.hash for b in blocks]
        self.by_hash = {n: b for n, b in zip(self.named, self.blocks)}

    def tip_height(self) -> int:
        return len(self.blocks) - 1

    def block_hash(self, height: int) -> bytes:
        return self.named[height]

    def header(self, block_hash: bytes) -> bytes:
        return self.by_hash[block_hash].header.serialize()

    def block(self, block_hash: bytes) -> bytes:
        return self.by_hash[block_hash].serialize()


def audit(blocks: Sequence[Block], fed: Federation = FED, **kw: object) -> AuditReport:
    return audit_chain(ListFetcher(blocks), fed, **kw)  # type: ignore[arg-type]


def with_solution(block: Block, solution: bytes) -> Block:
    return Block(replace(block.header, proof=BlockProof(block.header.proof.challenge, solution)), block.transactions)


def test_honest_chain_passes_and_counts_the_peg_in() -> None:
    report = audit(BLOCKS)
    assert report.ok, report.summary()
    assert (report.tip_height, report.blocks_checked, report.replayed_to) == (4, 5, 4)
    assert report.signatures_checked == 4 * 2
    assert (report.pegged_in, report.burned, report.federation_coins) == (COIN, 0, None)
    assert "OK" in report.summary()


def test_forged_signature_is_caught() -> None:
    b = BLOCKS[2]
    sol = bytearray(b.header.proof.solution)
    sol[12] ^= 0x01  # inside the first signature's r
    report = audit([*BLOCKS[:2], with_solution(b, bytes(sol)), *BLOCKS[3:]])
    assert [(f.height, f.rule) for f in report.failures] == [(2, "BadBlockSignature")]
    assert report.replayed_to == 1  # nothing built on a forged block is replayed


def test_block_signed_by_m_minus_one_is_caught() -> None:
    report = audit([*BLOCKS[:3], sign(BLOCKS[3], (1,)), BLOCKS[4]])
    assert [(f.height, f.rule) for f in report.failures] == [(3, "ThresholdNotMet")]


def test_swapped_and_replaced_transactions_are_caught() -> None:
    b = BLOCKS[2]
    cb, t1, t2 = b.transactions
    swapped = Block(b.header, (cb, t2, t1))  # same header, so the same hash and signatures
    report = audit([*BLOCKS[:2], swapped, *BLOCKS[3:]])
    assert [(f.height, f.rule) for f in report.failures] == [(2, "BadMerkleRoot")]
    replaced = Block(b.header, (cb, t1, BLOCKS[3].transactions[1]))
    assert audit([*BLOCKS[:2], replaced, *BLOCKS[3:]]).rules() == ["BadMerkleRoot"]


def test_broken_prev_link_is_caught_even_when_signed() -> None:
    b = BLOCKS[3]
    h = b.header
    header = BlockHeader(h.version, b"\x11" * 32, h.merkle_root, h.time, h.height, BlockProof(h.proof.challenge, b""))
    relinked = sign(Block(header, b.transactions))
    report = audit([*BLOCKS[:3], relinked, BLOCKS[4]])
    assert (3, "BadPrevHash") in [(f.height, f.rule) for f in report.failures]
    # Block 4 names the original block 3, not the relinked one.
    assert (4, "BadPrevHash") in [(f.height, f.rule) for f in report.failures]


def test_wrong_genesis_and_a_lying_height_index_are_caught() -> None:
    report = audit(BLOCKS, federation(genesis_time=T0 + 1))
    assert report.failures[0].height == 0 and report.failures[0].rule == "WrongGenesis"
    named = [b.hash for b in BLOCKS]
    named[2] = BLOCKS[3].hash
    liar = ListFetcher(BLOCKS, named)
    liar.by_hash = {b.hash: b for b in BLOCKS}
    rules = [(f.height, f.rule) for f in audit_chain(liar, FED).failures]
    assert (2, "BadHeight") in rules


def test_reserves_shortfall_then_covered_on_a_real_mainchain(tmp_path: Path) -> None:
    with mainchain(tmp_path) as main_:
        rpc = main_.rpc
        rpc.generatetoaddress(101, rpc.getnewaddress())
        # The claimed deposit was never funded on this mainchain: nothing backs the coin.
        report = audit(BLOCKS, mainchain=rpc)
        assert report.federation_coins == 0 and report.owed == COIN
        assert [(f.height, f.rule) for f in report.failures] == [(4, "ReserveShortfall")]
        # Fund the federation's change script with exactly what is owed: it holds.
        address = encode_segwit_address(PEG.parent.bech32_hrp, 0, PEG.fedpeg_program[2:])
        rpc.sendtoaddress(address, btc(COIN))
        rpc.generatetoaddress(1, rpc.getnewaddress())
        report = audit(BLOCKS, mainchain=rpc)
        assert report.ok, report.summary()
        assert report.federation_coins == COIN


def test_functionary_audit_against_a_running_member(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    async def body() -> None:
        solo = Solo(tmp_path)
        node = await solo.start()
        port = _free_port()
        server = uvicorn.Server(uvicorn.Config(create_app(node), host="127.0.0.1", port=port, log_level="warning"))
        task = asyncio.create_task(server.serve())
        try:
            await _wait(lambda: node.chain.tip_height >= 3 and server.started, 15, "blocks and the API")
            fed = str(tmp_path / "federation.json")
            url = f"http://127.0.0.1:{port}"
            assert await asyncio.to_thread(main, ["audit", "--url", url, "--federation", fed, "--quiet"]) == 0
            dead = f"http://127.0.0.1:{_free_port()}"
            assert await asyncio.to_thread(main, ["audit", "--url", dead, "--federation", fed]) == 2
        finally:
            server.should_exit = True
            await task
            await node.stop()

    asyncio.run(body())
    out, err = capsys.readouterr()
    assert "OK: every check holds" in out and "audited heights 0.." in out
    assert "API unreachable" in err and len(err.strip().splitlines()) == 1

"""``functionary audit``: an honest chain passes; each tampering is caught by name.

A 2-of-3 federation with fixed keys and a peg makes a short chain in process
(free-coin spends, two independent transactions in one block, a peg-in claim
of a hand-built mainchain deposit). The audit reads it through a list-backed
fetcher, so the tests can serve it altered without a server; one test serves a
real member's API over HTTP and runs the command itself.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from coincurve import PrivateKey

from consensus.block import Block
from consensus.chainstate import ChainState
from consensus.hashes import hash160
from consensus.header import BlockHeader, BlockProof, sign_block_hash
from consensus.mainchain import BtcTransaction, BtcTxIn, BtcTxOut, MerkleBlock, encode_segwit_address
from consensus.peg import PegInRules, PegOutRules, PegParams, build_pegin_witness
from consensus.script import push_data
from consensus.standard import p2wpkh_script, p2wpkh_script_code, pegout_script, sign_segwit_v0
from consensus.transaction import ConfidentialValue, OutPoint, Transaction, TxIn, TxInWitness, TxOut
from functionary.api import create_app
from functionary.audit import AuditReport, HttpFetcher, PrefetchingFetcher, audit_chain
from functionary.bitcoind import BitcoinRpc, RpcConnectionError, btc
from functionary.cli import main
from functionary.config import Federation, MemberInfo, PegSettings
from functionary.node import make_chain
from functionary.watchmen.ledger import Ledger, extract_block_events
from functionary.watchmen.params import WatchmenParams
from functionary.watchmen.payout import plan_payout
from functionary.watchmen.signing import coins_of, combine, sign_inputs
from regtest.testing import mainchain
from tests.devnet import running_devnet, wait_for
from tests.test_e2e_peg import Devnet, claim_when_deep, exchange_pegs_out
from tests.test_peg_rules import FakeMainchain, deposit
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
        # The claimed deposit was never mined on this mainchain (its block is
        # hand-made): the claim is unbacked and nothing holds the coin.
        report = audit(BLOCKS, mainchain=rpc)
        assert report.federation_coins == 0 and report.required == COIN
        assert [(f.height, f.rule) for f in report.failures] == [(3, "PegInNotOnMainchain"), (4, "ReserveShortfall")]
        # Fund the federation's change script with exactly what is owed: the
        # reserves hold; the claim is still unbacked.
        address = encode_segwit_address(PEG.parent.bech32_hrp, 0, PEG.fedpeg_program[2:])
        rpc.sendtoaddress(address, btc(COIN))
        rpc.generatetoaddress(1, rpc.getnewaddress())
        report = audit(BLOCKS, mainchain=rpc)
        assert [(f.height, f.rule) for f in report.failures] == [(3, "PegInNotOnMainchain")]
        assert report.federation_coins == COIN == report.required


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


# --- a payout on a real mainchain ----------------------------------------------------------

# PAK off, so a plain transaction can peg out; everything else as PEG.
PAYOUT_PEG = replace(PEG, enforce_pak=False)
PAYOUT_FED = replace(FED, peg=PegSettings(PAYOUT_PEG))
PEGOUT = 40_000_000


def _payout_chain(rpc: Any) -> tuple[list[Block], Ledger, WatchmenParams]:
    """A real 1 BTC deposit to the claim script's peg-in address, claimed on
    the sidechain (block 1); 0.4 BTC pegged out to the mainchain wallet
    (block 2); an empty block 3. The members' ledger follows the blocks."""
    txid = rpc.sendtoaddress(PAYOUT_PEG.pegin_address(CLAIM_SCRIPT), btc(COIN))
    rpc.generatetoaddress(PAYOUT_PEG.pegin_min_depth, rpc.getnewaddress())
    dep = BtcTransaction.parse(bytes.fromhex(rpc.getrawtransaction(txid)))
    vout = next(i for i, o in enumerate(dep.outputs) if o.script_pubkey == PAYOUT_PEG.pegin_script_pubkey(CLAIM_SCRIPT))
    proof = MerkleBlock.parse(bytes.fromhex(rpc.gettxoutproof([txid])))
    view = FakeMainchain()
    view.confirm(proof.header.hash, PAYOUT_PEG.pegin_min_depth)
    chain, _ = make_chain(PAYOUT_FED, view)  # type: ignore[arg-type]
    pegin = claim(build_pegin_witness(PAYOUT_PEG, CLAIM_SCRIPT, dep, proof, vout), OutPoint(dep.txid, vout), COIN)
    dest = bytes.fromhex(rpc.getaddressinfo(rpc.getnewaddress())["scriptPubKey"])
    spent = COIN - 1_000  # the claim's output to BOB
    pegout = Transaction(
        2,
        (TxIn(OutPoint(pegin.txid, 0), b"", 0xFFFFFFFF),),
        (
            TxOut.explicit(ASSET, PEGOUT, pegout_script(PAYOUT_PEG.parent_genesis_hash, dest)),
            TxOut.explicit(ASSET, spent - PEGOUT - 500, spk(BOB)),
            TxOut.explicit(ASSET, 500, b""),
        ),
    )
    code = p2wpkh_script_code(hash160(pub(BOB)))
    sig = sign_segwit_v0(BOB, pegout, 0, code, ConfidentialValue.explicit(spent))
    pegout = pegout.with_witnesses((TxInWitness(script_witness=(sig, pub(BOB))),))
    blocks = [chain.genesis]
    for txs in ([pegin], [pegout], []):
        block = sign(chain.assemble_block(txs, blocks[-1].header.time + 60))
        chain.connect_block(block, block.header.time)
        blocks.append(block)
    params = WatchmenParams(peg=PAYOUT_PEG)
    ledger = Ledger(params)
    for b in blocks[1:]:
        events = extract_block_events(b.transactions, PAYOUT_PEG)
        heights = {h: rpc.getblockheader(h[::-1].hex())["height"] for h in events.mainchain_blocks}
        ledger.apply_block(b.header.height, events, heights)
    return blocks, ledger, params


def test_payout_fees_are_counted_from_the_mainchain_and_theft_is_caught(tmp_path: Path) -> None:
    with mainchain(tmp_path) as main_:
        rpc = main_.rpc
        rpc.generatetoaddress(101, rpc.getnewaddress())
        blocks, ledger, params = _payout_chain(rpc)
        before = audit(blocks, PAYOUT_FED, mainchain=rpc)
        assert before.ok, before.summary()
        assert (before.pegged_in, before.burned, before.payouts, before.fees) == (COIN, PEGOUT, 0, 0)
        assert before.federation_coins == COIN == before.required

        # The watchmen pay the peg-out with the members' own payout code.
        plan = plan_payout(ledger, params, mainchain_height=rpc.getblockcount(), rate=5_000)
        assert plan is not None
        coins = coins_of(ledger, plan.tx)
        sigs = {i: sign_inputs(WATCHMEN[i], plan.tx, coins, PAYOUT_PEG) for i in (0, 2)}
        payout = combine(plan.tx, coins, PAYOUT_PEG, sigs)
        rpc.sendrawtransaction(payout.serialize().hex())
        [mined] = rpc.generatetoaddress(1, rpc.getnewaddress())
        ledger.confirm_payout(payout, rpc.getblock(mined)["height"])
        r = ledger.reserves()
        assert r.paid_out == PEGOUT and r.fees > 0 and r.balanced

        # Honest: the coins are exactly pegged in - paid out - fees; the old
        # audit (coins >= pegged in - burned) called this a shortfall of the fee.
        report = audit(blocks, PAYOUT_FED, mainchain=rpc)
        assert report.ok, report.summary()
        assert (report.payouts, report.paid_out, report.fees, report.unaccounted) == (1, PEGOUT, r.fees, 0)
        assert report.federation_coins == r.utxo_sum == COIN - PEGOUT - r.fees == report.required
        assert report.federation_coins < report.pegged_in - report.burned
        assert f"mainchain fees {r.fees} sat" in report.summary()

        # m watchmen keys move the change to an address no peg-out names.
        [change] = ledger.utxos()
        theft = BtcTransaction(
            2,
            (BtcTxIn(change.outpoint.txid, change.outpoint.vout),),
            (BtcTxOut(change.value - 2_000, spk(CAROL)),),
        )
        sigs = {i: sign_inputs(WATCHMEN[i], theft, [change], PAYOUT_PEG) for i in (1, 2)}
        rpc.sendrawtransaction(combine(theft, [change], PAYOUT_PEG, sigs).serialize().hex())
        rpc.generatetoaddress(1, rpc.getnewaddress())
        report = audit(blocks, PAYOUT_FED, mainchain=rpc)
        assert [(f.height, f.rule) for f in report.failures] == [(3, "UnaccountedSpend"), (3, "ReserveShortfall")]
        assert (report.payouts, report.paid_out, report.fees) == (2, PEGOUT, r.fees + 2_000)
        assert report.unaccounted == change.value - 2_000 and report.federation_coins == 0
        assert f"{theft.txid_hex}:0" in report.failures[0].detail


class StubMainchain:
    """A mainchain RPC that answers getblockhash 0 with ``genesis``, or fails."""

    def __init__(self, genesis: str | None) -> None:
        self.genesis = genesis

    def call(self, method: str, *params: Any, timeout: float | None = None) -> Any:
        if self.genesis is None:
            raise RpcConnectionError(f"{method}: connection refused")
        assert (method, params) == ("getblockhash", (0,))
        return self.genesis


def test_a_wrong_or_dead_mainchain_is_a_failure_in_the_report() -> None:
    report = audit(BLOCKS, mainchain=StubMainchain("11" * 32))
    assert report.rules() == ["WrongMainchain"] and report.blocks_checked == 5 and report.replayed_to == 4
    report = audit(BLOCKS, mainchain=StubMainchain(None))
    assert report.rules() == ["MainchainUnavailable"] and "connection refused" in report.failures[0].detail
    assert audit(BLOCKS, mainchain=StubMainchain(PEG.parent_genesis_hash[::-1].hex() + "00")).rules() == [
        "WrongMainchain"
    ]


# --- a member that fails to serve -------------------------------------------------------------


Fault = tuple[int, bytes] | None
"""(status, body) to answer instead; None: close the connection unanswered."""


class FakeMember:
    """``blocks`` behind a member's read paths over real HTTP, with a fault
    for any path in ``faults`` and a tip it may lie about."""

    def __init__(self, blocks: Sequence[Block], tip: int | None = None) -> None:
        self.blocks = list(blocks)
        self.tip = len(blocks) - 1 if tip is None else tip
        self.faults: dict[str, Fault] = {}
        self.dead_from: int | None = None
        """Heights from here on (and their blocks' paths) get no answer."""
        by_hash = {b.hash[::-1].hex(): b for b in blocks}
        member = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # else each answer waits out a delayed ACK

            def log_message(self, *_: Any) -> None:
                pass

            def do_GET(self) -> None:
                fault = member.faults.get(self.path, (0, b""))
                parts = self.path.strip("/").split("/")
                height = None
                if parts[0] == "block-height":
                    height = int(parts[1])
                elif parts[0] == "block" and parts[1] in by_hash:
                    height = by_hash[parts[1]].header.height
                if member.dead_from is not None and height is not None and height >= member.dead_from:
                    fault = None
                if fault is None:
                    self.close_connection = True
                    return
                status, body = fault
                if not status:
                    status, body = member.answer(parts, by_hash)
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def answer(self, parts: list[str], by_hash: dict[str, Block]) -> tuple[int, bytes]:
        if parts == ["blocks", "tip", "height"]:
            return 200, str(self.tip).encode()
        if parts[0] == "block-height" and int(parts[1]) < len(self.blocks):
            return 200, self.blocks[int(parts[1])].hash[::-1].hex().encode()
        if parts[0] == "block" and parts[1] in by_hash and len(parts) == 3:
            b = by_hash[parts[1]]
            if parts[2] == "header":
                return 200, b.header.serialize().hex().encode()
            if parts[2] == "raw":
                return 200, b.serialize()
        return 404, b'{"code":"NotFound","message":"no such thing"}'

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


H2 = BLOCKS[2].hash[::-1].hex()


def fetchers(url: str) -> list[HttpFetcher | PrefetchingFetcher]:
    """The plain fetcher, and the command's (three threads fetching ahead):
    each must report the same."""
    return [
        HttpFetcher(url, timeout=5.0),
        PrefetchingFetcher(lambda: HttpFetcher(url, timeout=5.0), workers=3, window=4),
    ]


@pytest.mark.parametrize(
    ("path", "fault", "rule"),
    [
        (f"/block/{H2}/raw", (404, b'{"code":"BlockNotFound","message":"no block"}'), "BlockUnavailable"),
        (f"/block/{H2}/header", (500, b"oops"), "BlockUnavailable"),
        ("/block-height/2", (200, b"zz" * 32), "MalformedAnswer"),
        ("/block-height/2", (200, b"00" * 31), "MalformedAnswer"),
        (f"/block/{H2}/header", (200, BLOCKS[3].header.serialize().hex().encode()), "HashMismatch"),
        (f"/block/{H2}/header", (200, b"0102"), "ParseError"),
        (f"/block/{H2}/raw", (200, b"\x00garbage"), "ParseError"),
        (f"/block/{H2}/raw", None, "ApiUnreachable"),
    ],
)
def test_a_block_the_member_fails_to_serve_is_reported_and_the_rest_checked(
    path: str, fault: Fault, rule: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    member = FakeMember(BLOCKS)
    member.faults[path] = fault
    try:
        for fetch in fetchers(member.url):
            report = audit_chain(fetch, FED)
            fetch.close()
            assert [(f.height, f.rule) for f in report.failures] == [(2, rule)], type(fetch)
            assert report.replayed_to == 1  # nothing above the gap is replayed
            assert report.blocks_checked == (5 if rule == "HashMismatch" else 4)
            assert report.signatures_checked == (4 if rule == "HashMismatch" else 3) * 2
        fed_file = tmp_path / "federation.json"
        FED.save(fed_file)
        code = main(["audit", "--url", member.url, "--federation", str(fed_file), "--quiet"])
    finally:
        member.close()
    out, err = capsys.readouterr()
    assert code == 1
    assert f"height 2: {rule}: " in out and "FAILED: 1 failure(s)" in out
    assert "Traceback" not in out + err and err == ""


def test_a_member_that_goes_away_or_lies_about_its_tip_ends_in_a_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fed_file = tmp_path / "federation.json"
    FED.save(fed_file)
    member = FakeMember(BLOCKS)
    member.dead_from = 2  # gone after serving heights 0 and 1
    liar = FakeMember(BLOCKS, tip=20)  # names a tip it cannot serve
    try:
        for fetch in fetchers(member.url):
            gone = audit_chain(fetch, FED)
            fetch.close()
            assert [(f.height, f.rule) for f in gone.failures] == [(h, "ApiUnreachable") for h in (2, 3, 4)]
            assert gone.blocks_checked == 2
        for fetch in fetchers(liar.url):
            lied = audit_chain(fetch, FED)
            fetch.close()
            assert [(f.height, f.rule) for f in lied.failures] == [
                *((h, "BlockUnavailable") for h in range(5, 10)),
                (9, "AuditIncomplete"),
            ]
            assert lied.blocks_checked == 5 and lied.replayed_to == 4
            assert "10..20 not checked" in str(lied.failures[-1])
        assert main(["audit", "--url", member.url, "--federation", str(fed_file), "--quiet"]) == 1
        assert main(["audit", "--url", liar.url, "--federation", str(fed_file), "--quiet"]) == 1
    finally:
        member.close()
        liar.close()
    out, err = capsys.readouterr()
    assert out.count("FAILED") == 2 and "AuditIncomplete" in out and "ApiUnreachable" in out
    assert "Traceback" not in out + err


# --- the whole thing: real members, real watchmen, real payout -----------------------------


def test_functionary_audit_balances_after_the_watchmen_pay_on_the_devnet(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``functionary devnet`` (2-of-3): a 1 BTC peg-in claimed, 0.5 BTC pegged
    out by the PAK exchange, the watchmen's payout confirmed; then
    ``functionary audit`` with the mainchain RPC finds the same fees and
    coins as every member's ledger, from the mainchain alone, and exits 0."""
    data = tmp_path / "devnet"
    args = ("--block-interval", "1", "--mainchain-block-interval", "0", "--pegin-min-depth", "2")
    with running_devnet(data, 3, 2, *args) as (proc, info):
        mc = info["mainchain"]
        rpc = BitcoinRpc(mc["rpc_url"], user=mc["rpc_user"], password=mc["rpc_password"], timeout=30)
        net = Devnet(data, proc, info, rpc)
        wait_for(lambda: min(net.heights()) >= 1, 90, "every member past genesis")
        net.mine(10)
        net.cli("alice", "new")
        txid = rpc.sendtoaddress(net.cli("alice", "pegin-address")["address"], 1)
        net.mine(2)
        claim_when_deep(net, "alice", txid)
        wait_for(lambda: net.cli("alice", "balance")["confirmed"] > 0, 30, "alice's claimed coins")
        net.cli("exchange", "new")
        net.cli("alice", "send", net.cli("exchange", "address", "--confidential")["address"], "0.6")
        wait_for(lambda: net.cli("exchange", "balance")["confirmed"] == 60_000_000, 30, "the exchange's coins")
        pegout = exchange_pegs_out(net, "exchange", "0.5")

        def settled() -> dict[str, Any] | None:
            net.mine(1)  # confirms the payout, then buries it confirm_depth deep
            pegs = [httpx.get(f"{url}/status", timeout=5).json()["peg"] for url in net.api_urls]
            done = all(
                (p["paid_out"], p["pending_pegouts"], p["live_payouts"], p["balanced"]) == (pegout.amount, 0, [], True)
                for p in pegs
            )
            return pegs[0] if done else None

        peg = wait_for(settled, 150, "every member's ledger to count the payout confirmed", interval=1.0)
        assert peg["mainchain_fees"] > 0
        rpc_url = mc["rpc_url"].replace("://", f"://{mc['rpc_user']}:{mc['rpc_password']}@")
        argv = ["audit", "--url", net.api_urls[2], "--federation", str(data / "federation.json")]
        code = main([*argv, "--mainchain-rpc", rpc_url, "--quiet"])
        rpc.close()
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert "OK: every check holds" in out
    assert (
        f"1 payout(s) paid out {pegout.amount} sat to peg-outs, mainchain fees {peg['mainchain_fees']} sat, "
        "unaccounted 0 sat" in out
    ), out
    coins = peg["federation_utxo_sum"]
    assert coins == COIN - pegout.amount - peg["mainchain_fees"]
    assert f"reserves: federation coins {coins} sat, required (pegged in - paid out - fees) {coins} sat" in out


def test_a_url_that_is_not_http_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fed_file = tmp_path / "federation.json"
    FED.save(fed_file)
    assert main(["audit", "--url", "ftp://127.0.0.1/", "--federation", str(fed_file)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "not an http(s) URL" in err


class GrowingFetcher(ListFetcher):
    """A member whose chain grows while it is audited: its first tip is 2."""

    def __init__(self, blocks: Sequence[Block]) -> None:
        super().__init__(blocks)
        self.tips = [2]

    def tip_height(self) -> int:
        return self.tips.pop(0) if self.tips else len(self.blocks) - 1


def test_with_the_peg_checked_blocks_made_during_the_audit_are_audited_too() -> None:
    # Without the mainchain the tip read first is the audit's.
    report = audit_chain(GrowingFetcher(BLOCKS), FED)
    assert (report.tip_height, report.blocks_checked, report.ok) == (2, 3, True)
    # With it, the peg-outs of newer blocks must be known before payouts are
    # read: the audit goes on to the new tip first.
    report = audit_chain(GrowingFetcher(BLOCKS), FED, mainchain=StubMainchain(None))  # type: ignore[arg-type]
    assert (report.tip_height, report.blocks_checked, report.replayed_to) == (4, 5, 4)
    assert report.rules() == ["MainchainUnavailable"] and report.pegged_in == COIN

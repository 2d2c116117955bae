"""The wallet against a running federation: a 1-of-1 federation with a peg,
in this process, and the embedded regtest mainchain (or MAINCHAIN_RPC_URL).

* Confidential payments: the receiver's balance shows the amount, the chain
  only commitments; explicit payments show it; a stranger's wallet sees
  nothing it can open.
* Peg-in: a claim before pegin_min_depth is refused by the wallet, and by the
  chain (PegInInsufficientDepth) when forced; a claim at depth mints the
  amount less the fee; a second claim is refused (txn-mempool-conflict while
  the first waits, PegInAlreadyClaimed after); unknown or foreign peg-ins
  are PegInNotFound.
* Peg-out: P2PKH, P2SH-P2WPKH and P2WPKH destinations accepted into blocks;
  garbage, other networks', unsupported and underived addresses refused by
  the wallet; an exchange outside the PAK list, a garbage destination and
  another parent chain refused by the chain with its code, when forced; a
  refused transaction leaves no coin locked.
* Bookkeeping: inputs locked while a spend waits, released when the member
  forgets it; another federation's chain is a ChainMismatch.

The harness (``PegSolo``) runs the member on an event loop in a background
thread with its real HTTP API on loopback, so the wallet talks HTTP exactly
as to a remote member.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar, cast

import pytest
import uvicorn
from coincurve import PrivateKey

from consensus.mainchain import MAINNET, REGTEST, TESTNET, encode_segwit_address
from consensus.peg import PakEntry, PegOutRules
from consensus.standard import parse_pegout
from functionary import wallet_cli
from functionary.api import create_app
from functionary.bitcoind import BitcoinRpc
from functionary.cli import PegOptions, init_federation
from functionary.config import Federation, MainchainRpc, MemberConfig, MemberKeys
from functionary.node import FunctionaryNode
from functionary.wallet import (
    COIN,
    PEGOUT_KINDS,
    Balance,
    ChainMismatch,
    ExchangeKey,
    ExchangeNotInPak,
    InsufficientFunds,
    InvalidAddress,
    MemberApi,
    PegInNotDeepEnough,
    PegInNotFound,
    SentTx,
    TxRejected,
    UnknownPegOutDestination,
    UnsupportedAddress,
    Wallet,
    WrongNetworkAddress,
    decode_address,
    decode_mainchain_address,
    encode_mainchain_address,
    pak_destination,
    wait_confirmed,
)
from regtest.testing import mainchain
from tests.devnet import wait_for
from tests.federation import free_ports

T = TypeVar("T")
FREE = 50 * 100_000_000


class _QuietServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:  # not the main thread: no signal handlers
        yield


wait = functools.partial(wait_for, interval=0.05)


class PegSolo:
    def __init__(self, tmp: Path, *, exchanges: int = 2, block_interval: float = 0.2) -> None:
        self.dir = tmp
        self._stack = contextlib.ExitStack()
        self.mc = self._stack.enter_context(mainchain(tmp / "mainchain"))
        self.rpc: BitcoinRpc = self.mc.rpc
        self.miner = self.rpc.getnewaddress()
        if self.rpc.getblockcount() < 101:
            self.rpc.generatetoaddress(101 - self.rpc.getblockcount(), self.miner)
        url = self.rpc.url
        # The member reads its RPC password from a file, as a production member does.
        pw_file = tmp / "rpcpassword"
        if self.mc.process is not None:
            user, password = self.mc.process.rpcuser, self.mc.process.rpcpassword
        else:  # MAINCHAIN_RPC_URL=http://user:password@host:port
            from urllib.parse import urlsplit

            parts = urlsplit(os.environ["MAINCHAIN_RPC_URL"])
            user, password = parts.username, parts.password
            url = f"{parts.scheme}://{parts.hostname}:{parts.port}"
        if password is None:
            rpc_config = MainchainRpc(url=url, cookie_file=self.mc.process.cookie_file if self.mc.process else None)
        else:
            pw_file.write_text(password)
            os.chmod(pw_file, 0o600)
            rpc_config = MainchainRpc(url=url, user=user, password_file=pw_file)
        api_port, p2p_port = free_ports(2)
        self.federation = init_federation(
            tmp / "fed",
            1,
            1,
            p2p_port=p2p_port,
            api_port=api_port,
            block_interval=block_interval,
            round_timeout=1.0,
            free_coins=FREE,
            peg=PegOptions(csv_delay=144, pegin_min_depth=2, exchanges=exchanges, payout_interval=5),
            mainchain_rpc=rpc_config,
        )
        self.fed_file = tmp / "fed" / "federation.json"
        self.api_url = f"http://127.0.0.1:{api_port}"
        self.faucet_file = tmp / "fed" / "faucet.json"
        self.faucet = PrivateKey(bytes.fromhex(json.loads(self.faucet_file.read_text())["key"]))
        self.exchange_files = [tmp / "fed" / "exchanges" / f"exchange{i}.json" for i in range(exchanges)]
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="peg-solo", daemon=True)
        self.thread.start()
        self._server: _QuietServer | None = None
        self._serve: asyncio.Task[None] | None = None
        try:
            asyncio.run_coroutine_threadsafe(self._start(tmp / "fed" / "member0" / "member.json"), self.loop).result(60)
        except BaseException:
            self.close()
            raise

    async def _start(self, config_path: Path) -> None:
        cfg = MemberConfig.load(config_path)
        fed = Federation.load(cfg.federation_file)
        self.node = FunctionaryNode(cfg, fed, MemberKeys.load(cfg.keys_file), logging.getLogger("test.pegsolo"))
        await self.node.start()
        self._server = _QuietServer(
            uvicorn.Config(
                create_app(self.node),
                host=cfg.api_listen[0],
                port=cfg.api_listen[1],
                log_level="warning",
                access_log=False,
                lifespan="off",
            )
        )
        self._serve = asyncio.create_task(self._server.serve())
        deadline = time.monotonic() + 30
        while not self._server.started:
            if self._serve.done() or time.monotonic() > deadline:
                raise RuntimeError("the member's API did not start")
            await asyncio.sleep(0.02)

    async def _stop(self) -> None:
        if self._server is not None and self._serve is not None:
            self._server.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._serve, 10)
        if hasattr(self, "node"):
            await self.node.stop()

    def call(self, fn: Callable[[], T], timeout: float = 30) -> T:
        async def run() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout)

    def api(self) -> MemberApi:
        return MemberApi(self.api_url)

    def mine(self, n: int = 1) -> list[str]:
        return self.rpc.generatetoaddress(n, self.miner)

    def close(self) -> None:
        try:
            if self.thread.is_alive():
                with contextlib.suppress(Exception):
                    asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(30)
                self.loop.call_soon_threadsafe(self.loop.stop)
                self.thread.join(10)
        finally:
            self._stack.close()


# --- Fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def solo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PegSolo]:
    s = PegSolo(tmp_path_factory.mktemp("pegsolo"))
    try:
        yield s
    finally:
        s.close()


@pytest.fixture(scope="module")
def fed(solo: PegSolo) -> Federation:
    return Federation.load(solo.fed_file)


@pytest.fixture(scope="module")
def api(solo: PegSolo) -> Iterator[MemberApi]:
    with solo.api() as a:
        yield a


@pytest.fixture(scope="module")
def alice(solo: PegSolo, fed: Federation, api: MemberApi, tmp_path_factory: pytest.TempPathFactory) -> Wallet:
    """A wallet holding the genesis free coins (the faucet key imported)."""
    w = Wallet.create(tmp_path_factory.mktemp("alice") / "alice.json", fed)
    w.import_key(solo.faucet)
    w.sync(api)
    assert w.balance().confirmed >= COIN
    return w


def new_wallet(fed: Federation, tmp: Path, name: str) -> Wallet:
    return Wallet.create(tmp / f"{name}.json", fed)


def fund(payer: Wallet, payee: Wallet, api: MemberApi, amount: int) -> None:
    sent = payer.send(api, payee.new_address(confidential=True), amount)
    wait_confirmed(payee, api, sent.txid, 30)
    wait_confirmed(payer, api, sent.txid, 30)


def claim_when_deep(wallet: Wallet, api: MemberApi, solo: PegSolo, txid: str) -> SentTx:
    """Claim, retrying while the member's view of the mainchain tip (polled
    every 2 s) lags behind the blocks just mined."""

    def attempt() -> SentTx | None:
        try:
            return wallet.claim(api, solo.rpc, txid)
        except TxRejected as e:
            if e.code in ("PegInInsufficientDepth", "PegInBlockNotInBestChain"):
                return None
            raise

    return cast(SentTx, wait(attempt, 30, "the member to see the peg-in deep enough", interval=0.3))


# --- Payments ------------------------------------------------------------------------------


def test_confidential_payment_is_open_to_the_receiver_and_hidden_on_chain(
    alice: Wallet, fed: Federation, api: MemberApi, tmp_path: Path
) -> None:
    bob, carol = new_wallet(fed, tmp_path, "bob"), new_wallet(fed, tmp_path, "carol")
    before = alice.balance().confirmed
    amount = 12_345_678
    address = bob.new_address(confidential=True)
    sent = alice.send(api, address, amount)
    assert alice.balance().locked > 0  # its inputs wait for the block
    height = wait_confirmed(bob, api, sent.txid, 30)
    wait_confirmed(alice, api, sent.txid, 30)
    assert bob.balance() == Balance(amount, 0, 1, 1, 0, bob.scan_height)
    assert alice.balance().confirmed == before - amount - sent.fee and alice.balance().locked == 0
    # What the chain shows: commitments, a nonce and proofs; no amount.
    raw = api.tx(sent.txid)
    assert raw is not None and api.block_hash(height) is not None
    script = decode_address(address).script_pubkey
    (out,) = [o for o in raw.outputs if o.script_pubkey == script]
    assert out.value.is_commitment and out.asset.is_commitment and not out.nonce.is_null
    assert amount.to_bytes(8, "big") not in raw.serialize()
    assert all(o.is_fee or not o.is_explicit for o in raw.outputs)  # change too
    (fee_out,) = [o for o in raw.outputs if o.is_fee]
    assert fee_out.value.amount == sent.fee
    # Someone else scanning the same chain opens nothing.
    carol.sync(api)
    assert carol.balance().confirmed == 0 and carol.balance().utxos == 0


def test_explicit_payments_and_unconfidential_addresses_show_the_amount(
    alice: Wallet, fed: Federation, api: MemberApi, tmp_path: Path
) -> None:
    dave = new_wallet(fed, tmp_path, "dave")
    plain = alice.send(api, dave.new_address(), 1_000_000)  # ert1…: no blinding key, so explicit
    # Alice's one coin waits in that spend; the chain takes no spend of unconfirmed change.
    wait_confirmed(alice, api, plain.txid, 30)
    forced = alice.send(api, dave.new_address(confidential=True), 2_000_000, explicit=True)
    wait_confirmed(alice, api, forced.txid, 30)
    wait_confirmed(dave, api, forced.txid, 30)
    assert dave.balance().confirmed == 3_000_000 and dave.balance().confidential_utxos == 0
    for sent, amount in ((plain, 1_000_000), (forced, 2_000_000)):
        assert any(o.is_explicit and o.value.amount == amount for o in sent.tx.outputs)
    # A wallet of explicit coins still pays confidentially, change included.
    erin = new_wallet(fed, tmp_path, "erin")
    sent = dave.send(api, erin.new_address(confidential=True), 2_500_000)
    wait_confirmed(erin, api, sent.txid, 30)
    assert erin.balance().confirmed == 2_500_000 and erin.balance().confidential_utxos == 1
    assert [o.is_explicit for o in sent.tx.outputs] == [False, False, True]


def test_refusals_before_anything_is_sent(alice: Wallet, fed: Federation, api: MemberApi, tmp_path: Path) -> None:
    poor = new_wallet(fed, tmp_path, "poor")
    poor.sync(api)
    with pytest.raises(InsufficientFunds):
        poor.send(api, alice.new_address(), 1)
    with pytest.raises(InsufficientFunds):
        alice.send(api, poor.new_address(), 21_000_000 * COIN)
    with pytest.raises(WrongNetworkAddress):
        alice.send(api, alice.pegin_address(), 1000)  # a mainchain address
    with pytest.raises(InvalidAddress):
        alice.send(api, "el1qqgarbage", 1000)
    assert alice.balance().locked == 0


def test_a_spend_the_member_forgot_releases_its_inputs(alice: Wallet, api: MemberApi) -> None:
    alice.sync(api)
    coin = next(iter(alice.utxos.values()))
    ghost = b"\x42" * 32
    coin.locked_by = ghost
    alice.pending[ghost] = [coin.outpoint]
    alice.save()
    report = alice.sync(api)
    assert report.released == [ghost] and coin.locked_by is None and ghost not in Wallet.open(alice.path).pending


def test_another_federations_member_is_a_chain_mismatch(api: MemberApi, tmp_path: Path) -> None:
    other = init_federation(tmp_path / "other", 1, 1, peg=PegOptions(pegin_min_depth=2))
    w = Wallet.create(tmp_path / "other.json", other)
    with pytest.raises(ChainMismatch):
        w.sync(api)


# --- Peg-in ------------------------------------------------------------------------------


def test_pegin_claim_depth_and_double_claims(solo: PegSolo, fed: Federation, api: MemberApi, tmp_path: Path) -> None:
    w = new_wallet(fed, tmp_path, "pegger")
    address = w.pegin_address()
    txid = solo.rpc.sendtoaddress(address, 1)
    # Unconfirmed, then one block of two: the wallet refuses ...
    with pytest.raises(PegInNotDeepEnough):
        w.claim(api, solo.rpc, txid)
    solo.mine(1)
    with pytest.raises(PegInNotDeepEnough) as shallow:
        w.claim(api, solo.rpc, txid)
    assert (shallow.value.confirmations, shallow.value.required) == (1, 2)
    # ... and so does the chain, with its reason, when the wallet is overruled.
    with pytest.raises(TxRejected) as refused:
        w.claim(api, solo.rpc, txid, check_depth=False)
    assert refused.value.status == 400 and refused.value.code == "PegInInsufficientDepth"
    assert "Needs more confirmations" in refused.value.message
    solo.mine(1)
    claim = claim_when_deep(w, api, solo, txid)
    # The same peg-in again at once: it conflicts with the waiting claim (or,
    # if a block took the first meanwhile, it is already claimed).
    with pytest.raises(TxRejected) as twice:
        w.claim(api, solo.rpc, txid)
    assert twice.value.code in ("txn-mempool-conflict", "PegInAlreadyClaimed"), twice.value
    wait_confirmed(w, api, claim.txid, 30)
    assert w.balance().confirmed == COIN - claim.fee and w.balance().confidential_utxos == 1
    assert w.pegins[0].claimed_by == claim.txid
    with pytest.raises(TxRejected) as again:
        w.claim(api, solo.rpc, txid)
    assert again.value.status == 400 and again.value.code == "PegInAlreadyClaimed"
    # The claim: one peg-in input carrying Elements' six-item witness.
    (pegin,) = claim.tx.inputs
    stack = claim.tx.input_witnesses[0].pegin_witness
    assert pegin.is_pegin and len(stack) == 6 and int.from_bytes(stack[0], "little") == COIN
    # One blinded output from an explicit input would show its amount, so a
    # zero-value blinded OP_RETURN goes with it, as Elements adds.
    outs = claim.tx.outputs
    assert [(o.script_pubkey == b"\x6a", o.value.is_commitment) for o in outs[1:]] == [(True, True), (False, False)]
    assert stack[3] == w.pegins[0].claim_script and stack[2] == fed.peg.params.parent_genesis_hash  # type: ignore[union-attr]


def test_pegins_that_are_not_ours_are_not_found(solo: PegSolo, fed: Federation, api: MemberApi, tmp_path: Path) -> None:
    w = new_wallet(fed, tmp_path, "finder")
    w.pegin_address()
    with pytest.raises(PegInNotFound):
        w.claim(api, solo.rpc, "ab" * 32)
    elsewhere = solo.rpc.sendtoaddress(solo.rpc.getnewaddress(), 1)
    with pytest.raises(PegInNotFound):
        w.claim(api, solo.rpc, elsewhere)
    somebody = new_wallet(fed, tmp_path, "somebody")
    theirs = solo.rpc.sendtoaddress(somebody.pegin_address(), 1)
    with pytest.raises(PegInNotFound):
        w.claim(api, solo.rpc, theirs)


def test_explicit_claim(solo: PegSolo, fed: Federation, api: MemberApi, tmp_path: Path) -> None:
    w = new_wallet(fed, tmp_path, "plain")
    txid = solo.rpc.sendtoaddress(w.pegin_address(), Decimal("0.25"))
    solo.mine(2)
    claim = claim_when_deep(w, api, solo, txid)
    wait_confirmed(w, api, claim.txid, 30)
    assert w.balance().confirmed == COIN // 4 - claim.fee
    w2 = new_wallet(fed, tmp_path, "plain2")
    txid2 = solo.rpc.sendtoaddress(w2.pegin_address(), Decimal("0.25"))
    solo.mine(2)

    def attempt() -> SentTx | None:
        try:
            return w2.claim(api, solo.rpc, txid2, explicit=True)
        except TxRejected as e:
            if e.code == "PegInInsufficientDepth":
                return None
            raise

    explicit = cast(SentTx, wait(attempt, 30, "an explicit claim"))
    assert [o.value.amount for o in explicit.tx.outputs if o.is_explicit] == [COIN // 4 - explicit.fee, explicit.fee]


# --- Peg-out -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exchange_wallet(alice: Wallet, fed: Federation, api: MemberApi, tmp_path_factory: pytest.TempPathFactory) -> Wallet:
    x = Wallet.create(tmp_path_factory.mktemp("exchange") / "exchange.json", fed)
    fund(alice, x, api, 3 * COIN)
    return x


@pytest.mark.parametrize("kind", PEGOUT_KINDS)
def test_pegouts_to_each_pak_destination_enter_a_block(
    kind: str, solo: PegSolo, exchange_wallet: Wallet, fed: Federation, api: MemberApi
) -> None:
    exchange = ExchangeKey.load(solo.exchange_files[1])
    address = exchange_wallet.pegout_address(exchange, kind)
    before = exchange_wallet.balance().confirmed
    record = exchange_wallet.pegout(api, address, COIN // 10, exchange)
    height = wait_confirmed(exchange_wallet, api, record.txid, 30)
    block = api.block(api.block_hash(height))
    (tx,) = [t for t in block.transactions if t.txid == record.txid]
    out = tx.outputs[record.vout]
    pegout = parse_pegout(out.script_pubkey)
    assert out.is_explicit and out.value.amount == COIN // 10
    assert pegout is not None and pegout.parent_script == decode_mainchain_address(address, REGTEST)
    assert pegout.genesis_hash == REGTEST.genesis_hash and pegout.pak_pubkey == record.pak_pubkey
    assert PegOutRules(fed.peg.params).check_output(out) == pegout  # type: ignore[union-attr]
    assert exchange_wallet.balance().confirmed == before - COIN // 10 - record.fee


def test_pegout_refusals_by_the_wallet_and_by_the_chain(
    solo: PegSolo, exchange_wallet: Wallet, api: MemberApi, tmp_path: Path
) -> None:
    x = exchange_wallet
    x.sync(api)
    exchange = ExchangeKey.load(solo.exchange_files[0])
    before = x.balance()
    program = bytes(range(20))
    with pytest.raises(InvalidAddress):
        x.pegout(api, "definitely not an address", COIN // 10, exchange)
    with pytest.raises(InvalidAddress):
        good = x.pegout_address(exchange)
        x.pegout(api, good[:-1] + ("q" if good[-1] != "q" else "p"), COIN // 10, exchange)
    for wrong in (
        encode_segwit_address("bc", 0, program),
        encode_segwit_address("tb", 0, program),
        encode_mainchain_address(b"\x76\xa9\x14" + program + b"\x88\xac", MAINNET),
        x.new_address(),  # this sidechain's
    ):
        with pytest.raises(WrongNetworkAddress):
            x.pegout(api, wrong, COIN // 10, exchange)
    with pytest.raises(UnsupportedAddress):
        x.pegout(api, encode_segwit_address("bcrt", 0, bytes(32)), COIN // 10, exchange)  # P2WSH
    with pytest.raises(UnknownPegOutDestination):
        x.pegout(api, encode_segwit_address("bcrt", 0, program), COIN // 10, exchange)
    online, offline = PrivateKey(), PrivateKey()
    outsider_file = tmp_path / "outsider.json"
    fd = os.open(outsider_file, os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"online_key": online.secret.hex(), "offline_pubkey": offline.public_key.format().hex()}, f)
    outsider = ExchangeKey.load(outsider_file)
    with pytest.raises(ExchangeNotInPak):
        x.pegout(api, x.pegout_address(outsider), COIN // 10, outsider)

    # Forced past the wallet, the chain refuses each with its own code.
    def forced(key: ExchangeKey, entries: tuple[PakEntry, ...], index: int, kind: str, genesis: bytes | None) -> str:
        _, pubkey, tweak = x.next_pegout_key(key)
        destination = pak_destination(pubkey, kind) if kind in PEGOUT_KINDS else bytes.fromhex(kind)
        with pytest.raises(TxRejected) as refused:
            x.submit_pegout(
                api,
                destination,
                COIN // 10,
                key,
                pubkey=pubkey,
                tweak=tweak,
                pak_entries=entries,
                pak_index=index,
                parent_genesis=genesis,
            )
        assert refused.value.status == 400, refused.value
        return refused.value.code

    pak = x.peg.pak
    # Without an exchange API key the member takes no peg-out at all (POST
    # /tx refuses it where exchanges are registered) ...
    _, pubkey, tweak = x.next_pegout_key(outsider)
    with pytest.raises(TxRejected) as anonymous:
        x.submit_pegout(
            api, pak_destination(pubkey, "p2wpkh"), COIN // 10, outsider,
            pubkey=pubkey, tweak=tweak, pak_entries=(outsider.entry, *pak[1:]), pak_index=0,
        )  # fmt: skip
    assert (anonymous.value.status, anonymous.value.code) == (403, "PegoutNeedsExchangeApi")
    # ... and through a registered exchange's API key, the chain still refuses
    # a proof by a key pair outside the PAK list, signing in the place of entry 0.
    outsider = dataclasses.replace(outsider, name=exchange.name, api_key=exchange.api_key)
    assert forced(outsider, (outsider.entry, *pak[1:]), 0, "p2wpkh", None) == "UnauthorizedPegOut"
    # A listed exchange, to garbage (OP_TRUE) and to a destination of another key.
    assert forced(exchange, pak, 0, "51", None) == "BadPegOutDestination"
    assert forced(exchange, pak, 0, "0014" + "11" * 20, None) == "BadPegOutDestination"
    # A listed exchange, to another Bitcoin network (the parent genesis names it).
    assert forced(exchange, pak, 0, "p2pkh", MAINNET.genesis_hash) == "WrongParentChain"
    assert forced(exchange, pak, 0, "p2wpkh", TESTNET.genesis_hash) == "WrongParentChain"
    # Nothing is left locked by the refused transactions.
    x.sync(api)
    assert x.balance().locked == 0 and x.balance().confirmed == before.confirmed and not x.pending


# --- The command line against the member -------------------------------------------------


def test_cli_pays_claims_and_pegs_out(
    solo: PegSolo, alice: Wallet, api: MemberApi, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def cli(*argv: str) -> dict[str, Any]:
        code = wallet_cli.main(["--wallet", str(tmp_path / "cli.json"), "--api", solo.api_url, "--json", *argv])
        out, err = capsys.readouterr()
        assert code == 0, err
        return cast(dict[str, Any], json.loads(out))

    cli("new", "--federation", str(solo.fed_file))
    address = cli("address", "--confidential")["address"]
    sent = alice.send(api, address, 2 * COIN)
    wait(lambda: cli("balance")["confirmed"] == 2 * COIN, 30, "the CLI wallet to see its coins")
    pegin = cli("pegin-address")["address"]
    mtxid = solo.rpc.sendtoaddress(pegin, Decimal("0.5"))
    solo.mine(2)
    assert sent.txid
    mainchain = ["--mainchain-url", solo.rpc.url]
    if solo.mc.process is not None:
        mainchain += ["--mainchain-cookie", str(solo.mc.process.cookie_file)]

    def claim() -> dict[str, Any] | None:
        code = wallet_cli.main(
            ["--wallet", str(tmp_path / "cli.json"), "--api", solo.api_url, "--json", *mainchain, "claim", mtxid]
        )
        out, err = capsys.readouterr()
        if code == 1 and "PegInInsufficientDepth" in err:
            return None
        assert code == 0, err
        return cast(dict[str, Any], json.loads(out))

    claimed = wait(claim, 30, "the CLI claim")
    wait(lambda: cli("balance")["confirmed"] == 2 * COIN + COIN // 2 - claimed["fee"], 30, "the claim")
    exchange = str(solo.exchange_files[0])
    to = cli("pegout-address", "--pak-key", exchange, "--kind", "p2sh-p2wpkh")["address"]
    out = cli("pegout", to, "0.5", "--pak-key", exchange)
    assert out["amount"] == COIN // 2 and out["address"] == to
    wait(lambda: cli("balance")["locked"] == 0, 30, "the peg-out to be in a block")
    # A claim of the same peg-in once more: the chain's reason, exit 1, one line.
    code = wallet_cli.main(["--wallet", str(tmp_path / "cli.json"), "--api", solo.api_url, *mainchain, "claim", mtxid])
    _, err = capsys.readouterr()
    assert code == 1 and "PegInAlreadyClaimed" in err and err.count("\n") == 1

"""Peg-outs across crashes, with real member processes (tests/federation.py)
and the embedded regtest mainchain (regtest/testing.py):

    peg in 1 BTC, claim it, peg out 0.5 BTC with the exchange's PAK key
    ─▶ leader proposes ─▶ watchmen sign (``payout_signed``) ─▶ leader
       combines and sends (``payout_broadcast``) ─▶ mined ─▶ ``payout_confirmed``

1. a non-leader watchman is SIGKILLed right after it logs ``payout_signed``
   (its signer state is durable, its signatures may or may not have left);
2. the leader is SIGKILLed right after it logs ``payout_broadcast`` (the
   transaction is in the mainchain mempool; ``PayoutComplete`` may or may
   not have reached the others, and its own ledger never recorded it).

Either way the member restarts, mainchain blocks are mined one per loop
iteration, and the destination receives exactly 0.5 BTC, once, however many
payout rounds follow; every member's ledger counts it paid and balanced.

The kill is made from the log follower as soon as the line appears; nothing
is mined on the mainchain between the proposal and the kill, so the payout
cannot be confirmed yet: the kill lands mid-way, which the test asserts.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from functionary.bitcoind import BitcoinRpc, MainchainError
from functionary.cli import PegOptions
from functionary.config import MainchainRpc
from functionary.wallet import COIN
from regtest.testing import RegtestProcess
from tests.federation import LogLine, ProcessFederation, parse_log_line
from tests.test_e2e_peg import Devnet, PegOutResult, claim_when_deep, exchange_pegs_out

pytestmark = pytest.mark.slow

AMOUNT = COIN // 2
PAYOUT_INTERVAL = 5


@dataclass
class PegNet:
    fed: ProcessFederation
    chain: RegtestProcess
    rpc: BitcoinRpc
    devnet: Devnet
    """The wallet CLI helpers of tests/test_e2e_peg.py, pointed at this federation."""

    def mine(self, n: int = 1) -> None:
        self.rpc.generatetoaddress(n, self.rpc.getnewaddress())

    def received(self, address: str) -> int:
        scan = self.rpc.call("scantxoutset", "start", [f"addr({address})"])
        return round(float(scan["total_amount"]) * COIN)

    def peg(self, i: int) -> dict[str, object]:
        peg = self.fed.status(i)["peg"]
        assert isinstance(peg, dict)
        return peg


@pytest.fixture
def pegnet(tmp_path: Path) -> Iterator[PegNet]:
    password = os.urandom(16).hex()
    chain_dir = tmp_path / "mainchain"
    chain_dir.mkdir()
    password_file = chain_dir / "rpcpassword"
    fd = os.open(password_file, os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(password)
    chain = RegtestProcess(chain_dir / "data", rpcuser="test", rpcpassword=password)
    chain.start()
    rpc = chain.rpc(timeout=30.0)
    fed: ProcessFederation | None = None
    try:
        rpc.generatetoaddress(101, rpc.getnewaddress())
        base = tmp_path / "fed"
        fed = ProcessFederation(
            base,
            3,
            2,
            block_interval=1.0,
            round_timeout=2.0,
            peg=PegOptions(csv_delay=144, pegin_min_depth=2, payout_interval=PAYOUT_INTERVAL),
            mainchain_rpc=MainchainRpc(url=chain.url, user="test", password_file=password_file, timeout=10.0),
        )
        info = {
            "federation": str(base / "federation.json"),
            "members": [{"index": m.index, "api": m.api} for m in fed.members],
            "mainchain": {"rpc_url": chain.url, "rpc_user": "test", "rpc_password": password},
        }
        (base / "devnet.json").write_text(json.dumps(info))
        assert chain.proc is not None
        net = PegNet(fed, chain, rpc, Devnet(base, chain.proc, info, rpc))  # type: ignore[arg-type]
        fed.start_all()
        fed.wait_heights(1, timeout=60)
        yield net
        problems = fed.check_invariants()
        assert not problems, "\n".join(problems) + "\n" + fed.describe()
    finally:
        if fed is not None:
            fed.close()
        rpc.close()
        chain.stop()


WALLET_MEMBER = 0
"""The member whose API the wallets use (the first in devnet.json)."""


def fund_and_peg_out(net: PegNet) -> Future[PegOutResult]:
    """Peg in 1 BTC to the exchange's wallet and claim it; then start the
    0.5 BTC peg-out in a thread (the caller follows the logs meanwhile)."""
    net.mine(10)
    net.devnet.cli("exchange", "new")
    address = net.devnet.cli("exchange", "pegin-address")["address"]
    mtxid = net.rpc.sendtoaddress(address, 1)
    net.mine(2)
    claim = claim_when_deep(net.devnet, "exchange", mtxid)
    net.fed.wait_for(
        lambda: net.devnet.cli("exchange", "balance")["confirmed"] == COIN - claim["fee"],
        60,
        "the exchange's claimed coins",
        interval=0.5,
    )
    pool = ThreadPoolExecutor(1)
    future = pool.submit(exchange_pegs_out, net.devnet, "exchange", "0.5")
    pool.shutdown(wait=False)
    return future


def kill_on(
    net: PegNet, event: str, who: set[int], timeout: float = 120.0, followers: dict[int, Any] | None = None
) -> tuple[LogLine, float]:
    """Follow every member's log (from when ``followers`` were made, or from
    now); SIGKILL the first member in ``who`` that logs ``event``, as soon as
    it is read. The line and the kill time."""
    if followers is None:
        followers = {i: net.fed.follow(i) for i in range(net.fed.n)}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for i, follower in followers.items():
            for raw in follower.poll():
                line = parse_log_line(i, raw)
                if line is not None and line.event == event and i in who:
                    net.fed.kill(i)
                    return line, time.time()
        time.sleep(0.01)
    raise AssertionError(f"no member of {sorted(who)} logged {event} in {timeout} s\n{net.fed.describe()}")


def paid_exactly_once(net: PegNet, pegout: PegOutResult, before: int, t0: float) -> None:
    """Mine one block per iteration until the destination holds the peg-out;
    then until every member's ledger counts it confirmed; then more payout
    rounds: still exactly once."""

    def paid() -> bool:
        net.mine(1)
        got = net.received(pegout.address) - before
        assert got in (0, AMOUNT), f"the destination received {got}, not {AMOUNT}: paid twice?"
        return got == AMOUNT

    net.fed.wait_for(paid, 180, f"{AMOUNT} at {pegout.address}", interval=1.0)
    print(f"paid after {time.monotonic() - t0:.1f} s")

    def settled() -> bool:
        net.mine(1)
        for i in range(net.fed.n):
            peg = net.peg(i)
            if (peg["paid_out"], peg["pending_pegouts"], peg["live_payouts"], peg["balanced"]) != (AMOUNT, 0, [], True):
                return False
        return True

    net.fed.wait_for(settled, 120, "every member's ledger to count the payout confirmed", interval=1.0)
    top = max(h for h in net.fed.heights().values() if h is not None)

    def rounds_passed() -> bool:
        net.mine(1)
        return min(h or 0 for h in net.fed.heights().values()) >= top + 3 * PAYOUT_INTERVAL

    net.fed.wait_for(rounds_passed, 90, "three more payout rounds", interval=1.0)
    net.mine(7)
    assert net.received(pegout.address) - before == AMOUNT
    for i in range(net.fed.n):
        peg = net.peg(i)
        assert (peg["paid_out"], peg["pending_pegouts"], peg["balanced"]) == (AMOUNT, 0, True), (i, peg)
        assert peg["federation_utxo_sum"] == COIN - AMOUNT - peg["mainchain_fees"], (i, peg)  # type: ignore[operator]
    proposed = {line.fields["txid"] for i in range(net.fed.n) for line in net.fed.events(i, "payout_proposed")}
    broadcast = {line.fields["txid"] for i in range(net.fed.n) for line in net.fed.events(i, "payout_broadcast")}
    print(f"done after {time.monotonic() - t0:.1f} s; proposed {sorted(proposed)}; broadcast {sorted(broadcast)}")


def confirmations(rpc: BitcoinRpc, txid: str) -> int | None:
    try:
        info = rpc.getrawtransaction(txid, True)
    except MainchainError:
        return None
    assert isinstance(info, dict)
    return int(info.get("confirmations", 0))


def test_watchman_killed_while_signing_pays_once(pegnet: PegNet) -> None:
    net = pegnet
    t0 = time.monotonic()
    proposals: dict[str, int] = {}
    future = fund_and_peg_out(net)

    # The leader of a round is h % n; kill a non-leader that signed. We do not
    # know the round yet: kill on payout_signed from a member that did not
    # propose that txid (the proposer logs payout_proposed first).
    followers = {i: net.fed.follow(i) for i in range(net.fed.n)}
    deadline = time.monotonic() + 120
    killed: tuple[LogLine, float] | None = None
    signed: list[LogLine] = []
    while killed is None:
        if future.done() and future.exception() is not None:
            raise AssertionError("the peg-out failed before any payout") from future.exception()
        assert time.monotonic() < deadline, f"no watchman signed a payout\n{net.fed.describe()}"
        # Read every member's new lines first: a follower's payout_signed may
        # be read before the leader's payout_proposed for the same txid.
        for i, follower in followers.items():
            for raw in follower.poll():
                line = parse_log_line(i, raw)
                if line is None:
                    continue
                if line.event == "payout_proposed":
                    proposals[line.fields["txid"]] = i
                elif line.event == "payout_signed":
                    signed.append(line)
        for line in signed:
            leader = proposals.get(line.fields["txid"])
            # Member 0 serves the wallets (devnet.json's first API): the
            # peg-out may still be in flight, so it stays up.
            if leader is not None and leader != line.member and line.member != WALLET_MEMBER:
                net.fed.kill(line.member)
                killed = (line, time.time())
                break
        time.sleep(0.01)
    line, at = killed
    pegout = future.result(timeout=120)
    before = 0
    victim, txid = line.member, line.fields["txid"]
    print(
        f"killed member {victim} (not the leader, member {proposals[txid]}) at {at:.3f}, "
        f"{at - line.ts:.3f} s after it logged payout_signed txid={txid}"
    )
    # Mid-way: signed, not confirmed (nothing was mined since the proposal).
    dead_log = net.fed.log_text(victim, incarnation=-1)
    assert f"event=payout_signed txid={txid}" in dead_log
    assert f"event=payout_confirmed txid={txid}" not in dead_log
    assert confirmations(net.rpc, txid) in (None, 0)
    net.fed.start(victim)
    paid_exactly_once(net, pegout, before, t0)


def test_leader_killed_after_broadcast_pays_once(pegnet: PegNet) -> None:
    net = pegnet
    t0 = time.monotonic()
    followers = {i: net.fed.follow(i) for i in range(net.fed.n)}
    future = fund_and_peg_out(net)
    # The wallets use member 0's API: let the peg-out finish before any kill.
    # Nothing is mined meanwhile, so a payout broadcast already stays
    # unconfirmed in the mempool until its leader is dead.
    pegout = future.result(timeout=120)
    line, at = kill_on(net, "payout_broadcast", set(range(net.fed.n)), followers=followers)
    victim, txid = line.member, line.fields["txid"]
    print(f"killed leader member {victim} at {at:.3f}, {at - line.ts:.3f} s after payout_broadcast txid={txid}")
    dead_log = net.fed.log_text(victim, incarnation=-1)
    assert f"event=payout_broadcast txid={txid}" in dead_log
    assert f"event=payout_confirmed txid={txid}" not in dead_log
    assert confirmations(net.rpc, txid) == 0  # in the mempool, not mined
    net.fed.start(victim)
    paid_exactly_once(net, pegout, 0, t0)
    for i in range(net.fed.n):
        bad = [ln.raw for ln in net.fed.events(i, "reserves") if ln.fields.get("level") == "error"]
        assert not bad, (i, bad)

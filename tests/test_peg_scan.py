"""A member learns a payout it never heard about from the mainchain itself.

The round's leader combines and broadcasts a payout, then dies before any
peer hears ``PayoutComplete``. Member 4 took no part in the round: its
ledger (loaded from its own storage) still holds the spent coin and owes the
peg-out. Its :class:`PegRuntime`, polling a real ``python -m regtest``,
scans the new blocks (``_scan_blocks``), sees a spend of a federation coin
that is a payout, records it, and confirms it at depth. Then m keys move the
change it learned that way to an address no peg-out names: that is the
``federation_coin_spent_elsewhere`` alarm (value unaccounted), not a payout.
One test, one member: the runtime's first poll scans 144 blocks back, the
bulk of the run time.

    leader: plan ─▶ m signatures ─▶ sendrawtransaction ─▶ ✝ (nobody hears)
    mainchain: ... ─▶ [payout] ─▶ 5 more blocks
    member 4: poll ─▶ scan ─▶ record (in flight) ─▶ poll ─▶ confirm (paid, change, fees)
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from consensus.hashes import hash_to_hex
from consensus.mainchain import BtcTransaction, BtcTxIn, BtcTxOut
from functionary.bitcoind import AsyncBitcoinRpc, BitcoinRpc, sats
from functionary.config import PegSettings
from functionary.mainchain_view import BitcoindView
from functionary.peg_runtime import PegRuntime
from functionary.storage import Storage, sqlite_url
from functionary.watchmen import LEDGER_KEY
from functionary.watchmen.ledger import FedUtxo, Ledger, PayoutStatus, PegOutEntry
from functionary.watchmen.params import WatchmenParams
from functionary.watchmen.payout import plan_payout
from functionary.watchmen.signing import combine, sign_inputs
from functionary.watchmen.txmath import MainOutPoint
from regtest.testing import ENV_URL, Mainchain, mainchain
from tests.test_bitcoind import mine
from tests.test_watchmen import WATCHMAN_KEYS, claim_script, make_peg
from tests.test_watchmen_regtest import Federation, receiver

COIN = 100_000_000
MEMBER = 4
"""The member under test: not among the round's signers (0, 1, 2)."""
SIGNERS = (0, 1, 2)
SETTINGS = PegSettings(make_peg(), min_feerate=1, max_feerate=50, bump_after=3)


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mainchain]:
    with mainchain(tmp_path_factory.mktemp("peg-scan")) as mc:
        if mc.rpc.getbalance() < 20:
            mc.rpc.generatetoaddress(101, mc.rpc.getnewaddress())
        yield mc


def async_rpc(chain: Mainchain) -> AsyncBitcoinRpc:
    """The runtime's own client, to the same node as ``chain.rpc``."""
    if chain.process is None:
        return AsyncBitcoinRpc(os.environ[ENV_URL])
    return AsyncBitcoinRpc(chain.process.url, cookie_file=chain.process.cookie_file)


@dataclass
class Member:
    runtime: PegRuntime
    storage: Storage
    sent: list[Any]

    @property
    def ledger(self) -> Ledger:
        return self.runtime.ledger

    async def poll(self) -> None:
        """One turn of ``watch_mainchain``: the view's tip, then the poll."""
        await self.runtime.view.refresh()
        await self.runtime._poll()


async def start_member(chain: Mainchain, fed: Federation, tmp: Path) -> Member:
    """Member 4's process starting with ``fed``'s ledger as its stored one
    (the peg-in and peg-out blocks it committed), and nothing of any round."""
    rpc = async_rpc(chain)
    log = logging.getLogger(f"test.peg_scan.{MEMBER}")
    storage = Storage.open(sqlite_url(tmp / f"member-{MEMBER}"), b"peg-scan")
    storage.peg_put(LEDGER_KEY, fed.ledger.serialize())
    sent: list[Any] = []
    runtime = PegRuntime(
        MEMBER,
        len(WATCHMAN_KEYS),
        SETTINGS,
        WATCHMAN_KEYS[MEMBER],
        rpc,
        BitcoindView(rpc, log),
        storage,
        lambda peer, data: sent.append((peer, data)),
        lambda data: sent.append(data),
        log,
    )
    assert runtime.params == fed.params
    await runtime.load()
    assert runtime.ledger.serialize() == fed.ledger.serialize()
    return Member(runtime, storage, sent)


def funded(rpc: BitcoinRpc, amount: int) -> tuple[Federation, FedUtxo, PegOutEntry, bytes]:
    """A federation with one confirmed peg-in of 2 BTC and one burned peg-out
    of ``amount`` to a wallet address; its ledger uses the runtime's params."""
    fed = Federation(rpc, runtime_params())
    coin = fed.peg_in(claim_script(0), 2 * COIN)
    _, dest = receiver(rpc, "bech32")
    [entry] = fed.peg_out([(amount, dest)], "burn")
    return fed, coin, entry, dest


def runtime_params() -> WatchmenParams:
    """What PegRuntime derives from SETTINGS (confirm_depth 6)."""
    s = SETTINGS
    return WatchmenParams(
        peg=s.params,
        payout_interval=s.payout_interval,
        min_feerate=s.min_feerate,
        max_feerate=s.max_feerate,
        fallback_feerate=s.min_feerate,
        bump_after=s.bump_after,
    )


def events(caplog: pytest.LogCaptureFixture, name: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "event", None) == name]


def test_a_payout_only_the_mainchain_saw_is_learned_and_a_theft_is_an_alarm(
    chain: Mainchain, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    asyncio.run(_payout_seen_on_mainchain(chain, tmp_path, caplog))


async def _payout_seen_on_mainchain(chain: Mainchain, tmp: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="test.peg_scan")
    rpc = chain.rpc
    amount = COIN // 2
    fed, coin, entry, dest = funded(rpc, amount)
    member = await start_member(chain, fed, tmp)
    try:
        await member.poll()  # up to date with the chain before the round
        assert member.ledger.utxo(coin.outpoint) == coin

        # The leader's round, with the watchmen's own code: plan, m checks
        # and signatures (each persisted first), combine, broadcast, die.
        plan = plan_payout(fed.ledger, fed.params, mainchain_height=fed.tip(), rate=fed.rate())
        assert plan is not None
        signed = fed.sign(plan.tx, SIGNERS)
        assert rpc.sendrawtransaction(signed.serialize().hex()) == signed.txid_hex
        [block] = mine(rpc)
        info = rpc.getblock(block)
        assert signed.txid_hex in info["tx"]
        paid_height = int(info["height"])
        [change_vout] = [i for i, o in enumerate(signed.outputs) if o.script_pubkey == fed.peg.fedpeg_program]
        [pay_vout] = [i for i, o in enumerate(signed.outputs) if o.script_pubkey == dest]
        assert signed.outputs[pay_vout].value == amount
        fee = coin.value - sum(o.value for o in signed.outputs)
        assert fee > 0

        # One block deep: seen on the mainchain, in flight, not yet final.
        await member.poll()
        [seen] = events(caplog, "payout_seen_on_mainchain")
        assert (seen.txid, seen.height) == (signed.txid_hex, paid_height)  # type: ignore[attr-defined]
        record = member.ledger.payout(signed.txid)
        assert record is not None and record.status is PayoutStatus.IN_FLIGHT
        assert member.ledger.utxo(coin.outpoint) == coin
        assert member.ledger.pegout(entry.id).paid_by is None  # type: ignore[union-attr]

        # confirm_depth (6) deep: final.
        mine(rpc, member.runtime.params.confirm_depth - 1)
        await member.poll()
        [confirmed] = events(caplog, "payout_confirmed")
        assert (confirmed.txid, confirmed.height) == (signed.txid_hex, paid_height)  # type: ignore[attr-defined]
        ledger = member.ledger
        record = ledger.payout(signed.txid)
        assert record is not None and record.status is PayoutStatus.CONFIRMED and record.height == paid_height
        paid = ledger.pegout(entry.id)
        assert paid is not None and (paid.paid_by, paid.paid_height) == (signed.txid, paid_height)
        assert ledger.utxo(coin.outpoint) is None and ledger.spender(coin.outpoint) == signed.txid
        [change] = ledger.utxos()
        assert change.outpoint == MainOutPoint(signed.txid, change_vout)
        assert change.value == signed.outputs[change_vout].value == coin.value - amount - fee
        assert change.height == paid_height
        on_chain = rpc.gettxout(signed.txid_hex, change_vout, False)
        assert on_chain is not None and sats(on_chain["value"]) == change.value
        assert rpc.gettxout(hash_to_hex(coin.outpoint.txid), coin.outpoint.vout, False) is None
        r = ledger.reserves()
        assert (r.pegged_in, r.paid_out, r.fees, r.unaccounted) == (coin.value, amount, fee, 0)
        assert r.balanced and r.owed == 0 and ledger.audit() == []
        assert ledger.payable_pegouts() == [] and ledger.live_payouts() == []

        # What it stored is what it holds: a restart would not forget it.
        stored = member.storage.peg_get(LEDGER_KEY)
        assert stored is not None and stored == ledger.serialize()

        # Leading the next round, it proposes nothing: the peg-out is paid.
        assert plan_payout(ledger, member.runtime.params, mainchain_height=rpc.getblockcount(), rate=5) is None
        await member.runtime._lead(member.runtime.params.payout_interval * len(WATCHMAN_KEYS) + MEMBER)
        assert member.sent == []
        assert events(caplog, "payout_proposed") == []
        assert len(events(caplog, "payout_round_idle")) == 1

        # Then m watchmen keys move the change it learned from the scan to
        # an address no peg-out names: an alarm, not a payout.
        await _theft_of(change, chain, fed, member, caplog)
    finally:
        await member.runtime.rpc.aclose()
        member.storage.close()


async def _theft_of(coin: FedUtxo, chain: Mainchain, fed: Federation, member: Member, caplog: Any) -> None:
    rpc = chain.rpc
    before = member.ledger.reserves()
    _, elsewhere = receiver(rpc, "bech32")
    theft = BtcTransaction(
        2,
        (BtcTxIn(coin.outpoint.txid, coin.outpoint.vout),),
        (BtcTxOut(coin.value - 2_000, elsewhere),),
    )
    sigs = {i: sign_inputs(WATCHMAN_KEYS[i], theft, [coin], fed.peg) for i in SIGNERS}
    stolen = combine(theft, [coin], fed.peg, sigs)
    assert rpc.sendrawtransaction(stolen.serialize().hex()) == stolen.txid_hex
    [block] = mine(rpc)
    height = int(rpc.getblock(block)["height"])

    await member.poll()
    ledger = member.ledger
    depth = member.runtime.params.confirm_depth
    assert len(events(caplog, "payout_seen_on_mainchain")) == 1  # only the real payout's
    [alarm] = events(caplog, "federation_coin_spent_elsewhere")
    assert alarm.levelno == logging.ERROR
    assert (alarm.txid, alarm.height, alarm.coins) == (stolen.txid_hex, height, 1)  # type: ignore[attr-defined]
    # The alarm at once; the ledger waits until the spend is as deep as a
    # payout must be, since a mainchain reorg may yet drop it.
    assert ledger.payout(stolen.txid) is None
    assert ledger.utxo(coin.outpoint) is not None and ledger.reserves().unaccounted == 0

    # A reorg drops the block; the spend is mined again in the new branch.
    rpc.invalidateblock(block)
    if stolen.txid_hex not in rpc.getrawmempool():
        rpc.sendrawtransaction(stolen.serialize().hex())
    mine(rpc, 2)
    assert rpc.getblockhash(height) != block
    await member.poll()
    [reorged] = events(caplog, "spend_elsewhere_reorged_out")
    assert reorged.txid == stolen.txid_hex  # type: ignore[attr-defined]
    alarms = events(caplog, "federation_coin_spent_elsewhere")
    assert len(alarms) == 2 and alarms[1].height == height  # type: ignore[attr-defined]
    assert ledger.utxo(coin.outpoint) is not None and ledger.reserves().unaccounted == 0

    # confirm_depth deep on the best chain: the coin leaves the ledger, its
    # whole value unaccounted (not fees, not paid out), and the audit says so.
    mine(rpc, depth - 2)
    await member.poll()
    [final] = events(caplog, "federation_coin_spent_elsewhere_final")
    assert (final.txid, final.height, final.levelno) == (stolen.txid_hex, height, logging.ERROR)  # type: ignore[attr-defined]
    assert ledger.payout(stolen.txid) is None
    assert ledger.utxo(coin.outpoint) is None and ledger.spender(coin.outpoint) == stolen.txid
    assert ledger.utxos() == []
    r = ledger.reserves()
    assert (r.paid_out, r.fees, r.unaccounted) == (before.paid_out, before.fees, coin.value)
    assert f"{coin.value} sats left the federation unaccounted" in ledger.audit()
    stored = member.storage.peg_get(LEDGER_KEY)
    assert stored is not None and stored == ledger.serialize()

    # Deeper blocks change nothing: it is never confirmed as a payout later.
    mine(rpc, depth)
    await member.poll()
    assert member.ledger.payout(stolen.txid) is None
    assert len(events(caplog, "payout_confirmed")) == 1
    assert len(events(caplog, "federation_coin_spent_elsewhere")) == 2
    assert len(events(caplog, "federation_coin_spent_elsewhere_final")) == 1

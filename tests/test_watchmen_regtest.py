"""The watchmen against a mainchain: ``python -m regtest`` by default, or the
bitcoind named by ``MAINCHAIN_RPC_URL`` (regtest.testing).

A :class:`Federation` here is the part of the member process this package
leaves to the node: it funds peg-ins (sendtoaddress to tweaked peg-in
addresses, then a real claim transaction with Elements' peg-in witness, read
back by ``extract_block_events``), makes peg-outs (sidechain transactions with
peg-out outputs), runs each watchman's check and signer with its durable
state in a dict, combines, broadcasts, mines, and reports confirmations. Its
ledger's reserves are compared with the chain (gettxout of every federation
coin) at every step.

* Receivers on P2PKH, P2SH-P2WPKH and P2WPKH (the wallet's own addresses) get
  exactly their amounts, once.
* A watchman that signed payout A (and crashed before sending, or after)
  refuses a disjoint B; so B never gets m signatures; the replacement A'
  does, mempools swap A for A', and when A' confirms A is dead and every
  peg-out is paid once.
* A payout left unmined for bump_after blocks is replaced at a higher fee.
* A coin near its CSV delay is swept to a fresh federation output; the
  emergency keys cannot spend a federation coin before the delay
  (non-BIP68-final) and can after.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import pytest

from consensus.hashes import hash_to_hex
from consensus.mainchain import BtcTransaction, BtcTxOut, MerkleBlock
from consensus.peg import PegParams, build_pegin_witness
from consensus.transaction import OutPoint, Transaction, TxIn, TxInWitness, TxOut
from functionary.bitcoind import BitcoinRpc, RpcVerifyRejected, btc, sats
from functionary.watchmen import SIGNER_STATE_KEY
from functionary.watchmen import errors as E
from functionary.watchmen.emergency import emergency_final_height, emergency_spend, sweep_needed
from functionary.watchmen.ledger import (
    BlockPegEvents,
    FedUtxo,
    Ledger,
    PayoutStatus,
    PegOutEntry,
    PegOutStatus,
    extract_block_events,
)
from functionary.watchmen.params import WatchmenParams
from functionary.watchmen.payout import (
    PlanKind,
    build_payout,
    build_replacement,
    check_payout,
    conflict_inputs,
    feerate_from_estimate,
    plan_payout,
)
from functionary.watchmen.signing import (
    PersistSignerState,
    SendSignatures,
    SignerState,
    Watchman,
    coins_of,
    combine,
)
from functionary.watchmen.txmath import MainOutPoint, vsize
from regtest.testing import Mainchain, mainchain
from tests.test_bitcoind import mine
from tests.test_watchmen import (
    ASSET,
    EMERGENCY_KEYS,
    WATCHMAN_KEYS,
    claim_script,
    make_params,
    make_peg,
    sidechain_pegout_tx,
)

# --- the chain --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mainchain]:
    with mainchain(tmp_path_factory.mktemp("watchmen")) as mc:
        yield mc


@pytest.fixture(scope="module")
def rpc(chain: Mainchain) -> BitcoinRpc:
    """A wallet with mature coins."""
    if chain.rpc.getbalance() < 20:
        chain.rpc.generatetoaddress(101, chain.rpc.getnewaddress())
    return chain.rpc


def empty_blocks(rpc: BitcoinRpc, n: int) -> None:
    """Blocks that leave the mempool alone: a payout stays unmined."""
    to = rpc.getnewaddress()
    for _ in range(n):
        rpc.call("generateblock", to, [])


def receiver(rpc: BitcoinRpc, address_type: str) -> tuple[str, bytes]:
    a = rpc.getnewaddress("", address_type)
    return a, bytes.fromhex(rpc.getaddressinfo(a)["scriptPubKey"])


def received(rpc: BitcoinRpc, address: str) -> list[int]:
    return sorted(sats(u["amount"]) for u in rpc.listunspent(1, 9_999_999, [address]))


# --- a federation around one ledger ----------------------------------------------------------------


@dataclass
class Federation:
    rpc: BitcoinRpc
    params: WatchmenParams
    ledger: Ledger = field(init=False)
    watchmen: list[Watchman] = field(init=False)
    stores: list[dict[bytes, bytes]] = field(init=False)
    height: int = 0
    """Sidechain height."""

    def __post_init__(self) -> None:
        self.ledger = Ledger(self.params)
        self.stores = [{} for _ in WATCHMAN_KEYS]
        self.watchmen = [Watchman(i, k, self.params) for i, k in enumerate(WATCHMAN_KEYS)]

    @property
    def peg(self) -> PegParams:
        return self.params.peg

    def tip(self) -> int:
        return self.rpc.getblockcount()

    def rate(self) -> int:
        return feerate_from_estimate(self.rpc.estimatesmartfee(self.params.conf_target), self.params)

    def check_reserves(self) -> None:
        """The ledger's invariants, and its coins as the chain has them."""
        assert self.ledger.audit() == []
        on_chain = 0
        for u in self.ledger.utxos():
            out = self.rpc.gettxout(hash_to_hex(u.outpoint.txid), u.outpoint.vout, False)
            assert out is not None, f"federation coin {u.outpoint!r} is not in the UTXO set"
            assert out["scriptPubKey"]["hex"] == u.script_pubkey(self.peg).hex()
            on_chain += sats(out["value"])
        r = self.ledger.reserves()
        assert on_chain == r.utxo_sum == r.pegged_in - r.paid_out - r.fees

    def peg_in(self, claim: bytes, value: int) -> FedUtxo:
        """A peg-in paid on the mainchain, mined, and claimed on the sidechain."""
        address = self.peg.pegin_address(claim)
        txid = self.rpc.sendtoaddress(address, btc(value), fee_rate=2)
        raw = BtcTransaction.parse(bytes.fromhex(self.rpc.getrawtransaction(txid)))
        mine(self.rpc)
        vout = next(i for i, o in enumerate(raw.outputs) if o.script_pubkey == self.peg.pegin_script_pubkey(claim))
        proof = MerkleBlock.parse(bytes.fromhex(self.rpc.gettxoutproof([txid])))
        claim_tx = Transaction(
            2,
            (TxIn(OutPoint(raw.txid, vout), is_pegin=True),),
            (TxOut.explicit(ASSET, value, claim), TxOut.explicit(ASSET, 0, b"")),
            input_witnesses=(TxInWitness(pegin_witness=build_pegin_witness(self.peg, claim, raw, proof, vout)),),
        )
        events = extract_block_events([claim_tx], self.peg)
        heights = {h: self.rpc.getblockheader(hash_to_hex(h))["height"] for h in events.mainchain_blocks}
        self._block(events, heights)
        coin = self.ledger.utxo(MainOutPoint(raw.txid, vout))
        assert coin is not None and coin.value == value and coin.claim_script == claim
        assert coin.height == self.tip()
        self.check_reserves()
        return coin

    def peg_out(self, pegouts: Sequence[tuple[int, bytes]], tag: str) -> list[PegOutEntry]:
        tx = sidechain_pegout_tx(pegouts, tag)
        self._block(extract_block_events([tx], self.peg), {})
        entries = [self.ledger.pegout(OutPoint(tx.txid, i)) for i in range(len(pegouts))]
        assert all(e is not None for e in entries)
        return [e for e in entries if e is not None]

    def _block(self, events: BlockPegEvents, heights: Mapping[bytes, int]) -> None:
        self.height += 1
        self.ledger.apply_block(self.height, events, heights)
        assert self.ledger.audit() == []

    def restart(self, i: int) -> None:
        """Watchman i's process died: all it has is what it persisted."""
        raw = self.stores[i].get(SIGNER_STATE_KEY)
        state = SignerState.parse(raw) if raw is not None else None
        self.watchmen[i] = Watchman(i, WATCHMAN_KEYS[i], self.params, state)

    def ask(self, i: int, tx: BtcTransaction, ledger: Ledger | None = None) -> tuple[bytes, ...]:
        """Watchman i checks and signs: persist first, then the signatures leave."""
        _, effects = self.watchmen[i].on_proposal(ledger or self.ledger, tx, self.tip())
        persist, send = effects
        assert isinstance(persist, PersistSignerState) and isinstance(send, SendSignatures)
        self.stores[i][SIGNER_STATE_KEY] = persist.state.serialize()
        assert send.txid == tx.txid and send.index == i
        return send.signatures

    def sign(self, tx: BtcTransaction, signers: Sequence[int]) -> BtcTransaction:
        sigs = {i: self.ask(i, tx) for i in signers}
        return combine(tx, coins_of(self.ledger, tx), self.peg, sigs)

    def broadcast(self, signed: BtcTransaction) -> str:
        [accept] = self.rpc.testmempoolaccept([signed.serialize().hex()])
        assert accept["allowed"], accept
        # The estimate bounds the real size, so the rate paid is at least the one agreed.
        assert accept["vsize"] == vsize(signed) <= self.ledger.estimated_vsize(signed)
        txid = self.rpc.sendrawtransaction(signed.serialize().hex())
        assert txid == signed.txid_hex
        self.ledger.record_payout(signed, self.tip())
        self.check_reserves()
        return txid

    def mine_and_confirm(self, txid: str) -> int:
        """Mine one block, which must hold ``txid``; the node would report it
        once confirm_depth deep (1 here)."""
        [block] = mine(self.rpc)
        info = self.rpc.getblock(block)
        assert txid in info["tx"]
        tx = BtcTransaction.parse(bytes.fromhex(self.rpc.getrawtransaction(txid, False, block)))
        self.ledger.confirm_payout(tx, info["height"])
        self.check_reserves()
        return int(info["height"])


def new_federation(rpc: BitcoinRpc, **kw: int) -> Federation:
    return Federation(rpc, make_params(None, **kw))


def stuck(rpc: BitcoinRpc, txid: str) -> bool:
    return txid in rpc.getrawmempool()


# --- paying peg-outs -----------------------------------------------------------------------------------------


def test_payout_pays_each_receiver_exactly_once(rpc: BitcoinRpc) -> None:
    fed = new_federation(rpc)
    fed.peg_in(claim_script(0), 60_000_000)
    fed.peg_in(claim_script(1), 30_000_000)
    fed.peg_in(claim_script(2), 20_000_000)
    receivers = [receiver(rpc, t) for t in ("legacy", "p2sh-segwit", "bech32")]
    assert [spk[:2].hex() for _, spk in receivers] == ["76a9", "a914", "0014"]
    amounts = [25_000_000, 12_345_678, 40_000_001]
    entries = fed.peg_out([(a, spk) for a, (_, spk) in zip(amounts, receivers)], "pay")
    for address, _ in receivers:
        assert received(rpc, address) == []

    plan = plan_payout(fed.ledger, fed.params, mainchain_height=fed.tip(), rate=fed.rate())
    assert plan is not None and plan.kind is PlanKind.PAYOUT
    check = check_payout(fed.ledger, plan.tx, fed.params)
    assert [e.id for _, e in check.pegouts] == [e.id for e in entries]
    assert len(check.inputs) == 2  # 0.6 + 0.3 BTC cover 0.77 BTC and the fee, oldest first
    signed = fed.sign(plan.tx, (0, 2, 4))
    txid = fed.broadcast(signed)
    assert [fed.ledger.pegout_state(e.id).status for e in entries] == [PegOutStatus.IN_PAYOUT] * 3
    height = fed.mine_and_confirm(txid)

    for (address, _), amount in zip(receivers, amounts):
        assert received(rpc, address) == [amount]
    states = [fed.ledger.pegout_state(e.id) for e in entries]
    assert {(s.status, s.txids, s.height) for s in states} == {(PegOutStatus.PAID, (signed.txid,), height)}
    r = fed.ledger.reserves()
    assert (r.paid_out, r.owed, r.fees) == (sum(amounts), 0, check.fee)
    assert r.sidechain_supply == 110_000_000 - sum(amounts)
    # Nothing is left to pay: the next round proposes nothing.
    assert plan_payout(fed.ledger, fed.params, mainchain_height=fed.tip(), rate=fed.rate()) is None


def test_crash_and_leader_change_pay_each_pegout_once(rpc: BitcoinRpc) -> None:
    fed = new_federation(rpc)
    for i in range(3):
        fed.peg_in(claim_script(i), 30_000_000)
    (addr1, spk1), (addr2, spk2) = receiver(rpc, "bech32"), receiver(rpc, "legacy")
    p1, p2 = fed.peg_out([(11_000_000, spk1), (22_000_000, spk2)], "crash")

    # Leader L1 proposes A; watchmen 0, 1, 2 sign it. Watchman 2 dies after
    # persisting, before its signatures leave; restarted, it signs A again
    # with the very same signatures.
    a = build_payout(fed.ledger, fed.params, fed.params.min_rate_kvb)
    assert a is not None
    sigs = {i: fed.ask(i, a) for i in (0, 1, 2)}
    fed.restart(2)
    assert fed.ask(2, a) == sigs[2]
    a_signed = combine(a, coins_of(fed.ledger, a), fed.peg, sigs)
    # L1 broadcasts A and dies; the other members' ledgers never saw it.
    a_txid = rpc.sendrawtransaction(a_signed.serialize().hex())
    for i in range(5):
        fed.restart(i)

    # L2, not knowing A, proposes B paying the same peg-outs from other coins.
    scratch = fed.ledger.clone()
    scratch.record_payout(a, fed.tip())
    b = build_payout(scratch, fed.params, fed.rate(), pegouts=[p1, p2])
    assert b is not None
    assert not {MainOutPoint.of(i) for i in a.inputs} & {MainOutPoint.of(i) for i in b.inputs}
    check_payout(fed.ledger, b, fed.params)  # fine as far as L2's ledger knows
    refusals = {}
    for i in (0, 1, 2):
        with pytest.raises(E.ConflictsWithSignedPayout) as info:
            fed.ask(i, b)
        refusals[i] = info.value
    b_sigs = {i: fed.ask(i, b) for i in (3, 4)}
    with pytest.raises(E.NotEnoughSignatures):
        combine(b, coins_of(fed.ledger, b), fed.peg, b_sigs)

    # L2 learns A from the refusals; its bitcoind holds A, so A is in flight.
    [learned] = {BtcTransaction.parse(t).txid_hex: t for r in refusals.values() for t in r.earlier}.items()
    assert learned[0] == a_txid and a_txid in rpc.getrawmempool()
    record = fed.ledger.record_payout(BtcTransaction.parse(learned[1]), fed.tip())
    a2 = build_replacement(fed.ledger, fed.params, record, fed.rate())
    assert check_payout(fed.ledger, a2, fed.params).replaces == {a.txid}
    assert fed.ask(1, a2) and fed.ask(2, a2)  # they signed A; A' conflicts with it
    # Watchman 3 signed B, which may still confirm and which A' does not touch.
    with pytest.raises(E.ConflictsWithSignedPayout) as info:
        fed.ask(3, a2)
    [b_seen] = [BtcTransaction.parse(t) for t in info.value.earlier]
    assert b_seen.txid == b.txid and b.txid_hex not in rpc.getrawmempool()  # B never left the signers
    # So L2 adds one of B's inputs: the final replacement rules B out too.
    extra = conflict_inputs(fed.ledger, [b_seen], {MainOutPoint.of(i) for i in a2.inputs})
    assert len(extra) == 1
    a_final = build_replacement(fed.ledger, fed.params, record, fed.rate(), extra_inputs=extra)
    final_txid = fed.broadcast(fed.sign(a_final, (1, 2, 3)))
    pool = rpc.getrawmempool()
    assert final_txid in pool and a_txid not in pool  # BIP125: mempools swapped A for A'

    fed.mine_and_confirm(final_txid)
    rec_a = fed.ledger.payout(a.txid)
    assert rec_a is not None and rec_a.status is PayoutStatus.DEAD and rec_a.replaced_by == a_final.txid
    assert received(rpc, addr1) == [11_000_000] and received(rpc, addr2) == [22_000_000]
    assert {fed.ledger.pegout_state(p.id).txids for p in (p1, p2)} == {(a_final.txid,)}
    assert rpc.gettxout(a_txid, 0) is None
    # Every watchman is free again: A, A' (unsent) and B are dead, the final replacement confirmed.
    assert fed.ledger.is_settled(b)
    assert all(w.live(fed.ledger) == [] for w in fed.watchmen)
    (addr3, spk3) = receiver(rpc, "p2sh-segwit")
    [p3] = fed.peg_out([(5_000_000, spk3)], "after")
    c = build_payout(fed.ledger, fed.params, fed.rate())
    assert c is not None and [e.id for _, e in check_payout(fed.ledger, c, fed.params).pegouts] == [p3.id]
    c_txid = fed.broadcast(fed.sign(c, (0, 3, 4)))
    fed.mine_and_confirm(c_txid)
    assert received(rpc, addr3) == [5_000_000]
    assert received(rpc, addr1) == [11_000_000] and received(rpc, addr2) == [22_000_000]
    assert fed.ledger.reserves().paid_out == 38_000_000


def test_stuck_payout_is_fee_bumped_after_n_blocks(rpc: BitcoinRpc) -> None:
    fed = new_federation(rpc, bump_after=3)
    fed.peg_in(claim_script(3), 50_000_000)
    addr, spk = receiver(rpc, "bech32")
    [p] = fed.peg_out([(7_000_000, spk)], "bump")
    plan = plan_payout(fed.ledger, fed.params, mainchain_height=fed.tip(), rate=fed.params.min_rate_kvb)
    assert plan is not None
    first = fed.broadcast(fed.sign(plan.tx, (0, 1, 2)))
    seen = fed.tip()

    for waited in range(1, 4):
        assert plan_payout(fed.ledger, fed.params, mainchain_height=fed.tip(), rate=fed.rate()) is None
        empty_blocks(rpc, 1)
        assert fed.tip() == seen + waited and stuck(rpc, first)
    bump = plan_payout(fed.ledger, fed.params, mainchain_height=fed.tip(), rate=fed.params.min_rate_kvb)
    assert bump is not None and bump.kind is PlanKind.REPLACEMENT and bump.replaces == plan.tx.txid
    old = fed.ledger.payout(plan.tx.txid)
    assert old is not None
    check = check_payout(fed.ledger, bump.tx, fed.params)
    assert check.fee > old.fee and check.feerate >= old.feerate * fed.params.bump_percent // 100
    assert [e.id for _, e in check.pegouts] == [p.id]
    second = fed.broadcast(fed.sign(bump.tx, (2, 3, 4)))
    assert not stuck(rpc, first) and stuck(rpc, second)
    fed.mine_and_confirm(second)
    assert received(rpc, addr) == [7_000_000]
    assert fed.ledger.payout(plan.tx.txid).status is PayoutStatus.DEAD  # type: ignore[union-attr]


# --- the emergency path ----------------------------------------------------------------------------------------

CSV = 10
MARGIN = 3


def test_old_coins_are_swept_before_the_csv_delay(rpc: BitcoinRpc) -> None:
    fed = Federation(rpc, make_params(make_peg(csv_delay=CSV), sweep_margin=MARGIN))
    coin = fed.peg_in(claim_script(4), 10_000_000)
    assert coin.confirmations(fed.tip()) == 1
    mine(rpc, CSV - MARGIN - 2)
    assert coin.confirmations(fed.tip()) == CSV - MARGIN - 1
    assert sweep_needed(fed.ledger, fed.tip(), fed.params) == []
    assert plan_payout(fed.ledger, fed.params, mainchain_height=fed.tip(), rate=fed.rate()) is None
    mine(rpc)
    assert sweep_needed(fed.ledger, fed.tip(), fed.params) == [coin]
    plan = plan_payout(fed.ledger, fed.params, mainchain_height=fed.tip(), rate=fed.rate())
    assert plan is not None and plan.kind is PlanKind.SWEEP
    txid = fed.broadcast(fed.sign(plan.tx, (0, 3, 4)))
    height = fed.mine_and_confirm(txid)
    [fresh] = fed.ledger.utxos()
    assert fresh.claim_script is None and fresh.height == height and fresh.outpoint.txid == plan.tx.txid
    assert rpc.gettxout(hash_to_hex(coin.outpoint.txid), coin.outpoint.vout) is None
    assert sweep_needed(fed.ledger, fed.tip(), fed.params) == []
    assert emergency_final_height(fresh, fed.peg) == height + CSV
    assert fed.ledger.reserves().fees == coin.value - fresh.value


def test_emergency_keys_spend_only_after_the_csv_delay(rpc: BitcoinRpc) -> None:
    fed = Federation(rpc, make_params(make_peg(csv_delay=CSV), sweep_margin=MARGIN))
    coin = fed.peg_in(claim_script(5), 10_000_000)  # tweaked contract; emergency keys untweaked in it
    # A change coin too (untweaked fedpegscript), made by a payout.
    _, spk = receiver(rpc, "bech32")
    fed.peg_out([(1_000_000, spk)], "emergency")
    tx = build_payout(fed.ledger, fed.params, fed.rate(), forced_inputs=[coin])
    assert tx is not None
    fed.mine_and_confirm(fed.broadcast(fed.sign(tx, (0, 1, 2))))
    [change] = fed.ledger.utxos()
    assert change.claim_script is None
    coin2 = fed.peg_in(claim_script(6), 5_000_000)

    _, dest = receiver(rpc, "bech32")
    keys = [EMERGENCY_KEYS[2], EMERGENCY_KEYS[0]]

    def spend(c: FedUtxo) -> BtcTransaction:
        return emergency_spend([c], fed.peg, keys, [BtcTxOut(c.value - 5_000, dest)])

    spend2, spend_change = spend(coin2), spend(change)
    first_ok = None
    for _ in range(CSV + 1):
        try:
            rpc.sendrawtransaction(spend2.serialize().hex())
        except RpcVerifyRejected as e:
            assert e.reject_reason == "non-BIP68-final", e.message
            mine(rpc)
            continue
        first_ok = fed.tip()
        break
    # The mempool takes it for the next block, the first at coin2.height + CSV.
    assert first_ok == emergency_final_height(coin2, fed.peg) - 1
    # The change coin, older, was theirs to take too: it was due for a sweep long ago.
    assert change.confirmations(fed.tip()) >= CSV
    assert change in sweep_needed(fed.ledger, fed.tip(), fed.params)
    rpc.sendrawtransaction(spend_change.serialize().hex())
    [block] = mine(rpc)
    assert {spend2.txid_hex, spend_change.txid_hex} <= set(rpc.getblock(block)["tx"])
    # The ledger, told, shows the value gone with no peg-out or fee to explain it.
    fed.ledger.spent_elsewhere(coin2.outpoint, spend2.txid)
    fed.ledger.spent_elsewhere(change.outpoint, spend_change.txid)
    assert fed.ledger.reserves().unaccounted == coin2.value + change.value
    assert fed.ledger.reserves().balanced
    assert any("unaccounted" in p for p in fed.ledger.audit())

"""The watchmen's pure core (functionary.watchmen), in process: no mainchain.

* BIP143 digests equal python-bitcoinlib's and the regtest interpreter's; the
  estimated vsize bounds the signed one; combined witnesses pass the regtest
  interpreter's standard script checks (tweaked and untweaked coins).
* The ledger: deterministic bytes, round trips, refusals, reserves at every
  step, confirmed assignment of interchangeable peg-outs, unpayable peg-outs.
* check_payout: one test per rule, each provoked from a valid payout.
* The signer's rule: A signed, a disjoint B refused (also after a restart
  from the persisted state), a replacement A' accepted, persist before send.
* The leader's plan: new payout, wait, fee bump (BIP125 checked by
  check_payout), prefix when funds are short, sweep.
* Messages round-trip; garbage is refused.

Shared helpers (keys, peg, ledgers) are imported by test_watchmen_regtest.py.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import replace

import pytest
from bitcoin.core import CMutableTransaction, COutPoint, CTxIn, CTxOut
from bitcoin.core.script import SIGHASH_ALL, SIGVERSION_WITNESS_V0, CScript, SignatureHash
from coincurve import PrivateKey

from consensus.errors import ParseError
from consensus.hashes import hash160
from consensus.mainchain import REGTEST, BtcTransaction, BtcTxIn, BtcTxOut
from consensus.peg import PegParams
from consensus.serialize import ser_u32, ser_varbytes
from consensus.standard import pegout_script
from consensus.transaction import OutPoint, Transaction, TxIn, TxOut
from functionary.watchmen import errors as E
from functionary.watchmen.emergency import emergency_spend, sweep_needed
from functionary.watchmen.ledger import (
    BlockPegEvents,
    FedUtxo,
    Ledger,
    PayoutStatus,
    PegInClaimed,
    PegOutRequested,
    PegOutStatus,
    extract_block_events,
)
from functionary.watchmen.messages import (
    PayoutComplete,
    PayoutMessage,
    PayoutProposal,
    PayoutRefused,
    PayoutSignatures,
    parse_message,
)
from functionary.watchmen.params import WatchmenParams
from functionary.watchmen.payout import (
    PlanKind,
    build_payout,
    build_replacement,
    check_payout,
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
    sign_inputs,
)
from functionary.watchmen.txmath import (
    RBF_SEQUENCE,
    MainOutPoint,
    bip143_sighash,
    estimated_weight,
    multisig_witness_size,
    vsize,
)
from regtest.primitives import Transaction as RtTransaction
from regtest.script import STANDARD_FLAGS, ScriptError, TxChecker, segwit_v0_sighash, verify_script

# --- shared helpers ------------------------------------------------------------------------------

ASSET = bytes(32)
WATCHMAN_KEYS = [PrivateKey(bytes([0x40 + i]) * 32) for i in range(5)]
EMERGENCY_KEYS = [PrivateKey(bytes([0x60 + i]) * 32) for i in range(3)]
USER_KEYS = [PrivateKey(bytes([0x80 + i]) * 32) for i in range(8)]
M = 3


def pub(k: PrivateKey) -> bytes:
    return k.public_key.format()


def make_peg(csv_delay: int = 1000, m: int = M) -> PegParams:
    return PegParams(
        watchman_keys=tuple(pub(k) for k in WATCHMAN_KEYS),
        peg_threshold=m,
        emergency_keys=tuple(pub(k) for k in EMERGENCY_KEYS),
        emergency_threshold=2,
        csv_delay=csv_delay,
        pegin_min_depth=1,
        parent=REGTEST,
        policy_asset=ASSET,
        enforce_pak=False,
    )


def make_params(peg: PegParams | None = None, **kw: object) -> WatchmenParams:
    fields: dict[str, object] = dict(min_feerate=1, max_feerate=50, confirm_depth=1, bump_after=3)
    fields.update(kw)
    return WatchmenParams(peg or make_peg(), **fields)  # type: ignore[arg-type]


def claim_script(i: int) -> bytes:
    return b"\x00\x14" + hash160(pub(USER_KEYS[i % len(USER_KEYS)]))


def p2wpkh(i: int) -> bytes:
    return b"\x00\x14" + hashlib.new("ripemd160", hashlib.sha256(bytes([i]) * 33).digest()).digest()


def p2pkh(i: int) -> bytes:
    return b"\x76\xa9\x14" + hash160(bytes([i]) * 33) + b"\x88\xac"


def p2sh(i: int) -> bytes:
    return b"\xa9\x14" + hash160(bytes([i]) * 20) + b"\x87"


def fake_txid(tag: str) -> bytes:
    return hashlib.sha256(tag.encode()).digest()


def pegin_event(tag: str, value: int, claim: bytes, block: bytes = b"\xbb" * 32, vout: int = 0) -> PegInClaimed:
    return PegInClaimed(MainOutPoint(fake_txid(tag), vout), value, claim, block)


def pegout_event(tag: str, amount: int, destination: bytes, vout: int = 0) -> PegOutRequested:
    return PegOutRequested(OutPoint(fake_txid(tag), vout), amount, destination)


def sidechain_pegout_tx(pegouts: Sequence[tuple[int, bytes]], tag: str = "src") -> Transaction:
    """A sidechain transaction with peg-out outputs (not validated here: the
    ledger reads committed blocks)."""
    outs = tuple(TxOut.explicit(ASSET, amount, pegout_script(REGTEST.genesis_hash, dest)) for amount, dest in pegouts)
    return Transaction(2, (TxIn(OutPoint(fake_txid(tag), 0)),), (*outs, TxOut.explicit(ASSET, 500, b"")))


def funded_ledger(
    params: WatchmenParams, coins: Sequence[int], pegouts: Sequence[tuple[int, bytes]], height: int = 100
) -> Ledger:
    """A ledger at sidechain height 2: peg-ins of ``coins`` (mainchain height
    ``height``, claim scripts 0, 1, ...) in block 1, ``pegouts`` in block 2."""
    ledger = Ledger(params)
    pegins = tuple(pegin_event(f"in{i}", v, claim_script(i)) for i, v in enumerate(coins))
    ledger.apply_block(1, BlockPegEvents(pegins=pegins), {b"\xbb" * 32: height})
    outs = tuple(pegout_event(f"out{i}", a, d) for i, (a, d) in enumerate(pegouts))
    ledger.apply_block(2, BlockPegEvents(pegouts=outs), {})
    return ledger


def sign_all(tx: BtcTransaction, ledger: Ledger, peg: PegParams, signers: Sequence[int] = (0, 1, 2)) -> BtcTransaction:
    coins = coins_of(ledger, tx)
    sigs = {i: sign_inputs(WATCHMAN_KEYS[i], tx, coins, peg) for i in signers}
    return combine(tx, coins, peg, sigs)


def verify_with_interpreter(signed: BtcTransaction, coins: Sequence[FedUtxo], peg: PegParams) -> None:
    """Every input against the regtest interpreter with Core's standard flags."""
    rt = RtTransaction.from_bytes(signed.serialize())
    for i, c in enumerate(coins):
        verify_script(b"", c.script_pubkey(peg), rt.vin[i].witness, STANDARD_FLAGS, TxChecker(rt, i, c.value))


def with_outputs(tx: BtcTransaction, outputs: Sequence[BtcTxOut]) -> BtcTransaction:
    return BtcTransaction(tx.version, tx.inputs, tuple(outputs), tx.locktime)


BTC = 100_000_000
PEGOUTS = [(20_000_000, p2pkh(1)), (15_000_000, p2sh(2)), (10_000_000, p2wpkh(3))]


@pytest.fixture
def params() -> WatchmenParams:
    return make_params()


@pytest.fixture
def ledger(params: WatchmenParams) -> Ledger:
    return funded_ledger(params, [BTC, BTC // 2, BTC // 4], PEGOUTS)


# --- BIP143, sizes, script validity -------------------------------------------------------------


def test_bip143_matches_python_bitcoinlib_and_regtest() -> None:
    script = make_peg().pegin_contract(claim_script(0))
    tx = BtcTransaction(
        2,
        (BtcTxIn(fake_txid("a"), 3, b"", RBF_SEQUENCE), BtcTxIn(fake_txid("b"), 0, b"", 7)),
        (BtcTxOut(12345, p2pkh(1)), BtcTxOut(999, p2wpkh(2))),
        17,
    )
    ours = bip143_sighash(tx, 1, script, 5_000_000)
    ctx = CMutableTransaction(
        [CTxIn(COutPoint(i.prev_txid, i.prev_index), nSequence=i.sequence) for i in tx.inputs],
        [CTxOut(o.value, CScript(o.script_pubkey)) for o in tx.outputs],
        nLockTime=17,
        nVersion=2,
    )
    theirs = SignatureHash(CScript(script), ctx, 1, SIGHASH_ALL, amount=5_000_000, sigversion=SIGVERSION_WITNESS_V0)
    assert ours == theirs
    rt = RtTransaction.from_bytes(tx.serialize())
    assert ours == segwit_v0_sighash(rt, 1, script, 5_000_000, SIGHASH_ALL)
    assert ours != bip143_sighash(tx, 1, script, 5_000_001)


def test_signed_payout_passes_the_interpreter_and_fits_the_estimate(ledger: Ledger, params: WatchmenParams) -> None:
    peg = params.peg
    # Spend a tweaked peg-in coin and an untweaked change coin together.
    ledger.confirm_payout(
        BtcTransaction(
            2,
            (BtcTxIn(fake_txid("in2"), 0, b"", RBF_SEQUENCE),),
            (BtcTxOut(BTC // 4 - 5_000, peg.fedpeg_program),),
        ),
        101,
    )
    change = [c for c in ledger.utxos() if c.claim_script is None]
    tx = build_payout(ledger, params, 2_000, forced_inputs=change)
    assert tx is not None
    coins = coins_of(ledger, tx)
    assert [c.claim_script is None for c in coins] == [True, False]
    signed = sign_all(tx, ledger, peg, signers=(4, 1, 3))
    verify_with_interpreter(signed, coins, peg)
    # Signatures sit in key order (1, 3, 4) whatever order they were given in.
    assert [len(w) for w in signed.witnesses] == [M + 2] * len(coins)
    assert signed.witnesses[0][0] == b""
    assert signed.witnesses[0][-1] == coins[0].witness_script(peg)
    estimate = ledger.estimated_vsize(tx)
    assert vsize(signed) <= estimate <= vsize(signed) + len(coins) * M  # each signature at most 1 byte short
    # A signature by the wrong watchman in a slot fails CHECKMULTISIG.
    bad = list(signed.witnesses[0])
    bad[1], bad[2] = bad[2], bad[1]
    swapped = BtcTransaction(signed.version, signed.inputs, signed.outputs, 0, (tuple(bad), *signed.witnesses[1:]))
    with pytest.raises(ScriptError, match="Signature must be zero"):  # NULLFAIL
        verify_with_interpreter(swapped, coins, peg)


def test_multisig_witness_size_counts_every_byte() -> None:
    script = b"\x51" * 300
    stack = [b"", b"\x30" * 72, b"\x30" * 72, script]
    expected = 1 + 1 + 2 * 73 + 3 + 300  # count, dummy, sigs, varint(300) + script
    assert multisig_witness_size(2, script) == expected
    tx = BtcTransaction(2, (BtcTxIn(fake_txid("x"), 0),), (BtcTxOut(1, p2wpkh(1)),), 0, (tuple(stack),))
    assert estimated_weight(tx, [expected]) == 4 * len(tx.serialize_without_witness()) + 2 + expected
    assert vsize(tx) == (estimated_weight(tx, [expected]) + 3) // 4


# --- the ledger ------------------------------------------------------------------------------------


def test_ledger_bytes_are_deterministic_and_round_trip(params: WatchmenParams) -> None:
    a = funded_ledger(params, [BTC, 3 * BTC], PEGOUTS)
    b = funded_ledger(params, [BTC, 3 * BTC], PEGOUTS)
    assert a.serialize() == b.serialize()
    tx = build_payout(a, params, 1_000)
    assert tx is not None
    a.record_payout(tx, 500)
    b.record_payout(tx, 500)
    assert a.serialize() == b.serialize()
    again = Ledger.parse(a.serialize(), params)
    assert again.serialize() == a.serialize()
    a.confirm_payout(tx, 501)
    assert a.serialize() != b.serialize()
    back = Ledger.parse(a.serialize(), params)
    assert back.serialize() == a.serialize()
    assert back.reserves() == a.reserves()
    data = a.serialize()
    with pytest.raises(ParseError):
        Ledger.parse(data[:-1], params)
    with pytest.raises(ParseError):
        Ledger.parse(data + b"\x00", params)
    with pytest.raises(ParseError, match="another fedpegscript"):
        Ledger.parse(data, make_params(make_peg(csv_delay=999)))


def test_ledger_refuses_out_of_order_and_duplicate_events(params: WatchmenParams) -> None:
    ledger = funded_ledger(params, [BTC], PEGOUTS)
    before = ledger.serialize()
    with pytest.raises(E.LedgerError, match="not after"):
        ledger.apply_block(2, BlockPegEvents(), {})
    with pytest.raises(E.LedgerError, match="already claimed"):
        ledger.apply_block(3, BlockPegEvents(pegins=(pegin_event("in0", BTC, claim_script(0)),)), {b"\xbb" * 32: 1})
    with pytest.raises(E.LedgerError, match="recorded twice"):
        ledger.apply_block(3, BlockPegEvents(pegouts=(pegout_event("out0", 1, p2pkh(1)),)), {})
    with pytest.raises(E.LedgerError, match="no mainchain height"):
        ledger.apply_block(3, BlockPegEvents(pegins=(pegin_event("new", BTC, claim_script(1)),)), {})
    foreign = BtcTransaction(2, (BtcTxIn(fake_txid("nope"), 0),), (BtcTxOut(1, p2pkh(1)),))
    with pytest.raises(E.LedgerError, match="not a federation coin"):
        ledger.confirm_payout(foreign, 200)
    with pytest.raises(E.LedgerError, match="not a federation coin"):
        ledger.record_payout(foreign, 200)
    assert ledger.serialize() == before  # refusals change nothing


def test_extract_block_events_reads_pegouts_and_skips_other_chains(params: WatchmenParams) -> None:
    tx = sidechain_pegout_tx([(30_000, p2pkh(1)), (40_000, p2wpkh(2))])
    other = Transaction(
        2,
        (TxIn(OutPoint(fake_txid("o"), 0)),),
        (TxOut.explicit(ASSET, 50_000, pegout_script(b"\x11" * 32, p2pkh(3))),),
    )
    events = extract_block_events([tx, other], params.peg)
    assert events.pegins == ()
    assert [(o.id, o.amount, o.destination) for o in events.pegouts] == [
        (OutPoint(tx.txid, 0), 30_000, p2pkh(1)),
        (OutPoint(tx.txid, 1), 40_000, p2wpkh(2)),
    ]


def test_reserves_balance_at_every_step(ledger: Ledger, params: WatchmenParams) -> None:
    def check() -> None:
        assert ledger.audit() == []
        r = ledger.reserves()
        assert r.utxo_sum == r.pegged_in - r.paid_out - r.fees - r.unaccounted
        assert r.sidechain_supply == r.pegged_in - r.burned

    check()
    r0 = ledger.reserves()
    assert (r0.pegged_in, r0.burned, r0.paid_out, r0.owed) == (BTC + BTC // 2 + BTC // 4, 45_000_000, 0, 45_000_000)
    tx = build_payout(ledger, params, 3_000)
    assert tx is not None
    ledger.record_payout(tx, 100)
    check()
    assert [ledger.pegout_state(e.id).status for e in ledger.pegouts()] == [PegOutStatus.IN_PAYOUT] * 3
    assert ledger.payable_pegouts() == []
    ledger.confirm_payout(tx, 101)
    check()
    r1 = ledger.reserves()
    assert r1.paid_out == 45_000_000 and r1.owed == 0 and r1.fees > 0
    assert r1.utxo_sum == r0.utxo_sum - 45_000_000 - r1.fees
    assert [ledger.pegout_state(e.id).status for e in ledger.pegouts()] == [PegOutStatus.PAID] * 3
    # A coin spent by something that is no payout shows as unaccounted.
    victim = ledger.utxos()[0]
    ledger.spent_elsewhere(victim.outpoint, fake_txid("thief"))
    assert ledger.reserves().unaccounted == victim.value
    assert ledger.reserves().balanced
    assert any("unaccounted" in p for p in ledger.audit())


def test_unpayable_pegouts_are_burned_not_owed(params: WatchmenParams) -> None:
    own = params.peg.fedpeg_program
    outs = [(9_999, p2pkh(1)), (20_000, b"\x6a\x01\x01"), (30_000, own), (50_000, p2wpkh(2))]
    ledger = funded_ledger(params, [BTC], outs)
    states = [ledger.pegout_state(e.id).status for e in ledger.pegouts()]
    assert states == [PegOutStatus.UNPAYABLE] * 3 + [PegOutStatus.PENDING]
    r = ledger.reserves()
    assert (r.burned, r.burned_unpayable, r.owed) == (109_999, 59_999, 50_000)
    tx = build_payout(ledger, params, 1_000)
    assert tx is not None and check_payout(ledger, tx, params).amount_paid == 50_000
    assert [e.amount for e in ledger.payable_pegouts()] == [50_000]


def test_interchangeable_pegouts_are_assigned_oldest_first_on_confirmation(params: WatchmenParams) -> None:
    same = (25_000_000, p2wpkh(7))
    ledger = funded_ledger(params, [BTC], [same, same])
    first, second = ledger.pegouts()
    tx = build_payout(ledger, params, 1_000, pegouts=[second])  # the leader named the newer one
    assert tx is not None
    # Another member that never saw the payout in flight confirms it the same way.
    other = Ledger.parse(ledger.serialize(), params)
    ledger.record_payout(tx, 100)
    ledger.confirm_payout(tx, 101)
    other.confirm_payout(tx, 101)
    assert ledger.pegout_state(first.id).status is PegOutStatus.PAID
    assert ledger.pegout_state(second.id).status is PegOutStatus.PENDING
    assert other.serialize() == ledger.serialize()
    assert [e.id for e in other.pegouts() if e.paid_by] == [first.id]


# --- check_payout: every rule --------------------------------------------------------------------------


def valid_payout(ledger: Ledger, params: WatchmenParams, rate: int = 2_000) -> BtcTransaction:
    tx = build_payout(ledger, params, rate)
    assert tx is not None
    check = check_payout(ledger, tx, params)
    assert [e.amount for _, e in check.pegouts] == [a for a, _ in PEGOUTS]
    assert check.change is not None and check.fee == ledger.estimated_vsize(tx) * rate // 1000
    return tx


def change_index(tx: BtcTransaction, params: WatchmenParams) -> int:
    return next(i for i, o in enumerate(tx.outputs) if o.script_pubkey == params.peg.fedpeg_program)


def adjust(
    tx: BtcTransaction, params: WatchmenParams, delta_change: int, extra: Sequence[BtcTxOut] = ()
) -> BtcTransaction:
    outs = list(tx.outputs)
    ci = change_index(tx, params)
    outs[ci] = BtcTxOut(outs[ci].value + delta_change, outs[ci].script_pubkey)
    return with_outputs(tx, [*outs[:ci], *extra, *outs[ci:]])


def test_check_accepts_the_built_payout(ledger: Ledger, params: WatchmenParams) -> None:
    valid_payout(ledger, params)


def test_check_refuses_an_output_to_an_unknown_script(ledger: Ledger, params: WatchmenParams) -> None:
    tx = valid_payout(ledger, params)
    bad = adjust(tx, params, -50_000, [BtcTxOut(50_000, p2wpkh(99))])
    with pytest.raises(E.UnknownOutput, match="no unpaid payable peg-out"):
        check_payout(ledger, bad, params)


def test_check_refuses_a_pegout_paid_twice_in_one_payout(ledger: Ledger, params: WatchmenParams) -> None:
    tx = valid_payout(ledger, params)
    bad = adjust(tx, params, -PEGOUTS[2][0], [BtcTxOut(*PEGOUTS[2])])
    with pytest.raises(E.DuplicatePegOut):
        check_payout(ledger, bad, params)


def test_check_refuses_a_pegout_already_paid(ledger: Ledger, params: WatchmenParams) -> None:
    tx = valid_payout(ledger, params)
    ledger.record_payout(tx, 100)
    ledger.confirm_payout(tx, 101)
    again = build_payout(ledger, params, 2_000, pegouts=[ledger.pegouts()[0]])
    assert again is not None
    with pytest.raises(E.PegOutAlreadyPaid, match="confirmed payout paid"):
        check_payout(ledger, again, params)


def test_check_refuses_a_pegout_in_flight_in_a_payout_it_does_not_conflict_with(
    ledger: Ledger, params: WatchmenParams
) -> None:
    tx = valid_payout(ledger, params)
    ledger.record_payout(tx, 100)
    # Same peg-outs from the coins tx does not spend: both could confirm.
    disjoint = build_payout(ledger, params, 2_000, pegouts=ledger.pegouts()[:1])
    assert disjoint is not None
    assert not {MainOutPoint.of(i) for i in disjoint.inputs} & {MainOutPoint.of(i) for i in tx.inputs}
    with pytest.raises(E.PegOutAlreadyPaid, match="live payout"):
        check_payout(ledger, disjoint, params)


def test_check_refuses_an_amount_off_by_one_sat(ledger: Ledger, params: WatchmenParams) -> None:
    tx = valid_payout(ledger, params)
    outs = list(tx.outputs)
    outs[1] = BtcTxOut(outs[1].value - 1, outs[1].script_pubkey)
    ci = change_index(tx, params)
    outs[ci] = BtcTxOut(outs[ci].value + 1, outs[ci].script_pubkey)
    with pytest.raises(E.WrongAmount):
        check_payout(ledger, with_outputs(tx, outs), params)
    outs[1] = BtcTxOut(outs[1].value + 2, outs[1].script_pubkey)
    outs[ci] = BtcTxOut(outs[ci].value - 2, outs[ci].script_pubkey)
    with pytest.raises(E.WrongAmount):
        check_payout(ledger, with_outputs(tx, outs), params)


def test_check_refuses_fees_outside_the_bounds(ledger: Ledger, params: WatchmenParams) -> None:
    tx = valid_payout(ledger, params, rate=params.max_rate_kvb)
    check_payout(ledger, tx, params)  # exactly at the maximum is fine
    with pytest.raises(E.FeeTooHigh):
        check_payout(ledger, adjust(tx, params, -1), params)
    low = valid_payout(ledger, params, rate=params.min_rate_kvb)
    with pytest.raises(E.FeeTooLow):
        check_payout(ledger, adjust(low, params, +1), params)
    with pytest.raises(E.OutputsExceedInputs):
        check_payout(ledger, adjust(low, params, +10 * BTC), params)


def test_check_refuses_a_non_federation_input(ledger: Ledger, params: WatchmenParams) -> None:
    tx = valid_payout(ledger, params)
    foreign = BtcTransaction(2, (*tx.inputs, BtcTxIn(fake_txid("alien"), 0, b"", RBF_SEQUENCE)), tx.outputs)
    with pytest.raises(E.NotFederationInput, match="not a federation coin"):
        check_payout(ledger, foreign, params)


def test_check_refuses_a_pegout_not_yet_final() -> None:
    params = make_params(pegout_min_depth=2)
    ledger = funded_ledger(params, [BTC], PEGOUTS)  # peg-outs in block 2, the tip: depth 1
    assert ledger.payable_pegouts() == []
    tx = build_payout(ledger, params, 2_000, pegouts=ledger.pegouts())
    assert tx is not None
    with pytest.raises(E.PegOutNotFinal):
        check_payout(ledger, tx, params)
    ledger.apply_block(3, BlockPegEvents(), {})
    assert check_payout(ledger, tx, params).amount_paid == 45_000_000


def test_check_refuses_malformed_payouts(ledger: Ledger, params: WatchmenParams) -> None:
    tx = valid_payout(ledger, params)
    cases = {
        "version": BtcTransaction(1, tx.inputs, tx.outputs),
        "locktime": BtcTransaction(2, tx.inputs, tx.outputs, 5),
        "sequence": BtcTransaction(2, (replace(tx.inputs[0], sequence=0xFFFFFFFF),), tx.outputs),
        "scriptSig": BtcTransaction(2, (replace(tx.inputs[0], script_sig=b"\x51"),), tx.outputs),
        "spent twice": BtcTransaction(2, (tx.inputs[0], tx.inputs[0]), tx.outputs),
        "change outputs": adjust(tx, params, -20_000, [BtcTxOut(20_000, params.peg.fedpeg_program)]),
        "no inputs": BtcTransaction(2, (), tx.outputs),
    }
    for what, bad in cases.items():
        with pytest.raises(E.MalformedPayout, match=what):
            check_payout(ledger, bad, params)


def test_check_refuses_dust_change(ledger: Ledger, params: WatchmenParams) -> None:
    tx = valid_payout(ledger, params)
    ci = change_index(tx, params)
    change = tx.outputs[ci].value
    outs = list(tx.outputs)
    outs[ci] = BtcTxOut(params.min_change - 1, params.peg.fedpeg_program)
    outs.append(BtcTxOut(change - params.min_change + 1, p2wpkh(55)))
    with pytest.raises(E.DustChange):
        check_payout(ledger, with_outputs(tx, outs), params)


def test_check_refuses_a_replacement_bip125_would_refuse(ledger: Ledger, params: WatchmenParams) -> None:
    tx = valid_payout(ledger, params, rate=3_000)
    ledger.record_payout(tx, 100)
    same_rate = adjust(tx, params, -1)  # conflicts (same inputs), one sat more: below the increment
    with pytest.raises(E.ReplacementFeeTooLow):
        check_payout(ledger, same_rate, params)
    record = ledger.payout(tx.txid)
    assert record is not None
    bumped = build_replacement(ledger, params, record, 3_000)
    check = check_payout(ledger, bumped, params)
    assert check.replaces == {tx.txid} and check.fee > record.fee


# --- signing and the signer's rule ------------------------------------------------------------------


def test_combine_skips_bad_signatures_and_needs_m(ledger: Ledger, params: WatchmenParams) -> None:
    peg = params.peg
    tx = valid_payout(ledger, params)
    coins = coins_of(ledger, tx)
    sigs = {i: sign_inputs(WATCHMAN_KEYS[i], tx, coins, peg) for i in range(5)}
    sigs[0] = sign_inputs(WATCHMAN_KEYS[1], tx, coins, peg)  # watchman 0 sends 1's signatures
    signed = combine(tx, coins, peg, sigs)
    verify_with_interpreter(signed, coins, peg)
    assert signed.witnesses[0][1:4] == tuple(sigs[i][0] for i in (1, 2, 3))
    with pytest.raises(E.NotEnoughSignatures, match="2 valid"):
        combine(tx, coins, peg, {0: sigs[0], 1: sigs[1], 4: sigs[4]})


def test_a_watchman_never_signs_two_live_disjoint_payouts(ledger: Ledger, params: WatchmenParams) -> None:
    store: dict[str, bytes] = {}
    w = Watchman(1, WATCHMAN_KEYS[1], params)
    a = valid_payout(ledger, params)
    _, effects = w.on_proposal(ledger, a, 100)
    assert [type(e) for e in effects] == [PersistSignerState, SendSignatures]
    persist, send = effects
    assert isinstance(persist, PersistSignerState) and isinstance(send, SendSignatures)
    store["signer"] = persist.state.serialize()
    assert [p.txid for p in persist.state.signed] == [a.txid]

    # A restart: only the persisted state survives.
    w = Watchman(1, WATCHMAN_KEYS[1], params, SignerState.parse(store["signer"]))
    other = ledger.clone()
    other.record_payout(a, 100)  # only so the builder avoids a's coins; the signer's ledger never saw a
    b = build_payout(other, params, 2_000, pegouts=ledger.pegouts())
    assert b is not None and not {MainOutPoint.of(i) for i in b.inputs} & {MainOutPoint.of(i) for i in a.inputs}
    check_payout(ledger, b, params)  # b is a fine payout on its own
    with pytest.raises(E.ConflictsWithSignedPayout) as info:
        w.on_proposal(ledger, b, 101)
    assert [BtcTransaction.parse(t).txid for t in info.value.earlier] == [a.txid]

    # Signing a again gives the same signatures (RFC 6979), and changes nothing.
    _, again = w.on_proposal(ledger, a, 102)
    assert isinstance(again[1], SendSignatures) and again[1].signatures == send.signatures

    # A replacement that shares an input with a is fine.
    ledger.record_payout(a, 100)
    record = ledger.payout(a.txid)
    assert record is not None
    a2 = build_replacement(ledger, params, record, 2_000)
    _, effects = w.on_proposal(ledger, a2, 103)
    assert isinstance(effects[0], PersistSignerState)
    assert [p.txid for p in effects[0].state.signed] == [a.txid, a2.txid]

    # a2 confirms: a is dead, a2 confirmed; the watchman is free again.
    ledger.confirm_payout(a2, 104)
    assert ledger.payout(a.txid).status is PayoutStatus.DEAD  # type: ignore[union-attr]
    assert ledger.payout(a.txid).replaced_by == a2.txid  # type: ignore[union-attr]
    assert w.live(ledger) == []
    assert [ledger.pegout_state(e.id).txids for e in ledger.pegouts()] == [(a2.txid,)] * 3
    assert ledger.reserves().paid_out == 45_000_000
    # A member that only ever saw a2 confirm agrees on everything but what it never saw.
    bystander = funded_ledger(params, [BTC, BTC // 2, BTC // 4], PEGOUTS)
    bystander.confirm_payout(a2, 104)
    assert bystander.serialize() != ledger.serialize()
    assert bystander.shared_digest() == ledger.shared_digest()
    assert Ledger.parse(ledger.serialize(local=False), params).shared_digest() == ledger.shared_digest()


def test_plan_rules_out_payouts_a_watchman_refused_for(params: WatchmenParams) -> None:
    ledger = funded_ledger(params, [BTC, BTC, BTC], PEGOUTS)
    w = Watchman(4, WATCHMAN_KEYS[4], params)
    # w signed b, from the newest coin; b never gathered m signatures and nobody recorded it.
    newest = ledger.utxos()[-1]
    b = build_payout(ledger, params, 2_000, forced_inputs=[newest])
    assert b is not None and [MainOutPoint.of(i) for i in b.inputs] == [newest.outpoint]
    w.on_proposal(ledger, b, 100)
    plain = plan_payout(ledger, params, mainchain_height=101, rate=2_000)
    assert plain is not None
    with pytest.raises(E.ConflictsWithSignedPayout) as info:
        w.on_proposal(ledger, plain.tx, 101)
    earlier = [BtcTransaction.parse(t) for t in info.value.earlier]
    plan = plan_payout(ledger, params, mainchain_height=101, rate=2_000, must_conflict=earlier)
    assert plan is not None and newest.outpoint in {MainOutPoint.of(i) for i in plan.tx.inputs}
    w.on_proposal(ledger, plan.tx, 101)
    ledger.record_payout(plan.tx, 101)
    ledger.confirm_payout(plan.tx, 102)
    assert ledger.is_settled(b) and w.live(ledger) == []


def test_watchman_refuses_a_key_that_is_not_its_own(params: WatchmenParams) -> None:
    with pytest.raises(ValueError):
        Watchman(0, WATCHMAN_KEYS[1], params)


# --- the leader's plan -----------------------------------------------------------------------------


def test_plan_pays_then_waits_then_bumps(ledger: Ledger, params: WatchmenParams) -> None:
    plan = plan_payout(ledger, params, mainchain_height=200, rate=1_000)
    assert plan is not None and plan.kind is PlanKind.PAYOUT
    rec = ledger.record_payout(plan.tx, 200)
    assert plan_payout(ledger, params, mainchain_height=200 + params.bump_after - 1, rate=1_000) is None
    assert plan_payout(ledger, params, mainchain_height=300, rate=1_000, mined={rec.txid}) is None
    bump = plan_payout(ledger, params, mainchain_height=200 + params.bump_after, rate=1_000)
    assert bump is not None and bump.kind is PlanKind.REPLACEMENT and bump.replaces == rec.txid
    check = check_payout(ledger, bump.tx, params)
    assert check.feerate >= rec.feerate * params.bump_percent // 100
    paid = [o for o in bump.tx.outputs if o.script_pubkey != params.peg.fedpeg_program]
    assert paid == [o for o in plan.tx.outputs if o.script_pubkey != params.peg.fedpeg_program]
    assert {MainOutPoint.of(i) for i in plan.tx.inputs} <= {MainOutPoint.of(i) for i in bump.tx.inputs}


def test_bump_stops_at_the_maximum_rate(ledger: Ledger, params: WatchmenParams) -> None:
    tx = valid_payout(ledger, params, rate=params.max_rate_kvb)
    rec = ledger.record_payout(tx, 100)
    with pytest.raises(E.BumpNotPossible):
        build_replacement(ledger, params, rec, params.max_rate_kvb)


def test_short_funds_pay_the_oldest_prefix(params: WatchmenParams) -> None:
    ledger = funded_ledger(params, [30_000_000], PEGOUTS)  # 0.3 BTC: 0.2 and 0.15 do not both fit
    tx = build_payout(ledger, params, 1_000)
    assert tx is not None
    check = check_payout(ledger, tx, params)
    assert [e.amount for _, e in check.pegouts] == [20_000_000]
    empty = funded_ledger(params, [1_000_000], PEGOUTS)
    assert build_payout(empty, params, 1_000) is None


def test_plan_sweeps_old_coins_and_folds_them_into_payouts() -> None:
    params = make_params(make_peg(csv_delay=100), sweep_margin=10)
    ledger = funded_ledger(params, [BTC, BTC], [], height=100)
    ledger.apply_block(3, BlockPegEvents(pegins=(pegin_event("young", BTC, claim_script(5)),)), {b"\xbb" * 32: 150})
    assert sweep_needed(ledger, 188, params) == []  # 89 confirmations
    due = sweep_needed(ledger, 189, params)  # 90 = csv_delay - margin
    assert [c.outpoint.txid for c in due] == [fake_txid("in0"), fake_txid("in1")]
    plan = plan_payout(ledger, params, mainchain_height=189, rate=1_000)
    assert plan is not None and plan.kind is PlanKind.SWEEP
    check = check_payout(ledger, plan.tx, params)
    assert {c.outpoint for c in check.inputs} == {c.outpoint for c in due} and check.pegouts == ()
    # With a peg-out waiting, the due coins go into the payout itself.
    ledger.apply_block(4, BlockPegEvents(pegouts=(pegout_event("p", 10_000_000, p2wpkh(1)),)), {})
    plan = plan_payout(ledger, params, mainchain_height=189, rate=1_000)
    assert plan is not None and plan.kind is PlanKind.PAYOUT
    assert {MainOutPoint.of(i) for i in plan.tx.inputs} >= {c.outpoint for c in due}


def test_emergency_spend_shape() -> None:
    peg = make_peg(csv_delay=144)
    coin = FedUtxo(MainOutPoint(fake_txid("c"), 1), 50_000, claim_script(1), 10)
    tx = emergency_spend([coin], peg, [EMERGENCY_KEYS[2], EMERGENCY_KEYS[0]], [BtcTxOut(40_000, p2wpkh(1))])
    assert tx.version == 2 and tx.inputs[0].sequence == 144
    assert len(tx.witnesses[0]) == 4 and tx.witnesses[0][-1] == coin.witness_script(peg)
    # Not the watchmen branch: k + 1 = 3 items before the script, and m + 1 = 4 would select it.
    with pytest.raises(ValueError):
        emergency_spend([coin], peg, [EMERGENCY_KEYS[0]], [BtcTxOut(40_000, p2wpkh(1))])
    with pytest.raises(ValueError):
        emergency_spend([coin], peg, [WATCHMAN_KEYS[0], EMERGENCY_KEYS[0]], [BtcTxOut(40_000, p2wpkh(1))])


def test_feerate_from_estimate_clamps(params: WatchmenParams) -> None:
    from decimal import Decimal

    assert feerate_from_estimate({"feerate": Decimal("0.00002345")}, params) == 2_345
    assert feerate_from_estimate({"feerate": Decimal("0.000000001")}, params) == params.min_rate_kvb
    assert feerate_from_estimate({"feerate": Decimal("0.01")}, params) == params.max_rate_kvb
    assert feerate_from_estimate({"errors": ["no data"]}, params) == params.min_rate_kvb
    assert feerate_from_estimate({}, make_params(fallback_feerate=7)) == 7_000


# --- messages --------------------------------------------------------------------------------------


def test_messages_round_trip_and_refuse_garbage(ledger: Ledger, params: WatchmenParams) -> None:
    tx = valid_payout(ledger, params)
    signed = sign_all(tx, ledger, params.peg)
    sigs = sign_inputs(WATCHMAN_KEYS[0], tx, coins_of(ledger, tx), params.peg)
    msgs: list[PayoutMessage] = [
        PayoutProposal(3, 40, tx),
        PayoutSignatures(0, tx.txid, sigs),
        PayoutRefused(2, tx.txid, "ConflictsWithSignedPayout", (tx.serialize(), signed.serialize())),
        PayoutRefused(4, tx.txid, "FeeTooHigh"),
        PayoutComplete(signed),
    ]
    for m in msgs:
        assert parse_message(m.serialize()) == m
    with_witness = b"\x50" + ser_u32(3) + ser_u32(40) + ser_varbytes(signed.serialize())
    for bad in (b"", b"\x99", with_witness, msgs[0].serialize() + b"\x00", msgs[1].serialize()[:-1]):
        with pytest.raises(ParseError):
            parse_message(bad)

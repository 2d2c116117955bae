"""Payouts: building one mainchain transaction that pays the final, unpaid
peg-outs, and the check every watchman runs before it signs one.

A payout (version 2, nLockTime 0, every input nSequence 0xFFFFFFFD):

    inputs    federation coins: forced ones first (coins due for a sweep, or the
              inputs of the payout being replaced), then the oldest others
              (height, then outpoint), until the outputs and the fee are covered
    outputs   one per peg-out, in sidechain order, its full amount to its
              destination; then change to the untweaked fedpegscript's P2WSH,
              unless it would be below min_change, which is folded into the fee
    fee       ⌈rate · vsize / 1000⌉ over the estimated signed vsize (txmath), rate
              from estimatesmartfee clamped to [min_feerate, max_feerate]

Given the same ledger and rate, every member builds the same bytes.

:func:`check_payout`'s rules, in order:

    rule                                                      error
    version 2, locktime 0, sequences 0xFFFFFFFD, no scriptSig,
    1..max_inputs distinct inputs, outputs, at most one change,
    at most max_pegouts peg-outs, weight <= 400,000            MalformedPayout
    every input is a federation coin                          NotFederationInput
    every other output pays a final unpaid peg-out:
      its destination, but no peg-out of that amount          WrongAmount
      the same peg-out a second time in this payout           DuplicatePegOut
      a peg-out a live payout pays that this one does not     PegOutAlreadyPaid
      conflict with, or one a confirmed payout paid
      a peg-out not yet pegout_min_depth deep                 PegOutNotFinal
      anything else (unknown, or an unpayable peg-out)        UnknownOutput
    change >= min_change                                      DustChange
    outputs <= inputs                                         OutputsExceedInputs
    fee >= min_feerate · vsize                                FeeTooLow
    fee <= max_feerate · vsize (without change: at most the   FeeTooHigh
      change output's fee plus min_change − 1 more)
    against the live payouts it conflicts with (BIP125): fee  ReplacementFeeTooLow
      >= the highest of their fees + incremental · vsize, and
      a higher rate than each

Who leads: at every sidechain height h with h % K == 0 the block proposer of
h runs :func:`plan_payout`, which returns a new payout, a fee-bumping
replacement of the live one (same peg-outs, its inputs plus any due for a
sweep, higher fee) once it has waited ``bump_after`` mainchain blocks, a
sweep, or nothing.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from typing import Any

from consensus.hashes import hash_to_hex
from consensus.mainchain import BtcTransaction, BtcTxIn, BtcTxOut

from .errors import (
    BumpNotPossible,
    DuplicatePegOut,
    DustChange,
    FeeTooHigh,
    FeeTooLow,
    MalformedPayout,
    NotFederationInput,
    OutputsExceedInputs,
    PegOutAlreadyPaid,
    PegOutNotFinal,
    ReplacementFeeTooLow,
    UnknownOutput,
    WrongAmount,
)
from .ledger import FedUtxo, Ledger, PayoutRecord, PegOutEntry
from .params import WatchmenParams
from .txmath import (
    MAX_STANDARD_TX_WEIGHT,
    PAYOUT_VERSION,
    RBF_SEQUENCE,
    MainOutPoint,
    estimated_weight,
    fee_for,
    strip_witness,
    vsize_of_weight,
)

CHANGE_OUTPUT_VSIZE = 43
"""value (8) + script length (1) + P2WSH script (34)."""
_COIN = Decimal(100_000_000)


# --- fee rate --------------------------------------------------------------------------------


def feerate_from_estimate(estimate: Mapping[str, Any] | None, params: WatchmenParams) -> int:
    """sat/kvB from an ``estimatesmartfee`` result (``feerate`` in BTC/kvB),
    clamped to the configured bounds; the fallback rate when the node has no
    estimate (a fresh regtest chain, a node just started)."""
    raw = None if estimate is None else estimate.get("feerate")
    if raw is None:
        fb = params.fallback_feerate if params.fallback_feerate is not None else params.min_feerate
        return fb * 1000
    rate = int((Decimal(str(raw)) * _COIN).to_integral_value(ROUND_CEILING))
    return max(params.min_rate_kvb, min(params.max_rate_kvb, rate))


# --- schedule --------------------------------------------------------------------------------


def payout_due(sidechain_height: int, params: WatchmenParams) -> bool:
    """Whether ``sidechain_height`` is a payout round (every K-th block)."""
    return sidechain_height > 0 and sidechain_height % params.payout_interval == 0


def payout_leader(sidechain_height: int, n_members: int, round_: int = 0) -> int:
    """The round-robin proposer of that height (``consensus.roundrobin``:
    (h + r) mod n). The node should pass the round the block was committed
    in, or use the committed block's actual proposer."""
    return (sidechain_height + round_) % n_members


# --- check ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PayoutCheck:
    """What a payout does, once :func:`check_payout` accepted it."""

    tx: BtcTransaction
    """Without witness."""
    inputs: tuple[FedUtxo, ...]
    pegouts: tuple[tuple[int, PegOutEntry], ...]
    """(output index, peg-out) for each peg-out paid."""
    change: tuple[int, int] | None
    """(output index, value)."""
    fee: int
    vsize: int
    replaces: frozenset[bytes]
    """Live payouts it conflicts with (shares an input with)."""

    @property
    def txid(self) -> bytes:
        return self.tx.txid

    @property
    def feerate(self) -> int:
        """sat/kvB over the estimated vsize."""
        return self.fee * 1000 // self.vsize

    @property
    def amount_paid(self) -> int:
        return sum(e.amount for _, e in self.pegouts)


def max_fee(params: WatchmenParams, vsize: int, has_change: bool) -> int:
    """The most a payout of ``vsize`` may pay (see the rule table)."""
    if has_change:
        return fee_for(params.max_rate_kvb, vsize)
    return fee_for(params.max_rate_kvb, vsize + CHANGE_OUTPUT_VSIZE) + params.min_change - 1


def check_payout(
    ledger: Ledger, tx: BtcTransaction, params: WatchmenParams, *, sidechain_height: int | None = None
) -> PayoutCheck:
    """Every rule of the module docstring, or the first PayoutError. A
    witness on ``tx`` is ignored (the check is of what is signed).
    ``sidechain_height`` defaults to the ledger's last block."""
    tx = strip_witness(tx)
    txid = hash_to_hex(tx.txid)
    if tx.version != PAYOUT_VERSION:
        raise MalformedPayout(f"payout {txid}: version {tx.version}, not {PAYOUT_VERSION}")
    if tx.locktime != 0:
        raise MalformedPayout(f"payout {txid}: locktime {tx.locktime}, not 0")
    if not tx.inputs or not tx.outputs:
        raise MalformedPayout(f"payout {txid}: no inputs or no outputs")
    if len(tx.inputs) > params.max_inputs:
        raise MalformedPayout(f"payout {txid}: {len(tx.inputs)} inputs, at most {params.max_inputs}")
    outpoints = [MainOutPoint.of(i) for i in tx.inputs]
    if len(set(outpoints)) != len(outpoints):
        raise MalformedPayout(f"payout {txid}: an input spent twice")
    for i, txin in enumerate(tx.inputs):
        if txin.script_sig:
            raise MalformedPayout(f"payout {txid}: input {i} has a scriptSig")
        if txin.sequence != RBF_SEQUENCE:
            raise MalformedPayout(f"payout {txid}: input {i} has sequence {txin.sequence:#x}, not {RBF_SEQUENCE:#x}")
    change_spk = params.peg.fedpeg_program
    n_change = sum(1 for o in tx.outputs if o.script_pubkey == change_spk)
    if n_change > 1:
        raise MalformedPayout(f"payout {txid}: {n_change} change outputs")
    if len(tx.outputs) - n_change > params.max_pegouts:
        raise MalformedPayout(f"payout {txid}: {len(tx.outputs) - n_change} peg-outs, at most {params.max_pegouts}")

    inputs: list[FedUtxo] = []
    for op in outpoints:
        utxo = ledger.utxo(op)
        if utxo is None:
            spender = ledger.spender(op)
            why = f"spent by {hash_to_hex(spender)}" if spender else "not a federation coin"
            raise NotFederationInput(f"payout {txid}: input {op!r} is {why}")
        inputs.append(utxo)
    vsize = ledger.estimated_vsize(tx)
    w = estimated_weight(tx, [u.witness_size(params.peg) for u in inputs])
    if w > MAX_STANDARD_TX_WEIGHT:
        raise MalformedPayout(f"payout {txid}: weight {w} above {MAX_STANDARD_TX_WEIGHT}")

    conflicts = ledger.conflicting_payouts(tx)
    pegouts: list[tuple[int, PegOutEntry]] = []
    change: tuple[int, int] | None = None
    for vout, (pid, why) in enumerate(ledger.match_outputs(tx, conflicts, sidechain_height)):
        out = tx.outputs[vout]
        where = f"payout {txid} output {vout} ({out.value} sats to {out.script_pubkey.hex()})"
        if why == "change":
            if out.value < params.min_change:
                raise DustChange(f"{where}: change below {params.min_change}")
            change = (vout, out.value)
        elif pid is not None:
            entry = ledger.pegout(pid)
            assert entry is not None
            pegouts.append((vout, entry))
        elif why == "amount":
            raise WrongAmount(f"{where}: an unpaid peg-out pays this destination, not this amount")
        elif why == "duplicate":
            raise DuplicatePegOut(f"{where}: pays a peg-out this payout already pays")
        elif why == "in_flight":
            raise PegOutAlreadyPaid(f"{where}: a live payout it does not conflict with pays that peg-out")
        elif why == "paid":
            raise PegOutAlreadyPaid(f"{where}: a confirmed payout paid that peg-out")
        elif why == "not_final":
            raise PegOutNotFinal(f"{where}: the peg-out is not {params.pegout_min_depth} blocks deep")
        else:
            raise UnknownOutput(f"{where}: no unpaid payable peg-out and not the federation's change ({why})")

    value_in = sum(u.value for u in inputs)
    value_out = sum(o.value for o in tx.outputs)
    if value_out > value_in:
        raise OutputsExceedInputs(f"payout {txid}: outputs {value_out} > inputs {value_in}")
    fee = value_in - value_out
    low = fee_for(params.min_rate_kvb, vsize)
    if fee < low:
        raise FeeTooLow(f"payout {txid}: fee {fee} below {low} ({params.min_feerate} sat/vB × {vsize} vB)")
    high = max_fee(params, vsize, change is not None)
    if fee > high:
        raise FeeTooHigh(f"payout {txid}: fee {fee} above {high} ({params.max_feerate} sat/vB × {vsize} vB)")
    if conflicts:
        _check_replacement(ledger, txid, fee, vsize, conflicts, params)
    return PayoutCheck(tx, tuple(inputs), tuple(pegouts), change, fee, vsize, frozenset(conflicts))


def _check_replacement(
    ledger: Ledger, txid: str, fee: int, vsize: int, conflicts: Collection[bytes], params: WatchmenParams
) -> None:
    recs = [r for r in (ledger.payout(c) for c in sorted(conflicts)) if r is not None]
    for rec in recs:
        if fee * rec.vsize <= rec.fee * vsize:
            raise ReplacementFeeTooLow(
                f"payout {txid}: fee rate {fee * 1000 // vsize} sat/kvB not above {rec.feerate} "
                f"of {hash_to_hex(rec.txid)}, which it replaces"
            )
    # Live payouts that conflict with one another cannot share a mempool, and
    # a chain of replacements shares its inputs: the highest fee is the bar.
    need = max(r.fee for r in recs) + fee_for(params.incremental_feerate, vsize)
    if fee < need:
        raise ReplacementFeeTooLow(f"payout {txid}: fee {fee} below {need}, the replaced fee plus BIP125's increment")


# --- build --------------------------------------------------------------------------------------


def _make_tx(inputs: Sequence[FedUtxo], outputs: Sequence[BtcTxOut]) -> BtcTransaction:
    ins = tuple(BtcTxIn(u.outpoint.txid, u.outpoint.vout, b"", RBF_SEQUENCE) for u in inputs)
    return BtcTransaction(PAYOUT_VERSION, ins, tuple(outputs), 0)


def _estimated_vsize(inputs: Sequence[FedUtxo], outputs: Sequence[BtcTxOut], params: WatchmenParams) -> int:
    tx = _make_tx(inputs, outputs)
    return vsize_of_weight(estimated_weight(tx, [u.witness_size(params.peg) for u in inputs]))


def _assemble(
    forced: Sequence[FedUtxo],
    candidates: Sequence[FedUtxo],
    pays: Sequence[BtcTxOut],
    rate: int,
    params: WatchmenParams,
    min_fee: int = 0,
) -> BtcTransaction | None:
    """Inputs ``forced`` then as few of ``candidates`` (in order) as cover
    ``pays`` and the fee; change if it is at least min_change. None if the
    coins (or max_inputs) do not suffice."""
    change_spk = params.peg.fedpeg_program
    inputs = list(forced)
    pool = list(candidates)
    out_total = sum(o.value for o in pays)
    while True:
        if inputs and len(inputs) <= params.max_inputs:
            value_in = sum(u.value for u in inputs)
            with_change = [*pays, BtcTxOut(0, change_spk)]
            fee_c = max(fee_for(rate, _estimated_vsize(inputs, with_change, params)), min_fee)
            change = value_in - out_total - fee_c
            if change >= params.min_change:
                return _make_tx(inputs, [*pays, BtcTxOut(change, change_spk)])
            if pays:
                fee_n = max(fee_for(rate, _estimated_vsize(inputs, pays, params)), min_fee)
                if value_in - out_total >= fee_n:
                    # Folding the small leftover into the fee is cheaper than
                    # another ~400-vbyte input to make change of it.
                    return _make_tx(inputs, pays)
        if not pool or len(inputs) >= params.max_inputs:
            return None
        inputs.append(pool.pop(0))


def _free_utxos(ledger: Ledger, exclude: Collection[MainOutPoint] = ()) -> list[FedUtxo]:
    """Federation coins no live payout spends, oldest first."""
    busy = set(exclude)
    for rec in ledger.live_payouts():
        busy.update(rec.inputs)
    return [u for u in ledger.utxos() if u.outpoint not in busy]


def build_payout(
    ledger: Ledger,
    params: WatchmenParams,
    rate: int,
    *,
    pegouts: Sequence[PegOutEntry] | None = None,
    forced_inputs: Sequence[FedUtxo] = (),
) -> BtcTransaction | None:
    """A new payout at ``rate`` sat/kvB: ``pegouts`` (default: every payable
    one, up to max_pegouts) or, if the federation's free coins cannot pay
    them all, the longest prefix it can; ``forced_inputs`` always spent.
    None if nothing can be paid (and no forced input can be moved)."""
    todo = list(ledger.payable_pegouts() if pegouts is None else pegouts)[: params.max_pegouts]
    forced_ops = {u.outpoint for u in forced_inputs}
    candidates = [u for u in _free_utxos(ledger) if u.outpoint not in forced_ops]

    def attempt(n: int) -> BtcTransaction | None:
        pays = [BtcTxOut(e.amount, e.destination) for e in todo[:n]]
        if not pays and not forced_inputs:
            return None
        return _assemble(forced_inputs, candidates, pays, rate, params)

    best = attempt(len(todo))
    if best is not None or not todo:
        return best
    # Feasibility is monotone in the number of peg-outs paid: bisect the prefix.
    lo, hi = 0, len(todo)  # attempt(hi) fails; find the largest n that works
    found = attempt(0) if forced_inputs else None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        tx = attempt(mid)
        if tx is not None:
            lo, found = mid, tx
        else:
            hi = mid
    return found


def bump_rate(record: PayoutRecord, rate: int, params: WatchmenParams) -> int:
    """The rate of a replacement for ``record``: at least ``rate``, at least
    bump_percent of its rate, at least one incremental step above it; at most
    max_feerate. BumpNotPossible if that is no higher than its rate."""
    old = record.feerate
    want = max(rate, -(-old * params.bump_percent // 100), old + params.incremental_feerate)
    want = min(want, params.max_rate_kvb)
    if want <= old:
        raise BumpNotPossible(
            f"payout {hash_to_hex(record.txid)} already pays {old} sat/kvB; the maximum is {params.max_rate_kvb}"
        )
    return want


def build_replacement(
    ledger: Ledger,
    params: WatchmenParams,
    record: PayoutRecord,
    rate: int,
    *,
    extra_inputs: Sequence[FedUtxo] = (),
) -> BtcTransaction:
    """A BIP125 replacement of the live payout ``record``: the same peg-out
    outputs in the same order, its inputs plus ``extra_inputs`` (and more
    free coins if the higher fee needs them), change to the federation, at
    :func:`bump_rate`. BumpNotPossible if the fee would exceed the maximum
    or the coins do not suffice."""
    if record.tx is None:
        raise BumpNotPossible(f"payout {hash_to_hex(record.txid)} is not in flight")
    new_rate = bump_rate(record, rate, params)
    forced: list[FedUtxo] = []
    for op in record.inputs:
        u = ledger.utxo(op)
        if u is None:
            raise BumpNotPossible(f"payout {hash_to_hex(record.txid)} spends {op!r}, no longer a federation coin")
        forced.append(u)
    seen = {u.outpoint for u in forced}
    forced += [u for u in extra_inputs if u.outpoint not in seen]
    change_spk = params.peg.fedpeg_program
    pays = [o for o in record.tx.outputs if o.script_pubkey != change_spk]
    # BIP125: pay more than the payout mempools hold plus the increment. Live
    # payouts that conflict with one another cannot share a mempool, and a
    # chain of replacements shares its inputs, so the highest fee is the bar.
    conflicts = ledger.conflicting_payouts(_make_tx(forced, pays)) | {record.txid}
    replaced_fees = max(r.fee for r in (ledger.payout(c) for c in conflicts) if r is not None)
    candidates = [u for u in _free_utxos(ledger, exclude=seen) if u.outpoint not in seen]
    tx = None
    min_fee = replaced_fees
    for _ in range(3):  # the increment depends on the vsize, which depends on the inputs
        tx = _assemble(forced, candidates, pays, new_rate, params, min_fee=min_fee)
        if tx is None:
            raise BumpNotPossible(f"no coins for a replacement of {hash_to_hex(record.txid)}")
        need = replaced_fees + fee_for(params.incremental_feerate, ledger.estimated_vsize(tx))
        if min_fee >= need:
            break
        min_fee = need
    assert tx is not None
    vsize = ledger.estimated_vsize(tx)
    value_in = 0
    for txin in tx.inputs:
        u = ledger.utxo(MainOutPoint.of(txin))
        assert u is not None  # forced and candidates are all ledger coins
        value_in += u.value
    fee = value_in - sum(o.value for o in tx.outputs)
    if fee > max_fee(params, vsize, any(o.script_pubkey == change_spk for o in tx.outputs)):
        raise BumpNotPossible(f"a replacement of {hash_to_hex(record.txid)} would pay {fee}, above the maximum")
    return tx


def conflict_inputs(
    ledger: Ledger, earlier: Sequence[BtcTransaction], spending: Collection[MainOutPoint] = ()
) -> list[FedUtxo]:
    """For each of ``earlier`` (payouts a watchman refused for, from
    ConflictsWithSignedPayout) that is not settled and shares no input with
    ``spending``: its oldest input that is still a federation coin. A payout
    that adds them conflicts with every one of them."""
    chosen: list[FedUtxo] = []
    have = set(spending)
    for tx in earlier:
        if ledger.is_settled(tx):
            continue
        ins = [MainOutPoint.of(i) for i in tx.inputs]
        if have.intersection(ins):
            continue
        coins = sorted((u for u in map(ledger.utxo, ins) if u is not None), key=lambda u: (u.height, u.outpoint))
        if coins:
            chosen.append(coins[0])
            have.add(coins[0].outpoint)
    return chosen


# --- the leader's plan ---------------------------------------------------------------------------


class PlanKind(enum.Enum):
    PAYOUT = "payout"
    REPLACEMENT = "replacement"
    SWEEP = "sweep"


@dataclass(frozen=True, slots=True)
class PayoutPlan:
    kind: PlanKind
    tx: BtcTransaction
    replaces: bytes | None = None


def plan_payout(
    ledger: Ledger,
    params: WatchmenParams,
    *,
    mainchain_height: int,
    rate: int,
    mined: Collection[bytes] = (),
    sweep_margin: int | None = None,
    must_conflict: Sequence[BtcTransaction] = (),
) -> PayoutPlan | None:
    """What the leader proposes at a payout round, or None.

    * A live payout in a block (``mined``: txids in a block, not yet
      confirm_depth deep) is left alone.
    * A live payout unmined for ``bump_after`` blocks since it was recorded,
      or whose inputs leave a coin due for a sweep out, is replaced (same
      peg-outs, higher fee, the due coins added).
    * With no live payout: every payable peg-out and every coin due for a
      sweep go into one new payout (a sweep when no peg-out is payable).
    * Either way, an input of each of ``must_conflict`` (payouts watchmen
      refused for, see :func:`conflict_inputs`) is added.
    """
    from .emergency import sweep_needed

    due = sweep_needed(ledger, mainchain_height, params, sweep_margin)
    live = ledger.live_payouts()
    if live:
        if any(r.txid in mined for r in live):
            return None
        # The highest-fee live payout is the one mempools hold.
        latest = max(live, key=lambda r: (r.fee, r.seen_height, r.txid))
        spent_by_live = {op for r in live for op in r.inputs}
        extra = [u for u in due if u.outpoint not in spent_by_live]
        extra += conflict_inputs(ledger, must_conflict, {*latest.inputs, *(u.outpoint for u in extra)})
        waited = mainchain_height - latest.seen_height
        if waited < params.bump_after and not extra:
            return None
        replacement = build_replacement(ledger, params, latest, rate, extra_inputs=extra)
        return PayoutPlan(PlanKind.REPLACEMENT, replacement, latest.txid)
    forced = [*due, *conflict_inputs(ledger, must_conflict, {u.outpoint for u in due})]
    tx = build_payout(ledger, params, rate, forced_inputs=forced)
    if tx is None:
        return None
    change_spk = params.peg.fedpeg_program
    kind = PlanKind.PAYOUT if any(o.script_pubkey != change_spk for o in tx.outputs) else PlanKind.SWEEP
    return PayoutPlan(kind, tx)


__all__ = [
    "CHANGE_OUTPUT_VSIZE",
    "PayoutCheck",
    "PayoutPlan",
    "PlanKind",
    "build_payout",
    "build_replacement",
    "bump_rate",
    "check_payout",
    "conflict_inputs",
    "feerate_from_estimate",
    "max_fee",
    "payout_due",
    "payout_leader",
    "plan_payout",
]

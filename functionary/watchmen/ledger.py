"""The federation's mainchain funds and the peg-outs it owes: pure bookkeeping.

Every member folds the same events into a :class:`Ledger` and gets the same
bytes (:meth:`Ledger.serialize`), so the ledger can be stored in the
``peg_state`` table atomically with each sidechain block, and compared.

Events, and who supplies them:

    event                                    from                          method
    a committed sidechain block's peg-ins    the block's claim inputs      apply_block
    and peg-outs                             (extract_block_events), plus
                                             each peg-in block's mainchain
                                             height (the node's bitcoind)
    a fully signed payout broadcast or seen  the leader, a peer, the mempool  record_payout
    a payout confirmed confirm_depth deep    the node's bitcoind            confirm_payout
    a federation coin spent by anything      the node's bitcoind (an        spent_elsewhere
    but a payout (emergency keys, theft)     alarm: should never happen)

State, and what it means:

    part          content                                          deterministic?
    utxos         federation coins: claimed peg-in outputs (tweaked yes
                  by their claim script) and change of confirmed
                  payouts (untweaked fedpegscript), each with the
                  mainchain height that confirmed it (CSV age)
    pegouts       every peg-out of a committed block: id = sidechain yes
                  (txid, vout), amount, destination scriptPubKey,
                  sidechain height; paid_by = the confirmed payout
    payouts       confirmed payouts: txid, height, fee              yes
                  in-flight payouts (recorded, unconfirmed) and     no: what this
                  dead ones (a conflicting payout confirmed)        member has seen
    spent         federation outpoints spent, and by which txid     yes
    totals        pegged in, burned, paid out, fees, unaccounted    yes

Peg-out state: pending (unpaid, in no live payout) → in payout (a recorded
in-flight payout pays it; advisory) → paid (a confirmed payout pays it;
deterministic). A peg-out in a payout that dies returns to pending.

Which peg-out a confirmed payout's output pays is decided when it confirms,
in mainchain order: the oldest unpaid, payable peg-out with that destination
and amount (oldest = sidechain order). Two peg-outs of the same amount to the
same script are interchangeable, and the rule makes every member pick the
same one whatever in-flight payouts it has seen.

Reserves (:meth:`Ledger.reserves`, checked by :meth:`Ledger.audit`)::

    Σ utxos  = pegged_in − paid_out − fees − unaccounted
    supply   = pegged_in − burned          (the sidechain's policy-asset supply)
    owed     = burned − burned_unpayable − paid_out   (peg-outs still to pay)

``unaccounted`` is value that left the federation other than to a peg-out or
as a fee: zero unless the watchmen or emergency keys misbehaved.

Serialization (version 1), integers little-endian, counts CompactSize::

    magic "WLG" | version u8 | fedpegscript sha256 (32) | last sidechain height i64 (-1: none)
    seq u64 | pegged_in, burned, burned_unpayable, paid_out, fees, unaccounted: i64 each
    utxos:    count, each txid(32) vout u32 value i64 height u32 kind u8
              (0 change, 1 peg-in + claim_script varbytes)
    pegouts:  count, each txid(32) vout u32 amount i64 destination varbytes height u32
              seq u64 payable u8 paid u8 [paid_by(32) paid_height u32]
    payouts:  count, each txid(32) status u8 (0 in flight, 1 confirmed, 2 dead; only
              confirmed ones in ``serialize(local=False)``)
              fee i64 vsize u32 seen_height u32 height u32 replaced_by(32, zeros: none)
              tx varbytes (without witness; empty once confirmed or dead)
              assignment: count, each 0 | 1 + pegout txid(32) vout u32
    spent:    count, each txid(32) vout u32 spender(32)

Sorted by key everywhere, so equal ledgers serialize equally.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache

from consensus.errors import ParseError
from consensus.hashes import hash_to_hex
from consensus.mainchain import BtcTransaction
from consensus.peg import PegInWitness, PegParams, is_payable_destination
from consensus.serialize import (
    ByteReader,
    parse_exact,
    ser_compact_size,
    ser_i64,
    ser_u32,
    ser_u64,
    ser_varbytes,
)
from consensus.standard import p2wsh_script, parse_pegout
from consensus.transaction import OutPoint, Transaction

from .errors import LedgerError
from .params import WatchmenParams
from .txmath import MainOutPoint, estimated_weight, multisig_witness_size, strip_witness, vsize_of_weight

_MAGIC = b"WLG"
_VERSION = 1
_NO_TXID = b"\x00" * 32


# --- per-claim-script scripts (tweaking 15 keys costs ~0.3 ms; cache it) -----------------


@lru_cache(maxsize=4096)
def _contract(peg: PegParams, claim_script: bytes | None) -> bytes:
    return peg.fedpegscript if claim_script is None else peg.pegin_contract(claim_script)


def witness_script(peg: PegParams, claim_script: bytes | None) -> bytes:
    """The witnessScript of a federation coin: the fedpegscript tweaked by its
    claim script, or untweaked (None) for change."""
    return _contract(peg, claim_script)


def federation_script_pubkey(peg: PegParams, claim_script: bytes | None) -> bytes:
    return p2wsh_script(witness_script(peg, claim_script))


# --- records -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FedUtxo:
    """A federation coin on the mainchain."""

    outpoint: MainOutPoint
    value: int
    claim_script: bytes | None
    """The peg-in's claim script (its tweak); None for change, which pays the
    untweaked fedpegscript."""
    height: int
    """The mainchain height of the block that confirmed it: its CSV age counts
    from here."""

    def witness_script(self, peg: PegParams) -> bytes:
        return witness_script(peg, self.claim_script)

    def script_pubkey(self, peg: PegParams) -> bytes:
        return federation_script_pubkey(peg, self.claim_script)

    def witness_size(self, peg: PegParams) -> int:
        """Its watchmen witness at the largest signature size."""
        return multisig_witness_size(peg.peg_threshold, self.witness_script(peg))

    def confirmations(self, mainchain_height: int) -> int:
        return mainchain_height - self.height + 1


@dataclass(frozen=True, slots=True)
class PegInClaimed:
    """A peg-in claimed in a committed sidechain block."""

    outpoint: MainOutPoint
    value: int
    claim_script: bytes
    mainchain_block: bytes
    """Hash (internal order) of the mainchain block its proof names; the node
    supplies its height."""


@dataclass(frozen=True, slots=True)
class PegOutRequested:
    """A peg-out output of a committed sidechain transaction."""

    id: OutPoint
    amount: int
    destination: bytes


@dataclass(frozen=True, slots=True)
class BlockPegEvents:
    pegins: tuple[PegInClaimed, ...] = ()
    pegouts: tuple[PegOutRequested, ...] = ()

    @property
    def mainchain_blocks(self) -> frozenset[bytes]:
        """Blocks whose heights :meth:`Ledger.apply_block` needs."""
        return frozenset(p.mainchain_block for p in self.pegins)


def extract_block_events(transactions: Iterable[Transaction], peg: PegParams) -> BlockPegEvents:
    """The peg-ins claimed and peg-outs made by a block's transactions, in
    block order. The block is committed, so consensus (``PegInRules``,
    ``PegOutRules``) has checked them; a peg-out naming another parent chain,
    or a blinded one, is a plain burn and owes nothing."""
    pegins: list[PegInClaimed] = []
    pegouts: list[PegOutRequested] = []
    for tx in transactions:
        for i, txin in enumerate(tx.inputs):
            if not txin.is_pegin:
                continue
            try:
                w = PegInWitness.parse(tx.input_witnesses[i].pegin_witness)
            except ParseError as e:
                raise LedgerError(f"committed peg-in {tx.txid_hex}:{i} does not parse: {e}") from None
            op = MainOutPoint(txin.prevout.txid, txin.prevout.index)
            pegins.append(PegInClaimed(op, w.value, w.claim_script, w.proof.header.hash))
        for vout, out in enumerate(tx.outputs):
            pegout = parse_pegout(out.script_pubkey)
            if pegout is None or pegout.genesis_hash != peg.parent_genesis_hash or not out.is_explicit:
                continue
            pegouts.append(PegOutRequested(OutPoint(tx.txid, vout), out.value.amount, pegout.parent_script))
    return BlockPegEvents(tuple(pegins), tuple(pegouts))


@dataclass(frozen=True, slots=True)
class PegOutEntry:
    id: OutPoint
    amount: int
    destination: bytes
    sidechain_height: int
    seq: int
    """Position in sidechain order: peg-outs are paid oldest first."""
    payable: bool
    """False for an amount below ``min_pegout``, a script the watchmen cannot
    pay, or the federation's own change script: burned, never paid."""
    paid_by: bytes | None = None
    paid_height: int = 0


class PegOutStatus(enum.Enum):
    PENDING = "pending"
    IN_PAYOUT = "in_payout"
    PAID = "paid"
    UNPAYABLE = "unpayable"


@dataclass(frozen=True, slots=True)
class PegOutState:
    status: PegOutStatus
    txids: tuple[bytes, ...] = ()
    """IN_PAYOUT: the live payouts paying it; PAID: the confirmed one."""
    height: int = 0
    """PAID: the mainchain height of the confirming block."""


class PayoutStatus(enum.IntEnum):
    IN_FLIGHT = 0
    CONFIRMED = 1
    DEAD = 2


@dataclass(frozen=True, slots=True)
class PayoutRecord:
    txid: bytes
    status: PayoutStatus
    fee: int
    vsize: int
    """Estimated (upper bound) vsize, as check_payout computes it."""
    seen_height: int
    """Mainchain tip height when recorded: the fee-bump clock starts here."""
    height: int = 0
    """CONFIRMED: the block height."""
    replaced_by: bytes | None = None
    """DEAD: the confirmed payout that spent one of its inputs."""
    tx: BtcTransaction | None = None
    """IN_FLIGHT: the transaction (without witness)."""
    assignment: tuple[OutPoint | None, ...] = ()
    """IN_FLIGHT: the peg-out each output pays (None: change or unmatched)."""

    @property
    def inputs(self) -> tuple[MainOutPoint, ...]:
        if self.tx is None:
            return ()
        return tuple(MainOutPoint.of(i) for i in self.tx.inputs)

    @property
    def feerate(self) -> int:
        """sat/kvB over the estimated vsize."""
        return self.fee * 1000 // max(1, self.vsize)


@dataclass(frozen=True, slots=True)
class Reserves:
    pegged_in: int
    burned: int
    burned_unpayable: int
    paid_out: int
    fees: int
    unaccounted: int
    utxo_sum: int
    utxo_count: int
    in_flight: int

    @property
    def expected_utxo_sum(self) -> int:
        return self.pegged_in - self.paid_out - self.fees - self.unaccounted

    @property
    def sidechain_supply(self) -> int:
        """What the sidechain's policy-asset supply must be (peg-ins minus burns)."""
        return self.pegged_in - self.burned

    @property
    def owed(self) -> int:
        return self.burned - self.burned_unpayable - self.paid_out

    @property
    def balanced(self) -> bool:
        return self.utxo_sum == self.expected_utxo_sum

    @property
    def surplus(self) -> int:
        """Federation funds beyond what it owes; negative when fees have eaten
        into the peg (they come from the federation's own funds)."""
        return self.utxo_sum - self.owed


@dataclass
class _State:
    last_height: int | None = None
    seq: int = 0
    pegged_in: int = 0
    burned: int = 0
    burned_unpayable: int = 0
    paid_out: int = 0
    fees: int = 0
    unaccounted: int = 0
    utxos: dict[MainOutPoint, FedUtxo] = field(default_factory=dict)
    pegouts: dict[OutPoint, PegOutEntry] = field(default_factory=dict)
    payouts: dict[bytes, PayoutRecord] = field(default_factory=dict)
    spent: dict[MainOutPoint, bytes] = field(default_factory=dict)

    def copy(self) -> _State:
        return replace(
            self,
            utxos=dict(self.utxos),
            pegouts=dict(self.pegouts),
            payouts=dict(self.payouts),
            spent=dict(self.spent),
        )


# --- the ledger ------------------------------------------------------------------------------


class Ledger:
    """See the module docstring. Methods that change the ledger validate first
    and change nothing when they raise; :meth:`clone` gives a copy to change
    before the new bytes are durably stored."""

    def __init__(self, params: WatchmenParams, _state: _State | None = None) -> None:
        self.params = params
        self.peg = params.peg
        self._s = _state or _State()

    def clone(self) -> Ledger:
        return Ledger(self.params, self._s.copy())

    # -- events ---------------------------------------------------------------------------

    def apply_block(self, height: int, events: BlockPegEvents, pegin_heights: Mapping[bytes, int]) -> None:
        """A committed sidechain block at ``height``. ``pegin_heights`` maps each
        of ``events.mainchain_blocks`` to its mainchain height."""
        s = self._s
        if s.last_height is not None and height <= s.last_height:
            raise LedgerError(f"sidechain block {height} is not after {s.last_height}")
        seen: set[MainOutPoint] = set()
        for p in events.pegins:
            if p.outpoint in s.utxos or p.outpoint in s.spent or p.outpoint in seen:
                raise LedgerError(f"peg-in {p.outpoint!r} already claimed")
            if p.mainchain_block not in pegin_heights:
                raise LedgerError(f"no mainchain height for peg-in block {hash_to_hex(p.mainchain_block)}")
            if p.value <= 0:
                raise LedgerError(f"peg-in {p.outpoint!r} of {p.value} sats")
            seen.add(p.outpoint)
        ids: set[OutPoint] = set()
        for o in events.pegouts:
            if o.id in s.pegouts or o.id in ids:
                raise LedgerError(f"peg-out {o.id!r} recorded twice")
            if o.amount <= 0:
                raise LedgerError(f"peg-out {o.id!r} of {o.amount} sats")
            ids.add(o.id)
        for p in events.pegins:
            h = pegin_heights[p.mainchain_block]
            s.utxos[p.outpoint] = FedUtxo(p.outpoint, p.value, p.claim_script, h)
            s.pegged_in += p.value
        for o in events.pegouts:
            # A peg-out to the federation's own change script would read as a
            # second change output and stall every payout: it is burned, unpaid.
            payable = (
                o.amount >= self.params.min_pegout
                and is_payable_destination(o.destination)
                and o.destination != self.peg.fedpeg_program
            )
            s.pegouts[o.id] = PegOutEntry(o.id, o.amount, o.destination, height, s.seq, payable)
            s.seq += 1
            s.burned += o.amount
            if not payable:
                s.burned_unpayable += o.amount
        s.last_height = height

    def record_payout(self, tx: BtcTransaction, seen_height: int) -> PayoutRecord:
        """A fully signed payout this member has seen (its own, a peer's, the
        mempool's): in flight until it confirms or dies. Idempotent."""
        s = self._s
        tx = strip_witness(tx)
        old = s.payouts.get(tx.txid)
        if old is not None:
            return old
        value_in = 0
        for txin in tx.inputs:
            op = MainOutPoint.of(txin)
            utxo = s.utxos.get(op)
            if utxo is None:
                raise LedgerError(f"payout {tx.txid_hex} spends {op!r}, not a federation coin")
            value_in += utxo.value
        fee = value_in - sum(o.value for o in tx.outputs)
        if fee < 0:
            raise LedgerError(f"payout {tx.txid_hex} pays out more than it spends")
        conflicts = self.conflicting_payouts(tx)
        assignment = tuple(a for a, _ in self.match_outputs(tx, conflicts))
        rec = PayoutRecord(
            tx.txid,
            PayoutStatus.IN_FLIGHT,
            fee,
            self.estimated_vsize(tx),
            seen_height,
            tx=tx,
            assignment=assignment,
        )
        s.payouts[tx.txid] = rec
        return rec

    def confirm_payout(self, tx: BtcTransaction, height: int) -> PayoutRecord:
        """``tx``, spending federation coins, is ``confirm_depth`` deep in the
        block at ``height``: final. Its change becomes federation coins, the
        peg-outs it pays are paid (oldest matching first), every other payout
        spending one of its inputs is dead. Call in mainchain order."""
        s = self._s
        tx = strip_witness(tx)
        txid = tx.txid
        old = s.payouts.get(txid)
        if old is not None and old.status is PayoutStatus.CONFIRMED:
            return old
        spent: list[FedUtxo] = []
        for txin in tx.inputs:
            op = MainOutPoint.of(txin)
            utxo = s.utxos.get(op)
            if utxo is None:
                other = s.spent.get(op)
                where = f"spent by {hash_to_hex(other)}" if other else "not a federation coin"
                raise LedgerError(f"confirmed payout {tx.txid_hex} spends {op!r}, {where}")
            spent.append(utxo)
        if len({u.outpoint for u in spent}) != len(spent):
            raise LedgerError(f"confirmed payout {tx.txid_hex} spends an input twice")
        value_in = sum(u.value for u in spent)
        value_out = sum(o.value for o in tx.outputs)
        if value_out > value_in:
            raise LedgerError(f"confirmed payout {tx.txid_hex} pays out more than it spends")
        vsize = old.vsize if old is not None else self.estimated_vsize(tx)

        change_spk = self.peg.fedpeg_program
        by_key = self._unpaid_by_key(())
        taken: set[OutPoint] = set()
        paid = 0
        unaccounted = 0
        new_utxos: list[FedUtxo] = []
        for vout, out in enumerate(tx.outputs):
            if out.script_pubkey == change_spk:
                new_utxos.append(FedUtxo(MainOutPoint(txid, vout), out.value, None, height))
                continue
            entry = next((e for e in by_key.get((out.script_pubkey, out.value), ()) if e.id not in taken), None)
            if entry is None:
                unaccounted += out.value
                continue
            taken.add(entry.id)
            paid += entry.amount
        # Mutate only from here on: nothing below raises.
        for u in spent:
            del s.utxos[u.outpoint]
            s.spent[u.outpoint] = txid
        for u in new_utxos:
            s.utxos[u.outpoint] = u
        for pid in taken:
            s.pegouts[pid] = replace(s.pegouts[pid], paid_by=txid, paid_height=height)
        s.paid_out += paid
        s.fees += value_in - value_out
        s.unaccounted += unaccounted
        rec = PayoutRecord(txid, PayoutStatus.CONFIRMED, value_in - value_out, vsize, 0, height=height)
        s.payouts[txid] = rec
        self._kill_conflicts(set(u.outpoint for u in spent), txid)
        self._prune_assignments()
        return rec

    def spent_elsewhere(self, outpoint: MainOutPoint, spender: bytes) -> None:
        """A federation coin was spent, final, by ``spender``, which is no
        payout (the emergency keys, or worse). Its value is unaccounted."""
        s = self._s
        utxo = s.utxos.get(outpoint)
        if utxo is None:
            raise LedgerError(f"{outpoint!r} is not a federation coin")
        del s.utxos[outpoint]
        s.spent[outpoint] = spender
        s.unaccounted += utxo.value
        self._kill_conflicts({outpoint}, spender)
        self._prune_assignments()

    def _kill_conflicts(self, outpoints: set[MainOutPoint], winner: bytes) -> None:
        s = self._s
        for rec in list(s.payouts.values()):
            if rec.status is PayoutStatus.IN_FLIGHT and outpoints.intersection(rec.inputs):
                s.payouts[rec.txid] = replace(rec, status=PayoutStatus.DEAD, replaced_by=winner, tx=None, assignment=())

    def _prune_assignments(self) -> None:
        # A live payout disjoint from the one that confirmed keeps only the
        # peg-outs still unpaid: if it confirms too, it pays them, not those.
        s = self._s
        for rec in list(s.payouts.values()):
            if rec.status is PayoutStatus.IN_FLIGHT:
                kept = tuple(a if a is not None and s.pegouts[a].paid_by is None else None for a in rec.assignment)
                if kept != rec.assignment:
                    s.payouts[rec.txid] = replace(rec, assignment=kept)

    # -- queries ---------------------------------------------------------------------------

    @property
    def last_height(self) -> int | None:
        return self._s.last_height

    def utxos(self) -> list[FedUtxo]:
        """Federation coins, oldest first (height, then outpoint)."""
        return sorted(self._s.utxos.values(), key=lambda u: (u.height, u.outpoint))

    def utxo(self, outpoint: MainOutPoint) -> FedUtxo | None:
        return self._s.utxos.get(outpoint)

    def spender(self, outpoint: MainOutPoint) -> bytes | None:
        return self._s.spent.get(outpoint)

    def pegouts(self) -> list[PegOutEntry]:
        """Every peg-out, in sidechain order."""
        return sorted(self._s.pegouts.values(), key=lambda e: e.seq)

    def pegout(self, pid: OutPoint) -> PegOutEntry | None:
        return self._s.pegouts.get(pid)

    def payout(self, txid: bytes) -> PayoutRecord | None:
        return self._s.payouts.get(txid)

    def payouts(self) -> list[PayoutRecord]:
        return [self._s.payouts[k] for k in sorted(self._s.payouts)]

    def live_payouts(self) -> list[PayoutRecord]:
        """In-flight payouts, oldest recorded first."""
        live = [r for r in self._s.payouts.values() if r.status is PayoutStatus.IN_FLIGHT]
        return sorted(live, key=lambda r: (r.seen_height, r.fee, r.txid))

    def is_settled(self, tx: BtcTransaction) -> bool:
        """True when ``tx`` can no longer matter to the signer's rule: it is
        confirmed, or one of its inputs was finally spent by another
        transaction (so it can never confirm)."""
        rec = self._s.payouts.get(tx.txid)
        if rec is not None and rec.status is not PayoutStatus.IN_FLIGHT:
            return True
        for txin in tx.inputs:
            spender = self._s.spent.get(MainOutPoint.of(txin))
            if spender is not None:
                return True  # by tx itself (confirmed) or by another (dead)
        return False

    def conflicting_payouts(self, tx: BtcTransaction) -> set[bytes]:
        """Live payouts other than ``tx`` sharing an input with it."""
        ins = {MainOutPoint.of(i) for i in tx.inputs}
        return {r.txid for r in self.live_payouts() if r.txid != tx.txid and ins.intersection(r.inputs)}

    def in_flight_pegouts(self, excluding: Iterable[bytes] = ()) -> dict[OutPoint, list[bytes]]:
        """Peg-outs paid by live payouts (other than ``excluding``)."""
        skip = set(excluding)
        found: dict[OutPoint, list[bytes]] = {}
        for rec in self.live_payouts():
            if rec.txid in skip:
                continue
            for a in rec.assignment:
                if a is not None:
                    found.setdefault(a, []).append(rec.txid)
        return found

    def pegout_state(self, pid: OutPoint) -> PegOutState:
        e = self._s.pegouts.get(pid)
        if e is None:
            raise KeyError(pid)
        if e.paid_by is not None:
            return PegOutState(PegOutStatus.PAID, (e.paid_by,), e.paid_height)
        if not e.payable:
            return PegOutState(PegOutStatus.UNPAYABLE)
        live = self.in_flight_pegouts().get(pid)
        if live:
            return PegOutState(PegOutStatus.IN_PAYOUT, tuple(live))
        return PegOutState(PegOutStatus.PENDING)

    def is_final(self, e: PegOutEntry, sidechain_height: int | None = None) -> bool:
        tip = self._s.last_height if sidechain_height is None else sidechain_height
        return tip is not None and tip - e.sidechain_height + 1 >= self.params.pegout_min_depth

    def payable_pegouts(self, sidechain_height: int | None = None) -> list[PegOutEntry]:
        """Final, payable, unpaid peg-outs in no live payout, oldest first:
        what the next payout pays."""
        busy = self.in_flight_pegouts()
        return [
            e
            for e in self.pegouts()
            if e.payable and e.paid_by is None and e.id not in busy and self.is_final(e, sidechain_height)
        ]

    def _unpaid_by_key(self, busy: Iterable[OutPoint]) -> dict[tuple[bytes, int], list[PegOutEntry]]:
        skip = set(busy)
        by_key: dict[tuple[bytes, int], list[PegOutEntry]] = {}
        for e in self.pegouts():
            if e.payable and e.paid_by is None and e.id not in skip:
                by_key.setdefault((e.destination, e.amount), []).append(e)
        return by_key

    def match_outputs(
        self, tx: BtcTransaction, conflicts: Iterable[bytes], sidechain_height: int | None = None
    ) -> list[tuple[OutPoint | None, str]]:
        """For each output of ``tx``: the peg-out it pays (the oldest final,
        payable, unpaid one with that destination and amount, not paid by a
        live payout outside ``conflicts``, not already matched in ``tx``) and
        "pegout"; or None and "change" or why nothing matched: "duplicate",
        "in_flight", "not_final", "paid", "unpayable", "amount", "unknown"."""
        conflicts = set(conflicts) | {tx.txid}
        busy_map = self.in_flight_pegouts(excluding=conflicts)
        change_spk = self.peg.fedpeg_program
        all_by_key: dict[tuple[bytes, int], list[PegOutEntry]] = {}
        by_dest: set[bytes] = set()
        for e in self.pegouts():
            all_by_key.setdefault((e.destination, e.amount), []).append(e)
            if e.paid_by is None and e.payable:
                by_dest.add(e.destination)
        taken: set[OutPoint] = set()
        result: list[tuple[OutPoint | None, str]] = []
        for out in tx.outputs:
            if out.script_pubkey == change_spk:
                result.append((None, "change"))
                continue
            same = all_by_key.get((out.script_pubkey, out.value), [])
            chosen = None
            for e in same:
                if (
                    e.payable
                    and e.paid_by is None
                    and e.id not in taken
                    and e.id not in busy_map
                    and self.is_final(e, sidechain_height)
                ):
                    chosen = e
                    break
            if chosen is not None:
                taken.add(chosen.id)
                result.append((chosen.id, "pegout"))
                continue
            unpaid = [e for e in same if e.payable and e.paid_by is None]
            if any(e.id in taken for e in unpaid):
                why = "duplicate"
            elif any(e.id in busy_map for e in unpaid):
                why = "in_flight"
            elif unpaid:
                why = "not_final"
            elif any(e.paid_by is not None for e in same):
                why = "paid"
            elif same:
                why = "unpayable"
            elif out.script_pubkey in by_dest:
                why = "amount"
            else:
                why = "unknown"
            result.append((None, why))
        return result

    def estimated_vsize(self, tx: BtcTransaction) -> int:
        """vsize of ``tx`` signed by the watchmen, every signature at its largest
        (inputs the ledger does not hold are sized as change)."""
        sizes = []
        for txin in tx.inputs:
            u = self._s.utxos.get(MainOutPoint.of(txin))
            claim = u.claim_script if u is not None else None
            sizes.append(multisig_witness_size(self.peg.peg_threshold, witness_script(self.peg, claim)))
        return vsize_of_weight(estimated_weight(strip_witness(tx), sizes))

    def reserves(self) -> Reserves:
        s = self._s
        return Reserves(
            pegged_in=s.pegged_in,
            burned=s.burned,
            burned_unpayable=s.burned_unpayable,
            paid_out=s.paid_out,
            fees=s.fees,
            unaccounted=s.unaccounted,
            utxo_sum=sum(u.value for u in s.utxos.values()),
            utxo_count=len(s.utxos),
            in_flight=len(self.live_payouts()),
        )

    def audit(self) -> list[str]:
        """Every invariant that does not hold, in words (empty: all hold)."""
        s = self._s
        r = self.reserves()
        problems: list[str] = []
        if not r.balanced:
            problems.append(f"federation coins {r.utxo_sum} != pegged in - paid out - fees {r.expected_utxo_sum}")
        if r.unaccounted:
            problems.append(f"{r.unaccounted} sats left the federation unaccounted")
        paid = sum(e.amount for e in s.pegouts.values() if e.paid_by is not None)
        if paid != s.paid_out:
            problems.append(f"paid peg-outs sum to {paid}, the total says {s.paid_out}")
        burned = sum(e.amount for e in s.pegouts.values())
        if burned != s.burned:
            problems.append(f"peg-outs sum to {burned}, the total says {s.burned}")
        if r.owed < 0:
            problems.append(f"paid out {s.paid_out} more than was burned payable")
        confirmed_fees = sum(p.fee for p in s.payouts.values() if p.status is PayoutStatus.CONFIRMED)
        if confirmed_fees != s.fees:
            problems.append(f"confirmed payouts' fees sum to {confirmed_fees}, the total says {s.fees}")
        for op in s.utxos:
            if op in s.spent:
                problems.append(f"{op!r} is both unspent and spent")
        return problems

    # -- serialization ---------------------------------------------------------------------

    def serialize(self, *, local: bool = True) -> bytes:
        """The ledger's bytes. ``local=False`` leaves out what only this member
        has seen (in-flight and dead payouts): those bytes are equal on every
        member that applied the same blocks and confirmations, for comparing
        (:meth:`shared_digest`). Both parse."""
        s = self._s
        out = bytearray(_MAGIC)
        out.append(_VERSION)
        out += hashlib.sha256(self.peg.fedpegscript).digest()
        out += ser_i64(-1 if s.last_height is None else s.last_height)
        out += ser_u64(s.seq)
        for v in (s.pegged_in, s.burned, s.burned_unpayable, s.paid_out, s.fees, s.unaccounted):
            out += ser_i64(v)
        out += ser_compact_size(len(s.utxos))
        for op in sorted(s.utxos):
            u = s.utxos[op]
            out += op.serialize() + ser_i64(u.value) + ser_u32(u.height)
            if u.claim_script is None:
                out.append(0)
            else:
                out.append(1)
                out += ser_varbytes(u.claim_script)
        out += ser_compact_size(len(s.pegouts))
        for e in sorted(s.pegouts.values(), key=lambda e: e.seq):
            out += e.id.serialize() + ser_i64(e.amount) + ser_varbytes(e.destination)
            out += ser_u32(e.sidechain_height) + ser_u64(e.seq) + bytes((int(e.payable),))
            if e.paid_by is None:
                out.append(0)
            else:
                out.append(1)
                out += e.paid_by + ser_u32(e.paid_height)
        payouts = {k: p for k, p in s.payouts.items() if local or p.status is PayoutStatus.CONFIRMED}
        out += ser_compact_size(len(payouts))
        for txid in sorted(payouts):
            p = payouts[txid]
            out += txid + bytes((int(p.status),)) + ser_i64(p.fee) + ser_u32(p.vsize)
            out += ser_u32(p.seen_height) + ser_u32(p.height) + (p.replaced_by or _NO_TXID)
            out += ser_varbytes(b"" if p.tx is None else p.tx.serialize_without_witness())
            out += ser_compact_size(len(p.assignment))
            for a in p.assignment:
                out += b"\x00" if a is None else b"\x01" + a.serialize()
        out += ser_compact_size(len(s.spent))
        for op in sorted(s.spent):
            out += op.serialize() + s.spent[op]
        return bytes(out)

    def shared_digest(self) -> bytes:
        """sha256 of ``serialize(local=False)``: equal on members that agree."""
        return hashlib.sha256(self.serialize(local=False)).digest()

    @classmethod
    def parse(cls, data: bytes, params: WatchmenParams) -> Ledger:
        """The ledger ``serialize`` wrote, for these parameters; ParseError
        for anything else (other parameters included)."""

        def read(r: ByteReader) -> _State:
            if r.read(3) != _MAGIC:
                raise ParseError("not a watchmen ledger")
            if r.read_u8() != _VERSION:
                raise ParseError("unknown ledger version")
            if r.read(32) != hashlib.sha256(params.peg.fedpegscript).digest():
                raise ParseError("ledger written for another fedpegscript")
            s = _State()
            last = r.read_i64()
            s.last_height = None if last < 0 else last
            s.seq = r.read_u64()
            s.pegged_in, s.burned, s.burned_unpayable, s.paid_out, s.fees, s.unaccounted = (
                r.read_i64() for _ in range(6)
            )
            for _ in range(r.read_count(49)):
                op = MainOutPoint(r.read(32), r.read_u32())
                value, height, kind = r.read_i64(), r.read_u32(), r.read_u8()
                if kind not in (0, 1):
                    raise ParseError("bad utxo kind")
                claim = r.read_varbytes() if kind == 1 else None
                s.utxos[op] = FedUtxo(op, value, claim, height)
            for _ in range(r.read_count(59)):
                pid = OutPoint.read(r)
                amount, dest = r.read_i64(), r.read_varbytes()
                height, seq, payable, paid = r.read_u32(), r.read_u64(), r.read_u8(), r.read_u8()
                if payable > 1 or paid > 1:
                    raise ParseError("bad peg-out flags")
                paid_by, paid_height = (r.read(32), r.read_u32()) if paid else (None, 0)
                s.pegouts[pid] = PegOutEntry(pid, amount, dest, height, seq, bool(payable), paid_by, paid_height)
            for _ in range(r.read_count(87)):
                txid = r.read(32)
                status = r.read_u8()
                if status > 2:
                    raise ParseError("bad payout status")
                fee, vsize, seen, height = r.read_i64(), r.read_u32(), r.read_u32(), r.read_u32()
                replaced = r.read(32)
                raw = r.read_varbytes()
                tx = BtcTransaction.parse(raw) if raw else None
                assignment: list[OutPoint | None] = []
                for _ in range(r.read_count(1)):
                    flag = r.read_u8()
                    if flag > 1:
                        raise ParseError("bad assignment flag")
                    assignment.append(OutPoint.read(r) if flag else None)
                if tx is not None and tx.txid != txid:
                    raise ParseError("payout txid mismatch")
                s.payouts[txid] = PayoutRecord(
                    txid,
                    PayoutStatus(status),
                    fee,
                    vsize,
                    seen,
                    height,
                    None if replaced == _NO_TXID else replaced,
                    tx,
                    tuple(assignment),
                )
            for _ in range(r.read_count(68)):
                op = MainOutPoint(r.read(32), r.read_u32())
                s.spent[op] = r.read(32)
            return s

        try:
            state = parse_exact(data, read)
        except ValueError as e:
            raise ParseError(f"ledger: {e}") from None
        return cls(params, state)


__all__ = [
    "BlockPegEvents",
    "FedUtxo",
    "Ledger",
    "PayoutRecord",
    "PayoutStatus",
    "PegInClaimed",
    "PegOutEntry",
    "PegOutRequested",
    "PegOutState",
    "PegOutStatus",
    "Reserves",
    "extract_block_events",
    "federation_script_pubkey",
    "witness_script",
]

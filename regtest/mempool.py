"""The mempool: acceptance with Bitcoin Core's checks, in Core's order, and its
reject reasons; BIP125 replacement; block templates.

| step (Core's PreChecks ... ConsensusScriptChecks) | reject reason (RPC code -26 unless noted)      |
|---------------------------------------------------|------------------------------------------------|
| context-free transaction checks                   | bad-txns-vin-empty, bad-txns-inputs-duplicate, ... |
| coinbase                                          | coinbase                                       |
| standardness (policy)                             | version, tx-size, scriptsig-size,              |
|                                                   | scriptsig-not-pushonly, scriptpubkey,          |
|                                                   | bare-multisig, dust, multi-op-return,          |
|                                                   | tx-size-small                                  |
| final at the next block                           | non-final                                      |
| already known                                     | txn-already-in-mempool,                        |
|                                                   | txn-same-nonwitness-data-in-mempool            |
| conflicts with a non-replaceable transaction      | txn-mempool-conflict                           |
| inputs                                            | bad-txns-inputs-missingorspent (code -25),     |
|                                                   | txn-already-known                              |
| BIP68 at the next block                           | non-BIP68-final                                |
| amounts, maturity                                 | bad-txns-in-belowout,                          |
|                                                   | bad-txns-premature-spend-of-coinbase, ...      |
| input and witness standardness                    | bad-txns-nonstandard-inputs,                   |
|                                                   | bad-witness-nonstandard                        |
| fee                                               | min relay fee not met                          |
| chain limits                                      | too-long-mempool-chain                         |
| replacement (BIP125)                              | bad-txns-spends-conflicting-tx,                |
|                                                   | too many potential replacements,               |
|                                                   | replacement-adds-unconfirmed, insufficient fee |
| scripts, standard flags then mandatory ones       | non-mandatory-script-verify-flag (...),        |
|                                                   | mandatory-script-verify-flag-failed (...)      |

Replacement follows Core 27's opt-in rule by default: a transaction is
replaceable when one of its inputs has nSequence < 0xfffffffe. ``full_rbf``
makes every transaction replaceable (Core 28's default, ``-mempoolfullrbf``).
Not modelled: package relay, TRUC (v3) topology rules, sigop limits, the
mempool size limit and its minimum fee, descendant limits.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field

from .chain import MEMPOOL_HEIGHT, Chain, Coin, Kind, ValidationError, format_money, is_final_tx
from .params import ChainParams
from .primitives import OutPoint, Transaction
from .script import (
    MANDATORY_FLAGS,
    STANDARD_FLAGS,
    SigVersion,
    TxoutType,
    eval_script,
    is_p2sh,
    is_push_only,
    is_unspendable,
    iter_ops,
    solve,
)

MAX_ANCESTORS = 25
MAX_STANDARD_SCRIPTSIG_SIZE = 1650
MIN_STANDARD_TX_NONWITNESS_SIZE = 65
MAX_STANDARD_P2WSH_SCRIPT_SIZE = 3600
MAX_STANDARD_P2WSH_STACK_ITEMS = 100
MAX_STANDARD_P2WSH_STACK_ITEM_SIZE = 80
MAX_P2SH_SIGOPS = 15


def fee_for(feerate_sat_per_kvb: int, vsize: int) -> int:
    """CFeeRate::GetFee, which rounds up."""
    return math.ceil(feerate_sat_per_kvb * vsize / 1000)


def format_feerate(fee: int, vsize: int) -> str:
    """CFeeRate::ToString (BTC/kvB) of fee over vsize, truncated as Core's CFeeRate."""
    per_k = fee * 1000 // vsize if vsize else 0
    return f"{per_k // 100_000_000}.{per_k % 100_000_000:08d} BTC/kvB"


def signals_rbf(tx: Transaction) -> bool:
    return any(txin.sequence < 0xFFFFFFFE for txin in tx.vin)


@dataclass
class Entry:
    tx: Transaction
    fee: int
    time: int
    height: int  # chain height when it entered
    parents: set[bytes] = field(default_factory=set)
    children: set[bytes] = field(default_factory=set)

    @property
    def vsize(self) -> int:
        return self.tx.vsize


@dataclass(frozen=True)
class Accepted:
    tx: Transaction
    fee: int
    vsize: int
    replaced: tuple[bytes, ...]


def dust_threshold(script_pubkey: bytes, dust_feerate: int) -> int:
    """Core's GetDustThreshold: what spending the output would cost at the dust fee rate."""
    if is_unspendable(script_pubkey):
        return 0
    size = 8 + 1 + len(script_pubkey) if len(script_pubkey) < 0xFD else 8 + 3 + len(script_pubkey)
    kind = solve(script_pubkey).kind
    witness = kind in (
        TxoutType.WITNESS_V0_KEYHASH,
        TxoutType.WITNESS_V0_SCRIPTHASH,
        TxoutType.WITNESS_V1_TAPROOT,
        TxoutType.WITNESS_UNKNOWN,
        TxoutType.ANCHOR,
    )
    # An input spending it: outpoint, sequence, script length, and a typical
    # scriptSig (107 bytes), of which a witness pays a quarter.
    size += 32 + 4 + 1 + (107 // 4) + 4 if witness else 32 + 4 + 1 + 107 + 4
    return fee_for(dust_feerate, size)


def _legacy_sigops(script: bytes, accurate: bool) -> int:
    count = 0
    last = -1
    try:
        for op, _, _ in iter_ops(script):
            if op in (0xAC, 0xAD):
                count += 1
            elif op in (0xAE, 0xAF):
                count += (last - 0x50) if accurate and 0x51 <= last <= 0x60 else 20
            last = op
    except ValueError:
        pass
    return count


class Mempool:
    def __init__(self, chain: Chain, params: ChainParams, full_rbf: bool = False) -> None:
        self.chain = chain
        self.params = params
        self.full_rbf = full_rbf
        self.entries: dict[bytes, Entry] = {}
        self.by_wtxid: dict[bytes, bytes] = {}
        self.spenders: dict[OutPoint, bytes] = {}
        self.sequence = 0  # bumps on every change, for getrawmempool's mempool_sequence

    def clone(self) -> Mempool:
        """A scratch copy (for package tests) that shares the chain."""
        other = Mempool(self.chain, self.params, self.full_rbf)
        for txid, e in self.entries.items():
            other.entries[txid] = Entry(e.tx, e.fee, e.time, e.height, set(e.parents), set(e.children))
        other.by_wtxid = dict(self.by_wtxid)
        other.spenders = dict(self.spenders)
        return other

    # --- views ------------------------------------------------------------------------------

    def coin(self, op: OutPoint) -> Coin | None:
        """A coin from the chain or created by a mempool transaction (spent or not)."""
        entry = self.entries.get(op.txid)
        if entry is not None:
            if op.n < len(entry.tx.vout) and not is_unspendable(entry.tx.vout[op.n].script_pubkey):
                return Coin(entry.tx.vout[op.n], MEMPOOL_HEIGHT, False)
            return None
        return self.chain.utxo.get(op)

    def ancestors(self, txid: bytes) -> set[bytes]:
        seen: set[bytes] = set()
        stack = list(self.entries[txid].parents)
        while stack:
            t = stack.pop()
            if t not in seen:
                seen.add(t)
                stack.extend(self.entries[t].parents)
        return seen

    def descendants(self, txid: bytes) -> set[bytes]:
        seen: set[bytes] = set()
        stack = list(self.entries[txid].children)
        while stack:
            t = stack.pop()
            if t not in seen:
                seen.add(t)
                stack.extend(self.entries[t].children)
        return seen

    def ordered(self) -> list[Entry]:
        """Every entry, parents before children (by entry order, then depth)."""
        out: list[Entry] = []
        placed: set[bytes] = set()

        def place(txid: bytes) -> None:
            if txid in placed:
                return
            for parent in sorted(self.entries[txid].parents):
                place(parent)
            placed.add(txid)
            out.append(self.entries[txid])

        for txid in list(self.entries):
            place(txid)
        return out

    # --- acceptance -----------------------------------------------------------------------------

    def accept(self, tx: Transaction, now: int, test_only: bool = False) -> Accepted:
        """Validate ``tx`` for the next block; add it unless ``test_only``.
        Raises ValidationError with Core's reason."""
        chain = self.chain
        params = self.params
        next_height = chain.height + 1
        chain.check_transaction(tx)
        if tx.is_coinbase():
            raise ValidationError(Kind.CONSENSUS, "coinbase")
        self._check_standard(tx)
        if tx.stripped_size < MIN_STANDARD_TX_NONWITNESS_SIZE:
            raise ValidationError(Kind.NOT_STANDARD, "tx-size-small")
        if not is_final_tx(tx, next_height, chain.tip.mtp):
            raise ValidationError(Kind.PREMATURE_SPEND, "non-final")
        if tx.wtxid in self.by_wtxid:
            raise ValidationError(Kind.CONFLICT, "txn-already-in-mempool")
        if tx.txid in self.entries:
            raise ValidationError(Kind.CONFLICT, "txn-same-nonwitness-data-in-mempool")

        direct_conflicts: set[bytes] = set()
        for txin in tx.vin:
            spender = self.spenders.get(txin.prevout)
            if spender is not None and spender not in direct_conflicts:
                if not self.full_rbf and not signals_rbf(self.entries[spender].tx):
                    raise ValidationError(Kind.MEMPOOL_POLICY, "txn-mempool-conflict")
                direct_conflicts.add(spender)

        coins: list[Coin] = []
        for txin in tx.vin:
            coin = self.coin(txin.prevout)
            if coin is None:
                if any(OutPoint(tx.txid, n) in chain.utxo for n in range(len(tx.vout))):
                    raise ValidationError(Kind.CONFLICT, "txn-already-known")
                raise ValidationError(Kind.MISSING_INPUTS, "bad-txns-inputs-missingorspent")
            coins.append(coin)

        heights = [next_height if c.height == MEMPOOL_HEIGHT else c.height for c in coins]
        min_height, min_time = chain.sequence_locks(tx, heights, chain.tip)
        if min_height >= next_height or min_time >= chain.tip.mtp:
            raise ValidationError(Kind.PREMATURE_SPEND, "non-BIP68-final")

        fee = chain.check_tx_inputs(tx, coins, next_height)
        self._check_inputs_standard(tx, coins)
        self._check_witness_standard(tx, coins)

        vsize = tx.vsize
        min_fee = fee_for(params.min_relay_feerate, vsize)
        if fee < min_fee:
            raise ValidationError(Kind.RECONSIDERABLE, "min relay fee not met", f"{fee} < {min_fee}")

        parents = {txin.prevout.txid for txin in tx.vin if txin.prevout.txid in self.entries}
        ancestors: set[bytes] = set(parents)
        for p in parents:
            ancestors |= self.ancestors(p)
        if len(ancestors) + 1 > MAX_ANCESTORS:
            raise ValidationError(
                Kind.MEMPOOL_POLICY,
                "too-long-mempool-chain",
                f"too many unconfirmed ancestors [limit: {MAX_ANCESTORS}]",
            )

        evicted: set[bytes] = set()
        if direct_conflicts:
            evicted = self._replacement_checks(tx, fee, vsize, direct_conflicts, ancestors)

        script_failure = chain.check_scripts(tx, coins, STANDARD_FLAGS)
        if script_failure is not None:
            mandatory = chain.check_scripts(tx, coins, MANDATORY_FLAGS)
            if mandatory is None:
                reason = f"non-mandatory-script-verify-flag ({script_failure[1]})"
                raise ValidationError(Kind.NOT_STANDARD, reason)
            raise ValidationError(Kind.CONSENSUS, f"mandatory-script-verify-flag-failed ({mandatory[1]})")

        if not test_only:
            for txid in evicted:
                self._remove_one(txid)
            entry = Entry(tx, fee, now, chain.height, parents)
            self.entries[tx.txid] = entry
            self.by_wtxid[tx.wtxid] = tx.txid
            for txin in tx.vin:
                self.spenders[txin.prevout] = tx.txid
            for p in parents:
                self.entries[p].children.add(tx.txid)
            self.sequence += 1
        return Accepted(tx, fee, vsize, tuple(sorted(evicted)))

    def _check_standard(self, tx: Transaction) -> None:
        params = self.params
        if tx.version > params.max_standard_version or tx.version < 1:
            raise ValidationError(Kind.NOT_STANDARD, "version")
        if tx.weight > params.max_standard_tx_weight:
            raise ValidationError(Kind.NOT_STANDARD, "tx-size")
        for txin in tx.vin:
            if len(txin.script_sig) > MAX_STANDARD_SCRIPTSIG_SIZE:
                raise ValidationError(Kind.NOT_STANDARD, "scriptsig-size")
            if not is_push_only(txin.script_sig):
                raise ValidationError(Kind.NOT_STANDARD, "scriptsig-not-pushonly")
        data_outputs = 0
        for out in tx.vout:
            sol = solve(out.script_pubkey)
            if sol.kind is TxoutType.NONSTANDARD or sol.kind is TxoutType.WITNESS_V1_TAPROOT:
                # Taproot is standard in Core; this stand-in cannot validate its spends.
                raise ValidationError(Kind.NOT_STANDARD, "scriptpubkey")
            if sol.kind is TxoutType.NULL_DATA:
                if len(out.script_pubkey) > params.max_op_return_relay:
                    raise ValidationError(Kind.NOT_STANDARD, "scriptpubkey")
                data_outputs += 1
            elif sol.kind is TxoutType.MULTISIG:
                raise ValidationError(Kind.NOT_STANDARD, "bare-multisig")
            elif out.value < dust_threshold(out.script_pubkey, params.dust_relay_feerate):
                raise ValidationError(Kind.NOT_STANDARD, "dust")
        if data_outputs > 1:
            raise ValidationError(Kind.NOT_STANDARD, "multi-op-return")

    def _check_inputs_standard(self, tx: Transaction, coins: list[Coin]) -> None:
        for txin, coin in zip(tx.vin, coins, strict=True):
            kind = solve(coin.out.script_pubkey).kind
            if kind in (TxoutType.NONSTANDARD, TxoutType.WITNESS_UNKNOWN):
                raise ValidationError(Kind.NOT_STANDARD, "bad-txns-nonstandard-inputs")
            if kind is TxoutType.SCRIPTHASH:
                stack: list[bytes] = []
                try:
                    eval_script(stack, txin.script_sig, 0, None, SigVersion.BASE)
                except Exception:
                    raise ValidationError(Kind.NOT_STANDARD, "bad-txns-nonstandard-inputs") from None
                if not stack or _legacy_sigops(stack[-1], True) > MAX_P2SH_SIGOPS:
                    raise ValidationError(Kind.NOT_STANDARD, "bad-txns-nonstandard-inputs")

    def _check_witness_standard(self, tx: Transaction, coins: list[Coin]) -> None:
        for txin, coin in zip(tx.vin, coins, strict=True):
            if not txin.witness:
                continue
            spk = coin.out.script_pubkey
            if is_p2sh(spk):
                stack: list[bytes] = []
                try:
                    eval_script(stack, txin.script_sig, 0, None, SigVersion.BASE)
                except Exception:
                    raise ValidationError(Kind.NOT_STANDARD, "bad-witness-nonstandard") from None
                if not stack:
                    raise ValidationError(Kind.NOT_STANDARD, "bad-witness-nonstandard")
                spk = stack[-1]
            kind = solve(spk).kind
            if kind is TxoutType.WITNESS_V0_SCRIPTHASH:
                script = txin.witness[-1]
                items = txin.witness[:-1]
                if (
                    len(script) > MAX_STANDARD_P2WSH_SCRIPT_SIZE
                    or len(items) > MAX_STANDARD_P2WSH_STACK_ITEMS
                    or any(len(i) > MAX_STANDARD_P2WSH_STACK_ITEM_SIZE for i in items)
                ):
                    raise ValidationError(Kind.NOT_STANDARD, "bad-witness-nonstandard")

    def _replacement_checks(
        self, tx: Transaction, fee: int, vsize: int, direct: set[bytes], ancestors: set[bytes]
    ) -> set[bytes]:
        txid_hex = tx.txid_hex
        for a in ancestors:
            if a in direct:
                raise ValidationError(
                    Kind.CONSENSUS,
                    "bad-txns-spends-conflicting-tx",
                    f"{txid_hex} spends conflicting transaction {a[::-1].hex()}",
                )
        # Core's order (ReplacementChecks): rule 6, 5, 2, then 3 and 4.
        for c in sorted(direct):
            old = self.entries[c]
            # Compared as CFeeRate does, in whole sat/kvB.
            if fee * 1000 // vsize <= old.fee * 1000 // old.vsize:
                raise ValidationError(
                    Kind.RECONSIDERABLE,
                    "insufficient fee",
                    f"rejecting replacement {txid_hex}; new feerate {format_feerate(fee, vsize)} "
                    f"<= old feerate {format_feerate(old.fee, old.vsize)}",
                )
        all_conflicts: set[bytes] = set(direct)
        for c in direct:
            all_conflicts |= self.descendants(c)
        if len(all_conflicts) > self.params.max_rbf_evictions:
            raise ValidationError(
                Kind.MEMPOOL_POLICY,
                "too many potential replacements",
                f"rejecting replacement {txid_hex}; too many potential replacements "
                f"({len(all_conflicts)} > {self.params.max_rbf_evictions})",
            )
        conflict_parents: set[bytes] = set()
        for c in direct:
            conflict_parents |= {txin.prevout.txid for txin in self.entries[c].tx.vin}
        for i, txin in enumerate(tx.vin):
            if txin.prevout.txid in self.entries and txin.prevout.txid not in conflict_parents:
                raise ValidationError(
                    Kind.MEMPOOL_POLICY,
                    "replacement-adds-unconfirmed",
                    f"replacement {txid_hex} adds unconfirmed input, idx {i}",
                )
        conflict_fees = sum(self.entries[c].fee for c in all_conflicts)
        if fee < conflict_fees:
            raise ValidationError(
                Kind.MEMPOOL_POLICY,
                "insufficient fee",
                f"rejecting replacement {txid_hex}, less fees than conflicting txs; "
                f"{format_money(fee)} < {format_money(conflict_fees)}",
            )
        relay = fee_for(self.params.incremental_relay_feerate, vsize)
        if fee - conflict_fees < relay:
            raise ValidationError(
                Kind.MEMPOOL_POLICY,
                "insufficient fee",
                f"rejecting replacement {txid_hex}, not enough additional fees to relay; "
                f"{format_money(fee - conflict_fees)} < {format_money(relay)}",
            )
        return all_conflicts

    # --- removal ------------------------------------------------------------------------------

    def _remove_one(self, txid: bytes) -> None:
        entry = self.entries.pop(txid, None)
        if entry is None:
            return
        self.by_wtxid.pop(entry.tx.wtxid, None)
        for txin in entry.tx.vin:
            if self.spenders.get(txin.prevout) == txid:
                del self.spenders[txin.prevout]
        for p in entry.parents:
            if p in self.entries:
                self.entries[p].children.discard(txid)
        for c in entry.children:
            if c in self.entries:
                self.entries[c].parents.discard(txid)
        self.sequence += 1

    def remove_recursive(self, txid: bytes) -> set[bytes]:
        if txid not in self.entries:
            return set()
        doomed = {txid} | self.descendants(txid)
        for t in doomed:
            self._remove_one(t)
        return doomed

    def remove_for_block(self, txs: tuple[Transaction, ...]) -> None:
        """A block connected: drop what it confirmed, and what now conflicts with it."""
        for tx in txs:
            if tx.txid in self.entries:
                entry = self.entries[tx.txid]
                # Its children now spend a confirmed output.
                for c in entry.children:
                    if c in self.entries:
                        self.entries[c].parents.discard(tx.txid)
                entry.children.clear()
                self._remove_one(tx.txid)
        for tx in txs:
            for txin in tx.vin:
                spender = self.spenders.get(txin.prevout)
                if spender is not None and spender != tx.txid:
                    self.remove_recursive(spender)

    def rebuild(self, returned: list[Transaction], now: int) -> None:
        """After a reorg: re-validate everything against the new tip, returned
        transactions (from disconnected blocks) first, dropping what fails."""
        previous = [e.tx for e in self.ordered()]
        times = {e.tx.txid: e.time for e in self.entries.values()}
        self.entries.clear()
        self.by_wtxid.clear()
        self.spenders.clear()
        self.sequence += 1
        for tx in [*returned, *previous]:
            if tx.is_coinbase() or tx.txid in self.chain.txindex:
                continue
            with contextlib.suppress(ValidationError):
                self.accept(tx, times.get(tx.txid, now))

    def block_template(self, max_weight: int) -> tuple[list[Transaction], int]:
        """Transactions for the next block (parents first, within the weight) and their fees."""
        chosen: list[Transaction] = []
        included: set[bytes] = set()
        weight = 4000  # Core reserves room for the coinbase
        fees = 0
        for entry in self.ordered():
            if not entry.parents <= included:
                continue
            if weight + entry.tx.weight > max_weight:
                continue
            chosen.append(entry.tx)
            included.add(entry.tx.txid)
            weight += entry.tx.weight
            fees += entry.fee
        return chosen, fees

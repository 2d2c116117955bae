"""The mempool: transactions waiting for a block.

A transaction enters only if it validates against the confirmed chain state
and spends nothing another mempool transaction spends (Elements'
``txn-mempool-conflict``; a peg-in claimed twice conflicts the same way). The
proposer fills its block by fee rate within the weight limit. After every
block the pool drops what the block confirmed or conflicted with, and
re-validates the rest.
"""

from __future__ import annotations

from dataclasses import dataclass

from consensus.block import Block
from consensus.chainstate import ChainState
from consensus.errors import ValidationError
from consensus.transaction import Transaction

from .errors import FunctionaryError

COINBASE_RESERVE = 8_000
"""Weight units kept free for the coinbase and the block's solution."""


class MempoolError(FunctionaryError):
    pass


class TxRejected(MempoolError):
    """The transaction breaks a consensus rule; ``reason`` is the rule's name."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


class MempoolConflict(MempoolError):
    """Spends an outpoint (or claims a peg-in) another mempool transaction
    already spends (txn-mempool-conflict)."""


class AlreadyInMempool(MempoolError):
    pass


class MempoolFull(MempoolError):
    pass


@dataclass(frozen=True)
class MempoolEntry:
    tx: Transaction
    fee: int
    weight: int
    received_at: float

    @property
    def txid(self) -> bytes:
        return self.tx.txid

    @property
    def fee_rate(self) -> float:
        """Satoshis per virtual byte."""
        return self.fee * 4 / self.weight


class Mempool:
    def __init__(self, chain: ChainState, max_total_weight: int = 40_000_000) -> None:
        self.chain = chain
        self.max_total_weight = max_total_weight
        self._entries: dict[bytes, MempoolEntry] = {}
        self._spent: dict[tuple[bytes, int], bytes] = {}
        self._weight = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, txid: bytes) -> bool:
        return txid in self._entries

    @property
    def total_weight(self) -> int:
        return self._weight

    def entries(self) -> list[MempoolEntry]:
        return list(self._entries.values())

    @staticmethod
    def _spends(tx: Transaction) -> list[tuple[bytes, int]]:
        return [(i.prevout.txid, i.prevout.index) for i in tx.inputs]

    def add(self, tx: Transaction, now: float) -> MempoolEntry:
        txid = tx.txid
        if txid in self._entries:
            raise AlreadyInMempool(txid[::-1].hex())
        if tx.is_coinbase:
            raise TxRejected("BadCoinbase", "a coinbase is only valid in a block")
        for op in self._spends(tx):
            other = self._spent.get(op)
            if other is not None:
                raise MempoolConflict(f"input {op[0][::-1].hex()}:{op[1]} already spent by {other[::-1].hex()}")
        try:
            fee = self.chain.validate_transaction(tx)
        except ValidationError as e:
            raise TxRejected(e.code, str(e)) from None
        weight = tx.weight
        if self._weight + weight > self.max_total_weight:
            raise MempoolFull(f"mempool holds {self._weight} weight units")
        entry = MempoolEntry(tx, fee, weight, now)
        self._entries[txid] = entry
        for op in self._spends(tx):
            self._spent[op] = txid
        self._weight += weight
        return entry

    def _remove(self, txid: bytes) -> None:
        entry = self._entries.pop(txid, None)
        if entry is None:
            return
        for op in self._spends(entry.tx):
            if self._spent.get(op) == txid:
                del self._spent[op]
        self._weight -= entry.weight

    def select(self, max_weight: int | None = None) -> list[Transaction]:
        """The highest fee-rate transactions that fit in one block."""
        budget = (self.chain.params.max_block_weight if max_weight is None else max_weight) - COINBASE_RESERVE
        chosen: list[Transaction] = []
        used = 0
        for entry in sorted(self._entries.values(), key=lambda e: (-e.fee_rate, e.received_at, e.txid)):
            if used + entry.weight <= budget:
                chosen.append(entry.tx)
                used += entry.weight
        return chosen

    def evictions(self, block: Block) -> list[bytes]:
        """What ``block`` (already connected to the chain) confirms or
        conflicts with, plus whatever no longer validates on the new tip
        (checked again: each transaction with a peg-in or an input no longer
        in the UTXO set; see the loop for why that is all).
        Changes nothing: the caller persists first, then calls :meth:`remove`,
        so a transaction is never in neither the mempool nor storage."""
        evicted: dict[bytes, None] = {}
        for tx in block.transactions:
            if tx.txid in self._entries:
                evicted[tx.txid] = None
            for op in self._spends(tx):
                other = self._spent.get(op)
                if other is not None:
                    evicted[other] = None
        utxos = self.chain.utxos
        for txid, entry in self._entries.items():
            if txid in evicted:
                continue
            if all(not i.is_pegin and i.prevout in utxos for i in entry.tx.inputs):
                # Every input is the very output it was checked against, so
                # nothing the block changed can make this invalid: the other
                # rules depend on the transaction alone, or on height and
                # median time, which only ever make it more final and its
                # coinbase inputs more mature. A peg-in also depends on the
                # mainchain, so those are checked again.
                continue
            try:
                self.chain.validate_transaction(entry.tx)
            except ValidationError:
                evicted[txid] = None
        return list(evicted)

    def remove(self, txids: list[bytes]) -> None:
        for txid in txids:
            self._remove(txid)

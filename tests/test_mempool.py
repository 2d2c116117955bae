"""The mempool: admission, selection, and what a block evicts.

After a block, an entry is checked again only if the block could have
changed its validity: it has a peg-in, or an input the block spent. Every
other entry spends the very outputs it was checked against, and the rules
left (height and median time) only ever make it more valid; these tests pin
both halves: what must go goes, and what stays is not re-validated.
"""

from __future__ import annotations

import pytest

from consensus import errors
from consensus.chainstate import COIN, ChainState
from consensus.transaction import OutPoint, Transaction, TxOut
from functionary.mempool import AlreadyInMempool, Mempool, MempoolConflict, TxRejected
from tests.test_chainstate import (
    ALICE,
    BOB,
    CAROL,
    FREE,
    Harness,
    PegHarness,
    _pegin_tx,
    fee,
    pay,
    spend,
    spk,
)


def _split(hx: Harness, parts: int) -> list[tuple[OutPoint, int]]:
    """Mine one block splitting Alice's genesis coin into ``parts`` coins of hers."""
    each = (FREE - 100) // parts
    tx = spend(ALICE, hx.genesis_coin, FREE, [*[pay(each, spk(ALICE)) for _ in range(parts)], fee(FREE - each * parts)])
    hx.mine([tx])
    return [(OutPoint(tx.txid, i), each) for i in range(parts)]


def _pay(coin: tuple[OutPoint, int], to: bytes = b"", f: int = 100) -> Transaction:
    op, value = coin
    return spend(ALICE, op, value, [pay(value - f, to or spk(BOB)), fee(f)])


class Counting:
    """Counts validate_transaction calls on a chain."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.txids: list[bytes] = []
        original = ChainState.validate_transaction

        def counting(chain: ChainState, tx: Transaction, **kw: object) -> int:
            self.txids.append(tx.txid)
            return original(chain, tx, **kw)  # type: ignore[arg-type]

        monkeypatch.setattr(ChainState, "validate_transaction", counting)


def test_admission_rules() -> None:
    hx = Harness()
    coins = _split(hx, 2)
    pool = Mempool(hx.chain)
    tx = _pay(coins[0])
    entry = pool.add(tx, 1.0)
    assert entry.fee == 100 and tx.txid in pool and len(pool) == 1
    with pytest.raises(AlreadyInMempool):
        pool.add(tx, 2.0)
    with pytest.raises(MempoolConflict):
        pool.add(_pay(coins[0], spk(CAROL)), 2.0)
    with pytest.raises(TxRejected) as rejected:
        pool.add(spend(BOB, coins[1][0], coins[1][1], [pay(coins[1][1] - 100, spk(BOB)), fee(100)]), 2.0)
    assert rejected.value.reason == "ScriptVerifyError"  # Bob's key does not match the coin's script
    assert pool.select() == [tx]


def test_a_block_evicts_what_it_confirms_and_what_it_conflicts_with(monkeypatch: pytest.MonkeyPatch) -> None:
    hx = Harness()
    coins = _split(hx, 4)
    pool = Mempool(hx.chain)
    confirmed, conflicted, kept, also_kept = (_pay(c) for c in coins)
    for tx in (confirmed, conflicted, kept, also_kept):
        pool.add(tx, 1.0)
    rival = _pay(coins[1], spk(CAROL))  # spends what `conflicted` spends
    block, _ = hx.mine([confirmed, rival])
    counting = Counting(monkeypatch)
    evicted = pool.evictions(block)
    assert set(evicted) == {confirmed.txid, conflicted.txid}
    assert counting.txids == []  # the two others spend untouched outputs: not re-validated
    pool.remove(evicted)
    assert {e.txid for e in pool.entries()} == {kept.txid, also_kept.txid}
    # What stayed is indeed still valid on the new tip.
    for e in pool.entries():
        hx.chain.validate_transaction(e.tx)


def test_entries_with_pegins_are_checked_again_after_every_block(monkeypatch: pytest.MonkeyPatch) -> None:
    hx = PegHarness()
    claim = _pegin_tx(OutPoint(b"\x88" * 32, 1), 5 * COIN)
    pool = Mempool(hx.chain)
    pool.add(claim, 1.0)
    block, _ = hx.mine([])
    counting = Counting(monkeypatch)
    assert pool.evictions(block) == []
    assert counting.txids == [claim.txid]
    # A claim of the same mainchain output confirmed by someone else's
    # transaction evicts it (a conflict on the claimed outpoint).
    other = _pegin_tx(OutPoint(b"\x88" * 32, 1), 5 * COIN, CAROL)
    block, _ = hx.mine([other])
    assert pool.evictions(block) == [claim.txid]


def test_an_entry_that_no_longer_validates_is_evicted(monkeypatch: pytest.MonkeyPatch) -> None:
    hx = PegHarness()
    claim = _pegin_tx(OutPoint(b"\x88" * 32, 1), 5 * COIN)
    pool = Mempool(hx.chain)
    pool.add(claim, 1.0)

    def refuse(tx: Transaction, index: int, height: int) -> TxOut:
        raise errors.PegInError("the mainchain block is gone")

    monkeypatch.setattr(hx.pegins, "verify_pegin", refuse)  # the mainchain reorganized
    block, _ = hx.mine([])
    assert pool.evictions(block) == [claim.txid]

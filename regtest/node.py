"""The node: chain, mempool, wallet and store behind one lock, with the clock.

Every RPC runs under ``Node.lock``; a call sees and leaves a consistent state.
Changes to the chain are persisted before the call returns (each new block is
written as it enters the index). ``now()`` is the wall clock unless
``setmocktime`` fixed it, as in Core's regtest.

| lifecycle | what happens                                                                 |
|-----------|------------------------------------------------------------------------------|
| start     | open the store; replay stored blocks through full validation; reload the     |
|           | mempool saved at the last clean shutdown; RPC answers -28 (warming up) until |
|           | this is done                                                                 |
| run       | RPC calls                                                                    |
| stop      | save the mempool, checkpoint and close the database                          |
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from .chain import BlockEntry, Chain, Kind, ValidationError
from .mempool import Accepted, Mempool
from .params import ChainParams
from .primitives import Block, DeserializationError, OutPoint, Transaction
from .store import Store
from .wallet import Wallet

log = logging.getLogger("regtest")

MAX_TIP_AGE = 24 * 60 * 60  # Core's -maxtipage: older tips mean "initial block download"


class Node:
    def __init__(
        self,
        datadir: Path,
        params: ChainParams,
        *,
        full_rbf: bool = False,
        fallback_feerate: int = 20_000,
        fixed_feerate: int | None = None,
    ) -> None:
        self.datadir = datadir
        self.params = params
        self.lock = threading.RLock()
        self.chain = Chain(params)
        self.mempool = Mempool(self.chain, params, full_rbf=full_rbf)
        self.store: Store | None = None
        self.wallet: Wallet | None = None
        self.fallback_feerate = fallback_feerate  # sat/kvB, the wallet's when estimation has no data
        self.fixed_feerate = fixed_feerate  # sat/kvB, what estimatesmartfee answers when set
        self.mocktime = 0
        self.started = time.time()
        self.ready = False
        self.stop_requested = False
        self.warmup_status = "Loading block index…"
        self._ibd = True

    # --- clock ----------------------------------------------------------------------------------

    def now(self) -> int:
        return self.mocktime or int(time.time())

    def initial_block_download(self) -> bool:
        # Latches to False, as Core's, once the tip is recent.
        if self._ibd and self.chain.tip.header.time >= self.now() - MAX_TIP_AGE:
            self._ibd = False
        return self._ibd

    # --- lifecycle --------------------------------------------------------------------------------

    def load(self) -> None:
        with self.lock:
            store = Store(self.datadir, self.params.name)
            self.store = store
            count = 0
            invalidated: list[BlockEntry] = []
            for data, invalid in store.blocks():
                block = Block.from_bytes(data)
                try:
                    # Stored blocks were timely when received: no time-too-new check on replay.
                    entry, _ = self.chain.add_block(block, now=None)
                except ValidationError as err:
                    log.warning("stored block %s refused on replay: %s", block.hash_hex, err)
                    continue
                if invalid:
                    invalidated.append(entry)
                count += 1
            # Marked after every block is indexed, so that their descendants load too.
            for entry in invalidated:
                entry.manually_invalid = True
                self.chain.mark_invalid(entry)
            self.warmup_status = "Verifying blocks…"
            _, _, failures = self.chain.activate_best_chain()
            for entry, failure in failures:
                log.warning("stored block %s failed validation on replay: %s", entry.header.hash_hex, failure)
            self.warmup_status = "Loading wallet…"
            self.wallet = Wallet(store, self.params)
            restored = 0
            for raw, t in store.take_mempool():
                try:
                    self.mempool.accept(Transaction.from_bytes(raw), t)
                    restored += 1
                except (ValidationError, DeserializationError):
                    pass
            log.info(
                "loaded %d stored blocks, height %d, tip %s; %d mempool transactions restored",
                count,
                self.chain.height,
                self.chain.tip.header.hash_hex,
                restored,
            )
            self.warmup_status = "Done loading"
            self.ready = True

    def shutdown(self) -> None:
        with self.lock:
            if self.store is None:
                return
            entries = self.mempool.ordered()
            self.store.save_mempool([(e.tx.serialize(), e.time) for e in entries])
            self.store.close()
            self.store = None
            self.ready = False

    # --- chain changes ------------------------------------------------------------------------------

    def _activate(self) -> list[tuple[bytes, ValidationError]]:
        disconnected, connected, failures = self.chain.activate_best_chain()
        if disconnected:
            returned = [tx for block in reversed(disconnected) for tx in block.txs[1:]]
            self.mempool.rebuild(returned, self.now())
        else:
            for block in connected:
                self.mempool.remove_for_block(block.txs)
        return [(entry.hash, err) for entry, err in failures]

    def process_block(self, block: Block) -> tuple[bool, ValidationError | None]:
        """Check, store and (if it has the most work) connect a block.
        Returns (new, error): error is the block's own rejection, if any."""
        assert self.store is not None
        try:
            entry, new = self.chain.add_block(block, self.now())
        except ValidationError as err:
            return False, err
        if not new:
            return False, None
        self.store.add_block(block.hash, block.serialize())
        for failed_hash, failure in self._activate():
            if failed_hash == entry.hash:
                return True, failure
        return True, None

    def generate(self, script_pubkey: bytes, count: int, max_tries: int) -> list[str]:
        hashes: list[str] = []
        tries_left = max_tries
        for _ in range(count):
            txs, fees = self.mempool.block_template(self.params.max_block_weight)
            template = self.chain.create_block(script_pubkey, txs, fees, self.chain.next_block_time(self.now()))
            solved = self.chain.solve(template, tries_left)
            if solved is None:
                break
            tries_left -= solved.header.nonce + 1
            _, err = self.process_block(solved)
            if err is not None:
                raise err
            hashes.append(solved.hash_hex)
        return hashes

    def invalidate(self, block_hash: bytes) -> None:
        assert self.store is not None
        entry = self.chain.index[block_hash]
        disconnected = self.chain.invalidate(entry)
        self.store.set_invalid(block_hash, True)
        if disconnected:
            returned = [tx for block in reversed(disconnected) for tx in block.txs[1:]]
            self.mempool.rebuild(returned, self.now())

    def reconsider(self, block_hash: bytes) -> None:
        assert self.store is not None
        entry = self.chain.index[block_hash]
        self.chain.reconsider(entry)
        e: BlockEntry | None = entry
        while e is not None:
            self.store.set_invalid(e.hash, False)
            e = e.prev
        stack = list(entry.children)
        while stack:
            child = stack.pop()
            self.store.set_invalid(child.hash, False)
            stack.extend(child.children)
        self._activate()

    def accept_to_mempool(self, tx: Transaction, test_only: bool = False) -> Accepted:
        return self.mempool.accept(tx, self.now(), test_only=test_only)

    def already_in_utxo_set(self, tx: Transaction) -> bool:
        return any(OutPoint(tx.txid, n) in self.chain.utxo for n in range(len(tx.vout)))


__all__ = ["Kind", "Node", "ValidationError"]

"""The watchmen inside a member process: the I/O around functionary.watchmen.

    sidechain block committed ──▶ ledger.apply_block (stored with the block)
                                   └─ payout round and we lead ──▶ plan ──▶ PayoutProposal
    PayoutProposal ──▶ check, persist signer state, THEN PayoutSignatures ──▶ leader
    leader: m signatures ──▶ combine ──▶ sendrawtransaction ──▶ PayoutComplete
    PayoutComplete ──▶ ledger.record_payout
    mainchain poll ──▶ confirm payouts at depth ──▶ ledger.confirm_payout

One lock serialises every change to the ledger, so a block's ledger update
(written in the same storage transaction as the block) never interleaves
with a payout being recorded. The leader of payout round h is member
``h mod n``: leadership rotates every payout interval, so a dead leader
only delays payouts by one interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from consensus.block import Block
from consensus.errors import ParseError
from consensus.mainchain import BtcTransaction

from .bitcoind import AsyncBitcoinRpc, MainchainError
from .log import event
from .mainchain_view import BitcoindView
from .watchmen import LEDGER_KEY, SIGNER_STATE_KEY
from .watchmen.errors import WatchmenError
from .watchmen.ledger import Ledger, extract_block_events
from .watchmen.messages import (
    PayoutComplete,
    PayoutMessage,
    PayoutProposal,
    PayoutRefused,
    PayoutSignatures,
    parse_message,
)
from .watchmen.params import WatchmenParams
from .watchmen.payout import feerate_from_estimate, payout_due, plan_payout
from .watchmen.signing import PersistSignerState, SendSignatures, SignerState, Watchman, coins_of, combine
from .watchmen.txmath import MainOutPoint

if TYPE_CHECKING:
    from coincurve import PrivateKey

    from .config import PegSettings
    from .storage import Storage

MAINCHAIN_POLL_SECONDS = 2.0
SCAN_BACK = 144
"""Mainchain blocks scanned for federation spends when a member starts."""
PAYOUT_MESSAGE_TYPES = range(0x50, 0x54)


@dataclass(frozen=True)
class _SpendElsewhere:
    outpoints: tuple[MainOutPoint, ...]
    height: int
    block_hash: str


class PegRuntime:
    def __init__(
        self,
        member: int,
        n_members: int,
        settings: PegSettings,
        watchman_key: PrivateKey,
        rpc: AsyncBitcoinRpc,
        view: BitcoindView,
        storage: Storage,
        send: Any,
        broadcast: Any,
        logger: logging.Logger,
    ) -> None:
        self.member = member
        self.n = n_members
        self.params = WatchmenParams(
            peg=settings.params,
            payout_interval=settings.payout_interval,
            min_feerate=settings.min_feerate,
            max_feerate=settings.max_feerate,
            fallback_feerate=settings.min_feerate,
            bump_after=settings.bump_after,
        )
        self.key = watchman_key
        self.rpc = rpc
        self.view = view
        self.storage = storage
        self._send = send
        self._broadcast = broadcast
        self.log = logger
        self.lock = asyncio.Lock()
        self.ledger = Ledger(self.params)
        self.watchman: Watchman
        # leader state for the payout it is collecting signatures for
        self._collecting: dict[bytes, tuple[BtcTransaction, dict[int, tuple[bytes, ...]]]] = {}
        self._must_conflict: dict[bytes, BtcTransaction] = {}
        self._mined: set[bytes] = set()
        self._last_mainchain_tip = -1
        self._scanned = -1
        self._spends_elsewhere: dict[bytes, _SpendElsewhere] = {}
        """Non-payout spends of federation coins seen but not yet
        ``confirm_depth`` deep, by spender txid (memory only: after a restart
        the scan, which starts SCAN_BACK blocks back, finds them again)."""
        self._tasks: set[asyncio.Task[None]] = set()

    async def load(self) -> None:
        raw = await asyncio.to_thread(self.storage.peg_get, LEDGER_KEY)
        if raw is not None:
            self.ledger = Ledger.parse(raw, self.params)
        state = await asyncio.to_thread(self.storage.peg_get, SIGNER_STATE_KEY)
        self.watchman = Watchman(
            self.member, self.key, self.params, SignerState.parse(state) if state is not None else None
        )

    # -- blocks ------------------------------------------------------------------------------

    async def ledger_after(self, block: Block) -> Ledger:
        """The ledger with ``block`` applied (the caller holds ``lock``,
        stores the result with the block, then calls :meth:`adopt`)."""
        events = extract_block_events(block.transactions, self.params.peg)
        blocks = events.mainchain_blocks
        if blocks:
            await self.view.prefetch(blocks)
        heights: dict[bytes, int] = {}
        for bh in blocks:
            h = self.view.block_height(bh)
            if h is None:
                # Unknown age: count the coin as old, so it is swept early
                # rather than left within the emergency keys' reach.
                event(self.log, "pegin_height_unknown", logging.WARNING, block=bh[::-1].hex())
                h = 0
            heights[bh] = h
        new = self.ledger.clone()
        new.apply_block(block.header.height, events, heights)
        return new

    def adopt(self, ledger: Ledger, height: int) -> None:
        self.ledger = ledger
        problems = ledger.audit()
        r = ledger.reserves()
        level = logging.ERROR if problems or not r.balanced else logging.DEBUG
        event(
            self.log,
            "reserves",
            level,
            height=height,
            pegged_in=r.pegged_in,
            paid_out=r.paid_out,
            fees=r.fees,
            utxo_sum=r.utxo_sum,
            balanced=r.balanced,
            problems="; ".join(problems),
        )
        if payout_due(height, self.params) and height % self.n == self.member:
            # Keep a strong reference: the event loop holds tasks weakly, and a
            # round's task suspended on RPC could otherwise be collected and
            # vanish without a trace.
            task = asyncio.get_running_loop().create_task(self._lead(height), name=f"payout-round-{height}")
            self._tasks.add(task)
            task.add_done_callback(self._round_done)

    def _round_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            e = task.exception()
            event(
                self.log,
                "payout_round_failed",
                logging.ERROR,
                task=task.get_name(),
                reason=type(e).__name__,
                detail=str(e),
            )

    # -- leading a payout round -----------------------------------------------------------

    async def _lead(self, height: int) -> None:
        try:
            estimate = await self.rpc.call("estimatesmartfee", self.params.conf_target)
        except MainchainError:
            estimate = None
        rate = feerate_from_estimate(estimate, self.params)
        async with self.lock:
            try:
                plan = plan_payout(
                    self.ledger,
                    self.params,
                    mainchain_height=self.view.tip_height(),
                    rate=rate,
                    mined=self._mined,
                    must_conflict=tuple(self._must_conflict.values()),
                )
            except WatchmenError as e:
                event(self.log, "payout_plan_failed", logging.WARNING, reason=type(e).__name__, detail=str(e))
                return
            if plan is None:
                event(self.log, "payout_round_idle", logging.DEBUG, height=height)
                return
            tx = plan.tx
            self._collecting = {tx.txid: (tx, {})}
            event(self.log, "payout_proposed", height=height, txid=tx.txid_hex, kind=plan.kind.name)
        self._broadcast(PayoutProposal(self.member, height, tx).serialize())
        await self._on_proposal(self.member, PayoutProposal(self.member, height, tx))

    # -- messages -------------------------------------------------------------------------------

    async def on_wire(self, peer: int, data: bytes) -> None:
        try:
            msg = parse_message(data)
        except ParseError as e:
            event(self.log, "rejected", logging.WARNING, peer=peer, reason=e.code, detail=str(e))
            return
        await self.on_message(peer, msg)

    async def on_message(self, peer: int, msg: PayoutMessage) -> None:
        if isinstance(msg, PayoutProposal):
            if msg.leader != peer:
                return
            await self._on_proposal(peer, msg)
        elif isinstance(msg, PayoutSignatures):
            await self._on_signatures(peer, msg)
        elif isinstance(msg, PayoutRefused):
            event(self.log, "payout_refused", logging.WARNING, peer=peer, reason=msg.code, txid=msg.txid[::-1].hex())
            for raw in msg.earlier:
                with contextlib.suppress(ParseError):
                    earlier = BtcTransaction.parse(raw)
                    self._must_conflict[earlier.txid] = earlier
        elif isinstance(msg, PayoutComplete):
            await self._record(msg.tx)

    async def _on_proposal(self, leader: int, msg: PayoutProposal) -> None:
        async with self.lock:
            try:
                _check, effects = self.watchman.on_proposal(
                    self.ledger, msg.tx, self.view.tip_height(), sidechain_height=msg.sidechain_height
                )
            except WatchmenError as e:
                earlier = tuple(getattr(e, "earlier", ()))
                event(self.log, "payout_refuse", logging.WARNING, reason=type(e).__name__, detail=str(e))
                reply = PayoutRefused(self.member, msg.tx.txid, type(e).__name__, earlier)
                self._send(leader, reply.serialize())
                return
            for effect in effects:
                if isinstance(effect, PersistSignerState):
                    # Durable before any signature leaves the process.
                    await asyncio.to_thread(self.storage.peg_put, SIGNER_STATE_KEY, effect.state.serialize())
                elif isinstance(effect, SendSignatures):
                    sigs = PayoutSignatures(effect.index, effect.txid, effect.signatures)
                    event(self.log, "payout_signed", txid=effect.txid[::-1].hex())
                    if leader == self.member:
                        await self._collect(self.member, sigs)
                    else:
                        self._send(leader, sigs.serialize())

    async def _on_signatures(self, peer: int, msg: PayoutSignatures) -> None:
        if msg.index != peer:
            return
        async with self.lock:
            await self._collect(peer, msg)

    async def _collect(self, peer: int, msg: PayoutSignatures) -> None:
        entry = self._collecting.get(msg.txid)
        if entry is None:
            return
        tx, sigs = entry
        sigs[peer] = msg.signatures
        if len(sigs) < self.params.peg.peg_threshold:
            return
        try:
            signed = combine(tx, coins_of(self.ledger, tx), self.params.peg, sigs)
        except WatchmenError:
            return  # not m valid ones yet
        del self._collecting[msg.txid]
        try:
            await self.rpc.call("sendrawtransaction", signed.serialize().hex())
        except MainchainError as e:
            event(self.log, "payout_broadcast_failed", logging.WARNING, reason=e.code, detail=str(e))
        event(self.log, "payout_broadcast", txid=signed.txid_hex)
        self._broadcast(PayoutComplete(signed).serialize())
        await self._record_locked(signed)

    async def _record(self, tx: BtcTransaction) -> None:
        async with self.lock:
            await self._record_locked(tx)

    async def _record_locked(self, tx: BtcTransaction) -> None:
        if self.ledger.payout(tx.txid) is not None:
            return
        try:
            self.ledger.record_payout(tx, self.view.tip_height())
        except WatchmenError as e:
            event(self.log, "payout_record_failed", logging.WARNING, reason=type(e).__name__, detail=str(e))
            return
        self._must_conflict = {t: x for t, x in self._must_conflict.items() if not self.ledger.is_settled(x)}
        await asyncio.to_thread(self.storage.peg_put, LEDGER_KEY, self.ledger.serialize())

    # -- the mainchain ----------------------------------------------------------------------

    async def watch_mainchain(self) -> None:
        while True:
            try:
                await self._poll()
            except MainchainError as e:
                event(self.log, "mainchain_unreachable", logging.WARNING, reason=e.code, detail=str(e))
            await asyncio.sleep(MAINCHAIN_POLL_SECONDS)

    async def _poll(self) -> None:
        tip = self.view.tip_height()
        if tip == self._last_mainchain_tip:
            return
        self._last_mainchain_tip = tip
        await self._recover_signed()
        await self._scan_blocks(tip)
        if await self._settle_spends_elsewhere(tip):
            await self._scan_blocks(tip)  # the new branch, from where it forked
        live = sorted(self.ledger.live_payouts(), key=lambda r: r.seen_height)
        confirmed: list[tuple[int, BtcTransaction]] = []
        mined: set[bytes] = set()
        for record in live:
            if record.tx is None:
                continue
            try:
                info = await self.rpc.call("getrawtransaction", record.tx.txid_hex, True)
            except MainchainError:
                continue
            depth = int(info.get("confirmations", 0))
            if depth >= 1:
                mined.add(record.tx.txid)
            if depth >= self.params.confirm_depth:
                confirmed.append((tip - depth + 1, record.tx))
        self._mined = mined
        if not confirmed:
            return
        async with self.lock:
            for height, tx in sorted(confirmed, key=lambda c: c[0]):
                try:
                    self.ledger.confirm_payout(tx, height)
                    event(self.log, "payout_confirmed", txid=tx.txid_hex, height=height)
                except WatchmenError as e:
                    event(self.log, "payout_confirm_failed", logging.WARNING, reason=type(e).__name__, detail=str(e))
            await asyncio.to_thread(self.storage.peg_put, LEDGER_KEY, self.ledger.serialize())

    async def _scan_blocks(self, tip: int) -> None:
        """Spends of federation coins in new mainchain blocks. A payout this
        member never heard of (it was down for the whole round) is recorded,
        so its ledger follows the federation's; a spend that is no payout
        (the emergency keys, or worse) is the spent_elsewhere alarm."""
        start = self._scanned if self._scanned >= 0 else max(0, tip - SCAN_BACK)
        for height in range(start + 1, tip + 1):
            block = await self.rpc.call("getblock", await self.rpc.call("getblockhash", height), 2)
            for entry in block["tx"]:
                spends = [
                    MainOutPoint(bytes.fromhex(v["txid"])[::-1], int(v["vout"])) for v in entry["vin"] if "txid" in v
                ]
                ours = [op for op in spends if self.ledger.utxo(op) is not None]
                if not ours:
                    continue
                try:
                    tx = BtcTransaction.parse(bytes.fromhex(entry["hex"]))
                except (ParseError, ValueError):
                    continue
                if self.ledger.payout(tx.txid) is not None:
                    continue
                async with self.lock:
                    if self._is_payout(tx):
                        event(self.log, "payout_seen_on_mainchain", txid=tx.txid_hex, height=height)
                        await self._record_locked(tx)
                    elif tx.txid not in self._spends_elsewhere:
                        # The alarm at once; the ledger only once the spend is
                        # as deep as a payout must be, so a mainchain reorg
                        # that drops it leaves the coin where it was.
                        self._spends_elsewhere[tx.txid] = _SpendElsewhere(tuple(ours), height, block["hash"])
                        event(
                            self.log,
                            "federation_coin_spent_elsewhere",
                            logging.ERROR,
                            txid=tx.txid_hex,
                            height=height,
                            coins=len(ours),
                        )
            self._scanned = height

    async def _settle_spends_elsewhere(self, tip: int) -> bool:
        """Non-payout spends ``confirm_depth`` deep leave the ledger (their
        value unaccounted); those whose block left the best chain are dropped
        (the coins stay federation coins; a new block spending them again is
        found by the scan). True if the scan must go back over a new branch."""
        rewound = False
        for txid, spend in list(self._spends_elsewhere.items()):
            if await self.rpc.call("getblockhash", spend.height) != spend.block_hash:
                del self._spends_elsewhere[txid]
                # Scan the new branch from there on the next poll.
                self._scanned = min(self._scanned, spend.height - 1)
                rewound = True
                event(self.log, "spend_elsewhere_reorged_out", logging.WARNING, txid=txid[::-1].hex())
                continue
            if tip - spend.height + 1 < self.params.confirm_depth:
                continue
            async with self.lock:
                for op in spend.outpoints:
                    if self.ledger.utxo(op) is not None:
                        self.ledger.spent_elsewhere(op, txid)
                await asyncio.to_thread(self.storage.peg_put, LEDGER_KEY, self.ledger.serialize())
            del self._spends_elsewhere[txid]
            event(
                self.log,
                "federation_coin_spent_elsewhere_final",
                logging.ERROR,
                txid=txid[::-1].hex(),
                height=spend.height,
                coins=len(spend.outpoints),
            )
        return rewound

    def _is_payout(self, tx: BtcTransaction) -> bool:
        """Every input a federation coin, every output a peg-out the ledger
        knows or change back to the federation."""
        if any(self.ledger.utxo(MainOutPoint.of(i)) is None for i in tx.inputs):
            return False
        matches = self.ledger.match_outputs(tx, self.ledger.conflicting_payouts(tx))
        return all(pid is not None or why == "change" for pid, why in matches)

    async def _recover_signed(self) -> None:
        """A payout this watchman signed but never saw completed (it was down
        when the leader sent ``PayoutComplete``) is recorded once the
        mainchain holds it, so the ledger follows it to confirmation rather
        than owing its peg-outs forever and refusing to spend its change."""
        for p in self.watchman.state.signed:
            if self.ledger.payout(p.tx.txid) is not None or self.ledger.is_settled(p.tx):
                continue
            try:
                await self.rpc.call("getrawtransaction", p.tx.txid_hex, True)
            except MainchainError:
                continue  # not in the mempool nor a block: nothing to record
            event(self.log, "payout_recovered", txid=p.tx.txid_hex)
            await self._record(p.tx)

    def status(self) -> dict[str, Any]:
        r = self.ledger.reserves()
        return {
            "pegged_in": r.pegged_in,
            "paid_out": r.paid_out,
            "mainchain_fees": r.fees,
            "owed": r.owed,
            "sidechain_supply": r.sidechain_supply,
            "federation_utxo_sum": r.utxo_sum,
            "balanced": r.balanced,
            "pending_pegouts": len(self.ledger.payable_pegouts()),
            "live_payouts": [p.txid[::-1].hex() for p in self.ledger.live_payouts()],
            "mainchain_tip": self.view.tip_height(),
        }

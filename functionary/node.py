"""One federation member's process: the asyncio runtime around the pure
consensus state machine.

    transport ──bytes──▶ parse ──▶ event queue ──▶ RoundRobinSigner.step()
    ticker ─────Tick───▶                              │ effects, in order
                                                      ▼
             send / persist (durable first) / commit / catch up / log

A single consumer task owns the chain state, the machine and the mempool:
it takes one event, steps the machine, and carries out the effects in
order before taking the next. Persisting the sign-lock is awaited (committed
and synced by the storage layer) before the signature that follows it is
handed to the transport, so a signature never leaves the process ahead of
its lock.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from consensus.block import Block
from consensus.chainstate import BlockUndo, ChainState
from consensus.errors import ConsensusError, ParseError, ValidationError
from consensus.hashes import sha256d
from consensus.header import BlockHeader, KeySigner, solution_signers
from consensus.messages import BlockResponse, BlockSignature, CommittedBlock, Message, serialize_message
from consensus.peg import PegInRules, PegOutRules
from consensus.roundrobin import (
    Broadcast,
    CatchUp,
    ChainAdvanced,
    Commit,
    Effect,
    Event,
    Misbehaviour,
    PersistPrecommit,
    PersistSignLock,
    PrecommitLock,
    Received,
    Rejected,
    RequestTemplate,
    RoundRobinSigner,
    SendCommitted,
    SendTo,
    SignLock,
    TemplateReady,
    Tick,
    Timing,
)
from consensus.transaction import Transaction

from .bitcoind import AsyncBitcoinRpc
from .config import ConfigInvalid, Federation, MemberConfig, MemberKeys
from .errors import CorruptDatabase, FunctionaryError
from .log import event
from .mainchain_view import BitcoindView, MemberPegInVerifier, pegin_proof_blocks
from .mempool import Mempool, MempoolEntry, MempoolError
from .peg_runtime import PAYOUT_MESSAGE_TYPES, PegRuntime
from .storage import Storage
from .sync import MAX_BLOCKS_PER_RESPONSE, Blocks, GetBlocks, TxRelay, parse_wire
from .transport import PeerInfo, PeerNetwork
from .watchmen import LEDGER_KEY

TICK_SECONDS = 0.1
MAINCHAIN_POLL_SECONDS = 2.0
CATCH_UP_BATCH_BYTES = 4 * 1024 * 1024
MAX_SUBMIT_BATCH = 32
SUBMIT_BATCH_SECONDS = 0.05
"""Bounds on the submissions admitted before their one storage write: the
first one's answer and relay wait for the rest of its batch."""


class RefuseToSign(FunctionaryError):
    """The member's state cannot be trusted; it will not sign."""


_STOP = object()


@dataclass(frozen=True)
class _SyncBlocks:
    peer: int
    raw_blocks: tuple[bytes, ...]


@dataclass(frozen=True)
class _SubmitTx:
    tx: Transaction
    relay: bool
    future: asyncio.Future[MempoolEntry] | None


@dataclass
class NodeStats:
    started_at: float = field(default_factory=time.time)
    commits: int = 0
    rejected: int = 0
    misbehaviour: int = 0
    signatures_sent: int = 0
    last_commit_at: float = 0.0
    signed_by_member: dict[int, int] = field(default_factory=dict)


def make_chain(federation: Federation, view: BitcoindView | None) -> tuple[ChainState, MemberPegInVerifier | None]:
    """The chain state with this federation's peg rules (if it has a peg)."""
    peg = federation.peg
    if peg is None:
        return ChainState(federation.chain_params()), None
    # Without a bitcoind the view stays empty and every peg-in is refused:
    # fail closed.
    pegin = MemberPegInVerifier(PegInRules(peg.params, view or _NoMainchain()))
    chain = ChainState(federation.chain_params(), pegin_verifier=pegin, pegout_verifier=PegOutRules(peg.params))
    return chain, pegin


class _NoMainchain:
    def block_height(self, block_hash: bytes) -> int | None:
        return None

    def tip_height(self) -> int:
        return -1


def open_chain(
    storage: Storage,
    federation: Federation,
    logger: logging.Logger,
    view: BitcoindView | None = None,
) -> tuple[ChainState, MemberPegInVerifier | None]:
    """Rebuild the chain state by replaying every stored block with full
    validation (signatures included; peg-in depth excepted, see
    MemberPegInVerifier). Anything that does not replay is a corrupt
    database: the member refuses to sign."""
    chain, pegin = make_chain(federation, view)
    if pegin is not None:
        pegin.trusting = True
    try:
        _replay(storage, chain, logger)
    finally:
        if pegin is not None:
            pegin.trusting = False
    return chain, pegin


def _replay(storage: Storage, chain: ChainState, logger: logging.Logger) -> None:
    tip = storage.tip()
    genesis = chain.genesis
    if tip is None:
        # A fresh database: store genesis (height 0) with the outputs it
        # creates, so the first spend of them finds them.
        created = [
            (op.txid, op.index, e.output.serialize(), 0, e.is_coinbase)
            for op, e in chain.utxos.items()
            if e.height == 0
        ]
        storage.commit_block(
            0,
            genesis.hash,
            genesis.serialize(),
            genesis.header.serialize(),
            genesis.header.time,
            (),
            list(genesis.txids),
            [],
            created,
        )
        return
    stored_genesis = storage.block_by_height(0)
    if stored_genesis is None or stored_genesis.hash != genesis.hash:
        raise CorruptDatabase(["the stored genesis block is not this federation's"])
    height = 1
    far_future = 2**32 - 1
    while height <= tip[0]:
        batch = storage.blocks_from(height, 500)
        if not batch:
            raise CorruptDatabase([f"block {height} missing below tip {tip[0]}"])
        for stored in batch:
            try:
                block = Block.parse(stored.raw)
                if block.hash != stored.hash:
                    raise CorruptDatabase([f"block {stored.height}: stored hash does not match its header"])
                chain.connect_block(block, far_future, check_proof=True)
            except ConsensusError as e:
                raise CorruptDatabase([f"block {stored.height} does not replay: {e.code}: {e}"]) from None
            height = stored.height + 1
    event(logger, "chain_loaded", height=chain.tip_height, hash=chain.tip_hash[::-1].hex())


class FunctionaryNode:
    def __init__(
        self,
        config: MemberConfig,
        federation: Federation,
        keys: MemberKeys,
        logger: logging.Logger,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not 0 <= config.member < federation.n:
            raise ConfigInvalid(f"{config.path}: member {config.member} is not in a federation of {federation.n}")
        me = federation.members[config.member]
        # A key file that is not this member's is a configuration mistake (exit 2).
        if me.signing_pubkey != keys.signing_key.public_key.format():
            raise ConfigInvalid(
                f"{config.keys_file}: signing key is not member {config.member}'s in the federation file"
            )
        if me.identity_pubkey != bytes(keys.identity.verify_key):
            raise ConfigInvalid(
                f"{config.keys_file}: identity key is not member {config.member}'s in the federation file"
            )
        self.config = config
        self.federation = federation
        self.keys = keys
        self.log = logger
        self.clock = clock
        self.member = config.member
        self.stats = NodeStats()
        self.storage: Storage
        self.chain: ChainState
        self.mempool: Mempool
        self.machine: RoundRobinSigner
        self.network: PeerNetwork
        # Two inboxes for the one consumer: consensus events first, then
        # transaction submissions, so a backlog of transactions to verify
        # never holds up a round (see _next_item).
        self._events: asyncio.Queue[Any] = asyncio.Queue()
        self._tx_events: collections.deque[Any] = collections.deque()
        self._wakeup = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._catching_up_from: int | None = None
        self._stopped = asyncio.Event()
        self.failed: asyncio.Future[BaseException] = asyncio.get_event_loop().create_future()
        self.recent_commits: list[tuple[int, bytes, tuple[int, ...], float]] = []
        self.mainchain_rpc: AsyncBitcoinRpc | None = None
        self.mainchain: BitcoindView | None = None
        self.pegin: MemberPegInVerifier | None = None
        self.peg: PegRuntime | None = None
        self._stored_tip: tuple[int, bytes] | None = None

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        fed = self.federation
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            # Opening can already find corruption (SQLite: "malformed"); it is
            # a refusal to sign like any other, not a configuration error.
            self.storage = await asyncio.to_thread(Storage.open, self.config.resolved_database_url, fed.chain_id)
            await asyncio.to_thread(self.storage.verify_integrity, _header_hash, _header_prev)
            if fed.peg is not None and self.config.mainchain_rpc is not None:
                self.mainchain_rpc = AsyncBitcoinRpc.from_config(self.config.mainchain_rpc)
                self.mainchain = BitcoindView(self.mainchain_rpc, self.log)
                await self.mainchain.refresh()
            elif fed.peg is not None:
                event(self.log, "no_mainchain_rpc", logging.WARNING, detail="peg-ins will be refused")
            self.chain, self.pegin = await asyncio.to_thread(open_chain, self.storage, fed, self.log, self.mainchain)
        except CorruptDatabase as e:
            event(self.log, "refuse_to_sign", logging.ERROR, reason=e.code, detail=str(e))
            raise RefuseToSign(f"{e.code}: {e}") from None
        self.mempool = Mempool(self.chain)
        for entry in await asyncio.to_thread(self.storage.mempool_list):
            with contextlib.suppress(MempoolError, ParseError):
                self.mempool.add(Transaction.parse(entry.raw), entry.received_at)
        try:
            sign_lock, precommit_lock = await asyncio.to_thread(self._load_locks)
        except RefuseToSign as e:
            event(self.log, "refuse_to_sign", logging.ERROR, reason="CorruptDatabase", detail=str(e))
            raise
        if (
            fed.peg is not None
            and self.mainchain is not None
            and self.mainchain_rpc is not None
            and self.keys.watchman_key is not None
        ):
            self.peg = PegRuntime(
                self.member,
                fed.n,
                fed.peg,
                self.keys.watchman_key,
                self.mainchain_rpc,
                self.mainchain,
                self.storage,
                lambda peer, data: self.network.send(peer, data),
                lambda data: self.network.broadcast(data),
                self.log,
            )
            await self.peg.load()
        self.machine = RoundRobinSigner(
            self.chain,
            self.member,
            KeySigner(self.keys.signing_key),
            Timing(block_interval=fed.block_interval, round_timeout=fed.round_timeout),
            self.clock(),
            sign_lock=sign_lock,
            precommit_lock=precommit_lock,
        )
        peers = {
            m.index: PeerInfo(m.index, m.identity_pubkey, *self.config.peer_addresses.get(m.index, m.p2p))
            for m in fed.members
        }
        self.network = PeerNetwork(
            self.member,
            self.keys.identity,
            peers,
            self.config.p2p_listen,
            self._on_wire,
            fed.chain_id,
            self.log,
            clock=self.clock,
        )
        await self.network.start()
        self._tasks = [
            asyncio.create_task(self._consume(), name="consume"),
            asyncio.create_task(self._ticker(), name="ticker"),
        ]
        if self.mainchain is not None:
            self._tasks.append(asyncio.create_task(self._watch_mainchain(), name="mainchain"))
        if self.peg is not None:
            self._tasks.append(asyncio.create_task(self.peg.watch_mainchain(), name="watchmen"))
        event(
            self.log,
            "started",
            height=self.chain.tip_height,
            p2p=f"{self.config.p2p_listen[0]}:{self.config.p2p_listen[1]}",
            m=fed.threshold,
            n=fed.n,
        )

    def _load_locks(self) -> tuple[SignLock | None, PrecommitLock | None]:
        stored = self.storage.load_sign_lock()
        sign_lock = None
        if stored is not None:
            try:
                sign_lock = SignLock(stored.height, stored.polka_round, Block.parse(stored.raw_block))
            except ParseError as e:
                raise RefuseToSign(f"CorruptDatabase: stored sign-lock block does not parse: {e}") from None
        pre = self.storage.load_precommit_lock()
        precommit = PrecommitLock(pre.height, pre.round, pre.block_hash) if pre is not None else None
        return sign_lock, precommit

    async def stop(self) -> None:
        # Let the consumer finish the event in hand (a commit half-written
        # would leave memory ahead of storage), then stop everything.
        for t in self._tasks:
            if t.get_name() == "ticker":
                t.cancel()
        consumer = next((t for t in self._tasks if t.get_name() == "consume"), None)
        if consumer is not None and not consumer.done():
            self._post_tx(_STOP)  # after the submissions already queued, as before
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError, Exception):
                await asyncio.wait_for(asyncio.shield(consumer), 10)
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks.clear()
        with contextlib.suppress(Exception):
            await self.network.stop()
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self.storage.close)
        if self.mainchain_rpc is not None:
            with contextlib.suppress(Exception):
                await self.mainchain_rpc.aclose()
        self._stopped.set()
        event(self.log, "stopped")

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    # -- inputs -------------------------------------------------------------------------

    async def _watch_mainchain(self) -> None:
        assert self.mainchain is not None
        while True:
            await self.mainchain.refresh()
            await asyncio.sleep(MAINCHAIN_POLL_SECONDS)

    async def _ticker(self) -> None:
        while True:
            self._post(Tick(self.clock()))
            await asyncio.sleep(TICK_SECONDS)

    async def _on_wire(self, peer: int, data: bytes) -> None:
        if data and data[0] in PAYOUT_MESSAGE_TYPES:
            if self.peg is not None:
                await self.peg.on_wire(peer, data)
            return
        if _stale_block_message(data, self.chain.tip_height):
            return
        try:
            msg = parse_wire(data)
        except ParseError as e:
            self.stats.rejected += 1
            event(self.log, "rejected", logging.WARNING, peer=peer, reason=e.code, detail=str(e))
            return
        if isinstance(msg, GetBlocks):
            await self._serve_blocks(peer, msg)
        elif isinstance(msg, Blocks):
            self._post(_SyncBlocks(peer, msg.raw_blocks))
        elif isinstance(msg, TxRelay):
            try:
                tx = Transaction.parse(msg.raw_tx)
            except ParseError:
                return
            await self._prefetch_pegins([tx])
            self._post_tx(_SubmitTx(tx, relay=False, future=None))
        else:
            block = getattr(msg, "block", None)
            if isinstance(block, Block):
                await self._prefetch_pegins(block.transactions)
            self._post(Received(peer, msg, self.clock()))

    async def _prefetch_pegins(self, txs: Any) -> None:
        """Learn, from our bitcoind, where the mainchain blocks named by
        peg-in proofs are, before validation asks (it cannot wait on I/O)."""
        if self.mainchain is not None:
            hashes = pegin_proof_blocks(txs)
            if hashes:
                await self.mainchain.prefetch(hashes)

    async def submit_transaction(self, tx: Transaction) -> MempoolEntry:
        """Add to the mempool (through the consumer, which owns it) and relay."""
        fut: asyncio.Future[MempoolEntry] = asyncio.get_running_loop().create_future()
        await self._prefetch_pegins([tx])
        self._post_tx(_SubmitTx(tx, relay=True, future=fut))
        return await fut

    # -- the consumer ------------------------------------------------------------------

    def _post(self, item: Any) -> None:
        self._events.put_nowait(item)
        self._wakeup.set()

    def _post_tx(self, item: Any) -> None:
        self._tx_events.append(item)
        self._wakeup.set()

    async def _next_item(self) -> Any:
        """The oldest consensus event (ticks, messages, blocks, templates),
        else the oldest transaction submission. Submissions only change the
        mempool, so taking them later changes no outcome of a round; ahead
        of a round's messages each would delay it by a verification."""
        while True:
            if not self._events.empty():
                return self._events.get_nowait()
            if self._tx_events:
                return self._tx_events.popleft()
            self._wakeup.clear()
            await self._wakeup.wait()

    async def _consume(self) -> None:
        try:
            await self._consume_forever()
        except asyncio.CancelledError:
            raise
        except BaseException as e:
            # The in-memory state may now differ from storage: never limp on.
            event(self.log, "fatal", logging.CRITICAL, reason=type(e).__name__, detail=str(e))
            if not self.failed.done():
                self.failed.set_result(e)
            raise

    async def _consume_forever(self) -> None:
        while True:
            item = await self._next_item()
            if item is _STOP:
                return
            if isinstance(item, _SyncBlocks):
                await self._apply_synced(item)
            elif isinstance(item, _SubmitTx):
                await self._add_txs(item)
            else:
                ev: Event = item
                await self._run(self.machine.step(ev))

    async def _run(self, effects: list[Effect]) -> None:
        for effect in effects:
            await self._execute(effect)

    async def _execute(self, effect: Effect) -> None:
        if isinstance(effect, Broadcast):
            self._send_all(effect.message)
        elif isinstance(effect, SendTo):
            self.network.send(effect.member, serialize_message(effect.message))
        elif isinstance(effect, PersistPrecommit):
            pre = effect.lock
            await asyncio.to_thread(self.storage.save_precommit_lock, pre.height, pre.round, pre.block_hash)
        elif isinstance(effect, PersistSignLock):
            sl = effect.lock
            # Durable before the signature that follows it is sent.
            await asyncio.to_thread(self.storage.save_sign_lock, sl.height, sl.polka_round, sl.block.serialize())
            event(self.log, "sign_lock", height=sl.height, hash=sl.block_hash[::-1].hex(), round=sl.polka_round)
        elif isinstance(effect, RequestTemplate):
            block = self._template()
            self._post(TemplateReady(effect.height, effect.round, block, self.clock()))
        elif isinstance(effect, Commit):
            await self._persist_commit(effect.block, effect.undo, effect.signers)
        elif isinstance(effect, SendCommitted):
            stored = await asyncio.to_thread(self.storage.block_by_height, effect.height)
            if stored is not None:
                self.network.send(effect.member, bytes((CommittedBlock.TYPE,)) + stored.raw)
        elif isinstance(effect, CatchUp):
            self._request_blocks(effect.member)
        elif isinstance(effect, Rejected):
            self.stats.rejected += 1
            event(
                self.log,
                "rejected",
                logging.WARNING,
                peer=effect.sender,
                reason=effect.error.code,
                detail=str(effect.error),
            )
        elif isinstance(effect, Misbehaviour):
            self.stats.misbehaviour += 1
            event(
                self.log,
                "misbehaviour",
                logging.WARNING,
                peer=effect.member,
                reason=effect.error.code,
                detail=str(effect.error),
            )

    def _send_all(self, msg: Message) -> None:
        if isinstance(msg, BlockSignature):
            self.stats.signatures_sent += 1
            event(self.log, "signature_sent", height=msg.height, hash=msg.block_hash[::-1].hex(), round=msg.round)
        self.network.broadcast(serialize_message(msg))

    def _template(self) -> Block:
        """A candidate from the mempool; transactions that no longer fit the
        tip are dropped one by one until the candidate validates."""
        now = self.clock()
        time_ = self.machine.template_time(now)
        txs = self.mempool.select()
        while True:
            block = self.chain.assemble_block(txs, time_)
            try:
                self.chain.check_block(block, int(now), check_proof=False)
                return block
            except ValidationError as e:
                if not txs:
                    raise
                bad = self._first_invalid(txs)
                event(self.log, "template_drop_tx", logging.WARNING, reason=e.code, txid=bad[::-1].hex())
                txs = [t for t in txs if t.txid != bad]

    def _first_invalid(self, txs: list[Transaction]) -> bytes:
        for tx in txs:
            try:
                self.chain.validate_transaction(tx)
            except ValidationError:
                return tx.txid
        return txs[-1].txid

    async def _store_block(
        self,
        block: Block,
        undo: BlockUndo,
        signers: tuple[int, ...],
        evicted: list[bytes],
        peg_updates: dict[bytes, bytes | None] | None,
    ) -> None:
        header = block.header
        await asyncio.to_thread(
            self.storage.commit_block,
            header.height,
            block.hash,
            block.serialize(),
            header.serialize(),
            header.time,
            signers,
            list(block.txids),
            [(op.txid, op.index) for op, _ in undo.spent],
            [(op.txid, op.index, e.output.serialize(), e.height, e.is_coinbase) for op, e in undo.created],
            evicted,
            peg_updates,
        )

    async def _persist_commit(self, block: Block, undo: object, signers: tuple[int, ...]) -> None:
        assert isinstance(undo, BlockUndo)
        evicted = self.mempool.evictions(block)
        header = block.header
        if self.peg is not None:
            # The watchmen's ledger changes in the same storage transaction
            # as the block, under the lock that orders every ledger change.
            async with self.peg.lock:
                ledger = await self.peg.ledger_after(block)
                await self._store_block(block, undo, signers, evicted, {LEDGER_KEY: ledger.serialize()})
                self.peg.adopt(ledger, header.height)
        else:
            await self._store_block(block, undo, signers, evicted, None)
        self.mempool.remove(evicted)
        self._stored_tip = (header.height, block.hash)
        now = self.clock()
        self.stats.commits += 1
        self.stats.last_commit_at = now
        for s in signers:
            self.stats.signed_by_member[s] = self.stats.signed_by_member.get(s, 0) + 1
        self.recent_commits.append((header.height, block.hash, signers, now))
        del self.recent_commits[:-50]
        event(
            self.log,
            "commit",
            height=header.height,
            hash=block.hash[::-1].hex(),
            signers=",".join(map(str, signers)),
            txs=len(block.transactions),
        )

    async def _add_txs(self, first: _SubmitTx) -> None:
        """Admit ``first`` and the submissions queued right behind it (at most
        MAX_SUBMIT_BATCH, for at most SUBMIT_BATCH_SECONDS, and only while no
        consensus event waits), persist the admitted ones in one storage
        transaction, then relay and answer each. Every answer still follows
        the write, as one at a time did; a batch saves a sync per
        transaction."""
        admitted: list[tuple[_SubmitTx, MempoolEntry]] = []
        started = time.monotonic()
        taken = 0
        item: _SubmitTx | None = first
        while item is not None:
            taken += 1
            try:
                admitted.append((item, self.mempool.add(item.tx, self.clock())))
            except MempoolError as e:
                if item.future is not None and not item.future.done():
                    item.future.set_exception(e)
            item = None
            if (
                taken < MAX_SUBMIT_BATCH
                and time.monotonic() - started < SUBMIT_BATCH_SECONDS
                and self._events.empty()
                and self._tx_events
                and isinstance(self._tx_events[0], _SubmitTx)
            ):
                item = self._tx_events.popleft()
        if not admitted:
            return
        await asyncio.to_thread(
            self.storage.mempool_add_many,
            [(e.txid, i.tx.serialize(), e.fee, e.weight, e.received_at) for i, e in admitted],
        )
        for i, entry in admitted:
            if i.relay:
                self.network.broadcast(TxRelay(i.tx.serialize()).serialize())
            if i.future is not None and not i.future.done():
                i.future.set_result(entry)

    # -- catch-up ------------------------------------------------------------------------

    def _request_blocks(self, peer: int) -> None:
        if self._catching_up_from is not None:
            return
        self._catching_up_from = peer
        event(self.log, "catch_up", peer=peer, from_height=self.chain.tip_height + 1)
        self.network.send(peer, GetBlocks(self.chain.tip_height + 1, MAX_BLOCKS_PER_RESPONSE).serialize())

    def _connect_final(self, block: Block) -> BlockUndo:
        """Connect a block that is already final (m signatures, checked here)."""
        if self.pegin is not None:
            self.pegin.trusting = True
        try:
            return self.chain.connect_block(block, int(self.clock()), check_proof=True)
        finally:
            if self.pegin is not None:
                self.pegin.trusting = False

    async def _serve_blocks(self, peer: int, req: GetBlocks) -> None:
        limit = min(req.max_count, MAX_BLOCKS_PER_RESPONSE)
        stored = await asyncio.to_thread(self.storage.blocks_from, req.from_height, limit)
        raws: list[bytes] = []
        size = 0
        for b in stored:
            if raws and size + len(b.raw) > CATCH_UP_BATCH_BYTES:
                break
            raws.append(b.raw)
            size += len(b.raw)
        self.network.send(peer, Blocks(tuple(raws)).serialize())

    async def _apply_synced(self, item: _SyncBlocks) -> None:
        if self._catching_up_from != item.peer:
            return  # unsolicited
        self._catching_up_from = None
        advanced = 0
        for raw in item.raw_blocks:
            try:
                block = Block.parse(raw)
            except ParseError as e:
                event(self.log, "rejected", logging.WARNING, peer=item.peer, reason=e.code, detail="catch-up block")
                break
            height = block.header.height
            if height <= self.chain.tip_height:
                continue
            try:
                undo = self._connect_final(block)
                signers = tuple(solution_signers(self.federation.federation_params(), block.header))
            except ValidationError as e:
                event(
                    self.log,
                    "rejected",
                    logging.WARNING,
                    peer=item.peer,
                    reason=e.code,
                    detail=f"catch-up block {height}",
                )
                break
            await self._persist_commit(block, undo, signers)
            advanced += 1
        if advanced:
            await self._run(self.machine.step(ChainAdvanced(self.clock())))
            if len(item.raw_blocks) == advanced:
                # There may be more: keep asking the same peer.
                self._request_blocks(item.peer)

    # -- what readers see -----------------------------------------------------------------

    @property
    def tip_height(self) -> int:
        """The tip as stored: the chain state connects a block just before
        storage has it, and readers must never see a height they cannot fetch."""
        return self._stored_tip[0] if self._stored_tip is not None else self.chain.tip_height

    @property
    def tip_hash(self) -> bytes:
        return self._stored_tip[1] if self._stored_tip is not None else self.chain.tip_hash

    # -- status ----------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return {
            "member": self.member,
            "tip": {"height": self.tip_height, "hash": self.tip_hash[::-1].hex()},
            "round": {"height": self.machine.height, "round": self.machine.round},
            "peers_connected": sorted(self.network.connected_peers()),
            "mempool": {"count": len(self.mempool), "weight": self.mempool.total_weight},
            "last_blocks": [
                {"height": h, "hash": bh[::-1].hex(), "signers": list(s), "committed_at": t}
                for h, bh, s, t in reversed(self.recent_commits[-10:])
            ],
            "peg": self.peg.status() if self.peg is not None else None,
            "stats": {
                "commits": self.stats.commits,
                "rejected": self.stats.rejected,
                "misbehaviour": self.stats.misbehaviour,
                "signatures_sent": self.stats.signatures_sent,
            },
        }


_WHOLE_BLOCK_ONLY = (CommittedBlock.TYPE, BlockResponse.TYPE)
_HEIGHT_AT = 1 + 4 + 32 + 32 + 4
"""Offset of the header's height in such a message: the type byte, then the
header's version, previous hash, merkle root and time."""


def _stale_block_message(data: bytes, tip_height: int) -> bool:
    """A message that is only a block at a height this member has already
    connected: the state machine ignores those (a member a few milliseconds
    late with its signature is sent the block it signed by everyone who
    committed it first), so it is dropped before parsing the whole block.
    Proposals and lock announcements at old heights still go through: the
    machine answers them by helping the sender."""
    if len(data) < _HEIGHT_AT + 4 or data[0] not in _WHOLE_BLOCK_ONLY:
        return False
    return int.from_bytes(data[_HEIGHT_AT : _HEIGHT_AT + 4], "little") <= tip_height


def _header_prefix(raw: bytes) -> BlockHeader:
    from consensus.serialize import ByteReader

    return BlockHeader.read(ByteReader(raw))


def _header_hash(raw_header: bytes) -> bytes:
    # An unparseable header must be reported as a problem, not raise: an
    # empty value never equals a stored hash.
    try:
        return _header_prefix(raw_header).hash
    except ParseError:
        return b""


def _header_prev(raw_header: bytes) -> bytes:
    try:
        return _header_prefix(raw_header).prev_hash
    except ParseError:
        return b""


__all__ = ["FunctionaryNode", "RefuseToSign", "open_chain", "sha256d"]

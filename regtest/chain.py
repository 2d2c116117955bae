"""The chain: block index, UTXO set, block validation, reorganisation, mining.

Pure logic: no I/O and no clock of its own (the caller passes ``now``). The
rules and their reject reasons are Bitcoin Core's (src/validation.cpp,
src/consensus/tx_check.cpp, src/consensus/tx_verify.cpp) with regtest's
parameters; each ``ValidationError`` carries Core's reason string and debug
message, so an RPC answer reads as Core's would.

| stage                         | checks (reject reason)                                            |
|-------------------------------|-------------------------------------------------------------------|
| check_transaction             | vin/vout empty, oversize, negative/too large values, duplicate    |
|                               | inputs, coinbase scriptSig length, null prevouts                  |
| check_block                   | proof of work (high-hash), merkle root, mutation, coinbase       |
|                               | position, size                                                     |
| contextual header             | bad-diffbits, time-too-old (<= median time past), time-too-new,   |
|                               | bad-version                                                       |
| contextual block              | bad-txns-nonfinal, bad-cb-height (BIP34), witness commitment,    |
|                               | unexpected-witness, bad-blk-weight                                |
| connect_block                 | inputs missing or spent, BIP68 (bad-txns-nonfinal), coinbase      |
|                               | maturity, value balance, scripts under consensus flags,           |
|                               | bad-cb-amount                                                     |

Deviation: outputs to witness v1 (taproot) programs are refused in blocks as
in the mempool ("bad-txns-taproot-unsupported"), because this stand-in
cannot validate their spends; Core accepts them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from .params import ChainParams
from .primitives import (
    MAX_MONEY,
    NULL_HASH,
    NULL_OUTPOINT,
    Block,
    BlockHeader,
    OutPoint,
    Transaction,
    TxIn,
    TxOut,
    bits_to_target,
    block_merkle_root,
    block_work,
    sha256d,
    witness_merkle_root,
)
from .script import (
    CONSENSUS_FLAGS,
    LOCKTIME_THRESHOLD,
    SEQUENCE_FINAL,
    SEQUENCE_LOCKTIME_DISABLE_FLAG,
    SEQUENCE_LOCKTIME_GRANULARITY,
    SEQUENCE_LOCKTIME_MASK,
    SEQUENCE_LOCKTIME_TYPE_FLAG,
    PrecomputedTxData,
    ScriptError,
    TxChecker,
    TxoutType,
    is_unspendable,
    push_int,
    solve,
    verify_script,
)

MEMPOOL_HEIGHT = 0x7FFFFFFF  # the height Core gives coins created by mempool transactions
WITNESS_COMMITMENT_HEADER = b"\x6a\x24\xaa\x21\xa9\xed"
BLOCK_VERSION = 0x20000000  # BIP9 top bits, no deployment signalled


class Kind(Enum):
    """Core's TxValidationResult / BlockValidationResult, as far as RPC shows them."""

    CONSENSUS = "consensus"
    MISSING_INPUTS = "missing-inputs"
    PREMATURE_SPEND = "premature-spend"
    NOT_STANDARD = "not-standard"
    MEMPOOL_POLICY = "mempool-policy"
    CONFLICT = "conflict"
    RECONSIDERABLE = "reconsiderable"
    ALREADY_KNOWN = "already-known"
    MISSING_PREV = "missing-prev"
    INVALID_PREV = "invalid-prev"
    INVALID_HEADER = "invalid-header"
    TIME_FUTURE = "time-future"
    MUTATED = "mutated"


class ValidationError(Exception):
    """A refused transaction or block: Core's reject reason, debug text and class."""

    def __init__(self, kind: Kind, reason: str, debug: str = "") -> None:
        self.kind = kind
        self.reason = reason
        self.debug = debug
        super().__init__(str(self))

    def __str__(self) -> str:
        # Core's ValidationState::ToString: "reason, debug message".
        return f"{self.reason}, {self.debug}" if self.debug else self.reason


@dataclass(frozen=True, slots=True)
class Coin:
    out: TxOut
    height: int
    coinbase: bool


@dataclass(eq=False)
class BlockEntry:
    """One block in the index (active chain or not)."""

    header: BlockHeader
    height: int
    prev: BlockEntry | None
    chainwork: int
    n_tx: int
    invalid: bool = False  # failed validation, or a descendant of a block that did
    manually_invalid: bool = False  # invalidateblock
    mtp: int = 0  # median time past of the block itself (its time and ten before it)
    sequence: int = 0  # arrival order, to prefer the first of equal-work tips
    children: list[BlockEntry] = field(default_factory=list)

    @property
    def hash(self) -> bytes:
        return self.header.hash


@dataclass
class BlockUndo:
    """What connecting a block spent (per non-coinbase transaction, per input)."""

    spent: list[list[Coin]]
    fees: list[int]


class Chain:
    """Block index, active chain, UTXO set, and a transaction index."""

    def __init__(self, params: ChainParams) -> None:
        self.params = params
        self.index: dict[bytes, BlockEntry] = {}
        self.blocks: dict[bytes, Block] = {}
        self.undo: dict[bytes, BlockUndo] = {}
        self.active: list[BlockEntry] = []
        self.utxo: dict[OutPoint, Coin] = {}
        self.txindex: dict[bytes, tuple[bytes, int]] = {}  # txid -> (block hash, position)
        self._sequence = 0
        genesis = params.genesis
        entry = BlockEntry(genesis.header, 0, None, block_work(genesis.header.bits), len(genesis.txs))
        entry.mtp = genesis.header.time
        self.index[genesis.hash] = entry
        self.blocks[genesis.hash] = genesis
        self.active.append(entry)
        # The genesis coinbase is not in the UTXO set (as in Core): it is unspendable.
        self.undo[genesis.hash] = BlockUndo([], [])

    # --- queries ---------------------------------------------------------------------------

    @property
    def tip(self) -> BlockEntry:
        return self.active[-1]

    @property
    def height(self) -> int:
        return len(self.active) - 1

    def in_active_chain(self, entry: BlockEntry) -> bool:
        return entry.height < len(self.active) and self.active[entry.height] is entry

    def next_in_chain(self, entry: BlockEntry) -> BlockEntry | None:
        if self.in_active_chain(entry) and entry.height + 1 < len(self.active):
            return self.active[entry.height + 1]
        return None

    def confirmations(self, entry: BlockEntry) -> int:
        return self.height - entry.height + 1 if self.in_active_chain(entry) else -1

    def find_tx(self, txid: bytes) -> tuple[Transaction, BlockEntry] | None:
        found = self.txindex.get(txid)
        if found is None:
            return None
        block_hash, pos = found
        return self.blocks[block_hash].txs[pos], self.index[block_hash]

    @staticmethod
    def _median_time(entry: BlockEntry) -> int:
        times: list[int] = []
        e: BlockEntry | None = entry
        while e is not None and len(times) < 11:
            times.append(e.header.time)
            e = e.prev
        times.sort()
        return times[len(times) // 2]

    # --- context-free checks ------------------------------------------------------------------

    def check_transaction(self, tx: Transaction) -> None:
        if not tx.vin:
            raise ValidationError(Kind.CONSENSUS, "bad-txns-vin-empty")
        if not tx.vout:
            raise ValidationError(Kind.CONSENSUS, "bad-txns-vout-empty")
        if tx.stripped_size * 4 > self.params.max_block_weight:
            raise ValidationError(Kind.CONSENSUS, "bad-txns-oversize")
        total = 0
        for out in tx.vout:
            if out.value < 0:
                raise ValidationError(Kind.CONSENSUS, "bad-txns-vout-negative")
            if out.value > MAX_MONEY:
                raise ValidationError(Kind.CONSENSUS, "bad-txns-vout-toolarge")
            total += out.value
            if total > MAX_MONEY:
                raise ValidationError(Kind.CONSENSUS, "bad-txns-txouttotal-toolarge")
        if len({txin.prevout for txin in tx.vin}) != len(tx.vin):
            raise ValidationError(Kind.CONSENSUS, "bad-txns-inputs-duplicate")
        if tx.is_coinbase():
            if not 2 <= len(tx.vin[0].script_sig) <= 100:
                raise ValidationError(Kind.CONSENSUS, "bad-cb-length")
        elif any(txin.prevout.is_null() for txin in tx.vin):
            raise ValidationError(Kind.CONSENSUS, "bad-txns-prevout-null")

    def check_block_header(self, header: BlockHeader) -> None:
        target, negative, overflow = bits_to_target(header.bits)
        pow_limit, _, _ = bits_to_target(self.params.pow_limit_bits)
        if negative or overflow or target == 0 or target > pow_limit:
            raise ValidationError(Kind.INVALID_HEADER, "high-hash", "proof of work failed")
        if int.from_bytes(header.hash, "little") > target:
            raise ValidationError(Kind.INVALID_HEADER, "high-hash", "proof of work failed")

    def check_block(self, block: Block) -> None:
        self.check_block_header(block.header)
        root, mutated = block_merkle_root(block.txs)
        if root != block.header.merkle_root:
            raise ValidationError(Kind.MUTATED, "bad-txnmrklroot", "hashMerkleRoot mismatch")
        if mutated:
            raise ValidationError(Kind.MUTATED, "bad-txns-duplicate", "duplicate transaction")
        max_weight = self.params.max_block_weight
        if not block.txs or len(block.txs) * 4 > max_weight or block.stripped_size * 4 > max_weight:
            raise ValidationError(Kind.CONSENSUS, "bad-blk-length", "size limits failed")
        if not block.txs[0].is_coinbase():
            raise ValidationError(Kind.CONSENSUS, "bad-cb-missing", "first tx is not coinbase")
        if any(tx.is_coinbase() for tx in block.txs[1:]):
            raise ValidationError(Kind.CONSENSUS, "bad-cb-multiple", "more than one coinbase")
        for tx in block.txs:
            try:
                self.check_transaction(tx)
            except ValidationError as e:
                raise ValidationError(
                    Kind.CONSENSUS, e.reason, f"Transaction check failed (tx hash {tx.txid_hex}) {e.debug}"
                ) from None

    # --- contextual checks ----------------------------------------------------------------------

    def contextual_check_header(self, header: BlockHeader, prev: BlockEntry, now: int | None) -> None:
        if header.bits != self.params.pow_limit_bits:  # regtest never retargets
            raise ValidationError(Kind.INVALID_HEADER, "bad-diffbits", "incorrect proof of work")
        if header.time <= prev.mtp:
            raise ValidationError(Kind.INVALID_HEADER, "time-too-old", "block's timestamp is too early")
        if now is not None and header.time > now + self.params.max_future_block_time:
            raise ValidationError(Kind.TIME_FUTURE, "time-too-new", "block timestamp too far in the future")
        if header.version < 4:  # BIP34, BIP66 and BIP65 are all active from height 1
            raise ValidationError(
                Kind.INVALID_HEADER,
                f"bad-version(0x{header.version & 0xFFFFFFFF:08x})",
                f"rejected nVersion=0x{header.version & 0xFFFFFFFF:08x} block",
            )

    def contextual_check_block(self, block: Block, prev: BlockEntry) -> None:
        height = prev.height + 1
        cutoff = prev.mtp  # BIP113: lock times compare against the median time past
        for tx in block.txs:
            if not is_final_tx(tx, height, cutoff):
                raise ValidationError(Kind.CONSENSUS, "bad-txns-nonfinal", "non-final transaction")
        if height >= self.params.bip34_height:
            expect = push_int(height)
            if block.txs[0].vin[0].script_sig[: len(expect)] != expect:
                raise ValidationError(Kind.CONSENSUS, "bad-cb-height", "block height mismatch in coinbase")
        have_witness_commitment = False
        pos = witness_commitment_index(block.txs[0])
        if pos is not None:
            witness = block.txs[0].vin[0].witness
            if len(witness) != 1 or len(witness[0]) != 32:
                raise ValidationError(
                    Kind.MUTATED,
                    "bad-witness-nonce-size",
                    "CheckWitnessMalleation : invalid witness reserved value size",
                )
            commitment = sha256d(witness_merkle_root(block.txs) + witness[0])
            if block.txs[0].vout[pos].script_pubkey[6:38] != commitment:
                raise ValidationError(
                    Kind.MUTATED,
                    "bad-witness-merkle-match",
                    "CheckWitnessMalleation : witness merkle commitment mismatch",
                )
            have_witness_commitment = True
        if not have_witness_commitment and any(tx.has_witness() for tx in block.txs):
            raise ValidationError(
                Kind.MUTATED, "unexpected-witness", "CheckWitnessMalleation : unexpected witness data found"
            )
        if block.weight > self.params.max_block_weight:
            raise ValidationError(Kind.CONSENSUS, "bad-blk-weight", "ContextualCheckBlock : weight limit failed")
        for tx in block.txs:
            for out in tx.vout:
                if solve(out.script_pubkey).kind is TxoutType.WITNESS_V1_TAPROOT:
                    raise ValidationError(
                        Kind.CONSENSUS, "bad-txns-taproot-unsupported", "this regtest stand-in cannot validate taproot"
                    )

    # --- inputs, amounts, lock times ---------------------------------------------------------------

    def check_tx_inputs(self, tx: Transaction, coins: list[Coin], spend_height: int) -> int:
        """Core's Consensus::CheckTxInputs: maturity and amounts; returns the fee."""
        value_in = 0
        for coin in coins:
            if coin.coinbase and spend_height - coin.height < self.params.coinbase_maturity:
                raise ValidationError(
                    Kind.PREMATURE_SPEND,
                    "bad-txns-premature-spend-of-coinbase",
                    f"tried to spend coinbase at depth {spend_height - coin.height}",
                )
            value_in += coin.out.value
            if not 0 <= coin.out.value <= MAX_MONEY or value_in > MAX_MONEY:
                raise ValidationError(Kind.CONSENSUS, "bad-txns-inputvalues-outofrange")
        value_out = sum(o.value for o in tx.vout)
        if value_in < value_out:
            raise ValidationError(
                Kind.CONSENSUS,
                "bad-txns-in-belowout",
                f"value in ({format_money(value_in)}) < value out ({format_money(value_out)})",
            )
        fee = value_in - value_out
        if not 0 <= fee <= MAX_MONEY:
            raise ValidationError(Kind.CONSENSUS, "bad-txns-fee-outofrange")
        return fee

    def sequence_locks(self, tx: Transaction, coin_heights: list[int], entry_for_time: BlockEntry) -> tuple[int, int]:
        """BIP68: (min height, min time) that the block including ``tx`` must
        exceed; -1 when unconstrained. ``coin_heights`` gives each input's coin
        height (the next block's height for mempool coins)."""
        min_height = -1
        min_time = -1
        if (tx.version & 0xFFFFFFFF) < 2:
            return min_height, min_time
        for txin, coin_height in zip(tx.vin, coin_heights, strict=True):
            seq = txin.sequence
            if seq & SEQUENCE_LOCKTIME_DISABLE_FLAG:
                continue
            if seq & SEQUENCE_LOCKTIME_TYPE_FLAG:
                # Time locks count from the median time past of the block before the coin's.
                base = self._ancestor(entry_for_time, max(coin_height - 1, 0))
                coin_time = base.mtp if base is not None else 0
                min_time = max(
                    min_time, coin_time + ((seq & SEQUENCE_LOCKTIME_MASK) << SEQUENCE_LOCKTIME_GRANULARITY) - 1
                )
            else:
                min_height = max(min_height, coin_height + (seq & SEQUENCE_LOCKTIME_MASK) - 1)
        return min_height, min_time

    def _ancestor(self, entry: BlockEntry, height: int) -> BlockEntry | None:
        if height > entry.height or height < 0:
            return None
        if self.in_active_chain(entry):
            return self.active[height]
        e: BlockEntry | None = entry
        while e is not None and e.height > height:
            e = e.prev
        return e

    def check_scripts(self, tx: Transaction, coins: list[Coin], flags: int) -> tuple[int, ScriptError] | None:
        """The first failing input and its error, or None when every input verifies."""
        cache = PrecomputedTxData(tx)
        for i, (txin, coin) in enumerate(zip(tx.vin, coins, strict=True)):
            try:
                verify_script(
                    txin.script_sig,
                    coin.out.script_pubkey,
                    txin.witness,
                    flags,
                    TxChecker(tx, i, coin.out.value, cache),
                )
            except ScriptError as e:
                return i, e
        return None

    # --- connecting and disconnecting -------------------------------------------------------------

    def connect_block(self, block: Block, entry: BlockEntry) -> None:
        """Apply ``block`` on top of the tip; ValidationError leaves the state untouched."""
        assert entry.prev is self.tip
        height = entry.height
        added: dict[OutPoint, Coin] = {}
        spent: dict[OutPoint, Coin] = {}
        undo = BlockUndo([], [])

        def lookup(op: OutPoint) -> Coin | None:
            if op in spent:
                return None
            return added.get(op) or self.utxo.get(op)

        fees = 0
        for pos, tx in enumerate(block.txs):
            if pos == 0:
                coins: list[Coin] = []
            else:
                coins = []
                for txin in tx.vin:
                    coin = lookup(txin.prevout)
                    if coin is None:
                        raise ValidationError(
                            Kind.CONSENSUS,
                            "bad-txns-inputs-missingorspent",
                            f"CheckTxInputs: inputs missing/spent in {tx.txid_hex}",
                        )
                    coins.append(coin)
                try:
                    fee = self.check_tx_inputs(tx, coins, height)
                except ValidationError as e:
                    raise ValidationError(Kind.CONSENSUS, e.reason, f"{e.debug} in tx {tx.txid_hex}".strip()) from None
                min_height, min_time = self.sequence_locks(tx, [c.height for c in coins], entry.prev or entry)
                if min_height >= height or min_time >= (entry.prev.mtp if entry.prev else 0):
                    raise ValidationError(
                        Kind.CONSENSUS, "bad-txns-nonfinal", "contains a non-BIP68-final transaction " + tx.txid_hex
                    )
                failure = self.check_scripts(tx, coins, CONSENSUS_FLAGS)
                if failure is not None:
                    raise ValidationError(
                        Kind.CONSENSUS,
                        f"mandatory-script-verify-flag-failed ({failure[1]})",
                        f"input {failure[0]} of {tx.txid_hex}",
                    )
                fees += fee
                undo.fees.append(fee)
                undo.spent.append(coins)
                for txin, coin in zip(tx.vin, coins, strict=True):
                    spent[txin.prevout] = coin
                    added.pop(txin.prevout, None)
            for n, out in enumerate(tx.vout):
                added[OutPoint(tx.txid, n)] = Coin(out, height, pos == 0)
        reward = sum(o.value for o in block.txs[0].vout)
        if reward > fees + self.params.subsidy(height):
            raise ValidationError(
                Kind.CONSENSUS,
                "bad-cb-amount",
                f"coinbase pays too much (actual={reward} vs limit={fees + self.params.subsidy(height)})",
            )
        for op in spent:
            self.utxo.pop(op, None)
        for op, coin in added.items():
            # Unspendable outputs (OP_RETURN, oversize) never enter the UTXO set.
            if not is_unspendable(coin.out.script_pubkey):
                self.utxo[op] = coin
        for pos, tx in enumerate(block.txs):
            self.txindex[tx.txid] = (block.hash, pos)
        self.undo[block.hash] = undo
        self.active.append(entry)

    def disconnect_tip(self) -> Block:
        entry = self.tip
        if entry.prev is None:
            raise ValueError("cannot disconnect the genesis block")
        block = self.blocks[entry.hash]
        undo = self.undo.pop(entry.hash)
        for tx in block.txs:
            for n in range(len(tx.vout)):
                self.utxo.pop(OutPoint(tx.txid, n), None)
            if self.txindex.get(tx.txid, (b"", 0))[0] == entry.hash:
                del self.txindex[tx.txid]
        for tx, coins in zip(block.txs[1:], undo.spent, strict=True):
            for txin, coin in zip(tx.vin, coins, strict=True):
                self.utxo[txin.prevout] = coin
        self.active.pop()
        return block

    # --- accepting blocks ------------------------------------------------------------------------

    def add_block(self, block: Block, now: int | None) -> tuple[BlockEntry, bool]:
        """Check a block and put it in the index (not yet on the active chain).
        Returns (entry, new); a known block returns its entry with new=False."""
        known = self.index.get(block.hash)
        if known is not None:
            return known, False
        prev = self.index.get(block.header.prev_hash)
        if prev is None:
            raise ValidationError(Kind.MISSING_PREV, "prev-blk-not-found")
        if prev.invalid:
            raise ValidationError(Kind.INVALID_PREV, "bad-prevblk")
        self.check_block(block)
        self.contextual_check_header(block.header, prev, now)
        self.contextual_check_block(block, prev)
        entry = BlockEntry(
            block.header, prev.height + 1, prev, prev.chainwork + block_work(block.header.bits), len(block.txs)
        )
        self._sequence += 1
        entry.sequence = self._sequence
        entry.mtp = self._median_time(entry)
        prev.children.append(entry)
        self.index[block.hash] = entry
        self.blocks[block.hash] = block
        return entry, True

    def _best_candidate(self) -> BlockEntry:
        best = self.tip
        for entry in self.index.values():
            if entry.invalid:
                continue
            if entry.chainwork > best.chainwork or (
                entry.chainwork == best.chainwork and entry.sequence < best.sequence and not self.in_active_chain(best)
            ):
                best = entry
        return best

    def activate_best_chain(self) -> tuple[list[Block], list[Block], list[tuple[BlockEntry, ValidationError]]]:
        """Move the active chain to the valid block with the most work.
        Returns (disconnected, connected, failures), oldest first for connected."""
        disconnected: list[Block] = []
        connected: list[Block] = []
        failures: list[tuple[BlockEntry, ValidationError]] = []
        while True:
            best = self._best_candidate()
            if best is self.tip:
                return disconnected, connected, failures
            path: list[BlockEntry] = []
            e: BlockEntry | None = best
            while e is not None and not self.in_active_chain(e):
                path.append(e)
                e = e.prev
            assert e is not None
            fork = e
            while self.tip is not fork:
                disconnected.append(self.disconnect_tip())
            for entry in reversed(path):
                try:
                    self.connect_block(self.blocks[entry.hash], entry)
                    connected.append(self.blocks[entry.hash])
                except ValidationError as err:
                    failures.append((entry, err))
                    self.mark_invalid(entry)
                    break

    def mark_invalid(self, entry: BlockEntry) -> None:
        stack = [entry]
        while stack:
            e = stack.pop()
            e.invalid = True
            stack.extend(e.children)

    def invalidate(self, entry: BlockEntry) -> list[Block]:
        """invalidateblock: mark ``entry`` and its descendants invalid, and fall back.
        Returns the blocks disconnected (newest first)."""
        disconnected: list[Block] = []
        while self.in_active_chain(entry):
            disconnected.append(self.disconnect_tip())
        entry.manually_invalid = True
        self.mark_invalid(entry)
        more, _, _ = self.activate_best_chain()
        disconnected.extend(more)
        return disconnected

    def reconsider(self, entry: BlockEntry) -> None:
        """reconsiderblock: clear invalidity on ``entry``, its ancestors and descendants."""
        e: BlockEntry | None = entry
        while e is not None:
            e.invalid = False
            e.manually_invalid = False
            e = e.prev
        stack = list(entry.children)
        while stack:
            child = stack.pop()
            child.invalid = False
            child.manually_invalid = False
            stack.extend(child.children)

    # --- mining ------------------------------------------------------------------------------------

    def create_block(
        self, coinbase_script: bytes, txs: list[Transaction], fees: int, time: int, prev: BlockEntry | None = None
    ) -> Block:
        """A block template on ``prev`` (the tip by default): BIP34 height, subsidy
        plus fees, witness commitment."""
        prev = prev or self.tip
        height = prev.height + 1
        coinbase_witness = (b"\x00" * 32,)
        coinbase = Transaction(
            version=2,
            vin=(TxIn(NULL_OUTPOINT, push_int(height) + b"\x00", SEQUENCE_FINAL, coinbase_witness),),
            vout=(TxOut(self.params.subsidy(height) + fees, coinbase_script),),
            locktime=0,
        )
        body = [coinbase, *txs]
        commitment = sha256d(witness_merkle_root(body) + coinbase_witness[0])
        coinbase = Transaction(
            coinbase.version,
            coinbase.vin,
            (*coinbase.vout, TxOut(0, WITNESS_COMMITMENT_HEADER + commitment)),
            coinbase.locktime,
        )
        body[0] = coinbase
        root, _ = block_merkle_root(body)
        block_time = max(time, prev.mtp + 1)
        header = BlockHeader(BLOCK_VERSION, prev.hash, root, block_time, self.params.pow_limit_bits, 0)
        return Block(header, tuple(body))

    def solve(self, block: Block, max_tries: int) -> Block | None:
        """Find a nonce meeting the target (about two tries at regtest difficulty)."""
        target, _, _ = bits_to_target(block.header.bits)
        header = block.header
        for nonce in range(max_tries):
            candidate = header.with_nonce(nonce)
            if int.from_bytes(candidate.hash, "little") <= target:
                return Block(candidate, block.txs)
        return None

    def next_block_time(self, now: int) -> int:
        return max(now, self.tip.mtp + 1)


def is_final_tx(tx: Transaction, height: int, time_cutoff: int) -> bool:
    """Core's IsFinalTx: nLockTime below the height or time, or every input final."""
    if tx.locktime == 0:
        return True
    limit = height if tx.locktime < LOCKTIME_THRESHOLD else time_cutoff
    if tx.locktime < limit:
        return True
    return all(txin.sequence == SEQUENCE_FINAL for txin in tx.vin)


def witness_commitment_index(coinbase: Transaction) -> int | None:
    """The last output carrying a witness commitment (BIP141), if any."""
    found = None
    for i, out in enumerate(coinbase.vout):
        script = out.script_pubkey
        if len(script) >= 38 and script[:6] == WITNESS_COMMITMENT_HEADER:
            found = i
    return found


def format_money(sats: int) -> str:
    """Core's FormatMoney: at least two decimals, trailing zeros trimmed."""
    sign = "-" if sats < 0 else ""
    q, r = divmod(abs(sats), 100_000_000)
    frac = f"{r:08d}".rstrip("0")
    if len(frac) < 2:
        frac = frac.ljust(2, "0")
    return f"{sign}{q}.{frac}"


__all__ = [
    "MEMPOOL_HEIGHT",
    "NULL_HASH",
    "Block",
    "BlockEntry",
    "BlockUndo",
    "Chain",
    "Coin",
    "Kind",
    "ValidationError",
    "format_money",
    "is_final_tx",
]

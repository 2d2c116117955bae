"""The chain state: UTXO set, tip, and every rule a validator applies.

Pure and in memory: no I/O, no clock (the caller passes ``now``), no
randomness. A caller that persists the chain stores what
:meth:`ChainState.connect_block` returns (a :class:`BlockUndo`: the spent
entries and the created ones) in one database transaction, and can roll
the tip back with :meth:`ChainState.disconnect_block`.

Validation runs against an overlay (:class:`UtxoView`) of the set, so a
block that fails at any transaction leaves the chain exactly as it was;
only a block that passes every rule is applied, and applying cannot fail.

Rules, in the order they are checked, and the error each raises:

    header     height == tip + 1                     BadHeight
               prev == tip hash                      BadPrevHash
               challenge == federation's             BadChallenge
               time > median time past (11 blocks)   TimeTooOld
               time <= now + max_future_block_time   TimeTooNew
               m valid signatures (check_proof)      BlockSignatureError tree
    block      weight, serialized size               BlockWeightExceeded, BlockTooLarge
               merkle root over txids                BadMerkleRoot
               no txid twice                         DuplicateTransaction
               coinbase first and only first,
               BIP34 height push                     BadCoinbase
               witness commitment                    BadWitnessCommitment
    each tx    inputs, outputs non-empty             EmptyInputs, EmptyOutputs
               no outpoint twice in the tx           DuplicateInput
               locktime reached                      NonFinalTransaction
               outputs are templates                 NonStandardScript, BadFeeOutput
               peg-outs (with a PegOutVerifier)      PegOutError tree (consensus.peg)
               explicit policy asset, in range,
               no spendable zero-value output        WrongAsset, ValueOutOfRange
               no issuance                           UnsupportedFeature
               peg-ins unclaimed, then verified      PegInAlreadyClaimed, BadTxnsDoublePegin,
                                                     PegInError tree (consensus.peg)
               inputs exist, unspent, mature         MissingInput, DoubleSpend, ImmatureSpend
               inputs == outputs (fee outputs incl.) ValuesUnbalanced
               confidential: field forms, tally      ConfidentialError tree (consensus.ct)
               witnesses satisfy the spent scripts   ScriptVerifyError, BadTxSignature
    coinbase   pays at most the block's fees         BadCoinbase
    proofs     every confidential output's range     BadRangeProof, BadSurjectionProof,
               and surjection proof, the whole       ConfidentialValueOutOfRange
               block in one parallel batch

Amounts: every explicit value and every sum is within [0, MAX_MONEY]; the
fee of a transaction is the sum of its explicit fee outputs (Elements).

Fees in assembled blocks: the coinbase's first output pays the block's fees
in the policy asset to ``fee_script`` if the proposer names one (P2WPKH or
P2WSH), otherwise to a bare ``OP_RETURN``, which burns them visibly (the
shape of the real Liquid block in tests/vectors, whose first coinbase output
is a bare OP_RETURN). Either way the amount is on the chain for an audit to
count. With no fees that output is a zero-value OP_RETURN, since Elements
refuses spendable zero-value outputs.

Peg-ins, peg-outs and confidential outputs are delegated through typed
hooks, :class:`PegInVerifier`, :class:`PegOutVerifier` and
:class:`ConfidentialVerifier` (``consensus.peg`` implements the first two).
Peg-ins are rejected with UnsupportedFeature unless a verifier is given;
peg-out outputs are accepted by shape alone unless one is given. Claims are
tracked here: a mainchain output claimed by an earlier block raises
PegInAlreadyClaimed (pegin-already-claimed), by an earlier transaction of
the same block BadTxnsDoublePegin (bad-txns-double-pegin), and twice in one
transaction DuplicateInput (bad-txns-inputs-duplicate). Confidential
transactions are accepted by default, as on Liquid:
:class:`consensus.ct.ConfidentialTxVerifier` applies Elements' rules; pass
:class:`RejectConfidential` to opt out. Balance of explicit-only
transactions stays here.

Proofs of a block are verified together. With a verifier that can defer
(:class:`BatchConfidentialVerifier`, as the default is), each transaction's
cheap confidential rules and its tally are checked in turn, and every
output's range and surjection proof is collected and verified once, across
cores, after the block's other rules have passed; the error reported is the
lowest-index failing proof in block order, whatever the scheduling. A lone
transaction (:meth:`ChainState.validate_transaction`) verifies its own
outputs' proofs the same way before its signatures.

Results remembered, never assumed: a block found valid on the tip is not
checked again on that tip except for its header rules (:class:`_CheckedBlock`),
and a transaction :meth:`ChainState.validate_transaction` passed is not
checked again in a block while everything its rules read is unchanged
(:class:`_ValidTx`). Peg-ins, which also read the mainchain, are never
remembered. Both make a member's repeated checks of the same block, and a
block of transactions its mempool already checked, cost almost nothing.

Not enforced yet: BIP68 relative lock-times (sequence numbers), sigop
counting (the accepted templates bound it: at most 16 keys per input).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Protocol, runtime_checkable

from .block import Block, witness_commitment_script
from .ct import ConfidentialTxVerifier, ProofCheck
from .errors import (
    BadChallenge,
    BadCoinbase,
    BadFeeOutput,
    BadHeight,
    BadMerkleRoot,
    BadPrevHash,
    BadTxnsDoublePegin,
    BadWitnessCommitment,
    BlockTooLarge,
    BlockWeightExceeded,
    ConfidentialError,
    DoubleSpend,
    DuplicateInput,
    DuplicateTransaction,
    EmptyInputs,
    EmptyOutputs,
    ImmatureSpend,
    MissingInput,
    NonFinalTransaction,
    PegInAlreadyClaimed,
    ProofTooLarge,
    ScriptVerifyError,
    TimeTooNew,
    TimeTooOld,
    TxTooLarge,
    UnsupportedFeature,
    ValidationError,
    ValueOutOfRange,
    ValuesUnbalanced,
    WrongAsset,
)
from .hashes import merkle_root
from .header import MAX_SOLUTION_SIZE, BlockHeader, BlockProof, solution_signers
from .params import ChainParams
from .script import OP_0, OP_RETURN, push_int
from .serialize import ser_compact_size
from .standard import OutputKind, SignatureHasher, classify_output, verify_spend
from .transaction import (
    NULL_OUTPOINT,
    SEQUENCE_FINAL,
    ConfidentialAsset,
    OutPoint,
    Transaction,
    TxIn,
    TxInWitness,
    TxOut,
    TxOutWitness,
)

COIN = 100_000_000
MAX_MONEY = 21_000_000 * COIN
LOCKTIME_THRESHOLD = 500_000_000
"""Below: a locktime is a height; at or above: a Unix time."""
MIN_COINBASE_SCRIPT_SIZE = 2
MAX_COINBASE_SCRIPT_SIZE = 100
ZERO_HASH = b"\x00" * 32


# --- Entries and hooks ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UtxoEntry:
    """An unspent output and where it was created."""

    output: TxOut
    height: int
    is_coinbase: bool


class PegInVerifier(Protocol):
    """Checks a peg-in input: its witness (value, asset, genesis hash, claim
    script, mainchain transaction, merkle proof), the mainchain depth and the
    claim script. Returns the output it claims (explicit policy-asset value
    paid to the claim script), which the input's witness must then satisfy
    like any spent output. Raises PegInError (or UnsupportedFeature).

    Whether the mainchain output was claimed before is checked by the chain
    state, which owns the set of claims, not by the verifier."""

    def verify_pegin(self, tx: Transaction, index: int, height: int) -> TxOut: ...


class PegOutVerifier(Protocol):
    """Checks a peg-out output (an output :func:`classify_output` calls
    PEGOUT): its parent genesis hash, destination and PAK proof. Raises
    PegOutError. Without one, a peg-out is accepted by its shape alone."""

    def verify_pegout(self, tx: Transaction, index: int) -> None: ...


class ConfidentialVerifier(Protocol):
    """Checks transactions with committed (blinded) assets or values.

    Called only for a transaction with at least one non-explicit asset or
    value among its outputs or spent outputs; explicit-only transactions
    are balanced by the chain state itself. ``verify_output`` is called for
    each output whose asset or value is not explicit, then ``verify_balance``
    once. Fee outputs are still checked here (explicit, policy asset).

    An implementation over ``confidential.verify`` maps each asset to its
    generator (explicit ids through the unblinded generator), passes the
    output's scriptPubKey to the range proof, and must translate that
    package's own errors into :class:`~consensus.errors.ConfidentialError`
    or :class:`~consensus.errors.ValuesUnbalanced`: the chain state lets
    only consensus errors through and does not catch others, so that a bug
    in a verifier is never mistaken for an invalid block."""

    def verify_output(self, output: TxOut, witness: TxOutWitness, input_assets: Sequence[ConfidentialAsset]) -> None:
        """The output's range proof (bound to its asset and scriptPubKey)
        and surjection proof onto ``input_assets``. Raises ConfidentialError."""
        ...

    def verify_balance(self, inputs: Sequence[TxOut], outputs: Sequence[TxOut]) -> None:
        """The tally: spent values equal output values, fee outputs included.
        Raises ValuesUnbalanced or ConfidentialError."""
        ...


@runtime_checkable
class BatchConfidentialVerifier(ConfidentialVerifier, Protocol):
    """A ConfidentialVerifier that can split an output's work in two, so that a
    block's proofs are verified in one batch.

    For each non-explicit output the chain state calls ``defer_output``
    (cheap rules now, raising ConfidentialError or WrongAsset), then
    ``verify_balance`` once per transaction, and ``verify_proofs`` once per
    block (or once per lone transaction) over the deferred checks in block
    order. ``verify_proofs`` must raise the error of the lowest-index
    failing check, however it schedules the work."""

    def defer_output(
        self,
        output: TxOut,
        witness: TxOutWitness,
        input_assets: Sequence[ConfidentialAsset],
        *,
        label: str = "output",
    ) -> ProofCheck: ...

    def verify_proofs(self, checks: Sequence[ProofCheck]) -> None: ...


class RejectPegIns:
    """The default PegInVerifier: no peg is configured."""

    def verify_pegin(self, tx: Transaction, index: int, height: int) -> TxOut:
        raise UnsupportedFeature(f"input {index} is a peg-in and no peg-in verifier is configured")


class RejectConfidential:
    """A ConfidentialVerifier that refuses every confidential transaction with
    UnsupportedFeature: the explicit opt-out (the default accepts them)."""

    def verify_output(self, output: TxOut, witness: TxOutWitness, input_assets: Sequence[ConfidentialAsset]) -> None:
        raise UnsupportedFeature("confidential outputs are not accepted: no confidential verifier is configured")

    def verify_balance(self, inputs: Sequence[TxOut], outputs: Sequence[TxOut]) -> None:
        raise UnsupportedFeature("committed values are not accepted: no confidential verifier is configured")


@dataclass(frozen=True)
class BlockUndo:
    """What connecting one block changed, enough to persist it and to undo it.

    ``spent`` are entries that existed before the block and are gone after;
    ``created`` are entries the block added that are still unspent after it
    (an output created and spent inside the block appears in neither).
    """

    height: int
    block_hash: bytes
    prev_hash: bytes
    spent: tuple[tuple[OutPoint, UtxoEntry], ...]
    created: tuple[tuple[OutPoint, UtxoEntry], ...]
    txids: tuple[bytes, ...]
    pegins_claimed: tuple[OutPoint, ...]
    fees: int


# --- The overlay ---------------------------------------------------------------


class UtxoView:
    """A copy-on-write overlay over the chain's UTXO set, its record of
    transactions and its peg-in claims. Validation spends and adds here; the
    base is untouched until :meth:`ChainState.connect_block` applies the
    overlay's net changes."""

    __slots__ = ("_added", "_base", "_base_claims", "_base_txs", "_claimed", "_new_txs", "_spent")

    def __init__(
        self,
        base: Mapping[OutPoint, UtxoEntry],
        base_txs: Mapping[bytes, int],
        base_claims: frozenset[OutPoint] | set[OutPoint],
    ) -> None:
        self._base = base
        self._base_txs = base_txs
        self._base_claims = base_claims
        self._added: dict[OutPoint, UtxoEntry] = {}
        self._spent: dict[OutPoint, UtxoEntry] = {}
        self._new_txs: dict[bytes, int] = {}
        self._claimed: list[OutPoint] = []

    def get(self, op: OutPoint) -> UtxoEntry | None:
        entry = self._added.get(op)
        if entry is not None:
            return entry
        if op in self._spent:
            return None
        return self._base.get(op)

    def spend(self, op: OutPoint) -> None:
        if self._added.pop(op, None) is None:
            self._spent[op] = self._base[op]

    def add(self, op: OutPoint, entry: UtxoEntry) -> None:
        self._added[op] = entry

    def spendable_mask(self, txid: bytes) -> int | None:
        """Bit i set if output i of ``txid`` was ever spendable; None for a
        transaction this chain has never seen."""
        mask = self._new_txs.get(txid)
        return mask if mask is not None else self._base_txs.get(txid)

    def has_tx(self, txid: bytes) -> bool:
        return txid in self._new_txs or txid in self._base_txs

    def record_tx(self, txid: bytes, mask: int) -> None:
        self._new_txs[txid] = mask

    def is_claimed(self, op: OutPoint) -> bool:
        return op in self._base_claims or op in self._claimed

    def claim(self, op: OutPoint) -> None:
        self._claimed.append(op)

    def is_claimed_before(self, op: OutPoint) -> bool:
        """Claimed by a block already connected (not by this overlay)."""
        return op in self._base_claims

    def is_claimed_here(self, op: OutPoint) -> bool:
        """Claimed by a transaction already checked in this overlay: an
        earlier transaction of the same block."""
        return op in self._claimed


# --- Genesis -------------------------------------------------------------------


def _coinbase_script_sig(height: int) -> bytes:
    # BIP34's height push, then OP_0 so that the script is at least 2 bytes.
    return push_int(height) + bytes((OP_0,))


def genesis_block(params: ChainParams) -> Block:
    """The deterministic genesis: height 0, zero prev hash, the federation's
    challenge and an empty solution. With ``initial_free_coins`` its coinbase
    pays them in the policy asset to ``initial_free_coins_script``."""
    if params.initial_free_coins > 0:
        out = TxOut.explicit(params.policy_asset, params.initial_free_coins, params.initial_free_coins_script)
    else:
        out = TxOut.explicit(params.policy_asset, 0, bytes((OP_RETURN,)))
    coinbase = Transaction(2, (TxIn(NULL_OUTPOINT, _coinbase_script_sig(0), SEQUENCE_FINAL),), (out,), 0)
    header = BlockHeader(
        params.block_version,
        ZERO_HASH,
        merkle_root([coinbase.txid]),
        params.genesis_time,
        0,
        BlockProof(params.federation.challenge, b""),
    )
    return Block(header, (coinbase,))


def _spendable_mask(tx: Transaction) -> int:
    mask = 0
    for i, out in enumerate(tx.outputs):
        spk = out.script_pubkey
        if (len(spk) == 22 and spk[:2] == b"\x00\x14") or (len(spk) == 34 and spk[:2] == b"\x00\x20"):
            mask |= 1 << i
    return mask


# --- The chain -----------------------------------------------------------------

_MAX_VALID_TXS = 100_000
"""Transactions remembered as valid (a deep mempool's worth); forgotten all
at once beyond that, which only costs checking them again."""


@dataclass(frozen=True, slots=True)
class _ValidTx:
    """A transaction that passed :meth:`ChainState.validate_transaction` (a
    mempool's check), remembered under its wtxid (the hash of all its bytes,
    witnesses included) so that a block holding it need not run its rules
    again, as Bitcoin Core's script cache spares a block what the mempool
    verified.

    Every rule of a transaction reads only the transaction, the chain's fixed
    parameters and verifiers, the outputs it spends, the height and the
    median time past (lock-time and coinbase maturity), and, for a peg-in,
    the claims and the mainchain. So in a block the earlier result stands
    when: no input is a peg-in (those are never remembered); every input
    resolves in the block's view to the very UtxoEntry object it spent then
    (still unspent, not spent earlier in the block, the same output and
    height); and the block's height and median time are at least those it
    was checked at, since both rules they feed only pass more as they grow.
    Anything else is checked in full."""

    height: int
    cutoff: int
    spent: tuple[UtxoEntry, ...]
    fee: int


_MAX_CHECKED_BLOCKS = 8
"""Candidates remembered as valid on the current tip (a height sees few)."""


@dataclass(frozen=True, slots=True)
class _CheckedBlock:
    """A block whose transaction rules passed on the tip ``tip_hash``.

    A member checks the same block several times before it is the tip: the
    proposer when it assembles it and again when it proposes it, every member
    on the proposal, and once more when m signatures make it final. Only the
    header rules (height, previous hash, challenge, time against the median
    and the clock, the solution's signatures, size) can give a different
    answer on the same tip; they are re-checked every time. The rest is a
    function of the transactions and the UTXO set, so it is remembered when
    it passed, keyed on the block hash, the tip, and the very tuple of
    transactions checked (immutable objects: the same tuple is the same
    bytes, witnesses included, which the block hash alone does not cover
    until the witness commitment is checked). Blocks with peg-ins are never
    remembered: their validity also depends on the mainchain as this member
    sees it, which can change between two checks. Connecting or
    disconnecting a block forgets everything."""

    tip_hash: bytes
    transactions: tuple[Transaction, ...]
    view: UtxoView
    fees: int


class ChainState:
    """The UTXO set and tip of one chain, and its validation rules."""

    def __init__(
        self,
        params: ChainParams,
        *,
        pegin_verifier: PegInVerifier | None = None,
        confidential_verifier: ConfidentialVerifier | None = None,
        pegout_verifier: PegOutVerifier | None = None,
    ) -> None:
        self._params = params
        self._pegin: PegInVerifier = pegin_verifier or RejectPegIns()
        self._pegout = pegout_verifier
        if confidential_verifier is None:
            confidential_verifier = ConfidentialTxVerifier(params.policy_asset)
        self._ct: ConfidentialVerifier = confidential_verifier
        self._batch = confidential_verifier if isinstance(confidential_verifier, BatchConfidentialVerifier) else None
        self._utxos: dict[OutPoint, UtxoEntry] = {}
        self._txs: dict[bytes, int] = {}
        self._claims: set[OutPoint] = set()
        genesis = genesis_block(params)
        coinbase = genesis.transactions[0]
        if params.initial_free_coins > 0:
            out = coinbase.outputs[0]
            try:
                spendable = classify_output(out).spendable
            except ValidationError:
                spendable = False
            if not spendable:
                raise ValueError("initial_free_coins_script must be P2WPKH or P2WSH")
            if params.initial_free_coins > MAX_MONEY:
                raise ValueError("initial_free_coins exceeds MAX_MONEY")
            # Spendable at once, like Elements' -initialfreecoins: not a
            # coinbase for the maturity rule.
            self._utxos[OutPoint(coinbase.txid, 0)] = UtxoEntry(out, 0, False)
        self._txs[coinbase.txid] = _spendable_mask(coinbase)
        self._genesis = genesis
        self._headers: list[BlockHeader] = [genesis.header]
        self._checked: dict[bytes, _CheckedBlock] = {}
        self._valid_txs: dict[bytes, _ValidTx] = {}

    # -- the tip --------------------------------------------------------------

    @property
    def params(self) -> ChainParams:
        return self._params

    @property
    def genesis(self) -> Block:
        return self._genesis

    @property
    def tip_header(self) -> BlockHeader:
        return self._headers[-1]

    @property
    def tip_hash(self) -> bytes:
        return self._headers[-1].hash

    @property
    def tip_height(self) -> int:
        return len(self._headers) - 1

    def header_at(self, height: int) -> BlockHeader:
        """The connected header at ``height``; IndexError if there is none."""
        if not 0 <= height < len(self._headers):
            raise IndexError(f"no block at height {height}")
        return self._headers[height]

    def recent_headers(self, count: int) -> list[BlockHeader]:
        """The last ``count`` headers, oldest first."""
        return self._headers[-count:] if count > 0 else []

    def median_time_past(self) -> int:
        """Median time of the last ``median_time_span`` blocks up to the tip."""
        times = sorted(h.time for h in self._headers[-self._params.median_time_span :])
        return times[len(times) // 2]

    # -- the UTXO set ---------------------------------------------------------

    @property
    def utxos(self) -> Mapping[OutPoint, UtxoEntry]:
        """A read-only view of the UTXO set."""
        return MappingProxyType(self._utxos)

    def utxo(self, op: OutPoint) -> UtxoEntry | None:
        return self._utxos.get(op)

    def is_pegin_claimed(self, op: OutPoint) -> bool:
        return op in self._claims

    def _view(self) -> UtxoView:
        return UtxoView(self._utxos, self._txs, self._claims)

    # -- transactions ---------------------------------------------------------

    def validate_transaction(self, tx: Transaction, *, height: int | None = None) -> int:
        """Check ``tx`` against the current UTXO set as if it were in the
        next block (or in a block at ``height``); return its fee."""
        if height is None:
            height = self.tip_height + 1
        if tx.is_coinbase:
            raise BadCoinbase("a coinbase is valid only as a block's first transaction")
        view = self._view()
        if view.has_tx(tx.txid):
            raise DuplicateTransaction(f"{tx.txid_hex} is already in the chain")
        cutoff = self.median_time_past()
        fee = self._check_tx(tx, view, height, cutoff)
        self._remember_valid(tx, height, cutoff, fee)
        return fee

    def _remember_valid(self, tx: Transaction, height: int, cutoff: int, fee: int) -> None:
        if any(txin.is_pegin for txin in tx.inputs):
            return  # depends on the mainchain too: never remembered
        spent = tuple(self._utxos[txin.prevout] for txin in tx.inputs)
        if len(self._valid_txs) >= _MAX_VALID_TXS:
            self._valid_txs.clear()
        self._valid_txs[tx.wtxid] = _ValidTx(height, cutoff, spent, fee)

    def _known_valid_fee(self, tx: Transaction, view: UtxoView, height: int, cutoff: int) -> int | None:
        """The fee of ``tx`` if it passed :meth:`validate_transaction` and
        nothing its rules read has changed since, else None (see _ValidTx)."""
        known = self._valid_txs.get(tx.wtxid)
        if known is None or height < known.height or cutoff < known.cutoff:
            return None
        for txin, entry in zip(tx.inputs, known.spent, strict=True):
            if view.get(txin.prevout) is not entry:
                return None
        return known.fee

    def _check_tx(
        self,
        tx: Transaction,
        view: UtxoView,
        height: int,
        lock_time_cutoff: int,
        proof_checks: list[ProofCheck] | None = None,
    ) -> int:
        """Every transaction rule; spends nothing. Returns the fee.

        With ``proof_checks`` (a block being checked) and a batch verifier,
        the outputs' proofs are appended there for the block's batch instead
        of being verified here."""
        params = self._params
        inputs = tx.inputs
        outputs = tx.outputs
        if not inputs:
            raise EmptyInputs("transaction has no inputs")
        if not outputs:
            raise EmptyOutputs("transaction has no outputs")
        if len(inputs) > 1 and len({i.prevout for i in inputs}) != len(inputs):
            raise DuplicateInput("an outpoint is spent twice in one transaction")
        if tx.weight > params.max_block_weight:
            raise TxTooLarge(f"transaction weight {tx.weight}")
        if tx.locktime and not _is_final(tx, height, lock_time_cutoff):
            raise NonFinalTransaction(f"locktime {tx.locktime} not reached at height {height}")

        policy = params.policy_asset
        confidential = False
        value_out = 0
        fee = 0
        for i, out in enumerate(outputs):
            kind = classify_output(out)
            if out.asset.raw[0] == 1 and out.value.raw[0] == 1:
                if out.asset.raw[1:] != policy:
                    raise WrongAsset(f"output {i} is not the policy asset")
                amount = out.value.amount
                if amount > MAX_MONEY:
                    raise ValueOutOfRange(f"output {i} value {amount}")
                if amount == 0 and kind.spendable:
                    # Elements' VerifyAmounts: no spendable zero-value outputs.
                    raise ValueOutOfRange(f"output {i} is spendable and worth nothing")
                value_out += amount
                if kind is OutputKind.FEE:
                    if amount == 0:
                        raise BadFeeOutput("a fee output pays nothing")
                    fee += amount
                if not tx.output_witnesses[i].is_null:
                    raise ConfidentialError(f"explicit output {i} carries a proof")
            else:
                if out.asset.is_null or out.value.is_null:
                    raise ValueOutOfRange(f"output {i} has a null asset or value")
                confidential = True
            if kind is OutputKind.PEGOUT and self._pegout is not None:
                self._pegout.verify_pegout(tx, i)
        if value_out > MAX_MONEY:
            raise ValueOutOfRange("outputs total more than MAX_MONEY")

        spent_outputs: list[TxOut] = []
        value_in = 0
        witnesses = tx.input_witnesses
        pegins: list[OutPoint] = []
        maturity = params.coinbase_maturity
        for i, txin in enumerate(inputs):
            if txin.issuance is not None:
                raise UnsupportedFeature(f"input {i} issues an asset; issuance is not accepted")
            wit = witnesses[i]
            if wit.issuance_amount_rangeproof or wit.inflation_keys_rangeproof:
                raise ScriptVerifyError(f"input {i} carries issuance proofs without an issuance")
            op = txin.prevout
            if op.is_null:
                raise BadCoinbase(f"input {i} has the coinbase's null prevout")
            if txin.is_pegin:
                if view.is_claimed_before(op):
                    raise PegInAlreadyClaimed(f"pegin-already-claimed: mainchain output {op}")
                if view.is_claimed_here(op):
                    raise BadTxnsDoublePegin(f"bad-txns-double-pegin: mainchain output {op} claimed twice in a block")
                if op in pegins:  # pragma: no cover - the duplicate-input rule refused it above
                    raise DuplicateInput(f"bad-txns-inputs-duplicate: mainchain output {op} claimed twice in a tx")
                spent = self._pegin.verify_pegin(tx, i, height)
                pegins.append(op)
            else:
                if wit.pegin_witness:
                    raise ScriptVerifyError(f"input {i} carries a peg-in witness but is not a peg-in")
                entry = view.get(op)
                if entry is None:
                    mask = view.spendable_mask(op.txid)
                    if mask is not None and (mask >> op.index) & 1:
                        raise DoubleSpend(f"input {i} spends {op}, which is already spent")
                    raise MissingInput(f"input {i} spends {op}, which does not exist")
                if entry.is_coinbase and height - entry.height < maturity:
                    raise ImmatureSpend(f"input {i} spends a coinbase output from height {entry.height}")
                spent = entry.output
            if spent.asset.raw[0] == 1 and spent.value.raw[0] == 1:
                if spent.asset.raw[1:] != policy:
                    raise WrongAsset(f"input {i} spends an asset other than the policy asset")
                value_in += spent.value.amount
            else:
                confidential = True
            spent_outputs.append(spent)

        if confidential:
            input_assets = [s.asset for s in spent_outputs]
            batch = self._batch
            if batch is None:
                for i, out in enumerate(outputs):
                    if not out.is_explicit:
                        self._ct.verify_output(out, tx.output_witnesses[i], input_assets)
                self._ct.verify_balance(spent_outputs, outputs)
            else:
                txid_hex = tx.txid_hex
                checks = [
                    batch.defer_output(out, tx.output_witnesses[i], input_assets, label=f"tx {txid_hex} output {i}")
                    for i, out in enumerate(outputs)
                    if not out.is_explicit
                ]
                batch.verify_balance(spent_outputs, outputs)
                if proof_checks is None:
                    batch.verify_proofs(checks)
                else:
                    proof_checks.extend(checks)
        elif value_in > MAX_MONEY:
            raise ValueOutOfRange("inputs total more than MAX_MONEY")
        elif value_in != value_out:
            raise ValuesUnbalanced(f"inputs {value_in} != outputs {value_out} (fee {fee} included)")

        # Signatures last: they are the expensive part.
        hasher = SignatureHasher(tx)
        for i, spent in enumerate(spent_outputs):
            verify_spend(hasher, tx, i, spent)
        for op in pegins:
            view.claim(op)
        return fee

    # -- blocks ---------------------------------------------------------------

    def check_block(self, block: Block, now: int, *, check_proof: bool = True) -> None:
        """Every rule for ``block`` as the next block; changes nothing.

        With ``check_proof=False`` (a proposer's unsigned candidate, or a
        member checking a proposal before signing) the solution is not
        checked, and the size limits leave room for the largest solution."""
        self._check_block(block, now, check_proof)

    def connect_block(self, block: Block, now: int, *, check_proof: bool = True) -> BlockUndo:
        """Validate ``block`` and, only if it passes, apply it as the new tip."""
        view, fees = self._check_block(block, now, check_proof)
        undo = BlockUndo(
            height=block.header.height,
            block_hash=block.hash,
            prev_hash=block.header.prev_hash,
            spent=tuple(view._spent.items()),
            created=tuple(view._added.items()),
            txids=tuple(view._new_txs),
            pegins_claimed=tuple(view._claimed),
            fees=fees,
        )
        # Nothing below can fail: the block is applied whole.
        self._checked.clear()
        for tx in block.transactions:
            self._valid_txs.pop(tx.wtxid, None)  # in the chain now: never valid again
        for op in view._spent:
            del self._utxos[op]
        self._utxos.update(view._added)
        self._txs.update(view._new_txs)
        self._claims.update(view._claimed)
        self._headers.append(block.header)
        return undo

    def disconnect_block(self, undo: BlockUndo) -> None:
        """Roll the tip back by one block, exactly undoing its connect."""
        if undo.block_hash != self.tip_hash or undo.height != self.tip_height or undo.height == 0:
            raise ValueError("can only disconnect the current tip, and never genesis")
        for op, _ in undo.created:
            del self._utxos[op]
        for op, entry in undo.spent:
            self._utxos[op] = entry
        for txid in undo.txids:
            del self._txs[txid]
        self._claims.difference_update(undo.pegins_claimed)
        self._headers.pop()
        self._checked.clear()

    def _check_block(self, block: Block, now: int, check_proof: bool) -> tuple[UtxoView, int]:
        params = self._params
        fed = params.federation
        header = block.header
        height = self.tip_height + 1

        if header.height != height:
            raise BadHeight(f"block height {header.height}, expected {height}")
        if header.prev_hash != self.tip_hash:
            raise BadPrevHash("block does not build on the tip")
        if header.proof.challenge != fed.challenge:
            raise BadChallenge("challenge is not the federation's signblockscript")
        mtp = self.median_time_past()
        if header.time <= mtp:
            raise TimeTooOld(f"time {header.time} is not after the median time past {mtp}")
        if header.time > now + params.max_future_block_time:
            raise TimeTooNew(f"time {header.time} is more than {params.max_future_block_time}s ahead of {now}")
        if check_proof:
            solution_signers(fed, header)
        elif len(header.proof.solution) > MAX_SOLUTION_SIZE:
            raise ProofTooLarge(f"solution is {len(header.proof.solution)} bytes")

        # Size: an unsigned candidate must still fit once its solution is in.
        reserve = 0
        if not check_proof:
            have = len(ser_compact_size(len(header.proof.solution))) + len(header.proof.solution)
            full = len(ser_compact_size(fed.max_solution_size)) + fed.max_solution_size
            reserve = max(0, full - have)
        weight = block.weight + reserve * 4
        if weight > params.max_block_weight:
            raise BlockWeightExceeded(f"block weight {weight} exceeds {params.max_block_weight}")
        if block.size + reserve > params.max_block_serialized_size:
            raise BlockTooLarge(f"block size {block.size} exceeds {params.max_block_serialized_size}")

        txs = block.transactions
        # Everything below depends only on the transactions, the tip's state
        # and rules that do not change with the clock: a block already found
        # valid on this tip need not be checked again (see _CheckedBlock).
        memo = self._checked.get(block.hash)
        if memo is not None and memo.tip_hash == self.tip_hash and memo.transactions is txs:
            return memo.view, memo.fees
        if not txs:
            raise BadCoinbase("block has no coinbase")
        if block.compute_merkle_root() != header.merkle_root:
            raise BadMerkleRoot("merkle root does not match the transactions")
        if len(set(block.txids)) != len(txs):
            raise DuplicateTransaction("a transaction appears twice in the block")
        coinbase = txs[0]
        self._check_coinbase_shape(coinbase, height)
        for tx in txs[1:]:
            if any(i.prevout.is_null for i in tx.inputs):
                raise BadCoinbase("only the first transaction may be a coinbase")
        if not block.witness_commitment_ok():
            raise BadWitnessCommitment("witness commitment missing or wrong")

        view = self._view()
        fees = 0
        cutoff = mtp  # BIP113: time locks compare against the previous block's MTP
        proof_checks: list[ProofCheck] = []
        for tx in txs[1:]:
            txid = tx.txid
            if view.has_tx(txid):
                raise DuplicateTransaction(f"{tx.txid_hex} is already in the chain")
            known = self._known_valid_fee(tx, view, height, cutoff)
            fees += known if known is not None else self._check_tx(tx, view, height, cutoff, proof_checks)
            _apply(view, tx, height, False)
        if fees > MAX_MONEY:
            raise ValueOutOfRange("block fees exceed MAX_MONEY")
        claimed = self._check_coinbase_outputs(coinbase)
        if claimed > fees:
            raise BadCoinbase(f"coinbase pays {claimed}, more than the block's fees {fees}")
        if view.has_tx(coinbase.txid):
            raise DuplicateTransaction("coinbase txid is already in the chain")
        _apply(view, coinbase, height, True)
        # Proofs last, all at once: they are the most expensive part and
        # parallelize across the whole block.
        if proof_checks and self._batch is not None:
            self._batch.verify_proofs(proof_checks)
        if not any(txin.is_pegin for tx in txs for txin in tx.inputs):
            if len(self._checked) >= _MAX_CHECKED_BLOCKS:
                self._checked.clear()
            self._checked[block.hash] = _CheckedBlock(self.tip_hash, txs, view, fees)
        return view, fees

    def _check_coinbase_shape(self, coinbase: Transaction, height: int) -> None:
        if not coinbase.is_coinbase:
            raise BadCoinbase("first transaction is not a coinbase")
        script_sig = coinbase.inputs[0].script_sig
        if not MIN_COINBASE_SCRIPT_SIZE <= len(script_sig) <= MAX_COINBASE_SCRIPT_SIZE:
            raise BadCoinbase(f"coinbase scriptSig is {len(script_sig)} bytes")
        expect = push_int(height)
        if script_sig[: len(expect)] != expect:
            raise BadCoinbase("coinbase scriptSig does not begin with the block height (BIP34)")
        wit = coinbase.input_witnesses[0]
        if wit.issuance_amount_rangeproof or wit.inflation_keys_rangeproof or wit.pegin_witness:
            # Not covered by the witness commitment: refuse it rather than let
            # relays change a block's bytes without changing its hash.
            raise BadCoinbase("coinbase input witness may hold only the reserved value")
        if not coinbase.outputs:
            raise BadCoinbase("coinbase has no outputs")

    def _check_coinbase_outputs(self, coinbase: Transaction) -> int:
        policy = self._params.policy_asset
        total = 0
        for i, out in enumerate(coinbase.outputs):
            try:
                kind = classify_output(out)
            except BadFeeOutput:
                raise BadCoinbase(f"coinbase output {i} has an empty script") from None
            if kind not in (OutputKind.P2WPKH, OutputKind.P2WSH, OutputKind.BURN):
                raise BadCoinbase(f"coinbase output {i} is a {kind.value} output")
            if not out.is_explicit:
                raise UnsupportedFeature(f"coinbase output {i} is not explicit")
            if out.asset.raw[1:] != policy:
                raise WrongAsset(f"coinbase output {i} is not the policy asset")
            amount = out.value.amount
            if amount > MAX_MONEY:
                raise ValueOutOfRange(f"coinbase output {i} value {amount}")
            if amount == 0 and kind.spendable:
                raise ValueOutOfRange(f"coinbase output {i} is spendable and worth nothing")
            if not coinbase.output_witnesses[i].is_null:
                raise ConfidentialError(f"coinbase output {i} carries a proof")
            total += amount
        if total > MAX_MONEY:
            raise ValueOutOfRange("coinbase outputs total more than MAX_MONEY")
        return total

    # -- building -------------------------------------------------------------

    def assemble_block(
        self,
        transactions: Sequence[Transaction],
        time: int,
        *,
        fee_script: bytes | None = None,
    ) -> Block:
        """An unsigned candidate on the tip: a coinbase (BIP34 height, the
        fees to ``fee_script`` or burnt to OP_RETURN, the witness
        commitment), then ``transactions`` in the order given, the merkle
        root, the federation's challenge and an empty solution.

        It does not validate the transactions; pass the result to
        :meth:`check_block` with ``check_proof=False``."""
        height = self.tip_height + 1
        if fee_script is None:
            fee_script = bytes((OP_RETURN,))
        else:
            try:
                spendable = classify_output(TxOut.explicit(self._params.policy_asset, 0, fee_script)).spendable
            except ValidationError:
                spendable = False
            if not spendable:
                raise ValueError("fee_script must be P2WPKH or P2WSH")
        fees = sum(o.value.amount for tx in transactions for o in tx.outputs if o.is_fee)
        if fees == 0:
            fee_script = bytes((OP_RETURN,))  # a spendable output may not be worth zero
        fee_out = TxOut.explicit(self._params.policy_asset, fees, fee_script)
        reserved = b"\x00" * 32

        def coinbase_with(commitment_script: bytes) -> Transaction:
            return Transaction(
                2,
                (TxIn(NULL_OUTPOINT, _coinbase_script_sig(height), SEQUENCE_FINAL),),
                (fee_out, TxOut.explicit(self._params.policy_asset, 0, commitment_script)),
                0,
                (TxInWitness(script_witness=(reserved,)),),
            )

        # A witness hash depends on witnesses only, never on output scripts,
        # so a placeholder commitment gives the coinbase's final witness hash.
        draft = coinbase_with(witness_commitment_script(ZERO_HASH, reserved))
        witness_root = Block(self.tip_header, (draft, *transactions)).compute_witness_root()
        coinbase = coinbase_with(witness_commitment_script(witness_root, reserved))
        txs = (coinbase, *transactions)
        header = BlockHeader(
            self._params.block_version,
            self.tip_hash,
            merkle_root([tx.txid for tx in txs]),
            time,
            height,
            BlockProof(self._params.federation.challenge, b""),
        )
        return Block(header, txs)


def _is_final(tx: Transaction, height: int, time_cutoff: int) -> bool:
    """Elements' IsFinalTx."""
    cutoff = height if tx.locktime < LOCKTIME_THRESHOLD else time_cutoff
    if tx.locktime < cutoff:
        return True
    return all(i.sequence == SEQUENCE_FINAL for i in tx.inputs)


def _apply(view: UtxoView, tx: Transaction, height: int, is_coinbase: bool) -> None:
    """Spend ``tx``'s inputs and add its spendable outputs in ``view``."""
    if not is_coinbase:
        for txin in tx.inputs:
            if not txin.is_pegin:
                view.spend(txin.prevout)
    txid = tx.txid
    mask = _spendable_mask(tx)
    view.record_tx(txid, mask)
    for i, out in enumerate(tx.outputs):
        if (mask >> i) & 1:
            view.add(OutPoint(txid, i), UtxoEntry(out, height, is_coinbase))

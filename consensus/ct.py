"""Confidential transactions in consensus: the chain's ConfidentialVerifier.

Elements' ``VerifyAmounts`` (src/confidential_validation.cpp) over this
chain's types, with every curve operation done by libsecp256k1-zkp through
the ``confidential`` package. What an output must carry depends on which of
its asset and value fields are explicit:

    asset      value      range proof               surjection proof        tally term
    explicit   explicit   none (chain state rules)  none                    amount * H_asset
    explicit   committed  required, under H_asset   must be empty           the commitment
    committed  committed  required, under its gen   required, over inputs   the commitment
    committed  explicit   must be empty             required, over inputs   amount * gen (zero blind)
    null       any        refused                   -                       -

and, as in Elements:

* an explicit asset must be the chain's policy asset (this chain has no
  issuance, so no other asset exists; :class:`~consensus.errors.WrongAsset`);
* every range proof is verified against its output's value commitment, asset
  generator and scriptPubKey, so a proof moved to another output fails;
* a spendable output must not be worth zero: a range proof whose proven
  minimum is 0, or an explicit zero, is refused unless the scriptPubKey is
  unspendable (OP_RETURN);
* a surjection proof is verified over the generators of all the
  transaction's inputs in input order: each spent output's asset field
  (explicit ones as H_asset) and each peg-in's claimed explicit policy asset;
* per transaction, inputs plus peg-ins equal outputs plus the explicit fee
  (``secp256k1_pedersen_verify_tally``); explicit amounts are committed with
  a zero blinding factor, an explicit zero output adds nothing, an explicit
  zero input is refused (its commitment would be the point at infinity).

An explicit value under a committed asset follows Elements too: the package
commits to it with :func:`confidential.value_commitment` and a zero blinding
factor, exactly Elements' ``secp256k1_pedersen_commit(…, explicit_blinds, …)``.

Errors. The package's errors become consensus errors (subclasses of
:class:`consensus.errors.ConfidentialError`), their message kept after the
location ("tx <txid> output <n>: <original>") and the original chained as
``__cause__``:

    where                   confidential error                 consensus error
    a commitment/generator  EncodingError (not a point, ...)   BadCommitment
    range proof             ValueOutOfRange (allows zero)       ConfidentialValueOutOfRange
                            any other                           BadRangeProof
    surjection proof        any                                 BadSurjectionProof
    tally                   Unbalanced                          ConfidentialUnbalanced
                            ValueOutOfRange                     ConfidentialValueOutOfRange
                            EncodingError                       BadCommitment

Other package errors (NotOurOutput, BlindingFailed) cannot come from
verification; if one did, it would be a bug, and it propagates as is so it
is never mistaken for an invalid transaction.

Two stages, so that a block's proofs can be verified together:
:meth:`ConfidentialTxVerifier.defer_output` applies the cheap rules at once
(field forms, policy asset, zero values, which proofs must be present) and
returns a :class:`ProofCheck`; :meth:`ConfidentialTxVerifier.verify_proofs`
verifies a batch of them. The chain state defers every output of a block,
checks each transaction's tally as it goes, and verifies the whole batch at
the end of the block. So, as in Elements' VerifyAmounts run without a check
queue, the tally comes before the proofs: a value commitment changed to
another valid point is reported as ConfidentialUnbalanced, though its range
proof fails too.

The batch runs here rather than through :func:`confidential.verify_outputs_parallel`
(which has the same lowest-index contract) for two reasons: the consensus
error depends on which proof failed, and Elements' mixed outputs need a
range proof alone or a surjection proof alone, which an ``OutputJob`` cannot
express.

Purity. No I/O, no clock. A batch is verified on a thread pool: that is
computation only (ctypes releases the GIL around each libsecp256k1-zkp call,
so threads use all cores), and the outcome does not depend on scheduling:
every check runs, and the error raised is that of the lowest-index failing
check, which is also the first one a serial pass would meet. The optional
:class:`confidential.VerificationCache` changes how long verification
takes, never its result: it is keyed on the whole context (proof, value
commitment, generator, scriptPubKey; proof, generator, input generators),
stores successes only, and the zero-minimum rule is re-applied on each hit.
Its random salt only spreads keys; it does not touch any result. Checks the
cache already holds are run in the calling thread and only the others go to
the pool, so a block whose transactions a mempool verified hands nothing to
a thread.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache

import confidential
from confidential.verify import default_workers

from .errors import (
    BadCommitment,
    BadRangeProof,
    BadSurjectionProof,
    ConfidentialError,
    ConfidentialUnbalanced,
    ConfidentialValueOutOfRange,
    WrongAsset,
)
from .transaction import ConfidentialAsset, ConfidentialValue, TxOut, TxOutWitness

MAX_MONEY = confidential.MAX_MONEY
ZERO32 = b"\x00" * 32
DEFAULT_CACHE_ENTRIES = 50_000
"""Per kind (range, surjection). A block of 4 MWU holds fewer than 1,000
range proofs, so this covers a deep mempool and the blocks that confirm it."""

_PACKAGE_FAULTS = (confidential.EncodingError, confidential.VerificationError)
"""The package errors that mean "these bytes are invalid". Anything else
escaping a verification call is a bug and is not translated."""


@dataclass(frozen=True, slots=True)
class ProofCheck:
    """One output's deferred proof work, with everything it is checked against.

    ``value_commitment`` is None for an explicit value (no range proof);
    ``surjection_proof`` is None for an explicit asset (no surjection proof).
    ``generator`` is the output's asset generator, H_asset for an explicit asset.
    """

    label: str
    script_pubkey: bytes
    generator: bytes
    value_commitment: bytes | None
    range_proof: bytes
    surjection_proof: bytes | None
    input_generators: tuple[bytes, ...]


# --- Field conversion ----------------------------------------------------------


@lru_cache(maxsize=64)
def _explicit_generator(asset_id: bytes) -> bytes:
    # One library call per asset id instead of one per input per output.
    return confidential.explicit_generator(asset_id)


def _chain(error: ConfidentialError, cause: BaseException) -> ConfidentialError:
    error.__cause__ = cause
    return error


def _generator(asset: ConfidentialAsset, what: str) -> bytes:
    """The generator an asset field stands for (BadCommitment if none)."""
    if asset.is_explicit:
        return _explicit_generator(asset.asset_id)
    if asset.is_commitment:
        try:
            return confidential.parse_asset_generator(asset.raw)
        except confidential.EncodingError as exc:
            raise BadCommitment(f"{what}: {exc}") from exc
    raise BadCommitment(f"{what}: null asset")


@lru_cache(maxsize=16)
def _input_generators(assets: tuple[ConfidentialAsset, ...]) -> tuple[bytes, ...]:
    # Every output of a transaction is checked against the same inputs: parse
    # them once per transaction, not once per output (n inputs x m outputs).
    return tuple(_generator(a, f"input {k} asset") for k, a in enumerate(assets))


def _commitment(value: ConfidentialValue, what: str) -> bytes:
    try:
        return confidential.parse_value_commitment(value.raw)
    except confidential.EncodingError as exc:
        raise BadCommitment(f"{what}: {exc}") from exc


def _tally_value(out: TxOut, what: str, is_input: bool) -> confidential.Value | None:
    """An input's or output's term in the tally; None for an explicit zero output
    under a committed asset (nothing to add). Explicit-asset zeros go to the
    package, which skips an output's and refuses an input's."""
    asset, value = out.asset, out.value
    if asset.is_explicit and value.is_explicit:
        return confidential.Explicit(value.amount, asset.asset_id)
    generator = _generator(asset, what)
    if value.is_commitment:
        return confidential.Committed(_commitment(value, what), generator)
    if not value.is_explicit:
        raise BadCommitment(f"{what}: null value")
    amount = value.amount
    if not 0 <= amount <= MAX_MONEY:
        raise ConfidentialValueOutOfRange(f"{what}: explicit amount {amount} outside 0..MAX_MONEY")
    if amount == 0:
        if is_input:
            raise ConfidentialValueOutOfRange(f"{what}: explicit amount of zero")
        return None
    # Elements: pedersen_commit(amount, blind = 0) under the committed generator.
    return confidential.Committed(confidential.value_commitment(amount, ZERO32, generator), generator)


# --- Running checks --------------------------------------------------------------


def run_check(check: ProofCheck, cache: confidential.VerificationCache | None = None) -> ConfidentialError | None:
    """Verify one output's proofs; the consensus error it fails with, or None.

    Returns rather than raises so that a batch can pick its lowest-index
    failure after every check has run."""
    if check.value_commitment is not None:
        try:
            confidential.verify_range_proof(
                check.range_proof, check.value_commitment, check.generator, check.script_pubkey, cache=cache
            )
        except confidential.ValueOutOfRange as exc:
            return _chain(ConfidentialValueOutOfRange(f"{check.label}: {exc}"), exc)
        except _PACKAGE_FAULTS as exc:
            return _chain(BadRangeProof(f"{check.label}: {exc}"), exc)
    if check.surjection_proof is not None:
        try:
            confidential.verify_surjection_proof(
                check.surjection_proof, check.generator, check.input_generators, cache=cache
            )
        except _PACKAGE_FAULTS as exc:
            return _chain(BadSurjectionProof(f"{check.label}: {exc}"), exc)
    return None


_pools: dict[int, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def _pool(workers: int) -> ThreadPoolExecutor:
    # Shared by every verifier in the process: a chain state is cheap to
    # create (tests make hundreds) and must not leave threads behind.
    with _pools_lock:
        pool = _pools.get(workers)
        if pool is None:
            pool = _pools[workers] = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ct-consensus")
        return pool


def verify_checks(
    checks: Sequence[ProofCheck],
    *,
    max_workers: int = 1,
    cache: confidential.VerificationCache | None = None,
) -> None:
    """Verify every check; raise the error of the lowest-index failing one.

    With one worker the checks run in order in the calling thread and stop
    at the first failure, which is the same check the parallel run reports.
    """
    if max_workers < 1:
        raise ValueError("max_workers must be at least 1")
    items = list(checks)
    if max_workers == 1 or len(items) <= 1:
        for check in items:
            err = run_check(check, cache)
            if err is not None:
                raise err
        return
    # Checks the cache can answer cost microseconds: run them here and send
    # only the others to the pool (a block whose transactions were all seen
    # in the mempool sends nothing). Every check still runs, and the error
    # raised is still that of the lowest-index failing one.
    errors: list[ConfidentialError | None] = [None] * len(items)
    pending = list(range(len(items)))
    if cache is not None:
        pending = []
        for i, check in enumerate(items):
            if _cached(check, cache):
                errors[i] = run_check(check, cache)
            else:
                pending.append(i)
    if len(pending) == 1:
        errors[pending[0]] = run_check(items[pending[0]], cache)
    elif pending:
        # map() yields in submission order whatever order the threads finish in.
        for i, err in zip(pending, _pool(max_workers).map(lambda i: run_check(items[i], cache), pending)):
            errors[i] = err
    for err in errors:
        if err is not None:
            raise err


def _cached(check: ProofCheck, cache: confidential.VerificationCache) -> bool:
    """Whether ``check``'s proofs are all in ``cache`` (counts neither a hit nor a miss)."""
    if check.value_commitment is not None and not cache.peek_range(
        cache.range_key(check.range_proof, check.value_commitment, check.generator, check.script_pubkey)
    ):
        return False
    return check.surjection_proof is None or cache.peek_surjection(
        cache.surjection_key(check.surjection_proof, check.generator, check.input_generators)
    )


# --- The verifier -----------------------------------------------------------------


class ConfidentialTxVerifier:
    """The chain's ConfidentialVerifier: Elements' confidential rules.

    ``policy_asset`` is the only asset an explicit asset field may name.
    ``max_workers`` (default: the cores available) bounds how many proofs
    are verified at once. ``cache``: a :class:`confidential.VerificationCache`
    to share (a fresh one of :data:`DEFAULT_CACHE_ENTRIES` by default), or
    ``False`` to verify every proof every time.
    """

    def __init__(
        self,
        policy_asset: bytes,
        *,
        max_workers: int | None = None,
        cache: confidential.VerificationCache | bool = True,
    ) -> None:
        if len(policy_asset) != 32:
            raise ValueError("policy asset is 32 bytes")
        workers = default_workers() if max_workers is None else max_workers
        if workers < 1:
            raise ValueError("max_workers must be at least 1")
        self._policy = bytes(policy_asset)
        self._workers = workers
        if cache is True:
            self._cache: confidential.VerificationCache | None = confidential.VerificationCache(DEFAULT_CACHE_ENTRIES)
        elif cache is False:
            self._cache = None
        else:
            self._cache = cache

    @property
    def max_workers(self) -> int:
        return self._workers

    @property
    def cache(self) -> confidential.VerificationCache | None:
        return self._cache

    # -- the ConfidentialVerifier protocol -----------------------------------------

    def verify_output(self, output: TxOut, witness: TxOutWitness, input_assets: Sequence[ConfidentialAsset]) -> None:
        """All of one output's rules and proofs now."""
        self.verify_proofs([self.defer_output(output, witness, input_assets)])

    def verify_balance(self, inputs: Sequence[TxOut], outputs: Sequence[TxOut]) -> None:
        """Inputs (peg-ins included) against outputs (the explicit fee included)."""
        ins = [v for i, o in enumerate(inputs) if (v := _tally_value(o, f"input {i}", True)) is not None]
        outs = [v for i, o in enumerate(outputs) if (v := _tally_value(o, f"output {i}", False)) is not None]
        try:
            confidential.verify_balance(ins, outs)
        except confidential.Unbalanced as exc:
            raise ConfidentialUnbalanced(f"inputs and outputs do not balance: {exc}") from exc
        except confidential.ValueOutOfRange as exc:
            raise ConfidentialValueOutOfRange(str(exc)) from exc
        except confidential.EncodingError as exc:
            raise BadCommitment(str(exc)) from exc

    # -- batches --------------------------------------------------------------------

    def defer_output(
        self,
        output: TxOut,
        witness: TxOutWitness,
        input_assets: Sequence[ConfidentialAsset],
        *,
        label: str = "output",
    ) -> ProofCheck:
        """Apply an output's cheap rules now and return its proof work.

        Raises WrongAsset, BadCommitment, BadRangeProof or BadSurjectionProof
        (a proof missing or present where it must not be), or
        ConfidentialValueOutOfRange (an explicit amount out of range, or a
        spendable explicit zero)."""
        asset, value, script = output.asset, output.value, output.script_pubkey
        if asset.is_explicit and asset.asset_id != self._policy:
            raise WrongAsset(f"{label}: explicit asset is not the policy asset")
        generator = _generator(asset, label)
        if asset.is_commitment:
            if not witness.surjection_proof:
                raise BadSurjectionProof(f"{label}: a committed asset needs a surjection proof")
            surjection: bytes | None = witness.surjection_proof
        else:
            if witness.surjection_proof:
                raise BadSurjectionProof(f"{label}: an explicit asset carries a surjection proof")
            surjection = None
        if value.is_commitment:
            commitment: bytes | None = _commitment(value, label)
            if not witness.range_proof:
                raise BadRangeProof(f"{label}: a committed value needs a range proof")
        elif value.is_explicit:
            amount = value.amount
            if amount > MAX_MONEY:
                raise ConfidentialValueOutOfRange(f"{label}: explicit amount {amount} above MAX_MONEY")
            if amount == 0 and not confidential.is_unspendable(script):
                raise ConfidentialValueOutOfRange(f"{label}: spendable and worth nothing")
            if witness.range_proof:
                raise BadRangeProof(f"{label}: an explicit value carries a range proof")
            commitment = None
        else:
            raise BadCommitment(f"{label}: null value")
        inputs: tuple[bytes, ...] = ()
        if surjection is not None:
            try:
                inputs = _input_generators(tuple(input_assets))
            except BadCommitment as exc:
                raise BadCommitment(f"{label}: {exc}") from exc
        return ProofCheck(label, script, generator, commitment, witness.range_proof, surjection, inputs)

    def verify_proofs(self, checks: Sequence[ProofCheck]) -> None:
        """Verify a batch across ``max_workers`` threads; raise the lowest-index failure."""
        verify_checks(checks, max_workers=self._workers, cache=self._cache)

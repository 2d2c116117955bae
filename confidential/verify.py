"""Validator side: verify outputs' proofs and a transaction's balance, one by one or across cores.

What a validator checks for each confidential output (Elements ``VerifyAmounts``,
src/confidential_validation.cpp), and where:

    check                                                       function
    range proof against (commitment, generator, scriptPubKey)   verify_output
    proven minimum > 0 unless the scriptPubKey is unspendable   verify_output
    surjection proof over all inputs' generators                verify_output
    sum(inputs) + peg-ins == sum(outputs) + fee, per asset      verify_balance

Balance follows ``VerifyAmounts``: an explicit amount becomes a commitment with
a zero blinding factor under its asset's unblinded generator, and the
commitments are tallied (``secp256k1_pedersen_verify_tally``). An explicit
zero amount has no commitment (it is the point at infinity): as an input
Elements rejects it; as an output it contributes nothing and is skipped here.
Elements also refuses a zero explicit output whose scriptPubKey is spendable;
that rule needs the script and is the caller's.

:func:`verify_outputs_parallel` spreads many output checks over a thread pool;
the library calls release the GIL, so threads use all cores. The result does
not depend on scheduling: per-job results in job order, or the error of the
lowest-index failing job.
"""

from __future__ import annotations

import ctypes
import functools
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from . import _lib
from .cache import VerificationCache
from .errors import BadLength, ConfidentialError, Unbalanced, ValueOutOfRange
from .points import (
    ZERO32,
    as_list,
    as_var_bytes,
    check_asset_id,
    commitment_struct,
    generator_array,
    generator_struct,
)
from .rangeproof import RangeInfo, checked_range
from .surjection import checked_surjection

MAX_MONEY = 21_000_000 * 100_000_000
"""Elements' MAX_MONEY: the bound on every explicit amount (``MoneyRange``)."""


@dataclass(frozen=True, slots=True)
class Explicit:
    """An amount in the clear: a peg-in, the fee, or any unblinded input or output."""

    amount: int
    asset_id: bytes

    def __post_init__(self) -> None:
        check_asset_id(self.asset_id)
        if not isinstance(self.amount, int) or isinstance(self.amount, bool):
            raise ValueOutOfRange(f"explicit amount {self.amount!r} is not an integer")


@dataclass(frozen=True, slots=True)
class Committed:
    """A blinded amount: a 33-byte value commitment and its 33-byte asset generator."""

    commitment: bytes
    generator: bytes


Value = Explicit | Committed


@dataclass(frozen=True, slots=True)
class OutputJob:
    """Everything one confidential output's proofs are checked against."""

    value_commitment: bytes
    asset_generator: bytes
    script_pubkey: bytes
    range_proof: bytes
    surjection_proof: bytes
    input_generators: tuple[bytes, ...]


def verify_output(
    value_commitment: bytes,
    asset_generator: bytes,
    script_pubkey: bytes,
    range_proof: bytes,
    surjection_proof: bytes,
    input_generators: Sequence[bytes],
    *,
    max_value: int | None = None,
    cache: VerificationCache | None = None,
) -> RangeInfo:
    """Verify one confidential output's range proof and surjection proof.

    ``input_generators`` are the asset generators of all the transaction's
    inputs in order (explicit ones as :func:`explicit_generator`). Returns what
    the range proof proves. Raises an :class:`~confidential.errors.EncodingError`
    for malformed bytes, RangeProofInvalid, SurjectionProofInvalid or
    ValueOutOfRange (see :func:`verify_range_proof` for ``max_value``).
    """
    commit = commitment_struct(value_commitment)
    gen = generator_struct(asset_generator)
    inputs, input_list = generator_array(input_generators)
    proof = as_var_bytes(range_proof, "range proof")
    sproof = as_var_bytes(surjection_proof, "surjection proof")
    script = as_var_bytes(script_pubkey, "scriptPubKey")
    commitment = bytes(value_commitment)
    generator = bytes(asset_generator)
    info = checked_range(proof, commitment, commit, generator, gen, script, max_value, cache)
    checked_surjection(sproof, generator, gen, input_list, inputs, len(input_list), cache)
    return info


def verify_job(job: OutputJob, *, max_value: int | None = None, cache: VerificationCache | None = None) -> RangeInfo:
    return verify_output(
        job.value_commitment,
        job.asset_generator,
        job.script_pubkey,
        job.range_proof,
        job.surjection_proof,
        job.input_generators,
        max_value=max_value,
        cache=cache,
    )


# --- Balance ------------------------------------------------------------------


def _explicit_struct(v: Explicit, side: str) -> ctypes.Array[ctypes.c_char] | None:
    if not 0 <= v.amount <= MAX_MONEY:
        raise ValueOutOfRange(f"explicit {side} amount {v.amount} outside 0..MAX_MONEY")
    if v.amount == 0:
        if side == "input":
            # Elements: pedersen_commit of 0 with a zero blind fails, so the tx is invalid.
            raise ValueOutOfRange("explicit input amount of zero")
        return None
    # A fresh struct per call: the tally only reads it, but callers own what they get.
    return ctypes.create_string_buffer(_explicit_commitment(bytes(v.asset_id), v.amount), _lib.COMMITMENT_SIZE)


@functools.lru_cache(maxsize=64)
def _explicit_generator_struct(asset_id: bytes) -> bytes:
    gen = ctypes.create_string_buffer(_lib.GENERATOR_SIZE)
    if _lib.generator_generate(_lib.CTX, gen, asset_id) != 1:  # pragma: no cover - 2^-128 odds
        raise ValueOutOfRange("asset id yields no generator")
    return gen.raw


@functools.lru_cache(maxsize=4096)
def _explicit_commitment(asset_id: bytes, amount: int) -> bytes:
    """The struct of amount * H_asset (zero blinding factor): a pure function
    of its arguments, remembered because the same fee amounts recur in every
    transaction a validator checks (the library call costs ~50 us)."""
    gen = ctypes.create_string_buffer(_explicit_generator_struct(asset_id), _lib.GENERATOR_SIZE)
    commit = ctypes.create_string_buffer(_lib.COMMITMENT_SIZE)
    if _lib.pedersen_commit(_lib.CTX, commit, ZERO32, amount, gen) != 1:  # pragma: no cover
        raise ValueOutOfRange(f"cannot commit to explicit amount {amount}")
    return commit.raw


def _value_struct(v: object, side: str, index: int) -> ctypes.Array[ctypes.c_char] | None:
    if isinstance(v, Explicit):
        return _explicit_struct(v, side)
    if isinstance(v, Committed):
        generator_struct(v.generator)
        return commitment_struct(v.commitment)
    raise BadLength(f"{side} {index}: expected Explicit or Committed, got {type(v).__name__}")


def _pointer_array(structs: Sequence[ctypes.Array[ctypes.c_char]]) -> ctypes.Array[ctypes.c_void_p]:
    # The library wants a non-NULL array even when a side is empty.
    arr = (ctypes.c_void_p * max(1, len(structs)))()
    for i, s in enumerate(structs):
        arr[i] = ctypes.addressof(s)
    return arr


def verify_balance(inputs: Sequence[Value], outputs: Sequence[Value]) -> None:
    """Check that inputs (with peg-ins) equal outputs (with the fee), asset by asset.

    Raises Unbalanced, ValueOutOfRange for an explicit amount outside
    1..MAX_MONEY (inputs) or 0..MAX_MONEY (outputs), or an EncodingError.
    This says nothing about negative amounts hidden in commitments: that is
    what each output's range proof is for.
    """
    ins, outs = as_list(inputs, "inputs"), as_list(outputs, "outputs")
    pos = [s for i, v in enumerate(ins) if (s := _value_struct(v, "input", i)) is not None]
    neg = [s for i, v in enumerate(outs) if (s := _value_struct(v, "output", i)) is not None]
    ok = _lib.pedersen_verify_tally(_lib.CTX, _pointer_array(pos), len(pos), _pointer_array(neg), len(neg))
    if ok != 1:
        raise Unbalanced("inputs and outputs do not balance")


# --- Parallel -----------------------------------------------------------------

_pools: dict[int, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def _pool(workers: int) -> ThreadPoolExecutor:
    with _pools_lock:
        pool = _pools.get(workers)
        if pool is None:
            pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ct-verify")
            _pools[workers] = pool
        return pool


def default_workers() -> int:
    """The cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _run(job: object, max_value: int | None, cache: VerificationCache | None) -> RangeInfo | ConfidentialError:
    if not isinstance(job, OutputJob):
        return BadLength(f"expected an OutputJob, got {type(job).__name__}")
    try:
        return verify_job(job, max_value=max_value, cache=cache)
    except ConfidentialError as exc:
        return exc


def verify_outputs_parallel(
    jobs: Sequence[OutputJob],
    max_workers: int | None = None,
    *,
    max_value: int | None = None,
    cache: VerificationCache | None = None,
) -> list[RangeInfo]:
    """Verify many outputs across cores; per-job results in job order.

    Every job runs; if any fail, the error of the lowest-index failing job is
    raised, whatever order the threads finished in. ``max_workers`` defaults to
    the cores available; 1 runs in the calling thread.
    """
    results = verify_outputs_collect(jobs, max_workers, max_value=max_value, cache=cache)
    for r in results:
        if isinstance(r, ConfidentialError):
            raise r
    return [r for r in results if isinstance(r, RangeInfo)]


def verify_outputs_collect(
    jobs: Sequence[OutputJob],
    max_workers: int | None = None,
    *,
    max_value: int | None = None,
    cache: VerificationCache | None = None,
) -> list[RangeInfo | ConfidentialError]:
    """Like :func:`verify_outputs_parallel`, but each job's error is returned in its place."""
    workers = default_workers() if max_workers is None else max_workers
    if workers < 1:
        raise ValueError("max_workers must be at least 1")
    items = as_list(jobs, "jobs")
    if workers == 1 or len(items) <= 1:
        return [_run(j, max_value, cache) for j in items]
    pool = _pool(workers)
    return list(pool.map(lambda j: _run(j, max_value, cache), items))

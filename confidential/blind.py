"""Sender side: blind a transaction's outputs given the openings of the inputs it spends.

This follows Elements' ``BlindTransaction`` (src/blind.cpp) for ordinary
outputs (no issuances):

    step                                   how
    asset blinding factor (abf)            random, per blinded output
    value blinding factor (vbf)            random, except the last blinded output's,
                                           which balances the sum (wallycore asset_final_vbf,
                                           libsecp256k1-zkp pedersen_blind_generator_blind_sum)
    asset generator, value commitment      commit.py
    nonce commitment                       a fresh ephemeral public key per output
    range proof                            rangeproof.py: 52 bits, exp 0, min_value 1
                                           (0 for unspendable scripts), bound to scriptPubKey
    surjection proof                       surjection.py: over all inputs, 3 of them in the ring

Outputs with no blinding key (the fee, or any output to be left in the clear)
stay explicit. As in Elements, blinding is refused when it could not hide
anything: one blinded output and only explicit inputs would make the final vbf
cancel the asset blinding and leave a commitment to value*H in the clear.

All randomness comes from ``rng(n) -> bytes`` (``os.urandom`` by default), so
tests can replay a transaction exactly.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from . import _lib
from .commit import asset_generator, ecdh_nonce, explicit_generator, public_key, value_commitment
from .errors import BadScalar, BlindingFailed, ConfidentialError, Unbalanced, ValueOutOfRange
from .points import (
    ZERO32,
    as_var_bytes,
    check_asset_id,
    check_scalar,
    parse_asset_generator,
    parse_pubkey,
)
from .rangeproof import DEFAULT_EXP, DEFAULT_MIN_BITS, default_min_value, make_range_proof
from .surjection import MAX_SURJECTION_INPUTS, make_surjection_proof
from .txout import TxOut, encode_asset, encode_value
from .verify import MAX_MONEY, Committed, Explicit, OutputJob

wally = _lib.wally

Rng = Callable[[int], bytes]


def _check_amount(value: object, what: str, low: int = 0) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= MAX_MONEY:
        raise ValueOutOfRange(f"{what} {value!r} outside {low}..MAX_MONEY")
    return value


@dataclass(frozen=True, slots=True)
class InputOpening:
    """What the spender knows about an output it spends: asset, abf, value, vbf, generator.

    An explicit input has zero blinding factors and the unblinded generator;
    :meth:`explicit` and :meth:`blinded` build either. The constructor checks
    that the generator is the one (asset_id, abf) makes.
    """

    asset_id: bytes
    abf: bytes
    value: int
    vbf: bytes
    generator: bytes

    def __post_init__(self) -> None:
        check_asset_id(self.asset_id)
        check_scalar(self.abf, "input asset blinding factor", allow_zero=True)
        check_scalar(self.vbf, "input value blinding factor", allow_zero=True)
        _check_amount(self.value, "input value")
        if asset_generator(self.asset_id, self.abf) != parse_asset_generator(self.generator):
            raise BlindingFailed("input opening: generator is not the one its asset id and abf make")

    @classmethod
    def explicit(cls, asset_id: bytes, value: int) -> InputOpening:
        return cls(bytes(asset_id), ZERO32, value, ZERO32, explicit_generator(asset_id))

    @classmethod
    def blinded(cls, asset_id: bytes, value: int, abf: bytes, vbf: bytes) -> InputOpening:
        return cls(bytes(asset_id), bytes(abf), value, bytes(vbf), asset_generator(asset_id, abf))

    @property
    def is_blinded(self) -> bool:
        return self.abf != ZERO32 or self.vbf != ZERO32


@dataclass(frozen=True, slots=True)
class OutputSpec:
    """An output to create. ``blinding_pubkey`` None leaves it explicit (the fee, say)."""

    value: int
    asset_id: bytes
    script_pubkey: bytes
    blinding_pubkey: bytes | None = None

    def __post_init__(self) -> None:
        check_asset_id(self.asset_id)
        as_var_bytes(self.script_pubkey, "scriptPubKey")
        if self.blinding_pubkey is not None:
            parse_pubkey(self.blinding_pubkey, "blinding public key")
        _check_amount(self.value, "output value")


@dataclass(frozen=True, slots=True)
class BlindedOutput:
    """A confidential output: the wire fields plus the opening the sender keeps."""

    script_pubkey: bytes
    asset_generator: bytes
    value_commitment: bytes
    nonce_commitment: bytes
    range_proof: bytes
    surjection_proof: bytes
    asset_id: bytes
    value: int
    abf: bytes
    vbf: bytes

    def opening(self) -> InputOpening:
        """The opening to use when this output is spent."""
        return InputOpening(self.asset_id, self.abf, self.value, self.vbf, self.asset_generator)

    def as_value(self) -> Committed:
        return Committed(self.value_commitment, self.asset_generator)

    def to_txout(self) -> TxOut:
        return TxOut(
            self.asset_generator,
            self.value_commitment,
            self.nonce_commitment,
            self.script_pubkey,
            self.surjection_proof,
            self.range_proof,
        )

    def job(self, input_generators: Sequence[bytes]) -> OutputJob:
        return OutputJob(
            self.value_commitment,
            self.asset_generator,
            self.script_pubkey,
            self.range_proof,
            self.surjection_proof,
            tuple(bytes(g) for g in input_generators),
        )


@dataclass(frozen=True, slots=True)
class ExplicitOutput:
    """An output left in the clear (the fee, or an output with no blinding key)."""

    script_pubkey: bytes
    asset_id: bytes
    value: int

    def opening(self) -> InputOpening:
        return InputOpening.explicit(self.asset_id, self.value)

    def as_value(self) -> Explicit:
        return Explicit(self.value, self.asset_id)

    def to_txout(self) -> TxOut:
        return TxOut(encode_asset(self.asset_id), encode_value(self.value), b"", self.script_pubkey)


Output = BlindedOutput | ExplicitOutput


def _draw_scalar(rng: Rng, what: str) -> bytes:
    # A uniform 32-byte string is a valid non-zero scalar with probability 1 - 2^-128;
    # an injected test rng may do worse, so retry a few times before giving up.
    for _ in range(16):
        raw = rng(32)
        if not isinstance(raw, bytes | bytearray) or len(raw) != 32:
            raise BlindingFailed(f"rng(32) returned {type(raw).__name__} of length {len(raw)}")
        try:
            return check_scalar(bytes(raw), what)
        except BadScalar:
            continue
    raise BlindingFailed(f"rng produced no valid {what} in 16 draws")


def _check_balance(inputs: Sequence[InputOpening], outputs: Sequence[OutputSpec]) -> None:
    totals: Counter[bytes] = Counter()
    for i in inputs:
        totals[i.asset_id] += i.value
    for o in outputs:
        totals[o.asset_id] -= o.value
    off = {a.hex(): v for a, v in totals.items() if v}
    if off:
        raise Unbalanced(f"inputs minus outputs per asset: {off}")


def blind_outputs(
    inputs: Sequence[InputOpening],
    outputs: Sequence[OutputSpec],
    *,
    rng: Rng = os.urandom,
    min_bits: int = DEFAULT_MIN_BITS,
    exp: int = DEFAULT_EXP,
) -> list[Output]:
    """Blind every output that has a blinding public key; leave the rest explicit.

    Returns one entry per output, in order. The last blinded output's vbf
    balances the transaction, so the commitments tally with the inputs'.
    Raises Unbalanced (amounts do not add up per asset), ValueOutOfRange,
    BlindingFailed, or an EncodingError for malformed arguments.
    """
    ins = list(inputs)
    outs = list(outputs)
    for k, i in enumerate(ins):
        if not isinstance(i, InputOpening):
            raise BlindingFailed(f"input {k} is {type(i).__name__}, not an InputOpening")
    for k, o in enumerate(outs):
        if not isinstance(o, OutputSpec):
            raise BlindingFailed(f"output {k} is {type(o).__name__}, not an OutputSpec")
    if not 1 <= len(ins) <= MAX_SURJECTION_INPUTS:
        raise BlindingFailed(f"need 1..{MAX_SURJECTION_INPUTS} inputs, got {len(ins)}")
    _check_balance(ins, outs)

    blinded = [k for k, o in enumerate(outs) if o.blinding_pubkey is not None]
    for k in blinded:
        o = outs[k]
        low = default_min_value(o.script_pubkey)
        if o.value < low:
            raise ValueOutOfRange(f"output {k}: a spendable confidential output must carry at least {low}")
    any_input_blinded = any(i.is_blinded for i in ins)
    if not blinded:
        if any_input_blinded:
            raise BlindingFailed("blinded inputs need at least one blinded output to absorb their blinding factors")
        return [ExplicitOutput(o.script_pubkey, o.asset_id, o.value) for o in outs]
    if len(blinded) == 1 and not any_input_blinded:
        raise BlindingFailed("one blinded output with only explicit inputs would reveal its amount; add another")

    abfs = {k: _draw_scalar(rng, "asset blinding factor") for k in blinded}
    vbfs = {k: _draw_scalar(rng, "value blinding factor") for k in blinded[:-1]}
    vbfs[blinded[-1]] = _final_vbf(ins, [(outs[k].value, abfs[k]) for k in blinded], [vbfs[k] for k in blinded[:-1]])

    in_ids = [i.asset_id for i in ins]
    in_abfs = [i.abf for i in ins]
    in_gens = [i.generator for i in ins]
    result: list[Output] = []
    for k, o in enumerate(outs):
        if o.blinding_pubkey is None:
            result.append(ExplicitOutput(bytes(o.script_pubkey), bytes(o.asset_id), o.value))
            continue
        abf, vbf = abfs[k], vbfs[k]
        gen = asset_generator(o.asset_id, abf)
        commitment = value_commitment(o.value, vbf, gen)
        ephemeral = _draw_scalar(rng, "ephemeral key")
        nonce = ecdh_nonce(o.blinding_pubkey, ephemeral)
        script = bytes(o.script_pubkey)
        rangeproof = make_range_proof(
            o.value,
            nonce,
            o.asset_id,
            abf,
            vbf,
            commitment,
            gen,
            script,
            min_value=default_min_value(script),
            exp=exp,
            min_bits=min_bits,
        )
        seed = rng(32)
        surjection = make_surjection_proof(o.asset_id, abf, gen, in_ids, in_abfs, in_gens, bytes(seed))
        result.append(
            BlindedOutput(
                script,
                gen,
                commitment,
                public_key(ephemeral),
                rangeproof,
                surjection,
                bytes(o.asset_id),
                o.value,
                abf,
                vbf,
            )
        )
    return result


def _final_vbf(inputs: Sequence[InputOpening], blinded: Sequence[tuple[int, bytes]], vbfs: Sequence[bytes]) -> bytes:
    """The last blinded output's vbf: sum over outputs of (v*abf + vbf) equals that over inputs."""
    values = [i.value for i in inputs] + [v for v, _ in blinded]
    abf = b"".join(i.abf for i in inputs) + b"".join(a for _, a in blinded)
    vbf = b"".join(i.vbf for i in inputs) + b"".join(vbfs)
    try:
        out = bytes(wally.asset_final_vbf(values, len(inputs), abf, vbf))
    except (ValueError, RuntimeError) as exc:  # pragma: no cover - all scalars were checked
        raise BlindingFailed(f"final vbf: library refused: {exc}") from exc
    try:
        return check_scalar(out, "final value blinding factor")
    except ConfidentialError as exc:
        # Zero only if the other factors cancel exactly; Elements gives up too.
        raise BlindingFailed("final value blinding factor is zero; retry with fresh randomness") from exc

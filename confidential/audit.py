"""Auditor side: recompute homomorphic sums with coincurve, independently of libsecp256k1-zkp's tally.

An auditor holding a transaction (or a whole ledger) can check that nothing
was created from nothing without learning any amount: the sum of input
commitments equals the sum of output commitments, explicit amounts counted
as amount*H_asset. This module does that with plain curve arithmetic
(coincurve), as a second opinion beside :func:`confidential.verify_balance`,
which asks the library's ``secp256k1_pedersen_verify_tally``.

coincurve cannot hold the point at infinity, so sums are ``PublicKey | None``
with ``None`` for infinity, and balance is compared as two sums, never by
testing one difference for zero.

Range proofs are still needed: a balanced sum can hide a negative amount.
"""

from __future__ import annotations

from collections.abc import Iterable

from coincurve import PublicKey

from .commit import explicit_generator
from .errors import BadLength, ValueOutOfRange
from .points import CURVE_ORDER, commitment_to_pubkey, generator_to_pubkey, parse_asset_generator, sum_points
from .verify import Committed, Explicit, Value


def value_point(value: Value) -> PublicKey | None:
    """The curve point a value stands for (``None`` for an explicit zero)."""
    if isinstance(value, Committed):
        parse_asset_generator(value.generator)
        return commitment_to_pubkey(value.commitment)
    if isinstance(value, Explicit):
        if not 0 <= value.amount < CURVE_ORDER:
            raise ValueOutOfRange(f"explicit amount {value.amount} is not a scalar")
        if value.amount == 0:
            return None
        h = generator_to_pubkey(explicit_generator(value.asset_id))
        return h.multiply(value.amount.to_bytes(32, "big"))
    raise BadLength(f"expected Explicit or Committed, got {type(value).__name__}")


def sum_commitments(values: Iterable[Value]) -> PublicKey | None:
    """Sum of the values' points; ``None`` is the point at infinity."""
    return sum_points(value_point(v) for v in values)


def recompute_balance(inputs: Iterable[Value], outputs: Iterable[Value]) -> bool:
    """True if sum(inputs) == sum(outputs) as curve points (fee and peg-ins as Explicit)."""
    a, b = sum_commitments(inputs), sum_commitments(outputs)
    if a is None or b is None:
        return a is None and b is None
    return a.format() == b.format()

"""Shared builders for the confidential tests (this module holds no tests of its own).

Transactions are built from a seeded ``random.Random``; the seed is part of
every test id, so a failure names the transaction that caused it.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass

from coincurve import PrivateKey

import confidential as ct

# L-BTC's asset id in wire byte order, and a second asset.
ASSET_A = bytes.fromhex("6d521c38ec1ea15734ae22b7c46064412829c0d0579f0a713d1c04ede979026f")
ASSET_B = bytes.fromhex("ce091c998b83c78bb71a632313ba3760f1763d9cfcffae02258ffa9865a37bd2")
P2WPKH = bytes.fromhex("0014") + bytes(range(20))
P2WSH = bytes.fromhex("0020") + bytes(range(32))
OP_RETURN_SCRIPT = bytes.fromhex("6a04deadbeef")
FEE_SCRIPT = b""


@dataclass(frozen=True)
class TxCase:
    """A blinded transaction: input openings, outputs, and the recipients' blinding keys."""

    seed: int
    inputs: tuple[ct.InputOpening, ...]
    outputs: tuple[ct.Output, ...]
    keys: tuple[bytes | None, ...]

    @property
    def input_generators(self) -> list[bytes]:
        return [i.generator for i in self.inputs]

    @property
    def input_values(self) -> list[ct.Value]:
        return [input_value(i) for i in self.inputs]

    @property
    def output_values(self) -> list[ct.Value]:
        return [o.as_value() for o in self.outputs]

    def key(self, k: int) -> bytes:
        """The blinding private key of output ``k`` (a blinded one)."""
        key = self.keys[k]
        assert key is not None
        return key

    def blinded(self, k: int) -> ct.BlindedOutput:
        out = self.outputs[k]
        assert isinstance(out, ct.BlindedOutput)
        return out


def input_value(i: ct.InputOpening) -> ct.Value:
    """How a validator sees a spent output: committed if blinded, explicit otherwise."""
    if not i.is_blinded:
        return ct.Explicit(i.value, i.asset_id)
    return ct.Committed(ct.value_commitment(i.value, i.vbf, i.generator), i.generator)


def seeded_rng(seed: int) -> random.Random:
    return random.Random(seed)


def blinded_input(rnd: random.Random, asset: bytes, value: int) -> ct.InputOpening:
    return ct.InputOpening.blinded(asset, value, rnd.randbytes(32), rnd.randbytes(32))


@functools.cache
def make_tx(
    seed: int,
    in_values: tuple[int, ...] = (60_000, 50_000),
    out_values: tuple[int, ...] = (70_000, 39_000),
    fee: int = 1_000,
    asset: bytes = ASSET_A,
    scripts: tuple[bytes, ...] = (P2WPKH, P2WSH),
) -> TxCase:
    """A transaction spending blinded inputs to blinded outputs plus an explicit fee."""
    rnd = seeded_rng(seed)
    inputs = tuple(blinded_input(rnd, asset, v) for v in in_values)
    keys = [rnd.randbytes(32) for _ in out_values]
    specs = [
        ct.OutputSpec(v, asset, scripts[k % len(scripts)], PrivateKey(key).public_key.format())
        for k, (v, key) in enumerate(zip(out_values, keys))
    ]
    specs.append(ct.OutputSpec(fee, asset, FEE_SCRIPT))
    outputs = ct.blind_outputs(inputs, specs, rng=rnd.randbytes)
    return TxCase(seed, inputs, tuple(outputs), (*keys, None))

"""10,000 hostile byte strings per parser and verifier: nothing escapes but ConfidentialError.

Inputs are drawn from a seeded generator (the seed is in the test id) that
mixes uniformly random strings with near-misses: the right length with each
prefix, valid objects with bytes flipped, truncated or extended, and proof
headers followed by random bodies of exactly the length the header asks for,
which reach the library's verification code rather than the length checks.
Mutations of a real range proof run the full 2.7 ms verification, so only a
hundred of the 10,000 per entry point are of that kind, to keep this fast.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_confidential_support import P2WPKH, make_tx

import confidential as ct

N = 10_000
SLOW = 100  # of the N, how many are mutations of a real range proof
SEED = 20261125

TX = make_tx(1)
OUT = TX.blinded(0)
GENS = TX.input_generators
KEY = TX.key(0)


def _mutate(rnd: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    kind = rnd.randrange(4)
    if kind == 0 and b:
        for _ in range(rnd.randint(1, 3)):
            b[rnd.randrange(len(b))] ^= 1 << rnd.randrange(8)
    elif kind == 1:
        del b[rnd.randrange(len(b) + 1) :]
    elif kind == 2:
        b += rnd.randbytes(rnd.randint(1, 40))
    elif b:
        b[rnd.randrange(len(b))] = rnd.randrange(256)
    return bytes(b)


def points(rnd: random.Random, valid: bytes) -> Iterator[bytes]:
    """Strings aimed at 33-byte point parsers."""
    while True:
        r = rnd.random()
        if r < 0.3:
            yield rnd.randbytes(rnd.randint(0, 70))
        elif r < 0.8:
            yield bytes((rnd.choice((0, 1, 2, 3, 4, 8, 9, 10, 11, 0xFF, rnd.randrange(256))),)) + rnd.randbytes(32)
        else:
            yield _mutate(rnd, valid)


def range_proofs(rnd: random.Random, valid: bytes, slow: int) -> Iterator[bytes]:
    """Strings aimed at range-proof parsing and verification."""
    while True:
        r = rnd.random()
        if slow > 0 and r < 0.02:
            slow -= 1
            yield _mutate(rnd, valid)
        elif r < 0.3:
            yield rnd.randbytes(rnd.randint(0, 200))
        elif r < 0.5:
            yield rnd.randbytes(rnd.choice((64, 65, 66, 4173, 4174, 4175, 5134, 5135)))
        else:
            # A plausible header (exp, mantissa, optional min_value) and a random body of the right length.
            control = 0x40 | rnd.randrange(0, 20) | (0x20 if rnd.random() < 0.7 else 0)
            if rnd.random() < 0.1:
                control = rnd.randrange(256)
            mantissa = rnd.randint(1, 64)
            header = bytes((control, mantissa - 1)) + (rnd.randbytes(8) if control & 0x20 else b"")
            rings = (mantissa + 1) // 2
            pubs = 4 * (mantissa // 2) + 2 * (mantissa & 1)
            body = ((rings + 6) >> 3) + 32 * (rings - 1) + 32 + 32 * pubs
            yield header + rnd.randbytes(body + rnd.choice((0, 0, 0, -1, 1)))


def surjection_proofs(rnd: random.Random, valid: bytes) -> Iterator[bytes]:
    while True:
        r = rnd.random()
        if r < 0.3:
            yield rnd.randbytes(rnd.randint(0, 120))
        elif r < 0.5:
            yield _mutate(rnd, valid)
        else:
            n = rnd.choice((0, 1, 2, 3, 8, 9, 255, 256, 257, rnd.randrange(65536)))
            bitmap = rnd.randbytes((n + 7) // 8) if n <= 256 else rnd.randbytes(rnd.randint(0, 40))
            used = sum(bin(x).count("1") for x in bitmap)
            yield n.to_bytes(2, "little") + bitmap + rnd.randbytes(32 * (1 + used) + rnd.choice((0, 0, -1, 1)))


def _run(fn: Callable[[bytes], object], source: Iterator[bytes], n: int = N) -> dict[str, int]:
    outcomes: dict[str, int] = {}
    for _ in range(n):
        data = next(source)
        try:
            fn(data)
            name = "ok"
        except ct.ConfidentialError as exc:
            name = type(exc).__name__
        outcomes[name] = outcomes.get(name, 0) + 1
    return outcomes


def _rnd(name: str) -> random.Random:
    return random.Random(f"{SEED}/{name}")


def test_fuzz_value_commitment_parsers() -> None:
    out = _run(ct.parse_value_commitment, points(_rnd("vc"), OUT.value_commitment))
    assert {"ok", "WrongPrefix", "BadPointEncoding", "BadLength"} <= out.keys()
    out = _run(ct.commitment_to_pubkey, points(_rnd("vc2"), OUT.value_commitment))
    assert {"ok", "WrongPrefix", "BadPointEncoding", "BadLength"} <= out.keys()


def test_fuzz_generator_parsers() -> None:
    out = _run(ct.parse_asset_generator, points(_rnd("g"), OUT.asset_generator))
    assert {"ok", "WrongPrefix", "BadPointEncoding", "BadLength"} <= out.keys()
    out = _run(ct.generator_to_pubkey, points(_rnd("g2"), OUT.asset_generator))
    assert {"ok", "WrongPrefix", "BadPointEncoding", "BadLength"} <= out.keys()
    out = _run(ct.asset_field_generator, points(_rnd("g3"), b"\x01" + OUT.asset_id))
    assert {"ok", "WrongPrefix"} <= out.keys()


def test_fuzz_range_proof_info() -> None:
    out = _run(ct.range_proof_info, range_proofs(_rnd("rpi"), OUT.range_proof, slow=0))
    assert {"ok", "TruncatedProof", "OversizedProof", "RangeProofInvalid"} <= out.keys()


def test_fuzz_range_proof_verification() -> None:
    def fn(p: bytes) -> object:
        return ct.verify_range_proof(p, OUT.value_commitment, OUT.asset_generator, OUT.script_pubkey)

    out = _run(fn, range_proofs(_rnd("rpv"), OUT.range_proof, slow=SLOW))
    assert {"TruncatedProof", "OversizedProof", "RangeProofInvalid"} <= out.keys()
    assert out.get("ok", 0) < 30  # only mutations that happen to leave the proof intact


def test_fuzz_surjection_proof_verification() -> None:
    def fn(p: bytes) -> object:
        ct.verify_surjection_proof(p, OUT.asset_generator, GENS)
        return None

    out = _run(fn, surjection_proofs(_rnd("sp"), OUT.surjection_proof))
    assert {"TruncatedProof", "OversizedProof", "SurjectionProofInvalid"} <= out.keys()


def test_fuzz_verify_output_each_field() -> None:
    rnd = _rnd("vo")
    fields = {
        "value_commitment": points(rnd, OUT.value_commitment),
        "asset_generator": points(rnd, OUT.asset_generator),
        "script_pubkey": (rnd.randbytes(rnd.randint(0, 40)) for _ in iter(int, 1)),
        "surjection_proof": surjection_proofs(rnd, OUT.surjection_proof),
        "input_generator": points(rnd, GENS[0]),
    }
    names = list(fields)

    def source() -> Iterator[tuple[str, bytes]]:
        while True:
            name = rnd.choice(names)
            yield name, next(fields[name])

    src = source()
    outcomes: dict[str, int] = {}
    for _ in range(N):
        name, data = next(src)
        args = {
            "value_commitment": OUT.value_commitment,
            "asset_generator": OUT.asset_generator,
            "script_pubkey": OUT.script_pubkey,
            # The range proof of another output: fails fast-ish only after parsing everything else,
            # so use a truncated one to keep 10,000 runs quick while still parsing every field first.
            "range_proof": OUT.range_proof[:100],
            "surjection_proof": OUT.surjection_proof,
            "input_generators": list(GENS),
        }
        if name == "input_generator":
            args["input_generators"] = [data, GENS[1]]
        else:
            args[name] = data
        try:
            ct.verify_output(**args)  # type: ignore[arg-type]
            result = "ok"
        except ct.ConfidentialError as exc:
            result = type(exc).__name__
        outcomes[result] = outcomes.get(result, 0) + 1
    assert "ok" not in outcomes  # the range proof given is always truncated
    assert {"WrongPrefix", "BadPointEncoding", "BadLength", "TruncatedProof"} <= outcomes.keys()


def test_fuzz_verify_balance() -> None:
    rnd = _rnd("bal")
    commits = points(rnd, OUT.value_commitment)
    gens = points(rnd, OUT.asset_generator)
    ins, outs = TX.input_values, TX.output_values

    def fn(data: bytes) -> object:
        pick = rnd.random()
        if pick < 0.4:
            extra: ct.Value = ct.Committed(data, OUT.asset_generator)
        elif pick < 0.8:
            extra = ct.Committed(OUT.value_commitment, next(gens))
        else:
            extra = ct.Explicit(int.from_bytes(data[:9] or b"\x00", "big") - 2**60, OUT.asset_id)
        ct.verify_balance(ins, [*outs, extra])
        return None

    out = _run(fn, commits)
    assert {"Unbalanced", "WrongPrefix", "BadPointEncoding", "ValueOutOfRange"} <= out.keys()
    assert "ok" not in out


def test_fuzz_unblind_output() -> None:
    rnd = _rnd("unb")
    nonces = points(rnd, OUT.nonce_commitment)
    proofs = range_proofs(rnd, OUT.range_proof, slow=0)

    def fn(data: bytes) -> object:
        pick = rnd.random()
        if pick < 0.4:
            return ct.unblind_output(OUT.value_commitment, OUT.asset_generator, data, P2WPKH, OUT.range_proof[:-1], KEY)
        if pick < 0.7:
            return ct.unblind_output(
                OUT.value_commitment, OUT.asset_generator, OUT.nonce_commitment, P2WPKH, next(proofs), KEY
            )
        # As a blinding key: 32 bytes, sometimes zero or above the group order.
        key = rnd.choice((data[:32], bytes(32), b"\xff" * 32, data))
        return ct.unblind_output(
            OUT.value_commitment, OUT.asset_generator, OUT.nonce_commitment, P2WPKH, OUT.range_proof[:-1], key
        )

    out = _run(fn, nonces)
    assert {"WrongPrefix", "BadPointEncoding", "BadLength", "BadScalar", "TruncatedProof"} <= out.keys()


def test_fuzz_txout_parse() -> None:
    rnd = _rnd("txout")
    good = OUT.to_txout()
    valid, wit = good.serialize(), good.serialize_witness()

    def source() -> Iterator[bytes]:
        while True:
            r = rnd.random()
            if r < 0.4:
                yield rnd.randbytes(rnd.randint(0, 150))
            else:
                yield _mutate(rnd, valid)

    def fn(data: bytes) -> object:
        t = ct.TxOut.parse(data, _mutate(rnd, wit) if rnd.random() < 0.3 else None)
        return t.to_value() if rnd.random() < 0.5 else t

    out = _run(fn, source())
    assert {"ok", "WrongPrefix", "BadLength"} <= out.keys()


@pytest.mark.parametrize(
    "bad",
    [None, 0, 1.5, "08" * 33, [8] * 33, object()],
    ids=["None", "int", "float", "str", "list", "object"],
)
def test_non_bytes_arguments_raise_our_errors(bad: Any) -> None:
    calls: list[Callable[[], object]] = [
        lambda: ct.parse_value_commitment(bad),
        lambda: ct.parse_asset_generator(bad),
        lambda: ct.commitment_to_pubkey(bad),
        lambda: ct.range_proof_info(bad),
        lambda: ct.verify_range_proof(bad, OUT.value_commitment, OUT.asset_generator, P2WPKH),
        lambda: ct.verify_surjection_proof(bad, OUT.asset_generator, GENS),
        lambda: ct.verify_output(
            OUT.value_commitment, OUT.asset_generator, bad, OUT.range_proof, OUT.surjection_proof, GENS
        ),
        lambda: ct.verify_output(
            OUT.value_commitment, OUT.asset_generator, P2WPKH, OUT.range_proof, OUT.surjection_proof, [bad]
        ),
        lambda: ct.verify_balance([bad], []),
        lambda: ct.verify_balance([ct.Committed(bad, OUT.asset_generator)], []),
        lambda: ct.unblind_output(
            OUT.value_commitment, OUT.asset_generator, OUT.nonce_commitment, P2WPKH, OUT.range_proof, bad
        ),
        lambda: ct.TxOut.parse(bad),
        lambda: ct.verify_output(
            OUT.value_commitment,
            OUT.asset_generator,
            P2WPKH,
            OUT.range_proof,
            OUT.surjection_proof,
            bad,
        ),
        lambda: ct.verify_surjection_proof(OUT.surjection_proof, OUT.asset_generator, bad),
        lambda: ct.verify_balance(bad, []),
        lambda: ct.verify_outputs_parallel(bad, max_workers=2),
        lambda: ct.verify_outputs_parallel([bad, bad], max_workers=2),
    ]
    if not isinstance(bad, int):
        calls.append(lambda: ct.Explicit(bad, OUT.asset_id))
    for call in calls:
        with pytest.raises(ct.ConfidentialError):
            call()


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=120), witness=st.one_of(st.none(), st.binary(max_size=80)))
def test_txout_parse_property(data: bytes, witness: bytes | None) -> None:
    try:
        t = ct.TxOut.parse(data, witness)
    except ct.ConfidentialError:
        return
    # Whatever parses re-serializes to the same bytes.
    assert t.serialize() == data
    if witness is not None:
        assert t.serialize_witness() == witness

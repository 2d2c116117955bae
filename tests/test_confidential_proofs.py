"""Blinding, verification, balance and unblinding: what must pass and each typed error.

Every negative test starts from an output that verifies, changes one thing,
and expects one named error.
"""

from __future__ import annotations

import dataclasses

import pytest
from coincurve import PrivateKey, PublicKey
from test_confidential_support import (
    ASSET_A,
    ASSET_B,
    OP_RETURN_SCRIPT,
    P2WPKH,
    P2WSH,
    blinded_input,
    input_value,
    make_tx,
    seeded_rng,
)

import confidential as ct
from confidential.points import CURVE_ORDER

SEEDS = [1, 2, 3]


def verify(out: ct.BlindedOutput, gens: list[bytes], **kw: object) -> ct.RangeInfo:
    return ct.verify_output(
        out.value_commitment,
        out.asset_generator,
        out.script_pubkey,
        out.range_proof,
        out.surjection_proof,
        gens,
        **kw,  # type: ignore[arg-type]
    )


# --- What must pass -----------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_blinded_outputs_verify_balance_and_unblind(seed: int) -> None:
    tx = make_tx(seed)
    gens = tx.input_generators
    for k in (0, 1):
        out = tx.blinded(k)
        info = verify(out, gens)
        # Elements' defaults: 52 bits, exp 0, min_value 1 on a spendable script.
        assert (info.min_value, info.max_value, info.mantissa, info.exponent) == (1, 2**52, 52, 0)
        assert len(out.range_proof) == 4174
        assert len(out.surjection_proof) == 2 + 1 + 32 * 3  # 2 inputs, both in the ring
        assert out.value_commitment[0] in (8, 9) and out.asset_generator[0] in (10, 11)
        key = tx.keys[k]
        assert key is not None
        got = ct.unblind_output(
            out.value_commitment, out.asset_generator, out.nonce_commitment, out.script_pubkey, out.range_proof, key
        )
        assert got == ct.Unblinded(out.value, out.asset_id, out.abf, out.vbf)
    fee = tx.outputs[2]
    assert isinstance(fee, ct.ExplicitOutput) and fee.value == 1_000
    ct.verify_balance(tx.input_values, tx.output_values)
    assert ct.recompute_balance(tx.input_values, tx.output_values)


def test_injected_rng_replays_exactly() -> None:
    a = make_tx.__wrapped__(7)  # bypass the cache: build twice
    b = make_tx.__wrapped__(7)
    c = make_tx.__wrapped__(8)
    assert a.outputs == b.outputs
    assert a.blinded(0).range_proof != c.blinded(0).range_proof


def test_default_rng_differs_between_calls() -> None:
    tx = make_tx(1)
    specs = [
        ct.OutputSpec(70_000, ASSET_A, P2WPKH, PrivateKey().public_key.format()),
        ct.OutputSpec(39_000, ASSET_A, P2WSH, PrivateKey().public_key.format()),
        ct.OutputSpec(1_000, ASSET_A, b""),
    ]
    one = ct.blind_outputs(tx.inputs, specs)
    two = ct.blind_outputs(tx.inputs, specs)
    assert one[0] != two[0]
    ct.verify_balance(tx.input_values, [o.as_value() for o in one])


def test_mixed_explicit_and_blinded_inputs_with_peg_in() -> None:
    rnd = seeded_rng(11)
    peg_in = ct.InputOpening.explicit(ASSET_A, 100_000)
    blinded = blinded_input(rnd, ASSET_A, 5_000)
    keys = [PrivateKey(rnd.randbytes(32)) for _ in range(2)]
    specs = [
        ct.OutputSpec(80_000, ASSET_A, P2WPKH, keys[0].public_key.format()),
        ct.OutputSpec(24_500, ASSET_A, P2WSH, keys[1].public_key.format()),
        ct.OutputSpec(500, ASSET_A, b""),
    ]
    outs = ct.blind_outputs([peg_in, blinded], specs, rng=rnd.randbytes)
    gens = [peg_in.generator, blinded.generator]
    assert peg_in.generator == ct.explicit_generator(ASSET_A)
    for o in outs[:2]:
        assert isinstance(o, ct.BlindedOutput)
        verify(o, gens)
    ins: list[ct.Value] = [ct.Explicit(100_000, ASSET_A), input_value(blinded)]
    ct.verify_balance(ins, [o.as_value() for o in outs])
    with pytest.raises(ct.Unbalanced):
        ct.verify_balance([ct.Explicit(99_999, ASSET_A), input_value(blinded)], [o.as_value() for o in outs])


def test_two_assets_each_output_surjects_to_its_own() -> None:
    rnd = seeded_rng(12)
    ins = [blinded_input(rnd, ASSET_A, 10_000), blinded_input(rnd, ASSET_B, 777)]
    keys = [PrivateKey(rnd.randbytes(32)) for _ in range(2)]
    specs = [
        ct.OutputSpec(777, ASSET_B, P2WPKH, keys[0].public_key.format()),
        ct.OutputSpec(9_900, ASSET_A, P2WSH, keys[1].public_key.format()),
        ct.OutputSpec(100, ASSET_A, b""),
    ]
    outs = ct.blind_outputs(ins, specs, rng=rnd.randbytes)
    gens = [i.generator for i in ins]
    for o in outs[:2]:
        assert isinstance(o, ct.BlindedOutput)
        verify(o, gens)
    ct.verify_balance([input_value(i) for i in ins], [o.as_value() for o in outs])
    # Swap the two outputs' amounts between assets: each asset's sum breaks.
    with pytest.raises(ct.Unbalanced):
        ct.verify_balance(
            [input_value(i) for i in ins],
            [outs[0].as_value(), outs[1].as_value(), ct.Explicit(100, ASSET_B)],
        )


def test_spent_output_opening_becomes_next_input() -> None:
    tx = make_tx(1)
    o0 = tx.blinded(0)
    opening = o0.opening()
    assert opening.generator == o0.asset_generator
    assert ct.value_commitment(opening.value, opening.vbf, opening.generator) == o0.value_commitment
    rnd = seeded_rng(13)
    key = PrivateKey(rnd.randbytes(32))
    specs = [
        ct.OutputSpec(69_000, ASSET_A, P2WPKH, key.public_key.format()),
        ct.OutputSpec(1_000, ASSET_A, b""),
    ]
    # A single blinded output is fine once an input is blinded: its blinders keep the amount hidden.
    outs = ct.blind_outputs([opening], specs, rng=rnd.randbytes)
    out = outs[0]
    assert isinstance(out, ct.BlindedOutput)
    verify(out, [o0.asset_generator])
    ct.verify_balance([o0.as_value()], [o.as_value() for o in outs])


def test_zero_value_blinded_output_only_to_unspendable_script() -> None:
    tx = make_tx(1)
    rnd = seeded_rng(14)
    keys = [PrivateKey(rnd.randbytes(32)).public_key.format() for _ in range(2)]
    specs = [
        ct.OutputSpec(0, ASSET_A, OP_RETURN_SCRIPT, keys[0]),
        ct.OutputSpec(109_000, ASSET_A, P2WPKH, keys[1]),
        ct.OutputSpec(1_000, ASSET_A, b""),
    ]
    outs = ct.blind_outputs(tx.inputs, specs, rng=rnd.randbytes)
    burn = outs[0]
    assert isinstance(burn, ct.BlindedOutput)
    info = verify(burn, tx.input_generators)
    assert info.min_value == 0  # Elements: min_value 0 for unspendable scripts
    ct.verify_balance(tx.input_values, [o.as_value() for o in outs])
    with pytest.raises(ct.ValueOutOfRange):
        ct.blind_outputs(tx.inputs, [dataclasses.replace(specs[0], script_pubkey=P2WPKH), *specs[1:]])


# --- Proof moved / tampered ----------------------------------------------------


def test_range_proof_moved_to_another_output_is_rejected() -> None:
    tx = make_tx(1)
    o0, o1 = tx.blinded(0), tx.blinded(1)
    gens = tx.input_generators
    with pytest.raises(ct.RangeProofInvalid):
        verify(dataclasses.replace(o1, range_proof=o0.range_proof), gens)
    # The same proof and commitment under another scriptPubKey or another asset generator.
    with pytest.raises(ct.RangeProofInvalid):
        verify(dataclasses.replace(o0, script_pubkey=o1.script_pubkey), gens)
    with pytest.raises(ct.RangeProofInvalid):
        ct.verify_range_proof(o0.range_proof, o0.value_commitment, o1.asset_generator, o0.script_pubkey)
    # A proof from another transaction entirely.
    other = make_tx(2).blinded(0)
    with pytest.raises(ct.RangeProofInvalid):
        verify(dataclasses.replace(o0, range_proof=other.range_proof), gens)


def test_surjection_proof_moved_or_inputs_changed_is_rejected() -> None:
    tx = make_tx(1)
    o0, o1 = tx.blinded(0), tx.blinded(1)
    gens = tx.input_generators
    with pytest.raises(ct.SurjectionProofInvalid):
        verify(dataclasses.replace(o0, surjection_proof=o1.surjection_proof), gens)
    with pytest.raises(ct.SurjectionProofInvalid):
        verify(o0, gens[::-1])  # input order matters: the proof's bitmap names positions
    with pytest.raises(ct.SurjectionProofInvalid):
        verify(o0, gens[:1])  # proof over 2 inputs, 1 given
    with pytest.raises(ct.SurjectionProofInvalid):
        ct.verify_surjection_proof(o0.surjection_proof, o0.asset_generator, make_tx(2).input_generators)


def test_surjection_to_an_asset_no_input_has_is_rejected() -> None:
    rnd = seeded_rng(15)
    only_b = [blinded_input(rnd, ASSET_B, 500), blinded_input(rnd, ASSET_B, 500)]
    out = make_tx(1).blinded(0)  # an ASSET_A output
    with pytest.raises(ct.SurjectionProofInvalid):
        ct.verify_surjection_proof(out.surjection_proof, out.asset_generator, [i.generator for i in only_b])
    with pytest.raises(ct.BlindingFailed):
        ct.make_surjection_proof(
            ASSET_A,
            out.abf,
            out.asset_generator,
            [i.asset_id for i in only_b],
            [i.abf for i in only_b],
            [i.generator for i in only_b],
            bytes(32),
        )


def test_flipped_bits_in_commitment_are_rejected() -> None:
    out = make_tx(1).blinded(0)
    gens = make_tx(1).input_generators
    seen: set[type[ct.ConfidentialError]] = set()
    for bit in range(33 * 8):
        c = bytearray(out.value_commitment)
        c[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises((ct.BadPointEncoding, ct.RangeProofInvalid)) as exc:
            verify(dataclasses.replace(out, value_commitment=bytes(c)), gens)
        seen.add(type(exc.value))
    # Some flips leave x off the curve, some give another point; the prefix's other
    # bits give a prefix that is no commitment's.
    assert seen == {ct.BadPointEncoding, ct.RangeProofInvalid, ct.WrongPrefix}


def test_flipped_bits_in_proof_bodies_are_rejected() -> None:
    tx = make_tx(1)
    out = tx.blinded(0)
    for pos in (20, 100, 1000, 2000, 4000, len(out.range_proof) - 1):
        p = bytearray(out.range_proof)
        p[pos] ^= 0x01
        with pytest.raises(ct.RangeProofInvalid):
            verify(dataclasses.replace(out, range_proof=bytes(p)), tx.input_generators)
    for pos in (3, 40, len(out.surjection_proof) - 1):
        s = bytearray(out.surjection_proof)
        s[pos] ^= 0x01
        with pytest.raises(ct.SurjectionProofInvalid):
            verify(dataclasses.replace(out, surjection_proof=bytes(s)), tx.input_generators)


# --- Sizes and prefixes --------------------------------------------------------


def test_truncated_and_oversized_range_proofs() -> None:
    tx = make_tx(1)
    out = tx.blinded(0)
    rp = out.range_proof
    for bad in (b"", rp[:1], rp[:64], rp[:65], rp[:-1], rp[:-32]):
        with pytest.raises(ct.TruncatedProof):
            verify(dataclasses.replace(out, range_proof=bad), tx.input_generators)
    for bad in (rp + b"\x00", rp + rp[:32], bytes(ct.MAX_RANGEPROOF_LEN + 1)):
        with pytest.raises(ct.OversizedProof):
            verify(dataclasses.replace(out, range_proof=bad), tx.input_generators)
    # A header claiming 60 bits on a 52-bit body is truncated, 32 bits on it is oversized;
    # 64 bits above a min_value of 1 would pass 2^64, which no header may claim.
    for mantissa, err in ((60, ct.TruncatedProof), (32, ct.OversizedProof), (64, ct.RangeProofInvalid)):
        p = bytearray(rp)
        p[1] = mantissa - 1
        with pytest.raises(err):
            ct.range_proof_info(bytes(p))
    assert ct.range_proof_info(rp) == ct.RangeInfo(1, 2**52, 0, 52)


def test_truncated_and_oversized_surjection_proofs() -> None:
    tx = make_tx(1)
    out = tx.blinded(0)
    sp = out.surjection_proof
    for bad in (b"", sp[:1], sp[:2], sp[:-1], sp[:-32]):
        with pytest.raises(ct.TruncatedProof):
            verify(dataclasses.replace(out, surjection_proof=bad), tx.input_generators)
    for bad in (sp + b"\x00", sp + sp[-32:], bytes(ct.MAX_SURJECTIONPROOF_LEN + 1)):
        with pytest.raises(ct.OversizedProof):
            verify(dataclasses.replace(out, surjection_proof=bad), tx.input_generators)
    with pytest.raises(ct.SurjectionProofInvalid):  # 257 inputs claimed
        verify(dataclasses.replace(out, surjection_proof=b"\x01\x01" + sp[2:]), tx.input_generators)
    with pytest.raises(ct.SurjectionProofInvalid):  # padding bit past the 2 inputs
        verify(dataclasses.replace(out, surjection_proof=sp[:2] + bytes((sp[2] | 0x80,)) + sp[3:]), tx.input_generators)


def test_wrong_prefixes() -> None:
    tx = make_tx(1)
    out = tx.blinded(0)
    gens = tx.input_generators
    as_generator = bytes((0x0A,)) + out.value_commitment[1:]
    as_commitment = bytes((0x08,)) + out.asset_generator[1:]
    with pytest.raises(ct.WrongPrefix):
        verify(dataclasses.replace(out, value_commitment=as_generator), gens)
    with pytest.raises(ct.WrongPrefix):
        verify(dataclasses.replace(out, asset_generator=as_commitment), gens)
    with pytest.raises(ct.WrongPrefix):
        verify(out, [gens[0], bytes((0x02,)) + gens[1][1:]])
    with pytest.raises(ct.WrongPrefix):
        ct.verify_balance([ct.Committed(as_generator, out.asset_generator)], [])
    with pytest.raises(ct.WrongPrefix):
        ct.unblind_output(
            out.value_commitment,
            out.asset_generator,
            b"\x08" + out.nonce_commitment[1:],
            P2WPKH,
            out.range_proof,
            b"\x01" * 32,
        )
    with pytest.raises(ct.BadLength):
        verify(dataclasses.replace(out, value_commitment=out.value_commitment[:32]), gens)


# --- Values out of range --------------------------------------------------------


def _proof_for(value: int, *, min_value: int, min_bits: int = 52, script: bytes = P2WPKH) -> tuple[bytes, bytes, bytes]:
    rnd = seeded_rng(value % 1000 + min_value)
    abf, vbf, nonce = rnd.randbytes(32), rnd.randbytes(32), rnd.randbytes(32)
    gen = ct.asset_generator(ASSET_A, abf)
    c = ct.value_commitment(value, vbf, gen)
    proof = ct.make_range_proof(value, nonce, ASSET_A, abf, vbf, c, gen, script, min_value=min_value, min_bits=min_bits)
    return proof, c, gen


def test_proof_of_value_above_2_52_needs_more_bits_and_policy_refuses_it() -> None:
    proof, c, gen = _proof_for(2**60, min_value=1)
    info = ct.verify_range_proof(proof, c, gen, P2WPKH)  # Elements accepts it: no bound in consensus
    assert info.mantissa == 60 and info.max_value == 2**60  # (value - min_value) fits 60 bits
    with pytest.raises(ct.ValueOutOfRange):
        ct.verify_range_proof(proof, c, gen, P2WPKH, max_value=2**52)
    ok, c2, g2 = _proof_for(2**52 - 1, min_value=1)
    assert ct.verify_range_proof(ok, c2, g2, P2WPKH, max_value=2**52).max_value == 2**52


def test_min_value_zero_on_spendable_script_is_rejected() -> None:
    # The "min_value trick": a proof allowing zero lets a spendable output carry nothing,
    # which Elements refuses (it would let anyone mint zero-value reissuance tokens).
    proof, c, gen = _proof_for(5, min_value=0)
    with pytest.raises(ct.ValueOutOfRange):
        ct.verify_range_proof(proof, c, gen, P2WPKH)
    burn, cb, gb = _proof_for(5, min_value=0, script=OP_RETURN_SCRIPT)
    assert ct.verify_range_proof(burn, cb, gb, OP_RETURN_SCRIPT).min_value == 0


def test_negative_value_balances_but_has_no_range_proof() -> None:
    # Inflation attempt: 1,000 in, outputs of 2,000 and -1,000. The tally balances;
    # only the range proof stands in the way.
    rnd = seeded_rng(16)
    abf = rnd.randbytes(32)
    gen = ct.asset_generator(ASSET_A, abf)
    h = ct.generator_to_pubkey(gen)
    r_in, r_pos = rnd.randbytes(32), rnd.randbytes(32)
    c_in = ct.value_commitment(1_000, r_in, gen)
    c_pos = ct.value_commitment(2_000, r_pos, gen)
    r_neg = (int.from_bytes(r_in, "big") - int.from_bytes(r_pos, "big")) % CURVE_ORDER
    # -1000*H + r_neg*G, built with coincurve: no library would commit to a negative value.
    minus_h = h.multiply((CURVE_ORDER - 1_000).to_bytes(32, "big"))
    c_neg = ct.pubkey_to_commitment(PublicKey.combine_keys([minus_h, PrivateKey(r_neg.to_bytes(32, "big")).public_key]))
    ct.verify_balance([ct.Committed(c_in, gen)], [ct.Committed(c_pos, gen), ct.Committed(c_neg, gen)])
    nonce = rnd.randbytes(32)
    # The nearest thing a prover can sign is the uint64 2^64 - 1000, which is not -1000 mod n.
    try:
        proof = ct.make_range_proof(
            2**64 - 1_000, nonce, ASSET_A, abf, r_neg.to_bytes(32, "big"), c_neg, gen, P2WPKH, min_value=0, min_bits=64
        )
    except ct.BlindingFailed:
        proof = None  # the library refused to sign for a commitment that does not open to the value
    candidates = [p for p in (proof, _proof_for(1_000, min_value=1)[0], make_tx(1).blinded(0).range_proof) if p]
    for p in candidates:
        with pytest.raises((ct.RangeProofInvalid, ct.ValueOutOfRange)):
            ct.verify_range_proof(p, c_neg, gen, P2WPKH)


def test_blinding_refuses_out_of_range_values() -> None:
    tx = make_tx(1)
    key = PrivateKey().public_key.format()
    with pytest.raises(ct.ValueOutOfRange):
        ct.OutputSpec(ct.MAX_MONEY + 1, ASSET_A, P2WPKH, key)
    with pytest.raises(ct.ValueOutOfRange):
        ct.OutputSpec(-1, ASSET_A, P2WPKH, key)
    with pytest.raises(ct.ValueOutOfRange):
        ct.InputOpening.explicit(ASSET_A, ct.MAX_MONEY + 1)
    with pytest.raises(ct.Unbalanced):
        ct.blind_outputs(tx.inputs, [ct.OutputSpec(109_001, ASSET_A, P2WPKH, key), ct.OutputSpec(1_000, ASSET_A, b"")])


def test_blinding_refusals() -> None:
    rnd = seeded_rng(17)
    key = PrivateKey(rnd.randbytes(32)).public_key.format()
    explicit_in = [ct.InputOpening.explicit(ASSET_A, 10_000)]
    # One blinded output and explicit inputs: its commitment would be 9000*H in the clear.
    with pytest.raises(ct.BlindingFailed):
        ct.blind_outputs(explicit_in, [ct.OutputSpec(9_000, ASSET_A, P2WPKH, key), ct.OutputSpec(1_000, ASSET_A, b"")])
    # Blinded inputs and nothing blinded to absorb their blinders.
    tx = make_tx(1)
    with pytest.raises(ct.BlindingFailed):
        ct.blind_outputs(tx.inputs, [ct.OutputSpec(109_000, ASSET_A, P2WPKH), ct.OutputSpec(1_000, ASSET_A, b"")])
    with pytest.raises(ct.BlindingFailed):
        ct.blind_outputs([], [])
    with pytest.raises(ct.BlindingFailed):  # an rng that returns garbage
        ct.blind_outputs(
            tx.inputs,
            [ct.OutputSpec(109_000, ASSET_A, P2WPKH, key), ct.OutputSpec(1_000, ASSET_A, b"")],
            rng=lambda n: b"\xff" * n,
        )
    with pytest.raises(ct.BlindingFailed):  # an opening whose generator is not its own
        ct.InputOpening(ASSET_A, bytes(32), 5, bytes(32), ct.explicit_generator(ASSET_B))
    with pytest.raises(ct.BadPointEncoding):
        ct.OutputSpec(1, ASSET_A, P2WPKH, b"\x02" + b"\xff" * 32)
    # All explicit: fine, nothing to blind.
    outs = ct.blind_outputs(explicit_in, [ct.OutputSpec(9_000, ASSET_A, P2WPKH), ct.OutputSpec(1_000, ASSET_A, b"")])
    assert all(isinstance(o, ct.ExplicitOutput) for o in outs)


# --- Balance ----------------------------------------------------------------------


@pytest.mark.parametrize("delta", [-1, 1])
def test_balance_off_by_one_satoshi(delta: int) -> None:
    tx = make_tx(1)
    outs = tx.output_values
    assert isinstance(outs[2], ct.Explicit)
    bad_fee = ct.Explicit(outs[2].amount + delta, ASSET_A)
    with pytest.raises(ct.Unbalanced):
        ct.verify_balance(tx.input_values, [outs[0], outs[1], bad_fee])
    assert not ct.recompute_balance(tx.input_values, [outs[0], outs[1], bad_fee])


def test_balance_off_by_one_inside_a_commitment() -> None:
    tx = make_tx(1)
    o0 = tx.blinded(0)
    recommitted = ct.value_commitment(o0.value + 1, o0.vbf, o0.asset_generator)
    outs = [ct.Committed(recommitted, o0.asset_generator), *tx.output_values[1:]]
    with pytest.raises(ct.Unbalanced):
        ct.verify_balance(tx.input_values, outs)
    # ...and the last vbf is what makes the honest one balance.
    o1 = tx.blinded(1)
    shifted = (int.from_bytes(o1.vbf, "big") + 1) % CURVE_ORDER
    c1 = ct.value_commitment(o1.value, shifted.to_bytes(32, "big"), o1.asset_generator)
    with pytest.raises(ct.Unbalanced):
        ct.verify_balance(
            tx.input_values, [tx.output_values[0], ct.Committed(c1, o1.asset_generator), tx.output_values[2]]
        )


def test_balance_fee_in_wrong_asset() -> None:
    tx = make_tx(1)
    outs = [*tx.output_values[:2], ct.Explicit(1_000, ASSET_B)]
    with pytest.raises(ct.Unbalanced):
        ct.verify_balance(tx.input_values, outs)


def test_balance_explicit_amount_rules() -> None:
    tx = make_tx(1)
    with pytest.raises(ct.ValueOutOfRange):  # Elements: an explicit zero input has no commitment
        ct.verify_balance([*tx.input_values, ct.Explicit(0, ASSET_A)], tx.output_values)
    # An explicit zero output adds nothing (spendability is the caller's rule).
    ct.verify_balance(tx.input_values, [*tx.output_values, ct.Explicit(0, ASSET_A)])
    for bad in (-1, ct.MAX_MONEY + 1):
        with pytest.raises(ct.ValueOutOfRange):
            ct.verify_balance(tx.input_values, [*tx.output_values, ct.Explicit(bad, ASSET_A)])
    # All explicit: 3 in, 2 + 1 out; peg-ins are explicit inputs.
    ct.verify_balance([ct.Explicit(3, ASSET_A)], [ct.Explicit(2, ASSET_A), ct.Explicit(1, ASSET_A)])
    with pytest.raises(ct.Unbalanced):
        ct.verify_balance([ct.Explicit(3, ASSET_A)], [ct.Explicit(3, ASSET_B)])


# --- Unblinding ------------------------------------------------------------------


def test_unblind_with_wrong_key_is_not_ours() -> None:
    tx = make_tx(1)
    out = tx.blinded(0)
    other = tx.keys[1]
    assert other is not None
    args = (out.value_commitment, out.asset_generator, out.nonce_commitment, out.script_pubkey, out.range_proof)
    with pytest.raises(ct.NotOurOutput):
        ct.unblind_output(*args, other)
    with pytest.raises(ct.NotOurOutput):  # right key, another output's ephemeral key
        ct.unblind_output(
            out.value_commitment,
            out.asset_generator,
            tx.blinded(1).nonce_commitment,
            out.script_pubkey,
            out.range_proof,
            tx.key(0),
        )
    with pytest.raises(ct.RangeProofInvalid):  # a proof for another script is not merely "not ours"
        ct.unblind_output(
            out.value_commitment, out.asset_generator, out.nonce_commitment, P2WSH, out.range_proof, tx.key(0)
        )
    with pytest.raises(ct.TruncatedProof):
        ct.unblind_output(*args[:4], out.range_proof[:-1], tx.key(0))
    with pytest.raises(ct.BadScalar):
        ct.unblind_output(*args, bytes(32))


def test_auditor_with_viewing_key_sees_amounts() -> None:
    # The recipient shares the output's blinding private key with an auditor; the
    # auditor opens every output it covers and recomputes the sum itself.
    tx = make_tx(3)
    seen = []
    for k in (0, 1):
        out = tx.blinded(k)
        u = ct.unblind_output(
            out.value_commitment,
            out.asset_generator,
            out.nonce_commitment,
            out.script_pubkey,
            out.range_proof,
            tx.key(k),
        )
        assert ct.value_commitment(u.value, u.vbf, ct.asset_generator(u.asset_id, u.abf)) == out.value_commitment
        seen.append(u.value)
    assert sum(seen) + 1_000 == sum(i.value for i in tx.inputs)


# --- Cache -------------------------------------------------------------------------


def test_cache_is_keyed_on_the_whole_context() -> None:
    tx, other = make_tx(1), make_tx(2)
    o0, o1 = tx.blinded(0), tx.blinded(1)
    gens = tx.input_generators
    cache = ct.VerificationCache()
    verify(o0, gens, cache=cache)
    assert cache.misses == 2 and len(cache) == 2
    verify(o0, gens, cache=cache)
    assert cache.hits == 2  # both proofs came from the cache
    # Swap each part of the context under the cached proof: each must miss and fail.
    range_swaps = {
        "proof": dataclasses.replace(o0, range_proof=other.blinded(0).range_proof),
        "commitment": dataclasses.replace(o0, value_commitment=o1.value_commitment),
        "generator": dataclasses.replace(o0, asset_generator=o1.asset_generator),
        "script": dataclasses.replace(o0, script_pubkey=o1.script_pubkey),
    }
    for name, swapped in range_swaps.items():
        hits = cache.hits
        with pytest.raises(ct.RangeProofInvalid):
            ct.verify_range_proof(
                swapped.range_proof,
                swapped.value_commitment,
                swapped.asset_generator,
                swapped.script_pubkey,
                cache=cache,
            )
        assert cache.hits == hits, name
    surj_swaps = {
        "proof": (o1.surjection_proof, o0.asset_generator, gens),
        "generator": (o0.surjection_proof, o1.asset_generator, gens),
        "inputs": (o0.surjection_proof, o0.asset_generator, gens[::-1]),
        "other inputs": (o0.surjection_proof, o0.asset_generator, other.input_generators),
    }
    for name, (sp, g, ins) in surj_swaps.items():
        hits = cache.hits
        with pytest.raises(ct.SurjectionProofInvalid):
            ct.verify_surjection_proof(sp, g, ins, cache=cache)
        assert cache.hits == hits, name
    # Keys never collide across parts: moving bytes between fields changes the key.
    k = cache.range_key(b"ab", b"c", b"d", b"e")
    assert k != cache.range_key(b"a", b"bc", b"d", b"e") != cache.range_key(b"ab", b"c", b"", b"de")


def test_cache_hit_still_applies_policy() -> None:
    proof, c, gen = _proof_for(5, min_value=0, script=OP_RETURN_SCRIPT)
    cache = ct.VerificationCache()
    ct.verify_range_proof(proof, c, gen, OP_RETURN_SCRIPT, cache=cache)
    ct.verify_range_proof(proof, c, gen, OP_RETURN_SCRIPT, cache=cache)
    assert cache.hits == 1
    with pytest.raises(ct.ValueOutOfRange):
        ct.verify_range_proof(proof, c, gen, OP_RETURN_SCRIPT, cache=cache, max_value=4)
    big, cb, gb = _proof_for(2**60, min_value=1)
    ct.verify_range_proof(big, cb, gb, P2WPKH, cache=cache)
    with pytest.raises(ct.ValueOutOfRange):
        ct.verify_range_proof(big, cb, gb, P2WPKH, cache=cache, max_value=2**52)


def test_cache_is_bounded() -> None:
    cache = ct.VerificationCache(max_entries=2)
    for i in range(5):
        cache.put_range(bytes([i]) * 32, (1, 2, 0, 1))
    assert len(cache) == 2
    assert cache.get_range(bytes([0]) * 32) is None and cache.get_range(bytes([4]) * 32) is not None


# --- Parallel ----------------------------------------------------------------------


def _jobs() -> list[ct.OutputJob]:
    jobs = []
    for seed in SEEDS:
        tx = make_tx(seed)
        jobs += [tx.blinded(k).job(tx.input_generators) for k in (0, 1)]
    return jobs


@pytest.mark.parametrize("workers", [1, 2, 4])
def test_parallel_results_in_job_order(workers: int) -> None:
    jobs = _jobs()
    expected = [ct.verify_output(**dataclasses.asdict(j)) for j in jobs]
    assert ct.verify_outputs_parallel(jobs, max_workers=workers) == expected
    assert ct.verify_outputs_parallel(jobs[::-1], max_workers=workers) == expected[::-1]
    assert ct.verify_outputs_parallel([], max_workers=workers) == []


@pytest.mark.parametrize("workers", [1, 2, 4])
def test_parallel_raises_lowest_index_failure(workers: int) -> None:
    jobs = _jobs()
    truncated = dataclasses.replace(jobs[1], range_proof=jobs[1].range_proof[:-1])
    moved = dataclasses.replace(jobs[4], range_proof=jobs[0].range_proof)
    bad_surj = dataclasses.replace(jobs[2], surjection_proof=jobs[3].surjection_proof)
    # Put a slow failure (a full verify that fails) before a fast one (a length check):
    # the fast one finishes first, but the slow one has the lower index.
    mixed = [jobs[0], moved, jobs[5], truncated, bad_surj]
    for _ in range(3):
        with pytest.raises(ct.RangeProofInvalid):
            ct.verify_outputs_parallel(mixed, max_workers=workers)
    results = ct.verify_outputs_collect(mixed, max_workers=workers)
    assert [type(r).__name__ for r in results] == [
        "RangeInfo",
        "RangeProofInvalid",
        "RangeInfo",
        "TruncatedProof",
        "SurjectionProofInvalid",
    ]
    with pytest.raises(ct.TruncatedProof):
        ct.verify_outputs_parallel([truncated, moved], max_workers=workers)


def test_surjection_ring_is_three_inputs_of_many() -> None:
    # Elements (and wallycore) put min(3, inputs) inputs in the ring: 131 bytes over up to 8 inputs.
    rnd = seeded_rng(18)
    ins = [blinded_input(rnd, ASSET_A if k != 3 else ASSET_B, 1_000) for k in range(6)]
    key = PrivateKey(rnd.randbytes(32)).public_key.format()
    specs = [
        ct.OutputSpec(4_900, ASSET_A, P2WPKH, key),
        ct.OutputSpec(1_000, ASSET_B, P2WSH, key),
        ct.OutputSpec(100, ASSET_A, b""),
    ]
    outs = ct.blind_outputs(ins, specs, rng=rnd.randbytes)
    gens = [i.generator for i in ins]
    for o in outs[:2]:
        assert isinstance(o, ct.BlindedOutput)
        assert ct.surjection.surjection_proof_inputs(o.surjection_proof) == (6, 3)
        assert len(o.surjection_proof) == 2 + 1 + 32 * 4
        verify(o, gens)
    ct.verify_balance([input_value(i) for i in ins], [o.as_value() for o in outs])


def test_parallel_with_a_shared_cache() -> None:
    jobs = _jobs()
    cache = ct.VerificationCache()
    first = ct.verify_outputs_parallel(jobs, max_workers=2, cache=cache)
    assert len(cache) == 2 * len(jobs)
    hits = cache.hits
    assert ct.verify_outputs_parallel(jobs, max_workers=2, cache=cache) == first
    assert cache.hits == hits + 2 * len(jobs)
    # A job whose proof is moved to another output misses the cache and fails.
    moved = dataclasses.replace(jobs[1], range_proof=jobs[0].range_proof)
    with pytest.raises(ct.RangeProofInvalid):
        ct.verify_outputs_parallel([jobs[0], moved], max_workers=2, cache=cache)

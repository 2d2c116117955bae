"""Interoperability with code we did not write: wallycore, embit, and a real elementsd output.

Both directions: what this package makes, wallycore and embit (each with its
own build of libsecp256k1-zkp, for embit a separate shared object) verify and
unblind; what they make, this package verifies and unblinds. A transaction
assembled from this package's raw outputs is byte-identical to the one
wallycore builds, and both wallycore and embit parse it to the same txid.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
import wallycore as w
from coincurve import PrivateKey
from embit.liquid import transaction as etx
from embit.script import Script
from embit.util import ctypes_secp256k1 as es
from test_confidential_support import ASSET_A, ASSET_B, P2WPKH, TxCase, blinded_input, input_value, make_tx, seeded_rng

import confidential as ct
from confidential.txout import ser_compact_size

WALLY_FLAGS = w.WALLY_TX_FLAG_USE_WITNESS | w.WALLY_TX_FLAG_USE_ELEMENTS
VECTOR = json.loads((Path(__file__).parent / "vectors" / "confidential" / "elements_regtest_unblind.json").read_text())


def sha256d(b: bytes) -> bytes:
    return hashlib.sha256(hashlib.sha256(b).digest()).digest()


# --- The ECDH nonce ------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_nonce_is_double_sha256_of_the_shared_point_from_either_side(seed: int) -> None:
    rnd = seeded_rng(seed)
    recipient, ephemeral = PrivateKey(rnd.randbytes(32)), PrivateKey(rnd.randbytes(32))
    shared = recipient.public_key.multiply(ephemeral.secret).format(compressed=True)
    expected = sha256d(shared)
    sender_side = ct.ecdh_nonce(recipient.public_key.format(), ephemeral.secret)
    recipient_side = ct.ecdh_nonce(ephemeral.public_key.format(), recipient.secret)
    assert sender_side == recipient_side == expected
    assert bytes(w.ecdh_nonce_hash(recipient.public_key.format(), ephemeral.secret)) == expected
    # coincurve's ECDH is libsecp256k1's default: SHA256 of the compressed point; Elements hashes it again.
    assert hashlib.sha256(recipient.ecdh(ephemeral.public_key.format())).digest() == expected


# --- Ours, checked by them -------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2])
def test_wallycore_unblinds_our_outputs_and_rebuilds_our_commitments(seed: int) -> None:
    tx = make_tx(seed)
    for k in (0, 1):
        out = tx.blinded(k)
        key = tx.keys[k]
        assert key is not None
        value, asset, abf, vbf = w.asset_unblind(
            out.nonce_commitment, key, out.range_proof, out.value_commitment, out.script_pubkey, out.asset_generator
        )
        assert (value, bytes(asset), bytes(abf), bytes(vbf)) == (out.value, out.asset_id, out.abf, out.vbf)
        assert bytes(w.asset_generator_from_bytes(out.asset_id, out.abf)) == out.asset_generator
        assert bytes(w.asset_value_commitment(out.value, out.vbf, out.asset_generator)) == out.value_commitment
        # Rewinding binds the script too: wallycore refuses it under another one.
        with pytest.raises((ValueError, RuntimeError)):
            w.asset_unblind(
                out.nonce_commitment, key, out.range_proof, out.value_commitment, b"\x51", out.asset_generator
            )


def _embit_commit(c: bytes) -> bytes:
    return bytes(es.pedersen_commitment_parse(c))


def _embit_gen(g: bytes) -> bytes:
    return bytes(es.generator_parse(g))


@pytest.mark.parametrize("seed", [1, 2])
def test_embit_verifies_and_unblinds_our_outputs(seed: int) -> None:
    tx = make_tx(seed)
    in_gens = [_embit_gen(g) for g in tx.input_generators]
    for k in (0, 1):
        out = tx.blinded(k)
        mn, mx = es.rangeproof_verify(
            out.range_proof, _embit_commit(out.value_commitment), out.script_pubkey, _embit_gen(out.asset_generator)
        )
        assert (mn, mx) == (1, 2**52)
        parsed = es.surjectionproof_parse(out.surjection_proof)
        assert es.surjectionproof_verify(parsed, in_gens, _embit_gen(out.asset_generator))
        assert not es.surjectionproof_verify(parsed, in_gens[::-1], _embit_gen(out.asset_generator))
        value, asset, vbf, abf, _extra, mn2, mx2 = etx.unblind(
            out.nonce_commitment,
            tx.keys[k],
            out.range_proof,
            out.value_commitment,
            out.asset_generator,
            Script(out.script_pubkey),
        )
        assert (value, bytes(asset), bytes(vbf), bytes(abf)) == (out.value, out.asset_id, out.vbf, out.abf)
        assert (mn2, mx2) == (1, 2**52)
    # The tally, with the explicit fee committed under a zero blinding factor as Elements does.
    ins = [_embit_commit(v.commitment) for v in tx.input_values if isinstance(v, ct.Committed)]
    outs = [_embit_commit(tx.blinded(k).value_commitment) for k in (0, 1)]
    fee = es.pedersen_commit(bytes(32), 1_000, es.generator_generate(ASSET_A))
    assert es.pedersen_verify_tally(ins, [*outs, fee])
    assert not es.pedersen_verify_tally(
        ins, [*outs, es.pedersen_commit(bytes(32), 999, es.generator_generate(ASSET_A))]
    )


# --- Theirs, checked by us ---------------------------------------------------------


@pytest.mark.parametrize("seed", [21, 22])
def test_we_verify_and_unblind_wallycore_outputs(seed: int) -> None:
    rnd = seeded_rng(seed)
    ins = [blinded_input(rnd, ASSET_A, 60_000), blinded_input(rnd, ASSET_A, 50_000)]
    values, fee = [70_000, 39_000], 1_000
    keys = [PrivateKey(rnd.randbytes(32)) for _ in values]
    abfs = [rnd.randbytes(32) for _ in values]
    vbfs = [rnd.randbytes(32)]
    vbfs.append(
        bytes(
            w.asset_final_vbf(
                [i.value for i in ins] + values,
                len(ins),
                b"".join(i.abf for i in ins) + b"".join(abfs),
                b"".join(i.vbf for i in ins) + vbfs[0],
            )
        )
    )
    in_ids = b"".join(i.asset_id for i in ins)
    in_abfs = b"".join(i.abf for i in ins)
    in_gens = b"".join(i.generator for i in ins)
    outs = []
    for k, value in enumerate(values):
        gen = bytes(w.asset_generator_from_bytes(ASSET_A, abfs[k]))
        commit = bytes(w.asset_value_commitment(value, vbfs[k], gen))
        eph = rnd.randbytes(32)
        proof = bytes(
            w.asset_rangeproof(
                value, keys[k].public_key.format(), eph, ASSET_A, abfs[k], vbfs[k], commit, P2WPKH, gen, 1, 0, 52
            )
        )
        surj = bytes(w.asset_surjectionproof(ASSET_A, abfs[k], gen, rnd.randbytes(32), in_ids, in_abfs, in_gens))
        nonce = bytes(w.ec_public_key_from_private_key(eph))
        outs.append((gen, commit, nonce, proof, surj))
        info = ct.verify_output(commit, gen, P2WPKH, proof, surj, [i.generator for i in ins])
        assert (info.min_value, info.max_value) == (1, 2**52)
        got = ct.unblind_output(commit, gen, nonce, P2WPKH, proof, keys[k].secret)
        assert got == ct.Unblinded(value, ASSET_A, abfs[k], vbfs[k])
        with pytest.raises(ct.NotOurOutput):
            ct.unblind_output(commit, gen, nonce, P2WPKH, proof, keys[1 - k].secret)
    ct.verify_balance(
        [input_value(i) for i in ins], [ct.Committed(c, g) for g, c, *_ in outs] + [ct.Explicit(fee, ASSET_A)]
    )
    with pytest.raises(ct.Unbalanced):
        ct.verify_balance([input_value(i) for i in ins], [ct.Committed(c, g) for g, c, *_ in outs])


@pytest.mark.parametrize("seed", [31, 32])
def test_we_verify_and_unblind_embit_outputs(seed: int) -> None:
    rnd = seeded_rng(seed)
    ins = [blinded_input(rnd, ASSET_A, 60_000), blinded_input(rnd, ASSET_B, 5)]
    # Output 0 pays ASSET_B, output 1 ASSET_A, then the fee in ASSET_A.
    assets, values, fee = [ASSET_B, ASSET_A], [5, 59_000], 1_000
    keys = [PrivateKey(rnd.randbytes(32)) for _ in values]
    abfs = [rnd.randbytes(32) for _ in values]
    vbfs = [rnd.randbytes(32) for _ in values]
    # embit overwrites the last vbf argument in place: give it a fresh object of its own.
    placeholder = os.urandom(32)
    final = es.pedersen_blind_generator_blind_sum(
        [i.value for i in ins] + values, [i.abf for i in ins] + abfs, [i.vbf for i in ins] + vbfs[:1] + [placeholder], 2
    )
    vbfs[1] = bytes(final)
    in_tags = [i.asset_id for i in ins]
    in_gens_e = [es.generator_generate_blinded(i.asset_id, i.abf) for i in ins]
    outs = []
    for k, (asset, value) in enumerate(zip(assets, values)):
        gen_e = es.generator_generate_blinded(asset, abfs[k])
        commit_e = es.pedersen_commit(vbfs[k], value, gen_e)
        eph = PrivateKey(rnd.randbytes(32))
        shared = es.ec_pubkey_parse(keys[k].public_key.format())
        es.ec_pubkey_tweak_mul(shared, eph.secret)
        nonce = sha256d(es.ec_pubkey_serialize(shared))
        proof = es.rangeproof_sign(nonce, value, commit_e, vbfs[k], asset + abfs[k], P2WPKH, gen_e)
        sp, idx = es.surjectionproof_initialize(in_tags, asset, rnd.randbytes(32))
        sp = es.surjectionproof_generate(sp, idx, in_gens_e, gen_e, ins[idx].abf, abfs[k])
        surj = bytes(es.surjectionproof_serialize(sp))
        gen = bytes(es.generator_serialize(gen_e))
        commit = bytes(es.pedersen_commitment_serialize(commit_e))
        outs.append((gen, commit))
        info = ct.verify_output(commit, gen, P2WPKH, bytes(proof), surj, [i.generator for i in ins])
        assert info.min_value == 1
        got = ct.unblind_output(commit, gen, eph.public_key.format(), P2WPKH, bytes(proof), keys[k].secret)
        assert got == ct.Unblinded(value, asset, abfs[k], vbfs[k])
    ct.verify_balance(
        [input_value(i) for i in ins], [ct.Committed(c, g) for g, c in outs] + [ct.Explicit(fee, ASSET_A)]
    )
    assert ct.recompute_balance(
        [input_value(i) for i in ins], [ct.Committed(c, g) for g, c in outs] + [ct.Explicit(fee, ASSET_A)]
    )


def test_elementsd_output_verifies_and_unblinds() -> None:
    """A confidential output made by elementsd itself (regtest), with its blinding key."""
    raw = bytes.fromhex(VECTOR["tx_hex"])
    tx = w.tx_from_bytes(raw, WALLY_FLAGS)
    assert bytes(w.tx_get_txid(tx))[::-1].hex() == VECTOR["txid"]
    i = VECTOR["confidential_output_index"]
    asset, value = bytes(w.tx_get_output_asset(tx, i)), bytes(w.tx_get_output_value(tx, i))
    nonce, script = bytes(w.tx_get_output_nonce(tx, i)), bytes(w.tx_get_output_script(tx, i))
    proof, surj = bytes(w.tx_get_output_rangeproof(tx, i)), bytes(w.tx_get_output_surjectionproof(tx, i))
    exp = VECTOR["expected"]
    info = ct.verify_range_proof(proof, value, asset, script)
    assert info == ct.RangeInfo(exp["min_value"], exp["max_value"], exp["exponent"], exp["mantissa"])
    got = ct.unblind_output(value, asset, nonce, script, proof, bytes.fromhex(VECTOR["blinding_key"]))
    assert got == ct.Unblinded(
        exp["value"], bytes.fromhex(exp["asset_id"]), bytes.fromhex(exp["abf"]), bytes.fromhex(exp["vbf"])
    )
    assert ct.surjection.surjection_proof_inputs(surj) == (1, 1)
    with pytest.raises(ct.RangeProofInvalid):
        ct.verify_range_proof(proof, value, asset, script[:-1])
    # Our raw-output encoding reproduces elementsd's bytes for all three outputs
    # (the confidential one, an explicit peg-out and the explicit fee).
    outs = [_wally_txout(tx, k) for k in range(w.tx_get_num_outputs(tx))]
    assert [o.is_confidential for o in outs] == [True, False, False]
    for out in outs:
        assert out.serialize() in raw and out.serialize_witness() in raw
        assert ct.TxOut.parse(out.serialize(), out.serialize_witness()) == out
    assert outs[2].to_value() == ct.Explicit(7_300, got.asset_id)


def _wally_txout(tx: object, k: int) -> ct.TxOut:
    """Output ``k`` of a wallycore transaction, as this package's TxOut."""
    nonce = bytes(w.tx_get_output_nonce(tx, k))
    return ct.TxOut(
        bytes(w.tx_get_output_asset(tx, k)),
        bytes(w.tx_get_output_value(tx, k)),
        b"" if nonce == bytes(33) else nonce,  # wallycore reports a null nonce as 33 zero bytes
        bytes(w.tx_get_output_script(tx, k)),
        bytes(w.tx_get_output_surjectionproof(tx, k)),
        bytes(w.tx_get_output_rangeproof(tx, k)),
    )


# --- A whole transaction ------------------------------------------------------------


def _serialize_tx(prevouts: list[tuple[bytes, int]], outs: list[ct.TxOut], *, witness: bool) -> bytes:
    """Elements' transaction serialization, minimal: no issuance, empty scriptSigs and input witnesses."""
    body = (2).to_bytes(4, "little") + (b"\x01" if witness else b"\x00")
    body += ser_compact_size(len(prevouts))
    for txid, n in prevouts:
        body += txid + n.to_bytes(4, "little") + b"\x00" + b"\xff\xff\xff\xff"
    body += ser_compact_size(len(outs)) + b"".join(o.serialize() for o in outs)
    body += (0).to_bytes(4, "little")
    if witness:
        body += b"\x00\x00\x00\x00" * len(prevouts)  # two empty issuance proofs, empty script and peg-in stacks
        body += b"".join(o.serialize_witness() for o in outs)
    return body


def _txouts(tx: TxCase) -> list[ct.TxOut]:
    return [o.to_txout() for o in tx.outputs]


@pytest.mark.parametrize("seed", [1, 3])
def test_transaction_round_trips_through_wallycore_and_embit_with_the_same_txid(seed: int) -> None:
    case = make_tx(seed)
    prevouts = [(seeded_rng(seed + 100).randbytes(32), n) for n in range(len(case.inputs))]
    outs = _txouts(case)

    wtx = w.tx_init_alloc(2, 0, len(prevouts), len(outs))
    for txid, n in prevouts:
        w.tx_add_elements_raw_input(wtx, txid, n, 0xFFFFFFFF, None, None, None, None, None, None, None, None, None, 0)
    for o in outs:
        w.tx_add_elements_raw_output(
            wtx,
            o.script_pubkey or None,
            o.asset,
            o.value,
            o.nonce or None,
            o.surjection_proof or None,
            o.range_proof or None,
            0,
        )
    wally_bytes = bytes(w.tx_to_bytes(wtx, WALLY_FLAGS))
    ours = _serialize_tx(prevouts, outs, witness=True)
    assert ours == wally_bytes
    our_txid = sha256d(_serialize_tx(prevouts, outs, witness=False))
    assert bytes(w.tx_get_txid(wtx)) == our_txid

    parsed = w.tx_from_bytes(ours, WALLY_FLAGS)
    assert bytes(w.tx_get_txid(parsed)) == our_txid
    assert bytes(w.tx_to_bytes(parsed, WALLY_FLAGS)) == ours
    etx_parsed = etx.LTransaction.parse(ours)
    assert etx_parsed.txid() == our_txid[::-1]

    # Read the outputs back from wallycore and verify them with this package.
    gens = case.input_generators
    readback = []
    for k in range(w.tx_get_num_outputs(parsed)):
        o = _wally_txout(parsed, k)
        assert o == outs[k]
        readback.append(o)
        if o.is_confidential:
            ct.verify_output(o.value, o.asset, o.script_pubkey, o.range_proof, o.surjection_proof, gens)
            # embit's own parser hands back the same fields, and unblinds them.
            e_out = etx_parsed.vout[k]
            value, asset, *_ = e_out.unblind(case.keys[k])
            assert (value, bytes(asset)) == (case.blinded(k).value, ASSET_A)
    ct.verify_balance(case.input_values, [o.to_value() for o in readback])


def test_asset_field_generator_matches_what_surjection_proofs_use() -> None:
    peg = ct.InputOpening.explicit(ASSET_A, 10)
    assert ct.asset_field_generator(b"\x01" + ASSET_A) == peg.generator
    g = ct.asset_generator(ASSET_A, b"\x07" * 32)
    assert ct.asset_field_generator(g) == g
    with pytest.raises(ct.EncodingError):
        ct.asset_field_generator(b"")
    with pytest.raises(ct.WrongPrefix):
        ct.asset_field_generator(b"\x08" + g[1:])

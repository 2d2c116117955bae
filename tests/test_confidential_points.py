"""Point formats: 0x08/0x09 and 0x0a/0x0b to and from coincurve, checked against independent anchors.

The low bit of a commitment's prefix says whether y is a square, not whether
it is odd. The anchors below would catch a conversion that swapped the two:
a commitment to 0 with blinding factor 1 must be G itself, and generator
blinding (H + abf*G, computed by libsecp256k1-zkp) must match coincurve's
point addition.
"""

from __future__ import annotations

import hashlib
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from coincurve import PrivateKey, PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st
from test_confidential_support import ASSET_A, ASSET_B, make_tx

import confidential as ct
from confidential import _lib
from confidential.points import CURVE_ORDER, FIELD_P, add_points, commitment_struct, generator_struct, negate

G = PrivateKey((1).to_bytes(32, "big")).public_key
scalars = st.integers(min_value=1, max_value=CURVE_ORDER - 1).map(lambda k: k.to_bytes(32, "big"))
values = st.integers(min_value=0, max_value=2**64 - 1)


def test_commitment_to_zero_with_blind_one_is_g() -> None:
    gen = ct.asset_generator(ASSET_A, b"\x05" * 32)
    c = ct.value_commitment(0, (1).to_bytes(32, "big"), gen)
    assert ct.commitment_to_pubkey(c) == G
    c2 = ct.value_commitment(0, (2).to_bytes(32, "big"), gen)
    assert ct.commitment_to_pubkey(c2) == G.multiply((2).to_bytes(32, "big"))


@settings(max_examples=60, deadline=None)
@given(value=values, vbf=scalars, abf=scalars)
def test_commitment_is_value_times_generator_plus_vbf_times_g(value: int, vbf: bytes, abf: bytes) -> None:
    gen = ct.asset_generator(ASSET_A, abf)
    c = ct.value_commitment(value, vbf, gen)
    h = ct.generator_to_pubkey(gen)
    blind = PrivateKey(vbf).public_key
    expected = blind if value == 0 else PublicKey.combine_keys([h.multiply(value.to_bytes(32, "big")), blind])
    assert ct.commitment_to_pubkey(c) == expected
    assert ct.pubkey_to_commitment(expected) == c


@settings(max_examples=60, deadline=None)
@given(abf=scalars, asset=st.binary(min_size=32, max_size=32))
def test_blinded_generator_is_h_plus_abf_times_g(abf: bytes, asset: bytes) -> None:
    h = ct.generator_to_pubkey(ct.explicit_generator(asset))
    blinded = ct.asset_generator(asset, abf)
    assert ct.generator_to_pubkey(blinded) == PublicKey.combine_keys([h, PrivateKey(abf).public_key])
    assert ct.pubkey_to_generator(ct.generator_to_pubkey(blinded)) == blinded


def test_both_prefixes_occur_and_flip_with_negation() -> None:
    prefixes = set()
    for i in range(1, 40):
        p = G.multiply(i.to_bytes(32, "big"))
        c = ct.pubkey_to_commitment(p)
        prefixes.add(c[0])
        # -P has the same x; exactly one of y and -y is a square, so the prefix flips.
        assert ct.pubkey_to_commitment(negate(p)) == bytes((c[0] ^ 1,)) + c[1:]
        assert ct.commitment_to_pubkey(c) == p
    assert prefixes == {0x08, 0x09}


def test_conversion_agrees_with_library_on_validity() -> None:
    # Random x: about half are on the curve. The library's parse and ours must agree on each.
    rnd = random.Random(5)
    agree = {True: 0, False: 0}
    for _ in range(400):
        x = rnd.randbytes(32)
        for prefix in (0x08, 0x09):
            data = bytes((prefix,)) + x
            try:
                commitment_struct(data)
                lib_ok = True
            except ct.BadPointEncoding:
                lib_ok = False
            try:
                ct.commitment_to_pubkey(data)
                ours_ok = True
            except ct.BadPointEncoding:
                ours_ok = False
            assert lib_ok == ours_ok
            agree[lib_ok] += 1
            gdata = bytes((prefix + 2,)) + x
            try:
                generator_struct(gdata)
                glib = True
            except ct.BadPointEncoding:
                glib = False
            assert glib == lib_ok
    assert agree[True] > 200 and agree[False] > 200
    for too_big in (FIELD_P, 2**256 - 1):  # not field elements
        with pytest.raises(ct.BadPointEncoding):
            ct.commitment_to_pubkey(b"\x08" + too_big.to_bytes(32, "big"))
        with pytest.raises(ct.BadPointEncoding):
            commitment_struct(b"\x08" + too_big.to_bytes(32, "big"))


def test_sum_points_handles_infinity() -> None:
    p = G.multiply((7).to_bytes(32, "big"))
    assert add_points(p, negate(p)) is None
    assert add_points(None, p) == p and add_points(p, None) == p
    assert ct.sum_points([p, negate(p), G]) == G
    assert ct.sum_points([]) is None


def test_auditor_recomputes_transaction_sums_with_coincurve() -> None:
    tx = make_tx(2)
    ins, outs = tx.input_values, tx.output_values
    assert ct.sum_commitments(ins) == ct.sum_commitments(outs)
    assert ct.recompute_balance(ins, outs)
    # One satoshi more in the fee moves the output sum by exactly H.
    fee = outs[2]
    assert isinstance(fee, ct.Explicit)
    more = [*outs[:2], ct.Explicit(fee.amount + 1, ASSET_A)]
    h = ct.generator_to_pubkey(ct.explicit_generator(ASSET_A))
    total = ct.sum_commitments(outs)
    assert total is not None
    assert ct.sum_commitments(more) == PublicKey.combine_keys([total, h])
    assert not ct.recompute_balance(ins, more)
    assert not ct.recompute_balance(ins, [*outs[:2], ct.Explicit(fee.amount, ASSET_B)])


def test_explicit_generator_is_libsecp_generator_generate() -> None:
    # H_asset from libsecp256k1-zkp's generator_generate, via the bound call, serialized by wallycore.
    import ctypes

    buf = ctypes.create_string_buffer(_lib.GENERATOR_SIZE)
    assert _lib.generator_generate(_lib.CTX, buf, ASSET_A) == 1
    assert bytes(buf) == bytes(generator_struct(ct.explicit_generator(ASSET_A)))


def test_generators_of_different_assets_are_unrelated() -> None:
    ga, gb = ct.explicit_generator(ASSET_A), ct.explicit_generator(ASSET_B)
    assert ga != gb and ct.generator_to_pubkey(ga) != ct.generator_to_pubkey(gb)
    assert hashlib.sha256(ga).digest() != hashlib.sha256(gb).digest()


# --- The binding itself ----------------------------------------------------------


def test_binding_loads_wallycores_own_library_and_context() -> None:
    import wallycore

    assert wallycore._wallycore.__file__ == ct.LIBRARY_PATH
    assert _lib.CTX != 0
    for fn in (_lib.rangeproof_verify, _lib.surjectionproof_verify, _lib.pedersen_verify_tally):
        assert fn.argtypes is not None and fn.restype is not None


def _import_with_fake_wallycore(body: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    fake = tmp_path / "fake"
    (fake / "wallycore").mkdir(parents=True)
    (fake / "wallycore" / "__init__.py").write_text(textwrap.dedent(body))
    code = textwrap.dedent(
        """
        try:
            import confidential
        except Exception as exc:
            names = [c.__name__ for c in type(exc).__mro__]
            print(type(exc).__name__, "ConfidentialError" in names, isinstance(exc, ImportError), exc)
        else:
            print("imported")
        """
    )
    root = Path(__file__).resolve().parent.parent
    return subprocess.run(
        [sys.executable, "-c", code],
        env={"PYTHONPATH": f"{fake}:{root}", "PATH": ""},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_import_fails_closed_without_an_elements_build(tmp_path: Path) -> None:
    r = _import_with_fake_wallycore("def is_elements_build():\n    return False\n", tmp_path)
    assert r.stdout.startswith("LibraryUnavailable True True"), r.stdout + r.stderr


def test_import_fails_closed_when_a_symbol_is_missing(tmp_path: Path) -> None:
    # A "wallycore" whose shared object is coincurve's plain libsecp256k1: no rangeproof module.
    import coincurve._libsecp256k1 as plain

    body = f"""
        class _Ext:
            __file__ = {plain.__file__!r}
        _wallycore = _Ext()
        def is_elements_build():
            return True
    """
    r = _import_with_fake_wallycore(body, tmp_path)
    assert r.stdout.startswith("LibraryUnavailable True True"), r.stdout + r.stderr
    assert "does not export" in r.stdout


def test_import_fails_closed_without_wallycore(tmp_path: Path) -> None:
    r = _import_with_fake_wallycore("raise ImportError('no wallycore here')\n", tmp_path)
    assert r.stdout.startswith("LibraryUnavailable True True"), r.stdout + r.stderr

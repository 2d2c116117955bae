"""regtest.script and the encodings under it: BIP143's published vectors, the
legacy and segwit signature hashes cross-checked against python-bitcoinlib on
random transactions, interpreter rules one by one (each with Core's error),
Liquid's fedpegscript through both branches, addresses and descriptors."""

from __future__ import annotations

import random

import pytest
from bitcoin import base58 as bl_base58
from bitcoin import segwit_addr
from bitcoin.core import CMutableTransaction, COutPoint, CTxIn, CTxOut
from bitcoin.core.script import (
    SIGVERSION_BASE,
    SIGVERSION_WITNESS_V0,
    CScript,
    SignatureHash,
)
from coincurve import PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from regtest.address import (
    AddressError,
    address_to_script,
    b58check_encode,
    b58encode,
    decode_segwit,
    encode_segwit,
    script_to_address,
)
from regtest.params import REGTEST
from regtest.primitives import OutPoint, Transaction, TxIn, TxOut, hash160, sha256
from regtest.script import (
    CONSENSUS_FLAGS,
    OP_CHECKMULTISIG,
    OP_CHECKSEQUENCEVERIFY,
    OP_DEPTH,
    OP_DROP,
    OP_ELSE,
    OP_ENDIF,
    OP_EQUAL,
    OP_IF,
    STANDARD_FLAGS,
    Flag,
    ScriptErr,
    ScriptError,
    SigVersion,
    TxChecker,
    TxoutType,
    descriptor_checksum,
    eval_script,
    find_and_delete,
    legacy_sighash,
    num_decode,
    num_encode,
    push_data,
    push_int,
    script_to_asm,
    segwit_v0_sighash,
    solve,
    verify_script,
)

# --- BIP143's examples (bitcoin/bips, bip-0143.mediawiki) ------------------------------------------

NATIVE_P2WPKH_UNSIGNED = (
    "0100000002fff7f7881a8099afa6940d42d1e7f6362bec38171ea3edf433541db4e4ad969f0000000000eeffffff"
    "ef51e1b804cc89d182d279655c3aa89e815b1b309fe287d9b2b55d57b90ec68a0100000000ffffffff02202cb206"
    "000000001976a9148280b37df378db99f66f85c95a783a76ac7a6d5988ac9093510d000000001976a9143bde42db"
    "ee7e4dbe6a21b2d50ce2f0167faa815988ac11000000"
)
NATIVE_P2WPKH_SIGNED = (
    "01000000000102fff7f7881a8099afa6940d42d1e7f6362bec38171ea3edf433541db4e4ad969f000000004948304502"
    "21008b9d1dc26ba6a9cb62127b02742fa9d754cd3bebf337f7a55d114c8e5cdd30be022040529b194ba3f9281a99f2b1"
    "c0a19c0489bc22ede944ccf4ecbab4cc618ef3ed01eeffffffef51e1b804cc89d182d279655c3aa89e815b1b309fe287"
    "d9b2b55d57b90ec68a0100000000ffffffff02202cb206000000001976a9148280b37df378db99f66f85c95a783a76ac"
    "7a6d5988ac9093510d000000001976a9143bde42dbee7e4dbe6a21b2d50ce2f0167faa815988ac000247304402203609"
    "e17b84f6a7d30c80bfa610b5b4542f32a8a0d5447a12fb1366d7f01cc44a0220573a954c4518331561406f90300e8f33"
    "58f51928d43c212a8caed02de67eebee0121025476c2e83188368da1ff3e292e7acafcdb3566bb0ad253f62fc70f07ae"
    "ee635711000000"
)
NATIVE_P2WPKH_PREVOUTS = [
    ("2103c9f4836b9a4f77fc0d81f7bcb01b7f1b35916864b9476c241ce9fc198bd25432ac", 625_000_000),
    ("00141d0f172a0ecb48aee1be1f2687d2963ae33f71a1", 600_000_000),
]

P2SH_P2WPKH_SIGNED = (
    "01000000000101db6b1b20aa0fd7b23880be2ecbd4a98130974cf4748fb66092ac4d3ceb1a5477010000001716001479"
    "091972186c449eb1ded22b78e40d009bdf0089feffffff02b8b4eb0b000000001976a914a457b684d7f0d539a46a45bb"
    "c043f35b59d0d96388ac0008af2f000000001976a914fd270b1ee6abcaea97fea7ad0402e8bd8ad6d77c88ac02473044"
    "022047ac8e878352d3ebbde1c94ce3a10d057c24175747116f8288e5d794d12d482f0220217f36a485cae903c713331d"
    "877c1f64677e3622ad4010726870540656fe9dcb012103ad1d8e89212f0b92c74d23bb710c00662ad1470198ac48c43f"
    "7d6f93a2a2687392040000"
)
P2SH_P2WPKH_PREVOUT = ("a9144733f37cf4db86fbc2efed2500b4f4e49f31202387", 1_000_000_000)

# The P2WSH example with OP_CODESEPARATOR and an out-of-range SIGHASH_SINGLE.
CODESEP_UNSIGNED = (
    "0100000002fe3dc9208094f3ffd12645477b3dc56f60ec4fa8e6f5d67c565d1c6b9216b36e0000000000ffffffff"
    "0815cf020f013ed6cf91d29f4202e8a58726b1ac6c79da47c23d1bee0a6925f80000000000ffffffff0100f2052a"
    "010000001976a914a30741f8145e5acadf23f751864167f32e0963f788ac00000000"
)
CODESEP_WITNESS_SCRIPT = (
    "21026dccc749adc2a9d0d89497ac511f760f45c47dc5ed9cf352a58ac706453880aeadab210255a9626aebf5e29c0e6538"
    "428ba0d1dcf6ca98ffdf086aa8ced5e0d0215ea465ac"
)

SIX_OF_SIX_SIGNED = (
    "0100000000010136641869ca081e70f394c6948e8af409e18b619df2ed74aa106c1ca29787b96e0100000023220020a1"
    "6b5755f7f6f96dbd65f5f0d6ab9418b89af4b1f14a1bb8a09062c35f0dcb54ffffffff0200e9a435000000001976a914"
    "389ffce9cd9ae88dcc0631e88a821ffdbe9bfe2688acc0832f05000000001976a9147480a33f950689af511e6e84c138"
    "dbbd3c3ee41588ac080047304402206ac44d672dac41f9b00e28f4df20c52eeb087207e8d758d76d92c6fab3b73e2b02"
    "20367750dbbe19290069cba53d096f44530e4f98acaa594810388cf7409a1870ce01473044022068c7946a43232757cb"
    "df9176f009a928e1cd9a1a8c212f15c1e11ac9f2925d9002205b75f937ff2f9f3c1246e547e54f62e027f64eefa26955"
    "78cc6432cdabce271502473044022059ebf56d98010a932cf8ecfec54c48e6139ed6adb0728c09cbe1e4fa0915302e02"
    "2007cd986c8fa870ff5d2b3a89139c9fe7e499259875357e20fcbb15571c76795403483045022100fbefd94bd0a488d5"
    "0b79102b5dad4ab6ced30c4069f1eaa69a4b5a763414067e02203156c6a5c9cf88f91265f5a942e96213afae16d83321"
    "c8b31bb342142a14d16381483045022100a5263ea0553ba89221984bd7f0b13613db16e7a70c549a86de0cc0444141a4"
    "07022005c360ef0ae5a5d4f9f2f87a56c1546cc8268cab08c73501d6b3be2e1e1a8a08824730440220525406a1482936"
    "d5a21888260dc165497a90a15669636d8edca6b9fe490d309c022032af0c646a34a44d1f4576bf6a4a74b67940f8faa8"
    "4c7df9abe12a01a11e2b4783cf56210307b8ae49ac90a048e9b53357a2354b3334e9c8bee813ecb98e99a7e07e8c3ba3"
    "2103b28f0c28bfab54554ae8c658ac5c3e0ce6e79ad336331f78c428dd43eea8449b21034b8113d703413d57761b8b97"
    "81957b8c0ac1dfe69f492580ca4195f50376ba4a21033400f6afecb833092a9a21cfdf1ed1376e58c5d1f47de7468312"
    "3987e967a8f42103a6d48b1131e94ba04d9737d61acdaa1322008af9602b3b14862c07a1789aac162102d8b661b0b330"
    "2ee2f162b09e07a55ad5dfbe673a9f01d9f0c19617681024306b56ae00000000"
)
SIX_OF_SIX_PREVOUT = ("a9149993a429037b5d912407a71c252019287b8d27a587", 987_654_321)

NO_FIND_AND_DELETE_SIGNED = (
    "0100000000010169c12106097dc2e0526493ef67f21269fe888ef05c7a3a5dacab38e1ac8387f14c1d000000ffffffff"
    "01010000000000000000034830450220487fb382c4974de3f7d834c1b617fe15860828c7f96454490edd6d891556dcc9"
    "022100baf95feb48f845d5bfc9882eb6aeefa1bc3790e39f59eaa46ff7f15ae626c53e012102a9781d66b61fb5a7ef00"
    "ac5ad5bc6ffc78be7b44a566e3c87870e1079368df4c4aad4830450220487fb382c4974de3f7d834c1b617fe15860828"
    "c7f96454490edd6d891556dcc9022100baf95feb48f845d5bfc9882eb6aeefa1bc3790e39f59eaa46ff7f15ae626c53e"
    "0100000000"
)
NO_FIND_AND_DELETE_PREVOUT = ("00209e1be07558ea5cc8e02ed1d80c0911048afad949affa36d5c3951e3159dbea19", 200_000)


def tx(hexstring: str) -> Transaction:
    return Transaction.from_bytes(bytes.fromhex(hexstring))


def test_bip143_native_p2wpkh() -> None:
    unsigned = tx(NATIVE_P2WPKH_UNSIGNED)
    code = bytes.fromhex("76a9141d0f172a0ecb48aee1be1f2687d2963ae33f71a188ac")
    digest = segwit_v0_sighash(unsigned, 1, code, 600_000_000, 1)
    assert digest.hex() == "c37af31116d1b27caf68aae9e3ac82f1477929014d5b917657d0eb49478cb670"
    signed = tx(NATIVE_P2WPKH_SIGNED)
    assert signed.serialize().hex() == NATIVE_P2WPKH_SIGNED and signed.vout == unsigned.vout
    for i, (spk, value) in enumerate(NATIVE_P2WPKH_PREVOUTS):
        verify_script(
            signed.vin[i].script_sig,
            bytes.fromhex(spk),
            signed.vin[i].witness,
            STANDARD_FLAGS,
            TxChecker(signed, i, value),
        )
    # The amount is signed: one satoshi off and the P2WPKH signature fails.
    with pytest.raises(ScriptError) as info:
        verify_script(b"", bytes.fromhex(NATIVE_P2WPKH_PREVOUTS[1][0]), signed.vin[1].witness, CONSENSUS_FLAGS,
                      TxChecker(signed, 1, 600_000_001))  # fmt: skip
    assert info.value.err is ScriptErr.EVAL_FALSE


def test_bip143_p2sh_p2wpkh() -> None:
    signed = tx(P2SH_P2WPKH_SIGNED)
    code = bytes.fromhex("76a91479091972186c449eb1ded22b78e40d009bdf008988ac")
    assert (
        segwit_v0_sighash(signed, 0, code, P2SH_P2WPKH_PREVOUT[1], 1).hex()
        == "64f3b0f4dd2bb3aa1ce8566d220cc74dda9df97d8490cc81d89d735c92e59fb6"
    )
    spk, value = P2SH_P2WPKH_PREVOUT
    verify_script(
        signed.vin[0].script_sig, bytes.fromhex(spk), signed.vin[0].witness, STANDARD_FLAGS, TxChecker(signed, 0, value)
    )


def test_bip143_codeseparator_and_single_out_of_range() -> None:
    unsigned = tx(CODESEP_UNSIGNED)
    script = bytes.fromhex(CODESEP_WITNESS_SCRIPT)
    value = 4_900_000_000
    # Signed over the whole script, then over what follows the executed OP_CODESEPARATOR.
    assert (
        segwit_v0_sighash(unsigned, 1, script, value, 3).hex()
        == "82dde6e4f1e94d02c2b7ad03d2115d691f48d064e9d52f58194a6637e4194391"
    )
    after = script[script.index(0xAB) + 1 :]
    assert (
        segwit_v0_sighash(unsigned, 1, after, value, 3).hex()
        == "fef7bd749cce710c5c052bd796df1af0d935e59cea63736268bcbe2d2134fc47"
    )


def test_bip143_six_of_six_every_hash_type() -> None:
    signed = tx(SIX_OF_SIX_SIGNED)
    spk, value = SIX_OF_SIX_PREVOUT
    witness_script = signed.vin[0].witness[-1]
    expected = {
        0x01: "185c0be5263dce5b4bb50a047973c1b6272bfbd0103a89444597dc40b248ee7c",
        0x02: "e9733bc60ea13c95c6527066bb975a2ff29a925e80aa14c213f686cbae5d2f36",
        0x03: "1e1f1c303dc025bd664acb72e583e933fae4cff9148bf78c157d1e8f78530aea",
        0x81: "2a67f03e63a6a422125878b40b82da593be8d4efaafe88ee528af6e5a9955c6e",
        0x82: "781ba15f3779d5542ce8ecb5c18716733a5ee42a6f51488ec96154934e2c890a",
        0x83: "511e8e52ed574121fc1b654970395502128263f62662e076dc6baf05c2e6a99b",
    }
    for hash_type, digest in expected.items():
        assert segwit_v0_sighash(signed, 0, witness_script, value, hash_type).hex() == digest
    verify_script(
        signed.vin[0].script_sig,
        bytes.fromhex(spk),
        signed.vin[0].witness,
        CONSENSUS_FLAGS,
        TxChecker(signed, 0, value),
    )


def test_bip143_no_find_and_delete_in_segwit() -> None:
    signed = tx(NO_FIND_AND_DELETE_SIGNED)
    spk, value = NO_FIND_AND_DELETE_PREVOUT
    verify_script(b"", bytes.fromhex(spk), signed.vin[0].witness, CONSENSUS_FLAGS, TxChecker(signed, 0, value))


# --- signature hashes against python-bitcoinlib -------------------------------------------------------


def _random_tx(rng: random.Random) -> Transaction:
    vin = tuple(
        TxIn(OutPoint(rng.randbytes(32), rng.randrange(4)), rng.randbytes(rng.randrange(3)), rng.getrandbits(32))
        for _ in range(rng.randrange(1, 4))
    )
    vout = tuple(TxOut(rng.randrange(10**9), rng.randbytes(rng.randrange(30))) for _ in range(rng.randrange(1, 4)))
    # python-bitcoinlib packs nLockTime as signed in BIP143: keep it below 2**31.
    return Transaction(rng.choice([1, 2]), vin, vout, rng.getrandbits(31))


def _to_bitcoinlib(t: Transaction) -> CMutableTransaction:
    return CMutableTransaction(
        [CTxIn(COutPoint(i.prevout.txid, i.prevout.n), CScript(i.script_sig), i.sequence) for i in t.vin],
        [CTxOut(o.value, CScript(o.script_pubkey)) for o in t.vout],
        nLockTime=t.locktime,
        nVersion=t.version,
    )


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([1, 2, 3, 0x81, 0x82, 0x83]))
def test_sighashes_match_python_bitcoinlib(seed: int, hash_type: int) -> None:
    rng = random.Random(seed)
    t = _random_tx(rng)
    theirs = _to_bitcoinlib(t)
    n_in = rng.randrange(len(t.vin))
    # A script code with an OP_CODESEPARATOR, which the legacy hash drops.
    code = bytes.fromhex("76a914") + rng.randbytes(20) + bytes.fromhex("88abac")
    ours = legacy_sighash(t, n_in, code, hash_type)
    # python-bitcoinlib raises where Core signs the number one (tested separately below).
    if not (hash_type & 0x1F == 3 and n_in >= len(t.vout)):
        assert ours == bytes(SignatureHash(CScript(code), theirs, n_in, hash_type, sigversion=SIGVERSION_BASE))
    amount = rng.randrange(10**10)
    ours_v0 = segwit_v0_sighash(t, n_in, code, amount, hash_type)
    theirs_v0 = SignatureHash(CScript(code), theirs, n_in, hash_type, amount=amount, sigversion=SIGVERSION_WITNESS_V0)
    assert ours_v0 == bytes(theirs_v0)


def test_legacy_sighash_single_without_output_signs_one() -> None:
    t = Transaction(1, (TxIn(OutPoint(b"\x01" * 32, 0)), TxIn(OutPoint(b"\x02" * 32, 0))), (TxOut(1, b""),))
    assert legacy_sighash(t, 1, b"\x51", 3) == b"\x01" + b"\x00" * 31


# --- numbers, pushes, FindAndDelete ------------------------------------------------------------------------


@given(st.integers(-(2**39), 2**39))
def test_script_numbers_round_trip_and_match_bitcoinlib(n: int) -> None:
    enc = num_encode(n)
    assert num_decode(enc, True, 6) == n
    assert push_int(n) == bytes(CScript([n]))


def test_non_minimal_numbers_and_pushes() -> None:
    with pytest.raises(ScriptError) as info:
        eval_script([b"\x01\x00"], bytes([0x8B]), Flag.MINIMALDATA, None, SigVersion.BASE)  # OP_1ADD
    assert info.value.err is ScriptErr.UNKNOWN_ERROR
    eval_script([b"\x01\x00"], bytes([0x8B]), 0, None, SigVersion.BASE)  # fine without MINIMALDATA
    with pytest.raises(ScriptError) as info:
        eval_script([], bytes([0x4C, 0x01, 0x05]), Flag.MINIMALDATA, None, SigVersion.BASE)
    assert info.value.err is ScriptErr.MINIMALDATA


def test_find_and_delete() -> None:
    sig = bytes.fromhex("3045") + b"\x00" * 5
    pushed = push_data(sig)
    script = pushed + b"\xac" + pushed
    assert find_and_delete(script, pushed) == (b"\xac", 2)
    # Only at opcode boundaries: inside another push it stays.
    inner = push_data(b"\x00" + pushed)
    assert find_and_delete(inner, pushed) == (inner, 0)


# --- the interpreter, rule by rule ---------------------------------------------------------------------------


def run(stack: list[bytes], script: bytes, flags: int, sigversion: SigVersion = SigVersion.WITNESS_V0) -> list[bytes]:
    eval_script(stack, script, flags, None, sigversion)
    return stack


def err_of(stack: list[bytes], script: bytes, flags: int, sigversion: SigVersion = SigVersion.WITNESS_V0) -> ScriptErr:
    with pytest.raises(ScriptError) as info:
        eval_script(stack, script, flags, None, sigversion)
    return info.value.err


def test_minimalif_is_policy_for_witness_v0_only() -> None:
    script = bytes([OP_IF, 0x51, OP_ELSE, 0x00, OP_ENDIF])
    assert run([b"\x02"], script, CONSENSUS_FLAGS) == [b"\x01"]
    assert err_of([b"\x02"], script, STANDARD_FLAGS) is ScriptErr.MINIMALIF
    assert run([b"\x02"], script, STANDARD_FLAGS, SigVersion.BASE) == [b"\x01"]
    assert run([b""], script, STANDARD_FLAGS) == [b""]


def test_conditionals_disabled_and_reserved_opcodes() -> None:
    assert err_of([], bytes([OP_ENDIF]), 0) is ScriptErr.UNBALANCED_CONDITIONAL
    assert err_of([b"\x01"], bytes([OP_IF]), 0) is ScriptErr.UNBALANCED_CONDITIONAL
    # Disabled opcodes fail even where they are not executed; reserved ones only when executed.
    assert err_of([b""], bytes([OP_IF, 0x7E, OP_ENDIF]), 0) is ScriptErr.DISABLED_OPCODE
    assert run([b""], bytes([OP_IF, 0x50, OP_ENDIF]), 0) == []
    assert err_of([b"\x01"], bytes([OP_IF, 0x50, OP_ENDIF]), 0) is ScriptErr.BAD_OPCODE
    assert err_of([b""], bytes([OP_IF, 0x65, OP_ENDIF]), 0) is ScriptErr.BAD_OPCODE  # OP_VERIF
    assert err_of([], bytes([0x6A]), 0) is ScriptErr.OP_RETURN
    assert err_of([], bytes([0x76]), 0) is ScriptErr.INVALID_STACK_OPERATION


def test_limits() -> None:
    assert err_of([], bytes([0x61]) * 202, 0) is ScriptErr.OP_COUNT
    assert err_of([], bytes([0x51]) * 1001, 0) is ScriptErr.STACK_SIZE
    assert err_of([], push_data(b"\x00" * 521), 0) is ScriptErr.PUSH_SIZE
    assert err_of([], b"\x61" * 10_001, 0) is ScriptErr.SCRIPT_SIZE


def test_arithmetic_and_stack_opcodes() -> None:
    # 2 3 OP_ADD 5 OP_NUMEQUALVERIFY 7 OP_DUP OP_SIZE OP_SWAP OP_DROP -> [7, 1]
    script = bytes([0x52, 0x53, 0x93, 0x55, 0x9D, 0x57, 0x76, 0x82, 0x7C, 0x75])
    assert run([], script, STANDARD_FLAGS) == [b"\x07", b"\x01"]
    # OP_WITHIN, OP_PICK, OP_ROLL, OP_2SWAP, OP_TOALTSTACK/FROMALTSTACK
    assert run([b"\x05", b"\x01", b"\x0a"], bytes([0xA5]), 0) == [b"\x01"]
    assert run([b"a", b"b", b"c", b"\x02"], bytes([0x79]), 0) == [b"a", b"b", b"c", b"a"]
    assert run([b"a", b"b", b"c", b"\x02"], bytes([0x7A]), 0) == [b"b", b"c", b"a"]
    assert run([b"a", b"b", b"c", b"d"], bytes([0x72]), 0) == [b"c", b"d", b"a", b"b"]
    assert run([b"a"], bytes([0x6B, 0x51, 0x6C]), 0) == [b"\x01", b"a"]
    assert err_of([], bytes([0x6C]), 0) is ScriptErr.INVALID_ALTSTACK_OPERATION


def _sign(key: PrivateKey, digest: bytes) -> bytes:
    return key.sign(digest, hasher=None) + b"\x01"


def _fedpeg(watchmen: list[bytes], m: int, emergency: list[bytes], k: int, csv: int) -> bytes:
    return (
        bytes([OP_DEPTH])
        + push_int(m + 1)
        + bytes([OP_EQUAL, OP_IF])
        + push_int(m)
        + b"".join(push_data(w) for w in watchmen)
        + push_int(len(watchmen))
        + bytes([OP_ELSE])
        + push_int(csv)
        + bytes([OP_CHECKSEQUENCEVERIFY, OP_DROP])
        + push_int(k)
        + b"".join(push_data(e) for e in emergency)
        + push_int(len(emergency))
        + bytes([OP_ENDIF, OP_CHECKMULTISIG])
    )


@pytest.mark.parametrize(("m", "n", "k", "e", "csv"), [(2, 3, 1, 1, 10), (11, 15, 2, 3, 4032)])
def test_fedpegscript_both_branches(m: int, n: int, k: int, e: int, csv: int) -> None:
    """Liquid's template, its small variant and its real 11-of-15 / 2-of-3 shape."""
    watch = [PrivateKey() for _ in range(n)]
    emerg = [PrivateKey() for _ in range(e)]
    script = _fedpeg([w.public_key.format() for w in watch], m, [x.public_key.format() for x in emerg], k, csv)
    spk = b"\x00\x20" + sha256(script)
    value = 10**8

    def spend(sequence: int) -> Transaction:
        return Transaction(2, (TxIn(OutPoint(b"\x11" * 32, 0), b"", sequence),), (TxOut(value - 1000, spk),))

    t = spend(0xFFFFFFFD)
    digest = segwit_v0_sighash(t, 0, script, value, 1)
    sigs = [_sign(w, digest) for w in watch[:m]]
    verify_script(b"", spk, (b"", *sigs, script), STANDARD_FLAGS, TxChecker(t, 0, value))
    # One signature short: OP_DEPTH routes to the emergency branch, whose CSV fails.
    with pytest.raises(ScriptError) as info:
        verify_script(b"", spk, (b"", *sigs[:-1], script), STANDARD_FLAGS, TxChecker(t, 0, value))
    assert info.value.err in (ScriptErr.UNSATISFIED_LOCKTIME, ScriptErr.SIG_COUNT, ScriptErr.INVALID_STACK_OPERATION)

    late = spend(csv)
    digest = segwit_v0_sighash(late, 0, script, value, 1)
    esigs = [_sign(x, digest) for x in emerg[:k]]
    verify_script(b"", spk, (b"", *esigs, script), STANDARD_FLAGS, TxChecker(late, 0, value))
    early = spend(csv - 1)
    digest = segwit_v0_sighash(early, 0, script, value, 1)
    with pytest.raises(ScriptError) as info:
        verify_script(b"", spk, (b"", *[_sign(x, digest) for x in emerg[:k]], script), STANDARD_FLAGS,
                      TxChecker(early, 0, value))  # fmt: skip
    assert info.value.err is ScriptErr.UNSATISFIED_LOCKTIME


def test_checkmultisig_nullfail_and_nulldummy() -> None:
    keys = [PrivateKey() for _ in range(3)]
    script = push_int(2) + b"".join(push_data(k.public_key.format()) for k in keys) + push_int(3) + b"\xae"
    spk = b"\x00\x20" + sha256(script)
    t = Transaction(2, (TxIn(OutPoint(b"\x22" * 32, 1)),), (TxOut(5000, spk),))
    digest = segwit_v0_sighash(t, 0, script, 10_000, 1)
    good = [_sign(keys[0], digest), _sign(keys[1], digest)]
    wrong = [_sign(keys[0], digest), _sign(PrivateKey(), digest)]

    def verify(stack: tuple[bytes, ...], flags: int) -> None:
        verify_script(b"", spk, (*stack, script), flags, TxChecker(t, 0, 10_000))

    verify((b"", *good), STANDARD_FLAGS)
    with pytest.raises(ScriptError) as info:
        verify((b"", *wrong), STANDARD_FLAGS)
    assert info.value.err is ScriptErr.SIG_NULLFAIL
    with pytest.raises(ScriptError) as info:
        verify((b"", *wrong), CONSENSUS_FLAGS)
    assert info.value.err is ScriptErr.EVAL_FALSE
    with pytest.raises(ScriptError) as info:
        verify((b"\x00", *good), CONSENSUS_FLAGS)
    assert info.value.err is ScriptErr.SIG_NULLDUMMY
    # Uncompressed keys are policy-refused in segwit.
    ukey = PrivateKey()
    uscript = push_data(ukey.public_key.format(compressed=False)) + b"\xac"
    uspk = b"\x00\x20" + sha256(uscript)
    udigest = segwit_v0_sighash(t, 0, uscript, 10_000, 1)
    with pytest.raises(ScriptError) as info:
        verify_script(b"", uspk, (_sign(ukey, udigest), uscript), STANDARD_FLAGS, TxChecker(t, 0, 10_000))
    assert info.value.err is ScriptErr.WITNESS_PUBKEYTYPE
    verify_script(b"", uspk, (_sign(ukey, udigest), uscript), CONSENSUS_FLAGS, TxChecker(t, 0, 10_000))


def test_legacy_p2pkh_and_p2sh_spends() -> None:
    key = PrivateKey()
    pub = key.public_key.format()
    spk = b"\x76\xa9\x14" + hash160(pub) + b"\x88\xac"
    t = Transaction(2, (TxIn(OutPoint(b"\x33" * 32, 0)),), (TxOut(1, spk),))
    sig = _sign(key, legacy_sighash(t, 0, spk, 1))
    signed = Transaction(2, (TxIn(OutPoint(b"\x33" * 32, 0), push_data(sig) + push_data(pub)),), t.vout)
    verify_script(signed.vin[0].script_sig, spk, (), STANDARD_FLAGS, TxChecker(signed, 0, 0))
    # A P2SH 1-of-1 multisig redeem script.
    redeem = push_int(1) + push_data(pub) + push_int(1) + b"\xae"
    p2sh = b"\xa9\x14" + hash160(redeem) + b"\x87"
    sig2 = _sign(key, legacy_sighash(t, 0, redeem, 1))
    script_sig = b"\x00" + push_data(sig2) + push_data(redeem)
    signed2 = Transaction(2, (TxIn(OutPoint(b"\x33" * 32, 0), script_sig),), t.vout)
    verify_script(script_sig, p2sh, (), STANDARD_FLAGS, TxChecker(signed2, 0, 0))
    with pytest.raises(ScriptError) as info:
        verify_script(script_sig + b"\x61", p2sh, (), STANDARD_FLAGS, TxChecker(signed2, 0, 0))
    assert info.value.err is ScriptErr.SIG_PUSHONLY


def test_witness_malleation_rules() -> None:
    key = PrivateKey()
    pub = key.public_key.format()
    spk = b"\x00\x14" + hash160(pub)
    t = Transaction(2, (TxIn(OutPoint(b"\x44" * 32, 0)),), (TxOut(1, spk),))
    code = b"\x76\xa9\x14" + hash160(pub) + b"\x88\xac"
    sig = _sign(key, segwit_v0_sighash(t, 0, code, 1000, 1))
    checker = TxChecker(t, 0, 1000)
    with pytest.raises(ScriptError) as info:
        verify_script(b"\x51", spk, (sig, pub), CONSENSUS_FLAGS, checker)
    assert info.value.err is ScriptErr.WITNESS_MALLEATED
    with pytest.raises(ScriptError) as info:
        verify_script(b"\x51", b"\x51", (sig,), CONSENSUS_FLAGS, checker)
    assert info.value.err is ScriptErr.WITNESS_UNEXPECTED
    with pytest.raises(ScriptError) as info:
        verify_script(b"", spk, (), CONSENSUS_FLAGS, checker)
    assert info.value.err is ScriptErr.WITNESS_PROGRAM_MISMATCH


# --- classification, asm, descriptors, addresses ------------------------------------------------------------


def test_solver_and_asm() -> None:
    pub = PrivateKey().public_key.format()
    h = hash160(pub)
    assert solve(b"\x00\x14" + h).kind is TxoutType.WITNESS_V0_KEYHASH
    assert solve(b"\x00\x20" + sha256(b"x")).kind is TxoutType.WITNESS_V0_SCRIPTHASH
    assert solve(b"\x51\x20" + b"\x01" * 32).kind is TxoutType.WITNESS_V1_TAPROOT
    assert solve(b"\x52\x02\x01\x02").kind is TxoutType.WITNESS_UNKNOWN
    assert solve(b"\x6a\x04abcd").kind is TxoutType.NULL_DATA
    assert solve(push_data(pub) + b"\xac").kind is TxoutType.PUBKEY
    assert solve(b"\x51\x51").kind is TxoutType.NONSTANDARD
    assert script_to_asm(b"\x76\xa9\x14" + h + b"\x88\xac") == f"OP_DUP OP_HASH160 {h.hex()} OP_EQUALVERIFY OP_CHECKSIG"
    assert script_to_asm(b"\x00\x14" + h) == f"0 {h.hex()}"
    assert script_to_asm(bytes([0x5A, 0xB2, 0x75])) == "10 OP_CHECKSEQUENCEVERIFY OP_DROP"
    assert script_to_asm(push_data(b"\x01\x02")) == "513"
    sig = _sign(PrivateKey(), b"\x07" * 32)
    assert script_to_asm(push_data(sig) + push_data(pub), True) == f"{sig[:-1].hex()}[ALL] {pub.hex()}"


def test_descriptor_checksum() -> None:
    assert descriptor_checksum("raw(deadbeef)") == "89f8spxm"  # BIP380's example


@given(st.sampled_from([0, 1, 2, 16]), st.binary(min_size=2, max_size=40))
def test_segwit_addresses_match_bitcoinlib(version: int, program: bytes) -> None:
    if version == 0 and len(program) not in (20, 32):
        return
    ours = encode_segwit("bcrt", version, program)
    if version == 0:  # python-bitcoinlib 0.12 predates bech32m
        assert ours == segwit_addr.encode("bcrt", 0, program)
    assert decode_segwit("bcrt", ours) == (version, program)


def test_addresses_round_trip_and_refuse_other_networks() -> None:
    h = bytes(range(20))
    for script in (b"\x00\x14" + h, b"\x76\xa9\x14" + h + b"\x88\xac", b"\xa9\x14" + h + b"\x87"):
        address = script_to_address(script, REGTEST)
        assert address is not None and address_to_script(address, REGTEST) == script
    assert script_to_address(b"\x76\xa9\x14" + h + b"\x88\xac", REGTEST).startswith(("m", "n"))  # type: ignore[union-attr]
    assert script_to_address(b"\xa9\x14" + h + b"\x87", REGTEST).startswith("2")  # type: ignore[union-attr]
    assert b58encode(b"\x00\x00\x01\x02") == bl_base58.encode(b"\x00\x00\x01\x02")
    mainnet = b58check_encode(b"\x00" + h)
    for bad in (mainnet, encode_segwit("bc", 0, h), "bcrt1qqqqqqqqqqq", "not an address", ""):
        with pytest.raises(AddressError):
            address_to_script(bad, REGTEST)
    # Version 0 with a bech32m checksum is refused (BIP350).
    with pytest.raises(AddressError):
        decode_segwit("bcrt", encode_segwit("bcrt", 1, h).replace("bcrt1p", "bcrt1q"))

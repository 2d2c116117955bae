"""Borromean range proofs bound to a scriptPubKey, as Elements makes and checks them.

Making (Elements ``GenerateRangeproof``, src/blind.cpp):

    parameter       Elements                                   here
    min_value       0 if the scriptPubKey is unspendable, else 1   the same
    exp             -ct_exponent, default 0                    0
    min_bits        -ct_bits, default 52                       52
    message         asset id (32) || asset blinding factor (32)   the same
    extra_commit    the output's scriptPubKey                  the same
    nonce           SHA256(SHA256(ECDH)) (see commit.py)       the same

Checking (Elements ``CachingRangeProofChecker::VerifyRangeProof``): the proof
verifies against (value commitment, asset generator, scriptPubKey), and a
proof whose proven minimum is 0 is refused unless the scriptPubKey is
unspendable, so no spendable output can carry a zero amount.

Proof layout (libsecp256k1-zkp rangeproof_impl.h), which decides truncated
versus oversized before the library is asked:

    field           size
    control byte    1         bit 6: has mantissa, bit 5: has min_value, bits 0-4: exp
    mantissa - 1    1         if bit 6
    min_value       8         if bit 5, big-endian
    sign bits       (rings + 6) >> 3
    ring points     32 * (rings - 1)
    e0              32
    scalars         32 * pubs

with rings = ceil(mantissa / 2) and pubs = 4 * floor(mantissa / 2) + 2 * (mantissa odd),
or one ring of one for exp = -1. The largest proof (64 bits, with min_value) is 5,134 bytes.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

from . import _lib
from .cache import VerificationCache
from .commit import MAX_UINT64
from .errors import (
    BlindingFailed,
    OversizedProof,
    RangeProofInvalid,
    TruncatedProof,
    ValueOutOfRange,
)
from .points import (
    CommitmentStruct,
    GeneratorStruct,
    as_var_bytes,
    check_asset_id,
    check_scalar,
    commitment_struct,
    generator_struct,
    parse_asset_generator,
    parse_value_commitment,
)

wally = _lib.wally

DEFAULT_MIN_BITS = 52
DEFAULT_EXP = 0
MAX_RANGEPROOF_LEN = 5134
MIN_RANGEPROOF_LEN = 65
"""libsecp256k1-zkp refuses to read a header from fewer bytes."""
MAX_SCRIPT_SIZE = 10_000
OP_RETURN = 0x6A


@dataclass(frozen=True, slots=True)
class RangeInfo:
    """What a verified range proof proves: the value lies in [min_value, max_value]."""

    min_value: int
    max_value: int
    exponent: int
    mantissa: int

    def as_tuple(self) -> tuple[int, int, int, int]:
        return (self.min_value, self.max_value, self.exponent, self.mantissa)


def is_unspendable(script_pubkey: bytes) -> bool:
    """Elements' ``CScript::IsUnspendable``: starts with OP_RETURN, or longer than MAX_SCRIPT_SIZE."""
    return (len(script_pubkey) > 0 and script_pubkey[0] == OP_RETURN) or len(script_pubkey) > MAX_SCRIPT_SIZE


def default_min_value(script_pubkey: bytes) -> int:
    """Elements' choice of min_value for a new proof: 0 only for unspendable scripts."""
    return 0 if is_unspendable(script_pubkey) else 1


def _expected_length(control: int, exponent: int, mantissa: int) -> int:
    header = 1 + (1 if control & 64 else 0) + (8 if control & 32 else 0)
    if exponent == -1:
        rings, pubs = 1, 1
    else:
        rings = (mantissa + 1) // 2
        pubs = 4 * (mantissa // 2) + 2 * (mantissa & 1)
    return header + ((rings + 6) >> 3) + 32 * (rings - 1) + 32 + 32 * pubs


def range_proof_info(range_proof: bytes) -> RangeInfo:
    """Read a range proof's header (no verification) and check its length against it.

    Raises TruncatedProof, OversizedProof, or RangeProofInvalid for a header
    the library cannot read.
    """
    return _check_layout(as_var_bytes(range_proof, "range proof"))


def _check_layout(proof: bytes) -> RangeInfo:
    n = len(proof)
    if n > MAX_RANGEPROOF_LEN:
        raise OversizedProof(f"range proof of {n} bytes; the largest possible is {MAX_RANGEPROOF_LEN}")
    if n < MIN_RANGEPROOF_LEN:
        raise TruncatedProof(f"range proof of {n} bytes; at least {MIN_RANGEPROOF_LEN} are needed")
    exp, mantissa, mn, mx = ctypes.c_int(), ctypes.c_int(), ctypes.c_uint64(), ctypes.c_uint64()
    ok = _lib.rangeproof_info(
        _lib.CTX, ctypes.byref(exp), ctypes.byref(mantissa), ctypes.byref(mn), ctypes.byref(mx), proof, n
    )
    if ok != 1:
        raise RangeProofInvalid("range proof header is malformed")
    want = _expected_length(proof[0], exp.value, mantissa.value)
    if n < want:
        raise TruncatedProof(f"range proof of {n} bytes; its header needs {want}")
    if n > want:
        raise OversizedProof(f"range proof of {n} bytes; its header needs {want}")
    return RangeInfo(mn.value, mx.value, exp.value, mantissa.value)


def _apply_policy(info: RangeInfo, script_pubkey: bytes, max_value: int | None) -> RangeInfo:
    if info.min_value == 0 and not is_unspendable(script_pubkey):
        raise ValueOutOfRange("range proof allows zero for a spendable scriptPubKey")
    if max_value is not None and info.max_value > max_value:
        raise ValueOutOfRange(f"range proof allows values up to {info.max_value}, above {max_value}")
    return info


def verify_range_structs(
    proof: bytes,
    commit: CommitmentStruct,
    gen: GeneratorStruct,
    script_pubkey: bytes,
) -> RangeInfo:
    """The library call behind :func:`verify_range_proof`, on already-parsed points.

    Checks layout and the proof itself; applies no policy.
    """
    header = _check_layout(proof)
    mn, mx = ctypes.c_uint64(), ctypes.c_uint64()
    ok = _lib.rangeproof_verify(
        _lib.CTX, ctypes.byref(mn), ctypes.byref(mx), commit, proof, len(proof), script_pubkey, len(script_pubkey), gen
    )
    if ok != 1:
        raise RangeProofInvalid("range proof does not verify for this commitment, asset and scriptPubKey")
    return RangeInfo(mn.value, mx.value, header.exponent, header.mantissa)


def verify_range_proof(
    range_proof: bytes,
    value_commitment: bytes,
    asset_generator: bytes,
    script_pubkey: bytes,
    *,
    max_value: int | None = None,
    cache: VerificationCache | None = None,
) -> RangeInfo:
    """Verify a range proof for an output without rewinding it.

    ``max_value``, if given, refuses proofs whose proven range reaches above it
    (Elements has no such rule; a chain may add one as policy). The
    zero-minimum rule for spendable scripts always applies.
    """
    proof = as_var_bytes(range_proof, "range proof")
    script = as_var_bytes(script_pubkey, "scriptPubKey")
    if cache is not None and type(value_commitment) is bytes and type(asset_generator) is bytes:
        # A hit means these very bytes were parsed and verified before, so
        # they are looked up before parsing them into the library's structs.
        key = cache.range_key(proof, value_commitment, asset_generator, script)
        hit = cache.get_range(key)
        if hit is not None:
            return _apply_policy(RangeInfo(*hit), script, max_value)
        info = verify_range_structs(
            proof, commitment_struct(value_commitment), generator_struct(asset_generator), script
        )
        cache.put_range(key, info.as_tuple())
        return _apply_policy(info, script, max_value)
    commit = commitment_struct(value_commitment)
    gen = generator_struct(asset_generator)
    return checked_range(proof, bytes(value_commitment), commit, bytes(asset_generator), gen, script, max_value, cache)


def checked_range(
    proof: bytes,
    commitment: bytes,
    commit: CommitmentStruct,
    generator: bytes,
    gen: GeneratorStruct,
    script: bytes,
    max_value: int | None,
    cache: VerificationCache | None,
) -> RangeInfo:
    """Range-proof check with the cache and the policy rules, on parsed points."""
    if cache is None:
        return _apply_policy(verify_range_structs(proof, commit, gen, script), script, max_value)
    key = cache.range_key(proof, commitment, generator, script)
    hit = cache.get_range(key)
    if hit is not None:
        return _apply_policy(RangeInfo(*hit), script, max_value)
    info = verify_range_structs(proof, commit, gen, script)
    cache.put_range(key, info.as_tuple())
    return _apply_policy(info, script, max_value)


def make_range_proof(
    value: int,
    nonce: bytes,
    asset_id: bytes,
    abf: bytes,
    vbf: bytes,
    value_commitment: bytes,
    asset_generator: bytes,
    script_pubkey: bytes,
    *,
    min_value: int,
    exp: int = DEFAULT_EXP,
    min_bits: int = DEFAULT_MIN_BITS,
) -> bytes:
    """Prove that ``value_commitment`` opens to ``value``, with the asset id and abf as the rewind message.

    A thin, checked wrapper over wallycore's ``asset_rangeproof_with_nonce``.
    """
    if not isinstance(value, int) or not 0 <= value <= MAX_UINT64:
        raise ValueOutOfRange(f"value {value!r} is not a 64-bit unsigned integer")
    if not isinstance(min_value, int) or not 0 <= min_value <= value:
        raise ValueOutOfRange(f"min_value {min_value!r} must be between 0 and the value {value}")
    if not -1 <= exp <= 18 or not 0 <= min_bits <= 64:
        raise ValueOutOfRange(f"exp {exp} must be in -1..18 and min_bits {min_bits} in 0..64")
    n = check_scalar(nonce, "rangeproof nonce", allow_zero=True)
    aid = check_asset_id(asset_id)
    a = check_scalar(abf, "asset blinding factor", allow_zero=True)
    v = check_scalar(vbf, "value blinding factor", allow_zero=True)
    c = parse_value_commitment(value_commitment)
    g = parse_asset_generator(asset_generator)
    script = as_var_bytes(script_pubkey, "scriptPubKey")
    try:
        return bytes(wally.asset_rangeproof_with_nonce(value, n, aid, a, v, c, script, g, min_value, exp, min_bits))
    except (ValueError, RuntimeError) as exc:
        # The library refuses when the commitment does not open to (value, vbf).
        raise BlindingFailed(f"range proof: library refused to sign: {exc}") from exc

"""Asset surjection proofs: the output's asset is one of the inputs' assets.

Elements (``SurjectOutput``, src/blind.cpp) proves over the generators of all
of a transaction's inputs, in input order, choosing min(3, inputs) of them at
random for the ring; ``VerifyAmounts`` verifies against that same full list.
Explicit inputs take part with their unblinded generator (abf = 0).

Serialized form (libsecp256k1-zkp ``secp256k1_surjectionproof_parse``):

    field       size
    n_inputs    2              little-endian, at most 256
    used        ceil(n/8)      bitmap of inputs in the ring; padding bits must be 0
    e0          32
    s values    32 per used input

so the largest proof is 2 + 32 + 32 * 257 = 8,258 bytes.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence

from . import _lib
from .cache import VerificationCache
from .errors import BadLength, BlindingFailed, OversizedProof, SurjectionProofInvalid, TruncatedProof
from .points import (
    GeneratorStruct,
    as_bytes,
    as_var_bytes,
    check_asset_id,
    check_scalar,
    generator_array,
    generator_struct,
    parse_asset_generator,
)

wally = _lib.wally

MAX_SURJECTION_INPUTS = 256
MAX_SURJECTION_TARGETS = 3
"""Elements' MAX_SURJECTION_TARGETS: how many inputs a new proof's ring uses."""
MAX_SURJECTIONPROOF_LEN = 2 + MAX_SURJECTION_INPUTS // 8 + 32 * (1 + MAX_SURJECTION_INPUTS)


def surjection_proof_inputs(surjection_proof: bytes) -> tuple[int, int]:
    """(total inputs, inputs used) from a proof's header, after checking its length.

    Raises TruncatedProof, OversizedProof or SurjectionProofInvalid.
    """
    proof = as_var_bytes(surjection_proof, "surjection proof")
    n = len(proof)
    if n > MAX_SURJECTIONPROOF_LEN:
        raise OversizedProof(f"surjection proof of {n} bytes; the largest possible is {MAX_SURJECTIONPROOF_LEN}")
    if n < 2:
        raise TruncatedProof(f"surjection proof of {n} bytes has no input count")
    n_inputs = proof[0] | (proof[1] << 8)
    if n_inputs > MAX_SURJECTION_INPUTS:
        raise SurjectionProofInvalid(f"surjection proof over {n_inputs} inputs; at most {MAX_SURJECTION_INPUTS}")
    map_len = (n_inputs + 7) // 8
    if n < 2 + map_len:
        raise TruncatedProof(f"surjection proof of {n} bytes; its input bitmap needs {2 + map_len}")
    bitmap = proof[2 : 2 + map_len]
    if n_inputs % 8 and bitmap[-1] >> (n_inputs % 8):
        raise SurjectionProofInvalid("surjection proof bitmap has bits set past its last input")
    used = sum(bin(b).count("1") for b in bitmap)
    want = 2 + map_len + 32 * (1 + used)
    if n < want:
        raise TruncatedProof(f"surjection proof of {n} bytes; its header needs {want}")
    if n > want:
        raise OversizedProof(f"surjection proof of {n} bytes; its header needs {want}")
    return n_inputs, used


def verify_surjection_structs(
    proof: bytes, gen: GeneratorStruct, inputs: ctypes.Array[ctypes.c_char], n_inputs: int
) -> None:
    """The library calls behind :func:`verify_surjection_proof`, on parsed generators."""
    total, used = surjection_proof_inputs(proof)
    if total != n_inputs:
        raise SurjectionProofInvalid(f"surjection proof is over {total} inputs, the transaction has {n_inputs}")
    if used == 0:
        raise SurjectionProofInvalid("surjection proof uses no input")
    parsed = ctypes.create_string_buffer(_lib.SURJECTIONPROOF_SIZE)
    if _lib.surjectionproof_parse(_lib.CTX, parsed, proof, len(proof)) != 1:
        raise SurjectionProofInvalid("surjection proof does not parse")
    if _lib.surjectionproof_verify(_lib.CTX, parsed, inputs, n_inputs, gen) != 1:
        raise SurjectionProofInvalid("surjection proof does not verify for this asset and these inputs")


def verify_surjection_proof(
    surjection_proof: bytes,
    asset_generator: bytes,
    input_generators: Sequence[bytes],
    *,
    cache: VerificationCache | None = None,
) -> None:
    """Verify that ``asset_generator`` blinds the asset of one of ``input_generators``."""
    proof = as_var_bytes(surjection_proof, "surjection proof")
    if (
        cache is not None
        and type(asset_generator) is bytes
        and type(input_generators) in (tuple, list)
        and all(type(g) is bytes for g in input_generators)
    ):
        # As for range proofs: a hit means these bytes parsed and verified before.
        key = cache.surjection_key(proof, asset_generator, input_generators)
        if cache.has_surjection(key):
            return
        gen = generator_struct(asset_generator)
        inputs, input_list = generator_array(input_generators)
        verify_surjection_structs(proof, gen, inputs, len(input_list))
        cache.put_surjection(key)
        return
    gen = generator_struct(asset_generator)
    inputs, input_list = generator_array(input_generators)
    checked_surjection(proof, bytes(asset_generator), gen, input_list, inputs, len(input_list), cache)


def checked_surjection(
    proof: bytes,
    generator: bytes,
    gen: GeneratorStruct,
    input_generators: Sequence[bytes],
    inputs: ctypes.Array[ctypes.c_char],
    n_inputs: int,
    cache: VerificationCache | None,
) -> None:
    """Surjection check through the cache, on parsed generators."""
    if cache is None:
        verify_surjection_structs(proof, gen, inputs, n_inputs)
        return
    key = cache.surjection_key(proof, generator, input_generators)
    if cache.has_surjection(key):
        return
    verify_surjection_structs(proof, gen, inputs, n_inputs)
    cache.put_surjection(key)


def make_surjection_proof(
    output_asset_id: bytes,
    output_abf: bytes,
    output_generator: bytes,
    input_asset_ids: Sequence[bytes],
    input_abfs: Sequence[bytes],
    input_generators: Sequence[bytes],
    seed: bytes,
) -> bytes:
    """Prove the output's asset is among the inputs' (wallycore ``asset_surjectionproof``).

    wallycore, like Elements, uses min(3, inputs) inputs in the ring, chosen with ``seed``.
    """
    if not (len(input_asset_ids) == len(input_abfs) == len(input_generators)):
        raise BadLength("surjection inputs: asset ids, abfs and generators differ in number")
    if not 1 <= len(input_asset_ids) <= MAX_SURJECTION_INPUTS:
        raise BlindingFailed(f"a surjection proof needs 1..{MAX_SURJECTION_INPUTS} inputs")
    out_id = check_asset_id(output_asset_id)
    out_abf = check_scalar(output_abf, "output asset blinding factor")
    out_gen = parse_asset_generator(output_generator)
    ids = b"".join(check_asset_id(a) for a in input_asset_ids)
    abfs = b"".join(check_scalar(a, "input asset blinding factor", allow_zero=True) for a in input_abfs)
    gens = b"".join(parse_asset_generator(g) for g in input_generators)
    rnd = as_bytes(seed, 32, "surjection seed")
    if out_id not in {bytes(a) for a in input_asset_ids}:
        raise BlindingFailed("the output's asset is not among the inputs' assets")
    try:
        return bytes(wally.asset_surjectionproof(out_id, out_abf, out_gen, rnd, ids, abfs, gens))
    except (ValueError, RuntimeError) as exc:
        # e.g. an input generator equal to the output's: libsecp256k1-zkp cannot prove that (see its comment).
        raise BlindingFailed(f"surjection proof: library refused: {exc}") from exc

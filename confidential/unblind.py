"""Recipient and auditor side: open a confidential output with its blinding key.

Elements' ``UnblindConfidentialPair`` (src/blind.cpp): derive the rangeproof
nonce from the blinding private key and the output's nonce commitment (the
sender's ephemeral public key), rewind the range proof (which also verifies
it), read the asset id and asset blinding factor from its 64-byte message,
and check that they rebuild the output's asset generator. Here the value
commitment is also rebuilt from the recovered value and value blinding factor.

Whoever holds the blinding private key (the recipient, or an auditor given it
as a viewing key) learns value, asset and both blinding factors; nobody else can.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import _lib
from .commit import asset_generator as make_generator
from .commit import ecdh_nonce
from .commit import value_commitment as make_commitment
from .errors import (
    BadScalar,
    ConfidentialError,
    NotOurOutput,
    RangeProofInvalid,
    ValueOutOfRange,
)
from .points import (
    as_var_bytes,
    check_scalar,
    commitment_struct,
    generator_struct,
    parse_pubkey,
)
from .rangeproof import range_proof_info, verify_range_structs
from .verify import MAX_MONEY

wally = _lib.wally


@dataclass(frozen=True, slots=True)
class Unblinded:
    """The opening of an output: what its commitments hide."""

    value: int
    asset_id: bytes
    abf: bytes
    vbf: bytes


def unblind_output(
    value_commitment: bytes,
    asset_generator: bytes,
    nonce_commitment: bytes,
    script_pubkey: bytes,
    range_proof: bytes,
    blinding_key: bytes,
) -> Unblinded:
    """Open an output with a blinding private key.

    Raises NotOurOutput if the key does not open it, RangeProofInvalid if the
    proof is not valid for the output at all, ValueOutOfRange if the hidden
    value exceeds MAX_MONEY, or an EncodingError for malformed bytes.
    """
    commit = commitment_struct(value_commitment)
    gen = generator_struct(asset_generator)
    ephemeral = parse_pubkey(nonce_commitment, "nonce commitment")
    key = check_scalar(blinding_key, "blinding key")
    proof = as_var_bytes(range_proof, "range proof")
    script = as_var_bytes(script_pubkey, "scriptPubKey")
    commitment = bytes(value_commitment)
    generator = bytes(asset_generator)

    # Layout first, so a truncated or oversized proof is reported as such, not as "not ours".
    range_proof_info(proof)
    nonce = ecdh_nonce(ephemeral, key)
    try:
        value, asset_id, abf, vbf = _rewind(nonce, proof, commitment, script, generator)
    except NotOurOutput:
        # Rewinding fails both for another key and for a bad proof; tell them apart.
        verify_range_structs(proof, commit, gen, script)
        raise
    if value > MAX_MONEY:
        raise ValueOutOfRange(f"unblinded value {value} exceeds MAX_MONEY")
    try:
        ok = make_generator(asset_id, abf) == generator and make_commitment(value, vbf, generator) == commitment
    except ConfidentialError as exc:
        raise NotOurOutput(f"rewound data is not an opening: {exc}") from exc
    if not ok:
        raise NotOurOutput("rewound asset and blinding factors do not rebuild the output's commitments")
    return Unblinded(value, asset_id, abf, vbf)


def _rewind(
    nonce: bytes, proof: bytes, commitment: bytes, script: bytes, generator: bytes
) -> tuple[int, bytes, bytes, bytes]:
    try:
        value, asset_id, abf, vbf = wally.asset_unblind_with_nonce(nonce, proof, commitment, script, generator)
    except (ValueError, RuntimeError) as exc:
        raise NotOurOutput("the blinding key does not rewind this range proof") from exc
    try:
        check_scalar(bytes(vbf), "value blinding factor", allow_zero=True)
        check_scalar(bytes(abf), "asset blinding factor", allow_zero=True)
    except BadScalar as exc:  # pragma: no cover - the library only returns reduced scalars
        raise RangeProofInvalid(f"rewound blinding factor is not a scalar: {exc}") from exc
    return int(value), bytes(asset_id), bytes(abf), bytes(vbf)

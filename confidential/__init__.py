"""Confidential transactions in Elements' wire formats: a narrow, typed face over libsecp256k1-zkp.

Value commitments (0x08/0x09) and asset generators (0x0a/0x0b) as
libsecp256k1-zkp serializes them, Borromean range proofs bound to the output's
scriptPubKey, asset surjection proofs, ECDH rangeproof nonces, and balancing
of the last output's value blinding factor, byte-compatible with Elements.

    role        entry points
    sender      blind_outputs(inputs, outputs) -> [BlindedOutput | ExplicitOutput]
    validator   verify_output(...), verify_balance(inputs, outputs), verify_outputs_parallel(jobs)
    recipient   unblind_output(..., blinding_key) -> Unblinded(value, asset_id, abf, vbf)
    auditor     the same with a viewing key; commitment_to_pubkey / sum_points to recompute sums

Proofs are made and rewound by wallycore; verification without rewinding, the
tally and parsing are bound with ctypes to the same library (``_lib``).
Importing this package raises :class:`LibraryUnavailable` if the library or a
symbol it needs is missing: there is no fallback. Every error is a
:class:`ConfidentialError` (see :mod:`confidential.errors`).
"""

from __future__ import annotations

from . import _lib
from .audit import recompute_balance, sum_commitments
from .blind import BlindedOutput, ExplicitOutput, InputOpening, Output, OutputSpec, blind_outputs
from .cache import VerificationCache
from .commit import asset_generator, ecdh_nonce, explicit_generator, public_key, value_commitment
from .errors import (
    BadLength,
    BadPointEncoding,
    BadScalar,
    BlindingFailed,
    ConfidentialError,
    EncodingError,
    LibraryUnavailable,
    NotOurOutput,
    OversizedProof,
    ProofSizeError,
    RangeProofInvalid,
    SurjectionProofInvalid,
    TruncatedProof,
    Unbalanced,
    ValueOutOfRange,
    VerificationError,
    WrongPrefix,
)
from .points import (
    commitment_to_pubkey,
    generator_to_pubkey,
    parse_asset_generator,
    parse_value_commitment,
    pubkey_to_commitment,
    pubkey_to_generator,
    sum_points,
)
from .rangeproof import (
    DEFAULT_MIN_BITS,
    MAX_RANGEPROOF_LEN,
    RangeInfo,
    is_unspendable,
    make_range_proof,
    range_proof_info,
    verify_range_proof,
)
from .surjection import MAX_SURJECTIONPROOF_LEN, make_surjection_proof, verify_surjection_proof
from .txout import TxOut, asset_field_generator, encode_asset, encode_nonce, encode_value
from .unblind import Unblinded, unblind_output
from .verify import (
    MAX_MONEY,
    Committed,
    Explicit,
    OutputJob,
    Value,
    verify_balance,
    verify_output,
    verify_outputs_collect,
    verify_outputs_parallel,
)

LIBRARY_PATH: str = _lib.SO_PATH
"""The shared object holding libsecp256k1-zkp (wallycore's)."""

__all__ = [
    "DEFAULT_MIN_BITS",
    "LIBRARY_PATH",
    "MAX_MONEY",
    "MAX_RANGEPROOF_LEN",
    "MAX_SURJECTIONPROOF_LEN",
    "BadLength",
    "BadPointEncoding",
    "BadScalar",
    "BlindedOutput",
    "BlindingFailed",
    "Committed",
    "ConfidentialError",
    "EncodingError",
    "Explicit",
    "ExplicitOutput",
    "InputOpening",
    "LibraryUnavailable",
    "NotOurOutput",
    "Output",
    "OutputJob",
    "OutputSpec",
    "OversizedProof",
    "ProofSizeError",
    "RangeInfo",
    "RangeProofInvalid",
    "SurjectionProofInvalid",
    "TruncatedProof",
    "TxOut",
    "Unbalanced",
    "Unblinded",
    "Value",
    "ValueOutOfRange",
    "VerificationCache",
    "VerificationError",
    "WrongPrefix",
    "asset_field_generator",
    "asset_generator",
    "blind_outputs",
    "commitment_to_pubkey",
    "ecdh_nonce",
    "encode_asset",
    "encode_nonce",
    "encode_value",
    "explicit_generator",
    "generator_to_pubkey",
    "is_unspendable",
    "make_range_proof",
    "make_surjection_proof",
    "parse_asset_generator",
    "parse_value_commitment",
    "public_key",
    "pubkey_to_commitment",
    "pubkey_to_generator",
    "range_proof_info",
    "recompute_balance",
    "sum_commitments",
    "sum_points",
    "unblind_output",
    "value_commitment",
    "verify_balance",
    "verify_output",
    "verify_outputs_collect",
    "verify_outputs_parallel",
    "verify_range_proof",
    "verify_surjection_proof",
]

"""The error tree of the ``confidential`` package.

Every failure this package reports is a :class:`ConfidentialError`; parsers
and verifiers raise nothing else, whatever bytes they are given. The class
name is the stable code a caller can log or return.

    ConfidentialError
    ├── EncodingError                 bytes that are not a well-formed object
    │   ├── BadLength                 a fixed-size field of the wrong size
    │   ├── BadScalar                 a blinding factor or key that is not a valid scalar
    │   ├── BadPointEncoding          33 bytes that are not a point of the right kind
    │   │   └── WrongPrefix           a prefix byte for another kind of object
    │   └── ProofSizeError
    │       ├── TruncatedProof        shorter than its own header says
    │       └── OversizedProof        longer than its header says, or than any proof can be
    ├── VerificationError             a well-formed object that fails a rule
    │   ├── RangeProofInvalid         includes a proof moved to another commitment, script or asset
    │   ├── SurjectionProofInvalid
    │   ├── ValueOutOfRange           a value or proven range outside what is allowed
    │   └── Unbalanced                inputs do not equal outputs plus fee
    ├── NotOurOutput                  the blinding key does not open this output
    ├── BlindingFailed                the sender side could not build the outputs asked for
    └── LibraryUnavailable            libsecp256k1-zkp or a needed symbol is missing (import time)

``ValueOutOfRange`` and ``Unbalanced`` are also raised by the sender side
(:func:`confidential.blind_outputs`) when asked to blind something that no
verifier would accept.
"""

from __future__ import annotations


class ConfidentialError(Exception):
    """Root of every error raised by the confidential package."""

    @property
    def code(self) -> str:
        """A stable machine-readable name: the class name."""
        return type(self).__name__


# --- Encoding ----------------------------------------------------------------


class EncodingError(ConfidentialError):
    """Bytes that do not decode to the expected object."""


class BadLength(EncodingError):
    """A fixed-size field (asset id, blinding factor, key, point) of the wrong size."""


class BadScalar(EncodingError):
    """32 bytes that are not a valid non-zero scalar below the group order."""


class BadPointEncoding(EncodingError):
    """33 bytes whose x coordinate is not on the curve, or otherwise not a point."""


class WrongPrefix(BadPointEncoding):
    """A prefix byte that belongs to another kind of object (e.g. a generator
    where a value commitment is expected) or to none."""


class ProofSizeError(EncodingError):
    """A proof whose length does not match what its own header declares."""


class TruncatedProof(ProofSizeError):
    """A proof shorter than its header requires (or too short to have a header)."""


class OversizedProof(ProofSizeError):
    """A proof longer than its header requires, or than the largest possible proof."""


# --- Verification ------------------------------------------------------------


class VerificationError(ConfidentialError):
    """A well-formed object that fails a rule."""


class RangeProofInvalid(VerificationError):
    """The range proof does not verify against this commitment, asset
    generator and scriptPubKey (a proof moved to another output lands here)."""


class SurjectionProofInvalid(VerificationError):
    """The surjection proof does not show the output's asset is among the inputs'."""


class ValueOutOfRange(VerificationError):
    """An explicit amount outside 0..MAX_MONEY, a spendable output whose range
    proof allows zero, or a proven range above the caller's bound."""


class Unbalanced(VerificationError):
    """Inputs (with peg-ins) do not equal outputs plus fee, per asset."""


# --- Other -------------------------------------------------------------------


class NotOurOutput(ConfidentialError):
    """The blinding key given does not unblind this output."""


class BlindingFailed(ConfidentialError):
    """The sender side could not build the requested outputs (for example a
    single blinded output with only explicit inputs, which would reveal its
    amount, or an output asset that no input carries)."""


class LibraryUnavailable(ConfidentialError, ImportError):
    """libsecp256k1-zkp (through wallycore) or one of the symbols this package
    binds is missing. Raised when ``confidential`` is imported: there is no
    fallback."""

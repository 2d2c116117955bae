"""The consensus error tree.

Every rejection names the rule that broke. Callers that only care whether
something is valid catch :class:`ConsensusError`; callers that report to a
user (the REST API, the audit command, logs) use the class name as a stable
code.

    ConsensusError
    ├── ParseError                    bytes that are not a well-formed object
    └── ValidationError               a well-formed object that breaks a rule
        ├── BlockError
        │   ├── BadPrevHash, BadHeight, BadMerkleRoot, BadWitnessCommitment
        │   ├── TimeTooOld, TimeTooNew
        │   ├── BlockTooLarge, BlockWeightExceeded
        │   ├── BadCoinbase, BadChallenge, ProofTooLarge
        │   └── BlockSignatureError
        │       ├── BadBlockSignature, ThresholdNotMet
        │       └── DuplicateSignature, UnknownSigner
        ├── TransactionError
        │   ├── EmptyInputs, EmptyOutputs, DuplicateInput, TxTooLarge
        │   ├── MissingInput, DoubleSpend, ImmatureSpend
        │   ├── NonStandardScript, BadTxSignature, ScriptVerifyError
        │   ├── ValueOutOfRange, ValuesUnbalanced, WrongAsset
        │   ├── BadFeeOutput, UnsupportedFeature
        │   ├── PegInError (filled in by the peg)
        │   │   └── PegInAlreadyClaimed
        │   ├── ConfidentialError (consensus.ct, over confidential/)
        │   │   ├── BadCommitment, BadRangeProof, BadSurjectionProof
        │   │   ├── ConfidentialUnbalanced      also a ValuesUnbalanced
        │   │   └── ConfidentialValueOutOfRange also a ValueOutOfRange
        │   └── DuplicateTransaction, NonFinalTransaction
        └── SigningError                  the round-robin state machine
            ├── UnknownMember, NotProposer, WrongRound, WrongHeight
            ├── StaleMessage, UnsolicitedSignature
            ├── ConflictingPrecommit, SignedTwoBlocks
            └── InvalidProposal
"""

from __future__ import annotations


class ConsensusError(Exception):
    """Root of every error raised by the consensus package."""

    @property
    def code(self) -> str:
        """A stable machine-readable name: the class name."""
        return type(self).__name__


# --- Parsing ---------------------------------------------------------------


class ParseError(ConsensusError):
    """Bytes that do not decode to the expected object.

    Raised for truncated input, trailing bytes, non-canonical encodings and
    out-of-range length prefixes. Parsers raise nothing else.
    """


# --- Validation ------------------------------------------------------------


class ValidationError(ConsensusError):
    """A well-formed object that breaks a consensus rule."""


class BlockError(ValidationError):
    pass


class BadPrevHash(BlockError):
    pass


class BadHeight(BlockError):
    pass


class BadMerkleRoot(BlockError):
    pass


class BadWitnessCommitment(BlockError):
    pass


class TimeTooOld(BlockError):
    pass


class TimeTooNew(BlockError):
    pass


class BlockTooLarge(BlockError):
    pass


class BlockWeightExceeded(BlockError):
    pass


class BadCoinbase(BlockError):
    pass


class BadChallenge(BlockError):
    """The header's challenge is not the federation's signblockscript."""


class ProofTooLarge(BlockError):
    pass


class BlockSignatureError(BlockError):
    """The solution does not satisfy the challenge."""


class BadBlockSignature(BlockSignatureError):
    """A signature is malformed (strict DER, low S) or verifies under no key
    in the position CHECKMULTISIG's walk requires."""


class ThresholdNotMet(BlockSignatureError):
    """Fewer than m signatures."""


class DuplicateSignature(BlockSignatureError):
    """Two signatures from the same member."""


class UnknownSigner(BlockSignatureError):
    """A valid signature by a key that is not a federation member."""


class TransactionError(ValidationError):
    pass


class EmptyInputs(TransactionError):
    pass


class EmptyOutputs(TransactionError):
    pass


class DuplicateInput(TransactionError):
    """The same outpoint spent twice in one transaction
    (Elements: bad-txns-inputs-duplicate)."""


class TxTooLarge(TransactionError):
    pass


class MissingInput(TransactionError):
    """An input spends an outpoint that never existed."""


class DoubleSpend(TransactionError):
    """An input spends an outpoint that was already spent."""


class ImmatureSpend(TransactionError):
    """A coinbase output spent before it matured."""


class NonStandardScript(TransactionError):
    """A script outside the templates this chain accepts."""


class BadTxSignature(TransactionError):
    """A transaction signature that is malformed or does not verify."""


class ScriptVerifyError(TransactionError):
    """A witness that does not satisfy its script for a reason other than a
    bad signature (wrong program hash, wrong stack shape)."""


class ValueOutOfRange(TransactionError):
    pass


class ValuesUnbalanced(TransactionError):
    """Inputs do not equal outputs plus fee."""


class WrongAsset(TransactionError):
    """An explicit asset other than the chain's policy asset."""


class BadFeeOutput(TransactionError):
    pass


class UnsupportedFeature(TransactionError):
    """A well-formed feature this chain does not accept (asset issuance, or a
    peg-in or confidential output while its verifier is not configured)."""


class PegInError(TransactionError):
    """Base for peg-in rejections; the peg defines the specific rules."""


class ConfidentialError(TransactionError):
    """Base for confidential-output rejections raised inside consensus."""


class DuplicateTransaction(TransactionError):
    """A txid already in the chain, or twice in one block (Bitcoin's BIP30
    and bad-txns-duplicate)."""


class NonFinalTransaction(TransactionError):
    """A locktime not yet reached by the block's height or median time past
    (Elements: bad-txns-nonfinal)."""


class PegInAlreadyClaimed(PegInError):
    """A mainchain output claimed twice: in one transaction, in one block, or
    again after an earlier claim (Elements: bad-txns-inputs-duplicate,
    bad-txns-double-pegin, pegin-already-claimed)."""


# --- Round-robin signing ----------------------------------------------------


class SigningError(ValidationError):
    """A signing-protocol message that the state machine refuses."""


class UnknownMember(SigningError):
    pass


class NotProposer(SigningError):
    pass


class WrongRound(SigningError):
    pass


class WrongHeight(SigningError):
    pass


class StaleMessage(SigningError):
    pass


class UnsolicitedSignature(SigningError):
    """A signature for a block that has not gathered m precommits."""


class ConflictingPrecommit(SigningError):
    """A member precommitted to two blocks in one round (equivocation)."""


class SignedTwoBlocks(SigningError):
    """A member signed two different blocks at one height (equivocation)."""


class InvalidProposal(SigningError):
    """A proposal whose block does not validate against the chain."""


# --- Confidential transactions (consensus.ct) --------------------------------


class BadCommitment(ConfidentialError):
    """A value commitment or asset generator that is not a point of its kind
    (wrong prefix, x not on the curve), or a null asset or value where a
    confidential output needs one."""


class BadRangeProof(ConfidentialError):
    """A committed value's range proof that is missing, malformed, or does not
    verify against that output's commitment, asset generator and scriptPubKey
    (a proof moved from another output lands here); or a range proof on an
    explicit value."""


class BadSurjectionProof(ConfidentialError):
    """A committed asset's surjection proof that is missing, malformed, or does
    not show the asset among the transaction's inputs' assets; or a surjection
    proof on an explicit asset."""


class ConfidentialUnbalanced(ConfidentialError, ValuesUnbalanced):
    """Commitments of inputs (with peg-ins) do not tally with the outputs'
    (with the explicit fee). Also a ValuesUnbalanced, as for explicit ones."""


class ConfidentialValueOutOfRange(ConfidentialError, ValueOutOfRange):
    """A spendable confidential output that may be worth zero (its range proof
    allows 0, or its explicit value is 0), or an explicit amount outside
    0..MAX_MONEY in a confidential transaction. Also a ValueOutOfRange."""

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
        │   ├── PegInError (consensus.peg; Elements: pegin-no-witness)
        │   │   ├── PegInAlreadyClaimed         pegin-already-claimed
        │   │   │   └── BadTxnsDoublePegin      bad-txns-double-pegin
        │   │   ├── BadPegInWitness, PegInWrongGenesis, PegInWrongAsset
        │   │   ├── PegInBadProof, PegInTxNotInProof, PegInTxMismatch
        │   │   ├── PegInValueMismatch, PegInValueTooLow
        │   │   ├── PegInOutputMismatch
        │   │   │   └── ClaimScriptMismatch, NotPegInAddress
        │   │   └── PegInBlockNotInBestChain, PegInInsufficientDepth
        │   ├── PegOutError (consensus.peg; Elements: invalid-pegout-proof, bad-pak-tx)
        │   │   ├── WrongParentChain, BadPegOutDestination, BlindedPegOut
        │   │   └── UnauthorizedPegOut
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
    """A mainchain output claimed again after an earlier block claimed it
    (Elements: pegin-already-claimed). Two claims in one block raise the
    subclass :class:`BadTxnsDoublePegin`; two in one transaction are a
    :class:`DuplicateInput` (bad-txns-inputs-duplicate), as in Elements."""


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


# --- The peg (consensus.peg) --------------------------------------------------------
#
# Elements reports every peg-in witness failure as "pegin-no-witness" with a
# detail string; each class below is one of those details, named after the
# rule, and its message carries Elements' reason and detail.


class BadTxnsDoublePegin(PegInAlreadyClaimed):
    """Two transactions of one block claim the same mainchain output
    (Elements: bad-txns-double-pegin)."""


class BadPegInWitness(PegInError):
    """A peg-in witness that is not six well-formed items: the value (8 bytes,
    little-endian, within MAX_MONEY), asset and genesis hash (32 bytes each),
    a claim script of at most 100 bytes, a parseable Bitcoin transaction."""


class PegInWrongGenesis(PegInError):
    """The witness names another parent chain (Parent genesis block mismatch)."""


class PegInWrongAsset(PegInError):
    """The witness claims an asset other than the pegged policy asset."""


class PegInBadProof(PegInError):
    """The txout proof does not parse, its partial merkle tree is malformed or
    does not hash to its header's merkle root, it matches other than exactly
    one transaction, or the header fails the parent's proof of work (Could not
    extract block and tx from merkleblock / Parent proof of work is invalid)."""


class PegInTxNotInProof(PegInError):
    """The proof proves a transaction other than the one claimed (Merkle proof
    and txid mismatch)."""


class PegInTxMismatch(PegInError):
    """The serialized mainchain transaction is not the claimed prevout's
    transaction, or has no output at the claimed index (Peg-in tx is invalid)."""


class PegInValueMismatch(PegInError):
    """The witness's value is not the mainchain output's value."""


class PegInValueTooLow(PegInError):
    """The claimed mainchain output is worth less than the peg's minimum."""


class PegInOutputMismatch(PegInError):
    """The claimed mainchain output does not pay the peg-in address of the
    witness's claim script: P2WSH of the fedpegscript tweaked by it."""


class ClaimScriptMismatch(PegInOutputMismatch):
    """The output pays a P2WSH, but not the one the claim script in the witness
    derives: the peg-in address was made for another claim script."""


class NotPegInAddress(PegInOutputMismatch):
    """The output is no peg-in address at all: not a P2WSH, or the untweaked
    fedpegscript's."""


class PegInBlockNotInBestChain(PegInError):
    """The proof's block is not in this member's best mainchain (unknown or
    reorganized away)."""


class PegInInsufficientDepth(PegInError):
    """The proof's block has fewer confirmations than pegin_min_depth (Needs
    more confirmations.)."""


class PegOutError(TransactionError):
    """Base for peg-out rejections (Elements: invalid-pegout-proof in the
    mempool, bad-pak-tx in a block)."""


class WrongParentChain(PegOutError):
    """A peg-out naming a parent genesis hash other than the peg's."""


class BadPegOutDestination(PegOutError):
    """A peg-out destination that is not P2PKH, P2WPKH or P2SH-P2WPKH of the
    peg-out's PAK pubkey (or, without PAK, not a payable standard script)."""


class BlindedPegOut(PegOutError):
    """A peg-out whose asset or amount is not explicit: the watchmen could
    not see what to pay."""


class UnauthorizedPegOut(PegOutError):
    """A peg-out without a PAK pubkey and whitelist proof, with a malformed
    one, or with a proof that does not verify against the peg's PAK list (an
    exchange not in the list)."""

"""The watchmen's refusals, one class per rule broken.

    WatchmenError (FunctionaryError)
    ├── LedgerError                    an event the ledger cannot apply (a peg-in claimed
    │                                  twice, a block out of order, a confirmed payout
    │                                  spending a coin the federation does not hold)
    ├── PayoutError                    check_payout: a payout a watchman must not sign
    │   ├── MalformedPayout            version, locktime, sequences, scriptSig, counts,
    │   │                              duplicate inputs, two change outputs, too heavy
    │   ├── NotFederationInput         an input that is not a federation UTXO
    │   ├── UnknownOutput              an output to a script no unpaid peg-out names,
    │   │                              and not the federation's change
    │   ├── WrongAmount                a peg-out's destination, another amount
    │   ├── PegOutNotFinal             a peg-out too shallow on the sidechain
    │   ├── PegOutAlreadyPaid          paid by a confirmed payout, or in flight in a
    │   │                              payout this one does not conflict with
    │   ├── DuplicatePegOut            more outputs for a peg-out than there are peg-outs
    │   ├── DustChange                 change below the minimum
    │   ├── OutputsExceedInputs        a negative fee
    │   ├── FeeTooLow / FeeTooHigh     fee rate outside the configured bounds
    │   └── ReplacementFeeTooLow       a conflicting payout that BIP125 would refuse
    ├── SigningRefused                 the signer's durable safety rule
    │   └── ConflictsWithSignedPayout  disjoint from a payout this watchman signed that
    │                                  is neither confirmed nor dead (carries it)
    ├── SignatureError                 combining signatures
    │   ├── BadPartialSignature        a watchman's signature that does not verify
    │   └── NotEnoughSignatures        fewer than m valid signatures for an input
    └── BumpNotPossible                the replacement would exceed the maximum fee rate

Messages carry txids, outpoints, amounts and indices only: never key material.
"""

from __future__ import annotations

from ..errors import FunctionaryError


class WatchmenError(FunctionaryError):
    """Root of the watchmen's errors."""


class LedgerError(WatchmenError):
    """An event the ledger refuses; the ledger is left unchanged."""


class PayoutError(WatchmenError):
    """A proposed payout breaks a rule (the class names it)."""


class MalformedPayout(PayoutError):
    pass


class NotFederationInput(PayoutError):
    pass


class UnknownOutput(PayoutError):
    pass


class WrongAmount(PayoutError):
    pass


class PegOutNotFinal(PayoutError):
    pass


class PegOutAlreadyPaid(PayoutError):
    pass


class DuplicatePegOut(PayoutError):
    pass


class DustChange(PayoutError):
    pass


class OutputsExceedInputs(PayoutError):
    pass


class FeeTooLow(PayoutError):
    pass


class FeeTooHigh(PayoutError):
    pass


class ReplacementFeeTooLow(PayoutError):
    pass


class SigningRefused(WatchmenError):
    """The signer's durable rule forbids this signature."""


class ConflictsWithSignedPayout(SigningRefused):
    """The proposal shares no input with the payouts in ``earlier`` (each the
    serialization, without witness, of a payout this watchman signed that
    may still confirm), so both could confirm. The leader should propose a
    payout that spends one input of each (``payout.conflict_inputs``)."""

    def __init__(self, message: str, earlier: tuple[bytes, ...]) -> None:
        super().__init__(message)
        self.earlier = earlier


class SignatureError(WatchmenError):
    pass


class BadPartialSignature(SignatureError):
    pass


class NotEnoughSignatures(SignatureError):
    pass


class BumpNotPossible(WatchmenError):
    pass


__all__ = [
    "BadPartialSignature",
    "BumpNotPossible",
    "ConflictsWithSignedPayout",
    "DuplicatePegOut",
    "DustChange",
    "FeeTooHigh",
    "FeeTooLow",
    "LedgerError",
    "MalformedPayout",
    "NotEnoughSignatures",
    "NotFederationInput",
    "OutputsExceedInputs",
    "PayoutError",
    "PegOutAlreadyPaid",
    "PegOutNotFinal",
    "ReplacementFeeTooLow",
    "SignatureError",
    "SigningRefused",
    "UnknownOutput",
    "WatchmenError",
    "WrongAmount",
]

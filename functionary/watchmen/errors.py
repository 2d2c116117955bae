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

from consensus.hashes import hash_to_hex

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
    """The proposal shares no input with ``earlier`` (a BtcTransaction this
    watchman signed, still live), so both could confirm. The leader should
    record ``earlier`` and propose a replacement of it."""

    def __init__(self, message: str, earlier_txid: bytes, earlier_tx: bytes) -> None:
        super().__init__(message)
        self.earlier_txid = earlier_txid
        self.earlier_tx = earlier_tx

    @property
    def earlier_txid_hex(self) -> str:
        return hash_to_hex(self.earlier_txid)


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

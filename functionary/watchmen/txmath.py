"""Bitcoin arithmetic the watchmen need: outpoints, the BIP143 signature hash,
weights, virtual sizes and fees. Pure; independent of any node.

Weight and virtual size (BIP141)::

    weight = 4 · size without witness + (2 + Σ witness stacks)   (marker, flag)
    vsize  = ⌈weight / 4⌉

A payout is sized *before* it is signed, with every signature at its largest
low-S DER size (:data:`MAX_SIG_SIZE`, hash type included), so the estimate
is an upper bound on the signed transaction's vsize, the same for every
member (each computes it from the unsigned transaction and the ledger), and
the fee paid is never below the rate agreed on.

Fee rates are integers in sat/kvB, as Bitcoin Core's ``CFeeRate``; a fee is
``⌈rate · vsize / 1000⌉``.

BIP143 preimage (SIGHASH_ALL only, the one type the watchmen sign)::

    version (i32) | hashPrevouts | hashSequence | outpoint (36) |
    scriptCode (varbytes) | amount (i64) | nSequence (u32) | hashOutputs |
    nLockTime (u32) | sighash type (u32)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import total_ordering

from consensus.hashes import hash_to_hex, sha256d
from consensus.mainchain import BtcTransaction, BtcTxIn
from consensus.serialize import ser_compact_size, ser_i32, ser_i64, ser_u32, ser_varbytes

SIGHASH_ALL = 0x01
RBF_SEQUENCE = 0xFFFFFFFD
"""nSequence of every payout input: below 0xFFFFFFFE, so it signals BIP125
replaceability; bit 31 set, so BIP68 reads no relative lock-time into it."""
PAYOUT_VERSION = 2
MAX_SIG_SIZE = 72
"""A low-S DER signature is at most 71 bytes (33-byte r, 32-byte s), plus the
sighash byte."""
MAX_STANDARD_TX_WEIGHT = 400_000
WITNESS_SCALE = 4


@total_ordering
@dataclass(frozen=True, slots=True)
class MainOutPoint:
    """A mainchain output: txid (internal byte order) and index."""

    txid: bytes
    vout: int

    def __post_init__(self) -> None:
        if len(self.txid) != 32:
            raise ValueError("txid is 32 bytes")
        if not 0 <= self.vout <= 0xFFFFFFFF:
            raise ValueError("vout is uint32")

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, MainOutPoint):
            return NotImplemented
        return (self.txid, self.vout) < (other.txid, other.vout)

    def serialize(self) -> bytes:
        return self.txid + ser_u32(self.vout)

    @classmethod
    def of(cls, txin: BtcTxIn) -> MainOutPoint:
        return cls(txin.prev_txid, txin.prev_index)

    def __repr__(self) -> str:
        return f"{hash_to_hex(self.txid)}:{self.vout}"


# --- signature hash -------------------------------------------------------------------


class Bip143Cache:
    """BIP143's three shared midstates, computed once per transaction."""

    __slots__ = ("hash_outputs", "hash_prevouts", "hash_sequence")

    def __init__(self, tx: BtcTransaction) -> None:
        self.hash_prevouts = sha256d(b"".join(i.prev_txid + ser_u32(i.prev_index) for i in tx.inputs))
        self.hash_sequence = sha256d(b"".join(ser_u32(i.sequence) for i in tx.inputs))
        self.hash_outputs = sha256d(b"".join(o.serialize() for o in tx.outputs))


def bip143_sighash(
    tx: BtcTransaction, index: int, script_code: bytes, amount: int, cache: Bip143Cache | None = None
) -> bytes:
    """The BIP143 SIGHASH_ALL digest of input ``index`` spending ``amount``
    satoshis locked by ``script_code`` (for P2WSH: the witnessScript)."""
    if not 0 <= index < len(tx.inputs):
        raise ValueError(f"input {index} out of range")
    c = cache or Bip143Cache(tx)
    txin = tx.inputs[index]
    preimage = (
        ser_i32(tx.version)
        + c.hash_prevouts
        + c.hash_sequence
        + txin.prev_txid
        + ser_u32(txin.prev_index)
        + ser_varbytes(script_code)
        + ser_i64(amount)
        + ser_u32(txin.sequence)
        + c.hash_outputs
        + ser_u32(tx.locktime)
        + ser_u32(SIGHASH_ALL)
    )
    return sha256d(preimage)


# --- sizes and fees -------------------------------------------------------------------


def stack_size(items: Sequence[bytes]) -> int:
    """Serialized size of one witness stack."""
    return len(ser_compact_size(len(items))) + sum(len(ser_compact_size(len(i))) + len(i) for i in items)


def multisig_witness_size(n_sigs: int, witness_script: bytes, sig_size: int = MAX_SIG_SIZE) -> int:
    """Size of ``[dummy, sig × n_sigs, witness_script]``."""
    return stack_size([b"", *([b"\x00" * sig_size] * n_sigs), witness_script])


def weight(tx: BtcTransaction) -> int:
    base = len(tx.serialize_without_witness())
    if not tx.has_witness:
        return WITNESS_SCALE * base
    return WITNESS_SCALE * base + len(tx.serialize()) - base


def vsize(tx: BtcTransaction) -> int:
    return (weight(tx) + WITNESS_SCALE - 1) // WITNESS_SCALE


def estimated_weight(tx: BtcTransaction, witness_sizes: Sequence[int]) -> int:
    """Weight of ``tx`` once input i carries a witness of ``witness_sizes[i]``
    bytes (its present witness, if any, is ignored)."""
    if len(witness_sizes) != len(tx.inputs):
        raise ValueError("one witness size per input")
    base = len(tx.serialize_without_witness())
    return WITNESS_SCALE * base + 2 + sum(witness_sizes)


def vsize_of_weight(w: int) -> int:
    return (w + WITNESS_SCALE - 1) // WITNESS_SCALE


def fee_for(rate_sat_per_kvb: int, size: int) -> int:
    """⌈rate · vsize / 1000⌉, as Core's ``CFeeRate::GetFee``."""
    return (rate_sat_per_kvb * size + 999) // 1000


def strip_witness(tx: BtcTransaction) -> BtcTransaction:
    return BtcTransaction(tx.version, tx.inputs, tx.outputs, tx.locktime)


__all__ = [
    "MAX_SIG_SIZE",
    "MAX_STANDARD_TX_WEIGHT",
    "PAYOUT_VERSION",
    "RBF_SEQUENCE",
    "SIGHASH_ALL",
    "Bip143Cache",
    "MainOutPoint",
    "bip143_sighash",
    "estimated_weight",
    "fee_for",
    "multisig_witness_size",
    "stack_size",
    "strip_witness",
    "vsize",
    "vsize_of_weight",
    "weight",
]

"""Signing payouts: each watchman's signatures, their combination into the
witness the fedpegscript wants, and the durable rule that keeps a watchman
from signing two payouts that could both confirm.

**Keys.** Watchman j signs an input that spends a peg-in output with
``sk_j + HMAC-SHA256(P_j, claim_script)`` (Elements' pay-to-contract,
``consensus.peg.tweak_private_key``), and a change output with ``sk_j``. The
digest is BIP143's, SIGHASH_ALL, over that input's witnessScript (the
tweaked, or untweaked, fedpegscript) and amount.

**Witness** of every input (the watchmen branch)::

    item      content
    0         empty (CHECKMULTISIG's extra pop; NULLDUMMY wants it empty)
    1 .. m    signatures (DER + 0x01) of m watchmen, in the order of their
              keys in the script (CHECKMULTISIG walks keys and signatures in
              step and never goes back)
    m + 1     witnessScript

OP_DEPTH runs before anything is popped and counts items 0..m: m + 1, which
is exactly what ``OP_DEPTH <m+1> OP_EQUAL OP_IF`` selects; the emergency
branch's k + 1 items select OP_ELSE.

**The rule** (:class:`Watchman`). A watchman signs a payout only if it passes
``check_payout`` and, for every payout it signed before that is still live
(neither confirmed nor dead in the ledger), the new one spends at least one
of the same inputs, so at most one of them can ever confirm. Re-signing the
same transaction is allowed (signatures are deterministic, RFC 6979). The
set of payouts signed is persisted before any signature leaves:
:meth:`Watchman.on_proposal` returns ``[PersistSignerState, SendSignatures]``
and the runtime must carry them out in that order, durably.

With at most 2m − n − 1 faulty watchmen, two payouts that both gather m
signatures share an honest signer, who signed the later only because it
conflicts with the earlier: no two of them confirm, so no peg-out is paid
twice.

Signer state serialization: ``"WSG" | version u8 | count | each: height u32 |
tx varbytes`` (without witness), in signing order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

from coincurve import PrivateKey, PublicKey

from consensus.errors import ParseError
from consensus.hashes import hash_to_hex
from consensus.mainchain import BtcTransaction
from consensus.peg import PegParams, tweak_private_key, tweak_pubkey
from consensus.script import is_low_s, is_strict_der
from consensus.serialize import ByteReader, parse_exact, ser_compact_size, ser_u32, ser_varbytes

from .errors import BadPartialSignature, ConflictsWithSignedPayout, NotEnoughSignatures
from .ledger import FedUtxo, Ledger
from .params import WatchmenParams
from .payout import PayoutCheck, check_payout
from .txmath import SIGHASH_ALL, Bip143Cache, MainOutPoint, bip143_sighash, strip_witness

# --- keys and digests -----------------------------------------------------------------------


@lru_cache(maxsize=65536)
def _tweaked_pub(pubkey: bytes, claim_script: bytes | None) -> PublicKey:
    return PublicKey(pubkey if claim_script is None else tweak_pubkey(pubkey, claim_script))


def input_key(key: PrivateKey, claim_script: bytes | None) -> PrivateKey:
    """The private key a watchman signs a coin with."""
    return key if claim_script is None else tweak_private_key(key, claim_script)


def input_digests(tx: BtcTransaction, utxos: Sequence[FedUtxo], peg: PegParams) -> list[bytes]:
    """BIP143 digests of every input of ``tx`` (spending ``utxos``, in order)."""
    if len(utxos) != len(tx.inputs):
        raise ValueError("one coin per input")
    tx = strip_witness(tx)
    cache = Bip143Cache(tx)
    return [bip143_sighash(tx, i, u.witness_script(peg), u.value, cache) for i, u in enumerate(utxos)]


def sign_inputs(key: PrivateKey, tx: BtcTransaction, utxos: Sequence[FedUtxo], peg: PegParams) -> tuple[bytes, ...]:
    """One signature (DER + SIGHASH_ALL) per input, by ``key``."""
    digests = input_digests(tx, utxos, peg)
    return tuple(
        input_key(key, u.claim_script).sign(d, hasher=None) + bytes((SIGHASH_ALL,))
        for u, d in zip(utxos, digests, strict=True)
    )


def verify_signatures(
    index: int, sigs: Sequence[bytes], tx: BtcTransaction, utxos: Sequence[FedUtxo], peg: PegParams
) -> None:
    """BadPartialSignature unless ``sigs`` are watchman ``index``'s valid,
    low-S, SIGHASH_ALL signatures of every input."""
    if not 0 <= index < len(peg.watchman_keys):
        raise BadPartialSignature(f"no watchman {index}")
    if len(sigs) != len(tx.inputs):
        raise BadPartialSignature(f"watchman {index}: {len(sigs)} signatures for {len(tx.inputs)} inputs")
    pub = peg.watchman_keys[index]
    for i, (sig, u, d) in enumerate(zip(sigs, utxos, input_digests(tx, utxos, peg), strict=True)):
        der = sig[:-1]
        if not sig or sig[-1] != SIGHASH_ALL or not is_strict_der(der) or not is_low_s(der):
            raise BadPartialSignature(f"watchman {index} input {i}: not a low-S DER SIGHASH_ALL signature")
        try:
            ok = _tweaked_pub(pub, u.claim_script).verify(der, d, hasher=None)
        except ValueError:
            ok = False
        if not ok:
            raise BadPartialSignature(f"watchman {index} input {i}: signature does not verify")


def combine(
    tx: BtcTransaction, utxos: Sequence[FedUtxo], peg: PegParams, sigs: Mapping[int, Sequence[bytes]]
) -> BtcTransaction:
    """The fully signed payout: for every input, the signatures of the first
    m watchmen (by key order) in ``sigs`` whose signatures all verify.
    NotEnoughSignatures with fewer than m such watchmen."""
    m = peg.peg_threshold
    good: list[int] = []
    for index in sorted(sigs):
        try:
            verify_signatures(index, sigs[index], tx, utxos, peg)
        except BadPartialSignature:
            continue
        good.append(index)
        if len(good) == m:
            break
    if len(good) < m:
        raise NotEnoughSignatures(
            f"payout {hash_to_hex(tx.txid)}: {len(good)} valid watchmen of {len(sigs)}, {m} needed"
        )
    witnesses = tuple((b"", *(sigs[j][i] for j in good), u.witness_script(peg)) for i, u in enumerate(utxos))
    base = strip_witness(tx)
    return BtcTransaction(base.version, base.inputs, base.outputs, base.locktime, witnesses)


def coins_of(ledger: Ledger, tx: BtcTransaction) -> list[FedUtxo]:
    """The federation coins ``tx`` spends, in input order (KeyError if one is not)."""
    out = []
    for txin in tx.inputs:
        u = ledger.utxo(MainOutPoint.of(txin))
        if u is None:
            raise KeyError(MainOutPoint.of(txin))
        out.append(u)
    return out


# --- the signer's durable state ------------------------------------------------------------------

_MAGIC = b"WSG"
_VERSION = 1


@dataclass(frozen=True, slots=True)
class SignedPayout:
    tx: BtcTransaction
    """Without witness."""
    height: int
    """Mainchain tip height when signed."""

    @property
    def txid(self) -> bytes:
        return self.tx.txid

    @property
    def inputs(self) -> frozenset[MainOutPoint]:
        return frozenset(MainOutPoint.of(i) for i in self.tx.inputs)


@dataclass(frozen=True, slots=True)
class SignerState:
    """Payouts this watchman signed that were live when it last looked."""

    signed: tuple[SignedPayout, ...] = ()

    def serialize(self) -> bytes:
        out = bytearray(_MAGIC)
        out.append(_VERSION)
        out += ser_compact_size(len(self.signed))
        for p in self.signed:
            out += ser_u32(p.height) + ser_varbytes(p.tx.serialize_without_witness())
        return bytes(out)

    @classmethod
    def parse(cls, data: bytes) -> SignerState:
        def read(r: ByteReader) -> SignerState:
            if r.read(3) != _MAGIC or r.read_u8() != _VERSION:
                raise ParseError("not a watchman signer state")
            items = []
            for _ in range(r.read_count(5)):
                height = r.read_u32()
                items.append(SignedPayout(BtcTransaction.parse(r.read_varbytes()), height))
            return cls(tuple(items))

        return parse_exact(data, read)


# --- effects -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PersistSignerState:
    """Write ``state.serialize()`` durably (``peg_put(SIGNER_STATE_KEY, ...)``)
    before carrying out any later effect."""

    state: SignerState


@dataclass(frozen=True, slots=True)
class SendSignatures:
    """Send to the leader (or everyone): watchman ``index``'s signatures of
    every input of ``txid``."""

    txid: bytes
    index: int
    signatures: tuple[bytes, ...]


Effect = PersistSignerState | SendSignatures


class Watchman:
    """One watchman's signer: pure (no I/O); the runtime persists and sends."""

    def __init__(self, index: int, key: PrivateKey, params: WatchmenParams, state: SignerState | None = None) -> None:
        peg = params.peg
        if not 0 <= index < len(peg.watchman_keys) or key.public_key.format() != peg.watchman_keys[index]:
            raise ValueError(f"the key is not watchman {index}'s")
        self.index = index
        self._key = key
        self.params = params
        self.state = state or SignerState()

    def live(self, ledger: Ledger) -> list[SignedPayout]:
        """Signed payouts that could still confirm."""
        return [p for p in self.state.signed if not ledger.is_settled(p.tx)]

    def on_proposal(
        self, ledger: Ledger, tx: BtcTransaction, mainchain_height: int, *, sidechain_height: int | None = None
    ) -> tuple[PayoutCheck, list[Effect]]:
        """Check ``tx`` and, if this watchman may, sign it. Raises a
        PayoutError (check_payout) or ConflictsWithSignedPayout. The effects
        are [PersistSignerState, SendSignatures]: persist first."""
        tx = strip_witness(tx)
        check = check_payout(ledger, tx, self.params, sidechain_height=sidechain_height)
        live = self.live(ledger)
        already = any(p.txid == tx.txid for p in live)
        if not already:
            ins = frozenset(MainOutPoint.of(i) for i in tx.inputs)
            disjoint = [p for p in live if not ins & p.inputs]
            if disjoint:
                raise ConflictsWithSignedPayout(
                    f"watchman {self.index}: payout {tx.txid_hex} shares no input with "
                    + ", ".join(p.tx.txid_hex for p in disjoint)
                    + ", which it signed and which may still confirm",
                    tuple(p.tx.serialize_without_witness() for p in disjoint),
                )
            live.append(SignedPayout(tx, mainchain_height))
        sigs = sign_inputs(self._key, tx, check.inputs, self.params.peg)
        self.state = SignerState(tuple(live))
        return check, [PersistSignerState(self.state), SendSignatures(tx.txid, self.index, sigs)]


__all__ = [
    "Effect",
    "PersistSignerState",
    "SendSignatures",
    "SignedPayout",
    "SignerState",
    "Watchman",
    "coins_of",
    "combine",
    "input_digests",
    "input_key",
    "sign_inputs",
    "verify_signatures",
]

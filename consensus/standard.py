"""The output templates this chain accepts, and the checks of their spends.

Outputs (anything else is :class:`NonStandardScript`):

    kind     scriptPubKey                                       in UTXO set
    P2WPKH   OP_0 <20: hash160(pubkey)>                         yes
    P2WSH    OP_0 <32: sha256(witnessScript)>                   yes
    FEE      empty; asset and value explicit (Elements IsFee)   no
    BURN     OP_RETURN <data pushes>                            no
    PEGOUT   OP_RETURN <32: parent genesis hash>                no
             <parent scriptPubKey> [<33: PAK pubkey> <whitelist proof>]

A peg-out is recognized by shape, as Elements' ``IsPegoutScript``: after
the genesis hash and the destination, every further element must be a data
push. Checking the PAK proof is the peg's job, not this module's.

Spends (witness version 0 only; the scriptSig must be empty):

    P2WPKH   witness [<sig>, <33-byte compressed pubkey>]
    P2WSH    witness ["", <sig_1> .. <sig_m>, <witnessScript>]
             witnessScript = OP_m <33-byte key_1> .. <key_n> OP_n OP_CHECKMULTISIG

A signature is strict DER with low S, followed by one sighash byte. The
message is Elements' segwit v0 signature hash, computed by libwally from
the transaction's bytes (one parse per transaction, reused for every input)
and committing to the spent output's serialized confidential value.

Accepted sighash types are the six Elements calls defined under STRICTENC:
ALL, NONE and SINGLE, each with or without ANYONECANPAY. SIGHASH_RANGEPROOF
(0x40) is refused: it only means something for confidential outputs, which
this chain does not validate yet, and refusing it now keeps every accepted
signature's meaning fixed when they arrive.

Multisig is checked with CHECKMULTISIG's walk: each signature, in order,
must verify under a key at or after the key the previous one matched, with
NULLDUMMY (the dummy element is empty) and CLEANSTACK (exactly m
signatures). The multisig script itself must be the canonical template
with minimal pushes (:func:`consensus.script.parse_multisig_script`).
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import wallycore as wally
from coincurve import PrivateKey, PublicKey

from .errors import BadFeeOutput, BadTxSignature, NonStandardScript, ParseError, ScriptVerifyError
from .hashes import hash160
from .script import (
    MAX_SCRIPT_ELEMENT_SIZE,
    OP_0,
    OP_RETURN,
    is_low_s,
    is_strict_der,
    iter_ops,
    parse_multisig_script,
    push_data,
)
from .transaction import ConfidentialValue, Transaction, TxOut

MAX_SCRIPT_SIZE = 10_000
"""Bitcoin's consensus bound on any script, scriptPubKeys and witnessScripts
included."""

SIGHASH_ALL = 0x01
SIGHASH_NONE = 0x02
SIGHASH_SINGLE = 0x03
SIGHASH_RANGEPROOF = 0x40
SIGHASH_ANYONECANPAY = 0x80
ACCEPTED_SIGHASH_TYPES = frozenset(
    {SIGHASH_ALL, SIGHASH_NONE, SIGHASH_SINGLE}
    | {t | SIGHASH_ANYONECANPAY for t in (SIGHASH_ALL, SIGHASH_NONE, SIGHASH_SINGLE)}
)

_WALLY_TX_FLAGS = wally.WALLY_TX_FLAG_USE_WITNESS | wally.WALLY_TX_FLAG_USE_ELEMENTS
_WALLY_SEGWIT_V0 = wally.WALLY_TX_FLAG_USE_WITNESS
"""``tx_get_elements_signature_hash`` flag selecting the BIP143-style
(segwit v0) hash rather than the legacy one."""


# --- Output templates -----------------------------------------------------------


class OutputKind(enum.Enum):
    P2WPKH = "p2wpkh"
    P2WSH = "p2wsh"
    FEE = "fee"
    BURN = "burn"
    PEGOUT = "pegout"

    @property
    def spendable(self) -> bool:
        return self in (OutputKind.P2WPKH, OutputKind.P2WSH)


@dataclass(frozen=True, slots=True)
class PegOut:
    """A peg-out output's destination on the parent chain."""

    genesis_hash: bytes
    parent_script: bytes
    extra: tuple[bytes, ...] = ()
    """Pushes after the destination: with PAK, exactly a 33-byte pubkey and a
    whitelist proof."""

    @property
    def pak_pubkey(self) -> bytes | None:
        if len(self.extra) == 2 and len(self.extra[0]) == 33:
            return self.extra[0]
        return None

    @property
    def whitelist_proof(self) -> bytes | None:
        return self.extra[1] if self.pak_pubkey is not None else None


def p2wpkh_script(pubkey: bytes) -> bytes:
    if len(pubkey) != 33:
        raise ValueError("P2WPKH takes a compressed public key")
    return bytes((OP_0, 20)) + hash160(pubkey)


def p2wsh_script(witness_script: bytes) -> bytes:
    return bytes((OP_0, 32)) + hashlib.sha256(witness_script).digest()


def p2wpkh_script_code(program: bytes) -> bytes:
    """BIP143's scriptCode for a P2WPKH program: the P2PKH script."""
    return b"\x76\xa9\x14" + program + b"\x88\xac"


def pegout_script(genesis_hash: bytes, parent_script: bytes, extra: tuple[bytes, ...] = ()) -> bytes:
    if len(genesis_hash) != 32:
        raise ValueError("genesis hash is 32 bytes")
    return (
        bytes((OP_RETURN,)) + push_data(genesis_hash) + push_data(parent_script) + b"".join(push_data(e) for e in extra)
    )


def parse_pegout(script: bytes) -> PegOut | None:
    """The peg-out in ``script``, or None if it does not have that shape."""
    if not script or script[0] != OP_RETURN:
        return None
    try:
        ops = iter_ops(script[1:])
    except ParseError:
        return None
    if len(ops) < 2 or any(data is None for _, data in ops):
        return None
    genesis = ops[0][1]
    if genesis is None or len(genesis) != 32:
        return None
    pushes = [data for _, data in ops if data is not None]
    return PegOut(genesis, pushes[1], tuple(pushes[2:]))


def classify_output(out: TxOut) -> OutputKind:
    """The template of ``out``; NonStandardScript or BadFeeOutput otherwise."""
    spk = out.script_pubkey
    n = len(spk)
    if n == 22 and spk[0] == OP_0 and spk[1] == 20:
        return OutputKind.P2WPKH
    if n == 34 and spk[0] == OP_0 and spk[1] == 32:
        return OutputKind.P2WSH
    if n == 0:
        if not out.is_fee:
            raise BadFeeOutput("an output with an empty script is a fee and must be explicit")
        return OutputKind.FEE
    if n > MAX_SCRIPT_SIZE:
        raise NonStandardScript(f"script of {n} bytes")
    if spk[0] == OP_RETURN:
        try:
            ops = iter_ops(spk[1:])
        except ParseError as e:
            raise NonStandardScript(f"malformed OP_RETURN script: {e}") from None
        if any(data is None for _, data in ops):
            raise NonStandardScript("an OP_RETURN script may carry only data pushes")
        return OutputKind.PEGOUT if parse_pegout(spk) is not None else OutputKind.BURN
    raise NonStandardScript(f"unknown output script {spk[:40].hex()}")


# --- Signature hash -------------------------------------------------------------


class SignatureHasher:
    """Elements segwit v0 signature hashes for one transaction.

    The transaction is handed to libwally once; each input's hash then costs
    one C call.
    """

    __slots__ = ("_wtx",)

    def __init__(self, tx: Transaction) -> None:
        try:
            self._wtx = wally.tx_from_bytes(tx.serialize(), _WALLY_TX_FLAGS)
        except (ValueError, TypeError) as e:  # wally refuses what it cannot represent
            raise ScriptVerifyError(f"cannot compute signature hashes for this transaction: {e}") from None

    def __call__(self, index: int, script_code: bytes, value: bytes, hashtype: int) -> bytes:
        """The hash signed by input ``index`` spending an output whose
        serialized confidential value is ``value``."""
        try:
            digest = wally.tx_get_elements_signature_hash(
                self._wtx, index, script_code, value, hashtype, _WALLY_SEGWIT_V0
            )
        except ValueError as e:  # e.g. a null value, which no spendable output has
            raise ScriptVerifyError(f"no signature hash for input {index}: {e}") from None
        return bytes(digest)


def signature_hash(tx: Transaction, index: int, script_code: bytes, value: ConfidentialValue, hashtype: int) -> bytes:
    """Convenience for signers: one input's segwit v0 signature hash."""
    return SignatureHasher(tx)(index, script_code, value.raw, hashtype)


def sign_segwit_v0(
    key: PrivateKey,
    tx: Transaction,
    index: int,
    script_code: bytes,
    value: ConfidentialValue,
    hashtype: int = SIGHASH_ALL,
) -> bytes:
    """A witness signature (DER, low S, then the sighash byte). coincurve
    signs deterministically (RFC 6979), so this needs no randomness."""
    if hashtype not in ACCEPTED_SIGHASH_TYPES:
        raise ValueError(f"sighash type 0x{hashtype:02x} is not accepted by this chain")
    digest = signature_hash(tx, index, script_code, value, hashtype)
    der: bytes = key.sign(digest, hasher=None)
    return der + bytes((hashtype,))


# --- Spend verification ---------------------------------------------------------


def _split_signature(sig: bytes) -> tuple[bytes, int]:
    """(DER, hashtype) of a witness signature, or BadTxSignature."""
    if not sig:
        raise BadTxSignature("empty signature")
    der = sig[:-1]
    hashtype = sig[-1]
    if not is_strict_der(der):
        raise BadTxSignature("signature is not strict DER")
    if not is_low_s(der):
        raise BadTxSignature("signature S is not low")
    if hashtype not in ACCEPTED_SIGHASH_TYPES:
        raise BadTxSignature(f"sighash type 0x{hashtype:02x} is not accepted")
    return der, hashtype


def _parse_key(pubkey: bytes) -> PublicKey:
    if len(pubkey) != 33 or pubkey[0] not in (2, 3):
        raise NonStandardScript("public keys must be compressed (33 bytes)")
    try:
        return PublicKey(pubkey)
    except ValueError:
        raise ScriptVerifyError("public key is not a point on the curve") from None


def _verify(key: PublicKey, der: bytes, digest: bytes) -> bool:
    try:
        ok: bool = key.verify(der, digest, hasher=None)
    except ValueError:  # a DER coincurve cannot parse; strict DER excludes it
        return False
    return ok


def verify_spend(hasher: Callable[[int, bytes, bytes, int], bytes], tx: Transaction, index: int, spent: TxOut) -> None:
    """Check that input ``index`` of ``tx`` satisfies ``spent``'s script.

    ``hasher`` is a :class:`SignatureHasher` for ``tx``. Raises
    NonStandardScript (not a template), ScriptVerifyError (wrong witness
    shape or program hash) or BadTxSignature.
    """
    if tx.inputs[index].script_sig:
        raise ScriptVerifyError("a witness spend has an empty scriptSig")
    spk = spent.script_pubkey
    stack = tx.input_witnesses[index].script_witness
    n = len(spk)
    if n == 22 and spk[0] == OP_0 and spk[1] == 20:
        _verify_p2wpkh(hasher, index, spk[2:], spent.value.raw, stack)
    elif n == 34 and spk[0] == OP_0 and spk[1] == 32:
        _verify_p2wsh(hasher, index, spk[2:], spent.value.raw, stack)
    else:
        raise NonStandardScript(f"cannot spend script {spk[:40].hex()}")


def _verify_p2wpkh(
    hasher: Callable[[int, bytes, bytes, int], bytes],
    index: int,
    program: bytes,
    value: bytes,
    stack: tuple[bytes, ...],
) -> None:
    if len(stack) != 2:
        raise ScriptVerifyError(f"P2WPKH witness has {len(stack)} items, needs 2")
    sig, pubkey = stack
    if hash160(pubkey) != program:
        raise ScriptVerifyError("public key does not hash to the P2WPKH program")
    key = _parse_key(pubkey)
    der, hashtype = _split_signature(sig)
    digest = hasher(index, p2wpkh_script_code(program), value, hashtype)
    if not _verify(key, der, digest):
        raise BadTxSignature(f"input {index}: signature does not verify")


def _verify_p2wsh(
    hasher: Callable[[int, bytes, bytes, int], bytes],
    index: int,
    program: bytes,
    value: bytes,
    stack: tuple[bytes, ...],
) -> None:
    if not stack:
        raise ScriptVerifyError("empty P2WSH witness")
    witness_script = stack[-1]
    if len(witness_script) > MAX_SCRIPT_SIZE:
        raise ScriptVerifyError("witness script too large")
    if hashlib.sha256(witness_script).digest() != program:
        raise ScriptVerifyError("witness script does not hash to the P2WSH program")
    try:
        m, keys = parse_multisig_script(witness_script)
    except ParseError as e:
        raise NonStandardScript(f"witness script is not canonical multisig: {e}") from None
    items = stack[:-1]
    if len(items) != m + 1:
        raise ScriptVerifyError(f"multisig witness has {len(items)} items before the script, needs dummy + {m}")
    if items[0]:
        raise ScriptVerifyError("CHECKMULTISIG dummy must be empty (NULLDUMMY)")
    sigs = items[1:]
    if any(len(s) > MAX_SCRIPT_ELEMENT_SIZE for s in sigs):
        raise ScriptVerifyError("witness element too large")
    parsed = [_split_signature(s) for s in sigs]
    digests: dict[int, bytes] = {}
    k = 0
    for i, (der, hashtype) in enumerate(parsed):
        digest = digests.get(hashtype)
        if digest is None:
            digest = digests[hashtype] = hasher(index, witness_script, value, hashtype)
        while True:
            if len(keys) - k < len(parsed) - i:
                raise BadTxSignature(f"input {index}: signature {i} verifies under no remaining key in order")
            key = _parse_key(keys[k])
            k += 1
            if _verify(key, der, digest):
                break

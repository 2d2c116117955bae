"""Asset generators, value commitments and the ECDH rangeproof nonce, as Elements makes them.

    object              made from                         formula
    asset generator     asset id (32 B), abf              H_asset + abf*G      (0x0a/0x0b, 33 B)
    explicit generator  asset id                          H_asset              (abf = 0)
    value commitment    value, vbf, asset generator       value*gen + vbf*G    (0x08/0x09, 33 B)
    rangeproof nonce    blinding pubkey, ephemeral key    SHA256(SHA256(compressed(k*P)))

H_asset is libsecp256k1-zkp's ``secp256k1_generator_generate(asset id)``.

The nonce is Elements' ``GenerateOutputRangeproofNonce``/``UnblindConfidentialPair``
(src/blind.cpp): ``CKey::ECDH`` is libsecp256k1's default ECDH, the SHA256 of the
compressed shared point, and Elements hashes that once more. The sender uses
(recipient pubkey, ephemeral key); the recipient (recipient key, ephemeral
pubkey) and gets the same 32 bytes.

Creation goes through wallycore (libsecp256k1-zkp); nothing is computed by hand.
"""

from __future__ import annotations

from . import _lib
from .errors import BadScalar, ValueOutOfRange
from .points import ZERO32, check_asset_id, check_scalar, parse_asset_generator, parse_pubkey

wally = _lib.wally

MAX_UINT64 = 2**64 - 1


def asset_generator(asset_id: bytes, abf: bytes = ZERO32) -> bytes:
    """The blinded asset generator H_asset + abf*G (``abf`` zero gives the explicit one)."""
    aid = check_asset_id(asset_id)
    bf = check_scalar(abf, "asset blinding factor", allow_zero=True)
    try:
        return bytes(wally.asset_generator_from_bytes(aid, bf))
    except (ValueError, RuntimeError) as exc:  # pragma: no cover - inputs are checked above
        raise BadScalar(f"asset generator: library refused: {exc}") from exc


def explicit_generator(asset_id: bytes) -> bytes:
    """The unblinded generator of an asset, the one explicit amounts are committed under."""
    return asset_generator(asset_id, ZERO32)


def value_commitment(value: int, vbf: bytes, generator: bytes) -> bytes:
    """The Pedersen commitment value*generator + vbf*G (``vbf`` zero gives an explicit one)."""
    if not isinstance(value, int) or not 0 <= value <= MAX_UINT64:
        raise ValueOutOfRange(f"value {value!r} is not a 64-bit unsigned integer")
    bf = check_scalar(vbf, "value blinding factor", allow_zero=True)
    gen = parse_asset_generator(generator)
    if value == 0 and bf == ZERO32:
        raise BadScalar("a zero value with a zero blinding factor commits to the point at infinity")
    try:
        return bytes(wally.asset_value_commitment(value, bf, gen))
    except (ValueError, RuntimeError) as exc:  # pragma: no cover
        raise BadScalar(f"value commitment: library refused: {exc}") from exc


def ecdh_nonce(pubkey: bytes, privkey: bytes) -> bytes:
    """Elements' rangeproof nonce: SHA256(SHA256(compressed(privkey * pubkey)))."""
    pub = parse_pubkey(pubkey, "ECDH public key")
    priv = check_scalar(privkey, "ECDH private key")
    try:
        return bytes(wally.ecdh_nonce_hash(pub, priv))
    except (ValueError, RuntimeError) as exc:  # pragma: no cover
        raise BadScalar(f"ECDH: library refused: {exc}") from exc


def public_key(privkey: bytes) -> bytes:
    """The compressed public key of a private key (a blinding key, say)."""
    priv = check_scalar(privkey, "private key")
    return bytes(wally.ec_public_key_from_private_key(priv))

"""The user wallet: keys, confidential addresses, balance, payments, peg-ins and peg-outs.

A wallet is one JSON file (mode 0600; refused if group or others may read
it) bound to one federation. It talks to a member's HTTP API
(:class:`MemberApi`) for blocks and to submit transactions, and, to claim a
peg-in, to a mainchain node's JSON-RPC (:class:`~functionary.bitcoind.BitcoinRpc`).
Every state change is written (atomically: temporary file, fsync, rename)
before the side effect that depends on it: an address before it is shown,
the inputs a transaction spends before it is submitted.

**The file** (version 1):

    field            content
    version          1
    chain            chain_id, genesis (display hex), policy_asset, apis (members' URLs)
    peg              the federation's ``peg`` section, as federation.json has it
    seed             32 bytes, hex: the BIP32 seed
    blinding_master  32 bytes, hex: SLIP-77 master blinding key (derived from the seed at creation)
    imported_keys    secp256k1 secrets watched as P2WPKH (e.g. the devnet faucet)
    next             receive / change / claim: the next unused index of each chain
    scan             height and hash of the last block scanned
    utxos            txid, vout, script, path, value, asset, abf, vbf, value_field,
                     asset_field, height, locked_by (txid of our unconfirmed spend)
    pegins           index, claim_script, address, claimed_by
    pak              online PAK pubkey -> the next peg-out key index
    pending          txid, inputs: transactions submitted and not yet in a block
    history          txid, height, received, spent (this wallet's amounts)
    unreadable       outpoints that pay our scripts but do not unblind with our keys

**Keys.** BIP32 (through wallycore) from the seed, ``m/84'/1'/0'/c/i``:
c = 0 receiving, 1 change, 2 peg-in claim keys. Every output script is
P2WPKH of such a key. A peg-in's claim script is P2WPKH of a claim key; its
mainchain address is ``PegParams.pegin_address(claim_script)``.

**Blinding keys** (SLIP-77, as Blockstream Jade, Ledger and LWK derive them):

    master  = HMAC-SHA512(key="Symmetric key seed", seed)
    node    = HMAC-SHA512(key=master[0:32], 0x00 || "SLIP-0077")
    blinding_master = node[32:64]
    blinding key of a scriptPubKey = HMAC-SHA256(key=blinding_master, scriptPubKey)

(wallycore's ``asset_blinding_key_from_seed`` and
``asset_blinding_key_to_ec_private_key`` compute the same; the tests compare.)

**Addresses** on this sidechain use Elements regtest's prefixes: ``ert1…``
(bech32 segwit) and ``el1…`` (blech32 confidential: the blinding pubkey and
the witness program), encoded and decoded by wallycore. Mainchain
addresses (bech32 with the parent's prefix, or base58 P2PKH/P2SH) are only
accepted where coins go to the mainchain: peg-outs.

**Peg-out keys** (PAK). A peg-out names a mainchain destination that must
be P2PKH, P2WPKH or P2SH-P2WPKH of a pubkey P, and a whitelist proof made
with the exchange's online secret and the secret of ``offline + P``. As in
Elements (whose PAK list holds the *negated* cold key), the exchange never
needs its offline secret online: key i is

    t_i = HMAC-SHA256(key=online secret, "functionary/pak-pegout" || offline pubkey || i as 4 bytes)
    P_i = t_i·G − offline

so ``offline + P_i = t_i·G`` and the proof's summed secret is ``t_i``. The
coins arrive at an address of P_i, whose secret ``t_i − offline secret``
only the holder of the offline key can form (:func:`pegout_spending_key`).
A PAK peg-out therefore always pays the exchange's own cold wallet, as in
Elements; :meth:`Wallet.pegout_address` hands out the addresses.

**Spending.** The chain's mempool accepts only spends of outputs already
in blocks, so coins a submitted transaction spends stay locked, and its
change unspendable, until that transaction is in a block (:meth:`Wallet.sync`
sees it) or the member forgets it (then the inputs are released).

**Transactions.** Confidential by default (:func:`confidential.blind_outputs`:
every output with a blinding pubkey is blinded), an explicit fee output last,
change confidential back to a fresh change key. As Elements does, a
zero-value blinded OP_RETURN output is added when blinding would otherwise
fail or leak (one blinded output and only explicit inputs, e.g. a claim; or
blinded inputs and no blinded output). Inputs are signed SIGHASH_ALL with
Elements' segwit v0 hash.

**Errors** (each a :class:`WalletError`; ``code`` is the class name):

    WalletError
    ├── WalletFileError            missing, exists, corrupt
    │   └── WalletFileExposed      group/other may read the file
    ├── AddressError
    │   ├── InvalidAddress         not an address at all (checksum, alphabet, length)
    │   ├── WrongNetworkAddress    an address of another chain
    │   └── UnsupportedAddress     this chain's, but not payable by this operation
    ├── InvalidAmount
    ├── InsufficientFunds
    ├── PegInNotFound              no such mainchain tx, or it pays none of our peg-in addresses
    ├── PegInNotDeepEnough         fewer confirmations than the peg's pegin_min_depth
    ├── ExchangeKeyError           the PAK key file is unusable
    │   └── ExchangeNotInPak       its key pair is not in the federation's PAK list
    ├── UnknownPegOutDestination   an address this exchange key did not derive
    ├── ChainMismatch              the member serves another chain, or history changed
    ├── MainchainUnavailable       the mainchain RPC failed
    └── ApiError                   the member API answered 4xx/5xx (status, code, message)
        ├── ApiUnreachable
        └── TxRejected             POST /tx refused: ``code`` is the chain's reason
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import math
import os
import stat
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import httpx
import wallycore as wally
from coincurve import PrivateKey, PublicKey
from nacl.signing import SigningKey

from confidential import (
    BlindedOutput,
    ConfidentialError,
    InputOpening,
    OutputSpec,
    blind_outputs,
    explicit_generator,
    unblind_output,
)
from consensus.block import Block
from consensus.chainstate import genesis_block
from consensus.errors import ConsensusError, ParseError
from consensus.hashes import hash_to_hex
from consensus.mainchain import MAINNET, REGTEST, TESTNET, BtcTransaction, MainchainNetwork, MerkleBlock
from consensus.mainchain import decode_segwit_address as _decode_segwit
from consensus.mainchain import encode_segwit_address as _encode_segwit
from consensus.peg import PakEntry, PegParams, build_pegin_witness, pak_destinations, pak_pegout_script, whitelist_proof
from consensus.standard import p2wpkh_script, p2wpkh_script_code, parse_pegout, sign_segwit_v0
from consensus.transaction import (
    EMPTY_TXOUT_WITNESS,
    ConfidentialAsset,
    ConfidentialNonce,
    ConfidentialValue,
    OutPoint,
    Transaction,
    TxIn,
    TxInWitness,
    TxOut,
    TxOutWitness,
)

from .bitcoind import BitcoinRpc, MainchainError, RpcInvalidAddressOrKey
from .config import ConfigError, Federation, PegSettings
from .errors import FunctionaryError
from .exchange_api import sign_request

WALLET_VERSION = 1
COIN = 100_000_000
SIDECHAIN_HRP = "ert"
"""Elements regtest's bech32 prefix, used for this sidechain's addresses."""
CONFIDENTIAL_HRP = "el"
"""Elements regtest's blech32 prefix (confidential addresses)."""
DEFAULT_FEE_RATE = 0.1
"""Satoshis per virtual byte (Liquid's minimum relay rate)."""
DUST = 546
"""Change smaller than this is added to the fee rather than kept."""
HARDENED = 0x8000_0000
ACCOUNT_PATH = (84 | HARDENED, 1 | HARDENED, 0 | HARDENED)
RECEIVE, CHANGE, CLAIM = 0, 1, 2
CHAINS = {"receive": RECEIVE, "change": CHANGE, "claim": CLAIM}
IMPORTED = "imported"
ZERO32 = b"\x00" * 32
_PAK_TAG = b"functionary/pak-pegout"
_DUMMY_SCRIPT = b"\x6a"  # bare OP_RETURN: unspendable, so a zero-value blinded output is valid

# Bech32 prefixes of chains this wallet knows, to tell "another chain's
# address" from garbage. Sidechains: Liquid, Liquid testnet, Elements regtest.
_MAINCHAIN_HRPS = {"bc": "Bitcoin mainnet", "tb": "Bitcoin testnet", "bcrt": "Bitcoin regtest"}
_SIDECHAIN_HRPS = {
    "ex": "Liquid",
    "lq": "Liquid (confidential)",
    "tex": "Liquid testnet",
    "tlq": "Liquid testnet (confidential)",
    "ert": "this sidechain",
    "el": "this sidechain (confidential)",
}
_BASE58_VERSIONS = {
    # network name: (P2PKH version, P2SH version)
    MAINNET.name: (0x00, 0x05),
    TESTNET.name: (0x6F, 0xC4),
    REGTEST.name: (0x6F, 0xC4),
}


# --- Errors ---------------------------------------------------------------------------------


class WalletError(FunctionaryError):
    """Root of the wallet's errors. ``remote`` errors come from a member or
    the mainchain node; the others from what the user asked."""

    remote = False


class WalletFileError(WalletError):
    pass


class WalletFileExposed(WalletFileError):
    """The wallet (or a key file it reads) is readable by other users."""


class AddressError(WalletError):
    pass


class InvalidAddress(AddressError):
    """Not an address: wrong alphabet, length or checksum."""


class WrongNetworkAddress(AddressError):
    """A valid address of another chain."""


class UnsupportedAddress(AddressError):
    """An address of the right chain that this operation cannot pay."""


class InvalidAmount(WalletError):
    pass


class InsufficientFunds(WalletError):
    def __init__(self, needed: int, available: int) -> None:
        super().__init__(f"needs {format_btc(needed)} BTC, the wallet has {format_btc(available)} BTC spendable")
        self.needed = needed
        self.available = available


class PegInNotFound(WalletError):
    pass


class PegInNotDeepEnough(WalletError):
    def __init__(self, confirmations: int, required: int) -> None:
        super().__init__(f"the peg-in has {confirmations} confirmations; the peg needs {required}")
        self.confirmations = confirmations
        self.required = required


class ExchangeKeyError(WalletError):
    pass


class ExchangeNotInPak(ExchangeKeyError):
    """The exchange's key pair is not in the federation's PAK list."""


class UnknownPegOutDestination(WalletError):
    """A peg-out address this exchange key did not derive: PAK could not authorize it."""


class ChainMismatch(WalletError):
    remote = True


class MainchainUnavailable(WalletError):
    remote = True


class ApiError(WalletError):
    """The member API refused a request; ``code`` is its JSON error code."""

    remote = True

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}" if status else message)
        self.status = status
        self.api_code = code
        self.message = message

    @property
    def code(self) -> str:
        return self.api_code


class ApiUnreachable(ApiError):
    def __init__(self, url: str, detail: str) -> None:
        super().__init__(0, "ApiUnreachable", f"{url}: {detail}")


class TxRejected(ApiError):
    """POST /tx was refused; ``code`` is the chain's reason (e.g.
    PegInInsufficientDepth, UnauthorizedPegOut, txn-mempool-conflict)."""


# --- Amounts ----------------------------------------------------------------------------


def parse_btc(text: str) -> int:
    """``"0.5"`` -> 50_000_000 satoshis; at most 8 decimals, positive, at most 21M."""
    try:
        value = Decimal(text.strip())
    except (InvalidOperation, AttributeError):
        raise InvalidAmount(f"{text!r} is not an amount in BTC") from None
    if not value.is_finite() or value <= 0:
        raise InvalidAmount(f"{text!r}: the amount must be positive")
    sats = value * COIN
    if sats != sats.to_integral_value():
        raise InvalidAmount(f"{text!r}: at most 8 decimal places")
    if sats > 21_000_000 * COIN:
        raise InvalidAmount(f"{text!r}: more than 21 million BTC")
    return int(sats)


def format_btc(sats: int) -> str:
    sign = "-" if sats < 0 else ""
    return f"{sign}{abs(sats) // COIN}.{abs(sats) % COIN:08d}"


# --- Addresses --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SidechainAddress:
    """A decoded sidechain address: the output script, and the blinding
    pubkey when the address is confidential."""

    script_pubkey: bytes
    blinding_pubkey: bytes | None = None


def _hrp_of(text: str) -> str | None:
    sep = text.rfind("1")
    return text[:sep].lower() if sep > 0 else None


def encode_address(script_pubkey: bytes, blinding_pubkey: bytes | None = None) -> str:
    """The ``ert1…`` address of a segwit v0 script, or its ``el1…`` confidential form."""
    if len(script_pubkey) not in (22, 34) or script_pubkey[0] != 0 or script_pubkey[1] != len(script_pubkey) - 2:
        raise UnsupportedAddress("only segwit v0 scripts have sidechain addresses here")
    plain = _encode_segwit(SIDECHAIN_HRP, 0, script_pubkey[2:])
    if blinding_pubkey is None:
        return plain
    return str(wally.confidential_addr_from_addr_segwit(plain, SIDECHAIN_HRP, CONFIDENTIAL_HRP, blinding_pubkey))


def decode_address(text: str) -> SidechainAddress:
    """A sidechain address this chain can pay (P2WPKH or P2WSH, plain or
    confidential). Mainchain and other chains' addresses are
    WrongNetworkAddress; anything unparseable InvalidAddress."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidAddress("empty address")
    text = text.strip()
    hrp = _hrp_of(text)
    if hrp == CONFIDENTIAL_HRP:
        try:
            plain = str(wally.confidential_addr_to_addr_segwit(text, CONFIDENTIAL_HRP, SIDECHAIN_HRP))
            blinding = bytes(wally.confidential_addr_segwit_to_ec_public_key(text, CONFIDENTIAL_HRP))
        except (ValueError, TypeError):
            raise InvalidAddress(f"{text!r} is not a valid confidential address") from None
        return SidechainAddress(_sidechain_script(plain), blinding)
    if hrp == SIDECHAIN_HRP:
        return SidechainAddress(_sidechain_script(text))
    if hrp in _MAINCHAIN_HRPS or _looks_base58(text):
        raise WrongNetworkAddress(f"{text!r} is a mainchain address; to move coins there, peg out")
    if hrp in _SIDECHAIN_HRPS:
        raise WrongNetworkAddress(f"{text!r} is a {_SIDECHAIN_HRPS[hrp]} address, not this sidechain's")
    raise InvalidAddress(f"{text!r} is not an address")


def _sidechain_script(plain: str) -> bytes:
    try:
        version, program = _decode_segwit(SIDECHAIN_HRP, plain)
    except ParseError as e:
        raise InvalidAddress(f"{plain!r}: {e}") from None
    if version != 0:
        raise UnsupportedAddress(f"{plain!r}: this chain pays only segwit v0 (P2WPKH, P2WSH) outputs")
    return bytes((0, len(program))) + program


_B58 = set("123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz")


def _looks_base58(text: str) -> bool:
    if not 25 <= len(text) <= 40 or not set(text) <= _B58:
        return False
    try:
        raw = bytes(wally.base58_to_bytes(text, wally.BASE58_FLAG_CHECKSUM))
    except ValueError:
        return False
    return len(raw) == 21


def decode_mainchain_address(text: str, network: MainchainNetwork) -> bytes:
    """The mainchain scriptPubKey of a ``network`` address (bech32/bech32m
    segwit, base58 P2PKH or P2SH). Another network's is WrongNetworkAddress,
    this sidechain's or Liquid's too; garbage is InvalidAddress."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidAddress("empty address")
    text = text.strip()
    hrp = _hrp_of(text)
    if hrp is not None and (hrp in _MAINCHAIN_HRPS or hrp in _SIDECHAIN_HRPS):
        if hrp in _SIDECHAIN_HRPS:
            raise WrongNetworkAddress(f"{text!r} is a {_SIDECHAIN_HRPS[hrp]} address, not a mainchain one")
        if hrp != network.bech32_hrp:
            raise WrongNetworkAddress(
                f"{text!r} is a {_MAINCHAIN_HRPS[hrp]} address; the peg's parent is {network.name}"
            )
        try:
            version, program = _decode_segwit(hrp, text)
        except ParseError as e:
            raise InvalidAddress(f"{text!r}: {e}") from None
        return bytes((version + 0x50 if version else 0, len(program))) + program
    if set(text) <= _B58 and 25 <= len(text) <= 40:
        try:
            raw = bytes(wally.base58_to_bytes(text, wally.BASE58_FLAG_CHECKSUM))
        except ValueError:
            raise InvalidAddress(f"{text!r}: bad base58 checksum") from None
        if len(raw) != 21:
            raise InvalidAddress(f"{text!r} is not a base58 address")
        p2pkh, p2sh = _BASE58_VERSIONS[network.name]
        if raw[0] == p2pkh:
            return b"\x76\xa9\x14" + raw[1:] + b"\x88\xac"
        if raw[0] == p2sh:
            return b"\xa9\x14" + raw[1:] + b"\x87"
        known = {v for pair in _BASE58_VERSIONS.values() for v in pair}
        if raw[0] in known:
            raise WrongNetworkAddress(f"{text!r} is another Bitcoin network's address; the parent is {network.name}")
        raise InvalidAddress(f"{text!r}: unknown base58 version 0x{raw[0]:02x}")
    raise InvalidAddress(f"{text!r} is not an address")


def encode_mainchain_address(script_pubkey: bytes, network: MainchainNetwork) -> str:
    """The address of a P2PKH, P2SH or segwit scriptPubKey on ``network``."""
    p2pkh, p2sh = _BASE58_VERSIONS[network.name]
    spk = script_pubkey
    if len(spk) == 25 and spk[:3] == b"\x76\xa9\x14" and spk[23:] == b"\x88\xac":
        return str(wally.base58_from_bytes(bytes((p2pkh,)) + spk[3:23], wally.BASE58_FLAG_CHECKSUM))
    if len(spk) == 23 and spk[:2] == b"\xa9\x14" and spk[22] == 0x87:
        return str(wally.base58_from_bytes(bytes((p2sh,)) + spk[2:22], wally.BASE58_FLAG_CHECKSUM))
    if len(spk) >= 4 and spk[1] == len(spk) - 2 and (spk[0] == 0 or 0x51 <= spk[0] <= 0x60):
        return _encode_segwit(network.bech32_hrp, spk[0] - 0x50 if spk[0] else 0, spk[2:])
    raise UnsupportedAddress(f"no address for script {spk.hex()}")


PEGOUT_KINDS = ("p2wpkh", "p2pkh", "p2sh-p2wpkh")


def pak_destination(pubkey: bytes, kind: str) -> bytes:
    """The mainchain script of ``kind`` (one of PEGOUT_KINDS) for a PAK pubkey."""
    p2pkh, p2wpkh, p2sh = pak_destinations(pubkey)
    try:
        return {"p2pkh": p2pkh, "p2wpkh": p2wpkh, "p2sh-p2wpkh": p2sh}[kind]
    except KeyError:
        raise UnsupportedAddress(f"peg-out kind {kind!r}: one of {', '.join(PEGOUT_KINDS)}") from None


def _pak_shaped(script: bytes) -> bool:
    """P2PKH, P2WPKH or P2SH: the shapes a PAK destination can have."""
    n = len(script)
    return (
        (n == 25 and script[:3] == b"\x76\xa9\x14" and script[23:] == b"\x88\xac")
        or (n == 22 and script[:2] == b"\x00\x14")
        or (n == 23 and script[:2] == b"\xa9\x14" and script[22] == 0x87)
    )


# --- Key derivation -------------------------------------------------------------------


def slip77_master(seed: bytes) -> bytes:
    """SLIP-77's master blinding key of a seed (see the module docstring)."""
    root = hmac.new(b"Symmetric key seed", seed, hashlib.sha512).digest()
    return hmac.new(root[:32], b"\x00SLIP-0077", hashlib.sha512).digest()[32:]


def slip77_blinding_key(master: bytes, script_pubkey: bytes) -> bytes:
    """The blinding private key of ``script_pubkey``."""
    return hmac.new(master, script_pubkey, hashlib.sha256).digest()


def _negate(pubkey: bytes) -> bytes:
    return bytes((pubkey[0] ^ 1,)) + pubkey[1:]


def pak_pegout_key(online_key: PrivateKey, offline_pubkey: bytes, index: int) -> tuple[bytes, bytes]:
    """(P_i, t_i): peg-out pubkey ``index`` of an exchange, and the secret of
    offline + P_i that its whitelist proof needs (module docstring)."""
    tweak = hmac.new(online_key.secret, _PAK_TAG + offline_pubkey + index.to_bytes(4, "big"), hashlib.sha256).digest()
    point = PublicKey.combine_keys([PrivateKey(tweak).public_key, PublicKey(_negate(offline_pubkey))])
    return point.format(), tweak


def pegout_spending_key(offline_key: PrivateKey, tweak: bytes) -> PrivateKey:
    """The mainchain key of a peg-out destination: t_i − offline secret. Only
    the offline key's holder can form it."""
    negated = (-int.from_bytes(offline_key.secret, "big")) % _CURVE_N
    return PrivateKey(tweak).add(negated.to_bytes(32, "big"))


_CURVE_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


# --- Key files --------------------------------------------------------------------------


def _check_private(path: Path) -> None:
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        raise WalletFileError(f"{path}: no such file") from None
    except OSError as e:
        raise WalletFileError(f"{path}: {e.strerror}") from None
    if mode & 0o077:
        raise WalletFileExposed(f"{path}: mode {mode:o} lets other users read private keys; chmod 600 it")


def _read_json_file(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except OSError as e:
        raise WalletFileError(f"{path}: {e.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise WalletFileError(f"{path}: not a {what} (invalid JSON: {e})") from None
    if not isinstance(data, dict):
        raise WalletFileError(f"{path}: not a {what}")
    return data


@dataclass(frozen=True)
class ExchangeKey:
    """An exchange's PAK key file (``functionary init`` writes
    DIR/exchanges/exchangeN.json): the online secret and the offline pubkey."""

    name: str
    online_key: PrivateKey
    offline_pubkey: bytes
    api_key: SigningKey | None = None
    """Signs the exchange's requests to POST /pegouts (None: an old key file)."""

    def __repr__(self) -> str:  # never print key material
        return f"ExchangeKey({self.name!r}, online={self.online_pubkey.hex()})"

    @property
    def online_pubkey(self) -> bytes:
        return self.online_key.public_key.format()

    @property
    def entry(self) -> PakEntry:
        return PakEntry(self.online_pubkey, self.offline_pubkey)

    @classmethod
    def load(cls, path: Path) -> ExchangeKey:
        _check_private(path)
        data = _read_json_file(path, "PAK key file")
        try:
            online = PrivateKey(bytes.fromhex(data["online_key"]))
            offline = bytes.fromhex(data["offline_pubkey"])
            PakEntry(online.public_key.format(), offline)
            api_key = SigningKey(bytes.fromhex(data["api_key"])) if "api_key" in data else None
        except (KeyError, TypeError, ValueError, ConsensusError) as e:
            raise ExchangeKeyError(f"{path}: not a PAK key file ({type(e).__name__}: {e})") from None
        return cls(str(data.get("name", path.stem)), online, offline, api_key)


def load_key_file(path: Path) -> PrivateKey:
    """A secret from a JSON key file with a ``key`` field (the devnet faucet's form)."""
    _check_private(path)
    data = _read_json_file(path, "key file")
    try:
        return PrivateKey(bytes.fromhex(data["key"]))
    except (KeyError, TypeError, ValueError):
        raise WalletFileError(f"{path}: no valid 'key' field") from None


# --- The member API ---------------------------------------------------------------------


class MemberApi:
    """A member's HTTP API (functionary/api.py), synchronously. Hashes are
    in internal byte order here and display order on the wire."""

    def __init__(self, url: str, timeout: float = 15.0) -> None:
        self.url = url.rstrip("/")
        self._client = httpx.Client(timeout=timeout)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> MemberApi:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(
        self, method: str, path: str, body: str | bytes | None = None, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        try:
            response = self._client.request(method, self.url + path, content=body, headers=headers)
        except (httpx.ReadError, httpx.RemoteProtocolError) as e:
            # A kept-alive connection the server closed as we reused it: a GET
            # is safe to send again, once; a POST is not retried.
            if method != "GET":
                raise ApiUnreachable(self.url, f"{type(e).__name__}: {e}") from None
            try:
                response = self._client.request(method, self.url + path, content=body, headers=headers)
            except httpx.HTTPError as e2:
                raise ApiUnreachable(self.url, f"{type(e2).__name__}: {e2}") from None
        except httpx.HTTPError as e:
            raise ApiUnreachable(self.url, f"{type(e).__name__}: {e}") from None
        if response.status_code >= 400:
            try:
                err = response.json()
                code, message = str(err["code"]), str(err["message"])
            except (ValueError, KeyError, TypeError):
                code, message = "HttpError", response.text[:200]
            cls = TxRejected if method == "POST" and path in ("/tx", "/pegouts") else ApiError
            raise cls(response.status_code, code, message)
        return response

    def tip_height(self) -> int:
        text = self._request("GET", "/blocks/tip/height").text
        try:
            return int(text)
        except ValueError:
            raise ApiError(200, "BadResponse", f"tip height {text[:40]!r}") from None

    def block_hash(self, height: int) -> bytes:
        text = self._request("GET", f"/block-height/{height}").text.strip()
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raw = b""
        if len(raw) != 32:
            raise ApiError(200, "BadResponse", f"block hash {text[:80]!r}")
        return raw[::-1]

    def block(self, block_hash: bytes) -> Block:
        raw = self._request("GET", f"/block/{hash_to_hex(block_hash)}/raw").content
        try:
            block = Block.parse(raw)
        except (ParseError, ValueError) as e:
            raise ApiError(200, "BadResponse", f"block {hash_to_hex(block_hash)} does not parse: {e}") from None
        if block.header.hash != block_hash:
            raise ChainMismatch(f"the member served another block for {hash_to_hex(block_hash)}")
        return block

    def tx(self, txid: bytes) -> Transaction | None:
        """A transaction from the member's mempool or chain, None if it knows none."""
        try:
            text = self._request("GET", f"/tx/{hash_to_hex(txid)}/hex").text
        except ApiError as e:
            if e.status == 404:
                return None
            raise
        try:
            return Transaction.parse(bytes.fromhex(text.strip()))
        except (ParseError, ValueError) as e:
            raise ApiError(200, "BadResponse", f"transaction does not parse: {e}") from None

    def post_pegout(self, tx: Transaction, exchange: ExchangeKey, chain_id: bytes, idempotency_key: str = "") -> bytes:
        """Submit a peg-out as ``exchange`` through the exchange API (POST /pegouts)."""
        if exchange.api_key is None:
            raise ExchangeKeyError(f"{exchange.name!r} has no API key: its key file predates the exchange API")
        body = json.dumps({"tx": tx.serialize().hex()}).encode()
        headers = sign_request(exchange.api_key, chain_id, exchange.name, body, idempotency_key=idempotency_key)
        response = self._request("POST", "/pegouts", body, headers)
        try:
            txid = str(response.json()["txid"])
        except (ValueError, KeyError, TypeError):
            txid = ""
        if txid != tx.txid_hex:
            raise ApiError(200, "BadResponse", f"POST /pegouts answered txid {txid[:80]!r}, not {tx.txid_hex}")
        return tx.txid

    def post_tx(self, tx: Transaction) -> bytes:
        text = self._request("POST", "/tx", tx.serialize().hex()).text.strip()
        if text != tx.txid_hex:
            raise ApiError(200, "BadResponse", f"POST /tx answered {text[:80]!r}, not the txid {tx.txid_hex}")
        return tx.txid


# --- Wallet records ---------------------------------------------------------------------


def _outpoint_text(op: OutPoint) -> str:
    return f"{hash_to_hex(op.txid)}:{op.index}"


def _parse_outpoint(text: str) -> OutPoint:
    txid, _, n = text.partition(":")
    return OutPoint(bytes.fromhex(txid)[::-1], int(n))


@dataclass
class Utxo:
    """An output this wallet can spend, with its opening."""

    outpoint: OutPoint
    script: bytes
    path: str
    value: int
    asset: bytes
    abf: bytes
    vbf: bytes
    value_field: bytes
    """The output's serialized value (explicit or commitment): what a
    signature over its spend commits to."""
    asset_field: bytes
    height: int
    locked_by: bytes | None = None

    @property
    def confidential(self) -> bool:
        return self.value_field[0] != 1

    def opening(self) -> InputOpening:
        if self.abf == ZERO32 and self.vbf == ZERO32:
            return InputOpening.explicit(self.asset, self.value)
        return InputOpening.blinded(self.asset, self.value, self.abf, self.vbf)

    def to_json(self) -> dict[str, Any]:
        return {
            "outpoint": _outpoint_text(self.outpoint),
            "script": self.script.hex(),
            "path": self.path,
            "value": self.value,
            "asset": self.asset.hex(),
            "abf": self.abf.hex(),
            "vbf": self.vbf.hex(),
            "value_field": self.value_field.hex(),
            "asset_field": self.asset_field.hex(),
            "height": self.height,
            "locked_by": hash_to_hex(self.locked_by) if self.locked_by else None,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Utxo:
        return cls(
            _parse_outpoint(d["outpoint"]),
            bytes.fromhex(d["script"]),
            str(d["path"]),
            int(d["value"]),
            bytes.fromhex(d["asset"]),
            bytes.fromhex(d["abf"]),
            bytes.fromhex(d["vbf"]),
            bytes.fromhex(d["value_field"]),
            bytes.fromhex(d["asset_field"]),
            int(d["height"]),
            bytes.fromhex(d["locked_by"])[::-1] if d.get("locked_by") else None,
        )


@dataclass
class PegInRecord:
    index: int
    claim_script: bytes
    address: str
    script_pubkey: bytes
    """The mainchain scriptPubKey the peg-in pays (P2WSH of the tweaked fedpegscript)."""
    claimed_by: bytes | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "claim_script": self.claim_script.hex(),
            "address": self.address,
            "script_pubkey": self.script_pubkey.hex(),
            "claimed_by": hash_to_hex(self.claimed_by) if self.claimed_by else None,
        }


@dataclass(frozen=True)
class Balance:
    confirmed: int
    """Spendable: in blocks, not locked by a transaction of ours."""
    locked: int
    """In blocks, spent by one of our transactions not yet in a block."""
    utxos: int
    confidential_utxos: int
    unreadable: int
    """Outputs paying our scripts that our blinding keys do not open."""
    height: int


@dataclass(frozen=True)
class SentTx:
    tx: Transaction
    fee: int
    change: int

    @property
    def txid(self) -> bytes:
        return self.tx.txid

    @property
    def txid_hex(self) -> str:
        return self.tx.txid_hex


@dataclass(frozen=True)
class PegOutRecord:
    """A peg-out this wallet submitted: what the watchmen must pay."""

    tx: Transaction
    vout: int
    amount: int
    destination: bytes
    """The mainchain scriptPubKey."""
    address: str
    pak_pubkey: bytes
    key_index: int
    tweak: bytes
    """t_i: with the offline secret, the destination's spending key (pegout_spending_key)."""
    fee: int

    @property
    def txid(self) -> bytes:
        return self.tx.txid

    @property
    def txid_hex(self) -> str:
        return self.tx.txid_hex


@dataclass
class SyncReport:
    blocks: int = 0
    received: list[Utxo] = field(default_factory=list)
    spent: list[OutPoint] = field(default_factory=list)
    confirmed: list[bytes] = field(default_factory=list)
    released: list[bytes] = field(default_factory=list)


@dataclass(frozen=True)
class _Payment:
    script: bytes
    amount: int
    blinding_pubkey: bytes | None


@dataclass(frozen=True)
class _PegInInput:
    outpoint: OutPoint
    value: int
    witness: tuple[bytes, ...]
    claim: PegInRecord


# --- The wallet ---------------------------------------------------------------------------


def _write_private(path: Path, text: str) -> None:
    """Atomically replace ``path`` with ``text``, mode 0600."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


@contextlib.contextmanager
def wallet_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on a wallet file, for one process's whole operation."""
    lock_path = path.with_name(path.name + ".lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise WalletFileError(f"{path} is in use by another process") from None
        yield
    finally:
        os.close(fd)


class Wallet:
    """One wallet file. Every method that changes the wallet saves it."""

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path = path
        try:
            self._load(data)
        except (KeyError, TypeError, ValueError, ConfigError, ConsensusError) as e:
            raise WalletFileError(f"{path}: corrupt wallet file ({type(e).__name__}: {e})") from None
        self._keys: dict[str, PrivateKey] = {}

    # -- creation and persistence ------------------------------------------------------

    @classmethod
    def create(cls, path: Path, federation: Federation, *, seed: bytes | None = None) -> Wallet:
        """A new wallet for ``federation`` (which must have a peg); refuses to
        overwrite a file."""
        if federation.peg is None:
            raise WalletFileError("the federation has no peg: a wallet needs its peg parameters")
        if path.exists():
            raise WalletFileError(f"{path} exists; refusing to overwrite a wallet")
        seed = os.urandom(32) if seed is None else seed
        if len(seed) != 32:
            raise WalletFileError("the seed is 32 bytes")
        params = federation.chain_params()
        data = {
            "version": WALLET_VERSION,
            "chain": {
                "chain_id": federation.chain_id.hex(),
                "genesis": hash_to_hex(genesis_block(params).header.hash),
                "policy_asset": params.policy_asset.hex(),
                "apis": [m.api for m in federation.members if m.api],
            },
            "peg": federation.peg.to_json(),
            "seed": seed.hex(),
            "blinding_master": slip77_master(seed).hex(),
            "imported_keys": [],
            "next": {"receive": 0, "change": 0, "claim": 0},
            "scan": {"height": -1, "hash": None},
            "utxos": [],
            "pegins": [],
            "pak": {},
            "pending": [],
            "history": [],
            "unreadable": [],
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(data, indent=1) + "\n")
        return cls(path, data)

    @classmethod
    def open(cls, path: Path) -> Wallet:
        _check_private(path)
        data = _read_json_file(path, "wallet file")
        if data.get("version") != WALLET_VERSION:
            raise WalletFileError(
                f"{path}: wallet version {data.get('version')!r}, this software reads {WALLET_VERSION}"
            )
        return cls(path, data)

    def _load(self, d: dict[str, Any]) -> None:
        chain = d["chain"]
        self.chain_id = bytes.fromhex(chain["chain_id"])
        self.genesis_hash = bytes.fromhex(chain["genesis"])[::-1]
        self.policy_asset = bytes.fromhex(chain["policy_asset"])
        self.apis: list[str] = [str(u) for u in chain.get("apis", [])]
        self.peg_json: dict[str, Any] = d["peg"]
        self.peg: PegParams = PegSettings.from_json(self.path, self.peg_json).params
        self.seed = bytes.fromhex(d["seed"])
        self.blinding_master = bytes.fromhex(d["blinding_master"])
        if len(self.seed) != 32 or len(self.blinding_master) != 32:
            raise ValueError("seed and blinding_master are 32 bytes")
        self.imported = [PrivateKey(bytes.fromhex(k)) for k in d["imported_keys"]]
        self.next = {k: int(d["next"][k]) for k in CHAINS}
        self.scan_height = int(d["scan"]["height"])
        self.scan_hash = bytes.fromhex(d["scan"]["hash"])[::-1] if d["scan"]["hash"] else None
        self.utxos = {u.outpoint: u for u in (Utxo.from_json(x) for x in d["utxos"])}
        self.pegins = [
            PegInRecord(
                int(p["index"]),
                bytes.fromhex(p["claim_script"]),
                str(p["address"]),
                bytes.fromhex(p["script_pubkey"]),
                bytes.fromhex(p["claimed_by"])[::-1] if p.get("claimed_by") else None,
            )
            for p in d["pegins"]
        ]
        self.pak_next: dict[str, int] = {str(k): int(v) for k, v in d["pak"].items()}
        self.pending: dict[bytes, list[OutPoint]] = {
            bytes.fromhex(p["txid"])[::-1]: [_parse_outpoint(o) for o in p["inputs"]] for p in d["pending"]
        }
        self.history: list[dict[str, Any]] = list(d["history"])
        self.unreadable: list[str] = list(d["unreadable"])

    def to_json(self) -> dict[str, Any]:
        return {
            "version": WALLET_VERSION,
            "chain": {
                "chain_id": self.chain_id.hex(),
                "genesis": hash_to_hex(self.genesis_hash),
                "policy_asset": self.policy_asset.hex(),
                "apis": self.apis,
            },
            "peg": self.peg_json,
            "seed": self.seed.hex(),
            "blinding_master": self.blinding_master.hex(),
            "imported_keys": [k.secret.hex() for k in self.imported],
            "next": dict(self.next),
            "scan": {"height": self.scan_height, "hash": hash_to_hex(self.scan_hash) if self.scan_hash else None},
            "utxos": [u.to_json() for u in self.utxos.values()],
            "pegins": [p.to_json() for p in self.pegins],
            "pak": dict(self.pak_next),
            "pending": [
                {"txid": hash_to_hex(t), "inputs": [_outpoint_text(o) for o in ins]} for t, ins in self.pending.items()
            ],
            "history": self.history,
            "unreadable": self.unreadable,
        }

    def save(self) -> None:
        _write_private(self.path, json.dumps(self.to_json(), indent=1) + "\n")

    def __repr__(self) -> str:  # never print key material
        return f"Wallet({str(self.path)!r}, height={self.scan_height}, utxos={len(self.utxos)})"

    # -- keys and scripts ----------------------------------------------------------------

    def _key(self, path: str) -> PrivateKey:
        key = self._keys.get(path)
        if key is None:
            chain, _, index = path.partition("/")
            if chain == IMPORTED:
                key = self.imported[int(index)]
            else:
                root = wally.bip32_key_from_seed(self.seed, wally.BIP32_VER_TEST_PRIVATE, 0)
                child = wally.bip32_key_from_parent_path(
                    root, [*ACCOUNT_PATH, int(chain), int(index)], wally.BIP32_FLAG_KEY_PRIVATE
                )
                key = PrivateKey(bytes(wally.bip32_key_get_priv_key(child)))
            self._keys[path] = key
        return key

    def _script(self, path: str) -> bytes:
        return p2wpkh_script(self._key(path).public_key.format())

    def _allocate(self, chain: str) -> str:
        index = self.next[chain]
        self.next[chain] = index + 1
        return f"{CHAINS[chain]}/{index}"

    def _watched(self) -> dict[bytes, str]:
        """Every script this wallet owns -> its key path."""
        paths = [f"{CHAINS[c]}/{i}" for c in ("receive", "change") for i in range(self.next[c])]
        paths += [f"{IMPORTED}/{i}" for i in range(len(self.imported))]
        return {self._script(p): p for p in paths}

    def blinding_key(self, script_pubkey: bytes) -> bytes:
        return slip77_blinding_key(self.blinding_master, script_pubkey)

    def blinding_pubkey(self, script_pubkey: bytes) -> bytes:
        return PrivateKey(self.blinding_key(script_pubkey)).public_key.format()

    def new_address(self, *, confidential: bool = False) -> str:
        """A fresh receiving address (saved before it is returned)."""
        path = self._allocate("receive")
        self.save()
        script = self._script(path)
        return encode_address(script, self.blinding_pubkey(script) if confidential else None)

    def import_key(self, key: PrivateKey) -> None:
        """Watch and spend P2WPKH of ``key``; the next sync rescans from genesis."""
        if any(k.secret == key.secret for k in self.imported):
            return
        self.imported.append(key)
        self.rescan()

    def rescan(self) -> None:
        """Forget what scanning learnt; the next sync starts from genesis."""
        self.scan_height, self.scan_hash = -1, None
        self.utxos.clear()
        self.unreadable.clear()
        self.history.clear()
        for p in self.pegins:
            p.claimed_by = None
        self.save()

    # -- scanning ------------------------------------------------------------------------

    def sync(self, api: MemberApi) -> SyncReport:
        """Scan the blocks after the last one scanned: record outputs paying
        our scripts (unblinded with our keys), drop those spent, note our
        claims and transactions confirmed; then release the inputs of
        submitted transactions the member no longer knows."""
        report = SyncReport()
        tip = api.tip_height()
        if tip < self.scan_height:
            raise ChainMismatch(f"the member's tip {tip} is below this wallet's scan height {self.scan_height}")
        if self.scan_hash is not None and api.block_hash(self.scan_height) != self.scan_hash:
            raise ChainMismatch(
                f"block {self.scan_height} is not the one this wallet scanned: another chain, or history changed "
                "(a rescan starts over)"
            )
        watched = self._watched()
        try:
            for height in range(self.scan_height + 1, tip + 1):
                block_hash = api.block_hash(height)
                block = api.block(block_hash)
                if height == 0:
                    if block_hash != self.genesis_hash:
                        raise ChainMismatch(
                            f"the member's genesis {hash_to_hex(block_hash)} is not this wallet's federation's "
                            f"({hash_to_hex(self.genesis_hash)})"
                        )
                elif block.header.prev_hash != self.scan_hash or block.header.height != height:
                    raise ChainMismatch(f"block {height} does not extend the block this wallet scanned before it")
                self._apply_block(block, height, watched, report)
                self.scan_height, self.scan_hash = height, block_hash
                report.blocks += 1
        finally:
            if report.blocks:
                self.save()
        self._release_stale(api, report)
        return report

    def _apply_block(self, block: Block, height: int, watched: dict[bytes, str], report: SyncReport) -> None:
        claims = {p.claim_script: p for p in self.pegins}
        for tx in block.transactions:
            txid = tx.txid
            spent = received = 0
            for i, txin in enumerate(tx.inputs):
                if txin.is_pegin:
                    stack = tx.input_witnesses[i].pegin_witness
                    if len(stack) > 3 and stack[3] in claims:
                        claims[stack[3]].claimed_by = txid
                    continue
                u = self.utxos.pop(txin.prevout, None)
                if u is not None:
                    spent += u.value
                    report.spent.append(txin.prevout)
            for n, out in enumerate(tx.outputs):
                path = watched.get(out.script_pubkey)
                if path is None:
                    continue
                u = self._open(OutPoint(txid, n), out, tx.output_witnesses[n], path, height)
                if u is None:
                    self.unreadable.append(_outpoint_text(OutPoint(txid, n)))
                    continue
                self.utxos[u.outpoint] = u
                received += u.value
                report.received.append(u)
            if self.pending.pop(txid, None) is not None:
                report.confirmed.append(txid)
            if spent or received:
                self.history.append({"txid": tx.txid_hex, "height": height, "received": received, "spent": spent})

    def _open(self, op: OutPoint, out: TxOut, wit: TxOutWitness, path: str, height: int) -> Utxo | None:
        """The opening of an output paying our script, None if it is not one
        we can spend (another asset, or blinded to a key we do not hold)."""
        if out.is_explicit:
            if out.asset.asset_id != self.policy_asset:
                return None
            value, asset, abf, vbf = out.value.amount, out.asset.asset_id, ZERO32, ZERO32
        elif out.value.is_commitment and not out.asset.is_null and not out.nonce.is_null:
            generator = out.asset.raw if out.asset.is_commitment else explicit_generator(out.asset.asset_id)
            try:
                opened = unblind_output(
                    out.value.raw,
                    generator,
                    out.nonce.raw,
                    out.script_pubkey,
                    wit.range_proof,
                    self.blinding_key(out.script_pubkey),
                )
            except ConfidentialError:
                return None
            if opened.asset_id != self.policy_asset:
                return None
            value, asset, abf, vbf = opened.value, opened.asset_id, opened.abf, opened.vbf
        else:
            return None  # an explicit value under a blinded asset: no wallet of ours makes one
        return Utxo(op, out.script_pubkey, path, value, asset, abf, vbf, out.value.raw, out.asset.raw, height)

    def _release_stale(self, api: MemberApi, report: SyncReport) -> None:
        """Unlock the inputs of submitted transactions the member does not
        know any more (dropped from its mempool), so they can be spent again."""
        changed = False
        for txid in list(self.pending):
            if api.tx(txid) is not None:
                continue
            for op in self.pending.pop(txid):
                u = self.utxos.get(op)
                if u is not None and u.locked_by == txid:
                    u.locked_by = None
            report.released.append(txid)
            changed = True
        if changed:
            self.save()

    def balance(self) -> Balance:
        mine = list(self.utxos.values())
        return Balance(
            confirmed=sum(u.value for u in mine if u.locked_by is None),
            locked=sum(u.value for u in mine if u.locked_by is not None),
            utxos=len(mine),
            confidential_utxos=sum(1 for u in mine if u.confidential),
            unreadable=len(self.unreadable),
            height=self.scan_height,
        )

    # -- building transactions -----------------------------------------------------------

    def _assemble(
        self,
        coins: Sequence[Utxo],
        pegin: _PegInInput | None,
        payments: Sequence[_Payment],
        change: _Payment | None,
        fee: int,
    ) -> Transaction:
        asset = self.policy_asset
        openings = [c.opening() for c in coins]
        if pegin is not None:
            openings.append(InputOpening.explicit(asset, pegin.value))
        specs = [OutputSpec(p.amount, asset, p.script, p.blinding_pubkey) for p in payments]
        if change is not None:
            specs.append(OutputSpec(change.amount, asset, change.script, change.blinding_pubkey))
        blinded = sum(1 for s in specs if s.blinding_pubkey is not None)
        blinded_in = any(o.is_blinded for o in openings)
        if (blinded == 0 and blinded_in) or (blinded == 1 and not blinded_in):
            # Elements' dummy: blinding needs one more blinded output to hide amounts.
            specs.append(OutputSpec(0, asset, _DUMMY_SCRIPT, PrivateKey().public_key.format()))
        specs.append(OutputSpec(fee, asset, b"", None))
        try:
            outs = blind_outputs(openings, specs)
        except ConfidentialError as e:
            raise WalletError(f"cannot blind the transaction: {e}") from None
        tx_outs: list[TxOut] = []
        out_wits: list[TxOutWitness] = []
        for o in outs:
            if isinstance(o, BlindedOutput):
                tx_outs.append(
                    TxOut(
                        ConfidentialAsset(o.asset_generator),
                        ConfidentialValue(o.value_commitment),
                        ConfidentialNonce(o.nonce_commitment),
                        o.script_pubkey,
                    )
                )
                out_wits.append(TxOutWitness(o.surjection_proof, o.range_proof))
            else:
                tx_outs.append(TxOut.explicit(o.asset_id, o.value, o.script_pubkey))
                out_wits.append(EMPTY_TXOUT_WITNESS)
        inputs = [TxIn(c.outpoint) for c in coins]
        if pegin is not None:
            inputs.append(TxIn(pegin.outpoint, is_pegin=True))
        unsigned = Transaction(2, tuple(inputs), tuple(tx_outs), 0, (), tuple(out_wits))
        witnesses: list[TxInWitness] = []
        for i, c in enumerate(coins):
            key = self._key(c.path)
            sig = sign_segwit_v0(key, unsigned, i, p2wpkh_script_code(c.script[2:]), ConfidentialValue(c.value_field))
            witnesses.append(TxInWitness(script_witness=(sig, key.public_key.format())))
        if pegin is not None:
            key = self._key(f"{CLAIM}/{pegin.claim.index}")
            code = p2wpkh_script_code(pegin.claim.claim_script[2:])
            sig = sign_segwit_v0(key, unsigned, len(coins), code, ConfidentialValue.explicit(pegin.value))
            witnesses.append(TxInWitness(script_witness=(sig, key.public_key.format()), pegin_witness=pegin.witness))
        return unsigned.with_witnesses(tuple(witnesses), tuple(out_wits))

    def _fund(self, payments: Sequence[_Payment], fee_rate: float, *, blind_change: bool) -> SentTx:
        """Select coins (largest first), add change back to us, and settle the
        fee at ``fee_rate`` by building until the fee covers the size."""
        if fee_rate < 0 or not math.isfinite(fee_rate):
            raise InvalidAmount(f"fee rate {fee_rate} sat/vB")
        available = sorted((u for u in self.utxos.values() if u.locked_by is None), key=lambda u: (-u.value, u.height))
        have = sum(u.value for u in available)
        want = sum(p.amount for p in payments)
        change_path: str | None = None
        fee = 1
        for _ in range(6):
            target = want + fee
            coins: list[Utxo] = []
            total = 0
            for u in available:
                if total >= target:
                    break
                coins.append(u)
                total += u.value
            if total < target:
                raise InsufficientFunds(target, have)
            change_amount = total - target
            extra = 0
            if change_amount < DUST:
                extra, change_amount = change_amount, 0
            change = None
            if change_amount:
                if change_path is None:
                    change_path = self._allocate("change")
                    self.save()
                script = self._script(change_path)
                blind = blind_change or any(c.confidential for c in coins)
                change = _Payment(script, change_amount, self.blinding_pubkey(script) if blind else None)
            tx = self._assemble(coins, None, payments, change, fee + extra)
            needed = max(1, math.ceil(tx.vsize * fee_rate))
            if needed <= fee:
                return SentTx(tx, fee + extra, change_amount)
            fee = needed
        raise WalletError("the fee did not settle; try another fee rate")

    def _submit(
        self,
        api: MemberApi,
        sent: SentTx,
        coins: Sequence[OutPoint],
        post: Callable[[Transaction], object] | None = None,
    ) -> None:
        """Lock the inputs and remember the transaction (saved), then POST it
        (``post``, default POST /tx); on refusal unlock again."""
        txid = sent.txid
        for op in coins:
            self.utxos[op].locked_by = txid
        if coins:
            self.pending[txid] = list(coins)
        self.save()
        try:
            (post or api.post_tx)(sent.tx)
        except ApiError as e:
            unknown = isinstance(e, ApiUnreachable)
            if not unknown:
                for op in coins:
                    u = self.utxos.get(op)
                    if u is not None and u.locked_by == txid:
                        u.locked_by = None
                self.pending.pop(txid, None)
                self.save()
            # Unreachable: the member may have it; the next sync releases it if not.
            raise

    # -- payments ------------------------------------------------------------------------

    def send(
        self,
        api: MemberApi,
        address: str,
        amount: int,
        *,
        explicit: bool = False,
        fee_rate: float = DEFAULT_FEE_RATE,
    ) -> SentTx:
        """Pay ``amount`` satoshis to a sidechain address: confidentially if
        the address is (unless ``explicit``), with confidential change."""
        dest = decode_address(address)
        if amount <= 0:
            raise InvalidAmount("the amount must be positive")
        blinding = None if explicit else dest.blinding_pubkey
        sent = self._fund([_Payment(dest.script_pubkey, amount, blinding)], fee_rate, blind_change=not explicit)
        self._submit(api, sent, [i.prevout for i in sent.tx.inputs])
        return sent

    # -- peg-in ---------------------------------------------------------------------------

    def pegin_address(self) -> str:
        """A fresh peg-in address: the claim script (P2WPKH of a new claim
        key) is saved before the address is returned."""
        path = self._allocate("claim")
        index = int(path.split("/")[1])
        claim_script = self._script(path)
        record = PegInRecord(
            index,
            claim_script,
            self.peg.pegin_address(claim_script),
            self.peg.pegin_script_pubkey(claim_script),
        )
        self.pegins.append(record)
        self.save()
        return record.address

    def find_pegin(self, mainchain: BitcoinRpc, txid: str) -> tuple[BtcTransaction, int, PegInRecord, int, str | None]:
        """(tx, vout, record, confirmations, block hash) of a mainchain
        transaction paying one of our peg-in addresses."""
        try:
            raw = mainchain.getrawtransaction(txid, True)
        except RpcInvalidAddressOrKey:
            raise PegInNotFound(f"the mainchain node knows no transaction {txid}") from None
        except MainchainError as e:
            if e.code in ("RpcInvalidParameter", "RpcDeserializationError", "RpcTypeError"):
                raise PegInNotFound(f"{txid!r} is not a transaction id") from None
            raise MainchainUnavailable(f"getrawtransaction: {e}") from None
        assert isinstance(raw, dict)
        try:
            tx = BtcTransaction.parse(bytes.fromhex(raw["hex"]))
        except (KeyError, ValueError, ParseError) as e:
            raise MainchainUnavailable(f"getrawtransaction returned no transaction: {e}") from None
        by_script = {p.script_pubkey: p for p in self.pegins}
        for vout, out in enumerate(tx.outputs):
            record = by_script.get(out.script_pubkey)
            if record is not None:
                return tx, vout, record, int(raw.get("confirmations", 0)), raw.get("blockhash")
        raise PegInNotFound(f"mainchain transaction {txid} pays none of this wallet's peg-in addresses")

    def claim(
        self,
        api: MemberApi,
        mainchain: BitcoinRpc,
        txid: str,
        *,
        explicit: bool = False,
        fee_rate: float = DEFAULT_FEE_RATE,
        check_depth: bool = True,
    ) -> SentTx:
        """Claim a peg-in (:meth:`build_claim`) and submit the claim."""
        sent = self.build_claim(mainchain, txid, explicit=explicit, fee_rate=fee_rate, check_depth=check_depth)
        self._submit(api, sent, [])
        return sent

    def build_claim(
        self,
        mainchain: BitcoinRpc,
        txid: str,
        *,
        explicit: bool = False,
        fee_rate: float = DEFAULT_FEE_RATE,
        check_depth: bool = True,
    ) -> SentTx:
        """The claim of a peg-in, signed, not submitted: Elements' peg-in
        input and witness (value, asset, parent genesis, claim script, the
        mainchain tx, its merkle proof), paying the amount less an explicit
        fee to a fresh key of ours. ``check_depth=False`` builds it even when
        too shallow, to see the chain's reason."""
        tx, vout, record, confirmations, block_hash = self.find_pegin(mainchain, txid)
        required = self.peg.pegin_min_depth
        if block_hash is None or confirmations < 1:
            raise PegInNotDeepEnough(0, required)
        if check_depth and confirmations < required:
            raise PegInNotDeepEnough(confirmations, required)
        try:
            proof = MerkleBlock.parse(bytes.fromhex(mainchain.gettxoutproof([txid], block_hash)))
        except MainchainError as e:
            raise MainchainUnavailable(f"gettxoutproof: {e}") from None
        except (ValueError, ParseError) as e:
            raise MainchainUnavailable(f"gettxoutproof returned no proof: {e}") from None
        value = tx.outputs[vout].value
        pegin = _PegInInput(
            OutPoint(tx.txid, vout),
            value,
            build_pegin_witness(self.peg, record.claim_script, tx, proof, vout),
            record,
        )
        path = self._allocate("change")
        self.save()
        script = self._script(path)
        blinding = None if explicit else self.blinding_pubkey(script)
        fee = 1
        for _ in range(6):
            if value - fee < DUST:
                raise InsufficientFunds(fee + DUST, value)
            built = self._assemble([], pegin, [_Payment(script, value - fee, blinding)], None, fee)
            needed = max(1, math.ceil(built.vsize * fee_rate))
            if needed <= fee:
                return SentTx(built, fee, 0)
            fee = needed
        raise WalletError("the fee did not settle; try another fee rate")

    # -- peg-out --------------------------------------------------------------------------

    def _pak_index(self, exchange: ExchangeKey) -> int:
        try:
            return self.peg.pak.index(exchange.entry)
        except ValueError:
            raise ExchangeNotInPak(
                f"the key pair of {exchange.name!r} (online {exchange.online_pubkey.hex()}) is not in the "
                "federation's PAK list: the chain would refuse its peg-outs"
            ) from None

    def pegout_address(self, exchange: ExchangeKey, kind: str = "p2wpkh") -> str:
        """The next peg-out address of an exchange (saved before returned)."""
        if kind not in PEGOUT_KINDS:
            raise UnsupportedAddress(f"peg-out kind {kind!r}: one of {', '.join(PEGOUT_KINDS)}")
        online = exchange.online_pubkey.hex()
        index = self.pak_next.get(online, 0)
        self.pak_next[online] = index + 1
        self.save()
        pubkey, _ = pak_pegout_key(exchange.online_key, exchange.offline_pubkey, index)
        return encode_mainchain_address(pak_destination(pubkey, kind), self.peg.parent)

    def _find_pegout_key(self, exchange: ExchangeKey, destination: bytes) -> tuple[int, bytes, bytes]:
        for index in range(self.pak_next.get(exchange.online_pubkey.hex(), 0)):
            pubkey, tweak = pak_pegout_key(exchange.online_key, exchange.offline_pubkey, index)
            if destination in pak_destinations(pubkey):
                return index, pubkey, tweak
        raise UnknownPegOutDestination(
            "PAK peg-outs pay only the exchange's own peg-out addresses (see pegout-address); "
            "this one was not derived from this exchange key by this wallet"
        )

    def pegout(
        self,
        api: MemberApi,
        address: str,
        amount: int,
        exchange: ExchangeKey,
        *,
        fee_rate: float = DEFAULT_FEE_RATE,
    ) -> PegOutRecord:
        """Burn ``amount`` on the sidechain for the watchmen to pay to
        ``address`` on the mainchain, with the exchange's PAK proof."""
        destination = decode_mainchain_address(address, self.peg.parent)
        if not _pak_shaped(destination):
            raise UnsupportedAddress(f"{address!r}: a PAK peg-out pays P2PKH, P2WPKH or P2SH-P2WPKH only")
        if amount <= 0:
            raise InvalidAmount("the amount must be positive")
        pak_index = self._pak_index(exchange)
        index, pubkey, tweak = self._find_pegout_key(exchange, destination)
        return self.submit_pegout(
            api,
            destination,
            amount,
            exchange,
            pubkey=pubkey,
            tweak=tweak,
            key_index=index,
            pak_entries=self.peg.pak,
            pak_index=pak_index,
            address=address,
            fee_rate=fee_rate,
        )

    def submit_pegout(
        self,
        api: MemberApi,
        destination: bytes,
        amount: int,
        exchange: ExchangeKey,
        *,
        pubkey: bytes,
        tweak: bytes,
        key_index: int = -1,
        pak_entries: Sequence[PakEntry],
        pak_index: int,
        parent_genesis: bytes | None = None,
        address: str = "",
        fee_rate: float = DEFAULT_FEE_RATE,
    ) -> PegOutRecord:
        """The peg-out transaction, built and submitted without the wallet's
        checks of the destination and the PAK list: :meth:`pegout` calls it
        after them; tests call it to see the chain refuse what the wallet
        would not build."""
        proof = whitelist_proof(pak_entries, pak_index, pubkey, exchange.online_key, tweak)
        genesis = self.peg.parent_genesis_hash if parent_genesis is None else parent_genesis
        script = pak_pegout_script(genesis, destination, pubkey, proof)
        sent = self._fund([_Payment(script, amount, None)], fee_rate, blind_change=True)
        post = None
        if exchange.api_key is not None:
            # Through the exchange API, signed; the txid as idempotency key
            # makes a retry of this very transaction return the first answer.
            def post(tx: Transaction) -> bytes:
                return api.post_pegout(tx, exchange, self.chain_id, idempotency_key=tx.txid_hex)

        self._submit(api, sent, [i.prevout for i in sent.tx.inputs], post)
        vout = next(i for i, o in enumerate(sent.tx.outputs) if parse_pegout(o.script_pubkey) is not None)
        return PegOutRecord(sent.tx, vout, amount, destination, address, pubkey, key_index, tweak, sent.fee)

    def next_pegout_key(self, exchange: ExchangeKey) -> tuple[int, bytes, bytes]:
        """(index, P_i, t_i) of a fresh peg-out key, allocated and saved."""
        online = exchange.online_pubkey.hex()
        index = self.pak_next.get(online, 0)
        self.pak_next[online] = index + 1
        self.save()
        pubkey, tweak = pak_pegout_key(exchange.online_key, exchange.offline_pubkey, index)
        return index, pubkey, tweak


# --- Waiting ----------------------------------------------------------------------------


def wait_confirmed(wallet: Wallet, api: MemberApi, txid: bytes, timeout: float, interval: float = 0.2) -> int:
    """Sync until ``txid`` is in a scanned block; its height. TimeoutError
    after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    shown = hash_to_hex(txid)
    while True:
        wallet.sync(api)
        for h in wallet.history:
            if h["txid"] == shown:
                return int(h["height"])
        if time.monotonic() > deadline:
            raise TimeoutError(f"transaction {shown} not in a block within {timeout} s")
        time.sleep(interval)


__all__ = [
    "COIN",
    "DEFAULT_FEE_RATE",
    "PEGOUT_KINDS",
    "AddressError",
    "ApiError",
    "ApiUnreachable",
    "Balance",
    "ChainMismatch",
    "ExchangeKey",
    "ExchangeKeyError",
    "ExchangeNotInPak",
    "InsufficientFunds",
    "InvalidAddress",
    "InvalidAmount",
    "MainchainUnavailable",
    "MemberApi",
    "PegInNotDeepEnough",
    "PegInNotFound",
    "PegInRecord",
    "PegOutRecord",
    "SentTx",
    "SidechainAddress",
    "SyncReport",
    "TxRejected",
    "UnknownPegOutDestination",
    "UnsupportedAddress",
    "Utxo",
    "Wallet",
    "WalletError",
    "WalletFileError",
    "WalletFileExposed",
    "WrongNetworkAddress",
    "decode_address",
    "decode_mainchain_address",
    "encode_address",
    "encode_mainchain_address",
    "format_btc",
    "load_key_file",
    "pak_destination",
    "pak_pegout_key",
    "parse_btc",
    "pegout_spending_key",
    "slip77_blinding_key",
    "slip77_master",
    "wait_confirmed",
    "wallet_lock",
]

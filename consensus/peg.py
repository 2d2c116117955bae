"""The two-way peg's consensus rules: the fedpegscript, peg-in addresses and
claims, and peg-outs with their PAK proofs (Elements ``pegins.cpp``,
``primitives/pak.cpp``).

Pure: no I/O, clock or randomness. The one question a peg-in asks of the
outside world, whether the proven mainchain block is in this member's best
chain and how deep, goes through :class:`MainchainView`, which the I/O layer
implements over its own bitcoind.

**Fedpegscript** (Liquid's watchman template; :class:`PegParams`):

    OP_DEPTH <m+1> OP_EQUAL
    OP_IF    <m> <watchman key_1 .. key_n> <n>
    OP_ELSE  <csv> OP_CHECKSEQUENCEVERIFY OP_DROP
             <k> <emergency key_1 .. key_e> <e>
    OP_ENDIF OP_CHECKMULTISIG

m watchmen spend at once (their witness has m+1 items: the dummy and m
signatures, so OP_DEPTH selects the IF branch); k emergency keys spend an
output older than ``csv`` blocks. Liquid: 11-of-15, 4032 blocks, 2-of-3.
Without emergency keys the fedpegscript is plain ``<m> <keys> <n>
OP_CHECKMULTISIG``, the other shape Elements accepts.

**Peg-in address** (Elements' ``calculate_contract``): every 33-byte push P
of the fedpegscript becomes ``P + HMAC-SHA256(key=P, msg=claim_script)·G``,
except the keys after OP_ELSE when the script matches Elements' Liquid
watchman template (``MatchLiquidWatchman``), which stay untweaked so that
the emergency keys need no per-peg-in secret. The mainchain output is P2WSH
of that tweaked script; the address is its bech32 form. A watchman signs a
peg-in output with ``sk + tweak mod n`` (:func:`tweak_private_key`).

    wallycore's ``elements_pegin_contract_script_from_bytes`` skips the keys
    after *any* OP_ELSE. Both agree on scripts without OP_ELSE and on the
    Liquid template; on another script with an OP_ELSE (say one whose two
    thresholds are equal, which the template refuses) Elements tweaks every
    key and wallycore does not. This module follows Elements.

**Peg-in witness** (the input's ``pegin_witness``, ``IsValidPeginWitness``):

    item  content                      encoding
    0     value                        int64, 8 bytes little-endian, 0..MAX_MONEY
    1     asset                        32 bytes, internal order (the policy asset)
    2     parent genesis hash          32 bytes, internal order
    3     claim_script                 at most 100 bytes; the scriptPubKey the
                                       claimed coins are locked to on the sidechain
    4     mainchain transaction        Bitcoin serialization, witness optional
    5     txout proof                  BIP37 merkle block (consensus.mainchain)

The input's prevout is (mainchain txid, output index). The claim mints an
explicit policy-asset output of ``value`` locked by ``claim_script``, which
the input's script witness must then satisfy like any spent output.

**Peg-out output** (``CScript::IsPegoutScript``, ``ScriptHasValidPAKProof``):

    OP_RETURN <32: parent genesis hash> <parent scriptPubKey>
              <33: PAK pubkey> <whitelist proof: 1 + 32·(1 + N) bytes>

With PAK enforced the destination must be P2PKH, P2WPKH or P2SH-P2WPKH of
the PAK pubkey, and the whitelist proof (libsecp256k1-zkp's) must show that
pubkey is authorized by one of the N (online, offline) key pairs of the PAK
list, without revealing which exchange.

Rules, in the order :class:`PegInRules` checks them:

    rule                                              error
    six items, value/asset/genesis/claim well-formed  BadPegInWitness
    genesis hash is the parent's                      PegInWrongGenesis
    asset is the policy asset                         PegInWrongAsset
    proof parses, root = header's, one match, PoW     PegInBadProof
    mainchain tx parses                               BadPegInWitness
    tx's txid is the prevout's, index in range        PegInTxMismatch
    proof's match is the prevout's txid               PegInTxNotInProof
    value = the output's value                        PegInValueMismatch
    value >= min_pegin_value                          PegInValueTooLow
    output pays P2WSH(contract(claim_script))         ClaimScriptMismatch, NotPegInAddress
    block in the member's best chain                  PegInBlockNotInBestChain
    depth >= pegin_min_depth (coinbase: >= 100 too)   PegInInsufficientDepth
    proof's tx count = the block's (if the view knows) PegInBadProof

Claims already made are the chain state's to track (``pegin-already-claimed``,
``bad-txns-double-pegin``); two claims in one transaction are a
``bad-txns-inputs-duplicate`` there too.

And :class:`PegOutRules`, for each peg-out output of a transaction:

    rule                                              error
    explicit asset and value                          BlindedPegOut
    genesis hash is the parent's                      WrongParentChain
    PAK pubkey and proof present, list not empty      UnauthorizedPegOut
    destination P2PKH/P2WPKH/P2SH-P2WPKH of pubkey    BadPegOutDestination
    pubkey and proof parse, proof verifies            UnauthorizedPegOut

Where this differs from Elements, on purpose:

* Peg-ins pay native P2WSH. Liquid v1 pays P2SH-P2WSH (its fedpeg program is
  P2SH); Elements pays P2WSH only for a P2WSH fedpeg program, and accepts
  the previous fedpegscripts for a grace period after a dynafed change.
  One fedpegscript here, no nesting.
* The value item must be exactly 8 bytes (Elements reads 8 and ignores any
  more); a minimum peg-in value exists (Elements has none).
* The proof's transaction count is compared with the block's only when the
  view offers :class:`MainchainTxCounts` (Elements always asks bitcoind).
* A peg-out naming another parent genesis, or a blinded one, is refused
  (Elements treats the first as a plain OP_RETURN burn and skips the PAK
  check for a non-explicit asset); without PAK a peg-out must still pay a
  standard script the watchmen can pay (Elements: anything).
* The PAK list is a static parameter (Elements: coinbase commitments, then
  dynafed's extension space). An empty list with PAK enforced refuses every
  peg-out.
* Only the two fedpegscript shapes above are built or parsed (Elements also
  runs OP_TRUE and others).
"""

from __future__ import annotations

import ctypes
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol, runtime_checkable

import wallycore as wally
from coincurve import PrivateKey, PublicKey

from confidential import _lib as _zkp

from .errors import (
    BadPegInWitness,
    BadPegOutDestination,
    BlindedPegOut,
    ClaimScriptMismatch,
    NotPegInAddress,
    ParseError,
    PegInBadProof,
    PegInBlockNotInBestChain,
    PegInInsufficientDepth,
    PegInTxMismatch,
    PegInTxNotInProof,
    PegInValueMismatch,
    PegInValueTooLow,
    PegInWrongAsset,
    PegInWrongGenesis,
    UnauthorizedPegOut,
    WrongParentChain,
)
from .hashes import hash160, hash_to_hex
from .mainchain import (
    MAX_MONEY,
    REGTEST,
    BtcTransaction,
    MainchainNetwork,
    MerkleBlock,
    encode_segwit_address,
)
from .params import ChainParams, parse_pubkey
from .script import (
    OP_1,
    OP_1NEGATE,
    OP_16,
    OP_CHECKMULTISIG,
    OP_CHECKSEQUENCEVERIFY,
    OP_DEPTH,
    OP_DROP,
    OP_ELSE,
    OP_ENDIF,
    OP_EQUAL,
    OP_IF,
    OP_PUSHDATA4,
    is_minimal_push,
    iter_ops,
    multisig_script,
    parse_multisig_script,
    push_data,
    push_int,
)
from .standard import PegOut, p2wsh_script, parse_pegout, pegout_script
from .transaction import OutPoint, Transaction, TxOut

LIQUID_CSV_DELAY = 4032
DEFAULT_PEGIN_MIN_DEPTH = 102
"""Liquid's consensus needs 100 confirmations and its wallets wait 102; the
peg takes the wallets' figure so that a claim made when a wallet says it may
be is never refused for depth after a one- or two-block reorg."""
DEFAULT_MIN_PEGIN_VALUE = 10_000
"""Satoshis. Elements has no consensus minimum; ours exists because a peg-in
output is spent later by an m-of-n witness of about 400 vbytes (11-of-15),
so a smaller one costs the federation more to move than it is worth."""
MAX_CLAIM_SCRIPT_SIZE = 100
COINBASE_MATURITY = 100
MAX_PEG_KEYS = 15
MAX_CSV_DELAY = 0xFFFF
"""BIP68 height-based relative lock-times have 16 bits."""
MAX_PAK_ENTRIES = 255
"""libsecp256k1-zkp's SECP256K1_WHITELIST_MAX_N_KEYS."""

_ZERO32 = b"\x00" * 32


# --- Fedpegscript -----------------------------------------------------------------


def liquid_fedpegscript(
    m: int, watchman_keys: Sequence[bytes], csv_delay: int, k: int, emergency_keys: Sequence[bytes]
) -> bytes:
    """Liquid's watchman template (see the module docstring)."""
    n, e = len(watchman_keys), len(emergency_keys)
    return (
        bytes((OP_DEPTH,))
        + push_int(m + 1)
        + bytes((OP_EQUAL, OP_IF))
        + push_int(m)
        + b"".join(push_data(key) for key in watchman_keys)
        + push_int(n)
        + bytes((OP_ELSE,))
        + push_int(csv_delay)
        + bytes((OP_CHECKSEQUENCEVERIFY, OP_DROP))
        + push_int(k)
        + b"".join(push_data(key) for key in emergency_keys)
        + push_int(e)
        + bytes((OP_ENDIF, OP_CHECKMULTISIG))
    )


def _is_script_number_op(op: int, data: bytes | None) -> bool:
    # MatchLiquidWatchman's test for its numbers: OP_1NEGATE..OP_16, or a
    # minimal push.
    if op > OP_16:
        return False
    return op >= OP_1NEGATE or (data is not None and is_minimal_push(op, data))


def match_liquid_watchman(script: bytes) -> bool:
    """Elements' ``MatchLiquidWatchman``, op for op: the loose shape that
    decides whether ``calculate_contract`` leaves the keys after OP_ELSE
    untweaked. It does not check the keys or the thresholds' values, only
    that the two thresholds differ."""
    try:
        ops = iter_ops(script)
    except ParseError:
        return False  # GetOp fails before the end, so Elements returns false
    it = iter(ops)

    def get() -> tuple[int, bytes | None] | None:
        return next(it, None)

    op = get()
    if op is None or op[0] != OP_DEPTH:
        return False
    if get() is None:
        return False
    op = get()
    if op is None or op[0] != OP_EQUAL:
        return False
    op = get()
    if op is None or op[0] != OP_IF:
        return False
    m_op = get()
    if m_op is None or not _is_script_number_op(*m_op):
        return False
    op = m_op
    while op[0] != OP_ELSE:
        nxt = get()
        if nxt is None:
            return False
        op = nxt
    csv_op = get()
    if csv_op is None or not _is_script_number_op(*csv_op):
        return False
    op = get()
    if op is None or op[0] != OP_CHECKSEQUENCEVERIFY:
        return False
    op = get()
    if op is None or op[0] != OP_DROP:
        return False
    k_op = get()
    if k_op is None or not _is_script_number_op(*k_op):
        return False
    # Equal thresholds would make the ELSE branch unreachable.
    if k_op[0] == m_op[0] and (k_op[1] or b"") == (m_op[1] or b""):
        return False
    op = k_op
    while op[0] != OP_ENDIF:
        nxt = get()
        if nxt is None:
            return False
        op = nxt
    op = get()
    if op is None or op[0] != OP_CHECKMULTISIG:
        return False
    return get() is None


@dataclass(frozen=True, slots=True)
class FedpegShape:
    """The parts of a canonical fedpegscript; no emergency keys for the plain
    multisig shape."""

    peg_threshold: int
    watchman_keys: tuple[bytes, ...]
    csv_delay: int = 0
    emergency_threshold: int = 0
    emergency_keys: tuple[bytes, ...] = ()


def _read_number(ops: list[tuple[int, bytes | None]], i: int) -> int:
    """A script number at ``ops[i]`` (OP_0, OP_1NEGATE, OP_1..OP_16 or a push
    of at most 4 bytes); minimality is left to the canonical rebuild."""
    if i >= len(ops):
        raise ParseError("fedpegscript ends early")
    op, data = ops[i]
    if data is None:
        if op == OP_1NEGATE:
            return -1
        if not OP_1 <= op <= OP_16:
            raise ParseError(f"opcode 0x{op:02x} where a number belongs")
        return op - OP_1 + 1
    if len(data) > 4:
        raise ParseError("script number longer than 4 bytes")
    if not data:
        return 0
    value = int.from_bytes(data, "little")
    if data[-1] & 0x80:  # sign-magnitude, as CScriptNum
        return -(value & ~(0x80 << (8 * (len(data) - 1))))
    return value


def parse_fedpegscript(script: bytes) -> FedpegShape:
    """The Liquid template or plain multisig, exactly as this module builds
    them (minimal pushes, compressed keys); ParseError for anything else."""
    if not isinstance(script, (bytes, bytearray)):
        raise ParseError("fedpegscript is bytes")
    script = bytes(script)
    ops = iter_ops(script)
    if ops and ops[0] == (OP_DEPTH, None):
        # OP_DEPTH <m+1> OP_EQUAL OP_IF <m> keys <n> OP_ELSE <csv> CSV DROP <k> keys <e> OP_ENDIF CMS
        try:
            else_at = ops.index((OP_ELSE, None))
            endif_at = ops.index((OP_ENDIF, None))
        except ValueError:
            raise ParseError("fedpegscript lacks OP_ELSE or OP_ENDIF") from None
        if else_at < 6 or endif_at < else_at + 6:
            raise ParseError("fedpegscript branches too short")
        m = _read_number(ops, 4)
        keys = tuple(data for _, data in ops[5 : else_at - 1] if data is not None)
        csv = _read_number(ops, else_at + 1)
        k = _read_number(ops, else_at + 4)
        ekeys = tuple(data for _, data in ops[else_at + 5 : endif_at - 1] if data is not None)
        if not (1 <= m <= len(keys) <= MAX_PEG_KEYS and 1 <= k <= len(ekeys) <= MAX_PEG_KEYS and k != m):
            raise ParseError(f"fedpegscript thresholds {m}-of-{len(keys)}, {k}-of-{len(ekeys)} out of range")
        if not 1 <= csv <= MAX_CSV_DELAY:
            raise ParseError(f"fedpegscript csv delay {csv} out of range")
        shape = FedpegShape(m, keys, csv, k, ekeys)
        if liquid_fedpegscript(m, keys, csv, k, ekeys) != script:
            raise ParseError("not a canonical Liquid watchman fedpegscript")
        if not match_liquid_watchman(script):  # pragma: no cover - implied by the canonical form
            raise ParseError("fedpegscript does not match Elements' watchman template")
    else:
        m, keys = parse_multisig_script(script)
        if len(keys) > MAX_PEG_KEYS:
            raise ParseError(f"more than {MAX_PEG_KEYS} watchman keys")
        shape = FedpegShape(m, keys)
    for key in (*shape.watchman_keys, *shape.emergency_keys):
        parse_pubkey(key)
    return shape


# --- Pay-to-contract ------------------------------------------------------------------


def pegin_tweak(pubkey: bytes, claim_script: bytes) -> bytes:
    """HMAC-SHA256(key=the 33-byte compressed pubkey, msg=claim_script)."""
    return hmac.new(pubkey, claim_script, hashlib.sha256).digest()


def tweak_pubkey(pubkey: bytes, claim_script: bytes) -> bytes:
    """P + tweak·G, compressed. ValueError for a push that is no key, or a
    tweak of n or more (which would need a SHA-256 break)."""
    try:
        point = PublicKey(pubkey)
        return point.add(pegin_tweak(pubkey, claim_script)).format()
    except ValueError as e:
        raise ValueError(f"cannot tweak {pubkey.hex()}: {e}") from None


def tweak_private_key(key: PrivateKey, claim_script: bytes) -> PrivateKey:
    """A watchman's key for the peg-in outputs of ``claim_script``:
    sk + HMAC-SHA256(P, claim_script) mod n, whose public key is
    :func:`tweak_pubkey` of P."""
    return key.add(pegin_tweak(key.public_key.format(), claim_script))


def calculate_contract(fedpegscript: bytes, claim_script: bytes) -> bytes:
    """Elements' ``calculate_contract``: every 33-byte push tweaked, except
    after OP_ELSE in a script matching the Liquid watchman template. Other
    pushes are re-pushed (minimally, as ``CScript << vector`` does) and
    opcodes copied. ParseError for a script whose pushes run off its end,
    ValueError for a 33-byte push that is no public key."""
    liquid = match_liquid_watchman(fedpegscript)
    out = bytearray()
    else_found = False
    for op, data in iter_ops(fedpegscript):
        if liquid and op == OP_ELSE:
            else_found = True
        if data is not None and len(data) == 33 and not else_found:
            out += push_data(tweak_pubkey(data, claim_script))
        elif data:
            out += push_data(data)
        else:
            out.append(op)
    return bytes(out)


# --- Parameters -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PakEntry:
    """One exchange's peg-out authorization key pair, as an Elements PAK list
    entry: an online key (used for every peg-out) and an offline key (kept
    cold; its secret plus the peg-out key's signs the whitelist proof)."""

    online: bytes
    offline: bytes

    def __post_init__(self) -> None:
        parse_pubkey(self.online)
        parse_pubkey(self.offline)

    @property
    def extension(self) -> bytes:
        """Elements' dynafed extension-space form: offline key, then online."""
        return self.offline + self.online

    @classmethod
    def from_extension(cls, entry: bytes) -> PakEntry:
        if len(entry) != 66:
            raise ParseError("a PAK entry is 66 bytes")
        return cls(online=entry[33:], offline=entry[:33])


@dataclass(frozen=True)
class PegParams:
    """The peg's federation parameters.

    ``parent`` names the mainchain: its genesis hash (named in every peg-in
    and peg-out), its proof-of-work limit and its address prefix.
    ``policy_asset`` must be the sidechain's (``ChainParams.policy_asset``;
    :meth:`check_chain` compares). ``pak`` is the list of exchanges allowed to
    peg out; with ``enforce_pak`` (the default, as Liquid) every peg-out needs
    a proof against it, so an empty list refuses every peg-out.
    """

    watchman_keys: tuple[bytes, ...]
    peg_threshold: int
    emergency_keys: tuple[bytes, ...] = ()
    emergency_threshold: int = 0
    csv_delay: int = LIQUID_CSV_DELAY
    pegin_min_depth: int = DEFAULT_PEGIN_MIN_DEPTH
    min_pegin_value: int = DEFAULT_MIN_PEGIN_VALUE
    parent: MainchainNetwork = REGTEST
    policy_asset: bytes = _ZERO32
    pak: tuple[PakEntry, ...] = ()
    enforce_pak: bool = True

    def __post_init__(self) -> None:
        n, e = len(self.watchman_keys), len(self.emergency_keys)
        if not 1 <= self.peg_threshold <= n <= MAX_PEG_KEYS:
            raise ValueError(f"need 1 <= m <= n <= {MAX_PEG_KEYS}, got m={self.peg_threshold} n={n}")
        if e:
            if not 1 <= self.emergency_threshold <= e <= MAX_PEG_KEYS:
                raise ValueError(f"need 1 <= k <= e <= {MAX_PEG_KEYS}, got k={self.emergency_threshold} e={e}")
            if self.emergency_threshold == self.peg_threshold:
                # OP_DEPTH could not tell the branches apart, and Elements'
                # template match (hence the untweaked emergency keys) fails.
                raise ValueError("the emergency threshold must differ from the peg threshold")
            if not 1 <= self.csv_delay <= MAX_CSV_DELAY:
                raise ValueError(f"csv delay must be 1..{MAX_CSV_DELAY} blocks")
        elif self.emergency_threshold:
            raise ValueError("an emergency threshold without emergency keys")
        for key in (*self.watchman_keys, *self.emergency_keys):
            parse_pubkey(key)
        if len(set(self.watchman_keys)) != n or len(set(self.emergency_keys)) != e:
            raise ValueError("duplicate key in the fedpegscript")
        if self.pegin_min_depth < 1:
            raise ValueError("pegin_min_depth is at least 1")
        if not 0 <= self.min_pegin_value <= MAX_MONEY:
            raise ValueError("min_pegin_value out of range")
        if len(self.policy_asset) != 32:
            raise ValueError("policy asset is 32 bytes")
        if len(self.pak) > MAX_PAK_ENTRIES:
            raise ValueError(f"at most {MAX_PAK_ENTRIES} PAK entries")
        if not all(isinstance(p, PakEntry) for p in self.pak):
            raise ValueError("pak holds PakEntry items")

    @classmethod
    def from_fedpegscript(cls, script: bytes, **kwargs: Any) -> PegParams:
        """Parameters whose fedpegscript is ``script`` (ParseError if it is not
        one this module builds); other fields from ``kwargs``."""
        shape = parse_fedpegscript(script)
        fields: dict[str, Any] = dict(
            watchman_keys=shape.watchman_keys,
            peg_threshold=shape.peg_threshold,
            emergency_keys=shape.emergency_keys,
            emergency_threshold=shape.emergency_threshold,
        )
        if shape.emergency_keys:
            fields["csv_delay"] = shape.csv_delay
        try:
            params = cls(**fields, **kwargs)
        except ValueError as e:
            raise ParseError(str(e)) from None
        if params.fedpegscript != script:  # pragma: no cover - parse is canonical
            raise ParseError("fedpegscript does not round-trip")
        return params

    @property
    def parent_genesis_hash(self) -> bytes:
        return self.parent.genesis_hash

    @cached_property
    def fedpegscript(self) -> bytes:
        if not self.emergency_keys:
            return multisig_script(self.peg_threshold, self.watchman_keys)
        return liquid_fedpegscript(
            self.peg_threshold, self.watchman_keys, self.csv_delay, self.emergency_threshold, self.emergency_keys
        )

    @cached_property
    def fedpeg_program(self) -> bytes:
        """P2WSH of the untweaked fedpegscript: where no peg-in pays."""
        return p2wsh_script(self.fedpegscript)

    def pegin_contract(self, claim_script: bytes) -> bytes:
        """The tweaked fedpegscript for ``claim_script``: the witness script of
        its peg-in outputs, which the watchmen (or, late, the emergency keys)
        sign."""
        return calculate_contract(self.fedpegscript, claim_script)

    def pegin_script_pubkey(self, claim_script: bytes) -> bytes:
        """The mainchain scriptPubKey a peg-in for ``claim_script`` pays."""
        return p2wsh_script(self.pegin_contract(claim_script))

    def pegin_address(self, claim_script: bytes) -> str:
        """The bech32 mainchain address of :meth:`pegin_script_pubkey`."""
        program = self.pegin_script_pubkey(claim_script)[2:]
        return encode_segwit_address(self.parent.bech32_hrp, 0, program)

    def check_chain(self, chain: ChainParams) -> None:
        """ValueError unless the sidechain's parameters name the same parent
        genesis and policy asset."""
        if chain.parent_genesis_hash != self.parent_genesis_hash:
            raise ValueError("ChainParams.parent_genesis_hash differs from the peg's parent")
        if chain.policy_asset != self.policy_asset:
            raise ValueError("ChainParams.policy_asset differs from the peg's")


# --- Peg-in -----------------------------------------------------------------------------


class MainchainView(Protocol):
    """This member's view of the mainchain, supplied by the I/O layer (its own
    bitcoind). Hashes are in internal byte order, as in the proof's header;
    bitcoind's RPC shows them reversed."""

    def block_height(self, block_hash: bytes) -> int | None:
        """The height of ``block_hash`` if it is in the best chain, else None
        (unknown, or on a stale branch)."""
        ...

    def tip_height(self) -> int:
        """The height of the best chain's tip."""
        ...


@runtime_checkable
class MainchainTxCounts(Protocol):
    """Optional for a :class:`MainchainView`: how many transactions a block
    has. When the view offers it, a proof's transaction count must equal the
    block's, as Elements' ``IsConfirmedBitcoinBlock(hash, depth, nTx)``
    checks: a proof of a shallower tree could pass an inner node off as a
    transaction (the 64-byte-transaction weakness, CVE-2017-12842)."""

    def block_tx_count(self, block_hash: bytes) -> int | None: ...


@dataclass(frozen=True, slots=True)
class PegInWitness:
    """A parsed peg-in witness stack (table in the module docstring)."""

    value: int
    asset: bytes
    genesis_hash: bytes
    claim_script: bytes
    tx: BtcTransaction
    proof: MerkleBlock

    def to_stack(self) -> tuple[bytes, ...]:
        return (
            self.value.to_bytes(8, "little"),
            self.asset,
            self.genesis_hash,
            self.claim_script,
            self.tx.serialize(),
            self.proof.serialize(),
        )

    @classmethod
    def parse(cls, stack: Sequence[bytes]) -> PegInWitness:
        """Every item strictly; ParseError naming the item otherwise."""
        value, asset, genesis = _parse_header_items(stack)
        claim_script = stack[3]
        try:
            tx = BtcTransaction.parse(stack[4])
        except ParseError as e:
            raise ParseError(f"mainchain transaction: {e}") from None
        try:
            proof = MerkleBlock.parse(stack[5])
        except ParseError as e:
            raise ParseError(f"txout proof: {e}") from None
        return cls(value, asset, genesis, claim_script, tx, proof)


def _parse_header_items(stack: Sequence[bytes]) -> tuple[int, bytes, bytes]:
    """Items 0 to 3, which need no knowledge of Bitcoin's formats."""
    if not isinstance(stack, (tuple, list)) or len(stack) != 6:
        raise ParseError("pegin-no-witness, Not enough stack items.")
    if not all(isinstance(item, bytes) for item in stack):
        raise ParseError("peg-in witness items are bytes")
    raw_value, asset, genesis, claim_script = stack[0], stack[1], stack[2], stack[3]
    if len(raw_value) != 8:
        raise ParseError("pegin-no-witness, Could not deserialize value (it is 8 bytes).")
    value = int.from_bytes(raw_value, "little", signed=True)
    if not 0 <= value <= MAX_MONEY:
        raise ParseError("pegin-no-witness, Value was not in valid value range.")
    if len(asset) != 32:
        raise ParseError("pegin-no-witness, Asset type was not 32 bytes.")
    if len(genesis) != 32:
        raise ParseError("pegin-no-witness, Parent genesis blockhash was not 32 bytes.")
    if len(claim_script) > MAX_CLAIM_SCRIPT_SIZE:
        raise ParseError("pegin-no-witness, Claim script is too large.")
    return value, asset, genesis


@dataclass(frozen=True, slots=True)
class PegInClaim:
    """A peg-in whose witness checks out, before the depth check."""

    prevout: OutPoint
    value: int
    claim_script: bytes
    block_hash: bytes
    tx_position: int
    """The transaction's index in its block; 0 is a coinbase."""
    required_depth: int
    n_transactions: int
    """The block's transaction count, as the proof states it."""

    def output(self, policy_asset: bytes) -> TxOut:
        """The output the claim spends on the sidechain (Elements'
        ``GetPeginOutputFromWitness``)."""
        return TxOut.explicit(policy_asset, self.value, self.claim_script)


def _reason(detail: str) -> str:
    return f"pegin-no-witness, {detail}"


class PegInRules:
    """The chain state's :class:`~consensus.chainstate.PegInVerifier` for this
    peg. ``mainchain`` answers the depth questions; everything else comes
    from the witness."""

    def __init__(self, peg: PegParams, mainchain: MainchainView) -> None:
        self._peg = peg
        self._mainchain = mainchain

    @property
    def peg(self) -> PegParams:
        return self._peg

    def verify_pegin(self, tx: Transaction, index: int, height: int) -> TxOut:
        txin = tx.inputs[index]
        if not txin.is_pegin:
            raise BadPegInWitness(f"input {index} is not a peg-in")
        claim = self.check_claim(txin.prevout, tx.input_witnesses[index].pegin_witness)
        self.check_depth(claim)
        return claim.output(self._peg.policy_asset)

    def check_claim(self, prevout: OutPoint, stack: Sequence[bytes]) -> PegInClaim:
        """Every rule but the mainchain's depth (Elements' ``check_depth=false``):
        what can be checked from the bytes alone."""
        peg = self._peg
        try:
            value, asset, genesis = _parse_header_items(stack)
        except ParseError as e:
            raise BadPegInWitness(str(e)) from None
        claim_script = stack[3]
        if genesis != peg.parent_genesis_hash:
            raise PegInWrongGenesis(_reason(f"Parent genesis block mismatch: {hash_to_hex(genesis)}."))
        if asset != peg.policy_asset:
            raise PegInWrongAsset(_reason(f"asset {hash_to_hex(asset)} is not the pegged asset."))

        try:
            proof = MerkleBlock.parse(stack[5])
            found = proof.extract()
        except ParseError as e:
            raise PegInBadProof(_reason(f"Could not extract block and tx from merkleblock: {e}.")) from None
        if len(found.matches) != 1:
            raise PegInBadProof(_reason(f"Merkle proof matches {len(found.matches)} transactions, not one."))
        if not proof.header.check_pow(peg.parent.pow_limit):
            raise PegInBadProof(_reason("Parent proof of work is invalid or insufficient."))
        proven_txid, position = found.matches[0]

        try:
            mainchain_tx = BtcTransaction.parse(stack[4])
        except ParseError as e:
            raise BadPegInWitness(_reason(f"Peg-in tx is invalid: {e}.")) from None
        if mainchain_tx.txid != prevout.txid:
            raise PegInTxMismatch(_reason("Peg-in tx is invalid: its txid is not the input's prevout."))
        if prevout.index >= len(mainchain_tx.outputs):
            raise PegInTxMismatch(_reason(f"Peg-in tx is invalid: it has no output {prevout.index}."))
        if proven_txid != prevout.txid:
            raise PegInTxNotInProof(_reason("Merkle proof and txid mismatch."))

        out = mainchain_tx.outputs[prevout.index]
        if out.value != value:
            raise PegInValueMismatch(_reason(f"Peg-in tx is invalid: output is {out.value}, witness says {value}."))
        if value < peg.min_pegin_value:
            raise PegInValueTooLow(_reason(f"value {value} is below the peg's minimum {peg.min_pegin_value}."))
        expected = peg.pegin_script_pubkey(claim_script)
        if out.script_pubkey != expected:
            spk = out.script_pubkey
            if len(spk) == 34 and spk[:2] == b"\x00\x20" and spk != peg.fedpeg_program:
                raise ClaimScriptMismatch(
                    _reason("Peg-in tx is invalid: the output pays a P2WSH the claim script does not derive.")
                )
            raise NotPegInAddress(_reason(f"Peg-in tx is invalid: the output pays {spk.hex()}, no peg-in address."))

        required = peg.pegin_min_depth
        if position == 0:
            # Elements: a coinbase output is not claimable before it matures.
            required = max(required, COINBASE_MATURITY)
        return PegInClaim(
            prevout, value, claim_script, proof.header.hash, position, required, proof.tree.n_transactions
        )

    def check_depth(self, claim: PegInClaim) -> int:
        """The proven block's depth in this member's best chain; raises unless
        it is at least the claim's required depth."""
        height = self._mainchain.block_height(claim.block_hash)
        if height is None:
            raise PegInBlockNotInBestChain(
                _reason(f"Needs more confirmations: block {hash_to_hex(claim.block_hash)} is not in the best chain.")
            )
        depth = self._mainchain.tip_height() - height + 1
        if depth < claim.required_depth:
            raise PegInInsufficientDepth(
                _reason(f"Needs more confirmations: {depth} of {claim.required_depth} (block at height {height}).")
            )
        if isinstance(self._mainchain, MainchainTxCounts):
            n_tx = self._mainchain.block_tx_count(claim.block_hash)
            if n_tx is not None and n_tx != claim.n_transactions:
                raise PegInBadProof(
                    _reason(
                        f"Needs more confirmations: the proof counts {claim.n_transactions} transactions, "
                        f"the block has {n_tx}."
                    )
                )
        return depth


def build_pegin_witness(
    peg: PegParams, claim_script: bytes, mainchain_tx: BtcTransaction, proof: MerkleBlock, vout: int
) -> tuple[bytes, ...]:
    """The peg-in witness a wallet puts on its claim's input (prevout:
    ``mainchain_tx.txid``, ``vout``). The transaction goes in without its
    witness, as Elements' ``createrawpegin`` does: only its txid is proven."""
    stripped = BtcTransaction(mainchain_tx.version, mainchain_tx.inputs, mainchain_tx.outputs, mainchain_tx.locktime)
    return PegInWitness(
        mainchain_tx.outputs[vout].value,
        peg.policy_asset,
        peg.parent_genesis_hash,
        claim_script,
        stripped,
        proof,
    ).to_stack()


# --- Peg-out ----------------------------------------------------------------------------

# libsecp256k1-zkp's whitelist proofs, bound through the loader that
# confidential/ uses for the same library (wallycore's own build, its context).
_vp = ctypes.c_void_p
_PUBKEY_SIZE = 64
_WHITELIST_SIG_SIZE = 8704
"""sizeof(secp256k1_whitelist_signature) is 8 + 32·256 = 8,200; reserved here
with room to spare, as confidential/_lib.py does for surjection proofs."""
_ec_pubkey_parse = _zkp._bind("secp256k1_ec_pubkey_parse", [_vp, _vp, ctypes.c_char_p, ctypes.c_size_t], ctypes.c_int)
_whitelist_parse = _zkp._bind(
    "secp256k1_whitelist_signature_parse", [_vp, _vp, ctypes.c_char_p, ctypes.c_size_t], ctypes.c_int
)
_whitelist_n_keys = _zkp._bind("secp256k1_whitelist_signature_n_keys", [_vp], ctypes.c_size_t)
_whitelist_verify = _zkp._bind("secp256k1_whitelist_verify", [_vp, _vp, _vp, _vp, ctypes.c_size_t, _vp], ctypes.c_int)


def _parse_points(keys: Sequence[bytes]) -> ctypes.Array[ctypes.c_char] | None:
    """libsecp256k1's internal form of each key, contiguous; None if any fails."""
    buf = ctypes.create_string_buffer(_PUBKEY_SIZE * max(1, len(keys)))
    base = ctypes.addressof(buf)
    for i, key in enumerate(keys):
        if _ec_pubkey_parse(_zkp.CTX, base + i * _PUBKEY_SIZE, key, len(key)) != 1:
            return None
    return buf


class PakList:
    """A PAK list with its keys parsed once, ready for whitelist verification."""

    __slots__ = ("_entries", "_offline", "_online")

    def __init__(self, entries: Sequence[PakEntry]) -> None:
        if len(entries) > MAX_PAK_ENTRIES:
            raise ValueError(f"at most {MAX_PAK_ENTRIES} PAK entries")
        self._entries = tuple(entries)
        online = _parse_points([e.online for e in self._entries])
        offline = _parse_points([e.offline for e in self._entries])
        if online is None or offline is None:  # pragma: no cover - PakEntry parsed them already
            raise ValueError("PAK key does not parse")
        self._online = online
        self._offline = offline

    def __len__(self) -> int:
        return len(self._entries)

    def verify(self, proof: bytes, pubkey: bytes) -> bool:
        """libsecp256k1-zkp's whitelist verification of ``proof`` for the
        peg-out key ``pubkey`` against every entry (``ScriptHasValidPAKProof``)."""
        n = len(self._entries)
        if n == 0 or not proof:
            return False
        sub = _parse_points([pubkey])
        if sub is None:
            return False
        sig = ctypes.create_string_buffer(_WHITELIST_SIG_SIZE)
        if _whitelist_parse(_zkp.CTX, sig, proof, len(proof)) != 1:
            return False
        if _whitelist_n_keys(sig) != n:
            return False
        return bool(_whitelist_verify(_zkp.CTX, sig, self._online, self._offline, n, sub) == 1)


def whitelist_proof(
    entries: Sequence[PakEntry], index: int, pubkey: bytes, online_key: PrivateKey, summed_key: bytes
) -> bytes:
    """An exchange's whitelist proof for the peg-out key ``pubkey``, made by
    entry ``index``'s holder: ``online_key`` is that entry's online secret,
    ``summed_key`` the secret of offline key + ``pubkey`` (offline sk + peg-out
    sk mod n). Through wallycore's ``asset_pak_whitelistproof``; deterministic."""
    online = b"".join(e.online for e in entries)
    offline = b"".join(e.offline for e in entries)
    proof = wally.asset_pak_whitelistproof(online, offline, index, pubkey, online_key.secret, summed_key)
    return bytes(proof)


def summed_secret(offline_key: PrivateKey, pegout_key: PrivateKey) -> bytes:
    """offline sk + peg-out sk mod n: the second secret a whitelist proof needs."""
    return offline_key.add(pegout_key.secret).secret


def pak_pegout_script(genesis_hash: bytes, destination: bytes, pubkey: bytes, proof: bytes) -> bytes:
    """``OP_RETURN <genesis> <destination> <pubkey> <proof>``."""
    return pegout_script(genesis_hash, destination, (pubkey, proof))


def _p2pkh(h: bytes) -> bytes:
    return b"\x76\xa9\x14" + h + b"\x88\xac"


def _p2sh(h: bytes) -> bytes:
    return b"\xa9\x14" + h + b"\x87"


def _p2wpkh(h: bytes) -> bytes:
    return b"\x00\x14" + h


def pak_destinations(pubkey: bytes) -> tuple[bytes, bytes, bytes]:
    """The three destinations a PAK peg-out of ``pubkey`` may pay: P2PKH,
    P2WPKH and P2SH-P2WPKH."""
    h = hash160(pubkey)
    return _p2pkh(h), _p2wpkh(h), _p2sh(hash160(_p2wpkh(h)))


def is_payable_destination(script: bytes) -> bool:
    """P2PKH, P2SH, or a segwit v0 (20 or 32 bytes) or v1 (32 bytes) program:
    the scripts the watchmen will pay without PAK."""
    n = len(script)
    if n == 25 and script[:3] == b"\x76\xa9\x14" and script[23:] == b"\x88\xac":
        return True
    if n == 23 and script[:2] == b"\xa9\x14" and script[22] == 0x87:
        return True
    if n in (22, 34) and script[0] == 0 and script[1] == n - 2:
        return True
    return n == 34 and script[:2] == b"\x51\x20"


class PegOutRules:
    """Checks a transaction's peg-out outputs against the peg: the chain
    state's ``PegOutVerifier``."""

    def __init__(self, peg: PegParams) -> None:
        self._peg = peg
        self._pak = PakList(peg.pak)

    @property
    def peg(self) -> PegParams:
        return self._peg

    def verify_pegout(self, tx: Transaction, index: int) -> None:
        self.check_output(tx.outputs[index])

    def check_output(self, out: TxOut) -> PegOut | None:
        """The peg-out ``out`` makes, None if it is no peg-out; a PegOutError
        if it is one this peg refuses."""
        pegout = parse_pegout(out.script_pubkey)
        if pegout is None:
            return None
        if not out.is_explicit:
            raise BlindedPegOut("invalid-pegout-proof, a peg-out's asset and amount must be explicit")
        if out.asset.asset_id != self._peg.policy_asset:
            raise BlindedPegOut("invalid-pegout-proof, a peg-out pays the pegged asset only")
        if pegout.genesis_hash != self._peg.parent_genesis_hash:
            raise WrongParentChain(
                f"invalid-pegout-proof, peg-out to parent genesis {hash_to_hex(pegout.genesis_hash)}, "
                f"not {hash_to_hex(self._peg.parent_genesis_hash)}"
            )
        if not self._peg.enforce_pak:
            if not is_payable_destination(pegout.parent_script):
                raise BadPegOutDestination(
                    f"invalid-pegout-proof, unpayable destination {pegout.parent_script[:40].hex()}"
                )
            return pegout
        self._check_pak(out.script_pubkey, pegout)
        return pegout

    def _check_pak(self, script: bytes, pegout: PegOut) -> None:
        if len(self._pak) == 0:
            raise UnauthorizedPegOut("invalid-pegout-proof, the PAK list is empty: no peg-out is authorized")
        ops = iter_ops(script[1:])  # parse_pegout succeeded, so this does too
        if any(op > OP_PUSHDATA4 for op, _ in ops):  # pragma: no cover - parse_pegout refuses them
            raise UnauthorizedPegOut("invalid-pegout-proof, a non-push in the peg-out script")
        if len(pegout.extra) < 1 or len(pegout.extra[0]) != 33:
            raise UnauthorizedPegOut("invalid-pegout-proof, no 33-byte PAK pubkey after the destination")
        pubkey = pegout.extra[0]
        if pegout.parent_script not in pak_destinations(pubkey):
            raise BadPegOutDestination(
                "invalid-pegout-proof, the destination is not P2PKH, P2WPKH or P2SH-P2WPKH of the PAK pubkey"
            )
        if len(pegout.extra) < 2 or not pegout.extra[1]:
            raise UnauthorizedPegOut("invalid-pegout-proof, no whitelist proof")
        if len(pegout.extra) > 2:
            raise UnauthorizedPegOut("invalid-pegout-proof, pushes after the whitelist proof")
        if not self._pak.verify(pegout.extra[1], pubkey):
            raise UnauthorizedPegOut(
                "invalid-pegout-proof, the whitelist proof does not verify against the PAK list "
                "(malformed, or the exchange is not in it)"
            )

    def check_transaction(self, tx: Transaction) -> list[tuple[int, PegOut]]:
        """Every peg-out of ``tx`` with its output index, or the first refusal."""
        found: list[tuple[int, PegOut]] = []
        for i, out in enumerate(tx.outputs):
            pegout = self.check_output(out)
            if pegout is not None:
                found.append((i, pegout))
        return found


__all__ = [
    "COINBASE_MATURITY",
    "DEFAULT_MIN_PEGIN_VALUE",
    "DEFAULT_PEGIN_MIN_DEPTH",
    "LIQUID_CSV_DELAY",
    "MAX_CLAIM_SCRIPT_SIZE",
    "FedpegShape",
    "MainchainTxCounts",
    "MainchainView",
    "PakEntry",
    "PakList",
    "PegInClaim",
    "PegInRules",
    "PegInWitness",
    "PegOutRules",
    "PegParams",
    "build_pegin_witness",
    "calculate_contract",
    "is_payable_destination",
    "liquid_fedpegscript",
    "match_liquid_watchman",
    "pak_destinations",
    "pak_pegout_script",
    "parse_fedpegscript",
    "pegin_tweak",
    "summed_secret",
    "tweak_private_key",
    "tweak_pubkey",
    "whitelist_proof",
]

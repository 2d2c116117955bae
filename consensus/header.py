"""Elements' legacy signed-block header, and its proof.

Serialization (``src/primitives/block.h`` in Elements, non-dynafed):

    field           size        notes
    version         int32       bit 31 clear (bit 31 marks a dynafed header)
    prev_hash       32
    merkle_root     32          over txids
    time            uint32
    height          uint32
    challenge       varbytes    the signblockscript
    solution        varbytes    the scriptSig that satisfies it

The block hash is sha256d of every field except ``solution``, so signers
sign the hash and their signatures do not change it. The solution is
``OP_0 <sig_1> .. <sig_m>``: CHECKMULTISIG's dummy, then m DER signatures
(no sighash byte) over the 32-byte hash in internal byte order, in the
order of the keys they belong to.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property

from coincurve import PrivateKey, PublicKey

from .errors import (
    BadBlockSignature,
    BadChallenge,
    DuplicateSignature,
    ParseError,
    ProofTooLarge,
    ThresholdNotMet,
    UnknownSigner,
)
from .hashes import hash_to_hex, sha256d
from .params import FederationParams
from .script import OP_0, is_low_s, is_strict_der, parse_push_only, push_data
from .serialize import ByteReader, parse_exact, ser_i32, ser_u32, ser_varbytes

DYNAFED_VERSION_BIT = 1 << 31
MAX_CHALLENGE_SIZE = 10_000
MAX_SOLUTION_SIZE = 12 * 74 + 16 * 33  # Elements' bound for the legacy proof


@dataclass(frozen=True, slots=True)
class BlockProof:
    challenge: bytes
    solution: bytes

    def serialize(self) -> bytes:
        return ser_varbytes(self.challenge) + ser_varbytes(self.solution)

    @classmethod
    def read(cls, r: ByteReader) -> "BlockProof":
        challenge = r.read_varbytes(MAX_CHALLENGE_SIZE)
        solution = r.read_varbytes(MAX_SOLUTION_SIZE)
        return cls(challenge, solution)


@dataclass(frozen=True)
class BlockHeader:
    version: int
    prev_hash: bytes
    merkle_root: bytes
    time: int
    height: int
    proof: BlockProof

    def __post_init__(self) -> None:
        if len(self.prev_hash) != 32 or len(self.merkle_root) != 32:
            raise ValueError("hashes are 32 bytes")
        if not -(2**31) <= self.version < 2**31:
            raise ValueError("version is int32")
        if self.version & DYNAFED_VERSION_BIT:
            raise ValueError("dynafed headers are not supported")
        if not 0 <= self.time < 2**32 or not 0 <= self.height < 2**32:
            raise ValueError("time and height are uint32")

    def _unsigned_prefix(self) -> bytes:
        return (
            ser_i32(self.version)
            + self.prev_hash
            + self.merkle_root
            + ser_u32(self.time)
            + ser_u32(self.height)
            + ser_varbytes(self.proof.challenge)
        )

    def serialize(self) -> bytes:
        return self._unsigned_prefix() + ser_varbytes(self.proof.solution)

    @cached_property
    def hash(self) -> bytes:
        """The block hash, internal byte order: excludes the solution."""
        return sha256d(self._unsigned_prefix())

    @property
    def hash_hex(self) -> str:
        return hash_to_hex(self.hash)

    @classmethod
    def read(cls, r: ByteReader) -> "BlockHeader":
        version = r.read_i32()
        if version & DYNAFED_VERSION_BIT:
            raise ParseError("dynafed headers are not supported")
        prev_hash = r.read(32)
        merkle_root = r.read(32)
        time = r.read_u32()
        height = r.read_u32()
        proof = BlockProof.read(r)
        return cls(version, prev_hash, merkle_root, time, height, proof)

    @classmethod
    def parse(cls, data: bytes) -> "BlockHeader":
        return parse_exact(data, cls.read)

    def with_solution(self, solution: bytes) -> "BlockHeader":
        return BlockHeader(
            self.version,
            self.prev_hash,
            self.merkle_root,
            self.time,
            self.height,
            BlockProof(self.proof.challenge, solution),
        )


# --- Signing and verification ------------------------------------------------


def sign_block_hash(key: PrivateKey, block_hash: bytes) -> bytes:
    """A member's signature over a block hash: DER, low S, no sighash byte.

    coincurve signs deterministically (RFC 6979), so the same key and hash
    always give the same signature and signing needs no randomness.
    """
    if len(block_hash) != 32:
        raise ValueError("block hash is 32 bytes")
    sig: bytes = key.sign(block_hash, hasher=None)
    return sig


class KeySigner:
    """A BlockSigner over a software key (an HSM would implement the same
    one-method interface)."""

    def __init__(self, key: PrivateKey) -> None:
        self._key = key

    def __repr__(self) -> str:  # never show the key
        return f"KeySigner({self._key.public_key.format().hex()})"

    def sign(self, block_hash: bytes) -> bytes:
        return sign_block_hash(self._key, block_hash)


def check_member_signature(federation: FederationParams, signer: bytes, block_hash: bytes, sig: bytes) -> int:
    """A signature that names its signer (a signing-protocol message): the
    member's index, or UnknownSigner / BadBlockSignature."""
    index = federation.member_index(signer)
    if index is None:
        raise UnknownSigner(f"{signer.hex()} is not a federation member")
    if not verify_member_signature(federation.pubkeys[index], block_hash, sig):
        raise BadBlockSignature(f"member {index}'s signature does not verify")
    return index


def verify_member_signature(pubkey: PublicKey, block_hash: bytes, sig: bytes) -> bool:
    """One member's signature, under the block proof's script flags."""
    if not is_strict_der(sig) or not is_low_s(sig):
        return False
    try:
        ok: bool = pubkey.verify(sig, block_hash, hasher=None)
    except Exception:
        return False
    return ok


def build_solution(federation: FederationParams, signatures: Mapping[int, bytes]) -> bytes:
    """The solution from member-index -> signature, using exactly m of them
    (the lowest-indexed, which is deterministic), in key order."""
    if len(signatures) < federation.m:
        raise ThresholdNotMet(f"{len(signatures)} signatures, need {federation.m}")
    chosen = sorted(signatures)[: federation.m]
    return bytes((OP_0,)) + b"".join(push_data(signatures[i]) for i in chosen)


def solution_signers(federation: FederationParams, header: BlockHeader) -> list[int]:
    """Check that the header's proof satisfies the federation's challenge and
    return the member indices whose signatures it carries.

    The success path is CHECKMULTISIG's own walk (Elements' rule): the
    signatures, in order, must each verify under a key at or after the key
    the previous one matched. Only when that walk fails is each signature
    tried against every key, to name the broken rule.
    """
    if header.proof.challenge != federation.challenge:
        raise BadChallenge("challenge is not the federation's signblockscript")
    if len(header.proof.solution) > MAX_SOLUTION_SIZE:
        raise ProofTooLarge(f"solution is {len(header.proof.solution)} bytes")
    try:
        stack = parse_push_only(header.proof.solution)
    except ParseError as e:
        raise BadBlockSignature(f"solution is not minimal push-only: {e}") from None
    if not stack or stack[0] != b"":
        raise BadBlockSignature("CHECKMULTISIG dummy element must be empty (NULLDUMMY)")
    sigs = stack[1:]
    m = federation.m
    if len(sigs) < m:
        raise ThresholdNotMet(f"{len(sigs)} signatures, need {m}")
    if len(sigs) > m:
        # CLEANSTACK: CHECKMULTISIG consumes exactly m signatures.
        raise BadBlockSignature(f"{len(sigs)} signatures where the challenge takes exactly {m}")
    for sig in sigs:
        if not is_strict_der(sig) or not is_low_s(sig):
            raise BadBlockSignature("signature is not strict DER with low S")

    block_hash = header.hash
    keys = federation.pubkeys
    signers: list[int] = []
    k = 0
    for i, sig in enumerate(sigs):
        while k < len(keys) and len(sigs) - i <= len(keys) - k:
            if verify_member_signature(keys[k], block_hash, sig):
                break
            k += 1
        else:
            _diagnose(federation, block_hash, sigs)
        signers.append(k)
        k += 1
    return signers


def _diagnose(federation: FederationParams, block_hash: bytes, sigs: list[bytes]) -> None:
    """Name why CHECKMULTISIG's walk failed. Always raises."""
    seen: dict[int, int] = {}
    for i, sig in enumerate(sigs):
        signer = next(
            (j for j, key in enumerate(federation.pubkeys) if verify_member_signature(key, block_hash, sig)),
            None,
        )
        if signer is None:
            # An outsider's signature and a corrupted one are indistinguishable
            # here: ECDSA recovery finds *some* key for any well-formed sig.
            raise BadBlockSignature(f"signature {i} verifies under no federation key")
        if signer in seen:
            raise DuplicateSignature(f"signatures {seen[signer]} and {i} are both by member {signer}")
        seen[signer] = i
    raise BadBlockSignature("signatures are not in key order")

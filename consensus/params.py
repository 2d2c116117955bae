"""Federation and chain parameters.

The federation is n block-signing keys and a threshold m. Its challenge is
Elements' legacy signblockscript, ``OP_m <key_1..key_n> OP_n
OP_CHECKMULTISIG``; a block is final once its solution carries m valid
signatures under it.

Two m-of-n quorums share at least 2m - n members, so:

    offline_tolerance     = n - m        members may be down, blocks continue
    equivocation_tolerance = 2m - n - 1  members may sign conflicting blocks
                                         before two could both reach m
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from coincurve import PublicKey

from .errors import ParseError
from .script import multisig_script, parse_multisig_script

MAX_FEDERATION_SIZE = 15


def parse_pubkey(data: bytes) -> PublicKey:
    """A compressed secp256k1 public key; ParseError otherwise."""
    if len(data) != 33 or data[0] not in (2, 3):
        raise ParseError("public key must be 33 bytes, compressed")
    try:
        return PublicKey(data)
    except Exception as e:  # coincurve raises ValueError for off-curve points
        raise ParseError(f"invalid public key: {e}") from None


@dataclass(frozen=True)
class FederationParams:
    """Block-signing keys in member order, and the threshold."""

    signing_keys: tuple[bytes, ...]
    threshold: int

    def __post_init__(self) -> None:
        n = len(self.signing_keys)
        if not 1 <= self.threshold <= n <= MAX_FEDERATION_SIZE:
            raise ValueError(f"need 1 <= m <= n <= {MAX_FEDERATION_SIZE}, got m={self.threshold} n={n}")
        for k in self.signing_keys:
            parse_pubkey(k)
        if len(set(self.signing_keys)) != n:
            raise ValueError("duplicate signing key")

    @property
    def n(self) -> int:
        return len(self.signing_keys)

    @property
    def m(self) -> int:
        return self.threshold

    @property
    def offline_tolerance(self) -> int:
        """How many members may be offline while blocks are still produced."""
        return self.n - self.m

    @property
    def equivocation_tolerance(self) -> int:
        """How many members may equivocate before two conflicting blocks at
        one height could both gather m signatures. Negative means none and
        a fork needs no equivocator at all (m <= n/2)."""
        return 2 * self.m - self.n - 1

    @cached_property
    def challenge(self) -> bytes:
        """Elements' legacy signblockscript."""
        return multisig_script(self.m, self.signing_keys)

    @cached_property
    def pubkeys(self) -> tuple[PublicKey, ...]:
        """Parsed keys, kept so that verification never re-parses them."""
        return tuple(PublicKey(k) for k in self.signing_keys)

    @cached_property
    def max_solution_size(self) -> int:
        """Dummy byte plus m pushes of at most 72 bytes each, as Elements
        bounds it (``12*74+...``-style)."""
        return 1 + self.m * 74

    def member_index(self, pubkey: bytes) -> int | None:
        try:
            return self.signing_keys.index(pubkey)
        except ValueError:
            return None

    @classmethod
    def from_challenge(cls, challenge: bytes) -> "FederationParams":
        m, keys = parse_multisig_script(challenge)
        if len(keys) > MAX_FEDERATION_SIZE:
            raise ParseError(f"more than {MAX_FEDERATION_SIZE} keys")
        try:
            return cls(signing_keys=keys, threshold=m)
        except ValueError as e:
            raise ParseError(str(e)) from None


@dataclass(frozen=True)
class ChainParams:
    """Rules that do not depend on who the members are."""

    federation: FederationParams
    policy_asset: bytes = b"\x00" * 32
    """The asset id of pegged bitcoin (internal byte order)."""
    max_block_weight: int = 4_000_000
    max_block_serialized_size: int = 4_000_000
    max_future_block_time: int = 2 * 60 * 60
    """How far ahead of the validator's clock a header's time may be."""
    median_time_span: int = 11
    coinbase_maturity: int = 100
    block_version: int = 0x20000000
    genesis_time: int = 1_700_000_000
    initial_free_coins: int = 0
    """Satoshis created in genesis to ``initial_free_coins_script`` (test
    chains only, as Elements' ``-initialfreecoins``); 0 on a real chain where
    every coin arrives through a peg-in."""
    initial_free_coins_script: bytes = b""
    parent_genesis_hash: bytes = b"\x00" * 32
    """The mainchain's genesis block hash, named in peg-ins and peg-outs."""

    def __post_init__(self) -> None:
        if len(self.policy_asset) != 32:
            raise ValueError("policy asset is 32 bytes")
        if len(self.parent_genesis_hash) != 32:
            raise ValueError("parent genesis hash is 32 bytes")

"""A verification cache keyed on the whole context of a proof.

A proof is valid only for its context. Elements' range-proof cache was keyed
on the proof and the value commitment alone, so a proof once accepted for one
(asset, scriptPubKey) was accepted from the cache for another; PRs #1600 and
#1604 key it on all four. Here every key is a SHA256 over a per-cache random
salt and each part of the context, each part prefixed with its length, so no
two different contexts share a key:

    kind            key material (after the salt and a domain tag)
    range proof     len|proof  len|value commitment  len|asset generator  len|scriptPubKey
    surjection      len|proof  len|output generator  count|input generators...

Only successes are stored; policy checks made on top of a range proof's
result (min/max value) are re-applied on every hit by the caller.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Generic, TypeVar

T = TypeVar("T")

_RANGE_TAG = b"confidential/rangeproof/v1"
_SURJECTION_TAG = b"confidential/surjectionproof/v1"


def _lp(data: bytes) -> bytes:
    return len(data).to_bytes(8, "big") + data


def _update_lp(h: hashlib._Hash, data: bytes) -> None:
    # The same bytes as h.update(_lp(data)), without copying a proof to prefix it.
    h.update(len(data).to_bytes(8, "big"))
    h.update(data)


class _Store(Generic[T]):
    """A bounded, thread-safe map from key to value, evicting the oldest insert."""

    def __init__(self, max_entries: int) -> None:
        self._max = max_entries
        self._data: OrderedDict[bytes, T] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: bytes) -> T | None:
        with self._lock:
            return self._data.get(key)

    def put(self, key: bytes, value: T) -> None:
        with self._lock:
            self._data[key] = value
            while len(self._data) > self._max:
                self._data.popitem(last=False)

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)


class VerificationCache:
    """Remembers verified range and surjection proofs under their full context.

    Safe to share between threads. ``max_entries`` bounds each kind separately.
    """

    def __init__(self, max_entries: int = 100_000) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be positive")
        self._salt = os.urandom(32)
        # The salted, tagged prefix of every key, hashed once (copied per key).
        self._range_prefix = hashlib.sha256(self._salt + _lp(_RANGE_TAG))
        self._surjection_prefix = hashlib.sha256(self._salt + _lp(_SURJECTION_TAG))
        self._range: _Store[tuple[int, int, int, int]] = _Store(max_entries)
        self._surjection: _Store[bool] = _Store(max_entries)
        self.hits = 0
        self.misses = 0
        self._count_lock = threading.Lock()

    # Keys ---------------------------------------------------------------

    def range_key(self, proof: bytes, value_commitment: bytes, asset_generator: bytes, script_pubkey: bytes) -> bytes:
        h = self._range_prefix.copy()
        for part in (proof, value_commitment, asset_generator, script_pubkey):
            _update_lp(h, part)
        return h.digest()

    def surjection_key(self, proof: bytes, asset_generator: bytes, input_generators: Sequence[bytes]) -> bytes:
        h = self._surjection_prefix.copy()
        _update_lp(h, proof)
        _update_lp(h, asset_generator)
        h.update(len(input_generators).to_bytes(8, "big"))
        for g in input_generators:
            _update_lp(h, g)
        return h.digest()

    # Range proofs -------------------------------------------------------

    def get_range(self, key: bytes) -> tuple[int, int, int, int] | None:
        found = self._range.get(key)
        self._count(found is not None)
        return found

    def peek_range(self, key: bytes) -> bool:
        """Whether ``key`` is stored, without counting a hit or a miss (a
        scheduler deciding where to run a check asks this first)."""
        return self._range.get(key) is not None

    def put_range(self, key: bytes, info: tuple[int, int, int, int]) -> None:
        self._range.put(key, info)

    # Surjection proofs --------------------------------------------------

    def has_surjection(self, key: bytes) -> bool:
        found = self._surjection.get(key) is not None
        self._count(found)
        return found

    def peek_surjection(self, key: bytes) -> bool:
        """Like :meth:`peek_range`, for a surjection proof."""
        return self._surjection.get(key) is not None

    def put_surjection(self, key: bytes) -> None:
        self._surjection.put(key, True)

    def __len__(self) -> int:
        return len(self._range) + len(self._surjection)

    def _count(self, hit: bool) -> None:
        with self._count_lock:
            if hit:
                self.hits += 1
            else:
                self.misses += 1

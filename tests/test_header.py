"""Block header and proof: Elements' format, checked against a real Liquid block."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from coincurve import PrivateKey

from consensus import errors
from consensus.header import (
    BlockHeader,
    BlockProof,
    build_solution,
    check_member_signature,
    sign_block_hash,
    solution_signers,
)
from consensus.params import FederationParams
from consensus.script import parse_push_only, push_data
from consensus.serialize import ByteReader

VECTOR = json.loads((Path(__file__).parent / "vectors" / "liquid_signed_block_2of3.json").read_text())


def _liquid_header() -> BlockHeader:
    return BlockHeader.read(ByteReader(bytes.fromhex(VECTOR["hex"])))


def test_liquid_block_hash_excludes_solution():
    h = _liquid_header()
    assert h.hash_hex == VECTOR["block_hash"]
    assert h.height == VECTOR["height"]
    assert len(h.proof.challenge) == VECTOR["challenge_len"]
    assert len(h.proof.solution) == VECTOR["solution_len"]
    assert h.with_solution(b"").hash == h.hash
    assert BlockHeader.parse(h.serialize()) == h


def test_liquid_block_solution_satisfies_its_challenge():
    h = _liquid_header()
    fed = FederationParams.from_challenge(h.proof.challenge)
    assert (fed.m, fed.n) == (2, 3)
    assert fed.challenge == h.proof.challenge
    assert solution_signers(fed, h) == [0, 1]


@pytest.mark.parametrize(
    "mutate, error",
    [
        (lambda s: b"\x00" + push_data(s[2]) + push_data(s[1]), errors.BadBlockSignature),
        (lambda s: b"\x00" + push_data(s[1]) + push_data(s[1]), errors.DuplicateSignature),
        (lambda s: b"\x00" + push_data(s[1]), errors.ThresholdNotMet),
        (lambda s: b"\x01\x01" + push_data(s[1]) + push_data(s[2]), errors.BadBlockSignature),
        (lambda s: b"\x00" + push_data(s[1]) + push_data(s[2]) + push_data(s[2]), errors.BadBlockSignature),
        (lambda s: b"\x00" + push_data(s[1]) + push_data(s[2][:-1] + bytes([s[2][-1] ^ 1])), errors.BadBlockSignature),
        (lambda s: b"\x00" + bytes([0x4C, len(s[1])]) + s[1] + push_data(s[2]), errors.BadBlockSignature),
    ],
    ids=["order", "duplicate", "m-1", "dummy", "extra", "flipped-bit", "non-minimal-push"],
)
def test_tampered_solutions_are_named(mutate, error):
    h = _liquid_header()
    fed = FederationParams.from_challenge(h.proof.challenge)
    stack = parse_push_only(h.proof.solution)
    with pytest.raises(error):
        solution_signers(fed, h.with_solution(mutate(stack)))


def test_outsider_signature():
    h = _liquid_header()
    fed = FederationParams.from_challenge(h.proof.challenge)
    stack = parse_push_only(h.proof.solution)
    outsider_key = PrivateKey(b"\x07" * 32)
    outsider = sign_block_hash(outsider_key, h.hash)
    # Inside a solution an outsider's signature is just one that verifies under no member key.
    with pytest.raises(errors.BadBlockSignature):
        solution_signers(fed, h.with_solution(b"\x00" + push_data(stack[1]) + push_data(outsider)))
    # A message that names its signer says who is unknown.
    with pytest.raises(errors.UnknownSigner):
        check_member_signature(fed, outsider_key.public_key.format(), h.hash, outsider)
    member = fed.signing_keys[1]
    assert check_member_signature(fed, member, h.hash, stack[2]) == 1
    with pytest.raises(errors.BadBlockSignature):
        check_member_signature(fed, fed.signing_keys[0], h.hash, stack[2])


def test_wrong_challenge_is_refused():
    h = _liquid_header()
    fed = FederationParams.from_challenge(h.proof.challenge)
    other = FederationParams(fed.signing_keys, 1)
    with pytest.raises(errors.BadChallenge):
        solution_signers(other, h)


def _federation(n: int, m: int) -> tuple[list[PrivateKey], FederationParams]:
    keys = [PrivateKey(bytes([i + 1]) * 32) for i in range(n)]
    return keys, FederationParams(tuple(k.public_key.format() for k in keys), m)


@pytest.mark.parametrize("n, m", [(3, 2), (4, 3), (5, 4), (7, 5), (15, 11)])
def test_sign_and_verify_any_m_subset(n, m):
    keys, fed = _federation(n, m)
    h = BlockHeader(0x20000000, b"\x11" * 32, b"\x22" * 32, 1_700_000_000, 7, BlockProof(fed.challenge, b""))
    signers = list(range(n - m, n))  # the last m members
    sigs = {i: sign_block_hash(keys[i], h.hash) for i in signers}
    signed = h.with_solution(build_solution(fed, sigs))
    assert solution_signers(fed, signed) == signers
    assert len(signed.proof.solution) <= fed.max_solution_size
    with pytest.raises(errors.ThresholdNotMet):
        build_solution(fed, dict(list(sigs.items())[:-1]))


def test_fault_bounds():
    _, fed = _federation(15, 11)
    assert fed.offline_tolerance == 4
    assert fed.equivocation_tolerance == 6
    _, fed = _federation(5, 4)
    assert (fed.offline_tolerance, fed.equivocation_tolerance) == (1, 2)

"""The signing state machine on its own: messages in, effects out."""

from __future__ import annotations

from consensus.chainstate import ChainState
from consensus.header import KeySigner, sign_block_hash
from consensus.messages import BlockSignature, Precommit, Proposal
from consensus.roundrobin import (
    MAX_SIGNED_BLOCKS_PER_MEMBER,
    Broadcast,
    Misbehaviour,
    PersistPrecommit,
    PersistSignLock,
    Received,
    Rejected,
    RoundRobinSigner,
    Timing,
)
from tests.simulation import make_params, member_key


def _machine(member: int = 0, n: int = 4, m: int = 3) -> tuple[RoundRobinSigner, ChainState]:
    chain = ChainState(make_params(n, m))
    return RoundRobinSigner(chain, member, KeySigner(member_key(member)), Timing(5.0, 3.0), now=0.0), chain


def test_precommit_is_persisted_before_it_is_sent_and_the_sign_lock_before_the_signature():
    machine, chain = _machine()
    block = chain.assemble_block([], 10)
    proposer = machine.proposer(1, 0)
    effects = machine.step(Received(proposer, Proposal(1, 0, block), 10.0))
    kinds = [type(e).__name__ for e in effects]
    assert kinds.index("PersistPrecommit") < kinds.index("Broadcast")
    assert isinstance(effects[0], PersistPrecommit) and effects[0].lock.block_hash == block.hash
    effects = []
    for voter in (1, 2):
        effects += machine.step(Received(voter, Precommit(1, 0, block.hash), 10.0))
    locks = [i for i, e in enumerate(effects) if isinstance(e, PersistSignLock)]
    sigs = [i for i, e in enumerate(effects) if isinstance(e, Broadcast) and isinstance(e.message, BlockSignature)]
    assert locks and sigs and locks[0] < sigs[0]


def test_proposal_from_the_wrong_member_is_refused_by_name():
    machine, chain = _machine()
    block = chain.assemble_block([], 10)
    wrong = (machine.proposer(1, 0) + 1) % 4
    effects = machine.step(Received(wrong, Proposal(1, 0, block), 10.0))
    assert [e.error.code for e in effects if isinstance(e, Rejected)] == ["NotProposer"]
    assert not any(isinstance(e, PersistPrecommit) for e in effects)


def test_an_equivocator_cannot_make_a_member_hold_unbounded_signatures():
    machine, _ = _machine()
    key = member_key(1)
    flagged = 0
    for i in range(50):
        bh = bytes([i]) * 32
        effects = machine.step(Received(1, BlockSignature(1, 0, bh, sign_block_hash(key, bh)), 10.0))
        flagged += sum(1 for e in effects if isinstance(e, Misbehaviour) and e.error.code == "SignedTwoBlocks")
    held = sum(1 for sigs in machine.h.signatures.values() if 1 in sigs)
    assert held == MAX_SIGNED_BLOCKS_PER_MEMBER
    assert flagged == 49  # every further signature is still reported as evidence

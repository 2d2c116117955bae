"""The round-robin block-signing state machine, pure.

One instance per federation member. It takes events (time passing, a peer's
message, a block template it asked for) and returns effects (send, persist,
commit) for the runtime to carry out in order. It performs no I/O, reads no
clock and draws no randomness: the same events give the same effects.

Protocol, for the block at height h (tip + 1):

    round r:  proposer = (h + r) mod n
      proposer ── Proposal(h, r, B) ──▶ all
      member   ── Precommit(h, r, hash B) ──▶ all        (if B is valid)
      on m precommits for B in round r:
      member   ── persist sign-lock(h, B) ─▶ disk, then BlockSignature ──▶ all
      on m signatures for B: B is final; commit it, go to h + 1
    a round that does not finish by its deadline moves to r + 1.

Safety rests on one durable rule: an honest member signs at most one block
per height, ever. Two blocks with m signatures each then need 2m - n members
who signed both, so up to 2m - n - 1 equivocators cannot fork the chain.

Liveness after faults heal rests on keeping the most recent round that
gathered m precommits (the latest "polka") completable:

  * a member signs B for a polka in round r only if it has precommitted
    nothing else in a round after r, so the latest polka's m precommitters
    are each either locked on its block or unlocked;
  * a locked member precommits only its locked block, and announces its lock
    (with its signature and the block) when it sees a conflicting proposal
    or starts a new round;
  * a proposer re-proposes its own locked block if it has one, else the
    candidate with the latest polka it knows of, else a fresh template.

So a member that crashed after persisting its sign-lock but before its
signature left the process cannot stall the chain: its lock is announced
and re-proposed until the block gathers m signatures.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from .block import Block
from .errors import (
    BadBlockSignature,
    ConflictingPrecommit,
    ConsensusError,
    InvalidProposal,
    NotProposer,
    SignedTwoBlocks,
    UnknownMember,
    ValidationError,
)
from .header import BlockHeader, build_solution, solution_signers, verify_member_signature
from .messages import (
    BlockRequest,
    BlockResponse,
    BlockSignature,
    CommittedBlock,
    LockAnnouncement,
    Message,
    Precommit,
    Proposal,
    Status,
)
from .params import ChainParams

MAX_CANDIDATES_PER_MEMBER = 2
"""Candidate blocks held per height, per federation member."""
MAX_SIGNED_BLOCKS_PER_MEMBER = 2
"""Distinct blocks whose signatures by one member are kept at one height."""

# --- What the machine needs from outside ------------------------------------


class ChainView(Protocol):
    """The chain state the machine validates against and commits to."""

    @property
    def params(self) -> ChainParams: ...

    @property
    def tip_height(self) -> int: ...

    @property
    def tip_hash(self) -> bytes: ...

    @property
    def tip_header(self) -> BlockHeader: ...

    def check_block(self, block: Block, now: int, *, check_proof: bool = True) -> None: ...

    def connect_block(self, block: Block, now: int, *, check_proof: bool = True) -> object: ...


class BlockSigner(Protocol):
    """The member's block-signing key (software key or HSM)."""

    def sign(self, block_hash: bytes) -> bytes: ...


@dataclass(frozen=True)
class Timing:
    block_interval: float = 60.0
    """Seconds from one block's time to the next proposal."""
    round_timeout: float = 10.0
    """Seconds a round may take before the next proposer's turn."""


# --- Durable state -------------------------------------------------------------


@dataclass(frozen=True)
class SignLock:
    """This member signed ``block`` at ``height``; it will sign nothing else
    there. Persisted, and synced, before the signature leaves the process."""

    height: int
    polka_round: int
    block: Block

    @property
    def block_hash(self) -> bytes:
        return self.block.hash


@dataclass(frozen=True)
class PrecommitLock:
    """The latest (height, round) this member precommitted in, and to what.
    Persisted before the precommit is sent, so a restart never precommits
    twice in one round."""

    height: int
    round: int
    block_hash: bytes


# --- Events ------------------------------------------------------------------------


@dataclass(frozen=True)
class Tick:
    now: float


@dataclass(frozen=True)
class Received:
    sender: int
    message: Message
    now: float


@dataclass(frozen=True)
class TemplateReady:
    """The runtime's answer to RequestTemplate: an unsigned candidate block."""

    height: int
    round: int
    block: Block
    now: float


@dataclass(frozen=True)
class ChainAdvanced:
    """The runtime connected blocks outside the machine (catch-up)."""

    now: float


Event = Tick | Received | TemplateReady | ChainAdvanced


# --- Effects -----------------------------------------------------------------------


@dataclass(frozen=True)
class Broadcast:
    message: Message


@dataclass(frozen=True)
class SendTo:
    member: int
    message: Message


@dataclass(frozen=True)
class PersistPrecommit:
    lock: PrecommitLock


@dataclass(frozen=True)
class PersistSignLock:
    lock: SignLock


@dataclass(frozen=True)
class RequestTemplate:
    """Build a candidate for (height, round) from the mempool and answer
    with TemplateReady."""

    height: int
    round: int


@dataclass(frozen=True)
class Commit:
    """``block`` is final and already connected to the ChainView; persist it
    (with ``undo``) in one storage transaction."""

    block: Block
    undo: object
    signers: tuple[int, ...]


@dataclass(frozen=True)
class SendCommitted:
    """Send the committed block at ``height`` (from storage) to a member that
    is behind."""

    member: int
    height: int


@dataclass(frozen=True)
class CatchUp:
    """This member is behind ``member``: fetch and connect the blocks after
    our tip, then send ChainAdvanced."""

    member: int
    their_height: int


@dataclass(frozen=True)
class Rejected:
    """A message refused, with the rule it broke (for the log)."""

    sender: int
    error: ConsensusError


@dataclass(frozen=True)
class Misbehaviour:
    """Evidence that ``member`` equivocated."""

    member: int
    error: ConsensusError


Effect = (
    Broadcast
    | SendTo
    | PersistPrecommit
    | PersistSignLock
    | RequestTemplate
    | Commit
    | SendCommitted
    | CatchUp
    | Rejected
    | Misbehaviour
)


# --- The machine -------------------------------------------------------------------


@dataclass
class _Height:
    """Everything the machine knows about the height it is working on."""

    height: int
    round: int = 0
    round_deadline: float = 0.0
    propose_at: float = 0.0
    proposed_round: int = -1
    template_requested_round: int = -1
    candidates: dict[bytes, Block] = field(default_factory=dict)
    valid: set[bytes] = field(default_factory=set)
    invalid: set[bytes] = field(default_factory=set)
    # round -> member -> block hash
    precommits: dict[int, dict[int, bytes]] = field(default_factory=dict)
    # block hash -> member -> signature
    signatures: dict[bytes, dict[int, bytes]] = field(default_factory=dict)
    # member -> block hash it signed (equivocation detection)
    signed_by: dict[int, bytes] = field(default_factory=dict)
    # block hash -> latest round in which it gathered m precommits (seen or announced)
    polka_round: dict[bytes, int] = field(default_factory=dict)
    requested: set[bytes] = field(default_factory=set)
    helped: set[tuple[int, int]] = field(default_factory=set)


class RoundRobinSigner:
    """One member's view of the signing protocol."""

    def __init__(
        self,
        chain: ChainView,
        member: int,
        signer: BlockSigner,
        timing: Timing,
        now: float,
        sign_lock: SignLock | None = None,
        precommit_lock: PrecommitLock | None = None,
    ) -> None:
        fed = chain.params.federation
        if not 0 <= member < fed.n:
            raise ValueError(f"member {member} outside 0..{fed.n - 1}")
        self.chain = chain
        self.member = member
        self.signer = signer
        self.timing = timing
        self.n = fed.n
        self.m = fed.m
        self.sign_lock = sign_lock
        self.precommit_lock = precommit_lock
        self.h = self._enter_height(now)

    # -- public ----------------------------------------------------------------

    @property
    def height(self) -> int:
        return self.h.height

    @property
    def round(self) -> int:
        return self.h.round

    def proposer(self, height: int, round_: int) -> int:
        return (height + round_) % self.n

    def step(self, event: Event) -> list[Effect]:
        out: list[Effect] = []
        if isinstance(event, Tick):
            self._on_tick(event.now, out)
        elif isinstance(event, Received):
            self._on_message(event.sender, event.message, event.now, out)
        elif isinstance(event, TemplateReady):
            self._on_template(event, out)
        elif isinstance(event, ChainAdvanced) and self.chain.tip_height + 1 != self.h.height:
            self.h = self._enter_height(event.now)
            self._on_tick(event.now, out)
        return out

    # -- heights and rounds ------------------------------------------------------

    def _enter_height(self, now: float) -> _Height:
        height = self.chain.tip_height + 1
        h = _Height(height=height)
        h.propose_at = max(now, self.chain.tip_header.time + self.timing.block_interval)
        h.round_deadline = h.propose_at + self.timing.round_timeout
        lock = self.sign_lock
        if lock is not None and lock.height == height:
            h.candidates[lock.block_hash] = lock.block
            h.valid.add(lock.block_hash)
            h.polka_round[lock.block_hash] = lock.polka_round
            sig = self.signer.sign(lock.block_hash)
            h.signatures.setdefault(lock.block_hash, {})[self.member] = sig
            h.signed_by[self.member] = lock.block_hash
        pre = self.precommit_lock
        if pre is not None and pre.height == height:
            # Resume in the round we last precommitted in, never earlier.
            h.round = pre.round
            h.precommits.setdefault(pre.round, {})[self.member] = pre.block_hash
        return h

    def _advance_round(self, new_round: int, now: float, out: list[Effect]) -> None:
        h = self.h
        h.round = new_round
        h.round_deadline = now + self.timing.round_timeout
        h.propose_at = now
        h.helped.clear()
        out.append(Broadcast(Status(h.height, new_round)))
        self._announce_lock(out)

    def _on_tick(self, now: float, out: list[Effect]) -> None:
        h = self.h
        if now >= h.round_deadline:
            # Skip whole rounds if the clock jumped; each skipped round would
            # have timed out anyway.
            elapsed = int((now - h.round_deadline) // self.timing.round_timeout)
            self._advance_round(h.round + 1 + elapsed, now, out)
        if now >= h.propose_at and self.proposer(h.height, h.round) == self.member:
            self._propose(now, out)

    # -- proposing -------------------------------------------------------------------

    def _propose(self, now: float, out: list[Effect]) -> None:
        h = self.h
        if h.proposed_round == h.round:
            return
        choice = self._reproposal()
        if choice is not None:
            h.proposed_round = h.round
            self._broadcast_proposal(choice, now, out)
        elif h.template_requested_round != h.round:
            h.template_requested_round = h.round
            out.append(RequestTemplate(h.height, h.round))

    def _reproposal(self) -> Block | None:
        """Own locked block first; else the candidate with the latest polka."""
        h = self.h
        if self.sign_lock is not None and self.sign_lock.height == h.height:
            return self.sign_lock.block
        best: tuple[int, bytes] | None = None
        for block_hash, rnd in h.polka_round.items():
            if block_hash in h.candidates and block_hash in h.valid and (best is None or (rnd, block_hash) > best):
                best = (rnd, block_hash)
        return h.candidates[best[1]] if best is not None else None

    def _on_template(self, ev: TemplateReady, out: list[Effect]) -> None:
        h = self.h
        if ev.height != h.height or ev.round != h.round or h.proposed_round == h.round:
            return  # the round moved on while the template was built
        if self.proposer(h.height, h.round) != self.member:
            return
        try:
            self.chain.check_block(ev.block, int(ev.now), check_proof=False)
        except ValidationError as e:
            out.append(Rejected(self.member, InvalidProposal(f"own template invalid: {e.code}: {e}")))
            return
        h.proposed_round = h.round
        h.candidates[ev.block.hash] = ev.block
        h.valid.add(ev.block.hash)
        self._broadcast_proposal(ev.block, ev.now, out)

    def _broadcast_proposal(self, block: Block, now: float, out: list[Effect]) -> None:
        h = self.h
        proposal = Proposal(h.height, h.round, block)
        out.append(Broadcast(proposal))
        self._on_proposal(self.member, proposal, now, out)

    def template_time(self, now: float) -> int:
        """The header time a proposer should use: now, but strictly after
        the tip (which keeps it above the median of recent blocks)."""
        return max(int(now), self.chain.tip_header.time + 1)

    # -- messages ----------------------------------------------------------------------

    def _on_message(self, sender: int, msg: Message, now: float, out: list[Effect]) -> None:
        if not 0 <= sender < self.n:
            out.append(Rejected(sender, UnknownMember(f"sender {sender}")))
            return
        if sender == self.member:
            return
        if isinstance(msg, CommittedBlock):
            self._on_committed(sender, msg.block, now, out)
            return
        if isinstance(msg, BlockResponse):
            self._learn_block(msg.block, now, out)
            return
        height = msg.height
        if height < self.h.height:
            # The sender is behind: help it once per round.
            if (sender, height) not in self.h.helped:
                self.h.helped.add((sender, height))
                out.append(SendCommitted(sender, height))
            return
        if height > self.h.height:
            if (sender, height) not in self.h.helped:
                self.h.helped.add((sender, height))
                out.append(CatchUp(sender, height))
            return
        if isinstance(msg, Proposal):
            self._on_proposal(sender, msg, now, out)
        elif isinstance(msg, Precommit):
            self._on_precommit(sender, msg, now, out)
        elif isinstance(msg, BlockSignature):
            self._on_signature(sender, msg.block_hash, msg.signature, msg.round, now, out)
        elif isinstance(msg, LockAnnouncement):
            self._learn_block(msg.block, now, out)
            self._on_signature(sender, msg.block.hash, msg.signature, msg.round, now, out)
        elif isinstance(msg, Status):
            self._announce_lock_to(sender, out)
        elif isinstance(msg, BlockRequest):
            block = self.h.candidates.get(msg.block_hash)
            if block is not None:
                out.append(SendTo(sender, BlockResponse(block)))

    def _validate(self, block: Block, now: float) -> bool:
        h = self.h
        bh = block.hash
        if bh in h.valid:
            return True
        if bh in h.invalid:
            return False
        try:
            self.chain.check_block(block, int(now), check_proof=False)
        except ValidationError:
            h.invalid.add(bh)
            return False
        h.valid.add(bh)
        return True

    def _learn_block(self, block: Block, now: float, out: list[Effect]) -> None:
        h = self.h
        if block.header.height != h.height:
            return
        bh = block.hash
        if bh not in h.candidates:
            if len(h.candidates) >= MAX_CANDIDATES_PER_MEMBER * self.n:
                return  # an equivocator cannot make us hold unbounded blocks
            h.candidates[bh] = block
        self._try_sign(now, out)
        self._try_commit(bh, now, out)

    def _on_proposal(self, sender: int, p: Proposal, now: float, out: list[Effect]) -> None:
        h = self.h
        if self.proposer(p.height, p.round) != sender:
            out.append(Rejected(sender, NotProposer(f"member {sender} is not the proposer of round {p.round}")))
            return
        block = p.block
        bh = block.hash
        if block.header.height != h.height:
            out.append(Rejected(sender, InvalidProposal("block height does not match the proposal")))
            return
        if not self._validate(block, now):
            try:
                self.chain.check_block(block, int(now), check_proof=False)
            except ValidationError as e:
                out.append(Rejected(sender, InvalidProposal(f"{e.code}: {e}")))
            return
        h.candidates.setdefault(bh, block)
        if p.round < h.round:
            return  # too late to precommit; keep the block for later rounds
        if p.round > h.round:
            self._advance_round(p.round, now, out)
        if self.member in h.precommits.get(p.round, {}):
            return  # at most one precommit per (height, round)
        lock = self.sign_lock
        if lock is not None and lock.height == h.height and lock.block_hash != bh:
            self._announce_lock(out)
            return
        pre = PrecommitLock(h.height, p.round, bh)
        self.precommit_lock = pre
        h.precommits.setdefault(p.round, {})[self.member] = bh
        out.append(PersistPrecommit(pre))
        out.append(Broadcast(Precommit(h.height, p.round, bh)))
        self._on_polka_progress(p.round, now, out)

    def _on_precommit(self, sender: int, pc: Precommit, now: float, out: list[Effect]) -> None:
        h = self.h
        votes = h.precommits.setdefault(pc.round, {})
        prior = votes.get(sender)
        if prior is not None:
            if prior != pc.block_hash:
                out.append(
                    Misbehaviour(
                        sender, ConflictingPrecommit(f"member {sender} precommitted two blocks in round {pc.round}")
                    )
                )
            return
        votes[sender] = pc.block_hash
        self._on_polka_progress(pc.round, now, out)

    def _on_polka_progress(self, round_: int, now: float, out: list[Effect]) -> None:
        h = self.h
        counts: dict[bytes, int] = {}
        for bh in h.precommits.get(round_, {}).values():
            counts[bh] = counts.get(bh, 0) + 1
        for bh, count in counts.items():
            if count >= self.m and h.polka_round.get(bh, -1) < round_:
                h.polka_round[bh] = round_
                if bh not in h.candidates and bh not in h.requested:
                    h.requested.add(bh)
                    for member, voted in h.precommits[round_].items():
                        if voted == bh and member != self.member:
                            out.append(SendTo(member, BlockRequest(h.height, bh)))
        self._try_sign(now, out)

    def _try_sign(self, now: float, out: list[Effect]) -> None:
        """Sign the block of the latest polka we may sign for, if any."""
        h = self.h
        lock = self.sign_lock
        if lock is not None and lock.height == h.height:
            return  # already signed at this height; the signature is re-sent on announcements
        pre = self.precommit_lock
        best: tuple[int, bytes] | None = None
        for rnd, votes in h.precommits.items():
            if pre is not None and pre.height == h.height and rnd < pre.round:
                # Never sign for a polka older than our latest precommit: the
                # latest polka's precommitters must stay free for its block.
                continue
            counts: dict[bytes, int] = {}
            for voted in votes.values():
                counts[voted] = counts.get(voted, 0) + 1
            for bh, count in counts.items():
                if count < self.m:
                    continue
                if pre is not None and pre.height == h.height and rnd == pre.round and bh != pre.block_hash:
                    continue
                if best is None or (rnd, bh) > best:
                    best = (rnd, bh)
        if best is None:
            return
        rnd, bh = best
        block = h.candidates.get(bh)
        if block is None or not self._validate(block, now):
            return
        new_lock = SignLock(h.height, rnd, block)
        self.sign_lock = new_lock
        sig = self.signer.sign(bh)
        h.signatures.setdefault(bh, {})[self.member] = sig
        h.signed_by[self.member] = bh
        # The lock must be durable before the signature can leave the process.
        out.append(PersistSignLock(new_lock))
        out.append(Broadcast(BlockSignature(h.height, rnd, bh, sig)))
        self._try_commit(bh, now, out)

    def _announce_lock(self, out: list[Effect]) -> None:
        msg = self._lock_message()
        if msg is not None:
            out.append(Broadcast(msg))

    def _announce_lock_to(self, member: int, out: list[Effect]) -> None:
        msg = self._lock_message()
        if msg is not None:
            out.append(SendTo(member, msg))

    def _lock_message(self) -> LockAnnouncement | None:
        lock = self.sign_lock
        if lock is None or lock.height != self.h.height:
            return None
        sig = self.h.signatures[lock.block_hash][self.member]
        return LockAnnouncement(lock.height, lock.polka_round, sig, lock.block)

    def _on_signature(self, sender: int, bh: bytes, sig: bytes, rnd: int, now: float, out: list[Effect]) -> None:
        h = self.h
        fed = self.chain.params.federation
        if not verify_member_signature(fed.pubkeys[sender], bh, sig):
            out.append(Rejected(sender, BadBlockSignature(f"member {sender}'s signature does not verify")))
            return
        earlier = h.signed_by.get(sender)
        if earlier is not None and earlier != bh:
            out.append(Misbehaviour(sender, SignedTwoBlocks(f"member {sender} signed two blocks at {h.height}")))
            held = sum(1 for sigs in h.signatures.values() if sender in sigs)
            if held >= MAX_SIGNED_BLOCKS_PER_MEMBER and sender not in h.signatures.get(bh, {}):
                return  # two signed blocks prove the equivocation; keep no more
        else:
            h.signed_by[sender] = bh
        h.signatures.setdefault(bh, {})[sender] = sig
        # A signature is evidence that bh had a polka no later than the
        # current round; cap a claim so a liar cannot outrank real polkas.
        claimed = min(rnd, h.round)
        if h.polka_round.get(bh, -1) < claimed:
            h.polka_round[bh] = claimed
        if bh not in h.candidates and bh not in h.requested:
            h.requested.add(bh)
            out.append(SendTo(sender, BlockRequest(h.height, bh)))
        self._try_commit(bh, now, out)

    def _try_commit(self, bh: bytes, now: float, out: list[Effect]) -> None:
        h = self.h
        sigs = h.signatures.get(bh, {})
        if len(sigs) < self.m:
            return
        block = h.candidates.get(bh)
        if block is None or not self._validate(block, now):
            return
        fed = self.chain.params.federation
        signed = block.with_solution(build_solution(fed, sigs))
        self._commit(signed, now, out)

    def _commit(self, block: Block, now: float, out: list[Effect]) -> None:
        try:
            undo = self.chain.connect_block(block, int(now), check_proof=True)
        except ValidationError as e:
            out.append(Rejected(self.member, e))
            return
        signers = tuple(solution_signers(self.chain.params.federation, block.header))
        out.append(Commit(block, undo, signers))
        self.h = self._enter_height(now)
        self._on_tick(now, out)

    def _on_committed(self, sender: int, block: Block, now: float, out: list[Effect]) -> None:
        height = block.header.height
        if height < self.h.height:
            return
        if height > self.h.height:
            out.append(CatchUp(sender, height))
            return
        self._commit(block, now, out)

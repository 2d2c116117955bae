"""Deterministic in-process federation simulation.

N members run the real consensus state machine and the real chain state on a
fake clock. A seeded message layer drops, delays, duplicates, reorders and
partitions messages, and crashes members and restarts them from what they
persisted. Equivocating members can be switched on. Everything is driven
from one ``random.Random(seed)``, so a failing seed replays exactly.

    sim = Simulation(SimConfig(n=5, m=4, seed=7, faults=Faults(drop=0.1)))
    sim.run_until(600.0)
    sim.assert_safe()

The harness watches every block signature any member emits (over all of its
incarnations) and every block each member commits, and checks:

  * no honest member ever signs two blocks at one height;
  * no height ever has two different blocks with m valid signatures;
  * all honest members' committed chains agree.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from coincurve import PrivateKey

from consensus.block import Block
from consensus.chainstate import ChainState
from consensus.header import KeySigner, sign_block_hash, verify_member_signature
from consensus.messages import (
    BlockSignature,
    CommittedBlock,
    LockAnnouncement,
    Message,
    Precommit,
    Proposal,
    parse_message,
    serialize_message,
)
from consensus.params import ChainParams, FederationParams
from consensus.roundrobin import (
    Broadcast,
    CatchUp,
    ChainAdvanced,
    Commit,
    Effect,
    Misbehaviour,
    PersistPrecommit,
    PersistSignLock,
    PrecommitLock,
    Received,
    Rejected,
    RequestTemplate,
    RoundRobinSigner,
    SendCommitted,
    SendTo,
    SignLock,
    TemplateReady,
    Tick,
    Timing,
)


def member_key(i: int) -> PrivateKey:
    """Fixed keys, so every run and every seed uses the same federation."""
    return PrivateKey(bytes([0x40 + i]) * 32)


def make_params(n: int, m: int) -> ChainParams:
    fed = FederationParams(tuple(member_key(i).public_key.format() for i in range(n)), m)
    return ChainParams(federation=fed, genesis_time=0)


@dataclass
class Faults:
    drop: float = 0.0
    duplicate: float = 0.0
    min_delay: float = 0.01
    max_delay: float = 0.2
    crash_rate: float = 0.0
    """Expected crashes per member per simulated second."""
    crash_in_effects: float = 0.0
    """Probability of crashing between two effects of one step (mid-signing)."""
    down_time: tuple[float, float] = (1.0, 20.0)
    partition_rate: float = 0.0
    """Expected partition starts per simulated second."""
    partition_length: tuple[float, float] = (5.0, 60.0)
    heal_at: float = float("inf")
    """From this time on: no drops, no new crashes or partitions; crashed
    members come back."""


@dataclass
class SimConfig:
    n: int
    m: int
    seed: int
    faults: Faults = field(default_factory=Faults)
    timing: Timing = field(default_factory=lambda: Timing(block_interval=5.0, round_timeout=3.0))
    tick: float = 0.25
    equivocators: frozenset[int] = frozenset()
    offline: frozenset[int] = frozenset()
    """Members that never start."""
    split: tuple[frozenset[int], frozenset[int]] | None = None
    """If set, an equivocating proposer sends one block to the first group and
    another to the second (instead of a random half each)."""


@dataclass
class Disk:
    """What a member has persisted; survives crashes."""

    blocks: list[Block] = field(default_factory=list)
    sign_lock: SignLock | None = None
    precommit_lock: PrecommitLock | None = None


class Node:
    def __init__(self, sim: "Simulation", index: int) -> None:
        self.sim = sim
        self.index = index
        self.disk = Disk()
        self.alive = False
        self.incarnation = 0
        self.chain: ChainState
        self.machine: RoundRobinSigner

    def start(self, now: float) -> None:
        self.chain = ChainState(self.sim.params)
        for block in self.disk.blocks:
            self.chain.connect_block(block, int(now) + 10**6, check_proof=True)
        self.machine = RoundRobinSigner(
            self.chain,
            self.index,
            KeySigner(member_key(self.index)),
            self.sim.config.timing,
            now,
            sign_lock=self.disk.sign_lock,
            precommit_lock=self.disk.precommit_lock,
        )
        self.alive = True
        self.incarnation += 1


class Simulation:
    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.params = make_params(config.n, config.m)
        self.fed = self.params.federation
        self.now = 0.0
        self._queue: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self.nodes = [Node(self, i) for i in range(config.n)]
        self.partition: list[set[int]] | None = None
        # (member, height) -> block hashes it signed, over all incarnations
        self.signed: dict[tuple[int, int], set[bytes]] = {}
        # height -> block hash -> member -> signature (every valid one seen)
        self.signatures: dict[int, dict[bytes, dict[int, bytes]]] = {}
        self.rejections: list[tuple[int, str]] = []
        self.misbehaviour: list[tuple[int, int, str]] = []
        self.commits: list[tuple[float, int, int]] = []  # (time, member, height)
        self.crashes = 0
        self.log: list[str] = []
        self._split_targets: dict[bytes, list[int]] = {}
        for node in self.nodes:
            if node.index not in config.offline:
                node.start(0.0)
        self._schedule(0.0, self._tick_all)
        f = config.faults
        if f.crash_rate > 0:
            self._schedule(self._exp(f.crash_rate * config.n), self._random_crash)
        if f.partition_rate > 0:
            self._schedule(self._exp(f.partition_rate), self._random_partition)
        if f.heal_at != float("inf"):
            self._schedule(f.heal_at, self._heal)

    # -- scheduling --------------------------------------------------------------------

    def _schedule(self, at: float, fn: Callable[[], None]) -> None:
        heapq.heappush(self._queue, (at, next(self._seq), fn))

    def _exp(self, rate: float) -> float:
        return self.now + self.rng.expovariate(rate)

    def run_until(self, t: float) -> None:
        while self._queue and self._queue[0][0] <= t:
            at, _, fn = heapq.heappop(self._queue)
            self.now = at
            fn()
        self.now = t

    def run_until_height(self, height: int, deadline: float) -> bool:
        """Run until every live honest member has committed ``height``."""
        while self._queue and self._queue[0][0] <= deadline:
            if self.min_honest_height() >= height:
                return True
            at, _, fn = heapq.heappop(self._queue)
            self.now = at
            fn()
        return self.min_honest_height() >= height

    # -- members -----------------------------------------------------------------------

    def honest(self) -> list[Node]:
        return [n for n in self.nodes if n.index not in self.config.equivocators and n.index not in self.config.offline]

    def min_honest_height(self) -> int:
        return min(len(n.disk.blocks) for n in self.honest() if n.alive)

    def heights(self) -> list[int]:
        return [len(n.disk.blocks) for n in self.nodes]

    def crash(self, i: int, down_for: float | None = None) -> None:
        node = self.nodes[i]
        if not node.alive:
            return
        node.alive = False
        self.crashes += 1
        self.log.append(f"{self.now:.2f} crash {i}")
        if down_for is not None:
            self._schedule(self.now + down_for, lambda: self.restart(i))

    def restart(self, i: int) -> None:
        node = self.nodes[i]
        if node.alive or i in self.config.offline:
            return
        self.log.append(f"{self.now:.2f} restart {i}")
        node.start(self.now)

    def set_partition(self, groups: list[set[int]] | None) -> None:
        self.partition = groups
        self.log.append(f"{self.now:.2f} partition {groups}")

    def _random_crash(self) -> None:
        f = self.config.faults
        if self.now >= f.heal_at:
            return
        i = self.rng.randrange(self.config.n)
        self.crash(i, self.rng.uniform(*f.down_time))
        self._schedule(self._exp(f.crash_rate * self.config.n), self._random_crash)

    def _random_partition(self) -> None:
        f = self.config.faults
        if self.now >= f.heal_at:
            return
        members = list(range(self.config.n))
        self.rng.shuffle(members)
        cut = self.rng.randrange(1, self.config.n)
        self.set_partition([set(members[:cut]), set(members[cut:])])
        end = self.now + self.rng.uniform(*f.partition_length)
        self._schedule(min(end, f.heal_at), lambda: self.set_partition(None))
        self._schedule(max(end, self._exp(f.partition_rate)), self._random_partition)

    def _heal(self) -> None:
        self.set_partition(None)
        for node in self.nodes:
            if not node.alive and node.index not in self.config.offline:
                self.restart(node.index)

    def _tick_all(self) -> None:
        for node in self.nodes:
            if node.alive:
                self._step(node, Tick(self.now))
        self._schedule(self.now + self.config.tick, self._tick_all)

    # -- message layer -------------------------------------------------------------------

    def _connected(self, a: int, b: int) -> bool:
        if self.partition is None:
            return True
        return any(a in g and b in g for g in self.partition)

    def send(self, sender: int, to: int, message: Message) -> None:
        self._observe(sender, message)
        f = self.config.faults
        healed = self.now >= f.heal_at
        # Round-trip through the wire format, so the simulation exercises it.
        wire = serialize_message(message)
        copies = 1
        if not healed and self.rng.random() < f.drop:
            copies = 0
        elif not healed and self.rng.random() < f.duplicate:
            copies = 2
        for _ in range(copies):
            delay = self.rng.uniform(f.min_delay, f.max_delay)
            self._schedule(self.now + delay, lambda w=wire: self._deliver(sender, to, w))

    def _deliver(self, sender: int, to: int, wire: bytes) -> None:
        node = self.nodes[to]
        if not node.alive or not self._connected(sender, to):
            return
        self._step(node, Received(sender, parse_message(wire), self.now))

    def _observe(self, sender: int, message: Message) -> None:
        """Record every block signature put on the wire."""
        if isinstance(message, BlockSignature):
            height, bh, sig = message.height, message.block_hash, message.signature
        elif isinstance(message, LockAnnouncement):
            height, bh, sig = message.height, message.block.hash, message.signature
        else:
            return
        if not verify_member_signature(self.fed.pubkeys[sender], bh, sig):
            return
        self.signed.setdefault((sender, height), set()).add(bh)
        self.signatures.setdefault(height, {}).setdefault(bh, {})[sender] = sig

    # -- effects -----------------------------------------------------------------------------

    def _step(self, node: Node, event: object) -> None:
        if node.index in self.config.equivocators:
            self._byzantine_step(node, event)
            return
        effects = node.machine.step(event)  # type: ignore[arg-type]
        self._run_effects(node, effects)

    def _run_effects(self, node: Node, effects: list[Effect]) -> None:
        f = self.config.faults
        incarnation = node.incarnation
        for effect in effects:
            if not node.alive or node.incarnation != incarnation:
                return
            self._apply(node, effect)
            if (
                isinstance(effect, (PersistSignLock, PersistPrecommit))
                and self.now < f.heal_at
                and self.rng.random() < f.crash_in_effects
            ):
                # Crash right after the write and before anything else the
                # step wanted to do (the signature has not left).
                self.crash(node.index, self.rng.uniform(*f.down_time))
                return

    def _apply(self, node: Node, effect: Effect) -> None:
        i = node.index
        if isinstance(effect, Broadcast):
            for j in range(self.config.n):
                if j != i:
                    self.send(i, j, effect.message)
        elif isinstance(effect, SendTo):
            self.send(i, effect.member, effect.message)
        elif isinstance(effect, PersistPrecommit):
            node.disk.precommit_lock = effect.lock
        elif isinstance(effect, PersistSignLock):
            node.disk.sign_lock = effect.lock
        elif isinstance(effect, RequestTemplate):
            block = node.chain.assemble_block([], node.machine.template_time(self.now))
            self._step(node, TemplateReady(effect.height, effect.round, block, self.now))
        elif isinstance(effect, Commit):
            assert effect.block.header.height == len(node.disk.blocks) + 1
            node.disk.blocks.append(effect.block)
            self.commits.append((self.now, i, effect.block.header.height))
        elif isinstance(effect, SendCommitted):
            if 1 <= effect.height <= len(node.disk.blocks):
                self.send(i, effect.member, CommittedBlock(node.disk.blocks[effect.height - 1]))
        elif isinstance(effect, CatchUp):
            peer = effect.member
            self._schedule(self.now + self.rng.uniform(0.05, 0.5), lambda: self._catch_up(node, peer))
        elif isinstance(effect, Rejected):
            self.rejections.append((i, effect.error.code))
        elif isinstance(effect, Misbehaviour):
            self.misbehaviour.append((i, effect.member, effect.error.code))

    def _catch_up(self, node: Node, peer: int) -> None:
        """Fetch the blocks the peer has beyond our tip, verifying each."""
        source = self.nodes[peer]
        if not node.alive or not source.alive or not self._connected(node.index, peer):
            return
        advanced = False
        while len(node.disk.blocks) < len(source.disk.blocks):
            block = source.disk.blocks[len(node.disk.blocks)]
            node.chain.connect_block(block, int(self.now), check_proof=True)
            node.disk.blocks.append(block)
            self.commits.append((self.now, node.index, block.header.height))
            advanced = True
        if advanced:
            self._step(node, ChainAdvanced(self.now))

    # -- equivocating members ------------------------------------------------------------

    def _byzantine_step(self, node: Node, event: object) -> None:
        """An equivocator: runs the honest machine to follow the chain, but
        precommits and signs every valid proposal it sees, and as proposer
        sends a different block to each half of the federation."""
        i = node.index
        key = member_key(i)
        effects = node.machine.step(event)  # type: ignore[arg-type]
        keep: list[Effect] = []
        for effect in effects:
            if isinstance(effect, Broadcast) and isinstance(effect.message, Proposal):
                self._equivocate_proposal(node, effect.message)
            elif isinstance(effect, (PersistSignLock, PersistPrecommit)):
                continue  # it keeps no promises
            elif isinstance(effect, SendCommitted):
                continue  # and never helps the other side of a split learn the first block
            elif isinstance(effect, Broadcast) and isinstance(effect.message, (BlockSignature, Precommit)):
                continue  # replaced by its own precommit/sign-everything policy below
            else:
                keep.append(effect)
        # Forget locks so the honest machine keeps following every round.
        node.machine.sign_lock = None
        node.machine.precommit_lock = None
        self._run_effects(node, keep)
        if isinstance(event, Received) and isinstance(event.message, Proposal):
            # Support every proposal, whatever height its own follower is at;
            # in a scripted split, only towards the side that was shown it.
            p = event.message
            targets = self._split_targets.get(p.block.hash, range(self.config.n))
            self._support(i, key, p.height, p.round, p.block.hash, targets)

    def _equivocate_proposal(self, node: Node, p: Proposal) -> None:
        i = node.index
        key = member_key(i)
        other = node.chain.assemble_block([], node.machine.template_time(self.now) + 1)
        if self.config.split is not None:
            first, second = (sorted(g - {i}) for g in self.config.split)
        else:
            others = [j for j in range(self.config.n) if j != i]
            self.rng.shuffle(others)
            first, second = others[: len(others) // 2], others[len(others) // 2 :]
        groups = [(p.block, first), (other, second)]
        if self.config.split is not None:
            for block, members in groups:
                self._split_targets[block.hash] = members
        for block, members in groups:
            for j in members:
                self.send(i, j, Proposal(p.height, p.round, block))
            self._support(i, key, p.height, p.round, block.hash, members)

    def _support(self, i: int, key: PrivateKey, height: int, round_: int, bh: bytes, members: object) -> None:
        sig = sign_block_hash(key, bh)
        for j in members:  # type: ignore[attr-defined]
            if j != i:
                self.send(i, j, Precommit(height, round_, bh))
                self.send(i, j, BlockSignature(height, round_, bh, sig))

    # -- invariants ------------------------------------------------------------------------

    def describe(self) -> str:
        return (
            f"seed={self.config.seed} n={self.config.n} m={self.config.m} "
            f"equivocators={sorted(self.config.equivocators)} t={self.now:.1f} heights={self.heights()} "
            f"crashes={self.crashes}"
        )

    def forks(self) -> list[int]:
        """Heights at which two different blocks each carry m valid signatures."""
        out = []
        for height, by_block in self.signatures.items():
            final = [bh for bh, sigs in by_block.items() if len(sigs) >= self.fed.m]
            if len(final) > 1:
                out.append(height)
        return sorted(out)

    def double_signers(self) -> list[tuple[int, int]]:
        """(member, height) where an honest member signed two blocks."""
        return sorted(
            (member, height)
            for (member, height), hashes in self.signed.items()
            if len(hashes) > 1 and member not in self.config.equivocators
        )

    def assert_safe(self) -> None:
        assert not self.double_signers(), f"honest double signing {self.double_signers()} ({self.describe()})"
        assert not self.forks(), f"fork at heights {self.forks()} ({self.describe()})"
        chains = [n.disk.blocks for n in self.honest()]
        longest = max(chains, key=len)
        for chain in chains:
            assert [b.hash for b in chain] == [b.hash for b in longest[: len(chain)]], (
                f"honest chains diverge ({self.describe()})"
            )

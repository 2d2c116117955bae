"""Real member processes on 127.0.0.1 (issue 4, "What must be shown").

Every test builds a federation of ``functionary run`` processes with
tests/federation.py; its teardown checks that every running member holds the
same chain, that no member ever committed a block another member did not
commit at that height, that no member ever sent signatures for two blocks at
one height, and that no log has a misbehaviour, error or traceback line the
test did not expect.

A block's header time is a whole second strictly after its parent's, so the
chain makes at most one block per second whatever ``block_interval`` says;
waits and stall windows below are sized for that.

Randomness (which members die, when, who is partitioned from whom) comes from
one seed per test, printed, and taken from ``FEDERATION_SEED`` when set.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from consensus.header import BlockHeader, solution_signers
from consensus.serialize import ByteReader
from functionary.cli import init_federation
from tests.federation import LogFollower, ProcessFederation
from tests.pg import PgCluster

ROOT = Path(__file__).resolve().parent.parent
Make = Callable[..., ProcessFederation]

pytestmark = pytest.mark.timeout(600)

SQLITE = "sqlite"
POSTGRES = pytest.param("postgres", marks=pytest.mark.postgres)
POSTGRES_SLOW = pytest.param("postgres", marks=[pytest.mark.postgres, pytest.mark.slow])


@dataclass
class Backend:
    name: str
    cluster: PgCluster | None = None
    prefix: str = ""

    def database_url(self, n: int) -> str | None:
        """None for SQLite (each member's file in its data dir); for
        PostgreSQL, one fresh database per member and the URL template."""
        if self.cluster is None:
            return None
        for i in range(n):
            self.cluster.create_database(f"{self.prefix}_m{i}")
        return self.cluster.url(f"{self.prefix}_m") + "{member}"


_backend_ids = iter(range(1_000_000))


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == "sqlite":
        return Backend("sqlite")
    cluster: PgCluster = request.getfixturevalue("postgres_cluster")
    return Backend("postgres", cluster, f"fed{os.getpid()}_{next(_backend_ids)}")


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> Iterator[random.Random]:
    seed = int(os.environ.get("FEDERATION_SEED") or random.SystemRandom().randrange(2**32))
    print(f"{request.node.name}: seed={seed} (rerun with FEDERATION_SEED={seed})")
    yield random.Random(seed)


def _same_chain(fed: ProcessFederation, members: list[int], upto: int) -> list[str]:
    chains = {i: fed.chain(i, upto) for i in members}
    first = chains[members[0]]
    for i, c in chains.items():
        assert c == first, f"member {i}'s chain differs from member {members[0]}'s up to height {upto}"
    return first


# --- crash tolerance --------------------------------------------------------------------


@pytest.mark.parametrize("backend", [SQLITE, POSTGRES], indirect=True)
def test_one_down_advances_two_down_stalls_restart_resumes(
    process_federation: Make, backend: Backend, rng: random.Random
) -> None:
    fed = process_federation(5, 4, database_url=backend.database_url(5))
    fed.start_all()
    fed.wait_heights(3)

    first, second = rng.sample(range(5), 2)
    print(f"killing member {first}, then member {second}")
    fed.kill(first)
    before = max(h for h in fed.heights().values() if h is not None)
    fed.wait_heights(before + 3, timeout=60)  # 4 of 5 still sign

    fed.kill(second)
    live = fed.running()
    assert len(live) == 3
    # Several block intervals and several round timeouts: nothing moves.
    stalled = fed.assert_stalled(live, window=6.0, settle=2.5)
    low = min(stalled.values())
    assert max(stalled.values()) - low <= 1, f"live members far apart while stalled: {stalled}"
    _same_chain(fed, live, low)

    fed.start(first)
    fed.start(second)
    fed.wait_heights(max(stalled.values()) + 3, members=range(5), timeout=90)
    top = fed.wait_converged(range(5))
    chain = _same_chain(fed, list(range(5)), top)
    assert len(chain) == top + 1 >= max(stalled.values()) + 4


KILLS = 20


@pytest.mark.parametrize("backend", [SQLITE, POSTGRES_SLOW], indirect=True)
def test_member_killed_while_signing_never_signs_twice_nor_loses_a_block(
    process_federation: Make, backend: Backend, rng: random.Random
) -> None:
    fed = process_federation(5, 4, database_url=backend.database_url(5))
    fed.start_all()
    fed.wait_heights(2)
    victim = rng.randrange(5)
    print(f"victim: member {victim}")
    committed: dict[int, str] = {}  # every commit the victim logged, all lives
    landed = Counter[str]()

    for k in range(KILLS):
        follower = fed.follow(victim)
        if k % 2 == 0:
            # Right after a sign-lock is durable: between it and the
            # signature leaving, or while the signatures gather.
            delay = rng.uniform(0.0, 0.008)

            def sign_lock_seen(follower: LogFollower = follower) -> bool:
                return any("event=sign_lock" in line for line in follower.poll())

            fed.wait_for(sign_lock_seen, 30, f"member {victim} to lock a block (kill {k + 1})", interval=0.002)
        else:
            delay = rng.uniform(0.0, 1.5)  # anywhere in the block cycle
        time.sleep(delay)  # the kill moment itself, not a synchronisation
        fed.kill(victim)

        life = fed.members[victim].incarnations
        commits = fed.commits(victim, life)
        locks = {line.num("height") for line in fed.events(victim, "sign_lock", life)}
        sent = {line.num("height") for line in fed.events(victim, "signature_sent", life)}
        unfinished = sorted(locks - set(commits))
        if unfinished and unfinished[-1] in sent:
            landed["after signature sent, before commit"] += 1
        elif unfinished:
            landed["after sign-lock, before signature sent"] += 1
        else:
            landed["between rounds"] += 1
        for h, bh in commits.items():
            assert committed.setdefault(h, bh) == bh, f"victim committed two blocks at height {h}"

        fed.start(victim)
        # What the restarted member loaded from its own database, before any
        # catch-up could hide a lost block: at least every block it committed.
        started = fed.events(victim, "started", -1)
        assert len(started) == 1, fed.log_text(victim, -1)
        loaded = started[0].num("height")
        assert loaded >= max(committed, default=0), (
            f"kill {k + 1}: member {victim} restarted at height {loaded}, "
            f"but had committed height {max(committed)} before the kill"
        )
        if loaded:
            (tip_line,) = fed.events(victim, "chain_loaded", -1)
            if loaded in committed:
                assert tip_line.fields["hash"] == committed[loaded]
        for h, bh in commits.items():
            assert fed.block_hash(victim, h) == bh, f"kill {k + 1}: block {h} changed or vanished on member {victim}"

    print(f"{KILLS} kills of member {victim}: {dict(landed)}")
    assert landed["after sign-lock, before signature sent"] + landed["after signature sent, before commit"] >= 1, (
        f"no kill landed inside a signing round: {dict(landed)}"
    )

    # The federation kept going, and the victim signs again after it all.
    fed.wait_heights(max(committed) + 2, timeout=60)
    signed_after = len(fed.signatures_sent(victim))
    fed.wait_for(lambda: len(fed.signatures_sent(victim)) > signed_after, 30, f"member {victim} to sign again")

    by_height: dict[int, set[str]] = {}
    for h, bh, _round in fed.signatures_sent(victim):
        by_height.setdefault(h, set()).add(bh)
    assert by_height, "the victim never signed"
    doubles = {h: s for h, s in by_height.items() if len(s) > 1}
    assert not doubles, f"member {victim} signed two blocks at heights {sorted(doubles)}"
    for i in range(5):
        assert "SignedTwoBlocks" not in fed.log_text(i), f"member {i} saw an equivocation"
    top = fed.wait_converged()
    chain = fed.chain(victim, top)
    for h, bh in committed.items():
        assert chain[h] == bh, f"block {h} committed by member {victim} before a kill is not in its chain"


# --- storage: wiped, corrupted ----------------------------------------------------------


def _signers_from_header(fed: ProcessFederation, i: int, block_hash: str) -> list[int]:
    header = BlockHeader.read(ByteReader(fed.header(i, block_hash)))
    return solution_signers(fed.federation.federation_params(), header)


@pytest.mark.parametrize("backend", [SQLITE, POSTGRES], indirect=True)
def test_wiped_member_catches_up_and_signs_again(
    process_federation: Make, backend: Backend, rng: random.Random
) -> None:
    fed = process_federation(5, 4, database_url=backend.database_url(5))
    fed.start_all()
    fed.wait_heights(3)
    victim, spare = rng.sample(range(5), 2)
    print(f"wiping member {victim}; member {spare} goes down so that every later block needs the victim")

    fed.stop(victim)
    last_signed = max((h for h, _, _ in fed.signatures_sent(victim)), default=0)
    others = [i for i in range(5) if i != victim]
    # Every height the victim ever signed at is committed before it forgets
    # its sign-lock; it cannot be asked to sign there again.
    fed.wait_heights(last_signed + 1, members=others)
    fed.wipe_database(victim)
    fed.kill(spare)
    live = [i for i in others if i != spare]
    stalled = fed.assert_stalled(live, window=1.0, settle=2.0)
    wipe_point = max(stalled.values())

    fed.start(victim)
    (started,) = fed.events(victim, "started", -1)
    assert started.num("height") == 0, "the wiped member still had blocks"
    fed.wait_for(lambda: fed.events(victim, "catch_up", -1), 30, f"member {victim} to start catching up")
    fed.wait_heights(wipe_point + 3, members=[*live, victim], timeout=90)

    signed_after = [h for h, _, _ in fed.signatures_sent(victim) if h > wipe_point]
    assert signed_after, f"member {victim} sent no signature above the wipe point {wipe_point}"
    # Four members are up and four must sign: the victim is in every new block.
    status = fed.status(live[0])
    recent = [b for b in status["last_blocks"] if b["height"] > wipe_point]  # type: ignore[attr-defined]
    assert recent, status
    for b in recent:
        assert victim in b["signers"], f"block {b['height']} signed by {b['signers']} without member {victim}"
        assert victim in _signers_from_header(fed, live[0], b["hash"]), f"block {b['height']}'s proof"
    # It holds the whole chain again, wipe point included.
    top = fed.wait_converged([*live, victim])
    _same_chain(fed, [*live, victim], top)
    fed.start(spare)


@pytest.mark.parametrize(
    ("backend", "kind"),
    [
        (SQLITE, "flip"),
        (SQLITE, "truncate"),
        pytest.param("postgres", "flip", marks=pytest.mark.postgres),
        pytest.param("postgres", "drop_row", marks=[pytest.mark.postgres, pytest.mark.slow]),
    ],
    indirect=["backend"],
)
def test_corrupt_database_refuses_to_sign_and_says_why(
    process_federation: Make, backend: Backend, kind: str, rng: random.Random
) -> None:
    victim = rng.randrange(5)
    print(f"corrupting member {victim}'s database: {kind}")
    fed = process_federation(
        5,
        4,
        database_url=backend.database_url(5),
        allow_log=[rf"member={victim} event=refuse_to_sign reason=CorruptDatabase "],
    )
    fed.start_all()
    fed.wait_heights(4)
    fed.stop(victim)
    fed.corrupt_database(victim, kind, height=2)

    fed.start(victim, wait=False)
    rc = fed.wait_exit(victim, timeout=60)
    out = fed.log_text(victim, -1)
    assert rc == 3, f"exit status {rc}, expected 3 (refuses to sign)\n{out}"
    assert "Traceback" not in out, out
    said = [line for line in out.splitlines() if line.startswith("functionary:")]
    assert len(said) == 1, out
    assert "refuses to sign" in said[0] and "CorruptDatabase" in said[0], said[0]
    (logged,) = fed.events(victim, "refuse_to_sign", -1)
    assert logged.fields["reason"] == "CorruptDatabase"
    assert not fed.events(victim, "signature_sent", -1), "it signed before refusing"

    others = [i for i in range(5) if i != victim]
    now = max(fed.height(i) for i in others)
    fed.wait_heights(now + 2, members=others)


# --- the network ------------------------------------------------------------------------


@pytest.mark.parametrize("backend", [SQLITE, POSTGRES_SLOW], indirect=True)
def test_partition_three_two_stalls_without_fork_and_heals(
    process_federation: Make, backend: Backend, rng: random.Random
) -> None:
    fed = process_federation(5, 4, proxies=True, database_url=backend.database_url(5))
    fed.start_all()
    fed.wait_heights(3)
    order = list(range(5))
    rng.shuffle(order)
    big, small = sorted(order[:3]), sorted(order[3:])
    print(f"partition {big} | {small}")

    fed.partition([big, small])
    # In-flight rounds settle; then neither side can gather 4 signatures.
    stalled = fed.assert_stalled(range(5), window=6.0, settle=3.0)
    low = min(stalled.values())
    assert max(stalled.values()) - low <= 1, f"sides far apart: {stalled}"
    _same_chain(fed, list(range(5)), low)

    fed.heal()
    fed.wait_heights(max(stalled.values()) + 3, timeout=90)
    top = fed.wait_converged()
    _same_chain(fed, list(range(5)), top)


# --- bad input --------------------------------------------------------------------------


def _break_malformed(d: Path) -> Path:
    cfg = d / "member0" / "member.json"
    cfg.write_text('{"member": 0, "federation": ')
    return cfg


def _break_missing_config(d: Path) -> Path:
    return d / "member0" / "no-such-config.json"


def _break_wrong_type(d: Path) -> Path:
    cfg = d / "member0" / "member.json"
    cfg.write_text(cfg.read_text().replace('"member": 0', '"member": "zero"'))
    return cfg


def _break_missing_keys(d: Path) -> Path:
    (d / "member0" / "keys.json").unlink()
    return d / "member0" / "member.json"


def _break_exposed_keys(d: Path) -> Path:
    (d / "member0" / "keys.json").chmod(0o644)
    return d / "member0" / "member.json"


@pytest.mark.parametrize(
    ("breakage", "reason"),
    [
        (_break_malformed, "ConfigSyntax"),
        (_break_missing_config, "ConfigFileMissing"),
        (_break_wrong_type, "ConfigInvalid"),
        (_break_missing_keys, "ConfigFileMissing"),
        (_break_exposed_keys, "KeyFileExposed"),
    ],
    ids=["malformed-config", "missing-config", "wrong-type", "missing-keys", "keys-0644"],
)
def test_bad_configuration_exits_2_with_one_typed_line(
    tmp_path: Path, breakage: Callable[[Path], Path], reason: str
) -> None:
    init_federation(tmp_path, 3, 2, p2p_port=1, api_port=4)  # never bound: the run stops first
    config = breakage(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "functionary", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"functionary: {reason}: "), lines[0]
    assert "Traceback" not in proc.stderr

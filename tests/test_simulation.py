"""The federation under faults, in one process on a fake clock.

Every test is seeded; a failure message carries the seed and configuration
(``Simulation.describe``), and re-running that seed replays the run exactly.
"""

from __future__ import annotations

import os

import pytest

from tests.simulation import Faults, SimConfig, Simulation

CONFIGS = [(3, 2), (4, 3), (5, 4), (7, 5), (15, 11)]
QUICK_SEEDS = int(os.environ.get("SIM_SEEDS", "3"))
SLOW_SEEDS = int(os.environ.get("SIM_SLOW_SEEDS", "25"))


def _sim(n: int, m: int, seed: int, **kw: object) -> Simulation:
    return Simulation(SimConfig(n=n, m=m, seed=seed, **kw))  # type: ignore[arg-type]


def _round_bound(sim: Simulation) -> float:
    """Time for one block once faults are healed: the block interval, then at
    most n + 2 rounds (every proposer once, plus the rounds in which a lock
    is announced and re-proposed)."""
    t = sim.config.timing
    return t.block_interval + (sim.config.n + 2) * t.round_timeout


@pytest.mark.parametrize("n, m", CONFIGS)
def test_fault_free_federation_makes_a_block_per_interval(n, m):
    sim = _sim(n, m, seed=1)
    interval = sim.config.timing.block_interval
    sim.run_until(20 * interval + 1)
    heights = sim.heights()
    assert min(heights) >= 19, sim.describe()
    sim.assert_safe()
    # Round 0 succeeded every time: each member proposed in turn.
    proposers = {(b.header.height) % n for b in sim.nodes[0].disk.blocks}
    assert proposers == set(range(n)), sim.describe()


def _safety_run(n: int, m: int, seed: int, equivocators: int, horizon: float) -> Simulation:
    import random

    rng = random.Random(seed * 1000 + n)
    byz = frozenset(rng.sample(range(n), equivocators)) if equivocators > 0 else frozenset()
    faults = Faults(
        drop=0.15,
        duplicate=0.05,
        max_delay=2.0,
        crash_rate=0.01,
        crash_in_effects=0.2,
        partition_rate=0.02,
        heal_at=horizon * 0.7,
    )
    sim = _sim(n, m, seed, faults=faults, equivocators=byz)
    try:
        sim.run_until(horizon)
        sim.assert_safe()
    except AssertionError:
        print(f"simulation failed: {sim.describe()}")
        raise
    return sim


@pytest.mark.parametrize("seed", range(QUICK_SEEDS))
@pytest.mark.parametrize("n, m", CONFIGS)
def test_safety_with_max_tolerated_equivocators(n, m, seed):
    tolerated = 2 * m - n - 1
    sim = _safety_run(n, m, seed, tolerated, horizon=300.0)
    assert max(sim.heights()) >= 3, sim.describe()


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(100, 100 + SLOW_SEEDS))
@pytest.mark.parametrize("n, m", CONFIGS)
def test_safety_many_seeds(n, m, seed):
    _safety_run(n, m, seed, 2 * m - n - 1, horizon=400.0)


def _split_attack(n: int, m: int, equivocators: int, seed: int = 0) -> Simulation:
    """The equivocators include the proposer of height 1, round 0 (member 1).
    The honest members are split into two groups that cannot reach each
    other; each group is connected to every equivocator. The proposer sends
    block A to one group and block B to the other, and every equivocator
    precommits and signs both."""
    byz = [1, *[i for i in range(n) if i != 1][: equivocators - 1]]
    honest = [i for i in range(n) if i not in byz]
    half = len(honest) // 2
    g1, g2 = frozenset(honest[:half]), frozenset(honest[half:])
    e = frozenset(byz)
    sim = _sim(n, m, seed, equivocators=e, split=(g1 | e, g2 | e))
    sim.set_partition([set(g1 | e), set(g2 | e)])
    sim.run_until(sim.config.timing.block_interval + 4 * sim.config.timing.round_timeout)
    return sim


@pytest.mark.parametrize("n, m", CONFIGS)
def test_fork_is_reachable_at_2m_minus_n_equivocators(n, m):
    """The bound is tight: with 2m - n equivocators a fork exists."""
    sim = _split_attack(n, m, 2 * m - n)
    assert 1 in sim.forks(), sim.describe()
    # Honest members never double-sign even while they are being forked.
    assert not sim.double_signers(), sim.describe()
    # Honest members see the equivocators' signatures on both blocks and name them, and only them.
    flagged = {member for _, member, code in sim.misbehaviour if code == "SignedTwoBlocks"}
    assert flagged and flagged <= sim.config.equivocators, (flagged, sim.describe())


@pytest.mark.parametrize("n, m", [c for c in CONFIGS if 2 * c[1] - c[0] - 1 > 0])
def test_same_attack_with_one_fewer_equivocator_cannot_fork(n, m):
    sim = _split_attack(n, m, 2 * m - n - 1)
    sim.run_until(200.0)
    sim.set_partition(None)
    sim.run_until(400.0)
    sim.assert_safe()


@pytest.mark.parametrize("seed", range(QUICK_SEEDS))
@pytest.mark.parametrize("n, m", CONFIGS)
def test_liveness_after_faults_heal(n, m, seed):
    heal = 150.0
    faults = Faults(
        drop=0.3,
        duplicate=0.1,
        max_delay=3.0,
        crash_rate=0.02,
        crash_in_effects=0.3,
        partition_rate=0.05,
        heal_at=heal,
    )
    sim = _sim(n, m, seed, faults=faults)
    sim.run_until(heal)
    base = max(sim.heights())
    # Crashed members come back at heal; they catch up and the chain goes on.
    deadline = heal + 3 * _round_bound(sim) + 30.0
    assert sim.run_until_height(base + 3, deadline), f"no progress after heal: {sim.describe()}"
    sim.assert_safe()


@pytest.mark.parametrize("n, m", CONFIGS)
def test_n_minus_m_offline_from_start_still_advances(n, m):
    sim = _sim(n, m, seed=5, offline=frozenset(range(n - m)))
    assert sim.run_until_height(5, 5 * _round_bound(sim) + 30.0), sim.describe()
    sim.assert_safe()


@pytest.mark.parametrize("n, m", CONFIGS)
def test_fewer_than_m_halts_then_resumes_by_itself(n, m):
    sim = _sim(n, m, seed=9)
    interval = sim.config.timing.block_interval
    sim.run_until(5 * interval + 1)
    # Take down n - m + 1 members: only m - 1 remain.
    down = list(range(n - m + 1))
    outage = 20 * interval
    for i in down:
        sim.crash(i, down_for=outage)
    sim.run_until(sim.now + 2 * interval)  # let in-flight rounds settle
    stalled_at = max(sim.heights())
    t_stall = sim.now
    sim.run_until(t_stall + outage - 3 * interval)
    assert max(sim.heights()) == stalled_at, f"advanced with fewer than m members: {sim.describe()}"
    # The crashed members come back by themselves and the chain resumes.
    assert sim.run_until_height(stalled_at + 3, sim.now + 3 * interval + 3 * _round_bound(sim) + 30.0), sim.describe()
    sim.assert_safe()


@pytest.mark.parametrize("seed", range(QUICK_SEEDS))
def test_crash_at_any_point_never_double_signs(seed):
    n, m = 5, 4
    faults = Faults(crash_rate=0.05, crash_in_effects=0.5, down_time=(0.5, 10.0), max_delay=1.0, heal_at=300.0)
    sim = _sim(n, m, seed, faults=faults)
    sim.run_until(300.0)
    assert sim.crashes >= 10, sim.describe()
    assert not sim.double_signers(), sim.describe()
    base = max(sim.heights())
    assert sim.run_until_height(base + 2, sim.now + 3 * _round_bound(sim) + 30.0), sim.describe()
    sim.assert_safe()
